//! Moving a workspace's state to another store (`maos store migrate --to`): from `.maos/`
//! files to an etcd cluster and back.
//!
//! Refused while any agent is alive or stale, or any lock is held by a running process (it
//! would go on writing the old store), while a record cannot be read (fix it first: `maos
//! doctor`), and when the target already holds state. Everything the target store keeps is
//! copied with its order and history: every task record (its history inside), every message
//! of every channel under its own number and the channel's counter (the next message follows
//! on), agent records, readers' and inboxes' positions, acknowledgements and votes, and the
//! locks held by agents (each with the time it has left). Fencing tokens keep increasing across the move: on etcd a
//! token is its key's create revision plus `locks/.token_base`, set to the highest file token;
//! back on files, every counter of tokens starts above the last etcd token (`token_floor` in
//! `maos.json`, and every existing `.fence` raised to it). The journal is copied line for
//! line (same numbers and hashes: it verifies to the same last hash), refused when it does
//! not verify.
//! Then `maos.json` names the new store, and the old state is put aside: files move to
//! `.maos/migrated/<time>/`, keys of the etcd prefix are deleted. What the etcd store does not
//! hold yet (message archives, snapshots) stays in `.maos/` files either way.

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::Serialize;

use crate::agents::{AgentError, AgentState, Registry};
use crate::atomic::{self, Durability};
use crate::channel::{self, Channel, ChannelError};
use crate::error::ErrorKind;
use crate::fs::{self, FsError};
use crate::journal;
use crate::lock::{LockError, Locks, Reservations};
use crate::name;
use crate::record::{self, RecordError};
use crate::store::{Spot, StoreError, StoreSpec};
use crate::task::{TaskError, Tasks};
use crate::workspace::{Workspace, WorkspaceError};

/// The folders under `.maos/` whose records the etcd store keeps.
const MOVED: [&str; 7] = [
    "tasks", "channels", "agents", "cursors", "inbox", "acks", "votes",
];

