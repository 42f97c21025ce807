//! Writing files so that a reader never sees half of one, and a failed or interrupted command
//! leaves nothing behind.
//!
//! Every file is written to a temporary name in its own folder and renamed into place when
//! complete ([`AtomicFile`]). Temporaries still open are listed process-wide, so that a signal
//! handler can remove them ([`remove_temporaries`]) before the process exits.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

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
