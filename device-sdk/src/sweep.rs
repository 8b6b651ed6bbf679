//! The power-cut proof (mcuboot's simulator, plus torn operations).
//!
//! For an update and for a revert, on a matrix of sector sizes, write sizes, erased values,
//! slot modes and decoder profiles: run the scenario once and count its flash operations;
//! then for every operation `i` cut power before it (and, separately, tear it), restart from
//! the flash contents alone, run to the end, and check that every boot started the old or
//! the new image (never anything else), that the device ends in the right phase, and that
//! both slots hold the expected bytes. Then 5 random cuts per run over many seeds.

extern crate std;

use std::format;
use std::println;
use std::string::String;
use std::vec::Vec;

use bluesphere_core::delta::Params;
use bluesphere_core::package::{Package, HEADER_LEN};
use bluesphere_core::testkit::{evolve, firmware, package, PackageFor};
use embedded_storage::nor_flash::ReadNorFlash;
use p256::ecdsa::{SigningKey, VerifyingKey};

use crate::journal::{Journal, Phase};
use crate::sim::{Cut, SimError, SimFlash};
use crate::{
    Config, Identity, Layout, Profile, Region, SlotMode, UpdateError, UpdatePhase, Updater,
    Workspace,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Goal {
    /// Install and confirm.
    Update,
    /// Install, never confirm: the next boot reverts.
    Revert,
}

pub(crate) struct Fixture {
    pub old: Vec<u8>,
    pub new: Vec<u8>,
    pub pkg: Vec<u8>,
    pub key: VerifyingKey,
}

impl Fixture {
    pub fn new(seed: u64, size: usize, params: Params) -> Fixture {
        let old = firmware(seed, size);
        let new = evolve(&old, seed);
        let sk = SigningKey::from_slice(&[7u8; 32]).unwrap();
        let pkg = package(
            &sk,
            PackageFor {
                product: "thermo",
                hardware: "revB",
                old: Some(&old),
                new: &new,
                version: "1.1.0",
                counter: 2,
                params,
            },
        )
        .unwrap();
        Fixture {
            old,
            new,
            pkg,
            key: *sk.verifying_key(),
        }
    }

    pub fn parts(&self) -> (&[u8], &[u8], &[u8], &[u8]) {
        let p = Package::parse(&self.pkg).unwrap();
        let m = HEADER_LEN + p.header.manifest_len as usize;
        (
            &self.pkg[..HEADER_LEN],
            &self.pkg[HEADER_LEN..m],
            &self.pkg[m..m + 64],
            &self.pkg[m + 64..],
        )
    }
}

pub(crate) const ID: Identity<'static> = Identity {
    product_id: "thermo",
    hardware_id: "revB",
};

/// Slot 0, slot 1, scratch (1 sector), journal (2 sectors); returns the sector count.
pub(crate) fn layout(e: u32, slot_sectors: u32, swap: bool) -> (Layout, usize) {
    let k = slot_sectors * e;
    let scratch = Region {
        start: 2 * k,
        len: e,
    };
    let layout = Layout {
        slots: [Region { start: 0, len: k }, Region { start: k, len: k }],
        journal: Region {
            start: 2 * k + e,
            len: 2 * e,
        },
        mode: if swap {
            SlotMode::Swap { scratch }
        } else {
            SlotMode::AB
        },
    };
    (layout, (2 * slot_sectors + 3) as usize)
}

#[derive(Debug)]
pub(crate) enum Stop {
    Cut,
    Bug(String),
}

fn stop(e: UpdateError<SimError>) -> Stop {
    match e {
        UpdateError::Flash(SimError::PowerCut) => Stop::Cut,
        e => Stop::Bug(format!("{e}")),
    }
}

type Up<'a, const W: usize, const E: usize, P> = Updater<'a, &'a mut SimFlash<W, E>, P>;

fn slot_holds<const W: usize, const E: usize>(f: &SimFlash<W, E>, r: Region, img: &[u8]) -> bool {
    let s = r.start as usize;
    f.mem().get(s..s + img.len()) == Some(img)
}

