//! Delegation in the sans-IO core: submissions, status updates, the context and hooks
//! fed to `Core` as inputs, and the decisions it answers with — validation (cycles
//! through parents, unknown blockers, duplicates), run-time ranks, held parents, and the
//! log re-deciding identically. No processes, no clock: the inputs are the test.

use std::sync::Arc;

use orch_engine::core::Core;
use orch_engine::graph::Graph;
use orch_engine::record::{
    AttemptExited, ContextOp, ContextUpdated, Digest, Event, ExitStatus, Record, TaskSubmitted, TaskUpdated, Terminal,
    UpdateStatus,
};
use orch_engine::recover::recover;
use orch_engine::spec::{parse, Format};
use orch_engine::state::{ContextValue, Phase};

mod edges;
mod placement;
mod random_trees;

/// A core driven by hand, keeping every record, with its own request numbering.
struct Run {
    core: Core,
    log: Vec<Record>,
    request: u64,
    now: u64,
}

impl Run {
    fn start(toml: &str) -> Run {
        let spec = parse(toml, "t.toml", Format::Toml).unwrap();
        let graph = Arc::new(Graph::compile(spec, "t.toml").unwrap());
        let mut run = Run { core: Core::new(), log: Vec::new(), request: 0, now: 0 };
        run.core.start(graph, "sim", &mut run.log).unwrap();
        run
    }

    /// Feeds one input; returns the decisions it caused.
    fn input(&mut self, event: Event) -> Vec<Event> {
        self.now += 1;
        let before = self.log.len();
        self.core.handle(self.now, event, &mut self.log).unwrap();
        self.log[before + 1..].iter().map(|r| r.event.clone()).collect()
    }

    /// Submits a task (JSON); the answer's error, if rejected.
    fn submit(&mut self, by: Option<&str>, task: serde_json::Value) -> Result<(), String> {
        self.request += 1;
        let request = self.request;
        let ev = TaskSubmitted { request, by: by.map(str::to_string), task: task.to_string() };
        answer(request, &self.input(Event::TaskSubmitted(ev)))
    }

    fn update(&mut self, task: &str, status: UpdateStatus) -> Result<(), String> {
        self.request += 1;
        let request = self.request;
        let ev = TaskUpdated { request, by: None, task: task.into(), status, note: None };
        answer(request, &self.input(Event::TaskUpdated(ev)))
    }

    fn ctx(&mut self, op: ContextOp, key: &str, value: &str) -> Result<(), String> {
        self.request += 1;
        let request = self.request;
        let ev = ContextUpdated { request, by: None, key: key.into(), op, value: value.into() };
        answer(request, &self.input(Event::ContextUpdated(ev)))
    }

    fn exit(&mut self, task: &str, code: i32) -> Vec<Event> {
        let attempt = self.core.state().task(self.idx(task)).attempts;
        self.input(Event::AttemptExited(AttemptExited {
            task: task.into(),
            attempt,
            status: ExitStatus::Code(code),
            output: Digest::of(b""),
            output_bytes: 0,
            duration_ms: 1,
        }))
    }

    fn idx(&self, task: &str) -> u32 {
        self.core.state().graph().unwrap().task(task).unwrap_or_else(|| panic!("no task {task}"))
    }

    fn phase(&self, task: &str) -> Phase {
        self.core.state().task(self.idx(task)).phase
    }

    fn dispatched(&self) -> Vec<String> {
        self.log
            .iter()
            .filter_map(|r| match &r.event {
                Event::AttemptDispatched(d) => Some(d.task.clone()),
                _ => None,
            })
            .collect()
    }

    /// The log re-decides identically (what `orch replay` checks).
    fn replays(&self) {
        let recovered = recover(&self.log).unwrap();
        assert!(recovered.pending.is_empty());
    }
}

fn answer(request: u64, decisions: &[Event]) -> Result<(), String> {
    match decisions.first() {
        Some(Event::RequestAnswered(a)) if a.request == request => a.error.clone().map_or(Ok(()), Err),
        other => panic!("the first decision after a request is its answer, got {other:?}"),
    }
}

