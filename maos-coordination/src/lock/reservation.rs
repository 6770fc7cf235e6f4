//! Reservations: leases on glob patterns of repository paths, the same model as locks.
//!
//! A reservation is a [`LockInfo`] whose `kind` is `reservation` and whose `resource` is a
//! normalized [`Pattern`], kept in `locks/reservations/<token>.json`. It has an owner, a
//! reason (`purpose`), an expiry, a fencing token and the holder's process, and it is live,
//! expired or dead by exactly the rules of a lock (L6's lease rule included). Exclusive by
//! default; shared reservations coexist with each other.
//!
//! **Conflicts, in both directions.** Another owner's lock on a path and a reservation whose
//! pattern covers it conflict; two reservations of different owners whose patterns may
//! overlap conflict unless both are shared. Resources starting with `@` (the merge lock) are
//! not paths and never conflict with a pattern.
//!
//! **Serialization.** One kernel lock, `locks/.paths`, orders the two: a reservation (or a
//! change to one) holds it exclusively while it reads every lock and reservation and writes
//! its own; a lock acquisition holds it shared (before its `.fence`) while it reads the
//! reservations and creates its lock file. So neither can slip in between the other's check
//! and write. The file also keeps the reservation token counter.
//!
//! **Waiting.** [`Reservations::reserve`] with a wait records a wait-for record (for deadlock
//! detection, like a lock waiter) and retries when the lock or reservation folders change or
//! a recheck timer fires. Reservations have no place in a lock's waiting line: a waiter for
//! a lock keeps its place among lock waiters and is told which reservation blocks it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde_json::Map;
use uuid::Uuid;

use super::pattern::{Overlap, Pattern, PatternError};
use super::{ListedLock, LockError, LockInfo, LockKind, LockState, Locks, signed};
use crate::atomic::{self, Durability};
use crate::deadlock::{self, WaitKind};
use crate::fs;
use crate::name::{self, NameKind};
use crate::process::ProcessIdentity;
use crate::record::{self, RecordError};
use crate::wake::{DirWatch, Woken};
use crate::workspace::Workspace;

/// How long a reservation lives when the request does not say.
pub const DEFAULT_RESERVATION_TTL: Duration = Duration::from_secs(30 * 60);

/// What an agent asks to reserve.
#[derive(Debug, Clone)]
pub struct ReservationRequest {
    patterns: Vec<Pattern>,
    owner: String,
    shared: bool,
    ttl: Duration,
    reason: String,
    bound_to_process: bool,
}

impl ReservationRequest {
    /// A request by `owner` for every one of `patterns` (all or none), exclusive, for
    /// [`DEFAULT_RESERVATION_TTL`], belonging to the agent (not bound to this process).
    pub fn new<S: AsRef<str>>(patterns: &[S], owner: &str) -> Result<Self, LockError> {
        name::validate(NameKind::Agent, owner)?;
        if patterns.is_empty() {
            return Err(LockError::Pattern(PatternError {
                pattern: String::new(),
                reason: "no pattern given".into(),
            }));
        }
        let patterns = patterns
            .iter()
            .map(|p| Pattern::new(p.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            patterns,
            owner: owner.to_owned(),
            shared: false,
            ttl: DEFAULT_RESERVATION_TTL,
            reason: String::new(),
            bound_to_process: false,
        })
    }

    /// Shared: coexists with other shared reservations (never with exclusive ones or locks).
    pub fn shared(mut self, shared: bool) -> Self {
        self.shared = shared;
        self
    }

    /// How long the reservations live unless renewed.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Why (shown to other agents).
    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = reason.into();
        self
    }

    /// Whether the reservations die with this process (default: no, they belong to the agent
    /// until released or expired).
    pub fn bound_to_process(mut self, bound: bool) -> Self {
        self.bound_to_process = bound;
        self
    }
}

/// Something that stands in the way of a lock or reservation.
#[derive(Debug, Clone)]
pub struct Blocker {
    /// The lock or reservation of another agent.
    pub holder: LockInfo,
    /// Whether the overlap is certain or could not be ruled out.
    pub overlap: Overlap,
}

/// The reservations of a workspace.
#[derive(Debug, Clone)]
pub struct Reservations {
    locks: Locks,
    dir: PathBuf,
}

impl Reservations {
    /// The reservations of `ws`.
    pub fn new(ws: &Workspace) -> Self {
        Self::of(&Locks::new(ws))
    }

    /// The reservations beside a lock handle (sharing its durability and waits).
    pub fn of(locks: &Locks) -> Self {
        Self {
            dir: locks.dir.join("reservations"),
            locks: locks.clone(),
        }
    }