/// Power on, run the boot step, and play host and application until `goal`.
pub(crate) fn drive<const W: usize, const E: usize, P: Profile>(
    flash: &mut SimFlash<W, E>,
    cfg: Config<'_>,
    fx: &Fixture,
    goal: Goal,
    chunk: usize,
    plant: Option<(u32, u8)>,
    ws: &mut P,
) -> Result<UpdatePhase, Stop> {
    let (h, m, s, payload) = fx.parts();
    for _ in 0..8 {
        let mut up: Up<'_, W, E, P> = Updater::open(&mut *flash, cfg, &mut *ws).map_err(stop)?;
        up.skip_record = plant;
        let slot = up.boot().map_err(stop)?;
        let region = cfg.layout.slots[usize::from(slot)];
        {
            let f: &SimFlash<W, E> = up.flash();
            if !slot_holds(f, region, &fx.old) && !slot_holds(f, region, &fx.new) {
                return Err(Stop::Bug(format!("booted slot {slot}: neither image")));
            }
        }
        match up.status().phase {
            UpdatePhase::Idle | UpdatePhase::Receiving | UpdatePhase::Applying => {
                let b = up.begin(h, m, s).map_err(stop)?;
                let mut off = b.resume_offset;
                while off < b.payload_len {
                    let end = (off as usize + chunk).min(payload.len());
                    off = up.write(off, &payload[off as usize..end]).map_err(stop)?;
                }
                up.finish().map_err(stop)?;
            }
            UpdatePhase::Pending => {}
            UpdatePhase::Testing => {
                if goal == Goal::Update {
                    up.confirm().map_err(stop)?;
                    return Ok(UpdatePhase::Confirmed);
                }
            }
            p @ (UpdatePhase::Confirmed | UpdatePhase::Reverted) => return Ok(p),
            p => return Err(Stop::Bug(format!("boot left the device in {p:?}"))),
        }
    }
    Err(Stop::Bug("no progress after 8 boots".into()))
}

fn durable_phase<const W: usize, const E: usize>(f: &mut SimFlash<W, E>, j: Region) -> Phase {
    let erased = f.erased();
    Journal::open::<_, crate::journal::Record>(f, j, erased)
        .ok()
        .and_then(|(_, r)| r)
        .map_or(Phase::Idle, |r| r.phase)
}

/// Check the end state: the boot slot runs `want` and the other slot keeps the other image.
fn check_end<const W: usize, const E: usize>(
    f: &mut SimFlash<W, E>,
    cfg: Config<'_>,
    fx: &Fixture,
    phase: UpdatePhase,
    want: UpdatePhase,
) -> Result<(), String> {
    if phase != want {
        return Err(format!("ended {phase:?}, expected {want:?}"));
    }
    let (run, other) = if want == UpdatePhase::Confirmed {
        (&fx.new, &fx.old)
    } else {
        (&fx.old, &fx.new)
    };
    let erased = f.erased();
    let rec = Journal::open::<_, crate::journal::Record>(f, cfg.layout.journal, erased)
        .ok()
        .and_then(|(_, r)| r)
        .ok_or("no journal record")?;
    let boot = match cfg.layout.mode {
        SlotMode::Swap { .. } => 0,
        SlotMode::AB => usize::from(rec.active & 1),
    };
    let slots = cfg.layout.slots;
    if !slot_holds(f, slots[boot], run) {
        return Err(format!("boot slot {boot} does not hold the expected image"));
    }
    if !slot_holds(f, slots[1 - boot], other) {
        return Err(format!("slot {} lost the other image", 1 - boot));
    }
    let mut t = [0u8; crate::journal::TRAILER_LEN];
    let at = slots[boot].start + slots[boot].len - E as u32;
    f.read(at, &mut t).map_err(|e| format!("{e:?}"))?;
    let info = crate::ImageInfo::decode(&t).ok_or("boot slot trailer invalid")?;
    let v = if want == UpdatePhase::Confirmed {
        "1.1.0"
    } else {
        "1.0.0"
    };
    if info.version() != v || info.size as usize != run.len() {
        return Err(format!(
            "boot slot trailer says {} ({} B)",
            info.version(),
            info.size
        ));
    }
    Ok(())
}

/// Tallies of one sweep.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Tally {
    pub cut_points: u64,
    pub recovered: u64,
    pub bricked: u64,
    pub clean_ops: u64,
}

impl Tally {
    pub fn add(&mut self, o: Tally) {
        self.cut_points += o.cut_points;
        self.recovered += o.recovered;
        self.bricked += o.bricked;
        self.clean_ops += o.clean_ops;
    }
}

