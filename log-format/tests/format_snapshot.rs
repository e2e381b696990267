//! The on-disk format is a public contract: this snapshot freezes the exact bytes of a
//! small two-segment log. If it changes, the format changed — bump `FORMAT_VERSION`,
//! say so in `docs/log-format.md`, and only then accept the new snapshot.

mod common;

use std::fmt::Write;
use std::fs;

use orch_log_format::layout::{FORMAT_VERSION, MIN_SEGMENT_BYTES};
use orch_log_format::{hex, verify};

/// `hexdump -C` style: offset, 16 bytes in hex, printable ASCII; runs of identical
/// lines collapse to `*` so long repeated payloads stay readable.
fn hexdump(bytes: &[u8]) -> String {
    let mut out = String::new();
    let mut previous: Option<&[u8]> = None;
    let mut starred = false;
    for (i, line) in bytes.chunks(16).enumerate() {
        if previous == Some(line) && line.len() == 16 {
            if !starred {
                out.push_str("*\n");
                starred = true;
            }
            continue;
        }
        previous = Some(line);
        starred = false;
        write!(out, "{:08x}  ", i * 16).unwrap();
        for (j, b) in line.iter().enumerate() {
            write!(out, "{b:02x} ").unwrap();
            if j == 7 {
                out.push(' ');
            }
        }
        let pad = (16 - line.len()) * 3 + usize::from(line.len() <= 8);
        out.push_str(&" ".repeat(pad));
        let ascii: String =
            line.iter().map(|&b| if b.is_ascii_graphic() || b == b' ' { b as char } else { '.' }).collect();
        writeln!(out, " |{ascii}|").unwrap();
    }
    writeln!(out, "{:08x}", bytes.len()).unwrap();
    out
}

#[test]
fn a_small_two_segment_log_has_exactly_these_bytes() {
    assert_eq!(FORMAT_VERSION, 1, "a new format version needs a new snapshot");
    let payloads: Vec<Vec<u8>> =
        vec![b"orch".to_vec(), vec![b'a'; 2000], vec![b'b'; 2000], Vec::new(), b"last record".to_vec()];
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let digest = common::write_log(&dir, &payloads, MIN_SEGMENT_BYTES);

    let mut text = String::new();
    for path in common::segment_paths(&dir) {
        let bytes = fs::read(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy();
        writeln!(text, "== {name} ({} bytes)", bytes.len()).unwrap();
        text.push_str(&hexdump(&bytes));
    }
    let report = verify(&dir).unwrap();
    assert_eq!(report.digest, digest);
    assert_eq!(report.segments, 2, "the fixture spans two segments");
    writeln!(text, "== digest {}", hex(&digest)).unwrap();
    insta::assert_snapshot!("two_segment_log", text);
}

#[test]
fn hexdump_collapses_repeats_and_pads_short_lines() {
    let mut bytes = vec![b'x'; 48];
    bytes.extend_from_slice(b"end");
    let dump = hexdump(&bytes);
    let lines: Vec<&str> = dump.lines().collect();
    assert_eq!(lines.len(), 4, "{dump}");
    assert_eq!(lines[1], "*");
    assert!(lines[2].starts_with("00000030  65 6e 64 ") && lines[2].ends_with(" |end|"), "{dump}");
    assert_eq!(lines[2].find('|'), lines[0].find('|'), "ascii column aligned:\n{dump}");
    assert_eq!(lines[3], "00000033");
}

#[test]
fn an_empty_log_is_one_header_and_its_digest_is_blake3_of_the_zero_link() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let digest = common::write_log(&dir, &[], MIN_SEGMENT_BYTES);
    assert_eq!(digest, *blake3::hash(&[0; 32]).as_bytes());
    assert_eq!(verify(&dir).unwrap().digest, digest);
    let files = common::segment_paths(&dir);
    assert_eq!(files.len(), 1);
    assert_eq!(fs::metadata(&files[0]).unwrap().len(), 64);
    assert_eq!(hex(&digest), "2ada83c1819a5372dae1238fc1ded123c8104fdaa15862aaee69428a1820fcda");
}
