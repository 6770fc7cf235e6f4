//! Path-carrying file-system helpers.
//!
//! Every fallible file-system call of the crate goes through here, so that every error names
//! the file it is about ("failed to read `.maos/tasks/ab12.json`") and what was attempted.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

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
        } else if self.source.kind() == io::ErrorKind::TimedOut {
            ErrorKind::Timeout
        } else {
            ErrorKind::Io
        }
    }
}

/// Reads a whole file.
pub fn read(path: &Path) -> Result<Vec<u8>, FsError> {
    fs::read(path).map_err(|e| FsError::new("read", path, e))
}

/// Reads a file from byte `offset` to its end (nothing when it is shorter).
pub fn read_from(path: &Path, offset: u64) -> Result<Vec<u8>, FsError> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = File::open(path).map_err(|e| FsError::new("open", path, e))?;
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(offset))
        .and_then(|_| file.read_to_end(&mut bytes))
        .map_err(|e| FsError::new("read", path, e))?;
    Ok(bytes)
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
    #[expect(clippy::disallowed_methods, reason = "the checked helper itself")]
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
    #[expect(clippy::disallowed_methods, reason = "the checked helper itself")]
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
        .map_err(|e| FsError::new("open", path, e))
}

/// Flushes every file written on the file system holding `dir` (one call for a batch of
/// files instead of one `fsync` each): `syncfs` on Linux; elsewhere a full `sync`.
pub fn sync_filesystem(dir: &Path) -> Result<(), FsError> {
    #[cfg(target_os = "linux")]
    {
        let handle = File::open(dir).map_err(|e| FsError::new("open", dir, e))?;
        rustix::fs::syncfs(&handle)
            .map_err(|e| FsError::new("flush the file system of", dir, e.into()))
    }
    #[cfg(not(target_os = "linux"))]
    {
        rustix::fs::sync();
        let _ = dir;
        Ok(())
    }
}

/// Flushes a directory's entries to disk (after a rename or link into it).
pub fn sync_dir(dir: &Path) -> Result<(), FsError> {
    File::open(dir)
        .and_then(|d| {
            d.sync_all().or_else(|e| {
                // macOS: `sync_all` is F_FULLFSYNC (through the drive's cache), which some
                // file systems refuse for a directory; a plain fsync still orders its entries.
                if cfg!(target_vendor = "apple")
                    && matches!(
                        e.raw_os_error(),
                        Some(code) if code == rustix::io::Errno::NOTSUP.raw_os_error()
                            || code == rustix::io::Errno::INVAL.raw_os_error()
                            || code == rustix::io::Errno::NOTTY.raw_os_error()
                    )
                {
                    rustix::fs::fsync(&d).map_err(io::Error::from)
                } else {
                    Err(e)
                }
            })
        })
        .map_err(|e| FsError::new("sync directory", dir, e))
}

/// Opens (creating if needed) a file to append to: every write lands at its end, whole.
pub fn open_append_create(path: &Path) -> Result<File, FsError> {
    use std::os::unix::fs::OpenOptionsExt;
    refuse_symlinks(path)?;
    #[expect(clippy::disallowed_methods, reason = "the checked helper itself")]
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
        .map_err(|e| FsError::new("open", path, e))
}

/// Opens a file to read.
pub fn open_read(path: &Path) -> Result<File, FsError> {
    File::open(path).map_err(|e| FsError::new("open", path, e))
}

/// Creates a new file to write (failing if it exists).
pub fn create_new_file(path: &Path) -> Result<File, FsError> {
    refuse_symlinks(path)?;
    File::create_new(path).map_err(|e| FsError::new("create", path, e))
}

/// Renames `from` to `to` (replacing a file there).
pub fn rename(from: &Path, to: &Path) -> Result<(), FsError> {
    refuse_symlinks(to)?;
    #[expect(clippy::disallowed_methods, reason = "the checked helper itself")]
    fs::rename(from, to).map_err(|e| FsError::new("rename", from, e))
}

/// Removes a directory and everything in it; no error when it is already gone.
pub fn remove_dir_all_if_exists(path: &Path) -> Result<(), FsError> {
    #[expect(clippy::disallowed_methods, reason = "the checked helper itself")]
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(FsError::new("remove", path, e)),
    }
}

/// The metadata of a file (following no link: MAOS's files are never links).
pub fn metadata(path: &Path) -> Result<fs::Metadata, FsError> {
    fs::symlink_metadata(path).map_err(|e| FsError::new("stat", path, e))
}

