//! Resolution coordination: one task per conflicted file, assigned to a suggested resolver,
//! who is told; the tasks are tracked in `.maos/merge/<source>..<target>.json` and
//! [`MergeCoordinator::run`](super::MergeCoordinator::run) waits until they are all done.
//!
//! **Resolver rule:** the agent that last touched the file on the source side (the branch
//! being merged in, whose author knows the new intent); when nobody did there, the agent that
//! last touched it on the target side; otherwise nobody (the task stays unassigned).

use std::collections::BTreeMap;
use std::path::PathBuf;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, json};

use super::{Conflict, MergeError, Preparation, encode_branch};
use crate::atomic::{self, Durability};
use crate::channel::{Channel, ChannelName, Draft};
use crate::fs;
use crate::record;
use crate::task::{FileRef, NewTask, Status, Tasks};
use crate::workspace::Workspace;

/// The tracking record of one merge's resolution tasks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tracking {
    /// The branch being merged.
    pub source: String,
    /// The branch merged into.
    pub target: String,
    /// The source commit when the tasks were filed.
    pub source_commit: String,
    /// The target commit when the tasks were filed.
    pub target_commit: String,
    /// Conflicted path → its resolution task id.
    pub tasks: BTreeMap<String, String>,
    /// When the tasks were (last) filed.
    pub updated_at: Timestamp,
}

