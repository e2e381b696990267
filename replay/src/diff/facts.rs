//! What the semantic report needs from one log (task outcomes, waves, the run, first
//! dispatch and completion seqs, parents from the spec), gathered in one pass, and the
//! comparison of the two specs.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use orch_engine::record::{Digest, Event, Record};
use orch_engine::spec::{Spec, TaskSpec};

use super::{RunResult, SpecDiff, TaskOutcome, WaveOutcome};

// ---- facts gathered from one log ---------------------------------------------------

/// Per task id. A hash map (Fx: no random keys), only ever looked up: everything that
/// reaches the report is iterated in `order`, in seq order or through a sorted set. A
/// million-record log spent most of its facts time comparing ids in `BTreeMap`s.
pub(super) type ById<V> = rustc_hash::FxHashMap<String, V>;

/// Everything the semantic report needs from one side, gathered in one pass.
#[derive(Debug, Default, Clone)]
pub(super) struct Facts {
    pub spec: Option<(String, Digest)>,
    /// That spec, parsed (None: absent or unreadable). Shared: the fast path clones facts.
    pub parsed: Option<Arc<Spec>>,
    /// Declaration order of the tasks (from the spec).
    pub order: Vec<String>,
    /// Task → its parent (None: the run).
    pub parent: ById<Option<String>>,
    pub tasks: ById<TaskOutcome>,
    pub waves: BTreeMap<(Option<String>, u32), WaveOutcome>,
    pub run: Option<RunResult>,
    /// Task → seq of its first dispatch / its task_finished.
    pub dispatched: ById<u64>,
    pub finished: ById<u64>,
    /// Dispatches and completions before this seq on both sides are left out of the race
    /// search: 0 for whole logs; the fast path's common prefix (see `fast`).
    pub floor: u64,
    /// Task → attempts lost when the engine died (see `absorb`).
    pub lost: ById<u32>,
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
                    f.parsed = Some(Arc::new(spec));
                }
            }
            Event::AttemptDispatched(d) if !f.dispatched.contains_key(&d.task) => {
                f.dispatched.insert(d.task.clone(), seq);
            }
            Event::AttemptExited(e) => f.outcome(&e.task).output = Some(e.output),
            Event::AttemptLost(l) => *f.lost.entry(l.task.clone()).or_default() += 1,
            Event::TaskFinished(done) => {
                // Attempts lost to an engine crash are left out: a resumed run compares
                // equal to an uninterrupted one, as its aggregates do.
                let lost = f.lost.get(&done.task).copied().unwrap_or(0);
                let t = f.outcome(&done.task);
                t.state = Some(done.state);
                t.attempts = done.attempts.saturating_sub(lost);
                t.aggregate = done.aggregate;
                match f.finished.get_mut(&done.task) {
                    Some(at) => *at = seq,
                    None => _ = f.finished.insert(done.task.clone(), seq),
                }
            }
            Event::WaveClosed(w) => {
                let outcome = WaveOutcome { failures: w.failures, stopped: w.stopped, aggregate: w.aggregate };
                f.waves.insert((w.parent.clone(), w.wave), outcome);
            }
            Event::RunFinished(done) => f.run = Some(RunResult { outcome: done.outcome, aggregate: done.aggregate }),
            _ => {}
        }
    }

    /// The task's outcome so far, made on its first mention (without cloning its id
    /// for every record that names it).
    fn outcome(&mut self, task: &str) -> &mut TaskOutcome {
        if !self.tasks.contains_key(task) {
            self.tasks.insert(task.to_string(), TaskOutcome::default());
        }
        self.tasks.get_mut(task).expect("just made")
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
            if !f.parent.contains_key(id) {
                f.parent.insert(id.clone(), None);
            }
            if !f.tasks.contains_key(id) {
                f.tasks.insert(id.clone(), TaskOutcome::default());
            }
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
    let (sa, da) = a.spec.as_ref().map_or(("", Digest::default()), |(s, d)| (s.as_str(), *d));
    let (sb, db) = b.spec.as_ref().map_or(("", Digest::default()), |(s, d)| (s.as_str(), *d));
    if sa == sb {
        return None;
    }
    let (run, waves, tasks) = match (&a.parsed, &b.parsed) {
        (Some(x), Some(y)) => parsed_diff(a, b, x, y),
        _ => json_diff(a, b, sa, sb),
    };
    Some(SpecDiff { digests: [da, db], run, waves, tasks })
}

