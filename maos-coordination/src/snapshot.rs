//! Snapshots: a consistent point-in-time copy of `.maos/` as one gzip-compressed tar
//! archive, listed, restored, and taken every N minutes by whichever agent's heartbeat finds
//! one due.
//!
//! One moment for every kind of record: the copy is made while holding every domain's kernel
//! lock, taken in the one order every writer follows (`agents/.lock`, `tasks/.lock`,
//! `locks/.paths`, each lock's `.fence` by name, each channel's `.seq` by name, then
//! `journal/.lock`), so no change is half made and the journal ends exactly at the copied
//! state. The archive starts with `snapshot.json` (when, the journal's last entry and hash).
//! A restore refuses while agents are alive (unless forced), verifies the journal chain of
//! what it restores, and keeps the workspace it replaces beside it.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::agents::{AgentState, Registry};
use crate::atomic::{self, Durability};
use crate::error::ErrorKind;
use crate::fs::{self, FileLock, FsError};
use crate::journal;
use crate::workspace::Workspace;

/// The folder of snapshots inside `.maos/`.
pub const DIR: &str = "snapshots";

/// The manifest at the start of every archive.
const MANIFEST: &str = "snapshot.json";

/// Automatic snapshots kept (older ones are removed when a new one is taken).
const KEEP_AUTOMATIC: usize = 10;

/// A snapshot could not be taken or restored.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// A file operation failed.
    #[error(transparent)]
    Fs(#[from] FsError),
    /// The archive is not a MAOS snapshot, or is damaged.
    #[error("{}: {what}", path.display())]
    Invalid {
        /// The archive.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// Agents are alive: restoring under them would pull their state away.
    #[error(
        "agents are alive ({}): a restore would replace the state they are working on; stop them or pass --force",
        agents.join(", ")
    )]
    AgentsAlive {
        /// The live agents.
        agents: Vec<String>,
    },
    /// The journal in the archive does not verify.
    #[error("the journal in {} does not verify: {what}", path.display())]
    BrokenJournal {
        /// The archive.
        path: PathBuf,
        /// The first problem.
        what: String,
    },
    /// The agent registry could not be read.
    #[error(transparent)]
    Agents(#[from] crate::agents::AgentError),
    /// The journal could not be read.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// Copying the state of an etcd workspace (to take it, or restore it) failed.
    #[error(transparent)]
    Copy(#[from] Box<crate::migrate::MigrateError>),
}

impl SnapshotError {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            SnapshotError::Fs(e) => e.kind(),
            SnapshotError::Invalid { .. } | SnapshotError::BrokenJournal { .. } => {
                ErrorKind::Corrupt
            }
            SnapshotError::AgentsAlive { .. } => ErrorKind::Conflict,
            SnapshotError::Agents(e) => e.kind(),
            SnapshotError::Store(e) => e.kind(),
            SnapshotError::Copy(e) => e.kind(),
        }
    }
}

/// What a snapshot holds, as its manifest says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// When it was taken.
    pub taken_at: Timestamp,
    /// Who took it (an agent id, or `maos`).
    pub by: String,
    /// Taken on schedule (`snapshot_every_minutes`) rather than asked for.
    #[serde(default)]
    pub automatic: bool,
    /// The number of the journal's last entry in it (0: no journal).
    pub journal_entries: u64,
    /// That entry's hash.
    pub journal_hash: String,
    /// Files in it.
    pub files: u64,
}

/// A snapshot on disk.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    /// The archive.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// Its manifest (`None` when it cannot be read).
    pub manifest: Option<Manifest>,
}

/// The snapshot folder of a workspace.
pub fn dir(ws: &Workspace) -> PathBuf {
    ws.dir().join(DIR)
}

/// Takes a snapshot as `by` into `file` (default: `.maos/snapshots/<time>.tar.gz`).
pub fn create(ws: &Workspace, by: &str, file: Option<&Path>) -> Result<Listed, SnapshotError> {
    let path = match file {
        Some(file) => file.to_owned(),
        None => dir(ws).join(format!("{}.tar.gz", stamp(Timestamp::now()))),
    };
    take(ws, by, &path, false)
}

fn stamp(t: Timestamp) -> String {
    t.strftime("%Y%m%dT%H%M%S%.3fZ").to_string()
}

