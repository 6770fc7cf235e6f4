//! What every benchmark shares: timing samples, percentiles, the printed row, the machine
//! line, and re-running the bench binary as a child process.
// Benchmarks build fixtures and write result files by hand.
#![allow(clippy::disallowed_methods)]
#![allow(dead_code)] // each bench uses a different part

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub fn spawn_self(args: &[&str]) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(args)
        .stdin(Stdio::null())
        .spawn()
        .unwrap()
}

/// Per-operation durations.
pub struct Stats {
    pub samples: Vec<Duration>,
    pub total: Duration,
}

/// Times `n` runs of `op`; an op that returns a `Duration` reports its own timing.
pub fn measure<R: Into<Sample>>(n: usize, mut op: impl FnMut(usize) -> R) -> Stats {
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

pub enum Sample {
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
    pub fn pct(&self, p: f64) -> Duration {
        let i = ((self.samples.len() as f64 - 1.0) * p).round() as usize;
        self.samples[i]
    }

    /// Several runs' samples as one.
    pub fn merged(runs: Vec<Stats>) -> Stats {
        let mut samples: Vec<Duration> = runs.iter().flat_map(|r| r.samples.clone()).collect();
        samples.sort();
        Stats {
            samples,
            total: runs.iter().map(|r| r.total).sum(),
        }
    }

    pub fn scaled(&self, factor: f64) -> Stats {
        Stats {
            samples: self.samples.iter().map(|d| d.mul_f64(factor)).collect(),
            total: self.total.mul_f64(factor),
        }
    }

    pub fn print(&self, label: &str, baseline: Option<&Stats>) {
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        let ops = self.samples.len() as f64 / self.total.as_secs_f64();
        let ratio = baseline.map_or(String::from("-"), |b| {
            let ratio = us(self.pct(0.5)) / us(b.pct(0.5));
            if ratio < 10.0 {
                format!("{ratio:.2}×")
            } else {
                format!("{ratio:.1}×")
            }
        });
        println!(
            "{label:<44} {:>10.1} {:>10.1} {:>12.0} {:>9}",
            us(self.pct(0.5)),
            us(self.pct(0.99)),
            ops,
            ratio
        );
        summary(&serde_json::json!({
            "row": label.trim(),
            "p50_us": us(self.pct(0.5)),
            "p99_us": us(self.pct(0.99)),
            "ops_per_s": ops,
            "baseline_p50_us": baseline.map(|b| us(b.pct(0.5))),
        }));
    }
}

/// Appends one JSON line to the file named by `$MAOS_BENCH_SUMMARY`, tagged with the bench
/// (`benches/run-all.sh` collects them into one table).
pub fn summary(row: &serde_json::Value) {
    let Some(path) = std::env::var_os("MAOS_BENCH_SUMMARY") else {
        return;
    };
    let bench = std::env::current_exe()
        .ok()
        .and_then(|e| e.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let bench = bench.split('-').next().unwrap_or("").to_owned();
    let mut row = row.clone();
    if let Some(object) = row.as_object_mut() {
        object.insert("bench".into(), bench.into());
    }
    use std::io::Write as _;
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(file, "{row}");
    }
}

/// This process's peak resident memory (VmHWM), in KiB, into the summary and on screen.
pub fn report_peak_memory() {
    let kib = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        })
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    println!(
        "peak memory (VmHWM) of this bench process: {} MiB",
        kib / 1024
    );
    summary(&serde_json::json!({"row": "peak memory", "peak_kib": kib}));
}

