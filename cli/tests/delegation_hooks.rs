//! Delegation's hooks and child-failure policies end to end through the real binary: a
//! parent's wake hook after each child of a parallel `on_child_complete` wave, answering
//! `stop` at the first failure (running siblings cancelled or left to finish per
//! `on_stop`, pending ones skipped); a parent left stuck by a failed child (`hold`) and
//! settled from a shell; the run's `before_finalize` auditor. Checked from the recorded
//! log and `orch replay`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use orch_engine::journal::read_records;
use orch_engine::record::{Event, KillReason, Record, RunOutcome, Terminal, Verdict};
use serde_json::Value;

#[path = "support/signals.rs"]
mod signals;
use signals::DefaultSignals;

/// `orch` in `dir`, as from a shell outside any run; children find it on PATH.
fn orch(dir: &Path, args: &[&str]) -> Command {
    let bin = Path::new(env!("CARGO_BIN_EXE_orch"));
    let path = format!("{}:{}", bin.parent().unwrap().display(), std::env::var("PATH").unwrap_or_default());
    let mut c = Command::new(bin);
    c.args(args).current_dir(dir).env("PATH", path);
    for var in ["ORCH_STORE", "ORCH_SOCKET", "ORCH_TASK_ID", "ORCH_RUN_ID"] {
        c.env_remove(var);
    }
    c
}

fn spawn_run(dir: &Path, spec: &str) -> Child {
    std::fs::write(dir.join("wf.toml"), spec).unwrap();
    let mut run = orch(dir, &["run", "wf.toml", "--json"]);
    run.default_signals().stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
}

/// Waits for the run to end; its exit code and records, once `orch replay` passed.
fn finish(dir: &Path, run: Child) -> (i32, Vec<Record>) {
    let out = run.wait_with_output().unwrap();
    let summary: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let id = summary["run"].as_str().unwrap();
    let replay = orch(dir, &["replay", id]).output().unwrap();
    assert!(replay.status.success(), "orch replay: {}", String::from_utf8_lossy(&replay.stderr));
    (out.status.code().unwrap(), read_records(&dir.join(".orch/runs").join(id).join("log")).unwrap())
}

fn run(dir: &Path, spec: &str) -> (i32, Vec<Record>) {
    finish(dir, spawn_run(dir, spec))
}

fn seq_of(records: &[Record], what: &str, f: impl Fn(&Event) -> bool) -> usize {
    records.iter().position(|r| f(&r.event)).unwrap_or_else(|| panic!("no record: {what}"))
}

fn finished(records: &[Record]) -> BTreeMap<String, (usize, Terminal)> {
    let f = records.iter().enumerate().filter_map(|(seq, r)| match &r.event {
        Event::TaskFinished(f) => Some((f.task.clone(), (seq, f.state))),
        _ => None,
    });
    f.collect()
}

/// A parent `tests` whose parallel wave (at most 2 at once) wakes it after each child.
/// `a` succeeds; `b` fails once `a` is done (so the first answer is a continue); `c` and
/// `d` start as slots free and are still running at the stop; `e` never starts.
fn wave_spec(dir: &Path, on_stop: &str, running: &str) -> String {
    let wakes = dir.join("wakes.jsonl").display().to_string();
    format!(
        r#"[run]
max_concurrency = 8
[[task]]
id = "tests"
on_stop = "{on_stop}"
hook = '''read -r input; echo "$input" >> {wakes}; if echo "$input" | grep -q '"status":"failed"'; then echo '{{"answer":"stop","reason":"a shard failed"}}'; else echo '{{"answer":"continue"}}'; fi'''
[[task]]
id = "a"
parent = "tests"
command = "true"
[[task]]
id = "b"
parent = "tests"
command = '''until orch task list --json | grep -q '"id":"a","status":"done"'; do sleep 0.02; done; exit 3'''
[[task]]
id = "c"
parent = "tests"
command = '''{running}'''
[[task]]
id = "d"
parent = "tests"
command = '''{running}'''
[[task]]
id = "e"
parent = "tests"
command = "true"
[[wave]]
parent = "tests"
tasks = ["a", "b", "c", "d", "e"]
max_concurrency = 2
wake = "on_child_complete"
"#
    )
}

