//! Who changed what on one side of a merge: the files each commit since the merge base
//! touched, and the agent behind each commit.
//!
//! **Attribution rule**, in this order: the commit's author name when it is a valid agent id
//! (agents commit under their own id); else a `Maos-Agent: <id>` trailer in the message; else
//! the agent of the branch when it is named `maos/<agent>/…`; else the author name as it is.

use std::collections::BTreeMap;

use git2::{Commit, Oid, Repository, Sort};

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
/// files each changed against its first parent and the agent behind it.
pub fn side(
    repo: &Repository,
    tip: Oid,
    base: Option<Oid>,
    branch: &str,
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
        let agent = agent_of(&commit, branch);
        let tree = commit.tree()?;
        let parent_tree = match commit.parent(0) {
            Ok(parent) => Some(parent.tree()?),
            Err(_) => None,
        };
        let mut diff = repo.diff_tree_to_tree(parent_tree.as_ref(), Some(&tree), None)?;
        diff.find_similar(None)?;
        for delta in diff.deltas() {
            for file in [delta.old_file(), delta.new_file()] {
                let Some(path) = file.path().and_then(|p| p.to_str()) else {
                    continue;
                };
                let agents = side.files.entry(path.to_owned()).or_default();
                if !agents.contains(&agent) {
                    agents.push(agent.clone());
                }
            }
        }
    }
    Ok(side)
}

/// The agent behind `commit` on `branch`, by the rule in the module docs.
pub fn agent_of(commit: &Commit<'_>, branch: &str) -> String {
    let author = commit.author();
    let author_name = author.name().unwrap_or("").trim().to_owned();
    if name::validate(NameKind::Agent, &author_name).is_ok() {
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

/// `maos/<agent>/…` → the agent.
pub fn branch_agent(branch: &str) -> Option<String> {
    let rest = branch.strip_prefix("maos/")?;
    let agent = rest.split('/').next()?;
    name::validate(NameKind::Agent, agent)
        .is_ok()
        .then(|| agent.to_owned())
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
        assert_eq!(branch_agent("feature/x"), None);
    }
}
