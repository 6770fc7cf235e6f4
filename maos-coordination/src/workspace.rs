//! Finding, creating and opening the `.maos/` directory of a workspace.
//!
//! A workspace is the directory that holds `.maos/` — normally the root of the main git work
//! tree. Discovery walks up from a starting directory; from inside a linked git worktree it
//! continues at the main worktree, so every agent worktree of a repository shares one
//! `.maos/`. `.maos/maos.json` records the format version and the durability settings.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::atomic::{self, Durability};
use crate::error::ErrorKind;
use crate::fs::{self, FsError};
use crate::record::{self, RecordError};
use crate::store::{Store, StoreError, StoreSpec};

/// The name of the coordination directory at the workspace root.
pub const DIR_NAME: &str = ".maos";
/// The on-disk format this version of MAOS reads and writes.
pub const FORMAT_VERSION: u32 = 1;
const CONFIG_FILE: &str = "maos.json";
/// How old a staging file in `tmp/` must be before opening the workspace removes it.
pub const STALE_STAGING_AGE: std::time::Duration = std::time::Duration::from_secs(3600);
/// The subdirectories `init` creates.
/// The folders every workspace has (`init` makes them; `doctor --fix` makes a missing one
/// again; a restore makes them in the restored copy).
pub const SUBDIRS: [&str; 4] = ["tmp", "channels", "cursors", "locks"];

/// Opening or creating a workspace failed.
#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    /// No `.maos/` was found from the starting directory upwards.
    #[error(
        "no {DIR_NAME}/ workspace found in `{}` or any parent directory; run `maos init` at the repository root or pass --workspace",
        start.display()
    )]
    NotFound {
        /// Where the search began.
        start: PathBuf,
    },
    /// The workspace was written by a newer MAOS.
    #[error(
        "`{}` has format version {found}, but this maos understands only up to {FORMAT_VERSION}; upgrade maos",
        path.display()
    )]
    UnsupportedVersion {
        /// The config file.
        path: PathBuf,
        /// The version found in it.
        found: u32,
    },
    /// The config file is unreadable or broken.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// Creating directories or files failed.
    #[error(transparent)]
    Io(#[from] FsError),
    /// The recorded store cannot be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// `init` was asked for a store other than the one the workspace records.
    #[error(
        "`{}` records the store `{recorded}`, not `{asked}`; move the state with `maos store migrate --to {asked}`",
        path.display()
    )]
    OtherStore {
        /// The config file.
        path: PathBuf,
        /// The store it records.
        recorded: StoreSpec,
        /// The store asked for.
        asked: StoreSpec,
    },
}

impl WorkspaceError {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            WorkspaceError::NotFound { .. } => ErrorKind::NotFound,
            WorkspaceError::UnsupportedVersion { .. } => ErrorKind::Corrupt,
            WorkspaceError::Record(e) => e.kind(),
            WorkspaceError::Io(e) => e.kind(),
            WorkspaceError::Store(e) => e.kind(),
            WorkspaceError::OtherStore { .. } => ErrorKind::Conflict,
        }
    }
}

/// Which kinds of files are flushed to disk before they count as written (invariant W4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DurabilityConfig {
    /// Channel messages (default: off).
    pub messages: bool,
    /// Lock files (default: off: after a reboot every holder is dead anyway).
    pub locks: bool,
    /// Task records (default: on).
    pub tasks: bool,
    /// Merge preparations and their tracking (default: on).
    pub merge: bool,
}

impl Default for DurabilityConfig {
    fn default() -> Self {
        Self {
            messages: false,
            locks: false,
            tasks: true,
            merge: true,
        }
    }
}

/// The contents of `.maos/maos.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// The on-disk format version.
    pub format_version: u32,
    /// When `maos init` created the workspace.
    pub created_at: Timestamp,
    /// What is flushed to disk.
    #[serde(default)]
    pub fsync: DurabilityConfig,
    /// How the task index is checked against the records at every use.
    #[serde(default)]
    pub task_index_check: IndexCheck,
    /// Old messages pruned automatically, by this rule, each time a channel starts a new
    /// segment (`{"keep": 10000}` or `{"older_than_secs": 604800}`); none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_retention: Option<crate::channel::Retention>,
    /// Whether changes are journaled (`.maos/journal/`); on unless set to false.
    #[serde(default = "journal_on", skip_serializing_if = "is_on")]
    pub journal: bool,
    /// The size at which a journal segment is closed and the next begun (default 8 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journal_segment_bytes: Option<u64>,
    /// Minutes between automatic snapshots, taken by whichever agent's heartbeat finds one
    /// due; none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_every_minutes: Option<u64>,
    /// Where the coordination state lives: absent for these `.maos/` files, else an etcd
    /// cluster (`"etcd://host:2379,host2:2379/prefix"`) shared by every agent of the team.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<StoreSpec>,
    /// The lowest fencing token a lock may be given here: set when the state moved back
    /// from etcd (whose tokens are its revisions), so that tokens keep increasing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_floor: Option<u64>,
}

