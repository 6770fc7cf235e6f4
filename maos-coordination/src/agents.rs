//! The agent registry (`.maos/agents/<id>.json`).
//!
//! An agent record says which process runs the agent (host, boot id, PID namespace, pid,
//! start time), its role and capabilities, what it works on, and when it last gave a
//! heartbeat. From that every process can judge an agent **alive**, **stale** (no heartbeat
//! for [`STALE_AFTER_BEATS`] intervals), **dead** (its process is provably gone on this host),
//! **gone** (it left, or was recovered) or **registered** (set up by `maos agent spawn`, not
//! running yet). Staleness is judged on the clock that never jumps when the judge runs in the
//! agent's boot (see [`crate::process::boot_clock_ms`]).
//!
//! **No lost update (W2).** Every write of a record happens under the kernel lock on
//! `agents/.lock`, re-reads the record there, and raises its `version`: a heartbeat and a
//! recovery (see [`crate::recovery`]) never overwrite each other unseen.

use std::path::PathBuf;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::atomic::{self, Durability};
use crate::channel::ChannelError;
use crate::error::ErrorKind;
use crate::fs::{self, FileLock, FsError};
use crate::journal::{Effect, Event, Pending};
use crate::lock::LockError;
use crate::name::{self, NameError, NameKind};
use crate::process::{Liveness, ProcessIdentity};
use crate::record::{self, RecordError};
#[cfg(feature = "etcd")]
use crate::store::Store;
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
    /// The store (etcd) could not be reached or refused.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
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
            AgentError::Store(e) => e.kind(),
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
    /// `last_heartbeat` on the clock that never jumps (milliseconds since boot).
    #[serde(default)]
    pub last_heartbeat_boot_ms: Option<u64>,
    /// Raised by every write; see the module docs.
    #[serde(default)]
    pub version: u64,
    /// On the etcd store: whether the agent's liveness lease (kept alive by its heartbeats)
    /// still runs — `Some(false)` means it ran out and the agent is dead. Not stored.
    #[serde(skip)]
    pub lease_alive: Option<bool>,
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
            last_heartbeat_boot_ms: Some(crate::process::boot_clock_ms()),
            version: 0,
            lease_alive: None,
        }
    }

    /// Records a heartbeat now.
    pub fn beat(&mut self) {
        self.last_heartbeat = Timestamp::now();
        self.last_heartbeat_boot_ms = Some(crate::process::boot_clock_ms());
    }

    /// Alive, stale, dead, gone or registered, judged now.
    pub fn state(&self) -> AgentState {
        match self.status {
            AgentStatus::Gone => AgentState::Gone,
            AgentStatus::Registered => AgentState::Registered,
            AgentStatus::Active
                if self.lease_alive == Some(false) || self.process.liveness() == Liveness::Dead =>
            {
                AgentState::Dead
            }
            AgentStatus::Active if self.heartbeat_age() > self.stale_after() => AgentState::Stale,
            AgentStatus::Active => AgentState::Alive,
        }
    }

    /// Time since the last heartbeat: on the clock that never jumps when judged in the
    /// agent's boot, else on the wall clock.
    pub fn heartbeat_age(&self) -> SignedDuration {
        -crate::process::time_until(
            self.last_heartbeat,
            self.last_heartbeat_boot_ms,
            &self.process.boot_id,
        )
    }

    /// How long silence lasts before the agent is stale (on etcd: before its lease runs out).
    pub fn stale_after(&self) -> SignedDuration {
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

    /// `.maos/agents/`.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// The record file of `id`.
    pub fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{}.json", name::file_name(id)))
    }

    /// Writes an agent's record whatever is on disk (setting up or retiring an agent),
    /// under the registry lock, with the version raised past the one on disk.
    pub fn save(&self, record: &AgentRecord) -> Result<AgentRecord, AgentError> {
        name::validate(NameKind::Agent, &record.id)?;
        let lock = self.lock()?;
        self.save_locked(&lock, record.clone(), None)
    }

    /// Changes `id`'s record under the registry lock: `change` gets the record on disk (or
    /// `None`) and returns the record to write, or `None` to write nothing. Returns what
    /// was written.
    pub fn update(
        &self,
        id: &str,
        change: impl FnOnce(Option<AgentRecord>) -> Result<Option<AgentRecord>, AgentError>,
    ) -> Result<Option<AgentRecord>, AgentError> {
        name::validate(NameKind::Agent, id)?;
        let lock = self.lock()?;
        match change(self.get(id)?)? {
            Some(record) => Ok(Some(self.save_locked(&lock, record, None)?)),
            None => Ok(None),
        }
    }

    /// [`update`](Self::update) for a change that always writes a record (a join): returns
    /// the record written.
    pub fn upsert(
        &self,
        id: &str,
        change: impl FnOnce(Option<AgentRecord>) -> Result<AgentRecord, AgentError>,
    ) -> Result<AgentRecord, AgentError> {
        name::validate(NameKind::Agent, id)?;
        let lock = self.lock()?;
        let record = change(self.get(id)?)?;
        self.save_locked(&lock, record, None)
    }

    /// Writes `record` with its version one past the one on disk, under `lock` (the
    /// registry's). Journaled as `event`, or when none is given, as what changed: a join, a
    /// leave, another status (a heartbeat alone is not journaled).
    pub(crate) fn save_locked(
        &self,
        lock: &RegistryLock,
        mut record: AgentRecord,
        event: Option<Event>,
    ) -> Result<AgentRecord, AgentError> {
        let before = self.get(&record.id).ok().flatten();
        let on_disk = before.as_ref().map_or(0, |r| r.version);
        record.version = on_disk.max(record.version) + 1;
        #[allow(
            clippy::infallible_destructuring_match,
            reason = "a single variant without the etcd store"
        )]
        let lock = match lock {
            RegistryLock::File(lock) => lock,
            #[cfg(feature = "etcd")]
            RegistryLock::Etcd(mutex) => {
                if let Store::Etcd(etcd) = self.ws.store() {
                    let event = event.or_else(|| changed(before.as_ref(), &record));
                    let journal = crate::journal::pending(&self.ws, event.as_slice());
                    etcd_agents::save(etcd, mutex, &mut record, journal)?;
                    crate::journal::settle_etcd(&self.ws);
                }
                return Ok(record);
            }
        };
        fs::create_dir_all(&self.dir)?;
        let path = self.path(&record.id);
        let event = event.or_else(|| changed(before.as_ref(), &record));
        let pending = match event {
            Some(event) => {
                let effect = Effect::has(&self.ws, &path, "/version", record.version);
                Some(Pending::note(&self.ws, lock, event, effect))
            }
            None => None,
        };
        atomic::write_replace(
            &self.ws.tmp_dir(),
            &path,
            &record::encode(&record),
            Durability::Buffered,
        )?;
        if let Some(pending) = pending {
            pending.done();
        }
        Ok(record)
    }

    /// One agent's record, if registered.
    pub fn get(&self, id: &str) -> Result<Option<AgentRecord>, AgentError> {
        name::validate(NameKind::Agent, id)?;
        #[cfg(feature = "etcd")]
        if let Store::Etcd(etcd) = self.ws.store() {
            return etcd_agents::get(etcd, id);
        }
        let path = self.path(id);
        match fs::read_if_exists(&path)? {
            Some(bytes) => Ok(Some(record::decode(&path, "agent record", &bytes)?)),
            None => Ok(None),
        }
    }

    /// Every readable record (sorted by id), and the broken files.
    pub fn list(&self) -> Result<(Vec<AgentRecord>, Vec<RecordError>), AgentError> {
        #[cfg(feature = "etcd")]
        if let Store::Etcd(etcd) = self.ws.store() {
            return etcd_agents::list(etcd);
        }
        let mut names = fs::list_names(&self.dir)?;
        names.sort();
        let (mut records, mut broken) = (Vec::new(), Vec::new());
        for name in names
            .iter()
            .filter(|n| n.ends_with(".json") && !n.starts_with('.'))
        {
            let path = self.dir.join(name);
            match record::read::<AgentRecord>(&path, "agent record") {
                Ok(r) if name::of_path(&path).as_deref() != Some(r.id.as_str()) => {
                    broken.push(RecordError::corrupt(
                        &path,
                        "agent record",
                        format!(
                            "its id is `{}` but its file name should be `{}.json`",
                            r.id,
                            name::file_name(&r.id)
                        ),
                    ));
                }
                Ok(r) => records.push(r),
                Err(RecordError::Io(e)) if e.is_not_found() => {}
                Err(e) => broken.push(e),
            }
        }
        Ok((records, broken))
    }

    /// The kernel lock serializing every write of agent records (first in the lock order:
    /// agents → tasks → fence → seq).
    pub(crate) fn lock(&self) -> Result<RegistryLock, AgentError> {
        #[cfg(feature = "etcd")]
        if let Store::Etcd(etcd) = self.ws.store() {
            return Ok(RegistryLock::Etcd(
                etcd.mutex("agents/.lock", self.ws.kernel_lock_wait())?,
            ));
        }
        Ok(RegistryLock::File(
            self.ws.kernel_lock(&self.dir.join(".lock"))?,
        ))
    }
}

