//! The crash harness: trials that SIGKILL `orch run` (and its resumes) at random points,
//! resume to the end and check the log and the outcome against the uninterrupted run
//! (`ORCH_CRASH_TRIALS` and `ORCH_CRASH_SEED`: see the crate docs in `main.rs`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use orch_engine::record::Event;
use serde_json::Value;

use super::{env_u64, kind, log_json, reference, sleep_while_running, wait_for, Rng, Scratch, COMMAND_TASKS, FLAKY};

/// What a trial saw, summed over trials for the report.
#[derive(Debug, Default, Clone)]
struct Tally {
    trials: u64,
    run_killed: u64,
    run_killed_before_start: u64,
    run_finished_before_kill: u64,
    resumes: u64,
    resumes_killed: u64,
    lost_attempts: u64,
    killed_groups: u64,
    pending_written: u64,
    reruns_of_finished_children: u64,
    diff_counts_lost_attempts: u64,
    torn_tails: u64,
}

impl Tally {
    fn add(&mut self, o: &Tally) {
        self.trials += o.trials;
        self.run_killed += o.run_killed;
        self.run_killed_before_start += o.run_killed_before_start;
        self.run_finished_before_kill += o.run_finished_before_kill;
        self.resumes += o.resumes;
        self.resumes_killed += o.resumes_killed;
        self.lost_attempts += o.lost_attempts;
        self.killed_groups += o.killed_groups;
        self.pending_written += o.pending_written;
        self.reruns_of_finished_children += o.reruns_of_finished_children;
        self.diff_counts_lost_attempts += o.diff_counts_lost_attempts;
        self.torn_tails += o.torn_tails;
    }
}

/// One trial: run, SIGKILL at a random point, resume (killing the resume 0–2 times at
/// random points too), resume to the end; then check the log and the outcome. `trace`
/// collects what happened, for the failure message.
fn trial(seed: u64, trace: &mut String) -> Result<Tally, String> {
    let reference = reference();
    let mut rng = Rng::new(seed);
    let mut tally = Tally { trials: 1, ..Tally::default() };
    let s = Scratch::new(FLAKY);
    // A kill lands anywhere in the run, including before it writes anything.
    let span = reference.wall_ms + 30;

    // 1. `orch run`, killed (or, rarely, finished before the kill).
    let mut finished = false;
    for attempt in 0.. {
        if attempt == 5 {
            return Err("five runs in a row were killed before they wrote run_started".into());
        }
        let mut child = s.spawn(&["run", "wf.toml"], &format!("run{attempt}"));
        let delay = rng.below(span);
        let running = sleep_while_running(&mut child, delay);
        if !running {
            let status = wait_for(&mut child, Duration::from_secs(10))?;
            let _ = writeln!(trace, "run ended by itself before the kill at {delay} ms: {status}");
            if !status.success() {
                return Err(format!("uninterrupted run failed: {status}\n{}", s.read(&format!("run{attempt}.err"))));
            }
            tally.run_finished_before_kill += 1;
            finished = true;
            break;
        }
        child.kill().map_err(|e| e.to_string())?;
        child.wait().map_err(|e| e.to_string())?;
        tally.run_killed += 1;
        let records = s.records();
        let _ = writeln!(trace, "run killed at {delay} ms with {} records", records.len());
        if records.first().is_some_and(|r| matches!(r.event, Event::RunStarted(_))) {
            break;
        }
        // Killed before run_started was committed: nothing to resume, and resume says so.
        tally.run_killed_before_start += 1;
        if s.run_dir().is_some() {
            let out = s.orch(&["resume", "latest"]);
            out.expect(2)?;
            if out.stderr.trim().is_empty() {
                return Err("resume of a run that never started exited 2 without a word".into());
            }
            std::fs::remove_dir_all(s.path().join(".orch/runs")).map_err(|e| e.to_string())?;
        }
    }

    // 2. Resumes: 0–2 of them killed, then one to the end.
    let mut resume_starts = Vec::new();
    let crashes = rng.below(3);
    let mut n = 0;
    while !finished {
        let records = s.records();
        let start = records.len();
        let tag = format!("resume{n}");
        let mut child = s.spawn(&["resume", "latest"], &tag);
        resume_starts.push(start);
        tally.resumes += 1;
        let kill = n < crashes;
        let delay = rng.below(span / 2 + 1);
        let still_running = kill && sleep_while_running(&mut child, delay);
        if still_running {
            child.kill().map_err(|e| e.to_string())?;
            child.wait().map_err(|e| e.to_string())?;
            tally.resumes_killed += 1;
            let _ = writeln!(trace, "resume {n} (from seq {start}) killed at {delay} ms");
        } else {
            let status = wait_for(&mut child, Duration::from_secs(20))?;
            let (stdout, stderr) = (s.read(&format!("{tag}.out")), s.read(&format!("{tag}.err")));
            let _ = writeln!(trace, "resume {n} (from seq {start}) ended: {status}\n{stdout}{stderr}");
            if stderr.contains("panicked") {
                return Err(format!("resume panicked:\n{stderr}"));
            }
            match status.code() {
                Some(0) => finished = true,
                // The engine killed last may have finished the run before it died.
                Some(2) if stderr.contains("the run has finished") => finished = true,
                _ => return Err(format!("resume exited {status}:\n{stdout}\n{stderr}")),
            }
        }
        n += 1;
        if n > 10 {
            return Err("more than ten resumes".into());
        }
    }

    // What the resumes reported (killed ones too: they print as they go).
    for k in 0..n {
        let stdout = s.read(&format!("resume{k}.out"));
        tally.killed_groups += stdout.contains("killed surviving process groups") as u64;
        tally.pending_written += stdout.contains("decisions the crash cut off") as u64;
        tally.torn_tails += stdout.contains("dropped") as u64;
    }
    tally.lost_attempts += s.records().iter().filter(|r| matches!(r.event, Event::AttemptLost(_))).count() as u64;
    check(&s, &resume_starts, &mut tally)?;
    Ok(tally)
}

