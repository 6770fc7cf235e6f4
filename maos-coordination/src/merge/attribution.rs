//! Who changed what on one side of a merge: the files each commit since the merge base
//! touched, and the agent behind each commit.
//!
//! **Attribution rule**, in this order: the commit's author name when it is a registered agent
//! (agents that commit under their own id); else a `Maos-Agent: <id>` trailer in the message;
//! else the agent of the branch when it is named `maos/<agent>/…` (agents that commit under
//! their person's git identity, as coding agents usually do); else the author name as it is.

use std::collections::{BTreeMap, BTreeSet};

use git2::{Commit, ObjectType, Oid, Repository, Sort, Tree};

use crate::name::{self, NameKind};

/// The changes of one side since the merge base.
#[derive(Debug, Default)]
pub struct Side {
    /// Each file touched, with the agents who touched it, most recent first.
    pub files: BTreeMap<String, Vec<String>>,
}

impl Side {
    /// Every agent that touched `path` on this side.
    pub fn agents(&self, path: &str) -> &[String] {
        self.files.get(path).map_or(&[], Vec::as_slice)
    }
}

/// Walks the commits reachable from `tip` but not from `base`, newest first, recording the
/// files each changed and the agent behind it.
pub fn side(
    repo: &Repository,
    tip: Oid,
    base: Option<Oid>,
    branch: &str,
    is_agent: &dyn Fn(&str) -> bool,
) -> Result<Side, git2::Error> {
    let mut walk = repo.revwalk()?;
    walk.set_sorting(Sort::TOPOLOGICAL | Sort::TIME)?;
    walk.push(tip)?;
    if let Some(base) = base {
        walk.hide(base)?;
    }
    let mut side = Side::default();
    for oid in walk {
        let commit = repo.find_commit(oid?)?;
        let agent = agent_of(&commit, branch, is_agent);
        let tree = commit.tree()?;
        // A merge commit brings changes whose own commits are walked too; it counts only for
        // what differs from every parent (a conflict resolution).
        let mut changed: Option<BTreeSet<String>> = None;
        for parent in commit.parents() {
            let mut paths = Vec::new();
            changed_paths(repo, Some(&parent.tree()?), Some(&tree), "", &mut paths)?;
            let paths: BTreeSet<String> = paths.into_iter().collect();
            changed = Some(match changed {
                None => paths,
                Some(before) => before.intersection(&paths).cloned().collect(),
            });
        }
        let changed = match changed {
            Some(changed) => changed,
            None => {
                let mut paths = Vec::new();
                changed_paths(repo, None, Some(&tree), "", &mut paths)?;
                paths.into_iter().collect()
            }
        };
        for path in changed {
            let agents = side.files.entry(path).or_default();
            if !agents.contains(&agent) {
                agents.push(agent.clone());
            }
        }
    }
    Ok(side)
}

/// The paths of the files that differ between two trees. Subtrees with the same id are
/// skipped without being read, so a commit touching one file of a large tree costs a few
/// tree reads (libgit2's diff walks every entry of both trees). A rename shows as its old
/// and new paths.
fn changed_paths(
    repo: &Repository,
    old: Option<&Tree<'_>>,
    new: Option<&Tree<'_>>,
    prefix: &str,
    out: &mut Vec<String>,
) -> Result<(), git2::Error> {
    let entries = |tree: Option<&Tree<'_>>| -> BTreeMap<Vec<u8>, (Oid, Option<ObjectType>)> {
        tree.into_iter()
            .flat_map(|t| t.iter())
            .map(|e| (e.name_bytes().to_vec(), (e.id(), e.kind())))
            .collect()
    };
    let (old_entries, new_entries) = (entries(old), entries(new));
    let names: BTreeSet<&Vec<u8>> = old_entries.keys().chain(new_entries.keys()).collect();
    for name in names {
        let (before, after) = (old_entries.get(name), new_entries.get(name));
        if before.map(|e| e.0) == after.map(|e| e.0) {
            continue;
        }
        let path = format!("{prefix}{}", String::from_utf8_lossy(name));
        let subtree =
            |entry: Option<&(Oid, Option<ObjectType>)>| -> Result<Option<Tree<'_>>, git2::Error> {
                match entry {
                    Some((id, Some(ObjectType::Tree))) => repo.find_tree(*id).map(Some),
                    _ => Ok(None),
                }
            };
        let (old_sub, new_sub) = (subtree(before)?, subtree(after)?);
        if old_sub.is_some() || new_sub.is_some() {
            changed_paths(
                repo,
                old_sub.as_ref(),
                new_sub.as_ref(),
                &format!("{path}/"),
                out,
            )?;
        }
        let is_file = |entry: Option<&(Oid, Option<ObjectType>)>| {
            entry.is_some_and(|(_, kind)| *kind != Some(ObjectType::Tree))
        };
        if is_file(before) || is_file(after) {
            out.push(path);
        }
    }
    Ok(())
}

/// The agent behind `commit` on `branch`, by the rule in the module docs; `is_agent` says
/// whether a name is a registered agent.
pub fn agent_of(commit: &Commit<'_>, branch: &str, is_agent: &dyn Fn(&str) -> bool) -> String {
    let author = commit.author();
    let author_name = author.name().unwrap_or("").trim().to_owned();
    if name::validate(NameKind::Agent, &author_name).is_ok() && is_agent(&author_name) {
        return author_name;
    }
    if let Some(agent) = commit.message().and_then(trailer_agent) {
        return agent;
    }
    if let Some(agent) = branch_agent(branch) {
        return agent;
    }
    if author_name.is_empty() {
        "unknown".to_owned()
    } else {
        author_name
    }
}

/// The value of a `Maos-Agent:` trailer line, if valid.
fn trailer_agent(message: &str) -> Option<String> {
    message.lines().rev().find_map(|line| {
        let value = line.trim().strip_prefix("Maos-Agent:")?.trim();
        name::validate(NameKind::Agent, value)
            .is_ok()
            .then(|| value.to_owned())
    })
}

/// `maos/<agent>/…` → the agent (written as its file name, `maos/%alice/work` for `Alice`;
/// a branch named by hand may spell it plainly).
pub fn branch_agent(branch: &str) -> Option<String> {
    let rest = branch.strip_prefix("maos/")?;
    let segment = rest.split('/').next()?;
    let agent = name::from_file_name(segment).unwrap_or_else(|| segment.to_owned());
    name::validate(NameKind::Agent, &agent)
        .is_ok()
        .then_some(agent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailers_and_branch_names_name_agents() {
        assert_eq!(
            trailer_agent("fix\n\nMaos-Agent: coder-2\n").as_deref(),
            Some("coder-2")
        );
        assert_eq!(trailer_agent("fix\n\nMaos-Agent: ../x\n"), None);
        assert_eq!(
            branch_agent("maos/coder-1/parser").as_deref(),
            Some("coder-1")
        );
        assert_eq!(branch_agent("maos/%coder/work").as_deref(), Some("Coder"));
        assert_eq!(branch_agent("maos/Coder/fix").as_deref(), Some("Coder"));
        assert_eq!(branch_agent("feature/x"), None);
    }
}
