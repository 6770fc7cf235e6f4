//! The pre-commit guard with real `git commit`s, in a linked worktree of a repository whose
//! other agents hold files.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use maos_tests::{TestWorkspace, git, path_with_maos};

/// `git commit -m msg` in `dir` as a person would run it (PATH with `maos`, no MAOS
/// variables), with `env` added.
fn commit(dir: &Path, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new("git");
    cmd.args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
        .args(["commit", "-q", "-m", "change"])
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .env("PATH", path_with_maos())
        .env_remove("MAOS_AGENT_ID")
        .env_remove("MAOS_WORKSPACE")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn change(dir: &Path, file: &str) {
    let path = dir.join(file);
    let before = std::fs::read_to_string(&path).unwrap_or_default();
    std::fs::write(&path, format!("{before}more\n")).unwrap();
    git(dir, &["add", file]);
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The scenario: refused for another agent's exclusively reserved (or locked) file,
/// allowed for its own, unreserved and shared files; the user's own hook still runs;
/// MAOS_GUARD=off and --no-verify bypass it; uninstall restores the user's hook.
#[test]
fn a_commit_in_a_linked_worktree_is_refused_only_for_files_others_hold() {
    let ws = TestWorkspace::new();
    ws.init_git(&[
        ("src/a.rs", "a\n"),
        ("src/b.rs", "b\n"),
        ("docs/x.md", "x\n"),
    ]);
    let root = ws.root();
    let hooks = root.join(".git/hooks");
    let theirs = "#!/bin/sh\necho ran >> \"$(git rev-parse --git-common-dir)/their-hook-ran\"\n";
    std::fs::write(hooks.join("pre-commit"), theirs).unwrap();
    std::fs::set_permissions(
        hooks.join("pre-commit"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();

    let (_place, tree) = ws.spawn_worktree("coder-1", &[]);
    // Installed from the worktree: it lands in the repository's common hooks folder.
    let installed = ws.hook_with(&tree, &["guard", "install"], b"").assert_ok();
    assert!(
        installed
            .stdout()
            .contains(hooks.join("pre-commit").to_str().unwrap()),
        "{}",
        installed.stdout()
    );
    ws.hook_with(&tree, &["guard", "install"], b"").assert_ok();
    assert!(hooks.join("pre-commit.maos-chained").exists());

    ws.maos_as(
        "coder-2",
        &["reserve", "src/a.rs", "--reason", "rewriting the parser"],
    )
    .assert_ok();
    ws.maos_as(
        "coder-3",
        &["lock", "acquire", "docs/x.md", "--purpose", "release notes"],
    )
    .assert_ok();
    ws.maos_as(
        "coder-4",
        &["reserve", "src/new.rs", "--shared", "--reason", "reading"],
    )
    .assert_ok();
    ws.maos_as("coder-1", &["reserve", "src/b.rs"]).assert_ok();
    let ran = || {
        std::fs::read_to_string(root.join(".git/their-hook-ran"))
            .unwrap_or_default()
            .lines()
            .count()
    };

    change(&tree, "src/a.rs");
    let refused = commit(&tree, &[]);
    assert!(!refused.status.success());
    let text = stderr(&refused);
    assert!(
        text.contains("src/a.rs")
            && text.contains("coder-2")
            && text.contains("rewriting the parser"),
        "{text}"
    );
    assert!(text.contains("left"), "time left: {text}");
    assert_eq!(ran(), 0, "a refused commit stops before the user's hook");
    git(&tree, &["reset", "-q", "src/a.rs"]);

    change(&tree, "docs/x.md");
    let text = stderr(&commit(&tree, &[]));
    assert!(
        text.contains("docs/x.md") && text.contains("coder-3"),
        "{text}"
    );
    git(&tree, &["reset", "-q", "docs/x.md"]);

    // Its own reservation, and a new file only shared-reserved by another: allowed.
    change(&tree, "src/b.rs");
    let out = commit(&tree, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(ran(), 1, "the user's own hook ran after the check");
    change(&tree, "src/new.rs");
    assert!(commit(&tree, &[]).status.success());

    // Bypasses.
    change(&tree, "src/a.rs");
    assert!(commit(&tree, &[("MAOS_GUARD", "off")]).status.success());
    change(&tree, "src/a.rs");
    let mut no_verify = Command::new("git");
    no_verify
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.invalid",
            "commit",
            "-q",
            "--no-verify",
            "-m",
            "x",
        ])
        .current_dir(&tree)
        .env("PATH", path_with_maos());
    assert!(no_verify.output().unwrap().status.success());
    // Once coder-2 releases, the commit goes through.
    ws.maos_as("coder-2", &["unreserve", "src/a.rs"])
        .assert_ok();
    change(&tree, "src/a.rs");
    assert!(commit(&tree, &[]).status.success());

    ws.hook_with(&tree, &["guard", "uninstall"], b"")
        .assert_ok();
    assert_eq!(
        std::fs::read_to_string(hooks.join("pre-commit")).unwrap(),
        theirs
    );
    assert!(!hooks.join("pre-commit.maos-chained").exists());
}

/// No `.maos/`: the guard lets every commit through. `core.hooksPath` is honoured.
#[test]
fn the_guard_does_nothing_without_maos_and_honours_core_hooks_path() {
    let repo = tempfile::tempdir().unwrap();
    let dir = repo.path();
    git(dir, &["init", "-q", "-b", "main"]);
    git(dir, &["config", "core.hooksPath", ".githooks"]);
    std::fs::write(dir.join("a.txt"), "a\n").unwrap();
    git(dir, &["add", "a.txt"]);
    let maos = |args: &[&str]| {
        Command::new(maos_tests::maos_bin())
            .args(args)
            .current_dir(dir)
            .env_remove("MAOS_WORKSPACE")
            .env_remove("MAOS_AGENT_ID")
            .output()
            .unwrap()
    };
    assert!(maos(&["guard", "install"]).status.success());
    assert!(dir.join(".githooks/pre-commit").exists());
    let out = commit(dir, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let check = maos(&["guard", "check", "--staged"]);
    assert!(check.status.success());
    assert!(maos(&["guard", "uninstall"]).status.success());
    assert!(!dir.join(".githooks/pre-commit").exists());
}

/// A Claude Code session commits the files its edits leased (the commit speaks for the
/// sessions working in that work tree); another worktree's commit of them is refused.
#[test]
fn an_editor_session_commits_what_it_edited_and_others_cannot() {
    let ws = TestWorkspace::new();
    ws.init_git(&[("src/a.rs", "a\n")]);
    let root = ws.root();
    ws.hook_with(root, &["guard", "install"], b"").assert_ok();
    let session = serde_json::json!({
        "session_id": "5e55105e-0000-4000-8000-000000000001",
        "transcript_path": "/tmp/t.jsonl",
        "cwd": root,
        "hook_event_name": "SessionStart",
        "source": "startup",
    });
    ws.claude_hook(root, "SessionStart", &session).assert_ok();
    let mut edit = session.clone();
    edit["hook_event_name"] = "PreToolUse".into();
    edit["tool_name"] = "Edit".into();
    edit["tool_input"] = serde_json::json!({ "file_path": root.join("src/a.rs"), "old_string": "a", "new_string": "b" });
    let run = ws.claude_hook(root, "PreToolUse", &edit).assert_ok();
    assert!(run.stdout().trim().is_empty(), "{}", run.stdout());

    let (_place, tree) = ws.spawn_worktree("coder-1", &[]);
    change(&tree, "src/a.rs");
    let refused = commit(&tree, &[]);
    assert!(
        stderr(&refused).contains("claude-5e55105e"),
        "{}",
        stderr(&refused)
    );

    change(root, "src/a.rs");
    let out = commit(root, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
}
