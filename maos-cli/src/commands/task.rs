//! `maos task add|list|show|ready|claim|start|review|done|fail|block|unblock|retry|cancel|update|import|export`

use std::borrow::Cow;

use maos_coordination::agents::{AUTO_ASSIGN, AgentRecord, Registry, assignee_for};
use maos_coordination::record::RecordError;
use maos_coordination::recovery;
use maos_coordination::task::{
    Edit, NewTask, Pick, Status, StatusChange, Summary, TaskFacts, Tasks, View, describe_blockers,
    export_line,
};
use serde_json::Value;

use crate::args::{
    ClaimArgs, StatusArgs, TaskAddArgs, TaskCommand, TaskIdArg, TaskImportArgs, TaskListArgs,
    TaskReadyArgs, TaskUpdateArgs,
};
use crate::context::Context;
use crate::error::{Chain, CliError};
use crate::output;

pub fn run(ctx: &Context, command: TaskCommand) -> Result<(), CliError> {
    let tasks = Tasks::new(&ctx.workspace()?);
    match command {
        TaskCommand::Add(args) => add(ctx, &tasks, args),
        TaskCommand::List(args) => list(ctx, &tasks, args),
        TaskCommand::Show(args) => show(ctx, &tasks, args),
        TaskCommand::Ready(args) => ready(ctx, &tasks, args),
        TaskCommand::Claim(args) => claim(ctx, &tasks, args),
        TaskCommand::Start(args) => set_status(ctx, &tasks, args, Status::InProgress),
        TaskCommand::Review(args) => set_status(ctx, &tasks, args, Status::Review),
        TaskCommand::Done(args) => set_status(ctx, &tasks, args, Status::Completed),
        TaskCommand::Fail(args) => set_status(ctx, &tasks, args, Status::Failed),
        TaskCommand::Block(args) => set_status(ctx, &tasks, args, Status::Blocked),
        TaskCommand::Unblock(args) | TaskCommand::Retry(args) => {
            set_status(ctx, &tasks, args, Status::Pending)
        }
        TaskCommand::Cancel(args) => set_status(ctx, &tasks, args, Status::Cancelled),
        TaskCommand::Update(args) => update(ctx, &tasks, args),
        TaskCommand::Import(args) => import(ctx, &tasks, &args),
        TaskCommand::Export(args) => export(&tasks, &args),
    }
}

fn add(ctx: &Context, tasks: &Tasks, args: TaskAddArgs) -> Result<(), CliError> {
    let mut new = NewTask {
        title: args.title,
        description: args.description,
        priority: args.priority,
        dependencies: args.depends_on,
        assignee: None,
        role: args.role,
        tags: args.tags,
        requires: args.requires,
        files: args.files,
        metadata: Default::default(),
    };
    new.assignee = assignee_for(&ctx.workspace()?, args.assign.as_deref(), &new)?;
    if args.assign.as_deref() == Some(AUTO_ASSIGN) && new.assignee.is_none() {
        eprintln!("warning: no alive agent fits (role, capabilities): left unassigned");
    }
    let task = tasks.create(&ctx.agent, new, args.id.as_deref())?;
    if ctx.json {
        return output::json(&task);
    }
    output::line(&format!(
        "created {} ({}): {}",
        task.id, task.status, task.title
    ))
}

/// Prints a warning for each task file that could not be read.
fn warn_skipped(skipped: &[RecordError]) {
    for problem in skipped {
        eprintln!("warning: {}", Chain(problem));
    }
}

/// Prints the summaries' warnings: broken records, and an index that had to be rebuilt.
pub(crate) fn warn_view(view: &View) {
    if view.rebuilt {
        eprintln!("note: the task index was missing or damaged; rebuilt it from the records");
    }
    warn_skipped(&view.skipped);
}

fn list(ctx: &Context, tasks: &Tasks, args: TaskListArgs) -> Result<(), CliError> {
    // Unfinished statuses are answered without looking at finished tasks.
    let finished_too = args.status.is_none_or(Status::is_final);
    let view = tasks.summaries(finished_too)?;
    warn_view(&view);
    let selected: Vec<Summary> = view
        .tasks
        .into_iter()
        .filter(|t| selects(&args, t))
        .collect();
    print_summaries(ctx, tasks, &selected, "no tasks")
}

/// Whether `task` (a record or a summary) passes the filters of `args`.
fn selects(args: &TaskListArgs, task: &impl TaskFacts) -> bool {
    args.status.is_none_or(|s| task.status() == s)
        && args
            .assignee
            .as_deref()
            .is_none_or(|a| task.assignee() == Some(a))
        && args
            .tag
            .as_deref()
            .is_none_or(|tag| task.tags().any(|t| t == tag))
}

fn ready(ctx: &Context, tasks: &Tasks, args: TaskReadyArgs) -> Result<(), CliError> {
    recovery::recover_lazily(tasks.workspace());
    let view = tasks.ready()?;
    warn_view(&view);
    let selected: Vec<Summary> = view
        .tasks
        .into_iter()
        .filter(|t| args.role.is_none() || t.open_to(args.role.as_deref()))
        .collect();
    print_summaries(ctx, tasks, &selected, "no ready tasks")
}

