//! `maos setup claude|codex`: wires MAOS into the editors' own settings files without
//! clobbering what their users keep there.
//!
//! **Claude Code**: six hook entries (`maos hook claude EVENT`) in `.claude/settings.json`
//! and the `maos` MCP server in `.mcp.json` (with `--user`: `~/.claude/settings.json` and
//! `~/.claude.json`). **Codex**: `[mcp_servers.maos]` in `$CODEX_HOME/config.toml`
//! (`~/.codex/config.toml`), edited with `toml_edit`, which keeps comments and layout.
//!
//! Idempotent: an entry already there is not added again. `--remove` takes out exactly
//! MAOS's entries (hooks whose command is `maos hook claude …`, a `maos` server running
//! `maos mcp`), and the containers that held only them. JSON files are written back in their
//! own indentation; when taking MAOS's entries out again would not give the file back byte
//! for byte (unusual formatting, an empty file), setup keeps the original beside it as
//! `<file>.maos-backup`, and `--remove` restores it exactly unless the file has changed in
//! other ways meanwhile (then those changes are kept). A file MAOS created and that holds
//! nothing else is deleted by `--remove`.

use std::path::{Path, PathBuf};

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

use super::hook;

/// Seconds Claude Code gives a hook before it moves on.
const HOOK_TIMEOUT_SECS: u64 = 15;
/// The name of MAOS's MCP server in the editors' settings.
const SERVER: &str = "maos";

/// What Codex agents are told in AGENTS.md.
const AGENTS_MD: &str = "\
## Working beside other agents (MAOS)

Other agents change this repository at the same time, coordinated by MAOS (the `maos` MCP
server). Before you edit files, reserve them with the `reserve` tool (a glob such as
`src/db/**`, with a reason) — or run `maos reserve 'src/db/**' --reason \"…\"`. If the
reservation is refused, another agent holds those files: work on something else, or ask the
holder with `send_message`, and never edit a file another agent holds. Release what you
reserved (`unreserve`) as soon as you are done. Take work with `claim_task` and report it
with `update_task_status`. The pre-commit guard refuses commits of files another agent holds.";

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
    }
}

fn claude(ctx: &Context, args: &SetupClaudeArgs) -> Result<(), CliError> {
    let (settings, servers) = if args.user {
        let home = context::home_dir()?;
        (
            home.join(".claude/settings.json"),
            home.join(".claude.json"),
        )
    } else {
        let cwd = context::current_dir()?;
        let root = workspace::git_worktree_root(&cwd).unwrap_or(cwd);
        (root.join(".claude/settings.json"), root.join(".mcp.json"))
    };
    let changes = [
        edit_json(&settings, args.remove, add_hooks, strip_hooks)?,
        edit_json(&servers, args.remove, add_server, strip_server)?,
    ];
    report(ctx, &changes, None)
}

fn codex(ctx: &Context, args: &SetupCodexArgs) -> Result<(), CliError> {
    let path = context::codex_home()?.join("config.toml");
    let change = edit_codex(&path, args.remove)?;
    report(ctx, &[change], (!args.remove).then_some(AGENTS_MD))
}

fn report(ctx: &Context, changes: &[Change], agents_md: Option<&str>) -> Result<(), CliError> {
    if ctx.json {
        return output::json(&json!({ "files": changes, "agents_md": agents_md }));
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
    if let Some(text) = agents_md {
        output::line(&format!(
            "\nAdd this paragraph to AGENTS.md, so Codex agents reserve before they edit:\n\n{text}"
        ))?;
    }
    Ok(())
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "y" } else { "ies" }
}

