//! Locks in etcd: `locks/<resource>.lock` holds the same record as the lock file, put with a
//! lease of the lock's lifetime.
//!
//! **Expiry is the cluster's.** The key is attached to an etcd lease of the lock's time to
//! live; renewing it puts the record again under a fresh lease (and revokes the old one). A
//! holder that stops renewing — killed, paused, cut off from the cluster — loses the key when
//! its lease runs out, by the cluster's clock, whatever the hosts' clocks say; nobody has to
//! judge the holder's process.
//!
//! **A lock bound to its process lives as long as the process.** Its lease is at most
//! [`SESSION`] long, whatever the lock's time to live — the process's session lease (see
//! `Etcd::session`), or for a shorter lifetime a lease of its own — and the holder's renewal
//! thread rewrites it every third of that: a holder killed (or stopped) loses the lock within
//! [`SESSION`], by the cluster's clock — what "its process is provably gone" is on one host.
//! A holder on the same host as its judge whose process is provably gone loses it at once,
//! as on files (a conditional delete of that acquisition).
//!
//! **The fencing token is a revision.** Taking a lock is one transaction: create the key if
//! it does not exist (`create_revision == 0`). The key's create revision is the acquisition's
//! token — strictly greater than every earlier acquisition's of any lock in the cluster — and
//! every later change (renewal, release) compares it, so a holder whose lease ran out and
//! whose lock was taken since can change nothing. The record's own `token` field is written
//! as 0 and read back as the create revision plus `locks/.token_base` — 0, unless `maos store
//! migrate` moved locks here from files: then the highest file token, so that tokens keep
//! increasing across the move.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp};

use super::{ListedLock, LockError, LockInfo, LockState};
use crate::journal::Event;
use crate::name;
use crate::record::{self, RecordError};
use crate::store::etcd::{Etcd, EtcdWatch, Kv, Outcome, written};
use crate::workspace::Workspace;

/// A lock as read: its record (token = create revision) and its lease.
pub(super) struct Current {
    pub(super) info: LockInfo,
    lease: i64,
}

/// The longest lease of a lock bound to its process (renewed every third of it).
pub(super) const SESSION: Duration = crate::store::etcd::SESSION_TTL;

/// How long the lease of `info`'s key is: its time to live, at most [`SESSION`] for a lock
/// bound to its process.
pub(super) fn lease_for(info: &LockInfo, ttl: Duration) -> Duration {
    if info.bound_to_process {
        ttl.min(SESSION)
    } else {
        ttl
    }
}

/// The lease to put `info`'s key under for `ttl`: the process's session for a lock bound to
/// it that lives at least as long, else a new lease of [`lease_for`].
fn lease_of(etcd: &Etcd, info: &LockInfo, ttl: Duration) -> Result<i64, LockError> {
    if info.bound_to_process && ttl >= SESSION {
        return Ok(etcd.session()?);
    }
    Ok(etcd.grant(lease_for(info, ttl))?)
}

/// Ends `lease` — best effort: it runs out anyway — unless it is the process's session
/// (which other keys share).
fn end_lease(etcd: &Etcd, lease: i64) {
    if !etcd.is_session(lease) {
        let _ = etcd.revoke(lease);
    }
}

/// Added to every create revision to make a token (see the module docs).
pub(crate) const TOKEN_BASE: &str = "locks/.token_base";

fn base(etcd: &Etcd) -> Result<u64, LockError> {
    Ok(etcd.fixed_number(TOKEN_BASE)?)
}

fn key(resource: &str) -> String {
    format!("locks/{}.lock", name::file_name(resource))
}

fn path(etcd: &Etcd, key: &str) -> PathBuf {
    PathBuf::from(format!("etcd:{}", etcd.key(key)))
}

fn decode(etcd: &Etcd, kv: &Kv, base: u64) -> Result<Current, RecordError> {
    let mut info: LockInfo = record::decode(&path(etcd, &kv.key), "lock", &kv.value)?;
    info.token = u64::try_from(kv.create_revision).unwrap_or(0) + base;
    Ok(Current {
        info,
        lease: kv.lease,
    })
}

