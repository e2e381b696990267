//! Corruption through the binary: damage reported by `orch verify` and `orch replay` with
//! segment, offset and seq.

use super::{env_u64, Rng, Scratch};

/// A handful of random bit flips and byte overwrites of a multi-segment log through
/// `orch verify` and `orch replay`: exit 2, and stderr names the segment, the offset and
/// the seq of the damaged record. (10,000 trials through the library: log_damage.rs.)
#[test]
fn damage_is_reported_by_verify_and_replay_with_segment_offset_and_seq() {
    use orch_log_format::scan::scan_segment;
    // A simulated run of 40 tasks, rewritten with 4 KiB segments.
    let mut spec = String::from("[run]\nmax_concurrency = 3\n");
    for i in 0..40 {
        let after = if i == 0 { String::new() } else { format!("after = [\"t{}\"]\n", (i - 1) / 3) };
        spec +=
            &format!("[[task]]\nid = \"t{i}\"\ncommand = \"true\"\n{after}sim = {{ duration_ms = {} }}\n", 5 + i % 7);
    }
    let s = Scratch::with(spec);
    s.orch(&["run", "wf.toml", "--sim"]).expect(0).unwrap();
    let records = s.records();
    let dir = s.path().join("small");
    let mut journal = orch_engine::journal::Journal::create(
        &dir,
        orch_log_format::Options { durability: orch_log_format::Durability::Never, segment_bytes: 4096 },
    )
    .unwrap();
    journal.append(&records).unwrap();
    journal.close().unwrap();
    let segments = orch_log_format::list_segments(&dir).unwrap();
    assert!(segments.len() >= 2, "the log spans {} segment(s)", segments.len());
    s.orch(&["replay", dir.to_str().unwrap()]).expect(0).unwrap();

    let mut rng = Rng::new(env_u64("ORCH_CRASH_SEED").unwrap_or(99));
    for trial in 0..6 {
        let seg = &segments[rng.below(segments.len() as u64) as usize];
        let bytes = std::fs::read(&seg.path).unwrap();
        let at = rng.below(bytes.len() as u64) as usize;
        let mut damaged = bytes.clone();
        if trial % 2 == 0 {
            damaged[at] ^= 1 << rng.below(8);
        } else {
            damaged[at] ^= 1 + rng.below(255) as u8;
        }
        let (offset, seq) = if at < 64 {
            (0, seg.base_seq)
        } else {
            let mut owner = (64, seg.base_seq);
            scan_segment(&bytes, seg.base_seq, true, |o, q, _| {
                if o as usize <= at {
                    owner = (o, q);
                }
            })
            .unwrap();
            owner
        };
        std::fs::write(&seg.path, &damaged).unwrap();
        let name = seg.path.file_name().unwrap().to_str().unwrap();
        let expected = format!("{name}:{offset}: seq {seq}: ");
        for cmd in ["verify", "replay"] {
            let out = s.orch(&[cmd, dir.to_str().unwrap()]);
            out.expect(2).unwrap();
            assert!(out.stderr.contains(&expected), "orch {cmd}, byte {at} of {name}: {}", out.stderr);
        }
        std::fs::write(&seg.path, &bytes).unwrap();
    }
}
