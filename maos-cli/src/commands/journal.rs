//! `maos journal verify` and `maos events`: the journal checked, and read as a stream.

use jiff::Timestamp;
use maos_coordination::journal::{self, Cursor, Entry, Filter, Keep};

use crate::args::{EventsArgs, JournalCommand, JournalPruneArgs};
use crate::context::Context;
use crate::error::{CliError, Exit};
use crate::output;

pub fn run(ctx: &Context, cmd: JournalCommand) -> Result<(), CliError> {
    match cmd {
        JournalCommand::Verify => verify(ctx),
        JournalCommand::Prune(args) => prune(ctx, args),
    }
}

fn prune(ctx: &Context, args: JournalPruneArgs) -> Result<(), CliError> {
    let ws = ctx.workspace()?;
    let keep = match (args.keep_segments, args.older_than) {
        (Some(n), _) => Keep::Segments(n),
        (None, Some(age)) => {
            Keep::Since(Timestamp::now() - jiff::SignedDuration::try_from(age).unwrap_or_default())
        }
        (None, None) => unreachable!("clap requires one of them"),
    };
    let pruned = journal::prune(&ws, keep)?;
    if ctx.json {
        return output::json(&pruned);
    }
    match pruned.archives.len() {
        0 => output::line("nothing to prune"),
        n => output::line(&format!(
            "pruned {n} segment(s), entries up to {} (archived in {})",
            pruned.upto,
            ws.dir().join("archive/journal").display()
        )),
    }
}

fn verify(ctx: &Context) -> Result<(), CliError> {
    let ws = ctx.workspace()?;
    journal::settle_all(&ws)?;
    let report = journal::verify(&ws)?;
    if ctx.json {
        output::json(&report)?;
    } else if report.problem.is_none() {
        let from = if report.first > 1 {
            format!(
                " (from entry {}: the ones before were pruned)",
                report.first
            )
        } else {
            String::new()
        };
        output::line(&format!(
            "journal verified: {} entries in {} segment(s){from}; last hash {}",
            report.entries + 1 - report.first,
            report.segments,
            report.last_hash
        ))?;
    }
    match report.problem {
        None => Ok(()),
        Some(problem) => Err(CliError::new(
            Exit::Error,
            anyhow::anyhow!(
                "{}:{}: {} ({} entries before it verified)",
                problem.path.display(),
                problem.line,
                problem.what,
                report.entries
            ),
        )
        .with_hint("the journal was changed by hand after it was written; the entries before the one named are intact")),
    }
}

pub fn events(ctx: &Context, args: EventsArgs) -> Result<(), CliError> {
    let ws = ctx.workspace()?;
    journal::settle_all(&ws)?;
    let filter = Filter {
        kinds: args.kind,
        since: args
            .since
            .map(|d| Timestamp::now() - jiff::SignedDuration::try_from(d).unwrap_or_default()),
    };
    let print = |entry: &Entry| -> Result<(), CliError> {
        if ctx.json {
            output::json_line(entry)
        } else {
            output::line(&describe(entry))
        }
    };
    // Following without --since starts at the end: only what happens from now on.
    let start = if args.follow && filter.since.is_none() {
        journal::end(&ws)?
    } else {
        Cursor::default()
    };
    if !args.follow {
        let (entries, _) = journal::read_from(&ws, start, &filter)?;
        return entries.iter().try_for_each(print);
    }
    let mut failed = None;
    journal::follow(&ws, start, &filter, args.timeout, |entry| {
        match print(entry) {
            Ok(()) => true,
            Err(e) => {
                failed = Some(e);
                false
            }
        }
    })?;
    failed.map_or(Ok(()), Err)
}

/// One line per event: time, kind, agent, subject, details.
fn describe(entry: &Entry) -> String {
    let mut line = format!(
        "{} #{} {}",
        entry.at.strftime("%Y-%m-%d %H:%M:%S%.3f"),
        entry.n,
        entry.event.kind
    );
    if let Some(agent) = &entry.event.agent {
        line.push_str(&format!(" by {agent}"));
    }
    if let Some(subject) = &entry.event.subject {
        line.push_str(&format!(" {subject}"));
    }
    if !entry.event.data.is_null() {
        line.push_str(&format!(" {}", entry.event.data));
    }
    if entry.late {
        line.push_str(" (journaled late, by the next holder)");
    }
    line
}
