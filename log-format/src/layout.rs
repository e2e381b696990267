//! The byte layout of segments and record frames: the on-disk contract, in one place.
//!
//! Everything here is pure (bytes in, values out) so the scanner, the writer, the
//! reader and the tests agree on one definition. `docs/log-format.md` documents the
//! same tables; `tests/format_snapshot.rs` freezes them.

/// First bytes of every segment file.
pub const MAGIC: [u8; 8] = *b"ORCHLOG\0";
/// Format version written into every segment header. Bumped on any layout change.
pub const FORMAT_VERSION: u32 = 1;
/// Size of the fixed segment header.
pub const SEGMENT_HEADER_LEN: usize = 64;
/// Size of the fixed record frame header that precedes each payload.
pub const FRAME_HEADER_LEN: usize = 20;
/// Largest payload a record may carry. Checked on append and on read.
/// Large because orch's run-started record carries the whole workflow spec (about 60 MB
/// for a million tasks), so that a log alone is enough to replay its run.
pub const MAX_PAYLOAD_LEN: usize = 256 * 1024 * 1024;
/// Default size at which the writer starts a new segment.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// Smallest segment size the writer accepts (one header and one small frame fit).
pub const MIN_SEGMENT_BYTES: u64 = 4096;
/// A blake3 digest, as stored in segment headers and reported for whole logs.
pub type Digest = [u8; 32];

// Layout constants are part of the format: catch accidental edits at compile time.
const _: () = assert!(SEGMENT_HEADER_LEN == 8 + 4 + 4 + 8 + 32 + 4 + 4);
const _: () = assert!(FRAME_HEADER_LEN == 4 + 8 + 4 + 4);
const _: () = assert!(MAX_PAYLOAD_LEN <= u32::MAX as usize);
const _: () = assert!(MIN_SEGMENT_BYTES as usize > SEGMENT_HEADER_LEN + FRAME_HEADER_LEN);

/// The decoded fixed header at the start of every segment file.
///
/// | offset | size | field                                              |
/// |-------:|-----:|----------------------------------------------------|
/// | 0      | 8    | magic `ORCHLOG\0`                                  |
/// | 8      | 4    | format version (u32 LE)                            |
/// | 12     | 4    | flags (u32 LE, must be 0)                          |
/// | 16     | 8    | base seq: seq of the first record (u64 LE)         |
/// | 24     | 32   | link: blake3 chain digest of all earlier frames    |
/// | 56     | 4    | crc32 of bytes 0..56 (u32 LE)                      |
/// | 60     | 4    | reserved, zero                                     |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    pub base_seq: u64,
    pub link: Digest,
}

/// Why a segment header was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderProblem {
    Magic,
    Version(u32),
    Flags(u32),
    Checksum,
    Reserved,
}

impl std::fmt::Display for HeaderProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderProblem::Magic => write!(f, "bad magic (not an orch log segment)"),
            HeaderProblem::Version(v) => {
                write!(f, "unsupported format version {v} (this build reads {FORMAT_VERSION})")
            }
            HeaderProblem::Flags(x) => write!(f, "unknown header flags {x:#x}"),
            HeaderProblem::Checksum => write!(f, "segment header checksum mismatch"),
            HeaderProblem::Reserved => write!(f, "reserved header bytes are not zero"),
        }
    }
}

impl SegmentHeader {
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut b = [0u8; SEGMENT_HEADER_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&0u32.to_le_bytes());
        b[16..24].copy_from_slice(&self.base_seq.to_le_bytes());
        b[24..56].copy_from_slice(&self.link);
        let crc = crc32fast::hash(&b[0..56]);
        b[56..60].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes a header from exactly `SEGMENT_HEADER_LEN` bytes. The checksum is checked
    /// before any other field so a damaged header is reported as damage, not as a
    /// foreign version.
    pub fn decode(b: &[u8; SEGMENT_HEADER_LEN]) -> Result<SegmentHeader, HeaderProblem> {
        if b[0..8] != MAGIC {
            return Err(HeaderProblem::Magic);
        }
        if crc32fast::hash(&b[0..56]) != read_u32(b, 56) {
            return Err(HeaderProblem::Checksum);
        }
        let version = read_u32(b, 8);
        if version != FORMAT_VERSION {
            return Err(HeaderProblem::Version(version));
        }
        let flags = read_u32(b, 12);
        if flags != 0 {
            return Err(HeaderProblem::Flags(flags));
        }
        if read_u32(b, 60) != 0 {
            return Err(HeaderProblem::Reserved);
        }
        let mut link = [0u8; 32];
        link.copy_from_slice(&b[24..56]);
        Ok(SegmentHeader { base_seq: read_u64(b, 16), link })
    }
}

