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
    Init(InitArgs),
    /// Show the workspace at a glance (agents, locks, tasks, channels, forecast).
    Status(StatusViewArgs),
    /// A live full-screen dashboard: agents, tasks, locks, messages, merges (plain text when
    /// stdout is not a terminal).
    Ui,
    /// Check every file under `.maos/`; with --fix, quarantine broken ones and clear stale ones.
    Doctor(DoctorArgs),
    /// Send, read and watch messages on channels.
    #[command(subcommand)]
    Msg(MsgCommand),
    /// The messages addressed to this agent in every channel, oldest first, marked read.
    Inbox(InboxArgs),
    /// Propose, vote, and see the outcome (decided once, announced on `votes`).
    #[command(subcommand)]
    Vote(VoteCommand),
    /// The workspace's numbers in the Prometheus text format (tasks, locks, agents,
    /// messages, acknowledgements, the merge forecast).
    Metrics(MetricsArgs),
    /// The journal of every change: verify its hash chain.
    #[command(subcommand)]
    Journal(JournalCommand),
    /// Where the coordination state lives: move it to another store.
    #[command(subcommand)]
    Store(StoreCommand),
    /// The journal as a stream: past events, and with --follow new ones as they happen.
    Events(EventsArgs),
    /// Event hooks (`.maos/hooks.toml`): list them, try them, run them.
    #[command(subcommand)]
    Hooks(HooksCommand),
    /// Consistent point-in-time copies of `.maos/`: create, list, restore.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Take, release, renew and inspect locks on resources (files, paths, names).
    #[command(subcommand)]
    Lock(LockCommand),
    /// Reserve paths by glob pattern (exclusive, or --shared): others may not lock, edit or
    /// commit what they cover.
    Reserve(ReserveArgs),
    /// Release this agent's reservations.
    Unreserve(UnreserveArgs),
    /// List the reservations: pattern, owner, mode, reason, time left, state.
    Reservations,
    /// Look for agents waiting on each other in a cycle.
    #[command(subcommand)]
    Deadlock(DeadlockCommand),
    /// Create, claim and move tasks through their states.
    #[command(subcommand)]
    Task(TaskCommand),
    /// Report progress: totals, completion, critical path, blocked work; `--gantt` for a chart.
    Progress(ProgressArgs),
    /// Find conflicts between agent branches, file resolution tasks, merge what is clean.
    #[command(subcommand)]
    Merge(MergeCommand),
    /// Agents: list them, recover from dead ones, run a worker, give one a worktree.
    #[command(subcommand)]
    Agent(AgentCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(CompletionsArgs),
    /// Print the manual page (roff), e.g. `maos man | man -l -`.
    Man,
    /// Serve MAOS as Model Context Protocol tools over stdio (for Claude Code and others).
    Mcp(McpArgs),
    /// Answer an editor's hook: the event's JSON on stdin, the answer on stdout.
    #[command(subcommand)]
    Hook(HookCommand),
    /// Wire MAOS into Claude Code or Codex (hooks, MCP server); --remove takes it out again.
    #[command(subcommand)]
    Setup(SetupCommand),
    /// Guard commits: a git pre-commit hook that refuses files another agent holds.
    #[command(subcommand)]
    Guard(GuardCommand),
}

/// `maos guard ...`
#[derive(Debug, Subcommand)]
pub enum GuardCommand {
    /// Install the pre-commit hook (honours core.hooksPath; shared by every worktree of the
    /// repository; an existing hook is kept and runs after the check).
    Install,
    /// Remove the pre-commit hook, putting back the hook it chained.
    Uninstall,
    /// Check paths against other agents' locks and exclusive reservations (exit 5 if held).
    Check(GuardCheckArgs),
}

/// `maos guard check`
#[derive(Debug, Args)]
pub struct GuardCheckArgs {
    /// Check what `git commit` would commit (the staged paths).
    #[arg(long, required_unless_present = "paths")]
    pub staged: bool,
    /// Paths to check (relative to the current directory).
    pub paths: Vec<PathBuf>,
}

