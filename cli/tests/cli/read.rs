//! Reading commands: `log`, `ls`, `show`, `output`, `replay` (and `--at`), a closed pipe.

use std::process::Stdio;

use serde_json::Value;

use super::{example, kind, u, Scratch, TWO_TASKS};

#[test]
fn reading_commands_print_text_and_json() {
    let s = Scratch::new();
    let out = s.orch(&["ls"]);
    out.code(0).stdout_has("no runs in");
    assert_eq!(s.orch(&["ls", "--json"]).code(0).json(), Value::Array(vec![]));

    s.orch(&["run", &example("retries.toml"), "--sim"]).code(1);
    let id = &s.run_ids()[0];

    let text = s.orch(&["log", "latest", "--text"]);
    text.code(0);
    let lines: Vec<&str> = text.stdout.lines().collect();
    assert!(lines.len() > 10);
    for (seq, l) in lines.iter().enumerate() {
        let first = l.split_whitespace().next().unwrap();
        assert_eq!(first, seq.to_string(), "line {seq} does not start with its seq: {l}");
    }
    assert!(lines[0].contains("run_started"), "{}", lines[0]);
    assert!(lines.last().unwrap().contains("run_finished outcome=failed"), "{}", lines.last().unwrap());

    let records = s.records("latest");
    assert_eq!(records.len(), lines.len());
    for (seq, r) in records.iter().enumerate() {
        assert_eq!(u(&r["seq"]), seq as u64);
    }
    let from = s.orch(&["log", "latest", "--from", "5"]);
    assert_eq!(from.code(0).stdout.lines().count(), records.len() - 5);

    let ls = s.orch(&["ls", "--json"]).code(0).json();
    assert_eq!(ls[0]["run"], id.as_str());
    assert_eq!(ls[0]["outcome"], "failed");
    assert_eq!(ls[0]["tasks"], 4);
    s.orch(&["ls"]).code(0).stdout_has(id).stdout_has("failed");

    let show = s.orch(&["show", "latest", "--json"]).code(0).json();
    assert_eq!(show["outcome"], "failed");
    let detail = show["tasks_detail"].as_array().unwrap();
    let states: Vec<(&str, &str)> =
        detail.iter().map(|t| (t["task"].as_str().unwrap(), t["state"].as_str().unwrap())).collect();
    assert_eq!(
        states,
        [("download", "succeeded"), ("import", "succeeded"), ("publish", "exhausted"), ("announce", "blocked")]
    );
    s.orch(&["show", "latest"]).code(0).stdout_has("publish").stdout_has("exhausted");
}

#[test]
fn replay_of_a_good_run_succeeds_and_at_explains_the_state() {
    let s = Scratch::new();
    let spec = s.write("ok.toml", TWO_TASKS);
    let run = s.orch(&["run", &spec, "--json"]).code(0).json();
    let out = s.orch(&["replay", "latest"]);
    out.code(0).stdout_has("replay ok: ").stdout_has("run succeeded: 2 tasks");
    out.stdout_has(&format!("log digest {}", run["log_digest"].as_str().unwrap()));

    let v = s.orch(&["replay", "latest", "--json"]).code(0).json();
    assert_eq!(v["replay"], "ok");
    assert_eq!(v["log_digest"], run["log_digest"]);

    // Right after `a` was dispatched: `a` runs, `b` waits for it.
    let records = s.records("latest");
    let seq = records.iter().position(|r| kind(r) == "attempt_dispatched").unwrap();
    let at = s.orch(&["replay", "latest", "--at", &seq.to_string()]);
    at.code(0).stdout_has(&format!("at seq {seq}")).stdout_has("running (1):\n  a attempt 1").stdout_has("b [");
    let snap = s.orch(&["replay", "latest", "--at", &seq.to_string(), "--json"]).code(0).json();
    assert_eq!(snap["running"][0]["task"], "a");
    assert_eq!(snap["waiting"][0]["task"], "b");
    assert!(snap["waiting"][0]["reason"].as_str().unwrap().contains("after a"), "{snap}");

    s.orch(&["replay", "latest", "--at", "9999"]).code(2).stderr_has("--at 9999");
}

