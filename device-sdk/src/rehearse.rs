//! Rehearse an update before release (feature `std`): run a real package through this SDK's
//! own updater on simulated NOR flash of the target's geometry, cut power at random flash
//! operations, and after each cut boot from the flash alone and carry on as a device would,
//! checking that every boot runs the old or the new image and that the update completes.
//!
//! | step | what |
//! |---|---|
//! | clean run | provision the old image, install the package, boot, confirm; count the flash operations `n` |
//! | each cut | a fresh copy of the provisioned flash; power off before operation `k` (random in `0..n`, or torn with `tear`) |
//! | after a cut | power on, boot: note which image runs (old kept or new installed), then carry on to the confirmed new image |
//! | a failure | a boot that runs neither image, or no way to the new image: reported with its cut point |

extern crate std;

use std::boxed::Box;
use std::format;
use std::string::String;
use std::vec::Vec;

use p256::ecdsa::VerifyingKey;
use sha2::{Digest, Sha256};

use bluesphere_core::package::{Package, HEADER_LEN};

use crate::sim::{Cut, SimError, SimFlash};
use crate::{
    BestWorkspace, Config, Identity, Layout, Region, SlotMode, UpdateError, UpdatePhase, Updater,
};

/// Write unit of the simulated flash.
const WRITE: usize = 8;

/// What to rehearse.
#[derive(Debug, Clone, Copy)]
pub struct Rehearsal<'a> {
    /// The image the device runs before the update.
    pub old: &'a [u8],
    /// Its version.
    pub old_version: &'a str,
    /// Its security counter.
    pub old_counter: u32,
    /// The package.
    pub package: &'a [u8],
    /// Keys the simulated device trusts.
    pub keys: &'a [VerifyingKey],
    /// The device's product and hardware ids.
    pub identity: Identity<'a>,
    /// The component its slots hold.
    pub component: &'a str,
    /// Swap (one execution slot) or A/B slots.
    pub swap: bool,
    /// How many power cuts.
    pub cuts: u32,
    /// Tear the cut operation (a partly written word or erased sector) instead of skipping it.
    pub tear: bool,
    /// Seed of the cut points.
    pub seed: u64,
}

/// One cut that did not end well.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CutFailure {
    /// The flash operation power was cut at.
    pub op: u64,
    /// What went wrong.
    pub what: String,
}

/// What the rehearsal found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RehearsalReport {
    /// Flash operations of the clean update.
    pub flash_ops: u64,
    /// Erases of the clean update.
    pub erases: u64,
    /// Power cuts made.
    pub cuts: u32,
    /// Cuts after which every boot ran a whole image and the update completed.
    pub survived: u32,
    /// Cuts after which the first boot ran the old image.
    pub old_kept: u32,
    /// Cuts after which the first boot ran the new image.
    pub new_installed: u32,
    /// The others.
    pub failures: Vec<CutFailure>,
}

/// Why a rehearsal could not run.
#[derive(Debug, thiserror::Error)]
pub enum RehearseError {
    /// The package does not parse.
    #[error("the package does not parse: {0}")]
    Package(String),
    /// The sector size is not one the rehearsal has.
    #[error("sector size {0}: use 1024, 2048, 4096, 8192, 16384, 32768 or 65536 bytes")]
    Sector(usize),
    /// The simulated device refused or failed the update without any power cut.
    #[error("without any power cut, the device does not take this package: {0}")]
    Clean(String),
}

enum Stop {
    Cut,
    Bug(String),
}

fn stop(e: UpdateError<SimError>) -> Stop {
    match e {
        UpdateError::Flash(SimError::PowerCut) => Stop::Cut,
        e => Stop::Bug(format!("{e}")),
    }
}

struct Run<'a> {
    cfg: Config<'a>,
    header: &'a [u8],
    manifest: &'a [u8],
    signature: &'a [u8],
    payload: &'a [u8],
    old_sha: [u8; 32],
    new_sha: [u8; 32],
}

/// Which image a boot started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Booted {
    Old,
    New,
}

type Ws = BestWorkspace<256>;

