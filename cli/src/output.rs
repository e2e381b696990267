//! Output helpers: stdout writes that turn a closed pipe into a clean exit, and the
//! live progress of `orch run` (a redrawn status line on a terminal, plain lines
//! otherwise).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use orch_engine::record::{Event, Record, Terminal};
use orch_engine::state::{Phase, State};

use crate::exit::Failure;

/// Writes one line to stdout.
pub fn line(text: impl std::fmt::Display) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")?;
    Ok(())
}

/// Writes one line to stderr. A stderr that is gone (the terminal closed: its SIGHUP is
/// being handled as a cancel, and the run must still end cleanly) is not an error.
pub fn note(text: impl std::fmt::Display) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

/// Progress of a run, fed with every committed record.
pub struct Progress {
    quiet: bool,
    tty: bool,
    last_draw: Option<Instant>,
}

impl Progress {
    pub fn new(quiet: bool) -> Progress {
        Progress { quiet, tty: std::io::stderr().is_terminal(), last_draw: None }
    }

    pub fn record(&mut self, record: &Record, state: &State) {
        if self.quiet {
            return;
        }
        if let Event::TaskFinished(f) = &record.event {
            self.clear_status();
            let cause = f.cause.as_deref().map(|c| format!(" ({c})")).unwrap_or_default();
            let _ = line(format!("[{:>8}] {:<9} {}{cause}", format_ms(record.time_ms), f.state.name(), f.task));
            let parent = state.graph().and_then(|g| g.task(&f.task).and_then(|t| g.parent(t)));
            self.if_stuck(parent, record.time_ms, state);
        }
        // A parent whose children ended while its own command still ran is stuck once
        // that command exits.
        if let Event::AttemptExited(e) = &record.event {
            self.if_stuck(state.graph().and_then(|g| g.task(&e.task)), record.time_ms, state);
        }
        self.draw_status(state);
    }

    /// A parent left stuck would wait without a word (it looks like a hang): say so, and
    /// how to settle it.
    fn if_stuck(&mut self, parent: Option<u32>, time_ms: u64, state: &State) {
        let (Some(graph), Some(p)) = (state.graph(), parent) else { return };
        if let Some(why) = state.stuck_on(p) {
            let parent = graph.id(p);
            let _ = line(format!(
                "[{:>8}] {:<9} {parent} (held: {why}); it waits to be settled: \
                 orch task update {parent} --status done|failed|cancelled --run RUN",
                format_ms(time_ms),
                "stuck",
            ));
        }
    }

    pub fn finish(&mut self) {
        self.clear_status();
    }

    fn draw_status(&mut self, state: &State) {
        if !self.tty || self.last_draw.is_some_and(|t| t.elapsed() < Duration::from_millis(100)) {
            return;
        }
        self.last_draw = Some(Instant::now());
        // Counted from the state (at most every 100 ms), not from the records seen: the
        // graph grows when running tasks create sub-tasks, and a resumed run's earlier
        // tasks finished before this process saw any record.
        let total = state.graph().map_or(0, |g| g.len());
        let (mut done, mut failed) = (0usize, 0usize);
        for t in 0..total as u32 {
            if let Phase::Done(end) = state.task(t).phase {
                done += 1;
                failed += usize::from(end != Terminal::Succeeded);
            }
        }
        let width = 30;
        let filled = (done * width).checked_div(total).unwrap_or(width).min(width);
        let bar: String = "#".repeat(filled) + &"-".repeat(width - filled);
        // Errors ignored, as in `note`.
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K[{bar}] {done}/{total} done, {} running, {failed} failed", state.running());
        let _ = err.flush();
    }

    fn clear_status(&mut self) {
        if self.tty && self.last_draw.is_some() {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
            self.last_draw = None;
        }
    }
}

/// `1234` → `1.234s`, `61000` → `1m01.0s`.
pub fn format_ms(ms: u64) -> String {
    if ms < 60_000 {
        format!("{}.{:03}s", ms / 1000, ms % 1000)
    } else {
        format!("{}m{:02}.{}s", ms / 60_000, ms % 60_000 / 1000, ms % 1000 / 100)
    }
}
