//! What went wrong on the host side, transport-neutral.

use bluesphere_core::proto::{Phase, RefuseReason};

/// What went wrong talking to a device. [`HostError::kind`] is stable for scripts and the
/// Studio.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// No such port.
    #[error("no serial port {0}: check the cable and the list of ports")]
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
    /// A Bluetooth LE device could not be reached or used.
    #[error("Bluetooth LE device {device}: {message}")]
    Bluetooth {
        /// Its address or name.
        device: String,
        /// What happened.
        message: String,
    },
    /// The file is not a package.
    #[error("not a BlueSphere package")]
    BadPackage,
    /// The device refused the package.
    #[error("the device refused the package: {message}")]
    Refused {
        /// Why.
        reason: RefuseReason,
        /// For people.
        message: String,
    },
    /// The device is busy with an update state that does not allow this.
    #[error("the device is busy ({}): {hint}", phase.name())]
    Busy {
        /// Its phase.
        phase: Phase,
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
    /// No Bluetooth here: no adapter, or no Bluetooth service (BlueZ) running.
    #[error("Bluetooth is not available: {0}")]
    NoBluetooth(String),
    /// No device with that address or name advertised the BlueSphere service.
    #[error("no BlueSphere device {id} advertised within {secs} s: check that it is on, in range, and not connected to another computer or phone")]
    NotFound {
        /// What was looked for.
        id: String,
        /// How long.
        secs: u64,
    },
    /// The adapter is there but cannot scan.
    #[error("the Bluetooth adapter cannot scan (is it switched off?): {0}")]
    BluetoothOff(String),
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
            HostError::Port { .. } | HostError::Bluetooth { .. } => "port",
            HostError::BadPackage => "bad-package",
            HostError::Refused { reason, .. } => match reason {
                RefuseReason::UnknownKey => "unknown-key",
                RefuseReason::BadSignature => "bad-signature",
                RefuseReason::WrongProduct => "wrong-product",
                RefuseReason::WrongHardware => "wrong-hardware",
                RefuseReason::TooLarge => "too-large",
                RefuseReason::Rollback => "rollback",
                RefuseReason::WrongBase
                | RefuseReason::NotInstalled
                | RefuseReason::InstalledCorrupt => "wrong-base",
                _ => "refused",
            },
            HostError::Busy { .. } => "device-busy",
            HostError::Version { .. } => "protocol-version",
            HostError::Device(_) | HostError::Status { .. } => "device-error",
            HostError::NoBluetooth(_) => "no-bluetooth",
            HostError::BluetoothOff(_) => "bluetooth-off",
            HostError::NotFound { .. } => "no-port",
            HostError::Timeout { .. } => "timeout",
            HostError::Cancelled => "cancelled",
        }
    }
}
