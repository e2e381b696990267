//! The control socket: how children (and shells) talk to a live run. A Unix socket in
//! the run's directory, owner-only, one JSON request per line and one JSON answer per
//! line. Changes (new task, status update, context update) become input records and are
//! answered only once the engine has recorded its answer; reads (task list, context)
//! are answered from the engine's state at once and record nothing.
//!
//! The engine is the only writer of its log: clients never open it, they ask.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use crate::record::UpdateStatus;
use crate::spec::TaskSpec;

/// The socket's name in the run directory.
pub const SOCKET_NAME: &str = "control.sock";

/// Longest request line accepted (a task spec, a context value of up to 1 MiB, JSON-escaped).
const MAX_LINE: usize = 8 << 20;

/// Most connections served at once. Beyond it, clients wait in the socket's backlog (they
/// connect and write, and their answer waits) until one closes: descriptors stay free for
/// the children's spawns, and buffered request lines stay bounded (this many × `MAX_LINE`).
pub const MAX_CONNECTIONS: usize = 128;

/// A connection that has not completed its next request line this long after its last
/// answer (or after it was accepted), or has not taken an answer this long after it was
/// ready, is closed: connections are capped, so clients that connect and go quiet would
/// otherwise shut everyone else out for the rest of the run. The time waiting for the
/// engine's answer does not count.
pub const IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// What a client asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Add a task (`orch task create`).
    Create {
        by: Option<String>,
        task: Box<TaskSpec>,
    },
    /// Change a task's status (`orch task update`).
    Update {
        by: Option<String>,
        task: String,
        status: UpdateStatus,
        note: Option<String>,
    },
    CtxSet {
        by: Option<String>,
        key: String,
        value: String,
    },
    CtxAppend {
        by: Option<String>,
        key: String,
        value: String,
    },
    /// The task list (`ready`: only tasks ready to run).
    List {
        ready: bool,
    },
    /// The context, or one key of it.
    CtxGet {
        key: Option<String>,
    },
}

impl Request {
    /// Whether the request changes the run (and so becomes a record).
    pub fn is_change(&self) -> bool {
        !matches!(self, Request::List { .. } | Request::CtxGet { .. })
    }
}

/// The engine's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
}

impl Response {
    pub fn ok(data: Option<serde_json::Value>) -> Response {
        Response { ok: true, error: None, data }
    }

    pub fn error(message: impl Into<String>) -> Response {
        Response { ok: false, error: Some(message.into()), data: None }
    }
}

/// A request in flight inside the runtime, with where its answer goes.
#[derive(Debug)]
pub(super) struct Pending {
    pub request: Request,
    pub reply: oneshot::Sender<Response>,
}

/// Why a client could not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no live engine: nothing listens on {path} (the run has finished or its engine stopped; `orch resume` continues a stopped run)")]
    NotRunning { path: PathBuf },
    #[error("talking to the engine over {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("the engine's answer is not understood: {0}")]
    Protocol(String),
}

/// Sends one request to the engine listening on `socket` and waits for its answer.
pub fn request(socket: &Path, request: &Request) -> Result<Response, ClientError> {
    let io = |source| ClientError::Io { path: socket.to_path_buf(), source };
    let (_dir, address) = addressable(socket).map_err(io)?;
    let mut stream = match UnixStream::connect(&address) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound
                    | std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::NotADirectory
            ) =>
        {
            return Err(ClientError::NotRunning { path: socket.to_path_buf() })
        }
        Err(e) => return Err(io(e)),
    };
    let mut line = serde_json::to_vec(request).expect("requests always serialize");
    line.push(b'\n');
    stream.write_all(&line).map_err(io)?;
    let mut answer = String::new();
    BufReader::new(&stream).read_line(&mut answer).map_err(io)?;
    if answer.is_empty() {
        return Err(ClientError::Protocol("the engine closed the connection without answering".into()));
    }
    serde_json::from_str(&answer).map_err(|e| ClientError::Protocol(e.to_string()))
}