/// `maos setup ...`
#[derive(Debug, Subcommand)]
pub enum SetupCommand {
    /// Add MAOS's hooks to Claude Code's settings and `maos mcp` to its MCP servers.
    Claude(SetupClaudeArgs),
    /// Add `maos mcp` and MAOS's hooks to Codex's config.toml (trusting the hooks), and
    /// print the AGENTS.md paragraph.
    Codex(SetupCodexArgs),
    /// Add `maos mcp` (trusted) and MAOS's hooks to Gemini CLI's settings, and trust the
    /// repository's folder.
    Gemini(SetupClaudeArgs),
}

/// `maos setup claude`
#[derive(Debug, Args)]
pub struct SetupClaudeArgs {
    /// This repository: `.claude/settings.json` and `.mcp.json` (Gemini CLI:
    /// `.gemini/settings.json`) at the work tree's root (the default).
    #[arg(long, conflicts_with = "user")]
    pub project: bool,
    /// Every project of this user: `~/.claude/settings.json` and `~/.claude.json`
    /// (Gemini CLI: `~/.gemini/settings.json`).
    #[arg(long)]
    pub user: bool,
    /// Take MAOS's entries out again (the files as they were before, byte for byte, when
    /// nothing else changed in them).
    #[arg(long)]
    pub remove: bool,
}

/// `maos setup codex`
#[derive(Debug, Args)]
pub struct SetupCodexArgs {
    /// Take MAOS's server, hooks and their trust out of config.toml again.
    #[arg(long)]
    pub remove: bool,
}

/// `maos mcp`
#[derive(Debug, Args)]
pub struct McpArgs {
    /// Act as the agent without joining it (no registration, no leaving at the end): for a
    /// server started by the agent's own worker (`agent run --preset`).
    #[arg(long)]
    pub no_join: bool,
}

/// `maos hook ...`
#[derive(Debug, Subcommand)]
pub enum HookCommand {
    /// Claude Code: SessionStart, PreToolUse, PostToolUse, UserPromptSubmit, Stop, SessionEnd.
    Claude(ClientHookArgs),
    /// Codex: SessionStart, PreToolUse (apply_patch), PostToolUse, UserPromptSubmit, Stop.
    Codex(ClientHookArgs),
    /// Gemini CLI: SessionStart, BeforeTool (write_file, replace), AfterTool, BeforeAgent,
    /// AfterAgent, SessionEnd.
    Gemini(ClientHookArgs),
}

/// `maos hook claude|codex|gemini`
#[derive(Debug, Args)]
pub struct ClientHookArgs {
    /// The hook event, as the client's settings name it (`PreToolUse`, `BeforeTool`, …).
    pub event: String,
    /// Check edits against others' claims but take no lease on the edited file.
    #[arg(long)]
    pub no_auto_reserve: bool,
}

/// `maos status`
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Where the coordination state lives: `files` (`.maos/`, the default) or an etcd
    /// cluster shared by agents on several machines, `etcd://host:2379,host2:2379[/prefix]`
    /// (default prefix `maos`). Recorded in `.maos/maos.json`.
    #[arg(long, env = "MAOS_STORE", value_name = "STORE")]
    pub store: Option<String>,
}

/// `maos status`
#[derive(Debug, Args)]
pub struct StatusViewArgs {
    /// Refresh in place whenever `.maos/` changes (and every second), until Ctrl-C.
    #[arg(long)]
    pub watch: bool,
}

/// `maos completions`
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    pub shell: clap_complete::Shell,
}

/// `maos agent ...`
#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// List the registered agents: alive, stale, dead or gone, with role, task and heartbeat.
    List,
    /// Return tasks of dead or stale agents to the queue and release their locks, now.
    Recover(RecoverArgs),
    /// Join as this agent and run a command for each task claimed, until told to stop.
    Run(AgentRunArgs),
    /// Create branch maos/<ID>/work and a linked git worktree for an agent, and register it.
    Spawn(SpawnArgs),
    /// Remove an agent's worktree and branch once its work is merged.
    Retire(RetireArgs),
    /// Register an agent that runs no worker (a script, a person, another tool); joining
    /// again is a heartbeat. Messages sent to it while unknown reach its inbox.
    Join(JoinArgs),
    /// Mark an agent gone: its tasks go back to the queue, its automatic leases are released.
    Leave(LeaveArgs),
    /// The worker presets for headless coding agents (`agent run --preset`).
    #[command(subcommand)]
    Preset(PresetCommand),
}

