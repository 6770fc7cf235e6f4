//! Wait-for records and deadlock detection (invariant D1).
//!
//! A blocked acquirer records what it waits for in `locks/waits/<agent>.json`. Any process
//! can then build the wait-for graph — an edge from each live waiter to the agent holding the
//! lock it waits for — and find every cycle with Tarjan's strongly connected components
//! (petgraph). Each agent waits for one thing at a time, so every component of two or more
//! agents is one simple cycle.
//!
//! **Victim rule:** the youngest waiter of the cycle — the one whose wait began last (ties:
//! the greatest agent id) — gives up: it has waited least, so aborting it wastes least. Every
//! process computes the same victim; waiters run the detector while they wait, and the victim
//! itself, on seeing that, stops waiting with a deadlock error and announces the cycle on the
//! `deadlock` broadcast topic. No daemon is needed; [`monitor`] runs the detector periodically
//! for those who want one.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use jiff::Timestamp;
use petgraph::algo::tarjan_scc;
use petgraph::graph::DiGraph;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::atomic::{self, Durability};
use crate::channel::{self, Draft};
use crate::fs;
use crate::lock::{LockError, LockState, Locks};
use crate::priority::Priority;
use crate::process::ProcessIdentity;
use crate::record::{self, RecordError};
use crate::workspace::Workspace;

/// The broadcast topic on which victims announce deadlocks.
pub const TOPIC: &str = "deadlock";

/// What a blocked agent waits for (`locks/waits/<agent>.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitRecord {
    /// The waiting agent.
    pub agent: String,
    /// The resource it waits for.
    pub resource: String,
    /// When the wait began.
    pub since: Timestamp,
    /// When the wait gives up.
    pub until: Timestamp,
    /// `until` on the waiting boot's clock that never jumps (milliseconds since boot).
    #[serde(default)]
    pub until_boot_ms: Option<u64>,
    /// The waiting process.
    pub process: ProcessIdentity,
}

impl WaitRecord {
    /// Whether the wait may still be going on.
    pub fn is_live(&self) -> bool {
        crate::process::time_until(self.until, self.until_boot_ms, &self.process.boot_id)
            > jiff::SignedDuration::ZERO
            && self.process.may_be_alive()
    }
}

/// One edge of the wait-for graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WaitEdge {
    /// The agent waiting.
    pub waiter: String,
    /// The lock it waits for.
    pub resource: String,
    /// The agent holding that lock.
    pub holder: String,
}

/// A deadlock: agents each waiting for a lock the next one holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cycle {
    /// The agents, starting with the victim, each waiting for the next (the last waits for
    /// the first).
    pub agents: Vec<String>,
    /// The edges, in the same order.
    pub edges: Vec<WaitEdge>,
    /// The agent chosen to give up.
    pub victim: String,
}

