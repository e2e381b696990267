//! A hand-written decoder for the record kinds that make up nearly every log (attempt
//! dispatched, attempt exited, task finished, attempt started): reading a million-record
//! log spent more time in rmp-serde's generic machinery than in the fold.
//!
//! It is a fast path, not a second format: it accepts only the plain encodings
//! `Record::encode` writes (exact array lengths, the usual int and string markers) and
//! returns None for anything else — another kind, an unusual but valid encoding, damage —
//! so the caller falls back to rmp-serde, which then decides, errors included. Whatever
//! it accepts, rmp-serde decodes to the same record (tests check both ways).

use super::{
    AttemptDispatched, AttemptExited, AttemptStarted, Digest, Event, ExitStatus, Record, TaskFinished, Terminal,
};

/// The record in `bytes`, when it is one of the kinds decoded here, plainly encoded.
pub(crate) fn decode(bytes: &[u8]) -> Option<Record> {
    let mut r = Reader { bytes, at: 0 };
    r.array(3)?;
    let code = r.uint()?;
    let time_ms = r.uint()?;
    let event = match code {
        2 => {
            r.array(6)?;
            Event::AttemptExited(AttemptExited {
                task: r.string()?,
                attempt: r.u32()?,
                status: r.exit_status()?,
                output: r.digest()?,
                output_bytes: r.uint()?,
                duration_ms: r.uint()?,
            })
        }
        6 => {
            r.array(4)?;
            Event::AttemptStarted(AttemptStarted {
                task: r.string()?,
                attempt: r.u32()?,
                pid: r.u32()?,
                start_ticks: r.uint()?,
            })
        }
        34 => {
            r.array(3)?;
            Event::AttemptDispatched(AttemptDispatched {
                task: r.string()?,
                attempt: r.u32()?,
                deadline_ms: r.option(Reader::uint)?,
            })
        }
        38 => {
            r.array(5)?;
            Event::TaskFinished(TaskFinished {
                task: r.string()?,
                state: r.terminal()?,
                attempts: r.u32()?,
                cause: r.option(Reader::string)?,
                aggregate: r.option(Reader::digest)?,
            })
        }
        _ => return None,
    };
    // Trailing bytes are an error, which rmp-serde's path reports.
    (r.at == bytes.len()).then_some(Record { time_ms, event })
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.bytes.get(self.at)?;
        self.at += 1;
        Some(b)
    }

    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let end = self.at.checked_add(n)?;
        let slice = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(slice)
    }

    fn be(&mut self, n: usize) -> Option<u64> {
        Some(self.take(n)?.iter().fold(0u64, |acc, &b| acc << 8 | u64::from(b)))
    }

    /// A fixarray of exactly `len` items (structs and the record itself are arrays).
    fn array(&mut self, len: u8) -> Option<()> {
        (self.byte()? == 0x90 | len).then_some(())
    }

    fn uint(&mut self) -> Option<u64> {
        match self.byte()? {
            b @ 0x00..=0x7f => Some(u64::from(b)),
            0xcc => self.be(1),
            0xcd => self.be(2),
            0xce => self.be(4),
            0xcf => self.be(8),
            _ => None,
        }
    }

    fn u32(&mut self) -> Option<u32> {
        u32::try_from(self.uint()?).ok()
    }

    fn i32(&mut self) -> Option<i32> {
        let b = self.byte()?;
        let v: i64 = match b {
            0x00..=0x7f => i64::from(b),
            0xe0..=0xff => i64::from(b as i8),
            0xcc => self.be(1)? as i64,
            0xcd => self.be(2)? as i64,
            0xce => self.be(4)? as i64,
            0xd0 => i64::from(self.be(1)? as u8 as i8),
            0xd1 => i64::from(self.be(2)? as u16 as i16),
            0xd2 => i64::from(self.be(4)? as u32 as i32),
            _ => return None,
        };
        i32::try_from(v).ok()
    }

    fn str(&mut self) -> Option<&str> {
        let len = match self.byte()? {
            b @ 0xa0..=0xbf => usize::from(b & 0x1f),
            0xd9 => self.be(1)? as usize,
            0xda => self.be(2)? as usize,
            0xdb => self.be(4)? as usize,
            _ => return None,
        };
        std::str::from_utf8(self.take(len)?).ok()
    }

    fn string(&mut self) -> Option<String> {
        self.str().map(str::to_owned)
    }

    fn digest(&mut self) -> Option<Digest> {
        if self.byte()? != 0xc4 || self.byte()? != 32 {
            return None;
        }
        Some(Digest(self.take(32)?.try_into().ok()?))
    }

    /// nil, or the value.
    fn option<T>(&mut self, value: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        if *self.bytes.get(self.at)? == 0xc0 {
            self.at += 1;
            return Some(None);
        }
        value(self).map(Some)
    }

    /// `{"code": n}` or `{"signal": n}` (an externally tagged enum).
    fn exit_status(&mut self) -> Option<ExitStatus> {
        if self.byte()? != 0x81 {
            return None;
        }
        match self.str()? {
            "code" => self.i32().map(ExitStatus::Code),
            "signal" => self.i32().map(ExitStatus::Signal),
            _ => None,
        }
    }

    /// A unit variant, written as its name.
    fn terminal(&mut self) -> Option<Terminal> {
        let name = self.str()?;
        Terminal::ALL.into_iter().find(|t| t.name() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Record> {
        let long = "t".repeat(40);
        let longer = "u".repeat(300);
        let digest = Digest([7; 32]);
        let mut out = Vec::new();
        for (i, task) in ["a", long.as_str(), longer.as_str(), "ünïcode"].into_iter().enumerate() {
            let task = task.to_string();
            let big = [0u64, 127, 128, 255, 256, 65_535, 65_536, u64::from(u32::MAX), u64::MAX][i * 2 % 9];
            out.push(Record::new(
                big,
                Event::AttemptDispatched(AttemptDispatched { task: task.clone(), attempt: 1, deadline_ms: Some(big) }),
            ));
            out.push(Record::new(
                7,
                Event::AttemptDispatched(AttemptDispatched {
                    task: task.clone(),
                    attempt: u32::MAX,
                    deadline_ms: None,
                }),
            ));
            for status in [ExitStatus::Code(0), ExitStatus::Code(-1), ExitStatus::Code(i32::MIN), ExitStatus::Signal(9)]
            {
                out.push(Record::new(
                    big,
                    Event::AttemptExited(AttemptExited {
                        task: task.clone(),
                        attempt: 300,
                        status,
                        output: digest,
                        output_bytes: big,
                        duration_ms: 70_000,
                    }),
                ));
            }
            out.push(Record::new(
                3,
                Event::AttemptStarted(AttemptStarted {
                    task: task.clone(),
                    attempt: 2,
                    pid: 4_000_000,
                    start_ticks: big,
                }),
            ));
            for state in Terminal::ALL {
                out.push(Record::new(
                    9,
                    Event::TaskFinished(TaskFinished {
                        task: task.clone(),
                        state,
                        attempts: 3,
                        cause: (state != Terminal::Succeeded).then(|| format!("because {task}")),
                        aggregate: (i % 2 == 0).then_some(digest),
                    }),
                ));
            }
        }
        out
    }

    #[test]
    fn decodes_what_encode_writes_as_rmp_serde_does() {
        for record in samples() {
            let bytes = record.encode();
            assert_eq!(decode(&bytes).as_ref(), Some(&record), "{record:?}");
            assert_eq!(Record::decode_generic(&bytes).expect("generic"), record);
        }
    }

    #[test]
    fn leaves_other_kinds_to_rmp_serde() {
        let other = Record::new(
            1,
            Event::RunFinished(crate::record::RunFinished {
                outcome: crate::record::RunOutcome::Succeeded,
                aggregate: Digest([1; 32]),
            }),
        );
        assert_eq!(decode(&other.encode()), None);
        assert_eq!(Record::decode(&other.encode()).expect("decodes"), other);
    }

    /// Damaged payloads: whatever the fast path accepts, rmp-serde decodes to the same
    /// record; what it refuses is left to rmp-serde (and its error).
    #[test]
    fn never_accepts_what_rmp_serde_reads_otherwise() {
        let mut checked = 0;
        for record in samples() {
            let bytes = record.encode();
            for cut in 0..bytes.len() {
                assert_eq!(decode(&bytes[..cut]), None, "a truncated payload of {record:?}");
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert_eq!(decode(&longer), None, "trailing bytes");
            for at in 0..bytes.len().min(48) {
                for value in [0x00, 0x01, 0x7f, 0x80, 0x90, 0x93, 0xa1, 0xc0, 0xc4, 0xcc, 0xcf, 0xd9, 0xe0, 0xff] {
                    let mut damaged = bytes.clone();
                    damaged[at] = value;
                    if let Some(fast) = decode(&damaged) {
                        let generic =
                            Record::decode_generic(&damaged).expect("rmp-serde reads what the fast path read");
                        assert_eq!(fast, generic, "byte {at} set to {value:#x} in {record:?}");
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 100, "the damage hit accepted encodings too ({checked})");
    }
}
