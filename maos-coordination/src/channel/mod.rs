//! Channels: ordered message logs kept as one JSON file per message.
//!
//! A channel lives in `.maos/channels/<name>/` (broadcast topics in
//! `.maos/channels/broadcast/<topic>/`). Messages are files named by their sequence number —
//! `0000000042.json`, the time it was sent inside — in segment folders of [`SEGMENT_LEN`]
//! messages (`000000/`, `000001/`, …), so `ls` shows them in channel order and no folder
//! grows without bound.
//!
//! **Ordering (C1, C2).** A sender writes the whole message to `.maos/tmp/` and publishes it
//! while holding a kernel lock (`flock`) on the channel's `.seq` file, which records the last
//! sequence number handed out. Under that lock it takes `seq = last + 1`, writes it back, and
//! publishes the message with a no-clobber rename to the name of its number: should the
//! counter ever be behind (rewound by hand, a write lost in a crash), the publish fails and
//! the sender moves past the newest message instead of reusing a number. After a reboot the
//! counter resumes above a reserve kept on disk (see [`crate::fs::FileLock::next_counter`]).
//! So every sequence number is used at most once, and message
//! `n + 1` can only become visible after message `n` is visible (or its sender died, leaving a
//! gap that stays a gap). A reader that has passed `n` never sees a message sort before it:
//! every reader sees one total order, whatever the writers' clocks say. The kernel releases the
//! lock when a sender dies, so a killed sender never blocks the channel. A directory listing is
//! not an atomic snapshot, so a reader that sees a gap lists once more, holding the `.seq`
//! lock, before it accepts it.
//!
//! **Durability (W4).** Messages are not flushed to disk unless the workspace's
//! `fsync.messages` setting is on.

mod ack;
mod archive;
mod cursor;
#[cfg(feature = "etcd")]
mod etcd;
mod inbox;
mod message;
mod recipients;
mod search;
mod watch;

use std::path::{Path, PathBuf};

use jiff::Timestamp;

pub use ack::{
    Ack, Delivery, Expected, Overdue, acknowledge, announce_overdue, broken_files, deliveries,
    expected, overdue, unacked,
};
pub(crate) use archive::copy_archives;
pub use archive::{IfUnread, PruneReport, Pruned, Retention, prune, read_archived};
pub use cursor::Cursor;
pub use inbox::{Inbox, Unread};
pub use message::{AckRequest, Draft, Message, Recipients};
pub use recipients::Known;
pub use search::{Found, Query, search};
pub use watch::{ChannelsWatch, Subscription, WakeSource, WatchOptions, Watcher};

use crate::atomic::{self, Durability, PublishError};
use crate::error::ErrorKind;
use crate::fs::{self, FileLock, FsError};
use crate::journal::{Effect, Event, Pending};
use crate::name::{self, NameError, NameKind};
use crate::record::{self, RecordError};
#[cfg(feature = "etcd")]
use crate::store::Store;
use crate::workspace::Workspace;

/// How many messages one segment folder holds.
pub const SEGMENT_LEN: u64 = 1000;
/// The namespace under which broadcast topics live.
pub const BROADCAST: &str = "broadcast";
/// The topic that receives a notice of every broadcast.
pub const ALL_TOPIC: &str = "all";
/// The largest encoded message accepted, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;
pub(super) const SEQ_FILE: &str = ".seq";

/// A channel operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// A channel, topic, agent or role name was refused.
    #[error(transparent)]
    Name(#[from] NameError),
    /// The message is larger than [`MAX_MESSAGE_BYTES`].
    #[error("message of {size} bytes is larger than the limit of {MAX_MESSAGE_BYTES} bytes")]
    TooLarge {
        /// The encoded size.
        size: usize,
    },
    /// A file could not be read or written.
    #[error(transparent)]
    Io(#[from] FsError),
    /// The store (etcd) could not be reached or refused.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// A record (cursor) is broken.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The agent registry could not be read.
    #[error(transparent)]
    Agents(Box<crate::agents::AgentError>),
    /// The tasks could not be read.
    #[error(transparent)]
    Tasks(Box<crate::task::TaskError>),
    /// The message asked for is not in the channel.
    #[error("there is no message #{seq} on `{channel}`")]
    NoSuchMessage {
        /// The channel.
        channel: String,
        /// The sequence number.
        seq: u64,
    },
    /// A message addressed to agents or roles no one knows (it would never be read).
    #[error(
        "{what}; known agents: {agents}; known roles: {roles} (--allow-unknown sends it anyway, for an agent that will join later)"
    )]
    UnknownRecipient {
        /// What is unknown: "no agent `bob` has joined or is named in a task".
        what: String,
        /// The known agents, comma-separated (`none`).
        agents: String,
        /// The roles some agent holds, comma-separated (`none`).
        roles: String,
    },
}

