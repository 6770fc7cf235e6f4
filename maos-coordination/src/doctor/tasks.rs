//! The task checks of `maos doctor`: damage that still parses.
//!
//! A record can be valid JSON and a valid task and still be wrong: a field name misspelled by
//! hand (`"dependecies"` is silently ignored by the decoder, so the dependency is lost), a
//! dependency on a task that does not exist (deleted, or quarantined by `--fix`), or a
//! dependency that was cancelled — each leaves a task that can never become ready. These are
//! reported with what to do; nothing is changed for them automatically.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

use super::{Problem, Remedy};
use crate::task::{Listing, Status, Task};

/// Field names in the task record at `path` that no task field has, each with the nearest
/// known name.
pub(super) fn unknown_fields(path: &Path, task: &Task) -> Vec<(String, Option<String>)> {
    let Ok(Value::Object(raw)) = crate::fs::read(path)
        .map_err(|_| ())
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).map_err(|_| ()))
    else {
        return Vec::new();
    };
    let Ok(Value::Object(known)) = serde_json::to_value(task) else {
        return Vec::new();
    };
    raw.keys()
        .filter(|k| !known.contains_key(*k))
        .map(|k| {
            let nearest = known
                .keys()
                .map(|candidate| (edit_distance(k, candidate), candidate))
                .filter(|(d, _)| *d <= 3)
                .min()
                .map(|(_, c)| c.clone());
            (k.clone(), nearest)
        })
        .collect()
}

/// Every unknown field, and every task whose dependencies can never all complete.
pub(super) fn check(
    listing: &Listing,
    path_of: impl Fn(&str) -> std::path::PathBuf,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    let by_id: HashMap<&str, &Task> = listing.tasks.iter().map(|t| (t.id.as_str(), t)).collect();
    for task in &listing.tasks {
        let path = path_of(&task.id);
        for (field, nearest) in unknown_fields(&path, task) {
            let hint = nearest.map_or(String::new(), |n| format!(" (did you mean `{n}`?)"));
            problems.push(Problem {
                path: path.clone(),
                problem: format!(
                    "unknown field `{field}`{hint}: MAOS ignores it, so whatever it says has no effect"
                ),
                remedy: Remedy::Manual,
                resource: None,
            });
        }
        if task.status.is_final() {
            continue;
        }
        for dep in &task.dependencies {
            let why = match by_id.get(dep.as_str()) {
                None => "which does not exist (deleted or quarantined)",
                Some(d) if d.status == Status::Cancelled => "which was cancelled",
                Some(_) => continue,
            };
            problems.push(Problem {
                path: path.clone(),
                problem: format!(
                    "task `{}` depends on `{dep}`, {why}: it can never become ready; remove the dependency with `maos task update {} --remove-dep {dep}` (or cancel it)",
                    task.id, task.id
                ),
                remedy: Remedy::Manual,
                resource: None,
            });
        }
    }
    problems
}

/// The dependents of `id` in `listing` that are not finished.
pub(super) fn waiting_on<'a>(listing: &'a Listing, id: &str) -> Vec<&'a str> {
    listing
        .tasks
        .iter()
        .filter(|t| !t.status.is_final() && t.dependencies.iter().any(|d| d == id))
        .map(|t| t.id.as_str())
        .collect()
}

/// Levenshtein distance, for "did you mean".
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let current = row[j + 1];
            row[j + 1] = if ca == *cb {
                previous
            } else {
                1 + previous.min(row[j]).min(current)
            };
            previous = current;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::edit_distance;

    #[test]
    fn nearest_names_are_a_few_edits_away() {
        assert_eq!(edit_distance("dependecies", "dependencies"), 1);
        assert_eq!(edit_distance("prority", "priority"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
