//! `orch diff A B`: compare two runs at one level (`--exact`, decisions by default,
//! `--outcomes`) and print the report; exit 0 when they are the same at that level, 1 when
//! they differ, 2 when either cannot be read.

use std::process::ExitCode;

use orch_engine::runtime::{Resolved, Store};
use orch_replay::diff::{diff_logs, Error, Level};

use crate::args::{Cli, DiffArgs};
use crate::exit::{self, Failure};
use crate::output::line;

pub fn diff(cli: &Cli, a: &DiffArgs) -> Result<ExitCode, Failure> {
    let store = Store::at(&cli.store);
    let left = store.resolve(&a.a)?;
    let right = store.resolve(&a.b)?;
    let level = match (a.exact, a.outcomes) {
        (true, _) => Level::Exact,
        (_, true) => Level::Outcomes,
        _ => Level::Decisions,
    };
    let mut report = diff_logs(&left.log, &right.log, level).map_err(|e| match e {
        Error::Log(e) => Failure::from(e),
        Error::Read(e) => Failure::from(e),
    })?;
    report.a = label(&left);
    report.b = label(&right);
    let verdict = ExitCode::from(if report.identical { exit::OK } else { exit::FAILED });
    let printed = if a.json {
        serde_json::to_value(&report).map_err(|e| Failure::Other(e.to_string())).and_then(line)
    } else {
        report.render().lines().try_for_each(line)
    };
    match printed {
        // A reader that stops early (`| head`, `| true`) must not turn "different" into
        // "same": CI reads the verdict from the exit code.
        Ok(()) | Err(Failure::BrokenPipe) => Ok(verdict),
        Err(e) => Err(e),
    }
}

/// A run by its id, a log directory by its path.
fn label(r: &Resolved) -> String {
    r.id.clone().unwrap_or_else(|| r.log.display().to_string())
}