fn take(ws: &Workspace, by: &str, path: &Path, automatic: bool) -> Result<Listed, SnapshotError> {
    // Changes whose writers died before journaling them are journaled first (this needs the
    // journal lock, which the copy below holds).
    journal::settle_all(ws)?;
    let parent = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(parent)?;
    let staging = parent.join(format!(
        ".{}.partial",
        path.file_name()
            .map_or("snapshot".into(), |n| n.to_string_lossy())
    ));
    let written = match ws.store() {
        crate::store::Store::Files => {
            let _held = hold_everything(ws)?;
            write_archive(ws, by, &staging, automatic)
        }
        #[cfg(feature = "etcd")]
        crate::store::Store::Etcd(etcd) => {
            // One moment without a lock: everything read as of one revision, into a files
            // workspace made for it, whose `.maos/` is archived like any other.
            let pinned = ws
                .clone()
                .with_opened_store(crate::store::Store::Etcd(etcd.pinned()?));
            let copy = tempfile::Builder::new()
                .prefix(".snapshot-")
                .tempdir_in(ws.tmp_dir())
                .map_err(|e| FsError::new("make a folder in", ws.tmp_dir(), e))?;
            Workspace::init(copy.path())
                .map_err(|e| SnapshotError::Invalid {
                    path: copy.path().to_owned(),
                    what: e.to_string(),
                })
                .and_then(|made| {
                    crate::migrate::copy_state(&pinned, &made.workspace).map_err(Box::new)?;
                    Ok(made.workspace)
                })
                .and_then(|files| write_archive(&files, by, &staging, automatic))
        }
    };
    let manifest = match written {
        Ok(manifest) => manifest,
        Err(e) => {
            let _ = fs::remove_file_if_exists(&staging);
            return Err(e);
        }
    };
    fs::rename(&staging, path)?;
    let event = journal::Event::new("snapshot.created")
        .agent(by)
        .subject(path.display().to_string())
        .data(serde_json::json!({
            "journal_entries": manifest.journal_entries,
            "files": manifest.files,
            "automatic": automatic,
        }));
    journal::record(ws, event);
    Ok(Listed {
        bytes: fs::metadata(path)?.len(),
        path: path.to_owned(),
        manifest: Some(manifest),
    })
}

/// Every domain's kernel lock, in the order every writer takes them.
fn hold_everything(ws: &Workspace) -> Result<Vec<FileLock>, FsError> {
    let dir = ws.dir();
    let mut order = vec![
        dir.join("agents/.lock"),
        dir.join("tasks/.lock"),
        dir.join("locks/.paths"),
    ];
    let mut fences: Vec<PathBuf> = fs::list_names(&ws.locks_dir())?
        .into_iter()
        .filter(|n| n.ends_with(".fence"))
        .map(|n| ws.locks_dir().join(n))
        .collect();
    fences.sort();
    order.extend(fences);
    order.extend(crate::channel::counter_files(ws)?);
    order.push(journal::dir(ws).join(".lock"));
    order.iter().map(|p| ws.kernel_lock(p)).collect()
}

/// Whether `rel` (a path inside `.maos/`) belongs in a snapshot: not staging files, not
/// other snapshots.
fn copied(rel: &Path) -> bool {
    let first = rel
        .components()
        .next()
        .map(|c| c.as_os_str().to_string_lossy().into_owned());
    !matches!(first.as_deref(), Some("tmp" | DIR))
}

fn write_archive(
    ws: &Workspace,
    by: &str,
    staging: &Path,
    automatic: bool,
) -> Result<Manifest, SnapshotError> {
    let mut files = Vec::new();
    walk(ws.dir(), Path::new(""), &mut files)?;
    files.sort();
    let head = journal::head(ws)?;
    let manifest = Manifest {
        taken_at: Timestamp::now(),
        by: by.to_owned(),
        automatic,
        journal_entries: head.as_ref().map_or(0, |h| h.n),
        journal_hash: head.map_or_else(|| journal::GENESIS.to_owned(), |h| h.hash),
        files: files.len() as u64,
    };
    let out = fs::create_new_file(staging)?;
    let gz = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let io = |e: std::io::Error| FsError::new("write", staging, e);
    let json = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
    let mut header = tar::Header::new_gnu();
    header.set_size(json.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(manifest.taken_at.as_second().max(0) as u64);
    header.set_cksum();
    tar.append_data(&mut header, MANIFEST, json.as_slice())
        .map_err(io)?;
    for rel in &files {
        let full = ws.dir().join(rel);
        let bytes = match fs::read_if_exists(&full)? {
            Some(bytes) => bytes,
            None => continue, // removed by a writer outside every kernel lock (a cursor)
        };
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(
            fs::metadata(&full)
                .ok()
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs()),
        );
        header.set_cksum();
        tar.append_data(&mut header, Path::new(".maos").join(rel), bytes.as_slice())
            .map_err(io)?;
    }
    let gz = tar.into_inner().map_err(io)?;
    let mut out = gz.finish().map_err(io)?;
    out.flush().map_err(io)?;
    out.sync_all().map_err(io)?;
    Ok(manifest)
}

