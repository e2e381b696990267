//! The process groups of a run's attempts, and what a kill does to them: SIGTERM to the
//! group, SIGKILL to whatever of it is left when the grace period is over — also when
//! the attempt's own process has already exited on the SIGTERM, leaving a grandchild that
//! ignores it, and at the latest when the run ends.
//!
//! A group is signalled only while it is known to be the attempt's: until its leader is
//! reaped (the zombie holds the id), and after that only while one of the processes seen
//! in it at the reap is still there, by pid *and* start time — a group id whose members
//! are all gone may be anybody's.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::process;

/// An attempt: its task and attempt number.
type Key = (String, u32);

#[derive(Debug, Default)]
pub(super) struct Groups {
    /// Process groups of the attempts whose child is not reaped yet.
    live: BTreeMap<Key, i32>,
    /// Attempts sent SIGTERM, until their child is reaped: when their grace period ends.
    killing: BTreeMap<Key, Instant>,
    /// Groups of killed attempts whose child was reaped within the grace period while
    /// others of the group lived on.
    lingering: BTreeMap<Key, Lingering>,
}

#[derive(Debug)]
struct Lingering {
    pgid: i32,
    /// The group's processes at the reap (pid, start time): while one of them is still
    /// in the group, the group id is still the attempt's.
    members: Vec<(u32, u64)>,
    grace_over: Instant,
}

impl Lingering {
    fn still_ours(&self) -> bool {
        self.members.iter().any(|&(pid, ticks)| process::group_and_start(pid) == Some((self.pgid, ticks)))
    }
}

impl Groups {
    pub(super) fn started(&mut self, key: Key, pgid: i32) {
        self.live.insert(key, pgid);
    }

    /// SIGCONT to the group of every attempt whose child is not reaped yet: orch was
    /// stopped and has been continued (a shell's `fg`), and its children, in groups of
    /// their own, are continued with it — also one that a stop of orch's group caught
    /// in the instant before it left that group, which nothing else would continue.
    pub(super) fn continue_all(&self) {
        for &pgid in self.live.values() {
            process::signal_group(pgid, Signal::SIGCONT);
        }
    }

    /// SIGTERM to the attempt's group (if its child is not reaped yet); SIGKILL is due
    /// after `grace`.
    pub(super) fn terminate(&mut self, key: &Key, grace: Duration) -> bool {
        let Some(&pgid) = self.live.get(key) else { return false };
        tracing::debug!(task = %key.0, attempt = key.1, pgid, "SIGTERM to the process group");
        process::signal_group(pgid, Signal::SIGTERM);
        self.killing.insert(key.clone(), Instant::now() + grace);
        true
    }

    /// The attempt's child is reaped: its group is no longer signalled as such, unless it
    /// was being killed and others of the group live on.
    pub(super) fn reaped(&mut self, key: Key) {
        let grace_over = self.killing.remove(&key);
        let Some(pgid) = self.live.remove(&key) else { return };
        // (The scan of /proc only for a group that outlived its leader.)
        if let Some(grace_over) = grace_over.filter(|_| process::group_alive(pgid)) {
            let members = process::members_of(pgid);
            if !members.is_empty() {
                self.lingering.insert(key, Lingering { pgid, members, grace_over });
            }
        }
    }

    /// The attempt's grace period is over: SIGKILL to what is left of its group.
    pub(super) fn grace_over(&mut self, key: &Key) {
        if let Some(&pgid) = self.live.get(key) {
            tracing::info!(task = %key.0, attempt = key.1, pgid, "still running after the grace period: SIGKILL");
            process::signal_group(pgid, Signal::SIGKILL);
            // Done with: the reap to come must not keep the group as lingering.
            self.killing.remove(key);
        } else if let Some(l) = self.lingering.remove(key) {
            if l.still_ours() {
                tracing::info!(task = %key.0, attempt = key.1, pgid = l.pgid, "its group outlived the grace period: SIGKILL");
                process::signal_group(l.pgid, Signal::SIGKILL);
            }
        }
    }

    /// `signal` to every group (a second Ctrl-C: SIGKILL at once).
    pub(super) fn signal_all(&mut self, signal: Signal) {
        for &pgid in self.live.values() {
            process::signal_group(pgid, signal);
        }
        for l in std::mem::take(&mut self.lingering).into_values() {
            if l.still_ours() {
                process::signal_group(l.pgid, signal);
            }
        }
    }

    /// Until when the run's end must wait for what is left of killed attempts (the end
    /// of the last grace period), or None: nothing is left, or the grace is over.
    pub(super) fn waiting(&mut self) -> Option<Instant> {
        self.lingering.retain(|_, l| l.still_ours());
        self.lingering.values().map(|l| l.grace_over).max().filter(|&last| Instant::now() < last)
    }

    /// SIGKILL to whatever is left of killed attempts: nothing will once orch is gone.
    pub(super) fn kill_left(&mut self) {
        for l in std::mem::take(&mut self.lingering).into_values() {
            if l.still_ours() {
                process::signal_group(l.pgid, Signal::SIGKILL);
            }
        }
    }
}
