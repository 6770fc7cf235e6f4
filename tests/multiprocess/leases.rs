//! Leases where agents really live (L5–L7, C2, T5): paused and resumed, restarted under the
//! same id, threads sharing a handle, another PID namespace, a stopped process holding a
//! kernel lock, a counter rewound by hand, a wall-clock step.

use std::collections::BTreeSet;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use maos_coordination::Workspace;
use maos_coordination::lock::Locks;
use maos_coordination::recovery::{self, RecoveryOptions};
use maos_coordination::task::{NewTask, Tasks};
use maos_tests::{Run, TestWorkspace, helper_with_line, wait_for};
use serde_json::Value;

fn agent_state(ws: &TestWorkspace, id: &str) -> Value {
    let agents = ws.maos(&["--json", "agent", "list"]).assert_ok().json();
    agents
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == id)
        .map_or(Value::Null, |a| a["state"].clone())
}

/// The issue's scenario, automated: a worker holding a CLI lock and a task is stopped past the
/// stale threshold. Another agent's queue returns the task, but the lock cannot be taken
/// before it expires. Resumed, the worker says it lost the task, drops it, claims the next one
/// and finishes; `agent list` shows it alive again meanwhile.
#[test]
fn a_paused_worker_keeps_its_lease_and_drops_the_task_it_lost() {
    let ws = TestWorkspace::new();
    let tasks = Tasks::new(&Workspace::open(ws.root()).unwrap());
    let first = tasks
        .create(
            "planner",
            NewTask {
                priority: maos_coordination::Priority::High,
                ..NewTask::new("first")
            },
            None,
        )
        .unwrap()
        .id;
    let second = tasks
        .create("planner", NewTask::new("second"), None)
        .unwrap()
        .id;
    let path = maos_tests::path_with_maos();
    let script = "if [ ! -e first ]; then touch first; maos lock acquire src/x.rs --ttl 600; maos reserve 'docs/**' --ttl 10m; touch locked; sleep 3; fi";
    let worker = ws
        .maos_cmd()
        .env("PATH", path)
        .args(["--agent", "w1", "agent", "run", "--heartbeat", "0.2"])
        .args(["--until-idle", "--", "sh", "-c", script])
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the lock", || ws.root().join("locked").exists());
    // Worker and job, as a laptop lid closing would: the whole process group.
    let group = format!("-{}", worker.id());
    let stopped = maos_tests::Stopped::new(&group);
    wait_for("w1 to go stale", || agent_state(&ws, "w1") == "stale");

    // w2's queue recovers the stale agent's task; its lease stays.
    let ready = ws
        .maos_as("w2", &["--json", "task", "ready"])
        .assert_ok()
        .json();
    assert!(
        ready.as_array().unwrap().iter().any(|t| t["id"] == first),
        "{ready}"
    );
    let refused = ws
        .maos_as("w2", &["lock", "acquire", "src/x.rs", "--ttl", "30"])
        .assert_code(5);
    assert!(refused.stderr().contains("w1"), "{}", refused.stderr());
    // Its reservation is a lease too: recovery left it, and it still covers docs/.
    let refused = ws
        .maos_as("w2", &["lock", "acquire", "docs/guide.md"])
        .assert_code(5);
    assert!(
        refused.stderr().contains("reservation `docs/**` of `w1`"),
        "{}",
        refused.stderr()
    );
    ws.maos_as("w2", &["task", "claim", &first]).assert_ok();
    ws.maos_as("w2", &["task", "done", &first]).assert_ok();

    drop(stopped);
    wait_for("w1 to be alive again", || agent_state(&ws, "w1") == "alive");
    let out = worker.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let dropped =
        format!("task {first} was returned to the queue while this agent was paused; dropping it");
    assert_eq!(stderr.matches(&dropped).count(), 1, "{stderr}");
    let second = ws
        .maos(&["--json", "task", "show", &second])
        .assert_ok()
        .json();
    assert_eq!(second["status"], "completed");
    assert_eq!(second["assignee"], "w1");
    let first = ws
        .maos(&["--json", "task", "show", &first])
        .assert_ok()
        .json();
    assert_eq!(first["status"], "completed");
    assert_eq!(first["assignee"], "w2");
}

