//! Checking every file under `.maos/`, and repairing what can be repaired safely.
//!
//! [`check`] reads every record and reports each problem with its path and what is wrong.
//! [`fix`] then acts on each: a broken record is moved to `.maos/quarantine/` (with a `.why`
//! note beside it), never deleted; a stale lock, wait record or interest (expired, or its
//! process provably gone) is removed; a staging file of a dead writer is removed from `tmp/`;
//! a broken channel `.seq` counter is rewritten from the messages, under the channel's send
//! lock (never behind a sender's back); a planted symbolic
//! link is removed (never what it points to); a dead or stale agent is recovered (its tasks
//! back in the queue, its locks released). Nothing is removed that cannot be explained.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::agents::{AgentError, AgentRecord, AgentState, Registry};
use crate::channel::{self, Channel, ChannelName, Cursor};
use crate::deadlock::WaitRecord;
use crate::fs::{self, FsError};
use crate::lock::{Interest, LockError, LockState, Locks, Reservations};
use crate::quarantine;
use crate::record::{self, RecordError};
use crate::recovery::{self, RecoveryOptions};
use crate::task::{TaskError, Tasks};
use crate::workspace::Workspace;

mod names;
mod tasks;

/// What [`fix`] will do about a problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Remedy {
    /// Move the file to `.maos/quarantine/` with a note.
    Quarantine,
    /// Delete the file: it is stale and can be explained (expired, dead process).
    Remove,
    /// Remove a stale or broken lock under its fence lock.
    ClearLock,
    /// Remove a stale or broken reservation under the `.paths` lock.
    ClearReservation,
    /// Recover from a dead or stale agent: its tasks back in the queue, its locks released.
    Recover,
    /// Rewrite a channel's `.seq` counter from its messages, under the send lock.
    RebuildCounter,
    /// Return a task held by an agent that is gone to the queue.
    ReturnTask,
    /// Rename a file named before names were escaped (`Alice.json` → `%alice.json`).
    Rename,
    /// Rebuild the task index from the records.
    RebuildIndex,
    /// Make a folder every workspace has.
    CreateFolder,
    /// Nothing automatic: the problem says what to do.
    Manual,
}

/// One problem found.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// The file.
    pub path: PathBuf,
    /// What is wrong (for a broken record: line, column and the decoder's complaint).
    pub problem: String,
    /// What `fix` does about it.
    pub remedy: Remedy,
    #[serde(skip)]
    resource: Option<String>,
}

