//! Bulk: a whole plan of tasks in one locked operation (`maos task import`), and every task
//! out as JSON Lines (`maos task export`).
//!
//! An import line is a JSON object with the task record's own field names, so an export
//! imports back: `title` (required), `id`, `description`, `priority`, `dependencies`,
//! `assignee`, `role`, `tags`, `requires`, `files`, `metadata`. The record's bookkeeping
//! fields (`history`, `version`, `attempts`, `created_*`, `updated_at`, `started_at`,
//! `blocked_reason`) are accepted and ignored: each imported task starts a history of its own.
//! `status` is kept only when it is `completed` or `cancelled` (finished work stays
//! finished); every other task is `pending`, or `blocked` while a dependency is unfinished.
//!
//! The whole file is checked before anything is written — every line parses, names and
//! limits hold, ids are new and unique, every dependency exists (in the file or the
//! workspace), and no cycle forms (over the file and the workspace together) — and refused
//! as a whole, naming the line. Then every record is written under one hold of the tasks
//! lock.

use std::collections::{HashMap, HashSet};

use serde::Deserialize;
use serde_json::{Map, Value};

use super::record::{self, FileRef, NewTask, Task};
use super::{Status, TaskError, Tasks, cycle_through, dedup, new_id};
use crate::atomic::{self, Durability, PublishError};
use crate::fs;
use crate::name::{self, NameKind};
use crate::priority::Priority;
use crate::record as records;

/// One line of an import file (see the module docs).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    #[serde(default)]
    id: Option<String>,
    title: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    status: Option<Status>,
    #[serde(default)]
    priority: Priority,
    #[serde(default)]
    dependencies: Vec<String>,
    #[serde(default)]
    assignee: Option<String>,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    requires: Vec<String>,
    #[serde(default)]
    files: Vec<FileArg>,
    #[serde(default)]
    metadata: Map<String, Value>,
    // The record's bookkeeping, accepted so that an export imports back, and ignored.
    #[serde(default, rename = "blocked_reason")]
    _blocked_reason: Option<Value>,
    #[serde(default, rename = "created_by")]
    _created_by: Option<Value>,
    #[serde(default, rename = "created_at")]
    _created_at: Option<Value>,
    #[serde(default, rename = "updated_at")]
    _updated_at: Option<Value>,
    #[serde(default, rename = "started_at")]
    _started_at: Option<Value>,
    #[serde(default, rename = "completed_at")]
    _completed_at: Option<Value>,
    #[serde(default, rename = "attempts")]
    _attempts: Option<Value>,
    #[serde(default, rename = "version")]
    _version: Option<Value>,
    #[serde(default, rename = "history")]
    _history: Option<Value>,
}

/// A file reference as a record has it (`{"path", "start_line", "end_line"}`) or as the
/// CLI takes it (`"src/db.rs:10-40"`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum FileArg {
    Text(String),
    Ref(FileRef),
}

/// A checked import, ready to be written.
#[derive(Debug)]
pub struct Plan {
    pub(super) tasks: Vec<(usize, Task)>,
}

impl Plan {
    /// How many tasks it holds.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }
}

fn bad(line: usize, reason: impl std::fmt::Display) -> TaskError {
    TaskError::Import {
        line,
        reason: reason.to_string(),
    }
}

