//! `maos setup claude|codex|gemini`: wires MAOS into the editors' own settings files
//! without clobbering what their users keep there — everything a session needs to
//! coordinate, so that `maos init` and `maos setup <client>` are all it takes.
//!
//! Every command written is the absolute path of this `maos` binary (a PATH without `maos`
//! still works).
//!
//! - **Claude Code**: six hook entries (`maos hook claude EVENT`) in `.claude/settings.json`;
//!   the `maos` MCP server in `.mcp.json` (with `--user`: `~/.claude/settings.json` and
//!   `~/.claude.json`); the permission rule `mcp__maos` (MAOS's own tools, nothing else) in
//!   `~/.claude/settings.json`, since Claude Code drops an untrusted project's allow rules.
//! - **Codex**: in `$CODEX_HOME/config.toml` (`~/.codex/config.toml`), edited with
//!   `toml_edit` (comments and layout kept): `[mcp_servers.maos]` forwarding
//!   `MAOS_AGENT_ID` and `MAOS_WORKSPACE` (Codex passes MCP servers no environment) with
//!   `default_tools_approval_mode = "approve"` (else every call is refused under
//!   `approval_policy = "never"`); five hooks (`maos hook codex EVENT`, PreToolUse on
//!   `apply_patch`), trusted by writing the hash `codex app-server` reports for each into
//!   `[hooks.state]` (Codex skips an untrusted hook silently).
//! - **Gemini CLI**: in `.gemini/settings.json` (`--user`: `~/.gemini/settings.json`): the
//!   `maos` server with `trust: true` (headless `auto_edit` leaves an untrusted server's
//!   tools out) and six hooks (`maos hook gemini EVENT`, timeouts in milliseconds); the
//!   repository is added to `~/.gemini/trustedFolders.json` (Gemini ignores an untrusted
//!   folder's settings).
//!
//! Idempotent: an entry already there is not added again (an older one is brought up to
//! date). `--remove` takes out exactly MAOS's entries (hooks whose command is `maos hook
//! <client> …`, a `maos` server running `maos mcp`, the rule, the trust of MAOS's hooks) and
//! the containers that held only them; a folder's Gemini trust stays (it may have been the
//! user's). JSON files are written back in their own indentation; when taking MAOS's entries
//! out again would not give the file back byte for byte (unusual formatting, an empty
//! file), setup keeps the original beside it as `<file>.maos-backup`, and `--remove`
//! restores it exactly unless the file has changed in other ways meanwhile (then those
//! changes are kept). A file MAOS created and that holds nothing else is deleted by
//! `--remove`.

use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::anyhow;
use maos_coordination::atomic::{self, Durability};
use maos_coordination::fs;
use maos_coordination::workspace;
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::args::{SetupClaudeArgs, SetupCodexArgs, SetupCommand};
use crate::context::{self, Context};
use crate::error::{CliError, Exit};
use crate::output;

use super::hook::{self, Dialect};

/// Seconds an editor gives a hook before it moves on.
const HOOK_TIMEOUT_SECS: u64 = 15;
/// The name of MAOS's MCP server in the editors' settings.
const SERVER: &str = "maos";
/// Claude Code's permission rule for every tool of the `maos` server, and no other.
const CLAUDE_RULE: &str = "mcp__maos";
/// The variables Codex is told to pass on to `maos mcp`.
const CODEX_ENV_VARS: &[&str] = &["MAOS_AGENT_ID", "MAOS_WORKSPACE"];
/// How long setup waits for `codex app-server` to list the hooks.
const CODEX_LIST_WAIT: Duration = Duration::from_secs(30);

/// What Codex agents are told in AGENTS.md.
const AGENTS_MD: &str = "\
## Working beside other agents (MAOS)

Other agents change this repository at the same time, coordinated by MAOS (the `maos` MCP
server and hooks). An edit of a file another agent holds is refused, naming the holder:
then work on something else, or ask the holder with `send_message`, and never edit a file
another agent holds. Before a larger change, reserve its area with the `reserve` tool (a
glob such as `src/db/**`, with a reason) and release it (`unreserve`) when done. Take work
with `claim_task` and report it with `update_task_status`. The pre-commit guard refuses
commits of files another agent holds.";

/// What happened to one file.
#[derive(Debug, Serialize)]
struct Change {
    path: PathBuf,
    /// `added`, `unchanged`, `removed`, `restored`, `deleted`, `absent`.
    change: &'static str,
    /// How many entries were added or removed.
    entries: usize,
}