/// Removes a file; no error when it is already gone.
pub fn remove_file_if_exists(path: &Path) -> Result<(), FsError> {
    #[expect(clippy::disallowed_methods, reason = "the checked helper itself")]
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(FsError::new("remove", path, e)),
    }
}

/// How long [`FileLock::acquire`] waits for another holder unless told otherwise.
pub const DEFAULT_KERNEL_LOCK_WAIT: Duration = Duration::from_secs(60);

/// After a reboot a counter may have lost unflushed writes; it then resumes above the last
/// value flushed to disk, which is kept this far ahead of the values handed out.
pub const COUNTER_RESERVE: u64 = 1000;

/// A kernel lock (`flock`, exclusive or shared) on a small file, released when dropped — or by the
/// kernel when the process dies, so a crashed holder never blocks anyone.
///
/// This type owns the whole pattern: it creates the file's directory when missing, opens the
/// file afresh for each acquisition (a kernel lock belongs to an open file, so two threads of
/// one process exclude each other exactly as two processes do), waits at most the given time
/// (a stopped holder cannot hang everyone; the error names the file and, where the system
/// says, the holder), re-checks after locking that the file is still the one at the path, and
/// reads and writes the counter kept in the file (`.seq`, `.fence`).
#[derive(Debug)]
pub struct FileLock {
    file: File,
    path: PathBuf,
}

impl FileLock {
    /// Locks the file at `path` (creating it and its directory), waiting up to `wait` for the
    /// current holder. If the file was deleted or replaced while we waited, the lock we got is
    /// on a file nobody else will lock, so it is taken again on the file that is there now.
    pub fn acquire(path: &Path, wait: Duration) -> Result<Self, FsError> {
        Self::acquire_mode(path, wait, false)
    }

    /// Like [`acquire`](Self::acquire), but shared: any number of shared holders at once,
    /// never together with an exclusive one.
    pub fn acquire_shared(path: &Path, wait: Duration) -> Result<Self, FsError> {
        Self::acquire_mode(path, wait, true)
    }

    fn acquire_mode(path: &Path, wait: Duration, shared: bool) -> Result<Self, FsError> {
        let deadline = Instant::now() + wait;
        loop {
            let file = match open_rw_create(path) {
                Err(e) if e.is_not_found() => {
                    if let Some(dir) = path.parent() {
                        create_dir_all(dir)?;
                    }
                    open_rw_create(path)?
                }
                other => other?,
            };
            lock_until(&file, path, deadline, shared)?;
            let held = file.metadata().map_err(|e| FsError::new("stat", path, e))?;
            match fs::metadata(path) {
                Ok(now) if now.ino() == held.ino() && now.dev() == held.dev() => {
                    return Ok(FileLock {
                        file,
                        path: path.to_owned(),
                    });
                }
                _ => continue,
            }
        }
    }

    /// The locked file, to read or write in place.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The path of the locked file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The counter kept in the file (`None` when the file is empty or not a counter).
    pub fn read_counter(&self) -> Result<Option<u64>, FsError> {
        Ok(self.read_counter_state()?.map(|c| c.value))
    }

    /// Overwrites the counter with `value`, flushing it to disk when `sync`.
    pub fn write_counter(&self, value: u64, sync: bool) -> Result<(), FsError> {
        let state = self.read_counter_state()?;
        let reserved = state.as_ref().map_or(0, |c| c.reserved).max(value);
        self.write_counter_state(value, reserved, sync)
    }

    /// Hands out the next value of the counter: one more than the last, or than `floor` when
    /// that is higher (what the files the counter numbers say; `floor` is only computed when
    /// the counter is missing or broken). Values never repeat, even when writes of this file
    /// were lost in a crash with `sync` off: the counter keeps, flushed to disk, a reserve
    /// [`COUNTER_RESERVE`] ahead of what it hands out and the boot it was written in, and the
    /// first value handed out after a reboot comes after that reserve.
    pub fn next_counter(
        &self,
        floor: impl FnOnce() -> Result<u64, FsError>,
        sync: bool,
    ) -> Result<u64, FsError> {
        let boot = crate::process::boot_id();
        let (last, reserved, same_boot) = match self.read_counter_state()? {
            Some(c) if c.boot == boot => (c.value, c.reserved, true),
            // Written in another boot: anything up to the reserve may have been handed out.
            Some(c) => (c.value.max(c.reserved), 0, false),
            None => (floor()?, 0, false),
        };
        let next = last + 1;
        if same_boot && next <= reserved {
            self.write_counter_state(next, reserved, sync)?;
        } else {
            self.write_counter_state(next, next + COUNTER_RESERVE, true)?;
        }
        Ok(next)
    }

