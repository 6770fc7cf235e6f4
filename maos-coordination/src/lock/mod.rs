//! Lock files with owners, expiry, fencing tokens, fair waiting and safe stealing.
//!
//! A held lock is one file, `.maos/locks/<resource>.lock` (a `/` in the resource name is
//! written `%2F`), holding a [`LockInfo`]: owner, purpose, expiry, a nonce, and a fencing
//! token. Beside it, `<resource>.fence` holds the last token handed out; it is never deleted,
//! so tokens keep increasing across releases (L4).
//!
//! **Every change to a lock file happens under a short kernel lock (`flock`) on its `.fence`
//! file**: acquire, renew, release, and the removal of a stale lock. So "read, see expired,
//! delete, create" cannot race: of many contenders for an expired lock, the first to get the
//! kernel lock removes it and takes it, and every later one re-reads a live lock (L1, L2). The
//! kernel lock dies with its process, so a crash there blocks nobody. Lock files are still
//! published with no-clobber renames (`create_new` semantics), never overwritten blindly.
//!
//! A lock is *stale* when it expired, or when it is bound to a process that is provably gone
//! on this host (see [`crate::process`]). Locks taken through the CLI belong to the agent
//! identity, not to the short-lived CLI process, so only expiry frees them.
//!
//! **Waiting (L5).** A waiter registers an *interest* (`locks/interests/<resource>/<agent>.json`)
//! and a *wait record* (`locks/waits/<agent>.json`), then sleeps until it is poked (whoever
//! frees the lock touches `interests/<resource>/<next>.wake` of the first waiter in line,
//! watched through notify) or a short timer fires. A free lock goes to the best live
//! interest: highest priority, then earliest arrival. While waiting it runs the deadlock detector
//! ([`crate::deadlock`]); a waiter chosen as victim gives up with [`LockError::Deadlock`].

#[cfg(feature = "etcd")]
mod etcd;
mod held;
mod interest;
pub mod pattern;
pub(crate) mod reservation;
mod reservation_index;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

#[cfg(feature = "etcd")]
pub(crate) use etcd::TOKEN_BASE;
pub use interest::Interest;
pub use reservation::{DEFAULT_RESERVATION_TTL, PathClaims, ReservationRequest, Reservations};

use crate::atomic::{self, Durability, PublishError};
use crate::deadlock::{self, Cycle};
use crate::error::ErrorKind;
use crate::fs::{self, FileLock, FsError};
use crate::journal::{Effect, Event, Pending};
use crate::name::{self, NameError, NameKind};
use crate::priority::Priority;
use crate::process::{Liveness, ProcessIdentity};
use crate::quarantine;
use crate::record::{self, RecordError};
#[cfg(feature = "etcd")]
use crate::store::Store;
use crate::wake::{self, DirWatch, Woken};
use crate::workspace::Workspace;

/// The resource the merge coordinator serializes merges on.
pub const MERGE_RESOURCE: &str = "@merge";
/// The least time a waiter gives a short kernel lock held by another process.
const MIN_KERNEL_LOCK_WAIT: Duration = Duration::from_millis(50);
/// The broadcast topic on which broken locks are announced.
pub const TOPIC: &str = "locks";
/// How long a lock lives when the request does not say.
pub const DEFAULT_TTL: Duration = Duration::from_secs(60);
/// How often a waiter looks again even without a notify event (liveness of holders and
/// waiters, deadlock detection), unless [`Locks::with_recheck`] says otherwise.
pub const DEFAULT_RECHECK: Duration = Duration::from_millis(200);
/// On etcd a waiter is woken by a watch on the lock's key; it looks again at least this
/// often anyway (a watch that broke, a lease that ran out while the watch was re-made).
#[cfg(feature = "etcd")]
const MIN_ETCD_RECHECK: Duration = Duration::from_millis(500);

/// A lock operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// The resource name was refused.
    #[error(transparent)]
    Name(#[from] NameError),
    /// Another agent holds the lock.
    #[error("lock `{}` is held by {}", holder.resource, holder.describe())]
    Held {
        /// The current holder.
        holder: Box<LockInfo>,
    },
    /// The lock is free, but promised to a waiting agent that is first in line.
    #[error(
        "lock `{resource}` is free but promised to {} (priority {}, waiting since {})",
        next.agent, next.priority, next.since
    )]
    Queued {
        /// The resource.
        resource: String,
        /// The waiter first in line.
        next: Box<Interest>,
    },
    /// The wait ran out.
    #[error(
        "timed out after {:.1}s waiting for lock `{resource}`{}",
        waited.as_secs_f64(),
        holder_suffix(holder)
    )]
    Timeout {
        /// The resource.
        resource: String,
        /// How long we waited.
        waited: Duration,
        /// Who held it at the end.
        holder: Option<Box<LockInfo>>,
    },
    /// The caller was chosen as the victim of a deadlock.
    #[error("deadlock: {}; `{}` was chosen as the victim and gives up waiting for `{resource}`", cycle.describe(), cycle.victim)]
    Deadlock {
        /// The resource the victim waited for.
        resource: String,
        /// The cycle found.
        cycle: Box<Cycle>,
    },
    /// The caller's guard may no longer hold the lock (see [`LockGuard::check`]).
    #[error("lock `{resource}` (token {token}) may be lost: {reason}")]
    Lost {
        /// The resource.
        resource: String,
        /// The acquisition's fencing token.
        token: u64,
        /// Why.
        reason: String,
    },
    /// Nobody holds the lock.
    #[error("lock `{resource}` is not held")]
    NotHeld {
        /// The resource.
        resource: String,
    },
    /// Someone else holds the lock (or a newer acquisition replaced the caller's).
    #[error("lock `{}` is held by {}, not by `{caller}`", holder.resource, holder.describe())]
    NotOwner {
        /// The actual holder.
        holder: Box<LockInfo>,
        /// Who asked.
        caller: String,
    },
    /// A lock or reservation of another agent stands in the way: a reservation covering the
    /// path to lock, or a lock or reservation the pattern to reserve may overlap.
    #[error("`{wanted}` conflicts with {}{}", holder.describe_claim(), if *unsure { " (the two patterns may overlap: MAOS could not rule it out, so it treats them as overlapping)" } else { "" })]
    Conflict {
        /// The path or pattern asked for.
        wanted: String,
        /// What stands in the way.
        holder: Box<LockInfo>,
        /// True when the overlap of two patterns could not be ruled out, not proven.
        unsure: bool,
    },
    /// A reservation pattern was refused.
    #[error(transparent)]
    Pattern(#[from] pattern::PatternError),
    /// A lock file, interest or wait record is broken.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// A file could not be read or written.
    #[error(transparent)]
    Io(#[from] FsError),
    /// The store (etcd) could not be reached or refused.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

fn holder_suffix(holder: &Option<Box<LockInfo>>) -> String {
    holder
        .as_ref()
        .map_or(String::new(), |h| format!(", held by {}", h.describe()))
}

impl LockError {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            LockError::Name(e) => e.kind(),
            LockError::Held { .. }
            | LockError::Queued { .. }
            | LockError::NotOwner { .. }
            | LockError::Lost { .. }
            | LockError::Conflict { .. } => ErrorKind::Conflict,
            LockError::Pattern(_) => ErrorKind::InvalidInput,
            LockError::Timeout { .. } => ErrorKind::Timeout,
            LockError::Deadlock { .. } => ErrorKind::Deadlock,
            LockError::NotHeld { .. } => ErrorKind::NotFound,
            LockError::Record(e) => e.kind(),
            LockError::Io(e) => e.kind(),
            LockError::Store(e) => e.kind(),
        }
    }
}

