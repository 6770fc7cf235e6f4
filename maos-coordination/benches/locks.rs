//! Lock benchmark: uncontended acquire+release (with and without fsync) beside a raw `flock`
//! baseline; contended hand-off between 2, 4 and 8 processes (throughput and worst wait);
//! and the time from a release to the waiting process holding the lock.
//!
//! Run: `cargo bench -p maos-coordination --bench locks` (add `-- --quick` for a short run).
//! The workspace goes in a temporary directory under `$MAOS_BENCH_DIR` (default: the system
//! temp dir); say which file system that is when you record figures.
// Benchmarks build fixtures and write result files by hand.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::{Duration, Instant};

mod common;

use common::{
    bench_dir, child_contend, child_echo, contend, measure, one_way_hop, print_header, spawn_self,
};
use maos_coordination::Workspace;
use maos_coordination::atomic::Durability;
use maos_coordination::lock::{LockRequest, Locks};

/// How long any one acquisition may wait before the bench gives up (it never should).
const PATIENCE: Duration = Duration::from_secs(60);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--child-echo") => return child_echo(&args[1]),
        Some("--child-contend") => return child_contend(&args[1], &args[2], &args[3], &args[4]),
        Some("--child-wait") => return child_wait(&args[1], &args[2]),
        _ => {}
    }
    let quick = args.iter().any(|a| a == "--quick");
    let scale = if quick { 10 } else { 1 };
    let dir = bench_dir();
    let ws = Workspace::init(dir.path()).unwrap().workspace;
    print_header("lock", quick, dir.path());

    // Uncontended: the floor is taking and dropping a kernel lock on an open file.
    let n = 20_000 / scale;
    let flock_file = File::create(dir.path().join("baseline.flock")).unwrap();
    let flock = measure(n, |_| {
        flock_file.lock().unwrap();
        flock_file.unlock().unwrap();
    });
    flock.print("baseline: flock + unlock, open file", None);
    let flock_path = dir.path().join("baseline.open-flock");
    let open_flock = measure(n, |_| {
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&flock_path)
            .unwrap();
        f.lock().unwrap();
        drop(f);
    });
    open_flock.print("baseline: open, flock, close a file", None);
    let path = dir.path().join("baseline.create");
    let create = measure(n, |_| {
        let mut f = File::create_new(&path).unwrap();
        f.write_all(b"{}").unwrap();
        drop(f);
        std::fs::remove_file(&path).unwrap();
    });
    create.print("baseline: create_new, write, remove a file", None);
    for (mode, durability, n) in [
        ("no fsync", Durability::Buffered, n),
        ("fsync", Durability::Fsync, 500 / scale),
    ] {
        let locks = Locks::new(&ws).with_durability(durability);
        let request = LockRequest::new(&format!("solo/{durability:?}"), "bench").unwrap();
        let stats = measure(n, |_| {
            locks.try_acquire(&request).unwrap().release().unwrap()
        });
        stats.print(
            &format!("acquire + release, uncontended ({mode})"),
            Some(&open_flock),
        );
    }
    println!();

    // Contended: each process loops acquire (waiting in line) → release for a fixed count.
    for processes in [2, 4, 8] {
        let each = 400 / scale / processes;
        let go = dir.path().join(format!("go-{processes}"));
        let stats = contend(dir.path(), &go, processes, each);
        let worst = stats.samples.last().copied().unwrap_or_default();
        stats.print(
            &format!("hand-off, {processes} processes (wait per acquire)"),
            None,
        );
        println!(
            "{:<44} {:>10.1} ms worst wait",
            "",
            worst.as_secs_f64() * 1e3
        );
    }
    println!();

    // Release → the waiting process holds the lock (woken by notify, not a timer).
    let rounds = 500 / scale;
    let one_way = one_way_hop(dir.path(), 2_000 / scale);
    one_way.print("baseline: Unix-socket one-way hop (RTT/2)", None);
    let socket = dir.path().join("wait.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let mut child = spawn_self(&[
        "--child-wait",
        socket.to_str().unwrap(),
        dir.path().to_str().unwrap(),
    ]);
    let (mut stream, _) = listener.accept().unwrap();
    let locks = Locks::new(&ws);
    let request = LockRequest::new("relay", "parent").unwrap();
    let mut byte = [0u8; 1];
    let wake = measure(rounds, |_| {
        let guard = locks.acquire(&request, PATIENCE).unwrap();
        stream.write_all(b"g").unwrap();
        stream.read_exact(&mut byte).unwrap(); // the child is about to wait
        // Give it time to register and go to sleep.
        std::thread::sleep(Duration::from_millis(3));
        let start = Instant::now();
        guard.release().unwrap();
        stream.read_exact(&mut byte).unwrap(); // the child holds the lock
        start.elapsed()
    });
    wake.print("release → next waiter holds the lock", Some(&one_way));
    drop(stream);
    child.wait().unwrap();
    println!("\nratio: this row's p50 over its baseline's p50.");
    common::report_peak_memory();
}

/// On each `g` from the parent: says it is about to wait, waits for `relay`, says it holds
/// it, and releases it.
fn child_wait(socket: &str, root: &str) {
    let ws = Workspace::open(Path::new(root)).unwrap();
    let locks = Locks::new(&ws);
    let request = LockRequest::new("relay", "child").unwrap();
    let mut stream = UnixStream::connect(socket).unwrap();
    let mut byte = [0u8; 1];
    while stream.read_exact(&mut byte).is_ok() {
        stream.write_all(b"w").unwrap();
        let guard = locks.acquire(&request, PATIENCE).unwrap();
        stream.write_all(b"h").unwrap();
        guard.release().unwrap();
    }
}
