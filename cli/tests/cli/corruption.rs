//! Corruption: a damaged log is named by segment, offset and seq by every command.

use serde_json::Value;

use super::{example, Out, Scratch};

#[test]
fn a_corrupted_log_is_named_by_segment_offset_and_seq() {
    let s = Scratch::new();
    s.orch(&["run", &example("retries.toml"), "--sim"]).code(1);
    let id = s.run_ids().remove(0);
    let segment = s.segment(&id);
    let mut bytes = std::fs::read(&segment).unwrap();
    let flipped = bytes.len() / 2;
    bytes[flipped] ^= 0x01;
    std::fs::write(&segment, &bytes).unwrap();

    let check = |out: &Out| {
        out.code(2).stderr_has("00000000000000000000.seg:");
        // `…/00000000000000000000.seg:OFFSET: seq N: …`
        let place = out.stderr.split("00000000000000000000.seg:").nth(1).unwrap();
        let (offset, rest) = place.split_once(':').unwrap();
        let offset: usize = offset.parse().unwrap_or_else(|_| panic!("no offset in {:?}", out.stderr));
        assert!(offset <= flipped, "the damaged record starts after the flipped byte: {}", out.stderr);
        let seq = rest.trim_start().strip_prefix("seq ").and_then(|r| r.split(':').next()).unwrap();
        assert!(seq.parse::<u64>().is_ok(), "no seq in {:?}", out.stderr);
        assert!(out.stdout.is_empty() || out.args.starts_with("log"), "stdout: {}", out.stdout);
    };
    check(&s.orch(&["verify", &id]));
    check(&s.orch(&["verify", &id, "--json"]));
    check(&s.orch(&["replay", &id]));
    check(&s.orch(&["replay", &id, "--at", "2"]));
    check(&s.orch(&["show", &id]));
    // `orch log` prints the good prefix, then reports the damage.
    let log = s.orch(&["log", &id, "--text"]);
    check(&log);
    assert!(log.stdout.starts_with("     0 "), "{}", log.stdout);

    // `ls` still lists every run; the damaged one is marked, the reason on stderr.
    let ls = s.orch(&["ls"]);
    ls.code(0).stderr_has("00000000000000000000.seg:");
    let row = ls.stdout.lines().find(|l| l.starts_with(&id)).unwrap();
    assert!(row.contains("unreadable"), "{row}");
    let json = s.orch(&["ls", "--json"]);
    let v: Value = serde_json::from_str(json.code(0).stdout.trim()).unwrap();
    assert_eq!(v[0]["outcome"], "unreadable");
    assert!(v[0]["error"].as_str().unwrap().contains(".seg:"));
    assert_eq!((&v[0]["duration_ms"], &v[0]["tasks"]), (&Value::Null, &Value::Null), "not known: null, not 0");
}

/// `orch resume` refuses a simulated run, or a finished one, before it opens the log for
/// writing: the torn tail stays as it is and no lock file is made (opening for writing
/// would have dropped the tail first).
#[test]
fn a_refused_resume_leaves_the_log_as_it_was() {
    let s = Scratch::new();
    s.orch(&["run", &example("retries.toml"), "--sim"]).code(1);
    let id = s.run_ids().remove(0);
    let segment = s.segment(&id);
    let log_dir = segment.parent().unwrap().to_path_buf();
    let whole = std::fs::read(&segment).unwrap();
    for (cut, refusal) in [(30, "a sim run cannot be resumed"), (0, "a sim run cannot be resumed")] {
        std::fs::write(&segment, &whole[..whole.len() - cut]).unwrap();
        let files = |d: &std::path::Path| -> Vec<String> {
            let mut v: Vec<String> =
                std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
            v.sort();
            v
        };
        let before = files(&log_dir);
        s.orch(&["resume", &id]).code(2).stderr_has(refusal);
        assert_eq!(std::fs::read(&segment).unwrap().len(), whole.len() - cut, "the torn tail is untouched");
        assert_eq!(files(&log_dir), before, "no file made or removed");
    }
    // A directory that holds no log at all is not written into either.
    let elsewhere = s.path().join("not-a-log");
    std::fs::create_dir(&elsewhere).unwrap();
    s.orch(&["resume", elsewhere.to_str().unwrap()]).code(2).stderr_has("not an orch log");
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0, "nothing made in it");
}

