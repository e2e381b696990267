//! Records on the log: encode, append and commit a step's records in one go (the
//! write-ahead rule: the caller performs effects only after `append` returns), and read
//! them back.

use std::path::Path;
use std::sync::Arc;

use orch_log_format::{Options, Reader, Writer};

use crate::graph::Graph;
use crate::record::{DecodeError, Digest, Event, Record, RunStarted};
use crate::state::{compile_started, ApplyError, State};

/// Why records could not be read back from a log.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Log(#[from] orch_log_format::Error),
    #[error("{dir}: seq {seq}: {source}")]
    Decode { dir: String, seq: u64, source: DecodeError },
}

/// A log writer that speaks records.
#[derive(Debug)]
pub struct Journal {
    writer: Writer,
    buf: Vec<u8>,
}

impl Journal {
    pub fn create(dir: &Path, options: Options) -> Result<Journal, orch_log_format::Error> {
        Ok(Journal::from_writer(Writer::create(dir, options)?))
    }

    pub fn from_writer(writer: Writer) -> Journal {
        Journal { writer, buf: Vec::with_capacity(256) }
    }

    /// Appends the records and commits them: when this returns they are in the OS (and
    /// on disk as the durability policy says), so their effects may be performed.
    pub fn append(&mut self, records: &[Record]) -> Result<(), orch_log_format::Error> {
        self.append_uncommitted(records)?;
        self.writer.commit()
    }

    /// Appends without committing. Only for drivers whose effects are not real (the
    /// simulated executor): nothing may act on these records until `commit`.
    pub fn append_uncommitted(&mut self, records: &[Record]) -> Result<(), orch_log_format::Error> {
        for r in records {
            self.buf.clear();
            r.encode_into(&mut self.buf);
            self.writer.append(&self.buf)?;
        }
        Ok(())
    }

    /// Commits when at least `threshold` bytes are pending: batches many simulated steps
    /// into one write.
    pub fn commit_if_over(&mut self, threshold: usize) -> Result<(), orch_log_format::Error> {
        if self.writer.pending_bytes() >= threshold {
            self.writer.commit()?;
        }
        Ok(())
    }

    pub fn writer(&self) -> &Writer {
        &self.writer
    }

    pub fn writer_mut(&mut self) -> &mut Writer {
        &mut self.writer
    }

    pub fn close(self) -> Result<(), orch_log_format::Error> {
        self.writer.close()
    }
}

/// Reads every record of the log in `dir`, with its seq.
pub fn read_records(dir: &Path) -> Result<Vec<Record>, ReadError> {
    let reader = Reader::open(dir)?;
    let mut out = Vec::new();
    for item in reader.iter() {
        let item = item?;
        let record = Record::decode(item.payload).map_err(|source| ReadError::Decode {
            dir: dir.display().to_string(),
            seq: item.seq,
            source,
        })?;
        out.push(record);
    }
    Ok(out)
}

/// The workflow of the log's run-started record, compiled from its spec, with the spec's
/// digest as recorded: what `recover::recover_compiled` takes, so a reader can compile it
/// (the larger part of replaying a big run) while it reads the rest of the log. None when
/// the first record is missing, unreadable, not a run-started record, or its spec does
/// not match its digest or is invalid (or its compiled graph is not the spec's): the full
/// path (`recover`) then says why.
pub fn first_graph(dir: &Path) -> Option<(Digest, Arc<Graph>)> {
    compiled(&first_started(dir)?)
}

fn compiled(started: &RunStarted) -> Option<(Digest, Arc<Graph>)> {
    let graph = compile_started(started).ok()?;
    Some((started.spec_digest, Arc::new(graph)))
}

/// The log's first record, when it is a readable run-started record.
fn first_started(dir: &Path) -> Option<RunStarted> {
    let reader = Reader::open(dir).ok()?;
    let item = reader.iter().next()?.ok()?;
    match Record::decode(item.payload).ok()?.event {
        Event::RunStarted(started) => Some(started),
        _ => None,
    }
}

/// A log read whole while its run-started spec was compiled on a second thread: for a
/// big run, parsing and compiling the spec is the larger part of a fold, and reading the
/// rest of the log does not need it, so the two overlap (`read_compiling`).
#[derive(Debug)]
pub struct Loaded {
    pub records: Vec<Record>,
    compiled: Option<(Digest, Arc<Graph>)>,
}

/// Reads every record of the log in `dir` (as `read_records`), compiling the run-started
/// record's spec meanwhile (as `first_graph`) unless the record carries its compiled
/// graph: the fold then loads that, which is faster than any compiling (and a view needs
/// no task specs).
pub fn read_compiling(dir: &Path) -> Result<Loaded, ReadError> {
    let (records, compiled) = std::thread::scope(|s| {
        let compiling = s.spawn(|| first_started(dir).filter(|r| r.image.is_none()).as_ref().and_then(compiled));
        let records = read_records(dir);
        (records, compiling.join().ok().flatten())
    });
    Ok(Loaded { records: records?, compiled })
}

