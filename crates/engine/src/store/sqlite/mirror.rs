//! The Markdown files that mirror the latest version of each document,
//! `{docs.path}/{id}.md`, for people to open and edit.
//!
//! The database holds every version; these files are a copy of the latest
//! one, written after the commit that made it durable. So they are written
//! without fsync — a file lost or left stale by a crash is rewritten from
//! the database — but always whole: a temporary file in the same directory,
//! renamed over the old one, so a reader (a person's editor, `cat`) never
//! sees half a document. Temporary files are named `.bmad2pf-XXXXXX.tmp`:
//! they start with `.`, so nothing takes them for documents, and a crash
//! between creating one and renaming it leaves it behind, so the store
//! removes its own stale ones at start ([`remove_stale_temp_files`]).
//!
//! Whatever sits at a document's path is somebody's to decide on, so this
//! module is careful with it: only regular files are ever read (what is
//! at the path is opened without waiting and looked at first: a FIFO or a
//! device could block the store's writer, or never end), a file that
//! cannot be a version — bytes that are not UTF-8, a file the store may not
//! read — is reported as such and never imported, and before a write
//! replaces such a file it is moved aside ([`keep_aside`]), never
//! destroyed.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::store::DocId;

/// What the temporary files of [`write`] start with, so that a stale one
/// is told apart from anybody else's file.
const TEMP_PREFIX: &str = ".bmad2pf-";
/// What they end with.
const TEMP_SUFFIX: &str = ".tmp";
/// A temporary file older than this is left over from a crash: a write in
/// flight (of another process on the directory) lives for milliseconds.
const STALE_TEMP_AGE: Duration = Duration::from_secs(60);
/// What a file moved aside by [`keep_aside`] is named after: its document's
/// file name, this, and a number.
const ASIDE_SUFFIX: &str = ".unreadable-";

/// The Markdown file of document `id` in `dir`.
pub(crate) fn file_path(dir: &Path, id: &DocId) -> PathBuf {
    dir.join(format!("{id}.md"))
}

/// What a document's file holds now.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FileContent {
    Missing,
    Text(String),
    /// Something at the file's path that cannot be a version of the
    /// document: it is never imported, and the stored version is served.
    Unusable(Unusable),
}

/// Why a document's file cannot be read as a version (see [`FileContent`]).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Unusable {
    /// For the log: what the file is and why it cannot be read.
    pub why: String,
    /// Whether it is a regular file, which may hold somebody's work (not
    /// UTF-8, or not readable by this user): a write moves it aside rather
    /// than replacing it. A directory, a FIFO, a socket or a device holds
    /// no document text, and a write replaces it when it can.
    pub may_hold_work: bool,
}

/// Reads document `id`'s file, never blocking on what is there (see the
/// module docs). Never fails: whatever is wrong with the file concerns
/// only this document, and is described in [`Unusable`].
pub(crate) fn read(dir: &Path, id: &DocId) -> FileContent {
    let path = file_path(dir, id);
    match read_regular_file(&path) {
        Ok(Ok(bytes)) => String::from_utf8(bytes).map_or_else(
            |_| {
                FileContent::Unusable(Unusable {
                    why: "its bytes are not UTF-8".into(),
                    may_hold_work: true,
                })
            },
            FileContent::Text,
        ),
        Ok(Err(unusable)) => FileContent::Unusable(unusable),
        // A dangling link is missing too: the write replaces the link.
        Err(err) if err.kind() == io::ErrorKind::NotFound => FileContent::Missing,
        Err(err) => FileContent::Unusable(Unusable {
            why: format!("it cannot be read: {err}"),
            // A file this user may not read may still be somebody's work.
            may_hold_work: std::fs::metadata(&path).is_ok_and(|m| m.is_file()),
        }),
    }
}

