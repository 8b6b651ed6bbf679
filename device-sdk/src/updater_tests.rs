//! Updater behaviour: rejections (running slot byte-identical afterwards), resume, exact
//! operation counts, state-machine misuse, stored payloads, RAM.

extern crate std;

use std::string::String;
use std::vec::Vec;
use std::{format, println, vec};

use bluesphere_core::delta::Params;
use bluesphere_core::package::{sha2_digest, HEADER_LEN};
use bluesphere_core::testkit::{evolve, firmware, package, PackageFor};
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};

use crate::sim::SimFlash;
use crate::sweep::{layout, Fixture, ID};
use crate::{
    BestWorkspace, Config, Identity, Reject, Rejection, SmallWorkspace, UpdateError, UpdatePhase,
    Updater, Workspace,
};

type F = SimFlash<8, 1024>;
type Up<'a> = Updater<'a, &'a mut F, BestWorkspace<256>>;

/// A workspace for one test updater (leaked: tests only).
fn ws<const LT: usize, const W: usize, const PT: usize, const HT: usize>(
) -> &'static mut Workspace<256, LT, W, PT, HT> {
    std::boxed::Box::leak(std::boxed::Box::new(Workspace::new()))
}

fn sk() -> SigningKey {
    SigningKey::from_slice(&[7u8; 32]).unwrap()
}

struct Dev {
    flash: F,
    fx: Fixture,
    swap: bool,
}

impl Dev {
    fn new(fx: Fixture, swap: bool, counter: u32) -> Dev {
        let (l, sectors) = layout(1024, 64, swap);
        let mut flash = F::new(sectors, 0xFF);
        let keys = [fx.key];
        let cfg = cfg(&keys, l, ID);
        let mut up: Up<'_> = Updater::open(&mut flash, cfg, ws()).unwrap();
        up.provision(&fx.old, "main", "1.0.0", counter).unwrap();
        flash.power_on();
        flash.counters = Default::default();
        Dev { flash, fx, swap }
    }

    fn layout(&self) -> crate::Layout {
        layout(1024, 64, self.swap).0
    }
}

fn cfg<'a>(
    keys: &'a [p256::ecdsa::VerifyingKey],
    l: crate::Layout,
    id: Identity<'a>,
) -> Config<'a> {
    Config {
        layout: l,
        erased: 0xFF,
        keys,
        identity: id,
        component: "main",
        member: false,
    }
}

fn fixture() -> Fixture {
    Fixture::new(
        3,
        20_000,
        Params {
            block_log2: 12,
            ..Params::BEST
        },
    )
}

/// Split a package into header, manifest, signature, payload (owned).
fn split(pkg: &[u8]) -> (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>) {
    let ml = u16::from_le_bytes(pkg[6..8].try_into().unwrap()) as usize;
    let m = HEADER_LEN + ml;
    (
        pkg[..HEADER_LEN].to_vec(),
        pkg[HEADER_LEN..m].to_vec(),
        pkg[m..m + 64].to_vec(),
        pkg[m + 64..].to_vec(),
    )
}

fn resign(h: &[u8], m: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut out = h.to_vec();
    out.extend_from_slice(m);
    let sig: Signature = sk().sign(&out);
    out.extend_from_slice(&sig.to_bytes());
    out.extend_from_slice(payload);
    out
}

fn install(
    up: &mut Up<'_>,
    pkg: &[u8],
    chunk: usize,
) -> Result<(), UpdateError<crate::sim::SimError>> {
    let (h, m, s, p) = split(pkg);
    let b = up.begin(&h, &m, &s)?;
    let mut off = b.resume_offset;
    while off < b.payload_len {
        let end = (off as usize + chunk).min(p.len());
        off = up.write(off, &p[off as usize..end])?;
    }
    up.finish()
}