impl Loaded {
    /// Folds every record, as `State::fold(&self.records)` would (the same state, the same
    /// first error, with its seq), taking the graph compiled meanwhile for the run-started
    /// record.
    pub fn fold(&self) -> Result<State, FoldError> {
        let (mut state, from) = match self.started() {
            Some(started) => (started.map_err(|source| FoldError::Apply { seq: 0, source })?, 1),
            None => (State::new(), 0),
        };
        for (seq, r) in self.records.iter().enumerate().skip(from) {
            state.apply(r).map_err(|source| FoldError::Apply { seq: seq as u64, source })?;
        }
        Ok(state)
    }

    /// The state after the run-started record, from the graph compiled meanwhile; None
    /// (fold that record as any other) unless the graph was compiled from that record's
    /// very spec — the log may have been replaced between the two reads.
    fn started(&self) -> Option<Result<State, ApplyError>> {
        let (digest, graph) = self.compiled.as_ref()?;
        let first = self.records.first()?;
        let Event::RunStarted(started) = &first.event else { return None };
        if started.spec_digest != *digest {
            return None;
        }
        let mut state = State::new();
        Some(state.apply_started(first, Arc::clone(graph)).map(|()| state))
    }
}

/// Why a log could not be folded.
#[derive(Debug, thiserror::Error)]
pub enum FoldError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("seq {seq}: {source}")]
    Apply { seq: u64, source: ApplyError },
}

/// Folds the log in `dir` while decoding it, up to and including seq `upto` (all of it
/// when None), and says how many records were applied. No `Vec<Record>` is collected:
/// each record is dropped once applied, so its memory is reused by the next one (at a
/// million records the collected records are ~140 MB of fresh pages).
pub fn fold_log(dir: &Path, upto: Option<u64>) -> Result<(State, u64), FoldError> {
    let reader = Reader::open(dir).map_err(ReadError::from)?;
    let mut state = State::new();
    let mut applied = 0;
    for item in reader.iter() {
        let item = item.map_err(ReadError::from)?;
        if upto.is_some_and(|upto| item.seq > upto) {
            break;
        }
        let record = Record::decode(item.payload).map_err(|source| ReadError::Decode {
            dir: dir.display().to_string(),
            seq: item.seq,
            source,
        })?;
        state.apply(&record).map_err(|source| FoldError::Apply { seq: item.seq, source })?;
        applied += 1;
    }
    Ok((state, applied))
}

/// A journal on a second thread: the caller encodes records and hands over batches of
/// bytes; a writer thread frames, checksums, appends and writes them. For drivers whose
/// effects are not real (the simulator, benchmarks): nothing waits for a commit, so
/// decisions and log writing overlap on two cores. The process runtime never uses it —
/// the write-ahead rule needs each step committed before its effects.
#[derive(Debug)]
pub struct PipelinedJournal {
    tx: Option<std::sync::mpsc::SyncSender<Batch>>,
    batch: Batch,
    thread: Option<std::thread::JoinHandle<Result<(), orch_log_format::Error>>>,
}

#[derive(Debug, Default)]
struct Batch {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

/// Bytes per batch handed to the writer thread.
const PIPELINE_BATCH_BYTES: usize = 256 * 1024;

impl PipelinedJournal {
    pub fn new(journal: Journal) -> PipelinedJournal {
        // Two batches in flight at most: enough to overlap, bounded memory.
        let (tx, rx) = std::sync::mpsc::sync_channel::<Batch>(2);
        let thread = std::thread::Builder::new()
            .name("orch-journal".into())
            .spawn(move || {
                let mut journal = journal;
                for batch in rx {
                    let mut start = 0;
                    for &end in &batch.ends {
                        journal.writer.append(&batch.bytes[start..end])?;
                        start = end;
                    }
                    journal.writer.commit()?;
                }
                journal.close()
            })
            .expect("spawning the journal thread");
        PipelinedJournal { tx: Some(tx), batch: Batch::default(), thread: Some(thread) }
    }

