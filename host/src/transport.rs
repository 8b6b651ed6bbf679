//! The transport seam: what a push needs from a link, whatever carries the frames.
//!
//! | piece | serial ([`crate::serial`]) | simulator ([`crate::sim`]) | BLE ([`crate::ble`]) |
//! |---|---|---|---|
//! | [`Link`]: send a frame, receive bytes until a deadline | a serial port | [`crate::link::SimLink`] and a device in virtual time | [`crate::ble::BleLink`]: two GATT characteristics |
//! | [`Clock`]: microseconds | [`WallClock`] | [`crate::sim::SimClock`] | [`WallClock`] |
//! | [`Connector`]: list devices, open one by [`Address`] | [`crate::serial::SerialConnector`] | (one device, no listing) | [`crate::ble::BleConnector`]: scan and connect |
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
    /// A Bluetooth LE device by its address (or the OS's identifier, or its advertised name).
    Ble(String),
}

impl Address {
    /// Parse what a user types: `usb:SERIALNUMBER`, `ble:ADDRESS` or a port path.
    pub fn parse(s: &str) -> Address {
        if let Some(sn) = s.strip_prefix("usb:") {
            return Address::UsbSerialNumber(sn.to_string());
        }
        match s.strip_prefix("ble:") {
            Some(id) => Address::Ble(id.to_string()),
            None => Address::Serial(s.to_string()),
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Serial(p) => f.write_str(p),
            Address::UsbSerialNumber(sn) => write!(f, "usb:{sn}"),
            Address::Ble(id) => write!(f, "ble:{id}"),
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
    /// The error the user sees when this link fails with `message`.
    fn failure(&self, message: String) -> HostError {
        HostError::Port {
            port: self.name(),
            message,
        }
    }
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

/// Any transport, chosen by the [`Address`]: a serial port or a Bluetooth LE device. The jobs
/// API opens every device through it.
#[derive(Debug, Clone)]
pub struct AnyConnector {
    /// Serial ports.
    pub serial: crate::serial::SerialConnector,
    /// Bluetooth LE.
    pub ble: crate::ble::BleConnector,
}

impl AnyConnector {
    /// Serial at `baud`, Bluetooth LE on the adapter `ble_adapter` (`None`: the first one).
    pub fn new(baud: u32, ble_adapter: Option<String>) -> Self {
        Self {
            serial: crate::serial::SerialConnector { baud },
            ble: crate::ble::BleConnector {
                adapter: ble_adapter,
                ..Default::default()
            },
        }
    }
}

/// A link of [`AnyConnector`].
#[derive(Debug)]
pub enum AnyLink {
    /// A serial port.
    Serial(crate::serial::SerialLink),
    /// A Bluetooth LE device.
    Ble(Box<crate::ble::BleLink>),
}

impl AnyLink {
    fn inner(&mut self) -> &mut dyn Link {
        match self {
            AnyLink::Serial(l) => l,
            AnyLink::Ble(l) => l.as_mut(),
        }
    }
}

impl Link for AnyLink {
    fn send(&mut self, frame: &[u8]) -> Result<(), LinkError> {
        self.inner().send(frame)
    }
    fn recv(&mut self, buf: &mut [u8], wait: Duration) -> Result<usize, LinkError> {
        self.inner().recv(buf, wait)
    }
    fn max_frame(&self) -> usize {
        match self {
            AnyLink::Serial(l) => l.max_frame(),
            AnyLink::Ble(l) => l.max_frame(),
        }
    }
    fn name(&self) -> String {
        match self {
            AnyLink::Serial(l) => l.name(),
            AnyLink::Ble(l) => l.name(),
        }
    }
    fn failure(&self, message: String) -> HostError {
        match self {
            AnyLink::Serial(l) => l.failure(message),
            AnyLink::Ble(l) => l.failure(message),
        }
    }
}

impl Connector for AnyConnector {
    type Link = AnyLink;

    fn list(&self) -> Result<Vec<DeviceEntry>, HostError> {
        self.serial.list()
    }

    fn open(&self, address: &Address) -> Result<AnyLink, HostError> {
        match address {
            Address::Ble(_) => Ok(AnyLink::Ble(Box::new(self.ble.open(address)?))),
            _ => Ok(AnyLink::Serial(self.serial.open(address)?)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_and_print_back() {
        for (typed, want) in [
            ("/dev/ttyUSB0", Address::Serial("/dev/ttyUSB0".into())),
            ("usb:A10K3X", Address::UsbSerialNumber("A10K3X".into())),
            (
                "ble:00:AA:01:01:00:01",
                Address::Ble("00:AA:01:01:00:01".into()),
            ),
        ] {
            assert_eq!(Address::parse(typed), want);
            assert_eq!(want.to_string(), typed);
        }
        let serial = AnyConnector::new(115_200, None);
        assert!(matches!(
            serial.serial.resolve(&Address::Ble("x".into())),
            Err(HostError::NoPort(_))
        ));
    }
}
