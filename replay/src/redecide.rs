//! Replay: fold a log from scratch and re-decide at every input, demanding the recorded
//! decisions byte for byte (the engine's `recover`, which `orch resume` shares).

use std::sync::Arc;

use orch_engine::graph::Graph;
use orch_engine::record::{Digest, Record};
use orch_engine::recover::Recovered;
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
    replayed(records, orch_engine::recover::recover(records)?)
}

/// `redecide`, with the run-started record's spec already compiled into `graph` (see
/// `orch_engine::recover::recover_compiled`).
pub fn redecide_compiled(records: &[Record], spec_digest: Digest, graph: Arc<Graph>) -> Result<Replayed, Error> {
    replayed(records, orch_engine::recover::recover_compiled(records, spec_digest, graph)?)
}

fn replayed(records: &[Record], recovered: Recovered) -> Result<Replayed, Error> {
    let incomplete_from = (!recovered.pending.is_empty()).then_some(records.len() as u64);
    Ok(Replayed { state: recovered.core.into_state(), incomplete_from })
}
