//! The parent/wave structure of a spec: who owns each task, which waves each owner
//! has and in what order, and parent chains that loop. Resolved once, then shared by
//! the later checks (split from `mod.rs`, which holds the per-task checks).

use super::*;

impl<'a> Checker<'a> {
    /// Resolves parents and waves, reporting the problems of waves and of the structure:
    /// unknown or mismatched parents, double listings, parent loops, children missing from
    /// their parent's waves, tasks with nothing to run.
    pub(super) fn structure(&mut self) -> Structure {
        let spec = self.spec;
        let tasks = spec.tasks.len();
        let waves = spec.waves.len();

        // Waves: owners, and their position among the owner's waves (grouped by the name
        // written, so waves of an unknown parent still get a readable label).
        let wave_owner: Vec<Owner> = spec.waves.iter().map(|w| self.resolve(w.parent.as_deref())).collect();
        let mut positions = vec![0; waves];
        let mut previous_wave = vec![None; waves];
        let mut last_of: HashMap<Option<&str>, usize> = HashMap::default();
        for (index, wave) in spec.waves.iter().enumerate() {
            if let Some(previous) = last_of.insert(wave.parent.as_deref(), index) {
                positions[index] = positions[previous] + 1;
                previous_wave[index] = Some(previous);
            }
        }

        let mut wave_ids: HashMap<&str, usize> = HashMap::default();
        let mut listed_in: Vec<Option<(usize, usize)>> = vec![None; tasks];
        let mut wave_of = vec![None; tasks];
        let mut wave_members = vec![Vec::new(); waves];
        for (index, wave) in spec.waves.iter().enumerate() {
            self.wave(index, wave, &wave_owner, &positions, &mut wave_ids);
            for (item, name) in wave.tasks.iter().enumerate() {
                let about = About::Wave(index);
                let places = self.places;
                let place = || places.wave_field(index, "tasks", Some(item));
                let label = || wave_label(spec, index, &wave_owner, &positions);
                let Some(task) = self.ids.get(name) else {
                    self.report(about, place(), format!("{} lists {name:?}, which is not a task", label()));
                    continue;
                };
                if let Some((first_wave, first_item)) = listed_in[task] {
                    let message = if first_wave == index {
                        format!("{} lists {name:?} twice", label())
                    } else {
                        let first = wave_label(self.spec, first_wave, &wave_owner, &positions);
                        let at = self.places.wave_field(first_wave, "tasks", Some(first_item));
                        format!("task {name:?} is in two waves: {}, and {first} (at {at})", label())
                    };
                    self.report(about, place(), message);
                    continue;
                }
                listed_in[task] = Some((index, item));
                let own_parent = spec.tasks[task].parent.as_deref();
                if own_parent.is_some() && own_parent != wave.parent.as_deref() {
                    let listed = match &wave.id {
                        Some(_) => format!(
                            "{}, which holds children of {}",
                            label(),
                            owner_name(wave_owner[index], wave.parent.as_deref())
                        ),
                        None => label(),
                    };
                    let message = format!(
                        "task {name:?} has parent {:?} (at {}), but is listed in {listed}",
                        own_parent.unwrap_or_default(),
                        self.places.task_field(task, "parent", None),
                    );
                    self.report(about, place(), message);
                    continue;
                }
                wave_of[task] = Some(index);
                wave_members[index].push(task);
            }
            if wave.max_concurrency == Some(0) {
                let label = wave_label(spec, index, &wave_owner, &positions);
                let message = format!("{label}: max_concurrency must be at least 1");
                self.report(About::Wave(index), self.places.wave_field(index, "max_concurrency", None), message);
            }
        }

        let parent: Vec<Owner> = (0..tasks)
            .map(|task| match (&spec.tasks[task].parent, listed_in[task]) {
                (Some(_), _) => self.own_parent[task],
                (None, Some((wave, _))) => wave_owner[wave],
                (None, None) => Owner::Root,
            })
            .collect();
        let in_parent_loop = self.parent_loops(&parent);

        // Children missing from their parent's waves, and tasks with nothing to run.
        let mut root_has_waves = false;
        let mut has_waves = vec![false; tasks];
        for owner in &wave_owner {
            match *owner {
                Owner::Root => root_has_waves = true,
                Owner::Task(task) => has_waves[task] = true,
                Owner::Unknown => {}
            }
        }
        let mut has_children = vec![false; tasks];
        for owner in &parent {
            if let Owner::Task(task) = *owner {
                has_children[task] = true;
            }
        }
        for (index, task) in spec.tasks.iter().enumerate() {
            let id = task.id.as_str();
            let about = About::Task(index);
            // A repeated id is reported already; its waves cannot name it apart from the first.
            let repeated = self.first[index] != index;
            if listed_in[index].is_none() && !repeated {
                let missing = match parent[index] {
                    Owner::Root if root_has_waves => Some("the run has [[wave]]s".to_string()),
                    Owner::Task(p) if has_waves[p] => Some(format!("its parent {:?} has [[wave]]s", spec.tasks[p].id)),
                    _ => None,
                };
                if let Some(why) = missing {
                    let message = format!("task {id:?} is in no wave, but {why}: list it in one of them");
                    self.report(about, self.places.task(index), message);
                }
            }
            if task.command.is_none() && !has_children[index] && task.sim.is_none() {
                let message = format!("task {id:?} has nothing to run (no command, no children)");
                self.report(about, self.places.task(index), message);
            }
        }

        Structure { parent, in_parent_loop, wave_of, wave_owner, wave_position: positions, previous_wave, wave_members }
    }

