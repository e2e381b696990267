//! Tests of children between clone and exec (`child.rs`): a child's loan comes back
//! when it execs, not when it exits; stacks are lent again; and a child that cannot
//! exec leaves the errno of the thread that cloned it alone (it shares that thread's
//! memory, and runs while that thread does).

use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use nix::libc;
use syscalls::{syscall, Sysno};

use super::spawner::{Context, Spawned};

fn spawn(ctx: &Context, argv: &[&str]) -> Spawned {
    let out = std::fs::OpenOptions::new().write(true).open("/dev/null").unwrap();
    let argv: Vec<CString> = argv.iter().map(|a| CString::new(*a).unwrap()).collect();
    ctx.spawn(argv[0].clone(), argv, &[], Vec::new(), out.as_raw_fd(), None).unwrap()
}

/// Whether child `pid` has exited, asked with a raw `waitid` (no libc: nothing here may
/// write errno); it is left waitable (`WNOWAIT`).
#[allow(unsafe_code)]
fn has_exited(pid: i32) -> bool {
    let mut info = [0u64; 16]; // a siginfo_t (128 bytes); si_pid stays 0 while it runs
                               // SAFETY: waitid writes at most a siginfo_t into `info`.
    let r = unsafe {
        syscall!(Sysno::waitid, libc::P_PID, pid, info.as_mut_ptr(), libc::WEXITED | libc::WNOHANG | libc::WNOWAIT, 0)
    };
    r.is_ok() && info[2] as u32 != 0 // si_pid: after si_signo, si_errno, si_code
}

fn reap(pid: i32) -> nix::sys::wait::WaitStatus {
    nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None).unwrap()
}

fn until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn context(vfork: bool) -> Context {
    let ctx = Context::new(&[]).unwrap();
    if vfork {
        ctx.use_vfork();
    }
    ctx
}

#[test]
fn loans_come_back_when_children_exec_and_their_stacks_are_lent_again() {
    loans_come_back(false);
}

/// `ORCH_SPAWN=vfork` (valgrind) and the fallback an emulator gets: the same loans,
/// given back before the spawn returns.
#[test]
fn with_vfork_loans_come_back_too() {
    loans_come_back(true);
}

#[test]
fn a_child_that_cannot_exec_leaves_the_errno_of_orchs_thread_alone() {
    errno_left_alone(false);
}

#[test]
fn with_vfork_a_child_that_cannot_exec_leaves_errno_alone_too() {
    errno_left_alone(true);
}

/// Under an emulator that refuses the clone (EINVAL), the spawn falls back to
/// `CLONE_VFORK` at once, for this child and every later one, and the loan the refused
/// clone was given serves the retry.
#[test]
fn a_refused_clone_falls_back_to_vfork_for_good() {
    let ctx = context(false);
    ctx.emulate_qemu_user();
    assert!(!ctx.uses_vfork());
    let first = spawn(&ctx, &["/bin/sh", "-c", "exit 7"]).pid;
    assert!(ctx.uses_vfork(), "the refusal switched the spawner to CLONE_VFORK");
    assert_eq!(ctx.loans().0, 0, "with CLONE_VFORK the child has exec'd when the spawn returns");
    assert_eq!(reap(first), nix::sys::wait::WaitStatus::Exited(nix::unistd::Pid::from_raw(first), 7));
    let spare = ctx.loans().1;
    assert_eq!(spare, 1, "the refused clone's stack was used by the retry, not leaked or doubled");
    for _ in 0..5 {
        let pid = spawn(&ctx, &["/bin/true"]).pid;
        assert_eq!(reap(pid), nix::sys::wait::WaitStatus::Exited(nix::unistd::Pid::from_raw(pid), 0));
    }
    assert_eq!(ctx.loans(), (0, 1));
}

