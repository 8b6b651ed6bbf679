//! The whole-machine proof: a main MCU (its own `main` component in swap slots, a `data`
//! partition in A/B slots, the machine journal, on one flash) and a `radio` module (swap
//! slots, small profile, its own flash) on a local link speaking the near-field protocol.
//! A 3-component package (main delta with the best profile, radio delta with the small one,
//! data full) is installed; power is cut before, and separately torn at, every flash
//! operation of the main MCU and of the module. After each cut the machine restarts from
//! flash alone (the main MCU; at every other one of its cuts the module too, as when the
//! whole machine loses power), or the module restarts while the main keeps running; the
//! machine's boot step must leave every component on its old image or every one on its
//! new image (never mixed), and the host's retry must then end all new and committed.

extern crate std;

use std::boxed::Box;
use std::cell::RefCell;
use std::format;
use std::println;
use std::string::String;
use std::vec;
use std::vec::Vec;

use bluesphere_core::delta::Params;
use bluesphere_core::package::build::{build_package, ComponentSpec, PackageSpec};
use bluesphere_core::package::{Package, HEADER_LEN};
use bluesphere_core::proto::{FrameDecoder, Phase as UpdatePhase};
use bluesphere_core::testkit::{evolve, firmware};
use embedded_storage::nor_flash::{ErrorType, NorFlash, ReadNorFlash};
use p256::ecdsa::{SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::machine::{
    Local, Machine, MachineConfig, MachineError, MachinePhase, Member, MemberError, Module,
    ModuleLink,
};
use crate::serve::{NoCodes, Server};
use crate::sim::{Cut, SimFlash};
use crate::{
    BestWorkspace, Config, Identity, Layout, Region, Reject, SlotMode, SmallWorkspace, Updater,
};

const ID: Identity<'static> = Identity {
    product_id: "coffee-machine",
    hardware_id: "rev3",
};

/// One flash shared by several users (the main MCU's updaters and its machine journal).
struct Shared<'a, F>(&'a RefCell<F>);

impl<F: ErrorType> ErrorType for Shared<'_, F> {
    type Error = F::Error;
}

impl<F: ReadNorFlash> ReadNorFlash for Shared<'_, F> {
    const READ_SIZE: usize = F::READ_SIZE;
    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        self.0.borrow_mut().read(offset, bytes)
    }
    fn capacity(&self) -> usize {
        self.0.borrow().capacity()
    }
}

impl<F: NorFlash> NorFlash for Shared<'_, F> {
    const WRITE_SIZE: usize = F::WRITE_SIZE;
    const ERASE_SIZE: usize = F::ERASE_SIZE;
    fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        self.0.borrow_mut().erase(from, to)
    }
    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        self.0.borrow_mut().write(offset, bytes)
    }
}

type Flash = SimFlash<8, 256>;
const E: u32 = 256;
type ModWs = SmallWorkspace<256>;
type ModServer<'a> = Server<'a, Shared<'a, Flash>, NoCodes, ModWs, 1024>;

/// The radio module at the far end of the link: its server (RAM state) and its flash.
struct ModuleEnd<'a> {
    flash: &'a RefCell<Flash>,
    server: RefCell<Option<ModServer<'a>>>,
    cfg: Config<'a>,
}

impl<'a> ModuleEnd<'a> {
    fn start(&self, ws: &'a mut ModWs) -> Result<(), String> {
        let mut up =
            Updater::open(Shared(self.flash), self.cfg, ws).map_err(|e| format!("{e:?}"))?;
        up.boot().map_err(|e| format!("module boot: {e:?}"))?;
        *self.server.borrow_mut() = Some(Server::new(up, NoCodes, b"radio-uid", 600, 4096));
        Ok(())
    }

    /// Power cut of the module and back: RAM gone, the flash stays, its boot step runs.
    fn restart(&self) -> Result<(), String> {
        let Some(srv) = self.server.borrow_mut().take() else {
            return Err("no module".into());
        };
        let (_, ws) = srv.into_updater().into_parts();
        self.flash.borrow_mut().power_on();
        self.start(ws)
    }

    fn dead(&self) -> bool {
        self.flash.borrow().is_dead()
    }
}

/// The main MCU's end of the local link: frames in, frames out, a REBOOT runs the
/// module's boot step.
struct SimLink<'r, 'a> {
    end: &'r ModuleEnd<'a>,
    out: Vec<u8>,
}

fn unwrap_frame(wire: &[u8], out: &mut [u8]) -> Result<usize, ()> {
    let mut dec = FrameDecoder::<1400>::new();
    let (_, f) = dec.feed(wire);
    let raw = f.ok_or(())?.map_err(|_| ())?;
    out.get_mut(..raw.len()).ok_or(())?.copy_from_slice(raw);
    Ok(raw.len())
}

