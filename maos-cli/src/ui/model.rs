//! What the dashboard shows, gathered from the workspace through the same library calls as
//! the other commands: agents, tasks (with what blocks them and the critical path), locks and
//! reservations (with their lines and the deadlocks among them), channels, the last merge
//! forecast. Times are kept as timestamps: ages are worked out when drawing.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use jiff::Timestamp;
use maos_coordination::Workspace;
use maos_coordination::agents::Registry;
use maos_coordination::channel::{self, Channel, ChannelName, Message};
use maos_coordination::deadlock::{self, Cycle};
use maos_coordination::lock::{Locks, Reservations};
use maos_coordination::merge::{Forecast, last_forecast};
use maos_coordination::priority::Priority;
use maos_coordination::progress::{self, BlockedTask};
use maos_coordination::task::{Listing, Status, Task, TaskError, Tasks, describe_blockers};

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
    /// The record, as JSON, for the detail view.
    pub record: String,
}

/// One task.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRow {
    pub id: String,
    pub title: String,
    pub status: Status,
    pub priority: Priority,
    pub created: Timestamp,
    pub assignee: Option<String>,
    pub role: Option<String>,
    pub tags: Vec<String>,
    /// What blocks it (its unfinished dependencies, or the reason it was blocked by hand).
    pub blocked_by: Option<String>,
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
    /// The newest messages (at most [`RECENT`]) and the first message of each thread they
    /// belong to, in channel order.
    pub recent: Vec<MessageRow>,
}

/// Messages kept per channel for the thread view.
pub const RECENT: usize = 20;

/// One message, as the thread view shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageRow {
    pub seq: u64,
    pub sender: String,
    pub at: Timestamp,
    /// The payload: its text, or its JSON.
    pub text: String,
    pub reply_to: Option<u64>,
    /// The first message of its thread (replies only).
    pub thread: Option<u64>,
}

impl MessageRow {
    fn of(message: &Message) -> MessageRow {
        MessageRow {
            seq: message.seq,
            sender: message.sender.clone(),
            at: message.timestamp,
            text: match &message.payload {
                serde_json::Value::String(text) => text.clone(),
                other => other.to_string(),
            },
            reply_to: message.reply_to,
            thread: message.thread,
        }
    }

    /// The first message of its thread (itself when it starts one or stands alone).
    pub fn root(&self) -> u64 {
        self.thread.unwrap_or(self.seq)
    }
}

/// `messages` as threads: each thread's first message, then its replies in order; the
/// thread with the newest message last. The flag says the message is a reply.
pub fn threaded(messages: &[MessageRow]) -> Vec<(bool, &MessageRow)> {
    let mut roots: Vec<(u64, u64)> = Vec::new(); // (newest seq, root)
    for m in messages {
        match roots.iter_mut().find(|(_, root)| *root == m.root()) {
            Some((newest, _)) => *newest = (*newest).max(m.seq),
            None => roots.push((m.seq, m.root())),
        }
    }
    roots.sort();
    let mut lines = Vec::with_capacity(messages.len());
    for (_, root) in roots {
        let mut thread: Vec<&MessageRow> = messages.iter().filter(|m| m.root() == root).collect();
        thread.sort_by_key(|m| (m.seq != root, m.seq));
        lines.extend(thread.into_iter().map(|m| (m.seq != root, m)));
    }
    lines
}

/// The whole thread message `seq` of `channel` belongs to, for reading: each message with
/// its sender, time and what it answers.
pub fn thread_text(ws: &Workspace, channel: &str, seq: u64) -> String {
    let thread = ChannelName::new(channel)
        .map_err(channel::ChannelError::from)
        .and_then(|name| Channel::open(ws, name).thread(seq));
    match thread {
        Ok(messages) => {
            let mut text = String::new();
            for m in messages.iter().map(MessageRow::of) {
                let answers = match m.reply_to {
                    Some(to) => format!(", reply to #{to}"),
                    None => String::new(),
                };
                text.push_str(&format!(
                    "#{} {} at {}{answers}\n{}\n\n",
                    m.seq,
                    m.sender,
                    m.at.strftime("%Y-%m-%d %H:%M:%S"),
                    m.text
                ));
            }
            text
        }
        Err(e) => format!("cannot read the thread of #{seq} in {channel}: {e}"),
    }
}

