//! Helpers shared by the integration tests: a reference model of the byte layout (so
//! the writer is checked against an independent encoding of the format, not against
//! itself), and small readers that turn a log into plain payload vectors.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};

use orch_log_format::layout::{encode_frame, segment_file_name, SegmentHeader, FRAME_HEADER_LEN, SEGMENT_HEADER_LEN};
use orch_log_format::{list_segments, Digest, Durability, Options, Reader, Result, Writer};

/// Writer options for tests: no fdatasync (the bytes are the same under every policy,
/// see `durability.rs`), and the given segment size.
pub fn never(segment_bytes: u64) -> Options {
    Options { durability: Durability::Never, segment_bytes }
}

/// Writes `payloads` as a fresh log in `dir`, committing once at the end; returns the
/// writer's digest.
pub fn write_log(dir: &Path, payloads: &[Vec<u8>], segment_bytes: u64) -> Digest {
    let mut writer = Writer::create(dir, never(segment_bytes)).expect("create log");
    for p in payloads {
        writer.append(p).expect("append");
    }
    writer.commit().expect("commit");
    let digest = writer.digest();
    writer.close().expect("close");
    digest
}

/// Every record's payload through `Reader::iter`, or the first error.
pub fn read_payloads(dir: &Path) -> Result<Vec<Vec<u8>>> {
    let reader = Reader::open(dir)?;
    let mut out = Vec::new();
    for (i, record) in reader.iter().enumerate() {
        let record = record?;
        assert_eq!(record.seq, i as u64, "iter yields dense seqs");
        out.push(record.payload.to_vec());
    }
    Ok(out)
}

/// Segment file paths in seq order.
pub fn segment_paths(dir: &Path) -> Vec<PathBuf> {
    list_segments(dir).expect("list segments").into_iter().map(|s| s.path).collect()
}

/// One segment as the model says it must be on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSegment {
    pub base_seq: u64,
    pub file_name: String,
    pub bytes: Vec<u8>,
    /// Start offset of every frame in `bytes`, in seq order.
    pub frame_offsets: Vec<usize>,
}

/// The reference model of the format: the exact segments a writer must produce for
/// `payloads` with `segment_bytes`, and the log digest. Rolling rule: a record starts
/// a new segment when the current one already holds a record and the frame would
/// push it past `segment_bytes`. Chain: `C_k = blake3(link_k || frames of segment k)`,
/// `link_0 = [0; 32]`, `link_{k+1} = C_k`, digest = chain value of the last segment.
pub fn model(payloads: &[Vec<u8>], segment_bytes: u64) -> (Vec<ModelSegment>, Digest) {
    let start = |base_seq: u64, link: Digest| ModelSegment {
        base_seq,
        file_name: segment_file_name(base_seq),
        bytes: SegmentHeader { base_seq, link }.encode().to_vec(),
        frame_offsets: Vec::new(),
    };
    let chain = |link: &Digest, seg: &ModelSegment| -> Digest {
        let mut h = blake3::Hasher::new();
        h.update(link);
        h.update(&seg.bytes[SEGMENT_HEADER_LEN..]);
        *h.finalize().as_bytes()
    };
    let mut link = [0u8; 32];
    let mut segments = vec![start(0, link)];
    for (seq, payload) in payloads.iter().enumerate() {
        let seq = seq as u64;
        let current = segments.last().expect("at least one segment");
        let frame_len = FRAME_HEADER_LEN + payload.len();
        if !current.frame_offsets.is_empty() && (current.bytes.len() + frame_len) as u64 > segment_bytes {
            link = chain(&link, current);
            segments.push(start(seq, link));
        }
        let current = segments.last_mut().expect("at least one segment");
        current.frame_offsets.push(current.bytes.len());
        encode_frame(&mut current.bytes, seq, payload);
    }
    let digest = chain(&link, segments.last().expect("at least one segment"));
    (segments, digest)
}

/// Asserts the files in `dir` are exactly the model's segments.
pub fn assert_files_match_model(dir: &Path, segments: &[ModelSegment]) {
    let paths = segment_paths(dir);
    let names: Vec<String> = paths.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    let expected: Vec<&str> = segments.iter().map(|s| s.file_name.as_str()).collect();
    assert_eq!(names, expected, "segment files");
    for (path, seg) in paths.iter().zip(segments) {
        let bytes = fs::read(path).expect("read segment");
        assert!(
            bytes == seg.bytes,
            "{} differs from the model ({} vs {} bytes)",
            path.display(),
            bytes.len(),
            seg.bytes.len()
        );
    }
}

/// Deterministic payloads of varied length (including empty), distinct per seq.
pub fn payloads(count: usize, max_len: usize) -> Vec<Vec<u8>> {
    (0..count).map(|i| (0..(i * 37 + 11) % (max_len + 1)).map(|j| (i * 31 + j * 7 + 1) as u8).collect()).collect()
}
