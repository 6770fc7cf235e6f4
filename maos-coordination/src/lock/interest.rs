//! The line of agents waiting for a lock: `locks/interests/<resource>/<agent>.json`.
//!
//! A free lock goes to the first live interest: highest priority, then earliest arrival, then
//! agent id. Interests of processes that are gone, or whose wait ran out, are dropped (and
//! deleted) when the line is read — on files always under the resource's fence lock. On the
//! etcd store an interest is put under a lease as long as its wait, so the cluster removes it
//! when its waiter is gone.

use std::cmp::Reverse;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{LockError, LockRequest, Locks};
use crate::fs;
use crate::priority::Priority;
use crate::process::ProcessIdentity;
use crate::record;
use crate::store::Spot;

/// An agent's place in line for a lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interest {
    /// The waiting agent.
    pub agent: String,
    /// The resource it waits for.
    pub resource: String,
    /// Its priority.
    pub priority: Priority,
    /// When it started waiting.
    pub since: Timestamp,
    /// When it stops waiting.
    pub until: Timestamp,
    /// `until` on the waiting boot's clock that never jumps (milliseconds since boot).
    #[serde(default)]
    pub until_boot_ms: Option<u64>,
    /// Why it wants the lock.
    pub purpose: String,
    /// The waiting process.
    pub process: ProcessIdentity,
}

impl Interest {
    /// Whether the waiter may still be waiting.
    pub fn is_live(&self) -> bool {
        crate::process::time_until(self.until, self.until_boot_ms, &self.process.boot_id)
            > jiff::SignedDuration::ZERO
            && self.process.may_be_alive()
    }
}

pub(super) fn dir(locks_dir: &Path, resource: &str) -> PathBuf {
    locks_dir.join(rel_dir(resource))
}

/// The line's folder, relative to `locks/`.
fn rel_dir(resource: &str) -> PathBuf {
    Path::new("interests").join(crate::name::file_name(resource))
}

/// `agent`'s interest in `resource`.
fn spot(locks: &Locks, resource: &str, agent: &str) -> Spot {
    Spot::new(locks.ws.store(), locks.ws.dir(), rel(resource, agent))
}

pub(super) fn register(
    locks: &Locks,
    request: &LockRequest,
    me: &ProcessIdentity,
    since: Timestamp,
    until: Timestamp,
) -> Result<(), LockError> {
    let interest = Interest {
        agent: request.owner.clone(),
        resource: request.resource.clone(),
        priority: request.priority,
        since,
        until,
        until_boot_ms: Some(crate::process::boot_ms_at(until)),
        purpose: request.purpose.clone(),
        process: me.clone(),
    };
    let lasting = (until - Timestamp::now())
        .try_into()
        .unwrap_or(Duration::ZERO)
        + Duration::from_secs(5);
    spot(locks, &request.resource, &request.owner)
        .write_for(&record::encode(&interest), lasting)?;
    Ok(())
}

pub(super) fn remove(locks: &Locks, resource: &str, agent: &str) -> Result<(), LockError> {
    spot(locks, resource, agent).remove()?;
    if locks.ws.store().is_files() {
        fs::remove_file_if_exists(&wake_path(&locks.dir, resource, agent))?;
    }
    Ok(())
}

/// The file whose change wakes `agent` waiting for `resource`.
pub(super) fn wake_path(locks_dir: &Path, resource: &str, agent: &str) -> std::path::PathBuf {
    dir(locks_dir, resource).join(format!("{}.wake", crate::name::file_name(agent)))
}

/// Wakes `agent` if it waits for `resource` (rewrites its wake file). Best effort.
pub(super) fn poke(locks_dir: &Path, resource: &str, agent: &str) {
    let path = wake_path(locks_dir, resource, agent);
    if fs::refuse_symlinks(&path).is_ok() {
        #[expect(
            clippy::disallowed_methods,
            reason = "a wake file: its content is nothing, only its change event counts"
        )]
        let _ = std::fs::write(&path, b"");
    }
}

/// The live interests in `resource`, best first. On files call under the resource's fence
/// lock: stale interests are deleted on the way. Broken files are skipped (`maos doctor`
/// reports them).
pub(super) fn line(locks: &Locks, resource: &str) -> Result<Vec<Interest>, LockError> {
    let mut line = Vec::new();
    let rel = Path::new("locks").join(rel_dir(resource));
    for (spot, bytes) in locks.ws.store().records_in(locks.ws.dir(), &rel)? {
        let Ok(interest) = record::decode::<Interest>(&spot.path(), "lock interest", &bytes) else {
            continue;
        };
        if interest.is_live() {
            line.push(interest);
        } else {
            spot.remove()?;
        }
    }
    Ok(ordered(line))
}

/// `interests` best first: highest priority, then earliest arrival, then agent id.
pub(super) fn ordered(mut interests: Vec<Interest>) -> Vec<Interest> {
    interests.sort_by(|a, b| {
        (Reverse(a.priority), a.since, &a.agent).cmp(&(Reverse(b.priority), b.since, &b.agent))
    });
    interests
}

/// `agent`'s interest in `resource`, relative to `.maos/` (in either store).
pub(super) fn rel(resource: &str, agent: &str) -> PathBuf {
    Path::new("locks")
        .join(rel_dir(resource))
        .join(format!("{}.json", crate::name::file_name(agent)))
}

/// The line's folder relative to `.maos/`, as an etcd prefix (`locks/interests/<resource>/`).
#[cfg(feature = "etcd")]
pub(super) fn prefix(resource: &str) -> String {
    format!("locks/{}/", rel_dir(resource).display())
}

pub(super) fn first_in_line(locks: &Locks, resource: &str) -> Result<Option<Interest>, LockError> {
    Ok(line(locks, resource)?.into_iter().next())
}
