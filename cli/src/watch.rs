//! `orch show`'s task tree, and `orch show --watch`: the same tree kept live by folding
//! records as the log grows (polled with the log's `Follower`), redrawn in place on a
//! terminal and printed as periodic plain lines otherwise, until the run finishes.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use orch_engine::record::{Event, Record};
use orch_engine::runtime::Resolved;
use orch_engine::state::{Phase, State};
use orch_log_format::{lock_state, Follower, LockState};

use crate::exit::Failure;
use crate::output::{format_ms, line};

/// How often the log is polled.
const POLL: Duration = Duration::from_millis(100);
/// Without a terminal, at most one status line this often.
const PLAIN_EVERY: Duration = Duration::from_secs(2);
/// On a terminal, the tree is cut to this many task lines.
const MAX_TREE_LINES: usize = 40;

/// `(id, phase or terminal state, attempts)` of task `t`.
pub fn describe(state: &State, t: u32) -> (String, String, u32) {
    let graph = state.graph().expect("started");
    let task = state.task(t);
    let mut phase = match task.phase {
        Phase::Done(s) => s.name().to_string(),
        // A delegated parent shows how far its children are: `delegated (2/3)`.
        Phase::Delegated | Phase::Running { .. } if task.released || task.phase == Phase::Delegated => {
            let word = orch_engine::view::status(state, t);
            let (done, total) = graph.node(t).children.map_or((0, 0), |g| {
                let tasks = &graph.group(g).tasks;
                (tasks.iter().filter(|&&c| state.task(c).phase.is_done()).count(), tasks.len())
            });
            format!("{word} ({done}/{total})")
        }
        p => p.name().to_string(),
    };
    if let Some(mark) = task.mark {
        phase = format!("{phase} [{}]", mark.name());
    }
    (graph.id(t).to_string(), phase, task.attempts)
}

/// The tasks in declaration (and submission) order, each with its parent.
pub fn flat_lines(state: &State) -> Vec<String> {
    let Some(graph) = state.graph() else { return Vec::new() };
    let mut out = vec![format!("  {:<24} {:<18} {:<24} attempts", "task", "state", "parent")];
    for t in 0..graph.len() as u32 {
        let (id, phase, attempts) = describe(state, t);
        let parent = graph.parent(t).map_or("-", |p| graph.id(p));
        out.push(format!("  {id:<24} {phase:<18} {parent:<24} {attempts}"));
    }
    out
}

/// The task tree: depth-first through the groups, the run's waves first, each parent
/// followed by its children (the report's order, walked without recursion: a delegation
/// chain may be 100,000 deep). The indentation stops growing at `MAX_INDENT` levels, so a
/// deep chain does not print quadratically many spaces; deeper lines carry their depth.
pub fn tree_lines(state: &State) -> Vec<String> {
    const MAX_INDENT: u32 = 32;
    let Some(graph) = state.graph() else { return Vec::new() };
    orch_replay::report::tree_order(graph)
        .into_iter()
        .map(|(depth, t)| {
            let (id, phase, attempts) = describe(state, t);
            let wave = graph.wave(graph.node(t).wave).ordinal;
            let indent = "  ".repeat(depth.min(MAX_INDENT) as usize + 1);
            let deeper = if depth > MAX_INDENT { format!("({depth}) ") } else { String::new() };
            format!("{indent}{deeper}{id:<24} {phase:<10} attempts {attempts} wave {wave}")
        })
        .collect()
}

/// Follows the run's log, keeping the tree current, until the run finishes (or its
/// writer is gone and nothing more arrives).
pub fn watch(run: &Resolved) -> Result<ExitCode, Failure> {
    let tty = std::io::stdout().is_terminal();
    let mut follower = Follower::new(&run.log, 0)?;
    let mut state = State::new();
    let mut last_draw: Option<Instant> = None;
    let mut dirty = true;
    loop {
        let mut failure = None;
        let mut finished = false;
        let new = follower.poll(|r| {
            if failure.is_some() {
                return;
            }
            match Record::decode(r.payload) {
                Ok(record) => {
                    finished |= matches!(record.event, Event::RunFinished(_));
                    if let Err(e) = state.apply(&record) {
                        failure = Some(Failure::Input(format!("{}: seq {}: {e}", run.log.display(), r.seq)));
                    }
                }
                Err(e) => failure = Some(Failure::Input(format!("{}: seq {}: {e}", run.log.display(), r.seq))),
            }
        })?;
        if let Some(e) = failure {
            return Err(e);
        }
        dirty |= new > 0;
        let writer_gone = !finished && new == 0 && lock_state(&run.log)? == LockState::Free;
        let done = finished || writer_gone;
        let due = last_draw.is_none_or(|t| t.elapsed() >= if tty { Duration::from_millis(200) } else { PLAIN_EVERY });
        if dirty && (due || done) {
            if tty {
                draw_tty(run, &state)?;
            } else {
                line(status(&state))?;
            }
            last_draw = Some(Instant::now());
            dirty = false;
        }
        if done {
            if !tty {
                for l in tree_lines(&state) {
                    line(l)?;
                }
            }
            if writer_gone {
                return Ok(engine_gone(run));
            }
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(POLL);
    }
}

/// A follower (`show --watch`, `log --follow`) whose run's writer is gone before the run
/// finished: said on stderr, and exit 1, so that a script following a run can tell a
/// finished one from an engine that died.
pub fn engine_gone(run: &Resolved) -> ExitCode {
    let name = run.id.clone().unwrap_or_else(|| run.log.display().to_string());
    crate::output::note(format!(
        "orch: the run's engine is gone and the run did not finish (crashed?): `orch resume {name}` continues it"
    ));
    ExitCode::from(crate::exit::FAILED)
}

fn status(state: &State) -> String {
    let total = state.graph().map_or(0, |g| g.len());
    let failed = state.tasks().iter().filter(|t| matches!(t.phase, Phase::Done(s) if s.is_failure())).count();
    let phase = match state.run_phase() {
        orch_engine::state::RunPhase::Finished(o) => o.name(),
        orch_engine::state::RunPhase::Running => "running",
        orch_engine::state::RunPhase::NotStarted => "not started",
    };
    format!(
        "[{:>8}] {phase}: {}/{total} done, {} running, {failed} failed",
        format_ms(state.now_ms()),
        state.terminal_count(),
        state.running()
    )
}

fn draw_tty(run: &Resolved, state: &State) -> Result<(), Failure> {
    let mut screen = String::from("\x1b[H\x1b[2J");
    let name = run.id.clone().unwrap_or_else(|| run.log.display().to_string());
    screen += &format!("{name}\n{}\n", status(state));
    let tree = tree_lines(state);
    for l in tree.iter().take(MAX_TREE_LINES) {
        screen += l;
        screen.push('\n');
    }
    if tree.len() > MAX_TREE_LINES {
        screen += &format!("  … {} more tasks\n", tree.len() - MAX_TREE_LINES);
    }
    let mut out = std::io::stdout().lock();
    out.write_all(screen.as_bytes())?;
    out.flush()?;
    Ok(())
}
