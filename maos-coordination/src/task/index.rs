//! The task index: a derived copy of what queries need from each record, kept in
//! `tasks/.index/`, so that `ready`, `claim`, `done` and `list` read one small file instead
//! of every record. The records stay the truth; the index is checked against them on every
//! use and repaired from them.
//!
//! **Files.** `active` holds an entry for every task that is not finished (not completed or
//! cancelled), rewritten whole (atomically) on each change; `final` holds the finished ones,
//! appended to as tasks finish. Each entry carries the record's file identity (size,
//! modification and change time in nanoseconds, inode). `active` also records the identity
//! of the `tasks/` folder itself as of the last reconciliation.
//!
//! **Checks.** Every view stats the folder: when its identity changed (a record created,
//! deleted or renamed over — an editor's save — by someone other than a MAOS writer), the
//! folder is listed and every record compared. Otherwise each unfinished task's record is
//! stat-ed (in parallel): a record whose identity differs from its entry (edited in place,
//! or written by a process that died before updating the index) is read again. Finished
//! tasks' records are stat-ed only by full views (`list`, `progress`, `export`, `doctor`):
//! so `ready` and `claim` cost the same whatever the number of completed tasks. A missing
//! or damaged index is rebuilt from the records.
//!
//! **Writers** (holding the tasks lock) update the entries of what they wrote. They record
//! the folder's new identity only when the folder was unchanged since the last
//! reconciliation, so a hand edit made before them is never hidden by their own write.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::record::Task;
use super::summary::{Fixed, Shape, Summary};
use super::{Status, decode};
use crate::atomic::{self, Durability};
use crate::fs::{self, FsError};
use crate::name;
use crate::priority::Priority;
use crate::record::RecordError;
use crate::workspace::IndexCheck;

const MAGIC: &[u8; 8] = b"MAOSIX02";

/// The bytes of a file identity in the index.
const FILE_ID_LEN: usize = 8 + 8 + 8 + 8;

/// `active`'s header: magic, checksum, generation, length of `final`, folder identity.
const HEADER_LEN: usize = MAGIC.len() + 8 + 8 + 8 + FILE_ID_LEN;

/// What identifies one version of a file: a write in place changes the size or the times, a
/// rename over it the inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct FileId {
    size: u64,
    /// Nanoseconds since the epoch.
    mtime: i64,
    ctime: i64,
    ino: u64,
}

/// Nanoseconds since the epoch of a (seconds, nanoseconds) file time.
fn nanos(secs: i64, nsec: i64) -> i64 {
    secs.saturating_mul(1_000_000_000).saturating_add(nsec)
}

impl FileId {
    fn of(meta: &std::fs::Metadata) -> Self {
        Self {
            size: meta.size(),
            mtime: nanos(meta.mtime(), meta.mtime_nsec()),
            ctime: nanos(meta.ctime(), meta.ctime_nsec()),
            ino: meta.ino(),
        }
    }

    fn stat(path: &Path) -> Option<Self> {
        std::fs::symlink_metadata(path).ok().map(|m| Self::of(&m))
    }
}

/// A stat field as `i64` (its type differs between platforms).
fn signed(n: impl TryInto<i64>) -> Option<i64> {
    n.try_into().ok()
}

/// The identity of `name` in the open folder `folder` (not following a link).
fn stat_at(folder: &std::fs::File, name: &str) -> Option<FileId> {
    let st = rustix::fs::statat(folder, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW).ok()?;
    Some(FileId {
        size: u64::try_from(st.st_size).ok()?,
        mtime: nanos(st.st_mtime, signed(st.st_mtime_nsec)?),
        ctime: nanos(st.st_ctime, signed(st.st_ctime_nsec)?),
        ino: st.st_ino,
    })
}

/// One entry: a summary and the file identity it was taken from. Entries are kept in sets
/// ordered by id and looked up by id.
#[derive(Debug, Clone)]
struct Entry {
    summary: Summary,
    file: FileId,
}

impl Entry {
    fn id(&self) -> &str {
        self.summary.id()
    }
}

impl Borrow<str> for Entry {
    fn borrow(&self) -> &str {
        self.id()
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.id() == other.id()
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.id().cmp(other.id())
    }
}

/// The index as loaded, and what a check found.
#[derive(Debug, Default)]
pub(crate) struct Index {
    /// Which snapshot this is: change-log records of another generation are stale.
    generation: u64,
    /// The length of `final` when this snapshot was saved: any other length (a lost,
    /// truncated or half-written segment) is damage.
    final_len: u64,
    folder: FileId,
    active: BTreeSet<Entry>,
    /// Finished tasks, when loaded.
    finished: Option<BTreeSet<Entry>>,
    /// Broken record files (their names), re-read at every check.
    broken: Vec<String>,
    /// The status of every finished task an unfinished one depends on (as of the last save):
    /// what the queue needs of finished tasks, without their segment.
    dep_status: BTreeMap<String, Status>,
    /// Unfinished records stat-ed while loading whose identity differed from the saved
    /// entry's: their ids and what the stat found (`None`: no such file).
    observed: Option<Vec<(String, Option<FileId>)>>,
    /// The ids the change log put, in order.
    logged: Vec<String>,
    /// Finished entries added since loading (appended to `final` on save; not kept when
    /// `final` is to be rewritten whole).
    appended: Vec<Entry>,
    /// An entry left `final` (a task reopened, a record gone): `final` is rewritten.
    final_rewrite: bool,
}

