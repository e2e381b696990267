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
    /// Print what a task's attempt wrote (stdout and stderr together, as stored).
    Output(OutputArgs),
    /// Compare two runs: where they diverge, which outcomes differ, which siblings raced.
    Diff(DiffArgs),
    /// Render a run as one self-contained HTML page: timeline, concurrency, critical path.
    Report(ReportArgs),
    /// Export a run for other tools: Chrome trace (Perfetto) or JSON lines.
    Export(ExportArgs),
    /// Create, update and list the tasks of a live run (delegation: from inside a task,
    /// or from any shell with --run).
    #[command(subcommand)]
    Task(TaskCmd),
    /// Read and update the shared context of a live run (every update is a record).
    #[command(subcommand)]
    Ctx(CtxCmd),
}

/// Which run a control command talks to.
#[derive(Debug, Args)]
pub struct Target {
    /// The run (id, unique prefix, `latest`). Inside a task the run is the task's own
    /// (`ORCH_SOCKET`).
    #[arg(long)]
    pub run: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum TaskCmd {
    /// Add a task to the run: `orch task create ID "title" [--blocked-by X]... -- CMD...`.
    Create(TaskCreateArgs),
    /// Change a task's status: delegated, done, failed, or a label (working, reviewing,
    /// reviewed, stuck).
    Update(TaskUpdateArgs),
    /// List the run's tasks with their statuses.
    List(TaskListArgs),
}

#[derive(Debug, Args)]
pub struct TaskCreateArgs {
    /// The new task's id (unique in the run).
    pub id: String,
    /// A title for people.
    pub title: Option<String>,
    /// A task that must succeed first (repeatable; or comma-separated).
    #[arg(long = "blocked-by", value_delimiter = ',')]
    pub blocked_by: Vec<String>,
    /// The parent (default: the calling task, from `ORCH_TASK_ID`).
    #[arg(long, conflicts_with = "root")]
    pub parent: Option<String>,
    /// Make it a child of the run itself, even from inside a task.
    #[arg(long)]
    pub root: bool,
    /// P0 (first) to P3.
    #[arg(long, value_parser = ["P0", "P1", "P2", "P3"])]
    pub priority: Option<String>,
    /// Kill each attempt after this long.
    #[arg(long)]
    pub timeout_ms: Option<u64>,
    /// Attempts in all (1 = no retry).
    #[arg(long)]
    pub max_attempts: Option<u32>,
    /// An environment variable for the task, `KEY=VALUE` (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// The task's working directory; a relative one is taken from the directory this
    /// command runs in (the engine's would be another).
    #[arg(long)]
    pub cwd: Option<String>,
    /// Print the answer as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub target: Target,
    /// The command: several words are an argv (exec'd directly); one word with spaces
    /// is a shell line. (A task made at run time always runs something; it becomes a
    /// parent by creating children while it runs.)
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct TaskUpdateArgs {
    /// The task (default: the calling task, from `ORCH_TASK_ID`).
    pub id: Option<String>,
    #[arg(long)]
    pub status: String,
    /// Why (kept in the record and shown as the cause).
    #[arg(long)]
    pub note: Option<String>,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub target: Target,
}

#[derive(Debug, Args)]
pub struct TaskListArgs {
    /// Only tasks ready to run (pending, every blocker done).
    #[arg(long)]
    pub ready: bool,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub target: Target,
}

#[derive(Debug, Subcommand)]
pub enum CtxCmd {
    /// Set KEY to VALUE (replacing what it held).
    Set(CtxWriteArgs),
    /// Append VALUE to the list at KEY.
    Append(CtxWriteArgs),
    /// Print one key, or every key.
    Get(CtxGetArgs),
}

#[derive(Debug, Args)]
pub struct CtxWriteArgs {
    pub key: String,
    pub value: String,
    #[command(flatten)]
    pub target: Target,
}

#[derive(Debug, Args)]
pub struct CtxGetArgs {
    pub key: Option<String>,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub target: Target,
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
    /// When records reach the disk: always, batch (group commit, at most one sync per 50 ms;
    /// batch:MS sets the interval), or never.
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
pub struct OutputArgs {
    /// Run id, unique prefix, `latest`, or a log directory.
    pub run: String,
    /// The task.
    pub task: String,
    /// Which attempt (1, 2, ... as in the log). Default: the last one.
    #[arg(long)]
    pub attempt: Option<u32>,
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
    /// Print the report as one JSON object (`identical`: the same at the level asked for;
    /// `spec`: null when the specs are equal). The exit code is the verdict either way.
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
    /// One line per task in declaration order, with a parent column, instead of the tree.
    #[arg(long)]
    pub flat: bool,
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
