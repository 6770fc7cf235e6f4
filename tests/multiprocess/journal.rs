//! The journal from the outside: six agent processes doing mixed work while some are
//! SIGKILLed, then the chain verified and compared with the state; entries edited, deleted,
//! swapped and cut off by hand; event hooks that hang or fail; snapshots taken while agents
//! work, restored into an empty workspace.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use maos_coordination::Workspace;
use maos_coordination::journal::{self, Cursor, Entry, Filter};
use maos_coordination::task::{NewTask, Status, Tasks};
use maos_tests::{Lcg, TestWorkspace};
use serde_json::Value;

/// Every entry of the journal at `root` (after `maos journal verify` said it verifies).
fn verified_entries(ws: &TestWorkspace, root: &Path) -> Vec<Entry> {
    let out = ws
        .maos(&["--workspace", root.to_str().unwrap(), "journal", "verify"])
        .assert_ok();
    assert!(
        out.stdout().contains("journal verified"),
        "{}",
        out.stdout()
    );
    let opened = Workspace::open(root).unwrap();
    journal::read_from(&opened, Cursor::default(), &Filter::default())
        .unwrap()
        .0
}

fn of_kind<'a>(entries: &'a [Entry], kind: &'a str) -> impl Iterator<Item = &'a Entry> + 'a {
    entries.iter().filter(move |e| e.event.kind == kind)
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Checks that the journal of the workspace at `root` agrees with its records: every task's
/// last entry carries its version; a task in progress has exactly one claim entry for its
/// claim; every lock file has exactly one acquire entry and nothing ended it; every message
/// has exactly one send entry and every send entry its message.
fn assert_journal_agrees(ws: &TestWorkspace, root: &Path) -> usize {
    let entries = verified_entries(ws, root);
    let ids: BTreeSet<&str> = entries.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids.len(), entries.len(), "an entry was journaled twice");
    let maos = root.join(".maos");
    let opened = Workspace::open(root).unwrap();
    let tasks = Tasks::new(&opened).list().unwrap().tasks;
    for task in &tasks {
        let mine: Vec<&Entry> = entries
            .iter()
            .filter(|e| {
                e.event.kind.starts_with("task.")
                    && e.event.subject.as_deref() == Some(task.id.as_str())
            })
            .collect();
        let last = mine
            .last()
            .unwrap_or_else(|| panic!("no entry for task {}", task.id));
        assert_eq!(
            last.event.data["version"].as_u64(),
            Some(task.version),
            "task {}: the journal's last entry is {last:?}",
            task.id
        );
        if task.status == Status::InProgress {
            let claim = mine
                .iter()
                .rev()
                .find(|e| e.event.kind == "task.claimed")
                .unwrap_or_else(|| panic!("task {} in progress without a claim entry", task.id));
            assert_eq!(
                claim.event.data["assignee"].as_str(),
                task.assignee.as_deref()
            );
            let same = mine
                .iter()
                .filter(|e| {
                    e.event.kind == "task.claimed"
                        && e.event.data["version"] == claim.event.data["version"]
                })
                .count();
            assert_eq!(same, 1, "task {}: {same} entries for one claim", task.id);
        }
    }
    for name in std::fs::read_dir(maos.join("locks")).unwrap() {
        let path = name.unwrap().path();
        if path.extension().is_none_or(|x| x != "lock") {
            continue;
        }
        let lock = read_json(&path);
        let (resource, token) = (lock["resource"].as_str().unwrap(), &lock["token"]);
        let about: Vec<&Entry> = entries
            .iter()
            .filter(|e| {
                e.event.kind.starts_with("lock.")
                    && e.event.subject.as_deref() == Some(resource)
                    && &e.event.data["token"] == token
            })
            .collect();
        let acquired = about
            .iter()
            .filter(|e| e.event.kind == "lock.acquired")
            .count();
        assert_eq!(acquired, 1, "lock {resource} token {token}: {about:?}");
        assert!(
            about
                .iter()
                .all(|e| matches!(e.event.kind.as_str(), "lock.acquired" | "lock.renewed")),
            "lock {resource} token {token} is held but the journal ended it: {about:?}"
        );
    }
    // Reservations: each one held has its grant, and nothing released it.
    if let Ok(dir) = std::fs::read_dir(maos.join("locks/reservations")) {
        for file in dir {
            let reservation = read_json(&file.unwrap().path());
            let token = &reservation["token"];
            let about: Vec<&Entry> = entries
                .iter()
                .filter(|e| {
                    e.event.kind.starts_with("reservation.") && &e.event.data["token"] == token
                })
                .collect();
            assert_eq!(
                about
                    .iter()
                    .filter(|e| e.event.kind == "reservation.granted")
                    .count(),
                1,
                "reservation {token}: {about:?}"
            );
            assert!(
                about.iter().all(|e| e.event.kind != "reservation.released"),
                "reservation {token} is held but the journal released it: {about:?}"
            );
        }
    }
    // Messages: every file in a channel segment, by the channel and seq it records.
    let on_disk: BTreeSet<(String, u64)> = maos_tests::files_under(&maos.join("channels"))
        .into_iter()
        .filter(|path| {
            let in_segment = path
                .parent()
                .and_then(|p| p.file_name())
                .is_some_and(|n| n.to_string_lossy().bytes().all(|b| b.is_ascii_digit()));
            in_segment && path.extension().is_some_and(|x| x == "json")
        })
        .map(|path| {
            let message = read_json(&path);
            (
                message["channel"].as_str().unwrap().to_owned(),
                message["seq"].as_u64().unwrap(),
            )
        })
        .collect();
    let mut journaled: BTreeMap<(String, u64), usize> = BTreeMap::new();
    for e in of_kind(&entries, "message.sent") {
        let key = (
            e.event.data["channel"].as_str().unwrap().to_owned(),
            e.event.data["seq"].as_u64().unwrap(),
        );
        *journaled.entry(key).or_default() += 1;
    }
    assert!(journaled.values().all(|n| *n == 1), "{journaled:?}");
    let journaled: BTreeSet<(String, u64)> = journaled.into_keys().collect();
    assert_eq!(on_disk, journaled, "messages and send entries differ");
    on_disk.len()
}

