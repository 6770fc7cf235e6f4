//! `maos mcp` against real MCP clients — the official Python SDK (`pip install mcp`) and the
//! official TypeScript SDK (`@modelcontextprotocol/sdk` from npm, run by Node.js); the tests
//! install them when missing — and raw JSON-RPC for malformed requests.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use maos_tests::{TestWorkspace, git, maos_bin};
use serde_json::{Value, json};

/// The Python MCP SDK, installed once if it is missing.
fn ensure_sdk() {
    static READY: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    READY.get_or_init(|| maos_tests::ensure_python_module("mcp.client.stdio", "mcp"));
}

fn client(ws: &TestWorkspace, scenario: &str) -> Command {
    ensure_sdk();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("mcp/client_test.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script)
        .arg(maos_bin())
        .arg(ws.root())
        .arg(scenario)
        .stdin(Stdio::null());
    cmd
}

fn run_client(ws: &TestWorkspace, scenario: &str) {
    let out = client(ws, scenario).output().unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("ok"),
        "python MCP client ({scenario}) failed — is the SDK installed (`python3 -m pip install mcp`)?\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every tool through a real MCP client, checked against what the CLI sees.
#[test]
fn every_tool_works_through_the_python_sdk() {
    let ws = TestWorkspace::new();
    let root = ws.root();
    git(root, &["init", "-q", "-b", "main"]);
    std::fs::write(root.join(".git/info/exclude"), "/.maos/\n").unwrap();
    std::fs::write(root.join("f.txt"), "base\n").unwrap();
    git(root, &["add", "f.txt"]);
    git(root, &["commit", "-q", "-m", "base"]);
    for (branch, text) in [("maos/a/x", "a\n"), ("maos/b/x", "b\n")] {
        git(root, &["checkout", "-q", "-b", branch, "main"]);
        std::fs::write(root.join("f.txt"), text).unwrap();
        git(root, &["commit", "-q", "-am", branch]);
    }
    git(root, &["checkout", "-q", "main"]);
    run_client(&ws, "tools");
    // alice's lock on `held` was bob's; alice's own locks were released when she left.
    let locks = ws.maos(&["--json", "lock", "list"]).assert_ok().json();
    assert!(
        locks
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["owner"] != "alice"),
        "{locks}"
    );
}

/// Two MCP servers for two agents contend for one lock and one task: one wins each.
#[test]
fn two_servers_contend_for_one_lock_and_one_task() {
    let ws = TestWorkspace::new();
    run_client(&ws, "contend");
}

/// Killing the client: its `maos mcp` child sees stdin close, leaves, and the lock is free.
#[test]
fn killing_the_client_releases_the_agents_locks() {
    let ws = TestWorkspace::new();
    let mut child = client(&ws, "hold").stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready", "the client did not get the lock");
    ws.maos(&["lock", "show", "carols-file"]).assert_ok();
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let agents = ws.maos(&["--json", "agent", "list"]).assert_ok().json();
        let gone = agents
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["id"] == "carol" && a["state"] == "gone");
        if gone {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "carol's server did not leave: {agents}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    ws.maos(&["lock", "show", "carols-file"]).assert_code(4);
}

/// Malformed requests get JSON-RPC errors with the right codes; the server keeps serving.
#[test]
fn malformed_requests_get_json_rpc_errors() {
    let ws = TestWorkspace::new();
    let mut server = ws
        .maos_cmd()
        .args(["--agent", "raw", "mcp"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = server.stdin.take().unwrap();
    let mut output = BufReader::new(server.stdout.take().unwrap()).lines();
    // Sends a line; reads the reply when one is due.
    let mut send = |line: &str, reply: bool| -> Value {
        writeln!(input, "{line}").unwrap();
        input.flush().unwrap();
        if reply {
            serde_json::from_str(&output.next().unwrap().unwrap()).unwrap()
        } else {
            Value::Null
        }
    };
    let init = send(
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}"#,
        true,
    );
    assert_eq!(init["result"]["protocolVersion"], "2025-06-18");
    let newer = send(
        r#"{"jsonrpc":"2.0","id":2,"method":"initialize","params":{"protocolVersion":"2099-01-01","capabilities":{}}}"#,
        true,
    );
    assert_eq!(
        newer["result"]["protocolVersion"], "2025-11-25",
        "falls back to its latest"
    );
    for (line, code) in [
        ("this is not json", -32700),
        (
            r#"{"jsonrpc":"2.0","id":3,"method":"no/such/method"}"#,
            -32601,
        ),
        (r#"{"jsonrpc":"1.0","id":4,"method":"ping"}"#, -32600),
        (r#"[]"#, -32600),
        (r#"42"#, -32600),
        (r#"{"jsonrpc":"2.0","id":{"x":1},"method":"ping"}"#, -32600),
        (
            r#"{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"acquire_lock","arguments":"x"}}"#,
            -32602,
        ),
        (
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{}}"#,
            -32602,
        ),
        (
            r#"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"no_such_tool","arguments":{}}}"#,
            -32602,
        ),
    ] {
        let reply = send(line, true);
        assert_eq!(reply["error"]["code"], code, "{line} → {reply}");
    }
    // Arguments that do not fit a tool's schema are tool errors the model sees (MCP
    // 2025-11-25, SEP-1303), naming the argument, of kind `invalid_input`.
    for (arguments, named) in [
        (
            r#"{"name":"acquire_lock","arguments":{"resource":[1]}}"#,
            "`resource` must be a string",
        ),
        (
            r#"{"name":"acquire_lock","arguments":{"resourse":"a"}}"#,
            "`resource` is required",
        ),
        (
            r#"{"name":"acquire_lock","arguments":{"resource":"a","ttl":5}}"#,
            "unknown argument `ttl`",
        ),
        (
            r#"{"name":"wait_for_message","arguments":{"channel":"c","timeout_seconds":-1}}"#,
            "`timeout_seconds` must be between 0 and 120",
        ),
        (
            r#"{"name":"send_message","arguments":{"channel":"c","payload":1,"to":[3]}}"#,
            "`to` must be an array of strings",
        ),
        (
            r#"{"name":"send_message","arguments":{"channel":"c","payload":1,"priority":"urgent"}}"#,
            "`priority` must be one of",
        ),
    ] {
        let line =
            format!(r#"{{"jsonrpc":"2.0","id":12,"method":"tools/call","params":{arguments}}}"#);
        let reply = send(&line, true);
        let result = &reply["result"];
        assert_eq!(result["isError"], true, "{line} → {reply}");
        assert_eq!(
            result["structuredContent"]["error"]["kind"], "invalid_input",
            "{reply}"
        );
        let text = result["content"][0]["text"].as_str().unwrap();
        assert!(text.contains(named), "{text} should say {named}");
    }
    // An operation that fails says its kind: a conflict can be retried, not_found not.
    let held = send(
        r#"{"jsonrpc":"2.0","id":13,"method":"tools/call","params":{"name":"show_task","arguments":{"id":"t-none"}}}"#,
        true,
    );
    assert_eq!(
        held["result"]["structuredContent"]["error"]["kind"], "not_found",
        "{held}"
    );
    // A notification gets no answer; the next request does.
    send(
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        false,
    );
    let pong = send(r#"{"jsonrpc":"2.0","id":9,"method":"ping"}"#, true);
    assert_eq!(pong, json!({"jsonrpc": "2.0", "id": 9, "result": {}}));
    let batch = send(
        r#"[{"jsonrpc":"2.0","id":10,"method":"ping"},{"jsonrpc":"2.0","id":11,"method":"nope"}]"#,
        true,
    );
    assert_eq!(batch[0]["id"], 10);
    assert_eq!(batch[1]["error"]["code"], -32601);
    drop(input);
    assert!(server.wait().unwrap().success());
}

/// The TypeScript SDK's client: two agents' reservations conflict with kind `conflict`, a
/// wrong argument is a tool error naming it, an unknown tool a protocol error.
#[test]
fn the_typescript_sdk_client_drives_the_server() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("mcp/ts");
    if !dir
        .join("node_modules/@modelcontextprotocol/sdk/package.json")
        .exists()
    {
        let installed = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--silent"])
            .current_dir(&dir)
            .output();
        assert!(
            installed.as_ref().is_ok_and(|o| o.status.success()),
            "the TypeScript MCP SDK is missing and `npm install` in {} failed (Node.js and npm are needed): {installed:?}",
            dir.display()
        );
    }
    let ws = TestWorkspace::new();
    let out = Command::new("node")
        .arg(dir.join("client_test.mjs"))
        .env("MAOS_BIN", maos_bin())
        .env("MAOS_WORKSPACE", ws.root())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("ok:"),
        "TypeScript MCP client failed\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
