//! `readrate LOG_DIR [RUNS [STAGE]]`: times, in one process, over the same log:
//! blake3 raw (single-threaded `Hasher::update` over the segment files' bytes, already in
//! memory: the reference of docs/performance.md's log section), `verify(dir)`,
//! `read_records` (map + CRC + decode), `State::fold`, `redecide` (fold + re-ask the
//! scheduler at every input), and `diff(A, A)` at the default level; then the stages of
//! `orch replay` and of the fold, so that a change can be traced to the stage it moved:
//! the run-started record alone (loading its compiled graph; spec parse + validate +
//! compile for a kind-1 record, from before the graph was carried), the spec's JSON parse
//! and its compile on their own, decoding while folding (`fold_log`, no `Vec<Record>`),
//! the timeline, rollup and summary from the folded state, and `orch replay`'s work in
//! process (verify + read + redecide + summary), reading then folding against reading while
//! the spec compiles on a second thread (`read_then_fold`, `read_compiling_fold`), and the
//! fold of every record after the run-started one on its own (`fold_rest`). Prints one
//! JSON object with the median seconds of each (`*_s`, wall) and the median time on the
//! CPU (`cpu.*`, which a shared machine disturbs less), and the record and byte counts.
//!
//! With a STAGE name (a key without `_s`), runs only that stage RUNS times and prints its
//! mean: a loop to hold under `perf record`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use orch_engine::journal::{fold_log, read_compiling, read_records};
use orch_engine::record::{Event, Record};
use orch_engine::spec::Spec;
use orch_engine::state::State;
use orch_replay::rollup::Rollup;
use orch_replay::timeline::Timeline;
use orch_replay::Summary;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Seconds this thread has spent on a CPU (the scheduler's own count).
fn on_cpu() -> f64 {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    text.split(' ').next().and_then(|ns| ns.parse::<f64>().ok()).unwrap_or(0.0) / 1e9
}

/// Median wall and on-CPU seconds of `runs` calls.
fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> (f64, f64) {
    let (mut wall, mut cpu) = (Vec::with_capacity(runs), Vec::with_capacity(runs));
    for _ in 0..runs {
        let (t, c) = (Instant::now(), on_cpu());
        std::hint::black_box(f());
        wall.push(t.elapsed().as_secs_f64());
        cpu.push(on_cpu() - c);
    }
    (median(wall), median(cpu))
}

/// A stage's name and its work (returning something, so that it is not optimised away).
type Stage<'a> = (&'static str, Box<dyn Fn() -> u64 + 'a>);

/// Every stage, by name, as a closure over the log and its records.
fn stages<'a>(
    dir: &'a Path,
    bodies: &'a [Vec<u8>],
    records: &'a [Record],
    folded: &'a State,
    timeline: &'a Timeline,
) -> Vec<Stage<'a>> {
    let spec_json = match &records[0].event {
        Event::RunStarted(s) => s.spec.clone(),
        _ => panic!("the log does not start with run_started"),
    };
    let spec: std::rc::Rc<Spec> = std::rc::Rc::new(serde_json::from_str(&spec_json).expect("spec"));
    let spec_to_clone = spec.clone();
    let (json_a, json_b) = (spec_json.clone(), spec_json.clone());
    vec![
        (
            "blake3_raw",
            Box::new(move || {
                let mut h = blake3::Hasher::new();
                for b in bodies {
                    h.update(b);
                }
                h.finalize().as_bytes()[0] as u64
            }),
        ),
        ("verify", Box::new(move || orch_log_format::verify(dir).expect("verify").records)),
        ("decode", Box::new(move || read_records(dir).expect("read").len() as u64)),
        ("fold", Box::new(move || State::fold(records).expect("fold").records_applied())),
        (
            // The fold without the state's drop (leaked: only for a few runs).
            "fold_keep",
            Box::new(move || {
                let state = State::fold(records).expect("fold");
                let n = state.records_applied();
                std::mem::forget(state);
                n
            }),
        ),
        ("redecide", Box::new(move || orch_replay::redecide(records).expect("redecide").state.records_applied())),
        (
            "diff",
            Box::new(move || {
                let report = orch_replay::diff(records, records, orch_replay::Level::Decisions);
                std::hint::black_box(&report);
                0
            }),
        ),
        ("fold_started", Box::new(move || State::fold(&records[..1]).expect("fold").records_applied())),
        ("spec_parse", Box::new(move || serde_json::from_str::<Spec>(&spec_json).expect("spec").tasks.len() as u64)),
        (
            "spec_compile",
            Box::new(move || {
                orch_engine::graph::Graph::compile(Spec::clone(&spec), "readrate").expect("valid").len() as u64
            }),
        ),
        ("spec_ignored", {
            let j = json_a;
            Box::new(move || {
                serde_json::from_str::<serde::de::IgnoredAny>(&j).expect("json");
                0
            })
        }),
        ("spec_lean", {
            let j = json_b;
            Box::new(move || {
                #[derive(serde::Deserialize)]
                struct T<'a> {
                    #[serde(borrow)]
                    id: &'a str,
                    #[serde(default, borrow)]
                    after: Vec<&'a str>,
                    #[allow(dead_code)]
                    #[serde(default)]
                    command: Option<serde::de::IgnoredAny>,
                    #[allow(dead_code)]
                    #[serde(default)]
                    sim: Option<serde::de::IgnoredAny>,
                }
                #[derive(serde::Deserialize)]
                struct S<'a> {
                    #[serde(borrow, rename = "task")]
                    tasks: Vec<T<'a>>,
                    #[allow(dead_code)]
                    run: serde::de::IgnoredAny,
                    #[allow(dead_code)]
                    #[serde(default, rename = "wave")]
                    waves: Option<serde::de::IgnoredAny>,
                }
                let s: S = serde_json::from_str(&j).expect("json");
                s.tasks.iter().map(|t| t.id.len() + t.after.len()).sum::<usize>() as u64
            })
        }),
        ("spec_clone", Box::new(move || Spec::clone(&spec_to_clone).tasks.len() as u64)),
        ("fold_log", Box::new(move || fold_log(dir, None).expect("fold").1)),
        (
            // What `orch show` did: read every record, then fold them.
            "read_then_fold",
            Box::new(move || State::fold(&read_records(dir).expect("read")).expect("fold").records_applied()),
        ),
        (
            // What it does: read them while the run-started spec compiles on a second thread.
            "read_compiling_fold",
            Box::new(move || read_compiling(dir).expect("read").fold().expect("fold").records_applied()),
        ),
        ("timeline", Box::new(move || Timeline::of_state(folded, records).attempts.len() as u64)),
        ("rollup", Box::new(move || Rollup::of(timeline).tasks)),
        ("summary", Box::new(move || Summary::of_state(folded, records).tasks)),
        (
            "replay",
            Box::new(move || {
                // What `orch replay` does, in process.
                orch_log_format::verify(dir).expect("verify");
                let records = read_records(dir).expect("read");
                let replayed = orch_replay::redecide(&records).expect("redecide");
                Summary::of_state(&replayed.state, &records).tasks
            }),
        ),
    ]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().expect("usage: readrate LOG_DIR [RUNS [STAGE]]"));
    let runs: usize = args.next().map_or(5, |r| r.parse().expect("RUNS"));
    let only = args.next();

    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("log dir")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    let bodies: Vec<Vec<u8>> = files.iter().map(|p| std::fs::read(p).expect("segment")).collect();
    let bytes: usize = bodies.iter().map(Vec::len).sum();

    let records = read_records(&dir).expect("read");
    let n = records.len();
    let folded = State::fold(&records).expect("fold");
    let timeline = Timeline::of_state(&folded, &records);
    let stages = stages(&dir, &bodies, &records, &folded, &timeline);

    if let Some(only) = only {
        let (_, f) = stages.iter().find(|(name, _)| *name == only).expect("no such stage");
        let (t, c) = (Instant::now(), on_cpu());
        for _ in 0..runs {
            std::hint::black_box(f());
        }
        let (wall, cpu) = (t.elapsed().as_secs_f64() / runs as f64, (on_cpu() - c) / runs as f64);
        eprintln!("{only}: {wall:.4} s/run, on cpu {cpu:.4} s/run");
        return;
    }

    let mut walls = Vec::new();
    let mut cpus = Vec::new();
    for (name, f) in &stages {
        let (wall, cpu) = time(runs, f);
        walls.push(format!("\"{name}_s\":{wall}"));
        cpus.push(format!("\"{name}\":{cpu}"));
    }
    // The fold of every record after the run-started one, timed on its own (the state
    // after record 0 is made, and the state dropped, outside the clock).
    let (mut wall, mut cpu) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let mut state = State::fold(&records[..1]).expect("fold");
        let (t, c) = (Instant::now(), on_cpu());
        for r in &records[1..] {
            state.apply(r).expect("apply");
        }
        wall.push(t.elapsed().as_secs_f64());
        cpu.push(on_cpu() - c);
        std::hint::black_box(&state);
    }
    walls.push(format!("\"fold_rest_s\":{}", median(wall)));
    cpus.push(format!("\"fold_rest\":{}", median(cpu)));
    println!(
        "{{\"records\":{n},\"bytes\":{bytes},\"segments\":{},{},\"cpu\":{{{}}}}}",
        files.len(),
        walls.join(","),
        cpus.join(",")
    );
}
