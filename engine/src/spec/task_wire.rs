//! How a `TaskSpec` is read and written: one flat table/object per task, as users write
//! it, although in memory the rarely set fields sit in a box (`TaskMore`).
//!
//! Reading goes through `TaskWire`, the flat shape with serde's derive (its errors, its
//! aliases, `deny_unknown_fields`); each task is parsed into it on the stack and then
//! moved into the small `TaskSpec`. Writing goes through `TaskWireRef`, the same fields
//! by reference in the same order with the same omissions, so the canonical JSON of a
//! spec — and the digest in every run-started record — is what it was when the fields
//! were flat.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::model::is_default;
use super::{Command, OnStop, Priority, RetryPolicy, SimBehaviour, TaskMore, TaskSpec, WakePolicy, WaveFailure};

#[derive(Deserialize)]
#[serde(rename = "TaskSpec", expecting = "struct TaskSpec", deny_unknown_fields)]
struct TaskWire {
    id: String,
    #[serde(default)]
    title: Option<String>,
    #[serde(default, alias = "cmd")]
    command: Option<Command>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    cwd: Option<String>,
    #[serde(default)]
    after: Vec<String>,
    #[serde(default)]
    parent: Option<String>,
    #[serde(default)]
    priority: Priority,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    retry: RetryPolicy,
    #[serde(default)]
    cost: Option<u64>,
    #[serde(default)]
    hook: Option<Command>,
    #[serde(default)]
    wake_policy: Option<WakePolicy>,
    #[serde(default)]
    on_child_failure: Option<WaveFailure>,
    #[serde(default)]
    on_stop: OnStop,
    #[serde(default)]
    sim: Option<SimBehaviour>,
}

#[derive(Serialize)]
#[serde(rename = "TaskSpec")]
struct TaskWireRef<'a> {
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    title: &'a Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    command: &'a Option<Command>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    env: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cwd: &'a Option<String>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    after: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    parent: &'a Option<String>,
    #[serde(skip_serializing_if = "is_default")]
    priority: Priority,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeout_ms: Option<u64>,
    #[serde(skip_serializing_if = "is_default")]
    retry: RetryPolicy,
    #[serde(skip_serializing_if = "Option::is_none")]
    cost: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hook: &'a Option<Command>,
    #[serde(skip_serializing_if = "Option::is_none")]
    wake_policy: Option<WakePolicy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    on_child_failure: Option<WaveFailure>,
    #[serde(skip_serializing_if = "is_default")]
    on_stop: OnStop,
    #[serde(skip_serializing_if = "Option::is_none")]
    sim: Option<&'a SimBehaviour>,
}

impl<'de> Deserialize<'de> for TaskSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = TaskWire::deserialize(d)?;
        let mut task = TaskSpec {
            id: w.id,
            command: w.command,
            after: w.after,
            parent: w.parent,
            priority: w.priority,
            sim: w.sim.map(Box::new),
            more: None,
        };
        let more = TaskMore {
            title: w.title,
            env: w.env,
            cwd: w.cwd,
            timeout_ms: w.timeout_ms,
            retry: w.retry,
            cost: w.cost,
            hook: w.hook,
            wake_policy: w.wake_policy,
            on_child_failure: w.on_child_failure,
            on_stop: w.on_stop,
        };
        if more != TaskMore::DEFAULT {
            task.more = Some(Box::new(more));
        }
        Ok(task)
    }
}

impl Serialize for TaskSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let more = self.more();
        TaskWireRef {
            id: &self.id,
            title: &more.title,
            command: &self.command,
            env: &more.env,
            cwd: &more.cwd,
            after: &self.after,
            parent: &self.parent,
            priority: self.priority,
            timeout_ms: more.timeout_ms,
            retry: more.retry,
            cost: more.cost,
            hook: &more.hook,
            wake_policy: more.wake_policy,
            on_child_failure: more.on_child_failure,
            on_stop: more.on_stop,
            sim: self.sim.as_deref(),
        }
        .serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_with_only_common_fields_has_no_box_and_round_trips() {
        let json = r#"{"id":"a","command":"true","after":["b"],"sim":{"duration_ms":4}}"#;
        let task: TaskSpec = serde_json::from_str(json).unwrap();
        assert!(task.more.is_none());
        assert_eq!(task.sim.as_ref().map(|s| s.duration_ms), Some(4));
        assert_eq!(serde_json::to_string(&task).unwrap(), json);
        assert!(std::mem::size_of::<TaskSpec>() <= 128, "{} bytes", std::mem::size_of::<TaskSpec>());
    }

    #[test]
    fn every_field_round_trips_in_the_flat_order() {
        let json = r#"{"id":"a","title":"T","command":["x","y"],"env":{"K":"V"},"cwd":"/tmp","after":["b"],"parent":"p","priority":"P0","timeout_ms":5,"retry":{"max_attempts":3,"backoff":"exponential","base_ms":1,"max_ms":9,"jitter":"seeded"},"cost":7,"hook":"h","wake_policy":"on_child_complete","on_child_failure":"hold","on_stop":"finish_running","sim":{"duration_ms":1,"outcomes":["fail:3","succeed"]}}"#;
        let task: TaskSpec = serde_json::from_str(json).unwrap();
        assert_eq!(task.more().timeout_ms, Some(5));
        assert_eq!(task.more().on_stop, OnStop::FinishRunning);
        assert_eq!(serde_json::to_string(&task).unwrap(), json);
    }

    #[test]
    fn unknown_fields_and_aliases_are_as_before() {
        let err = serde_json::from_str::<TaskSpec>(r#"{"id":"a","comand":"x"}"#).unwrap_err().to_string();
        assert!(err.contains("unknown field `comand`"), "{err}");
        let task: TaskSpec = serde_json::from_str(r#"{"id":"a","cmd":"x"}"#).unwrap();
        assert_eq!(task.command, Some(Command::Shell("x".into())));
        let err = serde_json::from_str::<TaskSpec>("3").unwrap_err().to_string();
        assert!(err.contains("struct TaskSpec"), "{err}");
    }

    #[test]
    fn a_boxed_default_equals_no_box() {
        let mut boxed = TaskSpec::new("a");
        boxed.more_mut().cost = None;
        assert_eq!(boxed, TaskSpec::new("a"));
        boxed.normalize();
        assert!(boxed.more.is_none());
        boxed.more_mut().cost = Some(1);
        assert_ne!(boxed, TaskSpec::new("a"));
    }
}
