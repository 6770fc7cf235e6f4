//! `maos hooks list|test|run`: the event hooks of `.maos/hooks.toml`.

use jiff::Timestamp;
use maos_coordination::journal::{self, Entry, Event, hooks};

use crate::args::HooksCommand;
use crate::context::Context;
use crate::error::{CliError, Exit};
use crate::output;

pub fn run(ctx: &Context, cmd: HooksCommand) -> Result<(), CliError> {
    let ws = ctx.workspace()?;
    match cmd {
        HooksCommand::List => {
            let configured = hooks::load(&ws).map_err(hooks_error)?;
            if ctx.json {
                return output::json(&configured);
            }
            let rows: Vec<[String; 3]> = configured
                .iter()
                .map(|h| {
                    [
                        h.on.clone(),
                        h.run.join(" "),
                        maos_coordination::duration::words(h.timeout()),
                    ]
                })
                .collect();
            output::table(&["ON", "RUN", "TIMEOUT"], &rows)
        }
        HooksCommand::Test(args) => {
            let sample = Entry {
                n: 0,
                at: Timestamp::now(),
                id: "sample".into(),
                event: Event::new(args.event.clone())
                    .agent(ctx.agent.clone())
                    .subject("sample")
                    .data(serde_json::json!({ "sample": true })),
                pid: std::process::id(),
                late: false,
                prev: journal::GENESIS.into(),
                hash: journal::GENESIS.into(),
            };
            let ran = hooks::test(&ws, &sample).map_err(hooks_error)?;
            if ctx.json {
                output::json(&ran)?;
            } else if ran.is_empty() {
                output::line(&format!("no hook runs for `{}`", args.event))?;
            } else {
                for r in &ran {
                    let outcome = r.failure.as_deref().unwrap_or("ok");
                    output::line(&format!("{} → {}: {outcome}", r.on, r.run.join(" ")))?;
                }
            }
            let failed = ran.iter().filter(|r| r.failure.is_some()).count();
            if failed > 0 {
                return Err(CliError::new(
                    Exit::Error,
                    anyhow::anyhow!("{failed} of {} hook(s) failed", ran.len()),
                ));
            }
            Ok(())
        }
        HooksCommand::Run(args) => hooks::run(&ws, args.idle).map_err(hooks_error),
    }
}

fn hooks_error(e: hooks::HooksError) -> CliError {
    CliError::new(e.kind().into(), e)
}
