//! Per task, per wave and for the run: what ended differently (order ignored).

use std::collections::BTreeSet;

use super::facts::Facts;
use super::{RunDiff, TaskDiff, WaveDiff};

// ---- outcomes -----------------------------------------------------------------------

pub(super) fn outcome_diffs(a: &Facts, b: &Facts) -> (Vec<TaskDiff>, Vec<WaveDiff>, Option<RunDiff>) {
    let mut tasks = Vec::new();
    for id in Facts::both_orders(a, b) {
        let (ta, tb) = (a.outcome(id), b.outcome(id));
        let fields: Vec<&'static str> = match (ta, tb) {
            (Some(x), Some(y)) => [
                ("state", x.state != y.state),
                ("attempts", x.attempts != y.attempts),
                ("output", x.output != y.output),
                ("aggregate", x.aggregate != y.aggregate),
            ]
            .into_iter()
            .filter_map(|(name, differs)| differs.then_some(name))
            .collect(),
            _ => vec!["presence"],
        };
        if !fields.is_empty() {
            tasks.push(TaskDiff { task: id.to_string(), fields, a: ta.cloned(), b: tb.cloned() });
        }
    }
    let keys: BTreeSet<&(Option<String>, u32)> = a.waves.keys().chain(b.waves.keys()).collect();
    let waves = keys
        .into_iter()
        .filter(|k| a.waves.get(*k) != b.waves.get(*k))
        .map(|k| WaveDiff { parent: k.0.clone(), wave: k.1, a: a.waves.get(k).cloned(), b: b.waves.get(k).cloned() })
        .collect();
    let run = (a.run != b.run).then(|| RunDiff { a: a.run.clone(), b: b.run.clone() });
    (tasks, waves, run)
}
