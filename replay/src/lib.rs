//! Everything that reads a finished or live log: fold, re-decide and verify, summaries,
//! diffs of two runs, rollups, the HTML report and trace exports.
//! Performs no IO besides reading the log.

pub mod diff;
pub mod export;
pub mod redecide;
pub mod report;
pub mod rollup;
pub mod snapshot;
pub mod summary;
pub mod text;
pub mod timeline;

pub use diff::{diff, diff_logs, Level};
pub use redecide::{redecide, Divergence, Replayed};
pub use summary::Summary;
