//! The agent registry (`.maos/agents/<id>.json`) and recovery from agents that died.
//!
//! An agent record says which process runs the agent (host, boot id, pid, start time), its
//! role and capabilities, what it works on, and when it last gave a heartbeat. From that
//! every process can judge an agent **alive**, **stale** (no heartbeat for
//! [`STALE_AFTER_BEATS`] intervals), **dead** (its process is provably gone on this host),
//! **gone** (it left) or **registered** (set up by `maos agent spawn`, not running yet).
//!
//! **Recovery (T5).** The tasks a dead or stale agent holds go back to the ready queue — or
//! are marked failed once they were tried [`RecoveryOptions::max_attempts`] times — with a
//! history entry; its locks, places in line and wait records are removed; a notice goes to
//! the `agents` topic. [`recover`] runs under a kernel lock on `agents/.lock`, so two
//! processes recovering at once do the work once. It runs lazily inside
//! [`Tasks::ready`](crate::task::Tasks::ready) and claims, so no daemon is needed.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::atomic::{self, Durability};
use crate::channel::{self, ChannelError, Draft};
use crate::error::ErrorKind;
use crate::fs::{self, FileLock, FsError};
use crate::lock::{LockError, Locks};
use crate::name::{self, NameError, NameKind};
use crate::process::{Liveness, ProcessIdentity};
use crate::record::{self, RecordError};
use crate::task::{TaskError, Tasks};
use crate::workspace::Workspace;

/// The broadcast topic for agent events (recoveries).
pub const TOPIC: &str = "agents";
/// The heartbeat interval when none is given.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(5);
/// An agent is stale after this many heartbeat intervals without one.
pub const STALE_AFTER_BEATS: u32 = 6;
/// How many times a task may be claimed before an abandoned or failed attempt marks it
/// failed for good, unless configured otherwise.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;

/// An agent operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The agent id was refused.
    #[error(transparent)]
    Name(#[from] NameError),
    /// The agent id is in use by a live process.
    #[error(
        "agent `{id}` is already running (pid {pid} on {host}); choose another id or stop it first"
    )]
    AlreadyRunning {
        /// The agent.
        id: String,
        /// Its process.
        pid: u32,
        /// Its host.
        host: String,
    },
    /// No such agent.
    #[error("no agent `{id}` is registered (there is no {})", path.display())]
    NotFound {
        /// The agent.
        id: String,
        /// Where its record would be.
        path: PathBuf,
    },
    /// Returning tasks failed.
    #[error(transparent)]
    Task(#[from] TaskError),
    /// Releasing locks failed.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// A notice could not be sent.
    #[error(transparent)]
    Channel(#[from] ChannelError),
    /// A record is broken.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// A file could not be read or written.
    #[error(transparent)]
    Io(#[from] FsError),
}

impl AgentError {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            AgentError::Name(e) => e.kind(),
            AgentError::AlreadyRunning { .. } => ErrorKind::Conflict,
            AgentError::NotFound { .. } => ErrorKind::NotFound,
            AgentError::Task(e) => e.kind(),
            AgentError::Lock(e) => e.kind(),
            AgentError::Channel(e) => e.kind(),
            AgentError::Record(e) => e.kind(),
            AgentError::Io(e) => e.kind(),
        }
    }
}

/// What an agent says of itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentStatus {
    /// Running (or believed to be).
    Active,
    /// Set up (worktree, branch) but no process runs it.
    Registered,
    /// Left, or was recovered after dying.
    Gone,
}

/// What others can tell of an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    /// Heartbeating.
    Alive,
    /// Its process may live, but it missed [`STALE_AFTER_BEATS`] heartbeats.
    Stale,
    /// Its process is provably gone.
    Dead,
    /// It left.
    Gone,
    /// Registered, not running.
    Registered,
}

impl AgentState {
    /// The name used in JSON and on screen.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentState::Alive => "alive",
            AgentState::Stale => "stale",
            AgentState::Dead => "dead",
            AgentState::Gone => "gone",
            AgentState::Registered => "registered",
        }
    }
}

/// `.maos/agents/<id>.json` (fields in this order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentRecord {
    /// The agent id.
    pub id: String,
    /// Its role.
    #[serde(default)]
    pub role: Option<String>,
    /// What it can do (matched against task tags and roles by tools).
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// What it says of itself.
    pub status: AgentStatus,
    /// The task it works on.
    #[serde(default)]
    pub current_task: Option<String>,
    /// Its process.
    pub process: ProcessIdentity,
    /// When it joined.
    pub started_at: Timestamp,
    /// Its last heartbeat.
    pub last_heartbeat: Timestamp,
    /// How often it heartbeats, in milliseconds.
    pub heartbeat_interval_ms: u64,
    /// When it left.
    #[serde(default)]
    pub left_at: Option<Timestamp>,
    /// Its git worktree, when `maos agent spawn` made one.
    #[serde(default)]
    pub worktree: Option<PathBuf>,
    /// Its branch, when `maos agent spawn` made one.
    #[serde(default)]
    pub branch: Option<String>,
    /// Tasks it completed.
    #[serde(default)]
    pub completed: u64,
    /// Task attempts that failed.
    #[serde(default)]
    pub failed: u64,
    /// The same counts per task tag: the agent's record for each kind of task.
    #[serde(default)]
    pub by_tag: std::collections::BTreeMap<String, TagRecord>,
}

