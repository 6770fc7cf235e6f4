//! `maos init`

use maos_coordination::Workspace;
use serde_json::json;

use crate::context::Context;
use crate::error::CliError;
use crate::output;

pub fn run(ctx: &Context) -> Result<(), CliError> {
    let root = ctx.init_root()?;
    let done = Workspace::init(&root)?;
    if ctx.json {
        return output::json(&json!({
            "workspace": done.workspace.root(),
            "created": done.created,
            "excluded_from_git": done.excluded_from_git,
        }));
    }
    let dir = done.workspace.dir().display();
    if done.created {
        output::line(&format!("Initialized MAOS workspace in {dir}"))?;
    } else {
        output::line(&format!("MAOS workspace already initialized in {dir}"))?;
    }
    if done.excluded_from_git {
        output::line("Added .maos/ to the repository's info/exclude (runtime state, not source)")?;
    }
    Ok(())
}
