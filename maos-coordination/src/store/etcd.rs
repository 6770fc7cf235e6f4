//! The etcd store's connection: a blocking facade over the async `etcd-client`, as the
//! synchronous MAOS API needs it.
//!
//! One small tokio runtime per process (one worker thread) drives every connection; each call
//! blocks on its future with a deadline, so a cluster that does not answer is an error naming
//! the members and the operation, never a hang.
//!
//! Keys are the workspace's prefix, `/`, and a path mirroring the `.maos/` layout
//! (`tasks/t-1a2b3c.json`); values are the same JSON records the file store writes.
//!
//! **Faults.** A member killed, stopped or restarted, a leader election: a read that fails is
//! tried again (on whichever member answers) for up to [`PATIENCE`]. A transaction that fails
//! may still have been applied (the request reached the leader, the answer was lost): its
//! caller says how to recognise it in the store (the record it wrote, with its own id or
//! version), and [`Etcd::txn`] reads that back — applied, its outcome stands; not applied, it
//! is sent again, which is safe because every MAOS transaction compares before it writes.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use etcd_client::{
    Client, ConnectOptions, GetOptions, GetResponse, Txn, WatchOptions, WatchStream,
};

use super::{StoreError, StoreSpec};

/// The largest reply a read accepts.
const MAX_REPLY: usize = 256 * 1024 * 1024;
/// Keys read per request by [`Etcd::list_from`] (at most 1 MiB each: a page stays under
/// [`MAX_REPLY`]).
const PAGE: usize = 250;
/// How long one request may take before it fails (a member stopped or cut off).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// The lease of a process's session (see [`Etcd::session`]).
pub const SESSION_TTL: Duration = Duration::from_secs(10);
/// How long reads are tried again, across members, before an operation fails: longer than a
/// leader election, short enough that an unreachable cluster is reported.
pub const PATIENCE: Duration = Duration::from_secs(20);
/// How long making a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// What a transaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Its comparisons held and its writes were made, at `revision`.
    Applied {
        /// The store's revision after the change (a created key's create revision).
        revision: i64,
    },
    /// Its comparisons failed: another writer got there first.
    Refused,
}

impl Outcome {
    /// Whether it was applied.
    pub fn applied(self) -> bool {
        matches!(self, Outcome::Applied { .. })
    }
}

/// The revision `kv` was last written at, when its value is `value`: how an unknown outcome
/// is recognised when the value written is unique (it carries an id, a nonce or a version).
pub fn written(kv: Option<Kv>, value: &[u8]) -> Option<i64> {
    kv.filter(|kv| kv.value == value).map(|kv| kv.mod_revision)
}

/// One key's value as read, with the revisions that make compare-and-swap possible.
#[derive(Debug, Clone)]
pub struct Kv {
    /// The key without the workspace prefix (`tasks/t-1a2b3c`).
    pub key: String,
    /// The value.
    pub value: Vec<u8>,
    /// The revision of the last change to the key.
    pub mod_revision: i64,
    /// The revision at which the key was created.
    pub create_revision: i64,
    /// The lease the key is attached to (0: none).
    pub lease: i64,
}

/// A connection to one etcd cluster, for one workspace prefix.
pub struct Etcd {
    endpoints: Vec<String>,
    prefix: String,
    client: Client,
    /// Numbers written once and never changed, as read (see [`Etcd::fixed_number`]).
    fixed: Mutex<HashMap<String, u64>>,
    /// This process's session lease and whether its keep-alive still gets through (see
    /// [`Etcd::session`]).
    session: Mutex<Option<(i64, Arc<std::sync::atomic::AtomicBool>)>>,
    /// A read-only view of the store as of this revision (see [`Etcd::pinned`]).
    pinned: Option<i64>,
}

impl std::fmt::Debug for Etcd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Etcd")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// The process's runtime for etcd calls (built once).
fn runtime() -> Result<&'static tokio::runtime::Runtime, String> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("maos-etcd")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(Clone::clone)
}

