//! Real children as a `World` for the shared driver loop (`drive.rs`): child exits,
//! timers and Ctrl-C become inputs; spawn, kill and arm-timer decisions become effects.
//! The loop commits each step's records before performing them (the write-ahead rule).
//!
//! A current-thread tokio runtime runs the child-wait and timer tasks; it is driven only
//! while the loop waits for the next input (`block_on` in `next_input`), so the engine
//! itself stays single-threaded and every input is handled in the order it arrived.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use orch_log_format::Options;
use tokio::sync::mpsc;

use super::groups::Groups;
use super::process::{self, ChildEnv, Exit};
use super::store::Store;
use super::{control, hooks};
use crate::core::{Action, Core};
use crate::drive::{drive, DriveError, World};
use crate::graph::Graph;
use crate::journal::Journal;
use crate::record::{
    AttemptExited, AttemptStarted, CancelRequested, Event, HookAnswered, Record, TimerFired, TimerKey,
};
use crate::state::{ApplyError, State};

/// Why a run could not go on.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Log(#[from] orch_log_format::Error),
    #[error(transparent)]
    Store(#[from] super::store::StoreError),
    #[error("internal inconsistency (please report): {0}")]
    Apply(#[from] ApplyError),
    #[error("starting the async runtime: {0}")]
    Tokio(std::io::Error),
    #[error("installing the Ctrl-C handler: {0}")]
    Signal(std::io::Error),
    #[error("{0}")]
    Stalled(String),
    #[error(transparent)]
    Read(#[from] crate::journal::ReadError),
    #[error("the log does not re-decide: {0}")]
    Recover(#[from] crate::recover::RecoverError),
    #[error("{0}")]
    CannotResume(String),
    #[error("opening the control socket {path}: {source}")]
    Control { path: PathBuf, source: std::io::Error },
}

/// Settings of one real run.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub store: Store,
    pub run_id: String,
    pub log: Options,
    pub kill_grace: Duration,
}

/// Something that happened outside the engine.
#[derive(Debug)]
pub(super) enum Incoming {
    Exited {
        task: String,
        attempt: u32,
        exit: Exit,
    },
    Timer(TimerKey),
    /// The grace period after SIGTERM of an attempt is over.
    GraceOver {
        task: String,
        attempt: u32,
    },
    /// Ctrl-C, or a request to terminate (SIGTERM, SIGHUP): why the run is cancelled.
    Interrupt(&'static str),
    /// orch was continued after a stop (SIGCONT).
    Continued,
    /// A request on the control socket.
    Control(Box<control::Pending>),
    /// A hook ended with this answer.
    HookDone(Box<HookAnswered>),
}

/// Drives `core` on from `records` (a step not yet committed) in `world`, committing
/// every step to `journal` before its effects and showing each committed record, with
/// the state its step led to, to `observe`; closes the journal at the end.
pub(super) fn drive_journaled<W: World<Error = std::convert::Infallible>>(
    core: Core,
    records: Vec<Record>,
    world: &mut W,
    mut journal: Journal,
    mut observe: impl FnMut(&Record, &State),
) -> Result<State, RuntimeError> {
    let state = drive(core, records, world, |records, state| {
        journal.append(records)?;
        for r in records {
            observe(r, state);
        }
        Ok::<(), orch_log_format::Error>(())
    })
    .map_err(|e| match e {
        DriveError::Apply(a) => RuntimeError::Apply(a),
        DriveError::Commit(l) => RuntimeError::Log(l),
        DriveError::World(never) => match never {},
        stalled @ DriveError::Stalled { .. } => RuntimeError::Stalled(stalled.to_string()),
    })?;
    journal.close()?;
    Ok(state)
}

/// Starts a run of `graph` under `executor` and drives it to the end (see `drive_journaled`).
pub(super) fn start_journaled<W: World<Error = std::convert::Infallible>>(
    graph: Arc<Graph>,
    executor: &str,
    world: &mut W,
    journal: Journal,
    observe: impl FnMut(&Record, &State),
) -> Result<State, RuntimeError> {
    let mut core = Core::new();
    let mut records = Vec::new();
    core.start(graph, executor, &mut records)?;
    drive_journaled(core, records, world, journal, observe)
}

/// Runs a compiled workflow with real processes. `observe` sees every record once it
/// is committed, with the state its step led to (for progress output).
pub fn run_processes(
    graph: Arc<Graph>,
    config: &RunConfig,
    observe: impl FnMut(&Record, &State),
) -> Result<State, RuntimeError> {
    let mut world = ProcessWorld::new(config)?;
    let log = config.store.log_dir(&config.run_id);
    let journal = super::reaper::without_sigchld_in_new_threads(|| Journal::create(&log, config.log))?;
    start_journaled(graph, "process", &mut world, journal, observe)
}

/// Children, their process groups, timers, the signal handler, the control socket and
/// hooks. It reads the graph through the state (which grows with submitted tasks).
pub(super) struct ProcessWorld {
    pub(super) runtime: tokio::runtime::Runtime,
    sigchld: tokio::signal::unix::Signal,
    _sigio: tokio::signal::unix::Signal,
    pub(super) env: ChildEnv,
    blobs: PathBuf,
    pub(super) outputs: process::OutputFiles,
    pub(super) tx: mpsc::UnboundedSender<Incoming>,
    rx: mpsc::UnboundedReceiver<Incoming>,
    start: Instant,
    groups: Groups,
    kill_grace: Duration,
    interrupts: u32,
    /// Answers owed to control clients, by request number.
    pub(super) replies: BTreeMap<u64, tokio::sync::oneshot::Sender<control::Response>>,
    /// Wake hooks waiting for the previous one of the same parent to answer (a parent's
    /// hooks run one at a time, in wake order; different parents' run side by side).
    pub(super) hook_queue: BTreeMap<String, std::collections::VecDeque<(Option<String>, hooks::HookCall)>>,
    pub(super) hook_busy: std::collections::BTreeSet<String>,
    /// The process groups of the hooks running now (see `hooks::LiveHooks`).
    pub(super) hook_groups: hooks::LiveHooks,
    listener: control::Listener,
}

impl ProcessWorld {
    /// A world whose clock reads `elapsed_ms` now: 0 for a new run, the log's last time
    /// for a resumed one (logical time never goes back).
    pub(super) fn new(config: &RunConfig) -> Result<ProcessWorld, RuntimeError> {
        ProcessWorld::with_clock(config, 0)
    }

    pub(super) fn with_clock(config: &RunConfig, elapsed_ms: u64) -> Result<ProcessWorld, RuntimeError> {
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(RuntimeError::Tokio)?;
        let (tx, rx) = mpsc::unbounded_channel::<Incoming>();
        super::signals::forward_all(&runtime, &tx)?;
        // Children's exits are reaped on this thread when SIGCHLD comes, in
        // `next_input` (one wake per exit; see `reaper`). The stream exists before any
        // child does, so no exit is missed.
        let (sigchld, sigio) = {
            let _context = runtime.enter();
            let signal = |kind| tokio::signal::unix::signal(kind).map_err(RuntimeError::Signal);
            // SIGIO comes if another process opens an output file during the instant
            // orch holds a lease on it (`spawner::sole_opener`); by default it would end
            // orch. Handled, and never waited for.
            (signal(tokio::signal::unix::SignalKind::child())?, signal(tokio::signal::unix::SignalKind::io())?)
        };
        // ORCH_STORE must be absolute: the default store is the relative `.orch`, which
        // names the wrong place for any child started with its own `cwd`.
        let store = std::path::absolute(config.store.root()).unwrap_or_else(|_| config.store.root().to_path_buf());
        let run_dir = config.store.run_dir(&config.run_id);
        let socket = std::path::absolute(&run_dir).unwrap_or(run_dir).join(control::SOCKET_NAME);
        let listener = {
            let _context = runtime.enter();
            let (ptx, mut prx) = mpsc::unbounded_channel::<control::Pending>();
            let listener = control::Listener::start(&socket, ptx)
                .map_err(|e| RuntimeError::Control { path: socket.clone(), source: e })?;
            let forward = tx.clone();
            runtime.spawn(async move {
                while let Some(p) = prx.recv().await {
                    if forward.send(Incoming::Control(Box::new(p))).is_err() {
                        return;
                    }
                }
            });
            listener
        };
        Ok(ProcessWorld {
            runtime,
            sigchld,
            _sigio: sigio,
            env: ChildEnv { run_id: config.run_id.clone(), store, socket },
            blobs: config.store.blobs_dir(),
            outputs: process::OutputFiles::new(&config.store.blobs_dir()),
            tx,
            rx,
            start: Instant::now().checked_sub(Duration::from_millis(elapsed_ms)).unwrap_or_else(Instant::now),
            groups: Groups::default(),
            kill_grace: config.kill_grace,
            interrupts: 0,
            replies: BTreeMap::new(),
            hook_queue: BTreeMap::new(),
            hook_busy: Default::default(),
            hook_groups: Default::default(),
            listener,
        })
    }
}

/// A run that ended in an error (a failed log write, a stall) leaves no killed attempt's
/// remains behind either.
impl Drop for ProcessWorld {
    fn drop(&mut self) {
        self.groups.kill_left();
    }
}

impl World for ProcessWorld {
    type Error = std::convert::Infallible;

    fn perform(&mut self, action: &Action, state: &State) -> Result<Option<Event>, Self::Error> {
        let _context = self.runtime.enter();
        match action {
            Action::Spawn { task, attempt } => {
                let graph = state.graph().expect("spawns happen in a started run");
                let Some(t) = graph.task(task) else { return Ok(None) };
                let tx = self.tx.clone();
                let (id, n) = (task.clone(), *attempt);
                let lost = if graph.spec.run.lost_attempts_count { 0 } else { state.task(t).lost };
                let number = process::AttemptNumber { counted: n.saturating_sub(lost), id: n };
                let spec = graph.task_spec(t);
                let started = process::spawn(spec, number, &self.env, &self.outputs, &self.blobs, move |exit| {
                    let _ = tx.send(Incoming::Exited { task: id, attempt: n, exit });
                });
                tracing::debug!(task = %task, attempt = *attempt, pid = ?started.pgid, "spawned");
                if let (Some(pgid), Some(start_ticks)) = (started.pgid, started.start_ticks) {
                    self.groups.started((task.clone(), *attempt), pgid);
                    let pid = pgid as u32;
                    return Ok(Some(Event::AttemptStarted(AttemptStarted {
                        task: task.clone(),
                        attempt: *attempt,
                        pid,
                        start_ticks,
                    })));
                } else if let Some(pgid) = started.pgid {
                    self.groups.started((task.clone(), *attempt), pgid);
                }
            }
            Action::Kill { task, attempt } => {
                if self.groups.terminate(&(task.clone(), *attempt), self.kill_grace) {
                    let (tx, grace) = (self.tx.clone(), self.kill_grace);
                    let (task, attempt) = (task.clone(), *attempt);
                    tokio::spawn(async move {
                        tokio::time::sleep(grace).await;
                        let _ = tx.send(Incoming::GraceOver { task, attempt });
                    });
                }
            }
            Action::ArmTimer { key, at_ms } => {
                tracing::debug!(?key, at_ms = *at_ms, "timer armed");
                let (tx, key) = (self.tx.clone(), key.clone());
                // A time beyond what the clock can hold never comes: no timer.
                let Some(at) = self.start.checked_add(Duration::from_millis(*at_ms)) else { return Ok(None) };
                let deadline = tokio::time::Instant::from_std(at);
                tokio::spawn(async move {
                    tokio::time::sleep_until(deadline).await;
                    let _ = tx.send(Incoming::Timer(key));
                });
            }
            Action::Reply { request, error } => self.reply(*request, error.clone()),
            Action::RunHook { woken } => self.wake_hook(woken, state),
            Action::Finalize { outcome, aggregate } => self.finalize_hook(*outcome, *aggregate, state),
        }
        Ok(None)
    }

    fn finished(&mut self, _state: &State) {
        // The answer to the request that ended the run is written by a task of this
        // runtime, which runs only while driven: drive it until every request read is
        // answered (late ones are told the run has finished), for a second at most.
        let deadline = Instant::now() + Duration::from_secs(1);
        while self.listener.inflight() > 0 && Instant::now() < deadline {
            let rx = &mut self.rx;
            let next = self.runtime.block_on(async { tokio::time::timeout(Duration::from_millis(5), rx.recv()).await });
            if let Ok(Some(Incoming::Control(pending))) = next {
                let _ = pending.reply.send(control::Response::error("the run has finished"));
            }
        }
        // Nothing will SIGKILL what is left of killed attempts once orch is gone: their
        // grace periods are waited out (a Ctrl-C ends the wait), then SIGKILL.
        while let Some(until) = self.groups.waiting() {
            let step = until.saturating_duration_since(Instant::now()).min(Duration::from_millis(20));
            let rx = &mut self.rx;
            match self.runtime.block_on(async { tokio::time::timeout(step, rx.recv()).await }) {
                Ok(Some(Incoming::Interrupt(_))) => break,
                Ok(Some(Incoming::Control(pending))) => {
                    let _ = pending.reply.send(control::Response::error("the run has finished"));
                }
                _ => {}
            }
        }
        self.groups.kill_left();
    }

    fn next_input(&mut self, state: &State) -> Result<Option<(u64, Event)>, Self::Error> {
        loop {
            let (rx, sigchld) = (&mut self.rx, &mut self.sigchld);
            // Exits are reaped here rather than by a task of the runtime: the exit is
            // read in the same poll that reaps it, without a turn of the scheduler (which
            // costs an extra `epoll_wait`). A child that exited before its spawn
            // registered it is found here too: spawns happen on this thread, between
            // two calls. SIGCHLD's stream never ends (`None` is not expected).
            let next = self.runtime.block_on(async {
                loop {
                    tokio::select! {
                        biased;
                        incoming = rx.recv() => return incoming,
                        _ = sigchld.recv() => {
                            super::reaper::reap_ready();
                        }
                    }
                }
            });
            let Some(incoming) = next else { return Ok(None) };
            let now = self.start.elapsed().as_millis() as u64;
            let input = match incoming {
                Incoming::Exited { task, attempt, exit } => {
                    self.groups.reaped((task.clone(), attempt));
                    Event::AttemptExited(AttemptExited {
                        task,
                        attempt,
                        status: exit.status,
                        output: exit.output,
                        output_bytes: exit.output_bytes,
                        duration_ms: exit.duration_ms,
                    })
                }
                // A timer nobody wants any more (its attempt ended) never reaches the log.
                Incoming::Timer(key) if state.timer_is_live(&key) => Event::TimerFired(TimerFired { timer: key }),
                Incoming::Timer(_) => continue,
                Incoming::GraceOver { task, attempt } => {
                    self.groups.grace_over(&(task, attempt));
                    continue;
                }
                Incoming::Continued => {
                    self.groups.continue_all();
                    hooks::continue_all(&self.hook_groups);
                    continue;
                }
                Incoming::Interrupt(why) => {
                    self.interrupts += 1;
                    tracing::info!(count = self.interrupts, "{why}");
                    if self.interrupts > 1 {
                        // A second one: stop waiting for the grace period.
                        self.groups.signal_all(Signal::SIGKILL);
                        continue;
                    }
                    Event::CancelRequested(CancelRequested { task: None, reason: why.into() })
                }
                Incoming::Control(pending) => match self.control(*pending, state) {
                    Some(input) => input,
                    None => continue, // a read, answered from the state
                },
                // Nothing can end a run while a hook is out; a late answer is only dropped.
                Incoming::HookDone(_) if state.is_finished() => continue,
                Incoming::HookDone(answer) => {
                    if let Some(parent) = &answer.parent {
                        self.next_hook(parent);
                    }
                    Event::HookAnswered(*answer)
                }
            };
            return Ok(Some((now, input)));
        }
    }
}
