//! Tasks: one JSON record per task under `.maos/tasks/`, with dependencies, a state machine,
//! a ready queue and atomic claiming (invariants T1–T4, W2).
//!
//! **No lost update, no double claim.** Every read-modify-write of task records happens while
//! holding a kernel lock (`flock`) on `.maos/tasks/.lock`, and re-reads the records under it.
//! On top of that every record carries a `version`: a writer replaces a record only if the
//! version on disk is still the one it read, so even a hand edit that slips in between is
//! detected (as a stale-version conflict), never overwritten. Of many processes claiming the
//! same task, the first to get the lock claims it; every later one re-reads an
//! `in_progress` task and is told who has it.
//!
//! **Dependencies.** Creating a task or adding a dependency checks that every dependency
//! exists and that no cycle would form (the cycle is named). A task with an unfinished
//! dependency is `blocked`; completing a task moves every dependent whose dependencies are now
//! all completed to `pending` in the same locked operation, then announces it on the `tasks`
//! channel (and to each newly ready task's assignee). A failed or cancelled dependency keeps
//! its dependents blocked; [`Tasks::blockers`] says by what.
//!
//! Reads take no lock: records are published atomically, so a reader sees each record whole.
//! A record that cannot be read is reported (path, line, column) and the others still work.

mod bulk;
#[cfg(feature = "etcd")]
mod etcd;
mod graph;
mod index;
mod record;
mod status;
mod store;
mod summary;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::Serialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

pub use bulk::{Plan, export_line};
pub use graph::{DepGraph, critical_path, cycle_through};
pub use index::View;

pub use record::{
    Change, FileRef, MAX_DESCRIPTION, MAX_TITLE, NewTask, Task, TaskInputError, validate_title,
};
pub use status::{Status, UnknownStatus};
pub use summary::{Strs, Summary};

use crate::atomic::Durability;
use crate::channel::{Channel, ChannelError, ChannelName, Draft};
use crate::error::ErrorKind;
use crate::fs::{self, FileLock, FsError};
use crate::journal::Event;
use crate::name::{self, NameKind};
use crate::priority::Priority;
use crate::record::{self as records, RecordError};
use crate::store::{Store, StoreError};
use crate::workspace::{self, Workspace};
use index::{Index, Recorded, Scope};
use store::{FileTx, TaskTx};

/// The channel on which task events are announced.
pub const CHANNEL: &str = "tasks";
/// Who history entries name when recovery (not an agent) changed a task.
pub const RECOVERY: &str = "maos-recovery";
/// The note of a repaired unblocking.
const REPAIRED: &str =
    "every dependency is completed (repaired: the completing process stopped before unblocking)";

/// A task operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// A field is over its limits or malformed.
    #[error(transparent)]
    Input(#[from] TaskInputError),
    /// No such task.
    #[error("no task `{id}` (there is no {})", path.display())]
    NotFound {
        /// The id asked for.
        id: String,
        /// Where it would be.
        path: PathBuf,
    },
    /// A dependency does not exist.
    #[error("dependency `{dep}` does not exist (there is no {})", path.display())]
    MissingDependency {
        /// The missing id.
        dep: String,
        /// Where it would be.
        path: PathBuf,
    },
    /// The change would make tasks depend on each other in a circle.
    #[error("dependency cycle: {}", cycle.join(" → "))]
    Cycle {
        /// The cycle, first id repeated at the end.
        cycle: Vec<String>,
    },
    /// The state machine does not allow this change.
    #[error("task `{id}` cannot go from {from} to {to}; from {from} it may go to {}{}", allowed_list(*from), transition_hint(id, *from, *to))]
    IllegalTransition {
        /// The task.
        id: String,
        /// Its status.
        from: Status,
        /// The status asked for.
        to: Status,
    },
    /// Another agent holds the task.
    #[error("task `{id}` is already claimed by `{holder}` ({status})")]
    Claimed {
        /// The task.
        id: String,
        /// Who holds it.
        holder: String,
        /// Its status (in progress or review).
        status: Status,
    },
    /// The task is reserved for another agent.
    #[error("task `{id}` is assigned to `{assignee}`")]
    AssignedToOther {
        /// The task.
        id: String,
        /// The agent it is assigned to.
        assignee: String,
    },
    /// The task cannot be claimed or started yet.
    #[error("task `{id}` is not ready: {reason}")]
    NotReady {
        /// The task.
        id: String,
        /// Why (its status, or the unfinished dependencies).
        reason: String,
    },
    /// Nothing is ready to claim.
    #[error("no ready task{}", role.as_ref().map_or(String::new(), |r| format!(" for role `{r}`")))]
    NothingReady {
        /// The role asked for.
        role: Option<String>,
    },
    /// The record changed on disk since it was read (a hand edit, or a writer outside MAOS).
    #[error(
        "task `{id}` changed while it was being updated (version {read} became {found}); nothing was written: try again"
    )]
    Stale {
        /// The task.
        id: String,
        /// The version read.
        read: u64,
        /// The version found before writing.
        found: u64,
    },
    /// The claim an agent works under is gone: recovery returned the task to the queue (the
    /// agent was judged stale), or it was claimed again since.
    #[error(
        "task `{id}` is no longer the claim `{agent}` made: it was returned to the queue or claimed again meanwhile; nothing was written"
    )]
    ClaimLost {
        /// The task.
        id: String,
        /// The agent whose claim it was.
        agent: String,
    },
    /// A line of an import file is refused (nothing was imported, unless it says so).
    #[error("line {line}: {reason}")]
    Import {
        /// The line (1-based).
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A record is broken.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// A file could not be read or written.
    #[error(transparent)]
    Io(#[from] FsError),
    /// The store (etcd) could not be reached or refused.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What to run instead of a refused change, where there is one obvious way.
fn transition_hint(id: &str, from: Status, to: Status) -> String {
    match (from, to) {
        (Status::Pending, Status::Completed | Status::Failed | Status::Review) => format!(
            " (claim it first: `maos task claim {id}`; the agent it is assigned to may mark it {to} directly)"
        ),
        (Status::Blocked, Status::InProgress | Status::Completed) => {
            format!(" (it waits for its dependencies: `maos task show {id}` lists them)")
        }
        (Status::Failed, Status::InProgress | Status::Completed) => {
            format!(" (put it back in the queue first: `maos task retry {id}`)")
        }
        _ => String::new(),
    }
}

fn allowed_list(from: Status) -> String {
    let next = from.allowed_next();
    if next.is_empty() {
        return "nothing: it is final".to_owned();
    }
    next.iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

impl TaskError {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            TaskError::Input(TaskInputError::Name(e)) => e.kind(),
            TaskError::Input(_) | TaskError::Cycle { .. } | TaskError::Import { .. } => {
                ErrorKind::InvalidInput
            }
            TaskError::NotFound { .. }
            | TaskError::MissingDependency { .. }
            | TaskError::NothingReady { .. } => ErrorKind::NotFound,
            TaskError::IllegalTransition { .. }
            | TaskError::Claimed { .. }
            | TaskError::AssignedToOther { .. }
            | TaskError::NotReady { .. }
            | TaskError::Stale { .. }
            | TaskError::ClaimLost { .. } => ErrorKind::Conflict,
            TaskError::Record(e) => e.kind(),
            TaskError::Io(e) => e.kind(),
            TaskError::Store(e) => e.kind(),
        }
    }
}

impl From<crate::name::NameError> for TaskError {
    fn from(e: crate::name::NameError) -> Self {
        TaskError::Input(e.into())
    }
}

/// Every readable task, and the files that could not be read.
#[derive(Debug, Default)]
pub struct Listing {
    /// The tasks, sorted by id.
    pub tasks: Vec<Task>,
    /// Broken task files, each naming its file and problem.
    pub skipped: Vec<RecordError>,
}

impl Listing {
    /// Task id → dependency ids.
    pub fn graph(&self) -> DepGraph {
        self.tasks
            .iter()
            .map(|t| (t.id.clone(), t.dependencies.clone()))
            .collect()
    }

    /// The longest chain of unfinished dependent tasks, first to do first (see
    /// [`critical_path`]).
    pub fn critical_path(&self) -> Vec<String> {
        critical_path(
            self.tasks
                .iter()
                .filter(|t| !t.status.is_final())
                .map(|t| (t.id.as_str(), t.dependencies.iter().map(String::as_str))),
        )
    }

    /// Task id → status.
    pub fn statuses(&self) -> HashMap<&str, Status> {
        self.tasks
            .iter()
            .map(|t| (t.id.as_str(), t.status))
            .collect()
    }
}

/// What reports need to know of a task: read from its record ([`Task`]) or from the index
/// ([`Summary`]).
pub trait TaskFacts {
    /// Its id.
    fn id(&self) -> &str;
    /// Its title.
    fn title(&self) -> &str;
    /// Its status.
    fn status(&self) -> Status;
    /// Who has it.
    fn assignee(&self) -> Option<&str>;
    /// Its tags.
    fn tags(&self) -> impl Iterator<Item = &str>;
    /// Its dependencies.
    fn dependencies(&self) -> impl Iterator<Item = &str>;
    /// Why it was blocked by hand.
    fn blocked_reason(&self) -> Option<&str>;
}

impl TaskFacts for Task {
    fn id(&self) -> &str {
        &self.id
    }
    fn title(&self) -> &str {
        &self.title
    }
    fn status(&self) -> Status {
        self.status
    }
    fn assignee(&self) -> Option<&str> {
        self.assignee.as_deref()
    }
    fn tags(&self) -> impl Iterator<Item = &str> {
        self.tags.iter().map(String::as_str)
    }
    fn dependencies(&self) -> impl Iterator<Item = &str> {
        self.dependencies.iter().map(String::as_str)
    }
    fn blocked_reason(&self) -> Option<&str> {
        self.blocked_reason.as_deref()
    }
}

impl TaskFacts for Summary {
    fn id(&self) -> &str {
        Summary::id(self)
    }
    fn title(&self) -> &str {
        Summary::title(self)
    }
    fn status(&self) -> Status {
        Summary::status(self)
    }
    fn assignee(&self) -> Option<&str> {
        Summary::assignee(self)
    }
    fn tags(&self) -> impl Iterator<Item = &str> {
        Summary::tags(self)
    }
    fn dependencies(&self) -> impl Iterator<Item = &str> {
        Summary::dependencies(self)
    }
    fn blocked_reason(&self) -> Option<&str> {
        Summary::blocked_reason(self)
    }
}

/// What a dependency that is not completed is doing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Blocker {
    /// The dependency's id.
    pub id: String,
    /// Its status, or `None` when it does not exist (or cannot be read).
    pub status: Option<Status>,
}