/// The lock on `resource`, if any.
pub(super) fn read(etcd: &Etcd, resource: &str) -> Result<Option<Current>, LockError> {
    match etcd.get(&key(resource))? {
        Some(kv) => Ok(Some(decode(etcd, &kv, base(etcd)?)?)),
        None => Ok(None),
    }
}

/// Every lock, sorted by key.
pub(super) fn list(etcd: &Etcd) -> Result<Vec<ListedLock>, LockError> {
    let kvs = etcd.list("locks/")?;
    listed(
        etcd,
        kvs.iter().filter(|kv| {
            kv.key
                .strip_prefix("locks/")
                .is_some_and(|n| !n.contains('/') && n.ends_with(".lock"))
        }),
    )
}

/// Locks or reservations as read, each decoded (its token the create revision plus the
/// base) or with its problem.
fn listed<'a>(
    etcd: &Etcd,
    kvs: impl Iterator<Item = &'a Kv>,
) -> Result<Vec<ListedLock>, LockError> {
    let base = base(etcd)?;
    Ok(kvs
        .map(|kv| ListedLock {
            path: path(etcd, &kv.key),
            info: decode(etcd, kv, base).map(|c| c.info),
        })
        .collect())
}

/// Takes the lock for `info` if nobody holds it: `Ok(info)` with its token, or `Err(())`
/// when the key exists (the caller reads who holds it).
///
/// A lock on a path also compares `paths` — the revision of [`PATHS_REV`] its caller read
/// with the reservations it checked — and rewrites [`LOCKS_REV`]: a reservation granted
/// meanwhile, or one being granted now, makes one of the two transactions fail.
pub(super) fn take(
    ws: &Workspace,
    etcd: &Etcd,
    mut info: LockInfo,
    ttl: Duration,
    paths: Option<i64>,
    acquired: Event,
) -> Result<Result<LockInfo, ()>, LockError> {
    let rel = key(&info.resource);
    let key = etcd.key(&rel);
    let base = base(etcd)?;
    let lease = lease_of(etcd, &info, ttl)?;
    info.token = 0;
    let mut compares = vec![Compare::create_revision(key.clone(), CompareOp::Equal, 0)];
    let mut puts = vec![TxnOp::put(
        key,
        record::encode(&info),
        Some(PutOptions::new().with_lease(lease)),
    )];
    if let Some(paths) = paths {
        compares.push(Compare::mod_revision(
            etcd.key(PATHS_REV),
            CompareOp::Equal,
            paths,
        ));
        puts.push(TxnOp::put(etcd.key(LOCKS_REV), "", None));
    }
    // Its token is the transaction's revision: filled in when the entry is chained.
    puts.extend(journal_put(
        etcd,
        crate::journal::pending_with_token(ws, &[acquired], base),
    ));
    let txn = Txn::new().when(compares).and_then(puts);
    // Recognised by its nonce; its token is the key's create revision (plus the base).
    let nonce = info.nonce;
    let outcome = etcd.txn("take a lock", txn, |etcd| {
        Ok(etcd
            .get(&rel)?
            .filter(|kv| decode(etcd, kv, base).is_ok_and(|c| c.info.nonce == nonce))
            .map(|kv| kv.create_revision))
    })?;
    let Outcome::Applied { revision, .. } = outcome else {
        end_lease(etcd, lease);
        return Ok(Err(()));
    };
    info.token = u64::try_from(revision).unwrap_or(0) + base;
    expire_now_if_no_time(etcd, lease, ttl)?;
    Ok(Ok(info))
}

