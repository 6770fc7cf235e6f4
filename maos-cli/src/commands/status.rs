//! `maos status [--watch]`: the workspace at a glance — agents, held locks, tasks by status,
//! channels, the last merge forecast — refreshed in place on changes with `--watch`.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use maos_coordination::Workspace;
use maos_coordination::agents::{AgentState, Registry};
use maos_coordination::channel;
use maos_coordination::lock::{ListedLock, LockInfo, Locks, Reservations};
use maos_coordination::merge::last_forecast;
use maos_coordination::progress;
use maos_coordination::task::Tasks;
use maos_coordination::wake::DirWatch;
use serde_json::{Value, json};

use crate::args::StatusViewArgs;
use crate::context::Context;
use crate::error::{Chain, CliError, Exit};
use crate::output;

pub fn run(ctx: &Context, args: StatusViewArgs) -> Result<(), CliError> {
    let ws = ctx.workspace()?;
    if !args.watch {
        let (value, lines, warnings) = snapshot(ctx, &ws)?;
        for warning in warnings {
            eprintln!("warning: {warning}");
        }
        return if ctx.json {
            output::json(&value)
        } else {
            lines.iter().try_for_each(|l| output::line(l))
        };
    }
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop)).map_err(|e| {
            CliError::new(Exit::Error, anyhow::anyhow!("cannot handle signals: {e}"))
        })?;
    }
    // One watch on every directory whose change shows in the view; a timer refreshes the
    // ages (heartbeats, time left) and catches what the watch cannot see.
    let watch = DirWatch::start(ws.dir(), |_| false).map(|mut w| {
        for sub in ["channels", "locks", "tasks", "agents", "merge"] {
            w.add(&ws.dir().join(sub));
        }
        w
    });
    let terminal = std::io::stdout().is_terminal();
    while !stop.load(Ordering::SeqCst) {
        let (value, lines, _) = snapshot(ctx, &ws)?;
        if ctx.json {
            output::json_line(&value)?;
        } else {
            if terminal {
                // Home and clear: refresh in place.
                output::line("\x1b[H\x1b[2J")?;
            } else {
                output::line("---")?;
            }
            lines.iter().try_for_each(|l| output::line(l))?;
        }
        // Sleep in short steps so Ctrl-C quits at once.
        for _ in 0..10 {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let woke = match &watch {
                Some(w) => {
                    w.wait(Duration::from_millis(100)) == maos_coordination::wake::Woken::Event
                }
                None => {
                    std::thread::sleep(Duration::from_millis(100));
                    false
                }
            };
            if woke {
                // Let a burst of changes settle into one refresh.
                std::thread::sleep(Duration::from_millis(50));
                break;
            }
        }
    }
    Ok(())
}

/// The records of listed locks or reservations; each broken file becomes a warning.
fn readable(listed: Vec<ListedLock>, warnings: &mut Vec<String>) -> Vec<LockInfo> {
    listed
        .into_iter()
        .filter_map(|l| {
            l.info
                .map_err(|e| warnings.push(Chain(&e).to_string()))
                .ok()
        })
        .collect()
}

