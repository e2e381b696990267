//! The three replay evidences of the engine core: the same graph and config give the
//! same schedule; the same failure injection gives the same event order by seq; retry
//! attempts and delays are exactly what the policy says.

use orch_engine::record::{Event, Record};
use orch_engine::sim::simulate;
use orch_engine::spec::{parse, Format, Spec};

fn spec(text: &str) -> Spec {
    parse(text, "evidence.toml", Format::Toml).expect("valid spec")
}

fn run(spec: &Spec, seed: u64) -> Vec<Record> {
    let mut log = Vec::new();
    simulate(spec.clone(), seed, |rs: &[Record]| -> Result<(), std::io::Error> {
        log.extend_from_slice(rs);
        Ok(())
    })
    .expect("simulation completes");
    log
}

fn encoded(log: &[Record]) -> Vec<Vec<u8>> {
    log.iter().map(Record::encode).collect()
}

const DAG: &str = r#"
[run]
max_concurrency = 3
priority_caps = { P0 = 1 }
[[task]]
id = "fetch"
command = "true"
sim = { duration_ms = 40 }
[[task]]
id = "compile-a"
command = "true"
after = ["fetch"]
priority = "P0"
sim = { duration_ms = 30 }
[[task]]
id = "compile-b"
command = "true"
after = ["fetch"]
priority = "P0"
sim = { duration_ms = 30 }
[[task]]
id = "docs"
command = "true"
after = ["fetch"]
priority = "P3"
sim = { duration_ms = 10 }
[[task]]
id = "link"
command = "true"
after = ["compile-a", "compile-b"]
sim = { duration_ms = 20 }
"#;

#[test]
fn same_graph_and_config_give_the_same_schedule() {
    let spec = spec(DAG);
    let schedule = |log: &[Record]| -> Vec<(u64, String, u32)> {
        log.iter()
            .filter_map(|r| match &r.event {
                Event::AttemptDispatched(d) => Some((r.time_ms, d.task.clone(), d.attempt)),
                _ => None,
            })
            .collect()
    };
    let first = run(&spec, 9);
    assert_eq!(encoded(&first), encoded(&run(&spec, 9)), "byte-identical logs");
    // The schedule the caps and the ordering rule imply, written out: P0 first but one
    // at a time (its cap), then the P3 task fills the free slot.
    let expected = [(0, "fetch", 1), (40, "compile-a", 1), (40, "docs", 1), (70, "compile-b", 1), (100, "link", 1)];
    let expected: Vec<(u64, String, u32)> = expected.iter().map(|(t, id, a)| (*t, id.to_string(), *a)).collect();
    assert_eq!(schedule(&first), expected);
    orch_replay::redecide(&first).expect("replays");
}

const FAILURES: &str = r#"
[run]
max_concurrency = 2
[[task]]
id = "flaky"
command = "true"
retry = { max_attempts = 3, base_ms = 25 }
sim = { duration_ms = 10, outcomes = ["fail:2", "hang", "succeed"] }
timeout_ms = 50
[[task]]
id = "broken"
command = "true"
sim = { duration_ms = 10, outcomes = ["fail:7"] }
[[task]]
id = "after-broken"
command = "true"
after = ["broken"]
[[task]]
id = "after-flaky"
command = "true"
after = ["flaky"]
"#;

