//! Who a process is, and whether it is still alive.
//!
//! A record that belongs to a running process (a lock held through a guard, a waiter, an
//! interest) carries that process's identity: host name, boot id, pid and the pid's start
//! time. On the same host, the process is provably gone when the machine rebooted since (the
//! boot id changed), the pid no longer exists, or the pid now belongs to a process started at
//! another time (pids are reused). On another host, or in another PID namespace of this host
//! (another container), nothing is provable: only expiry counts.
//!
//! The facts come from one [`ProcessFacts`] provider: [`Procfs`] on Linux, `Darwin` on macOS
//! (`sysctl`, `proc_pidinfo`); elsewhere [`KnowsNothing`]. Where a fact cannot be told, a
//! process is [`Liveness::Unknown`], never `Dead`, so locks end by expiry and tasks come back
//! when the heartbeat lease runs out.
//!
//! It also owns the clock that does not jump: [`boot_clock_ms`], the time since boot
//! (`CLOCK_BOOTTIME`, which keeps counting through suspend and is never stepped), so that
//! expiry and staleness judged between processes of one boot survive a wall-clock step.

#[cfg(target_os = "macos")]
mod macos;

use std::sync::OnceLock;

#[cfg(target_os = "macos")]
pub use macos::Darwin;

use jiff::SignedDuration;
use serde::{Deserialize, Serialize};

/// The identity of a running process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessIdentity {
    /// The host name.
    pub host: String,
    /// The kernel's boot id (changes at every boot).
    pub boot_id: String,
    /// The process id.
    pub pid: u32,
    /// When the process started, in clock ticks since boot (`/proc/<pid>/stat`, field 22).
    pub start_time: u64,
    /// The inode of its PID namespace (`/proc/self/ns/pid`); 0 when unknown.
    #[serde(default)]
    pub pid_ns: u64,
}

/// What can be said about a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// Running on this host.
    Alive,
    /// Provably gone.
    Dead,
    /// On another host or in another PID namespace: cannot be told from here.
    Unknown,
}

/// One fact about a process, as far as this platform can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fact<T> {
    /// Known.
    Known(T),
    /// Provably not there (no such process).
    Absent,
    /// This platform cannot tell.
    Unknown,
}

/// What this platform can tell about processes: the one place that knows how (Linux reads
/// `/proc`). Anything it cannot determine is `None` or [`Fact::Unknown`], and a process
/// judged on unknown facts is [`Liveness::Unknown`] — never `Dead`: its locks then end by
/// expiry, and its agent's tasks come back only when its heartbeat lease runs out.
pub trait ProcessFacts: Send + Sync {
    /// This machine's host name.
    fn host_name(&self) -> Option<String>;
    /// This boot's identity (changes at every boot).
    fn boot_id(&self) -> Option<String>;
    /// This process's PID namespace, where the platform has them.
    fn pid_namespace(&self) -> Option<u64>;
    /// When process `pid` started (in the platform's units), or that there is none.
    fn start_time(&self, pid: u32) -> Fact<u64>;
}

/// Linux: `/proc`.
#[derive(Debug, Clone, Copy)]
pub struct Procfs;

impl ProcessFacts for Procfs {
    fn host_name(&self) -> Option<String> {
        read_trimmed("/proc/sys/kernel/hostname").or_else(|| {
            Some(
                rustix::system::uname()
                    .nodename()
                    .to_string_lossy()
                    .into_owned(),
            )
        })
    }

    fn boot_id(&self) -> Option<String> {
        read_trimmed("/proc/sys/kernel/random/boot_id").filter(|b| !b.is_empty())
    }

    fn pid_namespace(&self) -> Option<u64> {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self/ns/pid").ok().map(|m| m.ino())
    }

    fn start_time(&self, pid: u32) -> Fact<u64> {
        if !std::path::Path::new("/proc/self/stat").exists() {
            return Fact::Unknown; // no /proc mounted: nothing can be told of any pid
        }
        match proc_start_time(pid) {
            Some(started) => Fact::Known(started),
            None => Fact::Absent,
        }
    }
}

