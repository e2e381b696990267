//! `orch diff` on two logs of ~1,000,000 records each that diverge only at the end,
//! against `orch verify` of the same two logs (issue target: diff ≤ 2 × verify).
//! Run: `cargo bench -p orch-replay --bench diff_scale` (`DIFF_SCALE_TASKS` to resize).
//!
//! Three pairs of logs, all against the same log A:
//! - `end`: the same workflow, where the process that exits last failed in B (its exit,
//!   its `task_finished` and `run_finished` differ): the logs share every byte up to there.
//! - `spec`: B's workflow scripts that failure (the last task's `sim` entry differs), so
//!   `run_started` differs too and the spec section compares the two workflows.
//! - `order`: the same workflow, simulated with another order of simultaneous
//!   completions: the logs part within the first hundred records and nearly every
//!   sibling pair races (two real runs of one workflow look like this).

use std::time::Instant;

use orch_engine::journal::{Journal, PipelinedJournal};
use orch_engine::record::{Event, ExitStatus, Record, RunOutcome, Terminal};
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
    let (a, end, edited, order) =
        (dir.path().join("a"), dir.path().join("end"), dir.path().join("spec"), dir.path().join("order"));
    let mut records = 0;
    // The task whose process exits last (A's log is written first).
    let mut last = String::new();
    for (path, spec_fails, process_fails, order_seed) in
        [(&a, false, false, 1), (&end, false, true, 1), (&edited, true, false, 1), (&order, false, false, 2)]
    {
        let journal = Journal::create(path, Options { durability: Durability::Never, ..Options::default() }).unwrap();
        let mut journal = PipelinedJournal::new(journal);
        let mut n = 0;
        let mut batch = Vec::new();
        simulate(chain_of_layers(tasks, spec_fails), order_seed, |rs: &[Record]| {
            n += rs.len();
            if order_seed != 1 {
                return journal.append(rs);
            }
            if !process_fails {
                if let Some(Event::AttemptExited(e)) =
                    rs.iter().rev().map(|r| &r.event).find(|e| matches!(e, Event::AttemptExited(_)))
                {
                    last.clone_from(&e.task);
                }
                return journal.append(rs);
            }
            batch.clear();
            batch.extend(rs.iter().cloned().map(|mut r| {
                fail_at_the_end(&mut r, &last);
                r
            }));
            journal.append(&batch)
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
    println!("{records} records per log");
    println!("| pair | level | verify of both | diff | diff / verify |");
    println!("|---|---|---:|---:|---:|");
    for (name, b) in [("end", &end), ("spec", &edited), ("order", &order)] {
        let verify = best(&|| {
            orch_log_format::verify(&a).unwrap();
            orch_log_format::verify(b).unwrap();
        });
        for level in [Level::Exact, Level::Decisions, Level::Outcomes] {
            let t = best(&|| {
                let report = diff_logs(&a, b, level).unwrap();
                // Only the order pair ends the same way (it differs in order alone).
                let same_outcomes = name == "order" && level == Level::Outcomes;
                assert_eq!(report.identical, same_outcomes, "{name} at {}", level.name());
            });
            println!("| {name} | {} | {:.1} ms | {:.1} ms | {:.2} |", level.name(), verify * 1e3, t * 1e3, t / verify);
        }
    }
}

/// The last task's process fails (exit code 1): its exit, its end and the run's end say so.
fn fail_at_the_end(r: &mut Record, last: &str) {
    match &mut r.event {
        Event::AttemptExited(e) if e.task == last => e.status = ExitStatus::Code(1),
        Event::TaskFinished(f) if f.task == last => f.state = Terminal::Failed,
        Event::RunFinished(f) => f.outcome = RunOutcome::Failed,
        _ => {}
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
            sim: Some(Box::new(SimBehaviour { duration_ms: 1 + (i % 7) as u64, outcomes, ..SimBehaviour::default() })),
            ..TaskSpec::default()
        });
    }
    spec
}
