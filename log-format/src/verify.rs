//! Verify: check every byte of a log — headers, both checksums of every record, dense
//! seqs across segments, and the blake3 chain — and compute the log's digest.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::error::{Error, Result};
use crate::layout::{Digest, FrameHeader, FRAME_HEADER_LEN, SEGMENT_HEADER_LEN};
use crate::reader::Reader;
use crate::scan::{check_header, scan_segment, step, Damage, End, Found, Scan, Step};
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
/// checksums, and the checksum work is shared out in pieces (see `Pieces`), so verify
/// costs about half of hashing plus checking rather than their sum.
const PARALLEL_HASH_MIN_BYTES: usize = 1 << 20;
/// Size of one piece of checksum work.
const PIECE_BYTES: usize = 1 << 20;

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
            let pieces = Pieces::new(bytes, seg.base_seq);
            let (fast, hash) = std::thread::scope(|s| {
                let hasher = s.spawn(|| {
                    let hash = chain_start(&link).update(body).finalize();
                    pieces.work();
                    hash
                });
                pieces.work();
                // Join first: the other thread may still be walking its last piece.
                let hash = hasher.join().expect("hashing thread does not panic");
                (pieces.scan(), hash)
            });
            // Anything but a clean, whole segment gets the sequential scan, which alone
            // decides torn or damaged and where (the decision table in `scan`).
            let scan = fast.map(Ok).unwrap_or_else(|| scan_segment(bytes, seg.base_seq, is_last, |_, _, _| {}));
            (scan, Some(hash))
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

/// The checksum work of one large segment, cut into pieces that any thread can take.
///
/// A piece is a byte range; its frames are those that *start* inside it. A thread
/// taking piece `i > 0` does not know where its first frame starts, so it looks for
/// the first offset in the range holding a frame header with a valid checksum, and
/// walks frames from there while they start inside the range. That guess is then
/// proven, not trusted: piece `i - 1`, walked from a proven start, must end exactly
/// where piece `i` began, at the seq piece `i` read. Any mismatch (a payload that
/// happens to contain a valid frame header), any damage and any torn end make
/// [`Pieces::scan`] return `None`, and verify falls back to the sequential scan, so
/// results and error reports are exactly the sequential ones.
#[derive(Debug)]
struct Pieces<'a> {
    bytes: &'a [u8],
    base_seq: u64,
    count: usize,
    next: AtomicUsize,
    walked: Mutex<Vec<Option<Walk>>>,
}

/// What walking one piece found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Walk {
    /// Whole records from `start` (carrying `start_seq`) to `end` (next is `end_seq`).
    Frames { start: usize, start_seq: u64, end: usize, end_seq: u64 },
    /// No valid frame header starts in the piece (a record larger than a piece).
    Empty,
    /// Damage or a cut: the sequential scan must say what and where.
    Failed,
}

impl<'a> Pieces<'a> {
    fn new(bytes: &'a [u8], base_seq: u64) -> Pieces<'a> {
        let body = bytes.len().saturating_sub(SEGMENT_HEADER_LEN);
        let count = body.div_ceil(PIECE_BYTES);
        Pieces { bytes, base_seq, count, next: AtomicUsize::new(0), walked: Mutex::new(vec![None; count]) }
    }

    fn range(&self, i: usize) -> (usize, usize) {
        let start = SEGMENT_HEADER_LEN + i * PIECE_BYTES;
        (start, (start + PIECE_BYTES).min(self.bytes.len()))
    }

    /// Takes pieces until none are left.
    fn work(&self) {
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            if i >= self.count {
                return;
            }
            let walk = self.walk(i);
            self.walked.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(walk);
        }
    }

    fn walk(&self, i: usize) -> Walk {
        let (from, to) = self.range(i);
        let found = if i == 0 {
            Some((from, self.base_seq))
        } else {
            (from..to).find_map(|at| {
                let header = FrameHeader::decode(self.bytes.get(at..at + FRAME_HEADER_LEN)?)?;
                Some((at, header.seq))
            })
        };
        let Some((start, start_seq)) = found else { return Walk::Empty };
        let (mut offset, mut seq) = (start, start_seq);
        while offset < to {
            // `is_last: false`: a cut is damage here; a torn tail is left to the
            // sequential scan.
            match step(self.bytes, offset, seq, false, true) {
                Ok(Step::Record { next, .. }) => {
                    offset = next;
                    seq += 1;
                }
                Ok(Step::End(_)) => break,
                Err(_) => return Walk::Failed,
            }
        }
        Walk::Frames { start, start_seq, end: offset, end_seq: seq }
    }