pub fn run(ctx: &Context, command: SetupCommand) -> Result<(), CliError> {
    match command {
        SetupCommand::Claude(args) => claude(ctx, &args),
        SetupCommand::Codex(args) => codex(ctx, &args),
        SetupCommand::Gemini(args) => gemini(ctx, &args),
    }
}

/// The command that runs this `maos`: its absolute path.
fn maos_command() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.canonicalize().ok())
        .map_or_else(|| "maos".to_owned(), |p| p.display().to_string())
}

/// The root of the repository setup runs in (its work tree), else the current folder.
fn project_root() -> Result<PathBuf, CliError> {
    let cwd = context::current_dir()?;
    Ok(workspace::git_worktree_root(&cwd).unwrap_or(cwd))
}

fn claude(ctx: &Context, args: &SetupClaudeArgs) -> Result<(), CliError> {
    let home = context::home_dir()?;
    let user_settings = home.join(".claude/settings.json");
    let maos = maos_command();
    let add_hooks_only =
        |doc: &mut Map<String, Value>, path: &Path| add_hooks(doc, path, &hook::CLAUDE, &maos);
    let strip_hooks_only = |doc: &mut Map<String, Value>| strip_hooks(doc, &hook::CLAUDE);
    let add_both = |doc: &mut Map<String, Value>, path: &Path| {
        Ok(add_hooks_only(doc, path)? + add_rule(doc, path)?)
    };
    let strip_both = |doc: &mut Map<String, Value>| strip_hooks_only(doc) + strip_rule(doc);
    let add_mcp = |doc: &mut Map<String, Value>, path: &Path| {
        add_server(
            doc,
            path,
            json!({ "command": maos, "args": ["mcp"], "env": {} }),
        )
    };
    // Claude Code drops a project's allow rules until its workspace is trusted (a headless
    // session never asks), so the rule goes into the user's settings.
    let changes = if args.user {
        vec![
            edit_json(&user_settings, args.remove, &add_both, &strip_both)?,
            edit_json(
                &home.join(".claude.json"),
                args.remove,
                &add_mcp,
                &strip_server,
            )?,
        ]
    } else {
        let root = project_root()?;
        vec![
            edit_json(
                &root.join(".claude/settings.json"),
                args.remove,
                &add_hooks_only,
                &strip_hooks_only,
            )?,
            edit_json(
                &root.join(".mcp.json"),
                args.remove,
                &add_mcp,
                &strip_server,
            )?,
            edit_json(&user_settings, args.remove, &add_rule, &strip_rule)?,
        ]
    };
    let notes = (!args.remove).then(|| {
        format!(
            "\nA session is one agent in its hooks and its `maos` tools: MAOS_AGENT_ID, else the \
             agent `maos agent spawn` registered for its work tree, else claude-<session>. \
             The rule `{CLAUDE_RULE}` in {} lets sessions call MAOS's tools (and no others) \
             without asking: Claude Code ignores a project's allow rules until its workspace is \
             trusted, which a headless `claude -p` never is.",
            user_settings.display()
        )
    });
    report(ctx, &changes, notes.as_deref())
}

fn gemini(ctx: &Context, args: &SetupClaudeArgs) -> Result<(), CliError> {
    let home = context::home_dir()?;
    let root = project_root()?;
    let settings = if args.user {
        home.join(".gemini/settings.json")
    } else {
        root.join(".gemini/settings.json")
    };
    let maos = maos_command();
    let add = |doc: &mut Map<String, Value>, path: &Path| {
        let server = json!({ "command": maos, "args": ["mcp"], "trust": true });
        Ok(add_server(doc, path, server)? + add_hooks(doc, path, &hook::GEMINI, &maos)?)
    };
    let strip = |doc: &mut Map<String, Value>| strip_server(doc) + strip_hooks(doc, &hook::GEMINI);
    let mut changes = vec![edit_json(&settings, args.remove, &add, &strip)?];
    if !args.remove {
        let folder = root.display().to_string();
        let trust = |doc: &mut Map<String, Value>, _: &Path| {
            Ok(match doc.get(&folder) {
                Some(_) => 0,
                None => {
                    doc.insert(folder.clone(), json!("TRUST_FOLDER"));
                    1
                }
            })
        };
        let keep = |_: &mut Map<String, Value>| 0;
        changes.push(edit_json(
            &home.join(".gemini/trustedFolders.json"),
            false,
            &trust,
            &keep,
        )?);
    }
    let notes = (!args.remove).then(|| {
        "\nThe `maos` server is trusted, so headless `gemini -p --approval-mode auto_edit` offers \
         its tools; the folder is trusted, so Gemini CLI reads .gemini/settings.json. A session \
         is one agent in its hooks and its tools: MAOS_AGENT_ID, else the work tree's agent, \
         else gemini-<session>."
            .to_owned()
    });
    report(ctx, &changes, notes.as_deref())
}

