//! Device jobs over a transport: list, info, push, confirm, revert, reboot.

use std::path::PathBuf;
use std::time::Duration;

use bluesphere_core::proto::{Phase, PushConfig, Request, Response, PROTO_VERSION};
use bluesphere_host::driver::{self, DeviceSummary, PushOptions};
use bluesphere_host::serial::SerialConnector;
use bluesphere_host::transport::AnyConnector;
pub use bluesphere_host::DeviceEntry;
use bluesphere_host::{Address, Connector, WallClock};
use serde::{Deserialize, Serialize};

use crate::package::load_package;
use crate::progress::{Cancel, Event, Progress};
use crate::{Error, ErrorKind};

/// How to reach a device.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct Target {
    /// Where.
    pub address: Address,
    /// Serial baud rate.
    pub baud: u32,
}

/// The connector for `target`: its serial baud rate; Bluetooth LE on the adapter named by the
/// environment variable `BLUESPHERE_BLE_ADAPTER` (`hci0`), else the first one.
fn connector(target: &Target) -> AnyConnector {
    AnyConnector::new(target.baud, ble_adapter())
}

fn ble_adapter() -> Option<String> {
    std::env::var("BLUESPHERE_BLE_ADAPTER")
        .ok()
        .filter(|a| !a.is_empty())
}

/// Every device a connector sees (serial ports with their USB ids now; BLE next).
pub fn devices() -> Result<Vec<DeviceEntry>, Error> {
    Ok(SerialConnector { baud: 115_200 }.list()?)
}

/// One image as a device reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct ImageReport {
    /// Slot.
    pub slot: u8,
    /// It boots.
    pub running: bool,
    /// Component.
    pub component: String,
    /// Version.
    pub version: String,
    /// Size.
    pub size: u32,
    /// Security counter.
    pub security_counter: u32,
    /// SHA-256 (hex).
    pub sha256: String,
}

/// Progress of the device's update.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct DeviceProgress {
    /// Done.
    pub done: u32,
    /// Total.
    pub total: u32,
}

/// Who a device is and what it runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct InfoReport {
    /// Product.
    pub product: String,
    /// Hardware.
    pub hardware: String,
    /// Chip UID (hex).
    pub uid: String,
    /// `swap` or `ab`.
    pub mode: String,
    /// Update phase.
    pub phase: String,
    /// Update progress.
    pub progress: DeviceProgress,
    /// The slot that boots.
    pub boot_slot: u8,
    /// Images.
    pub images: Vec<ImageReport>,
    /// A whole machine: its update phase and every component (`None`: a single device).
    pub machine: Option<MachineReport>,
}

/// A whole machine's update state (`docs/WHOLE-MACHINE.md`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct MachineReport {
    /// Machine phase: idle, staging, staged, installing, trial, committing, committed,
    /// rolling-back, rolled-back.
    pub phase: String,
    /// The component the phase is at (install order).
    pub component: u8,
    /// Payload progress.
    pub progress: DeviceProgress,
    /// Every component, in install order.
    pub components: Vec<MachineComponent>,
}

/// One component of a machine.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct MachineComponent {
    /// Component name.
    pub name: String,
    /// Its update phase, or `unreachable` (the module does not answer the main MCU).
    pub phase: String,
    /// Running version (empty: no image).
    pub version: String,
    /// Running image SHA-256 (hex).
    pub sha256: String,
}

impl From<DeviceSummary> for InfoReport {
    fn from(d: DeviceSummary) -> Self {
        InfoReport {
            product: d.product,
            hardware: d.hardware,
            uid: hex::encode(&d.uid),
            mode: d.mode.into(),
            phase: d.phase.name().into(),
            progress: DeviceProgress {
                done: d.done,
                total: d.total,
            },
            boot_slot: d.boot_slot,
            images: d
                .images
                .into_iter()
                .map(|i| ImageReport {
                    slot: i.slot,
                    running: i.slot == d.boot_slot,
                    component: i.component,
                    version: i.version,
                    size: i.size,
                    security_counter: i.security_counter,
                    sha256: hex::encode(i.sha256),
                })
                .collect(),
            machine: d.machine.map(|m| MachineReport {
                phase: m.phase.into(),
                component: m.component,
                progress: DeviceProgress {
                    done: m.done,
                    total: m.total,
                },
                components: m
                    .members
                    .into_iter()
                    .map(|c| MachineComponent {
                        name: c.name,
                        phase: c.phase.map_or("unreachable", |p| p.name()).into(),
                        version: c.version,
                        sha256: hex::encode(c.sha256),
                    })
                    .collect(),
            }),
        }
    }
}

