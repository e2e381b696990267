//! The `orch` binary as a user meets it: every test runs the real executable in a fresh
//! temporary directory (so the store is the default `.orch/` there) and checks exit
//! codes, stdout and stderr. Timing facts are read from the RECORDED times in the log,
//! never from clocks measured here; waiting is done by polling with deadlines.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

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

// ---------------------------------------------------------------------------------------
// orch run
// ---------------------------------------------------------------------------------------

#[test]
fn a_succeeding_run_exits_0_with_a_summary() {
    let s = Scratch::new();
    let spec = s.write("ok.toml", TWO_TASKS);
    let out = s.orch(&["run", &spec]);
    out.code(0)
        .stdout_has("succeeded a")
        .stdout_has("succeeded b")
        .stdout_has("run succeeded: 2 tasks (2 succeeded)")
        .stdout_has("attempts 2, retries 0, timeouts 0")
        .stdout_has("log digest ");
    let ids = s.run_ids();
    assert_eq!(ids.len(), 1);
    out.stdout_has(&format!("run {}", ids[0]));
    // The store holds the log and a copy of the spec.
    assert_eq!(
        std::fs::read_to_string(s.path().join(".orch/runs").join(&ids[0]).join("spec.toml")).unwrap(),
        TWO_TASKS
    );
}

#[test]
fn a_failing_run_exits_1() {
    let s = Scratch::new();
    let spec = s.write("fail.toml", "[[task]]\nid = \"bad\"\ncommand = \"false\"\n\n[[task]]\nid = \"next\"\ncommand = \"true\"\nafter = [\"bad\"]\n");
    s.orch(&["run", &spec])
        .code(1)
        .stdout_has("failed    bad (exit code 1)")
        .stdout_has("blocked   next")
        .stdout_has("run failed: 2 tasks (1 blocked, 1 failed)");
}

#[test]
fn run_json_prints_exactly_one_object() {
    let s = Scratch::new();
    let spec = s.write("ok.toml", TWO_TASKS);
    let out = s.orch(&["run", &spec, "--json"]);
    let v = out.code(0).json();
    assert_eq!(v["outcome"], "succeeded");
    assert_eq!(v["tasks"], 2);
    assert_eq!(v["states"]["succeeded"], 2);
    assert_eq!(v["states"]["failed"], 0);
    assert_eq!(v["attempts"], 2);
    assert_eq!(v["retries"], 0);
    let run = v["run"].as_str().expect("run id");
    assert_eq!(s.run_ids(), [run]);
    let digest = v["log_digest"].as_str().expect("digest");
    assert_eq!(digest.len(), 64);
    assert!(digest.chars().all(|c| c.is_ascii_hexdigit()));
    // The digest printed is the log's: verify agrees.
    let verified = s.orch(&["verify", run, "--json"]).code(0).json();
    assert_eq!(verified["digest"], digest);
    assert_eq!(verified["records"], v["records"]);
}

#[test]
fn simulated_example_runs_report_retries_and_exit_codes() {
    let s = Scratch::new();
    let v = s.orch(&["run", &example("retries.toml"), "--sim", "--json"]).code(1).json();
    assert_eq!(v["outcome"], "failed");
    assert_eq!(v["attempts"], 7);
    assert_eq!(v["retries"], 4);
    assert_eq!(v["timeouts"], 1);
    assert_eq!(v["states"]["exhausted"], 1);
    assert_eq!(v["states"]["blocked"], 1);
    // Simulated runs are deterministic: same spec and seed, same log.
    let again = s.orch(&["run", &example("retries.toml"), "--sim", "--json"]).code(1).json();
    assert_eq!(again["log_digest"], v["log_digest"]);
    assert_ne!(again["run"], v["run"]);

    s.orch(&["run", &example("waves.toml"), "--sim"]).code(0).stdout_has("run succeeded: 7 tasks");
    s.orch(&["run", &example("dag.json"), "--sim"]).code(0).stdout_has("run succeeded: 5 tasks (5 succeeded)");
    for id in s.run_ids() {
        s.orch(&["replay", &id]).code(0).stdout_has("replay ok");
    }
}

