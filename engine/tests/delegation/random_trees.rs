//! Random delegation trees under simulation: same seed, same log; the log re-decides
//! identically; and whatever the completion order, every submitted task is accepted
//! and ends in the same state after the same number of attempts.

use orch_engine::record::{Event, Record};
use orch_engine::sim::simulate;
use orch_engine::spec::{SimBehaviour, SimOutcome, Spec, TaskMore, TaskSpec, WaveFailure};
use proptest::prelude::*;

/// A node: its duration, whether its attempt fails, and its children.
#[derive(Debug, Clone)]
struct Node {
    duration_ms: u64,
    fails: bool,
    children: Vec<Node>,
}

fn node() -> impl Strategy<Value = Node> {
    let leaf = (1u64..30, proptest::bool::weighted(0.15)).prop_map(|(duration_ms, fails)| Node {
        duration_ms,
        fails,
        children: Vec::new(),
    });
    leaf.prop_recursive(3, 24, 4, |inner| {
        (1u64..30, proptest::collection::vec(inner, 0..4)).prop_map(|(duration_ms, children)| Node {
            duration_ms,
            fails: false,
            children,
        })
    })
}

fn task(id: String, n: &Node) -> TaskSpec {
    let creates = n.children.iter().enumerate().map(|(i, c)| task(format!("{id}.{i}"), c)).collect();
    TaskSpec {
        id,
        // Failures fail the parent rather than hold it (nobody settles a simulated run).
        more: Some(Box::new(TaskMore { on_child_failure: Some(WaveFailure::FailParent), ..TaskMore::default() })),
        sim: Some(Box::new(SimBehaviour {
            duration_ms: n.duration_ms,
            outcomes: if n.fails { vec![SimOutcome::Fail(1)] } else { Vec::new() },
            creates,
            create_every_ms: 2,
            ..SimBehaviour::default()
        })),
        ..TaskSpec::default()
    }
}

fn run(spec: &Spec, order_seed: u64) -> (Vec<Record>, orch_engine::state::State) {
    let mut log = Vec::new();
    let state = simulate(spec.clone(), order_seed, |rs: &[Record]| -> Result<(), std::io::Error> {
        log.extend_from_slice(rs);
        Ok(())
    })
    .expect("the simulation finishes");
    (log, state)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn every_submitted_task_ends_the_same_whatever_the_order(
        roots in proptest::collection::vec(node(), 1..4),
        cap in 1u32..5,
        seeds in (0u64..1000, 0u64..1000),
    ) {
        let mut spec = Spec::default();
        spec.run.max_concurrency = Some(cap);
        spec.tasks = roots.iter().enumerate().map(|(i, n)| task(format!("t{i}"), n)).collect();
        let (log_a, state_a) = run(&spec, seeds.0);
        let (log_b, _) = run(&spec, seeds.0);
        prop_assert_eq!(&log_a, &log_b, "same spec and seed, same log");
        prop_assert!(orch_engine::recover::recover(&log_a).unwrap().pending.is_empty());
        prop_assert!(state_a.tasks().iter().all(|t| t.phase.is_done()));
        let submitted = log_a.iter().filter(|r| matches!(r.event, Event::TaskSubmitted(_))).count();
        prop_assert_eq!(state_a.tasks().len(), roots.len() + submitted, "every submission was accepted");

        let (_, state_c) = run(&spec, seeds.1);
        // Tasks are numbered in the order their submissions arrive, which the order
        // seed can change when parents submit side by side: compare by id.
        let by_id = |s: &orch_engine::state::State| {
            let g = s.graph().unwrap();
            let mut v: Vec<(String, orch_engine::state::Phase, u32)> =
                (0..g.len() as u32).map(|t| (g.id(t).to_string(), s.task(t).phase, s.task(t).attempts)).collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        };
        prop_assert_eq!(by_id(&state_a), by_id(&state_c));
    }
}
