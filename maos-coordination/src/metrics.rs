//! The workspace's numbers for a dashboard (`maos metrics`): tasks by status, the ready
//! queue, locks and reservations by state, agents by state, messages and unacknowledged
//! messages per channel, overdue acknowledgements, and the last merge forecast, read from the
//! records as they are now; and from the journal, how long lock acquisitions waited and tasks
//! waited to be claimed (histograms) and how many of each kind of event happened (locks
//! stolen and broken, merges run and refused, conflicts, hook failures) — in the Prometheus
//! text exposition format (or as JSON).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::agents::{AgentState, Registry};
use crate::channel::{self, Channel};
use crate::error::ErrorKind;
use crate::journal;
use crate::lock::{LockState, Locks, Reservations};
use crate::progress;
use crate::task::{Status, Tasks};
use crate::workspace::Workspace;

/// Gathering the numbers failed.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The tasks could not be read.
    #[error(transparent)]
    Task(#[from] crate::task::TaskError),
    /// The locks or reservations could not be read.
    #[error(transparent)]
    Lock(#[from] crate::lock::LockError),
    /// The agents could not be read.
    #[error(transparent)]
    Agent(#[from] crate::agents::AgentError),
    /// The channels could not be read.
    #[error(transparent)]
    Channel(#[from] channel::ChannelError),
    /// The journal could not be read.
    #[error(transparent)]
    Journal(#[from] crate::store::StoreError),
}

impl MetricsError {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            MetricsError::Task(e) => e.kind(),
            MetricsError::Lock(e) => e.kind(),
            MetricsError::Agent(e) => e.kind(),
            MetricsError::Channel(e) => e.kind(),
            MetricsError::Journal(e) => e.kind(),
        }
    }
}

/// One metric: its samples by label value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Family {
    /// The metric's name (`maos_…`).
    pub name: &'static str,
    /// What it counts.
    pub help: &'static str,
    /// `gauge` or `counter`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The label the samples differ by (`None`: one sample).
    pub label: Option<&'static str>,
    /// Label value (empty without a label) → value.
    pub samples: BTreeMap<String, f64>,
    /// For a `histogram`: its buckets, sum and count (then `samples` is empty).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub histogram: Option<Histogram>,
}

/// The observations of a histogram, in seconds.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Histogram {
    /// Upper bound → observations at or below it (cumulative), ascending.
    pub buckets: Vec<(f64, u64)>,
    /// The sum of every observation.
    pub sum: f64,
    /// How many observations.
    pub count: u64,
}

/// The bucket bounds of MAOS's latency histograms, in seconds: a millisecond to half an hour.
const BOUNDS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0, 300.0, 1800.0,
];

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: BOUNDS.iter().map(|b| (*b, 0)).collect(),
            sum: 0.0,
            count: 0,
        }
    }
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        self.sum += seconds;
        self.count += 1;
        for (bound, n) in &mut self.buckets {
            if seconds <= *bound {
                *n += 1;
            }
        }
    }
}

impl Family {
    fn one(name: &'static str, help: &'static str, value: usize) -> Self {
        Self {
            name,
            help,
            kind: "gauge",
            label: None,
            samples: BTreeMap::from([(String::new(), value as f64)]),
            histogram: None,
        }
    }

    fn histogram(name: &'static str, help: &'static str, histogram: Histogram) -> Self {
        Self {
            name,
            help,
            kind: "histogram",
            label: None,
            samples: BTreeMap::new(),
            histogram: Some(histogram),
        }
    }

    fn by(
        name: &'static str,
        help: &'static str,
        kind: &'static str,
        label: &'static str,
        samples: impl IntoIterator<Item = (String, f64)>,
    ) -> Self {
        Self {
            name,
            help,
            kind,
            label: Some(label),
            samples: samples.into_iter().collect(),
            histogram: None,
        }
    }
}

