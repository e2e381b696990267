//! `posix_spawn` called directly, with what does not change between children built once.
//! std's `Command` rebuilds everything per child — a copy of the whole environment,
//! `/dev/null` opened, stderr's fd duplicated, three file actions (and glibc checks the
//! fd limit with a `prlimit64` for each) — which was most of orch's own syscalls on a
//! short task. Here the attributes, `/dev/null` and the base environment live for the
//! run, and each output file keeps its file actions.

use std::ffi::{c_char, CStr, CString};
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::OnceLock;

use nix::libc;

/// glibc's posix_spawn functions return the error number itself.
fn check(ret: libc::c_int) -> io::Result<()> {
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(ret))
    }
}

/// A child's file actions: stdin from `/dev/null`, stdout and stderr both into one
/// output file, and a working directory when the task has one.
pub struct FileActions(Box<libc::posix_spawn_file_actions_t>);

// SAFETY: the actions are plain data owned by this value (glibc keeps them in a heap
// array it allocates); posix_spawn only reads them, and they are changed only through
// `&mut self` while being built.
#[allow(unsafe_code)]
unsafe impl Send for FileActions {}

impl FileActions {
    #[allow(unsafe_code)]
    pub fn new(devnull: RawFd, output: RawFd, cwd: Option<&CStr>) -> io::Result<FileActions> {
        // SAFETY: an all-zero value is a valid argument for `_init`, which fills it in;
        // the `FileActions` (whose Drop destroys it) exists only once init succeeded.
        let mut raw: Box<libc::posix_spawn_file_actions_t> = Box::new(unsafe { std::mem::zeroed() });
        check(unsafe { libc::posix_spawn_file_actions_init(&mut *raw) })?;
        let mut actions = FileActions(raw);
        // SAFETY: `actions.0` was initialised above; the fds and path outlive the call
        // (glibc copies the path).
        unsafe {
            check(libc::posix_spawn_file_actions_adddup2(&mut *actions.0, devnull, 0))?;
            check(libc::posix_spawn_file_actions_adddup2(&mut *actions.0, output, 1))?;
            check(libc::posix_spawn_file_actions_adddup2(&mut *actions.0, output, 2))?;
            if let Some(cwd) = cwd {
                check(libc::posix_spawn_file_actions_addchdir_np(&mut *actions.0, cwd.as_ptr()))?;
            }
        }
        Ok(actions)
    }
}

impl Drop for FileActions {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // SAFETY: initialised in `new`, destroyed once.
        unsafe { libc::posix_spawn_file_actions_destroy(&mut *self.0) };
    }
}

impl fmt::Debug for FileActions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FileActions")
    }
}

/// What every child of a run shares: its attributes (a process group of its own, an
/// empty signal mask, SIGPIPE back to its default — Rust ignores it in orch), an open
/// `/dev/null`, and the environment it inherits.
pub struct Context {
    attr: Box<libc::posix_spawnattr_t>,
    devnull: OwnedFd,
    base_env: Vec<(Vec<u8>, CString)>,
}

// SAFETY: the attributes are written only in `new`; posix_spawn only reads them, from
// any thread.
#[allow(unsafe_code)]
unsafe impl Send for Context {}
#[allow(unsafe_code)]
unsafe impl Sync for Context {}

impl Context {
    /// Attributes, `/dev/null`, and the environment as it is now, less the variables
    /// named in `replaced` (orch sets those per child).
    #[allow(unsafe_code)]
    pub fn new(replaced: &[&str]) -> io::Result<Context> {
        let devnull = OwnedFd::from(std::fs::File::open("/dev/null")?);
        // SAFETY: as for the file actions: zeroed, then initialised before use; the
        // sigsets are initialised by sigemptyset before they are read.
        let mut attr: Box<libc::posix_spawnattr_t> = Box::new(unsafe { std::mem::zeroed() });
        check(unsafe { libc::posix_spawnattr_init(&mut *attr) })?;
        let mut context = Context { attr, devnull, base_env: Vec::new() };
        unsafe {
            let a = &mut *context.attr;
            let flags = libc::POSIX_SPAWN_SETPGROUP | libc::POSIX_SPAWN_SETSIGMASK | libc::POSIX_SPAWN_SETSIGDEF;
            check(libc::posix_spawnattr_setflags(a, flags as libc::c_short))?;
            check(libc::posix_spawnattr_setpgroup(a, 0))?;
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            check(libc::posix_spawnattr_setsigmask(a, &set))?;
            libc::sigaddset(&mut set, libc::SIGPIPE);
            check(libc::posix_spawnattr_setsigdefault(a, &set))?;
        }
        for (key, value) in std::env::vars_os() {
            let key = key.as_bytes().to_vec();
            if replaced.iter().any(|r| r.as_bytes() == key) {
                continue;
            }
            context.base_env.push((key.clone(), entry(&key, value.as_bytes())?));
        }
        Ok(context)
    }

    pub fn devnull(&self) -> RawFd {
        self.devnull.as_raw_fd()
    }

    /// Starts `program` (found on the parent's PATH when `search`) with `argv` and the
    /// base environment less `skip` plus `extra`; returns its pid. The child is
    /// `exec`'d before this returns: a program that cannot be run is an error here.
    #[allow(unsafe_code)]
    pub fn spawn(
        &self,
        program: &CStr,
        search: bool,
        argv: &[CString],
        skip: &[&[u8]],
        extra: &[CString],
        actions: &FileActions,
    ) -> io::Result<i32> {
        let mut args: Vec<*mut c_char> = argv.iter().map(|a| a.as_ptr() as *mut c_char).collect();
        args.push(std::ptr::null_mut());
        let mut envp: Vec<*mut c_char> = Vec::with_capacity(self.base_env.len() + extra.len() + 1);
        for (key, e) in &self.base_env {
            if !skip.contains(&key.as_slice()) {
                envp.push(e.as_ptr() as *mut c_char);
            }
        }
        envp.extend(extra.iter().map(|e| e.as_ptr() as *mut c_char));
        envp.push(std::ptr::null_mut());
        let mut pid: libc::pid_t = 0;
        // SAFETY: every pointer is to a NUL-terminated string owned by `argv`, `extra`
        // or `self`, alive for the call; both arrays end with a null pointer; the
        // attributes and actions were initialised. posix_spawn does not keep them.
        let ret = unsafe {
            let f = if search { libc::posix_spawnp } else { libc::posix_spawn };
            f(&mut pid, program.as_ptr(), &*actions.0, &*self.attr, args.as_ptr(), envp.as_ptr())
        };
        check(ret).map(|()| pid)
    }
}

impl Drop for Context {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // SAFETY: initialised in `new`, destroyed once.
        unsafe { libc::posix_spawnattr_destroy(&mut *self.attr) };
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context").field("devnull", &self.devnull).field("base_env", &self.base_env.len()).finish()
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
