//! Edges found in review: a lost attempt of a task that had delegated, submissions under
//! parents that can take no more children, and times at the end of the clock.

use orch_engine::record::{AttemptLost, Event, Terminal, TimerFired, TimerKey, UpdateStatus};
use orch_engine::state::Phase;

use super::{Run, PLANNER};

#[test]
fn a_delegated_task_lost_to_an_engine_crash_waits_for_its_children() {
    let mut run = Run::start(PLANNER);
    assert_eq!(
        run.submit(Some("planner"), serde_json::json!({"id": "c", "command": "x", "parent": "planner"})),
        Ok(())
    );
    assert_eq!(run.update("planner", UpdateStatus::Delegated), Ok(()));
    // The engine died; resume records the planner's attempt as lost.
    run.input(Event::AttemptLost(AttemptLost { task: "planner".into(), attempt: 1 }));
    assert_eq!(run.phase("planner"), Phase::Delegated, "not failed: its child still runs");
    run.exit("c", 0);
    assert_eq!(run.phase("planner"), Phase::Done(Terminal::Succeeded));
    run.exit("after-planner", 0);
    assert!(run.core.state().is_finished());
    run.replays();
}

#[test]
fn an_attempt_lost_while_being_cancelled_ends_cancelled_not_retried() {
    let mut run = Run::start(PLANNER);
    assert_eq!(run.update("planner", UpdateStatus::Cancelled), Ok(()));
    assert!(matches!(run.phase("planner"), Phase::Running { kill: Some(_), .. }), "being killed");
    // The engine died before the kill landed; resume records the attempt as lost.
    let decisions = run.input(Event::AttemptLost(AttemptLost { task: "planner".into(), attempt: 1 }));
    assert_eq!(run.phase("planner"), Phase::Done(Terminal::Cancelled), "{decisions:?}");
    assert_eq!(run.dispatched().iter().filter(|t| *t == "planner").count(), 1, "not dispatched again");
    run.replays();
}

#[test]
fn an_attempt_lost_while_killed_at_its_timeout_counts_as_timed_out() {
    let mut run = Run::start("[[task]]\nid = \"slow\"\ncommand = \"x\"\ntimeout_ms = 10\n");
    run.input(Event::TimerFired(TimerFired { timer: TimerKey::AttemptTimeout { task: "slow".into(), attempt: 1 } }));
    assert!(matches!(run.phase("slow"), Phase::Running { kill: Some(_), .. }), "being killed at its timeout");
    run.input(Event::AttemptLost(AttemptLost { task: "slow".into(), attempt: 1 }));
    // One attempt allowed, and it was used: no free retry for the crash.
    assert_eq!(run.phase("slow"), Phase::Done(Terminal::TimedOut));
    assert_eq!(run.dispatched(), ["slow"]);
    run.replays();
}

#[test]
fn parents_being_cancelled_stopped_or_failed_take_no_new_children() {
    let child = |id: &str| serde_json::json!({"id": id, "command": "x", "parent": "planner"});
    // Cascading cancel of a delegated parent, its child still running.
    let mut run = Run::start(PLANNER);
    assert_eq!(run.submit(Some("planner"), child("a")), Ok(()));
    run.exit("planner", 0);
    assert_eq!(run.update("planner", UpdateStatus::Cancelled), Ok(()));
    assert!(run.submit(None, child("late")).unwrap_err().contains("is being cancelled"));
    // A parent whose attempt is being killed.
    let mut run = Run::start(PLANNER);
    assert_eq!(run.update("planner", UpdateStatus::Cancelled), Ok(()));
    assert!(run.submit(Some("planner"), child("late")).unwrap_err().contains("being killed"));
    // A `fail_parent` group whose wave failed.
    let mut run =
        Run::start(&PLANNER.replace("command = \"plan\"", "command = \"plan\"\non_child_failure = \"fail_parent\""));
    assert_eq!(run.submit(Some("planner"), child("a")), Ok(()));
    assert_eq!(run.submit(Some("planner"), child("b")), Ok(()));
    run.exit("planner", 0);
    run.exit("a", 1);
    assert!(run.submit(None, child("late")).unwrap_err().contains("has failed"));
    run.replays();
}

#[test]
fn a_child_does_not_join_a_stopped_wave() {
    // `stop_wave`: the failure stops the dynamic wave; a later child starts a new one.
    let spec = PLANNER
        .replace("max_concurrency = 2", "max_concurrency = 1")
        .replace("command = \"plan\"", "command = \"plan\"\non_child_failure = \"stop_wave\"");
    let mut run = Run::start(&spec);
    let child = |id: &str| serde_json::json!({"id": id, "command": "x", "parent": "planner"});
    assert_eq!(run.submit(Some("planner"), child("a")), Ok(()));
    assert_eq!(run.submit(Some("planner"), child("b")), Ok(()));
    assert_eq!(run.update("planner", UpdateStatus::Delegated), Ok(()));
    run.exit("a", 1);
    assert_eq!(run.phase("b"), Phase::Done(Terminal::Skipped));
    assert_eq!(run.submit(Some("planner"), child("c")), Ok(()));
    let graph = run.core.state().graph().unwrap().clone();
    let (wa, wc) = (graph.node(run.idx("a")).wave, graph.node(run.idx("c")).wave);
    assert_ne!(wa, wc, "c is not in the stopped wave");
    run.exit("c", 0);
    assert_eq!(run.phase("c"), Phase::Done(Terminal::Succeeded));
    run.replays();
}

#[test]
fn times_at_the_end_of_the_clock_saturate_instead_of_overflowing() {
    let mut run = Run::start(PLANNER);
    let huge = serde_json::json!({
        "id": "slow", "command": "x", "parent": "planner", "timeout_ms": u64::MAX,
        "retry": {"max_attempts": 3, "base_ms": u64::MAX},
    });
    assert_eq!(run.submit(Some("planner"), huge), Ok(()));
    run.exit("planner", 0);
    let deadline = run.log.iter().find_map(|r| match &r.event {
        Event::AttemptDispatched(d) if d.task == "slow" => d.deadline_ms,
        _ => None,
    });
    assert_eq!(deadline, Some(u64::MAX), "the deadline saturates");
    run.exit("slow", 1);
    let retry_at = run.log.iter().find_map(|r| match &r.event {
        Event::RetryScheduled(s) if s.task == "slow" => Some(s.at_ms),
        _ => None,
    });
    assert_eq!(retry_at, Some(u64::MAX));
    run.replays();
}