impl Tracking {
    /// The tasks not completed yet, as `id (status)`; a task that no longer exists counts
    /// as open (nobody said it was resolved).
    pub fn open_tasks(&self, ws: &Workspace) -> Result<Vec<String>, MergeError> {
        let tasks = Tasks::new(ws);
        let mut open = Vec::new();
        for id in self.tasks.values() {
            match tasks.get(id) {
                Ok(task) if task.status == Status::Completed => {}
                Ok(task) => open.push(format!("{id} ({})", task.status)),
                Err(e) if e.kind() == crate::ErrorKind::NotFound => {
                    open.push(format!("{id} (missing)"))
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(open)
    }
}

/// One resolution task.
#[derive(Debug, Clone, Serialize)]
pub struct ResolutionTask {
    /// The conflicted file.
    pub path: String,
    /// The task.
    pub task: String,
    /// Who it is assigned to.
    pub assignee: Option<String>,
    /// False when an open task for this file already existed and was kept.
    pub created: bool,
}

/// What [`MergeCoordinator::resolve`](super::MergeCoordinator::resolve) did.
#[derive(Debug, Clone, Serialize)]
pub struct Resolution {
    /// The preparation it was based on.
    pub preparation: Preparation,
    /// One task per conflicted file.
    pub tasks: Vec<ResolutionTask>,
    /// The tracking file.
    pub tracking: PathBuf,
}

fn tracking_path(ws: &Workspace, source: &str, target: &str) -> PathBuf {
    ws.dir().join("merge").join(format!(
        "{}..{}.json",
        encode_branch(source),
        encode_branch(target)
    ))
}

/// The tracking record of `source` into `target`, if resolution tasks were filed.
pub fn load(ws: &Workspace, source: &str, target: &str) -> Result<Option<Tracking>, MergeError> {
    let path = tracking_path(ws, source, target);
    match fs::read_if_exists(&path)? {
        Some(bytes) => Ok(Some(record::decode(
            &path,
            "merge tracking record",
            &bytes,
        )?)),
        None => Ok(None),
    }
}

/// Forgets the tracking record once the merge is done.
pub fn finish(ws: &Workspace, source: &str, target: &str) -> Result<(), MergeError> {
    fs::remove_file_if_exists(&tracking_path(ws, source, target))?;
    Ok(())
}

/// Files one resolution task per conflicted file of `prep` (keeping open ones filed before),
/// assigns each to the suggested resolver, tells them on the `merge` channel, and records
/// the tasks for `run`.
pub fn resolve(ws: &Workspace, prep: &Preparation, agent: &str) -> Result<Resolution, MergeError> {
    let tasks = Tasks::new(ws);
    let previous = load(ws, &prep.source, &prep.target)?;
    let channel = Channel::open(ws, ChannelName::new(super::TOPIC)?);
    let mut filed = Vec::new();
    let mut tracked = BTreeMap::new();
    for conflict in &prep.conflicts {
        let kept = previous
            .as_ref()
            .and_then(|t| t.tasks.get(&conflict.path))
            .and_then(|id| tasks.get(id).ok())
            .filter(|t| !matches!(t.status, Status::Cancelled | Status::Failed));
        let (task, created) = match kept {
            Some(task) => (task, false),
            None => {
                let task = tasks.create(agent, new_task(prep, conflict), None)?;
                if let Some(assignee) = &task.assignee {
                    channel.send(
                        agent,
                        Draft::new(json!({
                            "event": "resolve-conflict",
                            "task": task.id,
                            "path": conflict.path,
                            "source": prep.source,
                            "target": prep.target,
                        }))
                        .kind("resolution-task")
                        .to(assignee.clone()),
                    )?;
                }
                (task, true)
            }
        };
        tracked.insert(conflict.path.clone(), task.id.clone());
        filed.push(ResolutionTask {
            path: conflict.path.clone(),
            task: task.id,
            assignee: task.assignee,
            created,
        });
    }
    let path = tracking_path(ws, &prep.source, &prep.target);
    if !tracked.is_empty() {
        let tracking = Tracking {
            source: prep.source.clone(),
            target: prep.target.clone(),
            source_commit: prep.source_commit.clone(),
            target_commit: prep.target_commit.clone(),
            tasks: tracked,
            updated_at: Timestamp::now(),
        };
        fs::create_dir_all(&ws.dir().join("merge"))?;
        atomic::write_replace(
            &ws.tmp_dir(),
            &path,
            &record::encode(&tracking),
            Durability::from_sync(ws.config().fsync.merge),
        )?;
    }
    Ok(Resolution {
        preparation: prep.clone(),
        tasks: filed,
        tracking: path,
    })
}

/// The resolver of a conflict, by the rule in the module docs.
pub fn suggested_resolver(conflict: &Conflict) -> Option<String> {
    conflict
        .source_agents
        .first()
        .or(conflict.target_agents.first())
        .cloned()
}

fn new_task(prep: &Preparation, conflict: &Conflict) -> NewTask {
    let mut title = format!(
        "Resolve merge conflict in {} ({} → {})",
        conflict.path, prep.source, prep.target
    );
    if title.chars().count() > crate::task::MAX_TITLE {
        title = title.chars().take(crate::task::MAX_TITLE).collect();
    }
    let hunks = if conflict.hunks.is_empty() {
        String::from("no line-level hunks (the whole file conflicts)")
    } else {
        conflict
            .hunks
            .iter()
            .map(|h| {
                format!(
                    "lines {}–{} of the merged file: {} line(s) on {}, {} on {}",
                    h.start_line,
                    h.end_line,
                    h.target_lines,
                    prep.target,
                    h.source_lines,
                    prep.source
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    let mut description = format!(
        "Merging `{}` into `{}` conflicts in `{}` ({}).\nConflicting hunks: {hunks}.\nAgents involved: {}.\nResolve it on `{}` (merge `{}` into it and fix the file), commit, then mark this task done; `maos merge run {} {}` proceeds once every resolution task is done.",
        prep.source,
        prep.target,
        conflict.path,
        conflict.kind.as_str().replace('_', " "),
        if conflict.agents.is_empty() {
            "unknown".to_owned()
        } else {
            conflict.agents.join(", ")
        },
        prep.source,
        prep.target,
        prep.source,
        prep.target,
    );
    if description.chars().count() > crate::task::MAX_DESCRIPTION {
        description = description
            .chars()
            .take(crate::task::MAX_DESCRIPTION)
            .collect();
    }
    let file = FileRef {
        path: conflict.path.clone(),
        start_line: conflict.hunks.first().map(|h| h.start_line),
        end_line: conflict.hunks.first().map(|h| h.end_line),
    };
    let mut metadata = Map::new();
    metadata.insert(
        "merge".into(),
        json!({
            "source": prep.source,
            "target": prep.target,
            "path": conflict.path,
            "kind": conflict.kind,
            "source_commit": prep.source_commit,
            "target_commit": prep.target_commit,
        }),
    );
    NewTask {
        title,
        description,
        priority: crate::Priority::High,
        assignee: suggested_resolver(conflict),
        tags: vec!["merge-conflict".into()],
        files: if file.validate().is_ok() {
            vec![file]
        } else {
            Vec::new()
        },
        metadata,
        ..NewTask::default()
    }
}
