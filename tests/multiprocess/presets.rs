//! `maos agent run --preset claude|codex`: a headless coding agent per task, tried with a
//! stand-in executable (`tests/standin/agent-cli`, linked as `claude` and `codex` on PATH)
//! that records its arguments, input and environment and uses the MCP server it is given.

use std::path::Path;

use maos_tests::{Run, TestWorkspace, path_with_maos};
use serde_json::Value;

/// A folder with `claude` and `codex` linked to the stand-in, and a folder for its records.
struct StandIn {
    bin: tempfile::TempDir,
    log: tempfile::TempDir,
}

impl StandIn {
    fn new() -> Self {
        let bin = tempfile::tempdir().unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("standin/agent-cli");
        for name in ["claude", "codex"] {
            std::os::unix::fs::symlink(&script, bin.path().join(name)).unwrap();
        }
        Self {
            bin,
            log: tempfile::tempdir().unwrap(),
        }
    }

    /// `maos --agent AGENT agent run ARGS` from `dir`, with the stand-ins first on PATH.
    fn run(&self, ws: &TestWorkspace, dir: &Path, agent: &str, args: &[&str]) -> Run {
        let mut cmd = ws.maos_cmd();
        cmd.env(
            "PATH",
            format!("{}:{}", self.bin.path().display(), path_with_maos()),
        )
        .env("STANDIN_LOG", self.log.path())
        .env("MAOS_AGENT_ID", agent)
        .current_dir(dir)
        .args(["agent", "run"])
        .args(args);
        Run(cmd.output().unwrap())
    }

    /// What the stand-in recorded for `task`.
    fn record(&self, task: &str) -> Value {
        let text = std::fs::read_to_string(self.log.path().join(format!("{task}.json")))
            .unwrap_or_else(|e| panic!("no record for {task}: {e}"));
        serde_json::from_str(&text).unwrap()
    }
}

