//! The `orch` binary as a user meets it: every test runs the real executable in a fresh
//! temporary directory (so the store is the default `.orch/` there) and checks exit
//! codes, stdout and stderr. Timing facts are read from the RECORDED times in the log,
//! never from clocks measured here; waiting is done by polling with deadlines.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

#[path = "../support/signals.rs"]
mod signals;

mod bad_input;
mod corruption;
mod processes;
mod read;
mod run;
mod run_ids;
mod stops_and_limits;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// A scratch directory to run `orch` in.
struct Scratch {
    dir: tempfile::TempDir,
}

/// Every run a test makes must replay: when a scratch directory goes away, each run in
/// its store is re-decided with `orch replay` (logs a test damaged on purpose, which
/// `orch verify` rejects, are the only ones left out).
impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        for id in self.run_ids() {
            if self.orch(&["verify", &id]).code != Some(0) {
                continue;
            }
            let replay = self.orch(&["replay", &id]);
            assert_eq!(replay.code, Some(0), "run {id} does not replay: {}", replay.stderr);
        }
    }
}

impl Scratch {
    fn new() -> Scratch {
        Scratch { dir: tempfile::tempdir().expect("tempdir") }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file (a workflow, usually) and returns its name relative to the dir.
    fn write(&self, name: &str, text: &str) -> String {
        std::fs::write(self.path().join(name), text).expect("write file");
        name.to_string()
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_orch"));
        cmd.args(args).current_dir(self.path()).env_remove("ORCH_STORE").env_remove("RUST_LOG");
        cmd
    }

    fn orch(&self, args: &[&str]) -> Out {
        let output = self.command(args).stdin(Stdio::null()).output().expect("run orch");
        Out::from(args, output)
    }

    /// `orch log RUN` parsed: one JSON record per line.
    fn records(&self, run: &str) -> Vec<Value> {
        let out = self.orch(&["log", run]);
        out.code(0);
        out.stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
    }

    /// Run ids in the store, oldest first.
    fn run_ids(&self) -> Vec<String> {
        let runs = self.path().join(".orch/runs");
        let Ok(entries) = std::fs::read_dir(runs) else { return Vec::new() };
        let mut ids: Vec<String> = entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        ids.sort();
        ids
    }

    /// The first segment file of a run's log.
    fn segment(&self, run: &str) -> PathBuf {
        self.path().join(".orch/runs").join(run).join("log/00000000000000000000.seg")
    }

    /// The directory of `run`'s log (`run` a full run id).
    fn log_dir(&self, run: &str) -> PathBuf {
        self.path().join(".orch/runs").join(run).join("log")
    }

    /// Writes `run`'s log again from its records as `edit` leaves them (checksums and
    /// chain right): a log no engine wrote, for the readers to meet. Returns the records.
    fn rewrite_log(
        &self,
        run: &str,
        edit: impl FnOnce(&mut Vec<orch_engine::record::Record>),
    ) -> Vec<orch_engine::record::Record> {
        let log = self.log_dir(run);
        let mut records = orch_engine::journal::read_records(&log).unwrap();
        edit(&mut records);
        std::fs::remove_dir_all(&log).unwrap();
        let mut journal = orch_engine::journal::Journal::create(&log, orch_log_format::Options::default()).unwrap();
        journal.append(&records).unwrap();
        journal.close().unwrap();
        records
    }
}

/// What one `orch` invocation produced.
struct Out {
    args: String,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Out {
    fn from(args: &[&str], o: Output) -> Out {
        Out {
            args: args.join(" "),
            code: o.status.code(),
            stdout: String::from_utf8(o.stdout).expect("utf-8 stdout"),
            stderr: String::from_utf8(o.stderr).expect("utf-8 stderr"),
        }
    }

    /// Asserts the exit code (and that nothing panicked).
    fn code(&self, expected: i32) -> &Out {
        assert_eq!(self.code, Some(expected), "orch {}\nstdout:\n{}\nstderr:\n{}", self.args, self.stdout, self.stderr);
        assert!(!self.stderr.contains("panicked"), "orch {} panicked:\n{}", self.args, self.stderr);
        self
    }

    fn stdout_has(&self, needle: &str) -> &Out {
        assert!(self.stdout.contains(needle), "orch {}: stdout lacks {needle:?}:\n{}", self.args, self.stdout);
        self
    }

    fn stderr_has(&self, needle: &str) -> &Out {
        assert!(self.stderr.contains(needle), "orch {}: stderr lacks {needle:?}:\n{}", self.args, self.stderr);
        self
    }

    /// stdout is exactly one JSON value (one line).
    fn json(&self) -> Value {
        let lines: Vec<&str> = self.stdout.lines().collect();
        assert_eq!(lines.len(), 1, "orch {}: expected one JSON line on stdout, got:\n{}", self.args, self.stdout);
        serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("orch {}: {e}: {}", self.args, lines[0]))
    }
}

fn example(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/examples").join(name).display().to_string()
}

/// Polls `f` every 20 ms until it returns `Some`, failing after `limit`.
fn poll<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// True once the process is gone: no `/proc` entry, or a zombie (dead, only waiting for
/// init to reap it; the exited sleeps are orphans once orch is gone).
fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

fn kind(r: &Value) -> &str {
    r["kind"].as_str().unwrap_or_default()
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a u64: {v}"))
}

/// Kills the child if a test fails half-way, so no `orch` outlives the test.
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

const TWO_TASKS: &str = r#"
[[task]]
id = "a"
command = "true"

[[task]]
id = "b"
command = "true"
after = ["a"]
"#;
