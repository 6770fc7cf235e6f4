//! Retention: a channel's old messages move, a whole segment folder (1,000 messages) at a
//! time, into a gzip-compressed JSON Lines file under `.maos/archive/<channel>/`, so a busy
//! workspace does not grow without bound (`maos msg prune`, or the workspace's
//! `message_retention` setting when a segment fills).
//!
//! A segment is pruned only when it is complete (the channel has moved to a later one), every
//! message in it could be read, none awaits an acknowledgement, and the rule allows it (it
//! keeps at least the newest N messages; its newest message is older than the age given).
//! Segments are pruned in order, so what is pruned is always "everything up to seq N". One
//! prune of a channel runs at a time (the kernel lock `.prune.lock`). The archive is written
//! first; then, holding the channel's `.seq` lock, `.pruned` records N and the archives, and
//! the segment folders are removed (a folder left by a prune killed in between is removed by
//! the next one). A reader whose position is behind
//! N is told so ([`Batch::pruned`](super::Batch)) — never a silent gap — and goes on from N.
//!
//! On etcd the same rule decides; the archive goes into the store as keys
//! `archive/<channel>/<segment>.<nonce>.<part>.jsonl.gz` (parts of at most [`PART_BYTES`], since
//! etcd limits a request's size), then one transaction that compares `.pruned` (one prune
//! at a time) writes it and deletes the segments' messages.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{Channel, ChannelError, ChannelName, Message, SEGMENT_LEN, segment_of};
use crate::atomic::{self, Durability};
use crate::fs::{self, FileLock, FsError};
use crate::name;
use crate::record::{self, RecordError};
use crate::store::Spot;
use crate::workspace::Workspace;

pub(super) const PRUNED_FILE: &str = ".pruned";
/// The kernel lock held for a whole prune of the channel.
const PRUNE_LOCK: &str = ".prune.lock";

/// What has been pruned from a channel (`.pruned` in its folder).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pruned {
    /// Every message up to this seq is archived, none is left in the channel folder.
    pub upto: u64,
    /// The archive files, oldest first, relative to `.maos/`.
    pub archives: Vec<String>,
}

impl std::fmt::Display for Pruned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pruned up to seq {}", self.upto)?;
        match (self.archives.first(), self.archives.last()) {
            (Some(first), Some(last)) if first != last => {
                write!(f, " (archived in .maos/{first} … .maos/{last})")
            }
            (Some(only), _) => write!(f, " (archived in .maos/{only})"),
            _ => Ok(()),
        }
    }
}

/// Which old messages may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Retention {
    /// Keep at least this many of the newest messages.
    Keep(u64),
    /// Prune messages older than this many seconds.
    OlderThanSecs(u64),
}

/// What one prune did to one channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PruneReport {
    /// The channel.
    pub channel: String,
    /// Messages moved to archives now.
    pub archived: u64,
    /// Everything up to this seq is pruned now (0: nothing ever was).
    pub upto: u64,
    /// Why the next segment stayed, when one could have gone by the rule.
    pub kept_because: Option<String>,
}

/// The largest archive part kept in etcd (its requests are limited to 1.5 MiB).
#[cfg(feature = "etcd")]
const PART_BYTES: usize = 1 << 20;

impl Channel {
    /// What has been pruned from this channel (`None`: nothing).
    pub fn pruned(&self) -> Result<Option<Pruned>, ChannelError> {
        let spot = self.pruned_spot();
        match spot.read()? {
            Some(bytes) => Ok(Some(record::decode(&spot.path(), "prune record", &bytes)?)),
            None => Ok(None),
        }
    }

    /// Where `.pruned` is kept: a file in the channel's folder, or its key.
    fn pruned_spot(&self) -> Spot {
        Spot::new(
            self.ws.store(),
            self.ws.dir(),
            Path::new("channels")
                .join(self.name.rel_path())
                .join(PRUNED_FILE),
        )
    }
}

/// Whether the messages up to `end` must stay by a rule that keeps the newest N.
fn kept_by_count(rule: Retention, last: u64, end: u64) -> bool {
    matches!(rule, Retention::Keep(n) if end > last.saturating_sub(n))
}

