//! Reading a spec file: TOML or JSON text into a [`Spec`], with every error pointing at
//! the place in the file (`file:line` for TOML and for JSON syntax errors, a path such as
//! `file: task[3].after[1]` for semantic problems in JSON, which has no spans).
//!
//! Parsing happens once into the real model (with `deny_unknown_fields`). Only if
//! validation finds a problem is the TOML text parsed a second time into a private
//! *locator* that keeps the byte span of every value we may want to point at; so a
//! valid spec pays for one parse.

use std::cell::OnceCell;
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

use serde::de::IgnoredAny;
use serde::Deserialize;
use toml::Spanned;

use super::validate::{validate, Places, Unplaced};
use super::{Error, Problem, RetryPolicy, SimOutcome, Spec};

/// The two file formats a spec can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Toml,
    Json,
    /// A JSON list of tasks alone, a workflow of those tasks (`orch run --tasks`).
    JsonTasks,
}

impl Format {
    /// The format a file name implies: `.json` is JSON, anything else TOML.
    pub fn of_path(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some(ext) if ext.eq_ignore_ascii_case("json") => Format::Json,
            _ => Format::Toml,
        }
    }
}

/// Reads, parses and validates the spec file at `path`.
pub fn load(path: &Path) -> Result<Spec, Error> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: name.clone(), source })?;
    parse(&text, &name, Format::of_path(path))
}

/// Parses and validates spec text; `file` names it in every error.
pub fn parse(text: &str, file: &str, format: Format) -> Result<Spec, Error> {
    match format {
        Format::Toml => {
            let spec: Spec = toml::from_str(text).map_err(|e| Error::Syntax(toml_problem(&e, text, file)))?;
            let places = TomlPlaces::new(file, text);
            validate(&spec, &places)?;
            new_spec_rules(&spec, &places)?;
            Ok(spec)
        }
        Format::JsonTasks => {
            let text = text.strip_prefix('\u{feff}').unwrap_or(text);
            let tasks = serde_json::from_str(text).map_err(|e| Error::Syntax(json_problem(&e, file)))?;
            let spec = Spec { tasks, ..Spec::default() };
            validate(&spec, &Unplaced(file))?;
            new_spec_rules(&spec, &Unplaced(file))?;
            Ok(spec)
        }
        Format::Json => {
            // A byte-order mark, as some editors write (the TOML parser takes one too).
            let text = text.strip_prefix('\u{feff}').unwrap_or(text);
            // serde would read a list as the struct's fields in order (`[run, tasks,
            // waves]`): a list of tasks would fail as a bad `run`.
            let body = text.trim_start();
            if body.starts_with('[') {
                let before = &text[..text.len() - body.len()];
                let line = before.matches('\n').count() + 1;
                let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                return Err(Error::Syntax(Problem {
                    place: format!("{file}:{line}:{column}"),
                    message: "a workflow is a JSON object ({\"run\": {...}, \"task\": [...]}), not a list \
                              (a list of tasks alone goes to `orch run --tasks`)"
                        .into(),
                }));
            }
            let spec: Spec = serde_json::from_str(text).map_err(|e| Error::Syntax(json_problem(&e, file)))?;
            // serde_json keeps no spans, so semantic problems are placed by path.
            validate(&spec, &Unplaced(file))?;
            new_spec_rules(&spec, &Unplaced(file))?;
            Ok(spec)
        }
    }
}

