//! A child between `clone` and `execve`: what it reads in orch's memory, what it does
//! there, and how long orch keeps that memory for it.
//!
//! Children are made with `CLONE_VM` and without `CLONE_VFORK`: a child runs in orch's
//! memory, on a stack of its own, while the engine's thread goes on. With `CLONE_VFORK`
//! that thread slept through every child's exec (~0.25 ms on a 2-core machine), and an
//! exit that came meanwhile waited for it with its core idle. Two rules follow:
//!
//! - Nothing the child reads may move or be freed until it has exec'd or exited. The
//!   kernel says when by clearing a word (`CLONE_CHILD_CLEARTID`: at exec, when the
//!   child lets go of orch's memory, or at exit); until then a [`Lent`] keeps the child's
//!   stack and everything its [`Plan`] points to.
//! - The child makes its system calls raw (the `syscalls` crate), never through libc:
//!   libc's wrappers write errno into the thread-local storage of the thread that
//!   cloned it, a thread that now runs on. A child reads no thread-local, allocates
//!   nothing, takes no lock, and never unwinds.

use std::alloc::{alloc, dealloc, Layout};
use std::ffi::{c_char, c_int, c_void, CString};
use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use nix::libc;
use syscalls::{syscall, Errno, Sysno};

use super::failure::Failure;

/// The child's stack: it runs a few frames deep until it execs.
const STACK_BYTES: usize = 64 * 1024;

/// Stacks kept to lend again: a run's children usually let go of theirs long before
/// the next spawns.
const SPARE_STACKS: usize = 16;

/// The kernel's signal set, in bytes (`_NSIG / 8`), as `rt_sigaction` and
/// `rt_sigprocmask` take it: 64 signals on every architecture orch builds for (mips,
/// with 128, is not one).
pub(super) const SIGSET_BYTES: usize = 8;

#[cfg(any(target_arch = "mips", target_arch = "mips64", target_arch = "mips32r6", target_arch = "mips64r6"))]
compile_error!("the child's raw signal calls assume a 64-signal kernel sigset");

/// What every child of a run inherits from orch: the environment, the signals to put
/// back to their default, and the terminal's signals to drop. Shared by the run's
/// `spawner::Context` and every loan.
#[derive(Debug)]
pub(super) struct Inherited {
    pub env: Vec<(Vec<u8>, CString)>,
    pub reset: Vec<c_int>,
    /// The signals a terminal (or a shell, to a job) sends to a process group — Ctrl-C,
    /// the quit key, hang-up, Ctrl-Z and the background-tty stops — that orch does not
    /// ignore. A child is in orch's group from its clone to its `setpgid`, and one sent
    /// to that group meanwhile would reach it late, in a group of its own: a Ctrl-Z would
    /// stop it where the `fg` that continues orch's group does not reach (the run waits
    /// for it forever), a Ctrl-C would kill it and fail its task instead of cancelling
    /// it. Children are kept out of orch's job control: such a signal is dropped. orch
    /// itself sends its children only SIGTERM, SIGKILL and SIGCONT.
    pub terminal: Vec<c_int>,
    /// The open-file limits (soft, hard) orch started with, when it raised its own
    /// (`limits.rs`).
    pub open_files: Option<[u64; 2]>,
    /// Signals each child raises at itself first (0: none), as if they reached orch's
    /// group then (tests).
    #[cfg(test)]
    pub raise: [c_int; 2],
}

/// One child's start: its program, arguments and cwd, its environment (the inherited
/// one less `skip`, plus `extra`), its stdin and its output.
#[derive(Debug)]
pub(super) struct Start<'a> {
    pub program: CString,
    pub argv: Vec<CString>,
    pub skip: &'a [&'a [u8]],
    pub extra: Vec<CString>,
    pub cwd: Option<CString>,
    /// What becomes the child's fds 0, 1 and 2 (2 itself: orch's stderr, kept).
    pub fds: [c_int; 3],
}