/// Two readable specs, compared as parsed: `[run]`, `[[wave]]`s, and the tasks whose
/// entries differ (or that one side lacks), in A's then B's declaration order. An id
/// declared twice compares its last entry, as the JSON comparison below does.
fn parsed_diff(a: &Facts, b: &Facts, x: &Spec, y: &Spec) -> (bool, bool, Vec<String>) {
    // Only looked up, never iterated: the order comes from `order`.
    let (tx, ty) = (tasks_by_id(x), tasks_by_id(y));
    let mut seen = HashSet::new();
    // `order` holds every declared id (and ids only records name, which neither spec has).
    let changed = a
        .order
        .iter()
        .chain(&b.order)
        .filter(|id| seen.insert(id.as_str()) && tx.get(id.as_str()) != ty.get(id.as_str()))
        .cloned()
        .collect();
    (x.run != y.run, x.waves != y.waves, changed)
}

fn tasks_by_id(spec: &Spec) -> HashMap<&str, &TaskSpec> {
    spec.tasks.iter().map(|t| (t.id.as_str(), t)).collect()
}

/// The fallback for a spec that does not parse as one: the two compared as JSON values.
fn json_diff(a: &Facts, b: &Facts, sa: &str, sb: &str) -> (bool, bool, Vec<String>) {
    let parse = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap_or(serde_json::Value::Null);
    let (ja, jb) = (parse(sa), parse(sb));
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
    (ja.get("run") != jb.get("run"), ja.get("wave") != jb.get("wave"), changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use orch_engine::core::run_started;
    use orch_engine::spec::{self, Command};

    fn facts(spec: &Spec) -> Facts {
        Facts::of(&[Record::new(0, run_started(spec, "sim"))])
    }

    /// Edits of a spec, each touching one part of it.
    fn edits(spec: &Spec) -> Vec<Spec> {
        let mut out = Vec::new();
        let mut e = spec.clone();
        e.run.name = Some("renamed".into());
        out.push(e);
        if let Some(last) = spec.tasks.last() {
            let mut e = spec.clone();
            e.tasks.last_mut().unwrap().command = Some(Command::Shell("echo edited".into()));
            out.push(e);
            let mut e = spec.clone();
            e.tasks.pop();
            e.waves.iter_mut().for_each(|w| w.tasks.retain(|t| *t != last.id));
            out.push(e);
            let mut e = spec.clone();
            e.tasks.insert(0, TaskSpec { id: "added".into(), ..last.clone() });
            out.push(e);
            let mut e = spec.clone();
            e.tasks.push(TaskSpec { id: spec.tasks[0].id.clone(), ..last.clone() }); // an id twice
            out.push(e);
        }
        if !spec.waves.is_empty() {
            let mut e = spec.clone();
            e.waves[0].max_concurrency = Some(99);
            out.push(e);
        }
        out
    }

    #[test]
    fn parsed_specs_compare_as_their_json_does() {
        let dirs = ["features", "examples"].map(|d| format!("{}/../fixtures/{d}", env!("CARGO_MANIFEST_DIR")));
        let mut compared = 0;
        for dir in dirs {
            for entry in std::fs::read_dir(&dir).expect("fixtures") {
                let path = entry.expect("entry").path();
                let Ok(spec) = spec::load(&path) else { continue };
                let a = facts(&spec);
                for edited in edits(&spec) {
                    let b = facts(&edited);
                    let parsed = spec_diff(&a, &b).expect("the specs differ");
                    let (mut ja, mut jb) = (a.clone(), b.clone());
                    (ja.parsed, jb.parsed) = (None, None);
                    assert_eq!(Some(&parsed), spec_diff(&ja, &jb).as_ref(), "{}", path.display());
                    compared += 1;
                }
                assert_eq!(spec_diff(&a, &a.clone()), None);
            }
        }
        assert!(compared > 50, "only {compared} edits compared");
    }
}
