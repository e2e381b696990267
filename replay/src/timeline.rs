//! The timeline of a run: every attempt as an interval (dispatched → exited) and every
//! task's recorded moments (ready, first dispatch, delegated, finished), folded from the
//! records. Rollups, the HTML report and the trace export are all read off this one fold,
//! so they agree with each other and with the log. Works on live logs: an attempt still
//! running has no end yet.

use std::collections::BTreeMap;
use std::sync::Arc;

use orch_engine::graph::{Graph, TaskIdx, WaveIdx, ROOT};
use orch_engine::record::{Event, ExitStatus, KillReason, Record, Terminal, UpdateStatus};
use orch_engine::state::State;

/// One attempt of one task, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub task: TaskIdx,
    pub attempt: u32,
    /// Seq of its `attempt_dispatched` record.
    pub dispatch_seq: u64,
    pub start_ms: u64,
    /// Logical time of its `attempt_exited` / `attempt_lost` record; None while it runs.
    pub end_ms: Option<u64>,
    /// Seq of the record that ended it.
    pub end_seq: Option<u64>,
    pub end: AttemptEnd,
    /// Why it was killed, when a kill was requested.
    pub killed: Option<KillReason>,
    pub output_bytes: u64,
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptEnd {
    Running,
    Exited(ExitStatus),
    Lost,
}

impl Attempt {
    /// A one-word outcome, used to colour and filter: `ok`, `failed`, `timed_out`,
    /// `cancelled`, `lost` or `running`.
    pub fn outcome(&self) -> &'static str {
        match (self.end, self.killed) {
            (AttemptEnd::Running, _) => "running",
            (AttemptEnd::Lost, _) => "lost",
            (AttemptEnd::Exited(ExitStatus::Code(0)), _) => "ok",
            (_, Some(KillReason::Timeout)) => "timed_out",
            (_, Some(_)) => "cancelled",
            (AttemptEnd::Exited(_), None) => "failed",
        }
    }

    /// Its end, or `now_ms` while it still runs.
    pub fn end_or(&self, now_ms: u64) -> u64 {
        self.end_ms.unwrap_or(now_ms).max(self.start_ms)
    }
}

/// One task's recorded moments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskTimes {
    /// When it could first have been dispatched: its wave opened, it existed (a task
    /// created at run time), and every dependency had finished (the latest of these).
    /// None until all happened.
    pub ready_ms: Option<u64>,
    pub first_dispatch_ms: Option<u64>,
    /// End of its own last attempt (before it waits for its children, if it has any).
    pub own_end_ms: Option<u64>,
    pub delegated_ms: Option<u64>,
    pub finished_ms: Option<u64>,
    pub state: Option<Terminal>,
    /// Indices into `Timeline::attempts`, in order.
    pub attempts: Vec<usize>,
}

/// The fold: the compiled workflow, every attempt, every task's moments.
#[derive(Debug, Clone)]
pub struct Timeline {
    /// None when the log has no (readable) run-started record.
    pub graph: Option<Arc<Graph>>,
    pub attempts: Vec<Attempt>,
    pub tasks: Vec<TaskTimes>,
    /// When each wave opened (by wave index).
    pub wave_opened_ms: Vec<Option<u64>>,
    /// Attempts holding a slot after each record that changed the count, as `(time_ms,
    /// running)` (several changes at one time keep the last). An attempt whose task
    /// delegated while it ran gave its slot back then, though its process may run on.
    pub concurrency: Vec<(u64, u32)>,
    /// Most attempts holding a slot at once, counted record by record as the scheduler
    /// did: what the caps bound.
    pub peak_concurrency: u32,
    /// Time during which at least one attempt ran (up to now for a live run).
    pub busy_ms: u64,
    /// Logical time of the last record.
    pub now_ms: u64,
    pub finished: bool,
}

/// Folds `records` as far as they apply and returns that state: what the readers that
/// hold only records (a live or damaged log included) take the compiled graph from, so
/// the spec is parsed and compiled once, by the fold, never again here.
pub fn fold_prefix(records: &[Record]) -> State {
    let mut state = State::new();
    for r in records {
        if state.apply(r).is_err() {
            break;
        }
    }
    state
}

impl Timeline {
    /// The timeline of `records`, folding them first for the graph (see [`fold_prefix`]).
    /// A caller that folded them already passes its state to [`Timeline::of_state`].
    pub fn of(records: &[Record]) -> Timeline {
        Timeline::of_state(&fold_prefix(records), records)
    }

