//! The line format and the hash chain: encoding an entry, checking one, and walking the
//! whole journal to find the first entry that was edited, deleted, reordered or cut off.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{Entry, GENESIS};
use crate::fs::{self, FsError};
use crate::store::StoreError;
use crate::workspace::Workspace;

/// `,"hash":"` + 64 hex digits + `"}`: how every line ends.
const HASH_TAIL: usize = 9 + 64 + 2;

/// The line of entry `n` after the entry hashed `prev`, holding the event whose JSON object
/// is `event`, and the line's hash.
pub(super) fn encode(
    n: u64,
    prev: &str,
    event: &str,
    id: Option<&str>,
    late: bool,
) -> (String, String) {
    let fresh;
    let id = match id {
        Some(id) => id,
        None => {
            fresh = new_id();
            &fresh
        }
    };
    line(n, prev, event, id, late, Timestamp::now(), pid())
}

#[cfg(feature = "etcd")]
/// [`encode`] for an event written earlier, at `at` by process `pid` (a pending event on
/// etcd, chained later).
pub(super) fn encode_as(
    n: u64,
    prev: &str,
    event: &str,
    id: &str,
    at: Timestamp,
    pid: u32,
) -> (String, String) {
    line(n, prev, event, id, false, at, pid)
}

fn line(
    n: u64,
    prev: &str,
    event: &str,
    id: &str,
    late: bool,
    at: Timestamp,
    pid: u32,
) -> (String, String) {
    // The event's fields go between the entry's own: `{"n":…,"at":…,"id":…,<event>,"pid":…}`.
    let fields = event
        .strip_prefix('{')
        .and_then(|e| e.strip_suffix('}'))
        .unwrap_or_default();
    let late = if late { ",\"late\":true" } else { "" };
    let mut text = format!(
        "{{\"n\":{n},\"at\":\"{at}\",\"id\":\"{id}\",{fields},\"pid\":{pid}{late},\"prev\":\"{prev}\"}}"
    );
    let hash = hex(&Sha256::digest(text.as_bytes()));
    text.pop(); // the closing brace
    text.push_str(",\"hash\":\"");
    text.push_str(&hash);
    text.push_str("\"}");
    (text, hash)
}

/// A new entry id: 64 random bits drawn once per process, then a count (unique without a
/// system call per entry).
pub(super) fn new_id() -> String {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEED: OnceLock<u64> = OnceLock::new();
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let seed = SEED.get_or_init(|| uuid::Uuid::new_v4().as_u64_pair().0);
    format!("{seed:016x}{:016x}", COUNT.fetch_add(1, Ordering::Relaxed))
}

/// This process's id, asked of the system once.
fn pid() -> u32 {
    use std::sync::OnceLock;
    static PID: OnceLock<u32> = OnceLock::new();
    *PID.get_or_init(std::process::id)
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}

/// Whether `text` looks like a hash (64 lower-case hex digits).
pub(super) fn is_hash(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Checks one line: its own hash, then its fields. The error says what is wrong.
pub(super) fn check_line(line: &str) -> Result<Entry, String> {
    let len = line.len();
    let tail = len
        .checked_sub(HASH_TAIL)
        .and_then(|at| line.get(at..))
        .filter(|t| t.starts_with(",\"hash\":\"") && t.ends_with("\"}"));
    let Some(tail) = tail else {
        return Err("it does not end with its hash (not an entry, or cut short)".into());
    };
    let stored = &tail[9..9 + 64];
    let mut body = String::with_capacity(len - HASH_TAIL + 1);
    body.push_str(&line[..len - HASH_TAIL]);
    body.push('}');
    if hex(&Sha256::digest(body.as_bytes())) != stored {
        return Err("its hash does not match its contents: the entry was edited".into());
    }
    serde_json::from_str::<Entry>(line).map_err(|e| format!("it is not an entry: {e}"))
}

/// The last complete entry of a segment, read from its end (its last 64 KiB; the whole
/// segment only when no entry ends there).
pub(super) fn last_entry(path: &Path) -> Result<Option<Entry>, FsError> {
    const TAIL: u64 = 64 << 10;
    let len = fs::metadata(path)?.len();
    let in_tail = last_in(&fs::read_from(path, len.saturating_sub(TAIL))?);
    if in_tail.is_some() || len <= TAIL {
        return Ok(in_tail);
    }
    Ok(last_in(&fs::read(path)?))
}

/// The last complete line of `bytes` that is an entry.
fn last_in(bytes: &[u8]) -> Option<Entry> {
    let text = String::from_utf8_lossy(bytes);
    let complete = &text[..text.rfind('\n')?];
    complete.rsplit('\n').find_map(|line| check_line(line).ok())
}

/// Whether the `len` bytes of `file` end with a newline.
pub(super) fn ends_with_newline(file: &File, path: &Path, len: u64) -> Result<bool, FsError> {
    let mut last = [0u8; 1];
    file.read_exact_at(&mut last, len - 1)
        .map_err(|e| FsError::new("read", path, e))?;
    Ok(last[0] == b'\n')
}

/// What is wrong with `entry` coming after the entries `seen` has checked: `None` when it
/// follows on (its number one more, its `prev` the last hash); else the number of the entry
/// at fault — this one, or the one before it when that one is what changed — and what.
pub(super) fn out_of_chain(seen: &Verification, entry: &Entry) -> Option<(u64, String)> {
    let expected = seen.entries + 1;
    if entry.n > expected {
        return Some((
            expected,
            format!(
                "entry {expected} is missing: entry {} comes after entry {} (entries deleted, or reordered)",
                entry.n, seen.entries
            ),
        ));
    }
    if entry.n < expected {
        return Some((
            expected,
            format!(
                "entry {} appears where entry {expected} belongs (entries reordered or copied)",
                entry.n
            ),
        ));
    }
    // The entry itself is intact, so the one before it is what changed (its hash recomputed
    // after an edit, or another entry put in its place).
    (entry.prev != seen.last_hash).then(|| {
        (
            entry.n - 1,
            format!(
                "entry {} was replaced or edited (its hash was recomputed): entry {} names a different entry before it",
                entry.n - 1,
                entry.n
            ),
        )
    })
}

/// The first thing wrong with a journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The segment holding the first bad entry (or where the missing ones should be).
    pub path: PathBuf,
    /// Its line in that segment (1-based).
    pub line: usize,
    /// The number of the first bad or missing entry.
    pub n: u64,
    /// What is wrong.
    pub what: String,
}