/// Which tasks a view checks and returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Unfinished tasks (finished dependencies are looked up by file).
    Active,
    /// Every task.
    All,
}

/// What a view of the index gives.
#[derive(Debug, Default)]
pub struct View {
    /// The summaries in scope, sorted by id.
    pub tasks: Vec<Summary>,
    /// Broken record files, each naming its file and problem.
    pub skipped: Vec<RecordError>,
    /// The index was missing or damaged and was rebuilt from the records.
    pub rebuilt: bool,
}

pub(crate) fn index_dir(tasks_dir: &Path) -> PathBuf {
    tasks_dir.join(".index")
}

impl Index {
    /// Loads the index of `tasks_dir` as it is on disk (`None`: missing or damaged).
    pub(crate) fn load(tasks_dir: &Path, with_finished: bool) -> Result<Option<Self>, FsError> {
        Self::load_observing(tasks_dir, with_finished, false)
    }

    /// [`load`](Self::load), stat-ing every unfinished record (on other threads) while the
    /// entries are decoded, for [`check`](Self::check) to use.
    pub(crate) fn load_observed(
        tasks_dir: &Path,
        with_finished: bool,
    ) -> Result<Option<Self>, FsError> {
        Self::load_observing(tasks_dir, with_finished, true)
    }

    fn load_observing(
        tasks_dir: &Path,
        with_finished: bool,
        observe: bool,
    ) -> Result<Option<Self>, FsError> {
        let dir = index_dir(tasks_dir);
        let Some(bytes) = fs::read_if_exists(&dir.join("active"))? else {
            return Ok(None);
        };
        let Some((mut index, entries)) = decode_header(&bytes) else {
            return Ok(None);
        };
        // The checksum is verified while the records are stat-ed: what was skimmed from
        // damaged bytes is thrown away with them.
        let decode = || verified(&bytes).then(|| decode_entries(entries.clone()))?;
        let active = if observe {
            let Some(recorded) = skim_entries(entries.clone()) else {
                return Ok(None);
            };
            let (active, differing) = stat_while(tasks_dir, &recorded, decode);
            index.observed = Some(
                differing
                    .into_iter()
                    .filter_map(|(i, now)| Some((recorded.get(i)?.0.to_owned(), now)))
                    .collect(),
            );
            active
        } else {
            decode()
        };
        let Some(active) = active else {
            return Ok(None);
        };
        index.active = active;
        if with_finished {
            match load_finished(&dir, index.final_len)? {
                Some(finished) => index.finished = Some(finished),
                None => return Ok(None),
            }
        }
        // Every save leaves a change log, empty or not: a missing one lost writes.
        let Some(log) = fs::read_if_exists(&dir.join("log"))? else {
            return Ok(None);
        };
        for (folder, entry) in log_records(&log, index.generation) {
            index.folder = folder;
            index.logged.push(entry.id().to_owned());
            index.put_entry(entry);
        }
        Ok(Some(index))
    }

    /// Builds the index from every record of `tasks_dir`.
    pub(crate) fn rebuild(tasks_dir: &Path) -> Result<Self, FsError> {
        let mut index = Index {
            folder: FileId::stat(tasks_dir).unwrap_or_default(),
            finished: Some(BTreeSet::new()),
            final_rewrite: true,
            ..Index::default()
        };
        for name in record_names(tasks_dir)? {
            index.read_record(tasks_dir, &name);
        }
        Ok(index)
    }

    /// Brings the index in line with the records (see the module docs); returns whether
    /// anything changed.
    pub(crate) fn check(
        &mut self,
        tasks_dir: &Path,
        scope: Scope,
        how: IndexCheck,
    ) -> Result<bool, FsError> {
        let mut changed = false;
        let folder = FileId::stat(tasks_dir).unwrap_or_default();
        if folder != self.folder {
            self.ensure_finished(tasks_dir)?;
            self.reconcile_names(tasks_dir)?;
            // The new identity is worth saving even when no record changed.
            self.folder = folder;
            changed = true;
        }
        if how == IndexCheck::Folder {
            if scope == Scope::All {
                self.ensure_finished(tasks_dir)?;
            }
            return Ok(changed);
        }
        let mut suspects = match self.observed.take() {
            // Stat-ed while loading: a record differing from the saved entry may be the
            // one the change log recorded since; entries only the log has are stat-ed now.
            Some(observed) => {
                let logged: Vec<&Entry> = self
                    .logged
                    .iter()
                    .filter_map(|id| self.active.get(id.as_str()))
                    .collect();
                let mut suspects = stale(tasks_dir, logged.into_iter());
                suspects.extend(observed.into_iter().filter_map(|(id, now)| {
                    let entry = self.active.get(id.as_str());
                    (entry.map(|e| e.file) != now && entry.is_some()).then_some(id)
                }));
                suspects
            }
            None => stale(tasks_dir, self.active.iter()),
        };
        if scope == Scope::All || self.finished.is_some() {
            self.ensure_finished(tasks_dir)?;
            if let Some(finished) = &self.finished {
                suspects.extend(stale(tasks_dir, finished.iter()));
            }
        }
        suspects.sort_unstable();
        suspects.dedup();
        if !suspects.is_empty() {
            tracing::debug!(
                records = suspects.len(),
                "task index: records changed by hand are read again"
            );
        }
        for id in suspects {
            self.forget(&id);
            self.read_record(tasks_dir, &format!("{}.json", name::file_name(&id)));
            changed = true;
        }
        let broken = std::mem::take(&mut self.broken);
        for name in broken {
            self.read_record(tasks_dir, &name);
        }
        Ok(changed)
    }

