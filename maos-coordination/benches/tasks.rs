//! Task benchmark at 1,000, 10,000 and 100,000 tasks, every second one depending on the one
//! before (the workload of the scale issue): `add`, `ready`, `progress`, `claim` through the
//! library; `ready`, `list --status pending`, `claim`, `done`, `progress` and
//! `add --depends-on` as whole CLI calls; the cycle check on a 5,000-task chain.
//!
//! Baselines in the same run: reading every task file without decoding it; the
//! read-every-record path (`ready_by_scan`, what `ready` did before the index); **SQLite** (`rusqlite`, bundled) answering the same queries on the
//! same data — a `tasks` table with an index on status and priority and a `deps` table — and
//! starting the CLI (`maos --version`). Peak memory: each query's CLI call (its own peak
//! resident set) per size, and the bench process's at the end.
//!
//! Run: `cargo bench -p maos-coordination --bench tasks` (`-- --quick`: 1,000 and 10,000
//! only). The CLI rows need the release binary: `cargo build --release -p maos-cli` first
//! (they are skipped with a note when it is missing).
// Benchmarks build fixtures and write result files by hand.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Stdio};

mod common;

use common::{bench_dir, cli_binary, measure, print_header, run_cli};
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
            run_cli(cli, dir.path(), "bench", &["--version"]);
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
            if i % 2 == 1 {
                new.dependencies = vec![ids[i - 1].clone()];
            }
            new.priority = [
                maos_coordination::Priority::Low,
                maos_coordination::Priority::Medium,
                maos_coordination::Priority::High,
            ][i % 3];
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
        let sqlite = Sqlite::load(&root.join("tasks.sqlite"), &tasks);
        let sql_ready = measure(reps(n), |_| {
            std::hint::black_box(sqlite.ready());
        });
        sql_ready.print(&format!("{n:>7} tasks: baseline: SQLite ready"), None);
        let sql_pending = measure(reps(n), |_| {
            std::hint::black_box(sqlite.pending());
        });
        sql_pending.print(
            &format!("{n:>7} tasks: baseline: SQLite list pending"),
            None,
        );
        let sql_progress = measure(reps(n), |_| {
            std::hint::black_box(sqlite.by_status());
        });
        sql_progress.print(
            &format!("{n:>7} tasks: baseline: SQLite count by status"),
            None,
        );
        let scan = measure(reps(n), |_| {
            std::hint::black_box(tasks.ready_by_scan().unwrap());
        });
        scan.print(
            &format!("{n:>7} tasks: baseline: ready reading every record"),
            None,
        );
        tasks.ready().unwrap(); // builds the index once
        let ready = measure(reps(n), |_| {
            std::hint::black_box(tasks.ready().unwrap());
        });
        ready.print(
            &format!("{n:>7} tasks: ready (library, index)"),
            Some(&scan),
        );
        ready.print(
            &format!("{n:>7} tasks: ready (library, index) vs SQLite"),
            Some(&sql_ready),
        );
        let scanned = measure(reps(n), |_| {
            std::hint::black_box(progress::report(&tasks.list().unwrap()));
        });
        scanned.print(
            &format!("{n:>7} tasks: baseline: progress reading every record"),
            None,
        );
        let report = measure(reps(n), |_| {
            let view = tasks.summaries(true).unwrap();
            std::hint::black_box(progress::report_over(&view.tasks, &view.skipped));
        });
        report.print(
            &format!("{n:>7} tasks: progress (library, index)"),
            Some(&scanned),
        );
        report.print(
            &format!("{n:>7} tasks: progress (library, index) vs SQLite"),
            Some(&sql_progress),
        );
        let claims = measure(reps(n).max(20), |_| {
            tasks.claim("bench", Pick::best()).unwrap();
        });
        claims.print(&format!("{n:>7} tasks: claim best (library)"), Some(&raw));
        if let Some(cli) = &cli {
            // Queries compare with SQLite answering the same; commands that touch one task
            // compare with starting the CLI.
            let last = ids[n - 1].clone();
            let rows: [(&str, Vec<&str>, Option<&common::Stats>); 5] = [
                ("ready", vec!["task", "ready"], Some(&sql_ready)),
                (
                    "list --status pending",
                    vec!["task", "list", "--status", "pending"],
                    Some(&sql_pending),
                ),
                ("progress", vec!["progress"], Some(&sql_progress)),
                ("claim", vec!["task", "claim"], startup.as_ref()),
                (
                    "add --depends-on",
                    vec!["task", "add", "one more", "--depends-on", &last],
                    startup.as_ref(),
                ),
            ];
            for (label, args, baseline) in rows {
                let stats = measure(reps(n).max(5), |_| run_cli(cli, &root, "bench", &args));
                stats.print(&format!("{n:>7} tasks: maos {label}"), baseline);
            }
            // `done` of a task claimed beforehand (the claim is not timed): it finds the
            // task's dependents and unblocks them.
            let done = measure(reps(n).max(5), |_| {
                let task = tasks.claim("bench", Pick::best()).unwrap();
                run_cli(cli, &root, "bench", &["task", "done", &task.id])
            });
            done.print(&format!("{n:>7} tasks: maos done"), startup.as_ref());
            // Peak memory of each query and of a claim, one call each, not timed.
            let peaks: Vec<String> = [
                ("ready", vec!["task", "ready"]),
                (
                    "list --status pending",
                    vec!["task", "list", "--status", "pending"],
                ),
                ("progress", vec!["progress"]),
                ("claim", vec!["task", "claim"]),
            ]
            .iter()
            .filter_map(|(label, args)| {
                let kib = cli_peak_kib(cli, &root, args)?;
                Some(format!("{label} {:.1}", kib as f64 / 1024.0))
            })
            .collect();
            println!(
                "{n:>7} tasks: CLI peak memory, MiB: {}",
                if peaks.is_empty() {
                    "(no python3 to measure it)".to_owned()
                } else {
                    peaks.join(", ")
                }
            );
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

    // Completed work stops costing: 1,000 unfinished tasks beside few or many completed
    // ones; `ready` and `claim` should not notice the completed ones.
    let mut small: Option<(common::Stats, common::Stats)> = None;
    for completed in if quick { [100, 10_000] } else { [100, 100_000] } {
        let root = dir.path().join(format!("done{completed}"));
        std::fs::create_dir(&root).unwrap();
        let ws = Workspace::init(&root).unwrap().workspace;
        let tasks = Tasks::new(&ws).with_durability(Durability::Buffered);
        let plan: String = (0..completed)
            .map(|i| {
                format!(
                    "{{\"id\": \"d{i}\", \"title\": \"done {i}\", \"status\": \"completed\"}}\n"
                )
            })
            .chain((0..1_000).map(|i| {
                format!(
                    "{{\"id\": \"u{i}\", \"title\": \"open {i}\", \"dependencies\": [\"d{}\"]}}\n",
                    i % completed
                )
            }))
            .collect();
        tasks
            .import(tasks.plan_import("bench", &plan).unwrap())
            .unwrap();
        tasks.ready().unwrap(); // builds the index
        let ready = measure(30, |_| {
            std::hint::black_box(tasks.ready().unwrap());
        });
        let claim = measure(30, |_| {
            tasks.claim("bench", Pick::best()).unwrap();
        });
        let label = format!("1,000 open + {completed:>6} completed");
        ready.print(&format!("{label}: ready"), small.as_ref().map(|s| &s.0));
        claim.print(&format!("{label}: claim"), small.as_ref().map(|s| &s.1));
        if small.is_none() {
            small = Some((ready, claim));
        }
    }
    println!();

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

/// The same tasks in SQLite: the baseline a task tracker on a database would give.
struct Sqlite {
    db: rusqlite::Connection,
}

impl Sqlite {
    fn load(path: &Path, tasks: &Tasks) -> Self {
        let mut db = rusqlite::Connection::open(path).unwrap();
        db.execute_batch(
            "CREATE TABLE tasks (id TEXT PRIMARY KEY, title TEXT, status TEXT, priority INTEGER, \
                 created_at TEXT, assignee TEXT);\
             CREATE INDEX tasks_status_priority ON tasks (status, priority);\
             CREATE TABLE deps (task TEXT, dep TEXT);\
             CREATE INDEX deps_task ON deps (task);",
        )
        .unwrap();
        let listing = tasks.list().unwrap();
        let tx = db.transaction().unwrap();
        for t in &listing.tasks {
            tx.execute(
                "INSERT INTO tasks VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                rusqlite::params![
                    t.id,
                    t.title,
                    t.status.as_str(),
                    t.priority as i64,
                    t.created_at.to_string(),
                    t.assignee
                ],
            )
            .unwrap();
            for d in &t.dependencies {
                tx.execute(
                    "INSERT INTO deps VALUES (?1, ?2)",
                    rusqlite::params![t.id, d],
                )
                .unwrap();
            }
        }
        tx.commit().unwrap();
        Self { db }
    }

    /// Pending tasks whose dependencies are all completed, best first.
    fn ready(&self) -> Vec<(String, String)> {
        self.rows(
            "SELECT id, title FROM tasks t WHERE status = 'pending' AND NOT EXISTS \
             (SELECT 1 FROM deps d JOIN tasks u ON u.id = d.dep \
              WHERE d.task = t.id AND u.status != 'completed') \
             ORDER BY priority DESC, created_at, id",
        )
    }

    fn pending(&self) -> Vec<(String, String)> {
        self.rows("SELECT id, title FROM tasks WHERE status = 'pending' ORDER BY id")
    }

    fn by_status(&self) -> Vec<(String, String)> {
        self.rows("SELECT status, CAST(count(*) AS TEXT) FROM tasks GROUP BY status")
    }

    fn rows(&self, sql: &str) -> Vec<(String, String)> {
        let mut stmt = self.db.prepare_cached(sql).unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }
}

