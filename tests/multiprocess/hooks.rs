//! `maos hook claude`: Claude Code's hook payloads, as its hooks reference documents them,
//! fed to separate `maos` processes for several sessions of one repository.

use std::path::Path;

use maos_tests::{Run, TestWorkspace};
use serde_json::{Value, json};

/// The fields every hook input carries.
fn base(session: &str, cwd: &Path, event: &str) -> Value {
    json!({
        "session_id": session,
        "transcript_path": format!("/home/u/.claude/projects/x/{session}.jsonl"),
        "cwd": cwd,
        "permission_mode": "default",
        "hook_event_name": event,
    })
}

/// A `PreToolUse` input for `tool` on `file`, with that tool's own `tool_input` fields.
fn edit(session: &str, cwd: &Path, tool: &str, file: &Path) -> Value {
    let mut input = base(session, cwd, "PreToolUse");
    input["tool_name"] = tool.into();
    input["tool_use_id"] = "toolu_01ABC".into();
    input["tool_input"] = match tool {
        "Write" => json!({ "file_path": file, "content": "fn main() {}\n" }),
        "MultiEdit" => {
            json!({ "file_path": file, "edits": [{ "old_string": "a", "new_string": "b" }] })
        }
        "NotebookEdit" => {
            json!({ "notebook_path": file, "new_source": "print(1)", "edit_mode": "replace" })
        }
        _ => {
            json!({ "file_path": file, "old_string": "a", "new_string": "b", "replace_all": false })
        }
    };
    input
}

/// The hook's answer on stdout, `Value::Null` when it printed nothing.
fn answer(run: &Run) -> Value {
    let out = run.stdout();
    if out.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
    }
}

fn is_denied(run: &Run) -> bool {
    answer(run)["hookSpecificOutput"]["permissionDecision"] == "deny"
}