    /// The checks of a wave on its own: id, parent, emptiness.
    pub(super) fn wave(
        &mut self,
        index: usize,
        wave: &'a WaveSpec,
        owners: &[Owner],
        positions: &[usize],
        wave_ids: &mut HashMap<&'a str, usize>,
    ) {
        let about = About::Wave(index);
        let label = wave_label(self.spec, index, owners, positions);
        if let Some(id) = wave.id.as_deref() {
            if id.is_empty() || !is_valid_id(id) {
                let message = format!("wave id {id:?} is empty or contains whitespace or control characters");
                self.report(about, self.places.wave_field(index, "id", None), message);
            }
            if let Some(&first) = wave_ids.get(id) {
                let message = format!("duplicate wave id {id:?} (first declared at {})", self.places.wave(first));
                self.report(about, self.places.wave_field(index, "id", None), message);
            } else {
                wave_ids.insert(id, index);
            }
        }
        if owners[index] == Owner::Unknown {
            let name = wave.parent.as_deref().unwrap_or_default();
            let message = match &wave.id {
                Some(id) => format!("wave {id:?} has parent {name:?}, which is not a task"),
                None => format!("the parent of a wave, {name:?}, is not a task"),
            };
            self.report(about, self.places.wave_field(index, "parent", None), message);
        }
        if wave.tasks.is_empty() {
            self.report(about, self.places.wave_field(index, "tasks", None), format!("{label} lists no tasks"));
        }
    }

    /// Finds parent chains that loop (each task has at most one parent, so following
    /// parents from every task, marking what was seen, is linear), reports each loop once.
    pub(super) fn parent_loops(&mut self, parent: &[Owner]) -> Vec<bool> {
        const NEW: u8 = 0;
        const ON_PATH: u8 = 1;
        const DONE: u8 = 2;
        let tasks = parent.len();
        let mut state = vec![NEW; tasks];
        let mut in_loop = vec![false; tasks];
        let mut path = Vec::new();
        for start in 0..tasks {
            let mut at = Some(start);
            while let Some(task) = at.filter(|&t| state[t] == NEW) {
                state[task] = ON_PATH;
                path.push(task);
                at = match parent[task] {
                    Owner::Task(next) => Some(next),
                    Owner::Root | Owner::Unknown => None,
                };
            }
            // Reaching a task of the current path again is a loop; reaching one of an
            // earlier path (or the top) is not.
            if let Some(again) = at.filter(|&t| state[t] == ON_PATH) {
                if let Some(from) = path.iter().position(|&t| t == again) {
                    let members = &path[from..];
                    for &member in members {
                        in_loop[member] = true;
                    }
                    self.report_parent_loop(members);
                }
            }
            for &task in &path {
                state[task] = DONE;
            }
            path.clear();
        }
        in_loop
    }

    pub(super) fn report_parent_loop(&mut self, members: &[usize]) {
        let Some(first) = members.iter().enumerate().min_by_key(|(_, &task)| task).map(|(i, _)| i) else {
            return;
        };
        let lead = members[first];
        let id = &self.spec.tasks[lead].id;
        let message = if members.len() == 1 {
            format!("task {id:?} is its own parent")
        } else {
            let chain: Vec<&str> = members[first..]
                .iter()
                .chain(&members[..first])
                .chain(std::iter::once(&lead))
                .map(|&t| self.spec.tasks[t].id.as_str())
                .collect();
            format!("parent chain loops: {} (each is the parent of the one before)", chain.join(" → "))
        };
        self.report(About::Task(lead), self.places.task_field(lead, "parent", None), message);
    }
}
