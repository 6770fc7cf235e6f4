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
//! [`SESSION`] long, whatever the lock's time to live, and the holder's renewal thread keeps
//! putting it under a fresh one: a holder killed (or stopped) loses the lock within
//! [`SESSION`], by the cluster's clock — what "its process is provably gone" is on one host.
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

use super::{ListedLock, LockError, LockInfo};
use crate::name;
use crate::record::{self, RecordError};
use crate::store::etcd::{Etcd, EtcdWatch, Kv, Outcome, written};

/// A lock as read: its record (token = create revision) and its lease.
pub(super) struct Current {
    pub(super) info: LockInfo,
    lease: i64,
}

/// The longest lease of a lock bound to its process (renewed every third of it).
pub(super) const SESSION: Duration = Duration::from_secs(10);

/// How long the lease of `info`'s key is: its time to live, at most [`SESSION`] for a lock
/// bound to its process.
pub(super) fn lease_for(info: &LockInfo, ttl: Duration) -> Duration {
    if info.bound_to_process {
        ttl.min(SESSION)
    } else {
        ttl
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
    let (kvs, _) = etcd.list("locks/")?;
    let base = base(etcd)?;
    Ok(kvs
        .iter()
        .filter(|kv| {
            kv.key
                .strip_prefix("locks/")
                .is_some_and(|n| !n.contains('/') && n.ends_with(".lock"))
        })
        .map(|kv| ListedLock {
            path: path(etcd, &kv.key),
            info: decode(etcd, kv, base).map(|c| c.info),
        })
        .collect())
}

/// Takes the lock for `info` if nobody holds it: `Ok(info)` with its token, or `Err(())`
/// when the key exists (the caller reads who holds it).
pub(super) fn take(
    etcd: &Etcd,
    mut info: LockInfo,
    ttl: Duration,
) -> Result<Result<LockInfo, ()>, LockError> {
    let rel = key(&info.resource);
    let key = etcd.key(&rel);
    let lease = etcd.grant(lease_for(&info, ttl))?;
    info.token = 0;
    let txn = Txn::new()
        .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
        .and_then([TxnOp::put(
            key,
            record::encode(&info),
            Some(PutOptions::new().with_lease(lease)),
        )]);
    // Recognised by its nonce; its token is the key's create revision (plus the base).
    let nonce = info.nonce;
    let base = base(etcd)?;
    let outcome = etcd.txn("take a lock", txn, |etcd| {
        Ok(etcd
            .get(&rel)?
            .filter(|kv| decode(etcd, kv, base).is_ok_and(|c| c.info.nonce == nonce))
            .map(|kv| kv.create_revision))
    })?;
    let Outcome::Applied { revision, .. } = outcome else {
        let _ = etcd.revoke(lease);
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
) -> Result<bool, LockError> {
    let rel = key(&renewed.resource);
    let key = etcd.key(&rel);
    let lease = etcd.grant(lease_for(renewed, ttl))?;
    let mut record = renewed.clone();
    record.token = 0;
    let encoded = record::encode(&record);
    let txn = Txn::new()
        .when([same_acquisition(etcd, &key, &current.info)?])
        .and_then([TxnOp::put(
            key,
            encoded.clone(),
            Some(PutOptions::new().with_lease(lease)),
        )]);
    let done = etcd
        .txn("renew a lock", txn, |etcd| {
            Ok(written(etcd.get(&rel)?, &encoded))
        })?
        .applied();
    let _ = etcd.revoke(if done { current.lease } else { lease });
    if done {
        expire_now_if_no_time(etcd, lease, ttl)?;
    }
    Ok(done)
}

/// Removes `current`'s key if it is still that acquisition; false when it is not.
pub(super) fn remove(etcd: &Etcd, current: &Current) -> Result<bool, LockError> {
    let rel = key(&current.info.resource);
    let key = etcd.key(&rel);
    let txn = Txn::new()
        .when([same_acquisition(etcd, &key, &current.info)?])
        .and_then([TxnOp::delete(key, None)]);
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
        let _ = etcd.revoke(current.lease);
    }
    Ok(removed)
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

/// Wake-ups for every change of `resource`'s lock.
pub(super) fn watch(etcd: &Arc<Etcd>, resource: &str) -> Result<EtcdWatch, LockError> {
    Ok(etcd.watch(&key(resource))?)
}
