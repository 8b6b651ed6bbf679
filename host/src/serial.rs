//! Serial ports as a [`Link`]: listing with USB ids, opening by path or USB serial number
//! with errors that say what to do, frames written whole and read until a deadline.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use serialport::{SerialPort, SerialPortType};

use crate::transport::{Address, Connector, DeviceEntry, Link, LinkError};
use crate::HostError;

/// How long a frame may take to leave before the link counts as dead.
const WRITE_STALL: Duration = Duration::from_secs(5);
/// Longest single read wait (the driver asks again).
const READ_SLICE: Duration = Duration::from_millis(20);

/// The USB / bus details of every serial port.
pub fn ports() -> Result<Vec<DeviceEntry>, HostError> {
    let list = serialport::available_ports().map_err(|e| HostError::Port {
        port: "(enumeration)".into(),
        message: e.to_string(),
    })?;
    Ok(list
        .into_iter()
        .map(|p| {
            let mut e = DeviceEntry {
                address: Address::Serial(p.port_name),
                kind: "unknown".into(),
                vid: None,
                pid: None,
                serial_number: None,
                manufacturer: None,
                product: None,
            };
            match p.port_type {
                SerialPortType::UsbPort(u) => {
                    e.kind = "usb".into();
                    e.vid = Some(u.vid);
                    e.pid = Some(u.pid);
                    e.serial_number = u.serial_number;
                    e.manufacturer = u.manufacturer;
                    e.product = u.product;
                }
                SerialPortType::PciPort => e.kind = "pci".into(),
                SerialPortType::BluetoothPort => e.kind = "bluetooth".into(),
                SerialPortType::Unknown => {}
            }
            e
        })
        .collect())
}

fn port_error(path: &str, e: serialport::Error) -> HostError {
    use serialport::ErrorKind;
    match e.kind() {
        // serialport reports EBUSY (the port is locked by another program) as NoDevice.
        ErrorKind::NoDevice if std::path::Path::new(path).exists() => {
            HostError::PortBusy(path.into())
        }
        ErrorKind::NoDevice => HostError::NoPort(path.into()),
        ErrorKind::Io(std::io::ErrorKind::NotFound) => HostError::NoPort(path.into()),
        ErrorKind::Io(std::io::ErrorKind::PermissionDenied) => HostError::Permission(path.into()),
        _ if e.description.contains("ermission") => HostError::Permission(path.into()),
        _ if e.description.contains("busy") || e.description.contains("locked") => {
            HostError::PortBusy(path.into())
        }
        _ => HostError::Port {
            port: path.into(),
            message: e.description,
        },
    }
}

/// An open serial port.
pub struct SerialLink {
    port: Box<dyn SerialPort>,
    path: String,
}

impl std::fmt::Debug for SerialLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SerialLink")
            .field("path", &self.path)
            .finish()
    }
}

impl SerialLink {
    /// Open `path` at `baud`.
    pub fn open(path: &str, baud: u32) -> Result<Self, HostError> {
        if !std::path::Path::new(path).exists() {
            return Err(HostError::NoPort(path.into()));
        }
        let port = serialport::new(path, baud)
            .timeout(Duration::from_millis(2))
            .open()
            .map_err(|e| port_error(path, e))?;
        Ok(Self {
            port,
            path: path.into(),
        })
    }
}

fn closed(e: std::io::Error) -> LinkError {
    LinkError::Closed(e.to_string())
}

