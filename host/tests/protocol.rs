//! The push protocol end to end in virtual time: the core's host engine, the link simulator
//! and the device SDK's server over simulated flash. Disconnects, device resets, bit errors,
//! drops, duplicates, truncation, a stalled link.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

use bluesphere_core::delta::Params;
use bluesphere_core::package::sha2_digest;
use bluesphere_core::proto::{FrameDecoder, Phase, Push, PushConfig, PushError, Response};
use bluesphere_core::testkit::{evolve, firmware, package, PackageFor};
use bluesphere_device::serve::{MemoryDevice, NoCodes};
use bluesphere_device::sim::SimFlash;
use bluesphere_device::{
    BestWorkspace, Config, Identity, Layout, Region, SlotMode, Updater, Workspace,
};
use bluesphere_host::link::{Faults, SimLink};
use bluesphere_host::sim::{Sim, SimDevice};
use p256::ecdsa::SigningKey;

type Flash = SimFlash<8, 1024>;
type Ws = BestWorkspace<256>;
type Mem = MemoryDevice<'static, Flash, NoCodes, BestWorkspace<256>, 2048>;

const WINDOW: u32 = 8192;

/// A device in memory and its configuration.
struct Dev {
    mem: Mem,
    cfg: Config<'static>,
}

impl Dev {
    fn new(flash: Flash, cfg: Config<'static>, ws: &'static mut Ws) -> Dev {
        let up = Updater::open(flash, cfg, ws).unwrap();
        Dev {
            mem: MemoryDevice::new(up, NoCodes, b"\x01\x02\x03\x04", 1040, WINDOW),
            cfg,
        }
    }

    fn power_cycle(&mut self) {
        self.mem.power_cycle(self.cfg).unwrap();
    }

    fn take(self) -> (Flash, &'static mut Ws) {
        self.mem.into_updater().unwrap().into_parts()
    }

    fn up(&mut self) -> &mut Updater<'static, Flash, BestWorkspace<256>> {
        self.mem.server().unwrap().updater()
    }

    fn run(&mut self, sim: &mut Sim, push: &mut Push<'_>, link: &mut SimLink, until: u64) -> bool {
        let mem = &mut self.mem;
        sim.run_until(push, &mut |_now: u64, b: &[u8]| mem.receive(b), link, until)
    }
}

fn layout(slot_sectors: u32) -> (Layout, usize) {
    let k = slot_sectors * 1024;
    (
        Layout {
            slots: [Region { start: 0, len: k }, Region { start: k, len: k }],
            journal: Region {
                start: 2 * k + 1024,
                len: 2048,
            },
            mode: SlotMode::Swap {
                scratch: Region {
                    start: 2 * k,
                    len: 1024,
                },
            },
        },
        (2 * slot_sectors + 3) as usize,
    )
}

struct Fx {
    old: Vec<u8>,
    new: Vec<u8>,
    pkg: Vec<u8>,
    base: Flash,
    cfg: Config<'static>,
}

fn fixture(seed: u64, size: usize) -> Fx {
    let old = firmware(seed, size);
    let new = evolve(&old, seed);
    let sk = SigningKey::from_slice(&[5u8; 32]).unwrap();
    let pkg = package(
        &sk,
        PackageFor {
            product: "thermo",
            hardware: "revB",
            old: Some(&old),
            new: &new,
            version: "1.1.0",
            counter: 1,
            params: Params {
                block_log2: 12,
                ..Params::BEST
            },
        },
    )
    .unwrap();
    let keys: &'static [p256::ecdsa::VerifyingKey] = Box::leak(Box::new([*sk.verifying_key()]));
    let sectors = (old.len().max(new.len()).div_ceil(1024) + 2) as u32;
    let (l, n) = layout(sectors);
    let cfg = Config {
        layout: l,
        erased: 0xFF,
        keys,
        identity: Identity {
            product_id: "thermo",
            hardware_id: "revB",
        },
        component: "main",
        member: false,
    };
    let mut base = Flash::new(n, 0xFF);
    {
        let ws: &'static mut BestWorkspace<256> = Box::leak(Box::new(Workspace::new()));
        let mut up = Updater::open(&mut base, cfg, ws).unwrap();
        up.provision(&old, "main", "1.0.0", 0).unwrap();
    }
    Fx {
        old,
        new,
        pkg,
        base,
        cfg,
    }
}