#[test]
fn update_then_confirm_and_status() {
    for swap in [true, false] {
        let mut d = Dev::new(fixture(), swap, 1);
        let keys = [d.fx.key];
        let l = d.layout();
        let (new, pkg) = (d.fx.new.clone(), d.fx.pkg.clone());
        let mut up: Up<'_> = Updater::open(&mut d.flash, cfg(&keys, l, ID), ws()).unwrap();
        assert_eq!(up.status().phase, UpdatePhase::Idle);
        install(&mut up, &pkg, 1000).unwrap();
        assert_eq!(up.status().phase, UpdatePhase::Pending);
        let slot = up.boot().unwrap();
        assert_eq!(up.status().phase, UpdatePhase::Testing);
        assert_eq!(
            up.hash_slot(slot, new.len() as u32).unwrap(),
            sha2_digest(&new)
        );
        up.confirm().unwrap();
        assert_eq!(up.status().phase, UpdatePhase::Confirmed);
        assert_eq!(up.boot().unwrap(), slot, "a confirmed image keeps booting");
        let info = up.image_info(slot).unwrap().unwrap();
        assert_eq!((info.version(), info.security_counter), ("1.1.0", 2));
        // The same package again is now refused: its base is no longer installed.
        let (h, m, s, _) = split(&pkg);
        assert!(matches!(
            up.begin(&h, &m, &s),
            Err(UpdateError::Rejected(Rejection {
                reason: Reject::WrongBase,
                ..
            }))
        ));
    }
}

/// Each refusal leaves the running slot (and its trailer) byte-identical and nothing pending.
#[test]
fn rejections_leave_the_running_slot_untouched() {
    let fx = fixture();
    let (h, m, s, p) = split(&fx.pkg);
    let other_key = *SigningKey::from_slice(&[9u8; 32]).unwrap().verifying_key();
    let mut bad_sig = s.clone();
    bad_sig[10] ^= 1;
    // A signed manifest whose target hash is not what the payload produces.
    let target_hash = sha2_digest(&fx.new);
    let at = m.windows(32).position(|w| w == target_hash).unwrap();
    let mut m_hash = m.clone();
    m_hash[at] ^= 0xFF;
    let bad_target = resign(&h, &m_hash, &p);
    // Payload flipped in the middle (signed manifest intact).
    let mut flipped = fx.pkg.clone();
    let n = flipped.len();
    flipped[n - p.len() / 2] ^= 0x10;
    // A new image larger than the slot.
    let big_old = fx.old.clone();
    let big_new = firmware(4, 70_000);
    let big = package(
        &sk(),
        PackageFor {
            product: "thermo",
            hardware: "revB",
            old: Some(&big_old),
            new: &big_new,
            version: "2.0.0",
            counter: 2,
            params: Params::SMALL,
        },
    )
    .unwrap();

    type Case<'a> = (
        &'a str,
        Vec<u8>,
        u32,
        Option<Vec<u8>>,
        Identity<'static>,
        bool,
    );
    let wrong_hw = Identity {
        product_id: "thermo",
        hardware_id: "revC",
    };
    let cases: Vec<Case<'_>> = vec![
        (
            "bad signature",
            [&h[..], &m, &bad_sig, &p].concat(),
            1,
            None,
            ID,
            false,
        ),
        ("unknown key", fx.pkg.clone(), 1, Some(vec![]), ID, false),
        ("wrong hardware", fx.pkg.clone(), 1, None, wrong_hw, false),
        ("lower security counter", fx.pkg.clone(), 5, None, ID, false),
        (
            "wrong base image",
            fx.pkg.clone(),
            1,
            Some(vec![1]),
            ID,
            false,
        ),
        ("payload longer than the slot", big, 1, None, ID, false),
        ("target hash mismatch", bad_target, 1, None, ID, true),
        ("corrupt payload", flipped, 1, None, ID, true),
        (
            "truncated stream",
            fx.pkg[..fx.pkg.len() - 40].to_vec(),
            1,
            None,
            ID,
            true,
        ),
    ];
    for swap in [true, false] {
        for (name, pkg, counter, variant, id, streams) in &cases {
            let mut fxc = fixture();
            if variant.as_deref() == Some(&[1][..]) {
                fxc.old = evolve(&fxc.old, 99); // the device runs another image
            }
            let mut d = Dev::new(fxc, swap, *counter);
            let before = d.flash.mem().to_vec();
            let slot0 = d.layout().slots[0];
            let keys = if variant.as_deref() == Some(&[][..]) {
                vec![other_key]
            } else {
                vec![d.fx.key]
            };
            let l = d.layout();
            let mut up: Up<'_> = Updater::open(&mut d.flash, cfg(&keys, l, *id), ws()).unwrap();
            let r = if *streams && name == &"truncated stream" {
                // Every byte there is, then finish: incomplete.
                let (hh, mm, ss, pp) = split(&fx.pkg);
                let b = up.begin(&hh, &mm, &ss).unwrap();
                up.write(0, &pp[..pp.len() - 40]).unwrap();
                let r = up.finish();
                assert_eq!(
                    r,
                    Err(UpdateError::Incomplete {
                        received: b.payload_len - 40,
                        expected: b.payload_len
                    })
                );
                r
            } else {
                install(&mut up, pkg, 777)
            };
            assert!(r.is_err(), "{name}: accepted");
            println!("{name}: {}", r.unwrap_err());
            assert_ne!(up.status().phase, UpdatePhase::Pending, "{name}");
            assert_eq!(up.boot().unwrap(), 0, "{name}: boots the old image");
            let _ = up; // power off: the RAM state is gone
            let s = slot0.start as usize;
            let e = slot0.end() as usize;
            assert_eq!(
                &d.flash.mem()[s..e],
                &before[s..e],
                "{name}: running slot changed"
            );
            if !*streams {
                // Refused in begin: nothing at all was written or erased.
                assert_eq!(d.flash.counters.erases, 0, "{name}");
                assert_eq!(d.flash.counters.writes, 0, "{name}");
            }
        }
    }
}