#[test]
fn log_into_a_closed_pipe_exits_cleanly() {
    let s = Scratch::new();
    s.orch(&["run", &example("retries.toml"), "--sim"]).code(1);
    // The reading end is closed before orch writes its first line: the write fails with
    // EPIPE, which must be a quiet exit 0, not an error or a panic.
    let mut child = s.command(&["log", "latest"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    assert!(stderr.is_empty(), "stderr: {stderr}");
}

#[test]
fn output_prints_what_an_attempt_wrote() {
    let s = Scratch::new();
    let spec = s.write(
        "out.toml",
        r#"
[[task]]
id = "a"
command = "sh -c 'echo out; echo err >&2'"

[[task]]
id = "r"
command = "sh -c 'echo try $ORCH_ATTEMPT; exit 3'"
retry = { max_attempts = 2 }

[[task]]
id = "quiet"
command = "true"
"#,
    );
    s.orch(&["run", &spec]).code(1);
    assert_eq!(s.orch(&["output", "latest", "a"]).code(0).stdout, "out\nerr\n");
    // The last attempt unless another is asked for.
    assert_eq!(s.orch(&["output", "latest", "r"]).code(0).stdout, "try 2\n");
    assert_eq!(s.orch(&["output", "latest", "r", "--attempt", "1"]).code(0).stdout, "try 1\n");
    assert_eq!(s.orch(&["output", "latest", "quiet"]).code(0).stdout, "");
    // A run named by its log directory finds the blobs of the store around it.
    let log = format!(".orch/runs/{}/log", s.run_ids()[0]);
    assert_eq!(s.orch(&["output", &log, "a"]).code(0).stdout, "out\nerr\n");

    // ... also when named from inside it (`.`, `../log`: no parents as typed), from
    // anywhere, with the default store somewhere else.
    let inside = |reference: &str| {
        let mut cmd = s.command(&["output", reference, "a"]);
        let out = cmd.current_dir(s.path().join(&log)).stdin(std::process::Stdio::null()).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    assert_eq!(inside("."), (Some(0), "out\nerr\n".to_string()));
    assert_eq!(inside("../log"), (Some(0), "out\nerr\n".to_string()));

    // A blob that is not what the log says is said to be so, and none of it is printed:
    // of the same length (its digest tells) or cut short (its length does).
    let digest = orch_engine::record::Digest::of(b"out\nerr\n").hex();
    for (tampered, says) in
        [("out\nERR\n", "does not match the digest its attempt recorded"), ("out\n", "is 4 bytes, not the 8")]
    {
        std::fs::write(s.path().join(".orch/blobs").join(&digest), tampered).unwrap();
        let damaged = s.orch(&["output", "latest", "a"]);
        damaged.code(2).stderr_has(says);
        assert_eq!(damaged.stdout, "", "nothing of a damaged blob is printed");
    }

    s.orch(&["output", "latest", "r", "--attempt", "3"]).code(2).stderr_has("no attempt 3 (attempts: [1, 2])");
    s.orch(&["output", "latest", "nope"]).code(2).stderr_has("task \"nope\": no attempt of it");
    s.orch(&["run", "--sim", &s.write("sim.toml", "[[task]]\nid = \"s\"\nsim = { stdout = \"hi\" }\n")]).code(0);
    s.orch(&["output", "latest", "s"]).code(2).stderr_has("a simulated run stores no outputs");
}

/// A delegation chain deeper than any call stack: `show` walks the tree without
/// recursion (a release build overflowed its stack at 100,000 levels), and its
/// indentation stops growing (50,000 levels used to print 2.5 GB of spaces).
#[test]
fn show_prints_a_chain_50000_deep() {
    let s = Scratch::new();
    let mut tasks: Vec<String> = vec![r#"{"id":"t0"}"#.into()];
    tasks.extend((1..49_999).map(|i| format!(r#"{{"id":"t{i}","parent":"t{}"}}"#, i - 1)));
    tasks.push(r#"{"id":"t49999","parent":"t49998","command":"true"}"#.into());
    let spec = s.write("deep.json", &format!(r#"{{"task":[{}]}}"#, tasks.join(",")));
    s.orch(&["run", "--sim", &spec]).code(0);
    let out = s.orch(&["show", "latest"]);
    out.code(0);
    let last = out.stdout.lines().find(|l| l.contains("t49999 ")).expect("the deepest task is shown");
    assert!(last.starts_with(&format!("{}(49999) t49999", "  ".repeat(33))), "{last}");
}

/// Following a run whose engine died (no writer, no `run_finished`): `log --follow` and
/// `show --watch` stop, say so on stderr and exit 1, so that a script can tell it from
/// a run that finished (0, whatever its outcome).
#[test]
fn followers_of_a_run_whose_engine_died_exit_1() {
    let s = Scratch::new();
    s.orch(&["run", &example("retries.toml"), "--sim"]).code(1);
    let id = s.run_ids().remove(0);
    s.orch(&["log", &id, "--follow", "--from", "100000"]).code(0);
    s.orch(&["show", &id, "--watch"]).code(0);

    let records = s.rewrite_log(&id, |records| records.truncate(records.len() - 3));

    let follow = s.orch(&["log", &id, "--follow"]);
    follow.code(1).stderr_has("the run's engine is gone and the run did not finish");
    assert_eq!(follow.stdout.lines().count(), records.len(), "every record printed first");
    s.orch(&["show", &id, "--watch"]).code(1).stderr_has(&format!("`orch resume {id}` continues it"));
    s.orch(&["log", &id]).code(0);
}
