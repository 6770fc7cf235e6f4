//! [`Summary`]: what queries need of one task, packed so that the index holds tens of
//! thousands of them cheaply — every string of a task in one buffer, their ends in another
//! (two allocations a task, whatever its number of tags and dependencies).

use super::Status;
use super::record::Task;
use crate::priority::Priority;

/// What queries need of one task: read from the index, or taken from a record.
#[derive(Clone, PartialEq, Eq)]
pub struct Summary {
    status: Status,
    priority: Priority,
    created_ns: i64,
    version: u64,
    shape: Shape,
    /// Every string, one after the other: id, title, then the optional ones present
    /// (assignee, role, blocked reason), then tags, requires and dependencies.
    text: Box<str>,
    /// Where each string of `text` ends.
    ends: Box<[u32]>,
}

/// Which optional strings a summary has, and how long its lists are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Shape {
    /// Bit 0: assignee; bit 1: role; bit 2: blocked reason.
    pub(crate) present: u8,
    pub(crate) tags: u32,
    pub(crate) requires: u32,
    pub(crate) dependencies: u32,
}

const ASSIGNEE: u8 = 1;
const ROLE: u8 = 2;
const BLOCKED: u8 = 4;

impl Shape {
    /// How many strings a summary of this shape has.
    pub(crate) fn strings(&self) -> usize {
        2 + self.present.count_ones() as usize
            + self.tags as usize
            + self.requires as usize
            + self.dependencies as usize
    }
}

/// The fixed fields of a summary, as the index stores them beside its strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fixed {
    pub(crate) status: Status,
    pub(crate) priority: Priority,
    pub(crate) created_ns: i64,
    pub(crate) version: u64,
    pub(crate) shape: Shape,
}

/// A run of strings of a summary (its tags, requires or dependencies).
#[derive(Debug, Clone)]
pub struct Strs<'a> {
    text: &'a str,
    starts_at: u32,
    ends: &'a [u32],
}

impl<'a> Iterator for Strs<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let (end, rest) = self.ends.split_first()?;
        let s = self
            .text
            .get(self.starts_at as usize..*end as usize)
            .unwrap_or_default();
        self.starts_at = *end;
        self.ends = rest;
        Some(s)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.ends.len(), Some(self.ends.len()))
    }
}

impl ExactSizeIterator for Strs<'_> {}

impl Summary {
    /// The summary of a record.
    pub fn of(task: &Task) -> Self {
        let optional = [
            (ASSIGNEE, task.assignee.as_deref()),
            (ROLE, task.role.as_deref()),
            (BLOCKED, task.blocked_reason.as_deref()),
        ];
        let present = optional
            .iter()
            .filter(|(_, s)| s.is_some())
            .fold(0, |bits, (bit, _)| bits | bit);
        let strings = [task.id.as_str(), task.title.as_str()]
            .into_iter()
            .chain(optional.iter().filter_map(|(_, s)| *s))
            .chain(task.tags.iter().map(String::as_str))
            .chain(task.requires.iter().map(String::as_str))
            .chain(task.dependencies.iter().map(String::as_str));
        let mut text = String::new();
        let mut ends = Vec::new();
        for s in strings {
            text.push_str(s);
            ends.push(u32::try_from(text.len()).unwrap_or(u32::MAX));
        }
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Self {
            status: task.status,
            priority: task.priority,
            created_ns: i64::try_from(task.created_at.as_nanosecond()).unwrap_or(i64::MAX),
            version: task.version,
            shape: Shape {
                present,
                tags: count(task.tags.len()),
                requires: count(task.requires.len()),
                dependencies: count(task.dependencies.len()),
            },
            text: text.into_boxed_str(),
            ends: ends.into_boxed_slice(),
        }
    }

    /// A summary from the index's parts; `None` when they do not fit together (damage).
    pub(crate) fn from_parts(fixed: Fixed, text: &str, ends: Box<[u32]>) -> Option<Self> {
        let fits = ends.len() == fixed.shape.strings()
            && ends.windows(2).all(|w| w[0] <= w[1])
            && ends.last().is_some_and(|last| *last as usize == text.len())
            && ends.iter().all(|e| text.is_char_boundary(*e as usize));
        fits.then(|| Self {
            status: fixed.status,
            priority: fixed.priority,
            created_ns: fixed.created_ns,
            version: fixed.version,
            shape: fixed.shape,
            text: text.into(),
            ends,
        })
    }

    /// The fixed fields, the packed strings and their ends (what the index stores).
    pub(crate) fn parts(&self) -> (Fixed, &str, &[u32]) {
        let fixed = Fixed {
            status: self.status,
            priority: self.priority,
            created_ns: self.created_ns,
            version: self.version,
            shape: self.shape,
        };
        (fixed, &self.text, &self.ends)
    }

