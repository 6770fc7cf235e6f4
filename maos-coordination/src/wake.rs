//! Waking up when files change in a few directories, through `notify`.
//!
//! A [`DirWatch`] watches directories non-recursively and hands out two things: a wake-up
//! (blocking with a timeout) and the paths the events named since the last look. Events are
//! hints: reads are ignored, and errors or queue overflows only say "look again" (the caller
//! then lists the directory, which is the truth). Where a watcher cannot start, or the
//! directory is on a network or FUSE file system (where inotify misses other hosts' changes),
//! there is no `DirWatch` and callers poll.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};

/// Paths named by events, up to a bound; past it, or after an error, only "look again".
#[derive(Debug, Default)]
pub struct Announced {
    /// The paths, in event order.
    pub paths: Vec<PathBuf>,
    /// Some events were lost or not recorded: list the directories.
    pub must_list: bool,
}

const MAX_ANNOUNCED: usize = 4096;

/// What [`DirWatch::wait`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Woken {
    /// An event arrived.
    Event,
    /// The timeout passed.
    Timeout,
    /// The notify thread is gone: poll from now on.
    Closed,
}

/// Naps until `watch` sees an event or `timeout` passes. Without a working watch it sleeps
/// a short poll interval (at most `timeout`) and says [`Woken::Closed`].
pub fn nap(watch: Option<&DirWatch>, timeout: Duration) -> Woken {
    match watch.map(|w| w.wait(timeout)) {
        Some(Woken::Closed) | None => {
            std::thread::sleep(timeout.min(POLL_NAP));
            Woken::Closed
        }
        Some(woken) => woken,
    }
}

/// How long [`nap`] sleeps when there are no events to wait for.
const POLL_NAP: Duration = Duration::from_millis(20);

/// A running notify watcher.
pub struct DirWatch {
    watcher: RecommendedWatcher,
    signal: Receiver<()>,
    announced: Arc<Mutex<Announced>>,
}

impl std::fmt::Debug for DirWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirWatch").finish_non_exhaustive()
    }
}

impl DirWatch {
    /// Starts watching `dir`; `None` when notify cannot be used there. Events whose every
    /// path satisfies `ignore` are dropped (e.g. a counter file rewritten before the real news).
    pub fn start(dir: &Path, ignore: impl Fn(&Path) -> bool + Send + 'static) -> Option<Self> {
        if is_network_fs(dir) {
            return None;
        }
        let (tx, signal): (SyncSender<()>, Receiver<()>) = mpsc::sync_channel(1);
        let announced = Arc::new(Mutex::new(Announced::default()));
        let sink = Arc::clone(&announced);
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                match event {
                    // Reads, ours included, are not news.
                    Ok(e) if matches!(e.kind, EventKind::Access(_)) => return,
                    Ok(e) if !e.paths.is_empty() && e.paths.iter().all(|p| ignore(p)) => return,
                    Ok(e) if !e.need_rescan() => {
                        if let Ok(mut announced) = sink.lock() {
                            if announced.paths.len() + e.paths.len() > MAX_ANNOUNCED {
                                announced.paths.clear();
                                announced.must_list = true;
                            } else if !announced.must_list {
                                announced.paths.extend(e.paths);
                            }
                        }
                    }
                    // Errors and queue overflows: the listing will tell.
                    _ => {
                        if let Ok(mut announced) = sink.lock() {
                            announced.must_list = true;
                        }
                    }
                }
                let _ = tx.try_send(());
            })
            .ok()?;
        watcher.watch(dir, RecursiveMode::NonRecursive).ok()?;
        Some(Self {
            watcher,
            signal,
            announced,
        })
    }

    /// Also watches `dir`; false when that failed (e.g. it does not exist yet).
    pub fn add(&mut self, dir: &Path) -> bool {
        self.watcher.watch(dir, RecursiveMode::NonRecursive).is_ok()
    }

    /// Stops watching `dir`.
    pub fn remove(&mut self, dir: &Path) {
        let _ = self.watcher.unwatch(dir);
    }

    /// Blocks until an event arrives or `timeout` passes.
    pub fn wait(&self, timeout: Duration) -> Woken {
        match self.signal.recv_timeout(timeout) {
            Ok(()) => {
                while self.signal.try_recv().is_ok() {}
                Woken::Event
            }
            Err(RecvTimeoutError::Timeout) => Woken::Timeout,
            Err(RecvTimeoutError::Disconnected) => Woken::Closed,
        }
    }

    /// The paths announced since the last call.
    pub fn take_announced(&self) -> Announced {
        match self.announced.lock() {
            Ok(mut announced) => std::mem::take(&mut *announced),
            Err(_) => Announced {
                paths: Vec::new(),
                must_list: true,
            },
        }
    }
}

/// Whether `dir` is on a network or FUSE file system, where inotify does not see other
/// hosts' (or the FUSE server's) changes: there only polling is reliable.
#[cfg(target_os = "linux")]
fn is_network_fs(dir: &Path) -> bool {
    use rustix::fs::FsWord;
    const SMB: FsWord = 0x517b;
    const CIFS: FsWord = 0xff53_4d42;
    const SMB2: FsWord = 0xfe53_4d42;
    const FUSE: FsWord = 0x6573_5546;
    const V9FS: FsWord = 0x0102_1997;
    const CEPH: FsWord = 0x00c3_6400;
    const AFS: FsWord = 0x5346_414f;
    rustix::fs::statfs(dir).is_ok_and(|fs| {
        [
            rustix::fs::NFS_SUPER_MAGIC,
            SMB,
            CIFS,
            SMB2,
            FUSE,
            V9FS,
            CEPH,
            AFS,
        ]
        .contains(&fs.f_type)
    })
}

/// On macOS: a mount without `MNT_LOCAL` (NFS, SMB, AFP, WebDAV, macFUSE) — kqueue sees
/// only this host's changes there.
#[cfg(target_os = "macos")]
fn is_network_fs(dir: &Path) -> bool {
    rustix::fs::statfs(dir).is_ok_and(|fs| fs.f_flags & libc::MNT_LOCAL as u32 == 0)
}

/// Elsewhere the file system type is not told: trust the watcher (and the slow rescan).
#[cfg(not(any(target_os = "linux", target_os = "macos")))]
fn is_network_fs(_dir: &Path) -> bool {
    false
}
