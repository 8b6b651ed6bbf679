//! Serial ports: list, open, and push a package with reconnection and resume.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bluesphere_core::proto::{
    encoded_max, phase, reason_text, FrameDecoder, Push, PushConfig, PushError, Request, Response,
    Stage, PROTO_VERSION,
};
use serialport::{SerialPort, SerialPortType};

/// A serial port on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortInfo {
    /// Device path (`/dev/ttyUSB0`).
    pub name: String,
    /// `usb`, `pci`, `bluetooth` or `unknown`.
    pub kind: &'static str,
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

/// What went wrong talking to a device. [`HostError::kind`] is stable for scripts and the
/// Studio.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// No such port.
    #[error("no serial port {0}: check the cable and `bluesphere ports`")]
    NoPort(String),
    /// Not allowed to open the port.
    #[error("permission denied on {0}: add yourself to the dialout group (`sudo usermod -aG dialout $USER`, then log in again) or run with sudo")]
    Permission(String),
    /// Another program has the port open.
    #[error("{0} is busy: another program (a serial monitor?) has it open")]
    PortBusy(String),
    /// Any other port error.
    #[error("serial port {port}: {message}")]
    Port {
        /// Port.
        port: String,
        /// What the OS said.
        message: String,
    },
    /// The file is not a package.
    #[error("not a BlueSphere package")]
    BadPackage,
    /// The device refused the package.
    #[error("the device refused the package: {message}")]
    Refused {
        /// Device reason code.
        reason: u8,
        /// For people.
        message: String,
    },
    /// The device is busy with an update state that does not allow this.
    #[error("the device is busy ({phase}): {hint}")]
    Busy {
        /// Its phase.
        phase: &'static str,
        /// What to do.
        hint: &'static str,
    },
    /// The device speaks another protocol version.
    #[error("the device speaks protocol version {device}, this tool {host}: update the tool")]
    Version {
        /// Device's.
        device: u8,
        /// Ours.
        host: u8,
    },
    /// The device reported a failure.
    #[error("the device reported: {0}")]
    Device(String),
    /// The device answered a request with an error status.
    #[error("the device answered {status:?} (detail {detail})")]
    Status {
        /// Status.
        status: bluesphere_core::proto::Status,
        /// Detail byte.
        detail: u8,
    },
    /// No answer / the link stayed down.
    #[error("{what}; the device still runs its old firmware{resume}")]
    Timeout {
        /// What happened.
        what: String,
        /// How to continue.
        resume: String,
    },
    /// Cancelled by the user.
    #[error("cancelled; the device keeps what it received and resumes next time")]
    Cancelled,
}

impl HostError {
    /// Stable machine-readable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            HostError::NoPort(_) => "no-port",
            HostError::Permission(_) => "permission-denied",
            HostError::PortBusy(_) => "port-busy",
            HostError::Port { .. } => "port",
            HostError::BadPackage => "bad-package",
            HostError::Refused { reason, .. } => match reason {
                2 => "unknown-key",
                3 => "bad-signature",
                4 => "wrong-product",
                5 => "wrong-hardware",
                6 => "too-large",
                7 => "rollback",
                8 | 9 => "wrong-base",
                _ => "refused",
            },
            HostError::Busy { .. } => "device-busy",
            HostError::Version { .. } => "protocol-version",
            HostError::Device(_) | HostError::Status { .. } => "device-error",
            HostError::Timeout { .. } => "timeout",
            HostError::Cancelled => "cancelled",
        }
    }
}

/// Progress of a push, for a bar or the Studio.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Connected to the device; what it runs.
    Connected {
        /// Product.
        product: String,
        /// Running version.
        version: String,
    },
    /// Payload progress.
    Progress {
        /// Stage.
        stage: Stage,
        /// Bytes acknowledged.
        acked: u32,
        /// Payload length.
        total: u32,
        /// Recent speed, bytes per second.
        bytes_per_sec: f64,
    },
    /// The link dropped; trying to reopen the port.
    Reconnecting {
        /// Attempt number.
        attempt: u32,
    },
    /// Reconnected; the push restarts at HELLO and resumes where the device says.
    Reconnected,
}

