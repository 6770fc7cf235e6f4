//! Where a workspace's coordination state lives: `.maos/` files (the default) or an etcd
//! cluster shared by agents on several machines.
//!
//! [`StoreSpec`] is what `maos init --store` and `"store"` in `maos.json` say; [`Store`] is the
//! opened store a [`Workspace`](crate::Workspace) carries. The domains (tasks, …) keep their
//! logic in one place and reach their records through a small per-domain transaction trait
//! with one implementation per store (`task::store` for tasks): on files a change runs under
//! the domain's kernel lock, on etcd it runs optimistically and commits as one etcd
//! transaction comparing every record it read, run again when another writer got there first.

#[cfg(feature = "etcd")]
pub mod etcd;

use std::fmt;
#[cfg(feature = "etcd")]
use std::sync::Arc;

use std::path::{Path, PathBuf};

use crate::atomic::{self, Durability};
use crate::error::ErrorKind;
use crate::fs::{self, FsError};

/// The default key prefix of an etcd store given without one.
pub const DEFAULT_PREFIX: &str = "maos";

/// Where state lives, as written in `maos.json` and on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSpec {
    /// `.maos/` files (`files`).
    Files,
    /// `etcd://host:2379,host2:2379[/prefix]`.
    Etcd {
        /// `host:port` of each member to try.
        endpoints: Vec<String>,
        /// The key prefix every key of this workspace lives under (no leading or trailing
        /// `/`); workspaces with different prefixes never see each other's state.
        prefix: String,
    },
}

impl StoreSpec {
    /// Parses `files` or `etcd://host:port[,host:port…][/prefix]`.
    pub fn parse(text: &str) -> Result<Self, StoreError> {
        let bad = |reason: &str| StoreError::BadSpec {
            spec: text.to_owned(),
            reason: reason.to_owned(),
        };
        if text == "files" {
            return Ok(StoreSpec::Files);
        }
        let Some(rest) = text.strip_prefix("etcd://") else {
            return Err(bad(
                "expected `files` or `etcd://host:port[,host:port…][/prefix]`",
            ));
        };
        let (hosts, prefix) = match rest.split_once('/') {
            Some((hosts, prefix)) => (hosts, prefix.trim_matches('/')),
            None => (rest, DEFAULT_PREFIX),
        };
        let prefix = if prefix.is_empty() {
            DEFAULT_PREFIX
        } else {
            prefix
        };
        if !prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
            || prefix
                .split('/')
                .any(|part| part.is_empty() || part == "..")
        {
            return Err(bad(
                "the prefix may hold letters, digits, `-`, `_`, `.` and `/`-separated parts",
            ));
        }
        let mut endpoints = Vec::new();
        for host in hosts.split(',') {
            let Some((name, port)) = host.rsplit_once(':') else {
                return Err(bad(&format!("`{host}` has no port (host:port)")));
            };
            if name.is_empty() || port.parse::<u16>().is_err() {
                return Err(bad(&format!("`{host}` is not host:port")));
            }
            endpoints.push(host.to_owned());
        }
        Ok(StoreSpec::Etcd {
            endpoints,
            prefix: prefix.to_owned(),
        })
    }

    /// True for the file store.
    pub fn is_files(&self) -> bool {
        matches!(self, StoreSpec::Files)
    }
}

impl fmt::Display for StoreSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreSpec::Files => f.write_str("files"),
            StoreSpec::Etcd { endpoints, prefix } => {
                write!(f, "etcd://{}/{prefix}", endpoints.join(","))
            }
        }
    }
}

