//! Library use: run a workflow whose tasks are async closures in this process, with the
//! same log, replay and summary as `orch run` (the same driver loop, `drive.rs`).
//!
//! The spec gives the structure (dependencies, waves, caps, retries, timeouts); the
//! closures do the work, keyed by task id. A closure returns its output bytes on
//! success or an exit code on failure; a timeout or cancel aborts its future.
//!
//! ```
//! use orch_engine::inproc::InProcess;
//! use orch_engine::record::RunOutcome;
//! use orch_engine::spec::{RetryPolicy, Spec, TaskSpec};
//!
//! // The structure: `count` runs after `fetch`, with one retry.
//! let mut spec = Spec::default();
//! spec.tasks.push(TaskSpec::new("fetch"));
//! let mut count = TaskSpec::new("count");
//! count.after = vec!["fetch".into()];
//! count.more_mut().retry = RetryPolicy { max_attempts: 2, ..Default::default() };
//! spec.tasks.push(count);
//!
//! let dir = tempfile::tempdir().unwrap();
//! let state = InProcess::new()
//!     .task("fetch", |_ctx| async { Ok(b"42 lines".to_vec()) })
//!     .task("count", |ctx| async move {
//!         // Fails once, then succeeds: the spec's retry policy applies.
//!         if ctx.attempt == 1 { Err(1) } else { Ok(b"42".to_vec()) }
//!     })
//!     .run(spec, &dir.path().join("log"))
//!     .unwrap();
//! assert_eq!(state.outcome(), RunOutcome::Succeeded);
//!
//! // The log replays like any run's.
//! let records = orch_engine::journal::read_records(&dir.path().join("log")).unwrap();
//! assert_eq!(orch_engine::state::State::fold(&records).unwrap().outcome(), RunOutcome::Succeeded);
//! ```

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use orch_log_format::{Durability, Options};
use tokio::sync::mpsc;

use crate::core::Action;
use crate::drive::{start_and_drive, DriveError, World};
use crate::graph::Graph;
use crate::journal::Journal;
use crate::record::{AttemptExited, Digest, Event, ExitStatus, HookAnswered, TimerFired, Verdict};
use crate::spec::Spec;
use crate::state::State;

/// What a task closure is told about its attempt.
#[derive(Debug, Clone)]
pub struct TaskContext {
    pub task: String,
    pub attempt: u32,
}

/// A task's result: its output bytes, or the exit code of its failure.
pub type TaskResult = Result<Vec<u8>, i32>;

type TaskFn = Arc<dyn Fn(TaskContext) -> Pin<Box<dyn Future<Output = TaskResult> + Send>> + Send + Sync>;

/// Why an in-process run failed to complete.
#[derive(Debug, thiserror::Error)]
pub enum InProcessError {
    #[error("invalid spec: {0}")]
    Spec(#[from] crate::spec::Error),
    #[error(transparent)]
    Log(#[from] orch_log_format::Error),
    #[error("task {0:?} has no closure")]
    MissingTask(String),
    #[error("starting the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("{0}")]
    Drive(String),
}

/// Exit status of an attempt whose future was aborted (timeout or cancel).
pub const ABORTED_SIGNAL: i32 = 15;

/// A set of task closures, keyed by task id.
#[derive(Default, Clone)]
pub struct InProcess {
    tasks: BTreeMap<String, TaskFn>,
}

impl std::fmt::Debug for InProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcess").field("tasks", &self.tasks.keys().collect::<Vec<_>>()).finish()
    }
}

impl InProcess {
    pub fn new() -> InProcess {
        InProcess::default()
    }

    /// Registers the closure that performs task `id`.
    pub fn task<F, Fut>(mut self, id: &str, f: F) -> InProcess
    where
        F: Fn(TaskContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = TaskResult> + Send + 'static,
    {
        self.tasks.insert(id.to_string(), Arc::new(move |ctx| Box::pin(f(ctx))));
        self
    }

    /// Runs `spec` to the end, writing its log to `log_dir` (durability `batch`).
    pub fn run(self, spec: Spec, log_dir: &Path) -> Result<State, InProcessError> {
        // Every task runs its closure, recorded as the command `["in-process", ID]` so the
        // log says what ran; a task with children and no closure is a pure group.
        let mut spec = spec;
        let has_children: std::collections::BTreeSet<String> = spec
            .tasks
            .iter()
            .filter_map(|t| t.parent.clone())
            .chain(spec.waves.iter().filter_map(|w| w.parent.clone()))
            .collect();
        for t in &mut spec.tasks {
            if self.tasks.contains_key(&t.id) {
                t.command = Some(crate::spec::Command::Argv(vec!["in-process".into(), t.id.clone()]));
            } else if !has_children.contains(&t.id) {
                return Err(InProcessError::MissingTask(t.id.clone()));
            }
        }
        let graph = Arc::new(Graph::compile(spec, "spec")?);
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(InProcessError::Runtime)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let mut world =
            InProcessWorld { tasks: self.tasks, runtime, tx, rx, start: Instant::now(), running: BTreeMap::new() };
        let mut journal =
            Journal::create(log_dir, Options { durability: Durability::default(), ..Options::default() })?;
        let state = start_and_drive(graph, "in_process", &mut world, |records, _| journal.append(records)).map_err(
            |e| match e {
                DriveError::Commit(l) => InProcessError::Log(l),
                other => InProcessError::Drive(other.to_string()),
            },
        )?;
        journal.close()?;
        Ok(state)
    }
}

enum Incoming {
    /// `result` None: the attempt's future was aborted (timeout or cancel).
    Done {
        task: String,
        attempt: u32,
        result: Option<TaskResult>,
        duration_ms: u64,
    },
    Timer(crate::record::TimerKey),
}

struct InProcessWorld {
    tasks: BTreeMap<String, TaskFn>,
    runtime: tokio::runtime::Runtime,
    tx: mpsc::UnboundedSender<Incoming>,
    rx: mpsc::UnboundedReceiver<Incoming>,
    start: Instant,
    running: BTreeMap<(String, u32), tokio::task::AbortHandle>,
}

impl World for InProcessWorld {
    type Error = std::convert::Infallible;