/// The USB / bus details of every serial port.
pub fn ports() -> Result<Vec<PortInfo>, HostError> {
    let list = serialport::available_ports().map_err(|e| HostError::Port {
        port: "(enumeration)".into(),
        message: e.to_string(),
    })?;
    Ok(list
        .into_iter()
        .map(|p| {
            let mut info = PortInfo {
                name: p.port_name,
                kind: "unknown",
                vid: None,
                pid: None,
                serial_number: None,
                manufacturer: None,
                product: None,
            };
            match p.port_type {
                SerialPortType::UsbPort(u) => {
                    info.kind = "usb";
                    info.vid = Some(u.vid);
                    info.pid = Some(u.pid);
                    info.serial_number = u.serial_number;
                    info.manufacturer = u.manufacturer;
                    info.product = u.product;
                }
                SerialPortType::PciPort => info.kind = "pci",
                SerialPortType::BluetoothPort => info.kind = "bluetooth",
                SerialPortType::Unknown => {}
            }
            info
        })
        .collect())
}

/// Open `path` at `baud` with a short read timeout; errors say what to do.
pub fn open(path: &str, baud: u32) -> Result<Box<dyn SerialPort>, HostError> {
    if !std::path::Path::new(path).exists() {
        return Err(HostError::NoPort(path.into()));
    }
    serialport::new(path, baud)
        .timeout(Duration::from_millis(2))
        .open()
        .map_err(|e| port_error(path, e))
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

/// Options of a push over a port.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// Port path.
    pub port: String,
    /// Baud rate.
    pub baud: u32,
    /// Engine settings.
    pub config: PushConfig,
    /// Keep trying to reopen a lost port this long.
    pub reconnect_for: Duration,
}

fn convert(e: PushError, push: &Push<'_>, pkg_from: &str, port: &str) -> HostError {
    let p = push.progress();
    let resume = if p.total > 0 {
        format!(
            " ({} of {} bytes are stored on the device; run the push again to resume)",
            p.acked, p.total
        )
    } else {
        String::new()
    };
    match e {
        PushError::BadPackage => HostError::BadPackage,
        PushError::Version { device } => HostError::Version {
            device,
            host: PROTO_VERSION,
        },
        PushError::ManifestTooLarge { need, max } => HostError::Device(format!(
            "the package's header and manifest ({need} bytes) exceed what the device takes ({max} bytes)"
        )),
        PushError::Refused { reason } => {
            let mut message = reason_text(reason).to_string();
            if let (8 | 9, Some(d)) = (reason, push.device()) {
                message = format!(
                    "{message}: the device runs {} {}, the package expects {}",
                    d.component.as_str(),
                    if d.version.as_str().is_empty() { "(unknown version)" } else { d.version.as_str() },
                    if pkg_from.is_empty() { "another version" } else { pkg_from }
                );
            }
            if let (4 | 5, Some(d)) = (reason, push.device()) {
                message = format!(
                    "{message} (the device is {} {})",
                    d.product.as_str(),
                    d.hardware.as_str()
                );
            }
            HostError::Refused { reason, message }
        }
        PushError::Busy { phase: ph } => HostError::Busy {
            phase: phase::name(ph),
            hint: if ph == phase::TESTING {
                "a new image runs on trial: confirm it or let it revert (reboot) first"
            } else {
                "wait until it finishes, then try again"
            },
        },
        PushError::Device { status, detail } => {
            HostError::Device(format!("{status:?} (detail {detail}){resume}"))
        }
        PushError::Timeout { stage } => HostError::Timeout {
            what: format!("no answer from the device on {port} while in stage {stage:?}"),
            resume,
        },
        PushError::Unexpected { stage } => {
            HostError::Device(format!("unexpected answer in stage {stage:?}"))
        }
    }
}

