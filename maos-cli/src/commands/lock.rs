//! `maos lock acquire|release|renew|list|show|break`

use maos_coordination::lock::{
    ListedLock, LockError, LockInfo, LockRequest, Locks, validate_resource,
};

use maos_coordination::record::RecordError;

use crate::args::{AcquireArgs, BreakArgs, LockCommand, RenewArgs, ResourceArg};
use crate::context::Context;
use crate::error::{Chain, CliError, Exit};
use crate::output;

pub fn run(ctx: &Context, command: LockCommand) -> Result<(), CliError> {
    match command {
        LockCommand::Acquire(args) => acquire(ctx, args),
        LockCommand::Release(args) => release(ctx, args),
        LockCommand::Renew(args) => renew(ctx, args),
        LockCommand::List => list(ctx),
        LockCommand::Show(args) => show(ctx, args),
        LockCommand::Break(args) => break_lock(ctx, args),
    }
}

fn break_lock(ctx: &Context, args: BreakArgs) -> Result<(), CliError> {
    let locks = Locks::new(&ctx.workspace()?);
    let info = locks.break_lock(&args.resource, &ctx.agent, &args.reason)?;
    if ctx.json {
        return output::json(&info);
    }
    output::line(&format!(
        "broke `{}` held by `{}` (token {}, {}s were left); announced on broadcast/{}",
        info.resource,
        info.owner,
        info.token,
        info.time_left().as_secs().max(0),
        maos_coordination::lock::TOPIC
    ))
}

fn acquire(ctx: &Context, args: AcquireArgs) -> Result<(), CliError> {
    // A lock taken here outlives this process: it belongs to the agent identity.
    let request = LockRequest::new(&args.resource, &ctx.agent)?
        .ttl(args.ttl)
        .purpose(args.purpose)
        .priority(args.priority)
        .bound_to_process(false);
    let mut locks = ctx.locks()?;
    if !args.wait.is_zero() {
        // Not even a stopped process holding the lock's `.fence` keeps us past `--wait`.
        let bound = locks.kernel_lock_wait().min(args.wait);
        locks = locks.with_kernel_lock_wait(bound);
    }
    let guard = match locks.try_acquire(&request) {
        Ok(guard) => guard,
        Err(
            e @ (LockError::Held { .. } | LockError::Queued { .. } | LockError::Conflict { .. }),
        ) if !args.wait.is_zero() => {
            eprintln!(
                "waiting up to {:.1}s: {}…",
                args.wait.as_secs_f64(),
                Chain(&e)
            );
            locks.acquire(&request, args.wait)?
        }
        Err(e) => return Err(e.into()),
    };
    let info = guard.persist();
    if ctx.json {
        output::json(&info)
    } else {
        output::line(&format!(
            "acquired `{}` (token {}, expires in {}s)",
            info.resource,
            info.token,
            info.time_left().as_secs()
        ))
    }
}

fn release(ctx: &Context, args: ResourceArg) -> Result<(), CliError> {
    validate_resource(&args.resource)?;
    let locks = Locks::new(&ctx.workspace()?);
    let info = match locks.release(&args.resource, &ctx.agent) {
        Ok(info) => info,
        Err(LockError::Record(RecordError::Corrupt { .. })) => {
            let moved = locks.release_broken(&args.resource, &ctx.agent)?;
            if ctx.json {
                return output::json(
                    &serde_json::json!({"resource": args.resource, "quarantined": moved}),
                );
            }
            return output::line(&format!(
                "released `{}`: its lock file was broken and is now {}",
                args.resource,
                moved.display()
            ));
        }
        Err(e) => return Err(e.into()),
    };
    if ctx.json {
        output::json(&info)
    } else {
        output::line(&format!(
            "released `{}` (token {})",
            info.resource, info.token
        ))
    }
}

