//! The MCP tools: their JSON Schemas and descriptions (written for a model), and the calls
//! into the library. Arguments are decoded into typed structs, so a wrong type or an unknown
//! field is a tool error naming the argument (`invalid_input`), never a crash; every tool
//! error carries its kind.

use std::time::Duration;

use maos_coordination::Workspace;
use maos_coordination::channel::{
    self as channels, Channel, ChannelError, ChannelName, Draft, Inbox, WatchOptions,
};
use maos_coordination::deadlock;
use maos_coordination::lock::{LockRequest, Locks, ReservationRequest, Reservations};
use maos_coordination::merge::MergeCoordinator;
use maos_coordination::progress;
use maos_coordination::recovery;
use maos_coordination::task::{FileRef, NewTask, Pick, Status, Tasks};
use maos_coordination::vote::{Quorum, VoteError, Voters, Votes};
use maos_coordination::{ErrorKind, Priority};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::RpcError;
use crate::commands::msg::read_selected;
use crate::error::Chain;

/// The longest wait a tool call may ask for: a model's turn should not hang.
const MAX_WAIT_SECS: f64 = 120.0;

/// What a tool call produced: a value, or an error for the model.
pub type Outcome = Result<Value, ToolError>;

/// A tool call that failed: the text the CLI would print, and the kind of failure, so that
/// a client can tell a conflict worth retrying from a fatal error.
#[derive(Debug)]
pub struct ToolError {
    /// `conflict`, `not_found`, `timeout`, `invalid_input`, … ([`ErrorKind::as_str`]).
    pub kind: ErrorKind,
    /// What went wrong.
    pub message: String,
}

/// An argument the tool's schema does not allow.
fn invalid(tool: &str, message: impl std::fmt::Display) -> ToolError {
    ToolError {
        kind: ErrorKind::InvalidInput,
        message: format!("error: {tool}: {message}"),
    }
}

/// A failure of the operation, as the CLI would say it.
fn fail(kind: ErrorKind, e: &(dyn std::error::Error + 'static)) -> ToolError {
    ToolError {
        kind,
        message: format!("error: {}", Chain(e)),
    }
}

fn schema(properties: Value, required: &[&str]) -> Value {
    json!({"type": "object", "properties": properties, "required": required, "additionalProperties": false})
}

/// Arguments real clients add to every tool they declare, accepted and ignored (unless a
/// tool takes an argument of that name): Gemini CLI's `wait_for_previous`.
const CLIENT_ARGUMENTS: &[&str] = &["wait_for_previous"];

/// What a tool does to the workspace, for its MCP annotations (clients such as Codex decide
/// from them whether a call needs the user's approval). No tool is destructive (nothing is
/// deleted that cannot be had again; claims end by release or expiry) and none reaches
/// outside the workspace (`openWorldHint: false`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    /// Reads only.
    ReadOnly,
    /// Changes the workspace; calling it again with the same arguments changes nothing more.
    Idempotent,
    /// Changes the workspace, each call anew.
    Changes,
}

fn annotations(name: &str, effect: Effect) -> Value {
    json!({
        "title": name.replace('_', " "),
        "readOnlyHint": effect == Effect::ReadOnly,
        "destructiveHint": false,
        "idempotentHint": effect != Effect::Changes,
        "openWorldHint": false,
    })
}