/// The registry lock: `agents/.lock`'s kernel lock, or on etcd a mutex key whose holder's
/// writes are compared against it.
#[derive(Debug)]
pub(crate) enum RegistryLock {
    /// The file store's kernel lock.
    File(FileLock),
    /// The etcd store's mutex.
    #[cfg(feature = "etcd")]
    Etcd(crate::store::etcd::EtcdMutex),
}

/// The registry in etcd: `agents/<id>.json` (the file's record) and, while the agent is
/// active, `agents/.alive/<id>` under a lease as long as its staleness limit, renewed by
/// every write of its record (each heartbeat): when it runs out — the agent stopped
/// beating, by the cluster's clock — the agent is dead.
#[cfg(feature = "etcd")]
mod etcd_agents {
    use std::path::PathBuf;

    use etcd_client::{PutOptions, Txn, TxnOp};

    use super::{AgentError, AgentRecord, AgentStatus};
    use crate::name;
    use crate::record::{self, RecordError};
    use crate::store::etcd::{Etcd, EtcdMutex, Kv, written};

    const ALIVE: &str = "agents/.alive/";

    fn key(id: &str) -> String {
        format!("agents/{}.json", name::file_name(id))
    }

    fn alive_key(id: &str) -> String {
        format!("{ALIVE}{}", name::file_name(id))
    }