/// The result of a status change.
#[derive(Debug)]
pub struct StatusChange {
    /// The task as saved.
    pub task: Task,
    /// Dependents that became ready (pending) because this task completed.
    pub unblocked: Vec<Task>,
    /// The notice on the `tasks` channel could not be sent (the change itself was saved).
    pub notice_error: Option<ChannelError>,
}

/// Which task `claim` should take.
#[derive(Debug, Clone, Copy)]
pub enum Pick<'a> {
    /// This one.
    Named(&'a str),
    /// The best ready task this agent may take: needing `role` (if given) or no role, and
    /// requiring only capabilities it has.
    Best {
        /// The role the claimer holds.
        role: Option<&'a str>,
        /// The capabilities the claimer has (tasks requiring others are skipped).
        capabilities: &'a [String],
    },
}

impl Pick<'_> {
    /// The best ready task for an agent with no role and no capabilities.
    pub fn best() -> Self {
        Pick::Best {
            role: None,
            capabilities: &[],
        }
    }
}

/// Edits to a task's fields (`None`: leave as is).
#[derive(Debug, Clone, Default)]
pub struct Edit {
    /// New title.
    pub title: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New priority.
    pub priority: Option<Priority>,
    /// New assignee (`Some(None)` clears it).
    pub assignee: Option<Option<String>>,
    /// New role (`Some(None)` clears it).
    pub role: Option<Option<String>>,
    /// Dependencies to add.
    pub add_deps: Vec<String>,
    /// Dependencies to remove.
    pub remove_deps: Vec<String>,
    /// Tags to add.
    pub add_tags: Vec<String>,
    /// Tags to remove.
    pub remove_tags: Vec<String>,
    /// File references to add.
    pub add_files: Vec<FileRef>,
    /// Metadata entries to set (a `null` value removes the key).
    pub metadata: Map<String, Value>,
    /// A note for the history.
    pub note: Option<String>,
}

/// The tasks of a workspace.
#[derive(Debug, Clone)]
pub struct Tasks {
    ws: Workspace,
    dir: PathBuf,
    durability: Durability,
}

impl Tasks {
    /// The tasks of `ws`.
    pub fn new(ws: &Workspace) -> Self {
        Self {
            dir: ws.dir().join("tasks"),
            durability: Durability::from_sync(ws.config().fsync.tasks),
            ws: ws.clone(),
        }
    }

    /// Whether writes through this handle are flushed to disk (invariant W4).
    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// Overrides the workspace's durability setting (`fsync.tasks`) for this handle.
    pub fn with_durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// The workspace.
    pub fn workspace(&self) -> &Workspace {
        &self.ws
    }

