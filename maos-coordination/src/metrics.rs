//! The workspace's numbers for a dashboard (`maos metrics`): tasks by status, the ready
//! queue, locks and reservations by state, agents by state, messages and unacknowledged
//! messages per channel, overdue acknowledgements, and the last merge forecast — in the
//! Prometheus text exposition format (or as JSON), read from the records as they are now.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::agents::{AgentState, Registry};
use crate::channel::{self, Channel};
use crate::error::ErrorKind;
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
}

impl MetricsError {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            MetricsError::Task(e) => e.kind(),
            MetricsError::Lock(e) => e.kind(),
            MetricsError::Agent(e) => e.kind(),
            MetricsError::Channel(e) => e.kind(),
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
}

impl Family {
    fn one(name: &'static str, help: &'static str, value: usize) -> Self {
        Self {
            name,
            help,
            kind: "gauge",
            label: None,
            samples: BTreeMap::from([(String::new(), value as f64)]),
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
    Ok(families)
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
