//! Locks and deadlocks under concurrent processes: invariants L1–L5 and D1.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use maos_tests::{TestWorkspace, maos_bin};
use serde_json::Value;

/// L1 through the CLI: 8 shell processes each run 50 rounds of `maos lock acquire counter
/// --wait 60` → read the counter file, pause, write counter+1 → `maos lock release counter`.
/// Any overlap of two holders loses an increment.
#[test]
fn eight_cli_processes_increment_a_counter_under_the_lock() {
    let ws = TestWorkspace::new();
    let counter = ws.root().join("counter");
    std::fs::write(&counter, "0\n").unwrap();
    let bin_dir = maos_bin().parent().unwrap().to_owned();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let script = r#"
        for i in $(seq 50); do
            maos lock acquire counter --wait 60 --ttl 60 >/dev/null || exit 1
            c=$(cat counter); sleep 0.001; echo $((c + 1)) > counter
            maos lock release counter >/dev/null || exit 2
        done"#;
    let shells: Vec<Child> = (0..8)
        .map(|k| {
            Command::new("bash")
                .args(["-c", script])
                .env_clear()
                .env("PATH", &path)
                .env("MAOS_WORKSPACE", ws.root())
                .env("MAOS_AGENT_ID", format!("agent-{k}"))
                .current_dir(ws.root())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for shell in shells {
        let out = shell.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(std::fs::read_to_string(&counter).unwrap().trim(), "400");
    ws.maos(&["lock", "show", "counter"]).assert_code(4);
}

/// Runs `processes` helper processes doing `rounds` guarded increments each; returns every
/// (counter value read, fencing token) pair.
fn library_counter(ws: &TestWorkspace, processes: usize, rounds: usize) -> Vec<(u64, u64)> {
    library_counter_as(ws, processes, rounds, |k| format!("agent-{k}"))
}

fn library_counter_as(
    ws: &TestWorkspace,
    processes: usize,
    rounds: usize,
    agent: impl Fn(usize) -> String,
) -> Vec<(u64, u64)> {
    let counter = ws.root().join("counter");
    std::fs::write(&counter, "0\n").unwrap();
    let children: Vec<Child> = (0..processes)
        .map(|k| {
            ws.helper_cmd()
                .args([
                    "counter",
                    "counter",
                    &rounds.to_string(),
                    counter.to_str().unwrap(),
                    &agent(k),
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut pairs = Vec::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mine: Vec<(u64, u64)> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| {
                let (n, token) = l.split_once(' ').unwrap();
                (n.parse().unwrap(), token.parse().unwrap())
            })
            .collect();
        // Each process sees its own tokens increase.
        assert!(mine.windows(2).all(|w| w[0].1 < w[1].1));
        pairs.extend(mine);
    }
    let total = (processes * rounds) as u64;
    assert_eq!(
        std::fs::read_to_string(&counter).unwrap().trim(),
        total.to_string()
    );
    pairs
}

/// L1 through the library: the same with guards, 8 processes × 50 rounds.
#[test]
fn eight_library_processes_increment_a_counter_with_guards() {
    let ws = TestWorkspace::new();
    let pairs = library_counter(&ws, 8, 50);
    let seen: BTreeSet<u64> = pairs.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        seen,
        (0..400).collect(),
        "two holders read the same counter value"
    );
}

/// L1 when one agent id runs in several processes: a library lock belongs to its process,
/// so the other processes of the same agent wait like anyone else.
#[test]
fn one_agent_in_four_processes_still_takes_turns() {
    let ws = TestWorkspace::new();
    let pairs = library_counter_as(&ws, 4, 25, |_| "shared".to_owned());
    assert_eq!(pairs.len(), 100);
    let counter = std::fs::read_to_string(ws.root().join("counter")).unwrap();
    assert_eq!(counter.trim(), "100");
}

/// L4: 1,000 acquisitions across 4 processes: in the order the acquisitions happened (the
/// counter value each read under the lock), the fencing tokens strictly increase.
#[test]
fn fencing_tokens_of_a_thousand_acquisitions_strictly_increase() {
    let ws = TestWorkspace::new();
    let mut pairs = library_counter(&ws, 4, 250);
    pairs.sort();
    assert_eq!(pairs.len(), 1000);
    assert!(
        pairs
            .windows(2)
            .all(|w| w[0].0 + 1 == w[1].0 && w[0].1 < w[1].1),
        "{pairs:?}"
    );
}

/// L2: an expired lock, 8 processes released at the same instant to take it; exactly one
/// wins, and the lock on disk is the winner's (nobody deleted the fresh lock). 100 rounds.
#[test]
fn exactly_one_of_eight_takes_an_expired_lock_a_hundred_times() {
    let ws = TestWorkspace::new();
    let rounds = 100;
    ws.maos(&["lock", "acquire", "prize", "--ttl", "0"])
        .assert_ok();
    let dir = ws.root().join("rounds");
    std::fs::create_dir(&dir).unwrap();
    let mut children: Vec<Child> = (0..8)
        .map(|k| {
            ws.helper_cmd()
                .args([
                    "steal-rounds",
                    "prize",
                    &rounds.to_string(),
                    dir.to_str().unwrap(),
                    &format!("stealer-{k}"),
                ])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut outputs: Vec<_> = children
        .iter_mut()
        .map(|c| BufReader::new(c.stdout.take().unwrap()).lines())
        .collect();
    let mut last_token = 0;
    for round in 0..rounds {
        std::fs::write(dir.join(format!("go-{round}")), "").unwrap();
        let mut winners = Vec::new();
        for (k, lines) in outputs.iter_mut().enumerate() {
            let line = lines.next().unwrap().unwrap();
            let parts: Vec<&str> = line.split(' ').collect();
            assert_eq!(parts[0], round.to_string());
            if parts[1] == "won" {
                winners.push((k, parts[2].parse::<u64>().unwrap()));
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        let (winner, token) = winners[0];
        assert!(token > last_token);
        last_token = token;
        let shown = ws
            .maos(&["--json", "lock", "show", "prize"])
            .assert_ok()
            .json();
        assert_eq!(shown["owner"], format!("stealer-{winner}"));
        assert_eq!(shown["token"], token);
        // The winner's lock lives a minute; its owner lets it expire now for the next round.
        let owner = format!("stealer-{winner}");
        ws.maos(&["--agent", &owner, "lock", "renew", "prize", "--ttl", "0"])
            .assert_ok();
    }
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
}

/// L2 (dead holder): a holder killed with SIGKILL is detected dead and its lock taken long
/// before its one-hour expiry.
#[test]
fn a_killed_holders_lock_is_taken_well_before_expiry() {
    let ws = TestWorkspace::new();
    let (mut holder, line) =
        maos_tests::helper_with_line(ws.helper_cmd().args(["hold", "src/lib.rs", "doomed"]));
    assert!(line.starts_with("held"), "{line}");
    ws.maos(&["lock", "acquire", "src/lib.rs"]).assert_code(5);
    let shown = ws
        .maos(&["--json", "lock", "show", "src/lib.rs"])
        .assert_ok()
        .json();
    assert_eq!(shown["state"], "live");
    let killed_token = shown["token"].as_u64().unwrap();
    holder.kill().unwrap();
    holder.wait().unwrap();
    let shown = ws
        .maos(&["--json", "lock", "show", "src/lib.rs"])
        .assert_ok()
        .json();
    assert_eq!(shown["state"], "dead", "the one state word of every view");
    let taken = ws
        .maos(&["--json", "lock", "acquire", "src/lib.rs", "--wait", "10"])
        .assert_ok()
        .json();
    assert_eq!(taken["owner"], "tester");
    assert!(taken["token"].as_u64().unwrap() > killed_token, "{taken}");
}

/// L1 for a holder that was stopped past its lease: while it is stopped another agent takes
/// the lock once the lease ran out (not before), and when it resumes its guard says the lock
/// may be lost before it could act on it — on files and on etcd alike.
#[test]
fn a_guard_stopped_past_its_lease_says_it_is_lost() {
    let ws = TestWorkspace::new();
    let mut holder = ws
        .helper_cmd()
        .args(["hold-check", "guarded", "first", "2"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(holder.stdout.take().unwrap()).lines();
    let line = lines.next().unwrap().unwrap();
    let token: u64 = line.strip_prefix("held ").unwrap().parse().unwrap();
    let stopped = maos_tests::Stopped::new(holder.id());
    let started = Instant::now();
    let taken = ws
        .maos(&[
            "--json", "--agent", "second", "lock", "acquire", "guarded", "--wait", "30",
        ])
        .assert_ok()
        .json();
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "taken after {:?}, before the lease ran out",
        started.elapsed()
    );
    assert!(taken["token"].as_u64().unwrap() > token);
    drop(stopped);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(lines.next().and_then(Result::ok));
    });
    let Ok(Some(said)) = rx.recv_timeout(Duration::from_secs(30)) else {
        let _ = holder.kill();
        panic!("the resumed holder's guard never said its lock may be lost");
    };
    assert!(said.starts_with("lost "), "{said}");
    assert!(said.contains("guarded"), "{said}");
    holder.wait().unwrap();
    let shown = ws
        .maos(&["--json", "lock", "show", "guarded"])
        .assert_ok()
        .json();
    assert_eq!(shown["owner"], "second");
}

/// L3: release or renew by a non-owner is refused (exit 5) and changes nothing.
#[test]
fn release_and_renew_by_a_non_owner_are_refused_and_change_nothing() {
    let ws = TestWorkspace::new();
    let held = ws
        .maos(&[
            "--json",
            "--agent",
            "owner",
            "lock",
            "acquire",
            "db",
            "--purpose",
            "migrate",
        ])
        .assert_ok()
        .json();
    for field in [
        "resource",
        "owner",
        "token",
        "acquired_at",
        "expires_at",
        "purpose",
    ] {
        assert!(held.get(field).is_some(), "missing {field}");
    }
    let record = || {
        ws.maos(&["--json", "lock", "show", "db"])
            .assert_ok()
            .json()
    };
    let before = record();
    let run = ws
        .maos(&["--agent", "intruder", "lock", "release", "db"])
        .assert_code(5);
    assert!(run.stderr().contains("held by `owner`"), "{}", run.stderr());
    ws.maos(&[
        "--agent", "intruder", "lock", "renew", "db", "--ttl", "9999",
    ])
    .assert_code(5);
    assert_eq!(record(), before);
    // The owner may; re-acquiring what it holds renews it.
    let again = ws
        .maos(&["--json", "--agent", "owner", "lock", "acquire", "db"])
        .assert_ok()
        .json();
    assert_eq!(again["token"], held["token"]);
    ws.maos(&["--agent", "owner", "lock", "renew", "db", "--ttl", "60"])
        .assert_ok();
    ws.maos(&["--agent", "owner", "lock", "release", "db"])
        .assert_ok();
    ws.maos(&["--agent", "owner", "lock", "release", "db"])
        .assert_code(4);
}

/// L5: waiters in other processes get in line and are woken by the release — only by it: their
/// recheck timer is set to 10 minutes. The high-priority waiter goes first although it came
/// later, then equal priorities in order of arrival, then the low one; a waiter whose time
/// runs out exits 3 naming the holder and leaves no record behind.
#[test]
fn waiters_in_other_processes_go_by_priority_then_arrival() {
    let ws = TestWorkspace::new();
    ws.maos(&[
        "--agent",
        "holder",
        "lock",
        "acquire",
        "q",
        "--purpose",
        "first",
    ])
    .assert_ok();
    let waiter = |agent: &str, priority: &str| -> Child {
        let child = ws
            .maos_cmd()
            .env("MAOS_LOCK_RECHECK_MS", "600000")
            .args(["--json", "--agent", agent, "lock", "acquire", "q"])
            .args(["--wait", "60", "--priority", priority])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let interest = format!("locks/interests/q/{agent}.json");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ws.record_exists(&interest) {
            assert!(Instant::now() < deadline, "{agent} never got in line");
            std::thread::sleep(Duration::from_millis(10));
        }
        child
    };
    let low = waiter("low", "low");
    let zed = waiter("zed", "medium");
    std::thread::sleep(Duration::from_millis(5));
    let amy = waiter("amy", "medium");
    let high = waiter("high", "high");
    let shown = ws.maos(&["--json", "lock", "show", "q"]).assert_ok().json();
    let line: Vec<&str> = shown["waiters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["agent"].as_str().unwrap())
        .collect();
    assert_eq!(line, ["high", "zed", "amy", "low"]);
    // A third agent asking without waiting is told the lock is held; one waiting briefly
    // times out.
    ws.maos(&["--agent", "late", "lock", "acquire", "q"])
        .assert_code(5);
    let run = ws
        .maos(&["--agent", "late", "lock", "acquire", "q", "--wait", "0.3"])
        .assert_code(3);
    assert!(
        run.stderr().contains("held by `holder`"),
        "{}",
        run.stderr()
    );
    assert!(!ws.record_exists("locks/interests/q/late.json"));
    assert!(!ws.record_exists("locks/waits/late.json"));

    ws.maos(&["--agent", "holder", "lock", "release", "q"])
        .assert_ok();
    let high = high.wait_with_output().unwrap();
    assert!(high.status.success());
    let high: Value = serde_json::from_slice(&high.stdout).unwrap();
    assert_eq!(high["owner"], "high");
    let mut token = high["token"].as_u64().unwrap();
    let mut previous = "high";
    for (child, agent) in [(zed, "zed"), (amy, "amy"), (low, "low")] {
        ws.maos(&["--agent", previous, "lock", "release", "q"])
            .assert_ok();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let got: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(got["owner"], agent);
        let next = got["token"].as_u64().unwrap();
        assert!(
            next > token,
            "fencing tokens increase: {next} after {token}"
        );
        token = next;
        previous = agent;
    }
    for agent in ["high", "zed", "amy", "low"] {
        assert!(!ws.record_exists(&format!("locks/waits/{agent}.json")));
        assert!(!ws.record_exists(&format!("locks/interests/q/{agent}.json")));
    }
}

/// D1: `n` agents in `n` processes each hold one lock and wait for the next one's. The cycle
/// is found, exactly one waiter is the victim (exit 6) and says so on the `deadlock` topic;
/// once the victim releases what it holds, the waiter on it gets the lock. The waiters run
/// with `env` set.
pub(crate) fn deadlock_cycle_of(n: usize, env: &[(&str, &str)]) {
    let ws = TestWorkspace::new();
    let agent = |k: usize| format!("agent-{k}");
    let resource = |k: usize| format!("res-{k}");
    for k in 0..n {
        ws.maos(&["--agent", &agent(k), "lock", "acquire", &resource(k)])
            .assert_ok();
    }
    let started = Instant::now();
    let waiters: Vec<Child> = (0..n)
        .map(|k| {
            let wanted = resource((k + 1) % n);
            ws.maos_cmd()
                .envs(env.iter().copied())
                .args([
                    "--agent",
                    &agent(k),
                    "lock",
                    "acquire",
                    &wanted,
                    "--wait",
                    "60",
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut waiters: Vec<Option<Child>> = waiters.into_iter().map(Some).collect();
    // Wait for the victim: the first waiter to exit.
    let victim = loop {
        let done = waiters
            .iter_mut()
            .position(|w| w.as_mut().unwrap().try_wait().unwrap().is_some());
        if let Some(k) = done {
            break k;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no deadlock reported"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = waiters[victim].take().unwrap().wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(6),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("deadlock")
            && stderr.contains(&format!("`{}` was chosen as the victim", agent(victim))),
        "{stderr}"
    );
    // Nobody else gave up.
    std::thread::sleep(Duration::from_millis(300));
    for (k, w) in waiters.iter_mut().enumerate() {
        if let Some(w) = w {
            assert!(w.try_wait().unwrap().is_none(), "{} also stopped", agent(k));
        }
    }
    let notices = ws
        .maos(&["--json", "msg", "recv", "broadcast/deadlock"])
        .assert_ok()
        .json();
    assert_eq!(notices.as_array().unwrap().len(), 1);
    assert_eq!(notices[0]["payload"]["victim"], agent(victim));
    assert_eq!(notices[0]["payload"]["cycle"].as_array().unwrap().len(), n);

    // The victim releases what it holds; the agent waiting for that gets it, and so on.
    ws.maos(&[
        "--agent",
        &agent(victim),
        "lock",
        "release",
        &resource(victim),
    ])
    .assert_ok();
    let before_victim = (victim + n - 1) % n;
    let out = waiters[before_victim]
        .take()
        .unwrap()
        .wait_with_output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut k = before_victim;
    while waiters.iter().any(Option::is_some) {
        ws.maos(&["--agent", &agent(k), "lock", "release", &resource(k)])
            .assert_ok();
        k = (k + n - 1) % n;
        let out = waiters[k].take().unwrap().wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let check = ws.maos(&["--json", "deadlock", "check"]).assert_ok().json();
    assert_eq!(check["cycles"], Value::Array(vec![]));
}

#[test]
fn a_deadlock_of_two_agents_is_broken_by_one_victim() {
    deadlock_cycle_of(2, &[]);
}

#[test]
fn a_deadlock_of_three_agents_is_broken_by_one_victim() {
    deadlock_cycle_of(3, &[]);
}

/// `maos deadlock check` reports a real cycle among waiters, and its victim, without being
/// part of it. The two waiters are stopped (SIGSTOP) as soon as each is recorded, so the cycle
/// stays for the check to see; resumed, the one named as victim gives up (exit 6).
#[test]
fn deadlock_check_reports_the_cycle_and_its_victim() {
    let ws = TestWorkspace::new();
    ws.maos(&["--agent", "a", "lock", "acquire", "x"])
        .assert_ok();
    ws.maos(&["--agent", "b", "lock", "acquire", "y"])
        .assert_ok();
    let wait_and_stop = |agent: &str, wants: &str| {
        #[expect(
            clippy::zombie_processes,
            reason = "handed back to the test, which waits for it"
        )]
        let child = ws
            .maos_cmd()
            .args(["--agent", agent, "lock", "acquire", wants, "--wait", "30"])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let record = format!("locks/waits/{agent}.json");
        let start = Instant::now();
        while !ws.record_exists(&record) {
            assert!(start.elapsed() < Duration::from_secs(10));
            std::thread::sleep(Duration::from_millis(2));
        }
        // Stopped at a point where it holds no kernel lock (a `.fence` for a few
        // microseconds): a stopped holder would make every other command wait for it.
        loop {
            let stopped = maos_tests::Stopped::new(child.id());
            let locks = std::fs::read_to_string("/proc/locks").unwrap_or_default();
            let holds = locks
                .lines()
                .any(|l| l.split_whitespace().nth(4) == Some(&child.id().to_string()));
            if !holds {
                return (child, stopped);
            }
            drop(stopped);
            std::thread::sleep(Duration::from_micros(300));
        }
    };
    // Only one side waits: no cycle yet.
    let (a, a_stopped) = wait_and_stop("a", "y");
    let check = ws.maos(&["--json", "deadlock", "check"]).assert_ok().json();
    assert_eq!(check["cycles"], Value::Array(vec![]));
    // The other side closes the circle.
    let (b, b_stopped) = wait_and_stop("b", "x");
    let check = ws.maos(&["--json", "deadlock", "check"]).assert_ok().json();
    let cycles = check["cycles"].as_array().unwrap();
    assert_eq!(cycles.len(), 1, "{check}");
    let mut agents: Vec<&str> = cycles[0]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    agents.sort();
    assert_eq!(agents, ["a", "b"]);
    let victim = check["victims"][0].as_str().unwrap().to_owned();
    assert_eq!(check["details"][0]["victim"], victim.as_str());
    assert_eq!(
        check["details"][0]["agents"][0],
        victim.as_str(),
        "the victim comes first"
    );

    drop((a_stopped, b_stopped));
    let (mut victim_child, mut survivor) = if victim == "a" { (a, b) } else { (b, a) };
    let status = victim_child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(6),
        "the victim named by the check gives up"
    );
    assert!(
        survivor.try_wait().unwrap().is_none(),
        "only the victim gives up"
    );
    survivor.kill().unwrap();
    survivor.wait().unwrap();
    // A dead waiter's record is ignored: no cycle any more.
    let check = ws.maos(&["--json", "deadlock", "check"]).assert_ok().json();
    assert_eq!(check["cycles"], Value::Array(vec![]));
}

/// Bad input: path-escaping resource names exit 2 and write nothing; a hand-corrupted lock
/// file is reported with its path and cleared by `maos doctor --fix` or by its owner.
#[test]
fn bad_resource_names_and_a_corrupt_lock_file() {
    let ws = TestWorkspace::new();
    let before = ws.snapshot();
    for bad in [
        "../x",
        "/etc/passwd",
        "a/../../b",
        "",
        "a\u{7}b",
        ".hidden/x",
    ] {
        for cmd in ["acquire", "release", "renew", "show"] {
            ws.maos(&["lock", cmd, bad]).assert_code(2);
        }
    }
    assert_eq!(ws.snapshot(), before);

    ws.maos(&["lock", "acquire", "db"]).assert_ok();
    let file = ws.maos_dir().join("locks/db.lock");
    std::fs::write(&file, "{\"resource\": \"db\", \"owner\": ").unwrap();
    let run = ws
        .maos(&["--agent", "other", "lock", "acquire", "db"])
        .assert_code(1);
    assert!(
        run.stderr().contains(file.to_str().unwrap()) && run.stderr().contains("line 1"),
        "{}",
        run.stderr()
    );
    assert!(
        run.stderr().contains("maos doctor --fix"),
        "{}",
        run.stderr()
    );
    let listed = ws.maos(&["lock", "list"]).assert_ok();
    assert!(listed.stderr().contains("db.lock"), "{}", listed.stderr());
    ws.maos(&["doctor"]).assert_code(1);
    ws.maos(&["doctor", "--fix"]).assert_ok();
    assert!(ws.maos_dir().join("quarantine/locks/db.lock").is_file());
    assert!(ws.maos_dir().join("quarantine/locks/db.lock.why").is_file());
    ws.maos(&["doctor"]).assert_ok();
    ws.maos(&["--agent", "other", "lock", "acquire", "db"])
        .assert_ok();

    // A broken file that still names its owner can be cleared by that owner, not by others.
    let file = ws.maos_dir().join("locks/cache.lock");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(
        &file,
        "{\"resource\": \"cache\", \"owner\": \"tester\", \"tok",
    )
    .unwrap();
    ws.maos(&["--agent", "other", "lock", "release", "cache"])
        .assert_code(1);
    assert!(file.is_file());
    let run = ws.maos(&["lock", "release", "cache"]).assert_ok();
    assert!(run.stdout().contains("quarantine"), "{}", run.stdout());
    assert!(!file.exists());
    assert!(
        ws.maos_dir()
            .join("quarantine/locks/cache.lock.why")
            .is_file()
    );
    ws.maos(&["--agent", "other", "lock", "acquire", "cache"])
        .assert_ok();
}

/// A waiter killed after it was poked leaves its place in line and its wake file: `doctor`
/// names the stale place and the wake file together, `--fix` removes both, and the doctor
/// is then satisfied (it used to find the wake file only on its next run).
#[test]
fn a_dead_waiters_place_and_wake_file_go_together() {
    let ws = TestWorkspace::on_files();
    let line = ws.maos_dir().join("locks/interests/shared");
    std::fs::create_dir_all(&line).unwrap();
    let interest = serde_json::json!({
        "agent": "gone",
        "resource": "shared",
        "priority": "normal",
        "since": "2026-01-01T00:00:00Z",
        "until": "2026-01-01T00:01:00Z",
        "purpose": "",
        "process": {"host": "elsewhere", "boot_id": "", "pid": 1, "start_time": 0},
    });
    std::fs::write(line.join("gone.json"), interest.to_string()).unwrap();
    std::fs::write(line.join("gone.wake"), "").unwrap();
    let named = ws.doctor_problem_paths();
    assert!(
        named.iter().any(|p| p.ends_with("gone.json"))
            && named.iter().any(|p| p.ends_with("gone.wake")),
        "{named:?}"
    );
    ws.maos(&["doctor", "--fix"]).assert_ok();
    ws.maos(&["doctor"]).assert_ok();
    assert!(!line.join("gone.wake").exists());
}
