//! The file-name check of `maos doctor`: files named before names were escaped.
//!
//! MAOS writes a name's file as [`name::file_name`] (`Alice` → `%alice.json`), so names that
//! differ only in case never share a file on a case-insensitive file system. A file or
//! directory named with upper-case letters (written by an older MAOS, or by hand) is not
//! found under its name any more; `--fix` renames it to its escaped form, never over an
//! existing file.

use std::path::{Path, PathBuf};

use super::{Problem, Remedy};
use crate::fs::{self, FsError};
use crate::name;
use crate::workspace::Workspace;

/// Where names become file names, as (directory, depth of named entries below it).
fn named_places(ws: &Workspace) -> Vec<(PathBuf, usize)> {
    let dir = ws.dir();
    let locks = ws.locks_dir();
    vec![
        (dir.join("agents"), 1),
        (dir.join("tasks"), 1),
        (dir.join("runs"), 1),
        (locks.clone(), 1),
        (locks.join("waits"), 1),
        (locks.join("interests"), 2),
        (ws.cursors_dir(), 3),
        (ws.channels_dir(), 1),
        (ws.channels_dir().join(crate::channel::BROADCAST), 1),
    ]
}

/// Every entry in a place where names become file names whose name MAOS would now write
/// differently.
pub(super) fn check(ws: &Workspace, problems: &mut Vec<Problem>) -> Result<(), FsError> {
    for (dir, depth) in named_places(ws) {
        walk(&dir, depth, problems)?;
    }
    Ok(())
}

fn walk(dir: &Path, depth: usize, problems: &mut Vec<Problem>) -> Result<(), FsError> {
    for entry in fs::list_names(dir)? {
        let path = dir.join(&entry);
        if let Some(fixed) = name::legacy_file_name_fix(&entry) {
            problems.push(Problem {
                problem: format!(
                    "named with upper-case letters, which a case-insensitive file system cannot tell from their lower-case twins; MAOS now names it `{fixed}` and does not see it under this name"
                ),
                path,
                remedy: Remedy::Rename,
                resource: None,
            });
        } else if depth > 1 && path.is_dir() && !entry.starts_with('.') {
            walk(&path, depth - 1, problems)?;
        }
    }
    Ok(())
}

/// Renames a legacy file or directory to its escaped form; refuses to replace anything.
pub(super) fn rename(path: &Path) -> Result<String, FsError> {
    let Some(fixed) = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(name::legacy_file_name_fix)
    else {
        return Ok("left alone: its name needs no change".into());
    };
    let target = path.with_file_name(&fixed);
    if std::fs::symlink_metadata(&target).is_ok() {
        return Ok(format!(
            "left for you: `{fixed}` exists too; merge the two by hand"
        ));
    }
    #[expect(
        clippy::disallowed_methods,
        reason = "a rename in place of a whole file or directory; the target was checked absent"
    )]
    std::fs::rename(path, &target).map_err(|e| FsError::new("rename", path, e))?;
    Ok(format!("renamed to {fixed}"))
}
