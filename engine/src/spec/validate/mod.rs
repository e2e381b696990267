//! Semantic checks of a parsed spec: references that resolve, ids that are unique, caps
//! that admit work, and a task graph (dependencies, parents, waves) that can finish.
//!
//! Every problem is collected, not just the first, so a user fixes a file in one pass.
//! Problems come out in a fixed order (run settings, then tasks and waves in declaration
//! order, then cycles), whatever the size of the spec: the checks are linear (the cycle
//! search is an iterative Tarjan over a waits-for graph), as specs may hold a million tasks.
//!
//! Where a problem is reported is the business of a [`Places`]: the parser's knows the
//! lines of a TOML file; [`Unplaced`] names paths (`task[3].after[1]`) for JSON and for
//! specs read back from a log.

// Fx: a fixed, fast hash (no random keys, so no OS randomness in the core). These maps
// are only looked up, never iterated, so their order cannot show in any output.
mod places;
mod structure;
mod waits_for;

pub use places::{Places, Unplaced};

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use waits_for::*;

use super::{Backoff, Command, Error, Problem, SimOutcome, Spec, TaskIds, TaskSpec, WaveSpec};

/// Checks `spec` and returns every problem found, placed by `places`.
pub fn validate(spec: &Spec, places: &dyn Places) -> Result<(), Error> {
    validate_resolved(spec, places).map(drop)
}

/// What validating a spec resolved, handed to `Graph::compile` so that it does not
/// resolve every name again. Only ever made for a valid spec: every name resolves.
#[derive(Debug)]
pub struct Resolved {
    pub ids: TaskIds,
    /// Task `t`'s `after`, as indices in the order written: `after_targets[after_offsets[t]
    /// ..after_offsets[t + 1]]`.
    pub after_offsets: Vec<usize>,
    pub after_targets: Vec<u32>,
    /// Each task's parent: its own `parent`, else the parent of the wave listing it.
    pub parent: Vec<Option<u32>>,
    /// Each wave's parent, and its tasks as indices in the order listed.
    pub wave_parent: Vec<Option<u32>>,
    pub wave_members: Vec<Vec<usize>>,
}

/// [`validate`], keeping what it resolved.
pub fn validate_resolved(spec: &Spec, places: &dyn Places) -> Result<Resolved, Error> {
    let Some((ids, first)) = TaskIds::build(spec) else {
        let message = "the task ids take more than 4 GiB".to_string();
        return Err(Error::Invalid(vec![Problem { place: places.task(0), message }]));
    };
    let mut checker = Checker::new(spec, places, ids, first);
    checker.run_settings();
    for (index, task) in spec.tasks.iter().enumerate() {
        checker.task(index, task);
    }
    let structure = checker.structure();
    checker.graph(&structure);
    checker.finish()?;
    let owner = |o: &Owner| match *o {
        Owner::Task(t) => Some(t as u32),
        Owner::Root | Owner::Unknown => None,
    };
    Ok(Resolved {
        parent: structure.parent.iter().map(owner).collect(),
        wave_parent: structure.wave_owner.iter().map(owner).collect(),
        wave_members: structure.wave_members,
        ids: checker.ids,
        after_offsets: checker.after_offsets,
        after_targets: checker.after_targets,
    })
}

/// What a problem is about; problems are sorted by it so the order is the declaration
/// order of what they refer to, not the order the checks happened to run in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum About {
    Run,
    Task(usize),
    Wave(usize),
    Cycle(usize),
}

/// Where a parent reference leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    /// The run itself (no parent).
    Root,
    Task(usize),
    /// A name that is not a task (already reported).
    Unknown,
}

/// The parent/wave structure, resolved once and shared by the later checks.
struct Structure {
    /// Each task's parent: its own `parent`, else the parent of the wave listing it.
    parent: Vec<Owner>,
    /// Tasks whose parent chain loops back to them; their parent links are left out of
    /// the waits-for graph so the loop is reported once, as a parent loop.
    in_parent_loop: Vec<bool>,
    /// The wave each task is listed in (its first listing), if that wave is its parent's.
    wave_of: Vec<Option<usize>>,
    /// Each wave's owner, and the wave before it of the same owner.
    wave_owner: Vec<Owner>,
    wave_position: Vec<usize>,
    previous_wave: Vec<Option<usize>>,
    /// Which tasks are listed in which wave (first listings of known, matching tasks).
    wave_members: Vec<Vec<usize>>,
}