    fn perform(&mut self, action: &Action, _state: &State) -> Result<Option<Event>, Self::Error> {
        match action {
            Action::Spawn { task, attempt } => {
                let Some(f) = self.tasks.get(task).cloned() else { return Ok(None) };
                let (tx, task, attempt) = (self.tx.clone(), task.clone(), *attempt);
                let key = (task.clone(), attempt);
                let started = Instant::now();
                let handle = self.runtime.spawn(async move {
                    let result = f(TaskContext { task: task.clone(), attempt }).await;
                    let duration_ms = started.elapsed().as_millis() as u64;
                    let _ = tx.send(Incoming::Done { task, attempt, result: Some(result), duration_ms });
                });
                self.running.insert(key, handle.abort_handle());
            }
            Action::Kill { task, attempt } => {
                if let Some(handle) = self.running.remove(&(task.clone(), *attempt)) {
                    handle.abort();
                    let _ = self.tx.send(Incoming::Done {
                        task: task.clone(),
                        attempt: *attempt,
                        result: None,
                        duration_ms: 0,
                    });
                }
            }
            Action::ArmTimer { key, at_ms } => {
                let (tx, key) = (self.tx.clone(), key.clone());
                // A time beyond what the clock can hold never comes: no timer.
                let Some(at) = self.start.checked_add(Duration::from_millis(*at_ms)) else { return Ok(None) };
                let deadline = tokio::time::Instant::from_std(at);
                self.runtime.spawn(async move {
                    tokio::time::sleep_until(deadline).await;
                    let _ = tx.send(Incoming::Timer(key));
                });
            }
            // No control socket in process: nobody sends requests.
            Action::Reply { .. } => {}
            // Hooks are commands, and this executor runs closures, not commands: a hook
            // in a spec run here goes on (wake) and accepts (finalize), and says so.
            Action::RunHook { woken } => {
                tracing::warn!(parent = %woken.parent, "in-process runs do not run hooks: answering continue");
                let answer = HookAnswered {
                    parent: Some(woken.parent.clone()),
                    child: woken.child.clone(),
                    verdict: Verdict::Continue,
                    reason: Some("in-process run: hooks are not run".into()),
                };
                return Ok(Some(Event::HookAnswered(answer)));
            }
            Action::Finalize { .. } => {
                tracing::warn!("in-process runs do not run hooks: accepting before_finalize");
                let answer = HookAnswered {
                    parent: None,
                    child: None,
                    verdict: Verdict::Accept,
                    reason: Some("in-process run: hooks are not run".into()),
                };
                return Ok(Some(Event::HookAnswered(answer)));
            }
        }
        Ok(None)
    }

    fn next_input(&mut self, state: &State) -> Result<Option<(u64, Event)>, Self::Error> {
        loop {
            // Driving the runtime while waiting runs the closures and the timers.
            let Some(incoming) = self.runtime.block_on(self.rx.recv()) else { return Ok(None) };
            let now = self.start.elapsed().as_millis() as u64;
            match incoming {
                Incoming::Timer(key) if state.timer_is_live(&key) => {
                    return Ok(Some((now, Event::TimerFired(TimerFired { timer: key }))))
                }
                Incoming::Timer(_) => continue,
                Incoming::Done { task, attempt, result, duration_ms } => {
                    if self.running.remove(&(task.clone(), attempt)).is_none() && result.is_some() {
                        continue; // finished just as it was aborted: the abort's report counts
                    }
                    let (status, output) = match result {
                        Some(Ok(bytes)) => (ExitStatus::Code(0), bytes),
                        Some(Err(code)) => (ExitStatus::Code(code), Vec::new()),
                        None => (ExitStatus::Signal(ABORTED_SIGNAL), Vec::new()),
                    };
                    let exited = AttemptExited {
                        task,
                        attempt,
                        status,
                        output: Digest::of(&output),
                        output_bytes: output.len() as u64,
                        duration_ms,
                    };
                    return Ok(Some((now, Event::AttemptExited(exited))));
                }
            }
        }
    }
}