// ---------------------------------------------------------------------------------------
// Bad input: exit 2, the message names the place, nothing half-written
// ---------------------------------------------------------------------------------------

#[test]
fn bad_specs_exit_2_naming_file_and_line() {
    let s = Scratch::new();
    let unknown = s.write("unknown.toml", "[[task]]\nid = \"a\"\ncommand = \"true\"\nbogus = 1\n");
    s.orch(&["run", &unknown]).code(2).stderr_has("unknown.toml:4:").stderr_has("unknown field `bogus`");

    let broken = s.write("broken.toml", "[[task]]\nid = \"a\"\ncommand = \"true\n");
    s.orch(&["run", &broken]).code(2).stderr_has("broken.toml:3:");

    let cycle =
        s.write("cycle.toml", "[[task]]\nid = \"a\"\nafter = [\"b\"]\n\n[[task]]\nid = \"b\"\nafter = [\"a\"]\n");
    s.orch(&["run", &cycle]).code(2).stderr_has("cycle.toml:").stderr_has("dependency cycle");

    let missing = s.orch(&["run", "no-such-workflow.toml"]);
    missing.code(2).stderr_has("no-such-workflow.toml");
    assert!(missing.stdout.is_empty(), "stdout: {}", missing.stdout);
    // None of these created a run.
    assert!(s.run_ids().is_empty(), "runs were created: {:?}", s.run_ids());
}

#[test]
fn bad_arguments_exit_2() {
    let s = Scratch::new();
    let spec = s.write("ok.toml", TWO_TASKS);
    s.orch(&["run", &spec, "--durability", "sometimes"])
        .code(2)
        .stderr_has("--durability")
        .stderr_has("always, batch or never");
    // Flags are checked before the file is read.
    s.orch(&["run", "no-such.toml", "--durability", "sometimes"]).code(2).stderr_has("--durability");
    s.orch(&["run", &spec, "-j", "0"]).code(2).stderr_has("--max-concurrency");
    s.orch(&["run"]).code(2).stderr_has("<FILE>");
    s.orch(&["frobnicate"]).code(2);
    assert!(s.run_ids().is_empty());
}

#[test]
fn every_command_explains_itself() {
    let s = Scratch::new();
    s.orch(&["--help"]).code(0).stdout_has("Usage: orch");
    for cmd in ["run", "replay", "log", "verify", "ls", "show"] {
        let out = s.orch(&[cmd, "--help"]);
        out.code(0).stdout_has(&format!("Usage: orch {cmd}"));
    }
}

// ---------------------------------------------------------------------------------------
// Run ids: exact, unique prefix, `latest`, unknown, ambiguous
// ---------------------------------------------------------------------------------------

#[test]
fn runs_resolve_by_id_prefix_and_latest() {
    let s = Scratch::new();
    let spec = s.write("ok.toml", TWO_TASKS);
    let mut ran = Vec::new();
    for _ in 0..3 {
        let v = s.orch(&["run", &spec, "--sim", "--json"]).code(0).json();
        ran.push(v["run"].as_str().unwrap().to_string());
    }
    // Ids sort by start time, even within one second, so `latest` is the last run.
    assert_eq!(s.run_ids(), ran);
    let latest = s.orch(&["show", "latest"]);
    latest.code(0);
    assert!(latest.stdout.starts_with(&format!("{} — succeeded", ran[2])), "{}", latest.stdout);

    // A unique prefix: one character past what the first id shares with the others.
    let shared = |a: &str, b: &str| a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count();
    let n = ran[1..].iter().map(|o| shared(&ran[0], o)).max().unwrap() + 1;
    let prefix = &ran[0][..n];
    let shown = s.orch(&["show", prefix]);
    assert!(shown.code(0).stdout.starts_with(&ran[0]), "{}", shown.stdout);
    s.orch(&["verify", prefix]).code(0).stdout_has("ok: ");

    // A prefix every run shares is ambiguous: exit 2, and every candidate is listed.
    let common = &ran[0][..shared(&ran[0], &ran[2])];
    let out = s.orch(&["show", common]);
    out.code(2).stderr_has("ambiguous");
    for id in &ran {
        out.stderr_has(id);
    }

    s.orch(&["show", "no-such-run"]).code(2).stderr_has("no run matches \"no-such-run\"");
    s.orch(&["replay", "19990101"]).code(2).stderr_has("no run matches");
    s.orch(&["log", "/no/such/dir"]).code(2).stderr_has("/no/such/dir");
    // An empty store has no `latest`.
    Scratch::new().orch(&["show", "latest"]).code(2).stderr_has("no run matches \"latest\"");
}

