//! The journal in etcd: the same hash-chained entries, one key each.
//!
//! **Keys.** Entry `n` is `journal/<n, 20 digits>` holding exactly the line a segment would
//! hold (its own hash over it); `journal/.head` is `<n> <hash>` of the last entry;
//! `journal/.base` is `<n> <hash>` of the last entry pruned.
//!
//! **A change and its entry are one transaction.** A change on etcd puts its event at
//! `journal/.pending/<entry id>` in the same transaction that makes the change (see
//! [`pending`]), so no change can be made without its event being kept, whatever happens
//! to the process after. Pending events are then *chained*: whoever settles the journal —
//! a thread of the process that made the change, soon after it ([`settle_soon`]: the change
//! does not wait), or any reader before it reads ([`settle`]) — reads
//! the head and the pending events, orders them by the revision of the change that put them
//! (the cluster's one order of changes), and in one transaction that compares the head
//! writes their entries, moves the head and deletes them. Settlers racing each other are
//! refused by the head comparison and read again; a settler that dies leaves the events
//! pending for the next. So the chain's order is the order in which the changes were made.
//!
//! **Positions.** A [`Cursor`]'s `offset` on etcd is the number of the last entry read
//! (`segment` is not used).

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use jiff::Timestamp;
use serde::Deserialize;

use super::chain::{self, Problem, Verification};
use super::{Base, Cursor, Encoded, Entry, Filter, GENESIS, Head, Keep, Pruned};
use crate::store::StoreError;
use crate::store::etcd::{Etcd, Kv, Outcome, written};
use crate::workspace::Workspace;

/// Where events wait to be chained.
pub(crate) const PENDING: &str = "journal/.pending/";
const HEAD: &str = "journal/.head";
const BASE: &str = "journal/.base";
/// Operations in one chaining transaction at most (etcd allows 128 by default).
const BATCH: usize = 120;

fn entry_key(n: u64) -> String {
    format!("journal/{n:020}")
}

/// The key and value that keep `events` (one change's) pending: put them in the
/// transaction making the change. The value is the entries' ids, their time and process,
/// and the events. With a `token_base`, each event's `data.token` is the change's revision
/// plus that base, filled in when it is chained (a lock's or reservation's token is its
/// key's create revision, known only once the transaction is made).
pub(crate) fn pending(events: &[Encoded], token_base: Option<u64>) -> (String, Vec<u8>) {
    let ids: Vec<String> = events.iter().map(|_| chain::new_id()).collect();
    let base = token_base.map_or_else(String::new, |b| format!(",\"token_base\":{b}"));
    let listed: Vec<String> = ids
        .iter()
        .zip(events)
        .map(|(id, event)| format!("[\"{id}\",{}]", event.json()))
        .collect();
    let value = format!(
        "{{\"at\":\"{}\",\"pid\":{}{base},\"events\":[{}]}}",
        Timestamp::now(),
        std::process::id(),
        listed.join(",")
    );
    let first = ids.first().cloned().unwrap_or_else(chain::new_id);
    (format!("{PENDING}{first}"), value.into_bytes())
}

/// One change's pending events as read back.
#[derive(Deserialize)]
struct Waiting {
    at: Timestamp,
    pid: u32,
    #[serde(default)]
    token_base: Option<u64>,
    /// Each entry's id and event.
    events: Vec<(String, serde_json::Value)>,
}

/// `<n> <hash>` as the head and the base hold it.
fn parse_mark(kv: &Kv) -> Result<(u64, String), StoreError> {
    let text = String::from_utf8_lossy(&kv.value);
    let mut fields = text.split_whitespace();
    match (fields.next().and_then(|n| n.parse().ok()), fields.next()) {
        (Some(n), Some(hash)) if chain::is_hash(hash) => Ok((n, hash.to_owned())),
        _ => Err(StoreError::Broken {
            key: kv.key.clone(),
            what: format!("`{}` is not `<entry number> <hash>`", text.trim()),
        }),
    }
}

