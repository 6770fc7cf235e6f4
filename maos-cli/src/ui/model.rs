//! What the dashboard shows, gathered from the workspace through the same library calls as
//! the other commands: agents, tasks (with what blocks them and the critical path), locks and
//! reservations (with their lines and the deadlocks among them), channels, the last merge
//! forecast. Times are kept as timestamps: ages are worked out when drawing.

use jiff::Timestamp;
use maos_coordination::Workspace;
use maos_coordination::agents::Registry;
use maos_coordination::channel::{self, Channel, ChannelName};
use maos_coordination::deadlock::{self, Cycle};
use maos_coordination::lock::{Locks, Reservations};
use maos_coordination::merge::{Forecast, last_forecast};
use maos_coordination::progress;
use maos_coordination::task::{Status, Tasks, describe_blockers};

/// One agent.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentRow {
    pub id: String,
    /// `alive`, `stale`, `dead`, `gone` or `registered`.
    pub state: String,
    pub role: Option<String>,
    pub task: Option<String>,
    pub heartbeat: Timestamp,
    pub worktree: Option<String>,
    pub branch: Option<String>,
}

/// One task.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRow {
    pub id: String,
    pub title: String,
    pub status: Status,
    pub priority: String,
    pub assignee: Option<String>,
    pub role: Option<String>,
    pub tags: Vec<String>,
    /// What blocks it (its unfinished dependencies, or the reason it was blocked by hand).
    pub blocked_by: Option<String>,
    /// The record, as JSON, for the detail view.
    pub record: String,
}

/// One lock or reservation.
#[derive(Debug, Clone, PartialEq)]
pub struct LockRow {
    pub resource: String,
    /// `lock`, or `reservation` (`shared reservation`).
    pub kind: String,
    pub owner: String,
    pub purpose: String,
    pub token: u64,
    pub expires: Timestamp,
    /// `live`, `expired` or `dead`.
    pub state: String,
    /// The agents in line for it, first first.
    pub waiters: Vec<String>,
    pub record: String,
}

/// One channel.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelRow {
    pub name: String,
    pub messages: u64,
    pub last_seq: u64,
    pub last: Option<Timestamp>,
    /// Messages for the acting agent it has not read yet (its inbox; reading them here does
    /// not mark them read).
    pub unread: u64,
    /// The newest messages (at most [`RECENT`]), oldest first: `#seq sender: payload`.
    pub recent: Vec<String>,
}

/// Messages kept per channel for the thread view.
pub const RECENT: usize = 20;

/// Everything the dashboard shows.
#[derive(Debug, Clone, Default)]
pub struct Model {
    /// The acting agent.
    pub me: String,
    /// Where the state lives (`files`, or the etcd spec).
    pub store: String,
    pub agents: Vec<AgentRow>,
    pub tasks: Vec<TaskRow>,
    /// The critical path, first to do first.
    pub critical: Vec<String>,
    pub locks: Vec<LockRow>,
    pub cycles: Vec<Cycle>,
    pub channels: Vec<ChannelRow>,
    pub forecast: Option<Forecast>,
    /// What could not be read (shown at the bottom, never fatal).
    pub problems: Vec<String>,
}

