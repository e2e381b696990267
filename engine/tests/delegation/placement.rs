//! Where run-level tasks go, and hooks under a cancel: placement in the implicit wave
//! versus declared waves, and a cancel that does not wait for hooks that are out.

use orch_engine::record::{Event, Terminal};
use orch_engine::state::Phase;

use super::{Run, PLANNER};

#[test]
fn a_task_added_at_the_run_level_starts_at_once_but_waits_behind_a_declared_wave() {
    // The run's children form one implicit wave, open while they run: a task added from
    // a shell joins it and is dispatched in the same step.
    let mut run = Run::start(PLANNER);
    assert_eq!(run.submit(None, serde_json::json!({"id": "hotfix", "command": "x"})), Ok(()));
    assert_eq!(run.dispatched(), ["planner", "hotfix"]);

    // Declared waves are barriers the user drew: a run-level task goes after them.
    let mut run = Run::start("[[task]]\nid = \"a\"\ncommand = \"x\"\n[[wave]]\ntasks = [\"a\"]\n");
    assert_eq!(run.submit(None, serde_json::json!({"id": "later", "command": "x"})), Ok(()));
    assert_eq!(run.dispatched(), ["a"]);
    run.exit("a", 0);
    assert_eq!(run.dispatched(), ["a", "later"]);
    run.exit("later", 0);
    assert!(run.core.state().is_finished());
    run.replays();
}

#[test]
fn a_cancel_does_not_wait_for_hooks_that_are_out() {
    use orch_engine::record::CancelRequested;
    let cancel = || Event::CancelRequested(CancelRequested { task: None, reason: "test".into() });
    // A wake hook out (never answered): the cancel still ends the run.
    let mut run = Run::start(
        "[[task]]\nid = \"p\"\ncommand = \"x\"\nhook = \"judge\"\n[[task]]\nid = \"a\"\nparent = \"p\"\ncommand = \"x\"\n\
         [[task]]\nid = \"b\"\nparent = \"p\"\ncommand = \"x\"\n[[wave]]\nparent = \"p\"\nwake = \"on_child_complete\"\n\
         tasks = [\"a\", \"b\"]\n",
    );
    run.exit("p", 0);
    run.exit("a", 0);
    assert_eq!(run.core.state().hooks_out().len(), 1, "a's completion woke p, whose hook runs");
    run.input(cancel());
    run.exit("b", -1);
    assert!(run.core.state().is_finished(), "finished without the hook's answer");
    assert_eq!(run.phase("p"), Phase::Done(Terminal::Cancelled));
    run.replays();

    // The finalize hook out: a cancel ends the run too.
    let mut run = Run::start("[run]\nbefore_finalize = \"audit\"\n[[task]]\nid = \"a\"\ncommand = \"x\"\n");
    run.exit("a", 0);
    assert_eq!(*run.core.state().finalize(), orch_engine::state::Finalize::Requested);
    run.input(cancel());
    assert!(run.core.state().is_finished());
    assert_eq!(run.core.state().outcome(), orch_engine::record::RunOutcome::Cancelled);
    run.replays();
}
