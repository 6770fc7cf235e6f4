//! The same jobs done by Redis, for comparison with the MAOS benches: messages with Streams
//! (`XADD` throughput; `XADD` → a blocked `XREAD BLOCK` in another process, wake-up latency)
//! and locks with `SET key token NX PX` and a checked delete (a Lua script comparing the
//! token), uncontended and contended by 2, 4 and 8 processes. Baseline in the same run:
//! Redis `PING` round trips, and the Unix-socket hop the MAOS wake-up bench uses.
//!
//! Run: `benches/run-all.sh` starts a `redis-server` on loopback and passes its address;
//! by hand: `MAOS_REDIS=redis://127.0.0.1:6399 cargo bench -p maos-coordination --bench redis`.
//! Without `MAOS_REDIS` the bench says so and does nothing.
// Benchmarks build fixtures and write result files by hand.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

mod common;

use common::{Stats, bench_dir, child_echo, measure, one_way_hop, print_header, spawn_self};

const RELEASE: &str = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Ok(url) = std::env::var("MAOS_REDIS") else {
        println!("MAOS_REDIS is not set: no Redis to compare with (benches/run-all.sh starts one)");
        return;
    };
    match args.first().map(String::as_str) {
        Some("--child-echo") => return child_echo(&args[1]),
        Some("--child-xread") => return child_xread(&url, &args[1]),
        Some("--child-contend") => return child_contend(&url, &args[1], &args[2], &args[3]),
        _ => {}
    }
    let quick = args.iter().any(|a| a == "--quick");
    let scale = if quick { 10 } else { 1 };
    let dir = bench_dir();
    print_header("Redis comparison", quick, dir.path());
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut con = client.get_connection().unwrap();
    let _: () = redis::cmd("FLUSHALL").query(&mut con).unwrap();
    let version: String = redis::cmd("INFO")
        .arg("server")
        .query::<String>(&mut con)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:").map(str::to_owned))
        .unwrap_or_default();
    println!("redis {version} at {url} (no persistence)\n");

    let ping = measure(20_000 / scale, |_| {
        let _: String = redis::cmd("PING").query(&mut con).unwrap();
    });
    ping.print("baseline: redis PING round trip", None);
    let payload = serde_json::json!({"text": "x".repeat(200)}).to_string();
    let xadd = measure(20_000 / scale, |_| {
        let _: String = redis::cmd("XADD")
            .arg("tp")
            .arg("*")
            .arg("payload")
            .arg(&payload)
            .query(&mut con)
            .unwrap();
    });
    xadd.print("redis: XADD, single sender", Some(&ping));

    let one_way = one_way_hop(dir.path(), 2_000 / scale);
    one_way.print("baseline: Unix-socket one-way hop (RTT/2)", None);
    let socket = dir.path().join("xread.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let mut child = spawn_self(&["--child-xread", socket.to_str().unwrap()]);
    let (mut stream, _) = listener.accept().unwrap();
    let mut byte = [0u8; 1];
    stream.read_exact(&mut byte).unwrap();
    let wake = measure(2_000 / scale, |_| {
        std::thread::sleep(Duration::from_micros(500));
        let start = Instant::now();
        let _: String = redis::cmd("XADD")
            .arg("wake")
            .arg("*")
            .arg("payload")
            .arg(&payload)
            .query(&mut con)
            .unwrap();
        stream.read_exact(&mut byte).unwrap();
        start.elapsed()
    });
    wake.print("redis: wake-up, XADD → XREAD BLOCK has it", Some(&one_way));
    drop(stream);
    child.kill().ok();
    child.wait().unwrap();
    println!();

    let script = redis::Script::new(RELEASE);
    let token = "token-1";
    let uncontended = measure(20_000 / scale, |_| {
        let ok: Option<String> = redis::cmd("SET")
            .arg("solo")
            .arg(token)
            .arg("NX")
            .arg("PX")
            .arg(30_000)
            .query(&mut con)
            .unwrap();
        assert!(ok.is_some());
        let released: i32 = script.key("solo").arg(token).invoke(&mut con).unwrap();
        assert_eq!(released, 1);
    });
    uncontended.print(
        "redis: SET NX PX + checked delete, uncontended",
        Some(&ping),
    );
    for processes in [2, 4, 8] {
        let each = 400 / scale / processes;
        let go = dir.path().join(format!("go-{processes}"));
        let children: Vec<_> = (0..processes)
            .map(|k| {
                std::process::Command::new(std::env::current_exe().unwrap())
                    .args([
                        "--child-contend",
                        &format!("p{k}"),
                        &each.to_string(),
                        go.to_str().unwrap(),
                    ])
                    .stdout(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        let start = Instant::now();
        std::fs::File::create(&go).unwrap();
        let mut waits = Vec::new();
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success());
            waits.extend(
                String::from_utf8(out.stdout)
                    .unwrap()
                    .lines()
                    .map(|l| Duration::from_nanos(l.parse().unwrap())),
            );
        }
        waits.sort();
        let stats = Stats {
            samples: waits,
            total: start.elapsed(),
        };
        stats.print(
            &format!("redis: hand-off, {processes} processes (wait per acquire)"),
            None,
        );
    }
    println!("\nratio: this row's p50 over its baseline's p50.");
    common::report_peak_memory();
}

/// Blocks in XREAD on `wake` and writes one byte per entry received.
fn child_xread(url: &str, socket: &str) {
    let mut con = redis::Client::open(url).unwrap().get_connection().unwrap();
    let mut stream = UnixStream::connect(socket).unwrap();
    let mut last = "$".to_owned();
    stream.write_all(b"r").unwrap();
    loop {
        let reply: redis::Value = redis::cmd("XREAD")
            .arg("BLOCK")
            .arg(0)
            .arg("STREAMS")
            .arg("wake")
            .arg(&last)
            .query(&mut con)
            .unwrap();
        // [[stream, [[id, fields], ...]]]: remember the last id, signal each entry.
        let ids = entry_ids(&reply);
        for id in &ids {
            if stream.write_all(b"m").is_err() {
                return;
            }
            last.clone_from(id);
        }
    }
}

fn entry_ids(reply: &redis::Value) -> Vec<String> {
    use redis::Value;
    let mut ids = Vec::new();
    let streams = match reply {
        Value::Array(s) => s.as_slice(),
        Value::Map(m) => {
            return m
                .iter()
                .flat_map(|(_, entries)| entry_ids_of(entries))
                .collect();
        }
        _ => return ids,
    };
    for s in streams {
        if let Value::Array(pair) = s
            && let Some(entries) = pair.get(1)
        {
            ids.extend(entry_ids_of(entries));
        }
    }
    ids
}

fn entry_ids_of(entries: &redis::Value) -> Vec<String> {
    use redis::Value;
    let Value::Array(entries) = entries else {
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|e| match e {
            Value::Array(parts) => match parts.first() {
                Some(Value::BulkString(id)) => Some(String::from_utf8_lossy(id).into_owned()),
                Some(Value::SimpleString(id)) => Some(id.clone()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// `count` times: take `hot` with SET NX PX (retrying every 100 µs: Redis has no waiting),
/// release with the checked delete; prints each wait in ns.
fn child_contend(url: &str, me: &str, count: &str, go: &str) {
    let mut con = redis::Client::open(url).unwrap().get_connection().unwrap();
    let script = redis::Script::new(RELEASE);
    while !std::path::Path::new(go).exists() {
        std::thread::sleep(Duration::from_micros(200));
    }
    let mut out = String::new();
    for i in 0..count.parse::<usize>().unwrap() {
        let token = format!("{me}-{i}");
        let start = Instant::now();
        loop {
            let ok: Option<String> = redis::cmd("SET")
                .arg("hot")
                .arg(&token)
                .arg("NX")
                .arg("PX")
                .arg(30_000)
                .query(&mut con)
                .unwrap();
            if ok.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        out.push_str(&format!("{}\n", start.elapsed().as_nanos()));
        let _: i32 = script.key("hot").arg(&token).invoke(&mut con).unwrap();
    }
    std::io::stdout().write_all(out.as_bytes()).unwrap();
}
