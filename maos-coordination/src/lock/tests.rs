use std::time::Duration;

use super::*;
use crate::deadlock;

fn workspace() -> (tempfile::TempDir, Workspace) {
    let dir = tempfile::tempdir().unwrap();
    let ws = Workspace::init(dir.path()).unwrap().workspace;
    (dir, ws)
}

fn req(resource: &str, owner: &str) -> LockRequest {
    LockRequest::new(resource, owner).unwrap()
}

#[test]
fn acquire_release_and_tokens_keep_increasing() {
    let (_dir, ws) = workspace();
    let locks = Locks::new(&ws);
    let mut tokens = Vec::new();
    for _ in 0..3 {
        let guard = locks
            .try_acquire(&req("src/main.rs", "alice").purpose("edit"))
            .unwrap();
        assert_eq!(guard.info().purpose, "edit");
        tokens.push(guard.token());
        // Dropping the guard releases it synchronously.
    }
    assert_eq!(tokens, [1, 2, 3]);
    assert!(locks.show("src/main.rs").unwrap().is_none());
    assert!(ws.locks_dir().join("src%2Fmain.rs.fence").is_file());
    // The fence survives the lock file: a new acquisition continues the sequence.
    assert_eq!(
        locks
            .try_acquire(&req("src/main.rs", "bob"))
            .unwrap()
            .token(),
        4
    );
}

