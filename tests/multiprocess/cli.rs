//! The `maos` CLI contract for workspaces and messages: flags, JSON fields, exit codes, and
//! bad input.

use std::process::Command;

use maos_tests::{TestWorkspace, seqs};
use serde_json::Value;

#[test]
fn send_and_recv_follow_the_json_contract() {
    let ws = TestWorkspace::new();
    ws.maos(&["agent", "join", "bob", "--role", "reviewer"])
        .assert_ok();
    let sent = ws
        .maos(&[
            "--json",
            "msg",
            "send",
            "general",
            r#"{"x": 1}"#,
            "--to",
            "bob",
            "--type",
            "note",
            "--priority",
            "high",
        ])
        .assert_ok()
        .json();
    for field in [
        "id",
        "seq",
        "channel",
        "timestamp",
        "sender",
        "recipients",
        "payload",
        "type",
        "priority",
        "metadata",
    ] {
        assert!(sent.get(field).is_some(), "missing {field} in {sent}");
    }
    assert_eq!(sent["seq"], 1);
    assert_eq!(sent["sender"], "tester");
    assert_eq!(sent["payload"], serde_json::json!({"x": 1}));
    assert_eq!(sent["recipients"]["agents"], serde_json::json!(["bob"]));
    ws.maos(&["msg", "send", "general", "plain text"])
        .assert_ok();
    ws.maos(&[
        "msg",
        "send",
        "general",
        "for reviewers",
        "--role",
        "reviewer",
    ])
    .assert_ok();

    let all = ws
        .maos(&["--json", "msg", "recv", "general"])
        .assert_ok()
        .json();
    assert_eq!(all.as_array().unwrap().len(), 3);
    assert_eq!(all[1]["payload"], "plain text");
    let after = ws
        .maos(&["--json", "msg", "recv", "general", "--after", "1"])
        .assert_ok()
        .json();
    assert_eq!(seqs(&after), [2, 3]);
    let limited = ws
        .maos(&["--json", "msg", "recv", "general", "--limit", "1"])
        .assert_ok()
        .json();
    assert_eq!(limited.as_array().unwrap().len(), 1);

    let mine = ws
        .maos(&[
            "--json", "--agent", "bob", "msg", "recv", "general", "--mine",
        ])
        .assert_ok()
        .json();
    assert_eq!(seqs(&mine), [1, 2]);
    let reviewer = ws
        .maos(&[
            "--json",
            "--agent",
            "carol",
            "msg",
            "recv",
            "general",
            "--mine",
            "--my-role",
            "reviewer",
        ])
        .assert_ok()
        .json();
    assert_eq!(seqs(&reviewer), [2, 3]);

    // --new reads past the agent's saved cursor and moves it.
    let first = ws
        .maos(&["--json", "msg", "recv", "general", "--new", "--limit", "2"])
        .assert_ok()
        .json();
    assert_eq!(first.as_array().unwrap().len(), 2);
    let rest = ws
        .maos(&["--json", "msg", "recv", "general", "--new"])
        .assert_ok()
        .json();
    assert_eq!(rest[0]["seq"], 3);
    let none = ws
        .maos(&["--json", "msg", "recv", "general", "--new"])
        .assert_ok()
        .json();
    assert_eq!(none, serde_json::json!([]));
}

#[test]
fn watch_new_follows_and_saves_the_agents_cursor() {
    let ws = TestWorkspace::new();
    for i in 1..=3 {
        ws.maos(&["msg", "send", "jobs", &format!("job {i}")])
            .assert_ok();
    }
    let seqs = |run: maos_tests::Run| -> Vec<u64> {
        run.stdout()
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["seq"]
                    .as_u64()
                    .unwrap()
            })
            .collect()
    };
    let first = ws.maos(&[
        "--json",
        "msg",
        "watch",
        "jobs",
        "--new",
        "--count",
        "2",
        "--timeout",
        "10",
    ]);
    assert_eq!(seqs(first.assert_ok()), [1, 2]);
    let second = ws.maos(&[
        "--json",
        "msg",
        "watch",
        "jobs",
        "--new",
        "--count",
        "1",
        "--timeout",
        "10",
    ]);
    assert_eq!(seqs(second.assert_ok()), [3]);
    ws.maos(&[
        "msg",
        "watch",
        "jobs",
        "--new",
        "--count",
        "1",
        "--timeout",
        "0.2",
    ])
    .assert_code(3);
    let cursor = std::fs::read_to_string(ws.maos_dir().join("cursors/tester/jobs.json")).unwrap();
    assert!(cursor.contains("\"seq\": 3"), "{cursor}");
}