impl Run<'_> {
    /// Power on and play device and host until the new image is confirmed; the image the
    /// first boot ran.
    fn drive<const E: usize>(
        &self,
        flash: &mut SimFlash<WRITE, E>,
        ws: &mut Ws,
    ) -> Result<Booted, Stop> {
        let mut first = None;
        for _ in 0..8 {
            let mut up: Updater<'_, &mut SimFlash<WRITE, E>, BestWorkspace<256>> =
                Updater::open(&mut *flash, self.cfg, &mut *ws).map_err(stop)?;
            let slot = up.boot().map_err(stop)?;
            let info = up
                .image_info(slot)
                .map_err(stop)?
                .ok_or_else(|| Stop::Bug(format!("booted slot {slot}: no image")))?;
            let sha = up.hash_slot(slot, info.size).map_err(stop)?;
            let booted = if sha == self.old_sha {
                Booted::Old
            } else if sha == self.new_sha {
                Booted::New
            } else {
                return Err(Stop::Bug(format!("booted slot {slot}: neither image")));
            };
            first.get_or_insert(booted);
            match up.status().phase {
                UpdatePhase::Idle
                | UpdatePhase::Receiving
                | UpdatePhase::Applying
                | UpdatePhase::Reverted => {
                    let b = up
                        .begin(self.header, self.manifest, self.signature)
                        .map_err(stop)?;
                    let mut off = b.resume_offset;
                    while off < b.payload_len {
                        let end = (off as usize + 4096).min(self.payload.len());
                        let data = self.payload.get(off as usize..end).unwrap_or(&[]);
                        off = up.write(off, data).map_err(stop)?;
                    }
                    up.finish().map_err(stop)?;
                }
                UpdatePhase::Pending => {}
                UpdatePhase::Testing => {
                    up.confirm().map_err(stop)?;
                    return Ok(first.unwrap_or(Booted::New));
                }
                UpdatePhase::Confirmed if booted == Booted::New => {
                    return Ok(first.unwrap_or(Booted::New))
                }
                p => {
                    return Err(Stop::Bug(format!(
                        "the device stopped in phase {}",
                        p.name()
                    )))
                }
            }
        }
        Err(Stop::Bug("no progress after 8 boots".into()))
    }
}

/// Rehearse with `sector`-byte sectors; `progress(done)` after each cut returns whether to
/// go on (false: stop, the report counts the cuts made).
pub fn rehearse(
    r: &Rehearsal<'_>,
    sector: usize,
    progress: &mut dyn FnMut(u32) -> bool,
) -> Result<RehearsalReport, RehearseError> {
    match sector {
        1024 => rehearse_with::<1024>(r, progress),
        2048 => rehearse_with::<2048>(r, progress),
        4096 => rehearse_with::<4096>(r, progress),
        8192 => rehearse_with::<8192>(r, progress),
        16384 => rehearse_with::<16384>(r, progress),
        32768 => rehearse_with::<32768>(r, progress),
        65536 => rehearse_with::<65536>(r, progress),
        other => Err(RehearseError::Sector(other)),
    }
}

