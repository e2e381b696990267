//! The simulated executor: a virtual clock and scripted children, as a `World` for the
//! shared driver loop (`drive.rs`), so simulated runs go through exactly the steps real
//! ones do.
//!
//! Children behave as their spec's `sim` section says (duration, outcome per attempt,
//! output). Events due at the same virtual time are taken in an order permuted by a
//! seed, so `spec + seed → log` is a function and the property tests can explore many
//! completion orders.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;

use crate::core::Action;
use crate::drive::{start_and_drive, DriveError, World};
use crate::graph::Graph;
use crate::record::{
    AttemptExited, CancelRequested, Digest, Event, ExitStatus, HookAnswered, ParentWoken, Record, TaskSubmitted,
    TimerFired, TimerKey, Verdict,
};
use crate::spec::{SimBehaviour, SimFinalize, SimHook, SimOutcome, Spec, TaskSpec};
use crate::state::{ApplyError, Phase, State};

/// The signal a simulated kill reports (SIGTERM, as the process runtime sends first).
pub const SIM_KILL_SIGNAL: i32 = 15;

#[derive(Debug, thiserror::Error)]
pub enum SimError<E: std::error::Error + 'static> {
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error("writing records: {0}")]
    Sink(#[source] E),
    #[error("simulation stalled at {time_ms} ms: nothing is due but the run has not finished")]
    Stalled { time_ms: u64 },
}

/// Runs `spec` under simulation, handing each step's records to `sink` as they are made
/// (input first, then its decisions). Returns the final state.
pub fn simulate<E: std::error::Error + 'static>(
    spec: Spec,
    order_seed: u64,
    mut sink: impl FnMut(&[Record]) -> Result<(), E>,
) -> Result<State, SimError<E>> {
    let graph = Arc::new(Graph::compile(spec, "spec").map_err(|e| ApplyError::BadSpec(e.to_string()))?);
    let mut world = SimWorld::new(&graph, order_seed);
    start_and_drive(graph, "sim", &mut world, |records, _| sink(records)).map_err(|e| match e {
        DriveError::Apply(a) => SimError::Apply(a),
        DriveError::Commit(c) => SimError::Sink(c),
        DriveError::Stalled { time_ms } => SimError::Stalled { time_ms },
        DriveError::World(never) => match never {},
    })
}

#[derive(Debug, Clone)]
enum Due {
    Exit {
        slot: usize,
        task: String,
        attempt: u32,
        status: ExitStatus,
        started_ms: u64,
        output: String,
    },
    Timer(TimerKey),
    Cancel(Option<String>),
    /// A running task submits a sub-task (`sim.creates`).
    Submit {
        by: String,
        task: Box<TaskSpec>,
    },
    Hook(HookAnswered),
}

/// Queue key: time first, then a seeded shuffle of simultaneous events, then arrival.
type DueKey = (u64, u64, u64);

/// Scripted children on a virtual clock. It reads the graph through the state it is
/// given (which grows as tasks are submitted), and holds no copy of its own.
#[derive(Debug)]
pub struct SimWorld {
    queue: BTreeMap<DueKey, Due>,
    serial: u64,
    order_seed: u64,
    /// Indexed by task (at most one attempt of a task runs at a time): the attempt, its
    /// start, and its scheduled exit (none while it hangs), so a kill can replace it.
    running: Vec<Option<(u32, u64, Option<DueKey>)>>,
}

impl SimWorld {
    pub fn new(graph: &Graph, order_seed: u64) -> SimWorld {
        let running = vec![None; graph.len()];
        let mut world = SimWorld { queue: BTreeMap::new(), serial: 0, order_seed, running };
        for c in &graph.spec.run.sim_cancel {
            world.push(c.at_ms, Due::Cancel(c.task.clone()));
        }
        world
    }

    fn push(&mut self, time_ms: u64, due: Due) -> DueKey {
        self.serial += 1;
        let key = (time_ms, shuffle(self.order_seed, self.serial), self.serial);
        self.queue.insert(key, due);
        key
    }

    fn slot(&mut self, state: &State, task: &str) -> usize {
        let slot = graph_of(state).task(task).expect("actions name tasks of the graph") as usize;
        if slot >= self.running.len() {
            self.running.resize(slot + 1, None);
        }
        slot
    }

    /// The scripted answer of `parent`'s wake hook to the completion of `child`.
    fn hook_answer(state: &State, woken: &ParentWoken) -> HookAnswered {
        let graph = graph_of(state);
        let script = graph.task(&woken.parent).and_then(|p| graph.task_spec(p).sim.as_ref()).map(|b| b.hook);
        let failed = woken.child.as_deref().and_then(|c| graph.task(c)).and_then(|c| match state.task(c).phase {
            Phase::Done(state) if state.is_failure() => Some(state),
            _ => None,
        });
        let (verdict, reason) = match (script.unwrap_or_default(), failed) {
            (SimHook::Stop, _) => (Verdict::Stop, Some("simulated stop".to_string())),
            (SimHook::StopOnFailure, Some(state)) => {
                let child = woken.child.as_deref().unwrap_or_default();
                (Verdict::Stop, Some(format!("{child} {}", state.name())))
            }
            _ => (Verdict::Continue, None),
        };
        HookAnswered { parent: Some(woken.parent.clone()), child: woken.child.clone(), verdict, reason }
    }
}

fn graph_of(state: &State) -> &Graph {
    state.graph().expect("a simulated world acts only in a started run")
}

