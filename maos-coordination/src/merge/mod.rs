//! Merge coordination with git2: real conflicts between agent branches, who touched what,
//! resolution tasks, conflict forecasts, and merges that land exactly as `git merge` would
//! (invariants M1–M3).
//!
//! **M1.** [`MergeCoordinator::prepare`] works on commits and trees only: it merges the two
//! trees in memory (libgit2's `merge_commits`, the same three-way merge with rename detection
//! `git merge` does) and reads the conflicts from the resulting in-memory index. It never
//! writes the work tree, the index file or any ref.
//!
//! **M3.** [`MergeCoordinator::run`] takes the workspace's merge lock, prepares again, and
//! then fast-forwards or writes the merge commit (the merged tree, parents target then
//! source, git's default message). The target ref moves with a compare-and-swap on its old
//! value, so a concurrent move is detected and reported, never overwritten. When the target
//! branch is checked out in a work tree, that work tree must be clean; it is updated with a
//! safe checkout before the ref moves (and put back if the ref cannot move, never over an
//! edit made meanwhile: see `restore`).

mod attribution;
mod forecast;
mod resolve;
mod restore;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use git2::build::CheckoutBuilder;
use git2::{BranchType, Commit, IndexEntry, Oid, Repository, StatusOptions};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::json;

pub use attribution::{agent_of, branch_agent};
pub use forecast::{Forecast, PairConflict, last as last_forecast};
pub use resolve::{Resolution, ResolutionTask, Tracking};

use crate::channel::{self, ChannelError, Draft};
use crate::error::ErrorKind;
use crate::fs::FsError;
use crate::git::{GitContext, GitError, Libgit2Error};
use crate::journal::{self, Event};
use crate::lock::{LockError, Locks};
use crate::name::NameError;
use crate::record::RecordError;
use crate::task::TaskError;
use crate::workspace::Workspace;

/// The broadcast topic for merge notices (forecast conflicts, merges done).
pub const TOPIC: &str = "merge";
/// How long `run` waits for the merge lock.
const MERGE_LOCK_WAIT: Duration = Duration::from_secs(120);