/// The fixture with a full-image package (no base) of its new image instead of a delta.
fn full_image(mut fx: Fx) -> Fx {
    fx.pkg = package(
        &SigningKey::from_slice(&[5u8; 32]).unwrap(),
        PackageFor::full(&fx.new),
    )
    .unwrap();
    fx
}

fn ws() -> &'static mut Ws {
    Box::leak(Box::new(Workspace::new()))
}

/// The device's boot slot holds `img` (and the trailer says so).
fn runs(dev: &mut Dev, img: &[u8]) -> bool {
    let up = dev.up();
    let slot = up.boot_slot();
    up.image_info(slot)
        .unwrap()
        .is_some_and(|i| i.size as usize == img.len())
        && up.hash_slot(slot, img.len() as u32).unwrap() == sha2_digest(img)
}

#[test]
fn clean_push_installs_and_reboots_into_the_new_image() {
    let fx = fixture(1, 60_000);
    let mut dev = Dev::new(fx.base.clone(), fx.cfg, ws());
    let mut link = SimLink::new(921_600, 2_000, 1);
    let mut push = Push::new(&fx.pkg, PushConfig::default()).unwrap();
    let mut sim = Sim::new();
    assert!(dev.run(&mut sim, &mut push, &mut link, u64::MAX));
    let o = push.outcome().unwrap().unwrap();
    assert_eq!(o.phase, Phase::Testing);
    assert_eq!(o.resent, 0);
    assert_eq!(push.device().unwrap().version.as_str(), "1.0.0");
    assert!(runs(&mut dev, &fx.new));
}

/// 1,000 random disconnects (cable pulled, device stays powered) and 200 device resets at
/// random moments of the data phase: every push completes with the right image; after a
/// disconnect at most one window is sent again.
#[test]
fn disconnects_and_resets_resume_with_at_most_a_window_resent() {
    let fx = fixture(2, 40_000);
    let mut ws = Some(ws());
    let mut x = 0x1234_5678_9ABC_DEF1u64;
    let mut rnd = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    // A clean run tells how long the data phase takes.
    let (t0, t1) = {
        let mut dev = Dev::new(fx.base.clone(), fx.cfg, ws.take().unwrap());
        let mut link = SimLink::new(115_200, 4_000, 3);
        let mut push = Push::new(&fx.pkg, PushConfig::default()).unwrap();
        let mut sim = Sim::new();
        assert!(dev.run(&mut sim, &mut push, &mut link, u64::MAX));
        ws = Some(dev.take().1);
        sim.data_window.unwrap()
    };
    let mut worst = 0u64;
    for i in 0..1200u64 {
        let reset = i >= 1000;
        let mut dev = Dev::new(fx.base.clone(), fx.cfg, ws.take().unwrap());
        let mut link = SimLink::new(115_200, 4_000, i);
        let mut push = Push::new(&fx.pkg, PushConfig::default()).unwrap();
        let mut sim = Sim::new();
        let at = t0 + rnd(t1 - t0);
        assert!(!dev.run(&mut sim, &mut push, &mut link, at));
        link.disconnect(sim.now());
        if reset {
            dev.power_cycle();
        }
        let back = sim.now() + 50_000 + rnd(500_000);
        let done = dev.run(&mut sim, &mut push, &mut link, back);
        assert!(!done || !reset);
        push.reconnected(sim.now());
        assert!(dev.run(&mut sim, &mut push, &mut link, u64::MAX));
        let o = push
            .outcome()
            .unwrap()
            .unwrap_or_else(|e| panic!("point {i}: {e:?}"));
        assert_eq!(o.phase, Phase::Testing, "point {i}");
        assert!(runs(&mut dev, &fx.new), "point {i}");
        if !reset {
            assert!(
                o.resent <= u64::from(WINDOW),
                "point {i}: resent {} bytes",
                o.resent
            );
            worst = worst.max(o.resent);
        }
        ws = Some(dev.take().1);
    }
    println!(
        "1000 disconnects: at most {worst} bytes resent (window {WINDOW}); 200 resets resumed"
    );
}

