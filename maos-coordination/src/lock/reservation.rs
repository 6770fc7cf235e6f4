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

use super::pattern::{Overlap, Pattern, PatternError};
use super::{
    ListedLock, LockError, LockInfo, LockKind, LockState, Locks, reservation_index, signed,
};
use crate::atomic::{self, Durability};
use crate::deadlock::{self, WaitKind};
use crate::fs;
use crate::journal::{Effect, Event, Pending};
use crate::name::{self, NameKind};
use crate::process::ProcessIdentity;
use crate::record::{self, RecordError};
use crate::wake::{self, DirWatch};
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
    auto: bool,
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
            auto: false,
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

    /// Marks the reservations as taken automatically on the owner's behalf (see
    /// [`LockInfo::auto`]); [`Reservations::release_automatic_of`] releases only those.
    pub fn automatic(mut self, auto: bool) -> Self {
        self.auto = auto;
        self
    }

    /// Whether the reservations die with this process (default: no, they belong to the agent
    /// until released or expired).
    pub fn bound_to_process(mut self, bound: bool) -> Self {
        self.bound_to_process = bound;
        self
    }
}

/// What granting a request does to one of its patterns.
enum Step {
    /// The owner's live reservation of it in the same mode, renewed (same token).
    Renew(LockInfo),
    /// A new reservation (its token still to be given), replacing the owner's reservations
    /// of the pattern in the other mode.
    Grant {
        info: LockInfo,
        replaced: Vec<LockInfo>,
    },
}

/// What granting `request` does, given the live `reservations` and `locks`: fails with
/// [`LockError::Conflict`] naming the pattern refused and what stands in its way (a certain
/// overlap before an unsure one). Pure: the records are read by the caller.
fn plan(
    request: &ReservationRequest,
    reservations: &[LockInfo],
    locks: &[LockInfo],
) -> Result<Vec<Step>, LockError> {
    let refused = request
        .patterns
        .iter()
        .flat_map(|p| {
            in_the_way(p, &request.owner, request.shared, reservations, locks)
                .into_iter()
                .map(move |b| (p, b))
        })
        .max_by_key(|(_, b)| b.overlap);
    if let Some((pattern, blocker)) = refused {
        return Err(LockError::Conflict {
            wanted: pattern.to_string(),
            unsure: blocker.overlap == Overlap::Unsure,
            holder: Box::new(blocker.holder),
        });
    }
    let mine: Vec<&LockInfo> = reservations
        .iter()
        .filter(|r| r.owner == request.owner)
        .collect();
    Ok(request
        .patterns
        .iter()
        .map(|pattern| {
            let same = |r: &&&LockInfo| r.resource == pattern.as_str();
            match mine
                .iter()
                .filter(same)
                .find(|r| r.shared == request.shared)
            {
                Some(current) => {
                    let mut renewed = (*current).clone();
                    renewed.expire_in(request.ttl);
                    renewed.purpose.clone_from(&request.reason);
                    renewed.auto = request.auto;
                    Step::Renew(renewed)
                }
                None => Step::Grant {
                    replaced: mine.iter().filter(same).map(|r| (*r).clone()).collect(),
                    info: LockInfo {
                        kind: LockKind::Reservation,
                        shared: request.shared,
                        purpose: request.reason.clone(),
                        bound_to_process: request.bound_to_process,
                        auto: request.auto,
                        ..LockInfo::acquired(
                            pattern.to_string(),
                            request.owner.clone(),
                            0,
                            request.ttl,
                        )
                    },
                },
            }
        })
        .collect())
}

/// Something that stands in the way of a lock or reservation.
#[derive(Debug, Clone)]
pub(crate) struct Blocker {
    /// The lock or reservation of another agent.
    pub(crate) holder: LockInfo,
    /// Whether the overlap is certain or could not be ruled out.
    pub(crate) overlap: Overlap,
}

/// The live reservations of agents other than `owner` that cover `path`. Pure: the records
/// are read once by the caller.
pub(crate) fn covering<'a>(
    reservations: &'a [LockInfo],
    path: &'a str,
    owner: &'a str,
) -> impl Iterator<Item = &'a LockInfo> {
    reservations.iter().filter(move |r| {
        r.owner != owner
            && r.state() == LockState::Live
            && Pattern::new(&r.resource).is_ok_and(|p| p.matches(path))
    })
}