    /// Strings `from..from + n` of `text`.
    fn strs(&self, from: usize, n: usize) -> Strs<'_> {
        let starts_at = from
            .checked_sub(1)
            .and_then(|i| self.ends.get(i))
            .copied()
            .unwrap_or(0);
        Strs {
            text: &self.text,
            starts_at,
            ends: self.ends.get(from..from + n).unwrap_or_default(),
        }
    }

    fn string(&self, i: usize) -> &str {
        self.strs(i, 1).next().unwrap_or_default()
    }

    /// The optional string `bit`, if present.
    fn optional(&self, bit: u8) -> Option<&str> {
        let present = self.shape.present;
        (present & bit != 0).then(|| {
            let before = (present & (bit - 1)).count_ones() as usize;
            self.string(2 + before)
        })
    }

    fn lists_start(&self) -> usize {
        2 + self.shape.present.count_ones() as usize
    }

    /// The id.
    pub fn id(&self) -> &str {
        self.string(0)
    }

    /// The title.
    pub fn title(&self) -> &str {
        self.string(1)
    }

    /// The status.
    pub fn status(&self) -> Status {
        self.status
    }

    /// The priority.
    pub fn priority(&self) -> Priority {
        self.priority
    }

    /// When it was created (nanoseconds since the epoch).
    pub fn created_ns(&self) -> i64 {
        self.created_ns
    }

    /// The record's version.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Its assignee.
    pub fn assignee(&self) -> Option<&str> {
        self.optional(ASSIGNEE)
    }

    /// The role it needs.
    pub fn role(&self) -> Option<&str> {
        self.optional(ROLE)
    }

    /// Why it was blocked by hand (`None`: blocked, if at all, by dependencies only).
    pub fn blocked_reason(&self) -> Option<&str> {
        self.optional(BLOCKED)
    }

    /// Its tags.
    pub fn tags(&self) -> Strs<'_> {
        self.strs(self.lists_start(), self.shape.tags as usize)
    }

    /// Capabilities it requires.
    pub fn requires(&self) -> Strs<'_> {
        let from = self.lists_start() + self.shape.tags as usize;
        self.strs(from, self.shape.requires as usize)
    }

    /// Its dependencies.
    pub fn dependencies(&self) -> Strs<'_> {
        let from = self.lists_start() + self.shape.tags as usize + self.shape.requires as usize;
        self.strs(from, self.shape.dependencies as usize)
    }

    /// Whether an agent holding `role` (or none) may take it: it needs no role, or that one.
    pub fn open_to(&self, role: Option<&str>) -> bool {
        self.role().is_none_or(|needed| Some(needed) == role)
    }

    /// Whether `agent`, holding `role` and `capabilities`, may take it (see
    /// [`Task::takeable_by`]).
    pub fn takeable_by(&self, agent: &str, role: Option<&str>, capabilities: &[String]) -> bool {
        super::record::takeable(
            (self.assignee(), self.role(), self.requires()),
            agent,
            role,
            capabilities,
        )
    }
}

impl std::fmt::Debug for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Summary")
            .field("id", &self.id())
            .field("title", &self.title())
            .field("status", &self.status)
            .field("priority", &self.priority)
            .field("created_ns", &self.created_ns)
            .field("assignee", &self.assignee())
            .field("role", &self.role())
            .field("tags", &self.tags().collect::<Vec<_>>())
            .field("requires", &self.requires().collect::<Vec<_>>())
            .field("dependencies", &self.dependencies().collect::<Vec<_>>())
            .field("blocked_reason", &self.blocked_reason())
            .field("version", &self.version)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::NewTask;

    fn task(assignee: Option<&str>, role: Option<&str>, reason: Option<&str>) -> Task {
        let mut new = NewTask::new("Fix the ünïcode title");
        new.tags = vec!["a".into(), "".into(), "ccc".into()];
        new.requires = vec!["gpu".into()];
        new.dependencies = vec!["t-1".into(), "T-2".into()];
        new.assignee = assignee.map(str::to_owned);
        new.role = role.map(str::to_owned);
        let mut task = Task::created("t-9".into(), new, "me", Status::Pending, None);
        task.blocked_reason = reason.map(str::to_owned);
        task
    }

    #[test]
    fn every_field_reads_back_whatever_is_present() {
        for bits in 0..8u8 {
            let pick = |bit: u8, s: &'static str| (bits & bit != 0).then_some(s);
            let t = task(
                pick(ASSIGNEE, "bob"),
                pick(ROLE, "dev"),
                pick(BLOCKED, "why"),
            );
            let s = Summary::of(&t);
            assert_eq!(s.id(), "t-9");
            assert_eq!(s.title(), "Fix the ünïcode title");
            assert_eq!(s.assignee(), t.assignee.as_deref());
            assert_eq!(s.role(), t.role.as_deref());
            assert_eq!(s.blocked_reason(), t.blocked_reason.as_deref());
            assert_eq!(s.tags().collect::<Vec<_>>(), ["a", "", "ccc"]);
            assert_eq!(s.tags().len(), 3);
            assert_eq!(s.requires().collect::<Vec<_>>(), ["gpu"]);
            assert_eq!(s.dependencies().collect::<Vec<_>>(), ["t-1", "T-2"]);
            let (fixed, text, ends) = s.parts();
            assert_eq!(
                Summary::from_parts(fixed, text, ends.into()),
                Some(s.clone())
            );
        }
    }

    #[test]
    fn parts_that_do_not_fit_are_refused() {
        let s = Summary::of(&task(None, None, None));
        let (fixed, text, ends) = s.parts();
        let mut short: Vec<u32> = ends.to_vec();
        short.pop();
        assert!(Summary::from_parts(fixed, text, short.into()).is_none());
        let mut inside_a_char: Vec<u32> = ends.to_vec();
        inside_a_char[1] = 12; // inside "ü" ("t-9Fix the " is 11 bytes)
        assert!(Summary::from_parts(fixed, text, inside_a_char.into()).is_none());
        assert!(Summary::from_parts(fixed, &text[1..], ends.into()).is_none());
    }
}
