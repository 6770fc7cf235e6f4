//! Channel benchmark: send throughput and cross-process send→watcher wake-up latency, with
//! and without fsync, each beside a baseline measured in the same run.
//!
//! Run: `cargo bench -p maos-coordination --bench channels` (add `-- --quick` for a short run).
//! The workspace goes in a temporary directory under `$MAOS_BENCH_DIR` (default: the system
//! temp dir); say which file system that is when you record figures.
// Benchmarks build fixtures and write result files by hand.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::os::unix::net::UnixListener;
use std::time::{Duration, Instant};

mod common;

use common::{bench_dir, child_echo, child_watch, measure, one_way_hop, print_header, spawn_self};
use maos_coordination::Workspace;
use maos_coordination::atomic::{self, Durability};
use maos_coordination::channel::{Channel, ChannelName, Draft};
use serde_json::json;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--child-echo") => return child_echo(&args[1]),
        Some("--child-watch") => return child_watch(&args[1], &args[2], &args[3]),
        _ => {}
    }
    let quick = args.iter().any(|a| a == "--quick");
    let scale = if quick { 10 } else { 1 };
    let dir = bench_dir();
    let ws = Workspace::init(dir.path()).unwrap().workspace;
    let payload = json!({"text": "x".repeat(200)});
    print_header("channel", quick, dir.path());

    // Throughput: a plain staged write + rename of the same bytes, into folders of 1,000 files
    // like a channel's segments, is the floor a send can approach.
    let bytes = serde_json::to_vec_pretty(&payload).unwrap();
    // Warm up the file system (the first thousands of creates on a fresh folder tree are
    // much slower on ext4), so neither side of the comparison pays for it alone.
    let warm = Channel::open(&ws, ChannelName::new("warm-up").unwrap());
    for _ in 0..5_000 / scale {
        warm.send("bench", Draft::new(payload.clone())).unwrap();
    }
    for (mode, durability, n) in [
        ("no fsync", Durability::Buffered, 20_000 / scale),
        ("fsync", Durability::Fsync, 500 / scale),
    ] {
        let plain = dir.path().join(format!("plain-{mode}"));
        let baseline = measure(n, |i| {
            let folder = plain.join((i / 1000).to_string());
            if i % 1000 == 0 {
                std::fs::create_dir_all(&folder).unwrap();
            }
            atomic::write_new(
                &ws.tmp_dir(),
                &folder.join(i.to_string()),
                &bytes,
                durability,
            )
            .unwrap();
        });
        baseline.print(
            &format!("baseline: stage, write, rename a file ({mode})"),
            None,
        );
        let ch = Channel::open(
            &ws,
            ChannelName::new(&format!("tp-{durability:?}")).unwrap(),
        )
        .with_durability(durability);
        let sends = measure(n, |_| {
            ch.send("bench", Draft::new(payload.clone())).unwrap();
        });
        sends.print(&format!("send, single sender ({mode})"), Some(&baseline));
    }
    println!();

    // Latency: a Unix-socket ping-pong between two processes is the baseline hop.
    let rounds = 2_000 / scale;
    let one_way = one_way_hop(dir.path(), rounds);
    one_way.print("baseline: Unix-socket one-way hop (RTT/2)", None);
    let mut byte = [0u8; 1];

    for (label, durability, rounds) in [
        (
            "wake-up: send → watcher has it (no fsync)",
            Durability::Buffered,
            rounds,
        ),
        (
            "wake-up: send → watcher has it (fsync)",
            Durability::Fsync,
            300 / scale,
        ),
    ] {
        let name = format!("wake-{durability:?}");
        let ch = Channel::open(&ws, ChannelName::new(&name).unwrap()).with_durability(durability);
        let path = dir.path().join(format!("{name}.sock"));
        let listener = UnixListener::bind(&path).unwrap();
        let mut child = spawn_self(&[
            "--child-watch",
            path.to_str().unwrap(),
            dir.path().to_str().unwrap(),
            &name,
        ]);
        let (mut stream, _) = listener.accept().unwrap();
        stream.read_exact(&mut byte).unwrap(); // the watcher is ready
        let stats = measure(rounds, |_| {
            // Let the watcher go idle so each message has to wake it.
            std::thread::sleep(Duration::from_micros(500));
            let start = Instant::now();
            ch.send("bench", Draft::new(payload.clone())).unwrap();
            stream.read_exact(&mut byte).unwrap();
            start.elapsed()
        });
        stats.print(label, Some(&one_way));
        drop(stream);
        child.kill().ok();
        child.wait().unwrap();
    }
    println!("\nratio: this row's p50 over its baseline's p50.");
    common::report_peak_memory();
}