/// Puts `renewed` over `current` under a fresh lease of `ttl`, if the key is still
/// `current`'s acquisition; false (nothing changed) when it is not.
pub(super) fn rewrite(
    etcd: &Etcd,
    current: &Current,
    renewed: &LockInfo,
    ttl: Duration,
    journal: Option<(String, Vec<u8>)>,
) -> Result<bool, LockError> {
    let rel = key(&renewed.resource);
    let key = etcd.key(&rel);
    let lease = lease_of(etcd, renewed, ttl)?;
    let mut record = renewed.clone();
    record.token = 0;
    let encoded = record::encode(&record);
    let txn = Txn::new()
        .when([same_acquisition(etcd, &key, &current.info)?])
        .and_then(
            std::iter::once(TxnOp::put(
                key,
                encoded.clone(),
                Some(PutOptions::new().with_lease(lease)),
            ))
            .chain(journal_put(etcd, journal))
            .collect::<Vec<_>>(),
        );
    let done = etcd
        .txn("renew a lock", txn, |etcd| {
            Ok(written(etcd.get(&rel)?, &encoded))
        })?
        .applied();
    match done {
        true if current.lease != lease => end_lease(etcd, current.lease),
        true => {}
        false => end_lease(etcd, lease),
    }
    if done {
        expire_now_if_no_time(etcd, lease, ttl)?;
    }
    Ok(done)
}

/// Removes `current`'s key if it is still that acquisition; false when it is not.
pub(super) fn remove(
    etcd: &Etcd,
    current: &Current,
    journal: Option<(String, Vec<u8>)>,
) -> Result<bool, LockError> {
    let rel = key(&current.info.resource);
    let key = etcd.key(&rel);
    let txn = Txn::new()
        .when([same_acquisition(etcd, &key, &current.info)?])
        .and_then(
            std::iter::once(TxnOp::delete(key, None))
                .chain(journal_put(etcd, journal))
                .collect::<Vec<_>>(),
        );
    // Removed when the key no longer holds this acquisition.
    let token = current.info.token;
    let base = base(etcd)?;
    let removed = etcd
        .txn("release a lock", txn, |etcd| {
            let still = etcd.get(&rel)?.is_some_and(|kv| {
                u64::try_from(kv.create_revision).ok().map(|r| r + base) == Some(token)
            });
            Ok((!still).then_some(0))
        })?
        .applied();
    if removed {
        end_lease(etcd, current.lease);
    }
    Ok(removed)
}

/// Removes `current`'s key if its holder's process is provably gone (judged on this host:
/// a holder elsewhere is never judged dead here — its lease decides) and, given a `nonce`,
/// it is that acquisition. Returns whether it removed it.
pub(super) fn remove_if_dead(
    ws: &Workspace,
    etcd: &Etcd,
    current: &Current,
    nonce: Option<uuid::Uuid>,
) -> Result<bool, LockError> {
    if current.info.state() != LockState::Dead || nonce.is_some_and(|n| n != current.info.nonce) {
        return Ok(false);
    }
    let expired = super::lock_event(
        "lock.expired",
        &current.info,
        serde_json::json!({ "state": LockState::Dead.as_str() }),
    );
    let removed = remove(etcd, current, crate::journal::pending(ws, &[expired]))?;
    crate::journal::settle_etcd(ws);
    Ok(removed)
}

/// The put of a change's journal events (`journal::pending`), if any.
pub(super) fn journal_put(etcd: &Etcd, journal: Option<(String, Vec<u8>)>) -> Option<TxnOp> {
    journal.map(|(key, value)| TxnOp::put(etcd.key(&key), value, None))
}

/// A lock given no time to live (`--ttl 0`: "let it expire now") expires at once: its lease
/// is ended rather than left to etcd's minimum lease time.
fn expire_now_if_no_time(etcd: &Etcd, lease: i64, ttl: Duration) -> Result<(), LockError> {
    if ttl.is_zero() {
        etcd.revoke(lease)?;
    }
    Ok(())
}

/// The comparison that holds while `key` is still `info`'s acquisition.
fn same_acquisition(etcd: &Etcd, key: &str, info: &LockInfo) -> Result<Compare, LockError> {
    let revision = info.token.saturating_sub(base(etcd)?);
    Ok(Compare::create_revision(
        key,
        CompareOp::Equal,
        i64::try_from(revision).unwrap_or(i64::MAX),
    ))
}

/// Rewritten by every change of reservations; compared by every acquisition of a path lock.
const PATHS_REV: &str = "locks/.paths-rev";
/// Rewritten by every acquisition of a path lock; compared by every change of reservations.
const LOCKS_REV: &str = "locks/.locks-rev";
/// Where reservations are: `<nonce>.json` (the token is the key's create revision).
const RESERVATIONS: &str = "locks/reservations/";

