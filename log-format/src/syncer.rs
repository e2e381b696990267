//! Group commit: a background thread that fdatasyncs the active segment, so one sync
//! covers every commit made since the previous one.
//!
//! The writer never waits for it; it only marks the file dirty. When the thread syncs is
//! decided by [`Cadence`], a pure rule over three instants (tested without a clock): a
//! burst of commits after a quiet spell is synced once the burst is gathered (5 ms: one
//! task's exit, the decisions it leads to and the next child's start come microseconds
//! apart, a run's start and its first children a millisecond or two), and commits that keep coming share one sync per interval at most.

use std::fs::File;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the first commit of a burst waits for the rest of it.
const GATHER: Duration = Duration::from_millis(5);

/// When the next sync is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cadence {
    interval: Duration,
    gather: Duration,
}

/// What the sync thread does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Nothing to sync: wait for a commit.
    Idle,
    /// Sync at this instant (at once if it has passed).
    SyncAt(Instant),
}

impl Cadence {
    pub(crate) fn new(interval: Duration) -> Cadence {
        Cadence { interval, gather: GATHER.min(interval) }
    }

    /// `dirty_since`: the first commit not yet synced; `last_sync_end`: when the last sync
    /// returned. A burst that starts an interval or more after the last sync is synced
    /// once gathered; one that starts sooner (during that sync, or just after) waits out
    /// the interval, which caps syncs at one per interval. So what a power loss can take
    /// is at most an interval, plus the sync under way and the gathering.
    pub(crate) fn next(&self, dirty_since: Option<Instant>, last_sync_end: Option<Instant>) -> Next {
        let Some(first) = dirty_since else { return Next::Idle };
        let gathered = first + self.gather;
        match last_sync_end {
            Some(end) if first < end + self.interval => Next::SyncAt((end + self.interval).max(gathered)),
            _ => Next::SyncAt(gathered),
        }
    }
}

#[derive(Debug)]
pub(crate) struct Syncer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Debug)]
struct State {
    file: Arc<File>,
    /// The first commit since the last sync began (None: nothing to sync).
    dirty_since: Option<Instant>,
    /// The thread is blocked on `wake` with nothing to sync: only then is a notify
    /// needed, and a notify is a syscall even with no waiter. (While it waits for a
    /// sync's due time it wakes by itself.)
    waiting: bool,
    stop: bool,
    error: Option<std::io::Error>,
    /// Syncs done, for tests.
    syncs: u64,
}

impl Syncer {
    pub(crate) fn start(file: Arc<File>, interval: Duration) -> Syncer {
        let shared = Arc::new(Shared {
            state: Mutex::new(State { file, dirty_since: None, waiting: false, stop: false, error: None, syncs: 0 }),
            wake: Condvar::new(),
        });
        let for_thread = shared.clone();
        let cadence = Cadence::new(interval);
        let thread = std::thread::Builder::new()
            .name("orch-log-sync".into())
            .spawn(move || run(&for_thread, cadence))
            .expect("spawning the group-commit thread");
        Syncer { shared, thread: Some(thread) }
    }

    pub(crate) fn mark_dirty(&self) {
        let mut st = self.lock();
        if st.dirty_since.is_none() {
            // One clock read per sync, not per commit: later commits join this one.
            st.dirty_since = Some(Instant::now());
            if st.waiting {
                self.shared.wake.notify_one();
            }
        }
    }

    /// The writer is about to sync every commit itself (`Writer::sync`, `close`, a roll):
    /// nothing is left for this thread (a close used to sync twice).
    pub(crate) fn clear(&self) {
        self.lock().dirty_since = None;
    }

    /// Points the syncer at a new active segment (after a roll, which synced the old one).
    pub(crate) fn set_file(&self, file: Arc<File>) {
        self.lock().file = file;
    }

