//! What watching costs: the CPU `maos ui` uses (its Tasks pane shown, in a real terminal — a
//! tmux pane) beside `maos status --watch` (the baseline, the text view), under the same load,
//! on a small workspace and on one of 10,000 tasks: nothing changing; another process
//! sending 10 messages a second; another process claiming and completing 5 tasks a second.
//! Each viewer runs alone, in turn, the loads measured from /proc over the same window.
//!
//! `cargo bench -p maos-cli --bench dashboard [-- --quick]` (needs tmux).
// Benchmarks build fixtures and write files by hand.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MAOS: &str = env!("CARGO_BIN_EXE_maos");

#[derive(Clone, Copy)]
enum Load {
    Idle,
    Messages,
    Tasks,
}

impl Load {
    fn label(self) -> &'static str {
        match self {
            Load::Idle => "nothing changes",
            Load::Messages => "10 messages/s",
            Load::Tasks => "5 tasks done/s",
        }
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    if Command::new("tmux").arg("-V").output().is_err() {
        println!("dashboard bench: tmux is not installed; skipped");
        return;
    }
    let window = Duration::from_secs(if quick { 4 } else { 10 });
    println!(
        "dashboard — CPU of the viewer over {window:?} per row, % of one core ({}{})",
        std::env::consts::OS,
        if quick { ", quick" } else { "" }
    );
    println!(
        "{:<14} {:<16} {:>10} {:>16} {:>7}",
        "workspace", "load", "maos ui", "status --watch", "ratio"
    );
    for tasks in [200, 10_000] {
        let dir = tempfile::tempdir().unwrap();
        let root = workspace(dir.path(), tasks);
        for load in [Load::Idle, Load::Messages, Load::Tasks] {
            let ui = watched(&root, "maos ui", load, window);
            let status = watched(&root, "maos status --watch", load, window);
            println!(
                "{:<14} {:<16} {:>9.2}% {:>15.2}% {:>6.2}×",
                format!("{tasks} tasks"),
                load.label(),
                ui,
                status,
                ui / status.max(0.001)
            );
        }
    }
}

/// A workspace of `tasks` tasks in chains of ten (a tenth ready at the start).
fn workspace(dir: &Path, tasks: usize) -> PathBuf {
    let root = dir.join("repo");
    std::fs::create_dir_all(&root).unwrap();
    run(&root, &["init"]);
    let mut plan = String::new();
    for i in 0..tasks {
        let deps = if i % 10 == 0 {
            String::new()
        } else {
            format!(r#","dependencies":["t-{:06}"]"#, i - 1)
        };
        plan.push_str(&format!(
            r#"{{"id":"t-{i:06}","title":"task {i}","tags":["t{}"]{deps}}}"#,
            i % 7
        ));
        plan.push('\n');
    }
    std::fs::write(root.join("plan.jsonl"), plan).unwrap();
    run(&root, &["task", "import", "plan.jsonl"]);
    root
}

fn run(root: &Path, args: &[&str]) -> String {
    let out = Command::new(MAOS)
        .args(args)
        .current_dir(root)
        .env("MAOS_AGENT_ID", "loader")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "maos {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The CPU (% of one core) `viewer` uses in a 120×40 tmux pane on `root` while `load` runs
/// for `window`.
fn watched(root: &Path, viewer: &str, load: Load, window: Duration) -> f64 {
    // A server per viewer: a server being killed may still answer to its name.
    static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let socket = format!("maos-bench-{}-{n}", std::process::id());
    let tmux = |args: &[&str]| {
        Command::new("tmux")
            .args(["-L", &socket])
            .args(args)
            .stderr(Stdio::null())
            .output()
            .unwrap()
    };
    let bin = Path::new(MAOS).parent().unwrap().display().to_string();
    let path = format!("PATH={bin}:{}", std::env::var("PATH").unwrap_or_default());
    let root_arg = root.display().to_string();
    tmux(&[
        "-f",
        "/dev/null",
        "new-session",
        "-d",
        "-x",
        "120",
        "-y",
        "40",
        "-c",
        &root_arg,
        "env",
        &path,
        "TERM=xterm-256color",
        "MAOS_AGENT_ID=watcher",
        "sh",
    ]);
    tmux(&["send-keys", viewer, "Enter"]);
    std::thread::sleep(Duration::from_secs(2));
    tmux(&["send-keys", "2"]);
    std::thread::sleep(Duration::from_millis(500));
    let shell = String::from_utf8_lossy(&tmux(&["list-panes", "-F", "#{pane_pid}"]).stdout)
        .trim()
        .to_owned();
    let children = std::fs::read_to_string(format!("/proc/{shell}/task/{shell}/children")).unwrap();
    let pid: u32 = children.split_whitespace().next().unwrap().parse().unwrap();
    let before = cpu_ticks(pid);
    let started = Instant::now();
    apply(root, load, window);
    let elapsed = started.elapsed();
    let used = cpu_ticks(pid) - before;
    tmux(&["kill-server"]);
    used as f64 / ticks_per_second() / elapsed.as_secs_f64() * 100.0
}

/// Runs `load` against `root` for `window`.
fn apply(root: &Path, load: Load, window: Duration) {
    let started = Instant::now();
    let mut n = 0u32;
    while started.elapsed() < window {
        let step = match load {
            Load::Idle => {
                std::thread::sleep(window);
                return;
            }
            Load::Messages => {
                run(root, &["msg", "send", "general", &format!("message {n}")]);
                Duration::from_millis(100)
            }
            Load::Tasks => {
                let claimed = run(root, &["--json", "task", "claim"]);
                let value: serde_json::Value = serde_json::from_str(&claimed).unwrap();
                let id = value["id"].as_str().unwrap().to_owned();
                run(root, &["task", "done", &id]);
                Duration::from_millis(200)
            }
        };
        n += 1;
        // Paced: the n-th change at n steps from the start.
        if let Some(wait) = (step * n).checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
    }
}

/// The CPU time (user + system, in clock ticks) process `pid` has used.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn ticks_per_second() -> f64 {
    let out = Command::new("getconf").arg("CLK_TCK").output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(100.0)
}
