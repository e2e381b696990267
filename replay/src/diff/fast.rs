//! `diff_logs` without decoding what two logs share: the report of [`super::diff`] on all
//! records, computed from the records after the first byte difference (plus record 0 and
//! the few records a report shows), so that `orch diff` on big logs costs about a verify.
//!
//! Why this gives the same report. Let `k` be the first seq ≥ 1 where the payload bytes
//! differ (or where the shorter log ends); record 0 (`run_started`) is compared on its own.
//! Records `1..k` are byte-identical, so they decode to the same records on both sides.
//!
//! - First divergence: records before `k` are equal at every level, so the first divergent
//!   seq is 0 (compared directly) or ≥ `k`; its context is read from the shared prefix.
//! - Tasks: a task's outcome is a function of its own `attempt_dispatched`, `attempt_exited`,
//!   `attempt_lost`, `attempt_kill_requested` and `task_finished` records. A task with none of them after `k` (on either side) has
//!   the same records, hence the same outcome, on both sides; if it has none at all, it
//!   exists on a side only through the spec, which is the same on both (we only take this
//!   path when the spec strings are equal). So only the tasks named after `k` (the
//!   candidates) can differ; their earlier records are looked up in the prefix (by the task
//!   bytes, without decoding anything else). Waves and the run likewise.
//! - Races: a pair is inverted when A and B order its two events differently. A task
//!   whose event (first dispatch, or last `task_finished`) lies before `k` on both sides has
//!   it at the same seq on both (the prefix is shared). Two such tasks are never inverted,
//!   and such a task sorts before every task whose event lies at or after `k` on both
//!   sides, on both sides, so it is never inverted with one either, nor adjacent to one in
//!   an inverted pair. Hence a counted or listed pair needs both of its events at or after
//!   `k`, provided no task has its event before `k` on one side and after it on the other.
//!   That happens only for a task finished twice (before `k` and again after it), which
//!   orch never writes; such logs take the full path.
//! - The spec's parents and declaration order matter only to order two or more task
//!   diffs, to group two or more racing candidates, or to decide whether a task only one
//!   side names exists on the other: the spec is parsed only then.
//!
//! Everything else (different spec strings, a log without a leading `run_started`) takes
//! the full path. One difference remains by design: a record of the shared prefix that
//! does not decode is not noticed here (both logs hold it, byte for byte), where the full
//! path fails; `orch replay` reports it.

use rustc_hash::FxHashSet;
use std::cell::RefCell;
use std::path::Path;

use orch_engine::journal::{read_records, ReadError};
use orch_engine::record::{Event, Record};
use orch_engine::spec::Spec;
use orch_log_format::Reader;

use super::facts::{declared_among, Facts};
use super::first::{describe, same_record};
use super::view::{peek, Side};
use super::{both, diff, outcomes, races, Error, Level, RaceKind, Report, PARALLEL_MIN_RECORDS};

// Record kind codes the prefix scan looks at (see `orch_engine::record`).

/// The run-started kinds: without and with the compiled graph.
pub(super) const RUN_STARTED: [u16; 2] = [1, orch_engine::record::RUN_STARTED_COMPILED];
pub(super) const ATTEMPT_EXITED: u16 = 2;
pub(super) const ATTEMPT_LOST: u16 = 5;
pub(super) const ATTEMPT_DISPATCHED: u16 = 34;
pub(super) const ATTEMPT_KILL_REQUESTED: u16 = 35;
pub(super) const TASK_FINISHED: u16 = 38;
pub(super) const WAVE_CLOSED: u16 = 39;
pub(super) const RUN_FINISHED: u16 = 41;

/// The reference: verify, decode everything, [`diff`]. Each side on a thread of its own.
pub(super) fn in_full(a: &Path, b: &Path, level: Level) -> Result<Report, Error> {
    let (va, vb) = both(|| orch_log_format::verify(a), || orch_log_format::verify(b));
    read_in_full(a, b, level, [va?.digest, vb?.digest])
}