#[test]
fn six_processes_killed_at_random_leave_a_journal_that_verifies_and_agrees_with_the_state() {
    let ws = TestWorkspace::new();
    let store = Tasks::new(&Workspace::open(ws.root()).unwrap());
    for i in 0..60 {
        store
            .create("planner", NewTask::new(format!("journal task {i}")), None)
            .unwrap();
    }
    let dir = ws.root().join("chaos");
    std::fs::create_dir(&dir).unwrap();
    let spawn = |name: &str, seconds: f64| -> Child {
        ws.spawn_chaos_agent(name, seconds, &dir, Stdio::null())
    };
    let mut running: Vec<(String, Child)> = (0..6)
        .map(|k| (format!("agent-{k}"), spawn(&format!("agent-{k}"), 10.0)))
        .collect();
    let mut rng = Lcg(0x10a1);
    let until = Instant::now() + Duration::from_secs(10);
    let mut kills = 0;
    let mut restarted = 0;
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50 + rng.next(250) as u64));
        let victim = rng.next(running.len());
        let (name, mut child) = running.swap_remove(victim);
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
        // Restarted under the same id half the time, a new one otherwise.
        let name = if kills % 2 == 0 {
            name
        } else {
            restarted += 1;
            format!("agent-r{restarted}")
        };
        let left = until
            .saturating_duration_since(Instant::now())
            .as_secs_f64();
        running.push((name.clone(), spawn(&name, left.max(0.5))));
    }
    for (_, mut child) in running {
        let _ = child.kill();
        let _ = child.wait();
    }
    assert!(kills >= 20, "only {kills} kills");
    let messages = assert_journal_agrees(&ws, ws.root());
    let entries = verified_entries(&ws, ws.root());
    let late = entries.iter().filter(|e| e.late).count();
    eprintln!(
        "{kills} kills; {} entries, {late} journaled late by the next holder; {messages} messages",
        entries.len()
    );
    for kind in [
        "task.claimed",
        "task.completed",
        "lock.acquired",
        "lock.released",
        "message.sent",
    ] {
        assert!(of_kind(&entries, kind).count() > 0, "no {kind} entry");
    }
    // Nothing of it broke coordination afterwards.
    ws.maos(&["agent", "recover"]).assert_ok();
    ws.maos(&["doctor", "--fix"]).assert_ok();
    ws.maos(&["doctor"]).assert_ok();
    assert_journal_agrees(&ws, ws.root());
}