impl serde::Serialize for StoreSpec {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for StoreSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        StoreSpec::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Reaching or using the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A store spec that cannot be parsed.
    #[error("bad store `{spec}`: {reason}")]
    BadSpec {
        /// What was given.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The workspace names an etcd store but this build has none.
    #[error(
        "this workspace's state is in `{spec}`, but this maos was built without the etcd store; build it with `cargo build -p maos-cli --features etcd` (needs protoc)"
    )]
    NotBuilt {
        /// The recorded store.
        spec: String,
    },
    /// The cluster could not be reached or answered with an error.
    #[error("etcd at {endpoints}: {op}: {detail}")]
    Etcd {
        /// The members tried.
        endpoints: String,
        /// What was being done (`connect`, `get tasks/t-1a2b3c`, …).
        op: String,
        /// The client's error.
        detail: String,
    },
    /// The cluster did not answer within the time allowed.
    #[error("etcd at {endpoints}: {op}: no answer within {secs} s")]
    Timeout {
        /// The members tried.
        endpoints: String,
        /// What was being done.
        op: String,
        /// The time allowed.
        secs: u64,
    },
    /// A file could not be read or written.
    #[error(transparent)]
    Fs(#[from] FsError),
    /// A key in the store does not hold what it should (changed by hand).
    #[error("etcd key `{key}` is broken: {what}")]
    Broken {
        /// The key (with the workspace's prefix).
        key: String,
        /// What is wrong.
        what: String,
    },
}

impl StoreError {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            StoreError::BadSpec { .. } | StoreError::NotBuilt { .. } => ErrorKind::InvalidInput,
            StoreError::Etcd { .. } => ErrorKind::Io,
            StoreError::Timeout { .. } => ErrorKind::Timeout,
            StoreError::Broken { .. } => ErrorKind::Corrupt,
            StoreError::Fs(e) => e.kind(),
        }
    }
}

/// An opened store.
#[derive(Debug, Clone, Default)]
pub enum Store {
    /// `.maos/` files.
    #[default]
    Files,
    /// A connection to an etcd cluster (shared by every workspace handle of the process).
    #[cfg(feature = "etcd")]
    Etcd(Arc<etcd::Etcd>),
}

impl Store {
    /// Opens the store `spec` names: nothing to do for files; for etcd, this process's
    /// connection to that cluster and prefix (made on first use).
    pub fn open(spec: &StoreSpec) -> Result<Self, StoreError> {
        match spec {
            StoreSpec::Files => Ok(Store::Files),
            #[cfg(feature = "etcd")]
            StoreSpec::Etcd { endpoints, prefix } => {
                Ok(Store::Etcd(etcd::Etcd::shared(endpoints, prefix)?))
            }
            #[cfg(not(feature = "etcd"))]
            StoreSpec::Etcd { .. } => Err(StoreError::NotBuilt {
                spec: spec.to_string(),
            }),
        }
    }

    /// True for the file store.
    pub fn is_files(&self) -> bool {
        matches!(self, Store::Files)
    }

    /// Makes sure the store answers (etcd: one read), so a wrong address fails at once with
    /// the members it tried.
    pub fn check(&self) -> Result<(), StoreError> {
        match self {
            Store::Files => Ok(()),
            #[cfg(feature = "etcd")]
            Store::Etcd(etcd) => etcd.get("maos.json").map(drop),
        }
    }

    /// Every record named `*.json` directly in `rel_dir` (relative to `maos_dir`, the
    /// workspace's `.maos/`), sorted by name, with its contents. A record removed while
    /// listing is left out.
    pub fn records_in(
        &self,
        maos_dir: &Path,
        rel_dir: &Path,
    ) -> Result<Vec<(Spot, Vec<u8>)>, StoreError> {
        let spot = |name: &str| Spot::new(self, maos_dir, rel_dir.join(name));
        let is_record = |name: &str| name.ends_with(".json") && !name.starts_with('.');
        match self {
            Store::Files => {
                let mut names = fs::list_names(&maos_dir.join(rel_dir))?;
                names.sort();
                let mut records = Vec::new();
                for name in names.iter().filter(|n| is_record(n)) {
                    let spot = spot(name);
                    if let Some(bytes) = spot.read()? {
                        records.push((spot, bytes));
                    }
                }
                Ok(records)
            }
            #[cfg(feature = "etcd")]
            Store::Etcd(etcd) => {
                let dir = format!("{}/", rel_dir.to_string_lossy());
                Ok(etcd
                    .list(&dir)?
                    .into_iter()
                    .filter_map(|kv| {
                        let name = kv.key.strip_prefix(&dir)?.to_owned();
                        (!name.contains('/') && is_record(&name)).then(|| (spot(&name), kv.value))
                    })
                    .collect())
            }
        }
    }

