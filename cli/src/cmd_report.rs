//! The commands that turn a run into files for people and tools: `orch report` (one
//! self-contained HTML page) and `orch export` (Chrome trace JSON, JSON lines).

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use orch_engine::journal::{read_compiling, read_records, Loaded};
use orch_engine::runtime::Store;
use orch_engine::state::State;
use orch_replay::{export, report, timeline::Timeline};

use crate::args::{Cli, ExportArgs, ExportFormat, ReportArgs};
use crate::exit::Failure;

pub fn report(cli: &Cli, a: &ReportArgs) -> Result<ExitCode, Failure> {
    let run = Store::at(&cli.store).resolve(&a.run)?;
    let loaded = read_compiling(&run.log)?;
    let records = &loaded.records;
    if records.is_empty() {
        return Err(Failure::Input(format!(
            "{}: the log holds no run (its engine stopped before recording run_started): nothing to show",
            run.log.display()
        )));
    }
    let html = report::render_state(&fold(&loaded, &run.log)?, records);
    write_whole(&a.output, html.as_bytes())?;
    crate::output::note(format!(
        "orch: wrote {} ({} bytes, {} records)",
        a.output.display(),
        html.len(),
        records.len()
    ));
    Ok(ExitCode::SUCCESS)
}

pub fn export(cli: &Cli, a: &ExportArgs) -> Result<ExitCode, Failure> {
    let run = Store::at(&cli.store).resolve(&a.run)?;
    let mut bytes = Vec::new();
    match a.format {
        ExportFormat::ChromeTrace => {
            let loaded = read_compiling(&run.log)?;
            let records = &loaded.records;
            let trace = export::chrome_trace(records, &Timeline::of_state(&fold(&loaded, &run.log)?, records));
            serde_json::to_writer(&mut bytes, &trace).map_err(|e| Failure::Other(e.to_string()))?;
            bytes.push(b'\n');
        }
        // The records as they are: nothing to fold, so no spec to compile.
        ExportFormat::Jsonl => export::write_jsonl(&read_records(&run.log)?, &mut bytes)?,
    }
    match &a.output {
        Some(path) => write_whole(path, &bytes)?,
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(&bytes)?;
            out.flush()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The run's state, from all of its records: a record that cannot be applied makes the
/// log illegal, and a report of what could be folded would contradict itself.
fn fold(loaded: &Loaded, log: &Path) -> Result<State, Failure> {
    loaded.fold().map_err(|e| Failure::Input(format!("{}: {e}", log.display())))
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename,
/// so a failure never leaves half a file behind.
fn write_whole(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| Failure::Input(format!("{}: not a file name", path.display())))?;
    let tmp = dir.join(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
    let result = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(Failure::Other(format!("{}: {e}", path.display())));
    }
    Ok(())
}