/// What the child reads, all of it in orch's memory.
#[repr(C)]
#[derive(Debug)]
struct Plan {
    program: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
    fds: [c_int; 3],
    cwd: *const c_char,
    reset: *const c_int,
    reset_len: usize,
    terminal: *const c_int,
    terminal_len: usize,
    /// `open_files`, with a soft limit of 0 for none.
    open_files: [u64; 2],
    failure: *const Failure,
    #[cfg(test)]
    raise: [c_int; 2],
}

/// Memory lent to one child until it has exec'd or exited: its stack, its plan, and
/// the owners of everything the plan points to (heap data, which stays where it is
/// when they move here).
#[derive(Debug)]
pub(super) struct Lent {
    /// The child's tid until the kernel clears it (`CLONE_CHILD_CLEARTID`).
    tid: AtomicU32,
    plan: Plan,
    stack: Stack,
    _strings: Vec<CString>,
    _arrays: [Vec<*const c_char>; 2],
    _inherited: Arc<Inherited>,
    _failure: Arc<Failure>,
}

// SAFETY: the raw pointers in `plan` and `_arrays` point into the heap data of the
// owners held beside them, and nowhere else; orch writes nothing through them.
#[allow(unsafe_code)]
unsafe impl Send for Lent {}

impl Lent {
    /// Where the kernel clears the child's tid: `clone`'s `child_tid`.
    pub fn tid_word(&self) -> *mut c_int {
        self.tid.as_ptr().cast()
    }

    pub fn stack_top(&self) -> *mut c_void {
        self.stack.top()
    }

    /// `clone`'s argument for [`run`].
    pub fn plan(&self) -> *mut c_void {
        std::ptr::addr_of!(self.plan).cast_mut().cast()
    }

    /// The child has exec'd or exited: nothing here is read any more.
    fn returned(&self) -> bool {
        self.tid.load(Ordering::Acquire) == 0
    }
}

/// A `Lent` at a fixed address, from `Box::leak`: nothing moves it or re-asserts unique
/// ownership of it (moving a `Box` would) while its child reads it. Dropping a `Loan`
/// leaves the `Lent` allocated; only [`Loan::stack`] frees it.
#[derive(Debug)]
pub(super) struct Loan(NonNull<Lent>);

// SAFETY: a `Lent` is `Send`, and a `Loan` is its only owner.
#[allow(unsafe_code)]
unsafe impl Send for Loan {}

impl std::ops::Deref for Loan {
    type Target = Lent;
    #[allow(unsafe_code)]
    fn deref(&self) -> &Lent {
        // SAFETY: allocated in `Lent::new`, freed only by `stack`, which takes the loan.
        unsafe { self.0.as_ref() }
    }
}

impl Loan {
    /// A loan of `stack` for `start`; also the failure cell the child will write to.
    pub fn new(stack: Stack, start: Start<'_>, inherited: &Arc<Inherited>) -> (Loan, Arc<Failure>) {
        let mut argv: Vec<*const c_char> = start.argv.iter().map(|a| a.as_ptr()).collect();
        argv.push(std::ptr::null());
        let mut envp: Vec<*const c_char> = Vec::with_capacity(inherited.env.len() + start.extra.len() + 1);
        envp.extend(
            inherited.env.iter().filter(|(key, _)| !start.skip.contains(&key.as_slice())).map(|(_, e)| e.as_ptr()),
        );
        envp.extend(start.extra.iter().map(|e| e.as_ptr()));
        envp.push(std::ptr::null());
        let failure = Arc::new(Failure::default());
        let plan = Plan {
            program: start.program.as_ptr(),
            argv: argv.as_ptr(),
            envp: envp.as_ptr(),
            fds: start.fds,
            cwd: start.cwd.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            reset: inherited.reset.as_ptr(),
            reset_len: inherited.reset.len(),
            terminal: inherited.terminal.as_ptr(),
            terminal_len: inherited.terminal.len(),
            open_files: inherited.open_files.unwrap_or([0; 2]),
            failure: Arc::as_ptr(&failure),
            #[cfg(test)]
            raise: inherited.raise,
        };
        let mut strings = start.argv;
        strings.push(start.program);
        strings.extend(start.extra);
        strings.extend(start.cwd);
        let lent = Lent {
            tid: AtomicU32::new(u32::MAX),
            plan,
            stack,
            _strings: strings,
            _arrays: [argv, envp],
            _inherited: inherited.clone(),
            _failure: failure.clone(),
        };
        (Loan(NonNull::from(Box::leak(Box::new(lent)))), failure)
    }

