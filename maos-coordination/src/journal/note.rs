//! Notes of changes about to be made under a domain's kernel lock: a change whose process
//! dies before it journals it is journaled by the next holder of that lock.
//!
//! The note lives in the lock file itself, after its first 256 bytes (a counter, when the
//! file keeps one, sits at its start): `P` and the note's JSON while a change is under way,
//! `C` once its entry is written. A note that cannot be written (a full disk, a file size
//! limit) does not stop the change: its entry is then only appended after it.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Encoded, Event};
use crate::fs::{self, FileLock};
use crate::store::StoreError;
use crate::workspace::Workspace;

/// Where the note starts in a lock file.
const NOTE_AT: u64 = 256;

/// How the next holder tells whether a noted change took effect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "if", rename_all = "snake_case")]
pub(crate) enum Effect {
    /// The record at `file` (relative to `.maos/`) has `value` at `field` (a JSON pointer).
    Has {
        file: String,
        field: String,
        value: Value,
    },
    /// The record at `file` is gone, or does not have `value` at `field`.
    Lacks {
        file: String,
        field: String,
        value: Value,
    },
}

impl Effect {
    /// The record at `path` will have `value` at `field`.
    pub(crate) fn has(ws: &Workspace, path: &Path, field: &str, value: impl Into<Value>) -> Self {
        Effect::Has {
            file: relative(ws, path),
            field: field.to_owned(),
            value: value.into(),
        }
    }

    /// The record at `path` will be gone or no longer have `value` at `field`.
    pub(crate) fn lacks(ws: &Workspace, path: &Path, field: &str, value: impl Into<Value>) -> Self {
        Effect::Lacks {
            file: relative(ws, path),
            field: field.to_owned(),
            value: value.into(),
        }
    }

    fn holds(&self, ws: &Workspace) -> bool {
        let (file, field, value, wanted) = match self {
            Effect::Has { file, field, value } => (file, field, value, true),
            Effect::Lacks { file, field, value } => (file, field, value, false),
        };
        if file.split('/').any(|part| part == "..") {
            return false;
        }
        let found = fs::read_if_exists(&ws.dir().join(file))
            .ok()
            .flatten()
            .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
            .is_some_and(|record| record.pointer(field) == Some(value));
        found == wanted
    }
}

fn relative(ws: &Workspace, path: &Path) -> String {
    path.strip_prefix(ws.dir())
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

#[derive(Debug, Deserialize)]
struct Note {
    id: String,
    event: Event,
    effect: Effect,
    /// Where the journal ended when the note was written: the entry, if it was written, is
    /// after this point.
    segment: u64,
    size: u64,
    /// When it was written (orders notes noted at the same point of the journal).
    at: jiff::Timestamp,
}

/// A change noted in its domain's kernel lock file, to be journaled once made.
#[must_use = "call `done` once the change is made"]
pub(crate) struct Pending<'a> {
    ws: &'a Workspace,
    lock: &'a FileLock,
    /// The entry's id and event; `None` when the workspace keeps no journal.
    noted: Option<(String, Encoded)>,
    /// Whether the note made it into the lock file (and must be cleared).
    in_file: bool,
}

impl<'a> Pending<'a> {
    /// Journals what a previous holder of `lock` left noted, then notes `event`, whose
    /// change will have `effect`. Called with `lock` held, before the change.
    pub(crate) fn note(
        ws: &'a Workspace,
        lock: &'a FileLock,
        event: Event,
        effect: Effect,
    ) -> Self {
        if !ws.config().journal {
            return Pending {
                ws,
                lock,
                noted: None,
                in_file: false,
            };
        }
        settle(ws, lock);
        let (segment, size) = super::written_before(ws);
        let id = super::chain::new_id();
        let encoded = Encoded::of(&event);
        let effect = serde_json::to_string(&effect).unwrap_or_else(|e| unreachable!("{e}"));
        // The note's JSON, written by hand to reuse the event's (see `Note`).
        let bytes = format!(
            "P{{\"id\":\"{id}\",\"segment\":{segment},\"size\":{size},\"at\":\"{}\",\"effect\":{effect},\"event\":{}}}\n",
            jiff::Timestamp::now(),
            encoded.json()
        );
        let in_file = match lock.file().write_all_at(bytes.as_bytes(), NOTE_AT) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "journal note not written in {}", lock.path().display());
                false
            }
        };
        Pending {
            ws,
            lock,
            noted: Some((id, encoded)),
            in_file,
        }
    }

    /// The change was made: journals it and clears the note. An entry that cannot be written
    /// stays noted for the next holder (and is traced); the change stands either way.
    pub(crate) fn done(self) {
        let Some((id, event)) = &self.noted else {
            return;
        };
        match super::append_as(self.ws, event, Some(id), false) {
            Ok(_) if self.in_file => clear(self.lock),
            Ok(_) => {}
            Err(e) => tracing::warn!(
                error = %e,
                kind = %event.kind(),
                "journal entry not written; left noted in {}",
                self.lock.path().display()
            ),
        }
    }
}

