//! A whole machine in a folder (feature `std`): a main MCU and its modules, each an ordinary
//! virtual device ([`crate::linux`]) in a sub-folder with its own flash file, run by one
//! process. The main MCU's own slot sets are [`Local`] members; each module runs the device
//! SDK's server on its own thread, linked to the main MCU by an in-process byte pipe (a
//! UART without a line rate) through [`IoLink`]. The host pushes a whole-machine package to
//! the machine's port exactly as to a device.
//!
//! | file | content |
//! |---|---|
//! | `machine.json` | members in install order: component name, folder (relative), local or module |
//! | `machine-flash.bin` | the machine journal (2 sectors) and the package envelope (1 sector), 4 KiB sectors |
//! | `lock` | held by the one process that runs the machine |

extern crate std;

use std::boxed::Box;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::string::{String, ToString};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::time::Duration;
use std::vec::Vec;
use std::{format, vec};

use bluesphere_core::proto::FrameDecoder;
use serde::{Deserialize, Serialize};

use crate::file_flash::FileFlash;
use crate::journal::Journal;
use crate::linux::{
    io_err, lock, write_atomic, DeviceError, DeviceStatus, VirtualDevice, Ws, MAX_CHUNK, SECTOR,
    WRITE,
};
use crate::machine::{
    IoLink, Local, Machine, MachineConfig, MachinePhase, MachineRecord, MachineServer, Member,
    Module, MAX_MEMBERS,
};
use crate::serve::Served;
use crate::Region;

/// One member in `machine.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MemberFile {
    /// Component name (the member device's component).
    pub name: String,
    /// Its device folder, relative to the machine folder.
    pub dir: String,
    /// A module on a local link (else one of the main MCU's own slot sets).
    pub module: bool,
}

/// `machine.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MachineFile {
    /// Members in install order; the first is the main MCU's own firmware.
    pub members: Vec<MemberFile>,
}

/// A machine opened by this process.
#[derive(Debug)]
pub struct VirtualMachine {
    /// `machine.json`.
    pub file: MachineFile,
    dir: PathBuf,
    devices: Vec<VirtualDevice>,
    _lock: fs::File,
}

/// The machine journal and envelope of `machine-flash.bin`.
const JOURNAL: Region = Region {
    start: 0,
    len: 2 * SECTOR as u32,
};
const ENVELOPE: Region = Region {
    start: 2 * SECTOR as u32,
    len: SECTOR as u32,
};
/// Largest header ‖ manifest ‖ signature a virtual machine takes.
const ENVELOPE_BYTES: usize = SECTOR;

fn usage(msg: String) -> DeviceError {
    DeviceError::Usage(msg)
}

/// What `machine status` reports.
#[derive(Debug, Clone, Serialize)]
pub struct MachineStatusReport {
    /// Machine phase.
    pub phase: &'static str,
    /// The component the phase is at (install order).
    pub component: u8,
    /// Every member's state.
    pub members: Vec<MemberReport>,
}

/// One member in [`MachineStatusReport`].
#[derive(Debug, Clone, Serialize)]
pub struct MemberReport {
    /// Component name.
    pub name: String,
    /// A module on a link.
    pub module: bool,
    /// Its device state.
    pub device: DeviceStatus,
}

