//! Running an external command per task: what `maos agent run -- <command>` does.
//!
//! The command runs in its directory — the agent's own worktree, on its own branch, when it
//! has one — with `MAOS_TASK_ID`, `MAOS_TASK_TITLE`, `MAOS_AGENT_ID`, `MAOS_WORKSPACE` (the
//! workspace root) and `MAOS_WORKTREE` (that directory) set. Its stdout and stderr go to
//! `.maos/runs/<task>/attempt-<n>.log`, which opens with a line saying where it ran (directory
//! and branch) and whose path is stored in the task's `metadata.output` before it starts (so
//! `maos task show` points to it while it runs). Exit 0 is [`Outcome::Done`]; any other exit,
//! a failure to start, or running past the timeout is [`Outcome::Failed`] with the reason and
//! the last lines of the log. On shutdown the command gets SIGTERM, then SIGKILL after
//! [`GRACE`], and the task is [`Outcome::Interrupted`].

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use maos_coordination::task::{Edit, Tasks};
use rustix::process::{Pid, Signal, kill_process};
use serde_json::{Map, Value};

use crate::worker::{Outcome, TaskContext};

/// How long a command may take to exit after SIGTERM before it is killed.
pub const GRACE: Duration = Duration::from_secs(5);

/// The command to run for each task.
#[derive(Debug, Clone)]
pub struct TaskCommand {
    /// The program.
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Kill it and fail the attempt after this long.
    pub timeout: Option<Duration>,
    /// Where it runs: the agent's worktree (or wherever the worker was started).
    pub dir: PathBuf,
    /// What it reads on its standard input (a preset's prompt); none: nothing.
    pub stdin: Option<String>,
}

/// How many lines of a failed attempt's log its reason quotes.
const TAIL_LINES: usize = 5;

