//! Output helpers: stdout writes that turn a closed pipe into a clean exit, and the
//! live progress of `orch run` (a redrawn status line on a terminal, plain lines
//! otherwise).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use orch_engine::record::{Event, Record, Terminal};
use orch_engine::state::State;

use crate::exit::Failure;

/// Writes one line to stdout.
pub fn line(text: impl std::fmt::Display) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")?;
    Ok(())
}

/// Progress of a run, fed with every committed record.
pub struct Progress {
    quiet: bool,
    tty: bool,
    total: usize,
    done: usize,
    failed: usize,
    last_draw: Option<Instant>,
}

impl Progress {
    pub fn new(quiet: bool) -> Progress {
        Progress { quiet, tty: std::io::stderr().is_terminal(), total: 0, done: 0, failed: 0, last_draw: None }
    }

    pub fn record(&mut self, record: &Record, state: &State) {
        if self.quiet {
            return;
        }
        // The graph grows when running tasks create sub-tasks: the total follows it.
        self.total = state.graph().map_or(0, |g| g.len());
        if let Event::TaskFinished(f) = &record.event {
            self.done += 1;
            if f.state != Terminal::Succeeded {
                self.failed += 1;
            }
            self.clear_status();
            let cause = f.cause.as_deref().map(|c| format!(" ({c})")).unwrap_or_default();
            let _ = line(format!("[{:>8}] {:<9} {}{cause}", format_ms(record.time_ms), f.state.name(), f.task));
        }
        self.draw_status(state);
    }

    pub fn finish(&mut self) {
        self.clear_status();
    }

    fn draw_status(&mut self, state: &State) {
        if !self.tty || self.last_draw.is_some_and(|t| t.elapsed() < Duration::from_millis(100)) {
            return;
        }
        self.last_draw = Some(Instant::now());
        let width = 30;
        let filled = (self.done * width).checked_div(self.total).unwrap_or(width).min(width);
        let bar: String = "#".repeat(filled) + &"-".repeat(width - filled);
        eprint!(
            "\r\x1b[2K[{bar}] {}/{} done, {} running, {} failed",
            self.done,
            self.total,
            state.running(),
            self.failed
        );
        let _ = std::io::stderr().flush();
    }

    fn clear_status(&mut self) {
        if self.tty && self.last_draw.is_some() {
            eprint!("\r\x1b[2K");
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
