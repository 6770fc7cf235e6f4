//! Path-carrying file-system helpers.
//!
//! Every fallible file-system call of the crate goes through here, so that every error names
//! the file it is about ("failed to read `.maos/tasks/ab12.json`") and what was attempted.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use crate::error::ErrorKind;

/// A file-system operation failed on a path.
#[derive(Debug, thiserror::Error)]
#[error("failed to {op} `{}`", path.display())]
pub struct FsError {
    /// What was attempted ("read", "create directory", ...).
    pub op: &'static str,
    /// The file or directory involved.
    pub path: PathBuf,
    /// The operating system's error.
    #[source]
    pub source: io::Error,
}

impl FsError {
    /// Wraps an I/O error with the operation and the path.
    pub fn new(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self {
            op,
            path: path.into(),
            source,
        }
    }

    /// Whether the underlying cause is "no such file or directory".
    pub fn is_not_found(&self) -> bool {
        self.source.kind() == io::ErrorKind::NotFound
    }

    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        if self.is_not_found() {
            ErrorKind::NotFound
        } else {
            ErrorKind::Io
        }
    }
}

/// Reads a whole file.
pub fn read(path: &Path) -> Result<Vec<u8>, FsError> {
    fs::read(path).map_err(|e| FsError::new("read", path, e))
}

/// Reads a whole file, `None` when it does not exist.
pub fn read_if_exists(path: &Path) -> Result<Option<Vec<u8>>, FsError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(FsError::new("read", path, e)),
    }
}

/// Creates a directory and its parents (no error when it exists). Refuses to go through a
/// symbolic link inside `.maos/` (see [`refuse_symlinks`]).
pub fn create_dir_all(path: &Path) -> Result<(), FsError> {
    refuse_symlinks(path)?;
    fs::create_dir_all(path).map_err(|e| FsError::new("create directory", path, e))
}

/// Refuses a path under `.maos/` that goes through a symbolic link planted inside `.maos/`
/// (a link *to* `.maos/` itself is the user's choice and fine): writing through it could
/// land outside the workspace. Paths not under a `.maos` directory are not checked.
pub fn refuse_symlinks(path: &Path) -> Result<(), FsError> {
    let Some(base) = path
        .ancestors()
        .find(|a| a.file_name().is_some_and(|n| n == ".maos"))
    else {
        return Ok(());
    };
    let Ok(inside) = path.strip_prefix(base) else {
        return Ok(());
    };
    let mut at = base.to_path_buf();
    for component in inside.components() {
        at.push(component);
        match fs::symlink_metadata(&at) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(FsError::new(
                    "write through",
                    &at,
                    io::Error::other(
                        "a symbolic link inside .maos/ could lead outside the workspace; remove it (`maos doctor` lists it)",
                    ),
                ));
            }
            Ok(_) => {}
            Err(_) => break, // does not exist (yet): nothing further can be a link
        }
    }
    Ok(())
}

/// The names of the entries of a directory, in no particular order; empty when it does not
/// exist. Names that are not valid UTF-8 are skipped: MAOS never creates such names.
pub fn list_names(dir: &Path) -> Result<Vec<String>, FsError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(FsError::new("list directory", dir, e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| FsError::new("list directory", dir, e))?;
        if let Ok(name) = entry.file_name().into_string() {
            names.push(name);
        }
    }
    Ok(names)
}

/// Opens (creating if needed) a small file for reading and writing in place, e.g. a lock
/// or counter file.
pub fn open_rw_create(path: &Path) -> Result<File, FsError> {
    use std::os::unix::fs::OpenOptionsExt;
    refuse_symlinks(path)?;
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
        .map_err(|e| FsError::new("open", path, e))
}

/// Flushes a directory's entries to disk (after a rename or link into it).
pub fn sync_dir(dir: &Path) -> Result<(), FsError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| FsError::new("sync directory", dir, e))
}

/// Removes a file; no error when it is already gone.
pub fn remove_file_if_exists(path: &Path) -> Result<(), FsError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(FsError::new("remove", path, e)),
    }
}

/// An exclusive kernel lock (`flock`) on a small file, released when dropped — or by the
/// kernel when the process dies, so a crashed holder never blocks anyone.
#[derive(Debug)]
pub struct FileLock(Arc<File>);

impl FileLock {
    /// Locks the file at `path` (creating it), waiting for the current holder. If the file was
    /// deleted or replaced while we waited, the lock we got is on a file nobody else will
    /// lock, so it is taken again on the file that is there now. `cache` keeps the open file
    /// between calls (pass a fresh `Mutex::new(None)` to keep nothing).
    pub fn acquire(path: &Path, cache: &Mutex<Option<Arc<File>>>) -> Result<Self, FsError> {
        loop {
            let file = {
                let mut cached = cache.lock().unwrap_or_else(PoisonError::into_inner);
                match &*cached {
                    Some(file) => Arc::clone(file),
                    None => {
                        let file = Arc::new(open_rw_create(path)?);
                        *cached = Some(Arc::clone(&file));
                        file
                    }
                }
            };
            file.lock().map_err(|e| FsError::new("lock", path, e))?;
            let lock = FileLock(file);
            let held = lock
                .0
                .metadata()
                .map_err(|e| FsError::new("stat", path, e))?;
            match fs::metadata(path) {
                Ok(now) if now.ino() == held.ino() && now.dev() == held.dev() => return Ok(lock),
                _ => *cache.lock().unwrap_or_else(PoisonError::into_inner) = None,
            }
        }
    }

    /// The locked file, to read or write in place.
    pub fn file(&self) -> &File {
        &self.0
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // Unlocking a file we hold cannot meaningfully fail; closing it unlocks it anyway.
        let _ = self.0.unlock();
    }
}

/// Reads a decimal counter kept in a small file (`None` when empty or not a number).
pub fn read_counter(file: &File, path: &Path) -> Result<Option<u64>, FsError> {
    use std::os::unix::fs::FileExt;
    let mut buf = [0u8; 64];
    let n = file
        .read_at(&mut buf, 0)
        .map_err(|e| FsError::new("read", path, e))?;
    Ok(std::str::from_utf8(&buf[..n])
        .ok()
        .and_then(|s| s.trim().parse().ok()))
}

/// Overwrites a counter file in place with `value` (20 digits and a newline), flushing it to
/// disk when `sync`.
pub fn write_counter(file: &File, path: &Path, value: u64, sync: bool) -> Result<(), FsError> {
    use std::os::unix::fs::FileExt;
    let text = format!("{value:020}\n");
    let write = || -> io::Result<()> {
        file.write_all_at(text.as_bytes(), 0)?;
        if file.metadata()?.len() != text.len() as u64 {
            file.set_len(text.len() as u64)?;
        }
        if sync {
            file.sync_data()?;
        }
        Ok(())
    };
    write().map_err(|e| FsError::new("write", path, e))
}
