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
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use orch_engine::journal::read_records;
use orch_engine::record::{Event, Record};
use serde_json::Value;

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
/// uninterrupted run (see `orch_attempt_counts_lost_attempts` below).
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

// ---------------------------------------------------------------------------------------
// The crash harness
// ---------------------------------------------------------------------------------------

/// What a trial saw, summed over trials for the report.
#[derive(Debug, Default, Clone)]
struct Tally {
    trials: u64,
    run_killed: u64,
    run_killed_before_start: u64,
    run_finished_before_kill: u64,
    resumes: u64,
    resumes_killed: u64,
    lost_attempts: u64,
    killed_groups: u64,
    pending_written: u64,
    reruns_of_finished_children: u64,
    diff_counts_lost_attempts: u64,
    torn_tails: u64,
}

impl Tally {
    fn add(&mut self, o: &Tally) {
        self.trials += o.trials;
        self.run_killed += o.run_killed;
        self.run_killed_before_start += o.run_killed_before_start;
        self.run_finished_before_kill += o.run_finished_before_kill;
        self.resumes += o.resumes;
        self.resumes_killed += o.resumes_killed;
        self.lost_attempts += o.lost_attempts;
        self.killed_groups += o.killed_groups;
        self.pending_written += o.pending_written;
        self.reruns_of_finished_children += o.reruns_of_finished_children;
        self.diff_counts_lost_attempts += o.diff_counts_lost_attempts;
        self.torn_tails += o.torn_tails;
    }
}

/// One trial: run, SIGKILL at a random point, resume (killing the resume 0–2 times at
/// random points too), resume to the end; then check the log and the outcome. `trace`
/// collects what happened, for the failure message.
fn trial(seed: u64, trace: &mut String) -> Result<Tally, String> {
    let reference = reference();
    let mut rng = Rng::new(seed);
    let mut tally = Tally { trials: 1, ..Tally::default() };
    let s = Scratch::new(FLAKY);
    // A kill lands anywhere in the run, including before it writes anything.
    let span = reference.wall_ms + 30;

    // 1. `orch run`, killed (or, rarely, finished before the kill).
    let mut finished = false;
    for attempt in 0.. {
        if attempt == 5 {
            return Err("five runs in a row were killed before they wrote run_started".into());
        }
        let mut child = s.spawn(&["run", "wf.toml"], &format!("run{attempt}"));
        let delay = rng.below(span);
        let running = sleep_while_running(&mut child, delay);
        if !running {
            let status = wait_for(&mut child, Duration::from_secs(10))?;
            let _ = writeln!(trace, "run ended by itself before the kill at {delay} ms: {status}");
            if !status.success() {
                return Err(format!("uninterrupted run failed: {status}\n{}", s.read(&format!("run{attempt}.err"))));
            }
            tally.run_finished_before_kill += 1;
            finished = true;
            break;
        }
        child.kill().map_err(|e| e.to_string())?;
        child.wait().map_err(|e| e.to_string())?;
        tally.run_killed += 1;
        let records = s.records();
        let _ = writeln!(trace, "run killed at {delay} ms with {} records", records.len());
        if records.first().is_some_and(|r| matches!(r.event, Event::RunStarted(_))) {
            break;
        }
        // Killed before run_started was committed: nothing to resume, and resume says so.
        tally.run_killed_before_start += 1;
        if s.run_dir().is_some() {
            let out = s.orch(&["resume", "latest"]);
            out.expect(2)?;
            if out.stderr.trim().is_empty() {
                return Err("resume of a run that never started exited 2 without a word".into());
            }
            std::fs::remove_dir_all(s.path().join(".orch/runs")).map_err(|e| e.to_string())?;
        }
    }

    // 2. Resumes: 0–2 of them killed, then one to the end.
    let mut resume_starts = Vec::new();
    let crashes = rng.below(3);
    let mut n = 0;
    while !finished {
        let records = s.records();
        let start = records.len();
        let tag = format!("resume{n}");
        let mut child = s.spawn(&["resume", "latest"], &tag);
        resume_starts.push(start);
        tally.resumes += 1;
        let kill = n < crashes;
        let delay = rng.below(span / 2 + 1);
        let still_running = kill && sleep_while_running(&mut child, delay);
        if still_running {
            child.kill().map_err(|e| e.to_string())?;
            child.wait().map_err(|e| e.to_string())?;
            tally.resumes_killed += 1;
            let _ = writeln!(trace, "resume {n} (from seq {start}) killed at {delay} ms");
        } else {
            let status = wait_for(&mut child, Duration::from_secs(20))?;
            let (stdout, stderr) = (s.read(&format!("{tag}.out")), s.read(&format!("{tag}.err")));
            let _ = writeln!(trace, "resume {n} (from seq {start}) ended: {status}\n{stdout}{stderr}");
            if stderr.contains("panicked") {
                return Err(format!("resume panicked:\n{stderr}"));
            }
            match status.code() {
                Some(0) => finished = true,
                // The engine killed last may have finished the run before it died.
                Some(2) if stderr.contains("the run has finished") => finished = true,
                _ => return Err(format!("resume exited {status}:\n{stdout}\n{stderr}")),
            }
        }
        n += 1;
        if n > 10 {
            return Err("more than ten resumes".into());
        }
    }

    // What the resumes reported (killed ones too: they print as they go).
    for k in 0..n {
        let stdout = s.read(&format!("resume{k}.out"));
        tally.killed_groups += stdout.contains("killed surviving process groups") as u64;
        tally.pending_written += stdout.contains("decisions the crash cut off") as u64;
        tally.torn_tails += stdout.contains("dropped") as u64;
    }
    tally.lost_attempts += s.records().iter().filter(|r| matches!(r.event, Event::AttemptLost(_))).count() as u64;
    check(&s, &resume_starts, &mut tally)?;
    Ok(tally)
}