    /// The error of a failed background sync, reported once to the next commit.
    pub(crate) fn take_error(&self) -> Option<std::io::Error> {
        self.lock().error.take()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.lock().stop = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(shared: &Shared, cadence: Cadence) {
    let lock = || shared.state.lock().unwrap_or_else(|p| p.into_inner());
    let mut st = lock();
    let mut last_sync_end = None;
    loop {
        // A stop syncs what is dirty at once: closing a log must not wait out an interval.
        let due = match cadence.next(st.dirty_since, last_sync_end) {
            Next::Idle if st.stop => return,
            Next::Idle => None,
            Next::SyncAt(_) if st.stop => Some(Duration::ZERO),
            Next::SyncAt(at) => Some(at.saturating_duration_since(Instant::now())),
        };
        match due {
            None => {
                st.waiting = true;
                st = shared.wake.wait(st).unwrap_or_else(|p| p.into_inner());
                st.waiting = false;
            }
            Some(wait) if !wait.is_zero() => {
                st = shared
                    .wake
                    .wait_timeout_while(st, wait, |s| !s.stop)
                    .map(|(st, _)| st)
                    .unwrap_or_else(|p| p.into_inner().0);
            }
            Some(_) => {
                st.dirty_since = None;
                let file = st.file.clone();
                drop(st);
                let result = file.sync_data();
                last_sync_end = Some(Instant::now());
                st = lock();
                st.syncs += 1;
                if let Err(e) = result {
                    st.error.get_or_insert(e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn nothing_to_sync_waits_for_a_commit() {
        let c = Cadence::new(50 * MS);
        let t = Instant::now();
        assert_eq!(c.next(None, None), Next::Idle);
        assert_eq!(c.next(None, Some(t)), Next::Idle);
    }

    #[test]
    fn a_burst_after_a_quiet_spell_is_synced_once_gathered() {
        let c = Cadence::new(50 * MS);
        let t = Instant::now();
        assert_eq!(c.next(Some(t), None), Next::SyncAt(t + GATHER), "the first burst of a log");
        let end = t;
        let later = end + 50 * MS;
        assert_eq!(c.next(Some(later), Some(end)), Next::SyncAt(later + GATHER), "an interval after the last sync");
        let much_later = end + 10_000 * MS;
        assert_eq!(c.next(Some(much_later), Some(end)), Next::SyncAt(much_later + GATHER));
    }

    #[test]
    fn commits_that_keep_coming_share_one_sync_per_interval() {
        let c = Cadence::new(50 * MS);
        let end = Instant::now();
        // A commit made during the last sync (before it returned), or just after it.
        let during = end - MS / 2;
        assert_eq!(c.next(Some(during), Some(end)), Next::SyncAt(end + 50 * MS));
        assert_eq!(c.next(Some(end + 10 * MS), Some(end)), Next::SyncAt(end + 50 * MS));
        // Near the end of the interval, the burst still gets its gathering time.
        let late = end + 49 * MS;
        assert_eq!(c.next(Some(late), Some(end)), Next::SyncAt(late + GATHER));
    }

    #[test]
    fn the_gathering_never_outlasts_a_short_interval() {
        let short = Duration::from_micros(300);
        let c = Cadence::new(short);
        let t = Instant::now();
        assert_eq!(c.next(Some(t), None), Next::SyncAt(t + short));
    }

    fn syncer(interval: Duration) -> (tempfile::TempDir, Syncer) {
        let dir = tempfile::tempdir().unwrap();
        let file = File::create(dir.path().join("seg")).unwrap();
        (dir, Syncer::start(Arc::new(file), interval))
    }

    fn wait_for_syncs(s: &Syncer, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while s.lock().syncs < n || s.lock().dirty_since.is_some() {
            assert!(Instant::now() < deadline, "no sync within 20 s");
            std::thread::sleep(MS);
        }
    }

    #[test]
    fn a_commit_after_a_quiet_spell_does_not_wait_out_a_long_interval() {
        // An hour's interval: only the quiet-spell rule can sync these in time.
        let (_dir, s) = syncer(Duration::from_secs(3600));
        s.mark_dirty();
        s.mark_dirty();
        wait_for_syncs(&s, 1);
        assert_eq!(s.lock().syncs, 1, "one burst, one sync");
    }

    #[test]
    fn what_the_writer_synced_itself_is_not_synced_again() {
        let (_dir, s) = syncer(Duration::from_secs(3600));
        s.mark_dirty();
        wait_for_syncs(&s, 1);
        s.mark_dirty(); // due in an hour
        s.clear(); // the writer synced it (a close)
        let shared = s.shared.clone();
        drop(s); // stops the thread, which syncs what is still dirty
        assert_eq!(shared.state.lock().unwrap().syncs, 1);
    }

    #[test]
    fn a_commit_soon_after_a_sync_waits_for_the_interval() {
        let (_dir, s) = syncer(Duration::from_secs(3600));
        s.mark_dirty();
        wait_for_syncs(&s, 1);
        s.mark_dirty();
        std::thread::sleep(50 * MS);
        let st = s.lock();
        assert_eq!((st.syncs, st.dirty_since.is_some()), (1, true), "synced again within the interval");
    }
}
