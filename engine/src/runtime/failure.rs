//! Why a child did not get to run its program: the cell it writes its errno into before
//! it exits 127 (it shares orch's memory until its exec), and the message orch makes of
//! it once the child is reaped; and the output an attempt that did not start gets.

use std::io;
use std::sync::atomic::{AtomicI32, Ordering};

use nix::libc;

/// Why a child did not get to run its program: written by the child just before it
/// exits 127, read once it is reaped.
#[derive(Debug, Default)]
pub struct Failure {
    /// The errno of the step that failed; 0 while none has.
    pub(super) errno: AtomicI32,
    /// Non-zero when that step was the change of directory.
    pub(super) chdir: AtomicI32,
}

impl Failure {
    /// The failed step's error, `None` if the child exec'd (or was killed before it
    /// could). Only meaningful once the child has been reaped. `program` is the path
    /// the child exec'd, asked for only when it failed.
    pub fn error(&self, program: impl FnOnce() -> Option<String>, cwd: Option<&str>) -> Option<io::Error> {
        let errno = self.errno.load(Ordering::Acquire);
        if errno == 0 {
            return None;
        }
        let os = io::Error::from_raw_os_error(errno);
        if self.chdir.load(Ordering::Acquire) != 0 {
            // Else "No such file or directory" reads as if the program were missing.
            let dir = cwd.unwrap_or_default();
            return Some(io::Error::new(os.kind(), format!("cannot change to directory {dir:?}: {os}")));
        }
        if errno == libc::ENOENT {
            if let Some(interpreter) = program().and_then(|p| missing_interpreter(&p, cwd)) {
                return Some(io::Error::new(os.kind(), format!("bad interpreter {interpreter:?}: {os}")));
            }
        }
        Some(os)
    }
}

/// The interpreter named on the `#!` line of `program` (the path the child exec'd), when
/// that interpreter is missing: execve's ENOENT then means the interpreter, not the
/// script, which exists — as a shell says, "bad interpreter". The name ends where the
/// kernel ends it, at a space, a tab or the line's end: a `\r` of a script saved with
/// CRLF line ends is part of it (the usual cause), and shows in the message.
pub(super) fn missing_interpreter(program: &str, cwd: Option<&str>) -> Option<String> {
    use std::io::Read;
    let dir = std::path::Path::new(cwd.unwrap_or("."));
    let mut head = [0u8; 256];
    let n = std::fs::File::open(dir.join(program)).and_then(|mut f| f.read(&mut head)).ok()?;
    let line = head[..n].strip_prefix(b"#!")?;
    let name = line.split(|&b| b == b'\n').next()?.split(|&b| b == b' ' || b == b'\t').find(|w| !w.is_empty())?;
    let interpreter = String::from_utf8_lossy(name).into_owned();
    (!dir.join(&interpreter).exists()).then_some(interpreter)
}

/// What an attempt whose program could not be started gets as its output. Out of file
/// descriptors in orch (EMFILE) or in the system (ENFILE) — the child's output file, or
/// the child itself, could not be made — it is said on orch's stderr too, with a hint,
/// since storing this message needs a file as well.
pub(super) fn message(program: &str, e: &io::Error) -> String {
    let hint = match e.raw_os_error() {
        Some(libc::EMFILE) => " (orch holds an open file for each running child: lower -j, or raise `ulimit -Hn`)",
        Some(libc::ENFILE) => " (the system's open files are used up: lower -j)",
        _ => "",
    };
    if !hint.is_empty() {
        tracing::warn!(program, error = %e, "cannot start a child{hint}");
    }
    format!("orch: cannot start {program:?}: {e}{hint}\n")
}
