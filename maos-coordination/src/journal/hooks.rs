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
//! (`journal/.hooks.cursor`), runs the matching hooks (at most four at once, each killed at
//! its timeout) and exits when the journal has been quiet for a while. A runner lets go of
//! its lock before its last look at the journal and a writer looks at the lock after its
//! append, so no entry is left without a runner to see it. Each failure (exit status,
//! timeout, a command that cannot start) is journaled as `hook.failed`; `hook.*` entries never
//! trigger hooks. The runner is the program named by [`set_runner`] (the `maos` binary sets
//! itself), else `maos` on `PATH`.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::read::{Cursor, Filter, kind_matches};
use super::{Entry, Event};
use crate::atomic::{self, Durability};
use crate::fs::{self, FileLock, FsError};
use crate::workspace::Workspace;

/// The hooks file, relative to `.maos/`.
pub const FILE: &str = "hooks.toml";

/// How long a hook may run unless it says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// How many hooks one runner runs at once.
const AT_ONCE: usize = 4;

/// How long a runner waits for news before it leaves.
const RUNNER_IDLE: Duration = Duration::from_secs(10);

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

/// What this process knows of `hooks.toml`: looked at again at most once a second.
struct Known {
    dir: PathBuf,
    checked: Instant,
    modified: Option<SystemTime>,
    kinds: Vec<String>,
}

static KNOWN: Mutex<Vec<Known>> = Mutex::new(Vec::new());

/// After an append of `kind`: if a hook runs for it, makes sure a runner is alive.
pub(crate) fn dispatch(ws: &Workspace, kind: &str) {
    if kind.starts_with("hook.") || !configured_for(ws, kind) {
        return;
    }
    if let Err(e) = ensure_runner(ws) {
        tracing::warn!(error = %e, "hooks for `{kind}` not started");
    }
}

fn configured_for(ws: &Workspace, kind: &str) -> bool {
    let mut known = KNOWN.lock().unwrap_or_else(|e| e.into_inner());
    let at = match known.iter().position(|k| k.dir == ws.dir()) {
        Some(at) => at,
        None => {
            known.push(Known {
                dir: ws.dir().to_owned(),
                checked: Instant::now() - Duration::from_secs(3600),
                modified: None,
                kinds: Vec::new(),
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
    entry.kinds.iter().any(|on| kind_matches(on, kind))
}

fn runner_lock(ws: &Workspace) -> PathBuf {
    super::dir(ws).join(".hooks.lock")
}

fn ensure_runner(ws: &Workspace) -> Result<(), FsError> {
    match FileLock::acquire(&runner_lock(ws), Duration::ZERO) {
        // A runner holds it: it will see the entry.
        Err(e) if e.source.kind() == std::io::ErrorKind::TimedOut => return Ok(()),
        Err(e) => return Err(e),
        Ok(free) => drop(free),
    }
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
    let slots = Arc::new((Mutex::new(0usize), Condvar::new()));
    let mut cursor = load_cursor(ws)?;
    loop {
        let hooks = load(ws)?;
        cursor = super::follow(ws, cursor, &Filter::default(), Some(idle), |entry| {
            for hook in hooks.iter().filter(|h| h.runs_for(&entry.event.kind)) {
                start(ws, hook, entry, &slots);
            }
            // A workspace deleted meanwhile has nobody left to tell.
            ws.dir().is_dir()
        })?;
        if !ws.dir().is_dir() {
            return Ok(());
        }
        save_cursor(ws, cursor)?;
        drop(lock);
        // Let go, then look once more: a writer that saw the lock held appended before it.
        let (news, _) = super::read_from(ws, cursor, &Filter::default())?;
        if news.is_empty() {
            break;
        }
        match FileLock::acquire(&runner_lock(ws), Duration::ZERO) {
            Ok(again) => lock = again,
            Err(_) => break, // a new runner took over
        }
    }
    // Hooks still running finish (or time out) before the runner leaves.
    let (count, done) = &*slots;
    let mut running = count.lock().unwrap_or_else(|e| e.into_inner());
    while *running > 0 {
        running = done.wait(running).unwrap_or_else(|e| e.into_inner());
    }
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

fn save_cursor(ws: &Workspace, cursor: Cursor) -> Result<(), FsError> {
    atomic::write_replace(
        &ws.tmp_dir(),
        &cursor_path(ws),
        format!("{} {}\n", cursor.segment, cursor.offset).as_bytes(),
        Durability::Buffered,
    )
}

/// Starts `hook` for `entry` on its own thread once a slot is free.
fn start(ws: &Workspace, hook: &Hook, entry: &Entry, slots: &Arc<(Mutex<usize>, Condvar)>) {
    {
        let (count, freed) = &**slots;
        let mut running = count.lock().unwrap_or_else(|e| e.into_inner());
        while *running >= AT_ONCE {
            running = freed.wait(running).unwrap_or_else(|e| e.into_inner());
        }
        *running += 1;
    }
    let (ws, hook, entry, slots) = (ws.clone(), hook.clone(), entry.clone(), Arc::clone(slots));
    std::thread::spawn(move || {
        let outcome = run_one(ws.root(), &hook, &entry);
        if let Err(reason) = &outcome {
            journal_failure(&ws, &hook, &entry, reason);
        }
        let (count, freed) = &*slots;
        *count.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        freed.notify_all();
    });
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
    let mut child = Command::new(program)
        .args(args)
        .current_dir(root)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
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
                let _ = child.kill();
                let _ = child.wait();
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

/// The path of the hooks file of a workspace.
pub fn path(ws: &Workspace) -> PathBuf {
    ws.dir().join(FILE)
}