/// The checks after a trial.
fn check(s: &Scratch, resume_starts: &[usize], tally: &mut Tally) -> Result<(), String> {
    let reference = reference();
    let out = s.orch(&["verify", "latest"]);
    out.expect(0)?;
    if !out.stdout.starts_with("ok: ") {
        return Err(format!("verify: {}", out.stdout));
    }
    let out = s.orch(&["replay", "latest"]);
    out.expect(0)?;
    if !out.stdout.contains("replay ok") {
        return Err(format!("replay: {}", out.stdout));
    }

    let log = log_json(s, "latest")?;
    for (i, r) in log.iter().enumerate() {
        if r["seq"].as_u64() != Some(i as u64) {
            return Err(format!("record {i} has seq {}", r["seq"]));
        }
    }
    // Every task is terminal exactly once.
    let tasks: Vec<String> = reference
        .records
        .iter()
        .filter_map(|r| match &r.event {
            Event::TaskFinished(f) => Some(f.task.clone()),
            _ => None,
        })
        .collect();
    let mut finished_at: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, r) in log.iter().enumerate() {
        if kind(r) == "task_finished" {
            finished_at.entry(r["task"].as_str().unwrap_or_default()).or_default().push(i);
        }
    }
    for t in &tasks {
        let n = finished_at.get(t.as_str()).map_or(0, Vec::len);
        if n != 1 {
            return Err(format!("task {t} finished {n} times"));
        }
    }
    if finished_at.len() != tasks.len() {
        return Err(format!("tasks finished: {:?}, expected {tasks:?}", finished_at.keys()));
    }
    // No task that was finished when a resume started was dispatched again by it.
    for &start in resume_starts {
        for (t, at) in &finished_at {
            if at[0] < start {
                let again = log.iter().skip(start).find(|r| kind(r) == "attempt_dispatched" && r["task"] == *t);
                if let Some(r) = again {
                    return Err(format!("task {t} finished at seq {} but was dispatched again: {r}", at[0]));
                }
            }
        }
    }
    // The outcome is the uninterrupted run's.
    let last = log.last().ok_or("empty log")?;
    if kind(last) != "run_finished" || last["aggregate"] != reference.aggregate.as_str() {
        return Err(format!("last record {last}, expected run_finished with aggregate {}", reference.aggregate));
    }
    if let DiffOutcomes::OnlyLostAttempts = diff_outcomes(s)? {
        tally.diff_counts_lost_attempts += 1;
        return Err("diff --outcomes differs by lost attempts, which it must leave out".into());
    }

    // Markers: every task with a command ran to its end at least once, and no more often
    // than it was dispatched (an attempt that ended while the engine was dead is lost and
    // runs again: at least once, not exactly once, for the child's own side effects).
    let markers = s.markers();
    for t in COMMAND_TASKS {
        let dispatched = log.iter().filter(|r| kind(r) == "attempt_dispatched" && r["task"] == *t).count();
        let ran = markers.get(*t).copied().unwrap_or(0);
        if ran == 0 || ran > dispatched {
            return Err(format!("task {t}: {ran} markers for {dispatched} dispatched attempts"));
        }
        tally.reruns_of_finished_children += (ran - 1) as u64;
    }
    Ok(())
}