fn codex(ctx: &Context, args: &SetupCodexArgs) -> Result<(), CliError> {
    let path = context::codex_home()?.join("config.toml");
    let maos = maos_command();
    let change = edit_codex(&path, args.remove, &maos)?;
    if args.remove {
        return report(ctx, &[change], None);
    }
    let trust = match trust_codex_hooks(&path, &maos) {
        Ok(0) => "Its hooks were already trusted.".to_owned(),
        Ok(n) => format!(
            "Trusted its {n} hook(s) (`[hooks.state]`, the hashes `codex app-server` reports), so \
             `codex exec` runs them."
        ),
        Err(why) => format!(
            "Its hooks are NOT trusted yet ({why}); Codex skips an untrusted hook silently. Run \
             `maos setup codex` again where `codex` is on PATH, or trust them in Codex's /hooks."
        ),
    };
    let notes = format!(
        "\nCodex: `maos mcp` gets MAOS_AGENT_ID and MAOS_WORKSPACE forwarded (env_vars), and \
         default_tools_approval_mode = \"approve\" lets Codex call MAOS's tools under any approval \
         policy (each is annotated: none is destructive or reaches outside the workspace). A \
         session is MAOS_AGENT_ID, else the agent `maos agent spawn` registered for its work \
         tree, else codex-<8 hex digits> for the whole session, the same in its hooks and its \
         tools. {trust}\n\nAdd this paragraph to AGENTS.md:\n\n{AGENTS_MD}"
    );
    report(ctx, &[change], Some(&notes))
}

fn report(ctx: &Context, changes: &[Change], notes: Option<&str>) -> Result<(), CliError> {
    if ctx.json {
        return output::json(&json!({ "files": changes, "notes": notes }));
    }
    for c in changes {
        let what = match c.change {
            "added" => format!("added {} MAOS entr{} to", c.entries, plural(c.entries)),
            "unchanged" => "already set up, unchanged:".into(),
            "removed" => format!("removed {} MAOS entr{} from", c.entries, plural(c.entries)),
            "restored" => "restored as it was before `maos setup`:".into(),
            "deleted" => "deleted (MAOS had created it):".into(),
            _ => "nothing of MAOS's in".into(),
        };
        output::line(&format!("{what} {}", c.path.display()))?;
    }
    if let Some(text) = notes {
        output::line(text)?;
    }
    Ok(())
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "y" } else { "ies" }
}

/// Adds MAOS's entries to a settings object; returns how many.
type AddEntries<'a> = dyn Fn(&mut Map<String, Value>, &Path) -> Result<usize, CliError> + 'a;
/// Takes MAOS's entries out of a settings object; returns how many.
type StripEntries<'a> = dyn Fn(&mut Map<String, Value>) -> usize + 'a;

/// Adds (or with `remove`, takes out) MAOS's entries in the JSON object file at `path`.
fn edit_json(
    path: &Path,
    remove: bool,
    add: &AddEntries<'_>,
    strip: &StripEntries<'_>,
) -> Result<Change, CliError> {
    let backup = backup_path(path);
    let original = fs::read_if_exists(path)?;
    let mut doc = match &original {
        Some(bytes) => parse_object(path, bytes)?,
        None if remove => return Ok(change(path, "absent", 0)),
        None => Map::new(),
    };
    let style = original.as_deref().map_or_else(Style::default, Style::of);
    if remove {
        let removed = strip(&mut doc);
        if removed == 0 {
            return Ok(change(path, "absent", 0));
        }
        if let Some(saved) = fs::read_if_exists(&backup)? {
            fs::remove_file_if_exists(&backup)?;
            // Nothing else changed when the original, set up and taken out again the same
            // way, is what is left now.
            let unchanged = parse_object(&backup, &saved).is_ok_and(|mut before| {
                add(&mut before, path).is_ok() && {
                    strip(&mut before);
                    before == doc
                }
            });
            if unchanged {
                write(path, &saved)?;
                return Ok(change(path, "restored", removed));
            }
            eprintln!(
                "maos setup: {} changed since `maos setup` in other ways too; those changes are kept",
                path.display()
            );
        } else if doc.is_empty() {
            fs::remove_file_if_exists(path)?;
            return Ok(change(path, "deleted", removed));
        }
        write(path, style.render(&doc).as_bytes())?;
        return Ok(change(path, "removed", removed));
    }
    let added = add(&mut doc, path)?;
    if added == 0 {
        return Ok(change(path, "unchanged", 0));
    }
    if let Some(bytes) = &original {
        // Keep the original when taking MAOS's entries out again would not give it back.
        let mut back = doc.clone();
        strip(&mut back);
        if (back.is_empty() || style.render(&back).as_bytes() != bytes.as_slice())
            && !backup.exists()
        {
            write(&backup, bytes)?;
        }
    }
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    write(path, style.render(&doc).as_bytes())?;
    Ok(change(path, "added", added))
}

