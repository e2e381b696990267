//! The signals orch turns into inputs of the engine: Ctrl-C, SIGTERM and SIGHUP cancel
//! the run, SIGCONT continues its children's and hooks' groups. (SIGCHLD, which reaps,
//! is the driver's own.)

use tokio::signal::unix::SignalKind;
use tokio::sync::mpsc;

use super::driver::{Incoming, RuntimeError};

/// Installs the handlers; called before any child is spawned: a Ctrl-C, or the SIGTERM of
/// `kill`, `timeout` or a service manager, or the SIGHUP of a closed terminal, must
/// always become a cancel record, never kill orch with its children orphaned and its
/// run unfinished. A stream also keeps a second signal from being lost.
pub(super) fn forward_all(
    runtime: &tokio::runtime::Runtime,
    tx: &mpsc::UnboundedSender<Incoming>,
) -> Result<(), RuntimeError> {
    let cancels = [
        (SignalKind::interrupt(), "interrupted (Ctrl-C)"),
        (SignalKind::terminate(), "terminated (SIGTERM)"),
        (SignalKind::hangup(), "hung up (SIGHUP)"),
    ];
    // SIGQUIT (the quit key) keeps its default: orch ends at once, with a core where
    // those are enabled — the way out when orch's own thread is stuck, which no handler
    // of this runtime could serve. The run is left as after a `kill -9`: `orch resume`
    // kills what is left of its attempts and goes on.
    for (kind, why) in cancels {
        // A signal ignored when orch started stays ignored (`nohup` ignores SIGHUP; a
        // shell ignores SIGINT for a background job): the classic rule for handlers.
        if !ignored_at_start(kind.as_raw_value()) {
            forward(runtime, kind, tx, move || Incoming::Interrupt(why))?;
        }
    }
    // SIGCONT: orch was stopped (Ctrl-Z, or a stop of its group) and continued; its
    // children's and hooks' groups are continued too.
    forward(runtime, SignalKind::from_raw(nix::libc::SIGCONT), tx, || Incoming::Continued)
}

/// Hands each `kind` signal to the engine as `incoming()`, from a task of the runtime.
fn forward(
    runtime: &tokio::runtime::Runtime,
    kind: SignalKind,
    tx: &mpsc::UnboundedSender<Incoming>,
    incoming: impl Fn() -> Incoming + Send + 'static,
) -> Result<(), RuntimeError> {
    let mut stream = {
        let _context = runtime.enter();
        tokio::signal::unix::signal(kind).map_err(RuntimeError::Signal)?
    };
    let tx = tx.clone();
    runtime.spawn(async move {
        while stream.recv().await.is_some() {
            if tx.send(incoming()).is_err() {
                return;
            }
        }
    });
    Ok(())
}

/// Whether `signal` is ignored by this process now (before orch installs its handlers:
/// as it was inherited).
fn ignored_at_start(signal: i32) -> bool {
    super::spawner::disposition(signal) == Some(nix::libc::SIG_IGN)
}