/// A log whose checksums are right but whose records cannot all be applied (here the
/// first exit names a task the run does not have) is bad input for every command that folds it: exit 2 naming the
/// seq. `report` and `export` used to render what could be folded (a report that
/// contradicted itself) and exit 0; `replay` said 1, as for a log that re-decides
/// otherwise; `ls` listed the run as failed.
#[test]
fn a_well_framed_log_that_cannot_be_applied_is_bad_input_everywhere() {
    use orch_engine::record::Event;
    let s = Scratch::new();
    s.orch(&["run", &example("retries.toml"), "--sim"]).code(1);
    let id = s.run_ids().remove(0);
    let log = s.log_dir(&id);
    let mut exit = 0;
    s.rewrite_log(&id, |records| {
        exit = records.iter().position(|r| matches!(r.event, Event::AttemptExited(_))).unwrap();
        if let Event::AttemptExited(e) = &mut records[exit].event {
            e.task = "nobody".into();
        }
    });
    s.orch(&["verify", &id]).code(0);

    let report = s.path().join("r.html");
    for args in [
        vec!["replay", &id],
        vec!["show", &id],
        vec!["report", &id, "-o", report.to_str().unwrap()],
        vec!["export", &id, "--format", "chrome-trace"],
    ] {
        s.orch(&args).code(2).stderr_has(&format!("seq {exit}"));
    }
    assert!(!report.exists(), "no report of an illegal log");
    let ls = s.orch(&["ls", "--json"]);
    let v: Value = serde_json::from_str(ls.code(0).stdout.trim()).unwrap();
    assert_eq!(v[0]["outcome"], "unreadable");
    // Not one for the scratch directory's check that every run replays.
    std::fs::remove_dir_all(log.parent().unwrap()).unwrap();
}

/// The run-started record carries the graph compiled from its spec, which a fold (`show`,
/// `report`, `ls`) builds on without compiling the spec. An image that is malformed is
/// bad input everywhere; one that is well formed but not the spec's is refused by every
/// command that compiles the spec (`replay`, `resume`).
#[test]
fn a_compiled_graph_that_is_not_the_specs_is_refused() {
    use orch_engine::record::Event;
    let s = Scratch::new();
    s.orch(&["run", &example("dag.toml"), "--sim"]).code(0);
    let id = s.run_ids().remove(0);
    let log = s.log_dir(&id);
    // Another spec's graph (that of retries.toml): well formed, not this spec's.
    let other = Scratch::new();
    other.orch(&["run", &example("retries.toml"), "--sim"]);
    let other_id = other.run_ids().remove(0);
    let other_log = other.log_dir(&other_id);
    let foreign = match &orch_engine::journal::read_records(&other_log).unwrap()[0].event {
        Event::RunStarted(r) => r.image.clone(),
        _ => panic!("run_started first"),
    };
    s.rewrite_log(&id, |records| match &mut records[0].event {
        Event::RunStarted(r) => r.image = foreign,
        _ => panic!("run_started first"),
    });
    s.orch(&["verify", &id]).code(0);
    for args in [vec!["replay", &id], vec!["replay", &id, "--at", "3"]] {
        s.orch(&args).code(2).stderr_has("invalid compiled graph: it is not the one the record's spec compiles to");
    }

    // A malformed one (one task, whose facts no orch writes): the fold refuses it,
    // naming the record.
    let bad = r#"["{}", "x", [1,0,0,0], [255,255,255,255], [0,0,0,0], [], [255,0], [0,0,0,0], [], [], []]"#;
    let bad = serde_json::from_str(bad).expect("an image");
    s.rewrite_log(&id, |records| match &mut records[0].event {
        Event::RunStarted(r) => r.image = Some(Box::new(bad)),
        _ => panic!("run_started first"),
    });
    for args in [vec!["show", &id], vec!["replay", &id]] {
        s.orch(&args).code(2).stderr_has("seq 0");
    }
    std::fs::remove_dir_all(log.parent().unwrap()).unwrap();
    std::fs::remove_dir_all(other_log.parent().unwrap()).unwrap();
}