// ---------------------------------------------------------------------------------------
// Reading commands
// ---------------------------------------------------------------------------------------

#[test]
fn reading_commands_print_text_and_json() {
    let s = Scratch::new();
    let out = s.orch(&["ls"]);
    out.code(0).stdout_has("no runs in");
    assert_eq!(s.orch(&["ls", "--json"]).code(0).json(), Value::Array(vec![]));

    s.orch(&["run", &example("retries.toml"), "--sim"]).code(1);
    let id = &s.run_ids()[0];

    let text = s.orch(&["log", "latest", "--text"]);
    text.code(0);
    let lines: Vec<&str> = text.stdout.lines().collect();
    assert!(lines.len() > 10);
    for (seq, l) in lines.iter().enumerate() {
        let first = l.split_whitespace().next().unwrap();
        assert_eq!(first, seq.to_string(), "line {seq} does not start with its seq: {l}");
    }
    assert!(lines[0].contains("run_started"), "{}", lines[0]);
    assert!(lines.last().unwrap().contains("run_finished outcome=failed"), "{}", lines.last().unwrap());

    let records = s.records("latest");
    assert_eq!(records.len(), lines.len());
    for (seq, r) in records.iter().enumerate() {
        assert_eq!(u(&r["seq"]), seq as u64);
    }
    let from = s.orch(&["log", "latest", "--from", "5"]);
    assert_eq!(from.code(0).stdout.lines().count(), records.len() - 5);

    let ls = s.orch(&["ls", "--json"]).code(0).json();
    assert_eq!(ls[0]["run"], id.as_str());
    assert_eq!(ls[0]["outcome"], "failed");
    assert_eq!(ls[0]["tasks"], 4);
    s.orch(&["ls"]).code(0).stdout_has(id).stdout_has("failed");

    let show = s.orch(&["show", "latest", "--json"]).code(0).json();
    assert_eq!(show["outcome"], "failed");
    let detail = show["tasks_detail"].as_array().unwrap();
    let states: Vec<(&str, &str)> =
        detail.iter().map(|t| (t["task"].as_str().unwrap(), t["state"].as_str().unwrap())).collect();
    assert_eq!(
        states,
        [("download", "succeeded"), ("import", "succeeded"), ("publish", "exhausted"), ("announce", "blocked")]
    );
    s.orch(&["show", "latest"]).code(0).stdout_has("publish").stdout_has("exhausted");
}

