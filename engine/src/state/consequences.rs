//! The consequences of a record: what a task reaching its end, a wave opening or
//! closing, the run ending early or a cancel does to everything around it — the
//! dependents, the wave's failure policy, the parent, the obligations queued for the
//! scheduler. Split from `apply.rs`, which decides *which* record applies how.

use super::lifecycle::{Phase, TaskEvent};
use super::{ApplyError, Ending, State, WaveStatus};
use crate::graph::{TaskIdx, WaveIdx};
use crate::record::{ParentWoken, Terminal};
use crate::spec::{Cancellation, Downstream, WakePolicy, WaveFailure};

impl State {
    /// A task reaches its terminal state; everything that depends on it learns.
    pub(super) fn finish(&mut self, t: TaskIdx, state: Terminal) -> Result<(), ApplyError> {
        let was = self.tasks[t as usize].phase;
        self.transition(t, TaskEvent::Finished(state))?;
        self.exited.remove(&t);
        self.doomed.remove(&t);
        self.parents_done.remove(&t);
        self.to_delegate.remove(&t);
        self.cancel_notes.remove(&t);
        // Only a ready task is in the ready set (most tasks finish from `exited`: the
        // search would be a wasted walk down a large tree).
        if was == Phase::Ready {
            self.ready.remove(&self.ready_key(t));
        }
        debug_assert!(!self.ready.contains(&self.ready_key(t)), "only ready tasks are in the ready set");
        self.terminal += 1;

        let graph = self.g().clone();
        let node = graph.node(t);
        // Looked up only where a message needs it: the id sits in the spec, a cache miss
        // per finished task that the common path (a success nobody waits to hear of) skips.
        let id = || graph.id(t);
        let wave_idx = node.wave;
        let wave = graph.wave(wave_idx);

        // The wave and its failure policy.
        let ws = &mut self.waves[wave_idx as usize];
        ws.remaining -= 1;
        if ws.remaining == 0 && ws.status == WaveStatus::Open {
            self.closable.insert(wave_idx);
        }
        // A child cancelled on its own (not with its parent) holds a `hold` parent too:
        // someone has to say whether the parent's work is done without it.
        // (Not the children a hook's `stop` cancels: the parent asked for that.)
        if state == Terminal::Cancelled && wave.on_failure == WaveFailure::Hold {
            if let Some(p) = graph.group(wave.group).parent {
                let group = &mut self.groups[wave.group as usize];
                let on_its_own = group.cancelled.is_none() && group.stopped.is_none();
                if on_its_own && self.tasks[p as usize].phase != Phase::Done(Terminal::Cancelled) {
                    group.held.get_or_insert(format!("{} cancelled", id()));
                }
            }
        }
        if state.is_failure() {
            self.waves[wave_idx as usize].failures += 1;
            let cause = format!("{} {}", id(), state.name());
            let group = &mut self.groups[wave.group as usize];
            match wave.on_failure {
                WaveFailure::WarnAndContinue => group.warnings += 1,
                WaveFailure::FailParent => {
                    group.failed.get_or_insert(cause);
                    group.skip_rest = true;
                }
                // The run's own children have nobody to hold: the run fails.
                WaveFailure::Hold if graph.group(wave.group).parent.is_none() => {
                    group.failed.get_or_insert(cause);
                    group.skip_rest = true;
                }
                WaveFailure::Hold => {
                    group.held.get_or_insert(cause);
                }
                WaveFailure::StopWave => {
                    group.failed.get_or_insert(cause);
                    if !self.waves[wave_idx as usize].stopped {
                        self.waves[wave_idx as usize].stopped = true;
                        let why = format!("wave stopped: {} {}", id(), state.name());
                        for &s in &wave.tasks {
                            if matches!(self.tasks[s as usize].phase, Phase::Waiting | Phase::Ready) {
                                self.doom(s, Terminal::Skipped, &why);
                            }
                        }
                    }
                }
            }
        }
        // A parent whose hook said stop is not woken again: its answer is given.
        let stopped = self.groups[wave.group as usize].stopped.is_some();
        if let (WakePolicy::OnChildComplete, Some(parent), false) = (wave.wake, graph.wave_parent(wave_idx), stopped) {
            self.wakes.push_back(ParentWoken {
                parent: graph.id(parent).to_string(),
                wave: wave.ordinal,
                child: Some(id().to_string()),
            });
        }
        self.groups[wave.group as usize].remaining -= 1;
        self.check_group_done(wave.group);

        // Dependents.
        let downstream = graph.spec.run.on_failure;
        for d in graph.dependents(t) {
            if self.tasks[d as usize].phase.is_done() {
                continue;
            }
            if state == Terminal::Succeeded || downstream == Downstream::Continue {
                let task = &mut self.tasks[d as usize];
                task.unmet -= 1;
                if task.unmet == 0 && task.phase == Phase::Waiting && self.wave_open(graph.node(d).wave) {
                    self.make_ready(d);
                }
            } else if matches!(self.tasks[d as usize].phase, Phase::Waiting | Phase::Ready) {
                self.doom(d, Terminal::Blocked, &format!("blocked by {} ({})", id(), state.name()));
            }
        }

        // Children that never got to start follow their parent.
        if let (Some(g), false) = (node.children, was == Phase::Delegated) {
            let (child_state, why) = match state {
                Terminal::Cancelled => (Terminal::Cancelled, format!("parent {} cancelled", id())),
                _ => (Terminal::Skipped, format!("parent {} {}", id(), state.name())),
            };
            for &c in &graph.group(g).tasks {
                if matches!(self.tasks[c as usize].phase, Phase::Waiting | Phase::Ready) {
                    self.doom(c, child_state, &why);
                }
            }
        }
        Ok(())
    }

