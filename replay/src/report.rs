//! `orch report`: one self-contained HTML page of a run — a Gantt timeline of every
//! attempt, concurrency over time against the cap, the critical path, a sortable task
//! table and the run summary. No network: CSS, JS and SVG are inline.
//!
//! Built to stay usable for 100,000 tasks: the Gantt and the table are drawn by a small
//! script from compact inline JSON (a canvas that paints only the rows in view; a table
//! that renders one page at a time), not from one DOM element per bar.

use std::fmt::Write;

use orch_engine::graph::{Graph, TaskIdx, ROOT};
use orch_engine::record::{ExitStatus, Record};
use orch_engine::state::State;
use serde_json::{json, Value};

use crate::rollup::Rollup;
use crate::summary::Summary;
use crate::timeline::{AttemptEnd, Timeline};

/// Attempt outcomes, in the order their codes index (the page colours by code).
pub const OUTCOMES: [&str; 6] = ["ok", "failed", "timed_out", "cancelled", "lost", "running"];

/// Most steps drawn in the concurrency chart (longer series keep each bucket's peak).
const CONCURRENCY_BUCKETS: usize = 600;

const STYLE: &str = include_str!("report_assets/report.css");
const SCRIPT: &str = include_str!("report_assets/report.js");

/// Renders the report of `records` (a finished or a live run) as one HTML document.
pub fn render(records: &[Record]) -> String {
    render_state(&crate::timeline::fold_prefix(records), records)
}

/// `render`, with the graph taken from `state`, a fold of (a prefix of) the same records.
pub fn render_state(state: &State, records: &[Record]) -> String {
    let tl = Timeline::of_state(state, records);
    let rollup = Rollup::of(&tl);
    let summary = Summary::with_rollup(records, &rollup);
    let data = data(&tl, &rollup, &summary);
    let title = tl.graph.as_ref().and_then(|g| g.spec.run.name.clone()).unwrap_or_else(|| "orch run".to_string());
    let outcome = summary.outcome.map_or(if tl.finished { "finished" } else { "unfinished" }, |o| o.name());
    let mut html = String::with_capacity(256 * tl.attempts.len() / 4 + 64 * 1024);
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{t} — orch report</title>\n<style>{STYLE}</style></head>\n<body>\n\
         <header><h1>{t}</h1><span class=\"outcome {o}\">{o}</span></header>\n\
         <section id=\"summary\"><h2>Summary</h2><pre>{s}</pre></section>\n\
         <section id=\"concurrency\"><h2>Concurrency</h2>{c}</section>\n\
         <section id=\"timeline\"><h2>Timeline</h2><div class=\"legend\">{l}\
         <label>zoom <input id=\"zoom\" type=\"range\" min=\"0\" max=\"12\" step=\"0.5\" value=\"0\"></label> \
         <label>pan <input id=\"pan\" type=\"range\" min=\"0\" max=\"1000\" value=\"0\"></label></div>\n\
         <div id=\"gantt\"><canvas id=\"gantt-canvas\"></canvas><div id=\"gantt-space\"></div></div>\n\
         <div id=\"tip\" hidden></div></section>\n\
         <section id=\"tasks\"><h2>Tasks</h2><div class=\"controls\"><input id=\"filter\" \
         placeholder=\"filter by id or state\"> <span id=\"pager\"></span></div>\n\
         <table id=\"task-table\"><thead><tr><th data-col=\"0\">task</th><th data-col=\"1\">state</th>\
         <th data-col=\"2\">attempts</th><th data-col=\"3\">duration ms</th><th data-col=\"4\">exit</th>\
         <th data-col=\"5\">output bytes</th><th data-col=\"8\">queue wait ms</th></tr></thead>\
         <tbody></tbody></table></section>\n\
         <script type=\"application/json\" id=\"data\">",
        t = escape(&title),
        o = escape(outcome),
        s = escape(&summary.render()),
        c = concurrency_svg(&tl, rollup.cap),
        l = legend(),
    );
    // JSON inside <script>: no `<` may appear raw (it could close the element).
    html += &serde_json::to_string(&data).expect("report data renders").replace('<', "\\u003c");
    html += "</script>\n<script>";
    html += SCRIPT;
    html += "</script>\n</body></html>\n";
    html
}

/// The page's data. `tasks` rows are in tree order (a parent, then its children):
/// `[id, state, attempts, duration_ms, exit, output_bytes, critical, depth, queue_wait_ms]`;
/// `attempts` is flat, four numbers per attempt: `row, start_ms, end_ms, outcome code`.
pub fn data(tl: &Timeline, rollup: &Rollup, summary: &Summary) -> Value {
    let Some(graph) = tl.graph.as_deref() else {
        return json!({"now": tl.now_ms, "tasks": [], "attempts": [], "outcomes": OUTCOMES, "critical": []});
    };
    let order = tree_order(graph);
    let mut row_of = vec![0u32; graph.len()];
    for (row, &(_, t)) in order.iter().enumerate() {
        row_of[t as usize] = row as u32;
    }
    let mut critical = vec![false; graph.len()];
    for id in &rollup.critical_path {
        if let Some(t) = graph.task(id) {
            critical[t as usize] = true;
        }
    }
    let mut tasks = Vec::with_capacity(order.len());
    for &(depth, t) in &order {
        let times = &tl.tasks[t as usize];
        let state = times.state.map_or_else(|| live_state(tl, t), |s| s.name());
        let last = times.attempts.last().map(|&i| &tl.attempts[i]);
        let exit = match last.map(|a| a.end) {
            Some(AttemptEnd::Exited(ExitStatus::Code(c))) => json!(c),
            Some(AttemptEnd::Exited(ExitStatus::Signal(s))) => json!(format!("signal {s}")),
            Some(AttemptEnd::Lost) => json!("lost"),
            _ => Value::Null,
        };
        let wait = match (times.ready_ms, times.first_dispatch_ms) {
            (Some(r), Some(d)) => json!(d.saturating_sub(r)),
            _ => Value::Null,
        };
        tasks.push(json!([
            graph.id(t),
            state,
            times.attempts.len(),
            tl.span_ms(t),
            exit,
            last.map_or(0, |a| a.output_bytes),
            critical[t as usize] as u8,
            depth,
            wait
        ]));
    }
    let mut attempts = Vec::with_capacity(tl.attempts.len() * 4);
    for a in &tl.attempts {
        let code = OUTCOMES.iter().position(|&o| o == a.outcome()).unwrap_or(0);
        attempts.extend([row_of[a.task as usize] as u64, a.start_ms, a.end_or(tl.now_ms), code as u64]);
    }
    json!({
        "now": tl.now_ms,
        "cap": rollup.cap,
        "peak": rollup.peak_concurrency,
        "outcomes": OUTCOMES,
        "critical": rollup.critical_path,
        "critical_path_ms": summary.critical_path_ms,
        "tasks": tasks,
        "attempts": attempts,
    })
}

