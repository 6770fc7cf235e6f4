//! `maos hook claude|codex|gemini EVENT`: MAOS at the editors' hooks — coordination at the
//! edit.
//!
//! The editor runs the hook command with the event as JSON on stdin (`session_id`, `cwd`,
//! `hook_event_name`, and per event `tool_name` / `tool_input`, `source`, …) and reads the
//! answer as JSON on stdout. The session is an agent ([`maos_agent::session`]):
//! `MAOS_AGENT_ID`, else the agent of the editor's session — the same one its `maos mcp`
//! acts as ([`session::agent_of_client`]) — else the agent registered with its work tree,
//! else `<client>-<session>`.
//!
//! Events, by what they do (Gemini CLI's names in brackets):
//! - `SessionStart`: registers the session and gives the model its context.
//! - `PreToolUse` [`BeforeTool`] on an edit (Claude Code: Edit, Write, MultiEdit,
//!   NotebookEdit; Codex: apply_patch, every file of the patch; Gemini CLI: write_file,
//!   replace): refuses an edit of a file another agent locks or reserves; otherwise takes or
//!   renews the session's automatic lease on each file. Files outside the repository and
//!   workspaces without `.maos/` pass.
//! - `UserPromptSubmit` [`BeforeAgent`], `PostToolUse` [`AfterTool`]: the messages addressed
//!   to the agent since the last call, each once (its [`Inbox`]).
//! - `Stop` [`AfterAgent`]: releases the automatic leases. `SessionEnd`: that, and the agent
//!   leaves.
//!
//! A refusal is Claude Code's and Codex's `permissionDecision: "deny"`, Gemini CLI's
//! `decision: "deny"`. Whatever goes wrong (input that does not parse, a workspace it cannot
//! read, a kernel lock held too long) is said on stderr with exit 1, which the editors take
//! as a non-blocking error: the session goes on. Only a refused edit stops anything.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::anyhow;
use maos_agent::session::{self, Client, Edit, Session};
use maos_agent::worktree;
use maos_coordination::Workspace;
use maos_coordination::agents::AgentRecord;
use maos_coordination::channel::{Inbox, Message};
use maos_coordination::lock::pattern::{self, Overlap, Pattern};
use maos_coordination::lock::{LockInfo, Locks, Reservations};
use maos_coordination::task::Tasks;
use maos_coordination::workspace;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::args::{ClientHookArgs, HookCommand};
use crate::context::{self, Context};
use crate::error::{CliError, Exit};
use crate::output;

/// How long a hook waits for a kernel lock another process holds before it gives up (and
/// lets the editor go on).
const HOOK_LOCK_WAIT: Duration = Duration::from_secs(5);
/// The most lines of context a session is given at its start.
const MAX_CONTEXT_LINES: usize = 40;
/// Where a message is suggested to be sent.
const REPLY_CHANNEL: &str = "general";

/// What a hook event asks of MAOS, whatever the editor calls it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    SessionStart,
    BeforeEdit,
    AfterTool,
    Prompt,
    TurnEnd,
    SessionEnd,
}

/// One editor's hook vocabulary.
pub(super) struct Dialect {
    pub client: Client,
    /// The events answered, by the editor's names, with what each means.
    events: &'static [(&'static str, Event)],
    /// The tools that change files, as the editor names them.
    pub edit_tools: &'static [&'static str],
}

pub(super) const CLAUDE: Dialect = Dialect {
    client: Client::Claude,
    events: &[
        ("SessionStart", Event::SessionStart),
        ("PreToolUse", Event::BeforeEdit),
        ("PostToolUse", Event::AfterTool),
        ("UserPromptSubmit", Event::Prompt),
        ("Stop", Event::TurnEnd),
        ("SessionEnd", Event::SessionEnd),
    ],
    edit_tools: &["Edit", "Write", "MultiEdit", "NotebookEdit"],
};

pub(super) const CODEX: Dialect = Dialect {
    client: Client::Codex,
    events: &[
        ("SessionStart", Event::SessionStart),
        ("PreToolUse", Event::BeforeEdit),
        ("PostToolUse", Event::AfterTool),
        ("UserPromptSubmit", Event::Prompt),
        ("Stop", Event::TurnEnd),
    ],
    edit_tools: &["apply_patch"],
};

pub(super) const GEMINI: Dialect = Dialect {
    client: Client::Gemini,
    events: &[
        ("SessionStart", Event::SessionStart),
        ("BeforeTool", Event::BeforeEdit),
        ("AfterTool", Event::AfterTool),
        ("BeforeAgent", Event::Prompt),
        ("AfterAgent", Event::TurnEnd),
        ("SessionEnd", Event::SessionEnd),
    ],
    edit_tools: &["write_file", "replace"],
};