/// `maos metrics`
#[derive(Debug, Args)]
pub struct MetricsArgs {
    /// Write them to DIR/maos.prom (atomically, for node_exporter's textfile collector)
    /// instead of printing them.
    #[arg(long, value_name = "DIR")]
    pub textfile: Option<std::path::PathBuf>,
}

/// `maos store ...`
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Move every task, message, agent, position and held lock to another store (`files`
    /// or `etcd://host:port,…[/prefix]`) and make it the workspace's; refused while agents
    /// run. The old state is put aside (files under .maos/migrated/, etcd keys deleted).
    Migrate(StoreMigrateArgs),
}

/// `maos store migrate`
#[derive(Debug, Args)]
pub struct StoreMigrateArgs {
    /// The store to move to.
    #[arg(long, value_name = "STORE")]
    pub to: String,
}

/// `maos journal ...`
#[derive(Debug, Subcommand)]
pub enum JournalCommand {
    /// Check every entry's hash and its link to the one before; name the first bad entry
    /// (exit 1), else print the number of entries and the last hash.
    Verify,
    /// Archive and remove old segments (`archive/journal/`); the chain is verified from the
    /// last entry removed on. The current segment is always kept.
    Prune(JournalPruneArgs),
}

/// `maos journal prune`
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("keep").required(true)))]
pub struct JournalPruneArgs {
    /// Keep the newest N segments (8 MiB each by default).
    #[arg(long, value_name = "N", group = "keep")]
    pub keep_segments: Option<usize>,
    /// Keep the segments holding entries of the last DURATION (`30d`).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, group = "keep")]
    pub older_than: Option<std::time::Duration>,
}

/// `maos events`
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Keep printing new events as they are journaled (without --since: only new ones).
    #[arg(long, short)]
    pub follow: bool,
    /// Only events of the last DURATION (`10m`, `2h`, `7d`).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub since: Option<std::time::Duration>,
    /// Only events whose kind matches GLOB (`task.*`, `lock.stolen`); repeatable.
    #[arg(long, value_name = "GLOB")]
    pub kind: Vec<String>,
    /// With --follow: stop after this long without a new event.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<std::time::Duration>,
}

/// `maos hooks ...`
#[derive(Debug, Subcommand)]
pub enum HooksCommand {
    /// The hooks configured in `.maos/hooks.toml`.
    List,
    /// Run the hooks that match EVENT (a kind such as `task.completed`) now, on a sample
    /// event, and report each one's outcome (exit 1 if any failed).
    Test(HooksTestArgs),
    /// Run hooks for new journal entries until the journal is quiet (what MAOS starts on
    /// its own when an entry matches a hook; returns at once if a runner is alive).
    Run(HooksRunArgs),
}

/// `maos hooks test`
#[derive(Debug, Args)]
pub struct HooksTestArgs {
    /// The event kind to try (`task.completed`, `lock.stolen`, …).
    pub event: String,
}

/// `maos hooks run`
#[derive(Debug, Args)]
pub struct HooksRunArgs {
    /// Leave after the journal has been quiet this long (default 10s).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub idle: Option<std::time::Duration>,
}

/// `maos snapshot ...`
#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Copy `.maos/` at one moment (every kernel lock held) into FILE (default:
    /// `.maos/snapshots/<time>.tar.gz`).
    Create(SnapshotCreateArgs),
    /// The snapshots in `.maos/snapshots/`.
    List,
    /// Replace `.maos/` with a snapshot (its journal verified first; the replaced one kept
    /// beside it). Refused while agents are alive unless --force.
    Restore(SnapshotRestoreArgs),
}

/// `maos snapshot create`
#[derive(Debug, Args)]
pub struct SnapshotCreateArgs {
    /// Where to write it.
    pub file: Option<PathBuf>,
}

/// `maos snapshot restore`
#[derive(Debug, Args)]
pub struct SnapshotRestoreArgs {
    /// The snapshot.
    pub file: PathBuf,
    /// Restore even while agents are alive.
    #[arg(long)]
    pub force: bool,
}