/// A merge operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// git itself failed.
    #[error(transparent)]
    Git(#[from] GitError),
    /// No repository at the workspace root.
    #[error("no git repository at {}", path.display())]
    NoRepository {
        /// Where it was looked for.
        path: PathBuf,
        /// libgit2's error.
        #[source]
        source: Libgit2Error,
    },
    /// A branch or revision does not exist.
    #[error("no branch or commit `{name}` in {}", repo.display())]
    NotFound {
        /// What was asked for.
        name: String,
        /// The repository.
        repo: PathBuf,
    },
    /// The two have no common history.
    #[error(
        "`{source_branch}` and `{target}` have no common ancestor; git would refuse to merge unrelated histories"
    )]
    Unrelated {
        /// The source.
        source_branch: String,
        /// The target.
        target: String,
    },
    /// The merge would conflict.
    #[error("merging `{}` into `{}` conflicts in {} file(s): {}", prep.source, prep.target, prep.conflicts.len(), conflict_list(prep))]
    Conflicts {
        /// The preparation with the conflicts.
        prep: Box<Preparation>,
    },
    /// Resolution tasks for this merge are still open.
    #[error("merging `{source_branch}` into `{target}` waits for its resolution tasks: {}", open.join(", "))]
    Unresolved {
        /// The source.
        source_branch: String,
        /// The target.
        target: String,
        /// The open tasks (`id (status)`).
        open: Vec<String>,
    },
    /// The target moved while merging.
    #[error(
        "`{target}` moved while merging (it was {expected}); nothing was changed: prepare and run again"
    )]
    TargetMoved {
        /// The target.
        target: String,
        /// The commit it was expected at.
        expected: String,
    },
    /// The target is checked out in a work tree with changes.
    #[error("`{target}` is checked out in {} with uncommitted changes ({}); commit or stash them, or merge from another work tree", path.display(), files.join(", "))]
    DirtyWorktree {
        /// The target.
        target: String,
        /// The work tree.
        path: PathBuf,
        /// Some changed files.
        files: Vec<String>,
    },
    /// Updating the work trees failed part-way (or the target moved after they were
    /// updated); `state` says what each work tree and the target ref now hold.
    #[error("{context}; {state}")]
    Interrupted {
        /// What failed.
        context: String,
        /// The state left behind.
        state: String,
        /// The cause.
        #[source]
        source: Box<MergeError>,
    },
    /// git has no identity for the merge commit.
    #[error("git needs an identity for the merge commit: set user.name and user.email")]
    NoIdentity {
        /// libgit2's error.
        #[source]
        source: Libgit2Error,
    },
    /// A branch name was refused.
    #[error(transparent)]
    Name(#[from] NameError),
    /// The merge lock could not be taken.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// Filing or reading resolution tasks failed.
    #[error(transparent)]
    Task(#[from] TaskError),
    /// A notice could not be sent.
    #[error(transparent)]
    Channel(#[from] ChannelError),
    /// A tracking record is broken.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// A file could not be read or written.
    #[error(transparent)]
    Io(#[from] FsError),
}

fn conflict_list(prep: &Preparation) -> String {
    prep.conflicts
        .iter()
        .map(|c| format!("{} ({})", c.path, c.kind.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

impl MergeError {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            MergeError::Git(e) => e.kind(),
            MergeError::NoRepository { .. } | MergeError::NoIdentity { .. } => ErrorKind::Io,
            MergeError::NotFound { .. } => ErrorKind::NotFound,
            MergeError::Interrupted { source, .. } => source.kind(),
            MergeError::Unrelated { .. }
            | MergeError::Conflicts { .. }
            | MergeError::Unresolved { .. }
            | MergeError::TargetMoved { .. }
            | MergeError::DirtyWorktree { .. } => ErrorKind::Conflict,
            MergeError::Name(e) => e.kind(),
            MergeError::Lock(e) => e.kind(),
            MergeError::Task(e) => e.kind(),
            MergeError::Channel(e) => e.kind(),
            MergeError::Record(e) => e.kind(),
            MergeError::Io(e) => e.kind(),
        }
    }
}

/// What merging would take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// The target already contains the source.
    UpToDate,
    /// The target is an ancestor of the source: move it forward.
    FastForward,
    /// A merge commit with no conflict.
    CleanMerge,
    /// Conflicts must be resolved first.
    NeedsResolution,
}

impl Strategy {
    /// The name used in JSON and on screen.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::UpToDate => "up_to_date",
            Strategy::FastForward => "fast_forward",
            Strategy::CleanMerge => "clean_merge",
            Strategy::NeedsResolution => "needs_resolution",
        }
    }
}

/// What kind of conflict a file has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConflictKind {
    /// Both sides changed the same lines.
    Content,
    /// Both sides added a file at this path, with different contents.
    AddAdd,
    /// The source changed it, the target deleted it.
    ModifiedInSourceDeletedInTarget,
    /// The target changed it, the source deleted it.
    ModifiedInTargetDeletedInSource,
    /// The sides renamed or moved it differently (or renamed and changed it in conflict).
    Rename,
}

impl ConflictKind {
    /// The name used in JSON and on screen.
    pub fn as_str(self) -> &'static str {
        match self {
            ConflictKind::Content => "content",
            ConflictKind::AddAdd => "add_add",
            ConflictKind::ModifiedInSourceDeletedInTarget => "modified_in_source_deleted_in_target",
            ConflictKind::ModifiedInTargetDeletedInSource => "modified_in_target_deleted_in_source",
            ConflictKind::Rename => "rename",
        }
    }
}

/// One conflicting region of a file, in the merged text with conflict markers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hunk {
    /// The line of `<<<<<<<` (1-based).
    pub start_line: u32,
    /// The line of `>>>>>>>`.
    pub end_line: u32,
    /// Lines the target has there.
    pub target_lines: u32,
    /// Lines the source has there.
    pub source_lines: u32,
}