fn clear(lock: &FileLock) {
    if let Err(e) = lock.file().write_all_at(b"C", NOTE_AT) {
        tracing::warn!(error = %e, "could not clear the journal note in {}", lock.path().display());
    }
}

/// Reads the note in a held lock file, if one is there.
fn read_note(lock: &FileLock) -> Option<Result<Note, String>> {
    let mut head = [0u8; 1];
    match lock.file().read_at(&mut head, NOTE_AT) {
        Ok(1) if head[0] == b'P' => {}
        _ => return None,
    }
    let len = lock.file().metadata().map(|m| m.len()).unwrap_or(0);
    let mut bytes = vec![0u8; len.saturating_sub(NOTE_AT + 1) as usize];
    if let Err(e) = lock.file().read_exact_at(&mut bytes, NOTE_AT + 1) {
        return Some(Err(e.to_string()));
    }
    let end = bytes
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(bytes.len());
    Some(serde_json::from_slice(&bytes[..end]).map_err(|e| e.to_string()))
}

/// Settles the note a previous holder of `lock` left: journals its change when the change
/// took effect and the journal lacks it, then clears it. Returns whether it appended.
fn settle(ws: &Workspace, lock: &FileLock) -> bool {
    let note = match read_note(lock) {
        None => return false,
        Some(Ok(note)) => note,
        Some(Err(e)) => {
            tracing::warn!(error = %e, "unreadable journal note in {} dropped", lock.path().display());
            clear(lock);
            return false;
        }
    };
    let wanted = note.effect.holds(ws) && !super::contains(ws, &note.id, note.segment, note.size);
    if wanted && let Err(e) = super::append_as(ws, &Encoded::of(&note.event), Some(&note.id), true)
    {
        tracing::warn!(error = %e, kind = %note.event.kind, "late journal entry not written; still noted");
        return false;
    }
    clear(lock);
    wanted
}

/// Journals the changes of processes that died between making a change and journaling it,
/// for every domain lock nobody holds now (one held is in use: its holder settles it).
/// Returns how many entries it appended. Readers of the journal call it first.
pub fn settle_all(ws: &Workspace) -> Result<usize, StoreError> {
    #[cfg(feature = "etcd")]
    if let Some(etcd) = super::on_etcd(ws) {
        return Ok(super::etcd::settle(ws, etcd)?.len());
    }
    let mut files = vec![
        ws.dir().join("tasks/.lock"),
        ws.dir().join("agents/.lock"),
        ws.dir().join("locks/.paths"),
    ];
    let locks = ws.dir().join("locks");
    files.extend(
        fs::list_names(&locks)?
            .into_iter()
            .filter(|n| n.ends_with(".fence"))
            .map(|n| locks.join(n)),
    );
    files.extend(crate::channel::counter_files(ws)?);
    // In the order the changes were noted, so late entries keep the order of the changes.
    let mut noted: Vec<((u64, u64, jiff::Timestamp), PathBuf)> = files
        .into_iter()
        .filter_map(|path| Some((noted_at(&path)?, path)))
        .collect();
    noted.sort();
    let mut appended = 0;
    for (_, path) in noted {
        let Ok(lock) = FileLock::acquire(&path, Duration::ZERO) else {
            continue;
        };
        appended += usize::from(settle(ws, &lock));
    }
    Ok(appended)
}

/// Where and when the note in the file at `path` was written, if it carries one (read
/// without its lock; a note that cannot be read sorts first, to be dropped under the lock).
fn noted_at(path: &Path) -> Option<(u64, u64, jiff::Timestamp)> {
    let bytes = fs::read_if_exists(path).ok()??;
    let note = bytes.get(NOTE_AT as usize..)?.strip_prefix(b"P")?;
    let end = note.iter().position(|&b| b == b'\n').unwrap_or(note.len());
    Some(
        serde_json::from_slice::<Note>(&note[..end])
            .map_or((0, 0, jiff::Timestamp::UNIX_EPOCH), |n| {
                (n.segment, n.size, n.at)
            }),
    )
}
