//! The real clients, out of the box: the pinned npm packages of Claude Code, Codex and
//! Gemini CLI (`tests/clients/package.json`, installed by `.ci/run`), run headless against a
//! scripted model on 127.0.0.1 (`tests/clients/model_server.py`, which answers each request
//! with the next scripted tool call and records what the client sent), after nothing but
//! `maos init` and `maos setup <client>`. Each test has a home of its own (the clients' user
//! settings, `CODEX_HOME`), so nothing of the machine's is read or changed.
//!
//! A client that is not installed fails the test (it never skips): `npm ci --prefix
//! tests/clients` installs them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use maos_tests::{Run, TestWorkspace, git, maos_bin, wait_for};
use serde_json::{Value, json};

/// How long one headless client run may take before the test gives up on it.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(180);

/// The folder of the pinned clients' executables.
fn clients_bin() -> PathBuf {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/node_modules/.bin");
    for client in ["claude", "codex", "gemini"] {
        assert!(
            bin.join(client).exists(),
            "the real `{client}` is not installed: run `npm ci --prefix tests/clients` \
             (.ci/run does)"
        );
    }
    bin
}

/// The scripted model: `tests/clients/model_server.py` on a port of its own.
struct Model {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Model {
    /// Starts it with `script` (session name → steps).
    fn start(script: &Value) -> Model {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("script.json"), script.to_string()).unwrap();
        let server = Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/model_server.py");
        let child = Command::new("python3")
            .arg(server)
            .arg(dir.path().join("script.json"))
            .arg(dir.path().join("record.jsonl"))
            .arg(dir.path().join("port"))
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let port_file = dir.path().join("port");
        wait_for("the scripted model to listen", || port_file.exists());
        let port = std::fs::read_to_string(&port_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        Model { child, dir, port }
    }

    /// The base URL that gives session `name` its script.
    fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/s/{name}", self.port)
    }