/// Rules for specs written now, kept out of `validate`, which also reads the specs that
/// existing logs carry: a log written before a rule existed must still replay. A task
/// that runs nothing itself (a group of its children) with a timeout or a retry policy,
/// which would apply to nothing; a simulated exit code no process can exit with.
fn new_spec_rules(spec: &Spec, places: &dyn Places) -> Result<(), Error> {
    let mut problems = Vec::new();
    for (i, task) in spec.tasks.iter().enumerate() {
        let id = &task.id;
        if task.command.is_none() && task.sim.is_none() {
            let more = task.more();
            let group = "runs nothing itself (a group of its children)";
            if more.timeout_ms.is_some() {
                let message =
                    format!("task {id:?} {group}: its timeout_ms would apply to nothing; set it on the children");
                problems.push(Problem { place: places.task_field(i, "timeout_ms", None), message });
            }
            if more.retry != RetryPolicy::default() {
                let message = format!("task {id:?} {group}: its retry would apply to nothing; set it on the children");
                problems.push(Problem { place: places.task_field(i, "retry", None), message });
            }
        }
        for (j, outcome) in task.sim.iter().flat_map(|s| s.outcomes.iter()).enumerate() {
            if let SimOutcome::Fail(code) = outcome {
                if !(1..=255).contains(code) {
                    let message = format!("task {id:?}: \"fail:{code}\": a process exits with a code from 1 to 255");
                    problems.push(Problem { place: places.task_field(i, "sim.outcomes", Some(j)), message });
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::Invalid(problems))
    }
}

/// A TOML error as one line: the parser's message without the source snippet it renders.
fn toml_problem(error: &toml::de::Error, text: &str, file: &str) -> Problem {
    let place = match error.span() {
        Some(span) => format!("{file}:{}", line_of(&line_starts(text), span.start)),
        None => file.to_string(),
    };
    Problem { place, message: one_line(error.message()) }
}

/// A JSON error as one line: serde_json appends " at line L column C", which becomes the
/// place, `file:L:C` (the column matters: JSON is often one line).
fn json_problem(error: &serde_json::Error, file: &str) -> Problem {
    let full = error.to_string();
    if error.line() == 0 {
        return Problem { place: file.to_string(), message: one_line(&full) };
    }
    let suffix = format!(" at line {} column {}", error.line(), error.column());
    let message = full.strip_suffix(&suffix).unwrap_or(&full);
    Problem { place: format!("{file}:{}:{}", error.line(), error.column().max(1)), message: one_line(message) }
}

/// Some parser messages span lines ("invalid inline table\nexpected `}`"); a problem is one line.
fn one_line(message: &str) -> String {
    message.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(", ")
}

/// Byte offsets at which each line starts (line 1 starts at 0).
fn line_starts(text: &str) -> Vec<usize> {
    std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect()
}

/// The 1-based line holding byte `offset`.
fn line_of(starts: &[usize], offset: usize) -> usize {
    starts.partition_point(|&start| start <= offset).max(1)
}

/// [`Places`] for a TOML file: `file:line`, from a lazily built locator; if the locator
/// cannot be built (it should always be, the text already parsed) it falls back to paths.
struct TomlPlaces<'a> {
    file: &'a str,
    text: &'a str,
    located: OnceCell<Option<Located>>,
}

struct Located {
    doc: LocDoc,
    starts: Vec<usize>,
}

impl<'a> TomlPlaces<'a> {
    fn new(file: &'a str, text: &'a str) -> Self {
        TomlPlaces { file, text, located: OnceCell::new() }
    }

    fn located(&self) -> Option<&Located> {
        self.located
            .get_or_init(|| {
                let doc = toml::from_str::<LocDoc>(self.text).ok()?;
                Some(Located { doc, starts: line_starts(self.text) })
            })
            .as_ref()
    }

    /// `file:line` of the span `find` picks, or `fallback` (a path place) when there is none.
    fn at(&self, find: impl FnOnce(&LocDoc) -> Option<Range<usize>>, fallback: impl FnOnce() -> String) -> String {
        match self.located().and_then(|l| find(&l.doc).map(|span| line_of(&l.starts, span.start))) {
            Some(line) => format!("{}:{line}", self.file),
            None => fallback(),
        }
    }
}

impl Places for TomlPlaces<'_> {
    fn task(&self, task: usize) -> String {
        self.at(|doc| Some(doc.tasks.get(task)?.span()), || Unplaced(self.file).task(task))
    }

    fn task_field(&self, task: usize, field: &str, item: Option<usize>) -> String {
        self.at(
            |doc| {
                let spanned = doc.tasks.get(task)?;
                // A field the file does not spell out (a default) is placed at its task.
                spanned.get_ref().field(field, item).or_else(|| Some(spanned.span()))
            },
            || Unplaced(self.file).task_field(task, field, item),
        )
    }

    fn wave(&self, wave: usize) -> String {
        self.at(|doc| Some(doc.waves.get(wave)?.span()), || Unplaced(self.file).wave(wave))
    }

    fn wave_field(&self, wave: usize, field: &str, item: Option<usize>) -> String {
        self.at(
            |doc| {
                let spanned = doc.waves.get(wave)?;
                spanned.get_ref().field(field, item).or_else(|| Some(spanned.span()))
            },
            || Unplaced(self.file).wave_field(wave, field, item),
        )
    }

    fn run_field(&self, field: &str) -> String {
        self.at(|doc| doc.run.as_ref()?.field(field), || Unplaced(self.file).run_field(field))
    }
}

