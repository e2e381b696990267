//! Tasks submitted at run time (`orch task create`): the checks a submission must pass
//! against the run as it is — ids, references, a parent still able to have children, no
//! wait that could never end — and the task's entry into the graph and the state.
//!
//! A rejection is not an error of the log: the request is recorded either way, and the
//! answer (accepted, or why not) is a decision that replay derives again.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::lifecycle::Phase;
use super::{GroupState, State, TaskState, WaveState, WaveStatus};
use crate::graph::{TaskIdx, WaveIdx};
use crate::record::{TaskSubmitted, Terminal};
use crate::spec::{self, Downstream, Spec, TaskSpec};

/// A node of the waits-for relation (as the spec validator draws it): a task's command
/// may run, a task is done, a wave is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Wait {
    Run(TaskIdx),
    Done(TaskIdx),
    Wave(WaveIdx),
}

impl State {
    pub(super) fn submit(&mut self, s: &TaskSubmitted) -> Result<(), String> {
        if let Some(ending) = self.ending {
            return Err(format!("the run is ending ({}): no new tasks", ending.cause()));
        }
        if self.finalize != super::Finalize::Idle {
            return Err("the run is being finalized (before_finalize judges it as it is): no new tasks".into());
        }
        let spec: TaskSpec = serde_json::from_str(&s.task).map_err(|e| format!("invalid task: {e}"))?;
        let (parent, deps) = self.check_submission(&spec)?;

        let graph = self.graph.as_mut().expect("checked in apply: the run has started");
        let last = parent_group_last_wave(graph, parent);
        // Joining the open implicit wave lets a task added from a shell start at once; a
        // declared wave is a barrier the user drew, and a closed one is over.
        let join = last.filter(|&w| {
            let ws = &self.waves[w as usize];
            !graph.wave(w).declared && ws.status != WaveStatus::Closed && !ws.stopped
        });
        // The state is the graph's only owner while a run is driven (the worlds read it
        // through the state), so this grows it in place rather than copying it.
        let placed = Arc::make_mut(graph).add_task(spec, parent, join);
        let (t, w) = (placed.task, placed.wave);
        let graph = self.g().clone();
        let g = graph.wave(w).group;
        if placed.new_group {
            self.groups.push(GroupState::default());
        }
        if placed.new_wave {
            self.waves.push(WaveState { status: WaveStatus::Pending, remaining: 0, failures: 0, stopped: false });
            self.running_by_wave.push(0);
        }
        self.waves[w as usize].remaining += 1;
        self.groups[g as usize].remaining += 1;

        let mut unmet = 0;
        let mut blocked_by = None;
        let downstream = graph.spec.run.on_failure;
        for &d in &deps {
            match self.tasks[d as usize].phase {
                Phase::Done(Terminal::Succeeded) => {}
                Phase::Done(_) if downstream == Downstream::Continue => {}
                Phase::Done(state) => blocked_by = blocked_by.or(Some((d, state))),
                _ => unmet += 1,
            }
        }
        self.tasks.push(TaskState::waiting(unmet));
        if placed.ranks_moved {
            // Ids after the new one moved up a rank: re-key what is waiting to dispatch.
            let ready: Vec<TaskIdx> = self.ready.iter().map(|k| k.task).collect();
            self.ready = ready.into_iter().map(|r| self.ready_key(r)).collect();
        }

        if let Some((d, state)) = blocked_by {
            self.doom(t, Terminal::Blocked, &format!("blocked by {} ({})", graph.id(d), state.name()));
        } else if self.waves[w as usize].status == WaveStatus::Open {
            if unmet == 0 {
                self.make_ready(t);
            }
        } else if placed.new_wave && self.groups[g as usize].started && self.groups[g as usize].active_wave.is_none() {
            // The parent's children already run (it delegated) and its other waves are
            // over: this wave can open now; otherwise it opens after the waves before it.
            self.openable.insert(w);
            self.groups[g as usize].active_wave = Some(w);
        }
        Ok(())
    }