fn change(path: &Path, change: &'static str, entries: usize) -> Change {
    Change {
        path: path.to_owned(),
        change,
        entries,
    }
}

fn backup_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".maos-backup");
    PathBuf::from(name)
}

fn parse_object(path: &Path, bytes: &[u8]) -> Result<Map<String, Value>, CliError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(bad_file(path, "it is not a JSON object".into())),
        Err(e) => Err(bad_file(path, format!("it is not valid JSON ({e})"))),
    }
}

fn bad_file(path: &Path, why: String) -> CliError {
    CliError::new(
        Exit::Error,
        anyhow!(
            "cannot set up {}: {why}; nothing was changed",
            path.display()
        ),
    )
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    atomic::write_replace(dir, path, bytes, Durability::Fsync)?;
    Ok(())
}

/// How a JSON file is laid out: its indentation (none: one line) and final newline.
struct Style {
    indent: Option<String>,
    newline: bool,
}

impl Default for Style {
    fn default() -> Self {
        Self {
            indent: Some("  ".into()),
            newline: true,
        }
    }
}

impl Style {
    fn of(bytes: &[u8]) -> Self {
        let text = String::from_utf8_lossy(bytes);
        let body = text.trim_end();
        let indent = body.lines().skip(1).find_map(|line| {
            let lead: String = line
                .chars()
                .take_while(|c| *c == ' ' || *c == '\t')
                .collect();
            (!lead.is_empty()).then_some(lead)
        });
        Self {
            indent: if body.contains('\n') {
                indent.or_else(|| Some("  ".into()))
            } else {
                None
            },
            newline: text.ends_with('\n'),
        }
    }

    fn render(&self, doc: &Map<String, Value>) -> String {
        use serde::Serialize as _;
        let mut out = Vec::new();
        let written = match &self.indent {
            Some(indent) => {
                let formatter = serde_json::ser::PrettyFormatter::with_indent(indent.as_bytes());
                doc.serialize(&mut serde_json::Serializer::with_formatter(
                    &mut out, formatter,
                ))
            }
            None => doc.serialize(&mut serde_json::Serializer::new(&mut out)),
        };
        let mut text = match written {
            Ok(()) => String::from_utf8_lossy(&out).into_owned(),
            Err(_) => "{}".into(),
        };
        if self.newline {
            text.push('\n');
        }
        text
    }
}

/// Whether `command` runs `maos` (any path to it) with `words` next.
fn runs_maos(command: &str, words: &[&str]) -> bool {
    let mut parts = command.split_whitespace();
    parts
        .next()
        .is_some_and(|program| program == "maos" || program.ends_with("/maos"))
        && words.iter().all(|w| parts.next() == Some(w))
}

/// Whether a hook entry runs `maos hook <client> …`.
fn is_our_hook(hook: &Value, dialect: &Dialect) -> bool {
    hook.get("command")
        .and_then(Value::as_str)
        .is_some_and(|c| runs_maos(c, &["hook", dialect.client.name()]))
}

/// One hook handler of MAOS's, in the editor's JSON settings.
fn hook_handler(dialect: &Dialect, event: &str, maos: &str) -> Value {
    let command = format!("{maos} hook {} {event}", dialect.client.name());
    if dialect.client == maos_agent::session::Client::Gemini {
        // Gemini CLI counts hook timeouts in milliseconds.
        json!({ "type": "command", "name": "maos", "command": command, "timeout": HOOK_TIMEOUT_SECS * 1000 })
    } else {
        json!({ "type": "command", "command": command, "timeout": HOOK_TIMEOUT_SECS })
    }
}

