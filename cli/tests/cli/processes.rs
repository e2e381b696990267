//! Real processes: timeouts, Ctrl-C, environment, concurrency.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::signals::DefaultSignals;
use super::{kind, poll, process_gone, u, Reap, Scratch};

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

/// A killed attempt's shell that exits on SIGTERM at once, leaving a grandchild that
/// ignores it: the grandchild, in the attempt's group, must still get SIGKILL. (Its trap
/// is set first, and the timeout is long enough for the rest to be in place before it.)
const TERM_SURVIVOR: &str = r#"["sh", "-c", "trap 'exit 0' TERM; (trap '' TERM; exec sleep 30) & echo $! > survivor.tmp && mv survivor.tmp survivor.pid; wait"]"#;

#[test]
fn what_is_left_of_a_killed_group_gets_sigkill_when_the_grace_period_is_over() {
    let s = Scratch::new();
    // `watch` outlives the grace period and succeeds only if the survivor dies while the
    // run goes on (it gives up, failing, after 20 s): the verdict is in the log, not in
    // a clock of the test.
    let spec = s.write(
        "survivor.toml",
        &format!(
            r#"
[[task]]
id = "gc"
command = {TERM_SURVIVOR}
timeout_ms = 1000

[[task]]
id = "watch"
command = ["sh", "-c", "for i in $(seq 400); do if [ -f survivor.pid ]; then p=$(cat survivor.pid); grep -q '^State:.*Z' /proc/$p/status 2>/dev/null || [ ! -e /proc/$p ] && exit 0; fi; sleep 0.05; done; exit 1"]
"#
        ),
    );
    let v = s.orch(&["run", &spec, "--kill-grace-ms", "300", "--json"]).code(1).json();
    assert_eq!((v["states"]["timed_out"].as_u64(), v["states"]["succeeded"].as_u64()), (Some(1), Some(1)), "{v}");
    let records = s.records("latest");
    let exited = records.iter().find(|r| kind(r) == "attempt_exited" && r["task"] == "gc").expect("gc exited");
    assert_eq!(exited["status"]["code"], 0, "the shell left on SIGTERM, before the grace period was over");
}

#[test]
fn what_is_left_of_a_killed_group_gets_sigkill_when_the_run_ends_first() {
    let s = Scratch::new();
    let spec =
        s.write("survivor.toml", &format!("[[task]]\nid = \"gc\"\ncommand = {TERM_SURVIVOR}\ntimeout_ms = 1000\n"));
    // The run is over before the grace period: orch waits it out, then SIGKILLs the group.
    s.orch(&["run", &spec, "--kill-grace-ms", "500", "--json"]).code(1);
    let pid: u32 = std::fs::read_to_string(s.path().join("survivor.pid")).unwrap().trim().parse().unwrap();
    poll("the survivor to die", Duration::from_secs(5), || process_gone(pid).then_some(()));
}

#[test]
fn ctrl_c_cancels_kills_the_groups_and_leaves_a_verified_log() {
    cancelled_by("INT", "interrupted (Ctrl-C)");
}

/// `kill`, `timeout` and service managers send SIGTERM; a closed terminal SIGHUP. Either
/// cancels the run as Ctrl-C does (it used to end orch at once, its children orphaned).
#[test]
fn sigterm_and_sighup_cancel_as_ctrl_c_does() {
    cancelled_by("TERM", "terminated (SIGTERM)");
    cancelled_by("HUP", "hung up (SIGHUP)");
}

