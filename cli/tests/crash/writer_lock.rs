//! The writer lock and readers: a reader probing the lock does not make resume refuse.

use std::time::{Duration, Instant};

use super::{Scratch, FLAKY};

/// Found by the long mode (1 trial in 1,000): a reader asking whether a run is live
/// (`lock_state`, used by `orch log`, `orch ls`, `orch show --watch`) holds a *shared*
/// lock on `LOCK` for an instant, and a writer's exclusive try-lock fails meanwhile, so
/// `orch resume` refused with "already open for writing by another writer (pid N)" —
/// N being the dead engine's. Here the probe is held for 150 ms (the real ones take
/// microseconds, but the orphaned `flaky` of a killed engine runs `orch log` in a loop
/// of trials); resume waits it out instead of refusing.
#[test]
fn a_reader_probing_the_lock_does_not_make_resume_refuse() {
    let s = Scratch::new(FLAKY);
    let mut child = s.spawn(&["run", "wf.toml"], "run");
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.records().len() < 4 {
        assert!(Instant::now() < deadline, "the run did not start");
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // A writer that really holds the lock is refused, naming its pid (checked on the
    // unfinished run: a finished one is refused before the lock is tried).
    let log = s.log_dir().unwrap();
    let writer = orch_log_format::Writer::open(&log, orch_log_format::Options::default()).unwrap();
    let out = s.orch(&["resume", "latest"]);
    out.expect(2).unwrap();
    assert!(out.stderr.contains(&format!("(pid {})", std::process::id())), "{}", out.stderr);
    drop(writer);
    let lock = std::fs::File::open(s.log_dir().unwrap().join("LOCK")).unwrap();
    lock.lock_shared().unwrap();
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(150));
        drop(lock);
    });
    let out = s.orch(&["resume", "latest"]);
    release.join().unwrap();
    out.expect(0).unwrap_or_else(|e| panic!("{e}"));
}
