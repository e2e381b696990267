//! Every spec validation rule, one bad file each from `fixtures/spec-errors/`: the place
//! (`file:line`, or a path for JSON) and the message users will see.

use std::path::PathBuf;

use orch_engine::spec::{self, Error, Format, Problem, Spec};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/spec-errors").join(name)
}

/// Parses a fixture under its bare name, so places read `name:line`.
fn parse(name: &str) -> Result<Spec, Error> {
    let text = std::fs::read_to_string(fixture(name)).unwrap_or_else(|e| panic!("reading fixture {name}: {e}"));
    let format = if name.ends_with(".json") { Format::Json } else { Format::Toml };
    spec::parse(&text, name, format)
}

/// The semantic problems of a fixture, as `place: message` lines.
fn problems(name: &str) -> Vec<String> {
    match parse(name) {
        Err(Error::Invalid(problems)) => problems.iter().map(Problem::to_string).collect(),
        other => panic!("{name}: expected validation problems, got {other:?}"),
    }
}

fn syntax(name: &str) -> String {
    match parse(name) {
        Err(Error::Syntax(problem)) => problem.to_string(),
        other => panic!("{name}: expected a syntax error, got {other:?}"),
    }
}

#[test]
fn empty_and_malformed_ids() {
    assert_eq!(
        problems("bad-id.toml"),
        [
            "bad-id.toml:3: a task id is empty",
            "bad-id.toml:7: task id \"two words\" contains whitespace or control characters",
        ]
    );
}

#[test]
fn duplicate_id_points_at_the_first() {
    assert_eq!(
        problems("duplicate-id.toml"),
        ["duplicate-id.toml:11: duplicate task id \"build\" (first declared at duplicate-id.toml:2)"]
    );
}

#[test]
fn unknown_dependency() {
    assert_eq!(
        problems("unknown-after.toml"),
        ["unknown-after.toml:8: task \"test\" is after \"lint\", which is not a task"]
    );
}

#[test]
fn self_dependency() {
    assert_eq!(problems("self-after.toml"), ["self-after.toml:4: task \"build\" lists itself in after"]);
}

#[test]
fn repeated_dependency_points_at_the_second_entry() {
    assert_eq!(
        problems("duplicate-after.toml"),
        ["duplicate-after.toml:10: task \"test\" lists \"build\" twice in after"]
    );
}

#[test]
fn unknown_parent() {
    assert_eq!(
        problems("unknown-parent.toml"),
        ["unknown-parent.toml:4: task \"shard-1\" has parent \"tests\", which is not a task"]
    );
}

#[test]
fn parent_loop() {
    assert_eq!(
        problems("parent-loop.toml"),
        ["parent-loop.toml:4: parent chain loops: a → c → b → a (each is the parent of the one before)"]
    );
}

#[test]
fn wave_with_an_unknown_task() {
    assert_eq!(
        problems("wave-unknown-task.toml"),
        ["wave-unknown-task.toml:6: wave 1 of the run lists \"b\", which is not a task"]
    );
}

#[test]
fn task_in_two_waves() {
    assert_eq!(
        problems("two-waves.toml"),
        ["two-waves.toml:15: task \"b\" is in two waves: wave \"second\", and wave \"first\" (at two-waves.toml:11)"]
    );
}

#[test]
fn wave_with_an_unknown_parent() {
    assert_eq!(
        problems("wave-unknown-parent.toml"),
        ["wave-unknown-parent.toml:6: the parent of a wave, \"group\", is not a task"]
    );
}

#[test]
fn task_in_a_wave_of_another_parent() {
    assert_eq!(
        problems("wave-parent-mismatch.toml"),
        ["wave-parent-mismatch.toml:16: task \"child\" has parent \"q\" (at wave-parent-mismatch.toml:12), but is listed in wave 1 of task \"p\""]
    );
}