/// Every metric of the workspace, now.
pub fn gather(ws: &Workspace) -> Result<Vec<Family>, MetricsError> {
    let tasks = Tasks::new(ws);
    let view = tasks.summaries(true)?;
    let report = progress::report_over(&view.tasks, &view.skipped);
    let ready = tasks.ready()?.tasks.len();
    let count_states = |seen: Vec<LockState>| {
        [LockState::Live, LockState::Expired, LockState::Dead].map(|state| {
            let n = seen.iter().filter(|s| **s == state).count();
            (state.as_str().to_owned(), n as f64)
        })
    };
    let lock_states: Vec<LockState> = Locks::new(ws)
        .list()?
        .into_iter()
        .filter_map(|l| l.info.ok().map(|i| i.state()))
        .collect();
    let reservation_states: Vec<LockState> = Reservations::new(ws)
        .list()?
        .into_iter()
        .filter_map(|l| l.info.ok().map(|i| i.state()))
        .collect();
    let (agents, _) = Registry::new(ws).list()?;
    let mut by_agent_state: BTreeMap<String, f64> = [
        AgentState::Alive,
        AgentState::Stale,
        AgentState::Dead,
        AgentState::Gone,
        AgentState::Registered,
    ]
    .into_iter()
    .map(|s| (s.as_str().to_owned(), 0.0))
    .collect();
    for agent in &agents {
        *by_agent_state
            .entry(agent.state().as_str().to_owned())
            .or_default() += 1.0;
    }
    let mut messages = BTreeMap::new();
    let mut unacked = BTreeMap::new();
    for name in channel::channel_names(ws)? {
        let last = Channel::open(ws, name.clone()).last_seq()?;
        unacked.insert(
            name.as_str().to_owned(),
            channel::unacked(ws, &name)?.len() as f64,
        );
        messages.insert(name.as_str().to_owned(), last as f64);
    }
    let overdue = channel::overdue(ws, jiff::Timestamp::now())?.len();
    let mut families = vec![
        Family::by(
            "maos_tasks",
            "Tasks by status.",
            "gauge",
            "status",
            Status::ALL.iter().map(|s| {
                (
                    s.as_str().to_owned(),
                    report.by_status.get(s.as_str()).copied().unwrap_or(0) as f64,
                )
            }),
        ),
        Family::one("maos_tasks_ready", "Tasks ready to be claimed.", ready),
        Family::one(
            "maos_task_files_broken",
            "Task files that cannot be read.",
            view.skipped.len(),
        ),
        Family::by(
            "maos_locks",
            "Locks by state (expired and dead ones may be taken over).",
            "gauge",
            "state",
            count_states(lock_states),
        ),
        Family::by(
            "maos_reservations",
            "Reservations of path patterns by state.",
            "gauge",
            "state",
            count_states(reservation_states),
        ),
        Family::by(
            "maos_agents",
            "Agents by state.",
            "gauge",
            "state",
            by_agent_state,
        ),
        Family::by(
            "maos_channel_messages_total",
            "Messages sent on each channel (its last sequence number).",
            "counter",
            "channel",
            messages,
        ),
        Family::by(
            "maos_channel_unacked_messages",
            "Messages on each channel that someone still owes an acknowledgement of.",
            "gauge",
            "channel",
            unacked,
        ),
        Family::one(
            "maos_acks_overdue",
            "Acknowledgements past their deadline.",
            overdue,
        ),
    ];
    families.extend(forecast_families(ws));
    families.extend(journal_families(ws)?);
    Ok(families)
}

/// What the journal adds up to, kept in `reports/journal-tally.json` with how far it was
/// read, so that each `maos metrics` reads only what was journaled since (entries pruned
/// before they were read are not counted; a journal replaced by a restore is counted afresh).
#[derive(Debug, Default, Serialize, serde::Deserialize)]
struct Tally {
    segment: u64,
    offset: u64,
    /// The number of the last entry counted.
    last: u64,
    lock_wait: Histogram,
    claim_wait: Histogram,
    by_kind: BTreeMap<String, u64>,
    conflicts: u64,
}

impl Tally {
    fn path(ws: &Workspace) -> std::path::PathBuf {
        ws.dir().join("reports").join("journal-tally.json")
    }

    /// The tally saved, brought up to date with the journal and saved again.
    fn now(ws: &Workspace) -> Result<Tally, crate::store::StoreError> {
        let saved: Option<Tally> = crate::fs::read_if_exists(&Self::path(ws))?
            .and_then(|bytes| serde_json::from_slice(&bytes).ok());
        let head = journal::head(ws)?.map_or(0, |h| h.n);
        let mut tally = saved.filter(|t| t.last <= head).unwrap_or_default();
        let from = journal::Cursor {
            segment: tally.segment,
            offset: tally.offset,
        };
        let (entries, to) = journal::read_from(ws, from, &journal::Filter::default())?;
        if entries.is_empty() {
            return Ok(tally);
        }
        for e in &entries {
            let waited = e.event.data["waited_ms"].as_f64().map(|ms| ms / 1000.0);
            match (e.event.kind.as_str(), waited) {
                ("lock.acquired", Some(s)) => tally.lock_wait.observe(s),
                ("task.claimed", Some(s)) => tally.claim_wait.observe(s),
                _ => {}
            }
            if e.event.kind == "merge.refused" {
                tally.conflicts += e.event.data["conflicts"]
                    .as_array()
                    .map_or(0, |c| c.len() as u64);
            }
            *tally.by_kind.entry(e.event.kind.clone()).or_default() += 1;
            tally.last = e.n;
        }
        (tally.segment, tally.offset) = (to.segment, to.offset);
        // Derived, so a failed save only means the next call reads more.
        let _ = crate::fs::create_dir_all(&ws.dir().join("reports")).and_then(|()| {
            crate::atomic::write_replace(
                &ws.tmp_dir(),
                &Self::path(ws),
                &serde_json::to_vec(&tally).unwrap_or_default(),
                crate::atomic::Durability::Buffered,
            )
        });
        Ok(tally)
    }
}

