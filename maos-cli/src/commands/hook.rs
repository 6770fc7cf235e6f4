//! `maos hook claude EVENT`: MAOS at Claude Code's hooks — coordination at the edit.
//!
//! Claude Code runs the hook command with the event as JSON on stdin (`session_id`, `cwd`,
//! `hook_event_name`, and per event `tool_name` / `tool_input`, `source`, `reason`, …) and
//! reads the answer as JSON on stdout (`hookSpecificOutput`). The session is an agent
//! ([`maos_agent::session`]): `MAOS_AGENT_ID`, else the one recorded for the session, else
//! the agent registered with its work tree, else `claude-<session>`.
//!
//! - `SessionStart`: registers the session and gives the model its context.
//! - `PreToolUse` (Edit, Write, MultiEdit, NotebookEdit): refuses (`deny`) an edit of a file
//!   another agent locks or reserves; otherwise takes or renews the session's automatic
//!   lease on the file. Files outside the repository and workspaces without `.maos/` pass.
//! - `UserPromptSubmit`, `PostToolUse`: the messages addressed to the agent since the last
//!   call, each once (its [`Inbox`]).
//! - `Stop`: releases the automatic leases. `SessionEnd`: that, and the agent leaves.
//!
//! Whatever goes wrong (input that does not parse, a workspace it cannot read, a kernel lock
//! held too long) is said on stderr with exit 1, which Claude Code takes as a non-blocking
//! error: the session goes on. Only a refused edit stops anything, by a `deny` decision.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::anyhow;
use maos_agent::session::{self, Edit, Session};
use maos_agent::worktree;
use maos_coordination::Workspace;
use maos_coordination::agents::AgentRecord;
use maos_coordination::channel::{Inbox, Message};
use maos_coordination::lock::pattern::{Overlap, Pattern};
use maos_coordination::lock::{LockInfo, Locks, Reservations};
use maos_coordination::task::Tasks;
use maos_coordination::workspace;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::args::{ClaudeHookArgs, HookCommand};
use crate::context::{self, Context};
use crate::error::{CliError, Exit};
use crate::output;

/// How long a hook waits for a kernel lock another process holds before it gives up (and
/// lets the editor go on).
const HOOK_LOCK_WAIT: Duration = Duration::from_secs(5);
/// The most lines of context a session is given at its start.
const MAX_CONTEXT_LINES: usize = 40;
/// The tools that change a file.
pub(super) const EDIT_TOOLS: &[&str] = &["Edit", "Write", "MultiEdit", "NotebookEdit"];
/// The events answered.
pub(super) const EVENTS: &[&str] = &[
    "SessionStart",
    "PreToolUse",
    "PostToolUse",
    "UserPromptSubmit",
    "Stop",
    "SessionEnd",
];
/// Where a message is suggested to be sent.
const REPLY_CHANNEL: &str = "general";

/// The fields of Claude Code's hook input that MAOS reads (others are ignored).
#[derive(Debug, Deserialize)]
struct Input {
    session_id: String,
    #[serde(default)]
    cwd: Option<PathBuf>,
    #[serde(default)]
    hook_event_name: Option<String>,
    #[serde(default)]
    tool_name: Option<String>,
    #[serde(default)]
    tool_input: Option<Value>,
}

pub fn run(ctx: &Context, command: HookCommand) -> Result<(), CliError> {
    match command {
        HookCommand::Claude(args) => claude(ctx, &args),
    }
}

fn claude(ctx: &Context, args: &ClaudeHookArgs) -> Result<(), CliError> {
    let event = args.event.as_str();
    if !EVENTS.contains(&event) {
        return Err(failure(format!(
            "unknown hook event `{event}` (MAOS answers {})",
            EVENTS.join(", ")
        )));
    }
    let mut raw = String::new();
    std::io::stdin()
        .read_to_string(&mut raw)
        .map_err(|e| failure(format!("cannot read the hook input on stdin: {e}")))?;
    let input: Input = serde_json::from_str(&raw).map_err(|e| {
        failure(format!(
            "the {event} hook input on stdin is not the JSON Claude Code sends ({e})"
        ))
    })?;
    if let Some(named) = input.hook_event_name.as_deref().filter(|n| *n != event) {
        eprintln!("maos hook: the input says `{named}`; answering it as `{event}`");
    }
    let cwd = match &input.cwd {
        Some(dir) => dir.clone(),
        None => context::current_dir()?,
    };
    let Some(ws) = ctx.workspace_near(&cwd, HOOK_LOCK_WAIT)? else {
        return Ok(()); // no `.maos/`: MAOS has nothing to say
    };
    // An edit MAOS does not guard (another tool, a file outside the repository) registers
    // nothing.
    let edited = match event {
        "PreToolUse" => match edited_path(&ws, &cwd, &input)? {
            Some(path) => Some(path),
            None => return Ok(()),
        },
        _ => None,
    };
    let worktree = workspace::git_worktree_root(&cwd);
    let agent = if ctx.agent_given {
        ctx.agent.clone()
    } else {
        session::agent_of_session(&ws, "claude", &input.session_id, worktree.as_deref())?
    };
    let hook = Hook {
        ws,
        agent,
        worktree,
    };
    match (event, edited) {
        ("SessionStart", _) => hook.session_start(),
        ("PreToolUse", Some(path)) => hook.pre_tool_use(&path, !args.no_auto_reserve),
        ("PostToolUse" | "UserPromptSubmit", _) => hook.deliver_messages(event),
        ("Stop", _) => hook.stop(),
        ("SessionEnd", _) => hook.session_end(&input.session_id),
        _ => Ok(()),
    }
}

