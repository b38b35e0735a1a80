//! One file of a write-ahead journal: JSON Lines written into space that
//! was filled with zero bytes in advance.
//!
//! Why the zeros: an `fdatasync` after an append that makes a file longer
//! must also commit the new size (on ext4, a journal commit of the
//! filesystem); an append that overwrites bytes already allocated is pure
//! data. So the file is kept longer than its content, padded with zeros
//! ([`PREALLOCATE`] at a time), and each group of appends costs one data
//! flush.
//!
//! Reading: the content ends at the first zero byte (JSON text never holds
//! a raw NUL). Within it, bytes after the last `\n` are a torn append (never
//! acknowledged) and are zeroed on load; a complete line that does not
//! parse is [`StoreError::Corrupt`].
//!
//! Emptying ([`JournalFile::clear`]) writes zeros over the content and
//! flushes, keeping the space. A crash half-way leaves some prefix of the
//! old records, or none: every one of them was applied and flushed before
//! the journal retired them, and replaying them again changes nothing (see
//! [`journal`](super::journal)).

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::StoreError;
use super::files::DurableDir;
use super::group_sync::{GroupSync, SyncKind, Ticket};
use super::jsonl::{Pending, encode_lines, parse_lines};

/// How much zero-filled space is added when the content reaches the end.
pub(crate) const PREALLOCATE: u64 = 4 << 20;

/// How much of the file a read takes at a time while looking for the end
/// of the content.
const READ_CHUNK: usize = 64 << 10;

/// One journal file (see the module docs).
#[derive(Debug)]
pub(crate) struct JournalFile {
    path: PathBuf,
    /// For messages: "the document journal".
    what: String,
    file: Arc<File>,
    /// Where the content ends: the next append goes here.
    end: u64,
    /// Complete lines in the content.
    lines: usize,
    /// The file's length: zeros from `end` to here.
    allocated: u64,
    /// Makes appends durable in groups.
    sync: Arc<GroupSync>,
    /// The ticket of the last append, until a writer takes it.
    last_append: Option<Ticket>,
}

impl JournalFile {
    /// Opens (creating, durably, when missing) the file `name` of `dir` and
    /// returns its records in order. Blocking.
    pub(crate) fn load<T: DeserializeOwned>(
        dir: &DurableDir,
        name: &str,
        what: &str,
    ) -> Result<(Self, Vec<T>), StoreError> {
        let path = dir.path().join(name);
        let failed = |err: io::Error| StoreError::io(format!("open {what}"), &path, &err);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(failed)?;
        let allocated = file.metadata().map_err(failed)?.len();
        if allocated == 0 {
            dir.sync_entries().map_err(failed)?;
        }
        let content = read_content(&mut file).map_err(failed)?;
        let (valid, records) = parse_lines::<T>(&content, what, &path)?;
        if valid < content.len() {
            // A torn append: zeroed, so that the content ends where the
            // next append goes.
            zero(&file, valid as u64, (content.len() - valid) as u64)
                .and_then(|()| file.sync_data())
                .map_err(failed)?;
        }
        let journal_file = Self {
            what: what.to_string(),
            file: Arc::new(file),
            end: valid as u64,
            lines: records.len(),
            allocated,
            sync: Arc::new(GroupSync::new(SyncKind::Data)),
            last_append: None,
            path,
        };
        Ok((journal_file, records))
    }

    /// Complete lines in the file.
    pub(crate) fn lines(&self) -> usize {
        self.lines
    }

    /// Bytes of content.
    pub(crate) fn bytes(&self) -> u64 {
        self.end
    }

    /// Writes `records` as lines after the content, adding zero-filled space
    /// first when they do not fit. Not durable yet: the caller waits on
    /// [`JournalFile::take_pending`] after releasing its locks.
    pub(crate) fn append<T: Serialize>(&mut self, records: &[T]) -> Result<(), StoreError> {
        let bytes = encode_lines(records, &self.what, &self.path)?;
        let failed =
            |err: io::Error| StoreError::io(format!("write {}", self.what), &self.path, &err);
        self.sync.check().map_err(failed)?;
        let needed = self.end + bytes.len() as u64;
        if needed > self.allocated {
            let grown = needed.next_multiple_of(PREALLOCATE);
            zero(&self.file, self.allocated, grown - self.allocated).map_err(failed)?;
            self.allocated = grown;
        }
        if let Err(err) = self.file.write_all_at(&bytes, self.end) {
            // Best effort: a partial append must not stay as content.
            let _ = zero(&self.file, self.end, bytes.len() as u64);
            return Err(failed(err));
        }
        self.end = needed;
        self.lines += records.len();
        self.last_append = Some(self.sync.changed(&self.file));
        Ok(())
    }

    /// The appends not yet known to be durable.
    pub(crate) fn take_pending(&mut self) -> Option<Pending> {
        self.last_append
            .take()
            .map(|ticket| Pending::new(Arc::clone(&self.sync), ticket, &self.what, &self.path))
    }

