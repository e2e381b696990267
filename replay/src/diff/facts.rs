//! What the semantic report needs from one log (task outcomes, waves, the run, first
//! dispatch and completion seqs, parents from the spec), gathered in one pass.

use std::collections::BTreeMap;

use rustc_hash::FxHashSet;
use std::sync::Arc;

use orch_engine::record::{Digest, Event, Record};
use orch_engine::spec::{Spec, TaskSpec};

use super::ids::Ids;
use super::{RaceKind, RunResult, TaskOutcome, WaveOutcome};

/// One task as one side knows it.
#[derive(Debug, Clone, Default)]
pub(super) struct TaskFacts {
    /// Declared by the spec (or by `declare`); otherwise only records name it, or it is
    /// only some task's parent.
    pub declared: bool,
    /// Its parent (None: the run).
    pub parent: Option<u32>,
    /// Present once an exit or a finish names the task (and, after `settle`, for every
    /// task in `order`).
    pub outcome: Option<TaskOutcome>,
    /// Seq of its first dispatch, and of its (last) `task_finished`.
    pub dispatched: Option<u64>,
    pub finished: Option<u64>,
    /// Attempts lost when the engine died (see `absorb`).
    pub lost: u32,
    /// The attempt a kill was last requested for: lost afterwards, it got its verdict
    /// from the kill and counts (as the engine counts it).
    pub killing: Option<u32>,
    /// Its entry in the side's spec (the last, for an id declared twice).
    pub spec_at: Option<u32>,
}

