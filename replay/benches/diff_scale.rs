//! `orch diff` on two logs of ~1,000,000 records each that diverge only at the end,
//! against `orch verify` of the same two logs (issue target: diff ≤ 2 × verify).
//! Run: `cargo bench -p orch-replay --bench diff_scale` (`DIFF_SCALE_TASKS` to resize).

use std::time::Instant;

use orch_engine::journal::{Journal, PipelinedJournal};
use orch_engine::record::Record;
use orch_engine::sim::simulate;
use orch_engine::spec::{Command, SimBehaviour, SimOutcome, Spec, TaskSpec};
use orch_log_format::{Durability, Options};
use orch_replay::diff::{diff_logs, Level};

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let tasks: usize = std::env::var("DIFF_SCALE_TASKS").ok().and_then(|s| s.parse().ok()).unwrap_or(333_333);
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let mut records = 0;
    for (path, last_fails) in [(&a, false), (&b, true)] {
        let journal = Journal::create(path, Options { durability: Durability::Never, ..Options::default() }).unwrap();
        let mut journal = PipelinedJournal::new(journal);
        let mut n = 0;
        simulate(chain_of_layers(tasks, last_fails), 1, |rs: &[Record]| {
            n += rs.len();
            journal.append(rs)
        })
        .expect("simulation");
        journal.close().unwrap();
        records = n;
    }
    let best = |f: &dyn Fn()| {
        (0..3)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .fold(f64::MAX, f64::min)
    };
    let verify = best(&|| {
        orch_log_format::verify(&a).unwrap();
        orch_log_format::verify(&b).unwrap();
    });
    let mut rows = Vec::new();
    for level in [Level::Exact, Level::Decisions, Level::Outcomes] {
        let t = best(&|| {
            let report = diff_logs(&a, &b, level).unwrap();
            assert!(!report.identical, "the logs differ at the end");
        });
        rows.push((level, t));
    }
    println!("{records} records per log; verify of both: {:.1} ms", verify * 1e3);
    println!("| level | diff time | diff / verify |");
    println!("|---|---:|---:|");
    for (level, t) in rows {
        println!("| {level:?} | {:.1} ms | {:.2} |", t * 1e3, t / verify);
    }
}

/// Independent tasks in waves of 1,000 (3 records each); the very last one fails in
/// the second log, so the logs part only at their end.
fn chain_of_layers(n: usize, last_fails: bool) -> Spec {
    let mut spec = Spec::default();
    spec.run.max_concurrency = Some(64);
    for i in 0..n {
        let outcomes = if last_fails && i + 1 == n { vec![SimOutcome::Fail(1)] } else { Vec::new() };
        spec.tasks.push(TaskSpec {
            id: format!("t{i}"),
            command: Some(Command::Shell("true".into())),
            sim: Some(SimBehaviour { duration_ms: 1 + (i % 7) as u64, outcomes, stdout: None }),
            ..TaskSpec::default()
        });
    }
    spec
}