    /// Every request session `name` sent, in order.
    fn requests(&self, name: &str) -> Vec<Value> {
        let text =
            std::fs::read_to_string(self.dir.path().join("record.jsonl")).unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|r| r["session"] == name && r["step"].is_number())
            .collect()
    }

    /// The text of the last request session `name` sent: what its model was shown.
    fn last_context(&self, name: &str) -> String {
        self.requests(name)
            .last()
            .map(|r| r["body"].to_string())
            .unwrap_or_else(|| panic!("session {name} sent no request"))
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A user's home for the clients: their user settings, `CODEX_HOME`, Gemini's.
struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Home {
        let home = Home {
            dir: tempfile::tempdir().unwrap(),
        };
        // Codex: a provider for the scripted model (the headless docs' one setting of the
        // model, like an API key); Gemini CLI: API-key auth.
        let codex = home.codex_home();
        std::fs::create_dir_all(&codex).unwrap();
        std::fs::write(
            codex.join("config.toml"),
            "model = \"gpt-5.5\"\nmodel_provider = \"scripted\"\n\n\
             [model_providers.scripted]\nname = \"scripted\"\n\
             base_url = \"http://127.0.0.1:9/unset\"\nwire_api = \"responses\"\n\
             env_key = \"SCRIPTED_KEY\"\n",
        )
        .unwrap();
        let gemini = home.path().join(".gemini");
        std::fs::create_dir_all(&gemini).unwrap();
        std::fs::write(
            gemini.join("settings.json"),
            r#"{"security": {"auth": {"selectedType": "gemini-api-key"}}}"#,
        )
        .unwrap();
        home
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn codex_home(&self) -> PathBuf {
        self.path().join(".codex")
    }

    /// A command with only what a user's shell would give it: PATH (the clients and
    /// `maos`), HOME, CODEX_HOME.
    fn command(&self, program: &Path, dir: &Path) -> Command {
        let maos_dir = maos_bin().parent().unwrap().to_owned();
        let mut cmd = Command::new(program);
        cmd.env_clear()
            .env(
                "PATH",
                format!(
                    "{}:{}:/usr/local/bin:/usr/bin:/bin",
                    clients_bin().display(),
                    maos_dir.display()
                ),
            )
            .env("HOME", self.path())
            .env("CODEX_HOME", self.codex_home())
            .env("LANG", "C.UTF-8")
            .current_dir(dir)
            .stdin(Stdio::null());
        cmd
    }

    /// `maos setup CLIENT` in `dir`, as the user would run it.
    fn setup(&self, dir: &Path, client: &str) -> Run {
        let mut cmd = self.command(&maos_bin(), dir);
        Run(cmd.args(["setup", client]).output().unwrap())
    }

    /// `claude -p` in `dir`, its model session `name`.
    fn claude(&self, model: &Model, name: &str, dir: &Path, args: &[&str]) -> Command {
        let mut cmd = self.command(&clients_bin().join("claude"), dir);
        to_claudes_model(&mut cmd, model, name);
        cmd.args(["-p", "Do the work.", "--output-format", "json"])
            .args(["--permission-mode", "acceptEdits"])
            .args(args);
        cmd
    }

    /// `codex exec` in `dir`, its model session `name`.
    fn codex(&self, model: &Model, name: &str, dir: &Path) -> Command {
        let mut cmd = self.command(&clients_bin().join("codex"), dir);
        cmd.env("SCRIPTED_KEY", "scripted")
            .args(["exec", "--json", "--skip-git-repo-check", "--ephemeral"])
            .args(["-s", "workspace-write", "-c", "approval_policy=\"never\""])
            .arg("-c")
            .arg(format!(
                "model_providers.scripted.base_url=\"{}/v1\"",
                model.url(name)
            ))
            .arg("-C")
            .arg(dir)
            .arg("Do the work.");
        cmd
    }

    /// `gemini -p` in `dir`, its model session `name`.
    fn gemini(&self, model: &Model, name: &str, dir: &Path) -> Command {
        let mut cmd = self.command(&clients_bin().join("gemini"), dir);
        cmd.env("GEMINI_API_KEY", "scripted")
            .env("GOOGLE_GEMINI_BASE_URL", model.url(name))
            .env("GEMINI_TELEMETRY_ENABLED", "false")
            .args(["-p", "Do the work.", "-m", "gemini-2.5-flash"])
            .args(["--approval-mode", "auto_edit", "--output-format", "json"]);
        cmd
    }
}

/// Points Claude Code (or what runs it) at the scripted model's session `name`, quietly.
fn to_claudes_model(cmd: &mut Command, model: &Model, name: &str) {
    cmd.env("ANTHROPIC_BASE_URL", model.url(name))
        .env("ANTHROPIC_API_KEY", "scripted")
        .env("DISABLE_AUTOUPDATER", "1")
        .env("DISABLE_TELEMETRY", "1")
        .env("DISABLE_ERROR_REPORTING", "1")
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1");
}

/// Runs a client to its end (at most [`CLIENT_TIMEOUT`]) and checks it exited 0.
fn finish(mut cmd: Command) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    finish_child(child)
}

