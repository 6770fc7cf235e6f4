//! `maos guard install|uninstall|check`: the pre-commit guard (see `maos_agent::guard`).

use std::time::Duration;

use anyhow::anyhow;
use maos_agent::guard;
use maos_coordination::workspace;
use serde_json::json;

use crate::args::{GuardCheckArgs, GuardCommand};
use crate::context::{self, Context};
use crate::error::{CliError, Exit};
use crate::output;

/// How long the check waits for a kernel lock another process holds.
const GUARD_LOCK_WAIT: Duration = Duration::from_secs(5);

pub fn run(ctx: &Context, command: GuardCommand) -> Result<(), CliError> {
    match command {
        GuardCommand::Install => install(ctx),
        GuardCommand::Uninstall => uninstall(ctx),
        GuardCommand::Check(args) => check(ctx, &args),
    }
}

fn install(ctx: &Context) -> Result<(), CliError> {
    let maos = std::env::current_exe()
        .map_err(|e| CliError::new(Exit::Error, anyhow!("cannot tell where maos is: {e}")))?;
    let change = guard::install(&context::current_dir()?, &maos)?;
    if ctx.json {
        return output::json(&change);
    }
    let what = if change.changed {
        "installed the pre-commit guard:"
    } else {
        "the pre-commit guard is already installed:"
    };
    output::line(&format!("{what} {}", change.hook.display()))?;
    if let Some(chained) = &change.chained {
        output::line(&format!(
            "the hook that was there is kept as {} and runs after the check",
            chained.display()
        ))?;
    }
    Ok(())
}

fn uninstall(ctx: &Context) -> Result<(), CliError> {
    let change = guard::uninstall(&context::current_dir()?)?;
    if ctx.json {
        return output::json(&change);
    }
    let line = match (change.changed, &change.chained) {
        (false, _) => format!("no MAOS pre-commit guard at {}", change.hook.display()),
        (true, Some(_)) => format!(
            "removed the pre-commit guard; your own hook is back at {}",
            change.hook.display()
        ),
        (true, None) => format!("removed the pre-commit guard {}", change.hook.display()),
    };
    output::line(&line)
}

fn check(ctx: &Context, args: &GuardCheckArgs) -> Result<(), CliError> {
    if context::guard_off() {
        eprintln!("maos guard: MAOS_GUARD=off, nothing checked");
        return Ok(());
    }
    let cwd = context::current_dir()?;
    let Some(ws) = ctx.workspace_near(&cwd, GUARD_LOCK_WAIT)? else {
        return Ok(()); // no `.maos/` here: nothing to guard
    };
    let mut paths = if args.staged {
        guard::staged_paths(&cwd)?
    } else {
        Vec::new()
    };
    paths.extend(
        args.paths
            .iter()
            .filter_map(|p| workspace::repository_path(ws.root(), &cwd.join(p))),
    );
    let given = ctx.agent_given.then_some(ctx.agent.as_str());
    let committers = guard::committers(&ws, &cwd, given, &ctx.agent)?;
    let refusals = guard::check(&ws, &paths, &committers)?;
    if ctx.json {
        let held: Vec<_> = refusals
            .iter()
            .map(|r| json!({ "path": r.path, "holder": r.claim.view() }))
            .collect();
        output::json(&json!({ "checked": paths.len(), "held": held }))?;
    }
    if refusals.is_empty() {
        return Ok(());
    }
    let mut text = String::from("maos guard: this commit changes files other agents hold:\n");
    for r in &refusals {
        text.push_str(&format!("  {}: {}\n", r.path, r.claim.describe_claim()));
    }
    let owner = &refusals[0].claim.owner;
    text.push_str(&format!(
        "Ask them to release it (`maos msg send general --to {owner} \"…\"`), wait, or unstage \
         those files. To commit anyway: MAOS_GUARD=off git commit … (or git commit --no-verify)."
    ));
    Err(CliError::new(Exit::Conflict, anyhow!(text)))
}