impl Link for SerialLink {
    fn send(&mut self, mut frame: &[u8]) -> Result<(), LinkError> {
        let mut stalled_since: Option<Instant> = None;
        while !frame.is_empty() {
            match self.port.write(frame) {
                Ok(0) => {}
                Ok(n) => {
                    frame = &frame[n..];
                    stalled_since = None;
                    continue;
                }
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(closed(e)),
            }
            let since = *stalled_since.get_or_insert_with(Instant::now);
            if since.elapsed() > WRITE_STALL {
                return Err(LinkError::Closed(format!(
                    "{}: nothing could be written for {} s",
                    self.path,
                    WRITE_STALL.as_secs()
                )));
            }
        }
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8], wait: Duration) -> Result<usize, LinkError> {
        let wait = wait.clamp(Duration::from_millis(1), READ_SLICE);
        self.port
            .set_timeout(wait)
            .map_err(|e| LinkError::Closed(e.to_string()))?;
        match self.port.read(buf) {
            Ok(n) => Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Ok(0),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Ok(0),
            Err(e) => Err(closed(e)),
        }
    }

    fn max_frame(&self) -> usize {
        4096 + 64
    }

    fn name(&self) -> String {
        self.path.clone()
    }
}

/// Opens serial ports at one baud rate.
#[derive(Debug, Clone, Copy)]
pub struct SerialConnector {
    /// Baud rate.
    pub baud: u32,
}

impl SerialConnector {
    /// The port path of `address` now (a USB serial number is looked up).
    pub fn resolve(&self, address: &Address) -> Result<String, HostError> {
        match address {
            Address::Serial(p) => Ok(p.clone()),
            Address::UsbSerialNumber(sn) => ports()?
                .into_iter()
                .find(|e| e.serial_number.as_deref() == Some(sn.as_str()))
                .map(|e| e.address.to_string())
                .ok_or_else(|| HostError::NoPort(format!("usb:{sn}"))),
            Address::Ble(_) => Err(HostError::NoPort(format!(
                "{address} (a Bluetooth LE device, not a serial port)"
            ))),
        }
    }
}

impl Connector for SerialConnector {
    type Link = SerialLink;

    fn list(&self) -> Result<Vec<DeviceEntry>, HostError> {
        ports()
    }

    fn open(&self, address: &Address) -> Result<SerialLink, HostError> {
        SerialLink::open(&self.resolve(address)?, self.baud)
    }
}

/// The device end of a serial line as an `embedded_io` byte link (what a device's UART
/// driver gives its server): reads time out as idle polls (0 bytes) and are throttled to the
/// baud rate, as a UART delivers them (a pseudo-terminal alone has no line rate).
pub struct UartPort {
    port: Box<dyn SerialPort>,
    bytes_per_sec: f64,
    start: Instant,
    taken: f64,
}

impl std::fmt::Debug for UartPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UartPort")
            .field("bytes_per_sec", &self.bytes_per_sec)
            .finish_non_exhaustive()
    }
}

impl UartPort {
    /// Open `path` at `baud` (8N1: baud / 10 bytes per second).
    pub fn open(path: &str, baud: u32) -> Result<Self, HostError> {
        let port = serialport::new(path, baud)
            .timeout(READ_SLICE)
            .open()
            .map_err(|e| port_error(path, e))?;
        Ok(Self {
            port,
            bytes_per_sec: f64::from(baud.max(10)) / 10.0,
            start: Instant::now(),
            taken: 0.0,
        })
    }
}

impl embedded_io::ErrorType for UartPort {
    type Error = std::io::Error;
}

impl embedded_io::Read for UartPort {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, std::io::Error> {
        let allowed = self.start.elapsed().as_secs_f64() * self.bytes_per_sec - self.taken;
        if allowed < 1.0 {
            std::thread::sleep(Duration::from_micros(500));
            return Ok(0);
        }
        let n = (allowed as usize).clamp(1, buf.len().max(1));
        let Some(b) = buf.get_mut(..n) else {
            return Ok(0);
        };
        match self.port.read(b) {
            Ok(k) => {
                self.taken += k as f64;
                Ok(k)
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                // An idle line does not bank credit.
                self.taken = self
                    .taken
                    .max(self.start.elapsed().as_secs_f64() * self.bytes_per_sec - 64.0);
                Ok(0)
            }
            Err(e) => Err(e),
        }
    }
}

impl embedded_io::Write for UartPort {
    fn write(&mut self, buf: &[u8]) -> Result<usize, std::io::Error> {
        self.port.write(buf)
    }
    fn flush(&mut self) -> Result<(), std::io::Error> {
        self.port.flush()
    }
}
