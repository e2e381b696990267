//! Reading a log through memory maps: iterate from any seq, and follow a live log as
//! its writer appends (`refresh` picks up growth and new segments).
//!
//! Readers take no lock and never write. Every record is checked (both checksums, its
//! seq) right after it is read; an unfinished frame at the end of the last segment is
//! "not written yet", exactly as recovery would treat it.

use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::dir::list_segments;
use crate::error::{Error, Result};
use crate::layout::SEGMENT_HEADER_LEN;
use crate::scan::{check_header, step, Damage, End, Found, Step};
use crate::writer::corrupt;

/// A read-only view of a log directory.
#[derive(Debug)]
pub struct Reader {
    dir: PathBuf,
    segments: Vec<Mapped>,
}

#[derive(Debug)]
pub(crate) struct Mapped {
    pub(crate) base_seq: u64,
    pub(crate) path: PathBuf,
    map: Option<Mmap>,
}

impl Mapped {
    fn open(base_seq: u64, path: PathBuf) -> Result<Mapped> {
        let file = File::open(&path).map_err(Error::io(&path))?;
        let len = file.metadata().map_err(Error::io(&path))?.len();
        let map = if len == 0 {
            None
        } else {
            // SAFETY: the map is read-only and every byte is validated before use. The
            // one hazard of mapping is the file shrinking under us (SIGBUS); orch's
            // writer truncates a segment only while recovering a crashed log on open,
            // never while it is live, so a reader of a live or finished log is safe.
            #[allow(unsafe_code)]
            let map = unsafe { Mmap::map(&file) }.map_err(Error::io(&path))?;
            Some(map)
        };
        Ok(Mapped { base_seq, path, map })
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }
}

/// One record as read from the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    pub seq: u64,
    pub payload: &'a [u8],
}

/// A position in the log: where the record `seq` starts (or will start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    segment: usize,
    offset: usize,
    pub seq: u64,
}

impl Reader {
    pub fn open(dir: &Path) -> Result<Reader> {
        if !dir.is_dir() {
            return Err(Error::NotALog { dir: dir.to_path_buf(), why: "no such directory".into() });
        }
        let mut reader = Reader { dir: dir.to_path_buf(), segments: Vec::new() };
        reader.refresh()?;
        if reader.segments.is_empty() {
            return Err(Error::NotALog { dir: dir.to_path_buf(), why: "no segment files".into() });
        }
        Ok(reader)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Maps segments created since the last call and remaps the last one if it grew.
    /// Returns whether anything changed.
    pub fn refresh(&mut self) -> Result<bool> {
        let files = list_segments(&self.dir)?;
        let mut changed = false;
        for (i, f) in files.into_iter().enumerate() {
            match self.segments.get(i) {
                Some(m) if m.base_seq == f.base_seq => {
                    let on_disk = std::fs::metadata(&f.path).map_err(Error::io(&f.path))?.len();
                    if on_disk != m.bytes().len() as u64 {
                        self.segments[i] = Mapped::open(f.base_seq, f.path)?;
                        changed = true;
                    }
                }
                _ => {
                    self.segments.truncate(i);
                    self.segments.push(Mapped::open(f.base_seq, f.path)?);
                    changed = true;
                }
            }
        }
        Ok(changed)
    }

    /// Iterates over every record from seq 0.
    pub fn iter(&self) -> Iter<'_> {
        self.iter_from(0)
    }

    /// Iterates from `seq`. Finds the segment by its base seq (a binary search over file
    /// names), then hops frame headers inside that one segment; nothing before it is read.
    pub fn iter_from(&self, seq: u64) -> Iter<'_> {
        match self.seek(seq) {
            // `seq` lies beyond the end: nothing to yield.
            Ok(cursor) if cursor.seq < seq => Iter { reader: self, cursor, pending_error: None, done: true },
            Ok(cursor) => self.iter_at(cursor),
            Err(e) => Iter {
                reader: self,
                cursor: Cursor { segment: 0, offset: 0, seq },
                pending_error: Some(e),
                done: false,
            },
        }
    }

    /// Continues from a cursor returned by an earlier iterator (see `Iter::cursor`).
    pub fn iter_at(&self, cursor: Cursor) -> Iter<'_> {
        Iter { reader: self, cursor, pending_error: None, done: false }
    }

    pub(crate) fn segments(&self) -> &[Mapped] {
        &self.segments
    }

    fn seek(&self, seq: u64) -> Result<Cursor> {
        // A log starts at seq 0. Without this, a log that lost its first segment would
        // read as if it began at the second one's base seq.
        let first = &self.segments[0];
        if first.base_seq != 0 {
            let damage = Damage::BaseSeq { expected: 0, found: first.base_seq };
            return Err(corrupt(&first.path, Found { offset: 0, seq: 0, damage }));
        }
        let mut index = self.segments.partition_point(|m| m.base_seq <= seq).saturating_sub(1);
        if index > 0 && self.is_unwritten_last(index) {
            // Start at the end of the segment before instead (see `Iter::advance`).
            index -= 1;
        }
        let seg = &self.segments[index];
        let is_last = index + 1 == self.segments.len();
        let bytes = seg.bytes();
        let mut cursor = Cursor { segment: index, offset: SEGMENT_HEADER_LEN, seq: seg.base_seq };
        if check_header(bytes, seg.base_seq, is_last).map_err(|f| corrupt(&seg.path, f))?.is_none() {
            return Ok(Cursor { offset: 0, ..cursor });
        }
        while cursor.seq < seq {
            match step(bytes, cursor.offset, cursor.seq, is_last, false).map_err(|f| corrupt(&seg.path, f))? {
                Step::Record { next, .. } => {
                    cursor.offset = next;
                    cursor.seq += 1;
                }
                Step::End(_) => break,
            }
        }
        Ok(cursor)
    }

    /// True when segment `index` is the last one and its header is not written yet: a
    /// roll in progress, or one a crash interrupted, which recovery will remove.
    fn is_unwritten_last(&self, index: usize) -> bool {
        let seg = &self.segments[index];
        index + 1 == self.segments.len() && matches!(check_header(seg.bytes(), seg.base_seq, true), Ok(None))
    }
}