fn cancelled_by(signal: &str, reason: &str) {
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
        .default_signals()
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

    let kill = Command::new("kill").args([&format!("-{signal}"), &orch_pid.to_string()]).status().unwrap();
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
    assert!(records.iter().any(|r| kind(r) == "cancel_requested" && r["reason"] == reason), "{records:?}");
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

/// A signal ignored when orch starts stays ignored (`nohup orch run …` must survive the
/// terminal's SIGHUP); the others still cancel. Read from the live process's dispositions.
#[test]
fn a_signal_ignored_at_start_stays_ignored() {
    let s = Scratch::new();
    s.write("one.toml", "[[task]]\nid = \"a\"\ncommand = [\"sh\", \"-c\", \"touch up && exec sleep 30\"]\n");
    let child = Command::new("sh")
        .args(["-c", "trap '' HUP; exec \"$0\" run one.toml", env!("CARGO_BIN_EXE_orch")])
        .default_signals()
        .current_dir(s.path())
        .env_remove("ORCH_STORE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Reap(child);
    let orch_pid = child.0.id();
    poll("the task to start", Duration::from_secs(10), || s.path().join("up").exists().then_some(()));
    let status = std::fs::read_to_string(format!("/proc/{orch_pid}/status")).unwrap();
    let mask = |name: &str| {
        let hex = status.lines().find_map(|l| l.strip_prefix(name)).unwrap().trim();
        u64::from_str_radix(hex, 16).unwrap()
    };
    let (ignored, caught) = (mask("SigIgn:"), mask("SigCgt:"));
    let bit = |signal: u32| 1u64 << (signal - 1);
    let (hup, int, term) = (bit(1), bit(2), bit(15));
    assert!(ignored & hup != 0 && caught & hup == 0, "SIGHUP stays ignored: SigIgn {ignored:x}, SigCgt {caught:x}");
    assert!(caught & int != 0 && caught & term != 0, "SIGINT and SIGTERM are handled: SigCgt {caught:x}");
    assert!(Command::new("kill").args(["-INT", &orch_pid.to_string()]).status().unwrap().success());
    let status = poll("orch to exit", Duration::from_secs(10), || child.0.try_wait().unwrap());
    assert_eq!(status.code(), Some(130));
}

/// The engine's downtime counts: a run resumed after its deadline passed times out at
/// once (the clock goes on from the last write, not from the last record), so crashes
/// cannot postpone a run timeout.
#[test]
fn a_run_resumed_after_its_deadline_times_out_at_once() {
    let s = Scratch::new();
    let spec = s.write("late.toml", "[run]\ntimeout_ms = 1500\n\n[[task]]\nid = \"a\"\ncommand = \"sleep 10\"\n");
    let spawned = std::time::Instant::now();
    let child =
        s.command(&["run", &spec]).default_signals().stdin(Stdio::null()).stdout(Stdio::null()).spawn().unwrap();
    let mut child = Reap(child);
    poll("the attempt to start", Duration::from_secs(10), || {
        s.orch(&["log", "latest"]).stdout.contains("\"kind\":\"attempt_started\"").then_some(())
    });
    child.0.kill().unwrap(); // the engine dies; its `sleep 10` lives on
    child.0.wait().unwrap();
    // Down past the deadline (any wait longer than 1.5 s would do).
    std::thread::sleep(Duration::from_millis(2000).saturating_sub(spawned.elapsed()));
    let resumed = s.orch(&["resume", "latest"]);
    resumed.code(1);
    let records = s.records("latest");
    let lost = records.iter().find(|r| kind(r) == "attempt_lost").expect("the attempt was lost");
    assert!(u(&lost["time_ms"]) >= 1500, "resumed at {} ms, past the 1500 ms deadline", lost["time_ms"]);
    let last = records.last().unwrap();
    assert_eq!((kind(last), last["outcome"].as_str()), ("run_finished", Some("timed_out")));
}

/// An output over 1 MiB is hashed a piece at a time and its file becomes the blob (no
/// copy); while anything else holds the file — a grandchild left in the attempt's group,
/// or one that left the group (`setsid`) — exactly the bytes written by the exit are
/// copied instead. Either way: the recorded digest and size, and a blob of those very
/// bytes, also after the ones left behind have written more.
#[test]
fn a_large_output_is_stored_whole_under_its_digest() {
    let s = Scratch::new();
    let spec = s.write(
        "large.toml",
        "[[task]]\nid = \"big\"\ncommand = \"seq 1 600000\"\n\n\
         [[task]]\nid = \"left\"\ncommand = \"seq 2 600001; (sleep 0.3; echo late; touch left.done) &\"\n\n\
         [[task]]\nid = \"escaped\"\n\
         command = \"seq 3 600002; setsid sh -c 'sleep 0.3; echo LATE; touch escaped.done' &\"\n\n\
         [[task]]\nid = \"small\"\ncommand = \"seq 1 3\"\n",
    );
    s.orch(&["run", &spec, "-j", "4"]).code(0);
    for marker in ["left.done", "escaped.done"] {
        poll(marker, Duration::from_secs(10), || s.path().join(marker).exists().then_some(()));
    }
    let lines = |from: u32, to: u32| -> String { (from..=to).map(|i| format!("{i}\n")).collect() };
    let records = s.records("latest");
    let cases = [
        ("big", lines(1, 600_000)),
        ("left", lines(2, 600_001)),
        ("escaped", lines(3, 600_002)),
        ("small", lines(1, 3)),
    ];
    for (task, text) in cases {
        let exited = records.iter().find(|r| kind(r) == "attempt_exited" && r["task"] == task).expect("exited");
        assert_eq!(u(&exited["output_bytes"]), text.len() as u64, "{task}");
        assert_eq!(
            exited["output"].as_str().unwrap(),
            orch_engine::record::Digest::of(text.as_bytes()).hex(),
            "{task}"
        );
        // `orch output` checks the blob against the recorded digest.
        let out = s.orch(&["output", "latest", task]);
        assert!(out.code(0).stdout == text, "{task}: the stored output differs");
    }
    let leftovers: Vec<_> = std::fs::read_dir(s.path().join(".orch/blobs/tmp")).unwrap().flatten().collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    s.orch(&["replay", "latest"]).code(0).stdout_has("replay ok");
}

/// A process that left the attempt's group (`setsid`, a daemon) and still holds its
/// output file: the file is not given to the next attempt, whose output would get what
/// that process writes later.
#[test]
fn an_output_file_still_held_by_an_escaped_process_is_not_reused() {
    let s = Scratch::new();
    let spec = s.write(
        "escaped.toml",
        "[[task]]\nid = \"a\"\ncommand = \"echo a; setsid sh -c 'sleep 0.4; echo LEAK; touch leaked' &\"\n\n\
         [[task]]\nid = \"b\"\nafter = [\"a\"]\ncommand = \"sh -c 'while [ ! -e leaked ]; do sleep 0.05; done; echo b'\"\n",
    );
    s.orch(&["run", &spec, "-j", "1"]).code(0);
    assert_eq!(s.orch(&["output", "latest", "a"]).code(0).stdout, "a\n");
    assert_eq!(s.orch(&["output", "latest", "b"]).code(0).stdout, "b\n", "the escaped process wrote into b's output");
}

/// A run an orch before kind 11 started (its run-started record carries no compiled
/// graph) and whose engine died resumes under this one: the spec is compiled from the
/// record, the lost attempt runs again, and the first record stays as it was written.
#[test]
fn a_run_started_by_an_older_orch_resumes() {
    use orch_engine::record::Event;
    let s = Scratch::new();
    let spec = s.write("old.toml", "[[task]]\nid = \"a\"\ncommand = \"sleep 1\"\n");
    let child =
        s.command(&["run", &spec]).default_signals().stdin(Stdio::null()).stdout(Stdio::null()).spawn().unwrap();
    let mut child = Reap(child);
    poll("the attempt to start", Duration::from_secs(10), || {
        s.orch(&["log", "latest"]).stdout.contains("\"kind\":\"attempt_started\"").then_some(())
    });
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    let id = s.run_ids().remove(0);
    s.rewrite_log(&id, |records| match &mut records[0].event {
        Event::RunStarted(r) => r.image = None,
        _ => panic!("run_started first"),
    });
    s.orch(&["resume", &id]).code(0);
    s.orch(&["replay", &id]).code(0);
    let log = s.log_dir(&id);
    let records = orch_engine::journal::read_records(&log).unwrap();
    assert_eq!(records[0].event.code(), 1, "the first record is left as written");
    assert!(records.iter().any(|r| matches!(r.event, Event::AttemptLost(_))));
    assert!(matches!(records.last().map(|r| &r.event), Some(Event::RunFinished(_))));
}
