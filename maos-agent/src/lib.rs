//! Toolkit for an agent process that joins a MAOS workspace.
//!
//! For now it re-exports the coordination primitives an agent uses; identity,
//! heartbeats and the worker loop arrive with their own issue.
#![warn(missing_docs)]

pub use maos_coordination as coordination;
