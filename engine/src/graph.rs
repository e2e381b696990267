//! The compiled workflow: tasks as dense indices with their edges, parents' children
//! grouped into ordered waves, and the canonical dispatch rank of every task.
//!
//! Built once from a validated spec (from a file, or from the run-started record on
//! replay). Task index = declaration order, which is also the order of every aggregate.
//! It grows only by appending (tasks that running children submit, see `grow.rs`), so
//! an index, once given, never changes: the graph at the end of a run covers all of it.

mod grow;

use hashbrown::HashTable;

use crate::spec::{self, Priority, Spec, TaskIds, TaskSpec, WakePolicy, WaveFailure};

pub type TaskIdx = u32;
pub type WaveIdx = u32;
pub type GroupIdx = u32;

/// The root group: the run's own children.
pub const ROOT: GroupIdx = 0;

#[derive(Debug, Clone)]
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
}

#[derive(Debug, Clone)]
pub struct Group {
    pub parent: Option<TaskIdx>,
    /// Waves in order.
    pub waves: Vec<WaveIdx>,
    /// Every child, in declaration order.
    pub tasks: Vec<TaskIdx>,
}

#[derive(Debug, Clone)]
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
    late_dependents: std::collections::BTreeMap<TaskIdx, Vec<TaskIdx>>,
    /// Every task, sorted by id: where a submitted task's id rank comes from.
    by_id: Vec<TaskIdx>,
    /// Id → index. A hash table because records name tasks by id and every applied
    /// record resolves one; it is only ever looked up, never iterated, so its order
    /// cannot reach anything folded or decided. It holds bare indices (the ids live in
    /// the spec): no allocation per task. Hashed with Fx: fixed, no random keys.
    index: HashTable<TaskIdx>,
    /// The compiled tasks' ids back to back (task `t`'s is `id_bytes[id_at[t]..id_at[t +
    /// 1]]`; see `spec::TaskIds`), which `task` compares against: the ids inside the spec
    /// sit one 300-byte `TaskSpec` and one heap string apart each, two cache misses per
    /// lookup, and a fold looks up a task for nearly every record. Tasks beyond it (none,
    /// unless the graph grew after compiling) are compared against the spec.
    id_bytes: Vec<u8>,
    id_at: Vec<u32>,
}

impl Graph {
    /// Validates `spec` and compiles it. `name` is used to place problems (a file name,
    /// or "run-started record" for a spec taken from a log).
    pub fn compile(spec: Spec, name: &str) -> Result<Graph, spec::Error> {
        let resolved = spec::validate_resolved(&spec, &spec::Unplaced(name))?;
        Ok(Graph::compile_valid(spec, resolved))
    }

