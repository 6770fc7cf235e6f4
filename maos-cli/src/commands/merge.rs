//! `maos merge prepare|run|resolve|forecast`

use maos_coordination::merge::{MergeCoordinator, MergeError, Preparation, Strategy};
use maos_coordination::vote::{Outcome, Votes};

use crate::args::{ForecastArgs, MergeCommand, MergePair, MergeRunArgs};
use crate::context::Context;
use crate::error::{CliError, Exit};
use crate::output;

pub fn run(ctx: &Context, command: MergeCommand) -> Result<(), CliError> {
    let merge = MergeCoordinator::open(&ctx.workspace()?)?;
    match command {
        MergeCommand::Prepare(pair) => prepare(ctx, &merge, pair),
        MergeCommand::Run(args) => run_merge(ctx, &merge, args),
        MergeCommand::Resolve(pair) => resolve(ctx, &merge, pair),
        MergeCommand::Forecast(args) => forecast(ctx, &merge, args),
    }
}

fn prepare(ctx: &Context, merge: &MergeCoordinator, pair: MergePair) -> Result<(), CliError> {
    let prep = merge.prepare(&pair.source, &pair.target)?;
    if ctx.json {
        return output::json(&prep);
    }
    print_preparation(&prep)
}

fn print_preparation(prep: &Preparation) -> Result<(), CliError> {
    output::line(&format!(
        "{} → {}: {}",
        prep.source,
        prep.target,
        match prep.strategy {
            Strategy::UpToDate => "up to date (nothing to merge)",
            Strategy::FastForward => "fast-forward",
            Strategy::CleanMerge => "clean merge",
            Strategy::NeedsResolution => "needs resolution",
        }
    ))?;
    output::line(&format!(
        "merge base {}, {} file(s) changed on {}, {} on {}",
        short(&prep.merge_base),
        prep.source_files.len(),
        prep.source,
        prep.target_files.len(),
        prep.target
    ))?;
    if !prep.conflicts.is_empty() {
        output::line(&format!("conflicts ({}):", prep.conflicts.len()))?;
        for c in &prep.conflicts {
            let hunks = c
                .hunks
                .iter()
                .map(|h| format!("lines {}–{}", h.start_line, h.end_line))
                .collect::<Vec<_>>()
                .join(", ");
            output::line(&format!(
                "  {}  {}  agents: {}{}",
                c.path,
                c.kind.as_str().replace('_', " "),
                if c.agents.is_empty() {
                    "-".into()
                } else {
                    c.agents.join(", ")
                },
                if hunks.is_empty() {
                    String::new()
                } else {
                    format!("  ({hunks})")
                }
            ))?;
        }
    }
    if !prep.clean_files.is_empty() {
        output::line(&format!(
            "clean ({}): {}",
            prep.clean_files.len(),
            prep.clean_files.join(", ")
        ))?;
    }
    for (agent, files) in &prep.agent_modifications {
        output::line(&format!("  {agent} changed {}", files.join(", ")))?;
    }
    Ok(())
}

fn short(oid: &str) -> &str {
    oid.get(..10).unwrap_or(oid)
}

fn run_merge(ctx: &Context, merge: &MergeCoordinator, args: MergeRunArgs) -> Result<(), CliError> {
    if let Some(id) = &args.require_approval {
        let standing = Votes::new(&ctx.workspace()?).show(id)?;
        if standing.outcome != Outcome::Approved {
            return Err(CliError::new(
                Exit::Conflict,
                anyhow::anyhow!(
                    "not merged: proposal `{id}` (\"{}\") is {}, not approved",
                    standing.text,
                    standing.outcome
                ),
            ));
        }
    }
    let outcome = match merge.run(
        &args.pair.source,
        &args.pair.target,
        &ctx.agent,
        args.message.as_deref(),
    ) {
        Ok(outcome) => outcome,
        Err(MergeError::Conflicts { prep }) => {
            if ctx.json {
                output::json(&prep)?;
            } else {
                print_preparation(&prep)?;
            }
            return Err(
                CliError::from(MergeError::Conflicts { prep }).with_hint(format!(
                    "`maos merge resolve {} {}` files a resolution task per conflicted file",
                    args.pair.source, args.pair.target
                )),
            );
        }
        Err(e) => return Err(e.into()),
    };
    if ctx.json {
        return output::json(&outcome);
    }
    let what = match outcome.strategy {
        Strategy::UpToDate => format!("`{}` already contains `{}`", outcome.target, outcome.source),
        Strategy::FastForward => format!(
            "fast-forwarded `{}` to {}",
            outcome.target,
            short(&outcome.commit)
        ),
        _ => format!(
            "merged `{}` into `{}`: {}",
            outcome.source,
            outcome.target,
            short(&outcome.commit)
        ),
    };
    output::line(&what)?;
    for path in &outcome.updated_worktrees {
        output::line(&format!("updated the work tree {}", path.display()))?;
    }
    Ok(())
}

fn resolve(ctx: &Context, merge: &MergeCoordinator, pair: MergePair) -> Result<(), CliError> {
    let resolution = merge.resolve(&pair.source, &pair.target, &ctx.agent)?;
    if ctx.json {
        return output::json(&resolution);
    }
    if resolution.tasks.is_empty() {
        return output::line(&format!(
            "no conflicts: `maos merge run {} {}` can merge",
            pair.source, pair.target
        ));
    }
    for t in &resolution.tasks {
        output::line(&format!(
            "{} {} → {}{}",
            t.task,
            t.path,
            t.assignee.as_deref().unwrap_or("unassigned"),
            if t.created { "" } else { " (already filed)" }
        ))?;
    }
    Ok(())
}

fn forecast(ctx: &Context, merge: &MergeCoordinator, args: ForecastArgs) -> Result<(), CliError> {
    let forecast = merge.forecast(&args.branches, &ctx.agent)?;
    if args.dot || args.svg.is_some() {
        let picture = maos_coordination::pictures::forecast_dot(&forecast);
        if let Some(file) = &args.svg {
            return output::svg(&picture, file);
        }
        return output::line(picture.trim_end());
    }
    if ctx.json {
        return output::json(&forecast);
    }
    output::line(&format!(
        "checked {} branch(es): {}",
        forecast.branches.len(),
        forecast.branches.join(", ")
    ))?;
    if forecast.conflicts.is_empty() {
        return output::line("no pair conflicts");
    }
    for c in &forecast.conflicts {
        let new = forecast
            .new_conflicts
            .iter()
            .any(|n| n.a == c.a && n.b == c.b);
        output::line(&format!(
            "{} × {}: {}{}",
            c.a,
            c.b,
            c.files.join(", "),
            if new { "  (new)" } else { "" }
        ))?;
    }
    Ok(())
}
