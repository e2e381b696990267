//! The timeline's concurrency counts slots as the scheduler does: a task that delegated
//! while its command still runs gave its slot back, so the peak stays within the cap
//! (the busy time still counts its process).

use std::sync::Arc;

use orch_engine::core::Core;
use orch_engine::graph::Graph;
use orch_engine::record::{AttemptExited, Digest, Event, ExitStatus, Record, TaskSubmitted, TaskUpdated, UpdateStatus};
use orch_engine::spec::{parse, Format};
use orch_replay::rollup::Rollup;
use orch_replay::timeline::Timeline;

struct Run {
    core: Core,
    log: Vec<Record>,
    now: u64,
    request: u64,
}

impl Run {
    fn input(&mut self, event: Event) {
        self.now += 10;
        self.core.handle(self.now, event, &mut self.log).unwrap();
    }

    fn submit(&mut self, id: &str, parent: &str) {
        self.request += 1;
        let task = serde_json::json!({"id": id, "command": "x", "parent": parent}).to_string();
        self.input(Event::TaskSubmitted(TaskSubmitted { request: self.request, by: None, task }));
    }

    fn update(&mut self, task: &str, status: UpdateStatus) {
        self.request += 1;
        self.input(Event::TaskUpdated(TaskUpdated {
            request: self.request,
            by: None,
            task: task.into(),
            status,
            note: None,
        }));
    }

    fn exit(&mut self, task: &str) {
        let t = self.core.state().graph().unwrap().task(task).unwrap();
        let attempt = self.core.state().task(t).attempts;
        let (output, output_bytes, duration_ms) = (Digest::of(b""), 0, 1);
        let status = ExitStatus::Code(0);
        self.input(Event::AttemptExited(AttemptExited {
            task: task.into(),
            attempt,
            status,
            output,
            output_bytes,
            duration_ms,
        }));
    }
}

#[test]
fn a_task_that_delegated_while_running_holds_no_slot() {
    let toml = "[run]\nmax_concurrency = 2\n[[task]]\nid = \"planner\"\ncommand = \"p\"\n\
                [[task]]\nid = \"busy\"\ncommand = \"b\"\n";
    let spec = parse(toml, "t.toml", Format::Toml).unwrap();
    let graph = Arc::new(Graph::compile(spec, "t.toml").unwrap());
    let mut run = Run { core: Core::new(), log: Vec::new(), now: 0, request: 0 };
    run.core.start(graph, "sim", &mut run.log).unwrap();

    // planner and busy hold both slots; the planner delegates two children while it runs.
    run.submit("a", "planner");
    run.submit("b", "planner");
    run.update("planner", UpdateStatus::Delegated); // at 30: a takes the planner's slot
    run.exit("busy"); // at 40: b takes busy's
    run.exit("a"); // at 50
    run.exit("b"); // at 60
    run.exit("planner"); // at 70
    assert!(run.core.state().is_finished());

    let tl = Timeline::of(&run.log);
    // Three processes ran at once (planner, busy, a), but never more than two slots.
    assert_eq!(tl.peak_concurrency, 2, "concurrency: {:?}", tl.concurrency);
    assert!(tl.concurrency.iter().all(|&(_, n)| n <= 2), "{:?}", tl.concurrency);
    assert_eq!(tl.concurrency.last(), Some(&(70, 0)), "{:?}", tl.concurrency);
    // The planner's process kept the run busy from its dispatch to its exit.
    assert_eq!(tl.busy_ms, 70);
    assert_eq!(Rollup::of(&tl).peak_concurrency, 2);
}