#[test]
fn resumes_where_the_journal_says_and_tolerates_resent_data() {
    let mut d = Dev::new(fixture(), true, 1);
    let keys = [d.fx.key];
    let l = d.layout();
    let (h, m, s, p) = split(&d.fx.pkg);
    let new = d.fx.new.clone();
    let cut_at = p.len() * 3 / 4;
    {
        let mut up: Up<'_> = Updater::open(&mut d.flash, cfg(&keys, l, ID), ws()).unwrap();
        let b = up.begin(&h, &m, &s).unwrap();
        assert_eq!(b.resume_offset, 0);
        assert_eq!(up.write(0, &p[..cut_at]).unwrap(), cut_at as u32);
        // Gaps are refused with the offset to continue from; re-sent bytes are skipped.
        assert_eq!(
            up.write(cut_at as u32 + 1, &p[cut_at + 1..cut_at + 2]),
            Err(UpdateError::Gap {
                expected: cut_at as u32
            })
        );
        assert_eq!(up.write(10, &p[10..20]).unwrap(), cut_at as u32);
        assert_eq!(up.status().phase, UpdatePhase::Applying);
        assert_eq!(up.status().done, cut_at as u64);
    } // power loss: the RAM state is gone
    let mut up: Up<'_> = Updater::open(&mut d.flash, cfg(&keys, l, ID), ws()).unwrap();
    assert_eq!(up.boot().unwrap(), 0);
    let b = up.begin(&h, &m, &s).unwrap();
    assert!(
        b.resume_offset > 0 && b.resume_offset as usize <= cut_at,
        "{b:?}"
    );
    println!(
        "resume at {} of {} (cut at {cut_at})",
        b.resume_offset, b.payload_len
    );
    up.write(b.resume_offset, &p[b.resume_offset as usize..])
        .unwrap();
    up.finish().unwrap();
    // begin again with the same package after finish: nothing to send.
    let again = up.begin(&h, &m, &s).unwrap();
    assert_eq!(again.resume_offset, again.payload_len);
    up.finish().unwrap();
    up.boot().unwrap();
    assert_eq!(
        up.hash_slot(0, new.len() as u32).unwrap(),
        sha2_digest(&new)
    );
}