impl Etcd {
    /// This process's connection to `endpoints` for `prefix`, made on first use.
    pub fn shared(endpoints: &[String], prefix: &str) -> Result<Arc<Self>, StoreError> {
        type Connections = Mutex<HashMap<(Vec<String>, String), Arc<Etcd>>>;
        static CONNECTIONS: OnceLock<Connections> = OnceLock::new();
        let connections = CONNECTIONS.get_or_init(Connections::default);
        let key = (endpoints.to_vec(), prefix.to_owned());
        if let Some(etcd) = connections.lock().map_err(poisoned)?.get(&key) {
            return Ok(Arc::clone(etcd));
        }
        let etcd = Arc::new(Self::connect(endpoints, prefix)?);
        connections
            .lock()
            .map_err(poisoned)?
            .insert(key, Arc::clone(&etcd));
        Ok(etcd)
    }

    fn connect(endpoints: &[String], prefix: &str) -> Result<Self, StoreError> {
        let options = ConnectOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_timeout(REQUEST_TIMEOUT)
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2));
        let urls: Vec<String> = endpoints.iter().map(|e| format!("http://{e}")).collect();
        let client = block(
            endpoints,
            "connect",
            REQUEST_TIMEOUT,
            Client::connect(urls, Some(options)),
        )?;
        Ok(Self {
            endpoints: endpoints.to_vec(),
            prefix: prefix.to_owned(),
            client,
            fixed: Mutex::new(HashMap::new()),
            session: Mutex::new(None),
            pinned: None,
        })
    }

    /// A read-only view of the store as it is now: every read answers as of the current
    /// revision, whatever is written after — one moment for everything read through it (a
    /// snapshot's copy). Writing through it is refused.
    pub fn pinned(&self) -> Result<Arc<Self>, StoreError> {
        let revision = i64::try_from(self.revision()?).unwrap_or(i64::MAX);
        Ok(Arc::new(Self {
            endpoints: self.endpoints.clone(),
            prefix: self.prefix.clone(),
            client: self.client.clone(),
            fixed: Mutex::new(HashMap::new()),
            session: Mutex::new(None),
            pinned: Some(revision),
        }))
    }

    /// Refuses `op` on a pinned (read-only) view.
    fn writable(&self, op: &str) -> Result<(), StoreError> {
        match self.pinned {
            Some(revision) => {
                Err(self.error(op, format!("a read-only view as of revision {revision}")))
            }
            None => Ok(()),
        }
    }

    /// The spec this connection was made from.
    pub fn spec(&self) -> StoreSpec {
        StoreSpec::Etcd {
            endpoints: self.endpoints.clone(),
            prefix: self.prefix.clone(),
        }
    }

    /// The workspace's key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The full key of `rel` (a path under the workspace, like `tasks/t-1a2b3c`).
    pub fn key(&self, rel: &str) -> String {
        format!("{}/{rel}", self.prefix)
    }

    /// A client for reads that may bring back many records at once (a page of messages of
    /// up to 1 MiB each): its replies may be larger than the default 4 MiB.
    fn reader(&self) -> etcd_client::KvClient {
        self.client.kv_client().max_decoding_message_size(MAX_REPLY)
    }

    /// A client to run requests with (cheap: clones share the connection).
    fn client(&self) -> Client {
        self.client.clone()
    }

    /// Runs `future` on the runtime, waiting at most the request timeout; errors name `op`
    /// and the members.
    pub fn call<T, E: std::fmt::Display>(
        &self,
        op: &str,
        future: impl Future<Output = Result<T, E>>,
    ) -> Result<T, StoreError> {
        block(&self.endpoints, op, REQUEST_TIMEOUT, future)
    }

    fn error(&self, op: &str, detail: String) -> StoreError {
        StoreError::Etcd {
            endpoints: self.endpoints.join(","),
            op: op.to_owned(),
            detail,
        }
    }

    /// How many keys there are from `rel_from` to the end of `rel_prefix`.
    pub fn count_from(&self, rel_prefix: &str, rel_from: &str) -> Result<u64, StoreError> {
        let options = GetOptions::new()
            .with_range(prefix_end(&self.key(rel_prefix)))
            .with_count_only();
        let response = self.read(&format!("count {}…", self.key(rel_from)), rel_from, options)?;
        Ok(u64::try_from(response.count()).unwrap_or(0))
    }

    /// A new lease of `ttl` (rounded up to whole seconds; etcd may lengthen a very short one
    /// to its minimum): keys put with it vanish when it is not kept alive.
    pub fn grant(&self, ttl: Duration) -> Result<i64, StoreError> {
        self.writable("write")?;
        let secs = i64::try_from(ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0))
            .unwrap_or(i64::MAX)
            .max(1);
        self.retrying(|| {
            let mut client = self.client();
            Ok(self
                .call("grant a lease", client.lease_grant(secs, None))?
                .id())
        })
    }

    /// Ends lease `id` now (its keys vanish); a lease already gone is not an error. Where
    /// the lease only guarded keys already rewritten or removed, a failure may be ignored:
    /// it runs out on its own.
    pub fn revoke(&self, id: i64) -> Result<(), StoreError> {
        if id == 0 {
            return Ok(());
        }
        let mut client = self.client();
        match self.call("revoke a lease", client.lease_revoke(id)) {
            Ok(_) => Ok(()),
            Err(StoreError::Etcd { detail, .. }) if detail.contains("lease not found") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Sets `rel` to `value` (under `lease` when given), tried again on failure: for a key
    /// only its writer changes (a position, a waiter's record), where writing twice is
    /// writing once.
    pub fn put(&self, rel: &str, value: &[u8], lease: Option<i64>) -> Result<(), StoreError> {
        self.writable("write")?;
        let key = self.key(rel);
        let options = lease.map(|id| etcd_client::PutOptions::new().with_lease(id));
        self.retrying(|| {
            let mut client = self.client();
            self.call(
                &format!("put {key}"),
                client.put(key.clone(), value, options.clone()),
            )
        })
        .map(drop)
    }

    /// Several reads in one request, all as of one revision: each of `reads` is a key, or
    /// with `true` every key under that prefix. Tried again on failure.
    pub fn read_many(
        &self,
        what: &str,
        reads: &[(&str, bool)],
    ) -> Result<Vec<Vec<Kv>>, StoreError> {
        let ops: Vec<etcd_client::TxnOp> = reads
            .iter()
            .map(|(rel, prefix)| {
                let mut options = GetOptions::new();
                if *prefix {
                    options = options.with_prefix();
                }
                if let Some(revision) = self.pinned {
                    options = options.with_revision(revision);
                }
                etcd_client::TxnOp::get(self.key(rel), Some(options))
            })
            .collect();
        let response = self.retrying(|| {
            let mut kv = self.reader();
            self.call(what, kv.txn(Txn::new().and_then(ops.clone())))
        })?;
        Ok(response
            .op_responses()
            .into_iter()
            .map(|r| match r {
                etcd_client::TxnOpResponse::Get(got) => {
                    got.kvs().iter().map(|kv| self.kv(kv)).collect()
                }
                _ => Vec::new(),
            })
            .collect())
    }

    /// The key relative to the workspace's prefix of `etcd:<key>` (how a key is shown as a
    /// path), if it is one of this workspace's.
    pub fn rel_of_path(&self, path: &std::path::Path) -> Option<String> {
        let key = path.to_str()?.strip_prefix("etcd:")?;
        Some(key.strip_prefix(&self.key(""))?.to_owned())
    }

    /// Moves the key `rel` to `to` and puts `note` at `note_key`, in one transaction that
    /// holds only while `rel` is unchanged since it was read. Returns false when `rel` is gone.
    pub fn move_key(
        &self,
        rel: &str,
        to: &str,
        note_key: &str,
        note: &str,
    ) -> Result<bool, StoreError> {
        loop {
            let Some(kv) = self.get(rel)? else {
                return Ok(false);
            };
            let txn = Txn::new()
                .when([etcd_client::Compare::mod_revision(
                    self.key(rel),
                    etcd_client::CompareOp::Equal,
                    kv.mod_revision,
                )])
                .and_then([
                    etcd_client::TxnOp::delete(self.key(rel), None),
                    etcd_client::TxnOp::put(self.key(to), kv.value.clone(), None),
                    etcd_client::TxnOp::put(self.key(note_key), note, None),
                ]);
            let outcome = self.txn(&format!("move {rel} to {to}"), txn, |etcd| {
                Ok(written(etcd.get(note_key)?, note.as_bytes()))
            })?;
            if outcome.applied() {
                return Ok(true);
            }
        }
    }

    /// Removes every key from `rel_from` (inclusive) to `rel_to` (exclusive), tried again on
    /// failure.
    pub fn delete_range(&self, rel_from: &str, rel_to: &str) -> Result<(), StoreError> {
        self.writable("write")?;
        let key = self.key(rel_from);
        let end = self.key(rel_to);
        self.retrying(|| {
            let mut client = self.client();
            self.call(
                &format!("delete {key}…{end}"),
                client.delete(
                    key.clone(),
                    Some(etcd_client::DeleteOptions::new().with_range(end.clone())),
                ),
            )
        })
        .map(drop)
    }

    /// Removes every key under `rel_prefix`, tried again on failure.
    pub fn delete_prefix(&self, rel_prefix: &str) -> Result<(), StoreError> {
        self.writable("write")?;
        let key = self.key(rel_prefix);
        self.retrying(|| {
            let mut client = self.client();
            self.call(
                &format!("delete {key}…"),
                client.delete(
                    key.clone(),
                    Some(etcd_client::DeleteOptions::new().with_prefix()),
                ),
            )
        })
        .map(drop)
    }

    /// The cluster's current revision.
    pub fn revision(&self) -> Result<u64, StoreError> {
        let response = self.read("read the revision", "", GetOptions::new().with_count_only())?;
        Ok(response
            .header()
            .and_then(|h| u64::try_from(h.revision()).ok())
            .unwrap_or(0))
    }

    /// Whether any key lives under the workspace's prefix.
    pub fn is_empty(&self) -> Result<bool, StoreError> {
        Ok(self.count_from("", "")? == 0)
    }

    /// Removes `rel` (nothing to do when it does not exist), tried again on failure.
    pub fn delete(&self, rel: &str) -> Result<(), StoreError> {
        self.writable("write")?;
        let key = self.key(rel);
        self.retrying(|| {
            let mut client = self.client();
            self.call(&format!("delete {key}"), client.delete(key.clone(), None))
        })
        .map(drop)
    }

    /// The number at `rel` (0 when there is none): for a number written once before the
    /// store is used (by `maos store migrate`) and never changed, so read once per process.
    pub fn fixed_number(&self, rel: &str) -> Result<u64, StoreError> {
        if let Some(n) = self.fixed.lock().map_err(poisoned)?.get(rel) {
            return Ok(*n);
        }
        let n = self
            .get(rel)?
            .and_then(|kv| String::from_utf8(kv.value).ok())
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(0);
        self.fixed
            .lock()
            .map_err(poisoned)?
            .insert(rel.to_owned(), n);
        Ok(n)
    }

    /// Writes the number at `rel` (see [`Etcd::fixed_number`]) — only while no other process
    /// uses the store (`maos store migrate`, a snapshot's restore).
    pub fn set_fixed_number(&self, rel: &str, n: u64) -> Result<(), StoreError> {
        self.put(rel, n.to_string().as_bytes(), None)?;
        self.fixed
            .lock()
            .map_err(poisoned)?
            .insert(rel.to_owned(), n);
        Ok(())
    }

    /// This process's session: a lease of [`SESSION_TTL`] kept alive (every third of it) by
    /// the runtime for as long as the process lives. Keys that belong to the process rather
    /// than to a lifetime (a reservation bound to it) are put under it: they go when the
    /// process dies or stops, by the cluster's clock. A session that ran out (the process was
    /// stopped longer than the lease) is replaced by a new one.
    pub fn session(&self) -> Result<i64, StoreError> {
        use std::sync::atomic::{AtomicBool, Ordering};
        let mut session = self.session.lock().map_err(poisoned)?;
        if let Some((id, alive)) = &*session
            && alive.load(Ordering::SeqCst)
        {
            return Ok(*id);
        }
        let id = self.grant(SESSION_TTL)?;
        let runtime = runtime().map_err(|detail| self.error("keep the session alive", detail))?;
        let alive = Arc::new(AtomicBool::new(true));
        let flag = Arc::clone(&alive);
        let client = self.client();
        runtime.spawn(async move {
            let mut pause = SESSION_TTL / 3;
            loop {
                tokio::time::sleep(pause).await;
                // A fresh keep-alive stream each beat: one opened on a member that died or
                // stopped would stay broken, and the balancer picks a member that answers.
                let mut client = client.clone();
                let renewed = tokio::time::timeout(REQUEST_TIMEOUT, async {
                    let (mut keeper, mut stream) = client.lease_keep_alive(id).await?;
                    keeper.keep_alive().await?;
                    stream.message().await
                })
                .await;
                match renewed {
                    Ok(Ok(Some(answer))) if answer.ttl() > 0 => pause = SESSION_TTL / 3,
                    // Gone (expired, revoked): the next use makes a new session.
                    Ok(Ok(_)) => {
                        flag.store(false, Ordering::SeqCst);
                        return;
                    }
                    // Unanswered: tried again soon.
                    Ok(Err(_)) | Err(_) => pause = Duration::from_millis(300),
                }
            }
        });
        *session = Some((id, alive));
        Ok(id)
    }

    /// Whether lease `id` is this process's session (which many keys share: never revoke it).
    pub fn is_session(&self, id: i64) -> bool {
        self.session
            .lock()
            .map(|session| session.as_ref().is_some_and(|(session, _)| *session == id))
            .unwrap_or(true)
    }

    /// The key `rel`, if it exists.
    pub fn get(&self, rel: &str) -> Result<Option<Kv>, StoreError> {
        let response = self.read(&format!("get {}", self.key(rel)), rel, GetOptions::new())?;
        Ok(response.kvs().first().map(|kv| self.kv(kv)))
    }

    /// One range read from `rel`, tried again on failure for up to [`PATIENCE`].
    fn read(&self, op: &str, rel: &str, options: GetOptions) -> Result<GetResponse, StoreError> {
        let key = self.key(rel);
        let options = match self.pinned {
            Some(revision) => options.with_revision(revision),
            None => options,
        };
        self.retrying(|| {
            let mut kv = self.reader();
            self.call(op, kv.get(key.clone(), Some(options.clone())))
        })
    }

    /// Runs `request` until it succeeds, for up to [`PATIENCE`] (for requests that may be
    /// repeated: reads, granting a lease — one granted to a lost answer just expires).
    fn retrying<T>(
        &self,
        mut request: impl FnMut() -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let started = std::time::Instant::now();
        let mut pause = Duration::from_millis(50);
        loop {
            match request() {
                Ok(value) => return Ok(value),
                Err(e) if started.elapsed() + pause >= PATIENCE => return Err(e),
                Err(_) => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    /// Every key under `rel_prefix` (which should end in `/`), in key order.
    pub fn list(&self, rel_prefix: &str) -> Result<Vec<Kv>, StoreError> {
        self.list_from(rel_prefix, rel_prefix, None)
    }

    /// Keys from `rel_from` (inclusive) to the end of `rel_prefix`, at most `limit`, all as
    /// of one revision. Read in pages of 250 keys: a reply is limited in size (4 MiB by default),
    /// and ten thousand task records are more than that.
    pub fn list_from(
        &self,
        rel_prefix: &str,
        rel_from: &str,
        limit: Option<usize>,
    ) -> Result<Vec<Kv>, StoreError> {
        let end = prefix_end(&self.key(rel_prefix));
        let op = format!("list {}…", self.key(rel_from));
        let mut from = rel_from.to_owned();
        let mut kvs: Vec<Kv> = Vec::new();
        let mut revision = 0;
        loop {
            let want = limit.map_or(PAGE, |l| l.saturating_sub(kvs.len()).min(PAGE));
            let mut options = GetOptions::new()
                .with_range(end.clone())
                .with_limit(i64::try_from(want).unwrap_or(i64::MAX));
            if revision > 0 {
                options = options.with_revision(revision);
            }
            let response = self.read(&op, &from, options)?;
            if revision == 0 {
                revision = response.header().map_or(0, |h| h.revision());
            }
            let page: Vec<Kv> = response.kvs().iter().map(|kv| self.kv(kv)).collect();
            let Some(last) = page.last() else {
                break;
            };
            from = format!("{}\0", last.key);
            kvs.extend(page);
            if !response.more() || limit.is_some_and(|l| kvs.len() >= l) {
                break;
            }
        }
        Ok(kvs)
    }

    /// The last key under `rel_prefix` (its value left out): one read, however many keys.
    pub fn last_key(&self, rel_prefix: &str) -> Result<Option<Kv>, StoreError> {
        let options = GetOptions::new()
            .with_prefix()
            .with_sort(
                etcd_client::SortTarget::Key,
                etcd_client::SortOrder::Descend,
            )
            .with_limit(1)
            .with_keys_only();
        let response = self.read(
            &format!("last of {}", self.key(rel_prefix)),
            rel_prefix,
            options,
        )?;
        Ok(response.kvs().first().map(|kv| self.kv(kv)))
    }

    /// Runs one transaction; `what` names it in errors. When the request fails, the
    /// transaction may or may not have been applied: `applied` is asked (it reads back what
    /// the transaction wrote, and recognises it) — applied, its revision is the outcome; not
    /// applied, the transaction is sent again (for up to [`PATIENCE`]). Sending again is
    /// safe because every MAOS transaction compares before it writes: if the first request
    /// is applied late after all, one of the two finds its comparison failed.
    pub fn txn(
        &self,
        what: &str,
        txn: Txn,
        applied: impl Fn(&Etcd) -> Result<Option<i64>, StoreError>,
    ) -> Result<Outcome, StoreError> {
        self.writable(what)?;
        let started = std::time::Instant::now();
        loop {
            let mut client = self.client();
            let error = match self.call(what, client.txn(txn.clone())) {
                Ok(response) if response.succeeded() => {
                    return Ok(Outcome::Applied {
                        revision: response.header().map_or(0, |h| h.revision()),
                    });
                }
                Ok(_) => return Ok(Outcome::Refused),
                // A lease that ran out (a session of a process stopped too long): sending
                // again cannot help.
                Err(StoreError::Etcd { detail, .. }) if detail.contains("lease not found") => {
                    return Err(self.error(what, detail));
                }
                Err(e) => e,
            };
            if let Some(revision) = applied(self)? {
                return Ok(Outcome::Applied { revision });
            }
            if started.elapsed() >= PATIENCE {
                return Err(error);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A read key with the prefix taken off.
    pub fn kv(&self, kv: &etcd_client::KeyValue) -> Kv {
        let key = String::from_utf8_lossy(kv.key());
        let rel = key
            .strip_prefix(&self.prefix)
            .and_then(|k| k.strip_prefix('/'))
            .unwrap_or(&key)
            .to_owned();
        Kv {
            key: rel,
            value: kv.value().to_vec(),
            mod_revision: kv.mod_revision(),
            create_revision: kv.create_revision(),
            lease: kv.lease(),
        }
    }
}

/// Wake-ups on changes under a prefix (an etcd watch), for waiters and watchers.
pub struct EtcdWatch {
    etcd: Arc<Etcd>,
    stream: WatchStream,
}

impl std::fmt::Debug for EtcdWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdWatch").finish_non_exhaustive()
    }
}

impl Etcd {
    /// Watches every key under `rel_prefix` for changes made after this call: start it
    /// before reading, and a change made after the read always wakes [`EtcdWatch::wait`].
    pub fn watch(self: &Arc<Self>, rel_prefix: &str) -> Result<EtcdWatch, StoreError> {
        let key = self.key(rel_prefix);
        let now = self.read(
            &format!("revision of {key}"),
            rel_prefix,
            GetOptions::new().with_prefix().with_count_only(),
        )?;
        let mut client = self.client();
        let revision = now.header().map_or(0, |h| h.revision());
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(revision + 1);
        let stream = self.retrying(|| {
            self.call(
                &format!("watch {key}"),
                client.watch(key.clone(), Some(options.clone())),
            )
        })?;
        Ok(EtcdWatch {
            etcd: Arc::clone(self),
            stream,
        })
    }
}

impl EtcdWatch {
    /// Waits up to `timeout` for a change: true when one came (every change that came is
    /// consumed), false on timeout; an error when the watch broke (the caller re-reads and
    /// watches again, or polls).
    pub fn wait(&mut self, timeout: Duration) -> Result<bool, StoreError> {
        let stream = &mut self.stream;
        let woken = block(&self.etcd.endpoints, "watch", timeout, async {
            stream.message().await
        });
        match woken {
            Ok(Some(response)) if response.canceled() => Err(self.etcd.error(
                "watch",
                format!("the cluster ended the watch: {}", response.cancel_reason()),
            )),
            Ok(Some(response)) if response.events().is_empty() => Ok(false),
            Ok(Some(_)) => Ok(true),
            Ok(None) => Err(self.etcd.error("watch", "the watch stream closed".into())),
            Err(StoreError::Timeout { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// How long an [`EtcdMutex`] outlives a holder that stopped (its critical sections are short).
const MUTEX_TTL: Duration = Duration::from_secs(10);

/// Mutual exclusion between processes on any host — what a kernel lock file is on one
/// host: a key created under a short lease. Writes made while holding it compare its
/// [`guard`](Self::guard), so a holder that was paused past the lease and replaced can
/// write nothing. Released (the lease revoked) on drop; a holder on the waiter's host whose
/// process is provably gone loses it at once.
pub struct EtcdMutex {
    etcd: Arc<Etcd>,
    key: String,
    lease: i64,
    revision: i64,
}

impl std::fmt::Debug for EtcdMutex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdMutex").field("key", &self.key).finish()
    }
}

impl Etcd {
    /// Takes the mutex `rel` (e.g. `agents/.lock`), waiting up to `wait` for its holder.
    pub fn mutex(self: &Arc<Self>, rel: &str, wait: Duration) -> Result<EtcdMutex, StoreError> {
        let key = self.key(rel);
        let deadline = std::time::Instant::now() + wait;
        let holder = serde_json::to_string(&MutexHolder {
            process: crate::process::ProcessIdentity::current(),
            nonce: uuid::Uuid::new_v4().to_string(),
        })
        .map_err(|e| self.error("describe a mutex holder", e.to_string()))?;
        let mut lease = self.grant(MUTEX_TTL)?;
        let mut granted = std::time::Instant::now();
        let mut watch = None;
        loop {
            // A lease granted long ago (a long wait) could run out before the key is put.
            if granted.elapsed() > MUTEX_TTL / 2 {
                let _ = self.revoke(lease);
                lease = self.grant(MUTEX_TTL)?;
                granted = std::time::Instant::now();
            }
            let txn = Txn::new()
                .when([etcd_client::Compare::create_revision(
                    key.clone(),
                    etcd_client::CompareOp::Equal,
                    0,
                )])
                .and_then([etcd_client::TxnOp::put(
                    key.clone(),
                    holder.clone(),
                    Some(etcd_client::PutOptions::new().with_lease(lease)),
                )]);
            let outcome = self.txn(&format!("take {key}"), txn, |etcd| {
                Ok(etcd
                    .get(rel)?
                    .filter(|kv| kv.value == holder.as_bytes())
                    .map(|kv| kv.create_revision))
            })?;
            if let Outcome::Applied { revision, .. } = outcome {
                return Ok(EtcdMutex {
                    etcd: Arc::clone(self),
                    key,
                    lease,
                    revision,
                });
            }
            let current = self.get(rel)?;
            if let Some(held) = &current
                && MutexHolder::is_dead(&held.value)
            {
                // Its holder's process is provably gone (on this host): that holding ends
                // now rather than with its lease.
                self.delete_holding(rel, held.create_revision)?;
                continue;
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                let _ = self.revoke(lease);
                let held_by = current
                    .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
                    .unwrap_or_default();
                return Err(StoreError::Timeout {
                    endpoints: self.endpoints.join(","),
                    op: format!("waiting for {key} (held by {held_by})"),
                    secs: wait.as_secs(),
                });
            }
            match &mut watch {
                None => watch = Some(self.watch(rel)?),
                Some(w) => {
                    if w.wait(left.min(Duration::from_millis(500))).is_err() {
                        watch = None;
                    }
                }
            }
        }
    }

    /// Deletes `rel` if it is still the key created at `create_revision`.
    fn delete_holding(&self, rel: &str, create_revision: i64) -> Result<(), StoreError> {
        let key = self.key(rel);
        let txn = Txn::new()
            .when([etcd_client::Compare::create_revision(
                key.clone(),
                etcd_client::CompareOp::Equal,
                create_revision,
            )])
            .and_then([etcd_client::TxnOp::delete(key.clone(), None)]);
        self.txn(&format!("delete {key}"), txn, |etcd| {
            let still = etcd
                .get(rel)?
                .is_some_and(|kv| kv.create_revision == create_revision);
            Ok((!still).then_some(0))
        })
        .map(drop)
    }
}

/// Who holds an [`EtcdMutex`]: its process and a nonce of this holding.
#[derive(serde::Serialize, serde::Deserialize)]
struct MutexHolder {
    process: crate::process::ProcessIdentity,
    nonce: String,
}

impl MutexHolder {
    /// Whether `value` names a holder whose process is provably gone (judged on this host).
    fn is_dead(value: &[u8]) -> bool {
        serde_json::from_slice::<MutexHolder>(value)
            .is_ok_and(|h| h.process.liveness() == crate::process::Liveness::Dead)
    }
}

impl EtcdMutex {
    /// The condition a write made under this mutex must carry: the mutex is still this
    /// holder's.
    pub fn guard(&self) -> etcd_client::Compare {
        etcd_client::Compare::create_revision(
            self.key.clone(),
            etcd_client::CompareOp::Equal,
            self.revision,
        )
    }
}

impl Drop for EtcdMutex {
    fn drop(&mut self) {
        // A mutex that cannot be released now expires with its lease.
        let _ = self.etcd.revoke(self.lease);
    }
}

/// The first key after every key starting with `prefix` (etcd's range end for a prefix).
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Runs `future` on the process's runtime, waiting at most `within`.
fn block<T, E: std::fmt::Display>(
    endpoints: &[String],
    op: &str,
    within: Duration,
    future: impl Future<Output = Result<T, E>>,
) -> Result<T, StoreError> {
    let error = |detail: String| StoreError::Etcd {
        endpoints: endpoints.join(","),
        op: op.to_owned(),
        detail,
    };
    let runtime = runtime().map_err(error)?;
    match runtime.block_on(async { tokio::time::timeout(within, future).await }) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(error(e.to_string())),
        Err(_) => Err(StoreError::Timeout {
            endpoints: endpoints.join(","),
            op: op.to_owned(),
            secs: within.as_secs(),
        }),
    }
}

fn poisoned<T>(_: T) -> StoreError {
    StoreError::Etcd {
        endpoints: String::new(),
        op: "connect".into(),
        detail: "a thread panicked while connecting".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_next_key() {
        assert_eq!(prefix_end("maos/tasks/"), b"maos/tasks0".to_vec());
        assert_eq!(prefix_end("a\u{7f}"), b"a\x80".to_vec());
    }
}
