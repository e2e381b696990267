//! `orch output RUN TASK`: what an attempt wrote (stdout and stderr, as stored), from the
//! store's blob named by the attempt's `attempt_exited` record — the log says which
//! bytes, the store has them.

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use orch_engine::journal::read_records;
use orch_engine::record::{AttemptExited, Event};
use orch_engine::runtime::{Resolved, Store};

use crate::args::{Cli, OutputArgs};
use crate::exit::Failure;

pub fn output(cli: &Cli, a: &OutputArgs) -> Result<ExitCode, Failure> {
    let store = Store::at(&cli.store);
    let run = store.resolve(&a.run)?;
    let records = read_records(&run.log)?;
    let place = || format!("{}: task {:?}", a.run, a.task);

    let mut dispatched = Vec::new();
    let mut exits: Vec<&AttemptExited> = Vec::new();
    let mut lost = Vec::new();
    let mut simulated = false;
    for r in &records {
        match &r.event {
            Event::RunStarted(s) => simulated = s.executor == "sim",
            Event::AttemptDispatched(d) if d.task == a.task => dispatched.push(d.attempt),
            Event::AttemptExited(e) if e.task == a.task => exits.push(e),
            Event::AttemptLost(l) if l.task == a.task => lost.push(l.attempt),
            _ => {}
        }
    }
    let Some(&last) = dispatched.last() else {
        return Err(Failure::Input(format!(
            "{}: no attempt of it in this run (no such task, or it never ran)",
            place()
        )));
    };
    let attempt = a.attempt.unwrap_or(last);
    let exit = match exits.iter().find(|e| e.attempt == attempt) {
        Some(exit) => exit,
        None if !dispatched.contains(&attempt) => {
            return Err(Failure::Input(format!("{}: no attempt {attempt} (attempts: {dispatched:?})", place())))
        }
        None if lost.contains(&attempt) => {
            return Err(Failure::Input(format!(
                "{}: attempt {attempt} was lost when the engine died: its output was not kept",
                place()
            )))
        }
        None => {
            return Err(Failure::Input(format!(
                "{}: attempt {attempt} has not ended: its output is stored when it does",
                place()
            )))
        }
    };
    if exit.output_bytes == 0 {
        return Ok(ExitCode::SUCCESS);
    }
    let hex = exit.output.hex();
    let path = blobs_dir(&store, &run).join(&hex);
    let blob = std::fs::File::open(&path).map_err(|e| {
        let why = if simulated { "a simulated run stores no outputs".to_string() } else { e.to_string() };
        Failure::Other(format!(
            "{}: attempt {attempt} wrote {} bytes (blake3 {hex}), not in the store at {}: {why}",
            place(),
            exit.output_bytes,
            path.display()
        ))
    })?;
    // Checked before a byte is printed, so a damaged blob prints nothing: its length,
    // then its digest (read once to hash, once to print: an output may be gigabytes, so
    // it is not held in memory). Both reads are of one open file; a repair by another
    // orch renames a new file over the name and leaves this one as it is.
    let damaged = |what: String| {
        Failure::Input(format!(
            "{}: the stored output {} {what} (the store is damaged; a run that writes the same output \
             stores it anew if its length differs)",
            place(),
            path.display()
        ))
    };
    let reading = |e: std::io::Error| Failure::Other(format!("{}: reading {}: {e}", place(), path.display()));
    let len = blob.metadata().map_err(reading)?.len();
    if len != exit.output_bytes {
        return Err(damaged(format!("is {len} bytes, not the {} its attempt recorded", exit.output_bytes)));
    }
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(std::io::BufReader::with_capacity(1 << 20, &blob)).map_err(reading)?;
    if hasher.finalize().as_bytes() != &exit.output.0 {
        return Err(damaged("does not match the digest its attempt recorded".into()));
    }
    (&blob).seek(SeekFrom::Start(0)).map_err(reading)?;
    let mut out = std::io::stdout().lock();
    let copied = std::io::copy(&mut std::io::BufReader::with_capacity(1 << 20, &blob), &mut out);
    copied
        .and_then(|_| out.flush())
        .map_err(|e| Failure::Other(format!("{}: copying {} to stdout: {e}", place(), path.display())))?;
    Ok(ExitCode::SUCCESS)
}

/// The blobs of the store the run is in: `--store`'s, unless the run was named by the
/// path of a log inside another store (`STORE/runs/ID/log`).
fn blobs_dir(store: &Store, run: &Resolved) -> PathBuf {
    if run.id.is_none() {
        // Made absolute first: `.` or `../log`, typed inside the log's directory, has no
        // parents to go up through.
        let log = std::fs::canonicalize(&run.log).unwrap_or_else(|_| run.log.clone());
        let of_layout = |log: &Path| Some(log.parent()?.parent()?.parent()?.join("blobs"));
        if let Some(blobs) = of_layout(&log).filter(|b| b.is_dir()) {
            return blobs;
        }
    }
    store.blobs_dir()
}
