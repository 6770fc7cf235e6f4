//! Merge coordination on real repositories built with the git CLI: invariants M1–M3.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use maos_tests::{TestWorkspace, git_as};
use serde_json::Value;

/// A git repository in a test workspace (`.maos/` is hidden from git).
struct Repo {
    ws: TestWorkspace,
}

/// Ten numbered lines, with `changes` replacing some of them.
fn lines(changes: &[(usize, &str)]) -> String {
    (1..=10)
        .map(|i| {
            changes
                .iter()
                .find(|(n, _)| *n == i)
                .map_or(format!("line {i}\n"), |(_, s)| format!("{s}\n"))
        })
        .collect()
}

impl Repo {
    /// `main` with `a.txt`, `b.txt`, `c.txt` (ten lines each), committed by `planner`.
    fn new() -> Self {
        let ws = TestWorkspace::new();
        let repo = Self { ws };
        repo.git(&["init", "-q", "-b", "main"]);
        repo.git(&["config", "user.name", "merger"]);
        repo.git(&["config", "user.email", "merger@example.invalid"]);
        std::fs::write(repo.root().join(".git/info/exclude"), "/.maos/\n").unwrap();
        repo.commit(
            "planner",
            &[
                ("a.txt", &lines(&[])),
                ("b.txt", &lines(&[])),
                ("c.txt", &lines(&[])),
            ],
            "start",
        );
        repo
    }

    fn root(&self) -> &Path {
        self.ws.root()
    }

    fn git(&self, args: &[&str]) -> String {
        git_as(self.root(), "merger", args)
    }

    /// Writes files (empty content: delete) and commits them as `author` on the current branch.
    fn commit(&self, author: &str, files: &[(&str, &str)], message: &str) {
        for (path, content) in files {
            let file = self.root().join(path);
            if content.is_empty() {
                git_as(self.root(), author, &["rm", "-q", path]);
            } else {
                std::fs::write(&file, content).unwrap();
                git_as(self.root(), author, &["add", path]);
            }
        }
        git_as(self.root(), author, &["commit", "-q", "-m", message]);
    }

    /// Creates `branch` at `from` and commits on it as `author`; returns to `main`.
    fn branch(&self, branch: &str, from: &str, author: &str, files: &[(&str, &str)]) {
        self.git(&["checkout", "-q", "-b", branch, from]);
        self.commit(author, files, &format!("work on {branch}"));
        self.git(&["checkout", "-q", "main"]);
    }

    fn maos(&self, args: &[&str]) -> maos_tests::Run {
        self.ws.maos(args)
    }

    fn prepare(&self, source: &str, target: &str) -> Value {
        self.maos(&["--json", "merge", "prepare", source, target])
            .assert_ok()
            .json()
    }
}