/// What [`verify`] found.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    /// The first entry kept (1, or one past the last pruned: `maos journal prune`).
    pub first: u64,
    /// The number of the last entry that checks out, in order, before any problem.
    pub entries: u64,
    /// Segments read.
    pub segments: usize,
    /// The hash of the last good entry (the journal's head when there is no problem: keep it
    /// elsewhere to prove later that nothing before it changed).
    pub last_hash: String,
    /// The first problem, if any.
    pub problem: Option<Problem>,
}

/// Walks the whole journal: every line must carry its own hash, follow the entry before it
/// (`n` one more, `prev` its hash), and the journal must reach the head its lock file
/// records. Stops at the first problem and names it. A line being written at the very end
/// (no newline yet, past the recorded head) is not a problem.
pub fn verify(ws: &Workspace) -> Result<Verification, StoreError> {
    #[cfg(feature = "etcd")]
    if let Some(etcd) = super::on_etcd(ws) {
        return super::etcd::verify(etcd);
    }
    let dir = super::dir(ws);
    let head = super::head(ws)?;
    let base = super::base(ws)?;
    let segments = super::segments(&dir)?;
    let mut seen = Verification {
        first: base.as_ref().map_or(1, |b| b.n + 1),
        entries: base.as_ref().map_or(0, |b| b.n),
        segments: segments.len(),
        last_hash: base.map_or_else(|| GENESIS.to_owned(), |b| b.hash),
        problem: None,
    };
    let pruned_upto = seen.entries;
    // Where the last good entry is: its segment (an index into `segments`) and line.
    let mut last: (Option<usize>, usize) = (None, 0);
    let count = segments.len();
    let place = |at: Option<usize>| match at.or((!segments.is_empty()).then_some(0)) {
        Some(i) => segments[i].1.clone(),
        None => super::segment_path(&dir, 1),
    };
    for (i, (number, path)) in segments.iter().enumerate() {
        let bytes = fs::read(path)?;
        let text = String::from_utf8_lossy(&bytes);
        let mut lines: Vec<&str> = text.split('\n').collect();
        let unfinished = lines.pop().unwrap_or_default();
        let final_segment = i + 1 == count;
        for (at, line) in lines.iter().enumerate() {
            let expected = seen.entries + 1;
            let fail = |n: u64, what: String| Problem {
                path: path.clone(),
                line: at + 1,
                n,
                what,
            };
            let entry = match check_line(line) {
                Ok(entry) => entry,
                Err(what) => {
                    seen.problem = Some(fail(expected, format!("entry {expected}: {what}")));
                    return Ok(seen);
                }
            };
            if entry.n <= pruned_upto {
                continue; // pruned (its segment's removal was cut short): the base vouches
            }
            if let Some((n, what)) = out_of_chain(&seen, &entry) {
                seen.problem = Some(if n == expected {
                    fail(n, what)
                } else {
                    Problem {
                        path: place(last.0),
                        line: last.1,
                        n,
                        what,
                    }
                });
                return Ok(seen);
            }
            seen.entries = entry.n;
            seen.last_hash = entry.hash;
            last = (Some(i), at + 1);
        }
        // Measured in bytes: the text was decoded lossily, and damage changes its length.
        let complete = bytes
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |at| at + 1);
        let in_progress = final_segment
            && head
                .as_ref()
                .is_none_or(|h| h.segment != *number || complete as u64 >= h.size);
        if !unfinished.is_empty() && !in_progress {
            seen.problem = Some(Problem {
                path: path.clone(),
                line: lines.len() + 1,
                n: seen.entries + 1,
                what: format!("entry {} is cut short (no end of line)", seen.entries + 1),
            });
            return Ok(seen);
        }
    }
    if let Some(head) = &head
        && head.n == seen.entries
        && head.hash != seen.last_hash
        && seen.entries > pruned_upto
    {
        seen.problem = Some(Problem {
            path: place(last.0),
            line: last.1,
            n: seen.entries,
            what: format!(
                "entry {} was rewritten: its hash is {} but the head (journal/.lock) records {}",
                seen.entries, seen.last_hash, head.hash
            ),
        });
        return Ok(seen);
    }
    if let Some(head) = head
        && head.n > seen.entries
    {
        seen.problem = Some(Problem {
            path: place(last.0),
            line: last.1 + 1,
            n: seen.entries + 1,
            what: format!(
                "the journal ends at entry {} but its head (journal/.lock) records entry {}: entry {} and every one after it were cut off",
                seen.entries,
                head.n,
                seen.entries + 1
            ),
        });
    }
    Ok(seen)
}
