//! Channel benchmark: send throughput and cross-process send→watcher wake-up latency, with
//! and without fsync, each beside a baseline measured in the same run.
//!
//! Run: `cargo bench -p maos-coordination --bench channels` (add `-- --quick` for a short run).
//! The workspace goes in a temporary directory under `$MAOS_BENCH_DIR` (default: the system
//! temp dir); say which file system that is when you record figures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use maos_coordination::Workspace;
use maos_coordination::atomic::{self, Durability};
use maos_coordination::channel::{Channel, ChannelName, Draft, WatchOptions};
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
    let base = std::env::var_os("MAOS_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let dir = tempfile::Builder::new()
        .prefix("maos-bench")
        .tempdir_in(&base)
        .unwrap();
    let ws = Workspace::init(dir.path()).unwrap().workspace;
    let payload = json!({"text": "x".repeat(200)});

    println!(
        "MAOS channel benchmark ({} run)",
        if quick { "quick" } else { "full" }
    );
    println!("machine: {}", machine());
    println!("workspace: {}\n", dir.path().display());
    println!(
        "{:<44} {:>10} {:>10} {:>12} {:>9}",
        "", "p50 µs", "p99 µs", "ops/s", "ratio"
    );

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
    let socket_path = dir.path().join("bench.sock");
    let listener = UnixListener::bind(&socket_path).unwrap();
    let mut child = spawn_self(&["--child-echo", socket_path.to_str().unwrap()]);
    let (mut stream, _) = listener.accept().unwrap();
    let mut byte = [0u8; 1];
    let rtt = measure(rounds, |_| {
        stream.write_all(b"p").unwrap();
        stream.read_exact(&mut byte).unwrap();
    });
    let one_way = rtt.scaled(0.5);
    one_way.print("baseline: Unix-socket one-way hop (RTT/2)", None);
    drop(stream);
    child.wait().unwrap();

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
}

/// Echoes every byte back (the baseline's other end).
fn child_echo(socket: &str) {
    let mut stream = UnixStream::connect(socket).unwrap();
    let mut byte = [0u8; 1];
    while stream.read_exact(&mut byte).is_ok() {
        if stream.write_all(&byte).is_err() {
            break;
        }
    }
}

/// Watches a channel and writes one byte per message received.
fn child_watch(socket: &str, root: &str, name: &str) {
    let ws = Workspace::open(Path::new(root)).unwrap();
    let ch = Channel::open(&ws, ChannelName::new(name).unwrap());
    let mut watcher = ch.watch(0, WatchOptions::default()).unwrap();
    let mut stream = UnixStream::connect(socket).unwrap();
    stream.write_all(b"r").unwrap();
    loop {
        let batch = watcher.next_batch(None).unwrap().unwrap();
        for _ in &batch.messages {
            if stream.write_all(b"m").is_err() {
                return;
            }
        }
    }
}

fn spawn_self(args: &[&str]) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(args)
        .stdin(Stdio::null())
        .spawn()
        .unwrap()
}

/// Per-operation durations.
struct Stats {
    samples: Vec<Duration>,
    total: Duration,
}

/// Times `n` runs of `op`; an op that returns a `Duration` reports its own timing.
fn measure<R: Into<Sample>>(n: usize, mut op: impl FnMut(usize) -> R) -> Stats {
    let mut samples = Vec::with_capacity(n);
    let mut total = Duration::ZERO;
    for i in 0..n {
        let start = Instant::now();
        let sample = match op(i).into() {
            Sample::Own(d) => d,
            Sample::Timed => start.elapsed(),
        };
        total += sample;
        samples.push(sample);
    }
    samples.sort();
    Stats { samples, total }
}

enum Sample {
    Timed,
    Own(Duration),
}

impl From<()> for Sample {
    fn from(_: ()) -> Self {
        Sample::Timed
    }
}

impl From<Duration> for Sample {
    fn from(d: Duration) -> Self {
        Sample::Own(d)
    }
}

impl Stats {
    fn pct(&self, p: f64) -> Duration {
        let i = ((self.samples.len() as f64 - 1.0) * p).round() as usize;
        self.samples[i]
    }

    fn scaled(&self, factor: f64) -> Stats {
        Stats {
            samples: self.samples.iter().map(|d| d.mul_f64(factor)).collect(),
            total: self.total.mul_f64(factor),
        }
    }

    fn print(&self, label: &str, baseline: Option<&Stats>) {
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        let ops = self.samples.len() as f64 / self.total.as_secs_f64();
        let ratio = baseline.map_or(String::from("-"), |b| {
            format!("{:.1}×", us(self.pct(0.5)) / us(b.pct(0.5)))
        });
        println!(
            "{label:<44} {:>10.1} {:>10.1} {:>12.0} {:>9}",
            us(self.pct(0.5)),
            us(self.pct(0.99)),
            ops,
            ratio
        );
    }
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpus} CPUs, {model}, Linux {}", kernel.trim())
}
