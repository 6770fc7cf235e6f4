//! Validation of the names users give: channels, topics, agents, roles, resources, task ids
//! and tags.
//!
//! A valid name can never escape `.maos/` or hide a file: it is 1–128 bytes of ASCII letters,
//! digits and `. _ - @ + =`, does not start with `.` or `-`, and is never `.` or `..`.
//! Hierarchical names (resources such as `src/main.rs`) are `/`-separated segments that each
//! follow those rules, up to 255 bytes in all.
//!
//! This module is also the one place a name becomes a file name ([`file_name`]): names are
//! case-sensitive (`Alice` and `alice` are two agents), but macOS and Windows file systems
//! usually are not, so an upper-case letter is written as `%` and the letter in lower case
//! (`Alice` → `%alice.json`) and `/` as `%2F`. Two different names therefore never fold to
//! one file name, on any file system; [`from_file_name`] reads a file name back.

use std::fmt;

use crate::error::ErrorKind;

/// The longest single name or path segment, in bytes.
pub const MAX_SEGMENT_LEN: usize = 128;
/// The longest hierarchical name, in bytes.
pub const MAX_PATH_LEN: usize = 255;
/// The longest [`file_name`] of a name, in bytes: room is left for a suffix such as `.json`
/// or `.fence` within the 255 bytes file systems allow.
pub const MAX_FILE_NAME_LEN: usize = 240;

/// Starts an escape in a file name: `%` and a lower-case letter is that letter in upper
/// case; `%2F` is `/`.
const ESCAPE: char = '%';
/// How `/` is written in a file name.
const SLASH: &str = "%2F";

/// What a name names; used in error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// A message channel.
    Channel,
    /// A broadcast topic.
    Topic,
    /// An agent identity.
    Agent,
    /// A role agents can take.
    Role,
    /// A lockable resource.
    Resource,
    /// A task id.
    Task,
    /// A task tag.
    Tag,
}

impl fmt::Display for NameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameKind::Channel => "channel",
            NameKind::Topic => "topic",
            NameKind::Agent => "agent",
            NameKind::Role => "role",
            NameKind::Resource => "resource",
            NameKind::Task => "task id",
            NameKind::Tag => "tag",
        })
    }
}

/// A name was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid {kind} name {name:?}: {reason}")]
pub struct NameError {
    /// What the name was for.
    pub kind: NameKind,
    /// The refused name (shown escaped, so control characters are visible).
    pub name: String,
    /// Why it was refused.
    pub reason: String,
}

impl NameError {
    /// Names are user input: always [`ErrorKind::InvalidInput`].
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::InvalidInput
    }

    fn new(kind: NameKind, name: &str, reason: impl Into<String>) -> Self {
        Self {
            kind,
            name: name.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Checks a single-segment name (channel, topic, agent, role).
pub fn validate(kind: NameKind, name: &str) -> Result<(), NameError> {
    validate_segment(name, MAX_SEGMENT_LEN).map_err(|reason| NameError::new(kind, name, reason))?;
    validate_file_name(kind, name)
}

/// The file name (without suffix) that stands for a valid name: `%` and the lower-case
/// letter for each upper-case letter, `%2F` for each `/`, every other character as it is.
/// Distinct names give file names that stay distinct when a file system ignores case.
pub fn file_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 8);
    push_file_name(&mut out, name);
    out
}

/// Appends [`file_name`]`(name)` to `out` (for callers naming many files with one buffer).
pub fn push_file_name(out: &mut String, name: &str) {
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            out.push(ESCAPE);
            out.push(c.to_ascii_lowercase());
        } else if c == '/' {
            out.push_str(SLASH);
        } else {
            out.push(c);
        }
    }
}

/// The name a [`file_name`] stands for; `None` when MAOS would not have written it: a bad
/// escape, or an upper-case letter (a file named before names were escaped, or by hand,
/// which a case-insensitive file system cannot tell from its lower-case twin).
pub fn from_file_name(file_name: &str) -> Option<String> {
    let mut out = String::with_capacity(file_name.len());
    let mut chars = file_name.chars();
    while let Some(c) = chars.next() {
        if c.is_ascii_uppercase() {
            return None;
        }
        if c != ESCAPE {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some(letter) if letter.is_ascii_lowercase() => out.push(letter.to_ascii_uppercase()),
            Some('2') if chars.next() == Some('F') => out.push('/'),
            _ => return None,
        }
    }
    Some(out)
}

