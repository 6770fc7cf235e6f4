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
    /// Send, read and watch messages on channels.
    #[command(subcommand)]
    Msg(MsgCommand),
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