/// A sweep case.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Case {
    pub name: &'static str,
    pub swap: bool,
    pub erased: u8,
    pub image: usize,
    pub params: Params,
    pub seeds: u64,
    pub chunk: usize,
}

/// Run the full sweep of one case; `plant` sets the planted journal bug.
pub(crate) fn sweep<const W: usize, const E: usize, P: Profile + Default>(
    case: Case,
    plant: Option<(u32, u8)>,
) -> Tally {
    let fx = Fixture::new(case.image as u64, case.image, case.params);
    let biggest = fx.old.len().max(fx.new.len());
    let slot_sectors = (biggest.div_ceil(E) + 2) as u32;
    let (layout, sectors) = layout(E as u32, slot_sectors, case.swap);
    let keys = [fx.key];
    let cfg = Config {
        layout,
        erased: case.erased,
        keys: &keys,
        identity: ID,
        component: "main",
        member: false,
    };
    let mut base: SimFlash<W, E> = SimFlash::new(sectors, case.erased);
    let mut ws = std::boxed::Box::new(P::default());
    {
        let mut up: Up<'_, W, E, P> = Updater::open(&mut base, cfg, &mut *ws).unwrap();
        up.provision(&fx.old, "main", "1.0.0", 1).unwrap();
    }
    base.power_on();
    let mut run = |flash: &mut SimFlash<W, E>, goal: Goal| -> Result<UpdatePhase, Stop> {
        drive::<W, E, P>(flash, cfg, &fx, goal, case.chunk, plant, &mut *ws)
    };
    let mut t = Tally::default();
    for goal in [Goal::Update, Goal::Revert] {
        let mut clean = base.clone();
        let phase =
            run(&mut clean, goal).unwrap_or_else(|e| panic!("{}: clean run: {e:?}", case.name));
        let want = if goal == Goal::Update {
            UpdatePhase::Confirmed
        } else {
            UpdatePhase::Reverted
        };
        check_end(&mut clean, cfg, &fx, phase, want)
            .unwrap_or_else(|e| panic!("{}: clean: {e}", case.name));
        let ops = clean.ops();
        t.clean_ops += ops;
        let mut one = |cuts: &[Cut], seed: u64| {
            let mut f = base.clone();
            let mut want = want;
            let mut ok = true;
            for &c in cuts {
                f.set_cut(Some(c), seed);
                t.cut_points += 1;
                match run(&mut f, goal) {
                    Err(Stop::Cut) => {}
                    Err(Stop::Bug(e)) => {
                        if plant.is_none() {
                            println!("{}: {goal:?} cut {c:?} seed {seed}: {e}", case.name);
                        }
                        ok = false;
                        break;
                    }
                    Ok(_) => {} // the run ended before the cut point
                }
                f.power_on();
                if goal == Goal::Update
                    && durable_phase(&mut f, cfg.layout.journal) == Phase::Testing
                {
                    want = UpdatePhase::Reverted; // the trial boot was cut: it must revert
                }
            }
            let end = if ok {
                run(&mut f, goal)
            } else {
                Err(Stop::Bug("earlier".into()))
            };
            let verdict = match end {
                Ok(p) => check_end(&mut f, cfg, &fx, p, want),
                Err(e) => Err(format!("{e:?}")),
            };
            match verdict {
                Ok(()) => t.recovered += cuts.len() as u64,
                Err(e) => {
                    if plant.is_none() {
                        println!("{}: {goal:?} cuts {cuts:?}: {e}", case.name);
                    }
                    t.bricked += cuts.len() as u64;
                }
            }
        };
        for i in 0..ops {
            one(&[Cut::Before(i)], i);
            one(&[Cut::Tear(i)], i.wrapping_mul(0x9E37_79B9));
        }
        // Five random cuts in one update, over many seeds (ops restart at 0 after each cut).
        for seed in 0..case.seeds {
            let mut x = seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1;
            let mut cuts = [Cut::Before(0); 5];
            for c in cuts.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let at = x % (ops / 3 + 1);
                *c = if x & (1 << 40) != 0 {
                    Cut::Tear(at)
                } else {
                    Cut::Before(at)
                };
            }
            one(&cuts, seed);
        }
    }
    t
}

