//! The one writer of a log: append, commit under a durability policy (group commit by
//! default), segment rolling, and recovery of a torn tail on open.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::dir::{list_segments, lock_dir, sync_dir, SegmentFile};
use crate::durability::Durability;
use crate::error::{Error, Result};
use crate::layout::{
    encode_frame, segment_file_name, Digest, SegmentHeader, DEFAULT_SEGMENT_BYTES, FRAME_HEADER_LEN, MAX_PAYLOAD_LEN,
    MIN_SEGMENT_BYTES, SEGMENT_HEADER_LEN,
};
use crate::scan::{check_header, scan_segment, End};
use crate::syncer::Syncer;

/// Writer settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    pub durability: Durability,
    /// A new segment is started when the current one would grow past this size.
    pub segment_bytes: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options { durability: Durability::default(), segment_bytes: DEFAULT_SEGMENT_BYTES }
    }
}

/// What opening an existing log found and repaired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Whole records in the log after recovery.
    pub records: u64,
    /// The unfinished write that was cut off, if any.
    pub torn: Option<TornTail>,
}

/// An unfinished write at the end of the log, removed on open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    pub segment: PathBuf,
    pub offset: u64,
    pub bytes_dropped: u64,
}

/// The single writer of a log directory.
#[derive(Debug)]
pub struct Writer {
    dir: PathBuf,
    options: Options,
    _lock: File,
    file: Arc<File>,
    segment_path: PathBuf,
    segment_base: u64,
    /// Bytes of the active segment handed to the OS.
    segment_len: u64,
    /// Encoded frames appended but not yet committed.
    pending: Vec<u8>,
    next_seq: u64,
    /// Chain state of the active segment: its link, then every committed frame.
    chain: blake3::Hasher,
    syncer: Option<Syncer>,
    poisoned: bool,
}

impl Writer {
    /// Creates a new, empty log in `dir` (created if missing). Fails if a log exists there.
    pub fn create(dir: &Path, options: Options) -> Result<Writer> {
        check_options(&options)?;
        fs::create_dir_all(dir).map_err(Error::io(dir))?;
        let lock = lock_dir(dir)?;
        if !list_segments(dir)?.is_empty() {
            return Err(Error::AlreadyExists { dir: dir.to_path_buf() });
        }
        let (file, path) = create_segment(dir, &SegmentHeader { base_seq: 0, link: [0; 32] }, options.durability)?;
        Ok(Writer::assemble(dir, options, lock, file, path, 0, SEGMENT_HEADER_LEN as u64, 0, chain_start(&[0; 32])))
    }

    /// Opens an existing log for appending, truncating a torn tail left by a crash.
    /// Damage anywhere else is an error naming its place; nothing is truncated then.
    pub fn open(dir: &Path, options: Options) -> Result<(Writer, Recovery)> {
        check_options(&options)?;
        if !dir.is_dir() {
            return Err(Error::NotALog { dir: dir.to_path_buf(), why: "no such directory".into() });
        }
        let lock = lock_dir(dir)?;
        let mut segments = list_segments(dir)?;
        check_sealed_headers(dir, &segments)?;
        let mut torn = None;
        loop {
            let last = segments.last().expect("check_sealed_headers rejects an empty list").clone();
            let bytes = fs::read(&last.path).map_err(Error::io(&last.path))?;
            let scan = scan_segment(&bytes, last.base_seq, true, |_, _, _| {}).map_err(|f| corrupt(&last.path, f))?;
            let dropped = bytes.len() as u64 - scan.valid_len;
            if dropped > 0 || scan.header.is_none() {
                torn = Some(TornTail { segment: last.path.clone(), offset: scan.valid_len, bytes_dropped: dropped });
            }
            let header = match scan.header {
                Some(h) => h,
                None if segments.len() > 1 => {
                    // A segment whose header never reached the file: the roll that created
                    // it did not finish. The previous segment is the tail again.
                    fs::remove_file(&last.path).map_err(Error::io(&last.path))?;
                    sync_dir(dir)?;
                    segments.pop();
                    continue;
                }
                None => {
                    let (file, path) = rewrite_first_header(dir, &last.path, options.durability)?;
                    let writer = Writer::assemble(
                        dir,
                        options,
                        lock,
                        file,
                        path,
                        0,
                        SEGMENT_HEADER_LEN as u64,
                        0,
                        chain_start(&[0; 32]),
                    );
                    return Ok((writer, Recovery { records: 0, torn }));
                }
            };
            let file = OpenOptions::new().append(true).open(&last.path).map_err(Error::io(&last.path))?;
            if matches!(scan.end, End::Torn { .. }) {
                file.set_len(scan.valid_len).map_err(Error::io(&last.path))?;
                file.sync_data().map_err(Error::io(&last.path))?;
            }
            let mut chain = chain_start(&header.link);
            chain.update(&bytes[SEGMENT_HEADER_LEN..scan.valid_len as usize]);
            let writer = Writer::assemble(
                dir,
                options,
                lock,
                file,
                last.path.clone(),
                last.base_seq,
                scan.valid_len,
                scan.next_seq,
                chain,
            );
            return Ok((writer, Recovery { records: scan.next_seq, torn }));
        }
    }

