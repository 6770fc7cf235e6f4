//! The worker loop: claim a ready task, hand it to a handler, record the outcome, repeat.
//!
//! **Outcomes.** [`Outcome::Done`] completes the task (its dependents become ready).
//! [`Outcome::Failed`] marks the attempt failed with the reason; while the task was claimed
//! fewer than [`WorkerOptions::max_attempts`] times it goes straight back to the ready queue
//! (retry), otherwise it stays failed. [`Outcome::Interrupted`] (shutdown asked while it ran)
//! returns the task to the queue without counting a failure.
//!
//! **Paused, then resumed.** A worker stopped long enough to be judged stale (SIGSTOP, a
//! closed laptop lid) may find on resuming that recovery gave its task to someone else. Its
//! status change is then refused (the task is no longer its, or its version moved on); the
//! worker reports [`WorkerEvent::Dropped`] once, drops the task, and goes on claiming.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use maos_coordination::Workspace;
use maos_coordination::agents::{AgentError, DEFAULT_MAX_ATTEMPTS};
use maos_coordination::channel::{Channel, ChannelName};
use maos_coordination::lock::{LockError, LockGuard, LockRequest, Locks};
use maos_coordination::recovery;
use maos_coordination::task::{Pick, Status, Task, TaskError, Tasks};
use maos_coordination::wake::DirWatch;
use serde::Serialize;

use crate::agent::Agent;

/// How often a worker waiting until idle looks for tasks held by agents that are gone.
const ORPHAN_CHECK_EVERY: Duration = Duration::from_secs(1);

/// When the loop stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// After one task; [`WorkerError::NothingReady`] when none is ready.
    Once,
    /// When no task is ready and none is running anywhere.
    UntilIdle,
    /// Only on shutdown.
    Forever,
}

/// How a worker works.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// When to stop.
    pub mode: RunMode,
    /// The role to claim for (default: the agent's).
    pub role: Option<String>,
    /// Claims after which a failed attempt is final.
    pub max_attempts: u32,
    /// How often to look again when nothing is ready (besides file-system wake-ups).
    pub poll: Duration,
    /// Set to stop: no new task is claimed, and handlers should check it.
    pub shutdown: Arc<AtomicBool>,
    /// With [`RunMode::UntilIdle`], how often to say what the worker waits for
    /// ([`WorkerEvent::Waiting`]).
    pub report_waiting_every: Duration,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self {
            mode: RunMode::Forever,
            role: None,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            poll: Duration::from_millis(250),
            shutdown: Arc::new(AtomicBool::new(false)),
            report_waiting_every: Duration::from_secs(10),
        }
    }
}

/// What a handler made of a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Finished: complete it.
    Done,
    /// Failed, with the reason.
    Failed(String),
    /// Stopped because of shutdown: give it back.
    Interrupted,
}

/// What a handler gets.
#[derive(Debug)]
pub struct TaskContext<'a> {
    /// The task, as claimed.
    pub task: Task,
    /// The agent doing it.
    pub agent: &'a Agent,
    /// Set when the worker is asked to stop.
    pub shutdown: &'a AtomicBool,
}

impl TaskContext<'_> {
    /// The workspace.
    pub fn workspace(&self) -> &Workspace {
        self.agent.workspace()
    }

    /// A channel of the workspace.
    pub fn channel(&self, name: &str) -> Result<Channel, maos_coordination::name::NameError> {
        Ok(Channel::open(self.workspace(), ChannelName::new(name)?))
    }

    /// Takes the lock on `resource` for this agent with a lease of `ttl`, waiting up to
    /// `wait`; renewed while the guard is held, released when it drops.
    pub fn lock(
        &self,
        resource: &str,
        ttl: Duration,
        wait: Duration,
    ) -> Result<LockGuard, LockError> {
        let request = LockRequest::new(resource, &self.agent.id())?
            .purpose(format!("task {}", self.task.id))
            .ttl(ttl);
        Locks::new(self.workspace()).acquire(&request, wait)
    }

    /// Whether the worker was asked to stop.
    pub fn stopping(&self) -> bool {
        self.shutdown.load(Ordering::SeqCst)
    }
}

