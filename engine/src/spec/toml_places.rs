//! Where a value of a TOML spec file is: a second, private parse of the text into a
//! *locator* that keeps the byte span of every value a problem may point at, built only
//! when validation found a problem (a valid spec pays for one parse).

use std::cell::OnceCell;
use std::collections::BTreeMap;
use std::ops::Range;

use serde::de::IgnoredAny;
use serde::Deserialize;
use toml::Spanned;

use super::validate::{Places, Unplaced};

/// Byte offsets at which each line starts (line 1 starts at 0).
pub(super) fn line_starts(text: &str) -> Vec<usize> {
    std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect()
}

/// The 1-based line holding byte `offset`.
pub(super) fn line_of(starts: &[usize], offset: usize) -> usize {
    starts.partition_point(|&start| start <= offset).max(1)
}

/// [`Places`] for a TOML file: `file:line`, from a lazily built locator; if the locator
/// cannot be built (it should always be, the text already parsed) it falls back to paths.
pub(super) struct TomlPlaces<'a> {
    file: &'a str,
    text: &'a str,
    located: OnceCell<Option<Located>>,
}

struct Located {
    doc: LocDoc,
    starts: Vec<usize>,
}

impl<'a> TomlPlaces<'a> {
    pub(super) fn new(file: &'a str, text: &'a str) -> Self {
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
