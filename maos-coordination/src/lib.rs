//! File-system-native coordination for teams of agents working on one repository.
//!
//! Every primitive lives as plain, human-readable JSON files under a `.maos/` directory at
//! the workspace root; processes coordinate only through those files. No server, no daemon.
//!
//! ```
//! use maos_coordination::{Workspace, channel::{Channel, ChannelName, Draft}};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let ws = Workspace::init(dir.path())?.workspace;
//! let general = Channel::open(&ws, ChannelName::new("general")?);
//! general.send("planner", Draft::new(serde_json::json!({"hello": "world"})))?;
//! let batch = general.read_after(0, None)?;
//! assert_eq!(batch.messages[0].seq, 1);
//! # Ok(()) }
//! ```
//!
//! The crate never prints, exits or reads environment variables: it returns values and typed
//! errors, and the `maos` CLI decides how to present them.
#![warn(missing_docs)]
// Tests plant broken files by hand, on purpose.
#![cfg_attr(test, allow(clippy::disallowed_methods))]

pub mod agents;
pub mod atomic;
pub mod channel;
pub mod deadlock;
pub mod doctor;
pub mod duration;
pub mod error;
pub mod fs;
#[cfg(feature = "merge")]
pub mod git;
pub mod journal;
pub mod lock;
#[cfg(feature = "merge")]
pub mod merge;
pub mod metrics;
pub mod migrate;
pub mod name;
pub mod pictures;
pub mod priority;
pub mod process;
pub mod progress;
pub mod quarantine;
pub mod record;
pub mod recovery;
pub mod snapshot;
pub mod store;
pub mod task;
pub mod vote;
pub mod wake;
pub mod workspace;

pub use error::ErrorKind;
pub use priority::Priority;
pub use workspace::Workspace;
