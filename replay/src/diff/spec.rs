//! The spec section of a diff: whether `[run]` and the `[[wave]]`s differ, and which
//! tasks' entries do.

use std::collections::{BTreeMap, BTreeSet};

use orch_engine::spec::Spec;
use serde_json::Value;

use super::facts::Facts;
use super::SpecDiff;

pub(super) fn spec_diff(a: &Facts, b: &Facts) -> Option<SpecDiff> {
    // A log without `run_started` (its engine died before writing it) has no spec: it is
    // compared as an empty one, and its digest is absent rather than made up.
    if a.spec.is_none() && b.spec.is_none() {
        return None;
    }
    let empty = serde_json::to_string(&Spec::default()).expect("a spec always serializes");
    let (sa, da) = a.spec.as_ref().map_or((empty.as_str(), None), |(s, d)| (s.as_str(), Some(*d)));
    let (sb, db) = b.spec.as_ref().map_or((empty.as_str(), None), |(s, d)| (s.as_str(), Some(*d)));
    if sa == sb {
        return None;
    }
    let (run_keys, waves, tasks, task_keys) = match (&a.parsed, &b.parsed) {
        (Some(x), Some(y)) => parsed_diff(a, b, x, y),
        _ => json_diff(a, b, sa, sb),
    };
    let run = run_keys.is_some();
    Some(SpecDiff { digests: [da, db], run, run_keys: run_keys.unwrap_or_default(), waves, tasks, task_keys })
}

/// How many changed tasks have their changed keys named (a spec rewritten whole would
/// otherwise name every key of every task).
pub(super) const KEYED_TASKS: usize = 50;

/// The keys of a task's entry that differ between the sides, or which side alone has it.
fn task_keys(a: Option<Value>, b: Option<Value>) -> Vec<String> {
    match (a, b) {
        (Some(x), Some(y)) => run_keys(Some(&x), Some(&y)).unwrap_or_default(),
        (Some(_), None) => vec!["(only in A)".into()],
        (None, _) => vec!["(only in B)".into()],
    }
}

/// `[run]` (or a task's entry) as one side and the other hold it: None when equal, else
/// the keys whose values differ (one side leaving a key out counts), sorted — empty when
/// it is not a table.
fn run_keys(a: Option<&Value>, b: Option<&Value>) -> Option<Vec<String>> {
    if a == b {
        return None;
    }
    let none = serde_json::Map::new();
    let x = a.and_then(Value::as_object).unwrap_or(&none);
    let y = b.and_then(Value::as_object).unwrap_or(&none);
    let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
    Some(keys.into_iter().filter(|k| x.get(*k) != y.get(*k)).cloned().collect())
}

/// Two readable specs in orch's own serialization, compared as parsed: `[run]`,
/// `[[wave]]`s, and the tasks whose entries differ (or that one side lacks), in A's then
/// B's declaration order. An id declared twice compares its last entry, as the JSON
/// comparison below does. For such texts the two comparisons agree (a part parses back
/// from exactly the JSON it was written as), without building a JSON value per task.
fn parsed_diff(a: &Facts, b: &Facts, x: &Spec, y: &Spec) -> Parts {
    let changed: Vec<String> =
        Facts::both_orders(a, b).filter(|id| a.spec_entry(x, id) != b.spec_entry(y, id)).map(String::from).collect();
    let json = |t: Option<&orch_engine::spec::TaskSpec>| t.and_then(|t| serde_json::to_value(t).ok());
    let keys = changed
        .iter()
        .take(KEYED_TASKS)
        .map(|id| (id.clone(), task_keys(json(a.spec_entry(x, id)), json(b.spec_entry(y, id)))))
        .collect();
    let run = (x.run != y.run)
        .then(|| {
            let (vx, vy) = (serde_json::to_value(&x.run).ok(), serde_json::to_value(&y.run).ok());
            run_keys(vx.as_ref(), vy.as_ref())
        })
        .flatten();
    (run, x.waves != y.waves, changed, keys)
}

/// What the spec section is made of: `[run]`'s changed keys, whether the waves differ,
/// the changed tasks, and the changed keys of the first of those.
type Parts = (Option<Vec<String>>, bool, Vec<String>, BTreeMap<String, Vec<String>>);

