//! orch and job control: a continued orch continues its stopped children and hooks;
//! and the open-file limit, raised for orch, given back to what it starts.

use std::process::{Command, Stdio};
use std::time::Duration;

use super::signals::DefaultSignals;
use super::{kind, poll, Reap, Scratch};

/// orch continued after a stop (a shell's `fg`) continues its children's groups too.
/// Here the child stops itself, as a stop of orch's group stops a child caught in the
/// instant before it leaves that group: once orch gets SIGCONT the child runs on.
/// Without that it would stay stopped, and the run would end only at its timeout
/// (recorded as such).
#[test]
fn a_continued_orch_continues_its_stopped_children() {
    let s = Scratch::new();
    let spec = s.write(
        "stopped.toml",
        r#"
[run]
timeout_ms = 30000

[[task]]
id = "t"
command = ["sh", "-c", "echo $$ > pid.tmp && mv pid.tmp pid && kill -STOP $$ && echo ran"]
"#,
    );
    let child =
        s.command(&["run", &spec]).default_signals().stdin(Stdio::null()).stdout(Stdio::null()).spawn().unwrap();
    let mut child = Reap(child);
    stopped_itself(&s, "pid");
    let status = continue_orch(&mut child);
    assert_eq!(status.code(), Some(0));
    let records = s.records("latest");
    let finished = records.iter().find(|r| kind(r) == "task_finished").unwrap();
    assert_eq!(finished["state"], "succeeded", "{records:?}");
    assert_eq!(s.orch(&["output", "latest", "t"]).code(0).stdout, "ran\n");
}

/// The same for a hook: a `before_finalize` hook that stops itself answers once orch
/// is continued (without that it would sit out its timeout and reject the run).
#[test]
fn a_continued_orch_continues_its_stopped_hooks() {
    let s = Scratch::new();
    let spec = s.write(
        "hook.toml",
        r#"
[run]
hook_timeout_ms = 30000
before_finalize = "echo $$ > pid.tmp && mv pid.tmp pid && kill -STOP $$ && echo accept"

[[task]]
id = "t"
command = "true"
"#,
    );
    let child = s
        .command(&["run", &spec, "--json"])
        .default_signals()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = Reap(child);
    stopped_itself(&s, "pid");
    let status = continue_orch(&mut child);
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.0.stdout.take().unwrap(), &mut stdout).unwrap();
    assert_eq!(status.code(), Some(0), "{stdout}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["finalize"], "accepted", "{v}");
}

/// Started with a soft limit of 64 open files, orch raises its own to the hard limit
/// (it holds a file for each running child: 100 at once would need more than 64) and
/// gives its children and its hooks the 64 back.
#[test]
fn more_children_than_the_soft_open_file_limit_run_and_get_that_limit_back() {
    let hard = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap().1;
    if hard < 256 {
        eprintln!("skipped: the hard open-file limit is {hard}, too low to raise a soft limit of 64 past 100 children");
        return;
    }
    let s = Scratch::new();
    // The hook accepts the run only if it got the limit back.
    let mut spec =
        String::from("[run]\nbefore_finalize = 'test \"$(ulimit -Sn)\" = 64 && echo accept || echo reject'\n\n");
    spec.extend((0..100).map(|i| format!("[[task]]\nid = \"s{i}\"\ncommand = [\"sleep\", \"0.5\"]\n")));
    spec.push_str("[[task]]\nid = \"limit\"\ncommand = [\"sh\", \"-c\", \"ulimit -Sn\"]\n");
    let spec = s.write("many.toml", &spec);
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        "ulimit -Sn 64 && exec \"$0\" \"$@\"",
        env!("CARGO_BIN_EXE_orch"),
        "run",
        &spec,
        "-j",
        "101",
        "--json",
    ]);
    cmd.current_dir(s.path()).env_remove("ORCH_STORE").env_remove("RUST_LOG").stdin(Stdio::null());
    let out = cmd.output().unwrap();
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(v["states"]["succeeded"], 101, "{}", String::from_utf8_lossy(&out.stderr));
    assert!(v["peak_concurrency"].as_u64().unwrap() > 64, "the run never held more than 64 children: {v}");
    assert_eq!(s.orch(&["output", "latest", "limit"]).code(0).stdout.trim(), "64");
    assert_eq!(v["outcome"], "succeeded", "the before_finalize hook did not get the limit back: {v}");
}

/// Waits for the process that wrote its pid to `file` (in the scratch dir) to stop
/// itself; its pid.
fn stopped_itself(s: &Scratch, file: &str) -> u32 {
    let pid: u32 = poll("the pid file", Duration::from_secs(10), || {
        std::fs::read_to_string(s.path().join(file)).ok()?.trim().parse().ok()
    });
    poll("the process to stop itself", Duration::from_secs(10), || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        (stat.rsplit(") ").next()?.starts_with('T')).then_some(())
    });
    pid
}

/// Sends SIGCONT to orch, and waits for it to exit.
fn continue_orch(orch: &mut Reap) -> std::process::ExitStatus {
    assert!(Command::new("kill").args(["-CONT", &orch.0.id().to_string()]).status().unwrap().success());
    poll("orch to exit", Duration::from_secs(40), || orch.0.try_wait().unwrap())
}