fn finish_child(mut child: Child) -> Output {
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("a client ran past {CLIENT_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the client failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn spawn(mut cmd: Command) -> Child {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// A repository with `.maos/` and one file, `src/c.rs`.
fn repository() -> TestWorkspace {
    let ws = TestWorkspace::new();
    ws.init_git(&[("src/c.rs", "fn c() {}\n")]);
    ws
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The live claims (`maos reservations --json`): (pattern, owner, automatic).
fn claims(ws: &TestWorkspace) -> Vec<(String, String, bool)> {
    let listed = ws.maos(&["reservations", "--json"]).assert_ok().json();
    listed
        .as_array()
        .or_else(|| listed["reservations"].as_array())
        .unwrap()
        .iter()
        .filter(|r| r["state"] == "live")
        .map(|r| {
            (
                r["resource"].as_str().unwrap().to_owned(),
                r["owner"].as_str().unwrap().to_owned(),
                r["auto"] == true,
            )
        })
        .collect()
}

/// The ids of the registered agents.
fn agents(ws: &TestWorkspace) -> Vec<String> {
    let listed = ws.maos(&["agent", "list", "--json"]).assert_ok().json();
    let list = listed
        .as_array()
        .or_else(|| listed["agents"].as_array())
        .unwrap()
        .clone();
    list.iter()
        .map(|a| a["id"].as_str().unwrap().to_owned())
        .collect()
}

/// `claude-` and the first eight letters and digits of a session id.
fn claude_agent(session: &str) -> String {
    let short: String = session
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(8)
        .collect();
    format!("claude-{short}")
}

/// Two Claude Code sessions on one repository: while the first is live (its turn waits on
/// a MAOS message, its edit leased) the second's Edit of the same file is refused, naming the
/// first; once the first has stopped, the file is free and the second's edit goes through.
#[test]
fn two_claude_sessions_one_refused_the_others_file_until_it_stops() {
    let ws = repository();
    let home = Home::new();
    home.setup(ws.root(), "claude").assert_ok();
    let file = ws.root().join("src/c.rs");
    let f = file.to_str().unwrap();
    let edit = |old: &str, new: &str| json!({"tool": "Edit", "input": {"file_path": f, "old_string": old, "new_string": new}});
    let model = Model::start(&json!({
        "first": [
            {"tool": "Read", "input": {"file_path": f}},
            edit("fn c() {}", "fn c() { first(); }"),
            {"mcp": "wait_for_message", "input": {"channel": "go", "timeout_seconds": 90}},
            {"text": "done"},
        ],
        "second": [
            {"tool": "Read", "input": {"file_path": f}},
            edit("first();", "second();"),
            {"text": "done"},
        ],
        "again": [
            {"tool": "Read", "input": {"file_path": f}},
            edit("first();", "second();"),
            {"text": "done"},
        ],
    }));
    let first_id = "11111111-aaaa-4aaa-8aaa-000000000001";
    let first_agent = claude_agent(first_id);
    let first = spawn(home.claude(&model, "first", ws.root(), &["--session-id", first_id]));
    wait_for("the first session's lease", || {
        claims(&ws).contains(&("src/c.rs".into(), first_agent.clone(), true))
    });

    finish(home.claude(&model, "second", ws.root(), &[]));
    let refused = model.last_context("second");
    assert!(
        refused.contains("is held by another agent") && refused.contains(&first_agent),
        "the second session was told who holds it: {refused}"
    );
    assert_eq!(
        read(&file),
        "fn c() { first(); }\n",
        "the refused edit did not happen"
    );

    ws.maos(&["msg", "send", "go", "carry on"]).assert_ok();
    finish_child(first);
    assert!(
        !claims(&ws).iter().any(|(p, _, _)| p == "src/c.rs"),
        "its lease ended with its turn: {:?}",
        claims(&ws)
    );
    finish(home.claude(&model, "again", ws.root(), &[]));
    assert_eq!(read(&file), "fn c() { second(); }\n");
}

/// A message for a session reaches its model's context exactly once, however many tool
/// calls (each a PostToolUse hook) the turn makes.
#[test]
fn a_message_reaches_a_claude_sessions_context_exactly_once() {
    let ws = repository();
    let home = Home::new();
    home.setup(ws.root(), "claude").assert_ok();
    let session = "22222222-bbbb-4bbb-8bbb-000000000002";
    let agent = claude_agent(session);
    ws.maos(&[
        "msg",
        "send",
        "general",
        "--to",
        &agent,
        "--allow-unknown",
        "please-review-the-schema-7f3",
    ])
    .assert_ok();
    let f = ws.root().join("src/c.rs");
    let read_step = json!({"tool": "Read", "input": {"file_path": f}});
    let model = Model::start(&json!({
        "s": [read_step, read_step, {"mcp": "progress", "input": {}}, {"text": "done"}],
    }));
    finish(home.claude(&model, "s", ws.root(), &["--session-id", session]));
    let requests = model.requests("s");
    assert_eq!(requests.len(), 4, "one request per step");
    let last = model.last_context("s");
    assert_eq!(
        last.matches("please-review-the-schema-7f3").count(),
        1,
        "the message is in the context once: {last}"
    );
    // A message sent while the session works arrives at its next tool call, once too.
    let inbox = ws
        .maos_as(&agent, &["inbox", "--peek", "--json"])
        .assert_ok();
    assert!(
        !inbox.stdout().contains("please-review"),
        "{}",
        inbox.stdout()
    );
}

/// One Claude Code session is one agent in its hooks and its `maos` tools: what it reserves
/// through `mcp__maos__reserve` it may then edit (an allow rule from `maos setup` lets the
/// tool run), and after `--resume` it is still that agent.
#[test]
fn a_claude_sessions_mcp_reservation_and_its_own_edit_are_one_agent_also_after_resume() {
    let ws = repository();
    std::fs::write(ws.root().join("src/d.rs"), "fn d() {}\n").unwrap();
    let home = Home::new();
    home.setup(ws.root(), "claude").assert_ok();
    let session = "33333333-cccc-4ccc-8ccc-000000000003";
    let agent = claude_agent(session);
    let c = ws.root().join("src/c.rs");
    let d = ws.root().join("src/d.rs");
    let edit = |path: &Path, old: &str, new: &str| json!({"tool": "Edit", "input": {"file_path": path, "old_string": old, "new_string": new}});
    let pad = json!({"text": "(an earlier step)"});
    let model = Model::start(&json!({
        "start": [
            {"mcp": "reserve", "input": {"patterns": ["src/c.rs"], "reason": "schema"}},
            {"tool": "Read", "input": {"file_path": c}},
            edit(&c, "fn c() {}", "fn c() { 1 }"),
            {"text": "done"},
        ],
        // A resumed session's requests carry the first run's three tool results.
        "resumed": [
            pad, pad, pad,
            {"mcp": "reserve", "input": {"patterns": ["src/d.rs"], "reason": "more"}},
            {"tool": "Read", "input": {"file_path": d}},
            edit(&d, "fn d() {}", "fn d() { 2 }"),
            {"mcp": "reservations", "input": {}},
            {"text": "done"},
        ],
    }));
    finish(home.claude(&model, "start", ws.root(), &["--session-id", session]));
    let context = model.last_context("start");
    assert!(
        context.contains(&format!("\\\"owner\\\":\\\"{agent}\\\"")),
        "the reservation is the session's agent's: {context}"
    );
    assert!(!context.contains("held by another agent"), "{context}");
    assert!(
        !context.contains("haven't granted"),
        "the tool was allowed: {context}"
    );
    assert_eq!(
        read(&c),
        "fn c() { 1 }\n",
        "its own reserved file it may edit"
    );

    finish(home.claude(&model, "resumed", ws.root(), &["--resume", session]));
    let context = model.last_context("resumed");
    assert!(!context.contains("held by another agent"), "{context}");
    assert_eq!(read(&d), "fn d() { 2 }\n");
    assert!(
        context.contains(&format!("\\\"owner\\\":\\\"{agent}\\\"")),
        "{context}"
    );
    assert_eq!(agents(&ws), [agent], "no second agent for the MCP server");
}

/// Two Codex sessions race for two tasks through `claim_task`, one in a worktree from
/// `maos agent spawn` (its agent by its worktree), one in the main checkout (its agent by
/// MAOS_AGENT_ID, forwarded to `maos mcp`): each gets a different task and completes it as
/// its own agent.
#[test]
fn two_codex_sessions_race_for_tasks_and_complete_them_as_the_right_agents() {
    let ws = repository();
    let home = Home::new();
    let run = home.setup(ws.root(), "codex").assert_ok();
    assert!(
        run.stdout().contains("Trusted its 5 hook(s)"),
        "{}",
        run.stdout()
    );
    for title in ["first task", "second task"] {
        ws.maos(&["task", "add", title]).assert_ok();
    }
    let (_place, tree) = ws.spawn_worktree("coder-1", &[]);
    let script = json!([
        {"mcp": "claim_task", "input": {}},
        {"mcp": "update_task_status", "input": {
            "id": "${re:\"id\":\\s*\"([^\"]+)\"}", "status": "completed", "note": "done by codex"}},
        {"text": "done"},
    ]);
    let model = Model::start(&json!({"tree": script, "main": script}));
    let in_tree = spawn(home.codex(&model, "tree", &tree));
    let mut main = home.codex(&model, "main", ws.root());
    main.env("MAOS_AGENT_ID", "coder-2");
    let in_main = spawn(main);
    finish_child(in_tree);
    finish_child(in_main);

    let listed = ws.maos(&["task", "list", "--json"]).assert_ok().json();
    let tasks = listed
        .as_array()
        .or_else(|| listed["tasks"].as_array())
        .unwrap()
        .clone();
    let mut done_by: Vec<String> = tasks
        .iter()
        .map(|t| {
            assert_eq!(t["status"], "completed", "{t}");
            t["assignee"].as_str().unwrap_or_default().to_owned()
        })
        .collect();
    done_by.sort();
    assert_eq!(done_by, ["coder-1", "coder-2"], "{listed}");
}

/// A Codex session's `apply_patch` touching a file another live Codex session holds is
/// refused whole (no file of the patch is written), naming the holder — whose own patch of
/// the file it reserved through MCP went through (hooks and tools are one agent, with no
/// MAOS_AGENT_ID). Once the holder has ended, the same patch goes through.
#[test]
fn a_codex_apply_patch_is_refused_on_a_file_another_session_holds() {
    let ws = repository();
    let home = Home::new();
    home.setup(ws.root(), "codex").assert_ok();
    let holder_patch = "*** Begin Patch\n*** Update File: src/c.rs\n@@\n-fn c() {}\n+fn c() { held(); }\n*** End Patch\n";
    let other_patch = "*** Begin Patch\n*** Add File: src/p.rs\n+fn p() {}\n*** Update File: src/c.rs\n@@\n-fn c() { held(); }\n+fn c() { other(); }\n*** End Patch\n";
    let patch = |text: &str| json!({"tool": "apply_patch", "custom": true, "input": text});
    let model = Model::start(&json!({
        "holder": [
            {"mcp": "reserve", "input": {"patterns": ["src/c.rs"], "reason": "refactoring c"}},
            patch(holder_patch),
            {"mcp": "wait_for_message", "input": {"channel": "go", "timeout_seconds": 90}},
            {"text": "done"},
        ],
        "other": [patch(other_patch), {"text": "done"}],
        "later": [patch(other_patch), {"text": "done"}],
    }));
    let holder = spawn(home.codex(&model, "holder", ws.root()));
    let c = ws.root().join("src/c.rs");
    wait_for("the holder's patch", || read(&c).contains("held()"));
    let (_, owner, _) = claims(&ws)
        .into_iter()
        .find(|(p, _, auto)| p == "src/c.rs" && !auto)
        .expect("the holder's reservation");
    assert!(owner.starts_with("codex-"), "{owner}");
    let told = model.requests("holder")[0]["body"].to_string();
    assert!(
        told.contains(&format!(
            "You are MAOS agent `{owner}` (the agent of the codex session of process"
        )) && told.contains("MAOS_AGENT_ID to choose the name"),
        "the model is told who it is and why: {told}"
    );

    finish(home.codex(&model, "other", ws.root()));
    let refused = model.last_context("other");
    assert!(
        refused.contains("blocked by PreToolUse hook")
            && refused.contains("is held by another agent")
            && refused.contains(&owner)
            && refused.contains("refactoring c"),
        "{refused}"
    );
    assert!(
        !ws.root().join("src/p.rs").exists(),
        "no file of the patch was written"
    );
    assert!(read(&c).contains("held()"));

    ws.maos(&["msg", "send", "go", "carry on"]).assert_ok();
    finish_child(holder);
    finish(home.codex(&model, "later", ws.root()));
    assert!(read(&c).contains("other()"), "{}", read(&c));
    assert!(ws.root().join("src/p.rs").exists());
    assert!(
        claims(&ws).is_empty(),
        "leases end at Stop: {:?}",
        claims(&ws)
    );
}

/// A Gemini CLI session: its `maos` tools act as it (what it reserves through
/// `mcp_maos_reserve` it may write), and a write of a file another agent holds is refused
/// naming the holder — with `maos setup gemini` alone (trusted server and folder, hooks).
#[test]
fn a_gemini_session_is_refused_anothers_file_and_its_mcp_tools_act_as_it() {
    let ws = repository();
    let home = Home::new();
    home.setup(ws.root(), "gemini").assert_ok();
    ws.maos_as(
        "carol",
        &["reserve", "src/c.rs", "--reason", "carol's rewrite"],
    )
    .assert_ok();
    let g = ws.root().join("src/g.rs");
    let c = ws.root().join("src/c.rs");
    let model = Model::start(&json!({
        "gem": [
            {"mcp": "reserve", "input": {"patterns": ["src/g.rs"], "reason": "new module"}},
            {"tool": "write_file", "input": {"file_path": g, "content": "fn g() {}\n"}},
            {"tool": "write_file", "input": {"file_path": c, "content": "overwritten\n"}},
            {"text": "done"},
        ],
    }));
    finish(home.gemini(&model, "gem", ws.root()));
    let context = model.last_context("gem");
    assert_eq!(read(&g), "fn g() {}\n", "its own reserved file: {context}");
    assert_eq!(read(&c), "fn c() {}\n", "carol's file was not written");
    assert!(
        context.contains("is held by another agent")
            && context.contains("carol")
            && context.contains("carol's rewrite"),
        "{context}"
    );
    let gemini_agents: Vec<String> = agents(&ws)
        .into_iter()
        .filter(|a| a.starts_with("gemini-"))
        .collect();
    assert_eq!(
        gemini_agents.len(),
        1,
        "hooks and tools are one agent: {gemini_agents:?}"
    );
    assert!(
        context.contains(&format!("\\\"owner\\\": \\\"{}\\\"", gemini_agents[0])),
        "the reservation is the session's: {context}"
    );
}

/// `maos agent run --preset claude --once` with the real Claude Code: one task claimed, the
/// task as the prompt, the file written in the agent's worktree, the task done.
#[test]
fn the_claude_preset_does_one_task_with_the_real_claude() {
    let ws = repository();
    let home = Home::new();
    let (_place, tree) = ws.spawn_worktree("coder-1", &[]);
    ws.maos(&["task", "add", "Write the notes file", "--id", "notes"])
        .assert_ok();
    let notes = tree.join("NOTES.md");
    let model = Model::start(&json!({
        "preset": [
            {"mcp": "show_task", "input": {"id": "notes"}},
            {"tool": "Write", "input": {"file_path": notes, "content": "notes\n"}},
            {"text": "done"},
        ],
    }));
    let mut run = home.command(&maos_bin(), &tree);
    to_claudes_model(&mut run, &model, "preset");
    run.env("MAOS_AGENT_ID", "coder-1")
        .args(["agent", "run", "--preset", "claude", "--once"]);
    finish(run);
    assert_eq!(read(&notes), "notes\n");
    let task = ws
        .maos(&["task", "show", "notes", "--json"])
        .assert_ok()
        .json();
    assert_eq!(task["status"], "completed", "{task}");
    assert_eq!(task["assignee"], "coder-1", "{task}");
    let first = model.requests("preset")[0]["body"].to_string();
    assert!(
        first.contains("Write the notes file"),
        "the task is the prompt"
    );
    let shown = model.last_context("preset");
    assert!(
        shown.contains("\\\"status\\\":\\\"in_progress\\\""),
        "its maos tools see the task it works on: {shown}"
    );
}

/// `maos agent run --preset codex --once` with the real Codex: the task done with an
/// `apply_patch` in the agent's worktree.
#[test]
fn the_codex_preset_does_one_task_with_the_real_codex() {
    let ws = repository();
    let home = Home::new();
    let (_place, tree) = ws.spawn_worktree("coder-2", &[]);
    ws.maos(&["task", "add", "Add the notes file", "--id", "notes"])
        .assert_ok();
    let model = Model::start(&json!({
        "preset": [
            {"mcp": "show_task", "input": {"id": "notes"}},
            {"tool": "apply_patch", "custom": true,
             "input": "*** Begin Patch\n*** Add File: NOTES.md\n+notes\n*** End Patch\n"},
            {"text": "done"},
        ],
    }));
    let config = home.codex_home().join("config.toml");
    let text = read(&config).replace(
        "http://127.0.0.1:9/unset",
        &format!("{}/v1", model.url("preset")),
    );
    std::fs::write(&config, text).unwrap();
    let mut run = home.command(&maos_bin(), &tree);
    run.env("MAOS_AGENT_ID", "coder-2")
        .env("SCRIPTED_KEY", "scripted")
        .args(["agent", "run", "--preset", "codex", "--once"]);
    finish(run);
    assert_eq!(read(&tree.join("NOTES.md")), "notes\n");
    let task = ws
        .maos(&["task", "show", "notes", "--json"])
        .assert_ok()
        .json();
    assert_eq!(task["status"], "completed", "{task}");
    assert_eq!(task["assignee"], "coder-2", "{task}");
    let shown = model.last_context("preset");
    assert!(shown.contains("in_progress"), "{shown}");
    assert!(
        shown.contains("Add the notes file"),
        "the task is the prompt and its tools answer: {shown}"
    );
    let _ = git(&tree, &["status", "--short"]);
}

/// Codex and Gemini CLI get what Claude Code gets: a message for the session reaches its
/// model's context exactly once (at SessionStart, not again at each later tool call).
#[test]
fn a_message_reaches_codex_and_gemini_sessions_exactly_once() {
    let ws = repository();
    let home = Home::new();
    home.setup(ws.root(), "codex").assert_ok();
    home.setup(ws.root(), "gemini").assert_ok();
    let c = ws.root().join("src/c.rs");
    let model = Model::start(&json!({
        "codex": [
            {"mcp": "progress", "input": {}},
            {"mcp": "list_locks", "input": {}},
            {"text": "done"},
        ],
        "gemini": [
            {"tool": "read_file", "input": {"file_path": c}},
            {"mcp": "progress", "input": {}},
            {"text": "done"},
        ],
    }));
    for (session, agent) in [("codex", "coder-3"), ("gemini", "coder-4")] {
        let note = format!("the-api-moved-to-v2-for-{agent}");
        ws.maos(&[
            "msg",
            "send",
            "general",
            "--to",
            agent,
            "--allow-unknown",
            &note,
        ])
        .assert_ok();
        let mut run = if session == "codex" {
            home.codex(&model, session, ws.root())
        } else {
            home.gemini(&model, session, ws.root())
        };
        run.env("MAOS_AGENT_ID", agent);
        finish(run);
        let requests = model.requests(session);
        assert!(
            requests.len() >= 3,
            "{session}: {} requests",
            requests.len()
        );
        let last = model.last_context(session);
        assert_eq!(
            last.matches(&note).count(),
            1,
            "{session}: the message is in the context once: {last}"
        );
    }
}