/// A table of the summaries; with `--json`, their whole records.
fn print_summaries(
    ctx: &Context,
    tasks: &Tasks,
    selected: &[Summary],
    empty: &str,
) -> Result<(), CliError> {
    if ctx.json {
        return output::json(&tasks.records(selected));
    }
    if selected.is_empty() {
        return output::line(empty);
    }
    let rows: Vec<[Cow<str>; 6]> = selected
        .iter()
        .map(|t| {
            [
                t.id().into(),
                t.status().as_str().into(),
                t.priority().as_str().into(),
                t.assignee().unwrap_or("-").into(),
                if t.dependencies().next().is_none() {
                    "-".into()
                } else {
                    t.dependencies().collect::<Vec<_>>().join(",").into()
                },
                t.title().into(),
            ]
        })
        .collect();
    output::table(
        &[
            "ID",
            "STATUS",
            "PRIORITY",
            "ASSIGNEE",
            "DEPENDS ON",
            "TITLE",
        ],
        &rows,
    )
}

fn show(ctx: &Context, tasks: &Tasks, args: TaskIdArg) -> Result<(), CliError> {
    let task = tasks.get(&args.id)?;
    if ctx.json {
        return output::json(&task);
    }
    let listing = tasks.list()?;
    let status_of = |id: &str| {
        listing
            .tasks
            .iter()
            .find(|t| t.id == id)
            .map_or_else(|| "missing".to_owned(), |t| t.status.to_string())
    };
    let dependents: Vec<String> = listing
        .tasks
        .iter()
        .filter(|t| t.dependencies.contains(&task.id))
        .map(|t| format!("{} ({})", t.id, t.status))
        .collect();
    let mut lines = vec![
        format!("{}  {}", task.id, task.title),
        format!(
            "status: {}   priority: {}   attempts: {}   version: {}",
            task.status, task.priority, task.attempts, task.version
        ),
        format!(
            "assignee: {}   role: {}   created by {} {}",
            task.assignee.as_deref().unwrap_or("-"),
            task.role.as_deref().unwrap_or("-"),
            task.created_by,
            output::relative(task.created_at)
        ),
    ];
    if !task.description.is_empty() {
        lines.push(String::new());
        lines.extend(task.description.lines().map(|l| format!("  {l}")));
        lines.push(String::new());
    }
    if !task.tags.is_empty() {
        lines.push(format!("tags: {}", task.tags.join(", ")));
    }
    if !task.files.is_empty() {
        let files: Vec<String> = task.files.iter().map(ToString::to_string).collect();
        lines.push(format!("files: {}", files.join(", ")));
    }
    let deps: Vec<String> = task
        .dependencies
        .iter()
        .map(|d| format!("{d} ({})", status_of(d)))
        .collect();
    lines.push(format!(
        "depends on: {}",
        if deps.is_empty() {
            "-".into()
        } else {
            deps.join(", ")
        }
    ));
    lines.push(format!(
        "needed by: {}",
        if dependents.is_empty() {
            "-".into()
        } else {
            dependents.join(", ")
        }
    ));
    if let Some(output) = task.metadata.get("output").and_then(Value::as_str) {
        lines.push(format!("output: {output}"));
    }
    if task.status == Status::Blocked {
        let why = match &task.blocked_reason {
            Some(reason) => format!("blocked by hand: {reason}"),
            None => describe_blockers(&tasks.blockers(&task)),
        };
        lines.push(format!("blocked: {why}"));
    }
    lines.push("history:".into());
    for change in &task.history {
        let what = match (&change.from, &change.to) {
            (Value::Null, to) if change.field == "created" => format!("created as {}", plain(to)),
            (from, to) => format!("{}: {} → {}", change.field, plain(from), plain(to)),
        };
        let note = change
            .note
            .as_ref()
            .map_or(String::new(), |n| format!("  ({n})"));
        lines.push(format!(
            "  {:<14} {:<12} {what}{note}",
            output::relative(change.at),
            change.by
        ));
    }
    for line in lines {
        output::line(&line)?;
    }
    Ok(())
}