impl TaskCommand {
    /// Checks that the program can be started from [`dir`](Self::dir) — a path to an
    /// executable file (relative to `dir`), or a name found on `PATH` — so that a worker
    /// fails at once instead of burning every task's attempts.
    pub fn check(&self) -> Result<(), String> {
        let executable = |path: &Path| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(path)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        };
        if self.program.is_empty() {
            return Err("no command given".into());
        }
        if self.program.contains('/') {
            let path = self.dir.join(&self.program);
            return if executable(&path) {
                Ok(())
            } else {
                Err(format!(
                    "`{}` is not an executable file in {}",
                    self.program,
                    self.dir.display()
                ))
            };
        }
        let found = std::env::var_os("PATH").is_some_and(|path| {
            std::env::split_paths(&path).any(|d| executable(&d.join(&self.program)))
        });
        if found {
            Ok(())
        } else {
            Err(format!("`{}` is not found on PATH", self.program))
        }
    }

    /// Runs the command for the task in `ctx` and says how it went.
    pub fn run(&self, ctx: &TaskContext<'_>) -> Outcome {
        let ws = ctx.workspace();
        let task = &ctx.task;
        let log_dir = ws
            .dir()
            .join("runs")
            .join(maos_coordination::name::file_name(&task.id));
        let log = log_dir.join(format!("attempt-{}.log", task.attempts));
        if let Err(e) = maos_coordination::fs::create_dir_all(&log_dir)
            .and_then(|()| maos_coordination::fs::refuse_symlinks(&log))
        {
            return Outcome::Failed(e.to_string());
        }
        let mut metadata = Map::new();
        metadata.insert("output".into(), Value::String(log.display().to_string()));
        let edit = Edit {
            metadata,
            ..Edit::default()
        };
        if let Err(e) = Tasks::new(ws).update(&task.id, &ctx.agent.id(), edit) {
            return Outcome::Failed(format!("cannot record the output path: {e}"));
        }
        #[expect(
            clippy::disallowed_methods,
            reason = "an attempt's log, written by the command as it runs: no atomic publish"
        )]
        let child = File::create(&log).and_then(|mut out| {
            writeln!(
                out,
                "# maos: task {} attempt {} by {}: running `{}` in {} (branch {})",
                task.id,
                task.attempts,
                ctx.agent.id(),
                std::iter::once(&self.program)
                    .chain(&self.args)
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(" "),
                self.dir.display(),
                branch_of(&self.dir).unwrap_or_else(|| "none: not a git work tree".into())
            )?;
            let err = out.try_clone()?;
            Command::new(&self.program)
                .args(&self.args)
                .current_dir(&self.dir)
                .env("MAOS_TASK_ID", &task.id)
                .env("MAOS_TASK_TITLE", &task.title)
                .env("MAOS_AGENT_ID", ctx.agent.id())
                .env("MAOS_WORKSPACE", ws.root())
                .env("MAOS_WORKTREE", &self.dir)
                .stdin(if self.stdin.is_some() {
                    Stdio::piped()
                } else {
                    Stdio::null()
                })
                .stdout(out)
                .stderr(err)
                .spawn()
        });
        match child {
            Ok(mut child) => {
                if let (Some(input), Some(mut pipe)) = (&self.stdin, child.stdin.take()) {
                    // Written from its own thread: a command that reads slowly (or not at
                    // all) must not hold up the worker's watch over it.
                    let input = input.clone();
                    std::thread::spawn(move || {
                        let _ = pipe.write_all(input.as_bytes());
                    });
                }
                self.wait(child, ctx, &log)
            }
            Err(e) => Outcome::Failed(format!("cannot start `{}`: {e}", self.program)),
        }
    }

    fn wait(&self, mut child: Child, ctx: &TaskContext<'_>, log: &Path) -> Outcome {
        let started = Instant::now();
        loop {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => return Outcome::Done,
                // Ctrl-C in a terminal reaches the whole process group: the command may die
                // of it a moment before the worker's own handler has said "stop". That is an
                // interruption, not a failed attempt.
                Ok(Some(_)) if shutdown_within(ctx, INTERRUPT_GRACE) => {
                    return Outcome::Interrupted;
                }
                Ok(Some(status)) => {
                    let how = status.code().map_or_else(
                        || "was killed by a signal".to_owned(),
                        |c| format!("exited with code {c}"),
                    );
                    return Outcome::Failed(format!(
                        "`{}` {how}; output in {}{}",
                        self.program,
                        log.display(),
                        tail(log)
                    ));
                }
                Ok(None) => {}
                Err(e) => {
                    return Outcome::Failed(format!("cannot wait for `{}`: {e}", self.program));
                }
            }
            if ctx.shutdown.load(Ordering::SeqCst) {
                stop(&mut child);
                return Outcome::Interrupted;
            }
            if let Some(timeout) = self.timeout
                && started.elapsed() > timeout
            {
                stop(&mut child);
                return Outcome::Failed(format!(
                    "`{}` timed out after {}s; output in {}{}",
                    self.program,
                    timeout.as_secs_f64(),
                    log.display(),
                    tail(log)
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// "; last output: …" with the last lines of the log (its own header aside), or nothing.
fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with("# maos:") && !l.trim().is_empty())
        .collect();
    if lines.is_empty() {
        return "; it printed nothing".into();
    }
    let last = &lines[lines.len().saturating_sub(TAIL_LINES)..];
    format!("; last output: {}", last.join(" | "))
}

/// The branch checked out in the git work tree at `dir`.
#[cfg(feature = "worktree")]
pub(crate) use crate::worktree::checked_out as branch_of;

/// Without git support, the branch is not told.
#[cfg(not(feature = "worktree"))]
pub(crate) fn branch_of(_dir: &Path) -> Option<String> {
    None
}

/// How long a command's death waits for the worker's stop flag before it counts as a failure.
const INTERRUPT_GRACE: Duration = Duration::from_millis(200);

/// Whether the worker is asked to stop, now or within `grace`.
fn shutdown_within(ctx: &TaskContext<'_>, grace: Duration) -> bool {
    let deadline = Instant::now() + grace;
    loop {
        if ctx.shutdown.load(Ordering::SeqCst) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// SIGTERM, then SIGKILL after the grace period.
fn stop(child: &mut Child) {
    if let Some(pid) = i32::try_from(child.id()).ok().and_then(Pid::from_raw) {
        let _ = kill_process(pid, Signal::TERM);
    }
    let deadline = Instant::now() + GRACE;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}