    /// The timeline of `records`, with the compiled graph taken from `state`, a fold of
    /// (at least a prefix of) the same records. The graph may grow as a run goes on
    /// (tasks submitted at run time are appended, indices stay stable), so the state's
    /// latest graph covers every task any of these records names.
    pub fn of_state(state: &State, records: &[Record]) -> Timeline {
        let graph = state.graph().cloned();
        let (n, w) = graph.as_ref().map_or((0, 0), |g| (g.len(), g.waves.len()));
        let mut tl = Timeline {
            graph: None,
            attempts: Vec::new(),
            tasks: Vec::new(),
            wave_opened_ms: Vec::new(),
            concurrency: Vec::new(),
            peak_concurrency: 0,
            busy_ms: 0,
            now_ms: 0,
            finished: false,
        };
        // Per task: the index of its attempt in flight.
        let mut open: Vec<Option<usize>> = Vec::new();
        let mut started = false;
        // Attempts running (for the busy time), and those of them holding a slot.
        let mut running = 0u32;
        let mut held = 0u32;
        let mut released: Vec<bool> = Vec::new();
        let mut busy_since = 0u64;
        // Tasks created at run time: their submissions awaiting an answer (request → id
        // and time), then, once accepted, when each was created (it cannot be ready
        // before it exists, though the wave it joins may have opened long before).
        let mut submitted: BTreeMap<u64, (String, u64)> = BTreeMap::new();
        let mut created: Vec<Option<u64>> = vec![None; n];
        for (seq, r) in records.iter().enumerate() {
            tl.now_ms = tl.now_ms.max(r.time_ms);
            if let Event::RunStarted(_) = &r.event {
                // Only the first one counts (the fold rejects a second).
                if !started {
                    started = true;
                    tl.graph = graph.clone();
                    tl.tasks = vec![TaskTimes::default(); n];
                    tl.wave_opened_ms = vec![None; w];
                    open = vec![None; n];
                    released = vec![false; n];
                }
                continue;
            }
            // Borrowed, not cloned: an Arc clone per record is two atomic operations.
            let Some(graph) = graph.as_deref().filter(|_| started) else { continue };
            let lookup = |id: &str| graph.task(id);
            match &r.event {
                Event::WaveOpened(o) => {
                    let group = match &o.parent {
                        None => Some(ROOT),
                        Some(p) => lookup(p).and_then(|p| graph.node(p).children),
                    };
                    if let Some(&w) = group.and_then(|g| graph.group(g).waves.get(o.wave as usize)) {
                        tl.wave_opened_ms[w as usize] = Some(r.time_ms);
                    }
                }
                Event::AttemptDispatched(d) => {
                    let Some(t) = lookup(&d.task) else { continue };
                    let i = tl.attempts.len();
                    tl.attempts.push(Attempt {
                        task: t,
                        attempt: d.attempt,
                        dispatch_seq: seq as u64,
                        start_ms: r.time_ms,
                        end_ms: None,
                        end_seq: None,
                        end: AttemptEnd::Running,
                        killed: None,
                        output_bytes: 0,
                    });
                    let task = &mut tl.tasks[t as usize];
                    task.first_dispatch_ms.get_or_insert(r.time_ms);
                    task.attempts.push(i);
                    open[t as usize] = Some(i);
                    if running == 0 {
                        busy_since = r.time_ms;
                    }
                    running += 1;
                    held += 1;
                    tl.peak_concurrency = tl.peak_concurrency.max(held);
                    tl.push_concurrency(r.time_ms, held);
                }
                Event::AttemptKillRequested(k) => {
                    if let Some(i) = lookup(&k.task).and_then(|t| open[t as usize]) {
                        tl.attempts[i].killed.get_or_insert(k.reason);
                    }
                }
                Event::AttemptExited(e) => {
                    if let Some(t) = lookup(&e.task) {
                        if let Some(i) = open[t as usize].take() {
                            let a = &mut tl.attempts[i];
                            (a.end_ms, a.end_seq) = (Some(r.time_ms), Some(seq as u64));
                            (a.end, a.output_bytes) = (AttemptEnd::Exited(e.status), e.output_bytes);
                            tl.tasks[t as usize].own_end_ms = Some(r.time_ms);
                            running = tl.attempt_ended(r.time_ms, running, busy_since);
                            if !std::mem::take(&mut released[t as usize]) {
                                debug_assert!(held > 0, "an attempt ended holding a slot nobody counted");
                                held = held.saturating_sub(1);
                            }
                            tl.push_concurrency(r.time_ms, held);
                        }
                    }
                }
                Event::AttemptLost(e) => {
                    if let Some(t) = lookup(&e.task) {
                        if let Some(i) = open[t as usize].take() {
                            let a = &mut tl.attempts[i];
                            (a.end_ms, a.end_seq, a.end) = (Some(r.time_ms), Some(seq as u64), AttemptEnd::Lost);
                            tl.tasks[t as usize].own_end_ms = Some(r.time_ms);
                            running = tl.attempt_ended(r.time_ms, running, busy_since);
                            if !std::mem::take(&mut released[t as usize]) {
                                debug_assert!(held > 0, "an attempt ended holding a slot nobody counted");
                                held = held.saturating_sub(1);
                            }
                            tl.push_concurrency(r.time_ms, held);
                        }
                    }
                }
                // A running task that delegates gives its slot back (the fold's rule: its
                // attempt is not being killed, and it had not delegated already).
                Event::TaskUpdated(u) if u.status == UpdateStatus::Delegated => {
                    if let Some(t) = lookup(&u.task) {
                        let open_unkilled = open[t as usize].is_some_and(|i| tl.attempts[i].killed.is_none());
                        if open_unkilled && !released[t as usize] {
                            released[t as usize] = true;
                            debug_assert!(held > 0, "a running attempt holds a slot");
                            held = held.saturating_sub(1);
                            tl.push_concurrency(r.time_ms, held);
                        }
                    }
                }
                Event::TaskDelegated(d) => {
                    if let Some(t) = lookup(&d.task) {
                        tl.tasks[t as usize].delegated_ms = Some(r.time_ms);
                    }
                }
                Event::TaskFinished(f) => {
                    if let Some(t) = lookup(&f.task) {
                        let task = &mut tl.tasks[t as usize];
                        (task.finished_ms, task.state) = (Some(r.time_ms), Some(f.state));
                    }
                }
                Event::TaskSubmitted(s) => {
                    #[derive(serde::Deserialize)]
                    struct Id {
                        id: String,
                    }
                    if let Ok(Id { id }) = serde_json::from_str(&s.task) {
                        submitted.insert(s.request, (id, r.time_ms));
                    }
                }
                Event::RequestAnswered(a) => {
                    let accepted = submitted.remove(&a.request).filter(|_| a.error.is_none());
                    if let Some((t, at)) = accepted.and_then(|(id, at)| Some((lookup(id.as_str())?, at))) {
                        created[t as usize] = Some(at);
                    }
                }
                Event::RunFinished(_) => tl.finished = true,
                _ => {}
            }
        }
        if running > 0 {
            tl.busy_ms += tl.now_ms - busy_since;
        }
        tl.derive_ready(&created);
        tl
    }

