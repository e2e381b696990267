//! The spec section of a diff: whether `[run]` and the `[[wave]]`s differ, and which
//! tasks' entries do.

use std::collections::{BTreeMap, BTreeSet};

use orch_engine::record::Digest;
use orch_engine::spec::Spec;

use super::facts::Facts;
use super::SpecDiff;

pub(super) fn spec_diff(a: &Facts, b: &Facts) -> Option<SpecDiff> {
    let (sa, da) = a.spec.as_ref().map_or(("", Digest::default()), |(s, d)| (s.as_str(), *d));
    let (sb, db) = b.spec.as_ref().map_or(("", Digest::default()), |(s, d)| (s.as_str(), *d));
    if sa == sb {
        return None;
    }
    let (run, waves, tasks) = match (&a.parsed, &b.parsed) {
        (Some(x), Some(y)) => parsed_diff(a, b, x, y),
        _ => json_diff(a, b, sa, sb),
    };
    Some(SpecDiff { digests: [da, db], run, waves, tasks })
}

/// Two readable specs, compared as parsed: `[run]`, `[[wave]]`s, and the tasks whose
/// entries differ (or that one side lacks), in A's then B's declaration order. An id
/// declared twice compares its last entry, as the JSON comparison below does.
fn parsed_diff(a: &Facts, b: &Facts, x: &Spec, y: &Spec) -> (bool, bool, Vec<String>) {
    let changed =
        Facts::both_orders(a, b).filter(|id| a.spec_entry(x, id) != b.spec_entry(y, id)).map(String::from).collect();
    (x.run != y.run, x.waves != y.waves, changed)
}

/// The fallback for a spec that does not parse as one: the two compared as JSON values.
fn json_diff(a: &Facts, b: &Facts, sa: &str, sb: &str) -> (bool, bool, Vec<String>) {
    let parse = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap_or(serde_json::Value::Null);
    let (ja, jb) = (parse(sa), parse(sb));
    let tasks_of = |j: &serde_json::Value| -> BTreeMap<String, serde_json::Value> {
        j.get("task")
            .and_then(|t| t.as_array())
            .map(|list| {
                list.iter()
                    .filter_map(|t| Some((t.get("id")?.as_str()?.to_string(), t.clone())))
                    .collect::<BTreeMap<_, _>>()
            })
            .unwrap_or_default()
    };
    let (ta, tb) = (tasks_of(&ja), tasks_of(&jb));
    let mut changed = Vec::new();
    let mut seen = BTreeSet::new();
    let ids = Facts::both_orders(a, b).chain(ta.keys().map(String::as_str)).chain(tb.keys().map(String::as_str));
    for id in ids {
        if seen.insert(id) && ta.get(id) != tb.get(id) {
            changed.push(id.to_string());
        }
    }
    (ja.get("run") != jb.get("run"), ja.get("wave") != jb.get("wave"), changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use orch_engine::core::run_started;
    use orch_engine::record::Record;
    use orch_engine::spec::{self, Command, TaskSpec};

    fn facts(spec: &Spec) -> Facts {
        Facts::of(&[Record::new(0, run_started(spec, "sim"))])
    }

    /// Edits of a spec, each touching one part of it.
    fn edits(spec: &Spec) -> Vec<Spec> {
        let mut out = Vec::new();
        let mut e = spec.clone();
        e.run.name = Some("renamed".into());
        out.push(e);
        if let Some(last) = spec.tasks.last() {
            let mut e = spec.clone();
            e.tasks.last_mut().unwrap().command = Some(Command::Shell("echo edited".into()));
            out.push(e);
            let mut e = spec.clone();
            e.tasks.pop();
            e.waves.iter_mut().for_each(|w| w.tasks.retain(|t| *t != last.id));
            out.push(e);
            let mut e = spec.clone();
            e.tasks.insert(0, TaskSpec { id: "added".into(), ..last.clone() });
            out.push(e);
            let mut e = spec.clone();
            e.tasks.push(TaskSpec { id: spec.tasks[0].id.clone(), ..last.clone() }); // an id twice
            out.push(e);
        }
        if !spec.waves.is_empty() {
            let mut e = spec.clone();
            e.waves[0].max_concurrency = Some(99);
            out.push(e);
        }
        out
    }

    #[test]
    fn parsed_specs_compare_as_their_json_does() {
        let dirs = ["features", "examples"].map(|d| format!("{}/../fixtures/{d}", env!("CARGO_MANIFEST_DIR")));
        let mut compared = 0;
        for dir in dirs {
            for entry in std::fs::read_dir(&dir).expect("fixtures") {
                let path = entry.expect("entry").path();
                let Ok(spec) = spec::load(&path) else { continue };
                let a = facts(&spec);
                for edited in edits(&spec) {
                    let b = facts(&edited);
                    let parsed = spec_diff(&a, &b).expect("the specs differ");
                    let (mut ja, mut jb) = (a.clone(), b.clone());
                    (ja.parsed, jb.parsed) = (None, None);
                    assert_eq!(Some(&parsed), spec_diff(&ja, &jb).as_ref(), "{}", path.display());
                    compared += 1;
                }
                assert_eq!(spec_diff(&a, &a.clone()), None);
            }
        }
        assert!(compared > 50, "only {compared} edits compared");
    }
}