/// Whether a complete segment (messages `first..=end`, read as `batch`) may go: `Ok`, or why
/// it stays — `None` when the rule keeps it, a reason worth reporting otherwise.
fn may_go(
    rule: Retention,
    now: Timestamp,
    (first, end): (u64, u64),
    batch: &super::Batch,
    awaited: &[u64],
) -> Result<(), Option<String>> {
    if let Some(broken) = batch.skipped.first() {
        return Err(Some(format!("a message file is broken: {broken}")));
    }
    if let Retention::OlderThanSecs(secs) = rule {
        let age = jiff::SignedDuration::from_secs(i64::try_from(secs).unwrap_or(i64::MAX));
        let cutoff = now.checked_sub(age).unwrap_or(Timestamp::MIN);
        if batch.messages.last().is_some_and(|m| m.timestamp >= cutoff) {
            return Err(None);
        }
    }
    if let Some(seq) = awaited.iter().find(|s| (first..=end).contains(*s)) {
        return Err(Some(format!("#{seq} awaits an acknowledgement")));
    }
    Ok(())
}

/// What a prune does with a message addressed to an agent that has not read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfUnread {
    /// It stays, and with it every later message (the prune stops there, saying why).
    Keep,
    /// It is archived like any other (asked for explicitly: `--drop-unread`).
    Drop,
}

/// How far each agent has read a channel — its inbox position or its read cursor, whichever
/// is further — looked up once per agent.
struct Readers<'a> {
    ws: &'a Workspace,
    channel: &'a ChannelName,
    known: super::Known,
    seen: std::collections::HashMap<String, u64>,
}

impl<'a> Readers<'a> {
    fn new(ws: &'a Workspace, channel: &'a ChannelName) -> Result<Self, ChannelError> {
        Ok(Readers {
            ws,
            channel,
            known: super::Known::of(ws)?,
            seen: std::collections::HashMap::new(),
        })
    }

    /// The first message of `batch` addressed (by id, group or role) to an agent that has
    /// not read it, and that agent. A message for everyone is nobody's in particular.
    fn first_unread(
        &mut self,
        batch: &super::Batch,
    ) -> Result<Option<(u64, String)>, ChannelError> {
        for message in &batch.messages {
            if message.recipients.is_everyone() {
                continue;
            }
            for agent in self.known.agents_for(&message.recipients, &message.sender) {
                let read = match self.seen.get(&agent) {
                    Some(seq) => *seq,
                    None => {
                        let at = |base: &str| {
                            super::cursor::Cursor::load(self.ws, base, self.channel, &agent)
                                .map(|c| c.seq)
                        };
                        // A name no cursor can have has read nothing.
                        let seq = at("inbox").unwrap_or(0).max(at("cursors").unwrap_or(0));
                        self.seen.insert(agent.clone(), seq);
                        seq
                    }
                };
                if read < message.seq
                    && !super::ack::acknowledged(self.ws, self.channel, message.seq, &agent)?
                {
                    return Ok(Some((message.seq, agent)));
                }
            }
        }
        Ok(None)
    }
}

/// Why a prune stopped at an unread message.
fn unread_reason((seq, agent): (u64, String)) -> String {
    format!("#{seq} is for `{agent}`, who has not read it (`--drop-unread` prunes it anyway)")
}

