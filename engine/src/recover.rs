//! Re-deciding a recorded log: fold it from scratch and, at every input, ask the
//! scheduler again. Every decision it returns must equal, byte for byte, the one
//! recorded after that input; the first that does not is a non-determinism error naming
//! the seq (as Temporal reports a non-deterministic workflow).
//!
//! Replay uses it to audit a log; `orch resume` uses it to rebuild the engine of a run
//! that died, including the decisions of a step the crash cut short (never written, so
//! never acted on: they are written and performed on resume).

use std::sync::Arc;

use crate::core::Core;
use crate::graph::Graph;
use crate::record::{Digest, Event, Record};
use crate::state::ApplyError;

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
pub enum RecoverError {
    #[error("seq {seq}: the log cannot be applied: {source}")]
    Apply { seq: u64, source: ApplyError },
    #[error("seq {0}: a decision where an input was expected")]
    DecisionFirst(u64),
    #[error("{}", render_divergence(.0))]
    Divergence(Box<Divergence>),
}

/// The engine rebuilt from a log.
#[derive(Debug, Clone)]
pub struct Recovered {
    pub core: Core,
    /// Decisions of the last step that the log does not hold (it ends mid-step): they
    /// come right after the last record, and were never performed.
    pub pending: Vec<Record>,
}

/// Re-drives the scheduler over `records` and checks every recorded decision.
pub fn recover(records: &[Record]) -> Result<Recovered, RecoverError> {
    redrive(records, None)
}

/// `recover`, with the spec of the run-started record (`records[0]`) already compiled
/// into `graph` — by a caller that compiled it while the rest of the log was being read
/// (`journal::first_graph`). `spec_digest` is the digest of the spec it was compiled
/// from: unless `records[0]` is a run-started record naming that very digest (say the
/// log was replaced between the two reads) and carrying the compiled graph of `graph`
/// if any, the graph is not used and the spec is compiled from the record, as `recover`
/// does.
pub fn recover_compiled(records: &[Record], spec_digest: Digest, graph: Arc<Graph>) -> Result<Recovered, RecoverError> {
    let same = matches!(records.first().map(|r| &r.event), Some(Event::RunStarted(s))
        if s.spec_digest == spec_digest && s.image.as_ref().is_none_or(|image| image.matches(&graph)));
    redrive(records, same.then_some(graph))
}

fn redrive(records: &[Record], mut graph: Option<Arc<Graph>>) -> Result<Recovered, RecoverError> {
    let mut core = Core::new();
    let mut derived = Vec::new();
    let mut seq = 0usize;
    while seq < records.len() {
        let input = &records[seq];
        if !input.event.is_input() {
            return Err(RecoverError::DecisionFirst(seq as u64));
        }
        derived.clear();
        let applied = match graph.take() {
            Some(graph) if seq == 0 => core.start_recorded(input, graph, &mut derived),
            _ => core.handle_recorded(input, &mut derived),
        };
        applied.map_err(|source| RecoverError::Apply { seq: seq as u64, source })?;
        // The decisions the input leads to, each expected right after it.
        for (k, decision) in derived.iter().enumerate() {
            let at = seq + 1 + k;
            match records.get(at) {
                Some(r) if r == decision => {}
                None => return Ok(Recovered { core, pending: derived[k..].to_vec() }),
                recorded => {
                    return Err(RecoverError::Divergence(Box::new(Divergence {
                        seq: at as u64,
                        recorded: recorded.cloned(),
                        derived: Some(decision.clone()),
                    })))
                }
            }
        }
        seq += 1 + derived.len();
        if let Some(extra) = records.get(seq).filter(|r| !r.event.is_input()) {
            return Err(RecoverError::Divergence(Box::new(Divergence {
                seq: seq as u64,
                recorded: Some(extra.clone()),
                derived: None,
            })));
        }
    }
    Ok(Recovered { core, pending: Vec::new() })
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
