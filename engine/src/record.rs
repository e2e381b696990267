//! The record vocabulary: every fact the runtime learns (inputs) and every choice the
//! scheduler makes (decisions), with a stable binary encoding and a JSON rendering.
//!
//! Wire format of one payload (MessagePack via rmp-serde): `[kind, time_ms, body]`,
//! where `kind` is the explicit numeric code below and `body` is the kind's struct
//! encoded as an array. Codes are forever: a removed kind's number is listed in
//! `RESERVED_KINDS` and never reused; a new field is a new kind.

use serde::de::{self, SeqAccess, Visitor};
use serde::ser::SerializeTuple;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use crate::digest::Digest;
pub use control::*;
pub use started::*;

mod control;
mod decode;
mod started;

/// Kinds that once existed and were removed: their codes must never be reused.
pub const RESERVED_KINDS: &[u16] = &[];

/// One record: when it happened (logical milliseconds since the run started) and what.
/// A decision carries the time of the input that caused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub time_ms: u64,
    pub event: Event,
}

macro_rules! events {
    ($( $code:literal $name:literal $variant:ident($body:ident) $class:ident, )*) => {
        /// Every record kind. Inputs come from outside the scheduler; decisions from it.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum Event {
            $( $variant($body), )*
        }

        impl Event {
            /// The kind's permanent numeric code.
            pub fn code(&self) -> u16 {
                match self {
                    Event::RunStarted(r) if r.image.is_some() => RUN_STARTED_COMPILED,
                    $( Event::$variant(_) => $code, )*
                }
            }

            /// The kind's stable snake_case name (used in JSON and text renderings).
            pub fn name(&self) -> &'static str {
                match self { $( Event::$variant(_) => $name, )* }
            }

            /// Whether this kind is an input (a fact from outside) or a decision.
            pub fn class(&self) -> Class {
                match self { $( Event::$variant(_) => Class::$class, )* }
            }

            fn serialize_body<S: SerializeTuple>(&self, t: &mut S) -> Result<(), S::Error> {
                match self { $( Event::$variant(b) => t.serialize_element(b), )* }
            }

            fn body_json(&self) -> serde_json::Value {
                let value = match self { $( Event::$variant(b) => serde_json::to_value(b), )* };
                value.expect("record bodies always render as JSON")
            }

            fn deserialize_body<'de, A: SeqAccess<'de>>(code: u16, seq: &mut A) -> Result<Option<Event>, A::Error> {
                Ok(match code {
                    RUN_STARTED_COMPILED => seq.next_element::<RunStarted>()?.map(Event::RunStarted),
                    $( $code => seq.next_element::<$body>()?.map(Event::$variant), )*
                    other => {
                        return Err(de::Error::custom(format_args!(
                            "unknown record kind {other} (written by a newer orch?)"
                        )))
                    }
                })
            }
        }

        /// All kind codes with their names, for docs and tests.
        pub const KINDS: &[(u16, &str)] = &[ $( ($code, $name), )* (RUN_STARTED_COMPILED, "run_started") ];
    };
}

events! {
    1 "run_started" RunStarted(RunStarted) Input,
    2 "attempt_exited" AttemptExited(AttemptExited) Input,
    3 "timer_fired" TimerFired(TimerFired) Input,
    4 "cancel_requested" CancelRequested(CancelRequested) Input,
    5 "attempt_lost" AttemptLost(AttemptLost) Input,
    6 "attempt_started" AttemptStarted(AttemptStarted) Input,
    7 "task_submitted" TaskSubmitted(TaskSubmitted) Input,
    8 "task_updated" TaskUpdated(TaskUpdated) Input,
    9 "context_updated" ContextUpdated(ContextUpdated) Input,
    10 "hook_answered" HookAnswered(HookAnswered) Input,
    32 "run_deadline_armed" RunDeadlineArmed(RunDeadlineArmed) Decision,
    33 "wave_opened" WaveOpened(WaveOpened) Decision,
    34 "attempt_dispatched" AttemptDispatched(AttemptDispatched) Decision,
    35 "attempt_kill_requested" AttemptKillRequested(AttemptKillRequested) Decision,
    36 "retry_scheduled" RetryScheduled(RetryScheduled) Decision,
    37 "task_delegated" TaskDelegated(TaskDelegated) Decision,
    38 "task_finished" TaskFinished(TaskFinished) Decision,
    39 "wave_closed" WaveClosed(WaveClosed) Decision,
    40 "parent_woken" ParentWoken(ParentWoken) Decision,
    41 "run_finished" RunFinished(RunFinished) Decision,
    42 "request_answered" RequestAnswered(RequestAnswered) Decision,
    43 "children_stopped" ChildrenStopped(ChildrenStopped) Decision,
    44 "finalize_requested" FinalizeRequested(FinalizeRequested) Decision,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Input,
    Decision,
}

