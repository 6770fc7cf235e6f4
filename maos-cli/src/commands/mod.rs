//! One module per subcommand; `run` dispatches.

mod init;
mod msg;
mod status;

use crate::args::Command;
use crate::context::Context;
use crate::error::CliError;

/// Runs one parsed command.
pub fn run(ctx: &Context, command: Command) -> Result<(), CliError> {
    match command {
        Command::Init => init::run(ctx),
        Command::Status => status::run(ctx),
        Command::Msg(cmd) => msg::run(ctx, cmd),
    }
}
