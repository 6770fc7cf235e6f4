//! Validation of the names users give: channels, topics, agents, roles, resources, task ids
//! and tags.
//!
//! A valid name can never escape `.maos/` or hide a file: it is 1–128 bytes of ASCII letters,
//! digits and `. _ - @ + =`, does not start with `.` or `-`, and is never `.` or `..`.
//! Hierarchical names (resources such as `src/main.rs`) are `/`-separated segments that each
//! follow those rules, up to 255 bytes in all.

use std::fmt;

use crate::error::ErrorKind;

/// The longest single name or path segment, in bytes.
pub const MAX_SEGMENT_LEN: usize = 128;
/// The longest hierarchical name, in bytes.
pub const MAX_PATH_LEN: usize = 255;

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
    validate_segment(name, MAX_SEGMENT_LEN).map_err(|reason| NameError::new(kind, name, reason))
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
    Ok(())
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

    proptest! {
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
