//! Recovery as a decision table: a pure scan of one segment's bytes.
//!
//! The writer (on open), the reader (on map and refresh) and verify all decide what a
//! segment's bytes mean through this one function, so "torn tail" and "damage" have a
//! single definition. It takes bytes, not files, which lets the tests cut and flip logs
//! in memory at every offset without touching a disk (the sans-IO habit applied to
//! storage, in place of a storage-backend trait: the only IO left is read/mmap/write).
//!
//! | case (at offset `o`, expecting seq `s`)                  | last segment | earlier segment |
//! |----------------------------------------------------------|--------------|-----------------|
//! | file shorter than the segment header                      | torn (0)     | damage          |
//! | header checksum/magic bad, rest of file all zero          | torn (0)     | damage          |
//! | header bad otherwise, or base seq not the expected one    | damage       | damage          |
//! | no bytes left                                             | clean end    | clean end       |
//! | fewer than a frame header's bytes left                    | torn (o)     | damage          |
//! | frame header checksum fails, rest of file all zero        | torn (o)     | damage          |
//! | frame header checksum fails otherwise                     | damage       | damage          |
//! | header ok, length over the limit                          | damage       | damage          |
//! | header ok, seq ≠ s                                        | damage       | damage          |
//! | header ok, payload runs past the end of the file          | torn (o)     | damage          |
//! | header ok, payload checksum fails                         | damage       | damage          |
//! | header ok, payload ok                                     | record `s`   | record `s`      |
//!
//! A crash can only shorten a file (or, after a power loss, leave zeros where data had
//! not reached the disk), so every "torn" row is a shape a crash makes; every "damage"
//! row is one it cannot, and is never truncated away.

use crate::layout::{FrameHeader, SegmentHeader, FRAME_HEADER_LEN, MAX_PAYLOAD_LEN, SEGMENT_HEADER_LEN};

/// What was wrong at a damaged place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Damage {
    SegmentHeader(crate::layout::HeaderProblem),
    ShortSegmentHeader,
    BaseSeq { expected: u64, found: u64 },
    FrameHeaderChecksum,
    PayloadTooLong { len: u32 },
    SeqMismatch { expected: u64, found: u64 },
    TruncatedFrame,
    PayloadChecksum,
    ChainLink,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Damage::SegmentHeader(p) => write!(f, "{p}"),
            Damage::ShortSegmentHeader => write!(f, "segment shorter than its header"),
            Damage::BaseSeq { expected, found } => {
                write!(
                    f,
                    "segment starts at seq {found}, expected {expected} (a segment is missing, duplicated or swapped)"
                )
            }
            Damage::FrameHeaderChecksum => write!(f, "record header checksum mismatch"),
            Damage::PayloadTooLong { len } => write!(f, "record length {len} exceeds the limit"),
            Damage::SeqMismatch { expected, found } => {
                write!(f, "record carries seq {found}, expected {expected} (records dropped, duplicated or reordered)")
            }
            Damage::TruncatedFrame => write!(f, "record cut short inside a sealed segment"),
            Damage::PayloadChecksum => write!(f, "record payload checksum mismatch"),
            Damage::ChainLink => {
                write!(f, "chain link does not match the digest of the previous segment")
            }
        }
    }
}

/// Damage found by a scan: where, and what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    pub offset: u64,
    pub seq: u64,
    pub damage: Damage,
}

/// How a segment's bytes end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Every byte belongs to a whole record.
    Clean,
    /// Bytes from `offset` to the end of the file are an unfinished write.
    Torn { offset: u64 },
}

/// The result of scanning one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scan {
    /// `None` when the header itself is torn (a segment created just before a crash).
    pub header: Option<SegmentHeader>,
    /// Seq the next record after this segment's last whole record would carry.
    pub next_seq: u64,
    /// Length of the valid prefix: header plus whole records.
    pub valid_len: u64,
    pub end: End,
}

impl Scan {
    pub fn records(&self, base_seq: u64) -> u64 {
        self.next_seq - base_seq
    }
}