/// A path `bind`/`connect` accept: Unix socket addresses hold ~108 bytes, and a store
/// deep in a file system can need more. A long path is reached through the directory's
/// descriptor (`/proc/self/fd/N/NAME`); the returned file keeps that descriptor open.
fn addressable(path: &Path) -> std::io::Result<(Option<std::fs::File>, PathBuf)> {
    use std::os::fd::AsRawFd;
    if path.as_os_str().len() < 100 {
        return Ok((None, path.to_path_buf()));
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default();
    let handle = std::fs::File::open(dir)?;
    let short = PathBuf::from(format!("/proc/self/fd/{}", handle.as_raw_fd())).join(name);
    Ok((Some(handle), short))
}

/// The listening socket of a live run; removed when dropped.
#[derive(Debug)]
pub(super) struct Listener {
    path: PathBuf,
    /// Requests read and not yet answered on their connection: the engine waits for
    /// them at the end, so the answer to the request that ended the run is delivered.
    inflight: Arc<AtomicUsize>,
}

impl Listener {
    /// Binds `path` (owner-only: mode 0600 from the start) and serves it on the current
    /// tokio runtime, sending each request to `tx`.
    pub(super) fn start(path: &Path, tx: mpsc::UnboundedSender<Pending>) -> std::io::Result<Listener> {
        use nix::sys::stat::{umask, Mode};
        // A socket left by an engine that died: this engine holds the log's lock, so
        // nobody else can be listening on it.
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let (_dir, address) = addressable(path)?;
        // The umask makes the socket owner-only at creation, with no window in which
        // another user could connect; nothing else creates files while it is set.
        let old = umask(Mode::from_bits_truncate(0o177));
        let bound = std::os::unix::net::UnixListener::bind(&address);
        umask(old);
        let std_listener = bound?;
        std_listener.set_nonblocking(true)?;
        let listener = tokio::net::UnixListener::from_std(std_listener)?;
        let inflight = Arc::new(AtomicUsize::new(0));
        let counter = inflight.clone();
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
        tokio::spawn(async move {
            loop {
                // A free slot before the next accept: while all are taken, new clients
                // wait in the backlog rather than being turned away.
                let Ok(slot) = slots.clone().acquire_owned().await else { return };
                match listener.accept().await {
                    Ok((stream, _)) => {
                        let (tx, counter) = (tx.clone(), counter.clone());
                        tokio::spawn(async move {
                            serve(stream, tx, counter).await;
                            drop(slot);
                        });
                    }
                    // Out of descriptors, or a connection reset before it was taken: the
                    // socket stays open for the next client (a live run must never look
                    // dead to its children).
                    Err(e) => {
                        tracing::warn!(error = %e, "control socket: accept failed; retrying");
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    }
                }
            }
        });
        Ok(Listener { path: path.to_path_buf(), inflight })
    }

    /// Requests read and not yet answered.
    pub(super) fn inflight(&self) -> usize {
        self.inflight.load(Ordering::SeqCst)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// One connection: requests one per line, answers in order.
async fn serve(stream: tokio::net::UnixStream, tx: mpsc::UnboundedSender<Pending>, inflight: Arc<AtomicUsize>) {
    let (read, mut write) = stream.into_split();
    let mut lines = tokio::io::BufReader::new(read);
    let mut line = Vec::new();
    loop {
        line.clear();
        let mut bounded = (&mut lines).take(MAX_LINE as u64 + 1);
        let n = match tokio::time::timeout(IDLE_TIMEOUT, bounded.read_until(b'\n', &mut line)).await {
            Ok(Ok(n)) => n,
            // Idle (or trickling a line) past the timeout, or a broken connection.
            Ok(Err(_)) | Err(_) => return,
        };
        if n == 0 {
            return;
        }
        inflight.fetch_add(1, Ordering::SeqCst);
        let _answered = Answered(&inflight);
        let response = if line.len() > MAX_LINE {
            Response::error(format!("request longer than {MAX_LINE} bytes"))
        } else {
            match serde_json::from_slice::<Request>(&line) {
                Err(e) => Response::error(format!("bad request: {e}")),
                Ok(request) => {
                    let (reply, answer) = oneshot::channel();
                    if tx.send(Pending { request, reply }).is_err() {
                        return; // the engine is shutting down
                    }
                    match answer.await {
                        Ok(response) => response,
                        Err(_) => Response::error("the run ended before answering"),
                    }
                }
            }
        };
        let mut out = serde_json::to_vec(&response).expect("responses always serialize");
        out.push(b'\n');
        // A client that stops reading would hold its place as surely as one that stops
        // writing: the answer, too, must be taken within the timeout.
        match tokio::time::timeout(IDLE_TIMEOUT, write.write_all(&out)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) | Err(_) => return,
        }
        if line.len() > MAX_LINE {
            return; // the rest of that line cannot be told from a next request
        }
    }
}

/// Counts a request as answered when dropped: after its answer is written, or when its
/// connection fails (either way nothing more can be delivered).
struct Answered<'a>(&'a AtomicUsize);

impl Drop for Answered<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Serves one end of a socket pair; returns the client's end and the serving task.
    fn served() -> (tokio::net::UnixStream, tokio::task::JoinHandle<()>, mpsc::UnboundedReceiver<Pending>) {
        let (client, server) = tokio::net::UnixStream::pair().expect("socket pair");
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(serve(server, tx, Arc::new(AtomicUsize::new(0))));
        (client, task, rx)
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_connection_is_closed_after_the_idle_timeout() {
        let (mut client, task, _rx) = served();
        let start = tokio::time::Instant::now();
        let mut rest = Vec::new();
        // The engine closes its end: the client reads end-of-file, with nothing said.
        let closed = tokio::time::timeout(IDLE_TIMEOUT * 2, client.read_to_end(&mut rest)).await;
        closed.expect("closed within the timeout").expect("read");
        assert!(rest.is_empty());
        assert_eq!(start.elapsed(), IDLE_TIMEOUT);
        task.await.expect("serve ended");
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_does_not_read_its_answer_is_let_go() {
        let (mut client, task, mut rx) = served();
        client.write_all(b"{\"op\":\"ctx_get\",\"key\":null}\n").await.expect("write");
        let pending = rx.recv().await.expect("request forwarded");
        // Far more than a socket's buffer, and the client never reads.
        let big = serde_json::Value::String("x".repeat(16 << 20));
        pending.reply.send(Response::ok(Some(big))).expect("answer");
        let start = tokio::time::Instant::now();
        tokio::time::timeout(IDLE_TIMEOUT * 2, task).await.expect("let go within the timeout").expect("serve ended");
        assert_eq!(start.elapsed(), IDLE_TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_for_the_engine_does_not_count_as_idle() {
        let (mut client, task, mut rx) = served();
        client.write_all(b"{\"op\":\"list\",\"ready\":false}\n").await.expect("write");
        let pending = rx.recv().await.expect("request forwarded");
        // The engine takes longer than the idle timeout to answer.
        tokio::time::sleep(IDLE_TIMEOUT * 2).await;
        pending.reply.send(Response::ok(None)).expect("answer");
        let mut answer = String::new();
        tokio::io::BufReader::new(&mut client).read_line(&mut answer).await.expect("read");
        assert_eq!(answer, "{\"ok\":true}\n");
        // The clock restarts after the answer: a second request just inside it is served.
        tokio::time::sleep(IDLE_TIMEOUT - std::time::Duration::from_millis(1)).await;
        client.write_all(b"{\"op\":\"ctx_get\",\"key\":null}\n").await.expect("write");
        let pending = rx.recv().await.expect("second request forwarded");
        assert_eq!(pending.request, Request::CtxGet { key: None });
        drop(pending);
        drop(client);
        task.await.expect("serve ended");
    }
}
