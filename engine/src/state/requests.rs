//! The other control requests and the hooks' answers: a task's status changed by hand
//! (`orch task update`), the shared run context (`orch ctx`), a wake hook's `continue`
//! or `stop`, the `before_finalize` verdict. Each is checked against the state; a
//! request that does not fit is answered with why, never applied halfway.

use super::lifecycle::Phase;
use super::{ApplyError, ContextValue, Finalize, State};
use crate::graph::TaskIdx;
use crate::record::{
    ContextOp, ContextUpdated, HookAnswered, KillReason, TaskUpdated, Terminal, UpdateStatus, Verdict,
};
use crate::spec::OnStop;

/// Longest context key, and value, accepted (a value is a record's payload).
pub const MAX_CONTEXT_KEY: usize = 256;
pub const MAX_CONTEXT_VALUE: usize = 1 << 20;
/// Most bytes the whole context holds (keys and values): it is kept in memory, handed to
/// every hook and `before_finalize`, and printed whole by `orch ctx get`.
pub const MAX_CONTEXT_BYTES: usize = 64 << 20;
/// What each value (a set value, or one item of a list) counts for beyond its bytes, so
/// that appending empty strings cannot grow a list without bound.
pub const CONTEXT_ITEM_OVERHEAD: usize = 16;

impl State {
    /// Request numbers only grow: a repeated or older number is a log that was tampered
    /// with or a runtime bug, not a user's mistake.
    pub(super) fn note_request(&mut self, request: u64) -> Result<(), ApplyError> {
        if request <= self.last_request {
            return Err(ApplyError::Inconsistent(format!(
                "control request {request} after request {}",
                self.last_request
            )));
        }
        self.last_request = request;
        Ok(())
    }

    pub(super) fn update(&mut self, u: &TaskUpdated) -> Result<(), String> {
        let graph = self.g().clone();
        let t = graph.task(&u.task).ok_or_else(|| format!("no task {:?} in this run", u.task))?;
        let phase = self.tasks[t as usize].phase;
        let who = u.by.as_deref().map_or_else(|| "by hand".to_string(), |by| format!("by {by}"));
        let cause = match &u.note {
            Some(note) => format!("marked {} {who}: {note}", u.status.name()),
            None => format!("marked {} {who}", u.status.name()),
        };
        match u.status {
            UpdateStatus::Working | UpdateStatus::Reviewing | UpdateStatus::Reviewed | UpdateStatus::Stuck => {
                self.tasks[t as usize].mark = Some(u.status);
                Ok(())
            }
            UpdateStatus::Delegated => match phase {
                Phase::Running { kill: None, .. } if !self.tasks[t as usize].released => {
                    self.release_running(t);
                    Ok(())
                }
                Phase::Running { .. } | Phase::Delegated => Ok(()), // already so, or being killed
                other => Err(format!(
                    "task {:?} is {}: only a running task can delegate (its children run once it does)",
                    u.task,
                    other.name()
                )),
            },
            UpdateStatus::Cancelled => match phase {
                Phase::Done(state) => Err(format!("task {:?} has already finished ({})", u.task, state.name())),
                _ => {
                    let note = u.note.as_ref().map(|note| format!("{who}: {note}"));
                    self.cancel_task(t, note.as_deref());
                    Ok(())
                }
            },
            UpdateStatus::Done | UpdateStatus::Failed => {
                let terminal = if u.status == UpdateStatus::Done { Terminal::Succeeded } else { Terminal::Failed };
                match phase {
                    Phase::Done(state) => Err(format!("task {:?} has already finished ({})", u.task, state.name())),
                    Phase::Running { .. } | Phase::Exited { .. } => Err(format!(
                        "task {:?} is running: its exit decides how it ends (cancel it to stop it)",
                        u.task
                    )),
                    _ if self.doomed.contains_key(&t) => {
                        Err(format!("task {:?} is already finishing ({})", u.task, self.doomed[&t].1))
                    }
                    Phase::Waiting | Phase::Ready | Phase::BackingOff { .. } | Phase::Delegated => {
                        self.doom(t, terminal, &cause);
                        Ok(())
                    }
                }
            }
        }
    }

    /// A running task delegated: its slot goes back under the caps and its children
    /// may start now, while its command still runs.
    fn release_running(&mut self, t: TaskIdx) {
        self.count_running(t, false);
        self.tasks[t as usize].released = true;
        let g = match self.g().node(t).children {
            Some(g) => g,
            None => {
                let graph = self.graph.as_mut().expect("the run has started");
                let g = std::sync::Arc::make_mut(graph).ensure_group(t);
                self.groups.push(super::GroupState::default());
                g
            }
        };
        self.release_group(g);
    }

