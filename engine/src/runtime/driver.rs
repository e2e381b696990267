//! The tokio driver of a real run: turns the world (child exits, timers, Ctrl-C) into
//! inputs, appends and commits each step's records *before* performing their effects
//! (the write-ahead rule), then spawns, kills and arms timers as the decisions say.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use orch_log_format::Options;
use tokio::sync::mpsc;

use super::process::{self, ChildEnv, Exit};
use super::store::Store;
use crate::core::{actions, Action, Core};
use crate::graph::Graph;
use crate::journal::Journal;
use crate::record::{AttemptExited, CancelRequested, Event, Record, TimerFired, TimerKey};
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
enum Incoming {
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
    Interrupt,
}

/// Runs a compiled workflow with real processes. `observe` sees every record after it
/// was committed, with the state it led to (for progress output).
pub fn run_processes(
    graph: Arc<Graph>,
    config: &RunConfig,
    mut observe: impl FnMut(&Record, &State),
) -> Result<State, RuntimeError> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(RuntimeError::Tokio)?;
    runtime.block_on(async move {
        let mut journal = Journal::create(&config.store.log_dir(&config.run_id), config.log)?;
        let (tx, mut rx) = mpsc::unbounded_channel::<Incoming>();
        let interrupt_tx = tx.clone();
        // The SIGINT handler is installed here, before any child is spawned: with
        // `ctrl_c()` inside the spawned task it was only installed once the loop first
        // yielded, and a Ctrl-C in that window killed orch outright (children orphaned,
        // no cancelled record). A stream also keeps a second Ctrl-C from falling between
        // two `ctrl_c()` calls.
        let mut sigint =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).map_err(RuntimeError::Signal)?;
        tokio::spawn(async move {
            while sigint.recv().await.is_some() {
                if interrupt_tx.send(Incoming::Interrupt).is_err() {
                    return;
                }
            }
        });
        // ORCH_STORE must be absolute: the default store is the relative `.orch`, which
        // named the wrong place for any child started with its own `cwd`.
        let store = std::path::absolute(config.store.root()).unwrap_or_else(|_| config.store.root().to_path_buf());
        let env = ChildEnv { run_id: config.run_id.clone(), store };
        let mut shell = Shell {
            graph: graph.clone(),
            env,
            blobs: config.store.blobs_dir(),
            tx,
            start: Instant::now(),
            groups: BTreeMap::new(),
            kill_grace: config.kill_grace,
        };
        let mut core = Core::new();
        let mut records = Vec::new();
        let mut effects = Vec::new();
        core.start(graph, "process", &mut records)?;
        let mut interrupts = 0;
        loop {
            journal.append(&records)?; // write-ahead: committed before any effect
            effects.clear();
            for r in &records {
                observe(r, core.state());
                actions(r, &mut effects);
            }
            records.clear();
            for effect in &effects {
                shell.perform(effect);
            }
            if core.state().is_finished() {
                break;
            }
            let Some(incoming) = rx.recv().await else { break };
            let now = shell.now_ms().max(core.state().now_ms());
            let input = match incoming {
                Incoming::Exited { task, attempt, exit } => {
                    shell.groups.remove(&(task.clone(), attempt));
                    Event::AttemptExited(AttemptExited {
                        task,
                        attempt,
                        status: exit.status,
                        output: exit.output,
                        output_bytes: exit.output_bytes,
                        duration_ms: exit.duration_ms,
                    })
                }
                Incoming::Timer(key) if core.state().timer_is_live(&key) => {
                    Event::TimerFired(TimerFired { timer: key })
                }
                Incoming::Timer(_) => continue,
                Incoming::GraceOver { task, attempt } => {
                    // Still running after SIGTERM and the grace period: SIGKILL. An
                    // attempt that exited is no longer in `groups`, so a recycled pid
                    // is never signalled.
                    if let Some(&pgid) = shell.groups.get(&(task, attempt)) {
                        process::signal_group(pgid, Signal::SIGKILL);
                    }
                    continue;
                }
                Incoming::Interrupt => {
                    interrupts += 1;
                    if interrupts > 1 {
                        // A second Ctrl-C: stop waiting for the grace period.
                        shell.kill_all(Signal::SIGKILL);
                        continue;
                    }
                    Event::CancelRequested(CancelRequested { task: None, reason: "interrupted (Ctrl-C)".into() })
                }
            };
            core.handle(now, input, &mut records)?;
        }
        journal.close()?;
        Ok(core.into_state())
    })
}

/// The effects side: children, their process groups, timers.
struct Shell {
    graph: Arc<Graph>,
    env: ChildEnv,
    blobs: PathBuf,
    tx: mpsc::UnboundedSender<Incoming>,
    start: Instant,
    groups: BTreeMap<(String, u32), i32>,
    kill_grace: Duration,
}

impl Shell {
    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn perform(&mut self, effect: &Action) {
        match effect {
            Action::Spawn { task, attempt } => {
                let Some(t) = self.graph.task(task) else { return };
                let tx = self.tx.clone();
                let (id, n) = (task.clone(), *attempt);
                let started = process::spawn(self.graph.task_spec(t), n, &self.env, &self.blobs, move |exit| {
                    let _ = tx.send(Incoming::Exited { task: id, attempt: n, exit });
                });
                if let Some(pgid) = started.pgid {
                    self.groups.insert((task.clone(), *attempt), pgid);
                }
            }
            Action::Kill { task, attempt } => {
                if let Some(&pgid) = self.groups.get(&(task.clone(), *attempt)) {
                    process::signal_group(pgid, Signal::SIGTERM);
                    let (tx, grace) = (self.tx.clone(), self.kill_grace);
                    let (task, attempt) = (task.clone(), *attempt);
                    tokio::spawn(async move {
                        tokio::time::sleep(grace).await;
                        let _ = tx.send(Incoming::GraceOver { task, attempt });
                    });
                }
            }
            Action::ArmTimer { key, at_ms } => {
                let tx = self.tx.clone();
                let key = key.clone();
                let deadline = tokio::time::Instant::from_std(self.start + Duration::from_millis(*at_ms));
                tokio::spawn(async move {
                    tokio::time::sleep_until(deadline).await;
                    let _ = tx.send(Incoming::Timer(key));
                });
            }
        }
    }

    fn kill_all(&self, signal: Signal) {
        for &pgid in self.groups.values() {
            process::signal_group(pgid, signal);
        }
    }
}