    /// Reads one record file into the index (or the broken list).
    fn read_record(&mut self, tasks_dir: &Path, file_name: &str) {
        use std::io::Read;
        let path = tasks_dir.join(file_name);
        // The identity is taken from the open file before its content is read: a rename
        // over it cannot mix one version's identity with another's content, and a write
        // during the read changes the identity again, so the next check reads it once more.
        let Ok(mut handle) = std::fs::File::open(&path) else {
            return;
        };
        let Ok(meta) = handle.metadata() else {
            return;
        };
        let mut bytes = Vec::new();
        if handle.read_to_end(&mut bytes).is_err() {
            return;
        }
        let file = FileId::of(&meta);
        match decode(&path, &bytes) {
            Ok(task) => self.put(&task, file),
            Err(_) => self.broken.push(file_name.to_owned()),
        }
    }

    /// Records `task` as written with file identity `file`.
    fn put(&mut self, task: &Task, file: FileId) {
        self.put_entry(Entry {
            summary: Summary::of(task),
            file,
        });
    }

    fn put_entry(&mut self, entry: Entry) {
        self.forget(entry.id());
        if entry.summary.status().is_final() {
            if !self.final_rewrite {
                self.appended.push(entry.clone());
            }
            if let Some(finished) = &mut self.finished {
                finished.insert(entry);
            }
        } else {
            self.active.insert(entry);
        }
    }

    fn forget(&mut self, id: &str) {
        self.active.remove(id);
        self.dep_status.remove(id);
        if let Some(finished) = &mut self.finished
            && finished.remove(id)
        {
            self.final_rewrite = true;
            self.appended.clear();
        }
        if !self.appended.is_empty() {
            self.appended.retain(|e| e.id() != id);
        }
    }

    /// Loads the finished segment when it is not loaded yet; what finished since (from the
    /// change log, or this process) goes on top.
    /// A damaged or lost segment makes the whole index be rebuilt from the records.
    fn ensure_finished(&mut self, tasks_dir: &Path) -> Result<(), FsError> {
        if self.finished.is_none() {
            match load_finished(&index_dir(tasks_dir), self.final_len)? {
                Some(mut finished) => {
                    for e in &self.appended {
                        finished.replace(e.clone());
                    }
                    self.finished = Some(finished);
                }
                None => *self = Index::rebuild(tasks_dir)?,
            }
        }
        Ok(())
    }

    /// Lists the folder: records not in the index are read, entries without a record go.
    fn reconcile_names(&mut self, tasks_dir: &Path) -> Result<(), FsError> {
        let listed = record_inodes(tasks_dir)?;
        let names: Vec<String> = listed.iter().map(|(n, _)| n.clone()).collect();
        let on_disk: std::collections::HashSet<String> = names
            .iter()
            .filter_map(|n| name::of_path(Path::new(n)))
            .collect();
        // A record replaced by rename (an editor's save) keeps its name but not its inode.
        let replaced: Vec<String> = listed
            .iter()
            .filter_map(|(n, ino)| {
                let id = name::of_path(Path::new(n))?;
                let entry = self
                    .active
                    .get(id.as_str())
                    .or_else(|| self.finished.as_ref()?.get(id.as_str()))?;
                (entry.file.ino != *ino).then_some(id)
            })
            .collect();
        for id in replaced {
            self.forget(&id);
        }
        let gone: Vec<String> = self
            .all_ids()
            .filter(|id| !on_disk.contains(*id))
            .map(str::to_owned)
            .collect();
        for id in gone {
            self.forget(&id);
        }
        self.broken.retain(|n| names.contains(n));
        for file_name in names {
            let known = name::of_path(Path::new(&file_name)).is_some_and(|id| self.contains(&id));
            if !known && !self.broken.contains(&file_name) {
                self.read_record(tasks_dir, &file_name);
            }
        }
        Ok(())
    }

    fn all_ids(&self) -> impl Iterator<Item = &str> {
        self.active
            .iter()
            .chain(self.finished.iter().flatten())
            .map(Entry::id)
    }

