//! The task index under hand edits, deletion, damage, killed writers and random operations
//! of several processes: every query answers as a full scan of the records would.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use maos_coordination::Workspace;
use maos_coordination::task::Tasks;
use maos_tests::TestWorkspace;
use serde_json::Value;

fn tasks(ws: &TestWorkspace) -> Tasks {
    Tasks::new(&Workspace::open(ws.root()).unwrap())
}

fn ids(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect()
}

/// `maos --json task ready` and `task list` (through the index) against a full scan.
fn assert_queries_match_a_scan(ws: &TestWorkspace, context: &str) {
    let scan = tasks(ws);
    let ready = ws.maos(&["--json", "task", "ready"]).assert_ok().json();
    let expected: Vec<String> = scan
        .ready_by_scan()
        .unwrap()
        .tasks
        .iter()
        .map(|t| t.id.clone())
        .collect();
    assert_eq!(ids(&ready), expected, "ready, {context}");
    let listing = scan.list().unwrap();
    for status in ["pending", "blocked", "in_progress", "completed"] {
        let listed = ws
            .maos(&["--json", "task", "list", "--status", status])
            .assert_ok()
            .json();
        let expected: Vec<String> = listing
            .tasks
            .iter()
            .filter(|t| t.status.as_str() == status)
            .map(|t| t.id.clone())
            .collect();
        assert_eq!(ids(&listed), expected, "list --status {status}, {context}");
    }
    let all = ws.maos(&["--json", "task", "list"]).assert_ok().json();
    let statuses: Vec<(String, String)> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["id"].as_str().unwrap().to_owned(),
                t["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = listing
        .tasks
        .iter()
        .map(|t| (t.id.clone(), t.status.as_str().to_owned()))
        .collect();
    assert_eq!(statuses, expected, "list, {context}");
    let progress = ws.maos(&["--json", "progress"]).assert_ok().json();
    let report = maos_coordination::progress::report(&listing);
    assert_eq!(
        progress["by_status"],
        serde_json::to_value(&report.by_status).unwrap(),
        "progress, {context}"
    );
    assert_eq!(
        progress["critical_path"],
        serde_json::to_value(&report.critical_path).unwrap(),
        "critical path, {context}"
    );
}

/// Rewrites a record's JSON with `edit`, in place (a plain write over the file) or as an
/// editor saves it (a new file renamed over it).
fn hand_edit(ws: &TestWorkspace, id: &str, by_rename: bool, edit: impl FnOnce(&mut Value)) {
    let path = ws.maos_dir().join("tasks").join(format!("{id}.json"));
    let mut record: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut record);
    record["version"] = (record["version"].as_u64().unwrap() + 1).into();
    let text = serde_json::to_string_pretty(&record).unwrap();
    if by_rename {
        let tmp = path.with_extension("json.swp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
    } else {
        std::fs::write(&path, text).unwrap();
    }
}

fn add(ws: &TestWorkspace, id: &str, extra: &[&str]) {
    let mut args = vec!["task", "add", id, "--id", id];
    args.extend_from_slice(extra);
    ws.maos(&args).assert_ok();
}

/// A record's priority changed by hand — in place, and by rename — is seen by the next
/// `ready`; so are a record created, and one deleted, by hand.
#[test]
fn hand_edits_in_place_and_by_rename_are_seen_by_the_next_query() {
    let ws = TestWorkspace::new();
    for id in ["a", "b", "c"] {
        add(&ws, id, &["--priority", "low"]);
    }
    assert_queries_match_a_scan(&ws, "start");
    hand_edit(&ws, "c", false, |r| r["priority"] = "critical".into());
    let ready = ws.maos(&["--json", "task", "ready"]).assert_ok().json();
    assert_eq!(ids(&ready)[0], "c", "in place: {ready}");
    hand_edit(&ws, "b", true, |r| r["priority"] = "high".into());
    let ready = ws.maos(&["--json", "task", "ready"]).assert_ok().json();
    assert_eq!(ids(&ready)[..2], ["c", "b"], "by rename: {ready}");
    hand_edit(&ws, "a", false, |r| {
        r["status"] = "blocked".into();
        r["blocked_reason"] = "by hand".into();
    });
    assert_queries_match_a_scan(&ws, "a blocked in place");
    // A record written by hand (the documented way: a temporary name, then mv), and one
    // deleted.
    let mut new: Value =
        serde_json::from_slice(&std::fs::read(ws.maos_dir().join("tasks/b.json")).unwrap())
            .unwrap();
    new["id"] = "d".into();
    new["title"] = "written by hand".into();
    let tmp = ws.maos_dir().join("tmp/d.json");
    std::fs::write(&tmp, serde_json::to_string(&new).unwrap()).unwrap();
    std::fs::rename(&tmp, ws.maos_dir().join("tasks/d.json")).unwrap();
    std::fs::remove_file(ws.maos_dir().join("tasks/c.json")).unwrap();
    assert_queries_match_a_scan(&ws, "created and deleted by hand");
    let ready = ws.maos(&["task", "ready"]).assert_ok().stdout();
    assert!(
        ready.contains("written by hand") && !ready.contains(" c "),
        "{ready}"
    );
}

/// A deleted or damaged index is rebuilt by the next command, which says so on stderr;
/// `maos doctor` finds an index that disagrees with the records, and `--fix` rebuilds it.
#[test]
fn a_lost_or_damaged_index_is_rebuilt_and_doctor_checks_it() {
    let ws = TestWorkspace::new();
    add(&ws, "a", &[]);
    add(&ws, "b", &["--depends-on", "a"]);
    let index = ws.maos_dir().join("tasks/.index");
    ws.maos(&["task", "ready"]).assert_ok();
    assert!(index.join("active").exists());
    std::fs::remove_dir_all(&index).unwrap();
    let run = ws.maos(&["task", "ready"]).assert_ok();
    assert!(
        run.stderr()
            .contains("task index was missing or damaged; rebuilt"),
        "{}",
        run.stderr()
    );
    assert!(
        run.stdout().contains("a ") && !run.stdout().contains("b "),
        "{}",
        run.stdout()
    );
    let quiet = ws.maos(&["task", "ready"]).assert_ok();
    assert!(quiet.stderr().is_empty(), "said once: {}", quiet.stderr());
    let mut damaged = std::fs::read(index.join("active")).unwrap();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0xff;
    std::fs::write(index.join("active"), damaged).unwrap();
    let run = ws.maos(&["task", "list"]).assert_ok();
    assert!(run.stderr().contains("rebuilt"), "{}", run.stderr());
    assert_queries_match_a_scan(&ws, "after the rebuild");
    // Stale on disk (a hand edit no command has looked at yet): doctor says so.
    hand_edit(&ws, "a", false, |r| r["priority"] = "high".into());
    let report = ws.maos(&["--json", "doctor"]).assert_code(1).json();
    let problem = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["remedy"] == "rebuild_index")
        .unwrap_or_else(|| panic!("{report}"));
    assert!(
        problem["problem"].as_str().unwrap().contains("`a`"),
        "{problem}"
    );
    ws.maos(&["doctor", "--fix"]).assert_ok();
    ws.maos(&["doctor"]).assert_ok();
}