fn journal_on() -> bool {
    true
}

fn is_on(on: &bool) -> bool {
    *on
}

/// How the task index is checked against the records (`task_index_check` in `maos.json`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IndexCheck {
    /// Every unfinished record's file identity (size, times, inode) and the folder's: a
    /// record edited in place is seen by the next command. The default.
    #[default]
    Records,
    /// The folder's identity only: records created, deleted or replaced by rename (how
    /// editors save, and how docs/format.md says to edit by hand) are seen by the next
    /// command; an edit written in place over a record is not, until `maos doctor --fix`
    /// rebuilds the index. Faster with many unfinished tasks.
    Folder,
}

/// An opened workspace: its root and its `.maos/` directory.
#[derive(Debug, Clone)]
pub struct Workspace {
    root: PathBuf,
    dir: PathBuf,
    config: Config,
    store: Store,
    kernel_lock_wait: Duration,
}

/// What [`Workspace::init`] did.
#[derive(Debug)]
pub struct Initialized {
    /// The opened workspace.
    pub workspace: Workspace,
    /// False when `.maos/` already existed (init is idempotent).
    pub created: bool,
    /// True when `.maos/` was added to the repository's `info/exclude` file.
    pub excluded_from_git: bool,
}

impl Workspace {
    /// Creates `.maos/` under `root` if needed and opens it. Idempotent. When `root` is in a
    /// git repository, `.maos/` is added to its `info/exclude`: it is runtime state, not source.
    pub fn init(root: &Path) -> Result<Initialized, WorkspaceError> {
        Self::init_with_store(root, &StoreSpec::Files)
    }

    /// [`init`](Self::init) with the state kept in `store` (recorded in `maos.json`, so every
    /// agent of the repository finds it). Refused when the workspace already records another
    /// store; an etcd store must be reachable.
    pub fn init_with_store(root: &Path, store: &StoreSpec) -> Result<Initialized, WorkspaceError> {
        // Reachable before anything is written.
        let opened = Store::open(store)?;
        opened.check()?;
        let dir = root.join(DIR_NAME);
        fs::create_dir_all(&dir)?;
        for sub in SUBDIRS {
            fs::create_dir_all(&dir.join(sub))?;
        }
        let config_path = dir.join(CONFIG_FILE);
        let config = Config {
            format_version: FORMAT_VERSION,
            created_at: Timestamp::now(),
            fsync: DurabilityConfig::default(),
            task_index_check: IndexCheck::default(),
            message_retention: None,
            journal: true,
            journal_segment_bytes: None,
            snapshot_every_minutes: None,
            store: (!store.is_files()).then(|| store.clone()),
            token_floor: None,
        };
        let created = match atomic::write_new(
            &dir.join("tmp"),
            &config_path,
            &record::encode(&config),
            Durability::Fsync,
        ) {
            Ok(()) => true,
            Err(atomic::PublishError::AlreadyExists { .. }) => false,
            Err(atomic::PublishError::Io(e)) => return Err(e.into()),
        };
        if !created {
            let recorded: Config = record::read(&config_path, "workspace config")?;
            let recorded = recorded.store.unwrap_or(StoreSpec::Files);
            if recorded != *store {
                return Err(WorkspaceError::OtherStore {
                    path: config_path,
                    recorded,
                    asked: store.clone(),
                });
            }
        }
        let excluded_from_git = match git_common_dir(root) {
            Some(common) => exclude_from_git(&common)?,
            None => false,
        };
        Ok(Initialized {
            workspace: Self::open(root)?,
            created,
            excluded_from_git,
        })
    }