impl Tasks {
    /// Checks an import file's text (JSON Lines; blank lines and lines starting with `#`
    /// are skipped) against the workspace: see the module docs. Nothing is written.
    pub fn plan_import(&self, by: &str, text: &str) -> Result<Plan, TaskError> {
        name::validate(NameKind::Agent, by)?;
        let mut lines = Vec::new();
        for (n, raw) in text.lines().enumerate() {
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let line: Line = serde_json::from_str(trimmed).map_err(|e| bad(n + 1, e))?;
            lines.push((n + 1, line));
        }
        let existing = self.list()?;
        let known: HashSet<&str> = existing.tasks.iter().map(|t| t.id.as_str()).collect();
        let statuses = existing.statuses();
        // Ids first: the file's own, then fresh ones for lines without.
        let mut ids: HashMap<String, usize> = HashMap::new();
        for (n, line) in &lines {
            if let Some(id) = &line.id {
                name::validate(NameKind::Task, id).map_err(|e| bad(*n, e))?;
                if known.contains(id.as_str()) || self.path(id).exists() {
                    return Err(bad(*n, format!("a task `{id}` exists already")));
                }
                if let Some(first) = ids.insert(id.clone(), *n) {
                    return Err(bad(
                        *n,
                        format!("the id `{id}` is used on line {first} too"),
                    ));
                }
            }
        }
        let mut graph = existing.graph();
        let mut tasks = Vec::with_capacity(lines.len());
        for (n, line) in lines {
            let id = match line.id {
                Some(id) => id,
                None => loop {
                    let id = new_id();
                    if !known.contains(id.as_str()) && !ids.contains_key(&id) {
                        ids.insert(id.clone(), n);
                        break id;
                    }
                },
            };
            let files = line
                .files
                .into_iter()
                .map(|f| match f {
                    FileArg::Text(text) => text.parse::<FileRef>(),
                    FileArg::Ref(file) => Ok(file),
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad(n, e))?;
            let new = NewTask {
                title: line.title,
                description: line.description,
                priority: line.priority,
                dependencies: dedup(line.dependencies),
                assignee: line.assignee,
                role: line.role,
                tags: dedup(line.tags),
                requires: dedup(line.requires),
                files,
                metadata: line.metadata,
            };
            record::validate_new(&new).map_err(|e| bad(n, e))?;
            for dep in &new.dependencies {
                if !known.contains(dep.as_str()) && !ids.contains_key(dep) {
                    return Err(bad(
                        n,
                        format!(
                            "dependency `{dep}` does not exist (not in the workspace, not in the file)"
                        ),
                    ));
                }
            }
            graph.insert(id.clone(), new.dependencies.clone());
            let finished = line
                .status
                .filter(|s| matches!(s, Status::Completed | Status::Cancelled));
            let status = finished.unwrap_or(Status::Pending);
            let task = Task::created(id, new, by, status, Some("imported".into()));
            tasks.push((n, task));
        }
        if let Some(cycle) = first_cycle(&graph) {
            return Err(TaskError::Cycle { cycle });
        }
        // Unfinished work waits for its unfinished dependencies (in the file or not).
        let finished_in_file: HashMap<&str, Status> = tasks
            .iter()
            .map(|(_, t)| (t.id.as_str(), t.status))
            .collect();
        let completed = |dep: &str| {
            finished_in_file
                .get(dep)
                .or_else(|| statuses.get(dep))
                .is_some_and(|s| *s == Status::Completed)
        };
        let waiting: Vec<bool> = tasks
            .iter()
            .map(|(_, t)| {
                t.status == Status::Pending && !t.dependencies.iter().all(|d| completed(d))
            })
            .collect();
        for ((_, task), waits) in tasks.iter_mut().zip(waiting) {
            if waits {
                task.status = Status::Blocked;
                if let Some(created) = task.history.last_mut() {
                    created.to = Status::Blocked.as_str().into();
                }
            }
        }
        Ok(Plan { tasks })
    }

    /// Decides again, holding the tasks lock, which unfinished tasks of `plan` wait: a
    /// dependency outside the file may have been completed (or reopened) since the plan was
    /// checked, and a task must not stay `blocked` with its dependency done.
    fn recheck_waiting(&self, mut plan: Plan) -> Result<Plan, TaskError> {
        let in_file: HashMap<String, Status> = plan
            .tasks
            .iter()
            .map(|(_, t)| (t.id.clone(), t.status))
            .collect();
        let mut outside: HashMap<String, bool> = HashMap::new();
        for (_, task) in &mut plan.tasks {
            if !matches!(task.status, Status::Pending | Status::Blocked) {
                continue;
            }
            let mut all_done = true;
            for dep in &task.dependencies {
                let done = match in_file.get(dep) {
                    Some(status) => *status == Status::Completed,
                    None => match outside.get(dep) {
                        Some(done) => *done,
                        None => {
                            let done = self
                                .read(dep)?
                                .is_some_and(|t| t.status == Status::Completed);
                            outside.insert(dep.clone(), done);
                            done
                        }
                    },
                };
                all_done &= done;
            }
            let status = if all_done {
                Status::Pending
            } else {
                Status::Blocked
            };
            if task.status != status {
                task.status = status;
                if let Some(created) = task.history.last_mut() {
                    created.to = status.as_str().into();
                }
            }
        }
        Ok(plan)
    }

    /// Writes a checked import under one hold of the tasks lock. An id taken meanwhile (by a
    /// process that created it after the check) fails the import at that task, naming it.
    pub fn import(&self, plan: Plan) -> Result<Vec<Task>, TaskError> {
        #[cfg(feature = "etcd")]
        if let crate::store::Store::Etcd(etcd) = self.ws.store() {
            return super::etcd::import(etcd, plan);
        }
        let _lock = self.lock()?;
        let plan = self.recheck_waiting(plan)?;
        let tmp = self.ws.tmp_dir();
        let sync = self.durability == Durability::Fsync;
        let index = self.index_before_write();
        let mut written = Vec::with_capacity(plan.tasks.len());
        let mut tasks = plan.tasks.into_iter().peekable();
        // A quarter of the files this process may have open, at most IMPORT_BATCH.
        let batch = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .map_or(IMPORT_BATCH, |limit| {
                usize::try_from(limit / 4).unwrap_or(IMPORT_BATCH)
            })
            .clamp(1, IMPORT_BATCH);
        // In batches (each staged file is an open file): staged unflushed, flushed in one
        // call, published without a flush each; the folder flushed once at the end — the
        // durability of one write per record, for a batch's price.
        while tasks.peek().is_some() {
            let mut staged = Vec::with_capacity(batch);
            for (n, task) in tasks.by_ref().take(batch) {
                let file = atomic::stage(&tmp, &records::encode(&task), Durability::Buffered)?;
                staged.push((n, task, file));
            }
            if sync {
                fs::sync_filesystem(&tmp)?;
            }
            for (n, task, file) in staged {
                match file.publish_new(&self.path(&task.id)) {
                    Ok(()) => written.push(task),
                    Err(PublishError::AlreadyExists { .. }) => {
                        self.index_written(index, &written);
                        return Err(bad(
                            n,
                            format!(
                                "a task `{}` was created meanwhile; the {} task(s) before it were imported",
                                task.id,
                                written.len()
                            ),
                        ));
                    }
                    Err(PublishError::Io(e)) => {
                        self.index_written(index, &written);
                        return Err(e.into());
                    }
                }
            }
        }
        if sync {
            fs::sync_dir(&self.dir)?;
        }
        if let Some(first) = written.first() {
            let ids: Vec<&str> = written.iter().map(|t| t.id.as_str()).collect();
            crate::journal::record(
                &self.ws,
                crate::journal::Event::new("task.imported")
                    .agent(first.created_by.clone())
                    .data(serde_json::json!({ "count": ids.len(), "ids": ids })),
            );
        }
        match index {
            Some(_) => self.index_written(index, &written),
            // No index yet (a fresh workspace): built now, while the lock is held, rather
            // than by the next command. Not fatal: the next reader builds it anyway.
            None => {
                let _ = self.indexed_locked(super::index::Scope::Active);
            }
        }
        Ok(written)
    }
}

/// The most records an import stages at once (each is an open file until published).
const IMPORT_BATCH: usize = 256;

/// A cycle of `graph`, if it has one (one pass: strongly connected components), as a path
/// `a → … → a`.
fn first_cycle(graph: &super::DepGraph) -> Option<Vec<String>> {
    let mut index: HashMap<&str, petgraph::graph::NodeIndex> = HashMap::new();
    let mut g = petgraph::Graph::<&str, ()>::new();
    for id in graph.keys() {
        index.insert(id.as_str(), g.add_node(id.as_str()));
    }
    for (id, deps) in graph {
        for dep in deps {
            if let Some(&to) = index.get(dep.as_str()) {
                g.add_edge(index[id.as_str()], to, ());
            }
        }
    }
    let scc = petgraph::algo::tarjan_scc(&g)
        .into_iter()
        .find(|c| c.len() > 1 || g.contains_edge(c[0], c[0]))?;
    let start = g[scc[0]];
    cycle_through(graph, start, graph.get(start).map_or(&[], Vec::as_slice))
}

/// A task as one line of JSON (its whole record): what `maos task export` prints.
pub fn export_line(task: &Task) -> String {
    serde_json::to_string(task).unwrap_or_default()
}