/// Every tool, for `tools/list`.
pub fn definitions() -> Vec<Value> {
    use Effect::{Changes, Idempotent, ReadOnly};
    let tool = |name: &str, effect: Effect, description: &str, input: Value| json!({"name": name, "description": description, "inputSchema": input, "annotations": annotations(name, effect)});
    let priority = json!({"type": "string", "enum": ["low", "medium", "high", "critical"]});
    vec![
        tool(
            "send_message",
            Changes,
            "Send a message on a channel to the other agents. Without `to`/`roles` everyone on the channel sees it. Use it to hand work over, ask for a review, or report what you finished.",
            schema(
                json!({
                    "channel": {"type": "string", "description": "Channel name, e.g. `general` or `review`."},
                    "payload": {"type": ["string", "object", "array", "number", "boolean"], "description": "The message: a string for prose, an object for data."},
                    "to": {"type": "array", "items": {"type": "string"}, "description": "Agent ids to address (a group when several)."},
                    "roles": {"type": "array", "items": {"type": "string"}, "description": "Roles to address."},
                    "type": {"type": "string", "description": "A tag such as `review-request` (default `message`)."},
                    "priority": priority,
                    "allow_unknown": {"type": "boolean", "description": "Send even to an agent that has not joined yet, or a role no one holds (refused otherwise)."},
                    "ack": {"type": "boolean", "description": "Ask each recipient to acknowledge it (`ack_message`)."},
                    "ack_within_seconds": {"type": "integer", "minimum": 1, "description": "With `ack`: an acknowledgement not made within this many seconds is overdue."},
                    "reply_to": {"type": "integer", "minimum": 1, "description": "The seq of the message (same channel) this answers: the reply joins its thread."},
                }),
                &["channel", "payload"],
            ),
        ),
        tool(
            "read_inbox",
            Changes,
            "Every unread message addressed to you (by id, as part of a group, or to your role) in every channel, and broadcasts on topics you follow, oldest first; they are marked read (`peek: true` leaves them unread). Messages with `ack` ask you to call `ack_message`.",
            schema(json!({"peek": {"type": "boolean"}}), &[]),
        ),
        tool(
            "peek_inbox",
            ReadOnly,
            "The unread messages addressed to you, as `read_inbox` lists them, without marking them read.",
            schema(json!({}), &[]),
        ),
        tool(
            "propose",
            Changes,
            "Put a proposal to a vote of the agents holding a role (`role:reviewer`) or of agents named (`a,b,c`). The outcome is decided once (approved at `quorum` yes votes, rejected when that can no longer happen, expired at the deadline) and announced on the `votes` channel.",
            schema(
                json!({
                    "text": {"type": "string"},
                    "voters": {"type": "string", "description": "`role:<role>` or agent ids separated by commas."},
                    "quorum": {"type": "string", "description": "A number or `majority` (default)."},
                    "deadline_seconds": {"type": "integer", "minimum": 1},
                }),
                &["text", "voters"],
            ),
        ),
        tool(
            "vote",
            Changes,
            "Vote yes or no on a proposal (once), or with no `vote` just see where it stands.",
            schema(
                json!({
                    "id": {"type": "string"},
                    "vote": {"type": "string", "enum": ["yes", "no"]},
                    "reason": {"type": "string"},
                }),
                &["id"],
            ),
        ),
        tool(
            "ack_message",
            Idempotent,
            "Acknowledge a message that asked for it (once; a second acknowledgement changes nothing).",
            schema(
                json!({
                    "channel": {"type": "string"},
                    "seq": {"type": "integer", "minimum": 1},
                    "note": {"type": "string", "description": "What to tell the sender."},
                }),
                &["channel", "seq"],
            ),
        ),
        tool(
            "read_messages",
            Changes,
            "Read messages of a channel in order. With `new: true` you get only what arrived since you last read with `new` (your cursor moves past them). With `mine: true` only messages for you (everyone, your id, or one of `my_roles`).",
            schema(
                json!({
                    "channel": {"type": "string"},
                    "after": {"type": "integer", "minimum": 0, "description": "Only messages with a greater seq."},
                    "new": {"type": "boolean"},
                    "mine": {"type": "boolean"},
                    "my_roles": {"type": "array", "items": {"type": "string"}},
                    "limit": {"type": "integer", "minimum": 1},
                }),
                &["channel"],
            ),
        ),
        tool(
            "wait_for_message",
            Changes,
            "Wait (at most `timeout_seconds`, up to 120) for the next message on a channel after your cursor, and return it (your cursor moves past it). Returns `timed_out: true` when nothing came.",
            schema(
                json!({
                    "channel": {"type": "string"},
                    "timeout_seconds": {"type": "number", "minimum": 0, "maximum": MAX_WAIT_SECS},
                    "mine": {"type": "boolean"},
                }),
                &["channel", "timeout_seconds"],
            ),
        ),
        tool(
            "acquire_lock",
            Changes,
            "Lock a resource before you change it — normally a file path in the repository, e.g. `src/db.rs`. Lock the files before you edit them and release them after. Fails at once if another agent holds it, unless you give `wait_seconds` (at most 120). The result has a fencing token.",
            schema(
                json!({
                    "resource": {"type": "string", "description": "A file path relative to the repository, or a name."},
                    "ttl_seconds": {"type": "number", "exclusiveMinimum": 0, "description": "Lifetime unless renewed (default 300)."},
                    "wait_seconds": {"type": "number", "minimum": 0, "maximum": MAX_WAIT_SECS},
                    "purpose": {"type": "string", "description": "Why, shown to the other agents."},
                    "priority": priority,
                }),
                &["resource"],
            ),
        ),
        tool(
            "renew_lock",
            Idempotent,
            "Extend a lock you hold to `ttl_seconds` from now.",
            schema(
                json!({"resource": {"type": "string"}, "ttl_seconds": {"type": "number", "exclusiveMinimum": 0}}),
                &["resource"],
            ),
        ),
        tool(
            "release_lock",
            Idempotent,
            "Release a lock you hold, as soon as you are done with the resource.",
            schema(json!({"resource": {"type": "string"}}), &["resource"]),
        ),
        tool(
            "list_locks",
            ReadOnly,
            "List every lock: resource, owner, purpose, expiry, and whether it is live, expired or held by a dead process.",
            schema(json!({}), &[]),
        ),
        tool(
            "reserve",
            Idempotent,
            "Reserve files by gitignore-style glob patterns relative to the repository root (`src/db/**`, `*.sql`, `docs/`) before you edit them: other agents may then not lock, edit or commit what they cover. All patterns or none. Exclusive unless `shared` (shared reservations coexist). Fails at once naming who is in the way, unless you give `wait_seconds` (at most 120). Reserving again renews.",
            schema(
                json!({
                    "patterns": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                    "shared": {"type": "boolean"},
                    "ttl_seconds": {"type": "number", "exclusiveMinimum": 0, "description": "Lifetime unless renewed (default 1800)."},
                    "reason": {"type": "string", "description": "Why, shown to the other agents."},
                    "wait_seconds": {"type": "number", "minimum": 0, "maximum": MAX_WAIT_SECS},
                }),
                &["patterns"],
            ),
        ),
        tool(
            "unreserve",
            Idempotent,
            "Release your reservations of `patterns`, or `all` of them, as soon as you are done.",
            schema(
                json!({
                    "patterns": {"type": "array", "items": {"type": "string"}},
                    "all": {"type": "boolean"},
                }),
                &[],
            ),
        ),
        tool(
            "reservations",
            ReadOnly,
            "List every reservation: pattern, owner, shared or not, reason, expiry, and whether it is live, expired or held by a dead process.",
            schema(json!({}), &[]),
        ),
        tool(
            "create_task",
            Changes,
            "Create a task. It stays blocked until every task in `depends_on` is completed. Returns the task with its id.",
            schema(
                json!({
                    "title": {"type": "string", "minLength": 1, "maxLength": 500},
                    "description": {"type": "string", "maxLength": 5000},
                    "priority": priority,
                    "depends_on": {"type": "array", "items": {"type": "string"}},
                    "assign": {"type": "string", "description": "An agent id, or `auto` for the capable agent (role, requires) with the least work."},
                    "requires": {"type": "array", "items": {"type": "string"}, "description": "Capabilities an agent needs to claim it."},
                    "role": {"type": "string"},
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "files": {"type": "array", "items": {"type": "string"}, "description": "PATH, PATH:LINE or PATH:START-END."},
                }),
                &["title"],
            ),
        ),
        tool(
            "claim_task",
            Changes,
            "Take a task to work on: the one named by `id`, or the best ready task you may take. Exactly one agent gets each task; if another agent got it first you are told who.",
            schema(
                json!({"id": {"type": "string"}, "role": {"type": "string"}}),
                &[],
            ),
        ),
        tool(
            "update_task_status",
            Changes,
            "Move a task you work on: `in_progress`, `review`, `completed` (its dependents become ready), `failed`, `blocked` (give the reason as `note`), `pending` (give it back, or retry a failed one), `cancelled`.",
            schema(
                json!({
                    "id": {"type": "string"},
                    "status": {"type": "string", "enum": ["pending", "blocked", "in_progress", "review", "completed", "failed", "cancelled"]},
                    "note": {"type": "string"},
                }),
                &["id", "status"],
            ),
        ),
        tool(
            "ready_tasks",
            ReadOnly,
            "List the tasks ready to be claimed, best first (priority, then age).",
            schema(json!({"role": {"type": "string"}}), &[]),
        ),
        tool(
            "show_task",
            ReadOnly,
            "Show one task: status, dependencies, assignee, files and its history.",
            schema(json!({"id": {"type": "string"}}), &["id"]),
        ),
        tool(
            "progress",
            ReadOnly,
            "The overall progress: counts by status, completion percentage, the critical path, and what blocks what.",
            schema(json!({}), &[]),
        ),
        tool(
            "deadlock_check",
            ReadOnly,
            "Look for agents waiting on each other's locks in a cycle; names the victim that should give up.",
            schema(json!({}), &[]),
        ),
        tool(
            "merge_prepare",
            ReadOnly,
            "What merging branch `source` into `target` would take, without changing anything: strategy, conflicting files with the agents involved, clean files.",
            schema(
                json!({"source": {"type": "string"}, "target": {"type": "string"}}),
                &["source", "target"],
            ),
        ),
        tool(
            "merge_forecast",
            ReadOnly,
            "Check every pair of agent branches (default: all under `maos/`) for merge conflicts, to learn of collisions while you work.",
            schema(
                json!({"branches": {"type": "array", "items": {"type": "string"}}}),
                &[],
            ),
        ),
    ]
}

