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

impl Channel {
    /// What has been pruned from this channel (`None`: nothing).
    pub fn pruned(&self) -> Result<Option<Pruned>, ChannelError> {
        let path = self.dir.join(PRUNED_FILE);
        match fs::read_if_exists(&path)? {
            Some(bytes) => Ok(Some(record::decode(&path, "prune record", &bytes)?)),
            None => Ok(None),
        }
    }
}

fn archive_dir(ws: &Workspace, channel: &ChannelName) -> PathBuf {
    ws.dir()
        .join("archive")
        .join(name::file_name(channel.as_str()))
}

/// Prunes `channel` by `rule` (see the module docs).
pub fn prune(
    ws: &Workspace,
    name: &ChannelName,
    rule: Retention,
    now: Timestamp,
) -> Result<PruneReport, ChannelError> {
    if !ws.store().is_files() {
        return Err(crate::store::StoreError::NotOnEtcd {
            what: "pruning messages into archives",
            instead: "the messages stay in etcd; compact etcd's history with etcd's own tools, or move the state to files first (`maos store migrate --to files`)",
        }
        .into());
    }
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
        if let Retention::Keep(n) = rule
            && end > last.saturating_sub(n)
        {
            break;
        }
        let batch = channel.read_segment(segment)?;
        let messages: Vec<&Message> = batch.messages.iter().collect();
        if let Some(broken) = batch.skipped.first() {
            report.kept_because = Some(format!("a message file is broken: {broken}"));
            break;
        }
        if let Retention::OlderThanSecs(secs) = rule {
            let age = jiff::SignedDuration::from_secs(i64::try_from(secs).unwrap_or(i64::MAX));
            let cutoff = now.checked_sub(age).unwrap_or(Timestamp::MIN);
            if messages.last().is_some_and(|m| m.timestamp >= cutoff) {
                break;
            }
        }
        if let Some(seq) = awaited.iter().find(|s| (first..=end).contains(*s)) {
            report.kept_because = Some(format!("#{seq} awaits an acknowledgement"));
            break;
        }
        let file = format!("{segment:06}.jsonl.gz");
        write_archive(ws, &archive_dir(ws, name).join(&file), &messages)?;
        pruned
            .archives
            .push(format!("archive/{}/{file}", name::file_name(name.as_str())));
        pruned.upto = end;
        report.archived += messages.len() as u64;
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

/// Writes `messages` as gzip-compressed JSON Lines at `path`, atomically.
fn write_archive(ws: &Workspace, path: &Path, messages: &[&Message]) -> Result<(), ChannelError> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    let mut lines = Vec::new();
    for message in messages {
        lines.extend(serde_json::to_vec(message).unwrap_or_default());
        lines.push(b'\n');
    }
    let compressed = encoder
        .write_all(&lines)
        .and_then(|()| encoder.finish())
        .map_err(|e| FsError::new("compress", path, e))?;
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
        let path = ws.dir().join(archive);
        let bytes = fs::read(&path)?;
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
