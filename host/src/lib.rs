//! # bluesphere-host
//!
//! The host side of BlueSphere's near-field updates, shared by the `bluesphere` CLI and the
//! Studio (through `bluesphere-api`): a transport seam ([`transport`]: link, clock,
//! connector, typed device addresses), one driver that runs the core's sans-IO
//! [`Push`](bluesphere_core::proto::Push) engine and single requests over any link with
//! reconnection and resume ([`driver`]), serial ports ([`serial`]), a link simulator
//! ([`link`], [`sim`]) for tests and the throughput benchmark, the activation-code registry
//! and the production station. Library code never prints: progress arrives as
//! [`driver::Event`]s and failures as [`HostError`]s with a machine-readable kind.

pub mod ble;
pub mod codes;
pub mod driver;
mod error;
pub mod link;
pub mod pty;
pub mod registry;
pub mod serial;
pub mod sim;
pub mod station;
pub mod transport;

pub use error::HostError;
pub use transport::{Address, Clock, Connector, DeviceEntry, Link, LinkError, WallClock};
