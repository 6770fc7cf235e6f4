//! Watching a team: `maos metrics` (the Prometheus text format, parsed by the reference
//! Python parser, with the same counts as `maos status`) and `MAOS_LOG` traces.

use std::process::Command;

use maos_tests::TestWorkspace;
use serde_json::Value;

/// `maos metrics` parsed by `prometheus_client`: {"name{label=value}": value}.
fn parsed_metrics(ws: &TestWorkspace) -> Value {
    maos_tests::ensure_python_module("prometheus_client", "prometheus_client");
    let text = ws.maos(&["metrics"]).assert_ok().stdout();
    let script = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        out[f"{s.name}{{{labels}}}"] = s.value
print(json.dumps(out))
"#;
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the parser refused:\n{text}");
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn metrics_parse_and_agree_with_status() {
    let ws = TestWorkspace::new();
    for (agent, role) in [("bob", "reviewer"), ("carol", "coder")] {
        ws.maos(&["agent", "join", agent, "--role", role])
            .assert_ok();
    }
    ws.maos(&["agent", "leave", "carol"]).assert_ok();
    for id in ["a", "b", "c"] {
        ws.maos(&["task", "add", &format!("task {id}"), "--id", id])
            .assert_ok();
    }
    ws.maos(&["task", "add", "after a", "--id", "d", "--depends-on", "a"])
        .assert_ok();
    ws.maos_as("bob", &["task", "claim", "a"]).assert_ok();
    ws.maos_as("bob", &["task", "done", "a"]).assert_ok();
    ws.maos_as("bob", &["task", "claim", "b"]).assert_ok();
    ws.maos_as("bob", &["lock", "acquire", "src/x.rs", "--ttl", "600"])
        .assert_ok();
    ws.maos_as("bob", &["lock", "acquire", "src/gone.rs", "--ttl", "0.2"])
        .assert_ok();
    ws.maos_as(
        "alice",
        &["msg", "send", "review", "look", "--to", "bob", "--ack"],
    )
    .assert_ok();
    ws.maos_as(
        "alice",
        &["msg", "send", "review", "and this", "--to", "bob", "--ack"],
    )
    .assert_ok();
    ws.maos_as("bob", &["msg", "ack", "review", "1"])
        .assert_ok();
    ws.maos_as("alice", &["msg", "send", "general", "hello"])
        .assert_ok();
    std::thread::sleep(std::time::Duration::from_millis(300));

    let metrics = parsed_metrics(&ws);
    let status = ws.maos(&["--json", "status"]).assert_ok().json();
    let metric = |key: &str| {
        metrics[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} missing: {metrics}"))
    };
    for (state, n) in status["tasks"]["by_status"].as_object().unwrap() {
        assert_eq!(
            metric(&format!("maos_tasks{{status={state}}}")),
            n.as_f64().unwrap(),
            "{state}"
        );
    }
    let ready = ws.maos(&["--json", "task", "ready"]).assert_ok().json();
    assert_eq!(
        metric("maos_tasks_ready{}"),
        ready.as_array().unwrap().len() as f64
    );
    for state in ["live", "expired", "dead"] {
        let held = status["locks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["state"] == state)
            .count();
        assert_eq!(
            metric(&format!("maos_locks{{state={state}}}")),
            held as f64,
            "{state} locks"
        );
    }
    assert_eq!(
        (
            metric("maos_locks{state=live}"),
            metric("maos_locks{state=expired}")
        ),
        (1.0, 1.0)
    );
    for state in ["alive", "gone"] {
        let agents = status["agents"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["state"] == state)
            .count();
        assert_eq!(
            metric(&format!("maos_agents{{state={state}}}")),
            agents as f64,
            "{state}"
        );
    }
    for channel in status["channels"].as_array().unwrap() {
        let name = channel["name"].as_str().unwrap();
        // The parser reports a counter's sample with its `_total` name.
        assert_eq!(
            metric(&format!("maos_channel_messages_total{{channel={name}}}")),
            channel["last_seq"].as_f64().unwrap()
        );
    }
    assert_eq!(metric("maos_channel_unacked_messages{channel=review}"), 1.0);
    assert_eq!(
        metric("maos_acks_overdue{}"),
        status["overdue_acks"].as_f64().unwrap()
    );

    // From the journal: every acquisition and claim observed once in its wait histogram,
    // events counted by kind.
    assert_eq!(metric("maos_lock_wait_seconds_count{}"), 2.0);
    assert_eq!(metric("maos_lock_wait_seconds_bucket{le=+Inf}"), 2.0);
    assert_eq!(metric("maos_task_claim_wait_seconds_count{}"), 2.0);
    assert_eq!(metric("maos_events_total{kind=task.completed}"), 1.0);
    assert_eq!(metric("maos_events_total{kind=message.sent}"), 4.0);
    assert_eq!(metric("maos_events_total{kind=message.acked}"), 1.0);
    // Counted once each: a second call reads only what was journaled since (the tally in
    // reports/), and keeps the earlier counts.
    ws.maos_as("bob", &["lock", "acquire", "src/y.rs"])
        .assert_ok();
    let again = parsed_metrics(&ws);
    assert_eq!(again["maos_lock_wait_seconds_count{}"].as_f64(), Some(3.0));
    assert_eq!(
        again["maos_events_total{kind=message.acked}"].as_f64(),
        Some(1.0)
    );
    assert_eq!(
        again["maos_task_claim_wait_seconds_count{}"].as_f64(),
        Some(2.0)
    );

    // The textfile collector's file: written whole, the same text.
    let dir = tempfile::tempdir().unwrap();
    ws.maos(&["metrics", "--textfile", dir.path().to_str().unwrap()])
        .assert_ok();
    let written = std::fs::read_to_string(dir.path().join("maos.prom")).unwrap();
    assert!(written.contains("# TYPE maos_tasks gauge"));
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no staging file left"
    );
}

#[test]
fn maos_log_traces_to_stderr_and_leaves_stdout_alone() {
    let ws = TestWorkspace::new();
    let run = |args: &[&str]| {
        let out = ws
            .maos_cmd()
            .env("MAOS_LOG", "debug")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    let (stdout, stderr) = run(&["--json", "lock", "acquire", "src/a.rs", "--ttl", "60"]);
    assert!(
        stderr.contains("lock acquired") && stderr.contains("src/a.rs"),
        "{stderr}"
    );
    let lock: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(lock["resource"], "src/a.rs");
    let (_, stderr) = run(&["msg", "send", "general", "hi"]);
    assert!(stderr.contains("message sent"), "{stderr}");
    // Without MAOS_LOG: nothing on stderr.
    let quiet = ws.maos(&["lock", "release", "src/a.rs"]).assert_ok();
    assert_eq!(quiet.stderr(), "");
}