/// The revisions of [`PATHS_REV`] and [`LOCKS_REV`] as read before reading the records a
/// change is checked against.
#[derive(Debug, Clone, Copy)]
pub(super) struct PathsSeen {
    /// [`PATHS_REV`]'s.
    pub(super) paths: i64,
    locks: i64,
}

/// The two revisions, in one read.
pub(super) fn paths_seen(etcd: &Etcd) -> Result<PathsSeen, LockError> {
    let mut found = etcd
        .read_many(
            "read reservation revisions",
            &[(PATHS_REV, false), (LOCKS_REV, false)],
        )?
        .into_iter();
    Ok(PathsSeen::of(&mut found))
}

impl PathsSeen {
    /// From the next two results of a [`Etcd::read_many`] that read [`PATHS_REV`] then
    /// [`LOCKS_REV`] (a key not written yet: revision 0).
    fn of(found: &mut impl Iterator<Item = Vec<Kv>>) -> Self {
        let mut revision = || {
            found
                .next()
                .unwrap_or_default()
                .first()
                .map_or(0, |kv| kv.mod_revision)
        };
        let paths = revision();
        Self {
            paths,
            locks: revision(),
        }
    }
}

/// What an acquisition of `resource` looks at, read in one request as of one revision: the
/// lock, the live line of waiters (best first), and for a path the revisions of
/// [`PATHS_REV`] and [`LOCKS_REV`] with the live reservations.
pub(super) struct Look {
    pub(super) current: Option<Current>,
    pub(super) line: Vec<super::Interest>,
    pub(super) paths: Option<(PathsSeen, Vec<LockInfo>)>,
}

pub(super) fn look(etcd: &Etcd, resource: &str, is_path: bool) -> Result<Look, LockError> {
    let lock = key(resource);
    let line = super::interest::prefix(resource);
    let mut reads = vec![(lock.as_str(), false), (line.as_str(), true)];
    if is_path {
        reads.extend([(PATHS_REV, false), (LOCKS_REV, false), (RESERVATIONS, true)]);
    }
    let mut found = etcd.read_many("look at a lock", &reads)?.into_iter();
    let base = base(etcd)?;
    let current = match found.next().unwrap_or_default().first() {
        Some(kv) => Some(decode(etcd, kv, base)?),
        None => None,
    };
    let line = found
        .next()
        .unwrap_or_default()
        .iter()
        .filter_map(|kv| {
            record::decode::<super::Interest>(&path(etcd, &kv.key), "lock interest", &kv.value).ok()
        })
        .filter(super::Interest::is_live)
        .collect();
    let paths = if is_path {
        let seen = PathsSeen::of(&mut found);
        let reservations = found
            .next()
            .unwrap_or_default()
            .iter()
            .filter_map(|kv| decode(etcd, kv, base).ok().map(|c| c.info))
            .filter(|r| r.state() == super::LockState::Live)
            .collect();
        Some((seen, reservations))
    } else {
        None
    };
    Ok(Look {
        current,
        line: super::interest::ordered(line),
        paths,
    })
}

/// Every reservation, sorted by token.
pub(super) fn reservations(etcd: &Etcd) -> Result<Vec<ListedLock>, LockError> {
    let kvs = etcd.list(RESERVATIONS)?;
    let mut listed = listed(etcd, kvs.iter())?;
    listed.sort_by_key(|l| l.info.as_ref().map_or(0, |i| i.token));
    Ok(listed)
}

fn reservation_key(info: &LockInfo) -> String {
    format!("{RESERVATIONS}{}.json", info.nonce)
}