/// What a file written before names were escaped should be renamed to: `Alice.json` →
/// `%alice.json`, `src%2FMain.rs.lock` → `src%2F%main.rs.lock`. `None` when the file name is
/// already one MAOS writes, or is no name at all.
pub fn legacy_file_name_fix(file_name: &str) -> Option<String> {
    let (stem, suffix) = split_suffix(file_name);
    if from_file_name(stem).is_some() {
        return None;
    }
    let name = stem.replace(SLASH, "/");
    if name.contains(ESCAPE) || validate_path(NameKind::Resource, &name).is_err() {
        return None;
    }
    Some(format!("{}{suffix}", self::file_name(&name)))
}

/// Splits a record suffix (`.json`, `.lock`, …) off a file name.
fn split_suffix(file_name: &str) -> (&str, &str) {
    for suffix in [".json", ".lock", ".fence", ".wake"] {
        if let Some(stem) = file_name.strip_suffix(suffix) {
            return (stem, suffix);
        }
    }
    (file_name, "")
}

/// The name a record file (`%alice.json`) stands for, when it is one MAOS would write.
pub fn of_path(path: &std::path::Path) -> Option<String> {
    from_file_name(path.file_stem()?.to_str()?)
}

fn validate_file_name(kind: NameKind, name: &str) -> Result<(), NameError> {
    // The length of `file_name(name)`, without building it (names are checked on every read
    // of every record).
    let len = name.len()
        + name.bytes().filter(u8::is_ascii_uppercase).count()
        + (SLASH.len() - 1) * name.bytes().filter(|b| *b == b'/').count();
    if len > MAX_FILE_NAME_LEN {
        return Err(NameError::new(
            kind,
            name,
            format!(
                "its file name would be {len} bytes, longer than {MAX_FILE_NAME_LEN} \
                 (each upper-case letter takes two bytes, each `/` three)"
            ),
        ));
    }
    Ok(())
}

/// Checks a hierarchical name made of `/`-separated segments (a resource path).
pub fn validate_path(kind: NameKind, name: &str) -> Result<(), NameError> {
    if name.len() > MAX_PATH_LEN {
        return Err(NameError::new(
            kind,
            name,
            format!("longer than {MAX_PATH_LEN} bytes"),
        ));
    }
    if name.starts_with('/') {
        return Err(NameError::new(kind, name, "absolute paths are not allowed"));
    }
    for segment in name.split('/') {
        validate_segment(segment, MAX_SEGMENT_LEN).map_err(|reason| {
            NameError::new(kind, name, format!("segment {segment:?}: {reason}"))
        })?;
    }
    validate_file_name(kind, name)
}

fn validate_segment(segment: &str, max_len: usize) -> Result<(), String> {
    if segment.is_empty() {
        return Err("it is empty".into());
    }
    if segment == "." || segment == ".." {
        return Err("`.` and `..` are not allowed".into());
    }
    if segment.len() > max_len {
        return Err(format!("longer than {max_len} bytes"));
    }
    if let Some(c) = segment.chars().find(|c| !is_allowed(*c)) {
        return Err(if c.is_control() {
            "it contains a control character".into()
        } else if c == '/' || c == '\\' {
            "it contains a path separator".into()
        } else {
            format!("it contains {c:?}; use ASCII letters, digits and . _ - @ + =")
        });
    }
    if segment.starts_with('.') || segment.starts_with('-') {
        return Err("it must not start with `.` or `-`".into());
    }
    Ok(())
}

