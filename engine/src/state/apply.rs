//! `State::apply`: the fold step. Total over every record kind; an illegal record is an
//! `ApplyError`, never a panic. Every consequence that needs a decision is queued as an
//! obligation for `scheduler::decide`.

use std::sync::Arc;

use super::lifecycle::{AttemptOutcome, Phase, TaskEvent};
use super::{ApplyError, Ending, ReadyKey, RunPhase, State, WaveStatus};
use crate::aggregate;
use crate::graph::{Graph, TaskIdx, WaveIdx, ROOT};
use crate::record::{Digest, Event, Record, RunOutcome, TimerKey};

impl State {
    /// Applies one record. The running engine and replay both call exactly this.
    pub fn apply(&mut self, record: &Record) -> Result<(), ApplyError> {
        if self.is_finished() {
            return Err(ApplyError::AfterFinish);
        }
        if record.event.is_input() {
            if record.time_ms < self.now_ms {
                return Err(ApplyError::TimeWentBackwards { time_ms: record.time_ms, now_ms: self.now_ms });
            }
            self.now_ms = record.time_ms;
        } else if record.time_ms != self.now_ms {
            return Err(ApplyError::DecisionTime { time_ms: record.time_ms, now_ms: self.now_ms });
        }
        if self.graph.is_none() && !matches!(record.event, Event::RunStarted(_)) {
            return Err(ApplyError::NotStarted { kind: record.event.name() });
        }
        if let Event::RunStarted(r) = &record.event {
            super::start::started_as_written(record.time_ms, &r.executor)?;
        }
        self.apply_event(&record.event)?;
        self.applied += 1;
        Ok(())
    }