impl VirtualMachine {
    /// Make a machine in `dir` from member devices already made in its sub-folders (with
    /// `bluesphere-device init`, each holding the component of its name). Every member must
    /// have the machine's product and hardware id.
    pub fn create(dir: &Path, members: &[MemberFile]) -> Result<Self, DeviceError> {
        if dir.join("machine.json").exists() {
            return Err(DeviceError::Exists(dir.to_path_buf()));
        }
        if members.is_empty() || members.len() > MAX_MEMBERS {
            return Err(usage(format!(
                "a machine has 1 to {MAX_MEMBERS} members, got {}",
                members.len()
            )));
        }
        for (i, m) in members.iter().enumerate() {
            if members[..i].iter().any(|o| o.name == m.name) {
                return Err(usage(format!("member {:?} appears twice", m.name)));
            }
            let plain = Path::new(&m.dir)
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)));
            if m.dir.is_empty() || !plain {
                return Err(usage(format!(
                    "member {:?}: its folder {:?} must be a relative path inside the machine folder",
                    m.name, m.dir
                )));
            }
        }
        // Every member is a device of this machine before anything is written.
        let devices = open_members(dir, members)?;
        drop(devices);
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let flash = dir.join("machine-flash.bin");
        let _ = fs::remove_file(&flash);
        FileFlash::<WRITE, SECTOR>::create(&flash, 3, 0xFF).map_err(io_err(&flash))?;
        let file = MachineFile {
            members: members.to_vec(),
        };
        let json = serde_json::to_string_pretty(&file).map_err(|e| DeviceError::Config {
            path: dir.join("machine.json"),
            detail: e.to_string(),
        })?;
        write_atomic(&dir.join("machine.json"), json.as_bytes())?;
        Self::open(dir, None)
    }

    /// Open the machine in `dir` (and every member device: one process at a time).
    pub fn open(dir: &Path, delay: Option<Duration>) -> Result<Self, DeviceError> {
        let path = dir.join("machine.json");
        if !path.is_file() {
            return Err(DeviceError::NoDevice(dir.to_path_buf()));
        }
        let lock = lock(dir)?;
        let text = fs::read_to_string(&path).map_err(io_err(&path))?;
        let file: MachineFile = serde_json::from_str(&text).map_err(|e| DeviceError::Config {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        let devices = open_members_with(dir, &file.members, delay)?;
        Ok(Self {
            file,
            dir: dir.to_path_buf(),
            devices,
            _lock: lock,
        })
    }

    /// The machine folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn flash(&self) -> Result<FileFlash<WRITE, SECTOR>, DeviceError> {
        let path = self.dir.join("machine-flash.bin");
        FileFlash::open(&path, 0xFF).map_err(io_err(&path))
    }

    /// The machine record and every member's state (from the flash files).
    pub fn status(&self) -> Result<MachineStatusReport, DeviceError> {
        let mut flash = self.flash()?;
        let rec = Journal::open::<_, MachineRecord>(&mut flash, JOURNAL, 0xFF)
            .map_err(|_| DeviceError::Flash(crate::file_flash::FileFlashError::OutOfBounds))?
            .1
            .unwrap_or(MachineRecord::IDLE);
        let mut members = Vec::new();
        for (m, dev) in self.file.members.iter().zip(&self.devices) {
            let mut ws = Box::new(Ws::new());
            let mut up = dev.updater(&mut ws)?;
            members.push(MemberReport {
                name: m.name.clone(),
                module: m.module,
                device: dev.status(&mut up)?,
            });
        }
        Ok(MachineStatusReport {
            phase: rec.phase.name(),
            component: rec.component,
            members,
        })
    }

    /// Power the machine on and serve the near-field protocol over links from `open_link`
    /// until `keep_going` says stop: every module runs its own server on its own thread
    /// behind an in-process pipe; the main MCU runs the machine's boot step, then requests
    /// until a REBOOT (the boot step again). `auto_confirm`: after a trial boot, confirm
    /// (the machine's self-test).
    pub fn serve<L: embedded_io::Read + embedded_io::Write>(
        &self,
        open_link: &mut dyn FnMut() -> Result<L, io::Error>,
        auto_confirm: bool,
        log: &(dyn Fn(&str) + Sync),
        keep_going: &mut dyn FnMut() -> bool,
    ) -> Result<(), DeviceError>
    where
        L::Error: core::fmt::Debug,
    {
        let stop = AtomicBool::new(false);
        std::thread::scope(|sc| {
            let mut pipes = Vec::new();
            for (m, dev) in self.file.members.iter().zip(&self.devices) {
                if !m.module {
                    pipes.push(None);
                    continue;
                }
                let (main_end, module_end) = pipe_pair();
                pipes.push(Some(main_end));
                let stop = &stop;
                let name = m.name.clone();
                sc.spawn(move || {
                    let mut ws = Box::new(Ws::new());
                    let mut end = Some(module_end);
                    let mut open = || end.take().ok_or_else(|| io::Error::other("link closed"));
                    let r = dev.serve(
                        &mut ws,
                        &mut open,
                        false,
                        &mut |line| log(&format!("module {name}: {line}")),
                        &mut || !stop.load(Ordering::Relaxed),
                    );
                    if let Err(e) = r {
                        log(&format!("module {name} stopped: {e}"));
                    }
                });
            }
            let r = self.serve_main(&mut pipes, open_link, auto_confirm, log, keep_going);
            stop.store(true, Ordering::Relaxed);
            r
        })
    }

    fn serve_main<L: embedded_io::Read + embedded_io::Write>(
        &self,
        pipes: &mut [Option<Pipe>],
        open_link: &mut dyn FnMut() -> Result<L, io::Error>,
        auto_confirm: bool,
        log: &(dyn Fn(&str) + Sync),
        keep_going: &mut dyn FnMut() -> bool,
    ) -> Result<(), DeviceError>
    where
        L::Error: core::fmt::Debug,
    {
        let main = self
            .devices
            .first()
            .ok_or_else(|| usage("a machine without members".into()))?;
        let mut link = open_link().map_err(io_err(Path::new("link")))?;
        let mut decoder: FrameDecoder<{ bluesphere_core::proto::encoded_max(MAX_CHUNK + 104) }> =
            FrameDecoder::new();
        let mut workspaces: Vec<Box<Ws>> =
            self.devices.iter().map(|_| Box::new(Ws::new())).collect();
        while keep_going() {
            let mut slots = Vec::new();
            for (((m, dev), ws), pipe) in self
                .file
                .members
                .iter()
                .zip(&self.devices)
                .zip(workspaces.iter_mut())
                .zip(pipes.iter_mut())
            {
                slots.push(match pipe.take() {
                    Some(p) => Slot::Module(Box::new(Module::new(&m.name, IoLink::new(p, 3000)))),
                    None => Slot::Local(Box::new(Local::new(dev.updater(ws)?))),
                });
            }
            let mut members: Vec<&mut dyn Member> = slots
                .iter_mut()
                .map(|s| match s {
                    Slot::Local(l) => &mut **l as &mut dyn Member,
                    Slot::Module(m) => &mut **m as &mut dyn Member,
                })
                .collect();
            let mut env = vec![0u8; ENVELOPE_BYTES];
            let cfg = MachineConfig {
                journal: JOURNAL,
                envelope: ENVELOPE,
                erased: 0xFF,
                keys: main.keys(),
                identity: main.identity(),
                keep_powered: None,
            };
            let mut machine = Machine::open(self.flash()?, cfg, &mut members, &mut env)?;
            let before = machine.record().phase;
            let after = match machine.boot() {
                Ok(p) => p,
                Err(e) => {
                    log(&format!("boot: {e}"));
                    machine.record().phase
                }
            };
            log(&format!(
                "boot: machine {} -> {}",
                before.name(),
                after.name()
            ));
            if auto_confirm && after == MachinePhase::Trial {
                match machine.confirm() {
                    Ok(()) => log("self-test passed: every component confirmed"),
                    Err(e) => log(&format!("confirm: {e}")),
                }
            }
            let mut server: MachineServer<'_, '_, _, _, ENVELOPE_BYTES> = MachineServer::new(
                machine,
                main.codes(),
                main.uid(),
                MAX_CHUNK as u16 + 16,
                16 * 1024,
            );
            let mut stopped = false;
            loop {
                match crate::serve::serve(&mut link, &mut server, &mut decoder, &mut *keep_going) {
                    Served::Reboot => break,
                    Served::Stopped => {
                        stopped = true;
                        break;
                    }
                    Served::Link(e) => {
                        log(&format!("link error ({e:?}); reopening"));
                        std::thread::sleep(Duration::from_millis(200));
                        if let Ok(l) = open_link() {
                            link = l;
                        }
                        decoder.clear();
                    }
                }
            }
            drop(server);
            drop(members);
            // The pipes go back for the next boot of the main MCU.
            for (slot, pipe) in slots.into_iter().zip(pipes.iter_mut()) {
                if let Slot::Module(m) = slot {
                    *pipe = Some(m.into_link().into_inner());
                }
            }
            if stopped {
                return Ok(());
            }
            decoder.clear();
        }
        Ok(())
    }
}

