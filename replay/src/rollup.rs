//! Run rollups: the figures beyond counts that post-mortems ask for — busy time, peak
//! concurrency, failures by wave policy, the critical path, queue wait per task and the
//! declared cost — all read off the `Timeline` fold, so they hold for live runs too.
//!
//! The critical path is the longest chain of recorded durations through the workflow's
//! constraints: a task's own span (first dispatch → end of its last attempt, retries and
//! backoff included) follows the latest of its `after` dependencies, the previous wave of
//! its group (the barrier), and its parent's own command; a parent finishes after its
//! children. Time spent queued for a cap is not on the path: it is what queue wait shows.

use std::collections::BTreeMap;

use orch_engine::graph::{Graph, TaskIdx};
use orch_engine::spec::WaveFailure;
use serde::Serialize;

use crate::timeline::Timeline;

/// The rollups of one run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Rollup {
    /// Tasks in the run: the spec's and those created at run time.
    pub tasks: u64,
    pub busy_ms: u64,
    pub peak_concurrency: u32,
    /// The global cap, when there is one.
    pub cap: Option<u32>,
    /// Failed tasks (failed, timed out, exhausted, blocked) by their wave's `on_failure`.
    pub failures_by_policy: BTreeMap<&'static str, u64>,
    pub critical_path_ms: u64,
    /// Task ids on the critical path, first to last.
    pub critical_path: Vec<String>,
    /// Per dispatched task, ready → first dispatch, in declaration order.
    pub queue_wait: Vec<QueueWait>,
    pub queue_wait_ms_total: u64,
    pub queue_wait_ms_max: u64,
    /// Sum of the tasks' declared `cost`; None when no task declares one.
    pub cost_estimate: Option<u64>,
}

/// How long one task waited between becoming ready and being dispatched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueWait {
    pub task: String,
    pub ready_ms: u64,
    pub dispatched_ms: u64,
    pub wait_ms: u64,
}

impl Rollup {
    pub fn of(tl: &Timeline) -> Rollup {
        let Some(graph) = tl.graph.as_deref() else { return Rollup::default() };
        let mut r = Rollup {
            tasks: graph.len() as u64,
            busy_ms: tl.busy_ms,
            peak_concurrency: tl.peak_concurrency,
            cap: Some(graph.global_cap()).filter(|&c| c != u32::MAX),
            ..Rollup::default()
        };
        for p in [WaveFailure::FailParent, WaveFailure::WarnAndContinue, WaveFailure::StopWave] {
            r.failures_by_policy.insert(policy_name(p), 0);
        }
        for (t, task) in tl.tasks.iter().enumerate() {
            if task.state.is_some_and(|s| s.is_failure()) {
                let policy = graph.wave(graph.node(t as TaskIdx).wave).on_failure;
                *r.failures_by_policy.entry(policy_name(policy)).or_default() += 1;
            }
            if let (Some(ready), Some(dispatched)) = (task.ready_ms, task.first_dispatch_ms) {
                let wait_ms = dispatched.saturating_sub(ready);
                r.queue_wait_ms_total += wait_ms;
                r.queue_wait_ms_max = r.queue_wait_ms_max.max(wait_ms);
                let task = graph.id(t as TaskIdx).to_string();
                r.queue_wait.push(QueueWait { task, ready_ms: ready, dispatched_ms: dispatched, wait_ms });
            }
        }
        let costs: Vec<u64> = graph.costs().collect();
        r.cost_estimate = (!costs.is_empty()).then(|| costs.iter().fold(0u64, |sum, &c| sum.saturating_add(c)));
        let (length, path) = critical_path(graph, tl);
        r.critical_path_ms = length;
        r.critical_path = path.into_iter().map(|t| graph.id(t).to_string()).collect();
        r
    }
}

/// The wave policy's name as the workflow file spells it.
pub fn policy_name(p: WaveFailure) -> &'static str {
    match p {
        WaveFailure::FailParent => "fail_parent",
        WaveFailure::WarnAndContinue => "warn_and_continue",
        WaveFailure::StopWave => "stop_wave",
        WaveFailure::Hold => "hold",
    }
}