    pub(super) fn open_wave(&mut self, w: WaveIdx) {
        let graph = self.g().clone();
        let wave = graph.wave(w);
        self.waves[w as usize].status = WaveStatus::Open;
        self.groups[wave.group as usize].active_wave = Some(w);
        for &t in &wave.tasks {
            let task = &self.tasks[t as usize];
            if task.phase == Phase::Waiting && task.unmet == 0 && !self.doomed.contains_key(&t) {
                self.make_ready(t);
            }
        }
        if self.waves[w as usize].remaining == 0 {
            self.closable.insert(w);
        }
    }

    pub(super) fn close_wave(&mut self, w: WaveIdx) {
        let graph = self.g().clone();
        let wave = graph.wave(w);
        self.waves[w as usize].status = WaveStatus::Closed;
        let g = wave.group;
        self.groups[g as usize].active_wave = None;
        let parent = graph.group(g).parent;
        let stopped = self.groups[g as usize].stopped.is_some();
        if let (WakePolicy::OnWaveComplete, Some(p), false) = (wave.wake, parent, stopped) {
            self.wakes.push_back(ParentWoken { parent: graph.id(p).to_string(), wave: wave.ordinal, child: None });
        }
        let later = &graph.group(g).waves[wave.ordinal as usize + 1..];
        if self.groups[g as usize].skip_rest {
            let why = match parent {
                Some(p) => format!("parent {} failed", graph.id(p)),
                None => "run failed".to_string(),
            };
            for &lw in later {
                for &t in &graph.wave(lw).tasks {
                    if matches!(self.tasks[t as usize].phase, Phase::Waiting | Phase::Ready) {
                        self.doom(t, Terminal::Skipped, &why);
                    }
                }
            }
        } else if let Some(&next) = later.first() {
            if self.ending.is_none() {
                self.openable.insert(next);
                self.groups[g as usize].active_wave = Some(next);
            }
        }
        self.check_group_done(g);
    }

    /// The group's children may start: its first wave can open. (Once: a parent that
    /// delegated while running is released again when its command exits.)
    pub(super) fn release_group(&mut self, g: crate::graph::GroupIdx) {
        let graph = self.g().clone();
        if self.groups[g as usize].started {
            self.check_group_done(g);
            return;
        }
        self.groups[g as usize].started = true;
        if let Some(&first) = graph.group(g).waves.first() {
            self.openable.insert(first);
            self.groups[g as usize].active_wave = Some(first);
        }
        self.check_group_done(g);
    }

    pub(super) fn check_group_done(&mut self, g: crate::graph::GroupIdx) {
        let group = &self.groups[g as usize];
        if !group.started || group.remaining != 0 || group.active_wave.is_some() {
            return;
        }
        let held = group.held.is_some() && group.cancelled.is_none();
        if let Some(p) = self.g().group(g).parent {
            // A wake hook still out may yet stop the parent: it is not done before it
            // answers — unless the parent or the run is being cancelled, which no answer
            // can change (and a hook that hangs must not hold a cancel up).
            let cancelling = group.cancelled.is_some() || self.ending.is_some();
            if !cancelling && self.hook_pending(p) {
                return;
            }
            // Held: stuck until settled by hand (unless it is being cancelled).
            if held {
                return;
            }
            if self.tasks[p as usize].phase == Phase::Delegated {
                self.parents_done.insert(p);
            }
        }
    }

    /// Whether a wake hook of `p` is out, or due: a wake called for but not yet recorded
    /// (the last wave closing wakes the parent in the very step that empties its group;
    /// its hook must run, and answer, before the parent can be done).
    fn hook_pending(&self, p: TaskIdx) -> bool {
        if self.hooks.get(&p).is_some_and(|q| !q.is_empty()) {
            return true;
        }
        let graph = self.g();
        graph.node(p).hook && self.wakes.iter().any(|w| w.parent == graph.id(p))
    }

