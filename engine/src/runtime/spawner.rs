//! Children started with `clone(CLONE_VM)` and `execve`, with what does not change
//! between children built once per run. std's `Command` rebuilds everything per child
//! (a copy of the whole environment, `/dev/null` opened, stderr's fd duplicated, a
//! `prlimit64` per file action), and glibc's `posix_spawn` maps and unmaps a fresh stack
//! for each child (a TLB shootdown in a multi-threaded process), has the child ask the
//! kernel about each of the 64 signals before it execs, and suspends the parent until
//! it has (`CLONE_VFORK`). Here `/dev/null`, the base environment and the list of
//! signals orch handles are kept for the run, stacks are lent and given back, the child
//! does only what it must (`child.rs`), and the engine's thread does not wait for it.

use std::ffi::{c_int, CString};
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use nix::libc;

use super::child::{self, Inherited, Loans, Start};
use super::failure::Failure;

/// What every child of a run shares: an open `/dev/null`, the environment it inherits,
/// the signals to put back to their default, and the stacks it runs on before it execs.
pub struct Context {
    devnull: OwnedFd,
    /// The environment and the signals to reset. The signals: those with a handler in
    /// orch (which must not run in the child, in orch's memory), SIGPIPE (which Rust
    /// ignores, and an ignored signal stays ignored across exec), and SIGTERM (what a
    /// timeout or a cancel sends first: a child must not inherit it ignored — from a
    /// parent of orch's that ignored it — and sit out every grace period).
    inherited: Arc<Inherited>,
    /// orch's PATH, to look programs up on.
    path: Vec<u8>,
    loans: Mutex<Loans>,
    /// Children start with `CLONE_VFORK` (this thread waits for each exec): set by
    /// `ORCH_SPAWN=vfork` (for valgrind, which refuses a `CLONE_VM` child that is not a
    /// thread), or after an emulator refused one.
    vfork: AtomicBool,
    /// Answer a clone without `CLONE_VFORK` with EINVAL, as qemu's user mode does
    /// (tests of the fallback: there is no emulator here).
    #[cfg(test)]
    emulated: AtomicBool,
}

/// A child just made: its pid, and where it will say why, if it cannot run its program
/// (read once it is reaped).
#[derive(Debug)]
pub struct Spawned {
    pub pid: i32,
    pub failure: Arc<Failure>,
}

impl Context {
    /// `/dev/null`, the signals orch handles, and the environment as it is now, less
    /// the variables named in `replaced` (orch sets those per child).
    pub fn new(replaced: &[&str]) -> io::Result<Context> {
        let devnull = above_stdio(OwnedFd::from(std::fs::File::open("/dev/null")?))?;
        let mut reset = vec![libc::SIGPIPE, libc::SIGTERM];
        for sig in 1..=libc::SIGRTMAX() {
            let handled = disposition(sig).is_some_and(|d| d != libc::SIG_DFL && d != libc::SIG_IGN);
            if handled && sig != libc::SIGPIPE && sig != libc::SIGTERM {
                reset.push(sig);
            }
        }
        let mut env = Vec::new();
        let mut path = b"/bin:/usr/bin".to_vec();
        for (key, value) in std::env::vars_os() {
            let key = key.as_bytes().to_vec();
            if key == b"PATH" {
                path = value.as_bytes().to_vec();
            }
            if replaced.iter().any(|r| r.as_bytes() == key) {
                continue;
            }
            env.push((key.clone(), entry(&key, value.as_bytes())?));
        }
        let terminal = terminal_signals();
        let inherited = Arc::new(Inherited {
            env,
            reset,
            terminal,
            open_files: super::limits::started_with(),
            #[cfg(test)]
            raise: [0; 2],
        });
        let vfork = AtomicBool::new(std::env::var_os("ORCH_SPAWN").is_some_and(|v| v == "vfork"));
        Ok(Context {
            devnull,
            inherited,
            path,
            loans: Mutex::default(),
            vfork,
            #[cfg(test)]
            emulated: AtomicBool::new(false),
        })
    }
    /// The program to exec: `name` itself when it holds a `/`, else the first
    /// executable file of that name on `path` (the task's PATH if it sets one, else
    /// orch's), as `execvp` would find it in the child: a relative entry (an empty one
    /// is `.`) names a directory under the child's `cwd`, and the path returned is
    /// then relative to it, as the child will exec it.
    pub fn program(&self, name: &str, path: Option<&str>, cwd: Option<&str>) -> io::Result<CString> {
        if name.contains('/') {
            return Ok(CString::new(name)?);
        }
        let path = path.map_or(self.path.as_slice(), str::as_bytes);
        let from = std::path::Path::new(cwd.unwrap_or("."));
        for dir in path.split(|&b| b == b':') {
            let dir =
                std::path::Path::new(if dir.is_empty() { ".".as_ref() } else { std::ffi::OsStr::from_bytes(dir) });
            let candidate = dir.join(name);
            let runnable = std::fs::metadata(from.join(&candidate)).is_ok_and(|m| {
                use std::os::unix::fs::PermissionsExt;
                m.is_file() && m.permissions().mode() & 0o111 != 0
            });
            if runnable {
                return Ok(CString::new(candidate.into_os_string().into_vec())?);
            }
        }
        Err(io::Error::new(io::ErrorKind::NotFound, "command not found (no such executable on PATH)"))
    }

