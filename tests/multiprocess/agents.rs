//! The agent toolkit under real processes: `maos agent run` workers, kills, SIGTERM,
//! attempt limits, worktrees (invariant T5).

use std::collections::{BTreeMap, HashMap};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use maos_coordination::Workspace;
use maos_coordination::task::{NewTask, Status, Tasks};
use maos_tests::{TestWorkspace, git, path_with_maos, wait_for};
use serde_json::Value;

fn tasks(ws: &TestWorkspace) -> Tasks {
    Tasks::new(&Workspace::open(ws.root()).unwrap())
}

fn worker(ws: &TestWorkspace, agent: &str, mode: &[&str], script: &str) -> Child {
    // The task scripts call `maos` too.
    let path = path_with_maos();
    ws.maos_cmd()
        .env("PATH", path)
        .args(["--agent", agent, "agent", "run", "--heartbeat", "0.2"])
        .args(mode)
        .args(["--", "sh", "-c", script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish(child: Child) -> std::process::Output {
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// 3 workers (`maos agent run --until-idle`) drain 50 tasks with dependencies: every task
/// runs exactly once, never before its dependencies completed.
#[test]
fn three_workers_drain_fifty_dependent_tasks() {
    let ws = TestWorkspace::new();
    let store = tasks(&ws);
    let mut ids: Vec<String> = Vec::new();
    for i in 0..50 {
        let mut new = NewTask::new(format!("task {i}"));
        // Ten chains of five, and every tenth task also waits for the one ten before.
        if i % 5 != 0 {
            new.dependencies.push(ids[i - 1].clone());
        }
        if i >= 10 && i % 10 == 0 {
            new.dependencies.push(ids[i - 10].clone());
        }
        ids.push(store.create("planner", new, None).unwrap().id);
    }
    let script = "echo \"$MAOS_TASK_ID start\" >> ran.log; sleep 0.02; echo \"$MAOS_TASK_ID end\" >> ran.log";
    let workers: Vec<Child> = (0..3)
        .map(|k| worker(&ws, &format!("worker-{k}"), &["--until-idle"], script))
        .collect();
    for child in workers {
        finish(child);
    }
    let log = std::fs::read_to_string(ws.root().join("ran.log")).unwrap();
    let mut position: HashMap<(String, String), usize> = HashMap::new();
    for (n, line) in log.lines().enumerate() {
        let (id, what) = line.split_once(' ').unwrap();
        let previous = position.insert((id.to_owned(), what.to_owned()), n);
        assert!(previous.is_none(), "{id} ran twice ({what})");
    }
    assert_eq!(position.len(), 100, "every task started and ended once");
    for task in store.list().unwrap().tasks {
        assert_eq!(task.status, Status::Completed, "{}", task.id);
        assert_eq!(task.attempts, 1);
        let start = position[&(task.id.clone(), "start".to_owned())];
        for dep in &task.dependencies {
            let dep_end = position[&(dep.clone(), "end".to_owned())];
            assert!(
                dep_end < start,
                "{} started before its dependency {dep} ended",
                task.id
            );
        }
    }
    let agents = ws.maos(&["--json", "agent", "list"]).assert_ok().json();
    let done: u64 = agents
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["completed"].as_u64().unwrap())
        .sum();
    assert_eq!(done, 50);
    assert!(
        agents
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["state"] == "gone")
    );
}

/// T5: a worker killed with SIGKILL mid-task: its task goes back to the queue and another
/// worker completes it (attempts = 2); the dead agent's locks are released.
#[test]
fn a_killed_workers_task_is_finished_by_another_and_its_lease_kept_until_broken() {
    let ws = TestWorkspace::new();
    let id = tasks(&ws)
        .create("planner", NewTask::new("fragile"), None)
        .unwrap()
        .id;
    // The first attempt takes a lock through the CLI (as the agent), then hangs; later
    // attempts finish at once.
    let script = "if [ ! -e first ]; then touch first; maos lock acquire src/db.rs --ttl 3600; touch locked; sleep 30; fi";
    let mut doomed = worker(&ws, "doomed", &["--once"], script);
    wait_for("the lock", || ws.root().join("locked").exists());
    let held = ws
        .maos(&["--json", "lock", "show", "src/db.rs"])
        .assert_ok()
        .json();
    assert_eq!(held["owner"], "doomed");
    doomed.kill().unwrap();
    doomed.wait().unwrap();

    let rescuer = worker(&ws, "rescuer", &["--once"], "true");
    finish(rescuer);
    let task = ws.maos(&["--json", "task", "show", &id]).assert_ok().json();
    assert_eq!(task["status"], "completed");
    assert_eq!(task["attempts"], 2);
    assert_eq!(task["assignee"], "rescuer");
    let notes: Vec<&str> = task["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["note"].as_str())
        .collect();
    assert!(
        notes.iter().any(|n| n.contains("agent `doomed` died")),
        "{notes:?}"
    );
    // The lock was taken through the CLI: it belongs to the agent, not to the killed
    // process, and a lease is a promise until it expires (or an operator breaks it).
    let kept = ws
        .maos(&["--json", "lock", "show", "src/db.rs"])
        .assert_ok()
        .json();
    assert_eq!(kept["owner"], "doomed");
    assert_eq!(kept["state"], "live");
    let broken = ws
        .maos_as(
            "operator",
            &[
                "--json",
                "lock",
                "break",
                "src/db.rs",
                "--reason",
                "doomed was killed",
            ],
        )
        .assert_ok()
        .json();
    assert_eq!(broken["token"], held["token"]);
    ws.maos(&["lock", "show", "src/db.rs"]).assert_code(4);
    let announced = ws
        .maos(&["--json", "msg", "recv", "broadcast/locks"])
        .assert_ok()
        .json();
    assert_eq!(announced[0]["payload"]["event"], "broken");
    assert_eq!(announced[0]["payload"]["holder"], "doomed");
    assert_eq!(announced[0]["payload"]["by"], "operator");
    assert_eq!(announced[0]["payload"]["reason"], "doomed was killed");
    let agents = ws.maos(&["--json", "agent", "list"]).assert_ok().json();
    let doomed = agents
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == "doomed")
        .unwrap();
    assert_eq!(doomed["state"], "gone");
    let notice = ws
        .maos(&["--json", "msg", "recv", "broadcast/agents"])
        .assert_ok()
        .json();
    assert_eq!(notice[0]["payload"]["agent"], "doomed");
    assert_eq!(notice[0]["payload"]["locks"], serde_json::json!([]));
}

/// SIGTERM to `maos agent run`: the running command is stopped, its task returned to the
/// queue (the stated rule), the agent leaves, nothing is held.
#[test]
fn sigterm_returns_the_running_task_and_leaves_cleanly() {
    let ws = TestWorkspace::new();
    let id = tasks(&ws)
        .create("planner", NewTask::new("long"), None)
        .unwrap()
        .id;
    let script = "maos lock acquire shared --ttl 3600; touch started; sleep 30";
    let child = worker(&ws, "polite", &[], script);
    wait_for("the task to start", || ws.root().join("started").exists());
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    finish(child);
    let task = ws.maos(&["--json", "task", "show", &id]).assert_ok().json();
    assert_eq!(task["status"], "pending");
    assert_eq!(task["assignee"], Value::Null);
    let last = task["history"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|c| c["field"] == "status")
        .unwrap();
    assert!(
        last["note"].as_str().unwrap().contains("stopping"),
        "{last}"
    );
    assert_eq!(
        ws.maos(&["--json", "lock", "list"]).assert_ok().json(),
        serde_json::json!([])
    );
    let agents = ws.maos(&["--json", "agent", "list"]).assert_ok().json();
    assert_eq!(agents[0]["state"], "gone");
    assert_eq!(agents[0]["current_task"], Value::Null);
}

/// `--until-idle` never waits silently: it says which tasks others hold (holder, its state,
/// since when), takes over a task claimed by hand for an agent that left or whose process
/// died, and finishes once a task held by hand by someone unregistered is done.
#[test]
fn until_idle_says_what_it_waits_for_and_takes_back_tasks_of_gone_agents() {
    let ws = TestWorkspace::new();
    // `ghost` ran once and left: its record says gone. Then it claimed a task by hand.
    ws.maos(&["--agent", "ghost", "agent", "run", "--once", "--", "true"])
        .assert_code(4);
    let orphan = tasks(&ws)
        .create("planner", NewTask::new("orphaned"), None)
        .unwrap()
        .id;
    ws.maos_as("ghost", &["task", "claim", &orphan]).assert_ok();
    // `hand` has no record at all: a person claiming by hand, who may still be at it.
    let by_hand = tasks(&ws)
        .create("planner", NewTask::new("by hand"), None)
        .unwrap()
        .id;
    ws.maos_as("hand", &["task", "claim", &by_hand]).assert_ok();
    // `zombie` joined with a worker that was killed: its record says active, its process is
    // gone. Then a task was claimed by hand in its name.
    let mut zombie = worker(&ws, "zombie", &[], "true");
    wait_for("zombie to join", || {
        ws.maos_dir().join("agents/zombie.json").exists()
    });
    zombie.kill().unwrap();
    zombie.wait().unwrap();
    let dead_hand = tasks(&ws)
        .create("planner", NewTask::new("dead hand"), None)
        .unwrap()
        .id;
    ws.maos_as("zombie", &["task", "claim", &dead_hand])
        .assert_ok();
    let child = worker(&ws, "w", &["--until-idle", "--report-every", "0.3"], "true");
    wait_for("the orphaned task to be done", || {
        ws.maos(&["--json", "task", "show", &orphan]).json()["status"] == "completed"
    });
    std::thread::sleep(Duration::from_millis(800));
    ws.maos_as("hand", &["task", "done", &by_hand]).assert_ok();
    let out = finish(child);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("waiting for {by_hand} held by `hand` (unknown)")),
        "{stderr}"
    );
    let dead_hand = ws
        .maos(&["--json", "task", "show", &dead_hand])
        .assert_ok()
        .json();
    assert_eq!(dead_hand["status"], "completed", "{dead_hand}");
    assert_eq!(dead_hand["assignee"], "w");
    let orphan = ws
        .maos(&["--json", "task", "show", &orphan])
        .assert_ok()
        .json();
    assert_eq!(orphan["assignee"], "w");
    assert!(
        orphan.to_string().contains("agent `ghost` is gone"),
        "{orphan}"
    );
}