/// The bytes of the regular file at `path`, or why what is there is not one.
///
/// Opened without waiting (`O_NONBLOCK`), then looked at: a plain open of
/// a FIFO waits for a writer, forever if none comes, and reading a device
/// (a link to /dev/zero) may never end — inside the writer's transaction,
/// that would stop every write of every process on the directory. The
/// flag changes nothing for a regular file, the only kind that is read.
fn read_regular_file(path: &Path) -> io::Result<Result<Vec<u8>, Unusable>> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let mut file = options.open(path)?;
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        return Ok(Err(not_a_file(&metadata)));
    }
    // `read_to_end` reserves room fallibly: a huge file is an error, not
    // an abort.
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(Ok(bytes))
}

fn not_a_file(metadata: &std::fs::Metadata) -> Unusable {
    Unusable {
        why: format!("it is {}, not a regular file", kind_of(metadata)),
        may_hold_work: false,
    }
}

/// What a thing that is not a regular file is, in words.
fn kind_of(metadata: &std::fs::Metadata) -> &'static str {
    let kind = metadata.file_type();
    if kind.is_dir() {
        return "a directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return "a named pipe (FIFO)";
        }
        if kind.is_socket() {
            return "a socket";
        }
        if kind.is_block_device() || kind.is_char_device() {
            return "a device";
        }
    }
    "something else"
}

/// Replaces document `id`'s file with `content`, whole (see the module docs).
pub(crate) fn write(dir: &Path, id: &DocId, content: &str) -> io::Result<()> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(TEMP_PREFIX).suffix(TEMP_SUFFIX);
    // People open and edit these files: they get the mode any program's new
    // file gets (0666 less the umask, so usually 0644), not the 0600 of a
    // private temporary file.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let mut temp = builder.tempfile_in(dir)?;
    temp.write_all(content.as_bytes())?;
    temp.persist(file_path(dir, id)).map_err(|e| e.error)?;
    Ok(())
}

/// Moves document `id`'s file to `{id}.md.unreadable-N` (the first `N`
/// not taken), a name that is no document's, so that a write can replace
/// the file without destroying what it held; the new name.
///
/// Call it only inside a write transaction: the database's write lock is
/// what keeps two processes from choosing the same name at once.
pub(crate) fn keep_aside(dir: &Path, id: &DocId) -> io::Result<PathBuf> {
    let path = file_path(dir, id);
    for n in 1..=u16::MAX {
        let aside = dir.join(format!("{id}.md{ASIDE_SUFFIX}{n}"));
        match aside.symlink_metadata() {
            Ok(_) => continue,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                std::fs::rename(&path, &aside)?;
                return Ok(aside);
            }
            Err(err) => return Err(err),
        }
    }
    Err(io::Error::other(format!(
        "every name {id}.md{ASIDE_SUFFIX}N is taken"
    )))
}

/// Removes document `id`'s file; a missing one is fine.
pub(crate) fn remove(dir: &Path, id: &DocId) -> io::Result<()> {
    match std::fs::remove_file(file_path(dir, id)) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

/// Removes the temporary files [`write`] left in `dir` when a process
/// died between creating one and renaming it, once they are older than
/// [`STALE_TEMP_AGE`] (a younger one may be another process's write in
/// flight). Only the store's own names are touched: `.bmad2pf-XXXXXX.tmp`,
/// and `.XXXXXX.tmp` (six letters or digits), which earlier versions used.
/// Best effort: a file that cannot be removed is logged and left.
pub(crate) fn remove_stale_temp_files(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let now = SystemTime::now();
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_str().is_some_and(is_temp_file_name) {
            continue;
        }
        // Not following links: only a regular file the store made.
        let Ok(metadata) = entry.metadata() else {
            continue;
        };
        let old = metadata
            .modified()
            .ok()
            .and_then(|at| now.duration_since(at).ok())
            .is_some_and(|age| age >= STALE_TEMP_AGE);
        if !metadata.is_file() || !old {
            continue;
        }
        let path = entry.path();
        match std::fs::remove_file(&path) {
            Ok(()) => {
                tracing::info!(path = %path.display(), "removed a temporary file left by an interrupted write of a document's file");
            }
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "could not remove a temporary file left by an interrupted write of a document's file");
            }
        }
    }
}