    /// Starts `program` with `argv` and the base environment less `skip` plus `extra`,
    /// stdin from `/dev/null`, stdout and stderr into `output`, in `cwd` if given, in
    /// a process group of its own; returns at once, the child still on its way to exec.
    /// A program that cannot be run (or a `cwd` that cannot be entered) is told by the
    /// child's exit, 127, and its `Failure`.
    pub fn spawn(
        &self,
        program: CString,
        argv: Vec<CString>,
        skip: &[&[u8]],
        extra: Vec<CString>,
        output: RawFd,
        cwd: Option<CString>,
    ) -> io::Result<Spawned> {
        self.spawn_with(program, argv, skip, extra, [self.devnull.as_raw_fd(), output, output], cwd)
    }

    /// As `spawn`, with the child's fds 0, 1 and 2 given (2 for orch's own stderr): a
    /// hook gets its input and gives its answer through pipes. The fds must be above 2,
    /// but for that one.
    #[allow(unsafe_code)]
    pub fn spawn_with(
        &self,
        program: CString,
        argv: Vec<CString>,
        skip: &[&[u8]],
        extra: Vec<CString>,
        fds: [RawFd; 3],
        cwd: Option<CString>,
    ) -> io::Result<Spawned> {
        let mut loans = self.loans.lock().unwrap_or_else(|p| p.into_inner());
        let start = Start { program, argv, skip, extra, cwd, fds };
        let (loan, failure) = child::Loan::new(loans.stack()?, start, &self.inherited);
        // SAFETY: every signal is blocked around the clone (a raw mask of all ones: libc's
        // `sigfillset` leaves out the two glibc keeps for itself), so no handler of orch's
        // runs in the child, in orch's memory, before it has reset them. The child reads
        // only its loan, which stays where it is until the kernel clears its tid word (at
        // its exec or exit), and writes only its failure cell (see `child.rs`).
        let pid = unsafe {
            let all = u64::MAX;
            let mut old = 0u64;
            libc::syscall(libc::SYS_rt_sigprocmask, libc::SIG_BLOCK, &all, &mut old, child::SIGSET_BYTES);
            let clone = |vfork: bool| {
                #[cfg(test)]
                if !vfork && self.emulated.load(Ordering::Relaxed) {
                    *libc::__errno_location() = libc::EINVAL;
                    return -1;
                }
                let flags = libc::CLONE_VM | libc::CLONE_CHILD_CLEARTID | libc::SIGCHLD;
                libc::clone(
                    child::run,
                    loan.stack_top(),
                    if vfork { flags | libc::CLONE_VFORK } else { flags },
                    loan.plan(),
                    std::ptr::null_mut::<libc::pid_t>(),
                    std::ptr::null_mut::<libc::c_void>(),
                    loan.tid_word(),
                )
            };
            let mut pid = clone(self.vfork.load(Ordering::Relaxed));
            let mut clone_error = io::Error::last_os_error();
            if pid < 0 && clone_error.raw_os_error() == Some(libc::EINVAL) && !self.vfork.load(Ordering::Relaxed) {
                // An emulator (qemu's user mode) takes `CLONE_VM` only for threads, and
                // `CLONE_VFORK` as a fork: wait for each exec, as before, from now on.
                self.vfork.store(true, Ordering::Relaxed);
                pid = clone(true);
                clone_error = io::Error::last_os_error();
            }
            libc::syscall(
                libc::SYS_rt_sigprocmask,
                libc::SIG_SETMASK,
                &old,
                std::ptr::null_mut::<u64>(),
                child::SIGSET_BYTES,
            );
            if pid < 0 {
                loans.unused(loan);
                return Err(clone_error);
            }
            // The child makes itself a group leader before it execs; made so here too,
            // so that a kill of its group from the moment this returns reaches it even if
            // it has not run yet. (EACCES once it has exec'd, by then in its group.)
            libc::setpgid(pid, pid);
            pid
        };
        loans.lend(loan);
        Ok(Spawned { pid, failure })
    }

    /// Children that may not have exec'd yet, and stacks to lend again (tests).
    #[cfg(test)]
    pub fn loans(&self) -> (usize, usize) {
        self.loans.lock().unwrap_or_else(|p| p.into_inner()).counts()
    }

    /// Starts children with `CLONE_VFORK`, as `ORCH_SPAWN=vfork` does (tests).
    #[cfg(test)]
    pub fn use_vfork(&self) {
        self.vfork.store(true, Ordering::Relaxed);
    }

    /// Refuses `CLONE_VM` without `CLONE_VFORK` from now on, as qemu's user mode does.
    #[cfg(test)]
    pub fn emulate_qemu_user(&self) {
        self.emulated.store(true, Ordering::Relaxed);
    }