#[test]
fn empty_wave() {
    assert_eq!(problems("empty-wave.toml"), ["empty-wave.toml:9: wave 2 of the run lists no tasks"]);
}

#[test]
fn child_missing_from_the_waves_of_its_parent() {
    assert_eq!(
        problems("missing-from-waves.toml"),
        ["missing-from-waves.toml:6: task \"lint\" is in no wave, but the run has [[wave]]s: list it in one of them"]
    );
}

#[test]
fn child_of_a_task_missing_from_its_waves() {
    let text = r#"
[[task]]
id = "tests"

[[task]]
id = "unit"
command = "make unit"

[[task]]
id = "e2e"
parent = "tests"
command = "make e2e"

[[wave]]
parent = "tests"
tasks = ["unit"]
"#;
    let error = spec::parse(text, "flow.toml", Format::Toml).unwrap_err();
    assert_eq!(
        error.to_string(),
        "flow.toml:9: task \"e2e\" is in no wave, but its parent \"tests\" has [[wave]]s: list it in one of them"
    );
}

#[test]
fn caps_below_one() {
    assert_eq!(
        problems("caps.toml"),
        [
            "caps.toml:2: run.max_concurrency must be at least 1",
            "caps.toml:3: run.priority_caps.P1 must be at least 1",
            "caps.toml:11: wave 1 of the run: max_concurrency must be at least 1",
        ]
    );
}

#[test]
fn retry_policy() {
    assert_eq!(
        problems("retry.toml"),
        [
            "retry.toml:4: task \"a\": retry.max_attempts must be at least 1 (1 means no retry)",
            "retry.toml:14: task \"b\": retry.max_ms (500) is less than retry.base_ms (1000)",
        ]
    );
}

#[test]
fn zero_timeouts() {
    assert_eq!(
        problems("timeouts.toml"),
        [
            "timeouts.toml:2: run.timeout_ms must be at least 1",
            "timeouts.toml:3: run.hook_timeout_ms must be at least 1",
            "timeouts.toml:8: task \"a\": timeout_ms must be at least 1"
        ]
    );
}

#[test]
fn empty_commands() {
    assert_eq!(
        problems("commands.toml"),
        [
            "commands.toml:3: task \"argv\" has an empty command (an argv list needs at least the program)",
            "commands.toml:7: task \"shell\" has a blank command",
            "commands.toml:11: task \"program\": the program (the first item of command) is blank",
        ]
    );
}

