//! Journal benchmark: what journaling costs each primitive, measured side by side in one run
//! — the same operations in a workspace with the journal and in one with `"journal": false`,
//! in alternating rounds so that the machine's drift hits both — and what event hooks that
//! hang or fail cost coordination (a runner follows the journal in another process).
//!
//! `cargo bench -p maos-coordination --bench journal [-- --quick]`
// Benchmarks build fixtures and write result files by hand.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{
    bench_dir, cli_binary, measure, print_header, side_by_side, workspace_without_journal,
};
use maos_coordination::Workspace;
use maos_coordination::channel::{Channel, ChannelName, Draft};
use maos_coordination::journal::{self, Event};
use maos_coordination::lock::{LockRequest, Locks};
use maos_coordination::task::{NewTask, Pick, Status, Tasks};
use serde_json::json;

/// A queue of `n` ready tasks in each workspace.
fn task_queues(pair: [&Workspace; 2], n: usize) -> [Tasks; 2] {
    let stores = pair.map(Tasks::new);
    for store in &stores {
        for i in 0..n {
            store
                .create("planner", NewTask::new(format!("task {i}")), None)
                .unwrap();
        }
    }
    stores
}

fn claim_and_complete(store: &Tasks) {
    let task = store.claim("bench", Pick::best()).unwrap();
    store
        .set_status(&task.id, "bench", Status::Completed, None)
        .unwrap();
}

fn lock_requests() -> Vec<LockRequest> {
    (0..8)
        .map(|i| LockRequest::new(&format!("bench/{i}"), "bench").unwrap())
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let scale = if quick { 10 } else { 1 };
    let dir = bench_dir();
    print_header("journal", quick, dir.path());
    // Side by side in one folder: on a worn ext4 two distant folders can differ in how fast
    // files are created there by more than the journal costs.
    let with = Workspace::init(&dir.path().join("on")).unwrap().workspace;
    let without = workspace_without_journal(&dir.path().join("off"));
    let journal_off_on = ["journal off", "journal on"];

    let append = measure(10_000 / scale, |i| {
        journal::append(&with, &Event::new("bench.append").subject(i.to_string())).unwrap();
    });
    append.print("one append (lock, chain, write, head)", None);

    let both = [&without, &with];
    let payload = json!({"kind": "status", "body": "x".repeat(200)});
    let channels = both.map(|ws| Channel::open(ws, ChannelName::new("bench").unwrap()));
    side_by_side(
        "send (no fsync)",
        journal_off_on,
        20,
        500 / scale,
        |w, _| {
            channels[w]
                .send("bench", Draft::new(payload.clone()))
                .unwrap();
        },
    );
    let locks = both.map(Locks::new);
    let requests = lock_requests();
    let lock_cycle = |locks: &[Locks; 2], w: usize, k: usize| {
        locks[w]
            .try_acquire(&requests[k % 8])
            .unwrap()
            .release()
            .unwrap();
    };
    side_by_side(
        "lock acquire + release",
        journal_off_on,
        20,
        500 / scale,
        |w, k| lock_cycle(&locks, w, k),
    );
    let tasks_per = 1_000 / scale;
    let stores = task_queues(both, tasks_per);
    side_by_side(
        "claim + done (1,000-task queue)",
        journal_off_on,
        10,
        tasks_per / 10,
        |w, _| claim_and_complete(&stores[w]),
    );
    println!();

    // Hooks that hang (killed at 2 s) and fail (exit 1), run by a runner process following
    // the journal: what coordination pays while they run. Two settings: hooks on
    // `task.completed` while tasks are claimed and completed (a hook per completion, the
    // use they are made for), and hooks on every lock event while locks are taken and
    // released (thousands of hooks a second: the worst case).
    let Some(cli) = cli_binary() else {
        println!("(no target/release/maos: the hooks rows need it as the hook runner)");
        return;
    };
    journal::hooks::set_runner(cli);
    for (on, label) in [
        ("task.completed", "claim + done"),
        ("lock.*", "lock acquire + release"),
    ] {
        let quiet = Workspace::init(&dir.path().join(format!("quiet-{on}")))
            .unwrap()
            .workspace;
        let hooked = Workspace::init(&dir.path().join(format!("hooked-{on}")))
            .unwrap()
            .workspace;
        std::fs::write(
            hooked.dir().join("hooks.toml"),
            format!(
                "[[hook]]\non = \"{on}\"\nrun = [\"sleep\", \"1000\"]\ntimeout = \"2s\"\n\n\
                 [[hook]]\non = \"{on}\"\nrun = [\"false\"]\n"
            ),
        )
        .unwrap();
        let pair = [&quiet, &hooked];
        let names = ["no hooks", &format!("hooks on {on} hang + fail")];
        if on == "task.completed" {
            let stores = task_queues(pair, tasks_per);
            side_by_side(label, names, 10, tasks_per / 10, |w, _| {
                claim_and_complete(&stores[w])
            });
        } else {
            let locks = pair.map(Locks::new);
            side_by_side(label, names, 10, 300 / scale, |w, k| {
                lock_cycle(&locks, w, k)
            });
        }
    }
}