    /// Encodes `records` into the current batch; hands the batch over when it is full.
    pub fn append(&mut self, records: &[Record]) -> Result<(), orch_log_format::Error> {
        for r in records {
            r.encode_into(&mut self.batch.bytes);
            self.batch.ends.push(self.batch.bytes.len());
        }
        if self.batch.bytes.len() >= PIPELINE_BATCH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    /// Hands everything over, waits for the writer thread, and closes the log.
    pub fn close(mut self) -> Result<(), orch_log_format::Error> {
        self.flush()?;
        drop(self.tx.take());
        self.join()
    }

    fn flush(&mut self) -> Result<(), orch_log_format::Error> {
        if self.batch.ends.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        let sent = self.tx.as_ref().is_some_and(|tx| tx.send(batch).is_ok());
        if sent {
            Ok(())
        } else {
            // The writer thread stopped: its error says why.
            drop(self.tx.take());
            self.join().and(Err(orch_log_format::Error::Poisoned))
        }
    }

    fn join(&mut self) -> Result<(), orch_log_format::Error> {
        match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(orch_log_format::Error::Poisoned),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orch_log_format::Durability;

    /// A small simulated run with retries and a dependency, on a log.
    fn log() -> (tempfile::TempDir, Vec<Record>) {
        let text = "[[task]]\nid = \"a\"\nretry = { max_attempts = 3 }\nsim = { outcomes = [\"fail\", \"succeed\"] }\n\
                    [[task]]\nid = \"b\"\nafter = [\"a\"]\nsim = { duration_ms = 5 }\n";
        let spec = crate::spec::parse(text, "t.toml", crate::spec::Format::Toml).expect("spec");
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut journal =
            Journal::create(tmp.path(), Options { durability: Durability::Never, segment_bytes: 4096 }).expect("log");
        let mut records = Vec::new();
        crate::sim::simulate(spec, 0, |rs: &[Record]| {
            records.extend_from_slice(rs);
            journal.append(rs)
        })
        .expect("sim");
        journal.close().expect("close");
        (tmp, records)
    }

    #[test]
    fn fold_log_folds_what_read_records_reads() {
        let (tmp, records) = log();
        assert_eq!(read_records(tmp.path()).expect("read"), records);
        let (state, applied) = fold_log(tmp.path(), None).expect("fold");
        assert_eq!(applied, records.len() as u64);
        assert!(state.is_finished());
        assert_eq!(state.records_applied(), State::fold(&records).expect("fold").records_applied());
        let (prefix, applied) = fold_log(tmp.path(), Some(2)).expect("fold a prefix");
        assert_eq!((applied, prefix.records_applied(), prefix.is_finished()), (3, 3, false));
    }

    #[test]
    fn fold_log_names_the_seq_that_does_not_apply() {
        let (tmp, mut records) = log();
        // The same records with the second one left out: seq 1 then does not apply.
        records.remove(1);
        let other = tmp.path().join("other");
        let mut journal =
            Journal::create(&other, Options { durability: Durability::Never, segment_bytes: 4096 }).expect("log");
        journal.append(&records).expect("append");
        journal.close().expect("close");
        let expected = State::fold(&records[..2]).expect_err("seq 1 does not apply");
        match fold_log(&other, None) {
            Err(FoldError::Apply { seq: 1, source }) => assert_eq!(source, expected),
            other => panic!("expected an apply error at seq 1, got {other:?}"),
        }
    }

    /// The log of `log()` as an orch before kind 11 wrote it: no compiled graph.
    fn legacy_log() -> (tempfile::TempDir, Vec<Record>) {
        let (_, mut records) = log();
        if let Event::RunStarted(r) = &mut records[0].event {
            r.image = None;
        }
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut journal =
            Journal::create(tmp.path(), Options { durability: Durability::Never, segment_bytes: 4096 }).expect("log");
        journal.append(&records).expect("append");
        journal.close().expect("close");
        (tmp, records)
    }

    #[test]
    fn a_log_read_while_compiling_folds_as_its_records_do() {
        // The run-started record carries the compiled graph: nothing is compiled, the
        // fold loads it.
        let (tmp, records) = log();
        assert!(matches!(&records[0].event, Event::RunStarted(r) if r.image.is_some()));
        let loaded = read_compiling(tmp.path()).expect("read");
        assert_eq!(loaded.records, records);
        assert!(loaded.compiled.is_none(), "nothing to compile");
        let whole = format!("{:?}", State::fold(&records).expect("fold"));
        assert_eq!(format!("{:?}", loaded.fold().expect("fold")), whole);

        // A log without it: its spec compiles on the second thread.
        let (tmp, records) = legacy_log();
        let loaded = read_compiling(tmp.path()).expect("read");
        assert_eq!(loaded.records, records);
        assert!(loaded.compiled.is_some(), "the spec compiled on the second thread");
        let whole = format!("{:?}", State::fold(&records).expect("fold"));
        assert_eq!(format!("{:?}", loaded.fold().expect("fold")), whole);
    }

    #[test]
    fn a_graph_of_another_spec_is_not_used_and_errors_are_those_of_the_fold() {
        let (tmp, records) = legacy_log();
        let (_, other) = first_graph(tmp.path()).expect("compiles");
        // As if the log had been replaced between the two reads: the first record names
        // another digest than the graph was compiled from.
        let stale = Loaded { records: records.clone(), compiled: Some((Digest::ZERO, other)) };
        assert_eq!(format!("{:?}", stale.fold().expect("fold")), format!("{:?}", State::fold(&records).unwrap()));

        let mut broken = records.clone();
        broken.remove(3);
        let loaded = Loaded { records: broken.clone(), compiled: read_compiling(tmp.path()).expect("read").compiled };
        match loaded.fold() {
            Err(FoldError::Apply { seq: 3, source }) => assert_eq!(source, State::fold(&broken).expect_err("same")),
            other => panic!("expected an apply error at seq 3, got {other:?}"),
        }
    }
}
