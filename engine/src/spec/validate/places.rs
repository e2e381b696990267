//! Where a problem is in a spec's source: the [`Places`] a validation reports through
//! (the TOML parser's knows lines; [`Unplaced`] names paths, for JSON and for specs read
//! back from a log). Split from `mod.rs`, which holds the checks.

/// Where things are in a spec's source, as place strings for
/// [`Problem::place`](crate::spec::Problem::place).
///
/// Indexes are positions in `Spec::tasks` / `Spec::waves` (0-based). A `field` is a key
/// path below the task, wave or `[run]` table, dotted for nested keys: `"after"`,
/// `"retry.max_attempts"`, `"sim.outcomes"`, `"env.HOME"`, `"priority_caps.P1"`. An `item`
/// is an index into a list field (`after`, argv `command`, `sim.outcomes`, wave `tasks`).
pub trait Places {
    /// The task as a whole (in TOML: its `[[task]]` header).
    fn task(&self, task: usize) -> String;
    /// A field of a task, or one item of a list field.
    fn task_field(&self, task: usize, field: &str, item: Option<usize>) -> String;
    /// The wave as a whole (in TOML: its `[[wave]]` header).
    fn wave(&self, wave: usize) -> String;
    /// A field of a wave, or one item of a list field.
    fn wave_field(&self, wave: usize, field: &str, item: Option<usize>) -> String;
    /// A field of the `[run]` table.
    fn run_field(&self, field: &str) -> String;
}

/// [`Places`] without a source: `NAME: task[3].after[1]`. Used for JSON (which has no
/// spans) and for specs that come out of a log rather than a file.
#[derive(Debug, Clone, Copy)]
pub struct Unplaced<'a>(pub &'a str);

impl Places for Unplaced<'_> {
    fn task(&self, task: usize) -> String {
        format!("{}: task[{task}]", self.0)
    }

    fn task_field(&self, task: usize, field: &str, item: Option<usize>) -> String {
        format!("{}: task[{task}].{field}{}", self.0, item_suffix(item))
    }

    fn wave(&self, wave: usize) -> String {
        format!("{}: wave[{wave}]", self.0)
    }

    fn wave_field(&self, wave: usize, field: &str, item: Option<usize>) -> String {
        format!("{}: wave[{wave}].{field}{}", self.0, item_suffix(item))
    }

    fn run_field(&self, field: &str) -> String {
        format!("{}: run.{field}", self.0)
    }
}

fn item_suffix(item: Option<usize>) -> String {
    item.map(|i| format!("[{i}]")).unwrap_or_default()
}
