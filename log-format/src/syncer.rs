//! Group commit: a background thread that fdatasyncs the active segment at most once per
//! interval, so one sync covers every commit made since the previous one.
//!
//! The writer never waits for it; it only marks the file dirty. The first commit after
//! an idle period is synced at once; commits arriving while a sync runs or during the
//! interval after it share the next sync.

use std::fs::File;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

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
    dirty: bool,
    /// The thread is blocked on `wake` (not syncing, not sleeping out the interval):
    /// only then is a notify needed, and a notify is a syscall even with no waiter.
    waiting: bool,
    stop: bool,
    error: Option<std::io::Error>,
}

impl Syncer {
    pub(crate) fn start(file: Arc<File>, interval: Duration) -> Syncer {
        let shared = Arc::new(Shared {
            state: Mutex::new(State { file, dirty: false, waiting: false, stop: false, error: None }),
            wake: Condvar::new(),
        });
        let for_thread = shared.clone();
        let thread = std::thread::Builder::new()
            .name("orch-log-sync".into())
            .spawn(move || run(&for_thread, interval))
            .expect("spawning the group-commit thread");
        Syncer { shared, thread: Some(thread) }
    }

    pub(crate) fn mark_dirty(&self) {
        let mut st = self.lock();
        if !st.dirty {
            st.dirty = true;
            if st.waiting {
                self.shared.wake.notify_one();
            }
        }
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

fn run(shared: &Shared, interval: Duration) {
    let lock = || shared.state.lock().unwrap_or_else(|p| p.into_inner());
    let mut st = lock();
    loop {
        if st.dirty {
            st.dirty = false;
            let file = st.file.clone();
            drop(st);
            let result = file.sync_data();
            st = lock();
            if let Err(e) = result {
                st.error.get_or_insert(e);
            }
            if st.stop {
                continue; // one more pass: sync anything marked dirty meanwhile, then stop
            }
            // Sit out the interval (commits meanwhile share the next sync; they do not
            // notify, `waiting` is false), but wake for a stop at once: closing a log
            // must not wait out a long `batch:MS` interval.
            st = shared
                .wake
                .wait_timeout_while(st, interval, |s| !s.stop)
                .map(|(st, _)| st)
                .unwrap_or_else(|p| p.into_inner().0);
            continue;
        }
        if st.stop {
            return;
        }
        st.waiting = true;
        st = shared.wake.wait(st).unwrap_or_else(|p| p.into_inner());
        st.waiting = false;
    }
}
