//! Hooks: a parent's wake hook (after each child's completion, or each wave's end) and
//! the run's `before_finalize` auditor. A hook is a command; it reads one JSON document
//! on stdin and answers on stdout with `{"answer": "continue"|"stop"|"accept"|"reject",
//! "reason": "..."}` (a bare word is accepted too). Its answer becomes an input record,
//! so replay never runs it again.
//!
//! A hook that cannot run, fails, answers nonsense, or outlives `run.hook_timeout_ms`
//! counts as `stop` (wake) or `reject` (finalize), with the reason: an auditor that
//! cannot say yes has said no.

use std::path::PathBuf;
use std::process::Stdio;

use nix::libc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::record::Verdict;
use crate::spec::Command;

/// Most of a hook's stdout that is read (an answer is a line of JSON).
const MAX_ANSWER: u64 = 1 << 20;

/// How long the hook's stdout is still read after it exited.
const DRAIN: std::time::Duration = std::time::Duration::from_millis(200);

/// Which answers a hook may give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HookKind {
    Wake,
    Finalize,
}

impl HookKind {
    fn refusal(self) -> Verdict {
        match self {
            HookKind::Wake => Verdict::Stop,
            HookKind::Finalize => Verdict::Reject,
        }
    }

    fn allows(self, v: Verdict) -> bool {
        match self {
            HookKind::Wake => matches!(v, Verdict::Continue | Verdict::Stop),
            HookKind::Finalize => matches!(v, Verdict::Accept | Verdict::Reject),
        }
    }
}

/// The process groups of the hooks running now, while each is still the hook's (until
/// its leader is reaped): what orch continues with its tasks' groups when it is itself
/// continued after a stop.
pub(super) type LiveHooks = std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<i32>>>;

/// Everything a hook process gets besides its input.
#[derive(Debug, Clone)]
pub(super) struct HookCall {
    pub live: LiveHooks,
    pub kind: HookKind,
    pub command: Command,
    pub env: Vec<(String, String)>,
    pub cwd: Option<PathBuf>,
    pub input: String,
    /// Killed (its whole process group) when still running after this long.
    pub timeout: Option<std::time::Duration>,
    /// A signal the fork raises at itself, blocked, just before `own_group`, as if it
    /// reached orch's group then (tests; 0: none).
    #[cfg(test)]
    pub raise: libc::c_int,
}

/// Runs the hook to its end; its verdict and reason.
pub(super) async fn run(call: HookCall) -> (Verdict, Option<String>) {
    match run_inner(&call).await {
        Ok((verdict, reason)) => (verdict, reason),
        Err(why) => (call.kind.refusal(), Some(why)),
    }
}