fn rehearse_with<const E: usize>(
    r: &Rehearsal<'_>,
    progress: &mut dyn FnMut(u32) -> bool,
) -> Result<RehearsalReport, RehearseError> {
    let p = Package::parse(r.package).map_err(|e| RehearseError::Package(format!("{e}")))?;
    let c = p
        .manifest
        .components()
        .next()
        .and_then(Result::ok)
        .ok_or_else(|| RehearseError::Package("no component".into()))?;
    let m_end = HEADER_LEN + p.header.manifest_len as usize;
    let sig_end = m_end + p.signature().len();
    let biggest = r.old.len().max(c.target_size as usize);
    let slot_sectors = biggest.div_ceil(E) as u32 + 2;
    let e = E as u32;
    let k = slot_sectors * e;
    let layout = Layout {
        slots: [Region { start: 0, len: k }, Region { start: k, len: k }],
        journal: Region {
            start: 2 * k + e,
            len: 2 * e,
        },
        mode: if r.swap {
            SlotMode::Swap {
                scratch: Region {
                    start: 2 * k,
                    len: e,
                },
            }
        } else {
            SlotMode::AB
        },
    };
    let run = Run {
        cfg: Config {
            layout,
            erased: 0xFF,
            keys: r.keys,
            identity: r.identity,
            component: r.component,
            member: false,
        },
        header: r.package.get(..HEADER_LEN).unwrap_or(&[]),
        manifest: r.package.get(HEADER_LEN..m_end).unwrap_or(&[]),
        signature: r.package.get(m_end..sig_end).unwrap_or(&[]),
        payload: r.package.get(sig_end..).unwrap_or(&[]),
        old_sha: Sha256::digest(r.old).into(),
        new_sha: c.target_sha256,
    };
    let mut ws = Box::new(Ws::new());
    let mut base: SimFlash<WRITE, E> = SimFlash::new((2 * slot_sectors + 3) as usize, 0xFF);
    {
        let mut up: Updater<'_, &mut SimFlash<WRITE, E>, BestWorkspace<256>> =
            Updater::open(&mut base, run.cfg, &mut *ws)
                .map_err(|e| RehearseError::Clean(format!("{e}")))?;
        up.provision(r.old, r.component, r.old_version, r.old_counter)
            .map_err(|e| RehearseError::Clean(format!("{e}")))?;
    }
    base.power_on();
    base.counters = Default::default();
    let mut clean = base.clone();
    match run.drive(&mut clean, &mut ws) {
        Ok(_) => {}
        Err(Stop::Bug(e)) => return Err(RehearseError::Clean(e)),
        Err(Stop::Cut) => return Err(RehearseError::Clean("power cut without a cut".into())),
    }
    let mut report = RehearsalReport {
        flash_ops: clean.ops(),
        erases: clean.counters.erases,
        cuts: r.cuts,
        ..RehearsalReport::default()
    };
    let mut rng = r.seed | 1;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for i in 0..r.cuts {
        let op = next() % report.flash_ops.max(1);
        let mut f = base.clone();
        let cut = if r.tear {
            Cut::Tear(op)
        } else {
            Cut::Before(op)
        };
        f.set_cut(Some(cut), next());
        let outcome = match run.drive(&mut f, &mut ws) {
            Err(Stop::Cut) => {
                f.power_on();
                run.drive(&mut f, &mut ws)
            }
            // The cut point lay beyond what this run needed (it resumed differently).
            other => other,
        };
        match outcome {
            Ok(Booted::Old) => {
                report.survived += 1;
                report.old_kept += 1;
            }
            Ok(Booted::New) => {
                report.survived += 1;
                report.new_installed += 1;
            }
            Err(Stop::Cut) => report.failures.push(CutFailure {
                op,
                what: "power failed again without a cut".into(),
            }),
            Err(Stop::Bug(what)) => report.failures.push(CutFailure { op, what }),
        }
        if !progress(i + 1) {
            report.cuts = i + 1;
            break;
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bluesphere_core::delta::Params;
    use bluesphere_core::testkit::{evolve, firmware, package, PackageFor};
    use p256::ecdsa::SigningKey;
    use std::string::ToString;

    #[test]
    fn every_cut_survives_and_both_outcomes_occur() {
        let old = firmware(5, 24_000);
        let new = evolve(&old, 5);
        let sk = SigningKey::from_slice(&[9u8; 32]).unwrap();
        let pkg = package(
            &sk,
            PackageFor {
                product: "thermo",
                hardware: "revB",
                old: Some(&old),
                new: &new,
                version: "1.1.0",
                counter: 2,
                params: Params::BEST,
            },
        )
        .unwrap();
        let keys = [*sk.verifying_key()];
        for (swap, tear) in [(true, false), (false, true)] {
            let r = Rehearsal {
                old: &old,
                old_version: "1.0.0",
                old_counter: 1,
                package: &pkg,
                keys: &keys,
                identity: Identity {
                    product_id: "thermo",
                    hardware_id: "revB",
                },
                component: "main",
                swap,
                cuts: 40,
                tear,
                seed: 7,
            };
            let mut seen = 0;
            let rep = rehearse(&r, 4096, &mut |n| {
                seen = n;
                true
            })
            .unwrap();
            assert_eq!(seen, 40);
            assert!(rep.flash_ops > 10, "{rep:?}");
            assert_eq!(rep.survived, 40, "{rep:?}");
            assert!(rep.failures.is_empty(), "{rep:?}");
            assert_eq!(rep.old_kept + rep.new_installed, 40, "{rep:?}");
            if swap {
                // Most of a swap-mode update is the boot-time swap: cuts land on both sides.
                assert!(rep.old_kept > 0 && rep.new_installed > 0, "{rep:?}");
            }
        }
        // A package the device refuses is said so before any cut.
        let other = [*SigningKey::from_slice(&[3u8; 32]).unwrap().verifying_key()];
        let r = Rehearsal {
            old: &old,
            old_version: "1.0.0",
            old_counter: 1,
            package: &pkg,
            keys: &other,
            identity: Identity {
                product_id: "thermo",
                hardware_id: "revB",
            },
            component: "main",
            swap: true,
            cuts: 3,
            tear: false,
            seed: 1,
        };
        let e = rehearse(&r, 4096, &mut |_| true).unwrap_err();
        assert!(e.to_string().contains("does not take this package"), "{e}");
        assert!(matches!(
            rehearse(&r, 1000, &mut |_| true),
            Err(RehearseError::Sector(1000))
        ));
    }
}
