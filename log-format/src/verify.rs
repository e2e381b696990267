//! Verify: check every byte of a log — headers, both checksums of every record, dense
//! seqs across segments, and the blake3 chain — and compute the log's digest.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::layout::{Digest, SEGMENT_HEADER_LEN};
use crate::reader::Reader;
use crate::scan::{scan_segment, Damage, End, Found};
use crate::writer::{chain_start, corrupt};

/// What a successful verify found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub segments: usize,
    pub records: u64,
    /// Bytes of whole records and headers (a torn tail excluded).
    pub bytes: u64,
    /// Chain digest of the whole log: equal digests mean byte-identical logs.
    pub digest: Digest,
    /// An unfinished write at the end (a crash mid-append, or a writer still appending).
    /// Opening the log for writing would truncate it.
    pub torn_tail: Option<(PathBuf, u64)>,
}

/// Segments at least this large are hashed on a second thread while the first checks
/// checksums, so verify runs at the speed of the slower of the two, not their sum.
const PARALLEL_HASH_MIN_BYTES: usize = 1 << 20;

/// Verifies the log in `dir`; the first damage is returned as `Error::Corrupt`.
pub fn verify(dir: &Path) -> Result<Report> {
    verify_reader(&Reader::open(dir)?)
}

/// Verifies the segments a reader has mapped.
pub fn verify_reader(reader: &Reader) -> Result<Report> {
    let segments = reader.segments();
    let mut link: Digest = [0; 32];
    let mut next_seq = 0;
    let mut bytes_total = 0;
    let mut torn_tail = None;
    for (i, seg) in segments.iter().enumerate() {
        let is_last = i + 1 == segments.len();
        if seg.base_seq != next_seq {
            let damage = Damage::BaseSeq { expected: next_seq, found: seg.base_seq };
            return Err(corrupt(&seg.path, Found { offset: 0, seq: next_seq, damage }));
        }
        let bytes = seg.bytes();
        let body = bytes.get(SEGMENT_HEADER_LEN..).unwrap_or(&[]);
        let (scan, whole_hash) = if bytes.len() >= PARALLEL_HASH_MIN_BYTES {
            std::thread::scope(|s| {
                let hasher = s.spawn(|| chain_start(&link).update(body).finalize());
                let scan = scan_segment(bytes, seg.base_seq, is_last, |_, _, _| {});
                (scan, Some(hasher.join().expect("hashing thread does not panic")))
            })
        } else {
            (scan_segment(bytes, seg.base_seq, is_last, |_, _, _| {}), None)
        };
        let scan = scan.map_err(|f| corrupt(&seg.path, f))?;
        let Some(header) = scan.header else {
            torn_tail = Some((seg.path.clone(), 0));
            if i == 0 {
                // Recovery rewrites a torn first header as an empty segment 0; report
                // that log's digest (the empty log's), so verify before and after
                // recovery agree, as they do for every other torn tail.
                link = *chain_start(&link).finalize().as_bytes();
            }
            break;
        };
        if header.link != link {
            return Err(corrupt(&seg.path, Found { offset: 24, seq: seg.base_seq, damage: Damage::ChainLink }));
        }
        let valid = &bytes[SEGMENT_HEADER_LEN..scan.valid_len as usize];
        link = match (whole_hash, scan.end) {
            (Some(h), End::Clean) => *h.as_bytes(),
            _ => *chain_start(&link).update(valid).finalize().as_bytes(),
        };
        if let End::Torn { offset } = scan.end {
            torn_tail = Some((seg.path.clone(), offset));
        }
        next_seq = scan.next_seq;
        bytes_total += scan.valid_len;
    }
    Ok(Report { segments: segments.len(), records: next_seq, bytes: bytes_total, digest: link, torn_tail })
}

/// Renders a digest as lowercase hex.
pub fn hex(digest: &Digest) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.torn_tail.is_none()
    }
}

#[allow(dead_code)]
fn _assert_error_is_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<Error>();
}
