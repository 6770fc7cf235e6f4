//! Recovery: what a dead or silent agent held goes back to the team (T5, L6).
//!
//! The tasks a dead or stale agent holds go back to the ready queue — or are marked failed
//! once they were tried [`RecoveryOptions::max_attempts`] times — with a history entry; a
//! notice goes to the `agents` topic; the agent's record says `gone`.
//!
//! **A lease is a promise until it expires.** Recovery releases a lock only when it is
//! provably free — expired, or bound to a process that is provably gone — judged again under
//! the lock's fence, by the nonce of the acquisition that was judged. A stale agent (alive
//! perhaps, only silent: paused, suspended, swapping) keeps its unexpired locks; a new process
//! that joined under the same id keeps everything it took. Such an agent, when it resumes,
//! finds its tasks returned (its status change fails the task's version check) and its
//! heartbeat makes it alive again.
//!
//! Recovery sits above tasks and locks: it is called by the agent toolkit and the CLI (before
//! `ready` and `claim`, by `maos agent recover`, by `maos doctor --fix`), never from inside
//! [`Tasks`]. It runs under the kernel lock on `agents/.lock`, so two processes recovering at
//! once do the work once; the lock order is agents → tasks → fence → seq.

use jiff::Timestamp;
use serde::Serialize;
use serde_json::json;

use crate::agents::{AgentError, AgentState, AgentStatus, DEFAULT_MAX_ATTEMPTS, Registry, TOPIC};
use crate::channel::{self, Draft};
use crate::journal::Event;
use crate::lock::Locks;
use crate::task::{RECOVERY, Tasks};
use crate::workspace::Workspace;

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
    if ws.store().is_files() && !registry.dir().is_dir() {
        return Ok(Vec::new());
    }
    // Every record is (re-)read under the registry lock, which every writer of a record
    // takes: what is judged here is what is on disk until this recovery is done.
    let lock = registry.lock()?;
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
        let (returned, failed) =
            Tasks::new(ws).return_held(&agent.id, RECOVERY, &reason, Some(options.max_attempts))?;
        // Only locks that are provably free: expired, or bound to a process that is gone.
        // A stale agent's unexpired locks stay: silence is not death (L6).
        let locks = Locks::new(ws).release_stale_of(&agent.id)?;
        agent.status = AgentStatus::Gone;
        agent.current_task = None;
        agent.left_at = Some(Timestamp::now());
        let event = Event::new("agent.recovered")
            .subject(agent.id.clone())
            .data(json!({
                "state": state.as_str(),
                "reason": reason,
                "returned": returned.iter().map(|t| &t.id).collect::<Vec<_>>(),
                "failed": failed.iter().map(|t| &t.id).collect::<Vec<_>>(),
                "locks": locks,
            }));
        registry.save_locked(&lock, agent.clone(), Some(event))?;
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

/// Recovery as the queue runs it before `ready` and `claim`: only when some agent looks dead
/// or stale. Best effort: a broken agent record must not stop the queue (`maos agent
/// recover` and `maos doctor` report it).
pub fn recover_lazily(ws: &Workspace) {
    let Ok((records, _)) = Registry::new(ws).list() else {
        return;
    };
    if records
        .iter()
        .any(|r| matches!(r.state(), AgentState::Dead | AgentState::Stale))
    {
        let _ = recover(ws, RecoveryOptions::default());
    }
}

/// The state of a holder the registry has no record of.
pub const UNKNOWN: &str = "unknown";

/// A task in progress, with what can be told of its holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Held {
    /// The task.
    pub task: String,
    /// The agent holding it.
    pub holder: String,
    /// When it was started.
    pub since: Option<Timestamp>,
    /// What the registry says of the holder (`alive`, `stale`, `dead`, `gone`,
    /// `registered`), or `unknown` when it has no record (a claim made by hand).
    pub holder_state: &'static str,
}

/// Every task in progress and its holder's state, judged now.
pub fn held_tasks(ws: &Workspace) -> Result<Vec<Held>, AgentError> {
    let registry = Registry::new(ws);
    let listing = Tasks::new(ws).list()?;
    Ok(listing
        .tasks
        .into_iter()
        .filter(|t| t.status == crate::task::Status::InProgress)
        .filter_map(|t| {
            let holder = t.assignee?;
            let holder_state = match registry.get(&holder) {
                Ok(Some(record)) => record.state().as_str(),
                _ => UNKNOWN,
            };
            Some(Held {
                task: t.id,
                holder,
                since: t.started_at,
                holder_state,
            })
        })
        .collect())
}

/// Whether [`return_orphaned`] also takes back tasks held by agents with no record at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unregistered {
    /// Leave them: a person may be working on them by hand (what a waiting worker does).
    Keep,
    /// Return them too (what `maos doctor --fix` does).
    Return,
}

/// Returns to the queue the tasks still in progress for agents that are gone — they left or
/// were retired, so nobody works on them (an agent leaving gives its tasks back; these were
/// claimed by hand, or held when the agent was retired) — and, with
/// [`Unregistered::Return`], for agents the registry does not know. Returns their ids.
pub fn return_orphaned(
    ws: &Workspace,
    unregistered: Unregistered,
) -> Result<Vec<String>, AgentError> {
    let registry = Registry::new(ws);
    let _lock = registry.lock()?;
    let mut returned = Vec::new();
    let orphaned: std::collections::BTreeSet<String> = held_tasks(ws)?
        .into_iter()
        .filter(|h| {
            h.holder_state == AgentState::Gone.as_str()
                || (unregistered == Unregistered::Return && h.holder_state == UNKNOWN)
        })
        .map(|h| h.holder)
        .collect();
    for agent in orphaned {
        // Re-judged under the registry lock: the agent may have joined again meanwhile.
        let still = match registry.get(&agent)? {
            Some(r) => r.state() == AgentState::Gone,
            None => unregistered == Unregistered::Return,
        };
        if !still {
            continue;
        }
        let reason = format!(
            "agent `{agent}` is gone (it left or was retired) or not registered, but still held it"
        );
        let (back, failed) = Tasks::new(ws).return_held(&agent, RECOVERY, &reason, None)?;
        returned.extend(back.into_iter().chain(failed).map(|t| t.id));
    }
    Ok(returned)
}
