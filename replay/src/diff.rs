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

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use orch_engine::journal::{read_records, ReadError};
use orch_engine::record::{Digest, Event, Record, RunOutcome, Terminal, TimerKey};
use orch_engine::spec::Spec;
use serde::Serialize;

use crate::text;

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

/// Lines of each side of a race's interleaving.
const MAX_INTERLEAVING_LINES: usize = 16;

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
    pub digests: [Digest; 2],
    /// `[run]` differs.
    pub run: bool,
    /// `[[wave]]`s differ.
    pub waves: bool,
    /// Tasks whose entries differ, or that only one side has, in A's declaration order.
    pub tasks: Vec<String>,
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

/// Compares two record lists at `level`.
pub fn diff(a: &[Record], b: &[Record], level: Level) -> Report {
    let fa = Facts::of(a);
    let fb = Facts::of(b);
    let spec = spec_diff(&fa, &fb);
    let first_divergence = match level {
        Level::Outcomes => None,
        _ => first_divergence(a, b, level),
    };
    let (tasks, waves, run) = outcome_diffs(&fa, &fb);
    let (races, races_total) = match level {
        Level::Outcomes => (Vec::new(), 0),
        _ => races(a, b, &fa, &fb),
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

/// Verifies and reads the logs in two directories and compares them. At `exact`, equal
/// log digests decide (they name the bytes).
pub fn diff_logs(a: &Path, b: &Path, level: Level) -> Result<Report, Error> {
    let digest_a = orch_log_format::verify(a)?.digest;
    let digest_b = orch_log_format::verify(b)?.digest;
    let records_a = read_records(a)?;
    let records_b = read_records(b)?;
    let mut report = diff(&records_a, &records_b, level);
    report.a = a.display().to_string();
    report.b = b.display().to_string();
    report.log_digests = Some([orch_log_format::hex(&digest_a), orch_log_format::hex(&digest_b)]);
    if level == Level::Exact {
        report.identical = digest_a == digest_b;
    }
    Ok(report)
}

impl Report {
    /// The human-readable report.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let verdict = if self.identical { "same" } else { "different" };
        out += &format!("A: {}\nB: {}\n", self.a, self.b);
        out +=
            &format!("{verdict} at level {} ({} vs {} records)\n", self.level.name(), self.records[0], self.records[1]);
        if let Some([da, db]) = &self.log_digests {
            if da == db {
                out += &format!("log digests equal: {da}\n");
            } else {
                out += &format!("log digests differ:\n  A {da}\n  B {db}\n");
            }
        }
        if let Some(s) = &self.spec {
            out += &format!("\nspec differs: A {} vs B {}\n", s.digests[0].short(), s.digests[1].short());
            if s.run {
                out += "  [run] changed\n";
            }
            if s.waves {
                out += "  [[wave]]s changed\n";
            }
            if !s.tasks.is_empty() {
                out += &format!("  tasks changed: {}\n", s.tasks.join(", "));
            }
        }
        if let Some(d) = &self.first_divergence {
            let named = if d.tasks.is_empty() { String::new() } else { format!(" (task {})", d.tasks.join(", task ")) };
            out += &format!("\nfirst divergence at seq {}{named}\n", d.seq);
            if d.context_a == d.context_b {
                for l in &d.context_a {
                    out += &format!("     {l}\n");
                }
            } else {
                for l in &d.context_a {
                    out += &format!("  A  {l}\n");
                }
                for l in &d.context_b {
                    out += &format!("  B  {l}\n");
                }
            }
            let show = |r: &Option<String>| r.clone().unwrap_or_else(|| "(the log ends here)".into());
            out += &format!("- A  {}\n+ B  {}\n", show(&d.a), show(&d.b));
        } else if !self.identical && self.level == Level::Exact && self.spec.is_none() {
            out += "\nevery record is equal, but the bytes differ (segment layout?)\n";
        }
        if !self.tasks.is_empty() {
            out += "\ntasks that ended differently:\n";
            for t in &self.tasks {
                out += &format!("  {}: {}\n", t.task, t.fields.join(", "));
                out += &format!("    A {}\n    B {}\n", describe_task(&t.a), describe_task(&t.b));
            }
        }
        if !self.waves.is_empty() {
            out += "\nwaves that closed differently:\n";
            for w in &self.waves {
                let of = w.parent.as_ref().map_or("the run".to_string(), |p| format!("task {p}"));
                out += &format!(
                    "  wave {} of {of}\n    A {}\n    B {}\n",
                    w.wave,
                    describe_wave(&w.a),
                    describe_wave(&w.b)
                );
            }
        }
        if let Some(r) = &self.run {
            out += &format!("\nthe run ended differently:\n  A {}\n  B {}\n", describe_run(&r.a), describe_run(&r.b));
        }
        if self.races_total > 0 {
            out += &format!("\nsiblings in a different order ({} pair(s)", self.races_total);
            if self.races_total > self.races.len() as u64 {
                out += &format!(", first {} shown", self.races.len());
            }
            out += "):\n";
            for r in &self.races {
                let of = r.parent.as_ref().map_or("the run".to_string(), |p| format!("task {p}"));
                out += &format!(
                    "  {} and {} (children of {of}): A {verb} {} before {}; B {verb} {} before {}\n",
                    r.first,
                    r.second,
                    r.first,
                    r.second,
                    r.second,
                    r.first,
                    verb = r.kind.verb()
                );
                out += &side_by_side(&r.a, &r.b);
            }
        }
        out
    }
}

// ---- facts gathered from one log ---------------------------------------------------

/// Everything the semantic report needs from one side, gathered in one pass.
#[derive(Debug, Default)]
struct Facts {
    spec: Option<(String, Digest)>,
    /// Declaration order of the tasks (from the spec).
    order: Vec<String>,
    /// Task → its parent (None: the run).
    parent: BTreeMap<String, Option<String>>,
    tasks: BTreeMap<String, TaskOutcome>,
    waves: BTreeMap<(Option<String>, u32), WaveOutcome>,
    run: Option<RunResult>,
    /// Task → seq of its first dispatch / its task_finished.
    dispatched: BTreeMap<String, u64>,
    finished: BTreeMap<String, u64>,
}

impl Facts {
    fn of(records: &[Record]) -> Facts {
        let mut f = Facts::default();
        for (seq, r) in records.iter().enumerate() {
            let seq = seq as u64;
            match &r.event {
                Event::RunStarted(s) if f.spec.is_none() => {
                    f.spec = Some((s.spec.clone(), s.spec_digest));
                    // An unreadable spec leaves every task a child of the run: the diff
                    // still works, only sibling groups are coarser.
                    if let Ok(spec) = serde_json::from_str::<Spec>(&s.spec) {
                        f.learn_spec(&spec);
                    }
                }
                Event::AttemptDispatched(d) => {
                    f.dispatched.entry(d.task.clone()).or_insert(seq);
                }
                Event::AttemptExited(e) => {
                    let t = f.tasks.entry(e.task.clone()).or_default();
                    t.output = Some(e.output);
                }
                Event::TaskFinished(done) => {
                    let t = f.tasks.entry(done.task.clone()).or_default();
                    t.state = Some(done.state);
                    t.attempts = done.attempts;
                    t.aggregate = done.aggregate;
                    f.finished.insert(done.task.clone(), seq);
                }
                Event::WaveClosed(w) => {
                    let outcome = WaveOutcome { failures: w.failures, stopped: w.stopped, aggregate: w.aggregate };
                    f.waves.insert((w.parent.clone(), w.wave), outcome);
                }
                Event::RunFinished(done) => {
                    f.run = Some(RunResult { outcome: done.outcome, aggregate: done.aggregate })
                }
                _ => {}
            }
        }
        // Tasks the records name but the spec does not (an unreadable spec).
        let unknown: BTreeSet<String> =
            f.tasks.keys().chain(f.dispatched.keys()).filter(|id| !f.parent.contains_key(*id)).cloned().collect();
        f.order.extend(unknown);
        for id in &f.order {
            f.parent.entry(id.clone()).or_insert(None);
            f.tasks.entry(id.clone()).or_default();
        }
        f
    }

    fn learn_spec(&mut self, spec: &Spec) {
        let mut wave_parent: BTreeMap<&str, Option<&String>> = BTreeMap::new();
        for w in &spec.waves {
            for t in &w.tasks {
                wave_parent.insert(t, w.parent.as_ref());
            }
        }
        for t in &spec.tasks {
            let parent = t.parent.as_ref().or_else(|| wave_parent.get(t.id.as_str()).copied().flatten());
            self.order.push(t.id.clone());
            self.parent.insert(t.id.clone(), parent.cloned());
        }
    }
}

// ---- the spec -----------------------------------------------------------------------

fn spec_diff(a: &Facts, b: &Facts) -> Option<SpecDiff> {
    let (sa, da) = a.spec.clone().unwrap_or_default();
    let (sb, db) = b.spec.clone().unwrap_or_default();
    if sa == sb {
        return None;
    }
    let parse = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap_or(serde_json::Value::Null);
    let (ja, jb) = (parse(&sa), parse(&sb));
    let tasks_of = |j: &serde_json::Value| -> BTreeMap<String, serde_json::Value> {
        j.get("task")
            .and_then(|t| t.as_array())
            .map(|list| {
                list.iter()
                    .filter_map(|t| Some((t.get("id")?.as_str()?.to_string(), t.clone())))
                    .collect::<BTreeMap<_, _>>()
            })
            .unwrap_or_default()
    };
    let (ta, tb) = (tasks_of(&ja), tasks_of(&jb));
    let mut changed = Vec::new();
    let mut seen = BTreeSet::new();
    let ids = a.order.iter().chain(b.order.iter()).chain(ta.keys()).chain(tb.keys());
    for id in ids {
        if seen.insert(id.clone()) && ta.get(id) != tb.get(id) {
            changed.push(id.clone());
        }
    }
    Some(SpecDiff {
        digests: [da, db],
        run: ja.get("run") != jb.get("run"),
        waves: ja.get("wave") != jb.get("wave"),
        tasks: changed,
    })
}

// ---- first divergence ---------------------------------------------------------------

fn first_divergence(a: &[Record], b: &[Record], level: Level) -> Option<FirstDivergence> {
    let n = a.len().max(b.len());
    let seq = (0..n).find(|&i| match (a.get(i), b.get(i)) {
        (Some(x), Some(y)) => !same_record(x, y, level),
        _ => true,
    })?;
    let context = |records: &[Record]| -> Vec<String> {
        let from = seq.saturating_sub(CONTEXT_RECORDS).min(records.len());
        let to = seq.min(records.len());
        (from..to).map(|i| text::render(i as u64, &records[i])).collect()
    };
    let mut tasks = Vec::new();
    for r in [a.get(seq), b.get(seq)].into_iter().flatten() {
        if let Some(t) = task_of(&r.event) {
            if !tasks.iter().any(|x| x == t) {
                tasks.push(t.to_string());
            }
        }
    }
    Some(FirstDivergence {
        seq: seq as u64,
        a: a.get(seq).map(|r| text::render(seq as u64, r)),
        b: b.get(seq).map(|r| text::render(seq as u64, r)),
        a_record: a.get(seq).map(|r| r.to_json(seq as u64)),
        b_record: b.get(seq).map(|r| r.to_json(seq as u64)),
        context_a: context(a),
        context_b: context(b),
        tasks,
    })
}

/// Equality at `level` (not `outcomes`), the spec of `run_started` left out.
fn same_record(a: &Record, b: &Record, level: Level) -> bool {
    if level == Level::Exact && a.time_ms != b.time_ms {
        return false;
    }
    match (&a.event, &b.event) {
        (Event::RunStarted(x), Event::RunStarted(y)) => x.executor == y.executor,
        _ if level == Level::Exact => a.event == b.event,
        (Event::AttemptExited(x), Event::AttemptExited(y)) => {
            x.task == y.task
                && x.attempt == y.attempt
                && x.status == y.status
                && x.output == y.output
                && x.output_bytes == y.output_bytes
        }
        (Event::RetryScheduled(x), Event::RetryScheduled(y)) => {
            x.task == y.task && x.attempt == y.attempt && x.delay_ms == y.delay_ms
        }
        (Event::AttemptDispatched(x), Event::AttemptDispatched(y)) => {
            x.task == y.task && x.attempt == y.attempt && x.deadline_ms.is_some() == y.deadline_ms.is_some()
        }
        (Event::RunDeadlineArmed(_), Event::RunDeadlineArmed(_)) => true,
        // Pids and process start times are facts of the host, different in every run.
        (Event::AttemptStarted(x), Event::AttemptStarted(y)) => x.task == y.task && x.attempt == y.attempt,
        (x, y) => x == y,
    }
}

/// The task a record is about, if any.
fn task_of(e: &Event) -> Option<&str> {
    match e {
        Event::AttemptExited(x) => Some(&x.task),
        Event::AttemptLost(x) => Some(&x.task),
        Event::AttemptStarted(x) => Some(&x.task),
        Event::CancelRequested(x) => x.task.as_deref(),
        Event::TimerFired(x) => match &x.timer {
            TimerKey::AttemptTimeout { task, .. } | TimerKey::RetryBackoff { task, .. } => Some(task),
            TimerKey::RunDeadline => None,
        },
        Event::AttemptDispatched(x) => Some(&x.task),
        Event::AttemptKillRequested(x) => Some(&x.task),
        Event::RetryScheduled(x) => Some(&x.task),
        Event::TaskDelegated(x) => Some(&x.task),
        Event::TaskFinished(x) => Some(&x.task),
        Event::ParentWoken(x) => Some(&x.parent),
        Event::RunStarted(_)
        | Event::RunDeadlineArmed(_)
        | Event::WaveOpened(_)
        | Event::WaveClosed(_)
        | Event::RunFinished(_) => None,
    }
}

// ---- outcomes -----------------------------------------------------------------------

fn outcome_diffs(a: &Facts, b: &Facts) -> (Vec<TaskDiff>, Vec<WaveDiff>, Option<RunDiff>) {
    let mut tasks = Vec::new();
    let mut seen = BTreeSet::new();
    for id in a.order.iter().chain(b.order.iter()) {
        if !seen.insert(id) {
            continue;
        }
        let (ta, tb) = (a.tasks.get(id), b.tasks.get(id));
        let fields: Vec<&'static str> = match (ta, tb) {
            (Some(x), Some(y)) => [
                ("state", x.state != y.state),
                ("attempts", x.attempts != y.attempts),
                ("output", x.output != y.output),
                ("aggregate", x.aggregate != y.aggregate),
            ]
            .into_iter()
            .filter_map(|(name, differs)| differs.then_some(name))
            .collect(),
            _ => vec!["presence"],
        };
        if !fields.is_empty() {
            tasks.push(TaskDiff { task: id.clone(), fields, a: ta.cloned(), b: tb.cloned() });
        }
    }
    let keys: BTreeSet<&(Option<String>, u32)> = a.waves.keys().chain(b.waves.keys()).collect();
    let waves = keys
        .into_iter()
        .filter(|k| a.waves.get(*k) != b.waves.get(*k))
        .map(|k| WaveDiff { parent: k.0.clone(), wave: k.1, a: a.waves.get(k).cloned(), b: b.waves.get(k).cloned() })
        .collect();
    let run = (a.run != b.run).then(|| RunDiff { a: a.run.clone(), b: b.run.clone() });
    (tasks, waves, run)
}

