//! One error type for every job: a stable [`ErrorKind`], a message that says what happened,
//! and a hint that says what to do next. Only the CLI maps kinds to exit codes.

use std::fmt;

use bluesphere_core::keys::KeyError;
use bluesphere_host::registry::RegistryError;
use bluesphere_host::HostError;
use serde::{Deserialize, Serialize};

/// What kind of failure, for scripts, exit codes and the Studio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// A file could not be read or written.
    Io,
    /// A bug.
    Internal,
    /// An output exists and may not be replaced.
    Exists,
    /// The request is inconsistent.
    Usage,
    /// An output would replace an input, or is not a regular file.
    OutputConflict,
    /// A package or stream is corrupt.
    Corrupt,
    /// A package or stream ends early.
    Truncated,
    /// Not a BlueSphere package.
    NotAPackage,
    /// A newer package format.
    UnsupportedVersion,
    /// An input is not what it should be (not an image, bad Intel HEX, too large, not a file).
    InvalidInput,
    /// The signature does not verify.
    BadSignature,
    /// Signed by a key that is not trusted.
    UnknownKey,
    /// An activation code does not verify.
    InvalidCode,
    /// The delta was made from another base image.
    WrongBase,
    /// A delta needs its base image.
    NeedBase,
    /// For other hardware.
    WrongHardware,
    /// For another product.
    WrongProduct,
    /// No such component (or several and none chosen).
    NoComponent,
    /// A key cannot be used (unreadable, wrong or missing passphrase).
    Key,
    /// The activation registry failed.
    Registry,
    /// The UID already has a code.
    AlreadyIssued,
    /// The UID has no code to re-issue.
    NotIssued,
    /// A production order problem.
    Order,
    /// A production order is used up.
    OrderLimit,
    /// No such port or device.
    NoPort,
    /// Not allowed to open the port.
    PermissionDenied,
    /// Another program has the port.
    PortBusy,
    /// Any other port problem.
    Port,
    /// The package cannot be pushed.
    BadPackage,
    /// The device refused the package: it does not fit.
    TooLarge,
    /// The device refused the package: downgrade.
    Rollback,
    /// The device refused the package.
    Refused,
    /// The device is in a state that does not allow this.
    DeviceBusy,
    /// The device speaks another protocol version.
    ProtocolVersion,
    /// The device reported a failure.
    DeviceError,
    /// No answer in time.
    Timeout,
    /// Some devices of a station run failed.
    StationFailures,
    /// Cancelled by the user.
    Cancelled,
}

impl ErrorKind {
    /// The kebab-case name (as in JSON).
    pub fn as_str(self) -> &'static str {
        ErrorKind::ALL
            .iter()
            .position(|k| *k == self)
            .and_then(|i| ErrorKind::NAMES.get(i))
            .copied()
            .unwrap_or("internal")
    }

    /// Every kind.
    pub const ALL: &'static [ErrorKind] = &[
        ErrorKind::Io,
        ErrorKind::Internal,
        ErrorKind::Exists,
        ErrorKind::Usage,
        ErrorKind::OutputConflict,
        ErrorKind::Corrupt,
        ErrorKind::Truncated,
        ErrorKind::NotAPackage,
        ErrorKind::UnsupportedVersion,
        ErrorKind::InvalidInput,
        ErrorKind::BadSignature,
        ErrorKind::UnknownKey,
        ErrorKind::InvalidCode,
        ErrorKind::WrongBase,
        ErrorKind::NeedBase,
        ErrorKind::WrongHardware,
        ErrorKind::WrongProduct,
        ErrorKind::NoComponent,
        ErrorKind::Key,
        ErrorKind::Registry,
        ErrorKind::AlreadyIssued,
        ErrorKind::NotIssued,
        ErrorKind::Order,
        ErrorKind::OrderLimit,
        ErrorKind::NoPort,
        ErrorKind::PermissionDenied,
        ErrorKind::PortBusy,
        ErrorKind::Port,
        ErrorKind::BadPackage,
        ErrorKind::TooLarge,
        ErrorKind::Rollback,
        ErrorKind::Refused,
        ErrorKind::DeviceBusy,
        ErrorKind::ProtocolVersion,
        ErrorKind::DeviceError,
        ErrorKind::Timeout,
        ErrorKind::StationFailures,
        ErrorKind::Cancelled,
    ];

    const NAMES: &'static [&'static str] = &[
        "io",
        "internal",
        "exists",
        "usage",
        "output-conflict",
        "corrupt",
        "truncated",
        "not-a-package",
        "unsupported-version",
        "invalid-input",
        "bad-signature",
        "unknown-key",
        "invalid-code",
        "wrong-base",
        "need-base",
        "wrong-hardware",
        "wrong-product",
        "no-component",
        "key",
        "registry",
        "already-issued",
        "not-issued",
        "order",
        "order-limit",
        "no-port",
        "permission-denied",
        "port-busy",
        "port",
        "bad-package",
        "too-large",
        "rollback",
        "refused",
        "device-busy",
        "protocol-version",
        "device-error",
        "timeout",
        "station-failures",
        "cancelled",
    ];

    /// From a kebab-case name (the host's and the core's kind strings).
    pub fn from_name(name: &str) -> ErrorKind {
        ErrorKind::NAMES
            .iter()
            .position(|n| *n == name)
            .and_then(|i| ErrorKind::ALL.get(i).copied())
            .unwrap_or(ErrorKind::Internal)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
        Error::new(ErrorKind::Key, chain(&e))
    }
}

impl From<HostError> for Error {
    fn from(e: HostError) -> Self {
        let hint = match &e {
            HostError::NoPort(_) => "check the cable and the list of ports",
            HostError::Timeout { .. } => "check the cable and that the device runs its updater",
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
        Error::new(ErrorKind::InvalidInput, chain(&e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_json_name() {
        assert_eq!(ErrorKind::ALL.len(), ErrorKind::NAMES.len());
        for (k, n) in ErrorKind::ALL.iter().zip(ErrorKind::NAMES) {
            assert_eq!(
                serde_json::to_value(k).ok(),
                Some(serde_json::Value::String((*n).into()))
            );
            assert_eq!(k.as_str(), *n);
            assert_eq!(ErrorKind::from_name(n), *k);
        }
        assert_eq!(ErrorKind::from_name("no-such-kind"), ErrorKind::Internal);
    }
}