    /// The segment's scan if every piece was walked and they join up into one clean
    /// walk of the whole segment; `None` otherwise (see the type's docs).
    fn scan(&self) -> Option<Scan> {
        let header = check_header(self.bytes, self.base_seq, false).ok()??;
        let walked = self.walked.lock().unwrap_or_else(|p| p.into_inner());
        let (mut offset, mut seq) = (SEGMENT_HEADER_LEN, self.base_seq);
        for (i, walk) in walked.iter().enumerate() {
            match (*walk)? {
                Walk::Frames { start, start_seq, end, end_seq } if start == offset && start_seq == seq => {
                    (offset, seq) = (end, end_seq);
                }
                // The previous piece's last record runs past this whole piece.
                Walk::Empty if offset >= self.range(i).1 => {}
                _ => return None,
            }
        }
        (offset == self.bytes.len()).then_some(Scan {
            header: Some(header),
            next_seq: seq,
            valid_len: offset as u64,
            end: End::Clean,
        })
    }
}

#[allow(dead_code)]
fn _assert_error_is_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<Error>();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{encode_frame, SegmentHeader};

    fn segment(payloads: impl IntoIterator<Item = Vec<u8>>) -> Vec<u8> {
        let mut out = SegmentHeader { base_seq: 7, link: [1; 32] }.encode().to_vec();
        for (i, p) in payloads.into_iter().enumerate() {
            encode_frame(&mut out, 7 + i as u64, &p);
        }
        out
    }

    fn pieces_scan(bytes: &[u8]) -> Option<Scan> {
        let pieces = Pieces::new(bytes, 7);
        pieces.work();
        pieces.scan()
    }

    fn sequential(bytes: &[u8]) -> Result<Scan, Found> {
        scan_segment(bytes, 7, true, |_, _, _| {})
    }

    #[test]
    fn pieces_agree_with_the_sequential_scan() {
        let bytes = segment((0..40_000u32).map(|i| vec![i as u8; (i % 200) as usize]));
        assert!(bytes.len() > 3 * PIECE_BYTES);
        assert_eq!(pieces_scan(&bytes), Some(sequential(&bytes).unwrap()));
    }

    #[test]
    fn records_larger_than_a_piece_leave_pieces_empty() {
        let big = vec![0u8; PIECE_BYTES * 5 / 2];
        let bytes = segment([b"a".to_vec(), big.clone(), b"b".to_vec(), big, b"c".to_vec()]);
        assert_eq!(pieces_scan(&bytes), Some(sequential(&bytes).unwrap()));
    }

    #[test]
    fn a_payload_that_looks_like_a_frame_header_is_not_trusted() {
        // Payloads made of valid frame headers: a piece's search for its first frame
        // lands inside a payload. The join must reject that guess; verify then uses
        // the sequential scan.
        let mut fake = Vec::new();
        for _ in 0..50 {
            encode_frame(&mut fake, 123, b"");
        }
        let bytes = segment((0..20_000).map(|_| fake.clone()));
        assert!(bytes.len() > 2 * PIECE_BYTES);
        assert_eq!(pieces_scan(&bytes), None);
        assert!(sequential(&bytes).unwrap().end == End::Clean);

        // Worse: one record whose payload is a well-formed run of frames with dense
        // seqs, longer than a piece. The pieces inside it walk cleanly; only the join
        // (piece 0 ends past them, not where they started) exposes the guess.
        let mut inner = Vec::new();
        for seq in 1000..1000 + 3 * PIECE_BYTES as u64 / 120 {
            encode_frame(&mut inner, seq, &[0x33; 100]);
        }
        let bytes = segment([inner, b"after".to_vec()]);
        let pieces = Pieces::new(&bytes, 7);
        pieces.work();
        let walked = pieces.walked.lock().unwrap().clone();
        assert!(matches!(walked[1], Some(Walk::Frames { start_seq, .. }) if start_seq >= 1000), "{walked:?}");
        assert_eq!(pieces.scan(), None);
        assert_eq!(sequential(&bytes).unwrap().next_seq, 9);
    }

    #[test]
    fn damage_and_torn_tails_fall_back_to_the_sequential_scan() {
        let mut bytes = segment((0..30_000u32).map(|i| vec![i as u8; 100]));
        let clean = bytes.clone();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 4;
        assert_eq!(pieces_scan(&bytes), None);
        assert!(sequential(&bytes).is_err());
        let torn = &clean[..clean.len() - 3];
        assert_eq!(pieces_scan(torn), None);
        assert!(matches!(sequential(torn).unwrap().end, End::Torn { .. }));
    }
}