/// [`in_full`] of logs already verified, with their digests.
fn read_in_full(a: &Path, b: &Path, level: Level, digests: [[u8; 32]; 2]) -> Result<Report, Error> {
    let (records_a, records_b) = both(|| read_records(a), || read_records(b));
    let (records_a, records_b) = (records_a?, records_b?);
    let mut report = diff(&records_a, &records_b, level);
    report.log_digests = Some(digests.map(|d| orch_log_format::hex(&d)));
    if level == Level::Exact {
        report.identical = digests[0] == digests[1];
    }
    Ok(report)
}

pub(super) fn diff_logs(a: &Path, b: &Path, level: Level) -> Result<Report, Error> {
    let readers = (Reader::open(a), Reader::open(b));
    // Verify (checksums and the chain) while walking the payloads on this thread.
    let (verified, walked) = std::thread::scope(|s| {
        let verifier = s.spawn(|| (orch_log_format::verify(a), orch_log_format::verify(b)));
        let walked = match &readers {
            (Ok(ra), Ok(rb)) => Some(walk(ra, rb)),
            _ => None,
        };
        (verifier.join().expect("verify does not panic"), walked)
    });
    let (va, vb) = (verified.0?, verified.1?);
    let log_digests = Some([orch_log_format::hex(&va.digest), orch_log_format::hex(&vb.digest)]);
    if va.digest == vb.digest {
        // Byte-identical: equal at every level, nothing to decode.
        return Ok(Report {
            level,
            a: "A".into(),
            b: "B".into(),
            identical: true,
            records: [va.records, vb.records],
            log_digests,
            spec: None,
            first_divergence: None,
            tasks: Vec::new(),
            waves: Vec::new(),
            run: None,
            races: Vec::new(),
            races_total: 0,
        });
    }
    let digests = [va.digest, vb.digest];
    let w = match walked {
        Some(w) => w?,
        None => return read_in_full(a, b, level, digests),
    };
    match compare(&w, a, b, level)? {
        Some(mut report) => {
            report.log_digests = log_digests;
            Ok(report)
        }
        None => {
            drop(w);
            read_in_full(a, b, level, digests)
        }
    }
}

/// The two logs' payloads: A's up to the first difference, then each side's rest.
struct Walked<'r> {
    /// A's payloads `0..k` (B holds the same ones, record 0 aside).
    prefix: Vec<&'r [u8]>,
    /// B's record 0.
    first_b: Option<&'r [u8]>,
    suffix_a: Vec<&'r [u8]>,
    suffix_b: Vec<&'r [u8]>,
}

fn walk<'r>(ra: &'r Reader, rb: &'r Reader) -> Result<Walked<'r>, Error> {
    let (mut ia, mut ib) = (ra.iter(), rb.iter());
    let mut w = Walked { prefix: Vec::new(), first_b: None, suffix_a: Vec::new(), suffix_b: Vec::new() };
    loop {
        let (x, y) = (ia.next().transpose()?, ib.next().transpose()?);
        match (x, y) {
            (Some(x), Some(y)) if x.seq == 0 || x.payload == y.payload => {
                if x.seq == 0 {
                    w.first_b = Some(y.payload);
                }
                w.prefix.push(x.payload);
            }
            (x, y) => {
                w.suffix_a.extend(x.map(|r| r.payload));
                w.suffix_b.extend(y.map(|r| r.payload));
                break;
            }
        }
    }
    for r in ia {
        w.suffix_a.push(r?.payload);
    }
    for r in ib {
        w.suffix_b.push(r?.payload);
    }
    Ok(w)
}

pub(super) fn decode(payload: &[u8], dir: &Path, seq: usize) -> Result<Record, ReadError> {
    Record::decode(payload).map_err(|source| ReadError::Decode {
        dir: dir.display().to_string(),
        seq: seq as u64,
        source,
    })
}

fn decode_all(payloads: &[&[u8]], dir: &Path, from: usize) -> Result<Vec<Record>, ReadError> {
    payloads.iter().enumerate().map(|(i, p)| decode(p, dir, from + i)).collect()
}