struct Checker<'a> {
    spec: &'a Spec,
    places: &'a dyn Places,
    problems: Vec<(About, Problem)>,
    /// Task id → index of its first declaration.
    ids: TaskIds,
    /// Each task's first declaration of its id (itself, unless the id repeats).
    first: Vec<usize>,
    /// Each task's own `parent`, resolved (the root if it has none).
    own_parent: Vec<Owner>,
    /// The tasks each task is `after`, resolved once (a million-task spec must not pay
    /// for a hash lookup twice): `after_targets[after_offsets[t]..after_offsets[t + 1]]`,
    /// leaving out unknown names and the task itself.
    after_offsets: Vec<usize>,
    after_targets: Vec<u32>,
}

impl<'a> Checker<'a> {
    fn new(spec: &'a Spec, places: &'a dyn Places, ids: TaskIds, first: Vec<usize>) -> Self {
        let tasks = spec.tasks.len();
        let mut after_offsets = Vec::with_capacity(tasks + 1);
        after_offsets.push(0);
        Checker {
            spec,
            places,
            problems: Vec::new(),
            ids,
            first,
            own_parent: Vec::with_capacity(tasks),
            after_offsets,
            after_targets: Vec::new(),
        }
    }

    fn report(&mut self, about: About, place: String, message: String) {
        self.problems.push((about, Problem { place, message }));
    }

    fn finish(&mut self) -> Result<(), Error> {
        if self.problems.is_empty() {
            return Ok(());
        }
        let mut problems = std::mem::take(&mut self.problems);
        // Stable: problems about the same thing keep the order the checks found them in.
        problems.sort_by_key(|(about, _)| *about);
        Err(Error::Invalid(problems.into_iter().map(|(_, problem)| problem).collect()))
    }

    fn run_settings(&mut self) {
        let run = &self.spec.run;
        if run.max_concurrency == Some(0) {
            self.report(
                About::Run,
                self.places.run_field("max_concurrency"),
                "run.max_concurrency must be at least 1".into(),
            );
        }
        for (priority, cap) in &run.priority_caps {
            if *cap == 0 {
                let place = self.places.run_field(&format!("priority_caps.{priority:?}"));
                self.report(About::Run, place, format!("run.priority_caps.{priority:?} must be at least 1"));
            }
        }
        if run.timeout_ms == Some(0) {
            self.report(About::Run, self.places.run_field("timeout_ms"), "run.timeout_ms must be at least 1".into());
        }
        if run.hook_timeout_ms == Some(0) {
            let place = self.places.run_field("hook_timeout_ms");
            self.report(About::Run, place, "run.hook_timeout_ms must be at least 1".into());
        }
        if let Some(message) = run.before_finalize.as_ref().and_then(|c| blank_command(c)) {
            self.report(About::Run, self.places.run_field("before_finalize"), format!("run.before_finalize {message}"));
        }
        for (i, cancel) in run.sim_cancel.iter().enumerate() {
            if let Some(task) = &cancel.task {
                if self.ids.get(task).is_none() {
                    let place = self.places.run_field(&format!("sim_cancel[{i}].task"));
                    self.report(About::Run, place, format!("run.sim_cancel names {task:?}, which is not a task"));
                }
            }
        }
    }

    /// The checks that need nothing but the task itself and the id table.
    fn task(&mut self, index: usize, task: &'a TaskSpec) {
        let about = About::Task(index);
        let id = task.id.as_str();
        if id.is_empty() {
            self.report(about, self.places.task_field(index, "id", None), "a task id is empty".into());
        } else if !is_valid_id(id) {
            let message = format!("task id {id:?} contains whitespace or control characters");
            self.report(about, self.places.task_field(index, "id", None), message);
        }
        let first = self.first[index];
        if first != index {
            let message = format!("duplicate task id {id:?} (first declared at {})", self.places.task(first));
            self.report(about, self.places.task_field(index, "id", None), message);
        }
        self.command(index, task);
        if let Some(message) = task.more().hook.as_ref().and_then(|c| blank_command(c)) {
            self.report(about, self.places.task_field(index, "hook", None), format!("task {id:?}: hook {message}"));
        }
        for (key, value) in &task.more().env {
            let field = format!("env.{key}");
            if key.is_empty() || key.contains(['=', '\0']) {
                let message = format!("task {id:?} has an invalid environment variable name {key:?}");
                self.report(about, self.places.task_field(index, &field, None), message);
            } else if value.contains('\0') {
                let message = format!("task {id:?}: environment variable {key} contains a NUL byte");
                self.report(about, self.places.task_field(index, &field, None), message);
            }
        }
        self.after(index, task);
        let parent = self.resolve(task.parent.as_deref());
        self.own_parent.push(parent);
        if parent == Owner::Unknown {
            let name = task.parent.as_deref().unwrap_or_default();
            let message = format!("task {id:?} has parent {name:?}, which is not a task");
            self.report(about, self.places.task_field(index, "parent", None), message);
        }
        if task.more().timeout_ms == Some(0) {
            let message = format!("task {id:?}: timeout_ms must be at least 1");
            self.report(about, self.places.task_field(index, "timeout_ms", None), message);
        }
        let retry = &task.more().retry;
        if retry.max_attempts == 0 {
            let message = format!("task {id:?}: retry.max_attempts must be at least 1 (1 means no retry)");
            self.report(about, self.places.task_field(index, "retry.max_attempts", None), message);
        }
        if let (Backoff::Exponential, Some(max_ms)) = (retry.backoff, retry.max_ms) {
            if max_ms < retry.base_ms {
                let message =
                    format!("task {id:?}: retry.max_ms ({max_ms}) is less than retry.base_ms ({})", retry.base_ms);
                self.report(about, self.places.task_field(index, "retry.max_ms", None), message);
            }
        }
        if let Some(sim) = &task.sim {
            let no_timeout = task.more().timeout_ms.is_none() && self.spec.run.timeout_ms.is_none();
            if no_timeout {
                if let Some(item) = sim.outcomes.iter().position(|o| *o == SimOutcome::Hang) {
                    let message = format!(
                        "task {id:?} is simulated to hang but nothing would end it: set timeout_ms on the task or the run"
                    );
                    self.report(about, self.places.task_field(index, "sim.outcomes", Some(item)), message);
                }
            }
        }
    }

