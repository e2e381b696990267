//! The run store: `.orch/` in the current directory by default. One directory per run
//! (its log and a copy of its spec), content-addressed output blobs shared by all runs.
//!
//! ```text
//! .orch/
//!   runs/<run-id>/log/         the run's segment log
//!   runs/<run-id>/spec.<ext>   the workflow file as given
//!   blobs/<blake3-hex>         every attempt's output (stdout and stderr), by content
//!   blobs/tmp/                 outputs being written
//! ```
//! Run ids start with the UTC start time, so they sort by time, and are accepted by any
//! unique prefix, as git accepts hashes.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Why a store operation failed; each names what it was about.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("no run matches {0:?} (see `orch ls`)")]
    NoSuchRun(String),
    #[error("run id prefix {prefix:?} is ambiguous: {}", .candidates.join(", "))]
    Ambiguous { prefix: String, candidates: Vec<String> },
    #[error("{0:?} is not a run id or a log directory")]
    BadRunRef(String),
}

/// A store rooted at a directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// The store at `root` (not created until a run writes to it).
    pub fn at(root: impl Into<PathBuf>) -> Store {
        Store { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn runs_dir(&self) -> PathBuf {
        self.root.join("runs")
    }

    pub fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs")
    }

    pub fn run_dir(&self, id: &str) -> PathBuf {
        self.runs_dir().join(id)
    }

    pub fn log_dir(&self, id: &str) -> PathBuf {
        self.run_dir(id).join("log")
    }

    /// Makes the blobs directory (and its `tmp/`, where outputs are written) if it is
    /// missing: a run's children write their output there, and a resumed run may find
    /// it deleted (to save space) since.
    pub fn make_blobs_dir(&self) -> Result<(), StoreError> {
        let tmp = self.blobs_dir().join("tmp");
        fs::create_dir_all(&tmp).map_err(io(self.blobs_dir()))?;
        sweep_parts(&tmp);
        Ok(())
    }

    /// Creates the directory of a new run and keeps its spec text there (as
    /// `spec.<ext>`); returns the id.
    pub fn create_run(&self, spec_ext: &str, spec_text: &str) -> Result<String, StoreError> {
        let runs = self.runs_dir();
        fs::create_dir_all(&runs).map_err(io(&runs))?;
        self.make_blobs_dir()?;
        // The time gives the order, and so must the suffix: it is the fraction of the
        // second in 1/65536ths (~15 µs). It used to be clock bits xor the pid, which made
        // runs started within one second sort at random, so `latest` could name an older
        // run. Two runs in the same tick: `create_dir` fails rather than reuse a dir, and
        // the next try reads the clock again and bumps the suffix, keeping the order.
        for attempt in 0..16u32 {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
            let tick = (u64::from(now.subsec_nanos()) << 16) / 1_000_000_000;
            let salt = (tick + u64::from(attempt)).min(0xffff);
            let id = format!("{}-{salt:04x}", utc_stamp(now.as_secs()));
            let dir = self.run_dir(&id);
            match fs::create_dir(&dir) {
                Ok(()) => {
                    let copy = dir.join(format!("spec.{spec_ext}"));
                    fs::write(&copy, spec_text).map_err(io(&copy))?;
                    return Ok(id);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(StoreError::Io { path: dir, source: e }),
            }
        }
        Err(StoreError::Io { path: runs, source: std::io::Error::other("could not find a free run id") })
    }

    /// Every run id, oldest first.
    pub fn list_runs(&self) -> Result<Vec<String>, StoreError> {
        let runs = self.runs_dir();
        let entries = match fs::read_dir(&runs) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StoreError::Io { path: runs, source: e }),
        };
        let mut ids = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io(&runs))?;
            if entry.path().join("log").is_dir() {
                if let Some(name) = entry.file_name().to_str() {
                    ids.push(name.to_string());
                }
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Resolves a run id, a unique prefix of one, `latest`, or a path to a log directory
    /// (or a run directory holding `log/`) to the log directory.
    pub fn resolve(&self, reference: &str) -> Result<Resolved, StoreError> {
        let as_path = Path::new(reference);
        // A bare word names a directory only if that directory holds a log: `latest` or
        // an id prefix stays a run reference even where a directory of that name exists.
        let holds_log = |p: &Path| {
            p.join("log").is_dir()
                || std::fs::read_dir(p)
                    .is_ok_and(|mut d| d.any(|e| e.is_ok_and(|e| e.path().extension().is_some_and(|x| x == "seg"))))
        };
        if reference.contains('/') || as_path.is_dir() && !self.run_dir(reference).is_dir() && holds_log(as_path) {
            if as_path.join("log").is_dir() {
                return Ok(Resolved { id: None, log: as_path.join("log") });
            }
            if as_path.is_dir() {
                return Ok(Resolved { id: None, log: as_path.to_path_buf() });
            }
            return Err(StoreError::BadRunRef(reference.to_string()));
        }
        let ids = self.list_runs()?;
        if reference == "latest" {
            let id = ids.last().ok_or_else(|| StoreError::NoSuchRun(reference.to_string()))?;
            return Ok(Resolved { log: self.log_dir(id), id: Some(id.clone()) });
        }
        if let Some(id) = ids.iter().find(|id| *id == reference) {
            return Ok(Resolved { log: self.log_dir(id), id: Some(id.clone()) });
        }
        let matches: Vec<&String> = ids.iter().filter(|id| id.starts_with(reference)).collect();
        match matches.as_slice() {
            [] => Err(StoreError::NoSuchRun(reference.to_string())),
            [one] => Ok(Resolved { log: self.log_dir(one), id: Some((*one).clone()) }),
            many => Err(StoreError::Ambiguous {
                prefix: reference.to_string(),
                candidates: many.iter().map(|s| s.to_string()).collect(),
            }),
        }
    }

    /// Where the blob with this digest lives.
    pub fn blob_path(&self, hex: &str) -> PathBuf {
        self.blobs_dir().join(hex)
    }
}