    /// Opens the workspace whose `.maos/` is directly under `root`.
    pub fn open(root: &Path) -> Result<Self, WorkspaceError> {
        let dir = root.join(DIR_NAME);
        let config_path = dir.join(CONFIG_FILE);
        let config: Config = match record::read(&config_path, "workspace config") {
            Err(RecordError::Io(e)) if e.is_not_found() => {
                return Err(WorkspaceError::NotFound {
                    start: root.to_owned(),
                });
            }
            other => other?,
        };
        if config.format_version > FORMAT_VERSION {
            return Err(WorkspaceError::UnsupportedVersion {
                path: config_path,
                found: config.format_version,
            });
        }
        // Staging files this old belong to writers that died mid-write (W3). Best effort: a
        // failure here resurfaces, with its path, on the first real write.
        let _ = atomic::sweep_tmp(&dir.join("tmp"), STALE_STAGING_AGE);
        let store = match &config.store {
            Some(spec) => Store::open(spec)?,
            None => Store::Files,
        };
        Ok(Self {
            root: root.to_owned(),
            dir,
            config,
            store,
            kernel_lock_wait: fs::DEFAULT_KERNEL_LOCK_WAIT,
        })
    }

    /// Finds the workspace that `start` belongs to: the nearest directory at or above `start`
    /// holding `.maos/`; from a linked git worktree, the main worktree's `.maos/`.
    pub fn discover(start: &Path) -> Result<Self, WorkspaceError> {
        match find_root(start) {
            Some(root) => Self::open(&root),
            None => Err(WorkspaceError::NotFound {
                start: start.to_owned(),
            }),
        }
    }

    /// The directory holding `.maos/`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The `.maos/` directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How long an operation waits for a short kernel lock (`tasks/.lock`, a channel's
    /// `.seq`, a lock's `.fence`, `agents/.lock`) held by another process before it fails
    /// with a timeout naming the file and holder (invariant L5).
    pub fn kernel_lock_wait(&self) -> Duration {
        self.kernel_lock_wait
    }

    /// Sets [`kernel_lock_wait`](Self::kernel_lock_wait) for this handle (default 60 s).
    pub fn with_kernel_lock_wait(mut self, wait: Duration) -> Self {
        self.kernel_lock_wait = wait;
        self
    }

    /// Takes the kernel lock on `path` (a file under `.maos/`), waiting at most
    /// [`kernel_lock_wait`](Self::kernel_lock_wait).
    pub fn kernel_lock(&self, path: &Path) -> Result<fs::FileLock, FsError> {
        fs::FileLock::acquire(path, self.kernel_lock_wait)
    }

    /// Takes the kernel lock on `path` shared (see [`fs::FileLock::acquire_shared`]), waiting
    /// at most [`kernel_lock_wait`](Self::kernel_lock_wait).
    pub fn kernel_lock_shared(&self, path: &Path) -> Result<fs::FileLock, FsError> {
        fs::FileLock::acquire_shared(path, self.kernel_lock_wait)
    }

    /// Where the coordination state lives.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// This workspace with its state read and written through `store` instead of the one
    /// `maos.json` records — the same cluster through other members (one member only, to
    /// see what a client cut off from the others sees), or another store to copy state to.
    pub fn with_store(mut self, store: &StoreSpec) -> Result<Self, WorkspaceError> {
        self.store = Store::open(store)?;
        Ok(self)
    }

    #[cfg(feature = "etcd")]
    /// This workspace with its state read through `store`, already opened (a pinned view of
    /// its etcd store: what a snapshot copies).
    pub(crate) fn with_opened_store(mut self, store: Store) -> Self {
        self.store = store;
        self
    }

    /// The workspace configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The staging directory for atomic writes.
    pub fn tmp_dir(&self) -> PathBuf {
        self.dir.join("tmp")
    }

    /// The directory holding one folder per channel.
    pub fn channels_dir(&self) -> PathBuf {
        self.dir.join("channels")
    }

    /// The directory holding lock files, their fences, wait records and interests.
    pub fn locks_dir(&self) -> PathBuf {
        self.dir.join("locks")
    }

    /// The directory holding readers' saved positions in channels.
    pub fn cursors_dir(&self) -> PathBuf {
        self.dir.join("cursors")
    }
}

/// The nearest directory at or above `start` that holds `.maos/`, following a linked git
/// worktree to its main worktree.
pub fn find_root(start: &Path) -> Option<PathBuf> {
    for dir in start.ancestors() {
        if dir.join(DIR_NAME).is_dir() {
            return Some(dir.to_owned());
        }
        if let Some(main) = linked_worktree_main(dir)
            && main.join(DIR_NAME).is_dir()
        {
            return Some(main);
        }
    }
    None
}

/// The root of the main git work tree that `start` is in (following linked worktrees), or
/// `None` outside a git repository. This is where `maos init` puts `.maos/` by default.
pub fn git_main_worktree(start: &Path) -> Option<PathBuf> {
    for dir in start.ancestors() {
        let dot_git = dir.join(".git");
        if dot_git.is_dir() {
            return Some(dir.to_owned());
        }
        if dot_git.is_file() {
            return linked_worktree_main(dir);
        }
    }
    None
}