/// A child gets its argv, environment and cwd as C strings: a NUL byte in any of them
/// is refused at load, not when the task runs.
#[test]
fn nul_bytes_where_a_child_needs_c_strings() {
    assert_eq!(
        problems("nul-bytes.toml"),
        [
            "nul-bytes.toml:3: task \"argv\": command item 1 contains a NUL byte",
            "nul-bytes.toml:7: task \"shell\": command contains a NUL byte",
            "nul-bytes.toml:12: task \"env\" has an invalid environment variable name \"A=B\"",
            "nul-bytes.toml:12: task \"env\": environment variable OK contains a NUL byte",
        ]
    );
    // A rule for specs written now (logs of before it record such a task failing to
    // start), so checked after the others.
    assert_eq!(problems("nul-cwd.toml"), ["nul-cwd.toml:4: task \"cwd\": cwd contains a NUL byte"]);
    // `validate` (which the fold runs again on the spec a log carries) lets it be, and
    // so does the fold of a submitted task: logs of before the rule still fold.
    let old: Spec = serde_json::from_str(r#"{"task": [{"id": "cwd", "command": "true", "cwd": "a\u0000b"}]}"#).unwrap();
    assert!(spec::validate(&old, &spec::Unplaced("old")).is_ok());
    assert!(spec::check_new_task(&old.tasks[0]).unwrap_err().contains("cwd contains a NUL byte"));
}

#[test]
fn nothing_to_run_unless_simulated() {
    assert_eq!(
        problems("nothing-to-run.toml"),
        ["nothing-to-run.toml:2: task \"group\" has nothing to run (no command, no children)"]
    );
}

#[test]
fn hang_that_nothing_ends() {
    assert_eq!(
        problems("hang.toml"),
        ["hang.toml:6: task \"stuck\" is simulated to hang but nothing would end it: set timeout_ms on the task or the run"]
    );
    // A timeout on the task, or on the run, ends the hang.
    let text = std::fs::read_to_string(fixture("hang.toml")).unwrap_or_default();
    let with_task_timeout =
        text.replace("command = \"sleep infinity\"", "command = \"sleep infinity\"\ntimeout_ms = 10");
    assert!(spec::parse(&with_task_timeout, "hang.toml", Format::Toml).is_ok());
    let with_run_timeout = format!("[run]\ntimeout_ms = 1000\n{text}");
    assert!(spec::parse(&with_run_timeout, "hang.toml", Format::Toml).is_ok());
}

#[test]
fn dependency_cycle_is_printed() {
    assert_eq!(problems("cycle.toml"), ["cycle.toml:4: dependency cycle: a → c → b → a"]);
}

#[test]
fn waiting_for_your_own_parent_is_a_cycle() {
    assert_eq!(
        problems("cycle-parent.toml"),
        ["cycle-parent.toml:10: dependency cycle: release → upload → release (release is done only when its child upload is)"]
    );
}

#[test]
fn waiting_for_a_later_wave_is_a_cycle() {
    assert_eq!(
        problems("cycle-waves.toml"),
        ["cycle-waves.toml:5: dependency cycle: early → late → early (late waits for wave 1 of the run, which holds early, to close)"]
    );
}

#[test]
fn waiting_for_your_own_child_is_a_cycle() {
    let text = r#"
[[task]]
id = "parent"
command = "true"
after = ["child"]

[[task]]
id = "child"
command = "true"
parent = "parent"
"#;
    let error = spec::parse(text, "flow.toml", Format::Toml).unwrap_err();
    assert_eq!(
        error.to_string(),
        "flow.toml:5: dependency cycle: parent → child → parent (child starts after its parent parent's command)"
    );
}

#[test]
fn separate_cycles_are_each_reported() {
    let text = r#"
[[task]]
id = "a"
command = "true"
after = ["b"]

[[task]]
id = "b"
command = "true"
after = ["a"]

[[task]]
id = "c"
command = "true"
after = ["d"]

[[task]]
id = "d"
command = "true"
after = ["c"]
"#;
    let error = spec::parse(text, "flow.toml", Format::Toml).unwrap_err();
    assert_eq!(
        error.to_string(),
        "flow.toml:5: dependency cycle: a → b → a\nflow.toml:15: dependency cycle: c → d → c"
    );
}

#[test]
fn waves_in_the_right_order_are_fine() {
    let text = r#"
[[task]]
id = "early"
command = "true"

[[task]]
id = "late"
command = "true"
after = ["early"]

[[wave]]
tasks = ["early"]

[[wave]]
tasks = ["late"]
"#;
    assert!(spec::parse(text, "flow.toml", Format::Toml).is_ok());
}

#[test]
fn syntax_errors_name_the_line() {
    assert_eq!(
        syntax("unknown-field.toml"),
        "unknown-field.toml:4: unknown field `retries`, expected one of `id`, `title`, `cmd`, `command`, `env`, `cwd`, \
         `after`, `parent`, `priority`, `timeout_ms`, `retry`, `cost`, `hook`, `wake_policy`, `on_child_failure`, `on_stop`, `sim`"
    );
    assert_eq!(syntax("wrong-type.toml"), "wrong-type.toml:2: invalid type: string \"four\", expected u32");
    assert_eq!(syntax("bad-syntax.toml"), "bad-syntax.toml:3: invalid basic string");
    assert_eq!(
        syntax("bad-outcome.toml"),
        "bad-outcome.toml:5: unknown simulated outcome \"explode\" (expected succeed, fail, fail:CODE or hang)"
    );
}

#[test]
fn json_problems_are_placed_by_path() {
    assert_eq!(
        problems("unknown-after.json"),
        ["unknown-after.json: task[1].after[1]: task \"test\" is after \"lint\", which is not a task"]
    );
    assert_eq!(problems("cycle.json"), ["cycle.json: task[0].after[0]: dependency cycle: a → b → a"]);
}

#[test]
fn json_syntax_errors_name_the_line_and_column() {
    assert_eq!(
        syntax("unknown-field.json"),
        "unknown-field.json:4:45: unknown field `retries`, expected one of `id`, `title`, `cmd`, `command`, `env`, `cwd`, \
         `after`, `parent`, `priority`, `timeout_ms`, `retry`, `cost`, `hook`, `wake_policy`, `on_child_failure`, `on_stop`, `sim`"
    );
    let error = spec::parse("{\"tasks\": [", "flow.json", Format::Json).unwrap_err();
    assert_eq!(error.to_string(), "flow.json:1:11: EOF while parsing a list");
    // On one line, the column is what finds the place.
    let error = spec::parse("{\"task\":[{\"id\":\"a\"},]}", "tasks.json", Format::Json).unwrap_err();
    assert_eq!(error.to_string(), "tasks.json:1:21: trailing comma");
    // A list is not a workflow (serde would read it as the fields in order).
    let error = spec::parse("\n  [{\"id\":\"a\"}]", "tasks.json", Format::Json).unwrap_err();
    assert!(error.to_string().starts_with("tasks.json:2:3: a workflow is a JSON object"), "{error}");
}

#[test]
fn load_picks_the_format_by_extension() {
    let error = spec::load(&fixture("unknown-after.json")).unwrap_err();
    assert!(error
        .to_string()
        .ends_with("unknown-after.json: task[1].after[1]: task \"test\" is after \"lint\", which is not a task"));
    let error = spec::load(&fixture("unknown-after.toml")).unwrap_err();
    assert!(error.to_string().ends_with("unknown-after.toml:8: task \"test\" is after \"lint\", which is not a task"));
}

#[test]
fn load_names_a_missing_file() {
    let path = fixture("no-such-file.toml");
    match spec::load(&path) {
        Err(Error::Io { path: named, .. }) => assert_eq!(named, path.display().to_string()),
        other => panic!("expected an io error, got {other:?}"),
    }
}

#[test]
fn specs_from_a_log_are_placed_by_path() {
    let spec = Spec {
        tasks: vec![spec::TaskSpec { id: "a".into(), after: vec!["zz".into()], ..Default::default() }],
        ..Default::default()
    };
    let error = spec::validate(&spec, &spec::Unplaced("run 7f3a")).unwrap_err();
    assert_eq!(
        error.to_string(),
        "run 7f3a: task[0].after[0]: task \"a\" is after \"zz\", which is not a task\n\
         run 7f3a: task[0]: task \"a\" has nothing to run (no command, no children)"
    );
}

#[test]
fn fields_written_inline_or_dotted_are_located() {
    let text = r#"
[run.priority_caps]
P2 = 0

[[task]]
id = "a"
command = "true"
retry.max_attempts = 0
sim.outcomes = ["hang"]
"#;
    let error = spec::parse(text, "flow.toml", Format::Toml).unwrap_err();
    assert_eq!(
        error.to_string(),
        "flow.toml:3: run.priority_caps.P2 must be at least 1\n\
         flow.toml:8: task \"a\": retry.max_attempts must be at least 1 (1 means no retry)\n\
         flow.toml:9: task \"a\" is simulated to hang but nothing would end it: set timeout_ms on the task or the run"
    );
}

#[test]
fn several_problems_at_once() {
    insta::assert_snapshot!(problems("many-problems.toml").join("\n"));
}