fn add_hooks(
    doc: &mut Map<String, Value>,
    path: &Path,
    dialect: &Dialect,
    maos: &str,
) -> Result<usize, CliError> {
    let hooks = doc.entry("hooks").or_insert_with(|| json!({}));
    let Some(hooks) = hooks.as_object_mut() else {
        return Err(bad_file(path, "its `hooks` is not an object".into()));
    };
    let mut added = 0;
    // The events `maos hook <client>` answers; the one before an edit only for edit tools.
    for event in dialect.event_names() {
        let handler = hook_handler(dialect, event, maos);
        let groups = hooks.entry(event).or_insert_with(|| json!([]));
        let Some(groups) = groups.as_array_mut() else {
            return Err(bad_file(
                path,
                format!("its `hooks.{event}` is not an array"),
            ));
        };
        let ours = groups
            .iter_mut()
            .filter_map(|g| g.get_mut("hooks").and_then(Value::as_array_mut))
            .flatten()
            .find(|h| is_our_hook(h, dialect));
        if let Some(existing) = ours {
            // An older entry (another path to maos, another timeout) is brought up to date.
            if *existing != handler {
                *existing = handler;
                added += 1;
            }
            continue;
        }
        let mut group = Map::new();
        if dialect.is_before_edit(event) {
            group.insert("matcher".into(), dialect.edit_tools.join("|").into());
        }
        group.insert("hooks".into(), json!([handler]));
        groups.push(Value::Object(group));
        added += 1;
    }
    Ok(added)
}

fn strip_hooks(doc: &mut Map<String, Value>, dialect: &Dialect) -> usize {
    let Some(hooks) = doc.get_mut("hooks").and_then(Value::as_object_mut) else {
        return 0;
    };
    let mut removed = 0;
    let mut emptied_events = Vec::new();
    for (event, groups) in hooks.iter_mut() {
        let Some(groups) = groups.as_array_mut() else {
            continue;
        };
        let before = removed;
        groups.retain_mut(|group| {
            let Some(list) = group.get_mut("hooks").and_then(Value::as_array_mut) else {
                return true;
            };
            let had = list.len();
            list.retain(|h| !is_our_hook(h, dialect));
            removed += had - list.len();
            !(list.is_empty() && had > 0)
        });
        if removed > before && groups.is_empty() {
            emptied_events.push(event.clone());
        }
    }
    for event in emptied_events {
        hooks.remove(&event);
    }
    if removed > 0 && hooks.is_empty() {
        doc.remove("hooks");
    }
    removed
}

/// Adds [`CLAUDE_RULE`] to `permissions.allow`.
fn add_rule(doc: &mut Map<String, Value>, path: &Path) -> Result<usize, CliError> {
    let permissions = doc.entry("permissions").or_insert_with(|| json!({}));
    let Some(permissions) = permissions.as_object_mut() else {
        return Err(bad_file(path, "its `permissions` is not an object".into()));
    };
    let allow = permissions.entry("allow").or_insert_with(|| json!([]));
    let Some(allow) = allow.as_array_mut() else {
        return Err(bad_file(
            path,
            "its `permissions.allow` is not an array".into(),
        ));
    };
    if allow.iter().any(|r| r == CLAUDE_RULE) {
        return Ok(0);
    }
    allow.push(CLAUDE_RULE.into());
    Ok(1)
}

fn strip_rule(doc: &mut Map<String, Value>) -> usize {
    let Some(permissions) = doc.get_mut("permissions").and_then(Value::as_object_mut) else {
        return 0;
    };
    let Some(allow) = permissions.get_mut("allow").and_then(Value::as_array_mut) else {
        return 0;
    };
    let had = allow.len();
    allow.retain(|r| r != CLAUDE_RULE);
    let removed = had - allow.len();
    if removed > 0 && allow.is_empty() {
        permissions.remove("allow");
        if permissions.is_empty() {
            doc.remove("permissions");
        }
    }
    removed
}

/// Whether an MCP server entry runs `maos mcp`.
fn is_our_server(server: &Value) -> bool {
    let command = server
        .get("command")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let first_arg = server.pointer("/args/0").and_then(Value::as_str);
    runs_maos(command, &[]) && first_arg == Some("mcp")
}

