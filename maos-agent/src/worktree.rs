//! A branch and a linked git worktree per agent.
//!
//! [`spawn`] creates branch `maos/<id>/work` (from the main worktree's HEAD unless told) and
//! a linked worktree for it beside the repository (`<repo>.worktrees/<id>`), and registers
//! the agent. From inside that worktree, workspace discovery finds the main worktree's
//! `.maos/`, so every agent shares one workspace. [`retire`] removes the worktree and the
//! branch once the branch is merged, and refuses while that would lose work.

use std::path::{Path, PathBuf};

use git2::{BranchType, Repository, StatusOptions, WorktreeAddOptions, WorktreePruneOptions};
use maos_coordination::Workspace;
use maos_coordination::agents::{AgentError, AgentRecord, AgentState, AgentStatus, Registry};
use maos_coordination::git::{GitContext, GitError};
use maos_coordination::lock::Locks;
use maos_coordination::name::{self, NameKind};
use maos_coordination::task::Tasks;
use serde::Serialize;

/// The branch checked out in the git work tree at `dir`.
pub fn checked_out(dir: &Path) -> Option<String> {
    let repo = Repository::discover(dir).ok()?;
    let head = repo.head().ok()?;
    head.shorthand().map(str::to_owned)
}

/// The files changed in the git work tree at `dir` — modified, staged or new, relative to
/// its root, ignored files left out; empty when it is not a work tree.
pub fn changed_files(dir: &Path) -> Vec<String> {
    Repository::discover(dir)
        .and_then(|repo| changed_in(&repo))
        .unwrap_or_default()
}

/// The files changed in `repo`'s work tree: modified, staged or new (each file of a new
/// folder), ignored files left out.
fn changed_in(repo: &Repository) -> Result<Vec<String>, git2::Error> {
    let mut options = StatusOptions::new();
    options
        .include_untracked(true)
        .recurse_untracked_dirs(true)
        .include_ignored(false);
    Ok(repo
        .statuses(Some(&mut options))?
        .iter()
        .filter_map(|s| s.path().map(str::to_owned))
        .collect())
}

/// A worktree operation failed.
#[derive(Debug, thiserror::Error)]
pub enum WorktreeError {
    /// git failed.
    #[error(transparent)]
    Git(#[from] GitError),
    /// Retiring would lose commits.
    #[error(
        "`{branch}` has {count} commit(s) not merged into `{into}`; merge them first (`maos merge run {branch} {into}`)"
    )]
    Unmerged {
        /// The agent's branch.
        branch: String,
        /// Where it should be merged.
        into: String,
        /// How many commits would be lost.
        count: usize,
    },
    /// The agent is running: retiring would pull its worktree from under it.
    #[error(
        "agent `{id}` is {state} (pid {pid} on {host}); stop it first, or pass --force to retire it anyway"
    )]
    Running {
        /// The agent.
        id: String,
        /// Alive or stale (a stale agent may only be paused).
        state: &'static str,
        /// Its process.
        pid: u32,
        /// Its host.
        host: String,
    },
    /// The agent still holds work: retiring would orphan it.
    #[error(
        "agent `{id}` still holds {}; pass --release to give them back, or --force",
        held.join(", ")
    )]
    Holding {
        /// The agent.
        id: String,
        /// "task t-1a2b3c (in progress)", "lock `src/db.rs`".
        held: Vec<String>,
    },
    /// Retiring would lose uncommitted files.
    #[error("the worktree {} has uncommitted changes ({}); commit or remove them first", path.display(), files.join(", "))]
    Dirty {
        /// The worktree.
        path: PathBuf,
        /// Some changed files.
        files: Vec<String>,
    },
    /// The worktree path is taken.
    #[error("{} already exists; pass another path", path.display())]
    PathTaken {
        /// The path.
        path: PathBuf,
    },
    /// The agent has no worktree.
    #[error("agent `{id}` has no worktree registered")]
    NoWorktree {
        /// The agent.
        id: String,
    },
    /// The registry failed.
    #[error(transparent)]
    Agent(#[from] AgentError),
}

