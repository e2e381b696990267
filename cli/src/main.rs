//! The `orch` binary: argument parsing (clap), rendering and exit codes. No logic of its
//! own: every command is a thin call into `engine` or `replay`.

mod args;
mod cmd_diff;
mod cmd_output;
mod cmd_read;
mod cmd_report;
mod cmd_run;
mod cmd_task;
mod exit;
mod output;
mod watch;

use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Cmd};
use exit::Failure;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    if matches!(cli.command, Cmd::Run(_) | Cmd::Resume(_)) {
        // A file for each running child's output: see the engine's `limits.rs`.
        orch_engine::runtime::raise_open_file_limit();
    }
    let result = match &cli.command {
        Cmd::Run(a) => cmd_run::run(&cli, a),
        Cmd::Resume(a) => cmd_run::resume(&cli, a),
        Cmd::Replay(a) => cmd_read::replay(&cli, a),
        Cmd::Log(a) => cmd_read::log(&cli, a),
        Cmd::Verify(a) => cmd_read::verify(&cli, a),
        Cmd::Ls(a) => cmd_read::ls(&cli, a),
        Cmd::Show(a) => cmd_read::show(&cli, a),
        Cmd::Output(a) => cmd_output::output(&cli, a),
        Cmd::Diff(a) => cmd_diff::diff(&cli, a),
        Cmd::Report(a) => cmd_report::report(&cli, a),
        Cmd::Export(a) => cmd_report::export(&cli, a),
        Cmd::Task(c) => cmd_task::task(&cli, c),
        Cmd::Ctx(c) => cmd_task::ctx(&cli, c),
    };
    match result {
        Ok(code) => code,
        Err(Failure::BrokenPipe) => ExitCode::SUCCESS,
        Err(failure) => {
            output::note(format!("orch: {failure}"));
            failure.exit_code()
        }
    }
}

/// The engine's own diagnostics go to stderr through `tracing`, filtered by `RUST_LOG`
/// (default: warnings), so they never mix into the stdout of `--json` commands.
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).try_init();
}
