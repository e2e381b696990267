//! Delegation end to end through the real binary: running children create sub-tasks and
//! append to the shared context over the control socket, racing each other, and nothing
//! is lost; blockers order the work; parents auto-complete; bad requests are refused and
//! recorded; a finished run takes no changes. Every claim is read from the recorded log,
//! and every run must pass `orch replay`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use orch_engine::journal::read_records;
use orch_engine::record::{Event, ExitStatus, Record, Terminal};
use serde_json::Value;

mod after_the_fact;

struct Scratch {
    dir: tempfile::TempDir,
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

/// A finished run: its exit code, id and records (`orch replay` already passed).
struct Run {
    code: i32,
    id: String,
    records: Vec<Record>,
}

impl Scratch {
    fn new() -> Scratch {
        Scratch { dir: tempfile::tempdir().unwrap() }
    }

    /// An absolute path in the scratch directory.
    fn at(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// `orch` from a shell outside any run: children find the same binary on PATH.
    fn command(&self, args: &[&str]) -> Command {
        let bin = Path::new(env!("CARGO_BIN_EXE_orch"));
        let path = format!("{}:{}", bin.parent().unwrap().display(), std::env::var("PATH").unwrap_or_default());
        let mut c = Command::new(bin);
        c.args(args).current_dir(self.dir.path()).env("PATH", path);
        for var in ["ORCH_STORE", "ORCH_SOCKET", "ORCH_TASK_ID", "ORCH_RUN_ID"] {
            c.env_remove(var);
        }
        c
    }

    fn orch(&self, args: &[&str]) -> Out {
        let o = self.command(args).output().expect("run orch");
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        Out { code: o.status.code().unwrap_or(-1), stdout: text(&o.stdout), stderr: text(&o.stderr) }
    }

    /// Runs `spec` to its end and replays it.
    fn run(&self, spec: &str) -> Run {
        std::fs::write(self.dir.path().join("wf.toml"), spec).unwrap();
        let out = self.orch(&["run", "wf.toml", "--json"]);
        let summary: Value = serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", out.stderr));
        let id = summary["run"].as_str().expect("the summary names its run").to_string();
        let replay = self.orch(&["replay", &id]);
        assert_eq!(replay.code, 0, "orch replay {id}: {}{}", replay.stdout, replay.stderr);
        let records = read_records(&self.log(&id)).unwrap();
        Run { code: out.code, id, records }
    }

    fn log(&self, id: &str) -> PathBuf {
        self.dir.path().join(".orch/runs").join(id).join("log")
    }
}

/// Seq of the first record that fits.
fn seq_of(records: &[Record], what: &str, f: impl Fn(&Event) -> bool) -> usize {
    records.iter().position(|r| f(&r.event)).unwrap_or_else(|| panic!("no record: {what}"))
}

/// Each task's terminal record: (seq, state).
fn finished(records: &[Record]) -> BTreeMap<String, (usize, Terminal)> {
    let mut out = BTreeMap::new();
    for (seq, r) in records.iter().enumerate() {
        if let Event::TaskFinished(f) = &r.event {
            assert!(out.insert(f.task.clone(), (seq, f.state)).is_none(), "{} finished twice", f.task);
        }
    }
    out
}

/// Each task's attempt exits, in order: (seq, status).
fn exits(records: &[Record]) -> BTreeMap<String, Vec<(usize, ExitStatus)>> {
    let mut out: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for (seq, r) in records.iter().enumerate() {
        if let Event::AttemptExited(x) = &r.event {
            out.entry(x.task.clone()).or_default().push((seq, x.status));
        }
    }
    out
}

/// The tasks dispatched, in order: (seq, task).
fn dispatches(records: &[Record]) -> Vec<(usize, String)> {
    let task = |e: &Event| if let Event::AttemptDispatched(d) = e { Some(d.task.clone()) } else { None };
    records.iter().enumerate().filter_map(|(s, r)| Some((s, task(&r.event)?))).collect()
}

/// Every submitted task (its spec as JSON) with the recorded answer: None = accepted.
fn submissions(records: &[Record]) -> Vec<(Value, Option<String>)> {
    let answers: BTreeMap<u64, Option<String>> = records
        .iter()
        .filter_map(|r| match &r.event {
            Event::RequestAnswered(a) => Some((a.request, a.error.clone())),
            _ => None,
        })
        .collect();
    let submitted = records.iter().filter_map(|r| match &r.event {
        Event::TaskSubmitted(s) => Some((serde_json::from_str(&s.task).unwrap(), answers[&s.request].clone())),
        _ => None,
    });
    submitted.collect()
}

/// Asserts that each parent finished succeeded after every one of its children.
fn parents_finish_after_children(records: &[Record], done: &BTreeMap<String, (usize, Terminal)>) {
    for (spec, error) in submissions(records) {
        assert_eq!(error, None);
        let (child, parent) = (spec["id"].as_str().unwrap(), spec["parent"].as_str().unwrap());
        assert_eq!(done[parent].1, Terminal::Succeeded, "{parent}");
        assert!(done[child].0 < done[parent].0, "{parent} finished before its child {child}");
    }
}

#[test]
fn sixty_four_racing_children_create_exactly_1024_subtasks_and_every_parent_auto_completes() {
    let s = Scratch::new();
    let barrier = s.at("barrier");
    std::fs::create_dir(&barrier).unwrap();
    // Each child waits until all 64 run, then fires its 16 creates at once; a create that
    // fails fails the child.
    let body = format!(
        "touch {barrier}/$ORCH_TASK_ID; n=0; while [ $(ls {barrier} | wc -l) -lt 64 ]; do n=$((n+1)); \
         [ $n -gt 3000 ] && exit 3; sleep 0.02; done; pids=; for i in $(seq 1 16); do \
         orch task create $ORCH_TASK_ID-s$i -- true & pids=\"$pids $!\"; done; for p in $pids; do wait $p || exit 4; done"
    );
    let mut spec = String::from("[run]\nmax_concurrency = 64\n");
    for p in 0..64 {
        spec += &format!("[[task]]\nid = \"p{p:02}\"\ncommand = '''{body}'''\n");
    }
    let started = Instant::now();
    let run = s.run(&spec);
    eprintln!("64 x 16 creates: {:?}", started.elapsed());
    assert_eq!(run.code, 0);
    let r = &run.records;

    // All 64 ran at once: every parent started before any exited.
    let first_exit = seq_of(r, "a parent's exit", |e| matches!(e, Event::AttemptExited(x) if !x.task.contains('-')));
    let started_before = r[..first_exit].iter().filter(|r| matches!(r.event, Event::AttemptStarted(_))).count();
    assert_eq!(started_before, 64);

    let subs = submissions(r);
    assert_eq!(subs.len(), 1024, "one submission per create, none lost or repeated");
    assert!(subs.iter().all(|(_, error)| error.is_none()), "every one accepted");
    let ids: BTreeSet<&str> = subs.iter().map(|(spec, _)| spec["id"].as_str().unwrap()).collect();
    let expected: BTreeSet<String> = (0..64).flat_map(|p| (1..=16).map(move |i| format!("p{p:02}-s{i}"))).collect();
    assert_eq!(ids, expected.iter().map(String::as_str).collect(), "1,024 unique ids, each its creator's");
    assert!(subs.iter().all(|(spec, _)| spec["id"].as_str().unwrap().starts_with(spec["parent"].as_str().unwrap())));

    let (done, exited) = (finished(r), exits(r));
    for id in expected.iter().map(String::as_str) {
        let codes: Vec<ExitStatus> = exited[id].iter().map(|&(_, status)| status).collect();
        assert_eq!(codes, [ExitStatus::Code(0)], "{id} ran once, and succeeded");
        assert_eq!(done[id].1, Terminal::Succeeded, "{id}");
    }
    assert_eq!(dispatches(r).len(), 64 + 1024, "every task dispatched exactly once");
    parents_finish_after_children(r, &done);
    assert_eq!(done.len(), 64 + 1024);
}

#[test]
fn sixty_four_children_appending_100_context_entries_each_lose_none() {
    let s = Scratch::new();
    let mut spec = String::from("[run]\nmax_concurrency = 64\n");
    for c in 0..64 {
        spec += &format!(
            "[[task]]\nid = \"c{c:02}\"\n\
             command = 'for i in $(seq 1 100); do orch ctx append counter \"$ORCH_TASK_ID-$i\" || exit 4; done'\n"
        );
    }
    let started = Instant::now();
    let run = s.run(&spec);
    eprintln!("64 x 100 appends: {:?}", started.elapsed());
    assert_eq!(run.code, 0);
    let updates = run.records.iter().filter(|r| matches!(r.event, Event::ContextUpdated(_))).count();
    assert_eq!(updates, 6400);
    assert!(!run.records.iter().any(|r| matches!(&r.event, Event::RequestAnswered(a) if a.error.is_some())));

    // Read after the run: the CLI folds the log.
    let get = s.orch(&["ctx", "get", "counter", "--json", "--run", &run.id]);
    assert_eq!(get.code, 0, "{}", get.stderr);
    let entries: Vec<String> = serde_json::from_str(get.stdout.trim()).unwrap();
    assert_eq!(entries.len(), 6400);
    let unique: BTreeSet<&str> = entries.iter().map(String::as_str).collect();
    assert_eq!(unique.len(), 6400, "no entry twice");
    for c in 0..64 {
        // Each child's entries are all there, in the order it appended them.
        let mine: Vec<&str> =
            entries.iter().map(String::as_str).filter(|e| e.starts_with(&format!("c{c:02}-"))).collect();
        let expected: Vec<String> = (1..=100).map(|i| format!("c{c:02}-{i}")).collect();
        assert_eq!(mine, expected.iter().map(String::as_str).collect::<Vec<_>>());
    }
}

#[test]
fn an_orchestrator_creates_db_api_ui_and_they_run_in_blocker_order() {
    let s = Scratch::new();
    // db is the slowest and ui the most urgent: only the blockers can order them so.
    let spec = format!(
        "[run]\nmax_concurrency = 8\n[[task]]\nid = \"orchestrator\"\ncommand = '''\
         orch task create db 'the database' -- sleep 0.2 && \
         orch task create api 'the api' --blocked-by db -- sleep 0.1 && \
         orch task create ui 'the ui' --blocked-by api --priority P0 -- true && \
         orch task list --ready --json > {}'''\n",
        s.at("ready.json")
    );
    let run = s.run(&spec);
    assert_eq!(run.code, 0);
    let r = &run.records;
    let order: Vec<String> = dispatches(r).into_iter().map(|(_, t)| t).collect();
    assert_eq!(order, ["orchestrator", "db", "api", "ui"]);
    let (exited, at) = (exits(r), |t: &str| seq_of(r, t, |e| matches!(e, Event::AttemptDispatched(d) if d.task == t)));
    assert!(exited["db"][0].0 < at("api"), "api dispatched only after db exited");
    assert!(exited["api"][0].0 < at("ui"), "ui dispatched only after api exited");
    let done = finished(r);
    assert!(["db", "api", "ui", "orchestrator"].iter().all(|t| done[*t].1 == Terminal::Succeeded));
    assert!(done["ui"].0 < done["orchestrator"].0);

    let ready: Value = serde_json::from_str(&std::fs::read_to_string(s.at("ready.json")).unwrap()).unwrap();
    let ready: Vec<&str> = ready.as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(ready, ["db"], "ready = pending with every blocker done");
}

#[test]
fn a_worker_delegates_three_subtasks_and_auto_completes_after_them() {
    let s = Scratch::new();
    let run =
        s.run("[[task]]\nid = \"w\"\ncommand = 'for i in 1 2 3; do orch task create w$i -- true || exit 9; done'\n");
    assert_eq!(run.code, 0);
    let r = &run.records;
    let delegated = seq_of(r, "w delegated", |e| matches!(e, Event::TaskDelegated(d) if d.task == "w"));
    assert!(exits(r)["w"][0].0 < delegated, "w delegates when its command exits 0");
    for (seq, t) in dispatches(r).into_iter().filter(|(_, t)| t != "w") {
        assert!(seq > delegated, "{t} runs once its parent delegated");
    }
    let done = finished(r);
    assert_eq!(done.keys().collect::<Vec<_>>(), ["w", "w1", "w2", "w3"]);
    parents_finish_after_children(r, &done);
}

#[test]
fn delegating_by_hand_releases_the_slot_so_children_run_under_cap_one() {
    let s = Scratch::new();
    let run = s.run(
        "[run]\nmax_concurrency = 1\n[[task]]\nid = \"w\"\ncommand = '''for i in 1 2 3; do \
         orch task create w$i -- true || exit 9; done; orch task update --status delegated || exit 8; \
         until orch task list --json | grep -q '\"children\":\\[3,3\\]'; do sleep 0.02; done'''\n",
    );
    assert_eq!(run.code, 0);
    let (r, done) = (&run.records, finished(&run.records));
    let w_exit = exits(r)["w"][0].0;
    for t in ["w1", "w2", "w3"] {
        assert!(done[t].0 < w_exit, "{t} ran and finished while w's command still ran");
    }
    parents_finish_after_children(r, &done);
}

#[test]
fn nested_delegation_three_levels_deep_completes_bottom_up() {
    let s = Scratch::new();
    let script = s.at("nest.sh");
    std::fs::write(
        &script,
        format!(
            "d=$1\n[ \"$d\" -gt 0 ] || exit 0\nfor k in a b; do orch task create \"$ORCH_TASK_ID.$k\" -- sh {script} \
             $((d-1)) || exit 9; done\n"
        ),
    )
    .unwrap();
    let run = s.run(&format!("[run]\nmax_concurrency = 4\n[[task]]\nid = \"top\"\ncommand = \"sh {script} 3\"\n"));
    assert_eq!(run.code, 0);
    let done = finished(&run.records);
    assert_eq!(done.len(), 1 + 2 + 4 + 8, "{done:?}");
    assert!(done.contains_key("top.a.b.a"), "three levels below top");
    assert!(done.values().all(|&(_, s)| s == Terminal::Succeeded));
    parents_finish_after_children(&run.records, &done);
    let last = done.iter().max_by_key(|(_, (seq, _))| *seq).unwrap().0;
    assert_eq!(last, "top", "the top auto-completes last");
}

#[test]
fn cycles_unknown_blockers_and_duplicate_ids_are_refused_with_exit_2_and_recorded() {
    let s = Scratch::new();
    let out = s.at("out.txt");
    // Each refused create prints its exit code; its stderr goes to out.txt as well.
    let tries = [
        "orch task create loop --blocked-by w -- true".to_string(), // its own parent
        format!(
            "orch task create mid -- 'exec >>{out} 2>&1; orch task create leaf --blocked-by w -- true; echo rc=$?'"
        ),
        "orch task create indirect --blocked-by after-w -- true".into(), // after-w waits for w
        "orch task create ghost --blocked-by nope -- true".into(),
        "orch task create self --blocked-by self -- true".into(),
        "orch task create after-w -- true".into(),
        "orch task create twin -- true && orch task create twin -- true".into(),
    ];
    let body: Vec<String> = tries.iter().map(|t| format!("{t}; echo \"rc=$?\"")).collect();
    let spec = format!(
        "[[task]]\nid = \"w\"\ncommand = '''exec >>{out} 2>&1; {}; orch ctx set socket-mode $(stat -c %a \"$ORCH_SOCKET\")'''\n\
         [[task]]\nid = \"after-w\"\nafter = [\"w\"]\ncommand = \"true\"\n",
        body.join("; ")
    );
    let run = s.run(&spec);
    assert_eq!(run.code, 0);
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(text.matches("rc=2").count(), 7, "{text}");
    for needle in [
        "task create loop: task \"loop\" cannot be blocked by \"w\": \"w\" is its parent",
        "task create leaf: task \"leaf\" cannot be blocked by \"w\": \"w\" is an ancestor",
        "task create indirect: blocking \"indirect\" on \"after-w\" makes a cycle",
        "task create ghost: blocker \"nope\" is not a task of this run",
        "task create self: task \"self\" cannot be blocked by itself",
        "task create after-w: a task with id \"after-w\" already exists",
        "task create twin: a task with id \"twin\" already exists",
    ] {
        assert!(text.contains(needle), "stderr names the problem: {needle:?} in\n{text}");
    }
    // Every refusal is recorded: the submission and its answer with the error.
    let subs = submissions(&run.records);
    let refused: Vec<&str> = subs.iter().filter(|(_, e)| e.is_some()).map(|(t, _)| t["id"].as_str().unwrap()).collect();
    assert_eq!(refused, ["loop", "indirect", "ghost", "self", "after-w", "twin", "leaf"]);
    let accepted: Vec<&str> =
        subs.iter().filter(|(_, e)| e.is_none()).map(|(t, _)| t["id"].as_str().unwrap()).collect();
    assert_eq!(accepted, ["mid", "twin"]);
    assert!(!finished(&run.records).contains_key("loop"));

    // The socket was owner-only while the run was live, and is gone after it.
    let mode = s.orch(&["ctx", "get", "socket-mode", "--run", &run.id]);
    assert_eq!(mode.stdout.trim(), "600", "{}", mode.stderr);
    assert!(!s.log(&run.id).with_file_name("control.sock").exists());
}

#[test]
fn racing_creates_of_one_id_accept_exactly_one() {
    let s = Scratch::new();
    let mut spec = String::from("[run]\nmax_concurrency = 8\n");
    for i in 0..8 {
        spec += &format!("[[task]]\nid = \"r{i}\"\ncommand = \"orch task create shared -- true\"\n");
    }
    let run = s.run(&spec);
    assert_eq!(run.code, 1, "the seven losers fail");
    let subs = submissions(&run.records);
    assert_eq!(subs.len(), 8);
    let winner: Vec<&str> =
        subs.iter().filter(|(_, e)| e.is_none()).map(|(t, _)| t["parent"].as_str().unwrap()).collect();
    assert_eq!(winner.len(), 1, "{subs:?}");
    assert!(subs.iter().filter_map(|(_, e)| e.as_deref()).all(|e| e.contains("\"shared\" already exists")));
    for (task, x) in exits(&run.records).into_iter().filter(|(t, _)| t.starts_with('r')) {
        let code = if task == winner[0] { 0 } else { 2 };
        assert_eq!(x[0].1, ExitStatus::Code(code), "{task}");
    }
}

#[test]
fn a_finished_run_refuses_changes_and_its_log_is_untouched() {
    let s = Scratch::new();
    let run = s.run("[[task]]\nid = \"a\"\ncommand = \"orch ctx set k v\"\n");
    assert_eq!(run.code, 0);
    let digest = || {
        let v = s.orch(&["verify", &run.id, "--json"]);
        assert_eq!(v.code, 0, "{}", v.stderr);
        serde_json::from_str::<Value>(&v.stdout).unwrap()["digest"].as_str().unwrap().to_string()
    };
    let before = digest();
    for args in [
        &["task", "create", "late", "--run", &run.id, "--", "true"][..],
        &["task", "update", "a", "--status", "failed", "--run", &run.id],
        &["ctx", "set", "k", "w", "--run", &run.id],
        &["ctx", "append", "list", "x", "--run", &run.id],
    ] {
        let o = s.orch(args);
        assert_eq!(o.code, 2, "{args:?}: {}", o.stderr);
        assert!(o.stderr.contains("is not running"), "{args:?} says so: {}", o.stderr);
    }
    assert_eq!(digest(), before, "nothing was written to the log");
    assert_eq!(read_records(&s.log(&run.id)).unwrap(), run.records);
    // Reads still work, from the log; without --run or a task around, which run is asked.
    assert_eq!(s.orch(&["ctx", "get", "k", "--run", &run.id]).stdout.trim(), "v");
    let o = s.orch(&["task", "create", "x", "--", "true"]);
    assert_eq!(o.code, 2);
    assert!(o.stderr.contains("--run"), "{}", o.stderr);
}
