//! Tasks under concurrent processes: invariants T1–T4 and W2.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};

use maos_coordination::Workspace;
use maos_coordination::task::{NewTask, Status, Tasks};
use maos_tests::TestWorkspace;
use serde_json::Value;

fn tasks(ws: &TestWorkspace) -> Tasks {
    Tasks::new(&Workspace::open(ws.root()).unwrap())
}

fn add(ws: &TestWorkspace, args: &[&str]) -> String {
    let mut full = vec!["--json", "task", "add"];
    full.extend_from_slice(args);
    ws.maos(&full).assert_ok().json()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn status(ws: &TestWorkspace, id: &str) -> String {
    ws.maos(&["--json", "task", "show", id]).assert_ok().json()["status"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// T2: 8 processes claim from 200 ready tasks until none is left: every task is claimed once,
/// by the process that believes it has it.
#[test]
fn eight_processes_drain_two_hundred_tasks_each_claimed_once() {
    let ws = TestWorkspace::new();
    let store = tasks(&ws);
    for i in 0..200 {
        store
            .create("planner", NewTask::new(format!("task {i}")), None)
            .unwrap();
    }
    let go = ws.root().join("go");
    let children: Vec<Child> = (0..8)
        .map(|k| {
            ws.helper_cmd()
                .env("MAOS_HELPER_GO", &go)
                .args(["claim-loop", &format!("agent-{k}")])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    std::fs::write(&go, "").unwrap();
    let mut believed: BTreeMap<String, String> = BTreeMap::new();
    for (k, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        for id in String::from_utf8(out.stdout).unwrap().lines() {
            let previous = believed.insert(id.to_owned(), format!("agent-{k}"));
            assert!(
                previous.is_none(),
                "{id} claimed by {previous:?} and agent-{k}"
            );
        }
    }
    assert_eq!(believed.len(), 200);
    for task in store.list().unwrap().tasks {
        assert_eq!(task.status, Status::InProgress);
        assert_eq!(task.assignee.as_ref(), believed.get(&task.id));
        assert_eq!(task.attempts, 1);
    }
    ws.maos(&["task", "claim"]).assert_code(4);
}

/// T2: 8 processes race to claim one named task at the same instant, 100 times: exactly one
/// wins each time, and the losers are told who won.
#[test]
fn eight_processes_race_for_one_task_a_hundred_times() {
    let ws = TestWorkspace::new();
    let store = tasks(&ws);
    let rounds = 100;
    let dir = ws.root().join("rounds");
    std::fs::create_dir(&dir).unwrap();
    for k in 0..rounds {
        let task = store
            .create("planner", NewTask::new(format!("prize {k}")), None)
            .unwrap();
        std::fs::write(dir.join(format!("task-{k}")), &task.id).unwrap();
    }
    let mut children: Vec<Child> = (0..8)
        .map(|k| {
            ws.helper_cmd()
                .args([
                    "claim-rounds",
                    &rounds.to_string(),
                    dir.to_str().unwrap(),
                    &format!("racer-{k}"),
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
    for round in 0..rounds {
        std::fs::write(dir.join(format!("go-{round}")), "").unwrap();
        let mut winners = Vec::new();
        let mut named = BTreeSet::new();
        for (k, lines) in outputs.iter_mut().enumerate() {
            let line = lines.next().unwrap().unwrap();
            let parts: Vec<&str> = line.split(' ').collect();
            assert_eq!(parts[0], round.to_string());
            match parts[1] {
                "won" => winners.push(format!("racer-{k}")),
                _ => {
                    named.insert(parts[2].to_owned());
                }
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        assert!(
            named.iter().all(|n| *n == winners[0]),
            "round {round}: losers named {named:?}"
        );
        let id = std::fs::read_to_string(dir.join(format!("task-{round}"))).unwrap();
        assert_eq!(
            store.get(&id).unwrap().assignee.as_deref(),
            Some(winners[0].as_str())
        );
    }
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
}

/// W2 + T4: 4 processes update one task 25 times each, at once: no field change or history
/// entry is lost.
#[test]
fn concurrent_updates_of_one_task_lose_nothing() {
    let ws = TestWorkspace::new();
    let id = add(&ws, &["shared"]);
    let children: Vec<Child> = (0..4)
        .map(|k| {
            ws.helper_cmd()
                .args(["tag-loop", &id, "25", &format!("editor-{k}")])
                .spawn()
                .unwrap()
        })
        .collect();
    // Meanwhile the CLI changes other fields of the same task.
    for i in 0..10 {
        ws.maos(&["task", "update", &id, "--description", &format!("rev {i}")])
            .assert_ok();
    }
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    let task = ws.maos(&["--json", "task", "show", &id]).assert_ok().json();
    let tags: BTreeSet<&str> = task["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    let expected: BTreeSet<String> = (0..4)
        .flat_map(|k| (0..25).map(move |i| format!("editor-{k}-{i}")))
        .collect();
    assert_eq!(tags, expected.iter().map(String::as_str).collect());
    assert_eq!(task["description"], "rev 9");
    let history = task["history"].as_array().unwrap();
    assert_eq!(history.len(), 1 + 100 + 10);
    assert_eq!(task["version"], 1 + 100 + 10);
    for k in 0..4 {
        let by = format!("editor-{k}");
        assert_eq!(
            history.iter().filter(|c| c["by"] == by.as_str()).count(),
            25
        );
    }
}

/// T1 + T3 through the CLI: a chain and a diamond unblock exactly the right tasks; a cycle is
/// refused with its path; illegal transitions name the allowed ones.
#[test]
fn chains_and_diamonds_unblock_the_right_dependents() {
    let ws = TestWorkspace::new();
    let top = add(&ws, &["top", "--priority", "high"]);
    let left = add(&ws, &["left", "--depends-on", &top]);
    let right = add(&ws, &["right", "--depends-on", &top]);
    let bottom = add(
        &ws,
        &["bottom", "--depends-on", &left, "--depends-on", &right],
    );
    let after = add(&ws, &["after", "--depends-on", &bottom]);
    let ready = ws.maos(&["--json", "task", "ready"]).assert_ok().json();
    assert_eq!(ready.as_array().unwrap().len(), 1);
    assert_eq!(ready[0]["id"], top.as_str());

    let run = ws
        .maos(&["task", "update", &top, "--add-dep", &after])
        .assert_code(2);
    assert!(
        run.stderr()
            .contains(&format!("{top} → {after} → {bottom} → ")),
        "{}",
        run.stderr()
    );
    let run = ws.maos(&["task", "done", &top]).assert_code(5);
    assert!(
        run.stderr()
            .contains("may go to in_progress, blocked, cancelled"),
        "{}",
        run.stderr()
    );
    ws.maos(&["task", "add", "x", "--depends-on", "t-nope"])
        .assert_code(4);

    let finish = |id: &str| -> Value {
        ws.maos(&["--agent", "worker", "task", "claim", id])
            .assert_ok();
        ws.maos(&["--json", "--agent", "worker", "task", "done", id])
            .assert_ok()
            .json()
    };
    let done = finish(&top);
    let mut unblocked: Vec<&str> = done["unblocked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    unblocked.sort();
    let mut expected = vec![left.as_str(), right.as_str()];
    expected.sort();
    assert_eq!(unblocked, expected);
    assert_eq!(finish(&left)["unblocked"].as_array().unwrap().len(), 0);
    assert_eq!(status(&ws, &bottom), "blocked");
    assert_eq!(finish(&right)["unblocked"][0], bottom.as_str());
    assert_eq!(status(&ws, &bottom), "pending");
    assert_eq!(status(&ws, &after), "blocked");
    // A failed dependency keeps its dependent blocked, and progress says why.
    ws.maos(&["--agent", "worker", "task", "claim", &bottom])
        .assert_ok();
    ws.maos(&[
        "--agent", "worker", "task", "fail", &bottom, "--note", "broke",
    ])
    .assert_ok();
    let progress = ws.maos(&["--json", "progress"]).assert_ok().json();
    assert_eq!(progress["blocked"][0]["id"], after.as_str());
    assert_eq!(progress["blocked"][0]["waiting_for"][0]["status"], "failed");
    assert_eq!(progress["by_status"]["completed"], 3);
    assert_eq!(progress["completion_percentage"], 60.0);
    assert!(ws.maos_dir().join("reports/progress.json").is_file());
    ws.maos(&[
        "--agent",
        "worker",
        "lock",
        "acquire",
        "src/db.rs",
        "--purpose",
        "fix",
    ])
    .assert_ok();
    let status = ws.maos(&["--json", "status"]).assert_ok().json();
    assert_eq!(status["tasks"]["total"], 5);
    assert_eq!(status["tasks"]["by_status"]["completed"], 3);
    assert_eq!(status["locks"][0]["owner"], "worker");
    assert_eq!(status["locks"][0]["state"], "live");
    // Notices went to the tasks channel.
    let notices = ws
        .maos(&["--json", "msg", "recv", "tasks"])
        .assert_ok()
        .json();
    assert_eq!(notices.as_array().unwrap().len(), 3);
}

/// Hand-broken task files are named; list, ready and progress still work for the rest.
#[test]
fn broken_task_files_are_named_and_the_rest_keep_working() {
    let ws = TestWorkspace::new();
    let good = add(&ws, &["good"]);
    let dir = ws.maos_dir().join("tasks");
    let record = std::fs::read_to_string(dir.join(format!("{good}.json"))).unwrap();
    std::fs::write(dir.join("t-bad1.json"), "{\n  \"id\": \"t-bad1\",\n").unwrap();
    std::fs::write(
        dir.join("t-bad2.json"),
        record
            .replace(&good, "t-bad2")
            .replace("\"pending\"", "\"finished\""),
    )
    .unwrap();
    std::fs::write(
        dir.join("t-bad3.json"),
        record
            .replace(&good, "t-bad3")
            .replace("\"title\"", "\"name\""),
    )
    .unwrap();
    for cmd in [&["task", "list"][..], &["task", "ready"], &["progress"]] {
        let mut args = vec!["--json"];
        args.extend_from_slice(cmd);
        let run = ws.maos(&args).assert_ok();
        let err = run.stderr();
        assert!(
            err.contains("t-bad1.json") && err.contains("line 3"),
            "{err}"
        );
        assert!(
            err.contains("t-bad2.json") && err.contains("finished"),
            "{err}"
        );
        assert!(
            err.contains("t-bad3.json") && err.contains("missing field `title`"),
            "{err}"
        );
    }
    let listed = ws.maos(&["--json", "task", "list"]).assert_ok().json();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let run = ws.maos(&["task", "show", "t-bad2"]).assert_code(1);
    assert!(run.stderr().contains("t-bad2.json"), "{}", run.stderr());
    ws.maos(&["task", "show", "../etc"]).assert_code(2);
    ws.maos(&["doctor"]).assert_code(1);
    ws.maos(&["doctor", "--fix"]).assert_ok();
    assert!(
        ws.maos_dir()
            .join("quarantine/tasks/t-bad2.json.why")
            .is_file()
    );
    let run = ws.maos(&["task", "list"]).assert_ok();
    assert!(run.stderr().is_empty(), "{}", run.stderr());
    ws.maos(&["task", "add", ""]).assert_code(2);
    ws.maos(&["task", "add", &"x".repeat(501)]).assert_code(2);
    ws.maos(&["task", "add", "y", "--file", "/etc/passwd"])
        .assert_code(2);
}

/// `task import`: a plan as JSON Lines goes in all at once — dependencies within the file
/// and on existing tasks, blocked where a dependency is unfinished, finished work kept — and
/// `task export` prints what imports back, the same tasks in another workspace.
#[test]
fn import_takes_a_whole_plan_and_export_imports_back() {
    let ws = TestWorkspace::new();
    let base = add(&ws, &["Existing groundwork", "--id", "ground"]);
    let plan = format!(
        "# the plan\n\
         {{\"id\": \"schema\", \"title\": \"Design the schema\", \"priority\": \"high\", \"tags\": [\"db\"], \"status\": \"completed\"}}\n\
         {{\"id\": \"queries\", \"title\": \"Write queries\", \"dependencies\": [\"schema\", \"{base}\"], \"files\": [\"src/db.rs:10-40\"]}}\n\
         \n\
         {{\"title\": \"Docs\", \"dependencies\": [\"queries\"], \"role\": \"writer\"}}\n\
         {{\"id\": \"cleanup\", \"title\": \"Clean up\", \"dependencies\": [\"schema\"]}}\n"
    );
    let file = ws.root().join("plan.jsonl");
    std::fs::write(&file, plan).unwrap();
    let out = ws
        .maos(&["--json", "task", "import", file.to_str().unwrap()])
        .assert_ok()
        .json();
    assert_eq!(out["imported"], 4);
    assert_eq!(status(&ws, "schema"), "completed");
    assert_eq!(status(&ws, "queries"), "blocked", "waits for `ground`");
    assert_eq!(
        status(&ws, "cleanup"),
        "pending",
        "its one dependency is completed"
    );
    let docs = out["ids"][2].as_str().unwrap().to_owned();
    assert_eq!(status(&ws, &docs), "blocked");
    // Completing the existing dependency unblocks the imported task as usual.
    ws.maos(&["task", "claim", "ground"]).assert_ok();
    ws.maos(&["task", "done", "ground"]).assert_ok();
    assert_eq!(status(&ws, "queries"), "pending");

    let exported = ws.maos(&["task", "export"]).assert_ok().stdout();
    assert_eq!(exported.lines().count(), 5);
    let other = TestWorkspace::new();
    let copy = other.root().join("all.jsonl");
    std::fs::write(&copy, &exported).unwrap();
    other
        .maos(&["task", "import", copy.to_str().unwrap()])
        .assert_ok();
    let statuses = |w: &TestWorkspace| -> BTreeMap<String, (String, String)> {
        w.maos(&["--json", "task", "list"])
            .assert_ok()
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["id"].as_str().unwrap().to_owned(),
                    (
                        t["title"].as_str().unwrap().to_owned(),
                        t["priority"].as_str().unwrap().to_owned(),
                    ),
                )
            })
            .collect()
    };
    assert_eq!(statuses(&ws), statuses(&other));
    assert_eq!(status(&other, "ground"), "completed");
    assert_eq!(
        status(&other, "queries"),
        "pending",
        "its dependencies came completed"
    );
    // `--status` filters the export like `task list`.
    let pending = ws
        .maos(&["task", "export", "--status", "pending"])
        .assert_ok()
        .stdout();
    assert_eq!(pending.lines().count(), 2, "{pending}");
}

/// A file with a cycle, a dangling dependency, a duplicate or existing id, an unknown field
/// or a line that is not JSON is refused as a whole, naming the line: nothing changes.
#[test]
fn import_refuses_a_bad_plan_as_a_whole() {
    let ws = TestWorkspace::new();
    add(&ws, &["Existing", "--id", "old"]);
    let before = ws.snapshot();
    let good = "{\"id\": \"a\", \"title\": \"A\"}\n{\"id\": \"b\", \"title\": \"B\", \"dependencies\": [\"a\"]}\n";
    for (bad, says) in [
        (
            "{\"id\": \"c\", \"title\": \"C\", \"dependencies\": [\"d\"]}\n{\"id\": \"d\", \"title\": \"D\", \"dependencies\": [\"c\"]}\n",
            "dependency cycle",
        ),
        (
            "{\"id\": \"c\", \"title\": \"C\", \"dependencies\": [\"nowhere\"]}\n",
            "line 3: dependency `nowhere` does not exist",
        ),
        (
            "{\"id\": \"a\", \"title\": \"again\"}\n",
            "line 3: the id `a` is used on line 1 too",
        ),
        (
            "{\"id\": \"old\", \"title\": \"again\"}\n",
            "line 3: a task `old` exists already",
        ),
        (
            "{\"id\": \"c\", \"titel\": \"typo\"}\n",
            "line 3: unknown field `titel`",
        ),
        ("not json\n", "line 3:"),
        (
            "{\"id\": \"c\", \"title\": \"\"}\n",
            "line 3: the title must be",
        ),
    ] {
        let file = ws.root().join("bad.jsonl");
        std::fs::write(&file, format!("{good}{bad}")).unwrap();
        let run = ws
            .maos(&["task", "import", file.to_str().unwrap()])
            .assert_code(2);
        assert!(run.stderr().contains(says), "{says}: {}", run.stderr());
        assert!(
            run.stderr().contains("nothing was imported"),
            "{}",
            run.stderr()
        );
        std::fs::remove_file(&file).unwrap();
        assert_eq!(ws.snapshot(), before, "{says}: something changed");
    }
}

/// A plan larger than the files a process may have open goes in: records are staged and
/// published in batches (run under `ulimit -n 64`).
#[test]
fn a_large_import_stays_within_the_open_file_limit() {
    let ws = TestWorkspace::new();
    let plan: String = (0..1_500)
        .map(|i| {
            let dep = if i % 2 == 1 {
                format!(", \"dependencies\": [\"p{}\"]", i - 1)
            } else {
                String::new()
            };
            format!("{{\"id\": \"p{i}\", \"title\": \"step {i}\"{dep}}}\n")
        })
        .collect();
    let file = ws.root().join("plan.jsonl");
    std::fs::write(&file, plan).unwrap();
    let status = std::process::Command::new("sh")
        .args(["-c", "ulimit -n 64 && exec \"$0\" task import \"$1\""])
        .arg(maos_tests::maos_bin())
        .arg(&file)
        .env("MAOS_WORKSPACE", ws.root())
        .env("MAOS_AGENT_ID", "planner")
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let listing = tasks(&ws).list().unwrap();
    assert_eq!(listing.tasks.len(), 1_500);
    let ready = ws.maos(&["--json", "task", "ready"]).assert_ok().json();
    assert_eq!(ready.as_array().unwrap().len(), 750);
}