/// The report from the walked payloads, or None where the full path must decide.
fn compare(w: &Walked<'_>, a: &Path, b: &Path, level: Level) -> Result<Option<Report>, Error> {
    let (Some(&first_a), Some(first_b)) = (w.prefix.first(), w.first_b) else { return Ok(None) };
    let k = w.prefix.len();
    // Big logs that part early share little: the full path decodes about as much, and it
    // sums up each side, spec included, on a thread of its own. It also decodes the shared
    // prefix, which this path passes over (see the module doc): so only where all of it
    // decodes, and the two paths give the same answer. (Small logs stay here, where the
    // tests compare this path with the full one.)
    let rest = w.suffix_a.len().max(w.suffix_b.len());
    if rest >= PARALLEL_MIN_RECORDS && k < rest && w.prefix[1..].iter().all(|p| Record::decode(p).is_ok()) {
        return Ok(None);
    }
    // Record 0: the same bytes, or the same spec string (the spec section is then empty).
    let mut r0 = None;
    if first_a != first_b || !peek(first_a).is_some_and(|p| RUN_STARTED.contains(&p.0)) {
        let (x, y) = (decode(first_a, a, 0)?, decode(first_b, b, 0)?);
        match (&x.event, &y.event) {
            (Event::RunStarted(sx), Event::RunStarted(sy)) if sx.spec == sy.spec => r0 = Some((x, y)),
            _ => return Ok(None),
        }
    }
    let (suffix_a, suffix_b) = if w.suffix_a.len() + w.suffix_b.len() >= PARALLEL_MIN_RECORDS {
        both(|| decode_all(&w.suffix_a, a, k), || decode_all(&w.suffix_b, b, k))
    } else {
        (decode_all(&w.suffix_a, a, k), decode_all(&w.suffix_b, b, k))
    };
    let (suffix_a, suffix_b) = (suffix_a?, suffix_b?);
    let side_a = Side { first: first_a, prefix: &w.prefix, suffix: &suffix_a, dir: a, error: RefCell::new(None) };
    let side_b = Side { first: first_b, prefix: &w.prefix, suffix: &suffix_b, dir: b, error: RefCell::new(None) };

    let first_divergence = match level {
        Level::Outcomes => None,
        _ => {
            let at_zero = r0.as_ref().is_some_and(|(x, y)| !same_record(x, y, level));
            let n = (k + suffix_a.len()).max(k + suffix_b.len());
            let seq = if at_zero {
                Some(0)
            } else {
                (k..n).find(|&i| match (suffix_a.get(i - k), suffix_b.get(i - k)) {
                    (Some(x), Some(y)) => !same_record(x, y, level),
                    _ => true,
                })
            };
            seq.map(|seq| describe(seq, &side_a, &side_b))
        }
    };

    let Some((fa, fb)) = facts(&side_a, &side_b, k, level)? else { return Ok(None) };
    let (tasks, waves, run) = outcomes::outcome_diffs(&fa, &fb);
    let (races, races_total) = match level {
        Level::Outcomes => (Vec::new(), 0),
        _ => races::races(&side_a, &side_b, &fa, &fb),
    };
    for side in [side_a, side_b] {
        if let Some(e) = side.error.into_inner() {
            return Err(e.into());
        }
    }
    let identical = match level {
        Level::Exact => false, // the digests differ
        Level::Decisions => first_divergence.is_none(),
        Level::Outcomes => tasks.is_empty() && waves.is_empty() && run.is_none(),
    };
    Ok(Some(Report {
        level,
        a: "A".into(),
        b: "B".into(),
        identical,
        records: [(k + suffix_a.len()) as u64, (k + suffix_b.len()) as u64],
        log_digests: None,
        spec: None,
        first_divergence,
        tasks,
        waves,
        run,
        races,
        races_total,
    }))
}

