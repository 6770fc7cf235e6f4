//! The journal: one hash-chained history of every change made through MAOS.
//!
//! `.maos/journal/` holds numbered segments (`00000001.jsonl`, …) of JSON lines, one entry
//! per change, each appended by the process that made the change while it holds the
//! journal's kernel lock (`journal/.lock`): concurrent writers never interleave, entries are
//! numbered (`n`) in the order they were written, and each carries the hash of the entry
//! before it (`prev`) and its own (`hash`, SHA-256 of the line without that field). The lock
//! file also holds the head — the last entry's number and hash, its segment and that
//! segment's length — so a journal cut short is told from a complete one ([`verify`]).
//!
//! A change and its entry are two writes, and a process can be killed between them. So a
//! change made under a domain's kernel lock (a lock's `.fence`, a channel's `.seq`,
//! `tasks/.lock`, `agents/.lock`, `locks/.paths`) is first *noted* in that lock file
//! (`Pending`); the entry is appended after the change and the note cleared. The next
//! holder of the same kernel lock — the first to see what the dead process left — finds the
//! note, checks whether the change took effect (the note says how: a field of a record), and
//! appends the entry, marked `late`, when it did and the journal lacks it. Readers
//! ([`settle_all`]) do the same for every domain lock nobody holds.
//!
//! Appending never fails the change it describes: an entry that cannot be written is left
//! as a note (and traced) for the next holder to append.

mod chain;
#[cfg(feature = "etcd")]
mod etcd;
pub mod hooks;
mod note;
mod prune;
mod read;

use std::fs::File;
use std::io::Write as _;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::fs::{self, FsError};
use crate::store::StoreError;
use crate::workspace::Workspace;

/// The etcd store of `ws`, when it is on one (the journal is then kept there).
#[cfg(feature = "etcd")]
fn on_etcd(ws: &Workspace) -> Option<&std::sync::Arc<crate::store::etcd::Etcd>> {
    match ws.store() {
        crate::store::Store::Etcd(etcd) => Some(etcd),
        crate::store::Store::Files => None,
    }
}

pub use chain::{Problem, Verification, verify};
pub use note::settle_all;
pub(crate) use note::{Effect, Pending};
pub use prune::{Keep, Pruned, prune};
pub use read::{Cursor, Filter, follow, read_from};

/// The folder of the journal inside `.maos/`.
pub const DIR: &str = "journal";

/// A segment is closed once it reaches this size unless `maos.json` says otherwise
/// (`journal_segment_bytes`).
pub const SEGMENT_BYTES: u64 = 8 << 20;

/// The `prev` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// A change to be journaled: what happened (`kind`, such as `task.claimed`), by whom, to
/// what, and the details.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// `<domain>.<what>`: `lock.acquired`, `task.completed`, `message.sent`, …
    pub kind: String,
    /// The agent that made the change, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// What changed: a task id, a lock's resource, `channel#seq`, an agent id, a branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The details (a JSON object).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub data: Value,
}

impl Event {
    /// An event of `kind` with no agent, subject or details yet.
    pub fn new(kind: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            agent: None,
            subject: None,
            data: Value::Null,
        }
    }

    /// Who made the change.
    pub fn agent(mut self, agent: impl Into<String>) -> Self {
        self.agent = Some(agent.into());
        self
    }

    /// What changed.
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// The details.
    pub fn data(mut self, data: Value) -> Self {
        self.data = data;
        self
    }
}

/// One entry as read back from the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Its number: 1 for the first entry, one more for each after.
    pub n: u64,
    /// When it was written (the writer's clock).
    pub at: Timestamp,
    /// A random id, unique to the entry (how a late append knows an entry is there).
    pub id: String,
    /// What happened.
    #[serde(flatten)]
    pub event: Event,
    /// The process that wrote it.
    pub pid: u32,
    /// Appended by the next holder of the domain's lock: the process that made the change
    /// died (or could not write) before journaling it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub late: bool,
    /// The hash of the entry before (all zeros for the first).
    pub prev: String,
    /// SHA-256 of this line without its `hash` field.
    pub hash: String,
}

