//! `maos status`: the workspace at a glance: held locks, tasks by status, channels.

use maos_coordination::channel;
use maos_coordination::lock::Locks;
use maos_coordination::progress;
use maos_coordination::task::Tasks;
use serde_json::json;

use crate::context::Context;
use crate::error::{Chain, CliError};
use crate::output;

pub fn run(ctx: &Context) -> Result<(), CliError> {
    let ws = ctx.workspace()?;
    let channels = channel::list_channels(&ws)?;
    let locks: Vec<_> = Locks::new(&ws)
        .list()?
        .into_iter()
        .filter_map(|l| match l.info {
            Ok(info) => Some(info),
            Err(e) => {
                eprintln!("warning: {}", Chain(&e));
                None
            }
        })
        .collect();
    let listing = Tasks::new(&ws).list()?;
    for problem in &listing.skipped {
        eprintln!("warning: {}", Chain(problem));
    }
    let report = progress::report(&listing);
    if ctx.json {
        return output::json(&json!({
            "workspace": ws.root(),
            "format_version": ws.config().format_version,
            "agent": ctx.agent,
            "locks": locks.iter().map(|l| json!({
                "resource": l.resource,
                "owner": l.owner,
                "purpose": l.purpose,
                "expires_at": l.expires_at,
                "state": l.state(),
            })).collect::<Vec<_>>(),
            "tasks": {
                "total": report.total,
                "by_status": report.by_status,
                "completion_percentage": report.completion_percentage,
            },
            "channels": channels,
        }));
    }
    output::line(&format!(
        "workspace  {} (format {})",
        ws.root().display(),
        ws.config().format_version
    ))?;
    output::line(&format!("agent      {}", ctx.agent))?;
    output::line("")?;
    if locks.is_empty() {
        output::line("locks      none held")?;
    } else {
        output::line(&format!("locks      {} held", locks.len()))?;
        for lock in &locks {
            output::line(&format!("  {:<24} {}", lock.resource, lock.describe()))?;
        }
    }
    if report.total == 0 {
        output::line("tasks      none yet")?;
    } else {
        let counts: Vec<String> = report
            .by_status
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(status, n)| format!("{status} {n}"))
            .collect();
        output::line(&format!(
            "tasks      {} {}  ({})",
            report.total,
            progress::bar(report.completion_percentage, 20),
            counts.join(", ")
        ))?;
    }
    if channels.is_empty() {
        return output::line("channels   none yet");
    }
    let total: u64 = channels.iter().map(|c| c.messages).sum();
    output::line(&format!(
        "channels   {} with {total} messages",
        channels.len()
    ))?;
    let rows: Vec<Vec<String>> = channels
        .iter()
        .map(|c| {
            vec![
                format!("  {}", c.name),
                c.messages.to_string(),
                c.last_activity.map_or("-".into(), output::relative),
            ]
        })
        .collect();
    output::table(&["  CHANNEL", "MESSAGES", "LAST ACTIVITY"], &rows)
}