impl ModuleLink for SimLink<'_, '_> {
    fn exchange(&mut self, request: &[u8], _seq: u8, answer: &mut [u8]) -> Result<usize, ()> {
        if self.end.dead() {
            return Err(());
        }
        let mut raw = [0u8; 1400];
        let n = unwrap_frame(request, &mut raw)?;
        let mut server = self.end.server.borrow_mut();
        let srv = server.as_mut().ok_or(())?;
        self.out.resize(1400, 0);
        let len = srv.handle(&raw[..n], &mut self.out).ok_or(())?;
        if srv.take_reboot() {
            let _ = srv.updater().boot();
        }
        if self.end.dead() {
            // Power went while it answered: nothing arrives.
            return Err(());
        }
        unwrap_frame(&self.out[..len], answer)
    }
}

struct Images {
    old: [Vec<u8>; 3],
    new: [Vec<u8>; 3],
    pkg: Vec<u8>,
    key: VerifyingKey,
}

const NAMES: [&str; 3] = ["main", "radio", "data"];

fn images(seed: u64, size: usize) -> Images {
    let old = [
        firmware(seed, size),
        firmware(seed + 1, size * 3 / 4),
        firmware(seed + 2, size / 2),
    ];
    let new = [
        evolve(&old[0], seed),
        evolve(&old[1], seed + 1),
        firmware(seed + 3, size / 2 + 300),
    ];
    let sk = SigningKey::from_slice(&[9u8; 32]).unwrap();
    let pkg = build_package(&spec(&old, &new, |_| {}), &sk, &mut |_| {}).unwrap();
    Images {
        old,
        new,
        pkg,
        key: *sk.verifying_key(),
    }
}

/// The machine package of these images: main delta (best profile) depending on radio
/// 1.1.0, radio delta (small profile), data full; `edit` changes it.
fn spec(
    old: &[Vec<u8>; 3],
    new: &[Vec<u8>; 3],
    edit: impl FnOnce(&mut Vec<ComponentSpec>),
) -> PackageSpec {
    let comp = |i: usize, delta: bool, params: Params, deps: Vec<(String, String)>| ComponentSpec {
        name: NAMES[i].into(),
        from_version: delta.then(|| "1.0.0".into()),
        to_version: "1.1.0".into(),
        security_counter: 2,
        load_address: 0,
        old: delta.then(|| old[i].clone()),
        new: new[i].clone(),
        params,
        dependencies: deps,
    };
    let mut components = vec![
        comp(
            0,
            true,
            Params::BEST,
            vec![("radio".into(), "1.1.0".into())],
        ),
        comp(1, true, Params::SMALL, vec![]),
        comp(2, false, Params::SMALL, vec![]),
    ];
    edit(&mut components);
    PackageSpec {
        product_id: ID.product_id.into(),
        hardware_id: ID.hardware_id.into(),
        created: 1,
        components,
    }
}

fn split(pkg: &[u8]) -> (&[u8], &[u8], &[u8], &[u8]) {
    let p = Package::parse(pkg).unwrap();
    let m = HEADER_LEN + p.header.manifest_len as usize;
    (
        &pkg[..HEADER_LEN],
        &pkg[HEADER_LEN..m],
        &pkg[m..m + 64],
        &pkg[m + 64..],
    )
}

/// Flash layouts: main MCU (main swap slots, data A/B slots, two journals, machine journal,
/// envelope) and the module (swap slots).
struct Layouts {
    main: Layout,
    data: Layout,
    machine_journal: Region,
    envelope: Region,
    main_sectors: usize,
    module: Layout,
    module_sectors: usize,
}

fn layouts(size: usize, module_ab: bool) -> Layouts {
    let r = |s: u32, n: u32| Region {
        start: s * E,
        len: n * E,
    };
    let k = (size as u32 * 5 / 4).div_ceil(E) + 2;
    let kd = ((size / 2 + 300) as u32).div_ceil(E) + 2;
    let main = Layout {
        slots: [r(0, k), r(k, k)],
        mode: SlotMode::Swap {
            scratch: r(2 * k, 1),
        },
        journal: r(2 * k + 1, 2),
    };
    let d0 = 2 * k + 3;
    let data = Layout {
        slots: [r(d0, kd), r(d0 + kd, kd)],
        mode: SlotMode::AB,
        journal: r(d0 + 2 * kd, 2),
    };
    let m0 = d0 + 2 * kd + 2;
    let km = ((size * 3 / 4) as u32 * 5 / 4).div_ceil(E) + 2;
    Layouts {
        main,
        data,
        machine_journal: r(m0, 2),
        envelope: r(m0 + 2, 2048 / E),
        main_sectors: (m0 + 2 + 2048 / E) as usize,
        module: Layout {
            slots: [r(0, km), r(km, km)],
            mode: if module_ab {
                SlotMode::AB
            } else {
                SlotMode::Swap {
                    scratch: r(2 * km, 1),
                }
            },
            journal: r(2 * km + 1, 2),
        },
        module_sectors: (2 * km + 3) as usize,
    }
}

fn cfg<'a>(layout: Layout, keys: &'a [VerifyingKey], name: &'a str) -> Config<'a> {
    Config {
        layout,
        erased: 0xFF,
        keys,
        identity: ID,
        component: name,
        member: true,
    }
}