    /// Opens the log in `dir`, or creates it if the directory holds no segment yet.
    pub fn open_or_create(dir: &Path, options: Options) -> Result<(Writer, Recovery)> {
        let has_segments = dir.is_dir() && !list_segments(dir)?.is_empty();
        if has_segments {
            Writer::open(dir, options)
        } else {
            Ok((Writer::create(dir, options)?, Recovery { records: 0, torn: None }))
        }
    }

    /// Appends one record and returns its seq. The record is buffered until `commit`.
    pub fn append(&mut self, payload: &[u8]) -> Result<u64> {
        if self.poisoned {
            return Err(Error::Poisoned);
        }
        if payload.len() > MAX_PAYLOAD_LEN {
            return Err(Error::PayloadTooLarge { len: payload.len(), limit: MAX_PAYLOAD_LEN });
        }
        let frame_len = (FRAME_HEADER_LEN + payload.len()) as u64;
        let has_records = self.next_seq > self.segment_base;
        if has_records && self.segment_len + self.pending.len() as u64 + frame_len > self.options.segment_bytes {
            self.roll()?;
        }
        let seq = self.next_seq;
        encode_frame(&mut self.pending, seq, payload);
        self.next_seq += 1;
        Ok(seq)
    }

    /// Appends several records and commits them together.
    pub fn append_batch<'a>(&mut self, payloads: impl IntoIterator<Item = &'a [u8]>) -> Result<std::ops::Range<u64>> {
        let first = self.next_seq;
        for p in payloads {
            self.append(p)?;
        }
        self.commit()?;
        Ok(first..self.next_seq)
    }

    /// Hands every appended record to the OS, then applies the durability policy. After
    /// this returns, a crash of this process cannot lose those records.
    pub fn commit(&mut self) -> Result<()> {
        if self.poisoned {
            return Err(Error::Poisoned);
        }
        if let Some(err) = self.syncer.as_ref().and_then(Syncer::take_error) {
            self.poisoned = true;
            return Err(Error::Io { path: self.segment_path.clone(), source: err });
        }
        if self.pending.is_empty() {
            return Ok(());
        }
        if let Err(e) = (&*self.file).write_all(&self.pending) {
            // Part of the buffer may have reached the file; only a reopen (which
            // truncates the torn tail) knows where the log ends now.
            self.poisoned = true;
            return Err(Error::Io { path: self.segment_path.clone(), source: e });
        }
        self.chain.update(&self.pending);
        self.segment_len += self.pending.len() as u64;
        self.pending.clear();
        match self.options.durability {
            Durability::Always => self.sync_now(),
            Durability::Batch { .. } => {
                if let Some(s) = &self.syncer {
                    s.mark_dirty();
                }
                Ok(())
            }
            Durability::Never => Ok(()),
        }
    }

    /// Commits and fdatasyncs now, whatever the policy.
    pub fn sync(&mut self) -> Result<()> {
        self.commit()?;
        self.sync_now()
    }

    /// Commits, syncs (unless the policy is `Never`) and releases the lock.
    pub fn close(mut self) -> Result<()> {
        self.commit()?;
        if self.options.durability != Durability::Never {
            self.sync_now()?;
        }
        Ok(())
    }

    /// Bytes appended but not yet committed.
    pub fn pending_bytes(&self) -> usize {
        self.pending.len()
    }

    /// Seq the next appended record will get (= records appended so far).
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The chain digest of every committed record: identifies the log's exact content.
    pub fn digest(&self) -> Digest {
        *self.chain.finalize().as_bytes()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn sync_now(&mut self) -> Result<()> {
        // Every commit so far is covered by this sync (commits come from this thread only).
        if let Some(s) = &self.syncer {
            s.clear();
        }
        self.file.sync_data().map_err(|e| {
            self.poisoned = true;
            Error::Io { path: self.segment_path.clone(), source: e }
        })
    }

    /// Seals the active segment and starts the next one, linked by the chain digest.
    fn roll(&mut self) -> Result<()> {
        self.commit()?;
        if self.options.durability != Durability::Never {
            self.sync_now()?;
        }
        let link = self.digest();
        let header = SegmentHeader { base_seq: self.next_seq, link };
        let (file, path) = create_segment(&self.dir, &header, self.options.durability).inspect_err(|_| {
            self.poisoned = true;
        })?;
        self.file = Arc::new(file);
        if let Some(s) = &self.syncer {
            s.set_file(self.file.clone());
        }
        self.segment_path = path;
        self.segment_base = self.next_seq;
        self.segment_len = SEGMENT_HEADER_LEN as u64;
        self.chain = chain_start(&link);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn assemble(
        dir: &Path,
        options: Options,
        lock: File,
        file: File,
        segment_path: PathBuf,
        segment_base: u64,
        segment_len: u64,
        next_seq: u64,
        chain: blake3::Hasher,
    ) -> Writer {
        let file = Arc::new(file);
        let syncer = match options.durability {
            Durability::Batch { interval } => Some(Syncer::start(file.clone(), interval)),
            _ => None,
        };
        Writer {
            dir: dir.to_path_buf(),
            options,
            _lock: lock,
            file,
            segment_path,
            segment_base,
            segment_len,
            pending: Vec::with_capacity(64 * 1024),
            next_seq,
            chain,
            syncer,
            poisoned: false,
        }
    }
}

/// Chain state at the start of a segment: the digest links it to everything before.
pub(crate) fn chain_start(link: &Digest) -> blake3::Hasher {
    let mut h = blake3::Hasher::new();
    h.update(link);
    h
}

pub(crate) fn corrupt(path: &Path, f: crate::scan::Found) -> Error {
    Error::Corrupt { segment: path.to_path_buf(), offset: f.offset, seq: f.seq, damage: f.damage }
}

fn check_options(options: &Options) -> Result<()> {
    if options.segment_bytes < MIN_SEGMENT_BYTES {
        return Err(Error::InvalidOption(format!(
            "segment size {} is below the minimum of {MIN_SEGMENT_BYTES} bytes",
            options.segment_bytes
        )));
    }
    if let Durability::Batch { interval } = options.durability {
        if interval.is_zero() {
            return Err(Error::InvalidOption("batch interval must be above zero".into()));
        }
    }
    Ok(())
}

/// Checks that segments start at seq 0 and that every sealed segment's header is whole
/// and names the seq its file name does. The last segment is checked by the full scan.
pub(crate) fn check_sealed_headers(dir: &Path, segments: &[SegmentFile]) -> Result<()> {
    let Some(first) = segments.first() else {
        return Err(Error::NotALog { dir: dir.to_path_buf(), why: "no segment files".into() });
    };
    if first.base_seq != 0 {
        return Err(corrupt(
            &first.path,
            crate::scan::Found {
                offset: 0,
                seq: 0,
                damage: crate::scan::Damage::BaseSeq { expected: 0, found: first.base_seq },
            },
        ));
    }
    for seg in &segments[..segments.len() - 1] {
        let mut head = [0u8; SEGMENT_HEADER_LEN];
        let n = read_prefix(&seg.path, &mut head)?;
        check_header(&head[..n], seg.base_seq, false).map_err(|f| corrupt(&seg.path, f))?;
    }
    Ok(())
}

fn read_prefix(path: &Path, buf: &mut [u8]) -> Result<usize> {
    use std::io::Read;
    let mut f = File::open(path).map_err(Error::io(path))?;
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]).map_err(Error::io(path))? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn create_segment(dir: &Path, header: &SegmentHeader, durability: Durability) -> Result<(File, PathBuf)> {
    let path = dir.join(segment_file_name(header.base_seq));
    let mut file = OpenOptions::new().append(true).create_new(true).open(&path).map_err(Error::io(&path))?;
    file.write_all(&header.encode()).map_err(Error::io(&path))?;
    if durability != Durability::Never {
        file.sync_data().map_err(Error::io(&path))?;
        sync_dir(dir)?;
    }
    Ok((file, path))
}

/// The only segment's header was torn: the log was created and the process died before
/// the header was written. Start it again, empty.
fn rewrite_first_header(dir: &Path, path: &Path, durability: Durability) -> Result<(File, PathBuf)> {
    fs::remove_file(path).map_err(Error::io(path))?;
    create_segment(dir, &SegmentHeader { base_seq: 0, link: [0; 32] }, durability)
}