/// Prunes `channel` by `rule` (see the module docs). A message addressed to an agent that
/// has not read it stops the prune there unless `unread` is [`IfUnread::Drop`].
pub fn prune(
    ws: &Workspace,
    name: &ChannelName,
    rule: Retention,
    now: Timestamp,
    unread: IfUnread,
) -> Result<PruneReport, ChannelError> {
    #[cfg(feature = "etcd")]
    if let crate::store::Store::Etcd(etcd) = ws.store() {
        return prune_etcd(ws, etcd, name, rule, now, unread);
    }
    let mut readers = match unread {
        IfUnread::Keep => Some(Readers::new(ws, name)?),
        IfUnread::Drop => None,
    };
    let channel = Channel::open(ws, name.clone());
    let mut report = PruneReport {
        channel: name.as_str().to_owned(),
        archived: 0,
        upto: 0,
        kept_because: None,
    };
    if !channel.dir.is_dir() {
        return Ok(report);
    }
    // One prune of a channel at a time: each decides from the `.pruned` the last one left
    // (two deciding from the same one would each write their own, and `upto` could go back).
    let _pruning = ws.kernel_lock(&channel.dir.join(PRUNE_LOCK))?;
    let mut pruned = channel.pruned()?.unwrap_or_default();
    report.upto = pruned.upto;
    let last = channel.last_seq()?;
    let awaited = super::unacked(ws, name)?;
    // Segments already recorded as pruned whose folder is still there: a prune was killed
    // between writing `.pruned` and removing them.
    let mut leftover = Vec::new();
    let mut gone = Vec::new();
    for segment in channel.segments()? {
        let (first, end) = (segment * SEGMENT_LEN + 1, (segment + 1) * SEGMENT_LEN);
        if end <= pruned.upto {
            leftover.push(segment);
            continue;
        }
        if segment >= segment_of(last) {
            continue;
        }
        if kept_by_count(rule, last, end) {
            break;
        }
        let batch = channel.read_segment(segment)?;
        if let Err(why) = may_go(rule, now, (first, end), &batch, &awaited) {
            report.kept_because = why;
            break;
        }
        if let Some(readers) = readers.as_mut()
            && let Some(unread) = readers.first_unread(&batch)?
        {
            report.kept_because = Some(unread_reason(unread));
            break;
        }
        archive_segment(ws, name, (segment, end), &batch, &mut pruned, &mut report)?;
        gone.push(segment);
    }
    if gone.is_empty() && leftover.is_empty() {
        return Ok(report);
    }
    // Readers that meet a gap wait for this lock, then read `.pruned` again.
    let _lock = FileLock::acquire(&channel.seq_path(), ws.kernel_lock_wait())?;
    if !gone.is_empty() {
        atomic::write_replace(
            &ws.tmp_dir(),
            &channel.dir.join(PRUNED_FILE),
            &record::encode(&pruned),
            Durability::Fsync,
        )?;
    }
    for segment in leftover.into_iter().chain(gone) {
        let dir = channel.segment_dir(segment);
        #[expect(
            clippy::disallowed_methods,
            reason = "a pruned segment folder, its messages already archived and recorded in `.pruned`"
        )]
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(FsError::new("remove", &dir, e).into()),
        }
    }
    report.upto = pruned.upto;
    tracing::debug!(channel = %name, upto = report.upto, archived = report.archived, "channel pruned");
    Ok(report)
}

/// `messages` as gzip-compressed JSON Lines (`path` names the archive in an error).
fn compress(path: &Path, messages: &[&Message]) -> Result<Vec<u8>, FsError> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    let mut lines = Vec::new();
    for message in messages {
        lines.extend(serde_json::to_vec(message).unwrap_or_default());
        lines.push(b'\n');
    }
    encoder
        .write_all(&lines)
        .and_then(|()| encoder.finish())
        .map_err(|e| FsError::new("compress", path, e))
}

/// Archives `segment` (its messages `batch`, the last of them `end`) and records it in
/// `pruned` and `report`.
fn archive_segment(
    ws: &Workspace,
    name: &ChannelName,
    (segment, end): (u64, u64),
    batch: &super::Batch,
    pruned: &mut Pruned,
    report: &mut PruneReport,
) -> Result<(), ChannelError> {
    let messages: Vec<&Message> = batch.messages.iter().collect();
    pruned
        .archives
        .extend(store_archive(ws, name, segment, &messages)?);
    pruned.upto = end;
    report.archived += messages.len() as u64;
    Ok(())
}

