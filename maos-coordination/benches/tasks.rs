//! Task benchmark: `add`, `ready`, `progress` and `claim` with 1,000, 10,000 and 100,000
//! tasks, through the library and through the `maos` CLI, and the cycle check on a
//! 5,000-task chain. Baselines in the same run: reading every task file without decoding it,
//! and starting the CLI for `maos --version`.
//!
//! Run: `cargo bench -p maos-coordination --bench tasks` (`-- --quick`: 1,000 and 10,000
//! only). The CLI rows need the release binary: `cargo build --release -p maos-cli` first
//! (they are skipped with a note when it is missing).
// Benchmarks build fixtures and write result files by hand.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{bench_dir, measure, print_header};
use maos_coordination::Workspace;
use maos_coordination::atomic::Durability;
use maos_coordination::progress;
use maos_coordination::task::{DepGraph, NewTask, Pick, Status, Tasks, cycle_through};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let dir = bench_dir();
    print_header("task", quick, dir.path());
    let cli = cli_binary();
    if cli.is_none() {
        println!(
            "(no target/release/maos: CLI rows skipped; run `cargo build --release -p maos-cli`)\n"
        );
    }
    let spawn_true = measure(50, |_| {
        let status = Command::new("true").status().unwrap();
        assert!(status.success());
    });
    spawn_true.print("baseline: start a process (`true`)", None);
    let startup = cli.as_ref().map(|cli| {
        let startup = measure(50, |_| {
            run_cli(cli, dir.path(), &["--version"]);
        });
        startup.print("CLI start-up (`maos --version`)", Some(&spawn_true));
        println!();
        startup
    });
    let sizes: &[usize] = if quick {
        &[1_000, 10_000]
    } else {
        &[1_000, 10_000, 100_000]
    };
    for &n in sizes {
        let root = dir.path().join(format!("n{n}"));
        std::fs::create_dir(&root).unwrap();
        let ws = Workspace::init(&root).unwrap().workspace;
        // Records are created without fsync here (the default is on): the bench is about
        // reading, and 100,000 fsyncs would take minutes.
        let tasks = Tasks::new(&ws).with_durability(Durability::Buffered);
        let mut ids: Vec<String> = Vec::with_capacity(n);
        let add = measure(n, |i| {
            let mut new = NewTask::new(format!("task {i}"));
            // Every tenth task depends on the one before: chains for the critical path.
            if i % 10 != 0 {
                new.dependencies = vec![ids[i - 1].clone()];
            }
            new.tags = vec![format!("area-{}", i % 7)];
            let task = tasks.create("bench", new, None).unwrap();
            ids.push(task.id);
        });
        add.print(&format!("{n:>7} tasks: add (library, no fsync)"), None);
        let raw = measure(reps(n), |_| {
            for entry in std::fs::read_dir(tasks.dir()).unwrap() {
                std::hint::black_box(std::fs::read(entry.unwrap().path()).unwrap());
            }
        });
        raw.print(&format!("{n:>7} tasks: baseline: read every file"), None);
        let ready = measure(reps(n), |_| {
            std::hint::black_box(tasks.ready().unwrap());
        });
        ready.print(&format!("{n:>7} tasks: ready (library)"), Some(&raw));
        let report = measure(reps(n), |_| {
            std::hint::black_box(progress::report(&tasks.list().unwrap()));
        });
        report.print(&format!("{n:>7} tasks: progress (library)"), Some(&raw));
        let claims = measure(reps(n).max(20), |_| {
            tasks.claim("bench", Pick::best()).unwrap();
        });
        claims.print(&format!("{n:>7} tasks: claim best (library)"), Some(&raw));
        if let Some(cli) = &cli {
            // Queries compare with reading every file; `add` touches one file, so it compares
            // with starting the CLI.
            for (label, args, baseline) in [
                ("ready --json", &["--json", "task", "ready"][..], Some(&raw)),
                ("progress --json", &["--json", "progress"][..], Some(&raw)),
                ("add", &["task", "add", "one more"][..], startup.as_ref()),
                ("claim", &["task", "claim"][..], Some(&raw)),
            ] {
                let stats = measure(reps(n).max(5), |_| {
                    run_cli(cli, &root, args);
                });
                stats.print(&format!("{n:>7} tasks: maos {label}"), baseline);
            }
        }
        // Keep the numbers honest: the work really was there.
        assert!(
            tasks
                .list()
                .unwrap()
                .tasks
                .iter()
                .any(|t| t.status == Status::InProgress)
        );
        println!();
        if n >= 100_000 {
            // Leave the machine as we found it; deleting 100k files takes a while.
            std::fs::remove_dir_all(&root).ok();
        }
    }

    // Cycle check on a 5,000-task chain: adding an edge from the first to the last must
    // walk the whole chain to find the cycle.
    let chain: DepGraph = (0..5_000)
        .map(|i| {
            let deps = if i == 0 {
                vec![]
            } else {
                vec![format!("t{}", i - 1)]
            };
            (format!("t{i}"), deps)
        })
        .collect();
    let cycle = measure(100, |_| {
        let found = cycle_through(&chain, "t0", &["t4999".to_owned()]).unwrap();
        assert_eq!(found.len(), 5_001);
    });
    cycle.print("cycle check, 5,000-task chain", None);
    println!("\nratio: this row's p50 over its baseline's p50.");
    common::report_peak_memory();
}

fn reps(n: usize) -> usize {
    (200_000 / n).clamp(3, 50)
}

fn cli_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    // target/release/deps/tasks-… → target/release/maos
    let bin = exe.parent()?.parent()?.join("maos");
    bin.is_file().then_some(bin)
}

fn run_cli(cli: &Path, root: &Path, args: &[&str]) -> Duration {
    let start = Instant::now();
    let status = Command::new(cli)
        .args(args)
        .env("MAOS_WORKSPACE", root)
        .env("MAOS_AGENT_ID", "bench")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "maos {args:?} failed");
    start.elapsed()
}