pub fn machine() -> String {
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

/// The baseline hop between two processes: a one-byte Unix-socket ping-pong with a child
/// (this bench binary run with `--child-echo <socket>`), halved.
pub fn one_way_hop(dir: &Path, rounds: usize) -> Stats {
    let socket_path = dir.join("echo.sock");
    let listener = UnixListener::bind(&socket_path).unwrap();
    let mut child = spawn_self(&["--child-echo", socket_path.to_str().unwrap()]);
    let (mut stream, _) = listener.accept().unwrap();
    let mut byte = [0u8; 1];
    let rtt = measure(rounds, |_| {
        stream.write_all(b"p").unwrap();
        stream.read_exact(&mut byte).unwrap();
    });
    drop(stream);
    child.wait().unwrap();
    rtt.scaled(0.5)
}

/// Echoes every byte back (the baseline's other end).
pub fn child_echo(socket: &str) {
    let mut stream = UnixStream::connect(socket).unwrap();
    let mut byte = [0u8; 1];
    while stream.read_exact(&mut byte).is_ok() {
        if stream.write_all(&byte).is_err() {
            break;
        }
    }
}

/// Runs `op` in `rounds` alternating rounds of `each` on the baseline side (`0`) and the
/// measured side (`1`); prints both (labelled `{label}, {names[i]}`) and the ratio.
pub fn side_by_side(
    label: &str,
    names: [&str; 2],
    rounds: usize,
    each: usize,
    mut op: impl FnMut(usize, usize),
) {
    let (mut on, mut off) = (Vec::new(), Vec::new());
    let mut k = 0;
    for _ in 0..rounds {
        for (which, into) in [(0, &mut off), (1, &mut on)] {
            into.push(measure(each, |_| {
                op(which, k);
                k += 1;
            }));
        }
    }
    let off = Stats::merged(off);
    off.print(&format!("{label}, {}", names[0]), None);
    Stats::merged(on).print(&format!("{label}, {}", names[1]), Some(&off));
}

/// A fresh directory for the bench's workspace, under `$MAOS_BENCH_DIR` (default: the
/// system temp dir).
pub fn bench_dir() -> tempfile::TempDir {
    let base = std::env::var_os("MAOS_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    tempfile::Builder::new()
        .prefix("maos-bench")
        .tempdir_in(&base)
        .unwrap()
}

/// The title, machine, workspace and column headings.
pub fn print_header(what: &str, quick: bool, dir: &Path) {
    println!(
        "MAOS {what} benchmark ({} run)",
        if quick { "quick" } else { "full" }
    );
    println!("machine: {}", machine());
    println!("workspace: {}\n", dir.display());
    println!(
        "{:<44} {:>10} {:>10} {:>12} {:>9}",
        "", "p50 µs", "p99 µs", "ops/s", "ratio"
    );
}

/// `target/release/maos` beside this bench binary, when it was built.
pub fn cli_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    // target/release/deps/<bench>-… → target/release/maos
    let bin = exe.parent()?.parent()?.join("maos");
    bin.is_file().then_some(bin)
}

/// Runs `maos <args>` in the workspace at `root` as `agent`; returns how long it took.
pub fn run_cli(cli: &Path, root: &Path, agent: &str, args: &[&str]) -> Duration {
    let start = Instant::now();
    let status = Command::new(cli)
        .args(args)
        .env("MAOS_WORKSPACE", root)
        .env("MAOS_AGENT_ID", agent)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "maos {args:?} failed");
    start.elapsed()
}

/// A second workspace in `dir` that keeps no journal (`"journal": false`): the baseline the
/// journal's cost is measured against.
pub fn workspace_without_journal(dir: &Path) -> maos_coordination::Workspace {
    let ws = maos_coordination::Workspace::init(dir).unwrap().workspace;
    let mut config = ws.config().clone();
    config.journal = false;
    std::fs::write(
        ws.dir().join("maos.json"),
        serde_json::to_vec_pretty(&config).unwrap(),
    )
    .unwrap();
    maos_coordination::Workspace::open(dir).unwrap()
}

/// Watches a channel and writes one byte per message received.
pub fn child_watch(socket: &str, root: &str, name: &str) {
    let ws = maos_coordination::Workspace::open(Path::new(root)).unwrap();
    let ch = maos_coordination::channel::Channel::open(
        &ws,
        maos_coordination::channel::ChannelName::new(name).unwrap(),
    );
    let mut watcher = ch
        .watch(0, maos_coordination::channel::WatchOptions::default())
        .unwrap();
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

/// Waits for the start file, then `count` times takes and releases `bench-hot`, printing
/// how long each acquisition waited (ns), one per line.
pub fn child_contend(root: &str, agent: &str, count: &str, go: &str) {
    let ws = maos_coordination::Workspace::open(Path::new(root)).unwrap();
    let locks = maos_coordination::lock::Locks::new(&ws);
    let request = maos_coordination::lock::LockRequest::new("bench-hot", agent).unwrap();
    while !Path::new(go).exists() {
        std::thread::sleep(Duration::from_micros(200));
    }
    let mut out = String::new();
    for _ in 0..count.parse::<usize>().unwrap() {
        let start = Instant::now();
        let guard = locks.acquire(&request, Duration::from_secs(60)).unwrap();
        out.push_str(&format!("{}\n", start.elapsed().as_nanos()));
        guard.release().unwrap();
    }
    std::io::stdout().write_all(out.as_bytes()).unwrap();
}

/// Starts `processes` copies of this bench in `--child-contend` mode on the workspace at
/// `root`, each taking and releasing `bench-hot` `each` times once `go` exists; creates `go`
/// and returns every acquisition's wait, with the time from `go` to the last release.
pub fn contend(root: &Path, go: &Path, processes: usize, each: usize) -> Stats {
    use std::io::BufRead;
    let children: Vec<_> = (0..processes)
        .map(|k| {
            Command::new(std::env::current_exe().unwrap())
                .args([
                    "--child-contend",
                    root.to_str().unwrap(),
                    &format!("agent-{k}"),
                    &each.to_string(),
                    go.to_str().unwrap(),
                ])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let start = Instant::now();
    std::fs::write(go, b"").unwrap();
    let mut waits = Vec::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        waits.extend(
            std::io::BufReader::new(&out.stdout[..])
                .lines()
                .map(|l| Duration::from_nanos(l.unwrap().parse().unwrap())),
        );
    }
    let total = start.elapsed();
    waits.sort();
    Stats {
        samples: waits,
        total,
    }
}