/// A JSON value as a person reads it: strings without quotes, null as `-`.
fn plain(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn claim(ctx: &Context, tasks: &Tasks, args: ClaimArgs) -> Result<(), CliError> {
    // Without --role / --capability, the agent claims as what it is registered as
    // (`maos agent spawn --role`, or a worker's join).
    let registered = Registry::new(tasks.workspace())
        .get(&ctx.agent)
        .ok()
        .flatten();
    let role = args
        .role
        .clone()
        .or_else(|| registered.as_ref().and_then(|r| r.role.clone()));
    let capabilities = if args.capabilities.is_empty() {
        registered.map(|r| r.capabilities).unwrap_or_default()
    } else {
        args.capabilities.clone()
    };
    let pick = match &args.id {
        Some(id) => Pick::Named(id),
        None => Pick::Best {
            role: role.as_deref(),
            capabilities: &capabilities,
        },
    };
    recovery::recover_lazily(tasks.workspace());
    let task = tasks.claim(&ctx.agent, pick)?;
    note_in_registry(tasks, &ctx.agent, |r| {
        r.current_task = Some(task.id.clone())
    });
    if ctx.json {
        return output::json(&task);
    }
    output::line(&format!("claimed {}: {}", task.id, task.title))
}

fn set_status(ctx: &Context, tasks: &Tasks, args: StatusArgs, to: Status) -> Result<(), CliError> {
    let StatusChange {
        task,
        unblocked,
        notice_error,
    } = tasks.set_status(&args.id, &ctx.agent, to, args.note)?;
    match task.status {
        Status::InProgress => note_in_registry(tasks, &ctx.agent, |r| {
            r.current_task = Some(task.id.clone());
        }),
        Status::Completed | Status::Failed => note_in_registry(tasks, &ctx.agent, |r| {
            r.count(task.status == Status::Completed, &task.tags);
            if r.current_task.as_deref() == Some(task.id.as_str()) {
                r.current_task = None;
            }
        }),
        _ => {}
    }
    if let Some(e) = notice_error {
        eprintln!(
            "warning: the change was saved, but its notice was not sent: {}",
            Chain(&e)
        );
    }
    let unblocked: Vec<&str> = unblocked.iter().map(|t| t.id.as_str()).collect();
    if ctx.json {
        let mut value = serde_json::to_value(&task).unwrap_or_default();
        if let Some(object) = value.as_object_mut() {
            object.insert("unblocked".into(), unblocked.into());
        }
        return output::json(&value);
    }
    output::line(&format!(
        "{} is now {}: {}",
        task.id, task.status, task.title
    ))?;
    if !unblocked.is_empty() {
        output::line(&format!("now ready: {}", unblocked.join(", ")))?;
    }
    Ok(())
}

fn update(ctx: &Context, tasks: &Tasks, args: TaskUpdateArgs) -> Result<(), CliError> {
    let edit = Edit {
        title: args.title,
        description: args.description,
        priority: args.priority,
        assignee: if args.unassign {
            Some(None)
        } else {
            args.assign.map(Some)
        },
        role: args.role.map(Some),
        add_deps: args.add_deps,
        remove_deps: args.remove_deps,
        add_tags: args.tags,
        remove_tags: args.remove_tags,
        add_files: args.files,
        metadata: Default::default(),
        note: args.note,
    };
    let task = tasks.update(&args.id, &ctx.agent, edit)?;
    if ctx.json {
        return output::json(&task);
    }
    output::line(&format!(
        "updated {} (version {}, {}): {}",
        task.id, task.version, task.status, task.title
    ))
}

/// Keeps a registered agent's record in step with what it does through the CLI (its current
/// task, its completed and failed counts). Agents without a record are not registered by it.
/// Best effort: the task change is done; a record that cannot be written says so.
fn note_in_registry(tasks: &Tasks, agent: &str, change: impl FnOnce(&mut AgentRecord)) {
    let result = Registry::new(tasks.workspace()).update(agent, |record| {
        Ok(record.map(|mut r| {
            change(&mut r);
            r
        }))
    });
    if let Err(e) = result {
        eprintln!(
            "warning: the task change was saved, but agent `{agent}`'s record was not updated: {}",
            Chain(&e)
        );
    }
}

fn import(ctx: &Context, tasks: &Tasks, args: &TaskImportArgs) -> Result<(), CliError> {
    use std::io::Read;
    let mut text = String::new();
    let read = if args.file.as_os_str() == "-" {
        std::io::stdin().read_to_string(&mut text).map(drop)
    } else {
        std::fs::File::open(&args.file).and_then(|mut f| f.read_to_string(&mut text).map(drop))
    };
    read.map_err(|e| {
        CliError::new(
            crate::error::Exit::Error,
            anyhow::anyhow!("cannot read {}: {e}", args.file.display()),
        )
    })?;
    let plan = tasks.plan_import(&ctx.agent, &text).map_err(|e| {
        CliError::from(e).with_hint(format!("nothing was imported from {}", args.file.display()))
    })?;
    let imported = tasks.import(plan)?;
    if ctx.json {
        let ids: Vec<&str> = imported.iter().map(|t| t.id.as_str()).collect();
        return output::json(&serde_json::json!({ "imported": ids.len(), "ids": ids }));
    }
    let blocked = imported
        .iter()
        .filter(|t| t.status == Status::Blocked)
        .count();
    output::line(&format!(
        "imported {} task(s) from {} ({blocked} blocked by dependencies)",
        imported.len(),
        args.file.display()
    ))
}

fn export(tasks: &Tasks, args: &TaskListArgs) -> Result<(), CliError> {
    let listing = tasks.list()?;
    warn_skipped(&listing.skipped);
    for task in listing.tasks.iter().filter(|t| selects(args, *t)) {
        output::line(&export_line(task))?;
    }
    Ok(())
}
