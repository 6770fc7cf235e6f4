//! A session: an agent that lives in another program — a Claude Code session driving MAOS
//! through its hooks — rather than in a MAOS process.
//!
//! No thread heartbeats for a session: every call made for it (each hook) is its heartbeat,
//! and its record says so with a long interval ([`SESSION_HEARTBEAT`]: stale after half an
//! hour without a call). Its process is recorded as unknown (the hook that wrote it exits at
//! once), so a session is never judged dead, only stale. What it reserved automatically (a
//! short lease on each file it edits) is released when it stops or ends; what it reserved
//! explicitly stays until released or expired, so a resumed session still has it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use maos_coordination::Workspace;
use maos_coordination::agents::{AgentError, AgentRecord, AgentStatus, Registry};
use maos_coordination::atomic::{self, Durability};
use maos_coordination::fs;
use maos_coordination::lock::pattern::{self, Pattern};
use maos_coordination::lock::{LockError, LockInfo, ReservationRequest, Reservations};
use maos_coordination::name::{self, NameKind};
use maos_coordination::process::{self, ProcessIdentity};
use maos_coordination::record::{self, RecordError};
use maos_coordination::task::Tasks;
use serde::{Deserialize, Serialize};

use crate::LeaveReport;

/// The heartbeat interval a session's record declares: it counts as stale after six of them
/// (30 minutes) without a call.
pub const SESSION_HEARTBEAT: Duration = Duration::from_secs(5 * 60);

/// How long the automatic lease on an edited file lasts; an edit renews it once a quarter
/// of it has passed.
pub const AUTO_LEASE: Duration = Duration::from_secs(20 * 60);

/// A session's heartbeat younger than this is not written again.
const FRESH: jiff::SignedDuration = jiff::SignedDuration::from_secs(30);

/// Whether a session may edit a path.
#[derive(Debug, Clone)]
pub enum Edit {
    /// Go ahead. `lease`: the automatic lease taken or renewed on the file for this edit
    /// (none when the session already holds it otherwise, shares it, or auto-reserve is off).
    Allowed {
        /// The lease, when one was taken or renewed.
        lease: Option<Box<LockInfo>>,
    },
    /// Other agents hold it: their locks and reservations, exclusive ones first.
    Refused {
        /// What stands in the way.
        claims: Vec<LockInfo>,
    },
}

/// An agent driven by another program's calls.
#[derive(Debug, Clone)]
pub struct Session {
    ws: Workspace,
    registry: Registry,
    id: String,
}

impl Session {
    /// Registers `id` as an active session now, or refreshes it: the first call of a
    /// session, and every later one (a call is a heartbeat). What an existing record holds —
    /// role, capabilities, worktree, branch, counts, current task — is kept. Returns the
    /// session and its record as written.
    pub fn touch(ws: &Workspace, id: &str) -> Result<(Session, AgentRecord), AgentError> {
        name::validate(NameKind::Agent, id)?;
        let registry = Registry::new(ws);
        let session = Session {
            ws: ws.clone(),
            registry: registry.clone(),
            id: id.to_owned(),
        };
        // A heartbeat a moment ago is as good as one now (stale comes only after 30
        // minutes): an editor's many calls a minute write the record once.
        if let Ok(Some(record)) = registry.get(id)
            && record.status == AgentStatus::Active
            && record.heartbeat_age() < FRESH
        {
            return Ok((session, record));
        }
        let record = registry.upsert(id, |existing| {
            let mut record = match existing {
                // A MAOS process runs this agent too (the session's MCP server): the
                // record is its, and so is the heartbeat.
                Some(record)
                    if record.status == AgentStatus::Active
                        && !record.process.is_unknown()
                        && record.process.may_be_alive() =>
                {
                    return Ok(record);
                }
                Some(mut record) => {
                    if record.status != AgentStatus::Active {
                        record.started_at = Timestamp::now();
                    }
                    record.status = AgentStatus::Active;
                    record.left_at = None;
                    record
                }
                None => AgentRecord::new(id, None, Vec::new(), SESSION_HEARTBEAT),
            };
            record.process = ProcessIdentity::unknown();
            record.heartbeat_interval_ms = millis(SESSION_HEARTBEAT);
            record.beat();
            Ok(record)
        })?;
        Ok((session, record))
    }

