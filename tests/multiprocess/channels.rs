//! Channels under concurrent processes: invariants C1, C2, C3, W1, W3.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use maos_tests::TestWorkspace;
use serde_json::Value;

/// Starts `n` helper senders that wait at a start line, then releases them together.
fn start_senders(ws: &TestWorkspace, channel: &str, n: usize, each: usize) -> Vec<Child> {
    let go = ws.root().join("go");
    let children = (0..n)
        .map(|k| {
            ws.helper_cmd()
                .env("MAOS_HELPER_GO", &go)
                .args(["send", channel, &each.to_string(), &format!("sender-{k}")])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    std::fs::write(&go, "").unwrap();
    children
}

fn wait_all(children: Vec<Child>) -> Vec<String> {
    children
        .into_iter()
        .map(|child| {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        })
        .collect()
}

/// C1 + C2: two independent reader processes (the CLI and the library helper) each get every
/// message of `channel` exactly once, `seq` 1..=n without a gap, in the same order, with
/// every `(tag, i)` payload of `senders` × `each`.
fn assert_readers_agree(ws: &TestWorkspace, channel: &str, senders: usize, each: u64) {
    let total = senders as u64 * each;
    let cli = ws
        .maos_cmd()
        .args(["--json", "msg", "recv", channel])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lib = ws
        .helper_cmd()
        .args(["recv", channel])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (cli, lib) = (
        cli.wait_with_output().unwrap(),
        lib.wait_with_output().unwrap(),
    );
    for out in [&cli, &lib] {
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let cli_view: Vec<Value> = serde_json::from_slice(&cli.stdout).unwrap();
    let lib_view: Vec<Value> = String::from_utf8(lib.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for view in [&cli_view, &lib_view] {
        let seqs: Vec<u64> = view.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
        assert_eq!(seqs, (1..=total).collect::<Vec<_>>());
        let payloads: BTreeSet<(String, u64)> = view
            .iter()
            .map(|m| {
                let p = &m["payload"];
                (
                    p["tag"].as_str().unwrap().to_owned(),
                    p["i"].as_u64().unwrap(),
                )
            })
            .collect();
        let expected: BTreeSet<(String, u64)> = (0..senders)
            .flat_map(|k| (0..each).map(move |i| (format!("sender-{k}"), i)))
            .collect();
        assert_eq!(payloads, expected, "missing or duplicate payloads");
    }
    let order = |v: &[Value]| -> Vec<(u64, String)> {
        v.iter()
            .map(|m| (m["seq"].as_u64().unwrap(), m["payload"].to_string()))
            .collect()
    };
    assert_eq!(
        order(&cli_view),
        order(&lib_view),
        "readers disagree on the order"
    );
}

/// 4 `maos` CLI processes at a time send 250 messages each to one channel (1,000 process
/// runs); two independent readers agree on all 1,000.
#[test]
fn four_concurrent_cli_senders_two_readers_agree_on_one_order() {
    let ws = TestWorkspace::new();
    std::thread::scope(|scope| {
        for k in 0..4 {
            let ws = &ws;
            scope.spawn(move || {
                for i in 0..250 {
                    let payload = format!(r#"{{"tag": "sender-{k}", "i": {i}}}"#);
                    ws.maos(&["msg", "send", "general", &payload]).assert_ok();
                }
            });
        }
    });
    assert_readers_agree(&ws, "general", 4, 250);
}

/// The same with library senders released together at a start line, 4 × 1,000 messages:
/// past a segment boundary, with each sender's acknowledged seqs increasing.
#[test]
fn four_concurrent_library_senders_two_readers_agree_on_one_order() {
    let ws = TestWorkspace::new();
    for out in wait_all(start_senders(&ws, "general", 4, 1000)) {
        let seqs: Vec<u64> = out
            .lines()
            .map(|l| l.split(' ').next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(seqs.len(), 1000);
        assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    }
    assert_readers_agree(&ws, "general", 4, 1000);
}

/// W1 + C1: a reader re-reading in a tight loop while 4 processes send never sees a partial
/// or unparsable message, a gap, or a message behind its cursor.
#[test]
fn tight_reader_never_sees_a_partial_message_or_a_reordering() {
    let ws = TestWorkspace::new();
    let reader = ws
        .helper_cmd()
        .args(["read-loop", "busy", "800"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_all(start_senders(&ws, "busy", 4, 200));
    let out = reader.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "reader failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rounds: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert!(rounds > 1, "the reader should have raced the senders");
}

/// W3: senders killed with SIGKILL mid-loop leave no visible partial file, every message
/// whose send returned is present, and the channel keeps working (the kernel lock died with
/// the sender).
#[test]
fn a_killed_sender_leaves_no_partial_file_and_loses_no_acknowledged_message() {
    let ws = TestWorkspace::new();
    let mut acknowledged = Vec::new();
    for round in 0..4 {
        let mut child = ws
            .helper_cmd()
            .args(["send", "crashy", "1000000", &format!("round-{round}")])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        // Let it get going, then kill it at an arbitrary point.
        for _ in 0..(50 + round * 37) {
            line.clear();
            stdout.read_line(&mut line).unwrap();
        }
        std::thread::sleep(Duration::from_millis(3 * round as u64));
        child.kill().unwrap();
        child.wait().unwrap();
        let mut rest = String::new();
        stdout.read_to_string(&mut rest).unwrap();
        let before = acknowledged.len();
        for l in line.lines().chain(rest.lines()) {
            let (seq, i) = l.split_once(' ').unwrap();
            acknowledged.push((
                seq.parse::<u64>().unwrap(),
                format!("round-{round}"),
                i.parse::<u64>().unwrap(),
            ));
        }
        assert!(acknowledged.len() > before || round > 0);
    }
    let run = ws.maos(&["--json", "msg", "recv", "crashy"]).assert_ok();
    assert_eq!(
        run.stderr(),
        "",
        "a partial or broken message file is visible"
    );
    let messages: Vec<Value> = serde_json::from_str(&run.stdout()).unwrap();
    let seqs: Vec<u64> = messages
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    let present: BTreeSet<(u64, String, u64)> = messages
        .iter()
        .map(|m| {
            (
                m["seq"].as_u64().unwrap(),
                m["payload"]["tag"].as_str().unwrap().to_owned(),
                m["payload"]["i"].as_u64().unwrap(),
            )
        })
        .collect();
    for ack in &acknowledged {
        assert!(
            present.contains(ack),
            "acknowledged message {ack:?} is missing"
        );
    }
    ws.maos(&["msg", "send", "crashy", "still works"])
        .assert_ok();
}

/// C3: a `maos msg watch` in another process is woken by a new message — through notify
/// (the safety rescan and the polling period are both set to 10 minutes, so only an event can
/// wake it within the 60 s timeout) and through the polling fallback when notify is off.
fn watcher_in_another_process_is_woken(env: &[(&str, &str)]) {
    let ws = TestWorkspace::new();
    let mut watcher = ws
        .maos_cmd()
        .envs(env.iter().copied())
        .args([
            "--json",
            "msg",
            "watch",
            "live",
            "--after",
            "0",
            "--count",
            "2",
            "--timeout",
            "60",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(watcher.stdout.take().unwrap()).lines();
    ws.maos(&["msg", "send", "live", "first"]).assert_ok();
    let first: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(first["payload"], "first");
    // The watcher has handed out message 1 and is now waiting for message 2.
    std::thread::sleep(Duration::from_millis(200));
    let sent = Instant::now();
    ws.maos(&["msg", "send", "live", "second"]).assert_ok();
    let second: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(second["payload"], "second");
    assert_eq!(second["seq"], 2);
    let status = watcher.wait().unwrap();
    assert!(
        status.success(),
        "watcher failed after {:?}",
        sent.elapsed()
    );
}

#[test]
fn watcher_in_another_process_is_woken_by_notify() {
    watcher_in_another_process_is_woken(&[
        ("MAOS_RESCAN_MS", "600000"),
        ("MAOS_POLL_MS", "600000"),
    ]);
}

#[test]
fn watcher_in_another_process_is_woken_by_polling_when_notify_is_off() {
    watcher_in_another_process_is_woken(&[("MAOS_WATCH", "poll"), ("MAOS_POLL_MS", "20")]);
}
