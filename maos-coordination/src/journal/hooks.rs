//! Event hooks: `.maos/hooks.toml` maps event kinds to commands run with the entry's JSON
//! on stdin, asynchronously — a change never waits for a hook.
//!
//! ```toml
//! [[hook]]
//! on = "task.completed"          # a glob over kinds: task.*, lock.stolen, merge.*
//! run = ["notify-send", "done"]  # argv, no shell
//! timeout = "30s"                # optional (default 60s)
//! ```
//!
//! Whoever appends an entry a hook matches makes sure a *runner* is alive: a process (`maos
//! hooks run`) holding `journal/.hooks.lock` that follows the journal from its saved cursor
//! (`journal/.hooks.cursor`), runs the matching hooks (each hook's runs one after the other,
//! in journal order; different hooks side by side; each killed at its timeout) and exits when
//! the journal has been quiet for a while. A runner lets go of
//! its lock before its last look at the journal and a writer looks at the lock after its
//! append, so no entry is left without a runner to see it. Each failure (exit status,
//! timeout, a command that cannot start) is journaled as `hook.failed`; `hook.*` entries never
//! trigger hooks. The runner is the program named by [`set_runner`] (the `maos` binary sets
//! itself), else `maos` on `PATH`.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::read::{Cursor, Filter, kind_matches};
use super::{Entry, Event};
use crate::atomic::{self, Durability};
use crate::fs::{self, FileLock, FsError};
use crate::wake::{self, DirWatch};
use crate::workspace::Workspace;

/// The hooks file, relative to `.maos/`.
pub const FILE: &str = "hooks.toml";

/// How long a hook may run unless it says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// How many entries may wait for one hook before the runner stops reading (and reads on
/// from the journal once the hook catches up).
const QUEUE: usize = 1024;

/// How long a runner waits for news before it leaves.
const RUNNER_IDLE: Duration = Duration::from_secs(10);

/// How long a runner lets entries gather after a wake-up before it reads them.
const BATCH: Duration = Duration::from_millis(50);

/// One `[[hook]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hook {
    /// The glob over event kinds it runs for.
    pub on: String,
    /// The command and its arguments (no shell).
    pub run: Vec<String>,
    /// How long it may run (`30s`, `5m`); [`DEFAULT_TIMEOUT`] when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