/// The checks after a trial.
fn check(s: &Scratch, resume_starts: &[usize], tally: &mut Tally) -> Result<(), String> {
    let reference = reference();
    let out = s.orch(&["verify", "latest"]);
    out.expect(0)?;
    if !out.stdout.starts_with("ok: ") {
        return Err(format!("verify: {}", out.stdout));
    }
    let out = s.orch(&["replay", "latest"]);
    out.expect(0)?;
    if !out.stdout.contains("replay ok") {
        return Err(format!("replay: {}", out.stdout));
    }

    let log = log_json(s, "latest")?;
    for (i, r) in log.iter().enumerate() {
        if r["seq"].as_u64() != Some(i as u64) {
            return Err(format!("record {i} has seq {}", r["seq"]));
        }
    }
    // Every task is terminal exactly once.
    let tasks: Vec<String> = reference
        .records
        .iter()
        .filter_map(|r| match &r.event {
            Event::TaskFinished(f) => Some(f.task.clone()),
            _ => None,
        })
        .collect();
    let mut finished_at: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, r) in log.iter().enumerate() {
        if kind(r) == "task_finished" {
            finished_at.entry(r["task"].as_str().unwrap_or_default()).or_default().push(i);
        }
    }
    for t in &tasks {
        let n = finished_at.get(t.as_str()).map_or(0, Vec::len);
        if n != 1 {
            return Err(format!("task {t} finished {n} times"));
        }
    }
    if finished_at.len() != tasks.len() {
        return Err(format!("tasks finished: {:?}, expected {tasks:?}", finished_at.keys()));
    }
    // No task that was finished when a resume started was dispatched again by it.
    for &start in resume_starts {
        for (t, at) in &finished_at {
            if at[0] < start {
                let again = log.iter().skip(start).find(|r| kind(r) == "attempt_dispatched" && r["task"] == *t);
                if let Some(r) = again {
                    return Err(format!("task {t} finished at seq {} but was dispatched again: {r}", at[0]));
                }
            }
        }
    }
    // The outcome is the uninterrupted run's.
    let last = log.last().ok_or("empty log")?;
    if kind(last) != "run_finished" || last["aggregate"] != reference.aggregate.as_str() {
        return Err(format!("last record {last}, expected run_finished with aggregate {}", reference.aggregate));
    }
    if let DiffOutcomes::OnlyLostAttempts = diff_outcomes(s)? {
        tally.diff_counts_lost_attempts += 1;
        return Err("diff --outcomes differs by lost attempts, which it must leave out".into());
    }

    // Markers: every task with a command ran to its end at least once, and no more often
    // than it was dispatched (an attempt that ended while the engine was dead is lost and
    // runs again: at least once, not exactly once, for the child's own side effects).
    let markers = s.markers();
    for t in COMMAND_TASKS {
        let dispatched = log.iter().filter(|r| kind(r) == "attempt_dispatched" && r["task"] == *t).count();
        let ran = markers.get(*t).copied().unwrap_or(0);
        if ran == 0 || ran > dispatched {
            return Err(format!("task {t}: {ran} markers for {dispatched} dispatched attempts"));
        }
        tally.reruns_of_finished_children += (ran - 1) as u64;
    }
    Ok(())
}

