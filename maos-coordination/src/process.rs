//! Who a process is, and whether it is still alive.
//!
//! A record that belongs to a running process (a lock held through a guard, a waiter, an
//! interest) carries that process's identity: host name, boot id, pid and the pid's start
//! time. On the same host, the process is provably gone when the machine rebooted since (the
//! boot id changed), the pid no longer exists, or the pid now belongs to a process started at
//! another time (pids are reused). On another host, or in another PID namespace of this host
//! (another container), nothing is provable: only expiry counts.
//!
//! It also owns the clock that does not jump: [`boot_clock_ms`], the time since boot
//! (`CLOCK_BOOTTIME`, which keeps counting through suspend and is never stepped), so that
//! expiry and staleness judged between processes of one boot survive a wall-clock step.

use std::sync::OnceLock;

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

impl ProcessIdentity {
    /// The identity of the calling process.
    pub fn current() -> Self {
        static CURRENT: OnceLock<ProcessIdentity> = OnceLock::new();
        let pid = std::process::id();
        let fresh = || Self {
            host: host_name(),
            boot_id: boot_id(),
            pid,
            start_time: start_time(pid).unwrap_or(0),
            pid_ns: pid_namespace(),
        };
        let cached = CURRENT.get_or_init(fresh);
        // A forked child is another process: it does not inherit the identity.
        if cached.pid == pid {
            cached.clone()
        } else {
            fresh()
        }
    }

    /// Whether this process is still running.
    pub fn liveness(&self) -> Liveness {
        if self.host != host_name() {
            return Liveness::Unknown;
        }
        if self.boot_id != boot_id() {
            return Liveness::Dead;
        }
        let here = pid_namespace();
        if self.pid_ns != here && (self.pid_ns != 0 || here != 0) || !proc_is_mounted() {
            // Another container's pid numbers mean nothing here; without /proc nothing can
            // be told about any pid.
            return Liveness::Unknown;
        }
        match start_time(self.pid) {
            Some(started) if started == self.start_time || self.start_time == 0 => Liveness::Alive,
            _ => Liveness::Dead,
        }
    }

    /// True unless the process is provably gone.
    pub fn may_be_alive(&self) -> bool {
        self.liveness() != Liveness::Dead
    }
}

/// This machine's host name (read once per process).
pub fn host_name() -> String {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| {
        read_trimmed("/proc/sys/kernel/hostname").unwrap_or_else(|| "localhost".into())
    })
    .clone()
}

/// This boot's id (read once per process).
pub fn boot_id() -> String {
    static BOOT: OnceLock<String> = OnceLock::new();
    BOOT.get_or_init(|| read_trimmed("/proc/sys/kernel/random/boot_id").unwrap_or_default())
        .clone()
}

/// The inode of this process's PID namespace, 0 when it cannot be read (read once).
pub fn pid_namespace() -> u64 {
    use std::os::unix::fs::MetadataExt;
    static NS: OnceLock<u64> = OnceLock::new();
    *NS.get_or_init(|| std::fs::metadata("/proc/self/ns/pid").map_or(0, |m| m.ino()))
}

fn proc_is_mounted() -> bool {
    static MOUNTED: OnceLock<bool> = OnceLock::new();
    *MOUNTED.get_or_init(|| std::path::Path::new("/proc/self/stat").exists())
}

/// Milliseconds since boot on a clock that is never stepped and counts through suspend
/// (`CLOCK_BOOTTIME`). Comparable only between processes of the same boot.
pub fn boot_clock_ms() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
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
        Some(at) if boot_id == self::boot_id() => {
            let now = i128::from(boot_clock_ms());
            let millis = (i128::from(at) - now).clamp(i128::from(i64::MIN), i128::from(i64::MAX));
            SignedDuration::from_millis(i64::try_from(millis).unwrap_or(i64::MAX))
        }
        _ => wall.duration_since(jiff::Timestamp::now()),
    }
}

/// "pid 1234 (maos task claim)" for the process holding a `flock` on the file `dev`/`ino`,
/// from `/proc/locks`; `None` when it cannot be told.
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

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
}

/// The start time of `pid` (clock ticks since boot), `None` when there is no such process.
fn start_time(pid: u32) -> Option<u64> {
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
        let started = start_time(child_pid);
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