#[test]
fn replay_of_a_good_run_succeeds_and_at_explains_the_state() {
    let s = Scratch::new();
    let spec = s.write("ok.toml", TWO_TASKS);
    let run = s.orch(&["run", &spec, "--json"]).code(0).json();
    let out = s.orch(&["replay", "latest"]);
    out.code(0).stdout_has("replay ok: ").stdout_has("run succeeded: 2 tasks");
    out.stdout_has(&format!("log digest {}", run["log_digest"].as_str().unwrap()));

    let v = s.orch(&["replay", "latest", "--json"]).code(0).json();
    assert_eq!(v["replay"], "ok");
    assert_eq!(v["log_digest"], run["log_digest"]);

    // Right after `a` was dispatched: `a` runs, `b` waits for it.
    let records = s.records("latest");
    let seq = records.iter().position(|r| kind(r) == "attempt_dispatched").unwrap();
    let at = s.orch(&["replay", "latest", "--at", &seq.to_string()]);
    at.code(0).stdout_has(&format!("at seq {seq}")).stdout_has("running (1):\n  a attempt 1").stdout_has("b [");
    let snap = s.orch(&["replay", "latest", "--at", &seq.to_string(), "--json"]).code(0).json();
    assert_eq!(snap["running"][0]["task"], "a");
    assert_eq!(snap["waiting"][0]["task"], "b");
    assert!(snap["waiting"][0]["reason"].as_str().unwrap().contains("after a"), "{snap}");

    s.orch(&["replay", "latest", "--at", "9999"]).code(2).stderr_has("--at 9999");
}