    fn decode(etcd: &Etcd, kv: &Kv) -> Result<AgentRecord, RecordError> {
        let path = PathBuf::from(format!("etcd:{}", etcd.key(&kv.key)));
        record::decode(&path, "agent record", &kv.value)
    }

    pub(super) fn get(etcd: &Etcd, id: &str) -> Result<Option<AgentRecord>, AgentError> {
        let Some(kv) = etcd.get(&key(id))? else {
            return Ok(None);
        };
        let mut record = decode(etcd, &kv)?;
        record.lease_alive = Some(etcd.get(&alive_key(id))?.is_some());
        Ok(Some(record))
    }

    pub(super) fn list(etcd: &Etcd) -> Result<(Vec<AgentRecord>, Vec<RecordError>), AgentError> {
        let kvs = etcd.list("agents/")?;
        let alive: std::collections::HashSet<&str> = kvs
            .iter()
            .filter_map(|kv| kv.key.strip_prefix(ALIVE))
            .collect();
        let (mut records, mut broken) = (Vec::new(), Vec::new());
        for kv in kvs.iter().filter(|kv| {
            kv.key
                .strip_prefix("agents/")
                .is_some_and(|n| !n.starts_with('.') && n.ends_with(".json"))
        }) {
            match decode(etcd, kv) {
                Ok(mut r) => {
                    r.lease_alive = Some(alive.contains(name::file_name(&r.id).as_str()));
                    records.push(r);
                }
                Err(e) => broken.push(e),
            }
        }
        records.sort_by(|a, b| a.id.cmp(&b.id));
        Ok((records, broken))
    }