/// `maos vote ...`
#[derive(Debug, Subcommand)]
pub enum VoteCommand {
    /// Put a proposal to a vote; prints its id.
    Propose(ProposeArgs),
    /// Vote yes or no (once).
    Cast(CastArgs),
    /// A proposal's votes and outcome.
    Show(ProposalArg),
}

/// `maos vote propose`
#[derive(Debug, Args)]
pub struct ProposeArgs {
    /// What is proposed.
    pub text: String,
    /// Who votes: `role:<role>` (its holders now) or agent ids separated by commas.
    #[arg(long, value_name = "VOTERS")]
    pub voters: String,
    /// Yes votes that approve: a number, or `majority`.
    #[arg(long, value_name = "N|majority", default_value = "majority")]
    pub quorum: String,
    /// Undecided after this long (e.g. 2h), it expires.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub deadline: Option<std::time::Duration>,
}

/// `maos vote cast`
#[derive(Debug, Args)]
pub struct CastArgs {
    /// The proposal.
    pub id: String,
    /// `yes` or `no`.
    #[arg(value_parser = ["yes", "no"])]
    pub vote: String,
    /// Why.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
}

/// A proposal id.
#[derive(Debug, Args)]
pub struct ProposalArg {
    /// The proposal.
    pub id: String,
}

/// `maos agent join`
#[derive(Debug, Args)]
pub struct JoinArgs {
    /// The agent id.
    pub id: String,
    /// Its role (messages sent to the role reach it).
    #[arg(long, value_name = "ROLE")]
    pub role: Option<String>,
    /// A capability it has (repeatable).
    #[arg(long = "capability", value_name = "CAP")]
    pub capabilities: Vec<String>,
}

/// `maos agent leave`
#[derive(Debug, Args)]
pub struct LeaveArgs {
    /// The agent id.
    pub id: String,
}

/// `maos inbox`
#[derive(Debug, Args)]
pub struct InboxArgs {
    /// Leave the messages unread.
    #[arg(long, conflicts_with = "watch")]
    pub peek: bool,
    /// Every message ever addressed to this agent, read or not (nothing is marked).
    #[arg(long, conflicts_with_all = ["peek", "watch"])]
    pub all: bool,
    /// Wait for the next messages when there are none, print them, and exit.
    #[arg(long)]
    pub watch: bool,
    /// With --watch: exit 3 when this much time passes first (e.g. 30s).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "watch")]
    pub timeout: Option<std::time::Duration>,
}

/// `maos agent preset ...`
#[derive(Debug, Subcommand)]
pub enum PresetCommand {
    /// Print a built-in preset (a TOML file to copy and change).
    Show {
        /// `claude` or `codex`.
        name: String,
    },
    /// List the built-in presets.
    List,
}

/// `maos agent recover`
#[derive(Debug, Args)]
pub struct RecoverArgs {
    /// A task claimed this many times is marked failed instead of returned.
    #[arg(long, value_name = "N", default_value_t = maos_coordination::agents::DEFAULT_MAX_ATTEMPTS)]
    pub max_attempts: u32,
}

/// `maos agent run`
#[derive(Debug, Args)]
pub struct AgentRunArgs {
    /// Claim only tasks for this role (or needing none).
    #[arg(long, value_name = "ROLE")]
    pub role: Option<String>,
    /// Run one task, then exit (exit 4 if nothing is ready).
    #[arg(long, conflicts_with = "until_idle")]
    pub once: bool,
    /// Exit when no task is ready and none is running anywhere.
    #[arg(long)]
    pub until_idle: bool,
    /// Kill the command and fail the attempt after this many seconds.
    #[arg(long, value_name = "S", value_parser = parse_duration)]
    pub task_timeout: Option<std::time::Duration>,
    /// Claims after which a failing task stays failed.
    #[arg(long, value_name = "N", default_value_t = maos_coordination::agents::DEFAULT_MAX_ATTEMPTS)]
    pub max_attempts: u32,
    /// Heartbeat interval in seconds.
    #[arg(long, value_name = "S", default_value = "5", value_parser = parse_duration)]
    pub heartbeat: std::time::Duration,
    /// With --until-idle: say every SECS what the worker waits for (tasks others hold).
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_duration)]
    pub report_every: std::time::Duration,
    /// A capability to register (repeatable).
    #[arg(long = "capability", value_name = "C")]
    pub capabilities: Vec<String>,
    /// Run a headless coding agent per task: `claude` (claude -p), `codex` (codex exec), or
    /// the path of a preset file (`maos agent preset show claude` prints one to start from).
    #[arg(long, value_name = "NAME|FILE", conflicts_with = "command")]
    pub preset: Option<String>,
    /// The command and its arguments, after `--`.
    #[arg(
        last = true,
        required_unless_present = "preset",
        value_name = "COMMAND"
    )]
    pub command: Vec<String>,
}

