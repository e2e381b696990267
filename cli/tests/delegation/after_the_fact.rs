//! What a run records about its tasks after the fact: the causes a cancel's note leaves,
//! and when a task created at run time was ready.

use std::collections::BTreeMap;

use orch_engine::record::Event;
use serde_json::Value;

use super::Scratch;

/// `orch task update --status cancelled --note WHY` puts who and why in the cause: of a
/// task that had not started, and of a running one killed for it.
#[test]
fn a_cancel_with_a_note_says_who_and_why_in_the_causes() {
    let s = Scratch::new();
    let run = s.run(
        "[run]\nmax_concurrency = 3\n\
         [[task]]\nid = \"r\"\ncommand = \"sleep 30\"\n\
         [[task]]\nid = \"w\"\ncommand = \"true\"\nafter = [\"r\"]\n\
         [[task]]\nid = \"boss\"\ncommand = '''orch task update w --status cancelled --note 'not needed' && \
         orch task update r --status cancelled --note 'too slow' '''\n",
    );
    let causes: BTreeMap<String, Option<String>> = run
        .records
        .iter()
        .filter_map(|r| match &r.event {
            Event::TaskFinished(f) => Some((f.task.clone(), f.cause.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(causes["w"].as_deref(), Some("cancelled (w, by boss: not needed)"));
    assert_eq!(causes["r"].as_deref(), Some("killed by a cancel request (by boss: too slow)"));
    assert_eq!(causes["boss"], None);
}

/// A task created at run time cannot be ready before it exists, though the wave it joins
/// (here the run's own) opened long before: its queue wait counts from its creation.
#[test]
fn a_task_created_at_run_time_is_ready_from_its_creation() {
    let s = Scratch::new();
    let run = s.run(
        "[run]\nmax_concurrency = 2\n[[task]]\nid = \"a\"\n\
         command = \"sleep 0.3 && env -u ORCH_TASK_ID orch task create x -- true\"\n",
    );
    assert_eq!(run.code, 0);
    let submitted = run
        .records
        .iter()
        .find_map(|r| matches!(&r.event, Event::TaskSubmitted(_)).then_some(r.time_ms))
        .expect("x submitted");
    assert!(submitted >= 300, "created after a's sleep, at {submitted} ms");
    let show = s.orch(&["show", &run.id, "--json"]);
    let v: Value = serde_json::from_str(&show.stdout).unwrap();
    let x = v["tasks_detail"].as_array().unwrap().iter().find(|t| t["task"] == "x").unwrap().clone();
    assert_eq!(x["parent"], Value::Null, "a task of the run itself");
    assert_eq!(x["ready_ms"], submitted, "{x}");
    assert_eq!(x["queue_wait_ms"], x["dispatched_ms"].as_u64().unwrap() - submitted, "{x}");
}

/// A parent held by a child that failed under `hold` waits to be settled by hand; `orch
/// run` says so as it happens (it used to wait without a word, like a hang), then the
/// parent is settled here as a user would.
#[test]
fn a_stuck_parent_is_announced_with_how_to_settle_it() {
    let s = Scratch::new();
    let spec = "[[task]]\nid = \"lead\"\ncommand = '''\norch task create bad -- false\n'''\n\
                [[task]]\nid = \"settler\"\ncommand = '''\n\
                until orch task list | grep -q '^lead .*stuck'; do sleep 0.05; done\n\
                orch task update lead --status done --note 'bad is not needed'\n'''\n";
    std::fs::write(s.at("stuck.toml"), spec).unwrap();
    let out = s.orch(&["run", "stuck.toml"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let stuck = out.stdout.lines().find(|l| l.contains("stuck")).unwrap_or_else(|| panic!("{}", out.stdout));
    assert!(stuck.ends_with("stuck     lead (held: bad failed); it waits to be settled: orch task update lead --status done|failed|cancelled --run RUN"), "{stuck}");
    assert_eq!(out.stdout.matches("stuck     lead").count(), 1, "{}", out.stdout);
}

/// A relative `--cwd` given to `orch task create` is the caller's: a task working in
/// `sub/` that asks for `out` gets `sub/out` (the engine, started elsewhere, used to
/// resolve it from its own directory, where `out` does not exist).
#[test]
fn a_relative_cwd_of_a_created_task_is_taken_from_its_creator() {
    let s = Scratch::new();
    std::fs::create_dir_all(s.at("sub/out")).unwrap();
    let run = s.run(
        // (Run timeout: a child that cannot start leaves `lead` stuck for ever.)
        "[run]\ntimeout_ms = 20000\n[[task]]\nid = \"lead\"\ncwd = \"sub\"\n\
         command = '''orch task create kid --cwd out -- sh -c 'pwd > where' '''\n",
    );
    assert_eq!(run.code, 0);
    let at = std::fs::read_to_string(s.at("sub/out/where")).expect("the child ran in sub/out");
    assert_eq!(std::fs::canonicalize(at.trim()).unwrap(), std::fs::canonicalize(s.at("sub/out")).unwrap());
}
