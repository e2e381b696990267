//! `orch run`: exit codes, the summary, `--json`, simulated example runs.

use super::{example, Scratch, TWO_TASKS};

#[test]
fn a_succeeding_run_exits_0_with_a_summary() {
    let s = Scratch::new();
    let spec = s.write("ok.toml", TWO_TASKS);
    let out = s.orch(&["run", &spec]);
    out.code(0)
        .stdout_has("succeeded a")
        .stdout_has("succeeded b")
        .stdout_has("run succeeded: 2 tasks (2 succeeded)")
        .stdout_has("attempts 2, retries 0, timeouts 0")
        .stdout_has("log digest ");
    let ids = s.run_ids();
    assert_eq!(ids.len(), 1);
    out.stdout_has(&format!("run {}", ids[0]));
    // The store holds the log and a copy of the spec.
    assert_eq!(
        std::fs::read_to_string(s.path().join(".orch/runs").join(&ids[0]).join("spec.toml")).unwrap(),
        TWO_TASKS
    );
}

#[test]
fn a_failing_run_exits_1() {
    let s = Scratch::new();
    let spec = s.write("fail.toml", "[[task]]\nid = \"bad\"\ncommand = \"false\"\n\n[[task]]\nid = \"next\"\ncommand = \"true\"\nafter = [\"bad\"]\n");
    s.orch(&["run", &spec])
        .code(1)
        .stdout_has("failed    bad (exit code 1)")
        .stdout_has("blocked   next")
        .stdout_has("run failed: 2 tasks (1 blocked, 1 failed)");
}

#[test]
fn run_json_prints_exactly_one_object() {
    let s = Scratch::new();
    let spec = s.write("ok.toml", TWO_TASKS);
    let out = s.orch(&["run", &spec, "--json"]);
    let v = out.code(0).json();
    assert_eq!(v["outcome"], "succeeded");
    assert_eq!(v["tasks"], 2);
    assert_eq!(v["states"]["succeeded"], 2);
    assert_eq!(v["states"]["failed"], 0);
    assert_eq!(v["attempts"], 2);
    assert_eq!(v["retries"], 0);
    let run = v["run"].as_str().expect("run id");
    assert_eq!(s.run_ids(), [run]);
    let digest = v["log_digest"].as_str().expect("digest");
    assert_eq!(digest.len(), 64);
    assert!(digest.chars().all(|c| c.is_ascii_hexdigit()));
    // The digest printed is the log's: verify agrees.
    let verified = s.orch(&["verify", run, "--json"]).code(0).json();
    assert_eq!(verified["digest"], digest);
    assert_eq!(verified["records"], v["records"]);
}

#[test]
fn simulated_example_runs_report_retries_and_exit_codes() {
    let s = Scratch::new();
    let v = s.orch(&["run", &example("retries.toml"), "--sim", "--json"]).code(1).json();
    assert_eq!(v["outcome"], "failed");
    assert_eq!(v["attempts"], 7);
    assert_eq!(v["retries"], 4);
    assert_eq!(v["timeouts"], 1);
    assert_eq!(v["states"]["exhausted"], 1);
    assert_eq!(v["states"]["blocked"], 1);
    // Simulated runs are deterministic: same spec and seed, same log.
    let again = s.orch(&["run", &example("retries.toml"), "--sim", "--json"]).code(1).json();
    assert_eq!(again["log_digest"], v["log_digest"]);
    assert_ne!(again["run"], v["run"]);

    s.orch(&["run", &example("waves.toml"), "--sim"]).code(0).stdout_has("run succeeded: 7 tasks");
    s.orch(&["run", &example("dag.json"), "--sim"]).code(0).stdout_has("run succeeded: 5 tasks (5 succeeded)");
    for id in s.run_ids() {
        s.orch(&["replay", &id]).code(0).stdout_has("replay ok");
    }
}
