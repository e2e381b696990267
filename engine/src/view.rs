//! Read-only views of a run's state for people and tools: the task list with the
//! statuses delegation speaks of (pending, working, delegated, stuck, done, ...), the
//! progress of delegated parents, and the shared context as JSON. The live engine
//! answers `orch task list` and `orch ctx get` with these; a finished run's log folds
//! to the same state, so the CLI answers from the log with the very same code.

use serde::Serialize;

use crate::graph::{Graph, TaskIdx};
use crate::record::Terminal;
use crate::state::{ContextValue, Phase, State};

/// One task as `orch task list` and `orch show` see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskRow {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// pending, working, delegated, stuck, or a terminal state (`done` for succeeded).
    pub status: &'static str,
    /// A label set by hand: working, reviewing, reviewed, stuck.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mark: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    pub blocked_by: Vec<String>,
    /// Pending and every blocker done.
    pub ready: bool,
    pub attempts: u32,
    /// For a parent: (children terminal, children in all).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub children: Option<(u32, u32)>,
    /// Nesting depth (0 for the run's own children).
    pub depth: u32,
}

/// The lifecycle status of task `t`, in delegation's words.
pub fn status(state: &State, t: TaskIdx) -> &'static str {
    match state.task(t).phase {
        Phase::Waiting | Phase::Ready => "pending",
        // It said `delegated` while its command still runs.
        Phase::Running { .. } if state.task(t).released => "delegated",
        Phase::Running { .. } | Phase::Exited { .. } | Phase::BackingOff { .. } => "working",
        Phase::Delegated if state.is_stuck(t) => "stuck",
        Phase::Delegated => "delegated",
        Phase::Done(Terminal::Succeeded) => "done",
        Phase::Done(other) => other.name(),
    }
}

/// Every task, in declaration (and submission) order.
pub fn task_rows(state: &State) -> Vec<TaskRow> {
    let Some(graph) = state.graph() else { return Vec::new() };
    let depths = depths(graph);
    (0..graph.len() as TaskIdx)
        .map(|t| {
            let status = status(state, t);
            let deps = graph.deps(t);
            let ready =
                status == "pending" && deps.iter().all(|&d| state.task(d).phase == Phase::Done(Terminal::Succeeded));
            let children = graph.node(t).children.map(|g| {
                let tasks = &graph.group(g).tasks;
                let done = tasks.iter().filter(|&&c| state.task(c).phase.is_done()).count() as u32;
                (done, tasks.len() as u32)
            });
            TaskRow {
                id: graph.id(t).to_string(),
                title: graph.title(t).map(str::to_string),
                status,
                mark: state.task(t).mark.map(|m| m.name()),
                parent: graph.parent(t).map(|p| graph.id(p).to_string()),
                blocked_by: deps.iter().map(|&d| graph.id(d).to_string()).collect(),
                ready,
                attempts: state.task(t).attempts,
                children,
                depth: depths[t as usize],
            }
        })
        .collect()
}

/// Each task's number of ancestors, in one pass: counting them task by task is
/// quadratic in a deep chain (a 100k-deep delegation took 28 s).
fn depths(graph: &Graph) -> Vec<u32> {
    const UNKNOWN: u32 = u32::MAX;
    let mut depth = vec![UNKNOWN; graph.len()];
    let mut chain = Vec::new();
    for t in 0..graph.len() as TaskIdx {
        // Up to the first ancestor whose depth is known (or the run), then back down.
        let mut at = Some(t);
        while let Some(x) = at.filter(|&x| depth[x as usize] == UNKNOWN) {
            chain.push(x);
            at = graph.parent(x);
        }
        let first = at.map_or(0, |x| depth[x as usize] + 1);
        for (d, x) in (first..).zip(chain.drain(..).rev()) {
            depth[x as usize] = d;
        }
    }
    depth
}

/// The rows in tree order: each parent followed by its children (depth first), the
/// run's own children in declaration order.
pub fn tree_order(rows: &[TaskRow]) -> Vec<usize> {
    let index: std::collections::BTreeMap<&str, usize> =
        rows.iter().enumerate().map(|(i, r)| (r.id.as_str(), i)).collect();
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); rows.len()];
    let mut roots = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        match r.parent.as_deref().and_then(|p| index.get(p)) {
            Some(&p) => children[p].push(i),
            None => roots.push(i),
        }
    }
    let mut order = Vec::with_capacity(rows.len());
    let mut stack: Vec<usize> = roots.into_iter().rev().collect();
    while let Some(i) = stack.pop() {
        order.push(i);
        stack.extend(children[i].iter().rev());
    }
    order
}

/// The context as JSON: every key (an object), or one key's value (null when unset).
/// A `set` key is a string; an appended key is an array in append order.
pub fn context_json(state: &State, key: Option<&str>) -> serde_json::Value {
    let render = |v: &ContextValue| match v {
        ContextValue::Value(s) => serde_json::Value::String(s.clone()),
        ContextValue::List(items) => items.iter().cloned().map(serde_json::Value::String).collect(),
    };
    match key {
        Some(k) => state.context().get(k).map_or(serde_json::Value::Null, render),
        None => state.context().iter().map(|(k, v)| (k.clone(), render(v))).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depths_follow_parents_declared_before_or_after_their_children() {
        let text = "[[task]]\nid = \"leaf\"\ncommand = \"true\"\nparent = \"mid\"\n\
                    [[task]]\nid = \"top\"\n\
                    [[task]]\nid = \"mid\"\nparent = \"top\"\n\
                    [[task]]\nid = \"alone\"\ncommand = \"true\"\n";
        let spec = crate::spec::parse(text, "t.toml", crate::spec::Format::Toml).expect("valid");
        let graph = Graph::compile(spec, "t").expect("compiles");
        assert_eq!(depths(&graph), [2, 0, 1, 0]);
    }
}
