//! The workflow spec as users write it (TOML or JSON): tasks, waves and run settings
//! (the simulated behaviour is in `simulated.rs`). Plain data; `validate` checks it and
//! `graph` compiles it.
//!
//! The same types are embedded in the run-started record, so a log carries the exact
//! effective spec it was run with and replays without the original file.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::simulated::{SimBehaviour, SimCancel, SimFinalize};

/// A whole workflow file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    #[serde(default)]
    pub run: RunConfig,
    #[serde(default, rename = "task", alias = "tasks")]
    pub tasks: Vec<TaskSpec>,
    #[serde(default, rename = "wave", alias = "waves")]
    pub waves: Vec<WaveSpec>,
}

/// Run-level settings (`[run]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// At most this many attempts run at once. Unset: the runtime picks (and records) one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
    /// At most this many attempts of a priority run at once.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub priority_caps: BTreeMap<Priority, u32>,
    /// The whole run is cancelled (outcome `timed_out`) this long after it starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub cancellation: Cancellation,
    /// What happens to the dependents (`after`) of a task that did not succeed.
    #[serde(default, skip_serializing_if = "is_default")]
    pub on_failure: Downstream,
    #[serde(default, skip_serializing_if = "is_default")]
    pub mode: Mode,
    /// Seeds retry jitter (and, in simulation, the order of simultaneous completions).
    #[serde(default, skip_serializing_if = "is_default")]
    pub seed: u64,
    /// Simulation only: cancel requests injected at virtual times (of the run, or of
    /// one task), so cancellation can be exercised without a terminal.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sim_cancel: Vec<SimCancel>,
    /// Whether an attempt lost when the engine died counts against `max_attempts`
    /// (default false: the engine's crash is not the task's failure, so it runs again).
    #[serde(default, skip_serializing_if = "is_default")]
    pub lost_attempts_count: bool,
    /// An auditor or merger step run when every task is done: it gets the run summary
    /// and aggregate as JSON on stdin and answers accept or reject; reject fails the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_finalize: Option<Command>,
    /// A hook (wake or `before_finalize`) still running this long after it started is
    /// killed, with its process group, and counts as `stop` / `reject`. Unset: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook_timeout_ms: Option<u64>,
    /// Simulation only: what the `before_finalize` hook answers.
    #[serde(default, skip_serializing_if = "is_default")]
    pub sim_finalize: SimFinalize,
}

/// One task (`[[task]]`).
///
/// Kept small (128 bytes) because a spec may hold a million of them and every record of
/// a run is folded against them: the fields nearly every task sets are inline; the sim
/// behaviour and the settings most tasks leave at their defaults are behind one box each
/// (`more`: `None` when all of them are default). The file format is flat all the same:
/// see `task_wire.rs`, which reads and writes it.
#[derive(Debug, Clone, Default)]
pub struct TaskSpec {
    pub id: String,
    /// What to run. A task without a command is a group: it succeeds when its children do.
    pub command: Option<Command>,
    /// Tasks that must succeed before this one starts.
    pub after: Vec<String>,
    /// The task whose children this task belongs to (unset: the run itself). Tasks listed
    /// in a `[[wave]]` get the wave's parent.
    pub parent: Option<String>,
    pub priority: Priority,
    /// How the task behaves under `--sim`.
    pub sim: Option<Box<SimBehaviour>>,
    /// The other settings; read them through `more()`.
    pub more: Option<Box<TaskMore>>,
}

/// The settings of a task that most tasks leave at their defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskMore {
    pub title: Option<String>,
    pub env: BTreeMap<String, String>,
    pub cwd: Option<String>,
    /// Each attempt is killed after this long (and counts as timed out).
    pub timeout_ms: Option<u64>,
    pub retry: RetryPolicy,
    /// A declared cost estimate (any unit), summed in run rollups.
    pub cost: Option<u64>,
    /// Run after each wake of this task as a parent (per its children's wake policy),
    /// with the completion as JSON on stdin; answers `continue` or `stop` on stdout.
    pub hook: Option<Command>,
    /// The wake policy of this task's children that are in no `[[wave]]`: those of the
    /// file, and those it creates at run time (default `on_wave_complete`).
    pub wake_policy: Option<WakePolicy>,
    /// The failure policy of this task's children that are in no `[[wave]]`. Default:
    /// `fail_parent` for children of the file; `hold` for children created at run time
    /// in a wave of their own (the parent stays delegated, stuck, until settled).
    pub on_child_failure: Option<WaveFailure>,
    /// What a `stop` from the hook does to children still running.
    pub on_stop: OnStop,
}

impl TaskMore {
    /// Every setting at its default: what `TaskSpec::more` reads when there is no box.
    pub const DEFAULT: TaskMore = TaskMore {
        title: None,
        env: BTreeMap::new(),
        cwd: None,
        timeout_ms: None,
        retry: RetryPolicy::DEFAULT,
        cost: None,
        hook: None,
        wake_policy: None,
        on_child_failure: None,
        on_stop: OnStop::CancelRunning,
    };
}

