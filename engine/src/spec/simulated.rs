//! How tasks and the run behave under `--sim`: scripted durations, outcomes, outputs,
//! run-time creations and hook answers, and injected cancels. Part of the spec (and so of
//! the run-started record), read only by the simulator.

use serde::{Deserialize, Serialize};

use super::model::is_default;
use super::TaskSpec;

/// A simulated `before_finalize` answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SimFinalize {
    #[default]
    Accept,
    Reject,
}

/// A simulated cancel request (`[[run.sim_cancel]]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimCancel {
    pub at_ms: u64,
    /// The task to cancel; unset cancels the whole run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
}

/// Scripted behaviour of a task under simulation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimBehaviour {
    /// Virtual time each attempt takes.
    #[serde(default = "default_sim_duration")]
    pub duration_ms: u64,
    /// Outcome of attempt 1, 2, ...; the last one repeats. Default: `["succeed"]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outcomes: Vec<SimOutcome>,
    /// What the task "prints": its output digest is the blake3 of these bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout: Option<String>,
    /// Sub-tasks the first attempt submits while it runs (as `orch task create` would),
    /// one every `create_every_ms` from its start; their parent defaults to this task.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub creates: Vec<TaskSpec>,
    #[serde(default = "one_ms", skip_serializing_if = "is_one_ms")]
    pub create_every_ms: u64,
    /// What this task's wake hook answers.
    #[serde(default, skip_serializing_if = "is_default")]
    pub hook: SimHook,
}

/// A simulated wake-hook answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SimHook {
    #[default]
    Continue,
    Stop,
    /// `stop` when the child that woke the parent did not succeed, else `continue`.
    StopOnFailure,
}

impl Default for SimBehaviour {
    fn default() -> Self {
        SimBehaviour {
            duration_ms: default_sim_duration(),
            outcomes: Vec::new(),
            stdout: None,
            creates: Vec::new(),
            create_every_ms: 1,
            hook: SimHook::default(),
        }
    }
}

fn one_ms() -> u64 {
    1
}

fn is_one_ms(ms: &u64) -> bool {
    *ms == 1
}

fn default_sim_duration() -> u64 {
    100
}

/// One scripted attempt outcome, written `"succeed"`, `"fail"`, `"fail:CODE"` or `"hang"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimOutcome {
    Succeed,
    Fail(i32),
    /// Never exits on its own: only a timeout or a cancel ends it.
    Hang,
}

impl SimBehaviour {
    /// The scripted outcome of attempt `attempt` (1-based).
    pub fn outcome(&self, attempt: u32) -> SimOutcome {
        let i = (attempt.max(1) - 1) as usize;
        self.outcomes.get(i).or(self.outcomes.last()).copied().unwrap_or(SimOutcome::Succeed)
    }
}

impl std::fmt::Display for SimOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SimOutcome::Succeed => write!(f, "succeed"),
            SimOutcome::Fail(1) => write!(f, "fail"),
            SimOutcome::Fail(code) => write!(f, "fail:{code}"),
            SimOutcome::Hang => write!(f, "hang"),
        }
    }
}

impl std::str::FromStr for SimOutcome {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "succeed" => Ok(SimOutcome::Succeed),
            "fail" => Ok(SimOutcome::Fail(1)),
            "hang" => Ok(SimOutcome::Hang),
            other => match other.strip_prefix("fail:").map(str::parse::<i32>) {
                Some(Ok(0)) => Err("\"fail:0\" is a success; write \"succeed\"".into()),
                // Any code reads back (logs hold what earlier versions took); a new spec
                // is held to what a process can exit with by `parse::new_spec_rules`.
                Some(Ok(code)) => Ok(SimOutcome::Fail(code)),
                _ => Err(format!("unknown simulated outcome {other:?} (expected succeed, fail, fail:CODE or hang)")),
            },
        }
    }
}

impl Serialize for SimOutcome {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SimOutcome {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::SimOutcome;

    #[test]
    fn outcomes_read_as_written() {
        let read =
            [("succeed", SimOutcome::Succeed), ("fail", SimOutcome::Fail(1)), ("fail:300", SimOutcome::Fail(300))];
        for (text, outcome) in read {
            assert_eq!(text.parse::<SimOutcome>(), Ok(outcome));
        }
        for bad in ["fail:0", "fail:", "fail:x", "ok"] {
            assert!(bad.parse::<SimOutcome>().is_err(), "{bad}");
        }
    }
}