/// 10,000 short sessions over a noisy link (bit errors 1e-4 .. 1e-3, drops, duplicates,
/// truncation): each ends with the new image verified, or a clean failure with the old
/// image still running. Never a corrupt commit.
#[test]
fn ten_thousand_noisy_sessions_never_commit_a_corrupt_image() {
    let fixtures: Vec<Fx> = (0..4)
        .map(|s| fixture(10 + s, 3_000 + 2_000 * s as usize))
        .collect();
    let mut ws = Some(ws());
    let (mut ok, mut failed) = (0, 0);
    for i in 0..10_000u64 {
        let fx = &fixtures[(i % 4) as usize];
        let mut dev = Dev::new(fx.base.clone(), fx.cfg, ws.take().unwrap());
        let mut link = SimLink::new(0, 500, i);
        let level = (i % 10) as f64 / 9.0;
        link.faults = Faults {
            ber: 1e-4 * (10f64).powf(level),
            drop: 0.02,
            dup: 0.02,
            truncate: 0.02,
        };
        let mut push = Push::new(&fx.pkg, PushConfig::default()).unwrap();
        let mut sim = Sim::new();
        dev.run(&mut sim, &mut push, &mut link, 3_600_000_000);
        match push.outcome() {
            Some(Ok(o)) => {
                assert_eq!(o.phase, Phase::Testing, "session {i}");
                assert!(
                    runs(&mut dev, &fx.new),
                    "session {i}: wrong image committed"
                );
                ok += 1;
            }
            Some(Err(e)) => {
                // A clean failure: whatever the device did, it still boots the old image or
                // a verified new one, never anything else.
                dev.up().boot().unwrap();
                assert!(
                    runs(&mut dev, &fx.old) || runs(&mut dev, &fx.new),
                    "session {i}: {e:?} left a corrupt image"
                );
                failed += 1;
            }
            None => panic!("session {i} never ended"),
        }
        ws = Some(dev.take().1);
    }
    println!("10000 noisy sessions: {ok} installed, {failed} failed cleanly");
    assert!(ok > 9_000, "{ok} of 10000 completed");
}

/// A link that goes silent times out; the device keeps its old image.
#[test]
fn a_stalled_link_times_out_and_the_old_image_keeps_running() {
    let fx = fixture(3, 20_000);
    let mut dev = Dev::new(fx.base.clone(), fx.cfg, ws());
    let mut link = SimLink::new(115_200, 2_000, 9);
    let mut push = Push::new(&fx.pkg, PushConfig::default()).unwrap();
    let mut sim = Sim::new();
    assert!(!dev.run(&mut sim, &mut push, &mut link, 300_000));
    link.faults.drop = 1.0;
    assert!(dev.run(&mut sim, &mut push, &mut link, u64::MAX));
    assert!(
        matches!(push.outcome(), Some(Err(PushError::Timeout { .. }))),
        "{:?}",
        push.outcome()
    );
    println!(
        "stalled link gave up after {:.1} s (virtual)",
        sim.now() as f64 / 1e6
    );
    dev.power_cycle();
    assert!(runs(&mut dev, &fx.old));
}