/// L6 and renewal: a library guard in a running process keeps its lock through many lifetimes
/// of its TTL; stopped (SIGSTOP), it renews nothing, and its lease runs out on time.
#[test]
fn a_running_holder_keeps_its_lease_and_a_stopped_one_loses_it_on_time() {
    let ws = TestWorkspace::new();
    let (mut holder, line) =
        helper_with_line(
            ws.helper_cmd()
                .args(["hold", "build", "long-runner", "400"]),
        );
    assert_eq!(line.trim(), "held 1");
    std::thread::sleep(Duration::from_millis(1500));
    ws.maos_as("other", &["lock", "acquire", "build"])
        .assert_code(5);
    let stopped = maos_tests::Stopped::new(holder.id());
    std::thread::sleep(Duration::from_millis(1000));
    let taken = ws
        .maos_as("other", &["--json", "lock", "acquire", "build"])
        .assert_ok()
        .json();
    assert_eq!(taken["token"], 2);
    drop(stopped);
    holder.kill().unwrap();
    holder.wait().unwrap();
    // The resumed holder did not renew what is no longer its lock.
    let now = ws
        .maos(&["--json", "lock", "show", "build"])
        .assert_ok()
        .json();
    assert_eq!(now["owner"], "other");
}

/// Recovery against a restart, 100 times: an agent's process dies holding a lock; a new
/// process takes a lock and joins under the same id while recovery runs. The new lock always
/// survives, and the new process is the agent.
#[test]
fn recovery_never_robs_an_agent_restarted_under_the_same_id() {
    let ws = TestWorkspace::new();
    let workspace = Workspace::open(ws.root()).unwrap();
    let locks = Locks::new(&workspace);
    for round in 0..100 {
        let (mut old, line) =
            helper_with_line(ws.helper_cmd().args(["hold-then-join", "r", "phoenix"]));
        assert!(line.starts_with("held"), "{line}");
        old.kill().unwrap();
        old.wait().unwrap();
        let racing = {
            let workspace = workspace.clone();
            std::thread::spawn(move || {
                for _ in 0..3 {
                    recovery::recover(&workspace, RecoveryOptions::default()).unwrap();
                }
            })
        };
        let (mut new, line) =
            helper_with_line(ws.helper_cmd().args(["hold-then-join", "r", "phoenix"]));
        racing.join().unwrap();
        assert!(line.starts_with("held"), "round {round}: {line}");
        recovery::recover(&workspace, RecoveryOptions::default()).unwrap();
        let lock = locks.show("r").unwrap().expect("the new lock survives");
        assert_eq!(lock.pid, new.id(), "round {round}");
        assert_eq!(lock.token.to_string(), line.trim()["held ".len()..]);
        let agent = maos_coordination::agents::Registry::new(&workspace)
            .get("phoenix")
            .unwrap()
            .unwrap();
        assert_eq!(agent.process.pid, new.id(), "round {round}");
        new.kill().unwrap();
        new.wait().unwrap();
    }
}

