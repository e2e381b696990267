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

/// A line of the tree or the flat list, with its task (None: a header).
type Row = (Option<u32>, String);

/// The tasks in declaration (and submission) order, each with its parent.
pub fn flat_lines(state: &State) -> Vec<String> {
    flat_rows(state).into_iter().map(|(_, l)| l).collect()
}

fn flat_rows(state: &State) -> Vec<Row> {
    let Some(graph) = state.graph() else { return Vec::new() };
    let mut out = vec![(None, format!("  {:<24} {:<18} {:<24} attempts", "task", "state", "parent"))];
    for t in 0..graph.len() as u32 {
        let (id, phase, attempts) = describe(state, t);
        let parent = graph.parent(t).map_or("-", |p| graph.id(p));
        out.push((Some(t), format!("  {id:<24} {phase:<18} {parent:<24} {attempts}")));
    }
    out
}

/// The task tree: depth-first through the groups, the run's waves first, each parent
/// followed by its children (the report's order, walked without recursion: a delegation
/// chain may be 100,000 deep). The indentation stops growing at `MAX_INDENT` levels, so a
/// deep chain does not print quadratically many spaces; deeper lines carry their depth.
pub fn tree_lines(state: &State) -> Vec<String> {
    tree_rows(state).into_iter().map(|(_, l)| l).collect()
}

fn tree_rows(state: &State) -> Vec<Row> {
    const MAX_INDENT: u32 = 32;
    let Some(graph) = state.graph() else { return Vec::new() };
    orch_replay::report::tree_order(graph)
        .into_iter()
        .map(|(depth, t)| {
            let (id, phase, attempts) = describe(state, t);
            let wave = graph.wave(graph.node(t).wave).ordinal;
            let indent = "  ".repeat(depth.min(MAX_INDENT) as usize + 1);
            let deeper = if depth > MAX_INDENT { format!("({depth}) ") } else { String::new() };
            (Some(t), format!("{indent}{deeper}{id:<24} {phase:<10} attempts {attempts} wave {wave}"))
        })
        .collect()
}

/// At most `max` task rows of `rows`, in their order: the busy tasks first (running,
/// backing off, delegated), then the ready ones, then the rest from the top — a long run
/// cut to its first tasks would hide what is happening. Headers are kept.
fn screenful(rows: Vec<Row>, state: &State, max: usize) -> Vec<String> {
    let tasks = rows.iter().filter(|(t, _)| t.is_some()).count();
    if tasks <= max {
        return rows.into_iter().map(|(_, l)| l).collect();
    }
    let rank = |t: u32| match state.task(t).phase {
        Phase::Running { .. } | Phase::Exited { .. } | Phase::BackingOff { .. } | Phase::Delegated => 0u8,
        Phase::Ready => 1,
        _ => 2,
    };
    let mut by_rank: Vec<(u8, usize)> =
        rows.iter().enumerate().filter_map(|(i, (t, _))| t.map(|t| (rank(t), i))).collect();
    by_rank.sort_unstable();
    let mut shown = vec![false; rows.len()];
    for &(_, i) in by_rank.iter().take(max) {
        shown[i] = true;
    }
    let mut out: Vec<String> =
        rows.into_iter().zip(shown).filter(|((t, _), shown)| t.is_none() || *shown).map(|((_, l), _)| l).collect();
    out.push(format!("  … {} more tasks", tasks - max));
    out
}

/// Follows the run's log, keeping the tree current, until the run finishes (or its
/// writer is gone and nothing more arrives).
pub fn watch(run: &Resolved, flat: bool) -> Result<ExitCode, Failure> {
    let rows = if flat { flat_rows } else { tree_rows };
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
                // The last frame whole: the final states are what is looked for.
                draw_tty(run, &state, rows(&state), if done { usize::MAX } else { MAX_TREE_LINES })?;
            } else {
                line(status(&state))?;
            }
            last_draw = Some(Instant::now());
            dirty = false;
        }
        if done {
            if !tty {
                for (_, l) in rows(&state) {
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

fn draw_tty(run: &Resolved, state: &State, rows: Vec<Row>, max: usize) -> Result<(), Failure> {
    let mut screen = String::from("\x1b[H\x1b[2J");
    let name = run.id.clone().unwrap_or_else(|| run.log.display().to_string());
    screen += &format!("{name}\n{}\n", status(state));
    for l in screenful(rows, state, max) {
        screen += &l;
        screen.push('\n');
    }
    let mut out = std::io::stdout().lock();
    out.write_all(screen.as_bytes())?;
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use orch_engine::record::Record;
    use orch_engine::spec::{parse, Format};

    #[test]
    fn a_cut_tree_shows_the_running_tasks_wherever_they_are() {
        let mut text = String::from("[run]\nmax_concurrency = 4\n");
        for i in 0..60 {
            text += &format!("[[task]]\nid = \"t{i:02}\"\ncommand = \"true\"\nsim = {{ duration_ms = 10 }}\n");
        }
        let mut records = Vec::new();
        orch_engine::sim::simulate(parse(&text, "w.toml", Format::Toml).unwrap(), 0, |rs: &[Record]| {
            records.extend_from_slice(rs);
            Ok::<(), std::convert::Infallible>(())
        })
        .unwrap();
        // The state when 40 tasks are done and 4 run: all of them below the first 20 rows.
        let mut state = State::new();
        for r in &records {
            state.apply(r).unwrap();
            if state.terminal_count() >= 40 && state.running() == 4 {
                break;
            }
        }
        assert_eq!(state.running(), 4);
        let lines = screenful(tree_rows(&state), &state, 20);
        assert_eq!(lines.len(), 21, "{lines:#?}");
        assert_eq!(lines.iter().filter(|l| l.contains(" running ")).count(), 4, "{lines:#?}");
        assert_eq!(lines.last().unwrap(), "  … 40 more tasks");
        // A tree that fits is whole, and a header is always kept.
        assert_eq!(screenful(flat_rows(&state), &state, 100).len(), 61);
        assert!(screenful(flat_rows(&state), &state, 10)[0].contains("attempts"));
    }
}
