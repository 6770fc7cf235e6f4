//! An agent's identity in a workspace: its registry record, its heartbeat, and leaving.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use maos_coordination::Workspace;
use maos_coordination::agents::{
    AgentError, AgentRecord, AgentState, AgentStatus, DEFAULT_HEARTBEAT, Registry,
};
use maos_coordination::lock::Locks;
use maos_coordination::name::{self, NameKind};
use maos_coordination::snapshot;
use maos_coordination::task::Tasks;
use serde::Serialize;

/// How an agent joins.
#[derive(Debug, Clone)]
pub struct JoinOptions {
    /// Its role (tasks needing another role are not claimed); `None` keeps the role it was
    /// registered with.
    pub role: Option<String>,
    /// What it can do; empty keeps the capabilities it was registered with.
    pub capabilities: Vec<String>,
    /// How often it heartbeats.
    pub heartbeat: Duration,
}

impl Default for JoinOptions {
    fn default() -> Self {
        Self {
            role: None,
            capabilities: Vec::new(),
            heartbeat: DEFAULT_HEARTBEAT,
        }
    }
}

/// What leaving released.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LeaveReport {
    /// Tasks returned to the ready queue.
    pub returned_tasks: Vec<String>,
    /// Locks released.
    pub released_locks: Vec<String>,
}

/// An agent that joined a workspace. Leaves when [`leave`](Self::leave) is called or when
/// dropped.
#[derive(Debug)]
pub struct Agent {
    ws: Workspace,
    registry: Registry,
    record: Arc<Mutex<AgentRecord>>,
    stop: Arc<AtomicBool>,
    heartbeat: Option<JoinHandle<()>>,
    left: bool,
}

impl Agent {
    /// Registers `id` as run by this process and starts heartbeating. Refused when a live
    /// process already runs that agent id.
    pub fn join(ws: &Workspace, id: &str, options: JoinOptions) -> Result<Agent, AgentError> {
        name::validate(NameKind::Agent, id)?;
        if let Some(role) = &options.role {
            name::validate(NameKind::Role, role)?;
        }
        let registry = Registry::new(ws);
        let fresh = AgentRecord::new(id, options.role, options.capabilities, options.heartbeat);
        // Judged and written under the registry lock: two processes joining as one id at once
        // cannot both see it free.
        let record = registry.upsert(id, |existing| {
            let mut record = fresh;
            if let Some(existing) = existing {
                // A live process runs this id (an editor session, with no process of
                // its own behind it, is joined, not refused: the process takes it over).
                if existing.state() == AgentState::Alive
                    && existing.process != record.process
                    && !existing.process.is_unknown()
                {
                    return Err(AgentError::AlreadyRunning {
                        id: id.to_owned(),
                        pid: existing.process.pid,
                        host: existing.process.host,
                    });
                }
                // Keep what `maos agent spawn` (or an earlier join) set up — the role and
                // capabilities too, unless given anew — and the counts.
                if record.role.is_none() {
                    record.role = existing.role;
                }
                if record.capabilities.is_empty() {
                    record.capabilities = existing.capabilities;
                }
                record.worktree = existing.worktree;
                record.branch = existing.branch;
                record.completed = existing.completed;
                record.failed = existing.failed;
                record.by_tag = existing.by_tag;
                record.version = existing.version;
            }
            Ok(record)
        })?;
        let record = Arc::new(Mutex::new(record));
        let stop = Arc::new(AtomicBool::new(false));
        let heartbeat = {
            let (registry, record, stop) =
                (registry.clone(), Arc::clone(&record), Arc::clone(&stop));
            let ws = ws.clone();
            std::thread::Builder::new()
                .name(format!("maos-heartbeat-{id}"))
                .spawn(move || heartbeat_loop(&ws, &registry, &record, &stop, options.heartbeat))
                .ok()
        };
        Ok(Agent {
            ws: ws.clone(),
            registry,
            record,
            stop,
            heartbeat,
            left: false,
        })
    }

    /// The agent id.
    pub fn id(&self) -> String {
        self.lock_record().id.clone()
    }

    /// The role it joined with.
    pub fn role(&self) -> Option<String> {
        self.lock_record().role.clone()
    }

    /// The capabilities it joined with.
    pub fn capabilities(&self) -> Vec<String> {
        self.lock_record().capabilities.clone()
    }

    /// The workspace.
    pub fn workspace(&self) -> &Workspace {
        &self.ws
    }