impl ChannelError {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ChannelError::Name(e) => e.kind(),
            ChannelError::TooLarge { .. } => ErrorKind::InvalidInput,
            ChannelError::Io(e) => e.kind(),
            ChannelError::Store(e) => e.kind(),
            ChannelError::Record(e) => e.kind(),
            ChannelError::Agents(e) => e.kind(),
            ChannelError::Tasks(e) => e.kind(),
            ChannelError::NoSuchMessage { .. } | ChannelError::UnknownRecipient { .. } => {
                ErrorKind::NotFound
            }
        }
    }
}

impl From<crate::agents::AgentError> for ChannelError {
    fn from(e: crate::agents::AgentError) -> Self {
        ChannelError::Agents(Box::new(e))
    }
}

impl From<crate::task::TaskError> for ChannelError {
    fn from(e: crate::task::TaskError) -> Self {
        ChannelError::Tasks(Box::new(e))
    }
}

/// A validated channel name: `<name>` or `broadcast/<topic>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelName(String);

impl ChannelName {
    /// Parses a channel name as given by a user: a plain name, or `broadcast/<topic>`.
    pub fn new(name: &str) -> Result<Self, NameError> {
        match name.split_once('/') {
            Some((BROADCAST, topic)) => Self::topic(topic),
            _ if name == BROADCAST => Err(NameError {
                kind: NameKind::Channel,
                name: name.to_owned(),
                reason: format!("`{BROADCAST}` holds topics; use {BROADCAST}/<topic>"),
            }),
            _ => {
                name::validate(NameKind::Channel, name)?;
                Ok(Self(name.to_owned()))
            }
        }
    }

    /// The channel of a broadcast topic, `broadcast/<topic>`.
    pub fn topic(topic: &str) -> Result<Self, NameError> {
        name::validate(NameKind::Topic, topic)?;
        Ok(Self(format!("{BROADCAST}/{topic}")))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Where the channel lives, relative to `channels/`: each segment's
    /// [`name::file_name`], so `General` and `general` are two directories everywhere.
    pub fn rel_path(&self) -> PathBuf {
        self.0.split('/').map(name::file_name).collect()
    }

    /// The topic, when this is a broadcast topic channel.
    pub fn as_topic(&self) -> Option<&str> {
        self.0.strip_prefix(BROADCAST)?.strip_prefix('/')
    }
}

impl std::fmt::Display for ChannelName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Messages read from a channel, in channel order.
#[derive(Debug, Default)]
pub struct Batch {
    /// The messages, `seq` strictly increasing.
    pub messages: Vec<Message>,
    /// Message files that could not be read or decoded, each naming its file. They still
    /// count as passed: the cursor moves beyond them.
    pub skipped: Vec<RecordError>,
    /// The position after this batch: pass it as `after` to read what follows.
    pub cursor: u64,
    /// Set when the reader's position was behind what has been pruned: those messages are
    /// in the archives, and the batch goes on from the pruned point.
    pub pruned: Option<Pruned>,
}

impl Batch {
    /// True when nothing at all was read (neither messages nor broken files) and nothing was
    /// found pruned past the position.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty() && self.skipped.is_empty() && self.pruned.is_none()
    }
}

/// A handle on one channel of a workspace. Cheap to create; touches no file until used.
#[derive(Debug, Clone)]
pub struct Channel {
    name: ChannelName,
    dir: PathBuf,
    durability: Durability,
    /// The workspace: its staging folder, cursors, kernel-lock wait and retention rule.
    ws: Workspace,
}

impl Channel {
    /// The channel `name` of workspace `ws`.
    pub fn open(ws: &Workspace, name: ChannelName) -> Self {
        Self {
            dir: ws.channels_dir().join(name.rel_path()),
            durability: Durability::from_sync(ws.config().fsync.messages),
            name,
            ws: ws.clone(),
        }
    }

    /// The channel's name.
    pub fn name(&self) -> &ChannelName {
        &self.name
    }

