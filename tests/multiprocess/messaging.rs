//! Messaging a team can rely on, through the CLI in separate processes: the inbox hands each
//! message out once across restarts, acknowledgements are recorded once, overdue ones are
//! listed exactly and told once, and no message goes where nobody reads.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use maos_tests::{TestWorkspace, test_store};
use serde_json::Value;

/// (channel, seq) of each message in a JSON list.
fn refs(messages: &Value) -> Vec<(String, u64)> {
    messages
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["channel"].as_str().unwrap().to_owned(),
                m["seq"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn every_recipient_reads_each_message_once_and_acks_are_kept_once() {
    let ws = TestWorkspace::new();
    // Every recipient acks within the deadline but r3 on `review`: on the etcd store, whose
    // commands take longer, the deadline is longer too.
    let ack_within = if test_store().is_some() { "20s" } else { "4s" };
    // r1 and r3 are builders, r2 a reviewer.
    for (agent, role) in [("r1", "builder"), ("r2", "reviewer"), ("r3", "builder")] {
        ws.maos(&["agent", "join", agent, "--role", role])
            .assert_ok();
    }
    // How each sender addresses its messages, in turn: a role, a person, a group.
    let addressings: [&[&str]; 4] = [
        &["--role", "builder"],
        &["--role", "reviewer"],
        &["--to", "r2"],
        &["--to", "r1", "--to", "r3"],
    ];
    let expected_for = |i: usize| -> Vec<&str> {
        match i % 4 {
            0 => vec!["r1", "r3"],
            1 | 2 => vec!["r2"],
            _ => vec!["r1", "r3"],
        }
    };
    let senders_done = std::sync::atomic::AtomicUsize::new(0);
    let (sent, read) = std::thread::scope(|scope| {
        let senders: Vec<_> = (0..4)
            .map(|s| {
                let (ws, senders_done) = (&ws, &senders_done);
                scope.spawn(move || {
                    let mut sent = Vec::new();
                    for n in 0..50 {
                        let i = s * 50 + n;
                        let channel = if i % 2 == 0 { "plan" } else { "review" };
                        let text = format!("m{i}");
                        let mut args = vec!["msg", "send", channel, &text, "--ack"];
                        args.extend_from_slice(&["--ack-within", ack_within]);
                        args.extend_from_slice(addressings[i % 4]);
                        let message = ws
                            .maos_as(&format!("s{s}"), &[&["--json"], &args[..]].concat())
                            .assert_ok()
                            .json();
                        sent.push((i, channel, message["seq"].as_u64().unwrap()));
                    }
                    senders_done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    sent
                })
            })
            .collect();
        // Each recipient reads its inbox in a new process each time (a restart), acks
        // what it gets — r3 acks nothing on `review` — and acks half of it twice.
        let readers: Vec<_> = ["r1", "r2", "r3"]
            .into_iter()
            .map(|agent| {
                let (ws, senders_done) = (&ws, &senders_done);
                scope.spawn(move || {
                    let mut got: Vec<(String, u64)> = Vec::new();
                    let mut quiet_rounds = 0;
                    while quiet_rounds < 3 {
                        let done = senders_done.load(std::sync::atomic::Ordering::SeqCst) == 4;
                        let batch =
                            refs(&ws.maos_as(agent, &["--json", "inbox"]).assert_ok().json());
                        for (channel, seq) in &batch {
                            if agent == "r3" && channel == "review" {
                                continue;
                            }
                            let seq = seq.to_string();
                            ws.maos_as(agent, &["msg", "ack", channel, &seq])
                                .assert_ok();
                            if seq.ends_with(['0', '2', '4', '6', '8']) {
                                let again = ws
                                    .maos_as(agent, &["--json", "msg", "ack", channel, &seq])
                                    .assert_ok()
                                    .json();
                                assert_eq!(again["new"], false, "a second ack is a no-op");
                            }
                        }
                        quiet_rounds = if done && batch.is_empty() {
                            quiet_rounds + 1
                        } else {
                            0
                        };
                        got.extend(batch);
                    }
                    (agent, got)
                })
            })
            .collect();
        let sent: Vec<(usize, &str, u64)> = senders
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        let read: BTreeMap<&str, Vec<(String, u64)>> =
            readers.into_iter().map(|h| h.join().unwrap()).collect();
        (sent, read)
    });
    assert_eq!(sent.len(), 200);
    // Exactly once each: what each recipient read is what was addressed to it.
    for (agent, got) in &read {
        let unique: BTreeSet<&(String, u64)> = got.iter().collect();
        assert_eq!(unique.len(), got.len(), "{agent} read a message twice");
        let expected: BTreeSet<(String, u64)> = sent
            .iter()
            .filter(|(i, _, _)| expected_for(*i).contains(agent))
            .map(|(_, channel, seq)| ((*channel).to_owned(), *seq))
            .collect();
        assert_eq!(
            unique.into_iter().cloned().collect::<BTreeSet<_>>(),
            expected,
            "{agent}'s inbox"
        );
    }
    // One acknowledgement record per (message, agent) that acked.
    let ack_files = ws
        .records_under("acks")
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .filter(|p| !p.ends_with(".expected.json"))
        .count();
    let acked: usize = read
        .iter()
        .map(|(agent, got)| {
            got.iter()
                .filter(|(channel, _)| !(*agent == "r3" && channel == "review"))
                .count()
        })
        .sum();
    assert_eq!(ack_files, acked);
    // After the deadline: exactly r3's `review` messages are overdue.
    let unacked: BTreeSet<(String, u64)> = read["r3"]
        .iter()
        .filter(|(channel, _)| channel == "review")
        .cloned()
        .collect();
    assert!(!unacked.is_empty());
    let until = Instant::now() + Duration::from_secs(30);
    let overdue = loop {
        let overdue = ws.maos(&["--json", "msg", "overdue"]).assert_ok().json();
        if overdue.as_array().unwrap().len() == unacked.len() || Instant::now() > until {
            break overdue;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let listed: BTreeSet<(String, u64)> = overdue
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            assert_eq!(o["agent"], "r3");
            (
                o["channel"].as_str().unwrap().to_owned(),
                o["seq"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(listed, unacked, "the overdue list");
    ws.maos(&["msg", "overdue"]).assert_ok();
    // Each sender was told once per late acknowledgement it is owed, however often asked.
    let mut told = 0;
    for s in 0..4 {
        let notices = ws
            .maos_as(&format!("s{s}"), &["--json", "inbox"])
            .assert_ok()
            .json();
        for notice in notices.as_array().unwrap() {
            assert_eq!(notice["type"], "ack.overdue");
            assert_eq!(notice["payload"]["agent"], "r3");
            told += 1;
        }
    }
    assert_eq!(
        told,
        unacked.len(),
        "one notice per overdue acknowledgement"
    );
}

#[test]
fn a_message_to_nobody_is_refused_unless_allowed_then_read_on_joining() {
    let ws = TestWorkspace::new();
    ws.maos(&["agent", "join", "bob", "--role", "reviewer"])
        .assert_ok();
    let refused = ws
        .maos_as(
            "alice",
            &["msg", "send", "general", "hello", "--to", "dave"],
        )
        .assert_code(4);
    assert!(
        refused.stderr().contains("no agent `dave`") && refused.stderr().contains("bob"),
        "names the unknown agent and the known ones: {}",
        refused.stderr()
    );
    let refused = ws
        .maos_as(
            "alice",
            &["msg", "send", "general", "hi", "--role", "tester"],
        )
        .assert_code(4);
    assert!(
        refused.stderr().contains("`tester`") && refused.stderr().contains("reviewer"),
        "{}",
        refused.stderr()
    );
    assert!(
        !ws.maos_dir().join("channels/general").exists(),
        "a refused message writes nothing"
    );
    // A task assignee is somebody too.
    ws.maos(&["task", "add", "fix it", "--assign", "erin"])
        .assert_ok();
    ws.maos_as(
        "alice",
        &["msg", "send", "general", "your task", "--to", "erin"],
    )
    .assert_ok();
    // Sent for later: dave reads it when he joins.
    ws.maos_as(
        "alice",
        &[
            "msg",
            "send",
            "general",
            "welcome",
            "--to",
            "dave",
            "--allow-unknown",
        ],
    )
    .assert_ok();
    ws.maos(&["agent", "join", "dave"]).assert_ok();
    let inbox = ws.maos_as("dave", &["--json", "inbox"]).assert_ok().json();
    let payloads: Vec<&str> = inbox
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["payload"].as_str().unwrap())
        .collect();
    assert_eq!(payloads, ["welcome"]);
    // Leaving: the agent is gone, and its role no longer counts.
    ws.maos(&["agent", "leave", "bob"]).assert_ok();
    ws.maos_as(
        "alice",
        &["msg", "send", "general", "hi", "--role", "reviewer"],
    )
    .assert_code(4);
}

#[test]
fn replies_form_a_thread_read_in_order() {
    let ws = TestWorkspace::new();
    for agent in ["alice", "bob"] {
        ws.maos(&["agent", "join", agent]).assert_ok();
    }
    ws.maos_as("alice", &["msg", "send", "design", "shall we use X?"])
        .assert_ok();
    ws.maos_as("bob", &["msg", "send", "design", "unrelated"])
        .assert_ok();
    let reply = ws
        .maos_as(
            "bob",
            &["--json", "msg", "send", "design", "yes", "--reply-to", "1"],
        )
        .assert_ok()
        .json();
    assert_eq!(
        (reply["reply_to"].as_u64(), reply["thread"].as_u64()),
        (Some(1), Some(1))
    );
    let nested = ws
        .maos_as(
            "alice",
            &["--json", "msg", "send", "design", "done", "--reply-to", "3"],
        )
        .assert_ok()
        .json();
    assert_eq!(
        (nested["reply_to"].as_u64(), nested["thread"].as_u64()),
        (Some(3), Some(1))
    );
    for asked in ["1", "3", "4"] {
        let thread = ws
            .maos(&["--json", "msg", "thread", "design", asked])
            .assert_ok()
            .json();
        assert_eq!(maos_tests::seqs(&thread), [1, 3, 4], "thread of #{asked}");
    }
    ws.maos_as("bob", &["msg", "send", "design", "x", "--reply-to", "99"])
        .assert_code(4);
}

#[test]
fn seven_racing_voters_count_once_and_the_outcome_is_announced_once() {
    let ws = TestWorkspace::new();
    ws.init_git(&[("README.md", "hello\n")]);
    maos_tests::git(ws.root(), &["checkout", "-q", "-b", "maos/v0/work"]);
    std::fs::write(ws.root().join("notes.md"), "from v0\n").unwrap();
    maos_tests::git(ws.root(), &["add", "-A"]);
    maos_tests::git(ws.root(), &["commit", "-q", "-m", "notes"]);
    maos_tests::git(ws.root(), &["checkout", "-q", "main"]);
    let voters: Vec<String> = (0..7).map(|i| format!("v{i}")).collect();
    for v in &voters {
        ws.maos(&["agent", "join", v, "--role", "reviewer"])
            .assert_ok();
    }
    let proposal = ws
        .maos_as(
            "lead",
            &[
                "--json",
                "vote",
                "propose",
                "merge v0's notes",
                "--voters",
                "role:reviewer",
            ],
        )
        .assert_ok()
        .json();
    let id = proposal["id"].as_str().unwrap().to_owned();
    assert_eq!(
        (proposal["quorum"].as_u64(), proposal["outcome"].as_str()),
        (Some(4), Some("open"))
    );
    // Every voter casts three times at once (v0–v3 no, the others yes): one vote each
    // counts, the rest are refused — as a second vote, or because the outcome is decided.
    let codes: Vec<i32> = std::thread::scope(|scope| {
        let handles: Vec<_> = voters
            .iter()
            .enumerate()
            .flat_map(|(i, v)| (0..3).map(move |_| (i, v)))
            .map(|(i, v)| {
                let (ws, id) = (&ws, &id);
                scope.spawn(move || {
                    let vote = if i < 4 { "no" } else { "yes" };
                    ws.maos_as(v, &["vote", "cast", id, vote]).code()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(codes.iter().all(|c| *c == 0 || *c == 5), "{codes:?}");
    let standing = ws.maos(&["--json", "vote", "show", &id]).assert_ok().json();
    let ballots = standing["votes"].as_array().unwrap();
    let by_agent: BTreeSet<&str> = ballots
        .iter()
        .map(|b| b["agent"].as_str().unwrap())
        .collect();
    assert_eq!(
        by_agent.len(),
        ballots.len(),
        "an agent's vote counted twice: {standing}"
    );
    assert_eq!(codes.iter().filter(|c| **c == 0).count(), ballots.len());
    let no = ballots.iter().filter(|b| b["yes"] == false).count();
    let yes = ballots.len() - no;
    assert!(no <= 4 && yes <= 3);
    // Decided exactly when the fourth no arrived or, failing that, never approved.
    assert_eq!(
        standing["outcome"],
        if no == 4 { "rejected" } else { "open" }
    );
    let announced = ws
        .maos(&["--json", "msg", "recv", "votes"])
        .assert_ok()
        .json();
    let announcements = announced
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["payload"]["id"] == id.as_str())
        .count();
    assert_eq!(
        announcements,
        usize::from(no == 4),
        "announced once: {announced}"
    );
    // A merge gated on it is refused.
    let refused = ws
        .maos(&[
            "merge",
            "run",
            "maos/v0/work",
            "main",
            "--require-approval",
            &id,
        ])
        .assert_code(5);
    assert!(
        refused.stderr().contains("not approved"),
        "{}",
        refused.stderr()
    );
    // An approved one lets it through.
    let approve = ws
        .maos_as(
            "lead",
            &[
                "--json", "vote", "propose", "again", "--voters", "v5,v6", "--quorum", "2",
            ],
        )
        .assert_ok()
        .json();
    let approve = approve["id"].as_str().unwrap();
    for v in ["v5", "v6"] {
        ws.maos_as(v, &["vote", "cast", approve, "yes", "--reason", "fine"])
            .assert_ok();
    }
    ws.maos_as("v6", &["vote", "cast", approve, "no"])
        .assert_code(5);
    ws.maos(&[
        "merge",
        "run",
        "maos/v0/work",
        "main",
        "--require-approval",
        approve,
    ])
    .assert_ok();
    assert!(ws.root().join("notes.md").exists());
}

#[test]
fn pruning_while_others_send_and_read_leaves_no_silent_gap() {
    use std::process::Stdio;
    let ws = TestWorkspace::new();
    let senders: Vec<_> = (0..2)
        .map(|k| {
            ws.helper_cmd()
                .args(["send", "busy", "1500", &format!("s{k}")])
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let readers: Vec<_> = (0..3)
        .map(|_| {
            ws.helper_cmd()
                .args(["prune-read-loop", "busy", "3000"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    // Two pruners over and over while they work, one keeping the newest 300, the other the
    // newest 1,200: what is pruned only ever grows.
    let mut senders = senders;
    let sending = std::sync::atomic::AtomicBool::new(true);
    let mut prunes = 0;
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while sending.load(std::sync::atomic::Ordering::SeqCst) {
                ws.maos(&["msg", "prune", "busy", "--keep", "1200"])
                    .assert_ok();
            }
        });
        while senders.iter_mut().any(|s| s.try_wait().unwrap().is_none()) {
            ws.maos(&["msg", "prune", "busy", "--keep", "300"])
                .assert_ok();
            prunes += 1;
            std::thread::sleep(Duration::from_millis(50));
        }
        sending.store(false, std::sync::atomic::Ordering::SeqCst);
    });
    ws.maos(&["msg", "prune", "busy", "--keep", "300"])
        .assert_ok();
    for sender in senders {
        assert!(sender.wait_with_output().unwrap().status.success());
    }
    for reader in readers {
        let out = reader.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "a reader met a gap with no marker: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let pruned = ws.record("channels/busy/.pruned").unwrap();
    assert_eq!(pruned["upto"], 2000, "{prunes} prunes: {pruned}");
    if ws.on_files_store() {
        // A prune killed between recording `.pruned` and removing the folders leaves one
        // behind (put back here): readers skip it, and the next prune removes it. (On etcd
        // both are one transaction.)
        let segment = ws.maos_dir().join("channels/busy/000000");
        std::fs::create_dir(&segment).unwrap();
        std::fs::write(segment.join("0000000001.json"), "{}").unwrap();
        ws.maos(&["msg", "recv", "busy", "--after", "2990"])
            .assert_ok();
        ws.maos(&["msg", "prune", "busy", "--keep", "300"])
            .assert_ok();
        assert!(!segment.exists(), "the leftover folder stays");
    }
    // The whole history, archives first: every message once, in order, each sender's in
    // the order it sent them.
    let all = ws
        .maos(&["--json", "msg", "recv", "busy", "--archived"])
        .assert_ok()
        .json();
    assert_eq!(maos_tests::seqs(&all), (1..=3000).collect::<Vec<u64>>());
    for k in ["s0", "s1"] {
        let order: Vec<u64> = all
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["payload"]["tag"] == k)
            .map(|m| m["payload"]["i"].as_u64().unwrap())
            .collect();
        assert_eq!(order, (0..1500).collect::<Vec<u64>>(), "{k}'s messages");
    }
    // A reader behind the pruned point is told, not left with a silent gap.
    let behind = ws
        .maos(&["msg", "recv", "busy", "--after", "10", "--limit", "1"])
        .assert_ok();
    assert!(
        behind.stderr().contains("pruned up to seq 2000") && behind.stdout().contains("#2001"),
        "{} / {}",
        behind.stderr(),
        behind.stdout()
    );
    // Search reads the archives too.
    let found = ws
        .maos(&[
            "--json",
            "msg",
            "search",
            r#""i":\s*7\b"#,
            "--channel",
            "busy",
        ])
        .assert_ok()
        .json();
    assert_eq!(found.as_array().unwrap().len(), 2, "{found}");
}

#[test]
fn a_message_awaiting_an_acknowledgement_is_never_pruned() {
    let ws = TestWorkspace::new();
    ws.maos(&["agent", "join", "bob"]).assert_ok();
    ws.maos_as(
        "alice",
        &[
            "msg",
            "send",
            "ops",
            "please confirm",
            "--to",
            "bob",
            "--ack",
        ],
    )
    .assert_ok();
    let out = ws
        .helper_cmd()
        .args(["send", "ops", "2100", "filler"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let report = ws
        .maos(&["--json", "msg", "prune", "ops", "--keep", "10"])
        .assert_ok()
        .json();
    assert_eq!(report[0]["upto"], 0, "{report}");
    assert!(
        report[0]["kept_because"]
            .as_str()
            .unwrap()
            .contains("#1 awaits")
    );
    ws.maos_as("bob", &["msg", "ack", "ops", "1"]).assert_ok();
    let report = ws
        .maos(&["--json", "msg", "prune", "ops", "--keep", "10"])
        .assert_ok()
        .json();
    assert_eq!(report[0]["upto"], 2000, "{report}");
}

#[test]
fn broken_acknowledgement_and_vote_files_are_named_and_quarantined() {
    let ws = TestWorkspace::new();
    for agent in ["bob", "carol"] {
        ws.maos(&["agent", "join", agent]).assert_ok();
    }
    ws.maos_as(
        "alice",
        &[
            "msg", "send", "ops", "check", "--to", "bob", "--to", "carol", "--ack",
        ],
    )
    .assert_ok();
    ws.maos_as("carol", &["msg", "ack", "ops", "1"]).assert_ok();
    std::fs::write(ws.maos_dir().join("acks/ops/1/bob.json"), "{broken").unwrap();
    let proposal = ws
        .maos_as(
            "alice",
            &["--json", "vote", "propose", "x", "--voters", "bob,carol"],
        )
        .assert_ok()
        .json();
    let id = proposal["id"].as_str().unwrap();
    std::fs::write(ws.maos_dir().join(format!("votes/{id}/carol.json")), "[]").unwrap();
    let report = ws.maos(&["doctor"]).assert_code(1);
    for file in ["acks/ops/1/bob.json", &format!("votes/{id}/carol.json")] {
        assert!(
            report.stdout().contains(file),
            "{file} not named: {}",
            report.stdout()
        );
    }
    ws.maos(&["doctor", "--fix"]).assert_ok();
    ws.maos(&["doctor"]).assert_ok();
    // What was intact still counts; the quarantined acknowledgement is owed again.
    let shown = ws
        .maos(&["--json", "msg", "show", "ops", "1"])
        .assert_ok()
        .json();
    let acked: Vec<bool> = shown["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| !r["ack"].is_null())
        .collect();
    assert_eq!(
        acked,
        [false, true],
        "bob's owed again, carol's kept: {shown}"
    );
    ws.maos_as("carol", &["vote", "cast", id, "yes"])
        .assert_ok();
}

#[test]
fn the_workspace_retention_rule_prunes_as_segments_fill() {
    let ws = TestWorkspace::new();
    let config = ws.maos_dir().join("maos.json");
    let mut settings: Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    settings["message_retention"] = serde_json::json!({"keep": 500});
    std::fs::write(&config, serde_json::to_vec_pretty(&settings).unwrap()).unwrap();
    let out = ws
        .helper_cmd()
        .args(["send", "chatty", "2100", "bot"])
        .output()
        .unwrap();
    assert!(out.status.success());
    // Seq 2001 opened the third segment: the first (up to 1000) was older than the newest
    // 500, the second was not.
    let pruned = ws.record("channels/chatty/.pruned").unwrap();
    assert_eq!(pruned["upto"], 1000);
    let all = ws
        .maos(&["--json", "msg", "recv", "chatty", "--archived"])
        .assert_ok()
        .json();
    assert_eq!(maos_tests::seqs(&all), (1..=2100).collect::<Vec<u64>>());
}

#[test]
fn the_inbox_waits_shows_history_and_search_filters() {
    let ws = TestWorkspace::new();
    for agent in ["bob", "carol"] {
        ws.maos(&["agent", "join", agent]).assert_ok();
    }
    // Nothing yet: --watch waits, and a message from another process wakes it.
    let waiting = ws
        .maos_cmd()
        .args([
            "--agent",
            "bob",
            "--json",
            "inbox",
            "--watch",
            "--timeout",
            "20s",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let sent_at = Instant::now();
    ws.maos_as("carol", &["msg", "send", "dm", "wake up", "--to", "bob"])
        .assert_ok();
    let out = waiting.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(sent_at.elapsed() < Duration::from_secs(10), "woken late");
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got[0]["payload"], "wake up");
    ws.maos_as("bob", &["inbox", "--watch", "--timeout", "300ms"])
        .assert_code(3);
    // A channel that does not exist yet when the wait begins wakes it too, however the
    // sender's steps fall around the watch being set up.
    for round in 0..10 {
        let waiting = ws
            .maos_cmd()
            .args([
                "--agent",
                "bob",
                "--json",
                "inbox",
                "--watch",
                "--timeout",
                "15s",
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(round * 15));
        ws.maos_as(
            "carol",
            &["msg", "send", &format!("new-{round}"), "hi", "--to", "bob"],
        )
        .assert_ok();
        let out = waiting.wait_with_output().unwrap();
        assert!(out.status.success(), "round {round}: not woken");
    }
    // Read already, still in the history.
    let history = ws
        .maos_as("bob", &["--json", "inbox", "--all"])
        .assert_ok()
        .json();
    assert_eq!(history.as_array().unwrap().len(), 11);
    // Search by sender and age.
    ws.maos_as(
        "bob",
        &["msg", "send", "dm", "wake up yourself", "--to", "carol"],
    )
    .assert_ok();
    let status = ws
        .maos_as("carol", &["--json", "status"])
        .assert_ok()
        .json();
    assert_eq!(
        (
            status["inbox"]["unread"].as_u64(),
            status["overdue_acks"].as_u64()
        ),
        (Some(1), Some(0))
    );
    let from_carol = ws
        .maos(&["--json", "msg", "search", "wake", "--from", "carol"])
        .assert_ok()
        .json();
    assert_eq!(from_carol.as_array().unwrap().len(), 1);
    let recent = ws
        .maos(&["--json", "msg", "search", "wake", "--since", "1h"])
        .assert_ok()
        .json();
    assert_eq!(recent.as_array().unwrap().len(), 2);
    let none = ws
        .maos(&["--json", "msg", "search", "wake", "--channel", "elsewhere"])
        .assert_ok()
        .json();
    assert_eq!(none, serde_json::json!([]));
    ws.maos(&["msg", "search", "("]).assert_code(2);
}

#[test]
fn a_proposal_past_its_deadline_expires_once() {
    let ws = TestWorkspace::new();
    let proposal = ws
        .maos_as(
            "lead",
            &[
                "--json",
                "vote",
                "propose",
                "soon",
                "--voters",
                "a,b,c",
                "--deadline",
                "1s",
            ],
        )
        .assert_ok()
        .json();
    let id = proposal["id"].as_str().unwrap();
    assert_eq!(proposal["quorum"], 2, "majority of three");
    ws.maos_as("a", &["vote", "cast", id, "yes"]).assert_ok();
    ws.maos_as("stranger", &["vote", "cast", id, "yes"])
        .assert_code(5);
    std::thread::sleep(Duration::from_millis(1200));
    // Several processes look at once: one decides, all see the same outcome.
    let outcomes: Vec<Value> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| ws.maos(&["--json", "vote", "show", id]).assert_ok().json()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for outcome in &outcomes {
        assert_eq!(outcome["outcome"], "expired");
        assert_eq!(outcome["decided_at"], outcomes[0]["decided_at"]);
    }
    ws.maos_as("b", &["vote", "cast", id, "yes"]).assert_code(5);
    let announced = ws
        .maos(&["--json", "msg", "recv", "votes"])
        .assert_ok()
        .json();
    assert_eq!(announced.as_array().unwrap().len(), 1, "{announced}");
    assert_eq!(announced[0]["payload"]["outcome"], "expired");
}

#[test]
fn concurrent_prunes_never_move_the_pruned_point_back() {
    let ws = TestWorkspace::new();
    let out = ws
        .helper_cmd()
        .args(["send", "log", "5000", "bot"])
        .output()
        .unwrap();
    assert!(out.status.success());
    // Eight prunes at once, each keeping a different number: the pruned point ends where the
    // hungriest one put it, and every pruned message is in a listed archive.
    let keeps = ["3500", "500", "2500", "1500", "3900", "600", "2900", "1100"];
    let pruners: Vec<_> = keeps
        .iter()
        .map(|keep| {
            ws.maos_cmd()
                .args(["msg", "prune", "log", "--keep", keep])
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut pruner in pruners {
        assert!(pruner.wait().unwrap().success());
    }
    let pruned = ws.record("channels/log/.pruned").unwrap();
    assert_eq!(pruned["upto"], 4000, "{pruned}");
    assert_eq!(pruned["archives"].as_array().unwrap().len(), 4, "{pruned}");
    let all = ws
        .maos(&["--json", "msg", "recv", "log", "--archived"])
        .assert_ok()
        .json();
    assert_eq!(maos_tests::seqs(&all), (1..=5000).collect::<Vec<u64>>());
}

/// A direct message its recipient has not read survives a prune — by count or by age (the
/// workspace's automatic retention prunes the same way) — and the prune says why it stopped; once read it can go,
/// and `--drop-unread` prunes it anyway when asked.
#[test]
fn a_prune_never_drops_a_message_its_recipient_has_not_read() {
    let ws = TestWorkspace::new();
    ws.maos_as(
        "alice",
        &[
            "msg",
            "send",
            "general",
            "for carol only",
            "--to",
            "carol",
            "--allow-unknown",
        ],
    )
    .assert_ok();
    let out = ws
        .helper_cmd()
        .args(["send", "general", "2100", "filler"])
        .output()
        .unwrap();
    assert!(out.status.success());
    for rule in [["--keep", "1"], ["--older-than", "0s"]] {
        let report = ws
            .maos(&["--json", "msg", "prune", "general", rule[0], rule[1]])
            .assert_ok()
            .json();
        assert_eq!(report[0]["upto"], 0, "{report}");
        let why = report[0]["kept_because"].as_str().unwrap_or_default();
        assert!(why.contains("#1 is for `carol`"), "{report}");
    }
    // Carol still finds it, as her inbox and her hooks would.
    let inbox = ws
        .maos_as("carol", &["--json", "inbox", "--peek"])
        .assert_ok()
        .json();
    assert!(inbox.to_string().contains("for carol only"), "{inbox}");
    ws.maos_as("carol", &["msg", "show", "general", "1"])
        .assert_ok();

    // Read: it may go.
    ws.maos_as("carol", &["inbox"]).assert_ok();
    let report = ws
        .maos(&["--json", "msg", "prune", "general", "--keep", "1"])
        .assert_ok()
        .json();
    assert!(report[0]["upto"].as_u64().unwrap() >= 1000, "{report}");

    // Another unread one, dropped only when asked.
    let dave = TestWorkspace::new();
    dave.maos_as(
        "alice",
        &[
            "msg",
            "send",
            "ops",
            "for dave",
            "--to",
            "dave",
            "--allow-unknown",
        ],
    )
    .assert_ok();
    let out = dave
        .helper_cmd()
        .args(["send", "ops", "2100", "filler"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let kept = dave
        .maos(&["--json", "msg", "prune", "ops", "--keep", "1"])
        .assert_ok()
        .json();
    assert_eq!(kept[0]["upto"], 0, "{kept}");
    let dropped = dave
        .maos(&[
            "--json",
            "msg",
            "prune",
            "ops",
            "--keep",
            "1",
            "--drop-unread",
        ])
        .assert_ok()
        .json();
    assert!(dropped[0]["upto"].as_u64().unwrap() >= 1000, "{dropped}");
}