/// The repository path an edit tool call changes; `None` for other tools and for files
/// outside the repository.
fn edited_path(ws: &Workspace, cwd: &Path, input: &Input) -> Result<Option<String>, CliError> {
    let tool = input.tool_name.as_deref().unwrap_or_default();
    if !EDIT_TOOLS.contains(&tool) {
        return Ok(None);
    }
    let file = input
        .tool_input
        .as_ref()
        .and_then(|i| i.get("file_path").or_else(|| i.get("notebook_path")))
        .and_then(Value::as_str)
        .ok_or_else(|| {
            failure(format!(
                "the {tool} call has no `tool_input.file_path`: the edit is not checked"
            ))
        })?;
    Ok(workspace::repository_path(ws.root(), &cwd.join(file)))
}

/// One hook call: the workspace, the session's agent, where the session works.
struct Hook {
    ws: Workspace,
    agent: String,
    worktree: Option<PathBuf>,
}

impl Hook {
    fn session_start(&self) -> Result<(), CliError> {
        let (_, record) = Session::touch(&self.ws, &self.agent)?;
        let text = self.context(&record)?;
        answer("SessionStart", json!({ "additionalContext": text }))
    }

    fn pre_tool_use(&self, path: &str, auto_reserve: bool) -> Result<(), CliError> {
        let (session, _) = Session::touch(&self.ws, &self.agent)?;
        match session.before_edit(path, auto_reserve)? {
            Edit::Allowed { .. } => Ok(()),
            Edit::Refused { claims } => answer(
                "PreToolUse",
                json!({
                    "permissionDecision": "deny",
                    "permissionDecisionReason": self.refusal(path, &claims),
                }),
            ),
        }
    }

    fn deliver_messages(&self, event: &str) -> Result<(), CliError> {
        let (_, record) = Session::touch(&self.ws, &self.agent)?;
        let lines = self.unread(&record)?;
        if lines.is_empty() {
            return Ok(());
        }
        let text = format!(
            "MAOS: new messages for you (`{}`):\n{}",
            self.agent,
            lines.join("\n")
        );
        answer(event, json!({ "additionalContext": text }))
    }

    fn stop(&self) -> Result<(), CliError> {
        let (session, _) = Session::touch(&self.ws, &self.agent)?;
        session
            .release_automatic()
            .map_err(|e| CliError::new(Exit::Error, e))?;
        Ok(())
    }

    fn session_end(&self, session_id: &str) -> Result<(), CliError> {
        let (session, _) = Session::touch(&self.ws, &self.agent)?;
        let report = session.end()?;
        session::forget_session(&self.ws, "claude", session_id)?;
        eprintln!(
            "maos: agent `{}` left ({} automatic lease(s) released, {} task(s) returned)",
            self.agent,
            report.released_locks.len(),
            report.returned_tasks.len()
        );
        Ok(())
    }

    /// What the model is told when an edit is refused: who holds the file and what to do.
    fn refusal(&self, path: &str, claims: &[LockInfo]) -> String {
        let mut text =
            format!("MAOS: `{path}` is held by another agent, so this edit is refused:\n");
        for claim in claims {
            text.push_str(&format!("- {}\n", claim.describe_claim()));
        }
        let owner = claims.first().map_or("them", |c| c.owner.as_str());
        text.push_str(&format!(
            "Do not work around it (no other tool, no copy of the file). Work on something else \
             and come back later, or ask them to release it: \
             `maos --agent {me} msg send {REPLY_CHANNEL} --to {owner} \"…\"`. \
             `maos reservations` lists every claim.",
            me = self.agent
        ));
        text
    }

    /// The unread messages addressed to the agent, one line each, marked read.
    fn unread(&self, record: &AgentRecord) -> Result<Vec<String>, CliError> {
        let roles = record.role.iter().cloned().collect();
        let unread = Inbox::new(&self.ws, &self.agent, roles)?.take()?;
        for skipped in &unread.skipped {
            eprintln!("maos hook: skipped: {skipped} (`maos doctor` reports it)");
        }
        Ok(unread.messages.iter().map(message_line).collect())
    }