    /// Frees the loan, keeping its stack: only once its child has let go of it, or was
    /// never made.
    #[allow(unsafe_code)]
    fn stack(self) -> Stack {
        // SAFETY: from `Box::leak` in `Lent::new`; the child reads it no more.
        let lent = unsafe { Box::from_raw(self.0.as_ptr()) };
        lent.stack
    }
}

/// The loans of a run: children that may still run in orch's memory, and stacks to
/// lend again.
#[derive(Debug, Default)]
pub(super) struct Loans {
    out: Vec<Loan>,
    spare: Vec<Stack>,
}

impl Loans {
    /// A stack for the next child: one given back, else a new one.
    pub fn stack(&mut self) -> io::Result<Stack> {
        self.reclaim();
        self.spare.pop().map_or_else(Stack::new, Ok)
    }

    /// Keeps `loan` until its child has let go of it.
    pub fn lend(&mut self, loan: Loan) {
        self.out.push(loan);
    }

    /// A loan whose child was never made: its stack is free at once.
    pub fn unused(&mut self, loan: Loan) {
        self.spare.push(loan.stack());
    }

    /// Loans not yet given back, and stacks to lend again (tests).
    #[cfg(test)]
    pub fn counts(&mut self) -> (usize, usize) {
        self.reclaim();
        (self.out.len(), self.spare.len())
    }

    fn reclaim(&mut self) {
        let mut i = 0;
        while i < self.out.len() {
            if self.out[i].returned() {
                let stack = self.out.swap_remove(i).stack();
                // A burst of spawns (a high cap) lends many stacks at once; keep a few.
                if self.spare.len() < SPARE_STACKS {
                    self.spare.push(stack);
                }
            } else {
                i += 1;
            }
        }
    }
}

impl Drop for Loans {
    fn drop(&mut self) {
        // A child that has not exec'd yet (the run ended in an error right after a
        // spawn, or the child is stopped) still reads its loan: the loans left are
        // dropped without being freed.
        self.reclaim();
    }
}

/// A child's stack: raw memory, never read or written by orch.
#[derive(Debug)]
pub(super) struct Stack(NonNull<u8>);

// SAFETY: a plain allocation owned by this value alone.
#[allow(unsafe_code)]
unsafe impl Send for Stack {}

impl Stack {
    const LAYOUT: Layout = match Layout::from_size_align(STACK_BYTES, 16) {
        Ok(layout) => layout,
        Err(_) => panic!("a valid stack layout"),
    };

    #[allow(unsafe_code)]
    fn new() -> io::Result<Stack> {
        // SAFETY: the layout's size is not zero.
        let memory = unsafe { alloc(Self::LAYOUT) };
        NonNull::new(memory).map(Stack).ok_or_else(|| io::Error::from(io::ErrorKind::OutOfMemory))
    }

    /// The stack grows down from its end (16-byte aligned: the size and the
    /// allocation's alignment both are).
    fn top(&self) -> *mut c_void {
        self.0.as_ptr().wrapping_add(STACK_BYTES).cast()
    }
}

impl Drop for Stack {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { dealloc(self.0.as_ptr(), Self::LAYOUT) }
    }
}