fn describe_task(t: &Option<TaskOutcome>) -> String {
    let Some(t) = t else { return "(no such task)".into() };
    let mut s = format!(
        "{}, {} attempt(s), output {}",
        t.state.map_or("unfinished", Terminal::name),
        t.attempts,
        t.output.map_or("-".to_string(), |d| d.short())
    );
    if let Some(agg) = t.aggregate {
        s += &format!(", aggregate {}", agg.short());
    }
    s
}

fn describe_wave(w: &Option<WaveOutcome>) -> String {
    match w {
        None => "(not closed)".into(),
        Some(w) => format!(
            "{} failure(s){}, aggregate {}",
            w.failures,
            if w.stopped { ", stopped" } else { "" },
            w.aggregate.short()
        ),
    }
}

fn describe_run(r: &Option<RunResult>) -> String {
    match r {
        None => "(unfinished)".into(),
        Some(r) => format!("{}, aggregate {}", r.outcome.name(), r.aggregate.short()),
    }
}

// ---- races --------------------------------------------------------------------------

/// Sibling pairs whose first dispatch, or completion, A and B ordered differently. Every
/// inverted pair is counted; the pairs adjacent in A's order are listed (a permutation
/// that is not the identity always has one), so the listing is linear in the tasks.
fn races(a: &[Record], b: &[Record], fa: &Facts, fb: &Facts) -> (Vec<Race>, u64) {
    let mut listed = Vec::new();
    let mut total = 0u64;
    for kind in [RaceKind::Dispatch, RaceKind::Completion] {
        let (pa, pb) = match kind {
            RaceKind::Dispatch => (&fa.dispatched, &fb.dispatched),
            RaceKind::Completion => (&fa.finished, &fb.finished),
        };
        // Siblings present on both sides, grouped by parent, in A's order.
        let mut groups: BTreeMap<Option<&String>, Vec<(u64, u64, &String)>> = BTreeMap::new();
        for (task, &sa) in pa {
            let Some(&sb) = pb.get(task) else { continue };
            let parent = fa.parent.get(task).and_then(|p| p.as_ref());
            if fb.parent.get(task).and_then(|p| p.as_ref()) != parent {
                continue; // moved to another parent: not siblings on both sides
            }
            groups.entry(parent).or_default().push((sa, sb, task));
        }
        for (parent, mut group) in groups {
            group.sort();
            let ranks: Vec<u64> = group.iter().map(|g| g.1).collect();
            total += count_inversions(&ranks);
            for w in group.windows(2) {
                let ((_, sb1, t1), (_, sb2, t2)) = (w[0], w[1]);
                if sb2 < sb1 && listed.len() < MAX_RACES_LISTED {
                    listed.push(Race {
                        kind,
                        parent: parent.cloned(),
                        first: t1.clone(),
                        second: t2.clone(),
                        a: interleaving(a, fa, kind, t1, t2),
                        b: interleaving(b, fb, kind, t1, t2),
                    });
                }
            }
        }
    }
    (listed, total)
}

