//! What every command needs: the workspace, the agent identity, the output mode, and the
//! environment's tuning knobs. This is the only place the CLI reads the environment (clap
//! reads `MAOS_WORKSPACE` and `MAOS_AGENT_ID` for the global flags).

use std::path::{Path, PathBuf};
use std::time::Duration;

use maos_coordination::Workspace;
use maos_coordination::channel::WatchOptions;
use maos_coordination::lock::Locks;
use maos_coordination::name::{self, NameKind};
use maos_coordination::store::StoreSpec;
use maos_coordination::workspace::{self, DIR_NAME};

use crate::args::Cli;
use crate::error::{CliError, Exit};

/// The resolved global options.
pub struct Context {
    /// `--json` was given.
    pub json: bool,
    /// The acting agent's id (validated).
    pub agent: String,
    /// Whether the id came from `--agent` or `MAOS_AGENT_ID` (not the default).
    pub agent_given: bool,
    workspace: Option<PathBuf>,
}

impl Context {
    /// Resolves the global options of `cli`.
    pub fn new(cli: &Cli) -> Result<Self, CliError> {
        // `MAOS_PROCESS_FACTS=none`: judge every process as on a platform that can tell
        // nothing about processes (what MAOS does where it cannot read them; for tests and
        // for file systems shared between machines that share a host name).
        if std::env::var("MAOS_PROCESS_FACTS").is_ok_and(|v| v == "none") {
            maos_coordination::process::use_facts(Box::new(
                maos_coordination::process::KnowsNothing,
            ));
        }
        let agent = match &cli.agent {
            Some(agent) => agent.clone(),
            None => default_agent_id(),
        };
        name::validate(NameKind::Agent, &agent)?;
        Ok(Self {
            json: cli.json,
            agent,
            agent_given: cli.agent.is_some(),
            workspace: cli.workspace.clone(),
        })
    }

    /// Where `maos init` should create `.maos/`: `--workspace`, else the main git worktree
    /// around the current directory, else the current directory.
    pub fn init_root(&self) -> Result<PathBuf, CliError> {
        if let Some(dir) = &self.workspace {
            return Ok(strip_maos_dir(dir).to_owned());
        }
        let cwd = current_dir()?;
        Ok(workspace::git_main_worktree(&cwd).unwrap_or(cwd))
    }

    /// Opens the workspace named by `--workspace`, or the one around the current directory.
    pub fn workspace(&self) -> Result<Workspace, CliError> {
        let ws = self.workspace_in_any_store()?;
        check_store_env(&ws)?;
        Ok(ws)
    }

    /// [`workspace`](Self::workspace) whatever MAOS_STORE says (`maos store migrate`, which
    /// moves the state to where it says).
    pub fn workspace_in_any_store(&self) -> Result<Workspace, CliError> {
        let ws = match &self.workspace {
            Some(dir) => Workspace::open(strip_maos_dir(dir))?,
            None => Workspace::discover(&current_dir()?)?,
        };
        Ok(ws.with_kernel_lock_wait(kernel_lock_wait(
            maos_coordination::fs::DEFAULT_KERNEL_LOCK_WAIT,
        )))
    }