/// A platform MAOS cannot read process facts on: it knows nothing, so every process of
/// another record is `Unknown` (and tests inject it to prove that this is safe).
#[derive(Debug, Clone, Copy)]
pub struct KnowsNothing;

impl ProcessFacts for KnowsNothing {
    fn host_name(&self) -> Option<String> {
        None
    }
    fn boot_id(&self) -> Option<String> {
        None
    }
    fn pid_namespace(&self) -> Option<u64> {
        None
    }
    fn start_time(&self, _pid: u32) -> Fact<u64> {
        Fact::Unknown
    }
}

static PROVIDER: OnceLock<Box<dyn ProcessFacts>> = OnceLock::new();

/// Makes `facts` the process facts of this process (before any is read; later calls are
/// ignored and return false). Without it, the platform's own provider is used.
pub fn use_facts(facts: Box<dyn ProcessFacts>) -> bool {
    PROVIDER.set(facts).is_ok()
}

/// The process facts in use.
pub fn facts() -> &'static dyn ProcessFacts {
    PROVIDER
        .get_or_init(|| {
            #[cfg(target_os = "linux")]
            let platform: Box<dyn ProcessFacts> = Box::new(Procfs);
            #[cfg(target_os = "macos")]
            let platform: Box<dyn ProcessFacts> = Box::new(Darwin);
            #[cfg(not(any(target_os = "linux", target_os = "macos")))]
            let platform: Box<dyn ProcessFacts> = Box::new(KnowsNothing);
            platform
        })
        .as_ref()
}

impl ProcessIdentity {
    /// The identity of the calling process.
    pub fn current() -> Self {
        static CURRENT: OnceLock<ProcessIdentity> = OnceLock::new();
        let pid = std::process::id();
        let fresh = || {
            let facts = facts();
            Self {
                host: host_name(),
                boot_id: boot_id(),
                pid,
                start_time: match facts.start_time(pid) {
                    Fact::Known(t) => t,
                    _ => 0,
                },
                pid_ns: pid_namespace(),
            }
        };
        let cached = CURRENT.get_or_init(fresh);
        // A forked child is another process: it does not inherit the identity.
        if cached.pid == pid {
            cached.clone()
        } else {
            fresh()
        }
    }

    /// A process that cannot be judged: an agent living in another program's process (an
    /// editor session driving MAOS through hooks). Its liveness is always `Unknown` (no boot
    /// id): only its heartbeat lease tells whether it is still there.
    pub fn unknown() -> Self {
        Self {
            host: host_name(),
            boot_id: String::new(),
            pid: 0,
            start_time: 0,
            pid_ns: 0,
        }
    }

    /// Whether this is [`ProcessIdentity::unknown`]: no process stands behind the record.
    pub fn is_unknown(&self) -> bool {
        self.pid == 0 && self.boot_id.is_empty()
    }

    /// Whether this process is still running, as far as this platform can tell.
    pub fn liveness(&self) -> Liveness {
        self.liveness_with(cached())
    }

    /// Whether this process is still running, judged with `facts`: `Dead` only when that is
    /// provable (same host, same PID namespace, and another boot, or no such pid, or the pid
    /// reused by a process started at another time); `Unknown` whenever a fact is missing.
    pub fn liveness_with(&self, facts: &dyn ProcessFacts) -> Liveness {
        if facts.host_name().is_none_or(|h| h != self.host) {
            return Liveness::Unknown;
        }
        match facts.boot_id() {
            Some(boot) if !self.boot_id.is_empty() => {
                if boot != self.boot_id {
                    return Liveness::Dead;
                }
            }
            _ => return Liveness::Unknown,
        }
        match (facts.pid_namespace(), self.pid_ns) {
            (Some(here), there) if there != 0 && here != there => return Liveness::Unknown,
            (None, there) if there != 0 => return Liveness::Unknown,
            (Some(_), 0) => {} // written before namespaces were recorded
            _ => {}
        }
        match facts.start_time(self.pid) {
            Fact::Known(started) if started == self.start_time || self.start_time == 0 => {
                Liveness::Alive
            }
            Fact::Known(_) | Fact::Absent => Liveness::Dead,
            Fact::Unknown => Liveness::Unknown,
        }
    }