/// Pairs `i < j` with `v[i] > v[j]` (merge sort, O(n log n)).
fn count_inversions(v: &[u64]) -> u64 {
    if v.len() < 2 {
        return 0;
    }
    let (l, r) = v.split_at(v.len() / 2);
    let mut count = count_inversions(l) + count_inversions(r);
    let (mut l, mut r) = (l.to_vec(), r.to_vec());
    l.sort_unstable();
    r.sort_unstable();
    let mut j = 0;
    for x in &l {
        while j < r.len() && r[j] < *x {
            j += 1;
        }
        count += j as u64;
    }
    count
}

/// The records of tasks `x` and `y` on one side, from the first record of either to the
/// later of their `kind` events, compactly rendered (`seq time kind task#attempt`).
fn interleaving(records: &[Record], facts: &Facts, kind: RaceKind, x: &str, y: &str) -> Vec<String> {
    let at = |task: &str| match kind {
        RaceKind::Dispatch => facts.dispatched.get(task).copied(),
        RaceKind::Completion => facts.finished.get(task).copied(),
    };
    let from = [x, y].iter().filter_map(|t| facts.dispatched.get(*t).copied()).min();
    let to = at(x).max(at(y));
    let (Some(to), from) = (to, from) else { return Vec::new() };
    let from = from.unwrap_or(to).min(to) as usize;
    let to = (to as usize).min(records.len().saturating_sub(1));
    let mut lines: Vec<String> = records
        .get(from..=to)
        .unwrap_or(&[])
        .iter()
        .enumerate()
        .filter(|(_, r)| task_of(&r.event).is_some_and(|t| t == x || t == y))
        .map(|(i, r)| compact((from + i) as u64, r))
        .collect();
    if lines.len() > MAX_INTERLEAVING_LINES {
        let tail = lines.split_off(lines.len() - MAX_INTERLEAVING_LINES / 2);
        lines.truncate(MAX_INTERLEAVING_LINES / 2 - 1);
        lines.push("...".into());
        lines.extend(tail);
    }
    lines
}

