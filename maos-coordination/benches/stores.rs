//! Store benchmark: the etcd store against the file store, side by side in one run (the same
//! operations in a file-store workspace and in an etcd-store workspace, in alternating
//! rounds).
//!
//! Needs a cluster: `MAOS_BENCH_ETCD=etcd://127.0.0.1:23791,127.0.0.1:23792,127.0.0.1:23793`
//! (what `.ci/etcd-suite` starts; `bash .ci/etcd-suite --bench` runs this bench on it).
//!
//! `cargo bench -p maos-coordination --features etcd --bench stores [-- --quick]`
// Benchmarks build fixtures and write result files by hand.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Read;
use std::os::unix::net::UnixListener;
use std::time::{Duration, Instant};

use common::{
    Stats, bench_dir, child_contend, child_watch, contend, measure, print_header, side_by_side,
    spawn_self,
};
use maos_coordination::Workspace;
use maos_coordination::channel::{Channel, ChannelName, Draft};
use maos_coordination::lock::{LockRequest, Locks};
use maos_coordination::store::StoreSpec;
use maos_coordination::task::{NewTask, Pick, Status, Tasks};
use serde_json::json;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--child-watch") => return child_watch(&args[1], &args[2], &args[3]),
        Some("--child-contend") => {
            return child_contend(&args[1], &args[2], &args[3], &args[4]);
        }
        _ => {}
    }
    let quick = args.iter().any(|a| a == "--quick");
    let scale = if quick { 10 } else { 1 };
    let Ok(cluster) = std::env::var("MAOS_BENCH_ETCD") else {
        eprintln!("MAOS_BENCH_ETCD is not set: run `bash .ci/etcd-suite --bench`");
        std::process::exit(2);
    };
    let dir = bench_dir();
    print_header("store (files vs etcd)", quick, dir.path());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let spec = StoreSpec::parse(&format!("{cluster}/bench-{nanos}")).unwrap();
    println!("etcd: {spec}\n");
    let files = Workspace::init(&dir.path().join("files"))
        .unwrap()
        .workspace;
    let etcd = Workspace::init_with_store(&dir.path().join("etcd"), &spec)
        .unwrap()
        .workspace;
    let both = [&files, &etcd];
    let names = ["files", "etcd"];

    let payload = json!({"kind": "status", "body": "x".repeat(200)});
    let channels = both.map(|ws| Channel::open(ws, ChannelName::new("bench").unwrap()));
    side_by_side("send", names, 10, 200 / scale, |w, _| {
        channels[w]
            .send("bench", Draft::new(payload.clone()))
            .unwrap();
    });
    side_by_side("read 100 messages", names, 10, 20 / scale.min(2), |w, _| {
        let batch = channels[w].read_after(0, Some(100)).unwrap();
        assert_eq!(batch.messages.len(), 100);
    });

    let locks = both.map(Locks::new);
    let requests: Vec<LockRequest> = (0..8)
        .map(|i| LockRequest::new(&format!("bench/{i}"), "bench").unwrap())
        .collect();
    side_by_side("lock acquire + release", names, 10, 100 / scale, |w, k| {
        locks[w]
            .try_acquire(&requests[k % 8])
            .unwrap()
            .release()
            .unwrap();
    });

    for (ws, name) in both.iter().zip(names) {
        wake_up(ws, name, 200 / scale)
            .print(&format!("wake-up: send → watcher has it, {name}"), None);
    }
    for (ws, name) in both.iter().zip(names) {
        hand_off(ws, name, 8, 20 / scale.min(2));
    }

    let tasks = both.map(Tasks::new);
    let queued = 300 / scale;
    for store in &tasks {
        for i in 0..queued {
            store
                .create("planner", NewTask::new(format!("task {i}")), None)
                .unwrap();
        }
    }
    side_by_side("claim + complete", names, 10, queued / 10, |w, _| {
        let task = tasks[w].claim("bench", Pick::best()).unwrap();
        tasks[w]
            .set_status(&task.id, "bench", Status::Completed, None)
            .unwrap();
    });

    let many = 10_000 / scale;
    for (store, name) in tasks.iter().zip(names) {
        let plan: String = (0..many)
            .map(|i| format!("{{\"title\": \"bulk {i}\"}}\n"))
            .collect();
        let plan = store.plan_import("planner", &plan).unwrap();
        let started = std::time::Instant::now();
        store.import(plan).unwrap();
        println!(
            "{:<44} {:>10.0} ms",
            format!("import {many} tasks, {name}"),
            started.elapsed().as_secs_f64() * 1000.0
        );
    }
    side_by_side(&format!("ready at {many} tasks"), names, 3, 3, |w, _| {
        assert!(!tasks[w].ready().unwrap().tasks.is_empty());
    });
}

/// Send → a watcher in another process has the message, `rounds` times.
fn wake_up(ws: &Workspace, name: &str, rounds: usize) -> Stats {
    let channel = format!("wake-{name}");
    let ch = Channel::open(ws, ChannelName::new(&channel).unwrap());
    let socket = ws.dir().join(format!("{channel}.sock"));
    let listener = UnixListener::bind(&socket).unwrap();
    let mut child = spawn_self(&[
        "--child-watch",
        socket.to_str().unwrap(),
        ws.root().to_str().unwrap(),
        &channel,
    ]);
    let (mut stream, _) = listener.accept().unwrap();
    let mut byte = [0u8; 1];
    stream.read_exact(&mut byte).unwrap(); // the watcher is ready
    let stats = measure(rounds, |_| {
        // Let the watcher go idle so each message has to wake it.
        std::thread::sleep(Duration::from_millis(2));
        let start = Instant::now();
        ch.send("bench", Draft::new(json!({"n": 1}))).unwrap();
        stream.read_exact(&mut byte).unwrap();
        start.elapsed()
    });
    drop(stream);
    child.kill().ok();
    child.wait().unwrap();
    stats
}

/// `processes` processes each take and release one lock `each` times, all at once: the
/// wait per acquisition, and hand-offs per second.
fn hand_off(ws: &Workspace, name: &str, processes: usize, each: usize) {
    let go = ws.dir().join(format!("go-{name}"));
    let stats = contend(ws.root(), &go, processes, each);
    let elapsed = stats.total;
    stats.print(
        &format!("hand-off, {processes} processes (wait per acquire), {name}"),
        None,
    );
    println!(
        "{:<44} {:>10.0} hand-offs/s",
        "",
        (processes * each) as f64 / elapsed.as_secs_f64()
    );
}
