//! `orch report`, `orch export` and `orch show --json / --watch` as a user meets them:
//! the real binary on a simulated fixture run in a fresh directory.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn orch(dir: &Path, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_orch"))
        .args(args)
        .current_dir(dir)
        .env_remove("ORCH_STORE")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run orch");
    assert!(out.status.success(), "orch {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("utf-8")
}

#[test]
fn report_export_and_show_read_a_finished_run() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/features/dag.toml");
    orch(dir.path(), &["run", "--sim", "--json", fixture.to_str().unwrap()]);

    orch(dir.path(), &["report", "latest", "-o", "report.html"]);
    let html = std::fs::read_to_string(dir.path().join("report.html")).expect("report written");
    assert!(html.starts_with("<!DOCTYPE html>") && html.contains("critical path 630 ms"));

    let trace: Value =
        serde_json::from_str(&stdout(&orch(dir.path(), &["export", "latest", "--format", "chrome-trace"])))
            .expect("trace is JSON");
    let slices = trace["traceEvents"].as_array().unwrap().iter().filter(|e| e["ph"] == "X").count();
    assert_eq!(slices, 5);

    let jsonl = stdout(&orch(dir.path(), &["export", "latest", "--format", "jsonl"]));
    assert_eq!(jsonl, stdout(&orch(dir.path(), &["log", "latest"])), "jsonl = orch log");

    let show: Value = serde_json::from_str(&stdout(&orch(dir.path(), &["show", "latest", "--json"]))).unwrap();
    assert_eq!(show["critical_path"], serde_json::json!(["fetch", "build", "test", "package"]));
    assert_eq!(show["peak_concurrency"], 2);
    assert_eq!(show["rollup"]["queue_wait"].as_array().unwrap().len(), 5);
    assert_eq!(show["tasks_detail"][1]["ready_ms"], 50);

    // Without a terminal, --watch prints plain lines and stops: the run is over.
    let watched = stdout(&orch(dir.path(), &["show", "latest", "--watch"]));
    assert!(watched.contains("succeeded: 5/5 done"), "{watched}");
    assert!(watched.contains("package"), "{watched}");
}