/// What the journal says: waits as histograms, events counted by kind, merge conflicts.
fn journal_families(ws: &Workspace) -> Result<Vec<Family>, MetricsError> {
    let tally = Tally::now(ws)?;
    Ok(vec![
        Family::histogram(
            "maos_lock_wait_seconds",
            "How long each lock acquisition waited for the lock.",
            tally.lock_wait,
        ),
        Family::histogram(
            "maos_task_claim_wait_seconds",
            "How long each claimed task waited, since it last became ready, to be claimed.",
            tally.claim_wait,
        ),
        Family::by(
            "maos_events_total",
            "Journal entries by kind (lock.stolen, lock.broken, merge.run, merge.refused, hook.failed, …).",
            "counter",
            "kind",
            tally.by_kind.into_iter().map(|(k, n)| (k, n as f64)),
        ),
        Family {
            kind: "counter",
            ..Family::one(
                "maos_merge_conflicts_total",
                "Conflicting files in merges refused for conflicts.",
                tally.conflicts as usize,
            )
        },
    ])
}

/// The last merge forecast's branches and conflicting pairs (none before a forecast ran).
#[cfg(feature = "merge")]
fn forecast_families(ws: &Workspace) -> Vec<Family> {
    let Ok(Some(forecast)) = crate::merge::last_forecast(ws) else {
        return Vec::new();
    };
    vec![
        Family::one(
            "maos_merge_forecast_branches",
            "Branches in the last merge forecast.",
            forecast.branches.len(),
        ),
        Family::one(
            "maos_merge_forecast_conflicts",
            "Conflicting branch pairs in the last merge forecast.",
            forecast.conflicts.len(),
        ),
    ]
}

/// Without git there is no forecast.
#[cfg(not(feature = "merge"))]
fn forecast_families(_ws: &Workspace) -> Vec<Family> {
    Vec::new()
}

/// `families` in the Prometheus text exposition format (version 0.0.4).
pub fn exposition(families: &[Family]) -> String {
    let mut out = String::new();
    for family in families {
        out.push_str(&format!("# HELP {} {}\n", family.name, family.help));
        out.push_str(&format!("# TYPE {} {}\n", family.name, family.kind));
        if let Some(h) = &family.histogram {
            for (bound, n) in &h.buckets {
                out.push_str(&format!("{}_bucket{{le=\"{bound}\"}} {n}\n", family.name));
            }
            out.push_str(&format!(
                "{}_bucket{{le=\"+Inf\"}} {}\n",
                family.name, h.count
            ));
            out.push_str(&format!("{}_sum {}\n", family.name, h.sum));
            out.push_str(&format!("{}_count {}\n", family.name, h.count));
        }
        for (value_of_label, value) in &family.samples {
            match family.label {
                Some(label) => out.push_str(&format!(
                    "{}{{{label}=\"{}\"}} {value}\n",
                    family.name,
                    escape(value_of_label)
                )),
                None => out.push_str(&format!("{} {value}\n", family.name)),
            }
        }
    }
    out
}

/// A label value as the text format writes it: backslash, double quote and newline escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_escapes_label_values_and_types_each_family() {
        let families = [
            Family::one("maos_x", "An x.", 3),
            Family::by(
                "maos_y_total",
                "Ys.",
                "counter",
                "channel",
                [("a\"b\\c\nd".to_owned(), 2.0)],
            ),
        ];
        assert_eq!(
            exposition(&families),
            "# HELP maos_x An x.\n# TYPE maos_x gauge\nmaos_x 3\n\
             # HELP maos_y_total Ys.\n# TYPE maos_y_total counter\n\
             maos_y_total{channel=\"a\\\"b\\\\c\\nd\"} 2\n"
        );
    }
}