    /// The names directly in `rel_dir` (relative to `maos_dir`): files and folders, or on
    /// etcd the next part of every key under it. Empty when there is nothing.
    pub fn names_in(&self, maos_dir: &Path, rel_dir: &Path) -> Result<Vec<String>, StoreError> {
        match self {
            Store::Files => Ok(fs::list_names(&maos_dir.join(rel_dir))?),
            #[cfg(feature = "etcd")]
            Store::Etcd(etcd) => {
                let dir = format!("{}/", rel_dir.to_string_lossy());
                let kvs = etcd.list(&dir)?;
                let mut names: Vec<String> = kvs
                    .iter()
                    .filter_map(|kv| kv.key.strip_prefix(&dir)?.split('/').next())
                    .map(str::to_owned)
                    .collect();
                names.dedup();
                Ok(names)
            }
        }
    }

    /// Every record under `rel_dir` (relative to `maos_dir`), at any depth: its path
    /// relative to `.maos/` and its contents, sorted by path.
    pub fn all_under(
        &self,
        maos_dir: &Path,
        rel_dir: &Path,
    ) -> Result<Vec<(PathBuf, Vec<u8>)>, StoreError> {
        match self {
            Store::Files => {
                let mut found = Vec::new();
                let mut dirs = vec![rel_dir.to_owned()];
                while let Some(dir) = dirs.pop() {
                    for name in fs::list_names(&maos_dir.join(&dir))? {
                        let rel = dir.join(&name);
                        let path = maos_dir.join(&rel);
                        if path.is_dir() {
                            dirs.push(rel);
                        } else if let Some(bytes) = fs::read_if_exists(&path)? {
                            found.push((rel, bytes));
                        }
                    }
                }
                found.sort();
                Ok(found)
            }
            #[cfg(feature = "etcd")]
            Store::Etcd(etcd) => Ok(etcd
                .list(&format!("{}/", rel_dir.to_string_lossy()))?
                .into_iter()
                .map(|kv| (PathBuf::from(kv.key), kv.value))
                .collect()),
        }
    }

    /// What this store is, as `maos.json` writes it.
    pub fn spec(&self) -> StoreSpec {
        match self {
            Store::Files => StoreSpec::Files,
            #[cfg(feature = "etcd")]
            Store::Etcd(etcd) => etcd.spec(),
        }
    }
}

/// A small record at a path under `.maos/` (a cursor, a position): the file, or on etcd the
/// key of the same path.
#[derive(Debug, Clone)]
pub struct Spot {
    store: Store,
    maos_dir: PathBuf,
    rel: PathBuf,
}

impl PartialEq for Spot {
    fn eq(&self, other: &Self) -> bool {
        self.path() == other.path()
    }
}

impl Eq for Spot {}

impl Spot {
    /// The record at `rel` (relative to `.maos/`) of the workspace whose `.maos/` is
    /// `maos_dir`, in `store`.
    pub fn new(store: &Store, maos_dir: &Path, rel: PathBuf) -> Self {
        Self {
            store: store.clone(),
            maos_dir: maos_dir.to_owned(),
            rel,
        }
    }

    /// How errors name it: the file, or `etcd:<prefix>/<path>`.
    pub fn path(&self) -> PathBuf {
        match &self.store {
            Store::Files => self.maos_dir.join(&self.rel),
            #[cfg(feature = "etcd")]
            Store::Etcd(etcd) => PathBuf::from(format!("etcd:{}", etcd.key(&self.key()))),
        }
    }

    #[cfg(feature = "etcd")]
    pub(crate) fn key(&self) -> String {
        self.rel.to_string_lossy().into_owned()
    }

    /// Its contents (`None`: it does not exist).
    pub fn read(&self) -> Result<Option<Vec<u8>>, StoreError> {
        match &self.store {
            Store::Files => Ok(fs::read_if_exists(&self.path())?),
            #[cfg(feature = "etcd")]
            Store::Etcd(etcd) => Ok(etcd.get(&self.key())?.map(|kv| kv.value)),
        }
    }

    /// Whether it exists.
    pub fn exists(&self) -> Result<bool, StoreError> {
        Ok(self.read()?.is_some())
    }

