//! The one place that publishes files under `.maos/`.
//!
//! A record is first written completely to a staging file in `.maos/tmp/` (same file system),
//! optionally flushed to disk, and only then moved into place with a single rename: readers
//! see the whole old file, the whole new file, or no file — never a part (invariant W1). A
//! process killed half-way leaves at most a staging file in `tmp/`, which nobody reads and
//! [`sweep_tmp`] removes (W3). Staging files are named `<pid>.<random>` so that a sweeper can
//! tell whose they were.

use std::io::{self, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

use tempfile::NamedTempFile;

use crate::error::ErrorKind;
use crate::fs::{self, FsError};

/// Whether a publish waits for the data to reach the disk (invariant W4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Leave flushing to the kernel: fast, and survives any process crash, but not a power
    /// loss or kernel crash.
    Buffered,
    /// `fsync` the file before it is published and its directory after: survives power loss.
    Fsync,
}

impl Durability {
    /// `Fsync` when `sync` is true.
    pub fn from_sync(sync: bool) -> Self {
        if sync {
            Durability::Fsync
        } else {
            Durability::Buffered
        }
    }
}

/// Publishing a file failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The destination already exists and the publish was not allowed to replace it.
    #[error("`{}` already exists", path.display())]
    AlreadyExists {
        /// The destination.
        path: std::path::PathBuf,
    },
    /// Staging, flushing or renaming failed; nothing was published.
    #[error(transparent)]
    Io(#[from] FsError),
}

impl PublishError {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            PublishError::AlreadyExists { .. } => ErrorKind::Conflict,
            PublishError::Io(e) => e.kind(),
        }
    }
}

/// A fully written file waiting in `tmp/` to be published. Dropping it removes it.
pub struct Staged {
    file: NamedTempFile,
    durability: Durability,
}

/// Writes `contents` to a new staging file in `tmp_dir`.
/// A `tmp/` that is gone (a hand, a copy without it) is made again when the workspace
/// folder around it is there; with that gone too, the error says so (an I/O error, not "not
/// found": the workspace is damaged).
pub fn stage(tmp_dir: &Path, contents: &[u8], durability: Durability) -> Result<Staged, FsError> {
    fs::refuse_symlinks(tmp_dir)?;
    let create = || {
        tempfile::Builder::new()
            .prefix(&format!("{}.", std::process::id()))
            .rand_bytes(8)
            .tempfile_in(tmp_dir)
    };
    let created = match create() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            match tmp_dir.parent().filter(|p| p.is_dir()) {
                Some(_) => {
                    fs::create_dir_all(tmp_dir)?;
                    create()
                }
                None => Err(io::Error::other(
                    "the workspace folder is missing (restore a snapshot, or `maos init`)",
                )),
            }
        }
        other => other,
    };
    let mut file = created.map_err(|e| FsError::new("create staging file in", tmp_dir, e))?;
    let write = |file: &mut NamedTempFile| -> io::Result<()> {
        file.write_all(contents)?;
        if durability == Durability::Fsync {
            file.as_file().sync_all()?;
        }
        Ok(())
    };
    match write(&mut file) {
        Ok(()) => Ok(Staged { file, durability }),
        Err(e) => Err(FsError::new("write staging file", file.path(), e)),
    }
}

impl Staged {
    /// Where the staged file waits.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// Moves the staged file to `dest`, failing with [`PublishError::AlreadyExists`] if
    /// something is already there (the staged file is then discarded).
    pub fn publish_new(self, dest: &Path) -> Result<(), PublishError> {
        fs::refuse_symlinks(dest)?;
        let durability = self.durability;
        match self.file.persist_noclobber(dest) {
            Ok(_) => {}
            Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => {
                return Err(PublishError::AlreadyExists {
                    path: dest.to_owned(),
                });
            }
            Err(e) => return Err(FsError::new("publish", dest, e.error).into()),
        }
        sync_parent(dest, durability)?;
        Ok(())
    }

    /// Moves the staged file to `dest`, replacing whatever was there in one step.
    pub fn replace(self, dest: &Path) -> Result<(), FsError> {
        fs::refuse_symlinks(dest)?;
        let durability = self.durability;
        self.file
            .persist(dest)
            .map_err(|e| FsError::new("publish", dest, e.error))?;
        sync_parent(dest, durability)
    }
}

fn sync_parent(dest: &Path, durability: Durability) -> Result<(), FsError> {
    match (durability, dest.parent()) {
        (Durability::Fsync, Some(dir)) => fs::sync_dir(dir),
        _ => Ok(()),
    }
}

/// Writes `contents` to `dest` atomically, replacing any previous file.
pub fn write_replace(
    tmp_dir: &Path,
    dest: &Path,
    contents: &[u8],
    durability: Durability,
) -> Result<(), FsError> {
    stage(tmp_dir, contents, durability)?.replace(dest)
}

/// Writes `contents` to `dest` atomically, failing if `dest` already exists.
pub fn write_new(
    tmp_dir: &Path,
    dest: &Path,
    contents: &[u8],
    durability: Durability,
) -> Result<(), PublishError> {
    stage(tmp_dir, contents, durability)?.publish_new(dest)
}

/// Removes staging files in `tmp_dir` that were last modified more than `max_age` ago: they
/// belong to writers that died before publishing. Returns how many were removed.
pub fn sweep_tmp(tmp_dir: &Path, max_age: Duration) -> Result<usize, FsError> {
    let now = SystemTime::now();
    let mut removed = 0;
    for name in fs::list_names(tmp_dir)? {
        let path = tmp_dir.join(&name);
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue; // published or removed meanwhile
        };
        let age = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .unwrap_or_default();
        if meta.is_file() && age >= max_age {
            fs::remove_file_if_exists(&path)?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_new_refuses_to_clobber() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("tmp");
        std::fs::create_dir(&tmp).unwrap();
        let dest = dir.path().join("record.json");
        write_new(&tmp, &dest, b"first", Durability::Fsync).unwrap();
        let err = write_new(&tmp, &dest, b"second", Durability::Buffered).unwrap_err();
        assert!(matches!(err, PublishError::AlreadyExists { .. }));
        assert_eq!(std::fs::read(&dest).unwrap(), b"first");
        assert_eq!(
            std::fs::read_dir(&tmp).unwrap().count(),
            0,
            "staging file left behind"
        );
        write_replace(&tmp, &dest, b"third", Durability::Buffered).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"third");
    }

    #[test]
    fn sweep_removes_only_old_staging_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("123.abc"), b"partial").unwrap();
        assert_eq!(sweep_tmp(dir.path(), Duration::from_secs(3600)).unwrap(), 0);
        assert_eq!(sweep_tmp(dir.path(), Duration::ZERO).unwrap(), 1);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
