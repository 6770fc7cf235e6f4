//! The task record (`.maos/tasks/<id>.json`), its parts, and the limits on what it holds.

use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::status::Status;
use crate::name::{self, NameError, NameKind};
use crate::priority::Priority;

/// The longest title, in characters.
pub const MAX_TITLE: usize = 500;
/// The longest description, in characters.
pub const MAX_DESCRIPTION: usize = 5_000;
/// The longest file path of a file reference, in bytes.
pub const MAX_FILE_PATH: usize = 1_024;

/// One task (fields in this order on disk).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// Short, unique id (also the file name).
    pub id: String,
    /// What to do, 1–500 characters.
    pub title: String,
    /// Details, up to 5,000 characters.
    #[serde(default)]
    pub description: String,
    /// Where it is in its life.
    pub status: Status,
    /// How urgent it is.
    #[serde(default)]
    pub priority: Priority,
    /// Ids of the tasks that must be completed first.
    #[serde(default)]
    pub dependencies: Vec<String>,
    /// The agent doing it (or asked to do it).
    #[serde(default)]
    pub assignee: Option<String>,
    /// The role an agent needs to take it.
    #[serde(default)]
    pub role: Option<String>,
    /// Free labels.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Capabilities an agent needs to claim it (all of them).
    #[serde(default)]
    pub requires: Vec<String>,
    /// Files (and line ranges) the task is about.
    #[serde(default)]
    pub files: Vec<FileRef>,
    /// Why it was blocked by hand; `None` when blocked only by dependencies.
    #[serde(default)]
    pub blocked_reason: Option<String>,
    /// Who created it.
    pub created_by: String,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
    /// When work on it last started.
    #[serde(default)]
    pub started_at: Option<Timestamp>,
    /// When it was completed (or cancelled).
    #[serde(default)]
    pub completed_at: Option<Timestamp>,
    /// How many times it was claimed.
    #[serde(default)]
    pub attempts: u32,
    /// Raised by one on every change: a writer that read version `v` only replaces `v`.
    #[serde(default)]
    pub version: u64,
    /// Every change, oldest first.
    #[serde(default)]
    pub history: Vec<Change>,
    /// Free-form data for tools.
    #[serde(default)]
    pub metadata: Map<String, Value>,
}

/// One change in a task's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// When.
    pub at: Timestamp,
    /// Who (an agent id).
    pub by: String,
    /// What changed: `created`, `status`, `title`, `priority`, `assignee`, `dependencies`, …
    pub field: String,
    /// The value before (`null` for `created`).
    #[serde(default)]
    pub from: Value,
    /// The value after.
    #[serde(default)]
    pub to: Value,
    /// Why, when someone said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A file the task is about, optionally a line range: `src/db.rs`, `src/db.rs:10`,
/// `src/db.rs:10-40`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    /// A path relative to the repository root.
    pub path: String,
    /// First line (1-based).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_line: Option<u32>,
    /// Last line (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_line: Option<u32>,
}

impl fmt::Display for FileRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path)?;
        match (self.start_line, self.end_line) {
            (Some(start), Some(end)) if end != start => write!(f, ":{start}-{end}"),
            (Some(start), _) => write!(f, ":{start}"),
            _ => Ok(()),
        }
    }
}

impl FromStr for FileRef {
    type Err = TaskInputError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| TaskInputError::File {
            file: s.to_owned(),
            reason: reason.to_owned(),
        };
        let (path, range) = match s.rsplit_once(':') {
            Some((path, range))
                if !range.is_empty() && range.chars().all(|c| c.is_ascii_digit() || c == '-') =>
            {
                (path, Some(range))
            }
            _ => (s, None),
        };
        let (start_line, end_line) = match range {
            None => (None, None),
            Some(range) => {
                let (start, end) = range.split_once('-').unwrap_or((range, range));
                let start: u32 = start
                    .parse()
                    .map_err(|_| bad("the line range is not `START` or `START-END`"))?;
                let end: u32 = end
                    .parse()
                    .map_err(|_| bad("the line range is not `START` or `START-END`"))?;
                if start == 0 || end < start {
                    return Err(bad(
                        "lines count from 1 and the range must not run backwards",
                    ));
                }
                (Some(start), Some(end))
            }
        };
        let file = FileRef {
            path: path.to_owned(),
            start_line,
            end_line,
        };
        file.validate()?;
        Ok(file)
    }
}

