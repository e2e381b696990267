//! A task's lifecycle as an explicit state machine: one `match (phase, event)` lists
//! every legal transition; anything else is an error naming both, never a silent
//! flag update (the habit of Temporal's sdk-core).

use crate::record::{ExitStatus, KillReason, Terminal};

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Dependencies, its wave, or its parent not done yet.
    Waiting,
    /// Eligible; waiting only for a free slot under the caps.
    Ready,
    Running {
        attempt: u32,
        kill: Option<KillReason>,
    },
    /// The attempt ended; a decision (retry, finish, delegate) is due in this step.
    Exited {
        attempt: u32,
        outcome: AttemptOutcome,
    },
    /// Waiting for the retry timer of `attempt` (the next one).
    BackingOff {
        attempt: u32,
    },
    /// Its own work is done; it waits for its children.
    Delegated,
    Done(Terminal),
}

/// How one attempt ended, as far as the scheduler cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    Succeeded,
    Failed(ExitStatus),
    TimedOut,
    Cancelled(KillReason),
    /// In flight when the engine died.
    Lost,
}

impl AttemptOutcome {
    /// Classifies an exit: a kill we asked for names the outcome, whatever the status.
    pub fn of(status: ExitStatus, kill: Option<KillReason>) -> AttemptOutcome {
        match (kill, status) {
            (Some(KillReason::Timeout), _) => AttemptOutcome::TimedOut,
            (Some(reason), _) => AttemptOutcome::Cancelled(reason),
            (None, ExitStatus::Code(0)) => AttemptOutcome::Succeeded,
            (None, status) => AttemptOutcome::Failed(status),
        }
    }

    pub fn is_retryable(self) -> bool {
        matches!(self, AttemptOutcome::Failed(_) | AttemptOutcome::TimedOut | AttemptOutcome::Lost)
    }
}

/// What happens to a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskEvent {
    MadeReady,
    Dispatched { attempt: u32 },
    KillRequested(KillReason),
    Exited { attempt: u32, outcome: AttemptOutcome },
    RetryScheduled { attempt: u32, immediate: bool },
    BackoffElapsed { attempt: u32 },
    Delegated,
    Finished(Terminal),
}

impl Phase {
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Waiting => "waiting",
            Phase::Ready => "ready",
            Phase::Running { .. } => "running",
            Phase::Exited { .. } => "exited",
            Phase::BackingOff { .. } => "backing_off",
            Phase::Delegated => "delegated",
            Phase::Done(_) => "done",
        }
    }

    pub fn is_done(&self) -> bool {
        matches!(self, Phase::Done(_))
    }

    /// The next phase, or `None` when `event` is not legal in this phase.
    pub fn next(&self, event: TaskEvent) -> Option<Phase> {
        use Phase as P;
        use TaskEvent as E;
        Some(match (*self, event) {
            (P::Waiting, E::MadeReady) => P::Ready,
            (P::Ready, E::Dispatched { attempt }) => P::Running { attempt, kill: None },
            (P::Running { attempt, kill: None }, E::KillRequested(reason)) => {
                P::Running { attempt, kill: Some(reason) }
            }
            (P::Running { attempt, .. }, E::Exited { attempt: a, outcome }) if a == attempt => {
                P::Exited { attempt, outcome }
            }
            (P::Exited { attempt, outcome }, E::RetryScheduled { attempt: next, immediate })
                if outcome.is_retryable() && next == attempt + 1 =>
            {
                if immediate {
                    P::Ready
                } else {
                    P::BackingOff { attempt: next }
                }
            }
            (P::BackingOff { attempt }, E::BackoffElapsed { attempt: a }) if a == attempt => P::Ready,
            (P::Exited { outcome: AttemptOutcome::Succeeded, .. }, E::Delegated) => P::Delegated,
            // Lost after it delegated (the scheduler checks it had released its slot).
            (P::Exited { outcome: AttemptOutcome::Lost, .. }, E::Delegated) => P::Delegated,
            (P::Waiting | P::Ready, E::Delegated) => P::Delegated,
            (P::Waiting | P::Ready | P::BackingOff { .. } | P::Exited { .. } | P::Delegated, E::Finished(t)) => {
                P::Done(t)
            }
            _ => return None,
        })
    }
}

impl TaskEvent {
    pub fn name(&self) -> &'static str {
        match self {
            TaskEvent::MadeReady => "made_ready",
            TaskEvent::Dispatched { .. } => "attempt_dispatched",
            TaskEvent::KillRequested(_) => "attempt_kill_requested",
            TaskEvent::Exited { .. } => "attempt_exited",
            TaskEvent::RetryScheduled { .. } => "retry_scheduled",
            TaskEvent::BackoffElapsed { .. } => "timer_fired",
            TaskEvent::Delegated => "task_delegated",
            TaskEvent::Finished(_) => "task_finished",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_cannot_finish_without_exiting() {
        let p = Phase::Running { attempt: 1, kill: None };
        assert_eq!(p.next(TaskEvent::Finished(Terminal::Succeeded)), None);
    }

    #[test]
    fn exit_of_another_attempt_is_rejected() {
        let p = Phase::Running { attempt: 2, kill: None };
        assert_eq!(p.next(TaskEvent::Exited { attempt: 1, outcome: AttemptOutcome::Succeeded }), None);
    }

    #[test]
    fn retry_must_name_the_next_attempt() {
        let p = Phase::Exited { attempt: 1, outcome: AttemptOutcome::TimedOut };
        assert_eq!(p.next(TaskEvent::RetryScheduled { attempt: 3, immediate: false }), None);
        assert_eq!(
            p.next(TaskEvent::RetryScheduled { attempt: 2, immediate: false }),
            Some(Phase::BackingOff { attempt: 2 })
        );
        let ok = Phase::Exited { attempt: 1, outcome: AttemptOutcome::Succeeded };
        assert_eq!(ok.next(TaskEvent::RetryScheduled { attempt: 2, immediate: true }), None);
    }

    #[test]
    fn done_is_final() {
        let p = Phase::Done(Terminal::Failed);
        for e in [TaskEvent::MadeReady, TaskEvent::Delegated, TaskEvent::Finished(Terminal::Succeeded)] {
            assert_eq!(p.next(e), None);
        }
    }

    #[test]
    fn a_kill_reason_wins_over_the_exit_status() {
        assert_eq!(AttemptOutcome::of(ExitStatus::Code(0), Some(KillReason::Timeout)), AttemptOutcome::TimedOut);
        assert_eq!(AttemptOutcome::of(ExitStatus::Signal(15), None), AttemptOutcome::Failed(ExitStatus::Signal(15)));
    }
}