/// What both `on_stop` policies share: a continue, then the stop at the first failure,
/// `e` skipped, the wave closed as stopped, the run failed (the wave's `fail_parent`).
fn assert_stopped_at_first_failure(
    dir: &Path,
    code: i32,
    r: &[Record],
) -> (usize, BTreeMap<String, (usize, Terminal)>) {
    assert_eq!(code, 1, "a failed child fails the parent, and the run");
    let answers: Vec<(Option<&str>, Verdict, Option<&str>)> = r
        .iter()
        .filter_map(|r| match &r.event {
            Event::HookAnswered(h) => Some((h.child.as_deref(), h.verdict, h.reason.as_deref())),
            _ => None,
        })
        .collect();
    assert_eq!(answers, [(Some("a"), Verdict::Continue, None), (Some("b"), Verdict::Stop, Some("a shard failed"))]);
    let woken: Vec<_> = r
        .iter()
        .filter_map(|r| match &r.event {
            Event::ParentWoken(w) => Some((w.parent.as_str(), w.child.as_deref())),
            _ => None,
        })
        .collect();
    assert_eq!(&woken[..2], [("tests", Some("a")), ("tests", Some("b"))], "woken after each child, in order");

    let stop_answer = seq_of(r, "stop", |e| matches!(e, Event::HookAnswered(h) if h.verdict == Verdict::Stop));
    let stopped = seq_of(r, "children_stopped", |e| matches!(e, Event::ChildrenStopped(c) if c.parent == "tests"));
    assert_eq!(stopped, stop_answer + 1, "the stop is decided right on the recorded answer");
    let done = finished(r);
    assert_eq!(done["a"].1, Terminal::Succeeded);
    assert_eq!(done["b"].1, Terminal::Failed);
    assert_eq!(done["e"].1, Terminal::Skipped);
    assert!(done["e"].0 > stopped);
    assert!(!r.iter().any(|r| matches!(&r.event, Event::AttemptDispatched(d) if d.task == "e")), "e never ran");
    let closed =
        seq_of(r, "wave closed", |e| matches!(e, Event::WaveClosed(w) if w.parent.as_deref() == Some("tests")));
    let Event::WaveClosed(w) = &r[closed].event else { unreachable!() };
    assert!(w.stopped && w.failures == 1, "{w:?}");
    assert_eq!(done["tests"].1, Terminal::Failed);
    let last = r.last().unwrap();
    assert!(matches!(&last.event, Event::RunFinished(f) if f.outcome == RunOutcome::Failed), "{last:?}");

    // The hook was told about each completion, as JSON on stdin.
    let wakes = std::fs::read_to_string(dir.join("wakes.jsonl")).unwrap();
    let wakes: Vec<Value> = wakes.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(wakes.len(), 2, "{wakes:?}");
    assert_eq!(
        (&wakes[0]["parent"], &wakes[0]["child"], &wakes[0]["status"]),
        (&"tests".into(), &"a".into(), &"done".into())
    );
    assert_eq!((&wakes[1]["child"], &wakes[1]["status"]), (&"b".into(), &"failed".into()));
    (stopped, done)
}

#[test]
fn a_wake_hook_stops_the_wave_at_the_first_failure_cancelling_running_siblings() {
    let tmp = tempfile::tempdir().unwrap();
    let (code, r) = run(tmp.path(), &wave_spec(tmp.path(), "cancel_running", "sleep 60"));
    let (stopped, done) = assert_stopped_at_first_failure(tmp.path(), code, &r);
    for t in ["c", "d"] {
        assert_eq!(done[t].1, Terminal::Cancelled, "{t} was running at the stop");
        let kill = seq_of(&r, t, |e| matches!(e, Event::AttemptKillRequested(k) if k.task == t));
        let Event::AttemptKillRequested(k) = &r[kill].event else { unreachable!() };
        assert!(kill > stopped && k.reason == KillReason::Stop, "{k:?}");
    }
}

#[test]
fn with_finish_running_the_running_siblings_finish_after_the_stop() {
    let tmp = tempfile::tempdir().unwrap();
    // c and d end only once the stop has skipped e: they were running when it came.
    let running = r#"until orch task list --json | grep -q '"id":"e","status":"skipped"'; do sleep 0.02; done"#;
    let (code, r) = run(tmp.path(), &wave_spec(tmp.path(), "finish_running", running));
    let (stopped, done) = assert_stopped_at_first_failure(tmp.path(), code, &r);
    assert!(!r.iter().any(|r| matches!(r.event, Event::AttemptKillRequested(_))), "nothing killed");
    for t in ["c", "d"] {
        assert_eq!(done[t].1, Terminal::Succeeded, "{t} ran to its end");
        assert!(done[t].0 > stopped);
    }
}

