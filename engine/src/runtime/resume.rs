//! `orch resume`: reopen the log of a run whose engine died, rebuild the engine from it,
//! settle the attempts that were in flight, and drive the run on to its end.
//!
//! 1. Reopening the log for writing truncates a torn tail (reported) and takes the
//!    writer lock (a run still live is refused, naming its pid).
//! 2. Re-deciding the log rebuilds the state, and yields the decisions of a step the
//!    crash cut short: never written, hence never performed — they are now.
//! 3. Attempts in flight when the engine died: their process group is killed if it is
//!    still there — identified by pid *and* start time from `attempt_started`, so a
//!    reused pid is never touched — and each is recorded as `attempt_lost`, which the
//!    scheduler retries per the task's policy. Finished tasks are never run again.
//! 4. Timers that were armed (retry backoffs, the run deadline) are armed again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use nix::sys::signal::Signal;
use orch_log_format::{Options, TornTail, Writer};

use super::driver::{drive_journaled, ProcessWorld, RunConfig, RuntimeError};
use super::process;
use super::store::Store;
use crate::core::Action;
use crate::drive::World;
use crate::journal::{read_records, Journal};
use crate::record::{AttemptLost, Event, Record, TimerKey};
use crate::recover::recover;
use crate::state::{Phase, State};

/// What resuming found and did, besides finishing the run.
#[derive(Debug)]
pub struct Resumed {
    pub state: State,
    pub log: PathBuf,
    /// The torn tail truncated on reopening, if any.
    pub torn: Option<TornTail>,
    /// Decisions the crash cut off, written and performed on resume.
    pub pending: usize,
    /// Attempts in flight when the engine died, recorded as lost.
    pub lost: Vec<(String, u32)>,
    /// Process groups of those attempts that were still alive and were killed.
    pub killed: Vec<u32>,
}