fn renew(ctx: &Context, args: RenewArgs) -> Result<(), CliError> {
    validate_resource(&args.resource)?;
    let info = Locks::new(&ctx.workspace()?).renew(&args.resource, &ctx.agent, args.ttl)?;
    if ctx.json {
        output::json(&info)
    } else {
        output::line(&format!(
            "renewed `{}` (token {}, expires in {}s)",
            info.resource,
            info.token,
            info.time_left().as_secs()
        ))
    }
}

fn show(ctx: &Context, args: ResourceArg) -> Result<(), CliError> {
    validate_resource(&args.resource)?;
    let locks = Locks::new(&ctx.workspace()?);
    let Some(info) = locks.show(&args.resource)? else {
        return Err(CliError::new(
            Exit::NotFound,
            anyhow::anyhow!("lock `{}` is not held", args.resource),
        ));
    };
    let waiters = locks.waiters(&args.resource)?;
    if ctx.json {
        let mut value = info.view();
        if let Some(object) = value.as_object_mut() {
            object.insert(
                "waiters".into(),
                serde_json::to_value(&waiters).unwrap_or_default(),
            );
        }
        return output::json(&value);
    }
    let line = waiters
        .iter()
        .map(|w| {
            format!(
                "{} ({}, queued {})",
                w.agent,
                w.priority,
                output::relative(w.since)
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    output::table(
        &["FIELD", "VALUE"],
        &[
            vec!["resource".into(), info.resource.clone()],
            vec!["owner".into(), info.owner.clone()],
            vec!["state".into(), info.state().as_str().into()],
            vec!["token".into(), info.token.to_string()],
            vec!["purpose".into(), info.purpose.clone()],
            vec!["acquired".into(), output::relative(info.acquired_at)],
            vec!["expires".into(), output::relative(info.expires_at)],
            vec!["holder".into(), holder(&info)],
            vec![
                "waiting".into(),
                if line.is_empty() { "-".into() } else { line },
            ],
        ],
    )
}

fn list(ctx: &Context) -> Result<(), CliError> {
    let listed = Locks::new(&ctx.workspace()?).list()?;
    print_claims(
        ctx,
        &listed,
        "no locks held",
        &["RESOURCE", "OWNER", "TOKEN", "PURPOSE", "LEFT", "STATE"],
        |_| None,
    )
}

/// Prints listed locks or reservations: broken files as warnings on stderr, then the views
/// (`--json`) or a table with `extra` columns after the owner.
pub(crate) fn print_claims(
    ctx: &Context,
    listed: &[ListedLock],
    none: &str,
    headers: &[&str],
    extra: impl Fn(&LockInfo) -> Option<String>,
) -> Result<(), CliError> {
    let mut infos = Vec::new();
    for claim in listed {
        match &claim.info {
            Ok(info) => infos.push(info),
            Err(e) => eprintln!("warning: {}", Chain(e)),
        }
    }
    if ctx.json {
        let values: Vec<serde_json::Value> = infos.iter().map(|i| i.view()).collect();
        return output::json(&values);
    }
    if infos.is_empty() {
        return output::line(none);
    }
    output::table(headers, &claim_rows(&infos, extra))
}

/// One table row per lock or reservation: resource, owner, then `extra` (the mode of a
/// reservation) when given, token, purpose, time left, state.
fn claim_rows(
    infos: &[&LockInfo],
    extra: impl Fn(&LockInfo) -> Option<String>,
) -> Vec<Vec<String>> {
    infos
        .iter()
        .map(|i| {
            let mut row = vec![i.resource.clone(), i.owner.clone()];
            row.extend(extra(i));
            row.extend([
                i.token.to_string(),
                if i.purpose.is_empty() {
                    "-".into()
                } else {
                    i.purpose.clone()
                },
                format!("{}s", i.time_left().as_secs().max(0)),
                i.state().as_str().into(),
            ]);
            row
        })
        .collect()
}

fn holder(info: &LockInfo) -> String {
    if info.bound_to_process {
        format!("pid {} on {}", info.pid, info.host)
    } else {
        format!("agent (taken by pid {} on {})", info.pid, info.host)
    }
}
