//! `maos msg send|recv|watch|broadcast|channels|ack|show|overdue|thread|prune|search`

use maos_coordination::channel::{
    self, Batch, Channel, ChannelError, ChannelName, Cursor, Draft, Message, Query, Retention,
};
use serde_json::Value;

use crate::args::{
    AckArgs, BroadcastArgs, FilterArgs, MessageArgs, MessageRefArgs, MsgCommand, PruneArgs,
    RecvArgs, SearchArgs, SendArgs, WatchArgs,
};
use crate::context::Context;
use crate::error::{Chain, CliError, Exit};
use crate::output;

pub fn run(ctx: &Context, command: MsgCommand) -> Result<(), CliError> {
    match command {
        MsgCommand::Send(args) => send(ctx, args),
        MsgCommand::Recv(args) => recv(ctx, args),
        MsgCommand::Watch(args) => watch(ctx, args),
        MsgCommand::Broadcast(args) => broadcast(ctx, args),
        MsgCommand::Channels => channels(ctx),
        MsgCommand::Ack(args) => ack(ctx, args),
        MsgCommand::Show(args) => show(ctx, args),
        MsgCommand::Overdue => overdue(ctx),
        MsgCommand::Thread(args) => thread(ctx, args),
        MsgCommand::Prune(args) => prune(ctx, args),
        MsgCommand::Search(args) => search(ctx, args),
    }
}

fn prune(ctx: &Context, args: PruneArgs) -> Result<(), CliError> {
    let rule = match (args.keep, args.older_than) {
        (Some(n), _) => Retention::Keep(n),
        (None, Some(age)) => Retention::OlderThanSecs(age.as_secs()),
        (None, None) => {
            return Err(CliError::new(
                Exit::Usage,
                anyhow::anyhow!("give --keep N or --older-than DURATION"),
            ));
        }
    };
    let names = match &args.channel {
        Some(channel) => vec![ChannelName::new(channel)?],
        None => {
            let ws = ctx.workspace()?;
            channel::channel_names(&ws)?
        }
    };
    let ws = ctx.workspace()?;
    let now = jiff::Timestamp::now();
    let mut reports = Vec::new();
    for name in names {
        let unread = if args.drop_unread {
            channel::IfUnread::Drop
        } else {
            channel::IfUnread::Keep
        };
        reports.push(channel::prune(&ws, &name, rule, now, unread)?);
    }
    if ctx.json {
        return output::json(&reports);
    }
    let lines: Vec<String> = reports
        .iter()
        .map(|r| {
            let mut line = format!(
                "{}: {} message(s) archived now, pruned up to seq {}",
                r.channel, r.archived, r.upto
            );
            if let Some(why) = &r.kept_because {
                line.push_str(&format!(" (stopped: {why})"));
            }
            line
        })
        .collect();
    output::line(&lines.join("\n"))
}

fn search(ctx: &Context, args: SearchArgs) -> Result<(), CliError> {
    let pattern = regex::Regex::new(&args.pattern).map_err(|e| {
        CliError::new(
            Exit::Usage,
            anyhow::anyhow!("`{}` is not a pattern: {e}", args.pattern),
        )
    })?;
    let query = Query {
        pattern,
        channel: args.channel.as_deref().map(ChannelName::new).transpose()?,
        from: args.from,
        since: args
            .since
            .and_then(|d| jiff::SignedDuration::try_from(d).ok())
            .and_then(|d| jiff::Timestamp::now().checked_sub(d).ok()),
    };
    let found = channel::search(&ctx.workspace()?, &query)?;
    for problem in &found.skipped {
        eprintln!("warning: skipped: {}", Chain(problem));
    }
    if ctx.json {
        return output::json(&found.messages);
    }
    if found.messages.is_empty() {
        return output::line("no message matches");
    }
    let rows: Vec<Vec<String>> = found
        .messages
        .iter()
        .map(|m| {
            let mut cells = row(m);
            cells.insert(0, m.channel.clone());
            cells
        })
        .collect();
    output::table(
        &["CHANNEL", "SEQ", "SENT", "FROM", "TO", "TYPE", "PAYLOAD"],
        &rows,
    )
}

