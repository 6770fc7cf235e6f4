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
//! maos-helper prune-read-loop <channel> <total>
//!                                            read on until total while the channel is
//!                                            pruned: jump only at a prune marker; print the
//!                                            number of jumps
//! maos-helper recv <channel>                 print every payload as one JSON line
//! maos-helper counter <resource> <rounds> <file> <agent>
//!                                            rounds of: lock (guard, wait 60 s), read the
//!                                            number in file, pause, write it + 1, unlock;
//!                                            print "<number read> <fencing token>" each round
//! maos-helper hold <resource> <agent> [<ttl ms>]
//!                                            take the lock (bound to this process, 1 h TTL or
//!                                            as given), print "held <token>", then sleep
//!                                            until killed (the guard renews the lease)
//! maos-helper hold-check <resource> <agent> <ttl>
//!                                            take the lock (bound, <ttl> seconds, renewed),
//!                                            print "held <token>", then check the guard every
//!                                            20 ms; print "lost <why>" and exit when it fails
//! maos-helper steal-rounds <resource> <rounds> <dir> <agent>
//!                                            for each round k: wait for <dir>/go-k, try once
//!                                            to take the (expired) lock with a 60 s TTL,
//!                                            print "k won <token>" or "k lost"
//!
//! maos-helper claim-loop <agent>          claim the best ready task until none is left, print
//!                                            each id claimed
//! maos-helper claim-rounds <rounds> <dir> <agent>
//!                                            for each round k: wait for <dir>/go-k, claim the
//!                                            task named in <dir>/task-k, print "k won" or
//!                                            "k lost <holder>"
//! maos-helper chaos <agent> <seconds> <dir>
//!                                            a mixed workload as a joined agent until the time
//!                                            is up: send on `chaos` (log acknowledged sends to
//!                                            <dir>/acks-<agent>), take the `shared` lock and
//!                                            check nobody else is inside, claim and complete
//!                                            tasks; exit 2 on any violation
//! maos-helper tag-loop <task> <count> <agent>
//!                                            add tags <agent>-0 … to one task, one update each
//! maos-helper hold-then-join <resource> <agent>
//!                                            take the lock (bound, 1 h), then join as the agent;
//!                                            print "held <token>" and sleep until killed
//! maos-helper hold-kernel-lock <path>        take the kernel lock on a file under .maos/,
//!                                            print "locked", sleep until killed
//! maos-helper threads <kind> <agent> <dir>   8 threads sharing one handle: `locks` does 25
//!                                            locked increments each of <dir>/counter; `tasks`
//!                                            claims until none is left, printing each id;
//!                                            `channel` sends 50 messages each on `threads`
//! maos-helper reserve-loop <agent> <rounds> <log>
//!                                            rounds of: take one of (exclusive `src/**`,
//!                                            exclusive `src/db/*`, shared `src/db/*`, exclusive
//!                                            `src/db/a.rs`, the lock on `src/db/a.rs`), waiting
//!                                            up to 60 s; append "enter <agent> <kind> <target>"
//!                                            to log, pause, append "exit …", release; print
//!                                            "token <n>" for each reservation granted
//! maos-helper hold-reservation <pattern> <agent>
//!                                            reserve (bound to this process, 1 h), print "held
//!                                            <token>", sleep until killed
//! ```
//!
//! With `MAOS_HELPER_GO=<path>`, waits for that file to exist before starting (a start line).
//! With `MAOS_HELPER_STORE=<store>`, works through that store instead of the one the
//! workspace records (an etcd workspace pinned to one member).
#![allow(clippy::unwrap_used, clippy::expect_used)]
// Tests and their helper write files by hand, on purpose (hand edits, damage, counters).
#![allow(clippy::disallowed_methods)]

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use maos_coordination::Workspace;
use maos_coordination::channel::{Channel, ChannelName, Draft};
use maos_coordination::lock::{LockError, LockRequest, Locks, ReservationRequest, Reservations};
use maos_coordination::task::{Edit, Pick, TaskError, Tasks};
use serde_json::json;

