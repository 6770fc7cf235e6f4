//! `maos setup claude|codex`: the user's own settings are kept, MAOS's entries are added
//! once, and `--remove` gives the files back byte for byte.

use std::path::Path;

use maos_tests::{Run, TestWorkspace, maos_bin};
use serde_json::Value;

fn setup(ws: &TestWorkspace, home: &Path, args: &[&str]) -> Run {
    let mut cmd = ws.maos_cmd();
    cmd.env("HOME", home)
        .env("CODEX_HOME", home.join("codex"))
        .arg("setup")
        .args(args);
    Run(cmd.output().unwrap())
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

fn commands(settings: &Value, event: &str) -> Vec<String> {
    settings["hooks"][event]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["hooks"].as_array().unwrap().iter())
        .map(|h| h["command"].as_str().unwrap().to_owned())
        .collect()
}

/// Settings with the user's own hooks, in two layouts (one that round-trips through a JSON
/// writer, one that does not): theirs are kept, ours are added once, `--remove` restores the
/// original bytes.
#[test]
fn setup_claude_keeps_the_users_hooks_and_remove_restores_them_byte_for_byte() {
    let layouts = [
        // Two-space indentation, as Claude Code writes it.
        "{\n  \"model\": \"opus\",\n  \"hooks\": {\n    \"PreToolUse\": [\n      {\n        \"matcher\": \"Bash\",\n        \"hooks\": [\n          {\n            \"type\": \"command\",\n            \"command\": \"./guard.sh\"\n          }\n        ]\n      }\n    ],\n    \"Stop\": []\n  }\n}\n",
        // Hand-written: tabs, inline arrays, no final newline, an escaped slash.
        "{\"hooks\": {\"Stop\": [{\"hooks\": [{\"type\": \"command\", \"command\": \"say done\"}]}]},\n\t\"env\": {\"URL\": \"http:\\/\\/x\"}}",
    ];
    let maos = maos_bin().canonicalize().unwrap().display().to_string();
    for original in layouts {
        let ws = TestWorkspace::new();
        ws.init_git(&[("README.md", "x\n")]);
        let home = tempfile::tempdir().unwrap();
        let settings = ws.root().join(".claude/settings.json");
        std::fs::create_dir_all(settings.parent().unwrap()).unwrap();
        std::fs::write(&settings, original).unwrap();

        setup(&ws, home.path(), &["claude"]).assert_ok();
        let once = read(&settings);
        setup(&ws, home.path(), &["claude", "--project"]).assert_ok();
        assert_eq!(read(&settings), once, "a second run changes nothing");
        let parsed: Value = serde_json::from_str(&once).unwrap();
        for event in [
            "SessionStart",
            "PreToolUse",
            "PostToolUse",
            "UserPromptSubmit",
            "Stop",
            "SessionEnd",
        ] {
            let ours: Vec<String> = commands(&parsed, event)
                .into_iter()
                .filter(|c| c.contains("maos hook claude"))
                .collect();
            assert_eq!(ours, [format!("{maos} hook claude {event}")], "{once}");
        }
        let before: Value = serde_json::from_str(original).unwrap();
        for (event, theirs) in before["hooks"].as_object().unwrap() {
            for group in theirs.as_array().unwrap() {
                assert!(
                    parsed["hooks"][event].as_array().unwrap().contains(group),
                    "{once}"
                );
            }
        }
        let pre = parsed["hooks"]["PreToolUse"].as_array().unwrap();
        assert!(
            pre.iter()
                .any(|g| g["matcher"] == "Edit|Write|MultiEdit|NotebookEdit")
        );
        let servers: Value = serde_json::from_str(&read(&ws.root().join(".mcp.json"))).unwrap();
        assert_eq!(servers["mcpServers"]["maos"]["args"][0], "mcp");
        assert_eq!(servers["mcpServers"]["maos"]["command"], maos.as_str());
        // The allow rule for MAOS's tools is the user's (Claude Code drops an untrusted
        // project's rules).
        let user_settings = home.path().join(".claude/settings.json");
        let user: Value = serde_json::from_str(&read(&user_settings)).unwrap();
        assert_eq!(
            user["permissions"]["allow"],
            serde_json::json!(["mcp__maos"])
        );

        setup(&ws, home.path(), &["claude", "--remove"]).assert_ok();
        assert_eq!(read(&settings), original, "restored byte for byte");
        assert!(
            !ws.root().join(".mcp.json").exists(),
            "MAOS created it: gone again"
        );
        let leftovers: Vec<_> = std::fs::read_dir(settings.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, ["settings.json"]);
        assert!(
            !user_settings.exists(),
            "the rule taken out, the file MAOS made gone"
        );
        // Removing twice is harmless.
        setup(&ws, home.path(), &["claude", "--remove"]).assert_ok();
        assert_eq!(read(&settings), original);
    }
}

