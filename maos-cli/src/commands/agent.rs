//! `maos agent list|recover|run|spawn|retire|join|leave|preset`

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use maos_agent::command::TaskCommand;
use maos_agent::preset::{self, Preset, PresetError};
use maos_agent::session::Session;
use maos_agent::worktree;
use maos_agent::{Agent, JoinOptions, Outcome, RunMode, Worker, WorkerOptions};
use maos_coordination::agents::{AgentState, Registry};
use maos_coordination::recovery::{self, RecoveryOptions};
use serde_json::json;

use crate::args::{
    AgentCommand, AgentRunArgs, JoinArgs, LeaveArgs, PresetCommand, RecoverArgs, RetireArgs,
    SpawnArgs,
};
use crate::context::{self, Context};
use crate::error::{Chain, CliError, Exit};
use crate::output;

pub fn run(ctx: &Context, command: AgentCommand) -> Result<(), CliError> {
    match command {
        AgentCommand::List => list(ctx),
        AgentCommand::Recover(args) => recover(ctx, args),
        AgentCommand::Run(args) => run_worker(ctx, args),
        AgentCommand::Spawn(args) => spawn(ctx, args),
        AgentCommand::Retire(args) => retire(ctx, args),
        AgentCommand::Join(args) => join(ctx, args),
        AgentCommand::Leave(args) => leave(ctx, args),
        AgentCommand::Preset(cmd) => preset(ctx, cmd),
    }
}

/// Registers (or refreshes) an agent no MAOS process runs: the same record a Claude Code
/// session gets (no process to judge; stale when it stops calling).
fn join(ctx: &Context, args: JoinArgs) -> Result<(), CliError> {
    let ws = ctx.workspace()?;
    let (_, mut record) = Session::touch(&ws, &args.id)?;
    if args.role.is_some() || !args.capabilities.is_empty() {
        if let Some(role) = &args.role {
            maos_coordination::name::validate(maos_coordination::name::NameKind::Role, role)?;
        }
        record = Registry::new(&ws)
            .update(&args.id, |on_disk| {
                Ok(on_disk.map(|mut r| {
                    if args.role.is_some() {
                        r.role = args.role.clone();
                    }
                    if !args.capabilities.is_empty() {
                        r.capabilities = args.capabilities.clone();
                    }
                    r
                }))
            })?
            .unwrap_or(record);
    }
    if ctx.json {
        return output::json(&record);
    }
    output::line(&format!(
        "joined as {}{}",
        record.id,
        record
            .role
            .as_deref()
            .map_or(String::new(), |r| format!(" (role {r})"))
    ))
}

fn leave(ctx: &Context, args: LeaveArgs) -> Result<(), CliError> {
    let ws = ctx.workspace()?;
    maos_coordination::name::validate(maos_coordination::name::NameKind::Agent, &args.id)?;
    if Registry::new(&ws).get(&args.id)?.is_none() {
        return Err(CliError::new(
            Exit::NotFound,
            anyhow::anyhow!("no agent `{}` is registered", args.id),
        ));
    }
    let report = Session::of(&ws, &args.id).end()?;
    if ctx.json {
        return output::json(&report);
    }
    output::line(&format!(
        "{} left ({} task(s) returned, {} lease(s) released)",
        args.id,
        report.returned_tasks.len(),
        report.released_locks.len()
    ))
}