    /// `.maos/tasks/`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of task `id` (on the etcd store: `etcd:<prefix>/tasks/<id>.json`, its key).
    pub fn path(&self, id: &str) -> PathBuf {
        match self.ws.store() {
            Store::Files => self.dir.join(format!("{}.json", name::file_name(id))),
            #[cfg(feature = "etcd")]
            Store::Etcd(etcd) => etcd::path(etcd, id),
        }
    }

    /// Runs `body` as one atomic change of task records (see `store`): on files under the
    /// tasks lock, once; on etcd as one transaction, run again while other writers win.
    fn transact<R>(
        &self,
        mut body: impl FnMut(&mut dyn TaskTx) -> Result<R, TaskError>,
    ) -> Result<R, TaskError> {
        match self.ws.store() {
            Store::Files => {
                let mut tx = FileTx {
                    tasks: self,
                    lock: self.lock()?,
                };
                body(&mut tx)
            }
            #[cfg(feature = "etcd")]
            Store::Etcd(etcd) => etcd::transact(&self.ws, etcd, self.ws.kernel_lock_wait(), body),
        }
    }

    /// One task.
    pub fn get(&self, id: &str) -> Result<Task, TaskError> {
        name::validate(NameKind::Task, id)?;
        self.read(id)?.ok_or_else(|| self.not_found(id))
    }

    /// Every task (sorted by id), and every task file that could not be read.
    pub fn list(&self) -> Result<Listing, TaskError> {
        #[cfg(feature = "etcd")]
        if let Store::Etcd(etcd) = self.ws.store() {
            return etcd::list(etcd);
        }
        let mut names: Vec<String> = fs::list_names(&self.dir)?
            .into_iter()
            .filter(|n| !n.starts_with('.') && n.ends_with(".json"))
            .collect();
        names.sort();
        // Reading and decoding thousands of small files is the cost of every query: spread it
        // over the cores (each thread keeps its slice in order).
        let results = fs::on_every_core(&names, 256, |chunk: &[String]| {
            chunk
                .iter()
                .map(|name| {
                    let path = self.dir.join(name);
                    match fs::read_if_exists(&path) {
                        Ok(Some(bytes)) => Some(decode(&path, &bytes)),
                        Ok(None) => None, // removed meanwhile
                        Err(e) => Some(Err(e.into())),
                    }
                })
                .collect::<Vec<Option<Result<Task, RecordError>>>>()
        });
        let mut listing = Listing::default();
        for decoded in results.into_iter().flatten().flatten() {
            match decoded {
                Ok(task) => listing.tasks.push(task),
                Err(e) => listing.skipped.push(e),
            }
        }
        Ok(listing)
    }

    /// Pending tasks whose dependencies are all completed, best first: priority, then age.
    /// (Tasks held by dead or stale agents come back through [`crate::recovery`], which the
    /// caller runs first.)
    ///
    /// Answered from the index (see `index`): unfinished tasks only, each checked against its
    /// record; a dependency that is not unfinished is looked up in its own record. Tasks left
    /// blocked although every dependency is completed (a process killed between completing a
    /// task and unblocking its dependents) are repaired first.
    pub fn ready(&self) -> Result<View, TaskError> {
        let (mut ready, stuck, skipped, rebuilt) = match self.ws.store() {
            Store::Files => {
                let (mut index, rebuilt) = self.indexed(Scope::Active)?;
                let view = index.take_view(&self.dir, Scope::Active, rebuilt);
                let (ready, stuck) = self.queue_of(view.tasks, &index)?;
                (ready, stuck, view.skipped, rebuilt)
            }
            #[cfg(feature = "etcd")]
            Store::Etcd(_) => {
                let listing = self.list()?;
                let (ready, stuck) = queue_by_scan(&listing);
                (ready, stuck, listing.skipped, false)
            }
        };
        if !stuck.is_empty() {
            let repaired = self.transact(|tx| self.unblock(tx, &stuck, RECOVERY, REPAIRED))?;
            ready.extend(repaired.iter().map(Summary::of));
        }
        ready.sort_by(|a, b| {
            (b.priority(), a.created_ns(), a.id()).cmp(&(a.priority(), b.created_ns(), b.id()))
        });
        Ok(View {
            tasks: ready,
            skipped,
            rebuilt,
        })
    }

    /// Of every unfinished task (`tasks`, the index's view): the pending ones whose
    /// dependencies are all completed, and the ids of those left blocked although they are
    /// (to repair). A dependency among the unfinished tasks is not completed; any other is
    /// judged by its record.
    fn queue_of(
        &self,
        tasks: Vec<Summary>,
        index: &Index,
    ) -> Result<(Vec<Summary>, Vec<String>), TaskError> {
        // Decided on borrowed ids first, then the summaries are moved out.
        let verdicts: Vec<Option<bool>> = {
            let unfinished: HashSet<&str> = tasks.iter().map(Summary::id).collect();
            let mut completed: HashMap<String, bool> = HashMap::new();
            let mut all_completed = |deps: Strs| -> Result<bool, TaskError> {
                for dep in deps {
                    if unfinished.contains(dep) {
                        return Ok(false);
                    }
                    let done = match completed.get(dep) {
                        Some(done) => *done,
                        None => {
                            let status = match index.finished_status(dep) {
                                Some(status) => Some(status),
                                None => self.read(dep)?.map(|t| t.status),
                            };
                            let done = status == Some(Status::Completed);
                            completed.insert(dep.to_owned(), done);
                            done
                        }
                    };
                    if !done {
                        return Ok(false);
                    }
                }
                Ok(true)
            };
            // Some(true): ready; Some(false): stuck (to unblock); None: neither.
            tasks
                .iter()
                .map(|t| match t.status() {
                    Status::Blocked if t.blocked_reason().is_none() => {
                        Ok(all_completed(t.dependencies())?.then_some(false))
                    }
                    Status::Pending => Ok(all_completed(t.dependencies())?.then_some(true)),
                    _ => Ok(None),
                })
                .collect::<Result<_, TaskError>>()?
        };
        let (mut ready, mut stuck) = (Vec::new(), Vec::new());
        for (task, verdict) in tasks.into_iter().zip(verdicts) {
            match verdict {
                Some(true) => ready.push(task),
                Some(false) => stuck.push(task.id().to_owned()),
                None => {}
            }
        }
        Ok((ready, stuck))
    }

    /// The ready queue computed from every record, not the index: the truth the index is
    /// checked against (`maos doctor`, the tests) and the baseline its benchmark compares
    /// with. Sorted like [`ready`](Self::ready); repairs nothing.
    pub fn ready_by_scan(&self) -> Result<Listing, TaskError> {
        let listing = self.list()?;
        let mut ready: Vec<Task> = ready_of(&listing).into_iter().cloned().collect();
        ready.sort_by(|a, b| {
            (b.priority, a.created_at, &a.id).cmp(&(a.priority, b.created_at, &b.id))
        });
        Ok(Listing {
            tasks: ready,
            skipped: listing.skipped,
        })
    }