/// `--user` writes the user's files; a change the user made meanwhile survives `--remove`;
/// a broken settings file is refused, named, and left as it was.
#[test]
fn setup_claude_user_scope_keeps_later_changes_and_refuses_broken_json() {
    let ws = TestWorkspace::new();
    let home = tempfile::tempdir().unwrap();
    let claude_json = home.path().join(".claude.json");
    std::fs::write(&claude_json, "{\n  \"numStartups\": 3,\n  \"mcpServers\": {\n    \"other\": {\n      \"command\": \"x\"\n    }\n  }\n}\n").unwrap();
    setup(&ws, home.path(), &["claude", "--user"]).assert_ok();
    let settings = home.path().join(".claude/settings.json");
    let added: Value = serde_json::from_str(&read(&settings)).unwrap();
    let maos = maos_bin().canonicalize().unwrap().display().to_string();
    assert_eq!(
        commands(&added, "Stop"),
        [format!("{maos} hook claude Stop")]
    );
    assert_eq!(
        added["permissions"]["allow"],
        serde_json::json!(["mcp__maos"])
    );
    let servers: Value = serde_json::from_str(&read(&claude_json)).unwrap();
    assert!(
        servers["mcpServers"]["other"].is_object() && servers["mcpServers"]["maos"].is_object()
    );
    // Claude Code counts another startup meanwhile.
    std::fs::write(
        &claude_json,
        read(&claude_json).replace("\"numStartups\": 3", "\"numStartups\": 4"),
    )
    .unwrap();
    setup(&ws, home.path(), &["claude", "--user", "--remove"]).assert_ok();
    assert!(!settings.exists());
    assert_eq!(
        read(&claude_json),
        "{\n  \"numStartups\": 4,\n  \"mcpServers\": {\n    \"other\": {\n      \"command\": \"x\"\n    }\n  }\n}\n"
    );

    std::fs::create_dir_all(settings.parent().unwrap()).unwrap();
    std::fs::write(&settings, "{ \"hooks\": ").unwrap();
    let run = setup(&ws, home.path(), &["claude", "--user"]).assert_code(1);
    assert!(
        run.stderr().contains(settings.to_str().unwrap())
            && run.stderr().contains("not valid JSON"),
        "{}",
        run.stderr()
    );
    assert_eq!(read(&settings), "{ \"hooks\": ");
}

/// Codex: `[mcp_servers.maos]` (identity forwarded, tools approved) and MAOS's five hooks
/// are added to config.toml beside the user's own servers, hooks and comments, once;
/// `--remove` restores the file; the AGENTS.md paragraph is printed. Without `codex` on PATH
/// the hooks cannot be trusted, and setup says so.
#[test]
fn setup_codex_adds_the_server_once_and_remove_restores_config_toml() {
    let ws = TestWorkspace::new();
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("codex/config.toml");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    let original = "# my settings\nmodel = \"o3\"   # fast\n\n[mcp_servers.docs]\ncommand = \"docs-server\"\nargs = [\"--stdio\"]\n\n[[hooks.Stop]]\n[[hooks.Stop.hooks]]\ntype = \"command\"\ncommand = \"say done\"\n";
    std::fs::write(&config, original).unwrap();
    let run = setup(&ws, home.path(), &["codex"]).assert_ok();
    assert!(
        run.stdout().contains("AGENTS.md")
            && run.stdout().contains("NOT trusted")
            && run.stdout().contains("default_tools_approval_mode"),
        "{}",
        run.stdout()
    );
    let once = read(&config);
    let maos = maos_bin().canonicalize().unwrap().display().to_string();
    let parsed: toml::Table = toml::from_str(&once).unwrap();
    let server = &parsed["mcp_servers"]["maos"];
    assert_eq!(server["command"].as_str(), Some(maos.as_str()), "{once}");
    assert_eq!(server["args"].as_array().unwrap()[0].as_str(), Some("mcp"));
    assert_eq!(
        server["env_vars"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect::<Vec<_>>(),
        ["MAOS_AGENT_ID", "MAOS_WORKSPACE"]
    );
    assert_eq!(
        server["default_tools_approval_mode"].as_str(),
        Some("approve")
    );
    assert_eq!(
        parsed["mcp_servers"]["docs"]["command"].as_str(),
        Some("docs-server")
    );
    for event in [
        "SessionStart",
        "PreToolUse",
        "PostToolUse",
        "UserPromptSubmit",
        "Stop",
    ] {
        let handlers: Vec<String> = parsed["hooks"][event]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["hooks"].as_array().unwrap().iter())
            .map(|h| h["command"].as_str().unwrap().to_owned())
            .collect();
        let ours = format!("{maos} hook codex {event}");
        assert!(handlers.contains(&ours), "{once}");
        if event == "Stop" {
            assert!(
                handlers.contains(&"say done".to_owned()),
                "the user's hook stays: {once}"
            );
        }
    }
    assert_eq!(
        parsed["hooks"]["PreToolUse"][0]["matcher"].as_str(),
        Some("apply_patch")
    );
    assert!(
        once.starts_with("# my settings\nmodel = \"o3\"   # fast"),
        "{once}"
    );
    setup(&ws, home.path(), &["codex"]).assert_ok();
    assert_eq!(read(&config), once);
    setup(&ws, home.path(), &["codex", "--remove"]).assert_ok();
    assert_eq!(read(&config), original);
    // With no config.toml at all: created, then deleted.
    std::fs::remove_file(&config).unwrap();
    setup(&ws, home.path(), &["codex"]).assert_ok();
    assert!(config.exists());
    setup(&ws, home.path(), &["codex", "--remove"]).assert_ok();
    assert!(!config.exists());
}
