//! Reaps the children orch spawns, on the thread that asks, and hands each exit to its
//! callback. The run's driver calls `reap_ready` on its own thread whenever SIGCHLD
//! arrives (a tokio signal stream, `driver.rs`): the engine learns of an exit with one
//! wake. A
//! reaper thread blocked in `waitid` cost a second one per exit (that thread, then the
//! engine's, through a channel), the latency between an exit and the next spawn; and
//! tokio's own reaping costs a pidfd, two `epoll_ctl`s, a `close` and a task per child.
//!
//! Only registered children are reaped (tasks' children and hooks): other code in the
//! process may have children of its own and wait for them by pid (a program using the
//! engine as a library, tokio::process). So the next
//! exited child is first only *looked* at (`WNOWAIT`, which leaves it waitable) and
//! reaped only if it is registered. Someone else's exited child not yet waited for is
//! what such a look would return again and again: while one is in the way, the
//! registered children are polled by pid instead. SIGCHLD comes for every exit (several
//! may share one signal: each wake reaps all that are ready), so nothing needs a timer.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Mutex, MutexGuard, PoisonError};

use nix::errno::Errno;
use nix::libc;

use crate::record::ExitStatus;

/// Called by `reap_ready` with the child's exit status (`None`: it could not be waited
/// for, someone else reaped it).
pub type OnExit = Box<dyn FnOnce(Option<ExitStatus>) + Send>;

/// Registered children by pid. A mutex, not a thread-local: tests spawn and reap from
/// several threads of one process; in a run it is never contended.
static CHILDREN: Mutex<BTreeMap<i32, OnExit>> = Mutex::new(BTreeMap::new());

fn children() -> MutexGuard<'static, BTreeMap<i32, OnExit>> {
    // A panic elsewhere never leaves the map half-changed (inserts and removes only).
    CHILDREN.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `on_exit` will be called by the `reap_ready` that finds child `pid` exited. Until it
/// is registered a child is not reaped: its zombie waits for a later call. In a run,
/// spawns and reaping share the engine's thread, so that call comes after the spawn.
pub fn register(pid: i32, on_exit: OnExit) {
    children().insert(pid, on_exit);
}

/// Reaps every registered child that has exited, without blocking, calling each one's
/// callback on this thread. Returns how many were reaped.
pub fn reap_ready() -> usize {
    let mut reaped = 0;
    loop {
        if children().is_empty() {
            return reaped;
        }
        match wait(libc::P_ALL, 0, libc::WNOWAIT | libc::WNOHANG) {
            Ok(Some((pid, _))) => {
                let Some(on_exit) = children().remove(&pid) else {
                    // Someone else's child (or ours not yet registered): theirs to
                    // reap. Ours are polled by pid meanwhile.
                    return reaped + poll_registered();
                };
                match wait(libc::P_PID, pid, libc::WNOHANG) {
                    Ok(Some((_, status))) => finish(on_exit, Some(status)),
                    // The exited child was someone else's and already reaped, and its
                    // pid is ours again: keep waiting for ours.
                    Ok(None) => {
                        children().insert(pid, on_exit);
                        return reaped + poll_registered();
                    }
                    Err(_) => finish(on_exit, None),
                }
                reaped += 1;
            }
            Ok(None) => return reaped,
            Err(Errno::EINTR) => {}
            // No children at that instant, yet some registered: reaped by someone waiting
            // for any child, or — where other threads spawn and reap too (tests) —
            // registered since the look. Asked one by one: a pid that is no child of
            // ours lost its exit (said so rather than hang); a live one stays.
            Err(Errno::ECHILD) => return reaped + poll_registered(),
            Err(e) => {
                tracing::warn!(error = %e, "waitid failed");
                return reaped + poll_registered();
            }
        }
    }
}

/// Reaps whichever registered children have exited, by pid.
///
/// As in `reap_ready`, a child is only looked at (`WNOWAIT`) until its registration is
/// taken, and only the caller that took it reaps it: where several threads reap (tests),
/// reaping first could consume the status of a child another thread has just taken.
fn poll_registered() -> usize {
    let pids: Vec<i32> = children().keys().copied().collect();
    let mut reaped = 0;
    for pid in pids {
        if let Ok(None) = wait(libc::P_PID, pid, libc::WNOHANG | libc::WNOWAIT) {
            continue; // still running
        }
        let Some(on_exit) = children().remove(&pid) else { continue };
        let status = match wait(libc::P_PID, pid, libc::WNOHANG) {
            Ok(Some((_, status))) => Some(status),
            Ok(None) => {
                // Not exited after all (its pid was someone else's exited child's).
                children().insert(pid, on_exit);
                continue;
            }
            // Not a child of ours any more: someone else reaped it.
            Err(_) => None,
        };
        finish(on_exit, status);
        reaped += 1;
    }
    reaped
}

/// `waitid(idtype, id, WEXITED | flags)`: the pid and exit status of an exited child,
/// `None` if none has exited (`WNOHANG`). Read from the siginfo directly: a child
/// killed by a real-time signal is an exit like any other.
#[allow(unsafe_code)]
fn wait(idtype: libc::idtype_t, id: i32, flags: libc::c_int) -> Result<Option<(i32, ExitStatus)>, Errno> {
    // SAFETY: a zeroed siginfo_t is valid (si_pid reads 0 when WNOHANG finds nothing);
    // waitid writes into it, and the accessors read the fields waitid set for SIGCHLD.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        Errno::result(libc::waitid(idtype, id as libc::id_t, &mut info, libc::WEXITED | flags))?;
        let pid = info.si_pid();
        if pid == 0 {
            return Ok(None);
        }
        let status = match info.si_code {
            libc::CLD_EXITED => ExitStatus::Code(info.si_status()),
            _ => ExitStatus::Signal(info.si_status()),
        };
        Ok(Some((pid, status)))
    }
}

/// A callback that panics must not take the caller (and every later exit) with it.
fn finish(on_exit: OnExit, status: Option<ExitStatus>) {
    if catch_unwind(AssertUnwindSafe(|| on_exit(status))).is_err() {
        tracing::error!("an exit callback panicked");
    }
}

/// Runs `f` (which starts a helper thread: the log's group-commit thread) with SIGCHLD
/// blocked, so that the thread, which inherits the mask, never takes the signal. The
/// kernel sends SIGCHLD to the engine's thread unless that thread blocks it, which it
/// does around a spawn's `clone`; a helper thread taking it then woke the engine's
/// thread from another core (a second hop for an exit).
pub fn without_sigchld_in_new_threads<T>(f: impl FnOnce() -> T) -> T {
    use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow, Signal};
    let mut chld = SigSet::empty();
    chld.add(Signal::SIGCHLD);
    let mut old = SigSet::empty();
    let blocked = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&chld), Some(&mut old)).is_ok();
    let out = f();
    if blocked && !old.contains(Signal::SIGCHLD) {
        let _ = pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&chld), None);
    }
    out
}