fn list(ctx: &Context) -> Result<(), CliError> {
    let (records, broken) = Registry::new(&ctx.workspace()?).list()?;
    for problem in &broken {
        eprintln!("warning: {}", Chain(problem));
    }
    if ctx.json {
        let values: Vec<_> = records
            .iter()
            .map(|r| {
                let mut value = serde_json::to_value(r).unwrap_or_default();
                if let Some(object) = value.as_object_mut() {
                    object.insert("state".into(), json!(r.state()));
                    object.insert(
                        "heartbeat_age_secs".into(),
                        json!(r.heartbeat_age().as_secs()),
                    );
                }
                value
            })
            .collect();
        return output::json(&values);
    }
    if records.is_empty() {
        return output::line("no agents registered");
    }
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            let state = r.state();
            vec![
                r.id.clone(),
                state.as_str().into(),
                r.role.clone().unwrap_or_else(|| "-".into()),
                r.current_task.clone().unwrap_or_else(|| "-".into()),
                match state {
                    AgentState::Gone | AgentState::Registered => "-".into(),
                    _ => format!("{}s ago", r.heartbeat_age().as_secs()),
                },
                format!("{}/{}", r.completed, r.failed),
                r.worktree
                    .as_ref()
                    .map_or_else(|| "-".into(), |p| p.display().to_string()),
            ]
        })
        .collect();
    output::table(
        &[
            "AGENT",
            "STATE",
            "ROLE",
            "TASK",
            "HEARTBEAT",
            "DONE/FAILED",
            "WORKTREE",
        ],
        &rows,
    )
}

fn recover(ctx: &Context, args: RecoverArgs) -> Result<(), CliError> {
    let options = RecoveryOptions {
        max_attempts: args.max_attempts,
        ..RecoveryOptions::default()
    };
    let report = recovery::recover(&ctx.workspace()?, options)?;
    if ctx.json {
        return output::json(&report);
    }
    if report.is_empty() {
        return output::line("no dead or stale agent");
    }
    for r in &report {
        output::line(&format!(
            "{} ({}): returned {}, failed {}, released {}",
            r.agent,
            r.state.as_str(),
            list_or_dash(&r.returned),
            list_or_dash(&r.failed),
            list_or_dash(&r.locks)
        ))?;
    }
    Ok(())
}

fn list_or_dash(items: &[String]) -> String {
    if items.is_empty() {
        "-".into()
    } else {
        items.join(", ")
    }
}

fn run_worker(ctx: &Context, args: AgentRunArgs) -> Result<(), CliError> {
    let ws = ctx.workspace()?;
    let shutdown = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&shutdown)).map_err(|e| {
            CliError::new(Exit::Error, anyhow::anyhow!("cannot handle signals: {e}"))
        })?;
    }
    let agent = Agent::join(
        &ws,
        &ctx.agent,
        JoinOptions {
            role: args.role.clone(),
            capabilities: args.capabilities,
            heartbeat: args.heartbeat,
        },
    )?;
    let (program, rest) = args
        .command
        .split_first()
        .map(|(p, r)| (p.clone(), r.to_vec()))
        .unwrap_or_default();
    // The agent's own worktree when it has one (`maos agent spawn`), else where it was
    // started: the command, its relative paths and its edits belong there, not on `main`.
    let dir = Registry::new(&ws)
        .get(&ctx.agent)
        .ok()
        .flatten()
        .and_then(|r| r.worktree)
        .filter(|w| w.is_dir())
        .map_or_else(std::env::current_dir, Ok)
        .map_err(|e| CliError::new(Exit::Error, anyhow::anyhow!("no current directory: {e}")))?;
    let preset = match &args.preset {
        Some(given) => Some(Preset::load(given, &context::current_dir()?).map_err(|e| {
            CliError::from(e).with_hint("`maos agent preset list` names the built-in ones")
        })?),
        None => None,
    };
    let maos = std::env::current_exe().map_err(|e| {
        CliError::new(
            Exit::Error,
            anyhow::anyhow!("cannot tell where maos is: {e}"),
        )
    })?;
    let command = TaskCommand {
        program: preset.as_ref().map_or(program, |p| p.program().to_owned()),
        args: rest,
        timeout: args.task_timeout,
        dir,
        stdin: None,
    };
    command.check().map_err(|problem| {
        CliError::new(
            Exit::Usage,
            anyhow::anyhow!("cannot run the task command: {problem}; nothing was claimed"),
        )
    })?;
    let options = WorkerOptions {
        mode: if args.once {
            RunMode::Once
        } else if args.until_idle {
            RunMode::UntilIdle
        } else {
            RunMode::Forever
        },
        role: args.role,
        max_attempts: args.max_attempts,
        report_waiting_every: args.report_every,
        shutdown: Arc::clone(&shutdown),
        ..WorkerOptions::default()
    };
    let result = Worker::new(&agent, options)
        .on_event(|event| eprintln!("[{}] {event}", ctx.agent))
        .run(|task_ctx| {
            eprintln!(
                "[{}] {}: {} (attempt {})",
                task_ctx.agent.id(),
                task_ctx.task.id,
                task_ctx.task.title,
                task_ctx.task.attempts
            );
            let outcome = match &preset {
                None => command.run(task_ctx),
                Some(preset) => match preset.command_for(task_ctx, &command.dir, &maos) {
                    Ok(run) => TaskCommand {
                        timeout: command.timeout,
                        ..run
                    }
                    .run(task_ctx),
                    Err(e) => Outcome::Failed(format!("cannot prepare the preset's command: {e}")),
                },
            };
            if let Outcome::Failed(reason) = &outcome {
                eprintln!(
                    "[{}] {}: attempt {} failed: {reason}",
                    task_ctx.agent.id(),
                    task_ctx.task.id,
                    task_ctx.task.attempts
                );
            }
            outcome
        });
    // Leave whatever happened: locks released, unfinished tasks back in the queue.
    let left = agent.leave();
    let report = result?;
    let left = left?;
    if ctx.json {
        output::json(&json!({"report": report, "left": left}))?;
    } else {
        output::line(&format!(
            "{}: completed {}, failed attempts {}, returned {}, dropped {}",
            ctx.agent,
            report.completed.len(),
            report.failed.len(),
            report.interrupted.len() + left.returned_tasks.len(),
            report.dropped.len()
        ))?;
    }
    if report.failed.is_empty() {
        return Ok(());
    }
    // The exit code says it too: a script or CI running workers must not read "all done".
    Err(CliError::new(
        Exit::Error,
        anyhow::anyhow!(
            "{} attempt(s) failed ({}); the reasons are printed above and in `maos task show`",
            report.failed.len(),
            report.failed.join(", ")
        ),
    ))
}

