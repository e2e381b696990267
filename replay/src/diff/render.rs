//! The human-readable rendering of a [`Report`] (what `orch diff` prints without `--json`),
//! kept apart from the comparison so the wording can change without touching the logic.

use orch_engine::record::{Digest, Terminal};

use super::{Level, Report, RunResult, TaskOutcome, WaveOutcome};

impl Report {
    /// The human-readable report.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let verdict = if self.identical { "same" } else { "different" };
        out += &format!("A: {}\nB: {}\n", self.a, self.b);
        out +=
            &format!("{verdict} at level {} ({} vs {} records)\n", self.level.name(), self.records[0], self.records[1]);
        if let Some([da, db]) = &self.log_digests {
            if da == db {
                out += &format!("log digests equal: {da}\n");
            } else {
                out += &format!("log digests differ:\n  A {da}\n  B {db}\n");
            }
        }
        if let Some(s) = &self.spec {
            let digest = |d: &Option<Digest>| d.map_or("(no run_started)".to_string(), |d| d.short());
            out += &format!("\nspec differs: A {} vs B {}\n", digest(&s.digests[0]), digest(&s.digests[1]));
            match (s.run, s.run_keys.is_empty()) {
                (true, false) => out += &format!("  [run] changed: {}\n", s.run_keys.join(", ")),
                (true, true) => out += "  [run] changed\n",
                (false, _) => {}
            }
            if s.waves {
                out += "  [[wave]]s changed\n";
            }
            if !s.tasks.is_empty() {
                let named = |id: &String| match s.task_keys.get(id).map(Vec::as_slice) {
                    // `(only in A)`: already in parentheses.
                    Some([only]) if only.starts_with('(') => format!("{id} {only}"),
                    Some(keys) if !keys.is_empty() => format!("{id} ({})", keys.join(", ")),
                    _ => id.clone(),
                };
                out += &format!("  tasks changed: {}\n", s.tasks.iter().map(named).collect::<Vec<_>>().join(", "));
            }
        }
        if let Some(d) = &self.first_divergence {
            let named = if d.tasks.is_empty() { String::new() } else { format!(" (task {})", d.tasks.join(", task ")) };
            out += &format!("\nfirst divergence at seq {}{named}\n", d.seq);
            if d.context_a == d.context_b {
                for l in &d.context_a {
                    out += &format!("     {l}\n");
                }
            } else {
                for l in &d.context_a {
                    out += &format!("  A  {l}\n");
                }
                for l in &d.context_b {
                    out += &format!("  B  {l}\n");
                }
            }
            let show = |r: &Option<String>| r.clone().unwrap_or_else(|| "(the log ends here)".into());
            out += &format!("- A  {}\n+ B  {}\n", show(&d.a), show(&d.b));
        } else if !self.identical && self.level == Level::Exact && self.spec.is_none() {
            // Records compare as rendered: a run-started record with its compiled graph
            // (kind 11) and one without (kind 1, an older orch) render alike.
            out += "\nevery record is equal as rendered, but the bytes differ (segment layout, or a run-started \
                    record with its compiled graph against one without: an orch before kind 11)\n";
        }
        if !self.tasks.is_empty() {
            out += "\ntasks that ended differently:\n";
            for t in &self.tasks {
                out += &format!("  {}: {}\n", t.task, t.fields.join(", "));
                out += &format!("    A {}\n    B {}\n", describe_task(&t.a), describe_task(&t.b));
            }
        }
        if !self.waves.is_empty() {
            out += "\nwaves that closed differently:\n";
            for w in &self.waves {
                let of = w.parent.as_ref().map_or("the run".to_string(), |p| format!("task {p}"));
                out += &format!(
                    "  wave {} of {of}\n    A {}\n    B {}\n",
                    w.wave,
                    describe_wave(&w.a),
                    describe_wave(&w.b)
                );
            }
        }
        if let Some(r) = &self.run {
            out += &format!("\nthe run ended differently:\n  A {}\n  B {}\n", describe_run(&r.a), describe_run(&r.b));
        }
        if self.races_total > 0 {
            out += &format!("\nsiblings in a different order ({} pair(s)", self.races_total);
            if self.races_total > self.races.len() as u64 {
                out += &format!(", first {} shown", self.races.len());
            }
            out += "):\n";
            for r in &self.races {
                let of = r.parent.as_ref().map_or("the run".to_string(), |p| format!("task {p}"));
                out += &format!(
                    "  {} and {} (children of {of}): A {verb} {} before {}; B {verb} {} before {}\n",
                    r.first,
                    r.second,
                    r.first,
                    r.second,
                    r.second,
                    r.first,
                    verb = r.kind.verb()
                );
                out += &side_by_side(&r.a, &r.b);
            }
        }
        out
    }
}

fn describe_task(t: &Option<TaskOutcome>) -> String {
    let Some(t) = t else { return "(no such task)".into() };
    let mut s = format!(
        "{}, {} attempt(s), output {}",
        t.state.map_or("unfinished", Terminal::name),
        t.attempts,
        t.output.map_or("-".to_string(), |d| d.short())
    );
    if let Some(agg) = t.aggregate {
        s += &format!(", aggregate {}", agg.short());
    }
    s
}

fn describe_wave(w: &Option<WaveOutcome>) -> String {
    match w {
        None => "(not closed)".into(),
        Some(w) => format!(
            "{} failure(s){}, aggregate {}",
            w.failures,
            if w.stopped { ", stopped" } else { "" },
            w.aggregate.short()
        ),
    }
}

fn describe_run(r: &Option<RunResult>) -> String {
    match r {
        None => "(unfinished)".into(),
        Some(r) => format!("{}, aggregate {}", r.outcome.name(), r.aggregate.short()),
    }
}

fn side_by_side(a: &[String], b: &[String]) -> String {
    let width = a.iter().map(|l| l.chars().count()).max().unwrap_or(0).max(1);
    let mut out = format!("    {:<width$} | {}\n", "A", "B");
    for i in 0..a.len().max(b.len()) {
        let l = a.get(i).map_or("", String::as_str);
        let r = b.get(i).map_or("", String::as_str);
        out += &format!("    {l:<width$} | {r}\n");
    }
    out
}
