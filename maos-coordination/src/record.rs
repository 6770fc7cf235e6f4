//! Reading and encoding the JSON records kept under `.maos/`.
//!
//! Records are pretty-printed JSON with a stable field order (the order of the Rust struct),
//! so a person can read and edit them. A record that does not parse is reported with its path,
//! the line and column, and what is wrong, so a hand-broken file is easy to find and fix.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ErrorKind;
use crate::fs::{self, FsError};

/// A record could not be read or decoded.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The file could not be read.
    #[error(transparent)]
    Io(#[from] FsError),
    /// The file holds something that is not a valid record of the expected kind.
    #[error("`{}` is not a valid {what}: {detail}", path.display())]
    Corrupt {
        /// The broken file.
        path: PathBuf,
        /// What the file should have been ("message", "workspace config").
        what: &'static str,
        /// Line, column and the decoder's complaint, or another reason.
        detail: String,
    },
}

impl RecordError {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            RecordError::Io(e) => e.kind(),
            RecordError::Corrupt { .. } => ErrorKind::Corrupt,
        }
    }

    /// A corrupt-record error for a reason other than JSON syntax.
    pub fn corrupt(path: &Path, what: &'static str, detail: impl Into<String>) -> Self {
        RecordError::Corrupt {
            path: path.to_owned(),
            what,
            detail: detail.into(),
        }
    }
}

/// Decodes a record from bytes read from `path` (used only to name the file in errors).
pub fn decode<T: DeserializeOwned>(
    path: &Path,
    what: &'static str,
    bytes: &[u8],
) -> Result<T, RecordError> {
    serde_json::from_slice(bytes).map_err(|e| {
        let detail = if e.line() == 0 {
            e.to_string()
        } else {
            // serde_json's message already ends with "at line L column C"; say it first instead.
            let message = e.to_string();
            let message = message
                .rsplit_once(" at line ")
                .map_or(message.as_str(), |(head, _)| head);
            format!("line {}, column {}: {message}", e.line(), e.column())
        };
        RecordError::corrupt(path, what, detail)
    })
}

/// Reads and decodes a record.
pub fn read<T: DeserializeOwned>(path: &Path, what: &'static str) -> Result<T, RecordError> {
    let bytes = fs::read(path)?;
    decode(path, what, &bytes)
}

/// Encodes a record as pretty JSON followed by a newline.
pub fn encode<T: Serialize>(record: &T) -> Vec<u8> {
    // Serializing our own record types into a Vec cannot fail: they hold only strings, numbers,
    // maps with string keys and `serde_json::Value`s.
    let mut bytes = serde_json::to_vec_pretty(record).unwrap_or_else(|e| {
        unreachable!("MAOS records always serialize to JSON: {e}");
    });
    bytes.push(b'\n');
    bytes
}
