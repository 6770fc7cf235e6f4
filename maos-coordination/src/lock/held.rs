//! The lock guards this process holds: who (which thread) holds each acquisition, how many
//! guards share it, and a renewal thread that keeps each one alive while it is held.
//!
//! A kernel lock or a lock file says which *process* holds a lock; two threads of one process
//! must still exclude each other (invariant L7). So an acquisition is re-entered only by the
//! thread that holds it — it gets a counted guard, and the lock is released when the last
//! guard drops — while any other thread of the process waits like another process would.
//!
//! **Renewal.** A guard held by a running process never loses its lock to expiry: every held
//! acquisition is renewed when a third of its lifetime has passed. A process that is stopped
//! (SIGSTOP, a closed laptop lid) renews nothing, so its lease runs out on time and another
//! agent may take over — the lease is the promise, and the fencing token tells the two apart.
//!
//! **Knowing the lease is lost.** Each acquisition also keeps the instant until which it is
//! surely still held: its last successful renewal's start plus its lifetime, less a margin.
//! [`check`] fails once that instant passed (the process was stopped, or cut off from the
//! etcd cluster so that no renewal got through) or once a renewal found the lock taken or
//! broken — so a holder asks before it acts, and does not act on a lock it may have lost.

use std::collections::HashMap;
use std::sync::{Condvar, LazyLock, Mutex, MutexGuard, PoisonError};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::{LockInfo, Locks};

/// Renewals are never more frequent than this.
const MIN_RENEW_EVERY: Duration = Duration::from_millis(50);

struct Held {
    thread: ThreadId,
    guards: usize,
    locks: Locks,
    resource: String,
    owner: String,
    ttl: Duration,
    /// How long one renewal keeps it: its time to live, or on etcd the shorter lease of a
    /// lock bound to its process.
    lease: Duration,
    next_renewal: Instant,
    /// Until when the lock is surely still held (see the module docs).
    held_until: Instant,
    /// Why a renewal found it no longer ours.
    lost: Option<String>,
}

/// What is surely still held after a renewal that began at `began`: its lifetime, less a
/// tenth (at least 100 ms) for the time the renewal took and for clocks that run at
/// slightly different rates.
fn surely_held_until(began: Instant, ttl: Duration) -> Instant {
    let margin = (ttl / 10).max(Duration::from_millis(100)).min(ttl);
    began + (ttl - margin)
}

struct Registry {
    held: Mutex<HashMap<Uuid, Held>>,
    changed: Condvar,
}

static REGISTRY: LazyLock<Registry> = LazyLock::new(|| {
    // The renewal thread lives as long as the process; it sleeps while nothing is held. A
    // process that cannot start it still holds its locks, they just are not renewed.
    let _ = std::thread::Builder::new()
        .name("maos-lock-renewal".into())
        .spawn(renew_loop);
    Registry {
        held: Mutex::new(HashMap::new()),
        changed: Condvar::new(),
    }
});

fn held() -> MutexGuard<'static, HashMap<Uuid, Held>> {
    REGISTRY.held.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Who in this process holds the acquisition `nonce`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Holder {
    /// The calling thread.
    ThisThread,
    /// Another thread of this process.
    OtherThread,
    /// No guard of this process.
    Nobody,
}

pub(super) fn holder(nonce: Uuid) -> Holder {
    match held().get(&nonce) {
        Some(h) if h.thread == std::thread::current().id() => Holder::ThisThread,
        Some(_) => Holder::OtherThread,
        None => Holder::Nobody,
    }
}