/// `maos agent spawn`
#[derive(Debug, Args)]
pub struct SpawnArgs {
    /// The agent id.
    pub id: String,
    /// Its role.
    #[arg(long, value_name = "ROLE")]
    pub role: Option<String>,
    /// Branch from this revision (default: the main worktree's HEAD).
    #[arg(long, value_name = "REV")]
    pub from: Option<String>,
    /// Where the worktree goes (default: <repo>.worktrees/<ID> beside the repository).
    #[arg(long, value_name = "DIR")]
    pub path: Option<PathBuf>,
}

/// `maos agent retire`
#[derive(Debug, Args)]
pub struct RetireArgs {
    /// The agent id.
    pub id: String,
    /// The branch its work must be merged into (default: the main worktree's branch).
    #[arg(long, value_name = "BRANCH")]
    pub into: Option<String>,
    /// Give back the tasks it holds in progress (to the queue) and release its locks first.
    #[arg(long)]
    pub release: bool,
    /// Retire even while the agent runs or holds work, its worktree has uncommitted changes,
    /// or its branch has commits not merged: they are lost.
    #[arg(long)]
    pub force: bool,
}

/// `maos merge ...`
#[derive(Debug, Subcommand)]
pub enum MergeCommand {
    /// What merging SOURCE into TARGET takes: strategy, conflicts with agents, clean files.
    /// Changes nothing.
    Prepare(MergePair),
    /// Merge SOURCE into TARGET under the merge lock (exit 5 with the conflicts if not clean).
    Run(MergeRunArgs),
    /// File one resolution task per conflicted file, assigned to a suggested agent.
    Resolve(MergePair),
    /// Check every pair of branches (default: local branches under maos/) for conflicts.
    Forecast(ForecastArgs),
}

/// Two branches.
#[derive(Debug, Args)]
pub struct MergePair {
    /// The branch to merge.
    pub source: String,
    /// The branch to merge into.
    pub target: String,
}

/// `maos merge run`
#[derive(Debug, Args)]
pub struct MergeRunArgs {
    #[command(flatten)]
    pub pair: MergePair,
    /// The merge commit's message (default: git's `Merge branch 'SOURCE' into TARGET`).
    #[arg(long, short, value_name = "M")]
    pub message: Option<String>,
    /// Merge only if this proposal (`maos vote propose`) was approved (exit 5 otherwise).
    #[arg(long, value_name = "PROPOSAL")]
    pub require_approval: Option<String>,
}

/// `maos merge forecast`
#[derive(Debug, Args)]
pub struct ForecastArgs {
    /// Branches to check (default: every local branch under `maos/`).
    pub branches: Vec<String>,
    /// Print the forecast as a Graphviz graph (branches as nodes, conflicts as edges labelled
    /// with their files).
    #[arg(long, conflicts_with = "svg")]
    pub dot: bool,
    /// Draw the forecast into FILE as SVG (needs Graphviz's `dot`).
    #[arg(long, value_name = "FILE")]
    pub svg: Option<std::path::PathBuf>,
}

