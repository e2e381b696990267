//! The scheduler: a pure function from state to decisions. No clock, no randomness, no
//! IO — time is the state's logical time, jitter comes from the recorded seed.
//!
//! `decide` looks at the state's obligations in a fixed order and returns the decisions
//! of the first kind that has any; the caller applies them and asks again until nothing
//! is left (see `core::Core::handle`). Every set it reads is ordered, so ties resolve
//! the same way on every machine: wave ordinal, then priority, then task id.

use crate::graph::TaskIdx;
use crate::record::{
    AttemptDispatched, AttemptKillRequested, ChildrenStopped, Event, ExitStatus, FinalizeRequested, RequestAnswered,
    RetryScheduled, RunDeadlineArmed, RunFinished, TaskDelegated, TaskFinished, Terminal, WaveClosed, WaveOpened,
};
use crate::spec::{Backoff, Jitter, RetryPolicy};
use crate::state::{AttemptOutcome, Finalize, Phase, RunPhase, State};

/// The decisions due in `state`, or nothing when the state is quiescent.
pub fn decide(state: &State) -> Vec<Event> {
    let mut out = Vec::new();
    decide_into(state, &mut out);
    out
}

/// `decide`, appending to `out` (the core reuses one buffer for every round).
pub fn decide_into(state: &State, out: &mut Vec<Event>) {
    if state.run_phase() != RunPhase::Running {
        return;
    }
    let graph = state.graph().expect("a running state has a graph");
    let id = |t: TaskIdx| graph.id(t).to_string();

    if state.deadline_pending {
        let at_ms = state.now_ms().saturating_add(graph.spec.run.timeout_ms.unwrap_or(0));
        out.push(Event::RunDeadlineArmed(RunDeadlineArmed { at_ms }));
        return;
    }
    if !state.answers.is_empty() {
        out.extend(
            state
                .answers
                .iter()
                .map(|(&request, error)| Event::RequestAnswered(RequestAnswered { request, error: error.clone() })),
        );
        return;
    }
    if !state.wakes.is_empty() {
        out.extend(state.wakes.iter().cloned().map(Event::ParentWoken));
        return;
    }
    if !state.to_stop.is_empty() {
        out.extend(
            state
                .to_stop
                .iter()
                .map(|(&p, reason)| Event::ChildrenStopped(ChildrenStopped { parent: id(p), reason: reason.clone() })),
        );
        return;
    }
    if !state.to_kill.is_empty() {
        out.extend(state.to_kill.iter().map(|(&t, &reason)| {
            let Phase::Running { attempt, .. } = state.task(t).phase else {
                unreachable!("to_kill holds running tasks only")
            };
            Event::AttemptKillRequested(AttemptKillRequested { task: id(t), attempt, reason })
        }));
        return;
    }
    if !state.exited.is_empty() {
        out.extend(state.exited.iter().map(|&t| resolve_exit(state, t)));
        return;
    }
    if !state.doomed.is_empty() {
        out.extend(state.doomed.iter().map(|(&t, (terminal, cause))| {
            Event::TaskFinished(TaskFinished {
                task: id(t),
                state: *terminal,
                attempts: state.task(t).attempts,
                cause: Some(cause.clone()),
                aggregate: None,
            })
        }));
        return;
    }
    if !state.parents_done.is_empty() {
        out.extend(state.parents_done.iter().map(|&p| {
            let g = graph.node(p).children.expect("parents have children");
            let group = state.group(g);
            let (terminal, cause) = match (&group.cancelled, &group.failed) {
                (Some(why), _) => (Terminal::Cancelled, Some(why.clone())),
                (None, Some(child)) => (Terminal::Failed, Some(format!("child {child}"))),
                (None, None) => (Terminal::Succeeded, None),
            };
            Event::TaskFinished(TaskFinished {
                task: id(p),
                state: terminal,
                attempts: state.task(p).attempts,
                cause,
                aggregate: Some(state.aggregate_of(&graph.group(g).tasks)),
            })
        }));
        return;
    }
    if !state.closable.is_empty() {
        out.extend(state.closable.iter().map(|&w| {
            let wave = graph.wave(w);
            let ws = state.wave(w);
            Event::WaveClosed(WaveClosed {
                parent: graph.wave_parent(w).map(id),
                wave: wave.ordinal,
                failures: ws.failures,
                stopped: ws.stopped,
                aggregate: state.aggregate_of(&wave.tasks),
            })
        }));
        return;
    }
    if !state.to_delegate.is_empty() {
        out.extend(state.to_delegate.iter().map(|&t| Event::TaskDelegated(TaskDelegated { task: id(t) })));
        return;
    }
    if !state.openable.is_empty() {
        out.extend(state.openable.iter().map(|&w| {
            Event::WaveOpened(WaveOpened { parent: graph.wave_parent(w).map(id), wave: graph.wave(w).ordinal })
        }));
        return;
    }
    let before = out.len();
    dispatch(state, out);
    if out.len() > before {
        return;
    }
    if state.all_done() {
        let aggregate = state.aggregate_of(&(0..graph.len() as TaskIdx).collect::<Vec<_>>());
        let outcome = state.outcome();
        // The auditor sees a run that ran to its end, not one cancelled or timed out.
        let audited = graph.spec.run.before_finalize.is_some() && state.ending().is_none();
        match state.finalize() {
            Finalize::Idle if audited => out.push(Event::FinalizeRequested(FinalizeRequested { outcome, aggregate })),
            // Waiting for the hook's answer, unless a cancel came meanwhile.
            Finalize::Requested if state.ending().is_none() => {}
            _ => out.push(Event::RunFinished(RunFinished { outcome, aggregate })),
        }
    }
}