impl Model {
    /// The workspace now, as `me` sees it. Anything unreadable is named in `problems`.
    pub fn gather(ws: &Workspace, me: &str) -> Model {
        let mut model = Model {
            me: me.to_owned(),
            store: ws.store().spec().to_string(),
            ..Model::default()
        };
        let mut problems = Vec::new();
        let mut note =
            |what: &str, e: &dyn std::fmt::Display| problems.push(format!("{what}: {e}"));
        match Registry::new(ws).list() {
            Ok((records, broken)) => {
                model.agents = records
                    .iter()
                    .map(|r| AgentRow {
                        id: r.id.clone(),
                        state: r.state().as_str().to_owned(),
                        role: r.role.clone(),
                        task: r.current_task.clone(),
                        heartbeat: r.last_heartbeat,
                        worktree: r.worktree.as_ref().map(|w| w.display().to_string()),
                        branch: r.branch.clone(),
                    })
                    .collect();
                broken.iter().for_each(|e| note("agent record", e));
            }
            Err(e) => note("agents", &e),
        }
        match Tasks::new(ws).list() {
            Ok(listing) => {
                let report = progress::report(&listing);
                model.critical = report.critical_path.clone();
                model.tasks =
                    listing
                        .tasks
                        .iter()
                        .map(|t| TaskRow {
                            id: t.id.clone(),
                            title: t.title.clone(),
                            status: t.status,
                            priority: t.priority.to_string(),
                            assignee: t.assignee.clone(),
                            role: t.role.clone(),
                            tags: t.tags.clone(),
                            blocked_by: report.blocked.iter().find(|b| b.id == t.id).map(|b| {
                                match &b.reason {
                                    Some(reason) => format!("by hand: {reason}"),
                                    None => describe_blockers(&b.waiting_for),
                                }
                            }),
                            record: serde_json::to_string_pretty(t).unwrap_or_default(),
                        })
                        .collect();
                listing.skipped.iter().for_each(|e| note("task", e));
            }
            Err(e) => note("tasks", &e),
        }
        let locks = Locks::new(ws);
        let mut listed = match locks.list() {
            Ok(listed) => listed,
            Err(e) => {
                note("locks", &e);
                Vec::new()
            }
        };
        match Reservations::new(ws).list() {
            Ok(reservations) => listed.extend(reservations),
            Err(e) => note("reservations", &e),
        }
        for entry in listed {
            match entry.info {
                Ok(info) => {
                    let waiters = locks
                        .waiters(&info.resource)
                        .map(|line| line.into_iter().map(|i| i.agent).collect())
                        .unwrap_or_default();
                    let kind = match (info.kind, info.shared) {
                        (maos_coordination::lock::LockKind::Lock, _) => "lock",
                        (_, true) => "shared reservation",
                        (_, false) => "reservation",
                    };
                    model.locks.push(LockRow {
                        resource: info.resource.clone(),
                        kind: kind.to_owned(),
                        owner: info.owner.clone(),
                        purpose: info.purpose.clone(),
                        token: info.token,
                        expires: info.expires_at,
                        state: info.state().as_str().to_owned(),
                        waiters,
                        record: serde_json::to_string_pretty(&info).unwrap_or_default(),
                    });
                }
                Err(e) => note("lock", &e),
            }
        }
        match deadlock::detect(ws) {
            Ok(cycles) => model.cycles = cycles,
            Err(e) => note("deadlocks", &e),
        }
        let unread = channel::Inbox::of(ws, me)
            .and_then(|inbox| inbox.peek())
            .map(|unread| unread.messages)
            .unwrap_or_else(|e| {
                note("inbox", &e);
                Vec::new()
            });
        match channel::list_channels(ws) {
            Ok(summaries) => {
                for summary in summaries {
                    let recent = ChannelName::new(&summary.name)
                        .ok()
                        .and_then(|name| {
                            let channel = Channel::open(ws, name);
                            let from = summary.last_seq.saturating_sub(RECENT as u64);
                            channel.read_after(from, Some(RECENT)).ok()
                        })
                        .map(|batch| {
                            batch
                                .messages
                                .iter()
                                .map(|m| {
                                    let payload = match &m.payload {
                                        serde_json::Value::String(text) => text.clone(),
                                        other => other.to_string(),
                                    };
                                    format!("#{} {}: {payload}", m.seq, m.sender)
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    let mine = unread
                        .iter()
                        .filter(|m| m.channel.as_str() == summary.name)
                        .count() as u64;
                    model.channels.push(ChannelRow {
                        unread: mine,
                        name: summary.name,
                        messages: summary.messages,
                        last_seq: summary.last_seq,
                        last: summary.last_activity,
                        recent,
                    });
                }
            }
            Err(e) => note("channels", &e),
        }
        match last_forecast(ws) {
            Ok(forecast) => model.forecast = forecast,
            Err(e) => note("merge forecast", &e),
        }
        model.problems = problems;
        model
    }
}
