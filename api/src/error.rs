//! One error type for every job: a stable [`ErrorKind`], a message that says what happened,
//! and a hint that says what to do next. Only the CLI maps kinds to exit codes.

use std::fmt;

use bluesphere_core::keys::KeyError;
use bluesphere_host::registry::RegistryError;
use bluesphere_host::HostError;
use serde::{Deserialize, Serialize};

/// Declares [`ErrorKind`] with its one table of JSON names.
macro_rules! error_kinds {
    ($($(#[doc = $doc:literal])* $variant:ident = $name:literal,)*) => {
        /// What kind of failure, for scripts, exit codes and the Studio.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
        pub enum ErrorKind {
            $($(#[doc = $doc])* #[serde(rename = $name)] $variant,)*
        }

        impl ErrorKind {
            /// Every kind.
            pub const ALL: &'static [ErrorKind] = &[$(ErrorKind::$variant),*];

            /// The kebab-case name (as in JSON).
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorKind::$variant => $name,)*
                }
            }

            /// From a kebab-case name (the host's and the core's kind strings).
            pub fn from_name(name: &str) -> ErrorKind {
                match name {
                    $($name => ErrorKind::$variant,)*
                    _ => ErrorKind::Internal,
                }
            }
        }
    };
}

error_kinds! {
    /// A file could not be read or written.
    Io = "io",
    /// A bug.
    Internal = "internal",
    /// An output exists and may not be replaced.
    Exists = "exists",
    /// The request is inconsistent.
    Usage = "usage",
    /// An output would replace an input, or is not a regular file.
    OutputConflict = "output-conflict",
    /// A package or stream is corrupt.
    Corrupt = "corrupt",
    /// A package or stream ends early.
    Truncated = "truncated",
    /// Not a BlueSphere package.
    NotAPackage = "not-a-package",
    /// A newer package format.
    UnsupportedVersion = "unsupported-version",
    /// An input is not what it should be (not an image, bad Intel HEX, too large, not a file).
    InvalidInput = "invalid-input",
    /// The segments of an image lie far apart; choose an address range or one component per segment.
    Segments = "segments",
    /// The signature does not verify.
    BadSignature = "bad-signature",
    /// Signed by a key that is not trusted.
    UnknownKey = "unknown-key",
    /// An activation code does not verify.
    InvalidCode = "invalid-code",
    /// An activation code has expired.
    Expired = "expired",
    /// A signature check needs a public key (or an explicit choice not to check).
    NeedKey = "need-key",
    /// The delta was made from another base image.
    WrongBase = "wrong-base",
    /// A delta needs its base image.
    NeedBase = "need-base",
    /// For other hardware.
    WrongHardware = "wrong-hardware",
    /// For another product.
    WrongProduct = "wrong-product",
    /// No such component (or several and none chosen).
    NoComponent = "no-component",
    /// A key cannot be used (unreadable, wrong or missing passphrase).
    Key = "key",
    /// The activation registry failed.
    Registry = "registry",
    /// Another program holds the activation registry locked.
    RegistryBusy = "registry-busy",
    /// The UID already has a code.
    AlreadyIssued = "already-issued",
    /// The UID has no code to re-issue.
    NotIssued = "not-issued",
    /// A production order problem.
    Order = "order",
    /// A production order is used up.
    OrderLimit = "order-limit",
    /// No such port or device.
    NoPort = "no-port",
    /// Not allowed to open the port.
    PermissionDenied = "permission-denied",
    /// Another program has the port.
    PortBusy = "port-busy",
    /// Any other port problem.
    Port = "port",
    /// The package cannot be pushed.
    BadPackage = "bad-package",
    /// The device refused the package: it does not fit.
    TooLarge = "too-large",
    /// The device refused the package: downgrade.
    Rollback = "rollback",
    /// The device refused the package.
    Refused = "refused",
    /// The device is in a state that does not allow this.
    DeviceBusy = "device-busy",
    /// The device speaks another protocol version.
    ProtocolVersion = "protocol-version",
    /// The device reported a failure.
    DeviceError = "device-error",
    /// No answer in time.
    Timeout = "timeout",
    /// No Bluetooth on this computer (no adapter, or BlueZ not running).
    NoBluetooth = "no-bluetooth",
    /// The Bluetooth adapter is switched off.
    BluetoothOff = "bluetooth-off",
    /// Some devices of a station run failed.
    StationFailures = "station-failures",
    /// Cancelled by the user.
    Cancelled = "cancelled",
    /// A rehearsal found power cuts the update did not survive.
    RehearsalFailed = "rehearsal-failed",
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct Error {
    /// Stable kind.
    pub kind: ErrorKind,
    /// What happened (and why).
    pub message: String,
    /// What to do next (empty when the message says it).
    pub hint: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl Error {
    /// An error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            hint: String::new(),
        }
    }

    /// With a hint.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = hint.into();
        self
    }

    /// With `what: ` in front of the message (a file name).
    pub fn context(mut self, what: impl fmt::Display) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }

    /// A usage error.
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Usage, message)
    }

    /// An internal error.
    pub fn internal(e: impl fmt::Display) -> Self {
        Self::new(ErrorKind::Internal, format!("internal error: {e}"))
    }

    /// The job was cancelled.
    pub fn cancelled() -> Self {
        Self::new(ErrorKind::Cancelled, "cancelled; nothing was written")
    }
}

