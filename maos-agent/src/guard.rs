//! The pre-commit guard: a git `pre-commit` hook that refuses a commit of files another
//! agent holds (an exclusive reservation covering them, or a lock on them).
//!
//! [`install`] writes the hook into the folder git runs hooks from — `core.hooksPath` when
//! set, else the repository's common `hooks/` folder, which every linked worktree shares.
//! A `pre-commit` hook already there is kept as `pre-commit.maos-chained` and run after the
//! check (with the same arguments), and [`uninstall`] puts it back. The hook runs
//! `maos guard check --staged`; `MAOS_GUARD=off` (or `git commit --no-verify`) skips it, and
//! a check that cannot run (no `maos` on PATH, a broken workspace) lets the commit through
//! with a warning: only a refusal stops it.
//!
//! [`check`] decides: the staged paths ([`staged_paths`]) held by agents other than the
//! ones the commit speaks for ([`committers`]).

use std::path::{Path, PathBuf};

use git2::Repository;
use maos_coordination::Workspace;
use maos_coordination::agents::AgentError;
use maos_coordination::fs::{self, FsError};
use maos_coordination::git::{GitContext, GitError};
use maos_coordination::lock::{LockError, LockInfo, Reservations};

use crate::session;

/// The first line after the shebang of MAOS's hook: how it knows its own.
pub const MARK: &str = "# maos guard:";
/// Where an existing `pre-commit` hook is kept while the guard is installed.
pub const CHAINED: &str = "pre-commit.maos-chained";
/// The exit code of `maos guard check` when it refuses (the CLI's conflict code).
pub const REFUSED_EXIT: i32 = 5;

/// A guard operation failed.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    /// git failed.
    #[error(transparent)]
    Git(#[from] GitError),
    /// A hook file could not be read or written.
    #[error(transparent)]
    Io(#[from] FsError),
    /// Reading the locks and reservations failed.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// Reading the registry or sessions failed.
    #[error(transparent)]
    Agent(#[from] AgentError),
    /// A chained hook is in the way.
    #[error(
        "{} exists, but the pre-commit hook is not MAOS's: move one of them away first",
        path.display()
    )]
    ChainedInTheWay {
        /// The chained hook's path.
        path: PathBuf,
    },
}

impl GuardError {
    /// The kind of this error.
    pub fn kind(&self) -> maos_coordination::ErrorKind {
        match self {
            GuardError::Git(e) => e.kind(),
            GuardError::Io(e) => e.kind(),
            GuardError::Lock(e) => e.kind(),
            GuardError::Agent(e) => e.kind(),
            GuardError::ChainedInTheWay { .. } => maos_coordination::ErrorKind::Conflict,
        }
    }
}

/// What [`install`] or [`uninstall`] did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HookChange {
    /// The `pre-commit` hook.
    pub hook: PathBuf,
    /// The user's own hook, kept and chained (install) or put back (uninstall).
    pub chained: Option<PathBuf>,
    /// False when there was nothing to do (already installed, or not installed).
    pub changed: bool,
}

/// The folder git runs hooks from for the work tree at `dir`.
pub fn hooks_dir(dir: &Path) -> Result<PathBuf, GuardError> {
    let repo = Repository::discover(dir)
        .git(|| format!("find the repository around {}", dir.display()))?;
    let configured = repo
        .config()
        .git(|| "read the git configuration".into())?
        .get_path("core.hooksPath")
        .ok();
    Ok(match configured {
        // Relative to where git runs hooks: the work tree's top.
        Some(path) if path.is_relative() => repo.workdir().unwrap_or(repo.path()).join(path),
        Some(path) => path,
        None => repo.commondir().join("hooks"),
    })
}

/// Installs the guard for the repository around `dir`, calling `maos` (the path of the
/// binary; `maos` on PATH is tried when it is gone). Idempotent.
pub fn install(dir: &Path, maos: &Path) -> Result<HookChange, GuardError> {
    let hooks = hooks_dir(dir)?;
    let hook = hooks.join("pre-commit");
    let chained = hooks.join(CHAINED);
    let existing = fs::read_if_exists(&hook)?;
    if existing.as_deref().is_some_and(is_ours) {
        let kept = chained.exists().then_some(chained);
        return Ok(HookChange {
            hook,
            chained: kept,
            changed: false,
        });
    }
    fs::create_dir_all(&hooks)?;
    let kept = if existing.is_some() {
        if chained.exists() {
            return Err(GuardError::ChainedInTheWay { path: chained });
        }
        rename(&hook, &chained)?;
        Some(chained)
    } else {
        None
    };
    write_executable(&hook, &script(maos))?;
    Ok(HookChange {
        hook,
        chained: kept,
        changed: true,
    })
}

/// Removes the guard from the repository around `dir`, putting back the hook it chained.
pub fn uninstall(dir: &Path) -> Result<HookChange, GuardError> {
    let hooks = hooks_dir(dir)?;
    let hook = hooks.join("pre-commit");
    let chained = hooks.join(CHAINED);
    if !fs::read_if_exists(&hook)?.as_deref().is_some_and(is_ours) {
        return Ok(HookChange {
            hook,
            chained: None,
            changed: false,
        });
    }
    let restored = if chained.exists() {
        rename(&chained, &hook)?;
        Some(hook.clone())
    } else {
        fs::remove_file_if_exists(&hook)?;
        None
    };
    Ok(HookChange {
        hook,
        chained: restored,
        changed: true,
    })
}