/// Checks the header of a segment that should start at `base_seq`. `Ok(None)` means
/// the header itself is torn (a segment created just before a crash; last segment only).
pub fn check_header(bytes: &[u8], base_seq: u64, is_last: bool) -> Result<Option<SegmentHeader>, Found> {
    let damage = |damage| Found { offset: 0, seq: base_seq, damage };
    if bytes.len() < SEGMENT_HEADER_LEN {
        return if is_last { Ok(None) } else { Err(damage(Damage::ShortSegmentHeader)) };
    }
    let header_bytes: &[u8; SEGMENT_HEADER_LEN] = bytes[..SEGMENT_HEADER_LEN].try_into().expect("length checked");
    let header = match SegmentHeader::decode(header_bytes) {
        Ok(h) => h,
        Err(_) if is_last && all_zero(bytes) => return Ok(None),
        Err(p) => return Err(damage(Damage::SegmentHeader(p))),
    };
    if header.base_seq != base_seq {
        return Err(damage(Damage::BaseSeq { expected: base_seq, found: header.base_seq }));
    }
    Ok(Some(header))
}

/// One step of a scan: what the bytes at `offset` are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step<'a> {
    /// A whole, checksum-valid record; the next frame starts at `next`.
    Record { payload: &'a [u8], next: usize },
    /// No further record in this segment.
    End(End),
}

/// Decodes the frame at `offset`, which must carry `seq`. With `check_payload` false the
/// payload checksum is skipped (used only to hop over records on the way to a seq).
#[inline]
pub fn step(bytes: &[u8], offset: usize, seq: u64, is_last: bool, check_payload: bool) -> Result<Step<'_>, Found> {
    let damage = |damage| Found { offset: offset as u64, seq, damage };
    let rest = &bytes[offset..];
    if rest.is_empty() {
        return Ok(Step::End(End::Clean));
    }
    let torn_or = |d| if is_last { Ok(Step::End(End::Torn { offset: offset as u64 })) } else { Err(damage(d)) };
    if rest.len() < FRAME_HEADER_LEN {
        return torn_or(Damage::TruncatedFrame);
    }
    let Some(frame) = FrameHeader::decode(rest) else {
        if all_zero(rest) {
            return torn_or(Damage::FrameHeaderChecksum);
        }
        return Err(damage(Damage::FrameHeaderChecksum));
    };
    if frame.payload_len as usize > MAX_PAYLOAD_LEN {
        return Err(damage(Damage::PayloadTooLong { len: frame.payload_len }));
    }
    if frame.seq != seq {
        return Err(damage(Damage::SeqMismatch { expected: seq, found: frame.seq }));
    }
    if rest.len() < frame.frame_len() {
        return torn_or(Damage::TruncatedFrame);
    }
    let payload = &rest[FRAME_HEADER_LEN..frame.frame_len()];
    if check_payload && crc32fast::hash(payload) != frame.payload_crc {
        return Err(damage(Damage::PayloadChecksum));
    }
    Ok(Step::Record { payload, next: offset + frame.frame_len() })
}

/// Scans `bytes` (a whole segment file) expecting its first record to be `base_seq`.
/// `on_record(offset, seq, payload)` is called for every whole, checksum-valid record
/// in order. `is_last` selects the right-hand column of the table above.
pub fn scan_segment(
    bytes: &[u8],
    base_seq: u64,
    is_last: bool,
    mut on_record: impl FnMut(u64, u64, &[u8]),
) -> Result<Scan, Found> {
    let Some(header) = check_header(bytes, base_seq, is_last)? else {
        return Ok(Scan { header: None, next_seq: base_seq, valid_len: 0, end: End::Torn { offset: 0 } });
    };
    let mut offset = SEGMENT_HEADER_LEN;
    let mut seq = base_seq;
    loop {
        match step(bytes, offset, seq, is_last, true)? {
            Step::Record { payload, next } => {
                on_record(offset as u64, seq, payload);
                offset = next;
                seq += 1;
            }
            Step::End(end) => {
                return Ok(Scan { header: Some(header), next_seq: seq, valid_len: offset as u64, end });
            }
        }
    }
}