    /// Each child raises `signals` at itself before it has a group of its own, as if
    /// they reached orch's group then (before any child is made).
    #[cfg(test)]
    pub fn raise_in_children(&mut self, signals: [c_int; 2]) {
        Arc::get_mut(&mut self.inherited).expect("no child made yet").raise = signals;
    }

    /// Whether children now start with `CLONE_VFORK`.
    #[cfg(test)]
    pub fn uses_vfork(&self) -> bool {
        self.vfork.load(Ordering::Relaxed)
    }
}

/// The signals a terminal (or a shell, to a job) sends to a process group that orch
/// does not ignore: what a child drops if they reached it in orch's group before it
/// left it (see `child::Inherited::terminal`).
pub(super) fn terminal_signals() -> Vec<c_int> {
    let terminal = [libc::SIGINT, libc::SIGQUIT, libc::SIGHUP, libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU];
    terminal.into_iter().filter(|&sig| disposition(sig) != Some(libc::SIG_IGN)).collect()
}

/// What this process does with `sig` now (`SIG_DFL`, `SIG_IGN`, or a handler), None if
/// it cannot be asked.
#[allow(unsafe_code)]
pub(super) fn disposition(sig: c_int) -> Option<libc::sighandler_t> {
    // SAFETY: a query only (no new action); `old` is written by the call.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    (unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) } == 0).then_some(old.sa_sigaction)
}

/// A new open file of the file `fd` is open on (write-only, close-on-exec, numbered 3 or
/// above), through `fds`, orch's `/proc/self/fd` opened once: a walk of one name, not of
/// `/proc/self/fd/N` from the root (which cost ~3% of a run of 2,000 `/bin/true`).
#[allow(unsafe_code)]
pub fn reopen(fds: &std::fs::File, fd: RawFd) -> io::Result<OwnedFd> {
    let name = std::ffi::CString::new(fd.to_string())?;
    // SAFETY: openat on a directory fd this File owns, with a valid C string; the fd it
    // returns is new and owned by nothing else.
    let flags = libc::O_WRONLY | libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_LARGEFILE;
    let new = unsafe { libc::openat(fds.as_raw_fd(), name.as_ptr(), flags) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `new` is the fd openat just returned, owned by nothing else.
    above_stdio(unsafe { OwnedFd::from_raw_fd(new) })
}

/// Whether `file` is open only through orch's own open file (and its duplicates): a
/// write lease is granted only then (`fcntl(F_SETLEASE)`; released at once). None when
/// the file system has no leases. While a lease is held, an open of the file by another
/// process sends orch SIGIO, whose default would end it: the runtime handles SIGIO for
/// this (`driver.rs`).
#[allow(unsafe_code)]
pub fn sole_opener(file: &std::fs::File) -> Option<bool> {
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor this File owns; F_SETLEASE takes an int argument.
    let taken = unsafe { libc::fcntl(fd, libc::F_SETLEASE, libc::F_WRLCK) };
    if taken == 0 {
        // SAFETY: as above. A lease that would not go is not vouched for: the caller
        // drops the file (closing it ends the lease).
        let released = unsafe { libc::fcntl(fd, libc::F_SETLEASE, libc::F_UNLCK) } == 0;
        return Some(released);
    }
    match io::Error::last_os_error().raw_os_error() {
        Some(libc::EAGAIN) => Some(false),
        _ => None,
    }
}

/// An fd numbered 3 or above: a child's 0, 1 and 2 are made by `dup2` from these, which
/// must not be (and must not be clobbered by) one another's targets.
#[allow(unsafe_code)]
pub fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    // SAFETY: F_DUPFD_CLOEXEC returns a new fd that nothing else owns.
    let new = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("devnull", &self.devnull)
            .field("env", &self.inherited.env.len())
            .field("reset", &self.inherited.reset)
            .finish()
    }
}

/// `KEY=VALUE` as a C string (an error for a NUL inside, as std's `Command` gives).
pub fn entry(key: &[u8], value: &[u8]) -> io::Result<CString> {
    let mut e = Vec::with_capacity(key.len() + value.len() + 1);
    e.extend_from_slice(key);
    e.push(b'=');
    e.extend_from_slice(value);
    CString::new(e).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "nul byte in an environment variable"))
}

/// The clock `/proc/PID/stat` counts a process's start time in (field 22), in its
/// ticks: `CLOCK_BOOTTIME` / (1 s / `_SC_CLK_TCK`), the same integer division the kernel
/// does. Read just before and just after a spawn, it gives the child's start time
/// without opening `/proc` whenever both reads fall in the same tick (the kernel takes
/// the child's start time between them).
#[allow(unsafe_code)]
pub fn boot_ticks() -> Option<u64> {
    static NS_PER_TICK: OnceLock<u64> = OnceLock::new();
    let per_tick = *NS_PER_TICK.get_or_init(|| {
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        if hz > 0 {
            1_000_000_000 / hz as u64
        } else {
            0
        }
    });
    if per_tick == 0 {
        return None;
    }
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid timespec to write to.
    if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) } != 0 {
        return None;
    }
    Some((ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64) / per_tick)
}
