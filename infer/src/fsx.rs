//! Files in and out: reading no more than a bound ([`read_bounded`]), and writing so that a reader
//! never sees half of a file and a failed or interrupted command leaves nothing behind.
//!
//! Every file is written to a temporary name in its own folder and renamed into place when
//! complete ([`AtomicFile`]). Temporaries still open are listed process-wide, so that a signal
//! handler can remove them ([`remove_temporaries`]) before the process exits.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Why [`read_bounded`] returned no bytes.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The file holds more than `max` bytes (or a pipe or device gave more).
    #[error("it holds more than {max} bytes")]
    TooLarge { max: u64 },
}

/// Reads the file at `path` whole, refusing one that holds more than `max` bytes: its length is
/// checked first, and a pipe or a device that never ends (`/dev/zero`) is read no further than
/// `max + 1` bytes.
pub fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, ReadError> {
    read_open_bounded(&std::fs::File::open(path)?, max)
}

/// [`read_bounded`] of a file already open, from where it stands to its end.
pub fn read_open_bounded(mut file: &std::fs::File, max: u64) -> Result<Vec<u8>, ReadError> {
    use std::io::Read as _;
    let len = file.metadata()?.len();
    if len > max {
        return Err(ReadError::TooLarge { max });
    }
    // Room for the whole file up front: grown by doubling, a 9 MB model was copied and faulted
    // in again at each step. A pipe or device (length 0) grows as it is read.
    let mut bytes = Vec::new();
    bytes.try_reserve_exact(usize::try_from(len).unwrap_or(0)).map_err(|_| {
        std::io::Error::new(std::io::ErrorKind::OutOfMemory, format!("no memory for its {len} bytes"))
    })?;
    crate::heap::map_spare(&mut bytes);
    (&mut file).take(max.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(ReadError::TooLarge { max });
    }
    Ok(bytes)
}

/// Like [`read_bounded`], a UTF-8 text; text that is not UTF-8 is an `InvalidData` error.
pub fn read_text_bounded(path: &Path, max: u64) -> Result<String, ReadError> {
    let bytes = read_bounded(path, max)?;
    String::from_utf8(bytes).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e).into())
}

/// Temporary files being written now, by any [`AtomicFile`] of this process.
static LIVE: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn live() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    LIVE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Removes every temporary file an [`AtomicFile`] of this process is writing. For a handler of
/// SIGINT/SIGTERM to call before it exits: the files being written are not renamed into place,
/// so an interrupted command leaves no output and no temporary.
pub fn remove_temporaries() {
    remove_where(|_| true)
}

fn remove_where(pred: impl Fn(&Path) -> bool) {
    live().retain(|path| {
        let remove = pred(path);
        if remove {
            let _ = std::fs::remove_file(path);
        }
        !remove
    });
}

/// A file written under a temporary name beside `path` and renamed to `path` by
/// [`AtomicFile::commit`]; dropped without a commit (an error, a panic), it removes its temporary
/// and `path` is left as it was.
pub struct AtomicFile {
    path: PathBuf,
    tmp: PathBuf,
    out: Option<BufWriter<std::fs::File>>,
}

impl AtomicFile {
    /// Creates the temporary file for `path`.
    pub fn create(path: impl AsRef<Path>) -> std::io::Result<Self> {
        let path = path.as_ref().to_path_buf();
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let name = path
            .file_name()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "the path names no file"))?;
        let tmp = dir.join(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
        // Listed before it exists, so that a signal between the two cannot leave it behind.
        live().push(tmp.clone());
        match std::fs::File::create(&tmp) {
            Ok(f) => Ok(AtomicFile { path, tmp, out: Some(BufWriter::new(f)) }),
            Err(e) => {
                live().retain(|p| p != &tmp);
                Err(e)
            }
        }
    }

    /// The path the file will have once committed.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flushes, syncs and renames the file into place.
    pub fn commit(mut self) -> std::io::Result<()> {
        let Some(out) = self.out.take() else { return Err(std::io::ErrorKind::BrokenPipe.into()) };
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&self.tmp, &self.path)?;
        live().retain(|p| p != &self.tmp);
        Ok(())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.out.as_mut().map_or(Ok(0), |o| o.write(buf))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.as_mut().map_or(Ok(()), |o| o.flush())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        let mut live = live();
        if let Some(i) = live.iter().position(|p| p == &self.tmp) {
            live.swap_remove(i);
            self.out = None;
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Writes `bytes` to `path` through a temporary file in the same folder, then renames it into
/// place: an interrupted write leaves the old file (or none), never a truncated one.
pub fn write_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = AtomicFile::create(path)?;
    f.write_all(bytes)?;
    f.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bounded_read_reads_up_to_the_bound_and_refuses_more() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, [7u8; 10]).unwrap();
        assert_eq!(read_bounded(&path, 10).unwrap(), vec![7u8; 10]);
        assert!(matches!(read_bounded(&path, 9), Err(ReadError::TooLarge { max: 9 })));
        // A device whose length says nothing is read no further than the bound.
        assert!(matches!(read_bounded(Path::new("/dev/zero"), 1000), Err(ReadError::TooLarge { max: 1000 })));
        assert!(matches!(read_bounded(&dir.path().join("none"), 10), Err(ReadError::Io(_))));
        std::fs::write(&path, [0xffu8, 0xfe]).unwrap();
        let bad = read_text_bounded(&path, 10).unwrap_err();
        assert!(matches!(&bad, ReadError::Io(e) if e.kind() == std::io::ErrorKind::InvalidData), "{bad}");
        std::fs::write(&path, "la la").unwrap();
        assert_eq!(read_text_bounded(&path, 10).unwrap(), "la la");
    }

    #[test]
    fn replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.bin");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_missing_folder_is_an_error_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("no/such/dir/out.bin");
        assert!(write_atomic(&p, b"x").is_err());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn an_uncommitted_file_leaves_nothing_and_the_old_file_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.csv");
        std::fs::write(&p, "old").unwrap();
        {
            let mut f = AtomicFile::create(&p).unwrap();
            f.write_all(b"half of the new").unwrap();
            f.flush().unwrap();
            assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2, "the temporary is beside it");
        }
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_signal_handler_can_remove_every_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = AtomicFile::create(dir.path().join("a.npy")).unwrap();
        f.write_all(b"partial").unwrap();
        f.flush().unwrap();
        // (Only this test's: the tests of this crate run in parallel.)
        remove_where(|p| p.starts_with(dir.path()));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        // Committing after the handler ran fails instead of writing a file.
        assert!(f.commit().is_err());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
