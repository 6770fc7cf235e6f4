//! `maos store migrate --to STORE`

use maos_coordination::migrate;
use maos_coordination::store::StoreSpec;

use crate::args::StoreCommand;
use crate::context::Context;
use crate::error::CliError;
use crate::output;

pub fn run(ctx: &Context, command: StoreCommand) -> Result<(), CliError> {
    match command {
        StoreCommand::Migrate(args) => {
            let ws = ctx.workspace_in_any_store()?;
            let to = StoreSpec::parse(&args.to)?;
            let done = migrate::migrate(&ws, &to)?;
            if ctx.json {
                return output::json(&done);
            }
            output::line(&format!(
                "moved to {}: {} task(s), {} message(s) ({} archived) in {} channel(s), {} agent(s), {} position(s), {} lock(s), {} acknowledgement and vote record(s), {} journal entries",
                done.to,
                done.tasks,
                done.messages,
                done.archived,
                done.channels,
                done.agents,
                done.positions,
                done.locks,
                done.records,
                done.journal_entries
            ))?;
            output::line(&format!(
                "the old state ({}): {}",
                done.from, done.old_state
            ))
        }
    }
}