    /// Writes `record` (and its liveness lease) if `mutex` is still held, with its journal
    /// events (`journal::pending`).
    pub(super) fn save(
        etcd: &Etcd,
        mutex: &EtcdMutex,
        record: &mut AgentRecord,
        journal: Option<(String, Vec<u8>)>,
    ) -> Result<(), AgentError> {
        let old_lease = etcd.get(&alive_key(&record.id))?.map(|kv| kv.lease);
        let encoded = record::encode(record);
        let mut ops = vec![TxnOp::put(
            etcd.key(&key(&record.id)),
            encoded.clone(),
            None,
        )];
        let active = record.status == AgentStatus::Active;
        let mut new_lease = None;
        if active {
            let ttl = record.stale_after().unsigned_abs();
            let lease = etcd.grant(ttl)?;
            new_lease = Some(lease);
            ops.push(TxnOp::put(
                etcd.key(&alive_key(&record.id)),
                record.process.host.clone(),
                Some(PutOptions::new().with_lease(lease)),
            ));
        } else {
            ops.push(TxnOp::delete(etcd.key(&alive_key(&record.id)), None));
        }
        if let Some((key, value)) = journal {
            ops.push(TxnOp::put(etcd.key(&key), value, None));
        }
        let txn = Txn::new().when([mutex.guard()]).and_then(ops);
        // Recognised by the record written (it carries its new version).
        let outcome = etcd.txn("write an agent record", txn, |etcd| {
            Ok(written(etcd.get(&key(&record.id))?, &encoded))
        })?;
        if !outcome.applied() {
            if let Some(lease) = new_lease {
                let _ = etcd.revoke(lease);
            }
            return Err(crate::store::StoreError::Etcd {
                endpoints: etcd.spec().to_string(),
                op: "write an agent record".into(),
                detail:
                    "the registry lock was lost (this process was paused longer than its lease)"
                        .into(),
            }
            .into());
        }
        if let Some(old) = old_lease {
            let _ = etcd.revoke(old);
        }
        record.lease_alive = Some(active);
        Ok(())
    }
}

/// The journal entry of an agent record written as `after` over `before`, when its status
/// changed (`agent.joined`, `agent.left`, `agent.registered`).
fn changed(before: Option<&AgentRecord>, after: &AgentRecord) -> Option<Event> {
    let from = before.map(|b| b.status);
    let kind = match (from, after.status) {
        (Some(from), to) if from == to => return None,
        (_, AgentStatus::Active) => "agent.joined",
        (_, AgentStatus::Gone) => "agent.left",
        (_, AgentStatus::Registered) => "agent.registered",
    };
    Some(
        Event::new(kind)
            .agent(after.id.clone())
            .subject(after.id.clone())
            .data(serde_json::json!({
                "role": after.role,
                "capabilities": after.capabilities,
                "pid": after.process.pid,
                "host": after.process.host,
                "worktree": after.worktree,
                "branch": after.branch,
                "version": after.version,
            })),
    )
}

/// The word that asks for [`best_agent_for`] instead of naming an agent.
pub const AUTO_ASSIGN: &str = "auto";

/// Who a new task is assigned to, from what was asked (`--assign`, MCP `assign`): nobody, the
/// agent named, or for [`AUTO_ASSIGN`] the best agent for the task's role, required
/// capabilities and tags ([`best_agent_for`]; `None` when no agent fits). The one policy the
/// CLI and MCP share.
pub fn assignee_for(
    ws: &Workspace,
    assign: Option<&str>,
    task: &crate::task::NewTask,
) -> Result<Option<String>, AgentError> {
    match assign {
        Some(AUTO_ASSIGN) => best_agent_for(ws, task.role.as_deref(), &task.requires, &task.tags),
        other => Ok(other.map(str::to_owned)),
    }
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