    fn read_counter_state(&self) -> Result<Option<Counter>, FsError> {
        use std::os::unix::fs::FileExt;
        let mut buf = [0u8; 128];
        let n = self
            .file
            .read_at(&mut buf, 0)
            .map_err(|e| FsError::new("read", &self.path, e))?;
        Ok(parse_counter(&buf[..n]))
    }

    fn write_counter_state(&self, value: u64, reserved: u64, sync: bool) -> Result<(), FsError> {
        use std::os::unix::fs::FileExt;
        let boot = crate::process::boot_id();
        let text = format!("{value:020} {reserved:020} {boot:<85}\n");
        let write = || -> io::Result<()> {
            // Fixed width: it always covers what was there, and a journal note further on
            // in the file (see `journal::Pending`) is kept.
            self.file.write_all_at(text.as_bytes(), 0)?;
            if sync {
                self.file.sync_data()?;
            }
            Ok(())
        };
        write().map_err(|e| FsError::new("write", &self.path, e))
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // Unlocking a file we hold cannot meaningfully fail; closing it unlocks it anyway.
        let _ = self.file.unlock();
    }
}

/// Takes the kernel lock on `file`, retrying with growing pauses until `deadline`.
pub(crate) fn lock_until(
    file: &File,
    path: &Path,
    deadline: Instant,
    shared: bool,
) -> Result<(), FsError> {
    let mut pause = Duration::from_micros(20);
    loop {
        let attempt = if shared {
            file.try_lock_shared()
        } else {
            file.try_lock()
        };
        match attempt {
            Ok(()) => return Ok(()),
            Err(fs::TryLockError::WouldBlock) => {}
            Err(fs::TryLockError::Error(e)) => return Err(FsError::new("lock", path, e)),
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let holder = file
                .metadata()
                .ok()
                .and_then(|m| crate::process::flock_holder(m.dev(), m.ino()))
                .map_or(String::new(), |h| format!(", held by {h}"));
            return Err(FsError::new(
                "lock",
                path,
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "timed out waiting for this kernel lock{holder}; is that process stopped? \
                         (the wait is set by MAOS_LOCK_TIMEOUT)"
                    ),
                ),
            ));
        }
        std::thread::sleep(pause.min(left));
        pause = (pause * 2).min(Duration::from_millis(5));
    }
}

/// What a counter file holds: the last value handed out, the value reserved on disk, and
/// the boot id it was written in.
struct Counter {
    value: u64,
    reserved: u64,
    boot: String,
}

/// Parses `<value> [<reserved> <boot id>]`; `None` when empty or not a number.
fn parse_counter(bytes: &[u8]) -> Option<Counter> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut fields = text.split_whitespace();
    let value = fields.next()?.parse().ok()?;
    let reserved = fields.next().and_then(|r| r.parse().ok()).unwrap_or(0);
    let boot = fields.next().unwrap_or_default().to_owned();
    Some(Counter {
        value,
        reserved,
        boot,
    })
}

/// The highest value a counter file's text says may have been handed out: its value, or its
/// reserve when that is higher (see [`FileLock::next_counter`]).
pub fn counter_ceiling(bytes: &[u8]) -> Option<u64> {
    parse_counter(bytes).map(|c| c.value.max(c.reserved))
}

/// The value of a counter file's text (`.seq`, `.fence`), `None` when it is not one.
pub fn counter_value(bytes: &[u8]) -> Option<u64> {
    parse_counter(bytes).map(|c| c.value)
}

/// `each` applied to consecutive slices of `items` (at least `min_chunk` long) on as many
/// threads as there are cores (up to four), results in order: for reading many small files.
/// A short list is done on this thread.
pub fn on_every_core<T: Sync, R: Send>(
    items: &[T],
    min_chunk: usize,
    each: impl Fn(&[T]) -> R + Sync,
) -> Vec<R> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    let chunk = items.len().div_ceil(threads).max(min_chunk).max(1);
    if items.len() <= chunk {
        return vec![each(items)];
    }
    std::thread::scope(|scope| {
        let each = &each;
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|c| scope.spawn(move || each(c)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}
