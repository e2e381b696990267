//! The stable text rendering of records: one line each, `seq time kind field=value...`,
//! fields in declaration order, nulls left out. Golden snapshots and `orch log --text`
//! use it; `docs/log-text.md` documents it. Changing it changes every golden file.

use orch_engine::record::Record;
use serde_json::Value;

/// Renders one record: `    12     350ms task_finished task=b state=succeeded attempts=2`.
pub fn render(seq: u64, record: &Record) -> String {
    let json = record.to_json(seq);
    let mut out = format!("{seq:>6} {:>9}ms {}", record.time_ms, record.event.name());
    if let Value::Object(map) = json {
        for (key, value) in map.iter().skip(3) {
            match (key.as_str(), value) {
                (_, Value::Null) => {}
                // The whole spec is in the binary log; its digest names it here.
                ("spec", Value::String(s)) => out += &format!(" spec=<{} bytes>", s.len()),
                (_, v) => out += &format!(" {key}={}", scalar(v)),
            }
        }
    }
    out
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) if !s.is_empty() && !s.contains(|c: char| c.is_whitespace() || c == '"' || c == '=') => {
            s.clone()
        }
        other => other.to_string(),
    }
}