/// The peak resident set of one CLI call (`maos <args>`), in KiB, as the kernel accounts it
/// to that process alone; `None` without `python3`. It is spawned from a small Python
/// process: a child spawned from this bench would be charged the bench's own resident set
/// (hundreds of MiB at 100,000 tasks), which it shares until it runs `maos`.
fn cli_peak_kib(cli: &Path, root: &Path, args: &[&str]) -> Option<i64> {
    const SPAWNER: &str = "import os, sys\n\
        quiet = [(os.POSIX_SPAWN_OPEN, 1, '/dev/null', os.O_WRONLY, 0),\n\
                 (os.POSIX_SPAWN_OPEN, 2, '/dev/null', os.O_WRONLY, 0)]\n\
        pid = os.posix_spawn(sys.argv[1], sys.argv[1:], os.environ, file_actions=quiet)\n\
        _, status, usage = os.wait4(pid, 0)\n\
        print(usage.ru_maxrss if status == 0 else -1)\n";
    let out = Command::new("python3")
        .args(["-c", SPAWNER])
        .arg(cli)
        .args(args)
        .env("MAOS_WORKSPACE", root)
        .env("MAOS_AGENT_ID", "bench")
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let kib: i64 = String::from_utf8(out.stdout).ok()?.trim().parse().ok()?;
    assert!(kib >= 0, "maos {args:?} failed");
    Some(kib)
}

fn reps(n: usize) -> usize {
    (200_000 / n).clamp(3, 50)
}