    /// Reserves every pattern of the request, or none: fails with [`LockError::Conflict`]
    /// naming what stands in the way. A pattern this owner already holds live in the same
    /// mode is renewed (same token); in the other mode it is replaced.
    pub fn try_reserve(&self, request: &ReservationRequest) -> Result<Vec<LockInfo>, LockError> {
        let paths = self.locks.paths_lock(false)?;
        let (mine, others) = self.read_live(&request.owner)?;
        let mut blockers = Vec::new();
        for pattern in &request.patterns {
            blockers.extend(self.blockers_of_pattern(
                pattern,
                &request.owner,
                request.shared,
                &others,
            )?);
        }
        if let Some(first) = blockers.into_iter().max_by_key(|b| b.overlap) {
            return Err(LockError::Conflict {
                wanted: request.patterns[0].to_string(),
                holder: Box::new(first.holder),
                unsure: first.overlap == Overlap::Unsure,
            });
        }
        let mut granted = Vec::new();
        for pattern in &request.patterns {
            let existing = mine
                .iter()
                .find(|r| r.resource == pattern.as_str() && r.shared == request.shared);
            let info = match existing {
                Some(current) => {
                    let mut renewed = current.clone();
                    renewed.expire_in(request.ttl);
                    renewed.purpose.clone_from(&request.reason);
                    self.write(&renewed, true)?;
                    renewed
                }
                None => {
                    for old in mine.iter().filter(|r| r.resource == pattern.as_str()) {
                        fs::remove_file_if_exists(&self.path(old.token))?;
                    }
                    let token =
                        paths.next_counter(|| Ok(0), self.locks.durability == Durability::Fsync)?;
                    let info = self.new_record(request, pattern, token);
                    self.write(&info, false)?;
                    info
                }
            };
            granted.push(info);
        }
        drop(paths);
        Ok(granted)
    }

