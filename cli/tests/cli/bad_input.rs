//! Bad input: exit 2, the message names the place, nothing half-written.

use super::{Scratch, TWO_TASKS};

#[test]
fn bad_specs_exit_2_naming_file_and_line() {
    let s = Scratch::new();
    let unknown = s.write("unknown.toml", "[[task]]\nid = \"a\"\ncommand = \"true\"\nbogus = 1\n");
    s.orch(&["run", &unknown]).code(2).stderr_has("unknown.toml:4:").stderr_has("unknown field `bogus`");

    let broken = s.write("broken.toml", "[[task]]\nid = \"a\"\ncommand = \"true\n");
    s.orch(&["run", &broken]).code(2).stderr_has("broken.toml:3:");

    let cycle =
        s.write("cycle.toml", "[[task]]\nid = \"a\"\nafter = [\"b\"]\n\n[[task]]\nid = \"b\"\nafter = [\"a\"]\n");
    s.orch(&["run", &cycle]).code(2).stderr_has("cycle.toml:").stderr_has("dependency cycle");

    // Settings that would apply to nothing, and an exit code no process has.
    let group = s.write(
        "group.toml",
        "[[task]]\nid = \"g\"\ntimeout_ms = 5\nretry = { max_attempts = 3 }\n\n\
         [[task]]\nid = \"c\"\nparent = \"g\"\nsim = { outcomes = [\"fail:999\"] }\n",
    );
    let out = s.orch(&["run", &group, "--sim"]);
    out.code(2)
        .stderr_has("group.toml:3: task \"g\" runs nothing itself")
        .stderr_has("timeout_ms would apply to nothing");
    out.stderr_has("group.toml:4:").stderr_has("retry would apply to nothing");
    out.stderr_has("group.toml:9:").stderr_has("\"fail:999\": a process exits with a code from 1 to 255");

    // Valid but empty: nothing could ever run.
    for (name, text) in [("empty.toml", ""), ("only-run.toml", "[run]\nname = \"x\"\n")] {
        let empty = s.write(name, text);
        s.orch(&["run", &empty]).code(2).stderr_has(name).stderr_has("declares no tasks");
        s.orch(&["run", &empty, "--sim"]).code(2).stderr_has("declares no tasks");
    }
    s.orch(&["run", "--tasks", "[]"]).code(2).stderr_has("--tasks: the workflow declares no tasks");
    // A syntax error in `--tasks` is placed in the text as given (column 13: the comma).
    s.orch(&["run", "--tasks", r#"[{"id":"a"},]"#]).code(2).stderr_has("--tasks:1:13: trailing comma");

    let missing = s.orch(&["run", "no-such-workflow.toml"]);
    missing.code(2).stderr_has("no-such-workflow.toml");
    assert!(missing.stdout.is_empty(), "stdout: {}", missing.stdout);
    // None of these created a run.
    assert!(s.run_ids().is_empty(), "runs were created: {:?}", s.run_ids());
}

#[test]
fn bad_arguments_exit_2() {
    let s = Scratch::new();
    let spec = s.write("ok.toml", TWO_TASKS);
    s.orch(&["run", &spec, "--durability", "sometimes"])
        .code(2)
        .stderr_has("--durability")
        .stderr_has("always, batch, batch:MS or never");
    s.orch(&["run", &spec, "--durability", "batch:0"]).code(2).stderr_has("1 to 10000 milliseconds");
    // Flags are checked before the file is read.
    s.orch(&["run", "no-such.toml", "--durability", "sometimes"]).code(2).stderr_has("--durability");
    s.orch(&["run", &spec, "-j", "0"]).code(2).stderr_has("--max-concurrency");
    s.orch(&["run"]).code(2).stderr_has("<FILE>");
    s.orch(&["frobnicate"]).code(2);
    assert!(s.run_ids().is_empty());
}

#[test]
fn every_command_explains_itself() {
    let s = Scratch::new();
    s.orch(&["--help"]).code(0).stdout_has("Usage: orch");
    for cmd in ["run", "replay", "log", "verify", "ls", "show"] {
        let out = s.orch(&[cmd, "--help"]);
        out.code(0).stdout_has(&format!("Usage: orch {cmd}"));
    }
}
