//! Crash safety of the real `orch` binary with real processes: the engine is SIGKILLed at
//! random points (and so is the resume), the run is resumed until it ends, and the result
//! must be the uninterrupted run's; power-loss cuts of a finished log resume to the same
//! outcome; a full disk or file-size limit while appending stops the run with a clear
//! error and a log that verifies. `docs/reliability.md` reports the long-mode results.
//!
//! Trial count: `ORCH_CRASH_TRIALS` (default 100); base seed: `ORCH_CRASH_SEED` (default:
//! from the clock, printed). A failing trial prints its own seed: rerun it alone with
//! `ORCH_CRASH_SEED=<seed> ORCH_CRASH_TRIALS=1` (the kill delays are then the same; process
//! timing is not, so a kill may land a little elsewhere).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use orch_engine::journal::read_records;
use orch_engine::record::Record;
use serde_json::Value;

mod corruption;
mod disk_full;
mod harness;
mod lost_attempts;
mod power_loss;
mod refused_resume;
mod writer_lock;

// ---------------------------------------------------------------------------------------
// The workflow
// ---------------------------------------------------------------------------------------

/// Ten tasks, ~0.3 s: a DAG (`prep` → `flaky`, `suite` → `final`), a retried task, a group
/// (`suite`, no command) with two waves, and a parent with a command that delegates to
/// two children (`pack`). Every command ends by appending its id to `markers`; no command
/// writes to stdout, so every output digest is that of the empty output.
///
/// `flaky` fails its first attempt, keyed on `$ORCH_ATTEMPT`, which is the attempt as the
/// retry policy counts it: attempts lost in a crash are left out
/// (`run.lost_attempts_count = false`), so it fails its first *counted* attempt, as in an
/// uninterrupted run (see `orch_attempt_counts_lost_attempts` in `lost_attempts.rs`).
fn workflow(flaky_command: &str, prep_sleep: &str) -> String {
    format!(
        r#"[run]
name = "crash-harness"
max_concurrency = 2

[[task]]
id = "prep"
command = "sleep {prep_sleep}; echo prep >> markers"

[[task]]
id = "flaky"
after = ["prep"]
command = '''{flaky_command}'''
env = {{ ORCH_BIN = "{bin}" }}
retry = {{ max_attempts = 2, base_ms = 10 }}

[[task]]
id = "suite"
after = ["prep"]

[[task]]
id = "s1"
command = "sleep 0.04; echo s1 >> markers"

[[task]]
id = "s2"
command = "sleep 0.02; echo s2 >> markers"

[[task]]
id = "s3"
command = "sleep 0.03; echo s3 >> markers"

[[task]]
id = "pack"
command = "sleep 0.01; echo pack >> markers"

[[task]]
id = "pack-a"
parent = "pack"
command = "sleep 0.03; echo pack-a >> markers"

[[task]]
id = "pack-b"
parent = "pack"
command = "sleep 0.02; echo pack-b >> markers"

[[task]]
id = "final"
after = ["flaky", "suite"]
command = "sleep 0.01; echo final >> markers"

[[wave]]
id = "first"
parent = "suite"
tasks = ["s1", "s2"]

[[wave]]
id = "second"
parent = "suite"
tasks = ["s3", "pack"]
"#,
        bin = env!("CARGO_BIN_EXE_orch"),
    )
}

/// Fails the first counted attempt (see [`workflow`]).
const FLAKY: &str = r#"sleep 0.03
[ "$ORCH_ATTEMPT" -ge 2 ] || exit 3
echo flaky >> markers"#;

/// Fails attempt 1 (slowly, so a kill can land during it), whatever happened to it.
const FLAKY_RAW: &str = r#"sleep 0.03; [ "$ORCH_ATTEMPT" -ge 2 ] || { sleep 0.5; exit 3; }; echo flaky >> markers"#;