/// `maos task ...`
#[derive(Debug, Subcommand)]
pub enum TaskCommand {
    /// Create a task (blocked until its dependencies are completed).
    Add(TaskAddArgs),
    /// List tasks, filtered by status, assignee or tag.
    List(TaskListArgs),
    /// Show one task with its dependencies, dependents and history.
    Show(TaskIdArg),
    /// List the tasks ready to be claimed, best first (priority, then age).
    Ready(TaskReadyArgs),
    /// Claim a task (or the best ready one) for this agent; exit 5 if another agent got it.
    Claim(ClaimArgs),
    /// pending → in_progress (claims it for this agent).
    Start(StatusArgs),
    /// in_progress → review.
    Review(StatusArgs),
    /// → completed; dependents whose dependencies are all completed become ready.
    Done(StatusArgs),
    /// → failed.
    Fail(StatusArgs),
    /// → blocked, with the reason as --note.
    Block(StatusArgs),
    /// blocked → pending, when every dependency is completed.
    Unblock(StatusArgs),
    /// failed → pending (back in the ready queue).
    Retry(StatusArgs),
    /// → cancelled.
    Cancel(StatusArgs),
    /// Change fields and dependencies (every change goes into the history).
    Update(TaskUpdateArgs),
    /// Create many tasks from JSON Lines (one task object a line; `-` reads stdin), all or none.
    Import(TaskImportArgs),
    /// Print every task as JSON Lines (one record a line), which `task import` reads back.
    Export(TaskListArgs),
}

/// `maos task import`
#[derive(Debug, Args)]
pub struct TaskImportArgs {
    /// The file (`-`: standard input).
    pub file: PathBuf,
}

/// `maos task add`
#[derive(Debug, Args)]
pub struct TaskAddArgs {
    /// What to do (1–500 characters).
    pub title: String,
    /// Details (up to 5,000 characters).
    #[arg(long, value_name = "TEXT", default_value = "")]
    pub description: String,
    /// low, medium, high or critical.
    #[arg(long, value_name = "P", default_value = "medium")]
    pub priority: maos_coordination::Priority,
    /// A task that must be completed first (repeatable).
    #[arg(long = "depends-on", value_name = "ID")]
    pub depends_on: Vec<String>,
    /// The agent who should do it; `auto`: the capable agent (role, --requires) with the
    /// least work in progress, then the best record.
    #[arg(long = "assign", value_name = "AGENT")]
    pub assign: Option<String>,
    /// The role an agent needs to claim it.
    #[arg(long, value_name = "ROLE")]
    pub role: Option<String>,
    /// A label (repeatable).
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// A capability an agent needs to claim it (repeatable).
    #[arg(long = "requires", value_name = "CAP")]
    pub requires: Vec<String>,
    /// A file it is about, optionally with lines: PATH, PATH:LINE or PATH:START-END (repeatable).
    #[arg(long = "file", value_name = "PATH[:START-END]")]
    pub files: Vec<maos_coordination::task::FileRef>,
    /// Choose the id instead of a generated one.
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,
}

/// `maos task list`
#[derive(Debug, Args)]
pub struct TaskListArgs {
    /// Only tasks in this status.
    #[arg(long, value_name = "S")]
    pub status: Option<maos_coordination::task::Status>,
    /// Only tasks assigned to this agent.
    #[arg(long, value_name = "AGENT")]
    pub assignee: Option<String>,
    /// Only tasks with this tag.
    #[arg(long, value_name = "TAG")]
    pub tag: Option<String>,
}

/// A task id.
#[derive(Debug, Args)]
pub struct TaskIdArg {
    /// The task id.
    pub id: String,
}

/// `maos task ready`
#[derive(Debug, Args)]
pub struct TaskReadyArgs {
    /// Only tasks an agent with this role may claim (needing this role or none).
    #[arg(long, value_name = "ROLE")]
    pub role: Option<String>,
}

/// `maos task claim`
#[derive(Debug, Args)]
pub struct ClaimArgs {
    /// The task; default: the best ready task this agent may take.
    pub id: Option<String>,
    /// The role this agent holds (tasks needing another role are skipped); default: the role
    /// it is registered with.
    #[arg(long, value_name = "ROLE")]
    pub role: Option<String>,
    /// A capability this agent has (repeatable); tasks requiring others are skipped;
    /// default: the capabilities it is registered with.
    #[arg(long = "capability", value_name = "C")]
    pub capabilities: Vec<String>,
}

/// A status change.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The task id.
    pub id: String,
    /// Why (kept in the history; for `block`, the reason).
    #[arg(long, value_name = "TEXT")]
    pub note: Option<String>,
}

