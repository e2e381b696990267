//! The image of a compiled graph loads back to the same graph (random specs, grown or
//! not), and every malformed image is refused with a reason.

use proptest::prelude::*;

use super::image::{column, numbers, pack, unpack, GraphImage, NONE};
use super::Graph;
use crate::spec::{Command, OnStop, Priority, Spec, TaskMore, TaskSpec, WakePolicy, WaveFailure, WaveSpec};

/// Every part of the two graphs but the task specs (a loaded graph has none).
fn assert_same(a: &Graph, b: &Graph) {
    assert_eq!(a.nodes, b.nodes, "nodes");
    assert_eq!(a.groups, b.groups, "groups");
    assert_eq!(a.waves, b.waves, "waves");
    assert_eq!((&a.deps_at, &a.deps), (&b.deps_at, &b.deps), "after rows");
    assert_eq!((&a.dependents_at, &a.dependents), (&b.dependents_at, &b.dependents), "dependents");
    assert_eq!(a.late_dependents, b.late_dependents, "late dependents");
    assert_eq!(a.by_id, b.by_id, "id order");
    assert_eq!((&a.ids.text, &a.ids.at), (&b.ids.text, &b.ids.at), "ids");
    assert_eq!((&a.titles, &a.costs), (&b.titles, &b.costs), "titles and costs");
    assert_eq!(a.spec.run, b.spec.run, "run settings");
    for t in 0..a.len() as u32 {
        assert_eq!(b.task(a.id(t)), Some(t), "lookup of {}", a.id(t));
    }
}

fn task(id: &str) -> TaskSpec {
    TaskSpec { id: id.into(), command: Some(Command::Shell("true".into())), ..TaskSpec::default() }
}