/// What stands in the way of `owner` reserving `pattern`: other agents' live reservations
/// that may overlap it (unless both are shared) and their live locks on paths it covers.
/// Pure: the records are read once by the caller.
pub(crate) fn in_the_way(
    pattern: &Pattern,
    owner: &str,
    shared: bool,
    reservations: &[LockInfo],
    locks: &[LockInfo],
) -> Vec<Blocker> {
    let others = |c: &&LockInfo| c.owner != owner && c.state() == LockState::Live;
    let reserved = reservations
        .iter()
        .filter(others)
        .filter(|r| !(shared && r.shared))
        .filter_map(|r| {
            let overlap = pattern.overlap(&Pattern::new(&r.resource).ok()?);
            (overlap != Overlap::No).then(|| Blocker {
                holder: r.clone(),
                overlap,
            })
        });
    let locked = locks
        .iter()
        .filter(others)
        .filter(|l| pattern.matches(&l.resource))
        .map(|l| Blocker {
            holder: l.clone(),
            overlap: Overlap::Yes,
        });
    reserved.chain(locked).collect()
}

/// The claims on one path ([`Reservations::claims_on`]).
#[derive(Debug, Clone, Default)]
pub struct PathClaims {
    /// The asking agent's own.
    pub mine: Vec<LockInfo>,
    /// Every other agent's.
    pub others: Vec<LockInfo>,
}

/// Each reservation with its parsed pattern (unparsable ones left out).
fn patterns_of(reservations: &[LockInfo]) -> Vec<(Pattern, &LockInfo)> {
    reservations
        .iter()
        .filter_map(|r| Some((Pattern::new(&r.resource).ok()?, r)))
        .collect()
}