impl From<PublishError> for LockError {
    fn from(e: PublishError) -> Self {
        match e {
            PublishError::Io(e) => e.into(),
            PublishError::AlreadyExists { path } => RecordError::corrupt(
                &path,
                "lock file",
                "it appeared while its .fence lock was held: something wrote it without MAOS",
            )
            .into(),
        }
    }
}

/// The contents of a lock file (fields in this order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// The locked resource, e.g. `src/main.rs`; for a reservation, its normalized pattern.
    pub resource: String,
    /// A lock, or a reservation of a glob pattern (see [`Reservations`]).
    #[serde(default)]
    pub kind: LockKind,
    /// A shared reservation (shared ones coexist); always false for a lock.
    #[serde(default)]
    pub shared: bool,
    /// Taken automatically on an agent's behalf (a short lease on a file it edits, by the
    /// editor hooks), not asked for: released when its session stops or ends.
    #[serde(default, skip_serializing_if = "is_false")]
    pub auto: bool,
    /// The agent holding it.
    pub owner: String,
    /// The fencing token: strictly greater than every earlier acquisition's.
    pub token: u64,
    /// Identifies this acquisition (a renewal keeps it).
    pub nonce: Uuid,
    /// Why it is held.
    pub purpose: String,
    /// When it was acquired.
    pub acquired_at: Timestamp,
    /// When it expires unless renewed.
    pub expires_at: Timestamp,
    /// The host of the acquiring process.
    pub host: String,
    /// The acquiring process.
    pub pid: u32,
    /// True when the lock dies with the acquiring process (library guards); false when it
    /// belongs to the agent until released or expired (the CLI).
    pub bound_to_process: bool,
    /// The acquiring host's boot id.
    pub boot_id: String,
    /// The acquiring process's start time (clock ticks since boot).
    pub process_start_time: u64,
    /// The acquiring process's PID namespace (0: unknown).
    #[serde(default)]
    pub pid_ns: u64,
    /// `expires_at` on the acquiring boot's clock that never jumps (milliseconds since boot):
    /// what decides expiry on this host while the boot id is the same.
    #[serde(default)]
    pub expires_boot_ms: Option<u64>,
    /// Free-form data for tools.
    #[serde(default)]
    pub metadata: Map<String, Value>,
}

/// What a [`LockInfo`] records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LockKind {
    /// A lock on one resource (`locks/<resource>.lock`).
    #[default]
    Lock,
    /// A reservation of a glob pattern (`locks/reservations/<token>.json`).
    Reservation,
}

/// Whether a lock still counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LockState {
    /// Held and within its lifetime.
    Live,
    /// Past `expires_at`: anyone may take it.
    Expired,
    /// Its process is provably gone: anyone may take it.
    Dead,
}

impl LockState {
    /// `live`, `expired` or `dead`: the word every view (CLI, JSON, MCP) uses.
    pub fn as_str(self) -> &'static str {
        match self {
            LockState::Live => "live",
            LockState::Expired => "expired",
            LockState::Dead => "dead",
        }
    }
}

impl LockInfo {
    /// Whether the lock is live, expired, or held by a dead process.
    pub fn state(&self) -> LockState {
        if self.time_left() <= SignedDuration::ZERO {
            LockState::Expired
        } else if self.bound_to_process && self.process().liveness() == Liveness::Dead {
            LockState::Dead
        } else {
            LockState::Live
        }
    }

    /// Time left before expiry (negative when expired): on the clock that never jumps when
    /// judged in the boot that took the lock, else on the wall clock.
    pub fn time_left(&self) -> SignedDuration {
        crate::process::time_until(self.expires_at, self.expires_boot_ms, &self.boot_id)
    }

    /// A new acquisition of `resource` by `owner` in this process: a fresh nonce, acquired
    /// now, expiring after `ttl`; a lock, with no purpose, not bound to the process, unless the
    /// caller sets those fields.
    fn acquired(resource: String, owner: String, token: u64, ttl: Duration) -> Self {
        let me = ProcessIdentity::current();
        let now = Timestamp::now();
        let mut info = LockInfo {
            resource,
            kind: LockKind::Lock,
            shared: false,
            auto: false,
            owner,
            token,
            nonce: Uuid::new_v4(),
            purpose: String::new(),
            acquired_at: now,
            expires_at: now,
            host: me.host,
            pid: me.pid,
            bound_to_process: false,
            boot_id: me.boot_id,
            process_start_time: me.start_time,
            pid_ns: me.pid_ns,
            expires_boot_ms: None,
            metadata: Map::new(),
        };
        info.expire_in(ttl);
        info
    }

    /// Sets the expiry to `ttl` from now, on both clocks.
    fn expire_in(&mut self, ttl: Duration) {
        self.expires_at = Timestamp::now() + signed(ttl);
        self.expires_boot_ms = Some(crate::process::boot_ms_at(self.expires_at));
    }

    /// "12s left", "17m left", "2h05m left", or "expired".
    pub fn left_words(&self) -> String {
        let secs = self.time_left().as_secs();
        match secs {
            ..=0 => "expired".into(),
            1..60 => format!("{secs}s left"),
            60..3600 => format!("{}m left", secs / 60),
            _ => format!("{}h{:02}m left", secs / 3600, secs % 3600 / 60),
        }
    }

    /// "agent-2 (purpose: refactor, 12s left)".
    pub fn describe(&self) -> String {
        let left = self.left_words();
        let label = match self.kind {
            LockKind::Lock => "purpose",
            LockKind::Reservation => "reason",
        };
        let purpose = if self.purpose.is_empty() {
            String::new()
        } else {
            format!("{label}: {}, ", self.purpose)
        };
        format!("`{}` ({purpose}{left})", self.owner)
    }

    /// The one view of a lock or reservation every output uses (CLI `--json`, MCP, status):
    /// the record's fields plus its `state` word.
    pub fn view(&self) -> Value {
        let mut value = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Some(object) = value.as_object_mut() {
            object.insert("auto".into(), self.auto.into());
            object.insert("state".into(), self.state().as_str().into());
        }
        value
    }

    /// "the lock on `src/db.rs` held by `ann` (…)", "the exclusive reservation `src/**` of
    /// `ann` (…)": what stands in someone's way.
    pub fn describe_claim(&self) -> String {
        match self.kind {
            LockKind::Lock => format!(
                "the lock on `{}` held by {}",
                self.resource,
                self.describe()
            ),
            LockKind::Reservation => format!(
                "the {} reservation `{}` of {}",
                if self.shared { "shared" } else { "exclusive" },
                self.resource,
                self.describe()
            ),
        }
    }

    fn process(&self) -> ProcessIdentity {
        ProcessIdentity {
            host: self.host.clone(),
            boot_id: self.boot_id.clone(),
            pid: self.pid,
            start_time: self.process_start_time,
            pid_ns: self.pid_ns,
        }
    }
}

/// What an agent asks for.
#[derive(Debug, Clone)]
pub struct LockRequest {
    resource: String,
    owner: String,
    ttl: Duration,
    purpose: String,
    priority: Priority,
    bound_to_process: bool,
    metadata: Map<String, Value>,
}

