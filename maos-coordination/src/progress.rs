//! Progress reports over the tasks: totals, completion, the critical path, what blocks what,
//! and a Mermaid gantt chart drawn from the tasks' real start and finish times.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::PathBuf;

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use crate::atomic::{self, Durability};
use crate::fs::{self, FsError};
use crate::pictures::mermaid_id;
use crate::record;
use crate::record::RecordError;
use crate::task::{Blocker, Listing, Status, Task, TaskFacts, critical_path, unfinished_deps};
use crate::workspace::Workspace;

/// What the tasks add up to.
#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    /// When the report was made.
    pub generated_at: Timestamp,
    /// How many tasks there are (readable ones).
    pub total: usize,
    /// Count per status (every status, zeros included).
    pub by_status: BTreeMap<&'static str, usize>,
    /// Per assignee (`unassigned` for none): count per status.
    pub by_assignee: BTreeMap<String, BTreeMap<&'static str, usize>>,
    /// Per tag: count per status.
    pub by_tag: BTreeMap<String, BTreeMap<&'static str, usize>>,
    /// Completed over all tasks that are not cancelled, in percent (one decimal).
    pub completion_percentage: f64,
    /// The longest chain of unfinished dependent tasks, first to do first.
    pub critical_path: Vec<String>,
    /// The same chain with titles and statuses.
    pub critical_path_tasks: Vec<PathStep>,
    /// Every blocked task and what blocks it.
    pub blocked: Vec<BlockedTask>,
    /// Task files that could not be read (path and problem).
    pub broken_files: Vec<String>,
}

/// One task of the critical path.
#[derive(Debug, Clone, Serialize)]
pub struct PathStep {
    /// Its id.
    pub id: String,
    /// Its title.
    pub title: String,
    /// Its status.
    pub status: Status,
    /// Who has it.
    pub assignee: Option<String>,
}

/// A blocked task and why.
#[derive(Debug, Clone, Serialize)]
pub struct BlockedTask {
    /// Its id.
    pub id: String,
    /// Its title.
    pub title: String,
    /// Dependencies that are not completed.
    pub waiting_for: Vec<Blocker>,
    /// The reason given when it was blocked by hand.
    pub reason: Option<String>,
}

/// The report over `listing`.
pub fn report(listing: &Listing) -> Progress {
    report_over(&listing.tasks, &listing.skipped)
}

/// The report over `tasks` — records, or the index's summaries — and the files that could not
/// be read.
pub fn report_over<T: TaskFacts>(tasks: &[T], skipped: &[RecordError]) -> Progress {
    let statuses: HashMap<&str, Status> = tasks.iter().map(|t| (t.id(), t.status())).collect();
    let zeros = || -> BTreeMap<&'static str, usize> {
        Status::ALL.iter().map(|s| (s.as_str(), 0)).collect()
    };
    let mut by_status = zeros();
    let mut by_assignee: BTreeMap<&str, BTreeMap<&'static str, usize>> = BTreeMap::new();
    let mut by_tag: BTreeMap<&str, BTreeMap<&'static str, usize>> = BTreeMap::new();
    for task in tasks {
        let status = task.status().as_str();
        *by_status.entry(status).or_default() += 1;
        let who = task.assignee().unwrap_or("unassigned");
        *by_assignee
            .entry(who)
            .or_default()
            .entry(status)
            .or_default() += 1;
        for tag in task.tags() {
            *by_tag.entry(tag).or_default().entry(status).or_default() += 1;
        }
    }
    let owned = |counts: BTreeMap<&str, _>| {
        counts
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect::<BTreeMap<String, _>>()
    };
    let (by_assignee, by_tag) = (owned(by_assignee), owned(by_tag));
    let completed = by_status[Status::Completed.as_str()];
    let counted = tasks.len() - by_status[Status::Cancelled.as_str()];
    let completion_percentage = if counted == 0 {
        if tasks.is_empty() { 0.0 } else { 100.0 }
    } else {
        (completed as f64 * 1000.0 / counted as f64).round() / 10.0
    };
    let path = critical_path(
        tasks
            .iter()
            .filter(|t| !t.status().is_final())
            .map(|t| (t.id(), t.dependencies())),
    );
    let place: HashMap<&str, usize> = path
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    let mut steps: Vec<Option<PathStep>> = vec![None; path.len()];
    for t in tasks {
        if let Some(&i) = place.get(t.id()) {
            steps[i] = Some(PathStep {
                id: t.id().to_owned(),
                title: t.title().to_owned(),
                status: t.status(),
                assignee: t.assignee().map(str::to_owned),
            });
        }
    }
    let critical_path_tasks = steps.into_iter().flatten().collect();
    let blocked = tasks
        .iter()
        .filter(|t| t.status() == Status::Blocked)
        .map(|t| BlockedTask {
            id: t.id().to_owned(),
            title: t.title().to_owned(),
            waiting_for: unfinished_deps(t, &statuses).collect(),
            reason: t.blocked_reason().map(str::to_owned),
        })
        .collect();
    Progress {
        generated_at: Timestamp::now(),
        total: tasks.len(),
        by_status,
        by_assignee,
        by_tag,
        completion_percentage,
        critical_path: path,
        critical_path_tasks,
        blocked,
        broken_files: skipped.iter().map(ToString::to_string).collect(),
    }
}

