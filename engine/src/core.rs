//! The sans-IO core: one input in, the input plus every decision it causes out, with the
//! state advanced by applying exactly those records. The simulated executor, the process
//! runtime, replay and the property tests all drive this same `Core`.

use std::sync::Arc;

use orch_log_format::layout::MAX_PAYLOAD_LEN;

use crate::graph::{Graph, GraphImage};
use crate::record::{Digest, Event, ParentWoken, Record, RunOutcome, RunStarted, TimerKey};
use crate::scheduler::decide_into;
use crate::spec::Spec;
use crate::state::{compile_started, ApplyError, State};

/// An effect the driver must perform for a decision (replay performs none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Spawn {
        task: String,
        attempt: u32,
    },
    Kill {
        task: String,
        attempt: u32,
    },
    ArmTimer {
        key: TimerKey,
        at_ms: u64,
    },
    /// Answer control request `request` (its input and answer are committed).
    Reply {
        request: u64,
        error: Option<String>,
    },
    /// Run `parent`'s wake hook for this wake and record its answer.
    RunHook {
        woken: ParentWoken,
    },
    /// Run the `before_finalize` hook and record its verdict.
    Finalize {
        outcome: RunOutcome,
        aggregate: Digest,
    },
}

#[derive(Debug, Default, Clone)]
pub struct Core {
    state: State,
}

impl Core {
    pub fn new() -> Core {
        Core::default()
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn into_state(self) -> State {
        self.state
    }

    /// Applies `input` at `time_ms`, then decides and applies until the scheduler has
    /// nothing more to say. Appends the input and the decisions, in log order, to `out`.
    pub fn handle(&mut self, time_ms: u64, input: Event, out: &mut Vec<Record>) -> Result<(), ApplyError> {
        if !input.is_input() {
            return Err(ApplyError::Inconsistent(format!("{} is a decision, not an input", input.name())));
        }
        let record = Record::new(time_ms, input);
        self.apply_input(&record)?;
        out.push(record);
        self.settle(out)
    }

    /// Applies an input. A core decides, so it needs every task's spec: a run-started
    /// record's spec is compiled (a fold would load the compiled graph the record
    /// carries, which has none), and its compiled graph checked against it.
    fn apply_input(&mut self, record: &Record) -> Result<(), ApplyError> {
        match &record.event {
            Event::RunStarted(r) if self.state.graph().is_none() => {
                self.state.apply_started(record, Arc::new(compile_started(r)?))
            }
            _ => self.state.apply(record),
        }
    }

    /// Starts a run of an already compiled workflow: the run-started input is made from
    /// `graph.spec` and applied without parsing the spec back out of it.
    pub fn start(&mut self, graph: Arc<Graph>, executor: &str, out: &mut Vec<Record>) -> Result<(), ApplyError> {
        let mut started = run_started(&graph.spec, executor);
        if let Event::RunStarted(r) = &mut started {
            // Unless spec and image together would not fit one record (a spec over
            // ~170 MB): the record is then of kind 1, and a fold compiles the spec.
            let image = GraphImage::of(&graph);
            if r.spec.len() + image.encoded_len_bound() <= MAX_PAYLOAD_LEN - 1024 {
                r.image = Some(Box::new(image));
            }
        }
        let record = Record::new(0, started);
        self.state.apply_started(&record, graph)?;
        out.push(record);
        self.settle(out)
    }

    /// Applies a recorded input (re-deciding a log: `recover`), then decides until
    /// quiescent. Appends only the decisions to `out`: the input is the caller's record,
    /// applied where it lies (not copied: a run-started record holds the whole spec).
    pub fn handle_recorded(&mut self, record: &Record, out: &mut Vec<Record>) -> Result<(), ApplyError> {
        if !record.event.is_input() {
            return Err(ApplyError::Inconsistent(format!("{} is a decision, not an input", record.event.name())));
        }
        self.apply_input(record)?;
        self.settle(out)
    }

    /// `handle_recorded` for the run-started record, whose spec the caller has already
    /// compiled into `graph` (`recover_compiled`).
    pub fn start_recorded(
        &mut self,
        record: &Record,
        graph: Arc<Graph>,
        out: &mut Vec<Record>,
    ) -> Result<(), ApplyError> {
        self.state.apply_started(record, graph)?;
        self.settle(out)
    }

    /// Decides and applies until quiescent.
    fn settle(&mut self, out: &mut Vec<Record>) -> Result<(), ApplyError> {
        // Each round discharges at least one obligation, and every obligation is about a
        // task or a wave; far more rounds than that means the scheduler is looping.
        let graph_size = self.state.graph().map_or(0, |g| g.len() + g.waves.len());
        let limit = 8 * graph_size + 64;
        let mut decisions = Vec::new();
        for _ in 0..limit {
            decisions.clear();
            decide_into(&self.state, &mut decisions);
            if decisions.is_empty() {
                return Ok(());
            }
            for d in decisions.drain(..) {
                let record = Record::new(self.state.now_ms(), d);
                self.state.apply(&record)?;
                out.push(record);
            }
        }
        Err(ApplyError::Inconsistent("the scheduler did not settle".into()))
    }
}

/// The run-started input for `spec` (already effective: defaults and overrides applied).
pub fn run_started(spec: &Spec, executor: &str) -> Event {
    let json = serde_json::to_string(spec).expect("a spec always serializes");
    Event::RunStarted(RunStarted {
        spec_digest: Digest::of(json.as_bytes()),
        spec: json,
        executor: executor.into(),
        image: None,
    })
}

/// The effects of one record, appended to `out`. `state` is the state after the step
/// (only static facts of the spec are read from it: whether a parent has a hook).
pub fn actions(record: &Record, state: &State, out: &mut Vec<Action>) {
    match &record.event {
        Event::AttemptDispatched(d) => {
            out.push(Action::Spawn { task: d.task.clone(), attempt: d.attempt });
            if let Some(at_ms) = d.deadline_ms {
                let key = TimerKey::AttemptTimeout { task: d.task.clone(), attempt: d.attempt };
                out.push(Action::ArmTimer { key, at_ms });
            }
        }
        Event::AttemptKillRequested(k) => out.push(Action::Kill { task: k.task.clone(), attempt: k.attempt }),
        Event::RetryScheduled(r) if r.delay_ms > 0 => {
            let key = TimerKey::RetryBackoff { task: r.task.clone(), attempt: r.attempt };
            out.push(Action::ArmTimer { key, at_ms: r.at_ms });
        }
        Event::RunDeadlineArmed(d) => out.push(Action::ArmTimer { key: TimerKey::RunDeadline, at_ms: d.at_ms }),
        Event::RequestAnswered(a) => out.push(Action::Reply { request: a.request, error: a.error.clone() }),
        Event::ParentWoken(w) => {
            // The hook runs unless no answer could change anything any more: the run or
            // the parent is being cancelled, or the parent is over (the wake is recorded
            // all the same; nothing waits for such an answer).
            let graph = state.graph().expect("a parent was woken: the run has started");
            if graph.task(&w.parent).is_some_and(|p| graph.node(p).hook && state.hook_matters(p)) {
                out.push(Action::RunHook { woken: w.clone() });
            }
        }
        Event::FinalizeRequested(f) => out.push(Action::Finalize { outcome: f.outcome, aggregate: f.aggregate }),
        _ => {}
    }
}
