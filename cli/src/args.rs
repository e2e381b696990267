//! Every command and flag, defined once (clap derive): help, errors and docs all come
//! from here.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "orch",
    version,
    about = "Event-sourced orchestration: run task graphs of real processes, replay them bit for bit"
)]
pub struct Cli {
    /// The run store (default: `.orch` in the current directory).
    #[arg(long, global = true, env = "ORCH_STORE", default_value = ".orch")]
    pub store: PathBuf,

    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Run a workflow file (TOML or JSON).
    Run(RunArgs),
    /// Continue a run whose engine died (kill -9, power loss) from its log.
    Resume(ResumeArgs),
    /// Fold a run's log from scratch, re-drive the scheduler and check every decision.
    Replay(ReplayArgs),
    /// Print a run's records (JSON lines, or the stable text rendering).
    Log(LogArgs),
    /// Check every checksum, seq and chain link of a run's log.
    Verify(RunRef),
    /// List the runs in the store.
    Ls(JsonFlag),
    /// Show a run's task tree with states and rollups (`--watch`: live, until it ends).
    Show(ShowArgs),
    /// Compare two runs: where they diverge, which outcomes differ, which siblings raced.
    Diff(DiffArgs),
    /// Render a run as one self-contained HTML page: timeline, concurrency, critical path.
    Report(ReportArgs),
    /// Export a run for other tools: Chrome trace (Perfetto) or JSON lines.
    Export(ExportArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The workflow file (TOML, or JSON by its extension); `-` reads it from stdin.
    #[arg(required_unless_present = "tasks", conflicts_with = "tasks")]
    pub file: Option<PathBuf>,
    /// The tasks inline, as a JSON array: `--tasks '[{"id":"a","cmd":"make"}]'`.
    #[arg(long, value_name = "JSON")]
    pub tasks: Option<String>,
    /// At most this many attempts at once (overrides `run.max_concurrency`).
    #[arg(long, short = 'j', value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrency: Option<u32>,
    /// Simulate the children (virtual clock, scripted outcomes) instead of running them.
    #[arg(long)]
    pub sim: bool,
    /// Seed for retry jitter and the simulated order of simultaneous completions.
    #[arg(long)]
    pub seed: Option<u64>,
    #[command(flatten)]
    pub exec: ExecFlags,
}

/// How a run is executed and reported: shared by `run` and `resume`.
#[derive(Debug, Args)]
pub struct ExecFlags {
    /// When records reach the disk: always, batch (group commit) or never.
    #[arg(long, default_value = "batch")]
    pub durability: String,
    /// Milliseconds between SIGTERM and SIGKILL when an attempt is killed.
    #[arg(long, default_value_t = 2000)]
    pub kill_grace_ms: u64,
    /// Print the final summary as JSON (and no progress).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// Run id, unique prefix, `latest`, or a log directory.
    pub run: String,
    #[command(flatten)]
    pub exec: ExecFlags,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Run id, unique prefix, `latest`, or a log directory.
    pub run: String,
    /// Print the state right after this seq instead of the summary.
    #[arg(long)]
    pub at: Option<u64>,
    /// Print the summary (or the `--at` state) as one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LogArgs {
    /// Run id, unique prefix, `latest`, or a log directory.
    pub run: String,
    /// Keep printing records as they are appended, until the run finishes.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Start at this seq.
    #[arg(long, default_value_t = 0)]
    pub from: u64,
    /// One record per line in the stable text rendering instead of JSON.
    #[arg(long)]
    pub text: bool,
}

#[derive(Debug, Args)]
pub struct RunRef {
    /// Run id, unique prefix, `latest`, or a log directory.
    pub run: String,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct JsonFlag {
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// Run id, unique prefix, `latest`, or a log directory.
    pub a: String,
    /// Run id, unique prefix, `latest`, or a log directory.
    pub b: String,
    /// Byte-identical logs (equal log digests), times included.
    #[arg(long, conflicts_with = "outcomes")]
    pub exact: bool,
    /// Only terminal states, attempts, outputs and aggregates; order ignored.
    #[arg(long)]
    pub outcomes: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Run id, unique prefix, `latest`, or a log directory.
    pub run: String,
    /// Print the result as one JSON object (with the rollups and each task's queue wait).
    #[arg(long, conflicts_with = "watch")]
    pub json: bool,
    /// Redraw the tree as records arrive, until the run finishes (plain lines without a TTY).
    #[arg(long)]
    pub watch: bool,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Run id, unique prefix, `latest`, or a log directory.
    pub run: String,
    /// The HTML file to write.
    #[arg(long, short = 'o', default_value = "report.html")]
    pub output: PathBuf,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Run id, unique prefix, `latest`, or a log directory.
    pub run: String,
    /// `chrome-trace` (Trace Event Format JSON) or `jsonl` (one record per line).
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    /// Write here instead of stdout.
    #[arg(long, short = 'o')]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    ChromeTrace,
    Jsonl,
}
