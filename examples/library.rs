//! The library in a few lines: a workspace, a direct message, a durable subscription.
//!
//! Run: `cargo run -p maos-coordination --example library`
use std::time::Duration;

use maos_coordination::Workspace;
use maos_coordination::channel::{Channel, ChannelName, Draft, WatchOptions};
use serde_json::json;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let ws = Workspace::init(dir.path())?.workspace; // or Workspace::discover(&cwd)
    let review = Channel::open(&ws, ChannelName::new("review")?);
    review.send(
        "coder-1",
        Draft::new(json!({"branch": "maos/coder-1/work"})).to("reviewer"),
    )?;
    let mut inbox = review.subscribe("reviewer", WatchOptions::default())?; // resumes at saved cursor
    while let Some(batch) = inbox.next_batch(Some(Duration::from_millis(200)))? {
        for m in batch.messages.iter().filter(|m| m.is_for("reviewer", &[])) {
            println!("#{} from {}: {}", m.seq, m.sender, m.payload);
        }
    }
    Ok(())
}