impl World for SimWorld {
    type Error = Infallible;

    fn perform(&mut self, action: &Action, state: &State) -> Result<Option<Event>, Infallible> {
        let now = state.now_ms();
        match action {
            Action::Spawn { task, attempt } => {
                let slot = self.slot(state, task);
                let behaviour = match graph_of(state).task_spec(slot as u32).sim.as_deref() {
                    Some(b) => std::borrow::Cow::Borrowed(b),
                    None => std::borrow::Cow::Owned(SimBehaviour::default()),
                };
                let output = behaviour.stdout.clone().unwrap_or_default();
                // A child's `orch task create` returns before it can exit: its exit comes
                // after its last submission, however short its scripted duration.
                let creating = if *attempt == 1 { behaviour.creates.len() as u64 } else { 0 };
                let duration_ms =
                    behaviour.duration_ms.max(creating.saturating_mul(behaviour.create_every_ms).saturating_add(1));
                let status = match behaviour.outcome(*attempt) {
                    SimOutcome::Succeed => Some(ExitStatus::Code(0)),
                    SimOutcome::Fail(code) => Some(ExitStatus::Code(code)),
                    SimOutcome::Hang => None,
                };
                let key = status.map(|status| {
                    let due =
                        Due::Exit { slot, task: task.clone(), attempt: *attempt, status, started_ms: now, output };
                    // The virtual clock saturates: an exit past its end comes at its end.
                    self.push(now.saturating_add(duration_ms), due)
                });
                if *attempt == 1 {
                    // The first attempt submits its sub-tasks while it runs; a retry would
                    // only be told they exist already.
                    for (i, child) in behaviour.creates.iter().enumerate() {
                        let mut child = child.clone();
                        child.parent.get_or_insert_with(|| task.clone());
                        let at = now.saturating_add((i as u64 + 1).saturating_mul(behaviour.create_every_ms));
                        self.push(at, Due::Submit { by: task.clone(), task: Box::new(child) });
                    }
                }
                self.running[slot] = Some((*attempt, now, key));
            }
            Action::Kill { task, attempt } => {
                let slot = self.slot(state, task);
                let Some((_, started_ms, scheduled)) = self.running[slot].filter(|r| r.0 == *attempt) else {
                    return Ok(None); // already exited: the kill has nothing to do
                };
                if let Some(k) = scheduled {
                    self.queue.remove(&k);
                }
                let status = ExitStatus::Signal(SIM_KILL_SIGNAL);
                let due = Due::Exit {
                    slot,
                    task: task.clone(),
                    attempt: *attempt,
                    status,
                    started_ms,
                    output: String::new(),
                };
                let key = self.push(now, due);
                self.running[slot] = Some((*attempt, started_ms, Some(key)));
            }
            Action::ArmTimer { key, at_ms } => {
                self.push(*at_ms, Due::Timer(key.clone()));
            }
            Action::Reply { .. } => {} // nobody waits on a simulated request
            Action::RunHook { woken } => {
                let answer = SimWorld::hook_answer(state, woken);
                self.push(now, Due::Hook(answer));
            }
            Action::Finalize { .. } => {
                let (verdict, reason) = match graph_of(state).spec.run.sim_finalize {
                    SimFinalize::Accept => (Verdict::Accept, None),
                    SimFinalize::Reject => (Verdict::Reject, Some("simulated rejection".to_string())),
                };
                self.push(now, Due::Hook(HookAnswered { parent: None, child: None, verdict, reason }));
            }
        }
        Ok(None)
    }

    fn next_input(&mut self, state: &State) -> Result<Option<(u64, Event)>, Infallible> {
        while let Some(((time_ms, _, _), due)) = self.queue.pop_first() {
            match due {
                // A timer nobody wants any more (its attempt ended) never reaches the log.
                Due::Timer(key) if !state.timer_is_live(&key) => continue,
                Due::Timer(key) => return Ok(Some((time_ms, Event::TimerFired(TimerFired { timer: key })))),
                Due::Cancel(task) => {
                    let reason = "simulated cancel (run.sim_cancel)".to_string();
                    return Ok(Some((time_ms, Event::CancelRequested(CancelRequested { task, reason }))));
                }
                Due::Submit { by, task } => {
                    let submitted = TaskSubmitted {
                        request: state.last_request() + 1,
                        by: Some(by),
                        task: serde_json::to_string(&task).expect("a task spec always serializes"),
                    };
                    return Ok(Some((time_ms, Event::TaskSubmitted(submitted))));
                }
                // The run may have ended (cancelled) while the hook "ran": nobody asks any more.
                Due::Hook(_) if state.is_finished() => continue,
                Due::Hook(answer) => return Ok(Some((time_ms, Event::HookAnswered(answer)))),
                Due::Exit { slot, task, attempt, status, started_ms, output } => {
                    self.running[slot] = None;
                    let exited = AttemptExited {
                        task,
                        attempt,
                        status,
                        output: Digest::of(output.as_bytes()),
                        output_bytes: output.len() as u64,
                        duration_ms: time_ms - started_ms,
                    };
                    return Ok(Some((time_ms, Event::AttemptExited(exited))));
                }
            }
        }
        Ok(None)
    }
}

/// A seeded 64-bit mix (splitmix64) of the event serial: the tie-break among events due
/// at the same virtual time.
fn shuffle(seed: u64, serial: u64) -> u64 {
    let mut z = seed ^ serial.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