    fn command(&mut self, index: usize, task: &TaskSpec) {
        let about = About::Task(index);
        let id = task.id.as_str();
        match &task.command {
            None => {}
            Some(Command::Argv(argv)) => match argv.first() {
                None => {
                    let message = format!("task {id:?} has an empty command (an argv list needs at least the program)");
                    self.report(about, self.places.task_field(index, "command", None), message);
                }
                Some(program) if program.trim().is_empty() => {
                    let message = format!("task {id:?}: the program (the first item of command) is blank");
                    self.report(about, self.places.task_field(index, "command", Some(0)), message);
                }
                Some(_) => {
                    if let Some(item) = argv.iter().position(|arg| arg.contains('\0')) {
                        let message = format!("task {id:?}: command item {item} contains a NUL byte");
                        self.report(about, self.places.task_field(index, "command", Some(item)), message);
                    }
                }
            },
            Some(Command::Shell(line)) => {
                if line.trim().is_empty() {
                    let message = format!("task {id:?} has a blank command");
                    self.report(about, self.places.task_field(index, "command", None), message);
                } else if line.contains('\0') {
                    let message = format!("task {id:?}: command contains a NUL byte");
                    self.report(about, self.places.task_field(index, "command", None), message);
                }
            }
        }
    }

    fn after(&mut self, index: usize, task: &TaskSpec) {
        let about = About::Task(index);
        let id = task.id.as_str();
        // A set only for long lists: most tasks have a handful of dependencies.
        let mut seen: HashSet<&str> = HashSet::default();
        for (item, name) in task.after.iter().enumerate() {
            let places = self.places;
            let place = || places.task_field(index, "after", Some(item));
            let repeated =
                if task.after.len() > 16 { !seen.insert(name.as_str()) } else { task.after[..item].contains(name) };
            let target = self.ids.get(name);
            if name == id {
                self.report(about, place(), format!("task {id:?} lists itself in after"));
            } else if let Some(target) = target {
                self.after_targets.push(target as u32);
                if repeated {
                    self.report(about, place(), format!("task {id:?} lists {name:?} twice in after"));
                }
            } else {
                self.report(about, place(), format!("task {id:?} is after {name:?}, which is not a task"));
            }
        }
        self.after_offsets.push(self.after_targets.len());
    }

    fn resolve(&self, name: Option<&str>) -> Owner {
        match name {
            None => Owner::Root,
            Some(name) => self.ids.get(name).map_or(Owner::Unknown, Owner::Task),
        }
    }

    /// Builds the waits-for graph and reports one cycle per strongly connected component.
    fn graph(&mut self, structure: &Structure) {
        // Node numbers are u32 (half the memory of usize on big specs); a spec too big for
        // them could not be held in memory anyway, but skip rather than wrap.
        if 2 * self.spec.tasks.len() + self.spec.waves.len() >= NONE as usize {
            return;
        }
        let graph = WaitsFor::build(self.spec, &self.after_offsets, &self.after_targets, structure);
        let mut cycles: Vec<Vec<u32>> = graph.cycles();
        // Each cycle starts at its first-declared task; order the cycles the same way.
        cycles.sort_by_key(|cycle| cycle.first().copied());
        for cycle in cycles {
            if let Some(problem) = self.describe_cycle(&cycle, structure) {
                let about = About::Cycle(cycle.first().map_or(0, |&n| n as usize));
                self.problems.push((about, problem));
            }
        }
    }