/// Claimers killed at random moments — before, during or after writing the record and the
/// index — a hundred times: no query lists a claimed task as ready, no task is claimed
/// twice, and the queries agree with a scan after every kill.
#[test]
fn claimers_killed_at_random_points_leave_no_stale_status() {
    let ws = TestWorkspace::new();
    let plan: String = (0..120)
        .map(|i| format!("{{\"id\": \"k{i:03}\", \"title\": \"task {i}\"}}\n"))
        .collect();
    let file = ws.root().join("plan.jsonl");
    std::fs::write(&file, plan).unwrap();
    ws.maos(&["task", "import", file.to_str().unwrap()])
        .assert_ok();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for round in 0..100 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let mut child = ws
            .maos_cmd()
            .env("MAOS_AGENT_ID", format!("victim-{round}"))
            .args(["task", "claim"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(seed % 6_000));
        let _ = child.kill();
        let _ = child.wait();
        let ready = ws.maos(&["--json", "task", "ready"]).assert_ok().json();
        for id in ids(&ready) {
            let path = ws.maos_dir().join("tasks").join(format!("{id}.json"));
            let record: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
            assert_eq!(
                record["status"], "pending",
                "round {round}: `{id}` listed ready"
            );
        }
        if round % 20 == 0 {
            assert_queries_match_a_scan(&ws, &format!("round {round}"));
        }
    }
    let listing = tasks(&ws).list().unwrap();
    assert!(
        listing.tasks.iter().all(|t| t.attempts <= 1),
        "a task was claimed twice"
    );
    // Claiming the rest: each once.
    for _ in 0..listing
        .tasks
        .iter()
        .filter(|t| t.status.as_str() == "pending")
        .count()
    {
        ws.maos_as("finisher", &["task", "claim"]).assert_ok();
    }
    let listing = tasks(&ws).list().unwrap();
    assert!(
        listing
            .tasks
            .iter()
            .all(|t| t.attempts == 1 && t.status.as_str() == "in_progress")
    );
}