/// A migration was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The workspace already uses that store.
    #[error("the workspace's state is already in `{0}`")]
    SameStore(StoreSpec),
    /// Agents are alive (or stale: they may be): they would go on with the old store.
    #[error(
        "agents are running: {}; stop them (`maos agent leave`, or let them finish) and migrate again",
        agents.join(", ")
    )]
    AgentsAlive {
        /// The agents, with their state.
        agents: Vec<String>,
    },
    /// Locks are held by running processes (which would renew them in the old store), or
    /// reservations are held.
    #[error("locks or reservations are held: {}; release them first", locks.join(", "))]
    LocksHeld {
        /// The resources.
        locks: Vec<String>,
    },
    /// The target already holds state.
    #[error("`{target}` already holds state ({found}); migrate into an empty store or prefix")]
    TargetNotEmpty {
        /// The target store.
        target: StoreSpec,
        /// What was found.
        found: String,
    },
    /// Records that cannot be read would be lost.
    #[error(
        "{} record(s) cannot be read (first: {first}); run `maos doctor --fix`, then migrate",
        count
    )]
    Broken {
        /// How many.
        count: usize,
        /// The first problem.
        first: Box<RecordError>,
    },
    /// The journal does not verify: copying it would carry a broken history over.
    #[error(
        "the journal does not verify ({what}); it is the record of what happened and nothing repairs it — move `.maos/journal/` aside by hand to start a new one, then migrate"
    )]
    BrokenJournal {
        /// Its first problem.
        what: String,
    },
    /// Reading or writing a store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Opening the target failed.
    #[error(transparent)]
    Workspace(#[from] WorkspaceError),
    /// Reading tasks failed.
    #[error(transparent)]
    Task(#[from] TaskError),
    /// Reading channels failed.
    #[error(transparent)]
    Channel(#[from] ChannelError),
    /// Reading agents failed.
    #[error(transparent)]
    Agent(#[from] AgentError),
    /// Reading locks failed.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// A file could not be read or written.
    #[error(transparent)]
    Io(#[from] FsError),
}

impl MigrateError {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            MigrateError::SameStore(_) => ErrorKind::InvalidInput,
            MigrateError::AgentsAlive { .. }
            | MigrateError::LocksHeld { .. }
            | MigrateError::TargetNotEmpty { .. } => ErrorKind::Conflict,
            MigrateError::Broken { first, .. } => first.kind(),
            MigrateError::BrokenJournal { .. } => ErrorKind::Corrupt,
            MigrateError::Store(e) => e.kind(),
            MigrateError::Workspace(e) => e.kind(),
            MigrateError::Task(e) => e.kind(),
            MigrateError::Channel(e) => e.kind(),
            MigrateError::Agent(e) => e.kind(),
            MigrateError::Lock(e) => e.kind(),
            MigrateError::Io(e) => e.kind(),
        }
    }
}

impl From<RecordError> for MigrateError {
    fn from(e: RecordError) -> Self {
        MigrateError::Broken {
            count: 1,
            first: Box::new(e),
        }
    }
}

/// What a migration moved.
#[derive(Debug, Clone, Serialize)]
pub struct Migrated {
    /// The store the state was in.
    pub from: String,
    /// The store it is in now.
    pub to: String,
    /// Task records.
    pub tasks: usize,
    /// Channels.
    pub channels: usize,
    /// Messages, all channels together.
    pub messages: usize,
    /// Archived (pruned) messages, archived again in the new store.
    pub archived: usize,
    /// Agent records.
    pub agents: usize,
    /// Readers' and inboxes' positions.
    pub positions: usize,
    /// Locks held by agents.
    pub locks: usize,
    /// Acknowledgement and vote records.
    pub records: usize,
    /// Journal entries (from the first kept to the last, hashes unchanged).
    pub journal_entries: usize,
    /// Where the old state was put aside (a folder), or what was deleted (the etcd prefix).
    pub old_state: String,
}

/// Moves `ws`'s state to `to` and makes `to` the workspace's store; see the module docs.
pub fn migrate(ws: &Workspace, to: &StoreSpec) -> Result<Migrated, MigrateError> {
    let from = ws.store().spec();
    if from == *to {
        return Err(MigrateError::SameStore(from));
    }
    refuse_while_running(ws)?;
    let target = ws.clone().with_store(to)?;
    refuse_unless_empty(&target, to)?;
    journal::settle_all(ws)?;
    if let Some(problem) = journal::verify(ws)?.problem {
        return Err(MigrateError::BrokenJournal {
            what: format!("{}: {}", problem.path.display(), problem.what),
        });
    }
    let mut report = copy_state(ws, &target)?;
    report.old_state = put_aside(ws)?;
    // Positions in the old journal mean nothing in the new one (entry numbers are kept): the
    // hook runner goes on from the end (nothing runs twice), the metrics tally is recounted.
    journal::hooks::continue_from_end(&target)?;
    fs::remove_file_if_exists(&ws.dir().join("reports").join("journal-tally.json"))?;
    Ok(report)
}

/// Copies every record of `ws` into `target` — the same workspace on another store, or
/// another workspace (a snapshot's staging copy) — whose store holds nothing yet: tasks,
/// messages with their counters and archives, agents, positions, acknowledgements, votes,
/// locks (tokens kept increasing) and the journal; then `target`'s `maos.json` names its
/// store (and, moving to files, the token floor). Broken records are refused.
pub(crate) fn copy_state(ws: &Workspace, target: &Workspace) -> Result<Migrated, MigrateError> {
    let to = target.store().spec();
    let mut report = Migrated {
        from: ws.store().spec().to_string(),
        to: to.to_string(),
        tasks: 0,
        channels: 0,
        messages: 0,
        archived: 0,
        agents: 0,
        positions: 0,
        locks: 0,
        records: 0,
        journal_entries: 0,
        old_state: String::new(),
    };
    let copy = |rel: PathBuf, bytes: &[u8]| -> Result<(), MigrateError> {
        Spot::new(target.store(), target.dir(), rel).write(bytes, Durability::Fsync)?;
        Ok(())
    };

    let listing = Tasks::new(ws).list()?;
    refuse_broken(listing.skipped)?;
    for task in &listing.tasks {
        let rel = Path::new("tasks").join(format!("{}.json", name::file_name(&task.id)));
        copy(rel, &record::encode(task))?;
    }
    report.tasks = listing.tasks.len();
    Tasks::new(target).rebuild_index()?;

    for channel in channel::channel_names(ws)? {
        let source = Channel::open(ws, channel.clone());
        let batch = source.read_after(0, None)?;
        refuse_broken(batch.skipped)?;
        for message in &batch.messages {
            copy(source.message_rel(message.seq), &record::encode(message))?;
        }
        report.archived += channel::copy_archives(ws, target, &channel)?;
        Channel::open(target, channel).set_last_seq(source.last_seq()?)?;
        report.channels += 1;
        report.messages += batch.messages.len();
    }

    let (agents, broken) = Registry::new(ws).list()?;
    refuse_broken(broken)?;
    for agent in &agents {
        let rel = Path::new("agents").join(format!("{}.json", name::file_name(&agent.id)));
        copy(rel, &record::encode(agent))?;
    }
    report.agents = agents.len();

    for base in ["cursors", "inbox"] {
        for (rel, bytes) in ws.store().all_under(ws.dir(), Path::new(base))? {
            copy(rel, &bytes)?;
            report.positions += 1;
        }
    }
    for base in ["acks", "votes"] {
        for (rel, bytes) in ws.store().all_under(ws.dir(), Path::new(base))? {
            copy(rel, &bytes)?;
            report.records += 1;
        }
    }

    report.locks = copy_locks(ws, target)?;

    let (base, lines) = journal::lines(ws)?;
    journal::adopt(target, base.as_ref(), &lines)?;
    report.journal_entries = lines.len();

    let mut config = ws.config().clone();
    config.store = (!to.is_files()).then(|| to.clone());
    if let Some(floor) = token_floor(ws, target)? {
        config.token_floor = Some(floor);
    }
    atomic::write_replace(
        &target.tmp_dir(),
        &target.dir().join("maos.json"),
        &record::encode(&config),
        Durability::Fsync,
    )?;
    Ok(report)
}

fn refuse_while_running(ws: &Workspace) -> Result<(), MigrateError> {
    let (agents, _) = Registry::new(ws).list()?;
    let running: Vec<String> = agents
        .iter()
        .filter(|a| matches!(a.state(), AgentState::Alive | AgentState::Stale))
        .map(|a| format!("{} ({})", a.id, a.state().as_str()))
        .collect();
    if !running.is_empty() {
        return Err(MigrateError::AgentsAlive { agents: running });
    }
    let locks = Locks::new(ws);
    let bound: Vec<String> = locks
        .live()?
        .into_iter()
        .filter(|l| l.bound_to_process)
        .map(|l| format!("{} (held by {})", l.resource, l.owner))
        .chain(
            Reservations::of(&locks)
                .live()?
                .into_iter()
                .map(|r| format!("reservation {} (of {})", r.resource, r.owner)),
        )
        .collect();
    if !bound.is_empty() {
        return Err(MigrateError::LocksHeld { locks: bound });
    }
    Ok(())
}

fn refuse_unless_empty(target: &Workspace, to: &StoreSpec) -> Result<(), MigrateError> {
    let found = match target.store() {
        // Records, not the kernel-lock files a store on etcd still takes here.
        crate::store::Store::Files => {
            let mut found = None;
            for dir in MOVED {
                let records = target.store().all_under(target.dir(), Path::new(dir))?;
                if let Some((rel, _)) = records
                    .iter()
                    .find(|(rel, _)| rel.extension().is_some_and(|e| e == "json"))
                {
                    found = Some(format!("`.maos/{}`", rel.display()));
                    break;
                }
            }
            if found.is_none() && !journal::segments(&journal::dir(target))?.is_empty() {
                found = Some(
                    "a journal in `.maos/journal/` (kept from before the move to etcd: move it aside, e.g. to `.maos/journal-before`)"
                        .to_owned(),
                );
            }
            found
        }
        #[cfg(feature = "etcd")]
        crate::store::Store::Etcd(etcd) => {
            (!etcd.is_empty()?).then(|| format!("keys under `{}/`", etcd.prefix()))
        }
    };
    match found {
        Some(found) => Err(MigrateError::TargetNotEmpty {
            target: to.clone(),
            found,
        }),
        None => Ok(()),
    }
}

fn refuse_broken(broken: Vec<RecordError>) -> Result<(), MigrateError> {
    let count = broken.len();
    match broken.into_iter().next() {
        Some(first) => Err(MigrateError::Broken {
            count,
            first: Box::new(first),
        }),
        None => Ok(()),
    }
}

/// Copies the live locks (none bound to a process: refused before) to `target`, each with
/// the time it has left; tokens on the target stay above every token handed out so far.
fn copy_locks(ws: &Workspace, target: &Workspace) -> Result<usize, MigrateError> {
    let live = Locks::new(ws).live()?;
    match target.store() {
        crate::store::Store::Files => {
            for lock in &live {
                let rel =
                    Path::new("locks").join(format!("{}.lock", name::file_name(&lock.resource)));
                Spot::new(target.store(), target.dir(), rel)
                    .write(&record::encode(lock), Durability::Fsync)?;
                let fence = target
                    .locks_dir()
                    .join(format!("{}.fence", name::file_name(&lock.resource)));
                target
                    .kernel_lock(&fence)?
                    .write_counter(lock.token, true)?;
            }
        }
        #[cfg(feature = "etcd")]
        crate::store::Store::Etcd(etcd) => {
            let highest = highest_file_token(ws, &live)?;
            etcd.set_fixed_number(crate::lock::TOKEN_BASE, highest)?;
            for lock in &live {
                let left = lock
                    .time_left()
                    .unsigned_abs()
                    .max(std::time::Duration::from_secs(1));
                let rel = format!("locks/{}.lock", name::file_name(&lock.resource));
                let mut record = lock.clone();
                record.token = 0;
                etcd.put(&rel, &record::encode(&record), Some(etcd.grant(left)?))?;
            }
        }
    }
    Ok(live.len())
}

/// Moving from etcd to files: the lowest token the files may hand out now — above every token
/// etcd gave (its revision, plus its base) — with every existing `.fence` raised to it.
#[cfg_attr(not(feature = "etcd"), allow(unused_variables))]
fn token_floor(ws: &Workspace, target: &Workspace) -> Result<Option<u64>, MigrateError> {
    #[cfg(feature = "etcd")]
    if let (crate::store::Store::Etcd(etcd), crate::store::Store::Files) =
        (ws.store(), target.store())
    {
        let floor = etcd.revision()? + etcd.fixed_number(crate::lock::TOKEN_BASE)? + 1;
        for name in fs::list_names(&target.locks_dir())? {
            if name.ends_with(".fence") {
                let fence = target.kernel_lock(&target.locks_dir().join(&name))?;
                let value = fence.read_counter()?.unwrap_or(0);
                fence.write_counter(value.max(floor), true)?;
            }
        }
        return Ok(Some(floor));
    }
    Ok(None)
}

/// The highest fencing token the file store handed out: every resource's `.fence` counter, and
/// the floor `maos.json` sets.
#[cfg(feature = "etcd")]
fn highest_file_token(ws: &Workspace, live: &[crate::lock::LockInfo]) -> Result<u64, MigrateError> {
    let mut highest = live
        .iter()
        .map(|l| l.token)
        .max()
        .unwrap_or(0)
        .max(ws.config().token_floor.unwrap_or(0));
    for name in fs::list_names(&ws.locks_dir())? {
        if name.ends_with(".fence")
            && let Some(value) = fs::read_if_exists(&ws.locks_dir().join(&name))?
                .and_then(|bytes| fs::counter_value(&bytes))
        {
            highest = highest.max(value);
        }
    }
    Ok(highest)
}

/// Puts the old state aside once the new store holds it: `.maos/` folders are moved under
/// `.maos/migrated/<time>/`; an etcd prefix's keys are deleted.
fn put_aside(ws: &Workspace) -> Result<String, MigrateError> {
    match ws.store() {
        crate::store::Store::Files => {
            let aside = ws
                .dir()
                .join("migrated")
                .join(Timestamp::now().strftime("%Y%m%dT%H%M%SZ").to_string());
            fs::create_dir_all(&aside)?;
            for dir in MOVED.iter().chain(&[journal::DIR, "archive"]) {
                let from = ws.dir().join(dir);
                if from.exists() {
                    fs::rename(&from, &aside.join(dir))?;
                }
            }
            let locks_aside = aside.join("locks");
            for name in fs::list_names(&ws.locks_dir())? {
                if name.ends_with(".lock") {
                    fs::create_dir_all(&locks_aside)?;
                    fs::rename(&ws.locks_dir().join(&name), &locks_aside.join(&name))?;
                }
            }
            Ok(aside.display().to_string())
        }
        #[cfg(feature = "etcd")]
        crate::store::Store::Etcd(etcd) => {
            for dir in MOVED.iter().chain(&["locks", journal::DIR, "archive"]) {
                etcd.delete_prefix(&format!("{dir}/"))?;
            }
            Ok(format!("deleted from etcd: {}/", etcd.prefix()))
        }
    }
}