/// A worker loop failed.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// `RunMode::Once` found nothing to do.
    #[error("no ready task{}", role.as_ref().map_or(String::new(), |r| format!(" for role `{r}`")))]
    NothingReady {
        /// The role asked for.
        role: Option<String>,
    },
    /// A task operation failed.
    #[error(transparent)]
    Task(#[from] TaskError),
    /// Updating the agent record failed.
    #[error(transparent)]
    Agent(#[from] AgentError),
}

impl WorkerError {
    /// The kind of this error.
    pub fn kind(&self) -> maos_coordination::ErrorKind {
        match self {
            WorkerError::NothingReady { .. } => maos_coordination::ErrorKind::NotFound,
            WorkerError::Task(e) => e.kind(),
            WorkerError::Agent(e) => e.kind(),
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WorkerReport {
    /// Tasks completed.
    pub completed: Vec<String>,
    /// Attempts that failed (a task retried appears once per failure).
    pub failed: Vec<String>,
    /// Tasks given back because of shutdown.
    pub interrupted: Vec<String>,
    /// Tasks whose claim was lost while this agent was paused (recovery returned them to
    /// the queue): dropped.
    pub dropped: Vec<String>,
}

/// Something a worker wants its user to know while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerEvent {
    /// The task was returned to the queue while this agent was paused (or silent): the
    /// worker dropped it and carries on.
    Dropped {
        /// The task.
        task: String,
        /// What the task's record says now.
        now: String,
    },
    /// Nothing is ready, and the worker (until idle) waits for tasks others hold.
    Waiting {
        /// The tasks in progress, with their holders.
        on: Vec<recovery::Held>,
    },
}

impl std::fmt::Display for WorkerEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WorkerEvent::Dropped { task, now } => write!(
                f,
                "task {task} was returned to the queue while this agent was paused; dropping it ({now})"
            ),
            WorkerEvent::Waiting { on } => {
                let list: Vec<String> = on
                    .iter()
                    .map(|h| {
                        let since = h.since.map_or(String::new(), |s| format!(" since {s:.0}"));
                        format!(
                            "{} held by `{}` ({}){since}",
                            h.task, h.holder, h.holder_state
                        )
                    })
                    .collect();
                write!(f, "nothing ready; waiting for {}", list.join(", "))
            }
        }
    }
}

/// Claims and works tasks for one agent.
pub struct Worker<'a> {
    agent: &'a Agent,
    options: WorkerOptions,
    on_event: Box<dyn Fn(&WorkerEvent) + 'a>,
}

impl std::fmt::Debug for Worker<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("agent", &self.agent)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl<'a> Worker<'a> {
    /// A worker for `agent`.
    pub fn new(agent: &'a Agent, options: WorkerOptions) -> Self {
        Self {
            agent,
            options,
            on_event: Box::new(|_| {}),
        }
    }

    /// Calls `f` with each [`WorkerEvent`] (e.g. to log it).
    pub fn on_event(mut self, f: impl Fn(&WorkerEvent) + 'a) -> Self {
        self.on_event = Box::new(f);
        self
    }