fn all_zero(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::encode_frame;

    fn segment(base: u64, payloads: &[&[u8]]) -> Vec<u8> {
        let mut out = SegmentHeader { base_seq: base, link: [0; 32] }.encode().to_vec();
        for (i, p) in payloads.iter().enumerate() {
            encode_frame(&mut out, base + i as u64, p);
        }
        out
    }

    fn records(bytes: &[u8], base: u64, last: bool) -> Result<(Scan, Vec<Vec<u8>>), Found> {
        let mut out = Vec::new();
        let scan = scan_segment(bytes, base, last, |_, _, p| out.push(p.to_vec()))?;
        Ok((scan, out))
    }

    #[test]
    fn clean_segment_yields_every_record() {
        let bytes = segment(5, &[b"a", b"", b"ccc"]);
        let (scan, recs) = records(&bytes, 5, true).unwrap();
        assert_eq!(recs, vec![b"a".to_vec(), vec![], b"ccc".to_vec()]);
        assert_eq!(scan.end, End::Clean);
        assert_eq!(scan.next_seq, 8);
        assert_eq!(scan.valid_len, bytes.len() as u64);
    }

    #[test]
    fn table_row_short_header() {
        let bytes = segment(0, &[]);
        assert_eq!(records(&bytes[..10], 0, true).unwrap().0.end, End::Torn { offset: 0 });
        assert_eq!(records(&bytes[..10], 0, false).unwrap_err().damage, Damage::ShortSegmentHeader);
    }

    #[test]
    fn table_row_zeroed_header_is_torn_only_when_last() {
        let bytes = vec![0u8; 100];
        assert_eq!(records(&bytes, 0, true).unwrap().0.header, None);
        assert!(matches!(records(&bytes, 0, false).unwrap_err().damage, Damage::SegmentHeader(_)));
    }

    #[test]
    fn table_row_wrong_base_seq() {
        let bytes = segment(3, &[b"x"]);
        assert_eq!(records(&bytes, 4, true).unwrap_err().damage, Damage::BaseSeq { expected: 4, found: 3 });
    }

    #[test]
    fn table_row_partial_frame_header_and_payload() {
        let bytes = segment(0, &[b"first", b"second"]);
        let second_at = SEGMENT_HEADER_LEN + FRAME_HEADER_LEN + 5;
        for cut in second_at + 1..bytes.len() {
            let (scan, recs) = records(&bytes[..cut], 0, true).unwrap();
            assert_eq!(scan.end, End::Torn { offset: second_at as u64 }, "cut at {cut}");
            assert_eq!(recs.len(), 1);
            let err = records(&bytes[..cut], 0, false).unwrap_err();
            assert_eq!((err.offset, err.seq, err.damage), (second_at as u64, 1, Damage::TruncatedFrame));
        }
    }

    #[test]
    fn table_row_zero_filled_tail_is_torn_when_last() {
        let mut bytes = segment(0, &[b"first"]);
        let end = bytes.len();
        bytes.extend_from_slice(&[0u8; 50]);
        assert_eq!(records(&bytes, 0, true).unwrap().0.end, End::Torn { offset: end as u64 });
        assert_eq!(records(&bytes, 0, false).unwrap_err().damage, Damage::FrameHeaderChecksum);
    }

    #[test]
    fn table_row_damaged_frame_header_is_never_torn() {
        let mut bytes = segment(0, &[b"first", b"second"]);
        let at = SEGMENT_HEADER_LEN + 1; // inside the first frame's length
        bytes[at] ^= 0x40;
        let err = records(&bytes, 0, true).unwrap_err();
        assert_eq!((err.offset, err.seq, err.damage), (SEGMENT_HEADER_LEN as u64, 0, Damage::FrameHeaderChecksum));
    }

    #[test]
    fn table_row_payload_damage_in_the_last_record_is_damage() {
        let mut bytes = segment(0, &[b"first", b"second"]);
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert_eq!(records(&bytes, 0, true).unwrap_err().damage, Damage::PayloadChecksum);
    }

    #[test]
    fn table_row_seq_mismatch() {
        let mut bytes = SegmentHeader { base_seq: 0, link: [0; 32] }.encode().to_vec();
        encode_frame(&mut bytes, 0, b"a");
        encode_frame(&mut bytes, 2, b"b");
        let err = records(&bytes, 0, true).unwrap_err();
        assert_eq!(err.damage, Damage::SeqMismatch { expected: 1, found: 2 });
        assert_eq!(err.seq, 1);
    }
}