/// The claude preset: `claude -p` in the agent's worktree with the task as its prompt —
/// title, description, files and line ranges, the notes of its finished dependency, branch
/// and worktree — and an MCP configuration whose `maos mcp` acts as the agent (a reservation
/// made through it is the agent's) without making it leave.
#[test]
fn the_claude_preset_runs_claude_p_with_the_task_as_prompt_and_maos_mcp() {
    let ws = TestWorkspace::new();
    ws.init_git(&[("src/db.rs", "x\n")]);
    let (_place, tree) = ws.spawn_worktree("coder-1", &[]);
    ws.maos(&["task", "add", "Design the schema", "--id", "schema"])
        .assert_ok();
    ws.maos_as("lead", &["task", "claim", "schema"]).assert_ok();
    ws.maos_as(
        "lead",
        &[
            "task",
            "done",
            "schema",
            "--note",
            "users(id, email) is in migrations/001.sql",
        ],
    )
    .assert_ok();
    ws.maos(&[
        "task",
        "add",
        "Write the user queries",
        "--id",
        "queries",
        "--description",
        "CRUD for users, with tests.",
        "--file",
        "src/db.rs:10-40",
        "--depends-on",
        "schema",
        "--tag",
        "db",
    ])
    .assert_ok();
    let stand_in = StandIn::new();
    let run = stand_in
        .run(
            &ws,
            ws.root(),
            "coder-1",
            &["--preset", "claude", "--until-idle"],
        )
        .assert_ok();
    let record = stand_in.record("queries");
    assert_eq!(record["program"], "claude");
    let args: Vec<&str> = record["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args[0], "-p", "{args:?}");
    let config = args[args.iter().position(|a| *a == "--mcp-config").unwrap() + 1];
    assert!(Path::new(config).starts_with(ws.maos_dir().join("runs/queries")));
    let prompt = record["stdin"].as_str().unwrap();
    for expected in [
        "You are coder-1",
        "Your task queries",
        "Write the user queries",
        "CRUD for users, with tests.",
        "- src/db.rs:10-40",
        "users(id, email) is in migrations/001.sql",
        "on branch maos/coder-1/work",
        tree.to_str().unwrap(),
    ] {
        assert!(prompt.contains(expected), "{expected:?} not in:\n{prompt}");
    }
    assert!(!prompt.contains("{"), "an unfilled placeholder:\n{prompt}");
    assert_eq!(
        Path::new(record["cwd"].as_str().unwrap())
            .canonicalize()
            .unwrap(),
        tree.canonicalize().unwrap()
    );
    assert_eq!(record["env"]["MAOS_TASK_ID"], "queries");
    let reserve = &record["mcp_reserve"];
    assert_eq!(reserve["isError"], false, "{reserve}");
    assert_eq!(
        reserve["structuredContent"]["result"][0]["owner"], "coder-1",
        "{reserve}"
    );
    let task = ws
        .maos(&["--json", "task", "show", "queries"])
        .assert_ok()
        .json();
    assert_eq!(task["status"], "completed", "{}", run.stderr());
}

/// The codex preset: `codex exec … -` with the prompt on stdin and the `maos` server given
/// by `-c` overrides naming the agent; a preset file copied from `preset show` and changed
/// is used as written; a run that fails fails the attempt (exit 1).
#[test]
fn the_codex_preset_and_a_users_own_preset_file() {
    let ws = TestWorkspace::new();
    ws.init_git(&[("a.txt", "a\n")]);
    let (_place, _tree) = ws.spawn_worktree("coder-2", &[]);
    ws.maos(&["task", "add", "Port the parser", "--id", "port"])
        .assert_ok();
    let stand_in = StandIn::new();
    stand_in
        .run(&ws, ws.root(), "coder-2", &["--preset", "codex", "--once"])
        .assert_ok();
    let record = stand_in.record("port");
    assert_eq!(record["program"], "codex");
    let args: Vec<String> = serde_json::from_value(record["args"].clone()).unwrap();
    assert_eq!(args.first().map(String::as_str), Some("exec"));
    assert_eq!(args.last().map(String::as_str), Some("-"));
    let overrides = args.join(" ");
    assert!(
        overrides.contains("mcp_servers.maos.args=[\"mcp\", \"--no-join\"]"),
        "{overrides}"
    );
    assert!(
        overrides.contains("MAOS_AGENT_ID = \"coder-2\""),
        "{overrides}"
    );
    assert!(
        record["stdin"]
            .as_str()
            .unwrap()
            .contains("Port the parser")
    );

    // `preset show` prints a file that works as a preset; the user changes it.
    let shown = ws
        .maos(&["agent", "preset", "show", "claude"])
        .assert_ok()
        .stdout();
    assert!(
        shown.contains("command = [") && shown.contains("{mcp_config}"),
        "{shown}"
    );
    let mine = ws.root().join("my-preset.toml");
    std::fs::write(
        &mine,
        "command = [\"claude\", \"--model\", \"haiku\", \"--task={task_id}\"]\nprompt = \"do {title} STANDIN-FAIL\"\n",
    )
    .unwrap();
    ws.maos(&["task", "add", "Fix the build", "--id", "fix"])
        .assert_ok();
    let failed = stand_in.run(
        &ws,
        ws.root(),
        "coder-2",
        &["--preset", "my-preset.toml", "--once"],
    );
    assert_eq!(failed.code(), 1, "{}", failed.stderr());
    assert!(
        failed.stderr().contains("exited with code 3"),
        "{}",
        failed.stderr()
    );
    let record = stand_in.record("fix");
    assert_eq!(
        record["args"],
        serde_json::json!(["--model", "haiku", "--task=fix"])
    );
    assert_eq!(record["stdin"], "do Fix the build STANDIN-FAIL");

    // Unknown presets and broken preset files are refused before anything is claimed.
    let unknown = stand_in.run(&ws, ws.root(), "coder-2", &["--preset", "gemini", "--once"]);
    assert_eq!(unknown.code(), 4, "{}", unknown.stderr());
    assert!(
        unknown.stderr().contains("`claude`, `codex`"),
        "{}",
        unknown.stderr()
    );
    std::fs::write(&mine, "command = \"claude\"\n").unwrap();
    let broken = stand_in.run(
        &ws,
        ws.root(),
        "coder-2",
        &["--preset", "my-preset.toml", "--once"],
    );
    assert_eq!(broken.code(), 2, "{}", broken.stderr());
    assert!(
        broken.stderr().contains("my-preset.toml"),
        "{}",
        broken.stderr()
    );
    let fix = ws
        .maos(&["--json", "task", "show", "fix"])
        .assert_ok()
        .json();
    assert_eq!(fix["attempts"], 1, "the refused runs claimed nothing");
}