fn is_allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@' | '+' | '=')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_ordinary_names() {
        for name in [
            "general",
            "agent-2",
            "alice@host.example",
            "v1.2",
            "a_b+c=d",
        ] {
            assert_eq!(validate(NameKind::Channel, name), Ok(()), "{name}");
        }
        assert_eq!(validate_path(NameKind::Resource, "src/main.rs"), Ok(()));
    }

    #[test]
    fn refuses_escapes_and_oddities() {
        for name in [
            "", ".", "..", "../x", "a/b", "a\\b", ".hidden", "-flag", "a\nb", "a\0b", "é",
        ] {
            assert!(
                validate(NameKind::Channel, name).is_err(),
                "{name:?} accepted"
            );
        }
        for path in ["/etc/passwd", "a/../b", "a//b", "a/", "../x", "a/.git"] {
            assert!(
                validate_path(NameKind::Resource, path).is_err(),
                "{path:?} accepted"
            );
        }
        let long = "x".repeat(MAX_SEGMENT_LEN + 1);
        assert!(validate(NameKind::Agent, &long).is_err());
    }

    #[test]
    fn error_names_the_problem() {
        let err = validate(NameKind::Channel, "a\u{7}b").unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"invalid channel name "a\u{7}b": it contains a control character"#
        );
    }

    #[test]
    fn file_names_escape_case_and_slashes() {
        assert_eq!(file_name("alice"), "alice");
        assert_eq!(file_name("Alice"), "%alice");
        assert_eq!(file_name("src/Button.tsx"), "src%2F%button.tsx");
        assert_eq!(from_file_name("%alice").as_deref(), Some("Alice"));
        assert_eq!(
            from_file_name("src%2F%button.tsx").as_deref(),
            Some("src/Button.tsx")
        );
        for not_ours in ["Alice", "%", "%2", "%2f", "%A", "a%-b"] {
            assert_eq!(from_file_name(not_ours), None, "{not_ours}");
        }
    }

    #[test]
    fn legacy_file_names_are_renamed_to_their_escaped_form() {
        assert_eq!(
            legacy_file_name_fix("Alice.json").as_deref(),
            Some("%alice.json")
        );
        assert_eq!(legacy_file_name_fix("alice.json"), None);
        assert_eq!(legacy_file_name_fix("%alice.json"), None);
        assert_eq!(
            legacy_file_name_fix("src%2FMain.rs.lock").as_deref(),
            Some("src%2F%main.rs.lock")
        );
        assert_eq!(legacy_file_name_fix("Bad%x.json"), None);
        assert_eq!(
            legacy_file_name_fix("Db.fence").as_deref(),
            Some("%db.fence")
        );
    }

    #[test]
    fn names_too_long_once_escaped_are_refused() {
        let shouting = "A".repeat(MAX_SEGMENT_LEN);
        let err = validate(NameKind::Agent, &shouting).unwrap_err();
        assert!(err.reason.contains("file name would be 256 bytes"), "{err}");
        assert_eq!(
            validate(NameKind::Agent, &"a".repeat(MAX_SEGMENT_LEN)),
            Ok(())
        );
    }

    proptest! {
        /// The case-insensitive file system test: two different names never map to file
        /// names that differ only in case, so they never share a file where case is ignored
        /// (APFS and HFS+ by default, NTFS, SMB shares). And every file name reads back.
        #[test]
        fn distinct_names_never_fold_to_one_file(
            a in "[A-Za-z0-9._@+=-]{1,12}(/[A-Za-z0-9._@+=-]{1,6}){0,2}",
            b in "[A-Za-z0-9._@+=-]{1,12}(/[A-Za-z0-9._@+=-]{1,6}){0,2}",
        ) {
            let (fa, fb) = (file_name(&a), file_name(&b));
            prop_assert_eq!(from_file_name(&fa), Some(a.clone()));
            if a != b {
                prop_assert_ne!(fa.to_lowercase(), fb.to_lowercase());
            }
        }

        /// Case variants of one name in particular: every one has its own file.
        #[test]
        fn case_variants_have_their_own_files(name in "[a-z]{1,8}", mask in any::<u8>()) {
            let variant: String = name
                .chars()
                .enumerate()
                .map(|(i, c)| if mask >> (i % 8) & 1 == 1 { c.to_ascii_uppercase() } else { c })
                .collect();
            if variant != name {
                prop_assert_ne!(file_name(&variant).to_lowercase(), file_name(&name).to_lowercase());
            }
        }

        /// Whatever the input, an accepted name is a plain relative path that stays inside
        /// the directory it is joined to.
        #[test]
        fn accepted_paths_stay_inside(name in ".{0,40}") {
            if validate_path(NameKind::Resource, &name).is_ok() {
                let path = std::path::Path::new(&name);
                prop_assert!(path.is_relative());
                for component in path.components() {
                    prop_assert!(matches!(component, std::path::Component::Normal(_)));
                }
            }
        }
    }
}
