//! Task records in etcd: one key per task (`<prefix>/tasks/<id>.json`, the same JSON as the
//! file), changed by optimistic transactions.
//!
//! A change's body reads records (each read remembered with its `mod_revision`, 0 for a
//! missing key), and saves or creates records (kept in memory, and seen by its own later
//! reads). At the end everything it saved is written in **one** etcd transaction that first
//! compares every remembered revision: if any record it read changed meanwhile, nothing is
//! written and the body runs again on fresh reads. So of eight processes claiming one task
//! exactly one transaction succeeds; the others re-read an `in_progress` task and are told who
//! has it. Cycle checks read `tasks/.graph` too, which every change of dependencies rewrites:
//! two edits that would close a circle together cannot both commit.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use etcd_client::{Compare, CompareOp, Txn, TxnOp};

use super::graph::DepGraph;
use super::record::Task;
use super::store::TaskTx;
use super::{Listing, Plan, Status, TaskError, decode};
use crate::journal::Event;
use crate::name;
use crate::record as records;
use crate::store::StoreError;
use crate::store::etcd::{Etcd, Kv, written};
use crate::workspace::Workspace;

/// The folder of task keys.
const DIR: &str = "tasks/";
/// Records per import transaction (etcd allows 128 operations in one by default).
const IMPORT_BATCH: usize = 100;
/// Rewritten by every change of dependencies; read by every cycle check.
const GRAPH: &str = "tasks/.graph";

/// The key of task `id`.
pub(super) fn key(id: &str) -> String {
    format!("{DIR}{}.json", name::file_name(id))
}

/// How errors name task `id`'s record: `etcd:<prefix>/tasks/<id>.json`.
pub(super) fn path(etcd: &Etcd, id: &str) -> PathBuf {
    PathBuf::from(format!("etcd:{}", etcd.key(&key(id))))
}

fn decode_kv(etcd: &Etcd, kv: &Kv) -> Result<Task, crate::record::RecordError> {
    let path = PathBuf::from(format!("etcd:{}", etcd.key(&kv.key)));
    decode(&path, &kv.value)
}

/// Every task record, decoded (those that cannot be are listed as skipped).
pub(super) fn list(etcd: &Etcd) -> Result<Listing, TaskError> {
    let kvs = etcd.list(DIR)?;
    let mut listing = Listing::default();
    for kv in kvs.iter().filter(|kv| is_record(&kv.key)) {
        match decode_kv(etcd, kv) {
            Ok(task) => listing.tasks.push(task),
            Err(e) => listing.skipped.push(e),
        }
    }
    Ok(listing)
}

/// One record.
pub(super) fn get(etcd: &Etcd, id: &str) -> Result<Option<Task>, TaskError> {
    match etcd.get(&key(id))? {
        Some(kv) => Ok(Some(decode_kv(etcd, &kv)?)),
        None => Ok(None),
    }
}

/// Writes a checked import: in transactions of up to [`IMPORT_BATCH`] records, each
/// creating its records only if none of their keys exists. An id taken meanwhile fails the
/// import at its batch, naming it (the batches before it were imported).
pub(super) fn import(etcd: &Etcd, plan: Plan) -> Result<Vec<Task>, TaskError> {
    let mut imported: Vec<Task> = Vec::with_capacity(plan.tasks.len());
    for batch in plan.tasks.chunks(IMPORT_BATCH) {
        let compares: Vec<Compare> = batch
            .iter()
            .map(|(_, t)| Compare::create_revision(etcd.key(&key(&t.id)), CompareOp::Equal, 0))
            .collect();
        let puts: Vec<TxnOp> = batch
            .iter()
            .map(|(_, t)| TxnOp::put(etcd.key(&key(&t.id)), records::encode(t), None))
            .chain(std::iter::once(TxnOp::put(
                etcd.key(GRAPH),
                b"{}".to_vec(),
                None,
            )))
            .collect();
        let (_, first) = &batch[0];
        let first_value = records::encode(first);
        let outcome = etcd.txn(
            "import tasks",
            Txn::new().when(compares).and_then(puts),
            |etcd| Ok(written(etcd.get(&key(&first.id))?, &first_value)),
        )?;
        if !outcome.applied() {
            let mut taken = None;
            for (line, task) in batch {
                if etcd.get(&key(&task.id))?.is_some() {
                    taken = Some((*line, task.id.clone()));
                    break;
                }
            }
            let (line, id) = taken.unwrap_or((batch[0].0, batch[0].1.id.clone()));
            return Err(TaskError::Import {
                line,
                reason: format!(
                    "a task `{id}` was created meanwhile; the {} task(s) before its batch were imported",
                    imported.len()
                ),
            });
        }
        imported.extend(batch.iter().map(|(_, t)| t.clone()));
    }
    Ok(imported)
}

fn is_record(key: &str) -> bool {
    key.strip_prefix(DIR)
        .is_some_and(|name| !name.starts_with('.') && name.ends_with(".json"))
}

/// Runs `body` until its transaction commits, for at most `within` (then a timeout naming
/// the contention). An error from the body ends it, nothing written.
pub(super) fn transact<R>(
    ws: &Workspace,
    etcd: &Etcd,
    within: Duration,
    mut body: impl FnMut(&mut dyn TaskTx) -> Result<R, TaskError>,
) -> Result<R, TaskError> {
    let started = Instant::now();
    let mut attempt = 0u32;
    loop {
        let mut tx = EtcdTx {
            ws,
            etcd,
            read: BTreeMap::new(),
            tasks: HashMap::new(),
            writes: BTreeMap::new(),
            events: Vec::new(),
        };
        let result = body(&mut tx)?;
        if tx.commit()? {
            crate::journal::settle_etcd(ws);
            return Ok(result);
        }
        attempt += 1;
        if started.elapsed() > within {
            return Err(TaskError::Store(StoreError::Timeout {
                endpoints: etcd.spec().to_string(),
                op: format!("a task change lost to other writers {attempt} times"),
                secs: within.as_secs(),
            }));
        }
        // Back off a little, more as contention goes on, so racing writers spread out.
        let spread = u64::from(attempt.min(20)) * (u64::from(std::process::id()) % 7 + 1);
        std::thread::sleep(Duration::from_micros(200 * spread));
    }
}

