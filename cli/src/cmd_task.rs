//! `orch task ...` and `orch ctx ...`: clients of a live run's control socket. Changes
//! go to the engine (the only writer of its log) and come back accepted or rejected;
//! reads of a run that is no longer live are answered from its log, and say so.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use orch_engine::journal::read_compiling;
use orch_engine::record::UpdateStatus;
use orch_engine::runtime::control::{self, ClientError, Request, Response, SOCKET_NAME};
use orch_engine::runtime::Store;
use orch_engine::spec::{Command, Priority, RetryPolicy, TaskMore, TaskSpec};
use orch_engine::view::{self, TaskRow};

use crate::args::{Cli, CtxCmd, Target, TaskCmd, TaskCreateArgs, TaskListArgs, TaskUpdateArgs};
use crate::exit::Failure;
use crate::output::line;

/// The run a control command talks to: its socket and its log.
struct Endpoint {
    socket: PathBuf,
    log: PathBuf,
    /// How the user named it, for messages.
    name: String,
    /// It is the calling task's own run: only then is the caller a task of it (the
    /// default parent, and who asks).
    own: bool,
}

fn endpoint(cli: &Cli, target: &Target) -> Result<Endpoint, Failure> {
    if let Some(run) = &target.run {
        let resolved = Store::at(&cli.store).resolve(run)?;
        let dir = resolved.log.parent().map(PathBuf::from).unwrap_or_default();
        let own = resolved.id.is_some() && resolved.id == std::env::var("ORCH_RUN_ID").ok();
        return Ok(Endpoint { socket: dir.join(SOCKET_NAME), log: resolved.log, name: format!("run {run}"), own });
    }
    match std::env::var_os("ORCH_SOCKET") {
        Some(socket) => {
            let socket = PathBuf::from(socket);
            let log = socket.parent().map(|d| d.join("log")).unwrap_or_default();
            Ok(Endpoint { name: format!("the run at {}", socket.display()), socket, log, own: true })
        }
        None => Err(Failure::Input(
            "which run? pass --run RUN (inside a task, ORCH_SOCKET names the task's own run)".into(),
        )),
    }
}

/// The calling task, when run inside one of `end`'s tasks.
fn caller(end: &Endpoint) -> Option<String> {
    std::env::var("ORCH_TASK_ID").ok().filter(|s| end.own && !s.is_empty())
}

/// Sends a change: the engine's acceptance, or exit code 2 with its reason.
fn change(end: &Endpoint, what: &str, request: &Request) -> Result<Response, Failure> {
    let response = control::request(&end.socket, request).map_err(|e| client_failure(end, e))?;
    if !response.ok {
        let why = response.error.unwrap_or_else(|| "rejected".into());
        return Err(Failure::Input(format!("{what}: {why}")));
    }
    Ok(response)
}

fn client_failure(end: &Endpoint, e: ClientError) -> Failure {
    match e {
        ClientError::NotRunning { .. } => Failure::Input(format!("{} is not running: {e}", end.name)),
        other => Failure::Other(other.to_string()),
    }
}

/// Sends a read; a run that is not live is read from its log instead.
fn read(end: &Endpoint, request: &Request) -> Result<serde_json::Value, Failure> {
    match control::request(&end.socket, request) {
        Ok(Response { ok: true, data, .. }) => Ok(data.unwrap_or(serde_json::Value::Null)),
        Ok(Response { error, .. }) => Err(Failure::Input(error.unwrap_or_else(|| "rejected".into()))),
        Err(ClientError::NotRunning { .. }) => {
            crate::output::note(format!("orch: {} is not live: answering from its log", end.name));
            let state =
                read_compiling(&end.log)?.fold().map_err(|e| Failure::Input(format!("{}: {e}", end.log.display())))?;
            Ok(match request {
                Request::List { ready } => {
                    let rows: Vec<TaskRow> =
                        view::task_rows(&state).into_iter().filter(|r| !ready || r.ready).collect();
                    serde_json::to_value(rows).expect("rows serialize")
                }
                Request::CtxGet { key } => view::context_json(&state, key.as_deref()),
                _ => unreachable!("only reads come here"),
            })
        }
        Err(e) => Err(client_failure(end, e)),
    }
}

pub fn task(cli: &Cli, cmd: &TaskCmd) -> Result<ExitCode, Failure> {
    match cmd {
        TaskCmd::Create(a) => create(cli, a),
        TaskCmd::Update(a) => update(cli, a),
        TaskCmd::List(a) => list(cli, a),
    }
}