/// Keeps the archive of `segment`'s `messages` in `ws`'s store — one file on files, parts of
/// at most [`PART_BYTES`] on etcd — and returns where (relative to `.maos/`).
fn store_archive(
    ws: &Workspace,
    name: &ChannelName,
    segment: u64,
    messages: &[&Message],
) -> Result<Vec<String>, ChannelError> {
    let dir = Path::new("archive").join(name::file_name(name.as_str()));
    #[cfg(feature = "etcd")]
    if !ws.store().is_files() {
        // Named for this writing: a prune that loses to another never overwrites its parts.
        let nonce = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let mut stored = Vec::new();
        for (part, bytes) in parts(&dir, messages)?.into_iter().enumerate() {
            let rel = dir.join(format!("{segment:06}.{nonce}.{part}.jsonl.gz"));
            Spot::new(ws.store(), ws.dir(), rel.clone()).write(&bytes, Durability::Fsync)?;
            stored.push(rel.to_string_lossy().into_owned());
        }
        return Ok(stored);
    }
    let rel = dir.join(format!("{segment:06}.jsonl.gz"));
    write_archive(ws, &ws.dir().join(&rel), messages)?;
    Ok(vec![rel.to_string_lossy().into_owned()])
}

/// Copies what was pruned from channel `name` of `from` into `to` (another store): every
/// archived message, archived again there segment by segment, and `.pruned`. Returns how
/// many messages; an archive line that cannot be read stops it, naming the file.
pub(crate) fn copy_archives(
    from: &Workspace,
    to: &Workspace,
    name: &ChannelName,
) -> Result<usize, ChannelError> {
    let Some(pruned) = Channel::open(from, name.clone()).pruned()? else {
        return Ok(0);
    };
    let (messages, broken) = read_archived(from, name)?;
    if let Some(first) = broken.into_iter().next() {
        return Err(first.into());
    }
    let mut copied = Pruned {
        upto: pruned.upto,
        archives: Vec::new(),
    };
    for group in messages.chunk_by(|a, b| segment_of(a.seq) == segment_of(b.seq)) {
        let refs: Vec<&Message> = group.iter().collect();
        copied
            .archives
            .extend(store_archive(to, name, segment_of(group[0].seq), &refs)?);
    }
    Channel::open(to, name.clone())
        .pruned_spot()
        .write(&record::encode(&copied), Durability::Fsync)?;
    Ok(messages.len())
}

/// Writes `messages` as gzip-compressed JSON Lines at `path`, atomically.
fn write_archive(ws: &Workspace, path: &Path, messages: &[&Message]) -> Result<(), ChannelError> {
    let compressed = compress(path, messages)?;
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    atomic::write_replace(&ws.tmp_dir(), path, &compressed, Durability::Fsync)?;
    Ok(())
}

/// Every archived message of `channel`, in order, and the archive lines that could not be
/// read (each naming its file).
pub fn read_archived(
    ws: &Workspace,
    name: &ChannelName,
) -> Result<(Vec<Message>, Vec<RecordError>), ChannelError> {
    let Some(pruned) = Channel::open(ws, name.clone()).pruned()? else {
        return Ok((Vec::new(), Vec::new()));
    };
    let (mut messages, mut broken) = (Vec::new(), Vec::new());
    for archive in &pruned.archives {
        let spot = Spot::new(ws.store(), ws.dir(), PathBuf::from(archive));
        let path = spot.path();
        let Some(bytes) = spot.read()? else {
            broken.push(RecordError::corrupt(&path, "archive", "it is missing"));
            continue;
        };
        for (n, line) in std::io::BufReader::new(GzDecoder::new(&bytes[..]))
            .lines()
            .enumerate()
        {
            let decoded = line
                .map_err(|e| e.to_string())
                .and_then(|l| serde_json::from_str::<Message>(&l).map_err(|e| e.to_string()));
            match decoded {
                Ok(message) => messages.push(message),
                Err(e) => broken.push(RecordError::corrupt(
                    &path,
                    "archive",
                    format!("line {}: {e}", n + 1),
                )),
            }
        }
    }
    Ok((messages, broken))
}