async fn run_inner(call: &HookCall) -> Result<(Verdict, Option<String>), String> {
    let mut cmd = match &call.command {
        Command::Argv(argv) => {
            let (program, args) = argv.split_first().ok_or("the hook names no program")?;
            let mut c = tokio::process::Command::new(program);
            c.args(args);
            c
        }
        Command::Shell(line) => {
            let mut c = tokio::process::Command::new("/bin/sh");
            c.arg("-c").arg(line);
            c
        }
    };
    cmd.envs(call.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    if let Some(cwd) = &call.cwd {
        cmd.current_dir(cwd);
    }
    // Its own process group, joined as a task's child joins one (`own_group`): a Ctrl-C
    // at the terminal is orch's to turn into a cancel, not a signal that kills the hook
    // and reads as its answer, and a Ctrl-Z must not stop it where `fg` cannot reach.
    let (terminal, limits) = (super::spawner::terminal_signals(), super::limits::started_with());
    // SAFETY: runs in the forked child before exec; async-signal-safe calls only.
    #[allow(unsafe_code)]
    unsafe {
        #[cfg(test)]
        let raise = call.raise;
        cmd.pre_exec(move || {
            #[cfg(test)]
            if raise != 0 {
                let mut all: libc::sigset_t = std::mem::zeroed();
                libc::sigfillset(&mut all);
                libc::sigprocmask(libc::SIG_SETMASK, &all, std::ptr::null_mut());
                libc::kill(libc::getpid(), raise);
            }
            own_group(&terminal, limits)?;
            #[cfg(test)]
            if raise != 0 {
                // Unblocked here too, so that a test fails should `own_group` not run.
                let mut none: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut none);
                libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| {
        // A script whose interpreter is missing: named, as for a task.
        // Only for a path: a bare name was looked up on the hook's PATH by the fork, and
        // a cwd that is not there fails the same way.
        let program = match &call.command {
            Command::Argv(argv) if e.kind() == std::io::ErrorKind::NotFound => argv.first().filter(|p| p.contains('/')),
            _ => None,
        };
        let cwd = call.cwd.as_deref().and_then(|c| c.to_str());
        let program = program.filter(|_| call.cwd.as_deref().is_none_or(std::path::Path::is_dir));
        match program.and_then(|p| super::failure::missing_interpreter(p, cwd)) {
            Some(interpreter) => format!("hook could not start: bad interpreter {interpreter:?}: {e}"),
            None => format!("hook could not start: {e}"),
        }
    })?;
    // The hook leads its own group (pgid = its pid): a timeout kills what it started too.
    let pgid = child.id().and_then(|pid| i32::try_from(pid).ok()).map(nix::unistd::Pid::from_raw);
    let mut abandoned = HookGroup::new(pgid, &call.live);
    let deadline = call.timeout.map(|t| tokio::time::Instant::now() + t);
    let mut stdin = child.stdin.take().expect("stdin was piped");
    let input = call.input.clone();
    // Written alongside the read: a hook that answers before reading all of its input
    // (or never reads it) must not dead-lock against a full pipe.
    let writer = tokio::spawn(async move {
        let _ = stdin.write_all(input.as_bytes()).await;
    });
    // Read while waiting: the answer is what the hook wrote by the time it exited, plus
    // a short drain — a background process it left behind may hold its stdout open
    // forever, and must not hold the parent (or the run) up with it.
    let mut stdout = child.stdout.take().expect("stdout was piped");
    let (chunks_tx, mut chunks) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 8192];
        let mut left = MAX_ANSWER as usize;
        while left > 0 {
            match stdout.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let n = n.min(left);
                    left -= n;
                    if chunks_tx.send(buf[..n].to_vec()).is_err() {
                        return;
                    }
                }
            }
        }
    });
    let mut out = Vec::new();
    let status = loop {
        tokio::select! {
            // In this order: a hook that exited by its deadline has answered, not timed out.
            biased;
            status = child.wait() => {
                abandoned.release(); // it exited: what it left running is its own business
                break status.map_err(|e| format!("waiting for the hook: {e}"))?;
            }
            chunk = chunks.recv(), if !chunks.is_closed() => {
                // None: stdout closed; what is left is to wait for the exit.
                if let Some(c) = chunk {
                    out.extend(c);
                }
            }
            _ = sleep_until(deadline) => {
                let group_killed =
                    pgid.is_some_and(|g| nix::sys::signal::killpg(g, nix::sys::signal::Signal::SIGKILL).is_ok());
                if !group_killed {
                    let _ = child.start_kill(); // at least the hook itself
                }
                let _ = child.wait().await;
                abandoned.release(); // killed and reaped: its group id may be anyone's now
                reader.abort();
                writer.abort();
                let ms = call.timeout.map_or(0, |t| t.as_millis());
                return Err(format!("hook timed out after {ms} ms"));
            }
        }
    };
    let drain = tokio::time::sleep(DRAIN);
    tokio::pin!(drain);
    loop {
        tokio::select! {
            chunk = chunks.recv() => match chunk {
                Some(c) => out.extend(c),
                None => break,
            },
            _ = &mut drain => break,
        }
    }
    reader.abort();
    writer.abort();
    if !status.success() {
        return Err(format!("hook failed ({status})"));
    }
    parse_answer(call.kind, &String::from_utf8_lossy(&out))
}

/// Waits until `deadline`; never, without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Reads an answer: `{"answer": "...", "reason": "..."}`, or a bare word.
pub(super) fn parse_answer(kind: HookKind, text: &str) -> Result<(Verdict, Option<String>), String> {
    let text = text.trim();
    let (word, reason) = match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(map)) => {
            let word = map.get("answer").and_then(|v| v.as_str()).map(str::to_string);
            let reason = map.get("reason").and_then(|v| v.as_str()).map(str::to_string);
            (word.ok_or_else(|| format!("hook answered {text:?}: no \"answer\" field"))?, reason)
        }
        Ok(serde_json::Value::String(s)) => (s, None),
        _ => (text.to_string(), None),
    };
    let verdict = match word.as_str() {
        "continue" => Verdict::Continue,
        "stop" => Verdict::Stop,
        "accept" => Verdict::Accept,
        "reject" => Verdict::Reject,
        _ => return Err(format!("hook answered {text:?}: expected {}", expected(kind))),
    };
    if !kind.allows(verdict) {
        return Err(format!("hook answered {:?}: expected {}", verdict.name(), expected(kind)));
    }
    Ok((verdict, reason))
}

