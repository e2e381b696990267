//! The run summary: a fold over the records into the figures a user reads at the end of
//! a run (tasks per terminal state, attempts, retries, wall time, speedup vs serial),
//! and the scalar rollups of `rollup.rs` (busy time, peak concurrency, critical path...).

use std::collections::BTreeMap;

use orch_engine::record::{Digest, Event, KillReason, Record, RunOutcome, Terminal, Verdict};
use orch_engine::state::State;
use serde::Serialize;

use crate::rollup::Rollup;
use crate::timeline::Timeline;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub outcome: Option<RunOutcome>,
    pub aggregate: Option<Digest>,
    pub tasks: u64,
    /// Terminal state name → count, for every state (zeros included, for stable output).
    pub states: BTreeMap<&'static str, u64>,
    pub attempts: u64,
    pub retries: u64,
    pub timeouts: u64,
    /// Logical time of the last record.
    pub wall_ms: u64,
    /// Sum of every attempt's duration: what a serial run would have taken.
    pub attempt_ms: u64,
    pub records: u64,
    /// Time with at least one attempt running.
    pub busy_ms: u64,
    pub peak_concurrency: u32,
    /// The global cap, when there is one.
    pub cap: Option<u32>,
    /// Failed tasks by their wave's `on_failure` policy.
    pub failures_by_policy: BTreeMap<&'static str, u64>,
    pub critical_path_ms: u64,
    pub critical_path: Vec<String>,
    /// Ready → dispatched, summed over tasks, and the longest.
    pub queue_wait_ms_total: u64,
    pub queue_wait_ms_max: u64,
    /// Sum of declared `cost` estimates (None: no task declares one).
    pub cost_estimate: Option<u64>,
    /// The `before_finalize` hook's verdict, with its reason (None: the run has none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finalize: Option<String>,
}

impl Summary {
    /// The summary of `records`, folding them for the graph (see `timeline::fold_prefix`).
    pub fn of(records: &[Record]) -> Summary {
        Summary::with_rollup(records, &Rollup::of(&Timeline::of(records)))
    }

    /// The summary of `records`, taking the graph from `state`, their fold.
    pub fn of_state(state: &State, records: &[Record]) -> Summary {
        Summary::with_rollup(records, &Rollup::of(&Timeline::of_state(state, records)))
    }

    /// The summary, taking the rollups from an already computed `Rollup`.
    pub fn with_rollup(records: &[Record], rollup: &Rollup) -> Summary {
        let mut s = Summary {
            // The timeline compiled the spec already; no second parse for a count.
            tasks: rollup.tasks,
            busy_ms: rollup.busy_ms,
            peak_concurrency: rollup.peak_concurrency,
            cap: rollup.cap,
            failures_by_policy: rollup.failures_by_policy.clone(),
            critical_path_ms: rollup.critical_path_ms,
            critical_path: rollup.critical_path.clone(),
            queue_wait_ms_total: rollup.queue_wait_ms_total,
            queue_wait_ms_max: rollup.queue_wait_ms_max,
            cost_estimate: rollup.cost_estimate,
            ..Summary::default()
        };
        for t in Terminal::ALL {
            s.states.insert(t.name(), 0);
        }
        for r in records {
            s.records += 1;
            s.wall_ms = s.wall_ms.max(r.time_ms);
            match &r.event {
                Event::AttemptDispatched(_) => s.attempts += 1,
                Event::RetryScheduled(_) => s.retries += 1,
                Event::AttemptKillRequested(k) if k.reason == KillReason::Timeout => s.timeouts += 1,
                // Saturating: durations come from the log, which may hold anything.
                Event::AttemptExited(e) => s.attempt_ms = s.attempt_ms.saturating_add(e.duration_ms),
                Event::TaskFinished(f) => *s.states.entry(f.state.name()).or_default() += 1,
                Event::HookAnswered(h) if h.parent.is_none() => {
                    let verdict = if h.verdict == Verdict::Accept { "accepted" } else { "rejected" };
                    s.finalize = Some(match &h.reason {
                        Some(why) => format!("{verdict}: {why}"),
                        None => verdict.to_string(),
                    });
                }
                Event::RunFinished(f) => {
                    s.outcome = Some(f.outcome);
                    s.aggregate = Some(f.aggregate);
                }
                _ => {}
            }
        }
        s
    }

    /// Speedup vs serial, in hundredths (sum of attempt durations / wall time).
    pub fn speedup_centi(&self) -> Option<u64> {
        (self.wall_ms > 0).then(|| (u128::from(self.attempt_ms) * 100 / u128::from(self.wall_ms)) as u64)
    }

    /// Human-readable lines.
    pub fn render(&self) -> String {
        let outcome = self.outcome.map_or("unfinished", RunOutcome::name);
        let states: Vec<String> =
            self.states.iter().filter(|(_, &n)| n > 0).map(|(name, n)| format!("{n} {name}")).collect();
        let speedup = self.speedup_centi().map_or("-".to_string(), |c| format!("{}.{:02}x", c / 100, c % 100));
        let noun = if self.tasks == 1 { "task" } else { "tasks" };
        let mut out = format!("run {outcome}: {} {noun} ({})\n", self.tasks, states.join(", "));
        if let Some(verdict) = &self.finalize {
            out += &format!("before_finalize {verdict}\n");
        }
        out += &format!(
            "attempts {}, retries {}, timeouts {}; wall {} ms, serial {} ms, speedup {speedup}\n",
            self.attempts, self.retries, self.timeouts, self.wall_ms, self.attempt_ms
        );
        if let Some(a) = self.aggregate {
            out += &format!("aggregate {}\n", a.hex());
        }
        let cap = self.cap.map_or("none".to_string(), |c| c.to_string());
        out += &format!(
            "busy {} ms, peak concurrency {} (cap {cap}), queue wait max {} ms, total {} ms\n",
            self.busy_ms, self.peak_concurrency, self.queue_wait_ms_max, self.queue_wait_ms_total
        );
        out += &format!("critical path {} ms: {}\n", self.critical_path_ms, abridged(&self.critical_path, 8));
        let failures: Vec<String> =
            self.failures_by_policy.iter().filter(|(_, &n)| n > 0).map(|(p, n)| format!("{n} {p}")).collect();
        if !failures.is_empty() {
            out += &format!("failures by policy: {}\n", failures.join(", "));
        }
        if let Some(cost) = self.cost_estimate {
            out += &format!("declared cost {cost}\n");
        }
        out
    }
}

/// `a → b → … → y → z (26 tasks)` when there are more than `keep` ids.
fn abridged(ids: &[String], keep: usize) -> String {
    if ids.is_empty() {
        return "-".to_string();
    }
    if ids.len() <= keep {
        return ids.join(" → ");
    }
    let head = ids[..keep / 2].join(" → ");
    let tail = ids[ids.len() - keep / 2..].join(" → ");
    format!("{head} → … → {tail} ({} tasks)", ids.len())
}
