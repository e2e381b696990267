//! Growing the graph at run time: a task submitted by a running child (delegation) is
//! appended — a new index, a new row of edges, a place in its parent's group — and
//! nothing already there is renumbered, so records before the submission still name the
//! same tasks, waves and groups.

use super::build::{node, sort_dedup_tail};
use super::{runs, Graph, Group, GroupIdx, Node, TaskIdx, Wave, WaveIdx, ROOT};
use crate::spec::{TaskSpec, WaveFailure};

/// Where an added task went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    pub task: TaskIdx,
    pub wave: WaveIdx,
    /// The task opened a new wave of its group (its last wave was declared, or closed).
    pub new_wave: bool,
    /// The task's parent had no children before: its group was created.
    pub new_group: bool,
    /// Ids sorting after the new one moved up a rank (dispatch keys must be rebuilt).
    pub ranks_moved: bool,
}

impl Graph {
    /// Appends `spec` (checked by the caller: its id is new, its `after` names existing
    /// tasks, its parent is `parent`) to `parent`'s group: into `join` when given (the
    /// group's last wave, undeclared and not closed), else into a new wave after the
    /// group's last, whose policies come from the parent.
    pub(crate) fn add_task(&mut self, mut spec: TaskSpec, parent: Option<TaskIdx>, join: Option<WaveIdx>) -> Placement {
        let t = self.nodes.len() as TaskIdx;
        spec.parent = parent.map(|p| self.id(p).to_string());

        // The parent's group, created when this is its first child.
        let (group, new_group) = match parent {
            None => (ROOT, false),
            Some(p) => {
                let new = self.nodes[p as usize].children.is_none();
                (self.ensure_group(p), new)
            }
        };
        let (wave, new_wave) = match join {
            Some(w) => (w, false),
            None => {
                let w = self.waves.len() as WaveIdx;
                let parent_node = parent.map(|p| &self.nodes[p as usize]);
                let on_failure = match parent_node {
                    Some(p) => p.child_failure.unwrap_or(WaveFailure::Hold),
                    // The run has nobody to hold: its own children fail it.
                    None => WaveFailure::FailParent,
                };
                let wake = parent_node.and_then(|p| p.child_wake).unwrap_or_default();
                let ordinal = self.groups[group as usize].waves.len() as u32;
                self.groups[group as usize].waves.push(w);
                self.waves.push(Wave {
                    group,
                    ordinal,
                    tasks: Vec::new(),
                    cap: None,
                    on_failure,
                    wake,
                    declared: false,
                });
                (w, true)
            }
        };
        self.waves[wave as usize].tasks.push(t);
        self.groups[group as usize].tasks.push(t);

        // Edges: its own row at the end; it is a late dependent of each blocker.
        let start = self.deps.len();
        let found: Vec<TaskIdx> = spec.after.iter().filter_map(|d| self.task(d)).collect();
        self.deps.extend(found);
        sort_dedup_tail(&mut self.deps, start);
        self.deps_at.push(self.deps.len() as u32);
        for k in start..self.deps.len() {
            let d = self.deps[k];
            self.late_dependents.entry(d).or_default().push(t);
        }

        // Id rank: its place in sorted order; every id after it moves up one.
        let rank = self.by_id.partition_point(|&j| self.id(j) < spec.id.as_str());
        self.by_id.insert(rank, t);
        for &j in &self.by_id[rank + 1..] {
            self.nodes[j as usize].id_rank += 1;
        }
        let ranks_moved = rank + 1 < self.by_id.len();

        let more = spec.more();
        let mut facts = node(Node {
            priority: spec.priority,
            runs: runs(&spec),
            hook: more.hook.is_some(),
            on_stop: more.on_stop,
            child_failure: more.on_child_failure,
            child_wake: more.wake_policy,
            ..Node::default()
        });
        (facts.wave, facts.id_rank) = (wave, rank as u32);
        if let Some(title) = &more.title {
            self.titles.insert(t, title.clone());
        }
        if let Some(cost) = more.cost {
            self.costs.insert(t, cost);
        }
        self.nodes.push(facts);
        self.ids.insert(&spec.id, t);
        // A graph loaded from an image has no task specs to keep this one beside.
        if self.spec.tasks.len() + 1 == self.nodes.len() {
            self.spec.tasks.push(spec);
        }
        Placement { task: t, wave, new_wave, new_group, ranks_moved }
    }

    /// The group of `t`'s children, made (empty, no waves yet) if it has none: a task that
    /// delegates before creating any child still waits for the ones it creates.
    pub(crate) fn ensure_group(&mut self, t: TaskIdx) -> GroupIdx {
        if let Some(g) = self.nodes[t as usize].children {
            return g;
        }
        let g = self.groups.len() as GroupIdx;
        self.groups.push(Group { parent: Some(t), waves: Vec::new(), tasks: Vec::new() });
        self.nodes[t as usize].children = Some(g);
        g
    }

    /// The parent's group, if it has children.
    pub fn children_of(&self, parent: Option<TaskIdx>) -> Option<GroupIdx> {
        match parent {
            None => Some(ROOT),
            Some(p) => self.node(p).children,
        }
    }

    /// Every ancestor of `t`, nearest first.
    pub fn ancestors(&self, t: TaskIdx) -> impl Iterator<Item = TaskIdx> + '_ {
        std::iter::successors(self.parent(t), |&p| self.parent(p))
    }

    /// The id of every task that `t` lists in `after`, in index order.
    pub fn dep_ids(&self, t: TaskIdx) -> impl Iterator<Item = &str> + '_ {
        self.deps(t).iter().map(|&d| self.id(d))
    }
}