/// A journal of `n` entries made through the CLI (locks, tasks, messages).
fn journal_of_twelve(ws: &TestWorkspace) -> Vec<String> {
    for i in 0..4 {
        ws.maos(&["task", "add", &format!("t{i}")]).assert_ok();
        ws.maos(&["msg", "send", "c", &format!("{{\"i\":{i}}}")])
            .assert_ok();
        ws.maos(&["lock", "acquire", &format!("r{i}")]).assert_ok();
    }
    let text = std::fs::read_to_string(ws.maos_dir().join("journal/00000001.jsonl")).unwrap();
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 12);
    lines
}

#[test]
fn verify_names_the_first_entry_edited_deleted_swapped_or_cut_off_and_nothing_else_breaks() {
    let ws = TestWorkspace::new();
    let good = journal_of_twelve(&ws);
    let segment = ws.maos_dir().join("journal/00000001.jsonl");
    let put = |lines: &[String]| std::fs::write(&segment, lines.join("\n") + "\n").unwrap();
    let check = |lines: Vec<String>, n: u64, line: usize, says: &str| {
        put(&lines);
        let out = ws.maos(&["journal", "verify"]).assert_code(1);
        let err = out.stderr();
        assert!(
            err.contains(&format!("00000001.jsonl:{line}:")) && err.contains(&format!("entry {n}")),
            "expected entry {n} at line {line}: {err}"
        );
        assert!(err.contains(says), "{err}");
        // Everything else goes on: new changes are made and journaled after the damage.
        ws.maos(&["task", "add", "after the damage"]).assert_ok();
        ws.maos(&["lock", "release", "r0"]).assert_ok();
        ws.maos(&["lock", "acquire", "r0"]).assert_ok();
        ws.maos(&["events", "--kind", "task.*"]).assert_ok();
        // …and the same entry is still the first one named, by `doctor` too.
        let again = ws.maos(&["journal", "verify"]).assert_code(1);
        assert!(
            again.stderr().contains(&format!("entry {n}")),
            "{}",
            again.stderr()
        );
        let doctor = ws.maos(&["doctor", "--fix"]).assert_code(1);
        assert!(
            doctor.stdout().contains("00000001.jsonl")
                && doctor.stdout().contains(&format!("entry {n}")),
            "{}",
            doctor.stdout()
        );
        assert!(segment.exists(), "doctor must not move the journal away");
        put(&good);
        std::fs::write(
            ws.maos_dir().join("journal/.lock"),
            format!(
                "{:020} {} {:020} {:020}\n",
                12,
                serde_json::from_str::<Value>(&good[11]).unwrap()["hash"]
                    .as_str()
                    .unwrap(),
                1,
                good.iter().map(|l| l.len() + 1).sum::<usize>()
            ),
        )
        .unwrap();
        ws.maos(&["journal", "verify"]).assert_ok();
    };
    ws.maos(&["journal", "verify"]).assert_ok();

    let mut edited = good.clone();
    edited[4] = edited[4].replace("\"at\":\"2", "\"at\":\"1");
    check(edited, 5, 5, "edited");

    let mut deleted = good.clone();
    deleted.remove(6);
    check(deleted, 7, 7, "missing");

    let mut swapped = good.clone();
    swapped.swap(2, 3);
    check(swapped, 3, 3, "");

    let mut cut = good.clone();
    cut.truncate(9);
    check(cut, 10, 10, "cut off");

    // An edit whose hash was recomputed is caught by the entry after it.
    let mut rehashed = good.clone();
    let mut entry: serde_json::Map<String, Value> = serde_json::from_str(&rehashed[7]).unwrap();
    entry.remove("hash");
    entry.insert("agent".into(), Value::from("someone-else"));
    let body = serde_json::to_string(&entry).unwrap();
    use sha2::Digest as _;
    let hash: String = sha2::Sha256::digest(body.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    rehashed[7] = format!("{},\"hash\":\"{hash}\"}}", &body[..body.len() - 1]);
    check(rehashed, 8, 8, "replaced or edited");

    // The last entry rewritten, its hash recomputed as docs/format.md defines it: no entry
    // after it to catch it, but the head (journal/.lock) holds the true hash — and the next
    // change chains from the head, never onto the forgery.
    let mut forged = good.clone();
    let mut entry: serde_json::Map<String, Value> = serde_json::from_str(&forged[11]).unwrap();
    entry.remove("hash");
    entry.insert("agent".into(), Value::from("a-much-longer-forged-name"));
    let body = serde_json::to_string(&entry).unwrap();
    let hash: String = sha2::Sha256::digest(body.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    forged[11] = format!("{},\"hash\":\"{hash}\"}}", &body[..body.len() - 1]);
    check(forged, 12, 12, "was rewritten");
}

#[test]
fn hooks_that_hang_or_fail_never_hold_up_coordination_and_their_failures_are_journaled() {
    let ws = TestWorkspace::new();
    let started = ws.root().join("hung-started");
    std::fs::write(
        ws.maos_dir().join("hooks.toml"),
        format!(
            r#"
[[hook]]
on = "task.completed"
run = ["sh", "-c", "touch {}; exec sleep 1000"]
timeout = "2s"

[[hook]]
on = "lock.*"
run = ["sh", "-c", "cat >/dev/null; exit 1"]

[[hook]]
on = "task.*"
run = ["sh", "-c", "cat >> {}"]
"#,
            started.display(),
            ws.root().join("seen.jsonl").display()
        ),
    )
    .unwrap();
    ws.maos(&["hooks", "list"]).assert_ok();
    let id = ws.maos(&["--json", "task", "add", "t"]).assert_ok().json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    ws.maos(&["task", "claim", &id]).assert_ok();
    ws.maos(&["task", "done", &id]).assert_ok();
    // The command returned; the hanging hook was started by the runner, not waited for.
    let until = Instant::now() + Duration::from_secs(20);
    while !started.exists() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(started.exists(), "the hook never ran");
    // Locks go on while hooks run (each lock event has a failing hook).
    for i in 0..20 {
        ws.maos(&["lock", "acquire", &format!("r{i}")]).assert_ok();
        ws.maos(&["lock", "release", &format!("r{i}")]).assert_ok();
    }
    // The hang is killed at its timeout and journaled; every lock hook's exit 1 too.
    let until = Instant::now() + Duration::from_secs(30);
    let failures = loop {
        let lines = ws
            .maos(&["--json", "events", "--kind", "hook.failed"])
            .assert_ok()
            .stdout();
        let failures: Vec<Value> = lines
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let timed_out = failures.iter().any(|f| {
            f["data"]["reason"]
                .as_str()
                .unwrap_or("")
                .contains("timed out")
        });
        let exits = failures
            .iter()
            .filter(|f| {
                f["data"]["reason"]
                    .as_str()
                    .unwrap_or("")
                    .contains("exit status: 1")
            })
            .count();
        if (timed_out && exits >= 40) || Instant::now() > until {
            break failures;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        failures.iter().any(|f| f["data"]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("timed out")),
        "{failures:?}"
    );
    let exits = failures
        .iter()
        .filter(|f| {
            f["data"]["kind"]
                .as_str()
                .unwrap_or("")
                .starts_with("lock.")
        })
        .count();
    assert_eq!(exits, 40, "one failure per lock event: {failures:?}");
    // The hook that succeeds saw each task event once, as JSON on stdin.
    let seen = std::fs::read_to_string(ws.root().join("seen.jsonl")).unwrap();
    let kinds: Vec<String> = seen
        .replace("}{", "}\n{")
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["kind"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(kinds, ["task.created", "task.claimed", "task.completed"]);
    // `maos hooks test` runs them now, on a sample, and says which failed.
    let tried = ws.maos(&["hooks", "test", "lock.stolen"]).assert_code(1);
    assert!(
        tried.stdout().contains("exit status: 1"),
        "{}",
        tried.stdout()
    );
    ws.maos(&["hooks", "test", "agent.joined"]).assert_ok();
    assert_journal_agrees(&ws, ws.root());
}

#[test]
fn a_snapshot_taken_while_four_processes_claim_and_send_restores_one_consistent_moment() {
    let ws = TestWorkspace::new();
    let store = Tasks::new(&Workspace::open(ws.root()).unwrap());
    for i in 0..200 {
        store
            .create("planner", NewTask::new(format!("snap task {i}")), None)
            .unwrap();
    }
    let workers: Vec<Child> = (0..2)
        .map(|k| {
            ws.helper_cmd()
                .args(["claim-loop", &format!("claimer-{k}")])
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .chain((0..2).map(|k| {
            ws.helper_cmd()
                .args(["send", "snap", "8000", &format!("s{k}")])
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        }))
        .collect();
    // Once work is under way (messages sent, tasks claimed), in the middle of it.
    let segment = ws.maos_dir().join("channels/snap/000000");
    let until = Instant::now() + Duration::from_secs(20);
    while std::fs::read_dir(&segment).map_or(0, |d| d.count()) < 100 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(5));
    }
    let file = ws.root().join("mid.tar.gz");
    ws.maos(&["snapshot", "create", file.to_str().unwrap()])
        .assert_ok();
    for mut w in workers {
        assert!(w.wait().unwrap().success());
    }
    let listed = ws.maos(&["--json", "snapshot", "list"]).assert_ok().json();
    assert_eq!(listed.as_array().map(Vec::len), Some(0), "{listed}"); // written elsewhere
    // Restored into an empty workspace.
    let empty = tempfile::tempdir().unwrap();
    let target = empty.path().join("restored");
    std::fs::create_dir(&target).unwrap();
    let restored = ws
        .maos(&[
            "--json",
            "--workspace",
            target.to_str().unwrap(),
            "snapshot",
            "restore",
            file.to_str().unwrap(),
        ])
        .assert_ok()
        .json();
    let entries_at = restored["manifest"]["journal_entries"].as_u64().unwrap();
    assert!(entries_at > 0);
    ws.maos(&["--workspace", target.to_str().unwrap(), "status"])
        .assert_ok();
    // One moment: the journal stops exactly at the state (every task's last entry is its
    // version, every message its send, nothing half claimed), and seqs have no gap.
    assert_journal_agrees(&ws, &target);
    let entries = verified_entries(&ws, &target);
    // Only the snapshot's own restore entry follows the moment it was taken.
    assert_eq!(entries.len() as u64, entries_at + 1);
    let opened = Workspace::open(&target).unwrap();
    for task in Tasks::new(&opened).list().unwrap().tasks {
        if task.status == Status::InProgress {
            assert!(task.assignee.is_some(), "{} half claimed", task.id);
        }
    }
    let seqs: Vec<u64> = ws
        .maos(&[
            "--workspace",
            target.to_str().unwrap(),
            "--json",
            "msg",
            "recv",
            "snap",
        ])
        .assert_ok()
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "a gap in the restored channel"
    );
    assert!(
        !seqs.is_empty() && seqs.len() < 16_000,
        "not a mid-activity moment: {}",
        seqs.len()
    );
    eprintln!("the snapshot holds {} of 16000 messages", seqs.len());
    // A restore over a workspace with a live agent is refused unless forced.
    let (holder, _) =
        maos_tests::helper_with_line(ws.helper_cmd().args(["hold-then-join", "x", "live-agent"]));
    let mut holder = KillOnDrop(holder);
    let refused = ws
        .maos(&["snapshot", "restore", file.to_str().unwrap()])
        .assert_code(5);
    assert!(
        refused.stderr().contains("live-agent"),
        "{}",
        refused.stderr()
    );
    holder.0.kill().unwrap();
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn automatic_snapshots_come_from_heartbeats_one_per_period_whoever_notices_first() {
    let ws = TestWorkspace::new();
    let config_path = ws.maos_dir().join("maos.json");
    let mut config: Value = read_json(&config_path);
    config["snapshot_every_minutes"] = Value::from(60);
    std::fs::write(&config_path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    ws.maos(&["task", "add", "something to keep"]).assert_ok();
    // Two agents heartbeating (every 5 s): the first beat of either takes this hour's.
    let agents: Vec<KillOnDrop> = ["snap-a", "snap-b"]
        .iter()
        .enumerate()
        .map(|(i, name)| {
            KillOnDrop(
                ws.helper_cmd()
                    .args(["hold-then-join", &format!("r{i}"), name])
                    .stdout(Stdio::null())
                    .spawn()
                    .unwrap(),
            )
        })
        .collect();
    let autos = || -> Vec<String> {
        std::fs::read_dir(ws.maos_dir().join("snapshots"))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with("auto-") && n.ends_with(".tar.gz"))
                    .collect()
            })
            .unwrap_or_default()
    };
    let until = Instant::now() + Duration::from_secs(30);
    while autos().is_empty() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(200));
    }
    // Both agents beat at least twice more: still one snapshot for the period.
    std::thread::sleep(Duration::from_secs(6));
    drop(agents);
    assert_eq!(autos().len(), 1, "{:?}", autos());
    let listed = ws.maos(&["--json", "snapshot", "list"]).assert_ok().json();
    let manifest = &listed[0]["manifest"];
    assert_eq!(manifest["automatic"], Value::Bool(true), "{listed}");
    assert!(
        ["snap-a", "snap-b"].contains(&manifest["by"].as_str().unwrap()),
        "{listed}"
    );
}

