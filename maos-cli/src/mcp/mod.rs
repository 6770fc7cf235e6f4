//! `maos mcp`: MAOS as Model Context Protocol tools, served over stdio.
//!
//! The transport is MCP's stdio transport: one JSON-RPC 2.0 message per line on stdin and
//! stdout (logs go to stderr). The server answers `initialize` (negotiating the protocol
//! version: the client's when it is one we speak, else our latest), `ping`, `tools/list` and
//! `tools/call`; notifications get no answer. Malformed JSON is a parse error (-32700), a
//! message that is not a request an invalid request (-32600), an unknown method -32601, and
//! arguments of the wrong shape invalid params (-32602). A tool that fails (a lock held, a
//! task claimed by another) returns a result with `isError: true` and the same text the CLI
//! prints.
//!
//! The agent identity comes from `--agent` / `MAOS_AGENT_ID`; else, for a server an editor
//! started, it is that editor session's agent — the one its hooks act as
//! ([`session::agent_of_client`]: Claude Code's and Gemini CLI's session id, Codex's own
//! process); else the work tree's agent; else one made from the client's name at
//! `initialize`. The model is told which, and why. The server joins the workspace as that agent (heartbeats included)
//! and leaves — locks released, claimed tasks back in the queue — when stdin closes (the
//! client went away) or on SIGINT/SIGTERM.

mod tools;

use std::io::{BufRead, Write};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use maos_agent::session;
use maos_agent::{Agent, JoinOptions};
use maos_coordination::{Workspace, workspace};
use serde_json::{Value, json};

use crate::args::McpArgs;
use crate::context::Context;
use crate::error::{CliError, Exit};

/// Protocol versions this server speaks, oldest first.
pub const PROTOCOL_VERSIONS: &[&str] = &["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];

/// A JSON-RPC error.
#[derive(Debug)]
pub struct RpcError {
    code: i64,
    message: String,
}

impl RpcError {
    fn new(code: i64, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// -32602: the arguments do not fit the tool's schema.
    pub fn invalid_params(message: impl Into<String>) -> Self {
        Self::new(-32602, message)
    }
}

/// The server's state.
struct Server {
    ws: Workspace,
    agent_id: String,
    agent_given: bool,
    agent: Option<Agent>,
    /// Why the server is that agent, for the model.
    identity: String,
    /// Acts as the agent without joining (its worker runs it).
    no_join: bool,
}

pub fn serve(ctx: &Context, args: &McpArgs) -> Result<(), CliError> {
    let ws = ctx.workspace()?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A signal closes the session: the read below is interrupted and we leave.
        let _ = signal_hook::flag::register(signal, Arc::clone(&stop));
    }
    let mut server = Server {
        ws,
        agent_id: ctx.agent.clone(),
        agent_given: ctx.agent_given,
        agent: None,
        identity: "named by --agent / MAOS_AGENT_ID".to_owned(),
        no_join: args.no_join,
    };
    if server.agent_given && !server.no_join {
        server.join()?;
    }
    // Lines are read on their own thread so that a signal is noticed while stdin is quiet.
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
        // Dropping the sender tells the loop the client is gone.
    });
    while !stop.load(Ordering::SeqCst) {
        let line = match lines.recv_timeout(std::time::Duration::from_millis(200)) {
            Ok(line) => line,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        };
        if line.trim().is_empty() {
            continue;
        }
        if let Some(reply) = server.handle_line(&line)
            && write_line(&reply).is_err()
        {
            break;
        }
    }
    if let Some(agent) = server.agent.take() {
        match agent.leave() {
            Ok(report) => eprintln!(
                "maos mcp: agent `{}` left ({} lock(s) released, {} task(s) returned)",
                server.agent_id,
                report.released_locks.len(),
                report.returned_tasks.len()
            ),
            Err(e) => eprintln!("maos mcp: leaving failed: {e}"),
        }
    }
    Ok(())
}

fn write_line(value: &Value) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{value}")?;
    out.flush()
}

impl Server {
    fn join(&mut self) -> Result<(), CliError> {
        let agent = Agent::join(&self.ws, &self.agent_id, JoinOptions::default())
            .map_err(|e| CliError::new(Exit::from(e.kind()), e))?;
        self.agent = Some(agent);
        Ok(())
    }