/// Appends `event` on its own (a change that is not itself a transaction here): kept
/// pending, then chained. Returns its entry number.
pub(crate) fn append(ws: &Workspace, etcd: &Etcd, event: &Encoded) -> Result<u64, StoreError> {
    let (key, value) = pending(std::slice::from_ref(event), None);
    etcd.put(&key, &value, None)?;
    let id = key.trim_start_matches(PENDING).to_owned();
    let chained = settle(ws, etcd)?;
    if let Some((_, n)) = chained.iter().find(|(chained, _)| *chained == id) {
        return Ok(*n);
    }
    // Chained by another settler: found among the newest entries.
    let head = head(etcd)?.map_or(0, |h| h.n);
    let from = head.saturating_sub(8 * BATCH as u64);
    for kv in etcd.list_from("journal/0", &entry_key(from + 1), None)? {
        if let Ok(entry) = chain::check_line(&String::from_utf8_lossy(&kv.value))
            && entry.id == id
        {
            return Ok(entry.n);
        }
    }
    Ok(head)
}

/// Chains every event pending when it starts (and any put before those), oldest change
/// first; runs the workspace's hooks for them. Returns the ids chained by this call, with
/// their entry numbers.
pub(crate) fn settle(ws: &Workspace, etcd: &Etcd) -> Result<Vec<(String, u64)>, StoreError> {
    let mut chained = Vec::new();
    let mut upto = None;
    loop {
        let mut found = etcd
            .read_many(
                "read the journal's head and pending events",
                &[(HEAD, false), (PENDING, true)],
            )?
            .into_iter();
        let head_kv = found.next().and_then(|kvs| kvs.into_iter().next());
        let mut waiting = in_chain_order(found.next().unwrap_or_default());
        let upto = *upto.get_or_insert(waiting.last().map_or(0, |kv| kv.create_revision));
        waiting.retain(|kv| kv.create_revision <= upto);
        if waiting.is_empty() {
            return Ok(chained);
        }
        let (mut n, mut prev) = match &head_kv {
            Some(kv) => parse_mark(kv)?,
            None => (0, GENESIS.to_owned()),
        };
        let mut ops = Vec::new();
        let mut batch = Vec::new();
        for kv in &waiting {
            let made = entries_of(kv, n, &prev);
            let count = made.as_ref().map_or(0, Vec::len);
            if !ops.is_empty() && ops.len() + count + 2 > BATCH {
                break; // the rest in the next transaction
            }
            ops.push(TxnOp::delete(etcd.key(&kv.key), None));
            // One that is not a change's events (put by hand) is dropped, not chained.
            let Some(made) = made else {
                tracing::warn!(key = %kv.key, "pending journal events that are not were dropped");
                continue;
            };
            for entry in made {
                (n, prev) = (entry.n, entry.hash);
                ops.push(TxnOp::put(etcd.key(&entry_key(n)), entry.line, None));
                batch.push((entry.id, n, entry.kind));
            }
        }
        let new_head = format!("{n} {prev}");
        ops.push(TxnOp::put(etcd.key(HEAD), new_head.clone(), None));
        let seen = head_kv.as_ref().map_or(0, |kv| kv.mod_revision);
        let txn = Txn::new()
            .when([Compare::mod_revision(
                etcd.key(HEAD),
                CompareOp::Equal,
                seen,
            )])
            .and_then(ops);
        let outcome = etcd.txn("chain journal entries", txn, |etcd| {
            Ok(written(etcd.get(HEAD)?, new_head.as_bytes()))
        })?;
        if let Outcome::Applied { .. } = outcome {
            for (id, n, kind) in batch {
                super::hooks::dispatch(ws, &kind);
                chained.push((id, n));
            }
        }
    }
}

/// An entry made from a pending event.
struct Made {
    n: u64,
    line: String,
    hash: String,
    id: String,
    kind: String,
}

/// The entries one change's pending events (`kv`) become after entry `n` hashed `prev` —
/// the same whoever makes them, whenever; `None` when `kv` is not a change's events.
fn entries_of(kv: &Kv, mut n: u64, prev: &str) -> Option<Vec<Made>> {
    let waiting = serde_json::from_slice::<Waiting>(&kv.value).ok()?;
    let mut prev = prev.to_owned();
    let mut made = Vec::with_capacity(waiting.events.len());
    for (id, mut event) in waiting.events {
        if let Some(base) = waiting.token_base
            && let Some(token) = event.pointer_mut("/data/token")
        {
            *token = (u64::try_from(kv.create_revision).unwrap_or(0) + base).into();
        }
        let kind = event["kind"].as_str().unwrap_or_default().to_owned();
        let (line, hash) = chain::encode_as(
            n + 1,
            &prev,
            &event.to_string(),
            &id,
            waiting.at,
            waiting.pid,
        );
        n += 1;
        prev.clone_from(&hash);
        made.push(Made {
            n,
            line,
            hash,
            id,
            kind,
        });
    }
    Some(made)
}