/// Admission control: ready tasks in canonical order, each admitted only while the
/// global, its priority's and its wave's caps all have room.
fn dispatch(state: &State, out: &mut Vec<Event>) {
    let graph = state.graph().expect("running");
    let mut free = graph.global_cap().saturating_sub(state.running());
    if free == 0 || state.ready.is_empty() {
        return;
    }
    let mut by_priority = state.running_by_priority();
    let mut by_wave: std::collections::BTreeMap<u32, u32> = std::collections::BTreeMap::new();
    for key in &state.ready {
        let t = key.task;
        let node = graph.node(t);
        let p = node.priority;
        if by_priority[p.index()] >= graph.priority_cap(p) {
            continue;
        }
        let wave_running = by_wave.entry(node.wave).or_insert_with(|| state.running_in_wave(node.wave));
        if graph.wave(node.wave).cap.is_some_and(|cap| *wave_running >= cap) {
            continue;
        }
        *wave_running += 1;
        by_priority[p.index()] += 1;
        let spec = graph.task_spec(t);
        out.push(Event::AttemptDispatched(AttemptDispatched {
            task: graph.id(t).to_string(),
            attempt: state.task(t).attempts + 1,
            deadline_ms: spec.more().timeout_ms.map(|ms| state.now_ms().saturating_add(ms)),
        }));
        free -= 1;
        if free == 0 {
            break;
        }
    }
}

/// What follows an attempt's end: delegate to children, finish, or retry.
fn resolve_exit(state: &State, t: TaskIdx) -> Event {
    let graph = state.graph().expect("running");
    let task = state.task(t);
    let Phase::Exited { attempt, outcome } = task.phase else { unreachable!("exited holds exited tasks only") };
    let id = graph.id(t).to_string();
    let spec = graph.task_spec(t);
    let finished = |terminal: Terminal, cause: Option<String>| {
        Event::TaskFinished(TaskFinished {
            task: id.clone(),
            state: terminal,
            attempts: attempt,
            cause,
            aggregate: None,
        })
    };
    match outcome {
        AttemptOutcome::Succeeded => match (graph.node(t).children, state.ending()) {
            (Some(_), None) => Event::TaskDelegated(TaskDelegated { task: id.clone() }),
            (Some(_), Some(ending)) => finished(Terminal::Cancelled, Some(ending.cause().to_string())),
            (None, _) => finished(Terminal::Succeeded, None),
        },
        // A task that delegated while running, lost to an engine crash: its own work may
        // well be done and its children run on — it waits for them (as if it had exited
        // 0), rather than failing for the engine's crash.
        AttemptOutcome::Lost if task.released && state.ending().is_none() => {
            Event::TaskDelegated(TaskDelegated { task: id.clone() })
        }
        AttemptOutcome::Cancelled(reason) => {
            let cause = match state.ending() {
                Some(ending) => ending.cause().to_string(),
                None => match reason {
                    crate::record::KillReason::Timeout => "killed at its timeout".to_string(),
                    crate::record::KillReason::Stop => "killed: its parent's hook said stop".to_string(),
                    _ => match state.cancel_note(t) {
                        Some(note) => format!("killed by a cancel request ({note})"),
                        None => "killed by a cancel request".to_string(),
                    },
                },
            };
            finished(Terminal::Cancelled, Some(cause))
        }
        AttemptOutcome::Failed(_) | AttemptOutcome::TimedOut | AttemptOutcome::Lost => {
            let policy = &spec.more().retry;
            // Lost attempts (the engine died under them) may be left uncounted.
            let uncounted = if graph.spec.run.lost_attempts_count { 0 } else { task.lost };
            // A task that delegated while running is not retried: its children already run.
            let retry = attempt - uncounted < policy.max_attempts && state.ending().is_none() && !task.released;
            if retry {
                let delay_ms = retry_delay_ms(policy, graph.spec.run.seed, &id, attempt);
                return Event::RetryScheduled(RetryScheduled {
                    task: id.clone(),
                    attempt: attempt + 1,
                    delay_ms,
                    at_ms: state.now_ms().saturating_add(delay_ms),
                });
            }
            let terminal = if policy.max_attempts > 1 && !task.released {
                Terminal::Exhausted
            } else if outcome == AttemptOutcome::TimedOut {
                Terminal::TimedOut
            } else {
                Terminal::Failed
            };
            let cause = match outcome {
                AttemptOutcome::Failed(ExitStatus::Code(c)) => format!("exit code {c}"),
                AttemptOutcome::Failed(ExitStatus::Signal(s)) => format!("killed by signal {s}"),
                AttemptOutcome::TimedOut => format!("timed out after {} ms", spec.more().timeout_ms.unwrap_or(0)),
                _ => "lost when the engine stopped".to_string(),
            };
            let cause = if task.released {
                format!("{cause} (after it delegated: not retried)")
            } else if policy.max_attempts > 1 {
                format!("{attempt} attempts; last: {cause}")
            } else {
                cause
            };
            finished(terminal, Some(cause))
        }
    }
}