    /// The attempts of task `t`, in order.
    pub fn attempts_of(&self, t: TaskIdx) -> impl Iterator<Item = &Attempt> + '_ {
        self.tasks[t as usize].attempts.iter().map(|&i| &self.attempts[i])
    }

    /// Task `t`'s recorded span: first dispatch to finish (or to now, or to its last
    /// attempt's end), in ms; 0 if it never ran.
    pub fn span_ms(&self, t: TaskIdx) -> u64 {
        let task = &self.tasks[t as usize];
        let Some(start) = task.first_dispatch_ms else { return 0 };
        task.finished_ms.or(task.own_end_ms).unwrap_or(self.now_ms).saturating_sub(start)
    }

    /// The wave whose opening released task `t`, with its index.
    pub fn wave_of(&self, t: TaskIdx) -> Option<WaveIdx> {
        self.graph.as_ref().map(|g| g.node(t).wave)
    }

    /// One attempt fewer running: the busy time closes when none is left.
    fn attempt_ended(&mut self, time_ms: u64, running: u32, busy_since: u64) -> u32 {
        let running = running.saturating_sub(1);
        if running == 0 {
            self.busy_ms += time_ms.saturating_sub(busy_since);
        }
        running
    }

    fn push_concurrency(&mut self, time_ms: u64, running: u32) {
        match self.concurrency.last_mut() {
            Some(last) if last.0 == time_ms => last.1 = running,
            _ => self.concurrency.push((time_ms, running)),
        }
    }

    /// `created`: when each task made at run time was created (None for the spec's).
    fn derive_ready(&mut self, created: &[Option<u64>]) {
        let Some(graph) = self.graph.clone() else { return };
        for t in 0..graph.len() {
            let node = graph.node(t as TaskIdx);
            let mut ready = self.wave_opened_ms[node.wave as usize];
            if let (Some(opened), Some(&Some(at))) = (ready, created.get(t)) {
                ready = Some(opened.max(at));
            }
            for &d in graph.deps(t as TaskIdx) {
                ready = match (ready, self.tasks[d as usize].finished_ms) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    _ => None,
                };
            }
            self.tasks[t].ready_ms = ready;
        }
    }
}