/// How a run ended.
#[derive(Debug)]
enum End {
    /// The update is installed and committed.
    Done,
    /// The main MCU lost power.
    MainCut,
    /// Something no cut explains.
    Bug(String),
}

/// Which image each member runs: 0 old, 1 new.
fn generations(m: &mut Machine<'_, '_, Shared<'_, Flash>>, im: &Images) -> Result<[u8; 3], String> {
    let mut g = [0u8; 3];
    for (i, member) in m.members().iter_mut().enumerate() {
        let st = member
            .state()
            .map_err(|e| format!("{}: state: {e}", NAMES[i]))?;
        let sha = st.running.map(|r| r.sha256).unwrap_or_default();
        g[i] = if sha == <[u8; 32]>::from(Sha256::digest(&im.old[i])) {
            0
        } else if sha == <[u8; 32]>::from(Sha256::digest(&im.new[i])) {
            1
        } else {
            return Err(format!("{} runs neither image ({:?})", NAMES[i], st.phase));
        };
    }
    Ok(g)
}

/// The host's push, as the machine's protocol server would drive it.
fn push<F: NorFlash>(m: &mut Machine<'_, '_, F>, pkg: &[u8]) -> Result<(), MachineError<F::Error>>
where
    F::Error: core::fmt::Debug,
{
    let (h, man, sig, payload) = split(pkg);
    let (mut at, total) = m.begin(h, man, sig)?;
    while at < total {
        let end = (at + 700).min(total);
        let next = m.write(at, &payload[at as usize..end as usize])?;
        if next <= at {
            return Err(MachineError::NoSession);
        }
        at = next;
    }
    m.finish()?;
    m.boot()?; // the host's REBOOT: the machine installs, then runs on trial
    m.confirm() // the self-test passed
}

/// Counts of one sweep.
#[derive(Debug, Default)]
struct Tally {
    cut_points: u64,
    recovered: u64,
    mixed: u64,
    bricked: u64,
}

struct Rig<'a> {
    im: &'a Images,
    lay: &'a Layouts,
    keys: &'a [VerifyingKey],
    main: &'a RefCell<Flash>,
    module: &'a ModuleEnd<'a>,
    plant: bool,
}

std::thread_local! {
    /// The keep-powered signal, as a power switch wired to it would see it (last value;
    /// 2: never called). The machine calls it on its own thread.
    static HOLD: std::cell::Cell<u8> = const { std::cell::Cell::new(2) };
}

fn power_hold(on: bool) {
    HOLD.with(|h| h.set(u8::from(on)));
}

fn hold() -> u8 {
    HOLD.with(|h| h.get())
}

type M<'x, 'y, 'z> = Machine<'x, 'y, Shared<'z, Flash>>;

/// Open the machine of `rig` from flash (the main MCU starts) and hand it to `f`.
fn with_machine<T>(
    rig: &Rig<'_>,
    ws_main: &mut BestWorkspace<256>,
    ws_data: &mut ModWs,
    f: impl FnOnce(M<'_, '_, '_>) -> T,
) -> Result<T, String> {
    let up_main = Updater::open(
        Shared(rig.main),
        cfg(rig.lay.main, rig.keys, "main"),
        ws_main,
    )
    .map_err(|e| format!("open main: {e:?}"))?;
    let up_data = Updater::open(
        Shared(rig.main),
        cfg(rig.lay.data, rig.keys, "data"),
        ws_data,
    )
    .map_err(|e| format!("open data: {e:?}"))?;
    let mut main = Local::new(up_main);
    let mut data = Local::new(up_data);
    let mut radio = Module::new(
        "radio",
        SimLink {
            end: rig.module,
            out: Vec::new(),
        },
    );
    let mut members: [&mut dyn Member; 3] = [&mut main, &mut radio, &mut data];
    let mut env = [0u8; 2048];
    let mcfg = MachineConfig {
        journal: rig.lay.machine_journal,
        envelope: rig.lay.envelope,
        erased: 0xFF,
        keys: rig.keys,
        identity: ID,
        keep_powered: Some(power_hold),
    };
    let mut m = Machine::open(Shared(rig.main), mcfg, &mut members, &mut env)
        .map_err(|e| format!("open machine: {e:?}"))?;
    m.plant_skip_confirmed = rig.plant;
    Ok(f(m))
}

/// One life of the main MCU: open everything from flash, run the boot step, check the
/// machine is not mixed, then push until done (restarting the module after its cuts).
fn main_life(
    rig: &Rig<'_>,
    ws_main: &mut BestWorkspace<256>,
    ws_data: &mut ModWs,
    mixed: &mut bool,
) -> End {
    if rig.main.borrow().is_dead() {
        return End::MainCut;
    }
    match with_machine(rig, ws_main, ws_data, |mut m| drive(rig, &mut m, mixed)) {
        Ok(end) => end,
        Err(_) if rig.main.borrow().is_dead() => End::MainCut,
        Err(e) => End::Bug(e),
    }
}

fn drive(rig: &Rig<'_>, m: &mut M<'_, '_, '_>, mixed: &mut bool) -> End {
    let main_dead = || rig.main.borrow().is_dead();
    for _attempt in 0..6 {
        let booted = m.boot();
        if main_dead() {
            return End::MainCut;
        }
        if rig.module.dead() {
            if let Err(e) = rig.module.restart() {
                return End::Bug(e);
            }
            continue;
        }
        if let Err(e) = booted {
            if !matches!(e, MachineError::RolledBack { .. }) {
                return End::Bug(format!("boot: {e}"));
            }
        }
        let all_new = match generations(m, rig.im) {
            Ok(g) if g.iter().all(|&x| x == g[0]) => g[0] == 1,
            Ok(g) => {
                *mixed = true;
                return End::Bug(format!("mixed after boot ({:?}): {g:?}", m.record().phase));
            }
            Err(e) => return End::Bug(e),
        };
        let next = match m.record().phase {
            // Restarted into the new images on trial: the application's self-test passes.
            MachinePhase::Trial => m.confirm(),
            MachinePhase::Committed if all_new => Ok(()),
            _ => push(m, &rig.im.pkg),
        };
        match next {
            Ok(()) => {}
            Err(_) if main_dead() => return End::MainCut,
            Err(_) if rig.module.dead() => {
                if let Err(e) = rig.module.restart() {
                    return End::Bug(e);
                }
                continue;
            }
            Err(e) => return End::Bug(format!("push: {e}")),
        }
        return match generations(m, rig.im) {
            Ok([1, 1, 1]) if m.record().phase == MachinePhase::Committed => End::Done,
            Ok(g) => End::Bug(format!("after the push: {g:?}, {:?}", m.record().phase)),
            Err(e) => End::Bug(e),
        };
    }
    End::Bug("no progress after 6 attempts".into())
}

/// Where to cut.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// The main MCU loses power; the module keeps running.
    Main,
    /// The module loses power; the main MCU keeps running.
    Module,
    /// The whole machine loses power at the main MCU's flash operation.
    Both,
}

