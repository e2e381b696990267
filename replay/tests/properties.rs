//! Property tests of the scheduler over random graphs, waves, caps, outcomes and
//! completion orders: every invariant of DESIGN.md is checked against the log itself.

use std::collections::{BTreeMap, BTreeSet};

use orch_engine::record::{Event, Record, Terminal};
use orch_engine::scheduler::retry_delay_ms;
use orch_engine::sim::simulate;
use orch_engine::spec::{
    Backoff, Cancellation, Command, Downstream, Jitter, Priority, RetryPolicy, SimBehaviour, SimCancel, SimOutcome,
    Spec, TaskMore, TaskSpec, WaveFailure, WaveSpec,
};
use proptest::prelude::*;

/// Generation knobs for one random workflow.
#[derive(Debug, Clone)]
struct Shape {
    tasks: Vec<TaskShape>,
    wave_cuts: Vec<usize>,
    wave_caps: Vec<Option<u32>>,
    wave_policies: Vec<WaveFailure>,
    global_cap: u32,
    p0_cap: Option<u32>,
    downstream: Downstream,
    seed: u64,
    /// A run deadline, and cancel requests (at, task index or the run).
    run_timeout_ms: Option<u64>,
    cancels: Vec<(u64, Option<usize>)>,
    cancellation: Cancellation,
}

#[derive(Debug, Clone)]
struct TaskShape {
    deps: Vec<usize>,
    priority: Priority,
    duration_ms: u64,
    outcomes: Vec<SimOutcome>,
    max_attempts: u32,
    backoff: Backoff,
    base_ms: u64,
    parent_of_next: bool,
}

fn task_shape() -> impl Strategy<Value = TaskShape> {
    (
        prop::collection::vec(0usize..64, 0..3),
        prop::sample::select(Priority::ALL.to_vec()),
        prop::sample::select(vec![10u64, 20, 30]),
        prop::collection::vec(
            prop_oneof![4 => Just(SimOutcome::Succeed), 2 => Just(SimOutcome::Fail(3)), 1 => Just(SimOutcome::Hang)],
            1..4,
        ),
        1u32..4,
        prop::sample::select(vec![Backoff::Fixed, Backoff::Exponential]),
        prop::sample::select(vec![0u64, 5, 10, 25]),
        prop::bool::weighted(0.15),
    )
        .prop_map(|(deps, priority, duration_ms, outcomes, max_attempts, backoff, base_ms, parent_of_next)| {
            TaskShape { deps, priority, duration_ms, outcomes, max_attempts, backoff, base_ms, parent_of_next }
        })
}

fn shape(policies: Vec<WaveFailure>) -> impl Strategy<Value = Shape> {
    (
        prop::collection::vec(task_shape(), 1..24),
        prop::collection::vec(0usize..24, 0..3),
        prop::collection::vec(prop::option::of(1u32..3), 4),
        prop::collection::vec(prop::sample::select(policies), 4),
        1u32..5,
        prop::option::of(1u32..3),
        prop::sample::select(vec![Downstream::Block, Downstream::Continue]),
        any::<u64>(),
        (
            prop::option::weighted(0.2, 20u64..200),
            prop::collection::vec((0u64..150, prop::option::of(0usize..24)), 0..2),
            prop::sample::select(vec![Cancellation::Cascading, Cancellation::Isolated]),
        ),
    )
        .prop_map(|(tasks, wave_cuts, wave_caps, wave_policies, global_cap, p0_cap, downstream, seed, cancel)| {
            Shape {
                tasks,
                wave_cuts,
                wave_caps,
                wave_policies,
                global_cap,
                p0_cap,
                downstream,
                seed,
                run_timeout_ms: cancel.0,
                cancels: cancel.1,
                cancellation: cancel.2,
            }
        })
}

