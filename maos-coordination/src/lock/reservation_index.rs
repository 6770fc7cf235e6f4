//! The reservation index (file store): `locks/reservations.index`, the pattern of every
//! reservation file by token, so that a question about one path — an editor's hook before
//! each edit, a lock acquisition — opens only the few reservation files whose pattern can
//! cover it, not all of them.
//!
//! Derived and disposable. It is written under the `.paths` lock after every change of
//! reservations, and trusted only while `locks/reservations/` still has the modification
//! time it records: any file added, removed or renamed there — by MAOS, by `doctor`, by a
//! hand — changes that time, and then the files are read instead (and the index rebuilt at
//! the next change). What it says is only where to look: the files it points to are read
//! and judged as always.
//!
//! Format, text: a first line `maos-reservation-index 1 <mtime seconds> <nanoseconds>`, then
//! one line per reservation file, `<token>\t<pattern>`.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use crate::atomic::{self, Durability};

const MAGIC: &str = "maos-reservation-index 1";

/// The token and pattern of every reservation file.
pub(super) type Entries = Vec<(u64, String)>;

/// Where the index of reservations in `dir` (`locks/reservations`) lives: beside it, so that
/// writing it does not change the folder's own time.
pub(super) fn path_of(dir: &Path) -> PathBuf {
    dir.with_extension("index")
}

/// The modification time of `dir` as (seconds, nanoseconds); `None` when it cannot be read.
fn mtime(dir: &Path) -> Option<(u64, u32)> {
    let modified = std::fs::metadata(dir).ok()?.modified().ok()?;
    let since = modified.duration_since(UNIX_EPOCH).ok()?;
    Some((since.as_secs(), since.subsec_nanos()))
}

/// The entries, if the index is there, readable, and still describes `dir`.
pub(super) fn load(dir: &Path) -> Option<Entries> {
    let text = std::fs::read_to_string(path_of(dir)).ok()?;
    let mut lines = text.lines();
    let stamp = lines.next()?.strip_prefix(MAGIC)?.trim();
    let (secs, nanos) = stamp.split_once(' ')?;
    let recorded = (secs.parse().ok()?, nanos.parse().ok()?);
    if mtime(dir)? != recorded {
        return None;
    }
    lines
        .map(|line| {
            let (token, pattern) = line.split_once('\t')?;
            Some((token.parse().ok()?, pattern.to_owned()))
        })
        .collect()
}

/// Writes `entries` as the index of `dir` as it is now. Called holding the `.paths` lock,
/// after the change (every change MAOS makes holds it; a change made without it — by hand —
/// within the same tick of the file system's clock as a MAOS change would keep the time:
/// `maos doctor --fix` rebuilds the index). A failure only costs later readers the full
/// read.
pub(super) fn store(dir: &Path, tmp: &Path, entries: &Entries, durability: Durability) {
    // A folder MAOS has not made yet has no files and needs no index.
    let Some((secs, nanos)) = mtime(dir) else {
        return;
    };
    let mut text = format!("{MAGIC} {secs} {nanos}\n");
    for (token, pattern) in entries {
        text.push_str(&format!("{token}\t{pattern}\n"));
    }
    let _ = atomic::write_replace(tmp, &path_of(dir), text.as_bytes(), durability);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_is_trusted_only_while_its_folder_is_unchanged() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("reservations");
        let tmp = root.path().join("tmp");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::create_dir_all(&tmp).unwrap();
        assert_eq!(load(&dir), None, "no index yet");
        std::fs::write(dir.join("1.json"), "{}").unwrap();
        let entries = vec![(1, "src/a.rs".to_owned()), (7, "docs/**".to_owned())];
        store(&dir, &tmp, &entries, Durability::Buffered);
        assert_eq!(load(&dir), Some(entries));
        std::thread::sleep(std::time::Duration::from_millis(50));
        std::fs::write(dir.join("2.json"), "{}").unwrap();
        assert_eq!(load(&dir), None, "a file came: not trusted");
        std::fs::write(path_of(&dir), "garbage\n").unwrap();
        assert_eq!(load(&dir), None);
    }
}