#[test]
fn misuse_is_refused_with_the_phase() {
    let mut d = Dev::new(fixture(), false, 1);
    let keys = [d.fx.key];
    let l = d.layout();
    let pkg = d.fx.pkg.clone();
    let (h, m, s, _) = split(&pkg);
    let mut up: Up<'_> = Updater::open(&mut d.flash, cfg(&keys, l, ID), ws()).unwrap();
    assert_eq!(up.write(0, &[1]), Err(UpdateError::NoSession));
    assert_eq!(up.finish(), Err(UpdateError::NoSession));
    assert_eq!(up.confirm(), Err(UpdateError::Busy(UpdatePhase::Idle)));
    assert_eq!(
        up.request_revert(),
        Err(UpdateError::Busy(UpdatePhase::Idle))
    );
    install(&mut up, &pkg, 5000).unwrap();
    up.boot().unwrap();
    assert!(matches!(
        up.begin(&h, &m, &s),
        Err(UpdateError::Busy(UpdatePhase::Testing))
    ));
    assert_eq!(up.abort(), Err(UpdateError::Busy(UpdatePhase::Testing)));
    // The application asks for the old image back.
    up.request_revert().unwrap();
    assert_eq!(up.boot().unwrap(), 0);
    assert_eq!(up.status().phase, UpdatePhase::Reverted);
    // Abort of a receiving update: idle again, nothing changed for the running image.
    let b = up.begin(&h, &m, &s).unwrap();
    assert_eq!(b.resume_offset, 0);
    up.abort().unwrap();
    assert_eq!(up.status().phase, UpdatePhase::Idle);
    assert_eq!(up.boot().unwrap(), 0);
}

/// A component stored as is (codec 0), not as a BSD3 stream.
#[test]
fn stored_full_image() {
    let fx = fixture();
    let full = package(
        &sk(),
        PackageFor {
            counter: 2,
            params: Params::SMALL,
            ..PackageFor::full(&fx.new)
        },
    )
    .unwrap();
    let (mut h, m, _, _) = split(&full);
    // Rewrite the record's tail: ... flags (with the dependency count), target size, target
    // SHA-256 | payload size, CRC-32.
    let at = m
        .windows(32)
        .position(|w| w == sha2_digest(&fx.new))
        .unwrap();
    let len = fx.new.len() as u32;
    let mut tl = Vec::new();
    bluesphere_core::package::build::put_varint(&mut tl, u64::from(len));
    assert_eq!(&m[at - tl.len()..at], &tl[..]);
    let mut m2 = m[..at + 32].to_vec();
    m2[at - tl.len() - 1] = 0; // full image, codec 0 (stored), no dependencies
    m2.extend_from_slice(&tl); // payload size = target size
    m2.extend_from_slice(&bluesphere_core::crc::crc32(&fx.new).to_le_bytes());
    h[6..8].copy_from_slice(&(m2.len() as u16).to_le_bytes());
    h[12..16].copy_from_slice(&len.to_le_bytes());
    let stored = resign(&h, &m2, &fx.new);
    for swap in [true, false] {
        let mut d = Dev::new(fixture(), swap, 1);
        let keys = [d.fx.key];
        let l = d.layout();
        let mut up: Up<'_> = Updater::open(&mut d.flash, cfg(&keys, l, ID), ws()).unwrap();
        // Interrupt half way, then resume.
        let (hh, mm, ss, pp) = split(&stored);
        up.begin(&hh, &mm, &ss).unwrap();
        assert_eq!(up.status().phase, UpdatePhase::Receiving);
        up.write(0, &pp[..pp.len() - 100]).unwrap();
        let _ = up; // power off: the RAM state is gone
        let mut up: Up<'_> = Updater::open(&mut d.flash, cfg(&keys, l, ID), ws()).unwrap();
        let b = up.begin(&hh, &mm, &ss).unwrap();
        assert!(b.resume_offset >= 16 * 1024, "{b:?}");
        up.write(b.resume_offset, &pp[b.resume_offset as usize..])
            .unwrap();
        up.finish().unwrap();
        let slot = up.boot().unwrap();
        assert_eq!(up.hash_slot(slot, len).unwrap(), sha2_digest(&fx.new));
    }
}