/// Everything the semantic report needs from one side, gathered in one pass.
#[derive(Debug, Default, Clone)]
pub(super) struct Facts {
    pub spec: Option<(String, Digest)>,
    /// That spec, parsed, when its text is the one orch writes for it (`run_started`'s
    /// own serialization): then comparing it parsed says what comparing its JSON says (a
    /// hand-written spec may spell a default out, or use an alias). None: absent,
    /// unreadable, or written otherwise. Shared: the fast path clones facts.
    pub parsed: Option<Arc<Spec>>,
    ids: Ids,
    /// By id index.
    tasks: Vec<TaskFacts>,
    /// The declared tasks in declaration order; after `settle`, then the tasks only
    /// records name, by id.
    order: Vec<u32>,
    pub waves: BTreeMap<(Option<String>, u32), WaveOutcome>,
    pub run: Option<RunResult>,
    /// Dispatches and completions before this seq on both sides are left out of the race
    /// search: 0 for whole logs; the fast path's common prefix (see `fast`).
    pub floor: u64,
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
        match &r.event {
            Event::RunStarted(s) if self.spec.is_none() => {
                self.spec = Some((s.spec.clone(), s.spec_digest));
                // An unreadable spec leaves every task a child of the run: the diff
                // still works, only sibling groups are coarser.
                if let Ok(spec) = serde_json::from_str::<Spec>(&s.spec) {
                    for (at, (id, parent)) in declarations(&spec).enumerate() {
                        let i = self.declare_one(id, parent);
                        self.tasks[i as usize].spec_at = Some(at as u32);
                    }
                    if writes_as(&spec, &s.spec) {
                        self.parsed = Some(Arc::new(spec));
                    }
                }
            }
            Event::AttemptDispatched(d) => {
                let t = self.task_mut(&d.task);
                t.dispatched.get_or_insert(seq);
            }
            Event::AttemptExited(e) => self.task_mut(&e.task).outcome.get_or_insert_default().output = Some(e.output),
            Event::AttemptKillRequested(k) => self.task_mut(&k.task).killing = Some(k.attempt),
            Event::AttemptLost(l) => {
                let t = self.task_mut(&l.task);
                if t.killing != Some(l.attempt) {
                    t.lost += 1;
                }
            }
            Event::TaskFinished(done) => {
                let t = self.task_mut(&done.task);
                // Attempts lost to an engine crash are left out: a resumed run compares
                // equal to an uninterrupted one, as its aggregates do.
                let attempts = done.attempts.saturating_sub(t.lost);
                let outcome = t.outcome.get_or_insert_default();
                outcome.state = Some(done.state);
                outcome.attempts = attempts;
                outcome.aggregate = done.aggregate;
                t.finished = Some(seq);
            }
            Event::WaveClosed(w) => {
                let outcome = WaveOutcome { failures: w.failures, stopped: w.stopped, aggregate: w.aggregate };
                self.waves.insert((w.parent.clone(), w.wave), outcome);
            }
            Event::RunFinished(done) => {
                self.run = Some(RunResult { outcome: done.outcome, aggregate: done.aggregate });
            }
            _ => {}
        }
    }

    /// The task's index, with facts made on its first mention.
    fn index(&mut self, id: &str) -> u32 {
        let i = self.ids.intern(id);
        if i as usize == self.tasks.len() {
            self.tasks.push(TaskFacts::default());
        }
        i
    }

    fn task_mut(&mut self, id: &str) -> &mut TaskFacts {
        let i = self.index(id);
        &mut self.tasks[i as usize]
    }

    /// Tasks in declaration order, each with its parent. A task declared twice keeps
    /// both places in the order and its last parent.
    pub fn declare<'s>(&mut self, tasks: impl IntoIterator<Item = (&'s str, Option<&'s str>)>) {
        for (id, parent) in tasks {
            self.declare_one(id, parent);
        }
    }

    fn declare_one(&mut self, id: &str, parent: Option<&str>) -> u32 {
        let parent = parent.map(|p| self.index(p));
        let i = self.index(id);
        let t = &mut self.tasks[i as usize];
        t.declared = true;
        t.parent = parent;
        self.order.push(i);
        i
    }

    /// After the last record: every task the spec declares or the records name has an
    /// outcome; tasks only the records name come after the declared ones, by id.
    pub fn settle(&mut self) {
        let mut unknown: Vec<u32> = (0..self.tasks.len() as u32)
            .filter(|&i| {
                let t = &self.tasks[i as usize];
                !t.declared && (t.outcome.is_some() || t.dispatched.is_some())
            })
            .collect();
        unknown.sort_unstable_by(|&x, &y| self.ids.name(x).cmp(self.ids.name(y)));
        self.order.extend(unknown);
        for &i in &self.order {
            self.tasks[i as usize].outcome.get_or_insert_default();
        }
    }

    /// The ids of `order`, each once.
    fn order(&self) -> impl Iterator<Item = &str> {
        let mut seen = vec![false; self.tasks.len()];
        self.order.iter().filter(move |&&i| !std::mem::replace(&mut seen[i as usize], true)).map(|&i| self.ids.name(i))
    }

    /// A's tasks in its order, then those only B has, in B's order: the order of every
    /// per-task section of a report. Both sides settled.
    pub fn both_orders<'f>(a: &'f Facts, b: &'f Facts) -> impl Iterator<Item = &'f str> {
        // A settled side has an outcome for exactly the tasks in its order.
        a.order().chain(b.order().filter(|id| a.outcome(id).is_none()))
    }

    /// The task's entry in `spec`, the spec this side's `run_started` holds.
    pub fn spec_entry<'s>(&self, spec: &'s Spec, id: &str) -> Option<&'s TaskSpec> {
        spec.tasks.get(self.get(id)?.spec_at? as usize)
    }

    fn get(&self, id: &str) -> Option<&TaskFacts> {
        self.ids.find(id).map(|i| &self.tasks[i as usize])
    }

    pub fn outcome(&self, id: &str) -> Option<&TaskOutcome> {
        self.get(id)?.outcome.as_ref()
    }

    /// Whether an exit, a finish or a dispatch names the task.
    pub fn named(&self, id: &str) -> bool {
        self.get(id).is_some_and(|t| t.outcome.is_some() || t.dispatched.is_some())
    }

    pub fn dispatched(&self, id: &str) -> Option<u64> {
        self.get(id)?.dispatched
    }

    pub fn finished(&self, id: &str) -> Option<u64> {
        self.get(id)?.finished
    }

    /// The seq of the task's `kind` event.
    pub fn at(&self, id: &str, kind: RaceKind) -> Option<u64> {
        match kind {
            RaceKind::Dispatch => self.dispatched(id),
            RaceKind::Completion => self.finished(id),
        }
    }

    /// The task's parent (None: the run, or a task this side does not know).
    pub fn parent(&self, id: &str) -> Option<&str> {
        self.get(id)?.parent.map(|p| self.ids.name(p))
    }

    /// Every task with a `kind` event, with its seq, in first-seen order.
    pub fn events(&self, kind: RaceKind) -> impl Iterator<Item = (&str, u64)> {
        self.tasks.iter().enumerate().filter_map(move |(i, t)| {
            let seq = match kind {
                RaceKind::Dispatch => t.dispatched,
                RaceKind::Completion => t.finished,
            }?;
            Some((self.ids.name(i as u32), seq))
        })
    }
}