/// Retiring never orphans work: refused while the agent holds a task or a lock (naming them),
/// `--release` gives them back first; a task left in progress for an agent that is gone is a
/// problem `doctor` reports and `--fix` returns to the queue.
#[test]
fn retire_refuses_while_holding_and_doctor_returns_orphaned_tasks() {
    let ws = TestWorkspace::new();
    ws.init_git(&[("README.md", "hello\n")]);
    let place = tempfile::tempdir().unwrap();
    let path = place.path().join("coder-1");
    ws.maos(&[
        "agent",
        "spawn",
        "coder-1",
        "--path",
        path.to_str().unwrap(),
    ])
    .assert_ok();
    let id = tasks(&ws)
        .create("planner", NewTask::new("half done"), None)
        .unwrap()
        .id;
    ws.maos_as("coder-1", &["task", "claim", &id]).assert_ok();
    ws.maos_as("coder-1", &["lock", "acquire", "src/db.rs"])
        .assert_ok();
    let refused = ws.maos(&["agent", "retire", "coder-1"]).assert_code(5);
    assert!(
        refused
            .stderr()
            .contains(&format!("task {id} (in_progress)"))
            && refused.stderr().contains("lock `src/db.rs`")
            && refused.stderr().contains("--release"),
        "{}",
        refused.stderr()
    );
    assert!(path.exists());
    ws.maos(&["agent", "retire", "coder-1", "--release"])
        .assert_ok();
    let task = ws.maos(&["--json", "task", "show", &id]).assert_ok().json();
    assert_eq!(task["status"], "pending");
    ws.maos(&["lock", "show", "src/db.rs"]).assert_code(4);

    // coder-1 is gone now; a claim made by hand in its name afterwards is orphaned work.
    ws.maos_as("coder-1", &["task", "claim", &id]).assert_ok();
    let report = ws.maos(&["--json", "doctor"]).assert_code(1).json();
    let problem = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["remedy"] == "return_task")
        .unwrap_or_else(|| panic!("{report}"))
        .clone();
    assert!(
        problem["problem"]
            .as_str()
            .unwrap()
            .contains("which is gone"),
        "{problem}"
    );
    ws.maos(&["doctor", "--fix"]).assert_ok();
    let task = ws.maos(&["--json", "task", "show", &id]).assert_ok().json();
    assert_eq!(task["status"], "pending");
    ws.maos(&["doctor"]).assert_ok();
    // A holder the registry does not know is reported too, and --fix returns its task.
    ws.maos_as("stranger", &["task", "claim", &id]).assert_ok();
    let report = ws.maos(&["--json", "doctor"]).assert_code(1).json();
    assert!(
        report
            .to_string()
            .contains("which is not a registered agent"),
        "{report}"
    );
    ws.maos(&["doctor", "--fix"]).assert_ok();
    let task = ws.maos(&["--json", "task", "show", &id]).assert_ok().json();
    assert_eq!(task["status"], "pending");
}

