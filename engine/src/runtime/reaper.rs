//! One thread that reaps every child orch spawns and hands each exit to its callback.
//! tokio reaps a child through a pidfd of its own (`pidfd_open`, two `epoll_ctl`s,
//! `close`, `wait4`, and a task on the runtime): five syscalls per child where a thread
//! blocked in `waitid` needs two.
//!
//! Only registered children are reaped: other code in the process may have children of
//! its own and wait for them by pid. So the thread first *looks* at the next exited
//! child (`WNOWAIT`, which leaves it waitable) and reaps it only if it is registered. A
//! child that is not registered is either ours, exited before its spawner registered
//! it (the reaper then waits for that spawn to finish), or someone else's not yet
//! waited for, which could be the only one such a look ever returns: while one is in
//! the way the thread polls its own children by pid instead, at short intervals.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use nix::errno::Errno;
use nix::libc;

use crate::record::ExitStatus;

/// Called on the reaper thread with the child's exit status (`None`: it could not be
/// waited for, someone else reaped it).
pub type OnExit = Box<dyn FnOnce(Option<ExitStatus>) + Send>;

struct Registry {
    children: BTreeMap<i32, OnExit>,
    /// Spawns begun and not yet registered (or failed).
    spawning: u32,
    /// The reaper waits on `WAKE`: for a first child (`idle`), or for the spawns in
    /// progress to register theirs (`awaiting`).
    idle: bool,
    awaiting: bool,
    started: bool,
}

static REGISTRY: Mutex<Registry> =
    Mutex::new(Registry { children: BTreeMap::new(), spawning: 0, idle: false, awaiting: false, started: false });
static WAKE: Condvar = Condvar::new();

/// Polling intervals while someone else's exited child is in the way.
const POLL_MIN: Duration = Duration::from_micros(50);
const POLL_MAX: Duration = Duration::from_millis(2);

fn registry() -> MutexGuard<'static, Registry> {
    // A panic elsewhere never leaves the map half-changed (inserts and removes only).
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A spawn in progress: until it is registered (or dropped, when the spawn failed), an
/// exited child the reaper does not know may be this one.
pub struct Spawning(());

impl std::fmt::Debug for Spawning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("reaper::Spawning")
    }
}

/// Call before spawning a child (starts the reaper thread the first time).
pub fn begin() -> std::io::Result<Spawning> {
    let mut reg = registry();
    if !reg.started {
        std::thread::Builder::new().name("orch-reaper".into()).spawn(run)?;
        reg.started = true;
    }
    reg.spawning += 1;
    Ok(Spawning(()))
}

impl Spawning {
    /// `on_exit` will be called, on the reaper thread, once child `pid` has exited.
    pub fn register(self, pid: i32, on_exit: OnExit) {
        let mut reg = registry();
        reg.children.insert(pid, on_exit);
        spawn_done(&mut reg);
        drop(reg);
        std::mem::forget(self);
    }
}

impl Drop for Spawning {
    fn drop(&mut self) {
        spawn_done(&mut registry());
    }
}

fn spawn_done(reg: &mut Registry) {
    reg.spawning -= 1;
    if reg.idle || reg.awaiting {
        reg.idle = false;
        reg.awaiting = false;
        WAKE.notify_one();
    }
}

fn run() {
    let mut poll = POLL_MIN;
    loop {
        {
            let mut reg = registry();
            while reg.children.is_empty() {
                reg.idle = true;
                reg = WAKE.wait(reg).unwrap_or_else(PoisonError::into_inner);
            }
            reg.idle = false;
        }
        match wait(libc::P_ALL, 0, libc::WNOWAIT) {
            Ok(Some((pid, _))) => {
                let mut reg = registry();
                let mine = reg.children.remove(&pid);
                if mine.is_none() && reg.spawning > 0 {
                    // Perhaps a child of ours that exited before it was registered: wait
                    // for the spawns in progress (briefly: it may be someone else's).
                    reg.awaiting = true;
                    let _ = WAKE.wait_timeout(reg, POLL_MAX).unwrap_or_else(PoisonError::into_inner);
                    continue;
                }
                drop(reg);
                match mine {
                    Some(on_exit) => match wait(libc::P_PID, pid, libc::WNOHANG) {
                        Ok(Some((_, status))) => {
                            finish(on_exit, Some(status));
                            poll = POLL_MIN;
                        }
                        // The exited child was someone else's and already reaped, and
                        // its pid is ours again: keep waiting for ours.
                        Ok(None) => {
                            registry().children.insert(pid, on_exit);
                        }
                        Err(_) => finish(on_exit, None),
                    },
                    None => {
                        // Someone else's child: theirs to reap. Ours are polled meanwhile.
                        poll_registered();
                        std::thread::sleep(poll);
                        poll = (poll * 2).min(POLL_MAX);
                    }
                }
            }
            Ok(None) | Err(Errno::EINTR) => {}
            Err(Errno::ECHILD) => {
                // No children at all, yet some registered: reaped by someone waiting
                // for any child. Their exits are lost; say so rather than hang.
                let lost = std::mem::take(&mut registry().children);
                for (_, on_exit) in lost {
                    finish(on_exit, None);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "waitid failed");
                std::thread::sleep(POLL_MAX);
            }
        }
    }
}

/// Reaps whichever registered children have exited, by pid.
fn poll_registered() {
    let pids: Vec<i32> = registry().children.keys().copied().collect();
    for pid in pids {
        let status = match wait(libc::P_PID, pid, libc::WNOHANG) {
            Ok(None) => continue,
            Ok(Some((_, status))) => Some(status),
            Err(_) => None,
        };
        if let Some(on_exit) = registry().children.remove(&pid) {
            finish(on_exit, status);
        }
    }
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
/// A callback that panics must not take the reaper (and every later exit) with it.
fn finish(on_exit: OnExit, status: Option<ExitStatus>) {
    if catch_unwind(AssertUnwindSafe(|| on_exit(status))).is_err() {
        tracing::error!("an exit callback panicked");
    }
}