impl Event {
    pub fn is_input(&self) -> bool {
        self.class() == Class::Input
    }
}

// ---- inputs ---------------------------------------------------------------------

/// What ran a run's tasks: simulated children (`--sim`), real processes, or async
/// closures in the caller's process (`inproc`).
pub const EXECUTORS: [&str; 3] = ["sim", "process", "in_process"];

/// An attempt's process ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptExited {
    pub task: String,
    pub attempt: u32,
    pub status: ExitStatus,
    /// blake3 of everything the attempt wrote to stdout and stderr.
    pub output: Digest,
    pub output_bytes: u64,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
}

/// A timer armed by an earlier decision went off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimerFired {
    pub timer: TimerKey,
}

/// What a timer is for; also its identity (at most one live timer per key).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimerKey {
    AttemptTimeout { task: String, attempt: u32 },
    RetryBackoff { task: String, attempt: u32 },
    RunDeadline,
}

/// Someone asked to cancel the run (`task` = None) or one task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelRequested {
    pub task: Option<String>,
    pub reason: String,
}

/// An attempt in flight when the engine died; recorded on resume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptLost {
    pub task: String,
    pub attempt: u32,
}

/// A dispatched attempt's process is running: who it is, so that a resumed engine can
/// find (and kill) it — by pid *and* start time, so a recycled pid is never touched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptStarted {
    pub task: String,
    pub attempt: u32,
    pub pid: u32,
    /// The process's start time in clock ticks since boot (`/proc/PID/stat` field 22).
    pub start_ticks: u64,
}

// ---- decisions ------------------------------------------------------------------

/// The run has a deadline: arm a timer for `at_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunDeadlineArmed {
    pub at_ms: u64,
}

/// A wave of a parent's children (parent None = the run) may start dispatching.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaveOpened {
    pub parent: Option<String>,
    pub wave: u32,
}

/// Start attempt `attempt` of `task`; kill it at `deadline_ms` if it is still running.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptDispatched {
    pub task: String,
    pub attempt: u32,
    pub deadline_ms: Option<u64>,
}

/// Kill the process group of a running attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptKillRequested {
    pub task: String,
    pub attempt: u32,
    pub reason: KillReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KillReason {
    Timeout,
    Cancel,
    RunTimeout,
    /// The parent's wake hook answered `stop`.
    Stop,
}

/// The attempt failed and `attempt` (the next one) runs at `at_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryScheduled {
    pub task: String,
    pub attempt: u32,
    pub delay_ms: u64,
    pub at_ms: u64,
}

/// The task's own command succeeded; it now waits for its children.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskDelegated {
    pub task: String,
}

/// The task reached its terminal state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskFinished {
    pub task: String,
    pub state: Terminal,
    pub attempts: u32,
    /// Why, when the state is a consequence of something else (blocked by, skipped because).
    pub cause: Option<String>,
    /// For a parent: the aggregate of its children, in declaration order.
    pub aggregate: Option<Digest>,
}

/// Terminal task states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Terminal {
    Succeeded,
    Failed,
    TimedOut,
    Exhausted,
    Blocked,
    Cancelled,
    Skipped,
}

impl Terminal {
    pub const ALL: [Terminal; 7] = [
        Terminal::Succeeded,
        Terminal::Failed,
        Terminal::TimedOut,
        Terminal::Exhausted,
        Terminal::Blocked,
        Terminal::Cancelled,
        Terminal::Skipped,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Terminal::Succeeded => "succeeded",
            Terminal::Failed => "failed",
            Terminal::TimedOut => "timed_out",
            Terminal::Exhausted => "exhausted",
            Terminal::Blocked => "blocked",
            Terminal::Cancelled => "cancelled",
            Terminal::Skipped => "skipped",
        }
    }

    /// A failure that wave policies react to (cancelled and skipped are consequences).
    pub fn is_failure(self) -> bool {
        matches!(self, Terminal::Failed | Terminal::TimedOut | Terminal::Exhausted | Terminal::Blocked)
    }
}