/// `maos task update`
#[derive(Debug, Args)]
pub struct TaskUpdateArgs {
    /// The task id.
    pub id: String,
    /// New title.
    #[arg(long, value_name = "T")]
    pub title: Option<String>,
    /// New description.
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,
    /// New priority.
    #[arg(long, value_name = "P")]
    pub priority: Option<maos_coordination::Priority>,
    /// Assign to this agent.
    #[arg(long = "assign", value_name = "AGENT", conflicts_with = "unassign")]
    pub assign: Option<String>,
    /// Remove the assignee.
    #[arg(long)]
    pub unassign: bool,
    /// Require this role.
    #[arg(long, value_name = "ROLE")]
    pub role: Option<String>,
    /// Add a dependency (repeatable); refused if it does not exist or would close a cycle.
    #[arg(long = "add-dep", value_name = "ID")]
    pub add_deps: Vec<String>,
    /// Remove a dependency (repeatable).
    #[arg(long = "remove-dep", value_name = "ID")]
    pub remove_deps: Vec<String>,
    /// Add a tag (repeatable).
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Remove a tag (repeatable).
    #[arg(long = "remove-tag", value_name = "TAG")]
    pub remove_tags: Vec<String>,
    /// Add a file reference (repeatable).
    #[arg(long = "file", value_name = "PATH[:START-END]")]
    pub files: Vec<maos_coordination::task::FileRef>,
    /// Why (kept in the history).
    #[arg(long, value_name = "TEXT")]
    pub note: Option<String>,
}

/// `maos progress`
#[derive(Debug, Args)]
pub struct ProgressArgs {
    /// Print a Mermaid gantt chart instead of the summary.
    #[arg(long, conflicts_with_all = ["dot", "mermaid_graph", "svg"])]
    pub gantt: bool,
    /// Print the task graph as Graphviz `dot` (status as colour, the critical path bold).
    #[arg(long, conflicts_with_all = ["mermaid_graph", "svg"])]
    pub dot: bool,
    /// Print the task graph as a Mermaid flowchart.
    #[arg(long, conflicts_with = "svg")]
    pub mermaid_graph: bool,
    /// Draw the task graph into FILE as SVG (needs Graphviz's `dot`).
    #[arg(long, value_name = "FILE")]
    pub svg: Option<std::path::PathBuf>,
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
    /// End someone else's lock before its expiry (an operator's act: recorded and announced
    /// on the `locks` broadcast topic).
    Break(BreakArgs),
}

/// `maos reserve`
#[derive(Debug, Args)]
pub struct ReserveArgs {
    /// Gitignore-style patterns relative to the repository root (`src/db/**`, `*.sql`,
    /// `docs/`); all are reserved or none.
    #[arg(required = true, value_name = "PATTERN")]
    pub patterns: Vec<String>,
    /// Shared: coexists with other shared reservations, never with exclusive ones or locks.
    #[arg(long)]
    pub shared: bool,
    /// How long the reservation lives unless renewed (reserving again renews): `90s`, `30m`,
    /// `2h`, or seconds.
    #[arg(long, value_name = "DURATION", default_value = "30m", value_parser = parse_duration)]
    pub ttl: std::time::Duration,
    /// Why (shown to other agents).
    #[arg(long, value_name = "TEXT", default_value = "")]
    pub reason: String,
    /// Wait up to this long for what stands in the way (exit 3 after); 0: fail at once (exit 5).
    #[arg(long, value_name = "DURATION", default_value = "0", value_parser = parse_duration)]
    pub wait: std::time::Duration,
}

/// `maos unreserve`
#[derive(Debug, Args)]
pub struct UnreserveArgs {
    /// The patterns to release (as reserved, or in the same normalized form).
    #[arg(
        value_name = "PATTERN",
        required_unless_present = "all",
        conflicts_with = "all"
    )]
    pub patterns: Vec<String>,
    /// Release every reservation of this agent.
    #[arg(long)]
    pub all: bool,
    /// Operator break: take out the reservations of PATTERN whoever holds them (announced on
    /// broadcast/locks with --reason).
    #[arg(long = "break", requires = "reason", conflicts_with = "all")]
    pub break_them: bool,
    /// With --break: only this agent's.
    #[arg(long, value_name = "AGENT", requires = "break_them")]
    pub owner: Option<String>,
    /// With --break: why (recorded in the announcement).
    #[arg(long, value_name = "TEXT", requires = "break_them")]
    pub reason: Option<String>,
}