// The locator: the spec's shape again, keeping spans instead of values. No
// `deny_unknown_fields` (the real parse already refused unknown fields), and tables that
// TOML may leave implicit (`[run]` under `[run.priority_caps]`, `retry` in
// `retry.max_attempts = 3`) are not `Spanned`, since an implicit table has no span.

/// The span of any value.
type At = Spanned<IgnoredAny>;

#[derive(Deserialize)]
struct LocDoc {
    #[serde(default)]
    run: Option<LocRun>,
    #[serde(default, rename = "task", alias = "tasks")]
    tasks: Vec<Spanned<LocTask>>,
    #[serde(default, rename = "wave", alias = "waves")]
    waves: Vec<Spanned<LocWave>>,
}

#[derive(Deserialize)]
struct LocRun {
    name: Option<At>,
    max_concurrency: Option<At>,
    #[serde(default)]
    priority_caps: BTreeMap<String, At>,
    timeout_ms: Option<At>,
    hook_timeout_ms: Option<At>,
    cancellation: Option<At>,
    on_failure: Option<At>,
    mode: Option<At>,
    seed: Option<At>,
}

#[derive(Deserialize)]
struct LocTask {
    id: Option<At>,
    title: Option<At>,
    command: Option<Spanned<Items>>,
    #[serde(default)]
    env: BTreeMap<String, At>,
    cwd: Option<At>,
    after: Option<Spanned<Items>>,
    parent: Option<At>,
    priority: Option<At>,
    timeout_ms: Option<At>,
    retry: Option<LocRetry>,
    cost: Option<At>,
    sim: Option<LocSim>,
}

#[derive(Deserialize)]
struct LocRetry {
    max_attempts: Option<At>,
    backoff: Option<At>,
    base_ms: Option<At>,
    max_ms: Option<At>,
    jitter: Option<At>,
}

#[derive(Deserialize)]
struct LocSim {
    duration_ms: Option<At>,
    outcomes: Option<Spanned<Items>>,
    stdout: Option<At>,
}

#[derive(Deserialize)]
struct LocWave {
    id: Option<At>,
    parent: Option<At>,
    tasks: Option<Spanned<Items>>,
    max_concurrency: Option<At>,
    on_failure: Option<At>,
    wake: Option<At>,
}

/// A value that may be a list (`after`, an argv `command`): the span of each item.
/// Anything else (a shell `command` string) has no items.
struct Items(Vec<At>);