/// Exact flash operation counts of a clean A/B update with a full-sector buffer
/// (sequential-storage style: a change in wear shows up here).
#[test]
fn exact_operation_counts() {
    let mut d = Dev::new(fixture(), false, 1);
    let keys = [d.fx.key];
    let l = d.layout();
    let pkg = d.fx.pkg.clone();
    let new_len = d.fx.new.len();
    d.flash.counters = Default::default();
    let mut up: Up<'_> = Updater::open(&mut d.flash, cfg(&keys, l, ID), ws()).unwrap();
    install(&mut up, &pkg, 4096).unwrap();
    up.boot().unwrap();
    up.confirm().unwrap();
    let _ = up; // power off: the RAM state is gone
    let sectors = new_len.div_ceil(1024) as u64;
    let blocks = new_len.div_ceil(4096) as u64;
    let buffers = new_len.div_ceil(256) as u64;
    // Erases: every target sector once, the trailer sector, the journal's first sector.
    assert_eq!(d.flash.counters.erases, sectors + 1 + 1);
    // Writes: one per 256-byte buffer (the checkpoints fall on buffer boundaries), the
    // trailer, the journal header, and the records: begin, a checkpoint per block but the
    // last, pending, testing, confirmed.
    let records = 1 + (blocks - 1) + 3;
    assert_eq!(
        d.flash.counters.writes,
        buffers + 1 + 1 + records,
        "{:?}",
        d.flash.counters
    );
}

/// Updater RAM: the static part (updater + workspace) and the stack high-water mark. The
/// stack is measured without unsafe code: a child process eats `x` bytes of a 256 KiB thread
/// stack and then runs the whole update (begin, write, finish, boot with swap, confirm);
/// the largest `x` that does not overflow into the guard page, compared with the same for
/// an empty run, is the update's stack depth (256-byte resolution).
#[test]
fn ram_of_the_two_profiles() {
    use std::process::Command;
    if let Ok(v) = std::env::var("BS_STACK_PROBE") {
        let (profile, eat): (String, usize) = {
            let mut it = v.split(':');
            (
                it.next().unwrap().into(),
                it.next().unwrap().parse().unwrap(),
            )
        };
        // Workspaces are built here (on a device: statics), the update runs on the probe stack.
        let big: &'static mut BestWorkspace<256> = ws();
        let small: &'static mut SmallWorkspace<256> = ws();
        let params = Params {
            block_log2: 12,
            ..if profile == "default" {
                Params::BEST
            } else {
                Params::SMALL
            }
        };
        let d = Dev::new(Fixture::new(3, 20_000, params), true, 1);
        let h = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || {
                let top = core::hint::black_box(0u8);
                let top = &top as *const u8 as usize;
                let mut args = Some((d, big, small));
                eat_stack(top, eat, &mut || {
                    if let (Some((d, big, small)), false) = (args.take(), profile == "empty") {
                        probe(&profile, d, big, small)
                    }
                })
            })
            .unwrap();
        h.join().unwrap();
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let deepest = |profile: &str| {
        let ok = |eat: usize| {
            Command::new(&exe)
                .args([
                    "--exact",
                    "updater_tests::ram_of_the_two_profiles",
                    "--test-threads",
                    "1",
                ])
                .env("BS_STACK_PROBE", format!("{profile}:{eat}"))
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false)
        };
        let (mut lo, mut hi) = (0usize, 256 * 1024);
        assert!(ok(lo), "{profile}: fails with the whole stack");
        while hi - lo > 256 {
            let mid = (lo + hi) / 2;
            if ok(mid) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        lo
    };
    let empty = deepest("empty");
    for profile in ["default", "small"] {
        let stack = empty - deepest(profile);
        let up = core::mem::size_of::<Updater<'static, &'static mut F, SmallWorkspace<256>>>();
        let size = up
            + if profile == "default" {
                core::mem::size_of::<BestWorkspace<256>>()
            } else {
                core::mem::size_of::<SmallWorkspace<256>>()
            };
        println!(
            "updater RAM ({profile}): updater {up} B + workspace {} B (incl. the 256-byte write buffer) = {size} B static; stack high-water {stack} B (x86_64, test profile)",
            size - up
        );
        let budget = if profile == "default" {
            64 * 1024
        } else {
            8 * 1024
        };
        assert!(size <= budget, "{profile}: {size} B over {budget} B");
        assert!(stack < 32 * 1024, "{profile}: stack {stack} B");
    }
}

/// Recurse in 256-byte frames until `eat` bytes below `top` are used, then run `f`.
fn eat_stack(top: usize, eat: usize, f: &mut dyn FnMut()) {
    let pad = core::hint::black_box([0u8; 256]);
    let here = &pad as *const [u8; 256] as usize;
    if top.saturating_sub(here) >= eat {
        f();
    } else {
        eat_stack(top, eat, f);
    }
    core::hint::black_box(&pad);
}

