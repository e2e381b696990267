//! Everything that reads a finished or live log: fold, re-decide and verify, summaries.
//! Performs no IO besides reading the log.

pub mod redecide;
pub mod snapshot;
pub mod summary;
pub mod text;

pub use redecide::{redecide, Divergence, Replayed};
pub use summary::Summary;