const PLANNER: &str = r#"
[run]
max_concurrency = 2
[[task]]
id = "planner"
command = "plan"
[[task]]
id = "after-planner"
command = "x"
after = ["planner"]
"#;

#[test]
fn submissions_are_checked_and_every_answer_is_recorded() {
    let mut run = Run::start(PLANNER);
    let p = Some("planner");
    assert_eq!(run.submit(p, serde_json::json!({"id": "db", "command": "x", "parent": "planner"})), Ok(()));
    let dup = run.submit(p, serde_json::json!({"id": "db", "command": "x", "parent": "planner"}));
    assert!(dup.unwrap_err().contains("already exists"));
    let unknown =
        run.submit(p, serde_json::json!({"id": "api", "command": "x", "after": ["nope"], "parent": "planner"}));
    assert_eq!(unknown.unwrap_err(), "blocker \"nope\" is not a task of this run");
    let own = run.submit(p, serde_json::json!({"id": "me", "command": "x", "after": ["me"], "parent": "planner"}));
    assert!(own.unwrap_err().contains("blocked by itself"));
    let bad = run.submit(p, serde_json::json!({"id": "has space", "command": "x", "parent": "planner"}));
    assert!(bad.unwrap_err().contains("whitespace"));
    let no_parent = run.submit(p, serde_json::json!({"id": "orphan", "command": "x", "parent": "ghost"}));
    assert!(no_parent.unwrap_err().contains("\"ghost\" is not a task"));

    // Blocked by its own parent, or by a task that waits for the parent: a cycle.
    let by_parent =
        run.submit(p, serde_json::json!({"id": "c1", "command": "x", "after": ["planner"], "parent": "planner"}));
    assert!(by_parent.unwrap_err().contains("cycle"), "a child cannot wait for its parent to finish");
    let indirect =
        run.submit(p, serde_json::json!({"id": "c2", "command": "x", "after": ["after-planner"], "parent": "planner"}));
    let why = indirect.unwrap_err();
    assert!(why.contains("cycle") && why.contains("\"after-planner\" → \"planner\""), "{why}");
    // Two levels down: a grandchild blocked by its grandparent.
    assert_eq!(run.submit(p, serde_json::json!({"id": "mid", "command": "x", "parent": "planner"})), Ok(()));
    let deep = run.submit(None, serde_json::json!({"id": "g", "command": "x", "after": ["planner"], "parent": "mid"}));
    assert!(deep.unwrap_err().contains("cycle"));
    // A sibling as blocker is fine.
    assert_eq!(
        run.submit(p, serde_json::json!({"id": "api", "command": "x", "after": ["db"], "parent": "planner"})),
        Ok(())
    );

    // Every request, accepted or not, left an input and an answer in the log.
    let answers = run.log.iter().filter(|r| matches!(r.event, Event::RequestAnswered(_))).count();
    assert_eq!(answers as u64, run.request);
    run.replays();

    // The planner exits: it delegates, its children run (db before api), it completes.
    run.exit("planner", 0);
    assert_eq!(run.phase("planner"), Phase::Delegated);
    run.exit("db", 0);
    run.exit("mid", 0);
    run.exit("api", 0);
    assert_eq!(run.phase("planner"), Phase::Done(Terminal::Succeeded));
    assert_eq!(run.dispatched(), ["planner", "db", "mid", "api", "after-planner"]);
    run.exit("after-planner", 0);
    assert!(run.core.state().is_finished());
    run.replays();

    // After the finish, the parent takes no more children.
    let mut run = Run::start(PLANNER);
    run.exit("planner", 0);
    let late = run.submit(None, serde_json::json!({"id": "late", "command": "x", "parent": "planner"}));
    assert!(late.unwrap_err().contains("already finished"));
}

