//! When committed records reach the disk: the durability policies, and their command-line
//! spelling (`always`, `batch`, `batch:MS`, `never`).

use std::time::Duration;

use crate::error::{Error, Result};

/// When committed records reach the disk (as opposed to the OS page cache).
///
/// Every policy writes committed records to the OS before `commit` returns, so a crash
/// of the *process* loses nothing that was committed. The policies differ on a power
/// loss or kernel crash:
/// - `Always`: `commit` returns after fdatasync; nothing committed is lost.
/// - `Batch`: a background thread fdatasyncs, covering every commit since the last sync
///   (group commit): a burst of commits after a quiet spell 5 ms after it starts,
///   commits that keep coming once per `interval` at most. At most the last `interval`
///   of commits is lost, plus those of the sync under way.
/// - `Never`: the OS decides; anything not yet written back may be lost. For tests and
///   simulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    Always,
    Batch { interval: Duration },
    Never,
}

impl Durability {
    /// The interval only binds commits that keep coming: a burst after a quiet spell (one
    /// task's end and the next one's start) is synced once gathered, 5 ms (`syncer.rs`).
    /// A sync costs the machine ~0.2–0.5 ms (three device round trips on ext4 without a
    /// journal), so at 5 ms a flood of short tasks lost 4–8% of its wall time to them; at
    /// 50 ms ~1%. A power loss takes at most the last 50 ms of records (and the sync under
    /// way), which `orch resume` runs again (the log stays a prefix). Peers with the same
    /// asynchronous commit sit wider: MongoDB's journal commits every 100 ms, PostgreSQL's
    /// `synchronous_commit = off` may lose up to 3 × 200 ms, Redis's `appendfsync
    /// everysec` a second.
    pub const DEFAULT_BATCH_INTERVAL: Duration = Duration::from_millis(50);
    /// The longest interval `batch:MS` takes: a power loss may cost up to this much.
    pub const MAX_BATCH_INTERVAL_MS: u64 = 10_000;
}

impl Default for Durability {
    fn default() -> Self {
        Durability::Batch { interval: Self::DEFAULT_BATCH_INTERVAL }
    }
}

impl std::str::FromStr for Durability {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "always" => Ok(Durability::Always),
            "batch" => Ok(Durability::default()),
            "never" => Ok(Durability::Never),
            other => match other.strip_prefix("batch:") {
                Some(ms) => {
                    let ms = ms.strip_suffix("ms").unwrap_or(ms);
                    // Digits only: `u64`'s parser would also take a sign (`batch:+5`).
                    let digits = !ms.is_empty() && ms.bytes().all(|b| b.is_ascii_digit());
                    match ms.parse::<u64>().ok().filter(|_| digits) {
                        Some(ms @ 1..=Self::MAX_BATCH_INTERVAL_MS) => {
                            Ok(Durability::Batch { interval: Duration::from_millis(ms) })
                        }
                        _ => Err(Error::InvalidOption(format!(
                            "the batch interval must be 1 to {} milliseconds (batch:10ms), not {other:?}",
                            Self::MAX_BATCH_INTERVAL_MS
                        ))),
                    }
                }
                None => Err(Error::InvalidOption(format!(
                    "durability must be always, batch, batch:MS or never, not {other:?}"
                ))),
            },
        }
    }
}