impl WorktreeError {
    /// The kind of this error.
    pub fn kind(&self) -> maos_coordination::ErrorKind {
        use maos_coordination::ErrorKind;
        match self {
            WorktreeError::Git(e) => e.kind(),
            WorktreeError::Unmerged { .. }
            | WorktreeError::Running { .. }
            | WorktreeError::Holding { .. }
            | WorktreeError::Dirty { .. }
            | WorktreeError::PathTaken { .. } => ErrorKind::Conflict,
            WorktreeError::NoWorktree { .. } => ErrorKind::NotFound,
            WorktreeError::Agent(e) => e.kind(),
        }
    }
}

/// What [`spawn`] made.
#[derive(Debug, Clone, Serialize)]
pub struct Spawned {
    /// The agent.
    pub agent: String,
    /// Its branch.
    pub branch: String,
    /// Its worktree.
    pub worktree: PathBuf,
}

/// The branch of an agent: `maos/<id>/work`, with the id written as its file name
/// (`Alice` → `%alice`): git keeps branches as files, so `Alice` and `alice` must not share
/// one on a case-insensitive file system.
pub fn branch_of(id: &str) -> String {
    format!("maos/{}/work", name::file_name(id))
}

/// Creates the agent's branch (from `base`, default the main worktree's HEAD) and a linked
/// worktree at `path` (default `<repo>.worktrees/<id>` beside the repository), and registers
/// the agent.
pub fn spawn(
    ws: &Workspace,
    id: &str,
    role: Option<String>,
    base: Option<&str>,
    path: Option<&Path>,
) -> Result<Spawned, WorktreeError> {
    name::validate(NameKind::Agent, id).map_err(AgentError::from)?;
    let repo = Repository::open(ws.root())
        .git(|| format!("open the repository at {}", ws.root().display()))?;
    let branch_name = branch_of(id);
    let path = match path {
        Some(p) => p.to_owned(),
        None => default_path(ws.root(), id),
    };
    if path.exists() {
        return Err(WorktreeError::PathTaken { path });
    }
    let branch = match repo.find_branch(&branch_name, BranchType::Local) {
        Ok(branch) => branch,
        Err(_) => {
            let start = match base {
                Some(b) => repo.revparse_single(b).and_then(|o| o.peel_to_commit()),
                None => repo.head().and_then(|h| h.peel_to_commit()),
            }
            .git(|| {
                format!(
                    "find the commit to branch from ({})",
                    base.unwrap_or("HEAD")
                )
            })?;
            repo.branch(&branch_name, &start, false)
                .git(|| format!("create branch {branch_name}"))?
        }
    };
    if let Some(parent) = path.parent() {
        #[expect(
            clippy::disallowed_methods,
            reason = "the worktree's parent folder, outside .maos/"
        )]
        std::fs::create_dir_all(parent)
            .map_err(|e| GitError::io(format!("create {}", parent.display()), &e))?;
    }
    let reference = branch.into_reference();
    let mut options = WorktreeAddOptions::new();
    options.reference(Some(&reference));
    repo.worktree(&worktree_name(id), &path, Some(&options))
        .git(|| format!("add the worktree {}", path.display()))?;
    let registry = Registry::new(ws);
    let mut record = match registry.get(id)? {
        Some(existing) => existing,
        None => AgentRecord::new(
            id,
            None,
            Vec::new(),
            maos_coordination::agents::DEFAULT_HEARTBEAT,
        ),
    };
    record.status = AgentStatus::Registered;
    record.role = role.or(record.role);
    record.worktree = Some(path.clone());
    record.branch = Some(branch_name.clone());
    registry.save(&record)?;
    Ok(Spawned {
        agent: id.to_owned(),
        branch: branch_name,
        worktree: path,
    })
}

