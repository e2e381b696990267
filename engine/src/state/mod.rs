//! `State`: everything known about a run, as a pure fold over its records.
//!
//! `apply` is the only way state changes, and the running engine and replay use the same
//! one. Besides task phases, the state keeps the scheduler's *obligations*: ordered sets
//! of consequences that a decision must still discharge (an exit to resolve, a task to
//! block, a wave to close...). They are derived from the records like everything else,
//! which lets `scheduler::decide` be a pure read of the state.

mod apply;
mod consequences;
mod lifecycle;
mod requests;
mod start;
mod submit;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use crate::graph::{Graph, GroupIdx, TaskIdx, WaveIdx};
use crate::record::{Digest, ExitStatus, KillReason, ParentWoken, Record, RunOutcome, Terminal, UpdateStatus, Verdict};

pub use lifecycle::{AttemptOutcome, Phase};
pub use requests::{CONTEXT_ITEM_OVERHEAD, MAX_CONTEXT_BYTES, MAX_CONTEXT_KEY, MAX_CONTEXT_VALUE};
pub use start::compile_started;

/// Why a record could not be applied: the log and the state disagree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("record {kind} before the run started")]
    NotStarted { kind: &'static str },
    #[error("a second run_started record")]
    AlreadyStarted,
    #[error("the run-started record carries an invalid spec: {0}")]
    BadSpec(String),
    #[error("the run-started record carries an invalid compiled graph: {0}")]
    BadGraph(String),
    #[error("unknown task {0:?}")]
    UnknownTask(String),
    #[error("unknown wave {wave} of {parent}")]
    UnknownWave { parent: String, wave: u32 },
    #[error("task {task}: {event} is not valid in phase {phase}")]
    InvalidTransition { task: String, phase: &'static str, event: &'static str },
    #[error("{0}")]
    Inconsistent(String),
    #[error("time went backwards: {time_ms} ms after {now_ms} ms")]
    TimeWentBackwards { time_ms: u64, now_ms: u64 },
    #[error("decision at {time_ms} ms does not carry its input's time ({now_ms} ms)")]
    DecisionTime { time_ms: u64, now_ms: u64 },
    #[error("record after the run finished")]
    AfterFinish,
}

/// Per-task state.
#[derive(Debug, Clone)]
pub struct TaskState {
    pub phase: Phase,
    /// Attempts dispatched so far.
    pub attempts: u32,
    /// Dependencies not yet resolved (succeeded, or terminal under `continue`).
    pub unmet: u32,
    /// Output digest of the latest attempt that exited.
    pub output: Digest,
    pub last_status: Option<ExitStatus>,
    /// Attempts lost when the engine died (they count against `max_attempts` only when
    /// `run.lost_attempts_count` is set).
    pub lost: u32,
    /// The running attempt said `delegated`: it no longer holds a slot under the caps,
    /// and its children may start while it still runs.
    pub released: bool,
    /// The running attempt's process is recorded (`attempt_started`, once per attempt).
    pub started: bool,
    /// A label set with `orch task update` (working, reviewing, reviewed, stuck).
    pub mark: Option<UpdateStatus>,
}

impl TaskState {
    /// A task not yet released, waiting on `unmet` tasks it runs after.
    pub(crate) fn waiting(unmet: u32) -> TaskState {
        TaskState {
            phase: Phase::Waiting,
            attempts: 0,
            unmet,
            output: Digest::ZERO,
            last_status: None,
            lost: 0,
            released: false,
            started: false,
            mark: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaveStatus {
    Pending,
    Open,
    Closed,
}

#[derive(Debug, Clone)]
pub struct WaveState {
    pub status: WaveStatus,
    /// Tasks of the wave not yet terminal.
    pub remaining: u32,
    pub failures: u32,
    pub stopped: bool,
}

#[derive(Debug, Clone, Default)]
pub struct GroupState {
    /// Children not yet terminal.
    pub remaining: u32,
    /// The group's children were released (root: at run start; else TaskDelegated).
    pub started: bool,
    /// A wave of this group is open or about to open.
    pub active_wave: Option<WaveIdx>,
    /// A child failure made the parent fail; the first such cause.
    pub failed: Option<String>,
    /// A `fail_parent` wave failed: later waves are skipped.
    pub skip_rest: bool,
    pub warnings: u32,
    /// The parent was cancelled while its children ran: it ends `cancelled` once they
    /// have (a parent never ends before its children when they are cancelled with it).
    pub cancelled: Option<String>,
    /// A child failed under a `hold` wave: once the children are done the parent stays
    /// delegated ("stuck") until it is settled by hand. The first such cause.
    pub held: Option<String>,
    /// The parent's wake hook answered `stop`, with its reason.
    pub stopped: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunPhase {
    NotStarted,
    Running,
    Finished(RunOutcome),
}

/// Why the run is ending early (cancel or deadline).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Cancelled,
    TimedOut,
}

impl Ending {
    pub fn kill_reason(self) -> KillReason {
        match self {
            Ending::Cancelled => KillReason::Cancel,
            Ending::TimedOut => KillReason::RunTimeout,
        }
    }

    pub fn cause(self) -> &'static str {
        match self {
            Ending::Cancelled => "run cancelled",
            Ending::TimedOut => "run timed out",
        }
    }
}

/// Dispatch order: wave ordinal, then priority (P0 first), then task id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ReadyKey {
    pub ordinal: u32,
    pub priority: u8,
    pub id_rank: u32,
    pub task: TaskIdx,
}

/// A value of the shared run context: set as a whole, or appended to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContextValue {
    Value(String),
    List(Vec<String>),
}