struct Setup {
    im: Images,
    lay: Layouts,
    main0: Flash,
    module0: Flash,
}

fn setup(seed: u64, size: usize, module_ab: bool) -> Setup {
    let im = images(seed, size);
    let lay = layouts(size, module_ab);
    let keys = [im.key];
    let main0 = RefCell::new(Flash::new(lay.main_sectors, 0xFF));
    let module0 = RefCell::new(Flash::new(lay.module_sectors, 0xFF));
    let mut ws = Box::new(BestWorkspace::<256>::new());
    let mut wss = Box::new(ModWs::new());
    let mut up = Updater::open(Shared(&main0), cfg(lay.main, &keys, "main"), &mut *ws).unwrap();
    up.provision(&im.old[0], "main", "1.0.0", 1).unwrap();
    let mut up = Updater::open(Shared(&main0), cfg(lay.data, &keys, "data"), &mut *wss).unwrap();
    up.provision(&im.old[2], "data", "1.0.0", 1).unwrap();
    let mut up =
        Updater::open(Shared(&module0), cfg(lay.module, &keys, "radio"), &mut *wss).unwrap();
    up.provision(&im.old[1], "radio", "1.0.0", 1).unwrap();
    let mut main0 = main0.into_inner();
    let mut module0 = module0.into_inner();
    main0.power_on();
    module0.power_on();
    Setup {
        im,
        lay,
        main0,
        module0,
    }
}

/// Run the update once with `cut` (or none); `Ok(ops)`: the flash operations of the main
/// MCU and of the module in a clean run.
fn run_once(
    s: &Setup,
    cut: Option<(Target, Cut)>,
    seed: u64,
    plant: bool,
    t: &mut Tally,
) -> Result<(u64, u64), String> {
    let keys = [s.im.key];
    let main = RefCell::new(s.main0.clone());
    let module_flash = RefCell::new(s.module0.clone());
    let end = ModuleEnd {
        flash: &module_flash,
        server: RefCell::new(None),
        cfg: cfg(s.lay.module, &keys, "radio"),
    };
    let mut ws_mod = Box::new(ModWs::new());
    end.start(&mut ws_mod)?;
    match cut {
        Some((Target::Main | Target::Both, c)) => main.borrow_mut().set_cut(Some(c), seed),
        Some((Target::Module, c)) => module_flash.borrow_mut().set_cut(Some(c), seed),
        None => {}
    }
    let rig = Rig {
        im: &s.im,
        lay: &s.lay,
        keys: &keys,
        main: &main,
        module: &end,
        plant,
    };
    let mut ws_main = Box::new(BestWorkspace::<256>::new());
    let mut ws_data = Box::new(ModWs::new());
    let mut mixed = false;
    for _life in 0..4 {
        let r = main_life(&rig, &mut ws_main, &mut ws_data, &mut mixed);
        match r {
            End::Done => {
                if cut.is_some() {
                    t.recovered += 1;
                }
                return Ok((main.borrow().ops(), module_flash.borrow().ops()));
            }
            End::MainCut => {
                main.borrow_mut().power_on();
                if matches!(cut, Some((Target::Both, _))) {
                    // The whole machine lost power: the module restarts from its flash too.
                    if let Err(e) = end.restart() {
                        t.bricked += 1;
                        return Err(e);
                    }
                }
            }
            End::Bug(e) => {
                if mixed {
                    t.mixed += 1;
                } else {
                    t.bricked += 1;
                }
                return Err(e);
            }
        }
    }
    t.bricked += 1;
    Err("the main MCU did not get through after 4 restarts".into())
}

