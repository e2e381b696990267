//! Power loss: a finished real run's log cut at random offsets, then resumed.

use super::{env_u64, log_json, reference, Rng, Scratch, FLAKY};

/// A finished real run whose last segment is cut at random offsets (inside the segment
/// header, inside a frame header, anywhere) resumes to the uninterrupted outcome — or,
/// when the cut left no `run_started`, `orch resume` says there is nothing to resume
/// (exit 2). The children of a cut-off attempt are long gone, so its attempt is lost
/// and runs again. Engine-level: every cut, in `engine/tests/log_damage.rs`.
#[test]
fn power_loss_cuts_of_a_finished_run_resume_to_the_same_outcome() {
    let cuts = env_u64("ORCH_POWER_LOSS_CUTS").unwrap_or(12) as usize;
    let seed = env_u64("ORCH_CRASH_SEED").unwrap_or(7);
    let s = Scratch::new(FLAKY);
    s.orch(&["run", "wf.toml"]).expect(0).unwrap();
    let run = s.run_dir().unwrap();
    let run_id = run.file_name().unwrap().to_str().unwrap().to_string();
    let segment = run.join("log/00000000000000000000.seg");
    let pristine = std::fs::read(&segment).unwrap();
    let frames = frame_offsets(&pristine);
    let mut rng = Rng::new(seed);
    // Inside the segment header, inside the first frame's header, inside a later frame's
    // header, then random offsets.
    let mut offsets = vec![rng.below(64) as usize, 64 + rng.below(20) as usize];
    let k = 1 + rng.below(frames.len() as u64 - 1) as usize;
    offsets.push(frames[k] + rng.below(20) as usize);
    // The rest after run_started (a cut inside it leaves nothing to resume).
    while offsets.len() < cuts {
        offsets.push(frames[1] + rng.below((pristine.len() - frames[1]) as u64 + 1) as usize);
    }
    let (mut resumed, mut nothing) = (0, 0);
    for cut in offsets {
        std::fs::write(&segment, &pristine[..cut]).unwrap();
        let _ = std::fs::remove_file(s.path().join("markers"));
        let out = s.orch(&["resume", &run_id]);
        let place = format!("cut at {cut} of {} (ORCH_CRASH_SEED={seed})", pristine.len());
        let whole = frames.iter().skip(1).chain([&pristine.len()]).filter(|&&end| end <= cut).count();
        if whole == 0 {
            // Not even run_started survived.
            out.expect(2).unwrap_or_else(|e| panic!("{place}: {e}"));
            assert!(out.stderr.contains("nothing to resume"), "{place}: {}", out.stderr);
            nothing += 1;
        } else {
            out.expect(0).unwrap_or_else(|e| panic!("{place}: {e}"));
            if cut != frames[whole.min(frames.len() - 1)] && cut < pristine.len() && cut >= 64 {
                assert!(out.stdout.contains("recovered: dropped"), "{place}: torn tail not reported:\n{}", out.stdout);
            }
            let log = log_json(&s, &run_id).unwrap();
            assert_eq!(log.last().unwrap()["aggregate"], reference().aggregate.as_str(), "{place}");
            s.orch(&["verify", &run_id]).expect(0).unwrap();
            s.orch(&["replay", &run_id]).expect(0).unwrap();
            resumed += 1;
        }
    }
    eprintln!("power loss: {resumed} cuts resumed to the reference outcome, {nothing} left nothing to resume");
}

/// Start offsets of the frames of a segment (walking the length fields).
fn frame_offsets(segment: &[u8]) -> Vec<usize> {
    let mut offsets = Vec::new();
    let mut at = 64;
    while at + 20 <= segment.len() {
        offsets.push(at);
        at += 20 + u32::from_le_bytes(segment[at..at + 4].try_into().unwrap()) as usize;
    }
    offsets
}
