//! The chaos suite: a mixed workload of agent processes — messages, locks, dependent tasks —
//! while random agents are killed with SIGKILL; afterwards every invariant is checked.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use maos_coordination::Workspace;
use maos_coordination::task::{NewTask, Status, Tasks};
use maos_tests::TestWorkspace;

/// A small deterministic generator (no dependency needed for "random" kills).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n
    }
}

#[test]
fn a_mixed_workload_survives_random_kills_with_every_invariant_intact() {
    let ws = TestWorkspace::new();
    let store = Tasks::new(&Workspace::open(ws.root()).unwrap());
    let mut ids: Vec<String> = Vec::new();
    for i in 0..80 {
        let mut new = NewTask::new(format!("chaos task {i}"));
        if i % 4 != 0 {
            new.dependencies.push(ids[i - 1].clone());
        }
        ids.push(store.create("planner", new, None).unwrap().id);
    }
    let dir = ws.root().join("chaos");
    std::fs::create_dir(&dir).unwrap();
    let spawn = |name: &str, seconds: f64| -> Child {
        ws.helper_cmd()
            .args(["chaos", name, &seconds.to_string(), dir.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut rng = Lcg(0x5eed);
    let mut running: Vec<(String, Child)> = (0..5)
        .map(|k| {
            let name = format!("agent-{k}");
            let child = spawn(&name, 8.0);
            (name, child)
        })
        .collect();
    let mut killed = Vec::new();
    let mut next_id = 5;
    let chaos_until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < chaos_until {
        std::thread::sleep(Duration::from_millis(250 + rng.next(250) as u64));
        let victim = rng.next(running.len());
        let (name, mut child) = running.swap_remove(victim);
        child.kill().unwrap();
        child.wait().unwrap();
        killed.push(name);
        let name = format!("agent-{next_id}");
        next_id += 1;
        running.push((name.clone(), spawn(&name, 3.0)));
    }
    // The survivors finish their time and leave on their own; a violation exits 2.
    for (name, child) in running {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(killed.len() >= 10, "only {} kills", killed.len());

    // Recovery, then whoever is left drains the queue.
    ws.maos(&["agent", "recover"]).assert_ok();
    ws.maos(&[
        "--agent",
        "finisher",
        "agent",
        "run",
        "--until-idle",
        "--",
        "true",
    ])
    .assert_ok();

    // Messages: every acknowledged send is in the channel exactly once, in one order.
    let messages = ws
        .maos(&["--json", "msg", "recv", "chaos"])
        .assert_ok()
        .json();
    let mut seen: BTreeMap<(String, u64), u64> = BTreeMap::new();
    let mut last_seq = 0;
    for m in messages.as_array().unwrap() {
        let seq = m["seq"].as_u64().unwrap();
        assert!(seq > last_seq, "channel order broken at {seq}");
        last_seq = seq;
        let key = (
            m["payload"]["agent"].as_str().unwrap().to_owned(),
            m["payload"]["n"].as_u64().unwrap(),
        );
        assert!(
            seen.insert(key.clone(), seq).is_none(),
            "{key:?} delivered twice"
        );
    }
    let mut acked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if !path
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("acks-")
        {
            continue;
        }
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            let parts: Vec<&str> = line.split(' ').collect();
            if parts.len() != 3 {
                continue; // a line cut by the kill: its send was acknowledged only in part
            }
            let key = (parts[0].to_owned(), parts[1].parse::<u64>().unwrap());
            assert_eq!(
                seen.get(&key),
                Some(&parts[2].parse().unwrap()),
                "acknowledged {key:?} lost"
            );
            acked += 1;
        }
    }
    assert!(acked > 100, "only {acked} messages acknowledged");

    // Tasks: every task completed exactly once (one transition to completed in its history).
    for task in store.list().unwrap().tasks {
        assert_eq!(
            task.status,
            Status::Completed,
            "{} is {}",
            task.id,
            task.status
        );
        let completions = task
            .history
            .iter()
            .filter(|c| c.field == "status" && c.to == "completed")
            .count();
        assert_eq!(completions, 1, "{} completed {completions} times", task.id);
        for dep in &task.dependencies {
            let dep = store.get(dep).unwrap();
            assert!(
                dep.completed_at <= task.started_at,
                "{} started before {}",
                task.id,
                dep.id
            );
        }
    }

    // No partial or broken file anywhere; after recovery the doctor only tidies leftovers.
    let fixed = ws.maos(&["--json", "doctor", "--fix"]).assert_ok().json();
    let actions: BTreeSet<&str> = fixed["repairs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert!(
        !actions.contains("quarantined"),
        "broken files found: {fixed}"
    );
    ws.maos(&["doctor"]).assert_ok();
    let agents = ws.maos(&["--json", "agent", "list"]).assert_ok().json();
    assert!(
        agents
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["state"] == "gone"),
        "{agents}"
    );
    assert_eq!(
        ws.maos(&["--json", "lock", "list"]).assert_ok().json(),
        serde_json::json!([])
    );
}
