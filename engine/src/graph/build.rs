//! Building a graph from its parts: the same construction whether the parts come from a
//! validated spec (`Graph::compile`) or from the image a log carries (`Graph::load`), so
//! the two cannot build different graphs from the same facts.

use std::collections::BTreeMap;

use super::{runs, Graph, Group, GroupIdx, Node, TaskIdx, Wave, WaveIdx, ROOT};
use crate::spec::{self, Spec, TaskIds, WakePolicy, WaveFailure};

/// What a graph is built from, by task index (declaration order).
#[derive(Debug)]
pub(crate) struct Parts {
    pub ids: TaskIds,
    /// Each task's parent: its own `parent`, else the parent of the wave listing it.
    pub parent: Vec<Option<TaskIdx>>,
    /// Declared waves in declaration order.
    pub waves: Vec<DeclaredWave>,
    /// Task `t`'s `after`, deduplicated and sorted: `deps[deps_at[t]..deps_at[t + 1]]`.
    pub deps_at: Vec<u32>,
    pub deps: Vec<TaskIdx>,
    /// Each task's node, with `wave`, `children` and `id_rank` yet to be placed.
    pub nodes: Vec<Node>,
    /// Every task sorted by id, when already known (an image records it); else sorted here.
    pub by_id: Option<Vec<TaskIdx>>,
    pub titles: BTreeMap<TaskIdx, String>,
    pub costs: BTreeMap<TaskIdx, u64>,
}

/// A `[[wave]]`: its parent, its tasks (sorted by index) and its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeclaredWave {
    pub parent: Option<TaskIdx>,
    pub tasks: Vec<TaskIdx>,
    pub cap: Option<u32>,
    pub on_failure: WaveFailure,
    pub wake: WakePolicy,
}

/// A node with only its own facts set (placement comes in `build`).
pub(crate) fn node(facts: Node) -> Node {
    Node { wave: 0, children: None, id_rank: 0, ..facts }
}

impl Parts {
    /// The parts of a validated spec, from what validating it resolved.
    pub fn of_spec(spec: &Spec, resolved: spec::Resolved) -> Parts {
        let spec::Resolved { ids, after_offsets, after_targets, parent, wave_parent, wave_members } = resolved;
        let n = spec.tasks.len();
        let mut deps_at = Vec::with_capacity(n + 1);
        let mut deps: Vec<TaskIdx> = Vec::with_capacity(after_targets.len());
        deps_at.push(0);
        for t in 0..n {
            let start = deps.len();
            deps.extend_from_slice(&after_targets[after_offsets[t]..after_offsets[t + 1]]);
            sort_dedup_tail(&mut deps, start);
            deps_at.push(deps.len() as u32);
        }
        let waves = spec
            .waves
            .iter()
            .zip(wave_members)
            .zip(wave_parent)
            .map(|((w, members), parent)| {
                let mut tasks: Vec<TaskIdx> = members.into_iter().map(|t| t as TaskIdx).collect();
                tasks.sort_unstable();
                DeclaredWave { parent, tasks, cap: w.max_concurrency, on_failure: w.on_failure, wake: w.wake }
            })
            .collect();
        let mut titles = BTreeMap::new();
        let mut costs = BTreeMap::new();
        let nodes = spec
            .tasks
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let more = t.more();
                if let Some(title) = &more.title {
                    titles.insert(i as TaskIdx, title.clone());
                }
                if let Some(cost) = more.cost {
                    costs.insert(i as TaskIdx, cost);
                }
                node(Node {
                    priority: t.priority,
                    runs: runs(t),
                    hook: more.hook.is_some(),
                    on_stop: more.on_stop,
                    child_failure: more.on_child_failure,
                    child_wake: more.wake_policy,
                    ..Node::default()
                })
            })
            .collect();
        Parts { ids, parent, waves, deps_at, deps, nodes, by_id: None, titles, costs }
    }
}

/// Sorts `v[start..]` and drops its repeats.
pub(crate) fn sort_dedup_tail(v: &mut Vec<TaskIdx>, start: usize) {
    v[start..].sort_unstable();
    let mut kept = start;
    for k in start..v.len() {
        if kept == start || v[kept - 1] != v[k] {
            v[kept] = v[k];
            kept += 1;
        }
    }
    v.truncate(kept);
}

