//! `maos inbox [--peek] [--all] [--watch [--timeout D]]`

use maos_coordination::channel::{self, Inbox, Message, Unread};
use serde_json::Value;

use crate::args::InboxArgs;
use crate::context::Context;
use crate::error::{Chain, CliError, Exit};
use crate::output;

pub fn run(ctx: &Context, args: InboxArgs) -> Result<(), CliError> {
    let ws = ctx.workspace()?;
    // Whoever looks at mail tells senders of acknowledgements gone overdue (once each).
    channel::announce_overdue(&ws, jiff::Timestamp::now())?;
    let inbox = Inbox::of(&ws, &ctx.agent)?;
    let unread = if args.all {
        inbox.history()?
    } else if args.peek {
        inbox.peek()?
    } else if args.watch {
        inbox.wait(args.timeout)?.ok_or_else(|| {
            CliError::new(
                Exit::Timeout,
                anyhow::anyhow!(
                    "no message for {} within {:?}",
                    ctx.agent,
                    args.timeout.unwrap_or_default()
                ),
            )
        })?
    } else {
        inbox.take()?
    };
    print(ctx, &unread)
}

fn print(ctx: &Context, unread: &Unread) -> Result<(), CliError> {
    for problem in &unread.skipped {
        eprintln!("warning: skipped: {}", Chain(problem));
    }
    for (channel, pruned) in &unread.pruned {
        eprintln!(
            "note: {channel} was {pruned} before this inbox read it; `maos msg recv {channel} --archived` reads them"
        );
    }
    if ctx.json {
        return output::json(&unread.messages);
    }
    if unread.messages.is_empty() {
        return output::line(&format!("no unread messages for {}", ctx.agent));
    }
    let rows: Vec<Vec<String>> = unread.messages.iter().map(row).collect();
    output::table(
        &["CHANNEL", "SEQ", "SENT", "FROM", "TYPE", "PAYLOAD"],
        &rows,
    )
}

fn row(m: &Message) -> Vec<String> {
    let mut payload = match &m.payload {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if m.ack.is_some() {
        payload.push_str(&format!("  [ack: maos msg ack {} {}]", m.channel, m.seq));
    }
    vec![
        m.channel.clone(),
        format!("#{}", m.seq),
        output::relative(m.timestamp),
        m.sender.clone(),
        m.kind.clone(),
        payload,
    ]
}