/// `maos lock break`
#[derive(Debug, Args)]
pub struct BreakArgs {
    /// The resource.
    pub resource: String,
    /// Why the lease is broken (announced to every agent).
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
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
    #[arg(long, value_name = "SECS", default_value = "300", value_parser = parse_duration)]
    pub ttl: std::time::Duration,
    /// Wait up to this many seconds for the lock (exit 3 after); 0: fail at once (exit 5).
    #[arg(long, value_name = "SECS", default_value = "0", value_parser = parse_duration)]
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
    #[arg(long, value_name = "SECS", default_value = "300", value_parser = parse_duration)]
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
    /// Acknowledge a message (once; a second acknowledgement changes nothing).
    Ack(AckArgs),
    /// Show a message and, for each recipient, whether it was delivered, read, acknowledged.
    Show(MessageRefArgs),
    /// List the acknowledgements past their deadline (and tell each sender once).
    Overdue,
    /// Print the whole thread a message belongs to, in order.
    Thread(MessageRefArgs),
    /// Move old messages, whole segments of 1,000, into compressed archives under
    /// .maos/archive/ (never one still awaiting an acknowledgement).
    Prune(PruneArgs),
    /// Find messages whose payload or metadata matches a pattern, archives included.
    Search(SearchArgs),
}

/// `maos msg prune`
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("rule").required(true).args(["keep", "older_than"])))]
pub struct PruneArgs {
    /// The channel (or --all).
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub channel: Option<String>,
    /// Every channel.
    #[arg(long)]
    pub all: bool,
    /// Keep at least the newest N messages of each channel.
    #[arg(long, value_name = "N")]
    pub keep: Option<u64>,
    /// Prune messages older than this (e.g. 7d).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub older_than: Option<std::time::Duration>,
    /// Prune messages addressed to agents that have not read them too (by default such a
    /// message stops the prune there).
    #[arg(long)]
    pub drop_unread: bool,
}

/// `maos msg search`
#[derive(Debug, Args)]
pub struct SearchArgs {
    /// A regular expression (e.g. `deploy|release`, `(?i)urgent`); a plain word matches
    /// wherever it appears.
    pub pattern: String,
    /// Only this channel.
    #[arg(long, value_name = "CHANNEL")]
    pub channel: Option<String>,
    /// Only messages from this agent.
    #[arg(long, value_name = "AGENT")]
    pub from: Option<String>,
    /// Only messages sent within this long (e.g. 1d).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub since: Option<std::time::Duration>,
}

/// A message: its channel and sequence number.
#[derive(Debug, Args)]
pub struct MessageRefArgs {
    /// The channel.
    pub channel: String,
    /// The message's sequence number.
    pub seq: u64,
}

/// `maos msg ack`
#[derive(Debug, Args)]
pub struct AckArgs {
    #[command(flatten)]
    pub message: MessageRefArgs,
    /// What to tell the sender.
    #[arg(long, value_name = "TEXT")]
    pub note: Option<String>,
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
    /// Send even to an agent that has not joined yet (it reads the message when it joins)
    /// or a role no one holds yet.
    #[arg(long)]
    pub allow_unknown: bool,
    /// Ask each recipient to acknowledge it (`maos msg ack`).
    #[arg(long)]
    pub ack: bool,
    /// With --ack: an acknowledgement not made within this time is overdue (e.g. 10m).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "ack")]
    pub ack_within: Option<std::time::Duration>,
    /// Reply to this message of the same channel (the reply joins its thread).
    #[arg(long, value_name = "SEQ")]
    pub reply_to: Option<u64>,
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
    /// Start with the messages pruned into the archives (the channel's whole history).
    #[arg(long, conflicts_with_all = ["after", "new"])]
    pub archived: bool,
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
    #[arg(long, value_name = "SECS", value_parser = parse_duration)]
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

/// Parses a non-negative duration (see [`maos_coordination::duration::parse`]).
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    maos_coordination::duration::parse(s)
}
