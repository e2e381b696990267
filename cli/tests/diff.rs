//! `orch diff` end to end, on real processes: the same workflow run twice with two
//! siblings whose finishing order flips between the runs. The diff must name the pair and
//! both orders, and find the runs equal at `--outcomes`. The order is made deterministic
//! per run (not left to chance) by files the test writes before each run: they hold each
//! sibling's sleep, 0.05 s against 0.4 s, swapped for the second run.

use std::path::Path;
use std::process::{Command, Output};

const FLOW: &str = r#"
[run]
name = "race"
max_concurrency = 2

# Same command, same output: only the durations (read from files) differ between runs.
[[task]]
id = "a"
command = "sleep $(cat delay-a); echo done"

[[task]]
id = "b"
command = "sleep $(cat delay-b); echo done"
"#;

fn orch(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_orch"))
        .current_dir(dir)
        .env_remove("ORCH_STORE")
        .args(args)
        .output()
        .expect("orch runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs the workflow with the given sleeps; returns the run id.
fn run(dir: &Path, delay_a: &str, delay_b: &str) -> String {
    std::fs::write(dir.join("delay-a"), delay_a).unwrap();
    std::fs::write(dir.join("delay-b"), delay_b).unwrap();
    let out = orch(dir, &["run", "flow.toml", "--json", "--durability", "never"]);
    assert!(out.status.success(), "orch run failed: {}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    let summary: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("run --json prints JSON");
    summary["run"].as_str().expect("the summary names the run").to_string()
}

#[test]
fn diff_names_the_racing_siblings_and_finds_the_outcomes_equal() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("flow.toml"), FLOW).unwrap();
    let first = run(dir, "0.05", "0.4"); // a finishes first
    let second = run(dir, "0.4", "0.05"); // b finishes first

    // Default level (decisions): different, with the race spelled out.
    let out = orch(dir, &["diff", &first, &second]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("different at level decisions"), "{text}");
    assert!(text.contains("a and b (children of the run): A completed a before b; B completed b before a"), "{text}");
    assert!(text.contains("first divergence at seq"), "{text}");

    // The same as JSON.
    let out = orch(dir, &["diff", &first, &second, "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("diff --json prints JSON");
    assert_eq!(report["identical"], false);
    let races = report["races"].as_array().expect("races");
    let completion: Vec<_> = races.iter().filter(|r| r["kind"] == "completion").collect();
    assert_eq!(completion.len(), 1, "{report}");
    assert_eq!((completion[0]["first"].as_str(), completion[0]["second"].as_str()), (Some("a"), Some("b")));
    for side in ["a", "b"] {
        let lines = completion[0][side].as_array().expect("interleaving");
        assert!(lines.iter().any(|l| l.as_str().unwrap().contains("task_finished a")), "{report}");
        assert!(lines.iter().any(|l| l.as_str().unwrap().contains("task_finished b")), "{report}");
    }
    // Both were dispatched at the start, in canonical order, in both runs: no dispatch race.
    assert!(races.iter().all(|r| r["kind"] != "dispatch"), "{report}");
    assert!(report["tasks"].as_array().unwrap().is_empty(), "{report}");

    // Outcomes: the same tasks, states, attempts, outputs and aggregates.
    let out = orch(dir, &["diff", &first, &second, "--outcomes"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).contains("same at level outcomes"));

    // A reader that stops at once (`| head`, `| true`): the verdict stays in the exit code.
    for json in [false, true] {
        let mut args = vec!["diff", first.as_str(), second.as_str()];
        args.extend(json.then_some("--json"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_orch"))
            .current_dir(dir)
            .env_remove("ORCH_STORE")
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take()); // closed before orch writes a byte
        assert_eq!(child.wait().unwrap().code(), Some(1), "diff {args:?} into a closed pipe");
    }

    // Exact: different bytes; a run against itself is identical at every level.
    assert_eq!(orch(dir, &["diff", &first, &second, "--exact"]).status.code(), Some(1));
    for level in ["--exact", "--outcomes", "--json"] {
        assert_eq!(orch(dir, &["diff", &first, &first, level]).status.code(), Some(0), "{level}");
    }
}

#[test]
fn diff_of_an_unknown_run_is_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    let out = orch(tmp.path(), &["diff", "nope", "latest"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no run matches \"nope\""));
    let out = orch(tmp.path(), &["diff", "a", "b", "--exact", "--outcomes"]);
    assert_eq!(out.status.code(), Some(2), "conflicting levels are a usage error");
}