    /// Compiles a valid spec from what validating it resolved (no name is looked up twice).
    fn compile_valid(spec: Spec, resolved: spec::Resolved) -> Graph {
        let n = spec.tasks.len();
        let spec::Resolved { ids, after_offsets, after_targets, parent, wave_parent, wave_members } = resolved;

        // Groups: the root first, then one per parent in declaration order of the parent.
        let mut group_of_parent: Vec<Option<GroupIdx>> = vec![None; n];
        let mut groups = vec![Group { parent: None, waves: Vec::new(), tasks: Vec::new() }];
        for (i, p) in parent.iter().enumerate() {
            let g = match p {
                None => ROOT,
                Some(p) => *group_of_parent[*p as usize].get_or_insert_with(|| {
                    groups.push(Group { parent: Some(*p), waves: Vec::new(), tasks: Vec::new() });
                    (groups.len() - 1) as GroupIdx
                }),
            };
            groups[g as usize].tasks.push(i as TaskIdx);
        }
        let group_of = |p: Option<TaskIdx>| p.map_or(ROOT, |p| group_of_parent[p as usize].expect("has children"));

        // Waves: explicit ones in declaration order; groups without any get one implicit wave.
        let mut waves = Vec::new();
        let mut wave_of = vec![0 as WaveIdx; n];
        for ((w, members), &w_parent) in spec.waves.iter().zip(wave_members).zip(&wave_parent) {
            let g = group_of(w_parent);
            let idx = waves.len() as WaveIdx;
            let mut tasks: Vec<TaskIdx> = members.into_iter().map(|t| t as TaskIdx).collect();
            tasks.sort_unstable();
            for &t in &tasks {
                wave_of[t as usize] = idx;
            }
            let ordinal = groups[g as usize].waves.len() as u32;
            groups[g as usize].waves.push(idx);
            waves.push(Wave {
                group: g,
                ordinal,
                tasks,
                cap: w.max_concurrency,
                on_failure: w.on_failure,
                wake: w.wake,
                declared: true,
            });
        }
        for (g, group) in groups.iter_mut().enumerate() {
            if group.waves.is_empty() && !group.tasks.is_empty() {
                let idx = waves.len() as WaveIdx;
                for &t in &group.tasks {
                    wave_of[t as usize] = idx;
                }
                group.waves.push(idx);
                // The parent's own settings for its children apply to their implicit wave
                // (for children from the file, `fail_parent` unless it says otherwise).
                let parent = group.parent.map(|p| &spec.tasks[p as usize]);
                waves.push(Wave {
                    group: g as GroupIdx,
                    ordinal: 0,
                    tasks: group.tasks.clone(),
                    cap: None,
                    on_failure: parent.and_then(|p| p.more().on_child_failure).unwrap_or_default(),
                    wake: parent.and_then(|p| p.more().wake_policy).unwrap_or_default(),
                    declared: false,
                });
            }
        }

        let mut nodes = Vec::with_capacity(n);
        let mut deps_at = Vec::with_capacity(n + 1);
        let mut deps: Vec<TaskIdx> = Vec::with_capacity(n * 2);
        let mut indegree_of_dependents = vec![0u32; n + 1];
        deps_at.push(0);
        for (i, t) in spec.tasks.iter().enumerate() {
            let start = deps.len();
            deps.extend_from_slice(&after_targets[after_offsets[i]..after_offsets[i + 1]]);
            deps[start..].sort_unstable();
            let mut kept = start;
            for k in start..deps.len() {
                if kept == start || deps[kept - 1] != deps[k] {
                    deps[kept] = deps[k];
                    kept += 1;
                }
            }
            deps.truncate(kept);
            for &d in &deps[start..] {
                indegree_of_dependents[d as usize + 1] += 1;
            }
            deps_at.push(deps.len() as u32);
            nodes.push(Node {
                priority: t.priority,
                wave: wave_of[i],
                children: group_of_parent[i],
                id_rank: 0,
                runs: runs(t),
            });
        }
        // Dependents: a counting pass gave each task's row length; fill in task order,
        // so every row is sorted.
        let mut dependents_at = indegree_of_dependents;
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
        // Dispatch tie-break: the rank of each id in sorted order. Sorted by the ids'
        // first eight bytes first (no pointer chasing), whole ids only among equals.
        let prefix = |id: &str| {
            let mut b = [0u8; 8];
            let n = id.len().min(8);
            b[..n].copy_from_slice(&id.as_bytes()[..n]);
            u64::from_be_bytes(b)
        };
        let mut by_id: Vec<(u64, TaskIdx)> =
            spec.tasks.iter().enumerate().map(|(i, t)| (prefix(&t.id), i as TaskIdx)).collect();
        by_id.sort_unstable_by(|a, b| {
            a.0.cmp(&b.0).then_with(|| spec.tasks[a.1 as usize].id.cmp(&spec.tasks[b.1 as usize].id))
        });
        for (rank, &(_, i)) in by_id.iter().enumerate() {
            nodes[i as usize].id_rank = rank as u32;
        }
        let by_id = by_id.into_iter().map(|(_, i)| i).collect();
        let TaskIds { table: index, bytes: id_bytes, at: id_at } = ids;
        Graph {
            spec,
            nodes,
            groups,
            waves,
            deps_at,
            deps,
            dependents_at,
            dependents,
            late_dependents: Default::default(),
            by_id,
            index,
            id_bytes,
            id_at,
        }
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn task(&self, id: &str) -> Option<TaskIdx> {
        self.index.find(id_hash(id), |&j| self.compiled_id(j) == id.as_bytes()).copied()
    }

    /// Task `t`'s id from the arena when it has it, else from the spec.
    fn compiled_id(&self, t: TaskIdx) -> &[u8] {
        let t = t as usize;
        match self.id_at.get(t..t + 2) {
            Some(&[start, end]) => &self.id_bytes[start as usize..end as usize],
            _ => self.spec.tasks[t].id.as_bytes(),
        }
    }

    pub fn id(&self, t: TaskIdx) -> &str {
        &self.spec.tasks[t as usize].id
    }

    pub fn task_spec(&self, t: TaskIdx) -> &TaskSpec {
        &self.spec.tasks[t as usize]
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

fn id_hash(id: &str) -> u64 {
    spec::id_hash(id)
}

fn runs(t: &TaskSpec) -> bool {
    t.command.is_some() || t.sim.is_some()
}
