//! Waiting for new messages: `notify` wake-ups with a polling fallback (invariant C3).
//!
//! The watcher watches two directories, non-recursively: the channel folder (a new segment
//! folder appears there) and the segment folder where the next message will land. When the
//! events name message files that continue exactly from the cursor, it reads those files and
//! nothing else — no listing on the hot path. Otherwise the directory listing is the truth:
//! it re-lists on any other event, on notify errors (such as an inotify queue overflow), and
//! on a slow timer in case an event was missed. Where a watcher cannot be started, on network
//! and FUSE file systems (where inotify misses other hosts' changes), or when notify is
//! turned off, it polls.
//!
//! [`ChannelsWatch`] watches every channel of a workspace at once (an inbox, the dashboard).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{Batch, Channel, ChannelError, SEQ_FILE, has_gap, parse_file_name, segment_of};
use crate::fs;
use crate::wake::{DirWatch, Woken};

/// How a [`Watcher`] learns of new messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WakeSource {
    /// Kernel file-system events (inotify), backed by a slow re-read timer.
    Notify,
    /// Re-reading the channel on a short timer.
    Poll,
}

/// Tuning of a [`Watcher`].
#[derive(Debug, Clone, Copy)]
pub struct WatchOptions {
    /// Try kernel notifications first (falls back to polling when they cannot start).
    pub use_notify: bool,
    /// How often to re-read the channel when polling.
    pub poll_interval: Duration,
    /// How often to re-read the channel anyway when notify is working, in case an event was
    /// lost.
    pub rescan_interval: Duration,
}

impl Default for WatchOptions {
    fn default() -> Self {
        Self {
            use_notify: true,
            poll_interval: Duration::from_millis(50),
            rescan_interval: Duration::from_secs(1),
        }
    }
}

/// Follows a channel from a position, handing out each new message once, in order.
#[derive(Debug)]
pub struct Watcher {
    channel: Channel,
    cursor: u64,
    options: WatchOptions,
    wake: Option<DirWatch>,
    watched_segment: Option<PathBuf>,
    must_list: bool,
    /// On the etcd store: a watch on the channel's keys (instead of `wake`).
    #[cfg(feature = "etcd")]
    etcd_wake: Option<crate::store::etcd::EtcdWatch>,
}

/// What a wake-up calls for.
enum ToRead {
    Nothing,
    Entries(Vec<(u64, PathBuf)>),
    Listing,
}

/// A sender rewrites `.seq` just before it publishes: that is not news yet.
fn is_seq_file(path: &Path) -> bool {
    path.ends_with(SEQ_FILE)
}

impl Watcher {
    pub(super) fn new(
        channel: Channel,
        after: u64,
        options: WatchOptions,
    ) -> Result<Self, ChannelError> {
        #[cfg(feature = "etcd")]
        if let crate::store::Store::Etcd(store) = channel.ws.store() {
            // Started before the first read: a message sent after that read wakes it.
            let etcd_wake = match options.use_notify {
                true => Some(super::etcd::watch(store, &channel.name)?),
                false => None,
            };
            return Ok(Self {
                channel,
                cursor: after,
                options,
                wake: None,
                watched_segment: None,
                must_list: true,
                etcd_wake,
            });
        }
        // Watching a channel that has no message yet is fine: its folder is created so that
        // it can be watched.
        fs::create_dir_all(channel.dir())?;
        let wake = if options.use_notify {
            DirWatch::start(channel.dir(), is_seq_file)
        } else {
            None
        };
        Ok(Self {
            channel,
            cursor: after,
            options,
            wake,
            watched_segment: None,
            must_list: true,
            #[cfg(feature = "etcd")]
            etcd_wake: None,
        })
    }

    /// The position reached: every message with `seq <= cursor()` was handed out.
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// How this watcher is currently woken.
    pub fn wake_source(&self) -> WakeSource {
        if self.is_woken() {
            WakeSource::Notify
        } else {
            WakeSource::Poll
        }
    }