fn is_ours(script: &[u8]) -> bool {
    String::from_utf8_lossy(script)
        .lines()
        .take(3)
        .any(|l| l.starts_with(MARK))
}

/// The hook: the check (unless MAOS_GUARD=off), then the chained hook.
fn script(maos: &Path) -> String {
    let maos = maos.display().to_string().replace('\'', "'\\''");
    format!(
        r#"#!/bin/sh
{MARK} refuses a commit of files another agent holds.
# Installed by `maos guard install`; `maos guard uninstall` removes it and restores the hook
# it chained. Skip it once with MAOS_GUARD=off or `git commit --no-verify`.
if [ "${{MAOS_GUARD:-on}}" != "off" ]; then
    maos='{maos}'
    [ -x "$maos" ] || maos=maos
    if command -v "$maos" >/dev/null 2>&1; then
        "$maos" guard check --staged
        status=$?
        if [ "$status" -eq {REFUSED_EXIT} ]; then
            exit 1
        elif [ "$status" -ne 0 ]; then
            echo "maos guard: the check failed (exit $status); the commit was not checked" >&2
        fi
    else
        echo "maos guard: maos is not on PATH; the commit was not checked" >&2
    fi
fi
chained="$(dirname "$0")/{CHAINED}"
if [ -x "$chained" ]; then
    exec "$chained" "$@"
fi
exit 0
"#
    )
}

fn rename(from: &Path, to: &Path) -> Result<(), GuardError> {
    #[expect(
        clippy::disallowed_methods,
        reason = "a git hook in the repository's hooks folder, outside .maos/"
    )]
    std::fs::rename(from, to).map_err(|e| FsError::new("rename", from, e))?;
    Ok(())
}

fn write_executable(path: &Path, text: &str) -> Result<(), GuardError> {
    use std::os::unix::fs::PermissionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let staged = maos_coordination::atomic::stage(
        dir,
        text.as_bytes(),
        maos_coordination::atomic::Durability::Fsync,
    )?;
    std::fs::set_permissions(staged.path(), std::fs::Permissions::from_mode(0o755))
        .map_err(|e| FsError::new("set permissions of", staged.path(), e))?;
    staged.replace(path)?;
    Ok(())
}

/// The paths a commit from the work tree at `dir` would change: everything staged (added,
/// changed, deleted; both sides of a rename), relative to the work tree's top.
pub fn staged_paths(dir: &Path) -> Result<Vec<String>, GuardError> {
    let repo = Repository::discover(dir)
        .git(|| format!("find the repository around {}", dir.display()))?;
    let head = repo.head().ok().and_then(|h| h.peel_to_tree().ok());
    let index = repo.index().git(|| "read the index".into())?;
    let diff = repo
        .diff_tree_to_index(head.as_ref(), Some(&index), None)
        .git(|| "compare the index with HEAD".into())?;
    let mut paths: Vec<String> = diff
        .deltas()
        .flat_map(|d| [d.old_file().path(), d.new_file().path()])
        .flatten()
        .filter_map(|p| p.to_str().map(str::to_owned))
        .collect();
    paths.sort();
    paths.dedup();
    Ok(paths)
}

/// The agents a commit from the work tree at `dir` speaks for: `given` when the committer
/// named itself (`MAOS_AGENT_ID`); else the agent registered with that work tree, the
/// editor sessions working in it, and `fallback` (the person at the terminal).
pub fn committers(
    ws: &Workspace,
    dir: &Path,
    given: Option<&str>,
    fallback: &str,
) -> Result<Vec<String>, GuardError> {
    if let Some(agent) = given {
        return Ok(vec![agent.to_owned()]);
    }
    let top = maos_coordination::workspace::git_worktree_root(dir).unwrap_or(dir.to_owned());
    let mut agents = session::agents_in_worktree(ws, &top)?;
    if let Some(registered) = session::agent_of_worktree(ws, &top)? {
        agents.push(registered);
    }
    agents.push(fallback.to_owned());
    Ok(agents)
}

/// One path a commit may not change: held exclusively by another agent.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// The repository path.
    pub path: String,
    /// What holds it (the first exclusive claim).
    pub claim: LockInfo,
}

/// The `paths` that agents other than `committers` hold exclusively (a lock on the path, or
/// an exclusive reservation covering it); shared reservations do not refuse a commit.
pub fn check(
    ws: &Workspace,
    paths: &[String],
    committers: &[String],
) -> Result<Vec<Refusal>, GuardError> {
    Ok(Reservations::new(ws)
        .claims_on_each(paths, committers)?
        .into_iter()
        .filter_map(|(path, claims)| {
            let claim = claims.into_iter().find(|c| !c.shared)?;
            Some(Refusal { path, claim })
        })
        .collect())
}