    fn contains(&self, id: &str) -> bool {
        self.active.contains(id) || self.finished.as_ref().is_some_and(|f| f.contains(id))
    }

    /// Whether it indexes no task and no broken file.
    pub(crate) fn is_empty(&self) -> bool {
        self.active.is_empty()
            && self.broken.is_empty()
            && self.finished.as_ref().is_none_or(BTreeSet::is_empty)
    }

    /// The summaries in `scope`, sorted by id, and the broken files.
    pub(crate) fn into_view(mut self, tasks_dir: &Path, scope: Scope, rebuilt: bool) -> View {
        self.take_view(tasks_dir, scope, rebuilt)
    }

    /// [`into_view`](Self::into_view), moving the entries in scope out of the index: for
    /// [`Scope::Active`], what it knows of finished tasks
    /// ([`finished_status`](Self::finished_status)) stays.
    pub(crate) fn take_view(&mut self, tasks_dir: &Path, scope: Scope, rebuilt: bool) -> View {
        let active = std::mem::take(&mut self.active);
        let mut tasks: Vec<Summary> = active.into_iter().map(|e| e.summary).collect();
        if scope == Scope::All
            && let Some(finished) = self.finished.take()
        {
            tasks.extend(finished.into_iter().map(|e| e.summary));
            tasks.sort_by(|a, b| a.id().cmp(b.id()));
        }
        let skipped = self
            .broken
            .iter()
            .filter_map(|n| {
                let path = tasks_dir.join(n);
                let bytes = fs::read_if_exists(&path).ok().flatten()?;
                decode(&path, &bytes).err()
            })
            .collect();
        View {
            tasks,
            skipped,
            rebuilt,
        }
    }

    /// The dependencies of unfinished tasks that are not unfinished themselves.
    pub(crate) fn dependencies_outside(&self) -> impl Iterator<Item = &str> {
        self.active
            .iter()
            .flat_map(|e| e.summary.dependencies())
            .filter(|d| !self.active.contains(*d))
    }

    /// What the index knows of the finished task `id`'s status, without loading the finished
    /// segment: from it when loaded, from the change log, or from the statuses of finished
    /// dependencies recorded at the last save. `None`: not known here (read the record).
    pub(crate) fn finished_status(&self, id: &str) -> Option<Status> {
        if let Some(finished) = &self.finished {
            return finished.get(id).map(|e| e.summary.status());
        }
        self.appended
            .iter()
            .rev()
            .find(|e| e.id() == id)
            .map(|e| e.summary.status())
            .or_else(|| self.dep_status.get(id).copied())
    }

    /// Where the index disagrees with `records` (the readable records, by id): one line per
    /// task, as the index has it and as the record does.
    pub(crate) fn disagreements(&self, records: &BTreeMap<String, Summary>) -> Vec<String> {
        let mut indexed: BTreeMap<&str, &Summary> =
            self.active.iter().map(|e| (e.id(), &e.summary)).collect();
        for e in self.finished.iter().flatten() {
            indexed.entry(e.id()).or_insert(&e.summary);
        }
        let mut found = Vec::new();
        for (id, record) in records {
            match indexed.get(id.as_str()) {
                None => found.push(format!("`{id}` is not in the index")),
                Some(entry) if *entry != record => found.push(format!(
                    "`{id}`: the index says {} (version {}), the record {} (version {})",
                    entry.status(),
                    entry.version(),
                    record.status(),
                    record.version()
                )),
                Some(_) => {}
            }
        }
        for id in indexed.keys().filter(|id| !records.contains_key(**id)) {
            found.push(format!("`{id}` is in the index but has no readable record"));
        }
        found
    }

    /// The unfinished tasks that depend on `id`.
    pub(crate) fn dependents(&self, id: &str) -> Vec<String> {
        self.active
            .iter()
            .filter(|e| e.summary.dependencies().any(|d| d == id))
            .map(|e| e.id().to_owned())
            .collect()
    }

    /// Saves the index: `active` whole; `final` appended with what finished since `before`
    /// (or rewritten when entries left it). `folder_unchanged`: the folder was as last
    /// reconciled before the caller's own writes, so its new identity may be recorded.
    /// Saves the index whole (the caller holds the tasks lock): `final` first (appended
    /// with what finished, or rewritten when an entry left it), then `active` as a new
    /// generation, then an empty change log. A crash between two steps leaves a task in both
    /// segments (settled by its record at the next check) or a log of the old generation
    /// (ignored).
    pub(crate) fn save(&mut self, tasks_dir: &Path, tmp_dir: &Path) -> Result<(), FsError> {
        let dir = index_dir(tasks_dir);
        fs::create_dir_all(&dir)?;
        if self.final_rewrite {
            self.ensure_finished(tasks_dir)?;
            let mut bytes = Vec::new();
            for e in self.finished.iter().flatten() {
                put_record(&mut bytes, e);
            }
            atomic::write_replace(tmp_dir, &dir.join("final"), &bytes, Durability::Buffered)?;
        } else if !self.appended.is_empty() || !dir.join("final").exists() {
            append_finished(&dir, &self.appended)?;
        }
        self.appended.clear();
        self.final_rewrite = false;
        self.final_len = std::fs::metadata(dir.join("final")).map_or(0, |m| m.len());
        self.ensure_finished(tasks_dir)?;
        let finished = self.finished.as_ref();
        self.dep_status = self
            .dependencies_outside()
            .filter_map(|d| Some((d.to_owned(), finished?.get(d)?.summary.status())))
            .collect();
        self.generation = self.generation.wrapping_add(1);
        atomic::write_replace(
            tmp_dir,
            &dir.join("active"),
            &encode_active(self),
            Durability::Buffered,
        )?;
        atomic::write_replace(tmp_dir, &dir.join("log"), &[], Durability::Buffered)
    }
}