/// The pending events, oldest change first (the order they are chained in).
fn in_chain_order(mut waiting: Vec<Kv>) -> Vec<Kv> {
    waiting.sort_by(|a, b| (a.create_revision, &a.key).cmp(&(b.create_revision, &b.key)));
    waiting
}

/// This process's settler: a thread that chains the pending events of the workspaces queued
/// (by [`settle_soon`]), so a change does not wait for its events to be chained.
struct Settler {
    queue: std::sync::Mutex<Vec<Workspace>>,
    wake: std::sync::Condvar,
}

static SETTLER: std::sync::OnceLock<Option<Settler>> = std::sync::OnceLock::new();

/// Has this process's settler thread chain `ws`'s pending events soon (at once when the
/// thread cannot be started).
pub(crate) fn settle_soon(ws: &Workspace) {
    let settler = SETTLER.get_or_init(|| {
        std::thread::Builder::new()
            .name("maos-journal".into())
            .spawn(settle_queued)
            .ok()
            .map(|_| Settler {
                queue: std::sync::Mutex::new(Vec::new()),
                wake: std::sync::Condvar::new(),
            })
    });
    let Some(settler) = settler else {
        settle_traced(ws);
        return;
    };
    let mut queue = settler.queue.lock().unwrap_or_else(|e| e.into_inner());
    if !queue.iter().any(|queued| queued.dir() == ws.dir()) {
        queue.push(ws.clone());
    }
    settler.wake.notify_one();
}

/// The settler thread: chains what is queued, waiting for more in between.
fn settle_queued() {
    loop {
        let Some(Some(settler)) = SETTLER.get() else {
            std::thread::sleep(Duration::from_millis(10)); // still being set up
            continue;
        };
        let queued = {
            let mut queue = settler.queue.lock().unwrap_or_else(|e| e.into_inner());
            while queue.is_empty() {
                queue = settler.wake.wait(queue).unwrap_or_else(|e| e.into_inner());
            }
            std::mem::take(&mut *queue)
        };
        for ws in &queued {
            settle_traced(ws);
        }
    }
}

/// [`settle`], a failure traced (the events stay pending for the next settle).
fn settle_traced(ws: &Workspace) {
    if let crate::store::Store::Etcd(etcd) = ws.store()
        && let Err(e) = settle(ws, etcd)
    {
        tracing::warn!(error = %e, "journal entries not chained yet");
    }
}

/// The head (`None` for a journal never written).
pub(crate) fn head(etcd: &Etcd) -> Result<Option<Head>, StoreError> {
    let Some(kv) = etcd.get(HEAD)? else {
        return Ok(None);
    };
    let (n, hash) = parse_mark(&kv)?;
    Ok(Some(Head {
        n,
        hash,
        segment: 0,
        size: 0,
    }))
}

/// The base (`None`: nothing was pruned).
pub(crate) fn base(etcd: &Etcd) -> Result<Option<Base>, StoreError> {
    Ok(match etcd.get(BASE)? {
        Some(kv) => {
            let (n, hash) = parse_mark(&kv)?;
            Some(Base { n, hash })
        }
        None => None,
    })
}

/// The last entry (`None` for a journal never written).
pub(crate) fn last(etcd: &Etcd) -> Result<Option<Entry>, StoreError> {
    let Some(head) = head(etcd)? else {
        return Ok(None);
    };
    Ok(etcd
        .get(&entry_key(head.n))?
        .and_then(|kv| chain::check_line(&String::from_utf8_lossy(&kv.value)).ok()))
}