/// Where the journal ends, as its lock file records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The number of the last entry.
    pub n: u64,
    /// Its hash.
    pub hash: String,
    /// The segment it is in.
    pub segment: u64,
    /// That segment's length after it.
    pub size: u64,
}

impl Head {
    fn empty() -> Self {
        Head {
            n: 0,
            hash: GENESIS.to_owned(),
            segment: 1,
            size: 0,
        }
    }

    fn encode(&self) -> String {
        format!(
            "{:020} {} {:020} {:020}\n",
            self.n, self.hash, self.segment, self.size
        )
    }

    fn parse(bytes: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut fields = text.split_whitespace();
        let n = fields.next()?.parse().ok()?;
        let hash = fields.next().filter(|h| chain::is_hash(h))?.to_owned();
        let segment = fields.next()?.parse().ok()?;
        let size = fields.next()?.parse().ok()?;
        Some(Head {
            n,
            hash,
            segment,
            size,
        })
    }
}

/// Where the journal starts after `maos journal prune`: the last entry pruned (`journal/.base`:
/// `<n> <hash>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Base {
    /// Its number.
    pub n: u64,
    /// Its hash: the `prev` of the first entry kept.
    pub hash: String,
}

/// The base of the journal (`None`: nothing was pruned).
pub fn base(ws: &Workspace) -> Result<Option<Base>, StoreError> {
    #[cfg(feature = "etcd")]
    if let Some(etcd) = on_etcd(ws) {
        return etcd::base(etcd);
    }
    let Some(bytes) = fs::read_if_exists(&dir(ws).join(".base"))? else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&bytes);
    let mut fields = text.split_whitespace();
    Ok(
        match (fields.next().and_then(|n| n.parse().ok()), fields.next()) {
            (Some(n), Some(hash)) if chain::is_hash(hash) => Some(Base {
                n,
                hash: hash.to_owned(),
            }),
            _ => None,
        },
    )
}

/// The journal folder of a workspace.
pub fn dir(ws: &Workspace) -> PathBuf {
    ws.dir().join(DIR)
}

/// The path of segment `number`.
pub fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:08}.jsonl"))
}

/// The segments of the journal in `dir`, in order (number, path).
pub fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, FsError> {
    let mut found: Vec<(u64, PathBuf)> = fs::list_names(dir)?
        .into_iter()
        .filter_map(|name| {
            let number = name.strip_suffix(".jsonl")?.parse().ok()?;
            Some((number, dir.join(&name)))
        })
        .collect();
    found.sort();
    Ok(found)
}