/// Where the run's `before_finalize` hook is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finalize {
    /// Not asked (yet, or at all: no hook, or the run is ending early).
    Idle,
    Requested,
    Answered {
        verdict: Verdict,
        reason: Option<String>,
    },
}

/// The fold of a run's records.
#[derive(Debug, Clone)]
pub struct State {
    pub(crate) graph: Option<Arc<Graph>>,
    pub(crate) tasks: Vec<TaskState>,
    pub(crate) waves: Vec<WaveState>,
    pub(crate) groups: Vec<GroupState>,
    pub(crate) run: RunPhase,
    pub(crate) ending: Option<Ending>,
    pub(crate) now_ms: u64,
    pub(crate) applied: u64,
    pub(crate) executor: String,
    /// The shared run context (`orch ctx`), a fold of `context_updated` records.
    pub(crate) context: BTreeMap<String, ContextValue>,
    /// Bytes of the context's keys and values (bounded by `MAX_CONTEXT_BYTES`).
    pub(crate) context_bytes: usize,
    /// Wake hooks run and not yet answered, per parent, oldest first: the parent's
    /// children are not done while one is out.
    pub(crate) hooks: BTreeMap<TaskIdx, VecDeque<ParentWoken>>,
    /// Why a running task is being killed by `orch task update --status cancelled
    /// --note WHY`: its cause says so when it ends.
    pub(crate) cancel_notes: BTreeMap<TaskIdx, String>,
    pub(crate) finalize: Finalize,
    /// The highest control request number seen (a resumed runtime numbers on from it).
    pub(crate) last_request: u64,

    // Obligations, each discharged by a decision (see scheduler::decide).
    pub(crate) deadline_pending: bool,
    pub(crate) answers: BTreeMap<u64, Option<String>>,
    pub(crate) wakes: VecDeque<ParentWoken>,
    pub(crate) to_stop: BTreeMap<TaskIdx, String>,
    pub(crate) to_kill: BTreeMap<TaskIdx, KillReason>,
    pub(crate) exited: BTreeSet<TaskIdx>,
    pub(crate) doomed: BTreeMap<TaskIdx, (Terminal, String)>,
    pub(crate) parents_done: BTreeSet<TaskIdx>,
    pub(crate) closable: BTreeSet<WaveIdx>,
    pub(crate) to_delegate: BTreeSet<TaskIdx>,
    pub(crate) openable: BTreeSet<WaveIdx>,
    pub(crate) ready: BTreeSet<ReadyKey>,

    // Counters that caps are checked against.
    pub(crate) running: u32,
    pub(crate) running_by_priority: [u32; 4],
    pub(crate) running_by_wave: Vec<u32>,
    pub(crate) terminal: u32,
}

impl Default for State {
    fn default() -> Self {
        State::new()
    }
}

impl State {
    pub fn new() -> State {
        State {
            graph: None,
            tasks: Vec::new(),
            waves: Vec::new(),
            groups: Vec::new(),
            run: RunPhase::NotStarted,
            ending: None,
            now_ms: 0,
            applied: 0,
            executor: String::new(),
            context: BTreeMap::new(),
            context_bytes: 0,
            hooks: BTreeMap::new(),
            cancel_notes: BTreeMap::new(),
            finalize: Finalize::Idle,
            last_request: 0,
            deadline_pending: false,
            answers: BTreeMap::new(),
            wakes: VecDeque::new(),
            to_stop: BTreeMap::new(),
            to_kill: BTreeMap::new(),
            exited: BTreeSet::new(),
            doomed: BTreeMap::new(),
            parents_done: BTreeSet::new(),
            closable: BTreeSet::new(),
            to_delegate: BTreeSet::new(),
            openable: BTreeSet::new(),
            ready: BTreeSet::new(),
            running: 0,
            running_by_priority: [0; 4],
            running_by_wave: Vec::new(),
            terminal: 0,
        }
    }