/// Ask a device who it is and what it runs.
pub fn info(target: &Target) -> Result<InfoReport, Error> {
    let mut link = connector(target).open(&target.address)?;
    Ok(driver::info(&mut link, &WallClock::new())?.into())
}

/// A device found by a Bluetooth LE scan.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct BleDeviceReport {
    /// Its address, or the OS's identifier for it.
    pub id: String,
    /// Its advertised name (`PRODUCT HARDWARE`), when known.
    pub name: Option<String>,
    /// Signal strength, dBm.
    pub rssi: Option<i16>,
}

/// Scan `seconds` for devices that advertise the BlueSphere service (strongest first). A
/// computer without Bluetooth gets [`crate::ErrorKind::NoBluetooth`] with what to do.
pub fn ble_scan(seconds: f64) -> Result<Vec<BleDeviceReport>, Error> {
    if !(0.0..=600.0).contains(&seconds) {
        return Err(Error::new(
            crate::ErrorKind::Usage,
            format!("a scan lasts 0 to 600 seconds, not {seconds}"),
        ));
    }
    let found = bluesphere_host::ble::scan_on(
        ble_adapter().as_deref(),
        std::time::Duration::from_secs_f64(seconds),
    )?;
    Ok(found
        .into_iter()
        .map(|d| BleDeviceReport {
            id: d.id,
            name: d.name,
            rssi: d.rssi,
        })
        .collect())
}

/// `push`: send a package to a device.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct PushRequest {
    /// Package file.
    pub package: std::path::PathBuf,
    /// The device.
    pub target: Target,
    /// Restart the device after the transfer (installs the update).
    pub reboot: bool,
    /// Confirm the new image after the restart.
    pub confirm: bool,
    /// Seconds to keep trying to reopen a lost link.
    pub reconnect_seconds: u64,
}

/// What a push did.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct PushReport {
    /// Always true.
    pub ok: bool,
    /// Payload length.
    pub payload_len: u32,
    /// Where the transfer resumed (0: from the start).
    pub resumed_from: u32,
    /// Payload bytes sent.
    pub bytes_sent: u64,
    /// Payload bytes sent again.
    pub bytes_resent: u64,
    /// Restarts at HELLO.
    pub restarts: u32,
    /// Largest resume offset.
    pub max_resume: u32,
    /// Reconnections.
    pub reconnects: u32,
    /// Seconds.
    pub seconds: f64,
    /// The device's phase at the end.
    pub phase: String,
    /// What the phase means for the user.
    pub meaning: String,
}

/// Longest wait for a lost link.
const MAX_RECONNECT_SECONDS: u64 = 24 * 3600;

