//! The process executor: each attempt a real child in its own process group, its
//! stdout and stderr written straight into a blob file of the store while it runs,
//! content-addressed (blake3) when it exits; kills go to the whole group.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::output;
pub use super::procs::{group_alive, group_and_start, members_of, signal_group, start_ticks};
use super::reaper;
use super::spawner;
use crate::record::{Digest, ExitStatus};
use crate::spec::{Command, TaskSpec};

/// What the runtime knows about an attempt when it ends.
#[derive(Debug, Clone)]
pub struct Exit {
    pub status: ExitStatus,
    pub output: Digest,
    pub output_bytes: u64,
    pub duration_ms: u64,
}

/// Exit status reported for a command that could not be started (as a shell does).
pub const SPAWN_FAILED_CODE: i32 = 127;

/// Environment every child gets, besides its task's own `env`.
#[derive(Debug, Clone)]
pub struct ChildEnv {
    pub run_id: String,
    pub store: PathBuf,
    /// The run's control socket (`ORCH_SOCKET`): how a child creates sub-tasks.
    pub socket: PathBuf,
}

/// The variables orch sets for every child (they win over the task's `env`).
const ORCH_VARS: [&str; 6] =
    ["ORCH_RUN_ID", "ORCH_TASK_ID", "ORCH_ATTEMPT", "ORCH_ATTEMPT_ID", "ORCH_STORE", "ORCH_SOCKET"];

/// A started attempt: its process group (= its pid) and the process's start time, which
/// together identify it even after its pid is reused.
#[derive(Debug)]
pub struct Started {
    pub pgid: Option<i32>,
    pub start_ticks: Option<u64>,
}

/// Files that children write their output into, reused from attempt to attempt:
/// creating and unlinking a file per attempt (an inode allocated and freed each time)
/// was the largest cost orch added to a short task. Each file is unlinked as soon as it
/// is made, so a crash leaves nothing behind; an output is copied into the store, under
/// its digest, only when it is not empty. They also hold what the run's children share
/// (`spawner::Context`: attributes, `/dev/null`, the environment), made on first use.
#[derive(Debug, Clone)]
pub struct OutputFiles {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    dir: PathBuf,
    free: Mutex<Vec<Slot>>,
    context: OnceLock<spawner::Context>,
    /// `ORCH_RUN_ID=` and `ORCH_STORE=` of the run (the same for every child).
    run_vars: OnceLock<(ChildEnv, [CString; 3])>,
    /// `/proc/self/fd`, opened once: where each child's own open file of its output
    /// file comes from (None: no /proc).
    proc_fds: OnceLock<(u32, Option<File>)>,
}

/// An output file (a type of its own: it is what goes back to the pool).
#[derive(Debug)]
struct Slot {
    file: File,
    /// Made with `O_TMPFILE`: it can be given a name in the store (a large output
    /// becomes its blob without a copy).
    linkable: bool,
    /// The last child wrote through orch's own open file (reopening it for the child
    /// failed): whether anyone else holds it cannot be asked of the file.
    child_shares: bool,
}

impl OutputFiles {
    /// Output files for children, made in `blobs/tmp` (the store's file system).
    pub fn new(blobs: &Path) -> OutputFiles {
        let shared = Shared {
            dir: blobs.join("tmp"),
            free: Mutex::default(),
            context: OnceLock::new(),
            run_vars: OnceLock::new(),
            proc_fds: OnceLock::new(),
        };
        OutputFiles { shared: Arc::new(shared) }
    }

    /// The run's spawn context, made at the first spawn. A failure to make it (no file
    /// for `/dev/null`, say) fails that spawn with its error, and the next spawn tries
    /// again: a passing shortage must not fail the rest of the run.
    pub(super) fn context(&self) -> std::io::Result<&spawner::Context> {
        if let Some(context) = self.shared.context.get() {
            return Ok(context);
        }
        let made = spawner::Context::new(&ORCH_VARS)?;
        Ok(self.shared.context.get_or_init(|| made))
    }

    /// `/proc/self/fd` of this process (None: there is no /proc). Opened once; a fork
    /// of a process using the engine as a library would read its parent's through the
    /// inherited handle, so the pid it was opened in is checked.
    fn proc_fds(&self) -> Option<&File> {
        let (pid, fds) = self.shared.proc_fds.get_or_init(|| (std::process::id(), File::open("/proc/self/fd").ok()));
        fds.as_ref().filter(|_| *pid == std::process::id())
    }