/// A Ctrl-Z or a Ctrl-C that reaches orch's process group while a new child is still
/// in it is dropped once the child has a group of its own: the child neither stops
/// there (where the `fg` that continues orch's group would not reach it; with vfork,
/// orch's thread would wait for its exec forever) nor dies of the Ctrl-C (its task
/// would fail instead of being cancelled by orch).
#[test]
fn a_stop_sent_to_orchs_group_before_the_child_left_it_is_dropped() {
    signals_dropped(false, [libc::SIGTSTP, libc::SIGTTIN]);
}

#[test]
fn an_interrupt_sent_to_orchs_group_before_the_child_left_it_is_dropped() {
    signals_dropped(false, [libc::SIGINT, libc::SIGQUIT]);
}

/// (A Ctrl-Z alone: without the drop, a vfork child stopped before its exec would hold
/// this test's thread in `clone` forever, not fail it.)
#[test]
fn with_vfork_an_interrupt_from_orchs_group_is_dropped_too() {
    signals_dropped(true, [libc::SIGINT, libc::SIGHUP]);
}

#[allow(unsafe_code)]
fn signals_dropped(vfork: bool, signals: [libc::c_int; 2]) {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    // Not vacuous: a signal this process inherited ignored (SIGINT in a background job)
    // would be ignored by the child too. Put back to the default, as orch finds it.
    for sig in signals {
        if super::spawner::disposition(sig) == Some(libc::SIG_IGN) {
            // SAFETY: a default disposition, no handler.
            unsafe { libc::signal(sig, libc::SIG_DFL) };
        }
    }
    let mut ctx = Context::new(&[]).unwrap();
    ctx.raise_in_children(signals);
    if vfork {
        ctx.use_vfork();
    }
    let pid = spawn(&ctx, &["/bin/sh", "-c", "exit 3"]).pid;
    let child = nix::unistd::Pid::from_raw(pid);
    let status = waitpid(child, Some(WaitPidFlag::WUNTRACED)).unwrap();
    if let WaitStatus::Stopped(..) = status {
        nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL).unwrap();
        reap(pid);
    }
    assert_eq!(status, WaitStatus::Exited(child, 3), "the child ran its program, neither stopped nor killed");
}

fn loans_come_back(vfork: bool) {
    let ctx = context(vfork);
    let sleepers: Vec<i32> = (0..8).map(|_| spawn(&ctx, &["/bin/sleep", "5"]).pid).collect();
    if vfork {
        assert_eq!(ctx.loans().0, 0, "with CLONE_VFORK each child has exec'd when the spawn returns");
    }
    // Every one has exec'd (its loan is back) while every one still runs.
    until("the loans come back at exec", || ctx.loans().0 == 0);
    assert!(sleepers.iter().all(|&pid| !has_exited(pid)), "the children still run");
    for &pid in &sleepers {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
        reap(pid);
    }
    let spare = ctx.loans().1;
    assert!((1..=8).contains(&spare), "{spare} stacks to lend again");
    for _ in 0..50 {
        let pid = spawn(&ctx, &["/bin/true"]).pid;
        assert_eq!(reap(pid), nix::sys::wait::WaitStatus::Exited(nix::unistd::Pid::from_raw(pid), 0));
    }
    // The same stacks, lent again and again: none made beyond those.
    assert_eq!(ctx.loans(), (0, spare));
}

#[allow(unsafe_code)]
fn errno_left_alone(vfork: bool) {
    let ctx = context(vfork);
    for _ in 0..20 {
        let spawned = spawn(&ctx, &["/no/such/program"]);
        // SAFETY: this thread's own errno. Set once the child is made: it fails its
        // exec meanwhile, on another core or when this thread yields.
        unsafe { *libc::__errno_location() = 7777 };
        while !has_exited(spawned.pid) {
            std::hint::spin_loop();
        }
        // SAFETY: as above.
        assert_eq!(unsafe { *libc::__errno_location() }, 7777, "the child wrote errno into orch's thread");
        assert_eq!(reap(spawned.pid), nix::sys::wait::WaitStatus::Exited(nix::unistd::Pid::from_raw(spawned.pid), 127));
        let error = spawned.failure.error(|| None, None).expect("the child says why");
        assert_eq!(error.raw_os_error(), Some(libc::ENOENT));
    }
}
