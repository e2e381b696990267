//! Replay: fold a log from scratch and re-decide at every input, demanding the recorded
//! decisions byte for byte (the engine's `recover`, which `orch resume` shares).

use orch_engine::record::Record;
use orch_engine::state::State;

pub use orch_engine::recover::{Divergence, RecoverError as Error};

/// A log that replayed cleanly.
#[derive(Debug, Clone)]
pub struct Replayed {
    pub state: State,
    /// The log ends in the middle of a step (a crash between writing an input and all
    /// its decisions): the seq where the missing decisions would start.
    pub incomplete_from: Option<u64>,
}

/// Re-drives the scheduler over `records` and checks every recorded decision.
pub fn redecide(records: &[Record]) -> Result<Replayed, Error> {
    let recovered = orch_engine::recover::recover(records)?;
    let incomplete_from = (!recovered.pending.is_empty()).then_some(records.len() as u64);
    Ok(Replayed { state: recovered.core.into_state(), incomplete_from })
}
