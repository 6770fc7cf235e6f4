//! git errors, said once: what MAOS was doing in the message, libgit2's error as the cause
//! (printed after it by whoever shows the chain — never repeated inside the message).

use crate::error::ErrorKind;

/// A git operation failed.
#[derive(Debug, thiserror::Error)]
#[error("git could not {context}")]
pub struct GitError {
    /// What was being done ("open the repository at /r", "find branch `x`").
    pub context: String,
    /// libgit2's error.
    #[source]
    pub source: Libgit2Error,
}

/// libgit2's error, displayed as its message alone (without its class and code numbers).
#[derive(Debug)]
pub struct Libgit2Error(pub git2::Error);

impl std::fmt::Display for Libgit2Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.message())
    }
}

impl std::error::Error for Libgit2Error {}

impl From<git2::Error> for Libgit2Error {
    fn from(e: git2::Error) -> Self {
        Self(e)
    }
}

impl GitError {
    /// A git error for an I/O failure around git (a work tree's folder).
    pub fn io(context: String, error: &std::io::Error) -> Self {
        Self {
            context,
            source: Libgit2Error(git2::Error::from_str(&error.to_string())),
        }
    }

    /// The kind of this error: not found when libgit2 says so, else I/O.
    pub fn kind(&self) -> ErrorKind {
        match self.source.0.code() {
            git2::ErrorCode::NotFound => ErrorKind::NotFound,
            _ => ErrorKind::Io,
        }
    }
}

/// Adds what was being done to a libgit2 result.
pub trait GitContext<T> {
    /// `context` says what was being done, as in "git could not `context`".
    fn git(self, context: impl FnOnce() -> String) -> Result<T, GitError>;
}

impl<T> GitContext<T> for Result<T, git2::Error> {
    fn git(self, context: impl FnOnce() -> String) -> Result<T, GitError> {
        self.map_err(|source| GitError {
            context: context(),
            source: Libgit2Error(source),
        })
    }
}