    /// Compares the index on disk with every record, repairing nothing: `None` when there
    /// is no index yet, else one line per disagreement (empty: it agrees). A missing or
    /// damaged index file is one disagreement.
    pub fn verify_index(&self) -> Result<Option<Vec<String>>, TaskError> {
        if !self.ws.store().is_files() || !index::index_dir(&self.dir).exists() {
            return Ok(None);
        }
        let Some(index) = Index::load(&self.dir, true)? else {
            return Ok(Some(vec!["the index is damaged or incomplete".into()]));
        };
        let records = self
            .list()?
            .tasks
            .iter()
            .map(|t| (t.id.clone(), Summary::of(t)))
            .collect();
        Ok(Some(index.disagreements(&records)))
    }

    /// Rebuilds the index from every record, under the tasks lock (nothing to do on the
    /// etcd store, which has no index).
    pub fn rebuild_index(&self) -> Result<(), TaskError> {
        if !self.ws.store().is_files() {
            return Ok(());
        }
        let _lock = self.lock()?;
        let mut index = Index::rebuild(&self.dir)?;
        index.save(&self.dir, &self.ws.tmp_dir())?;
        Ok(())
    }

    /// What queries need of every task — or, without `finished_too`, of every unfinished one
    /// (cheaper: finished tasks' records are not even stat-ed) — from the index, checked
    /// against the records. Sorted by id.
    pub fn summaries(&self, finished_too: bool) -> Result<View, TaskError> {
        if !self.ws.store().is_files() {
            let listing = self.list()?;
            return Ok(View {
                tasks: listing
                    .tasks
                    .iter()
                    .filter(|t| finished_too || !t.status.is_final())
                    .map(Summary::of)
                    .collect(),
                skipped: listing.skipped,
                rebuilt: false,
            });
        }
        let scope = if finished_too {
            Scope::All
        } else {
            Scope::Active
        };
        let (index, rebuilt) = self.indexed(scope)?;
        Ok(index.into_view(&self.dir, scope, rebuilt))
    }

    /// The records of `summaries` (those that can still be read), in the same order.
    pub fn records(&self, summaries: &[Summary]) -> Vec<Task> {
        summaries
            .iter()
            .filter_map(|s| self.get(s.id()).ok())
            .collect()
    }

    /// The index, checked against the records for `scope`; repaired under the tasks lock
    /// when it was stale, rebuilt from the records when missing or damaged.
    fn indexed(&self, scope: Scope) -> Result<(Index, bool), TaskError> {
        let loaded = self.load_index(scope)?;
        if let Some(mut index) = loaded
            && !index.check(&self.dir, scope, self.index_check())?
        {
            return Ok((index, false));
        }
        let _lock = self.lock()?;
        self.indexed_locked(scope)
    }

    /// Every task's dependencies, from the index (checked): what a cycle check walks. Called
    /// under the tasks lock.
    fn graph_locked(&self) -> Result<DepGraph, TaskError> {
        let (index, _) = self.indexed_locked(Scope::All)?;
        Ok(index
            .into_view(&self.dir, Scope::All, false)
            .tasks
            .into_iter()
            .map(|t| {
                (
                    t.id().to_owned(),
                    t.dependencies().map(str::to_owned).collect(),
                )
            })
            .collect())
    }

    /// [`indexed`](Self::indexed) for a caller that holds the tasks lock.
    fn indexed_locked(&self, scope: Scope) -> Result<(Index, bool), TaskError> {
        let (mut index, rebuilt) = match self.load_index(scope)? {
            Some(index) => (index, false),
            None => {
                let index = Index::rebuild(&self.dir)?;
                let worth_saying = !index.is_empty();
                (index, worth_saying)
            }
        };
        let changed = index.check(&self.dir, scope, self.index_check())?;
        if changed || rebuilt || !index::index_dir(&self.dir).join("active").exists() {
            // A view that could not be saved (a full disk) is still right: the next reader
            // checks again.
            let _ = index.save(&self.dir, &self.ws.tmp_dir());
        }
        Ok((index, rebuilt))
    }

    /// The index as saved, for a view of `scope`; with the records check, every unfinished
    /// record is stat-ed while it loads.
    fn load_index(&self, scope: Scope) -> Result<Option<Index>, TaskError> {
        let with_finished = scope == Scope::All;
        Ok(match self.index_check() {
            workspace::IndexCheck::Records => Index::load_observed(&self.dir, with_finished)?,
            workspace::IndexCheck::Folder => Index::load(&self.dir, with_finished)?,
        })
    }

    /// How the workspace wants the index checked (`task_index_check`).
    fn index_check(&self) -> workspace::IndexCheck {
        self.ws.config().task_index_check
    }

    /// Records in the index's change log what the caller (holding the tasks lock) just
    /// wrote. `before`: what [`index_before_write`](Self::index_before_write) saw (`None`:
    /// no index yet; the next reader builds it). Failing to log it loses nothing: the
    /// records are the truth and the next reader repairs the index from them.
    fn index_written(&self, before: Option<(Recorded, bool)>, written: &[Task]) {
        if let Some((recorded, folder_unchanged)) = before {
            let _ = recorded.log_written(&self.dir, &self.ws.tmp_dir(), written, folder_unchanged);
        }
    }

    /// The index's header and change log, for a writer about to write (holding the tasks
    /// lock), and whether the folder is as last reconciled.
    fn index_before_write(&self) -> Option<(Recorded, bool)> {
        let recorded = Recorded::read(&self.dir)?;
        let unchanged = recorded.folder_unchanged(&self.dir);
        Some((recorded, unchanged))
    }

    /// True when nothing more will come for `agent` (holding `role` and `capabilities`)
    /// without someone adding or unblocking work: no task it may take is ready, and no task
    /// is in progress anywhere (finishing one may unblock work for it). Tasks ready for other
    /// roles do not keep it waiting. Judged on a consistent view (under the tasks lock), so a
    /// completion that unblocks dependents is seen whole.
    pub fn idle(
        &self,
        agent: &str,
        role: Option<&str>,
        capabilities: &[String],
    ) -> Result<bool, TaskError> {
        let (running, ready, repaired) = self.transact(|tx| {
            let (running, ready, stuck) = match self.ws.store() {
                Store::Files => {
                    let (mut index, _) = self.indexed_locked(Scope::Active)?;
                    let tasks = index.take_view(&self.dir, Scope::Active, false).tasks;
                    let running = tasks.iter().any(|t| t.status() == Status::InProgress);
                    let (ready, stuck) = self.queue_of(tasks, &index)?;
                    (running, ready, stuck)
                }
                #[cfg(feature = "etcd")]
                Store::Etcd(_) => {
                    let listing = self.list()?;
                    let running = listing.tasks.iter().any(|t| t.status == Status::InProgress);
                    let (ready, stuck) = queue_by_scan(&listing);
                    (running, ready, stuck)
                }
            };
            let repaired = self.unblock(tx, &stuck, RECOVERY, REPAIRED)?;
            Ok((running, ready, repaired))
        })?;
        let for_me = ready
            .iter()
            .any(|t| t.takeable_by(agent, role, capabilities))
            || repaired
                .iter()
                .any(|t| t.takeable_by(agent, role, capabilities));
        Ok(!running && !for_me)
    }

