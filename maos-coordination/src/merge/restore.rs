//! Putting work trees back after a merge that could not land, without ever overwriting an
//! edit made there meanwhile.
//!
//! `run` updates every work tree that has the target checked out before it moves the target
//! ref. If a later work tree or the ref move fails, the work trees already updated go back to
//! the target's old tree — file by file, and only where a file still holds exactly what the
//! merge wrote. A file someone edited in between is left as it is and named in the error.

use std::path::{Path, PathBuf};

use git2::{ObjectType, Oid, Repository, build::CheckoutBuilder};

use crate::fs;

/// What putting one work tree back did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Restored {
    /// The work tree.
    pub path: PathBuf,
    /// Files left as they are: edited after the merge wrote them (or unreadable).
    pub kept: Vec<String>,
}

/// Puts each work tree in `updated` back from `new_tree` to `old_tree`, skipping files that no
/// longer hold what `new_tree` has.
pub(super) fn restore(
    updated: &[(PathBuf, &Repository)],
    old_tree: Oid,
    new_tree: Oid,
) -> Vec<Restored> {
    updated
        .iter()
        .map(|(path, repo)| Restored {
            path: path.clone(),
            kept: restore_one(path, repo, old_tree, new_tree)
                .unwrap_or_else(|e| vec![format!("(every file: {e})")]),
        })
        .collect()
}

fn restore_one(
    root: &Path,
    repo: &Repository,
    old_tree: Oid,
    new_tree: Oid,
) -> Result<Vec<String>, git2::Error> {
    let old = repo.find_tree(old_tree)?;
    let new = repo.find_tree(new_tree)?;
    let diff = repo.diff_tree_to_tree(Some(&old), Some(&new), None)?;
    let mut kept = Vec::new();
    let mut index = repo.index()?;
    for delta in diff.deltas() {
        let Some(file) = delta.new_file().path().or(delta.old_file().path()) else {
            continue;
        };
        let name = file.to_string_lossy().into_owned();
        let on_disk = root.join(file);
        let written = delta.new_file();
        let untouched = match std::fs::read(&on_disk) {
            Ok(bytes) => {
                written.exists() && Oid::hash_object(ObjectType::Blob, &bytes)? == written.id()
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => !written.exists(),
            Err(_) => false,
        };
        if !untouched {
            kept.push(name);
            continue;
        }
        if delta.old_file().exists() {
            // This one path, which holds exactly what the merge wrote: safe to force.
            let mut checkout = CheckoutBuilder::new();
            checkout.force().path(file);
            repo.checkout_tree(old.as_object(), Some(&mut checkout))?;
        } else if fs::remove_file_if_exists(&on_disk).is_ok() {
            index.remove_path(file)?;
        } else {
            kept.push(name);
        }
    }
    index.write()?;
    Ok(kept)
}

/// "`main` still points to 1a2b3c4; put back: /repo; left as they are (edited after the
/// merge wrote them): /repo: src/a.rs".
pub(super) fn describe(target: &str, old_commit: Oid, restored: &[Restored]) -> String {
    let short = old_commit.to_string();
    let mut text = format!(
        "`{target}` still points to {}",
        &short[..short.len().min(10)]
    );
    let clean: Vec<String> = restored
        .iter()
        .filter(|r| r.kept.is_empty())
        .map(|r| r.path.display().to_string())
        .collect();
    if !clean.is_empty() {
        text.push_str(&format!(
            "; work trees put back to it: {}",
            clean.join(", ")
        ));
    }
    for r in restored.iter().filter(|r| !r.kept.is_empty()) {
        text.push_str(&format!(
            "; in {} these files were edited after the merge wrote them and were left as they are (the rest was put back): {}",
            r.path.display(),
            r.kept.join(", ")
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit_files(repo: &Repository, files: &[(&str, &str)]) -> Oid {
        let mut builder = repo.treebuilder(None).unwrap();
        for (name, content) in files {
            let blob = repo.blob(content.as_bytes()).unwrap();
            builder.insert(name, blob, 0o100644).unwrap();
        }
        builder.write().unwrap()
    }

    #[test]
    fn an_edit_made_after_the_merge_wrote_a_file_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(dir.path()).unwrap();
        let old = commit_files(&repo, &[("a.txt", "old a\n"), ("b.txt", "old b\n")]);
        let new = commit_files(
            &repo,
            &[
                ("a.txt", "new a\n"),
                ("b.txt", "new b\n"),
                ("c.txt", "new c\n"),
            ],
        );
        let force = |tree: Oid| {
            let tree = repo.find_tree(tree).unwrap();
            repo.checkout_tree(tree.as_object(), Some(CheckoutBuilder::new().force()))
                .unwrap();
        };
        force(old);
        force(new); // what the merge wrote
        std::fs::write(dir.path().join("b.txt"), "my edit\n").unwrap();
        let restored = restore(&[(dir.path().to_owned(), &repo)], old, new);
        assert_eq!(restored[0].kept, ["b.txt"]);
        let read = |f: &str| std::fs::read_to_string(dir.path().join(f)).ok();
        assert_eq!(read("a.txt").as_deref(), Some("old a\n"));
        assert_eq!(
            read("b.txt").as_deref(),
            Some("my edit\n"),
            "the edit survives"
        );
        assert_eq!(read("c.txt"), None, "a file the merge added is gone again");
        let text = describe("main", old, &restored);
        assert!(
            text.contains("b.txt") && text.contains("left as they are"),
            "{text}"
        );
    }
}