/// Push `pkg` over a serial port: progress as events, cancellation with `cancel`. On a lost
/// port it reopens it (until `reconnect_for`) and resumes where the device says.
pub fn push(
    pkg: &[u8],
    opts: &PushOptions,
    events: &mut dyn FnMut(Event),
    cancel: &AtomicBool,
) -> Result<bluesphere_core::proto::Outcome, HostError> {
    let from = bluesphere_core::package::Package::parse(pkg)
        .ok()
        .and_then(|p| p.manifest.components().next().and_then(Result::ok))
        .map(|c| c.from_version.to_string())
        .unwrap_or_default();
    let mut engine = Push::new(pkg, opts.config).map_err(|_| HostError::BadPackage)?;
    let mut port = open(&opts.port, opts.baud)?;
    let start = Instant::now();
    let now = || start.elapsed().as_micros() as u64;
    let mut tx = vec![0u8; encoded_max(opts.config.chunk + 64)];
    let mut rx = [0u8; 4096];
    let mut announced = false;
    let mut queued: Vec<u8> = Vec::new();
    let mut last_event = Instant::now();
    let mut speed = (Instant::now(), 0u32, 0.0f64);
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(HostError::Cancelled);
        }
        if let Some(r) = engine.outcome() {
            return r.map_err(|e| convert(e, &engine, &from, &opts.port));
        }
        let mut link_ok = true;
        // Keep the port's buffer fed; a full buffer (write timeout) just waits.
        loop {
            if queued.is_empty() {
                match engine.poll_transmit(now(), &mut tx) {
                    Some(n) => queued.extend_from_slice(&tx[..n]),
                    None => break,
                }
            }
            match port.write(&queued) {
                Ok(0) => break,
                Ok(n) => {
                    queued.drain(..n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => {
                    link_ok = false;
                    break;
                }
            }
        }
        if link_ok {
            match port.read(&mut rx) {
                Ok(0) => {}
                Ok(n) => engine.handle_input(now(), &rx[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => link_ok = false,
            }
        }
        if !link_ok {
            drop(port);
            queued.clear();
            port = reconnect(opts, events, cancel, &engine)?;
            engine.reconnected(now());
            events(Event::Reconnected);
        }
        engine.on_tick(now());
        if !announced {
            if let Some(d) = engine.device() {
                events(Event::Connected {
                    product: d.product.as_str().into(),
                    version: d.version.as_str().into(),
                });
                announced = true;
            }
        }
        if last_event.elapsed() >= Duration::from_millis(100) {
            let p = engine.progress();
            let dt = speed.0.elapsed().as_secs_f64();
            if dt >= 1.0 {
                let rate = f64::from(p.acked.saturating_sub(speed.1)) / dt;
                speed = (Instant::now(), p.acked, rate);
            }
            events(Event::Progress {
                stage: p.stage,
                acked: p.acked,
                total: p.total,
                bytes_per_sec: speed.2,
            });
            last_event = Instant::now();
        }
    }
}

fn reconnect(
    opts: &PushOptions,
    events: &mut dyn FnMut(Event),
    cancel: &AtomicBool,
    engine: &Push<'_>,
) -> Result<Box<dyn SerialPort>, HostError> {
    let until = Instant::now() + opts.reconnect_for;
    let mut attempt = 0;
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(HostError::Cancelled);
        }
        attempt += 1;
        events(Event::Reconnecting { attempt });
        std::thread::sleep(Duration::from_millis(250));
        if let Ok(p) = open(&opts.port, opts.baud) {
            return Ok(p);
        }
        if Instant::now() >= until {
            let p = engine.progress();
            return Err(HostError::Timeout {
                what: format!(
                    "the link to {} stayed down for {} s",
                    opts.port,
                    opts.reconnect_for.as_secs()
                ),
                resume: if p.total > 0 {
                    format!(
                        " ({} of {} bytes are stored on the device; run the push again to resume)",
                        p.acked, p.total
                    )
                } else {
                    String::new()
                },
            });
        }
    }
}

