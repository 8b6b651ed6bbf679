//! # bluesphere-api
//!
//! Every BlueSphere user job as a plain function: a request struct in, a report or an
//! [`Error`] out, progress to a [`Progress`] sink as [`Event`]s, a [`Cancel`] token for the
//! long ones, passphrases through [`Secrets`]. The `bluesphere` CLI and the Studio are thin
//! shells over it: no product decision is made in either. Requests, reports, events and
//! errors are `serde` types, so a Tauri command is a few lines.
//!
//! A crate of its own (not a module of `bluesphere-host`): the jobs combine the core (package
//! format, keys, images), the host (transports, registry, station) and file policy (bounded
//! inputs, outputs that never replace inputs, atomic writes), and the device side's std port
//! will join them; the host stays a transport library.
//!
//! | job | function |
//! |---|---|
//! | keygen | [`package::keygen`] |
//! | pack, inspect, verify, apply | [`package::pack`], [`package::inspect`], [`package::verify`], [`package::apply`] |
//! | codes gen / verify / order / audit | [`codes::codes_gen`], [`codes::codes_verify`], [`codes::codes_order`], [`codes::codes_audit`] |
//! | station | [`codes::station`] |
//! | ports / devices list, info | [`device::devices`], [`device::info`] |
//! | push | [`device::push`] |
//! | confirm / revert / reboot | [`device::act`] |

pub mod codes;
pub mod compare;
pub mod device;
mod error;
pub mod files;
pub mod history;
pub mod package;
mod progress;
pub mod rehearse;
pub mod release;
mod secrets;

pub use error::{Error, ErrorKind};
pub use progress::{Cancel, Event, NoProgress, Progress};
pub use secrets::{NoSecrets, Passphrase, Purpose, Secrets};

/// What the Studio shows about itself.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct AppInfo {
    /// Version of the tools.
    pub version: String,
    /// The folder of the sample images shipped with the source (`assets/`), when found.
    pub samples: Option<String>,
}

/// This version, and the sample images beside the working folder (a source checkout).
pub fn app_info() -> AppInfo {
    let samples = std::env::current_dir()
        .ok()
        .into_iter()
        .flat_map(|d| [d.join("assets"), d.join("../assets")])
        .find(|d| d.join("sample-v1.0.0.bin").is_file())
        .and_then(|d| d.canonicalize().ok())
        .map(|d| d.display().to_string());
    AppInfo {
        version: env!("CARGO_PKG_VERSION").into(),
        samples,
    }
}
