//! Workflow specs: the file format users write (TOML, or JSON), its validation, and the
//! errors that point at the place in the file.

mod ids;
mod model;
mod parse;
mod simulated;
mod task_wire;
mod toml_places;
mod validate;

pub use ids::{id_hash, TaskIds};
pub use model::*;
pub use parse::{check_new_task, load, parse, Format};
pub use simulated::*;
pub use validate::{validate, validate_resolved, Places, Resolved, Unplaced};

use std::fmt;

/// One problem in a spec, with the place it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// `file:line` (TOML), `file: task[3]` (JSON), or the file alone.
    pub place: String,
    pub message: String,
}

/// `spec::Error`: why a spec could not be loaded. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    /// Syntax, unknown field or wrong type (the first one the parser met).
    #[error("{}", .0)]
    Syntax(Problem),
    /// Every semantic problem found (unknown dependency, duplicate id, cycle, ...).
    #[error("{}", render(.0))]
    Invalid(Vec<Problem>),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.place, self.message)
    }
}

fn render(problems: &[Problem]) -> String {
    problems.iter().map(Problem::to_string).collect::<Vec<_>>().join("\n")
}