fn compact(seq: u64, r: &Record) -> String {
    let attempt = match &r.event {
        Event::AttemptDispatched(e) => Some(e.attempt),
        Event::AttemptExited(e) => Some(e.attempt),
        Event::AttemptKillRequested(e) => Some(e.attempt),
        Event::RetryScheduled(e) => Some(e.attempt),
        _ => None,
    };
    let task = task_of(&r.event).unwrap_or("");
    let mut s = format!("{seq:>5} {:>7}ms {} {task}", r.time_ms, r.event.name());
    if let Some(n) = attempt {
        s += &format!("#{n}");
    }
    if let Event::TaskFinished(f) = &r.event {
        s += &format!(" {}", f.state.name());
    }
    s
}

fn side_by_side(a: &[String], b: &[String]) -> String {
    let width = a.iter().map(|l| l.chars().count()).max().unwrap_or(0).max(1);
    let mut out = format!("    {:<width$} | {}\n", "A", "B");
    for i in 0..a.len().max(b.len()) {
        let l = a.get(i).map_or("", String::as_str);
        let r = b.get(i).map_or("", String::as_str);
        out += &format!("    {l:<width$} | {r}\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inversions_are_counted() {
        assert_eq!(count_inversions(&[]), 0);
        assert_eq!(count_inversions(&[1, 2, 3]), 0);
        assert_eq!(count_inversions(&[3, 2, 1]), 3);
        assert_eq!(count_inversions(&[2, 1, 4, 3]), 2);
    }
}