#[test]
fn a_held_lock_is_refused_to_others_and_renewed_for_its_owner() {
    let (_dir, ws) = workspace();
    let locks = Locks::new(&ws);
    let first = locks
        .try_acquire(&req("db", "alice").purpose("migrate"))
        .unwrap()
        .persist();
    let err = locks.try_acquire(&req("db", "bob")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(
        err.to_string()
            .contains("held by `alice` (purpose: migrate"),
        "{err}"
    );
    let again = locks
        .try_acquire(&req("db", "alice").ttl(Duration::from_secs(600)))
        .unwrap()
        .persist();
    assert_eq!((again.token, again.nonce), (first.token, first.nonce));
    assert!(again.expires_at > first.expires_at);
}

#[test]
fn release_and_renew_by_a_non_owner_change_nothing() {
    let (_dir, ws) = workspace();
    let locks = Locks::new(&ws);
    locks.try_acquire(&req("db", "alice")).unwrap().persist();
    let path = ws.locks_dir().join("db.lock");
    let before = std::fs::read(&path).unwrap();
    assert_eq!(
        locks.release("db", "mallory").unwrap_err().kind(),
        ErrorKind::Conflict
    );
    assert_eq!(
        locks
            .renew("db", "mallory", Duration::from_secs(9))
            .unwrap_err()
            .kind(),
        ErrorKind::Conflict
    );
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert_eq!(
        locks.release("nothing", "alice").unwrap_err().kind(),
        ErrorKind::NotFound
    );
    locks.release("db", "alice").unwrap();
    assert!(!path.exists());
}

#[test]
fn a_stale_guard_cannot_release_the_next_holders_lock() {
    let (_dir, ws) = workspace();
    let locks = Locks::new(&ws);
    let stale = locks
        .try_acquire(&req("db", "alice").ttl(Duration::from_millis(1)))
        .unwrap();
    std::thread::sleep(Duration::from_millis(5));
    let fresh = locks.try_acquire(&req("db", "bob")).unwrap();
    assert!(fresh.token() > stale.token());
    assert_eq!(stale.release().unwrap_err().kind(), ErrorKind::Conflict);
    assert_eq!(locks.show("db").unwrap().unwrap().owner, "bob");
}

#[test]
fn expired_and_dead_holders_are_taken_over() {
    let (_dir, ws) = workspace();
    let locks = Locks::new(&ws);
    locks
        .try_acquire(&req("a", "alice").ttl(Duration::ZERO))
        .unwrap()
        .persist();
    let taken = locks.try_acquire(&req("a", "bob")).unwrap();
    assert_eq!(taken.token(), 2);

    // A lock bound to a process that has exited is dead long before it expires.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    let held = locks
        .try_acquire(&req("b", "carol").ttl(Duration::from_secs(3600)))
        .unwrap()
        .persist();
    let dead = LockInfo { pid, ..held };
    std::fs::write(ws.locks_dir().join("b.lock"), record::encode(&dead)).unwrap();
    assert_eq!(locks.show("b").unwrap().unwrap().state(), LockState::Dead);
    assert_eq!(
        locks.try_acquire(&req("b", "dave")).unwrap().info().owner,
        "dave"
    );
}

#[test]
fn a_waiter_wakes_on_release_and_the_line_goes_by_priority_then_arrival() {
    let (_dir, ws) = workspace();
    // No timer to fall back on within the test: only the release's wake-up can hand over.
    let locks = Locks::new(&ws).with_recheck(Duration::from_secs(3600));
    let holder = locks.try_acquire(&req("x", "holder")).unwrap();
    let waiter = |agent: &'static str, priority: Priority| {
        let locks = locks.clone();
        std::thread::spawn(move || {
            let guard = locks
                .acquire(&req("x", agent).priority(priority), Duration::from_secs(30))
                .unwrap();
            std::thread::sleep(Duration::from_millis(50));
            guard.token()
        })
    };
    let in_line = |n: usize| {
        while interest::line(&Locks::new(&ws), "x").unwrap().len() < n {
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    let low = waiter("low", Priority::Low);
    in_line(1);
    let first = waiter("zed", Priority::Medium);
    in_line(2);
    std::thread::sleep(Duration::from_millis(5));
    let second = waiter("amy", Priority::Medium);
    in_line(3);
    let high = waiter("high", Priority::High);
    in_line(4);
    // The higher priority goes first although it came later; equal priorities keep their
    // order of arrival (not their names' order).
    let line: Vec<String> = interest::line(&Locks::new(&ws), "x")
        .unwrap()
        .into_iter()
        .map(|i| i.agent)
        .collect();
    assert_eq!(line, ["high", "zed", "amy", "low"]);
    drop(holder);
    let tokens: Vec<u64> = [high, first, second, low]
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    assert!(
        tokens.windows(2).all(|w| w[0] < w[1]),
        "handed over out of line: {tokens:?}"
    );
    assert!(interest::line(&Locks::new(&ws), "x").unwrap().is_empty());
}

#[test]
fn waiting_times_out_with_the_holder_named() {
    let (_dir, ws) = workspace();
    let locks = Locks::new(&ws);
    let _held = locks
        .try_acquire(&req("x", "alice").purpose("long job"))
        .unwrap();
    let err = locks
        .acquire(&req("x", "bob"), Duration::from_millis(300))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert!(err.to_string().contains("held by `alice`"), "{err}");
    let (waits, _) = deadlock::waits(&ws).unwrap();
    assert!(waits.is_empty(), "the wait record outlived the wait");
}

#[test]
fn a_cycle_is_found_and_the_youngest_waiter_is_the_victim() {
    let (_dir, ws) = workspace();
    let locks = Locks::new(&ws);
    let me = crate::process::ProcessIdentity::current();
    let until = Timestamp::now() + SignedDuration::from_secs(60);
    for (agent, holds, waits_for, age) in [
        ("a", "r1", "r2", 30),
        ("b", "r2", "r3", 20),
        ("c", "r3", "r1", 10),
    ] {
        locks
            .try_acquire(&req(holds, agent).bound_to_process(false))
            .unwrap()
            .persist();
        let since = Timestamp::now() - SignedDuration::from_secs(age);
        deadlock::record_wait(
            &ws,
            agent,
            waits_for,
            deadlock::WaitKind::Lock,
            &me,
            since,
            until,
        )
        .unwrap();
    }
    // A waiter outside the cycle is not part of it.
    deadlock::record_wait(
        &ws,
        "d",
        "r1",
        deadlock::WaitKind::Lock,
        &me,
        Timestamp::now(),
        until,
    )
    .unwrap();
    let cycles = deadlock::detect(&ws).unwrap();
    assert_eq!(cycles.len(), 1);
    assert_eq!(cycles[0].victim, "c");
    assert_eq!(cycles[0].agents, ["c", "a", "b"]);
    assert_eq!(cycles[0].victim_holds(), ["r3"]);
    assert!(deadlock::victim_cycle(&ws, "a").unwrap().is_none());
}

#[test]
fn a_corrupt_lock_file_is_named() {
    let (_dir, ws) = workspace();
    let locks = Locks::new(&ws);
    std::fs::write(ws.locks_dir().join("db.lock"), "{ not json").unwrap();
    let err = locks.try_acquire(&req("db", "alice")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    assert!(
        err.to_string().contains("db.lock") && err.to_string().contains("line 1"),
        "{err}"
    );
}

#[test]
fn resource_names_cannot_escape() {
    for bad in ["../x", "/etc/passwd", "a/../b", "", "a//b"] {
        assert!(LockRequest::new(bad, "alice").is_err(), "{bad:?}");
    }
}

#[test]
fn resources_differing_only_in_case_are_two_locks() {
    let (_dir, ws) = workspace();
    let locks = Locks::new(&ws);
    // Both held at once: two resources, two lock files (each with its own fencing tokens).
    let _upper = locks.try_acquire(&req("src/Button.tsx", "Alice")).unwrap();
    let _lower = locks.try_acquire(&req("src/button.tsx", "alice")).unwrap();
    let mut files: Vec<String> = std::fs::read_dir(ws.locks_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".lock"))
        .collect();
    files.sort();
    assert_eq!(files, ["src%2F%button.tsx.lock", "src%2Fbutton.tsx.lock"]);
    let listed: Vec<String> = locks
        .list()
        .unwrap()
        .into_iter()
        .map(|l| l.info.unwrap().resource)
        .collect();
    assert_eq!(listed, ["src/Button.tsx", "src/button.tsx"]);
}

#[test]
fn a_broken_lock_file_names_its_owner_only_in_an_owner_field() {
    assert!(names_owner(
        r#"{"resource": "x", "owner" :  "ann", "tok"#,
        "ann"
    ));
    assert!(!names_owner(
        r#"{"resource": "ann", "owner": "annabel"}"#,
        "ann"
    ));
    assert!(!names_owner(r#"{"purpose": "owner: \"ann\""}"#, "ann"));
    assert!(!names_owner(r#"{"owner": "#, "ann"));
}

#[test]
fn a_held_guard_outlives_its_ttl_and_is_released_when_dropped() {
    let (_dir, ws) = workspace();
    let locks = Locks::new(&ws);
    let guard = locks
        .try_acquire(&req("long-job", "alice").ttl(Duration::from_millis(300)))
        .unwrap();
    // Three lifetimes later the lock is still alice's: the guard renews it while held.
    std::thread::sleep(Duration::from_millis(900));
    let info = locks.show("long-job").unwrap().unwrap();
    assert_eq!(info.state(), LockState::Live);
    assert_eq!(info.nonce, guard.info().nonce);
    assert!(matches!(
        locks.try_acquire(&req("long-job", "bob")),
        Err(LockError::Held { .. })
    ));
    drop(guard);
    assert!(locks.show("long-job").unwrap().is_none());
}

#[test]
fn taking_a_lock_twice_in_one_thread_counts_guards_and_other_threads_wait() {
    let (_dir, ws) = workspace();
    let locks = Locks::new(&ws);
    let first = locks.try_acquire(&req("r", "alice")).unwrap();
    let second = locks.try_acquire(&req("r", "alice")).unwrap();
    assert_eq!(
        first.token(),
        second.token(),
        "a re-entry, not a new acquisition"
    );
    // Another thread of this process, even as the same agent, is another holder.
    std::thread::scope(|scope| {
        scope.spawn(|| {
            assert!(matches!(
                locks.try_acquire(&req("r", "alice")),
                Err(LockError::Held { .. })
            ));
        });
    });
    drop(first);
    assert!(
        locks.show("r").unwrap().is_some(),
        "the first drop must not free a lock another guard still holds"
    );
    drop(second);
    assert!(locks.show("r").unwrap().is_none());
}

#[test]
fn fencing_tokens_never_go_back_after_a_crash_lost_the_fence_write() {
    let (_dir, ws) = workspace();
    let locks = Locks::new(&ws);
    for _ in 0..5 {
        locks.try_acquire(&req("db", "alice")).unwrap();
    }
    // What a power loss could leave: the fence as flushed in an earlier boot, before the last
    // (unflushed) tokens. The next token comes after the flushed reserve.
    std::fs::write(ws.locks_dir().join("db.fence"), "2 1002 an-earlier-boot\n").unwrap();
    assert_eq!(locks.try_acquire(&req("db", "bob")).unwrap().token(), 1003);
    assert_eq!(locks.try_acquire(&req("db", "bob")).unwrap().token(), 1004);
}

fn reserve(
    ws: &Workspace,
    owner: &str,
    patterns: &[&str],
    shared: bool,
) -> Result<Vec<LockInfo>, LockError> {
    Reservations::new(ws).try_reserve(
        &ReservationRequest::new(patterns, owner)
            .unwrap()
            .shared(shared),
    )
}

#[test]
fn a_reservation_and_a_lock_it_covers_conflict_both_ways() {
    let (_dir, ws) = workspace();
    let locks = Locks::new(&ws);
    reserve(&ws, "a", &["src/db/**"], false).unwrap();
    let err = locks.try_acquire(&req("src/db/pool.rs", "b")).unwrap_err();
    assert!(matches!(err, LockError::Conflict { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("exclusive reservation `src/db/**` of `a`"),
        "{err}"
    );
    // The owner's own lock under its own reservation is fine; paths outside are free.
    drop(locks.try_acquire(&req("src/db/pool.rs", "a")).unwrap());
    drop(locks.try_acquire(&req("src/web/app.rs", "b")).unwrap());

    let held = locks.try_acquire(&req("src/web/app.rs", "b")).unwrap();
    let err = reserve(&ws, "c", &["src/**"], false).unwrap_err();
    assert!(
        err.to_string()
            .contains("the lock on `src/web/app.rs` held by `b`"),
        "{err}"
    );
    drop(held);
    // All or nothing: `src/db/**` is a's, so neither pattern is granted to c.
    let err = reserve(&ws, "c", &["docs/**", "src/db/x.rs"], false).unwrap_err();
    assert!(matches!(err, LockError::Conflict { .. }), "{err}");
    assert!(
        err.to_string().starts_with("`src/db/x.rs` conflicts"),
        "names the pattern refused: {err}"
    );
    assert!(
        Reservations::new(&ws)
            .live()
            .unwrap()
            .iter()
            .all(|r| r.owner == "a")
    );
}

#[test]
fn shared_reservations_coexist_and_exclude_everything_else() {
    let (_dir, ws) = workspace();
    reserve(&ws, "a", &["docs/**"], true).unwrap();
    reserve(&ws, "b", &["docs/*.md"], true).unwrap();
    assert!(reserve(&ws, "c", &["docs/guide.md"], false).is_err());
    let err = Locks::new(&ws)
        .try_acquire(&req("docs/guide.md", "c"))
        .unwrap_err();
    assert!(err.to_string().contains("shared reservation"), "{err}");
    // Unsure overlaps are treated as overlapping, and said so.
    reserve(&ws, "d", &["lib/[ab].rs"], false).unwrap();
    let err = reserve(&ws, "e", &["lib/[cd].rs"], false).unwrap_err();
    assert!(err.to_string().contains("could not rule it out"), "{err}");
}

#[test]
fn renewing_keeps_the_token_and_release_frees_the_paths() {
    let (_dir, ws) = workspace();
    let r = Reservations::new(&ws);
    let first = reserve(&ws, "a", &["src/**"], false).unwrap();
    let again = reserve(&ws, "a", &["src/**"], false).unwrap();
    assert_eq!(first[0].token, again[0].token);
    assert!(again[0].expires_at >= first[0].expires_at);
    let other = reserve(&ws, "a", &["docs/**"], false).unwrap();
    assert!(other[0].token > first[0].token);
    assert!(matches!(
        r.release(&["nope/**"], "a"),
        Err(LockError::NotHeld { .. })
    ));
    assert_eq!(
        r.release(&["/src/**"], "a").unwrap().len(),
        1,
        "normalized like the original"
    );
    drop(Locks::new(&ws).try_acquire(&req("src/x.rs", "b")).unwrap());
    assert_eq!(r.release_all_of("a").unwrap().len(), 1);
    assert!(r.live().unwrap().is_empty());
}

#[test]
fn expired_reservations_block_nobody_and_are_released_as_stale() {
    let (_dir, ws) = workspace();
    let r = Reservations::new(&ws);
    r.try_reserve(
        &ReservationRequest::new(&["src/**"], "a")
            .unwrap()
            .ttl(Duration::ZERO),
    )
    .unwrap();
    drop(Locks::new(&ws).try_acquire(&req("src/x.rs", "b")).unwrap());
    reserve(&ws, "c", &["src/**"], false).unwrap();
    assert_eq!(r.release_stale_of("a").unwrap().len(), 1);
    assert!(
        r.release_stale_of("c").unwrap().is_empty(),
        "a live one is never stale"
    );
}

#[test]
fn a_cycle_through_a_reservation_is_a_deadlock() {
    let (_dir, ws) = workspace();
    let locks = Locks::new(&ws).with_recheck(Duration::from_millis(20));
    let _a_holds = locks
        .try_acquire(&req("src/a.rs", "a").bound_to_process(false))
        .unwrap();
    reserve(&ws, "b", &["src/b/**"], false).unwrap();
    let b_waits = {
        let locks = locks.clone();
        std::thread::spawn(move || locks.acquire(&req("src/a.rs", "b"), Duration::from_secs(2)))
    };
    std::thread::sleep(Duration::from_millis(100));
    let a_waits = Reservations::of(&locks).reserve(
        &ReservationRequest::new(&["src/b/x.rs"], "a").unwrap(),
        Duration::from_secs(5),
    );
    let b_result = b_waits.join().unwrap();
    // The youngest waiter (a) is the victim; b keeps waiting until its time runs out.
    let Err(LockError::Deadlock { cycle, .. }) = a_waits else {
        panic!("expected a deadlock, got {a_waits:?}");
    };
    assert_eq!(cycle.victim, "a");
    assert!(
        cycle.describe().contains("src/b/**"),
        "{}",
        cycle.describe()
    );
    assert!(
        matches!(b_result, Err(LockError::Timeout { .. })),
        "{b_result:?}"
    );
}

/// L7 for reservations: threads sharing one handle exclude each other as processes do.
#[test]
fn threads_sharing_a_handle_never_hold_overlapping_reservations_at_once() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let (_dir, ws) = workspace();
    let reservations = Reservations::of(&Locks::new(&ws).with_recheck(Duration::from_millis(5)));
    let inside = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for t in 0..8 {
            let (reservations, inside) = (&reservations, &inside);
            scope.spawn(move || {
                let owner = format!("t{t}");
                let pattern = if t % 2 == 0 { "src/**" } else { "src/db/a.rs" };
                let request = ReservationRequest::new(&[pattern], &owner).unwrap();
                for _ in 0..10 {
                    reservations
                        .reserve(&request, Duration::from_secs(30))
                        .unwrap();
                    assert_eq!(
                        inside.fetch_add(1, Ordering::SeqCst),
                        0,
                        "two holders at once"
                    );
                    std::thread::sleep(Duration::from_micros(300));
                    inside.fetch_sub(1, Ordering::SeqCst);
                    reservations.release(&[pattern], &owner).unwrap();
                }
            });
        }
    });
}
