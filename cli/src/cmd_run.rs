//! `orch run`: load and validate the spec, run it (processes or simulation) with live
//! progress, then print the summary; the exit code says how the run ended.

use std::process::ExitCode;
use std::time::Duration;

use orch_engine::journal::read_records;
use orch_engine::record::RunOutcome;
use orch_engine::runtime::{self, Launch, Store};
use orch_engine::spec;
use orch_engine::state::State;
use orch_log_format::Durability;
use orch_replay::Summary;

use crate::args::{Cli, ResumeArgs, RunArgs};
use crate::exit::{self, Failure};
use crate::output::{line, Progress};

pub fn run(cli: &Cli, a: &RunArgs) -> Result<ExitCode, Failure> {
    // Arguments first, then the file: a bad flag is reported whatever the spec holds.
    let durability: Durability =
        a.exec.durability.parse().map_err(|e: orch_log_format::Error| Failure::Input(format!("--durability: {e}")))?;
    let (name, text, format) = read_spec(a)?;
    let spec = spec::parse(&text, &name, format)?;
    // Valid, but nothing could happen: a run with no task ends at once (nobody is there
    // to create tasks at run time). Most likely a mistake, so said before a run is made.
    if spec.tasks.is_empty() {
        return Err(Failure::Input(format!("{name}: the workflow declares no tasks (add a [[task]])")));
    }
    let launch = Launch {
        store: Store::at(&cli.store),
        spec_text: match format {
            spec::Format::JsonTasks => format!("{{\"task\": {text}}}"),
            _ => text,
        },
        spec_ext: match format {
            spec::Format::Toml => "toml",
            spec::Format::Json | spec::Format::JsonTasks => "json",
        },
        max_concurrency: a.max_concurrency,
        seed: a.seed,
        sim: a.sim,
        durability,
        kill_grace: Duration::from_millis(a.exec.kill_grace_ms),
    };
    let mut progress = Progress::new(a.exec.json);
    let wall = std::time::Instant::now();
    let finished = runtime::launch(spec, &launch, |r, s| progress.record(r, s)).map_err(|e| match e {
        runtime::RuntimeError::Log(l) if is_write_failure(&l) => log_write_failed(&l),
        other => Failure::Other(other.to_string()),
    })?;
    progress.finish();
    finish(&finished.run_id, &finished.log, &finished.state, a.exec.json, wall)
}

/// `orch resume`: continue a run whose engine died, from its log.
pub fn resume(cli: &Cli, a: &ResumeArgs) -> Result<ExitCode, Failure> {
    let durability: Durability =
        a.exec.durability.parse().map_err(|e: orch_log_format::Error| Failure::Input(format!("--durability: {e}")))?;
    let store = Store::at(&cli.store);
    let run = store.resolve(&a.run)?;
    let run_id = run.id.clone().unwrap_or_else(|| run.log.display().to_string());
    let mut progress = Progress::new(a.exec.json);
    let wall = std::time::Instant::now();
    let options = orch_log_format::Options { durability, ..Default::default() };
    let resumed = runtime::resume::resume(
        &store,
        &run_id,
        &run.log,
        options,
        Duration::from_millis(a.exec.kill_grace_ms),
        |r, s| progress.record(r, s),
    )
    .map_err(|e| match e {
        runtime::RuntimeError::Log(l) if is_write_failure(&l) => log_write_failed(&l),
        runtime::RuntimeError::Log(l) => Failure::from(l),
        other => Failure::Input(other.to_string()),
    })?;
    progress.finish();
    // Printed as the summary is (see `finish`): a closed stdout does not change the exit code.
    let report = || -> Result<(), Failure> {
        if let Some(t) = &resumed.torn {
            line(format!(
                "recovered: dropped {} bytes of an unfinished write at {}:{}",
                t.bytes_dropped,
                t.segment.display(),
                t.offset
            ))?;
        }
        if resumed.pending > 0 {
            line(format!("recovered: {} decisions the crash cut off were written and performed", resumed.pending))?;
        }
        for (task, attempt) in &resumed.lost {
            line(format!("recovered: attempt {attempt} of {task} was in flight; recorded as lost"))?;
        }
        if !resumed.killed.is_empty() {
            line(format!("recovered: killed surviving process groups {:?}", resumed.killed))?;
        }
        Ok(())
    };
    if !a.exec.json {
        print_or_note(report());
    }
    finish(&run_id, &resumed.log, &resumed.state, a.exec.json, wall)
}