impl Hook {
    /// Its timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
            .as_deref()
            .and_then(|t| crate::duration::parse(t).ok())
            .unwrap_or(DEFAULT_TIMEOUT)
    }

    /// Whether it runs for events of `kind`.
    pub fn runs_for(&self, kind: &str) -> bool {
        !kind.starts_with("hook.") && kind_matches(&self.on, kind)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HooksFile {
    #[serde(default)]
    hook: Vec<Hook>,
}

/// `hooks.toml` could not be used.
#[derive(Debug, thiserror::Error)]
pub enum HooksError {
    /// It could not be read.
    #[error(transparent)]
    Fs(#[from] FsError),
    /// The journal could not be read.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// It is not a valid hooks file.
    #[error("{}: {what}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the line.
        what: String,
    },
}

impl HooksError {
    /// The kind of this error.
    pub fn kind(&self) -> crate::ErrorKind {
        match self {
            HooksError::Fs(e) => e.kind(),
            HooksError::Store(e) => e.kind(),
            HooksError::Invalid { .. } => crate::ErrorKind::InvalidInput,
        }
    }
}

/// The hooks of a workspace (none when `hooks.toml` is absent).
pub fn load(ws: &Workspace) -> Result<Vec<Hook>, HooksError> {
    let path = ws.dir().join(FILE);
    let Some(bytes) = fs::read_if_exists(&path)? else {
        return Ok(Vec::new());
    };
    let invalid = |what: String| HooksError::Invalid {
        path: path.clone(),
        what,
    };
    let text = String::from_utf8(bytes).map_err(|_| invalid("not UTF-8 text".into()))?;
    let file: HooksFile = toml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
    for (i, hook) in file.hook.iter().enumerate() {
        if hook.run.first().is_none_or(|c| c.is_empty()) {
            return Err(invalid(format!(
                "hook {} (on = {:?}): `run` names no command",
                i + 1,
                hook.on
            )));
        }
        if let Some(t) = &hook.timeout {
            crate::duration::parse(t).map_err(|e| {
                invalid(format!("hook {} (on = {:?}): timeout {e}", i + 1, hook.on))
            })?;
        }
    }
    Ok(file.hook)
}

static RUNNER: OnceLock<PathBuf> = OnceLock::new();

/// Names the program started as the hook runner (`<program> hooks run --workspace <root>`):
/// the `maos` binary calls this with itself. Without it, `maos` is looked for on `PATH`.
pub fn set_runner(program: PathBuf) {
    let _ = RUNNER.set(program);
}

/// What this process knows of `hooks.toml` (looked at again at most once a second), and
/// the runner's lock file, kept open to ask cheaply whether a runner holds it.
struct Known {
    dir: PathBuf,
    checked: Instant,
    modified: Option<SystemTime>,
    kinds: Vec<String>,
    runner_lock: Option<std::fs::File>,
    /// When this process last started a runner (or failed to): not again for a while — the
    /// one started reads from the saved cursor, so it covers what comes meanwhile.
    started: Option<Instant>,
}

/// How long after starting a runner (or failing to) this process does not start another.
const RESTART_AFTER: Duration = Duration::from_secs(2);

static KNOWN: Mutex<Vec<Known>> = Mutex::new(Vec::new());

/// After an append of `kind`: if a hook runs for it, makes sure a runner is alive.
pub(crate) fn dispatch(ws: &Workspace, kind: &str) {
    if kind.starts_with("hook.") {
        return;
    }
    let mut known = KNOWN.lock().unwrap_or_else(|e| e.into_inner());
    let Some(entry) = configured_for(&mut known, ws, kind) else {
        return;
    };
    if let Err(e) = ensure_runner(ws, entry) {
        tracing::warn!(error = %e, "hooks for `{kind}` not started");
    }
}

/// This process's knowledge of `ws`'s hooks when one runs for `kind`.
fn configured_for<'a>(
    known: &'a mut Vec<Known>,
    ws: &Workspace,
    kind: &str,
) -> Option<&'a mut Known> {
    let at = match known.iter().position(|k| k.dir == ws.dir()) {
        Some(at) => at,
        None => {
            known.push(Known {
                dir: ws.dir().to_owned(),
                checked: Instant::now() - Duration::from_secs(3600),
                modified: None,
                kinds: Vec::new(),
                runner_lock: None,
                started: None,
            });
            known.len() - 1
        }
    };
    let entry = &mut known[at];
    if entry.checked.elapsed() >= Duration::from_secs(1) {
        entry.checked = Instant::now();
        let modified = fs::metadata(&ws.dir().join(FILE))
            .ok()
            .and_then(|m| m.modified().ok());
        if modified != entry.modified {
            entry.modified = modified;
            entry.kinds = match load(ws) {
                Ok(hooks) => hooks.into_iter().map(|h| h.on).collect(),
                Err(e) => {
                    tracing::warn!(error = %e, "hooks not run");
                    Vec::new()
                }
            };
        }
    }
    entry
        .kinds
        .iter()
        .any(|on| kind_matches(on, kind))
        .then_some(entry)
}

fn runner_lock(ws: &Workspace) -> PathBuf {
    super::dir(ws).join(".hooks.lock")
}

/// Starts a runner unless one holds the runner lock (asked with one non-blocking `flock` on
/// the lock file this process keeps open). A runner lets go of the lock before its last look
/// at the journal, and this runs after the append: either it sees the entry or this sees the
/// lock free.
fn ensure_runner(ws: &Workspace, known: &mut Known) -> Result<(), FsError> {
    let path = runner_lock(ws);
    let file = match known.runner_lock.take() {
        Some(file) => file,
        None => fs::open_rw_create(&path)?,
    };
    match file.try_lock() {
        Err(std::fs::TryLockError::WouldBlock) => {
            // A runner holds it: it will see the entry.
            known.runner_lock = Some(file);
            return Ok(());
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(FsError::new("lock", &path, e)),
        // Free. Dropped (closing unlocks): the next look opens the file afresh, in case it
        // was replaced meanwhile.
        Ok(()) => drop(file),
    }
    if known.started.is_some_and(|at| at.elapsed() < RESTART_AFTER) {
        return Ok(());
    }
    known.started = Some(Instant::now());
    let program = RUNNER
        .get()
        .cloned()
        .unwrap_or_else(|| PathBuf::from("maos"));
    let mut child = Command::new(&program)
        .args(["hooks", "run", "--workspace"])
        .arg(ws.root())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| FsError::new("start the hook runner", program, e))?;
    // Reaped by a thread while this process lives; by init after it exits.
    std::thread::spawn(move || child.wait());
    Ok(())
}

