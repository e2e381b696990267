//! The HTML report and the trace export of every feature fixture, checked structurally:
//! the report has one row per task, one bar per attempt and the critical path marked,
//! and loads nothing from the network; the Chrome trace is valid Trace Event Format with
//! slices per slot that never overlap and that match the recorded dispatch/exit times.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use orch_engine::record::{Event, Record};
use orch_engine::spec;
use orch_replay::rollup::Rollup;
use orch_replay::timeline::Timeline;
use orch_replay::{export, report};
use serde_json::Value;

/// Every feature fixture simulated (seed 0), by name.
fn fixture_runs() -> Vec<(String, Vec<Record>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/features");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir).expect("fixtures").map(|e| e.expect("entry").path()).collect();
    paths.retain(|p| p.extension().is_some_and(|e| e == "toml"));
    paths.sort();
    assert!(paths.len() > 5, "fixtures found");
    paths
        .into_iter()
        .map(|p| {
            let spec = spec::load(&p).expect("fixture parses");
            let mut records = Vec::new();
            orch_engine::sim::simulate(spec, 0, |rs: &[Record]| {
                records.extend_from_slice(rs);
                Ok::<(), std::convert::Infallible>(())
            })
            .expect("fixture simulates");
            (p.file_stem().unwrap().to_string_lossy().into_owned(), records)
        })
        .collect()
}

/// The report's inline data (the JSON in `<script id="data">`).
fn report_data(html: &str) -> Value {
    let open = "<script type=\"application/json\" id=\"data\">";
    let start = html.find(open).expect("data element") + open.len();
    let end = start + html[start..].find("</script>").expect("data element closes");
    serde_json::from_str(&html[start..end]).expect("report data is JSON")
}

/// Dispatches per task id, and (task, attempt) → (dispatched ms, ended ms).
fn recorded_attempts(records: &[Record]) -> BTreeMap<(String, u32), (u64, Option<u64>)> {
    let mut out = BTreeMap::new();
    for r in records {
        match &r.event {
            Event::AttemptDispatched(d) => {
                out.insert((d.task.clone(), d.attempt), (r.time_ms, None));
            }
            Event::AttemptExited(e) => {
                out.get_mut(&(e.task.clone(), e.attempt)).expect("dispatched").1 = Some(r.time_ms)
            }
            Event::AttemptLost(e) => out.get_mut(&(e.task.clone(), e.attempt)).expect("dispatched").1 = Some(r.time_ms),
            _ => {}
        }
    }
    out
}

#[test]
fn report_has_a_row_per_task_a_bar_per_attempt_and_the_critical_path() {
    for (name, records) in fixture_runs() {
        let html = report::render(&records);
        let tl = Timeline::of(&records);
        let graph = tl.graph.clone().expect("started");
        let rollup = Rollup::of(&tl);
        let data = report_data(&html);

        // One row per task, each id once.
        let rows = data["tasks"].as_array().expect("tasks");
        assert_eq!(rows.len(), graph.len(), "{name}: rows");
        let ids: BTreeSet<&str> = rows.iter().map(|r| r[0].as_str().expect("id")).collect();
        assert_eq!(ids.len(), graph.len(), "{name}: every task once");

        // One bar per recorded attempt, on its task's row, at the recorded times.
        let recorded = recorded_attempts(&records);
        let bars = data["attempts"].as_array().expect("attempts");
        assert_eq!(bars.len(), 4 * recorded.len(), "{name}: bars");
        let mut bars_per_row = vec![0u64; rows.len()];
        let mut seen = BTreeSet::new();
        for bar in bars.chunks(4) {
            let row = bar[0].as_u64().unwrap() as usize;
            bars_per_row[row] += 1;
            let task = rows[row][0].as_str().unwrap().to_string();
            let attempt = bars_per_row[row] as u32;
            let (start, end) = recorded[&(task.clone(), attempt)];
            assert_eq!(bar[1].as_u64(), Some(start), "{name}: {task}#{attempt} start");
            assert_eq!(bar[2].as_u64(), end, "{name}: {task}#{attempt} end");
            seen.insert((task, attempt));
        }
        assert_eq!(seen.len(), recorded.len(), "{name}: every attempt drawn once");
        for (row, n) in rows.iter().zip(&bars_per_row) {
            assert_eq!(row[2].as_u64(), Some(*n), "{name}: {} attempts column", row[0]);
        }

        // The critical path: marked rows are exactly the rollup's path.
        let marked: BTreeSet<&str> =
            rows.iter().filter(|r| r[6].as_u64() == Some(1)).map(|r| r[0].as_str().unwrap()).collect();
        let path: BTreeSet<&str> = rollup.critical_path.iter().map(String::as_str).collect();
        assert_eq!(marked, path, "{name}: critical path marked");
        if !recorded.is_empty() {
            assert!(!path.is_empty(), "{name}: a run with attempts has a critical path");
        }

        // Self-contained: no external resources; exactly the two script elements.
        for banned in ["http://", "https://", "<link", " src="] {
            assert!(!html.contains(banned), "{name}: report mentions {banned:?}");
        }
        assert_eq!(html.matches("</script>").count(), 2, "{name}: script elements");
        assert!(html.contains("<svg id=\"concurrency-chart\""), "{name}: concurrency chart");
        assert!(html.contains("<canvas id=\"gantt-canvas\""), "{name}: gantt");
        assert!(html.contains("<table id=\"task-table\""), "{name}: task table");
    }
}