/// Iterator over records; yields each record or the first damage, then stops.
#[derive(Debug)]
pub struct Iter<'a> {
    reader: &'a Reader,
    cursor: Cursor,
    pending_error: Option<Error>,
    done: bool,
}

impl<'a> Iter<'a> {
    /// Where the next record would be read; valid across `Reader::refresh`.
    pub fn cursor(&self) -> Cursor {
        self.cursor
    }

    fn advance(&mut self) -> Result<Option<Record<'a>>> {
        loop {
            let segments = &self.reader.segments;
            let Some(seg) = segments.get(self.cursor.segment) else { return Ok(None) };
            let is_last = self.cursor.segment + 1 == segments.len();
            let bytes = seg.bytes();
            if self.cursor.offset == 0 {
                // Entering a segment: its header must be whole and start where we are.
                if seg.base_seq != self.cursor.seq {
                    let damage = Damage::BaseSeq { expected: self.cursor.seq, found: seg.base_seq };
                    return Err(corrupt(&seg.path, Found { offset: 0, seq: self.cursor.seq, damage }));
                }
                match check_header(bytes, seg.base_seq, is_last).map_err(|f| corrupt(&seg.path, f))? {
                    Some(_) => self.cursor.offset = SEGMENT_HEADER_LEN,
                    None => return Ok(None), // a segment being created right now
                }
            }
            match step(bytes, self.cursor.offset, self.cursor.seq, is_last, true).map_err(|f| corrupt(&seg.path, f))? {
                Step::Record { payload, next } => {
                    let record = Record { seq: self.cursor.seq, payload };
                    self.cursor.offset = next;
                    self.cursor.seq += 1;
                    return Ok(Some(record));
                }
                Step::End(End::Clean) if !is_last => {
                    // Do not enter a next segment that has no header yet: if it is one a
                    // crash left behind, recovery removes it and appends to this segment
                    // again, and a cursor parked past it would miss those records.
                    if self.reader.is_unwritten_last(self.cursor.segment + 1) {
                        return Ok(None);
                    }
                    self.cursor = Cursor { segment: self.cursor.segment + 1, offset: 0, seq: self.cursor.seq };
                }
                Step::End(_) => return Ok(None),
            }
        }
    }
}

impl<'a> Iterator for Iter<'a> {
    type Item = Result<Record<'a>>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if let Some(e) = self.pending_error.take() {
            self.done = true;
            return Some(Err(e));
        }
        match self.advance() {
            Ok(Some(r)) => Some(Ok(r)),
            Ok(None) => None,
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// Follows a live log: each `poll` hands over the records appended since the last one.
#[derive(Debug)]
pub struct Follower {
    reader: Reader,
    cursor: Cursor,
    /// Records below this seq are skipped (following from a seq not yet written).
    from: u64,
}

impl Follower {
    /// Starts following `dir` at `from`.
    pub fn new(dir: &Path, from: u64) -> Result<Follower> {
        let reader = Reader::open(dir)?;
        let cursor = reader.seek(from)?;
        Ok(Follower { reader, cursor, from })
    }

    /// Calls `f` for every record appended since the previous poll; returns how many.
    pub fn poll(&mut self, mut f: impl FnMut(Record<'_>)) -> Result<u64> {
        self.reader.refresh()?;
        let mut iter = self.reader.iter_at(self.cursor);
        let mut n = 0;
        for record in iter.by_ref() {
            let record = record?;
            if record.seq >= self.from {
                f(record);
                n += 1;
            }
        }
        self.cursor = iter.cursor();
        Ok(n)
    }

    /// Seq of the next record to be handed over.
    pub fn next_seq(&self) -> u64 {
        self.cursor.seq.max(self.from)
    }
}