#[test]
fn before_finalize_reject_fails_the_run_and_accept_keeps_it_succeeded() {
    for (answer, code, outcome) in [("reject", 1, RunOutcome::Failed), ("accept", 0, RunOutcome::Succeeded)] {
        let tmp = tempfile::tempdir().unwrap();
        let input = tmp.path().join("audit.json").display().to_string();
        let spec = format!(
            "[run]\nbefore_finalize = '''cat > {input}; echo '{{\"answer\":\"{answer}\",\"reason\":\"audited\"}}' '''\n\
             [[task]]\nid = \"a\"\ncommand = \"orch ctx set deliverable a.tar\"\n"
        );
        let (got, r) = run(tmp.path(), &spec);
        assert_eq!(got, code, "{answer}");
        let asked = seq_of(&r, "finalize_requested", |e| matches!(e, Event::FinalizeRequested(_)));
        let Event::FinalizeRequested(f) = &r[asked].event else { unreachable!() };
        assert_eq!(f.outcome, RunOutcome::Succeeded, "the hook is shown the outcome before its verdict");
        let Event::HookAnswered(h) = &r[asked + 1].event else { panic!("{:?}", r[asked + 1]) };
        assert_eq!((h.parent.as_deref(), h.verdict.name(), h.reason.as_deref()), (None, answer, Some("audited")));
        let Event::RunFinished(end) = &r[asked + 2].event else { panic!("{:?}", r[asked + 2]) };
        assert_eq!((end.outcome, end.aggregate), (outcome, f.aggregate), "the verdict decides; the aggregate stands");
        let audit: Value = serde_json::from_str(&std::fs::read_to_string(&input).unwrap()).unwrap();
        assert_eq!((&audit["outcome"], &audit["context"]["deliverable"]), (&"succeeded".into(), &"a.tar".into()));
        assert_eq!(audit["aggregate"].as_str(), Some(f.aggregate.hex().as_str()));
    }
}

/// A hook that is a script whose interpreter is missing refuses, and its reason names
/// the interpreter (execve says only ENOENT, the script being there).
#[test]
fn a_hook_with_a_missing_interpreter_says_so() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let audit = tmp.path().join("audit.sh");
    std::fs::write(&audit, "#!/no/such/sh\necho accept\n").unwrap();
    std::fs::set_permissions(&audit, std::fs::Permissions::from_mode(0o755)).unwrap();
    let spec = format!("[run]\nbefore_finalize = [{:?}]\n[[task]]\nid = \"a\"\ncommand = \"true\"\n", audit.display());
    let (got, r) = run(tmp.path(), &spec);
    assert_eq!(got, 1);
    let answered = seq_of(&r, "hook_answered", |e| matches!(e, Event::HookAnswered(_)));
    let Event::HookAnswered(h) = &r[answered].event else { unreachable!() };
    let reason = h.reason.as_deref().unwrap_or_default();
    assert!(reason.contains("bad interpreter \"/no/such/sh\""), "{reason}");
}