/// Every regular file under `root/rel`, as paths relative to `root` (links skipped).
fn walk(root: &Path, rel: &Path, into: &mut Vec<PathBuf>) -> Result<(), FsError> {
    for name in fs::list_names(&root.join(rel))? {
        let child = rel.join(&name);
        if !copied(&child) {
            continue;
        }
        let Ok(meta) = fs::metadata(&root.join(&child)) else {
            continue;
        };
        if meta.is_dir() {
            walk(root, &child, into)?;
        } else if meta.is_file() {
            into.push(child);
        }
    }
    Ok(())
}

/// The snapshots in `.maos/snapshots/`, oldest first.
pub fn list(ws: &Workspace) -> Result<Vec<Listed>, SnapshotError> {
    let dir = dir(ws);
    let mut names: Vec<String> = fs::list_names(&dir)?
        .into_iter()
        .filter(|n| n.ends_with(".tar.gz") && !n.starts_with('.'))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let path = dir.join(name);
            Ok(Listed {
                bytes: fs::metadata(&path)?.len(),
                manifest: manifest(&path).ok(),
                path,
            })
        })
        .collect()
}

/// The manifest of the archive at `path`.
pub fn manifest(path: &Path) -> Result<Manifest, SnapshotError> {
    let invalid = |what: String| SnapshotError::Invalid {
        path: path.to_owned(),
        what,
    };
    let file = fs::open_read(path)?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut entries = archive.entries().map_err(|e| invalid(e.to_string()))?;
    let first = entries
        .next()
        .ok_or_else(|| invalid("the archive is empty".into()))?
        .map_err(|e| invalid(e.to_string()))?;
    if first.path().ok().as_deref() != Some(Path::new(MANIFEST)) {
        return Err(invalid(format!(
            "it does not start with {MANIFEST}: not a MAOS snapshot"
        )));
    }
    serde_json::from_reader(first).map_err(|e| invalid(format!("{MANIFEST}: {e}")))
}

/// What a restore did.
#[derive(Debug, Clone, Serialize)]
pub struct Restored {
    /// The manifest of what was restored.
    pub manifest: Manifest,
    /// Where the replaced `.maos/` was kept (`None` when there was none).
    pub previous: Option<PathBuf>,
}

/// Restores the snapshot at `file` as the `.maos/` of `root`. Refused while agents of the
/// current workspace are alive (or stale: maybe only paused) unless `force`; refused when the
/// archive's journal does not verify. The replaced `.maos/` is kept as
/// `.maos.before-restore-<time>` beside it, its `snapshots/` moved into the restored one.
pub fn restore(root: &Path, file: &Path, force: bool) -> Result<Restored, SnapshotError> {
    let manifest = manifest(file)?;
    let current = root.join(".maos");
    if !force && current.is_dir() {
        let ws = Workspace::open(root).map_err(|e| SnapshotError::Invalid {
            path: current.clone(),
            what: e.to_string(),
        })?;
        let (records, _) = Registry::new(&ws).list()?;
        let alive: Vec<String> = records
            .into_iter()
            .filter(|r| matches!(r.state(), AgentState::Alive | AgentState::Stale))
            .map(|r| r.id)
            .collect();
        if !alive.is_empty() {
            return Err(SnapshotError::AgentsAlive { agents: alive });
        }
    }
    #[cfg(feature = "etcd")]
    if current.is_dir()
        && let Ok(ws) = Workspace::open(root)
        && let crate::store::Store::Etcd(etcd) = ws.store()
    {
        return restore_into_etcd(&ws, etcd, file, manifest, force);
    }
    let staging = root.join(format!(".maos.restoring-{}", std::process::id()));
    let _ = fs::remove_dir_all_if_exists(&staging);
    fs::create_dir_all(&staging)?;
    let prepared = unpack_verified(file, &staging).and_then(|restored| {
        // What a snapshot leaves out (`tmp/`), and what it may not have had yet.
        for sub in crate::workspace::SUBDIRS {
            fs::create_dir_all(&restored.dir().join(sub))?;
        }
        if current.is_dir() {
            carry_counters(&current, &restored)?;
        }
        Ok(())
    });
    if let Err(e) = prepared {
        let _ = fs::remove_dir_all_if_exists(&staging);
        return Err(e);
    }
    let previous = if current.exists() {
        let aside = root.join(format!(".maos.before-restore-{}", stamp(Timestamp::now())));
        swap_in(&staging.join(".maos"), &current, &aside)?;
        Some(aside)
    } else {
        fs::rename(&staging.join(".maos"), &current)?;
        None
    };
    let _ = fs::remove_dir_all_if_exists(&staging);
    if let Some(aside) = &previous {
        let kept = aside.join(DIR);
        if kept.is_dir() && !current.join(DIR).exists() {
            fs::rename(&kept, &current.join(DIR))?;
        }
    }
    if let Ok(ws) = Workspace::open(root) {
        journal::record(&ws, restored_event(file, &manifest, force));
    }
    Ok(Restored { manifest, previous })
}