/// What a writer needs to know of the index before it writes: its generation, the folder's
/// identity as last reconciled, and how long the change log is.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Recorded {
    generation: u64,
    folder: FileId,
    logged: usize,
}

/// How many change-log records a writer lets pile up before it compacts them into `active`.
const LOG_LIMIT: usize = 256;

impl Recorded {
    /// Reads the header of `active` and the change log (not the entries): `None` when there
    /// is no usable index (the next reader builds one).
    pub(crate) fn read(tasks_dir: &Path) -> Option<Self> {
        use std::io::Read;
        let dir = index_dir(tasks_dir);
        let mut head = [0u8; HEADER_LEN];
        std::fs::File::open(dir.join("active"))
            .and_then(|mut f| f.read_exact(&mut head))
            .ok()?;
        let mut r = Reader {
            bytes: head.strip_prefix(MAGIC)?,
        };
        r.u64()?; // the checksum: the entries are not read here
        let generation = r.u64()?;
        r.u64()?; // the length of `final`
        let mut recorded = Recorded {
            generation,
            folder: r.file()?,
            logged: 0,
        };
        // No change log: not a usable index (the next reader rebuilds it).
        let log = fs::read_if_exists(&dir.join("log")).ok()??;
        for (folder, _) in log_records(&log, generation) {
            recorded.folder = folder;
            recorded.logged += 1;
        }
        Some(recorded)
    }

    /// Whether the folder is as last reconciled: nothing unseen happened in it.
    pub(crate) fn folder_unchanged(&self, tasks_dir: &Path) -> bool {
        FileId::stat(tasks_dir) == Some(self.folder)
    }

    /// Appends `tasks`, just written by the caller (holding the tasks lock), to the change
    /// log; with `folder_unchanged`, the folder's new identity too (else the old one stays,
    /// and the next reader reconciles). Compacts the log into `active` once it is long.
    pub(crate) fn log_written(
        &self,
        tasks_dir: &Path,
        tmp_dir: &Path,
        tasks: &[Task],
        folder_unchanged: bool,
    ) -> Result<(), FsError> {
        let folder = if folder_unchanged {
            FileId::stat(tasks_dir).unwrap_or_default()
        } else {
            self.folder
        };
        let mut bytes = Vec::new();
        for task in tasks {
            let path = tasks_dir.join(format!("{}.json", name::file_name(&task.id)));
            let Some(file) = FileId::stat(&path) else {
                continue; // gone already: the next reader reconciles
            };
            let mut body = Vec::new();
            put_u64(&mut body, self.generation);
            put_file(&mut body, &folder);
            put_entry(
                &mut body,
                &Entry {
                    summary: Summary::of(task),
                    file,
                },
            );
            put_framed(&mut bytes, &body);
        }
        append(&index_dir(tasks_dir).join("log"), &bytes)?;
        if self.logged + tasks.len() >= LOG_LIMIT
            && let Some(mut index) = Index::load(tasks_dir, false)?
        {
            index.save(tasks_dir, tmp_dir)?;
        }
        Ok(())
    }
}

/// The valid change-log records of `generation`, in order, up to the first damaged one (a
/// writer that died mid-append): the folder identity each carries, and its entry.
fn log_records(log: &[u8], generation: u64) -> Vec<(FileId, Entry)> {
    let mut r = Reader { bytes: log };
    let mut records = Vec::new();
    while !r.bytes.is_empty() {
        let record = r
            .framed()
            .and_then(|mut inner| Some((inner.u64()?, inner.file()?, inner.entry()?)));
        match record {
            Some((g, folder, entry)) if g == generation => records.push((folder, entry)),
            Some(_) => {}
            None => break,
        }
    }
    records
}

/// The record file names of `tasks_dir` (`<id>.json`, hidden files aside).
fn record_names(tasks_dir: &Path) -> Result<Vec<String>, FsError> {
    Ok(record_inodes(tasks_dir)?
        .into_iter()
        .map(|(n, _)| n)
        .collect())
}