/// Over Bluetooth LE timing (connection events, ATT packets, write credits): a push with 100
/// connection drops at random moments (the device stays powered, as when a phone walks out
/// of range) resumes every time with at most one window sent again, and installs the image.
#[test]
fn ble_connection_drops_resume_with_at_most_a_window_resent() {
    use bluesphere_host::link::BleTiming;
    // A full image (tens of KB of payload), so the drops land all over the data phase.
    let fx = full_image(fixture(3, 20_000));
    // A slow connection: 30 ms, 2 packets of 20 bytes per event (1.3 KiB/s).
    let timing = BleTiming {
        interval: 30_000,
        packets_per_event: 2,
        mtu: 23,
        credits: 2,
    };
    let mut ws = Some(ws());
    let (t0, t1) = {
        let mut dev = Dev::new(fx.base.clone(), fx.cfg, ws.take().unwrap());
        let mut link = SimLink::new_ble(timing, 1);
        let mut push = Push::new(&fx.pkg, PushConfig::default()).unwrap();
        let mut sim = Sim::new();
        assert!(dev.run(&mut sim, &mut push, &mut link, u64::MAX));
        assert!(runs(&mut dev, &fx.new));
        ws = Some(dev.take().1);
        sim.data_window.unwrap()
    };
    assert!(t1 - t0 > 1_000_000, "data phase {} us", t1 - t0);
    let mut x = 0x0BAD_5EED_u64;
    for i in 0..100u64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let mut dev = Dev::new(fx.base.clone(), fx.cfg, ws.take().unwrap());
        let mut link = SimLink::new_ble(timing, i);
        let mut push = Push::new(&fx.pkg, PushConfig::default()).unwrap();
        let mut sim = Sim::new();
        assert!(!dev.run(&mut sim, &mut push, &mut link, t0 + x % (t1 - t0)));
        // The connection drops (everything in flight is lost); the host notices, scans,
        // connects again and starts over at HELLO.
        link.disconnect(sim.now());
        push.reconnected(sim.now());
        assert!(
            dev.run(&mut sim, &mut push, &mut link, u64::MAX),
            "drop {i}"
        );
        let o = push.outcome().unwrap().unwrap();
        assert_eq!(o.phase, Phase::Testing, "drop {i}");
        assert!(runs(&mut dev, &fx.new), "drop {i}");
        assert!(
            o.resent <= u64::from(WINDOW),
            "drop {i}: resent {}",
            o.resent
        );
        ws = Some(dev.take().1);
    }
}

/// A device that stops answering for a sector erase (`stall` microseconds) each time another
/// 4 KiB has come in, as a NOR part does while it erases.
struct Erasing<'a> {
    mem: &'a mut Mem,
    received: u64,
    stall: u64,
    busy_until: u64,
    stalls: u32,
}

impl SimDevice for Erasing<'_> {
    fn receive(&mut self, now: u64, bytes: &[u8]) -> Vec<Vec<u8>> {
        let before = self.received / 4096;
        self.received += bytes.len() as u64;
        if self.received / 4096 > before {
            self.busy_until = self.busy_until.max(now) + self.stall;
            self.stalls += 1;
        }
        self.mem.receive(bytes)
    }
    fn answers_at(&mut self, now: u64) -> u64 {
        self.busy_until.max(now)
    }
}

/// A device that stalls longer than the acknowledgement timeout at every 4 KiB (1.5 s erases
/// against the 1 s timeout) over a clean line: each stall costs one probe frame, not a window
/// sent again (and the duplicates' acknowledgements are not taken for losses).
#[test]
fn a_device_slow_to_erase_gets_a_probe_not_the_window_again() {
    let fx = full_image(fixture(4, 60_000));
    let mut dev = Dev::new(fx.base.clone(), fx.cfg, ws());
    let mut link = SimLink::new(921_600, 2_000, 4);
    let mut push = Push::new(&fx.pkg, PushConfig::default()).unwrap();
    let mut sim = Sim::new();
    let mut erasing = Erasing {
        mem: &mut dev.mem,
        received: 0,
        stall: 1_500_000,
        busy_until: 0,
        stalls: 0,
    };
    assert!(sim.run_until(&mut push, &mut erasing, &mut link, u64::MAX));
    let stalls = erasing.stalls;
    let o = push.outcome().unwrap().unwrap();
    assert_eq!(o.phase, Phase::Testing);
    assert!(runs(&mut dev, &fx.new));
    assert!(stalls >= 4, "{stalls} stalls");
    // At most one probe (a frame of at most 1 KiB) per stall.
    assert!(
        o.resent <= u64::from(stalls) * 1024,
        "{} bytes resent over {stalls} stalls",
        o.resent
    );
    println!(
        "{stalls} erase stalls of 1.5 s: {} of {} payload bytes sent again, {:.1} s",
        o.resent,
        o.payload_len,
        sim.now() as f64 / 1e6
    );
}