/// Finished and failed attempts at tasks carrying one tag.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagRecord {
    /// Completed.
    pub completed: u64,
    /// Failed.
    pub failed: u64,
}

impl AgentRecord {
    /// Counts a finished attempt at a task with `tags`.
    pub fn count(&mut self, completed: bool, tags: &[String]) {
        let bump = |c: &mut u64, f: &mut u64| {
            if completed {
                *c += 1;
            } else {
                *f += 1;
            }
        };
        bump(&mut self.completed, &mut self.failed);
        for tag in tags {
            let r = self.by_tag.entry(tag.clone()).or_default();
            bump(&mut r.completed, &mut r.failed);
        }
    }

    /// Completed over tried, for tasks with any of `tags` when the agent has tried such
    /// tasks, else over all its tasks; 1.0 with no history.
    pub fn success_rate(&self, tags: &[String]) -> f64 {
        let (mut completed, mut failed) = (0, 0);
        for tag in tags {
            if let Some(r) = self.by_tag.get(tag) {
                completed += r.completed;
                failed += r.failed;
            }
        }
        if completed + failed == 0 {
            (completed, failed) = (self.completed, self.failed);
        }
        if completed + failed == 0 {
            1.0
        } else {
            completed as f64 / (completed + failed) as f64
        }
    }
}

impl AgentRecord {
    /// A record for `id` run by this process, joining now.
    pub fn new(
        id: &str,
        role: Option<String>,
        capabilities: Vec<String>,
        heartbeat: Duration,
    ) -> Self {
        let now = Timestamp::now();
        Self {
            id: id.to_owned(),
            role,
            capabilities,
            status: AgentStatus::Active,
            current_task: None,
            process: ProcessIdentity::current(),
            started_at: now,
            last_heartbeat: now,
            heartbeat_interval_ms: heartbeat.as_millis().try_into().unwrap_or(u64::MAX),
            left_at: None,
            worktree: None,
            branch: None,
            completed: 0,
            failed: 0,
            by_tag: Default::default(),
        }
    }

    /// Alive, stale, dead, gone or registered, judged now.
    pub fn state(&self) -> AgentState {
        match self.status {
            AgentStatus::Gone => AgentState::Gone,
            AgentStatus::Registered => AgentState::Registered,
            AgentStatus::Active if self.process.liveness() == Liveness::Dead => AgentState::Dead,
            AgentStatus::Active if self.heartbeat_age() > self.stale_after() => AgentState::Stale,
            AgentStatus::Active => AgentState::Alive,
        }
    }

    /// Time since the last heartbeat.
    pub fn heartbeat_age(&self) -> SignedDuration {
        Timestamp::now().duration_since(self.last_heartbeat)
    }

    fn stale_after(&self) -> SignedDuration {
        SignedDuration::from_millis(
            i64::try_from(
                self.heartbeat_interval_ms
                    .max(1)
                    .saturating_mul(u64::from(STALE_AFTER_BEATS)),
            )
            .unwrap_or(i64::MAX),
        )
    }
}

/// The agents of a workspace.
#[derive(Debug, Clone)]
pub struct Registry {
    ws: Workspace,
    dir: PathBuf,
}

impl Registry {
    /// The registry of `ws`.
    pub fn new(ws: &Workspace) -> Self {
        Self {
            dir: ws.dir().join("agents"),
            ws: ws.clone(),
        }
    }

    /// The record file of `id`.
    pub fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// Writes an agent's record (the agent itself, or recovery under the registry lock).
    pub fn save(&self, record: &AgentRecord) -> Result<(), AgentError> {
        name::validate(NameKind::Agent, &record.id)?;
        fs::create_dir_all(&self.dir)?;
        atomic::write_replace(
            &self.ws.tmp_dir(),
            &self.path(&record.id),
            &record::encode(record),
            Durability::Buffered,
        )?;
        Ok(())
    }

    /// One agent's record, if registered.
    pub fn get(&self, id: &str) -> Result<Option<AgentRecord>, AgentError> {
        name::validate(NameKind::Agent, id)?;
        let path = self.path(id);
        match fs::read_if_exists(&path)? {
            Some(bytes) => Ok(Some(record::decode(&path, "agent record", &bytes)?)),
            None => Ok(None),
        }
    }

