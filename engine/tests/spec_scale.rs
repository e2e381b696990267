//! Validation must stay near-linear and must not recurse: specs may hold a million tasks,
//! a dependency chain as long, or a parent chain as deep. These build such specs in memory
//! and check both the answer and the time (a generous bound in debug builds).

use std::time::{Duration, Instant};

use orch_engine::spec::{validate, Command, Error, Spec, TaskSpec, Unplaced, WaveSpec};

fn task(id: String) -> TaskSpec {
    TaskSpec { id, command: Some(Command::Shell("true".into())), ..Default::default() }
}

/// `t0 ← t1 ← … ← t(n-1)`: each task is after the one before.
fn chain(n: usize) -> Spec {
    let tasks = (0..n)
        .map(|i| TaskSpec { after: if i == 0 { vec![] } else { vec![format!("t{}", i - 1)] }, ..task(format!("t{i}")) })
        .collect();
    Spec { tasks, ..Default::default() }
}

fn budget() -> Duration {
    if cfg!(debug_assertions) {
        Duration::from_secs(20)
    } else {
        Duration::from_millis(500)
    }
}

fn timed(spec: &Spec) -> (Result<(), Error>, Duration) {
    let start = Instant::now();
    let result = validate(spec, &Unplaced("big"));
    (result, start.elapsed())
}

#[test]
fn a_long_chain_is_fast() {
    let spec = chain(100_000);
    let (result, elapsed) = timed(&spec);
    assert!(result.is_ok(), "{result:?}");
    assert!(elapsed < budget(), "100k-task chain took {elapsed:?}");
}

#[test]
fn a_long_cycle_is_found_and_shortened_in_print() {
    let mut spec = chain(100_000);
    spec.tasks[0].after.push("t99999".into());
    let (result, elapsed) = timed(&spec);
    assert!(elapsed < budget(), "100k-task cycle took {elapsed:?}");
    let Err(Error::Invalid(problems)) = result else { panic!("expected a cycle, got {result:?}") };
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].place, "big: task[0].after[0]");
    assert_eq!(
        problems[0].message,
        "dependency cycle: t0 → t99999 → t99998 → t99997 → t99996 → t99995 → t99994 → t99993 → t99992 → \
         t99991 → t99990 → t99989 → t99988 → … (99985 more) … → t2 → t1 → t0"
    );
}

#[test]
fn a_deep_parent_chain_does_not_recurse() {
    let n = 200_000;
    let tasks = (0..n)
        .map(|i| TaskSpec { parent: if i == 0 { None } else { Some(format!("t{}", i - 1)) }, ..task(format!("t{i}")) })
        .collect();
    let spec = Spec { tasks, ..Default::default() };
    let (result, elapsed) = timed(&spec);
    assert!(result.is_ok(), "{result:?}");
    assert!(elapsed < budget(), "200k-deep parent chain took {elapsed:?}");
}

#[test]
fn big_waves_stay_linear() {
    // Two waves of 250k tasks: without wave nodes this would be 62.5 billion edges.
    let n = 500_000;
    let tasks: Vec<TaskSpec> = (0..n).map(|i| task(format!("t{i}"))).collect();
    let half = |range: std::ops::Range<usize>| WaveSpec {
        tasks: range.map(|i| format!("t{i}")).collect(),
        ..Default::default()
    };
    let spec = Spec { tasks, waves: vec![half(0..n / 2), half(n / 2..n)], ..Default::default() };
    let (result, elapsed) = timed(&spec);
    assert!(result.is_ok(), "{result:?}");
    assert!(elapsed < budget() * 2, "two 250k-task waves took {elapsed:?}");
}