/// [`prune`] on etcd (see the module docs).
#[cfg(feature = "etcd")]
fn prune_etcd(
    ws: &Workspace,
    etcd: &crate::store::etcd::Etcd,
    name: &ChannelName,
    rule: Retention,
    now: Timestamp,
    unread: IfUnread,
) -> Result<PruneReport, ChannelError> {
    use etcd_client::{Compare, CompareOp, Txn, TxnOp};

    let channel = Channel::open(ws, name.clone());
    let pruned_key = channel.pruned_spot().key();
    'again: loop {
        let seen = etcd.get(&pruned_key)?.map_or(0, |kv| kv.mod_revision);
        let mut pruned = channel.pruned()?.unwrap_or_default();
        let kept_archives = pruned.archives.len();
        let mut report = PruneReport {
            channel: name.as_str().to_owned(),
            archived: 0,
            upto: pruned.upto,
            kept_because: None,
        };
        let last = channel.last_seq()?;
        let awaited = super::unacked(ws, name)?;
        let first_gone = pruned.upto + 1;
        let mut segment = segment_of(first_gone);
        while segment < segment_of(last) {
            let (first, end) = (segment * SEGMENT_LEN + 1, (segment + 1) * SEGMENT_LEN);
            if kept_by_count(rule, last, end) {
                break;
            }
            let mut batch =
                super::etcd::read_after(ws, etcd, name, first - 1, Some(SEGMENT_LEN as usize))?;
            batch.messages.retain(|m| m.seq <= end);
            if batch.messages.first().map(|m| m.seq) != Some(first) {
                // Removed under us by another prune: read what it recorded.
                discard(ws, &pruned.archives[kept_archives..])?;
                continue 'again;
            }
            if let Err(why) = may_go(rule, now, (first, end), &batch, &awaited) {
                report.kept_because = why;
                break;
            }
            if unread == IfUnread::Keep
                && let Some(unread) = Readers::new(ws, name)?.first_unread(&batch)?
            {
                report.kept_because = Some(unread_reason(unread));
                break;
            }
            archive_segment(ws, name, (segment, end), &batch, &mut pruned, &mut report)?;
            segment += 1;
        }
        if report.archived == 0 {
            return Ok(report);
        }
        // `.pruned` and the messages' removal in one transaction, if no prune came between.
        let encoded = record::encode(&pruned);
        let txn = Txn::new()
            .when([Compare::mod_revision(
                etcd.key(&pruned_key),
                CompareOp::Equal,
                seen,
            )])
            .and_then([
                TxnOp::put(etcd.key(&pruned_key), encoded.clone(), None),
                TxnOp::delete(
                    etcd.key(&super::etcd::message_key(name, first_gone)),
                    Some(
                        etcd_client::DeleteOptions::new()
                            .with_range(etcd.key(&super::etcd::message_key(name, pruned.upto + 1))),
                    ),
                ),
            ]);
        let outcome = etcd.txn("record a prune", txn, |etcd| {
            Ok(crate::store::etcd::written(
                etcd.get(&pruned_key)?,
                &encoded,
            ))
        })?;
        if outcome.applied() {
            report.upto = pruned.upto;
            return Ok(report);
        }
        // Another prune came between: its archives stand, ours go.
        discard(ws, &pruned.archives[kept_archives..])?;
    }
}

/// Removes archives written by a prune that did not take effect.
#[cfg(feature = "etcd")]
fn discard(ws: &Workspace, archives: &[String]) -> Result<(), ChannelError> {
    for archive in archives {
        Spot::new(ws.store(), ws.dir(), PathBuf::from(archive)).remove()?;
    }
    Ok(())
}

/// `messages` compressed in parts of at most [`PART_BYTES`] (halved until each fits; one
/// message is one part whatever its size).
#[cfg(feature = "etcd")]
fn parts(dir: &Path, messages: &[&Message]) -> Result<Vec<Vec<u8>>, FsError> {
    let packed = compress(dir, messages)?;
    if packed.len() <= PART_BYTES || messages.len() <= 1 {
        return Ok(vec![packed]);
    }
    let (a, b) = messages.split_at(messages.len() / 2);
    let mut found = parts(dir, a)?;
    found.extend(parts(dir, b)?);
    Ok(found)
}