    /// Creates it with `bytes` if it does not exist: true when this call created it, false
    /// when it was there already (nothing written). Of racing creators exactly one wins.
    pub fn create(&self, bytes: &[u8], durability: Durability) -> Result<bool, StoreError> {
        match &self.store {
            Store::Files => {
                let path = self.path();
                if let Some(dir) = path.parent() {
                    fs::create_dir_all(dir)?;
                }
                match atomic::write_new(&self.maos_dir.join("tmp"), &path, bytes, durability) {
                    Ok(()) => Ok(true),
                    Err(atomic::PublishError::AlreadyExists { .. }) => Ok(false),
                    Err(atomic::PublishError::Io(e)) => Err(e.into()),
                }
            }
            #[cfg(feature = "etcd")]
            Store::Etcd(etcd) => {
                let rel = self.key();
                let key = etcd.key(&rel);
                let txn = etcd_client::Txn::new()
                    .when([etcd_client::Compare::create_revision(
                        key.clone(),
                        etcd_client::CompareOp::Equal,
                        0,
                    )])
                    .and_then([etcd_client::TxnOp::put(key, bytes, None)]);
                // Recognised by its value: a record written once, by its one creator.
                let outcome = etcd.txn("create a record", txn, |etcd| {
                    Ok(etcd::written(etcd.get(&rel)?, bytes))
                })?;
                Ok(outcome.applied())
            }
        }
    }

    /// Removes it (nothing to do when it does not exist).
    pub fn remove(&self) -> Result<(), StoreError> {
        match &self.store {
            Store::Files => Ok(fs::remove_file_if_exists(&self.path())?),
            #[cfg(feature = "etcd")]
            Store::Etcd(etcd) => etcd.delete(&self.key()),
        }
    }

    /// [`write`](Self::write) for a record that means nothing after `lasting` (a waiter's
    /// place in line): on etcd it is put under a lease of that length, so the cluster removes
    /// it when its writer is gone; a file stays until removed (its readers judge it stale).
    #[cfg_attr(not(feature = "etcd"), allow(unused_variables))]
    pub fn write_for(&self, bytes: &[u8], lasting: std::time::Duration) -> Result<(), StoreError> {
        match &self.store {
            Store::Files => self.write(bytes, Durability::Buffered),
            #[cfg(feature = "etcd")]
            Store::Etcd(etcd) => etcd.put(&self.key(), bytes, Some(etcd.grant(lasting)?)),
        }
    }

    /// Replaces its contents whole (a reader sees the old or the new, never a mix).
    pub fn write(&self, bytes: &[u8], durability: Durability) -> Result<(), StoreError> {
        match &self.store {
            Store::Files => {
                let path = self.path();
                if let Some(dir) = path.parent() {
                    fs::create_dir_all(dir)?;
                }
                Ok(atomic::write_replace(
                    &self.maos_dir.join("tmp"),
                    &path,
                    bytes,
                    durability,
                )?)
            }
            #[cfg(feature = "etcd")]
            Store::Etcd(etcd) => etcd.put(&self.key(), bytes, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_print_back() {
        assert_eq!(StoreSpec::parse("files").unwrap(), StoreSpec::Files);
        let spec = StoreSpec::parse("etcd://a:2379,b:2380/team/x").unwrap();
        assert_eq!(
            spec,
            StoreSpec::Etcd {
                endpoints: vec!["a:2379".into(), "b:2380".into()],
                prefix: "team/x".into()
            }
        );
        assert_eq!(spec.to_string(), "etcd://a:2379,b:2380/team/x");
        assert_eq!(
            StoreSpec::parse("etcd://127.0.0.1:2379")
                .unwrap()
                .to_string(),
            "etcd://127.0.0.1:2379/maos"
        );
        for bad in [
            "etcd://nohost",
            "etcd://a:port",
            "etcd://a:1/../x",
            "etcd://a:1/x//y",
            "redis://a:1",
            "etcd://:1",
        ] {
            let err = StoreSpec::parse(bad).unwrap_err();
            assert!(err.to_string().contains(bad), "{err}");
            assert_eq!(err.kind(), ErrorKind::InvalidInput);
        }
    }
}