/// The runner's loop: while it holds `journal/.hooks.lock`, runs the hooks of every new
/// entry, and returns once the journal has been quiet for `idle` (`None`: the default) and
/// nothing came in as it let go. Returns at once when another runner is alive.
pub fn run(ws: &Workspace, idle: Option<Duration>) -> Result<(), HooksError> {
    let idle = idle.unwrap_or(RUNNER_IDLE);
    let Ok(mut lock) = FileLock::acquire(&runner_lock(ws), Duration::ZERO) else {
        return Ok(());
    };
    // Hooks are the team's side business: at the lowest priority (hooks inherit it), so the
    // agents coordinating are never short of CPU because of them.
    let _ = rustix::process::nice(19);
    let dir = super::dir(ws);
    let watch = DirWatch::start(&dir, |p| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
    });
    let mut lanes = Lanes::default();
    let mut cursor = load_cursor(ws)?;
    let mut quiet_since = Instant::now();
    loop {
        let (entries, next) = super::read_from(ws, cursor, &Filter::default())?;
        if !entries.is_empty() {
            let hooks = load(ws)?;
            for entry in &entries {
                for hook in hooks.iter().filter(|h| h.runs_for(&entry.event.kind)) {
                    lanes.send(ws, hook, entry);
                }
            }
            quiet_since = Instant::now();
        }
        if next != cursor {
            cursor = next;
            save_cursor(ws, cursor)?;
        }
        // A workspace deleted meanwhile has nobody left to tell.
        if !ws.dir().is_dir() {
            return Ok(());
        }
        if quiet_since.elapsed() >= idle {
            drop(lock);
            // Let go, then look once more: a writer that saw the lock held appended before.
            let (news, _) = super::read_from(ws, cursor, &Filter::default())?;
            if news.is_empty() {
                break;
            }
            match FileLock::acquire(&runner_lock(ws), Duration::ZERO) {
                Ok(again) => lock = again,
                Err(_) => break, // a new runner took over
            }
            continue;
        }
        wake::nap(
            watch.as_ref(),
            idle.saturating_sub(quiet_since.elapsed())
                .min(Duration::from_secs(1)),
        );
        // A burst of entries is read in one go rather than one wake-up each.
        std::thread::sleep(BATCH);
    }
    // Hooks still running finish (or time out) before the runner leaves.
    lanes.finish();
    Ok(())
}

fn cursor_path(ws: &Workspace) -> PathBuf {
    super::dir(ws).join(".hooks.cursor")
}

/// The saved cursor; the first time, the end of the journal as it was when `hooks.toml` was
/// last written (hooks run for what happens after they are configured).
fn load_cursor(ws: &Workspace) -> Result<Cursor, HooksError> {
    if let Some(bytes) = fs::read_if_exists(&cursor_path(ws))? {
        let text = String::from_utf8_lossy(&bytes);
        let mut fields = text.split_whitespace().map(|f| f.parse::<u64>().ok());
        if let (Some(Some(segment)), Some(Some(offset))) = (fields.next(), fields.next()) {
            return Ok(Cursor { segment, offset });
        }
    }
    let since = fs::metadata(&ws.dir().join(FILE))
        .ok()
        .and_then(|m| m.modified().ok())
        .and_then(|t| jiff::Timestamp::try_from(t).ok());
    let filter = Filter {
        kinds: Vec::new(),
        since,
    };
    if !ws.store().is_files() {
        // On etcd a cursor is an entry number: the one before the first entry since then.
        let (entries, end) = super::read_from(ws, Cursor::default(), &filter)?;
        return Ok(entries.first().map_or(end, |first| Cursor {
            segment: 0,
            offset: first.n - 1,
        }));
    }
    // The cursor before the first entry written since then.
    let mut cursor = Cursor::default();
    for (number, path) in super::segments(&super::dir(ws))? {
        let bytes = fs::read(&path)?;
        let mut offset = 0u64;
        for line in bytes.split_inclusive(|&b| b == b'\n') {
            if let Ok(entry) = serde_json::from_slice::<Entry>(line)
                && filter.matches(&entry)
            {
                return Ok(Cursor {
                    segment: number,
                    offset,
                });
            }
            offset += line.len() as u64;
        }
        cursor = Cursor {
            segment: number,
            offset,
        };
    }
    Ok(cursor)
}

/// After the journal moved to another store (`maos store migrate`, which keeps entry numbers
/// but not positions): the runner goes on from the new journal's end — hooks ran for what
/// came before.
pub(crate) fn continue_from_end(ws: &Workspace) -> Result<(), crate::store::StoreError> {
    fs::create_dir_all(&super::dir(ws))?;
    Ok(save_cursor(ws, super::end(ws)?)?)
}