    /// The session of agent `id` as it stands, without a heartbeat (to end it).
    pub fn of(ws: &Workspace, id: &str) -> Session {
        Session {
            ws: ws.clone(),
            registry: Registry::new(ws),
            id: id.to_owned(),
        }
    }

    /// The agent id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Decides an edit of `path` (relative to the repository root): refused while another
    /// agent locks it or reserves it (a shared reservation does not stand in the way of an
    /// agent that shares it too); otherwise, with `auto_reserve`, takes or renews the
    /// session's automatic lease on the file ([`AUTO_LEASE`]) unless it already holds the
    /// file by a lock or an explicit exclusive reservation. The check and the lease are one
    /// reservation attempt, so of two sessions editing one file at once exactly one gets it.
    pub fn before_edit(&self, path: &str, auto_reserve: bool) -> Result<Edit, LockError> {
        let reservations = Reservations::new(&self.ws);
        let claims = reservations.claims_on(path, &self.id)?;
        let i_share = claims.mine.iter().any(|c| c.shared);
        let (shared_with_me, blocking): (Vec<LockInfo>, Vec<LockInfo>) =
            claims.others.into_iter().partition(|c| c.shared && i_share);
        if !blocking.is_empty() {
            return Ok(Edit::Refused { claims: blocking });
        }
        // Held by its own lock or explicit exclusive reservation: nothing to lease.
        let held_otherwise = claims.mine.iter().any(|c| !c.shared && !c.auto);
        if !auto_reserve || held_otherwise || !shared_with_me.is_empty() {
            return Ok(Edit::Allowed { lease: None });
        }
        // The lease is on the path itself, whatever its name holds (`app/[id]/page.tsx`).
        let lease_pattern = pattern::literal(path);
        let leased = Pattern::new(&lease_pattern).map(|p| p.as_str().to_owned())?;
        // Its lease has most of its time left: renewed later, not at every edit.
        let renew_below = jiff::SignedDuration::try_from(AUTO_LEASE.mul_f64(0.75))
            .unwrap_or(jiff::SignedDuration::ZERO);
        if let Some(lease) = claims
            .mine
            .iter()
            .find(|c| c.auto && c.resource == leased && c.time_left() > renew_below)
        {
            return Ok(Edit::Allowed {
                lease: Some(Box::new(lease.clone())),
            });
        }
        let request = ReservationRequest::new(&[lease_pattern], &self.id)?
            .ttl(AUTO_LEASE)
            .reason("editing")
            .automatic(true);
        match reservations.try_reserve(&request) {
            Ok(mut granted) => Ok(Edit::Allowed {
                lease: granted.pop().map(Box::new),
            }),
            // Someone took it between the look and the attempt.
            Err(LockError::Conflict { holder, .. }) => Ok(Edit::Refused {
                claims: vec![*holder],
            }),
            Err(e) => Err(e),
        }
    }

    /// Releases the leases taken automatically for the session (the end of a turn).
    pub fn release_automatic(&self) -> Result<Vec<LockInfo>, LockError> {
        Reservations::new(&self.ws).release_automatic_of(&self.id)
    }

    /// Ends the session: releases its automatic leases, returns the tasks it holds in
    /// progress to the ready queue, and marks it gone. Its explicit locks and reservations
    /// stay until released or expired.
    pub fn end(self) -> Result<LeaveReport, AgentError> {
        let released = self.release_automatic()?;
        let reason = format!("session `{}` ended", self.id);
        let (returned, _) = Tasks::new(&self.ws).return_held(&self.id, &self.id, &reason, None)?;
        self.registry.update(&self.id, |on_disk| {
            Ok(on_disk.map(|mut record| {
                record.status = AgentStatus::Gone;
                record.current_task = None;
                record.left_at = Some(Timestamp::now());
                record
            }))
        })?;
        Ok(LeaveReport {
            returned_tasks: returned.into_iter().map(|t| t.id).collect(),
            released_locks: released.into_iter().map(|r| r.resource).collect(),
        })
    }
}

/// What `sessions/<program>-<session>.json` records: which agent a session of an editor is.
#[derive(Debug, Serialize, Deserialize)]
struct SessionFile {
    program: String,
    session_id: String,
    agent: String,
    started_at: Timestamp,
    /// The work tree the session started in.
    #[serde(default)]
    worktree: Option<PathBuf>,
}

