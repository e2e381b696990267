//! Replay: fold a log from scratch and, at every input, ask the scheduler again. Every
//! decision it returns must equal, byte for byte, the one recorded after that input; the
//! first that does not is a non-determinism error naming the seq (as Temporal reports a
//! non-deterministic workflow).

use orch_engine::core::Core;
use orch_engine::record::Record;
use orch_engine::state::{ApplyError, State};

/// The first place where the log and the re-derived decisions part ways.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Divergence {
    pub seq: u64,
    /// What the log holds at `seq` (None: the log has a record fewer).
    pub recorded: Option<Record>,
    /// What the scheduler decides at `seq` now (None: it decides nothing more).
    pub derived: Option<Record>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("seq {seq}: the log cannot be applied: {source}")]
    Apply { seq: u64, source: ApplyError },
    #[error("seq {0}: the log starts with a decision, not an input")]
    DecisionFirst(u64),
    #[error("{}", render_divergence(.0))]
    Divergence(Box<Divergence>),
}

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
    let mut core = Core::new();
    let mut derived = Vec::new();
    let mut seq = 0usize;
    while seq < records.len() {
        let input = &records[seq];
        if !input.event.is_input() {
            return Err(Error::DecisionFirst(seq as u64));
        }
        derived.clear();
        core.handle(input.time_ms, input.event.clone(), &mut derived)
            .map_err(|source| Error::Apply { seq: seq as u64, source })?;
        // derived[0] is the input itself; the decisions follow it.
        for (k, decision) in derived.iter().enumerate().skip(1) {
            let at = seq + k;
            match records.get(at) {
                Some(r) if r == decision => {}
                None => return Ok(Replayed { state: core.into_state(), incomplete_from: Some(at as u64) }),
                recorded => {
                    return Err(Error::Divergence(Box::new(Divergence {
                        seq: at as u64,
                        recorded: recorded.cloned(),
                        derived: Some(decision.clone()),
                    })))
                }
            }
        }
        seq += derived.len();
        if let Some(extra) = records.get(seq).filter(|r| !r.event.is_input()) {
            return Err(Error::Divergence(Box::new(Divergence {
                seq: seq as u64,
                recorded: Some(extra.clone()),
                derived: None,
            })));
        }
    }
    Ok(Replayed { state: core.into_state(), incomplete_from: None })
}

fn render_divergence(d: &Divergence) -> String {
    let show = |r: &Option<Record>| match r {
        Some(r) => r.to_json(d.seq).to_string(),
        None => "(nothing)".to_string(),
    };
    format!(
        "non-deterministic replay at seq {}:\n  recorded: {}\n  derived:  {}",
        d.seq,
        show(&d.recorded),
        show(&d.derived)
    )
}