    /// True unless the process is provably gone.
    pub fn may_be_alive(&self) -> bool {
        self.liveness() != Liveness::Dead
    }
}

/// The facts about this machine and process, read once per process: they do not change
/// while it runs, and liveness is judged on hot paths (every lock attempt, every listing).
struct Cached {
    host: Option<String>,
    boot: Option<String>,
    pid_ns: Option<u64>,
}

fn cached() -> &'static Cached {
    static CACHED: OnceLock<Cached> = OnceLock::new();
    CACHED.get_or_init(|| {
        let facts = facts();
        Cached {
            host: facts.host_name(),
            boot: facts.boot_id(),
            pid_ns: facts.pid_namespace(),
        }
    })
}

impl ProcessFacts for Cached {
    fn host_name(&self) -> Option<String> {
        self.host.clone()
    }
    fn boot_id(&self) -> Option<String> {
        self.boot.clone()
    }
    fn pid_namespace(&self) -> Option<u64> {
        self.pid_ns
    }
    fn start_time(&self, pid: u32) -> Fact<u64> {
        facts().start_time(pid)
    }
}

/// This machine's host name (`localhost` when it cannot be told).
pub fn host_name() -> String {
    cached().host.clone().unwrap_or_else(|| "localhost".into())
}

/// This boot's id (empty when it cannot be told).
pub fn boot_id() -> String {
    cached().boot.clone().unwrap_or_default()
}

/// The inode of this process's PID namespace, 0 when it cannot be told.
pub fn pid_namespace() -> u64 {
    cached().pid_ns.unwrap_or(0)
}

/// Milliseconds since boot on a clock that is never stepped and counts through suspend
/// (`CLOCK_BOOTTIME`). Comparable only between processes of the same boot.
pub fn boot_clock_ms() -> u64 {
    // Linux: CLOCK_BOOTTIME. Elsewhere the monotonic clock (never stepped; on macOS it
    // stops during sleep, so a lease there lasts a little longer across a sleep).
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let clock = rustix::time::ClockId::Boottime;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let clock = rustix::time::ClockId::Monotonic;
    let t = rustix::time::clock_gettime(clock);
    u64::try_from(t.tv_sec).unwrap_or(0) * 1000 + u64::try_from(t.tv_nsec).unwrap_or(0) / 1_000_000
}

/// The boot clock's reading (see [`boot_clock_ms`]) at the wall-clock moment `at`, judged
/// from now: what to store beside a deadline or a heartbeat so that it survives a wall-clock
/// step.
pub fn boot_ms_at(at: jiff::Timestamp) -> u64 {
    let offset = at.duration_since(jiff::Timestamp::now()).as_millis();
    let now = i128::from(boot_clock_ms());
    u64::try_from((now + offset).max(0)).unwrap_or(u64::MAX)
}

/// Time from now until `wall` (negative once passed): on the boot clock when `boot_ms` was
/// recorded in this very boot (`boot_id`), else on the wall clock.
pub fn time_until(wall: jiff::Timestamp, boot_ms: Option<u64>, boot_id: &str) -> SignedDuration {
    match boot_ms {
        Some(at) if cached().boot.as_deref().unwrap_or_default() == boot_id => {
            let now = i128::from(boot_clock_ms());
            let millis = (i128::from(at) - now).clamp(i128::from(i64::MIN), i128::from(i64::MAX));
            SignedDuration::from_millis(i64::try_from(millis).unwrap_or(i64::MAX))
        }
        _ => wall.duration_since(jiff::Timestamp::now()),
    }
}