/// The critical path: its length in ms and its tasks (those that ran), first to last.
///
/// A longest-path pass over a constraint DAG with, per task, an *own* node (weight: its
/// own span) and a *fin* node (weight 0), plus one node per wave (the barrier). Ties go
/// to the lowest-numbered predecessor, so the path is deterministic.
pub fn critical_path(graph: &Graph, tl: &Timeline) -> (u64, Vec<TaskIdx>) {
    let n = graph.len();
    let nodes = 2 * n + graph.waves.len();
    // Node numbers as u32 (half the memory, and at a million tasks the memory is the
    // cost: fresh pages are zeroed by the kernel); a graph too big for them is refused.
    if nodes >= NONE as usize {
        return (0, vec![]);
    }
    let own = |t: TaskIdx| 2 * t;
    let fin = |t: TaskIdx| 2 * t + 1;
    let wave_node = |w: u32| 2 * n as u32 + w;
    let mut edges: Vec<(u32, u32)> = Vec::with_capacity(4 * n);
    for t in 0..n as TaskIdx {
        let node = graph.node(t);
        for &d in graph.deps(t) {
            edges.push((fin(d), own(t)));
        }
        let wave = graph.wave(node.wave);
        let group = graph.group(wave.group);
        if wave.ordinal > 0 {
            edges.push((wave_node(group.waves[wave.ordinal as usize - 1]), own(t)));
        } else if let Some(p) = group.parent {
            edges.push((own(p), own(t)));
        }
        edges.push((own(t), fin(t)));
        edges.push((fin(t), wave_node(node.wave)));
        if let Some(p) = group.parent {
            edges.push((wave_node(node.wave), fin(p)));
        }
    }
    if edges.len() >= NONE as usize {
        return (0, vec![]);
    }
    // Predecessors in compressed rows (a counting pass by target, then each short row
    // sorted and deduplicated), and successors likewise: no allocation per node, which at
    // a million tasks cost more than the pass itself.
    let (pred_start, preds) = rows(nodes, edges.iter().map(|&(from, to)| (to, from)), true);
    drop(edges);
    // Successors from the deduplicated predecessors, so that each edge is counted once.
    let inverted = (0..nodes as u32).flat_map(|v| {
        preds[pred_start[v as usize] as usize..pred_start[v as usize + 1] as usize].iter().map(move |&p| (p, v))
    });
    let (succ_start, succs) = rows(nodes, inverted, false);
    let weight = |v: usize| -> u64 {
        if v >= 2 * n || v % 2 == 1 {
            return 0;
        }
        let task = &tl.tasks[v / 2];
        match task.first_dispatch_ms {
            Some(start) => task.own_end_ms.unwrap_or(tl.now_ms).max(start) - start,
            None => 0,
        }
    };
    let mut indegree: Vec<u32> = (0..nodes).map(|v| pred_start[v + 1] - pred_start[v]).collect();
    let mut queue: Vec<usize> = (0..nodes).filter(|&v| indegree[v] == 0).collect();
    let mut value = vec![0u64; nodes];
    let mut best_pred: Vec<u32> = vec![NONE; nodes];
    let mut head = 0;
    while head < queue.len() {
        let v = queue[head];
        head += 1;
        let mut best: Option<(u64, u32)> = None;
        for &p in &preds[pred_start[v] as usize..pred_start[v + 1] as usize] {
            if best.is_none_or(|(b, _)| value[p as usize] > b) {
                best = Some((value[p as usize], p));
            }
        }
        value[v] = weight(v) + best.map_or(0, |(b, _)| b);
        best_pred[v] = best.map_or(NONE, |(_, p)| p);
        for &s in &succs[succ_start[v] as usize..succ_start[v + 1] as usize] {
            indegree[s as usize] -= 1;
            if indegree[s as usize] == 0 {
                queue.push(s as usize);
            }
        }
    }
    // The end of the path: the latest-finishing node (first one on ties).
    let Some(end) = (0..nodes).max_by_key(|&v| (value[v], std::cmp::Reverse(v))) else { return (0, vec![]) };
    let mut path = Vec::new();
    let mut cursor = end;
    loop {
        if cursor < 2 * n && cursor % 2 == 0 && tl.tasks[cursor / 2].first_dispatch_ms.is_some() {
            path.push((cursor / 2) as TaskIdx);
        }
        match best_pred[cursor] {
            NONE => break,
            p => cursor = p as usize,
        }
    }
    path.reverse();
    (value[end], path)
}

