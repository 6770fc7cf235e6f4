//! Reading the journal as a stream: entries after a position, filtered by kind and time,
//! and following it as it grows (woken by notify on the journal folder, like channels).

use std::path::Path;
use std::time::{Duration, Instant};

use jiff::Timestamp;

use super::Entry;
use crate::fs::{self, FsError};
use crate::store::StoreError;
use crate::wake::{self, DirWatch};
use crate::workspace::Workspace;

/// A position in the journal: the next byte to read in a segment (on etcd: `offset` is the
/// number of the last entry read, `segment` unused).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cursor {
    /// The segment's number (0: from the first segment).
    pub segment: u64,
    /// The byte offset in it (on etcd: the last entry number read).
    pub offset: u64,
}

/// Which entries to hand out.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Globs over kinds (`task.*`, `lock.stolen`, `*`); empty lets every kind through.
    pub kinds: Vec<String>,
    /// Only entries written at or after this time.
    pub since: Option<Timestamp>,
}

impl Filter {
    /// Whether `entry` passes.
    pub fn matches(&self, entry: &Entry) -> bool {
        self.since.is_none_or(|since| entry.at >= since)
            && (self.kinds.is_empty()
                || self
                    .kinds
                    .iter()
                    .any(|k| kind_matches(k, &entry.event.kind)))
    }
}

/// Whether the glob `pattern` (`*` matches any run of characters) matches `kind`.
pub fn kind_matches(pattern: &str, kind: &str) -> bool {
    let mut parts = pattern.split('*');
    let Some(first) = parts.next() else {
        return kind.is_empty();
    };
    let Some(mut rest) = kind.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// The entries after `cursor` that `filter` passes, and the cursor after the last complete
/// line read. A line that is not an entry is skipped (`maos journal verify` names it).
pub fn read_from(
    ws: &Workspace,
    cursor: Cursor,
    filter: &Filter,
) -> Result<(Vec<Entry>, Cursor), StoreError> {
    #[cfg(feature = "etcd")]
    if let Some(etcd) = super::on_etcd(ws) {
        return super::etcd::read_from(etcd, cursor, filter);
    }
    let mut entries = Vec::new();
    let mut at = cursor;
    for (number, path) in super::segments(&super::dir(ws))? {
        if number < at.segment {
            continue;
        }
        let from = if number == at.segment { at.offset } else { 0 };
        let read = read_segment(&path, from, filter, &mut entries)?;
        at = Cursor {
            segment: number,
            offset: from + read,
        };
    }
    Ok((entries, at))
}

/// Reads the complete lines of a segment from `from`; returns how many bytes they took.
fn read_segment(
    path: &Path,
    from: u64,
    filter: &Filter,
    into: &mut Vec<Entry>,
) -> Result<u64, FsError> {
    let tail = fs::read_from(path, from)?;
    let Some(end) = tail.iter().rposition(|&b| b == b'\n') else {
        return Ok(0);
    };
    for line in tail[..end].split(|&b| b == b'\n') {
        if let Ok(entry) = serde_json::from_slice::<Entry>(line)
            && filter.matches(&entry)
        {
            into.push(entry);
        }
    }
    Ok(end as u64 + 1)
}

/// Hands each entry after `cursor` that `filter` passes to `each`, then waits for more (woken
/// by notify on the journal folder; polling where it cannot watch) until `each` returns
/// false or `timeout` passes with nothing new. Returns the cursor reached.
pub fn follow(
    ws: &Workspace,
    cursor: Cursor,
    filter: &Filter,
    timeout: Option<Duration>,
    mut each: impl FnMut(&Entry) -> bool,
) -> Result<Cursor, StoreError> {
    #[cfg(feature = "etcd")]
    if let Some(etcd) = super::on_etcd(ws) {
        let mut head = super::etcd::HeadWatch::start(etcd)?;
        let read = |at: Cursor| {
            super::etcd::settle(ws, etcd)?;
            read_from(ws, at, filter)
        };
        return follow_with(cursor, timeout, &mut each, read, |nap| head.nap(nap));
    }
    let dir = super::dir(ws);
    fs::create_dir_all(&dir)?;
    let watch = DirWatch::start(&dir, |p| p.file_name().is_some_and(|n| n == ".lock"));
    // Woken by an append; the timer is only a safety net against a lost event.
    let nap = |nap: Duration| {
        wake::nap(watch.as_ref(), nap);
    };
    follow_with(
        cursor,
        timeout,
        &mut each,
        |at| read_from(ws, at, filter),
        nap,
    )
}

/// [`follow`] with `read` bringing the entries after a cursor and `nap` waiting for more.
fn follow_with(
    mut cursor: Cursor,
    timeout: Option<Duration>,
    each: &mut impl FnMut(&Entry) -> bool,
    mut read: impl FnMut(Cursor) -> Result<(Vec<Entry>, Cursor), StoreError>,
    mut nap: impl FnMut(Duration),
) -> Result<Cursor, StoreError> {
    let mut quiet_since = Instant::now();
    loop {
        let (entries, next) = read(cursor)?;
        if next != cursor {
            quiet_since = Instant::now();
        }
        cursor = next;
        for entry in &entries {
            if !each(entry) {
                return Ok(cursor);
            }
        }
        let left = match timeout {
            Some(t) => match t.checked_sub(quiet_since.elapsed()) {
                Some(left) if !left.is_zero() => left,
                _ => return Ok(cursor),
            },
            None => Duration::from_secs(1),
        };
        nap(left.min(Duration::from_secs(1)));
    }
}