    /// The submission's parent and blockers, or why it cannot join the run.
    fn check_submission(&self, spec: &TaskSpec) -> Result<(Option<TaskIdx>, Vec<TaskIdx>), String> {
        let graph = self.g();
        let id = spec.id.as_str();
        if graph.task(id).is_some() {
            return Err(format!("a task with id {id:?} already exists in this run"));
        }
        // The checks of a task on its own (id, command, env, retry...), as for a file.
        let mut run = graph.spec.run.clone();
        run.sim_cancel.clear(); // they name the file's tasks, not this one
        let alone =
            Spec { run, tasks: vec![TaskSpec { after: Vec::new(), parent: None, ..spec.clone() }], waves: Vec::new() };
        spec::validate(&alone, &spec::Unplaced("task")).map_err(|e| one_line(&e.to_string()))?;

        let parent = match spec.parent.as_deref() {
            None => None,
            Some(p) => {
                let pt = graph.task(p).ok_or_else(|| format!("parent {p:?} is not a task of this run"))?;
                if let Phase::Done(state) = self.tasks[pt as usize].phase {
                    return Err(format!("parent {p:?} has already finished ({})", state.name()));
                }
                if let Phase::Running { kill: Some(_), .. } = self.tasks[pt as usize].phase {
                    return Err(format!("parent {p:?} is being killed: it takes no new children"));
                }
                if let Some(g) = self.groups_of(pt).map(|g| &self.groups[g as usize]) {
                    let why = if g.stopped.is_some() {
                        Some("was stopped by its hook")
                    } else if g.cancelled.is_some() {
                        Some("is being cancelled")
                    } else if g.skip_rest {
                        Some("has failed (its later waves are skipped)")
                    } else {
                        None
                    };
                    if let Some(why) = why {
                        return Err(format!("parent {p:?} {why}: it takes no new children"));
                    }
                }
                Some(pt)
            }
        };
        let mut deps = Vec::with_capacity(spec.after.len());
        for name in &spec.after {
            if name == id {
                return Err(format!("task {id:?} cannot be blocked by itself"));
            }
            let d = graph.task(name).ok_or_else(|| format!("blocker {name:?} is not a task of this run"))?;
            if !deps.contains(&d) {
                deps.push(d);
            }
        }
        // The new task finishes before its parent and every ancestor can: a blocker that
        // waits (however indirectly) for one of them would wait forever.
        let Some(p) = parent else { return Ok((parent, deps)) };
        let waiting: BTreeSet<TaskIdx> = std::iter::once(p).chain(graph.ancestors(p)).collect();
        for &d in &deps {
            if let Some(path) = self.waits_for_any(d, &waiting) {
                let last = *path.last().expect("a path has an end");
                let kin = if last == p { "child" } else { "descendant" };
                let (blocker, ancestor) = (graph.id(d), graph.id(last));
                if path.len() == 1 {
                    let role = if last == p { "its parent" } else { "an ancestor" };
                    return Err(format!(
                        "task {id:?} cannot be blocked by {blocker:?}: {blocker:?} is {role}, which finishes only after \
                         its {kin} {id:?} (a cycle)"
                    ));
                }
                let chain: Vec<String> = path.iter().map(|&t| format!("{:?}", graph.id(t))).collect();
                return Err(format!(
                    "blocking {id:?} on {blocker:?} makes a cycle: {blocker:?} waits for {ancestor:?} ({}), and \
                     {ancestor:?} finishes only after its {kin} {id:?}",
                    chain.join(" → "),
                ));
            }
        }
        Ok((parent, deps))
    }

    /// Whether `from`'s completion waits (through dependencies, children, parents and
    /// wave order, on what has not happened yet) for one of `targets` to finish: the
    /// chain of tasks from `from` to that target, if so.
    fn waits_for_any(&self, from: TaskIdx, targets: &BTreeSet<TaskIdx>) -> Option<Vec<TaskIdx>> {
        let graph = self.g();
        let mut came_from: BTreeMap<Wait, Wait> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([Wait::Done(from)]);
        came_from.insert(Wait::Done(from), Wait::Done(from));
        while let Some(node) = queue.pop_front() {
            if let Wait::Done(t) = node {
                if targets.contains(&t) {
                    let mut path = vec![t];
                    let mut at = node;
                    while at != Wait::Done(from) {
                        at = came_from[&at];
                        if let Wait::Done(x) = at {
                            path.push(x);
                        }
                    }
                    path.reverse();
                    return Some(path);
                }
            }
            let mut next = Vec::new();
            match node {
                Wait::Done(t) if !self.tasks[t as usize].phase.is_done() => {
                    next.push(Wait::Run(t));
                    if let Some(g) = graph.node(t).children {
                        next.extend(graph.group(g).tasks.iter().map(|&c| Wait::Done(c)));
                    }
                }
                Wait::Run(t) if matches!(self.tasks[t as usize].phase, Phase::Waiting | Phase::Ready) => {
                    next.extend(graph.deps(t).iter().map(|&d| Wait::Done(d)));
                    if let Some(p) = graph.parent(t) {
                        next.push(Wait::Run(p));
                    }
                    if let Some(w) = previous_wave(graph, graph.node(t).wave) {
                        next.push(Wait::Wave(w));
                    }
                }
                Wait::Wave(w) if self.waves[w as usize].status != WaveStatus::Closed => {
                    next.extend(graph.wave(w).tasks.iter().map(|&m| Wait::Done(m)));
                    if let Some(prev) = previous_wave(graph, w) {
                        next.push(Wait::Wave(prev));
                    }
                }
                _ => {}
            }
            for n in next {
                if let std::collections::btree_map::Entry::Vacant(e) = came_from.entry(n) {
                    e.insert(node);
                    queue.push_back(n);
                }
            }
        }
        None
    }

    fn groups_of(&self, t: TaskIdx) -> Option<crate::graph::GroupIdx> {
        self.g().node(t).children
    }
}

fn parent_group_last_wave(graph: &crate::graph::Graph, parent: Option<TaskIdx>) -> Option<WaveIdx> {
    graph.children_of(parent).and_then(|g| graph.group(g).waves.last().copied())
}

fn previous_wave(graph: &crate::graph::Graph, w: WaveIdx) -> Option<WaveIdx> {
    let wave = graph.wave(w);
    let ordinal = wave.ordinal as usize;
    (ordinal > 0).then(|| graph.group(wave.group).waves[ordinal - 1])
}

/// A validation report as one line (an answer goes back over a socket, one per line).
fn one_line(report: &str) -> String {
    report.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ")
}