impl Cycle {
    /// "a waits for `x` held by b, b waits for `y` held by a".
    pub fn describe(&self) -> String {
        self.edges
            .iter()
            .map(|e| {
                format!(
                    "{} waits for `{}` held by {}",
                    e.waiter, e.resource, e.holder
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The resources the victim holds that others in the cycle wait for.
    pub fn victim_holds(&self) -> Vec<String> {
        self.edges
            .iter()
            .filter(|e| e.holder == self.victim)
            .map(|e| e.resource.clone())
            .collect()
    }
}

fn waits_dir(ws: &Workspace) -> PathBuf {
    ws.locks_dir().join("waits")
}

pub(crate) fn record_wait(
    ws: &Workspace,
    agent: &str,
    resource: &str,
    me: &ProcessIdentity,
    since: Timestamp,
    until: Timestamp,
) -> Result<(), LockError> {
    let record = WaitRecord {
        agent: agent.to_owned(),
        resource: resource.to_owned(),
        since,
        until,
        until_boot_ms: Some(crate::process::boot_ms_at(until)),
        process: me.clone(),
    };
    let dir = waits_dir(ws);
    fs::create_dir_all(&dir)?;
    atomic::write_replace(
        &ws.tmp_dir(),
        &dir.join(format!("{}.json", crate::name::file_name(agent))),
        &record::encode(&record),
        Durability::Buffered,
    )?;
    Ok(())
}

pub(crate) fn clear_wait(ws: &Workspace, agent: &str) -> Result<(), LockError> {
    fs::remove_file_if_exists(
        &waits_dir(ws).join(format!("{}.json", crate::name::file_name(agent))),
    )?;
    Ok(())
}

/// The wait records on disk: the live ones, and the problems with broken files.
pub fn waits(ws: &Workspace) -> Result<(Vec<WaitRecord>, Vec<RecordError>), LockError> {
    let dir = waits_dir(ws);
    let (mut live, mut broken) = (Vec::new(), Vec::new());
    for name in fs::list_names(&dir)? {
        match record::read::<WaitRecord>(&dir.join(name), "wait record") {
            Ok(wait) if wait.is_live() => live.push(wait),
            Ok(_) => {}
            Err(e) => broken.push(e),
        }
    }
    Ok((live, broken))
}

/// Every deadlock in the workspace now, each with its victim.
pub fn detect(ws: &Workspace) -> Result<Vec<Cycle>, LockError> {
    let (waits, _broken) = waits(ws)?;
    let locks = Locks::new(ws);
    let mut graph = DiGraph::<String, usize>::new();
    let mut nodes = HashMap::new();
    let mut node = |graph: &mut DiGraph<String, usize>, agent: &str| {
        *nodes
            .entry(agent.to_owned())
            .or_insert_with(|| graph.add_node(agent.to_owned()))
    };
    let mut out_edge: HashMap<String, (WaitEdge, Timestamp)> = HashMap::new();
    for (i, wait) in waits.iter().enumerate() {
        // A broken lock file is not an edge; `maos doctor` reports it.
        let Ok(Some(lock)) = locks.read_lock(&wait.resource) else {
            continue;
        };
        if lock.owner == wait.agent || lock.state() != LockState::Live {
            continue;
        }
        let (from, to) = (node(&mut graph, &wait.agent), node(&mut graph, &lock.owner));
        graph.add_edge(from, to, i);
        out_edge.insert(
            wait.agent.clone(),
            (
                WaitEdge {
                    waiter: wait.agent.clone(),
                    resource: wait.resource.clone(),
                    holder: lock.owner,
                },
                wait.since,
            ),
        );
    }
    let mut cycles = Vec::new();
    for component in tarjan_scc(&graph) {
        if component.len() < 2 {
            continue;
        }
        let members: Vec<&String> = component.iter().map(|n| &graph[*n]).collect();
        let Some(victim) = members
            .iter()
            .filter_map(|a| out_edge.get(*a).map(|(_, since)| (*since, (*a).clone())))
            .max()
            .map(|(_, agent)| agent)
        else {
            continue;
        };
        let (mut agents, mut edges) = (Vec::new(), Vec::new());
        let mut at = victim.clone();
        while let Some((edge, _)) = out_edge.get(&at) {
            if agents.contains(&at) {
                break;
            }
            agents.push(at.clone());
            edges.push(edge.clone());
            at = edge.holder.clone();
        }
        cycles.push(Cycle {
            agents,
            edges,
            victim,
        });
    }
    cycles.sort_by(|a, b| a.agents.cmp(&b.agents));
    Ok(cycles)
}

/// The cycle whose victim is `agent`, if there is one now.
pub(crate) fn victim_cycle(ws: &Workspace, agent: &str) -> Result<Option<Cycle>, LockError> {
    Ok(detect(ws)?.into_iter().find(|c| c.victim == agent))
}

/// Announces a deadlock on the `deadlock` broadcast topic (sent by the victim).
pub fn announce(ws: &Workspace, cycle: &Cycle) -> Result<(), channel::ChannelError> {
    let holds = cycle.victim_holds();
    let resolution = format!(
        "{} stops waiting and should release {}; the others' waits then go on",
        cycle.victim,
        if holds.is_empty() {
            "its locks".to_owned()
        } else {
            holds
                .iter()
                .map(|r| format!("`{r}`"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    let payload = json!({
        "cycle": cycle.agents,
        "victim": cycle.victim,
        "edges": cycle.edges,
        "resolution": resolution,
        "summary": cycle.describe(),
    });
    channel::broadcast(
        ws,
        TOPIC,
        &cycle.victim,
        Draft::new(payload)
            .kind("deadlock")
            .priority(Priority::High),
    )?;
    Ok(())
}

/// Runs the detector every `interval` while `keep_going()` says so, handing each non-empty
/// result to `on_cycles`. For processes that want to watch for deadlocks without waiting on
/// a lock themselves.
pub fn monitor(
    ws: &Workspace,
    interval: Duration,
    mut keep_going: impl FnMut() -> bool,
    mut on_cycles: impl FnMut(&[Cycle]),
) -> Result<(), LockError> {
    while keep_going() {
        let cycles = detect(ws)?;
        if !cycles.is_empty() {
            on_cycles(&cycles);
        }
        std::thread::sleep(interval);
    }
    Ok(())
}
