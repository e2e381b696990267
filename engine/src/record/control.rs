//! The records of delegation: control requests from running children and shells (new
//! tasks, status updates, the shared context), the hooks' answers, and the scheduler's
//! decisions about them. Split from `record.rs`, which holds the vocabulary of the
//! engine core and the encoding; codes are listed there, in `events!`.

use serde::{Deserialize, Serialize};

use super::{Digest, RunOutcome};

// ---- inputs ---------------------------------------------------------------------

/// A request over the control socket to add a task to the running graph (a child
/// breaking its work into sub-tasks). Recorded whatever its fate: the scheduler
/// validates it against the state and answers with a `request_answered` decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSubmitted {
    /// The runtime's number for the request (unique in the run), echoed by the answer.
    pub request: u64,
    /// The task that asked (`ORCH_TASK_ID`), or None from a shell.
    pub by: Option<String>,
    /// The new task as canonical JSON (a `TaskSpec`; its `parent` already resolved).
    /// JSON rather than a nested record body, as for the run-started spec: the task's
    /// optional fields stay optional without a positional encoding to keep in step.
    pub task: String,
}

/// A request to change a task's status by hand (`orch task update`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskUpdated {
    pub request: u64,
    pub by: Option<String>,
    pub task: String,
    pub status: UpdateStatus,
    pub note: Option<String>,
}

/// What `orch task update --status` may say. `delegated`, `done` and `failed` change the
/// task's course; the review marks are labels for workflows with a review step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateStatus {
    Working,
    Delegated,
    Done,
    Failed,
    /// Cancel the task (and, under cascading cancellation, its children and dependents).
    Cancelled,
    Reviewing,
    Reviewed,
    Stuck,
}

impl UpdateStatus {
    pub const ALL: [UpdateStatus; 8] = [
        UpdateStatus::Working,
        UpdateStatus::Delegated,
        UpdateStatus::Done,
        UpdateStatus::Failed,
        UpdateStatus::Cancelled,
        UpdateStatus::Reviewing,
        UpdateStatus::Reviewed,
        UpdateStatus::Stuck,
    ];

    pub fn name(self) -> &'static str {
        match self {
            UpdateStatus::Working => "working",
            UpdateStatus::Delegated => "delegated",
            UpdateStatus::Done => "done",
            UpdateStatus::Failed => "failed",
            UpdateStatus::Cancelled => "cancelled",
            UpdateStatus::Reviewing => "reviewing",
            UpdateStatus::Reviewed => "reviewed",
            UpdateStatus::Stuck => "stuck",
        }
    }

    pub fn parse(s: &str) -> Option<UpdateStatus> {
        UpdateStatus::ALL.into_iter().find(|u| u.name() == s)
    }
}

/// A request to change the shared run context (`orch ctx set|append`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContextUpdated {
    pub request: u64,
    pub by: Option<String>,
    pub key: String,
    pub op: ContextOp,
    pub value: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContextOp {
    Set,
    Append,
}

/// A hook's answer: a parent's wake hook (`parent` set) or the run's `before_finalize`
/// hook (`parent` None). Recorded, so replay never runs the hook again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookAnswered {
    pub parent: Option<String>,
    /// The completion that woke the parent (None: a wave's end, or the finalize hook).
    pub child: Option<String>,
    pub verdict: Verdict,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Wake hook: go on.
    Continue,
    /// Wake hook: stop the parent's children (the parent's `on_stop` says how).
    Stop,
    /// Finalize hook: the run's result stands.
    Accept,
    /// Finalize hook: the run fails.
    Reject,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Continue => "continue",
            Verdict::Stop => "stop",
            Verdict::Accept => "accept",
            Verdict::Reject => "reject",
        }
    }
}

// ---- decisions ------------------------------------------------------------------

/// The answer to a control request: accepted (`error` None) or rejected, with why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestAnswered {
    pub request: u64,
    pub error: Option<String>,
}

/// A wake hook answered `stop`: the parent's pending children are skipped, its later
/// waves too, and its running children cancelled or left to finish (per `on_stop`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildrenStopped {
    pub parent: String,
    pub reason: String,
}

/// Every task is terminal and the run has a `before_finalize` hook: run it with the
/// summary and the aggregate the run would finish with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalizeRequested {
    pub outcome: RunOutcome,
    pub aggregate: Digest,
}