fn send(ctx: &Context, args: SendArgs) -> Result<(), CliError> {
    // Validate what the user typed before touching the workspace.
    let name = ChannelName::new(&args.channel)?;
    let ws = ctx.workspace()?;
    let mut draft = draft(args.message);
    for agent in args.to {
        draft = draft.to(agent);
    }
    for role in args.role {
        draft = draft.to_role(role);
    }
    if let Some(parent) = args.reply_to {
        draft = draft.reply_to(parent);
    }
    if args.ack {
        let deadline = args
            .ack_within
            .map(|within| {
                let within = jiff::SignedDuration::try_from(within).map_err(|e| {
                    CliError::new(Exit::Usage, anyhow::anyhow!("--ack-within: {e}"))
                })?;
                jiff::Timestamp::now()
                    .checked_add(within)
                    .map_err(|e| CliError::new(Exit::Usage, anyhow::anyhow!("--ack-within: {e}")))
            })
            .transpose()?;
        draft = draft.ack(deadline);
    }
    let message = channel::post(&ws, name, &ctx.agent, draft, args.allow_unknown)?;
    if ctx.json {
        output::json(&message)
    } else {
        let thread = message
            .thread
            .map_or(String::new(), |root| format!(" (thread #{root})"));
        output::line(&format!(
            "sent #{} on {} to {}{thread}",
            message.seq, message.channel, message.recipients
        ))
    }
}

fn ack(ctx: &Context, args: AckArgs) -> Result<(), CliError> {
    let name = ChannelName::new(&args.message.channel)?;
    let ws = ctx.workspace()?;
    let (ack, new) = channel::acknowledge(&ws, &name, args.message.seq, &ctx.agent, args.note)?;
    if ctx.json {
        return output::json(&serde_json::json!({"ack": ack, "new": new}));
    }
    output::line(&if new {
        format!("acknowledged #{} on {}", ack.seq, ack.channel)
    } else {
        format!(
            "#{} on {} was already acknowledged by {} {}",
            ack.seq,
            ack.channel,
            ack.agent,
            output::relative(ack.at)
        )
    })
}

fn show(ctx: &Context, args: MessageRefArgs) -> Result<(), CliError> {
    let name = ChannelName::new(&args.channel)?;
    let ws = ctx.workspace()?;
    let (message, deliveries) = channel::deliveries(&ws, &name, args.seq)?;
    if ctx.json {
        return output::json(&serde_json::json!({
            "message": message,
            "recipients": deliveries,
        }));
    }
    let yes = |b: bool| if b { "yes" } else { "no" };
    let mut text = format!(
        "#{} on {} from {} to {} ({}): {}",
        message.seq,
        message.channel,
        message.sender,
        message.recipients,
        message.kind,
        row(&message)[5]
    );
    if let Some(request) = &message.ack {
        text.push_str(&match request.deadline {
            Some(deadline) => format!("\nacknowledgements asked, due {deadline}"),
            None => "\nacknowledgements asked".to_owned(),
        });
    }
    output::line(&text)?;
    let rows: Vec<Vec<String>> = deliveries
        .iter()
        .map(|d| {
            vec![
                d.agent.clone(),
                yes(d.delivered).into(),
                yes(d.read).into(),
                d.ack
                    .as_ref()
                    .map_or("-".into(), |a| output::relative(a.at)),
                d.ack
                    .as_ref()
                    .and_then(|a| a.note.clone())
                    .unwrap_or_default(),
            ]
        })
        .collect();
    if rows.is_empty() {
        return output::line("no recipient is registered");
    }
    output::table(&["RECIPIENT", "DELIVERED", "READ", "ACKED", "NOTE"], &rows)
}

