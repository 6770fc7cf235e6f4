//! One module per subcommand; `run` dispatches.

mod agent;
mod completions;
mod deadlock;
mod doctor;
mod event_hooks;
mod guard;
mod hook;
mod inbox;
mod init;
mod journal;
pub(crate) mod lock;
mod merge;
mod metrics;
pub(crate) mod msg;
mod progress;
mod reserve;
mod setup;
mod snapshot;
mod status;
mod store;
pub(crate) mod task;
mod vote;

use crate::args::Command;
use crate::context::Context;
use crate::error::CliError;

/// Runs one parsed command.
pub fn run(ctx: &Context, command: Command) -> Result<(), CliError> {
    match command {
        Command::Init(args) => init::run(ctx, args),
        Command::Status(args) => status::run(ctx, args),
        Command::Ui => crate::ui::run(ctx),
        Command::Doctor(args) => doctor::run(ctx, args),
        Command::Msg(cmd) => msg::run(ctx, cmd),
        Command::Inbox(args) => inbox::run(ctx, args),
        Command::Vote(cmd) => vote::run(ctx, cmd),
        Command::Metrics(args) => metrics::run(ctx, args),
        Command::Journal(cmd) => journal::run(ctx, cmd),
        Command::Store(cmd) => store::run(ctx, cmd),
        Command::Events(args) => journal::events(ctx, args),
        Command::Hooks(cmd) => event_hooks::run(ctx, cmd),
        Command::Snapshot(cmd) => snapshot::run(ctx, cmd),
        Command::Lock(cmd) => lock::run(ctx, cmd),
        Command::Reserve(args) => reserve::reserve(ctx, args),
        Command::Unreserve(args) => reserve::unreserve(ctx, args),
        Command::Reservations => reserve::list(ctx),
        Command::Deadlock(cmd) => deadlock::run(ctx, cmd),
        Command::Task(cmd) => task::run(ctx, cmd),
        Command::Progress(args) => progress::run(ctx, args),
        Command::Merge(cmd) => merge::run(ctx, cmd),
        Command::Agent(cmd) => agent::run(ctx, cmd),
        Command::Completions(args) => completions::completions(args),
        Command::Man => completions::man(),
        Command::Mcp(args) => crate::mcp::serve(ctx, &args),
        Command::Hook(cmd) => hook::run(ctx, cmd),
        Command::Setup(cmd) => setup::run(ctx, cmd),
        Command::Guard(cmd) => guard::run(ctx, cmd),
    }
}
