//! The log's throughput with 100-byte payloads: append under each durability policy,
//! iteration, verify, and — over the very same bytes, in the same run — blake3's and
//! crc32fast's raw rates, which bound what verify can reach (it must hash every byte
//! and checksum every byte). Figures go to `docs/performance.md`; the targets
//! are batch append ≥ 1M records/s, iteration ≥ 10M records/s, verify ≥ 0.7 × blake3.
//!
//! `cargo bench -p orch-log-format` (a few minutes on 2 cores).

use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use orch_log_format::layout::SEGMENT_HEADER_LEN;
use orch_log_format::{list_segments, verify, Durability, Options, Reader, Writer};

const PAYLOAD_BYTES: usize = 100;
/// Records in the log that iteration and verify read (about 120 MB on disk).
const READ_RECORDS: u64 = 1_000_000;

fn payload(seq: u64) -> [u8; PAYLOAD_BYTES] {
    let mut p = [(seq % 251) as u8; PAYLOAD_BYTES];
    p[..8].copy_from_slice(&seq.to_le_bytes());
    p
}

/// Appends `records` to a fresh log, committing every `per_commit`; returns the time
/// spent appending and committing (creating and closing the log are not counted).
fn append_run(durability: Durability, records: u64, per_commit: u64) -> Duration {
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut writer = Writer::create(&tmp.path().join("log"), Options { durability, ..Options::default() }).unwrap();
    let started = Instant::now();
    for seq in 0..records {
        writer.append(&payload(seq)).unwrap();
        if (seq + 1) % per_commit == 0 {
            writer.commit().unwrap();
        }
    }
    writer.commit().unwrap();
    let elapsed = started.elapsed();
    writer.close().unwrap();
    elapsed
}

fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("append");
    group.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    let batch = Durability::default();
    // (policy name, policy, records per iteration, records per commit)
    let cases = [
        ("batch", batch, 200_000, 64),
        ("batch", batch, 50_000, 1),
        ("never", Durability::Never, 200_000, 64),
        ("never", Durability::Never, 50_000, 1),
        // Each commit is an fdatasync: few records.
        ("always", Durability::Always, 200, 1),
    ];
    for (name, durability, records, per_commit) in cases {
        group.throughput(Throughput::Elements(records));
        let id = BenchmarkId::new(name, format!("commit_every_{per_commit}"));
        group.bench_function(id, |b| {
            b.iter_custom(|iters| (0..iters).map(|_| append_run(durability, records, per_commit)).sum())
        });
    }
    group.finish();
}

/// Writes the log that the read benchmarks share (once per run).
fn read_fixture(dir: &Path) {
    let mut writer = Writer::create(dir, Options { durability: Durability::Never, ..Options::default() }).unwrap();
    for seq in 0..READ_RECORDS {
        writer.append(&payload(seq)).unwrap();
        if (seq + 1) % 1024 == 0 {
            writer.commit().unwrap();
        }
    }
    writer.close().unwrap();
}

fn read(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("log");
    read_fixture(&dir);
    let reader = Reader::open(&dir).unwrap();
    let report = verify(&dir).unwrap();
    // The exact bytes verify covers: segment bodies (headers are 64 bytes each).
    let bodies: Vec<Vec<u8>> = list_segments(&dir)
        .unwrap()
        .iter()
        .map(|s| std::fs::read(&s.path).unwrap()[SEGMENT_HEADER_LEN..].to_vec())
        .collect();
    let body_bytes: u64 = bodies.iter().map(|b| b.len() as u64).sum();

    let mut group = c.benchmark_group("read");
    group.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));

    group.throughput(Throughput::Elements(READ_RECORDS));
    group.bench_function("iter", |b| {
        b.iter(|| {
            let mut n = 0u64;
            for record in reader.iter() {
                n += record.unwrap().payload.len() as u64;
            }
            assert_eq!(n, READ_RECORDS * PAYLOAD_BYTES as u64);
        })
    });

    group.throughput(Throughput::Bytes(body_bytes));
    group.bench_function("verify", |b| {
        b.iter(|| {
            let got = verify(&dir).unwrap();
            assert_eq!(got.digest, report.digest);
        })
    });
    // The same check on a reader whose segments are already mapped and paged in:
    // what verify costs beyond the page faults of mapping ~120 MB afresh.
    group.bench_function("verify_mapped", |b| {
        b.iter(|| {
            let got = orch_log_format::verify_reader(&reader).unwrap();
            assert_eq!(got.digest, report.digest);
        })
    });
    group.bench_function("blake3_raw", |b| {
        b.iter(|| {
            for body in &bodies {
                black_box(blake3::Hasher::new().update(black_box(body)).finalize());
            }
        })
    });
    // blake3 over freshly mapped segment files: the same bytes through the same IO
    // path as `verify` (open, mmap, page faults), for a like-for-like ratio.
    group.bench_function("blake3_mapped", |b| {
        b.iter(|| {
            for seg in list_segments(&dir).unwrap() {
                let file = std::fs::File::open(&seg.path).unwrap();
                // SAFETY: read-only map of a file nothing writes or truncates meanwhile.
                #[allow(unsafe_code)]
                let map = unsafe { memmap2::Mmap::map(&file) }.unwrap();
                black_box(blake3::Hasher::new().update(&map[SEGMENT_HEADER_LEN..]).finalize());
            }
        })
    });
    group.bench_function("crc32_raw", |b| {
        b.iter(|| {
            for body in &bodies {
                black_box(crc32fast::hash(black_box(body)));
            }
        })
    });
    group.finish();

    // Seeking: iter_from finds the segment by name, then hops frame headers.
    let mut group = c.benchmark_group("seek");
    group.sample_size(10).warm_up_time(Duration::from_millis(200)).measurement_time(Duration::from_secs(1));
    group.throughput(Throughput::Elements(1));
    group.bench_function("iter_from_last_record", |b| {
        b.iter(|| assert_eq!(reader.iter_from(READ_RECORDS - 1).next().unwrap().unwrap().seq, READ_RECORDS - 1))
    });
    group.finish();
}

criterion_group!(benches, append, read);
criterion_main!(benches);