/// Random operations by three agents — adds with dependencies, claims, completions,
/// failures, retries, cancellations, hand edits in place and by rename, the index deleted —
/// one step at a time, each its own process: after every step every query answers as a
/// full scan of the records would.
#[test]
fn random_operations_of_three_agents_agree_with_a_scan_after_every_step() {
    let ws = TestWorkspace::new();
    let mut rng: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let mut made: Vec<String> = Vec::new();
    for step in 0..120 {
        let agent = format!("agent-{}", next(3));
        let held = |ws: &TestWorkspace, agent: &str| -> Option<String> {
            tasks(ws)
                .list()
                .unwrap()
                .tasks
                .into_iter()
                .find(|t| {
                    t.status.as_str() == "in_progress" && t.assignee.as_deref() == Some(agent)
                })
                .map(|t| t.id)
        };
        let what = match next(10) {
            0..=2 => {
                let id = format!("s{step}");
                let mut args = vec![
                    "task".to_owned(),
                    "add".into(),
                    id.clone(),
                    "--id".into(),
                    id.clone(),
                ];
                if !made.is_empty() && next(2) == 0 {
                    args.extend([
                        "--depends-on".into(),
                        made[next(made.len() as u64) as usize].clone(),
                    ]);
                }
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                ws.maos_as(&agent, &args).assert_ok();
                made.push(id);
                "add"
            }
            3 | 4 => {
                ws.maos_as(&agent, &["task", "claim"]);
                "claim"
            }
            5 | 6 => {
                if let Some(id) = held(&ws, &agent) {
                    let verb = ["done", "done", "fail"][next(3) as usize];
                    ws.maos_as(&agent, &["task", verb, &id]).assert_ok();
                }
                "finish"
            }
            7 => {
                if let Some(id) = made.get(next(made.len().max(1) as u64) as usize) {
                    let verb = ["retry", "cancel"][next(2) as usize];
                    ws.maos_as(&agent, &["task", verb, id]);
                }
                "retry/cancel"
            }
            8 => {
                if let Some(id) = made.get(next(made.len().max(1) as u64) as usize).cloned() {
                    let priority = ["low", "medium", "high", "critical"][next(4) as usize];
                    hand_edit(&ws, &id, next(2) == 0, |r| r["priority"] = priority.into());
                }
                "hand edit"
            }
            _ => {
                let _ = std::fs::remove_dir_all(ws.maos_dir().join("tasks/.index"));
                "index deleted"
            }
        };
        assert_queries_match_a_scan(&ws, &format!("step {step} ({what} by {agent})"));
    }
    assert!(Path::new(&ws.maos_dir().join("tasks/.index/active")).exists());
}