impl Dialect {
    /// The editor's names of the events MAOS answers.
    pub fn event_names(&self) -> impl Iterator<Item = &'static str> {
        self.events.iter().map(|(name, _)| *name)
    }

    /// Whether the editor's event is the one before an edit (it gets a tool matcher).
    pub fn is_before_edit(&self, name: &str) -> bool {
        self.event(name) == Some(Event::BeforeEdit)
    }

    fn event(&self, name: &str) -> Option<Event> {
        self.events
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, e)| *e)
    }

    fn name(&self) -> &'static str {
        self.client.name()
    }
}

/// The fields of the hook input that MAOS reads (others are ignored).
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
        HookCommand::Claude(args) => answer_hook(ctx, &CLAUDE, &args),
        HookCommand::Codex(args) => answer_hook(ctx, &CODEX, &args),
        HookCommand::Gemini(args) => answer_hook(ctx, &GEMINI, &args),
    }
}

fn answer_hook(ctx: &Context, dialect: &Dialect, args: &ClientHookArgs) -> Result<(), CliError> {
    let name = args.event.as_str();
    let Some(event) = dialect.event(name) else {
        return Err(failure(format!(
            "unknown {} hook event `{name}` (MAOS answers {})",
            dialect.name(),
            dialect.event_names().collect::<Vec<_>>().join(", ")
        )));
    };
    let mut raw = String::new();
    std::io::stdin()
        .read_to_string(&mut raw)
        .map_err(|e| failure(format!("cannot read the hook input on stdin: {e}")))?;
    let input: Input = serde_json::from_str(&raw).map_err(|e| {
        failure(format!(
            "the {name} hook input on stdin is not the JSON {} sends ({e})",
            dialect.name()
        ))
    })?;
    if let Some(named) = input.hook_event_name.as_deref().filter(|n| *n != name) {
        eprintln!("maos hook: the input says `{named}`; answering it as `{name}`");
    }
    let cwd = match &input.cwd {
        Some(dir) => dir.clone(),
        None => context::current_dir()?,
    };
    // The files an edit changes (absolute), before anything else: a session whose `cwd` is
    // outside the repository still edits the repository's files.
    let files = match event {
        Event::BeforeEdit => {
            let files = edited_files(dialect, &cwd, &input)?;
            if files.is_empty() {
                return Ok(()); // another tool: MAOS does not guard it
            }
            files
        }
        _ => Vec::new(),
    };
    let (ws, anchor) = match ctx.workspace_near(&cwd, HOOK_LOCK_WAIT)? {
        Some(ws) => (ws, cwd.clone()),
        None => {
            // Found from the edited file instead.
            let near_file = files.iter().find_map(|f| f.parent()).map(Path::to_owned);
            match near_file {
                Some(dir) => match ctx.workspace_near(&dir, HOOK_LOCK_WAIT)? {
                    Some(ws) => (ws, dir),
                    None => return Ok(()), // no `.maos/`: MAOS has nothing to say
                },
                None => return Ok(()),
            }
        }
    };
    // Files outside the repository register nothing.
    let mut edited: Vec<String> = files
        .iter()
        .filter_map(|file| workspace::repository_path(ws.root(), file))
        .collect();
    edited.sort();
    edited.dedup();
    if event == Event::BeforeEdit && edited.is_empty() {
        return Ok(());
    }
    let worktree = workspace::git_worktree_root(&anchor);
    // What the session is known by: its id, or (Codex, Gemini CLI) the client's process.
    let session_key = dialect
        .client
        .session_key(Some(&input.session_id))
        .map_or_else(|| input.session_id.clone(), |k| k.key);
    let (agent, identity) = if ctx.agent_given {
        (ctx.agent.clone(), "named by MAOS_AGENT_ID".to_owned())
    } else {
        let known = session::agent_of_client(
            &ws,
            Some(dialect.client),
            Some(&input.session_id),
            worktree.as_deref(),
        )?;
        match known {
            Some(named) => named,
            None => (
                session::agent_of_session(&ws, dialect.name(), &session_key, worktree.as_deref())?,
                format!("the agent of {} session {session_key}", dialect.name()),
            ),
        }
    };
    let hook = Hook {
        ws,
        agent,
        identity,
        worktree,
        dialect,
        event_name: name,
    };
    match event {
        Event::SessionStart => hook.session_start(),
        Event::BeforeEdit => hook.before_edit(&edited, !args.no_auto_reserve),
        Event::AfterTool | Event::Prompt => hook.deliver_messages(),
        Event::TurnEnd => hook.stop(),
        Event::SessionEnd => hook.session_end(&session_key),
    }
}

