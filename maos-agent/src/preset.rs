//! Worker presets: how `maos agent run --preset` runs a headless coding agent (`claude -p`,
//! `codex exec`) for each claimed task.
//!
//! A preset is a plain TOML file with two keys: `command`, the program and its arguments,
//! and `prompt`, written to the command's standard input. `{placeholders}` in both are
//! filled in per task ([`PLACEHOLDERS`]); anything else in braces is left as it is. The
//! built-in presets (`claude`, `codex`) are such files, shown by `maos agent preset show`,
//! for a user to copy and change.

use std::path::Path;

use maos_coordination::atomic::{self, Durability};
use maos_coordination::fs::{self, FsError};
use maos_coordination::task::{Status, Tasks};
use serde_json::json;

use crate::command::TaskCommand;
use crate::worker::TaskContext;

/// The built-in presets: name and text.
pub const BUILT_IN: &[(&str, &str)] = &[
    ("claude", include_str!("../presets/claude.toml")),
    ("codex", include_str!("../presets/codex.toml")),
];

/// The placeholders filled in per task.
pub const PLACEHOLDERS: &[&str] = &[
    "agent",
    "task_id",
    "title",
    "description",
    "priority",
    "tags",
    "attempt",
    "files",
    "dependency_notes",
    "branch",
    "worktree",
    "workspace",
    "maos",
    "mcp_config",
];

/// A preset could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PresetError {
    /// Neither a built-in name nor a file.
    #[error(
        "no preset `{name}`: the built-in ones are {}, or give a path to a preset file",
        known()
    )]
    NotFound {
        /// What was asked for.
        name: String,
    },
    /// The file says something a preset cannot.
    #[error("the preset {source_name} is not usable: {reason}")]
    Invalid {
        /// The preset's name or path.
        source_name: String,
        /// What is wrong.
        reason: String,
    },
    /// A file could not be read or written.
    #[error(transparent)]
    Io(#[from] FsError),
}

