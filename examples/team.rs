//! A small team, with only the public library API: a planner files a dependency graph of
//! tasks; three worker processes (this program started again with `--worker ID`) claim and
//! do them, lock the files they touch, and tell each other on a channel what they finished;
//! the planner follows the channel, then prints the progress and a Mermaid gantt chart.
//!
//! Run: `cargo run -p maos-agent --example team` (add a directory to keep the workspace).
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use maos_agent::coordination::Workspace;
use maos_agent::coordination::channel::{Channel, ChannelName, Draft, WatchOptions};
use maos_agent::coordination::progress;
use maos_agent::coordination::task::{FileRef, NewTask, Tasks};
use maos_agent::{Agent, JoinOptions, Outcome, RunMode, Worker, WorkerOptions};
use serde_json::json;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, id, root] = args.as_slice()
        && flag == "--worker"
    {
        return worker(id, Path::new(root));
    }
    let (_keep, root) = match args.first() {
        Some(dir) => (None, PathBuf::from(dir)),
        None => {
            let dir = tempfile::tempdir()?;
            let root = dir.path().to_owned();
            (Some(dir), root)
        }
    };
    maos_agent::coordination::fs::create_dir_all(&root)?;
    let ws = Workspace::init(&root)?.workspace;
    println!("workspace: {}", root.display());

    // The plan: design → (api, storage) → integrate → release notes; docs on the side.
    let tasks = Tasks::new(&ws);
    let add = |title: &str, deps: &[&str], file: &str| -> Result<String> {
        let new = NewTask {
            dependencies: deps.iter().map(|d| d.to_string()).collect(),
            files: vec![file.parse::<FileRef>()?],
            ..NewTask::new(title)
        };
        Ok(tasks.create("planner", new, None)?.id)
    };
    let design = add("Design the data model", &[], "docs/model.md")?;
    let api = add("Build the API", &[&design], "src/api.rs")?;
    let storage = add("Build the storage layer", &[&design], "src/db.rs")?;
    let integrate = add(
        "Integrate API and storage",
        &[&api, &storage],
        "src/main.rs",
    )?;
    add("Write the release notes", &[&integrate], "CHANGELOG.md")?;
    add("Write the user guide", &[], "docs/guide.md")?;

    let done = Channel::open(&ws, ChannelName::new("done")?);
    let mut follow = done.watch(0, WatchOptions::default())?;
    let exe = std::env::current_exe()?;
    let mut workers = Vec::new();
    for id in ["worker-1", "worker-2", "worker-3"] {
        workers.push(
            Command::new(&exe)
                .args(["--worker", id])
                .arg(&root)
                .spawn()?,
        );
    }
    let mut finished = 0;
    while finished < 6 {
        let Some(batch) = follow.next_batch(Some(Duration::from_secs(60)))? else {
            return Err("the workers went quiet".into());
        };
        for m in batch.messages {
            finished += 1;
            println!("[planner] heard from {}: {}", m.sender, m.payload["title"]);
        }
    }
    for mut w in workers {
        w.wait()?;
    }
    let listing = tasks.list()?;
    let report = progress::report(&listing);
    println!(
        "\n{} of {} tasks completed {}",
        report.by_status["completed"],
        report.total,
        progress::bar(report.completion_percentage, 30)
    );
    println!("\n{}", progress::gantt(&listing, jiff::Timestamp::now()));
    Ok(())
}

/// One worker process: join, claim until nothing is left, leave.
fn worker(id: &str, root: &Path) -> Result<()> {
    let ws = Workspace::open(root)?;
    let agent = Agent::join(&ws, id, JoinOptions::default())?;
    let done = Channel::open(&ws, ChannelName::new("done")?);
    let options = WorkerOptions {
        mode: RunMode::UntilIdle,
        ..WorkerOptions::default()
    };
    Worker::new(&agent, options).run(|ctx| {
        let file = ctx
            .task
            .files
            .first()
            .map_or("scratch", |f| f.path.as_str());
        // Lock the file before editing it; the guard releases it when dropped.
        let guard = match ctx.lock(file, Duration::from_secs(60), Duration::from_secs(30)) {
            Ok(guard) => guard,
            Err(e) => return Outcome::Failed(format!("cannot lock {file}: {e}")),
        };
        println!(
            "[{id}] {} (lock on {file}, fencing token {})",
            ctx.task.title,
            guard.token()
        );
        std::thread::sleep(Duration::from_millis(200)); // the work
        drop(guard);
        let note = Draft::new(json!({"task": ctx.task.id, "title": ctx.task.title}));
        match done.send(id, note) {
            Ok(_) => Outcome::Done,
            Err(e) => Outcome::Failed(format!("cannot report: {e}")),
        }
    })?;
    agent.leave()?;
    Ok(())
}