/// The top of the git work tree (main or linked) that `start` is in: the nearest folder
/// holding a `.git` entry.
pub fn git_worktree_root(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .find(|dir| dir.join(".git").exists())
        .map(Path::to_owned)
}

/// The path of the absolute path `file` relative to the top of its git work tree, with `/`
/// between segments — the path reservations and locks speak of — when that work tree
/// belongs to the repository whose main work tree is `main_root` (outside git: when `file`
/// is under `main_root`). `None` for anything else: files of other repositories, outside
/// any, inside `.git/` or `.maos/`, and relative or non-UTF-8 paths. The file need not
/// exist yet (one about to be written); symbolic links in its folders are resolved.
pub fn repository_path(main_root: &Path, file: &Path) -> Option<String> {
    use std::path::Component;
    if !file.is_absolute() {
        return None;
    }
    let mut normal = PathBuf::new();
    for part in file.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                normal.pop();
            }
            other => normal.push(other),
        }
    }
    let existing = normal.ancestors().find(|a| a.exists())?;
    let rest = normal.strip_prefix(existing).ok()?.to_owned();
    let real = existing.canonicalize().ok()?.join(rest);
    let main_root = main_root.canonicalize().ok()?;
    let top = match real.parent().and_then(git_worktree_root) {
        Some(top) => {
            let main = git_main_worktree(&top)?.canonicalize().ok()?;
            (main == main_root).then_some(top)?
        }
        None => main_root,
    };
    let rel = real.strip_prefix(&top).ok()?;
    let mut parts = Vec::new();
    for part in rel.components() {
        match part {
            Component::Normal(p) => parts.push(p.to_str()?),
            _ => return None,
        }
    }
    match parts.first() {
        None | Some(&".git") | Some(&DIR_NAME) => None,
        Some(_) => Some(parts.join("/")),
    }
}

/// If `dir` is the top of a linked worktree (its `.git` is a file pointing into the main
/// repository's `worktrees/`), the main work tree's root.
fn linked_worktree_main(dir: &Path) -> Option<PathBuf> {
    let common = git_common_dir(dir)?;
    // The main work tree is the parent of a non-bare repository's `.git` directory.
    (common.file_name()? == ".git").then(|| common.parent().map(Path::to_owned))?
}

/// The git directory shared by all worktrees of the repository whose top is `dir`.
pub fn git_common_dir(dir: &Path) -> Option<PathBuf> {
    let dot_git = dir.join(".git");
    if dot_git.is_dir() {
        return Some(dot_git);
    }
    let text = std::fs::read_to_string(&dot_git).ok()?;
    let git_dir = dir.join(text.strip_prefix("gitdir:")?.trim());
    let common = match std::fs::read_to_string(git_dir.join("commondir")) {
        Ok(rel) => git_dir.join(rel.trim()),
        Err(_) => git_dir,
    };
    common.canonicalize().ok()
}

