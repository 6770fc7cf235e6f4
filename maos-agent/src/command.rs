//! Running an external command per task: what `maos agent run -- <command>` does.
//!
//! The command runs with `MAOS_TASK_ID`, `MAOS_TASK_TITLE`, `MAOS_AGENT_ID` and
//! `MAOS_WORKSPACE` set, in the workspace root. Its stdout and stderr go to
//! `.maos/runs/<task>/attempt-<n>.log`, whose path is stored in the task's
//! `metadata.output` before it starts (so `maos task show` points to it while it runs).
//! Exit 0 is [`Outcome::Done`]; any other exit, a failure to start, or running past the
//! timeout is [`Outcome::Failed`] with the reason. On shutdown the command gets SIGTERM, then
//! SIGKILL after [`GRACE`], and the task is [`Outcome::Interrupted`].

use std::fs::File;
use std::path::Path;
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
}

impl TaskCommand {
    /// Runs the command for the task in `ctx` and says how it went.
    pub fn run(&self, ctx: &TaskContext<'_>) -> Outcome {
        let ws = ctx.workspace();
        let task = &ctx.task;
        let log_dir = ws.dir().join("runs").join(&task.id);
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
        let child = File::create(&log).and_then(|out| {
            let err = out.try_clone()?;
            Command::new(&self.program)
                .args(&self.args)
                .current_dir(ws.root())
                .env("MAOS_TASK_ID", &task.id)
                .env("MAOS_TASK_TITLE", &task.title)
                .env("MAOS_AGENT_ID", ctx.agent.id())
                .env("MAOS_WORKSPACE", ws.root())
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
        });
        match child {
            Ok(child) => self.wait(child, ctx, &log),
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
                        "`{}` {how}; output in {}",
                        self.program,
                        log.display()
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
                    "`{}` timed out after {}s; output in {}",
                    self.program,
                    timeout.as_secs_f64(),
                    log.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
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