fn add_server(doc: &mut Map<String, Value>, path: &Path, entry: Value) -> Result<usize, CliError> {
    let servers = doc.entry("mcpServers").or_insert_with(|| json!({}));
    let Some(servers) = servers.as_object_mut() else {
        return Err(bad_file(path, "its `mcpServers` is not an object".into()));
    };
    match servers.get_mut(SERVER) {
        Some(existing) if *existing == entry => Ok(0),
        Some(existing) if is_our_server(existing) => {
            *existing = entry;
            Ok(1)
        }
        Some(_) => {
            eprintln!(
                "maos setup: {} already has an MCP server named `{SERVER}` that does not run `maos mcp`; it is kept",
                path.display()
            );
            Ok(0)
        }
        None => {
            servers.insert(SERVER.into(), entry);
            Ok(1)
        }
    }
}

fn strip_server(doc: &mut Map<String, Value>) -> usize {
    let Some(servers) = doc.get_mut("mcpServers").and_then(Value::as_object_mut) else {
        return 0;
    };
    if !servers.get(SERVER).is_some_and(is_our_server) {
        return 0;
    }
    servers.remove(SERVER);
    if servers.is_empty() {
        doc.remove("mcpServers");
    }
    1
}

/// Codex's name of a hook event in trust keys: `PreToolUse` → `pre_tool_use`.
fn snake(event: &str) -> String {
    let mut out = String::new();
    for (i, c) in event.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether a Codex hook handler (a TOML table) runs `maos hook codex …`.
fn is_our_codex_handler(handler: &toml_edit::Table) -> bool {
    handler
        .get("command")
        .and_then(|c| c.as_str())
        .is_some_and(|c| runs_maos(c, &["hook", "codex"]))
}

/// The trust keys (`<file>:<event>:<group>:<handler>`) of MAOS's hooks in Codex's config.
fn our_codex_hook_keys(doc: &toml_edit::DocumentMut, path: &Path) -> Vec<String> {
    let mut keys = Vec::new();
    let Some(hooks) = doc.get("hooks").and_then(|h| h.as_table()) else {
        return keys;
    };
    for event in hook::CODEX.event_names() {
        let Some(groups) = hooks.get(event).and_then(|g| g.as_array_of_tables()) else {
            continue;
        };
        for (g, group) in groups.iter().enumerate() {
            let Some(handlers) = group.get("hooks").and_then(|h| h.as_array_of_tables()) else {
                continue;
            };
            for (h, handler) in handlers.iter().enumerate() {
                if is_our_codex_handler(handler) {
                    keys.push(format!("{}:{}:{g}:{h}", path.display(), snake(event)));
                }
            }
        }
    }
    keys
}

/// Adds (or takes out) MAOS's server and hooks in Codex's config.toml.
fn edit_codex(path: &Path, remove: bool, maos: &str) -> Result<Change, CliError> {
    let original = fs::read_if_exists(path)?;
    let text = match &original {
        Some(bytes) => String::from_utf8(bytes.clone())
            .map_err(|_| bad_file(path, "it is not UTF-8 text".into()))?,
        None if remove => return Ok(change(path, "absent", 0)),
        None => String::new(),
    };
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e| bad_file(path, format!("it is not valid TOML ({e})")))?;
    let ours = |item: &toml_edit::Item| {
        item.get("command")
            .and_then(|c| c.as_str())
            .is_some_and(|c| runs_maos(c, &[]))
            && item
                .get("args")
                .and_then(|a| a.as_array())
                .and_then(|a| a.get(0))
                .and_then(|a| a.as_str())
                == Some("mcp")
    };
    let entries = if remove {
        strip_codex(&mut doc, path, ours)
    } else {
        add_codex(&mut doc, path, maos, ours)?
    };
    if entries == 0 {
        return Ok(change(path, if remove { "absent" } else { "unchanged" }, 0));
    }
    let rendered = doc.to_string();
    if remove && rendered.trim().is_empty() {
        fs::remove_file_if_exists(path)?;
        return Ok(change(path, "deleted", entries));
    }
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    write(path, rendered.as_bytes())?;
    Ok(change(
        path,
        if remove { "removed" } else { "added" },
        entries,
    ))
}