/// Adds `.maos/` to `<git common dir>/info/exclude` unless it is already listed there.
fn exclude_from_git(common_dir: &Path) -> Result<bool, FsError> {
    let info = common_dir.join("info");
    let exclude = info.join("exclude");
    let existing = fs::read_if_exists(&exclude)?.unwrap_or_default();
    let existing = String::from_utf8_lossy(&existing);
    let pattern = format!("/{DIR_NAME}/");
    if existing.lines().any(|l| {
        let l = l.trim();
        l == pattern || l == &pattern[1..] || l == DIR_NAME || l == &pattern[..pattern.len() - 1]
    }) {
        return Ok(false);
    }
    fs::create_dir_all(&info)?;
    #[expect(
        clippy::disallowed_methods,
        reason = "one line appended to git's own info/exclude, outside .maos/"
    )]
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&exclude)
        .map_err(|e| FsError::new("open", &exclude, e))?;
    let separator = if existing.is_empty() || existing.ends_with('\n') {
        ""
    } else {
        "\n"
    };
    writeln!(
        file,
        "{separator}# MAOS coordination state (runtime, not source)\n{pattern}"
    )
    .map_err(|e| FsError::new("append to", &exclude, e))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn git(dir: &Path, args: &[&str]) {
        let status = Command::new("git")
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "-c",
                "init.defaultBranch=main",
            ])
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(status.status.success(), "git {args:?}: {status:?}");
    }

    #[test]
    fn init_is_idempotent_and_excludes_from_git() {
        let dir = tempfile::tempdir().unwrap();
        git(dir.path(), &["init", "-q"]);
        let first = Workspace::init(dir.path()).unwrap();
        assert!(first.created && first.excluded_from_git);
        let second = Workspace::init(dir.path()).unwrap();
        assert!(!second.created && !second.excluded_from_git);
        assert_eq!(first.workspace.config(), second.workspace.config());
        let exclude = std::fs::read_to_string(dir.path().join(".git/info/exclude")).unwrap();
        assert_eq!(exclude.matches("/.maos/").count(), 1);
    }

    #[test]
    fn discovery_walks_up_and_follows_linked_worktrees() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("repo");
        std::fs::create_dir(&main).unwrap();
        git(&main, &["init", "-q"]);
        git(&main, &["commit", "-q", "--allow-empty", "-m", "root"]);
        Workspace::init(&main).unwrap();
        let nested = main.join("src/deep");
        std::fs::create_dir_all(&nested).unwrap();
        assert_eq!(Workspace::discover(&nested).unwrap().root(), main);

        let linked = dir.path().join("agent-1");
        git(
            &main,
            &[
                "worktree",
                "add",
                "-q",
                "-b",
                "maos/agent-1/work",
                linked.to_str().unwrap(),
            ],
        );
        let inside = linked.join("sub");
        std::fs::create_dir_all(&inside).unwrap();
        let found = Workspace::discover(&inside).unwrap();
        assert_eq!(
            found.root().canonicalize().unwrap(),
            main.canonicalize().unwrap()
        );
        assert_eq!(
            git_main_worktree(&inside).unwrap().canonicalize().unwrap(),
            main.canonicalize().unwrap()
        );
    }

    #[test]
    fn opening_sweeps_only_stale_staging_files() {
        let dir = tempfile::tempdir().unwrap();
        let ws = Workspace::init(dir.path()).unwrap().workspace;
        let stale = ws.tmp_dir().join("4242.deadwriter");
        let fresh = ws.tmp_dir().join("4243.writing");
        std::fs::write(&stale, b"half a rec").unwrap();
        std::fs::write(&fresh, b"half a rec").unwrap();
        let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        std::fs::File::options()
            .write(true)
            .open(&stale)
            .unwrap()
            .set_modified(two_hours_ago)
            .unwrap();
        Workspace::open(dir.path()).unwrap();
        assert!(!stale.exists());
        assert!(fresh.exists());
    }

    #[test]
    fn missing_workspace_and_newer_format_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let err = Workspace::discover(dir.path()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        Workspace::init(dir.path()).unwrap();
        let config = dir.path().join(".maos/maos.json");
        let text = std::fs::read_to_string(&config).unwrap();
        std::fs::write(
            &config,
            text.replace("\"format_version\": 1", "\"format_version\": 99"),
        )
        .unwrap();
        let err = Workspace::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("format version 99"), "{err}");
        std::fs::write(&config, "{ broken").unwrap();
        let err = Workspace::open(dir.path()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt);
        assert!(err.to_string().contains("maos.json"), "{err}");
    }
}

#[cfg(test)]
mod durability_tests {
    use crate::atomic::Durability;
    use crate::channel::{Channel, ChannelName};
    use crate::lock::Locks;
    use crate::task::Tasks;
    use crate::workspace::Workspace;

    /// W4: tasks are flushed by default, messages and locks are not; `maos.json` changes it
    /// per workspace (fields left out keep their defaults).
    #[test]
    fn durability_is_a_per_workspace_choice() {
        let dir = tempfile::tempdir().unwrap();
        let ws = Workspace::init(dir.path()).unwrap().workspace;
        let channel =
            |ws: &Workspace| Channel::open(ws, ChannelName::new("c").unwrap()).durability();
        assert_eq!(channel(&ws), Durability::Buffered);
        assert_eq!(Locks::new(&ws).durability(), Durability::Buffered);
        assert_eq!(Tasks::new(&ws).durability(), Durability::Fsync);
        let config = ws.dir().join("maos.json");
        let mut value: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
        value["fsync"] = serde_json::json!({"messages": true, "tasks": false});
        std::fs::write(&config, value.to_string()).unwrap();
        let ws = Workspace::open(dir.path()).unwrap();
        assert_eq!(channel(&ws), Durability::Fsync);
        assert_eq!(
            Locks::new(&ws).durability(),
            Durability::Buffered,
            "left out: default"
        );
        assert_eq!(Tasks::new(&ws).durability(), Durability::Buffered);
    }
}