enum DiffOutcomes {
    Same,
    /// The only differences are task attempt counts, each higher than the reference's by
    /// exactly the attempts of that task the trial lost (a regression this test names).
    OnlyLostAttempts,
}

/// `orch diff --outcomes REFERENCE TRIAL`.
fn diff_outcomes(s: &Scratch) -> Result<DiffOutcomes, String> {
    let ref_dir = reference().scratch.run_dir().unwrap();
    let trial_dir = s.run_dir().unwrap();
    let out = s.orch(&["diff", "--outcomes", "--json", ref_dir.to_str().unwrap(), trial_dir.to_str().unwrap()]);
    if out.code() == Some(0) {
        return Ok(DiffOutcomes::Same);
    }
    out.expect(1)?;
    let report: Value = serde_json::from_str(out.stdout.trim()).map_err(|e| format!("diff --json: {e}"))?;
    let lost = |task: &str| {
        s.records().iter().filter(|r| matches!(&r.event, Event::AttemptLost(l) if l.task == task)).count() as u64
    };
    let explained = report["waves"].as_array().is_some_and(Vec::is_empty)
        && report["run"].is_null()
        && report["spec"].is_null()
        && report["tasks"].as_array().is_some_and(|tasks| {
            tasks.iter().all(|t| {
                let (a, b) = (t["a"]["attempts"].as_u64().unwrap_or(0), t["b"]["attempts"].as_u64().unwrap_or(0));
                t["fields"] == serde_json::json!(["attempts"]) && b == a + lost(t["task"].as_str().unwrap_or_default())
            })
        });
    if explained {
        Ok(DiffOutcomes::OnlyLostAttempts)
    } else {
        Err(format!("orch diff --outcomes: the runs differ:\n{}", out.stdout))
    }
}