/// The entries after `cursor` (its offset: the last entry number read) that `filter`
/// passes, and the cursor after the last entry read.
pub(crate) fn read_from(
    etcd: &Etcd,
    cursor: Cursor,
    filter: &Filter,
) -> Result<(Vec<Entry>, Cursor), StoreError> {
    let mut at = cursor;
    let mut entries = Vec::new();
    for kv in etcd.list_from("journal/0", &entry_key(cursor.offset + 1), None)? {
        let Ok(entry) = serde_json::from_slice::<Entry>(&kv.value) else {
            continue; // `maos journal verify` names it
        };
        at.offset = at.offset.max(entry.n);
        if filter.matches(&entry) {
            entries.push(entry);
        }
    }
    Ok((entries, at))
}

/// What wakes a follower of the journal on etcd: a watch on every journal key — the head,
/// and events pending that nobody chained yet (re-made when it breaks; a nap of the time
/// given meanwhile).
pub(crate) struct HeadWatch {
    etcd: Arc<Etcd>,
    watch: Option<crate::store::etcd::EtcdWatch>,
}

impl HeadWatch {
    pub(crate) fn start(etcd: &Arc<Etcd>) -> Result<Self, StoreError> {
        Ok(HeadWatch {
            etcd: Arc::clone(etcd),
            watch: Some(etcd.watch("journal/")?),
        })
    }

    /// Waits until the head moves, at most `nap`.
    pub(crate) fn nap(&mut self, nap: Duration) {
        match &mut self.watch {
            Some(w) => {
                if w.wait(nap).is_err() {
                    self.watch = None;
                }
            }
            None => {
                std::thread::sleep(nap);
                self.watch = self.etcd.watch("journal/").ok();
            }
        }
    }
}

/// Where `kv` is, for a person: `etcd:<key>`.
fn place(etcd: &Etcd, key: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(format!("etcd:{}", etcd.key(key)))
}

/// [`super::verify`] on etcd: every entry must carry its own hash and follow the one
/// before (`n` one more, `prev` its hash), from the base to the head.
pub(crate) fn verify(etcd: &Etcd) -> Result<Verification, StoreError> {
    let head = head(etcd)?;
    let base = base(etcd)?;
    let mut seen = Verification {
        first: base.as_ref().map_or(1, |b| b.n + 1),
        entries: base.as_ref().map_or(0, |b| b.n),
        segments: 0,
        last_hash: base.map_or_else(|| GENESIS.to_owned(), |b| b.hash),
        problem: None,
    };
    let fail = |key: &str, n: u64, what: String| Problem {
        path: place(etcd, key),
        line: 1,
        n,
        what,
    };
    for kv in etcd.list_from("journal/0", &entry_key(seen.first), None)? {
        let expected = seen.entries + 1;
        let entry = match chain::check_line(&String::from_utf8_lossy(&kv.value)) {
            Ok(entry) => entry,
            Err(what) => {
                seen.problem = Some(fail(&kv.key, expected, format!("entry {expected}: {what}")));
                return Ok(seen);
            }
        };
        if kv.key != entry_key(entry.n) {
            seen.problem = Some(fail(
                &kv.key,
                expected,
                format!("it holds entry {}: entries were moved", entry.n),
            ));
            return Ok(seen);
        }
        if let Some((n, what)) = chain::out_of_chain(&seen, &entry) {
            seen.problem = Some(fail(&entry_key(n), n, what));
            return Ok(seen);
        }
        seen.entries = entry.n;
        seen.last_hash = entry.hash;
    }
    if let Some(head) = &head
        && head.n == seen.entries
        && head.hash != seen.last_hash
        && seen.entries >= seen.first
    {
        seen.problem = Some(fail(
            &entry_key(seen.entries),
            seen.entries,
            format!(
                "entry {} was rewritten: its hash is {} but the head (journal/.head) records {}",
                seen.entries, seen.last_hash, head.hash
            ),
        ));
        return Ok(seen);
    }
    if let Some(head) = head
        && head.n > seen.entries
    {
        seen.problem = Some(fail(
            &entry_key(seen.entries + 1),
            seen.entries + 1,
            format!(
                "the journal ends at entry {} but its head (journal/.head) records entry {}: entry {} and every one after it were removed",
                seen.entries,
                head.n,
                seen.entries + 1
            ),
        ));
    }
    Ok(seen)
}