/// The delay before attempt `failed_attempt + 1`, exactly as the policy says:
/// fixed → `base_ms`; exponential → `min(base_ms · 2^(k-1), max_ms)` for retry `k`;
/// seeded jitter → a deterministic point in `[d/2, d]` drawn from (seed, task, attempt).
pub fn retry_delay_ms(policy: &RetryPolicy, seed: u64, task: &str, failed_attempt: u32) -> u64 {
    let k = failed_attempt.max(1);
    let delay = match policy.backoff {
        Backoff::Fixed => policy.base_ms,
        Backoff::Exponential => {
            let factor = 1u64.checked_shl(k - 1).unwrap_or(u64::MAX);
            policy.base_ms.saturating_mul(factor).min(policy.max_ms.unwrap_or(u64::MAX))
        }
    };
    match policy.jitter {
        Jitter::None => delay,
        Jitter::Seeded => {
            let low = delay / 2;
            let span = delay - low + 1;
            low + seeded_u64(seed, task, failed_attempt) % span
        }
    }
}

/// A deterministic 64-bit draw: blake3 of (seed, task id, attempt).
fn seeded_u64(seed: u64, task: &str, attempt: u32) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(b"orch-jitter-v1");
    h.update(&seed.to_le_bytes());
    h.update(&(task.len() as u32).to_le_bytes());
    h.update(task.as_bytes());
    h.update(&attempt.to_le_bytes());
    let mut out = [0u8; 8];
    out.copy_from_slice(&h.finalize().as_bytes()[..8]);
    u64::from_le_bytes(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(backoff: Backoff, base_ms: u64, max_ms: Option<u64>, jitter: Jitter) -> RetryPolicy {
        RetryPolicy { max_attempts: 10, backoff, base_ms, max_ms, jitter }
    }

    #[test]
    fn fixed_and_exponential_delays_follow_the_policy() {
        let fixed = policy(Backoff::Fixed, 250, None, Jitter::None);
        assert_eq!((1..5).map(|k| retry_delay_ms(&fixed, 0, "t", k)).collect::<Vec<_>>(), [250; 4]);
        let exp = policy(Backoff::Exponential, 100, Some(500), Jitter::None);
        assert_eq!((1..6).map(|k| retry_delay_ms(&exp, 0, "t", k)).collect::<Vec<_>>(), [100, 200, 400, 500, 500]);
        let huge = policy(Backoff::Exponential, u64::MAX / 2, None, Jitter::None);
        assert_eq!(retry_delay_ms(&huge, 0, "t", 70), u64::MAX);
    }

    #[test]
    fn seeded_jitter_is_deterministic_and_within_half_to_full() {
        let p = policy(Backoff::Fixed, 1000, None, Jitter::Seeded);
        let draws: Vec<u64> = (1..50).map(|k| retry_delay_ms(&p, 7, "t", k)).collect();
        assert!(draws.iter().all(|d| (500..=1000).contains(d)));
        assert_eq!(draws, (1..50).map(|k| retry_delay_ms(&p, 7, "t", k)).collect::<Vec<_>>());
        assert_ne!(draws, (1..50).map(|k| retry_delay_ms(&p, 8, "t", k)).collect::<Vec<_>>());
    }
}