    /// For hooks and guards, which must never hold up the editor or git for long: the
    /// workspace named by `--workspace`, else the one around `start`; `None` when there is
    /// none. Kernel locks are waited for `wait` unless MAOS_LOCK_TIMEOUT says otherwise.
    pub fn workspace_near(
        &self,
        start: &Path,
        wait: Duration,
    ) -> Result<Option<Workspace>, CliError> {
        let ws = match &self.workspace {
            Some(dir) => Workspace::open(strip_maos_dir(dir))?,
            None => match Workspace::discover(start) {
                Ok(ws) => ws,
                Err(workspace::WorkspaceError::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(e.into()),
            },
        };
        Ok(Some(ws.with_kernel_lock_wait(kernel_lock_wait(wait))))
    }

    /// The workspace's locks, with `MAOS_LOCK_RECHECK_MS` (how often a waiter looks again
    /// without being woken) applied.
    pub fn locks(&self) -> Result<Locks, CliError> {
        let locks = Locks::new(&self.workspace()?);
        Ok(
            match std::env::var("MAOS_LOCK_RECHECK_MS")
                .ok()
                .and_then(|v| v.parse().ok())
            {
                Some(ms) => locks.with_recheck(Duration::from_millis(ms)),
                None => locks,
            },
        )
    }

    /// How watchers wait: `MAOS_WATCH=poll` turns kernel notifications off;
    /// `MAOS_POLL_MS` and `MAOS_RESCAN_MS` tune the polling and safety-rescan periods.
    pub fn watch_options(&self) -> WatchOptions {
        let defaults = WatchOptions::default();
        let millis = |var: &str, default: Duration| {
            std::env::var(var)
                .ok()
                .and_then(|v| v.parse().ok())
                .map_or(default, Duration::from_millis)
        };
        WatchOptions {
            use_notify: std::env::var("MAOS_WATCH").map_or(true, |v| v != "poll"),
            poll_interval: millis("MAOS_POLL_MS", defaults.poll_interval),
            rescan_interval: millis("MAOS_RESCAN_MS", defaults.rescan_interval),
        }
    }
}

/// `MAOS_GUARD=off`: the pre-commit guard checks nothing.
pub fn guard_off() -> bool {
    std::env::var("MAOS_GUARD").is_ok_and(|v| v == "off")
}

/// The user's home folder (`HOME`).
pub fn home_dir() -> Result<PathBuf, CliError> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| {
            CliError::new(
                crate::error::Exit::Error,
                anyhow::anyhow!("HOME is not set: cannot find the user's settings"),
            )
        })
}

/// Codex's home folder: `CODEX_HOME`, else `~/.codex`.
pub fn codex_home() -> Result<PathBuf, CliError> {
    match std::env::var_os("CODEX_HOME").filter(|h| !h.is_empty()) {
        Some(dir) => Ok(PathBuf::from(dir)),
        None => Ok(home_dir()?.join(".codex")),
    }
}

/// How long a command waits for a short kernel lock held by another process (a stopped
/// one must not hang every command): MAOS_LOCK_TIMEOUT seconds, else `default`.
/// MAOS_STORE names where the state should be (what `maos init` records): a workspace that
/// records another store is refused rather than used with the wrong state.
fn check_store_env(ws: &Workspace) -> Result<(), CliError> {
    let Ok(text) = std::env::var("MAOS_STORE") else {
        return Ok(());
    };
    let wanted = StoreSpec::parse(&text)?;
    let recorded = ws.store().spec();
    if wanted == recorded {
        return Ok(());
    }
    Err(CliError::new(
        Exit::Conflict,
        anyhow::anyhow!(
            "MAOS_STORE is `{wanted}` but {} records the store `{recorded}`",
            ws.dir().join("maos.json").display()
        ),
    )
    .with_hint(format!(
        "unset MAOS_STORE, or move the state with `maos store migrate --to {wanted}`"
    )))
}

fn kernel_lock_wait(default: Duration) -> Duration {
    std::env::var("MAOS_LOCK_TIMEOUT")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .unwrap_or(default)
}

/// Accepts both the workspace root and its `.maos/` folder.
fn strip_maos_dir(dir: &Path) -> &Path {
    match (dir.file_name(), dir.parent()) {
        (Some(name), Some(parent)) if name == DIR_NAME => parent,
        _ => dir,
    }
}

pub fn current_dir() -> Result<PathBuf, CliError> {
    std::env::current_dir().map_err(|e| {
        CliError::new(
            crate::error::Exit::Error,
            anyhow::Error::new(e).context("cannot read the current directory"),
        )
    })
}

/// `$USER@<hostname>` in lower case (a Mac's `Johns-MacBook-Pro` gives a plain file name),
/// with anything a name may not contain replaced by `-`.
fn default_agent_id() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "agent".into());
    let host = maos_coordination::process::host_name();
    let id: String = format!("{user}@{host}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-@+=".contains(c) {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(name::MAX_SEGMENT_LEN)
        .collect();
    id.trim_start_matches(['.', '-']).to_owned()
}