/// Everything `prepare` must not touch: HEAD, every ref, the index file, every work-tree file.
fn repo_state(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut state = BTreeMap::new();
    let refs = git_as(
        root,
        "x",
        &["for-each-ref", "--format=%(refname) %(objectname)"],
    );
    state.insert(PathBuf::from("<refs>"), refs.into_bytes());
    for entry in walk(root) {
        let rel = entry.strip_prefix(root).unwrap().to_owned();
        if rel.starts_with(".maos")
            || rel.starts_with(".git/objects")
            || rel.starts_with(".git/logs")
        {
            continue;
        }
        state.insert(rel, std::fs::read(&entry).unwrap());
    }
    state
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// M3: a clean merge lands exactly as `git merge --no-edit` makes it (tree, parents,
/// message), and the checked-out work tree follows; a fast-forward moves the ref.
#[test]
fn a_clean_merge_matches_git_merge_exactly() {
    let repo = Repo::new();
    repo.branch(
        "maos/alice/parser",
        "main",
        "alice",
        &[("a.txt", &lines(&[(2, "alice's line")]))],
    );
    repo.commit(
        "bob",
        &[("b.txt", &lines(&[(9, "bob's line")]))],
        "bob on main",
    );
    let prep = repo.prepare("maos/alice/parser", "main");
    assert_eq!(prep["strategy"], "clean_merge");
    assert_eq!(prep["conflicts"].as_array().unwrap().len(), 0);
    assert_eq!(
        prep["affected_files"],
        serde_json::json!(["a.txt", "b.txt"])
    );
    assert_eq!(
        prep["agent_modifications"]["alice"],
        serde_json::json!(["a.txt"])
    );
    assert_eq!(
        prep["agent_modifications"]["bob"],
        serde_json::json!(["b.txt"])
    );

    // The same merge by git, in a copy.
    let copy = tempfile::tempdir().unwrap();
    let status = Command::new("cp")
        .args([
            "-a",
            &format!("{}/.", repo.root().display()),
            copy.path().to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(status.success());
    git_as(
        copy.path(),
        "merger",
        &[
            "-c",
            "user.name=merger",
            "merge",
            "-q",
            "--no-edit",
            "maos/alice/parser",
        ],
    );
    let expected_tree = git_as(copy.path(), "x", &["rev-parse", "main^{tree}"]);
    let expected_message = git_as(copy.path(), "x", &["log", "-1", "--format=%B", "main"]);

    let out = repo
        .maos(&["--json", "merge", "run", "maos/alice/parser", "main"])
        .assert_ok()
        .json();
    assert_eq!(out["strategy"], "clean_merge");
    let commit = out["commit"].as_str().unwrap();
    assert_eq!(repo.git(&["rev-parse", "main"]), commit);
    assert_eq!(repo.git(&["rev-parse", "main^{tree}"]), expected_tree);
    assert_eq!(
        repo.git(&["rev-parse", "main^1"]),
        prep["target_commit"].as_str().unwrap()
    );
    assert_eq!(
        repo.git(&["rev-parse", "main^2"]),
        prep["source_commit"].as_str().unwrap()
    );
    assert_eq!(
        repo.git(&["log", "-1", "--format=%B", "main"]),
        expected_message
    );
    // main is checked out here: the work tree and index follow, nothing left half-merged.
    assert_eq!(repo.git(&["status", "--porcelain"]), "");
    assert!(
        std::fs::read_to_string(repo.root().join("a.txt"))
            .unwrap()
            .contains("alice's line")
    );

    // A branch ahead of main fast-forwards.
    repo.branch(
        "maos/carol/docs",
        "main",
        "carol",
        &[("c.txt", &lines(&[(1, "carol")]))],
    );
    assert_eq!(
        repo.prepare("maos/carol/docs", "main")["strategy"],
        "fast_forward"
    );
    repo.maos(&["merge", "run", "maos/carol/docs", "main"])
        .assert_ok();
    assert_eq!(
        repo.git(&["rev-parse", "main"]),
        repo.git(&["rev-parse", "maos/carol/docs"])
    );
    assert_eq!(
        repo.prepare("maos/carol/docs", "main")["strategy"],
        "up_to_date"
    );
    assert_eq!(repo.git(&["status", "--porcelain"]), "");
    repo.maos(&["merge", "prepare", "no-such-branch", "main"])
        .assert_code(4);
}

/// M2: the same lines edited on both sides conflict, naming the file and both agents; edits
/// in distant hunks of one file do not. Modify/delete and add/add are reported.
#[test]
fn real_conflicts_are_found_and_attributed() {
    let repo = Repo::new();
    repo.branch(
        "maos/alice/x",
        "main",
        "alice",
        &[("a.txt", &lines(&[(5, "alice five")]))],
    );
    repo.branch(
        "maos/dan/far",
        "main",
        "dan",
        &[("a.txt", &lines(&[(1, "dan one")]))],
    );
    repo.commit(
        "bob",
        &[("a.txt", &lines(&[(5, "bob five"), (10, "bob ten")]))],
        "bob",
    );
    let prep = repo.prepare("maos/alice/x", "main");
    assert_eq!(prep["strategy"], "needs_resolution");
    let conflict = &prep["conflicts"][0];
    assert_eq!(conflict["path"], "a.txt");
    assert_eq!(conflict["kind"], "content");
    assert_eq!(conflict["agents"], serde_json::json!(["alice", "bob"]));
    assert_eq!(conflict["hunks"].as_array().unwrap().len(), 1);
    let far = repo.prepare("maos/dan/far", "main");
    assert_eq!(far["strategy"], "clean_merge", "{far}");

    // Modify/delete and add/add (the agent named only by a trailer, author is a person).
    repo.git(&["checkout", "-q", "-b", "maos/erin/cleanup", "main"]);
    git_as(repo.root(), "Erin Person", &["rm", "-q", "c.txt"]);
    std::fs::write(repo.root().join("new.txt"), "erin's new file\n").unwrap();
    git_as(repo.root(), "Erin Person", &["add", "new.txt"]);
    git_as(
        repo.root(),
        "Erin Person",
        &["commit", "-q", "-m", "cleanup\n\nMaos-Agent: erin"],
    );
    repo.git(&["checkout", "-q", "main"]);
    repo.commit(
        "bob",
        &[
            ("c.txt", &lines(&[(3, "bob three")])),
            ("new.txt", "bob's new file\n"),
        ],
        "bob again",
    );
    let prep = repo.prepare("maos/erin/cleanup", "main");
    let kinds: BTreeMap<String, String> = prep["conflicts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["path"].as_str().unwrap().to_owned(),
                c["kind"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        kinds["c.txt"], "modified_in_target_deleted_in_source",
        "{prep}"
    );
    assert_eq!(kinds["new.txt"], "add_add", "{prep}");
    assert_eq!(
        prep["agent_modifications"]["erin"],
        serde_json::json!(["c.txt", "new.txt"])
    );
    let run = repo
        .maos(&["merge", "run", "maos/erin/cleanup", "main"])
        .assert_code(5);
    assert!(
        run.stderr().contains("c.txt") && run.stderr().contains("new.txt"),
        "{}",
        run.stderr()
    );
    assert!(
        run.stdout().contains("needs resolution"),
        "{}",
        run.stdout()
    );
}

/// M1: prepare (clean and conflicting, and forecast) leaves HEAD, every ref, the index file
/// and the work tree byte-for-byte unchanged.
#[test]
fn prepare_and_forecast_change_nothing_in_the_repository() {
    let repo = Repo::new();
    repo.branch(
        "maos/alice/x",
        "main",
        "alice",
        &[("a.txt", &lines(&[(5, "alice")]))],
    );
    repo.branch(
        "maos/bob/y",
        "main",
        "bob",
        &[
            ("a.txt", &lines(&[(5, "bob")])),
            ("b.txt", &lines(&[(1, "b")])),
        ],
    );
    // Uncommitted work in the work tree must survive too.
    std::fs::write(repo.root().join("b.txt"), "work in progress\n").unwrap();
    std::fs::write(repo.root().join("untracked.txt"), "scratch\n").unwrap();
    let before = repo_state(repo.root());
    repo.prepare("maos/alice/x", "maos/bob/y");
    repo.prepare("maos/alice/x", "main");
    repo.maos(&["merge", "prepare", "maos/bob/y", "main"])
        .assert_ok();
    repo.maos(&["merge", "forecast"]).assert_ok();
    assert_eq!(repo_state(repo.root()), before);
}

/// M3: two processes merging into the same target at once both land, one after the other,
/// under the merge lock; no commit is lost.
#[test]
fn two_concurrent_merges_into_one_target_both_land() {
    let repo = Repo::new();
    repo.branch(
        "maos/alice/x",
        "main",
        "alice",
        &[("a.txt", &lines(&[(2, "alice")]))],
    );
    repo.branch(
        "maos/bob/y",
        "main",
        "bob",
        &[("b.txt", &lines(&[(2, "bob")]))],
    );
    repo.commit(
        "carol",
        &[("c.txt", &lines(&[(2, "carol")]))],
        "carol on main",
    );
    let children: Vec<_> = ["maos/alice/x", "maos/bob/y"]
        .iter()
        .map(|branch| {
            repo.ws
                .maos_cmd()
                .args(["--json", "merge", "run", branch, "main"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    for out in &outs {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for branch in ["maos/alice/x", "maos/bob/y"] {
        let contained = Command::new("git")
            .args(["merge-base", "--is-ancestor", branch, "main"])
            .current_dir(repo.root())
            .status()
            .unwrap();
        assert!(contained.success(), "{branch} was lost");
    }
    // Two merge commits in a row, the second on top of the first.
    let first: Value = serde_json::from_slice(&outs[0].stdout).unwrap();
    let second: Value = serde_json::from_slice(&outs[1].stdout).unwrap();
    let mut commits = [
        first["commit"].as_str().unwrap(),
        second["commit"].as_str().unwrap(),
    ];
    commits.sort_by_key(|c| {
        repo.git(&["rev-list", "--count", c])
            .parse::<u32>()
            .unwrap()
    });
    assert_eq!(repo.git(&["rev-parse", "main"]), commits[1]);
    assert_eq!(
        repo.git(&["rev-parse", &format!("{}^1", commits[1])]),
        commits[0]
    );
    assert_eq!(repo.git(&["status", "--porcelain"]), "");
    // The merge lock was released.
    assert!(!repo.ws.maos_dir().join("locks/@merge.lock").exists());
}

/// `resolve` files one task per conflicted file to the agent that last touched it on the
/// source side and tells it; `run` waits until they are done, then merges.
#[test]
fn resolve_files_tasks_to_the_right_agents_and_run_waits_for_them() {
    let repo = Repo::new();
    repo.git(&["checkout", "-q", "-b", "maos/alice/feature", "main"]);
    repo.commit(
        "alice",
        &[("a.txt", &lines(&[(5, "alice five")]))],
        "alice a",
    );
    repo.commit(
        "frank",
        &[("b.txt", &lines(&[(5, "frank five")]))],
        "frank b",
    );
    repo.commit(
        "alice",
        &[("b.txt", &lines(&[(5, "alice five")]))],
        "alice b, later",
    );
    repo.commit(
        "frank",
        &[("a.txt", &lines(&[(5, "frank five")]))],
        "frank a, later",
    );
    repo.git(&["checkout", "-q", "main"]);
    repo.commit(
        "bob",
        &[
            ("a.txt", &lines(&[(5, "bob")])),
            ("b.txt", &lines(&[(5, "bob")])),
        ],
        "bob",
    );

    // The authors are registered agents (each ran once): commits are theirs by author name.
    for agent in ["alice", "frank", "bob"] {
        repo.maos(&["--agent", agent, "agent", "run", "--once", "--", "true"])
            .assert_code(4);
    }
    let resolution = repo
        .maos(&[
            "--json",
            "--agent",
            "lead",
            "merge",
            "resolve",
            "maos/alice/feature",
            "main",
        ])
        .assert_ok()
        .json();
    let tasks: BTreeMap<String, (String, String)> = resolution["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["path"].as_str().unwrap().to_owned(),
                (
                    t["task"].as_str().unwrap().to_owned(),
                    t["assignee"].as_str().unwrap().to_owned(),
                ),
            )
        })
        .collect();
    assert_eq!(tasks.len(), 2);
    assert_eq!(
        tasks["a.txt"].1, "frank",
        "last to touch a.txt on the source side"
    );
    assert_eq!(
        tasks["b.txt"].1, "alice",
        "last to touch b.txt on the source side"
    );
    let task = repo
        .maos(&["--json", "task", "show", &tasks["a.txt"].0])
        .assert_ok()
        .json();
    assert!(task["title"].as_str().unwrap().contains("a.txt"));
    let description = task["description"].as_str().unwrap();
    assert!(
        description.contains("lines") && description.contains("alice, bob, frank"),
        "{description}"
    );
    // Each resolver was told.
    let told = repo
        .maos(&[
            "--json", "--agent", "frank", "msg", "recv", "merge", "--mine",
        ])
        .assert_ok()
        .json();
    assert_eq!(told[0]["payload"]["task"], tasks["a.txt"].0.as_str());
    // Filing again keeps the open tasks.
    let again = repo
        .maos(&["--json", "merge", "resolve", "maos/alice/feature", "main"])
        .assert_ok()
        .json();
    assert!(
        again["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["created"] == false)
    );

    let run = repo
        .maos(&["merge", "run", "maos/alice/feature", "main"])
        .assert_code(5);
    assert!(
        run.stderr().contains("resolution tasks"),
        "{}",
        run.stderr()
    );

    // The resolvers fix it on the source branch and finish their tasks.
    repo.git(&["checkout", "-q", "maos/alice/feature"]);
    let merged = Command::new("git")
        .args(["merge", "-q", "main"])
        .current_dir(repo.root())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap();
    assert!(
        !merged.status.success(),
        "the merge was expected to conflict"
    );
    repo.commit(
        "alice",
        &[
            ("a.txt", &lines(&[(5, "resolved five")])),
            ("b.txt", &lines(&[(5, "resolved five")])),
        ],
        "resolve",
    );
    repo.git(&["checkout", "-q", "main"]);
    for (path, (id, agent)) in &tasks {
        repo.maos(&["--agent", agent, "task", "claim", id])
            .assert_ok();
        repo.maos(&[
            "--agent",
            agent,
            "task",
            "done",
            id,
            "--note",
            &format!("resolved {path}"),
        ])
        .assert_ok();
    }
    let out = repo
        .maos(&["--json", "merge", "run", "maos/alice/feature", "main"])
        .assert_ok()
        .json();
    assert_eq!(out["strategy"], "fast_forward");
    assert_eq!(
        repo.git(&["rev-parse", "main"]),
        repo.git(&["rev-parse", "maos/alice/feature"])
    );
    assert!(
        !repo
            .ws
            .maos_dir()
            .join("merge/maos%2Falice%2Ffeature..main.json")
            .exists()
    );
}

/// `forecast` over four agent branches reports exactly the conflicting pairs, announces new
/// ones on the `merge` topic once, and stays quiet when nothing new appears.
#[test]
fn forecast_reports_exactly_the_conflicting_pairs() {
    let repo = Repo::new();
    repo.branch(
        "maos/a/work",
        "main",
        "a",
        &[("a.txt", &lines(&[(3, "a")]))],
    );
    repo.branch(
        "maos/b/work",
        "main",
        "b",
        &[("a.txt", &lines(&[(3, "b")]))],
    );
    repo.branch(
        "maos/c/work",
        "main",
        "c",
        &[
            ("b.txt", &lines(&[(7, "c")])),
            ("a.txt", &lines(&[(9, "c")])),
        ],
    );
    repo.branch(
        "maos/d/work",
        "main",
        "d",
        &[("b.txt", &lines(&[(7, "d")]))],
    );
    repo.branch("other", "main", "e", &[("a.txt", &lines(&[(3, "e")]))]);
    let forecast = repo
        .maos(&["--json", "merge", "forecast"])
        .assert_ok()
        .json();
    assert_eq!(
        forecast["branches"],
        serde_json::json!(["maos/a/work", "maos/b/work", "maos/c/work", "maos/d/work"])
    );
    assert_eq!(
        forecast["conflicts"],
        serde_json::json!([
            {"a": "maos/a/work", "b": "maos/b/work", "files": ["a.txt"]},
            {"a": "maos/c/work", "b": "maos/d/work", "files": ["b.txt"]},
        ])
    );
    let notices = repo
        .maos(&["--json", "msg", "recv", "broadcast/merge"])
        .assert_ok()
        .json();
    assert_eq!(notices.as_array().unwrap().len(), 1);
    let again = repo
        .maos(&["--json", "merge", "forecast"])
        .assert_ok()
        .json();
    assert_eq!(again["new_conflicts"].as_array().unwrap().len(), 0);
    let notices = repo
        .maos(&["--json", "msg", "recv", "broadcast/merge"])
        .assert_ok()
        .json();
    assert_eq!(
        notices.as_array().unwrap().len(),
        1,
        "no new conflict, no new notice"
    );
    // Named branches.
    let named = repo
        .maos(&["--json", "merge", "forecast", "maos/a/work", "other"])
        .assert_ok()
        .json();
    assert_eq!(named["conflicts"][0]["files"], serde_json::json!(["a.txt"]));
    // The same forecast as a picture: a node per branch, an edge per conflicting pair
    // labelled with its files; Graphviz draws it.
    let dot = repo
        .maos(&["merge", "forecast", "--dot"])
        .assert_ok()
        .stdout();
    assert_eq!(dot.matches(" -- ").count(), 2, "{dot}");
    assert!(
        dot.contains(r#""maos/a/work" -- "maos/b/work" [label="a.txt""#),
        "{dot}"
    );
    assert!(dot.contains(r#""maos/c/work" -- "maos/d/work" [label="b.txt""#));
    if crate::pictures::graphviz() {
        crate::pictures::assert_draws(&dot);
        let svg = repo.root().join("forecast.svg");
        repo.maos(&["merge", "forecast", "--svg", svg.to_str().unwrap()])
            .assert_ok();
        assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"));
    }
}

/// A target checked out with uncommitted changes is refused with the files named, and
/// nothing moves; a target checked out in a clean linked work tree is updated there.
#[test]
fn checked_out_targets_are_updated_safely_or_refused() {
    let repo = Repo::new();
    repo.branch(
        "maos/alice/x",
        "main",
        "alice",
        &[("a.txt", &lines(&[(2, "alice")]))],
    );
    repo.commit("bob", &[("b.txt", &lines(&[(2, "bob")]))], "bob");
    std::fs::write(repo.root().join("a.txt"), "uncommitted\n").unwrap();
    let before = repo_state(repo.root());
    let run = repo
        .maos(&["merge", "run", "maos/alice/x", "main"])
        .assert_code(5);
    assert!(
        run.stderr().contains("uncommitted changes (a.txt)"),
        "{}",
        run.stderr()
    );
    assert_eq!(repo_state(repo.root()), before);
    repo.git(&["checkout", "-q", "--", "a.txt"]);

    // `release` is checked out in a linked work tree; the main one stays on main.
    repo.git(&["branch", "release", "main"]);
    let linked = tempfile::tempdir().unwrap();
    let linked_path = linked.path().join("release");
    repo.git(&[
        "worktree",
        "add",
        "-q",
        linked_path.to_str().unwrap(),
        "release",
    ]);
    let out = repo
        .maos(&["--json", "merge", "run", "maos/alice/x", "release"])
        .assert_ok()
        .json();
    assert_eq!(out["strategy"], "clean_merge");
    assert_eq!(
        git_as(&linked_path, "x", &["rev-parse", "HEAD"]),
        out["commit"].as_str().unwrap()
    );
    assert_eq!(git_as(&linked_path, "x", &["status", "--porcelain"]), "");
    let a = std::fs::read_to_string(linked_path.join("a.txt")).unwrap();
    assert!(a.contains("alice"), "{a}");
    assert_eq!(
        repo.git(&["status", "--porcelain"]),
        "",
        "the main work tree was not touched"
    );
}

/// git errors are said once: what MAOS was doing, then libgit2's message (no class and code
/// numbers, no repetition). Snapshots of real failures' stderr keep it so.
#[test]
fn git_errors_are_said_once() {
    let ws = TestWorkspace::new();
    let root = ws.root().display().to_string();
    let no_repo = ws.maos(&["merge", "forecast"]).assert_code(1);
    insta::assert_snapshot!(
        "forecast_outside_a_repository",
        no_repo.stderr().replace(&root, "[WS]")
    );
    let repo = Repo::new();
    let root = repo.ws.root().display().to_string();
    let missing = repo
        .ws
        .maos(&["merge", "prepare", "no-such-branch", "main"])
        .assert_code(4);
    insta::assert_snapshot!(
        "prepare_of_a_missing_branch",
        missing.stderr().replace(&root, "[WS]")
    );
    let root = ws.root().display().to_string();
    let spawn = ws.maos(&["agent", "spawn", "coder-1"]);
    assert_ne!(spawn.code(), 0);
    insta::assert_snapshot!(
        "spawn_outside_a_repository",
        spawn.stderr().replace(&root, "[WS]")
    );
}
