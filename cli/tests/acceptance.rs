//! Acceptance lines of `orch run` / `orch replay`: the speedup of 16 parallel sleeps as
//! the recorded times show it, and replay catching one edited decision in a log whose
//! checksums and chain were recomputed (so only re-deciding can tell).

use std::path::Path;
use std::process::Command;

use orch_engine::journal::{read_records, Journal};
use orch_engine::record::Event;
use orch_log_format::{Durability, Options};
use serde_json::Value;

fn orch(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_orch"))
        .args(args)
        .current_dir(dir)
        .env_remove("ORCH_STORE")
        .output()
        .expect("run orch");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

#[test]
fn sixteen_sleeps_at_cap_eight_overlap_exactly_eight_and_speed_up_at_least_7_5x() {
    let tmp = tempfile::tempdir().unwrap();
    let mut spec = String::from("[run]\nmax_concurrency = 8\n");
    for i in 0..16 {
        spec += &format!("[[task]]\nid = \"s{i:02}\"\ncommand = \"sleep 0.5\"\n");
    }
    std::fs::write(tmp.path().join("sleeps.toml"), spec).unwrap();
    let (code, stdout, stderr) = orch(tmp.path(), &["run", "sleeps.toml", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let summary: Value = serde_json::from_str(stdout.trim()).unwrap();
    let (attempt_ms, wall_ms) = (summary["attempt_ms"].as_u64().unwrap(), summary["wall_ms"].as_u64().unwrap());
    assert!(attempt_ms * 100 >= wall_ms * 750, "speedup {attempt_ms}/{wall_ms} below 7.5x");

    // Maximum overlap, from the recorded dispatch and exit records (a serial run gives 1).
    let records =
        read_records(&tmp.path().join(".orch/runs").read_dir().unwrap().next().unwrap().unwrap().path().join("log"))
            .unwrap();
    let (mut running, mut peak) = (0i32, 0i32);
    for r in &records {
        match r.event {
            Event::AttemptDispatched(_) => running += 1,
            Event::AttemptExited(_) => running -= 1,
            _ => {}
        }
        peak = peak.max(running);
    }
    assert_eq!(peak, 8, "the cap's overlap, no more and no less");
}

#[test]
fn replay_fails_at_the_seq_of_an_edited_decision_even_with_valid_checksums() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = "[[task]]\nid = \"flaky\"\ncommand = \"true\"\nretry = { max_attempts = 3, base_ms = 100 }\n\
                sim = { outcomes = [\"fail\", \"succeed\"] }\n[[task]]\nid = \"next\"\ncommand = \"true\"\nafter = [\"flaky\"]\n";
    std::fs::write(tmp.path().join("wf.toml"), spec).unwrap();
    let (code, _, stderr) = orch(tmp.path(), &["run", "wf.toml", "--sim"]);
    assert_eq!(code, 0, "{stderr}");
    let (code, stdout, _) = orch(tmp.path(), &["replay", "latest"]);
    assert_eq!(code, 0, "the untouched log replays: {stdout}");

    // Rewrite the log with one decision changed: the retry delay. The writer recomputes
    // every checksum and the chain, so verify is happy; only re-deciding notices.
    let run_dir = tmp.path().join(".orch/runs").read_dir().unwrap().next().unwrap().unwrap().path();
    let mut records = read_records(&run_dir.join("log")).unwrap();
    let seq = records.iter().position(|r| matches!(r.event, Event::RetryScheduled(_))).expect("a retry");
    if let Event::RetryScheduled(r) = &mut records[seq].event {
        r.delay_ms += 1;
        r.at_ms += 1;
    }
    let edited = tmp.path().join("edited");
    let mut journal =
        Journal::create(&edited, Options { durability: Durability::Never, ..Options::default() }).unwrap();
    journal.append(&records).unwrap();
    journal.close().unwrap();

    let (code, stdout, _) = orch(tmp.path(), &["verify", edited.to_str().unwrap()]);
    assert_eq!(code, 0, "checksums and chain are valid: {stdout}");
    let (code, _, stderr) = orch(tmp.path(), &["replay", edited.to_str().unwrap()]);
    assert_eq!(code, 1, "a non-deterministic log is a mismatch (exit 1): {stderr}");
    assert!(stderr.contains(&format!("seq {seq}")), "names the divergent seq {seq}: {stderr}");
    assert!(stderr.contains("recorded") && stderr.contains("derived") && stderr.contains("flaky"), "{stderr}");
}
