//! `log_format::Error`: every way opening, reading, writing or verifying a log can fail,
//! each naming the place (segment file, byte offset, seq) so a user can find it.

use std::path::PathBuf;

use crate::scan::Damage;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },

    #[error("log {dir} is already open for writing by another writer{holder}")]
    Locked { dir: PathBuf, holder: String },

    #[error("{segment}:{offset}: seq {seq}: {damage}")]
    Corrupt { segment: PathBuf, offset: u64, seq: u64, damage: Damage },

    #[error("{dir}: not an orch log ({why})")]
    NotALog { dir: PathBuf, why: String },

    #[error("{dir}: a log already exists here")]
    AlreadyExists { dir: PathBuf },

    #[error("record payload of {len} bytes exceeds the limit of {limit} bytes")]
    PayloadTooLarge { len: usize, limit: usize },

    #[error("invalid option: {0}")]
    InvalidOption(String),

    #[error("the log has been poisoned by an earlier write error; reopen it to recover")]
    Poisoned,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }

    /// True when the error says the bytes of the log are damaged (as opposed to IO or
    /// usage problems). The CLI maps both to exit code 2 but words them differently.
    pub fn is_corruption(&self) -> bool {
        matches!(self, Error::Corrupt { .. })
    }
}