/// The files (absolute, from the session's `cwd`) an edit tool call changes; none for
/// other tools.
fn edited_files(dialect: &Dialect, cwd: &Path, input: &Input) -> Result<Vec<PathBuf>, CliError> {
    let tool = input.tool_name.as_deref().unwrap_or_default();
    if !dialect.edit_tools.contains(&tool) {
        return Ok(Vec::new());
    }
    let tool_input = input.tool_input.as_ref();
    let files: Vec<String> = if dialect.client == Client::Codex {
        let patch = tool_input
            .and_then(|i| i.get("command").or_else(|| i.get("input")))
            .and_then(Value::as_str)
            .ok_or_else(|| {
                failure(format!(
                    "the {tool} call has no `tool_input.command` patch: the edit is not checked"
                ))
            })?;
        patch_paths(patch)
    } else {
        let file = tool_input
            .and_then(|i| i.get("file_path").or_else(|| i.get("notebook_path")))
            .and_then(Value::as_str)
            .ok_or_else(|| {
                failure(format!(
                    "the {tool} call has no `tool_input.file_path`: the edit is not checked"
                ))
            })?;
        vec![file.to_owned()]
    };
    Ok(files.iter().map(|f| cwd.join(f)).collect())
}

/// The files an `apply_patch` patch touches: every `*** Add File:`, `*** Update File:`,
/// `*** Delete File:` and `*** Move to:` line (paths relative to the session's directory).
fn patch_paths(patch: &str) -> Vec<String> {
    const HEADERS: &[&str] = &[
        "*** Add File:",
        "*** Update File:",
        "*** Delete File:",
        "*** Move to:",
    ];
    patch
        .lines()
        .filter_map(|line| {
            HEADERS
                .iter()
                .find_map(|h| line.strip_prefix(h))
                .map(str::trim)
                .filter(|path| !path.is_empty())
                .map(str::to_owned)
        })
        .collect()
}

/// One hook call: the workspace, the session's agent, where the session works.
struct Hook<'a> {
    ws: Workspace,
    agent: String,
    /// Why the session is that agent, for the model.
    identity: String,
    worktree: Option<PathBuf>,
    dialect: &'a Dialect,
    /// The event as the editor named it (echoed in the answer).
    event_name: &'a str,
}

impl Hook<'_> {
    fn session_start(&self) -> Result<(), CliError> {
        let (_, record) = Session::touch(&self.ws, &self.agent)?;
        let text = self.context(&record)?;
        self.tell(&text)
    }

    /// Every file must be free before any lease is taken: a patch of several files is
    /// refused whole, and leases only ever follow an edit that goes ahead.
    fn before_edit(&self, paths: &[String], auto_reserve: bool) -> Result<(), CliError> {
        let (session, _) = Session::touch(&self.ws, &self.agent)?;
        for pass_leases in [false, true] {
            if pass_leases && !auto_reserve {
                break;
            }
            for path in paths {
                if let Edit::Refused { claims } = session.before_edit(path, pass_leases)? {
                    return self.refuse(&self.refusal(path, &claims));
                }
            }
        }
        Ok(())
    }

    /// Refuses the tool call, in the editor's own terms.
    fn refuse(&self, reason: &str) -> Result<(), CliError> {
        if self.dialect.client == Client::Gemini {
            return output::json_line(&json!({ "decision": "deny", "reason": reason }));
        }
        self.answer(json!({
            "permissionDecision": "deny",
            "permissionDecisionReason": reason,
        }))
    }

    /// Adds `text` to the model's context.
    fn tell(&self, text: &str) -> Result<(), CliError> {
        self.answer(json!({ "additionalContext": text }))
    }

    /// Prints `{"hookSpecificOutput": {"hookEventName": …, fields…}}`.
    fn answer(&self, fields: Value) -> Result<(), CliError> {
        let mut specific = json!({ "hookEventName": self.event_name });
        if let (Some(out), Value::Object(fields)) = (specific.as_object_mut(), fields) {
            out.extend(fields);
        }
        output::json_line(&json!({ "hookSpecificOutput": specific }))
    }

    fn deliver_messages(&self) -> Result<(), CliError> {
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
        self.tell(&text)
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
        session::forget_session(&self.ws, self.dialect.name(), session_id)?;
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
                "You are MAOS agent `{me}`{role} ({}) in the workspace at {}{place}.",
                self.identity,
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
            .filter_map(|p| Pattern::new(&pattern::literal(p)).ok())
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

/// A hook failure: said on stderr, exit 1 (the session goes on).
fn failure(message: String) -> CliError {
    CliError::new(Exit::Error, anyhow!("{message}; the session goes on"))
}