fn expected(kind: HookKind) -> &'static str {
    match kind {
        HookKind::Wake => "continue or stop",
        HookKind::Finalize => "accept or reject",
    }
}

/// In the forked hook, before its exec: joins a process group of its own with every
/// signal blocked, drops a terminal's signal that reached it in orch's group (as a
/// task's child does, `child.rs`; else a Ctrl-Z caught there would stop it in its own
/// group before its exec, with orch's thread waiting for that exec in `spawn`), and
/// gets back the open-file limit orch started with. Until the block the fork has the
/// mask of orch's thread (std keeps it across the fork: none blocked), and a stop then
/// finds it still in orch's group, stopped with orch and continued with it. (A SIGSTOP
/// sent to orch's group in the instant of the `setpgid` call itself would still take
/// effect in the new group; a terminal sends SIGTSTP, which is blocked by then.)
#[allow(unsafe_code)]
fn own_group(terminal: &[libc::c_int], limits: Option<[u64; 2]>) -> std::io::Result<()> {
    // SAFETY: plain system calls on values of this stack; the forked child has memory
    // (and errno) of its own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        if libc::setpgid(0, 0) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        libc::sigemptyset(&mut set);
        libc::sigpending(&mut set);
        for &sig in terminal {
            if libc::sigismember(&set, sig) == 1 {
                libc::signal(sig, libc::SIG_IGN);
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        if let Some([soft, hard]) = limits {
            libc::setrlimit(libc::RLIMIT_NOFILE, &libc::rlimit { rlim_cur: soft, rlim_max: hard });
        }
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
    Ok(())
}

/// A running hook's process group: listed in `LiveHooks` until the hook is reaped, and
/// killed if the hook is given up before it exits (orch ends with a hook out: a cancel
/// does not wait for hooks). `kill_on_drop` reaches only the hook's own process, and
/// what it started would live on after orch.
struct HookGroup {
    pgid: Option<nix::unistd::Pid>,
    live: LiveHooks,
}

impl HookGroup {
    fn new(pgid: Option<nix::unistd::Pid>, live: &LiveHooks) -> HookGroup {
        if let Some(g) = pgid {
            live.lock().unwrap_or_else(|p| p.into_inner()).insert(g.as_raw());
        }
        HookGroup { pgid, live: live.clone() }
    }

    /// The hook was reaped: its group id may be anyone's from now on. (Called in the same
    /// poll as the reap, so orch's thread never signals a group id in between.)
    fn release(&mut self) {
        if let Some(g) = self.pgid.take() {
            self.live.lock().unwrap_or_else(|p| p.into_inner()).remove(&g.as_raw());
        }
    }
}

impl Drop for HookGroup {
    fn drop(&mut self) {
        if let Some(group) = self.pgid {
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        }
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Ctrl-C or Ctrl-Z that reached a hook's fork in orch's group, pending when it
    /// joins its own, is dropped: the hook runs and answers, neither killed nor stopped.
    #[test]
    fn a_terminal_signal_that_reached_a_hook_before_its_group_is_dropped() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        // SIGINT first: without the drop a stopped fork would hold `spawn` (which waits
        // for the exec) forever, and this test would hang rather than fail.
        for raise in [libc::SIGINT, libc::SIGTSTP] {
            let call = HookCall {
                live: LiveHooks::default(),
                kind: HookKind::Wake,
                command: Command::Shell("cat > /dev/null; echo continue".into()),
                env: Vec::new(),
                cwd: None,
                input: "{}".into(),
                timeout: Some(std::time::Duration::from_secs(20)),
                raise,
            };
            assert_eq!(runtime.block_on(run(call)), (Verdict::Continue, None), "signal {raise}");
        }
    }

    #[test]
    fn answers_are_json_or_a_bare_word_and_must_fit_the_hook() {
        assert_eq!(parse_answer(HookKind::Wake, r#"{"answer":"continue"}"#), Ok((Verdict::Continue, None)));
        assert_eq!(
            parse_answer(HookKind::Wake, "{\"answer\":\"stop\",\"reason\":\"enough\"}\n"),
            Ok((Verdict::Stop, Some("enough".into())))
        );
        assert_eq!(parse_answer(HookKind::Finalize, "accept\n"), Ok((Verdict::Accept, None)));
        assert!(parse_answer(HookKind::Wake, "accept").unwrap_err().contains("continue or stop"));
        assert!(parse_answer(HookKind::Finalize, "").unwrap_err().contains("accept or reject"));
        assert!(parse_answer(HookKind::Wake, r#"{"reason":"x"}"#).unwrap_err().contains("no \"answer\""));
    }
}