    /// Reserves, waiting up to `wait` for what stands in the way to go (woken when locks or
    /// reservations change, and on the recheck timer), detecting deadlocks as a lock waiter
    /// does.
    pub fn reserve(
        &self,
        request: &ReservationRequest,
        wait: Duration,
    ) -> Result<Vec<LockInfo>, LockError> {
        let started = Instant::now();
        let deadline = started + wait;
        let first = match self.try_reserve(request) {
            Err(LockError::Conflict { holder, .. }) if !wait.is_zero() => holder,
            other => return other,
        };
        let mut last_holder = Some(first);
        let me = ProcessIdentity::current();
        let wanted = request.patterns[0].to_string();
        let kind = if request.shared {
            WaitKind::Shared
        } else {
            WaitKind::Exclusive
        };
        let ws = &self.locks.ws;
        let until = Timestamp::now() + signed(wait);
        deadlock::record_wait(
            ws,
            &request.owner,
            &wanted,
            kind,
            &me,
            Timestamp::now(),
            until,
        )?;
        let _clear = ClearWait {
            ws,
            agent: &request.owner,
        };
        let mut watch = DirWatch::start(&self.locks.dir, |_| false);
        if let Some(w) = watch.as_mut() {
            let _ = fs::create_dir_all(&self.dir);
            w.add(&self.dir);
        }
        let mut next_deadlock_check = Instant::now() + self.locks.recheck;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(LockError::Timeout {
                    resource: wanted,
                    waited: started.elapsed(),
                    holder: last_holder,
                });
            }
            let nap = self.locks.recheck.min(left);
            match watch.as_ref().map(|w| w.wait(nap)) {
                Some(Woken::Event | Woken::Timeout) => {}
                Some(Woken::Closed) | None => {
                    std::thread::sleep(nap.min(Duration::from_millis(20)))
                }
            }
            match self.try_reserve(request) {
                Err(LockError::Conflict { holder, .. }) => last_holder = Some(holder),
                other => return other,
            }
            if Instant::now() >= next_deadlock_check {
                next_deadlock_check = Instant::now() + self.locks.recheck;
                if let Some(cycle) = deadlock::victim_cycle(ws, &request.owner)? {
                    let _ = deadlock::announce(ws, &cycle);
                    return Err(LockError::Deadlock {
                        resource: wanted,
                        cycle: Box::new(cycle),
                    });
                }
            }
        }
    }

    /// Releases `owner`'s reservations of `patterns` (as given or normalized); fails with
    /// [`LockError::NotHeld`] naming the first pattern it holds no reservation of, releasing
    /// nothing.
    pub fn release<S: AsRef<str>>(
        &self,
        patterns: &[S],
        owner: &str,
    ) -> Result<Vec<LockInfo>, LockError> {
        let wanted = patterns
            .iter()
            .map(|p| Pattern::new(p.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        let paths = self.locks.paths_lock(false)?;
        let (mine, _) = self.read_all_of(owner)?;
        let mut released = Vec::new();
        for pattern in &wanted {
            let matching: Vec<&LockInfo> = mine
                .iter()
                .filter(|r| r.resource == pattern.as_str())
                .collect();
            if matching.is_empty() {
                return Err(LockError::NotHeld {
                    resource: pattern.to_string(),
                });
            }
            released.extend(matching.into_iter().cloned());
        }
        for info in &released {
            fs::remove_file_if_exists(&self.path(info.token))?;
        }
        drop(paths);
        self.wake_lock_waiters(&released);
        Ok(released)
    }

    /// Releases every reservation of `owner`, whatever its state (an agent leaving).
    pub fn release_all_of(&self, owner: &str) -> Result<Vec<LockInfo>, LockError> {
        self.release_where(owner, |_| true)
    }

    /// Releases the reservations of `owner` that are provably free (expired, or bound to a
    /// process provably gone), judged under the `.paths` lock (L6).
    pub fn release_stale_of(&self, owner: &str) -> Result<Vec<LockInfo>, LockError> {
        self.release_where(owner, |r| r.state() != LockState::Live)
    }

    /// Releases `owner`'s reservations that `which` selects, under the `.paths` lock.
    pub fn release_where(
        &self,
        owner: &str,
        which: impl Fn(&LockInfo) -> bool,
    ) -> Result<Vec<LockInfo>, LockError> {
        let paths = self.locks.paths_lock(false)?;
        let (mine, _) = self.read_all_of(owner)?;
        let released: Vec<LockInfo> = mine.into_iter().filter(|r| which(r)).collect();
        for info in &released {
            fs::remove_file_if_exists(&self.path(info.token))?;
        }
        drop(paths);
        self.wake_lock_waiters(&released);
        Ok(released)
    }

    /// Removes the reservation file at `path` if it is stale or broken (judged again under
    /// the `.paths` lock); a broken one goes through `quarantine`. What `maos doctor --fix`
    /// does. Returns what was done, `None` when it is live (or gone).
    pub fn clear_if_stale_or_broken(
        &self,
        path: &std::path::Path,
        quarantine: impl FnOnce(&std::path::Path) -> Result<(), fs::FsError>,
    ) -> Result<Option<&'static str>, LockError> {
        let _paths = self.locks.paths_lock(false)?;
        match record::read::<LockInfo>(path, "reservation") {
            Ok(info) if info.state() != LockState::Live => {
                fs::remove_file_if_exists(path)?;
                Ok(Some("removed"))
            }
            Ok(_) => Ok(None),
            Err(RecordError::Io(e)) if e.is_not_found() => Ok(None),
            Err(RecordError::Corrupt { .. }) => {
                quarantine(path)?;
                Ok(Some("quarantined"))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Every reservation file, sorted by token.
    pub fn list(&self) -> Result<Vec<ListedLock>, LockError> {
        let mut tokens: Vec<(u64, String)> = fs::list_names(&self.dir)?
            .into_iter()
            .filter_map(|n| Some((n.strip_suffix(".json")?.parse().ok()?, n)))
            .collect();
        tokens.sort();
        Ok(tokens
            .into_iter()
            .map(|(_, name)| {
                let path = self.dir.join(name);
                ListedLock {
                    info: record::read(&path, "reservation"),
                    path,
                }
            })
            .collect())
    }

    /// The live reservations (of anyone), sorted by token.
    pub fn live(&self) -> Result<Vec<LockInfo>, LockError> {
        Ok(self
            .list()?
            .into_iter()
            .filter_map(|l| l.info.ok())
            .filter(|r| r.state() == LockState::Live)
            .collect())
    }

    /// What stands in the way of `owner` locking or editing `path`: another agent's live
    /// lock on it, or live reservation covering it (shared ones too, for a lock; only
    /// exclusive ones when `shared`, as for a commit of a file others only share).
    pub fn blockers_of_path(
        &self,
        path: &str,
        owner: &str,
        shared: bool,
    ) -> Result<Vec<Blocker>, LockError> {
        let mut blockers = self.reservations_covering(path, owner, shared)?;
        if let Ok(Some(lock)) = self.locks.read_lock(path)
            && lock.owner != owner
            && lock.state() == LockState::Live
        {
            blockers.push(Blocker {
                holder: lock,
                overlap: Overlap::Yes,
            });
        }
        Ok(blockers)
    }

    /// Live reservations of agents other than `owner` that cover `path` (exclusive ones only
    /// when `shared`).
    pub(crate) fn reservations_covering(
        &self,
        path: &str,
        owner: &str,
        shared: bool,
    ) -> Result<Vec<Blocker>, LockError> {
        if path.starts_with('@') {
            return Ok(Vec::new());
        }
        let mut blockers = Vec::new();
        for r in self.live()? {
            if r.owner == owner || (shared && r.shared) {
                continue;
            }
            if Pattern::new(&r.resource).is_ok_and(|p| p.matches(path)) {
                blockers.push(Blocker {
                    holder: r,
                    overlap: Overlap::Yes,
                });
            }
        }
        Ok(blockers)
    }

    /// What stands in the way of `owner` reserving `pattern` (as a waiter records it).
    pub(crate) fn blockers_of_reservation(
        &self,
        pattern: &str,
        owner: &str,
        shared: bool,
    ) -> Result<Vec<Blocker>, LockError> {
        let pattern = Pattern::new(pattern)?;
        let (_, others) = self.read_live(owner)?;
        self.blockers_of_pattern(&pattern, owner, shared, &others)
    }

    /// What stands in the way of reserving `pattern`: `others`' live reservations that may
    /// overlap it (unless both are shared), and other agents' live locks it covers.
    fn blockers_of_pattern(
        &self,
        pattern: &Pattern,
        owner: &str,
        shared: bool,
        others: &[LockInfo],
    ) -> Result<Vec<Blocker>, LockError> {
        let mut blockers = Vec::new();
        for r in others {
            if shared && r.shared {
                continue;
            }
            let Ok(theirs) = Pattern::new(&r.resource) else {
                continue;
            };
            let overlap = pattern.overlap(&theirs);
            if overlap != Overlap::No {
                blockers.push(Blocker {
                    holder: r.clone(),
                    overlap,
                });
            }
        }
        for listed in self.locks.list()? {
            let Ok(lock) = listed.info else { continue };
            if lock.owner != owner
                && lock.state() == LockState::Live
                && !lock.resource.starts_with('@')
                && pattern.matches(&lock.resource)
            {
                blockers.push(Blocker {
                    holder: lock,
                    overlap: Overlap::Yes,
                });
            }
        }
        Ok(blockers)
    }

    fn new_record(&self, request: &ReservationRequest, pattern: &Pattern, token: u64) -> LockInfo {
        let me = ProcessIdentity::current();
        let now = Timestamp::now();
        let mut info = LockInfo {
            resource: pattern.to_string(),
            kind: LockKind::Reservation,
            shared: request.shared,
            owner: request.owner.clone(),
            token,
            nonce: Uuid::new_v4(),
            purpose: request.reason.clone(),
            acquired_at: now,
            expires_at: now,
            host: me.host,
            pid: me.pid,
            bound_to_process: request.bound_to_process,
            boot_id: me.boot_id,
            process_start_time: me.start_time,
            pid_ns: me.pid_ns,
            expires_boot_ms: None,
            metadata: Map::new(),
        };
        info.expire_in(request.ttl);
        info
    }

    /// `owner`'s live reservations, and everyone else's.
    fn read_live(&self, owner: &str) -> Result<(Vec<LockInfo>, Vec<LockInfo>), LockError> {
        Ok(self.live()?.into_iter().partition(|r| r.owner == owner))
    }

    /// `owner`'s reservations whatever their state, and everyone else's.
    fn read_all_of(&self, owner: &str) -> Result<(Vec<LockInfo>, Vec<LockInfo>), LockError> {
        Ok(self
            .list()?
            .into_iter()
            .filter_map(|l| l.info.ok())
            .partition(|r| r.owner == owner))
    }

    fn path(&self, token: u64) -> PathBuf {
        self.dir.join(format!("{token}.json"))
    }

    fn write(&self, info: &LockInfo, replace: bool) -> Result<(), LockError> {
        fs::create_dir_all(&self.dir)?;
        let ws = &self.locks.ws;
        let staged = atomic::stage(&ws.tmp_dir(), &record::encode(info), self.locks.durability)?;
        let path = self.path(info.token);
        if replace {
            staged.replace(&path)?;
        } else {
            staged.publish_new(&path)?;
        }
        Ok(())
    }

    /// Wakes the first waiter of every lock whose resource a released reservation covered.
    fn wake_lock_waiters(&self, released: &[LockInfo]) {
        let Ok(lines) = fs::list_names(&self.locks.dir.join("interests")) else {
            return;
        };
        let patterns: Vec<Pattern> = released
            .iter()
            .filter_map(|r| Pattern::new(&r.resource).ok())
            .collect();
        for resource in lines.iter().filter_map(|l| name::from_file_name(l)) {
            if patterns.iter().any(|p| p.matches(&resource)) {
                self.locks.poke_next(&resource);
            }
        }
    }
}

/// Removes the wait record when a reservation wait ends, however it ends.
struct ClearWait<'a> {
    ws: &'a Workspace,
    agent: &'a str,
}

impl Drop for ClearWait<'_> {
    fn drop(&mut self) {
        let _ = deadlock::clear_wait(self.ws, self.agent);
    }
}
