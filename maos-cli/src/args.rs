//! The command-line grammar of `maos` (argument types only; behaviour lives in `commands/`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Coordinate a team of agents through the files of a `.maos/` directory.
#[derive(Debug, Parser)]
#[command(name = "maos", version, about, propagate_version = true)]
pub struct Cli {
    /// The workspace root (the directory holding `.maos/`); default: walk up from the
    /// current directory (from a linked git worktree, to its main worktree).
    #[arg(long, global = true, env = "MAOS_WORKSPACE", value_name = "DIR")]
    pub workspace: Option<PathBuf>,

    /// The agent identity that sends messages, owns locks and claims tasks
    /// [default: $USER@$HOSTNAME].
    #[arg(long, global = true, env = "MAOS_AGENT_ID", value_name = "ID")]
    pub agent: Option<String>,

    /// Print machine-readable JSON on stdout (watch commands: one object per line).
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

/// The top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create `.maos/` (idempotent); in a git repository, at the main worktree's root.
    Init,
    /// Show the workspace at a glance.
    Status,
    /// Check every file under `.maos/`; with --fix, quarantine broken ones and clear stale ones.
    Doctor(DoctorArgs),
    /// Send, read and watch messages on channels.
    #[command(subcommand)]
    Msg(MsgCommand),
    /// Take, release, renew and inspect locks on resources (files, paths, names).
    #[command(subcommand)]
    Lock(LockCommand),
    /// Look for agents waiting on each other in a cycle.
    #[command(subcommand)]
    Deadlock(DeadlockCommand),
}

/// `maos lock ...`
#[derive(Debug, Subcommand)]
pub enum LockCommand {
    /// Take a lock (it belongs to this agent until released or expired).
    Acquire(AcquireArgs),
    /// Release a lock this agent holds.
    Release(ResourceArg),
    /// Extend a lock this agent holds.
    Renew(RenewArgs),
    /// List the locks, with owner, purpose and time left; expired or dead holders are marked.
    List,
    /// Show one lock.
    Show(ResourceArg),
}

/// A resource name.
#[derive(Debug, Args)]
pub struct ResourceArg {
    /// The resource: a name or a path in the repository, e.g. `src/main.rs`.
    pub resource: String,
}

/// `maos lock acquire`
#[derive(Debug, Args)]
pub struct AcquireArgs {
    /// The resource: a name or a path in the repository, e.g. `src/main.rs`.
    pub resource: String,
    /// Seconds the lock lives unless renewed.
    #[arg(long, value_name = "SECS", default_value = "300", value_parser = parse_seconds)]
    pub ttl: std::time::Duration,
    /// Wait up to this many seconds for the lock (exit 3 after); 0: fail at once (exit 5).
    #[arg(long, value_name = "SECS", default_value = "0", value_parser = parse_seconds)]
    pub wait: std::time::Duration,
    /// Why the lock is wanted (shown to other agents).
    #[arg(long, value_name = "TEXT", default_value = "")]
    pub purpose: String,
    /// Place in line while waiting: low, medium, high or critical.
    #[arg(long, value_name = "P", default_value = "medium")]
    pub priority: maos_coordination::Priority,
}

/// `maos lock renew`
#[derive(Debug, Args)]
pub struct RenewArgs {
    /// The resource.
    pub resource: String,
    /// Seconds from now the lock lives.
    #[arg(long, value_name = "SECS", default_value = "300", value_parser = parse_seconds)]
    pub ttl: std::time::Duration,
}

/// `maos deadlock ...`
#[derive(Debug, Subcommand)]
pub enum DeadlockCommand {
    /// Build the wait-for graph from `.maos/` and report every cycle with its victim.
    Check,
}

/// `maos doctor`
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Move broken records to `.maos/quarantine/`, remove stale locks, waits, interests and
    /// staging files of dead writers.
    #[arg(long)]
    pub fix: bool,
}

/// `maos msg ...`
#[derive(Debug, Subcommand)]
pub enum MsgCommand {
    /// Send a message to a channel (created by its first message).
    Send(SendArgs),
    /// Print the messages of a channel in order.
    Recv(RecvArgs),
    /// Wait for new messages and print each as it arrives.
    Watch(WatchArgs),
    /// Send a message on a broadcast topic (and a notice on `broadcast/all`).
    Broadcast(BroadcastArgs),
    /// List the channels with their message counts and last activity.
    Channels,
}

/// What a message says and to whom.
#[derive(Debug, Args)]
pub struct MessageArgs {
    /// The payload: JSON when it parses as JSON, otherwise a string.
    pub payload: String,
    /// Message type tag.
    #[arg(long = "type", value_name = "TYPE", default_value = "message")]
    pub kind: String,
    /// low, medium (or normal), high or critical.
    #[arg(long, value_name = "P", default_value = "medium")]
    pub priority: maos_coordination::Priority,
}

/// `maos msg send`
#[derive(Debug, Args)]
pub struct SendArgs {
    /// The channel, e.g. `general` or `broadcast/deploy`.
    pub channel: String,
    #[command(flatten)]
    pub message: MessageArgs,
    /// Address an agent (repeat for a group); default: everyone.
    #[arg(long = "to", value_name = "AGENT")]
    pub to: Vec<String>,
    /// Address every agent holding a role (repeatable).
    #[arg(long, value_name = "ROLE")]
    pub role: Vec<String>,
}

/// Which messages a reader wants.
#[derive(Debug, Args)]
pub struct FilterArgs {
    /// Only messages addressed to this agent (or to everyone, or to one of its `--my-role`s).
    #[arg(long)]
    pub mine: bool,
    /// A role this agent holds, for `--mine` (repeatable).
    #[arg(long = "my-role", value_name = "ROLE")]
    pub my_roles: Vec<String>,
}

/// `maos msg recv`
#[derive(Debug, Args)]
pub struct RecvArgs {
    /// The channel.
    pub channel: String,
    /// Only messages with a greater seq.
    #[arg(long, value_name = "SEQ", conflicts_with = "new")]
    pub after: Option<u64>,
    /// Only messages after this agent's saved cursor, then move the cursor past them.
    #[arg(long)]
    pub new: bool,
    /// At most this many messages.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    #[command(flatten)]
    pub filter: FilterArgs,
}

/// `maos msg watch`
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// The channel.
    pub channel: String,
    /// Start after this seq (default 0: the whole channel, then what follows).
    #[arg(long, value_name = "SEQ", conflicts_with_all = ["new", "from_end"])]
    pub after: Option<u64>,
    /// Start after this agent's saved cursor, and save the cursor past each printed message.
    #[arg(long, conflicts_with = "from_end")]
    pub new: bool,
    /// Start at the channel's current end: only messages sent from now on.
    #[arg(long)]
    pub from_end: bool,
    /// Exit 0 after this many messages.
    #[arg(long, value_name = "N")]
    pub count: Option<usize>,
    /// Exit 3 when this many seconds pass first.
    #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
    pub timeout: Option<std::time::Duration>,
    #[command(flatten)]
    pub filter: FilterArgs,
}

/// `maos msg broadcast`
#[derive(Debug, Args)]
pub struct BroadcastArgs {
    /// The topic.
    pub topic: String,
    #[command(flatten)]
    pub message: MessageArgs,
}

/// Parses a non-negative number of seconds, fractions allowed.
pub fn parse_seconds(s: &str) -> Result<std::time::Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    std::time::Duration::try_from_secs_f64(secs)
        .map_err(|_| format!("`{s}` is not a non-negative number of seconds"))
}
