//! `maos reserve`, `maos unreserve`, `maos reservations`: leases on glob patterns.

use maos_coordination::lock::{LockError, LockInfo, ReservationRequest, Reservations};

use crate::args::{ReserveArgs, UnreserveArgs};
use crate::commands::lock::print_claims;
use crate::context::Context;
use crate::error::{Chain, CliError};
use crate::output;

pub fn reserve(ctx: &Context, args: ReserveArgs) -> Result<(), CliError> {
    // Like a CLI lock, a reservation belongs to the agent, not to this short-lived process.
    let request = ReservationRequest::new(&args.patterns, &ctx.agent)?
        .shared(args.shared)
        .ttl(args.ttl)
        .reason(args.reason);
    let reservations = Reservations::of(&ctx.locks()?);
    let granted = match reservations.try_reserve(&request) {
        Ok(granted) => granted,
        Err(e @ LockError::Conflict { .. }) if !args.wait.is_zero() => {
            eprintln!(
                "waiting up to {:.1}s: {}…",
                args.wait.as_secs_f64(),
                Chain(&e)
            );
            reservations.reserve(&request, args.wait)?
        }
        Err(e) => return Err(conflict_hint(e)),
    };
    if ctx.json {
        let values: Vec<serde_json::Value> = granted.iter().map(LockInfo::view).collect();
        return output::json(&values);
    }
    for info in &granted {
        output::line(&format!(
            "reserved `{}` ({}, token {}, expires in {}s)",
            info.resource,
            mode(info),
            info.token,
            info.time_left().as_secs()
        ))?;
    }
    Ok(())
}

pub fn unreserve(ctx: &Context, args: UnreserveArgs) -> Result<(), CliError> {
    let reservations = Reservations::new(&ctx.workspace()?);
    if args.break_them {
        let reason = args.reason.unwrap_or_default();
        let mut broken = Vec::new();
        for pattern in &args.patterns {
            broken.extend(reservations.break_reservations(
                pattern,
                args.owner.as_deref(),
                &ctx.agent,
                &reason,
            )?);
        }
        if ctx.json {
            return output::json(&broken);
        }
        for info in &broken {
            output::line(&format!(
                "broke `{}` of `{}` (token {}, {}); announced on broadcast/{}",
                info.resource,
                info.owner,
                info.token,
                info.left_words(),
                maos_coordination::lock::TOPIC
            ))?;
        }
        return Ok(());
    }
    let released = if args.all {
        reservations.release_all_of(&ctx.agent)?
    } else {
        reservations.release(&args.patterns, &ctx.agent)?
    };
    if ctx.json {
        return output::json(&released);
    }
    if released.is_empty() {
        return output::line("no reservations to release");
    }
    for info in &released {
        output::line(&format!(
            "released `{}` (token {})",
            info.resource, info.token
        ))?;
    }
    Ok(())
}

pub fn list(ctx: &Context) -> Result<(), CliError> {
    let listed = Reservations::new(&ctx.workspace()?).list()?;
    print_claims(
        ctx,
        &listed,
        "no reservations",
        &[
            "PATTERN", "OWNER", "MODE", "TOKEN", "REASON", "LEFT", "STATE",
        ],
        |i| Some(mode(i).into()),
    )
}

fn mode(info: &LockInfo) -> &'static str {
    if info.shared { "shared" } else { "exclusive" }
}

/// A conflict with a hint on how to reach the holder.
fn conflict_hint(e: LockError) -> CliError {
    let owner = match &e {
        LockError::Conflict { holder, .. } => Some(holder.owner.clone()),
        _ => None,
    };
    let error = CliError::from(e);
    match owner {
        Some(owner) => error.with_hint(format!(
            "ask them: `maos msg send --to {owner} dm \"may I have …?\"`, or wait with --wait 10m"
        )),
        None => error,
    }
}