/// No predecessor.
const NONE: u32 = u32::MAX;

/// Adjacency rows of `pairs` (row, item) over `nodes` rows: `items[start[r]..start[r + 1]]`
/// is row r, in the order given, or sorted and deduplicated when `sorted`.
fn rows(nodes: usize, pairs: impl Iterator<Item = (u32, u32)> + Clone, sorted: bool) -> (Vec<u32>, Vec<u32>) {
    let mut start = vec![0u32; nodes + 1];
    for (r, _) in pairs.clone() {
        start[r as usize + 1] += 1;
    }
    for i in 0..nodes {
        start[i + 1] += start[i];
    }
    let mut fill = start.clone();
    let mut items = vec![0u32; start[nodes] as usize];
    for (r, item) in pairs {
        items[fill[r as usize] as usize] = item;
        fill[r as usize] += 1;
    }
    if !sorted {
        return (start, items);
    }
    // Sort and deduplicate each row in place, compacting the rows towards the front.
    let mut kept = 0;
    for r in 0..nodes {
        let (from, to) = (start[r] as usize, start[r + 1] as usize);
        items[from..to].sort_unstable();
        start[r] = kept as u32;
        for k in from..to {
            if k == from || items[k] != items[k - 1] {
                items[kept] = items[k];
                kept += 1;
            }
        }
    }
    start[nodes] = kept as u32;
    items.truncate(kept);
    (start, items)
}

#[cfg(test)]
mod tests {
    use super::*;
    use orch_engine::record::Record;
    use orch_engine::spec;

    fn run(toml: &str) -> Rollup {
        let spec = spec::parse(toml, "test.toml", spec::Format::Toml).expect("spec");
        let mut records: Vec<Record> = Vec::new();
        orch_engine::sim::simulate(spec, 0, |rs: &[Record]| {
            records.extend_from_slice(rs);
            Ok::<(), std::convert::Infallible>(())
        })
        .expect("sim");
        Rollup::of(&Timeline::of(&records))
    }

    #[test]
    fn dag_critical_path_follows_the_longest_chain() {
        let r = run(include_str!("../../fixtures/features/dag.toml"));
        assert_eq!(r.critical_path, ["fetch", "build", "test", "package"]);
        assert_eq!(r.critical_path_ms, 50 + 300 + 200 + 80);
        assert_eq!(r.peak_concurrency, 2);
        assert_eq!(r.busy_ms, 630);
        assert_eq!(r.queue_wait_ms_max, 0);
    }

    #[test]
    fn wave_barrier_and_cap_show_as_path_and_queue_wait() {
        let r = run(include_str!("../../fixtures/features/waves-barrier.toml"));
        assert_eq!(r.critical_path, ["slow", "next-2"]);
        assert_eq!(r.critical_path_ms, 550);
        let r = run("[run]\nmax_concurrency = 1\n[[task]]\nid = \"a\"\ncost = 3\nsim = { duration_ms = 10 }\n\
                     [[task]]\nid = \"b\"\ncost = 4\nsim = { duration_ms = 20 }\n");
        assert_eq!(r.queue_wait_ms_max, 10);
        assert_eq!(r.cost_estimate, Some(7));
        assert_eq!(r.peak_concurrency, 1);
        // Costs near u64::MAX saturate (a debug build panicked on the overflow).
        let r = run("[[task]]\nid = \"a\"\ncost = 9223372036854775807\nsim = {}\n\
                     [[task]]\nid = \"b\"\ncost = 9223372036854775807\nsim = {}\n\
                     [[task]]\nid = \"c\"\ncost = 2\nsim = {}\n");
        assert_eq!(r.cost_estimate, Some(u64::MAX));
    }

    #[test]
    fn delegation_puts_children_after_the_parent_command() {
        let r = run(include_str!("../../fixtures/features/delegation.toml"));
        assert_eq!(r.critical_path, ["release", "upload-linux", "announce"]);
        assert_eq!(r.critical_path_ms, 310);
    }
}