/// The head the journal's lock file records (`None` for a journal never written). On etcd
/// `segment` and `size` are 0.
pub fn head(ws: &Workspace) -> Result<Option<Head>, StoreError> {
    #[cfg(feature = "etcd")]
    if let Some(etcd) = on_etcd(ws) {
        return etcd::head(etcd);
    }
    let path = dir(ws).join(".lock");
    match fs::read(&path) {
        Ok(bytes) => Ok(Head::parse(&bytes)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The last entry of the journal (`None` for a journal never written).
pub fn last(ws: &Workspace) -> Result<Option<Entry>, StoreError> {
    #[cfg(feature = "etcd")]
    if let Some(etcd) = on_etcd(ws) {
        return etcd::last(etcd);
    }
    let Some((_, path)) = segments(&dir(ws))?.pop() else {
        return Ok(None);
    };
    Ok(chain::last_entry(&path)?)
}

/// A process's open journal: the lock file (which holds the head) and the segment last
/// written, kept open between appends.
struct Writer {
    dir: PathBuf,
    lock: File,
    segment: Option<(u64, File)>,
    /// Where this process's last append left the journal: a point every later entry follows.
    end: Option<(u64, u64)>,
}

static WRITERS: Mutex<Vec<Writer>> = Mutex::new(Vec::new());

/// Appends `event` to the workspace's journal and returns its entry number (`None` when the
/// workspace keeps no journal: `"journal": false` in `maos.json`).
pub fn append(ws: &Workspace, event: &Event) -> Result<Option<u64>, StoreError> {
    if !ws.config().journal {
        return Ok(None);
    }
    #[cfg(feature = "etcd")]
    if let Some(etcd) = on_etcd(ws) {
        return etcd::append(ws, etcd, &Encoded::of(event)).map(Some);
    }
    Ok(Some(append_as(ws, &Encoded::of(event), None, false)?))
}

/// On etcd: the key and value to put in the transaction making a change so that its event
/// is journaled with it (see `journal::etcd`); `None` when the workspace keeps no journal.
/// After the transaction, [`settle_etcd`] chains it.
#[cfg(feature = "etcd")]
pub(crate) fn pending(ws: &Workspace, events: &[Event]) -> Option<(String, Vec<u8>)> {
    pending_events(ws, events, None)
}

/// [`pending`] for locks' or reservations' events whose `data.token` is the change's
/// revision plus `token_base` (filled in when they are chained).
#[cfg(feature = "etcd")]
pub(crate) fn pending_with_token(
    ws: &Workspace,
    events: &[Event],
    token_base: u64,
) -> Option<(String, Vec<u8>)> {
    pending_events(ws, events, Some(token_base))
}

#[cfg(feature = "etcd")]
fn pending_events(
    ws: &Workspace,
    events: &[Event],
    token_base: Option<u64>,
) -> Option<(String, Vec<u8>)> {
    if !ws.config().journal || events.is_empty() {
        return None;
    }
    let encoded: Vec<Encoded> = events.iter().map(Encoded::of).collect();
    Some(etcd::pending(&encoded, token_base))
}

/// On etcd, after a change whose events are pending (see [`pending`]): this process's
/// settler thread chains them soon, off the caller's path (the change and its events are
/// already kept; readers chain what is pending before they read).
#[cfg(feature = "etcd")]
pub(crate) fn settle_etcd(ws: &Workspace) {
    if on_etcd(ws).is_some() && ws.config().journal {
        etcd::settle_soon(ws);
    }
}

/// [`append`] for a change already made: a failure is traced, never returned (the change
/// stands; only its entry is missing).
pub(crate) fn record(ws: &Workspace, event: Event) {
    if let Err(e) = append(ws, &event) {
        tracing::warn!(error = %e, kind = %event.kind, "journal entry not written");
    }
}

/// An event serialized once, for its note and its line.
pub(crate) struct Encoded {
    kind: String,
    json: String,
}

impl Encoded {
    pub(crate) fn of(event: &Event) -> Self {
        Encoded {
            kind: event.kind.clone(),
            // An event is strings and JSON values: serializing it cannot fail.
            json: serde_json::to_string(event).unwrap_or_else(|e| unreachable!("{e}")),
        }
    }

    /// The event's JSON object.
    pub(crate) fn json(&self) -> &str {
        &self.json
    }

    /// Its kind.
    pub(crate) fn kind(&self) -> &str {
        &self.kind
    }
}

/// Appends with a chosen entry id (a noted change keeps the id its note gave it).
pub(crate) fn append_as(
    ws: &Workspace,
    event: &Encoded,
    id: Option<&str>,
    late: bool,
) -> Result<u64, FsError> {
    let dir = dir(ws);
    let mut writers = WRITERS.lock().unwrap_or_else(|e| e.into_inner());
    let at = match writers.iter().position(|w| w.dir == dir) {
        Some(at) => at,
        None => {
            writers.push(Writer {
                lock: open_lock(&dir)?,
                dir: dir.clone(),
                segment: None,
                end: None,
            });
            writers.len() - 1
        }
    };
    let writer = &mut writers[at];
    let lock_path = dir.join(".lock");
    fs::lock_until(
        &writer.lock,
        &lock_path,
        Instant::now() + ws.kernel_lock_wait(),
        false,
    )?;
    let written = writer.append_locked(ws, event, id, late);
    // Unlocking a file we hold cannot meaningfully fail; closing it would unlock it too.
    let _ = writer.lock.unlock();
    let n = written?;
    hooks::dispatch(ws, &event.kind);
    Ok(n)
}

fn open_lock(dir: &Path) -> Result<File, FsError> {
    let path = dir.join(".lock");
    match fs::open_rw_create(&path) {
        Err(e) if e.is_not_found() => {
            fs::create_dir_all(dir)?;
            fs::open_rw_create(&path)
        }
        other => other,
    }
}

impl Writer {
    fn append_locked(
        &mut self,
        ws: &Workspace,
        event: &Encoded,
        id: Option<&str>,
        late: bool,
    ) -> Result<u64, FsError> {
        let lock_path = self.dir.join(".lock");
        let mut buf = [0u8; 256];
        let read = self
            .lock
            .read_at(&mut buf, 0)
            .map_err(|e| FsError::new("read", &lock_path, e))?;
        let mut head = match Head::parse(&buf[..read]) {
            Some(head) => head,
            None => recover_head(&self.dir)?,
        };
        let limit = ws
            .config()
            .journal_segment_bytes
            .unwrap_or(SEGMENT_BYTES)
            .max(1);
        if head.size >= limit {
            head.segment += 1;
            head.size = 0;
        }
        let path = segment_path(&self.dir, head.segment);
        let segment = match &self.segment {
            Some((number, _)) if *number == head.segment => &self.segment,
            _ => {
                let file = fs::open_append_create(&path)?;
                self.segment = Some((head.segment, file));
                &self.segment
            }
        };
        let Some((_, file)) = segment else {
            unreachable!("the segment was just opened");
        };
        let len = file
            .metadata()
            .map_err(|e| FsError::new("stat", &path, e))?
            .len();
        let mut prefix = "";
        if len != head.size {
            // Longer: a writer died between its line and the head; its line counts. Shorter:
            // the segment was cut — the chain goes on from the head, and `verify` tells.
            // Only a line that continues the head is adopted: a rewritten last entry is
            // never chained onto (the chain goes on from the head, and `verify` tells).
            if len > head.size
                && let Some(Entry { n, hash, prev, .. }) = chain::last_entry(&path)?
                && n == head.n + 1
                && prev == head.hash
            {
                head.n = n;
                head.hash = hash;
            }
            if len > 0 && !chain::ends_with_newline(file, &path, len)? {
                prefix = "\n";
            }
        }
        let (line, hash) = chain::encode(head.n + 1, &head.hash, event.json(), id, late);
        let mut bytes = Vec::with_capacity(prefix.len() + line.len() + 1);
        bytes.extend_from_slice(prefix.as_bytes());
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        (&*file)
            .write_all(&bytes)
            .map_err(|e| FsError::new("append to", &path, e))?;
        let next = Head {
            n: head.n + 1,
            hash,
            segment: head.segment,
            size: len + bytes.len() as u64,
        };
        self.lock
            .write_all_at(next.encode().as_bytes(), 0)
            .map_err(|e| FsError::new("write", &lock_path, e))?;
        self.end = Some((next.segment, next.size));
        Ok(next.n)
    }
}

/// The journal's lines as written, from the first entry kept to the last in order, with the
/// base they follow: what `maos store migrate` copies. Lines that do not continue the chain
/// are left out (`verify` names the first).
pub(crate) fn lines(ws: &Workspace) -> Result<(Option<Base>, Vec<String>), StoreError> {
    let base = base(ws)?;
    let mut next = base.as_ref().map_or(1, |b| b.n + 1);
    let mut found = Vec::new();
    #[cfg(feature = "etcd")]
    if let Some(etcd) = on_etcd(ws) {
        for line in etcd::lines(etcd, next)? {
            if chain::check_line(&line).is_ok_and(|e| e.n == next) {
                found.push(line);
                next += 1;
            }
        }
        return Ok((base, found));
    }
    for (_, path) in segments(&dir(ws))? {
        let bytes = fs::read(&path)?;
        for line in String::from_utf8_lossy(&bytes).lines() {
            if chain::check_line(line).is_ok_and(|e| e.n == next) {
                found.push(line.to_owned());
                next += 1;
            }
        }
    }
    Ok((base, found))
}

/// Makes `lines` (after `base`) the journal of `ws`, whose journal is empty: the same
/// entries, numbers and hashes, so the chain verifies as before. What `maos store migrate`
/// writes.
pub(crate) fn adopt(
    ws: &Workspace,
    base: Option<&Base>,
    lines: &[String],
) -> Result<(), StoreError> {
    let last = match lines.last() {
        Some(line) => chain::check_line(line).map(|e| (e.n, e.hash)).ok(),
        None => base.map(|b| (b.n, b.hash.clone())),
    };
    #[cfg(feature = "etcd")]
    if let Some(etcd) = on_etcd(ws) {
        return etcd::adopt(etcd, base, lines, last);
    }
    let dir = dir(ws);
    fs::create_dir_all(&dir)?;
    let tmp = ws.tmp_dir();
    let mut segment = lines.join("\n");
    if !segment.is_empty() {
        segment.push('\n');
    }
    let path = segment_path(&dir, 1);
    crate::atomic::write_replace(
        &tmp,
        &path,
        segment.as_bytes(),
        crate::atomic::Durability::Fsync,
    )?;
    if let Some(base) = base {
        crate::atomic::write_replace(
            &tmp,
            &dir.join(".base"),
            format!("{} {}\n", base.n, base.hash).as_bytes(),
            crate::atomic::Durability::Fsync,
        )?;
    }
    if let Some((n, hash)) = last {
        let head = Head {
            n,
            hash,
            segment: 1,
            size: segment.len() as u64,
        };
        crate::atomic::write_replace(
            &tmp,
            &dir.join(".lock"),
            head.encode().as_bytes(),
            crate::atomic::Durability::Fsync,
        )?;
    }
    Ok(())
}

/// Where the journal ends now, by its head: following from here sees only what is
/// journaled next.
pub fn end(ws: &Workspace) -> Result<Cursor, StoreError> {
    Ok(head(ws)?.map_or(Cursor::default(), |h| Cursor {
        segment: h.segment,
        offset: if ws.store().is_files() { h.size } else { h.n },
    }))
}

/// A point every entry written from now on comes after (segment, length): where this
/// process's last append left the journal (no system call), else the head. Read without the
/// journal's lock.
fn written_before(ws: &Workspace) -> (u64, u64) {
    let dir = dir(ws);
    let writers = WRITERS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(end) = writers.iter().find(|w| w.dir == dir).and_then(|w| w.end) {
        return end;
    }
    drop(writers);
    head(ws)
        .ok()
        .flatten()
        .map_or((1, 0), |h| (h.segment, h.size))
}

/// Whether the entry with id `id` was written after `(segment, size)`.
fn contains(ws: &Workspace, id: &str, segment: u64, size: u64) -> bool {
    let needle = format!("\"id\":\"{id}\"");
    let Ok(found) = segments(&dir(ws)) else {
        return false;
    };
    found
        .iter()
        .filter(|(number, _)| *number >= segment)
        .any(|(number, path)| {
            let Ok(bytes) = fs::read(path) else {
                return false;
            };
            let from = if *number == segment { size as usize } else { 0 };
            let text = String::from_utf8_lossy(bytes.get(from..).unwrap_or_default());
            text.contains(&needle)
        })
}

/// The head from the newest segment's last entry (a lock file lost or damaged by hand).
fn recover_head(dir: &Path) -> Result<Head, FsError> {
    let Some((segment, path)) = segments(dir)?.pop() else {
        return Ok(Head::empty());
    };
    let size = fs::metadata(&path)?.len();
    Ok(match chain::last_entry(&path)? {
        Some(Entry { n, hash, .. }) => Head {
            n,
            hash,
            segment,
            size,
        },
        None => Head {
            segment,
            size,
            ..Head::empty()
        },
    })
}

#[cfg(test)]
mod tests;