/// Tasks with a command (each leaves one marker line per attempt that ran to its end).
const COMMAND_TASKS: &[&str] = &["prep", "flaky", "s1", "s2", "s3", "pack", "pack-a", "pack-b", "final"];

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// xorshift64* seeded through splitmix64: enough randomness for kill delays, no deps.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A scratch directory holding a store (`.orch/`), the workflow and the markers.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new(flaky: &str) -> Scratch {
        Scratch::with(workflow(flaky, "0.02"))
    }

    fn with(spec: String) -> Scratch {
        let s = Scratch { dir: tempfile::tempdir().expect("tempdir") };
        std::fs::write(s.path().join("wf.toml"), spec).expect("write workflow");
        s
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_orch"));
        cmd.args(args).current_dir(self.path()).env_remove("ORCH_STORE").env_remove("RUST_LOG").stdin(Stdio::null());
        cmd
    }

    fn orch(&self, args: &[&str]) -> Out {
        let o = self.command(args).output().expect("run orch");
        Out {
            args: args.join(" "),
            status: o.status,
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// Starts `orch ARGS` in the background, its output into files named after `tag`.
    fn spawn(&self, args: &[&str], tag: &str) -> Child {
        let out = std::fs::File::create(self.path().join(format!("{tag}.out"))).expect("out file");
        let err = std::fs::File::create(self.path().join(format!("{tag}.err"))).expect("err file");
        self.command(args).stdout(out).stderr(err).spawn().expect("spawn orch")
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path().join(name)).unwrap_or_default()
    }

    /// The run directory (there is at most one run in a trial's store).
    fn run_dir(&self) -> Option<PathBuf> {
        let mut runs: Vec<PathBuf> =
            std::fs::read_dir(self.path().join(".orch/runs")).ok()?.map(|e| e.unwrap().path()).collect();
        runs.sort();
        runs.pop()
    }

    fn log_dir(&self) -> Option<PathBuf> {
        self.run_dir().map(|r| r.join("log"))
    }

    /// The log's whole records (the library reader: a torn tail is "not written yet").
    fn records(&self) -> Vec<Record> {
        self.log_dir().and_then(|l| read_records(&l).ok()).unwrap_or_default()
    }

    fn markers(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for l in self.read("markers").lines() {
            *m.entry(l.to_string()).or_insert(0) += 1;
        }
        m
    }
}

/// What one `orch` invocation produced.
struct Out {
    args: String,
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Out {
    fn code(&self) -> Option<i32> {
        self.status.code()
    }

    fn expect(&self, code: i32) -> Result<&Out, String> {
        if self.code() != Some(code) || self.stderr.contains("panicked") {
            return Err(format!(
                "orch {}: exit {:?}, expected {code}\nstdout:\n{}\nstderr:\n{}",
                self.args,
                self.code(),
                self.stdout,
                self.stderr
            ));
        }
        Ok(self)
    }
}

/// The JSON lines of `orch log RUN`.
fn log_json(s: &Scratch, run: &str) -> Result<Vec<Value>, String> {
    let out = s.orch(&["log", run]);
    out.expect(0)?;
    out.stdout.lines().map(|l| serde_json::from_str(l).map_err(|e| format!("{e}: {l}"))).collect()
}

fn kind(r: &Value) -> &str {
    r["kind"].as_str().unwrap_or_default()
}

/// Waits for the child, killing it if it is still there after `limit`.
fn wait_for(child: &mut Child, limit: Duration) -> Result<ExitStatus, String> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Ok(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("orch did not end within {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Sleeps `ms`, or less if the child ends first; true if it is still running.
fn sleep_while_running(child: &mut Child, ms: u64) -> bool {
    let deadline = Instant::now() + Duration::from_millis(ms);
    loop {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return false;
        }
        let now = Instant::now();
        if now >= deadline {
            return true;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(2)));
    }
}

/// The uninterrupted run every trial is compared with.
struct Reference {
    scratch: Scratch,
    aggregate: String,
    wall_ms: u64,
    records: Vec<Record>,
}

fn reference() -> &'static Reference {
    static REFERENCE: OnceLock<Reference> = OnceLock::new();
    REFERENCE.get_or_init(|| {
        // A static is never dropped: keep its directory under the target dir, not /tmp.
        let dir = tempfile::Builder::new()
            .prefix("crash-reference-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("tempdir");
        let s = Scratch { dir };
        std::fs::write(s.path().join("wf.toml"), workflow(FLAKY, "0.02")).expect("write workflow");
        let start = Instant::now();
        s.orch(&["run", "wf.toml"]).expect(0).unwrap_or_else(|e| panic!("reference run: {e}"));
        let wall_ms = start.elapsed().as_millis() as u64;
        let log = log_json(&s, "latest").unwrap();
        let last = log.last().unwrap();
        assert_eq!(kind(last), "run_finished");
        let flaky_exits = log.iter().filter(|r| kind(r) == "attempt_exited" && r["task"] == "flaky").count();
        assert_eq!(flaky_exits, 2, "the reference run retries flaky once");
        let aggregate = last["aggregate"].as_str().unwrap().to_string();
        let records = s.records();
        Reference { scratch: s, aggregate, wall_ms, records }
    })
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| v.parse().unwrap_or_else(|_| panic!("{name}={v}: not a number")))
}