    /// Waits until messages past the cursor exist and returns them (the cursor moves past
    /// them), or returns `None` when `timeout` passes first. `None` timeout waits forever.
    pub fn next_batch(&mut self, timeout: Option<Duration>) -> Result<Option<Batch>, ChannelError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            self.watch_next_segment();
            let batch = match self.what_to_read() {
                ToRead::Nothing => Batch::default(),
                ToRead::Entries(entries) => self.channel.read_entries(self.cursor, entries, None),
                ToRead::Listing => self.channel.read_after(self.cursor, None)?,
            };
            if !batch.is_empty() {
                self.cursor = batch.cursor;
                return Ok(Some(batch));
            }
            let mut wait = match self.is_woken() {
                true => self.options.rescan_interval,
                false => self.options.poll_interval,
            };
            if let Some(deadline) = deadline {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(None);
                }
                wait = wait.min(left);
            }
            self.sleep(wait);
        }
    }

    /// Whether something wakes this watcher (else it polls).
    fn is_woken(&self) -> bool {
        #[cfg(feature = "etcd")]
        if self.etcd_wake.is_some() {
            return true;
        }
        self.wake.is_some()
    }

    /// Blocks up to `wait` for a wake-up (or just sleeps when polling).
    fn sleep(&mut self, wait: Duration) {
        #[cfg(feature = "etcd")]
        if let Some(etcd_wake) = &mut self.etcd_wake {
            // A broken watch: poll from now on (the reads still see everything).
            if etcd_wake.wait(wait).is_err() {
                self.etcd_wake = None;
            }
            return;
        }
        let Some(wake) = &self.wake else {
            std::thread::sleep(wait);
            return;
        };
        match wake.wait(wait) {
            Woken::Event => {}
            // The slow safety timer: list, in case an event was lost.
            Woken::Timeout => self.must_list = true,
            Woken::Closed => self.wake = None,
        }
    }

    /// Decides what to read after a wake-up: nothing when the events named only messages
    /// already read; just the announced files when they continue exactly from the cursor (so
    /// reading them alone misses nothing); otherwise a full listing.
    fn what_to_read(&mut self) -> ToRead {
        let Some(wake) = &self.wake else {
            return ToRead::Listing;
        };
        let announced = wake.take_announced();
        if std::mem::take(&mut self.must_list) || announced.must_list {
            return ToRead::Listing;
        }
        let mut entries = Vec::new();
        for path in announced.paths {
            let seq = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(parse_file_name)
                .filter(|_| path.parent().and_then(|seg| seg.parent()) == Some(self.channel.dir()));
            match seq {
                Some(seq) if seq <= self.cursor => {}
                Some(seq) if path.is_file() => entries.push((seq, path)),
                // A new segment folder, a removed file, a hand edit: the listing will tell.
                _ => return ToRead::Listing,
            }
        }
        entries.sort();
        entries.dedup_by_key(|(seq, _)| *seq);
        if entries.is_empty() {
            ToRead::Nothing
        } else if has_gap(self.cursor, &entries) {
            ToRead::Listing
        } else {
            ToRead::Entries(entries)
        }
    }

    /// Keeps a watch on the segment folder where message `cursor + 1` will land. When the
    /// folder does not exist yet, its creation shows up as an event on the channel folder.
    fn watch_next_segment(&mut self) {
        let Some(wake) = &mut self.wake else {
            return;
        };
        let segment = self.channel.segment_dir(segment_of(self.cursor + 1));
        if self.watched_segment.as_ref() == Some(&segment) {
            return;
        }
        if wake.add(&segment) {
            // Messages may have landed there before the watch began: they raise no event.
            self.must_list = true;
            if let Some(old) = self.watched_segment.replace(segment) {
                wake.remove(&old);
            }
        }
    }
}

/// A reader's durable subscription to a channel: it resumes at the reader's saved
/// [`Cursor`](super::Cursor), and a batch counts as handled — the cursor is saved past it —
/// when the next one is asked for (at-least-once delivery across restarts).
#[derive(Debug)]
pub struct Subscription {
    watcher: Watcher,
    cursor: super::Cursor,
}

impl Subscription {
    pub(super) fn new(watcher: Watcher, cursor: super::Cursor) -> Self {
        Self { watcher, cursor }
    }

    /// Saves the position reached so far, then waits for the next messages like
    /// [`Watcher::next_batch`].
    pub fn next_batch(&mut self, timeout: Option<Duration>) -> Result<Option<Batch>, ChannelError> {
        self.commit()?;
        self.watcher.next_batch(timeout)
    }

    /// Saves the position reached so far (every batch handed out counts as handled).
    pub fn commit(&mut self) -> Result<(), ChannelError> {
        if self.cursor.seq != self.watcher.cursor() {
            self.cursor.save(self.watcher.cursor())?;
        }
        Ok(())
    }
}

/// A watch on every channel folder of a workspace on files, woken once a send has published:
/// a sender bumps `.seq` holding its lock, then publishes, so the lock is waited for after a
/// `.seq` event. Without notify it naps a short poll interval.
#[derive(Debug)]
pub struct ChannelsWatch {
    ws: crate::workspace::Workspace,
    watch: Option<DirWatch>,
    watched: Vec<PathBuf>,
}

impl ChannelsWatch {
    /// Starts watching the channels' root (a new channel's folder appears there).
    pub fn start(ws: &crate::workspace::Workspace) -> Result<Self, ChannelError> {
        let root = ws.channels_dir();
        fs::create_dir_all(&root)?;
        Ok(Self {
            ws: ws.clone(),
            watch: DirWatch::start(&root, |_| false),
            watched: Vec::new(),
        })
    }

    /// Watches the folders of channels made since the last call. A folder seen for the first
    /// time may have had a send in flight before its watch began: that send is waited for.
    /// True when it began watching a channel (what was sent there is now published, but its
    /// sends may have made no event this watch saw).
    pub fn refresh(&mut self) -> Result<bool, ChannelError> {
        let Some(watch) = &mut self.watch else {
            return Ok(false);
        };
        let mut began = false;
        let root = self.ws.channels_dir();
        // `broadcast/` holds the topics' folders: it has no sends of its own.
        let broadcast = root.join(super::BROADCAST);
        if !self.watched.contains(&broadcast) && watch.add(&broadcast) {
            self.watched.push(broadcast);
        }
        for name in super::channel_names(&self.ws)? {
            let dir = root.join(name.rel_path());
            if !self.watched.contains(&dir) && watch.add(&dir) {
                settle(&self.ws, &dir);
                self.watched.push(dir);
                began = true;
            }
        }
        Ok(began)
    }

    /// Waits up to `timeout` for a change to a watched folder; a send it announces has
    /// published when this returns.
    pub fn wait(&mut self, timeout: Duration) -> Woken {
        let woken = crate::wake::nap(self.watch.as_ref(), timeout);
        let announced = self
            .watch
            .as_ref()
            .map(|w| w.take_announced().paths)
            .unwrap_or_default();
        for path in announced {
            if let Some(dir) = path.parent()
                && is_seq_file(&path)
            {
                settle(&self.ws, dir);
            }
        }
        woken
    }
}

/// Waits until no sender holds the `.seq` lock of the channel folder `dir`.
fn settle(ws: &crate::workspace::Workspace, dir: &Path) {
    let _settled = crate::fs::FileLock::acquire(&dir.join(SEQ_FILE), ws.kernel_lock_wait());
}