    /// The context a session starts with (at most [`MAX_CONTEXT_LINES`] lines).
    fn context(&self, record: &AgentRecord) -> Result<String, CliError> {
        let me = &self.agent;
        let place = match (
            &self.worktree,
            self.worktree.as_deref().and_then(worktree::checked_out),
        ) {
            (Some(dir), Some(branch)) => {
                format!(" (branch `{branch}`, work tree {})", dir.display())
            }
            (Some(dir), None) => format!(" (work tree {})", dir.display()),
            _ => String::new(),
        };
        let role = record
            .role
            .as_ref()
            .map(|r| format!(", role `{r}`"))
            .unwrap_or_default();
        let mut lines = vec![
            format!(
                "You are MAOS agent `{me}`{role} in the workspace at {}{place}.",
                self.ws.root().display()
            ),
            format!(
                "Other agents edit this repository too. MAOS refuses an edit of a file another \
                 agent holds (and says who); each file you edit is reserved for you for {} \
                 minutes, released when you stop.",
                session::AUTO_LEASE.as_secs() / 60
            ),
            format!(
                "Before a larger change reserve its area: `maos --agent {me} reserve 'src/db/**' \
                 --reason \"…\"` (free it with `maos --agent {me} unreserve --all`). Message an \
                 agent: `maos --agent {me} msg send {REPLY_CHANNEL} --to AGENT \"…\"`."
            ),
        ];
        let (mine, others) = self.claims()?;
        section(&mut lines, "You hold", &mine, 6);
        let messages = self.unread(record)?;
        section(&mut lines, "Messages for you", &messages, 8);
        let ready: Vec<String> = Tasks::new(&self.ws)
            .ready()?
            .tasks
            .iter()
            .map(|t| format!("{} [{}] {}", t.id(), t.priority(), t.title()))
            .collect();
        if !ready.is_empty() {
            lines.push(format!(
                "Claim a task with `maos --agent {me} task claim ID`; report it with `maos --agent \
                 {me} task done ID`."
            ));
        }
        section(&mut lines, "Ready tasks", &ready, 5);
        section(
            &mut lines,
            "Others' claims on files you changed or hold",
            &others,
            8,
        );
        lines.truncate(MAX_CONTEXT_LINES);
        Ok(lines.join("\n"))
    }

    /// The agent's own live locks and reservations, and the others' that touch files it
    /// has changed in its work tree or holds (all others' when it has changed nothing).
    fn claims(&self) -> Result<(Vec<String>, Vec<String>), CliError> {
        let locks = Locks::new(&self.ws).live()?;
        let reservations = Reservations::new(&self.ws).live()?;
        let all: Vec<&LockInfo> = locks.iter().chain(&reservations).collect();
        let (mine, others): (Vec<&LockInfo>, Vec<&LockInfo>) =
            all.into_iter().partition(|c| c.owner == self.agent);
        let changed = self
            .worktree
            .as_deref()
            .map(worktree::changed_files)
            .unwrap_or_default();
        let mut touched: Vec<Pattern> = changed
            .iter()
            .filter_map(|p| Pattern::new(p).ok())
            .collect();
        touched.extend(mine.iter().filter_map(|c| Pattern::new(&c.resource).ok()));
        let touching = |c: &&LockInfo| {
            touched.is_empty()
                || Pattern::new(&c.resource)
                    .is_ok_and(|p| touched.iter().any(|t| t.overlap(&p) != Overlap::No))
        };
        let describe = |c: &LockInfo| c.describe_claim();
        Ok((
            mine.into_iter().map(describe).collect(),
            others.into_iter().filter(touching).map(describe).collect(),
        ))
    }
}

/// Adds `title (n):` and up to `max` items to `lines`, and a line saying how many more.
fn section(lines: &mut Vec<String>, title: &str, items: &[String], max: usize) {
    if items.is_empty() {
        return;
    }
    lines.push(format!("{title} ({}):", items.len()));
    lines.extend(items.iter().take(max).map(|i| format!("- {i}")));
    if items.len() > max {
        lines.push(format!("- … {} more (`maos status`)", items.len() - max));
    }
}

/// `[general #3] from alice (high): the text` — the payload cut at 400 characters.
fn message_line(m: &Message) -> String {
    let text = match &m.payload {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut text: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.chars().count() > 400 {
        text = text.chars().take(400).collect::<String>() + "…";
    }
    format!(
        "[{} #{}] from {} ({}, {}): {text}",
        m.channel, m.seq, m.sender, m.kind, m.priority
    )
}

/// Prints Claude Code's answer: `{"hookSpecificOutput": {"hookEventName": …, fields…}}`.
fn answer(event: &str, fields: Value) -> Result<(), CliError> {
    let mut specific = json!({ "hookEventName": event });
    if let (Some(out), Value::Object(fields)) = (specific.as_object_mut(), fields) {
        out.extend(fields);
    }
    output::json_line(&json!({ "hookSpecificOutput": specific }))
}

/// A hook failure: said on stderr, exit 1 (the session goes on).
fn failure(message: String) -> CliError {
    CliError::new(Exit::Error, anyhow!("{message}; the session goes on"))
}