/// Decodes a tool's arguments; a mismatch (a wrong name or type, a missing argument) is a
/// tool error naming the argument, which the model sees and can correct (MCP 2025-11-25).
fn args<T: DeserializeOwned>(tool: &str, arguments: Value) -> Result<T, ToolError> {
    serde_json::from_value(arguments).map_err(|e| invalid(tool, e))
}

fn seconds(tool: &str, s: f64) -> Result<Duration, ToolError> {
    if !(0.0..=MAX_WAIT_SECS * 1000.0).contains(&s) {
        return Err(invalid(
            tool,
            format!("seconds must be between 0 and {MAX_WAIT_SECS}"),
        ));
    }
    Ok(Duration::from_secs_f64(s))
}

fn to_value<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SendArgs {
    channel: String,
    payload: Value,
    #[serde(default)]
    to: Vec<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    priority: Option<Priority>,
    #[serde(default)]
    allow_unknown: bool,
    #[serde(default)]
    ack: bool,
    #[serde(default)]
    ack_within_seconds: Option<u64>,
    #[serde(default)]
    reply_to: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProposeArgs {
    text: String,
    voters: String,
    #[serde(default)]
    quorum: Option<String>,
    #[serde(default)]
    deadline_seconds: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VoteArgs {
    id: String,
    #[serde(default)]
    vote: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InboxArgs {
    #[serde(default)]
    peek: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AckArgs {
    channel: String,
    seq: u64,
    #[serde(default)]
    note: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadArgs {
    channel: String,
    #[serde(default)]
    after: Option<u64>,
    #[serde(default)]
    new: bool,
    #[serde(default)]
    mine: bool,
    #[serde(default)]
    my_roles: Vec<String>,
    #[serde(default)]
    limit: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WaitArgs {
    channel: String,
    timeout_seconds: f64,
    #[serde(default)]
    mine: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AcquireArgs {
    resource: String,
    #[serde(default)]
    ttl_seconds: Option<f64>,
    #[serde(default)]
    wait_seconds: Option<f64>,
    #[serde(default)]
    purpose: String,
    #[serde(default)]
    priority: Option<Priority>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResourceArgs {
    resource: String,
    #[serde(default)]
    ttl_seconds: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateArgs {
    title: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    priority: Option<Priority>,
    #[serde(default)]
    depends_on: Vec<String>,
    #[serde(default)]
    assign: Option<String>,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    requires: Vec<String>,
    #[serde(default)]
    files: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClaimArgs {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    role: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusArgs {
    id: String,
    status: Status,
    #[serde(default)]
    note: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleArgs {
    #[serde(default)]
    role: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IdArgs {
    id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoArgs {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReserveArgs {
    patterns: Vec<String>,
    #[serde(default)]
    shared: bool,
    #[serde(default)]
    ttl_seconds: Option<f64>,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    wait_seconds: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UnreserveArgs {
    #[serde(default)]
    patterns: Vec<String>,
    #[serde(default)]
    all: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PairArgs {
    source: String,
    target: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ForecastArgs {
    #[serde(default)]
    branches: Vec<String>,
}

/// Runs tool `name` as `agent`. `Err` only for an unknown tool (a protocol error); bad
/// arguments and failing operations are `Ok(Err(..))`, tool errors the model sees.
pub fn call(
    ws: &Workspace,
    agent: &str,
    name: &str,
    arguments: Value,
) -> Result<Outcome, RpcError> {
    let Some(definition) = definitions().into_iter().find(|d| d["name"] == name) else {
        return Err(RpcError::invalid_params(format!("unknown tool `{name}`")));
    };
    let mut arguments = arguments;
    if let (Some(given), Some(own)) = (
        arguments.as_object_mut(),
        definition["inputSchema"]["properties"].as_object(),
    ) {
        for extra in CLIENT_ARGUMENTS {
            if !own.contains_key(*extra) {
                given.remove(*extra);
            }
        }
    }
    if let Err(problem) = check_arguments(&definition["inputSchema"], &arguments) {
        return Ok(Err(invalid(name, problem)));
    }
    Ok(run(ws, agent, name, arguments))
}

/// Checks `arguments` against a tool's input schema (the subset MAOS's schemas use: known
/// properties, required ones, types, enums, bounds), naming the argument at fault.
fn check_arguments(schema: &Value, arguments: &Value) -> Result<(), String> {
    let empty = serde_json::Map::new();
    let properties = schema["properties"].as_object().unwrap_or(&empty);
    let Some(given) = arguments.as_object() else {
        return Err("the arguments must be an object".into());
    };
    for name in schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if !given.contains_key(name) {
            return Err(format!("the argument `{name}` is required"));
        }
    }
    for (name, value) in given {
        let Some(rule) = properties.get(name) else {
            let known: Vec<&str> = properties.keys().map(String::as_str).collect();
            return Err(format!(
                "unknown argument `{name}` (it takes {})",
                known.join(", ")
            ));
        };
        check_value(rule, value)
            .map_err(|expected| format!("the argument `{name}` must be {expected}"))?;
    }
    Ok(())
}

/// Whether `value` fits `rule`; `Err` says what it must be.
fn check_value(rule: &Value, value: &Value) -> Result<(), String> {
    if let Some(types) = rule["type"].as_array() {
        // A union: the value fits one of the types.
        let names: Vec<&str> = types.iter().filter_map(Value::as_str).collect();
        let fits_one = names.iter().any(|t| {
            let mut single = rule.clone();
            single["type"] = json!(t);
            check_value(&single, value).is_ok()
        });
        return if fits_one {
            Ok(())
        } else {
            Err(format!("one of these types: {}", names.join(", ")))
        };
    }
    let fits = match rule["type"].as_str() {
        None => true,
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        Some("array") => match value.as_array() {
            Some(items) => {
                let item_type = rule["items"]["type"].as_str().unwrap_or("value");
                if items
                    .iter()
                    .any(|i| check_value(&rule["items"], i).is_err())
                {
                    return Err(format!("an array of {item_type}s"));
                }
                true
            }
            None => false,
        },
        Some("object") => value.is_object(),
        Some(_) => true,
    };
    if !fits {
        let kind = rule["type"].as_str().unwrap_or("any value");
        return Err(match kind {
            "integer" | "array" => format!("an {kind}"),
            _ => format!("a {kind}"),
        });
    }
    if let Some(allowed) = rule["enum"].as_array()
        && !allowed.contains(value)
    {
        let names: Vec<String> = allowed.iter().map(ToString::to_string).collect();
        return Err(format!("one of {}", names.join(", ")));
    }
    // Clients may drop the bounds from the schema they show the model (Codex does): they
    // are enforced here, whatever the model was shown.
    let length = match value {
        Value::String(text) => Some((text.chars().count(), "characters", "Length")),
        Value::Array(items) => Some((items.len(), "items", "Items")),
        _ => None,
    };
    if let Some((count, unit, suffix)) = length {
        let bound = |name: &str| rule[format!("{name}{suffix}")].as_u64();
        let (low, high) = (bound("min"), bound("max"));
        let count = count as u64;
        if low.is_some_and(|l| count < l) || high.is_some_and(|h| count > h) {
            return Err(match (low, high) {
                (Some(l), Some(h)) => format!("{l} to {h} {unit} long (it has {count})"),
                (Some(l), None) => format!("at least {l} {unit} long (it has {count})"),
                (None, Some(h)) => format!("at most {h} {unit} long (it has {count})"),
                (None, None) => "in range".into(),
            });
        }
    }
    let number = value.as_f64();
    let below = |bound: &str, exclusive: bool| {
        rule[bound]
            .as_f64()
            .zip(number)
            .is_some_and(|(b, n)| if exclusive { n <= b } else { n < b })
    };
    let above = |bound: &str| rule[bound].as_f64().zip(number).is_some_and(|(b, n)| n > b);
    if below("minimum", false) || below("exclusiveMinimum", true) || above("maximum") {
        let low = rule["minimum"]
            .as_f64()
            .or(rule["exclusiveMinimum"].as_f64());
        let high = rule["maximum"].as_f64();
        return Err(match (low, high) {
            (Some(l), Some(h)) => format!("between {l} and {h}"),
            (Some(l), None) if rule["exclusiveMinimum"].is_number() => format!("more than {l}"),
            (Some(l), None) => format!("at least {l}"),
            (None, Some(h)) => format!("at most {h}"),
            (None, None) => "in range".into(),
        });
    }
    Ok(())
}

fn run(ws: &Workspace, agent: &str, name: &str, arguments: Value) -> Outcome {
    match name {
        "send_message" => {
            let a: SendArgs = args(name, arguments)?;
            send_message(ws, agent, a)
        }
        "read_inbox" => {
            let a: InboxArgs = args(name, arguments)?;
            read_inbox(ws, agent, a)
        }
        "peek_inbox" => {
            let _: NoArgs = args(name, arguments)?;
            read_inbox(ws, agent, InboxArgs { peek: true })
        }
        "propose" => {
            let a: ProposeArgs = args(name, arguments)?;
            propose(ws, agent, a)
        }
        "vote" => {
            let a: VoteArgs = args(name, arguments)?;
            vote(ws, agent, a)
        }
        "ack_message" => {
            let a: AckArgs = args(name, arguments)?;
            ack_message(ws, agent, a)
        }
        "read_messages" => {
            let a: ReadArgs = args(name, arguments)?;
            read_messages(ws, agent, a)
        }
        "wait_for_message" => {
            let a: WaitArgs = args(name, arguments)?;
            let timeout = seconds(name, a.timeout_seconds.min(MAX_WAIT_SECS))?;
            wait_for_message(ws, agent, a, timeout)
        }
        "acquire_lock" => {
            let a: AcquireArgs = args(name, arguments)?;
            let ttl = seconds(name, a.ttl_seconds.unwrap_or(300.0))?;
            let wait = seconds(name, a.wait_seconds.unwrap_or(0.0).min(MAX_WAIT_SECS))?;
            acquire_lock(ws, agent, a, ttl, wait)
        }
        "renew_lock" => {
            let a: ResourceArgs = args(name, arguments)?;
            let ttl = seconds(name, a.ttl_seconds.unwrap_or(300.0))?;
            Locks::new(ws)
                .renew(&a.resource, agent, ttl)
                .map(|i| to_value(&i))
                .map_err(|e| fail(e.kind(), &e))
        }
        "release_lock" => {
            let a: ResourceArgs = args(name, arguments)?;
            Locks::new(ws)
                .release(&a.resource, agent)
                .map(|i| to_value(&i))
                .map_err(|e| fail(e.kind(), &e))
        }
        "list_locks" => {
            let _: NoArgs = args(name, arguments)?;
            list_locks(ws)
        }
        "reserve" => {
            let a: ReserveArgs = args(name, arguments)?;
            let ttl = seconds(name, a.ttl_seconds.unwrap_or(1800.0))?;
            let wait = seconds(name, a.wait_seconds.unwrap_or(0.0).min(MAX_WAIT_SECS))?;
            reserve(ws, agent, a, ttl, wait)
        }
        "unreserve" => {
            let a: UnreserveArgs = args(name, arguments)?;
            let reservations = Reservations::new(ws);
            match (a.all, a.patterns.is_empty()) {
                (true, _) => reservations.release_all_of(agent),
                (false, false) => reservations.release(&a.patterns, agent),
                (false, true) => return Err(invalid(name, "give `patterns` or `all: true`")),
            }
            .map(|released| to_value(&released))
            .map_err(|e| fail(e.kind(), &e))
        }
        "reservations" => {
            let _: NoArgs = args(name, arguments)?;
            let listed = Reservations::new(ws).list().map_err(|e| fail(e.kind(), &e));
            listed.map(|listed| {
                let (mut live, mut broken) = (Vec::new(), Vec::new());
                for r in listed {
                    match r.info {
                        Ok(info) => live.push(info.view()),
                        Err(e) => broken.push(e.to_string()),
                    }
                }
                json!({"reservations": live, "broken_files": broken})
            })
        }
        "create_task" => {
            let a: CreateArgs = args(name, arguments)?;
            create_task(ws, agent, a)
        }
        "claim_task" => {
            let a: ClaimArgs = args(name, arguments)?;
            let pick = match &a.id {
                Some(id) => Pick::Named(id),
                None => Pick::Best {
                    role: a.role.as_deref(),
                    capabilities: &[],
                },
            };
            recovery::recover_lazily(ws);
            Tasks::new(ws)
                .claim(agent, pick)
                .map(|t| to_value(&t))
                .map_err(|e| fail(e.kind(), &e))
        }
        "update_task_status" => {
            let a: StatusArgs = args(name, arguments)?;
            Tasks::new(ws)
                .set_status(&a.id, agent, a.status, a.note)
                .map(|change| {
                    let mut value = to_value(&change.task);
                    if let Some(object) = value.as_object_mut() {
                        let unblocked: Vec<&str> =
                            change.unblocked.iter().map(|t| t.id.as_str()).collect();
                        object.insert("unblocked".into(), json!(unblocked));
                    }
                    value
                })
                .map_err(|e| fail(e.kind(), &e))
        }
        "ready_tasks" => {
            let a: RoleArgs = args(name, arguments)?;
            recovery::recover_lazily(ws);
            let tasks = Tasks::new(ws);
            tasks
                .ready()
                .map(|view| {
                    let open: Vec<_> = view
                        .tasks
                        .into_iter()
                        .filter(|t| a.role.is_none() || t.open_to(a.role.as_deref()))
                        .collect();
                    json!({"tasks": tasks.records(&open)})
                })
                .map_err(|e| fail(e.kind(), &e))
        }
        "show_task" => {
            let a: IdArgs = args(name, arguments)?;
            Tasks::new(ws)
                .get(&a.id)
                .map(|t| to_value(&t))
                .map_err(|e| fail(e.kind(), &e))
        }
        "progress" => {
            let _: NoArgs = args(name, arguments)?;
            Tasks::new(ws)
                .summaries(true)
                .map(|view| to_value(&progress::report_over(&view.tasks, &view.skipped)))
                .map_err(|e| fail(e.kind(), &e))
        }
        "deadlock_check" => {
            let _: NoArgs = args(name, arguments)?;
            deadlock::detect(ws)
                .map(|cycles| json!({"cycles": cycles}))
                .map_err(|e| fail(e.kind(), &e))
        }
        "merge_prepare" => {
            let a: PairArgs = args(name, arguments)?;
            MergeCoordinator::open(ws)
                .and_then(|m| m.prepare(&a.source, &a.target))
                .map(|p| to_value(&p))
                .map_err(|e| fail(e.kind(), &e))
        }
        "merge_forecast" => {
            let a: ForecastArgs = args(name, arguments)?;
            MergeCoordinator::open(ws)
                .and_then(|m| m.forecast(&a.branches, agent))
                .map(|f| to_value(&f))
                .map_err(|e| fail(e.kind(), &e))
        }
        other => Err(invalid(other, "no such tool")),
    }
}

fn channel(ws: &Workspace, name: &str) -> Result<Channel, ToolError> {
    ChannelName::new(name)
        .map(|n| Channel::open(ws, n))
        .map_err(|e| fail(e.kind(), &e))
}

fn send_message(ws: &Workspace, agent: &str, a: SendArgs) -> Outcome {
    let channel = channel(ws, &a.channel)?;
    let mut draft = Draft::new(a.payload).kind(a.kind.unwrap_or_else(|| "message".into()));
    if let Some(priority) = a.priority {
        draft = draft.priority(priority);
    }
    for to in a.to {
        draft = draft.to(to);
    }
    for role in a.roles {
        draft = draft.to_role(role);
    }
    if let Some(parent) = a.reply_to {
        draft = draft.reply_to(parent);
    }
    if a.ack {
        let deadline = a.ack_within_seconds.and_then(|secs| {
            jiff::Timestamp::now()
                .checked_add(jiff::SignedDuration::from_secs(
                    i64::try_from(secs).unwrap_or(i64::MAX),
                ))
                .ok()
        });
        draft = draft.ack(deadline);
    }
    channels::post(ws, channel.name().clone(), agent, draft, a.allow_unknown)
        .map(|m| to_value(&m))
        .map_err(|e| fail(e.kind(), &e))
}

fn read_inbox(ws: &Workspace, agent: &str, a: InboxArgs) -> Outcome {
    let fail_with = |e: ChannelError| fail(e.kind(), &e);
    channels::announce_overdue(ws, jiff::Timestamp::now()).map_err(fail_with)?;
    let inbox = Inbox::of(ws, agent).map_err(fail_with)?;
    let unread = if a.peek { inbox.peek() } else { inbox.take() }.map_err(fail_with)?;
    let skipped: Vec<String> = unread.skipped.iter().map(ToString::to_string).collect();
    Ok(json!({"messages": unread.messages, "broken_files": skipped}))
}

fn propose(ws: &Workspace, agent: &str, a: ProposeArgs) -> Outcome {
    let fail_with = |e: VoteError| fail(e.kind(), &e);
    let deadline = a.deadline_seconds.and_then(|secs| {
        jiff::Timestamp::now()
            .checked_add(jiff::SignedDuration::from_secs(
                i64::try_from(secs).unwrap_or(i64::MAX),
            ))
            .ok()
    });
    let votes = Votes::new(ws);
    let quorum = Quorum::parse(a.quorum.as_deref().unwrap_or("majority")).map_err(fail_with)?;
    let voters = Voters::parse(&a.voters).map_err(fail_with)?;
    let proposal = votes
        .propose(agent, &a.text, voters, quorum, deadline)
        .map_err(fail_with)?;
    votes
        .show(&proposal.id)
        .map(|s| to_value(&s))
        .map_err(fail_with)
}

fn vote(ws: &Workspace, agent: &str, a: VoteArgs) -> Outcome {
    let fail_with = |e: VoteError| fail(e.kind(), &e);
    let votes = Votes::new(ws);
    let standing = match a.vote.as_deref() {
        None => votes.show(&a.id),
        Some(vote) => votes.cast(&a.id, agent, vote == "yes", a.reason),
    };
    standing.map(|s| to_value(&s)).map_err(fail_with)
}

fn ack_message(ws: &Workspace, agent: &str, a: AckArgs) -> Outcome {
    let name = ChannelName::new(&a.channel).map_err(|e| fail(e.kind(), &e))?;
    let (ack, new) = channels::acknowledge(ws, &name, a.seq, agent, a.note)
        .map_err(|e: ChannelError| fail(e.kind(), &e))?;
    Ok(json!({"ack": ack, "new": new}))
}

fn read_messages(ws: &Workspace, agent: &str, a: ReadArgs) -> Outcome {
    let channel = channel(ws, &a.channel)?;
    let mut cursor = if a.new {
        Some(channel.cursor(agent).map_err(|e| fail(e.kind(), &e))?)
    } else {
        None
    };
    let after = a
        .after
        .unwrap_or_else(|| cursor.as_ref().map_or(0, |c| c.seq));
    let batch = read_selected(&channel, cursor.as_mut(), after, a.limit, |m| {
        !a.mine || m.is_for(agent, &a.my_roles)
    })
    .map_err(|e| fail(e.kind(), &e))?;
    let skipped: Vec<String> = batch.skipped.iter().map(ToString::to_string).collect();
    Ok(json!({
        "messages": batch.messages,
        "cursor": batch.cursor,
        "broken_files": skipped,
        "pruned": batch.pruned,
    }))
}

fn wait_for_message(ws: &Workspace, agent: &str, a: WaitArgs, timeout: Duration) -> Outcome {
    // A subscription resumes at the agent's cursor and saves it past what it hands out.
    let mut inbox = channel(ws, &a.channel)?
        .subscribe(agent, WatchOptions::default())
        .map_err(|e| fail(e.kind(), &e))?;
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let batch = inbox
            .next_batch(Some(left))
            .map_err(|e| fail(e.kind(), &e))?;
        inbox.commit().map_err(|e| fail(e.kind(), &e))?;
        let Some(batch) = batch else {
            return Ok(json!({"timed_out": true}));
        };
        let messages: Vec<_> = batch
            .messages
            .iter()
            .filter(|m| !a.mine || m.is_for(agent, &[]))
            .collect();
        if !messages.is_empty() {
            return Ok(
                json!({"timed_out": false, "messages": messages, "cursor": batch.cursor, "pruned": batch.pruned}),
            );
        }
        if left.is_zero() {
            return Ok(json!({"timed_out": true, "cursor": batch.cursor}));
        }
    }
}

fn acquire_lock(
    ws: &Workspace,
    agent: &str,
    a: AcquireArgs,
    ttl: Duration,
    wait: Duration,
) -> Outcome {
    let request = LockRequest::new(&a.resource, agent)
        .map_err(|e| fail(e.kind(), &e))?
        .ttl(ttl)
        .purpose(a.purpose)
        .priority(a.priority.unwrap_or_default());
    // Bound to this server process: if it dies, so does the lock (and leaving releases it).
    let locks = Locks::new(ws);
    let guard = if wait.is_zero() {
        locks.try_acquire(&request)
    } else {
        locks.acquire(&request, wait)
    };
    guard
        .map(|g| to_value(&g.persist()))
        .map_err(|e| fail(e.kind(), &e))
}

fn reserve(ws: &Workspace, agent: &str, a: ReserveArgs, ttl: Duration, wait: Duration) -> Outcome {
    // Bound to this server process, like its locks: if it dies, its reservations are dead.
    let request = ReservationRequest::new(&a.patterns, agent)
        .map_err(|e| fail(e.kind(), &e))?
        .shared(a.shared)
        .ttl(ttl)
        .reason(a.reason)
        .bound_to_process(true);
    Reservations::new(ws)
        .reserve(&request, wait)
        .map(|granted| Value::Array(granted.iter().map(|r| r.view()).collect()))
        .map_err(|e| fail(e.kind(), &e))
}

fn list_locks(ws: &Workspace) -> Outcome {
    let listed = Locks::new(ws).list().map_err(|e| fail(e.kind(), &e))?;
    let mut locks = Vec::new();
    let mut broken = Vec::new();
    for lock in listed {
        match lock.info {
            Ok(info) => locks.push(info.view()),
            Err(e) => broken.push(e.to_string()),
        }
    }
    Ok(json!({"locks": locks, "broken_files": broken}))
}

fn create_task(ws: &Workspace, agent: &str, a: CreateArgs) -> Outcome {
    let files = a
        .files
        .iter()
        .map(|f| f.parse::<FileRef>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(ErrorKind::InvalidInput, &e))?;
    let mut new = NewTask {
        title: a.title,
        description: a.description,
        priority: a.priority.unwrap_or_default(),
        dependencies: a.depends_on,
        role: a.role,
        tags: a.tags,
        requires: a.requires,
        files,
        ..NewTask::default()
    };
    new.assignee = maos_coordination::agents::assignee_for(ws, a.assign.as_deref(), &new)
        .map_err(|e| fail(e.kind(), &e))?;
    Tasks::new(ws)
        .create(agent, new, None)
        .map(|t| to_value(&t))
        .map_err(|e| fail(e.kind(), &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema_of(tool: &str) -> Value {
        definitions()
            .into_iter()
            .find(|d| d["name"] == tool)
            .map(|d| d["inputSchema"].clone())
            .unwrap_or(Value::Null)
    }

    /// Codex strips bounds from the schema it shows the model: the server enforces them.
    #[test]
    fn lengths_items_and_numbers_are_bounded_by_the_server() {
        let create = schema_of("create_task");
        let long = "x".repeat(501);
        for (args, says) in [
            (json!({"title": ""}), "1 to 500 characters long (it has 0)"),
            (json!({"title": long}), "1 to 500 characters long"),
        ] {
            let e = check_arguments(&create, &args).unwrap_err();
            assert!(e.contains("`title`") && e.contains(says), "{e}");
        }
        let reserve = schema_of("reserve");
        let e = check_arguments(&reserve, &json!({"patterns": []})).unwrap_err();
        assert!(e.contains("at least 1 items long"), "{e}");
        let e = check_arguments(&reserve, &json!({"patterns": ["a"], "wait_seconds": 121}))
            .unwrap_err();
        assert!(e.contains("between 0 and 120"), "{e}");
        assert!(check_arguments(&reserve, &json!({"patterns": ["a"]})).is_ok());
    }

    /// `payload` takes prose or data, and says so with a type (a client drops a property
    /// without one).
    #[test]
    fn a_payload_is_a_string_or_json_data() {
        let send = schema_of("send_message");
        assert!(send["properties"]["payload"]["type"].is_array());
        for payload in [
            json!("hi"),
            json!({"a": 1}),
            json!([1]),
            json!(2),
            json!(true),
        ] {
            let args = json!({"channel": "general", "payload": payload});
            assert!(check_arguments(&send, &args).is_ok(), "{args}");
        }
        let e =
            check_arguments(&send, &json!({"channel": "general", "payload": null})).unwrap_err();
        assert!(e.contains("`payload`"), "{e}");
    }
}
