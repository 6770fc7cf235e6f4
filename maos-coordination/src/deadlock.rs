//! Wait-for records and deadlock detection (invariant D1).
//!
//! A blocked acquirer records what it waits for in `locks/waits/<agent>.json`. Any process
//! can then build the wait-for graph — an edge from each live waiter to every agent whose
//! live lock or reservation stands in its way (a lock's holder, reservations covering it; a
//! pattern's overlapping reservations and the locks it covers) — and find the cycles with
//! Tarjan's strongly connected components (petgraph): in each component of two or more agents
//! the victim's cycle is the shortest way from it back to itself.
//!
//! **Victim rule:** the youngest waiter of the cycle — the one whose wait began last (ties:
//! the greatest agent id) — gives up: it has waited least, so aborting it wastes least. Every
//! process computes the same victim; waiters run the detector while they wait, and the victim
//! itself, on seeing that, stops waiting with a deadlock error and announces the cycle on the
//! `deadlock` broadcast topic. No daemon is needed; [`monitor`] runs the detector periodically
//! for those who want one.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use jiff::Timestamp;
use petgraph::algo::tarjan_scc;
use petgraph::graph::DiGraph;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::channel::{self, Draft};
use crate::journal::{self, Event};
use crate::lock::pattern::Pattern;
use crate::lock::{LockError, LockInfo, LockState, Locks, Reservations, reservation};
use crate::priority::Priority;
use crate::process::ProcessIdentity;
use crate::record::{self, RecordError};
use crate::store::Spot;
use crate::workspace::Workspace;

/// The broadcast topic on which victims announce deadlocks.
pub const TOPIC: &str = "deadlock";

/// What a blocked agent waits for (`locks/waits/<agent>.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitRecord {
    /// The waiting agent.
    pub agent: String,
    /// The resource it waits for (for a reservation: the pattern).
    pub resource: String,
    /// A lock, or an exclusive or shared reservation.
    #[serde(default)]
    pub kind: WaitKind,
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

/// What a waiter waits to take.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WaitKind {
    /// A lock on one resource.
    #[default]
    Lock,
    /// An exclusive reservation of a pattern.
    Exclusive,
    /// A shared reservation of a pattern.
    Shared,
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

/// Where wait records are, relative to `.maos/`.
const WAITS: &str = "locks/waits";

/// `agent`'s wait record.
fn wait_spot(ws: &Workspace, agent: &str) -> Spot {
    let rel = Path::new(WAITS).join(format!("{}.json", crate::name::file_name(agent)));
    Spot::new(ws.store(), ws.dir(), rel)
}

pub(crate) fn record_wait(
    ws: &Workspace,
    agent: &str,
    resource: &str,
    kind: WaitKind,
    me: &ProcessIdentity,
    since: Timestamp,
    until: Timestamp,
) -> Result<(), LockError> {
    let record = WaitRecord {
        agent: agent.to_owned(),
        resource: resource.to_owned(),
        kind,
        since,
        until,
        until_boot_ms: Some(crate::process::boot_ms_at(until)),
        process: me.clone(),
    };
    // On etcd under a lease as long as the wait: a killed waiter's record goes with it.
    let lasting = (until - Timestamp::now())
        .try_into()
        .unwrap_or(Duration::ZERO)
        + Duration::from_secs(5);
    wait_spot(ws, agent).write_for(&record::encode(&record), lasting)?;
    journal::record(
        ws,
        Event::new("lock.waiting")
            .agent(agent)
            .subject(resource)
            .data(json!({ "kind": record.kind, "until": until })),
    );
    Ok(())
}

/// Removes `agent`'s wait record when dropped, however its wait ends (best effort: a
/// leftover record of a finished wait expires, and its process is gone).
pub(crate) struct ClearWaitOnDrop {
    ws: Workspace,
    agent: String,
}

impl ClearWaitOnDrop {
    pub(crate) fn new(ws: &Workspace, agent: &str) -> Self {
        Self {
            ws: ws.clone(),
            agent: agent.to_owned(),
        }
    }
}

impl Drop for ClearWaitOnDrop {
    fn drop(&mut self) {
        let _ = clear_wait(&self.ws, &self.agent);
    }
}

pub(crate) fn clear_wait(ws: &Workspace, agent: &str) -> Result<(), LockError> {
    wait_spot(ws, agent).remove()?;
    Ok(())
}

