//! Starting a run: the state after the run-started record, from the graph that record
//! carries compiled (a fold), from the spec compiled here (a record of kind 1, and every
//! engine that decides), or from a graph the caller compiled.

use std::sync::Arc;

use super::apply::check;
use super::{ApplyError, GroupState, RunPhase, State, TaskState, WaveState, WaveStatus};
use crate::graph::{Graph, TaskIdx, ROOT};
use crate::record::{Digest, Event, Record, RunStarted};
use crate::spec::Spec;

impl State {
    /// A fold's start: the graph from the image the record carries when it has one (the
    /// fold needs no task specs; see `Graph::load`), else compiled from its spec.
    pub(super) fn start(&mut self, r: &RunStarted) -> Result<(), ApplyError> {
        if self.graph.is_some() {
            return Err(ApplyError::AlreadyStarted);
        }
        let graph = match &r.image {
            Some(image) => {
                check_digest(r)?;
                Graph::load(image).map_err(ApplyError::BadGraph)?
            }
            None => compile_started(r)?,
        };
        self.init(Arc::new(graph), &r.executor);
        Ok(())
    }

    /// Applies a run-started record whose spec the caller has already compiled into
    /// `graph`: the live engine made the record from that very spec; `orch replay`
    /// compiled it on a second thread (`recover_compiled`, which checks the spec's digest
    /// against the record's). A fold from records alone goes through `apply`.
    pub(crate) fn apply_started(&mut self, record: &Record, graph: Arc<Graph>) -> Result<(), ApplyError> {
        let Event::RunStarted(r) = &record.event else {
            return Err(ApplyError::Inconsistent("apply_started takes a run_started record".into()));
        };
        if self.graph.is_some() {
            return Err(ApplyError::AlreadyStarted);
        }
        check_digest(r)?;
        started_as_written(record.time_ms, &r.executor)?;
        self.now_ms = record.time_ms;
        self.init(graph, &r.executor);
        self.applied += 1;
        Ok(())
    }

    fn init(&mut self, graph: Arc<Graph>, executor: &str) {
        self.executor = executor.to_string();
        self.tasks = (0..graph.len() as TaskIdx).map(|t| TaskState::waiting(graph.deps(t).len() as u32)).collect();
        self.waves = graph
            .waves
            .iter()
            .map(|w| WaveState {
                status: WaveStatus::Pending,
                remaining: w.tasks.len() as u32,
                failures: 0,
                stopped: false,
            })
            .collect();
        self.groups =
            graph.groups.iter().map(|g| GroupState { remaining: g.tasks.len() as u32, ..Default::default() }).collect();
        self.running_by_wave = vec![0; graph.waves.len()];
        self.deadline_pending = graph.spec.run.timeout_ms.is_some();
        self.run = RunPhase::Running;
        self.graph = Some(graph);
        self.release_group(ROOT);
    }
}

/// What every engine writes into a run-started record: time 0 (a run starts its own
/// clock), and one of the executors there are. A resumed run could otherwise be told it
/// runs processes by a log of a simulation.
pub(super) fn started_as_written(time_ms: u64, executor: &str) -> Result<(), ApplyError> {
    check(time_ms == 0, "run_started at a time other than 0")?;
    check(crate::record::EXECUTORS.contains(&executor), "run_started names an executor there is none of")
}

/// The graph the spec of a run-started record compiles to, with every task's spec: what
/// an engine that decides (resume, replay) needs. When the record carries a compiled
/// graph too, it must be the one the spec compiles to: a fold builds on the image alone.
pub fn compile_started(r: &RunStarted) -> Result<Graph, ApplyError> {
    check_digest(r)?;
    let spec: Spec = serde_json::from_str(&r.spec).map_err(|e| ApplyError::BadSpec(e.to_string()))?;
    let graph = Graph::compile(spec, "run_started").map_err(|e| ApplyError::BadSpec(e.to_string()))?;
    match &r.image {
        Some(image) if !image.matches(&graph) => {
            Err(ApplyError::BadGraph("it is not the one the record's spec compiles to".into()))
        }
        _ => Ok(graph),
    }
}

fn check_digest(r: &RunStarted) -> Result<(), ApplyError> {
    match Digest::of(r.spec.as_bytes()) == r.spec_digest {
        true => Ok(()),
        false => Err(ApplyError::BadSpec("spec digest does not match the spec".into())),
    }
}
