//! `maos metrics [--textfile DIR]`

use maos_coordination::atomic::{self, Durability};
use maos_coordination::metrics;

use crate::args::MetricsArgs;
use crate::context::Context;
use crate::error::CliError;
use crate::output;

pub fn run(ctx: &Context, args: MetricsArgs) -> Result<(), CliError> {
    let ws = ctx.workspace()?;
    let families = metrics::gather(&ws)?;
    if ctx.json {
        return output::json(&families);
    }
    let text = metrics::exposition(&families);
    match args.textfile {
        // Staged in the same folder and renamed: node_exporter never reads half a file (it
        // ignores files not ending in `.prom`, so the staging file is not read either).
        Some(dir) => {
            atomic::write_replace(
                &dir,
                &dir.join("maos.prom"),
                text.as_bytes(),
                Durability::Buffered,
            )?;
            Ok(())
        }
        None => output::line(text.trim_end_matches('\n')),
    }
}
