//! The IO shell around the pure core: the run store, the process executor and the
//! tokio driver. The only place (with the CLI) that touches clocks, processes, signals
//! and the file system.

mod child;
#[cfg(test)]
mod child_tests;
pub mod control;
mod driver;
mod failure;
mod groups;
mod hooks;
mod limits;
mod output;
pub mod process;
#[cfg(test)]
mod process_tests;
mod procs;
mod reaper;
pub mod resume;
mod signals;
mod spawner;
pub mod store;
mod world_io;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use orch_log_format::{Durability, Options};

pub use driver::RuntimeError;
pub use limits::raise_open_file_limit;
pub use store::{Resolved, Store, StoreError};

use crate::graph::Graph;
use crate::journal::Journal;
use crate::record::Record;
use crate::sim::SimWorld;
use crate::spec::Spec;
use crate::state::State;

/// How to run a workflow.
#[derive(Debug, Clone)]
pub struct Launch {
    pub store: Store,
    /// The workflow text as given (kept in the run's directory) and its format's
    /// extension (`toml` or `json`).
    pub spec_text: String,
    pub spec_ext: &'static str,
    /// Overrides `run.max_concurrency`.
    pub max_concurrency: Option<u32>,
    /// Overrides `run.seed`.
    pub seed: Option<u64>,
    /// Simulated children (virtual clock) instead of processes.
    pub sim: bool,
    pub durability: Durability,
    pub kill_grace: Duration,
}

/// A run that ended (whatever its outcome).
#[derive(Debug)]
pub struct Finished {
    pub run_id: String,
    pub log: PathBuf,
    pub state: State,
}

/// The spec the run will record: CLI overrides applied, and — for real runs only — an
/// unset global cap resolved to the machine's parallelism (recorded, so replay and
/// diff see it). Simulated runs never read the machine: their logs are identical
/// everywhere.
pub fn effective_spec(mut spec: Spec, launch: &Launch) -> Spec {
    if let Some(n) = launch.max_concurrency {
        spec.run.max_concurrency = Some(n);
    }
    if let Some(seed) = launch.seed {
        spec.run.seed = seed;
    }
    if spec.run.max_concurrency.is_none() && !launch.sim {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        spec.run.max_concurrency = Some(cpus);
    }
    spec
}

/// Creates the run in the store and runs it to the end. `observe` sees each record
/// once it is committed, with the state it led to.
pub fn launch(spec: Spec, launch: &Launch, observe: impl FnMut(&Record, &State)) -> Result<Finished, RuntimeError> {
    let spec = effective_spec(spec, launch);
    let graph = Arc::new(Graph::compile(spec, "spec").map_err(|e| crate::state::ApplyError::BadSpec(e.to_string()))?);
    let run_id = launch.store.create_run(launch.spec_ext, &launch.spec_text)?;
    let log = launch.store.log_dir(&run_id);
    let options = Options { durability: launch.durability, ..Options::default() };
    let state = if launch.sim {
        // Simulated children perform no real effects: the log needs no syncing.
        let journal = Journal::create(&log, Options { durability: Durability::Never, ..options })?;
        let mut world = SimWorld::new(&graph, graph.spec.run.seed);
        driver::start_journaled(graph, "sim", &mut world, journal, observe)?
    } else {
        let config = driver::RunConfig {
            store: launch.store.clone(),
            run_id: run_id.clone(),
            log: options,
            kill_grace: launch.kill_grace,
        };
        driver::run_processes(graph, &config, observe)?
    };
    Ok(Finished { run_id, log, state })
}
