//! An attempt's output, from the file its child wrote into to a blob of the store under
//! its digest, in the call that reaps the child: the exit is recorded with its digest,
//! and after the blob is stored. Small outputs (nearly all) are read whole and written
//! to the store. A large one is streamed through blake3 a piece at a time, and its file
//! (made with `O_TMPFILE`) is linked into the store as the blob when nobody else holds it
//! any more — else exactly the bytes written by the reap are copied, in the kernel. The
//! engine's thread pays the hashing (about 50 ms per 300 MB here), no memory for it.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::fcntl::AtFlags;
use nix::libc;

use crate::record::Digest;

/// Outputs up to this size are read whole into memory and written to the store.
pub(super) const INLINE_MAX: u64 = 1 << 20;

/// The piece a large output is read and hashed (and, when it must be, copied) in.
const CHUNK: usize = 1 << 20;

/// What an output came to: a digest and a size.
pub(super) type Stored = (Digest, u64);

/// A file in `dir` with no name (`O_TMPFILE`): it can be linked into the store later.
pub(super) fn unnamed_file(dir: &Path) -> std::io::Result<File> {
    OpenOptions::new().read(true).write(true).mode(0o644).custom_flags(libc::O_TMPFILE).open(dir)
}

/// A new file in `tmp_dir` under a name no other writer has (orch processes, perhaps in
/// other pid namespaces, may share a store): made with `create_new`, another name tried
/// if it exists.
fn temporary(tmp_dir: &Path) -> std::io::Result<(File, PathBuf)> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    loop {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = tmp_dir.join(format!("part-{}-{nanos}-{n}", std::process::id()));
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(file) => return Ok((file, path)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Says that a blob could not be stored. The log still records the output's digest and
/// size (what the attempt wrote), and `orch output` will say the blob is missing; the
/// warning, on orch's stderr, says why at the time.
pub(super) fn unstored(dest: &Path, e: &std::io::Error) {
    tracing::warn!(blob = %dest.display(), error = %e, "an attempt's output could not be stored");
}

/// Whether the blob at `dest` is there whole, as far as its length tells. Blobs are not
/// synced, so a power loss can leave one cut short (or empty) under its name; kept, it
/// would stand for every later output with the same bytes, in every run of the store.
/// One `stat`, as the plain existence check it replaces.
pub(super) fn stored_whole(dest: &Path, size: u64) -> bool {
    std::fs::metadata(dest).is_ok_and(|m| m.len() == size)
}

/// Stores bytes under their digest, whole or not at all. A failure to store only loses
/// the text (and is warned of); the digest (what the log records) is right either way.
pub(super) fn store_bytes(bytes: &[u8], blobs: &Path, tmp_dir: &Path) -> Stored {
    let digest = Digest::of(bytes);
    let dest = blobs.join(digest.hex());
    if !bytes.is_empty() && !stored_whole(&dest, bytes.len() as u64) {
        // Written under a temporary name and renamed: a blob is whole or absent.
        match temporary(tmp_dir) {
            Ok((mut file, tmp)) => {
                if let Err(e) = file.write_all(bytes).and_then(|()| std::fs::rename(&tmp, &dest)) {
                    let _ = std::fs::remove_file(&tmp);
                    unstored(&dest, &e);
                }
            }
            Err(e) => unstored(&dest, &e),
        }
    }
    (digest, bytes.len() as u64)
}

/// The first `size` bytes of `file` (from offset 0, not moving its offset); fewer only
/// if the file is shorter.
pub(super) fn read_exactly(file: &File, size: u64) -> std::io::Result<Vec<u8>> {
    let mut bytes = vec![0u8; size as usize];
    let mut at = 0;
    while at < bytes.len() {
        match file.read_at(&mut bytes[at..], at as u64) {
            Ok(0) => break,
            Ok(n) => at += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    bytes.truncate(at);
    Ok(bytes)
}

/// Hashes the first `size` bytes of `file` a piece at a time: their digest and count,
/// and whether all of them could be read (a read that fails leaves the digest of what was
/// read: the log records what orch could read, and nothing is stored).
pub(super) fn hash_file(file: &File, size: u64) -> (Stored, bool) {
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; CHUNK];
    let mut at = 0u64;
    let complete = loop {
        let want = (size - at).min(CHUNK as u64) as usize;
        if want == 0 {
            break true;
        }
        match file.read_at(&mut buf[..want], at) {
            Ok(0) => break false,
            Ok(n) => {
                hasher.update(&buf[..n]);
                at += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break false,
        }
    };
    let digest = if at == 0 { Digest::EMPTY } else { Digest(*hasher.finalize().as_bytes()) };
    ((digest, at), complete)
}

/// Gives `file` (made with `O_TMPFILE`) the name `dest`: the output becomes its blob
/// without a copy. `/proc/self/fd/N` names the open file, and following it links the
/// file itself (the way open(2) documents for such files).
pub(super) fn link_into(file: &File, dest: &Path) -> bool {
    use std::os::fd::AsRawFd;
    let fd_path = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
    nix::unistd::linkat(None, fd_path.as_path(), None, dest, AtFlags::AT_SYMLINK_FOLLOW).is_ok()
}

/// Copies the first `size` bytes of `file` to `dest`, through a temporary name, in the
/// kernel (`copy_file_range`: no copy through orch's memory; a reflink where the file
/// system can).
pub(super) fn copy_into(file: &File, size: u64, dest: &Path, tmp_dir: &Path) {
    let (out, tmp) = match temporary(tmp_dir) {
        Ok(made) => made,
        Err(e) => return unstored(dest, &e),
    };
    let copied = (|| -> std::io::Result<()> {
        let (mut from, mut to) = (0i64, 0i64);
        while (from as u64) < size {
            let want = (size - from as u64).min(1 << 30) as usize;
            match nix::fcntl::copy_file_range(file, Some(&mut from), &out, Some(&mut to), want) {
                Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => {}
                // Not on this kernel or file system, or not allowed (seccomp): by hand,
                // from where it stopped.
                Err(_) => return copy_by_hand(file, from as u64, size, &out),
            }
        }
        Ok(())
    })()
    .and_then(|()| std::fs::rename(&tmp, dest));
    if let Err(e) = copied {
        let _ = std::fs::remove_file(&tmp);
        unstored(dest, &e);
    }
}

/// Copies bytes `from..size` of `file` to the same offsets of `out`, through a buffer
/// (explicit offsets: the file's position, which the child may share, stays put).
fn copy_by_hand(file: &File, mut from: u64, size: u64, out: &File) -> std::io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    while from < size {
        let want = (size - from).min(CHUNK as u64) as usize;
        let n = file.read_at(&mut buf[..want], from)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        out.write_all_at(&buf[..n], from)?;
        from += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let (blobs, tmp) = (dir.path().join("blobs"), dir.path().join("blobs/tmp"));
        std::fs::create_dir_all(&tmp).unwrap();
        (dir, blobs, tmp)
    }

    /// Over two pieces and not a multiple of one.
    fn large() -> Vec<u8> {
        (0..(2 * CHUNK + 12_345)).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn a_large_output_is_linked_or_copied_under_the_digest_of_its_bytes_and_no_more() {
        let (_dir, blobs, tmp) = store();
        let bytes = large();
        let size = bytes.len() as u64;
        let file = unnamed_file(&tmp).expect("O_TMPFILE on this file system");
        file.write_all_at(&bytes, 0).unwrap();
        // A grandchild went on writing after the measured size: not part of the output.
        file.write_all_at(b"later", size).unwrap();
        let ((digest, n), complete) = hash_file(&file, size);
        assert_eq!((digest, n, complete), (Digest::of(&bytes), size, true));

        let copied = blobs.join("copied");
        copy_into(&file, size, &copied, &tmp);
        assert_eq!(std::fs::read(&copied).unwrap(), bytes);
        // Where copy_file_range is refused: by hand, from where it stopped.
        let out = tempfile::tempfile().unwrap();
        out.write_all_at(&bytes[..1000], 0).unwrap();
        copy_by_hand(&file, 1000, size, &out).unwrap();
        assert_eq!(read_exactly(&out, size + 5).unwrap(), bytes);
        assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0, "no temporary file left");

        let linked = blobs.join(digest.hex());
        assert!(link_into(&file, &linked));
        assert_eq!(std::fs::read(&linked).unwrap().len() as u64, size + 5, "the file itself, named");
        assert!(!link_into(&file, &linked), "a name that exists is not replaced");
        assert_eq!(read_exactly(&file, 10).unwrap(), bytes[..10]);
        assert_eq!(store_bytes(&bytes[..10], &blobs, &tmp).1, 10);
    }

    #[test]
    fn a_blob_cut_short_is_stored_again_and_a_whole_one_is_kept() {
        let (_dir, blobs, tmp) = store();
        let bytes = b"hello, output";
        let (digest, _) = store_bytes(bytes, &blobs, &tmp);
        let blob = blobs.join(digest.hex());
        // As a power loss can leave it: the name, part of the bytes.
        std::fs::write(&blob, &bytes[..4]).unwrap();
        store_bytes(bytes, &blobs, &tmp);
        assert_eq!(std::fs::read(&blob).unwrap(), bytes);
        // Whole: not written again (its inode stays the same).
        let inode = |p: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
        let before = inode(&blob);
        store_bytes(bytes, &blobs, &tmp);
        assert_eq!(inode(&blob), before);
        assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0, "no temporary file left");
    }
}
