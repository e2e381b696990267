//! Disk full / file too large while appending: the run stops with a clear error, the log
//! verifies, and a resume finishes it.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use orch_engine::record::Event;

use super::{log_json, reference, wait_for, workflow, Out, Scratch, FLAKY};

/// After the append failed: the error was clear (exit 2, naming the segment), the log
/// verifies up to its last whole record, and once space is back `orch resume` finishes
/// the run with the uninterrupted outcome.
fn after_a_failed_append(s: &Scratch, out: &Out, why: &str) {
    assert_eq!(out.code(), Some(2), "{why}: orch run\nstdout:\n{}\nstderr:\n{}", out.stdout, out.stderr);
    assert!(!out.stderr.contains("panicked"), "{why}: {}", out.stderr);
    assert!(out.stderr.contains("00000000000000000000.seg") && out.stderr.contains(why), "{why}: {}", out.stderr);
    assert!(
        out.stderr.contains("writing the run's log failed") && out.stderr.contains("orch resume"),
        "{}",
        out.stderr
    );
    let records = s.records();
    assert!(!records.is_empty(), "{why}: run_started was written");
    assert!(
        !records.iter().any(|r| matches!(r.event, Event::RunFinished(_))),
        "{why}: the run did not finish (the condition must hit mid-run)"
    );
    s.orch(&["verify", "latest"]).expect(0).unwrap();
    s.orch(&["replay", "latest"]).expect(0).unwrap();
    let resumed = s.orch(&["resume", "latest"]);
    resumed.expect(0).unwrap();
    let log = log_json(s, "latest").unwrap();
    assert_eq!(log.last().unwrap()["aggregate"], reference().aggregate.as_str());
    s.orch(&["verify", "latest"]).expect(0).unwrap();
}

/// A file-size limit (`ulimit -f`, SIGXFSZ ignored, as a shell can set it) makes the
/// log's write fail with EFBIG half-way through the run. Works without privileges.
#[test]
fn a_file_size_limit_hit_while_appending_stops_the_run_with_a_clear_error() {
    let reference = reference();
    let full = reference.scratch.log_dir().unwrap().join("00000000000000000000.seg");
    let full_len = std::fs::metadata(&full).unwrap().len();
    // Half the log, in 512-byte blocks; it must hold more than the spec copy and the
    // first record (run_started, which carries the spec).
    let blocks = full_len / 2 / 512;
    let first = 64 + 20 + reference.records[0].encode().len() as u64;
    assert!(blocks * 512 > first + 200, "the limit {blocks} blocks does not fit run_started ({first} bytes)");
    let s = Scratch::new(FLAKY);
    let script = format!("ulimit -f {blocks} && trap '' XFSZ && exec \"$0\" run wf.toml");
    let o = Command::new("/bin/sh")
        .args(["-c", &script, env!("CARGO_BIN_EXE_orch")])
        .current_dir(s.path())
        .env_remove("ORCH_STORE")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let out = Out {
        args: format!("run wf.toml (ulimit -f {blocks})"),
        status: o.status,
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    };
    after_a_failed_append(&s, &out, "File too large");
}

/// A real full disk (ENOSPC): the store on a small tmpfs, filled up while the run is
/// going. Needs root (mount); skipped otherwise, saying why.
#[test]
fn a_full_disk_while_appending_stops_the_run_with_a_clear_error() {
    // A long run name makes run_started (which carries the spec) ~7 KiB, so that the
    // log crosses a page boundary after the fill below, whenever the fill lands.
    let long_name = format!("name = \"crash-harness {}\"", "x".repeat(5000));
    let s = Scratch::with(workflow(FLAKY, "0.02").replace("name = \"crash-harness\"", &long_name));
    let mnt = s.path().join(".orch");
    std::fs::create_dir(&mnt).unwrap();
    let mount = Command::new("mount").args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"]).arg(&mnt).output();
    match mount {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            eprintln!("SKIPPED: cannot mount a tmpfs ({}): {}", o.status, String::from_utf8_lossy(&o.stderr).trim());
            return;
        }
        Err(e) => {
            eprintln!("SKIPPED: cannot run mount: {e}");
            return;
        }
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mnt.clone());

    let mut child = s.spawn(&["run", "wf.toml"], "run");
    // Once the run is under way, fill the file system: the next append that needs a new
    // page fails. (The whole log is over a page: a boundary is always ahead.)
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.records().len() < 4 {
        assert!(Instant::now() < deadline, "the run did not start");
        std::thread::sleep(Duration::from_millis(1));
    }
    let filler = mnt.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 4096];
        while f.write_all(&chunk).is_ok() {}
    }
    let status = wait_for(&mut child, Duration::from_secs(20)).unwrap();
    let out = Out { args: "run wf.toml".into(), status, stdout: s.read("run.out"), stderr: s.read("run.err") };
    if out.code() == Some(0) {
        panic!("the run finished although the disk was full:\n{}", out.stdout);
    }
    // Space is back.
    std::fs::remove_file(&filler).unwrap();
    after_a_failed_append(&s, &out, "No space left on device");
}
