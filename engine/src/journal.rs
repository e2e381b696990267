//! Records on the log: encode, append and commit a step's records in one go (the
//! write-ahead rule: the caller performs effects only after `append` returns), and read
//! them back.

use std::path::Path;

use orch_log_format::{Options, Reader, Writer};

use crate::record::{DecodeError, Record};

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