/// Whether `spec` serializes to exactly `text`: compared as it is written, without a copy
/// of a spec that may take tens of megabytes.
fn writes_as(spec: &Spec, text: &str) -> bool {
    struct Same<'t>(&'t [u8]);
    impl std::io::Write for Same<'_> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            match self.0.strip_prefix(buf) {
                Some(rest) => {
                    self.0 = rest;
                    Ok(buf.len())
                }
                None => Err(std::io::Error::other("the text differs")),
            }
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut same = Same(text.as_bytes());
    serde_json::to_writer(&mut same, spec).is_ok() && same.0.is_empty()
}

/// The spec's tasks in declaration order with their parents (a task's own `parent`, else
/// that of the wave listing it).
pub(super) fn declarations(spec: &Spec) -> impl Iterator<Item = (&str, Option<&str>)> {
    let mut wave_parent: BTreeMap<&str, Option<&str>> = BTreeMap::new();
    for w in &spec.waves {
        for t in &w.tasks {
            wave_parent.insert(t, w.parent.as_deref());
        }
    }
    spec.tasks.iter().map(move |t| {
        let parent = t.parent.as_deref().or_else(|| wave_parent.get(t.id.as_str()).copied().flatten());
        (t.id.as_str(), parent)
    })
}

/// The ids of `tasks` that `declarations` gives, in its order, with their parents.
pub(super) fn declared_among<'s>(spec: &'s Spec, tasks: &FxHashSet<&str>) -> Vec<(&'s str, Option<&'s str>)> {
    declarations(spec).filter(|(id, _)| tasks.contains(id)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use orch_engine::record::{AttemptDispatched, AttemptLost, RunStarted, TaskFinished, Terminal};

    fn record(event: Event) -> Record {
        Record::new(0, event)
    }

    fn dispatched(task: &str) -> Record {
        record(Event::AttemptDispatched(AttemptDispatched { task: task.into(), attempt: 1, deadline_ms: None }))
    }

    fn finished(task: &str) -> Record {
        let done =
            TaskFinished { task: task.into(), state: Terminal::Succeeded, attempts: 1, cause: None, aggregate: None };
        record(Event::TaskFinished(done))
    }

    #[test]
    fn tasks_only_records_name_follow_the_declared_ones_by_id() {
        let spec = r#"{"task":[{"id":"z","command":"true"},{"id":"m","command":"true","parent":"z"}]}"#;
        let started = RunStarted {
            spec: spec.into(),
            spec_digest: Digest::of(spec.as_bytes()),
            executor: "sim".into(),
            image: None,
        };
        let lost = record(Event::AttemptLost(AttemptLost { task: "lost-only".into(), attempt: 1 }));
        let records = [
            record(Event::RunStarted(started)),
            dispatched("b"),
            finished("c"),
            lost,
            dispatched("a"),
            dispatched("m"),
        ];
        let f = Facts::of(&records);
        // Declared first (declaration order), then the undeclared ones a record names, by
        // id; a task only lost is not named.
        assert_eq!(f.order().collect::<Vec<_>>(), ["z", "m", "a", "b", "c"]);
        assert_eq!(f.parent("m"), Some("z"));
        assert_eq!(f.parent("a"), None);
        assert!(f.named("c") && !f.named("lost-only"));
        assert_eq!((f.dispatched("b"), f.finished("c"), f.dispatched("m")), (Some(1), Some(2), Some(5)));
        assert!(f.outcome("z").is_some() && f.outcome("lost-only").is_none());
    }

    #[test]
    fn an_unreadable_spec_leaves_every_task_undeclared() {
        let started =
            RunStarted { spec: "not json".into(), spec_digest: Digest::default(), executor: "sim".into(), image: None };
        let f = Facts::of(&[record(Event::RunStarted(started)), finished("y"), dispatched("x")]);
        assert_eq!(f.order().collect::<Vec<_>>(), ["x", "y"]);
        assert!(f.parsed.is_none());
    }
}