/// The decoded fixed header of one record frame.
///
/// | offset | size | field                                           |
/// |-------:|-----:|-------------------------------------------------|
/// | 0      | 4    | payload length (u32 LE)                         |
/// | 4      | 8    | seq (u64 LE)                                    |
/// | 12     | 4    | crc32 of the payload (u32 LE)                   |
/// | 16     | 4    | crc32 of bytes 0..16 of this frame (u32 LE)     |
/// | 20     | len  | payload                                         |
///
/// Two checksums, so that a damaged length is told apart from a torn write: a frame
/// whose header checksum holds but whose payload runs past the end of the file was cut
/// short by a crash; a frame whose header checksum fails was damaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub payload_len: u32,
    pub seq: u64,
    pub payload_crc: u32,
}

impl FrameHeader {
    pub fn for_payload(seq: u64, payload: &[u8]) -> FrameHeader {
        assert!(payload.len() <= MAX_PAYLOAD_LEN, "payload length checked by the caller");
        FrameHeader { payload_len: payload.len() as u32, seq, payload_crc: crc32fast::hash(payload) }
    }

    pub fn encode(&self) -> [u8; FRAME_HEADER_LEN] {
        let mut b = [0u8; FRAME_HEADER_LEN];
        b[0..4].copy_from_slice(&self.payload_len.to_le_bytes());
        b[4..12].copy_from_slice(&self.seq.to_le_bytes());
        b[12..16].copy_from_slice(&self.payload_crc.to_le_bytes());
        let crc = crc32fast::hash(&b[0..16]);
        b[16..20].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes a frame header; `None` when its own checksum fails.
    #[inline]
    pub fn decode(b: &[u8]) -> Option<FrameHeader> {
        debug_assert!(b.len() >= FRAME_HEADER_LEN);
        if crc32fast::hash(&b[0..16]) != read_u32(b, 16) {
            return None;
        }
        Some(FrameHeader { payload_len: read_u32(b, 0), seq: read_u64(b, 4), payload_crc: read_u32(b, 12) })
    }

    /// Total bytes of the frame on disk.
    #[inline]
    pub fn frame_len(&self) -> usize {
        FRAME_HEADER_LEN + self.payload_len as usize
    }
}

/// Appends one encoded frame (header and payload) to `out`.
pub fn encode_frame(out: &mut Vec<u8>, seq: u64, payload: &[u8]) {
    let header = FrameHeader::for_payload(seq, payload);
    out.extend_from_slice(&header.encode());
    out.extend_from_slice(payload);
}

/// Name of the segment file whose first record has `base_seq`. Zero-padded so that
/// lexical order is seq order.
pub fn segment_file_name(base_seq: u64) -> String {
    format!("{base_seq:020}.seg")
}

/// Parses a segment file name back to its base seq; `None` for any other file.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[inline]
fn read_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[inline]
fn read_u64(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_header_round_trips_and_detects_every_bit_flip() {
        let h = SegmentHeader { base_seq: 42, link: [7u8; 32] };
        let bytes = h.encode();
        assert_eq!(SegmentHeader::decode(&bytes), Ok(h));
        for bit in 0..SEGMENT_HEADER_LEN * 8 {
            let mut b = bytes;
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(SegmentHeader::decode(&b).is_err(), "flip of bit {bit} undetected");
        }
    }

    #[test]
    fn frame_header_detects_every_bit_flip() {
        let h = FrameHeader::for_payload(9, b"hello");
        let bytes = h.encode();
        assert_eq!(FrameHeader::decode(&bytes), Some(h));
        for bit in 0..FRAME_HEADER_LEN * 8 {
            let mut b = bytes;
            b[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(FrameHeader::decode(&b), None, "flip of bit {bit} undetected");
        }
    }

    #[test]
    fn segment_names_sort_by_seq_and_parse_back() {
        assert_eq!(segment_file_name(7), "00000000000000000007.seg");
        assert_eq!(parse_segment_file_name(&segment_file_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_segment_file_name("7.seg"), None);
        assert_eq!(parse_segment_file_name("LOCK"), None);
        assert!(segment_file_name(9) < segment_file_name(10));
    }
}