/// The status as JSON, as lines for people, and warnings about broken files.
fn snapshot(ctx: &Context, ws: &Workspace) -> Result<(Value, Vec<String>, Vec<String>), CliError> {
    let mut warnings = Vec::new();
    let (agents, broken) = Registry::new(ws).list()?;
    warnings.extend(broken.iter().map(|e| Chain(e).to_string()));
    let locks = readable(Locks::new(ws).list()?, &mut warnings);
    let reservations = readable(Reservations::new(ws).list()?, &mut warnings);
    let view = Tasks::new(ws).summaries(true)?;
    warnings.extend(view.skipped.iter().map(|e| Chain(e).to_string()));
    let report = progress::report_over(&view.tasks, &view.skipped);
    let channels = channel::list_channels(ws)?;
    let unread = channel::Inbox::of(ws, &ctx.agent)?.peek()?.messages.len();
    let overdue = channel::overdue(ws, jiff::Timestamp::now())?.len();
    let last_event = maos_coordination::journal::last(ws)?;
    let forecast = last_forecast(ws).unwrap_or_else(|e| {
        warnings.push(Chain(&e).to_string());
        None
    });

    let value = json!({
        "workspace": ws.root(),
        "format_version": ws.config().format_version,
        "store": ws.store().spec().to_string(),
        "agent": ctx.agent,
        "agents": agents.iter().map(|a| json!({
            "id": a.id,
            "state": a.state(),
            "role": a.role,
            "current_task": a.current_task,
            "heartbeat_age_secs": a.heartbeat_age().as_secs(),
        })).collect::<Vec<_>>(),
        "locks": locks.iter().map(|l| l.view()).collect::<Vec<_>>(),
        "reservations": reservations.iter().map(|r| r.view()).collect::<Vec<_>>(),
        "tasks": {
            "total": report.total,
            "by_status": report.by_status,
            "completion_percentage": report.completion_percentage,
        },
        "channels": channels,
        "inbox": {"unread": unread},
        "overdue_acks": overdue,
        "journal": last_event.as_ref().map(|e| json!({
            "entries": e.n,
            "last": {"kind": e.event.kind, "at": e.at, "agent": e.event.agent, "subject": e.event.subject},
        })),
        "forecast": forecast.as_ref().map(|f| json!({
            "checked_at": f.checked_at,
            "conflicts": f.conflicts,
        })),
    });

    let mut lines = vec![
        format!(
            "workspace  {} (format {})",
            ws.root().display(),
            ws.config().format_version
        ),
        format!("agent      {}", ctx.agent),
    ];
    if !ws.store().is_files() {
        lines.push(format!("store      {}", ws.store().spec()));
    }
    lines.push(String::new());
    let active: Vec<_> = agents
        .iter()
        .filter(|a| a.state() != AgentState::Gone)
        .collect();
    if active.is_empty() {
        lines.push("agents     none active".into());
    } else {
        // Counted by state: a registered agent (no process yet) or a stale one is not
        // "active".
        let mut by_state: Vec<(&str, usize)> = Vec::new();
        for a in &active {
            let state = a.state().as_str();
            match by_state.iter_mut().find(|(s, _)| *s == state) {
                Some((_, n)) => *n += 1,
                None => by_state.push((state, 1)),
            }
        }
        let counts: Vec<String> = by_state.iter().map(|(s, n)| format!("{n} {s}")).collect();
        lines.push(format!("agents     {}", counts.join(", ")));
        for a in active {
            let state = a.state();
            lines.push(format!(
                "  {:<20} {:<10} task {:<10} heartbeat {}",
                a.id,
                state.as_str(),
                a.current_task.as_deref().unwrap_or("-"),
                match state {
                    AgentState::Registered => "-".to_owned(),
                    _ => format!("{}s ago", a.heartbeat_age().as_secs()),
                }
            ));
        }
    }
    if locks.is_empty() {
        lines.push("locks      none held".into());
    } else {
        lines.push(format!("locks      {} held", locks.len()));
        lines.extend(
            locks
                .iter()
                .map(|l| format!("  {:<24} {}", l.resource, l.describe())),
        );
    }
    if !reservations.is_empty() {
        lines.push(format!("reserved   {} pattern(s)", reservations.len()));
        lines.extend(reservations.iter().map(|r| {
            format!(
                "  {:<24} {} ({})",
                r.resource,
                r.describe(),
                if r.shared { "shared" } else { "exclusive" }
            )
        }));
    }
    if report.total == 0 {
        lines.push("tasks      none yet".into());
    } else {
        lines.push(format!(
            "tasks      {} {}  ({})",
            report.total,
            progress::bar(report.completion_percentage, 20),
            report.status_counts()
        ));
    }
    if channels.is_empty() {
        lines.push("channels   none yet".into());
    } else {
        let total: u64 = channels.iter().map(|c| c.messages).sum();
        lines.push(format!(
            "channels   {} with {total} messages",
            channels.len()
        ));
        for c in &channels {
            lines.push(format!(
                "  {:<24} {:>6} messages, last {}",
                c.name,
                c.messages,
                c.last_activity.map_or("-".into(), output::relative)
            ));
        }
    }
    if unread > 0 {
        lines.push(format!(
            "inbox      {unread} unread for {} (maos inbox)",
            ctx.agent
        ));
    }
    if overdue > 0 {
        lines.push(format!("acks       {overdue} overdue (maos msg overdue)"));
    }
    if let Some(e) = &last_event {
        lines.push(format!(
            "journal    {} entries, last {}{} {} (maos events)",
            e.n,
            e.event.kind,
            e.event
                .subject
                .as_deref()
                .map_or(String::new(), |s| format!(" {s}")),
            output::relative(e.at)
        ));
    }
    if let Some(f) = &forecast {
        if f.conflicts.is_empty() {
            lines.push(format!(
                "forecast   no conflicts among {} branches ({})",
                f.branches.len(),
                output::relative(f.checked_at)
            ));
        } else {
            lines.push(format!(
                "forecast   {} conflicting pair(s) ({})",
                f.conflicts.len(),
                output::relative(f.checked_at)
            ));
            lines.extend(
                f.conflicts
                    .iter()
                    .map(|c| format!("  {} × {}: {}", c.a, c.b, c.files.join(", "))),
            );
        }
    }
    Ok((value, lines, warnings))
}