/// The record file names of `tasks_dir` with their inodes, as the listing gives them (no
/// stat per file), sorted.
fn record_inodes(tasks_dir: &Path) -> Result<Vec<(String, u64)>, FsError> {
    use std::os::unix::fs::DirEntryExt;
    let entries = match std::fs::read_dir(tasks_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(FsError::new("list directory", tasks_dir, e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| FsError::new("list directory", tasks_dir, e))?;
        if let Ok(name) = entry.file_name().into_string()
            && !name.starts_with('.')
            && name.ends_with(".json")
        {
            names.push((name, entry.ino()));
        }
    }
    names.sort();
    Ok(names)
}

/// The ids among `entries` whose record's identity differs from the entry's.
fn stale<'a>(tasks_dir: &Path, entries: impl Iterator<Item = &'a Entry>) -> Vec<String> {
    let recorded: Vec<(&str, FileId)> = entries.map(|e| (e.id(), e.file)).collect();
    let ((), differing) = stat_while(tasks_dir, &recorded, || ());
    differing
        .into_iter()
        .filter_map(|(i, _)| Some(recorded.get(i)?.0.to_owned()))
        .collect()
}

/// Runs `work` while the records of `recorded` (task id, identity as recorded) are stat-ed
/// on as many threads as there are cores (up to four): helpers start at once, this thread
/// joins them when `work` is done. Returns `work`'s result and, for each record whose
/// identity differs, its place in `recorded` and what the stat found.
fn stat_while<T>(
    tasks_dir: &Path,
    recorded: &[(&str, FileId)],
    work: impl FnOnce() -> T,
) -> (T, Vec<(usize, Option<FileId>)>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    const CHUNK: usize = 512;
    // Names are looked up relative to an open handle on the folder: no path walk per file.
    let folder = std::fs::File::open(tasks_dir).ok();
    let next = AtomicUsize::new(0);
    let check = || {
        let mut differing = Vec::new();
        let mut file_name = String::new();
        loop {
            let start = next.fetch_add(CHUNK, Ordering::Relaxed);
            let Some(chunk) = recorded.get(start..(start + CHUNK).min(recorded.len())) else {
                break;
            };
            if chunk.is_empty() {
                break;
            }
            for (i, (id, file)) in chunk.iter().enumerate() {
                file_name.clear();
                name::push_file_name(&mut file_name, id);
                file_name.push_str(".json");
                let now = match &folder {
                    Some(folder) => stat_at(folder, &file_name),
                    None => FileId::stat(&tasks_dir.join(&file_name)),
                };
                if now != Some(*file) {
                    differing.push((start + i, now));
                }
            }
        }
        differing
    };
    let helpers = if recorded.len() < 4 * CHUNK {
        0
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get().min(4)) - 1
    };
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..helpers).map(|_| scope.spawn(check)).collect();
        let result = work();
        let mut differing = check();
        for handle in handles {
            differing.extend(
                handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            );
        }
        (result, differing)
    })
}

// --- the file format: little-endian, length-prefixed strings, an FNV-1a checksum ---