    pub(super) fn update_context(&mut self, c: &ContextUpdated) -> Result<(), String> {
        let key = c.key.as_str();
        if key.is_empty() || key.len() > MAX_CONTEXT_KEY || key.chars().any(|ch| ch.is_whitespace() || ch.is_control())
        {
            return Err(format!(
                "context key {key:?} must be 1 to {MAX_CONTEXT_KEY} bytes, without whitespace or control characters"
            ));
        }
        if c.value.len() > MAX_CONTEXT_VALUE {
            return Err(format!("a context value is at most {MAX_CONTEXT_VALUE} bytes ({} given)", c.value.len()));
        }
        if let (ContextOp::Append, Some(ContextValue::Value(_))) = (c.op, self.context.get(key)) {
            return Err(format!("context key {key:?} holds a single value (set): append needs a list key"));
        }
        let item = |s: &String| s.len() + CONTEXT_ITEM_OVERHEAD;
        let held = |v: &ContextValue| match v {
            ContextValue::Value(s) => item(s),
            ContextValue::List(l) => l.iter().map(item).sum(),
        };
        let (freed, added) = match (c.op, self.context.get(key)) {
            (ContextOp::Set, Some(old)) => (held(old), item(&c.value)),
            (_, None) => (0, key.len() + item(&c.value)),
            (ContextOp::Append, Some(_)) => (0, item(&c.value)),
        };
        let total = self.context_bytes - freed + added;
        if total > MAX_CONTEXT_BYTES {
            return Err(format!(
                "the context would hold {total} bytes, over its limit of {MAX_CONTEXT_BYTES} (keys and values)"
            ));
        }
        // (Appending to a single value was refused above.)
        match (c.op, self.context.get_mut(key)) {
            (ContextOp::Append, Some(ContextValue::List(list))) => list.push(c.value.clone()),
            (ContextOp::Append, _) => {
                self.context.insert(key.to_string(), ContextValue::List(vec![c.value.clone()]));
            }
            (ContextOp::Set, _) => {
                self.context.insert(key.to_string(), ContextValue::Value(c.value.clone()));
            }
        }
        self.context_bytes = total;
        Ok(())
    }

    pub(super) fn hook_answered(&mut self, h: &HookAnswered) -> Result<(), ApplyError> {
        let Some(parent) = &h.parent else {
            let finalize_answer = matches!(h.verdict, Verdict::Accept | Verdict::Reject) && h.child.is_none();
            if self.finalize != Finalize::Requested || !finalize_answer {
                return Err(ApplyError::Inconsistent("a finalize answer that no request called for".into()));
            }
            self.finalize = Finalize::Answered { verdict: h.verdict, reason: h.reason.clone() };
            return Ok(());
        };
        let p = self.lookup(parent)?;
        // The answer names the wake it answers (by the child that woke the parent): a
        // world may run one parent's hooks in any order, the fold does not mind.
        let woken =
            self.hooks.get_mut(&p).and_then(|q| q.iter().position(|w| w.child == h.child).and_then(|i| q.remove(i)));
        let fits = woken.is_some() && matches!(h.verdict, Verdict::Continue | Verdict::Stop);
        if !fits {
            return Err(ApplyError::Inconsistent(format!("a hook answer for {parent} that no wake called for")));
        }
        if self.hooks.get(&p).is_some_and(|q| q.is_empty()) {
            self.hooks.remove(&p);
        }
        let g = self.g().node(p).children.expect("a woken parent has children");
        let stoppable = !self.tasks[p as usize].phase.is_done() && self.groups[g as usize].stopped.is_none();
        if h.verdict == Verdict::Stop && stoppable && !self.to_stop.contains_key(&p) {
            let reason = h.reason.clone().unwrap_or_else(|| "the hook said stop".to_string());
            self.to_stop.insert(p, reason);
        }
        self.check_group_done(g);
        Ok(())
    }

    /// A `stop`: children not started are skipped (and the parent's later waves), running
    /// ones are killed or left to finish as the parent's `on_stop` says.
    pub(super) fn stop_children(&mut self, p: TaskIdx, reason: &str) {
        let graph = self.g().clone();
        let g = graph.node(p).children.expect("a stopped parent has children");
        self.groups[g as usize].stopped = Some(reason.to_string());
        self.groups[g as usize].skip_rest = true;
        let cause = format!("stopped by {}'s hook: {reason}", graph.id(p));
        let cancel_running = graph.node(p).on_stop == OnStop::CancelRunning;
        let mut running = Vec::new();
        for &w in &graph.group(g).waves {
            if self.waves[w as usize].status == super::WaveStatus::Closed {
                continue;
            }
            if self.waves[w as usize].status == super::WaveStatus::Open {
                self.waves[w as usize].stopped = true;
            }
            for &c in &graph.wave(w).tasks {
                match self.tasks[c as usize].phase {
                    Phase::Waiting | Phase::Ready | Phase::BackingOff { .. } => self.doom(c, Terminal::Skipped, &cause),
                    Phase::Running { .. } | Phase::Delegated => running.push(c),
                    _ => {}
                }
            }
        }
        if cancel_running {
            // Their own children go with them (a stop is a cascading cancel of the rest).
            let mut all = running;
            let mut i = 0;
            while i < all.len() {
                if let Some(cg) = graph.node(all[i]).children {
                    all.extend(
                        graph.group(cg).tasks.iter().copied().filter(|&c| !self.tasks[c as usize].phase.is_done()),
                    );
                }
                i += 1;
            }
            self.cancel_all(&all, &cause, KillReason::Stop, true);
        }
        self.check_group_done(g);
    }
}
