//! `maos status`: the workspace at a glance.

use maos_coordination::channel;
use serde_json::json;

use crate::context::Context;
use crate::error::CliError;
use crate::output;

pub fn run(ctx: &Context) -> Result<(), CliError> {
    let ws = ctx.workspace()?;
    let channels = channel::list_channels(&ws)?;
    if ctx.json {
        return output::json(&json!({
            "workspace": ws.root(),
            "format_version": ws.config().format_version,
            "agent": ctx.agent,
            "channels": channels,
        }));
    }
    output::line(&format!(
        "workspace  {} (format {})",
        ws.root().display(),
        ws.config().format_version
    ))?;
    output::line(&format!("agent      {}", ctx.agent))?;
    output::line("")?;
    if channels.is_empty() {
        return output::line("channels   none yet");
    }
    let total: u64 = channels.iter().map(|c| c.messages).sum();
    output::line(&format!(
        "channels   {} with {total} messages",
        channels.len()
    ))?;
    let rows: Vec<Vec<String>> = channels
        .iter()
        .map(|c| {
            vec![
                format!("  {}", c.name),
                c.messages.to_string(),
                c.last_activity.map_or("-".into(), output::relative),
            ]
        })
        .collect();
    output::table(&["  CHANNEL", "MESSAGES", "LAST ACTIVITY"], &rows)
}