#[test]
fn sigkill_at_random_points_then_resume_gives_the_uninterrupted_outcome() {
    let trials = env_u64("ORCH_CRASH_TRIALS").unwrap_or(100) as usize;
    let base = env_u64("ORCH_CRASH_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    let reference = reference();
    eprintln!(
        "crash harness: {trials} trials, ORCH_CRASH_SEED={base}, reference run {} ms, aggregate {}",
        reference.wall_ms, reference.aggregate
    );
    let started = Instant::now();
    let next = AtomicUsize::new(0);
    let tally = Mutex::new(Tally::default());
    let failures = Mutex::new(Vec::new());
    // Two trials at a time: the engine mostly waits on its children's sleeps.
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= trials {
                    return;
                }
                let seed = base.wrapping_add(i as u64);
                let mut trace = String::new();
                match trial(seed, &mut trace) {
                    Ok(t) => tally.lock().unwrap().add(&t),
                    Err(e) => failures.lock().unwrap().push(format!(
                        "trial {i} failed (rerun: ORCH_CRASH_SEED={seed} ORCH_CRASH_TRIALS=1): {e}\n{trace}"
                    )),
                }
            });
        }
    });
    let tally = tally.into_inner().unwrap();
    let failures = failures.into_inner().unwrap();
    eprintln!(
        "crash harness: {} trials ok, {} failed, {:.1} s\n{tally:#?}",
        tally.trials,
        failures.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(failures.is_empty(), "{} of {trials} trials failed:\n{}", failures.len(), failures.join("\n"));
    // The kills must actually exercise resume, not only runs that ended first.
    if trials >= 20 {
        assert!(tally.run_killed > tally.trials / 2, "too few kills landed: {tally:?}");
        assert!(tally.lost_attempts > 0, "no attempt was ever in flight at a kill: {tally:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Power loss: a finished real run's log cut at random offsets, then resumed
// ---------------------------------------------------------------------------------------

/// A finished real run whose last segment is cut at random offsets (inside the segment
/// header, inside a frame header, anywhere) resumes to the uninterrupted outcome — or,
/// when the cut left no `run_started`, `orch resume` says there is nothing to resume
/// (exit 2). The children of a cut-off attempt are long gone, so its attempt is lost
/// and runs again. Engine-level: every cut, in `engine/tests/log_damage.rs`.
#[test]
fn power_loss_cuts_of_a_finished_run_resume_to_the_same_outcome() {
    let cuts = env_u64("ORCH_POWER_LOSS_CUTS").unwrap_or(12) as usize;
    let seed = env_u64("ORCH_CRASH_SEED").unwrap_or(7);
    let s = Scratch::new(FLAKY);
    s.orch(&["run", "wf.toml"]).expect(0).unwrap();
    let run = s.run_dir().unwrap();
    let run_id = run.file_name().unwrap().to_str().unwrap().to_string();
    let segment = run.join("log/00000000000000000000.seg");
    let pristine = std::fs::read(&segment).unwrap();
    let frames = frame_offsets(&pristine);
    let mut rng = Rng::new(seed);
    // Inside the segment header, inside the first frame's header, inside a later frame's
    // header, then random offsets.
    let mut offsets = vec![rng.below(64) as usize, 64 + rng.below(20) as usize];
    let k = 1 + rng.below(frames.len() as u64 - 1) as usize;
    offsets.push(frames[k] + rng.below(20) as usize);
    // The rest after run_started (a cut inside it leaves nothing to resume).
    while offsets.len() < cuts {
        offsets.push(frames[1] + rng.below((pristine.len() - frames[1]) as u64 + 1) as usize);
    }
    let (mut resumed, mut nothing) = (0, 0);
    for cut in offsets {
        std::fs::write(&segment, &pristine[..cut]).unwrap();
        let _ = std::fs::remove_file(s.path().join("markers"));
        let out = s.orch(&["resume", &run_id]);
        let place = format!("cut at {cut} of {} (ORCH_CRASH_SEED={seed})", pristine.len());
        let whole = frames.iter().skip(1).chain([&pristine.len()]).filter(|&&end| end <= cut).count();
        if whole == 0 {
            // Not even run_started survived.
            out.expect(2).unwrap_or_else(|e| panic!("{place}: {e}"));
            assert!(out.stderr.contains("nothing to resume"), "{place}: {}", out.stderr);
            nothing += 1;
        } else {
            out.expect(0).unwrap_or_else(|e| panic!("{place}: {e}"));
            if cut != frames[whole.min(frames.len() - 1)] && cut < pristine.len() && cut >= 64 {
                assert!(out.stdout.contains("recovered: dropped"), "{place}: torn tail not reported:\n{}", out.stdout);
            }
            let log = log_json(&s, &run_id).unwrap();
            assert_eq!(log.last().unwrap()["aggregate"], reference().aggregate.as_str(), "{place}");
            s.orch(&["verify", &run_id]).expect(0).unwrap();
            s.orch(&["replay", &run_id]).expect(0).unwrap();
            resumed += 1;
        }
    }
    eprintln!("power loss: {resumed} cuts resumed to the reference outcome, {nothing} left nothing to resume");
}

/// Start offsets of the frames of a segment (walking the length fields).
fn frame_offsets(segment: &[u8]) -> Vec<usize> {
    let mut offsets = Vec::new();
    let mut at = 64;
    while at + 20 <= segment.len() {
        offsets.push(at);
        at += 20 + u32::from_le_bytes(segment[at..at + 4].try_into().unwrap()) as usize;
    }
    offsets
}

// ---------------------------------------------------------------------------------------
// Disk full / file too large while appending
// ---------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------
// Corruption through the binary
// ---------------------------------------------------------------------------------------

/// A handful of random bit flips and byte overwrites of a multi-segment log through
/// `orch verify` and `orch replay`: exit 2, and stderr names the segment, the offset and
/// the seq of the damaged record. (10,000 trials through the library: log_damage.rs.)
#[test]
fn damage_is_reported_by_verify_and_replay_with_segment_offset_and_seq() {
    use orch_log_format::scan::scan_segment;
    // A simulated run of 40 tasks, rewritten with 4 KiB segments.
    let mut spec = String::from("[run]\nmax_concurrency = 3\n");
    for i in 0..40 {
        let after = if i == 0 { String::new() } else { format!("after = [\"t{}\"]\n", (i - 1) / 3) };
        spec +=
            &format!("[[task]]\nid = \"t{i}\"\ncommand = \"true\"\n{after}sim = {{ duration_ms = {} }}\n", 5 + i % 7);
    }
    let s = Scratch::with(spec);
    s.orch(&["run", "wf.toml", "--sim"]).expect(0).unwrap();
    let records = s.records();
    let dir = s.path().join("small");
    let mut journal = orch_engine::journal::Journal::create(
        &dir,
        orch_log_format::Options { durability: orch_log_format::Durability::Never, segment_bytes: 4096 },
    )
    .unwrap();
    journal.append(&records).unwrap();
    journal.close().unwrap();
    let segments = orch_log_format::list_segments(&dir).unwrap();
    assert!(segments.len() >= 2, "the log spans {} segment(s)", segments.len());
    s.orch(&["replay", dir.to_str().unwrap()]).expect(0).unwrap();

    let mut rng = Rng::new(env_u64("ORCH_CRASH_SEED").unwrap_or(99));
    for trial in 0..6 {
        let seg = &segments[rng.below(segments.len() as u64) as usize];
        let bytes = std::fs::read(&seg.path).unwrap();
        let at = rng.below(bytes.len() as u64) as usize;
        let mut damaged = bytes.clone();
        if trial % 2 == 0 {
            damaged[at] ^= 1 << rng.below(8);
        } else {
            damaged[at] ^= 1 + rng.below(255) as u8;
        }
        let (offset, seq) = if at < 64 {
            (0, seg.base_seq)
        } else {
            let mut owner = (64, seg.base_seq);
            scan_segment(&bytes, seg.base_seq, true, |o, q, _| {
                if o as usize <= at {
                    owner = (o, q);
                }
            })
            .unwrap();
            owner
        };
        std::fs::write(&seg.path, &damaged).unwrap();
        let name = seg.path.file_name().unwrap().to_str().unwrap();
        let expected = format!("{name}:{offset}: seq {seq}: ");
        for cmd in ["verify", "replay"] {
            let out = s.orch(&[cmd, dir.to_str().unwrap()]);
            out.expect(2).unwrap();
            assert!(out.stderr.contains(&expected), "orch {cmd}, byte {at} of {name}: {}", out.stderr);
        }
        std::fs::write(&seg.path, &bytes).unwrap();
    }
}

// ---------------------------------------------------------------------------------------
// The writer lock and readers
// ---------------------------------------------------------------------------------------

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
    let lock = std::fs::File::open(s.log_dir().unwrap().join("LOCK")).unwrap();
    lock.lock_shared().unwrap();
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(150));
        drop(lock);
    });
    let out = s.orch(&["resume", "latest"]);
    release.join().unwrap();
    out.expect(0).unwrap_or_else(|e| panic!("{e}"));
    // A writer that really holds the lock is still refused, naming its pid.
    let run = s.run_dir().unwrap();
    let log = run.join("log");
    let (_writer, _) = orch_log_format::Writer::open(&log, orch_log_format::Options::default()).unwrap();
    let out = s.orch(&["resume", "latest"]);
    out.expect(2).unwrap();
    assert!(out.stderr.contains(&format!("(pid {})", std::process::id())), "{}", out.stderr);
}

