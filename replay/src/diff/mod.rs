//! `orch diff`: compares two runs' records and explains where and how they part ways —
//! the first divergent seq with a few records of context, then what differs in outcome
//! (per task, per wave, the run) and in order (siblings that raced). Golden-log tests print
//! the same report when a fixture's log changes.
//!
//! Three levels, from strictest to loosest:
//!
//! - [`Level::Exact`]: the logs are byte-identical (equal log digests), so every record is
//!   equal, times included.
//! - [`Level::Decisions`] (the default): the same records in the same order, ignoring the
//!   fields that carry wall-clock facts ([`WALL_CLOCK_FIELDS`]). Two real runs that made
//!   the same decisions on the same inputs are equal at this level even though their
//!   processes took different times.
//! - [`Level::Outcomes`]: per task the terminal state, attempt count and output digest;
//!   per wave and for the run the failures and aggregates. Order is ignored.
//!
//! The spec carried by `run_started` is compared on its own (the `spec` section, naming the
//! tasks whose entries changed) and is left out of the search for the first divergence:
//! an edited workflow then shows the first place where *behaviour* differs, not seq 0.

use std::path::Path;

use orch_engine::journal::ReadError;
use orch_engine::record::{Digest, Record, RunOutcome, Terminal};
use serde::Serialize;

mod facts;
mod fast;
mod first;
mod ids;
mod outcomes;
mod races;
mod render;
mod spec;
mod view;

use facts::Facts;

/// What "the same" means for a diff.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Byte-identical logs.
    Exact,
    /// The same records, wall-clock fields ignored.
    #[default]
    Decisions,
    /// The same terminal states, attempts, outputs and aggregates, in any order.
    Outcomes,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Exact => "exact",
            Level::Decisions => "decisions",
            Level::Outcomes => "outcomes",
        }
    }
}

/// The fields ignored at [`Level::Decisions`]: each carries a measured or wall-clock fact
/// (how long a process took, when a timer is due), which two real runs never share.
/// What the scheduler decided from them (which attempt, which delay, whether a deadline
/// applies) is still compared.
pub const WALL_CLOCK_FIELDS: &[&str] = &[
    "time_ms (every record)",
    "attempt_exited.duration_ms",
    "retry_scheduled.at_ms",
    "attempt_dispatched.deadline_ms (its presence is compared, not its value)",
    "run_deadline_armed.at_ms",
    "attempt_started.pid and attempt_started.start_ticks (host facts)",
];

/// At most this many races are listed (all are counted).
pub const MAX_RACES_LISTED: usize = 20;

/// Records of context shown before the first divergence.
pub const CONTEXT_RECORDS: usize = 3;

/// Sides of at least this many records together are read and summed up on two threads
/// (one each); below it a thread costs more than it saves.
const PARALLEL_MIN_RECORDS: usize = 4096;

/// `fa()` on this thread and `fb()` on another, at once.
fn both<A: Send, B: Send>(fa: impl FnOnce() -> A + Send, fb: impl FnOnce() -> B + Send) -> (A, B) {
    std::thread::scope(|s| {
        let other = s.spawn(fb);
        let a = fa();
        // A panic on the other thread is a bug here too: passed on as it is.
        let b = other.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
        (a, b)
    })
}

/// Why two logs could not be diffed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Log(#[from] orch_log_format::Error),
    #[error(transparent)]
    Read(#[from] ReadError),
}