#[test]
fn chrome_trace_slots_never_overlap_and_match_the_recorded_times() {
    for (name, records) in fixture_runs() {
        let tl = Timeline::of(&records);
        let rollup = Rollup::of(&tl);
        let text = serde_json::to_string(&export::chrome_trace(&records, &tl)).unwrap();
        let trace: Value = serde_json::from_str(&text).expect("trace parses");
        let events = trace["traceEvents"].as_array().expect("traceEvents");
        let recorded = recorded_attempts(&records);
        let mut per_slot: BTreeMap<u64, Vec<(u64, u64)>> = BTreeMap::new();
        let mut slices = 0;
        let (mut starts, mut finishes) = (BTreeSet::new(), BTreeSet::new());
        for e in events {
            let ph = e["ph"].as_str().expect("ph");
            assert!(e["pid"].is_u64() && e["tid"].is_u64(), "{name}: pid/tid on {e}");
            assert!(ph == "M" || e["ts"].is_u64(), "{name}: ts on {e}");
            match ph {
                "X" => {
                    let (ts, dur) = (e["ts"].as_u64().unwrap(), e["dur"].as_u64().expect("dur"));
                    let key = (
                        e["args"]["task"].as_str().unwrap().to_string(),
                        e["args"]["attempt"].as_u64().unwrap() as u32,
                    );
                    let (start, end) = recorded[&key];
                    assert_eq!(ts, start * 1000, "{name}: {key:?} start");
                    assert_eq!(ts + dur, end.expect("finished run") * 1000, "{name}: {key:?} end");
                    let tid = e["tid"].as_u64().unwrap();
                    assert!(tid >= 1, "{name}: attempts are on slot tracks");
                    per_slot.entry(tid).or_default().push((ts, ts + dur));
                    slices += 1;
                }
                "i" => assert_eq!(e["cat"], "decision", "{name}"),
                "s" => assert!(starts.insert(e["id"].as_u64().unwrap()), "{name}: flow ids unique"),
                "f" => assert!(finishes.insert(e["id"].as_u64().unwrap()), "{name}: flow ids unique"),
                "M" => {}
                other => panic!("{name}: unexpected phase {other}"),
            }
        }
        assert_eq!(slices, recorded.len(), "{name}: a slice per attempt");
        assert_eq!(starts, finishes, "{name}: every flow has both ends");
        for (tid, mut spans) in per_slot.clone() {
            spans.sort();
            for w in spans.windows(2) {
                assert!(w[0].1 <= w[1].0, "{name}: slot {tid} overlaps: {:?} and {:?}", w[0], w[1]);
            }
        }
        // Lowest free slot first: never more slots than attempts ever ran at once.
        assert_eq!(per_slot.len() as u32, rollup.peak_concurrency, "{name}: slots = peak concurrency");
        if name == "delegation" {
            assert_eq!(starts.len(), 2, "release delegated to its two uploads");
        }
    }
}

#[test]
fn jsonl_is_the_log_rendering() {
    let (_, records) = fixture_runs().remove(0);
    let mut out = Vec::new();
    export::write_jsonl(&records, &mut out).unwrap();
    let lines: Vec<&str> = std::str::from_utf8(&out).unwrap().lines().collect();
    assert_eq!(lines.len(), records.len());
    for (seq, (line, r)) in lines.iter().zip(&records).enumerate() {
        assert_eq!(serde_json::from_str::<Value>(line).unwrap(), r.to_json(seq as u64));
    }
}

/// Durations and times at the end of u64 (a spec may ask for them; a log may hold
/// them): the simulator's clock, the summary's totals and the trace's microseconds
/// saturate rather than wrap (a wrapped exit came at once) or panic (debug builds).
#[test]
fn times_at_the_end_of_u64_saturate_in_the_simulator_summary_and_trace() {
    let text = r#"{"task":[
        {"id":"a","sim":{"duration_ms":5}},
        {"id":"b","after":["a"],"sim":{"duration_ms":18446744073709551615}},
        {"id":"c","sim":{"duration_ms":18446744073709551615}},
        {"id":"p","sim":{"create_every_ms":9223372036854775807,"creates":[{"id":"k1"},{"id":"k2"}]}}
    ]}"#;
    let spec = spec::parse(text, "max.json", spec::Format::Json).expect("valid");
    let mut records = Vec::new();
    orch_engine::sim::simulate(spec, 0, |rs: &[Record]| {
        records.extend_from_slice(rs);
        Ok::<(), std::convert::Infallible>(())
    })
    .expect("simulates");
    let exit_of = |task: &str| {
        records
            .iter()
            .find_map(|r| match &r.event {
                Event::AttemptExited(e) if e.task == task => Some(r.time_ms),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{task} exited"))
    };
    assert_eq!(exit_of("b"), u64::MAX, "b ends at the clock's end, not at once");
    // Both of p's children are submitted, the second at the clock's end.
    let submitted = records.iter().filter(|r| matches!(&r.event, Event::TaskSubmitted(_))).count();
    assert_eq!(submitted, 2);
    let summary = orch_replay::Summary::of(&records);
    assert_eq!(summary.attempt_ms, u64::MAX);
    let trace = export::chrome_trace(&records, &Timeline::of(&records));
    let ts: Vec<u64> = trace["traceEvents"].as_array().unwrap().iter().filter_map(|e| e["ts"].as_u64()).collect();
    assert!(ts.contains(&u64::MAX), "a start past the end of the µs clock saturates");
}