    /// Moves to `pending` each of `ids` that is `blocked` by dependencies only and whose
    /// dependencies are all completed, noting `note` as `by`. Run when a task completes (its dependents), and
    /// by the queue to repair what a process killed between completing a task and
    /// unblocking its dependents left behind. Called under the lock; each record is re-read
    /// and re-checked, so `ids` may come from an older view. Returns those tasks.
    fn unblock(
        &self,
        tx: &mut dyn TaskTx,
        ids: &[String],
        by: &str,
        note: &str,
    ) -> Result<Vec<Task>, TaskError> {
        let mut unblocked = Vec::new();
        for id in ids {
            let Some(mut task) = tx.read(id)? else {
                continue;
            };
            if task.status != Status::Blocked
                || task.blocked_reason.is_some()
                || !blockers_in(tx, &task)?.is_empty()
            {
                continue;
            }
            task.set_status(by, Status::Pending, Some(note.to_owned()));
            tx.save(&mut task)?;
            unblocked.push(task);
        }
        Ok(unblocked)
    }

    /// The dependencies of `task` that are not completed, with their status.
    pub fn blockers(&self, task: &Task) -> Vec<Blocker> {
        task.dependencies
            .iter()
            .filter_map(|dep| {
                let status = self.get(dep).ok().map(|d| d.status);
                (status != Some(Status::Completed)).then(|| Blocker {
                    id: dep.clone(),
                    status,
                })
            })
            .collect()
    }

    /// Creates a task by `by`: `blocked` when a dependency is unfinished, else `pending`.
    pub fn create(&self, by: &str, new: NewTask, id: Option<&str>) -> Result<Task, TaskError> {
        name::validate(NameKind::Agent, by)?;
        record::validate_new(&new)?;
        if let Some(id) = id {
            name::validate(NameKind::Task, id)?;
            if new.dependencies.iter().any(|d| d == id) {
                return Err(TaskError::Cycle {
                    cycle: vec![id.to_owned(), id.to_owned()],
                });
            }
        }
        let new = NewTask {
            dependencies: dedup(new.dependencies),
            tags: dedup(new.tags),
            requires: dedup(new.requires),
            ..new
        };
        self.transact(|tx| {
            let mut unfinished = false;
            for dep in &new.dependencies {
                match tx.read(dep)? {
                    Some(d) => unfinished |= d.status != Status::Completed,
                    None => {
                        return Err(TaskError::MissingDependency {
                            dep: dep.clone(),
                            path: self.path(dep),
                        });
                    }
                }
            }
            if let Some(id) = id
                && !new.dependencies.is_empty()
            {
                // A chosen id may already be named by hand-written records: check for a circle.
                if let Some(cycle) = cycle_through(&tx.graph()?, id, &new.dependencies) {
                    return Err(TaskError::Cycle { cycle });
                }
            }
            let status = if unfinished {
                Status::Blocked
            } else {
                Status::Pending
            };
            let mut task = Task::created(String::new(), new.clone(), by, status, None);
            loop {
                task.id = match id {
                    Some(id) => id.to_owned(),
                    None => new_id(),
                };
                if tx.create(&task)? {
                    return Ok(task);
                }
                if let Some(id) = id {
                    return Err(TaskError::Input(TaskInputError::Name(
                        crate::name::NameError {
                            kind: NameKind::Task,
                            name: id.to_owned(),
                            reason: format!(
                                "a task with this id exists ({})",
                                self.path(id).display()
                            ),
                        },
                    )));
                }
            }
        })
    }

    /// Claims a task for `agent`: it becomes `in_progress`, assigned to `agent`, with
    /// `attempts` raised. Of several claimers of one task exactly one succeeds; the others
    /// get [`TaskError::Claimed`] naming the winner.
    pub fn claim(&self, agent: &str, pick: Pick<'_>) -> Result<Task, TaskError> {
        name::validate(NameKind::Agent, agent)?;
        match pick {
            Pick::Named(id) => {
                name::validate(NameKind::Task, id)?;
                self.transact(|tx| {
                    let task = tx.read(id)?.ok_or_else(|| self.not_found(id))?;
                    claim_in(tx, agent, task)
                })
            }
            Pick::Best { role, capabilities } => {
                if let Some(role) = role {
                    name::validate(NameKind::Role, role)?;
                }
                // Choose outside the lock; confirm each candidate under it.
                let candidates = self
                    .ready()?
                    .tasks
                    .into_iter()
                    .filter(|t| t.takeable_by(agent, role, capabilities));
                for candidate in candidates {
                    let claimed = self.transact(|tx| match tx.read(candidate.id())? {
                        Some(task) => claim_in(tx, agent, task).map(Some),
                        None => Ok(None),
                    });
                    match claimed {
                        Ok(Some(task)) => return Ok(task),
                        Ok(None) => continue,
                        Err(
                            TaskError::Claimed { .. }
                            | TaskError::NotReady { .. }
                            | TaskError::AssignedToOther { .. }
                            | TaskError::Stale { .. },
                        ) => continue,
                        Err(e) => return Err(e),
                    }
                }
                Err(TaskError::NothingReady {
                    role: role.map(str::to_owned),
                })
            }
        }
    }

    /// Changes a task's status as `agent`, following the state machine. A task in progress
    /// can only be moved on by its assignee. Completing a task makes every dependent whose
    /// dependencies are now all completed `pending`, in the same operation, and announces it.
    pub fn set_status(
        &self,
        id: &str,
        agent: &str,
        to: Status,
        note: Option<String>,
    ) -> Result<StatusChange, TaskError> {
        let change = self.change_status(id, agent, to, note, None, false)?;
        tracing::debug!(
            task = id,
            agent,
            status = %to,
            unblocked = change.unblocked.len(),
            "task status changed"
        );
        Ok(change)
    }

    /// [`set_status`](Self::set_status), but only while the task is still the claim
    /// `claimed` records (same status, assignee, attempt and start): if recovery
    /// returned it meanwhile (an agent judged stale while paused) — or failed it, its
    /// attempts used up — or it was claimed again (another process of the same agent id),
    /// the change is refused with [`TaskError::ClaimLost`] and nothing is written.
    pub fn set_status_as_claimed(
        &self,
        claimed: &Task,
        agent: &str,
        to: Status,
        note: Option<String>,
    ) -> Result<StatusChange, TaskError> {
        self.change_status(&claimed.id, agent, to, note, Some(claimed), false)
    }