/// A conflicted file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conflict {
    /// The path (on the source side when the sides disagree).
    pub path: String,
    /// What kind of conflict.
    pub kind: ConflictKind,
    /// Every agent whose commits since the merge base touched the file, on either side.
    pub agents: Vec<String>,
    /// Agents on the source side, most recent first.
    pub source_agents: Vec<String>,
    /// Agents on the target side, most recent first.
    pub target_agents: Vec<String>,
    /// The conflicting regions, for content conflicts.
    pub hunks: Vec<Hunk>,
}

/// The result of [`MergeCoordinator::prepare`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Preparation {
    /// The branch (or revision) to merge.
    pub source: String,
    /// The branch to merge into.
    pub target: String,
    /// The source commit.
    pub source_commit: String,
    /// The target commit.
    pub target_commit: String,
    /// Their merge base.
    pub merge_base: String,
    /// What merging takes.
    pub strategy: Strategy,
    /// Conflicted files.
    pub conflicts: Vec<Conflict>,
    /// Every file changed on either side since the merge base.
    pub affected_files: Vec<String>,
    /// Affected files that merge without conflict.
    pub clean_files: Vec<String>,
    /// Files changed on the source side.
    pub source_files: Vec<String>,
    /// Files changed on the target side.
    pub target_files: Vec<String>,
    /// Agent → the files its commits changed (either side).
    pub agent_modifications: BTreeMap<String, Vec<String>>,
    /// When this was prepared.
    pub prepared_at: Timestamp,
}

/// What [`MergeCoordinator::run`] did.
#[derive(Debug, Clone, Serialize)]
pub struct MergeOutcome {
    /// The source.
    pub source: String,
    /// The target.
    pub target: String,
    /// What was done.
    pub strategy: Strategy,
    /// The target's commit now.
    pub commit: String,
    /// The target's commit before.
    pub previous: String,
    /// Work trees updated because the target was checked out there.
    pub updated_worktrees: Vec<PathBuf>,
}

/// Merges between branches of the repository at the workspace root.
pub struct MergeCoordinator {
    ws: Workspace,
    repo: Repository,
}

impl std::fmt::Debug for MergeCoordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MergeCoordinator")
            .field("repo", &self.repo.path())
            .finish_non_exhaustive()
    }
}

impl MergeCoordinator {
    /// Opens the git repository at the workspace root.
    pub fn open(ws: &Workspace) -> Result<Self, MergeError> {
        let repo = Repository::open(ws.root()).map_err(|source| MergeError::NoRepository {
            path: ws.root().to_owned(),
            source: source.into(),
        })?;
        Ok(Self {
            ws: ws.clone(),
            repo,
        })
    }

    /// The repository.
    pub fn repo(&self) -> &Repository {
        &self.repo
    }