/// FNV-1a over 8-byte words (and the tail bytes): a cheap check that catches damage.
fn fnv(bytes: &[u8]) -> u64 {
    let step = |h: u64, v: u64| (h ^ v).wrapping_mul(0x100_0000_01b3);
    let mut words = bytes.chunks_exact(8);
    let mut h = 0xcbf2_9ce4_8422_2325_u64 ^ bytes.len() as u64;
    for w in &mut words {
        let mut word = [0u8; 8];
        word.copy_from_slice(w);
        h = step(h, u64::from_le_bytes(word));
    }
    words
        .remainder()
        .iter()
        .fold(h, |h, b| step(h, u64::from(*b)))
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_i64(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_u32(out, u32::try_from(s.len()).unwrap_or(u32::MAX));
    out.extend_from_slice(s.as_bytes());
}

fn put_count(out: &mut Vec<u8>, n: usize) {
    put_u32(out, u32::try_from(n).unwrap_or(u32::MAX));
}

fn put_file(out: &mut Vec<u8>, f: &FileId) {
    put_u64(out, f.size);
    put_i64(out, f.mtime);
    put_i64(out, f.ctime);
    put_u64(out, f.ino);
}

/// A status's place in [`Status::ALL`].
fn status_code(status: Status) -> u8 {
    Status::ALL
        .iter()
        .position(|s| *s == status)
        .and_then(|i| u8::try_from(i).ok())
        .unwrap_or(u8::MAX)
}

const PRIORITIES: [Priority; 4] = [
    Priority::Low,
    Priority::Medium,
    Priority::High,
    Priority::Critical,
];

/// An entry: the file identity, the summary's fixed fields, the ends of its strings, then
/// the strings themselves (UTF-8, one after the other).
fn put_entry(out: &mut Vec<u8>, e: &Entry) {
    put_file(out, &e.file);
    let (fixed, text, ends) = e.summary.parts();
    out.push(status_code(fixed.status));
    out.push(fixed.priority as u8);
    out.push(fixed.shape.present);
    put_u32(out, fixed.shape.tags);
    put_u32(out, fixed.shape.requires);
    put_u32(out, fixed.shape.dependencies);
    put_i64(out, fixed.created_ns);
    put_u64(out, fixed.version);
    for end in ends {
        put_u32(out, *end);
    }
    out.extend_from_slice(text.as_bytes());
}

/// One `final` record: the entry, framed.
fn put_record(out: &mut Vec<u8>, e: &Entry) {
    let mut body = Vec::new();
    put_entry(&mut body, e);
    put_framed(out, &body);
}

/// A framed record: its length, its checksum, the body.
fn put_framed(out: &mut Vec<u8>, body: &[u8]) {
    put_u64(out, body.len() as u64);
    put_u64(out, fnv(body));
    out.extend_from_slice(body);
}

fn encode_active(index: &Index) -> Vec<u8> {
    let mut body = Vec::new();
    put_u64(&mut body, index.generation);
    put_u64(&mut body, index.final_len);
    put_file(&mut body, &index.folder);
    put_count(&mut body, index.broken.len());
    for name in &index.broken {
        put_str(&mut body, name);
    }
    put_count(&mut body, index.dep_status.len());
    for (id, status) in &index.dep_status {
        put_str(&mut body, id);
        body.push(status_code(*status));
    }
    put_count(&mut body, index.active.len());
    for e in &index.active {
        put_entry(&mut body, e);
    }
    let mut out = MAGIC.to_vec();
    put_u64(&mut out, fnv(&body));
    out.extend_from_slice(&body);
    out
}

/// A cursor over index bytes; every read is checked (`None`: damaged).
#[derive(Clone)]
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.bytes.len() < n {
            return None;
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    /// The next framed record (length, checksum, body): a reader over its body, `None` when
    /// it is torn or damaged.
    fn framed(&mut self) -> Option<Reader<'a>> {
        let len = usize::try_from(self.u64()?).ok()?;
        let sum = self.u64()?;
        let body = self.take(len)?;
        (fnv(body) == sum).then_some(Reader { bytes: body })
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.array()?))
    }

    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.array()?))
    }

    fn str(&mut self) -> Option<&'a str> {
        let n = self.u32()? as usize;
        std::str::from_utf8(self.take(n)?).ok()
    }

    fn status(&mut self) -> Option<Status> {
        Status::ALL.get(usize::from(self.u8()?)).copied()
    }

    /// A count of things each at least `min_size` bytes long: `None` when that many could
    /// not fit in what is left (damage, not a reason to allocate).
    fn count(&mut self, min_size: usize) -> Option<usize> {
        let n = self.u32()? as usize;
        (n.saturating_mul(min_size) <= self.bytes.len()).then_some(n)
    }

    fn file(&mut self) -> Option<FileId> {
        Some(FileId {
            size: self.u64()?,
            mtime: self.i64()?,
            ctime: self.i64()?,
            ino: self.u64()?,
        })
    }

    /// An entry's id and file identity, the rest skipped (and checked when decoded).
    fn skim_entry(&mut self) -> Option<(&'a str, FileId)> {
        let file = self.file()?;
        let shape = self.fixed()?.shape;
        let ends = self.take(shape.strings().checked_mul(4)?)?;
        let id_len = u32::from_le_bytes(ends.get(..4)?.try_into().ok()?) as usize;
        let last = u32::from_le_bytes(ends.get(ends.len().checked_sub(4)?..)?.try_into().ok()?);
        let text = self.take(last as usize)?;
        Some((std::str::from_utf8(text.get(..id_len)?).ok()?, file))
    }

    /// The fixed fields of an entry (see `put_entry`).
    fn fixed(&mut self) -> Option<Fixed> {
        let status = self.status()?;
        let priority = *PRIORITIES.get(usize::from(self.u8()?))?;
        let present = self.u8()?;
        let shape = Shape {
            present: (present < 8).then_some(present)?,
            tags: self.u32()?,
            requires: self.u32()?,
            dependencies: self.u32()?,
        };
        let fixed = Fixed {
            status,
            priority,
            created_ns: self.i64()?,
            version: self.u64()?,
            shape,
        };
        Some(fixed)
    }

    fn entry(&mut self) -> Option<Entry> {
        let file = self.file()?;
        let fixed = self.fixed()?;
        let raw = self.take(fixed.shape.strings().checked_mul(4)?)?;
        let ends: Box<[u32]> = raw
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let len = *ends.last()? as usize;
        let text = std::str::from_utf8(self.take(len)?).ok()?;
        let summary = Summary::from_parts(fixed, text, ends)?;
        Some(Entry { summary, file })
    }
}

/// Whether `active`'s bytes match their checksum.
fn verified(bytes: &[u8]) -> bool {
    let mut r = Reader { bytes };
    r.take(MAGIC.len()) == Some(MAGIC) && r.u64().is_some_and(|sum| fnv(r.bytes) == sum)
}

