//! orch's open-file limit: raised by the program that runs the engine (the CLI does, at
//! start), given back as it was to every process orch starts.
//!
//! orch holds an open file for each running child's output, so a run of more than
//! ~1,000 children at once would fail its spawns (EMFILE) under the usual soft limit of
//! 1,024. That limit is there for `select`, which orch does not use — and which the
//! programs it starts may, so they get the limit orch was started with. Go's runtime
//! does the same. A library user of the engine decides for its own process: nothing
//! here is raised unless [`raise_open_file_limit`] is called.

use std::sync::OnceLock;

use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// The limits (soft, hard) the process had before it raised its own.
static STARTED_WITH: OnceLock<[u64; 2]> = OnceLock::new();

/// Raises this process's soft limit on open files to its hard limit (once; later calls
/// do nothing). Children and hooks started by the engine get the old limits back.
pub fn raise_open_file_limit() {
    if STARTED_WITH.get().is_some() {
        return;
    }
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else { return };
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        let _ = STARTED_WITH.set([soft, hard]);
    }
}

/// The limits to give back to a child before it execs; None if none were raised.
pub(super) fn started_with() -> Option<[u64; 2]> {
    STARTED_WITH.get().copied()
}