#[test]
fn same_failure_injection_gives_the_same_event_order_by_seq() {
    let spec = spec(FAILURES);
    let order = |log: &[Record]| -> Vec<String> {
        log.iter()
            .enumerate()
            .map(|(seq, r)| {
                let json = r.to_json(seq as u64);
                format!("{seq} {} {}", r.event.name(), json.get("task").map(|t| t.to_string()).unwrap_or_default())
            })
            .collect()
    };
    let a = run(&spec, 3);
    let b = run(&spec, 3);
    assert_eq!(order(&a), order(&b));
    assert_eq!(encoded(&a), encoded(&b));
    // The injected failures did what they say: a retry after exit code 2, a timeout kill
    // of the hanging second attempt, success on the third; `broken` blocks its dependent.
    let kinds: Vec<String> = order(&a).into_iter().map(|l| l.split_once(' ').unwrap().1.to_string()).collect();
    for expected in ["attempt_kill_requested \"flaky\"", "retry_scheduled \"flaky\"", "task_finished \"after-broken\""]
    {
        assert!(kinds.iter().any(|k| k == expected), "missing {expected}: {kinds:#?}");
    }
    let finished: Vec<(String, String)> = a
        .iter()
        .filter_map(|r| match &r.event {
            Event::TaskFinished(f) => Some((f.task.clone(), f.state.name().to_string())),
            _ => None,
        })
        .collect();
    assert!(finished.contains(&("flaky".into(), "succeeded".into())));
    assert!(finished.contains(&("broken".into(), "failed".into())));
    assert!(finished.contains(&("after-broken".into(), "blocked".into())));
    assert!(finished.contains(&("after-flaky".into(), "succeeded".into())));
    orch_replay::redecide(&a).expect("replays");
}

#[test]
fn retry_attempts_and_delays_match_the_policy() {
    let spec = spec(
        r#"
[[task]]
id = "t"
command = "true"
retry = { max_attempts = 5, backoff = "exponential", base_ms = 100, max_ms = 400 }
sim = { duration_ms = 10, outcomes = ["fail"] }
"#,
    );
    let log = run(&spec, 0);
    let mut exits = Vec::new();
    let mut retries = Vec::new();
    let mut dispatches = Vec::new();
    for r in &log {
        match &r.event {
            Event::AttemptExited(e) => exits.push((e.attempt, r.time_ms)),
            Event::RetryScheduled(s) => retries.push((s.attempt, s.delay_ms, s.at_ms)),
            Event::AttemptDispatched(d) => dispatches.push((d.attempt, r.time_ms)),
            Event::TaskFinished(f) => {
                assert_eq!((f.state.name(), f.attempts), ("exhausted", 5));
            }
            _ => {}
        }
    }
    // Delays 100, 200, 400, then capped at 400; each retry dispatched exactly at exit + delay.
    assert_eq!(retries.iter().map(|r| r.1).collect::<Vec<_>>(), [100, 200, 400, 400]);
    assert_eq!(dispatches.len(), 5);
    for (attempt, delay, at) in &retries {
        let exit_time = exits.iter().find(|e| e.0 == attempt - 1).unwrap().1;
        assert_eq!(*at, exit_time + delay);
        assert_eq!(dispatches.iter().find(|d| d.0 == *attempt).unwrap().1, *at);
    }
}

/// A race's interleaving shows both events on each side, also when one of the two tasks
/// never ran an attempt (a group) and finished before the other was dispatched: the
/// window used to start at the first dispatch, leaving the group's own event out.
#[test]
fn a_race_with_a_group_shows_both_events() {
    let group = "[[task]]\nid = \"g\"\n[[task]]\nid = \"c\"\nparent = \"g\"\nsim = { duration_ms = 100 }\n";
    let a = run(&spec(&format!("{group}[[task]]\nid = \"x\"\nafter = [\"g\"]\nsim = {{ duration_ms = 10 }}\n")), 0);
    let b = run(&spec(&format!("{group}[[task]]\nid = \"x\"\nsim = {{ duration_ms = 10 }}\n")), 0);
    let report = orch_replay::diff(&a, &b, orch_replay::Level::Decisions);
    let race = report.races.iter().find(|r| (r.first.as_str(), r.second.as_str()) == ("g", "x")).expect("the race");
    for side in [&race.a, &race.b] {
        for event in ["task_finished g", "task_finished x"] {
            assert!(side.iter().any(|l| l.contains(event)), "{event} missing from {side:#?}");
        }
    }
}