    fn apply_event(&mut self, event: &Event) -> Result<(), ApplyError> {
        match event {
            Event::RunStarted(r) => self.start(r),
            Event::AttemptExited(e) => {
                let t = self.lookup(&e.task)?;
                let kill = match self.tasks[t as usize].phase {
                    Phase::Running { kill, .. } => kill,
                    _ => None,
                };
                let outcome = AttemptOutcome::of(e.status, kill);
                self.transition(t, TaskEvent::Exited { attempt: e.attempt, outcome })?;
                let task = &mut self.tasks[t as usize];
                task.output = e.output;
                task.last_status = Some(e.status);
                self.attempt_ended(t);
                Ok(())
            }
            Event::AttemptLost(e) => {
                let t = self.lookup(&e.task)?;
                // An attempt that was being killed ends as the kill meant (cancelled, timed
                // out): the engine's crash must not undo a cancel by retrying the task.
                let outcome = match self.tasks[t as usize].phase {
                    Phase::Running { kill: Some(crate::record::KillReason::Timeout), .. } => AttemptOutcome::TimedOut,
                    Phase::Running { kill: Some(reason), .. } => AttemptOutcome::Cancelled(reason),
                    _ => AttemptOutcome::Lost,
                };
                self.transition(t, TaskEvent::Exited { attempt: e.attempt, outcome })?;
                // Only an attempt the crash cut short is left out of the count; one that
                // was being killed got its verdict, and counts as any other.
                if outcome == AttemptOutcome::Lost {
                    self.tasks[t as usize].lost += 1;
                }
                self.attempt_ended(t);
                Ok(())
            }
            Event::AttemptStarted(a) => {
                let t = self.lookup(&a.task)?;
                let task = &mut self.tasks[t as usize];
                let running = matches!(task.phase, Phase::Running { attempt, .. } if attempt == a.attempt);
                check(running, "attempt_started for an attempt that is not running")?;
                // One process per attempt: a second record would name another pid for it.
                check(!task.started, "a second attempt_started for the same attempt")?;
                task.started = true;
                Ok(())
            }
            Event::TimerFired(f) => self.timer_fired(&f.timer),
            Event::CancelRequested(c) => match &c.task {
                None => {
                    self.end_run(Ending::Cancelled);
                    Ok(())
                }
                Some(id) => {
                    let t = self.lookup(id)?;
                    self.cancel_task(t, None);
                    Ok(())
                }
            },
            Event::RunDeadlineArmed(_) => {
                check(self.deadline_pending, "run_deadline_armed without a run timeout")?;
                self.deadline_pending = false;
                Ok(())
            }
            Event::WaveOpened(w) => {
                let wave = self.lookup_wave(w.parent.as_deref(), w.wave)?;
                check(self.openable.remove(&wave), "wave_opened for a wave that may not open")?;
                self.open_wave(wave);
                Ok(())
            }
            Event::AttemptDispatched(d) => {
                let t = self.lookup(&d.task)?;
                let expected = self.tasks[t as usize].attempts + 1;
                check(d.attempt == expected, "attempt numbers must count up by one")?;
                self.transition(t, TaskEvent::Dispatched { attempt: d.attempt })?;
                self.ready.remove(&self.ready_key(t));
                self.tasks[t as usize].attempts = d.attempt;
                self.tasks[t as usize].started = false;
                self.count_running(t, true);
                // A note belongs to the attempt its cancel was killing (one lost to an
                // engine crash is retried: the new attempt was not cancelled).
                self.cancel_notes.remove(&t);
                Ok(())
            }
            Event::AttemptKillRequested(k) => {
                let t = self.lookup(&k.task)?;
                let running =
                    matches!(self.tasks[t as usize].phase, Phase::Running { attempt, .. } if attempt == k.attempt);
                check(running, "kill requested for an attempt that is not running")?;
                self.transition(t, TaskEvent::KillRequested(k.reason))?;
                self.to_kill.remove(&t);
                Ok(())
            }
            Event::RetryScheduled(r) => {
                let t = self.lookup(&r.task)?;
                self.transition(t, TaskEvent::RetryScheduled { attempt: r.attempt, immediate: r.delay_ms == 0 })?;
                self.exited.remove(&t);
                if r.delay_ms == 0 {
                    self.ready.insert(self.ready_key(t));
                }
                Ok(())
            }
            Event::TaskDelegated(d) => {
                let t = self.lookup(&d.task)?;
                let lost = matches!(self.tasks[t as usize].phase, Phase::Exited { outcome: AttemptOutcome::Lost, .. });
                check(
                    !lost || self.tasks[t as usize].released,
                    "task_delegated after a lost attempt that had not delegated",
                )?;
                self.transition(t, TaskEvent::Delegated)?;
                self.exited.remove(&t);
                self.to_delegate.remove(&t);
                self.ready.remove(&self.ready_key(t));
                let graph = self.g();
                let Some(g) = graph.node(t).children else {
                    return Err(ApplyError::Inconsistent(format!("task {} has no children to delegate to", d.task)));
                };
                self.release_group(g);
                Ok(())
            }
            Event::TaskFinished(f) => {
                let t = self.lookup(&f.task)?;
                self.finish(t, f.state)
            }
            Event::WaveClosed(c) => {
                let wave = self.lookup_wave(c.parent.as_deref(), c.wave)?;
                check(self.closable.remove(&wave), "wave_closed for a wave that is not complete")?;
                self.close_wave(wave);
                Ok(())
            }
            Event::ParentWoken(w) => {
                let expected = self.wakes.pop_front();
                check(expected.as_ref() == Some(w), "parent_woken that no completion called for")?;
                let p = self.lookup(&w.parent)?;
                if self.g().node(p).hook {
                    self.hooks.entry(p).or_default().push_back(w.clone());
                }
                Ok(())
            }
            Event::TaskSubmitted(s) => {
                self.note_request(s.request)?;
                let answer = self.submit(s).err();
                self.answers.insert(s.request, answer);
                Ok(())
            }
            Event::TaskUpdated(u) => {
                self.note_request(u.request)?;
                let answer = self.update(u).err();
                self.answers.insert(u.request, answer);
                Ok(())
            }
            Event::ContextUpdated(c) => {
                self.note_request(c.request)?;
                let answer = self.update_context(c).err();
                self.answers.insert(c.request, answer);
                Ok(())
            }
            Event::HookAnswered(h) => self.hook_answered(h),
            Event::RequestAnswered(a) => {
                let due = self.answers.remove(&a.request);
                check(due.as_ref() == Some(&a.error), "request_answered that differs from the answer due")
            }
            Event::ChildrenStopped(c) => {
                let p = self.lookup(&c.parent)?;
                let due = self.to_stop.remove(&p);
                check(due.as_ref() == Some(&c.reason), "children_stopped that no hook asked for")?;
                self.stop_children(p, &c.reason);
                Ok(())
            }
            Event::FinalizeRequested(f) => {
                let due = self.finalize == super::Finalize::Idle && self.is_quiescent() && self.all_done();
                check(due, "finalize_requested before every task is done")?;
                check(f.outcome == self.outcome(), "finalize_requested with another outcome than the state's")?;
                self.finalize = super::Finalize::Requested;
                Ok(())
            }
            Event::RunFinished(f) => {
                check(self.is_quiescent() && self.all_done(), "run_finished while tasks are not terminal")?;
                let waiting = self.finalize == super::Finalize::Requested && self.ending.is_none();
                check(!waiting, "run_finished before the finalize hook answered")?;
                check(f.outcome == self.outcome(), "run_finished with another outcome than the state's")?;
                self.run = RunPhase::Finished(f.outcome);
                Ok(())
            }
        }
    }