/// Parts of the model, read again separately (a message need not re-read ten thousand
/// tasks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Parts(u8);

impl Parts {
    pub const AGENTS: Parts = Parts(1);
    pub const TASKS: Parts = Parts(2);
    /// Locks, reservations, their lines and the deadlocks among them.
    pub const LOCKS: Parts = Parts(4);
    pub const CHANNELS: Parts = Parts(8);
    pub const MERGES: Parts = Parts(16);
    pub const ALL: Parts = Parts(31);
    pub const NONE: Parts = Parts(0);

    pub fn with(self, other: Parts) -> Parts {
        Parts(self.0 | other.0)
    }

    fn has(self, part: Parts) -> bool {
        self.0 & part.0 != 0
    }

    /// The part a record under `rel` (a path inside `.maos/`) belongs to.
    pub fn of_path(rel: &std::path::Path) -> Parts {
        let mut names = rel.components().map(|c| c.as_os_str().to_string_lossy());
        match names.next().as_deref() {
            Some("agents") => Parts::AGENTS,
            Some("tasks") => Parts::TASKS,
            Some("locks") => Parts::LOCKS,
            Some("channels") => Parts::CHANNELS,
            Some("merge") => Parts::MERGES,
            _ => Parts::ALL,
        }
    }
}

/// What changed since the model was last read: parts, and of the tasks, which ones when
/// that is known (so that one task done re-reads one file, not ten thousand).
#[derive(Debug, Default, PartialEq)]
pub struct Changes {
    parts: Parts,
    /// Read every task again (not only `tasks`).
    all_tasks: bool,
    tasks: BTreeSet<String>,
}

impl Changes {
    /// Everything.
    pub fn all() -> Changes {
        Changes {
            parts: Parts::ALL,
            all_tasks: true,
            tasks: BTreeSet::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.parts == Parts::NONE
    }

    /// `parts` changed, all of each.
    pub fn mark(&mut self, parts: Parts) {
        self.parts = self.parts.with(parts);
        self.all_tasks |= parts.has(Parts::TASKS);
    }

    /// The record at `rel` (a path inside `.maos/`) changed: a task file names its task; the
    /// task folder's own files (index, kernel lock) change only with a task file.
    pub fn mark_path(&mut self, rel: &Path) {
        let part = Parts::of_path(rel);
        if part != Parts::TASKS {
            return self.mark(part);
        }
        let name = rel.file_name().map(|n| n.to_string_lossy());
        match name.as_deref().and_then(|n| n.strip_suffix(".json")) {
            Some(id) if rel.parent() == Some(Path::new("tasks")) && !id.starts_with('.') => {
                self.parts = self.parts.with(Parts::TASKS);
                self.tasks.insert(id.to_owned());
            }
            _ if rel.parent() == Some(Path::new("tasks")) => {}
            _ => self.mark(Parts::TASKS),
        }
    }
}

/// Everything the dashboard shows.
#[derive(Debug, Default)]
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
    /// What could not be read in each part, as last read (shown at the bottom, never fatal).
    pub(super) problems_of: [Vec<String>; 5],
    /// The task records the rows were made from, by id (the rows are in the same order).
    pub(super) listing: Listing,
}

impl Model {
    /// The workspace now, as `me` sees it. Anything unreadable is named in [`problems`](Self::problems).
    pub fn gather(ws: &Workspace, me: &str) -> Model {
        let mut model = Model {
            me: me.to_owned(),
            store: ws.store().spec().to_string(),
            ..Model::default()
        };
        model.refresh(ws, &Changes::all());
        model
    }

