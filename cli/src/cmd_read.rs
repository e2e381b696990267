//! The commands that only read logs: replay, log, verify, ls, show.

use std::path::Path;
use std::process::ExitCode;

use orch_engine::journal::{first_graph, read_compiling, read_records};
use orch_engine::record::{Event, Record};
use orch_engine::runtime::{Resolved, Store};
use orch_engine::state::{compile_started, State};
use orch_log_format::{hex, lock_state, Follower, LockState};
use orch_replay::rollup::Rollup;
use orch_replay::timeline::Timeline;
use orch_replay::{redecide, redecide::redecide_compiled, snapshot::snapshot, Summary};

use crate::args::{Cli, JsonFlag, LogArgs, ReplayArgs, RunRef, ShowArgs};
use crate::exit::Failure;
use crate::output::{format_ms, line};

fn resolve(cli: &Cli, run: &str) -> Result<Resolved, Failure> {
    Ok(Store::at(&cli.store).resolve(run)?)
}

fn to_json(v: &impl serde::Serialize) -> Result<serde_json::Value, Failure> {
    serde_json::to_value(v).map_err(|e| Failure::Other(e.to_string()))
}

pub fn replay(cli: &Cli, a: &ReplayArgs) -> Result<ExitCode, Failure> {
    let run = resolve(cli, &a.run)?;
    // The run-started record's spec is parsed and compiled (for a big run, the larger
    // part of a replay) on a thread of its own while the log is verified and read.
    let (report, records, graph) = std::thread::scope(|s| {
        let compiling = a.at.is_none().then(|| s.spawn(|| first_graph(&run.log)));
        let report = orch_log_format::verify(&run.log);
        let records = read_records(&run.log);
        (report, records, compiling.and_then(|c| c.join().ok().flatten()))
    });
    let (report, records) = (report?, records?);
    if let Some(at) = a.at {
        let Some(upto) = records.get(..=at as usize) else {
            return Err(Failure::Input(format!(
                "--at {at}: the log has {} records (seq 0..{})",
                records.len(),
                records.len().saturating_sub(1)
            )));
        };
        // Replay audits: the compiled graph the fold builds on must be the spec's, as
        // the full replay checks when it compiles the spec (`show` trusts it).
        if let Some(Event::RunStarted(r)) = records.first().map(|r| &r.event) {
            if r.image.is_some() {
                compile_started(r).map_err(|e| Failure::Input(format!("seq 0: {e}")))?;
            }
        }
        // A record that cannot be applied makes the log illegal: bad input, as in `show`.
        let state = State::fold(upto).map_err(|e| Failure::Input(format!("seq {at}: {e}")))?;
        let snap = snapshot(&state, at);
        if a.json {
            line(to_json(&snap)?)?;
        } else {
            for l in snap.render().lines() {
                line(l)?;
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let replayed = match graph {
        Some((digest, graph)) => redecide_compiled(&records, digest, graph),
        None => redecide(&records),
    };
    // Exit 1 is for a log that re-decides otherwise (a golden an older orch recorded,
    // non-determinism); a log that cannot be applied at all is bad input (exit 2).
    let replayed = replayed.map_err(|e| match e {
        orch_replay::redecide::Error::Divergence(_) => Failure::Mismatch(e.to_string()),
        _ => Failure::Input(e.to_string()),
    })?;
    // The graph the re-decided fold compiled: the spec is parsed and compiled once.
    let summary = Summary::of_state(&replayed.state, &records);
    if a.json {
        let mut v = to_json(&summary)?;
        v["replay"] = "ok".into();
        v["log_digest"] = hex(&report.digest).into();
        v["incomplete_from"] = to_json(&replayed.incomplete_from)?;
        line(v)?;
    } else {
        line(format!("replay ok: {} records re-decided identically", records.len()))?;
        if let Some(seq) = replayed.incomplete_from {
            line(format!("note: the log ends mid-step; decisions from seq {seq} were never written (crash?)"))?;
        }
        for l in summary.render().lines() {
            line(l)?;
        }
        line(format!("log digest {}", hex(&report.digest)))?;
    }
    // The process ends right after: freeing a million records and the compiled spec one
    // allocation at a time would only delay the exit (a tenth of the command at 1M).
    std::mem::forget((records, replayed));
    Ok(ExitCode::SUCCESS)
}

pub fn log(cli: &Cli, a: &LogArgs) -> Result<ExitCode, Failure> {
    let run = resolve(cli, &a.run)?;
    let print = |seq: u64, payload: &[u8]| -> Result<bool, Failure> {
        let record =
            Record::decode(payload).map_err(|e| Failure::Input(format!("{}: seq {seq}: {e}", run.log.display())))?;
        if a.text {
            line(orch_replay::text::render(seq, &record))?;
        } else {
            line(record.to_json(seq))?;
        }
        Ok(matches!(record.event, Event::RunFinished(_)))
    };
    let mut follower = Follower::new(&run.log, a.from)?;
    loop {
        let mut finished = false;
        let mut failure = None;
        follower.poll(|r| {
            if failure.is_none() {
                match print(r.seq, r.payload) {
                    Ok(done) => finished |= done,
                    Err(e) => failure = Some(e),
                }
            }
        })?;
        if let Some(e) = failure {
            return Err(e);
        }
        if !a.follow || finished || lock_state(&run.log)? == LockState::Free && follower.poll(|_| {})? == 0 {
            // The follower stops quietly at damage in the last segment (it may be a write
            // in progress), so a corrupt log used to print its good prefix and exit 0.
            // With no writer left, damage is corruption: verify names it (exit 2).
            if lock_state(&run.log)? == LockState::Free {
                let report = orch_log_format::verify(&run.log)?;
                // Finished in a record before `--from`, or not at all?
                if a.follow && !finished && !ends_finished(&run.log, report.records) {
                    return Ok(crate::watch::engine_gone(&run));
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Whether the last of the log's `records` is `run_finished`.
fn ends_finished(log: &Path, records: u64) -> bool {
    let Some(last) = records.checked_sub(1) else { return false };
    let reader = orch_log_format::Reader::open(log);
    let record = reader.ok().and_then(|r| r.iter_from(last).next()?.ok().map(|item| Record::decode(item.payload)));
    matches!(record, Some(Ok(Record { event: Event::RunFinished(_), .. })))
}

pub fn verify(cli: &Cli, a: &RunRef) -> Result<ExitCode, Failure> {
    let run = resolve(cli, &a.run)?;
    let report = orch_log_format::verify(&run.log)?;
    if a.json {
        let torn = report.torn_tail.as_ref().map(|(p, o)| format!("{}:{o}", p.display()));
        line(serde_json::json!({
            "log": run.log.display().to_string(),
            "segments": report.segments,
            "records": report.records,
            "bytes": report.bytes,
            "digest": hex(&report.digest),
            "torn_tail": torn,
        }))?;
    } else {
        line(format!(
            "ok: {} records in {} segment(s), {} bytes, digest {}",
            report.records,
            report.segments,
            report.bytes,
            hex(&report.digest)
        ))?;
        if let Some((path, offset)) = &report.torn_tail {
            line(format!(
                "note: unfinished write at {}:{offset} (a live writer, or a crash; opening for write truncates it)",
                path.display()
            ))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn ls(cli: &Cli, a: &JsonFlag) -> Result<ExitCode, Failure> {
    let store = Store::at(&cli.store);
    let mut rows = Vec::new();
    let mut errors = std::collections::BTreeMap::new();
    for id in store.list_runs()? {
        let log = store.log_dir(&id);
        let live = matches!(lock_state(&log)?, LockState::Held { .. });
        // A log that cannot be folded is as unreadable as one that cannot be read.
        let folded = read_records(&log).map_err(|e| e.to_string()).and_then(|records| {
            let state = State::fold(&records).map_err(|e| e.to_string())?;
            Ok(Summary::of_state(&state, &records))
        });
        let (outcome, duration_ms, tasks) = match folded {
            Ok(s) => {
                let outcome = match (s.outcome, live) {
                    (Some(o), _) => o.name().to_string(),
                    (None, true) => "running".to_string(),
                    (None, false) => "unfinished".to_string(),
                };
                (outcome, s.wall_ms, s.tasks)
            }
            // The error goes to stderr (and `error` in JSON): inline, it broke the table.
            Err(e) => {
                crate::output::note(format!("orch: {id}: {e}"));
                errors.insert(id.clone(), e);
                ("unreadable".to_string(), 0, 0)
            }
        };
        rows.push((id, outcome, duration_ms, tasks));
    }
    if a.json {
        let list: Vec<_> = rows
            .iter()
            .map(|(id, o, d, t)| {
                // An unreadable run has no duration nor tasks to tell (null, not 0).
                let known = !errors.contains_key(id);
                serde_json::json!({"run": id, "outcome": o, "duration_ms": known.then_some(d),
                    "tasks": known.then_some(t), "error": errors.get(id)})
            })
            .collect();
        line(serde_json::Value::Array(list))?;
    } else if rows.is_empty() {
        line(format!("no runs in {}", store.root().display()))?;
    } else {
        line(format!("{:<22} {:<11} {:>10} {:>7}", "RUN", "OUTCOME", "DURATION", "TASKS"))?;
        for (id, o, d, t) in rows {
            line(format!("{id:<22} {o:<11} {:>10} {t:>7}", format_ms(d)))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn show(cli: &Cli, a: &ShowArgs) -> Result<ExitCode, Failure> {
    let run = resolve(cli, &a.run)?;
    if a.watch {
        return crate::watch::watch(&run, a.flat);
    }
    let loaded = read_compiling(&run.log)?;
    let records = &loaded.records;
    let state = loaded.fold().map_err(|e| Failure::Input(format!("{}: {e}", run.log.display())))?;
    let Some(graph) = state.graph() else {
        return Err(Failure::Input(format!(
            "{}: the log holds no run (its engine stopped before recording run_started): nothing to show",
            run.log.display()
        )));
    };
    let timeline = Timeline::of_state(&state, records);
    let rollup = Rollup::of(&timeline);
    let summary = Summary::with_rollup(records, &rollup);
    if a.json {
        let tasks: Vec<_> = (0..graph.len() as u32)
            .map(|t| {
                let (id, state, attempts) = crate::watch::describe(&state, t);
                let parent = graph.parent(t).map(|p| graph.id(p).to_string());
                let times = &timeline.tasks[t as usize];
                let wait = times.ready_ms.zip(times.first_dispatch_ms).map(|(r, d)| d.saturating_sub(r));
                serde_json::json!({"task": id, "state": state, "attempts": attempts, "parent": parent,
                    "ready_ms": times.ready_ms, "dispatched_ms": times.first_dispatch_ms, "queue_wait_ms": wait,
                    "finished_ms": times.finished_ms})
            })
            .collect();
        let mut v = to_json(&summary)?;
        v["tasks_detail"] = serde_json::Value::Array(tasks);
        v["rollup"] = to_json(&rollup)?;
        line(v)?;
        return Ok(ExitCode::SUCCESS);
    }
    line(format!(
        "{} — {}",
        run.id.as_deref().unwrap_or(&run.log.display().to_string()),
        summary.outcome.map_or("unfinished", |o| o.name())
    ))?;
    let tree = if a.flat { crate::watch::flat_lines(&state) } else { crate::watch::tree_lines(&state) };
    for l in tree {
        line(l)?;
    }
    for l in summary.render().lines() {
        line(l)?;
    }
    Ok(ExitCode::SUCCESS)
}
