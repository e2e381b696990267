//! The process executor: each attempt a real child in its own process group, its
//! stdout and stderr written straight into a blob file of the store while it runs,
//! content-addressed (blake3) when it exits; kills go to the whole group.

use std::path::{Path, PathBuf};
use std::process::Stdio;
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
}

/// A started attempt: its process group (= its pid) and the process's start time, which
/// together identify it even after its pid is reused.
#[derive(Debug)]
pub struct Started {
    pub pgid: Option<i32>,
    pub start_ticks: Option<u64>,
}

/// Starts one attempt of `task` and returns its process group; `on_exit` receives the
/// exit once the child has ended and its output is stored.
pub fn spawn(
    task: &TaskSpec,
    attempt: u32,
    env: &ChildEnv,
    blobs: &Path,
    on_exit: impl FnOnce(Exit) + Send + 'static,
) -> Started {
    let started = Instant::now();
    let tmp = blobs.join("tmp").join(format!("{}-{}-{attempt}", sanitize(&env.run_id), sanitize(&task.id)));
    let Some(argv) = argv_of(task.command.as_ref()) else {
        // A task with no command (simulation-only) succeeds at once in a real run.
        on_exit(Exit { status: ExitStatus::Code(0), output: Digest::of(b""), output_bytes: 0, duration_ms: 0 });
        return Started { pgid: None, start_ticks: None };
    };
    let result = (|| -> std::io::Result<tokio::process::Child> {
        let out = std::fs::File::create(&tmp)?;
        let err = out.try_clone()?;
        let mut cmd = tokio::process::Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .envs(&task.env)
            .env("ORCH_RUN_ID", &env.run_id)
            .env("ORCH_TASK_ID", &task.id)
            .env("ORCH_ATTEMPT", attempt.to_string())
            .env("ORCH_STORE", &env.store)
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
    match result {
        Ok(mut child) => {
            let pgid = child.id().map(|p| p as i32);
            let start_ticks = pgid.and_then(|p| start_ticks(p as u32));
            tokio::spawn(async move {
                let status = match child.wait().await {
                    Ok(s) => status_of(s),
                    Err(_) => ExitStatus::Code(SPAWN_FAILED_CODE),
                };
                let duration_ms = started.elapsed().as_millis() as u64;
                let (output, output_bytes) = store_output(&tmp, &blobs);
                on_exit(Exit { status, output, output_bytes, duration_ms });
            });
            Started { pgid, start_ticks }
        }
        Err(e) => {
            let message = format!("orch: cannot start {:?}: {e}\n", argv[0]);
            let _ = std::fs::write(&tmp, &message);
            let (output, output_bytes) = store_output(&tmp, &blobs);
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
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
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
    s.trim().is_empty() || s.chars().any(|c| "|&;<>()$`\\\"'*?[]#~=%{}!\n".contains(c))
}

fn status_of(s: std::process::ExitStatus) -> ExitStatus {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(code), _) => ExitStatus::Code(code),
        (None, Some(sig)) => ExitStatus::Signal(sig),
        (None, None) => ExitStatus::Code(SPAWN_FAILED_CODE),
    }
}

/// Hashes the output file and moves it to its content address; empty output stores
/// nothing. Errors leave the digest of what could be read (the log stays truthful
/// about the exit; a missing blob only loses the text).
fn store_output(tmp: &Path, blobs: &Path) -> (Digest, u64) {
    let bytes = std::fs::read(tmp).unwrap_or_default();
    let digest = Digest::of(&bytes);
    if bytes.is_empty() {
        let _ = std::fs::remove_file(tmp);
    } else {
        let dest = blobs.join(digest.hex());
        if dest.exists() {
            let _ = std::fs::remove_file(tmp);
        } else {
            let _ = std::fs::rename(tmp, dest);
        }
    }
    (digest, bytes.len() as u64)
}

fn sanitize(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '_' }).collect()
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
        assert_eq!(argv_of(Some(&Command::Argv(vec!["a b".into()]))).unwrap(), ["a b"]);
        assert_eq!(argv_of(None), None);
    }
}
