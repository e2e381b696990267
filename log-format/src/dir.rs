//! The log directory: which segment files it holds, in seq order, and the writer lock.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::layout::parse_segment_file_name;

/// File whose OS lock marks the one live writer; it holds that writer's pid for the
/// error message a second writer gets.
pub const LOCK_FILE: &str = "LOCK";

/// A segment file found in a log directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentFile {
    pub base_seq: u64,
    pub path: PathBuf,
}

/// Lists the segment files of `dir` sorted by base seq. Files that are not segments
/// (the lock file, editor droppings) are ignored.
pub fn list_segments(dir: &Path) -> Result<Vec<SegmentFile>> {
    let entries = fs::read_dir(dir).map_err(Error::io(dir))?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(Error::io(dir))?;
        let name = entry.file_name();
        if let Some(base_seq) = name.to_str().and_then(parse_segment_file_name) {
            out.push(SegmentFile { base_seq, path: entry.path() });
        }
    }
    out.sort_by_key(|s| s.base_seq);
    Ok(out)
}

/// Takes the exclusive writer lock of `dir` (an OS file lock, released by the kernel
/// when the process dies, so a crashed writer never leaves a stale lock behind).
pub fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_FILE);
    let mut file =
        OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(Error::io(&path))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let holder = if holder.is_empty() { String::new() } else { format!(" (pid {holder})") };
            return Err(Error::Locked { dir: dir.to_path_buf(), holder });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(Error::Io { path, source: e }),
    }
    file.set_len(0).map_err(Error::io(&path))?;
    file.rewind().map_err(Error::io(&path))?;
    write!(file, "{}", std::process::id()).map_err(Error::io(&path))?;
    Ok(file)
}

/// Whether a log directory has a live writer right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockState {
    Free,
    /// Held; `pid` is what the holder recorded, if it could be read.
    Held {
        pid: Option<u32>,
    },
}

/// Tells whether the writer lock of `dir` is held, and by which pid.
pub fn lock_state(dir: &Path) -> Result<LockState> {
    let path = dir.join(LOCK_FILE);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(LockState::Free),
        Err(e) => return Err(Error::Io { path, source: e }),
    };
    match file.try_lock_shared() {
        Ok(()) => Ok(LockState::Free),
        Err(std::fs::TryLockError::WouldBlock) => {
            let text = fs::read_to_string(&path).map_err(Error::io(&path))?;
            Ok(LockState::Held { pid: text.trim().parse().ok() })
        }
        Err(std::fs::TryLockError::Error(e)) => Err(Error::Io { path, source: e }),
    }
}

/// Makes a directory entry change (create, remove, rename) durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(Error::io(dir))
}
