//! The process world's side of delegation: control requests turned into inputs (or
//! answered from the state, for reads), answers sent back once recorded, and hooks run
//! with what they need to know. Split from `driver.rs`, which runs children and timers.

use serde_json::json;

use super::control::{Pending, Request, Response};
use super::driver::{Incoming, ProcessWorld};
use super::hooks::{self, HookCall, HookKind};
use crate::record::{
    ContextOp, ContextUpdated, Digest, Event, HookAnswered, ParentWoken, RunOutcome, TaskSubmitted, TaskUpdated,
};
use crate::state::State;
use crate::view;

impl ProcessWorld {
    /// A control request: a change becomes the input returned (answered later, once its
    /// answer is recorded); a read is answered now from `state`.
    pub(super) fn control(&mut self, pending: Pending, state: &State) -> Option<Event> {
        let Pending { request, reply } = pending;
        if state.is_finished() {
            let _ = reply.send(Response::error("the run has finished"));
            return None;
        }
        let request_no = state.last_request() + 1;
        let input = match request {
            Request::List { ready } => {
                let rows: Vec<_> = view::task_rows(state).into_iter().filter(|r| !ready || r.ready).collect();
                let _ = reply.send(Response::ok(Some(serde_json::to_value(rows).expect("rows serialize"))));
                return None;
            }
            Request::CtxGet { key } => {
                let _ = reply.send(Response::ok(Some(view::context_json(state, key.as_deref()))));
                return None;
            }
            Request::Create { by, task } => {
                // The rules for specs written now, which the fold does not re-check.
                if let Err(why) = crate::spec::check_new_task(&task) {
                    let _ = reply.send(Response::error(why));
                    return None;
                }
                Event::TaskSubmitted(TaskSubmitted {
                    request: request_no,
                    by,
                    task: serde_json::to_string(&task).expect("a task spec always serializes"),
                })
            }
            Request::Update { by, task, status, note } => {
                Event::TaskUpdated(TaskUpdated { request: request_no, by, task, status, note })
            }
            Request::CtxSet { by, key, value } => {
                Event::ContextUpdated(ContextUpdated { request: request_no, by, key, op: ContextOp::Set, value })
            }
            Request::CtxAppend { by, key, value } => {
                Event::ContextUpdated(ContextUpdated { request: request_no, by, key, op: ContextOp::Append, value })
            }
        };
        self.replies.insert(request_no, reply);
        Some(input)
    }

    /// The recorded answer to request `request` goes back to its client.
    pub(super) fn reply(&mut self, request: u64, error: Option<String>) {
        if let Some(reply) = self.replies.remove(&request) {
            let _ = reply.send(match error {
                None => Response::ok(None),
                Some(e) => Response::error(e),
            });
        }
    }

    /// Runs `woken.parent`'s hook for this wake (after the parent's previous hook).
    pub(super) fn wake_hook(&mut self, woken: &ParentWoken, state: &State) {
        let graph = state.graph().expect("a parent was woken: the run has started");
        let Some(p) = graph.task(&woken.parent) else { return };
        let spec = graph.task_spec(p);
        let Some(command) = spec.more().hook.clone() else { return };
        let child = woken.child.as_deref().and_then(|c| graph.task(c));
        let children = graph.node(p).children.map(|g| {
            let tasks = &graph.group(g).tasks;
            let done = tasks.iter().filter(|&&c| state.task(c).phase.is_done()).count();
            json!({ "done": done, "total": tasks.len() })
        });
        let input = json!({
            "run": self.env.run_id,
            "parent": woken.parent,
            "wave": woken.wave,
            "child": woken.child,
            "status": child.map(|c| view::status(state, c)),
            "attempts": child.map(|c| state.task(c).attempts),
            "output": child.map(|c| state.task(c).output.hex()),
            "children": children,
        });
        let mut env = self.hook_env();
        env.push(("ORCH_TASK_ID".into(), woken.parent.clone()));
        env.extend(spec.more().env.iter().map(|(k, v)| (k.clone(), v.clone())));
        let call = HookCall {
            live: self.hook_groups.clone(),
            outputs: self.outputs.clone(),
            kind: HookKind::Wake,
            command,
            env,
            cwd: spec.more().cwd.as_ref().map(Into::into),
            input: input.to_string(),
            timeout: graph.spec.run.hook_timeout_ms.map(std::time::Duration::from_millis),
        };
        let queue = self.hook_queue.entry(woken.parent.clone()).or_default();
        queue.push_back((woken.child.clone(), call));
        if !self.hook_busy.contains(&woken.parent) {
            self.start_next_hook(&woken.parent.clone());
        }
    }

    /// The parent's hook answered: its next wake's hook may run.
    pub(super) fn next_hook(&mut self, parent: &str) {
        self.hook_busy.remove(parent);
        self.start_next_hook(parent);
    }

    fn start_next_hook(&mut self, parent: &str) {
        let Some((child, call)) = self.hook_queue.get_mut(parent).and_then(|q| q.pop_front()) else {
            self.hook_queue.remove(parent);
            return;
        };
        self.hook_busy.insert(parent.to_string());
        let (tx, parent) = (self.tx.clone(), parent.to_string());
        self.runtime.spawn(async move {
            let (verdict, reason) = hooks::run(call).await;
            tracing::info!(parent = %parent, verdict = verdict.name(), ?reason, "wake hook answered");
            let _ =
                tx.send(Incoming::HookDone(Box::new(HookAnswered { parent: Some(parent), child, verdict, reason })));
        });
    }

    /// Runs the run's `before_finalize` hook with the summary and the aggregate.
    pub(super) fn finalize_hook(&mut self, outcome: RunOutcome, aggregate: Digest, state: &State) {
        let graph = state.graph().expect("finalizing a started run");
        let Some(command) = graph.spec.run.before_finalize.clone() else { return };
        let input = json!({
            "run": self.env.run_id,
            "outcome": outcome.name(),
            "aggregate": aggregate.hex(),
            "tasks": view::task_rows(state),
            "context": view::context_json(state, None),
        });
        let call = HookCall {
            live: self.hook_groups.clone(),
            outputs: self.outputs.clone(),
            kind: HookKind::Finalize,
            command,
            env: self.hook_env(),
            cwd: None,
            input: input.to_string(),
            timeout: graph.spec.run.hook_timeout_ms.map(std::time::Duration::from_millis),
        };
        let tx = self.tx.clone();
        self.runtime.spawn(async move {
            let (verdict, reason) = hooks::run(call).await;
            tracing::info!(verdict = verdict.name(), ?reason, "before_finalize hook answered");
            let _ = tx.send(Incoming::HookDone(Box::new(HookAnswered { parent: None, child: None, verdict, reason })));
        });
    }

    fn hook_env(&self) -> Vec<(String, String)> {
        vec![
            ("ORCH_RUN_ID".into(), self.env.run_id.clone()),
            ("ORCH_STORE".into(), self.env.store.display().to_string()),
            ("ORCH_SOCKET".into(), self.env.socket.display().to_string()),
        ]
    }
}