impl LockRequest {
    /// A request by `owner` for `resource` (a name, or a `/`-separated path), with the
    /// default lifetime, bound to the calling process.
    pub fn new(resource: &str, owner: &str) -> Result<Self, NameError> {
        validate_resource(resource)?;
        name::validate(NameKind::Agent, owner)?;
        Ok(Self {
            resource: resource.to_owned(),
            owner: owner.to_owned(),
            ttl: DEFAULT_TTL,
            purpose: String::new(),
            priority: Priority::default(),
            bound_to_process: true,
            metadata: Map::new(),
        })
    }

    /// How long the lock lives unless renewed.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Why the lock is wanted (shown to other agents).
    pub fn purpose(mut self, purpose: impl Into<String>) -> Self {
        self.purpose = purpose.into();
        self
    }

    /// The priority of this agent's place in line while waiting.
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }

    /// Whether the lock dies with this process (default) or belongs to the agent until it is
    /// released or expires (what the CLI does).
    pub fn bound_to_process(mut self, bound: bool) -> Self {
        self.bound_to_process = bound;
        self
    }

    /// Adds a metadata entry.
    pub fn meta(mut self, key: impl Into<String>, value: Value) -> Self {
        self.metadata.insert(key.into(), value);
        self
    }

    /// The resource.
    pub fn resource(&self) -> &str {
        &self.resource
    }
}

/// A held lock; released (synchronously) when dropped, unless [`persist`](Self::persist)ed.
///
/// While it is held, the lock is renewed in the background (every third of its lifetime), so a
/// running process never loses it to expiry; a stopped one does. Guards are per thread: the
/// thread holding a lock may take it again and gets another guard (the lock is released when
/// the last one drops), while other threads of the process wait for it like other processes.
#[derive(Debug)]
pub struct LockGuard {
    locks: Locks,
    info: LockInfo,
    released: bool,
}

impl LockGuard {
    /// The lock record, with the fencing token.
    pub fn info(&self) -> &LockInfo {
        &self.info
    }

    /// The fencing token of this acquisition.
    pub fn token(&self) -> u64 {
        self.info.token
    }

    /// Extends the lock to `ttl` from now.
    pub fn renew(&mut self, ttl: Duration) -> Result<&LockInfo, LockError> {
        self.info = self.locks.renew_checked(
            &self.info.resource,
            &self.info.owner,
            Some(self.info.nonce),
            ttl,
        )?;
        Ok(&self.info)
    }

    /// Whether this process surely still holds the lock: call it before acting under the
    /// lock. Fails with [`LockError::Lost`] once no renewal got through for (nearly) its
    /// lifetime — the process was stopped, or cut off from the etcd cluster — or once a
    /// renewal found it taken or broken: someone else may hold it now.
    pub fn check(&self) -> Result<(), LockError> {
        held::check(self.info.nonce).map_err(|reason| LockError::Lost {
            resource: self.info.resource.clone(),
            token: self.info.token,
            reason,
        })
    }

    /// Releases the lock now (when this is the last guard on it), reporting any problem
    /// (dropping does the same silently).
    pub fn release(mut self) -> Result<(), LockError> {
        self.released = true;
        self.locks.release_guard(&self.info)
    }

    /// Keeps the lock after this guard is gone: it is no longer renewed, and stays until
    /// released by its owner or expired. Returns the record.
    pub fn persist(mut self) -> LockInfo {
        self.released = true;
        held::forget(self.info.nonce);
        self.info.clone()
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if !self.released {
            // Drop cannot report errors; a lock we fail to remove expires on its own.
            let _ = self.locks.release_guard(&self.info);
        }
    }
}

/// A lock or reservation as listed: its record, or the problem with its file.
#[derive(Debug)]
pub struct ListedLock {
    /// The lock file.
    pub path: PathBuf,
    /// The record, or why it could not be read.
    pub info: Result<LockInfo, RecordError>,
}

/// The locks of a workspace.
#[derive(Debug, Clone)]
pub struct Locks {
    ws: Workspace,
    dir: PathBuf,
    durability: Durability,
    recheck: Duration,
}

impl Locks {
    /// The locks of `ws`.
    pub fn new(ws: &Workspace) -> Self {
        Self {
            dir: ws.locks_dir(),
            durability: Durability::from_sync(ws.config().fsync.locks),
            ws: ws.clone(),
            recheck: DEFAULT_RECHECK,
        }
    }

    /// How often a waiter looks again without being woken (default [`DEFAULT_RECHECK`]): it
    /// bounds how late an expiry, a dead holder or a deadlock is noticed. A release wakes the
    /// next waiter at once whatever this is.
    pub fn with_recheck(mut self, recheck: Duration) -> Self {
        self.recheck = recheck.max(Duration::from_millis(1));
        self
    }

    /// Whether writes through this handle are flushed to disk (invariant W4).
    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// Overrides the workspace's durability setting (`fsync.locks`) for this handle.
    pub fn with_durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Takes the lock if it is free (or stale) and nobody is waiting ahead; otherwise fails
    /// at once with [`LockError::Held`] or [`LockError::Queued`]. The same owner taking a lock
    /// it already holds renews it.
    pub fn try_acquire(&self, request: &LockRequest) -> Result<LockGuard, LockError> {
        let info = self.attempt(request, Instant::now())?;
        traced_acquired(&info);
        Ok(self.guard(info))
    }

    /// Takes the lock, waiting up to `wait` for it: in line with other waiters (priority,
    /// then arrival), woken when the lock directory changes. Fails with
    /// [`LockError::Timeout`], or [`LockError::Deadlock`] when this waiter closes a cycle and
    /// is chosen as its victim.
    pub fn acquire(&self, request: &LockRequest, wait: Duration) -> Result<LockGuard, LockError> {
        // The short kernel locks taken while waiting (the `.fence`) honour the caller's wait
        // too: a stopped process holding one cannot keep this caller past it (by much). The
        // guard keeps the workspace's own bound for its release.
        let bound = self
            .ws
            .kernel_lock_wait()
            .min(wait.max(MIN_KERNEL_LOCK_WAIT));
        let guard = self
            .clone()
            .with_kernel_lock_wait(bound)
            .acquire_within(request, wait, self)?;
        traced_acquired(guard.info());
        Ok(guard)
    }

    /// How long one renewal keeps `info`'s acquisition of `ttl`: `ttl`, or on the etcd store
    /// the shorter lease of a lock bound to its process (see `lock::etcd`).
    #[cfg_attr(not(feature = "etcd"), allow(unused_variables))]
    fn lease_of(&self, info: &LockInfo, ttl: Duration) -> Duration {
        #[cfg(feature = "etcd")]
        if !self.ws.store().is_files() {
            return etcd::lease_for(info, ttl);
        }
        ttl
    }

    /// How long an operation through this handle waits for a short kernel lock (a `.fence`).
    pub fn kernel_lock_wait(&self) -> Duration {
        self.ws.kernel_lock_wait()
    }

    /// Sets how long an operation through this handle waits for a short kernel lock (a `.fence`)
    /// another process holds (default: the workspace's, see
    /// [`Workspace::kernel_lock_wait`]).
    pub fn with_kernel_lock_wait(mut self, wait: Duration) -> Self {
        self.ws = self.ws.with_kernel_lock_wait(wait);
        self
    }