#[test]
fn ids_submitted_later_take_their_place_in_dispatch_order() {
    // Two slots: the planner and `busy` hold them; the planner's children wait for it.
    let mut run = Run::start(
        "[run]\nmax_concurrency = 2\n[[task]]\nid = \"planner\"\ncommand = \"p\"\n[[task]]\nid = \"busy\"\ncommand = \"b\"\n",
    );
    for id in ["m", "z", "a", "k"] {
        assert_eq!(
            run.submit(Some("planner"), serde_json::json!({"id": id, "command": "x", "parent": "planner"})),
            Ok(())
        );
    }
    // Delegating while running releases the planner's slot: one child can start, the
    // first by id — `a`, submitted third, which moved the ranks of `m` and `z`.
    assert_eq!(run.update("planner", UpdateStatus::Delegated), Ok(()));
    assert_eq!(run.dispatched(), ["busy", "planner", "a"], "the planner's slot went to its first child");
    assert_eq!(run.core.state().running(), 2, "busy and a hold the slots; the planner runs outside them");
    run.exit("busy", 0);
    run.exit("a", 0);
    run.exit("k", 0);
    run.exit("m", 0);
    assert_eq!(run.dispatched(), ["busy", "planner", "a", "k", "m", "z"]);
    // The planner still runs: it completes once its command exits too.
    run.exit("z", 0);
    assert_eq!(run.phase("planner"), Phase::Running { attempt: 1, kill: None });
    run.exit("planner", 0);
    assert_eq!(run.phase("planner"), Phase::Done(Terminal::Succeeded));
    assert!(run.core.state().is_finished());
    run.replays();
}

#[test]
fn a_failed_child_holds_its_parent_until_someone_settles_it() {
    let mut run = Run::start(PLANNER);
    for id in ["ok", "bad"] {
        assert_eq!(
            run.submit(Some("planner"), serde_json::json!({"id": id, "command": "x", "parent": "planner"})),
            Ok(())
        );
    }
    run.exit("planner", 0);
    run.exit("ok", 0);
    run.exit("bad", 3);
    // Every child is done, one failed: the parent stays delegated, stuck.
    assert_eq!(run.phase("planner"), Phase::Delegated);
    assert!(run.core.state().is_stuck(run.idx("planner")));
    assert_eq!(orch_engine::view::status(run.core.state(), run.idx("planner")), "stuck");
    // A running task cannot be settled by hand; a stuck one can.
    assert!(run.update("bad", UpdateStatus::Done).unwrap_err().contains("already finished"));
    assert_eq!(run.update("planner", UpdateStatus::Done), Ok(()));
    assert_eq!(run.phase("planner"), Phase::Done(Terminal::Succeeded));
    run.exit("after-planner", 0);
    assert!(run.core.state().is_finished());
    run.replays();
}

#[test]
fn a_child_cancelled_by_hand_holds_its_parent_and_a_cancelled_parent_takes_its_children() {
    let mut run = Run::start(PLANNER);
    for id in ["a", "b"] {
        assert_eq!(
            run.submit(Some("planner"), serde_json::json!({"id": id, "command": "x", "parent": "planner"})),
            Ok(())
        );
    }
    run.exit("planner", 0);
    // `a` runs; cancelling it kills it; the parent is held once `b` is done.
    assert_eq!(run.update("a", UpdateStatus::Cancelled), Ok(()));
    assert!(run.log.iter().any(|r| matches!(&r.event, Event::AttemptKillRequested(k) if k.task == "a")));
    run.exit("a", -1);
    run.exit("b", 0);
    assert!(run.core.state().is_stuck(run.idx("planner")));
    assert!(run.update("a", UpdateStatus::Cancelled).unwrap_err().contains("already finished"));

    // Cancelling a delegated parent (cascading, the default) takes its running children
    // with it, and it ends after them, not stuck.
    let mut run = Run::start(PLANNER);
    assert_eq!(
        run.submit(Some("planner"), serde_json::json!({"id": "c", "command": "x", "parent": "planner"})),
        Ok(())
    );
    run.exit("planner", 0);
    assert_eq!(run.update("planner", UpdateStatus::Cancelled), Ok(()));
    assert_eq!(run.phase("planner"), Phase::Delegated, "it waits for its child to be killed");
    run.exit("c", -1);
    assert_eq!(run.phase("c"), Phase::Done(Terminal::Cancelled));
    assert_eq!(run.phase("planner"), Phase::Done(Terminal::Cancelled));
    run.replays();
}