    fn timer_fired(&mut self, key: &TimerKey) -> Result<(), ApplyError> {
        match key {
            TimerKey::RunDeadline => {
                if self.ending.is_none() {
                    self.end_run(Ending::TimedOut);
                }
            }
            TimerKey::AttemptTimeout { task, attempt } => {
                let t = self.lookup(task)?;
                if matches!(self.tasks[t as usize].phase, Phase::Running { attempt: a, kill: None } if a == *attempt) {
                    self.to_kill.insert(t, crate::record::KillReason::Timeout);
                }
            }
            TimerKey::RetryBackoff { task, attempt } => {
                let t = self.lookup(task)?;
                if matches!(self.tasks[t as usize].phase, Phase::BackingOff { attempt: a } if a == *attempt) {
                    self.transition(t, TaskEvent::BackoffElapsed { attempt: *attempt })?;
                    self.ready.insert(self.ready_key(t));
                }
            }
        }
        Ok(())
    }

    pub(super) fn attempt_ended(&mut self, t: TaskIdx) {
        // A released attempt gave its slot back when it delegated.
        if !self.tasks[t as usize].released {
            self.count_running(t, false);
        }
        self.to_kill.remove(&t);
        self.exited.insert(t);
    }

    pub(super) fn count_running(&mut self, t: TaskIdx, up: bool) {
        let node = self.g().node(t);
        let (p, w) = (node.priority.index(), node.wave as usize);
        let step = |x: &mut u32| if up { *x += 1 } else { *x -= 1 };
        step(&mut self.running);
        step(&mut self.running_by_priority[p]);
        step(&mut self.running_by_wave[w]);
    }

    pub(super) fn transition(&mut self, t: TaskIdx, event: TaskEvent) -> Result<(), ApplyError> {
        let phase = self.tasks[t as usize].phase;
        match phase.next(event) {
            Some(next) => {
                self.tasks[t as usize].phase = next;
                Ok(())
            }
            None => Err(ApplyError::InvalidTransition {
                task: self.g().id(t).to_string(),
                phase: phase.name(),
                event: event.name(),
            }),
        }
    }

    pub(crate) fn ready_key(&self, t: TaskIdx) -> ReadyKey {
        let graph = self.g();
        let node = graph.node(t);
        ReadyKey {
            ordinal: graph.wave(node.wave).ordinal,
            priority: node.priority as u8,
            id_rank: node.id_rank,
            task: t,
        }
    }

    pub(crate) fn g(&self) -> &Arc<Graph> {
        self.graph.as_ref().expect("checked in apply: the run has started")
    }

    pub(super) fn lookup(&self, id: &str) -> Result<TaskIdx, ApplyError> {
        self.g().task(id).ok_or_else(|| ApplyError::UnknownTask(id.to_string()))
    }

    pub(super) fn lookup_wave(&self, parent: Option<&str>, ordinal: u32) -> Result<WaveIdx, ApplyError> {
        let graph = self.g();
        let unknown = || ApplyError::UnknownWave { parent: parent.unwrap_or("the run").to_string(), wave: ordinal };
        let g = match parent {
            None => ROOT,
            Some(id) => graph.node(self.lookup(id)?).children.ok_or_else(unknown)?,
        };
        graph.group(g).waves.get(ordinal as usize).copied().ok_or_else(unknown)
    }

    pub(super) fn wave_open(&self, w: WaveIdx) -> bool {
        self.waves[w as usize].status == WaveStatus::Open
    }

    pub(crate) fn all_done(&self) -> bool {
        self.terminal as usize == self.tasks.len()
    }

    /// The outcome the run has (or would have, if it finished now).
    pub fn outcome(&self) -> RunOutcome {
        match self.ending {
            Some(Ending::Cancelled) => RunOutcome::Cancelled,
            Some(Ending::TimedOut) => RunOutcome::TimedOut,
            None if self.groups.first().is_some_and(|g| g.failed.is_some()) => RunOutcome::Failed,
            None if matches!(
                self.finalize,
                super::Finalize::Answered { verdict: crate::record::Verdict::Reject, .. }
            ) =>
            {
                RunOutcome::Failed
            }
            None => RunOutcome::Succeeded,
        }
    }

    /// The aggregate digest of the given tasks' results, in the order given.
    pub fn aggregate_of(&self, tasks: &[TaskIdx]) -> Digest {
        let graph = self.g();
        aggregate::digest(tasks.iter().map(|&t| {
            let task = &self.tasks[t as usize];
            let state = match task.phase {
                Phase::Done(s) => Some(s),
                _ => None,
            };
            // Attempts lost to an engine crash are not part of the result unless the run
            // says they count: a resumed run aggregates like an uninterrupted one.
            let lost = if graph.spec.run.lost_attempts_count { 0 } else { task.lost };
            (graph.id(t), state, task.attempts - lost, task.output)
        }))
    }
}

pub(super) fn check(ok: bool, what: &str) -> Result<(), ApplyError> {
    if ok {
        Ok(())
    } else {
        Err(ApplyError::Inconsistent(what.to_string()))
    }
}
