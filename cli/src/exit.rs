//! Exit codes and the one error type of the binary: 0 success, 1 a failed run or a
//! replay mismatch, 2 bad input (usage, spec, run id, corrupt log), 130 cancelled.

use std::process::ExitCode;

pub const OK: u8 = 0;
pub const FAILED: u8 = 1;
pub const BAD_INPUT: u8 = 2;
pub const CANCELLED: u8 = 130;

/// Why a command did not complete.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Bad input: the message names the place.
    #[error("{0}")]
    Input(String),
    /// The command ran and found a difference or a failure worth exit code 1.
    #[error("{0}")]
    Mismatch(String),
    /// Anything else (IO on the store, the runtime): also exit code 2.
    #[error("{0}")]
    Other(String),
    /// stdout was closed (`orch log | head`): not an error.
    #[error("broken pipe")]
    BrokenPipe,
}

impl Failure {
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            Failure::BrokenPipe => OK,
            Failure::Mismatch(_) => FAILED,
            Failure::Input(_) | Failure::Other(_) => BAD_INPUT,
        })
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Failure {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            Failure::BrokenPipe
        } else {
            Failure::Other(e.to_string())
        }
    }
}

impl From<orch_log_format::Error> for Failure {
    fn from(e: orch_log_format::Error) -> Failure {
        Failure::Input(e.to_string())
    }
}

impl From<orch_engine::runtime::StoreError> for Failure {
    fn from(e: orch_engine::runtime::StoreError) -> Failure {
        Failure::Input(e.to_string())
    }
}

impl From<orch_engine::journal::ReadError> for Failure {
    fn from(e: orch_engine::journal::ReadError) -> Failure {
        Failure::Input(e.to_string())
    }
}

impl From<orch_engine::spec::Error> for Failure {
    fn from(e: orch_engine::spec::Error) -> Failure {
        Failure::Input(e.to_string())
    }
}
