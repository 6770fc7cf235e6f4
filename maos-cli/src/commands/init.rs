//! `maos init`

use maos_coordination::Workspace;
use maos_coordination::store::StoreSpec;
use serde_json::json;

use crate::args::InitArgs;

use crate::context::Context;
use crate::error::CliError;
use crate::output;

pub fn run(ctx: &Context, args: InitArgs) -> Result<(), CliError> {
    let root = ctx.init_root()?;
    let store = match &args.store {
        Some(text) => StoreSpec::parse(text)?,
        None => StoreSpec::Files,
    };
    let done = Workspace::init_with_store(&root, &store)?;
    let store = done.workspace.store().spec();
    if ctx.json {
        return output::json(&json!({
            "workspace": done.workspace.root(),
            "store": store.to_string(),
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
    if !store.is_files() {
        output::line(&format!(
            "Coordination state lives in {store}: every agent of this repository, on any machine, shares it"
        ))?;
    }
    if done.excluded_from_git {
        output::line("Added .maos/ to the repository's info/exclude (runtime state, not source)")?;
    }
    Ok(())
}