fn strip_codex(
    doc: &mut toml_edit::DocumentMut,
    path: &Path,
    ours: impl Fn(&toml_edit::Item) -> bool,
) -> usize {
    let mut removed = 0;
    let keys = our_codex_hook_keys(doc, path);
    if doc
        .get("mcp_servers")
        .and_then(|s| s.get(SERVER))
        .is_some_and(&ours)
        && let Some(servers) = doc
            .get_mut("mcp_servers")
            .and_then(|s| s.as_table_like_mut())
    {
        servers.remove(SERVER);
        removed += 1;
        if servers.is_empty() {
            doc.remove("mcp_servers");
        }
    }
    let Some(hooks) = doc.get_mut("hooks").and_then(|h| h.as_table_mut()) else {
        return removed;
    };
    if let Some(state) = hooks.get_mut("state").and_then(|s| s.as_table_like_mut()) {
        for key in &keys {
            state.remove(key);
        }
        if state.is_empty() {
            hooks.remove("state");
        }
    }
    for event in hook::CODEX.event_names() {
        let Some(groups) = hooks
            .get_mut(event)
            .and_then(|g| g.as_array_of_tables_mut())
        else {
            continue;
        };
        groups.retain(|group| {
            let Some(handlers) = group.get("hooks").and_then(|h| h.as_array_of_tables()) else {
                return true;
            };
            let mine = handlers.iter().filter(|h| is_our_codex_handler(h)).count();
            removed += mine;
            // Groups MAOS wrote hold only its handler.
            mine == 0 || mine < handlers.len()
        });
        if groups.is_empty() {
            hooks.remove(event);
        }
    }
    if hooks.is_empty() {
        doc.remove("hooks");
    }
    removed
}

fn add_codex(
    doc: &mut toml_edit::DocumentMut,
    path: &Path,
    maos: &str,
    ours: impl Fn(&toml_edit::Item) -> bool,
) -> Result<usize, CliError> {
    let mut added = 0;
    let existing = doc.get("mcp_servers").and_then(|s| s.get(SERVER));
    if existing.is_some_and(|e| !ours(e)) {
        eprintln!(
            "maos setup: {} already has [mcp_servers.{SERVER}] that does not run `maos mcp`; it is kept",
            path.display()
        );
    } else {
        let servers = doc
            .entry("mcp_servers")
            .or_insert_with(|| {
                let mut table = toml_edit::Table::new();
                table.set_implicit(true);
                toml_edit::Item::Table(table)
            })
            .as_table_mut()
            .ok_or_else(|| bad_file(path, "its `mcp_servers` is not a table".into()))?;
        let server = servers
            .entry(SERVER)
            .or_insert_with(|| toml_edit::Item::Table(toml_edit::Table::new()))
            .as_table_mut()
            .ok_or_else(|| bad_file(path, "its `mcp_servers.maos` is not a table".into()))?;
        let mut args = toml_edit::Array::new();
        args.push("mcp");
        let env_vars: toml_edit::Array = CODEX_ENV_VARS.iter().copied().collect();
        let wanted: [(&str, toml_edit::Value); 4] = [
            ("command", maos.into()),
            ("args", args.into()),
            ("env_vars", env_vars.into()),
            ("default_tools_approval_mode", "approve".into()),
        ];
        let mut changed = false;
        for (key, value) in wanted {
            let same = server
                .get(key)
                .and_then(|v| v.as_value())
                .is_some_and(|v| v.to_string().trim() == value.to_string().trim());
            if !same {
                server.insert(key, toml_edit::value(value));
                changed = true;
            }
        }
        added += usize::from(changed);
    }
    let hooks = doc
        .entry("hooks")
        .or_insert_with(|| {
            let mut table = toml_edit::Table::new();
            table.set_implicit(true);
            toml_edit::Item::Table(table)
        })
        .as_table_mut()
        .ok_or_else(|| bad_file(path, "its `hooks` is not a table".into()))?;
    for event in hook::CODEX.event_names() {
        let command = format!("{maos} hook codex {event}");
        let groups = hooks
            .entry(event)
            .or_insert_with(|| toml_edit::Item::ArrayOfTables(toml_edit::ArrayOfTables::new()))
            .as_array_of_tables_mut()
            .ok_or_else(|| {
                bad_file(
                    path,
                    format!("its `hooks.{event}` is not an array of tables"),
                )
            })?;
        let mut found = false;
        for group in groups.iter_mut() {
            let Some(handlers) = group
                .get_mut("hooks")
                .and_then(|h| h.as_array_of_tables_mut())
            else {
                continue;
            };
            for handler in handlers.iter_mut().filter(|h| is_our_codex_handler(h)) {
                found = true;
                if handler.get("command").and_then(|c| c.as_str()) != Some(command.as_str()) {
                    handler.insert("command", toml_edit::value(command.as_str()));
                    added += 1;
                }
            }
        }
        if found {
            continue;
        }
        let mut handler = toml_edit::Table::new();
        handler.insert("type", toml_edit::value("command"));
        handler.insert("command", toml_edit::value(command.as_str()));
        handler.insert(
            "timeout",
            toml_edit::value(i64::try_from(HOOK_TIMEOUT_SECS).unwrap_or(15)),
        );
        let mut handlers = toml_edit::ArrayOfTables::new();
        handlers.push(handler);
        let mut group = toml_edit::Table::new();
        if hook::CODEX.is_before_edit(event) {
            group.insert(
                "matcher",
                toml_edit::value(hook::CODEX.edit_tools.join("|")),
            );
        }
        group.insert("hooks", toml_edit::Item::ArrayOfTables(handlers));
        groups.push(group);
        added += 1;
    }
    Ok(added)
}

