//! Moving a broken file out of the way without losing it.
//!
//! A file that cannot be read as what it should be is never deleted: it moves to
//! `.maos/quarantine/<its path relative to .maos/>`, and a `<name>.why` note beside it says
//! what was wrong, who moved it and when. A person can read it, repair it and move it back.
//! On etcd a broken key moves the same way, to `quarantine/<its key>` in the store.

use std::path::{Path, PathBuf};

use jiff::Timestamp;

use crate::fs::{self, FsError};
use crate::store::StoreError;
use crate::workspace::Workspace;

/// Moves `path` (a file under `.maos/`) into the quarantine and writes the `.why` note;
/// `why` is the problem, `by` who moved it (e.g. "`maos doctor --fix`"). Returns the new
/// path.
pub fn move_to_quarantine(
    ws: &Workspace,
    path: &Path,
    why: &str,
    by: &str,
) -> Result<PathBuf, StoreError> {
    #[cfg(feature = "etcd")]
    if let crate::store::Store::Etcd(etcd) = ws.store()
        && let Some(rel) = etcd.rel_of_path(path)
    {
        // A key: moved under `quarantine/` in the store, its note beside it.
        let mut dest = format!("quarantine/{rel}");
        if etcd.get(&dest)?.is_some() {
            dest = format!("{dest}.{}", Timestamp::now().as_millisecond());
        }
        let note = format!(
            "{why}\nmoved here by {by} at {} from {rel}\n",
            Timestamp::now()
        );
        etcd.move_key(&rel, &dest, &format!("{dest}.why"), &note)?;
        return Ok(PathBuf::from(format!("etcd:{}", etcd.key(&dest))));
    }
    Ok(move_file(ws, path, why, by)?)
}

fn move_file(ws: &Workspace, path: &Path, why: &str, by: &str) -> Result<PathBuf, FsError> {
    let relative = path.strip_prefix(ws.dir()).unwrap_or(path);
    let mut dest = ws.dir().join("quarantine").join(relative);
    if dest.exists() {
        let stamp = Timestamp::now().as_millisecond();
        dest = dest.with_file_name(format!(
            "{}.{stamp}",
            dest.file_name().and_then(|n| n.to_str()).unwrap_or("file")
        ));
    }
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent)?;
    }
    #[expect(
        clippy::disallowed_methods,
        reason = "a move, not a publish: the broken file keeps its bytes"
    )]
    std::fs::rename(path, &dest).map_err(|e| FsError::new("move to quarantine", path, e))?;
    let note = format!(
        "{why}\nmoved here by {by} at {} from {}\n",
        Timestamp::now(),
        path.display()
    );
    let mut note_path = dest.clone().into_os_string();
    note_path.push(".why");
    crate::atomic::write_replace(
        &ws.tmp_dir(),
        Path::new(&note_path),
        note.as_bytes(),
        crate::atomic::Durability::Buffered,
    )?;
    Ok(dest)
}