/// One transaction changing reservations, if no reservation changed and no path lock was
/// taken since `seen`: `put` (new ones, or renewed ones keeping their key and token) each
/// under a lease of `ttl` — one bound to its process under the process's session, so it
/// goes when the process does — `removed` deleted — with the journal's events of each
/// (`put` with token 0 are granted, the others renewed). Returns the revision (new
/// reservations' tokens are it plus the base), or `None` when something changed meanwhile.
pub(super) fn change_reservations(
    ws: &Workspace,
    etcd: &Etcd,
    seen: PathsSeen,
    put: &[LockInfo],
    removed: &[LockInfo],
    ttl: Duration,
) -> Result<Option<u64>, LockError> {
    let mut ops = Vec::new();
    let mut leases = Vec::new();
    for info in put {
        let lease = if info.bound_to_process {
            etcd.session()?
        } else {
            let lease = etcd.grant(ttl)?;
            leases.push(lease);
            lease
        };
        let mut record = info.clone();
        record.token = 0;
        ops.push(TxnOp::put(
            etcd.key(&reservation_key(info)),
            record::encode(&record),
            Some(PutOptions::new().with_lease(lease)),
        ));
    }
    for info in removed {
        ops.push(TxnOp::delete(etcd.key(&reservation_key(info)), None));
    }
    ops.push(TxnOp::put(etcd.key(PATHS_REV), "", None));
    let event = super::reservation::reservation_event;
    let (granted, renewed): (Vec<&LockInfo>, Vec<&LockInfo>) =
        put.iter().partition(|info| info.token == 0);
    let known: Vec<Event> = removed
        .iter()
        .map(|r| event("reservation.released", r))
        .chain(renewed.iter().map(|r| event("reservation.renewed", r)))
        .collect();
    let granted: Vec<Event> = granted
        .iter()
        .map(|r| event("reservation.granted", r))
        .collect();
    ops.extend(journal_put(etcd, crate::journal::pending(ws, &known)));
    ops.extend(journal_put(
        etcd,
        crate::journal::pending_with_token(ws, &granted, base(etcd)?),
    ));
    let txn = Txn::new()
        .when([
            Compare::mod_revision(etcd.key(PATHS_REV), CompareOp::Equal, seen.paths),
            Compare::mod_revision(etcd.key(LOCKS_REV), CompareOp::Equal, seen.locks),
        ])
        .and_then(ops);
    // Recognised by what it wrote to the first reservation it puts (its expiry is new).
    let first = put.first().map(|info| {
        let mut record = info.clone();
        record.token = 0;
        (reservation_key(info), record::encode(&record))
    });
    let outcome = etcd.txn("change reservations", txn, |etcd| match &first {
        Some((rel, value)) => Ok(written(etcd.get(rel)?, value)),
        None => Ok(None),
    })?;
    match outcome {
        Outcome::Applied { revision } => {
            Ok(Some(u64::try_from(revision).unwrap_or(0) + base(etcd)?))
        }
        Outcome::Refused => {
            for lease in leases {
                let _ = etcd.revoke(lease);
            }
            Ok(None)
        }
    }
}

/// Removes reservations `removed` (each only while it is still that grant).
pub(super) fn remove_reservations(
    ws: &Workspace,
    etcd: &Etcd,
    removed: &[LockInfo],
) -> Result<(), LockError> {
    let base = base(etcd)?;
    for info in removed {
        let released = super::reservation::reservation_event("reservation.released", info);
        let rel = reservation_key(info);
        let revision = i64::try_from(info.token.saturating_sub(base)).unwrap_or(i64::MAX);
        let txn = Txn::new()
            .when([Compare::create_revision(
                etcd.key(&rel),
                CompareOp::Equal,
                revision,
            )])
            .and_then(
                std::iter::once(TxnOp::delete(etcd.key(&rel), None))
                    .chain(journal_put(etcd, crate::journal::pending(ws, &[released])))
                    .collect::<Vec<_>>(),
            );
        etcd.txn("release a reservation", txn, |etcd| {
            Ok(etcd
                .get(&rel)?
                .is_none_or(|kv| kv.create_revision != revision)
                .then_some(0))
        })?;
    }
    crate::journal::settle_etcd(ws);
    Ok(())
}

/// Wake-ups for a waiter for `resource`: every change of its lock, and for a path every
/// change of locks and reservations (a reservation covering it may go).
pub(super) fn watch(etcd: &Arc<Etcd>, resource: &str) -> Result<EtcdWatch, LockError> {
    if super::pattern::is_path(resource) {
        return Ok(etcd.watch("locks/")?);
    }
    Ok(etcd.watch(&key(resource))?)
}