    /// Reads again what `changes` names; the rest is kept.
    pub fn refresh(&mut self, ws: &Workspace, changes: &Changes) {
        let mut parts = changes.parts;
        if parts.has(Parts::TASKS) && !changes.all_tasks && self.update_tasks(ws, &changes.tasks) {
            parts = Parts(parts.0 & !Parts::TASKS.0);
        }
        let each = [
            (
                Parts::AGENTS,
                Model::read_agents as fn(&mut Model, &Workspace) -> Vec<String>,
            ),
            (Parts::TASKS, Model::read_tasks),
            (Parts::LOCKS, Model::read_locks),
            (Parts::CHANNELS, Model::read_channels),
            (Parts::MERGES, Model::read_forecast),
        ];
        for (i, (part, read)) in each.into_iter().enumerate() {
            if parts.has(part) {
                self.problems_of[i] = read(self, ws);
            }
        }
    }

    /// What could not be read, every part's.
    pub fn problems(&self) -> Vec<&str> {
        self.problems_of
            .iter()
            .flatten()
            .map(String::as_str)
            .collect()
    }

    /// The record of task `id`, as JSON (what Enter shows).
    pub fn task_record(&self, id: &str) -> Option<String> {
        let tasks = &self.listing.tasks;
        let at = tasks.binary_search_by(|t| t.id.as_str().cmp(id)).ok()?;
        serde_json::to_string_pretty(&tasks[at]).ok()
    }

    fn read_agents(&mut self, ws: &Workspace) -> Vec<String> {
        match Registry::new(ws).list() {
            Ok((records, broken)) => {
                self.agents = records
                    .iter()
                    .map(|r| AgentRow {
                        id: r.id.clone(),
                        state: r.state().as_str().to_owned(),
                        role: r.role.clone(),
                        task: r.current_task.clone(),
                        heartbeat: r.last_heartbeat,
                        worktree: r.worktree.as_ref().map(|w| w.display().to_string()),
                        branch: r.branch.clone(),
                        record: serde_json::to_string_pretty(r).unwrap_or_default(),
                    })
                    .collect();
                broken.iter().map(|e| problem("agent record", e)).collect()
            }
            Err(e) => vec![problem("agents", &e)],
        }
    }

    fn read_tasks(&mut self, ws: &Workspace) -> Vec<String> {
        self.listing = match Tasks::new(ws).list() {
            Ok(listing) => listing,
            Err(e) => return vec![problem("tasks", &e)],
        };
        self.tasks = self.listing.tasks.iter().map(task_row).collect();
        self.assess_tasks();
        let skipped = &self.listing.skipped;
        skipped.iter().map(|e| problem("task", e)).collect()
    }

    /// Reads again only the tasks `ids`; false when that cannot stand for a whole read (a
    /// file that cannot be read: the whole read names it).
    fn update_tasks(&mut self, ws: &Workspace, ids: &BTreeSet<String>) -> bool {
        let tasks = Tasks::new(ws);
        for id in ids {
            let at = self
                .listing
                .tasks
                .binary_search_by(|t| t.id.as_str().cmp(id));
            match (tasks.get(id), at) {
                (Ok(task), Ok(i)) => {
                    self.tasks[i] = task_row(&task);
                    self.listing.tasks[i] = task;
                }
                (Ok(task), Err(i)) => {
                    self.tasks.insert(i, task_row(&task));
                    self.listing.tasks.insert(i, task);
                }
                (Err(TaskError::NotFound { .. }), Ok(i)) => {
                    self.tasks.remove(i);
                    self.listing.tasks.remove(i);
                }
                (Err(TaskError::NotFound { .. }), Err(_)) => {}
                (Err(_), _) => return false,
            }
        }
        self.assess_tasks();
        true
    }

    /// The critical path and what blocks each task, from the records read.
    fn assess_tasks(&mut self) {
        let report = progress::report(&self.listing);
        let blocked: HashMap<&str, &BlockedTask> =
            report.blocked.iter().map(|b| (b.id.as_str(), b)).collect();
        for row in &mut self.tasks {
            row.blocked_by = blocked.get(row.id.as_str()).map(|b| match &b.reason {
                Some(reason) => format!("by hand: {reason}"),
                None => describe_blockers(&b.waiting_for),
            });
        }
        self.critical = report.critical_path;
    }