/// Removes the agent's worktree and branch once the branch is merged into `into` (default:
/// the branch checked out in the main worktree). Refuses — saying why — while the agent runs
/// (alive, or stale: it may only be paused), while its branch has commits not merged, or while
/// its worktree has uncommitted files, unless `force`. Marks the agent gone.
pub fn retire(
    ws: &Workspace,
    id: &str,
    into: Option<&str>,
    release: bool,
    force: bool,
) -> Result<PathBuf, WorktreeError> {
    name::validate(NameKind::Agent, id).map_err(AgentError::from)?;
    let registry = Registry::new(ws);
    let mut record = registry
        .get(id)?
        .ok_or_else(|| WorktreeError::NoWorktree { id: id.to_owned() })?;
    let state = record.state();
    if !force && matches!(state, AgentState::Alive | AgentState::Stale) {
        return Err(WorktreeError::Running {
            id: id.to_owned(),
            state: state.as_str(),
            pid: record.process.pid,
            host: record.process.host,
        });
    }
    let locks = Locks::new(ws);
    let tasks = Tasks::new(ws);
    let held_tasks: Vec<String> = tasks
        .list()
        .map_err(AgentError::from)?
        .tasks
        .into_iter()
        .filter(|t| t.status.is_held() && t.assignee.as_deref() == Some(id))
        .map(|t| format!("task {} ({})", t.id, t.status))
        .collect();
    let held_locks: Vec<String> = locks
        .held_by(id)
        .map_err(AgentError::from)?
        .into_iter()
        .map(|r| format!("lock `{r}`"))
        .collect();
    if release {
        let reason = format!("agent `{id}` is being retired");
        tasks
            .return_held(id, id, &reason, None)
            .map_err(AgentError::from)?;
        locks.release_all_of(id).map_err(AgentError::from)?;
    } else if !force && (!held_tasks.is_empty() || !held_locks.is_empty()) {
        return Err(WorktreeError::Holding {
            id: id.to_owned(),
            held: held_tasks.into_iter().chain(held_locks).collect(),
        });
    }
    let path = record
        .worktree
        .clone()
        .ok_or_else(|| WorktreeError::NoWorktree { id: id.to_owned() })?;
    let branch_name = record.branch.clone().unwrap_or_else(|| branch_of(id));
    let repo = Repository::open(ws.root())
        .git(|| format!("open the repository at {}", ws.root().display()))?;
    let into = match into {
        Some(i) => i.to_owned(),
        None => repo
            .head()
            .ok()
            .and_then(|h| h.shorthand().map(str::to_owned))
            .unwrap_or_else(|| "main".to_owned()),
    };
    let tip = repo
        .revparse_single(&branch_name)
        .and_then(|o| o.peel_to_commit())
        .git(|| format!("find {branch_name}"))?
        .id();
    let target = repo
        .revparse_single(&into)
        .and_then(|o| o.peel_to_commit())
        .git(|| format!("find {into}"))?
        .id();
    if !force
        && tip != target
        && !repo
            .graph_descendant_of(target, tip)
            .git(|| "compare histories".into())?
    {
        let (ahead, _) = repo
            .graph_ahead_behind(tip, target)
            .git(|| "count commits".into())?;
        return Err(WorktreeError::Unmerged {
            branch: branch_name,
            into,
            count: ahead,
        });
    }
    if path.exists() {
        let worktree_repo = Repository::open(&path).git(|| format!("open {}", path.display()))?;
        let mut files = changed_in(&worktree_repo).git(|| "read the worktree status".into())?;
        files.truncate(10);
        if !force && !files.is_empty() {
            return Err(WorktreeError::Dirty { path, files });
        }
        #[expect(
            clippy::disallowed_methods,
            reason = "removing the agent's worktree, checked clean and merged (or --force)"
        )]
        std::fs::remove_dir_all(&path)
            .map_err(|e| GitError::io(format!("remove {}", path.display()), &e))?;
    }
    if let Ok(worktree) = repo.find_worktree(&worktree_name(id)) {
        let mut prune = WorktreePruneOptions::new();
        prune.valid(true).working_tree(true);
        worktree
            .prune(Some(&mut prune))
            .git(|| "prune the worktree".into())?;
    }
    if let Ok(mut branch) = repo.find_branch(&branch_name, BranchType::Local) {
        branch.delete().git(|| format!("delete {branch_name}"))?;
    }
    record.status = AgentStatus::Gone;
    record.worktree = None;
    record.branch = None;
    record.left_at = Some(jiff::Timestamp::now());
    registry.save(&record)?;
    Ok(path)
}

/// git's name for the agent's worktree (`.git/worktrees/<name>`).
fn worktree_name(id: &str) -> String {
    format!("maos-{}", name::file_name(id))
}

fn default_path(root: &Path, id: &str) -> PathBuf {
    let repo_name = root
        .file_name()
        .map_or_else(|| "repo".into(), |n| n.to_string_lossy().into_owned());
    root.parent()
        .unwrap_or(root)
        .join(format!("{repo_name}.worktrees"))
        .join(name::file_name(id))
}