impl Graph {
    /// Builds the graph of `parts`, keeping `spec` (the whole spec, or only its run
    /// settings for a graph loaded from an image). `parts` must be consistent: made from
    /// a validated spec, or checked (`GraphImage::parts`).
    pub(crate) fn build(parts: Parts, spec: Spec) -> Graph {
        let Parts { ids, parent, waves: declared, deps_at, deps, mut nodes, by_id, titles, costs } = parts;
        let n = nodes.len();

        // Groups: the root first, then one per parent, in the order of their first child.
        let mut groups = vec![Group { parent: None, waves: Vec::new(), tasks: Vec::new() }];
        for (i, p) in parent.iter().enumerate() {
            let g = match p {
                None => ROOT,
                Some(p) => *nodes[*p as usize].children.get_or_insert_with(|| {
                    groups.push(Group { parent: Some(*p), waves: Vec::new(), tasks: Vec::new() });
                    (groups.len() - 1) as GroupIdx
                }),
            };
            groups[g as usize].tasks.push(i as TaskIdx);
        }

        // Waves: declared ones in declaration order; groups without any get one implicit wave.
        let mut waves = Vec::with_capacity(declared.len() + 1);
        for w in declared {
            let g = w.parent.map_or(ROOT, |p| nodes[p as usize].children.unwrap_or(ROOT));
            let idx = waves.len() as WaveIdx;
            for &t in &w.tasks {
                nodes[t as usize].wave = idx;
            }
            let ordinal = groups[g as usize].waves.len() as u32;
            groups[g as usize].waves.push(idx);
            waves.push(Wave {
                group: g,
                ordinal,
                tasks: w.tasks,
                cap: w.cap,
                on_failure: w.on_failure,
                wake: w.wake,
                declared: true,
            });
        }
        for (g, group) in groups.iter_mut().enumerate() {
            if group.waves.is_empty() && !group.tasks.is_empty() {
                let idx = waves.len() as WaveIdx;
                for &t in &group.tasks {
                    nodes[t as usize].wave = idx;
                }
                group.waves.push(idx);
                // The parent's own settings for its children apply to their implicit wave
                // (for children from the file, `fail_parent` unless it says otherwise).
                let parent = group.parent.map(|p| &nodes[p as usize]);
                waves.push(Wave {
                    group: g as GroupIdx,
                    ordinal: 0,
                    tasks: group.tasks.clone(),
                    cap: None,
                    on_failure: parent.and_then(|p| p.child_failure).unwrap_or_default(),
                    wake: parent.and_then(|p| p.child_wake).unwrap_or_default(),
                    declared: false,
                });
            }
        }

        let (dependents_at, dependents) = dependents_of(n, &deps_at, &deps);

        // Dispatch tie-break: the rank of each id in sorted order.
        let by_id = by_id.unwrap_or_else(|| sorted_by_id(&ids, n));
        for (rank, &i) in by_id.iter().enumerate() {
            nodes[i as usize].id_rank = rank as u32;
        }
        Graph {
            spec,
            nodes,
            groups,
            waves,
            deps_at,
            deps,
            dependents_at,
            dependents,
            late_dependents: BTreeMap::new(),
            by_id,
            ids,
            titles,
            costs,
        }
    }
}

/// The dependents of `n` tasks whose `after` rows are `deps[deps_at[t]..deps_at[t+1]]`,
/// as compressed rows too: a counting pass gives each row's length, and rows fill in
/// task order, so every row is sorted.
pub(crate) fn dependents_of(n: usize, deps_at: &[u32], deps: &[TaskIdx]) -> (Vec<u32>, Vec<TaskIdx>) {
    let mut dependents_at = vec![0u32; n + 1];
    for &d in deps {
        dependents_at[d as usize + 1] += 1;
    }
    for i in 0..n {
        dependents_at[i + 1] += dependents_at[i];
    }
    let mut fill = dependents_at.clone();
    let mut dependents = vec![0 as TaskIdx; deps.len()];
    for t in 0..n {
        for &d in &deps[deps_at[t] as usize..deps_at[t + 1] as usize] {
            dependents[fill[d as usize] as usize] = t as TaskIdx;
            fill[d as usize] += 1;
        }
    }
    (dependents_at, dependents)
}

/// Tasks `0..n` sorted by id: by the ids' first eight bytes first (no pointer chasing),
/// whole ids only among equals.
fn sorted_by_id(ids: &TaskIds, n: usize) -> Vec<TaskIdx> {
    let prefix = |id: &str| {
        let mut b = [0u8; 8];
        let n = id.len().min(8);
        b[..n].copy_from_slice(&id.as_bytes()[..n]);
        u64::from_be_bytes(b)
    };
    let mut by_id: Vec<(u64, TaskIdx)> = (0..n as TaskIdx).map(|t| (prefix(ids.id(t)), t)).collect();
    by_id.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| ids.id(a.1).cmp(ids.id(b.1))));
    by_id.into_iter().map(|(_, t)| t).collect()
}