    /// Gives a task `agent` claimed back to the queue without counting the attempt (its
    /// `attempts` goes back down): the work was interrupted (the worker was asked to stop),
    /// not tried. Refused like [`set_status_as_claimed`](Self::set_status_as_claimed) when the
    /// claim is gone.
    pub fn give_back(
        &self,
        claimed: &Task,
        agent: &str,
        note: String,
    ) -> Result<StatusChange, TaskError> {
        self.change_status(
            &claimed.id,
            agent,
            Status::Pending,
            Some(note),
            Some(claimed),
            true,
        )
    }

    fn change_status(
        &self,
        id: &str,
        agent: &str,
        to: Status,
        note: Option<String>,
        claimed: Option<&Task>,
        uncount: bool,
    ) -> Result<StatusChange, TaskError> {
        name::validate(NameKind::Agent, agent)?;
        name::validate(NameKind::Task, id)?;
        let (task, unblocked) = self.transact(|tx| {
            let note = note.clone();
            let mut task = tx.read(id)?.ok_or_else(|| self.not_found(id))?;
            if let Some(claimed) = claimed
                && (claimed.status != task.status
                    || claimed.assignee != task.assignee
                    || claimed.attempts != task.attempts
                    || claimed.started_at != task.started_at)
            {
                return Err(TaskError::ClaimLost {
                    id: task.id,
                    agent: agent.to_owned(),
                });
            }
            // The agent a pending task is assigned to may finish it in one step: it is
            // started (claimed) and then moved on, both steps in the history.
            if task.status == Status::Pending
                && matches!(to, Status::Completed | Status::Failed | Status::Review)
                && task.assignee.as_deref() == Some(agent)
                && claimed.is_none()
            {
                start(tx, &mut task, agent)?;
            }
            let from = task.status;
            if !from.can_become(to) {
                return Err(TaskError::IllegalTransition {
                    id: task.id,
                    from,
                    to,
                });
            }
            if from == Status::InProgress
                && let Some(holder) = task.assignee.as_deref().filter(|a| *a != agent)
            {
                return Err(TaskError::Claimed {
                    id: task.id.clone(),
                    holder: holder.to_owned(),
                    status: from,
                });
            }
            match to {
                Status::InProgress if from == Status::Pending => {
                    start(tx, &mut task, agent)?;
                    if let Some(change) = task.history.last_mut() {
                        change.note = note.clone();
                    }
                }
                Status::Pending => {
                    if from == Status::Blocked {
                        let blockers = blockers_in(tx, &task)?;
                        if !blockers.is_empty() {
                            return Err(TaskError::NotReady {
                                id: task.id.clone(),
                                reason: describe_blockers(&blockers),
                            });
                        }
                    }
                    task.blocked_reason = None;
                    task.set_status(agent, to, note);
                    if from == Status::InProgress || from == Status::Failed {
                        // Back in the queue for anyone.
                        let previous = task.assignee.take();
                        task.record(agent, "assignee", previous.into(), Value::Null, None);
                    }
                    if uncount && from == Status::InProgress && task.attempts > 0 {
                        let counted = task.attempts;
                        task.attempts -= 1;
                        task.record(
                            agent,
                            "attempts",
                            counted.into(),
                            task.attempts.into(),
                            Some("interrupted, not tried: the attempt does not count".into()),
                        );
                    }
                }
                Status::Blocked => {
                    task.blocked_reason =
                        Some(note.clone().unwrap_or_else(|| "blocked by hand".into()));
                    task.set_status(agent, to, note);
                }
                Status::Completed => {
                    task.completed_at = Some(Timestamp::now());
                    task.set_status(agent, to, note);
                }
                _ => task.set_status(agent, to, note),
            }
            tx.save(&mut task)?;
            let unblocked = if to == Status::Completed {
                let note = format!("every dependency is completed (last: {})", task.id);
                let dependents = tx.dependents(&task.id)?;
                self.unblock(tx, &dependents, agent, &note)?
            } else {
                Vec::new()
            };
            Ok((task, unblocked))
        })?;
        let notice_error = if to == Status::Completed {
            self.announce_completion(&task, &unblocked, agent).err()
        } else {
            None
        };
        Ok(StatusChange {
            task,
            unblocked,
            notice_error,
        })
    }

    /// Applies `edit` to a task as `agent`, recording each change. New dependencies must
    /// exist and must not close a cycle; the status follows (pending ↔ blocked).
    pub fn update(&self, id: &str, agent: &str, edit: Edit) -> Result<Task, TaskError> {
        name::validate(NameKind::Agent, agent)?;
        name::validate(NameKind::Task, id)?;
        if let Some(title) = &edit.title {
            validate_title(title)?;
        }
        if let Some(description) = &edit.description {
            let n = description.chars().count();
            if n > MAX_DESCRIPTION {
                return Err(TaskInputError::Description(n).into());
            }
        }
        for dep in edit.add_deps.iter().chain(&edit.remove_deps) {
            name::validate(NameKind::Task, dep)?;
        }
        for tag in edit.add_tags.iter().chain(&edit.remove_tags) {
            name::validate(NameKind::Tag, tag)?;
        }
        if let Some(Some(assignee)) = &edit.assignee {
            name::validate(NameKind::Agent, assignee)?;
        }
        if let Some(Some(role)) = &edit.role {
            name::validate(NameKind::Role, role)?;
        }
        for file in &edit.add_files {
            file.validate()?;
        }
        self.transact(|tx| {
            let edit = edit.clone();
            let mut task = tx.read(id)?.ok_or_else(|| self.not_found(id))?;
            self.apply_edit(tx, &mut task, agent, edit)?;
            tx.save(&mut task)?;
            Ok(task)
        })
    }