/// The reference, and the way for a spec that does not parse or is written otherwise
/// (by hand, or by another version): the two compared as JSON values.
fn json_diff(a: &Facts, b: &Facts, sa: &str, sb: &str) -> Parts {
    let parse = |s: &str| serde_json::from_str::<Value>(s).unwrap_or(Value::Null);
    let (ja, jb) = (parse(sa), parse(sb));
    let tasks_of = |j: &Value| -> BTreeMap<String, Value> {
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
    let keys = changed
        .iter()
        .take(KEYED_TASKS)
        .map(|id| (id.clone(), task_keys(ta.get(id).cloned(), tb.get(id).cloned())))
        .collect();
    (run_keys(ja.get("run"), jb.get("run")), ja.get("wave") != jb.get("wave"), changed, keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use orch_engine::core::run_started;
    use orch_engine::record::{Digest, Event, Record, RunStarted};
    use orch_engine::spec::{self, Command, TaskSpec};

    fn facts(spec: &Spec) -> Facts {
        Facts::of(&[Record::new(0, run_started(spec, "sim"))])
    }

    fn facts_of_text(text: String) -> Facts {
        let event = Event::RunStarted(RunStarted {
            spec_digest: Digest::of(text.as_bytes()),
            spec: text,
            executor: "sim".into(),
            image: None,
        });
        Facts::of(&[Record::new(0, event)])
    }

    /// The spec section as the JSON comparison gives it.
    fn by_json(a: &Facts, b: &Facts) -> Option<SpecDiff> {
        let (mut ja, mut jb) = (a.clone(), b.clone());
        (ja.parsed, jb.parsed) = (None, None);
        spec_diff(&ja, &jb)
    }

    /// `spec` as a person or another program might write it: the same spec, other text.
    fn hand_written(spec: &Spec) -> Vec<String> {
        let canonical = serde_json::to_value(spec).expect("serializes");
        let mut out = Vec::new();
        // The plural alias of the task list.
        let mut v = canonical.clone();
        let tasks = v.as_object_mut().unwrap().remove("task").unwrap_or_default();
        v["tasks"] = tasks;
        out.push(v);
        // A default spelled out in every task, and an empty wave list either way.
        let mut v = canonical.clone();
        for t in v["task"].as_array_mut().into_iter().flatten() {
            t["after"] = t.get("after").cloned().unwrap_or_else(|| serde_json::json!([]));
        }
        match v.as_object_mut().unwrap().remove("wave") {
            Some(w) if w.as_array().is_some_and(|w| !w.is_empty()) => {
                _ = v.as_object_mut().unwrap().insert("wave".into(), w)
            }
            _ => v["wave"] = serde_json::json!([]),
        }
        out.push(v);
        out.into_iter().map(|v| v.to_string()).collect()
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
    fn a_log_without_run_started_compares_as_an_empty_spec() {
        let mut b = Spec::default();
        b.tasks.push(TaskSpec { id: "t".into(), command: Some(Command::Shell("true".into())), ..TaskSpec::default() });
        b.run.seed = 3;
        let (none, fb) = (Facts::of(&[]), facts(&b));
        let diff = spec_diff(&none, &fb).expect("the specs differ");
        assert_eq!(diff.digests[0], None);
        assert!(diff.digests[1].is_some());
        assert_eq!(
            (diff.run_keys.as_slice(), diff.waves, diff.tasks.as_slice()),
            (&["seed".to_string()][..], false, &["t".to_string()][..])
        );
        assert_eq!(spec_diff(&none, &Facts::of(&[])), None);
    }

    #[test]
    fn the_run_keys_that_differ_are_named() {
        let mut a = Spec::default();
        a.tasks.push(TaskSpec { id: "t".into(), command: Some(Command::Shell("true".into())), ..TaskSpec::default() });
        a.run.name = Some("before".into());
        let mut b = a.clone();
        (b.run.name, b.run.seed, b.run.max_concurrency) = (Some("after".into()), 7, Some(3));
        let (fa, fb) = (facts(&a), facts(&b));
        let diff = spec_diff(&fa, &fb).expect("the specs differ");
        assert!(diff.run);
        assert_eq!(diff.run_keys, ["max_concurrency", "name", "seed"]);
        assert_eq!(Some(diff), by_json(&fa, &fb));
    }

    #[test]
    fn the_task_keys_that_differ_are_named() {
        let mut a = Spec::default();
        a.tasks.push(TaskSpec { id: "t".into(), command: Some(Command::Shell("true".into())), ..TaskSpec::default() });
        let mut b = a.clone();
        b.tasks[0].more_mut().retry.max_attempts = 3;
        b.tasks[0].after = vec!["n".into()];
        b.tasks.push(TaskSpec { id: "n".into(), command: Some(Command::Shell("true".into())), ..TaskSpec::default() });
        let (fa, fb) = (facts(&a), facts(&b));
        let diff = spec_diff(&fa, &fb).expect("the specs differ");
        let keys: Vec<(&str, Vec<&str>)> =
            diff.task_keys.iter().map(|(t, k)| (t.as_str(), k.iter().map(String::as_str).collect())).collect();
        assert_eq!(keys, [("n", vec!["(only in B)"]), ("t", vec!["after", "retry"])]);
        assert_eq!(Some(diff), by_json(&fa, &fb));
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
                    assert!(a.parsed.is_some() && b.parsed.is_some(), "orch's own texts compare parsed");
                    let parsed = spec_diff(&a, &b).expect("the specs differ");
                    assert_eq!(Some(parsed), by_json(&a, &b), "{}", path.display());
                    compared += 1;
                    // Hand-written texts of either spec compare as their JSON does.
                    for text in hand_written(&edited).into_iter().chain(hand_written(&spec)) {
                        let h = facts_of_text(text);
                        assert!(
                            h.parsed.is_none(),
                            "{}: a text orch does not write is compared as JSON",
                            path.display()
                        );
                        assert_eq!(spec_diff(&a, &h), by_json(&a, &h), "{}", path.display());
                        assert_eq!(spec_diff(&h, &b), by_json(&h, &b), "{}", path.display());
                    }
                }
                assert_eq!(spec_diff(&a, &a.clone()), None);
            }
        }
        assert!(compared > 50, "only {compared} edits compared");
    }
}