fn overdue(ctx: &Context) -> Result<(), CliError> {
    let ws = ctx.workspace()?;
    let now = jiff::Timestamp::now();
    channel::announce_overdue(&ws, now)?;
    let late = channel::overdue(&ws, now)?;
    if ctx.json {
        return output::json(&late);
    }
    if late.is_empty() {
        return output::line("no acknowledgement is overdue");
    }
    let rows: Vec<Vec<String>> = late
        .iter()
        .map(|o| {
            vec![
                o.channel.clone(),
                format!("#{}", o.seq),
                o.sender.clone(),
                o.agent.clone(),
                output::relative(o.deadline),
            ]
        })
        .collect();
    output::table(&["CHANNEL", "SEQ", "SENDER", "OWED BY", "DUE"], &rows)
}

fn thread(ctx: &Context, args: MessageRefArgs) -> Result<(), CliError> {
    let name = ChannelName::new(&args.channel)?;
    let ws = ctx.workspace()?;
    let messages = Channel::open(&ws, name).thread(args.seq)?;
    if ctx.json {
        return output::json(&messages);
    }
    let rows: Vec<Vec<String>> = messages.iter().map(row).collect();
    output::table(&["SEQ", "SENT", "FROM", "TO", "TYPE", "PAYLOAD"], &rows)
}

fn broadcast(ctx: &Context, args: BroadcastArgs) -> Result<(), CliError> {
    ChannelName::topic(&args.topic)?;
    let ws = ctx.workspace()?;
    let (message, notice) = channel::broadcast(&ws, &args.topic, &ctx.agent, draft(args.message))?;
    if ctx.json {
        output::json(&message)
    } else {
        output::line(&format!(
            "broadcast #{} on {} (notice #{} on {})",
            message.seq, message.channel, notice.seq, notice.channel
        ))
    }
}

/// The channel a reader names, and the agent's saved cursor in it when `--new` asks for it.
fn open_for_reading(
    ctx: &Context,
    channel: &str,
    new: bool,
) -> Result<(Channel, Option<Cursor>), CliError> {
    let name = ChannelName::new(channel)?;
    let channel = Channel::open(&ctx.workspace()?, name);
    let cursor = if new {
        Some(channel.cursor(&ctx.agent)?)
    } else {
        None
    };
    Ok((channel, cursor))
}

/// The messages after `after` that `keep` selects, at most `limit` of them; a reader's
/// `cursor` (when it reads "new" messages) moves past what was returned. Broken message files
/// come back beside them. Shared by `msg recv` and the MCP `read_messages` tool.
pub(crate) fn read_selected(
    channel: &Channel,
    cursor: Option<&mut Cursor>,
    after: u64,
    limit: Option<usize>,
    keep: impl Fn(&Message) -> bool,
) -> Result<Batch, ChannelError> {
    let mut batch = channel.read_after(after, None)?;
    batch.messages.retain(|m| keep(m));
    if let Some(limit) = limit
        && batch.messages.len() > limit
    {
        batch.messages.truncate(limit);
        batch.cursor = batch.messages.last().map_or(after, |m| m.seq);
    }
    if let Some(cursor) = cursor {
        cursor.save(batch.cursor)?;
    }
    Ok(batch)
}

fn recv(ctx: &Context, args: RecvArgs) -> Result<(), CliError> {
    let (channel, mut cursor) = open_for_reading(ctx, &args.channel, args.new)?;
    let after = cursor.as_ref().map_or(args.after.unwrap_or(0), |c| c.seq);
    let mut messages = Vec::new();
    if args.archived {
        let (archived, broken) = channel::read_archived(&ctx.workspace()?, channel.name())?;
        for problem in &broken {
            eprintln!("warning: skipped: {}", Chain(problem));
        }
        messages.extend(
            archived
                .into_iter()
                .filter(|m| is_for_me(ctx, &args.filter, m)),
        );
    }
    let mut batch = read_selected(&channel, cursor.as_mut(), after, args.limit, |m| {
        is_for_me(ctx, &args.filter, m)
    })?;
    if args.archived {
        batch.pruned = None;
    }
    warn_skipped(&batch);
    messages.extend(batch.messages);
    if let Some(limit) = args.limit {
        messages.truncate(limit);
    }
    if ctx.json {
        return output::json(&messages);
    }
    if messages.is_empty() {
        return output::line(&format!("no messages on {}", channel.name()));
    }
    let rows: Vec<Vec<String>> = messages.iter().map(row).collect();
    output::table(&["SEQ", "SENT", "FROM", "TO", "TYPE", "PAYLOAD"], &rows)
}