    /// Applies `edit` to `task` (read in `tx`) as `agent`, recording each change.
    fn apply_edit(
        &self,
        tx: &mut dyn TaskTx,
        task: &mut Task,
        agent: &str,
        edit: Edit,
    ) -> Result<(), TaskError> {
        let note = edit.note.clone();
        let change = |task: &mut Task, field: &str, from: Value, to: Value| {
            if from != to {
                task.record(agent, field, from, to, note.clone());
            }
        };
        if let Some(title) = edit.title {
            let from = std::mem::replace(&mut task.title, title.clone());
            change(task, "title", from.into(), title.into());
        }
        if let Some(description) = edit.description {
            let from = std::mem::replace(&mut task.description, description.clone());
            change(task, "description", from.into(), description.into());
        }
        if let Some(priority) = edit.priority {
            let from = std::mem::replace(&mut task.priority, priority);
            change(
                task,
                "priority",
                from.as_str().into(),
                priority.as_str().into(),
            );
        }
        if let Some(assignee) = edit.assignee {
            let from = std::mem::replace(&mut task.assignee, assignee.clone());
            change(task, "assignee", from.into(), assignee.into());
        }
        if let Some(role) = edit.role {
            let from = std::mem::replace(&mut task.role, role.clone());
            change(task, "role", from.into(), role.into());
        }
        if !edit.add_tags.is_empty() || !edit.remove_tags.is_empty() {
            let from = task.tags.clone();
            task.tags.retain(|t| !edit.remove_tags.contains(t));
            task.tags = dedup(task.tags.iter().cloned().chain(edit.add_tags).collect());
            let to = task.tags.clone();
            change(task, "tags", json!(from), json!(to));
        }
        if !edit.add_files.is_empty() {
            let from = json!(task.files);
            for file in edit.add_files {
                if !task.files.contains(&file) {
                    task.files.push(file);
                }
            }
            let to = json!(task.files);
            change(task, "files", from, to);
        }
        for (key, value) in edit.metadata {
            let from = task.metadata.get(&key).cloned().unwrap_or(Value::Null);
            if value.is_null() {
                task.metadata.remove(&key);
            } else {
                task.metadata.insert(key.clone(), value.clone());
            }
            change(task, &format!("metadata.{key}"), from, value);
        }
        if !edit.add_deps.is_empty() || !edit.remove_deps.is_empty() {
            for dep in &edit.add_deps {
                if tx.read(dep)?.is_none() {
                    return Err(TaskError::MissingDependency {
                        dep: dep.clone(),
                        path: self.path(dep),
                    });
                }
            }
            let new_deps: Vec<String> = edit
                .add_deps
                .iter()
                .filter(|d| !task.dependencies.contains(d))
                .cloned()
                .collect();
            if !new_deps.is_empty()
                && let Some(cycle) = cycle_through(&tx.graph()?, &task.id, &new_deps)
            {
                return Err(TaskError::Cycle { cycle });
            }
            let from = task.dependencies.clone();
            task.dependencies.retain(|d| !edit.remove_deps.contains(d));
            task.dependencies.extend(new_deps);
            let to = task.dependencies.clone();
            change(task, "dependencies", json!(from), json!(to));
            // The status follows the dependencies.
            let waiting = !blockers_in(tx, task)?.is_empty();
            match task.status {
                Status::Pending if waiting => {
                    task.set_status(
                        agent,
                        Status::Blocked,
                        Some("a new dependency is unfinished".into()),
                    );
                }
                Status::Blocked if !waiting && task.blocked_reason.is_none() => {
                    task.set_status(
                        agent,
                        Status::Pending,
                        Some("every dependency is completed".into()),
                    );
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Returns every task `agent` holds in progress to the ready queue, recording `reason`
    /// as `by` — or, with `max_attempts`, marks it failed once it was claimed that many times
    /// (an agent that died or went stale; an agent leaving gives no limit). Returns
    /// (returned, failed).
    pub fn return_held(
        &self,
        agent: &str,
        by: &str,
        reason: &str,
        max_attempts: Option<u32>,
    ) -> Result<(Vec<Task>, Vec<Task>), TaskError> {
        self.transact(|tx| {
            let (mut returned, mut failed) = (Vec::new(), Vec::new());
            let held =
                |t: &Task| t.status == Status::InProgress && t.assignee.as_deref() == Some(agent);
            for id in tx.held_by(agent)? {
                // Re-read in the change: the record is the truth.
                let Some(mut task) = tx.read(&id)?.filter(held) else {
                    continue;
                };
                if max_attempts.is_some_and(|limit| task.attempts >= limit) {
                    let note = format!(
                        "{reason}; abandoned after {} attempt(s), the limit",
                        task.attempts
                    );
                    task.set_status(by, Status::Failed, Some(note));
                    tx.save(&mut task)?;
                    failed.push(task);
                } else {
                    task.set_status(
                        by,
                        Status::Pending,
                        Some(format!("returned to the queue: {reason}")),
                    );
                    let previous = task.assignee.take();
                    task.record(by, "assignee", previous.into(), Value::Null, None);
                    tx.save(&mut task)?;
                    returned.push(task);
                }
            }
            Ok((returned, failed))
        })
    }

    fn announce_completion(
        &self,
        task: &Task,
        unblocked: &[Task],
        agent: &str,
    ) -> Result<(), ChannelError> {
        let channel = Channel::open(&self.ws, ChannelName::new(CHANNEL)?);
        channel.send(
            agent,
            Draft::new(json!({
                "event": "completed",
                "task": task.id,
                "title": task.title,
                "unblocked": unblocked.iter().map(|t| &t.id).collect::<Vec<_>>(),
            }))
            .kind("task-completed"),
        )?;
        for ready in unblocked {
            if let Some(assignee) = &ready.assignee {
                channel.send(
                    agent,
                    Draft::new(json!({"event": "ready", "task": ready.id, "title": ready.title}))
                        .kind("task-ready")
                        .to(assignee.clone()),
                )?;
            }
        }
        Ok(())
    }

    /// Reads one record; `None` when there is no such file.
    fn read(&self, id: &str) -> Result<Option<Task>, TaskError> {
        #[cfg(feature = "etcd")]
        if let Store::Etcd(etcd) = self.ws.store() {
            return etcd::get(etcd, id);
        }
        let path = self.path(id);
        match fs::read_if_exists(&path)? {
            Some(bytes) => Ok(Some(decode(&path, &bytes)?)),
            None => Ok(None),
        }
    }

    fn not_found(&self, id: &str) -> TaskError {
        TaskError::NotFound {
            id: id.to_owned(),
            path: self.path(id),
        }
    }

    /// The kernel lock serializing every change to task records.
    fn lock(&self) -> Result<FileLock, FsError> {
        self.ws.kernel_lock(&self.dir.join(".lock"))
    }
}

/// Starts `task` for `agent`: in progress, assigned to it, `attempts` raised. Refused
/// when it is reserved for another agent, not pending, or a dependency is unfinished.
fn start(tx: &mut dyn TaskTx, task: &mut Task, agent: &str) -> Result<(), TaskError> {
    if let Some(assignee) = task.assignee.as_deref().filter(|a| *a != agent) {
        return Err(TaskError::AssignedToOther {
            id: task.id.clone(),
            assignee: assignee.to_owned(),
        });
    }
    if task.status != Status::Pending {
        return Err(TaskError::NotReady {
            id: task.id.clone(),
            reason: format!("it is {}", task.status),
        });
    }
    let blockers = blockers_in(tx, task)?;
    if !blockers.is_empty() {
        return Err(TaskError::NotReady {
            id: task.id.clone(),
            reason: describe_blockers(&blockers),
        });
    }
    let previous = task.assignee.replace(agent.to_owned());
    if previous.as_deref() != Some(agent) {
        task.record(agent, "assignee", previous.into(), agent.into(), None);
    }
    task.started_at = Some(Timestamp::now());
    task.attempts += 1;
    task.set_status(agent, Status::InProgress, None);
    Ok(())
}

/// Claims `task` (read in `tx`) for `agent`: refused when someone holds it.
fn claim_in(tx: &mut dyn TaskTx, agent: &str, mut task: Task) -> Result<Task, TaskError> {
    if task.status.is_held() {
        return Err(TaskError::Claimed {
            id: task.id,
            holder: task.assignee.unwrap_or_else(|| "someone".into()),
            status: task.status,
        });
    }
    start(tx, &mut task, agent)?;
    tx.save(&mut task)?;
    tracing::debug!(task = %task.id, agent, version = task.version, "task claimed");
    Ok(task)
}

/// The dependencies of `task` that are not completed, read in `tx`.
fn blockers_in(tx: &mut dyn TaskTx, task: &Task) -> Result<Vec<Blocker>, TaskError> {
    let mut blockers = Vec::new();
    for dep in &task.dependencies {
        let status = tx.read(dep)?.map(|d| d.status);
        if status != Some(Status::Completed) {
            blockers.push(Blocker {
                id: dep.clone(),
                status,
            });
        }
    }
    Ok(blockers)
}

/// Of every task of `listing`: the pending ones whose dependencies are all completed, and
/// the ids of those left blocked although they are (to repair).
#[cfg(feature = "etcd")]
fn queue_by_scan(listing: &Listing) -> (Vec<Summary>, Vec<String>) {
    let statuses = listing.statuses();
    let mut ready = Vec::new();
    let mut stuck = Vec::new();
    for task in &listing.tasks {
        let free = || unfinished_deps(task, &statuses).next().is_none();
        match task.status {
            Status::Pending if free() => ready.push(Summary::of(task)),
            Status::Blocked if task.blocked_reason.is_none() && free() => {
                stuck.push(task.id.clone());
            }
            _ => {}
        }
    }
    (ready, stuck)
}

/// The journal entry of a task written as `after` over `before`: its new status as the
/// kind (`task.claimed`, `task.completed`, `task.returned`, …), else `task.updated`.
fn changed(before: Option<&Task>, after: &Task) -> Event {
    let from = before.map(|t| t.status);
    let by = after
        .history
        .last()
        .map_or(after.created_by.as_str(), |c| c.by.as_str());
    let kind = match (from, after.status) {
        (Some(from), to) if from == to => "task.updated",
        (_, Status::InProgress) => "task.claimed",
        (Some(Status::InProgress | Status::Failed | Status::Review), Status::Pending) => {
            "task.returned"
        }
        (Some(Status::Blocked), Status::Pending) => "task.unblocked",
        (_, Status::Pending) => "task.pending",
        (_, Status::Blocked) => "task.blocked",
        (_, Status::Review) => "task.review",
        (_, Status::Completed) => "task.completed",
        (_, Status::Failed) => "task.failed",
        (_, Status::Cancelled) => "task.cancelled",
    };
    let mut data = json!({
        "status": after.status,
        "version": after.version,
        "assignee": after.assignee,
        "attempts": after.attempts,
    });
    if let Some(from) = from {
        data["from"] = json!(from);
    }
    // How long the task waited to be claimed: since its last change before the claim
    // (created, unblocked, returned).
    if kind == "task.claimed"
        && let Some(ready_since) = before.and_then(|t| t.history.last()).map(|c| c.at)
    {
        let waited = jiff::Timestamp::now().duration_since(ready_since);
        data["waited_ms"] = json!(waited.as_millis().max(0));
    }
    Event::new(kind)
        .agent(by)
        .subject(after.id.clone())
        .data(data)
}

/// The journal entry of a task created by `by`.
pub(crate) fn created(task: &Task) -> Event {
    Event::new("task.created")
        .agent(task.created_by.clone())
        .subject(task.id.clone())
        .data(json!({
            "title": task.title,
            "status": task.status,
            "dependencies": task.dependencies,
            "version": task.version,
        }))
}

/// Decodes a task record and checks what serde cannot: the id matches the file name, the
/// title is within limits.
pub(crate) fn decode(path: &Path, bytes: &[u8]) -> Result<Task, RecordError> {
    let task: Task = records::decode(path, "task", bytes)?;
    if name::of_path(path).as_deref() != Some(task.id.as_str()) {
        return Err(RecordError::corrupt(
            path,
            "task",
            format!(
                "its id is `{}` but its file name should be `{}.json`",
                task.id,
                name::file_name(&task.id)
            ),
        ));
    }
    if let Err(e) = validate_title(&task.title) {
        return Err(RecordError::corrupt(path, "task", e.to_string()));
    }
    Ok(task)
}

/// The dependencies of `task` that are not completed, judged by `statuses` (a listing's).
pub(crate) fn unfinished_deps<'a, T: TaskFacts>(
    task: &'a T,
    statuses: &'a HashMap<&str, Status>,
) -> impl Iterator<Item = Blocker> + 'a {
    task.dependencies().filter_map(|d| {
        let status = statuses.get(d).copied();
        (status != Some(Status::Completed)).then(|| Blocker {
            id: d.to_owned(),
            status,
        })
    })
}

/// Pending tasks of `listing` whose dependencies are all completed.
fn ready_of(listing: &Listing) -> Vec<&Task> {
    let statuses = listing.statuses();
    listing
        .tasks
        .iter()
        .filter(|t| t.status == Status::Pending)
        .filter(|t| unfinished_deps(*t, &statuses).next().is_none())
        .collect()
}

/// "waiting for t-1a2b3c (in_progress), t-9f8e7d (failed)".
pub fn describe_blockers(blockers: &[Blocker]) -> String {
    let list = blockers
        .iter()
        .map(|b| match b.status {
            Some(status) => format!("{} ({status})", b.id),
            None => format!("{} (missing)", b.id),
        })
        .collect::<Vec<_>>()
        .join(", ");
    format!("waiting for {list}")
}

fn dedup(items: Vec<String>) -> Vec<String> {
    let mut seen = HashSet::new();
    items
        .into_iter()
        .filter(|i| seen.insert(i.clone()))
        .collect()
}

/// A fresh short id: `t-` and 6 hex digits (published with no-clobber, retried on a clash).
fn new_id() -> String {
    let hex = Uuid::new_v4().simple().to_string();
    format!("t-{}", &hex[..6])
}

#[cfg(test)]
mod tests;