impl<'de> Deserialize<'de> for Items {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Items;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list or a string")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Items, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<At>()? {
                    items.push(item);
                }
                Ok(Items(items))
            }
            fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Items, E> {
                Ok(Items(Vec::new()))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// The span of a list field, or of one of its items (the whole list if the item is missing).
fn list_span(list: &Option<Spanned<Items>>, item: Option<usize>) -> Option<Range<usize>> {
    let list = list.as_ref()?;
    Some(item.and_then(|i| list.get_ref().0.get(i)).map_or_else(|| list.span(), |at| at.span()))
}

fn span(at: &Option<At>) -> Option<Range<usize>> {
    at.as_ref().map(Spanned::span)
}

impl LocRun {
    fn field(&self, field: &str) -> Option<Range<usize>> {
        match field.split_once('.') {
            Some(("priority_caps", key)) => self.priority_caps.get(key).map(Spanned::span),
            Some(_) => None,
            None => match field {
                "name" => span(&self.name),
                "max_concurrency" => span(&self.max_concurrency),
                "priority_caps" => self.priority_caps.values().next().map(Spanned::span),
                "timeout_ms" => span(&self.timeout_ms),
                "hook_timeout_ms" => span(&self.hook_timeout_ms),
                "cancellation" => span(&self.cancellation),
                "on_failure" => span(&self.on_failure),
                "mode" => span(&self.mode),
                "seed" => span(&self.seed),
                _ => None,
            },
        }
    }
}

impl LocTask {
    fn field(&self, field: &str, item: Option<usize>) -> Option<Range<usize>> {
        match field.split_once('.') {
            Some(("env", key)) => self.env.get(key).map(Spanned::span),
            Some(("retry", sub)) => {
                let retry = self.retry.as_ref()?;
                match sub {
                    "max_attempts" => span(&retry.max_attempts),
                    "backoff" => span(&retry.backoff),
                    "base_ms" => span(&retry.base_ms),
                    "max_ms" => span(&retry.max_ms),
                    "jitter" => span(&retry.jitter),
                    _ => None,
                }
            }
            Some(("sim", sub)) => {
                let sim = self.sim.as_ref()?;
                match sub {
                    "duration_ms" => span(&sim.duration_ms),
                    "outcomes" => list_span(&sim.outcomes, item),
                    "stdout" => span(&sim.stdout),
                    _ => None,
                }
            }
            Some(_) => None,
            None => match field {
                "id" => span(&self.id),
                "title" => span(&self.title),
                "command" => list_span(&self.command, item),
                "env" => self.env.values().next().map(Spanned::span),
                "cwd" => span(&self.cwd),
                "after" => list_span(&self.after, item),
                "parent" => span(&self.parent),
                "priority" => span(&self.priority),
                "timeout_ms" => span(&self.timeout_ms),
                "cost" => span(&self.cost),
                // The retry table, at the first of its keys the file spells out.
                "retry" => self.retry.as_ref().and_then(|r| {
                    let keys = [&r.max_attempts, &r.backoff, &r.base_ms, &r.max_ms, &r.jitter];
                    keys.into_iter().find_map(span)
                }),
                _ => None,
            },
        }
    }
}

impl LocWave {
    fn field(&self, field: &str, item: Option<usize>) -> Option<Range<usize>> {
        match field {
            "id" => span(&self.id),
            "parent" => span(&self.parent),
            "tasks" => list_span(&self.tasks, item),
            "max_concurrency" => span(&self.max_concurrency),
            "on_failure" => span(&self.on_failure),
            "wake" => span(&self.wake),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_one_based() {
        let starts = line_starts("a\nbc\n\nd");
        assert_eq!([0, 1, 2, 3, 4, 5, 6].map(|o| line_of(&starts, o)), [1, 1, 2, 2, 2, 3, 4]);
    }

    #[test]
    fn a_byte_order_mark_is_taken_in_either_format() {
        let json = parse("\u{feff}{\"task\":[{\"id\":\"a\",\"command\":\"true\"}]}", "bom.json", Format::Json);
        let toml = parse("\u{feff}[[task]]\nid = \"a\"\ncommand = \"true\"\n", "bom.toml", Format::Toml);
        assert_eq!(json.expect("json").tasks[0].id, "a");
        assert_eq!(toml.expect("toml").tasks[0].id, "a");
    }

    #[test]
    fn multi_line_messages_become_one() {
        assert_eq!(one_line("invalid inline table\nexpected `}`\n"), "invalid inline table, expected `}`");
    }
}