/// The message of `e` and its causes, `a: b: c`.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

impl From<bluesphere_core::Error> for Error {
    fn from(e: bluesphere_core::Error) -> Self {
        use bluesphere_core::Error as E;
        let hint = match &e {
            E::NeedBase { .. } => "give the installed image the delta was made from",
            E::ChooseComponent { .. } | E::NoComponent { .. } => "choose one of the components",
            E::WrongBase { .. } => "use the image the device runs now, or make a delta from it",
            E::Package(bluesphere_core::package::PackageError::UnknownKey { .. }) => {
                "give the public key of the key that signed the package"
            }
            _ => "",
        };
        Error::new(ErrorKind::from_name(e.kind()), chain(&e)).hint(hint)
    }
}

impl From<KeyError> for Error {
    fn from(e: KeyError) -> Self {
        let hint = match &e {
            KeyError::WrongAlgorithm { .. } => {
                "make a P-256 key (keygen, or `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`)"
            }
            _ => "",
        };
        Error::new(ErrorKind::Key, chain(&e)).hint(hint)
    }
}

impl From<HostError> for Error {
    fn from(e: HostError) -> Self {
        let hint = match &e {
            HostError::NoPort(_) => "check the cable and the list of ports",
            HostError::NoBluetooth(_) => {
                "plug in a Bluetooth LE adapter, or start the Bluetooth service (`sudo systemctl start bluetooth`); a USB-serial cable works without Bluetooth"
            }
            HostError::BluetoothOff(_) => "switch Bluetooth on (`bluetoothctl power on`, or the desktop's Bluetooth setting)",
            HostError::Timeout { .. } => "check the cable and that the device runs its updater",
            HostError::Refused { reason, .. } => {
                use bluesphere_core::proto::RefuseReason as R;
                match reason {
                    R::WrongBase | R::NotInstalled => {
                        "make the delta from the image the device runs now, or push a full image"
                    }
                    R::InstalledCorrupt => "push a full image (not a delta) to repair the device",
                    R::UnknownKey | R::BadSignature => {
                        "sign the package with a key this device trusts"
                    }
                    R::WrongProduct | R::WrongHardware => {
                        "make the package for this device's product and hardware ids"
                    }
                    R::Rollback => "give the new image a security counter at least the device's",
                    R::TooLarge => "the image does not fit this device's slot: make it smaller",
                    R::MissingDependency | R::DependencyTooOld => {
                        "update the component the package depends on first, or put it in the package"
                    }
                    _ => "",
                }
            }
            _ => "",
        };
        Error::new(ErrorKind::from_name(e.kind()), chain(&e)).hint(hint)
    }
}

impl From<RegistryError> for Error {
    fn from(e: RegistryError) -> Self {
        Error::new(ErrorKind::from_name(e.kind()), chain(&e))
    }
}

impl From<bluesphere_core::image::ImageError> for Error {
    fn from(e: bluesphere_core::image::ImageError) -> Self {
        use bluesphere_core::image::ImageError as E;
        let hint = match &e {
            E::FarApart { .. } | E::EmptyRange { .. } => {
                "choose the address range to pack, or pack one component per segment"
            }
            E::HexNoEof { .. } => "export the HEX file again; its end is missing",
            _ => "",
        };
        Error::new(ErrorKind::from_name(e.kind()), chain(&e)).hint(hint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_json_name() {
        for k in ErrorKind::ALL {
            let n = k.as_str();
            assert_eq!(
                serde_json::to_value(k).ok(),
                Some(serde_json::Value::String(n.into()))
            );
            assert_eq!(ErrorKind::from_name(n), *k);
            assert_eq!(n.to_ascii_lowercase(), n);
        }
        assert_eq!(ErrorKind::from_name("no-such-kind"), ErrorKind::Internal);
    }
}