/// Trusts MAOS's hooks in Codex's config at `path`: asks `codex app-server` for the hash
/// of each (`hooks/list`) and records it in `[hooks.state."<key>"] trusted_hash`, as
/// Codex's own /hooks does. Returns how many were newly trusted; `Err` says why none could
/// be (no `codex` on PATH, an answer it did not understand).
fn trust_codex_hooks(path: &Path, maos: &str) -> Result<usize, String> {
    let cwd = context::current_dir().map_err(|e| e.error.to_string())?;
    let listed = codex_hooks_list(&cwd)?;
    let mut trusted = Vec::new();
    for hook in listed
        .pointer("/data")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.get("hooks").and_then(Value::as_array))
        .flatten()
    {
        let field = |name: &str| hook.get(name).and_then(Value::as_str).unwrap_or_default();
        if field("sourcePath") != path.display().to_string()
            || !field("command").starts_with(&format!("{maos} hook codex "))
        {
            continue;
        }
        if field("trustStatus") != "trusted" && !field("currentHash").is_empty() {
            trusted.push((field("key").to_owned(), field("currentHash").to_owned()));
        }
    }
    if trusted.is_empty() {
        return Ok(0);
    }
    let text = fs::read_if_exists(path)
        .map_err(|e| e.to_string())?
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e| format!("{e}"))?;
    let state = doc
        .entry("hooks")
        .or_insert_with(|| toml_edit::Item::Table(toml_edit::Table::new()))
        .as_table_mut()
        .ok_or("its `hooks` is not a table")?
        .entry("state")
        .or_insert_with(|| {
            let mut table = toml_edit::Table::new();
            table.set_implicit(true);
            toml_edit::Item::Table(table)
        })
        .as_table_mut()
        .ok_or("its `hooks.state` is not a table")?;
    for (key, hash) in &trusted {
        let mut entry = toml_edit::Table::new();
        entry.insert("trusted_hash", toml_edit::value(hash.as_str()));
        state.insert(key, toml_edit::Item::Table(entry));
    }
    write(path, doc.to_string().as_bytes()).map_err(|e| e.error.to_string())?;
    Ok(trusted.len())
}

/// `codex app-server`'s answer to `hooks/list` for the folder `cwd`.
fn codex_hooks_list(cwd: &Path) -> Result<Value, String> {
    let mut child = Command::new("codex")
        .arg("app-server")
        .current_dir(cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run `codex app-server`: {e}"))?;
    let requests = [
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
               "params": {"clientInfo": {"name": "maos-setup", "version": env!("CARGO_PKG_VERSION")}}}),
        json!({"jsonrpc": "2.0", "method": "initialized"}),
        json!({"jsonrpc": "2.0", "id": 2, "method": "hooks/list", "params": {"cwds": [cwd]}}),
    ];
    let mut stdin = child.stdin.take().ok_or("no stdin to `codex app-server`")?;
    let stdout = child
        .stdout
        .take()
        .ok_or("no stdout from `codex app-server`")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Ok(value) = serde_json::from_str::<Value>(&line)
                && value.get("id") == Some(&json!(2))
            {
                let _ = tx.send(value);
                break;
            }
        }
    });
    for request in &requests {
        if writeln!(stdin, "{request}").is_err() {
            break;
        }
    }
    let answer = rx.recv_timeout(CODEX_LIST_WAIT);
    drop(stdin);
    let _ = child.kill();
    let _ = child.wait();
    let answer = answer.map_err(|_| "`codex app-server` did not list the hooks".to_owned())?;
    if let Some(error) = answer.get("error") {
        return Err(format!("`codex app-server` refused hooks/list: {error}"));
    }
    answer
        .get("result")
        .cloned()
        .ok_or_else(|| "`codex app-server` answered hooks/list with no result".to_owned())
}
