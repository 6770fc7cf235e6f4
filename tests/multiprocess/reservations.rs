//! Reservations of glob patterns against locks and each other, across processes: racing
//! holders never overlap, shared ones coexist, conflicts go both ways, and a reservation ends
//! by expiry, with its process, or by `doctor` — exactly as a lock does.

use maos_coordination::lock::pattern::{Overlap, Pattern};
use std::process::Stdio;
use std::time::Duration;

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
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    std::fs::write(&go, "").unwrap();
    let mut tokens = Vec::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        tokens.extend(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(|l| l.strip_prefix("token ").unwrap().parse::<u64>().unwrap()),
        );
    }
    // L4: every reservation granted got its own fencing token.
    let granted = tokens.len();
    tokens.sort_unstable();
    tokens.dedup();
    assert_eq!(tokens.len(), granted, "a token was handed out twice");
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

/// D1 across processes, through a reservation: `a` holds the lock on `src/a.rs` and waits to
/// reserve under `src/b/`, which `b` reserved; `b` then waits for `a`'s lock. The youngest
/// waiter (`b`) is the victim: its command exits 6 and the cycle is announced; once it lets
/// go, `a`'s wait ends with the reservation.
#[test]
fn a_deadlock_through_a_reservation_across_processes_has_one_victim() {
    let ws = TestWorkspace::new();
    ws.maos_as("a", &["lock", "acquire", "src/a.rs", "--ttl", "60"])
        .assert_ok();
    ws.maos_as("b", &["reserve", "src/b/**"]).assert_ok();
    let waiter = |agent: &str, args: &[&str]| {
        ws.maos_cmd()
            .env("MAOS_AGENT_ID", agent)
            .env("MAOS_LOCK_RECHECK_MS", "50")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let a = waiter("a", &["reserve", "src/b/x.rs", "--wait", "20s"]);
    std::thread::sleep(Duration::from_millis(300));
    let b = waiter("b", &["lock", "acquire", "src/a.rs", "--wait", "20s"]);
    let b = b.wait_with_output().unwrap();
    assert_eq!(
        b.status.code(),
        Some(6),
        "{}",
        String::from_utf8_lossy(&b.stderr)
    );
    assert!(String::from_utf8_lossy(&b.stderr).contains("deadlock"));
    let notice = ws
        .maos(&["--json", "msg", "recv", "broadcast/deadlock"])
        .assert_ok()
        .json();
    assert_eq!(notice[0]["payload"]["victim"], "b", "{notice}");
    ws.maos_as("b", &["unreserve", "--all"]).assert_ok();
    let a = a.wait_with_output().unwrap();
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
}

/// L2 for reservations: of several processes racing for the pattern a killed holder had
/// reserved, exactly one gets it.
#[test]
fn a_dead_holders_reservation_goes_to_exactly_one_contender() {
    let ws = TestWorkspace::new();
    let (mut holder, line) =
        helper_with_line(ws.helper_cmd().args(["hold-reservation", "src/**", "gone"]));
    assert!(line.starts_with("held"), "{line}");
    holder.kill().unwrap();
    holder.wait().unwrap();
    let racers: Vec<_> = (0..6)
        .map(|i| {
            ws.maos_cmd()
                .env("MAOS_AGENT_ID", format!("c{i}"))
                .args(["reserve", "src/**"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let codes: Vec<i32> = racers
        .into_iter()
        .map(|mut c| c.wait().unwrap().code().unwrap())
        .collect();
    assert_eq!(codes.iter().filter(|c| **c == 0).count(), 1, "{codes:?}");
    assert!(codes.iter().all(|c| *c == 0 || *c == 5), "{codes:?}");
    let live: Vec<serde_json::Value> = ws
        .maos(&["--json", "reservations"])
        .assert_ok()
        .json()
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["state"] == "live")
        .cloned()
        .collect();
    assert_eq!(live.len(), 1, "{live:?}");
}

/// L5 for the new kernel lock: a stopped process holding `locks/.paths` makes lock and
/// reservation commands fail after `MAOS_LOCK_TIMEOUT` (exit 3, naming the file), not hang.
#[test]
fn a_stopped_holder_of_the_paths_lock_delays_nobody_past_the_kernel_lock_wait() {
    let ws = TestWorkspace::new();
    let paths = ws.maos_dir().join("locks/.paths");
    let (mut holder, line) = helper_with_line(
        ws.helper_cmd()
            .args(["hold-kernel-lock", paths.to_str().unwrap()]),
    );
    assert_eq!(line.trim(), "locked");
    let stopped = maos_tests::Stopped::new(holder.id());
    for args in [
        &["lock", "acquire", "src/x.rs"][..],
        &["reserve", "docs/**"][..],
    ] {
        let out = maos_tests::Run(
            ws.maos_cmd()
                .env("MAOS_LOCK_TIMEOUT", "0.5")
                .args(args)
                .output()
                .unwrap(),
        )
        .assert_code(3);
        assert!(out.stderr().contains(".paths"), "{}", out.stderr());
    }
    drop(stopped);
    holder.kill().unwrap();
    holder.wait().unwrap();
    ws.maos(&["lock", "acquire", "src/x.rs"]).assert_ok();
}

/// L6's operator break, for reservations: `unreserve --break --reason` ends another agent's
/// reservation before it expires, announced on broadcast/locks, and wakes a lock waiting
/// behind it; `--owner` limits it to one agent; nothing to break is exit 4.
#[test]
fn an_operator_breaks_a_reservation_and_the_waiter_behind_it_gets_in() {
    let ws = TestWorkspace::new();
    ws.maos_as(
        "ann",
        &["reserve", "src/db/**", "--ttl", "2h", "--reason", "schema"],
    )
    .assert_ok();
    ws.maos_as("bob", &["reserve", "src/db/**", "--shared"])
        .assert_code(5);
    let mut waiter = ws
        .maos_cmd()
        .env("MAOS_AGENT_ID", "bob")
        .args(["lock", "acquire", "src/db/pool.rs", "--wait", "60"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    ws.maos_as(
        "ops",
        &[
            "unreserve",
            "src/db/**",
            "--break",
            "--owner",
            "bob",
            "--reason",
            "x",
        ],
    )
    .assert_code(4);
    let broke = ws
        .maos_as(
            "ops",
            &["unreserve", "src/db/", "--break", "--reason", "ann is away"],
        )
        .assert_ok();
    assert!(
        broke.stdout().contains("broke `src/db/**` of `ann`"),
        "{}",
        broke.stdout()
    );
    let started = std::time::Instant::now();
    assert!(waiter.wait().unwrap().success());
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    let notices = ws
        .maos(&["--json", "msg", "recv", "broadcast/locks"])
        .assert_ok()
        .json();
    let notice = notices
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["type"] == "reservation-broken")
        .expect("announced");
    assert_eq!(notice["payload"]["holder"], "ann");
    assert_eq!(notice["payload"]["reason"], "ann is away");
    assert_eq!(notice["sender"], "ops");
    ws.maos_as(
        "ops",
        &["unreserve", "src/db/**", "--break", "--reason", "again"],
    )
    .assert_code(4);
}

/// The reservation index only says where to look, and is trusted only while the folder is
/// as it left it: a reservation file a hand (or a crash, or doctor) added or removed is seen
/// by the very next hook and lock — also when the index is garbage or gone.
#[test]
fn reservation_files_added_or_removed_by_hand_are_seen_at_once() {
    let ws = TestWorkspace::on_files();
    let root = ws.root();
    std::fs::create_dir_all(root.join("src")).unwrap();
    let pre_tool_use = |session: &str, file: &str| {
        let input = serde_json::json!({
            "session_id": session, "cwd": root, "hook_event_name": "PreToolUse",
            "tool_name": "Edit", "tool_input": {"file_path": root.join(file)},
        });
        ws.claude_hook(root, "PreToolUse", &input)
            .assert_ok()
            .stdout()
    };
    let refused = |out: &str| out.contains("\"permissionDecision\":\"deny\"");
    // Many reservations, so that the index matters; one of them on src/a.rs.
    for i in 0..20 {
        ws.maos_as(&format!("agent-{i}"), &["reserve", &format!("src/m{i}/**")])
            .assert_ok();
    }
    ws.maos_as("ann", &["reserve", "src/a.rs"]).assert_ok();
    let dir = ws.maos_dir().join("locks/reservations");
    let index = ws.maos_dir().join("locks/reservations.index");
    assert!(index.exists(), "the index is written with the reservations");
    assert!(refused(&pre_tool_use("bob-1", "src/a.rs")));

    // Ann's file removed by hand: free at once.
    let ann = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .contains("\"owner\": \"ann\"")
        })
        .expect("ann's reservation file");
    let text = std::fs::read_to_string(&ann).unwrap();
    std::fs::remove_file(&ann).unwrap();
    assert!(!refused(&pre_tool_use("bob-2", "src/b.rs")));
    assert!(
        !refused(&pre_tool_use("bob-3", "src/a.rs")),
        "ann's file is gone"
    );
    ws.maos(&["unreserve", "--all"]).assert_ok();
    ws.maos_as("claude-bob3", &["unreserve", "--all"])
        .assert_ok();

    // Put back by hand under a new token: held again, for hooks and for locks.
    std::fs::write(
        dir.join("900.json"),
        text.replace("\"token\": ", "\"token\": 9"),
    )
    .unwrap();
    assert!(refused(&pre_tool_use("bob-4", "src/a.rs")));
    ws.maos_as("bob", &["lock", "acquire", "src/a.rs"])
        .assert_code(5);

    // A broken or missing index changes nothing either.
    std::fs::write(&index, "not an index\n").unwrap();
    assert!(refused(&pre_tool_use("bob-5", "src/a.rs")));
    std::fs::remove_file(&index).unwrap();
    assert!(refused(&pre_tool_use("bob-6", "src/a.rs")));
    ws.maos_as("bob", &["lock", "acquire", "src/a.rs"])
        .assert_code(5);
    assert!(!refused(&pre_tool_use("bob-7", "src/m3x.rs")));
    assert!(refused(&pre_tool_use("bob-8", "src/m3/x.rs")));

    // A file edited in place (its folder's time unchanged): doctor finds the index out of
    // date and --fix removes it, after which the edit counts.
    ws.maos_as("agent-0", &["reserve", "src/m0/**", "--ttl", "1h"])
        .assert_ok();
    let m0 = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| std::fs::read_to_string(p).unwrap().contains("src/m0/**"))
        .unwrap();
    assert!(index.exists());
    let edited = std::fs::read_to_string(&m0)
        .unwrap()
        .replace("src/m0/**", "src/z.rs");
    std::fs::write(&m0, edited).unwrap();
    let report = ws.maos(&["doctor", "--json"]).json();
    assert!(
        report.to_string().contains("reservations.index"),
        "doctor names the index: {report}"
    );
    ws.maos(&["doctor", "--fix"]).assert_ok();
    assert!(refused(&pre_tool_use("bob-9", "src/z.rs")));
}