/// "pid 1234 (maos task claim)" for the process holding a `flock` on the file `dev`/`ino`,
/// from `/proc/locks`; `None` when it cannot be told.
#[cfg(target_os = "linux")]
pub fn flock_holder(dev: u64, ino: u64) -> Option<String> {
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    let id = format!(
        "{:02x}:{:02x}:{ino}",
        rustix::fs::major(dev),
        rustix::fs::minor(dev)
    );
    let pid = locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // "1: FLOCK ADVISORY WRITE <pid> <maj:min:ino> 0 EOF"; waiters have a "->" first.
        (fields.get(1) == Some(&"FLOCK") && fields.get(5) == Some(&id.as_str()))
            .then(|| fields.get(4).map(|p| p.to_string()))
            .flatten()
    })?;
    let command = std::fs::read(format!("/proc/{pid}/cmdline"))
        .ok()
        .map(|c| {
            String::from_utf8_lossy(&c)
                .split('\0')
                .filter(|a| !a.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|c| !c.is_empty());
    Some(match command {
        Some(command) => format!("pid {pid} ({command})"),
        None => format!("pid {pid}"),
    })
}

/// Elsewhere the holder of a `flock` is not told.
#[cfg(not(target_os = "linux"))]
pub fn flock_holder(_dev: u64, _ino: u64) -> Option<String> {
    None
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
}

/// The start time of `pid` from `/proc` (clock ticks since boot), `None` when there is no
/// such process.
/// A process seen from below: its id, its start time and its command name (the kernel's
/// `comm`, at most 15 bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ancestor {
    /// Its process id.
    pub pid: u32,
    /// When it started (clock ticks since boot), which tells it from a later process that
    /// reuses the id.
    pub start_time: u64,
    /// Its command name.
    pub name: String,
}

/// The parent, grandparent, … of this process, nearest first, at most `depth` of them
/// (Linux; elsewhere none are known). An editor's hook or MCP server finds the editor's own
/// process this way: both are its children.
pub fn ancestors(depth: usize) -> Vec<Ancestor> {
    let mut found = Vec::new();
    let mut pid = std::process::id();
    while found.len() < depth {
        let Some((parent, _, _)) = proc_stat(pid) else {
            break;
        };
        if parent <= 1 {
            break;
        }
        let Some((_, start_time, name)) = proc_stat(parent) else {
            break;
        };
        found.push(Ancestor {
            pid: parent,
            start_time,
            name,
        });
        pid = parent;
    }
    found
}

/// Parent pid, start time and command name of `pid`, from `/proc/<pid>/stat`.
fn proc_stat(pid: u32) -> Option<(u32, u64, String)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?.to_owned();
    let mut fields = stat.get(close + 1..)?.split_whitespace();
    let _state = fields.next()?;
    let parent = fields.next()?.parse().ok()?;
    let start_time = fields.nth(17)?.parse().ok()?;
    Some((parent, start_time, name))
}