fn spawn(ctx: &Context, args: SpawnArgs) -> Result<(), CliError> {
    let ws = ctx.workspace()?;
    let spawned = worktree::spawn(
        &ws,
        &args.id,
        args.role,
        args.from.as_deref(),
        args.path.as_deref(),
    )?;
    if ctx.json {
        return output::json(&spawned);
    }
    output::line(&format!(
        "agent `{}`: branch {} checked out in {}",
        spawned.agent,
        spawned.branch,
        spawned.worktree.display()
    ))?;
    output::line("start a coding agent there, for example:")?;
    output::line(&format!(
        "  cd {} && MAOS_AGENT_ID={} claude",
        spawned.worktree.display(),
        spawned.agent
    ))?;
    output::line(&format!(
        "  cd {} && MAOS_AGENT_ID={} maos agent run --until-idle -- <command>",
        spawned.worktree.display(),
        spawned.agent
    ))
}

fn retire(ctx: &Context, args: RetireArgs) -> Result<(), CliError> {
    let removed = worktree::retire(
        &ctx.workspace()?,
        &args.id,
        args.into.as_deref(),
        args.release,
        args.force,
    )?;
    if ctx.json {
        return output::json(&json!({"agent": args.id, "removed": removed}));
    }
    output::line(&format!(
        "retired `{}`: removed {}",
        args.id,
        removed.display()
    ))
}

fn preset(ctx: &Context, command: PresetCommand) -> Result<(), CliError> {
    match command {
        PresetCommand::Show { name } => match Preset::built_in(&name) {
            Some(text) => output::line(text.trim_end()),
            None => Err(CliError::new(
                Exit::NotFound,
                PresetError::NotFound { name },
            )),
        },
        PresetCommand::List => {
            let names: Vec<&str> = preset::BUILT_IN.iter().map(|(n, _)| *n).collect();
            if ctx.json {
                output::json(&names)
            } else {
                output::line(&names.join("\n"))
            }
        }
    }
}