/// Both sides' facts about the candidates (what can differ), or None for the full path.
fn facts(a: &Side<'_>, b: &Side<'_>, k: usize, level: Level) -> Result<Option<(Facts, Facts)>, Error> {
    // The candidates: tasks, waves and the run with records after `k` on either side.
    // Only looked up or scanned in full (no order reaches the report): a hash set.
    let mut tasks: FxHashSet<&str> = FxHashSet::default();
    let mut waves = false;
    let mut run = false;
    for r in a.suffix.iter().chain(b.suffix) {
        match &r.event {
            Event::AttemptDispatched(x) => _ = tasks.insert(&x.task),
            Event::AttemptExited(x) => _ = tasks.insert(&x.task),
            Event::TaskFinished(x) => _ = tasks.insert(&x.task),
            Event::WaveClosed(_) => waves = true,
            Event::RunFinished(_) => run = true,
            _ => {}
        }
    }
    // Their records in the shared prefix (record 0 is `run_started`: nothing to learn).
    let wanted: FxHashSet<&[u8]> = tasks.iter().map(|t| t.as_bytes()).collect();
    let mut shared = Facts::default();
    shared.spec = Some(Default::default());
    for (seq, payload) in a.prefix.iter().enumerate().skip(1) {
        let relevant = match peek(payload) {
            Some((
                ATTEMPT_EXITED | ATTEMPT_LOST | ATTEMPT_DISPATCHED | ATTEMPT_KILL_REQUESTED | TASK_FINISHED,
                Some(task),
            )) => wanted.contains(task),
            Some((WAVE_CLOSED, _)) => waves,
            Some((RUN_FINISHED, _)) => run,
            Some((
                ATTEMPT_EXITED | ATTEMPT_LOST | ATTEMPT_DISPATCHED | ATTEMPT_KILL_REQUESTED | TASK_FINISHED,
                None,
            ))
            | None => true,
            Some(_) => false,
        };
        if !relevant {
            continue;
        }
        let record = decode(payload, a.dir, seq)?;
        let keep = match &record.event {
            Event::AttemptDispatched(x) => tasks.contains(x.task.as_str()),
            Event::AttemptExited(x) => tasks.contains(x.task.as_str()),
            Event::AttemptLost(x) => tasks.contains(x.task.as_str()),
            Event::AttemptKillRequested(x) => tasks.contains(x.task.as_str()),
            Event::TaskFinished(x) => tasks.contains(x.task.as_str()),
            Event::WaveClosed(_) => waves,
            Event::RunFinished(_) => run,
            _ => false,
        };
        if keep {
            shared.absorb(seq as u64, &record);
        }
    }
    let side = |suffix: &[Record]| {
        let mut f = shared.clone();
        for (i, r) in suffix.iter().enumerate() {
            f.absorb((k + i) as u64, r);
        }
        f.floor = k as u64;
        f
    };
    let (mut fa, mut fb) = if a.suffix.len() + b.suffix.len() >= PARALLEL_MIN_RECORDS {
        both(|| side(a.suffix), || side(b.suffix))
    } else {
        (side(a.suffix), side(b.suffix))
    };
    // A task finished before `k` on one side and after it on the other (see the module doc).
    for t in &tasks {
        if let (Some(x), Some(y)) = (fa.finished(t), fb.finished(t)) {
            if (x < k as u64) != (y < k as u64) {
                return Ok(None);
            }
        }
    }
    // Whether the spec matters (see the module doc).
    let one_sided = tasks.iter().any(|t| fa.named(t) != fb.named(t));
    let racing = |kind| {
        fa.events(kind).filter(|&(t, x)| fb.at(t, kind).is_some_and(|y| x >= k as u64 || y >= k as u64)).count() >= 2
    };
    let need_spec =
        one_sided || (level != Level::Outcomes && (racing(RaceKind::Dispatch) || racing(RaceKind::Completion)));
    if !need_spec {
        let (mut xa, mut xb) = (fa.clone(), fb.clone());
        xa.settle();
        xb.settle();
        if outcomes::outcome_diffs(&xa, &xb).0.len() < 2 {
            return Ok(Some((xa, xb)));
        }
        // Two or more task diffs: their order is the spec's declaration order.
    }
    if let Some(spec) = spec_of(a)? {
        let declared = declared_among(&spec, &tasks);
        fa.declare(declared.iter().copied());
        fb.declare(declared.iter().copied());
    }
    fa.settle();
    fb.settle();
    Ok(Some((fa, fb)))
}

/// Side A's spec (both sides hold the same string here), or None when it is unreadable:
/// then no candidate is declared, as `Facts::absorb` does.
fn spec_of(a: &Side<'_>) -> Result<Option<Spec>, Error> {
    let record = decode(a.first, a.dir, 0)?;
    Ok(match &record.event {
        Event::RunStarted(s) => serde_json::from_str::<Spec>(&s.spec).ok(),
        _ => None,
    })
}