    /// The channel's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether writes through this handle are flushed to disk (invariant W4).
    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// Overrides the workspace's durability setting for this handle.
    pub fn with_durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Appends a message from `sender`; returns it with its `seq`, `id` and `timestamp`.
    /// When this returns, the message is visible to every reader.
    pub fn send(&self, sender: &str, draft: Draft) -> Result<Message, ChannelError> {
        let mut message = draft.into_message(&self.name, sender)?;
        if let Some(parent) = message.reply_to {
            // A reply joins its parent's thread, or starts one at the parent.
            let parent = self.get(parent)?;
            message.thread = Some(parent.thread.unwrap_or(parent.seq));
        }
        #[cfg(feature = "etcd")]
        if let Store::Etcd(store) = self.ws.store() {
            etcd::send(&self.ws, store, &self.name, &mut message)?;
            crate::journal::settle_etcd(&self.ws);
            self.apply_retention(message.seq);
            tracing::debug!(channel = %self.name, seq = message.seq, sender, "message sent");
            return Ok(message);
        }
        let sync = self.durability == Durability::Fsync;
        let lock = FileLock::acquire(&self.seq_path(), self.ws.kernel_lock_wait())?;
        loop {
            // Claim the number before publishing: if we die in between, the number becomes a
            // gap, never a duplicate.
            message.seq = lock.next_counter(|| self.max_listed_seq(), sync)?;
            let encoded = record::encode(&message);
            if encoded.len() > MAX_MESSAGE_BYTES {
                return Err(ChannelError::TooLarge {
                    size: encoded.len(),
                });
            }
            let segment_dir = self.segment_dir(segment_of(message.seq));
            if message.seq % SEGMENT_LEN == 1 || !segment_dir.is_dir() {
                fs::create_dir_all(&segment_dir)?;
            }
            let staged = atomic::stage(&self.ws.tmp_dir(), &encoded, self.durability)?;
            let path = segment_dir.join(file_name(message.seq));
            let effect = Effect::has(&self.ws, &path, "/id", message.id.to_string());
            let pending = Pending::note(&self.ws, &lock, sent(&message), effect);
            // The file name is the number alone, so publishing claims it exclusively.
            match staged.publish_new(&path) {
                Ok(()) => {
                    pending.done();
                    drop(lock);
                    tracing::debug!(channel = %self.name, seq = message.seq, sender, "message sent");
                    self.apply_retention(message.seq);
                    return Ok(message);
                }
                // The counter is behind the messages (rewound by hand, or restored from an
                // old copy): never reuse a number, move past every message there is.
                Err(PublishError::AlreadyExists { .. }) => {
                    let newest = self.max_listed_seq()?.max(message.seq);
                    lock.write_counter(newest, sync)?;
                }
                Err(PublishError::Io(e)) => return Err(e.into()),
            }
        }
    }

    /// After message `seq` was sent: when it is the first of a new segment, the workspace's
    /// retention rule (`message_retention`) may prune old segments. Housekeeping: the
    /// message is sent whatever this finds, and the next segment tries again.
    fn apply_retention(&self, seq: u64) {
        if seq % SEGMENT_LEN == 1
            && let Some(rule) = self.ws.config().message_retention
        {
            let _ = archive::prune(
                &self.ws,
                &self.name,
                rule,
                Timestamp::now(),
                archive::IfUnread::Keep,
            );
        }
    }

    /// Message `seq`: [`ChannelError::NoSuchMessage`] when it is not (or no longer) here.
    pub fn get(&self, seq: u64) -> Result<Message, ChannelError> {
        #[cfg(feature = "etcd")]
        if let Store::Etcd(store) = self.ws.store() {
            return etcd::get(store, &self.name, seq)?.ok_or_else(|| ChannelError::NoSuchMessage {
                channel: self.name.as_str().to_owned(),
                seq,
            });
        }
        let path = self.segment_dir(segment_of(seq)).join(file_name(seq));
        if !path.is_file() {
            return Err(ChannelError::NoSuchMessage {
                channel: self.name.as_str().to_owned(),
                seq,
            });
        }
        Ok(self.read_message(seq, &path)?)
    }

