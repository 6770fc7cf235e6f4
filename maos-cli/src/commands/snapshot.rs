//! `maos snapshot create|list|restore`.

use maos_coordination::snapshot::{self, SnapshotError};

use crate::args::SnapshotCommand;
use crate::context::Context;
use crate::error::CliError;
use crate::output;

pub fn run(ctx: &Context, cmd: SnapshotCommand) -> Result<(), CliError> {
    match cmd {
        SnapshotCommand::Create(args) => {
            let ws = ctx.workspace()?;
            let taken = snapshot::create(&ws, &ctx.agent, args.file.as_deref()).map_err(err)?;
            if ctx.json {
                return output::json(&taken);
            }
            let entries = taken.manifest.as_ref().map_or(0, |m| m.journal_entries);
            output::line(&format!(
                "snapshot {} ({} bytes, journal entry {entries})",
                taken.path.display(),
                taken.bytes
            ))
        }
        SnapshotCommand::List => {
            let ws = ctx.workspace()?;
            let listed = snapshot::list(&ws).map_err(err)?;
            if ctx.json {
                return output::json(&listed);
            }
            let rows: Vec<[String; 5]> = listed
                .iter()
                .map(|l| {
                    let m = l.manifest.as_ref();
                    [
                        l.path.display().to_string(),
                        m.map_or("unreadable".into(), |m| output::relative(m.taken_at)),
                        m.map_or(String::new(), |m| m.by.clone()),
                        m.map_or(String::new(), |m| m.journal_entries.to_string()),
                        l.bytes.to_string(),
                    ]
                })
                .collect();
            output::table(&["FILE", "TAKEN", "BY", "JOURNAL", "BYTES"], &rows)
        }
        SnapshotCommand::Restore(args) => {
            let root = ctx.init_root()?;
            let restored = snapshot::restore(&root, &args.file, args.force).map_err(err)?;
            if ctx.json {
                return output::json(&restored);
            }
            output::line(&format!(
                "restored {} (taken {}, journal entry {}){}",
                args.file.display(),
                restored.manifest.taken_at,
                restored.manifest.journal_entries,
                restored
                    .previous
                    .map(|p| format!("; the replaced workspace is in {}", p.display()))
                    .unwrap_or_default()
            ))
        }
    }
}

fn err(e: SnapshotError) -> CliError {
    let hint = matches!(e, SnapshotError::AgentsAlive { .. })
        .then_some("`maos agent list` shows them; `--force` restores anyway");
    let error = CliError::new(e.kind().into(), e);
    match hint {
        Some(hint) => error.with_hint(hint),
        None => error,
    }
}