/// A spec of `n` tasks from random choices: `after` only along a random order (so it
/// may point forward in the file), parents among earlier tasks, waves partitioning the
/// run's children, and every setting the image carries.
fn arbitrary_spec() -> impl Strategy<Value = Spec> {
    (1usize..24)
        .prop_flat_map(|n| {
            let task = (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..3), any::<u16>());
            let order = Just((0..n).collect::<Vec<usize>>()).prop_shuffle();
            (proptest::collection::vec(task, n), order, 0usize..3)
        })
        .prop_map(|(choices, order, wave_count)| {
            let n = choices.len();
            let mut pos = vec![0; n];
            for (p, &t) in order.iter().enumerate() {
                pos[t] = p;
            }
            let id = |i: usize| format!("{}{i}", ["z", "a", "m"][i % 3]);
            let mut tasks: Vec<TaskSpec> = (0..n).map(|i| task(&id(i))).collect();
            for (i, (parent, after, bits)) in choices.iter().enumerate() {
                let t = &mut tasks[i];
                if i > 0 && parent % 3 == 0 {
                    t.parent = Some(id(*parent as usize % i));
                }
                let mut after: Vec<usize> =
                    after.iter().map(|&b| b as usize % n).filter(|&j| pos[j] < pos[i]).collect();
                after.dedup();
                t.after = after.into_iter().map(id).collect();
                t.priority = [Priority::P0, Priority::P1, Priority::P2, Priority::P3][(bits & 3) as usize];
                let failures =
                    [WaveFailure::FailParent, WaveFailure::WarnAndContinue, WaveFailure::StopWave, WaveFailure::Hold];
                let more = TaskMore {
                    hook: (bits & 4 != 0).then(|| Command::Shell("echo continue".into())),
                    on_stop: if bits & 8 != 0 { OnStop::FinishRunning } else { OnStop::CancelRunning },
                    on_child_failure: match (bits >> 4) % 5 {
                        0 => None,
                        k => Some(failures[k as usize - 1]),
                    },
                    wake_policy: [None, Some(WakePolicy::OnWaveComplete), Some(WakePolicy::OnChildComplete)]
                        [((bits >> 7) % 3) as usize],
                    title: (bits & 512 != 0).then(|| format!("title of {i}")),
                    cost: (bits & 1024 != 0).then_some(u64::from(*bits)),
                    ..TaskMore::default()
                };
                if more != TaskMore::default() {
                    t.more = Some(Box::new(more));
                }
            }
            // A task with children may be a pure group.
            for (i, (_, _, bits)) in choices.iter().enumerate() {
                if bits & 2048 != 0 && tasks.iter().any(|t| t.parent.as_deref() == Some(id(i).as_str())) {
                    tasks[i].command = None;
                }
            }
            let roots: Vec<usize> = (0..n).filter(|&i| tasks[i].parent.is_none()).collect();
            let waves = (0..wave_count)
                .map(|w| WaveSpec {
                    tasks: roots.iter().filter(|&&i| i % wave_count == w).map(|&i| id(i)).collect(),
                    max_concurrency: (w == 1).then_some(2),
                    on_failure: if w == 0 { WaveFailure::WarnAndContinue } else { WaveFailure::FailParent },
                    ..WaveSpec::default()
                })
                .filter(|w| !w.tasks.is_empty())
                .collect();
            Spec { tasks, waves, ..Spec::default() }
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn an_image_loads_back_to_the_graph_it_was_made_of(spec in arbitrary_spec(), extra in any::<u8>()) {
        // About half the random specs are valid (the rest wait on their own parents).
        let Ok(compiled) = Graph::compile(spec, "t") else { return Ok(()) };
        let image = GraphImage::of(&compiled);
        prop_assert!(image.encoded_len_bound() >= rmp_serde::to_vec(&image).expect("encodes").len());
        let mut loaded = Graph::load(&image).expect("the image of a compiled graph loads");
        prop_assert!(!loaded.has_tasks() || loaded.is_empty());
        assert_same(&compiled, &loaded);
        prop_assert!(image.matches(&compiled));

        // Both grow alike: a task submitted under some parent, after some task.
        let mut compiled = compiled;
        let n = compiled.len() as u32;
        let parent = (extra % 2 == 0).then_some(u32::from(extra) % n);
        let mut new = task("submitted");
        new.after = vec![compiled.id(u32::from(extra) % n).to_string()];
        let a = compiled.add_task(new.clone(), parent, None);
        let b = loaded.add_task(new, parent, None);
        prop_assert_eq!(a, b);
        assert_same(&compiled, &loaded);
    }
}

/// A small valid image: a root wave of two tasks, a parent with a child, an after edge.
fn image() -> GraphImage {
    let mut lead = task("lead");
    lead.command = None;
    let mut child = task("child");
    child.parent = Some("lead".into());
    let mut b = task("b");
    b.after = vec!["a".into()];
    let spec = Spec {
        tasks: vec![task("a"), b, lead, child],
        waves: vec![WaveSpec { tasks: vec!["a".into(), "b".into(), "lead".into()], ..WaveSpec::default() }],
        ..Spec::default()
    };
    GraphImage::of(&Graph::compile(spec, "t").expect("valid"))
}

fn refused(change: impl FnOnce(&mut GraphImage), reason: &str) {
    let mut image = image();
    change(&mut image);
    match Graph::load(&image) {
        Err(e) => assert!(e.contains(reason), "{e:?} does not say {reason:?}"),
        Ok(_) => panic!("loaded an image that should say {reason:?}"),
    }
}

fn set(col: &mut serde_bytes::ByteBuf, at: usize, value: u32) {
    let mut v = numbers(col, "test").expect("column");
    v[at] = value;
    *col = column(v);
}

#[test]
fn malformed_images_are_refused_with_a_reason() {
    assert!(Graph::load(&image()).is_ok());
    refused(|i| i.run = "[".into(), "run settings");
    refused(|i| i.id_ends.pop().map(drop).unwrap_or(()), "not a multiple of 4");
    refused(|i| i.ids = "aabbleadchild".into(), "repeats");
    refused(|i| set(&mut i.id_ends, 0, 99), "character boundary");
    refused(|i| i.ids.push('x'), "belong to no task");
    refused(|i| set(&mut i.parents, 2, 3), "lead back");
    refused(|i| set(&mut i.parents, 2, 2), "its own parent");
    refused(|i| set(&mut i.parents, 0, 7), "names task 7 of 4");
    refused(|i| i.parents = column([NONE; 3]), "3 entries for 4 tasks");
    refused(|i| set(&mut i.deps, 0, 1), "not sorted, unique and free of itself");
    refused(|i| set(&mut i.dep_ends, 3, 5), "out of order");
    refused(
        |i| {
            // a after b, b after a.
            i.dep_ends = column([1, 2, 2, 2]);
            i.deps = column([1, 0]);
        },
        "loop of `after`",
    );
    refused(|i| i.facts[0] = 0xff, "facts");
    refused(|i| i.facts[0] &= !4, "task 0 has nothing to run and no children");
    refused(|i| i.facts[1] = 0x0f, "facts");
    refused(|i| i.facts.push(0), "facts column");
    refused(|i| set(&mut i.by_id, 0, 1), "twice");
    refused(
        |i| {
            let mut v = numbers(&i.by_id, "t").expect("column");
            v.swap(0, 1);
            i.by_id = column(v);
        },
        "not sorted",
    );
    refused(|i| i.titles = vec![(9, "x".into())], "titles");
    refused(|i| i.costs = vec![(1, 1), (1, 2)], "costs");
    refused(|i| i.waves[0].tasks = column([0, 1]), "2 of the 3 children");
    refused(|i| i.waves[0].tasks = column([0, 1, 3]), "not a child of the wave's parent");
    refused(|i| i.waves[0].tasks = column([1, 0, 2]), "out of order");
    refused(|i| i.waves[0].tasks = column([]), "empty");
    refused(|i| i.waves[0].cap = Some(0), "capped at 0");
    refused(|i| i.waves[0].parent = 9, "names task 9");
}

#[test]
fn a_forward_after_passes_the_loop_search() {
    // b is declared first but runs after a: not declaration order, still no loop.
    let mut b = task("b");
    b.after = vec!["a".into()];
    let spec = Spec { tasks: vec![b, task("a")], ..Spec::default() };
    let compiled = Graph::compile(spec, "t").expect("valid");
    assert_same(&compiled, &Graph::load(&GraphImage::of(&compiled)).expect("loads"));
}

#[test]
fn every_node_fact_packs_and_unpacks() {
    use super::Node;
    let failures = [
        None,
        Some(WaveFailure::FailParent),
        Some(WaveFailure::WarnAndContinue),
        Some(WaveFailure::StopWave),
        Some(WaveFailure::Hold),
    ];
    let wakes = [None, Some(WakePolicy::OnWaveComplete), Some(WakePolicy::OnChildComplete)];
    let mut seen = std::collections::BTreeSet::new();
    for priority in [Priority::P0, Priority::P1, Priority::P2, Priority::P3] {
        for (runs, hook) in [(false, false), (false, true), (true, false), (true, true)] {
            for on_stop in [OnStop::CancelRunning, OnStop::FinishRunning] {
                for child_failure in failures {
                    for child_wake in wakes {
                        let node = Node { priority, runs, hook, on_stop, child_failure, child_wake, ..Node::default() };
                        let bytes = pack(&node);
                        assert_eq!(unpack(bytes), Some(node), "{bytes:?}");
                        assert!(seen.insert(bytes), "two nodes pack alike");
                    }
                }
            }
        }
    }
}