#[test]
fn power_cut_sweep() {
    let best = |b| Params {
        block_log2: b,
        ..Params::BEST
    };
    let small = |b| Params {
        block_log2: b,
        ..Params::SMALL
    };
    let cases = [
        Case {
            name: "swap w8 e1024 ff best",
            swap: true,
            erased: 0xFF,
            image: 20_000,
            params: best(12),
            seeds: 500,
            chunk: 700,
        },
        Case {
            name: "swap w4 e512 00 small",
            swap: true,
            erased: 0x00,
            image: 9_000,
            params: small(12),
            seeds: 500,
            chunk: 333,
        },
        Case {
            name: "ab w16 e2048 ff best",
            swap: false,
            erased: 0xFF,
            image: 40_000,
            params: best(12),
            seeds: 500,
            chunk: 1024,
        },
        Case {
            name: "ab w1 e256 00 small",
            swap: false,
            erased: 0x00,
            image: 10_000,
            params: small(12),
            seeds: 500,
            chunk: 97,
        },
        Case {
            name: "swap w32 e4096 ff best",
            swap: true,
            erased: 0xFF,
            image: 30_000,
            params: best(13),
            seeds: 500,
            chunk: 4096,
        },
        Case {
            name: "ab w8 e4096 00 best",
            swap: false,
            erased: 0x00,
            image: 60_000,
            params: best(12),
            seeds: 500,
            chunk: 2000,
        },
        Case {
            name: "swap w2 e256 ff small",
            swap: true,
            erased: 0xFF,
            image: 6_000,
            params: small(12),
            seeds: 500,
            chunk: 64,
        },
        Case {
            name: "swap w16 e2048 00 best",
            swap: true,
            erased: 0x00,
            image: 25_000,
            params: best(12),
            seeds: 500,
            chunk: 1500,
        },
    ];
    let results: Vec<(Case, Tally)> = std::thread::scope(|sc| {
        let hs = [
            sc.spawn(move || sweep::<8, 1024, Workspace<256, 16, 16384>>(cases[0], None)),
            sc.spawn(move || sweep::<4, 512, Workspace<128, 1, 256>>(cases[1], None)),
            sc.spawn(move || sweep::<16, 2048, Workspace<512, 16, 16384>>(cases[2], None)),
            sc.spawn(move || sweep::<1, 256, Workspace<64, 1, 256>>(cases[3], None)),
            sc.spawn(move || sweep::<32, 4096, Workspace<1024, 16, 16384>>(cases[4], None)),
            sc.spawn(move || sweep::<8, 4096, Workspace<512, 16, 16384>>(cases[5], None)),
            sc.spawn(move || sweep::<2, 256, Workspace<256, 1, 256>>(cases[6], None)),
            sc.spawn(move || sweep::<16, 2048, Workspace<2048, 16, 16384>>(cases[7], None)),
        ];
        hs.into_iter()
            .zip(cases)
            .map(|(h, c)| (c, h.join().unwrap()))
            .collect()
    });
    let mut total = Tally::default();
    for (c, t) in &results {
        println!(
            "  {:<24} clean ops {:>5}  cut points {:>6}  bricked {}",
            c.name, t.clean_ops, t.cut_points, t.bricked
        );
        total.add(*t);
    }
    println!(
        "power-cut sweep: {} cut points, {} recovered, {} bricked",
        total.cut_points, total.recovered, total.bricked
    );
    assert_eq!(total.bricked, 0);
    assert_eq!(total.recovered, total.cut_points);
    assert!(
        total.cut_points >= 50_000,
        "only {} cut points",
        total.cut_points
    );
}

/// The sweep is not vacuous: skipping one swap record (a test-only switch) must brick.
#[test]
fn power_cut_sweep_catches_a_planted_journal_bug() {
    let case = Case {
        name: "planted",
        swap: true,
        erased: 0xFF,
        image: 9_000,
        params: Params {
            block_log2: 12,
            ..Params::SMALL
        },
        seeds: 0,
        chunk: 500,
    };
    let clean = sweep::<8, 1024, Workspace<256, 1, 256>>(case, None);
    assert_eq!(clean.bricked, 0);
    // Skip the record after step 2 (slot 0 copied to slot 1) of sector 3.
    let broken = sweep::<8, 1024, Workspace<256, 1, 256>>(case, Some((3, 2)));
    println!(
        "planted bug: {} of {} cut points bricked",
        broken.bricked, broken.cut_points
    );
    assert!(broken.bricked > 0, "the sweep missed the planted bug");
}
