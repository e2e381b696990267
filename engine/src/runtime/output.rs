//! An attempt's output, from the file its child wrote into to a blob of the store under
//! its digest. Small outputs (nearly all) are stored at once, on the engine's thread, in
//! the call that reaps the child; a large one is streamed through the hasher into the
//! store on a blocking thread, so that a task printing gigabytes neither holds them in
//! memory nor stalls the engine: the run's other exits, timers and requests go on.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::record::Digest;

/// Outputs up to this size are read whole and stored in the call that reaps the child.
pub(super) const INLINE_MAX: u64 = 1 << 20;

/// The piece a large output is read, hashed and copied in.
const CHUNK: usize = 1 << 20;

/// What an output came to: a digest and a size.
pub(super) type Stored = (Digest, u64);

/// Stores bytes under their digest, whole or not at all. A failure to store only loses
/// the text; the digest (what the log records) is right either way.
pub(super) fn store_bytes(bytes: &[u8], blobs: &Path, tmp_dir: &Path) -> Stored {
    let digest = Digest::of(bytes);
    let dest = blobs.join(digest.hex());
    if !bytes.is_empty() && !dest.exists() {
        // Written under a temporary name and renamed: a blob is whole or absent.
        let tmp = tmp_dir.join(format!("{}.part", digest.hex()));
        if std::fs::write(&tmp, bytes).is_ok() && std::fs::rename(&tmp, &dest).is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }
    (digest, bytes.len() as u64)
}

/// Reads the first `size` bytes of `file` (from offset 0, not moving its offset).
pub(super) fn read_whole(file: &File, size: u64) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(size as usize);
    let mut buf = [0u8; 64 * 1024];
    loop {
        match file.read_at(&mut buf, bytes.len() as u64) {
            Ok(0) => return Ok(bytes),
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Streams the whole of `file` through blake3 and, unless the store has that blob
/// already, into it under a temporary name then renamed. Memory stays at one piece
/// whatever the size. Reading fails only with the disk: the bytes read so far are what
/// the digest covers then (the log records what orch could read), and nothing is stored.
pub(super) fn store_file(file: &File, blobs: &Path, tmp_dir: &Path) -> Stored {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let tmp: PathBuf =
        tmp_dir.join(format!("large-{}-{}.part", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)));
    let mut copy = File::create(&tmp).ok();
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; CHUNK];
    let mut at = 0u64;
    let complete = loop {
        match file.read_at(&mut buf, at) {
            Ok(0) => break true,
            Ok(n) => {
                hasher.update(&buf[..n]);
                if copy.as_mut().is_some_and(|c| c.write_all(&buf[..n]).is_err()) {
                    copy = None; // the store is full or gone: keep hashing, store nothing
                }
                at += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break false,
        }
    };
    let digest = if at == 0 { Digest::EMPTY } else { Digest(*hasher.finalize().as_bytes()) };
    let dest = blobs.join(digest.hex());
    let keep = complete && at > 0 && copy.is_some() && !dest.exists();
    drop(copy);
    if !(keep && std::fs::rename(&tmp, &dest).is_ok()) {
        let _ = std::fs::remove_file(&tmp);
    }
    (digest, at)
}

/// Runs `work` on tokio's blocking pool when called inside a runtime (a run's driver),
/// else at once (tests that reap without one).
pub(super) fn off_thread(work: impl FnOnce() + Send + 'static) {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => drop(handle.spawn_blocking(work)),
        Err(_) => work(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_streamed_into_the_store_has_the_digest_of_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let (blobs, tmp) = (dir.path().join("blobs"), dir.path().join("blobs/tmp"));
        std::fs::create_dir_all(&tmp).unwrap();
        // Over two pieces and not a multiple of one.
        let bytes: Vec<u8> = (0..(2 * CHUNK + 12_345)).map(|i| (i % 251) as u8).collect();
        let file = tempfile::tempfile().unwrap();
        file.write_all_at(&bytes, 0).unwrap();

        let (digest, size) = store_file(&file, &blobs, &tmp);
        assert_eq!((digest, size), (Digest::of(&bytes), bytes.len() as u64));
        assert_eq!(std::fs::read(blobs.join(digest.hex())).unwrap(), bytes);
        assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0, "no temporary file left");
        // Stored again: the blob is there already, nothing is written, nothing is left.
        assert_eq!(store_file(&file, &blobs, &tmp), (digest, size));
        assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
        assert_eq!(store_bytes(&bytes, &blobs, &tmp), (digest, size));
        assert_eq!(read_whole(&file, size).unwrap(), bytes);
    }

    #[test]
    fn an_empty_file_is_the_empty_digest_and_no_blob() {
        let dir = tempfile::tempdir().unwrap();
        let file = tempfile::tempfile().unwrap();
        assert_eq!(store_file(&file, dir.path(), dir.path()), (Digest::EMPTY, 0));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
