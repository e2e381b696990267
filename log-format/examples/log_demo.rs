//! A newcomer's first run: write a log of 100,000 records with group commit, reopen
//! it, read it back, verify it, and print the rates and the log's digest.
//!
//! `cargo run --release -p orch-log-format --example log_demo -- target/demo-log`

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use orch_log_format::{hex, verify, Options, Reader, Writer};

const RECORDS: u64 = 100_000;
const PAYLOAD_BYTES: usize = 100;
/// Records per commit: what an engine appending a burst of decisions would do.
const BATCH: u64 = 64;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("log_demo: {e}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(std::env::args_os().nth(1).unwrap_or_else(|| "target/demo-log".into()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }

    let started = Instant::now();
    let mut writer = Writer::create(&dir, Options::default())?;
    let mut payload = [0u8; PAYLOAD_BYTES];
    for seq in 0..RECORDS {
        // Distinct, deterministic payloads: the digest below is the same on every run.
        payload[..8].copy_from_slice(&seq.to_le_bytes());
        payload[8..].fill((seq % 251) as u8);
        writer.append(&payload)?;
        if (seq + 1) % BATCH == 0 {
            writer.commit()?;
        }
    }
    writer.commit()?; // the digest covers committed records only
    let written_digest = writer.digest();
    writer.close()?;
    let write_s = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let (writer, recovery) = Writer::open(&dir, Options::default())?;
    drop(writer);
    let reopen_s = started.elapsed().as_secs_f64();
    if recovery.records != RECORDS || recovery.torn.is_some() {
        return Err(format!("reopen found {recovery:?}, expected {RECORDS} records and no torn tail").into());
    }

    let started = Instant::now();
    let reader = Reader::open(&dir)?;
    let mut bytes = 0;
    for record in reader.iter() {
        bytes += record?.payload.len();
    }
    let read_s = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let report = verify(&dir)?;
    let verify_s = started.elapsed().as_secs_f64();
    if report.digest != written_digest || report.records != RECORDS {
        return Err(format!("verify found {report:?}, the writer's digest was {}", hex(&written_digest)).into());
    }

    let rate = |s: f64| RECORDS as f64 / s;
    println!("log      {}", dir.display());
    println!("records  {RECORDS} x {PAYLOAD_BYTES} bytes ({bytes} payload bytes), {} segment(s)", report.segments);
    println!("write    {:>12.0} records/s  (batch durability, commit every {BATCH})", rate(write_s));
    println!("reopen   {:>12.3} ms", reopen_s * 1e3);
    println!("read     {:>12.0} records/s", rate(read_s));
    println!("verify   {:>12.0} records/s  ({:.0} MB/s)", rate(verify_s), report.bytes as f64 / verify_s / 1e6);
    println!("digest   {}", hex(&report.digest));
    Ok(())
}