/// A test that fails removes its workspace; helpers waiting on it must not linger.
fn exit_when_gone(root: PathBuf) {
    std::thread::spawn(move || {
        while root.exists() {
            std::thread::sleep(Duration::from_millis(100));
        }
        std::process::exit(3);
    });
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = PathBuf::from(std::env::var_os("MAOS_WORKSPACE").context("MAOS_WORKSPACE unset")?);
    let mut ws = Workspace::open(&root)?;
    if let Ok(store) = std::env::var("MAOS_HELPER_STORE") {
        ws = ws.with_store(&maos_coordination::store::StoreSpec::parse(&store)?)?;
    }
    exit_when_gone(root.clone());
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
        ["reserve-loop", agent, rounds, log] => reserve_loop(&ws, agent, rounds.parse()?, log)?,
        ["hold-reservation", pattern, agent] => {
            let granted = Reservations::new(&ws).try_reserve(
                &ReservationRequest::new(&[pattern], agent)?
                    .bound_to_process(true)
                    .ttl(Duration::from_secs(3600)),
            )?;
            println!("held {}", granted[0].token);
            std::io::stdout().flush()?;
            loop {
                std::thread::sleep(Duration::from_secs(3600));
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
        ["prune-read-loop", name, total] => {
            // Reads on while the channel is pruned under it: the position may jump forward
            // only where the channel says it was pruned; any other gap is a failure.
            let ch = channel(name)?;
            let total: u64 = total.parse()?;
            let (mut cursor, mut jumps) = (0u64, 0u64);
            while cursor < total {
                let batch = ch.read_after(cursor, None)?;
                if let Some(problem) = batch.skipped.first() {
                    bail!("at {cursor}: {problem}");
                }
                if let Some(pruned) = &batch.pruned {
                    if pruned.upto <= cursor {
                        bail!(
                            "a prune marker at {} behind the position {cursor}",
                            pruned.upto
                        );
                    }
                    cursor = pruned.upto;
                    jumps += 1;
                }
                for m in &batch.messages {
                    if m.seq != cursor + 1 {
                        bail!(
                            "expected seq {} after {cursor}, got {} (no prune marker)",
                            cursor + 1,
                            m.seq
                        );
                    }
                    cursor = m.seq;
                }
            }
            println!("{jumps}");
        }
        ["recv", name] => {
            let batch = channel(name)?.read_after(0, None)?;
            let mut out = std::io::stdout().lock();
            for m in batch.messages {
                writeln!(out, "{}", json!({"seq": m.seq, "payload": m.payload}))?;
            }
        }
        ["counter", resource, rounds, file, agent] => {
            let locks = Locks::new(&ws);
            let request = LockRequest::new(resource, agent)?.purpose("count");
            let mut out = std::io::stdout().lock();
            for _ in 0..rounds.parse::<u32>()? {
                let guard = locks.acquire(&request, Duration::from_secs(60))?;
                let text = std::fs::read_to_string(file).unwrap_or_default();
                let n: u64 = text.trim().parse().unwrap_or(0);
                std::thread::sleep(Duration::from_micros(300));
                std::fs::write(file, format!("{}\n", n + 1))?;
                writeln!(out, "{n} {}", guard.token())?;
                guard.release()?;
            }
        }
        ["hold-then-join", resource, agent] => {
            let request = LockRequest::new(resource, agent)?.ttl(Duration::from_secs(3600));
            let guard = Locks::new(&ws).try_acquire(&request)?;
            let _agent = maos_agent::Agent::join(&ws, agent, maos_agent::JoinOptions::default())?;
            println!("held {}", guard.token());
            loop {
                std::thread::sleep(Duration::from_secs(60));
            }
        }
        ["hold-kernel-lock", path] => {
            let _lock = ws.kernel_lock(&ws.dir().join(path))?;
            println!("locked");
            loop {
                std::thread::sleep(Duration::from_secs(60));
            }
        }
        ["threads", kind, agent, dir] => threads(&ws, kind, agent, &PathBuf::from(dir))?,
        ["hold", resource, agent, ttl_ms] => {
            let ttl = Duration::from_millis(ttl_ms.parse()?);
            let request = LockRequest::new(resource, agent)?.ttl(ttl);
            let guard = Locks::new(&ws).try_acquire(&request)?;
            println!("held {}", guard.token());
            loop {
                std::thread::sleep(Duration::from_secs(60));
            }
        }
        ["hold", resource, agent] => {
            let request = LockRequest::new(resource, agent)?.ttl(Duration::from_secs(3600));
            let guard = Locks::new(&ws).try_acquire(&request)?;
            println!("held {}", guard.token());
            loop {
                std::thread::sleep(Duration::from_secs(60));
            }
        }
        ["hold-check", resource, agent, ttl] => {
            let request =
                LockRequest::new(resource, agent)?.ttl(Duration::from_secs_f64(ttl.parse()?));
            let guard = Locks::new(&ws).try_acquire(&request)?;
            println!("held {}", guard.token());
            loop {
                if let Err(e) = guard.check() {
                    println!("lost {e}");
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        ["steal-rounds", resource, rounds, dir, agent] => {
            let locks = Locks::new(&ws);
            let request = LockRequest::new(resource, agent)?
                .ttl(Duration::from_secs(60))
                // Only expiry frees it: a stealer that finished its last round and exited
                // must not make its lock "dead" while slower stealers still try.
                .bound_to_process(false);
            let mut out = std::io::stdout().lock();
            for k in 0..rounds.parse::<u32>()? {
                let go = PathBuf::from(dir).join(format!("go-{k}"));
                while !go.exists() {
                    std::thread::sleep(Duration::from_micros(100));
                }
                match locks.try_acquire(&request) {
                    Ok(guard) => writeln!(out, "{k} won {}", guard.persist().token)?,
                    Err(LockError::Held { .. } | LockError::Queued { .. }) => {
                        writeln!(out, "{k} lost")?
                    }
                    Err(e) => return Err(e.into()),
                }
                out.flush()?;
            }
        }
        ["claim-loop", agent] => {
            let tasks = Tasks::new(&ws);
            let mut out = std::io::stdout().lock();
            loop {
                match tasks.claim(agent, Pick::best()) {
                    Ok(task) => writeln!(out, "{}", task.id)?,
                    Err(TaskError::NothingReady { .. }) => break,
                    Err(e) => return Err(e.into()),
                }
                out.flush()?;
            }
        }
        ["claim-rounds", rounds, dir, agent] => {
            let tasks = Tasks::new(&ws);
            let mut out = std::io::stdout().lock();
            for k in 0..rounds.parse::<u32>()? {
                let go = PathBuf::from(dir).join(format!("go-{k}"));
                while !go.exists() {
                    std::thread::sleep(Duration::from_micros(100));
                }
                let id = std::fs::read_to_string(PathBuf::from(dir).join(format!("task-{k}")))?;
                match tasks.claim(agent, Pick::Named(id.trim())) {
                    Ok(_) => writeln!(out, "{k} won")?,
                    Err(TaskError::Claimed { holder, .. }) => writeln!(out, "{k} lost {holder}")?,
                    Err(e) => return Err(e.into()),
                }
                out.flush()?;
            }
        }
        ["tag-loop", id, count, agent] => {
            let tasks = Tasks::new(&ws);
            for i in 0..count.parse::<u32>()? {
                let edit = Edit {
                    add_tags: vec![format!("{agent}-{i}")],
                    ..Edit::default()
                };
                tasks.update(id, agent, edit)?;
            }
        }
        ["chaos", agent, seconds, dir] => chaos(&ws, agent, seconds.parse()?, &PathBuf::from(dir))?,
        other => bail!("unknown helper command {other:?}"),
    }
    Ok(())
}

/// One chaos agent: see the usage above. Violations of mutual exclusion end the process with
/// exit code 2 and a message on stderr.
fn chaos(ws: &Workspace, agent: &str, seconds: f64, dir: &std::path::Path) -> anyhow::Result<()> {
    use maos_agent::{Agent, JoinOptions};
    use std::fs::OpenOptions;

    let me = Agent::join(
        ws,
        agent,
        JoinOptions {
            // Short enough that recovery is exercised, long enough that a loaded machine
            // does not make live agents look stale (stale after 6 beats).
            heartbeat: Duration::from_millis(500),
            ..JoinOptions::default()
        },
    )?;
    let channel = Channel::open(ws, ChannelName::new("chaos")?);
    let locks = Locks::new(ws);
    let tasks = Tasks::new(ws);
    let request = LockRequest::new("shared", agent)?.ttl(Duration::from_secs(30));
    let mut acks = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("acks-{agent}")))?;
    let inside = dir.join("inside");
    let holder = dir.join("holder");
    // Where this agent is, for the test to see where its kills and stops land.
    // Written whole (a rename), so the test never reads half a phase.
    let phase = |name: &str| {
        let staged = dir.join(format!(".phase-{agent}"));
        std::fs::write(&staged, name)?;
        std::fs::rename(&staged, dir.join(format!("phase-{agent}")))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs_f64(seconds);
    let mut n = 0u64;
    while std::time::Instant::now() < deadline {
        // Messages: log each one whose send returned.
        phase("send")?;
        let m = channel.send(agent, Draft::new(json!({"agent": agent, "n": n})))?;
        writeln!(acks, "{agent} {n} {}", m.seq)?;
        n += 1;
        // Locks: nobody else may be inside while we hold `shared`.
        phase("lock-wait")?;
        let guard = locks.acquire(&request, Duration::from_secs(20))?;
        let me_holding = format!("{} {}\n", std::process::id(), guard.token());
        std::fs::write(&holder, &me_holding)?;
        phase("inside")?;
        match std::fs::File::create_new(&inside) {
            Ok(mut f) => writeln!(f, "{}", std::process::id())?,
            Err(_) => {
                // A holder killed inside leaves its marker; only a live one is a violation.
                let pid = std::fs::read_to_string(&inside).unwrap_or_default();
                let alive = pid.trim().parse::<u32>().is_ok_and(|p| {
                    std::path::Path::new(&format!("/proc/{p}")).exists()
                        && std::fs::read_to_string(format!("/proc/{p}/stat"))
                            .is_ok_and(|s| !s.contains(") Z"))
                });
                if alive && pid.trim() != std::process::id().to_string() {
                    eprintln!(
                        "VIOLATION: {agent} holds `shared` (token {}) while pid {} is inside",
                        guard.token(),
                        pid.trim()
                    );
                    std::process::exit(2);
                }
                std::fs::write(&inside, format!("{}\n", std::process::id()))?;
            }
        }
        std::thread::sleep(Duration::from_millis(4));
        std::fs::remove_file(&inside)?;
        // Out of the critical section but still holding: nobody may take the lock now either.
        phase("leaving")?;
        std::thread::sleep(Duration::from_millis(1));
        let still = std::fs::read_to_string(&holder).unwrap_or_default();
        if still != me_holding {
            eprintln!(
                "VIOLATION: {agent} still holds `shared` (token {}) but `{}` took it",
                guard.token(),
                still.trim()
            );
            std::process::exit(2);
        }
        guard.release()?;
        // Tasks: claim one if any is ready and complete it.
        phase("claim")?;
        // As a worker does: whoever takes work from the queue first recovers what dead or
        // silent agents held.
        maos_coordination::recovery::recover_lazily(ws);
        match tasks.claim(agent, Pick::best()) {
            Ok(task) => {
                me.set_current_task(Some(task.id.clone()))?;
                // "working" is exactly the time the task is in progress and untouched: a kill
                // then always leaves a task for recovery to return.
                phase("working")?;
                std::thread::sleep(Duration::from_millis(20));
                phase("finishing")?;
                let done = tasks.set_status_as_claimed(
                    &task,
                    agent,
                    maos_coordination::task::Status::Completed,
                    None,
                );
                phase("finished")?;
                match done {
                    Ok(_) => {}
                    // Judged stale while stopped and recovered: the task went back to the
                    // queue and another agent does it. That is the protocol working.
                    Err(TaskError::ClaimLost { .. }) => {
                        eprintln!("{agent}: lost {}", task.id);
                    }
                    Err(e) => return Err(e.into()),
                }
                me.set_current_task(None)?;
            }
            Err(TaskError::NothingReady { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    phase("leave")?;
    me.leave()?;
    Ok(())
}

/// Rounds of taking a lock or reservation, logged around the time it is held (see the usage).
fn reserve_loop(ws: &Workspace, agent: &str, rounds: u64, log: &str) -> anyhow::Result<()> {
    let locks = Locks::new(ws).with_recheck(Duration::from_millis(20));
    let reservations = Reservations::of(&locks);
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(log)?;
    let wait = Duration::from_secs(60);
    let seed = agent.bytes().map(u64::from).sum::<u64>();
    for round in 0..rounds {
        let (kind, target) = [
            ("exclusive", "src/**"),
            ("exclusive", "src/db/*"),
            ("shared", "src/db/*"),
            ("exclusive", "src/db/a.rs"),
            ("lock", "src/db/a.rs"),
        ][((round + seed) * 7 % 5) as usize];
        let mut held_lock = None;
        if kind == "lock" {
            held_lock = Some(locks.acquire(&LockRequest::new(target, agent)?, wait)?);
        } else {
            let granted = reservations.reserve(
                &ReservationRequest::new(&[target], agent)?.shared(kind == "shared"),
                wait,
            )?;
            println!("token {}", granted[0].token);
        }
        log.write_all(format!("enter {agent} {kind} {target}\n").as_bytes())?;
        std::thread::sleep(Duration::from_millis(2));
        log.write_all(format!("exit {agent} {kind} {target}\n").as_bytes())?;
        match held_lock {
            Some(guard) => guard.release()?,
            None => {
                reservations.release(&[target], agent)?;
            }
        }
    }
    Ok(())
}

/// 8 threads of this process sharing one handle (see the usage at the top).
fn threads(ws: &Workspace, kind: &str, agent: &str, dir: &std::path::Path) -> anyhow::Result<()> {
    const THREADS: usize = 8;
    let out = std::sync::Mutex::new(std::io::stdout());
    let say = |line: String| {
        let mut out = out.lock().unwrap();
        writeln!(out, "{line}").unwrap();
        out.flush().unwrap();
    };
    match kind {
        "locks" => {
            let locks = Locks::new(ws);
            let counter = dir.join("counter");
            std::thread::scope(|scope| {
                for _ in 0..THREADS {
                    scope.spawn(|| {
                        let request = LockRequest::new("counter", agent).unwrap();
                        for _ in 0..25 {
                            let guard = locks.acquire(&request, Duration::from_secs(120)).unwrap();
                            let n: u64 = std::fs::read_to_string(&counter)
                                .map(|t| t.trim().parse().unwrap())
                                .unwrap_or(0);
                            std::thread::yield_now();
                            std::fs::write(&counter, format!("{}\n", n + 1)).unwrap();
                            say(format!("{n} {}", guard.token()));
                            drop(guard);
                        }
                    });
                }
            });
        }
        "tasks" => {
            let tasks = Tasks::new(ws);
            std::thread::scope(|scope| {
                for _ in 0..THREADS {
                    scope.spawn(|| {
                        loop {
                            match tasks.claim(agent, Pick::best()) {
                                Ok(task) => say(task.id),
                                Err(TaskError::NothingReady { .. }) => break,
                                Err(e) => panic!("{e}"),
                            }
                        }
                    });
                }
            });
        }
        "channel" => {
            let channel = Channel::open(ws, ChannelName::new("threads")?);
            std::thread::scope(|scope| {
                for t in 0..THREADS {
                    let channel = &channel;
                    scope.spawn(move || {
                        for i in 0..50 {
                            let sent = channel
                                .send(agent, Draft::new(json!({"thread": t, "i": i})))
                                .unwrap();
                            say(sent.seq.to_string());
                        }
                    });
                }
            });
        }
        other => bail!("unknown kind {other}"),
    }
    Ok(())
}