/// A parent whose run-time child failed is stuck (`hold`); a shell settles it. With
/// `also_running`, another task keeps the run alive, so the settlement is not its end.
fn settle_stuck_parent(dir: &Path, also_running: bool) -> (Output, i32, Vec<Record>) {
    let go = dir.join("go").display().to_string();
    let mut spec = "[[task]]\nid = \"p\"\ncommand = \"orch task create c -- false\"\n".to_string();
    if also_running {
        spec += &format!("[[task]]\nid = \"hold\"\ncommand = 'until [ -e {go} ]; do sleep 0.02; done'\n");
    }
    let child = spawn_run(dir, &spec);
    let start = Instant::now();
    loop {
        // Synchronisation with the live run only: nothing is measured.
        let list = orch(dir, &["task", "list", "--run", "latest", "--json"]).output().unwrap();
        if String::from_utf8_lossy(&list.stdout).contains(r#"{"id":"p","status":"stuck""#) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "p never got stuck");
        std::thread::sleep(Duration::from_millis(20));
    }
    let args = ["task", "update", "p", "--status", "done", "--note", "checked by hand", "--run", "latest"];
    let update = orch(dir, &args).output().unwrap();
    std::fs::write(&go, "").unwrap();
    let (code, records) = finish(dir, child);
    (update, code, records)
}

#[test]
fn a_parent_stuck_on_a_failed_child_is_settled_from_a_shell() {
    let tmp = tempfile::tempdir().unwrap();
    let (update, code, r) = settle_stuck_parent(tmp.path(), true);
    assert!(update.status.success(), "{}", String::from_utf8_lossy(&update.stderr));
    assert_eq!(String::from_utf8_lossy(&update.stdout).trim(), "p: done");
    assert_eq!(code, 0, "settled done: the parent's verdict stands for its children");
    let woken = seq_of(&r, "p woken", |e| matches!(e, Event::ParentWoken(w) if w.parent == "p"));
    let updated = seq_of(&r, "update", |e| matches!(e, Event::TaskUpdated(u) if u.task == "p" && u.by.is_none()));
    let done = finished(&r);
    assert_eq!(done["c"].1, Terminal::Failed);
    assert!(done["c"].0 < woken && woken < updated && updated < done["p"].0, "p waited, stuck, until settled");
    assert_eq!(done["p"].1, Terminal::Succeeded);
    let Event::TaskFinished(f) = &r[done["p"].0].event else { unreachable!() };
    assert!(f.cause.as_deref().unwrap_or_default().contains("checked by hand"), "{:?}", f.cause);
}

/// A wake hook's environment has each variable once: the parent's `env` naming one of
/// orch's (`ORCH_STORE`) replaces it rather than adding a second copy, which getenv
/// would not see (it takes the first). `printenv` answers with what getenv finds (not a
/// verdict: the reason quotes it).
#[test]
fn a_hook_gets_each_variable_once_the_parents_env_last() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = "[[task]]\nid = \"p\"\nenv = { ORCH_STORE = \"mine\" }\nhook = [\"printenv\", \"ORCH_STORE\"]\n\
                [[task]]\nid = \"c\"\nparent = \"p\"\ncommand = \"true\"\n";
    let (_, r) = run(tmp.path(), spec);
    let answered = seq_of(&r, "hook_answered", |e| matches!(e, Event::HookAnswered(_)));
    let Event::HookAnswered(h) = &r[answered].event else { unreachable!() };
    let reason = h.reason.as_deref().unwrap_or_default();
    assert!(reason.starts_with("hook answered \"mine"), "{reason}");
}

#[test]
fn settling_the_last_open_task_is_answered_before_the_run_ends() {
    let tmp = tempfile::tempdir().unwrap();
    let (update, code, r) = settle_stuck_parent(tmp.path(), false);
    assert_eq!(code, 0);
    assert_eq!(finished(&r)["p"].1, Terminal::Succeeded, "the update was applied");
    assert!(update.status.success(), "{}", String::from_utf8_lossy(&update.stderr));
}

#[test]
fn a_hook_that_leaves_a_background_process_behind_is_not_waited_for() {
    let tmp = tempfile::tempdir().unwrap();
    // The hook answers and exits, but a process it started keeps its stdout open.
    let spec =
        "[run]\nbefore_finalize = \"sleep 3 2>/dev/null & echo accept\"\n[[task]]\nid = \"a\"\ncommand = \"true\"\n";
    let (code, r) = run(tmp.path(), spec);
    assert_eq!(code, 0);
    let asked = seq_of(&r, "finalize_requested", |e| matches!(e, Event::FinalizeRequested(_)));
    let answered = seq_of(&r, "hook_answered", |e| matches!(e, Event::HookAnswered(h) if h.verdict == Verdict::Accept));
    // Recorded times: the answer came with the hook's exit, not with the sleep's.
    assert!(r[answered].time_ms - r[asked].time_ms < 2_000, "answer waited for the background process");
}