/// A line that delivers some writes twice (and loses none): nothing is sent again, since
/// an acknowledgement of a duplicate is no sign of loss.
#[test]
fn duplicated_writes_are_not_taken_for_losses() {
    let fx = fixture(5, 40_000);
    for seed in 0..20 {
        let mut dev = Dev::new(fx.base.clone(), fx.cfg, ws());
        let mut link = SimLink::new(115_200, 2_000, seed);
        link.faults = Faults {
            dup: 0.2,
            ..Faults::default()
        };
        let mut push = Push::new(&fx.pkg, PushConfig::default()).unwrap();
        let mut sim = Sim::new();
        assert!(
            dev.run(&mut sim, &mut push, &mut link, u64::MAX),
            "seed {seed}"
        );
        let o = push.outcome().unwrap().unwrap();
        assert_eq!(o.phase, Phase::Testing, "seed {seed}");
        assert!(runs(&mut dev, &fx.new), "seed {seed}");
        assert_eq!(o.resent, 0, "seed {seed}");
    }
}

/// A device that echoes wrong sequence tags on its data acknowledgements (ours echo what
/// they get): `xorshift` picks each tag.
struct WrongTags<'a> {
    mem: &'a mut Mem,
    x: u64,
    rewritten: u32,
}

impl SimDevice for WrongTags<'_> {
    fn receive(&mut self, _now: u64, bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for wire in self.mem.receive(bytes) {
            let mut rx = FrameDecoder::<4096>::new();
            let ack = match rx.feed(&wire).1 {
                Some(Ok(raw)) => match Response::parse(raw) {
                    Ok((_, r @ Response::DataAck { .. })) => Some(r),
                    _ => None,
                },
                _ => None,
            };
            let Some(ack) = ack else {
                out.push(wire);
                continue;
            };
            self.x ^= self.x << 13;
            self.x ^= self.x >> 7;
            self.x ^= self.x << 17;
            let mut buf = vec![0u8; 64];
            let n = ack.encode(self.x as u8, &mut buf).unwrap();
            buf.truncate(n);
            self.rewritten += 1;
            out.push(buf);
        }
        out
    }
}

/// Wrong tags on the acknowledgements can only make the host misread which frame was
/// answered (a resend too many, a probe too few), never send wrong bytes: the device's
/// offset decides. Over a clean line and lines that drop and duplicate frames, the image
/// arrives whole and runs. (Slower after losses: with the line of seed 2, 41.7 s of virtual
/// time against 2.7 s for a device that echoes its tags, since a loss is then mostly found
/// by acknowledgement timeouts.)
#[test]
fn a_device_echoing_wrong_tags_still_gets_the_whole_image() {
    let fx = full_image(fixture(6, 40_000));
    for (seed, faults) in [
        (1, Faults::default()),
        (
            2,
            Faults {
                drop: 0.02,
                dup: 0.05,
                ..Faults::default()
            },
        ),
        (
            3,
            Faults {
                drop: 0.05,
                ..Faults::default()
            },
        ),
    ] {
        let mut dev = Dev::new(fx.base.clone(), fx.cfg, ws());
        let mut link = SimLink::new(115_200, 2_000, seed);
        link.faults = faults;
        let mut push = Push::new(&fx.pkg, PushConfig::default()).unwrap();
        let mut sim = Sim::new();
        let mut wrong = WrongTags {
            mem: &mut dev.mem,
            x: 0x2545_F491 + seed,
            rewritten: 0,
        };

        assert!(
            sim.run_until(&mut push, &mut wrong, &mut link, u64::MAX),
            "seed {seed}"
        );
        assert!(
            wrong.rewritten > 10,
            "seed {seed}: {} acks",
            wrong.rewritten
        );
        let o = push.outcome().unwrap().unwrap();
        assert_eq!(o.phase, Phase::Testing, "seed {seed}");
        assert!(runs(&mut dev, &fx.new), "seed {seed}");
        println!(
            "wrong tags, seed {seed}: {} of {} payload bytes sent again, {:.1} s",
            o.resent,
            o.payload_len,
            sim.now() as f64 / 1e6
        );
    }
}