enum DiffOutcomes {
    Same,
    /// The only differences are task attempt counts, each higher than the reference's by
    /// exactly the attempts of that task the trial lost (a regression this test names).
    OnlyLostAttempts,
}

/// `orch diff --outcomes REFERENCE TRIAL`.
fn diff_outcomes(s: &Scratch) -> Result<DiffOutcomes, String> {
    let ref_dir = reference().scratch.run_dir().unwrap();
    let trial_dir = s.run_dir().unwrap();
    let out = s.orch(&["diff", "--outcomes", "--json", ref_dir.to_str().unwrap(), trial_dir.to_str().unwrap()]);
    if out.code() == Some(0) {
        return Ok(DiffOutcomes::Same);
    }
    out.expect(1)?;
    let report: Value = serde_json::from_str(out.stdout.trim()).map_err(|e| format!("diff --json: {e}"))?;
    let lost = |task: &str| {
        s.records().iter().filter(|r| matches!(&r.event, Event::AttemptLost(l) if l.task == task)).count() as u64
    };
    let explained = report["waves"].as_array().is_some_and(Vec::is_empty)
        && report["run"].is_null()
        && report["spec"].is_null()
        && report["tasks"].as_array().is_some_and(|tasks| {
            tasks.iter().all(|t| {
                let (a, b) = (t["a"]["attempts"].as_u64().unwrap_or(0), t["b"]["attempts"].as_u64().unwrap_or(0));
                t["fields"] == serde_json::json!(["attempts"]) && b == a + lost(t["task"].as_str().unwrap_or_default())
            })
        });
    if explained {
        Ok(DiffOutcomes::OnlyLostAttempts)
    } else {
        Err(format!("orch diff --outcomes: the runs differ:\n{}", out.stdout))
    }
}

#[test]
fn sigkill_at_random_points_then_resume_gives_the_uninterrupted_outcome() {
    let trials = env_u64("ORCH_CRASH_TRIALS").unwrap_or(100) as usize;
    let base = env_u64("ORCH_CRASH_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    let reference = reference();
    eprintln!(
        "crash harness: {trials} trials, ORCH_CRASH_SEED={base}, reference run {} ms, aggregate {}",
        reference.wall_ms, reference.aggregate
    );
    let started = Instant::now();
    let next = AtomicUsize::new(0);
    let tally = Mutex::new(Tally::default());
    let failures = Mutex::new(Vec::new());
    // Two trials at a time: the engine mostly waits on its children's sleeps.
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= trials {
                    return;
                }
                let seed = base.wrapping_add(i as u64);
                let mut trace = String::new();
                match trial(seed, &mut trace) {
                    Ok(t) => tally.lock().unwrap().add(&t),
                    Err(e) => failures.lock().unwrap().push(format!(
                        "trial {i} failed (rerun: ORCH_CRASH_SEED={seed} ORCH_CRASH_TRIALS=1): {e}\n{trace}"
                    )),
                }
            });
        }
    });
    let tally = tally.into_inner().unwrap();
    let failures = failures.into_inner().unwrap();
    eprintln!(
        "crash harness: {} trials ok, {} failed, {:.1} s\n{tally:#?}",
        tally.trials,
        failures.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(failures.is_empty(), "{} of {trials} trials failed:\n{}", failures.len(), failures.join("\n"));
    // The kills must actually exercise resume, not only runs that ended first.
    if trials >= 20 {
        assert!(tally.run_killed > tally.trials / 2, "too few kills landed: {tally:?}");
        assert!(tally.lost_attempts > 0, "no attempt was ever in flight at a kill: {tally:?}");
    }
}