impl Progress {
    /// The statuses that have tasks, with their counts: "blocked 1, completed 3".
    pub fn status_counts(&self) -> String {
        self.by_status
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(status, n)| format!("{status} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Writes the report to `.maos/reports/progress.json`; returns the path.
pub fn save(ws: &Workspace, progress: &Progress) -> Result<PathBuf, FsError> {
    let dir = ws.dir().join("reports");
    fs::create_dir_all(&dir)?;
    let path = dir.join("progress.json");
    atomic::write_replace(
        &ws.tmp_dir(),
        &path,
        &record::encode(progress),
        Durability::Buffered,
    )?;
    Ok(path)
}

/// A text progress bar: `[#########-----------] 45.0%`.
pub fn bar(percentage: f64, width: usize) -> String {
    let filled = ((percentage / 100.0) * width as f64)
        .round()
        .clamp(0.0, width as f64) as usize;
    format!(
        "[{}{}] {percentage:.1}%",
        "#".repeat(filled),
        "-".repeat(width - filled)
    )
}

/// A Mermaid `gantt` chart: finished work at its real start and finish, work in progress from
/// its start, and unstarted work drawn after its dependencies with the median duration of the
/// finished tasks (one hour when none finished). Critical-path tasks are marked `crit`.
pub fn gantt(listing: &Listing, now: Timestamp) -> String {
    let finished: Vec<SignedDuration> = listing
        .tasks
        .iter()
        .filter_map(|t| Some(t.completed_at?.duration_since(t.started_at?)))
        .filter(|d| d.is_positive())
        .collect();
    let estimate = median(finished).unwrap_or(SignedDuration::from_hours(1));
    let estimate_minutes = (estimate.as_secs() / 60).max(1);
    let critical: HashSet<String> = listing.critical_path().into_iter().collect();
    let drawn: Vec<&Task> = dependencies_first(listing)
        .into_iter()
        .filter(|t| t.status != Status::Cancelled)
        .collect();
    let drawn_ids: HashSet<&str> = drawn.iter().map(|t| t.id.as_str()).collect();
    let mut sections: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for task in &drawn {
        let mut tags = Vec::new();
        match task.status {
            Status::Completed => tags.push("done".to_owned()),
            Status::InProgress | Status::Review => tags.push("active".to_owned()),
            _ => {}
        }
        if critical.contains(&task.id) || task.status == Status::Failed {
            tags.push("crit".to_owned());
        }
        tags.push(mermaid_id(&task.id));
        let timing = match (task.started_at, task.completed_at) {
            (Some(start), Some(end)) if task.status == Status::Completed => {
                format!(
                    "{}, {}",
                    mermaid_time(start),
                    mermaid_time(end.max(start + SignedDuration::from_secs(1)))
                )
            }
            (Some(start), _) if task.status.is_held() || task.status == Status::Failed => {
                let end = if task.status == Status::Failed {
                    task.updated_at
                } else {
                    (start + estimate).max(now)
                };
                format!(
                    "{}, {}",
                    mermaid_time(start),
                    mermaid_time(end.max(start + SignedDuration::from_secs(1)))
                )
            }
            _ => {
                let after: Vec<String> = task
                    .dependencies
                    .iter()
                    .filter(|d| drawn_ids.contains(d.as_str()))
                    .map(|d| mermaid_id(d))
                    .collect();
                if after.is_empty() {
                    format!("{}, {estimate_minutes}m", mermaid_time(now))
                } else {
                    format!("after {}, {estimate_minutes}m", after.join(" "))
                }
            }
        };
        let section = task.assignee.clone().unwrap_or_else(|| "unassigned".into());
        sections.entry(section).or_default().push(format!(
            "    {} ({}) :{}, {timing}",
            mermaid_text(&task.title),
            task.id,
            tags.join(", ")
        ));
    }
    let mut chart = String::from(
        "gantt\n    title MAOS tasks\n    dateFormat YYYY-MM-DDTHH:mm:ss\n    axisFormat %m-%d %H:%M\n",
    );
    for (section, lines) in sections {
        let _ = writeln!(chart, "    section {}", mermaid_text(&section));
        for line in lines {
            let _ = writeln!(chart, "{line}");
        }
    }
    chart
}

/// Tasks ordered so that each comes after its dependencies (Kahn's algorithm; tasks caught in
/// a hand-made cycle come last, in id order).
fn dependencies_first(listing: &Listing) -> Vec<&Task> {
    let by_id: HashMap<&str, &Task> = listing.tasks.iter().map(|t| (t.id.as_str(), t)).collect();
    let mut waiting: HashMap<&str, usize> = HashMap::new();
    let mut dependents: HashMap<&str, Vec<&str>> = HashMap::new();
    for task in &listing.tasks {
        let deps: Vec<&str> = task
            .dependencies
            .iter()
            .map(String::as_str)
            .filter(|d| by_id.contains_key(d))
            .collect();
        waiting.insert(task.id.as_str(), deps.len());
        for dep in deps {
            dependents.entry(dep).or_default().push(task.id.as_str());
        }
    }
    let mut ready: Vec<&str> = listing
        .tasks
        .iter()
        .map(|t| t.id.as_str())
        .filter(|id| waiting[id] == 0)
        .collect();
    ready.reverse();
    let mut order = Vec::new();
    let mut placed = HashSet::new();
    while let Some(id) = ready.pop() {
        order.push(by_id[id]);
        placed.insert(id);
        for &next in dependents.get(id).into_iter().flatten() {
            if let Some(n) = waiting.get_mut(next) {
                *n -= 1;
                if *n == 0 {
                    ready.push(next);
                }
            }
        }
    }
    order.extend(
        listing
            .tasks
            .iter()
            .filter(|t| !placed.contains(t.id.as_str())),
    );
    order
}

fn median(mut values: Vec<SignedDuration>) -> Option<SignedDuration> {
    values.sort();
    values.get(values.len() / 2).copied()
}

fn mermaid_time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S").to_string()
}

/// Text without the characters that end a Mermaid gantt field or line.
fn mermaid_text(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            ':' | ';' | '#' => ' ',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::{NewTask, Pick, Tasks};

    #[test]
    fn the_report_counts_and_the_chart_draws_every_task() {
        let dir = tempfile::tempdir().unwrap();
        let ws = Workspace::init(dir.path()).unwrap().workspace;
        let tasks = Tasks::new(&ws);
        let new = |title: &str, deps: Vec<String>, tags: Vec<String>| {
            tasks
                .create(
                    "p",
                    NewTask {
                        dependencies: deps,
                        tags,
                        ..NewTask::new(title)
                    },
                    None,
                )
                .unwrap()
                .id
        };
        let a = new("design: schema", vec![], vec!["db".into()]);
        let b = new("build", vec![a.clone()], vec!["db".into()]);
        let c = new("ship", vec![b.clone()], vec![]);
        let d = new("docs", vec![], vec![]);
        tasks.claim("ann", Pick::Named(&a)).unwrap();
        tasks
            .set_status(&a, "ann", Status::Completed, None)
            .unwrap();
        tasks.claim("bob", Pick::Named(&d)).unwrap();
        let listing = tasks.list().unwrap();
        let progress = report(&listing);
        assert_eq!(progress.total, 4);
        assert_eq!(progress.by_status["completed"], 1);
        assert_eq!(progress.by_status["blocked"], 1);
        assert_eq!(progress.completion_percentage, 25.0);
        assert_eq!(progress.critical_path, [b.clone(), c.clone()]);
        assert_eq!(progress.by_tag["db"]["completed"], 1);
        assert_eq!(progress.by_assignee["bob"]["in_progress"], 1);
        assert_eq!(progress.blocked.len(), 1);
        assert_eq!(progress.blocked[0].waiting_for[0].id, b);
        let chart = gantt(&listing, Timestamp::now());
        assert!(chart.starts_with("gantt\n"), "{chart}");
        assert!(
            chart.contains(&format!("design  schema ({a}) :done, {}", mermaid_id(&a))),
            "{chart}"
        );
        assert!(
            chart.contains(&format!(
                ":crit, {}, after {}",
                mermaid_id(&c),
                mermaid_id(&b)
            )),
            "{chart}"
        );
        assert!(chart.contains("section bob"), "{chart}");
        assert_eq!(bar(25.0, 20), "[#####---------------] 25.0%");
    }
}