/// Whether `name` is one of the store's temporary file names (see
/// [`remove_stale_temp_files`]).
fn is_temp_file_name(name: &str) -> bool {
    if let Some(random) = name
        .strip_prefix(TEMP_PREFIX)
        .and_then(|rest| rest.strip_suffix(TEMP_SUFFIX))
    {
        return !random.is_empty() && random.chars().all(|c| c.is_ascii_alphanumeric());
    }
    // The names of earlier versions: tempfile's six random characters.
    name.strip_prefix('.')
        .and_then(|rest| rest.strip_suffix(TEMP_SUFFIX))
        .is_some_and(|random| {
            random.len() == 6 && random.chars().all(|c| c.is_ascii_alphanumeric())
        })
}

/// A document file found in the directory.
pub(crate) struct FoundFile {
    pub id: DocId,
    pub bytes: u64,
    /// Modification time, unix ms.
    pub modified: u64,
}

/// The `*.md` files of `dir` whose stem is a valid document id; anything
/// else (temporary files, files moved aside, stray files, directories)
/// is not a document.
pub(crate) fn list(dir: &Path) -> io::Result<Vec<FoundFile>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".md")) else {
            continue;
        };
        // Only the file a document's id names (`zz.md.md` is no document's).
        let Ok(id) = DocId::parse(stem) else { continue };
        if id.as_str() != stem {
            continue;
        }
        let Ok(metadata) = entry.metadata() else {
            continue;
        };
        if !metadata.is_file() {
            continue;
        }
        let modified = metadata
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        found.push(FoundFile {
            id,
            bytes: metadata.len(),
            modified,
        });
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn only_the_stores_own_temporary_names_are_taken_for_its_temporary_files() {
        for name in [".bmad2pf-a1B2c3.tmp", ".bmad2pf-x.tmp", ".a1B2c3.tmp"] {
            assert!(is_temp_file_name(name), "{name}");
        }
        for name in [
            ".bmad2pf-.tmp",
            ".bmad2pf-a b.tmp",
            ".a1B2c.tmp",
            ".a1B2c3d.tmp",
            "a1B2c3.tmp",
            ".notes.md.tmp",
            ".a1B2c3.tmp.md",
            "S1__prd.md",
        ] {
            assert!(!is_temp_file_name(name), "{name}");
        }
    }

    #[test]
    fn a_file_moved_aside_takes_the_first_free_name_and_keeps_its_bytes() -> TestResult {
        let dir = tempfile::tempdir()?;
        let id = DocId::parse("S1__prd")?;
        std::fs::write(dir.path().join("S1__prd.md.unreadable-1"), "older")?;
        std::fs::write(file_path(dir.path(), &id), [0xe9, b'!'])?;
        let aside = keep_aside(dir.path(), &id)?;
        assert_eq!(aside, dir.path().join("S1__prd.md.unreadable-2"));
        assert_eq!(std::fs::read(&aside)?, [0xe9, b'!']);
        assert_eq!(
            std::fs::read(dir.path().join("S1__prd.md.unreadable-1"))?,
            b"older"
        );
        assert_eq!(read(dir.path(), &id), FileContent::Missing);
        Ok(())
    }

    #[cfg(unix)]
    #[test]
    fn files_are_written_with_the_mode_of_any_new_file() -> TestResult {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir()?;
        let id = DocId::parse("S1__prd")?;
        write(dir.path(), &id, "text")?;
        let mode = std::fs::metadata(file_path(dir.path(), &id))?
            .permissions()
            .mode();
        // The mode `std::fs::write` gives a new file under the same umask
        // (0644 under the usual 022; a temporary file's 0600 under any).
        let plain_file_mode = {
            let probe = dir.path().join("probe");
            std::fs::write(&probe, "")?;
            std::fs::metadata(&probe)?.permissions().mode() & 0o777
        };
        assert_eq!(mode & 0o777, plain_file_mode);
        Ok(())
    }
}
