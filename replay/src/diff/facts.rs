//! What the semantic report needs from one log (task outcomes, waves, the run, first
//! dispatch and completion seqs, parents from the spec), gathered in one pass, and the
//! comparison of the two specs.

use std::collections::{BTreeMap, BTreeSet};

use orch_engine::record::{Digest, Event, Record};
use orch_engine::spec::Spec;

use super::{RunResult, SpecDiff, TaskOutcome, WaveOutcome};

// ---- facts gathered from one log ---------------------------------------------------

/// Everything the semantic report needs from one side, gathered in one pass.
#[derive(Debug, Default, Clone)]
pub(super) struct Facts {
    pub spec: Option<(String, Digest)>,
    /// Declaration order of the tasks (from the spec).
    pub order: Vec<String>,
    /// Task → its parent (None: the run).
    pub parent: BTreeMap<String, Option<String>>,
    pub tasks: BTreeMap<String, TaskOutcome>,
    pub waves: BTreeMap<(Option<String>, u32), WaveOutcome>,
    pub run: Option<RunResult>,
    /// Task → seq of its first dispatch / its task_finished.
    pub dispatched: BTreeMap<String, u64>,
    pub finished: BTreeMap<String, u64>,
    /// Dispatches and completions before this seq on both sides are left out of the race
    /// search: 0 for whole logs; the fast path's common prefix (see `fast`).
    pub floor: u64,
    /// Task → attempts lost when the engine died (see `absorb`).
    pub lost: BTreeMap<String, u32>,
}

impl Facts {
    pub fn of(records: &[Record]) -> Facts {
        let mut f = Facts::default();
        for (seq, r) in records.iter().enumerate() {
            f.absorb(seq as u64, r);
        }
        f.settle();
        f
    }

    /// Takes in one record; records must come in seq order.
    pub fn absorb(&mut self, seq: u64, r: &Record) {
        let f = self;
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
            Event::AttemptLost(l) => *f.lost.entry(l.task.clone()).or_default() += 1,
            Event::TaskFinished(done) => {
                // Attempts lost to an engine crash are left out: a resumed run compares
                // equal to an uninterrupted one, as its aggregates do.
                let lost = f.lost.get(&done.task).copied().unwrap_or(0);
                let t = f.tasks.entry(done.task.clone()).or_default();
                t.state = Some(done.state);
                t.attempts = done.attempts.saturating_sub(lost);
                t.aggregate = done.aggregate;
                f.finished.insert(done.task.clone(), seq);
            }
            Event::WaveClosed(w) => {
                let outcome = WaveOutcome { failures: w.failures, stopped: w.stopped, aggregate: w.aggregate };
                f.waves.insert((w.parent.clone(), w.wave), outcome);
            }
            Event::RunFinished(done) => f.run = Some(RunResult { outcome: done.outcome, aggregate: done.aggregate }),
            _ => {}
        }
    }

    /// After the last record: every task the spec declares or the records name has an
    /// outcome and a parent; tasks only the records name come after the declared ones.
    pub fn settle(&mut self) {
        let f = self;
        // Tasks the records name but the spec does not (an unreadable spec).
        let unknown: BTreeSet<String> =
            f.tasks.keys().chain(f.dispatched.keys()).filter(|id| !f.parent.contains_key(*id)).cloned().collect();
        f.order.extend(unknown);
        for id in &f.order {
            f.parent.entry(id.clone()).or_insert(None);
            f.tasks.entry(id.clone()).or_default();
        }
    }

    pub fn learn_spec(&mut self, spec: &Spec) {
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

pub(super) fn spec_diff(a: &Facts, b: &Facts) -> Option<SpecDiff> {
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
