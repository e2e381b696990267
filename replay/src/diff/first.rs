//! The first seq where two logs' records differ at a level, with context, and the
//! record equality that ignores wall-clock fields.

use orch_engine::record::{Event, Record, TimerKey};

use super::{FirstDivergence, Level, Records, CONTEXT_RECORDS};
use crate::text;

// ---- first divergence ---------------------------------------------------------------

pub(super) fn first_divergence(a: &[Record], b: &[Record], level: Level) -> Option<FirstDivergence> {
    let n = a.len().max(b.len());
    let seq = (0..n).find(|&i| match (a.get(i), b.get(i)) {
        (Some(x), Some(y)) => !same_record(x, y, level),
        _ => true,
    })?;
    Some(describe(seq, &a, &b))
}

/// The report of a divergence at `seq`: both records and the context before it.
pub(super) fn describe(seq: usize, a: &dyn Records, b: &dyn Records) -> FirstDivergence {
    let context = |records: &dyn Records| -> Vec<String> {
        let from = seq.saturating_sub(CONTEXT_RECORDS).min(records.count());
        let to = seq.min(records.count());
        (from..to).filter_map(|i| records.at(i).map(|r| text::render(i as u64, &r))).collect()
    };
    let (ra, rb) = (a.at(seq), b.at(seq));
    let mut tasks = Vec::new();
    for r in [&ra, &rb].into_iter().flatten() {
        if let Some(t) = task_of(&r.event) {
            if !tasks.iter().any(|x| x == t) {
                tasks.push(t.to_string());
            }
        }
    }
    FirstDivergence {
        seq: seq as u64,
        a: ra.as_ref().map(|r| text::render(seq as u64, r)),
        b: rb.as_ref().map(|r| text::render(seq as u64, r)),
        a_record: ra.as_ref().map(|r| r.to_json(seq as u64)),
        b_record: rb.as_ref().map(|r| r.to_json(seq as u64)),
        context_a: context(a),
        context_b: context(b),
        tasks,
    }
}

/// Equality at `level` (not `outcomes`), the spec of `run_started` left out.
pub(super) fn same_record(a: &Record, b: &Record, level: Level) -> bool {
    if level == Level::Exact && a.time_ms != b.time_ms {
        return false;
    }
    match (&a.event, &b.event) {
        (Event::RunStarted(x), Event::RunStarted(y)) => x.executor == y.executor,
        _ if level == Level::Exact => a.event == b.event,
        (Event::AttemptExited(x), Event::AttemptExited(y)) => {
            x.task == y.task
                && x.attempt == y.attempt
                && x.status == y.status
                && x.output == y.output
                && x.output_bytes == y.output_bytes
        }
        (Event::RetryScheduled(x), Event::RetryScheduled(y)) => {
            x.task == y.task && x.attempt == y.attempt && x.delay_ms == y.delay_ms
        }
        (Event::AttemptDispatched(x), Event::AttemptDispatched(y)) => {
            x.task == y.task && x.attempt == y.attempt && x.deadline_ms.is_some() == y.deadline_ms.is_some()
        }
        (Event::RunDeadlineArmed(_), Event::RunDeadlineArmed(_)) => true,
        // Pids and process start times are facts of the host, different in every run.
        (Event::AttemptStarted(x), Event::AttemptStarted(y)) => x.task == y.task && x.attempt == y.attempt,
        (x, y) => x == y,
    }
}

/// The task a record is about, if any.
pub(super) fn task_of(e: &Event) -> Option<&str> {
    match e {
        Event::AttemptExited(x) => Some(&x.task),
        Event::AttemptLost(x) => Some(&x.task),
        Event::AttemptStarted(x) => Some(&x.task),
        Event::CancelRequested(x) => x.task.as_deref(),
        Event::TimerFired(x) => match &x.timer {
            TimerKey::AttemptTimeout { task, .. } | TimerKey::RetryBackoff { task, .. } => Some(task),
            TimerKey::RunDeadline => None,
        },
        Event::AttemptDispatched(x) => Some(&x.task),
        Event::AttemptKillRequested(x) => Some(&x.task),
        Event::RetryScheduled(x) => Some(&x.task),
        Event::TaskDelegated(x) => Some(&x.task),
        Event::TaskFinished(x) => Some(&x.task),
        Event::ParentWoken(x) => Some(&x.parent),
        // A submission is about the task that asked (the new task's id is in its JSON).
        Event::TaskSubmitted(x) => x.by.as_deref(),
        Event::TaskUpdated(x) => Some(&x.task),
        Event::ContextUpdated(x) => x.by.as_deref(),
        Event::HookAnswered(x) => x.parent.as_deref(),
        Event::ChildrenStopped(x) => Some(&x.parent),
        Event::RequestAnswered(_) | Event::FinalizeRequested(_) => None,
        Event::RunStarted(_)
        | Event::RunDeadlineArmed(_)
        | Event::WaveOpened(_)
        | Event::WaveClosed(_)
        | Event::RunFinished(_) => None,
    }
}
