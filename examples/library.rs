//! The library in a few lines: a task claimed, a file locked while it is edited, the task
//! completed, a reviewer told — and the reviewer's durable inbox.
//!
//! Run: `cargo run -p maos-coordination --example library`
use std::time::Duration;

use maos_coordination::Workspace;
use maos_coordination::channel::{Channel, ChannelName, Draft, WatchOptions};
use maos_coordination::lock::{LockRequest, Locks};
use maos_coordination::task::{NewTask, Pick, Status, Tasks};
use serde_json::json;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let ws = Workspace::init(dir.path())?.workspace; // or Workspace::discover(&cwd)
    let tasks = Tasks::new(&ws);
    tasks.create("planner", NewTask::new("Add an index to users"), None)?;

    // ── what an agent does ──
    let task = tasks.claim("coder-1", Pick::best())?; // exactly one agent wins it
    let request = LockRequest::new("src/db.rs", "coder-1")?.purpose(&task.title);
    let guard = Locks::new(&ws).acquire(&request, Duration::from_secs(60))?; // waits in line
    println!("editing src/db.rs with fencing token {}", guard.token());
    drop(guard); // released here, synchronously
    tasks.set_status(&task.id, "coder-1", Status::Completed, None)?; // dependents become ready
    let review = Channel::open(&ws, ChannelName::new("review")?);
    review.send(
        "coder-1",
        Draft::new(json!({"task": task.id})).to("reviewer"),
    )?;

    // ── what the reviewer sees ──
    let mut inbox = review.subscribe("reviewer", WatchOptions::default())?; // resumes at saved cursor
    while let Some(batch) = inbox.next_batch(Some(Duration::from_millis(200)))? {
        for m in batch.messages.iter().filter(|m| m.is_for("reviewer", &[])) {
            println!("#{} from {}: {}", m.seq, m.sender, m.payload);
        }
    }
    Ok(())
}
