//! Reservations of glob patterns against locks and each other, across processes: racing
//! holders never overlap, shared ones coexist, conflicts go both ways, and a reservation ends
//! by expiry, with its process, or by `doctor` — exactly as a lock does.

use maos_coordination::lock::pattern::{Overlap, Pattern};
use maos_tests::{TestWorkspace, helper_with_line};

/// Whether two claims from the recorder's log may not be held at once by different agents.
fn excludes(a: (&str, &str), b: (&str, &str)) -> bool {
    let ((kind_a, target_a), (kind_b, target_b)) = (a, b);
    match (kind_a, kind_b) {
        ("lock", "lock") => target_a == target_b,
        ("lock", _) => Pattern::new(target_b).unwrap().matches(target_a),
        (_, "lock") => Pattern::new(target_a).unwrap().matches(target_b),
        ("shared", "shared") => false,
        _ => {
            Pattern::new(target_a)
                .unwrap()
                .overlap(&Pattern::new(target_b).unwrap())
                != Overlap::No
        }
    }
}

/// The race: 8 processes take overlapping globs (`src/**`, `src/db/*`, `src/db/a.rs`),
/// shared and exclusive, and the lock on `src/db/a.rs`, each logging "enter" after it holds
/// and "exit" before it lets go (appends to one file are ordered). Replaying the log, no two
/// agents are ever inside with claims that exclude each other.
#[test]
fn racing_reservations_and_locks_never_overlap() {
    let ws = TestWorkspace::new();
    let log = ws.root().join("recorder.log");
    let go = ws.root().join("go");
    let children: Vec<_> = (0..8)
        .map(|i| {
            ws.helper_cmd()
                .env("MAOS_HELPER_GO", &go)
                .args([
                    "reserve-loop",
                    &format!("p{i}"),
                    "12",
                    log.to_str().unwrap(),
                ])
                .spawn()
                .unwrap()
        })
        .collect();
    std::fs::write(&go, "").unwrap();
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    let text = std::fs::read_to_string(&log).unwrap();
    let mut inside: Vec<(String, String, String)> = Vec::new();
    let (mut entries, mut most_at_once) = (0, 0);
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let [event, agent, kind, target] = fields[..] else {
            panic!("bad log line {line:?}");
        };
        if event == "enter" {
            for (other, other_kind, other_target) in &inside {
                assert!(
                    other == agent || !excludes((kind, target), (other_kind, other_target)),
                    "{agent} entered {kind} {target} while {other} held {other_kind} {other_target}"
                );
            }
            inside.push((agent.into(), kind.into(), target.into()));
            entries += 1;
            most_at_once = most_at_once.max(inside.len());
        } else {
            let at = inside
                .iter()
                .position(|(a, k, t)| a == agent && k == kind && t == target)
                .unwrap();
            inside.remove(at);
        }
    }
    assert_eq!(entries, 8 * 12);
    assert!(inside.is_empty());
    // Nothing is left behind: every reservation and lock was released.
    let left = ws.maos(&["--json", "reservations"]).assert_ok().json();
    assert_eq!(left, serde_json::json!([]));
    eprintln!("most claims held at once: {most_at_once}");
}

#[test]
fn cli_reservations_conflict_with_locks_both_ways_and_end_by_expiry() {
    let ws = TestWorkspace::new();
    ws.maos_as("a", &["reserve", "src/db/**", "--reason", "schema change"])
        .assert_ok();
    let denied = ws
        .maos_as("b", &["lock", "acquire", "src/db/pool.rs"])
        .assert_code(5);
    assert!(
        denied
            .stderr()
            .contains("exclusive reservation `src/db/**` of `a` (reason: schema change"),
        "{}",
        denied.stderr()
    );
    ws.maos_as("b", &["lock", "acquire", "src/web/app.rs"])
        .assert_ok();
    let denied = ws.maos_as("c", &["reserve", "src/**"]).assert_code(5);
    assert!(
        denied
            .stderr()
            .contains("the lock on `src/web/app.rs` held by `b`")
    );
    assert!(
        denied.stderr().contains("maos msg send --to b"),
        "a hint to reach them"
    );

    // Shared coexists with shared, never with exclusive.
    ws.maos_as("b", &["reserve", "--shared", "docs/*.md"])
        .assert_ok();
    ws.maos_as("c", &["reserve", "--shared", "docs/"])
        .assert_ok();
    ws.maos_as("d", &["reserve", "docs/guide.md"])
        .assert_code(5);
    let listed = ws.maos(&["--json", "reservations"]).assert_ok().json();
    let modes: Vec<(String, bool, String)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["resource"].as_str().unwrap().to_owned(),
                r["shared"].as_bool().unwrap(),
                r["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        modes,
        [
            ("src/db/**".into(), false, "live".into()),
            ("docs/*.md".into(), true, "live".into()),
            ("docs/**".into(), true, "live".into()),
        ]
    );

    // A short reservation ends by expiry; a waiter gets it then.
    ws.maos_as("e", &["reserve", "lib/**", "--ttl", "1s"])
        .assert_ok();
    ws.maos_as("f", &["reserve", "lib/x.rs"]).assert_code(5);
    ws.maos_as("f", &["reserve", "lib/x.rs", "--wait", "10s"])
        .assert_ok();
    // The expired one stays on disk, reported as stale, until doctor --fix clears it.
    let doctor = ws.maos(&["--json", "doctor"]).assert_code(1).json();
    assert_eq!(
        doctor["problems"][0]["problem"],
        "expired reservation `lib/**` of `e`"
    );
    assert_eq!(doctor["problems"].as_array().unwrap().len(), 1, "{doctor}");
    ws.maos(&["doctor", "--fix"]).assert_ok();

    ws.maos_as("a", &["unreserve", "src/db/**"]).assert_ok();
    ws.maos_as("b", &["lock", "acquire", "src/db/pool.rs"])
        .assert_ok();
    ws.maos_as("a", &["unreserve", "src/db/**"]).assert_code(4);
    ws.maos_as("c", &["unreserve", "--all"]).assert_ok();
}

/// A reservation bound to a process that was killed blocks nobody (its holder is provably
/// gone), `doctor` reports it and `--fix` removes it — as for a lock.
#[test]
fn a_killed_holders_reservation_blocks_nobody_and_doctor_clears_it() {
    let ws = TestWorkspace::new();
    let (mut holder, line) =
        helper_with_line(ws.helper_cmd().args(["hold-reservation", "src/**", "gone"]));
    assert!(line.starts_with("held"), "{line}");
    ws.maos_as("b", &["lock", "acquire", "src/a.rs"])
        .assert_code(5);
    holder.kill().unwrap();
    holder.wait().unwrap();
    ws.maos_as("b", &["lock", "acquire", "src/a.rs"])
        .assert_ok();
    let listed = ws.maos(&["--json", "reservations"]).assert_ok().json();
    assert_eq!(listed[0]["state"], "dead", "{listed}");
    let doctor = ws.maos(&["doctor"]);
    assert_eq!(doctor.code(), 1);
    assert!(
        doctor
            .stdout()
            .contains("reservation `src/**` of `gone`, whose process")
    );
    ws.maos(&["doctor", "--fix"]).assert_ok();
    assert_eq!(
        ws.maos(&["--json", "reservations"]).assert_ok().json(),
        serde_json::json!([])
    );
}