/// `run.hook_timeout_ms`: a hook still running is killed with everything it started, and
/// counts as its refusal; the run ends on that recorded answer.
#[test]
fn a_hook_past_its_timeout_is_killed_with_its_group_and_refuses() {
    let tmp = tempfile::tempdir().unwrap();
    let pid_file = tmp.path().join("bg.pid").display().to_string();
    let spec = format!(
        "[run]\nhook_timeout_ms = 300\nbefore_finalize = '''sleep 60 & echo $! > {pid_file}; sleep 60; echo accept'''\n\
         [[task]]\nid = \"a\"\ncommand = \"true\"\n"
    );
    let (code, r) = run(tmp.path(), &spec);
    assert_eq!(code, 1, "a refused finalize fails the run");
    let Some(Event::HookAnswered(h)) = r.iter().map(|r| &r.event).find(|e| matches!(e, Event::HookAnswered(_))) else {
        panic!("no hook_answered")
    };
    assert_eq!((h.verdict, h.reason.as_deref()), (Verdict::Reject, Some("hook timed out after 300 ms")));
    let Some(Event::RunFinished(end)) = r.last().map(|r| &r.event) else { panic!("{:?}", r.last()) };
    assert_eq!(end.outcome, RunOutcome::Failed);

    // The hook's background `sleep` went with it (its process group was killed): gone,
    // or a zombie waiting for whoever inherited it.
    let pid = std::fs::read_to_string(&pid_file).unwrap().trim().to_string();
    let dead = || match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')),
    };
    let waited = Instant::now();
    while !dead() {
        assert!(waited.elapsed() < Duration::from_secs(10), "the hook's background process {pid} still runs");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The default wake policy (`on_wave_complete`) wakes a parent when its last wave closes,
/// in the very step that empties its group: the hook still runs, and answers, before the
/// parent is done (it used to end the parent at once, and the hook never ran).
#[test]
fn the_hook_of_the_last_wave_runs_before_the_parent_is_done() {
    let dir = tempfile::tempdir().unwrap();
    let wakes = dir.path().join("wakes");
    let spec = format!(
        "[[task]]\nid = \"review\"\ncommand = \"orch task create a -- true && orch task create b -- true\"\n\
         hook = '''cat >> {wakes}; echo continue'''\n",
        wakes = wakes.display()
    );
    let (code, r) = run(dir.path(), &spec);
    assert_eq!(code, 0);
    let woken = seq_of(&r, "the wave's wake", |e| matches!(e, Event::ParentWoken(w) if w.parent == "review"));
    let answered = seq_of(
        &r,
        "the hook's answer",
        |e| matches!(e, Event::HookAnswered(h) if h.parent.as_deref() == Some("review") && h.verdict == Verdict::Continue),
    );
    let (done, state) = finished(&r)["review"];
    assert!(woken < answered && answered < done, "woken {woken}, answered {answered}, done {done}");
    assert_eq!(state, Terminal::Succeeded);
    let input: Value = serde_json::from_str(std::fs::read_to_string(&wakes).unwrap().trim()).unwrap();
    assert_eq!((input["parent"].as_str(), input["child"].as_str()), (Some("review"), None));
    assert_eq!(input["children"]["done"], 2);
}

/// A cancel does not wait for a hook that is out; what the hook started goes with it
/// when orch ends (not only the hook's own process).
#[test]
fn a_hook_out_when_the_run_is_cancelled_is_killed_with_its_group() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("hook.pid");
    let spec = format!(
        "[[task]]\nid = \"review\"\ncommand = \"orch task create c1 -- true\"\n\
         hook = '''sleep 30 & echo $! > {pid}.tmp; mv {pid}.tmp {pid}; wait; echo continue'''\n",
        pid = pid_file.display()
    );
    let mut run = spawn_run(dir.path(), &spec);
    let started = Instant::now();
    let pid = loop {
        if let Ok(text) = std::fs::read_to_string(&pid_file) {
            break text.trim().parse::<i32>().unwrap();
        }
        assert!(started.elapsed() < Duration::from_secs(10), "the hook did not start");
        std::thread::sleep(Duration::from_millis(10));
    };
    let orch_pid = run.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &orch_pid]).status().unwrap().success());
    let status = run.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    let gone = || nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err();
    let waited = Instant::now();
    while !gone() {
        assert!(waited.elapsed() < Duration::from_secs(5), "the hook's sleep {pid} outlived orch");
        std::thread::sleep(Duration::from_millis(10));
    }
}
