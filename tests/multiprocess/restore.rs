//! `maos snapshot restore` leaves a workspace that works, hands out no fencing token or
//! message number twice, and a kill at any point of it leaves a complete `.maos/`.

use std::time::Duration;

use maos_tests::{Lcg, TestWorkspace};

fn snapshot(ws: &TestWorkspace, name: &str) -> String {
    let file = ws.root().join(name);
    ws.maos(&["snapshot", "create", file.to_str().unwrap()])
        .assert_ok();
    file.display().to_string()
}

/// After a restore every kind of write works at once (a snapshot leaves `tmp/` out), and
/// doctor finds — and `--fix` makes again — a folder every workspace has.
#[test]
fn a_restored_workspace_takes_writes_and_doctor_makes_missing_folders() {
    let ws = TestWorkspace::on_files();
    ws.maos(&["task", "add", "before"]).assert_ok();
    let file = snapshot(&ws, "snap.tar.gz");
    ws.maos(&["snapshot", "restore", &file]).assert_ok();
    ws.maos(&["task", "add", "after"]).assert_ok();
    ws.maos(&["msg", "send", "general", "hello"]).assert_ok();
    ws.maos(&["lock", "acquire", "src/a.rs"]).assert_ok();
    ws.maos(&["reserve", "src/b.rs"]).assert_ok();

    // A staging folder removed by hand is made again by the next write.
    std::fs::remove_dir_all(ws.maos_dir().join("tmp")).unwrap();
    ws.maos(&["task", "add", "again"]).assert_ok();
    // Another folder removed by hand: doctor names it, --fix makes it.
    std::fs::remove_dir_all(ws.maos_dir().join("cursors")).unwrap();
    let report = ws.maos(&["--json", "doctor"]).json();
    assert!(report.to_string().contains("cursors"), "{report}");
    ws.maos(&["doctor", "--fix"]).assert_ok();
    assert!(ws.maos_dir().join("cursors").is_dir());
    let healthy = ws.maos(&["--json", "doctor"]).json();
    assert!(!healthy.to_string().contains("is missing"), "{healthy}");
}

/// Tokens 1–4 handed out and messages #1–#3 sent, a snapshot taken after the first of each
/// restored: the next lock's token, the next reservation's and the next message's number all
/// come after the highest handed out before the restore.
#[test]
fn after_a_restore_no_token_or_message_number_is_handed_out_twice() {
    let ws = TestWorkspace::on_files();
    let token = |run: maos_tests::Run| run.json()["token"].as_u64().unwrap();
    let first = token(ws.maos(&["--json", "lock", "acquire", "x"]).assert_ok());
    ws.maos(&["msg", "send", "general", "one"]).assert_ok();
    ws.maos(&["reserve", "src/r.rs"]).assert_ok();
    let file = snapshot(&ws, "snap.tar.gz");
    let mut last = first;
    for _ in 0..3 {
        ws.maos(&["lock", "release", "x"]).assert_ok();
        last = token(ws.maos(&["--json", "lock", "acquire", "x"]).assert_ok());
    }
    assert_eq!(last, first + 3);
    for text in ["two", "three"] {
        ws.maos(&["msg", "send", "general", text]).assert_ok();
    }
    let reserved = ws
        .maos(&["--json", "reserve", "src/s.rs"])
        .assert_ok()
        .json();
    let last_reservation = reserved[0]["token"].as_u64().unwrap();

    ws.maos(&["snapshot", "restore", &file]).assert_ok();
    ws.maos(&["lock", "release", "x"]).assert_ok();
    let after = token(ws.maos(&["--json", "lock", "acquire", "x"]).assert_ok());
    assert!(
        after > last,
        "token {after} after the restore, {last} before it"
    );
    let sent = ws
        .maos(&["--json", "msg", "send", "general", "four"])
        .assert_ok()
        .json();
    assert!(sent["seq"].as_u64().unwrap() > 3, "{sent}");
    let reserved = ws
        .maos(&["--json", "reserve", "src/t.rs"])
        .assert_ok()
        .json();
    assert!(
        reserved[0]["token"].as_u64().unwrap() > last_reservation,
        "{reserved}"
    );
}

/// SIGKILL at random moments of a restore: every time, the workspace that is left opens and
/// is the old state or the restored one, whole.
#[test]
fn a_restore_killed_at_any_point_leaves_a_complete_workspace() {
    let ws = TestWorkspace::on_files();
    ws.maos(&["task", "add", "old state", "--id", "old"])
        .assert_ok();
    let file = snapshot(&ws, "snap.tar.gz");
    ws.maos(&["task", "add", "new state", "--id", "new"])
        .assert_ok();
    let mut rng = Lcg(7);
    for round in 0..25 {
        let mut child = ws
            .maos_cmd()
            .args(["snapshot", "restore", "--force", &file])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(rng.next(40_000) as u64));
        let _ = child.kill();
        let _ = child.wait();
        let listed = ws.maos(&["--json", "task", "list"]).assert_ok().json();
        let text = listed.to_string();
        assert!(text.contains("old state"), "round {round}: {text}");
        // Whichever state it is, it is whole: it verifies and doctor finds nothing broken.
        ws.maos(&["journal", "verify"]).assert_ok();
    }
}
