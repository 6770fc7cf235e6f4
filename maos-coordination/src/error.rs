//! The coarse classification shared by every error type of the crate.
//!
//! Each module has its own `thiserror` enum carrying paths and sources; each of them can say
//! which [`ErrorKind`] it is, so a front end (the CLI) can choose an exit code without
//! matching on every variant of every module.

/// What kind of failure an error is, independent of the module that raised it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Reading or writing the file system failed (I/O, permissions, full disk).
    Io,
    /// A file under `.maos/` exists but does not hold a valid record.
    Corrupt,
    /// The caller passed something invalid: a bad name, a payload over the limits.
    InvalidInput,
    /// The thing asked for does not exist.
    NotFound,
    /// Another agent holds or changed what the caller wanted.
    Conflict,
    /// A wait ran out of time.
    Timeout,
    /// The caller was chosen as the victim of a deadlock and must give up what it waits for.
    Deadlock,
}

impl ErrorKind {
    /// `io`, `corrupt`, `invalid_input`, `not_found`, `conflict`, `timeout`, `deadlock`: how
    /// machine-readable outputs (MCP tool errors) name it.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Io => "io",
            ErrorKind::Corrupt => "corrupt",
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Deadlock => "deadlock",
        }
    }
}