fn probe(
    profile: &str,
    mut d: Dev,
    big: &'static mut BestWorkspace<256>,
    small: &'static mut SmallWorkspace<256>,
) {
    // Only the device side runs on the probe stack: the package was built by the caller.
    let keys = [d.fx.key];
    let l = d.layout();
    let pkg = d.fx.pkg.clone();
    let c = cfg(&keys, l, ID);
    if profile == "default" {
        let mut up: Up<'_> = Updater::open(&mut d.flash, c, big).unwrap();
        install(&mut up, &pkg, 512).unwrap();
        up.boot().unwrap();
        up.confirm().unwrap();
    } else {
        let mut up: Updater<'_, &mut F, SmallWorkspace<256>> =
            Updater::open(&mut d.flash, c, small).unwrap();
        let (h, m, s, p) = split(&pkg);
        let b = up.begin(&h, &m, &s).unwrap();
        up.write(0, &p[..b.payload_len as usize]).unwrap();
        up.finish().unwrap();
        up.boot().unwrap();
        up.confirm().unwrap();
    }
}

/// Issue 14, class 2: the boot step checks the image it is about to run against its trailer
/// and falls back to the other slot's valid image (A/B: the other bank; swap: swapped in);
/// with none valid it refuses to run anything. A delta is refused when its base's bytes no
/// longer match (the trailer alone would have passed).
#[test]
fn boot_validates_the_image_and_falls_back() {
    for swap in [true, false] {
        let mut d = Dev::new(fixture(), swap, 1);
        let keys = [d.fx.key];
        let l = d.layout();
        let (old, new, pkg) = (d.fx.old.clone(), d.fx.new.clone(), d.fx.pkg.clone());
        {
            let mut up: Up<'_> = Updater::open(&mut d.flash, cfg(&keys, l, ID), ws()).unwrap();
            install(&mut up, &pkg, 1000).unwrap();
            let slot = up.boot().unwrap();
            assert_eq!(up.status().fell_back_from, None);
            up.confirm().unwrap();
            assert_eq!(
                up.hash_slot(slot, new.len() as u32).unwrap(),
                sha2_digest(&new)
            );
        }
        // One flipped bit in the running image.
        let running = if swap { 0 } else { 1 };
        let at = l.slots[running].start as usize + 100;
        d.flash.mem_mut()[at] ^= 0x10;
        let mut up: Up<'_> = Updater::open(&mut d.flash, cfg(&keys, l, ID), ws()).unwrap();
        let slot = up.boot().unwrap();
        let st = up.status();
        assert_eq!(st.fell_back_from, Some(running as u8), "swap={swap}");
        assert_eq!(st.phase, UpdatePhase::Reverted, "swap={swap}");
        assert_eq!(
            up.hash_slot(slot, old.len() as u32).unwrap(),
            sha2_digest(&old),
            "swap={swap}: the previous image runs"
        );
        assert!(up.slot_valid(slot).unwrap());
        // A delta made from the image now running applies; but first damage it too: neither
        // slot is valid, nothing runs.
        let (flash, _) = up.into_parts();
        flash.mem_mut()[l.slots[slot as usize].start as usize + 7] ^= 1;
        let mut up: Up<'_> = Updater::open(flash, cfg(&keys, l, ID), ws()).unwrap();
        assert_eq!(up.boot(), Err(UpdateError::NoValidImage), "swap={swap}");
    }
}

#[test]
fn a_delta_on_damaged_flash_is_refused_before_anything_is_erased() {
    let mut d = Dev::new(fixture(), true, 1);
    let keys = [d.fx.key];
    let l = d.layout();
    let pkg = d.fx.pkg.clone();
    d.flash.mem_mut()[l.slots[0].start as usize + 5] ^= 0x80;
    let before = d.flash.mem().to_vec();
    let mut up: Up<'_> = Updater::open(&mut d.flash, cfg(&keys, l, ID), ws()).unwrap();
    let (h, m, s, _) = split(&pkg);
    assert_eq!(
        up.begin(&h, &m, &s),
        Err(UpdateError::Rejected(Rejection {
            reason: Reject::InstalledCorrupt,
            component: 0
        }))
    );
    let (flash, _) = up.into_parts();
    assert_eq!(flash.mem(), &before[..], "nothing written");
}