    /// The thread message `seq` belongs to, in order: its first message and every reply
    /// (`seq` may be any of them).
    pub fn thread(&self, seq: u64) -> Result<Vec<Message>, ChannelError> {
        let root = self.get(seq)?;
        let root_seq = root.thread.unwrap_or(root.seq);
        let root = if root_seq == root.seq {
            root
        } else {
            self.get(root_seq)?
        };
        let mut thread = vec![root];
        let replies = self.read_after(root_seq, None)?;
        thread.extend(
            replies
                .messages
                .into_iter()
                .filter(|m| m.thread == Some(root_seq)),
        );
        Ok(thread)
    }

    /// Reads the messages with `seq > after`, in order, at most `limit` of them.
    pub fn read_after(&self, after: u64, limit: Option<usize>) -> Result<Batch, ChannelError> {
        #[cfg(feature = "etcd")]
        if let Store::Etcd(store) = self.ws.store() {
            return etcd::read_after(&self.ws, store, &self.name, after, limit);
        }
        let mut pruned = self.pruned()?;
        let mut from = after.max(pruned.as_ref().map_or(0, |p| p.upto));
        let mut entries = self.list_after(from)?;
        if has_gap(from, &entries) {
            // A listing is not an atomic snapshot: messages published during it may be missed
            // while later ones are seen. Senders publish (and prunes remove) under the `.seq`
            // lock, so once we hold it every number handed out is published or its sender is
            // dead: a gap that persists in a listing made under the lock is a real one.
            let _quiet = FileLock::acquire(&self.seq_path(), self.ws.kernel_lock_wait())?;
            pruned = self.pruned()?;
            from = after.max(pruned.as_ref().map_or(0, |p| p.upto));
            entries = self.list_after(from)?;
        }
        let mut batch = self.read_entries(from, entries, limit);
        // A file listed, then pruned before it was read: the archive has it.
        if batch.skipped.iter().any(is_not_found) {
            pruned = self.pruned()?;
            let upto = pruned.as_ref().map_or(0, |p| p.upto);
            batch
                .skipped
                .retain(|e| !is_not_found(e) || seq_of(e).is_none_or(|seq| seq > upto));
            batch.messages.retain(|m| m.seq > upto);
            batch.cursor = batch.cursor.max(upto);
        }
        batch.pruned = pruned.filter(|p| after < p.upto);
        Ok(batch)
    }

    /// The messages of one segment folder, in order.
    fn read_segment(&self, segment: u64) -> Result<Batch, ChannelError> {
        let dir = self.segment_dir(segment);
        let mut entries: Vec<(u64, PathBuf)> = fs::list_names(&dir)?
            .into_iter()
            .filter_map(|name| Some((parse_file_name(&name)?, dir.join(name))))
            .collect();
        entries.sort();
        Ok(self.read_entries(segment * SEGMENT_LEN, entries, None))
    }

    /// Reads listed message files `(seq, path)`, sorted by seq, that follow `after`.
    fn read_entries(
        &self,
        after: u64,
        entries: Vec<(u64, PathBuf)>,
        limit: Option<usize>,
    ) -> Batch {
        let mut batch = Batch {
            cursor: after,
            ..Batch::default()
        };
        for (seq, path) in entries.into_iter().take(limit.unwrap_or(usize::MAX)) {
            if seq <= batch.cursor {
                batch.skipped.push(RecordError::corrupt(
                    &path,
                    "message",
                    format!("a second file for seq {seq}"),
                ));
                continue;
            }
            batch.cursor = seq;
            match self.read_message(seq, &path) {
                Ok(message) => batch.messages.push(message),
                Err(e) => batch.skipped.push(e),
            }
        }
        batch
    }

    /// The highest sequence number handed out so far (0 for an empty channel).
    pub fn last_seq(&self) -> Result<u64, ChannelError> {
        #[cfg(feature = "etcd")]
        if let Store::Etcd(store) = self.ws.store() {
            return etcd::last_seq(store, &self.name);
        }
        let counter = fs::read_if_exists(&self.seq_path())?.and_then(|b| fs::counter_value(&b));
        self.counter_or_listed(counter)
    }

    /// The position of the channel's end: every message up to it is published, none after it
    /// is. Pass it as `after` to follow only what comes next. Read under the send lock, so a
    /// number a sender has taken but not yet published is never counted as passed.
    pub fn end(&self) -> Result<u64, ChannelError> {
        // On etcd a number and its message are written in one transaction: the counter is
        // the end.
        #[cfg(feature = "etcd")]
        if let Store::Etcd(store) = self.ws.store() {
            return etcd::last_seq(store, &self.name);
        }
        if !self.dir.is_dir() {
            return Ok(0);
        }
        let lock = FileLock::acquire(&self.seq_path(), self.ws.kernel_lock_wait())?;
        self.counter_or_listed(lock.read_counter()?)
    }