/// How long `open_writer` keeps trying a lock that is held.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// `Writer::open`, retried for up to [`LOCK_WAIT`] while the lock is held. Readers that
/// ask whether a run is live (`lock_state`: `orch log`, `orch ls`, `orch show --watch`)
/// take a *shared* lock on `LOCK` for an instant, and an exclusive try-lock fails
/// meanwhile: resume used to refuse with "already open for writing by another writer
/// (pid N)", N being the dead engine (1 crash-harness trial in 1,000, where an orphaned
/// child runs `orch log`; reproduced by `cli/tests/crash/writer_lock.rs`
/// `a_reader_probing_the_lock_does_not_make_resume_refuse`). A live writer holds the
/// lock for good and is still refused, after the wait.
fn open_writer(log: &Path, options: Options) -> Result<(Writer, orch_log_format::Recovery), orch_log_format::Error> {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match super::reaper::without_sigchld_in_new_threads(|| Writer::open(log, options)) {
            Err(orch_log_format::Error::Locked { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

/// When the log's newest segment was last modified (None: unknown).
fn last_write(log: &Path) -> Option<std::time::SystemTime> {
    let segments = std::fs::read_dir(log).ok()?;
    let newest = segments
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .max()?;
    std::fs::metadata(newest).ok()?.modified().ok()
}

/// The refusals that its first and last records decide, made before the whole log is
/// verified and re-decided (for a big log, a second or so): a simulated run is named by
/// its first record, a finished one by its last.
fn refuse_early(log: &Path) -> Result<(), RuntimeError> {
    let reader = match orch_log_format::Reader::open(log) {
        Ok(reader) => reader,
        // Nothing orch wrote (no such directory, no segment): refused before a lock file
        // is made in somebody else's directory.
        Err(e @ orch_log_format::Error::NotALog { .. }) => return Err(RuntimeError::Log(e)),
        // The writer reports the rest, or repairs it (a torn tail).
        Err(_) => return Ok(()),
    };
    // Up to the first damage, if any: the writer reports it (or drops a torn tail).
    let mut payloads = reader.iter().map_while(Result::ok);
    let Some(first) = payloads.next() else { return Ok(()) };
    let executor = match Record::decode(first.payload).map(|r| r.event) {
        Ok(Event::RunStarted(started)) => started.executor,
        _ => return Ok(()),
    };
    if executor != "process" {
        return Err(RuntimeError::CannotResume(format!(
            "a {executor} run cannot be resumed (only runs of real processes can; run it again)"
        )));
    }
    if let Some(last) = payloads.last() {
        if matches!(Record::decode(last.payload).map(|r| r.event), Ok(Event::RunFinished(_))) {
            return Err(RuntimeError::CannotResume("the run has finished: nothing to resume".into()));
        }
    }
    Ok(())
}

/// Resumes the run whose log is `log` (in `store`, for blobs and the child env).
pub fn resume(
    store: &Store,
    run_id: &str,
    log: &Path,
    options: Options,
    kill_grace: std::time::Duration,
    observe: impl FnMut(&Record, &State),
) -> Result<Resumed, RuntimeError> {
    // When the log was last written, read before the writer touches it (dropping a torn
    // tail writes): the engine has been down since, and the run's clock has run on.
    let last_write = last_write(log);
    refuse_early(log)?;
    // Every other refusal is decided while only reading too: the whole log verified (its
    // chain included: the reader alone does not check it), then re-decided. Opening the
    // log for writing drops a torn tail and takes the lock, and a refused resume must
    // leave the run as it found it.
    orch_log_format::verify(log)?;
    let records = read_records(log)?;
    let recovered = recover(&records)?;
    let (core, pending) = (recovered.core, recovered.pending);
    let state = core.state();
    let Some(graph) = state.graph().cloned() else {
        return Err(RuntimeError::CannotResume("the log holds no run_started record: nothing to resume".into()));
    };
    if state.is_finished() && pending.is_empty() {
        return Err(RuntimeError::CannotResume("the run has finished: nothing to resume".into()));
    }
    if state.executor() != "process" {
        return Err(RuntimeError::CannotResume(format!(
            "a {} run cannot be resumed (only runs of real processes can; run it again)",
            state.executor()
        )));
    }
    store.make_blobs_dir()?;
    let (writer, recovery) = open_writer(log, options)?;
    // The lock is ours from here. Whole records are never rewritten, so the same count
    // means the same records; more means an engine appended between the read and the
    // lock (it was still running, or another resume was).
    if recovery.records != records.len() as u64 {
        return Err(RuntimeError::CannotResume(format!(
            "the log changed while it was being read ({} records, then {}): is its engine still running?",
            records.len(),
            recovery.records
        )));
    }

    // Attempts whose dispatch is among the pending decisions were never started.
    let never_started: Vec<(&str, u32)> = pending
        .iter()
        .filter_map(|r| match &r.event {
            Event::AttemptDispatched(d) => Some((d.task.as_str(), d.attempt)),
            _ => None,
        })
        .collect();
    let started: BTreeMap<(&str, u32), (u32, u64)> = records
        .iter()
        .filter_map(|r| match &r.event {
            Event::AttemptStarted(a) => Some(((a.task.as_str(), a.attempt), (a.pid, a.start_ticks))),
            _ => None,
        })
        .collect();
    let mut lost = Vec::new();
    let mut killed = Vec::new();
    for t in 0..graph.len() as u32 {
        let Phase::Running { attempt, .. } = state.task(t).phase else { continue };
        let id = graph.id(t);
        if never_started.contains(&(id, attempt)) {
            continue;
        }
        if let Some(&(pid, ticks)) = started.get(&(id, attempt)) {
            if process::start_ticks(pid) == Some(ticks) {
                tracing::info!(task = id, attempt, pid, "attempt survived the engine: killing its process group");
                process::signal_group(pid as i32, Signal::SIGKILL);
                killed.push(pid);
            } else {
                tracing::debug!(task = id, attempt, pid, "attempt's process is gone (or its pid was reused)");
            }
        }
        lost.push((id.to_string(), attempt));
    }

    // Timers to arm again: retry backoffs still waiting, and the run deadline.
    let mut timers = Vec::new();
    for r in records.iter().chain(&pending) {
        match &r.event {
            Event::RetryScheduled(s) if s.delay_ms > 0 => {
                let key = TimerKey::RetryBackoff { task: s.task.clone(), attempt: s.attempt };
                timers.push((key, s.at_ms));
            }
            Event::RunDeadlineArmed(d) => timers.push((TimerKey::RunDeadline, d.at_ms)),
            _ => {}
        }
    }

    // The run's clock goes on from the last record plus the time the engine was down, so
    // that the run timeout and retry backoffs keep to the wall clock however many times
    // the engine dies (a crash loop must not postpone the deadline for ever). Without a
    // readable time of the last write, from the last record.
    let down_ms = last_write
        .and_then(|t| std::time::SystemTime::now().duration_since(t).ok())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let now = state.now_ms().saturating_add(down_ms);
    let config = RunConfig { store: store.clone(), run_id: run_id.to_string(), log: options, kill_grace };
    drop(graph); // the state is the graph's only owner from here: it grows in place
    let mut world = ProcessWorld::with_clock(&config, now)?;
    let mut core = core;
    let mut records_out = pending.clone();
    for (task, attempt) in &lost {
        let input = Event::AttemptLost(AttemptLost { task: task.clone(), attempt: *attempt });
        core.handle(now, input, &mut records_out)?;
    }
    for (key, at_ms) in timers {
        if core.state().timer_is_live(&key) {
            let _ = world.perform(&Action::ArmTimer { key, at_ms }, core.state());
        }
    }
    // Hooks that were running when the engine died have no recorded answer: run them
    // again (like commands, hooks run at least once).
    // (Wakes among the pending decisions get their hook when those are performed.)
    let pending_wakes: Vec<&crate::record::ParentWoken> = pending
        .iter()
        .filter_map(|r| match &r.event {
            Event::ParentWoken(w) => Some(w),
            _ => None,
        })
        .collect();
    let state = core.state();
    let matters = |w: &&crate::record::ParentWoken| {
        state.graph().and_then(|g| g.task(&w.parent)).is_some_and(|p| state.hook_matters(p))
    };
    let woken: Vec<_> =
        state.hooks_out().values().flatten().filter(|w| !pending_wakes.contains(w)).filter(matters).cloned().collect();
    for woken in woken {
        let _ = world.perform(&Action::RunHook { woken }, core.state());
    }
    if let crate::state::Finalize::Requested = core.state().finalize() {
        let last = records.iter().rev().find_map(|r| match &r.event {
            Event::FinalizeRequested(f) => Some((f.outcome, f.aggregate)),
            _ => None,
        });
        if let Some((outcome, aggregate)) = last {
            let _ = world.perform(&Action::Finalize { outcome, aggregate }, core.state());
        }
    }

    let pending_count = pending.len();
    let state = drive_journaled(core, records_out, &mut world, Journal::from_writer(writer), observe)?;
    Ok(Resumed { state, log: log.to_path_buf(), torn: recovery.torn, pending: pending_count, lost, killed })
}
