//! Multi-process tests: several OS processes against one `.maos/`.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// Tests and their helper write files by hand, on purpose (hand edits, damage, counters).
#![allow(clippy::disallowed_methods)]

mod agents;
mod case;
mod channels;
mod chaos;
mod cli;
mod clients;
#[cfg(feature = "etcd")]
mod etcd;
mod guard;
mod guide;
mod hooks;
mod hostile;
mod index;
mod journal;
mod leases;
mod locks;
mod mcp;
mod merge;
mod messaging;
mod metrics;
mod pictures;
mod presets;
mod reservations;
mod restore;
mod setup;
mod tasks;
mod ui;