/// Puts the restored `.maos/` at `incoming` in the place of `current`, the replaced one going
/// to `aside`. On Linux the two trade places in one atomic rename (`RENAME_EXCHANGE`), so a
/// kill at any moment leaves a complete `.maos/` — the old one, or the restored one with the
/// old one still in the staging folder; elsewhere, two renames.
fn swap_in(incoming: &Path, current: &Path, aside: &Path) -> Result<(), SnapshotError> {
    #[cfg(target_os = "linux")]
    {
        use rustix::fs::{CWD, RenameFlags, renameat_with};
        match renameat_with(CWD, incoming, CWD, current, RenameFlags::EXCHANGE) {
            Ok(()) => {
                // `incoming` now holds the replaced state.
                fs::rename(incoming, aside)?;
                return Ok(());
            }
            // A file system without the exchange: the two renames below.
            Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS => {}
            Err(e) => {
                return Err(FsError::new("swap in the restored", current, e.into()).into());
            }
        }
    }
    fs::rename(current, aside)?;
    fs::rename(incoming, current)?;
    Ok(())
}

/// Raises every counter of the restored copy — each lock's fencing tokens (`.fence`), the
/// reservation tokens (`locks/.paths`), each channel's and topic's message numbers (`.seq`)
/// — to the highest value the workspace being replaced may have handed out, so that after the
/// restore no token or message number is handed out twice (a holder paused since before the
/// restore must not outrank the next one; a reader past #2 must not miss a new #2).
fn carry_counters(current: &Path, restored: &Workspace) -> Result<(), SnapshotError> {
    let mut counters: Vec<PathBuf> = Vec::new();
    let locks = Path::new("locks");
    for name in fs::list_names(&current.join(locks))? {
        if name.ends_with(".fence") || name == ".paths" {
            counters.push(locks.join(name));
        }
    }
    let channels = Path::new("channels");
    for name in fs::list_names(&current.join(channels))? {
        if name == "broadcast" {
            for topic in fs::list_names(&current.join(channels).join(&name))? {
                counters.push(channels.join(&name).join(topic).join(".seq"));
            }
        } else {
            counters.push(channels.join(name).join(".seq"));
        }
    }
    for rel in counters {
        let Some(highest) =
            fs::read_if_exists(&current.join(&rel))?.and_then(|b| fs::counter_ceiling(&b))
        else {
            continue;
        };
        let into = restored.dir().join(&rel);
        let restored_value = fs::read_if_exists(&into)?
            .and_then(|b| fs::counter_value(&b))
            .unwrap_or(0);
        if restored_value >= highest {
            continue;
        }
        if let Some(dir) = into.parent() {
            fs::create_dir_all(dir)?;
        }
        restored.kernel_lock(&into)?.write_counter(highest, true)?;
    }
    Ok(())
}

/// The journal entry of restoring the snapshot `file`.
fn restored_event(file: &Path, manifest: &Manifest, force: bool) -> journal::Event {
    journal::Event::new("snapshot.restored")
        .subject(file.display().to_string())
        .data(serde_json::json!({
            "taken_at": manifest.taken_at,
            "journal_entries": manifest.journal_entries,
            "forced": force,
        }))
}