    fn take(&self) -> std::io::Result<Slot> {
        if let Some(slot) = self.shared.free.lock().unwrap_or_else(|p| p.into_inner()).pop() {
            return Ok(slot);
        }
        // A file with no name, so a crash leaves nothing behind: `O_TMPFILE` where the
        // file system has it, else made and unlinked at once.
        let (file, linkable) = match output::unnamed_file(&self.shared.dir) {
            Ok(file) => (file, true),
            Err(_) => {
                static NEXT: AtomicU64 = AtomicU64::new(0);
                let name = format!("out-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
                let path = self.shared.dir.join(name);
                let file = OpenOptions::new().read(true).write(true).create_new(true).open(&path)?;
                std::fs::remove_file(&path)?;
                (file, false)
            }
        };
        let file = File::from(spawner::above_stdio(file.into())?);
        Ok(Slot { file, linkable, child_shares: false })
    }

    fn put_back(&self, slot: Slot) {
        self.shared.free.lock().unwrap_or_else(|p| p.into_inner()).push(slot);
    }

    /// `ORCH_RUN_ID`, `ORCH_STORE` and `ORCH_SOCKET` as environment entries, made once
    /// per run.
    fn run_vars(&self, env: &ChildEnv) -> std::io::Result<[CString; 3]> {
        let make = || -> std::io::Result<[CString; 3]> {
            use std::os::unix::ffi::OsStrExt;
            Ok([
                spawner::entry(b"ORCH_RUN_ID", env.run_id.as_bytes())?,
                spawner::entry(b"ORCH_STORE", env.store.as_os_str().as_bytes())?,
                spawner::entry(b"ORCH_SOCKET", env.socket.as_os_str().as_bytes())?,
            ])
        };
        if let Some((cached, vars)) = self.shared.run_vars.get() {
            if cached.run_id == env.run_id && cached.store == env.store && cached.socket == env.socket {
                return Ok(vars.clone());
            }
            return make();
        }
        let vars = make()?;
        let _ = self.shared.run_vars.set((env.clone(), vars.clone()));
        Ok(vars)
    }

    /// Reads what the child wrote, stores it under its digest, and keeps the file for
    /// the next attempt — only if nobody else has it open any more. That is asked of the
    /// file itself (a write lease is granted only to a sole opener: the child wrote
    /// through an open file of its own), not of the process group: a process that left
    /// the group (`setsid`, a daemon) may hold it and write on, into the next attempt's
    /// output, or into a blob. Exactly the bytes written by the reap are taken, so a
    /// writer left behind cannot make this call last, and the blob is stored before the
    /// exit that names it is recorded.
    fn collect(&self, slot: Slot, blobs: &Path, pgid: i32) -> output::Stored {
        // Asked before the size is taken: once nobody else holds the file, nobody can
        // write to it any more, so the size is final.
        let alone = if !slot.child_shares {
            spawner::sole_opener(&slot.file).unwrap_or_else(|| !group_alive(pgid))
        } else if self.proc_fds().is_some() {
            // The child shared orch's own open file although it could have had its own:
            // whoever it left holding it is invisible to the lease from now on, so the
            // file is not used again.
            false
        } else {
            // No /proc: the group is all there is to go by.
            !group_alive(pgid)
        };
        // The size, from orch's own open file (one syscall): SEEK_END is absolute, and
        // the offset stays at 0 when nothing was written (the usual case: nothing to reset).
        let size = match (&slot.file).seek(SeekFrom::End(0)) {
            Ok(size) => size,
            Err(_) => return (Digest::EMPTY, 0),
        };
        let dir = &self.shared.dir;
        let (stored, linked) = if size == 0 {
            ((Digest::EMPTY, 0), false)
        } else if size <= output::INLINE_MAX {
            match output::read_exactly(&slot.file, size) {
                Ok(bytes) => (output::store_bytes(&bytes, blobs, dir), false),
                Err(e) => {
                    output::unstored(&self.shared.dir, &e);
                    ((Digest::EMPTY, 0), false)
                }
            }
        } else {
            let (stored, complete) = output::hash_file(&slot.file, size);
            let dest = blobs.join(stored.0.hex());
            if !complete {
                output::unstored(&dest, &std::io::Error::other("the output file could not be read to its end"));
            }
            if !complete || output::stored_whole(&dest, size) {
                (stored, false)
            } else if alone && slot.linkable && output::link_into(&slot.file, &dest) {
                (stored, true)
            } else {
                output::copy_into(&slot.file, size, &dest, dir);
                (stored, false)
            }
        };
        // Emptied for the next attempt only when it can have one (truncating a large file
        // that is dropped anyway would cost as much as writing it).
        let reusable = alone && !linked;
        let emptied = || slot.file.set_len(0).is_ok() && (&slot.file).seek(SeekFrom::Start(0)).is_ok();
        if reusable && (size == 0 || emptied()) {
            self.put_back(slot);
        }
        stored
    }
}

/// Which attempt a child is, as it is told in its environment: `ORCH_ATTEMPT` is the
/// attempt as the retry policy counts it (attempts lost to an engine crash left out,
/// unless `run.lost_attempts_count`), so a resumed task behaves as in an uninterrupted
/// run; `ORCH_ATTEMPT_ID` is the attempt's number in the log.
#[derive(Debug, Clone, Copy)]
pub struct AttemptNumber {
    pub counted: u32,
    pub id: u32,
}

/// Starts one attempt of `task` and returns its process group; `on_exit` receives the
/// exit once the child has ended and its output is stored (in the `reaper::reap_ready`
/// call that finds it exited).
pub fn spawn(
    task: &TaskSpec,
    attempt: AttemptNumber,
    env: &ChildEnv,
    outputs: &OutputFiles,
    blobs: &Path,
    on_exit: impl FnOnce(Exit) + Send + 'static,
) -> Started {
    let started = Instant::now();
    let Some(argv) = argv_of(task.command.as_ref()) else {
        // A task with no command (simulation-only) succeeds at once in a real run.
        on_exit(Exit { status: ExitStatus::Code(0), output: Digest::EMPTY, output_bytes: 0, duration_ms: 0 });
        return Started { pgid: None, start_ticks: None };
    };
    let blobs = blobs.to_path_buf();
    match start(task, attempt, env, outputs, &argv) {
        Ok((slot, spawned, start_ticks)) => {
            let (outputs, pid) = (outputs.clone(), spawned.pid);
            let (program, cwd) = (argv[0].clone(), task.more().cwd.clone());
            let path = task.more().env.get("PATH").cloned();
            reaper::register(
                pid,
                Box::new(move |status| {
                    let duration_ms = started.elapsed().as_millis() as u64;
                    let (output, output_bytes) = outputs.collect(slot, &blobs, pid);
                    // A child that could not run its program said why before it exited.
                    let exec_path = || {
                        outputs
                            .context()
                            .ok()?
                            .program(&program, path.as_deref(), cwd.as_deref())
                            .ok()?
                            .into_string()
                            .ok()
                    };
                    if let Some(e) = spawned.failure.error(exec_path, cwd.as_deref()) {
                        on_exit(cannot_start(&program, &e, &blobs, &outputs, duration_ms));
                        return;
                    }
                    let status = status.unwrap_or(ExitStatus::Code(SPAWN_FAILED_CODE));
                    on_exit(Exit { status, output, output_bytes, duration_ms });
                }),
            );
            Started { pgid: Some(pid), start_ticks }
        }
        Err(e) => {
            let duration_ms = started.elapsed().as_millis() as u64;
            on_exit(cannot_start(&argv[0], &e, &blobs, outputs, duration_ms));
            Started { pgid: None, start_ticks: None }
        }
    }
}

/// The exit of an attempt whose program could not be started: 127, as a shell's, with
/// orch's message as its output.
fn cannot_start(program: &str, e: &std::io::Error, blobs: &Path, outputs: &OutputFiles, duration_ms: u64) -> Exit {
    let message = super::failure::message(program, e);
    let (output, output_bytes) = output::store_bytes(message.as_bytes(), blobs, &outputs.shared.dir);
    Exit { status: ExitStatus::Code(SPAWN_FAILED_CODE), output, output_bytes, duration_ms }
}

/// Spawns the child and returns what to register it with.
fn start(
    task: &TaskSpec,
    attempt: AttemptNumber,
    env: &ChildEnv,
    outputs: &OutputFiles,
    argv: &[String],
) -> std::io::Result<(Slot, spawner::Spawned, Option<u64>)> {
    let context = outputs.context()?;
    let more = task.more();
    let program = context.program(&argv[0], more.env.get("PATH").map(String::as_str), more.cwd.as_deref())?;
    let argv = argv.iter().map(|a| CString::new(a.as_bytes())).collect::<Result<Vec<_>, _>>()?;
    let mut extra = Vec::with_capacity(task.more().env.len() + ORCH_VARS.len());
    for (k, v) in &task.more().env {
        if !ORCH_VARS.contains(&k.as_str()) {
            extra.push(spawner::entry(k.as_bytes(), v.as_bytes())?);
        }
    }
    extra.extend(outputs.run_vars(env)?);
    extra.push(spawner::entry(b"ORCH_TASK_ID", task.id.as_bytes())?);
    extra.push(spawner::entry(b"ORCH_ATTEMPT", attempt.counted.to_string().as_bytes())?);
    extra.push(spawner::entry(b"ORCH_ATTEMPT_ID", attempt.id.to_string().as_bytes())?);
    let skip: Vec<&[u8]> = task.more().env.keys().map(|k| k.as_bytes()).collect();
    let cwd = task.more().cwd.as_deref().map(CString::new).transpose()?;
    let mut slot = outputs.take()?;
    // The child writes through an open file of its own, closed here once the child is
    // made (it has a copy of orch's fd table): at its exit, whether anything still holds
    // one can be asked of the file (see `collect`). Without /proc it shares orch's.
    let own = outputs.proc_fds().and_then(|fds| spawner::reopen(fds, slot.file.as_raw_fd()).ok());
    slot.child_shares = own.is_none();
    let output_fd = own.as_ref().map_or(slot.file.as_raw_fd(), |f| f.as_raw_fd());
    let before = spawner::boot_ticks();
    let spawned = context.spawn(program, argv, &skip, extra, output_fd, cwd);
    let after = spawner::boot_ticks();
    drop(own);
    let spawned = match spawned {
        Ok(spawned) => spawned,
        Err(e) => {
            // The child was never made: its file is as clean as it was.
            outputs.put_back(slot);
            return Err(e);
        }
    };
    // The kernel stamped the child's start between the two clock reads: when they agree
    // that is its tick; otherwise ask /proc (the child cannot be reaped yet: the reaper
    // reaps registered children only).
    let start_ticks = match (before, after) {
        (Some(b), Some(a)) if a == b => Some(b),
        _ => start_ticks(spawned.pid as u32),
    };
    Ok((slot, spawned, start_ticks))
}

/// The grace period between SIGTERM and SIGKILL.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(2);

/// The argv to exec. A shell string is exec'd directly when it holds no shell syntax
/// (as make does), and through `/bin/sh -c` otherwise.
pub fn argv_of(command: Option<&Command>) -> Option<Vec<String>> {
    match command? {
        Command::Argv(argv) => Some(argv.clone()),
        Command::Shell(s) if !needs_shell(s) => Some(s.split_whitespace().map(str::to_string).collect()),
        Command::Shell(s) => Some(vec!["/bin/sh".into(), "-c".into(), s.clone()]),
    }
}

fn needs_shell(s: &str) -> bool {
    s.trim().is_empty()
        || s.chars().any(|c| "|&;<>()$`\\\"'*?[]#~=%{}!\n".contains(c))
        || s.split_whitespace().next().is_some_and(|word| SHELL_BUILTINS.contains(&word))
}

/// Words that are the shell's own (special built-ins and the like, as make lists them):
/// there is no program of that name to exec, so a line starting with one goes to `sh -c`.
const SHELL_BUILTINS: &[&str] = &[
    ".", ":", "alias", "bg", "break", "cd", "command", "continue", "eval", "exec", "exit", "export", "fc", "fg",
    "getopts", "hash", "jobs", "read", "readonly", "return", "set", "shift", "source", "times", "trap", "type",
    "ulimit", "umask", "unalias", "unset", "wait",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_strings_are_execd_directly_and_shell_syntax_goes_through_sh() {
        let shell = |s: &str| argv_of(Some(&Command::Shell(s.into()))).unwrap();
        assert_eq!(shell("cargo build --release"), ["cargo", "build", "--release"]);
        assert_eq!(shell("echo hi > out"), ["/bin/sh", "-c", "echo hi > out"]);
        assert_eq!(shell("FOO=1 make"), ["/bin/sh", "-c", "FOO=1 make"]);
        // Built-ins have no program to exec.
        assert_eq!(shell("exit 3"), ["/bin/sh", "-c", "exit 3"]);
        assert_eq!(shell("cd sub"), ["/bin/sh", "-c", "cd sub"]);
        assert_eq!(shell("exiter 3"), ["exiter", "3"]);
        assert_eq!(argv_of(Some(&Command::Argv(vec!["a b".into()]))).unwrap(), ["a b"]);
        assert_eq!(argv_of(None), None);
    }
}