    fn acquire_within(
        &self,
        request: &LockRequest,
        wait: Duration,
        owner_of_guard: &Locks,
    ) -> Result<LockGuard, LockError> {
        #[cfg(feature = "etcd")]
        if let Store::Etcd(etcd) = self.ws.store() {
            return self.acquire_within_etcd(etcd, request, wait, owner_of_guard);
        }
        let started = Instant::now();
        let deadline = started + wait;
        let mut holder = match self.attempt(request, started) {
            Ok(info) => return Ok(owner_of_guard.guard(info)),
            Err(LockError::Held { holder } | LockError::Conflict { holder, .. })
                if !wait.is_zero() =>
            {
                Some(holder)
            }
            Err(LockError::Queued { .. }) if !wait.is_zero() => None,
            Err(e) => return Err(e),
        };
        let me = ProcessIdentity::current();
        let until = Timestamp::now() + signed(wait);
        // Watch before getting in line, and look once more after: a release that lands
        // between our first try and the watch starting must not cost a whole recheck period.
        let watch = self.watch_for(&request.resource, &request.owner);
        let waiting = Waiting::register(self, request, &me, until)?;
        let mut next_deadlock_check = Instant::now() + self.recheck;
        let lock_path = self.lock_path(&request.resource);
        let mut still_held = false;
        loop {
            // An event while the lock file is still there (someone renewed or took it) is not
            // worth the kernel lock; the timer still re-checks it for expiry.
            if !still_held {
                match self.attempt(request, started) {
                    Ok(info) => {
                        drop(waiting);
                        return Ok(owner_of_guard.guard(info));
                    }
                    Err(LockError::Held { holder: h } | LockError::Conflict { holder: h, .. }) => {
                        holder = Some(h);
                    }
                    Err(LockError::Queued { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                drop(waiting);
                return Err(LockError::Timeout {
                    resource: request.resource.clone(),
                    waited: started.elapsed(),
                    holder,
                });
            }
            let woken = wake::nap(watch.as_ref(), self.recheck.min(left));
            still_held = woken == Woken::Event && lock_path.exists();
            self.fail_if_deadlock_victim(
                &request.owner,
                &request.resource,
                &mut next_deadlock_check,
            )?;
        }
    }

    /// [`acquire_within`](Self::acquire_within) on the etcd store: tries, and waits for a
    /// change of the lock's key (an etcd watch, started before the second try) between tries.
    #[cfg(feature = "etcd")]
    fn acquire_within_etcd(
        &self,
        etcd: &std::sync::Arc<crate::store::etcd::Etcd>,
        request: &LockRequest,
        wait: Duration,
        owner_of_guard: &Locks,
    ) -> Result<LockGuard, LockError> {
        let started = Instant::now();
        let deadline = started + wait;
        let mut watch = None;
        let mut waiting = None;
        let mut holder = None;
        let mut next_deadlock_check = Instant::now() + self.recheck;
        loop {
            match self.attempt(request, started) {
                Ok(info) => return Ok(owner_of_guard.guard(info)),
                Err(LockError::Held { holder: h } | LockError::Conflict { holder: h, .. })
                    if !wait.is_zero() =>
                {
                    holder = Some(h);
                }
                Err(LockError::Queued { .. }) if !wait.is_zero() => {}
                Err(e) => return Err(e),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(LockError::Timeout {
                    resource: request.resource.clone(),
                    waited: started.elapsed(),
                    holder,
                });
            }
            match &mut watch {
                // Watch and get in line, then try once more: a release between the try and
                // the watch is seen.
                None => {
                    watch = Some(etcd::watch(etcd, &request.resource)?);
                    if waiting.is_none() {
                        let until = Timestamp::now() + signed(left);
                        let me = ProcessIdentity::current();
                        waiting = Some(Waiting::register(self, request, &me, until)?);
                    }
                }
                Some(w) => {
                    if w.wait(self.recheck.max(MIN_ETCD_RECHECK).min(left))
                        .is_err()
                    {
                        watch = None;
                    }
                }
            }
            self.fail_if_deadlock_victim(
                &request.owner,
                &request.resource,
                &mut next_deadlock_check,
            )?;
        }
    }

    /// Once `next_check` has come (deadlock detection reads every wait record: it runs on
    /// the recheck timer, not per event), looks for a deadlock whose victim is `owner`;
    /// then announces it and fails with [`LockError::Deadlock`] for `resource`.
    fn fail_if_deadlock_victim(
        &self,
        owner: &str,
        resource: &str,
        next_check: &mut Instant,
    ) -> Result<(), LockError> {
        if Instant::now() < *next_check {
            return Ok(());
        }
        *next_check = Instant::now() + self.recheck;
        match deadlock::victim_cycle(&self.ws, owner)? {
            Some(cycle) => {
                // The victim's own error matters more than the notice; a failed notice
                // (full disk) must not turn the deadlock into a different error.
                let _ = deadlock::announce(&self.ws, &cycle);
                Err(LockError::Deadlock {
                    resource: resource.to_owned(),
                    cycle: Box::new(cycle),
                })
            }
            None => Ok(()),
        }
    }

    /// A watch that wakes a waiter for `resource` when it is poked as the next in line;
    /// `None` means poll. Everything else (expiry, a dead holder, the waiter ahead giving up
    /// without a poke) is caught by the recheck timer.
    fn watch_for(&self, resource: &str, agent: &str) -> Option<DirWatch> {
        let line = interest::dir(&self.dir, resource);
        fs::create_dir_all(&line).ok()?;
        // Only our own wake file: whoever frees the lock pokes the first waiter in line, so
        // the others sleep through the hand-off instead of all racing for it.
        let wake = interest::wake_path(&self.dir, resource, agent);
        DirWatch::start(&line, move |path| path != wake)
    }

    /// Takes the workspace's merge lock (see [`MERGE_RESOURCE`]).
    pub fn acquire_merge_lock(
        &self,
        owner: &str,
        purpose: &str,
        wait: Duration,
    ) -> Result<LockGuard, LockError> {
        let request = LockRequest::new(MERGE_RESOURCE, owner)?
            .purpose(purpose)
            .ttl(Duration::from_secs(600));
        self.acquire(&request, wait)
    }

    /// Extends `owner`'s lock on `resource` to `ttl` from now.
    pub fn renew(&self, resource: &str, owner: &str, ttl: Duration) -> Result<LockInfo, LockError> {
        self.renew_checked(resource, owner, None, ttl)
    }

    /// Releases `owner`'s lock on `resource`; anyone else is refused and nothing changes.
    pub fn release(&self, resource: &str, owner: &str) -> Result<LockInfo, LockError> {
        let released = self.release_checked(resource, owner, None)?;
        tracing::debug!(resource, owner, token = released.token, "lock released");
        Ok(released)
    }

    /// Clears a lock file that cannot be read, at the request of the agent it names as
    /// owner: the file moves to `.maos/quarantine/` (see [`crate::quarantine`]). Nobody can
    /// prove ownership of an unreadable file, so the rule is that its text must still name
    /// `owner` in an `"owner"` field; anything else is left to `maos doctor --fix`. Returns
    /// where the file went.
    pub fn release_broken(&self, resource: &str, owner: &str) -> Result<PathBuf, LockError> {
        validate_resource(resource)?;
        let _fence = self.fence(resource)?;
        let path = self.lock_path(resource);
        let problem = match self.read_lock(resource) {
            Err(LockError::Record(RecordError::Corrupt { detail, .. })) => detail,
            Err(e) => return Err(e),
            Ok(Some(info)) => {
                return Err(LockError::NotOwner {
                    holder: Box::new(info),
                    caller: owner.to_owned(),
                });
            }
            Ok(None) => {
                return Err(LockError::NotHeld {
                    resource: resource.to_owned(),
                });
            }
        };
        let text = fs::read_if_exists(&path)?.unwrap_or_default();
        if !names_owner(&String::from_utf8_lossy(&text), owner) {
            return Err(RecordError::corrupt(
                &path,
                "lock file",
                format!("{problem}; it does not name `{owner}` as owner, so only `maos doctor --fix` may clear it"),
            )
            .into());
        }
        let by = format!("`{owner}` releasing its broken lock");
        Ok(quarantine::move_to_quarantine(
            &self.ws, &path, &problem, &by,
        )?)
    }

    /// The lock on `resource`, if any file is there (whatever its state).
    pub fn show(&self, resource: &str) -> Result<Option<LockInfo>, LockError> {
        validate_resource(resource)?;
        self.read_lock(resource)
    }

    /// Releases every lock `agent` owns (whatever its state) and takes it out of every line
    /// and its wait record: what an agent leaving does. Returns the resources released.
    pub fn release_all_of(&self, agent: &str) -> Result<Vec<String>, LockError> {
        let mut released = Vec::new();
        for listed in self.list()? {
            let Ok(info) = listed.info else { continue };
            if info.owner != agent {
                continue;
            }
            match self.release(&info.resource, agent) {
                Ok(_) => released.push(info.resource),
                // Released or taken over meanwhile: not ours any more.
                Err(LockError::NotHeld { .. } | LockError::NotOwner { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        for line in fs::list_names(&self.dir.join("interests"))? {
            if let Some(resource) = name::from_file_name(&line) {
                interest::remove(self, &resource, agent)?;
            }
        }
        deadlock::clear_wait(&self.ws, agent)?;
        let reservations = Reservations::of(self).release_all_of(agent)?;
        released.extend(reservations.into_iter().map(|r| r.resource));
        Ok(released)
    }

    /// Releases the locks of `agent` that are provably free — expired, or bound to a process
    /// that is provably gone — each judged again under its fence and released only if it is
    /// still the very acquisition judged (its nonce). Unexpired locks of a live, paused or
    /// silent holder are never touched (L6). Returns the resources released.
    pub fn release_stale_of(&self, agent: &str) -> Result<Vec<String>, LockError> {
        let mut released = Vec::new();
        for listed in self.list()? {
            let Ok(judged) = listed.info else { continue };
            if judged.owner != agent || judged.state() == LockState::Live {
                continue;
            }
            if self.remove_stale(&judged.resource, Some(judged.nonce))? {
                released.push(judged.resource);
            }
        }
        let reservations = Reservations::of(self).release_stale_of(agent)?;
        released.extend(reservations.into_iter().map(|r| r.resource));
        Ok(released)
    }

    /// Breaks the lock on `resource` whoever holds it, however long it has left: the
    /// operator's way to end a lease early. `by` and `reason` are announced on the
    /// [`TOPIC`] broadcast topic (a record every agent can read). Returns the lock broken.
    pub fn break_lock(
        &self,
        resource: &str,
        by: &str,
        reason: &str,
    ) -> Result<LockInfo, LockError> {
        validate_resource(resource)?;
        name::validate(NameKind::Agent, by)?;
        #[cfg(feature = "etcd")]
        if let Store::Etcd(etcd) = self.ws.store() {
            let current = etcd::read(etcd, resource)?.ok_or_else(|| LockError::NotHeld {
                resource: resource.to_owned(),
            })?;
            let event = lock_event(
                "lock.broken",
                &current.info,
                serde_json::json!({ "owner": current.info.owner, "reason": reason }),
            )
            .agent(by);
            if !etcd::remove(etcd, &current, crate::journal::pending(&self.ws, &[event]))? {
                return Err(LockError::NotHeld {
                    resource: resource.to_owned(),
                });
            }
            crate::journal::settle_etcd(&self.ws);
            announce_break(&self.ws, &current.info, by, reason);
            return Ok(current.info);
        }
        let broken = {
            let fence = self.fence(resource)?;
            let current = self
                .read_lock(resource)?
                .ok_or_else(|| LockError::NotHeld {
                    resource: resource.to_owned(),
                })?;
            let event = lock_event(
                "lock.broken",
                &current,
                serde_json::json!({ "owner": current.owner, "reason": reason }),
            )
            .agent(by);
            self.remove_journaled(&fence, event, &current)?;
            self.poke_next(resource);
            current
        };
        announce_break(&self.ws, &broken, by, reason);
        Ok(broken)
    }

    /// The agents in line for `resource`, first in line first (stale places are dropped).
    pub fn waiters(&self, resource: &str) -> Result<Vec<Interest>, LockError> {
        validate_resource(resource)?;
        if !self.ws.store().is_files() {
            return interest::line(self, resource);
        }
        let _fence = self.fence(resource)?;
        interest::line(self, resource)
    }

    /// Every lock file, sorted by resource; broken files are listed with their problem.
    pub fn list(&self) -> Result<Vec<ListedLock>, LockError> {
        #[cfg(feature = "etcd")]
        if let Store::Etcd(etcd) = self.ws.store() {
            return etcd::list(etcd);
        }
        let mut names: Vec<String> = fs::list_names(&self.dir)?
            .into_iter()
            .filter(|n| n.ends_with(".lock"))
            .collect();
        names.sort();
        Ok(names
            .into_iter()
            .map(|name| {
                let path = self.dir.join(&name);
                let info = record::read(&path, "lock file");
                ListedLock { path, info }
            })
            .collect())
    }

    /// Every live lock (broken files skipped: `maos doctor` reports them).
    pub fn live(&self) -> Result<Vec<LockInfo>, LockError> {
        Ok(self
            .list()?
            .into_iter()
            .filter_map(|l| l.info.ok())
            .filter(|i| i.state() == LockState::Live)
            .collect())
    }

    /// The resources `owner` holds live locks on.
    pub fn held_by(&self, owner: &str) -> Result<Vec<String>, LockError> {
        Ok(self
            .live()?
            .into_iter()
            .filter(|i| i.owner == owner)
            .map(|i| i.resource)
            .collect())
    }

    /// Removes the lock file of `resource` if it is stale (expired or dead holder) or broken,
    /// re-checked under the fence lock; a broken file is moved to `quarantine` instead of
    /// deleted. Returns what was done, `None` when the lock is live (or gone).
    pub fn clear_if_stale_or_broken(
        &self,
        resource: &str,
        quarantine: impl FnOnce(&std::path::Path) -> Result<(), crate::store::StoreError>,
    ) -> Result<Option<&'static str>, LockError> {
        match self.remove_stale(resource, None) {
            Ok(true) => Ok(Some("removed")),
            Ok(false) => Ok(None),
            Err(LockError::Record(RecordError::Corrupt { path, .. })) => {
                quarantine(&path)?;
                Ok(Some("quarantined"))
            }
            Err(e) => Err(e),
        }
    }

    /// Removes the lock on `resource` when it is stale — and, given a `nonce`, still the
    /// acquisition judged: on files under the resource's fence, expired or its process
    /// provably gone; on etcd (where expiry is the lease's, so an expired lock is already
    /// gone) its process provably gone. Returns whether it removed it.
    fn remove_stale(&self, resource: &str, nonce: Option<Uuid>) -> Result<bool, LockError> {
        #[cfg(feature = "etcd")]
        if let Store::Etcd(etcd) = self.ws.store() {
            return match etcd::read(etcd, resource)? {
                Some(current) => etcd::remove_if_dead(&self.ws, etcd, &current, nonce),
                None => Ok(false),
            };
        }
        let fence = self.fence(resource)?;
        self.remove_if_stale(&fence, resource, nonce)
    }

    /// Removes the lock file of `resource` when it is stale (expired, or its process provably
    /// gone) — and, given a `nonce`, still the acquisition judged — waking the next waiter.
    /// Called under the resource's fence. Returns whether it removed it.
    fn remove_if_stale(
        &self,
        fence: &FileLock,
        resource: &str,
        nonce: Option<Uuid>,
    ) -> Result<bool, LockError> {
        let stale = self.read_lock(resource)?.filter(|current| {
            current.state() != LockState::Live && nonce.is_none_or(|n| n == current.nonce)
        });
        let Some(stale) = stale else {
            return Ok(false);
        };
        let event = lock_event(
            "lock.expired",
            &stale,
            serde_json::json!({ "state": stale.state().as_str() }),
        );
        self.remove_journaled(fence, event, &stale)?;
        self.poke_next(resource);
        Ok(true)
    }

    /// Makes `change` under `fence`, journaled as `event` (see [`Pending`]): a holder killed
    /// between the change and its entry leaves a note the next holder journals.
    fn journaled<T>(
        &self,
        fence: &FileLock,
        event: Event,
        effect: Effect,
        change: impl FnOnce() -> Result<T, LockError>,
    ) -> Result<T, LockError> {
        let pending = Pending::note(&self.ws, fence, event, effect);
        let made = change()?;
        pending.done();
        Ok(made)
    }

    /// Removes `current`'s lock file under `fence`, journaled as `event`.
    fn remove_journaled(
        &self,
        fence: &FileLock,
        event: Event,
        current: &LockInfo,
    ) -> Result<(), LockError> {
        self.journaled(fence, event, self.gone(current), || {
            Ok(fs::remove_file_if_exists(
                &self.lock_path(&current.resource),
            )?)
        })
    }

    /// The effect of ending `info`'s acquisition: its lock file gone or another's.
    fn gone(&self, info: &LockInfo) -> Effect {
        Effect::lacks(
            &self.ws,
            &self.lock_path(&info.resource),
            "/nonce",
            info.nonce.to_string(),
        )
    }

    /// The journal's event of renewing a lock as `renewed`.
    fn renewed_event(renewed: &LockInfo) -> Event {
        lock_event(
            "lock.renewed",
            renewed,
            serde_json::json!({ "expires_at": renewed.expires_at }),
        )
    }

    /// On etcd: the pending journal event of renewing a lock as `renewed`.
    #[cfg(feature = "etcd")]
    fn renewal(&self, renewed: &LockInfo) -> Option<(String, Vec<u8>)> {
        crate::journal::pending(&self.ws, &[Self::renewed_event(renewed)])
    }

    /// Writes `renewed` over its lock file under `fence`, journaled as `lock.renewed`.
    fn write_renewal(&self, fence: &FileLock, renewed: &LockInfo) -> Result<(), LockError> {
        let event = Self::renewed_event(renewed);
        let effect = Effect::has(
            &self.ws,
            &self.lock_path(&renewed.resource),
            "/expires_at",
            serde_json::to_value(renewed.expires_at).unwrap_or_default(),
        );
        self.journaled(fence, event, effect, || self.write_lock(renewed, true))
    }

    /// The guard of an acquisition [`attempt`](Self::attempt) counted for this thread.
    fn guard(&self, info: LockInfo) -> LockGuard {
        LockGuard {
            locks: self.clone(),
            info,
            released: false,
        }
    }

    /// One try, under the resource's kernel lock; a success is counted as a guard of this
    /// thread before the kernel lock is let go (so another thread never sees a lock of this
    /// process that no thread holds).
    fn attempt(&self, request: &LockRequest, started: Instant) -> Result<LockInfo, LockError> {
        let began = Instant::now();
        #[cfg(feature = "etcd")]
        if let Store::Etcd(etcd) = self.ws.store() {
            return self.attempt_etcd(etcd, request, started);
        }
        let resource = &request.resource;
        let _paths = self.paths_lock_for(resource)?;
        let fence = self.fence(resource)?;
        if let Some(current) = self.read_lock(resource)? {
            let live = current.state() == LockState::Live;
            if live && current.owner == request.owner && may_reenter(&current) {
                // Re-acquiring what we hold renews it (same token, same nonce). An expired
                // lock of ours is a new acquisition with a new token: someone may have
                // judged it stale meanwhile.
                let mut renewed = current;
                renewed.expire_in(request.ttl);
                self.write_renewal(&fence, &renewed)?;
                interest::remove(self, resource, &request.owner)?;
                held::add_guard(self, &renewed, request.ttl, began);
                return Ok(renewed);
            }
            if live {
                return Err(LockError::Held {
                    holder: Box::new(current),
                });
            }
            // Stale: we hold the fence, so nobody else can be removing or replacing it now.
            let stolen = lock_event(
                "lock.stolen",
                &current,
                serde_json::json!({ "state": current.state().as_str(), "by": request.owner }),
            );
            self.journaled(&fence, stolen, self.gone(&current), || {
                Ok(fs::remove_file_if_exists(&self.lock_path(resource))?)
            })?;
        }
        self.refuse_if_reserved(resource, &request.owner)?;
        if let Some(next) = interest::first_in_line(self, resource)?
            && next.agent != request.owner
        {
            return Err(LockError::Queued {
                resource: resource.clone(),
                next: Box::new(next),
            });
        }
        let floor = self.ws.config().token_floor.unwrap_or(0);
        let token = fence.next_counter(|| Ok(floor), self.durability == Durability::Fsync)?;
        let info = LockInfo {
            purpose: request.purpose.clone(),
            bound_to_process: request.bound_to_process,
            metadata: request.metadata.clone(),
            ..LockInfo::acquired(resource.clone(), request.owner.clone(), token, request.ttl)
        };
        let acquired = acquired_event(&info, started);
        let held = Effect::has(
            &self.ws,
            &self.lock_path(resource),
            "/nonce",
            info.nonce.to_string(),
        );
        self.journaled(&fence, acquired, held, || self.write_lock(&info, false))?;
        interest::remove(self, resource, &request.owner)?;
        held::add_guard(self, &info, request.ttl, began);
        drop(fence);
        Ok(info)
    }

    /// [`attempt`](Self::attempt) on the etcd store: one transaction creates the key when it
    /// does not exist; a live lock of the same owner is re-entered like on files.
    #[cfg(feature = "etcd")]
    fn attempt_etcd(
        &self,
        etcd: &crate::store::etcd::Etcd,
        request: &LockRequest,
        started: Instant,
    ) -> Result<LockInfo, LockError> {
        let resource = &request.resource;
        loop {
            let began = Instant::now();
            // The lock, the line and (for a path) the reservations, in one read.
            let look = etcd::look(etcd, resource, pattern::is_path(resource))?;
            if look.current.is_none()
                && let Some(next) = look.line.into_iter().next()
                && next.agent != request.owner
            {
                return Err(LockError::Queued {
                    resource: resource.clone(),
                    next: Box::new(next),
                });
            }
            if let Some(current) = look.current {
                if etcd::remove_if_dead(&self.ws, etcd, &current, None)? {
                    continue; // its holder's process is provably gone: taken like on files
                }
                if current.info.owner != request.owner || !may_reenter(&current.info) {
                    return Err(LockError::Held {
                        holder: Box::new(current.info),
                    });
                }
                let mut renewed = current.info.clone();
                renewed.expire_in(request.ttl);
                if etcd::rewrite(
                    etcd,
                    &current,
                    &renewed,
                    request.ttl,
                    self.renewal(&renewed),
                )? {
                    crate::journal::settle_etcd(&self.ws);
                    held::add_guard(self, &renewed, request.ttl, began);
                    return Ok(renewed);
                }
                continue; // released or taken meanwhile: look again
            }
            let info = LockInfo {
                purpose: request.purpose.clone(),
                bound_to_process: request.bound_to_process,
                metadata: request.metadata.clone(),
                ..LockInfo::acquired(resource.clone(), request.owner.clone(), 0, request.ttl)
            };
            // A path: no reservation of another agent may cover it, checked against the
            // reservations as of `seen` (the transaction compares it). The waiter's own
            // place in line goes when its wait ends.
            let paths = match look.paths {
                Some((seen, reservations)) => {
                    refuse_if_covered(&reservations, resource, &request.owner)?;
                    Some(seen.paths)
                }
                None => None,
            };
            let acquired = acquired_event(&info, started);
            if let Ok(info) = etcd::take(&self.ws, etcd, info, request.ttl, paths, acquired)? {
                crate::journal::settle_etcd(&self.ws);
                held::add_guard(self, &info, request.ttl, began);
                return Ok(info);
            }
        }
    }

    fn renew_checked(
        &self,
        resource: &str,
        owner: &str,
        nonce: Option<Uuid>,
        ttl: Duration,
    ) -> Result<LockInfo, LockError> {
        validate_resource(resource)?;
        #[cfg(feature = "etcd")]
        if let Store::Etcd(etcd) = self.ws.store() {
            let current = self.owned_etcd(etcd, resource, owner, nonce)?;
            let mut renewed = current.info.clone();
            renewed.expire_in(ttl);
            if !etcd::rewrite(etcd, &current, &renewed, ttl, self.renewal(&renewed))? {
                return Err(LockError::NotHeld {
                    resource: resource.to_owned(),
                });
            }
            crate::journal::settle_etcd(&self.ws);
            return Ok(renewed);
        }
        let _paths = self.paths_lock_for(resource)?;
        let fence = self.fence(resource)?;
        let mut renewed = self.owned(resource, owner, nonce)?;
        if renewed.state() != LockState::Live {
            // Reviving a lock that lapsed: a reservation may have been granted meanwhile.
            self.refuse_if_reserved(resource, owner)?;
        }
        renewed.expire_in(ttl);
        self.write_renewal(&fence, &renewed)?;
        Ok(renewed)
    }

    /// Drops one guard of `info`'s acquisition; the last one releases the lock. Under the
    /// fence, so the count and the file change together.
    fn release_guard(&self, info: &LockInfo) -> Result<(), LockError> {
        #[cfg(feature = "etcd")]
        if let Store::Etcd(etcd) = self.ws.store() {
            if held::drop_guard(info.nonce) {
                self.remove_etcd(etcd, &info.resource, &info.owner, Some(info.nonce))?;
            }
            return Ok(());
        }
        let fence = self.fence(&info.resource)?;
        if !held::drop_guard(info.nonce) {
            return Ok(());
        }
        let current = self.owned(&info.resource, &info.owner, Some(info.nonce))?;
        self.remove_journaled(
            &fence,
            lock_event("lock.released", &current, Value::Null),
            &current,
        )?;
        self.poke_next(&info.resource);
        Ok(())
    }

    fn release_checked(
        &self,
        resource: &str,
        owner: &str,
        nonce: Option<Uuid>,
    ) -> Result<LockInfo, LockError> {
        validate_resource(resource)?;
        #[cfg(feature = "etcd")]
        if let Store::Etcd(etcd) = self.ws.store() {
            return self.remove_etcd(etcd, resource, owner, nonce);
        }
        let fence = self.fence(resource)?;
        let current = self.owned(resource, owner, nonce)?;
        self.remove_journaled(
            &fence,
            lock_event("lock.released", &current, Value::Null),
            &current,
        )?;
        self.poke_next(resource);
        Ok(current)
    }

    /// The lock on `resource` in etcd, if `owner` (and, when given, this acquisition) holds it.
    #[cfg(feature = "etcd")]
    fn owned_etcd(
        &self,
        etcd: &crate::store::etcd::Etcd,
        resource: &str,
        owner: &str,
        nonce: Option<Uuid>,
    ) -> Result<etcd::Current, LockError> {
        let current = etcd::read(etcd, resource)?.ok_or_else(|| LockError::NotHeld {
            resource: resource.to_owned(),
        })?;
        if current.info.owner != owner || nonce.is_some_and(|n| n != current.info.nonce) {
            return Err(LockError::NotOwner {
                holder: Box::new(current.info),
                caller: owner.to_owned(),
            });
        }
        Ok(current)
    }

    /// Releases `owner`'s lock on `resource` in etcd (the acquisition read, nothing newer).
    #[cfg(feature = "etcd")]
    fn remove_etcd(
        &self,
        etcd: &crate::store::etcd::Etcd,
        resource: &str,
        owner: &str,
        nonce: Option<Uuid>,
    ) -> Result<LockInfo, LockError> {
        let current = self.owned_etcd(etcd, resource, owner, nonce)?;
        let released = lock_event("lock.released", &current.info, Value::Null);
        if !etcd::remove(
            etcd,
            &current,
            crate::journal::pending(&self.ws, &[released]),
        )? {
            return Err(LockError::NotHeld {
                resource: resource.to_owned(),
            });
        }
        crate::journal::settle_etcd(&self.ws);
        Ok(current.info)
    }

    /// Wakes the first waiter in line for a lock that just became free. Best effort: a waiter
    /// that misses it looks again on its recheck timer.
    fn poke_next(&self, resource: &str) {
        if let Ok(Some(next)) = interest::first_in_line(self, resource) {
            interest::poke(&self.dir, resource, &next.agent);
        }
    }

    /// The lock on `resource` if `owner` (and, when given, this acquisition) holds it.
    fn owned(
        &self,
        resource: &str,
        owner: &str,
        nonce: Option<Uuid>,
    ) -> Result<LockInfo, LockError> {
        let current = self
            .read_lock(resource)?
            .ok_or_else(|| LockError::NotHeld {
                resource: resource.to_owned(),
            })?;
        if current.owner != owner || nonce.is_some_and(|n| n != current.nonce) {
            return Err(LockError::NotOwner {
                holder: Box::new(current),
                caller: owner.to_owned(),
            });
        }
        Ok(current)
    }

    /// The kernel lock ordering locks and reservations (see [`Reservations`]): exclusive
    /// for a change to reservations, shared for a lock acquisition. Taken before a `.fence`.
    fn paths_lock(&self, shared: bool) -> Result<FileLock, FsError> {
        let path = self.dir.join(".paths");
        if shared {
            self.ws.kernel_lock_shared(&path)
        } else {
            self.ws.kernel_lock(&path)
        }
    }

    /// The shared `.paths` lock for acquiring `resource`; none for `@` resources, which no
    /// pattern covers.
    fn paths_lock_for(&self, resource: &str) -> Result<Option<FileLock>, FsError> {
        if !pattern::is_path(resource) {
            return Ok(None);
        }
        self.paths_lock(true).map(Some)
    }

    /// Fails with [`LockError::Conflict`] when another agent's live reservation covers
    /// `resource`. Called holding the `.paths` lock shared.
    fn refuse_if_reserved(&self, resource: &str, owner: &str) -> Result<(), LockError> {
        let candidates = match pattern::Pattern::new(resource) {
            Ok(path) => Reservations::of(self).live_overlapping(&[path])?,
            Err(_) => Reservations::of(self).live()?,
        };
        refuse_if_covered(&candidates, resource, owner)
    }

    /// The kernel lock serializing every change to `resource`'s lock file.
    fn fence(&self, resource: &str) -> Result<FileLock, FsError> {
        self.ws.kernel_lock(&self.fence_path(resource))
    }

    pub(crate) fn read_lock(&self, resource: &str) -> Result<Option<LockInfo>, LockError> {
        #[cfg(feature = "etcd")]
        if let Store::Etcd(etcd) = self.ws.store() {
            return Ok(etcd::read(etcd, resource)?.map(|c| c.info));
        }
        let path = self.lock_path(resource);
        match fs::read_if_exists(&path)? {
            Some(bytes) => Ok(Some(record::decode(&path, "lock file", &bytes)?)),
            None => Ok(None),
        }
    }

    fn write_lock(&self, info: &LockInfo, replace: bool) -> Result<(), LockError> {
        let staged = atomic::stage(&self.ws.tmp_dir(), &record::encode(info), self.durability)?;
        let path = self.lock_path(&info.resource);
        if replace {
            staged.replace(&path)?;
        } else {
            staged.publish_new(&path)?;
        }
        Ok(())
    }

    fn lock_path(&self, resource: &str) -> PathBuf {
        self.dir.join(format!("{}.lock", name::file_name(resource)))
    }

    fn fence_path(&self, resource: &str) -> PathBuf {
        self.dir
            .join(format!("{}.fence", name::file_name(resource)))
    }
}

/// Fails with [`LockError::Conflict`] when one of `reservations` (live ones) of another
/// agent covers `resource`.
fn refuse_if_covered(
    reservations: &[LockInfo],
    resource: &str,
    owner: &str,
) -> Result<(), LockError> {
    match reservation::covering(reservations, resource, owner).next() {
        Some(holder) => Err(LockError::Conflict {
            wanted: resource.to_owned(),
            holder: Box::new(holder.clone()),
            unsure: false,
        }),
        None => Ok(()),
    }
}

/// Whether the live lock `current` of the caller's own agent may be taken again by this
/// thread: when this thread holds a guard on it; in any process when it is not bound to one
/// (two `maos` commands); by the process that took it when no guard holds it any more
/// (persisted).
fn may_reenter(current: &LockInfo) -> bool {
    match held::holder(current.nonce) {
        held::Holder::ThisThread => true,
        held::Holder::OtherThread => false,
        held::Holder::Nobody => {
            !current.bound_to_process || current.process() == ProcessIdentity::current()
        }
    }
}

/// While alive, this agent is in line for a resource and recorded as waiting for it; both
/// records are removed on drop, whatever way the wait ends.
struct Waiting<'a> {
    locks: &'a Locks,
    resource: String,
    agent: String,
    /// Removes the wait record after the interest (set once the record is written).
    _wait: Option<deadlock::ClearWaitOnDrop>,
}

impl<'a> Waiting<'a> {
    fn register(
        locks: &'a Locks,
        request: &LockRequest,
        me: &ProcessIdentity,
        until: Timestamp,
    ) -> Result<Self, LockError> {
        let mut waiting = Self {
            locks,
            resource: request.resource.clone(),
            agent: request.owner.clone(),
            _wait: None,
        };
        let since = Timestamp::now();
        if locks.ws.store().is_files() {
            // Under the fence: a reader of the line deletes stale entries, and must never
            // take this fresh one for the stale one it just judged.
            let _fence = locks.fence(&request.resource)?;
            interest::register(locks, request, me, since, until)?;
        } else {
            // On etcd a stale interest is removed by the cluster (its lease), not by readers.
            interest::register(locks, request, me, since, until)?;
        }
        deadlock::record_wait(
            &locks.ws,
            &request.owner,
            &request.resource,
            deadlock::WaitKind::Lock,
            me,
            since,
            until,
        )?;
        waiting._wait = Some(deadlock::ClearWaitOnDrop::new(&locks.ws, &request.owner));
        Ok(waiting)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        // Best effort: a leftover interest of a finished wait expires, and its process is gone.
        let _ = interest::remove(self.locks, &self.resource, &self.agent);
        // Leaving the line while the lock is free (timed out, or chosen as a deadlock
        // victim): the next waiter must not wait for its timer. (On etcd waiters are woken
        // by their watch and look at the line on their recheck.)
        if self.locks.ws.store().is_files() && !self.locks.lock_path(&self.resource).exists() {
            self.locks.poke_next(&self.resource);
        }
    }
}

/// Whether the (broken) text of a lock file has `"owner": "<owner>"`, whitespace aside.
fn names_owner(text: &str, owner: &str) -> bool {
    let quoted = format!("\"{owner}\"");
    text.match_indices("\"owner\"").any(|(at, key)| {
        let rest = text[at + key.len()..].trim_start();
        rest.strip_prefix(':')
            .is_some_and(|value| value.trim_start().starts_with(&quoted))
    })
}

/// A duration as jiff's signed one, saturating (a TTL of years is "forever").
/// Announces an operator break on `broadcast/locks` (`lock-broken` or `reservation-broken`).
/// The break is done: a notice that cannot be sent (full disk) must not undo it.
fn announce_break(ws: &Workspace, broken: &LockInfo, by: &str, reason: &str) {
    let kind = match broken.kind {
        LockKind::Lock => "lock-broken",
        LockKind::Reservation => "reservation-broken",
    };
    let _ = crate::channel::broadcast(
        ws,
        TOPIC,
        by,
        crate::channel::Draft::new(serde_json::json!({
            "event": "broken",
            "resource": broken.resource,
            "holder": broken.owner,
            "token": broken.token,
            "by": by,
            "reason": reason,
        }))
        .kind(kind),
    );
}

/// The journal entry of acquiring `info`, asked for at `started`.
fn acquired_event(info: &LockInfo, started: Instant) -> Event {
    lock_event(
        "lock.acquired",
        info,
        serde_json::json!({
            "purpose": info.purpose,
            "expires_at": info.expires_at,
            "waited_ms": started.elapsed().as_millis() as u64,
        }),
    )
}

/// The journal entry of `kind` for `info`'s lock: its owner, resource and token, and
/// `details` (an object, or null).
fn lock_event(kind: &str, info: &LockInfo, details: Value) -> Event {
    let mut data = Map::new();
    data.insert("token".into(), info.token.into());
    if let Value::Object(details) = details {
        data.extend(details);
    }
    Event::new(kind)
        .agent(info.owner.clone())
        .subject(info.resource.clone())
        .data(Value::Object(data))
}

fn is_false(b: &bool) -> bool {
    !b
}

fn signed(d: Duration) -> SignedDuration {
    SignedDuration::try_from(d).unwrap_or(SignedDuration::from_hours(24 * 365 * 100))
}

/// Checks a resource name: a `/`-separated path of valid names that fits in a file name
/// (see [`name::file_name`]).
pub fn validate_resource(resource: &str) -> Result<(), NameError> {
    name::validate_path(NameKind::Resource, resource)
}

#[cfg(test)]
mod tests;

/// A trace line for a lock taken (with `MAOS_LOG=debug`).
fn traced_acquired(info: &LockInfo) {
    tracing::debug!(
        resource = %info.resource,
        owner = %info.owner,
        token = info.token,
        "lock acquired"
    );
}