// ---------------------------------------------------------------------------------------
// Lost attempts: neither diff --outcomes nor $ORCH_ATTEMPT counts them (as the aggregates do not)
// ---------------------------------------------------------------------------------------

/// Kills `orch run` as soon as the log shows attempt 1 of `task` started, then resumes.
fn kill_while_running(s: &Scratch, task: &str) {
    let mut child = s.spawn(&["run", "wf.toml"], "run");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let started = s.records().iter().any(|r| matches!(&r.event, Event::AttemptStarted(a) if a.task == task));
        if started {
            break;
        }
        assert!(Instant::now() < deadline, "{task} never started");
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    s.orch(&["resume", "latest"]).expect(0).unwrap();
    assert!(s.records().iter().any(|r| matches!(&r.event, Event::AttemptLost(l) if l.task == task)));
}

/// `orch diff --outcomes` leaves lost attempts out of a task's attempts, as the aggregates
/// do (`run.lost_attempts_count = false`): a resumed run compares equal to the
/// uninterrupted one.
#[test]
fn diff_outcomes_counts_lost_attempts() {
    // `prep` runs half a second: the kill lands inside it.
    let spec = workflow(FLAKY, "0.5");
    let reference = Scratch::with(spec.clone());
    reference.orch(&["run", "wf.toml"]).expect(0).unwrap();
    let expected = log_json(&reference, "latest").unwrap().last().unwrap()["aggregate"].clone();
    let s = Scratch::with(spec);
    kill_while_running(&s, "prep");
    let log = log_json(&s, "latest").unwrap();
    assert_eq!(log.last().unwrap()["aggregate"], expected, "the aggregates agree");
    let ref_dir = reference.run_dir().unwrap();
    let out = s.orch(&["diff", "--outcomes", ref_dir.to_str().unwrap(), s.run_dir().unwrap().to_str().unwrap()]);
    out.expect(0).unwrap_or_else(|e| panic!("{e}"));
}

/// `$ORCH_ATTEMPT` is the counted attempt: a task that fails its first attempt, keyed on
/// `$ORCH_ATTEMPT`, whose first attempt is lost in a crash, sees 1 again on its first
/// counted attempt, fails it as in the uninterrupted run, and the aggregates agree.
#[test]
fn orch_attempt_counts_lost_attempts() {
    let reference = Scratch::new(FLAKY_RAW);
    reference.orch(&["run", "wf.toml"]).expect(0).unwrap();
    let expected = log_json(&reference, "latest").unwrap().last().unwrap()["aggregate"].clone();
    let s = Scratch::new(FLAKY_RAW);
    kill_while_running(&s, "flaky");
    let log = log_json(&s, "latest").unwrap();
    assert_eq!(log.last().unwrap()["aggregate"], expected, "flaky's first counted attempt did not fail");
}
