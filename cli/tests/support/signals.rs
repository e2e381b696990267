//! Shared by the test crates that signal orch: start it as from a terminal.

use std::process::Command;

/// Orch started as from a terminal: the signals it cancels on at their default
/// disposition, whatever the test runner's parent ignores (a background job ignores
/// SIGINT, `nohup` SIGHUP), since orch keeps a signal ignored at its start.
pub trait DefaultSignals {
    fn default_signals(&mut self) -> &mut Self;
}

impl DefaultSignals for Command {
    fn default_signals(&mut self) -> &mut Self {
        use nix::sys::signal::{signal, SigHandler, Signal};
        use std::os::unix::process::CommandExt;
        // SAFETY: between fork and exec only `signal(2)` is called, which is
        // async-signal-safe; nothing is allocated or locked.
        #[allow(unsafe_code)]
        unsafe {
            self.pre_exec(|| {
                for s in [Signal::SIGHUP, Signal::SIGINT, Signal::SIGTERM] {
                    signal(s, SigHandler::SigDfl).map_err(std::io::Error::from)?;
                }
                Ok(())
            })
        }
    }
}
