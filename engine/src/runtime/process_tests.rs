//! Tests of the process executor against real children: what a child gets (argv, env,
//! cwd, stdin, its own process group), what is reported when it ends (code, signal,
//! output), and that the reaper reaps only the children it was given.

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::time::Duration;

use super::process::{self, AttemptNumber, ChildEnv, Exit, OutputFiles, Started};
use super::reaper;
use crate::record::ExitStatus;
use crate::spec::{Command, TaskSpec};

struct Fixture {
    dir: tempfile::TempDir,
    outputs: OutputFiles,
    env: ChildEnv,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("blobs/tmp")).unwrap();
        let outputs = OutputFiles::new(&dir.path().join("blobs"));
        let env =
            ChildEnv { run_id: "run-1".into(), store: dir.path().to_path_buf(), socket: dir.path().join("s.sock") };
        Fixture { dir, outputs, env }
    }

    fn blobs(&self) -> std::path::PathBuf {
        self.dir.path().join("blobs")
    }

    fn start(&self, task: &TaskSpec) -> (Started, mpsc::Receiver<Exit>) {
        let (tx, rx) = mpsc::channel();
        let number = AttemptNumber { counted: 1, id: 2 };
        let started = process::spawn(task, number, &self.env, &self.outputs, &self.blobs(), move |exit| {
            tx.send(exit).unwrap();
        });
        (started, rx)
    }

    /// Runs `task` to its end: its exit and its output as text.
    fn run(&self, task: &TaskSpec) -> (Exit, String) {
        let (_, rx) = self.start(task);
        let exit = recv(&rx);
        let output = if exit.output_bytes == 0 {
            String::new()
        } else {
            std::fs::read_to_string(self.blobs().join(exit.output.hex())).expect("the output is stored")
        };
        (exit, output)
    }
}

/// The exit sent to `rx`, reaping as a run's SIGCHLD task would (polled here: tests
/// have no runtime).
fn recv(rx: &mpsc::Receiver<Exit>) -> Exit {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        reaper::reap_ready();
        match rx.recv_timeout(Duration::from_millis(2)) {
            Ok(exit) => return exit,
            Err(_) if std::time::Instant::now() < deadline => {}
            Err(e) => panic!("the exit is not reported: {e}"),
        }
    }
}

fn sh(id: &str, script: &str) -> TaskSpec {
    TaskSpec {
        id: id.into(),
        command: Some(Command::Argv(vec!["sh".into(), "-c".into(), script.into()])),
        ..TaskSpec::default()
    }
}

#[test]
fn a_child_gets_its_env_cwd_empty_stdin_and_one_output_for_stdout_and_stderr() {
    let f = Fixture::new();
    let cwd = f.dir.path().join("work");
    std::fs::create_dir(&cwd).unwrap();
    let mut task = sh(
        "t1",
        "echo \"$X $ORCH_RUN_ID $ORCH_TASK_ID $ORCH_ATTEMPT $ORCH_ATTEMPT_ID $ORCH_STORE\"; pwd; \
         echo in:$(cat); echo err >&2",
    );
    task.more_mut().env = BTreeMap::from([("X".into(), "x1".into()), ("ORCH_TASK_ID".into(), "not-this".into())]);
    task.more_mut().cwd = Some(cwd.to_str().unwrap().into());
    let (exit, output) = f.run(&task);
    assert_eq!(exit.status, ExitStatus::Code(0));
    let store = f.dir.path().display();
    assert_eq!(output, format!("x1 run-1 t1 1 2 {store}\n{}\nin:\nerr\n", cwd.display()));
    assert_eq!(exit.output_bytes, output.len() as u64);
}

#[test]
fn exit_codes_and_signals_are_reported_as_such() {
    let f = Fixture::new();
    assert_eq!(f.run(&sh("a", "exit 3")).0.status, ExitStatus::Code(3));
    assert_eq!(f.run(&sh("b", "kill -TERM $$")).0.status, ExitStatus::Signal(15));
    // A real-time signal is an exit like any other.
    assert_eq!(f.run(&sh("c", "kill -40 $$")).0.status, ExitStatus::Signal(40));
    // SIGPIPE is back to its default in the child (orch itself ignores it).
    assert_eq!(f.run(&sh("d", "kill -PIPE $$")).0.status, ExitStatus::Signal(13));
}