#[test]
fn watch_prints_the_channel_then_follows_unless_told_to_start_at_the_end() {
    let ws = TestWorkspace::new();
    ws.maos(&["msg", "send", "log", "one"]).assert_ok();
    ws.maos(&["msg", "send", "log", "two"]).assert_ok();
    let run = ws
        .maos(&[
            "--json",
            "msg",
            "watch",
            "log",
            "--count",
            "2",
            "--timeout",
            "10",
        ])
        .assert_ok();
    assert_eq!(run.stdout().lines().count(), 2);
    let run = ws
        .maos(&[
            "--json",
            "msg",
            "watch",
            "log",
            "--after",
            "1",
            "--count",
            "1",
            "--timeout",
            "10",
        ])
        .assert_ok();
    assert!(run.stdout().contains("\"two\""));
    let run = ws
        .maos(&[
            "msg",
            "watch",
            "log",
            "--from-end",
            "--count",
            "1",
            "--timeout",
            "0.3",
        ])
        .assert_code(3);
    assert!(
        run.stderr()
            .contains("timed out waiting for messages on `log`"),
        "{}",
        run.stderr()
    );
    ws.maos(&["msg", "watch", "log", "--from-end", "--after", "1"])
        .assert_code(2);
}

#[test]
fn a_channel_without_messages_is_not_an_error() {
    let ws = TestWorkspace::new();
    let run = ws
        .maos(&["--json", "msg", "recv", "nothing-yet"])
        .assert_ok();
    assert_eq!(run.json(), serde_json::json!([]));
    ws.maos(&["msg", "watch", "nothing-yet", "--timeout", "0.2"])
        .assert_code(3);
    ws.maos(&[
        "--json",
        "msg",
        "watch",
        "nothing-yet",
        "--count",
        "1",
        "--timeout",
        "0.1",
    ])
    .assert_code(3);
}

#[test]
fn broadcast_reaches_the_topic_and_the_notice_channel() {
    let ws = TestWorkspace::new();
    let msg = ws
        .maos(&["--json", "msg", "broadcast", "deploy", r#"{"version": 2}"#])
        .assert_ok()
        .json();
    assert_eq!(msg["channel"], "broadcast/deploy");
    let topic = ws
        .maos(&["--json", "msg", "recv", "broadcast/deploy"])
        .assert_ok()
        .json();
    assert_eq!(topic[0]["payload"]["version"], 2);
    let notices = ws
        .maos(&["--json", "msg", "recv", "broadcast/all"])
        .assert_ok()
        .json();
    assert_eq!(notices[0]["metadata"]["topic"], "deploy");
    let channels = ws.maos(&["--json", "msg", "channels"]).assert_ok().json();
    let names: Vec<&str> = channels
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["broadcast/all", "broadcast/deploy"]);
    assert_eq!(channels[1]["messages"], 1);
    let status = ws.maos(&["--json", "status"]).assert_ok().json();
    assert_eq!(status["channels"].as_array().unwrap().len(), 2);
    ws.maos(&["msg", "broadcast", "all", "x"]).assert_code(2);
}

#[test]
fn invalid_names_exit_2_and_write_nothing() {
    let ws = TestWorkspace::new();
    ws.maos(&["msg", "send", "general", "keep me"]).assert_ok();
    let before = ws.snapshot();
    for bad in [
        "../x",
        "",
        "a\u{1}b",
        "a/b",
        "/etc",
        ".hidden",
        "broadcast",
        "broadcast/../../x",
    ] {
        for args in [
            vec!["msg", "send", bad, "payload"],
            vec!["msg", "recv", bad],
            vec!["msg", "watch", bad, "--timeout", "0"],
            vec!["msg", "broadcast", bad, "payload"],
        ] {
            if args[1] == "broadcast" && bad == "broadcast" {
                continue; // a valid topic name: `broadcast/broadcast`
            }
            ws.maos(&args).assert_code(2);
        }
    }
    ws.maos(&["--agent", "../evil", "msg", "send", "general", "x"])
        .assert_code(2);
    ws.maos(&["msg", "send", "general", "x", "--to", "a/b"])
        .assert_code(2);
    ws.maos(&["msg", "send", "general", "x", "--priority", "urgent"])
        .assert_code(2);
    assert_eq!(ws.snapshot(), before, "a refused command changed .maos/");
    assert!(!ws.root().parent().unwrap().join("x").exists());
}

#[test]
fn a_corrupt_message_file_is_named_and_the_others_still_returned() {
    let ws = TestWorkspace::new();
    for i in 1..=3 {
        ws.maos(&["msg", "send", "general", &format!("m{i}")])
            .assert_ok();
    }
    let segment = ws.maos_dir().join("channels/general/000000");
    let victim = std::fs::read_dir(&segment)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("0000000002")
        })
        .unwrap();
    std::fs::write(&victim, "{\n  \"id\": \"truncated").unwrap();
    let run = ws.maos(&["--json", "msg", "recv", "general"]).assert_ok();
    let payloads: Vec<Value> = run
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["payload"].clone())
        .collect();
    assert_eq!(payloads, ["m1", "m3"]);
    let stderr = run.stderr();
    assert!(stderr.contains(victim.to_str().unwrap()), "{stderr}");
    assert!(stderr.contains("line 2, column"), "{stderr}");
    // Sending goes on after the broken file.
    let next = ws
        .maos(&["--json", "msg", "send", "general", "m4"])
        .assert_ok()
        .json();
    assert_eq!(next["seq"], 4);
}

