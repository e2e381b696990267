//! Simulated scale: layered random DAGs of 10k, 100k and 1M tasks (2 dependencies each,
//! cap 64) run end to end — decisions, fold, encoding and append to a real log with
//! durability `never` — reporting records/s, time per task and peak RSS per task.
//!
//! A plain harness rather than criterion: each size runs a few times in one process and
//! the peak RSS is reset between runs (`/proc/self/clear_refs`), which a statistical
//! harness would blur. Run: `cargo bench -p orch-engine --bench sim_scale`.
//! `SIM_SCALE_SIZES=10000,100000` picks sizes.

use std::time::Instant;

use orch_engine::journal::{Journal, PipelinedJournal};
use orch_engine::record::Record;
use orch_engine::sim::simulate;
use orch_log_format::{Durability, Options};

include!("support/dag.rs");

fn main() {
    let sizes: Vec<usize> = std::env::var("SIM_SCALE_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10_000, 100_000, 1_000_000]);
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` lists benches; nothing to list here
    }
    println!("| tasks | records | best time | records/s | µs/task | peak RSS | RSS/task | of which spec validation + compile |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for n in sizes {
        let runs = if n >= 1_000_000 { 2 } else { 3 };
        let mut best = f64::MAX;
        let mut records = 0;
        let mut peak_kib = 0;
        let mut setup = f64::MAX;
        for _ in 0..runs {
            // The part of a run spent validating and compiling the spec (the
            // run-started record's fold), measured on its own for the last column.
            let spec = layered_dag(n, 64, 42);
            let t = Instant::now();
            let graph = orch_engine::graph::Graph::compile(spec, "bench").expect("valid");
            setup = setup.min(t.elapsed().as_secs_f64());
            drop(graph);
            reset_peak_rss();
            let base_kib = rss_kib("VmRSS");
            let spec = layered_dag(n, 64, 42);
            let dir = tempfile::tempdir().expect("tempdir");
            let start = Instant::now();
            let journal = Journal::create(
                &dir.path().join("log"),
                Options { durability: Durability::Never, ..Options::default() },
            )
            .expect("create log");
            // The simulation performs no real effects, so the log is written on a second
            // thread while the scheduler goes on (see `PipelinedJournal`).
            let mut journal = PipelinedJournal::new(journal);
            let mut count = 0u64;
            let state = simulate(spec, 1, |rs: &[Record]| {
                count += rs.len() as u64;
                journal.append(rs)
            })
            .expect("simulation");
            journal.close().expect("close");
            let secs = start.elapsed().as_secs_f64();
            assert!(state.is_finished());
            drop(state);
            best = best.min(secs);
            records = count;
            peak_kib = peak_kib.max(rss_kib("VmHWM").saturating_sub(base_kib));
        }
        println!(
            "| {n} | {records} | {best:.3} s | {:.0} | {:.2} | {:.1} MiB | {:.0} B | {:.3} s |",
            records as f64 / best,
            best * 1e6 / n as f64,
            peak_kib as f64 / 1024.0,
            peak_kib as f64 * 1024.0 / n as f64,
            setup
        );
    }
}

fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn rss_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