fn watch(ctx: &Context, args: WatchArgs) -> Result<(), CliError> {
    let (channel, mut cursor) = open_for_reading(ctx, &args.channel, args.new)?;
    let after = match &cursor {
        Some(cursor) => cursor.seq,
        None if args.from_end => channel.end()?,
        None => args.after.unwrap_or(0),
    };
    let mut watcher = channel.watch(after, ctx.watch_options())?;
    let deadline = args.timeout.map(|t| std::time::Instant::now() + t);
    let mut printed = 0usize;
    while args.count.is_none_or(|n| printed < n) {
        let left = deadline.map(|d| d.saturating_duration_since(std::time::Instant::now()));
        let Some(batch) = watcher.next_batch(left)? else {
            let got = match args.count {
                Some(n) => format!(" (got {printed} of {n})"),
                None => String::new(),
            };
            return Err(CliError::new(
                Exit::Timeout,
                anyhow::anyhow!(
                    "timed out waiting for messages on `{}` after {:?}{got}",
                    channel.name(),
                    args.timeout.unwrap_or_default()
                ),
            ));
        };
        warn_skipped(&batch);
        let mut reached = batch.cursor;
        for message in batch.messages {
            if args.count.is_some_and(|n| printed >= n) {
                break;
            }
            reached = message.seq;
            if !is_for_me(ctx, &args.filter, &message) {
                continue;
            }
            if ctx.json {
                output::json_line(&message)?;
            } else {
                output::line(&row(&message).join("  "))?;
            }
            printed += 1;
        }
        if let Some(cursor) = &mut cursor {
            cursor.save(reached)?;
        }
    }
    Ok(())
}

fn channels(ctx: &Context) -> Result<(), CliError> {
    let ws = ctx.workspace()?;
    let list = channel::list_channels(&ws)?;
    if ctx.json {
        return output::json(&list);
    }
    if list.is_empty() {
        return output::line("no channels yet: `maos msg send <channel> <payload>` creates one");
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|c| {
            vec![
                c.name.clone(),
                c.messages.to_string(),
                c.last_seq.to_string(),
                c.last_activity.map_or("-".into(), output::relative),
            ]
        })
        .collect();
    output::table(&["CHANNEL", "MESSAGES", "LAST SEQ", "LAST ACTIVITY"], &rows)
}

fn draft(args: MessageArgs) -> Draft {
    let payload = serde_json::from_str(&args.payload).unwrap_or(Value::String(args.payload));
    Draft::new(payload).kind(args.kind).priority(args.priority)
}

fn is_for_me(ctx: &Context, filter: &FilterArgs, message: &Message) -> bool {
    !filter.mine || message.is_for(&ctx.agent, &filter.my_roles)
}

/// Broken message files are reported, not fatal: the other messages are still printed. A
/// position behind the pruned point is said too: never a silent gap.
fn warn_skipped(batch: &Batch) {
    for problem in &batch.skipped {
        eprintln!("warning: skipped a message: {}", Chain(problem));
    }
    if let Some(pruned) = &batch.pruned {
        eprintln!("note: {pruned}; `maos msg recv <channel> --archived` reads them");
    }
}

fn row(m: &Message) -> Vec<String> {
    let payload = match &m.payload {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    vec![
        format!("#{}", m.seq),
        output::relative(m.timestamp),
        m.sender.clone(),
        m.recipients.to_string(),
        m.kind.clone(),
        payload,
    ]
}
