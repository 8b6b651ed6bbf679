//! # bluesphere-host
//!
//! The host side of BlueSphere's near-field updates, shared by the `bluesphere` CLI and the
//! Studio: serial ports (listing with USB ids, opening with errors that say what to do),
//! a push driver that runs the core's sans-IO [`Push`](bluesphere_core::proto::Push) engine
//! over a real port with reconnection and resume, and a link simulator ([`link`], [`sim`])
//! for tests and the throughput benchmark. Library code never prints: progress arrives as
//! [`serial::Event`]s and failures as [`HostError`]s with a machine-readable kind.

pub mod codes;
pub mod link;
pub mod registry;
pub mod serial;
pub mod sim;
pub mod station;

pub use serial::{HostError, PortInfo};