static DEFAULT_MORE: TaskMore = TaskMore::DEFAULT;

impl TaskSpec {
    /// A task with this id and nothing else set.
    pub fn new(id: impl Into<String>) -> TaskSpec {
        TaskSpec { id: id.into(), ..TaskSpec::default() }
    }

    /// The settings most tasks leave at their defaults.
    pub fn more(&self) -> &TaskMore {
        self.more.as_deref().unwrap_or(&DEFAULT_MORE)
    }

    /// The settings, to change (boxed on first use; `normalize` unboxes defaults again).
    pub fn more_mut(&mut self) -> &mut TaskMore {
        self.more.get_or_insert_with(Box::default)
    }

    /// Drops the box when every setting in it is at its default, so that equal tasks
    /// look alike.
    pub fn normalize(&mut self) {
        if self.more.as_deref() == Some(&TaskMore::DEFAULT) {
            self.more = None;
        }
    }
}

// Equality of what the task says, not of how it is boxed.
impl PartialEq for TaskSpec {
    fn eq(&self, other: &TaskSpec) -> bool {
        self.id == other.id
            && self.command == other.command
            && self.after == other.after
            && self.parent == other.parent
            && self.priority == other.priority
            && self.sim == other.sim
            && self.more() == other.more()
    }
}

impl Eq for TaskSpec {}

/// What a parent's `stop` does to its children that are running.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnStop {
    /// They are killed (and end `cancelled`).
    #[default]
    CancelRunning,
    /// They run to their end; only children not yet started are skipped.
    FinishRunning,
}

/// A command: an argv list (exec'd directly) or a shell string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Command {
    Argv(Vec<String>),
    Shell(String),
}

// By hand rather than `#[serde(untagged)]`, which buffers every value to try each
// variant in turn: a million-task spec parses markedly faster this way.
impl<'de> Deserialize<'de> for Command {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Command;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "a shell string or a list of arguments")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Command, E> {
                Ok(Command::Shell(v.to_string()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Command, E> {
                Ok(Command::Shell(v))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Command, A::Error> {
                let mut argv = Vec::with_capacity(seq.size_hint().unwrap_or(4));
                while let Some(arg) = seq.next_element::<String>()? {
                    argv.push(arg);
                }
                Ok(Command::Argv(argv))
            }
        }
        d.deserialize_any(V)
    }
}

/// An ordered group of a parent's children (`[[wave]]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaveSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The task whose children these are (unset: the run itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    pub tasks: Vec<String>,
    /// At most this many attempts of this wave run at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub on_failure: WaveFailure,
    #[serde(default, alias = "wake_policy", skip_serializing_if = "is_default")]
    pub wake: WakePolicy,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Priority {
    P0,
    P1,
    #[default]
    P2,
    P3,
}

impl Priority {
    pub const ALL: [Priority; 4] = [Priority::P0, Priority::P1, Priority::P2, Priority::P3];

    pub fn index(self) -> usize {
        self as usize
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cancellation {
    /// Cancelling a task cancels its children and dependents too.
    #[default]
    Cascading,
    /// Cancelling a task cancels only it; children keep running.
    Isolated,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Downstream {
    /// Dependents of a task that did not succeed end `blocked`.
    #[default]
    Block,
    /// Dependents run anyway.
    Continue,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Parallel,
    /// One attempt at a time, in the canonical order.
    Sequential,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WaveFailure {
    /// The wave runs to its end, then the parent fails and its later waves are skipped.
    #[default]
    FailParent,
    /// Failures are warnings: every wave runs and the parent succeeds.
    WarnAndContinue,
    /// The wave's not-yet-started tasks are skipped; later waves still run; the parent fails.
    StopWave,
    /// The wave runs to its end; then the parent stays delegated ("stuck") until it is
    /// settled by hand (`orch task update PARENT --status done|failed`). For the run's
    /// own children it is `fail_parent`. The default for children created at run time.
    Hold,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WakePolicy {
    #[default]
    OnWaveComplete,
    OnChildComplete,
}

/// How many attempts, and how long to wait between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = no retry).
    #[serde(default = "one")]
    pub max_attempts: u32,
    #[serde(default)]
    pub backoff: Backoff,
    /// Delay before the first retry (fixed: before every retry).
    #[serde(default)]
    pub base_ms: u64,
    /// Upper bound of an exponential delay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ms: Option<u64>,
    #[serde(default)]
    pub jitter: Jitter,
}

impl RetryPolicy {
    pub const DEFAULT: RetryPolicy =
        RetryPolicy { max_attempts: 1, backoff: Backoff::Fixed, base_ms: 0, max_ms: None, jitter: Jitter::None };
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy::DEFAULT
    }
}

pub(super) fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backoff {
    #[default]
    Fixed,
    Exponential,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Jitter {
    #[default]
    None,
    /// A deterministic delay in [d/2, d], drawn from the run seed, the task and the attempt.
    Seeded,
}