impl FileRef {
    /// Checks the path: relative, inside the repository, printable, bounded.
    pub fn validate(&self) -> Result<(), TaskInputError> {
        let bad = |reason: &str| TaskInputError::File {
            file: self.to_string(),
            reason: reason.to_owned(),
        };
        if self.path.is_empty() || self.path.len() > MAX_FILE_PATH {
            return Err(bad(&format!("the path must be 1–{MAX_FILE_PATH} bytes")));
        }
        if self.path.starts_with('/') {
            return Err(bad(
                "absolute paths are not allowed: give it relative to the repository root",
            ));
        }
        if self.path.split('/').any(|segment| segment == "..") {
            return Err(bad("`..` would leave the repository"));
        }
        if self.path.chars().any(char::is_control) {
            return Err(bad("it contains a control character"));
        }
        Ok(())
    }
}

/// What a new task is made of.
#[derive(Debug, Clone, Default)]
pub struct NewTask {
    /// 1–500 characters.
    pub title: String,
    /// Up to 5,000 characters.
    pub description: String,
    /// How urgent.
    pub priority: Priority,
    /// Ids of existing tasks to finish first.
    pub dependencies: Vec<String>,
    /// Who should do it.
    pub assignee: Option<String>,
    /// The role needed.
    pub role: Option<String>,
    /// Labels.
    pub tags: Vec<String>,
    /// Capabilities an agent needs to claim it.
    pub requires: Vec<String>,
    /// Files it is about.
    pub files: Vec<FileRef>,
    /// Free-form data.
    pub metadata: Map<String, Value>,
}

impl NewTask {
    /// A task with this title and defaults for the rest.
    pub fn new(title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            ..Self::default()
        }
    }
}

/// A task field over its limits or malformed.
#[derive(Debug, thiserror::Error)]
pub enum TaskInputError {
    /// A name (task id, agent, role, tag) was refused.
    #[error(transparent)]
    Name(#[from] NameError),
    /// The title is empty or too long.
    #[error("the title must be 1–{MAX_TITLE} characters (it has {0})")]
    Title(usize),
    /// The description is too long.
    #[error("the description must be at most {MAX_DESCRIPTION} characters (it has {0})")]
    Description(usize),
    /// A file reference is malformed.
    #[error("invalid file reference `{file}`: {reason}")]
    File {
        /// The reference as given.
        file: String,
        /// What is wrong.
        reason: String,
    },
}

/// Checks a title's length.
pub fn validate_title(title: &str) -> Result<(), TaskInputError> {
    let n = title.chars().count();
    if n == 0 || n > MAX_TITLE || title.trim().is_empty() {
        return Err(TaskInputError::Title(n));
    }
    Ok(())
}

/// Checks every limit of a new task.
pub fn validate_new(new: &NewTask) -> Result<(), TaskInputError> {
    validate_title(&new.title)?;
    let n = new.description.chars().count();
    if n > MAX_DESCRIPTION {
        return Err(TaskInputError::Description(n));
    }
    for dep in &new.dependencies {
        name::validate(NameKind::Task, dep)?;
    }
    if let Some(assignee) = &new.assignee {
        name::validate(NameKind::Agent, assignee)?;
    }
    if let Some(role) = &new.role {
        name::validate(NameKind::Role, role)?;
    }
    for tag in new.tags.iter().chain(&new.requires) {
        name::validate(NameKind::Tag, tag)?;
    }
    for file in &new.files {
        file.validate()?;
    }
    Ok(())
}

/// Whether `agent`, holding `role` and `capabilities`, may take a task with this
/// (assignee, role needed, capabilities required): not assigned to another agent, needing
/// that role or none, requiring only capabilities it has.
pub(crate) fn takeable<'a>(
    (assignee, needs, mut requires): (Option<&str>, Option<&str>, impl Iterator<Item = &'a str>),
    agent: &str,
    role: Option<&str>,
    capabilities: &[String],
) -> bool {
    assignee.is_none_or(|a| a == agent)
        && (needs.is_none() || needs == role)
        && requires.all(|c| capabilities.iter().any(|have| have == c))
}

impl Task {
    /// A new record of `new` with id `id`, created by `by` now in `status` (its history
    /// opening with that, and `note`).
    pub(crate) fn created(
        id: String,
        new: NewTask,
        by: &str,
        status: Status,
        note: Option<String>,
    ) -> Task {
        let now = Timestamp::now();
        let mut task = Task {
            id,
            title: new.title,
            description: new.description,
            status,
            priority: new.priority,
            dependencies: new.dependencies,
            assignee: new.assignee,
            role: new.role,
            tags: new.tags,
            requires: new.requires,
            files: new.files,
            blocked_reason: None,
            created_by: by.to_owned(),
            created_at: now,
            updated_at: now,
            started_at: None,
            completed_at: (status == Status::Completed).then_some(now),
            attempts: 0,
            version: 1,
            history: Vec::new(),
            metadata: new.metadata,
        };
        task.record(by, "created", Value::Null, status.as_str().into(), note);
        task
    }