    /// Folds records from scratch. The graph of a run-started record of kind 11 is the
    /// compiled one it carries, which has no task specs (`Graph::has_tasks`): to decide
    /// or run, recover the records instead (`recover::recover`), which compiles the spec.
    pub fn fold<'a>(records: impl IntoIterator<Item = &'a Record>) -> Result<State, ApplyError> {
        let mut state = State::new();
        for r in records {
            state.apply(r)?;
        }
        Ok(state)
    }

    /// The compiled workflow (after the run-started record).
    pub fn graph(&self) -> Option<&Arc<Graph>> {
        self.graph.as_ref()
    }

    pub fn run_phase(&self) -> RunPhase {
        self.run
    }

    pub fn is_finished(&self) -> bool {
        matches!(self.run, RunPhase::Finished(_))
    }

    /// The note given with the cancel that is killing running task `t`, if any.
    pub fn cancel_note(&self, t: TaskIdx) -> Option<&str> {
        self.cancel_notes.get(&t).map(String::as_str)
    }

    pub fn ending(&self) -> Option<Ending> {
        self.ending
    }

    /// Logical time of the latest record.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// Records applied so far (= the seq the next record gets).
    pub fn records_applied(&self) -> u64 {
        self.applied
    }

    /// `sim` or `process`, from the run-started record.
    pub fn executor(&self) -> &str {
        &self.executor
    }

    pub fn task(&self, t: TaskIdx) -> &TaskState {
        &self.tasks[t as usize]
    }

    pub fn tasks(&self) -> &[TaskState] {
        &self.tasks
    }

    pub fn wave(&self, w: WaveIdx) -> &WaveState {
        &self.waves[w as usize]
    }

    pub fn group(&self, g: GroupIdx) -> &GroupState {
        &self.groups[g as usize]
    }

    /// Attempts running now (dispatched, not yet exited).
    pub fn running(&self) -> u32 {
        self.running
    }

    pub fn running_by_priority(&self) -> [u32; 4] {
        self.running_by_priority
    }

    pub fn running_in_wave(&self, w: WaveIdx) -> u32 {
        self.running_by_wave[w as usize]
    }

    /// Tasks ready to dispatch, in dispatch order.
    pub fn ready(&self) -> impl Iterator<Item = TaskIdx> + '_ {
        self.ready.iter().map(|k| k.task)
    }

    pub fn terminal_count(&self) -> u32 {
        self.terminal
    }

    /// The shared run context.
    pub fn context(&self) -> &BTreeMap<String, ContextValue> {
        &self.context
    }

    /// Wake hooks run and not yet answered, per parent.
    pub fn hooks_out(&self) -> &BTreeMap<TaskIdx, VecDeque<ParentWoken>> {
        &self.hooks
    }

    pub fn finalize(&self) -> &Finalize {
        &self.finalize
    }

    /// The highest control request number recorded so far.
    pub fn last_request(&self) -> u64 {
        self.last_request
    }

    /// Whether an answer of `p`'s wake hook can still change anything: the run is not
    /// ending, and `p` is neither over nor cancelled with its children.
    pub fn hook_matters(&self, p: TaskIdx) -> bool {
        let Some(graph) = &self.graph else { return false };
        let cancelled = graph.node(p).children.is_some_and(|g| self.groups[g as usize].cancelled.is_some());
        self.ending.is_none() && !self.tasks[p as usize].phase.is_done() && !cancelled
    }

    /// A delegated parent whose children are all done but one failed under a `hold`
    /// policy: it waits for someone to settle it.
    pub fn is_stuck(&self, t: TaskIdx) -> bool {
        self.stuck_on(t).is_some()
    }

    /// Why `t` is stuck (see `is_stuck`): the first child that failed or was cancelled
    /// under `hold`, as in `b failed`.
    pub fn stuck_on(&self, t: TaskIdx) -> Option<&str> {
        let g = self.graph.as_ref()?.node(t).children?;
        let group = &self.groups[g as usize];
        let waiting = self.tasks[t as usize].phase == Phase::Delegated && group.remaining == 0;
        group.held.as_deref().filter(|_| waiting)
    }

    /// Whether a timer is still wanted; the runtime drops timers that are not, so stale
    /// timers never reach the log.
    pub fn timer_is_live(&self, key: &crate::record::TimerKey) -> bool {
        use crate::record::TimerKey;
        let Some(graph) = &self.graph else { return false };
        if self.is_finished() {
            return false;
        }
        match key {
            TimerKey::RunDeadline => self.ending.is_none(),
            TimerKey::AttemptTimeout { task, attempt } => graph.task(task).is_some_and(
                |t| matches!(self.tasks[t as usize].phase, Phase::Running { attempt: a, kill: None } if a == *attempt),
            ),
            TimerKey::RetryBackoff { task, attempt } => graph.task(task).is_some_and(
                |t| matches!(self.tasks[t as usize].phase, Phase::BackingOff { attempt: a } if a == *attempt),
            ),
        }
    }

    /// Whether every obligation is discharged (true between inputs).
    pub fn is_quiescent(&self) -> bool {
        !self.deadline_pending
            && self.answers.is_empty()
            && self.wakes.is_empty()
            && self.to_stop.is_empty()
            && self.to_kill.is_empty()
            && self.exited.is_empty()
            && self.doomed.is_empty()
            && self.parents_done.is_empty()
            && self.closable.is_empty()
            && self.to_delegate.is_empty()
            && self.openable.is_empty()
    }
}
