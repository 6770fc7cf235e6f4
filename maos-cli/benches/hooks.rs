//! What an editor pays at every tool call: the CPU time (user + system) of one `maos hook
//! claude PreToolUse` (every Edit), `PostToolUse` (every tool call) and `UserPromptSubmit`
//! (every prompt), beside `maos --version` (the baseline: starting the process) in the same
//! run — in an empty workspace and in one of 1,000 reservations, 10,000 tasks and 10,000
//! messages the session has not read (addressed to others). The target: each hook within
//! 1.5× the process start at that size.
//!
//! `cargo bench -p maos-cli --bench hooks [-- --quick]`
// Benchmarks build fixtures and write files by hand.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use maos_coordination::Workspace;
use maos_coordination::channel::{Channel, ChannelName, Draft};
use serde_json::json;

const MAOS: &str = env!("CARGO_BIN_EXE_maos");
/// The most the issue allows: a hook within this many times the process start.
const TARGET: f64 = 1.5;

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let runs = if quick { 15 } else { 60 };
    println!(
        "hooks — CPU time of one call (user + system, median of {runs}), beside `maos --version` ({})",
        std::env::consts::OS
    );
    println!(
        "{:<34} {:<18} {:>9} {:>11} {:>7} {:>7}",
        "workspace", "hook", "hook ms", "--version", "ratio", "target"
    );
    let mut worst: f64 = 0.0;
    for size in [Size::Empty, Size::Large] {
        let dir = tempfile::tempdir().unwrap();
        let root = workspace(dir.path(), size);
        let file = root.join("src/edited.rs").display().to_string();
        let session = "bench-session-0000";
        let pre = json!({"session_id": session, "cwd": root, "hook_event_name": "PreToolUse",
                         "tool_name": "Edit", "tool_input": {"file_path": file}});
        let post = json!({"session_id": session, "cwd": root, "hook_event_name": "PostToolUse",
                          "tool_name": "Read", "tool_input": {"file_path": file}});
        let prompt = json!({"session_id": session, "cwd": root,
                            "hook_event_name": "UserPromptSubmit", "prompt": "go on"});
        // The session starts (its first call reads what it has not seen yet).
        let start = json!({"session_id": session, "cwd": root, "hook_event_name": "SessionStart",
                           "source": "startup"});
        let first = cpu_of(
            &root,
            &["hook", "claude", "SessionStart"],
            &start.to_string(),
        );
        println!(
            "{:<34} {:<18} {:>9.2} {:>11} {:>7} {:>7}",
            size.label(),
            "SessionStart (1st)",
            first.as_secs_f64() * 1000.0,
            "",
            "",
            ""
        );
        for (name, input) in [
            ("PreToolUse", &pre),
            ("PostToolUse", &post),
            ("UserPromptSubmit", &prompt),
        ] {
            // Interleaved, so both see the same machine.
            let mut hook = Vec::new();
            let mut version = Vec::new();
            for _ in 0..runs {
                hook.push(cpu_of(&root, &["hook", "claude", name], &input.to_string()));
                version.push(cpu_of(&root, &["--version"], ""));
            }
            let (h, v) = (median(&mut hook), median(&mut version));
            let ratio = h.as_secs_f64() / v.as_secs_f64().max(1e-6);
            worst = worst.max(ratio);
            println!(
                "{:<34} {:<18} {:>9.2} {:>10.2} {:>6.2}× {:>6.1}×",
                size.label(),
                name,
                h.as_secs_f64() * 1000.0,
                v.as_secs_f64() * 1000.0,
                ratio,
                TARGET
            );
        }
    }
    println!(
        "worst ratio {worst:.2}× ({} the {TARGET}× target)",
        if worst <= TARGET { "within" } else { "OVER" }
    );
}

#[derive(Clone, Copy)]
enum Size {
    Empty,
    Large,
}

impl Size {
    fn label(self) -> &'static str {
        match self {
            Size::Empty => "empty",
            Size::Large => "1k reservations, 10k tasks, 10k msgs",
        }
    }
}

/// A git repository with `.maos/`, and for [`Size::Large`]: 10,000 tasks, 1,000
/// reservations (100 agents × 10 files), 10,000 messages to other agents in 10 channels.
fn workspace(dir: &Path, size: Size) -> PathBuf {
    let root = dir.join("repo");
    std::fs::create_dir_all(root.join("src")).unwrap();
    git(&root, &["init", "-q"]);
    run(&root, "loader", &["init"]);
    if let Size::Empty = size {
        return root;
    }
    let mut plan = String::new();
    for i in 0..10_000 {
        plan.push_str(&format!(r#"{{"id":"t-{i:05}","title":"task {i}"}}"#));
        plan.push('\n');
    }
    std::fs::write(root.join("plan.jsonl"), plan).unwrap();
    run(&root, "loader", &["task", "import", "plan.jsonl"]);
    for a in 0..100 {
        let patterns: Vec<String> = (0..10).map(|f| format!("src/m{a}/f{f}.rs")).collect();
        let mut args = vec!["reserve"];
        args.extend(patterns.iter().map(String::as_str));
        run(&root, &format!("agent-{a}"), &args);
    }
    let ws = Workspace::discover(&root).unwrap();
    for c in 0..10 {
        let channel = Channel::open(&ws, ChannelName::new(&format!("ch{c}")).unwrap());
        for m in 0..1_000 {
            channel
                .send(
                    &format!("agent-{}", m % 100),
                    Draft::new(json!(format!("message {m}")))
                        .to(format!("agent-{}", (m + 1) % 100)),
                )
                .unwrap();
        }
    }
    root
}

/// The CPU time (user + system) one `maos args` took, `input` on its stdin.
fn cpu_of(root: &Path, args: &[&str], input: &str) -> Duration {
    let before = children_cpu();
    let mut child = Command::new(MAOS)
        .args(args)
        .current_dir(root)
        .env_remove("MAOS_AGENT_ID")
        .env_remove("MAOS_WORKSPACE")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "maos {args:?} failed");
    children_cpu().saturating_sub(before)
}

/// The CPU time of every child waited for so far.
fn children_cpu() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the rusage it is given; zeroed is a valid rusage.
    #[allow(unsafe_code)]
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_CHILDREN, usage.as_mut_ptr());
        usage.assume_init()
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn median(values: &mut [Duration]) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn run(root: &Path, agent: &str, args: &[&str]) {
    let out = Command::new(MAOS)
        .args(args)
        .current_dir(root)
        .env("MAOS_AGENT_ID", agent)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "maos {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .args(args)
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(status.success());
}
