//! orch's domain: the workflow spec, the record vocabulary, the fold (`State::apply`),
//! the pure scheduler, and the drivers (simulated executor; runtime).
//!
//! The pure core — `spec`, `graph`, `record`, `state`, `scheduler`, `core`, `aggregate`
//! — reads no clock, no randomness, no environment and no files (see
//! `tests/tidy.rs`). Drivers turn the world into inputs and decisions into effects.

pub mod aggregate;
pub mod core;
mod digest;
pub mod drive;
pub mod graph;
pub mod inproc;
pub mod journal;
pub mod record;
pub mod recover;
pub mod runtime;
pub mod scheduler;
pub mod sim;
pub mod spec;
pub mod state;
pub mod view;
