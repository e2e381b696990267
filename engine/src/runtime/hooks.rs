//! Hooks: a parent's wake hook (after each child's completion, or each wave's end) and
//! the run's `before_finalize` auditor. A hook is a command; it reads one JSON document
//! on stdin and answers on stdout with `{"answer": "continue"|"stop"|"accept"|"reject",
//! "reason": "..."}` (a bare word is accepted too). Its answer becomes an input record,
//! so replay never runs it again.
//!
//! A hook that cannot run, fails, answers nonsense, or outlives `run.hook_timeout_ms`
//! counts as `stop` (wake) or `reject` (finalize), with the reason: an auditor that
//! cannot say yes has said no.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::spawner;
use crate::record::{ExitStatus, Verdict};
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

/// SIGCONT to the group of every hook running now: orch was continued after a stop.
pub(super) fn continue_all(live: &LiveHooks) {
    for &pgid in live.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        super::process::signal_group(pgid, nix::sys::signal::Signal::SIGCONT);
    }
}

/// Everything a hook process gets besides its input.
#[derive(Debug, Clone)]
pub(super) struct HookCall {
    pub live: LiveHooks,
    /// Where the run's spawn context is (hooks start as tasks' children do).
    pub outputs: super::process::OutputFiles,
    pub kind: HookKind,
    pub command: Command,
    pub env: Vec<(String, String)>,
    pub cwd: Option<PathBuf>,
    pub input: String,
    /// Killed (its whole process group) when still running after this long.
    pub timeout: Option<std::time::Duration>,
}

/// Runs the hook to its end; its verdict and reason.
pub(super) async fn run(call: HookCall) -> (Verdict, Option<String>) {
    match run_inner(&call).await {
        Ok((verdict, reason)) => (verdict, reason),
        Err(why) => (call.kind.refusal(), Some(why)),
    }
}

