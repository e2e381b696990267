//! The control socket serves at most `MAX_CONNECTIONS` connections at once: a client
//! beyond them waits (it is not refused, and the run is not disturbed) until one closes.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use orch_engine::runtime::control::MAX_CONNECTIONS;

fn orch(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_orch"));
    c.args(args).current_dir(dir);
    for var in ["ORCH_STORE", "ORCH_SOCKET", "ORCH_TASK_ID", "ORCH_RUN_ID"] {
        c.env_remove(var);
    }
    c
}

/// The live run's control socket, once it is there.
fn socket(dir: &Path) -> PathBuf {
    let waited = Instant::now();
    loop {
        let runs = dir.join(".orch/runs");
        let found = std::fs::read_dir(&runs).ok().and_then(|mut d| d.next()).and_then(|e| e.ok());
        if let Some(run) = found {
            let path = run.path().join("control.sock");
            if path.exists() {
                return path;
            }
        }
        assert!(waited.elapsed() < Duration::from_secs(20), "no control socket under {}", runs.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Lets the held task end when dropped.
struct Release(PathBuf);

impl Drop for Release {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.0, "");
    }
}

/// Sends one request; the answer line, if one comes within `wait`.
fn ask(stream: &mut UnixStream, wait: Duration) -> Option<String> {
    stream.write_all(b"{\"op\":\"ctx_get\",\"key\":null}\n").unwrap();
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut line = String::new();
    match BufReader::new(stream).read_line(&mut line) {
        Ok(n) if n > 0 => Some(line),
        _ => None,
    }
}

#[test]
fn clients_beyond_the_connection_cap_wait_for_a_free_slot() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // One task that runs until the test lets it go.
    std::fs::write(
        dir.join("wf.toml"),
        "[[task]]\nid = \"hold\"\ncommand = \"while [ ! -e go ]; do sleep 0.05; done\"\n",
    )
    .unwrap();
    let run = orch(dir, &["run", "wf.toml", "--json"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    // However this test ends, the task is let go (a failed assert must not leave the run
    // looping in a deleted directory).
    let _release = Release(dir.join("go"));
    let path = socket(dir);

    // Every slot taken, each proven served by an answer.
    let mut held: Vec<UnixStream> = (0..MAX_CONNECTIONS).map(|_| UnixStream::connect(&path).unwrap()).collect();
    for stream in &mut held {
        assert!(ask(stream, Duration::from_secs(20)).is_some_and(|a| a.contains("\"ok\":true")));
    }
    // One more connects (into the backlog) but is not served while they are held...
    let mut extra = UnixStream::connect(&path).unwrap();
    assert_eq!(ask(&mut extra, Duration::from_millis(300)), None, "served beyond {MAX_CONNECTIONS} connections");
    // ...and is, as soon as one of them closes.
    held.pop();
    let mut line = String::new();
    extra.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    BufReader::new(&mut extra).read_line(&mut line).unwrap();
    assert!(line.contains("\"ok\":true"), "{line}");

    // The run itself was never disturbed.
    drop(held);
    std::fs::write(dir.join("go"), "").unwrap();
    let out = run.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}