/// A doctor operation failed (not: found a problem).
#[derive(Debug, thiserror::Error)]
pub enum DoctorError {
    /// A file could not be read, moved or removed.
    #[error(transparent)]
    Io(#[from] FsError),
    /// A lock operation failed.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// Reading a channel failed.
    #[error(transparent)]
    Channel(#[from] channel::ChannelError),
    /// Reading the tasks failed.
    #[error(transparent)]
    Task(#[from] TaskError),
    /// Reading or recovering agents failed.
    #[error(transparent)]
    Agent(#[from] AgentError),
    /// Reading the votes failed.
    #[error(transparent)]
    Vote(#[from] crate::vote::VoteError),
    /// The store (the journal, a key in etcd) failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl DoctorError {
    /// The kind of this error.
    pub fn kind(&self) -> crate::ErrorKind {
        match self {
            DoctorError::Io(e) => e.kind(),
            DoctorError::Lock(e) => e.kind(),
            DoctorError::Channel(e) => e.kind(),
            DoctorError::Task(e) => e.kind(),
            DoctorError::Agent(e) => e.kind(),
            DoctorError::Vote(e) => e.kind(),
            DoctorError::Store(e) => e.kind(),
        }
    }
}

fn broken(e: RecordError) -> Problem {
    match e {
        RecordError::Corrupt { path, detail, .. } => Problem {
            path,
            problem: detail,
            remedy: Remedy::Quarantine,
            resource: None,
        },
        RecordError::Io(e) => Problem {
            path: e.path.clone(),
            problem: format!("cannot be read: {}", e.source),
            remedy: Remedy::Quarantine,
            resource: None,
        },
    }
}

/// Every problem under `.maos/`.
pub fn check(ws: &Workspace) -> Result<Vec<Problem>, DoctorError> {
    let mut problems = Vec::new();
    for sub in crate::workspace::SUBDIRS {
        let path = ws.dir().join(sub);
        if !path.is_dir() {
            problems.push(Problem {
                path,
                problem: "a folder every workspace has is missing".into(),
                remedy: Remedy::CreateFolder,
                resource: None,
            });
        }
    }
    names::check(ws, &mut problems)?;
    check_channels(ws, &mut problems)?;
    check_records::<Cursor>(&ws.cursors_dir(), "cursor", &mut problems, |_| None)?;
    check_records::<Cursor>(
        &ws.dir().join("inbox"),
        "inbox position",
        &mut problems,
        |_| None,
    )?;
    // Which agent an editor session is: any JSON object will do (a broken one is decided
    // afresh by the session's next hook, once quarantined).
    check_records::<serde_json::Map<String, serde_json::Value>>(
        &ws.dir().join("sessions"),
        "session",
        &mut problems,
        |_| None,
    )?;
    problems.extend(channel::broken_files(ws)?.into_iter().map(broken));
    problems.extend(
        crate::vote::Votes::new(ws)
            .broken_files()?
            .into_iter()
            .map(broken),
    );
    check_locks(ws, &mut problems)?;
    check_reservations(ws, &mut problems)?;
    if let Some(bad) = crate::journal::verify(ws)?.problem {
        problems.push(Problem {
            problem: format!(
                "line {}: {} (the journal is the record of what happened: nothing repairs it; the entries before this one are intact)",
                bad.line, bad.what
            ),
            path: bad.path,
            remedy: Remedy::Manual,
            resource: None,
        });
    }
    let tasks = Tasks::new(ws);
    if let Some(disagreements) = tasks.verify_index()?
        && !disagreements.is_empty()
    {
        let shown: Vec<&str> = disagreements.iter().take(5).map(String::as_str).collect();
        let more = disagreements.len().saturating_sub(shown.len());
        problems.push(Problem {
            path: tasks.dir().join(".index"),
            problem: format!(
                "the task index disagrees with the records ({} task(s); the next command repairs what it uses): {}{}",
                disagreements.len(),
                shown.join("; "),
                if more > 0 { format!("; … {more} more") } else { String::new() }
            ),
            remedy: Remedy::RebuildIndex,
            resource: None,
        });
    }
    let listing = tasks.list()?;
    problems.extend(tasks::check(&listing, |id| tasks.path(id)));
    problems.extend(listing.skipped.into_iter().map(broken));
    check_records::<AgentRecord>(
        &ws.dir().join("agents"),
        "agent record",
        &mut problems,
        |_| None,
    )?;
    let registry = Registry::new(ws);
    for agent in registry.list()?.0 {
        let state = agent.state();
        if matches!(state, AgentState::Dead | AgentState::Stale) {
            let process = if agent.process.is_unknown() {
                "an editor session, no process of its own".to_owned()
            } else {
                format!("pid {} on {}", agent.process.pid, agent.process.host)
            };
            problems.push(Problem {
                path: registry.path(&agent.id),
                problem: format!(
                    "agent `{}` is {} ({process}, last heartbeat {}s ago)",
                    agent.id,
                    state.as_str(),
                    agent.heartbeat_age().as_secs()
                ),
                remedy: Remedy::Recover,
                resource: None,
            });
        }
    }
    for held in crate::recovery::held_tasks(ws)? {
        let whose = match held.holder_state {
            s if s == AgentState::Gone.as_str() => "which is gone (it left or was retired)",
            crate::recovery::UNKNOWN => "which is not a registered agent (a claim made by hand?)",
            _ => continue,
        };
        {
            problems.push(Problem {
                path: Tasks::new(ws).path(&held.task),
                problem: format!(
                    "task `{}` is in progress for `{}`, {whose}: nobody may be working on it; `--fix` returns it to the queue",
                    held.task, held.holder
                ),
                remedy: Remedy::ReturnTask,
                resource: None,
            });
        }
    }
    check_records::<WaitRecord>(
        &ws.locks_dir().join("waits"),
        "wait record",
        &mut problems,
        |w| (!w.is_live()).then(|| "the wait is over (expired, or its process is gone)".to_owned()),
    )?;
    check_records::<Interest>(
        &ws.locks_dir().join("interests"),
        "lock interest",
        &mut problems,
        |i| {
            (!i.is_live())
                .then(|| "the waiter is gone (expired, or its process is gone)".to_owned())
        },
    )?;
    let interests = ws.locks_dir().join("interests");
    for line in fs::list_names(&interests)? {
        let dir = interests.join(line);
        for name in fs::list_names(&dir)? {
            let Some(agent) = name.strip_suffix(".wake") else {
                continue;
            };
            // Gone with its waiter: no place in line, or a stale one (named above, removed
            // with it by `--fix`). A broken one is named above; its wake file waits for it.
            let in_line =
                match record::read::<Interest>(&dir.join(format!("{agent}.json")), "lock interest")
                {
                    Ok(interest) => interest.is_live(),
                    Err(RecordError::Io(e)) if e.is_not_found() => false,
                    Err(_) => true,
                };
            if !in_line {
                problems.push(Problem {
                    path: dir.join(&name),
                    problem: "the wake file of a waiter that is no longer in line".into(),
                    remedy: Remedy::Remove,
                    resource: None,
                });
            }
        }
    }
    find_symlinks(ws.dir(), &mut problems);
    for name in fs::list_names(&ws.tmp_dir())? {
        // Gone only when provably so: where the platform cannot tell (no /proc, another
        // user's process on macOS), the staging file of a live writer is left alone.
        let writer_gone = name
            .split('.')
            .next()
            .and_then(|pid| pid.parse::<u32>().ok())
            .is_none_or(|pid| {
                matches!(
                    crate::process::facts().start_time(pid),
                    crate::process::Fact::Absent
                )
            });
        if writer_gone {
            problems.push(Problem {
                path: ws.tmp_dir().join(name),
                problem: "a staging file whose writer is gone (an interrupted write)".into(),
                remedy: Remedy::Remove,
                resource: None,
            });
        }
    }
    Ok(problems)
}

/// Symbolic links planted inside `.maos/`: MAOS never creates them and refuses to write
/// through them; removing the link (not its target) is safe.
fn find_symlinks(dir: &Path, problems: &mut Vec<Problem>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => problems.push(Problem {
                problem: format!(
                    "a symbolic link (to {}) inside .maos/: writes through it are refused",
                    std::fs::read_link(&path)
                        .map_or_else(|_| "?".into(), |t| t.display().to_string())
                ),
                path,
                remedy: Remedy::Remove,
                resource: None,
            }),
            Ok(meta) if meta.is_dir() => find_symlinks(&path, problems),
            _ => {}
        }
    }
}

fn check_channels(ws: &Workspace, problems: &mut Vec<Problem>) -> Result<(), DoctorError> {
    for summary in channel::list_channels(ws)? {
        let Ok(name) = ChannelName::new(&summary.name) else {
            continue;
        };
        let ch = Channel::open(ws, name);
        // A damaged `.pruned` stops every reader of the channel: report it alone.
        if let Err(channel::ChannelError::Record(e)) = ch.pruned() {
            problems.push(broken(e));
            continue;
        }
        problems.extend(ch.read_after(0, None)?.skipped.into_iter().map(broken));
        let seq_path = ch.dir().join(".seq");
        let planted_link =
            std::fs::symlink_metadata(&seq_path).is_ok_and(|m| m.file_type().is_symlink());
        if planted_link {
            continue; // reported, and removed, as a planted link
        }
        if let Some(bytes) = fs::read_if_exists(&seq_path)? {
            let text = String::from_utf8_lossy(&bytes);
            if !text.is_empty() && fs::counter_value(&bytes).is_none() {
                problems.push(Problem {
                    path: seq_path,
                    problem: format!("not a sequence number: {:?}", text.trim()),
                    remedy: Remedy::RebuildCounter,
                    resource: Some(summary.name.clone()),
                });
            }
        }
    }
    Ok(())
}

fn check_reservations(ws: &Workspace, problems: &mut Vec<Problem>) -> Result<(), DoctorError> {
    if let Some(index) = Reservations::new(ws).stale_index()? {
        problems.push(Problem {
            path: index,
            problem: "the reservation index disagrees with the reservation files (one was \
                      edited in place)"
                .to_owned(),
            remedy: Remedy::Remove,
            resource: None,
        });
    }
    for listed in Reservations::new(ws).list()? {
        let problem = match listed.info {
            Ok(info) => match info.state() {
                LockState::Live => continue,
                LockState::Expired => format!(
                    "expired reservation `{}` of `{}`",
                    info.resource, info.owner
                ),
                LockState::Dead => format!(
                    "reservation `{}` of `{}`, whose process {} is gone",
                    info.resource, info.owner, info.pid
                ),
            },
            Err(e) => broken(e).problem,
        };
        problems.push(Problem {
            path: listed.path,
            problem,
            remedy: Remedy::ClearReservation,
            resource: None,
        });
    }
    Ok(())
}

fn check_locks(ws: &Workspace, problems: &mut Vec<Problem>) -> Result<(), DoctorError> {
    for listed in Locks::new(ws).list()? {
        let resource = crate::name::of_path(&listed.path);
        let problem = match listed.info {
            Ok(info) => match info.state() {
                LockState::Live => continue,
                LockState::Expired => format!("expired lock held by `{}`", info.owner),
                LockState::Dead => format!(
                    "lock held by `{}`, whose process {} is gone",
                    info.owner, info.pid
                ),
            },
            Err(e) => broken(e).problem,
        };
        problems.push(Problem {
            path: listed.path,
            problem,
            remedy: Remedy::ClearLock,
            resource,
        });
    }
    Ok(())
}

/// Checks every `*.json` record under `dir` (recursively); `stale` says why a valid record
/// should go.
fn check_records<T: serde::de::DeserializeOwned>(
    dir: &Path,
    what: &'static str,
    problems: &mut Vec<Problem>,
    stale: impl Fn(&T) -> Option<String> + Copy,
) -> Result<(), DoctorError> {
    for name in fs::list_names(dir)? {
        let path = dir.join(&name);
        if path.is_dir() {
            check_records(&path, what, problems, stale)?;
        } else if name.ends_with(".json") {
            match record::read::<T>(&path, what) {
                Ok(value) => {
                    if let Some(problem) = stale(&value) {
                        problems.push(Problem {
                            path,
                            problem,
                            remedy: Remedy::Remove,
                            resource: None,
                        });
                    }
                }
                Err(e) => problems.push(broken(e)),
            }
        }
    }
    Ok(())
}

/// What [`fix`] did about one problem.
#[derive(Debug, Clone, Serialize)]
pub struct Repair {
    /// The file.
    pub path: PathBuf,
    /// "quarantined to …", "removed", or why nothing was done.
    pub action: String,
}

/// Repairs the problems [`check`] found.
pub fn fix(ws: &Workspace, problems: &[Problem]) -> Result<Vec<Repair>, DoctorError> {
    // Judged before anything changes: removing a link first would hide what lay behind it.
    let behind_links: Vec<bool> = problems
        .iter()
        .map(|p| {
            let is_link =
                std::fs::symlink_metadata(&p.path).is_ok_and(|m| m.file_type().is_symlink());
            !is_link && fs::refuse_symlinks(&p.path).is_err()
        })
        .collect();
    let mut repairs = Vec::new();
    // Changes whose processes died before journaling them.
    let late = crate::journal::settle_all(ws)?;
    if late > 0 {
        repairs.push(Repair {
            path: crate::journal::dir(ws),
            action: format!("journaled {late} change(s) their processes died before journaling"),
        });
    }
    let task_store = Tasks::new(ws);
    // Read once, when a task is quarantined: who depends on it.
    let mut task_listing = None;
    for (problem, behind_link) in problems.iter().zip(behind_links) {
        let move_away = |path: &Path| {
            quarantine::move_to_quarantine(ws, path, &problem.problem, "`maos doctor --fix`")
                .map(drop)
        };
        let action = match problem.remedy {
            // Never move or delete anything reached through a planted link: it may be
            // outside the workspace. Removing the link itself is enough.
            _ if behind_link => "left alone: it is reached through a symbolic link".to_owned(),
            Remedy::Quarantine => {
                move_away(&problem.path)?;
                // A task moved away leaves its dependents waiting for nothing: say so.
                let id = crate::name::of_path(&problem.path);
                let dependents = match &id {
                    Some(id) if problem.path.parent() == Some(task_store.dir()) => {
                        let listing = match &mut task_listing {
                            Some(listing) => listing,
                            slot => slot.insert(task_store.list()?),
                        };
                        tasks::waiting_on(listing, id)
                            .into_iter()
                            .map(str::to_owned)
                            .collect()
                    }
                    _ => Vec::new(),
                };
                if dependents.is_empty() {
                    "quarantined".to_owned()
                } else {
                    format!(
                        "quarantined; {} depend(s) on it and can never become ready until the dependency is removed (`maos task update ID --remove-dep {}`) or the record is restored",
                        dependents.join(", "),
                        id.unwrap_or_default()
                    )
                }
            }
            Remedy::Manual => "left for you: see the problem".to_owned(),
            Remedy::Rename => names::rename(&problem.path)?,
            Remedy::Remove => {
                fs::remove_file_if_exists(&problem.path)?;
                "removed".to_owned()
            }
            Remedy::CreateFolder => {
                fs::create_dir_all(&problem.path)?;
                "created".to_owned()
            }
            Remedy::Recover => {
                let recovered = recovery::recover(ws, RecoveryOptions::default())?;
                let agent = crate::name::of_path(&problem.path);
                match recovered
                    .iter()
                    .find(|r| agent.as_deref() == Some(r.agent.as_str()))
                {
                    Some(r) => format!(
                        "recovered: {} task(s) returned, {} failed, {} lock(s) released",
                        r.returned.len(),
                        r.failed.len(),
                        r.locks.len()
                    ),
                    None => "recovered (by an earlier step or another process)".to_owned(),
                }
            }
            Remedy::ReturnTask => {
                let returned =
                    crate::recovery::return_orphaned(ws, crate::recovery::Unregistered::Return)?;
                let task = crate::name::of_path(&problem.path);
                if returned
                    .iter()
                    .any(|id| task.as_deref() == Some(id.as_str()))
                {
                    "returned to the queue".to_owned()
                } else {
                    "returned (by an earlier step or another process)".to_owned()
                }
            }
            Remedy::RebuildCounter => {
                let name = problem.resource.as_deref().unwrap_or_default();
                let seq = Channel::open(
                    ws,
                    ChannelName::new(name).map_err(channel::ChannelError::from)?,
                )
                .rebuild_seq()?;
                format!("rebuilt from the messages: last seq {seq}")
            }
            Remedy::RebuildIndex => {
                Tasks::new(ws).rebuild_index()?;
                "rebuilt from the records".to_owned()
            }
            Remedy::ClearReservation => {
                match Reservations::new(ws).clear_if_stale_or_broken(&problem.path, move_away)? {
                    Some(done) => done.to_owned(),
                    None => "left alone: the reservation is live again".to_owned(),
                }
            }
            Remedy::ClearLock => match &problem.resource {
                Some(resource) => {
                    match Locks::new(ws).clear_if_stale_or_broken(resource, move_away)? {
                        Some(done) => done.to_owned(),
                        None => "left alone: the lock is live again".to_owned(),
                    }
                }
                None => {
                    move_away(&problem.path)?;
                    "quarantined".to_owned()
                }
            },
        };
        crate::journal::record(
            ws,
            crate::journal::Event::new("doctor.repaired")
                .subject(
                    problem
                        .path
                        .strip_prefix(ws.dir())
                        .unwrap_or(&problem.path)
                        .display()
                        .to_string(),
                )
                .data(serde_json::json!({ "action": action })),
        );
        repairs.push(Repair {
            path: problem.path.clone(),
            action,
        });
    }
    Ok(repairs)
}
