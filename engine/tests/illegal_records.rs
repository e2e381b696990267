//! Records no engine writes are refused by the fold, whatever their checksums: a log
//! edited by hand (or by a bug) must not fold into a state that says something else
//! happened. Each case is a legal simulated log with one edit; the legal log folds.

use orch_engine::record::{AttemptStarted, Event, Record};
use orch_engine::spec::{self, Format};
use orch_engine::state::{ApplyError, State};

/// A run with a retried task, a dependent, and a `before_finalize` hook (simulated).
fn legal() -> Vec<Record> {
    let text = "[run]\nbefore_finalize = \"audit\"\n\
                [[task]]\nid = \"a\"\ncommand = \"true\"\nretry = { max_attempts = 2 }\nsim = { outcomes = [\"fail\", \"succeed\"] }\n\
                [[task]]\nid = \"b\"\ncommand = \"true\"\nafter = [\"a\"]\n";
    let spec = spec::parse(text, "legal.toml", Format::Toml).expect("valid");
    let mut records = Vec::new();
    orch_engine::sim::simulate(spec, 0, |rs: &[Record]| {
        records.extend_from_slice(rs);
        Ok::<(), std::convert::Infallible>(())
    })
    .expect("simulates");
    State::fold(&records).expect("the legal log folds");
    records
}

fn refused(records: &[Record], why: &str) {
    match State::fold(records) {
        Err(ApplyError::Inconsistent(what)) => assert!(what.contains(why), "{what}"),
        other => panic!("expected {why:?}, got {other:?}"),
    }
}

#[test]
fn a_run_started_record_says_what_engines_write() {
    let mut records = legal();
    records[0].time_ms = 5;
    refused(&records, "run_started at a time other than 0");
    let mut records = legal();
    let Event::RunStarted(r) = &mut records[0].event else { panic!("run_started first") };
    r.executor = "weird".into();
    refused(&records, "executor");
}

#[test]
fn an_attempt_is_started_once() {
    let mut records = legal();
    let dispatch = records.iter().position(|r| matches!(r.event, Event::AttemptDispatched(_))).expect("a dispatch");
    let Event::AttemptDispatched(d) = &records[dispatch].event else { unreachable!() };
    let started = |pid| Record {
        time_ms: records[dispatch].time_ms,
        event: Event::AttemptStarted(AttemptStarted { task: d.task.clone(), attempt: d.attempt, pid, start_ticks: 1 }),
    };
    let (first, second) = (started(100), started(200));
    records.insert(dispatch + 1, first);
    State::fold(&records).expect("one attempt_started folds");
    records.insert(dispatch + 2, second);
    refused(&records, "a second attempt_started for the same attempt");
}

#[test]
fn a_finalize_answer_names_no_child() {
    let mut records = legal();
    let answer = records
        .iter_mut()
        .find_map(|r| match &mut r.event {
            Event::HookAnswered(h) if h.parent.is_none() => Some(h),
            _ => None,
        })
        .expect("the finalize hook answered");
    answer.child = Some("a".into());
    refused(&records, "a finalize answer that no request called for");
}