    /// Answers one line: a message, or a batch (array) of them. `None` when nothing is due
    /// (notifications).
    fn handle_line(&mut self, line: &str) -> Option<Value> {
        let parsed: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => {
                return Some(error_reply(
                    Value::Null,
                    &RpcError::new(-32700, format!("parse error: {e}")),
                ));
            }
        };
        match parsed {
            Value::Array(batch) if batch.is_empty() => Some(error_reply(
                Value::Null,
                &RpcError::new(-32600, "invalid request: empty batch"),
            )),
            Value::Array(batch) => {
                let replies: Vec<Value> =
                    batch.into_iter().filter_map(|m| self.handle(m)).collect();
                (!replies.is_empty()).then_some(Value::Array(replies))
            }
            message => self.handle(message),
        }
    }

    fn handle(&mut self, message: Value) -> Option<Value> {
        let Value::Object(message) = message else {
            return Some(error_reply(
                Value::Null,
                &RpcError::new(-32600, "invalid request: not an object"),
            ));
        };
        let id = message.get("id").cloned();
        let valid_id = matches!(id, None | Some(Value::String(_) | Value::Number(_)));
        let method = message.get("method").and_then(Value::as_str);
        if message.get("jsonrpc").and_then(Value::as_str) != Some("2.0") || !valid_id {
            return Some(error_reply(
                id.filter(|_| valid_id).unwrap_or(Value::Null),
                &RpcError::new(-32600, "invalid request: expected a JSON-RPC 2.0 message"),
            ));
        }
        let Some(method) = method else {
            // A response to something we never asked: nothing to say.
            return None;
        };
        let params = message.get("params").cloned().unwrap_or(Value::Null);
        let Some(id) = id else {
            // Notifications (initialized, cancelled, …) need no answer.
            return None;
        };
        let result = match method {
            "initialize" => self.initialize(&params),
            "ping" => Ok(json!({})),
            "tools/list" => Ok(json!({ "tools": tools::definitions() })),
            "tools/call" => self.call(&params),
            other => Err(RpcError::new(-32601, format!("method not found: {other}"))),
        };
        Some(match result {
            Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
            Err(e) => error_reply(id, &e),
        })
    }

    fn initialize(&mut self, params: &Value) -> Result<Value, RpcError> {
        let requested = params.get("protocolVersion").and_then(Value::as_str);
        let version = match requested {
            Some(v) if PROTOCOL_VERSIONS.contains(&v) => v,
            _ => PROTOCOL_VERSIONS[PROTOCOL_VERSIONS.len() - 1],
        };
        if self.agent.is_none() && !self.no_join {
            if !self.agent_given {
                // The editor session's agent (the one its hooks act as), else the worktree's
                // (`maos agent spawn`), else one named after the client.
                let here = std::env::current_dir().ok();
                let worktree = here.as_deref().and_then(workspace::git_worktree_root);
                let client = session::Client::of_mcp_server();
                let known = session::agent_of_client(&self.ws, client, None, worktree.as_deref())
                    .map_err(|e| {
                    RpcError::new(-32603, format!("cannot tell who this session is: {e}"))
                })?;
                (self.agent_id, self.identity) = known.unwrap_or_else(|| {
                    (
                        agent_id_for(params),
                        "named after the MCP client for this connection (set MAOS_AGENT_ID to choose the name)".to_owned(),
                    )
                });
            }
            self.join().map_err(|e| {
                RpcError::new(-32603, format!("cannot join the workspace: {}", e.error))
            })?;
        }
        Ok(json!({
            "protocolVersion": version,
            "capabilities": { "tools": { "listChanged": false } },
            "serverInfo": { "name": "maos", "version": env!("CARGO_PKG_VERSION") },
            "instructions": format!(
                "You are agent `{}` ({}) in the MAOS workspace at {}. Coordinate with the other agents \
                 only through these tools: reserve the files you will change (reserve, with a glob \
                 such as src/db/**) or lock one (acquire_lock) before you edit, and release them \
                 after; take work with claim_task and report it with update_task_status; talk \
                 with send_message / read_messages.",
                self.agent_id,
                self.identity,
                self.ws.root().display()
            ),
        }))
    }

    fn call(&mut self, params: &Value) -> Result<Value, RpcError> {
        let name = params
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| RpcError::invalid_params("tools/call needs a tool `name`"))?;
        let arguments = params
            .get("arguments")
            .cloned()
            .unwrap_or_else(|| json!({}));
        if !arguments.is_object() {
            return Err(RpcError::invalid_params("`arguments` must be an object"));
        }
        let outcome = tools::call(&self.ws, &self.agent_id, name, arguments)?;
        Ok(match outcome {
            Ok(value) => json!({
                "content": [{"type": "text", "text": serde_json::to_string_pretty(&value).unwrap_or_default()}],
                "structuredContent": if value.is_object() { value } else { json!({"result": value}) },
                "isError": false,
            }),
            Err(error) => json!({
                "content": [{"type": "text", "text": error.message}],
                "structuredContent": {
                    "error": { "kind": error.kind.as_str(), "message": error.message },
                },
                "isError": true,
            }),
        })
    }
}

fn error_reply(id: Value, error: &RpcError) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": error.code, "message": error.message}})
}

/// An agent id made from the client's name (`claude-code` → `claude-code-3f9a`).
fn agent_id_for(params: &Value) -> String {
    let client = params
        .pointer("/clientInfo/name")
        .and_then(Value::as_str)
        .unwrap_or("mcp");
    let base: String = client
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    let base = base.trim_start_matches(['.', '-']);
    let suffix = &uuid_suffix();
    format!("{}-{suffix}", if base.is_empty() { "mcp" } else { base })
}

fn uuid_suffix() -> String {
    // Four hex digits from the process id and time: unique enough among live sessions, and
    // `Agent::join` refuses an id a live process already runs.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{:04x}", (std::process::id() ^ nanos) & 0xffff)
}