/// `task done` by the agent a pending task is assigned to (a resolution task, say) goes
/// through in_progress to completed, both steps in the history; anyone else is told the exact
/// command to run.
#[test]
fn done_by_the_assignee_of_a_pending_task_starts_and_completes_it() {
    let ws = TestWorkspace::new();
    let id = ws
        .maos(&[
            "--json",
            "task",
            "add",
            "resolve the conflict",
            "--assign",
            "bob",
        ])
        .assert_ok()
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let refused = ws.maos_as("carol", &["task", "done", &id]).assert_code(5);
    assert!(
        refused
            .stderr()
            .contains(&format!("claim it first: `maos task claim {id}`")),
        "{}",
        refused.stderr()
    );
    ws.maos_as("bob", &["task", "done", &id, "--note", "kept both ports"])
        .assert_ok();
    let task = ws.maos(&["--json", "task", "show", &id]).assert_ok().json();
    assert_eq!(task["status"], "completed");
    let steps: Vec<&str> = task["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["field"] == "status")
        .map(|c| c["to"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["in_progress", "completed"]);
}

/// Ctrl-C in the terminal: SIGINT to the worker's whole process group (the command dies of it
/// too) returns the task to the queue without counting the attempt.
#[test]
fn ctrl_c_to_the_process_group_returns_the_task_uncounted() {
    let ws = TestWorkspace::new();
    let id = tasks(&ws)
        .create("planner", NewTask::new("long"), None)
        .unwrap()
        .id;
    let path = path_with_maos();
    let child = ws
        .maos_cmd()
        .env("PATH", path)
        .args(["--agent", "typist", "agent", "run", "--heartbeat", "0.2"])
        .args(["--", "sh", "-c", "touch started; sleep 30"])
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the task to start", || ws.root().join("started").exists());
    maos_tests::signal(&format!("-{}", child.id()), "-INT");
    finish(child);
    let task = ws.maos(&["--json", "task", "show", &id]).assert_ok().json();
    assert_eq!(task["status"], "pending", "{task}");
    assert_eq!(
        task["attempts"], 0,
        "the interrupted attempt is not counted"
    );
    assert_eq!(task["assignee"], Value::Null);
}

/// A spawned agent's worker runs each task's command in the agent's worktree, on its branch —
/// a relative command resolves there and its commits land on `maos/<id>/work`, never on
/// `main` — even when the worker is started from the repository root.
#[test]
fn a_spawned_agents_worker_works_in_its_own_worktree() {
    let ws = TestWorkspace::new();
    let root = ws.root();
    git(root, &["init", "-q", "-b", "main"]);
    git(root, &["config", "user.name", "lead"]);
    git(root, &["config", "user.email", "lead@example.invalid"]);
    let script = "#!/bin/sh\necho \"$MAOS_TASK_ID on $(git rev-parse --abbrev-ref HEAD)\" >> work.txt\ngit add work.txt && git commit -qm \"$MAOS_TASK_ID\"\n";
    std::fs::write(root.join("agent-do-task.sh"), script).unwrap();
    std::fs::set_permissions(
        root.join("agent-do-task.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    git(root, &["add", "agent-do-task.sh"]);
    git(root, &["commit", "-q", "-m", "start"]);
    let main_before = git(root, &["rev-parse", "main"]);
    let place = tempfile::tempdir().unwrap();
    let worktree = place.path().join("coder-2");
    ws.maos(&[
        "agent",
        "spawn",
        "coder-2",
        "--path",
        worktree.to_str().unwrap(),
    ])
    .assert_ok();
    let id = tasks(&ws)
        .create("planner", NewTask::new("write it down"), None)
        .unwrap()
        .id;
    // Started from the repository root, as the README's commands are typed.
    finish(worker(
        &ws,
        "coder-2",
        &["--until-idle"],
        "./agent-do-task.sh",
    ));
    let task = ws.maos(&["--json", "task", "show", &id]).assert_ok().json();
    assert_eq!(task["status"], "completed", "{task}");
    assert_eq!(git(root, &["rev-parse", "main"]), main_before, "main moved");
    assert!(
        !root.join("work.txt").exists(),
        "the edit landed in the main worktree"
    );
    assert_eq!(
        std::fs::read_to_string(worktree.join("work.txt")).unwrap(),
        format!("{id} on maos/coder-2/work\n")
    );
    assert_eq!(
        git(root, &["log", "-1", "--format=%s", "maos/coder-2/work"]),
        id
    );
    let log = std::fs::read_to_string(task["metadata"]["output"].as_str().unwrap()).unwrap();
    assert!(
        log.contains(&format!(
            "in {} (branch maos/coder-2/work)",
            worktree.display()
        )),
        "{log}"
    );
}

/// The role and capabilities an agent was spawned with are its own: `task claim` as that
/// agent honours them, and a worker started without `--role` keeps them.
#[test]
fn a_spawned_role_is_honoured_by_claims_and_kept_by_workers() {
    let ws = TestWorkspace::new();
    let root = ws.root();
    git(root, &["init", "-q", "-b", "main"]);
    std::fs::write(root.join("README.md"), "hello\n").unwrap();
    git(root, &["add", "README.md"]);
    git(
        root,
        &[
            "-c",
            "user.name=lead",
            "-c",
            "user.email=l@e.invalid",
            "commit",
            "-q",
            "-m",
            "start",
        ],
    );
    let place = tempfile::tempdir().unwrap();
    for (agent, caps) in [("coder-2", "rust"), ("coder-3", "go")] {
        ws.maos(&[
            "agent",
            "spawn",
            agent,
            "--role",
            "coder",
            "--path",
            place.path().join(agent).to_str().unwrap(),
        ])
        .assert_ok();
        // Capabilities come from a join: a worker that registers them once.
        ws.maos(&[
            "--agent",
            agent,
            "agent",
            "run",
            "--once",
            "--capability",
            caps,
            "--",
            "true",
        ])
        .assert_code(4);
    }
    let coding = ws
        .maos(&[
            "--json",
            "task",
            "add",
            "port the server",
            "--role",
            "coder",
        ])
        .assert_ok()
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    ws.maos(&[
        "task",
        "add",
        "needs go",
        "--role",
        "coder",
        "--requires",
        "go",
    ])
    .assert_ok();
    let claimed = ws
        .maos_as("coder-2", &["--json", "task", "claim"])
        .assert_ok()
        .json();
    assert_eq!(
        claimed["id"],
        coding.as_str(),
        "the coder task, not the go one"
    );
    // coder-2 has no `go`: nothing else for it.
    ws.maos_as("coder-2", &["task", "claim"]).assert_code(4);
    // The registry follows CLI work too.
    let record = |id: &str| -> Value {
        ws.maos(&["--json", "agent", "list"])
            .assert_ok()
            .json()
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(record("coder-2")["current_task"], coding.as_str());
    ws.maos_as("coder-2", &["task", "done", &coding])
        .assert_ok();
    assert_eq!(record("coder-2")["current_task"], Value::Null);
    assert_eq!(record("coder-2")["completed"], 1);
    // A worker run without --role keeps the registered role and capabilities.
    ws.maos(&["--agent", "coder-3", "agent", "run", "--once", "--", "true"])
        .assert_ok();
    let agents: Vec<Value> = ws
        .maos(&["--json", "agent", "list"])
        .assert_ok()
        .json()
        .as_array()
        .unwrap()
        .clone();
    for a in &agents {
        assert_eq!(a["role"], "coder", "{a}");
    }
    let coder3 = agents.iter().find(|a| a["id"] == "coder-3").unwrap();
    assert_eq!(coder3["capabilities"], serde_json::json!(["go"]));
    assert_eq!(coder3["completed"], 1);
    // `status` counts agents by state: one registered (spawned, no process yet) is not
    // "active"; the two that ran and left are not counted.
    ws.maos(&[
        "agent",
        "spawn",
        "reviewer-1",
        "--path",
        place.path().join("reviewer-1").to_str().unwrap(),
    ])
    .assert_ok();
    let status = ws.maos(&["status"]).assert_ok().stdout();
    assert!(status.contains("agents     1 registered\n"), "{status}");
}

/// A task whose command fails every time ends failed after the attempt limit, with the
/// reasons in its history and on the worker's output (exit code and the log's last lines),
/// and the worker exits 1 saying so; `--once` with nothing ready exits 4; a command that cannot
/// start fails the worker before anything is claimed.
#[test]
fn a_task_that_always_crashes_fails_after_the_attempt_limit() {
    let ws = TestWorkspace::new();
    let id = tasks(&ws)
        .create("planner", NewTask::new("doomed to fail"), None)
        .unwrap()
        .id;
    let child = worker(
        &ws,
        "tryer",
        &["--until-idle", "--max-attempts", "3"],
        "echo boom >&2; exit 7",
    );
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.matches("failed: `sh` exited with code 7").count(),
        3,
        "{stderr}"
    );
    assert!(stderr.contains("last output: boom"), "{stderr}");
    assert!(stderr.contains("3 attempt(s) failed"), "{stderr}");
    assert!(stdout.contains("failed attempts 3"), "{stdout}");
    let task = ws.maos(&["--json", "task", "show", &id]).assert_ok().json();
    assert_eq!(task["status"], "failed");
    assert_eq!(task["attempts"], 3);
    let failures: Vec<&str> = task["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["to"] == "failed")
        .map(|c| c["note"].as_str().unwrap())
        .collect();
    assert_eq!(failures.len(), 3);
    assert!(
        failures.iter().all(|n| n.contains("exited with code 7")),
        "{failures:?}"
    );
    let output = task["metadata"]["output"].as_str().unwrap();
    let log = std::fs::read_to_string(output).unwrap();
    assert!(
        log.starts_with("# maos: task "),
        "the log says where it ran: {log}"
    );
    assert!(log.ends_with("boom\n"), "{log}");
    // A command that cannot start: refused at once, nothing claimed, no attempt burnt.
    let fresh = tasks(&ws)
        .create("planner", NewTask::new("fine"), None)
        .unwrap()
        .id;
    let refused = ws
        .maos(&[
            "--agent",
            "tryer",
            "agent",
            "run",
            "--once",
            "--",
            "./no-such-script.sh",
        ])
        .assert_code(2);
    assert!(
        refused.stderr().contains("not an executable file")
            && refused.stderr().contains("nothing was claimed"),
        "{}",
        refused.stderr()
    );
    let fresh = ws
        .maos(&["--json", "task", "show", &fresh])
        .assert_ok()
        .json();
    assert_eq!(fresh["status"], "pending");
    assert_eq!(fresh["attempts"], 0);
    ws.maos(&[
        "--agent",
        "tryer",
        "task",
        "cancel",
        fresh["id"].as_str().unwrap(),
    ])
    .assert_ok();
    ws.maos(&["--agent", "tryer", "agent", "run", "--once", "--", "true"])
        .assert_code(4);
    ws.maos(&[
        "--agent",
        "tryer",
        "agent",
        "run",
        "--once",
        "--task-timeout",
        "x",
        "--",
        "true",
    ])
    .assert_code(2);
}

/// `agent spawn` makes a worktree whose `maos` commands reach the main workspace; `retire`
/// refuses while the branch holds unmerged commits, and removes the worktree once merged.
#[test]
fn spawned_worktrees_share_the_workspace_and_retire_only_when_merged() {
    let ws = TestWorkspace::new();
    let root = ws.root();
    ws.init_git(&[("README.md", "hello\n")]);
    git(root, &["config", "user.name", "lead"]);
    git(root, &["config", "user.email", "lead@example.invalid"]);
    let place = tempfile::tempdir().unwrap();
    let path = place.path().join("coder-1");
    let spawned = ws
        .maos(&[
            "--json",
            "agent",
            "spawn",
            "coder-1",
            "--role",
            "coder",
            "--path",
            path.to_str().unwrap(),
        ])
        .assert_ok()
        .json();
    assert_eq!(spawned["branch"], "maos/coder-1/work");
    assert_eq!(
        git(&path, &["rev-parse", "--abbrev-ref", "HEAD"]),
        "maos/coder-1/work"
    );
    // From inside the worktree, with no --workspace, maos finds the main workspace.
    let from_inside = Command::new(maos_tests::maos_bin())
        .args([
            "--json",
            "--agent",
            "coder-1",
            "msg",
            "send",
            "general",
            "hello from the worktree",
        ])
        .current_dir(&path)
        .env_remove("MAOS_WORKSPACE")
        .output()
        .unwrap();
    assert!(
        from_inside.status.success(),
        "{}",
        String::from_utf8_lossy(&from_inside.stderr)
    );
    let seen = ws
        .maos(&["--json", "msg", "recv", "general"])
        .assert_ok()
        .json();
    assert_eq!(seen[0]["payload"], "hello from the worktree");
    let agents = ws.maos(&["--json", "agent", "list"]).assert_ok().json();
    assert_eq!(agents[0]["state"], "registered");
    assert_eq!(agents[0]["role"], "coder");

    std::fs::write(path.join("work.txt"), "done\n").unwrap();
    git(&path, &["add", "work.txt"]);
    git(&path, &["commit", "-q", "-m", "work"]);
    let run = ws.maos(&["agent", "retire", "coder-1"]).assert_code(5);
    assert!(
        run.stderr().contains("1 commit(s) not merged into `main`"),
        "{}",
        run.stderr()
    );
    assert!(path.join("work.txt").exists());

    ws.maos(&["merge", "run", "maos/coder-1/work", "main"])
        .assert_ok();
    // Never pull a worktree from under a running agent, nor lose uncommitted files.
    let mut running = ws
        .maos_cmd()
        .args(["--agent", "coder-1", "agent", "run", "--heartbeat", "0.2"])
        .args(["--", "true"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("coder-1 to run", || {
        ws.maos(&["--json", "agent", "list"]).json()[0]["state"] == "alive"
    });
    let run = ws.maos(&["agent", "retire", "coder-1"]).assert_code(5);
    assert!(
        run.stderr().contains("`coder-1` is alive"),
        "{}",
        run.stderr()
    );
    assert!(path.exists());
    maos_tests::signal(&running.id().to_string(), "-TERM");
    running.wait().unwrap();
    std::fs::write(path.join("scratch.txt"), "unsaved\n").unwrap();
    let run = ws.maos(&["agent", "retire", "coder-1"]).assert_code(5);
    assert!(
        run.stderr().contains("uncommitted changes (scratch.txt)"),
        "{}",
        run.stderr()
    );
    std::fs::remove_file(path.join("scratch.txt")).unwrap();
    ws.maos(&["agent", "retire", "coder-1"]).assert_ok();
    assert!(!path.exists());
    assert_eq!(git(root, &["branch", "--list", "maos/coder-1/work"]), "");
    assert!(root.join("work.txt").exists(), "the work is on main");
    let agents: BTreeMap<String, Value> = ws
        .maos(&["--json", "agent", "list"])
        .assert_ok()
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["id"].as_str().unwrap().to_owned(), a.clone()))
        .collect();
    assert_eq!(agents["coder-1"]["state"], "gone");
}

/// Claims honour capabilities; `--assign auto` picks the capable agent with the least work.
#[test]
fn claims_honour_capabilities_and_auto_assignment_balances_work() {
    let ws = TestWorkspace::new();
    let sql = ws
        .maos(&["--json", "task", "add", "migrate", "--requires", "sql"])
        .assert_ok()
        .json();
    ws.maos(&["--agent", "plain", "task", "claim"])
        .assert_code(4);
    let claimed = ws
        .maos(&[
            "--json",
            "--agent",
            "dba",
            "task",
            "claim",
            "--capability",
            "sql",
        ])
        .assert_ok()
        .json();
    assert_eq!(claimed["id"], sql["id"]);

    // `busy` takes a task and keeps working on it; then `idle` joins with nothing to do.
    let busy = worker(&ws, "busy", &["--capability", "rust"], "sleep 30");
    ws.maos(&["task", "add", "first"]).assert_ok();
    wait_for("busy to start", || {
        let agents = ws.maos(&["--json", "agent", "list"]).assert_ok().json();
        agents
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["id"] == "busy" && !a["current_task"].is_null())
    });
    let idle = worker(&ws, "idle", &["--capability", "rust"], "true");
    wait_for("idle to join", || {
        let agents = ws.maos(&["--json", "agent", "list"]).assert_ok().json();
        agents
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["id"] == "idle" && a["state"] == "alive")
    });
    let auto = ws
        .maos(&[
            "--json",
            "task",
            "add",
            "second",
            "--requires",
            "rust",
            "--assign",
            "auto",
        ])
        .assert_ok()
        .json();
    assert_eq!(
        auto["assignee"], "idle",
        "the agent with less work in progress"
    );
    Command::new("kill")
        .args(["-TERM", &busy.id().to_string()])
        .status()
        .unwrap();
    finish(busy);
    Command::new("kill")
        .args(["-TERM", &idle.id().to_string()])
        .status()
        .unwrap();
    finish(idle);
}

/// `maos doctor` reports a dead agent, and `--fix` recovers it: task back in the queue,
/// locks released.
#[test]
fn doctor_recovers_a_dead_agent() {
    let ws = TestWorkspace::new();
    let id = tasks(&ws)
        .create("planner", NewTask::new("orphaned"), None)
        .unwrap()
        .id;
    let mut doomed = worker(
        &ws,
        "doomed",
        &["--once"],
        "maos lock acquire cache; touch started; sleep 30",
    );
    wait_for("the task to start", || ws.root().join("started").exists());
    doomed.kill().unwrap();
    doomed.wait().unwrap();
    let report = ws.maos(&["--json", "doctor"]).assert_code(1).json();
    let problem = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["remedy"] == "recover")
        .unwrap()
        .clone();
    assert!(
        problem["problem"]
            .as_str()
            .unwrap()
            .contains("agent `doomed` is dead"),
        "{problem}"
    );
    let fixed = ws.maos(&["--json", "doctor", "--fix"]).assert_ok().json();
    assert!(fixed.to_string().contains("1 task(s) returned"), "{fixed}");
    assert_eq!(
        ws.maos(&["--json", "task", "show", &id]).assert_ok().json()["status"],
        "pending"
    );
    // A lock taken through the CLI is the agent's lease, not the process's: it stays until it
    // expires or is broken, and doctor does not call a live lease a problem.
    assert_eq!(
        ws.maos(&["--json", "lock", "show", "cache"])
            .assert_ok()
            .json()["owner"],
        "doomed"
    );
    ws.maos(&["doctor"]).assert_ok();
}

/// L1 and L6 under recovery: an agent that went stale (no heartbeat) while its process still
/// runs loses its tasks, but none of its unexpired locks — neither the one bound to its live
/// process nor the agent-level lease taken through the CLI. Nobody else gets in before expiry.
#[test]
fn recovering_a_stale_agent_never_lets_a_second_holder_in() {
    let ws = TestWorkspace::new();
    let mut holder = ws
        .helper_cmd()
        .args(["hold", "src/db.rs", "slow"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert!(line.starts_with("held"), "{line}");
    ws.maos(&[
        "--agent", "slow", "lock", "acquire", "notes.md", "--ttl", "3600",
    ])
    .assert_ok();
    // The agent's record says its process is the holder's, and its last heartbeat was an hour
    // ago: stale, not dead.
    let lock = ws
        .maos(&["--json", "lock", "show", "src/db.rs"])
        .assert_ok()
        .json();
    let record = serde_json::json!({
        "id": "slow",
        "status": "active",
        "process": {
            "host": lock["host"], "boot_id": lock["boot_id"],
            "pid": lock["pid"], "start_time": lock["process_start_time"],
        },
        "started_at": "2026-01-01T00:00:00Z",
        "last_heartbeat": "2026-01-01T00:00:00Z",
        "heartbeat_interval_ms": 1000,
    });
    std::fs::create_dir_all(ws.maos_dir().join("agents")).unwrap();
    std::fs::write(ws.maos_dir().join("agents/slow.json"), record.to_string()).unwrap();

    let recovered = ws.maos(&["--json", "agent", "recover"]).assert_ok().json();
    assert_eq!(recovered[0]["agent"], "slow");
    assert_eq!(recovered[0]["state"], "stale");
    assert_eq!(recovered[0]["locks"], serde_json::json!([]));
    assert_eq!(
        ws.maos(&["--json", "lock", "show", "src/db.rs"])
            .assert_ok()
            .json()["owner"],
        "slow"
    );
    ws.maos(&["--agent", "other", "lock", "acquire", "src/db.rs"])
        .assert_code(5);
    ws.maos(&["--agent", "other", "lock", "acquire", "notes.md"])
        .assert_code(5);
    ws.maos(&["--agent", "other", "--json", "lock", "list"])
        .assert_ok()
        .json()
        .as_array()
        .unwrap()
        .iter()
        .for_each(|l| assert_eq!(l["owner"], "slow", "{l}"));
    holder.kill().unwrap();
    holder.wait().unwrap();
}
