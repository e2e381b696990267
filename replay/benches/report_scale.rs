//! `orch report` at scale: a layered random DAG of 100,000 tasks (2 dependencies each,
//! cap 64, as `engine/benches/sim_scale.rs` builds) is simulated into a real log, then
//! timed: read the log, fold the timeline and rollups, render the HTML, write the file;
//! the Chrome trace export likewise. Prints a Markdown table of best times and sizes.
//!
//! Run: `cargo bench -p orch-replay --bench report_scale`. `REPORT_SCALE_SIZES=10000`
//! picks sizes; `REPORT_SCALE_SPEC=FILE` also writes the 100k-task spec as JSON (to time
//! the CLI: `orch run --sim FILE && orch report latest -o report.html`).

use std::time::Instant;

use orch_engine::journal::{read_records, Journal};
use orch_engine::record::Record;
use orch_engine::sim::simulate;
use orch_engine::spec::{Command, SimBehaviour, SimOutcome, Spec, TaskSpec};
use orch_log_format::{Durability, Options};
use orch_replay::{export, report, timeline::Timeline};

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` lists benches; nothing to list here
    }
    let sizes: Vec<usize> = std::env::var("REPORT_SCALE_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10_000, 100_000]);
    if let Ok(path) = std::env::var("REPORT_SCALE_SPEC") {
        let spec = serde_json::to_string(&layered_dag(100_000, 64, 42)).expect("spec renders");
        std::fs::write(&path, spec).expect("write spec");
    }
    println!("| tasks | records | attempts | report (read + render + write) | HTML size | chrome-trace export | trace size |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for n in sizes {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("log");
        let mut journal =
            Journal::create(&log, Options { durability: Durability::Never, ..Options::default() }).expect("create log");
        simulate(layered_dag(n, 64, 42), 1, |rs: &[Record]| {
            journal.append_uncommitted(rs)?;
            journal.commit_if_over(64 * 1024)
        })
        .expect("simulation");
        journal.close().expect("close");
        let (mut best_report, mut best_trace) = (f64::MAX, f64::MAX);
        let (mut html_bytes, mut trace_bytes, mut records, mut attempts) = (0, 0, 0, 0);
        for _ in 0..3 {
            let start = Instant::now();
            let rs = read_records(&log).expect("read");
            let html = report::render(&rs);
            std::fs::write(dir.path().join("report.html"), &html).expect("write report");
            best_report = best_report.min(start.elapsed().as_secs_f64());
            html_bytes = html.len();
            records = rs.len();

            let start = Instant::now();
            let rs = read_records(&log).expect("read");
            let tl = Timeline::of(&rs);
            let trace = serde_json::to_vec(&export::chrome_trace(&rs, &tl)).expect("trace");
            std::fs::write(dir.path().join("trace.json"), &trace).expect("write trace");
            best_trace = best_trace.min(start.elapsed().as_secs_f64());
            trace_bytes = trace.len();
            attempts = tl.attempts.len();
        }
        println!(
            "| {n} | {records} | {attempts} | {best_report:.3} s | {:.1} MB | {best_trace:.3} s | {:.1} MB |",
            html_bytes as f64 / 1e6,
            trace_bytes as f64 / 1e6
        );
    }
}

/// `n` tasks in layers of 1,000 (fewer when small), each depending on 2 pseudo-random
/// tasks of the previous layer; every 50th task fails its first attempt and retries, so
/// the report has retries to draw. A fixed seed: every run builds the same graph.
fn layered_dag(n: usize, cap: u32, seed: u64) -> Spec {
    let width = (n / 40).clamp(1, 1000);
    let mut rng = seed;
    let mut next = move || {
        rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (rng >> 33) as usize
    };
    let mut spec = Spec::default();
    spec.run.max_concurrency = Some(cap);
    spec.tasks.reserve(n);
    for i in 0..n {
        let layer_start = i - i % width;
        let after = if layer_start == 0 {
            Vec::new()
        } else {
            let prev = layer_start - width;
            let (a, b) = (prev + next() % width, prev + next() % width);
            if a == b {
                vec![format!("n{a}")]
            } else {
                vec![format!("n{a}"), format!("n{b}")]
            }
        };
        let mut sim = SimBehaviour { duration_ms: 1 + (next() % 5) as u64, ..SimBehaviour::default() };
        let mut task = TaskSpec {
            id: format!("n{i}"),
            command: Some(Command::Shell("true".into())),
            after,
            ..TaskSpec::default()
        };
        if i % 50 == 7 {
            sim.outcomes = vec![SimOutcome::Fail(1), SimOutcome::Succeed];
            task.more_mut().retry.max_attempts = 2;
        }
        task.sim = Some(Box::new(sim));
        spec.tasks.push(task);
    }
    spec
}
