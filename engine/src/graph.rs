//! The compiled workflow: tasks as dense indices with their edges, parents' children
//! grouped into ordered waves, and the canonical dispatch rank of every task.
//!
//! Built once from a validated spec (from a file, or from the run-started record's spec
//! when an engine resumes or replays), or loaded from the compiled image that record
//! carries (a fold: see `image.rs`). Task index = declaration order, which is also the order of every aggregate.
//! It grows only by appending (tasks that running children submit, see `grow.rs`), so
//! an index, once given, never changes: the graph at the end of a run covers all of it.

mod build;
mod grow;
mod image;
mod image_check;
#[cfg(test)]
mod image_tests;

use std::collections::BTreeMap;

pub use image::GraphImage;

use crate::spec::{self, OnStop, Priority, Spec, TaskIds, TaskSpec, WakePolicy, WaveFailure};

pub type TaskIdx = u32;
pub type WaveIdx = u32;
pub type GroupIdx = u32;

/// The root group: the run's own children.
pub const ROOT: GroupIdx = 0;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Node {
    pub priority: Priority,
    pub wave: WaveIdx,
    /// The group of this task's own children, if it has any.
    pub children: Option<GroupIdx>,
    /// Position of the id in sorted order: the last tie-breaker of dispatch order.
    pub id_rank: u32,
    /// Whether the task runs a command (or, in simulation, a scripted attempt). A task
    /// without one is a pure group of children.
    pub runs: bool,
    /// Whether the task has a wake hook (run when its children wake it).
    pub hook: bool,
    /// What a `stop` from its hook does to its children still running.
    pub on_stop: OnStop,
    /// Its own settings for its children in no `[[wave]]` (`on_child_failure`,
    /// `wake_policy`), when it sets them.
    pub child_failure: Option<WaveFailure>,
    pub child_wake: Option<WakePolicy>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub parent: Option<TaskIdx>,
    /// Waves in order.
    pub waves: Vec<WaveIdx>,
    /// Every child, in declaration order.
    pub tasks: Vec<TaskIdx>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wave {
    pub group: GroupIdx,
    /// Position among its group's waves (0-based): the first key of dispatch order.
    pub ordinal: u32,
    /// Tasks in declaration order.
    pub tasks: Vec<TaskIdx>,
    pub cap: Option<u32>,
    pub on_failure: WaveFailure,
    pub wake: WakePolicy,
    /// Declared with `[[wave]]`: a barrier the user drew. Tasks submitted at run time
    /// join a group's last wave only when it is not declared (the implicit wave of the
    /// spec's children, or one made at run time) and not closed.
    pub declared: bool,
}

#[derive(Debug, Clone)]
pub struct Graph {
    /// The spec it was compiled from. A graph loaded from a log's compiled image (what a
    /// fold of a log builds) has the run settings only: no tasks or waves, see `has_tasks`.
    pub spec: Spec,
    pub nodes: Vec<Node>,
    pub groups: Vec<Group>,
    pub waves: Vec<Wave>,
    /// Dependency edges in compressed rows (no allocation per task): task `t`'s `after`
    /// (deduplicated, sorted) is `deps[deps_at[t]..deps_at[t + 1]]`; likewise its
    /// dependents.
    deps_at: Vec<u32>,
    deps: Vec<TaskIdx>,
    dependents_at: Vec<u32>,
    dependents: Vec<TaskIdx>,
    /// Dependents added at run time (a submitted task blocked by an existing one): the
    /// compressed rows cannot grow in the middle.
    late_dependents: BTreeMap<TaskIdx, Vec<TaskIdx>>,
    /// Every task, sorted by id: where a submitted task's id rank comes from.
    by_id: Vec<TaskIdx>,
    /// Id → index, over the ids laid out back to back (records name tasks by id and a
    /// fold looks one up for nearly every record: the arena is two cache misses fewer
    /// than ids inside the spec's tasks). Grows with the graph.
    ids: TaskIds,
    /// The tasks' titles and declared costs (few tasks set them), for views and rollups
    /// that have no task specs to read them from.
    titles: BTreeMap<TaskIdx, String>,
    costs: BTreeMap<TaskIdx, u64>,
}

impl Graph {
    /// Validates `spec` and compiles it. `name` is used to place problems (a file name,
    /// or "run-started record" for a spec taken from a log).
    pub fn compile(spec: Spec, name: &str) -> Result<Graph, spec::Error> {
        let resolved = spec::validate_resolved(&spec, &spec::Unplaced(name))?;
        let parts = build::Parts::of_spec(&spec, resolved);
        Ok(Graph::build(parts, spec))
    }

    /// The graph a log's run-started record carries compiled (`GraphImage`), checked so
    /// that nothing a fold builds on it can fail or loop: every index in range, ids unique and
    /// sorted as recorded, no loop of parents or of `after`, waves that partition their
    /// groups, every task running something or having children. It has the run settings but no task specs (`has_tasks` is false): what
    /// folding a log needs, without parsing and compiling the spec. Whether the image is
    /// the one its spec compiles to is checked by whoever compiles the spec
    /// (`GraphImage::matches`).
    pub fn load(image: &GraphImage) -> Result<Graph, String> {
        let (parts, run) = image.parts()?;
        Ok(Graph::build(parts, Spec { run, tasks: Vec::new(), waves: Vec::new() }))
    }

    /// Whether the graph has its tasks' specs (compiled from a spec), or only what its
    /// image carried (`load`): commands, environments, retry policies and simulated
    /// behaviour are then unknown, and `task_spec` must not be asked.
    pub fn has_tasks(&self) -> bool {
        self.spec.tasks.len() == self.nodes.len()
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn task(&self, id: &str) -> Option<TaskIdx> {
        self.ids.get(id).map(|t| t as TaskIdx)
    }

    pub fn id(&self, t: TaskIdx) -> &str {
        self.ids.id(t)
    }

    /// Task `t`'s spec. Only on a graph that has them (`has_tasks`): one compiled from a
    /// spec, as every engine that decides or runs holds.
    pub fn task_spec(&self, t: TaskIdx) -> &TaskSpec {
        assert!(self.has_tasks(), "task specs asked of a graph loaded from its image: compile the spec to decide");
        &self.spec.tasks[t as usize]
    }

    pub fn title(&self, t: TaskIdx) -> Option<&str> {
        self.titles.get(&t).map(String::as_str)
    }

    /// Every declared cost, in task order.
    pub fn costs(&self) -> impl Iterator<Item = u64> + '_ {
        self.costs.values().copied()
    }

    pub fn node(&self, t: TaskIdx) -> &Node {
        &self.nodes[t as usize]
    }

    /// Tasks `t` runs after (`after`), deduplicated, in index order.
    pub fn deps(&self, t: TaskIdx) -> &[TaskIdx] {
        &self.deps[self.deps_at[t as usize] as usize..self.deps_at[t as usize + 1] as usize]
    }

    /// Tasks that run after `t`, in index order (those of the spec, then those submitted
    /// at run time, in submission order: index order too, as indices only grow).
    pub fn dependents(&self, t: TaskIdx) -> impl Iterator<Item = TaskIdx> + '_ {
        let compiled = match self.dependents_at.get(t as usize + 1) {
            Some(&end) => &self.dependents[self.dependents_at[t as usize] as usize..end as usize],
            None => &[],
        };
        let late = self.late_dependents.get(&t).map_or(&[][..], Vec::as_slice);
        compiled.iter().chain(late).copied()
    }

    pub fn wave(&self, w: WaveIdx) -> &Wave {
        &self.waves[w as usize]
    }

    pub fn group(&self, g: GroupIdx) -> &Group {
        &self.groups[g as usize]
    }

    /// The parent task of a wave's group (None for the run's own waves).
    pub fn wave_parent(&self, w: WaveIdx) -> Option<TaskIdx> {
        self.group(self.wave(w).group).parent
    }

    /// The parent task of `t` (None when it is a child of the run).
    pub fn parent(&self, t: TaskIdx) -> Option<TaskIdx> {
        self.wave_parent(self.node(t).wave)
    }

    /// The effective global cap: sequential mode means one at a time.
    pub fn global_cap(&self) -> u32 {
        match self.spec.run.mode {
            spec::Mode::Sequential => 1,
            spec::Mode::Parallel => self.spec.run.max_concurrency.unwrap_or(u32::MAX),
        }
    }

    pub fn priority_cap(&self, p: Priority) -> u32 {
        self.spec.run.priority_caps.get(&p).copied().unwrap_or(u32::MAX)
    }
}

fn runs(t: &TaskSpec) -> bool {
    t.command.is_some() || t.sim.is_some()
}