#[test]
fn a_broken_hooks_file_is_named_and_changes_go_on_without_hooks() {
    let ws = TestWorkspace::new();
    std::fs::write(
        ws.maos_dir().join("hooks.toml"),
        "[[hook]]\non = \"task.*\"\nrun = \"not a list\"\n",
    )
    .unwrap();
    let out = ws.maos(&["hooks", "list"]).assert_code(2);
    assert!(
        out.stderr().contains("hooks.toml") && out.stderr().contains("line 3"),
        "{}",
        out.stderr()
    );
    ws.maos(&["hooks", "test", "task.created"]).assert_code(2);
    ws.maos(&["task", "add", "still works"]).assert_ok();
    std::fs::write(
        ws.maos_dir().join("hooks.toml"),
        "[[hook]]\non = \"task.*\"\nrun = []\n",
    )
    .unwrap();
    let out = ws.maos(&["hooks", "list"]).assert_code(2);
    assert!(
        out.stderr().contains("names no command"),
        "{}",
        out.stderr()
    );
    assert_eq!(verified_entries(&ws, ws.root()).len(), 1);
}

#[test]
fn events_follow_wakes_on_changes_made_by_other_processes() {
    let ws = TestWorkspace::new();
    ws.maos(&["task", "add", "before the follow"]).assert_ok();
    let mut follower = KillOnDrop(
        ws.maos_cmd()
            .args([
                "--json",
                "events",
                "--follow",
                "--kind",
                "task.*",
                "--timeout",
                "20s",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines =
        std::io::BufRead::lines(std::io::BufReader::new(follower.0.stdout.take().unwrap()));
    // Following without --since starts at the end; each new matching event arrives once,
    // in order, whoever made it.
    std::thread::sleep(Duration::from_millis(300));
    ws.maos(&["lock", "acquire", "not-a-task"]).assert_ok();
    let id = ws
        .maos(&["--json", "task", "add", "during"])
        .assert_ok()
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    ws.maos_as("other", &["task", "claim", &id]).assert_ok();
    let mut seen = Vec::new();
    for _ in 0..2 {
        let line = lines.next().unwrap().unwrap();
        let entry: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(entry["subject"].as_str(), Some(id.as_str()), "{line}");
        seen.push(entry["kind"].as_str().unwrap().to_owned());
    }
    assert_eq!(seen, ["task.created", "task.claimed"]);
    // --since reaches back; a plain read prints what is there and ends.
    let all = ws
        .maos(&[
            "--json",
            "events",
            "--since",
            "10m",
            "--kind",
            "task.created",
        ])
        .assert_ok()
        .stdout();
    assert_eq!(all.lines().count(), 2, "{all}");
    // `maos status` tells the journal's size and last event.
    let status = ws.maos(&["--json", "status"]).assert_ok().json();
    assert_eq!(
        status["journal"]["last"]["kind"], "task.claimed",
        "{status}"
    );
    assert_eq!(status["journal"]["entries"], 4, "{status}");
}

/// A process stopped while it holds the journal's lock: changes still happen (each waits at
/// most its kernel-lock timeout for the journal, then leaves its entry noted), and once the
/// holder is gone the next reader journals them, late, in order, the chain whole.
#[test]
fn a_stopped_holder_of_the_journal_lock_delays_entries_but_loses_none() {
    let ws = TestWorkspace::new();
    ws.maos(&["task", "add", "before"]).assert_ok();
    let (holder, line) =
        maos_tests::helper_with_line(ws.helper_cmd().args(["hold-kernel-lock", "journal/.lock"]));
    let holder = KillOnDrop(holder);
    assert_eq!(line.trim(), "locked");
    let stopped = maos_tests::Stopped::new(holder.0.id());
    let made = ws
        .maos_cmd()
        .env("MAOS_LOCK_TIMEOUT", "1")
        .args(["--json", "task", "add", "while the journal is held"])
        .output()
        .unwrap();
    let made = maos_tests::Run(made).assert_ok().json();
    let id = made["id"].as_str().unwrap().to_owned();
    ws.maos_cmd()
        .env("MAOS_LOCK_TIMEOUT", "1")
        .args(["msg", "send", "c", "hello"])
        .status()
        .unwrap();
    ws.maos_cmd()
        .env("MAOS_LOCK_TIMEOUT", "1")
        .args(["reserve", "src/**"])
        .status()
        .unwrap();
    // L5: a lock acquisition waits for the journal no longer than its own --wait (not the
    // 60 s kernel-lock default): the lock is held, its entry left noted.
    let started = std::time::Instant::now();
    ws.maos(&["lock", "acquire", "db", "--wait", "1"])
        .assert_ok();
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    drop(stopped);
    drop(holder);
    let entries = verified_entries(&ws, ws.root());
    let late: Vec<(&str, Option<&str>)> = entries
        .iter()
        .filter(|e| e.late)
        .map(|e| (e.event.kind.as_str(), e.event.subject.as_deref()))
        .collect();
    assert_eq!(
        late,
        [
            ("task.created", Some(id.as_str())),
            ("message.sent", Some("c#1")),
            ("reservation.granted", Some("src/**")),
            ("lock.acquired", Some("db"))
        ]
    );
    assert_journal_agrees(&ws, ws.root());
}

/// A hook killed at its timeout takes everything it started with it: its process group is
/// killed, so a `sleep` it put in the background is not left running.
#[test]
fn a_hook_killed_at_its_timeout_leaves_no_child_running() {
    let ws = TestWorkspace::new();
    let pid_file = ws.root().join("child.pid");
    std::fs::write(
        ws.maos_dir().join("hooks.toml"),
        format!(
            r#"
[[hook]]
on = "task.created"
run = ["sh", "-c", "sleep 300 & echo $! > {}; sleep 300"]
timeout = "1s"
"#,
            pid_file.display()
        ),
    )
    .unwrap();
    ws.maos(&["task", "add", "t"]).assert_ok();
    let until = Instant::now() + Duration::from_secs(20);
    while !pid_file.exists() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = std::fs::read_to_string(&pid_file).expect("the hook ran");
    let pid = pid.trim();
    // Gone (or a zombie waiting for init) once the hook's timeout has passed.
    let running = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            let state = stat.rsplit(')').next().unwrap_or_default().trim_start();
            !state.starts_with('Z')
        })
    };
    let until = Instant::now() + Duration::from_secs(20);
    while running() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!running(), "the hook's background child {pid} still runs");
}