/// Push a package: progress and speed as events, cancellable, resumes after drops.
pub fn push(
    req: &PushRequest,
    progress: &dyn Progress,
    cancel: &Cancel,
) -> Result<PushReport, Error> {
    let from = std::sync::Mutex::new(String::new());
    let watch = |e: Event| {
        if let Event::Connected { version, .. } = &e {
            if let Ok(mut f) = from.lock() {
                *f = version.clone();
            }
        }
        progress.event(e);
    };
    if req.reconnect_seconds > MAX_RECONNECT_SECONDS {
        return Err(Error::usage(format!(
            "reconnect time {} s: at most {MAX_RECONNECT_SECONDS} s (one day)",
            req.reconnect_seconds
        )));
    }
    let pkg = load_package(&req.package);
    let r = pkg
        .clone()
        .and_then(|pkg| push_inner(req, &pkg, &watch, cancel));
    let to_version = pkg
        .ok()
        .and_then(|b| bluesphere_core::unpack::inspect(&b).ok())
        .and_then(|i| i.components.first().map(|c| c.record.to_version.clone()))
        .unwrap_or_default();
    let target = req.target.address.to_string();
    let mut entry = crate::history::HistoryEntry {
        time: crate::history::now(),
        job: "push".into(),
        target,
        subject: req.package.display().to_string(),
        from_version: from.lock().map(|f| f.clone()).unwrap_or_default(),
        to_version,
        ..Default::default()
    };
    match &r {
        Ok(rep) => {
            entry.result = "ok".into();
            entry.detail = format!("{}: {}", rep.phase, rep.meaning);
            entry.seconds = rep.seconds;
            entry.bytes = rep.bytes_sent;
            entry.resumes = rep.restarts + rep.reconnects;
        }
        Err(e) => {
            entry.result = e.kind.as_str().into();
            entry.detail = e.message.clone();
        }
    }
    crate::history::record_or_warn(&entry, progress);
    r
}

fn push_inner(
    req: &PushRequest,
    pkg: &[u8],
    progress: &dyn Progress,
    cancel: &Cancel,
) -> Result<PushReport, Error> {
    // Refuse a package that is already damaged before the device spends time on it.
    bluesphere_core::unpack::check(pkg, &bluesphere_core::unpack::Checks::default())
        .map_err(|e| Error::from(e).context(req.package.display()))?;
    let opts = PushOptions {
        config: PushConfig {
            reboot: req.reboot,
            confirm: req.confirm,
            ..PushConfig::default()
        },
        reconnect_for: Duration::from_secs(req.reconnect_seconds),
    };
    let connector = connector(&req.target);
    let clock = WallClock::new();
    let mut reconnects = 0u32;
    let started = std::time::Instant::now();
    let o = driver::push(
        pkg,
        &opts,
        &connector,
        &req.target.address,
        &clock,
        &mut |e| {
            if let driver::Event::Reconnecting { attempt: 1 } = e {
                reconnects += 1;
            }
            progress.event(host_event(e));
        },
        cancel.flag(),
    )?;
    Ok(PushReport {
        ok: true,
        payload_len: o.payload_len,
        resumed_from: o.resumed_from,
        bytes_sent: o.sent,
        bytes_resent: o.resent,
        restarts: o.restarts,
        max_resume: o.max_resume,
        reconnects,
        seconds: started.elapsed().as_secs_f64(),
        phase: o.phase.name().into(),
        meaning: o.phase.text().into(),
    })
}

fn host_event(e: driver::Event) -> Event {
    match e {
        driver::Event::Connected { product, version } => Event::Connected { product, version },
        driver::Event::Progress {
            stage,
            acked,
            total,
            bytes_per_sec,
        } => Event::Push {
            stage: format!("{stage:?}").to_lowercase(),
            acked: u64::from(acked),
            total: u64::from(total),
            bytes_per_sec,
        },
        driver::Event::Reconnecting { attempt } => Event::Reconnecting { attempt },
        driver::Event::Reconnected => Event::Reconnected,
    }
}

/// A one-request action on a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub enum Action {
    /// The trial image is good: keep it.
    Confirm,
    /// Restart; a trial image that did not confirm reverts.
    Revert,
    /// Restart (installs a pending update).
    Reboot,
}

/// What an action did.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct ActionReport {
    /// Always true.
    pub ok: bool,
    /// The action.
    pub action: Action,
    /// The device's phase after it.
    pub phase: String,
}

