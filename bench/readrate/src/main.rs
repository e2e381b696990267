//! `readrate LOG_DIR RUNS`: times, in one process, over the same log:
//! blake3 raw (single-threaded `Hasher::update` over the segment files' bytes, already in
//! memory: the reference of docs/performance.md's log section), `verify(dir)`,
//! `read_records` (map + CRC + decode), `State::fold`, `redecide` (fold + re-ask the
//! scheduler at every input), and `diff(A, A)` at the default level. Prints one JSON
//! object with the median seconds of each, and the record and byte counts.

use std::path::PathBuf;
use std::time::Instant;

use orch_engine::journal::read_records;
use orch_engine::state::State;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> f64 {
    let mut v = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        std::hint::black_box(f());
        v.push(t.elapsed().as_secs_f64());
    }
    median(v)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().expect("usage: readrate LOG_DIR [RUNS]"));
    let runs: usize = args.next().map_or(5, |r| r.parse().expect("RUNS"));

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

    let blake3_raw = time(runs, || {
        let mut h = blake3::Hasher::new();
        for b in &bodies {
            h.update(b);
        }
        h.finalize()
    });
    let verify = time(runs, || orch_log_format::verify(&dir).expect("verify").records);
    let decode = time(runs, || read_records(&dir).expect("read").len());
    let fold = time(runs, || State::fold(&records).expect("fold").is_finished());
    let redecide = time(runs, || orch_replay::redecide(&records).expect("redecide").incomplete_from);
    let diff = time(runs, || orch_replay::diff(&records, &records, orch_replay::Level::Decisions));

    println!(
        "{{\"records\":{n},\"bytes\":{bytes},\"segments\":{},\"blake3_raw_s\":{blake3_raw},\"verify_s\":{verify},\
         \"decode_s\":{decode},\"fold_s\":{fold},\"redecide_s\":{redecide},\"diff_s\":{diff}}}",
        files.len()
    );
}