    /// The run ends early: kill what runs, cancel everything else.
    pub(super) fn end_run(&mut self, ending: Ending) {
        if self.ending.is_some() {
            return;
        }
        self.ending = Some(ending);
        self.deadline_pending = false;
        self.openable.clear();
        let reason = ending.kill_reason();
        for t in 0..self.tasks.len() as TaskIdx {
            match self.tasks[t as usize].phase {
                Phase::Running { kill: None, .. } => {
                    self.to_kill.insert(t, reason);
                }
                Phase::Delegated => self.cancel_with_children(t, ending.cause()),
                Phase::Waiting | Phase::Ready | Phase::BackingOff { .. } => {
                    self.doom(t, Terminal::Cancelled, ending.cause());
                }
                Phase::Running { .. } | Phase::Exited { .. } | Phase::Done(_) => {}
            }
        }
        for g in &mut self.groups {
            if g.active_wave.is_some_and(|w| self.waves[w as usize].status == WaveStatus::Pending) {
                g.active_wave = None;
            }
        }
    }

    /// Cancels one task (and, when cascading, its children and dependents).
    /// Cancels `root` (and, cascading, what depends on it or descends from it); `note`
    /// (who, and why) goes into every cause.
    pub(super) fn cancel_task(&mut self, root: TaskIdx, note: Option<&str>) {
        let graph = self.g().clone();
        let cascading = graph.spec.run.cancellation == Cancellation::Cascading;
        let mut targets = vec![root];
        if cascading {
            let mut seen = std::collections::BTreeSet::from([root]);
            let mut i = 0;
            while i < targets.len() {
                let t = targets[i];
                let node = graph.node(t);
                let children = node.children.map(|g| graph.group(g).tasks.as_slice()).unwrap_or(&[]);
                for n in graph.dependents(t).chain(children.iter().copied()) {
                    if seen.insert(n) {
                        targets.push(n);
                    }
                }
                i += 1;
            }
        }
        let cause = match note {
            Some(note) => format!("cancelled ({}, {note})", graph.id(root)),
            None => format!("cancelled ({})", graph.id(root)),
        };
        if let Some(note) = note {
            for &t in &targets {
                if matches!(self.tasks[t as usize].phase, Phase::Running { kill: None, .. }) {
                    self.cancel_notes.insert(t, note.to_string());
                }
            }
        }
        self.cancel_all(&targets, &cause, crate::record::KillReason::Cancel, cascading);
    }

    /// Cancels `targets`: running attempts are killed for `reason`, delegated parents
    /// end with (cascading) or before (isolated) their children, the rest end now.
    pub(super) fn cancel_all(
        &mut self,
        targets: &[TaskIdx],
        cause: &str,
        reason: crate::record::KillReason,
        cascading: bool,
    ) {
        for &t in targets {
            match self.tasks[t as usize].phase {
                Phase::Running { kill: None, .. } => {
                    self.to_kill.insert(t, reason);
                }
                // Cascading: its children are being cancelled too; it ends after them.
                Phase::Delegated if cascading => self.cancel_with_children(t, cause),
                // Isolated: it ends now and its children keep running.
                Phase::Waiting | Phase::Ready | Phase::BackingOff { .. } | Phase::Delegated => {
                    self.doom(t, Terminal::Cancelled, cause);
                }
                _ => {}
            }
        }
    }

    /// A delegated parent cancelled together with its children finishes (cancelled)
    /// when they have, through the ordinary parent-done path.
    pub(super) fn cancel_with_children(&mut self, t: TaskIdx, cause: &str) {
        let g = self.g().node(t).children.expect("a delegated task has children");
        self.groups[g as usize].cancelled.get_or_insert_with(|| cause.to_string());
        self.check_group_done(g);
    }

    pub(super) fn make_ready(&mut self, t: TaskIdx) {
        if self.ending.is_some() {
            return;
        }
        let graph = self.g().clone();
        if graph.node(t).runs {
            self.tasks[t as usize].phase =
                Phase::Waiting.next(TaskEvent::MadeReady).expect("make_ready is only called on waiting tasks");
            self.ready.insert(self.ready_key(t));
        } else {
            self.to_delegate.insert(t);
        }
    }

    pub(super) fn doom(&mut self, t: TaskIdx, state: Terminal, cause: &str) {
        if self.tasks[t as usize].phase.is_done() || self.doomed.contains_key(&t) {
            return;
        }
        self.ready.remove(&self.ready_key(t));
        self.to_delegate.remove(&t);
        self.doomed.insert(t, (state, cause.to_string()));
    }
}