enum Slot<'a> {
    Local(Box<Local<'a, crate::linux::Flash, Ws>>),
    Module(Box<Module<'a, IoLink<Pipe>>>),
}

fn open_members(dir: &Path, members: &[MemberFile]) -> Result<Vec<VirtualDevice>, DeviceError> {
    open_members_with(dir, members, None)
}

fn open_members_with(
    dir: &Path,
    members: &[MemberFile],
    delay: Option<Duration>,
) -> Result<Vec<VirtualDevice>, DeviceError> {
    let mut devices: Vec<VirtualDevice> = Vec::new();
    for m in members {
        let d = VirtualDevice::open(&dir.join(&m.dir), delay)?.into_member();
        if d.file.component != m.name {
            return Err(usage(format!(
                "{}: holds component {:?}, not {:?}",
                dir.join(&m.dir).display(),
                d.file.component,
                m.name
            )));
        }
        if let Some(first) = devices.first() {
            if (&d.file.product, &d.file.hardware) != (&first.file.product, &first.file.hardware) {
                return Err(usage(format!(
                    "{}: product {} {} is not the machine's ({} {})",
                    dir.join(&m.dir).display(),
                    d.file.product,
                    d.file.hardware,
                    first.file.product,
                    first.file.hardware
                )));
            }
        }
        devices.push(d);
    }
    Ok(devices)
}

/// One end of an in-process byte pipe (a UART without a line rate): a read that finds
/// nothing within 10 ms returns 0 bytes (an idle poll).
#[derive(Debug)]
pub struct Pipe {
    tx: Sender<Vec<u8>>,
    rx: Receiver<Vec<u8>>,
    buf: Vec<u8>,
    at: usize,
}

/// The other end went away.
#[derive(Debug, Clone, Copy)]
pub struct PipeClosed;

impl embedded_io::Error for PipeClosed {
    fn kind(&self) -> embedded_io::ErrorKind {
        embedded_io::ErrorKind::BrokenPipe
    }
}

impl embedded_io::ErrorType for Pipe {
    type Error = PipeClosed;
}

impl embedded_io::Read for Pipe {
    fn read(&mut self, out: &mut [u8]) -> Result<usize, PipeClosed> {
        if self.at >= self.buf.len() {
            match self.rx.recv_timeout(Duration::from_millis(10)) {
                Ok(v) => {
                    self.buf = v;
                    self.at = 0;
                }
                Err(RecvTimeoutError::Timeout) => return Ok(0),
                Err(RecvTimeoutError::Disconnected) => return Err(PipeClosed),
            }
        }
        let rest = self.buf.get(self.at..).unwrap_or(&[]);
        let n = rest.len().min(out.len());
        if let (Some(d), Some(s)) = (out.get_mut(..n), rest.get(..n)) {
            d.copy_from_slice(s);
        }
        self.at += n;
        Ok(n)
    }
}

impl embedded_io::Write for Pipe {
    fn write(&mut self, data: &[u8]) -> Result<usize, PipeClosed> {
        self.tx.send(data.to_vec()).map_err(|_| PipeClosed)?;
        Ok(data.len())
    }
    fn flush(&mut self) -> Result<(), PipeClosed> {
        Ok(())
    }
}

/// Two connected pipe ends.
pub fn pipe_pair() -> (Pipe, Pipe) {
    let (a_tx, b_rx) = channel();
    let (b_tx, a_rx) = channel();
    (
        Pipe {
            tx: a_tx,
            rx: a_rx,
            buf: Vec::new(),
            at: 0,
        },
        Pipe {
            tx: b_tx,
            rx: b_rx,
            buf: Vec::new(),
            at: 0,
        },
    )
}
