//! Push throughput as a fraction of the line rate (`cargo bench -p bluesphere-host`).
//!
//! The host engine pushes a 512 KiB full-image package to the device SDK's server (on
//! simulated flash) over the link simulator, in virtual time: 8N1 framing (a byte is 10 bits
//! on the line), the given one-way latency, no errors. Line rate = baud / 10 bytes per
//! second. "Data phase" is payload bytes over the time from the first DATA acknowledgement
//! to the last; "session" is payload bytes over the whole push from HELLO to FINISH's
//! answer (HELLO, INFO, BEGIN with the signature check, DATA, FINISH with the hash check;
//! the device's own processing time is not modelled).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // bench code

use bluesphere_core::delta::Params;
use bluesphere_core::proto::{Outcome, Push, PushConfig};
use bluesphere_core::testkit::{package, PackageFor, Rng};
use bluesphere_device::serve::{MemoryDevice, NoCodes};
use bluesphere_device::sim::SimFlash;
use bluesphere_device::{
    BestWorkspace, Config, Identity, Layout, Region, SlotMode, Updater, Workspace,
};
use bluesphere_host::link::{BleTiming, Dir, SimLink};
use bluesphere_host::sim::Sim;
use p256::ecdsa::SigningKey;

const IMAGE: usize = 512 * 1024;

fn main() {
    let mut rng = Rng::new(7);
    let image: Vec<u8> = (0..IMAGE).map(|_| rng.next_u64() as u8).collect();
    let sk = SigningKey::from_slice(&[5u8; 32]).unwrap();
    let pkg = package(
        &sk,
        PackageFor {
            product: "bench",
            hardware: "b1",
            old: None,
            new: &image,
            version: "2.0.0",
            counter: 0,
            params: Params::BEST,
        },
    )
    .unwrap();
    let keys = [*sk.verifying_key()];
    let k = 520 * 1024;
    let cfg = Config {
        layout: Layout {
            slots: [Region { start: 0, len: k }, Region { start: k, len: k }],
            journal: Region {
                start: 2 * k + 4096,
                len: 8192,
            },
            mode: SlotMode::Swap {
                scratch: Region {
                    start: 2 * k,
                    len: 4096,
                },
            },
        },
        erased: 0xFF,
        keys: &keys,
        identity: Identity {
            product_id: "bench",
            hardware_id: "b1",
        },
        component: "main",
        member: false,
    };
    let base: SimFlash<8, 4096> = SimFlash::new((2 * k as usize) / 4096 + 3, 0xFF);
    // One push over `link` to the device SDK's server on a fresh copy of the flash.
    let run = |mut link: SimLink| -> (Outcome, Sim, SimLink) {
        let mut ws: Box<BestWorkspace<1024>> = Box::new(Workspace::new());
        let up = Updater::open(base.clone(), cfg, &mut *ws).unwrap();
        let mut dev: MemoryDevice<'_, _, _, BestWorkspace<1024>, 2048> =
            MemoryDevice::new(up, NoCodes, b"uid", 1040, 8192);
        let mut push = Push::new(
            &pkg,
            PushConfig {
                reboot: false,
                ..PushConfig::default()
            },
        )
        .unwrap();
        let mut sim = Sim::new();
        let done = sim.run_until(
            &mut push,
            &mut |_t: u64, b: &[u8]| dev.receive(b),
            &mut link,
            u64::MAX,
        );
        let o = push.outcome().unwrap().unwrap();
        assert!(done && o.resent == 0);
        (o, sim, link)
    };
    println!(
        "push of a {} KiB payload, virtual time, 1 KiB frames, 8 KiB window",
        pkg.len() / 1024
    );
    println!();
    println!("| baud | latency | line rate | data phase | of line rate | session | of line rate | wire overhead |");
    println!("|---|---|---|---|---|---|---|---|");
    for (baud, lat_ms) in [
        (115_200u32, 2u64),
        (115_200, 16),
        (921_600, 2),
        (921_600, 16),
    ] {
        let (o, sim, link) = run(SimLink::new(baud, lat_ms * 1000, 1));
        let line = f64::from(baud) / 10.0;
        let payload = f64::from(o.payload_len);
        let (t0, t1) = sim.data_window.unwrap();
        let data_rate = payload / ((t1 - t0) as f64 / 1e6);
        let session_rate = payload / (sim.now() as f64 / 1e6);
        let overhead = link.stats.bytes[0] as f64 / payload - 1.0;
        println!(
            "| {baud} | {lat_ms} ms | {:.1} KiB/s | {:.1} KiB/s | {:.1}% | {:.1} KiB/s | {:.1}% | {:.2}% |",
            line / 1024.0,
            data_rate / 1024.0,
            100.0 * data_rate / line,
            session_rate / 1024.0,
            100.0 * session_rate / line,
            100.0 * overhead
        );
    }

    // Bluetooth LE: GATT writes without response down, notifications up, in virtual time.
    println!();
    println!("push over Bluetooth LE (same payload, 1 KiB frames, 8 KiB window; the stream fills each ATT packet)");
    println!();
    println!("| connection interval | packets per event | ATT MTU | ceiling | data phase | of ceiling | session | of ceiling |");
    println!("|---|---|---|---|---|---|---|---|");
    for (interval_ms, packets, mtu) in [
        (7.5f64, 6u32, 247u32),
        (15.0, 4, 247),
        (30.0, 2, 23),
        (45.0, 3, 185),
    ] {
        let timing = BleTiming {
            interval: (interval_ms * 1000.0) as u64,
            packets_per_event: packets,
            mtu,
            credits: 0,
        };
        let (o, sim, _) = run(SimLink::new_ble(timing, 1));
        let ceiling = timing.ceiling(Dir::Down);
        let payload = f64::from(o.payload_len);
        let (t0, t1) = sim.data_window.unwrap();
        let data_rate = payload / ((t1 - t0) as f64 / 1e6);
        let session_rate = payload / (sim.now() as f64 / 1e6);
        println!(
            "| {interval_ms} ms | {packets} | {mtu} | {:.1} KiB/s | {:.1} KiB/s | {:.1}% | {:.1} KiB/s | {:.1}% |",
            ceiling / 1024.0,
            data_rate / 1024.0,
            100.0 * data_rate / ceiling,
            session_rate / 1024.0,
            100.0 * session_rate / ceiling,
        );
    }
}