/// Depth-first through the groups: the run's waves in order, each parent followed by
/// its children. Returns `(depth, task)`.
pub fn tree_order(graph: &Graph) -> Vec<(u32, TaskIdx)> {
    let mut out = Vec::with_capacity(graph.len());
    // An explicit stack: a deep delegation chain must not overflow the call stack.
    let mut stack: Vec<(u32, TaskIdx)> = Vec::new();
    let push_group = |stack: &mut Vec<(u32, TaskIdx)>, g: u32, depth: u32| {
        let tasks: Vec<TaskIdx> = graph.group(g).waves.iter().flat_map(|&w| graph.wave(w).tasks.clone()).collect();
        stack.extend(tasks.into_iter().rev().map(|t| (depth, t)));
    };
    push_group(&mut stack, ROOT, 0);
    while let Some((depth, t)) = stack.pop() {
        out.push((depth, t));
        if let Some(g) = graph.node(t).children {
            push_group(&mut stack, g, depth + 1);
        }
    }
    out
}

fn live_state(tl: &Timeline, t: TaskIdx) -> &'static str {
    let times = &tl.tasks[t as usize];
    match times.attempts.last().map(|&i| tl.attempts[i].end) {
        Some(AttemptEnd::Running) => "running",
        _ if times.delegated_ms.is_some() => "delegated",
        Some(_) => "backing_off",
        None if times.ready_ms.is_some() => "ready",
        None => "waiting",
    }
}

fn legend() -> String {
    let mut out = String::new();
    for o in OUTCOMES {
        let _ = write!(out, "<span class=\"key {o}\"></span>{o} ");
    }
    out + "<span class=\"key crit\"></span>critical path"
}

/// Running attempts over time as an inline SVG step chart, with the cap as a dashed line.
fn concurrency_svg(tl: &Timeline, cap: Option<u32>) -> String {
    let (width, height) = (1000.0, 140.0);
    let now = tl.now_ms.max(1) as f64;
    let top = tl.peak_concurrency.max(cap.unwrap_or(0).min(tl.peak_concurrency * 2)).max(1) as f64;
    let y = |n: u32| height - 10.0 - (n as f64 / top) * (height - 30.0);
    // Each bucket keeps its peak, so downsampling never hides a maximum.
    let buckets = CONCURRENCY_BUCKETS.min(tl.now_ms as usize + 1).max(2);
    let mut peak = vec![None::<u32>; buckets];
    let mut last = vec![None::<u32>; buckets];
    for &(time, n) in &tl.concurrency {
        let b = ((time as f64 / now) * (buckets as f64 - 1.0)).round() as usize;
        peak[b] = Some(peak[b].map_or(n, |p| p.max(n)));
        last[b] = Some(n);
    }
    let mut path = format!("M0,{:.1}", y(0));
    let mut current = 0;
    for b in 0..buckets {
        let x = b as f64 / (buckets - 1) as f64 * width;
        if let Some(p) = peak[b] {
            let _ = write!(path, " H{x:.1} V{:.1}", y(p));
            current = last[b].unwrap_or(p);
            let _ = write!(path, " V{:.1}", y(current));
        }
    }
    let _ = write!(path, " H{width:.1} V{:.1}", y(current));
    let mut svg = format!(
        "<svg id=\"concurrency-chart\" viewBox=\"0 0 {width} {height}\" preserveAspectRatio=\"none\" \
         role=\"img\" aria-label=\"running attempts over time\"><path class=\"running\" d=\"{path}\"/>"
    );
    if let Some(cap) = cap.filter(|&c| c as f64 <= top) {
        let _ = write!(svg, "<line class=\"cap\" x1=\"0\" x2=\"{width}\" y1=\"{0:.1}\" y2=\"{0:.1}\"/>", y(cap));
        let _ = write!(svg, "<text x=\"4\" y=\"{:.1}\">cap {cap}</text>", y(cap) - 3.0);
    }
    let _ = write!(
        svg,
        "<text x=\"{:.1}\" y=\"14\" text-anchor=\"end\">peak {} in slots · {} ms</text></svg>",
        width - 4.0,
        tl.peak_concurrency,
        tl.now_ms
    );
    svg
}

/// Escapes text for HTML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out += "&amp;",
            '<' => out += "&lt;",
            '>' => out += "&gt;",
            '"' => out += "&quot;",
            '\'' => out += "&#39;",
            c => out.push(c),
        }
    }
    out
}