/// The agent id of the session `session_id` of `program` (`claude`), working in the git
/// work tree `worktree`: the one recorded for that session under `sessions/` (so every
/// later call of the session is the same agent, wherever it has moved to), else the agent
/// registered with that work tree (`maos agent spawn`), else `<program>-` and the first 8
/// letters and digits of the session id; recorded for the session's later calls.
pub fn agent_of_session(
    ws: &Workspace,
    program: &str,
    session_id: &str,
    worktree: Option<&Path>,
) -> Result<String, AgentError> {
    let path = session_path(ws, program, session_id);
    match record::read::<SessionFile>(&path, "session") {
        Ok(file) if name::validate(NameKind::Agent, &file.agent).is_ok() => return Ok(file.agent),
        Err(RecordError::Io(e)) if e.is_not_found() => {}
        // A broken or hand-edited file: decided afresh and rewritten below.
        _ => {}
    }
    let registered = match worktree {
        Some(dir) => agent_of_worktree(ws, dir)?,
        None => None,
    };
    let agent = match registered {
        Some(id) => id,
        None => {
            let short: String = letters(session_id).take(8).collect();
            format!(
                "{program}-{}",
                if short.is_empty() {
                    "session".into()
                } else {
                    short
                }
            )
        }
    };
    name::validate(NameKind::Agent, &agent)?;
    let file = SessionFile {
        program: program.to_owned(),
        session_id: session_id.to_owned(),
        agent: agent.clone(),
        started_at: Timestamp::now(),
        worktree: worktree.and_then(|w| w.canonicalize().ok()),
    };
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    atomic::write_replace(
        &ws.tmp_dir(),
        &path,
        &record::encode(&file),
        Durability::Buffered,
    )?;
    Ok(agent)
}

/// An editor whose sessions MAOS knows how to tell apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    /// Claude Code (`claude`).
    Claude,
    /// Codex (`codex`).
    Codex,
    /// Gemini CLI (`gemini`).
    Gemini,
}

impl Client {
    /// Its name, as in `maos hook <name>` and in agent ids (`claude-…`).
    pub fn name(self) -> &'static str {
        match self {
            Client::Claude => "claude",
            Client::Codex => "codex",
            Client::Gemini => "gemini",
        }
    }

    /// The key of the session this process (a hook, or an MCP server the client started)
    /// belongs to, and how it was learnt. `given` is the session id the client handed a
    /// hook. Claude Code gives its session id to hooks (on stdin) and to MCP servers
    /// (`CLAUDE_CODE_SESSION_ID`), so a resumed session is the same agent again. Codex and
    /// Gemini CLI give their MCP servers no session id, so their session is the client's
    /// own process (`codex`; Gemini CLI's `node`), the parent of both its hooks and its
    /// server, which lives exactly as long as the session.
    pub fn session_key(self, given: Option<&str>) -> Option<SessionKey> {
        match self {
            Client::Claude => given
                .map(str::to_owned)
                .or_else(|| {
                    std::env::var("CLAUDE_CODE_SESSION_ID")
                        .ok()
                        .filter(|v| !v.trim().is_empty())
                })
                .map(|key| SessionKey {
                    key,
                    source: SessionSource::SessionId,
                }),
            Client::Codex | Client::Gemini => self.process_key(),
        }
    }

    /// The client's own process among this process's nearest ancestors, as a key: eight hex
    /// digits of its pid and start time.
    fn process_key(self) -> Option<SessionKey> {
        let names: &[&str] = match self {
            Client::Claude => &["claude"],
            Client::Codex => &["codex"],
            Client::Gemini => &["gemini", "node"],
        };
        let client = process::ancestors(4)
            .into_iter()
            .find(|a| names.contains(&a.name.as_str()))?;
        // FNV-1a: stable across builds and platforms (std's hasher is not).
        let mut hash: u32 = 0x811c_9dc5;
        for byte in format!("{}:{}", client.pid, client.start_time).bytes() {
            hash = (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193);
        }
        Some(SessionKey {
            key: format!("{hash:08x}"),
            source: SessionSource::Process(client.pid),
        })
    }

    /// The client whose MCP server this process is, told by what the client leaves in its
    /// environment (Claude Code: `CLAUDE_CODE_SESSION_ID`; Gemini CLI: `GEMINI_CLI`) or by
    /// its parent process (Codex).
    pub fn of_mcp_server() -> Option<Client> {
        let env_set = |var: &str| std::env::var_os(var).is_some_and(|v| !v.is_empty());
        if env_set("CLAUDE_CODE_SESSION_ID") {
            Some(Client::Claude)
        } else if env_set("GEMINI_CLI") {
            Some(Client::Gemini)
        } else if Client::Codex.process_key().is_some() {
            Some(Client::Codex)
        } else {
            None
        }
    }
}