/// Adds (or with `remove`, takes out) MAOS's entries in the JSON object file at `path`.
fn edit_json(
    path: &Path,
    remove: bool,
    add: fn(&mut Map<String, Value>, &Path) -> Result<usize, CliError>,
    strip: fn(&mut Map<String, Value>) -> usize,
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

/// Whether a hook entry runs `maos hook claude …` (any path to `maos`).
fn is_our_hook(hook: &Value) -> bool {
    let Some(command) = hook.get("command").and_then(Value::as_str) else {
        return false;
    };
    let mut words = command.split_whitespace();
    words
        .next()
        .is_some_and(|program| program == "maos" || program.ends_with("/maos"))
        && words.next() == Some("hook")
        && words.next() == Some("claude")
}

fn add_hooks(doc: &mut Map<String, Value>, path: &Path) -> Result<usize, CliError> {
    let hooks = doc.entry("hooks").or_insert_with(|| json!({}));
    let Some(hooks) = hooks.as_object_mut() else {
        return Err(bad_file(path, "its `hooks` is not an object".into()));
    };
    let mut added = 0;
    // The events `maos hook claude` answers; PreToolUse only for the tools that edit.
    for event in hook::EVENTS {
        let matcher = (*event == "PreToolUse").then(|| hook::EDIT_TOOLS.join("|"));
        let groups = hooks.entry(*event).or_insert_with(|| json!([]));
        let Some(groups) = groups.as_array_mut() else {
            return Err(bad_file(
                path,
                format!("its `hooks.{event}` is not an array"),
            ));
        };
        let present = groups.iter().any(|g| {
            g.get("hooks")
                .and_then(Value::as_array)
                .is_some_and(|hs| hs.iter().any(is_our_hook))
        });
        if present {
            continue;
        }
        let mut group = Map::new();
        if let Some(matcher) = matcher {
            group.insert("matcher".into(), matcher.into());
        }
        group.insert(
            "hooks".into(),
            json!([{
                "type": "command",
                "command": format!("maos hook claude {event}"),
                "timeout": HOOK_TIMEOUT_SECS,
            }]),
        );
        groups.push(Value::Object(group));
        added += 1;
    }
    Ok(added)
}

fn strip_hooks(doc: &mut Map<String, Value>) -> usize {
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
            list.retain(|h| !is_our_hook(h));
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

/// Whether an MCP server entry runs `maos mcp`.
fn is_our_server(server: &Value) -> bool {
    let command = server
        .get("command")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let first_arg = server.pointer("/args/0").and_then(Value::as_str);
    (command == "maos" || command.ends_with("/maos")) && first_arg == Some("mcp")
}

fn add_server(doc: &mut Map<String, Value>, path: &Path) -> Result<usize, CliError> {
    let servers = doc.entry("mcpServers").or_insert_with(|| json!({}));
    let Some(servers) = servers.as_object_mut() else {
        return Err(bad_file(path, "its `mcpServers` is not an object".into()));
    };
    match servers.get(SERVER) {
        Some(existing) if is_our_server(existing) => Ok(0),
        Some(_) => {
            eprintln!(
                "maos setup: {} already has an MCP server named `{SERVER}` that does not run `maos mcp`; it is kept",
                path.display()
            );
            Ok(0)
        }
        None => {
            servers.insert(
                SERVER.into(),
                json!({ "command": "maos", "args": ["mcp"], "env": {} }),
            );
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

/// Adds (or takes out) `[mcp_servers.maos]` in Codex's config.toml.
fn edit_codex(path: &Path, remove: bool) -> Result<Change, CliError> {
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
            .is_some_and(|c| c == "maos" || c.ends_with("/maos"))
            && item
                .get("args")
                .and_then(|a| a.as_array())
                .and_then(|a| a.get(0))
                .and_then(|a| a.as_str())
                == Some("mcp")
    };
    let existing = doc.get("mcp_servers").and_then(|s| s.get(SERVER));
    if remove {
        if !existing.is_some_and(ours) {
            return Ok(change(path, "absent", 0));
        }
        let emptied = match doc
            .get_mut("mcp_servers")
            .and_then(|s| s.as_table_like_mut())
        {
            Some(servers) => {
                servers.remove(SERVER);
                servers.is_empty()
            }
            None => false,
        };
        if emptied {
            doc.remove("mcp_servers");
        }
        let rendered = doc.to_string();
        if rendered.trim().is_empty() {
            fs::remove_file_if_exists(path)?;
            return Ok(change(path, "deleted", 1));
        }
        write(path, rendered.as_bytes())?;
        return Ok(change(path, "removed", 1));
    }
    match existing {
        Some(item) if ours(item) => return Ok(change(path, "unchanged", 0)),
        Some(_) => {
            eprintln!(
                "maos setup: {} already has [mcp_servers.{SERVER}] that does not run `maos mcp`; it is kept",
                path.display()
            );
            return Ok(change(path, "unchanged", 0));
        }
        None => {}
    }
    let servers = doc
        .entry("mcp_servers")
        .or_insert_with(|| {
            let mut table = toml_edit::Table::new();
            table.set_implicit(true);
            toml_edit::Item::Table(table)
        })
        .as_table_mut()
        .ok_or_else(|| bad_file(path, "its `mcp_servers` is not a table".into()))?;
    let mut server = toml_edit::Table::new();
    server.insert("command", toml_edit::value("maos"));
    let mut args = toml_edit::Array::new();
    args.push("mcp");
    server.insert("args", toml_edit::value(args));
    servers.insert(SERVER, toml_edit::Item::Table(server));
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    write(path, doc.to_string().as_bytes())?;
    Ok(change(path, "added", 1))
}
