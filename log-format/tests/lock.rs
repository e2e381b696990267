//! The single-writer rule: a second writer on the same log, in another process or in
//! this one, gets `Error::Locked` naming the holder's pid, and the lock dies with its
//! holder (an OS file lock, so a crashed writer leaves no stale lock behind).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};

use common::never;
use orch_log_format::layout::MIN_SEGMENT_BYTES;
use orch_log_format::{lock_state, verify, Error, LockState, Reader, Writer};

/// Set in the environment of the re-executed test binary: the log directory the
/// holder process must open.
const HOLDER_ENV: &str = "ORCH_LOG_FORMAT_TEST_LOCK_HOLDER_DIR";
const HOLDER_TEST: &str = "lock_holder_process";

/// Not a test of its own: the body of the second process. When the tests below
/// re-execute this binary with `HOLDER_ENV` set, it opens the log for writing, says so
/// on stdout, and holds the lock until its stdin is closed. Run normally, it returns.
#[test]
fn lock_holder_process() {
    let Some(dir) = std::env::var_os(HOLDER_ENV) else { return };
    let (mut writer, _) = Writer::open_or_create(Path::new(&dir), never(MIN_SEGMENT_BYTES)).unwrap();
    writer.append(b"written by the holder").unwrap();
    writer.commit().unwrap();
    // Written to the file descriptor, not through `println!`: libtest captures the
    // macros' output unless told otherwise, and the parent waits for this line.
    let mut out = std::io::stdout().lock();
    writeln!(out, "HOLDING {}", std::process::id()).unwrap();
    out.flush().unwrap();
    drop(out);
    let mut rest = Vec::new();
    std::io::stdin().read_to_end(&mut rest).unwrap();
    drop(writer);
}

/// Starts the holder process on `dir` and waits until it holds the lock; returns it,
/// the pid it reported, and the rest of its stdout (kept open: the holder still
/// prints its test result, and a closed pipe would fail it).
fn spawn_holder(dir: &Path) -> (Child, u32, BufReader<ChildStdout>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", HOLDER_TEST, "--nocapture", "--test-threads=1"])
        .env(HOLDER_ENV, dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while stdout.read_line(&mut line).unwrap() > 0 {
        // libtest may print "test lock_holder_process ... " on the same line first.
        if let Some((_, pid)) = line.split_once("HOLDING ") {
            return (child, pid.trim().parse().unwrap(), stdout);
        }
        line.clear();
    }
    panic!("the holder process exited without taking the lock: {:?}", child.wait());
}

fn assert_locked_by(result: Result<impl std::fmt::Debug, Error>, dir: &Path, pid: u32) {
    match result {
        Err(err @ Error::Locked { .. }) => {
            let Error::Locked { dir: locked, holder } = &err else { unreachable!() };
            assert_eq!(locked, dir);
            assert_eq!(holder, &format!(" (pid {pid})"));
            let message = err.to_string();
            assert!(message.contains("already open for writing") && message.contains(&pid.to_string()), "{message}");
        }
        other => panic!("expected Error::Locked, got {other:?}"),
    }
}

#[test]
fn a_second_process_gets_locked_with_the_holders_pid() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let (mut child, pid, mut stdout) = spawn_holder(&dir);
    assert_eq!(pid, child.id());

    assert_locked_by(Writer::open(&dir, never(MIN_SEGMENT_BYTES)), &dir, pid);
    assert_locked_by(Writer::open_or_create(&dir, never(MIN_SEGMENT_BYTES)), &dir, pid);
    assert_eq!(lock_state(&dir).unwrap(), LockState::Held { pid: Some(pid) });
    // Readers take no lock.
    assert_eq!(Reader::open(&dir).unwrap().iter().count(), 1);
    assert_eq!(verify(&dir).unwrap().records, 1);

    drop(child.stdin.take()); // the holder reads EOF, closes its writer and exits
    stdout.read_to_string(&mut String::new()).unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(lock_state(&dir).unwrap(), LockState::Free);
    let (writer, recovery) = Writer::open(&dir, never(MIN_SEGMENT_BYTES)).unwrap();
    assert_eq!((recovery.records, recovery.torn), (1, None));
    drop(writer);
}

#[test]
fn a_killed_writer_leaves_no_stale_lock() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let (mut child, pid, _stdout) = spawn_holder(&dir);
    assert_locked_by(Writer::open(&dir, never(MIN_SEGMENT_BYTES)), &dir, pid);
    child.kill().unwrap(); // SIGKILL: no destructor runs
    let _ = child.wait().unwrap();
    let (_writer, recovery) = Writer::open(&dir, never(MIN_SEGMENT_BYTES)).unwrap();
    assert_eq!(recovery.records, 1);
}

#[test]
fn a_second_writer_in_the_same_process_gets_locked() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let first = Writer::create(&dir, never(MIN_SEGMENT_BYTES)).unwrap();
    let me = std::process::id();
    assert_locked_by(Writer::open(&dir, never(MIN_SEGMENT_BYTES)), &dir, me);
    assert_locked_by(Writer::create(&dir, never(MIN_SEGMENT_BYTES)), &dir, me);
    assert_eq!(lock_state(&dir).unwrap(), LockState::Held { pid: Some(me) });
    drop(first);
    assert_eq!(lock_state(&dir).unwrap(), LockState::Free);
    let (_second, _) = Writer::open(&dir, never(MIN_SEGMENT_BYTES)).unwrap();
}