    /// Records a change in the history (the caller bumps `version` when it saves).
    pub fn record(&mut self, by: &str, field: &str, from: Value, to: Value, note: Option<String>) {
        let at = Timestamp::now();
        self.updated_at = at;
        self.history.push(Change {
            at,
            by: by.to_owned(),
            field: field.to_owned(),
            from,
            to,
            note,
        });
    }

    /// Whether an agent holding `role` (or none) may take it: it needs no role, or that one.
    pub fn open_to(&self, role: Option<&str>) -> bool {
        self.role.is_none() || self.role.as_deref() == role
    }

    /// Whether `agent`, holding `role` and `capabilities`, may take this task: not assigned to
    /// another agent, needing that role or none, requiring only capabilities it has.
    pub fn takeable_by(&self, agent: &str, role: Option<&str>, capabilities: &[String]) -> bool {
        takeable(
            (
                self.assignee.as_deref(),
                self.role.as_deref(),
                self.requires.iter().map(String::as_str),
            ),
            agent,
            role,
            capabilities,
        )
    }

    /// Changes the status, recording it.
    pub fn set_status(&mut self, by: &str, to: Status, note: Option<String>) {
        let from = self.status;
        self.status = to;
        self.record(by, "status", from.as_str().into(), to.as_str().into(), note);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_references_parse_and_refuse_escapes() {
        let f: FileRef = "src/db.rs:10-40".parse().unwrap();
        assert_eq!(
            (f.path.as_str(), f.start_line, f.end_line),
            ("src/db.rs", Some(10), Some(40))
        );
        assert_eq!(f.to_string(), "src/db.rs:10-40");
        let f: FileRef = "src/db.rs:7".parse().unwrap();
        assert_eq!(f.to_string(), "src/db.rs:7");
        let f: FileRef = "notes/a:b.md".parse().unwrap();
        assert_eq!(f.path, "notes/a:b.md");
        for bad in [
            "/etc/passwd",
            "../x",
            "a/../../b",
            "",
            "src/a.rs:0",
            "src/a.rs:9-3",
            "a\u{1b}b",
        ] {
            assert!(bad.parse::<FileRef>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn limits_are_checked() {
        assert!(validate_title("fix it").is_ok());
        assert!(validate_title("").is_err());
        assert!(validate_title("   ").is_err());
        assert!(validate_title(&"é".repeat(500)).is_ok());
        assert!(validate_title(&"x".repeat(501)).is_err());
        let mut new = NewTask::new("t");
        new.description = "d".repeat(5_001);
        assert!(matches!(
            validate_new(&new),
            Err(TaskInputError::Description(5_001))
        ));
        let mut new = NewTask::new("t");
        new.dependencies = vec!["../etc".into()];
        assert!(validate_new(&new).is_err());
    }
}