    /// Works out what merging `source` into `target` takes — strategy, real conflicts, the
    /// files each side changed and the agents behind them — without changing anything (M1).
    pub fn prepare(&self, source: &str, target: &str) -> Result<Preparation, MergeError> {
        let source_commit = self.commit(source)?;
        let target_commit = self.commit(target)?;
        let (s, t) = (source_commit.id(), target_commit.id());
        let base = self
            .repo
            .merge_base(s, t)
            .map_err(|_| MergeError::Unrelated {
                source_branch: source.to_owned(),
                target: target.to_owned(),
            })?;
        let agents: std::collections::BTreeSet<String> = crate::agents::Registry::new(&self.ws)
            .list()
            .map(|(records, _)| records.into_iter().map(|r| r.id).collect())
            .unwrap_or_default();
        let is_agent = |name: &str| agents.contains(name);
        let source_side = attribution::side(&self.repo, s, Some(base), source, &is_agent)
            .git(|| format!("walk the history of `{source}`"))?;
        let target_side = attribution::side(&self.repo, t, Some(base), target, &is_agent)
            .git(|| format!("walk the history of `{target}`"))?;
        let (strategy, conflicts) = if base == s {
            (Strategy::UpToDate, Vec::new())
        } else if base == t {
            (Strategy::FastForward, Vec::new())
        } else {
            let index = self
                .repo
                .merge_commits(&target_commit, &source_commit, None)
                .git(|| format!("merge `{source}` into `{target}` in memory"))?;
            let conflicts = self.conflicts(&index, &source_side, &target_side)?;
            if conflicts.is_empty() {
                (Strategy::CleanMerge, conflicts)
            } else {
                (Strategy::NeedsResolution, conflicts)
            }
        };
        let source_files: Vec<String> = source_side.files.keys().cloned().collect();
        let target_files: Vec<String> = target_side.files.keys().cloned().collect();
        let affected: BTreeSet<String> =
            source_files.iter().chain(&target_files).cloned().collect();
        let conflicted: BTreeSet<&str> = conflicts.iter().map(|c| c.path.as_str()).collect();
        let mut agent_modifications: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for side in [&source_side, &target_side] {
            for (file, agents) in &side.files {
                for agent in agents {
                    let files = agent_modifications.entry(agent.clone()).or_default();
                    if !files.contains(file) {
                        files.push(file.clone());
                    }
                }
            }
        }
        for files in agent_modifications.values_mut() {
            files.sort();
        }
        journal::record(
            &self.ws,
            Event::new("merge.prepared")
                .subject(format!("{source}..{target}"))
                .data(json!({
                    "source": source,
                    "target": target,
                    "strategy": strategy,
                    "conflicts": conflicts.iter().map(|c| c.path.as_str()).collect::<Vec<_>>(),
                })),
        );
        Ok(Preparation {
            source: source.to_owned(),
            target: target.to_owned(),
            source_commit: s.to_string(),
            target_commit: t.to_string(),
            merge_base: base.to_string(),
            strategy,
            clean_files: affected
                .iter()
                .filter(|f| !conflicted.contains(f.as_str()))
                .cloned()
                .collect(),
            affected_files: affected.into_iter().collect(),
            conflicts,
            source_files,
            target_files,
            agent_modifications,
            prepared_at: Timestamp::now(),
        })
    }

    /// Merges `source` into `target` as `agent`, under the workspace's merge lock (M3):
    /// fast-forward, or a merge commit exactly as `git merge --no-edit` makes it. Refuses with
    /// the conflicts when the merge is not clean, and while resolution tasks filed by
    /// [`resolve`](Self::resolve) are open.
    pub fn run(
        &self,
        source: &str,
        target: &str,
        agent: &str,
        message: Option<&str>,
    ) -> Result<MergeOutcome, MergeError> {
        let _merge_lock = Locks::new(&self.ws).acquire_merge_lock(
            agent,
            &format!("merge {source} into {target}"),
            MERGE_LOCK_WAIT,
        )?;
        let tracking = resolve::load(&self.ws, source, target)?;
        if let Some(tracking) = &tracking {
            let open = tracking.open_tasks(&self.ws)?;
            if !open.is_empty() {
                journal::record(
                    &self.ws,
                    merge_event("merge.refused", agent, source, target)
                        .data(json!({"source": source, "target": target, "open_tasks": open})),
                );
                return Err(MergeError::Unresolved {
                    source_branch: source.to_owned(),
                    target: target.to_owned(),
                    open,
                });
            }
        }
        let prep = self.prepare(source, target)?;
        let previous = Oid::from_str(&prep.target_commit).git(|| "parse a commit id".into())?;
        let new = match prep.strategy {
            Strategy::NeedsResolution => {
                let files: Vec<&str> = prep.conflicts.iter().map(|c| c.path.as_str()).collect();
                journal::record(
                    &self.ws,
                    merge_event("merge.refused", agent, source, target)
                        .data(json!({"source": source, "target": target, "conflicts": files})),
                );
                return Err(MergeError::Conflicts {
                    prep: Box::new(prep),
                });
            }
            Strategy::UpToDate => previous,
            Strategy::FastForward => {
                Oid::from_str(&prep.source_commit).git(|| "parse a commit id".into())?
            }
            Strategy::CleanMerge => self.merge_commit(&prep, message)?,
        };
        let mut updated_worktrees = Vec::new();
        if new != previous {
            updated_worktrees = self.move_target(target, previous, new, &prep)?;
        }
        if tracking.is_some() {
            resolve::finish(&self.ws, source, target)?;
        }
        let outcome = MergeOutcome {
            source: source.to_owned(),
            target: target.to_owned(),
            strategy: prep.strategy,
            commit: new.to_string(),
            previous: previous.to_string(),
            updated_worktrees,
        };
        journal::record(
            &self.ws,
            merge_event("merge.run", agent, source, target).data(json!({
                "source": source,
                "target": target,
                "strategy": prep.strategy,
                "commit": outcome.commit,
                "previous": outcome.previous,
            })),
        );
        if new != previous {
            // The merge is done; a notice that cannot be sent must not turn it into an error.
            let _ = channel::broadcast(
                &self.ws,
                TOPIC,
                agent,
                Draft::new(json!({
                    "event": "merged",
                    "source": source,
                    "target": target,
                    "strategy": prep.strategy,
                    "commit": outcome.commit,
                }))
                .kind("merged"),
            );
        }
        Ok(outcome)
    }

