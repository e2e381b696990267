//! The process executor: each attempt a real child in its own process group, its
//! stdout and stderr written straight into a blob file of the store while it runs,
//! content-addressed (blake3) when it exits; kills go to the whole group.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

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
/// its digest, only when it is not empty.
#[derive(Debug, Clone)]
pub struct OutputFiles {
    dir: PathBuf,
    free: Arc<Mutex<Vec<File>>>,
}

impl OutputFiles {
    /// Output files for children, made in `blobs/tmp` (the store's file system).
    pub fn new(blobs: &Path) -> OutputFiles {
        OutputFiles { dir: blobs.join("tmp"), free: Arc::default() }
    }

    fn take(&self) -> std::io::Result<File> {
        if let Some(f) = self.free.lock().unwrap_or_else(|p| p.into_inner()).pop() {
            return Ok(f);
        }
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!("out-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let path = self.dir.join(name);
        let file = OpenOptions::new().read(true).write(true).create_new(true).open(&path)?;
        std::fs::remove_file(&path)?;
        Ok(file)
    }

    /// Reads what the child wrote, stores it under its digest, and keeps the file for
    /// the next attempt — unless something of the child's process group is still alive
    /// (a background grandchild could still write into it).
    fn collect(&self, mut file: File, blobs: &Path, pgid: Option<i32>) -> (Digest, u64) {
        let mut bytes = Vec::new();
        let read = file.seek(SeekFrom::Start(0)).and_then(|_| file.read_to_end(&mut bytes));
        let digest = Digest::of(&bytes);
        if read.is_ok() && !bytes.is_empty() {
            let dest = blobs.join(digest.hex());
            if !dest.exists() {
                // Written under a temporary name and renamed: a blob is whole or absent.
                let tmp = self.dir.join(format!("{}.part", digest.hex()));
                if std::fs::write(&tmp, &bytes).is_ok() {
                    let _ = std::fs::rename(&tmp, &dest);
                }
            }
        }
        let group_gone = pgid.is_some_and(|p| killpg(Pid::from_raw(p), None) == Err(nix::errno::Errno::ESRCH));
        if group_gone && read.is_ok() && file.set_len(0).is_ok() && file.seek(SeekFrom::Start(0)).is_ok() {
            self.free.lock().unwrap_or_else(|p| p.into_inner()).push(file);
        }
        (digest, bytes.len() as u64)
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
/// exit once the child has ended and its output is stored.
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
        on_exit(Exit { status: ExitStatus::Code(0), output: Digest::of(b""), output_bytes: 0, duration_ms: 0 });
        return Started { pgid: None, start_ticks: None };
    };
    let mut output_file = None;
    let result = (|| -> std::io::Result<tokio::process::Child> {
        let out = outputs.take()?;
        let err = out.try_clone()?;
        let child_out = out.try_clone()?;
        output_file = Some(out);
        let out = child_out;
        let mut cmd = tokio::process::Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .envs(&task.env)
            .env("ORCH_RUN_ID", &env.run_id)
            .env("ORCH_TASK_ID", &task.id)
            .env("ORCH_ATTEMPT", attempt.counted.to_string())
            .env("ORCH_ATTEMPT_ID", attempt.id.to_string())
            .env("ORCH_STORE", &env.store)
            .env("ORCH_SOCKET", &env.socket)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .process_group(0)
            .kill_on_drop(false);
        if let Some(cwd) = &task.cwd {
            cmd.current_dir(cwd);
        }
        cmd.spawn()
    })();
    let blobs = blobs.to_path_buf();
    match (result, output_file) {
        (Ok(mut child), Some(file)) => {
            let pgid = child.id().map(|p| p as i32);
            let start_ticks = pgid.and_then(|p| start_ticks(p as u32));
            let outputs = outputs.clone();
            tokio::spawn(async move {
                let status = match child.wait().await {
                    Ok(s) => status_of(s),
                    Err(_) => ExitStatus::Code(SPAWN_FAILED_CODE),
                };
                let duration_ms = started.elapsed().as_millis() as u64;
                let (output, output_bytes) = outputs.collect(file, &blobs, pgid);
                on_exit(Exit { status, output, output_bytes, duration_ms });
            });
            Started { pgid, start_ticks }
        }
        (result, _) => {
            let e = result.err().unwrap_or_else(|| std::io::Error::other("no output file"));
            let message = format!("orch: cannot start {:?}: {e}\n", argv[0]);
            let (output, output_bytes) = store_bytes(message.as_bytes(), &blobs);
            let duration_ms = started.elapsed().as_millis() as u64;
            on_exit(Exit { status: ExitStatus::Code(SPAWN_FAILED_CODE), output, output_bytes, duration_ms });
            Started { pgid: None, start_ticks: None }
        }
    }
}

/// A process's start time in clock ticks since boot (`/proc/PID/stat`, field 22), or
/// `None` if it is gone. The command name (field 2) may hold spaces and parentheses, so
/// fields are counted after its closing parenthesis.
pub fn start_ticks(pid: u32) -> Option<u64> {
    // One read into a buffer (the line is a few hundred bytes): open, read, close.
    let mut buf = [0u8; 1024];
    let n = File::open(format!("/proc/{pid}/stat")).and_then(|mut f| f.read(&mut buf)).ok()?;
    let stat = std::str::from_utf8(&buf[..n]).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    // After the name come field 3 (state) onwards: field 22 is the 20th of those.
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// Sends `signal` to a whole process group; a group that is gone already is fine.
pub fn signal_group(pgid: i32, signal: Signal) {
    let _ = killpg(Pid::from_raw(pgid), signal);
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

fn status_of(s: std::process::ExitStatus) -> ExitStatus {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(code), _) => ExitStatus::Code(code),
        (None, Some(sig)) => ExitStatus::Signal(sig),
        (None, None) => ExitStatus::Code(SPAWN_FAILED_CODE),
    }
}

/// Stores bytes under their digest (an error message orch writes for a child that could
/// not start). A failure to store only loses the text; the log stays truthful.
fn store_bytes(bytes: &[u8], blobs: &Path) -> (Digest, u64) {
    let digest = Digest::of(bytes);
    let dest = blobs.join(digest.hex());
    if !bytes.is_empty() && !dest.exists() {
        let _ = std::fs::write(dest, bytes);
    }
    (digest, bytes.len() as u64)
}

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
