//! `maos deadlock check`

use maos_coordination::deadlock;
use serde_json::json;

use crate::args::DeadlockCommand;
use crate::context::Context;
use crate::error::CliError;
use crate::output;

pub fn run(ctx: &Context, command: DeadlockCommand) -> Result<(), CliError> {
    match command {
        DeadlockCommand::Check => check(ctx),
    }
}

fn check(ctx: &Context) -> Result<(), CliError> {
    let cycles = deadlock::detect(&ctx.workspace()?)?;
    if ctx.json {
        return output::json(&json!({
            "cycles": cycles.iter().map(|c| &c.agents).collect::<Vec<_>>(),
            "victims": cycles.iter().map(|c| &c.victim).collect::<Vec<_>>(),
            "details": cycles,
        }));
    }
    if cycles.is_empty() {
        return output::line("no deadlock");
    }
    for cycle in &cycles {
        output::line(&format!("deadlock: {}", cycle.describe()))?;
        output::line(&format!(
            "  victim: {} (the youngest waiter); it should release {}",
            cycle.victim,
            cycle
                .victim_holds()
                .iter()
                .map(|r| format!("`{r}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ))?;
    }
    Ok(())
}
