//! Messaging benchmark: the inbox at 10,000 unread messages across 20 channels, search over
//! 100,000 messages (half of them archived), and acknowledgements from 8 processes at once.
//!
//! Baselines in the same run: reading the same 20 channels whole (`read_after(0)`, no
//! addressing, no positions) for the inbox; reading every message file without decoding it
//! for search; 8 processes sending messages for acknowledgements (the same count, one
//! channel each). The CLI rows need the release binary (`cargo build --release -p maos-cli`).
//!
//! Run: `cargo bench -p maos-coordination --bench messaging` (`-- --quick`: a tenth of the
//! messages).
// Benchmarks build fixtures and write result files by hand.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod common;

use common::{bench_dir, cli_binary, measure, print_header, run_cli, spawn_self};
use maos_coordination::Workspace;
use maos_coordination::atomic::Durability;
use maos_coordination::channel::{self, Channel, ChannelName, Draft, Inbox, Query, Retention};
use serde_json::json;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [role, root, k, n] if role == "--child-ack" => return child(root, k, n, true),
        [role, root, k, n] if role == "--child-send" => return child(root, k, n, false),
        _ => {}
    }
    let quick = args.iter().any(|a| a == "--quick");
    let scale = if quick { 10 } else { 1 };
    let dir = bench_dir();
    print_header("messaging", quick, dir.path());
    let cli = cli_binary();

    // The inbox: 20 channels, each with 500 messages for `me` among 500 for others.
    let root = dir.path().join("inbox");
    std::fs::create_dir(&root).unwrap();
    let ws = Workspace::init(&root).unwrap().workspace;
    let per_channel = 500 / scale;
    for c in 0..20 {
        let ch = Channel::open(&ws, ChannelName::new(&format!("ch{c}")).unwrap())
            .with_durability(Durability::Buffered);
        for i in 0..per_channel * 2 {
            let to = if i % 2 == 0 { "me" } else { "someone-else" };
            ch.send("sender", Draft::new(json!({"i": i})).to(to))
                .unwrap();
        }
    }
    let unread = 20 * per_channel;
    let raw = measure(10, |_| {
        for c in 0..20 {
            let ch = Channel::open(&ws, ChannelName::new(&format!("ch{c}")).unwrap());
            std::hint::black_box(ch.read_after(0, None).unwrap());
        }
    });
    raw.print(
        &format!("baseline: read 20 channels whole ({} msgs)", unread * 2),
        None,
    );
    let inbox = Inbox::new(&ws, "me", Vec::new()).unwrap();
    let peek = measure(10, |_| {
        let got = inbox.peek().unwrap();
        assert_eq!(got.messages.len(), unread);
    });
    peek.print(
        &format!("inbox: {unread} unread across 20 channels"),
        Some(&raw),
    );
    if let Some(cli) = &cli {
        let call = measure(5, |_| run_cli(cli, &root, "me", &["inbox", "--peek"]));
        call.print(&format!("`maos inbox --peek`, {unread} unread"), Some(&raw));
    }
    let take = measure(1, |_| {
        assert_eq!(inbox.take().unwrap().messages.len(), unread);
    });
    take.print("inbox: take them (positions saved)", Some(&raw));
    let empty = measure(20, |_| {
        assert!(inbox.take().unwrap().messages.is_empty());
    });
    empty.print("inbox: nothing new (20 channels)", Some(&raw));
    println!();

    // Search: 100,000 messages in 10 channels, the older half pruned into archives.
    let root = dir.path().join("search");
    std::fs::create_dir(&root).unwrap();
    let ws = Workspace::init(&root).unwrap().workspace;
    let total = 100_000 / scale;
    for c in 0..10 {
        let name = ChannelName::new(&format!("log{c}")).unwrap();
        let ch = Channel::open(&ws, name.clone()).with_durability(Durability::Buffered);
        for i in 0..total / 10 {
            let text = if i % 997 == 0 {
                "deploy finished"
            } else {
                "routine note"
            };
            ch.send("agent", Draft::new(json!({"text": text, "i": i})))
                .unwrap();
        }
        channel::prune(
            &ws,
            &name,
            Retention::Keep((total / 20) as u64),
            jiff::Timestamp::now(),
            channel::IfUnread::Keep,
        )
        .unwrap();
    }
    let files = measure(3, |_| {
        for entry in walk(&ws.channels_dir()) {
            std::hint::black_box(std::fs::read(entry).unwrap());
        }
    });
    files.print("baseline: read every live message file", None);
    let query = Query {
        pattern: regex::Regex::new("deploy").unwrap(),
        channel: None,
        from: None,
        since: None,
    };
    let mut hits = 0;
    let search = measure(5, |_| {
        hits = channel::search(&ws, &query).unwrap().messages.len();
    });
    search.print(
        &format!("search: {total} messages, half archived"),
        Some(&files),
    );
    assert!(hits > 0);
    if let Some(cli) = &cli {
        let call = measure(5, |_| {
            run_cli(cli, &root, "me", &["msg", "search", "deploy"])
        });
        call.print(
            &format!("`maos msg search deploy`, {total} messages"),
            Some(&files),
        );
    }
    println!();

    // Acknowledgements: 8 processes, each acknowledging its own 500 messages at once;
    // the baseline sends as many messages from 8 processes.
    let root = dir.path().join("acks");
    std::fs::create_dir(&root).unwrap();
    let ws = Workspace::init(&root).unwrap().workspace;
    let each = 500 / scale;
    for k in 0..8 {
        let ch = Channel::open(&ws, ChannelName::new(&format!("a{k}")).unwrap())
            .with_durability(Durability::Buffered);
        for _ in 0..each {
            ch.send(
                "sender",
                Draft::new(json!("please ack"))
                    .to(format!("w{k}"))
                    .ack(None),
            )
            .unwrap();
        }
    }
    let run = |ack: bool| -> Duration {
        let start = Instant::now();
        let children: Vec<_> = (0..8)
            .map(|k| {
                spawn_self(&[
                    if ack { "--child-ack" } else { "--child-send" },
                    root.to_str().unwrap(),
                    &k.to_string(),
                    &each.to_string(),
                ])
            })
            .collect();
        for mut child in children {
            assert!(child.wait().unwrap().success());
        }
        start.elapsed()
    };
    let sends = run(false);
    let acks = run(true);
    let per_s = |d: Duration| (8 * each) as f64 / d.as_secs_f64();
    println!(
        "8 processes × {each}: acknowledgements {:.0}/s, sends (baseline) {:.0}/s: {:.1}× the send time",
        per_s(acks),
        per_s(sends),
        acks.as_secs_f64() / sends.as_secs_f64()
    );
    common::summary(
        &json!({"row": "acks, 8 processes", "ops_per_s": per_s(acks), "baseline_ops_per_s": per_s(sends)}),
    );
    println!("\nratio: this row's p50 over its baseline's p50.");
    common::report_peak_memory();
}

/// A child process: acknowledges messages 1..=n of channel a<k> as w<k>, or sends n
/// messages on channel s<k>.
fn child(root: &str, k: &str, n: &str, ack: bool) {
    let ws = Workspace::open(Path::new(root)).unwrap();
    let n: u64 = n.parse().unwrap();
    if ack {
        let name = ChannelName::new(&format!("a{k}")).unwrap();
        for seq in 1..=n {
            let (_, new) = channel::acknowledge(&ws, &name, seq, &format!("w{k}"), None).unwrap();
            assert!(new);
        }
    } else {
        let ch = Channel::open(&ws, ChannelName::new(&format!("s{k}")).unwrap())
            .with_durability(Durability::Buffered);
        for _ in 0..n {
            ch.send(&format!("w{k}"), Draft::new(json!("done")))
                .unwrap();
        }
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else if !entry.file_name().to_string_lossy().starts_with('.') {
            found.push(path);
        }
    }
    found
}