/// A run reference resolved to its log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub id: Option<String>,
    pub log: PathBuf,
}

/// Removes the temporary files (`part-PID-...`) that an orch killed while storing an
/// output left in `tmp`: those of a process that is gone. (A pid in use again keeps its
/// files: they may be that process's own.)
fn sweep_parts(tmp: &Path) {
    let Ok(entries) = fs::read_dir(tmp) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let pid = name.to_str().and_then(|n| n.strip_prefix("part-")?.split('-').next()?.parse::<u32>().ok());
        if let Some(pid) = pid {
            if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.into();
    move |source| StoreError::Io { path, source }
}

/// `YYYYMMDD-HHMMSS` in UTC (civil-from-days, Howard Hinnant's algorithm).
fn utc_stamp(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}{month:02}{day:02}-{:02}{:02}{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_files_of_a_gone_process_are_swept_when_the_store_is_opened() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::at(dir.path());
        store.make_blobs_dir().unwrap();
        let tmp = store.blobs_dir().join("tmp");
        // A process that is gone (reaped), one that is not (this one), and another file.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let gone = child.id();
        child.wait().unwrap();
        let names = [format!("part-{gone}-5-0"), format!("part-{}-5-0", std::process::id()), "other".to_string()];
        for name in &names {
            fs::write(tmp.join(name), "x").unwrap();
        }
        store.make_blobs_dir().unwrap();
        let left: Vec<bool> = names.iter().map(|n| tmp.join(n).exists()).collect();
        assert_eq!(left, [false, true, true]);
    }

    #[test]
    fn stamps_are_utc_civil_time() {
        assert_eq!(utc_stamp(0), "19700101-000000");
        assert_eq!(utc_stamp(1_795_000_000), "20261118-110640");
    }

    #[test]
    fn runs_resolve_by_unique_prefix() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::at(tmp.path());
        for id in ["20260101-000000-aaaa", "20260101-000000-aabb", "20260102-000000-cccc"] {
            fs::create_dir_all(store.log_dir(id)).unwrap();
        }
        assert_eq!(store.resolve("20260102").unwrap().id.as_deref(), Some("20260102-000000-cccc"));
        assert_eq!(store.resolve("latest").unwrap().id.as_deref(), Some("20260102-000000-cccc"));
        assert!(matches!(store.resolve("20260101-000000-aa"), Err(StoreError::Ambiguous { .. })));
        assert!(matches!(store.resolve("2027"), Err(StoreError::NoSuchRun(_))));
        let by_path = store.resolve(store.run_dir("20260101-000000-aaaa").to_str().unwrap()).unwrap();
        assert_eq!(by_path.log, store.log_dir("20260101-000000-aaaa"));
    }
}