fn create(cli: &Cli, a: &TaskCreateArgs) -> Result<ExitCode, Failure> {
    let end = endpoint(cli, &a.target)?;
    let command = match a.command.as_slice() {
        [] => None,
        [line] => Some(Command::Shell(line.clone())),
        argv => Some(Command::Argv(argv.to_vec())),
    };
    let mut env = BTreeMap::new();
    for kv in &a.env {
        let (k, v) = kv.split_once('=').ok_or_else(|| Failure::Input(format!("--env {kv:?}: expected KEY=VALUE")))?;
        env.insert(k.to_string(), v.to_string());
    }
    let priority = match a.priority.as_deref() {
        Some("P0") => Priority::P0,
        Some("P1") => Priority::P1,
        Some("P3") => Priority::P3,
        _ => Priority::P2,
    };
    let parent = if a.root { None } else { a.parent.clone().or_else(|| caller(&end)) };
    let mut task = TaskSpec {
        id: a.id.clone(),
        command,
        after: a.blocked_by.clone(),
        parent,
        priority,
        more: Some(Box::new(TaskMore {
            title: a.title.clone(),
            env,
            cwd: a.cwd.as_deref().map(absolute).transpose()?,
            timeout_ms: a.timeout_ms,
            retry: RetryPolicy { max_attempts: a.max_attempts.unwrap_or(1), ..RetryPolicy::default() },
            ..TaskMore::default()
        })),
        ..TaskSpec::default()
    };
    task.normalize();
    let request = Request::Create { by: caller(&end), task: Box::new(task) };
    change(&end, &format!("task create {}", a.id), &request)?;
    if a.json {
        line(serde_json::json!({ "ok": true, "id": a.id }).to_string())?;
    } else {
        line(format!("created {}", a.id))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn update(cli: &Cli, a: &TaskUpdateArgs) -> Result<ExitCode, Failure> {
    let end = endpoint(cli, &a.target)?;
    let Some(id) = a.id.clone().or_else(|| caller(&end)) else {
        return Err(Failure::Input("which task? name it (inside a task it defaults to ORCH_TASK_ID)".into()));
    };
    let status = UpdateStatus::parse(&a.status).ok_or_else(|| {
        let all: Vec<&str> = UpdateStatus::ALL.iter().map(|s| s.name()).collect();
        Failure::Input(format!("--status {:?}: expected one of {}", a.status, all.join(", ")))
    })?;
    let request = Request::Update { by: caller(&end), task: id.clone(), status, note: a.note.clone() };
    change(&end, &format!("task update {id}"), &request)?;
    if a.json {
        line(serde_json::json!({ "ok": true, "id": id, "status": status.name() }).to_string())?;
    } else {
        line(format!("{id}: {}", status.name()))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn list(cli: &Cli, a: &TaskListArgs) -> Result<ExitCode, Failure> {
    let end = endpoint(cli, &a.target)?;
    let data = read(&end, &Request::List { ready: a.ready })?;
    if a.json {
        line(data.to_string())?;
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<serde_json::Value> = data.as_array().cloned().unwrap_or_default();
    let field = |r: &serde_json::Value, k: &str| r.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
    let width = rows.iter().map(|r| field(r, "id").len()).max().unwrap_or(2).max(2);
    line(format!("{:width$}  {:12}  {:12}  blocked by", "id", "status", "parent"))?;
    for r in &rows {
        let mut status = field(r, "status");
        if let Some(mark) = r.get("mark").and_then(|m| m.as_str()) {
            status = format!("{status} ({mark})");
        }
        let progress = r.get("children").and_then(|c| c.as_array()).and_then(|c| Some([c.first()?, c.get(1)?]));
        if let Some([done, total]) = progress {
            if status.starts_with("delegated") || status.starts_with("stuck") {
                status = format!("{status} ({done}/{total})");
            }
        }
        let blocked: Vec<String> = r
            .get("blocked_by")
            .and_then(|b| b.as_array())
            .map(|b| b.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        let parent = field(r, "parent");
        let parent = if parent.is_empty() { "-".to_string() } else { parent };
        line(format!("{:width$}  {:12}  {:12}  {}", field(r, "id"), status, parent, blocked.join(",")))?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn ctx(cli: &Cli, cmd: &CtxCmd) -> Result<ExitCode, Failure> {
    match cmd {
        CtxCmd::Set(a) | CtxCmd::Append(a) => {
            let end = endpoint(cli, &a.target)?;
            let (by, key, value) = (caller(&end), a.key.clone(), a.value.clone());
            let (what, request) = match cmd {
                CtxCmd::Set(_) => ("ctx set", Request::CtxSet { by, key, value }),
                _ => ("ctx append", Request::CtxAppend { by, key, value }),
            };
            change(&end, &format!("{what} {}", a.key), &request)?;
            Ok(ExitCode::SUCCESS)
        }
        CtxCmd::Get(a) => {
            let end = endpoint(cli, &a.target)?;
            let data = read(&end, &Request::CtxGet { key: a.key.clone() })?;
            if a.json {
                line(data.to_string())?;
                return Ok(ExitCode::SUCCESS);
            }
            match (&a.key, &data) {
                (Some(key), serde_json::Value::Null) => {
                    return Err(Failure::Input(format!("context key {key:?} is not set")));
                }
                (Some(_), value) => print_value(value)?,
                (None, serde_json::Value::Object(map)) => {
                    for (k, v) in map {
                        line(format!("{k} = {v}"))?;
                    }
                }
                (None, _) => {}
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A string as is; a list one item per line.
fn print_value(value: &serde_json::Value) -> Result<(), Failure> {
    match value {
        serde_json::Value::String(s) => line(s),
        serde_json::Value::Array(items) => {
            for item in items {
                line(item.as_str().unwrap_or_default())?;
            }
            Ok(())
        }
        other => line(other.to_string()),
    }
}

/// `dir` from the caller's working directory: the engine resolves a relative path from
/// its own, which is seldom where the caller (often a task in a `cwd` of its own) is.
fn absolute(dir: &str) -> Result<String, Failure> {
    let here =
        std::env::current_dir().map_err(|e| Failure::Other(format!("--cwd {dir}: the current directory: {e}")))?;
    Ok(here.join(dir).to_string_lossy().into_owned())
}