#[test]
fn updates_by_hand_follow_the_lifecycle() {
    let mut run = Run::start(PLANNER);
    assert!(run.update("planner", UpdateStatus::Done).unwrap_err().contains("is running"));
    assert!(run.update("after-planner", UpdateStatus::Delegated).unwrap_err().contains("only a running task"));
    assert_eq!(run.update("after-planner", UpdateStatus::Reviewing), Ok(()));
    assert_eq!(run.core.state().task(run.idx("after-planner")).mark, Some(UpdateStatus::Reviewing));
    // A pending task marked failed blocks its dependents like any failure.
    assert_eq!(run.update("after-planner", UpdateStatus::Failed), Ok(()));
    assert_eq!(run.phase("after-planner"), Phase::Done(Terminal::Failed));
    assert!(run.update("ghost", UpdateStatus::Done).unwrap_err().contains("no task"));
    run.exit("planner", 0);
    assert!(run.core.state().is_finished());
    run.replays();
}

#[test]
fn the_context_is_a_fold_of_its_updates() {
    let mut run = Run::start(PLANNER);
    for i in 0..3 {
        assert_eq!(run.ctx(ContextOp::Append, "found", &format!("item-{i}")), Ok(()));
    }
    assert_eq!(run.ctx(ContextOp::Set, "status", "green"), Ok(()));
    assert!(run.ctx(ContextOp::Append, "status", "x").unwrap_err().contains("single value"));
    assert!(run.ctx(ContextOp::Set, "bad key", "x").unwrap_err().contains("without whitespace"));
    let context = run.core.state().context();
    assert_eq!(context["found"], ContextValue::List(vec!["item-0".into(), "item-1".into(), "item-2".into()]));
    assert_eq!(context["status"], ContextValue::Value("green".into()));
    assert_eq!(
        orch_engine::view::context_json(run.core.state(), Some("found")),
        serde_json::json!(["item-0", "item-1", "item-2"])
    );
    run.replays();
}

#[test]
fn the_context_is_bounded_as_a_whole() {
    use orch_engine::state::{CONTEXT_ITEM_OVERHEAD as ITEM, MAX_CONTEXT_BYTES, MAX_CONTEXT_VALUE};
    let mut run = Run::start(PLANNER);
    let big = "x".repeat(MAX_CONTEXT_VALUE);
    // Whole values (keys and a per-value overhead count too) up to the last that fits...
    let entry = 3 + ITEM + MAX_CONTEXT_VALUE;
    let fit = MAX_CONTEXT_BYTES / entry;
    for i in 0..fit {
        assert_eq!(run.ctx(ContextOp::Set, &format!("k{i:02}"), &big), Ok(()), "value {i}");
    }
    // ...then exactly the rest, as the first item of the 4-byte key `more`...
    let rest = MAX_CONTEXT_BYTES - fit * entry - 4 - ITEM;
    assert_eq!(run.ctx(ContextOp::Append, "more", &big[..rest]), Ok(()));
    // ...and nothing more, whatever the op (refused, and recorded as refused): not even
    // an empty item.
    let over = run.ctx(ContextOp::Append, "more", "").unwrap_err();
    assert!(over.contains("over its limit"), "{over}");
    assert!(run.ctx(ContextOp::Set, "z", "").unwrap_err().contains("over its limit"));
    assert!(!run.core.state().context().contains_key("z"));
    // The kind of a key is checked first: appending to a single value says so.
    assert!(run.ctx(ContextOp::Append, "k01", "").unwrap_err().contains("single value"));
    // Replacing a value frees what it held: the space can be used again.
    assert_eq!(run.ctx(ContextOp::Set, "k00", "small"), Ok(()));
    assert_eq!(run.ctx(ContextOp::Append, "more", ""), Ok(()));
    run.replays();
}
