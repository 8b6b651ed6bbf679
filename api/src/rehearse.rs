//! `rehearse`: before release, run a package through the device SDK's own updater on
//! simulated flash, cutting power at random flash operations (see
//! `bluesphere_device::rehearse`).

use std::path::PathBuf;
use std::time::Instant;

use bluesphere_device::rehearse::{rehearse as run, Rehearsal};
use bluesphere_device::Identity;
use serde::{Deserialize, Serialize};

use crate::package::{load_image, load_package, load_publics, AddressRange, InputFormat};
use crate::progress::{Cancel, Event, Progress};
use crate::{Error, ErrorKind};

/// What to rehearse.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct RehearseRequest {
    /// The package.
    pub package: PathBuf,
    /// The image the device runs before the update (needed for a delta; for a full image,
    /// any image the device could be running).
    pub old: PathBuf,
    /// Public key the simulated device trusts (the signer's).
    pub public: PathBuf,
    /// Input format of `old`.
    pub format: InputFormat,
    /// Addresses of a HEX or ELF `old` to keep.
    pub range: Option<AddressRange>,
    /// Power cuts.
    pub cuts: u32,
    /// Sector size of the target's flash.
    pub sector: u32,
    /// A/B slots instead of swap.
    pub ab: bool,
    /// Tear the cut operation instead of skipping it.
    pub tear: bool,
    /// Seed of the cut points.
    pub seed: u64,
}

impl Default for RehearseRequest {
    fn default() -> Self {
        Self {
            package: PathBuf::new(),
            old: PathBuf::new(),
            public: PathBuf::new(),
            format: InputFormat::Auto,
            range: None,
            cuts: 100,
            sector: 4096,
            ab: false,
            tear: false,
            seed: 1,
        }
    }
}

/// One cut that did not end well.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct RehearseFailure {
    /// The flash operation power was cut at.
    pub op: u64,
    /// What went wrong.
    pub what: String,
}

/// What the rehearsal found.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct RehearseReport {
    /// True when every cut survived.
    pub ok: bool,
    /// Flash operations (erases and writes) of the update without cuts.
    pub flash_ops: u64,
    /// Sector erases of the update without cuts.
    pub erases: u64,
    /// Power cuts made.
    pub cuts: u32,
    /// Cuts after which every boot ran a whole image and the update then completed.
    pub survived: u32,
    /// Cuts after which the device first booted the old image.
    pub old_kept: u32,
    /// Cuts after which the device first booted the new image.
    pub new_installed: u32,
    /// The cuts that did not end well (a bug in the updater: please report it).
    pub failures: Vec<RehearseFailure>,
    /// Slot mode.
    pub mode: String,
    /// Sector size.
    pub sector: u32,
    /// Seconds.
    pub seconds: f64,
}

/// Rehearse; a report with failures is an error of kind [`ErrorKind::RehearsalFailed`] only
/// in the CLI's exit code: the report itself says which cut failed.
pub fn rehearse(
    req: &RehearseRequest,
    progress: &dyn Progress,
    cancel: &Cancel,
) -> Result<RehearseReport, Error> {
    if req.cuts == 0 || req.cuts > 100_000 {
        return Err(Error::usage(format!(
            "{} power cuts: choose 1 to 100000",
            req.cuts
        )));
    }
    let pkg = load_package(&req.package)?;
    let info = bluesphere_core::unpack::inspect(&pkg)?;
    let keys = load_publics(std::slice::from_ref(&req.public))?;
    let old = load_image(&req.old, req.format, req.range)?;
    let c = info
        .components
        .first()
        .ok_or_else(|| Error::new(ErrorKind::BadPackage, "the package has no component"))?;
    let old_version = if c.record.from_version.is_empty() {
        "0.0.0".to_string()
    } else {
        c.record.from_version.clone()
    };
    progress.event(Event::Stage {
        name: "rehearse".into(),
        component: 0,
        of: 1,
    });
    let t = Instant::now();
    let r = Rehearsal {
        old: &old.data,
        old_version: &old_version,
        old_counter: 0,
        package: &pkg,
        keys: &keys,
        identity: Identity {
            product_id: &info.product_id,
            hardware_id: &info.hardware_id,
        },
        component: &c.record.name,
        swap: !req.ab,
        cuts: req.cuts,
        tear: req.tear,
        seed: req.seed,
    };
    let total = u64::from(req.cuts);
    let rep = run(&r, req.sector as usize, &mut |done| {
        progress.event(Event::Items {
            done: u64::from(done),
            total,
        });
        !cancel.is_cancelled()
    })
    .map_err(|e| {
        use bluesphere_device::rehearse::RehearseError as R;
        match e {
            R::Sector(_) => Error::usage(e.to_string()),
            R::Package(_) => Error::new(ErrorKind::BadPackage, e.to_string()),
            R::Clean(_) => Error::new(ErrorKind::Refused, e.to_string()).hint(
                "check that the old image is the one the package was made from and the key is the signer's",
            ),
        }
    })?;
    cancel.check()?;
    Ok(RehearseReport {
        ok: rep.failures.is_empty(),
        flash_ops: rep.flash_ops,
        erases: rep.erases,
        cuts: rep.cuts,
        survived: rep.survived,
        old_kept: rep.old_kept,
        new_installed: rep.new_installed,
        failures: rep
            .failures
            .into_iter()
            .map(|f| RehearseFailure {
                op: f.op,
                what: f.what,
            })
            .collect(),
        mode: if req.ab { "ab" } else { "swap" }.into(),
        sector: req.sector,
        seconds: t.elapsed().as_secs_f64(),
    })
}