/// An IO error on the log (disk full, file too large, permission denied, a failed sync)
/// or a writer poisoned by one: the run could not record what happens next, so it
/// stopped. Reading errors (damage, a held lock) are reported as they are.
fn is_write_failure(e: &orch_log_format::Error) -> bool {
    matches!(e, orch_log_format::Error::Io { .. } | orch_log_format::Error::Poisoned)
}

/// A bare "No space left on device" did not say what failed nor what to do (issue 7:
/// "disk full ... while appending: a clear error"). The run cannot be marked failed —
/// its log is what could not be written — and attempts still running are left as they
/// are: `orch resume` kills any survivor (pid + start time) and continues the run from
/// its last whole record.
fn log_write_failed(e: &orch_log_format::Error) -> Failure {
    Failure::Other(format!(
        "writing the run's log failed: {e}\nthe run stopped at its last whole record (attempts still running were \
         left running); once the cause is fixed, `orch resume RUN` continues it"
    ))
}

/// Prints the summary of a finished run and maps its outcome to the exit code. The
/// summary is of the log as written; `state`, the engine's state at the end (the fold of
/// those very records), spares folding them again (for a big spec, parsing it again).
fn finish(
    run_id: &str,
    log: &std::path::Path,
    state: &State,
    json: bool,
    wall: std::time::Instant,
) -> Result<ExitCode, Failure> {
    let records = read_records(log)?;
    let summary = Summary::of_state(state, &records);
    let digest = orch_log_format::verify(log)?.digest;
    let outcome = summary.outcome.unwrap_or(RunOutcome::Failed);
    let print = || -> Result<(), Failure> {
        if json {
            let mut v = serde_json::to_value(&summary).map_err(|e| Failure::Other(e.to_string()))?;
            v["run"] = run_id.into();
            v["log_digest"] = orch_log_format::hex(&digest).into();
            v["elapsed_ms"] = (wall.elapsed().as_millis() as u64).into();
            line(v)
        } else {
            line(format!("run {run_id} ({})", log.display()))?;
            for l in summary.render().lines() {
                line(l)?;
            }
            line(format!("log digest {}", orch_log_format::hex(&digest)))
        }
    };
    // The run's outcome is the exit code even when its summary cannot be printed (stdout
    // closed, or a terminal that hung up and cancelled the run): the log has it all.
    print_or_note(print());
    Ok(ExitCode::from(match outcome {
        RunOutcome::Succeeded => exit::OK,
        RunOutcome::Failed | RunOutcome::TimedOut => exit::FAILED,
        RunOutcome::Cancelled => exit::CANCELLED,
    }))
}

/// What printing a run's report to stdout came to: a failure is noted on stderr (a
/// closed pipe not even that), never turned into the exit code — the run's outcome is.
fn print_or_note(printed: Result<(), Failure>) {
    match printed {
        Ok(()) | Err(Failure::BrokenPipe) => {}
        Err(e) => crate::output::note(format!("orch: the report could not be printed: {e}")),
    }
}

/// The workflow's name (for error places), text and format: a file, stdin (`-`), or
/// `--tasks` inline.
fn read_spec(a: &RunArgs) -> Result<(String, String, spec::Format), Failure> {
    if let Some(tasks) = &a.tasks {
        // Parsed as the list it is (errors placed in it); kept in the run as a workflow.
        return Ok(("--tasks".into(), tasks.clone(), spec::Format::JsonTasks));
    }
    let path = a.file.as_ref().expect("clap requires a file unless --tasks is given");
    if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .map_err(|e| Failure::Input(format!("<stdin>: {e}")))?;
        // JSON starts with `{` (after a byte-order mark, if any); anything else is TOML.
        let body = text.trim_start_matches('\u{feff}').trim_start();
        let format = if body.starts_with('{') { spec::Format::Json } else { spec::Format::Toml };
        return Ok(("<stdin>".into(), text, format));
    }
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        Failure::Input(format!(
            "{name}: {e} (orch run takes a workflow file, TOML or JSON: see docs/workflow.md and fixtures/examples/)"
        ))
    })?;
    Ok((name, text, spec::Format::of_path(path)))
}
