//! `--at SEQ`: the state of a run right after one record, explained — what runs, what is
//! ready and why it waits (which cap, which dependency), what has finished.

use orch_engine::graph::TaskIdx;
use orch_engine::record::Terminal;
use orch_engine::state::{Phase, State, WaveStatus};
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    pub seq: u64,
    pub time_ms: u64,
    pub running: Vec<Running>,
    /// Not yet running, in dispatch order for the ready ones, with the reason each waits.
    pub waiting: Vec<Waiting>,
    pub finished: Vec<Finished>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Running {
    pub task: String,
    pub attempt: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Waiting {
    pub task: String,
    pub phase: &'static str,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finished {
    pub task: String,
    pub state: Terminal,
    pub attempts: u32,
}

/// Explains `state` (folded up to and including `seq`).
pub fn snapshot(state: &State, seq: u64) -> Snapshot {
    let mut snap = Snapshot { seq, time_ms: state.now_ms(), running: vec![], waiting: vec![], finished: vec![] };
    let Some(graph) = state.graph() else { return snap };
    let ready: Vec<TaskIdx> = state.ready().collect();
    let not_ready = (0..graph.len() as TaskIdx).filter(|t| !ready.contains(t));
    for t in ready.iter().copied().chain(not_ready) {
        let task = state.task(t);
        let id = graph.id(t).to_string();
        match task.phase {
            Phase::Running { attempt, .. } => snap.running.push(Running { task: id, attempt }),
            Phase::Done(s) => snap.finished.push(Finished { task: id, state: s, attempts: task.attempts }),
            phase => {
                let reason = why_waiting(state, t, phase);
                snap.waiting.push(Waiting { task: id, phase: phase.name(), reason });
            }
        }
    }
    snap.running.sort_by(|a, b| a.task.cmp(&b.task));
    snap
}

fn why_waiting(state: &State, t: TaskIdx, phase: Phase) -> String {
    let graph = state.graph().expect("started");
    let node = graph.node(t);
    match phase {
        Phase::Ready => {
            if state.running() >= graph.global_cap() {
                return format!("global cap: {} of {} running", state.running(), graph.global_cap());
            }
            let p = node.priority;
            let by_p = state.running_by_priority()[p.index()];
            if by_p >= graph.priority_cap(p) {
                return format!("{p:?} cap: {by_p} of {} running", graph.priority_cap(p));
            }
            if let Some(cap) = graph.wave(node.wave).cap {
                let n = state.running_in_wave(node.wave);
                if n >= cap {
                    return format!("wave cap: {n} of {cap} running");
                }
            }
            "next in dispatch order".to_string()
        }
        Phase::BackingOff { attempt } => format!("retry backoff before attempt {attempt}"),
        Phase::Delegated => "waiting for its children".to_string(),
        _ => {
            let pending: Vec<&str> = graph
                .deps(t)
                .iter()
                .filter(|&&d| !matches!(state.task(d).phase, Phase::Done(Terminal::Succeeded)))
                .map(|&d| graph.id(d))
                .collect();
            if !pending.is_empty() {
                return format!("after {}", pending.join(", "));
            }
            if state.wave(node.wave).status == WaveStatus::Pending {
                let wave = graph.wave(node.wave);
                return match graph.wave_parent(node.wave) {
                    Some(p) => format!("wave {} of {} not open yet", wave.ordinal, graph.id(p)),
                    None => format!("wave {} not open yet", wave.ordinal),
                };
            }
            "waiting".to_string()
        }
    }
}

impl Snapshot {
    pub fn render(&self) -> String {
        let mut out = format!("at seq {} ({} ms)\n", self.seq, self.time_ms);
        out += &format!("running ({}):\n", self.running.len());
        for r in &self.running {
            out += &format!("  {} attempt {}\n", r.task, r.attempt);
        }
        out += &format!("waiting ({}):\n", self.waiting.len());
        for w in &self.waiting {
            out += &format!("  {} [{}] {}\n", w.task, w.phase, w.reason);
        }
        out += &format!("finished ({}):\n", self.finished.len());
        for f in &self.finished {
            out += &format!("  {} {} ({} attempts)\n", f.task, f.state.name(), f.attempts);
        }
        out
    }
}