/// Every task of the wave is terminal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaveClosed {
    pub parent: Option<String>,
    pub wave: u32,
    pub failures: u32,
    /// Whether a failure stopped it early (`stop_wave`).
    pub stopped: bool,
    /// blake3 over the wave's tasks' results in declaration order.
    pub aggregate: Digest,
}

/// The parent's wake hook is due (per its wave's wake policy).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentWoken {
    pub parent: String,
    pub wave: u32,
    /// The child whose completion woke it (`on_child_complete`), or None (`on_wave_complete`).
    pub child: Option<String>,
}

/// Every task is terminal; the run is over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunFinished {
    pub outcome: RunOutcome,
    /// blake3 over every task's result in declaration order.
    pub aggregate: Digest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    Succeeded,
    Failed,
    Cancelled,
    TimedOut,
}

impl RunOutcome {
    pub fn name(self) -> &'static str {
        match self {
            RunOutcome::Succeeded => "succeeded",
            RunOutcome::Failed => "failed",
            RunOutcome::Cancelled => "cancelled",
            RunOutcome::TimedOut => "timed_out",
        }
    }
}

// ---- encoding -------------------------------------------------------------------

/// Why a payload could not be decoded into a record.
#[derive(Debug, thiserror::Error)]
#[error("undecodable record: {0}")]
pub struct DecodeError(String);

impl Record {
    pub fn new(time_ms: u64, event: Event) -> Record {
        Record { time_ms, event }
    }

    /// Appends the binary encoding to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        rmp_serde::encode::write(out, self).expect("writing to a Vec cannot fail");
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        self.encode_into(&mut out);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Record, DecodeError> {
        // The common kinds by hand; everything else (and every error) through rmp-serde.
        if let Some(record) = decode::decode(bytes) {
            return Ok(record);
        }
        Record::decode_generic(bytes)
    }

    /// `decode` through rmp-serde alone (the reference the fast path is tested against).
    pub fn decode_generic(bytes: &[u8]) -> Result<Record, DecodeError> {
        let mut rest = bytes;
        let record = Record::deserialize(&mut rmp_serde::Deserializer::new(&mut rest))
            .map_err(|e| DecodeError(e.to_string()))?;
        if !rest.is_empty() {
            return Err(DecodeError(format!("{} trailing bytes after the record", rest.len())));
        }
        Ok(record)
    }

    /// The stable JSON rendering: `{"seq", "time_ms", "kind", ...fields}`.
    pub fn to_json(&self, seq: u64) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        map.insert("seq".into(), seq.into());
        map.insert("time_ms".into(), self.time_ms.into());
        map.insert("kind".into(), self.event.name().into());
        if let serde_json::Value::Object(fields) = self.event.body_json() {
            map.extend(fields);
        }
        serde_json::Value::Object(map)
    }
}

impl Serialize for Record {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(3)?;
        t.serialize_element(&self.event.code())?;
        t.serialize_element(&self.time_ms)?;
        self.event.serialize_body(&mut t)?;
        t.end()
    }
}

impl<'de> Deserialize<'de> for Record {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Record;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "an orch record [kind, time_ms, body]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Record, A::Error> {
                let missing = |what| de::Error::custom(format_args!("record is missing its {what}"));
                let code: u16 = seq.next_element()?.ok_or_else(|| missing("kind"))?;
                let time_ms: u64 = seq.next_element()?.ok_or_else(|| missing("time"))?;
                let event = Event::deserialize_body(code, &mut seq)?.ok_or_else(|| missing("body"))?;
                if let Event::RunStarted(r) = &event {
                    if r.image.is_some() != (code == RUN_STARTED_COMPILED) {
                        return Err(de::Error::custom(format_args!(
                            "a run_started record of kind {code} must {}carry a compiled graph",
                            if code == RUN_STARTED_COMPILED { "" } else { "not " }
                        )));
                    }
                }
                Ok(Record { time_ms, event })
            }
        }
        d.deserialize_tuple(3, V)
    }
}
