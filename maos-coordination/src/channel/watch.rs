//! Waiting for new messages: `notify` wake-ups with a polling fallback (invariant C3).
//!
//! A notify event is only a wake-up; the directory listing is the truth. The watcher watches
//! two directories, non-recursively: the channel folder (a new segment folder appears there)
//! and the segment folder where the next message will land. It re-reads the channel on every
//! event, on notify errors (such as an inotify queue overflow), and on a slow timer in case an
//! event was missed. Where a watcher cannot be started, or notify is turned off, it polls.

use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant};

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};

use super::{Batch, Channel, ChannelError, segment_of};
use crate::fs;

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
pub struct Watcher {
    channel: Channel,
    cursor: u64,
    options: WatchOptions,
    wake: Option<(RecommendedWatcher, Receiver<()>)>,
    watched_segment: Option<PathBuf>,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher")
            .field("channel", &self.channel.name)
            .field("cursor", &self.cursor)
            .field("wake_source", &self.wake_source())
            .finish()
    }
}

impl Watcher {
    pub(super) fn new(
        channel: Channel,
        after: u64,
        options: WatchOptions,
    ) -> Result<Self, ChannelError> {
        // Watching a channel that has no message yet is fine: its folder is created so that
        // it can be watched.
        fs::create_dir_all(channel.dir())?;
        let wake = if options.use_notify {
            start_notify(&channel)
        } else {
            None
        };
        Ok(Self {
            channel,
            cursor: after,
            options,
            wake,
            watched_segment: None,
        })
    }

    /// The position reached: every message with `seq <= cursor()` was handed out.
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// How this watcher is currently woken.
    pub fn wake_source(&self) -> WakeSource {
        if self.wake.is_some() {
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
            let batch = self.channel.read_after(self.cursor, None)?;
            if !batch.is_empty() {
                self.cursor = batch.cursor;
                return Ok(Some(batch));
            }
            let mut wait = match self.wake {
                Some(_) => self.options.rescan_interval,
                None => self.options.poll_interval,
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

    /// Blocks up to `wait` for a wake-up (or just sleeps when polling).
    fn sleep(&mut self, wait: Duration) {
        let Some((_, events)) = &self.wake else {
            std::thread::sleep(wait);
            return;
        };
        match events.recv_timeout(wait) {
            Ok(()) => while events.try_recv().is_ok() {},
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                // The notify thread is gone: carry on by polling.
                self.wake = None;
            }
        }
    }

    /// Keeps a watch on the segment folder where message `cursor + 1` will land. When the
    /// folder does not exist yet, its creation shows up as an event on the channel folder.
    fn watch_next_segment(&mut self) {
        let Some((watcher, _)) = &mut self.wake else {
            return;
        };
        let segment = self.channel.segment_dir(segment_of(self.cursor + 1));
        if self.watched_segment.as_ref() == Some(&segment) {
            return;
        }
        if watcher.watch(&segment, RecursiveMode::NonRecursive).is_ok()
            && let Some(old) = self.watched_segment.replace(segment)
        {
            let _ = watcher.unwatch(&old);
        }
    }
}

/// Starts a notify watcher on the channel folder; `None` when that is impossible.
fn start_notify(channel: &Channel) -> Option<(RecommendedWatcher, Receiver<()>)> {
    let (tx, rx): (SyncSender<()>, Receiver<()>) = mpsc::sync_channel(1);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Reads (ours included) are not news; everything else, errors too, is a wake-up.
        if !matches!(event, Ok(ref e) if matches!(e.kind, EventKind::Access(_))) {
            let _ = tx.try_send(());
        }
    })
    .ok()?;
    watcher
        .watch(channel.dir(), RecursiveMode::NonRecursive)
        .ok()?;
    Some((watcher, rx))
}