    /// The `.seq` counter's value, or — missing or broken — the newest message file's seq.
    fn counter_or_listed(&self, counter: Option<u64>) -> Result<u64, ChannelError> {
        match counter {
            Some(seq) => Ok(seq),
            None => Ok(self.max_listed_seq()?),
        }
    }

    /// Counts the message files of the channel.
    pub fn count(&self) -> Result<u64, ChannelError> {
        #[cfg(feature = "etcd")]
        if let Store::Etcd(store) = self.ws.store() {
            return etcd::count(store, &self.name);
        }
        Ok(self.list_after(0)?.len() as u64)
    }

    /// The saved position of `reader` in this channel (0 when it never saved one).
    pub fn cursor(&self, reader: &str) -> Result<Cursor, ChannelError> {
        Cursor::load(&self.ws, "cursors", &self.name, reader)
    }

    /// Watches the channel for messages with `seq > after`.
    pub fn watch(&self, after: u64, options: WatchOptions) -> Result<Watcher, ChannelError> {
        Watcher::new(self.clone(), after, options)
    }

    /// Follows the channel as `reader`, from its saved cursor; see [`Subscription`].
    pub fn subscribe(
        &self,
        reader: &str,
        options: WatchOptions,
    ) -> Result<Subscription, ChannelError> {
        let cursor = self.cursor(reader)?;
        Ok(Subscription::new(self.watch(cursor.seq, options)?, cursor))
    }

    fn seq_path(&self) -> PathBuf {
        self.dir.join(SEQ_FILE)
    }

    /// Where message `seq` is kept, relative to `.maos/` (in either store).
    pub(crate) fn message_rel(&self, seq: u64) -> PathBuf {
        Path::new("channels")
            .join(self.name.rel_path())
            .join(format!("{:06}", segment_of(seq)))
            .join(file_name(seq))
    }

    /// Sets the channel's counter to `last` (a copy of a channel from another store: the
    /// next message sent is `last + 1`).
    pub(crate) fn set_last_seq(&self, last: u64) -> Result<(), ChannelError> {
        #[cfg(feature = "etcd")]
        if let Store::Etcd(store) = self.ws.store() {
            return etcd::set_last_seq(store, &self.name, last);
        }
        fs::create_dir_all(&self.dir)?;
        let lock = FileLock::acquire(&self.seq_path(), self.ws.kernel_lock_wait())?;
        lock.write_counter(last, true)?;
        Ok(())
    }

    /// Rewrites the channel's `.seq` counter from its message files, under the send lock
    /// (what `maos doctor --fix` does with a broken one). Returns the value written.
    pub fn rebuild_seq(&self) -> Result<u64, ChannelError> {
        let lock = FileLock::acquire(&self.seq_path(), self.ws.kernel_lock_wait())?;
        let newest = self.max_listed_seq()?;
        lock.write_counter(newest, self.durability == Durability::Fsync)?;
        Ok(newest)
    }

    fn max_listed_seq(&self) -> Result<u64, FsError> {
        // A damaged `.pruned` is reported by every reader; here it counts as nothing pruned.
        let pruned = self.pruned().ok().flatten().map_or(0, |p| p.upto);
        let segments = self.segments()?;
        for segment in segments.iter().rev() {
            let names = fs::list_names(&self.segment_dir(*segment))?;
            if let Some(max) = names.iter().filter_map(|n| parse_file_name(n)).max() {
                return Ok(max.max(pruned));
            }
        }
        Ok(pruned)
    }

    fn segment_dir(&self, segment: u64) -> PathBuf {
        self.dir.join(format!("{segment:06}"))
    }

    /// The segment numbers present, ascending.
    fn segments(&self) -> Result<Vec<u64>, FsError> {
        let mut segments: Vec<u64> = fs::list_names(&self.dir)?
            .iter()
            .filter(|n| n.len() == 6 && n.bytes().all(|b| b.is_ascii_digit()))
            .filter_map(|n| n.parse().ok())
            .collect();
        segments.sort_unstable();
        Ok(segments)
    }