/// Builds a valid spec: dependencies only point backwards, root waves cut the task list
/// in order, and some tasks become the parent of the task declared after them.
fn build(shape: &Shape) -> Spec {
    let n = shape.tasks.len();
    // Ids sort differently from declaration order, so the id tie-break is exercised.
    let id = |i: usize| format!("t{:02}", (i * 7 + 3) % 97);
    let mut spec = Spec::default();
    spec.run.max_concurrency = Some(shape.global_cap);
    if let Some(cap) = shape.p0_cap {
        spec.run.priority_caps.insert(Priority::P0, cap);
    }
    spec.run.on_failure = shape.downstream;
    spec.run.seed = shape.seed;
    spec.run.timeout_ms = shape.run_timeout_ms;
    spec.run.cancellation = shape.cancellation;
    spec.run.sim_cancel =
        shape.cancels.iter().map(|&(at_ms, task)| SimCancel { at_ms, task: task.map(|t| id(t % n)) }).collect();
    let mut parent_of: Vec<Option<usize>> = vec![None; n];
    for i in 0..n.saturating_sub(1) {
        if shape.tasks[i].parent_of_next && parent_of[i].is_none() {
            parent_of[i + 1] = Some(i);
        }
    }
    for (i, t) in shape.tasks.iter().enumerate() {
        let deps: BTreeSet<usize> = if i == 0 || parent_of[i].is_some() {
            BTreeSet::new()
        } else {
            // Only root-level tasks declared earlier, so no dependency crosses into a child group.
            t.deps.iter().map(|d| d % i).filter(|&d| parent_of[d].is_none()).collect()
        };
        let hangs = t.outcomes.contains(&SimOutcome::Hang);
        spec.tasks.push(TaskSpec {
            id: id(i),
            command: Some(Command::Shell("true".into())),
            after: deps.into_iter().map(id).collect(),
            parent: parent_of[i].map(id),
            priority: t.priority,
            more: Some(Box::new(TaskMore {
                timeout_ms: hangs.then_some(t.duration_ms + 15),
                retry: RetryPolicy {
                    max_attempts: t.max_attempts,
                    backoff: t.backoff,
                    base_ms: t.base_ms,
                    max_ms: (t.backoff == Backoff::Exponential).then_some(t.base_ms * 3),
                    jitter: Jitter::None,
                },
                ..TaskMore::default()
            })),
            sim: Some(Box::new(SimBehaviour {
                duration_ms: t.duration_ms,
                outcomes: t.outcomes.clone(),
                stdout: Some(id(i)),
                ..SimBehaviour::default()
            })),
        });
    }
    // Root waves: cut the root-level tasks into consecutive runs.
    let roots: Vec<usize> = (0..n).filter(|&i| parent_of[i].is_none()).collect();
    let mut cuts: Vec<usize> = shape.wave_cuts.iter().map(|c| c % roots.len()).filter(|&c| c > 0).collect();
    cuts.sort_unstable();
    cuts.dedup();
    if !cuts.is_empty() {
        let mut start = 0;
        for (k, end) in cuts.into_iter().chain([roots.len()]).enumerate() {
            spec.waves.push(WaveSpec {
                tasks: roots[start..end].iter().map(|&i| id(i)).collect(),
                max_concurrency: shape.wave_caps[k % 4],
                on_failure: shape.wave_policies[k % 4],
                ..Default::default()
            });
            start = end;
        }
    }
    spec
}

fn run(spec: &Spec, order_seed: u64) -> Vec<Record> {
    let mut log = Vec::new();
    simulate(spec.clone(), order_seed, |rs: &[Record]| -> Result<(), std::io::Error> {
        log.extend_from_slice(rs);
        Ok(())
    })
    .expect("simulation completes");
    log
}

fn bytes(log: &[Record]) -> Vec<u8> {
    log.iter().flat_map(Record::encode).collect()
}