/// The sweep over every operation of the main MCU and of the module, cut before and torn,
/// on two threads. With `plant`, stops at the first failure.
fn sweep(seed: u64, size: usize, module_ab: bool, plant: bool) -> Tally {
    let s = setup(seed, size, module_ab);
    let mut t = Tally::default();
    let (main_ops, module_ops) = run_once(&s, None, 0, plant, &mut t).unwrap();
    let mut points = Vec::new();
    for (target, ops) in [(Target::Main, main_ops), (Target::Module, module_ops)] {
        for i in 0..ops {
            // Every other main MCU cut takes the module's power too.
            let target = match target {
                Target::Main if i % 2 == 1 => Target::Both,
                t => t,
            };
            points.push((target, Cut::Before(i), i));
            points.push((target, Cut::Tear(i), i));
        }
    }
    let threads = 2;
    let tallies: Vec<Tally> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..threads)
            .map(|k| {
                let (s, points) = (&s, &points);
                sc.spawn(move || {
                    let mut t = Tally::default();
                    for &(target, c, i) in points.iter().skip(k).step_by(threads) {
                        t.cut_points += 1;
                        if let Err(e) = run_once(s, Some((target, c)), seed ^ i, plant, &mut t) {
                            if plant {
                                return t;
                            }
                            println!("machine sweep: {target:?} {c:?}: {e}");
                        }
                    }
                    t
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for x in tallies {
        t.cut_points += x.cut_points;
        t.recovered += x.recovered;
        t.mixed += x.mixed;
        t.bricked += x.bricked;
    }
    t
}

/// The machine sweep (run by `scripts/test.sh` on its own, like the device sweep).
#[test]
fn machine_power_cut_sweep() {
    let mut total = Tally::default();
    // (seed, main image bytes, module slots A/B): 40 machines, main images 4 to 13.75 KB.
    let runs: Vec<(u64, usize, bool)> = (0..40u64)
        .map(|i| (i + 1, 4000 + i as usize * 250, i % 2 == 1))
        .collect();
    for &(seed, size, ab) in &runs {
        let t = sweep(seed, size, ab, false);
        let mode = if ab { "A/B" } else { "swap" };
        println!(
            "machine sweep (seed {seed}, {size} B main image, module {mode}): {} cut points, {} recovered, {} mixed, {} bricked",
            t.cut_points, t.recovered, t.mixed, t.bricked
        );
        total.cut_points += t.cut_points;
        total.recovered += t.recovered;
        total.mixed += t.mixed;
        total.bricked += t.bricked;
    }
    println!(
        "machine power-cut sweep: {} cut points, {} recovered, {} mixed, {} bricked",
        total.cut_points, total.recovered, total.mixed, total.bricked
    );
    assert_eq!(total.mixed, 0);
    assert_eq!(total.bricked, 0);
    assert_eq!(total.recovered, total.cut_points);
}

#[test]
fn planted_bug_in_the_rollback_is_caught() {
    // The planted bug: a rollback leaves members that already confirmed on their new image.
    let t = sweep(1, 3000, false, true);
    assert!(t.mixed > 0, "the planted bug went unnoticed: {t:?}");
}

#[test]
fn three_component_package_installs_on_the_machine() {
    let s = setup(5, 6000, false);
    let mut t = Tally::default();
    let (main_ops, module_ops) = run_once(&s, None, 0, false, &mut t).unwrap();
    assert!(main_ops > 0 && module_ops > 0);
}

/// Offer `pkg` to a fresh machine (with the module answering or not); the error, and
/// whether the main MCU's and the module's flash are byte for byte what they were.
/// A fresh copy of `s`'s machine (its module started when `module_answers`): `f` gets its
/// rig (start the main MCU with [`life`]); then the main MCU's and the module's flash.
fn on_rig<T>(s: &Setup, module_answers: bool, f: impl FnOnce(&Rig<'_>) -> T) -> (T, Flash, Flash) {
    let keys = [s.im.key];
    let main = RefCell::new(s.main0.clone());
    let module_flash = RefCell::new(s.module0.clone());
    let end = ModuleEnd {
        flash: &module_flash,
        server: RefCell::new(None),
        cfg: cfg(s.lay.module, &keys, "radio"),
    };
    let mut ws_mod = Box::new(ModWs::new());
    if module_answers {
        end.start(&mut ws_mod).unwrap();
    }
    let rig = Rig {
        im: &s.im,
        lay: &s.lay,
        keys: &keys,
        main: &main,
        module: &end,
        plant: false,
    };
    let r = f(&rig);
    let flashes = (main.borrow().clone(), module_flash.borrow().clone());
    (r, flashes.0, flashes.1)
}

/// One life of the rig's main MCU (opened from its flash).
fn life<T>(rig: &Rig<'_>, f: impl FnOnce(M<'_, '_, '_>) -> T) -> T {
    let (mut a, mut b) = (
        Box::new(BestWorkspace::<256>::new()),
        Box::new(ModWs::new()),
    );
    with_machine(rig, &mut a, &mut b, f).unwrap()
}

fn offer(
    s: &Setup,
    pkg: &[u8],
    module_answers: bool,
) -> (
    Result<(u32, u32), MachineError<crate::sim::SimError>>,
    bool,
    bool,
) {
    let (r, main, module) = on_rig(s, module_answers, |rig| {
        life(rig, |mut m| {
            let m = &mut m;
            let (h, man, sig, _) = split(pkg);
            let r = m.begin(h, man, sig);
            if r.is_err() {
                // Whatever was refused, every member still runs its old image, at rest.
                if module_answers {
                    assert_eq!(generations(m, &s.im).unwrap(), [0, 0, 0]);
                }
                for member in m.members().iter_mut() {
                    if let Ok(st) = member.state() {
                        assert!(
                            matches!(st.phase, UpdatePhase::Idle | UpdatePhase::Confirmed),
                            "{} left in {:?}",
                            member.name(),
                            st.phase
                        );
                    }
                }
            }
            r
        })
    });
    (
        r,
        main.mem() == s.main0.mem(),
        module.mem() == s.module0.mem(),
    )
}

fn repackage(s: &Setup, edit: impl FnOnce(&mut Vec<ComponentSpec>)) -> Vec<u8> {
    let sk = SigningKey::from_slice(&[9u8; 32]).unwrap();
    build_package(&spec(&s.im.old, &s.im.new, edit), &sk, &mut |_| {}).unwrap()
}

fn refused(r: Result<(u32, u32), MachineError<crate::sim::SimError>>) -> (Reject, u8) {
    match r {
        Err(MachineError::Rejected(x)) => (x.reason, x.component),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn dependencies_are_checked_against_the_versions_the_machine_will_have() {
    let s = setup(11, 6000, false);
    // main needs radio 2.0.0, the package brings radio 1.1.0: refused, nothing written.
    let pkg = repackage(&s, |c| {
        c[0].dependencies = vec![("radio".into(), "2.0.0".into())]
    });
    let (r, same_main, same_module) = offer(&s, &pkg, true);
    assert_eq!(refused(r), (Reject::DependencyTooOld, 0));
    assert!(same_main && same_module, "a refused package changed flash");
    // A dependency on a component neither installed nor in the package.
    let pkg = repackage(&s, |c| {
        c[2].dependencies = vec![("sensor".into(), "1.0.0".into())]
    });
    let (r, same_main, same_module) = offer(&s, &pkg, true);
    assert_eq!(refused(r), (Reject::MissingDependency, 2));
    assert!(same_main && same_module);
    // Without radio in the package, main's dependency is judged on the installed radio
    // (1.0.0 < 1.1.0): refused; with radio in it, the same dependency holds.
    let pkg = repackage(&s, |c| {
        c.remove(1);
    });
    let (r, ..) = offer(&s, &pkg, true);
    assert_eq!(refused(r), (Reject::DependencyTooOld, 0));
    let (r, ..) = offer(&s, &s.im.pkg, true);
    assert!(r.is_ok(), "{r:?}");
}

#[test]
fn a_component_for_a_module_that_is_not_there_is_refused() {
    let s = setup(12, 6000, false);
    let pkg = repackage(&s, |c| {
        let mut gps = c[2].clone();
        gps.name = "gps".into();
        c.push(gps);
    });
    let (r, same_main, same_module) = offer(&s, &pkg, true);
    assert_eq!(refused(r), (Reject::Unsupported, 3));
    assert!(same_main && same_module);
}

#[test]
fn a_module_that_refuses_its_component_stops_the_machine_update() {
    let s = setup(13, 6000, false);
    // The radio's new image does not fit the module's slot: the machine cannot know
    // that (it does not know the module's slot size); the module refuses at BEGIN and
    // every member gives the package up.
    let pkg = repackage(&s, |c| c[1].new = firmware(99, 40_000));
    let (r, same_main, same_module) = offer(&s, &pkg, true);
    assert_eq!(refused(r), (Reject::TooLarge, 1));
    assert!(same_module, "the module wrote something");
    let _ = same_main; // the machine kept the package's header in its journal area
}

#[test]
fn a_module_that_does_not_answer_fails_the_update_before_anything_is_written() {
    let s = setup(14, 6000, false);
    let (r, same_main, same_module) = offer(&s, &s.im.pkg, false);
    match r {
        Err(MachineError::Member {
            component: 1,
            error: MemberError::Unreachable,
        }) => {}
        other => panic!("expected radio unreachable, got {other:?}"),
    }
    assert!(same_main && same_module);
}

#[test]
fn a_failed_self_test_takes_every_component_back() {
    let s = setup(15, 6000, false);
    on_rig(&s, true, |rig| {
        life(rig, |mut m| {
            let m = &mut m;
            m.boot().unwrap();
            let (h, man, sig, payload) = split(&s.im.pkg);
            let (at, total) = m.begin(h, man, sig).unwrap();
            assert_eq!((at, total), (0, payload.len() as u32));
            assert_eq!(m.write(0, payload).unwrap(), total);
            m.finish().unwrap();
            assert_eq!(m.status().phase, MachinePhase::Staged);
            assert_eq!(m.boot().unwrap(), MachinePhase::Trial);
            assert_eq!(generations(m, &s.im).unwrap(), [1, 1, 1]);
            assert!(matches!(m.reject(), Err(MachineError::SelfTest)));
            assert_eq!(m.record().phase, MachinePhase::RolledBack);
            assert_eq!(generations(m, &s.im).unwrap(), [0, 0, 0]);
            // A restart keeps it there, and the same package installs again afterwards.
            assert_eq!(m.boot().unwrap(), MachinePhase::RolledBack);
            push(m, &s.im.pkg).unwrap();
            assert_eq!(generations(m, &s.im).unwrap(), [1, 1, 1]);
        })
    });
}

#[test]
fn a_module_that_stops_answering_during_the_install_is_rolled_back_with_the_rest() {
    let s = setup(16, 6000, false);
    on_rig(&s, true, |rig| {
        life(rig, |mut m| {
            let m = &mut m;
            m.boot().unwrap();
            let (h, man, sig, payload) = split(&s.im.pkg);
            m.begin(h, man, sig).unwrap();
            m.write(0, payload).unwrap();
            m.finish().unwrap();
            // The module goes silent (unplugged) before the machine restarts into the update.
            let server = rig.module.server.borrow_mut().take();
            let r = m.boot();
            assert!(
                matches!(
                    r,
                    Err(MachineError::Member {
                        component: 1,
                        error: MemberError::Unreachable
                    })
                ),
                "{r:?}"
            );
            assert_eq!(m.record().phase, MachinePhase::RollingBack);
            // It answers again (still pending: it never restarted): the rollback completes and
            // nothing runs the new image.
            *rig.module.server.borrow_mut() = server;
            assert_eq!(m.boot().unwrap(), MachinePhase::RolledBack);
            assert_eq!(generations(m, &s.im).unwrap(), [0, 0, 0]);
        })
    });
}

#[test]
fn the_host_push_engine_installs_a_machine_package_through_the_machine_server() {
    use crate::machine::MachineServer;
    use bluesphere_core::proto::{Push, PushConfig, Request, Response};
    let s = setup(21, 6000, true);
    on_rig(&s, true, |rig| {
        life(rig, |mut m| {
            m.boot().unwrap();
            let mut srv: MachineServer<'_, '_, _, NoCodes, 2048> =
                MachineServer::new(m, NoCodes, b"main-uid", 600, 4096);
            let mut push = Push::new(
                &s.im.pkg,
                PushConfig {
                    confirm: true,
                    ..PushConfig::default()
                },
            )
            .unwrap();
            let mut dec = FrameDecoder::<1400>::new();
            let (mut tx, mut out) = ([0u8; 1400], [0u8; 1400]);
            let mut now = 0u64;
            while push.outcome().is_none() && now < 600_000_000 {
                while let Some(n) = push.poll_transmit(now, &mut tx) {
                    let mut input = &tx[..n];
                    while !input.is_empty() {
                        let (used, f) = dec.feed(input);
                        input = &input[used..];
                        if let Some(Ok(frame)) = f {
                            if let Some(len) = srv.handle(frame, &mut out) {
                                push.handle_input(now, &out[..len]);
                            }
                            if srv.take_reboot() {
                                srv.machine().boot().unwrap();
                            }
                        }
                    }
                }
                now += 1_000;
                push.on_tick(now);
            }
            let outcome = push.outcome().unwrap().unwrap();
            assert_eq!(outcome.phase, UpdatePhase::Confirmed);
            assert_eq!(srv.machine().record().phase, MachinePhase::Committed);
            assert_eq!(generations(srv.machine(), &s.im).unwrap(), [1, 1, 1]);
            // MACHINE lists every component with its new version.
            let n = Request::Machine.encode(9, &mut tx).unwrap();
            let (_, f) = dec.feed(&tx[..n]);
            let len = srv.handle(f.unwrap().unwrap(), &mut out).unwrap();
            let mut d2 = FrameDecoder::<1400>::new();
            let (_, f) = d2.feed(&out[..len]);
            let (_, r) = Response::parse(f.unwrap().unwrap()).unwrap();
            let Response::Machine(mi) = r else {
                panic!("{r:?}")
            };
            assert_eq!(mi.phase, MachinePhase::Committed as u8);
            let members: Vec<_> = mi.members().map(Result::unwrap).collect();
            assert_eq!(
                members
                    .iter()
                    .map(|e| (e.name, e.version))
                    .collect::<Vec<_>>(),
                [("main", "1.1.0"), ("radio", "1.1.0"), ("data", "1.1.0")]
            );
            assert!(members
                .iter()
                .all(|e| e.phase == Some(UpdatePhase::Confirmed)));
        })
    });
}

#[test]
fn modules_and_the_power_switch_see_the_machine_update() {
    let s = setup(22, 6000, false);
    on_rig(&s, true, |rig| {
        life(rig, |mut m| {
            let told = || {
                rig.module
                    .server
                    .borrow()
                    .as_ref()
                    .and_then(|srv| srv.machine_state())
            };
            assert_eq!(
                hold(),
                0,
                "at rest after open: the modules may be switched off"
            );
            assert!(!m.keep_powered());
            m.boot().unwrap();
            let (h, man, sig, payload) = split(&s.im.pkg);
            m.begin(h, man, sig).unwrap();
            assert_eq!(hold(), 1, "an update started: keep the modules powered");
            assert!(m.keep_powered());
            assert_eq!(told(), Some((MachinePhase::Staging as u8, 0)));
            m.write(0, payload).unwrap();
            m.finish().unwrap();
            assert_eq!(told(), Some((MachinePhase::Staged as u8, 0)));
            m.boot().unwrap();
            assert_eq!(told(), Some((MachinePhase::Trial as u8, 0)));
            assert_eq!(hold(), 1);
            m.confirm().unwrap();
            assert_eq!(told(), Some((MachinePhase::Committed as u8, 0)));
            assert_eq!(
                hold(),
                0,
                "committed: the modules may be switched off again"
            );
        })
    });
    // A main MCU that restarts mid-update says so at once.
    let s2 = setup(23, 6000, false);
    on_rig(&s2, true, |rig| {
        life(rig, |mut m| {
            let (h, man, sig, _) = split(&s2.im.pkg);
            m.begin(h, man, sig).unwrap();
        });
        power_hold(false);
        life(rig, |m| {
            assert_eq!(hold(), 1, "reopened while staging");
            assert!(m.keep_powered());
        });
    });
}

#[test]
fn a_module_that_restarts_mid_transfer_resumes_where_its_journal_says() {
    let s = setup(24, 40_000, false);
    // A rewritten radio firmware in 4 KiB blocks: the module records a checkpoint every
    // block.
    let pkg = repackage(&s, |c| {
        c[1].new = firmware(77, 28_000);
        c[1].params.block_log2 = 12;
    });
    let p = Package::parse(&pkg).unwrap();
    let radio = p.manifest.component("radio").unwrap();
    let (radio_at, radio_len) = (radio.payload_offset as u32, radio.payload_size as u32);
    on_rig(&s, true, |rig| {
        life(rig, |mut m| {
            m.boot().unwrap();
            let (h, man, sig, payload) = split(&pkg);
            m.begin(h, man, sig).unwrap();
            // Everything up to three quarters of the radio's payload.
            let upto = radio_at + radio_len * 3 / 4;
            assert_eq!(m.write(0, &payload[..upto as usize]).unwrap(), upto);
            // The module loses power (its RAM session is gone; its flash journal stays).
            rig.module.restart().unwrap();
            let (resume, total) = m.begin(h, man, sig).unwrap();
            assert!(
                resume > radio_at && resume < upto,
                "resumed at {resume}, radio payload {radio_at}..{upto}"
            );
            assert_eq!(m.write(resume, &payload[resume as usize..]).unwrap(), total);
            m.finish().unwrap();
            m.boot().unwrap();
            m.confirm().unwrap();
            assert_eq!(m.record().phase, MachinePhase::Committed);
            for member in m.members().iter_mut() {
                assert_eq!(member.state().unwrap().phase, UpdatePhase::Confirmed);
            }
        })
    });
}

#[test]
fn a_package_that_does_not_touch_a_silent_module_installs_without_it() {
    let s = setup(25, 6000, false);
    // main (without its dependency on the radio) and data only; the radio module is off.
    let pkg = repackage(&s, |c| {
        c[0].dependencies.clear();
        c.remove(1);
    });
    let ((), main, module) = on_rig(&s, false, |rig| {
        life(rig, |mut m| {
            m.boot().unwrap();
            push(&mut m, &pkg).unwrap();
            assert_eq!(m.record().phase, MachinePhase::Committed);
        })
    });
    assert!(main.mem() != s.main0.mem());
    assert!(module.mem() == s.module0.mem());
    // A package that depends on the silent module is refused before anything is written.
    let (r, same_main, _) = offer(&s, &s.im.pkg, false);
    assert!(
        matches!(
            r,
            Err(MachineError::Member {
                component: 1,
                error: MemberError::Unreachable
            })
        ),
        "{r:?}"
    );
    assert!(same_main);
}
