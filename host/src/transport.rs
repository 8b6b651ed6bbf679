//! The transport seam: what a push needs from a link, whatever carries the frames.
//!
//! | piece | serial ([`crate::serial`]) | simulator ([`crate::sim`]) | BLE (next) |
//! |---|---|---|---|
//! | [`Link`]: send a frame, receive bytes until a deadline | a serial port | [`crate::link::SimLink`] and a device in virtual time | two GATT characteristics |
//! | [`Clock`]: microseconds | [`WallClock`] | [`crate::sim::SimClock`] | [`WallClock`] |
//! | [`Connector`]: list devices, open one by [`Address`] | [`crate::serial::SerialConnector`] | (one device, no listing) | scan and connect |
//!
//! One driver ([`crate::driver`]) runs the core's sans-IO push engine and single requests over
//! any of them. Errors are transport-neutral ([`LinkError`] for a live link, [`HostError`] for
//! what the user sees).

use std::fmt;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::HostError;

/// Where a device is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "transport", content = "id", rename_all = "kebab-case")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub enum Address {
    /// A serial port by path (`/dev/ttyUSB0`, `COM3`).
    Serial(String),
    /// A USB serial adapter by its USB serial number (survives re-enumeration to another path).
    UsbSerialNumber(String),
}

impl Address {
    /// Parse what a user types: `usb:SERIALNUMBER` or a port path.
    pub fn parse(s: &str) -> Address {
        match s.strip_prefix("usb:") {
            Some(sn) => Address::UsbSerialNumber(sn.to_string()),
            None => Address::Serial(s.to_string()),
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Serial(p) => f.write_str(p),
            Address::UsbSerialNumber(sn) => write!(f, "usb:{sn}"),
        }
    }
}

/// A live link failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// The link is gone (cable pulled, device reset, port closed): reopen it.
    #[error("the link closed: {0}")]
    Closed(String),
}

/// A bidirectional frame link to one device.
pub trait Link {
    /// Send one encoded frame (blocks until the link has taken all of it).
    fn send(&mut self, frame: &[u8]) -> Result<(), LinkError>;
    /// Receive what arrives within `wait`: returns as soon as some bytes arrived, or 0 when
    /// the wait is over (a link may return 0 earlier; the caller asks again).
    fn recv(&mut self, buf: &mut [u8], wait: Duration) -> Result<usize, LinkError>;
    /// Largest raw frame this link carries in one piece.
    fn max_frame(&self) -> usize;
    /// What to call the link in messages.
    fn name(&self) -> String;
}

/// Time in microseconds, and waiting.
pub trait Clock {
    /// Now.
    fn now(&self) -> u64;
    /// Wait (a simulator only moves its clock).
    fn sleep(&self, d: Duration);
}

/// The machine's monotonic clock.
#[derive(Debug, Clone, Copy)]
pub struct WallClock(Instant);

impl WallClock {
    /// Time 0 is now.
    pub fn new() -> Self {
        Self(Instant::now())
    }
}

impl Default for WallClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for WallClock {
    fn now(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_micros()).unwrap_or(u64::MAX)
    }
    fn sleep(&self, d: Duration) {
        std::thread::sleep(d);
    }
}

/// A device a connector can see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct DeviceEntry {
    /// How to open it.
    pub address: Address,
    /// `usb`, `pci`, `bluetooth` or `unknown`.
    pub kind: String,
    /// USB vendor id.
    pub vid: Option<u16>,
    /// USB product id.
    pub pid: Option<u16>,
    /// USB serial number.
    pub serial_number: Option<String>,
    /// USB manufacturer.
    pub manufacturer: Option<String>,
    /// USB product string.
    pub product: Option<String>,
}

/// Finds and opens links of one kind.
pub trait Connector {
    /// The link it opens.
    type Link: Link;
    /// Devices present now.
    fn list(&self) -> Result<Vec<DeviceEntry>, HostError>;
    /// Open the device at `address`.
    fn open(&self, address: &Address) -> Result<Self::Link, HostError>;
}