fn save_cursor(ws: &Workspace, cursor: Cursor) -> Result<(), FsError> {
    atomic::write_replace(
        &ws.tmp_dir(),
        &cursor_path(ws),
        format!("{} {}\n", cursor.segment, cursor.offset).as_bytes(),
        Durability::Buffered,
    )
}

/// One thread per hook, running its entries one after the other in journal order (hooks
/// run side by side; one hook sees events in the order they happened).
#[derive(Default)]
struct Lanes {
    lanes: Vec<(Hook, SyncSender<Entry>, JoinHandle<()>)>,
}

impl Lanes {
    /// Queues `entry` for `hook` (waiting while its queue is full).
    fn send(&mut self, ws: &Workspace, hook: &Hook, entry: &Entry) {
        let at = match self.lanes.iter().position(|(h, _, _)| h == hook) {
            Some(at) => at,
            None => {
                let (tx, rx) = sync_channel::<Entry>(QUEUE);
                let (ws, lane_hook) = (ws.clone(), hook.clone());
                let thread = std::thread::spawn(move || {
                    for entry in rx {
                        if let Err(reason) = run_one(ws.root(), &lane_hook, &entry) {
                            journal_failure(&ws, &lane_hook, &entry, &reason);
                        }
                    }
                });
                self.lanes.push((hook.clone(), tx, thread));
                self.lanes.len() - 1
            }
        };
        // A lane whose thread is gone (it cannot be: it only ends when its sender drops)
        // just loses the entry.
        let _ = self.lanes[at].1.send(entry.clone());
    }

    /// Waits for every queued hook to have run.
    fn finish(self) {
        for (_, tx, thread) in self.lanes {
            drop(tx);
            let _ = thread.join();
        }
    }
}

fn journal_failure(ws: &Workspace, hook: &Hook, entry: &Entry, reason: &str) {
    let event = Event::new("hook.failed")
        .subject(hook.on.clone())
        .data(json!({
            "run": hook.run,
            "reason": reason,
            "entry": entry.n,
            "kind": entry.event.kind,
        }));
    if let Err(e) = super::append(ws, &event) {
        tracing::warn!(error = %e, "hook failure not journaled");
    }
}

/// What one run of a hook gave: its exit status and what it printed.
#[derive(Debug, Clone, Serialize)]
pub struct Ran {
    /// The hook's `on`.
    pub on: String,
    /// Its command.
    pub run: Vec<String>,
    /// `None` when it succeeded; else why not (exit status, timeout, could not start).
    pub failure: Option<String>,
}

/// Runs every hook that runs for `entry`'s kind, now, waiting for each (`maos hooks test`);
/// failures are reported, not journaled.
pub fn test(ws: &Workspace, entry: &Entry) -> Result<Vec<Ran>, HooksError> {
    Ok(load(ws)?
        .into_iter()
        .filter(|h| kind_matches(&h.on, &entry.event.kind))
        .map(|hook| Ran {
            failure: run_one(ws.root(), &hook, entry).err(),
            on: hook.on,
            run: hook.run,
        })
        .collect())
}

/// Runs `hook` in the workspace root `root` with `entry`'s JSON on stdin, killing it at its
/// timeout.
fn run_one(root: &std::path::Path, hook: &Hook, entry: &Entry) -> Result<(), String> {
    let Some((program, args)) = hook.run.split_first() else {
        return Err("`run` names no command".into());
    };
    let mut command = Command::new(program);
    command
        .args(args)
        .current_dir(root)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // Its own process group, so that at its timeout everything it started goes with it
    // (`sh -c "sleep 300 & …"` leaves no `sleep` behind).
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = command
        .spawn()
        .map_err(|e| format!("could not start `{program}`: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        let json = serde_json::to_vec(entry).unwrap_or_default();
        // A hook that does not read its input is fine: it just never sees it.
        std::thread::spawn(move || {
            let _ = stdin.write_all(&json);
        });
    }
    let timeout = hook.timeout();
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("`{program}` {status}")),
            Ok(None) if started.elapsed() >= timeout => {
                kill_group(&mut child);
                return Err(format!(
                    "`{program}` timed out after {} and was killed",
                    crate::duration::words(timeout)
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("could not wait for `{program}`: {e}")),
        }
    }
}

/// Kills the hook's whole process group (it leads it), and reaps the hook.
fn kill_group(child: &mut std::process::Child) {
    #[cfg(unix)]
    if let Some(group) = rustix::process::Pid::from_raw(child.id().cast_signed()) {
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The path of the hooks file of a workspace.
pub fn path(ws: &Workspace) -> PathBuf {
    ws.dir().join(FILE)
}
