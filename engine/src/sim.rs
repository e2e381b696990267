//! The simulated executor: a virtual clock and scripted children, driving the real core.
//!
//! Children behave as their spec's `sim` section says (duration, outcome per attempt,
//! output). Events due at the same virtual time are taken in an order permuted by a
//! seed, so `spec + seed → log` is a function and the property tests can explore many
//! completion orders.

use std::collections::BTreeMap;

use std::sync::Arc;

use crate::core::{actions, Action, Core};
use crate::graph::Graph;
use crate::record::{AttemptExited, Digest, Event, ExitStatus, Record, TimerFired, TimerKey};
use crate::spec::{SimBehaviour, SimOutcome, Spec};
use crate::state::{ApplyError, State};

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

#[derive(Debug, Clone)]
enum Due {
    Exit { task: String, attempt: u32, status: ExitStatus, started_ms: u64, output: String },
    Timer(TimerKey),
}

/// Queue key: time first, then a seeded shuffle of simultaneous events, then arrival.
type DueKey = (u64, u64, u64);

/// Runs `spec` under simulation, handing each step's records to `sink` as they are made
/// (input first, then its decisions). Returns the final state.
pub fn simulate<E: std::error::Error + 'static>(
    spec: Spec,
    order_seed: u64,
    mut sink: impl FnMut(&[Record]) -> Result<(), E>,
) -> Result<State, SimError<E>> {
    let mut sim = Sim { core: Core::new(), queue: BTreeMap::new(), serial: 0, order_seed, running: Vec::new() };
    let mut records = Vec::new();
    let mut effects = Vec::new();
    let graph = Arc::new(Graph::compile(spec, "spec").map_err(|e| ApplyError::BadSpec(e.to_string()))?);
    sim.core.start(graph.clone(), "sim", &mut records)?;
    sim.running = vec![None; graph.len()];
    loop {
        sink(&records).map_err(SimError::Sink)?;
        effects.clear();
        for r in &records {
            actions(r, &mut effects);
        }
        records.clear();
        sim.perform(&effects, &graph);
        if sim.core.state().is_finished() {
            return Ok(sim.core.into_state());
        }
        let (time_ms, input) = loop {
            let Some((key, due)) = sim.queue.pop_first() else {
                return Err(SimError::Stalled { time_ms: sim.core.state().now_ms() });
            };
            if let Some(input) = sim.input_for(key.0, due) {
                break (key.0, input);
            }
        };
        sim.core.handle(time_ms, input, &mut records)?;
    }
}

struct Sim {
    core: Core,
    queue: BTreeMap<DueKey, Due>,
    serial: u64,
    order_seed: u64,
    /// Start time and scheduled exit (none if it hangs) of each running attempt, so a
    /// kill can replace the exit.
    /// Indexed by task: at most one attempt of a task runs at a time.
    running: Vec<Option<(u32, u64, Option<DueKey>)>>,
}

impl Sim {
    fn perform(&mut self, effects: &[Action], graph: &Graph) {
        let now = self.core.state().now_ms();
        for effect in effects {
            match effect {
                Action::Spawn { task, attempt } => {
                    let slot = index(graph, task);
                    let behaviour = behaviour_of(graph, slot);
                    let output = behaviour.stdout.clone().unwrap_or_default();
                    let status = match behaviour.outcome(*attempt) {
                        SimOutcome::Succeed => Some(ExitStatus::Code(0)),
                        SimOutcome::Fail(code) => Some(ExitStatus::Code(code)),
                        SimOutcome::Hang => None,
                    };
                    let key = status.map(|status| {
                        let due = Due::Exit { task: task.clone(), attempt: *attempt, status, started_ms: now, output };
                        self.push(now + behaviour.duration_ms, due)
                    });
                    self.running[slot] = Some((*attempt, now, key));
                }
                Action::Kill { task, attempt } => {
                    let slot = index(graph, task);
                    let Some((_, started_ms, scheduled)) = self.running[slot].filter(|r| r.0 == *attempt) else {
                        continue; // already exited: the kill has nothing to do
                    };
                    if let Some(k) = scheduled {
                        self.queue.remove(&k);
                    }
                    let status = ExitStatus::Signal(SIM_KILL_SIGNAL);
                    let due =
                        Due::Exit { task: task.clone(), attempt: *attempt, status, started_ms, output: String::new() };
                    let key = self.push(now, due);
                    self.running[slot] = Some((*attempt, started_ms, Some(key)));
                }
                Action::ArmTimer { key, at_ms } => {
                    self.push(*at_ms, Due::Timer(key.clone()));
                }
            }
        }
    }

    /// Turns a due event into an input, or drops it (a timer nobody wants any more).
    fn input_for(&mut self, time_ms: u64, due: Due) -> Option<Event> {
        match due {
            Due::Timer(key) => {
                self.core.state().timer_is_live(&key).then_some(Event::TimerFired(TimerFired { timer: key }))
            }
            Due::Exit { task, attempt, status, started_ms, output } => {
                if let Some(t) = self.core.state().graph().and_then(|g| g.task(&task)) {
                    self.running[t as usize] = None;
                }
                Some(Event::AttemptExited(AttemptExited {
                    task,
                    attempt,
                    status,
                    output: Digest::of(output.as_bytes()),
                    output_bytes: output.len() as u64,
                    duration_ms: time_ms - started_ms,
                }))
            }
        }
    }

    fn push(&mut self, time_ms: u64, due: Due) -> DueKey {
        self.serial += 1;
        let key = (time_ms, shuffle(self.order_seed, self.serial), self.serial);
        self.queue.insert(key, due);
        key
    }
}

fn index(graph: &Graph, task: &str) -> usize {
    graph.task(task).expect("actions name tasks of the graph") as usize
}

fn behaviour_of(graph: &Graph, slot: usize) -> std::borrow::Cow<'_, SimBehaviour> {
    match &graph.task_spec(slot as u32).sim {
        Some(b) => std::borrow::Cow::Borrowed(b),
        None => std::borrow::Cow::Owned(SimBehaviour::default()),
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