/// One optimistic change: what it read (with revisions) and what it will write.
struct EtcdTx<'a> {
    ws: &'a Workspace,
    etcd: &'a Etcd,
    /// Key → the `mod_revision` it was read at (0: it did not exist).
    read: BTreeMap<String, i64>,
    /// Records as this change sees them (read, or written by it).
    tasks: HashMap<String, Option<Task>>,
    /// Key → the value to write.
    writes: BTreeMap<String, Vec<u8>>,
    /// The journal's events of the change (written with it: see `journal::etcd`).
    events: Vec<Event>,
}

impl EtcdTx<'_> {
    /// Writes everything, if nothing read changed: false when something did.
    fn commit(self) -> Result<bool, TaskError> {
        if self.writes.is_empty() {
            return Ok(true);
        }
        let compares: Vec<Compare> = self
            .read
            .iter()
            .map(|(key, rev)| Compare::mod_revision(self.etcd.key(key), CompareOp::Equal, *rev))
            .collect();
        // Recognised by the records it wrote (each carries its new version and time).
        let records: Vec<(String, Vec<u8>)> = self
            .writes
            .iter()
            .filter(|(key, _)| key.as_str() != GRAPH)
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        let mut puts: Vec<TxnOp> = self
            .writes
            .into_iter()
            .map(|(key, value)| TxnOp::put(self.etcd.key(&key), value, None))
            .collect();
        if let Some((key, value)) = crate::journal::pending(self.ws, &self.events) {
            puts.push(TxnOp::put(self.etcd.key(&key), value, None));
        }
        let outcome = self.etcd.txn(
            "commit task change",
            Txn::new().when(compares).and_then(puts),
            |etcd| {
                let mut revision = None;
                for (key, value) in &records {
                    revision = written(etcd.get(key)?, value);
                    if revision.is_none() {
                        return Ok(None);
                    }
                }
                Ok(revision)
            },
        )?;
        Ok(outcome.applied())
    }

    fn remember(&mut self, key: &str, revision: i64) {
        self.read.entry(key.to_owned()).or_insert(revision);
    }

    /// Marks the dependency graph changed (see [`GRAPH`]).
    fn graph_changed(&mut self) {
        self.writes.insert(GRAPH.to_owned(), b"{}".to_vec());
    }
}

impl TaskTx for EtcdTx<'_> {
    fn read(&mut self, id: &str) -> Result<Option<Task>, TaskError> {
        if let Some(task) = self.tasks.get(id) {
            return Ok(task.clone());
        }
        let key = key(id);
        let task = match self.etcd.get(&key)? {
            Some(kv) => {
                self.remember(&key, kv.mod_revision);
                Some(decode_kv(self.etcd, &kv)?)
            }
            None => {
                self.remember(&key, 0);
                None
            }
        };
        self.tasks.insert(id.to_owned(), task.clone());
        Ok(task)
    }

    fn save(&mut self, task: &mut Task) -> Result<(), TaskError> {
        let before = self.read(&task.id)?;
        let found = before.as_ref().map_or(0, |t| t.version);
        if found != task.version {
            return Err(TaskError::Stale {
                id: task.id.clone(),
                read: task.version,
                found,
            });
        }
        task.version += 1;
        self.events.push(super::changed(before.as_ref(), task));
        if before.is_none_or(|b| b.dependencies != task.dependencies) {
            self.graph_changed();
        }
        self.writes.insert(key(&task.id), records::encode(task));
        self.tasks.insert(task.id.clone(), Some(task.clone()));
        Ok(())
    }

    fn create(&mut self, task: &Task) -> Result<bool, TaskError> {
        if self.read(&task.id)?.is_some() {
            return Ok(false);
        }
        if !task.dependencies.is_empty() {
            self.graph_changed();
        }
        self.events.push(super::created(task));
        self.writes.insert(key(&task.id), records::encode(task));
        self.tasks.insert(task.id.clone(), Some(task.clone()));
        Ok(true)
    }

    fn dependents(&mut self, id: &str) -> Result<Vec<String>, TaskError> {
        // A dependent created meanwhile and missed here is repaired by the next `ready`.
        Ok(list(self.etcd)?
            .tasks
            .into_iter()
            .filter(|t| !t.status.is_final() && t.dependencies.iter().any(|d| d == id))
            .map(|t| t.id)
            .collect())
    }

    fn graph(&mut self) -> Result<DepGraph, TaskError> {
        let revision = self.etcd.get(GRAPH)?.map_or(0, |kv| kv.mod_revision);
        self.remember(GRAPH, revision);
        let mut graph: DepGraph = list(self.etcd)?
            .tasks
            .into_iter()
            .map(|t| (t.id, t.dependencies))
            .collect();
        for task in self.tasks.values().flatten() {
            graph.insert(task.id.clone(), task.dependencies.clone());
        }
        Ok(graph)
    }

    fn held_by(&mut self, agent: &str) -> Result<Vec<String>, TaskError> {
        Ok(list(self.etcd)?
            .tasks
            .into_iter()
            .filter(|t| t.status == Status::InProgress && t.assignee.as_deref() == Some(agent))
            .map(|t| t.id)
            .collect())
    }
}