/// What INFO says, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSummary {
    /// Product.
    pub product: String,
    /// Hardware.
    pub hardware: String,
    /// Chip UID.
    pub uid: Vec<u8>,
    /// `swap` or `ab`.
    pub mode: &'static str,
    /// Update phase.
    pub phase: &'static str,
    /// Progress.
    pub done: u32,
    /// Progress total.
    pub total: u32,
    /// Boot slot.
    pub boot_slot: u8,
    /// (slot, component, version, size, counter, sha256) of the running and other image.
    pub images: Vec<(u8, String, String, u32, u32, [u8; 32])>,
}

/// One request and its answer (retransmitted up to 5 times), for INFO and the activation
/// commands.
pub fn transact<T>(
    port: &mut dyn SerialPort,
    seq: u8,
    req: &Request<'_>,
    timeout: Duration,
    mut accept: impl FnMut(Response<'_>) -> Option<T>,
) -> Result<T, HostError> {
    let mut tx = vec![0u8; encoded_max(1100)];
    let n = req.encode(seq, &mut tx).ok_or(HostError::BadPackage)?;
    let mut dec: FrameDecoder<1100> = FrameDecoder::new();
    let mut rx = [0u8; 1024];
    for _ in 0..5 {
        port.write_all(&tx[..n]).map_err(|e| HostError::Port {
            port: port.name().unwrap_or_default(),
            message: e.to_string(),
        })?;
        let until = Instant::now() + timeout;
        while Instant::now() < until {
            let got = match port.read(&mut rx) {
                Ok(k) => k,
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => 0,
                Err(e) => {
                    return Err(HostError::Port {
                        port: port.name().unwrap_or_default(),
                        message: e.to_string(),
                    })
                }
            };
            let mut input = &rx[..got];
            while !input.is_empty() {
                let (used, frame) = dec.feed(input);
                input = &input[used..];
                if let Some(Ok(f)) = frame {
                    if let Ok((s, r)) = Response::parse(f) {
                        if s == seq {
                            if let Response::Error { status, detail, .. } = r {
                                return Err(HostError::Status { status, detail });
                            }
                            if let Some(v) = accept(r) {
                                return Ok(v);
                            }
                        }
                    }
                }
            }
        }
    }
    Err(HostError::Timeout {
        what: format!(
            "no answer from a BlueSphere device on {}",
            port.name().unwrap_or_default()
        ),
        resume: String::new(),
    })
}

/// Ask the device on `path` who it is and what it runs.
pub fn info(path: &str, baud: u32) -> Result<DeviceSummary, HostError> {
    let mut port = open(path, baud)?;
    let t = Duration::from_millis(500);
    transact(
        &mut *port,
        1,
        &Request::Hello {
            version: PROTO_VERSION,
            max_frame: 1024,
        },
        t,
        |r| matches!(r, Response::Hello { .. }).then_some(()),
    )?;
    transact(&mut *port, 2, &Request::Info, t, |r| match r {
        Response::Info(i) => Some(DeviceSummary {
            product: i.product.into(),
            hardware: i.hardware.into(),
            uid: i.uid.to_vec(),
            mode: if i.mode == 0 { "swap" } else { "ab" },
            phase: phase::name(i.phase),
            done: i.done,
            total: i.total,
            boot_slot: i.boot_slot,
            images: [i.running, i.other]
                .iter()
                .flatten()
                .map(|e| {
                    (
                        e.slot,
                        e.name.to_string(),
                        e.version.to_string(),
                        e.size,
                        e.security_counter,
                        e.sha256,
                    )
                })
                .collect(),
        }),
        _ => None,
    })
}