/// Checks every invariant of one log against the spec it ran.
fn check_invariants(spec: &Spec, log: &[Record]) {
    let graph = orch_engine::graph::Graph::compile(spec.clone(), "test").unwrap();
    let idx = |id: &str| graph.task(id).unwrap();
    let mut running: BTreeSet<u32> = BTreeSet::new();
    let mut finished: BTreeMap<u32, Terminal> = BTreeMap::new();
    let mut dispatched: BTreeSet<u32> = BTreeSet::new();
    let mut exit_time: BTreeMap<(u32, u32), u64> = BTreeMap::new();
    for r in log {
        match &r.event {
            Event::AttemptDispatched(d) => {
                let t = idx(&d.task);
                assert!(!finished.contains_key(&t), "{} dispatched after finishing", d.task);
                for &dep in graph.deps(t) {
                    let state = finished.get(&dep).copied();
                    match spec.run.on_failure {
                        Downstream::Block => assert_eq!(state, Some(Terminal::Succeeded), "{} before its dep", d.task),
                        Downstream::Continue => assert!(state.is_some(), "{} before its dep ended", d.task),
                    }
                }
                running.insert(t);
                dispatched.insert(t);
                // Caps, checked from what the log says runs at this point.
                assert!(running.len() as u32 <= graph.global_cap(), "global cap exceeded");
                for p in Priority::ALL {
                    let n = running.iter().filter(|&&x| graph.node(x).priority == p).count() as u32;
                    assert!(n <= graph.priority_cap(p), "{p:?} cap exceeded");
                }
                let w = graph.node(t).wave;
                if let Some(cap) = graph.wave(w).cap {
                    let n = running.iter().filter(|&&x| graph.node(x).wave == w).count() as u32;
                    assert!(n <= cap, "wave cap exceeded");
                }
            }
            Event::AttemptExited(e) => {
                running.remove(&idx(&e.task));
                exit_time.insert((idx(&e.task), e.attempt), r.time_ms);
            }
            Event::RetryScheduled(s) => {
                let t = idx(&s.task);
                let want = retry_delay_ms(&graph.task_spec(t).more().retry, spec.run.seed, &s.task, s.attempt - 1);
                assert_eq!(s.delay_ms, reference_delay(&graph.task_spec(t).more().retry, s.attempt - 1));
                assert_eq!(s.delay_ms, want);
                assert_eq!(s.at_ms, exit_time[&(t, s.attempt - 1)] + s.delay_ms);
            }
            Event::TaskFinished(f) => {
                let t = idx(&f.task);
                assert!(finished.insert(t, f.state).is_none(), "{} finished twice", f.task);
            }
            _ => {}
        }
    }
    assert!(matches!(log.last().map(|r| &r.event), Some(Event::RunFinished(_))), "the run finishes last");
    // A parent that released its children ends after every one of them — unless it was
    // cancelled on its own (isolated cancellation leaves its children running).
    let delegated: BTreeSet<u32> = log
        .iter()
        .filter_map(|r| match &r.event {
            Event::TaskDelegated(d) => Some(idx(&d.task)),
            _ => None,
        })
        .collect();
    let order: BTreeMap<u32, usize> = log
        .iter()
        .enumerate()
        .filter_map(|(seq, r)| match &r.event {
            Event::TaskFinished(f) => Some((idx(&f.task), seq)),
            _ => None,
        })
        .collect();
    for &p in &delegated {
        let isolated_cancel =
            spec.run.cancellation == Cancellation::Isolated && finished.get(&p) == Some(&Terminal::Cancelled);
        if isolated_cancel {
            continue;
        }
        let g = graph.node(p).children.unwrap();
        for &c in &graph.group(g).tasks {
            assert!(order[&c] < order[&p], "parent {} ended before its child {}", graph.id(p), graph.id(c));
        }
    }
    assert_eq!(finished.len(), graph.len(), "every task ends in exactly one terminal state");
    // Blocked descendants: under `block`, a task with a dependency that did not succeed
    // never ran and ended blocked (or was skipped/cancelled for another reason first).
    if spec.run.on_failure == Downstream::Block {
        for t in 0..graph.len() as u32 {
            if graph.deps(t).iter().any(|d| finished[d] != Terminal::Succeeded) {
                assert!(!dispatched.contains(&t));
                assert!(matches!(finished[&t], Terminal::Blocked | Terminal::Skipped | Terminal::Cancelled));
            }
        }
    }
    // fold(log) re-derives every decision: the live state and replay agree.
    orch_replay::redecide(log).expect("the log replays");
}

/// The retry policy written out independently of the scheduler (no jitter here).
fn reference_delay(policy: &RetryPolicy, failed_attempt: u32) -> u64 {
    match policy.backoff {
        Backoff::Fixed => policy.base_ms,
        Backoff::Exponential => {
            let mut d = policy.base_ms;
            for _ in 1..failed_attempt {
                d = d.saturating_mul(2);
            }
            d.min(policy.max_ms.unwrap_or(u64::MAX))
        }
    }
}

fn aggregates(log: &[Record]) -> Vec<String> {
    log.iter()
        .filter_map(|r| match &r.event {
            Event::RunFinished(f) => Some(format!("run {}", f.aggregate)),
            Event::WaveClosed(w) => Some(format!("{:?}/{} {}", w.parent, w.wave, w.aggregate)),
            Event::TaskFinished(f) => f.aggregate.map(|a| format!("{} {a}", f.task)),
            _ => None,
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold_for_any_graph_and_order(
        s in shape(vec![WaveFailure::FailParent, WaveFailure::WarnAndContinue, WaveFailure::StopWave]),
        order_seed in any::<u64>(),
    ) {
        let spec = build(&s);
        let log = run(&spec, order_seed);
        check_invariants(&spec, &log);
        // Same spec + same seed ⇒ byte-identical log.
        prop_assert_eq!(bytes(&log), bytes(&run(&spec, order_seed)));
    }

    #[test]
    fn aggregates_do_not_depend_on_completion_order(
        s in shape(vec![WaveFailure::FailParent, WaveFailure::WarnAndContinue]),
        a in any::<u64>(),
        b in any::<u64>(),
    ) {
        // Cancels and deadlines cut runs at a point in time, so what they catch running
        // depends on the order; without them, results must not.
        let s = Shape { run_timeout_ms: None, cancels: Vec::new(), ..s };
        let spec = build(&s);
        prop_assert_eq!(aggregates(&run(&spec, a)), aggregates(&run(&spec, b)));
    }
}
