//! One log as the fast path sees it: the shared prefix as raw payloads (decoded on
//! demand), the suffix decoded; and a peek at a payload's kind and task without decoding.

use std::cell::RefCell;
use std::path::Path;

use orch_engine::journal::ReadError;
use orch_engine::record::Record;

use super::fast::decode;
use super::first::task_of;
use super::Records;

/// One side seen through the walk: the shared prefix (A's bytes; record 0 its own) and
/// its decoded suffix. Decodes prefix records on demand; a failure is kept in `error`.
pub(super) struct Side<'a> {
    pub first: &'a [u8],
    pub prefix: &'a [&'a [u8]],
    pub suffix: &'a [Record],
    pub dir: &'a Path,
    pub error: RefCell<Option<ReadError>>,
}

impl Side<'_> {
    fn payload(&self, seq: usize) -> &[u8] {
        if seq == 0 {
            self.first
        } else {
            self.prefix[seq]
        }
    }

    fn decoded(&self, seq: usize) -> Option<Record> {
        match decode(self.payload(seq), self.dir, seq) {
            Ok(r) => Some(r),
            Err(e) => {
                self.error.borrow_mut().get_or_insert(e);
                None
            }
        }
    }
}

impl Records for Side<'_> {
    fn count(&self) -> usize {
        self.prefix.len() + self.suffix.len()
    }

    fn at(&self, seq: usize) -> Option<Record> {
        let k = self.prefix.len();
        if seq < k {
            self.decoded(seq)
        } else {
            self.suffix.get(seq - k).cloned()
        }
    }

    fn naming(&self, from: usize, to: usize, x: &str, y: &str) -> Vec<(u64, Record)> {
        let k = self.prefix.len();
        let about = |r: &Record| task_of(&r.event).is_some_and(|t| t == x || t == y);
        let mut out = Vec::new();
        if from > to || from >= self.count() {
            return out;
        }
        for seq in from..=to.min(self.count() - 1) {
            if seq < k {
                // A decoded task name is a run of the payload's bytes: skip the others.
                let p = self.payload(seq);
                if contains(p, x.as_bytes()) || contains(p, y.as_bytes()) {
                    out.extend(self.decoded(seq).filter(about).map(|r| (seq as u64, r)));
                }
            } else if about(&self.suffix[seq - k]) {
                out.push((seq as u64, self.suffix[seq - k].clone()));
            }
        }
        out
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// A payload's kind code and, when its body starts with a string (the task, for the
/// kinds the prefix scan looks for), that string's bytes, read from the MessagePack
/// `[kind, time_ms, [field, ...]]` without decoding. None when the encoding is not the
/// one orch writes: the caller then decodes.
pub(super) fn peek(p: &[u8]) -> Option<(u16, Option<&[u8]>)> {
    if p.first() != Some(&0x93) {
        return None;
    }
    let kind = *p.get(1)?;
    if kind >= 0x80 {
        return None;
    }
    let mut at = 2;
    at += match *p.get(at)? {
        0x00..=0x7f => 1,
        0xcc => 2,
        0xcd => 3,
        0xce => 5,
        0xcf => 9,
        _ => return None,
    };
    at += match *p.get(at)? {
        0x90..=0x9f => 1,
        0xdc => 3,
        0xdd => 5,
        _ => return Some((kind as u16, None)),
    };
    let be = |from: usize, n: usize| -> Option<usize> {
        Some(p.get(from..from + n)?.iter().fold(0usize, |acc, &b| acc << 8 | b as usize))
    };
    let (len, head) = match *p.get(at)? {
        b @ 0xa0..=0xbf => ((b & 0x1f) as usize, 1),
        0xd9 => (be(at + 1, 1)?, 2),
        0xda => (be(at + 1, 2)?, 3),
        0xdb => (be(at + 1, 4)?, 5),
        _ => return Some((kind as u16, None)),
    };
    Some((kind as u16, p.get(at + head..at + head + len)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::fast::ATTEMPT_DISPATCHED;
    use orch_engine::record::Event;
    use orch_engine::record::{AttemptDispatched, WaveOpened};

    #[test]
    fn peek_reads_kind_and_task() {
        let r = Record::new(
            70_000,
            Event::AttemptDispatched(AttemptDispatched { task: "build".into(), attempt: 1, deadline_ms: None }),
        );
        assert_eq!(peek(&r.encode()), Some((ATTEMPT_DISPATCHED, Some(&b"build"[..]))));
        let long = "x".repeat(300);
        let r = Record::new(
            1,
            Event::AttemptDispatched(AttemptDispatched { task: long.clone(), attempt: 1, deadline_ms: None }),
        );
        assert_eq!(peek(&r.encode()), Some((ATTEMPT_DISPATCHED, Some(long.as_bytes()))));
        let r = Record::new(u64::MAX, Event::WaveOpened(WaveOpened { parent: None, wave: 0 }));
        assert_eq!(peek(&r.encode()).map(|p| p.0), Some(33));
        assert_eq!(peek(b"\x92\x01"), None);
    }
}