/// Confirm, revert or reboot a device.
pub fn act(target: &Target, action: Action) -> Result<ActionReport, Error> {
    let mut link = connector(target).open(&target.address)?;
    let clock = WallClock::new();
    let t = Duration::from_millis(500);
    driver::transact(
        &mut link,
        &clock,
        1,
        &Request::Hello {
            version: PROTO_VERSION,
            max_frame: 1024,
        },
        t,
        |r| matches!(r, Response::Hello { .. }).then_some(()),
    )?;
    let req = match action {
        Action::Confirm => Request::Confirm,
        Action::Revert => Request::Reboot {
            if_phase: Some(Phase::Testing),
        },
        Action::Reboot => Request::Reboot { if_phase: None },
    };
    let phase = driver::transact(&mut link, &clock, 2, &req, t, |r| match r {
        Response::Done { phase } => Some(phase),
        _ => None,
    })
    .map_err(|e| match e {
        bluesphere_host::HostError::Status { status, detail } => Error::new(
            ErrorKind::DeviceBusy,
            format!(
                "the device cannot {} now: {} ({})",
                match action {
                    Action::Confirm => "confirm",
                    Action::Revert => "revert",
                    Action::Reboot => "reboot",
                },
                status.text(),
                Phase::try_from(detail).map_or("unknown phase", Phase::name)
            ),
        ),
        other => other.into(),
    })?;
    Ok(ActionReport {
        ok: true,
        action,
        phase: phase.name().into(),
    })
}

/// `start a virtual device`: a `bluesphere-device` on a pseudo-terminal cable, for trying
/// the whole flow without hardware.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct VirtualRequest {
    /// Folder of the device (created with `image` if it holds none).
    pub dir: PathBuf,
    /// Factory image for a new device.
    pub image: PathBuf,
    /// Public key the new device trusts.
    pub key: PathBuf,
    /// Product id of a new device.
    pub product: String,
    /// Hardware id of a new device.
    pub hardware: String,
    /// Version of the factory image.
    pub version: String,
}

/// A running virtual device; dropping it stops the device and the cable.
#[derive(Debug)]
pub struct VirtualDevice {
    /// The port the host side opens.
    pub port: String,
    /// The device's folder.
    pub dir: PathBuf,
    child: std::process::Child,
    _cable: bluesphere_host::pty::PtyCable,
}

impl Drop for VirtualDevice {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `bluesphere-device` program: beside this program's executable, else on `PATH`.
pub fn device_program() -> PathBuf {
    let name = "bluesphere-device";
    std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join(name)))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// Create the device if needed, then serve it on a new pseudo-terminal cable.
pub fn start_virtual(req: &VirtualRequest) -> Result<VirtualDevice, Error> {
    let program = device_program();
    let run = |args: &[&std::ffi::OsStr]| -> Result<std::process::Output, Error> {
        std::process::Command::new(&program)
            .arg("--flash")
            .arg(&req.dir)
            .args(args)
            .output()
            .map_err(|e| {
                Error::new(
                    ErrorKind::Io,
                    format!("cannot run {}: {e}", program.display()),
                )
                .hint("install bluesphere-device beside this program")
            })
    };
    if !req.dir.join("device.json").exists() {
        let o = run(&[
            "--json".as_ref(),
            "init".as_ref(),
            "--product".as_ref(),
            req.product.as_ref(),
            "--hardware".as_ref(),
            req.hardware.as_ref(),
            "--key".as_ref(),
            req.key.as_os_str(),
            "--image".as_ref(),
            req.image.as_os_str(),
            "--version".as_ref(),
            req.version.as_ref(),
        ])?;
        if !o.status.success() {
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
            return Err(Error::new(
                ErrorKind::DeviceError,
                format!(
                    "the virtual device could not be created: {}",
                    v["error"]["message"].as_str().unwrap_or("unknown error")
                ),
            ));
        }
    }
    let cable = bluesphere_host::pty::PtyCable::open()?;
    let child = std::process::Command::new(&program)
        .arg("--flash")
        .arg(&req.dir)
        .args([
            "serve",
            "--port",
            &cable.device,
            "--baud",
            "921600",
            "--exit-with-parent",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| {
            Error::new(
                ErrorKind::Io,
                format!("cannot run {}: {e}", program.display()),
            )
        })?;
    Ok(VirtualDevice {
        port: cable.host.clone(),
        dir: req.dir.clone(),
        child,
        _cable: cable,
    })
}
