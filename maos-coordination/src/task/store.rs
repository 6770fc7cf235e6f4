//! What the task logic needs of a store, and the file store's answer.
//!
//! Every change to task records — create, claim, a status change with the dependents it
//! unblocks, an edit, returning what an agent held — is one [`TaskTx`] body run by
//! [`Tasks::transact`](super::Tasks): the store decides how the body is made atomic. The file
//! store runs it once under `tasks/.lock`, writing each record as the body saves it (with its
//! journal note and the index's change log, exactly as before stores existed); the etcd store
//! (`task::etcd`) runs it optimistically and commits everything it saved in one transaction.

use super::graph::DepGraph;
use super::index::Scope;
use super::record::Task;
use super::{Status, TaskError, Tasks};
use crate::atomic::PublishError;
use crate::fs::FileLock;
use crate::journal::{Effect, Pending};
use crate::record as records;

/// Reads and writes of task records inside one atomic change.
pub(crate) trait TaskTx {
    /// One record (`None`: no such task).
    fn read(&mut self, id: &str) -> Result<Option<Task>, TaskError>;
    /// Writes `task` over its record if the record still has the version `task` was read
    /// with ([`TaskError::Stale`] otherwise), raising the version.
    fn save(&mut self, task: &mut Task) -> Result<(), TaskError>;
    /// Writes a new record; false (nothing written) when its id is taken.
    fn create(&mut self, task: &Task) -> Result<bool, TaskError>;
    /// The unfinished tasks that depend on `id`.
    fn dependents(&mut self, id: &str) -> Result<Vec<String>, TaskError>;
    /// Every task's dependencies: what a cycle check walks.
    fn graph(&mut self) -> Result<DepGraph, TaskError>;
    /// The tasks `agent` holds in progress.
    fn held_by(&mut self, agent: &str) -> Result<Vec<String>, TaskError>;
}

/// The file store's change: the tasks lock held for its whole length.
pub(super) struct FileTx<'a> {
    pub(super) tasks: &'a Tasks,
    pub(super) lock: FileLock,
}

impl TaskTx for FileTx<'_> {
    fn read(&mut self, id: &str) -> Result<Option<Task>, TaskError> {
        self.tasks.read(id)
    }

    fn save(&mut self, task: &mut Task) -> Result<(), TaskError> {
        let tasks = self.tasks;
        let read = task.version;
        let before = tasks.read(&task.id)?;
        let found = before.as_ref().map_or(0, |t| t.version);
        if found != read {
            return Err(TaskError::Stale {
                id: task.id.clone(),
                read,
                found,
            });
        }
        task.version = read + 1;
        let path = tasks.path(&task.id);
        let effect = Effect::has(&tasks.ws, &path, "/version", task.version);
        let pending = Pending::note(
            &tasks.ws,
            &self.lock,
            super::changed(before.as_ref(), task),
            effect,
        );
        let index = tasks.index_before_write();
        crate::atomic::write_replace(
            &tasks.ws.tmp_dir(),
            &path,
            &records::encode(task),
            tasks.durability,
        )?;
        tasks.index_written(index, std::slice::from_ref(task));
        pending.done();
        Ok(())
    }

    fn create(&mut self, task: &Task) -> Result<bool, TaskError> {
        let tasks = self.tasks;
        let staged = crate::atomic::stage(
            &tasks.ws.tmp_dir(),
            &records::encode(task),
            tasks.durability,
        )?;
        let index = tasks.index_before_write();
        let path = tasks.path(&task.id);
        let effect = Effect::has(
            &tasks.ws,
            &path,
            "/created_at",
            serde_json::json!(task.created_at),
        );
        let pending = Pending::note(&tasks.ws, &self.lock, super::created(task), effect);
        match staged.publish_new(&path) {
            Ok(()) => {
                tasks.index_written(index, std::slice::from_ref(task));
                pending.done();
                Ok(true)
            }
            Err(PublishError::AlreadyExists { .. }) => Ok(false),
            Err(PublishError::Io(e)) => Err(e.into()),
        }
    }

    fn dependents(&mut self, id: &str) -> Result<Vec<String>, TaskError> {
        // From the index (checked); one the index missed (an edit not yet seen) is repaired
        // by the next `ready`.
        let (index, _) = self.tasks.indexed_locked(Scope::Active)?;
        Ok(index.dependents(id))
    }

    fn graph(&mut self) -> Result<DepGraph, TaskError> {
        self.tasks.graph_locked()
    }

    fn held_by(&mut self, agent: &str) -> Result<Vec<String>, TaskError> {
        Ok(self
            .tasks
            .list()?
            .tasks
            .into_iter()
            .filter(|t| t.status == Status::InProgress && t.assignee.as_deref() == Some(agent))
            .map(|t| t.id)
            .collect())
    }
}