#[test]
fn log_into_a_closed_pipe_exits_cleanly() {
    let s = Scratch::new();
    s.orch(&["run", &example("retries.toml"), "--sim"]).code(1);
    // The reading end is closed before orch writes its first line: the write fails with
    // EPIPE, which must be a quiet exit 0, not an error or a panic.
    let mut child = s.command(&["log", "latest"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    assert!(stderr.is_empty(), "stderr: {stderr}");
}

// ---------------------------------------------------------------------------------------
// Corruption
// ---------------------------------------------------------------------------------------

#[test]
fn a_corrupted_log_is_named_by_segment_offset_and_seq() {
    let s = Scratch::new();
    s.orch(&["run", &example("retries.toml"), "--sim"]).code(1);
    let id = s.run_ids().remove(0);
    let segment = s.segment(&id);
    let mut bytes = std::fs::read(&segment).unwrap();
    let flipped = bytes.len() / 2;
    bytes[flipped] ^= 0x01;
    std::fs::write(&segment, &bytes).unwrap();

    let check = |out: &Out| {
        out.code(2).stderr_has("00000000000000000000.seg:");
        // `…/00000000000000000000.seg:OFFSET: seq N: …`
        let place = out.stderr.split("00000000000000000000.seg:").nth(1).unwrap();
        let (offset, rest) = place.split_once(':').unwrap();
        let offset: usize = offset.parse().unwrap_or_else(|_| panic!("no offset in {:?}", out.stderr));
        assert!(offset <= flipped, "the damaged record starts after the flipped byte: {}", out.stderr);
        let seq = rest.trim_start().strip_prefix("seq ").and_then(|r| r.split(':').next()).unwrap();
        assert!(seq.parse::<u64>().is_ok(), "no seq in {:?}", out.stderr);
        assert!(out.stdout.is_empty() || out.args.starts_with("log"), "stdout: {}", out.stdout);
    };
    check(&s.orch(&["verify", &id]));
    check(&s.orch(&["verify", &id, "--json"]));
    check(&s.orch(&["replay", &id]));
    check(&s.orch(&["replay", &id, "--at", "2"]));
    check(&s.orch(&["show", &id]));
    // `orch log` prints the good prefix, then reports the damage.
    let log = s.orch(&["log", &id, "--text"]);
    check(&log);
    assert!(log.stdout.starts_with("     0 "), "{}", log.stdout);

    // `ls` still lists every run; the damaged one is marked, the reason on stderr.
    let ls = s.orch(&["ls"]);
    ls.code(0).stderr_has("00000000000000000000.seg:");
    let row = ls.stdout.lines().find(|l| l.starts_with(&id)).unwrap();
    assert!(row.contains("unreadable"), "{row}");
    let json = s.orch(&["ls", "--json"]);
    let v: Value = serde_json::from_str(json.code(0).stdout.trim()).unwrap();
    assert_eq!(v[0]["outcome"], "unreadable");
    assert!(v[0]["error"].as_str().unwrap().contains(".seg:"));
}

// ---------------------------------------------------------------------------------------
// Real processes: timeouts, Ctrl-C, environment, concurrency
// ---------------------------------------------------------------------------------------

#[test]
fn a_timeout_kills_the_whole_group_at_the_recorded_deadline() {
    let s = Scratch::new();
    // The task's shell starts a grandchild and waits: the kill must reach both.
    let spec = s.write(
        "timeout.toml",
        r#"
[[task]]
id = "slow"
command = ["sh", "-c", "sleep 30 & echo $! > grandchild.pid; wait"]
timeout_ms = 300
"#,
    );
    let v = s.orch(&["run", &spec, "--kill-grace-ms", "5000", "--json"]).code(1).json();
    assert_eq!(v["states"]["timed_out"], 1);
    assert_eq!(v["timeouts"], 1);

    let records = s.records("latest");
    let find =
        |k: &str| records.iter().find(|r| kind(r) == k && r["task"] == "slow").unwrap_or_else(|| panic!("no {k}"));
    let dispatched = find("attempt_dispatched");
    let deadline = u(&dispatched["deadline_ms"]);
    assert_eq!(deadline, u(&dispatched["time_ms"]) + 300);
    let kill = find("attempt_kill_requested");
    assert_eq!(kill["reason"], "timeout");
    assert!(u(&kill["time_ms"]) >= deadline);
    let exited = find("attempt_exited");
    let exit_ms = u(&exited["time_ms"]);
    assert!(exit_ms >= deadline, "exited at {exit_ms} ms, before the deadline {deadline} ms");
    // SIGTERM did it, well within the 5 s grace period (and long before the 30 s sleep).
    assert!(exit_ms < deadline + 2500, "exited at {exit_ms} ms, deadline {deadline} ms");
    assert_eq!(exited["status"]["signal"], 15);
    let finished = find("task_finished");
    assert_eq!(finished["state"], "timed_out");

    let pid: u32 = std::fs::read_to_string(s.path().join("grandchild.pid")).unwrap().trim().parse().unwrap();
    poll("the grandchild to die", Duration::from_secs(5), || process_gone(pid).then_some(()));
    s.orch(&["replay", "latest"]).code(0).stdout_has("replay ok");
}

#[test]
fn ctrl_c_cancels_kills_the_groups_and_leaves_a_verified_log() {
    let s = Scratch::new();
    // `a` and `b` exec the sleep (their pid is the sleep's); `c` runs it as a grandchild.
    let spec = s.write(
        "long.toml",
        r#"
[[task]]
id = "a"
command = ["sh", "-c", "echo $$ > pid.a.tmp && mv pid.a.tmp pid.a && exec sleep 30"]

[[task]]
id = "b"
command = ["sh", "-c", "echo $$ > pid.b.tmp && mv pid.b.tmp pid.b && exec sleep 30"]

[[task]]
id = "c"
command = ["sh", "-c", "sleep 30 & echo $! > pid.c.tmp && mv pid.c.tmp pid.c; wait"]
"#,
    );
    let child = s
        .command(&["run", &spec, "-j", "3", "--kill-grace-ms", "1000"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = Reap(child);
    let orch_pid = child.0.id();

    // Wait until the log shows the three attempts dispatched and the children are up.
    poll("three dispatched attempts", Duration::from_secs(10), || {
        let out = s.orch(&["log", "latest"]);
        let n = out.stdout.lines().filter(|l| l.contains("\"kind\":\"attempt_dispatched\"")).count();
        (n == 3).then_some(())
    });
    let pids: Vec<u32> = poll("the children's pid files", Duration::from_secs(10), || {
        ["a", "b", "c"]
            .iter()
            .map(|t| std::fs::read_to_string(s.path().join(format!("pid.{t}"))).ok()?.trim().parse().ok())
            .collect()
    });

    let kill = Command::new("kill").args(["-INT", &orch_pid.to_string()]).status().unwrap();
    assert!(kill.success());
    let status = poll("orch to exit", Duration::from_secs(10), || child.0.try_wait().unwrap());
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.0.stdout.take().unwrap(), &mut stdout).unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.0.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(130), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("run cancelled: 3 tasks (3 cancelled)"), "{stdout}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    let records = s.records("latest");
    let last = records.last().unwrap();
    assert_eq!(kind(last), "run_finished");
    assert_eq!(last["outcome"], "cancelled");
    assert!(records.iter().any(|r| kind(r) == "cancel_requested"));
    s.orch(&["verify", "latest"]).code(0).stdout_has("ok: ");
    s.orch(&["replay", "latest"]).code(0).stdout_has("replay ok");

    for pid in pids {
        poll(&format!("sleep {pid} to die"), Duration::from_secs(5), || process_gone(pid).then_some(()));
    }
}

#[test]
fn children_get_the_orch_environment() {
    let s = Scratch::new();
    std::fs::create_dir(s.path().join("sub")).unwrap();
    // Runs in its own cwd (so ORCH_STORE must be absolute to be useful), and fails its
    // first attempt so the second shows ORCH_ATTEMPT counting.
    let spec = s.write(
        "env.toml",
        r#"
[[task]]
id = "env-task"
cwd = "sub"
command = ["sh", "-c", "printf '%s\n' \"$ORCH_RUN_ID\" \"$ORCH_TASK_ID\" \"$ORCH_ATTEMPT\" \"$ORCH_STORE\" >> env.out; [ \"$ORCH_ATTEMPT\" = 2 ]"]
retry = { max_attempts = 2, base_ms = 10 }
"#,
    );
    let v = s.orch(&["run", &spec, "--json"]).code(0).json();
    let run = v["run"].as_str().unwrap();
    assert_eq!(v["attempts"], 2);
    let written = std::fs::read_to_string(s.path().join("sub/env.out")).unwrap();
    let lines: Vec<&str> = written.lines().collect();
    assert_eq!(lines.len(), 8, "{written}");
    let store = s.path().join(".orch");
    for (attempt, chunk) in lines.chunks(4).enumerate() {
        assert_eq!(chunk[0], run);
        assert_eq!(chunk[1], "env-task");
        assert_eq!(chunk[2], (attempt + 1).to_string());
        let given = Path::new(chunk[3]);
        assert!(given.is_absolute(), "ORCH_STORE is relative: {given:?}");
        assert_eq!(given.canonicalize().unwrap(), store.canonicalize().unwrap());
    }
}

#[test]
fn the_concurrency_cap_holds_and_the_recorded_times_show_the_speedup() {
    let s = Scratch::new();
    let spec: String =
        (1..=6).map(|i| format!("[[task]]\nid = \"t{i}\"\ncommand = \"sleep 0.2\"\n\n")).collect::<Vec<_>>().concat();
    let spec = s.write("par.toml", &spec);
    let v = s.orch(&["run", &spec, "-j", "2", "--json"]).code(0).json();
    assert_eq!(v["states"]["succeeded"], 6);

    let records = s.records("latest");
    let (mut running, mut peak, mut busy_ms) = (0i64, 0i64, 0u64);
    for r in &records {
        match kind(r) {
            "attempt_dispatched" => running += 1,
            "attempt_exited" => {
                running -= 1;
                busy_ms += u(&r["duration_ms"]);
            }
            _ => {}
        }
        peak = peak.max(running);
    }
    // Never more than the cap, and the cap was used: a serial run would peak at 1.
    assert_eq!(peak, 2, "peak concurrency from the recorded dispatch/exit records");
    let last = records.last().unwrap();
    assert_eq!(kind(last), "run_finished");
    let wall_ms = u(&last["time_ms"]);
    assert!(busy_ms >= 6 * 200, "attempts took {busy_ms} ms in all");
    assert!(busy_ms * 10 >= wall_ms * 15, "speedup {busy_ms} ms / {wall_ms} ms is below 1.5");
    assert_eq!(u(&v["attempt_ms"]), busy_ms);
    assert_eq!(u(&v["wall_ms"]), wall_ms);
}