fn proc_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces and parentheses:
    // count fields after the last `)`. Field 3 is the first after it; field 22 the 20th.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // A zombie has exited; it only waits to be reaped.
    if fields.next()? == "Z" {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A platform whose facts the test sets.
    struct Given {
        host: Option<&'static str>,
        boot: Option<&'static str>,
        ns: Option<u64>,
        start: Fact<u64>,
    }

    impl ProcessFacts for Given {
        fn host_name(&self) -> Option<String> {
            self.host.map(str::to_owned)
        }
        fn boot_id(&self) -> Option<String> {
            self.boot.map(str::to_owned)
        }
        fn pid_namespace(&self) -> Option<u64> {
            self.ns
        }
        fn start_time(&self, _pid: u32) -> Fact<u64> {
            self.start
        }
    }

    #[test]
    fn liveness_is_dead_only_when_provable_and_unknown_when_a_fact_is_missing() {
        let holder = ProcessIdentity {
            host: "box".into(),
            boot_id: "boot-1".into(),
            pid: 42,
            start_time: 1000,
            pid_ns: 7,
        };
        let here = Given {
            host: Some("box"),
            boot: Some("boot-1"),
            ns: Some(7),
            start: Fact::Known(1000),
        };
        assert_eq!(holder.liveness_with(&here), Liveness::Alive);
        let judge = |change: &dyn Fn(&mut Given)| {
            let mut facts = Given { ..here };
            change(&mut facts);
            holder.liveness_with(&facts)
        };
        assert_eq!(
            judge(&|f| f.boot = Some("boot-2")),
            Liveness::Dead,
            "another boot"
        );
        assert_eq!(
            judge(&|f| f.start = Fact::Known(2000)),
            Liveness::Dead,
            "a reused pid"
        );
        assert_eq!(
            judge(&|f| f.start = Fact::Absent),
            Liveness::Dead,
            "no such pid"
        );
        assert_eq!(
            judge(&|f| f.host = Some("other")),
            Liveness::Unknown,
            "another host"
        );
        assert_eq!(
            judge(&|f| f.ns = Some(8)),
            Liveness::Unknown,
            "another container"
        );
        for unknown in [
            &(|f: &mut Given| f.host = None) as &dyn Fn(&mut Given),
            &|f| f.boot = None,
            &|f| f.ns = None,
            &|f| f.start = Fact::Unknown,
        ] {
            assert_eq!(
                judge(unknown),
                Liveness::Unknown,
                "a missing fact is never death"
            );
        }
        assert_eq!(holder.liveness_with(&KnowsNothing), Liveness::Unknown);
    }

    #[test]
    fn deadlines_of_this_boot_follow_the_clock_that_never_jumps() {
        let now = jiff::Timestamp::now();
        let in_a_minute = boot_ms_at(now + SignedDuration::from_secs(60));
        // As if the wall clock had been stepped: the wall-clock deadline says it passed an
        // hour ago (or is an hour away), but the boot clock decides.
        let stepped_back = now - SignedDuration::from_hours(1);
        let left = time_until(stepped_back, Some(in_a_minute), &boot_id());
        assert!(left > SignedDuration::from_secs(55) && left <= SignedDuration::from_secs(60));
        let passed = boot_ms_at(now - SignedDuration::from_secs(1));
        let stepped_ahead = now + SignedDuration::from_hours(1);
        assert!(time_until(stepped_ahead, Some(passed), &boot_id()) < SignedDuration::ZERO);
        // Another boot's reading means nothing here: the wall clock decides.
        let wall = time_until(stepped_ahead, Some(passed), "another-boot");
        assert!(wall > SignedDuration::from_mins(59));
    }

    #[test]
    fn the_current_process_is_alive_and_a_finished_one_is_dead() {
        let me = ProcessIdentity::current();
        assert!(me.start_time > 0);
        assert_eq!(me.liveness(), Liveness::Alive);

        let mut child = std::process::Command::new("true").spawn().unwrap();
        let child_pid = child.id();
        let started = proc_start_time(child_pid);
        child.wait().unwrap();
        let gone = ProcessIdentity {
            pid: child_pid,
            start_time: started.unwrap_or(1),
            ..me.clone()
        };
        assert_eq!(gone.liveness(), Liveness::Dead);

        let reused = ProcessIdentity {
            start_time: me.start_time + 1,
            ..me.clone()
        };
        assert_eq!(
            reused.liveness(),
            Liveness::Dead,
            "a reused pid is not the same process"
        );
        let rebooted = ProcessIdentity {
            boot_id: "another-boot".into(),
            ..me.clone()
        };
        assert_eq!(rebooted.liveness(), Liveness::Dead);
        let elsewhere = ProcessIdentity {
            host: "another-host".into(),
            ..me
        };
        assert_eq!(elsewhere.liveness(), Liveness::Unknown);
    }
}