/// 8 threads in each of 2 processes, each process sharing one handle: locked increments are
/// never lost, tasks are claimed exactly once, messages get distinct numbers and all read back.
#[test]
fn threads_sharing_a_handle_exclude_each_other_like_processes() {
    let ws = TestWorkspace::new();
    let dir = tempfile::tempdir().unwrap();
    let run_both = |kind: &str| -> Vec<String> {
        let children: Vec<Child> = (0..2)
            .map(|p| {
                ws.helper_cmd()
                    .args(["threads", kind, &format!("proc-{p}")])
                    .arg(dir.path())
                    .stdout(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        children
            .into_iter()
            .flat_map(|c| {
                let out = c.wait_with_output().unwrap();
                assert!(out.status.success(), "{kind}");
                String::from_utf8(out.stdout)
                    .unwrap()
                    .lines()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect()
    };

    let rounds = run_both("locks");
    assert_eq!(rounds.len(), 400);
    let counter = std::fs::read_to_string(dir.path().join("counter")).unwrap();
    assert_eq!(counter.trim(), "400", "an increment was lost");
    let read: BTreeSet<u64> = rounds
        .iter()
        .map(|l| l.split(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(read, (0..400).collect(), "two holders read the same value");

    let tasks = Tasks::new(&Workspace::open(ws.root()).unwrap());
    for i in 0..200 {
        tasks
            .create("planner", NewTask::new(format!("t{i}")), None)
            .unwrap();
    }
    let claimed = run_both("tasks");
    let distinct: BTreeSet<&String> = claimed.iter().collect();
    assert_eq!(claimed.len(), 200, "a task was claimed twice");
    assert_eq!(distinct.len(), 200);

    let sent = run_both("channel");
    assert_eq!(sent.len(), 800);
    let seqs: BTreeSet<u64> = sent.iter().map(|s| s.parse().unwrap()).collect();
    assert_eq!(seqs.len(), 800, "a seq was handed out twice");
    let all = ws
        .maos(&["--json", "msg", "recv", "threads"])
        .assert_ok()
        .json();
    assert_eq!(all.as_array().unwrap().len(), 800);
    let read: BTreeSet<u64> = maos_tests::seqs(&all).into_iter().collect();
    assert_eq!(read, seqs);
}

/// C2: a channel counter rewound by hand (a lost write) is never reused: concurrent senders
/// move past the newest message, and every message stays readable.
#[test]
fn a_rewound_seq_counter_is_never_reused() {
    let ws = TestWorkspace::new();
    for i in 0..10 {
        ws.maos(&["msg", "send", "log", &i.to_string()]).assert_ok();
    }
    std::fs::write(ws.maos_dir().join("channels/log/.seq"), "3\n").unwrap();
    let senders: Vec<Child> = ["a", "b"]
        .iter()
        .map(|tag| {
            ws.helper_cmd()
                .args(["send", "log", "50", tag])
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for s in senders {
        assert!(s.wait_with_output().unwrap().status.success());
    }
    let run = ws.maos(&["--json", "msg", "recv", "log"]).assert_ok();
    assert!(run.stderr().is_empty(), "{}", run.stderr());
    let seqs = maos_tests::seqs(&run.json());
    assert_eq!(seqs, (1..=110).collect::<Vec<_>>());
}

/// L6: a lock held by a process in another PID namespace (another container on this host)
/// is not judged dead: its pid means nothing here. Needs root for `unshare --pid`.
#[test]
fn a_lock_held_from_another_pid_namespace_is_not_stolen() {
    let ws = TestWorkspace::new();
    let probe = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "true"])
        .output();
    if !probe.as_ref().is_ok_and(|o| o.status.success()) {
        eprintln!(
            "skipped: `unshare --pid --fork --mount-proc` is not permitted here ({:?})",
            probe.map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
        );
        return;
    }
    let helper = maos_tests::helper_bin();
    let cmd = ws.helper_cmd();
    let envs: Vec<(String, String)> = cmd
        .get_envs()
        .filter_map(|(k, v)| Some((k.to_str()?.to_owned(), v?.to_str()?.to_owned())))
        .collect();
    let mut cmd = Command::new("unshare");
    cmd.args(["--pid", "--fork", "--mount-proc", "--kill-child"])
        .arg(helper)
        .args(["hold", "src/shared.rs", "boxed"])
        .env_clear()
        .envs(envs);
    let (mut boxed, line) = helper_with_line(&mut cmd);
    assert!(line.starts_with("held"), "{line}");
    let lock = ws
        .maos(&["--json", "lock", "show", "src/shared.rs"])
        .assert_ok()
        .json();
    assert_eq!(lock["state"], "live", "{lock}");
    ws.maos_as("outsider", &["lock", "acquire", "src/shared.rs"])
        .assert_code(5);
    ws.maos(&["agent", "recover"]).assert_ok();
    ws.maos(&["doctor"]).assert_ok();
    boxed.kill().unwrap();
    boxed.wait().unwrap();
}

/// L5: a process stopped while it holds `tasks/.lock` does not hang `maos task claim`: it
/// fails within its timeout (exit 3), naming the file and the holder.
#[test]
fn a_stopped_holder_of_the_tasks_lock_cannot_hang_a_claim() {
    let ws = TestWorkspace::new();
    ws.maos(&["task", "add", "t"]).assert_ok();
    let (mut holder, line) =
        helper_with_line(ws.helper_cmd().args(["hold-kernel-lock", "tasks/.lock"]));
    assert_eq!(line.trim(), "locked");
    let stopped = maos_tests::Stopped::new(holder.id());
    let started = Instant::now();
    let run = Run(ws
        .maos_cmd()
        .env("MAOS_LOCK_TIMEOUT", "1")
        .args(["task", "claim"])
        .output()
        .unwrap())
    .assert_code(3);
    assert!(started.elapsed() < Duration::from_secs(30));
    let stderr = run.stderr();
    assert!(stderr.contains("tasks/.lock"), "{stderr}");
    assert!(
        stderr.contains(&format!("pid {}", holder.id())),
        "the holder is named: {stderr}"
    );
    drop(stopped);
    holder.kill().unwrap();
    holder.wait().unwrap();
    ws.maos(&["task", "claim"]).assert_ok();
}

/// L5: the `.fence` of a lock held by a stopped process bounds a waiting `lock acquire` by its
/// own `--wait`, not by the longer kernel-lock timeout.
#[test]
fn a_stopped_holder_of_a_fence_is_bounded_by_the_callers_wait() {
    let ws = TestWorkspace::new();
    let (mut holder, line) =
        helper_with_line(ws.helper_cmd().args(["hold-kernel-lock", "locks/db.fence"]));
    assert_eq!(line.trim(), "locked");
    let stopped = maos_tests::Stopped::new(holder.id());
    let started = Instant::now();
    let run = ws
        .maos(&["lock", "acquire", "db", "--wait", "1"])
        .assert_code(3);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "waited {:?}",
        started.elapsed()
    );
    assert!(run.stderr().contains("db.fence"), "{}", run.stderr());
    drop(stopped);
    holder.kill().unwrap();
    holder.wait().unwrap();
    ws.maos(&["lock", "acquire", "db"]).assert_ok();
}

/// L6: expiry between processes of one boot is judged on a clock that does not jump. Seen
/// through a wall clock stepped by ±2 hours (`faketime`), a fresh lease neither expires at
/// once nor lives on after its time.
#[test]
fn a_wall_clock_step_neither_expires_leases_nor_makes_them_immortal() {
    if Command::new("faketime")
        .args(["-f", "+0", "true"])
        .status()
        .is_err()
    {
        eprintln!("skipped: faketime is not installed (.ci/run installs it)");
        return;
    }
    let ws = TestWorkspace::new();
    // `maos` as `agent`, under a wall clock stepped by `offset` (the boot clock, read by a
    // system call libfaketime does not intercept, keeps running true).
    let stepped = |offset: &str, agent: &str, args: &[&str]| -> Run {
        let cmd = ws.maos_cmd();
        let envs: Vec<(String, String)> = cmd
            .get_envs()
            .filter_map(|(k, v)| Some((k.to_str()?.to_owned(), v?.to_str()?.to_owned())))
            .collect();
        Run(Command::new("faketime")
            .args(["-f", offset])
            .arg(cmd.get_program())
            .args(args)
            .env_clear()
            .envs(envs)
            .env("MAOS_AGENT_ID", agent)
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
            .current_dir(ws.root())
            .output()
            .unwrap())
    };
    ws.maos(&["lock", "acquire", "long", "--ttl", "600"])
        .assert_ok();
    ws.maos(&["lock", "acquire", "short", "--ttl", "1"])
        .assert_ok();
    // Two hours ahead: the 10-minute lease is still live, with its time left.
    let long = stepped("+2h", "tester", &["--json", "lock", "show", "long"])
        .assert_ok()
        .json();
    assert_eq!(long["state"], "live", "{long}");
    std::thread::sleep(Duration::from_millis(1500));
    // Two hours back: the 1-second lease has still run out.
    let short = stepped("-2h", "tester", &["--json", "lock", "show", "short"])
        .assert_ok()
        .json();
    assert_eq!(short["state"], "expired", "{short}");
    // And a stepped process taking the live lock is refused.
    stepped("+2h", "stepper", &["lock", "acquire", "long"]).assert_code(5);
}

/// Where process facts cannot be read (`MAOS_PROCESS_FACTS=none` makes Linux behave like
/// such a platform), nothing is judged dead: a lock of a killed holder is not taken before it
/// expires, and a killed agent's task comes back only when its heartbeat lease runs out. With
/// the facts, the same holder is provably gone and its lock is taken at once.
#[test]
fn without_process_facts_nothing_is_judged_dead() {
    let ws = TestWorkspace::new();
    let blind = |args: &[&str]| {
        Run(ws
            .maos_cmd()
            .env("MAOS_PROCESS_FACTS", "none")
            .args(args)
            .output()
            .unwrap())
    };
    let (mut holder, line) = helper_with_line(ws.helper_cmd().args(["hold", "x", "gone"]));
    assert!(line.starts_with("held"), "{line}");
    holder.kill().unwrap();
    holder.wait().unwrap();
    blind(&["--agent", "other", "lock", "acquire", "x"]).assert_code(5);
    let shown = blind(&["--json", "lock", "show", "x"]).assert_ok().json();
    assert_eq!(shown["state"], "live");
    ws.maos_as("other", &["lock", "acquire", "x"]).assert_ok();

    // A worker killed while it holds a task: judged by its heartbeat lease only.
    let id = Tasks::new(&Workspace::open(ws.root()).unwrap())
        .create("planner", NewTask::new("long"), None)
        .unwrap()
        .id;
    let mut worker = ws
        .maos_cmd()
        .env("PATH", maos_tests::path_with_maos())
        .args(["--agent", "w1", "agent", "run", "--heartbeat", "1"])
        .args(["--", "sh", "-c", "touch started; sleep 30"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the task to start", || ws.root().join("started").exists());
    worker.kill().unwrap();
    worker.wait().unwrap();
    let killed_at = Instant::now();
    let ready = blind(&["--json", "task", "ready"]).assert_ok().json();
    let state = blind(&["--json", "agent", "list"]).assert_ok().json()[0]["state"].clone();
    if killed_at.elapsed() < Duration::from_secs(5) {
        assert_eq!(state, "alive", "judged on its heartbeat, not its process");
        assert_eq!(
            ready,
            serde_json::json!([]),
            "recovered before its lease ran out"
        );
    }
    wait_for("the heartbeat lease to run out", || {
        blind(&["--json", "task", "ready"])
            .json()
            .to_string()
            .contains(&id)
    });
    assert!(killed_at.elapsed() >= Duration::from_secs(5));

    // A staging file of a writer that is gone: doctor removes it only when it can tell.
    let staging = ws
        .maos_dir()
        .join("tmp")
        .join(format!("{}.interrupted", holder.id()));
    std::fs::write(&staging, "half a record").unwrap();
    let doctor = blind(&["--json", "doctor"]).json();
    assert!(
        !doctor.to_string().contains("interrupted"),
        "unknown is not gone: {doctor}"
    );
    let doctor = ws.maos(&["--json", "doctor"]).assert_code(1).json();
    assert!(
        doctor
            .to_string()
            .contains("a staging file whose writer is gone"),
        "{doctor}"
    );
}