/// The child between clone and exec: puts back the signals orch handles, joins a
/// process group of its own (dropping the terminal's signals that reached it in
/// orch's), takes its three fds and its cwd, gets back the open-file limit orch
/// started with, unblocks signals (all were blocked across the clone), and execs. A
/// step that fails is written to the plan's failure cell, and the child exits 127.
#[allow(unsafe_code)]
pub(super) extern "C" fn run(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the plan of a `Lent` kept until this child has exec'd or exited,
    // and every pointer in it is good that long (see `Lent`). Only raw system calls are
    // made: no libc, no thread-local, no allocation, no lock.
    unsafe {
        let plan = &*(arg as *const Plan);
        #[cfg(test)]
        if let Ok(pid) = syscall!(Sysno::getpid) {
            for sig in plan.raise.into_iter().filter(|&sig| sig != 0) {
                let _ = syscall!(Sysno::kill, pid, sig);
            }
        }
        // The kernel's sigaction for SIG_DFL: handler 0, no flags, no restorer, an empty
        // mask — all zeros, whatever the architecture's layout. For SIG_IGN the handler
        // (the first field wherever orch builds) is 1.
        let default = [0usize; 16];
        let mut ignore = [0usize; 16];
        ignore[0] = libc::SIG_IGN;
        for i in 0..plan.reset_len {
            let _ = syscall!(Sysno::rt_sigaction, *plan.reset.add(i), default.as_ptr(), 0, SIGSET_BYTES);
        }
        let group = syscall!(Sysno::setpgid, 0, 0);
        // Out of orch's group now: a terminal's signal sent to that group meanwhile, still
        // pending (every signal is blocked), is dropped by ignoring it for a moment.
        // In the kernel's words (`unsigned long`): signals 1 to 32 are in the first one
        // whatever the word size and byte order, and these are all below 32.
        let mut pending: [libc::c_ulong; 2] = [0; 2];
        if syscall!(Sysno::rt_sigpending, pending.as_mut_ptr(), SIGSET_BYTES).is_err() {
            pending = [libc::c_ulong::MAX; 2];
        }
        for i in 0..plan.terminal_len {
            let sig = *plan.terminal.add(i);
            if pending[0] & (1 << (sig - 1)) != 0 {
                let _ = syscall!(Sysno::rt_sigaction, sig, ignore.as_ptr(), 0, SIGSET_BYTES);
                let _ = syscall!(Sysno::rt_sigaction, sig, default.as_ptr(), 0, SIGSET_BYTES);
            }
        }
        let fds = group
            .and_then(|_| syscall!(Sysno::dup3, plan.fds[1], 1, 0))
            .and_then(|_| if plan.fds[2] == 2 { Ok(0) } else { syscall!(Sysno::dup3, plan.fds[2], 2, 0) })
            .and_then(|_| syscall!(Sysno::dup3, plan.fds[0], 0, 0));
        if let Err(e) = fds {
            fail(plan, e, false);
        }
        if !plan.cwd.is_null() {
            if let Err(e) = syscall!(Sysno::chdir, plan.cwd) {
                fail(plan, e, true);
            }
        }
        if plan.open_files[0] != 0 {
            // The limit orch started with: see `limits.rs`.
            let _ = syscall!(Sysno::prlimit64, 0, libc::RLIMIT_NOFILE, plan.open_files.as_ptr(), 0);
        }
        let none = 0u64;
        let _ = syscall!(Sysno::rt_sigprocmask, libc::SIG_SETMASK, &none as *const u64, 0, SIGSET_BYTES);
        let e = syscall!(Sysno::execve, plan.program, plan.argv, plan.envp).err().unwrap_or(Errno::ENOEXEC);
        fail(plan, e, false)
    }
}

/// Records why the child cannot run its program and ends it with 127, as a shell does.
#[allow(unsafe_code)]
unsafe fn fail(plan: &Plan, errno: Errno, chdir: bool) -> ! {
    // SAFETY: the failure cell lives at least until this child is reaped (see `Lent`).
    let failure = &*plan.failure;
    failure.chdir.store(i32::from(chdir), Ordering::Release);
    failure.errno.store(errno.into_raw(), Ordering::Release);
    loop {
        let _ = syscall!(Sysno::exit_group, 127);
    }
}