    /// Every readable record (sorted by id), and the broken files.
    pub fn list(&self) -> Result<(Vec<AgentRecord>, Vec<RecordError>), AgentError> {
        let mut names = fs::list_names(&self.dir)?;
        names.sort();
        let (mut records, mut broken) = (Vec::new(), Vec::new());
        for name in names
            .iter()
            .filter(|n| n.ends_with(".json") && !n.starts_with('.'))
        {
            match record::read::<AgentRecord>(&self.dir.join(name), "agent record") {
                Ok(r) => records.push(r),
                Err(RecordError::Io(e)) if e.is_not_found() => {}
                Err(e) => broken.push(e),
            }
        }
        Ok((records, broken))
    }

    /// The kernel lock serializing recoveries.
    fn lock(&self) -> Result<FileLock, FsError> {
        fs::create_dir_all(&self.dir)?;
        FileLock::acquire(&self.dir.join(".lock"), &Mutex::new(None))
    }
}

/// How recovery judges and limits.
#[derive(Debug, Clone, Copy)]
pub struct RecoveryOptions {
    /// Recover stale agents too (not only dead ones).
    pub include_stale: bool,
    /// A task claimed this many times is marked failed instead of returned.
    pub max_attempts: u32,
}

impl Default for RecoveryOptions {
    fn default() -> Self {
        Self {
            include_stale: true,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
        }
    }
}

/// What recovery did about one agent.
#[derive(Debug, Clone, Serialize)]
pub struct Recovered {
    /// The agent.
    pub agent: String,
    /// Dead or stale.
    pub state: AgentState,
    /// Tasks returned to the ready queue.
    pub returned: Vec<String>,
    /// Tasks marked failed (attempt limit reached).
    pub failed: Vec<String>,
    /// Locks released.
    pub locks: Vec<String>,
}

/// Recovers from every dead (and, with `include_stale`, stale) agent: see the module docs.
pub fn recover(ws: &Workspace, options: RecoveryOptions) -> Result<Vec<Recovered>, AgentError> {
    let registry = Registry::new(ws);
    if !registry.dir.is_dir() {
        return Ok(Vec::new());
    }
    let _lock = registry.lock()?;
    let (records, _) = registry.list()?;
    let mut report = Vec::new();
    for mut agent in records {
        let state = agent.state();
        let due =
            state == AgentState::Dead || (options.include_stale && state == AgentState::Stale);
        if !due {
            continue;
        }
        let reason = match state {
            AgentState::Dead => format!(
                "agent `{}` died (pid {} on {} is gone)",
                agent.id, agent.process.pid, agent.process.host
            ),
            _ => format!(
                "agent `{}` went stale (no heartbeat for {}s)",
                agent.id,
                agent.heartbeat_age().as_secs()
            ),
        };
        let (returned, failed) = Tasks::new(ws).return_held(
            &agent.id,
            crate::task::RECOVERY,
            &reason,
            Some(options.max_attempts),
        )?;
        let locks = Locks::new(ws).release_all_of(&agent.id, state == AgentState::Stale)?;
        agent.status = AgentStatus::Gone;
        agent.current_task = None;
        agent.left_at = Some(Timestamp::now());
        registry.save(&agent)?;
        let recovered = Recovered {
            agent: agent.id.clone(),
            state,
            returned: returned.iter().map(|t| t.id.clone()).collect(),
            failed: failed.iter().map(|t| t.id.clone()).collect(),
            locks,
        };
        // The recovery itself is done; a notice that cannot be sent must not undo it.
        let _ = channel::broadcast(
            ws,
            TOPIC,
            &agent.id,
            Draft::new(json!({
                "event": "recovered",
                "agent": recovered.agent,
                "reason": reason,
                "returned": recovered.returned,
                "failed": recovered.failed,
                "locks": recovered.locks,
            }))
            .kind("agent-recovered"),
        );
        report.push(recovered);
    }
    Ok(report)
}

/// Recovery as done inside `ready` and `claim`: only when some agent looks dead or stale.
pub(crate) fn recover_lazily(ws: &Workspace) -> Result<(), AgentError> {
    let registry = Registry::new(ws);
    let (records, _) = registry.list()?;
    if records
        .iter()
        .any(|r| matches!(r.state(), AgentState::Dead | AgentState::Stale))
    {
        recover(ws, RecoveryOptions::default())?;
    }
    Ok(())
}