/// Three worker processes drain a plan with dependencies while a fourth edits other records
/// by hand and deletes the index now and then: every task is completed exactly once, and the
/// queries agree with a scan at the end.
#[test]
fn concurrent_workers_hand_edits_and_index_loss_keep_the_index_true() {
    let ws = TestWorkspace::new();
    // Workers take the `c` tasks; the `r` tasks need a reviewer, whom no worker is: those
    // are the ones edited by hand meanwhile (a hand edit racing a worker's own write could
    // undo it, which is the records' rule, not the index's).
    let reviews: String = (0..10)
        .map(|i| {
            format!("{{\"id\": \"r{i:02}\", \"title\": \"review {i}\", \"role\": \"reviewer\"}}\n")
        })
        .collect();
    let plan: String = (0..60)
        .map(|i| {
            let deps = if i % 3 == 0 || i == 0 {
                String::new()
            } else {
                format!(", \"dependencies\": [\"c{:02}\"]", i - 1)
            };
            format!("{{\"id\": \"c{i:02}\", \"title\": \"task {i}\"{deps}}}\n")
        })
        .collect();
    let file = ws.root().join("plan.jsonl");
    std::fs::write(&file, format!("{plan}{reviews}")).unwrap();
    ws.maos(&["task", "import", file.to_str().unwrap()])
        .assert_ok();
    let workers: Vec<_> = (0..3)
        .map(|w| {
            ws.maos_cmd()
                .env("MAOS_AGENT_ID", format!("worker-{w}"))
                .args([
                    "agent",
                    "run",
                    "--until-idle",
                    "--report-every",
                    "1",
                    "--",
                    "true",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    // Meanwhile: priorities changed by hand (in place and by rename), the index deleted.
    for round in 0..30 {
        let id = format!("r{:02}", round % 10);
        let path = ws.maos_dir().join("tasks").join(format!("{id}.json"));
        if let Ok(bytes) = std::fs::read(&path)
            && let Ok(mut record) = serde_json::from_slice::<Value>(&bytes)
        {
            record["priority"] = ["low", "high"][round % 2].into();
            let text = serde_json::to_string(&record).unwrap();
            if round % 2 == 0 {
                let _ = std::fs::write(&path, text);
            } else {
                let tmp = path.with_extension("json.swp");
                let _ = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, &path));
            }
        }
        if round % 10 == 9 {
            let _ = std::fs::remove_dir_all(ws.maos_dir().join("tasks/.index"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for mut worker in workers {
        assert!(worker.wait().unwrap().success());
    }
    let listing = tasks(&ws).list().unwrap();
    assert!(listing.skipped.is_empty(), "{:?}", listing.skipped);
    for task in &listing.tasks {
        let (expected, attempts) = if task.id.starts_with('c') {
            ("completed", 1)
        } else {
            ("pending", 0)
        };
        assert_eq!(task.status.as_str(), expected, "{}", task.id);
        assert_eq!(
            task.attempts, attempts,
            "{} claimed {} times",
            task.id, task.attempts
        );
    }
    assert_queries_match_a_scan(&ws, "after the race");
    ws.maos(&["doctor"]).assert_ok();
}

/// `task_index_check: "folder"` in maos.json: records replaced by rename (an editor's save,
/// the documented hand edit) are still seen by the next command; one written in place is
/// seen once `maos doctor --fix` rebuilds the index.
#[test]
fn the_folder_check_sees_renames_and_doctor_catches_in_place_edits() {
    let ws = TestWorkspace::new();
    let config = ws.maos_dir().join("maos.json");
    let mut settings: Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    assert_eq!(
        settings["task_index_check"], "records",
        "the default is written"
    );
    settings["task_index_check"] = "folder".into();
    std::fs::write(&config, settings.to_string()).unwrap();
    for id in ["a", "b"] {
        add(&ws, id, &["--priority", "low"]);
    }
    ws.maos(&["task", "ready"]).assert_ok();
    hand_edit(&ws, "b", true, |r| r["priority"] = "high".into());
    let ready = ws.maos(&["--json", "task", "ready"]).assert_ok().json();
    assert_eq!(ids(&ready), ["b", "a"], "by rename: seen");
    hand_edit(&ws, "a", false, |r| r["priority"] = "critical".into());
    let ready = ws.maos(&["--json", "task", "ready"]).assert_ok().json();
    assert_eq!(ids(&ready), ["b", "a"], "in place: not seen in this mode");
    ws.maos(&["doctor"]).assert_code(1);
    ws.maos(&["doctor", "--fix"]).assert_ok();
    assert_queries_match_a_scan(&ws, "after doctor --fix");
}