    /// The segment numbers from `first` on, ascending. Segments are created in order, so
    /// they are found by probing `first`, `first + 1`, … without listing the channel folder;
    /// only when `first` does not exist is the folder listed.
    fn segments_from(&self, first: u64) -> Result<Vec<u64>, FsError> {
        if !self.segment_dir(first).is_dir() {
            return Ok(self
                .segments()?
                .into_iter()
                .filter(|s| *s >= first)
                .collect());
        }
        let mut segments = vec![first];
        while self.segment_dir(first + segments.len() as u64).is_dir() {
            segments.push(first + segments.len() as u64);
        }
        Ok(segments)
    }

    /// Message files with `seq > after`, sorted by seq.
    fn list_after(&self, after: u64) -> Result<Vec<(u64, PathBuf)>, FsError> {
        let mut entries = Vec::new();
        for segment in self.segments_from(segment_of(after + 1))? {
            let dir = self.segment_dir(segment);
            for name in fs::list_names(&dir)? {
                if let Some(seq) = parse_file_name(&name).filter(|seq| *seq > after) {
                    entries.push((seq, dir.join(name)));
                }
            }
        }
        entries.sort();
        Ok(entries)
    }

    fn read_message(&self, seq: u64, path: &Path) -> Result<Message, RecordError> {
        decode_message(seq, path, &fs::read(path)?)
    }
}

/// Message `seq` from the bytes of its file at `path`: its seq must be the one its name says.
fn decode_message(seq: u64, path: &Path, bytes: &[u8]) -> Result<Message, RecordError> {
    let message: Message = record::decode(path, "message", bytes)?;
    if message.seq != seq {
        return Err(RecordError::corrupt(
            path,
            "message",
            format!("its seq is {} but its file name says {seq}", message.seq),
        ));
    }
    Ok(message)
}

/// Sends `draft` on the channel of `topic` and a copy, as a notice, on `broadcast/all`, where
/// an agent can follow every broadcast at once. Returns the topic message and the notice.
pub fn broadcast(
    ws: &Workspace,
    topic: &str,
    sender: &str,
    draft: Draft,
) -> Result<(Message, Message), ChannelError> {
    if topic == ALL_TOPIC {
        return Err(NameError {
            kind: NameKind::Topic,
            name: topic.to_owned(),
            reason: format!("`{ALL_TOPIC}` is reserved for the notices of every broadcast"),
        }
        .into());
    }
    let channel = Channel::open(ws, ChannelName::topic(topic)?);
    let notice_draft = draft.clone();
    let message = channel.send(sender, draft)?;
    let notice = Channel::open(ws, ChannelName::topic(ALL_TOPIC)?)
        .send(sender, notice_draft.notice_of(&message))?;
    Ok((message, notice))
}

/// The sender of the notices MAOS itself posts (an overdue acknowledgement, a vote's outcome).
pub const SYSTEM_SENDER: &str = "maos";

/// Sends `draft` on `channel` as the CLI and the MCP server do: refused when it is addressed
/// to an agent nobody knows or a role nobody holds (see [`Known::check`]) unless
/// `allow_unknown` — such a message waits in the channel for the agent to join and read its
/// inbox; a message asking for acknowledgements then records who owes one (a sender killed
/// in between leaves a message whose recipients are judged when it is shown).
pub fn post(
    ws: &Workspace,
    channel: ChannelName,
    sender: &str,
    draft: Draft,
    allow_unknown: bool,
) -> Result<Message, ChannelError> {
    // The registry is read only when a recipient is named or acknowledgements are asked:
    // a message to everyone costs no more than the send.
    let mut known = None;
    if !allow_unknown && !draft.recipients().is_everyone() {
        let found = Known::of(ws)?;
        found.check(ws, draft.recipients())?;
        known = Some(found);
    }
    let message = Channel::open(ws, channel).send(sender, draft)?;
    if message.ack.is_some() {
        let known = match known {
            Some(known) => known,
            None => Known::of(ws)?,
        };
        ack::expect(ws, &known, &message)?;
    }
    Ok(message)
}

/// Subscribes `reader` to a broadcast topic (`all` follows every broadcast).
pub fn subscribe_topic(
    ws: &Workspace,
    topic: &str,
    reader: &str,
    options: WatchOptions,
) -> Result<Subscription, ChannelError> {
    Channel::open(ws, ChannelName::topic(topic)?).subscribe(reader, options)
}