    /// Runs the loop until its mode says stop, or shutdown is asked.
    pub fn run(
        &self,
        mut handler: impl FnMut(&TaskContext<'_>) -> Outcome,
    ) -> Result<WorkerReport, WorkerError> {
        let ws = self.agent.workspace();
        let tasks = Tasks::new(ws);
        let id = self.agent.id();
        let role = self.options.role.clone().or_else(|| self.agent.role());
        let capabilities = self.agent.capabilities();
        let shutdown = &self.options.shutdown;
        let mut report = WorkerReport::default();
        let watch = DirWatch::start(&ws.dir().join("tasks"), |_| false);
        let mut next_waiting_report = Instant::now() + self.options.report_waiting_every;
        let mut next_orphan_check = Instant::now();
        while !shutdown.load(Ordering::SeqCst) {
            recovery::recover_lazily(ws);
            let task = match tasks.claim(
                &id,
                Pick::Best {
                    role: role.as_deref(),
                    capabilities: &capabilities,
                },
            ) {
                Ok(task) => task,
                Err(TaskError::NothingReady { .. }) => {
                    match self.options.mode {
                        RunMode::Once => return Err(WorkerError::NothingReady { role }),
                        RunMode::UntilIdle
                            if tasks.idle(&id, role.as_deref(), &capabilities)? =>
                        {
                            break;
                        }
                        RunMode::UntilIdle => {
                            // Tasks held by agents that are gone will never finish: back to
                            // the queue with them (stale and dead ones recovery handles).
                            if Instant::now() >= next_orphan_check {
                                next_orphan_check = Instant::now() + ORPHAN_CHECK_EVERY;
                                let _ = recovery::return_orphaned(ws, recovery::Unregistered::Keep);
                            }
                            if Instant::now() >= next_waiting_report {
                                next_waiting_report =
                                    Instant::now() + self.options.report_waiting_every;
                                if let Ok(on) = recovery::held_tasks(ws)
                                    && !on.is_empty()
                                {
                                    (self.on_event)(&WorkerEvent::Waiting { on });
                                }
                            }
                        }
                        _ => {}
                    }
                    match &watch {
                        Some(watch) => {
                            watch.wait(self.options.poll);
                        }
                        None => std::thread::sleep(self.options.poll),
                    }
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            self.agent.set_current_task(Some(task.id.clone()))?;
            let context = TaskContext {
                task,
                agent: self.agent,
                shutdown,
            };
            let outcome = handler(&context);
            let task = context.task;
            match self.finish(&tasks, &id, &task, outcome, &mut report) {
                Err(WorkerError::Task(e @ TaskError::ClaimLost { .. })) => {
                    let now = tasks.get(&task.id).map_or_else(
                        |_| e.to_string(),
                        |t| match t.assignee {
                            Some(a) => format!("now {} for `{a}`", t.status),
                            None => format!("now {}", t.status),
                        },
                    );
                    (self.on_event)(&WorkerEvent::Dropped {
                        task: task.id.clone(),
                        now,
                    });
                    report.dropped.push(task.id.clone());
                }
                other => other?,
            }
            self.agent.set_current_task(None)?;
            if self.options.mode == RunMode::Once {
                break;
            }
        }
        Ok(report)
    }

    fn finish(
        &self,
        tasks: &Tasks,
        id: &str,
        task: &Task,
        outcome: Outcome,
        report: &mut WorkerReport,
    ) -> Result<(), WorkerError> {
        match outcome {
            Outcome::Done => {
                tasks.set_status_as_claimed(task, id, Status::Completed, None)?;
                self.agent.count(true, &task.tags)?;
                report.completed.push(task.id.clone());
            }
            Outcome::Failed(reason) => {
                let failed = tasks.set_status_as_claimed(task, id, Status::Failed, Some(reason))?;
                self.agent.count(false, &task.tags)?;
                report.failed.push(task.id.clone());
                if task.attempts < self.options.max_attempts {
                    tasks.set_status_as_claimed(
                        &failed.task,
                        id,
                        Status::Pending,
                        Some(format!(
                            "retry: attempt {} of {} failed",
                            task.attempts, self.options.max_attempts
                        )),
                    )?;
                }
            }
            Outcome::Interrupted => {
                tasks.give_back(task, id, format!("returned: agent `{id}` is stopping"))?;
                report.interrupted.push(task.id.clone());
            }
        }
        Ok(())
    }
}
