//! A test helper process that drives `maos-coordination` directly, for the multi-process
//! tests: it loops much faster than spawning the CLI, and can be killed mid-operation.
//!
//! Usage (the workspace comes from `MAOS_WORKSPACE`):
//!
//! ```text
//! maos-helper send <channel> <count> <tag>   send count messages {"tag","i"}, print "seq i"
//!                                            after each send returns
//! maos-helper read-loop <channel> <total>    read the channel in a tight loop until total
//!                                            messages are seen; fail on any partial file,
//!                                            gap, reordering or duplicate
//! maos-helper recv <channel>                 print every payload as one JSON line
//! ```
//!
//! With `MAOS_HELPER_GO=<path>`, waits for that file to exist before starting (a start line).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use maos_coordination::Workspace;
use maos_coordination::channel::{Channel, ChannelName, Draft};
use serde_json::json;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = PathBuf::from(std::env::var_os("MAOS_WORKSPACE").context("MAOS_WORKSPACE unset")?);
    let ws = Workspace::open(&root)?;
    if let Some(go) = std::env::var_os("MAOS_HELPER_GO") {
        while !PathBuf::from(&go).exists() {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    let channel =
        |name: &str| -> anyhow::Result<Channel> { Ok(Channel::open(&ws, ChannelName::new(name)?)) };
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["send", name, count, tag] => {
            let ch = channel(name)?;
            let count: u64 = count.parse()?;
            let mut out = std::io::stdout().lock();
            for i in 0..count {
                let m = ch.send(tag, Draft::new(json!({"tag": tag, "i": i})))?;
                writeln!(out, "{} {i}", m.seq)?;
                out.flush()?;
            }
        }
        ["read-loop", name, total] => {
            let ch = channel(name)?;
            let total: u64 = total.parse()?;
            let (mut cursor, mut rounds) = (0u64, 0u64);
            while cursor < total {
                rounds += 1;
                let passed = cursor;
                // A full re-read sees every file that is visible right now: none may be partial.
                let all = ch.read_after(0, None)?;
                if let Some(problem) = all.skipped.first() {
                    bail!("round {rounds}: {problem}");
                }
                // A cursor read must continue exactly where the last one stopped.
                let batch = ch.read_after(cursor, None)?;
                if let Some(problem) = batch.skipped.first() {
                    bail!("round {rounds}: {problem}");
                }
                for m in &batch.messages {
                    if m.seq != cursor + 1 {
                        bail!(
                            "round {rounds}: expected seq {} after {cursor}, got {}",
                            cursor + 1,
                            m.seq
                        );
                    }
                    cursor = m.seq;
                }
                if all.cursor < passed {
                    bail!(
                        "round {rounds}: full read ends at {} behind an earlier cursor {passed}",
                        all.cursor
                    );
                }
            }
            println!("{rounds}");
        }
        ["recv", name] => {
            let batch = channel(name)?.read_after(0, None)?;
            let mut out = std::io::stdout().lock();
            for m in batch.messages {
                writeln!(out, "{}", json!({"seq": m.seq, "payload": m.payload}))?;
            }
        }
        other => bail!("unknown helper command {other:?}"),
    }
    Ok(())
}
