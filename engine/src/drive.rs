//! The one loop every driver shares: commit a step's records (write-ahead), perform
//! their effects in the world, wait for the world's next input, hand it to the core.
//!
//! The simulated executor (virtual clock), the process runtime (tokio, real children)
//! and the in-process executor (async closures) differ only in their `World`; the
//! order of commit, effects and inputs — the part that makes a run recoverable and
//! replayable — is written once, here.

use std::sync::Arc;

use crate::core::{actions, Action, Core};
use crate::graph::Graph;
use crate::record::{Event, Record};
use crate::state::{ApplyError, State};

/// What a driver needs from the world it runs in.
pub trait World {
    type Error: std::error::Error + 'static;

    /// Performs one effect of a committed decision. May return an input the effect
    /// revealed (the pid of a spawned child), which is recorded right away.
    fn perform(&mut self, action: &Action, state: &State) -> Result<Option<Event>, Self::Error>;

    /// Waits for the next input and its time; `None` when nothing can come any more.
    fn next_input(&mut self, state: &State) -> Result<Option<(u64, Event)>, Self::Error>;

    /// The run has finished and its last effects are performed: deliver what is still
    /// on its way out (answers to clients). Nothing is recorded any more.
    fn finished(&mut self, _state: &State) {}
}

/// Why a drive stopped before the run finished.
#[derive(Debug, thiserror::Error)]
pub enum DriveError<W: std::error::Error + 'static, C: std::error::Error + 'static> {
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error(transparent)]
    World(W),
    #[error(transparent)]
    Commit(C),
    #[error("stalled at {time_ms} ms: nothing more can happen but the run has not finished")]
    Stalled { time_ms: u64 },
}

/// Starts a run of `graph` and drives it to the end. `commit` receives every step's
/// records, in log order, and must make them durable enough (per the log's policy)
/// before returning: effects are performed only after it returns.
pub fn start_and_drive<W: World, C: std::error::Error + 'static>(
    graph: Arc<Graph>,
    executor: &str,
    world: &mut W,
    commit: impl FnMut(&[Record], &State) -> Result<(), C>,
) -> Result<State, DriveError<W::Error, C>> {
    let mut core = Core::new();
    let mut records = Vec::new();
    core.start(graph, executor, &mut records)?;
    drive(core, records, world, commit)
}

/// Drives `core` from a step whose records (`pending`, possibly empty) are not yet
/// committed, until the run finishes.
pub fn drive<W: World, C: std::error::Error + 'static>(
    mut core: Core,
    mut records: Vec<Record>,
    world: &mut W,
    mut commit: impl FnMut(&[Record], &State) -> Result<(), C>,
) -> Result<State, DriveError<W::Error, C>> {
    let mut effects = Vec::new();
    let mut revealed = Vec::new();
    loop {
        if !records.is_empty() {
            commit(&records, core.state()).map_err(DriveError::Commit)?; // write-ahead
        }
        effects.clear();
        for r in &records {
            actions(r, core.state(), &mut effects);
        }
        records.clear();
        for effect in &effects {
            if let Some(input) = world.perform(effect, core.state()).map_err(DriveError::World)? {
                revealed.push(input);
            }
        }
        if !revealed.is_empty() {
            // Facts the effects revealed (which process runs an attempt) are committed
            // at once, before waiting: a crash from here on can still find the child.
            let now = core.state().now_ms();
            for input in revealed.drain(..) {
                core.handle(now, input, &mut records)?;
            }
            continue;
        }
        if core.state().is_finished() {
            world.finished(core.state());
            return Ok(core.into_state());
        }
        match world.next_input(core.state()).map_err(DriveError::World)? {
            Some((time_ms, input)) => {
                // A world's clock may lag the log's by a tick; logical time never goes back.
                let time_ms = time_ms.max(core.state().now_ms());
                core.handle(time_ms, input, &mut records)?;
            }
            None => return Err(DriveError::Stalled { time_ms: core.state().now_ms() }),
        }
    }
}