/// The whole comparison. Serializes to the JSON of `orch diff --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub level: Level,
    /// Names of the two sides (run ids or paths), for rendering.
    pub a: String,
    pub b: String,
    /// Equal at `level`.
    pub identical: bool,
    pub records: [u64; 2],
    /// Chain digests of the two logs, when diffed from log directories.
    pub log_digests: Option<[String; 2]>,
    /// The effective specs differ (None: identical).
    pub spec: Option<SpecDiff>,
    /// The first seq where the records differ at this level (None at `outcomes`).
    pub first_divergence: Option<FirstDivergence>,
    pub tasks: Vec<TaskDiff>,
    pub waves: Vec<WaveDiff>,
    pub run: Option<RunDiff>,
    /// Sibling pairs dispatched or completed in opposite orders (none at `outcomes`).
    pub races: Vec<Race>,
    /// Every such pair, including those not listed in `races`.
    pub races_total: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpecDiff {
    /// The specs' digests (None: that log has no `run_started`, and is compared as an
    /// empty spec).
    pub digests: [Option<Digest>; 2],
    /// `[run]` differs.
    pub run: bool,
    /// Which keys of `[run]` differ (set or unset on one side only counts), sorted.
    pub run_keys: Vec<String>,
    /// `[[wave]]`s differ.
    pub waves: bool,
    /// Tasks whose entries differ, or that only one side has, in A's declaration order.
    pub tasks: Vec<String>,
    /// For the first of those tasks (at most `spec::KEYED_TASKS`): the keys of its entry
    /// that differ, sorted, or `["(only in A)"]` / `["(only in B)"]`.
    pub task_keys: std::collections::BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FirstDivergence {
    pub seq: u64,
    /// The record each side holds at `seq`, in the stable text rendering (None: that log
    /// ended before it).
    pub a: Option<String>,
    pub b: Option<String>,
    /// The same records as JSON.
    pub a_record: Option<serde_json::Value>,
    pub b_record: Option<serde_json::Value>,
    /// Up to [`CONTEXT_RECORDS`] records before `seq`, on each side.
    pub context_a: Vec<String>,
    pub context_b: Vec<String>,
    /// Tasks named by either divergent record.
    pub tasks: Vec<String>,
}

/// How one task ended on one side.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TaskOutcome {
    /// None: the task never finished.
    pub state: Option<Terminal>,
    pub attempts: u32,
    /// Output digest of its last attempt (None: it never ran).
    pub output: Option<Digest>,
    /// For a parent: the aggregate of its children.
    pub aggregate: Option<Digest>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskDiff {
    pub task: String,
    /// Which of state, attempts, output, aggregate differ (or `presence`).
    pub fields: Vec<&'static str>,
    pub a: Option<TaskOutcome>,
    pub b: Option<TaskOutcome>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WaveOutcome {
    pub failures: u32,
    pub stopped: bool,
    pub aggregate: Digest,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WaveDiff {
    /// The wave's parent (None: the run).
    pub parent: Option<String>,
    pub wave: u32,
    pub a: Option<WaveOutcome>,
    pub b: Option<WaveOutcome>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunResult {
    pub outcome: RunOutcome,
    pub aggregate: Digest,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunDiff {
    pub a: Option<RunResult>,
    pub b: Option<RunResult>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RaceKind {
    /// Order of first dispatch (`attempt_dispatched`, attempt 1).
    Dispatch,
    /// Order of `task_finished`.
    Completion,
}

impl RaceKind {
    fn verb(self) -> &'static str {
        match self {
            RaceKind::Dispatch => "dispatched",
            RaceKind::Completion => "completed",
        }
    }
}

/// Two siblings that A and B ordered differently: A has `first` before `second`, B the
/// reverse. The interleavings are the records of the two tasks on each side, from the
/// first record of either up to the later of the two ordered events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Race {
    pub kind: RaceKind,
    /// Their parent (None: the run).
    pub parent: Option<String>,
    pub first: String,
    pub second: String,
    pub a: Vec<String>,
    pub b: Vec<String>,
}

/// Compares two record lists at `level`. The reference computation: [`diff_logs`] gives
/// the same report without decoding what two logs share (see `fast`).
pub fn diff(a: &[Record], b: &[Record], level: Level) -> Report {
    let (fa, fb) = if a.len() + b.len() >= PARALLEL_MIN_RECORDS {
        both(|| Facts::of(a), || Facts::of(b))
    } else {
        (Facts::of(a), Facts::of(b))
    };
    let spec = spec::spec_diff(&fa, &fb);
    let first_divergence = match level {
        Level::Outcomes => None,
        _ => first::first_divergence(a, b, level),
    };
    let (tasks, waves, run) = outcomes::outcome_diffs(&fa, &fb);
    let (races, races_total) = match level {
        Level::Outcomes => (Vec::new(), 0),
        _ => races::races(&a, &b, &fa, &fb),
    };
    let identical = match level {
        Level::Exact => a == b,
        Level::Decisions => spec.is_none() && first_divergence.is_none(),
        Level::Outcomes => tasks.is_empty() && waves.is_empty() && run.is_none(),
    };
    Report {
        level,
        a: "A".into(),
        b: "B".into(),
        identical,
        records: [a.len() as u64, b.len() as u64],
        log_digests: None,
        spec,
        first_divergence,
        tasks,
        waves,
        run,
        races,
        races_total,
    }
}

/// Verifies the logs in two directories and compares them. At `exact`, equal log digests
/// decide (they name the bytes). Decodes only what the logs do not share (see `fast`):
/// the report is the one [`diff`] gives on all their records.
pub fn diff_logs(a: &Path, b: &Path, level: Level) -> Result<Report, Error> {
    let mut report = fast::diff_logs(a, b, level)?;
    report.a = a.display().to_string();
    report.b = b.display().to_string();
    Ok(report)
}

/// The reference path of [`diff_logs`]: reads and decodes every record of both logs and
/// runs [`diff`]. For tests that check the fast path against it.
#[doc(hidden)]
pub fn diff_logs_in_full(a: &Path, b: &Path, level: Level) -> Result<Report, Error> {
    let mut report = fast::in_full(a, b, level)?;
    report.a = a.display().to_string();
    report.b = b.display().to_string();
    Ok(report)
}

/// One side's records by seq: a slice on the full path, the fast path's partly decoded
/// view of a log otherwise.
trait Records {
    fn count(&self) -> usize;
    fn at(&self, seq: usize) -> Option<Record>;
    /// The records in `from..=to` about task `x` or `y` (`first::task_of`), with seqs.
    fn naming(&self, from: usize, to: usize, x: &str, y: &str) -> Vec<(u64, Record)>;
}

impl Records for &[Record] {
    fn count(&self) -> usize {
        self.len()
    }

    fn at(&self, seq: usize) -> Option<Record> {
        self.get(seq).cloned()
    }

    fn naming(&self, from: usize, to: usize, x: &str, y: &str) -> Vec<(u64, Record)> {
        let in_range = if from <= to { self.get(from..=to).unwrap_or(&[]) } else { &[] };
        in_range
            .iter()
            .enumerate()
            .filter(|(_, r)| first::task_of(&r.event).is_some_and(|t| t == x || t == y))
            .map(|(i, r)| ((from + i) as u64, r.clone()))
            .collect()
    }
}