    /// Records the task it works on (saved now, and with every heartbeat).
    pub fn set_current_task(&self, task: Option<String>) -> Result<(), AgentError> {
        self.lock_record().current_task = task;
        save_beat(&self.registry, &self.record).map(drop)
    }

    /// Counts a finished attempt in its record (on disk, where the CLI counts too).
    pub(crate) fn count(&self, completed: bool, tags: &[String]) -> Result<(), AgentError> {
        let id = self.id();
        self.registry
            .update(&id, |on_disk| {
                Ok(on_disk.map(|mut r| {
                    r.count(completed, tags);
                    r
                }))
            })
            .map(drop)
    }

    /// Leaves: stops the heartbeat, returns the tasks it holds in progress to the ready
    /// queue, releases its locks (and places in line), and marks it gone.
    pub fn leave(mut self) -> Result<LeaveReport, AgentError> {
        self.leave_now()
    }

    fn leave_now(&mut self) -> Result<LeaveReport, AgentError> {
        self.left = true;
        self.stop.store(true, Ordering::SeqCst);
        if let Some(handle) = self.heartbeat.take() {
            let _ = handle.join();
        }
        let id = self.id();
        let mut report = LeaveReport::default();
        let reason = format!("agent `{id}` left");
        let (returned, _) = Tasks::new(&self.ws).return_held(&id, &id, &reason, None)?;
        report.returned_tasks = returned.into_iter().map(|t| t.id).collect();
        report.released_locks = Locks::new(&self.ws).release_all_of(&id)?;
        {
            let mut record = self.lock_record();
            record.status = AgentStatus::Gone;
            record.current_task = None;
            record.left_at = Some(Timestamp::now());
        }
        save_beat(&self.registry, &self.record)?;
        Ok(report)
    }

    fn lock_record(&self) -> std::sync::MutexGuard<'_, AgentRecord> {
        self.record.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if !self.left {
            // Drop cannot report errors; what is left behind is recovered once the process is
            // gone.
            let _ = self.leave_now();
        }
    }
}

/// Beats every `interval`; each beat also takes the workspace's automatic snapshot when one
/// is due (`snapshot_every_minutes`: whichever agent's heartbeat notices first).
fn heartbeat_loop(
    ws: &Workspace,
    registry: &Registry,
    record: &Mutex<AgentRecord>,
    stop: &AtomicBool,
    interval: Duration,
) {
    let mut next = Instant::now() + interval;
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(50).min(interval));
        if Instant::now() < next {
            continue;
        }
        next = Instant::now() + interval;
        // A missed heartbeat (full disk) is retried at the next one; staleness takes several.
        // Another process running this id now (a restart) ends this heartbeat for good.
        if let Ok(Beat::Replaced) = save_beat(registry, record) {
            return;
        }
        let id = record.lock().map(|r| r.id.clone()).unwrap_or_default();
        // Housekeeping: a snapshot that cannot be taken now is due again next period.
        let _ = snapshot::take_if_due(ws, &id);
    }
}

/// What a heartbeat found.
enum Beat {
    /// Saved.
    Saved,
    /// Another process runs this agent id now: nothing was written.
    Replaced,
}

/// Saves this process's part of its record — heartbeat, process, status, current task — on
/// top of the record on disk, under the registry lock (other fields, such as the counts the
/// CLI keeps, stay as they are). A record that recovery marked gone while this process was
/// paused becomes active again (unless the agent left); a record that another process took
/// over under the same id is left alone.
fn save_beat(registry: &Registry, record: &Mutex<AgentRecord>) -> Result<Beat, AgentError> {
    let id = record
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .id
        .clone();
    let mut outcome = Beat::Saved;
    registry.update(&id, |on_disk| {
        let mut mine = record.lock().unwrap_or_else(PoisonError::into_inner);
        mine.beat();
        let Some(mut saved) = on_disk else {
            return Ok(Some(mine.clone()));
        };
        if saved.process != mine.process && saved.status == AgentStatus::Active {
            outcome = Beat::Replaced;
            return Ok(None);
        }
        saved.process = mine.process.clone();
        saved.current_task = mine.current_task.clone();
        saved.last_heartbeat = mine.last_heartbeat;
        saved.last_heartbeat_boot_ms = mine.last_heartbeat_boot_ms;
        saved.heartbeat_interval_ms = mine.heartbeat_interval_ms;
        saved.started_at = mine.started_at;
        saved.left_at = mine.left_at;
        saved.status = if mine.left_at.is_none() {
            AgentStatus::Active
        } else {
            AgentStatus::Gone
        };
        Ok(Some(saved))
    })?;
    Ok(outcome)
}
