//! docs/guide.md, run as written: every `sh` block of the guide, in order, in one shell, in a
//! fresh repository — two coders and a reviewer spawned into worktrees, workers run from
//! there, branches merged. Afterwards each agent's commits came to `main` only through
//! `maos merge run`, and each ran on the agent's own branch.

use std::path::Path;
use std::process::Command;

use maos_tests::{git, path_with_maos};

/// The `sh` blocks of a Markdown text, in order.
fn sh_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match current.as_mut() {
            None if line.trim_end() == "```sh" => current = Some(String::new()),
            None => {}
            Some(_) if line.trim_end() == "```" => blocks.extend(current.take()),
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
        }
    }
    blocks
}

#[test]
fn the_guides_walkthrough_runs_as_written() {
    let guide =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/guide.md"))
            .unwrap();
    let blocks = sh_blocks(&guide);
    assert!(blocks.len() >= 8, "{} sh blocks", blocks.len());

    let home = tempfile::tempdir().unwrap();
    let place = tempfile::tempdir().unwrap();
    std::fs::write(
        home.path().join(".gitconfig"),
        "[user]\n\tname = Lead\n\temail = lead@example.invalid\n[init]\n\tdefaultBranch = main\n",
    )
    .unwrap();
    let repo = place.path().join("your-repo");
    std::fs::create_dir(&repo).unwrap();
    let env = |cmd: &mut Command| {
        cmd.env_clear()
            .env("HOME", home.path())
            .env("PATH", path_with_maos())
            .env("GIT_CONFIG_NOSYSTEM", "1");
    };
    let mut init = Command::new("sh");
    env(&mut init);
    let status = init
        .args(["-c", "git init -q && echo '# your repo' > README.md && git add README.md && git commit -q -m start"])
        .current_dir(&repo)
        .status()
        .unwrap();
    assert!(status.success());

    // One shell, every block in order, stopping at the first command that fails.
    let script = format!("set -eu\n{}", blocks.join("\n"));
    let mut shell = Command::new("bash");
    env(&mut shell);
    let out = shell
        .args(["-c", &script])
        .current_dir(place.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the guide's blocks failed:\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );

    // Everything is done, and merged.
    for task in ["schema", "storage", "api", "review"] {
        assert!(
            stdout.contains(&format!("{task} is now completed"))
                || git(&repo, &["log", "--format=%s", "main"]).contains(&format!("{task}:"))
        );
    }
    // main changed only through `maos merge run`, besides the lead's own commits on it: no
    // agent's commit ever landed there directly.
    let reflog = git(&repo, &["reflog", "show", "main", "--format=%gs"]);
    for line in reflog.lines() {
        assert!(
            line.starts_with("merge maos/")
                || [
                    "commit (initial): start",
                    "commit: The agents' task script",
                    "commit: Port 8080"
                ]
                .contains(&line),
            "main moved otherwise: {line}\n{reflog}"
        );
    }
    assert_eq!(
        reflog
            .lines()
            .filter(|l| l.starts_with("merge maos/"))
            .count(),
        3,
        "{reflog}"
    );
    // The conflict was resolved on coder-2's branch, as its task said.
    assert_eq!(
        std::fs::read_to_string(repo.join("config.toml")).unwrap(),
        "port = 9090\n"
    );
    let all = git(&repo, &["log", "--format=%s", "main"]);
    for (task, agent) in [
        ("storage", "coder-1"),
        ("api", "coder-2"),
        ("review", "reviewer"),
    ] {
        assert!(
            all.contains(&format!("{task}: ")),
            "{task} is not on main:\n{all}"
        );
        let note = std::fs::read_to_string(repo.join(format!("notes/{task}.md"))).unwrap();
        assert!(note.contains(&format!("done by {agent}")), "{note}");
        let log =
            std::fs::read_to_string(repo.join(format!(".maos/runs/{task}/attempt-1.log"))).unwrap();
        assert!(
            log.contains(&format!("(branch maos/{agent}/work)")),
            "{task} did not run on {agent}'s branch: {log}"
        );
    }
    // Retired: worktrees and branches gone.
    assert!(!place.path().join("your-repo.worktrees/coder-1").exists());
    assert_eq!(git(&repo, &["branch", "--list", "maos/*"]).trim(), "");
}