    fn describe_cycle(&self, cycle: &[u32], structure: &Structure) -> Option<Problem> {
        let tasks = self.spec.tasks.len();
        let hops = hops(cycle, tasks);
        let first = hops.first()?;
        let id = |task: usize| self.spec.tasks[task].id.as_str();

        // The chain of task ids; long cycles are shortened in the middle.
        let mut chain: Vec<String> = hops.iter().map(|hop| id(hop.from).to_string()).collect();
        chain.push(id(first.from).to_string());
        const SHOWN: usize = 16;
        if chain.len() > SHOWN + 2 {
            let hidden = chain.len() - SHOWN;
            let tail = chain.split_off(chain.len() - 3);
            chain.truncate(SHOWN - 3);
            chain.push(format!("… ({hidden} more) …"));
            chain.extend(tail);
        }
        let mut message = format!("dependency cycle: {}", chain.join(" → "));

        // `after` links explain themselves; the structural ones get a word.
        let reasons: Vec<String> = hops
            .iter()
            .filter_map(|hop| match hop.kind {
                HopKind::After => None,
                HopKind::ParentCommand => {
                    Some(format!("{} starts after its parent {}'s command", id(hop.from), id(hop.to)))
                }
                HopKind::Child => Some(format!("{} is done only when its child {} is", id(hop.from), id(hop.to))),
                HopKind::Wave(wave) => {
                    let label = wave_label(self.spec, wave, &structure.wave_owner, &structure.wave_position);
                    Some(format!("{} waits for {label}, which holds {}, to close", id(hop.from), id(hop.to)))
                }
            })
            .collect();
        if !reasons.is_empty() {
            const EXPLAINED: usize = 4;
            let more = reasons.len().saturating_sub(EXPLAINED);
            let mut shown = reasons.into_iter().take(EXPLAINED).collect::<Vec<_>>().join("; ");
            if more > 0 {
                shown.push_str(&format!("; and {more} more"));
            }
            message.push_str(&format!(" ({shown})"));
        }

        // Point at the link the user most likely got wrong: an `after` entry if the cycle
        // has one (parents and waves are rarely the mistake), else a `parent` field.
        let blame = hops
            .iter()
            .find(|hop| matches!(hop.kind, HopKind::After))
            .or_else(|| hops.iter().find(|hop| matches!(hop.kind, HopKind::ParentCommand)))
            .unwrap_or(first);
        let place = match blame.kind {
            HopKind::After => {
                let after = &self.spec.tasks[blame.from].after;
                match after.iter().position(|name| name == id(blame.to)) {
                    Some(item) => self.places.task_field(blame.from, "after", Some(item)),
                    None => self.places.task(blame.from),
                }
            }
            HopKind::ParentCommand => self.places.task_field(blame.from, "parent", None),
            _ => self.places.task(blame.from),
        };
        Some(Problem { place, message })
    }
}

/// What is wrong with a hook's command, if anything: it must name something to run.
fn blank_command(command: &Command) -> Option<&'static str> {
    match command {
        Command::Argv(argv) if argv.first().is_none_or(|p| p.trim().is_empty()) => Some("names no program"),
        Command::Shell(line) if line.trim().is_empty() => Some("is blank"),
        Command::Argv(argv) if argv.iter().any(|a| a.contains('\0')) => Some("contains a NUL byte"),
        Command::Shell(line) if line.contains('\0') => Some("contains a NUL byte"),
        _ => None,
    }
}

/// Ids are names on a command line and in logs: no whitespace, no control characters.
fn is_valid_id(id: &str) -> bool {
    !id.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// `task "p"`, or `the run` for the root.
fn owner_name(owner: Owner, written: Option<&str>) -> String {
    match (owner, written) {
        (Owner::Root, _) | (_, None) => "the run".into(),
        (_, Some(name)) => format!("task {name:?}"),
    }
}

/// How messages name a wave: by its id, else by its position among its owner's waves.
fn wave_label(spec: &Spec, wave: usize, owners: &[Owner], positions: &[usize]) -> String {
    let Some(spec) = spec.waves.get(wave) else { return format!("wave[{wave}]") };
    match &spec.id {
        Some(id) => format!("wave {id:?}"),
        None => format!("wave {} of {}", positions[wave] + 1, owner_name(owners[wave], spec.parent.as_deref())),
    }
}

// The waits-for graph. Node `2t` is "task t's command has finished" (run), node `2t + 1`
// is "task t is terminal" (done), node `2T + w` is "wave w is closed". An edge a → b
// means a cannot happen before b. A task's run waits for the done of each task it is
// `after`, for its parent's run, and for the previous wave of its parent being closed; a
// task's done waits for its run and for the done of each child; a wave closes when its
// tasks are done (and the wave before it closed). Wave nodes keep big waves linear: wave
// k + 1's tasks each wait for one node, not for every task of wave k.
