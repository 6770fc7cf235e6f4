//! `maos progress [--gantt | --dot | --mermaid-graph | --svg FILE]`

use jiff::Timestamp;
use maos_coordination::task::Tasks;
use maos_coordination::{pictures, progress};

use crate::args::ProgressArgs;
use crate::context::Context;
use crate::error::{Chain, CliError};
use crate::output;

pub fn run(ctx: &Context, args: ProgressArgs) -> Result<(), CliError> {
    let ws = ctx.workspace()?;
    let tasks = Tasks::new(&ws);
    if args.gantt || args.dot || args.mermaid_graph || args.svg.is_some() {
        // Pictures draw whole records: start and finish times, dependencies, titles.
        let listing = tasks.list()?;
        for problem in &listing.skipped {
            eprintln!("warning: {}", Chain(problem));
        }
        let picture = if args.gantt {
            progress::gantt(&listing, Timestamp::now())
        } else if args.mermaid_graph {
            pictures::tasks_mermaid(&listing)
        } else {
            pictures::tasks_dot(&listing)
        };
        if let Some(file) = &args.svg {
            return output::svg(&picture, file);
        }
        return output::line(picture.trim_end());
    }
    let view = tasks.summaries(true)?;
    super::task::warn_view(&view);
    let report = progress::report_over(&view.tasks, &view.skipped);
    // The saved report is a convenience for other tools: failing to write it is not fatal.
    if let Err(e) = progress::save(&ws, &report) {
        eprintln!("warning: the report was not saved: {}", Chain(&e));
    }
    if ctx.json {
        return output::json(&report);
    }
    let mut lines = vec![format!(
        "{} of {} tasks completed  {}",
        report.by_status["completed"],
        report.total,
        progress::bar(report.completion_percentage, 30)
    )];
    if report.total > 0 {
        lines.push(report.status_counts());
    }
    if !report.critical_path_tasks.is_empty() {
        lines.push(format!(
            "critical path ({} tasks): {}",
            report.critical_path_tasks.len(),
            report
                .critical_path_tasks
                .iter()
                .map(|s| format!("{} {} ({})", s.id, s.title, s.status))
                .collect::<Vec<_>>()
                .join(" → ")
        ));
    }
    for blocked in &report.blocked {
        let why = match &blocked.reason {
            Some(reason) => format!("blocked by hand: {reason}"),
            None => maos_coordination::task::describe_blockers(&blocked.waiting_for),
        };
        lines.push(format!("blocked {} {}: {why}", blocked.id, blocked.title));
    }
    let by_assignee: Vec<String> = report
        .by_assignee
        .iter()
        .map(|(who, counts)| {
            let done = counts.get("completed").copied().unwrap_or(0);
            let total: usize = counts.values().sum();
            format!("{who} {done}/{total}")
        })
        .collect();
    if !by_assignee.is_empty() {
        lines.push(format!("by assignee: {}", by_assignee.join(", ")));
    }
    // One write: thousands of blocked tasks must not cost a system call each.
    output::line(&lines.join("\n"))
}
