//! orch's log on disk: an append-only directory of segment files holding seq-numbered,
//! checksummed records, chained by blake3 so one digest names the log's exact content.
//!
//! This crate knows nothing of orchestration: payloads are opaque bytes. See
//! `docs/log-format.md` for the byte layout and the crash cases it survives.
//!
//! - [`Writer`]: the single writer (OS file lock), group commit, segment rolling,
//!   torn-tail recovery on open.
//! - [`Reader`]: memory-mapped, iterate from any seq, follow a live log.
//! - [`verify()`]: every checksum, every seq, the chain; returns the digest.

mod dir;
mod durability;
mod error;
pub mod layout;
mod reader;
pub mod scan;
mod syncer;
mod verify;
mod writer;

pub use dir::{list_segments, lock_state, LockState, SegmentFile, LOCK_FILE};
pub use durability::Durability;
pub use error::{Error, Result};
pub use layout::Digest;
pub use reader::{Cursor, Follower, Iter, Reader, Record};
pub use scan::Damage;
pub use verify::{hex, verify, verify_reader, Report};
pub use writer::{Options, Recovery, TornTail, Writer};
