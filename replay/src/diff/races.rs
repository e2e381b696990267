//! Siblings that the two runs dispatched or completed in opposite orders, with the two
//! interleavings side by side.

use std::collections::BTreeMap;

use orch_engine::record::{Event, Record};

use super::facts::Facts;
use super::first::task_of;
use super::{Race, RaceKind, Records, MAX_RACES_LISTED};

/// Lines of each side of a race's interleaving.
const MAX_INTERLEAVING_LINES: usize = 16;

// ---- races --------------------------------------------------------------------------

/// Sibling pairs whose first dispatch, or completion, A and B ordered differently. Every
/// inverted pair is counted; the pairs adjacent in A's order are listed (a permutation
/// that is not the identity always has one), so the listing is linear in the tasks.
pub(super) fn races(a: &dyn Records, b: &dyn Records, fa: &Facts, fb: &Facts) -> (Vec<Race>, u64) {
    let mut listed = Vec::new();
    let mut total = 0u64;
    for kind in [RaceKind::Dispatch, RaceKind::Completion] {
        // Siblings present on both sides, grouped by parent, in A's order.
        let mut groups: BTreeMap<Option<&str>, Vec<(u64, u64, &str)>> = BTreeMap::new();
        for (task, sa) in fa.events(kind) {
            let Some(sb) = fb.at(task, kind) else { continue };
            if sa < fa.floor && sb < fb.floor {
                continue; // in the common prefix: in its place on both sides (see `Facts::floor`)
            }
            let parent = fa.parent(task);
            if fb.parent(task) != parent {
                continue; // moved to another parent: not siblings on both sides
            }
            groups.entry(parent).or_default().push((sa, sb, task));
        }
        for (parent, mut group) in groups {
            group.sort();
            let ranks: Vec<u64> = group.iter().map(|g| g.1).collect();
            total += count_inversions(&ranks);
            for w in group.windows(2) {
                let ((_, sb1, t1), (_, sb2, t2)) = (w[0], w[1]);
                if sb2 < sb1 && listed.len() < MAX_RACES_LISTED {
                    listed.push(Race {
                        kind,
                        parent: parent.map(String::from),
                        first: t1.to_string(),
                        second: t2.to_string(),
                        a: interleaving(a, fa, kind, t1, t2),
                        b: interleaving(b, fb, kind, t1, t2),
                    });
                }
            }
        }
    }
    (listed, total)
}

/// Pairs `i < j` with `v[i] > v[j]`: a bottom-up merge sort that counts, when merging,
/// the left-run items each right-run item overtakes. O(n log n), two buffers in all.
pub(super) fn count_inversions(v: &[u64]) -> u64 {
    let (mut runs, mut merged) = (v.to_vec(), vec![0; v.len()]);
    let n = v.len();
    let mut count = 0;
    let mut width = 1;
    while width < n {
        for start in (0..n).step_by(2 * width) {
            let mid = (start + width).min(n);
            let end = (start + 2 * width).min(n);
            let (mut i, mut j, mut k) = (start, mid, start);
            while i < mid && j < end {
                if runs[j] < runs[i] {
                    merged[k] = runs[j];
                    count += (mid - i) as u64;
                    j += 1;
                } else {
                    merged[k] = runs[i];
                    i += 1;
                }
                k += 1;
            }
            merged[k..k + (mid - i)].copy_from_slice(&runs[i..mid]);
            k += mid - i;
            merged[k..k + (end - j)].copy_from_slice(&runs[j..end]);
        }
        std::mem::swap(&mut runs, &mut merged);
        width *= 2;
    }
    count
}

/// The records of tasks `x` and `y` on one side, from the first dispatch of either (of a
/// task that never ran an attempt, a group or one skipped: its own event) to the later
/// of their `kind` events, compactly rendered (`seq time kind task#attempt`).
fn interleaving(records: &dyn Records, facts: &Facts, kind: RaceKind, x: &str, y: &str) -> Vec<String> {
    let at = |task: &str| facts.at(task, kind);
    let to = at(x).max(at(y));
    // Both events are in the window: one that came before the other's dispatch too.
    let from =
        [x, y].iter().filter_map(|t| facts.dispatched(t).or(at(t))).chain([at(x), at(y)].into_iter().flatten()).min();
    let (Some(to), Some(from)) = (to, from) else { return Vec::new() };
    let from = from.min(to) as usize;
    let to = (to as usize).min(records.count().saturating_sub(1));
    let mut lines: Vec<String> = records.naming(from, to, x, y).iter().map(|(seq, r)| compact(*seq, r)).collect();
    if lines.len() > MAX_INTERLEAVING_LINES {
        let tail = lines.split_off(lines.len() - MAX_INTERLEAVING_LINES / 2);
        lines.truncate(MAX_INTERLEAVING_LINES / 2 - 1);
        lines.push("...".into());
        lines.extend(tail);
    }
    lines
}

fn compact(seq: u64, r: &Record) -> String {
    let attempt = match &r.event {
        Event::AttemptDispatched(e) => Some(e.attempt),
        Event::AttemptStarted(e) => Some(e.attempt),
        Event::AttemptExited(e) => Some(e.attempt),
        Event::AttemptKillRequested(e) => Some(e.attempt),
        Event::RetryScheduled(e) => Some(e.attempt),
        _ => None,
    };
    let task = task_of(&r.event).unwrap_or("");
    let mut s = format!("{seq:>5} {:>7}ms {} {task}", r.time_ms, r.event.name());
    if let Some(n) = attempt {
        s += &format!("#{n}");
    }
    if let Event::TaskFinished(f) = &r.event {
        s += &format!(" {}", f.state.name());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inversions_are_counted() {
        assert_eq!(count_inversions(&[]), 0);
        assert_eq!(count_inversions(&[1, 2, 3]), 0);
        assert_eq!(count_inversions(&[3, 2, 1]), 3);
        assert_eq!(count_inversions(&[2, 1, 4, 3]), 2);
        assert_eq!(count_inversions(&[2, 2, 1, 1]), 4);
    }

    #[test]
    fn inversions_match_counting_every_pair() {
        let mut x = 7u64;
        for n in 0..70 {
            let v: Vec<u64> = (0..n)
                .map(|_| {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    (x >> 33) % 13 // with repeats
                })
                .collect();
            let pairs = (0..n).flat_map(|i| (i + 1..n).map(move |j| (i, j))).filter(|&(i, j)| v[i] > v[j]).count();
            assert_eq!(count_inversions(&v), pairs as u64, "{v:?}");
        }
    }
}