/// Unpacks the archive's `.maos/` into `into` and checks that it is a workspace whose
/// journal verifies; returns that workspace.
fn unpack_verified(file: &Path, into: &Path) -> Result<Workspace, SnapshotError> {
    unpack(file, into)?;
    let ws = Workspace::open(into).map_err(|e| SnapshotError::Invalid {
        path: file.to_owned(),
        what: format!("what it holds is not a workspace: {e}"),
    })?;
    let verified = journal::verify(&ws)?;
    if let Some(problem) = verified.problem {
        return Err(SnapshotError::BrokenJournal {
            path: file.to_owned(),
            what: format!(
                "{}:{}: {}",
                problem.path.display(),
                problem.line,
                problem.what
            ),
        });
    }
    Ok(ws)
}

/// [`restore`] into a workspace on etcd: the state it replaces is first taken as a snapshot
/// (`.maos/snapshots/before-restore-<time>.tar.gz`), then every key of the workspace's
/// prefix is deleted and the archive's records are copied in (as `maos store migrate` copies
/// them). Fencing tokens keep increasing past every token handed out before.
#[cfg(feature = "etcd")]
fn restore_into_etcd(
    ws: &Workspace,
    etcd: &crate::store::etcd::Etcd,
    file: &Path,
    manifest: Manifest,
    force: bool,
) -> Result<Restored, SnapshotError> {
    let staging = tempfile::Builder::new()
        .prefix(".restore-")
        .tempdir_in(ws.tmp_dir())
        .map_err(|e| FsError::new("make a folder in", ws.tmp_dir(), e))?;
    let restored = unpack_verified(file, staging.path())?;
    let before = dir(ws).join(format!("before-restore-{}.tar.gz", stamp(Timestamp::now())));
    take(ws, "maos", &before, false)?;
    // Above every token etcd handed out so far: its revision now, plus its base.
    let floor = etcd.revision()? + etcd.fixed_number(crate::lock::TOKEN_BASE)? + 1;
    etcd.delete_prefix("")?;
    crate::migrate::copy_state(&restored, ws).map_err(Box::new)?;
    let base = etcd.fixed_number(crate::lock::TOKEN_BASE)?;
    etcd.set_fixed_number(crate::lock::TOKEN_BASE, base.max(floor))?;
    journal::record(ws, restored_event(file, &manifest, force));
    Ok(Restored {
        manifest,
        previous: Some(before),
    })
}

/// Unpacks the archive's `.maos/` into `into` (entries outside `.maos/` refused).
fn unpack(file: &Path, into: &Path) -> Result<(), SnapshotError> {
    let invalid = |what: String| SnapshotError::Invalid {
        path: file.to_owned(),
        what,
    };
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(fs::open_read(file)?));
    let staging = into.join(".maos-unpack-tmp");
    fs::create_dir_all(&staging)?;
    for entry in archive.entries().map_err(|e| invalid(e.to_string()))? {
        let mut entry = entry.map_err(|e| invalid(e.to_string()))?;
        let rel = entry
            .path()
            .map_err(|e| invalid(e.to_string()))?
            .into_owned();
        if rel == Path::new(MANIFEST) {
            continue;
        }
        let safe = rel.starts_with(".maos")
            && rel
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)));
        if !safe || entry.header().entry_type() != tar::EntryType::Regular {
            return Err(invalid(format!(
                "it holds `{}`, which is not a file under .maos/",
                rel.display()
            )));
        }
        let dest = into.join(&rel);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent)?;
        }
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes).map_err(|e| invalid(e.to_string()))?;
        atomic::write_new(
            &into.join(".maos-unpack-tmp"),
            &dest,
            &bytes,
            Durability::Buffered,
        )
        .map_err(|e| invalid(e.to_string()))?;
    }
    let _ = fs::remove_dir_all_if_exists(&into.join(".maos-unpack-tmp"));
    Ok(())
}

