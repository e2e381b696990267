//! Lost attempts: neither diff --outcomes nor $ORCH_ATTEMPT counts them (as the aggregates do not).

use std::time::{Duration, Instant};

use orch_engine::record::Event;

use super::{log_json, workflow, Scratch, FLAKY, FLAKY_RAW};

/// Kills `orch run` as soon as the log shows attempt 1 of `task` started, then resumes.
fn kill_while_running(s: &Scratch, task: &str) {
    let mut child = s.spawn(&["run", "wf.toml"], "run");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let started = s.records().iter().any(|r| matches!(&r.event, Event::AttemptStarted(a) if a.task == task));
        if started {
            break;
        }
        assert!(Instant::now() < deadline, "{task} never started");
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    s.orch(&["resume", "latest"]).expect(0).unwrap();
    assert!(s.records().iter().any(|r| matches!(&r.event, Event::AttemptLost(l) if l.task == task)));
}

/// `orch diff --outcomes` leaves lost attempts out of a task's attempts, as the aggregates
/// do (`run.lost_attempts_count = false`): a resumed run compares equal to the
/// uninterrupted one.
#[test]
fn diff_outcomes_counts_lost_attempts() {
    // `prep` runs half a second: the kill lands inside it.
    let spec = workflow(FLAKY, "0.5");
    let reference = Scratch::with(spec.clone());
    reference.orch(&["run", "wf.toml"]).expect(0).unwrap();
    let expected = log_json(&reference, "latest").unwrap().last().unwrap()["aggregate"].clone();
    let s = Scratch::with(spec);
    kill_while_running(&s, "prep");
    let log = log_json(&s, "latest").unwrap();
    assert_eq!(log.last().unwrap()["aggregate"], expected, "the aggregates agree");
    let ref_dir = reference.run_dir().unwrap();
    let out = s.orch(&["diff", "--outcomes", ref_dir.to_str().unwrap(), s.run_dir().unwrap().to_str().unwrap()]);
    out.expect(0).unwrap_or_else(|e| panic!("{e}"));
}

/// `$ORCH_ATTEMPT` is the counted attempt: a task that fails its first attempt, keyed on
/// `$ORCH_ATTEMPT`, whose first attempt is lost in a crash, sees 1 again on its first
/// counted attempt, fails it as in the uninterrupted run, and the aggregates agree.
#[test]
fn orch_attempt_counts_lost_attempts() {
    let reference = Scratch::new(FLAKY_RAW);
    reference.orch(&["run", "wf.toml"]).expect(0).unwrap();
    let expected = log_json(&reference, "latest").unwrap().last().unwrap()["aggregate"].clone();
    let s = Scratch::new(FLAKY_RAW);
    kill_while_running(&s, "flaky");
    let log = log_json(&s, "latest").unwrap();
    assert_eq!(log.last().unwrap()["aggregate"], expected, "flaky's first counted attempt did not fail");
}
