//! `maos ui` where stdout is not a terminal: every pane printed once as plain text, with
//! what the workspace holds.

use maos_tests::TestWorkspace;

#[test]
fn without_a_terminal_the_dashboard_prints_every_pane_as_text() {
    let ws = TestWorkspace::new();
    ws.maos(&["agent", "join", "ann", "--role", "builder"])
        .assert_ok();
    let id = ws
        .maos(&["--json", "task", "add", "write the api"])
        .assert_ok()
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    ws.maos_as("ann", &["task", "claim", &id]).assert_ok();
    ws.maos_as(
        "ann",
        &["lock", "acquire", "src/api.rs", "--purpose", "edit"],
    )
    .assert_ok();
    ws.maos_as("ann", &["msg", "send", "general", "hello team"])
        .assert_ok();
    let out = ws
        .maos_cmd()
        .args(["ui"])
        .env("NO_COLOR", "1")
        .env("COLUMNS", "120")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    for pane in [
        "[1 Agents]",
        "[2 Tasks]",
        "[3 Locks]",
        "[4 Messages]",
        "[5 Merges]",
    ] {
        assert!(text.contains(pane), "{pane} missing:\n{text}");
    }
    for shown in [
        "ann          alive      builder",
        "in_progress",
        "write the api",
        "src/api.rs",
        "#1 ann: hello team",
        "no forecast yet",
    ] {
        assert!(text.contains(shown), "{shown} missing:\n{text}");
    }
    assert!(!text.contains('\u{1b}'), "no escape codes in plain text");
}