#[test]
fn missing_workspace_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let run = maos_tests::Run(
        Command::new(maos_tests::maos_bin())
            .env_clear()
            .current_dir(dir.path())
            .args(["msg", "recv", "general"])
            .output()
            .unwrap(),
    );
    assert_eq!(run.code(), 1);
    assert!(
        run.stderr().contains("no .maos/ workspace found"),
        "{}",
        run.stderr()
    );
    assert!(
        run.stderr().contains("hint: create one with `maos init`"),
        "{}",
        run.stderr()
    );
}

#[test]
fn a_linked_worktree_shares_the_main_workspace() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("repo");
    std::fs::create_dir(&main).unwrap();
    let git = |cwd: &std::path::Path, args: &[&str]| {
        let out = Command::new("git")
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "-c",
                "init.defaultBranch=main",
            ])
            .args(args)
            .current_dir(cwd)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    };
    git(&main, &["init", "-q"]);
    git(&main, &["commit", "-q", "--allow-empty", "-m", "root"]);
    let maos = |cwd: &std::path::Path, args: &[&str]| {
        maos_tests::Run(
            Command::new(maos_tests::maos_bin())
                .env_clear()
                .env("MAOS_AGENT_ID", "agent-1")
                .current_dir(cwd)
                .args(args)
                .output()
                .unwrap(),
        )
    };
    // init from a subdirectory puts .maos/ at the repository root and hides it from git.
    std::fs::create_dir(main.join("src")).unwrap();
    maos(&main.join("src"), &["init"]).assert_ok();
    assert!(main.join(".maos/maos.json").is_file());
    let exclude = std::fs::read_to_string(main.join(".git/info/exclude")).unwrap();
    assert!(exclude.contains("/.maos/"));

    let linked = dir.path().join("agent-1");
    git(
        &main,
        &[
            "worktree",
            "add",
            "-q",
            "-b",
            "maos/agent-1/work",
            linked.to_str().unwrap(),
        ],
    );
    maos(&linked, &["msg", "send", "general", "from the worktree"]).assert_ok();
    let run = maos(&main, &["--json", "msg", "recv", "general"]).assert_ok();
    assert_eq!(run.json()[0]["payload"], "from the worktree");
    assert!(!linked.join(".maos").exists());
}

/// Shell completions and the manual page come from the CLI definition.
#[test]
fn completions_and_the_manual_page_are_generated() {
    let ws = TestWorkspace::new();
    for shell in ["bash", "zsh", "fish"] {
        let script = ws.maos(&["completions", shell]).assert_ok().stdout();
        assert!(
            script.contains("maos") && script.contains("acquire"),
            "{shell}"
        );
    }
    ws.maos(&["completions", "tcsh"]).assert_code(2);
    let page = ws.maos(&["man"]).assert_ok().stdout();
    assert!(page.contains(".TH maos 1"), "{page}");
}

/// `status --watch` refreshes when `.maos/` changes and quits cleanly on Ctrl-C (SIGINT).
#[test]
fn status_watch_refreshes_on_changes_and_quits_on_ctrl_c() {
    use std::io::{BufRead, BufReader};
    let ws = TestWorkspace::new();
    let mut child = ws
        .maos_cmd()
        .args(["--json", "status", "--watch"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(first["channels"].as_array().unwrap().len(), 0);
    ws.maos(&["msg", "send", "news", "hello"]).assert_ok();
    ws.maos(&["lock", "acquire", "db"]).assert_ok();
    let updated = lines
        .map(|l| serde_json::from_str::<serde_json::Value>(&l.unwrap()).unwrap())
        .find(|v| {
            v["channels"].as_array().unwrap().len() == 1
                && v["locks"].as_array().unwrap().len() == 1
        })
        .unwrap();
    assert_eq!(updated["locks"][0]["owner"], "tester");
    std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
}