/// The locks on `path` and the reservations covering it, exclusive ones first. Pure: the
/// records are read once by the caller.
fn claims_of(path: &str, patterns: &[(Pattern, &LockInfo)], locks: &[LockInfo]) -> Vec<LockInfo> {
    let mut claims: Vec<LockInfo> = locks
        .iter()
        .filter(|l| l.resource == path)
        .chain(
            patterns
                .iter()
                .filter(|(p, _)| p.matches(path))
                .map(|(_, r)| *r),
        )
        .cloned()
        .collect();
    claims.sort_by_key(|c| c.shared);
    claims
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
    /// naming the pattern refused and what stands in its way (a certain overlap before an
    /// unsure one). A pattern this owner already holds live in the same mode is renewed
    /// (same token); in the other mode it is replaced.
    pub fn try_reserve(&self, request: &ReservationRequest) -> Result<Vec<LockInfo>, LockError> {
        #[cfg(feature = "etcd")]
        if let crate::store::Store::Etcd(etcd) = self.locks.ws.store() {
            return self.try_reserve_etcd(etcd, request);
        }
        let paths = self.locks.paths_lock(false)?;
        let reservations = self.live_overlapping(&request.patterns)?;
        let locks = self.locks.live()?;
        let mut granted = Vec::new();
        for step in plan(request, &reservations, &locks)? {
            granted.push(match step {
                Step::Renew(renewed) => {
                    self.write(&paths, &renewed, true)?;
                    renewed
                }
                Step::Grant { mut info, replaced } => {
                    self.remove(&paths, replaced.iter())?;
                    info.token = paths.next_counter(
                        || Ok(self.locks.ws.config().token_floor.unwrap_or(0)),
                        self.locks.durability == Durability::Fsync,
                    )?;
                    self.write(&paths, &info, false)?;
                    info
                }
            });
        }
        Ok(granted)
    }

    /// [`try_reserve`](Self::try_reserve) on the etcd store: the same plan, made in one
    /// transaction that holds only if no reservation changed and no path lock was taken
    /// since the records were read (else read again and planned again).
    #[cfg(feature = "etcd")]
    fn try_reserve_etcd(
        &self,
        etcd: &crate::store::etcd::Etcd,
        request: &ReservationRequest,
    ) -> Result<Vec<LockInfo>, LockError> {
        loop {
            let seen = super::etcd::paths_seen(etcd)?;
            let reservations = self.live()?;
            let locks = self.locks.live()?;
            let steps = plan(request, &reservations, &locks)?;
            let (mut put, mut removed) = (Vec::new(), Vec::new());
            for step in &steps {
                match step {
                    Step::Renew(renewed) => put.push(renewed.clone()),
                    Step::Grant { info, replaced } => {
                        put.push(info.clone());
                        removed.extend(replaced.iter().cloned());
                    }
                }
            }
            let Some(token) = super::etcd::change_reservations(
                &self.locks.ws,
                etcd,
                seen,
                &put,
                &removed,
                request.ttl,
            )?
            else {
                continue;
            };
            crate::journal::settle_etcd(&self.locks.ws);
            return Ok(steps
                .into_iter()
                .map(|step| match step {
                    Step::Renew(renewed) => renewed,
                    Step::Grant { mut info, .. } => {
                        info.token = token;
                        info
                    }
                })
                .collect());
        }
    }

    /// Reserves, waiting up to `wait` for what stands in the way to go (woken when locks or
    /// reservations change, and on the recheck timer). While it waits, its wait record names
    /// the pattern refused last, and it runs the deadlock detector as a lock waiter does.
    pub fn reserve(
        &self,
        request: &ReservationRequest,
        wait: Duration,
    ) -> Result<Vec<LockInfo>, LockError> {
        let started = Instant::now();
        let deadline = started + wait;
        let (mut wanted, mut holder) = match self.try_reserve(request) {
            Err(LockError::Conflict { wanted, holder, .. }) if !wait.is_zero() => (wanted, holder),
            other => return other,
        };
        let me = ProcessIdentity::current();
        let kind = if request.shared {
            WaitKind::Shared
        } else {
            WaitKind::Exclusive
        };
        let ws = &self.locks.ws;
        let until = Timestamp::now() + signed(wait);
        let since = Timestamp::now();
        let record = |pattern: &str| {
            deadlock::record_wait(ws, &request.owner, pattern, kind, &me, since, until)
        };
        record(&wanted)?;
        let _clear = deadlock::ClearWaitOnDrop::new(ws, &request.owner);
        // Counter rewrites (`.fence`, `.paths`) come with every lock attempt and free nothing:
        // only lock and reservation files coming and going are news.
        let counter = |p: &std::path::Path| {
            p.extension().is_some_and(|e| e == "fence") || p.ends_with(".paths")
        };
        let mut watch = DirWatch::start(&self.locks.dir, counter);
        if let Some(w) = watch.as_mut() {
            fs::create_dir_all(&self.dir)?;
            w.add(&self.dir);
        }
        let mut next_deadlock_check = Instant::now() + self.locks.recheck;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(LockError::Timeout {
                    resource: wanted,
                    waited: started.elapsed(),
                    holder: Some(holder),
                });
            }
            wake::nap(watch.as_ref(), self.locks.recheck.min(left));
            match self.try_reserve(request) {
                Err(LockError::Conflict {
                    wanted: refused,
                    holder: h,
                    ..
                }) => {
                    holder = h;
                    if refused != wanted {
                        record(&refused)?;
                        wanted = refused;
                    }
                }
                other => return other,
            }
            self.locks.fail_if_deadlock_victim(
                &request.owner,
                &wanted,
                &mut next_deadlock_check,
            )?;
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
        let paths = self.changing()?;
        let mine = self.all_of(owner)?;
        if let Some(missing) = wanted
            .iter()
            .find(|p| mine.iter().all(|r| r.resource != p.as_str()))
        {
            return Err(LockError::NotHeld {
                resource: missing.to_string(),
            });
        }
        let released = mine
            .into_iter()
            .filter(|r| wanted.iter().any(|p| r.resource == p.as_str()))
            .collect();
        self.release_locked(released, paths)
    }

    /// The operator's break: removes the reservations of `pattern` (as given or normalized)
    /// whoever holds them — only `owner`'s when given — however long they have left, and
    /// announces each on `broadcast/locks` (`reservation-broken`, with `by` and `reason`).
    /// Fails with [`LockError::NotHeld`] when there is none.
    pub fn break_reservations(
        &self,
        pattern: &str,
        owner: Option<&str>,
        by: &str,
        reason: &str,
    ) -> Result<Vec<LockInfo>, LockError> {
        let wanted = Pattern::new(pattern)?;
        name::validate(NameKind::Agent, by)?;
        let paths = self.changing()?;
        let broken: Vec<LockInfo> = self
            .list()?
            .into_iter()
            .filter_map(|l| l.info.ok())
            .filter(|r| r.resource == wanted.as_str() && owner.is_none_or(|o| r.owner == o))
            .collect();
        if broken.is_empty() {
            return Err(LockError::NotHeld {
                resource: wanted.to_string(),
            });
        }
        let broken = self.release_locked(broken, paths)?;
        for r in &broken {
            super::announce_break(&self.locks.ws, r, by, reason);
        }
        Ok(broken)
    }

    /// Releases every reservation of `owner`, whatever its state (an agent leaving).
    pub fn release_all_of(&self, owner: &str) -> Result<Vec<LockInfo>, LockError> {
        self.release_where(owner, |_| true)
    }

    /// Releases the reservations taken automatically for `owner` (see [`LockInfo::auto`]),
    /// whatever their state; the ones it asked for stay.
    pub fn release_automatic_of(&self, owner: &str) -> Result<Vec<LockInfo>, LockError> {
        self.release_where(owner, |r| r.auto)
    }

    /// Who holds `path` now: the live locks on it and the live reservations (exclusive or
    /// shared) whose pattern covers it, `owner`'s apart from the others', exclusive claims
    /// first in each. What an editor hook asks before a change (the records are read once).
    pub fn claims_on(&self, path: &str, owner: &str) -> Result<PathClaims, LockError> {
        let reservations = match Pattern::new(path) {
            Ok(as_pattern) => self.live_overlapping(&[as_pattern])?,
            Err(_) => self.live()?,
        };
        // The one lock file that can hold this path.
        let locks: Vec<LockInfo> = match self.locks.show(path) {
            Ok(lock) => lock
                .into_iter()
                .filter(|l| l.state() == LockState::Live)
                .collect(),
            Err(_) => self.locks.live()?,
        };
        let (mine, others) = claims_of(path, &patterns_of(&reservations), &locks)
            .into_iter()
            .partition(|c| c.owner == owner);
        Ok(PathClaims { mine, others })
    }

    /// For many paths at once (the records are read once), with the claims of every agent
    /// in `exempt` left out: each path that someone else holds, with what holds it. What
    /// the pre-commit guard asks.
    pub fn claims_on_each<P: AsRef<str>, A: AsRef<str>>(
        &self,
        paths: &[P],
        exempt: &[A],
    ) -> Result<Vec<(String, Vec<LockInfo>)>, LockError> {
        let others = |c: &LockInfo| exempt.iter().all(|a| a.as_ref() != c.owner);
        let reservations: Vec<LockInfo> = self.live()?.into_iter().filter(others).collect();
        let locks: Vec<LockInfo> = self.locks.live()?.into_iter().filter(others).collect();
        let patterns = patterns_of(&reservations);
        Ok(paths
            .iter()
            .map(|p| {
                (
                    p.as_ref().to_owned(),
                    claims_of(p.as_ref(), &patterns, &locks),
                )
            })
            .filter(|(_, claims)| !claims.is_empty())
            .collect())
    }

    /// Releases the reservations of `owner` that are provably free (expired, or bound to a
    /// process provably gone), judged under the `.paths` lock (L6).
    pub fn release_stale_of(&self, owner: &str) -> Result<Vec<LockInfo>, LockError> {
        self.release_where(owner, |r| r.state() != LockState::Live)
    }

    /// Releases `owner`'s reservations that `which` selects, judged under the `.paths` lock.
    fn release_where(
        &self,
        owner: &str,
        which: impl Fn(&LockInfo) -> bool,
    ) -> Result<Vec<LockInfo>, LockError> {
        let paths = self.changing()?;
        let released = self
            .all_of(owner)?
            .into_iter()
            .filter(|r| which(r))
            .collect();
        self.release_locked(released, paths)
    }

    /// The `.paths` lock a change of reservations holds on files; `None` on etcd, where
    /// each change is one transaction (see `lock::etcd`).
    fn changing(&self) -> Result<Option<fs::FileLock>, LockError> {
        if !self.locks.ws.store().is_files() {
            return Ok(None);
        }
        Ok(Some(self.locks.paths_lock(false)?))
    }

    /// Removes `released` while `paths` is held, then wakes the lock waiters they blocked.
    fn release_locked(
        &self,
        released: Vec<LockInfo>,
        paths: Option<fs::FileLock>,
    ) -> Result<Vec<LockInfo>, LockError> {
        match paths {
            Some(paths) => {
                self.remove(&paths, released.iter())?;
                drop(paths);
                self.wake_lock_waiters(&released);
            }
            #[cfg(feature = "etcd")]
            None => {
                if let crate::store::Store::Etcd(etcd) = self.locks.ws.store() {
                    super::etcd::remove_reservations(&self.locks.ws, etcd, &released)?;
                }
            }
            #[cfg(not(feature = "etcd"))]
            None => {}
        }
        Ok(released)
    }

    /// Removes the reservation file at `path` if it is stale or broken (judged again under
    /// the `.paths` lock); a broken one goes through `quarantine`. What `maos doctor --fix`
    /// does. Returns what was done, `None` when it is live (or gone).
    pub fn clear_if_stale_or_broken(
        &self,
        path: &std::path::Path,
        quarantine: impl FnOnce(&std::path::Path) -> Result<(), crate::store::StoreError>,
    ) -> Result<Option<&'static str>, LockError> {
        #[cfg(feature = "etcd")]
        if let crate::store::Store::Etcd(etcd) = self.locks.ws.store() {
            // Its lease decides when it expires; one whose process is provably gone (on
            // this host) goes now.
            let found = super::etcd::reservations(etcd)?
                .into_iter()
                .find(|listed| listed.path == path);
            return match found.map(|listed| listed.info) {
                Some(Ok(info)) if info.state() == LockState::Dead => {
                    super::etcd::remove_reservations(&self.locks.ws, etcd, &[info])?;
                    Ok(Some("removed"))
                }
                Some(Err(RecordError::Corrupt { .. })) => {
                    quarantine(path)?;
                    Ok(Some("quarantined"))
                }
                _ => Ok(None),
            };
        }
        let paths = self.locks.paths_lock(false)?;
        match record::read::<LockInfo>(path, "reservation") {
            Ok(info) if info.state() != LockState::Live => {
                self.remove(&paths, std::iter::once(&info))?;
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
        #[cfg(feature = "etcd")]
        if let crate::store::Store::Etcd(etcd) = self.locks.ws.store() {
            return super::etcd::reservations(etcd);
        }
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

    /// The live reservations that may overlap one of `patterns` (a superset: the caller
    /// judges each), read from the few files the index points to when it is current (see
    /// `reservation_index`), else from every file. On etcd: all of them.
    pub(crate) fn live_overlapping(
        &self,
        patterns: &[Pattern],
    ) -> Result<Vec<LockInfo>, LockError> {
        if !self.locks.ws.store().is_files() {
            return self.live();
        }
        let Some(entries) = reservation_index::load(&self.dir) else {
            return self.live();
        };
        // A first sieve on the text alone: two patterns whose literal starts (up to the
        // first glob character) are not one a prefix of the other cannot overlap.
        let literal_start = |text: &str| text.find(['*', '?', '[']).map_or(text.len(), |at| at);
        let starts: Vec<&str> = patterns
            .iter()
            .map(|p| &p.as_str()[..literal_start(p.as_str())])
            .collect();
        let mut found = Vec::new();
        for (token, pattern) in entries {
            let start = &pattern[..literal_start(&pattern)];
            if !starts
                .iter()
                .any(|w| w.starts_with(start) || start.starts_with(w))
            {
                continue;
            }
            let candidate = match Pattern::new(&pattern) {
                Ok(p) => patterns.iter().any(|wanted| wanted.may_overlap(&p)),
                Err(_) => true,
            };
            if !candidate {
                continue;
            }
            match record::read::<LockInfo>(&self.path(token), "reservation") {
                Ok(info) if info.state() == LockState::Live => found.push(info),
                Ok(_) => {}
                // Gone since, or broken (doctor names it): not a live reservation.
                Err(RecordError::Io(e)) if e.is_not_found() => {}
                Err(RecordError::Corrupt { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(found)
    }

    /// Brings the index up to date after a change made under the `.paths` lock: `before`
    /// is the index as it was before the change (`None`: it was not current, so it is made
    /// again from the files), `change` applies the change to it.
    fn reindex(
        &self,
        before: Option<reservation_index::Entries>,
        change: impl FnOnce(&mut reservation_index::Entries),
    ) {
        let entries = match before {
            Some(mut entries) => {
                change(&mut entries);
                entries
            }
            None => match self.indexed_from_files() {
                Ok(entries) => entries,
                Err(_) => return,
            },
        };
        reservation_index::store(
            &self.dir,
            &self.locks.ws.tmp_dir(),
            &entries,
            self.locks.durability,
        );
    }

    /// What the index should say: the token each file is named by, and its pattern.
    fn indexed_from_files(&self) -> Result<reservation_index::Entries, LockError> {
        Ok(self
            .list()?
            .into_iter()
            .filter_map(|l| {
                let token = l.path.file_stem()?.to_str()?.parse().ok()?;
                Some((token, l.info.ok()?.resource))
            })
            .collect())
    }

    /// The index file, when it is trusted (its folder unchanged since it was written) yet
    /// disagrees with the files — a reservation file edited in place by hand. `maos doctor`
    /// reports it; removing it is the fix (it is made again at the next change).
    pub fn stale_index(&self) -> Result<Option<PathBuf>, LockError> {
        let Some(mut indexed) = reservation_index::load(&self.dir) else {
            return Ok(None);
        };
        let mut actual = self.indexed_from_files()?;
        indexed.sort();
        actual.sort();
        Ok((indexed != actual).then(|| reservation_index::path_of(&self.dir)))
    }

    /// `owner`'s readable reservations, whatever their state.
    fn all_of(&self, owner: &str) -> Result<Vec<LockInfo>, LockError> {
        Ok(self
            .list()?
            .into_iter()
            .filter_map(|l| l.info.ok())
            .filter(|r| r.owner == owner)
            .collect())
    }

    /// Removes `reservations` under `paths` (the `.paths` lock), each journaled as
    /// `reservation.released`.
    fn remove<'a>(
        &self,
        paths: &fs::FileLock,
        reservations: impl Iterator<Item = &'a LockInfo>,
    ) -> Result<(), LockError> {
        let before = reservation_index::load(&self.dir);
        let mut removed = Vec::new();
        let result = self.remove_files(paths, reservations, &mut removed);
        self.reindex(before, |entries| {
            entries.retain(|(t, _)| !removed.contains(t))
        });
        result
    }

    /// Removes the files of `reservations`, noting each token removed in `removed`.
    fn remove_files<'a>(
        &self,
        paths: &fs::FileLock,
        reservations: impl Iterator<Item = &'a LockInfo>,
        removed: &mut Vec<u64>,
    ) -> Result<(), LockError> {
        let ws = &self.locks.ws;
        for r in reservations {
            let path = self.path(r.token);
            let gone = Effect::lacks(ws, &path, "/nonce", r.nonce.to_string());
            let pending = Pending::note(
                ws,
                paths,
                reservation_event("reservation.released", r),
                gone,
            );
            fs::remove_file_if_exists(&path)?;
            removed.push(r.token);
            pending.done();
        }
        Ok(())
    }

    fn path(&self, token: u64) -> PathBuf {
        self.dir.join(format!("{token}.json"))
    }

    /// Writes `info` under `paths` (the `.paths` lock), journaled as `reservation.renewed`
    /// (`replace`) or `reservation.granted`.
    fn write(&self, paths: &fs::FileLock, info: &LockInfo, replace: bool) -> Result<(), LockError> {
        fs::create_dir_all(&self.dir)?;
        let ws = &self.locks.ws;
        let staged = atomic::stage(&ws.tmp_dir(), &record::encode(info), self.locks.durability)?;
        let path = self.path(info.token);
        let kind = if replace {
            "reservation.renewed"
        } else {
            "reservation.granted"
        };
        let effect = Effect::has(
            ws,
            &path,
            "/expires_at",
            serde_json::to_value(info.expires_at).unwrap_or_default(),
        );
        let before = reservation_index::load(&self.dir);
        let pending = Pending::note(ws, paths, reservation_event(kind, info), effect);
        if replace {
            staged.replace(&path)?;
        } else {
            staged.publish_new(&path)?;
        }
        pending.done();
        self.reindex(before, |entries| {
            entries.retain(|(t, _)| *t != info.token);
            entries.push((info.token, info.resource.clone()));
        });
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

/// The journal entry of a change to reservation `info`.
pub(super) fn reservation_event(kind: &str, info: &LockInfo) -> Event {
    Event::new(kind)
        .agent(info.owner.clone())
        .subject(info.resource.clone())
        .data(serde_json::json!({
            "token": info.token,
            "shared": info.shared,
            "auto": info.auto,
            "purpose": info.purpose,
            "expires_at": info.expires_at,
        }))
}
