//! The CLI's one error type: what went wrong, and the exit code it deserves.

use std::fmt;
use std::process::ExitCode;

use maos_coordination::ErrorKind;

/// The exit codes of `maos` (docs/cli.md, "Exit codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 1: I/O, corrupt record, anything else.
    Error = 1,
    /// 2: bad flag, bad name, malformed argument.
    Usage = 2,
    /// 3: a wait ran out of time.
    Timeout = 3,
    /// 4: what was asked for does not exist.
    NotFound = 4,
    /// 5: someone else holds or changed it.
    Conflict = 5,
    /// 6: chosen as the victim of a deadlock.
    Deadlock = 6,
}

impl From<ErrorKind> for Exit {
    fn from(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::Io | ErrorKind::Corrupt => Exit::Error,
            ErrorKind::InvalidInput => Exit::Usage,
            ErrorKind::NotFound => Exit::NotFound,
            ErrorKind::Conflict => Exit::Conflict,
            ErrorKind::Timeout => Exit::Timeout,
            ErrorKind::Deadlock => Exit::Deadlock,
        }
    }
}

/// A failed command.
pub struct CliError {
    /// The exit code.
    pub exit: Exit,
    /// What failed, with its causes.
    pub error: anyhow::Error,
    /// What the user could do about it.
    pub hint: Option<String>,
    /// Exit 0 without a word (stdout was closed by the reader).
    pub quiet: bool,
}

impl CliError {
    /// An error with an explicit exit code.
    pub fn new(exit: Exit, error: impl Into<anyhow::Error>) -> Self {
        Self {
            exit,
            error: error.into(),
            hint: None,
            quiet: false,
        }
    }

    /// Marks the error as a quiet, successful end (a closed pipe).
    pub fn quiet(mut self) -> Self {
        self.quiet = true;
        self
    }

    /// Adds a hint line.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Prints `error: …` (with the cause chain) and the hint to stderr; returns the code.
    pub fn report(&self) -> ExitCode {
        if self.quiet {
            return ExitCode::SUCCESS;
        }
        eprintln!("error: {}", Chain(self.error.as_ref()));
        if let Some(hint) = &self.hint {
            eprintln!("hint: {hint}");
        }
        ExitCode::from(self.exit as u8)
    }
}

/// Displays an error and its causes as one sentence: `outer: cause: root cause`.
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

macro_rules! from_library_error {
    ($($ty:ty),* $(,)?) => {$(
        impl From<$ty> for CliError {
            fn from(e: $ty) -> Self {
                let corrupt = e.kind() == ErrorKind::Corrupt;
                let error = CliError::new(e.kind().into(), e);
                if corrupt {
                    error.with_hint("`maos doctor` lists every broken file; `maos doctor --fix` moves them to .maos/quarantine/")
                } else {
                    error
                }
            }
        }
    )*};
}

from_library_error!(
    maos_coordination::channel::ChannelError,
    maos_coordination::name::NameError,
    maos_coordination::record::RecordError,
    maos_coordination::fs::FsError,
    maos_coordination::lock::LockError,
    maos_coordination::doctor::DoctorError,
    maos_coordination::task::TaskError,
    maos_coordination::merge::MergeError,
    maos_coordination::agents::AgentError,
    maos_coordination::vote::VoteError,
    maos_coordination::metrics::MetricsError,
    maos_coordination::store::StoreError,
    maos_coordination::migrate::MigrateError,
    maos_agent::WorkerError,
    maos_agent::worktree::WorktreeError,
    maos_agent::guard::GuardError,
    maos_agent::preset::PresetError,
);

impl From<maos_coordination::workspace::WorkspaceError> for CliError {
    fn from(e: maos_coordination::workspace::WorkspaceError) -> Self {
        use maos_coordination::workspace::WorkspaceError;
        match e {
            WorkspaceError::NotFound { .. } => CliError::new(Exit::Error, e)
                .with_hint("create one with `maos init`, or point at one with --workspace DIR or MAOS_WORKSPACE"),
            other => CliError::new(other.kind().into(), other),
        }
    }
}