/// Records one more guard of the calling thread on `info`'s acquisition, renewed every third
/// of `ttl`.
pub(super) fn add_guard(locks: &Locks, info: &LockInfo, ttl: Duration, began: Instant) {
    let mut held = held();
    let lease = locks.lease_of(info, ttl);
    let every = (lease / 3).max(MIN_RENEW_EVERY);
    held.entry(info.nonce)
        .and_modify(|h| {
            h.guards += 1;
            h.ttl = ttl;
            h.lease = lease;
            h.next_renewal = Instant::now() + every;
            h.held_until = surely_held_until(began, lease);
        })
        .or_insert_with(|| Held {
            thread: std::thread::current().id(),
            guards: 1,
            locks: locks.clone(),
            resource: info.resource.clone(),
            owner: info.owner.clone(),
            ttl,
            lease,
            next_renewal: Instant::now() + every,
            held_until: surely_held_until(began, lease),
            lost: None,
        });
    REGISTRY.changed.notify_all();
}

/// Drops one guard of `nonce`; true when it was the last one (the lock is to be released).
pub(super) fn drop_guard(nonce: Uuid) -> bool {
    let mut held = held();
    match held.get_mut(&nonce) {
        Some(h) if h.guards > 1 => {
            h.guards -= 1;
            false
        }
        Some(_) => {
            held.remove(&nonce);
            true
        }
        None => true,
    }
}

/// Whether the acquisition `nonce` is surely still held by this process: the reason when
/// it may not be.
pub(super) fn check(nonce: Uuid) -> Result<(), String> {
    let held = held();
    let Some(h) = held.get(&nonce) else {
        return Err("no guard of this process holds it".into());
    };
    if let Some(lost) = &h.lost {
        return Err(lost.clone());
    }
    let now = Instant::now();
    if now >= h.held_until {
        return Err(format!(
            "its lease may have run out: no renewal got through for {:.1}s of its {:.1}s lease",
            (now - h.held_until + h.lease).as_secs_f64(),
            h.lease.as_secs_f64()
        ));
    }
    Ok(())
}

/// Forgets `nonce`: no guard holds it any more and it is not renewed (a persisted guard).
pub(super) fn forget(nonce: Uuid) {
    held().remove(&nonce);
}

/// A renewal time that never comes (a lost acquisition is not renewed again).
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600)
}

fn renew_loop() {
    loop {
        let due: Vec<(Uuid, Locks, String, String, Duration)> = {
            let mut held = held();
            loop {
                let now = Instant::now();
                let next = held.values().map(|h| h.next_renewal).min();
                match next {
                    Some(at) if at <= now => break,
                    Some(at) => {
                        held = REGISTRY
                            .changed
                            .wait_timeout(held, at - now)
                            .unwrap_or_else(PoisonError::into_inner)
                            .0;
                    }
                    None => {
                        held = REGISTRY
                            .changed
                            .wait(held)
                            .unwrap_or_else(PoisonError::into_inner);
                    }
                }
            }
            let now = Instant::now();
            held.iter_mut()
                .filter(|(_, h)| h.next_renewal <= now)
                .map(|(nonce, h)| {
                    h.next_renewal = now + (h.lease / 3).max(MIN_RENEW_EVERY);
                    (
                        *nonce,
                        h.locks.clone(),
                        h.resource.clone(),
                        h.owner.clone(),
                        h.ttl,
                    )
                })
                .collect()
        };
        for (nonce, locks, resource, owner, ttl) in due {
            // A lock that is no longer ours (expired and taken over while the process was
            // stopped, broken by an operator) is not renewed again; its guard's `check` says
            // so, and it finds out too when it renews or releases.
            let began = Instant::now();
            let renewed = locks.renew_checked(&resource, &owner, Some(nonce), ttl);
            let mut held = held();
            let Some(h) = held.get_mut(&nonce) else {
                continue;
            };
            match renewed {
                Ok(_) => h.held_until = surely_held_until(began, h.lease),
                Err(e @ (super::LockError::NotHeld { .. } | super::LockError::NotOwner { .. })) => {
                    h.lost = Some(e.to_string());
                    h.next_renewal = far_future();
                }
                // Unreachable store, full disk: tried again at the next renewal; `check`
                // fails once the lease may have run out meanwhile.
                Err(_) => {}
            }
        }
    }
}
