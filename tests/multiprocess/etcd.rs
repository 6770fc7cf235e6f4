//! What only the etcd store does, against the cluster `.ci/etcd-suite` starts: liveness and
//! expiry decided by the cluster's leases, for agents on several hosts. (The invariant suites
//! — channels, locks, tasks, agents — run on etcd unchanged; see `.ci/etcd-suite`.)
//!
//! "Another host" is a process whose facts this host cannot know: every process runs with
//! `MAOS_PROCESS_FACTS=none`, so no process is ever judged dead from its pid, as for an
//! agent on another machine.

use std::process::{Child, Stdio};

use maos_tests::{TestWorkspace, path_with_maos, test_store, wait_for};

fn on_etcd() -> TestWorkspace {
    assert!(
        test_store().is_some(),
        "these tests need an etcd cluster: run `bash .ci/etcd-suite`"
    );
    TestWorkspace::new()
}

fn far_worker(ws: &TestWorkspace, agent: &str, script: &str) -> Child {
    ws.maos_cmd()
        .env("PATH", path_with_maos())
        .env("MAOS_PROCESS_FACTS", "none")
        .args([
            "--agent",
            agent,
            "agent",
            "run",
            "--heartbeat",
            "0.2",
            "--once",
        ])
        .args(["--", "sh", "-c", script])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn agent_state(ws: &TestWorkspace, agent: &str) -> String {
    let listed = ws
        .maos_cmd()
        .env("MAOS_PROCESS_FACTS", "none")
        .args(["--json", "agent", "list"])
        .output()
        .unwrap();
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    listed
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == agent)
        .map_or(String::new(), |a| a["state"].as_str().unwrap().to_owned())
}

/// An agent on another host killed mid-task: nobody can see its process, but its liveness
/// lease stops being renewed; once the cluster ends it, the agent is dead, and the next
/// claim (which recovers first) gets its task back — and not before: while the lease runs
/// the agent counts as alive and its task stays with it.
#[test]
fn an_agent_on_another_host_is_dead_when_its_lease_runs_out() {
    let ws = on_etcd();
    let task = ws
        .maos(&["--json", "task", "add", "far work"])
        .assert_ok()
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut far = far_worker(&ws, "far", "touch started; sleep 60");
    wait_for("the far agent to start its task", || {
        ws.root().join("started").exists()
    });
    assert_eq!(agent_state(&ws, "far"), "alive");
    far.kill().unwrap();
    far.wait().unwrap();
    let claim = |agent: &str| {
        ws.maos_cmd()
            .env("MAOS_PROCESS_FACTS", "none")
            .args(["--json", "--agent", agent, "task", "claim", &task])
            .output()
            .unwrap()
    };
    // Right after the kill its lease (1.2 s: six missed heartbeats) still runs.
    let early = claim("near");
    assert_eq!(early.status.code(), Some(5), "{early:?}");
    wait_for("the far agent's lease to run out", || {
        agent_state(&ws, "far") == "dead"
    });
    let late = claim("near");
    assert!(late.status.success(), "{late:?}");
    let claimed: serde_json::Value = serde_json::from_slice(&late.stdout).unwrap();
    assert_eq!(claimed["assignee"], "near");
    assert_eq!(claimed["attempts"], 2);
    assert_eq!(agent_state(&ws, "far"), "gone", "recovered");
}
