//! Toolkit for an agent process that joins a MAOS workspace.
//!
//! - [`Agent`]: join with an identity, heartbeat in the background, leave cleanly (locks
//!   released, unfinished tasks back in the queue) — also when dropped.
//! - [`Worker`]: the loop that claims ready tasks, hands each to a handler with a
//!   [`TaskContext`], marks it done or failed, retries within limits, stops on request.
//! - [`session`]: an agent that lives in another program (a Claude Code session driving
//!   MAOS through hooks): each call is its heartbeat; its automatic leases end with it.
//! - [`preset`]: the `claude -p` / `codex exec` command and prompt for each task.
//! - [`command`]: a handler that runs an external command per task (what `maos agent run`
//!   does).
//! - [`guard`]: the git pre-commit hook that refuses commits of files other agents hold.
//! - [`worktree`]: a branch and a linked git worktree per agent (`maos agent spawn`), removed
//!   once merged (`maos agent retire`).
//!
//! ```no_run
//! use maos_agent::{Agent, JoinOptions, Outcome, RunMode, Worker, WorkerOptions};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let ws = maos_agent::coordination::Workspace::discover(&std::env::current_dir()?)?;
//! let agent = Agent::join(&ws, "coder-1", JoinOptions::default())?;
//! let options = WorkerOptions { mode: RunMode::UntilIdle, ..WorkerOptions::default() };
//! Worker::new(&agent, options).run(|ctx| {
//!     println!("working on {}", ctx.task.title);
//!     Outcome::Done
//! })?;
//! agent.leave()?;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]
// Tests plant broken files by hand, on purpose.
#![cfg_attr(test, allow(clippy::disallowed_methods))]

mod agent;
pub mod command;
#[cfg(feature = "worktree")]
pub mod guard;
pub mod preset;
pub mod session;
mod worker;
#[cfg(feature = "worktree")]
pub mod worktree;

pub use agent::{Agent, JoinOptions, LeaveReport};
pub use maos_coordination as coordination;
pub use worker::{
    Outcome, RunMode, TaskContext, Worker, WorkerError, WorkerEvent, WorkerOptions, WorkerReport,
};