/// The wait records on disk: the live ones, and the problems with broken files.
pub fn waits(ws: &Workspace) -> Result<(Vec<WaitRecord>, Vec<RecordError>), LockError> {
    let (mut live, mut broken) = (Vec::new(), Vec::new());
    for (spot, bytes) in ws.store().records_in(ws.dir(), Path::new(WAITS))? {
        match record::decode::<WaitRecord>(&spot.path(), "wait record", &bytes) {
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
    // Read once for every waiter: the live reservations, and every live lock only when some
    // waiter wants a pattern (a lock waiter reads just its own lock file).
    let reservations = Reservations::new(ws).live()?;
    let all_locks = if waits.iter().any(|w| w.kind != WaitKind::Lock) {
        locks.live()?
    } else {
        Vec::new()
    };
    let mut graph = DiGraph::<String, ()>::new();
    let mut nodes = HashMap::new();
    let mut node = |graph: &mut DiGraph<String, ()>, agent: &str| {
        *nodes
            .entry(agent.to_owned())
            .or_insert_with(|| graph.add_node(agent.to_owned()))
    };
    let mut out_edges: HashMap<String, (Vec<WaitEdge>, Timestamp)> = HashMap::new();
    for wait in &waits {
        let mut edges: Vec<WaitEdge> = Vec::new();
        for holder in blockers(&locks, &reservations, &all_locks, wait)? {
            if holder.owner != wait.agent && !edges.iter().any(|e| e.holder == holder.owner) {
                edges.push(WaitEdge {
                    waiter: wait.agent.clone(),
                    resource: holder.resource,
                    holder: holder.owner,
                });
            }
        }
        for edge in &edges {
            let (from, to) = (
                node(&mut graph, &edge.waiter),
                node(&mut graph, &edge.holder),
            );
            graph.add_edge(from, to, ());
        }
        if !edges.is_empty() {
            out_edges.insert(wait.agent.clone(), (edges, wait.since));
        }
    }
    let mut cycles = Vec::new();
    for component in tarjan_scc(&graph) {
        if component.len() < 2 {
            continue;
        }
        let members: Vec<String> = component.iter().map(|n| graph[*n].clone()).collect();
        let Some(victim) = members
            .iter()
            .filter_map(|a| out_edges.get(a).map(|(_, since)| (*since, a.clone())))
            .max()
            .map(|(_, agent)| agent)
        else {
            continue;
        };
        if let Some(edges) = shortest_cycle(&victim, &members, &out_edges) {
            cycles.push(Cycle {
                agents: edges.iter().map(|e| e.waiter.clone()).collect(),
                edges,
                victim,
            });
        }
    }
    cycles.sort_by(|a, b| a.agents.cmp(&b.agents));
    Ok(cycles)
}

/// The live locks and reservations of other agents standing in the way of a wait.
fn blockers(
    locks: &Locks,
    reservations: &[LockInfo],
    all_locks: &[LockInfo],
    wait: &WaitRecord,
) -> Result<Vec<LockInfo>, LockError> {
    Ok(match wait.kind {
        WaitKind::Lock => {
            // A broken lock file is not an edge; `maos doctor` reports it.
            let held = match locks.read_lock(&wait.resource) {
                Ok(Some(lock)) if lock.state() == LockState::Live => Some(lock),
                _ => None,
            };
            let covering = reservation::covering(reservations, &wait.resource, &wait.agent);
            held.into_iter().chain(covering.cloned()).collect()
        }
        WaitKind::Exclusive | WaitKind::Shared => match Pattern::new(&wait.resource) {
            Ok(pattern) => {
                let shared = wait.kind == WaitKind::Shared;
                reservation::in_the_way(&pattern, &wait.agent, shared, reservations, all_locks)
                    .into_iter()
                    .map(|b| b.holder)
                    .collect()
            }
            Err(_) => Vec::new(),
        },
    })
}

/// The shortest way from `victim` back to itself through `members`, breadth first.
fn shortest_cycle(
    victim: &str,
    members: &[String],
    out_edges: &HashMap<String, (Vec<WaitEdge>, Timestamp)>,
) -> Option<Vec<WaitEdge>> {
    let mut came_by: HashMap<&str, &WaitEdge> = HashMap::new();
    let mut frontier = vec![victim];
    while !frontier.is_empty() {
        let mut next = Vec::new();
        for at in frontier {
            for edge in out_edges.get(at).map_or(&[][..], |(e, _)| e) {
                if !members.contains(&edge.holder) {
                    continue;
                }
                if edge.holder == victim {
                    let mut path = vec![edge.clone()];
                    let mut back = at;
                    while back != victim {
                        let prev = came_by.get(back)?;
                        path.push((*prev).clone());
                        back = &prev.waiter;
                    }
                    path.reverse();
                    return Some(path);
                }
                if !came_by.contains_key(edge.holder.as_str()) {
                    came_by.insert(&edge.holder, edge);
                    next.push(edge.holder.as_str());
                }
            }
        }
        frontier = next;
    }
    None
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
    journal::record(
        ws,
        Event::new("deadlock.victim")
            .agent(cycle.victim.clone())
            .subject(cycle.victim.clone())
            .data(json!({ "cycle": cycle.agents, "edges": cycle.edges })),
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