/// The agent to give a task needing `role` and `requires`, tagged `tags`, to: among agents
/// alive or registered whose role matches (any role when `role` is `None`) and who have every
/// required capability, the one with the least work in progress (tasks in progress or pending
/// and assigned to it), then the best past success rate for that kind of task (its record on
/// tasks with those tags, else overall), then the smallest id. `None` when no agent fits.
pub fn best_agent_for(
    ws: &Workspace,
    role: Option<&str>,
    requires: &[String],
    tags: &[String],
) -> Result<Option<String>, AgentError> {
    let (records, _) = Registry::new(ws).list()?;
    let listing = Tasks::new(ws).list()?;
    let workload = |id: &str| {
        listing
            .tasks
            .iter()
            .filter(|t| t.assignee.as_deref() == Some(id))
            .filter(|t| {
                matches!(
                    t.status,
                    crate::task::Status::InProgress | crate::task::Status::Pending
                )
            })
            .count()
    };
    let success = |r: &AgentRecord| r.success_rate(tags);
    let best = records
        .iter()
        .filter(|r| matches!(r.state(), AgentState::Alive | AgentState::Registered))
        .filter(|r| role.is_none_or(|role| r.role.as_deref() == Some(role)))
        .filter(|r| requires.iter().all(|c| r.capabilities.contains(c)))
        .min_by(|a, b| {
            workload(&a.id)
                .cmp(&workload(&b.id))
                .then(success(b).total_cmp(&success(a)))
                .then(a.id.cmp(&b.id))
        });
    Ok(best.map(|r| r.id.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::{NewTask, Pick};

    #[test]
    fn work_goes_to_the_capable_agent_with_least_in_progress_then_best_record() {
        let dir = tempfile::tempdir().unwrap();
        let ws = Workspace::init(dir.path()).unwrap().workspace;
        let registry = Registry::new(&ws);
        let agent = |id: &str, role: &str, caps: &[&str], completed: u64, failed: u64| {
            let mut r = AgentRecord::new(
                id,
                Some(role.into()),
                caps.iter().map(|c| c.to_string()).collect(),
                DEFAULT_HEARTBEAT,
            );
            r.completed = completed;
            r.failed = failed;
            registry.save(&r).unwrap();
        };
        agent("ann", "coder", &["rust"], 5, 5);
        agent("bob", "coder", &["rust", "sql"], 9, 1);
        agent("cy", "coder", &["rust"], 9, 1);
        agent("dee", "reviewer", &["rust", "sql"], 10, 0);
        let rust = vec!["rust".to_owned()];
        // Equal workload: best success rate, then id.
        assert_eq!(
            best_agent_for(&ws, Some("coder"), &rust, &[])
                .unwrap()
                .as_deref(),
            Some("bob")
        );
        // Capabilities filter.
        assert_eq!(
            best_agent_for(&ws, Some("coder"), &["sql".into()], &[])
                .unwrap()
                .as_deref(),
            Some("bob")
        );
        assert_eq!(
            best_agent_for(&ws, Some("coder"), &["go".into()], &[]).unwrap(),
            None
        );
        // Workload first: bob gets a task in progress, cy is next.
        let tasks = Tasks::new(&ws);
        let id = tasks.create("p", NewTask::new("t"), None).unwrap().id;
        tasks.claim("bob", Pick::Named(&id)).unwrap();
        assert_eq!(
            best_agent_for(&ws, Some("coder"), &rust, &[])
                .unwrap()
                .as_deref(),
            Some("cy")
        );
        // A dead agent is not a candidate.
        let mut dead =
            AgentRecord::new("aaa", Some("coder".into()), rust.clone(), DEFAULT_HEARTBEAT);
        dead.process.boot_id = "another-boot".into();
        registry.save(&dead).unwrap();
        assert_eq!(
            best_agent_for(&ws, Some("coder"), &rust, &[])
                .unwrap()
                .as_deref(),
            Some("cy")
        );
    }

    #[test]
    fn the_record_for_that_kind_of_task_counts_first() {
        let dir = tempfile::tempdir().unwrap();
        let ws = Workspace::init(dir.path()).unwrap().workspace;
        let registry = Registry::new(&ws);
        let db = vec!["db".to_owned()];
        let mut specialist = AgentRecord::new("spec", None, vec![], DEFAULT_HEARTBEAT);
        for _ in 0..4 {
            specialist.count(true, &db);
        }
        for _ in 0..6 {
            specialist.count(false, &["ui".to_owned()]);
        }
        let mut generalist = AgentRecord::new("gen", None, vec![], DEFAULT_HEARTBEAT);
        for _ in 0..8 {
            generalist.count(true, &[]);
        }
        generalist.count(false, &db);
        registry.save(&specialist).unwrap();
        registry.save(&generalist).unwrap();
        assert_eq!(
            best_agent_for(&ws, None, &[], &db).unwrap().as_deref(),
            Some("spec")
        );
        assert_eq!(
            best_agent_for(&ws, None, &[], &[]).unwrap().as_deref(),
            Some("gen")
        );
        assert_eq!(
            best_agent_for(&ws, None, &[], &["docs".to_owned()])
                .unwrap()
                .as_deref(),
            Some("gen")
        );
    }
}
