//! Conflict forecast: which pairs of branches would conflict if merged now, and on which
//! files — so agents learn of a collision while they work. A pair or file not seen in the
//! previous forecast (`.maos/merge/forecast.json`) is announced on the `merge` topic.

use std::collections::BTreeSet;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{MergeCoordinator, MergeError, TOPIC, conflicted};
use crate::atomic::{self, Durability};
use crate::channel::{self, Draft};
use crate::fs;
use crate::git::GitContext;
use crate::record;
use crate::workspace::Workspace;

/// Two branches that would conflict.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PairConflict {
    /// One branch.
    pub a: String,
    /// The other.
    pub b: String,
    /// The conflicted files.
    pub files: Vec<String>,
}

/// The result of a forecast.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Forecast {
    /// The branches checked.
    pub branches: Vec<String>,
    /// Every conflicting pair.
    pub conflicts: Vec<PairConflict>,
    /// Pairs (with their new files) not in the previous forecast.
    #[serde(default)]
    pub new_conflicts: Vec<PairConflict>,
    /// Pairs skipped because they share no history.
    #[serde(default)]
    pub unrelated: Vec<(String, String)>,
    /// When it ran.
    pub checked_at: Timestamp,
}

fn forecast_path(ws: &Workspace) -> std::path::PathBuf {
    ws.dir().join("merge").join("forecast.json")
}

/// The last forecast saved, if any.
pub fn last(ws: &Workspace) -> Result<Option<Forecast>, MergeError> {
    let path = forecast_path(ws);
    match fs::read_if_exists(&path)? {
        Some(bytes) => Ok(Some(record::decode(&path, "merge forecast", &bytes)?)),
        None => Ok(None),
    }
}

/// Checks every pair of `branches` (none given: every local branch under `maos/`) with an
/// in-memory merge, saves the result, and announces new conflicts.
pub fn forecast(
    coordinator: &MergeCoordinator,
    branches: &[String],
    agent: &str,
) -> Result<Forecast, MergeError> {
    let branches = if branches.is_empty() {
        coordinator.agent_branches()?
    } else {
        branches.to_vec()
    };
    let repo = coordinator.repo();
    let mut commits = Vec::new();
    for name in &branches {
        commits.push(coordinator.commit(name)?);
    }
    let mut conflicts = Vec::new();
    let mut unrelated = Vec::new();
    for i in 0..commits.len() {
        for j in i + 1..commits.len() {
            let (a, b) = (&commits[i], &commits[j]);
            if repo.merge_base(a.id(), b.id()).is_err() {
                unrelated.push((branches[i].clone(), branches[j].clone()));
                continue;
            }
            let index = repo
                .merge_commits(a, b, None)
                .git(|| format!("merge `{}` and `{}` in memory", branches[i], branches[j]))?;
            let files: BTreeSet<String> = conflicted(&index)?.into_iter().map(|(_, p)| p).collect();
            if files.is_empty() {
                continue;
            }
            conflicts.push(PairConflict {
                a: branches[i].clone(),
                b: branches[j].clone(),
                files: files.into_iter().collect(),
            });
        }
    }
    let ws = &coordinator.ws;
    let path = forecast_path(ws);
    // A broken previous forecast only means every conflict counts as new.
    let previous = last(ws).ok().flatten();
    let new_conflicts: Vec<PairConflict> = conflicts
        .iter()
        .filter_map(|c| {
            let seen: BTreeSet<&String> = previous
                .iter()
                .flat_map(|p| &p.conflicts)
                .filter(|p| p.a == c.a && p.b == c.b)
                .flat_map(|p| &p.files)
                .collect();
            let files: Vec<String> = c
                .files
                .iter()
                .filter(|f| !seen.contains(f))
                .cloned()
                .collect();
            (!files.is_empty()).then(|| PairConflict {
                a: c.a.clone(),
                b: c.b.clone(),
                files,
            })
        })
        .collect();
    let result = Forecast {
        branches,
        conflicts,
        new_conflicts,
        unrelated,
        checked_at: Timestamp::now(),
    };
    fs::create_dir_all(&ws.dir().join("merge"))?;
    atomic::write_replace(
        &ws.tmp_dir(),
        &path,
        &record::encode(&result),
        Durability::Buffered,
    )?;
    if !result.new_conflicts.is_empty() {
        let summary = result
            .new_conflicts
            .iter()
            .map(|c| format!("{} × {}: {}", c.a, c.b, c.files.join(", ")))
            .collect::<Vec<_>>()
            .join("; ");
        channel::broadcast(
            ws,
            TOPIC,
            agent,
            Draft::new(json!({
                "event": "conflict-forecast",
                "conflicts": result.new_conflicts,
                "summary": format!("new conflicts ahead: {summary}"),
            }))
            .kind("conflict-forecast")
            .priority(crate::Priority::High),
        )?;
    }
    Ok(result)
}