/// Takes an automatic snapshot when `snapshot_every_minutes` says one is due and no other
/// process took this period's: the period's marker in `snapshots/` is created exclusively by
/// the one that takes it. Returns the snapshot taken, if any. Called from agents' heartbeats.
pub fn take_if_due(ws: &Workspace, by: &str) -> Result<Option<Listed>, SnapshotError> {
    let Some(minutes) = ws.config().snapshot_every_minutes.filter(|m| *m > 0) else {
        return Ok(None);
    };
    let period = Duration::from_secs(minutes * 60);
    let slot = Timestamp::now().as_second().max(0) as u64 / period.as_secs();
    let dir = dir(ws);
    let marker = dir.join(format!(".due-{minutes}m-{slot}"));
    if marker.exists() {
        return Ok(None);
    }
    fs::create_dir_all(&dir)?;
    match atomic::write_new(&ws.tmp_dir(), &marker, b"", Durability::Buffered) {
        Ok(()) => {}
        Err(atomic::PublishError::AlreadyExists { .. }) => return Ok(None),
        Err(atomic::PublishError::Io(e)) => return Err(e.into()),
    }
    let path = dir.join(format!("auto-{}.tar.gz", stamp(Timestamp::now())));
    let taken = take(ws, by, &path, true)?;
    // Older automatic snapshots and period markers go.
    let mut autos: Vec<String> = fs::list_names(&dir)?
        .into_iter()
        .filter(|n| n.starts_with("auto-") && n.ends_with(".tar.gz"))
        .collect();
    autos.sort();
    let excess = autos.len().saturating_sub(KEEP_AUTOMATIC);
    for name in autos.iter().take(excess) {
        fs::remove_file_if_exists(&dir.join(name))?;
    }
    for name in fs::list_names(&dir)? {
        if name.starts_with(".due-") && dir.join(&name) != marker {
            fs::remove_file_if_exists(&dir.join(name))?;
        }
    }
    Ok(Some(taken))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive_with(path: &Path, members: &[(&str, &[u8])]) {
        let file = std::fs::File::create(path).unwrap();
        let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
            file,
            flate2::Compression::fast(),
        ));
        for (name, bytes) in members {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            // `set_path` refuses `..`; a hostile archive writes the name itself.
            let raw = &mut header.as_old_mut().name;
            raw[..name.len()].copy_from_slice(name.as_bytes());
            header.set_cksum();
            tar.append(&header, *bytes).unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap();
    }

    #[test]
    fn an_archive_reaching_outside_maos_is_refused_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = serde_json::to_vec(&Manifest {
            taken_at: Timestamp::now(),
            by: "x".into(),
            automatic: false,
            journal_entries: 0,
            journal_hash: journal::GENESIS.into(),
            files: 1,
        })
        .unwrap();
        let target = dir.path().join("ws");
        std::fs::create_dir(&target).unwrap();
        for evil in ["../escaped.txt", ".maos/../../escaped.txt", "elsewhere.txt"] {
            let archive = dir.path().join("evil.tar.gz");
            archive_with(&archive, &[("snapshot.json", &manifest), (evil, b"gotcha")]);
            let err = restore(&target, &archive, false).unwrap_err();
            assert!(
                matches!(err, SnapshotError::Invalid { .. }),
                "{evil}: {err}"
            );
            assert!(err.to_string().contains("not a file under .maos/"), "{err}");
            assert!(!dir.path().join("escaped.txt").exists());
            assert!(!target.join(".maos").exists(), "{evil}");
            assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0, "{evil}");
        }
        // A snapshot whose journal was edited inside the archive is refused.
        let source = tempfile::tempdir().unwrap();
        let ws = Workspace::init(source.path()).unwrap().workspace;
        for i in 0..3 {
            journal::append(
                &ws,
                &journal::Event::new("test.event").subject(i.to_string()),
            )
            .unwrap();
        }
        let taken = create(&ws, "tester", Some(&dir.path().join("good.tar.gz"))).unwrap();
        let segment = std::fs::read_to_string(journal::segment_path(&journal::dir(&ws), 1))
            .unwrap()
            .replacen("\"subject\":\"1\"", "\"subject\":\"9\"", 1);
        let maos_json = std::fs::read(ws.dir().join("maos.json")).unwrap();
        let head = std::fs::read(journal::dir(&ws).join(".lock")).unwrap();
        let tampered = dir.path().join("tampered.tar.gz");
        archive_with(
            &tampered,
            &[
                ("snapshot.json", &manifest),
                (".maos/maos.json", &maos_json),
                (".maos/journal/.lock", &head),
                (".maos/journal/00000001.jsonl", segment.as_bytes()),
            ],
        );
        let err = restore(&target, &tampered, false).unwrap_err();
        assert!(matches!(err, SnapshotError::BrokenJournal { .. }), "{err}");
        assert!(err.to_string().contains("entry 2"), "{err}");
        assert!(!target.join(".maos").exists());
        // The untouched one restores.
        restore(&target, &taken.path, false).unwrap();
        assert!(target.join(".maos/journal/00000001.jsonl").exists());
        let not_ours = dir.path().join("other.tar.gz");
        archive_with(&not_ours, &[(".maos/maos.json", b"{}")]);
        let err = restore(&target, &not_ours, false).unwrap_err();
        assert!(err.to_string().contains("not a MAOS snapshot"), "{err}");
    }
}