#[test]
fn a_command_that_cannot_start_exits_127_with_a_message() {
    let f = Fixture::new();
    let task =
        TaskSpec { id: "x".into(), command: Some(Command::Shell("/no/such/program".into())), ..TaskSpec::default() };
    let (exit, output) = f.run(&task);
    assert_eq!(exit.status, ExitStatus::Code(process::SPAWN_FAILED_CODE));
    assert!(output.starts_with("orch: cannot start \"/no/such/program\""), "{output}");
    let mut bad_cwd = sh("y", "true");
    bad_cwd.more_mut().cwd = Some("/no/such/dir".into());
    let (exit, output) = f.run(&bad_cwd);
    assert_eq!(exit.status, ExitStatus::Code(process::SPAWN_FAILED_CODE));
    assert!(output.contains("cannot change to directory \"/no/such/dir\""), "{output}");
    // The output file survives a failed start and serves the next child.
    assert_eq!(f.run(&sh("z", "echo fine")).1, "fine\n");
}

/// Runs a task whose program this test has just written: again while its exec finds
/// the file busy (ETXTBSY: a child another test thread cloned in the instant the file
/// was open for writing may hold it until that child's exec).
fn run_written(f: &Fixture, task: &TaskSpec) -> (process::Exit, String) {
    for _ in 0..50 {
        let (exit, output) = f.run(task);
        if !output.contains("Text file busy") {
            return (exit, output);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("{}: the file stayed busy", task.id);
}

/// A relative PATH entry (an empty one is `.`) is a directory under the task's `cwd`,
/// as `execvp` in the child would take it.
#[test]
fn a_relative_path_entry_is_taken_from_the_tasks_cwd() {
    use std::os::unix::fs::PermissionsExt;
    let f = Fixture::new();
    let bin = f.dir.path().join("sub/bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::write(bin.join("hello"), "#!/bin/sh\necho hello from $(basename $(pwd))\n").unwrap();
    std::fs::set_permissions(bin.join("hello"), std::fs::Permissions::from_mode(0o755)).unwrap();
    for (cwd, path) in [("sub", "bin:/usr/bin:/bin"), ("sub/bin", ":/usr/bin")] {
        let mut task =
            TaskSpec { id: "h".into(), command: Some(Command::Argv(vec!["hello".into()])), ..TaskSpec::default() };
        task.more_mut().cwd = Some(f.dir.path().join(cwd).to_str().unwrap().into());
        task.more_mut().env.insert("PATH".into(), path.into());
        let (exit, output) = run_written(&f, &task);
        assert_eq!(exit.status, ExitStatus::Code(0), "cwd {cwd}, PATH {path}: {output}");
        assert_eq!(output, format!("hello from {}\n", cwd.rsplit('/').next().unwrap()));
    }
}

/// A script whose `#!` interpreter is missing fails with ENOENT, as a missing program
/// does: the message names the interpreter, the script being there.
#[test]
fn a_script_with_a_missing_interpreter_says_so() {
    use std::os::unix::fs::PermissionsExt;
    let f = Fixture::new();
    let script = f.dir.path().join("script");
    std::fs::write(&script, "#!/no/such/interpreter -x\necho hi\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let argv = vec![script.to_str().unwrap().to_string()];
    let task = TaskSpec { id: "s".into(), command: Some(Command::Argv(argv)), ..TaskSpec::default() };
    let (exit, output) = run_written(&f, &task);
    assert_eq!(exit.status, ExitStatus::Code(process::SPAWN_FAILED_CODE));
    assert!(output.contains("bad interpreter \"/no/such/interpreter\": No such file or directory"), "{output}");
    // Saved with CRLF line ends: "/bin/sh\r" is what is missing. And found on PATH.
    std::fs::write(&script, "#!/bin/sh\r\necho hi\r\n").unwrap();
    let mut on_path =
        TaskSpec { id: "p".into(), command: Some(Command::Argv(vec!["script".into()])), ..TaskSpec::default() };
    on_path.more_mut().env.insert("PATH".into(), f.dir.path().to_str().unwrap().into());
    let (exit, output) = run_written(&f, &on_path);
    assert_eq!(exit.status, ExitStatus::Code(process::SPAWN_FAILED_CODE));
    assert!(output.contains("bad interpreter \"/bin/sh\\r\": No such file or directory"), "{output}");
}

#[test]
fn a_program_is_looked_up_on_the_tasks_own_path() {
    let f = Fixture::new();
    let bin = f.dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let tool = bin.join("orch-test-tool");
    std::fs::write(&tool, "#!/bin/sh\necho tool ran\n").unwrap();
    std::fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut task =
        TaskSpec { id: "p".into(), command: Some(Command::Shell("orch-test-tool".into())), ..TaskSpec::default() };
    task.more_mut().env = BTreeMap::from([("PATH".into(), format!("/no/such:{}", bin.display()))]);
    assert_eq!(f.run(&task).1, "tool ran\n");
    // Not on orch's own PATH: without the task's PATH it cannot start.
    task.more_mut().env.clear();
    assert_eq!(f.run(&task).0.status, ExitStatus::Code(process::SPAWN_FAILED_CODE));
}

#[test]
fn outputs_are_kept_apart_when_files_are_reused() {
    let f = Fixture::new();
    for i in 0..20 {
        let (exit, output) = f.run(&sh("r", &format!("printf {i}")));
        assert_eq!((exit.status, output), (ExitStatus::Code(0), i.to_string()));
        assert_eq!(f.run(&sh("e", "true")).0.output_bytes, 0);
    }
}

#[test]
fn a_large_blob_cut_short_is_replaced_by_the_next_output_with_its_bytes() {
    let f = Fixture::new();
    // Over the 1 MiB read into memory: hashed from the file, then linked or copied.
    let task = sh("big", "head -c 1500000 /dev/zero");
    let (first, _) = f.run(&task);
    let blob = f.blobs().join(first.output.hex());
    // As a power loss can leave an unsynced blob: its name, part of its bytes.
    std::fs::OpenOptions::new().write(true).open(&blob).unwrap().set_len(1000).unwrap();
    let (second, _) = f.run(&task);
    assert_eq!((second.output, second.output_bytes), (first.output, 1_500_000));
    assert_eq!(std::fs::metadata(&blob).unwrap().len(), 1_500_000, "the blob is whole again");
}

#[test]
fn start_ticks_match_proc_and_the_child_leads_its_own_group() {
    let f = Fixture::new();
    for _ in 0..30 {
        let (started, rx) = f.start(&sh("s", "sleep 5"));
        let pid = started.pgid.expect("started");
        assert_eq!(started.start_ticks, process::start_ticks(pid as u32), "pid {pid}");
        assert_eq!(nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(pid))).unwrap().as_raw(), pid);
        process::signal_group(pid, nix::sys::signal::Signal::SIGKILL);
        let exit = recv(&rx);
        assert_eq!(exit.status, ExitStatus::Signal(9));
    }
}

#[test]
fn children_of_other_code_are_left_to_it() {
    let f = Fixture::new();
    // Someone else's child that exits at once and is not waited for a while: a zombie
    // in the way of the reaper's look at exited children.
    let mut theirs = std::process::Command::new("true").spawn().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    for i in 0..5 {
        assert_eq!(f.run(&sh("o", &format!("exit {i}"))).0.status, ExitStatus::Code(i));
    }
    // Still theirs to wait for, with its status.
    assert!(theirs.wait().unwrap().success());
}

#[test]
fn a_task_without_command_succeeds_at_once() {
    let f = Fixture::new();
    let (started, rx) = f.start(&TaskSpec { id: "g".into(), ..TaskSpec::default() });
    assert_eq!(started.pgid, None);
    assert_eq!(rx.try_recv().unwrap().status, ExitStatus::Code(0));
}

/// A process's group and start time, as groups.rs checks them; a zombie (exited, not
/// yet reaped) counts as gone, though /proc still lists it.
#[test]
fn a_zombie_is_no_member_of_a_group() {
    let me = std::process::id();
    let pgrp = nix::unistd::getpgrp().as_raw();
    assert_eq!(process::group_and_start(me), Some((pgrp, process::start_ticks(me).unwrap())));
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    // Not waited for yet: once it has exited it is a zombie.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while process::group_and_start(pid).is_some() {
        assert!(std::time::Instant::now() < deadline, "the child never became a zombie");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(process::start_ticks(pid).is_some(), "still listed in /proc: a zombie");
    child.wait().unwrap();
}