    /// Files one resolution task per conflicted file (keeping open ones filed before),
    /// assigned to the agent that last touched the file on the source side (else on the
    /// target side), tells each assignee on the `merge` channel, and records the tasks in
    /// `.maos/merge/<source>..<target>.json` so that [`run`](Self::run) waits for them.
    pub fn resolve(
        &self,
        source: &str,
        target: &str,
        agent: &str,
    ) -> Result<Resolution, MergeError> {
        let prep = self.prepare(source, target)?;
        resolve::resolve(&self.ws, &prep, agent)
    }

    /// Checks every pair of `branches` (default: every local branch under `maos/`) for
    /// conflicts with in-memory merges, saves the result in `.maos/merge/forecast.json`, and
    /// announces conflicts not seen by the previous forecast on the `merge` topic.
    pub fn forecast(&self, branches: &[String], agent: &str) -> Result<Forecast, MergeError> {
        forecast::forecast(self, branches, agent)
    }

    /// The local branches under `maos/`, sorted.
    pub fn agent_branches(&self) -> Result<Vec<String>, MergeError> {
        let mut names = Vec::new();
        for branch in self
            .repo
            .branches(Some(BranchType::Local))
            .git(|| "list branches".into())?
        {
            let (branch, _) = branch.git(|| "list branches".into())?;
            if let Some(name) = branch.name().ok().flatten()
                && name.starts_with("maos/")
            {
                names.push(name.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    /// The commit a branch name (or any revision) points at.
    fn commit(&self, name: &str) -> Result<Commit<'_>, MergeError> {
        let not_found = || MergeError::NotFound {
            name: name.to_owned(),
            repo: self.repo.path().to_owned(),
        };
        if name.is_empty() || name.starts_with('-') {
            return Err(not_found());
        }
        let object = match self.repo.find_branch(name, BranchType::Local) {
            Ok(branch) => branch.get().peel(git2::ObjectType::Commit),
            Err(_) => self
                .repo
                .revparse_single(name)
                .and_then(|o| o.peel(git2::ObjectType::Commit)),
        };
        object
            .ok()
            .and_then(|o| o.into_commit().ok())
            .ok_or_else(not_found)
    }

    /// The conflicts recorded in an in-memory merge index, attributed to agents.
    fn conflicts(
        &self,
        index: &git2::Index,
        source_side: &attribution::Side,
        target_side: &attribution::Side,
    ) -> Result<Vec<Conflict>, MergeError> {
        let mut conflicts = Vec::new();
        for (conflict, path) in conflicted(index)? {
            let path_of = |e: &Option<IndexEntry>| {
                e.as_ref()
                    .map(|e| String::from_utf8_lossy(&e.path).into_owned())
            };
            let (ancestor, ours, theirs) = (
                path_of(&conflict.ancestor),
                path_of(&conflict.our),
                path_of(&conflict.their),
            );
            let kind = match (&ancestor, &ours, &theirs) {
                (_, Some(o), Some(t)) if o != t => ConflictKind::Rename,
                (Some(a), Some(o), Some(_)) if a != o => ConflictKind::Rename,
                (Some(_), Some(_), Some(_)) => ConflictKind::Content,
                (None, Some(_), Some(_)) => ConflictKind::AddAdd,
                (Some(_), Some(_), None) => ConflictKind::ModifiedInTargetDeletedInSource,
                (Some(_), None, Some(_)) => ConflictKind::ModifiedInSourceDeletedInTarget,
                _ => ConflictKind::Rename,
            };
            let hunks = match (&conflict.ancestor, &conflict.our, &conflict.their, kind) {
                (Some(a), Some(o), Some(t), ConflictKind::Content) => self
                    .repo
                    .merge_file_from_index(a, o, t, None)
                    .map(|r| hunks_of(r.content()))
                    .unwrap_or_default(),
                _ => Vec::new(),
            };
            let source_agents = source_side.agents(&path).to_vec();
            let target_agents = target_side.agents(&path).to_vec();
            let mut agents: Vec<String> = source_agents
                .iter()
                .chain(&target_agents)
                .cloned()
                .collect();
            agents.sort();
            agents.dedup();
            if conflicts.iter().any(|c: &Conflict| c.path == path) {
                continue;
            }
            conflicts.push(Conflict {
                path,
                kind,
                agents,
                source_agents,
                target_agents,
                hunks,
            });
        }
        conflicts.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(conflicts)
    }

    /// Writes the merge commit for a clean preparation (tree of the in-memory merge, parents
    /// target then source, git's default message) without moving any ref.
    fn merge_commit(&self, prep: &Preparation, message: Option<&str>) -> Result<Oid, MergeError> {
        let target_commit = self.commit(&prep.target_commit)?;
        let source_commit = self.commit(&prep.source_commit)?;
        let mut index = self
            .repo
            .merge_commits(&target_commit, &source_commit, None)
            .git(|| "merge in memory".into())?;
        let tree_id = index
            .write_tree_to(&self.repo)
            .git(|| "write the merged tree".into())?;
        let tree = self
            .repo
            .find_tree(tree_id)
            .git(|| "read the merged tree".into())?;
        let signature = self
            .repo
            .signature()
            .map_err(|e| MergeError::NoIdentity { source: e.into() })?;
        let message = match message {
            Some(m) => format!("{}\n", m.trim_end()),
            None => self.default_message(&prep.source, &prep.target),
        };
        self.repo
            .commit(
                None,
                &signature,
                &signature,
                &message,
                &tree,
                &[&target_commit, &source_commit],
            )
            .git(|| "write the merge commit".into())
            .map_err(MergeError::from)
    }

    /// `Merge branch 'source'` plus ` into target` unless the target is in
    /// `merge.suppressDest` (default: `main` and `master`), as `git merge` writes it.
    fn default_message(&self, source: &str, target: &str) -> String {
        let mut suppressed = Vec::new();
        if let Ok(config) = self.repo.config()
            && let Ok(mut entries) = config.multivar("merge.suppressDest", None)
        {
            while let Some(Ok(entry)) = entries.next() {
                match entry.value() {
                    Some("") => suppressed.clear(),
                    Some(v) => suppressed.push(v.to_owned()),
                    None => {}
                }
            }
        }
        if suppressed.is_empty() {
            suppressed = vec!["main".to_owned(), "master".to_owned()];
        }
        let matches = |pattern: &str| match pattern.strip_suffix('*') {
            Some(prefix) => target.starts_with(prefix),
            None => pattern == target,
        };
        if suppressed.iter().any(|p| matches(p)) {
            format!("Merge branch '{source}'\n")
        } else {
            format!("Merge branch '{source}' into {target}\n")
        }
    }

    /// Moves `refs/heads/<target>` from `previous` to `new` with a compare-and-swap, first
    /// updating (safely) every work tree that has the target checked out.
    fn move_target(
        &self,
        target: &str,
        previous: Oid,
        new: Oid,
        prep: &Preparation,
    ) -> Result<Vec<PathBuf>, MergeError> {
        let refname = format!("refs/heads/{target}");
        if self.repo.find_reference(&refname).is_err() {
            // Not a branch (a tag or a commit id): there is nothing to move.
            return Err(MergeError::NotFound {
                name: format!("branch {target}"),
                repo: self.repo.path().to_owned(),
            });
        }
        let checkouts = self.checkouts_of(&refname)?;
        let tree_of = |commit: Oid| {
            self.repo
                .find_commit(commit)
                .map(|c| c.tree_id())
                .git(|| format!("read the tree of {commit}"))
        };
        let (new_tree, old_tree) = (tree_of(new)?, tree_of(previous)?);
        for (path, worktree) in &checkouts {
            let dirty =
                dirty_files(worktree).git(|| format!("read the status of {}", path.display()))?;
            if !dirty.is_empty() {
                return Err(MergeError::DirtyWorktree {
                    target: target.to_owned(),
                    path: path.clone(),
                    files: dirty,
                });
            }
        }
        let mut updated = Vec::new();
        for (path, worktree) in &checkouts {
            // Each work tree has its own repository handle: look the tree up through it.
            let result = worktree.find_tree(new_tree).and_then(|tree| {
                worktree.checkout_tree(tree.as_object(), Some(CheckoutBuilder::new().safe()))
            });
            if let Err(source) = result {
                let restored = restore::restore(&updated, old_tree, new_tree);
                return Err(MergeError::Interrupted {
                    context: format!(
                        "merge not done: the work tree {} could not be updated",
                        path.display()
                    ),
                    state: restore::describe(target, previous, &restored),
                    source: Box::new(MergeError::Git(GitError {
                        context: format!("update the work tree {}", path.display()),
                        source: source.into(),
                    })),
                });
            }
            updated.push((path.clone(), worktree));
        }
        let log = match prep.strategy {
            Strategy::FastForward => format!("merge {}: Fast-forward", prep.source),
            _ => format!("merge {}: Merge made by MAOS (libgit2).", prep.source),
        };
        if let Err(e) = self
            .repo
            .reference_matching(&refname, new, true, previous, &log)
        {
            let restored = restore::restore(&updated, old_tree, new_tree);
            let cause =
                if e.code() == git2::ErrorCode::Modified || e.code() == git2::ErrorCode::Locked {
                    MergeError::TargetMoved {
                        target: target.to_owned(),
                        expected: previous.to_string(),
                    }
                } else {
                    MergeError::Git(GitError {
                        context: format!("move {refname}"),
                        source: e.into(),
                    })
                };
            return Err(if restored.iter().all(|r| r.kept.is_empty()) {
                cause
            } else {
                MergeError::Interrupted {
                    context: format!("merge not done: `{target}` could not be moved"),
                    state: restore::describe(target, previous, &restored),
                    source: Box::new(cause),
                }
            });
        }
        Ok(updated.into_iter().map(|(p, _)| p.clone()).collect())
    }

    /// Every work tree (the main one and linked ones) whose HEAD is `refname`.
    fn checkouts_of(&self, refname: &str) -> Result<Vec<(PathBuf, Repository)>, MergeError> {
        let mut found = Vec::new();
        let head_is = |repo: &Repository| {
            repo.find_reference("HEAD")
                .ok()
                .and_then(|h| h.symbolic_target().map(|t| t == refname))
                .unwrap_or(false)
        };
        if !self.repo.is_bare() && head_is(&self.repo) {
            let path = self.repo.workdir().map(Path::to_owned).unwrap_or_default();
            found.push((
                path,
                Repository::open(self.repo.path()).git(|| "open the repository".into())?,
            ));
        }
        let names = self.repo.worktrees().git(|| "list work trees".into())?;
        for name in names.iter().flatten() {
            let Ok(worktree) = self.repo.find_worktree(name) else {
                continue;
            };
            if worktree.validate().is_err() {
                continue; // pruned or missing
            }
            let Ok(repo) = Repository::open_from_worktree(&worktree) else {
                continue;
            };
            if head_is(&repo) {
                found.push((worktree.path().to_owned(), repo));
            }
        }
        Ok(found)
    }
}

/// The conflicts of an in-memory merge index, each with its path (the source side's when
/// the sides disagree).
fn conflicted(index: &git2::Index) -> Result<Vec<(git2::IndexConflict, String)>, MergeError> {
    if !index.has_conflicts() {
        return Ok(Vec::new());
    }
    let mut found = Vec::new();
    for conflict in index.conflicts().git(|| "read merge conflicts".into())? {
        let conflict = conflict.git(|| "read merge conflicts".into())?;
        let entry = conflict
            .their
            .as_ref()
            .or(conflict.our.as_ref())
            .or(conflict.ancestor.as_ref());
        if let Some(path) = entry.map(|e| String::from_utf8_lossy(&e.path).into_owned()) {
            found.push((conflict, path));
        }
    }
    Ok(found)
}

/// Tracked files with changes (staged or not) in a work tree; untracked files do not count
/// (a safe checkout refuses to overwrite them).
fn dirty_files(repo: &Repository) -> Result<Vec<String>, git2::Error> {
    let mut options = StatusOptions::new();
    options.include_untracked(false).include_ignored(false);
    let statuses = repo.statuses(Some(&mut options))?;
    Ok(statuses
        .iter()
        .filter(|s| !s.status().is_empty())
        .filter_map(|s| s.path().map(str::to_owned))
        .take(10)
        .collect())
}

/// The conflict regions of a merged text with markers.
fn hunks_of(content: &[u8]) -> Vec<Hunk> {
    let text = String::from_utf8_lossy(content);
    let mut hunks = Vec::new();
    let mut open: Option<(u32, Option<u32>)> = None;
    for (i, line) in text.lines().enumerate() {
        let n = i as u32 + 1;
        if line.starts_with("<<<<<<<") {
            open = Some((n, None));
        } else if line.starts_with("=======") {
            if let Some((start, None)) = open {
                open = Some((start, Some(n)));
            }
        } else if line.starts_with(">>>>>>>")
            && let Some((start, Some(middle))) = open.take()
        {
            hunks.push(Hunk {
                start_line: start,
                end_line: n,
                target_lines: middle - start - 1,
                source_lines: n - middle - 1,
            });
        }
    }
    hunks
}

/// A branch name as part of a file name: `%` becomes `%25`, `/` `%2F`, and an upper-case
/// letter `%` and the letter in lower case, so `feature/Login` and `feature/login` keep two
/// files on a case-insensitive file system.
fn encode_branch(name: &str) -> String {
    name.replace('%', "%25")
        .chars()
        .map(|c| {
            if c.is_ascii_uppercase() {
                format!("%{}", c.to_ascii_lowercase())
            } else if c == '/' {
                "%2F".to_owned()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// The journal entry of a merge of `source` into `target` by `agent`.
fn merge_event(kind: &str, agent: &str, source: &str, target: &str) -> Event {
    Event::new(kind)
        .agent(agent)
        .subject(format!("{source}..{target}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn branch_file_names_keep_case_and_slashes_apart() {
        let names = ["feature/Login", "feature/login", "feature%2Flogin", "a%b"];
        let encoded: Vec<String> = names.iter().map(|n| super::encode_branch(n)).collect();
        assert_eq!(
            encoded,
            [
                "feature%2F%login",
                "feature%2Flogin",
                "feature%252%flogin",
                "a%25b"
            ]
        );
        let mut folded: Vec<String> = encoded.iter().map(|e| e.to_lowercase()).collect();
        folded.sort();
        folded.dedup();
        assert_eq!(folded.len(), names.len());
    }
}
