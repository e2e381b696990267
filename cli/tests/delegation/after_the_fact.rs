//! What a run records about its tasks after the fact: the causes a cancel's note leaves,
//! and when a task created at run time was ready.

use std::collections::BTreeMap;

use orch_engine::record::Event;
use serde_json::Value;

use super::Scratch;

/// `orch task update --status cancelled --note WHY` puts who and why in the cause: of a
/// task that had not started, and of a running one killed for it.
#[test]
fn a_cancel_with_a_note_says_who_and_why_in_the_causes() {
    let s = Scratch::new();
    let run = s.run(
        "[run]\nmax_concurrency = 3\n\
         [[task]]\nid = \"r\"\ncommand = \"sleep 30\"\n\
         [[task]]\nid = \"w\"\ncommand = \"true\"\nafter = [\"r\"]\n\
         [[task]]\nid = \"boss\"\ncommand = '''orch task update w --status cancelled --note 'not needed' && \
         orch task update r --status cancelled --note 'too slow' '''\n",
    );
    let causes: BTreeMap<String, Option<String>> = run
        .records
        .iter()
        .filter_map(|r| match &r.event {
            Event::TaskFinished(f) => Some((f.task.clone(), f.cause.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(causes["w"].as_deref(), Some("cancelled (w, by boss: not needed)"));
    assert_eq!(causes["r"].as_deref(), Some("killed by a cancel request (by boss: too slow)"));
    assert_eq!(causes["boss"], None);
}

/// A task created at run time cannot be ready before it exists, though the wave it joins
/// (here the run's own) opened long before: its queue wait counts from its creation.
#[test]
fn a_task_created_at_run_time_is_ready_from_its_creation() {
    let s = Scratch::new();
    let run = s.run(
        "[run]\nmax_concurrency = 2\n[[task]]\nid = \"a\"\n\
         command = \"sleep 0.3 && env -u ORCH_TASK_ID orch task create x -- true\"\n",
    );
    assert_eq!(run.code, 0);
    let submitted = run
        .records
        .iter()
        .find_map(|r| matches!(&r.event, Event::TaskSubmitted(_)).then_some(r.time_ms))
        .expect("x submitted");
    assert!(submitted >= 300, "created after a's sleep, at {submitted} ms");
    let show = s.orch(&["show", &run.id, "--json"]);
    let v: Value = serde_json::from_str(&show.stdout).unwrap();
    let x = v["tasks_detail"].as_array().unwrap().iter().find(|t| t["task"] == "x").unwrap().clone();
    assert_eq!(x["parent"], Value::Null, "a task of the run itself");
    assert_eq!(x["ready_ms"], submitted, "{x}");
    assert_eq!(x["queue_wait_ms"], x["dispatched_ms"].as_u64().unwrap() - submitted, "{x}");
}