/// Which agent the session of `client` that this process serves is, and why — the one
/// answer for every hook of the session and for its MCP server: the agent recorded for the
/// session ([`agent_of_session`]: the work tree's agent, else `<client>-<key>`), or, when
/// the session cannot be told, the work tree's agent alone (`None` when there is none).
/// `given` is the session id a hook was handed; `client` is `None` for a process no known
/// client started.
pub fn agent_of_client(
    ws: &Workspace,
    client: Option<Client>,
    given: Option<&str>,
    worktree: Option<&Path>,
) -> Result<Option<(String, String)>, AgentError> {
    let Some((client, session)) = client.and_then(|c| c.session_key(given).map(|k| (c, k))) else {
        return Ok(match worktree {
            Some(dir) => agent_of_worktree(ws, dir)?.map(|id| {
                (
                    id,
                    "the agent `maos agent spawn` registered for this work tree".to_owned(),
                )
            }),
            None => None,
        });
    };
    let agent = agent_of_session(ws, client.name(), &session.key, worktree)?;
    let why = match session.source {
        SessionSource::SessionId => format!(
            "the agent of {} session {}: its hooks and its `maos mcp` are this one agent",
            client.name(),
            session.key
        ),
        SessionSource::Process(pid) => format!(
            "the agent of the {} session of process {pid}, for the whole session; set \
             MAOS_AGENT_ID to choose the name",
            client.name()
        ),
    };
    Ok(Some((agent, why)))
}

/// What tells a client's session apart (see [`Client::session_key`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionKey {
    /// The session id, or the key made from the client's process.
    pub key: String,
    /// How it was learnt.
    pub source: SessionSource,
}

/// Where a [`SessionKey`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionSource {
    /// The session id the client gave.
    SessionId,
    /// The client's process (its pid): the session lives as long as it.
    Process(u32),
}

/// The agents of the sessions that started in the work tree `dir` and have not ended.
pub fn agents_in_worktree(ws: &Workspace, dir: &Path) -> Result<Vec<String>, AgentError> {
    let Ok(dir) = dir.canonicalize() else {
        return Ok(Vec::new());
    };
    let folder = ws.dir().join("sessions");
    let mut agents = Vec::new();
    for name in fs::list_names(&folder)? {
        let Ok(file) = record::read::<SessionFile>(&folder.join(&name), "session") else {
            continue; // a broken session file speaks for no one
        };
        if file.worktree.as_deref() == Some(dir.as_path()) && !agents.contains(&file.agent) {
            agents.push(file.agent);
        }
    }
    Ok(agents)
}

/// Forgets which agent a session was (it ended).
pub fn forget_session(ws: &Workspace, program: &str, session_id: &str) -> Result<(), AgentError> {
    Ok(fs::remove_file_if_exists(&session_path(
        ws, program, session_id,
    ))?)
}

/// `sessions/<program>-<session id's letters, digits and dashes>.json`.
fn session_path(ws: &Workspace, program: &str, session_id: &str) -> PathBuf {
    let key: String = session_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .map(|c| c.to_ascii_lowercase())
        .take(100)
        .collect();
    ws.dir()
        .join("sessions")
        .join(format!("{}-{key}.json", name::file_name(program)))
}

fn letters(s: &str) -> impl Iterator<Item = char> + '_ {
    s.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
}

/// The agent registered with the work tree `dir` (by `maos agent spawn`), if any.
pub fn agent_of_worktree(ws: &Workspace, dir: &Path) -> Result<Option<String>, AgentError> {
    let Ok(dir) = dir.canonicalize() else {
        return Ok(None);
    };
    let (records, _) = Registry::new(ws).list()?;
    Ok(records
        .into_iter()
        .find(|r| {
            r.worktree
                .as_deref()
                .and_then(|w| w.canonicalize().ok())
                .is_some_and(|w| w == dir)
        })
        .map(|r| r.id))
}

fn millis(d: Duration) -> u64 {
    d.as_millis().try_into().unwrap_or(u64::MAX)
}