async fn run_inner(call: &HookCall) -> Result<(Verdict, Option<String>), String> {
    let cannot = |e: std::io::Error| format!("hook could not start: {e}");
    let argv: Vec<String> = match &call.command {
        Command::Argv(argv) if argv.is_empty() => return Err("the hook names no program".into()),
        Command::Argv(argv) => argv.clone(),
        Command::Shell(line) => vec!["/bin/sh".into(), "-c".into(), line.clone()],
    };
    let cwd = match call.cwd.as_deref().map(|c| c.to_str()) {
        Some(None) => return Err(format!("hook could not start: its cwd {:?} is not UTF-8", call.cwd)),
        Some(Some(c)) => Some(c),
        None => None,
    };
    let path = call.env.iter().find(|(k, _)| k == "PATH").map(|(_, v)| v.as_str());
    // Started as a task's child is (`spawner.rs`): no fork of orch, no wait for the exec,
    // its own process group, a terminal's signals from orch's group dropped, the
    // open-file limit orch started with; its stdin and stdout are pipes.
    let context = call.outputs.context().map_err(cannot)?;
    let program = context.program(&argv[0], path, cwd).map_err(cannot)?;
    let exec_path = program.to_str().unwrap_or_default().to_string();
    let argv =
        argv.iter().map(|a| CString::new(a.as_bytes())).collect::<Result<Vec<_>, _>>().map_err(|e| cannot(e.into()))?;
    // A key given twice (the spec's env naming an ORCH_ variable) has its last value,
    // once: a program's getenv would take the first of two.
    let env: std::collections::BTreeMap<&str, &str> = call.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let skip: Vec<&[u8]> = env.keys().map(|k| k.as_bytes()).collect();
    let extra = env
        .iter()
        .map(|(k, v)| spawner::entry(k.as_bytes(), v.as_bytes()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(cannot)?;
    let cwd_c = cwd.map(CString::new).transpose().map_err(|e| cannot(e.into()))?;
    let pipe = || -> std::io::Result<(OwnedFd, OwnedFd)> {
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        Ok((spawner::above_stdio(read)?, spawner::above_stdio(write)?))
    };
    let (stdin_read, stdin_write) = pipe().map_err(cannot)?;
    let (stdout_read, stdout_write) = pipe().map_err(cannot)?;
    let fds = [stdin_read.as_raw_fd(), stdout_write.as_raw_fd(), 2];
    let spawned = context.spawn_with(program, argv, &skip, extra, fds, cwd_c).map_err(cannot)?;
    // The child has its copies (its fd table was copied at the clone).
    drop((stdin_read, stdout_write));
    let pid = spawned.pid;
    // The hook leads its own group (pgid = its pid, set by orch too before the spawn
    // returned): a timeout kills what it started too.
    let group = HookGroup::new(pid, &call.live);
    let (exit_tx, mut exit_rx) = tokio::sync::oneshot::channel();
    super::reaper::register(pid, group.on_reap(exit_tx));
    let deadline = call.timeout.map(|t| tokio::time::Instant::now() + t);
    let mut stdin = tokio::net::unix::pipe::Sender::from_owned_fd(stdin_write).map_err(cannot)?;
    let input = call.input.clone();
    // Written alongside the read: a hook that answers before reading all of its input
    // (or never reads it) must not dead-lock against a full pipe.
    let writer = tokio::spawn(async move {
        let _ = stdin.write_all(input.as_bytes()).await;
    });
    // Read while waiting: the answer is what the hook wrote by the time it exited, plus
    // a short drain — a background process it left behind may hold its stdout open
    // forever, and must not hold the parent (or the run) up with it.
    let mut stdout = tokio::net::unix::pipe::Receiver::from_owned_fd(stdout_read).map_err(cannot)?;
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
            status = &mut exit_rx => {
                // It exited: what it left running is its own business.
                break status.ok().flatten().ok_or("waiting for the hook: it was reaped elsewhere")?;
            }
            chunk = chunks.recv(), if !chunks.is_closed() => {
                // None: stdout closed; what is left is to wait for the exit.
                if let Some(c) = chunk {
                    out.extend(c);
                }
            }
            _ = sleep_until(deadline) => {
                group.kill();
                let _ = exit_rx.await;
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
    // A hook that could not run its program said why before it exited.
    if let Some(e) = spawned.failure.error(|| Some(exec_path), cwd) {
        return Err(cannot(e));
    }
    match status {
        ExitStatus::Code(0) => {}
        ExitStatus::Code(code) => return Err(format!("hook failed (exit status: {code})")),
        ExitStatus::Signal(sig) => return Err(format!("hook failed (signal: {sig})")),
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

/// A running hook's process group: listed in `LiveHooks` and signalled only until the
/// hook is reaped — the reaper's callback unlists it in the very call that reaps it, on
/// orch's thread, so nothing signals the group id after it may have become anyone's —
/// and killed if the hook is given up before then (orch ends with a hook out: a cancel
/// does not wait for hooks).
struct HookGroup {
    pgid: i32,
    live: LiveHooks,
    reaped: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl HookGroup {
    fn new(pgid: i32, live: &LiveHooks) -> HookGroup {
        live.lock().unwrap_or_else(|p| p.into_inner()).insert(pgid);
        HookGroup { pgid, live: live.clone(), reaped: Default::default() }
    }

    /// The reaper's callback: unlists the group, then hands the exit on.
    fn on_reap(&self, exit: tokio::sync::oneshot::Sender<Option<ExitStatus>>) -> super::reaper::OnExit {
        let (pgid, live, reaped) = (self.pgid, self.live.clone(), self.reaped.clone());
        Box::new(move |status| {
            reaped.store(true, std::sync::atomic::Ordering::Relaxed);
            live.lock().unwrap_or_else(|p| p.into_inner()).remove(&pgid);
            let _ = exit.send(status);
        })
    }

    /// SIGKILL to the group, and to the hook itself should it have left the group; not
    /// once it is reaped.
    fn kill(&self) {
        if !self.reaped.load(std::sync::atomic::Ordering::Relaxed) {
            let pid = nix::unistd::Pid::from_raw(self.pgid);
            let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

impl Drop for HookGroup {
    fn drop(&mut self) {
        self.kill();
        self.live.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.pgid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
