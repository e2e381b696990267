//! Exports of a run for other tools: Chrome's Trace Event Format (which Perfetto and
//! chrome://tracing open) and JSON lines (one record per line, as `orch log` prints).
//!
//! In the trace, every concurrency slot is a track (tid): an attempt takes the lowest
//! free slot when it is dispatched and frees it when it exits, taken in record order, so
//! the slot layout is a function of the log and slices on one track never overlap.
//! Track 0 carries the scheduler's decisions as instant events; flow arrows go from a
//! parent that delegated to the first attempt of each of its children.

use std::collections::BTreeSet;
use std::io::Write;

use orch_engine::record::{Event, Record};
use serde_json::{json, Value};

use crate::timeline::Timeline;

/// The tid of the scheduler's track; slots are 1, 2, ...
pub const SCHEDULER_TID: u32 = 0;

/// The slot (1-based tid) of every attempt, by index into `tl.attempts`.
///
/// Record order decides: at each record, an exit frees its slot and a dispatch takes the
/// lowest free one. A live attempt keeps its slot.
pub fn assign_slots(tl: &Timeline) -> Vec<u32> {
    let mut events: Vec<(u64, usize)> = Vec::with_capacity(tl.attempts.len() * 2);
    for (i, a) in tl.attempts.iter().enumerate() {
        events.push((a.dispatch_seq, i));
        if let Some(end) = a.end_seq {
            events.push((end, i));
        }
    }
    events.sort_unstable();
    let mut slots = vec![0u32; tl.attempts.len()];
    let mut free: BTreeSet<u32> = BTreeSet::new();
    let mut next = 1u32;
    for (seq, i) in events {
        if tl.attempts[i].dispatch_seq == seq {
            slots[i] = free.pop_first().unwrap_or_else(|| {
                next += 1;
                next - 1
            });
        } else {
            free.insert(slots[i]);
        }
    }
    slots
}

/// The run as a Trace Event Format document (`{"traceEvents": [...]}`); times in µs.
pub fn chrome_trace(records: &[Record], tl: &Timeline) -> Value {
    let Some(graph) = tl.graph.as_deref() else { return json!({ "traceEvents": [] }) };
    let slots = assign_slots(tl);
    // Saturating: a log may hold times near the end of u64.
    let us = |ms: u64| ms.saturating_mul(1000);
    let name = graph.spec.run.name.clone().unwrap_or_else(|| "orch run".to_string());
    let mut events = vec![
        json!({"name": "process_name", "ph": "M", "pid": 1, "tid": SCHEDULER_TID, "args": {"name": name}}),
        json!({"name": "thread_name", "ph": "M", "pid": 1, "tid": SCHEDULER_TID, "args": {"name": "scheduler"}}),
    ];
    let slot_count = slots.iter().copied().max().unwrap_or(0);
    for slot in 1..=slot_count {
        events.push(
            json!({"name": "thread_name", "ph": "M", "pid": 1, "tid": slot, "args": {"name": format!("slot {slot}")}}),
        );
        events
            .push(json!({"name": "thread_sort_index", "ph": "M", "pid": 1, "tid": slot, "args": {"sort_index": slot}}));
    }
    for (i, a) in tl.attempts.iter().enumerate() {
        let end = a.end_or(tl.now_ms);
        events.push(json!({
            "name": graph.id(a.task), "cat": "attempt", "ph": "X", "pid": 1, "tid": slots[i],
            "ts": us(a.start_ms), "dur": us(end.saturating_sub(a.start_ms)),
            "args": {"task": graph.id(a.task), "attempt": a.attempt, "outcome": a.outcome(),
                     "output_bytes": a.output_bytes, "dispatch_seq": a.dispatch_seq, "end_seq": a.end_seq},
        }));
    }
    for (seq, r) in records.iter().enumerate() {
        if r.event.is_input() || matches!(r.event, Event::AttemptDispatched(_)) {
            continue;
        }
        let mut args = r.to_json(seq as u64);
        if let Some(map) = args.as_object_mut() {
            map.remove("kind");
            map.remove("time_ms");
        }
        events.push(json!({
            "name": r.event.name(), "cat": "decision", "ph": "i", "s": "t", "pid": 1, "tid": SCHEDULER_TID,
            "ts": us(r.time_ms), "args": args,
        }));
    }
    // Delegation: parent's last own attempt → each child's first attempt.
    let mut flow_id = 0u64;
    for (t, times) in tl.tasks.iter().enumerate() {
        let (Some(_), Some(&last)) = (times.delegated_ms, times.attempts.last()) else { continue };
        let Some(group) = graph.node(t as u32).children else { continue };
        let parent = &tl.attempts[last];
        let from_us = us(parent.end_or(tl.now_ms)).saturating_sub(1).max(us(parent.start_ms));
        for &child in &graph.group(group).tasks {
            let Some(&first) = tl.tasks[child as usize].attempts.first() else { continue };
            let to = &tl.attempts[first];
            flow_id += 1;
            events.push(json!({"name": "delegated", "cat": "delegation", "ph": "s", "id": flow_id, "pid": 1,
                               "tid": slots[last], "ts": from_us}));
            events.push(json!({"name": "delegated", "cat": "delegation", "ph": "f", "bp": "e", "id": flow_id,
                               "pid": 1, "tid": slots[first], "ts": us(to.start_ms)}));
        }
    }
    json!({ "traceEvents": events, "displayTimeUnit": "ms" })
}

/// One JSON record per line, exactly as `orch log` prints them.
pub fn write_jsonl(records: &[Record], out: &mut impl Write) -> std::io::Result<()> {
    for (seq, r) in records.iter().enumerate() {
        serde_json::to_writer(&mut *out, &r.to_json(seq as u64))?;
        out.write_all(b"\n")?;
    }
    Ok(())
}
