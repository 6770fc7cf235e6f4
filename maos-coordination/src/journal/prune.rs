//! Keeping the journal from growing forever: whole old segments are archived
//! (`archive/journal/<segment>.jsonl.gz`) and removed; `journal/.base` records the last entry
//! removed, where the chain that `verify` checks now starts. The current segment is never
//! pruned.

use std::io::Write as _;
use std::path::PathBuf;

use jiff::Timestamp;
use serde::Serialize;

use super::{Event, chain, dir, segments};
use crate::atomic::{self, Durability};
use crate::fs::{self, FsError};
use crate::store::StoreError;
use crate::workspace::Workspace;

/// Which segments to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// The newest N (the current one included; at least one).
    Segments(usize),
    /// Those holding an entry written at or after this time.
    Since(Timestamp),
}

/// What a prune did.
#[derive(Debug, Clone, Serialize)]
pub struct Pruned {
    /// The archives written, oldest first.
    pub archives: Vec<PathBuf>,
    /// The number of the last entry pruned (0: none).
    pub upto: u64,
}

/// Archives and removes the segments `keep` does not keep, under the journal's lock: each
/// segment's archive is written first, then the base moves past its last entry, then it is
/// removed (a prune cut short leaves entries the base vouches for; the next prune removes
/// them). Journaled as `journal.pruned`.
pub fn prune(ws: &Workspace, keep: Keep) -> Result<Pruned, StoreError> {
    #[cfg(feature = "etcd")]
    let pruned = match ws.store() {
        crate::store::Store::Etcd(etcd) => super::etcd::prune(ws, etcd, keep)?,
        crate::store::Store::Files => prune_files(ws, keep)?,
    };
    #[cfg(not(feature = "etcd"))]
    let pruned = prune_files(ws, keep)?;
    if !pruned.archives.is_empty() {
        super::record(
            ws,
            Event::new("journal.pruned").data(serde_json::json!({
                "upto": pruned.upto,
                "archives": pruned.archives,
            })),
        );
    }
    Ok(pruned)
}

/// Writes `bytes` (whole lines of the journal) compressed to `archive/journal/<name>.gz`.
pub(super) fn archive(ws: &Workspace, name: &str, bytes: &[u8]) -> Result<PathBuf, FsError> {
    let archive_dir = ws.dir().join("archive").join("journal");
    fs::create_dir_all(&archive_dir)?;
    let archive = archive_dir.join(format!("{name}.gz"));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(bytes)
        .and_then(|()| gz.finish())
        .map_err(|e| FsError::new("compress", &archive, e))
        .and_then(|packed| {
            atomic::write_replace(&ws.tmp_dir(), &archive, &packed, Durability::Fsync)
        })?;
    Ok(archive)
}

fn prune_files(ws: &Workspace, keep: Keep) -> Result<Pruned, StoreError> {
    let dir = dir(ws);
    let mut pruned = Pruned {
        archives: Vec::new(),
        upto: super::base(ws)?.map_or(0, |b| b.n),
    };
    {
        let _lock = ws.kernel_lock(&dir.join(".lock"))?;
        let current = super::head(ws)?.map(|h| h.segment);
        let all = segments(&dir)?;
        let old: Vec<&(u64, PathBuf)> = all
            .iter()
            .filter(|(n, _)| current.is_none_or(|c| *n < c))
            .collect();
        let count = match keep {
            Keep::Segments(n) => all.len().saturating_sub(n.max(1)).min(old.len()),
            Keep::Since(t) => old
                .iter()
                .take_while(|(_, path)| {
                    chain::last_entry(path)
                        .ok()
                        .flatten()
                        .is_some_and(|e| e.at < t)
                })
                .count(),
        };
        for (_, path) in old.into_iter().take(count) {
            let bytes = fs::read(path)?;
            if let Some(last) = chain::last_entry(path)? {
                let name = path
                    .file_name()
                    .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
                let archive = archive(ws, &name, &bytes)?;
                atomic::write_replace(
                    &ws.tmp_dir(),
                    &dir.join(".base"),
                    format!("{} {}\n", last.n, last.hash).as_bytes(),
                    Durability::Fsync,
                )?;
                pruned.archives.push(archive);
                pruned.upto = last.n;
            }
            fs::remove_file_if_exists(path)?;
        }
    }
    Ok(pruned)
}