    fn read_locks(&mut self, ws: &Workspace) -> Vec<String> {
        let mut problems = Vec::new();
        let locks = Locks::new(ws);
        let mut listed = locks.list().unwrap_or_else(|e| {
            problems.push(problem("locks", &e));
            Vec::new()
        });
        match Reservations::new(ws).list() {
            Ok(reservations) => listed.extend(reservations),
            Err(e) => problems.push(problem("reservations", &e)),
        }
        self.locks.clear();
        for entry in listed {
            let info = match entry.info {
                Ok(info) => info,
                Err(e) => {
                    problems.push(problem("lock", &e));
                    continue;
                }
            };
            let waiters = locks
                .waiters(&info.resource)
                .map(|line| line.into_iter().map(|i| i.agent).collect())
                .unwrap_or_default();
            let kind = match (info.kind, info.shared) {
                (maos_coordination::lock::LockKind::Lock, _) => "lock",
                (_, true) => "shared reservation",
                (_, false) => "reservation",
            };
            self.locks.push(LockRow {
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
        match deadlock::detect(ws) {
            Ok(cycles) => self.cycles = cycles,
            Err(e) => problems.push(problem("deadlocks", &e)),
        }
        problems
    }

    fn read_channels(&mut self, ws: &Workspace) -> Vec<String> {
        let mut problems = Vec::new();
        let unread = channel::Inbox::of(ws, &self.me)
            .and_then(|inbox| inbox.peek())
            .map(|unread| unread.messages)
            .unwrap_or_else(|e| {
                problems.push(problem("inbox", &e));
                Vec::new()
            });
        let summaries = match channel::list_channels(ws) {
            Ok(summaries) => summaries,
            Err(e) => {
                problems.push(problem("channels", &e));
                return problems;
            }
        };
        self.channels = summaries
            .into_iter()
            .map(|summary| ChannelRow {
                recent: ChannelName::new(&summary.name)
                    .map(|name| recent(&Channel::open(ws, name), summary.last_seq))
                    .unwrap_or_default(),
                unread: unread
                    .iter()
                    .filter(|m| m.channel.as_str() == summary.name)
                    .count() as u64,
                name: summary.name,
                messages: summary.messages,
                last_seq: summary.last_seq,
                last: summary.last_activity,
            })
            .collect();
        problems
    }

    fn read_forecast(&mut self, ws: &Workspace) -> Vec<String> {
        match last_forecast(ws) {
            Ok(forecast) => {
                self.forecast = forecast;
                Vec::new()
            }
            Err(e) => vec![problem("merge forecast", &e)],
        }
    }
}

/// The row of task `t` (what blocks it is filled in by [`Model::assess_tasks`]).
fn task_row(t: &Task) -> TaskRow {
    TaskRow {
        id: t.id.clone(),
        title: t.title.clone(),
        status: t.status,
        priority: t.priority,
        created: t.created_at,
        assignee: t.assignee.clone(),
        role: t.role.clone(),
        tags: t.tags.clone(),
        blocked_by: None,
    }
}

/// A line naming what could not be read.
fn problem(what: &str, e: &dyn std::fmt::Display) -> String {
    format!("{what}: {e}")
}

/// The newest messages of `channel` (whose last is `last_seq`) and the first message of each
/// thread they answer, in order (what cannot be read is left out).
fn recent(channel: &Channel, last_seq: u64) -> Vec<MessageRow> {
    let from = last_seq.saturating_sub(RECENT as u64);
    let Ok(batch) = channel.read_after(from, Some(RECENT)) else {
        return Vec::new();
    };
    let mut rows: Vec<MessageRow> = batch.messages.iter().map(MessageRow::of).collect();
    let mut missing: Vec<u64> = rows
        .iter()
        .map(MessageRow::root)
        .filter(|root| *root <= from)
        .collect();
    missing.sort_unstable();
    missing.dedup();
    let roots: Vec<MessageRow> = missing
        .into_iter()
        .filter_map(|root| channel.get(root).ok())
        .map(|m| MessageRow::of(&m))
        .collect();
    rows.splice(0..0, roots);
    rows
}