/// The header of `active` as an index without entries, and a reader over the entries
/// (the checksum is not verified here: see [`verified`]).
fn decode_header(bytes: &[u8]) -> Option<(Index, Reader<'_>)> {
    let rest = bytes.strip_prefix(MAGIC)?;
    let mut r = Reader { bytes: rest };
    r.u64()?; // the checksum
    let generation = r.u64()?;
    let final_len = r.u64()?;
    let folder = r.file()?;
    let broken = (0..r.count(4)?)
        .map(|_| r.str().map(str::to_owned))
        .collect::<Option<_>>()?;
    let dep_status = (0..r.count(5)?)
        .map(|_| Some((r.str()?.to_owned(), r.status()?)))
        .collect::<Option<_>>()?;
    let index = Index {
        dep_status,
        generation,
        final_len,
        folder,
        broken,
        ..Index::default()
    };
    Some((index, r))
}

/// The entries of `active` (`None`: damaged).
fn decode_entries(mut r: Reader<'_>) -> Option<BTreeSet<Entry>> {
    let entries = (0..r.count(64)?)
        .map(|_| r.entry())
        .collect::<Option<_>>()?;
    r.bytes.is_empty().then_some(entries)
}

/// The id and recorded identity of each entry of `active`, read without decoding the rest.
fn skim_entries(mut r: Reader<'_>) -> Option<Vec<(&str, FileId)>> {
    (0..r.count(64)?).map(|_| r.skim_entry()).collect()
}

/// The finished entries (`None`: damaged; a later record of an id replaces an earlier one).
fn load_finished(dir: &Path, expected_len: u64) -> Result<Option<BTreeSet<Entry>>, FsError> {
    let Some(bytes) = fs::read_if_exists(&dir.join("final"))? else {
        return Ok(None);
    };
    if bytes.len() as u64 != expected_len {
        return Ok(None);
    }
    let mut r = Reader { bytes: &bytes };
    let mut finished = BTreeSet::new();
    while !r.bytes.is_empty() {
        let record = r.framed().and_then(|mut inner| inner.entry());
        match record {
            Some(e) => {
                finished.replace(e);
            }
            None => return Ok(None),
        }
    }
    Ok(Some(finished))
}

fn append_finished(dir: &Path, entries: &[Entry]) -> Result<(), FsError> {
    let mut bytes = Vec::new();
    for e in entries {
        put_record(&mut bytes, e);
    }
    append(&dir.join("final"), &bytes)
}

/// Appends `bytes` to the log at `path` in one write.
fn append(path: &Path, bytes: &[u8]) -> Result<(), FsError> {
    use std::io::Write;
    #[expect(
        clippy::disallowed_methods,
        reason = "append-only logs: each record carries its length and checksum, so a torn tail is detected"
    )]
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path);
    file.and_then(|mut f| f.write_all(bytes))
        .map_err(|e| FsError::new("append to", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::{NewTask, Pick, Tasks};
    use crate::workspace::Workspace;

    fn workspace() -> (tempfile::TempDir, Workspace) {
        let dir = tempfile::tempdir().unwrap();
        let ws = Workspace::init(dir.path()).unwrap().workspace;
        (dir, ws)
    }

    #[test]
    fn a_write_to_a_small_index_goes_to_its_change_log() {
        let (_dir, ws) = workspace();
        let tasks = Tasks::new(&ws);
        tasks.rebuild_index().unwrap(); // no entry: the header and three counts
        let log = index_dir(tasks.dir()).join("log");
        assert_eq!(std::fs::metadata(&log).unwrap().len(), 0);
        tasks.create("me", NewTask::new("first"), None).unwrap();
        assert!(std::fs::metadata(&log).unwrap().len() > 0, "not logged");
        assert_eq!(tasks.ready().unwrap().tasks.len(), 1);
    }

    #[test]
    fn the_active_segment_reads_back_and_any_damage_is_seen() {
        let (_dir, ws) = workspace();
        let tasks = Tasks::new(&ws);
        let a = tasks.create("me", NewTask::new("a"), None).unwrap();
        let mut new = NewTask::new("b, with ünïcode");
        new.dependencies = vec![a.id.clone()];
        new.tags = vec!["x".into(), "y".into()];
        new.role = Some("dev".into());
        tasks.create("me", new, None).unwrap();
        tasks.claim("me", Pick::Named(&a.id)).unwrap();
        tasks
            .set_status(&a.id, "me", Status::Completed, None)
            .unwrap();
        std::fs::write(tasks.dir().join("broken.json"), "{").unwrap();
        tasks.rebuild_index().unwrap();
        let bytes = std::fs::read(index_dir(tasks.dir()).join("active")).unwrap();
        let index = Index::load(tasks.dir(), true).unwrap().unwrap();
        assert_eq!(
            encode_active(&index),
            bytes,
            "saved and encoded again differ"
        );
        assert_eq!(index.broken, ["broken.json"]);
        assert_eq!(index.active.len(), 1);
        assert_eq!(index.finished_status(&a.id), Some(Status::Completed));
        for at in (0..bytes.len()).step_by(7) {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x20;
            assert!(
                !verified(&damaged) || decode_header(&damaged).is_none(),
                "damage at byte {at} not seen"
            );
        }
        assert!(!verified(&bytes[..bytes.len() - 1]));
    }
}