/// One line of `maos msg channels`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ChannelSummary {
    /// The channel name.
    pub name: String,
    /// How many message files it holds.
    pub messages: u64,
    /// The last sequence number handed out.
    pub last_seq: u64,
    /// When a message was last sent (the `.seq` file's modification time).
    pub last_activity: Option<Timestamp>,
}

/// Every channel of the workspace, sorted by name.
pub fn list_channels(ws: &Workspace) -> Result<Vec<ChannelSummary>, ChannelError> {
    channel_names(ws)?
        .into_iter()
        .map(|name| {
            let channel = Channel::open(ws, name);
            let last_activity = std::fs::metadata(channel.seq_path())
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| Timestamp::try_from(t).ok());
            Ok(ChannelSummary {
                messages: channel.count()?,
                last_seq: channel.last_seq()?,
                last_activity,
                name: channel.name.0,
            })
        })
        .collect()
}

/// The names of every channel of the workspace, sorted (without counting their messages).
pub fn channel_names(ws: &Workspace) -> Result<Vec<ChannelName>, ChannelError> {
    #[cfg(feature = "etcd")]
    if let Store::Etcd(store) = ws.store() {
        return etcd::names(store);
    }
    let root = ws.channels_dir();
    let mut names = Vec::new();
    for file in fs::list_names(&root)? {
        if file == BROADCAST {
            for topic in fs::list_names(&root.join(BROADCAST))? {
                if let Some(Ok(name)) = name::from_file_name(&topic).map(|t| ChannelName::topic(&t))
                {
                    names.push(name);
                }
            }
        } else if let Some(Ok(name)) = name::from_file_name(&file).map(|n| ChannelName::new(&n)) {
            names.push(name);
        }
    }
    names.sort();
    names.retain(|n| root.join(n.rel_path()).is_dir());
    Ok(names)
}

/// The `.seq` counter file of every channel (broadcast topics included), sorted: the kernel
/// locks a snapshot takes, and where journal notes of sends are kept.
pub fn counter_files(ws: &Workspace) -> Result<Vec<PathBuf>, FsError> {
    let root = ws.channels_dir();
    let mut dirs = Vec::new();
    for file in fs::list_names(&root)? {
        if file == BROADCAST {
            let topics = root.join(BROADCAST);
            dirs.extend(fs::list_names(&topics)?.into_iter().map(|t| topics.join(t)));
        } else {
            dirs.push(root.join(file));
        }
    }
    let mut seqs: Vec<PathBuf> = dirs
        .into_iter()
        .map(|d| d.join(".seq"))
        .filter(|p| p.is_file())
        .collect();
    seqs.sort();
    Ok(seqs)
}

/// Whether a message file was missing when read.
fn is_not_found(e: &RecordError) -> bool {
    matches!(e, RecordError::Io(io) if io.is_not_found())
}

/// The seq of the missing message file an error names, from its file name.
fn seq_of(e: &RecordError) -> Option<u64> {
    match e {
        RecordError::Io(io) => parse_file_name(io.path.file_name()?.to_str()?),
        RecordError::Corrupt { .. } => None,
    }
}

fn segment_of(seq: u64) -> u64 {
    seq.saturating_sub(1) / SEGMENT_LEN
}

fn has_gap(after: u64, entries: &[(u64, PathBuf)]) -> bool {
    entries
        .iter()
        .enumerate()
        .any(|(i, (seq, _))| *seq != after + 1 + i as u64)
}

/// `0000000042.json` for seq 42.
fn file_name(seq: u64) -> String {
    format!("{seq:010}.json")
}

/// The seq of a message file name (`0000000042.json`, or the older
/// `0000000042-20261124T175020.123Z.json`), `None` for anything else.
fn parse_file_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".json")?;
    let seq = stem.split_once('-').map_or(stem, |(seq, _)| seq);
    if seq.len() < 10 || !seq.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    seq.parse().ok()
}

/// The journal entry of a message sent.
fn sent(message: &Message) -> Event {
    Event::new("message.sent")
        .agent(message.sender.clone())
        .subject(format!("{}#{}", message.channel, message.seq))
        .data(serde_json::json!({
            "channel": message.channel,
            "seq": message.seq,
            "kind": message.kind,
            "recipients": message.recipients,
            "reply_to": message.reply_to,
            "ack": message.ack.is_some(),
        }))
}

#[cfg(test)]
mod tests;
