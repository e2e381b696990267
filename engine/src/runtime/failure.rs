//! Why a child did not get to run its program: the cell it writes its errno into before
//! it exits 127 (it shares orch's memory until its exec), and the message orch makes of
//! it once the child is reaped.

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
    /// could). Only meaningful once the child has been reaped.
    pub fn error(&self, program: &str, cwd: Option<&str>) -> Option<io::Error> {
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
            if let Some(interpreter) = missing_interpreter(program, cwd) {
                return Some(io::Error::new(os.kind(), format!("bad interpreter {interpreter:?}: {os}")));
            }
        }
        Some(os)
    }
}

/// The interpreter named on the `#!` line of `program` (a path, as the child exec'd
/// it), when that interpreter is missing: execve's ENOENT then means the interpreter,
/// not the script, which exists — as a shell says, "bad interpreter".
fn missing_interpreter(program: &str, cwd: Option<&str>) -> Option<String> {
    use std::io::Read;
    if !program.contains('/') {
        return None; // found on a PATH that may be the task's own: not looked at again
    }
    let path = std::path::Path::new(cwd.unwrap_or(".")).join(program);
    let mut head = [0u8; 256];
    let n = std::fs::File::open(path).and_then(|mut f| f.read(&mut head)).ok()?;
    let line = head[..n].strip_prefix(b"#!")?.split(|&b| b == b'\n').next()?;
    let interpreter = String::from_utf8_lossy(line).split_whitespace().next()?.to_string();
    (!std::path::Path::new(cwd.unwrap_or(".")).join(&interpreter).exists()).then_some(interpreter)
}