    /// Empties the file durably, keeping its space (see the module docs).
    /// Every append made so far counts as durable afterwards: the caller
    /// made what they record durable elsewhere. Blocking.
    pub(crate) fn clear(&mut self) -> Result<(), StoreError> {
        if self.end > 0 {
            zero(&self.file, 0, self.end)
                .and_then(|()| self.file.sync_data())
                .map_err(|err| StoreError::io(format!("empty {}", self.what), &self.path, &err))?;
        }
        self.end = 0;
        self.lines = 0;
        self.sync.all_durable(Some(Arc::clone(&self.file)));
        Ok(())
    }
}

/// The file's content: its bytes up to the first zero byte.
fn read_content(file: &mut File) -> io::Result<Vec<u8>> {
    let mut content = Vec::new();
    let mut chunk = vec![0; READ_CHUNK];
    loop {
        let read = file.read(&mut chunk)?;
        let part = &chunk[..read];
        match part.iter().position(|&b| b == 0) {
            Some(nul) => {
                content.extend_from_slice(&part[..nul]);
                return Ok(content);
            }
            None if read == 0 => return Ok(content),
            None => content.extend_from_slice(part),
        }
    }
}

/// Writes `len` zero bytes at `offset`.
fn zero(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let zeros = vec![0; READ_CHUNK];
    let mut done = 0;
    while done < len {
        let step = (len - done).min(READ_CHUNK as u64);
        // `step` is at most READ_CHUNK, so the cast cannot truncate.
        file.write_all_at(&zeros[..step as usize], offset + done)?;
        done += step;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};
    use std::path::Path;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn load(dir: &Path) -> Result<(JournalFile, Vec<Value>), Box<dyn std::error::Error>> {
        let durable = DurableDir::open(dir.to_path_buf())?;
        Ok(JournalFile::load(&durable, "j.jsonl", "a test journal")?)
    }

    #[test]
    fn appends_overwrite_the_zeros_and_reload() -> TestResult {
        let dir = tempfile::tempdir()?;
        let (mut file, records) = load(dir.path())?;
        assert!(records.is_empty());
        file.append(&[json!({"a": 1})])?;
        file.append(&[json!({"a": 2}), json!({"a": 3})])?;
        let on_disk = std::fs::metadata(dir.path().join("j.jsonl"))?.len();
        assert_eq!(on_disk, PREALLOCATE, "padded with zeros");
        let (reloaded, records) = load(dir.path())?;
        assert_eq!(records, [json!({"a": 1}), json!({"a": 2}), json!({"a": 3})]);
        assert_eq!(reloaded.lines(), 3);
        assert_eq!(reloaded.bytes(), file.bytes());
        Ok(())
    }

    #[test]
    fn a_torn_append_is_zeroed_and_overwritten() -> TestResult {
        let dir = tempfile::tempdir()?;
        let mut bytes = b"{\"a\":1}\n{\"a\":".to_vec();
        bytes.resize(100, 0);
        std::fs::write(dir.path().join("j.jsonl"), &bytes)?;
        let (mut file, records) = load(dir.path())?;
        assert_eq!(records, [json!({"a": 1})]);
        file.append(&[json!(2)])?;
        let (_, records) = load(dir.path())?;
        assert_eq!(records, [json!({"a": 1}), json!(2)]);
        Ok(())
    }

    #[test]
    fn clear_keeps_the_space_and_a_half_cleared_file_loads() -> TestResult {
        let dir = tempfile::tempdir()?;
        let (mut file, _) = load(dir.path())?;
        file.append(&[json!(1), json!(2)])?;
        file.clear()?;
        assert_eq!(
            std::fs::metadata(dir.path().join("j.jsonl"))?.len(),
            PREALLOCATE
        );
        let (_, records) = load(dir.path())?;
        assert!(records.is_empty());
        // A crash while clearing: the first bytes zeroed, later lines not.
        let mut bytes = b"\0\0\0\0\n{\"a\":2}\n".to_vec();
        bytes.resize(64, 0);
        std::fs::write(dir.path().join("j.jsonl"), &bytes)?;
        let (_, records) = load(dir.path())?;
        assert!(records.is_empty());
        Ok(())
    }

    #[test]
    fn growing_past_the_space_adds_more() -> TestResult {
        let dir = tempfile::tempdir()?;
        let (mut file, _) = load(dir.path())?;
        let big = "x".repeat(usize::try_from(PREALLOCATE)? + 10);
        file.append(&[json!(big)])?;
        file.append(&[json!(1)])?;
        let len = std::fs::metadata(dir.path().join("j.jsonl"))?.len();
        assert_eq!(len, 2 * PREALLOCATE);
        let (_, records) = load(dir.path())?;
        assert_eq!(records.len(), 2);
        Ok(())
    }
}