/// The lines of entries `from` onwards, in order, then those the events pending now will
/// become (their changes are made; whoever settles next chains them exactly so): the journal
/// as of this moment.
pub(crate) fn lines(etcd: &Etcd, from: u64) -> Result<Vec<String>, StoreError> {
    let mut lines: Vec<String> = etcd
        .list_from("journal/0", &entry_key(from), None)?
        .into_iter()
        .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
        .collect();
    let (mut n, mut prev) = match head(etcd)? {
        Some(head) => (head.n, head.hash),
        None => (0, GENESIS.to_owned()),
    };
    for kv in in_chain_order(etcd.list(PENDING)?) {
        for entry in entries_of(&kv, n, &prev).unwrap_or_default() {
            (n, prev) = (entry.n, entry.hash);
            lines.push(entry.line);
        }
    }
    Ok(lines)
}

/// [`super::adopt`] on etcd: the lines put as entries (in transactions of [`BATCH`]), then
/// the base and the head (`last`: the last entry's number and hash).
pub(crate) fn adopt(
    etcd: &Etcd,
    base: Option<&Base>,
    lines: &[String],
    last: Option<(u64, String)>,
) -> Result<(), StoreError> {
    let first = base.map_or(1, |b| b.n + 1);
    for (at, chunk) in lines.chunks(BATCH).enumerate() {
        let from = first + (at * BATCH) as u64;
        let puts: Vec<TxnOp> = chunk
            .iter()
            .enumerate()
            .map(|(i, line)| TxnOp::put(etcd.key(&entry_key(from + i as u64)), line.clone(), None))
            .collect();
        let last_key = entry_key(from + chunk.len() as u64 - 1);
        let last_line = chunk.last().cloned().unwrap_or_default();
        etcd.txn("copy journal entries", Txn::new().and_then(puts), |etcd| {
            Ok(written(etcd.get(&last_key)?, last_line.as_bytes()))
        })?;
    }
    if let Some(base) = base {
        etcd.put(BASE, format!("{} {}", base.n, base.hash).as_bytes(), None)?;
    }
    if let Some((n, hash)) = last {
        etcd.put(HEAD, format!("{n} {hash}").as_bytes(), None)?;
    }
    Ok(())
}

/// [`super::prune`] on etcd: the entries `keep` does not keep are archived (on this host,
/// `archive/journal/<first>-<last>.jsonl.gz`), the base moved past the last of them, and
/// they are deleted. `Keep::Segments(n)` keeps the newest `n` × the segment size in entries
/// (a segment holds about 8 MiB of lines): a segment is a file-store notion.
pub(crate) fn prune(ws: &Workspace, etcd: &Etcd, keep: Keep) -> Result<Pruned, StoreError> {
    let base_n = base(etcd)?.map_or(0, |b| b.n);
    let mut pruned = Pruned {
        archives: Vec::new(),
        upto: base_n,
    };
    let Some(head) = head(etcd)? else {
        return Ok(pruned);
    };
    let kvs = etcd.list_from("journal/0", &entry_key(base_n + 1), None)?;
    // Each entry with its line as written (what the archive keeps, so it still verifies).
    let entries: Vec<(Entry, String)> = kvs
        .iter()
        .filter_map(|kv| {
            let line = String::from_utf8_lossy(&kv.value).into_owned();
            chain::check_line(&line).ok().map(|e| (e, line))
        })
        .filter(|(e, _)| e.n < head.n)
        .collect();
    let count = match keep {
        Keep::Segments(n) => {
            let per_segment = (ws
                .config()
                .journal_segment_bytes
                .unwrap_or(super::SEGMENT_BYTES)
                / 256)
                .max(1) as usize;
            entries.len().saturating_sub(n.max(1) * per_segment)
        }
        Keep::Since(t) => entries.iter().take_while(|(e, _)| e.at < t).count(),
    };
    let (Some((first, _)), Some((last, _))) = (entries.first(), entries[..count].last()) else {
        return Ok(pruned);
    };
    let mut lines = String::new();
    for (_, line) in &entries[..count] {
        lines.push_str(line);
        lines.push('\n');
    }
    let name = format!("{:020}-{:020}.jsonl", first.n, last.n);
    pruned
        .archives
        .push(super::prune::archive(ws, &name, lines.as_bytes())?);
    etcd.put(BASE, format!("{} {}", last.n, last.hash).as_bytes(), None)?;
    etcd.delete_range(&entry_key(first.n), &entry_key(last.n + 1))?;
    pruned.upto = last.n;
    Ok(pruned)
}