fn known() -> String {
    BUILT_IN
        .iter()
        .map(|(n, _)| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A loaded preset.
#[derive(Debug, Clone)]
pub struct Preset {
    name: String,
    command: Vec<String>,
    prompt: String,
}

impl PresetError {
    /// The kind of this error.
    pub fn kind(&self) -> maos_coordination::ErrorKind {
        use maos_coordination::ErrorKind;
        match self {
            PresetError::NotFound { .. } => ErrorKind::NotFound,
            PresetError::Invalid { .. } => ErrorKind::InvalidInput,
            PresetError::Io(e) => e.kind(),
        }
    }
}

impl Preset {
    /// The text of the built-in preset `name`.
    pub fn built_in(name: &str) -> Option<&'static str> {
        BUILT_IN.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
    }

    /// A built-in preset by name, or the preset file at `given` (relative to `dir`).
    pub fn load(given: &str, dir: &Path) -> Result<Preset, PresetError> {
        if let Some(text) = Self::built_in(given) {
            return Self::parse(given, text);
        }
        let path = dir.join(given);
        match fs::read_if_exists(&path)? {
            Some(bytes) => Self::parse(
                &path.display().to_string(),
                &String::from_utf8_lossy(&bytes),
            ),
            None => Err(PresetError::NotFound {
                name: given.to_owned(),
            }),
        }
    }

    /// Reads a preset's text; `name` names it in errors.
    pub fn parse(name: &str, text: &str) -> Result<Preset, PresetError> {
        let invalid = |reason: String| PresetError::Invalid {
            source_name: name.to_owned(),
            reason,
        };
        let doc: toml_edit::DocumentMut = text
            .parse()
            .map_err(|e| invalid(format!("it is not TOML ({e})")))?;
        let command: Vec<String> = doc
            .get("command")
            .and_then(|c| c.as_array())
            .ok_or_else(|| invalid("`command` must be an array of strings".into()))?
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or_else(|| invalid("`command` must be an array of strings".into()))?;
        if command.first().is_none_or(String::is_empty) {
            return Err(invalid("`command` names no program".into()));
        }
        let prompt = match doc.get("prompt") {
            None => String::new(),
            Some(p) => p
                .as_str()
                .ok_or_else(|| invalid("`prompt` must be a string".into()))?
                .trim_start_matches('\n')
                .to_owned(),
        };
        if let Some(key) = doc
            .iter()
            .map(|(k, _)| k)
            .find(|k| !["command", "prompt"].contains(k))
        {
            return Err(invalid(format!(
                "unknown key `{key}` (a preset has `command` and `prompt`)"
            )));
        }
        Ok(Preset {
            name: name.to_owned(),
            command,
            prompt,
        })
    }

    /// The preset's name (or path).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The program it runs.
    pub fn program(&self) -> &str {
        &self.command[0]
    }

    /// The command for the task in `ctx`, run in `dir` by the maos binary at `maos`: the
    /// placeholders filled in, the prompt as its input, and the MCP configuration written
    /// to `.maos/runs/<task>/mcp.json`.
    pub fn command_for(
        &self,
        ctx: &TaskContext<'_>,
        dir: &Path,
        maos: &Path,
    ) -> Result<TaskCommand, PresetError> {
        let ws = ctx.workspace();
        let agent = ctx.agent.id();
        let task = &ctx.task;
        let run_dir = ws
            .dir()
            .join("runs")
            .join(maos_coordination::name::file_name(&task.id));
        fs::create_dir_all(&run_dir)?;
        let mcp_config = run_dir.join("mcp.json");
        let config = json!({
            "mcpServers": {
                "maos": {
                    "command": maos,
                    "args": ["mcp", "--no-join"],
                    "env": { "MAOS_AGENT_ID": agent, "MAOS_WORKSPACE": ws.root() },
                }
            }
        });
        atomic::write_replace(
            &ws.tmp_dir(),
            &mcp_config,
            config.to_string().as_bytes(),
            Durability::Buffered,
        )?;
        let or_none = |s: String| {
            if s.trim().is_empty() {
                "(none)".to_owned()
            } else {
                s
            }
        };
        let files = task
            .files
            .iter()
            .map(|f| format!("- {f}"))
            .collect::<Vec<_>>()
            .join("\n");
        let values: Vec<(&str, String)> = vec![
            ("agent", agent.clone()),
            ("task_id", task.id.clone()),
            ("title", task.title.clone()),
            ("description", or_none(task.description.clone())),
            ("priority", task.priority.to_string()),
            ("tags", or_none(task.tags.join(", "))),
            ("attempt", task.attempts.to_string()),
            ("files", or_none(files)),
            (
                "dependency_notes",
                or_none(dependency_notes(&Tasks::new(ws), &task.dependencies)),
            ),
            (
                "branch",
                crate::command::branch_of(dir).unwrap_or_else(|| "(none)".into()),
            ),
            ("worktree", dir.display().to_string()),
            ("workspace", ws.root().display().to_string()),
            ("maos", maos.display().to_string()),
            ("mcp_config", mcp_config.display().to_string()),
        ];
        let command: Vec<String> = self.command.iter().map(|a| fill(a, &values)).collect();
        Ok(TaskCommand {
            program: command[0].clone(),
            args: command[1..].to_vec(),
            timeout: None,
            dir: dir.to_owned(),
            stdin: Some(fill(&self.prompt, &values)),
        })
    }
}

/// The notes of the finished tasks `ids`: per task its title and every note in its history.
fn dependency_notes(tasks: &Tasks, ids: &[String]) -> String {
    let mut out = Vec::new();
    for id in ids {
        let Ok(task) = tasks.get(id) else { continue };
        if task.status != Status::Completed {
            continue;
        }
        out.push(format!("- {} ({}):", task.id, task.title));
        let notes: Vec<&str> = task
            .history
            .iter()
            .filter_map(|c| c.note.as_deref())
            .collect();
        if notes.is_empty() {
            out.push("  (no notes)".into());
        }
        out.extend(notes.into_iter().map(|n| format!("  {n}")));
    }
    out.join("\n")
}

/// `text` with every `{name}` of `values` replaced, in one pass (a value is never
/// scanned again); other braces stay.
fn fill(text: &str, values: &[(&str, String)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let value = after.find('}').and_then(|close| {
            let name = &after[..close];
            values
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (v, close))
        });
        match value {
            Some((v, close)) => {
                out.push_str(v);
                rest = &after[close + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_presets_parse_and_use_only_known_placeholders() {
        for (name, text) in BUILT_IN {
            let preset = Preset::parse(name, text).unwrap();
            assert_eq!(preset.program(), *name);
            for part in preset.command.iter().chain([&preset.prompt]) {
                let mut rest = part.as_str();
                while let Some(open) = rest.find('{') {
                    rest = &rest[open + 1..];
                    let name = rest.split('}').next().unwrap_or_default();
                    let is_word = !name.is_empty()
                        && name.chars().all(|c| c.is_ascii_lowercase() || c == '_');
                    assert!(!is_word || PLACEHOLDERS.contains(&name), "{name} in {part}");
                }
            }
        }
    }

    #[test]
    fn placeholders_fill_once_and_other_braces_stay() {
        let values = vec![("title", "{agent}".to_owned()), ("agent", "a1".to_owned())];
        assert_eq!(
            fill("t={title} a={agent} {x} { y }", &values),
            "t={agent} a=a1 {x} { y }"
        );
        assert_eq!(fill("{", &values), "{");
        assert_eq!(fill("{title", &values), "{title");
    }

    #[test]
    fn broken_presets_are_refused_with_the_reason() {
        for (text, reason) in [
            ("command = 'x'", "array of strings"),
            ("command = []", "names no program"),
            ("command = ['x']\nprompt = 3", "`prompt` must be a string"),
            ("command = ['x']\nprompts = ''", "unknown key `prompts`"),
            ("command = [", "not TOML"),
        ] {
            let e = Preset::parse("p.toml", text).unwrap_err().to_string();
            assert!(e.contains(reason) && e.contains("p.toml"), "{e}");
        }
    }
}
