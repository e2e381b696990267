//! Reading a spec file: TOML or JSON text into a [`Spec`], with every error pointing at
//! the place in the file (`file:line` for TOML and for JSON syntax errors, a path such as
//! `file: task[3].after[1]` for semantic problems in JSON, which has no spans).
//!
//! Parsing happens once into the real model (with `deny_unknown_fields`). Only if
//! validation finds a problem is the TOML text parsed a second time, to place it
//! (`toml_places.rs`); so a valid spec pays for one parse.

use std::path::Path;

use super::toml_places::{line_of, line_starts, TomlPlaces};
use super::validate::{validate, Places, Unplaced};
use super::{Error, Problem, RetryPolicy, SimOutcome, Spec, TaskSpec};

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
/// which would apply to nothing; a simulated exit code no process can exit with; a NUL
/// byte in a cwd (a child gets it as a C string; logs of before the rule record such a
/// task failing to start, exit 127).
fn new_spec_rules(spec: &Spec, places: &dyn Places) -> Result<(), Error> {
    let mut problems = Vec::new();
    for (i, task) in spec.tasks.iter().enumerate() {
        let id = &task.id;
        if task.more().cwd.as_deref().is_some_and(|cwd| cwd.contains('\0')) {
            let message = format!("task {id:?}: cwd contains a NUL byte");
            problems.push(Problem { place: places.task_field(i, "cwd", None), message });
        }
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

/// The rules for specs written now, for a task submitted to a running run: checked when
/// the request comes in, before it is recorded (the fold checks only what `validate`
/// does, so that the logs of before a rule still fold).
pub fn check_new_task(task: &TaskSpec) -> Result<(), String> {
    let alone = Spec { run: Default::default(), tasks: vec![task.clone()], waves: Vec::new() };
    new_spec_rules(&alone, &Unplaced("task")).map_err(|e| e.to_string().replace('\n', "; "))
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