fn reason(run: &Run) -> String {
    answer(run)["hookSpecificOutput"]["permissionDecisionReason"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn context(run: &Run) -> String {
    answer(run)["hookSpecificOutput"]["additionalContext"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn reservations(ws: &TestWorkspace) -> Vec<Value> {
    ws.maos(&["--json", "reservations"])
        .assert_ok()
        .json()
        .as_array()
        .unwrap()
        .clone()
}

const A: &str = "aaaa1111-2222-4333-8444-555566667777";
const B: &str = "bbbb1111-2222-4333-8444-555566667777";

/// The scenario: A's edit reserves `src/a.rs`; B's edit of it is denied with A
/// named; B's edit of `src/b.rs` is allowed; A's `Stop` frees it; B's next edit is allowed.
/// Messages reach B once; B's `SessionEnd` makes it leave.
#[test]
fn two_sessions_edit_one_repository_through_the_hooks() {
    let ws = TestWorkspace::new();
    ws.init_git(&[("src/a.rs", "a\n"), ("src/b.rs", "b\n")]);
    let root = ws.root();
    let (a_id, b_id) = ("claude-aaaa1111", "claude-bbbb1111");

    for (session, id) in [(A, a_id), (B, b_id)] {
        let mut start = base(session, root, "SessionStart");
        start["source"] = "startup".into();
        let run = ws.claude_hook(root, "SessionStart", &start).assert_ok();
        assert_eq!(
            answer(&run)["hookSpecificOutput"]["hookEventName"],
            "SessionStart"
        );
        let text = context(&run);
        assert!(text.contains(&format!("`{id}`")), "{text}");
        assert!(text.contains("branch `main`"), "{text}");
        assert!(text.lines().count() <= 40, "{text}");
    }

    let a_rs = root.join("src/a.rs");
    let run = ws
        .claude_hook(root, "PreToolUse", &edit(A, root, "Edit", &a_rs))
        .assert_ok();
    assert_eq!(answer(&run), Value::Null, "an allowed edit says nothing");
    let held = reservations(&ws);
    assert_eq!(held.len(), 1);
    assert_eq!(held[0]["resource"], "src/a.rs");
    assert_eq!(held[0]["owner"], a_id);
    assert_eq!(held[0]["auto"], true);

    for tool in ["Edit", "Write", "MultiEdit"] {
        let run = ws
            .claude_hook(root, "PreToolUse", &edit(B, root, tool, &a_rs))
            .assert_ok();
        assert!(is_denied(&run), "{tool}: {}", run.stdout());
        let why = reason(&run);
        assert!(why.contains(a_id) && why.contains("src/a.rs"), "{why}");
        assert!(why.contains(&format!("--to {a_id}")), "{why}");
    }
    // A relative path, from the session's cwd, is the same file.
    let relative = edit(B, &root.join("src"), "Edit", Path::new("a.rs"));
    assert!(is_denied(
        &ws.claude_hook(root, "PreToolUse", &relative).assert_ok()
    ));
    let b_rs = root.join("src/b.rs");
    let run = ws
        .claude_hook(root, "PreToolUse", &edit(B, root, "Write", &b_rs))
        .assert_ok();
    assert!(!is_denied(&run));
    // A's own edits go on, renewing its lease.
    assert!(!is_denied(&ws.claude_hook(
        root,
        "PreToolUse",
        &edit(A, root, "Edit", &a_rs)
    )));

    // An explicit, longer reservation is not an automatic lease: Stop keeps it.
    ws.maos_as(
        a_id,
        &["reserve", "docs/**", "--ttl", "2h", "--reason", "docs"],
    )
    .assert_ok();
    let mut stop = base(A, root, "Stop");
    stop["stop_hook_active"] = false.into();
    ws.claude_hook(root, "Stop", &stop).assert_ok();
    let left: Vec<String> = reservations(&ws)
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                r["resource"].as_str().unwrap(),
                r["owner"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        left,
        [format!("src/b.rs {b_id}"), format!("docs/** {a_id}")]
    );
    let run = ws
        .claude_hook(root, "PreToolUse", &edit(B, root, "Edit", &a_rs))
        .assert_ok();
    assert!(!is_denied(&run), "A stopped: {}", run.stdout());
    let docs = root.join("docs/guide.md");
    let run = ws
        .claude_hook(root, "PreToolUse", &edit(B, root, "Write", &docs))
        .assert_ok();
    assert!(reason(&run).contains("docs/**"), "{}", run.stdout());

    // Messages addressed to B: once each, whichever hook comes first.
    ws.maos_as(
        "lead",
        &[
            "msg",
            "send",
            "general",
            "please review src/a.rs",
            "--to",
            b_id,
        ],
    )
    .assert_ok();
    ws.maos_as("lead", &["msg", "send", "general", "for everyone"])
        .assert_ok();
    let mut prompt = base(B, root, "UserPromptSubmit");
    prompt["prompt"] = "go on".into();
    let run = ws
        .claude_hook(root, "UserPromptSubmit", &prompt)
        .assert_ok();
    let text = context(&run);
    assert!(
        text.contains("please review src/a.rs") && text.contains("from lead"),
        "{text}"
    );
    assert!(!text.contains("for everyone"), "{text}");
    let mut post = edit(B, root, "Edit", &a_rs);
    post["hook_event_name"] = "PostToolUse".into();
    post["tool_response"] = json!({ "filePath": a_rs, "success": true });
    assert_eq!(
        answer(&ws.claude_hook(root, "PostToolUse", &post).assert_ok()),
        Value::Null
    );
    assert_eq!(
        answer(
            &ws.claude_hook(root, "UserPromptSubmit", &prompt)
                .assert_ok()
        ),
        Value::Null
    );
    ws.maos_as("lead", &["msg", "send", "review", "second", "--to", b_id])
        .assert_ok();
    assert!(context(&ws.claude_hook(root, "PostToolUse", &post).assert_ok()).contains("second"));

    // A hand-damaged inbox position holds back only its own channel, and says so.
    let position = ws.maos_dir().join(format!("inbox/{b_id}/review.json"));
    std::fs::write(&position, "{ damaged").unwrap();
    ws.maos_as("lead", &["msg", "send", "general", "third", "--to", b_id])
        .assert_ok();
    let run = ws.claude_hook(root, "PostToolUse", &post).assert_ok();
    assert!(context(&run).contains("third"), "{}", run.stdout());
    assert!(run.stderr().contains("review.json"), "{}", run.stderr());

    // B's session ends: its automatic leases go, it leaves; A's explicit reservation stays.
    let mut end = base(B, root, "SessionEnd");
    end["reason"] = "prompt_input_exit".into();
    ws.claude_hook(root, "SessionEnd", &end).assert_ok();
    let owners: Vec<Value> = reservations(&ws)
        .iter()
        .map(|r| r["owner"].clone())
        .collect();
    assert_eq!(owners, [json!(a_id)]);
    let agents = ws.maos(&["--json", "agent", "list"]).assert_ok().json();
    let state = |id: &str| {
        agents
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["id"] == id)
            .map(|a| a["state"].clone())
    };
    assert_eq!(state(b_id), Some(json!("gone")));
    assert_eq!(state(a_id), Some(json!("alive")));
}

/// Input the hook cannot use never wedges the session: it says why on stderr and exits 1
/// (Claude Code's non-blocking error), never 2, never a deny, never a panic.
#[test]
fn broken_hook_input_lets_the_session_go_on() {
    let ws = TestWorkspace::new();
    ws.init_git(&[("src/a.rs", "a\n")]);
    let root = ws.root();
    let outside = tempfile::tempdir().unwrap();
    let mut no_tool_input = base(A, root, "PreToolUse");
    no_tool_input["tool_name"] = "Edit".into();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("PreToolUse", b"{\"session_id\": ".to_vec()),
        ("PreToolUse", b"not json at all".to_vec()),
        ("PreToolUse", Vec::new()),
        ("PreToolUse", b"[1, 2]".to_vec()),
        ("PreToolUse", no_tool_input.to_string().into_bytes()),
        ("SessionStart", b"{\"cwd\": 3}".to_vec()),
        (
            "Elsewhere",
            base(A, root, "Elsewhere").to_string().into_bytes(),
        ),
    ];
    for (event, stdin) in cases {
        let run = ws.hook_with(root, &["hook", "claude", event], &stdin);
        assert_eq!(
            run.code(),
            1,
            "{event} {:?}: {}",
            String::from_utf8_lossy(&stdin),
            run.stderr()
        );
        assert!(
            run.stderr().contains("the session goes on"),
            "{}",
            run.stderr()
        );
        assert!(!run.stderr().contains("panicked"), "{}", run.stderr());
        assert!(!is_denied(&run));
    }
    // A file outside the repository, another tool, or a workspace without `.maos/`: the
    // hook says nothing and registers nothing.
    let passwd = edit(A, root, "Write", &outside.path().join("notes.txt"));
    let run = ws.claude_hook(root, "PreToolUse", &passwd).assert_ok();
    assert_eq!(answer(&run), Value::Null);
    let mut bash = base(A, root, "PreToolUse");
    bash["tool_name"] = "Bash".into();
    bash["tool_input"] = json!({ "command": "rm -rf src" });
    assert_eq!(
        answer(&ws.claude_hook(root, "PreToolUse", &bash).assert_ok()),
        Value::Null
    );
    assert!(
        !ws.maos_dir()
            .join("agents")
            .join("claude-aaaa1111.json")
            .exists()
    );
    let bare = tempfile::tempdir().unwrap();
    let in_bare = edit(A, bare.path(), "Edit", &bare.path().join("x.rs"));
    let run = ws
        .claude_hook(bare.path(), "PreToolUse", &in_bare)
        .assert_ok();
    assert_eq!(answer(&run), Value::Null);
    // Files inside .git/ and .maos/ are not repository paths to lease.
    let git_file = edit(A, root, "Write", &root.join(".git/info/exclude"));
    assert_eq!(
        answer(&ws.claude_hook(root, "PreToolUse", &git_file).assert_ok()),
        Value::Null
    );
    assert!(reservations(&ws).is_empty());
}

/// Eight sessions editing one file at the same moment: exactly one gets it.
#[test]
fn racing_sessions_editing_one_file_exactly_one_gets_it() {
    let ws = TestWorkspace::new();
    ws.init_git(&[("src/hot.rs", "x\n")]);
    let root = ws.root().to_owned();
    let file = root.join("src/hot.rs");
    let runs: Vec<Run> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let input = edit(&format!("race{i}-session"), &root, "Edit", &file);
                let (ws, root) = (&ws, &root);
                s.spawn(move || ws.claude_hook(root, "PreToolUse", &input))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let allowed = runs
        .iter()
        .filter(|r| r.code() == 0 && !is_denied(r))
        .count();
    let denied = runs.iter().filter(|r| is_denied(r)).count();
    assert_eq!((allowed, denied), (1, 7));
    let held = reservations(&ws);
    assert_eq!(held.len(), 1);
    let winner = held[0]["owner"].as_str().unwrap().to_owned();
    for run in runs.iter().filter(|r| is_denied(r)) {
        assert!(reason(run).contains(&winner), "{}", reason(run));
    }
}

/// A session in a worktree made by `maos agent spawn` is that agent; the path it edits is
/// relative to its worktree, so the same file in the main checkout is the same claim.
#[test]
fn a_session_in_a_spawned_worktree_acts_as_its_agent() {
    let ws = TestWorkspace::new();
    ws.init_git(&[("src/a.rs", "a\n")]);
    let root = ws.root();
    let (_place, tree) = ws.spawn_worktree("coder-1", &["--role", "coder"]);
    let mut start = base(A, &tree, "SessionStart");
    start["source"] = "startup".into();
    let text = context(&ws.claude_hook(&tree, "SessionStart", &start).assert_ok());
    assert!(text.contains("`coder-1`, role `coder`"), "{text}");
    assert!(text.contains("branch `maos/coder-1/work`"), "{text}");
    let run = ws.claude_hook(
        &tree,
        "PreToolUse",
        &edit(A, &tree, "Edit", &tree.join("src/a.rs")),
    );
    assert!(!is_denied(&run.assert_ok()));
    let held = reservations(&ws);
    assert_eq!(
        (held[0]["resource"].clone(), held[0]["owner"].clone()),
        (json!("src/a.rs"), json!("coder-1"))
    );
    let run = ws.claude_hook(
        root,
        "PreToolUse",
        &edit(B, root, "Edit", &root.join("src/a.rs")),
    );
    assert!(reason(&run.assert_ok()).contains("coder-1"));
    // A session starting where src/a.rs was changed is told who holds it.
    std::fs::write(root.join("src/a.rs"), "changed here\n").unwrap();
    let mut other = base(B, root, "SessionStart");
    other["source"] = "resume".into();
    let text = context(&ws.claude_hook(root, "SessionStart", &other).assert_ok());
    assert!(
        text.contains("Others' claims on files you changed or hold (1):")
            && text.contains("the exclusive reservation `src/a.rs` of `coder-1`"),
        "{text}"
    );
    // A message to its role reaches it.
    ws.maos_as(
        "lead",
        &[
            "msg",
            "send",
            "general",
            "coders: rebase",
            "--role",
            "coder",
        ],
    )
    .assert_ok();
    let mut prompt = base(A, &tree, "UserPromptSubmit");
    prompt["prompt"] = "next".into();
    assert!(
        context(
            &ws.claude_hook(&tree, "UserPromptSubmit", &prompt)
                .assert_ok()
        )
        .contains("coders: rebase")
    );
}

/// `examples/claude-team.sh`, the two-session demo, runs as written (with the test's `maos`)
/// and shows what it says it shows.
#[test]
fn the_claude_team_example_runs_end_to_end() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let out = std::process::Command::new("bash")
        .arg(repo.join("examples/claude-team.sh"))
        .env("MAOS_BIN", maos_tests::maos_bin())
        .env_remove("MAOS_AGENT_ID")
        .env_remove("MAOS_WORKSPACE")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let all = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{all}");
    for expected in [
        "You are MAOS agent `bob`",
        "permissionDecision:\n    deny",
        "the exclusive reservation `src/parser.rs` of `claude-a11ce000`",
        "[general #1] from bob (message, medium): may I change parse()'s signature?",
        "committed src/store.rs",
        "maos guard: this commit changes files other agents hold",
        "deleted (MAOS had created it)",
    ] {
        assert!(all.contains(expected), "{expected:?} missing from:\n{all}");
    }
    assert_eq!(
        all.matches("may I change parse()").count(),
        1,
        "shown once:\n{all}"
    );
}

/// C2 for the inbox: three senders and four hook processes of one session running at the
/// same time — every message addressed to the session reaches it exactly once.
#[test]
fn concurrent_senders_and_hooks_deliver_each_message_exactly_once() {
    let ws = TestWorkspace::new();
    ws.init_git(&[("a.txt", "a\n")]);
    let root = ws.root().to_owned();
    let mut start = base(B, &root, "SessionStart");
    start["source"] = "startup".into();
    ws.claude_hook(&root, "SessionStart", &start).assert_ok();
    let me = "claude-bbbb1111";
    let mut post = base(B, &root, "PostToolUse");
    post["tool_name"] = "Bash".into();
    post["tool_input"] = json!({ "command": "true" });
    post["tool_response"] = json!({});
    let delivered: Vec<String> = std::thread::scope(|s| {
        let senders: Vec<_> = (0..3)
            .map(|k| {
                let ws = &ws;
                s.spawn(move || {
                    for i in 0..20 {
                        let channel = ["general", "review"][i % 2];
                        ws.maos_as(
                            &format!("sender-{k}"),
                            &["msg", "send", channel, &format!("m-{k}-{i}"), "--to", me],
                        )
                        .assert_ok();
                    }
                })
            })
            .collect();
        let takers: Vec<_> = (0..4)
            .map(|_| {
                let (ws, root, post) = (&ws, &root, &post);
                s.spawn(move || {
                    (0..15)
                        .map(|_| context(&ws.claude_hook(root, "PostToolUse", post).assert_ok()))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for sender in senders {
            sender.join().unwrap();
        }
        let mut texts: Vec<String> = takers.into_iter().flat_map(|t| t.join().unwrap()).collect();
        // What arrived after the last take.
        texts.push(context(
            &ws.claude_hook(&root, "PostToolUse", &post).assert_ok(),
        ));
        texts
    });
    let mut got: Vec<String> = delivered
        .iter()
        .flat_map(|text| text.split_whitespace())
        .filter(|word| word.starts_with("m-"))
        .map(str::to_owned)
        .collect();
    got.sort();
    let mut expected: Vec<String> = (0..3)
        .flat_map(|k| (0..20).map(move |i| format!("m-{k}-{i}")))
        .collect();
    expected.sort();
    assert_eq!(got, expected, "every message once");
}

/// Automatic leases and the guard take a file path as that path: `app/[id]/page.tsx` (a
/// Next.js route) holds that file and not `app/i/page.tsx`, and any valid file name — with
/// `,`, `{`, `!`, `*`, `?`, `]`, spaces, non-ASCII — gets a lease that refuses the other
/// session and the other agent's commit.
#[test]
fn file_names_with_glob_characters_are_leased_and_guarded_as_themselves() {
    let ws = TestWorkspace::new();
    let root = ws.root();
    let names = [
        "app/[id]/page.tsx",
        "app/[...slug]/page.tsx",
        "src/a,b.rs",
        "src/{x}.rs",
        "src/!bang.rs",
        "src/a*b?.rs",
        "src/x]y.rs",
        "docs/my notes/é ü.md",
    ];
    for name in names {
        let file = root.join(name);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, "x\n").unwrap();
        let first = ws
            .claude_hook(root, "PreToolUse", &edit("sess-a", root, "Edit", &file))
            .assert_ok();
        assert_eq!(
            answer(&first),
            Value::Null,
            "{name}: the first session may edit it"
        );
        let second = ws
            .claude_hook(root, "PreToolUse", &edit("sess-b", root, "Edit", &file))
            .assert_ok();
        assert_eq!(
            answer(&second)["hookSpecificOutput"]["permissionDecision"],
            "deny",
            "{name}: the second session is refused the file the first leased"
        );
        // The other agent's commit of it is refused; the session's own agent's is not.
        let guard = ws.maos_as("claude-sessb", &["guard", "check", name]);
        assert_ne!(guard.code(), 0, "{name}: {}", guard.stdout());
        ws.maos_as("claude-sessa", &["guard", "check", name])
            .assert_ok();
    }
    // What a glob would have caught is free.
    for free in ["app/i/page.tsx", "src/a.rs", "src/x.rs", "src/axxbz.rs"] {
        let file = root.join(free);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, "x\n").unwrap();
        ws.maos_as("someone-else", &["guard", "check", free])
            .assert_ok();
        let run = ws
            .claude_hook(root, "PreToolUse", &edit("sess-b", root, "Edit", &file))
            .assert_ok();
        assert_eq!(answer(&run), Value::Null, "{free} is nobody's");
    }
}

/// A session whose `cwd` is outside the repository (started in the home folder, say) still
/// has its edits of the repository's files checked: the workspace is found from the file.
#[test]
fn an_edit_is_checked_from_the_files_path_when_the_session_is_outside_the_repository() {
    let ws = TestWorkspace::new();
    let root = ws.root();
    let file = root.join("src/held.rs");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, "x\n").unwrap();
    ws.maos_as("ann", &["reserve", "src/held.rs", "--reason", "ann's"])
        .assert_ok();
    let elsewhere = tempfile::tempdir().unwrap();
    let run = ws
        .claude_hook(
            elsewhere.path(),
            "PreToolUse",
            &edit("sess-out", elsewhere.path(), "Edit", &file),
        )
        .assert_ok();
    let out = answer(&run);
    assert_eq!(
        out["hookSpecificOutput"]["permissionDecision"], "deny",
        "{out}"
    );
    assert!(out.to_string().contains("ann's"), "{out}");
}
