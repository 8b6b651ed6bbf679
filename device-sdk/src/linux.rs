//! The Linux port (feature `std`): a whole device in a folder, as the `bluesphere-device`
//! virtual device runs it.
//!
//! | file | content |
//! |---|---|
//! | `flash.bin` | the NOR flash ([`FileFlash`]: 4 KiB sectors, 8-byte writes) |
//! | `device.json` | identity, slot mode and size, erased value, trusted public keys |
//! | `activation.bin` | the activation code, written once ([`FileCodes`]) |
//! | `lock` | held (`flock`) by the one process that uses the device |
//!
//! Flash layout ([`layout`]): slot 0, slot 1 (equal, whole sectors), one scratch sector
//! (used in swap mode), two journal sectors.
//!
//! A device is one process at a time: [`VirtualDevice::open`] takes an exclusive lock on
//! `DIR/lock` and refuses with [`DeviceError::Busy`] while another process holds it (the
//! lock goes with the process, also on `kill -9`). [`VirtualDevice::create`] leaves nothing
//! behind when it fails.

extern crate std;

use std::boxed::Box;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::string::{String, ToString};
use std::time::Duration;
use std::vec::Vec;
use std::{format, vec};

use bluesphere_core::image::ImageError;
use bluesphere_core::keys::KeyError;
use bluesphere_core::package::{Package, PackageError, HEADER_LEN};
use bluesphere_core::proto::{FrameDecoder, Status};
use embedded_storage::nor_flash::ReadNorFlash;
use p256::ecdsa::VerifyingKey;
use serde::{Deserialize, Serialize};

use crate::file_flash::{FileFlash, FileFlashError};
use crate::serve::{CodeStore, Served, Server};
use crate::{
    BestWorkspace, Config, Identity, Layout, Region, SlotMode, UpdateError, UpdatePhase, Updater,
};

/// Write unit of the file flash.
pub const WRITE: usize = 8;
/// Sector size of the file flash.
pub const SECTOR: usize = 4096;
/// Write buffer of the updater.
const BUF: usize = 4096;
/// Largest payload chunk a frame carries.
pub const MAX_CHUNK: usize = 4096;

/// The flash of a virtual device.
pub type Flash = FileFlash<WRITE, SECTOR>;
/// The workspace of a virtual device's updater (default profile).
pub type Ws = BestWorkspace<BUF>;
/// A virtual device's updater.
pub type Up<'a> = Updater<'a, Flash, BestWorkspace<BUF>>;

/// How the two slots are used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// One execution slot; updates swapped in through a scratch sector.
    Swap,
    /// Two executable banks.
    Ab,
}

/// Why a device operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// No device in the folder.
    #[error("{0}: no device here (create one with init)")]
    NoDevice(PathBuf),
    /// A device exists already.
    #[error("{0}: a device already exists here (remove the folder to start over)")]
    Exists(PathBuf),
    /// Another process uses the device.
    #[error("device busy: another process uses the device in {0} (one process at a time)")]
    Busy(PathBuf),
    /// A request that cannot be met.
    #[error("{0}")]
    Usage(String),
    /// `device.json` is damaged.
    #[error("{path}: {detail}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A key file is unusable.
    #[error("{path}: {source}")]
    Key {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: KeyError,
    },
    /// A key file holds a private key, which a device must never store.
    #[error("{0} holds a private key; a device keeps only public keys (give the .pub.pem file)")]
    PrivateKey(PathBuf),
    /// The factory image is not usable.
    #[error("{path}: {source}")]
    Image {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: ImageError,
    },
    /// The package does not parse.
    #[error("{path}: {source}")]
    Package {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: PackageError,
    },
    /// The updater refused or failed.
    #[error("{0}")]
    Update(UpdateError<FileFlashError>),
    /// The flash file failed.
    #[error("flash: {0}")]
    Flash(#[from] FileFlashError),
    /// The whole-machine coordinator failed.
    #[error("{0}")]
    Machine(#[from] crate::machine::MachineError<FileFlashError>),
}

impl From<UpdateError<FileFlashError>> for DeviceError {
    fn from(e: UpdateError<FileFlashError>) -> Self {
        DeviceError::Update(e)
    }
}

impl DeviceError {
    /// Stable kind (as in the CLI's JSON errors).
    pub fn kind(&self) -> &'static str {
        match self {
            DeviceError::NoDevice(_) => "no-device",
            DeviceError::Exists(_) => "exists",
            DeviceError::Busy(_) => "device-busy",
            DeviceError::Usage(_) => "usage",
            DeviceError::Config { .. } | DeviceError::Image { .. } => "invalid-input",
            DeviceError::Io { .. } => "io",
            DeviceError::Key { .. } | DeviceError::PrivateKey(_) => "key",
            DeviceError::Package { .. } => "bad-package",
            DeviceError::Flash(_) => "flash",
            DeviceError::Machine(e) => {
                use crate::machine::MachineError as M;
                match e {
                    M::Rejected(r) => r.reason.name(),
                    M::Member { .. } => "module",
                    M::RolledBack { .. } | M::SelfTest => "rolled-back",
                    M::Busy(_) => "wrong-phase",
                    M::Flash(_) | M::Layout(_) => "flash",
                    M::NoSession | M::Incomplete { .. } | M::TooLarge(_) => "protocol",
                }
            }
            DeviceError::Update(e) => match e {
                UpdateError::Rejected(r) => r.reason.name(),
                UpdateError::Busy(_) => "wrong-phase",
                UpdateError::Flash(_) | UpdateError::Layout(_) => "flash",
                UpdateError::TargetHash => "target-hash",
                UpdateError::Patch(_) | UpdateError::OutOfRange | UpdateError::TooLong => {
                    "corrupt-payload"
                }
                UpdateError::NoValidImage => "no-valid-image",
                UpdateError::NoSession
                | UpdateError::Gap { .. }
                | UpdateError::Incomplete { .. } => "protocol",
            },
        }
    }
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> DeviceError + '_ {
    move |source| DeviceError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `device.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceFile {
    /// Product id.
    pub product: String,
    /// Hardware id.
    pub hardware: String,
    /// Chip unique id (hex).
    pub uid: String,
    /// Component the slots hold.
    pub component: String,
    /// Slot mode.
    pub mode: Mode,
    /// Bytes per slot.
    pub slot_size: u32,
    /// Erased value of the flash.
    pub erased: u8,
    /// Trusted update keys (SPKI PEM).
    pub keys: Vec<String>,
    /// Public keys for activation codes (default: the update keys).
    #[serde(default)]
    pub activation_keys: Vec<String>,
}

/// What [`VirtualDevice::create`] makes.
#[derive(Debug, Clone)]
pub struct DeviceSpec {
    /// Product id.
    pub product: String,
    /// Hardware id.
    pub hardware: String,
    /// Trusted update key files (public keys).
    pub keys: Vec<PathBuf>,
    /// Activation key files (default: the update keys).
    pub activation_keys: Vec<PathBuf>,
    /// Factory image file (BIN, Intel HEX or ELF).
    pub image: PathBuf,
    /// Factory image version.
    pub version: String,
    /// Factory image security counter.
    pub counter: u32,
    /// Chip unique id (hex), or random.
    pub uid: Option<String>,
    /// Slot mode.
    pub mode: Mode,
    /// Slot size (default: twice the image, whole sectors, plus the trailer sector).
    pub slot_size: Option<u64>,
    /// Component name.
    pub component: String,
    /// Erased value (0xFF or 0x00).
    pub erased: u8,
}

/// The flash layout of a device with `slot`-byte slots (the updater's regions: [`crate::Layout`]).
pub fn layout(slot: u32, mode: Mode) -> Layout {
    let e = SECTOR as u32;
    Layout {
        slots: [
            Region {
                start: 0,
                len: slot,
            },
            Region {
                start: slot,
                len: slot,
            },
        ],
        journal: Region {
            start: 2 * slot + e,
            len: 2 * e,
        },
        mode: match mode {
            Mode::Swap => SlotMode::Swap {
                scratch: Region {
                    start: 2 * slot,
                    len: e,
                },
            },
            Mode::Ab => SlotMode::AB,
        },
    }
}

/// Largest slot of a virtual device (its flash file is written in full when created).
pub const MAX_SLOT: u64 = 512 << 20;

/// A device opened by this process (holding its lock).
#[derive(Debug)]
pub struct VirtualDevice {
    /// `device.json`.
    pub file: DeviceFile,
    keys: Vec<VerifyingKey>,
    activation_keys: Vec<VerifyingKey>,
    uid: Vec<u8>,
    dir: PathBuf,
    delay: Option<Duration>,
    member: bool,
    _lock: File,
}

pub(crate) fn lock(dir: &Path) -> Result<File, DeviceError> {
    let path = dir.join("lock");
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_err(&path))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(fs::TryLockError::WouldBlock) => Err(DeviceError::Busy(dir.to_path_buf())),
        Err(fs::TryLockError::Error(e)) => Err(io_err(&path)(e)),
    }
}

fn parse_keys(pems: &[String], path: &Path) -> Result<Vec<VerifyingKey>, DeviceError> {
    pems.iter()
        .map(|pem| bluesphere_core::keys::load_public(pem, None))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| DeviceError::Key {
            path: path.to_path_buf(),
            source,
        })
}

/// Read a public key file: SPKI PEM only (a private key is refused, never copied).
fn read_public_key(path: &Path) -> Result<String, DeviceError> {
    let meta = fs::metadata(path).map_err(io_err(path))?;
    if !meta.is_file() || meta.len() > 64 * 1024 {
        return Err(DeviceError::Config {
            path: path.to_path_buf(),
            detail: "not a key file (a regular file of at most 64 KiB)".into(),
        });
    }
    let pem = fs::read_to_string(path).map_err(io_err(path))?;
    if pem.contains("PRIVATE KEY-----") {
        return Err(DeviceError::PrivateKey(path.to_path_buf()));
    }
    bluesphere_core::keys::load_public(&pem, None).map_err(|source| DeviceError::Key {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(pem)
}

impl VirtualDevice {
    /// Open the device in `dir` (exclusively; [`DeviceError::Busy`] if another process has
    /// it). `delay` slows every flash erase and write (a slow part, for power-cut tests).
    pub fn open(dir: &Path, delay: Option<Duration>) -> Result<Self, DeviceError> {
        let path = dir.join("device.json");
        if !path.is_file() || !dir.join("flash.bin").is_file() {
            return Err(DeviceError::NoDevice(dir.to_path_buf()));
        }
        let lock = lock(dir)?;
        let text = fs::read_to_string(&path).map_err(io_err(&path))?;
        let file: DeviceFile = serde_json::from_str(&text).map_err(|e| DeviceError::Config {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        if u64::from(file.slot_size) > MAX_SLOT || !file.slot_size.is_multiple_of(SECTOR as u32) {
            return Err(DeviceError::Config {
                path,
                detail: format!(
                    "slot size {} is not a whole number of sectors of at most {MAX_SLOT} bytes",
                    file.slot_size
                ),
            });
        }
        let keys = parse_keys(&file.keys, &path)?;
        let activation_keys = if file.activation_keys.is_empty() {
            keys.clone()
        } else {
            parse_keys(&file.activation_keys, &path)?
        };
        let uid = hex::decode(&file.uid).map_err(|e| DeviceError::Config {
            path: path.clone(),
            detail: format!("uid: {e}"),
        })?;
        Ok(Self {
            file,
            keys,
            activation_keys,
            uid,
            dir: dir.to_path_buf(),
            delay,
            member: false,
            _lock: lock,
        })
    }

    /// Create a device in `dir` with its factory image. On any failure nothing is left
    /// behind (the folder is removed again if this call made it).
    pub fn create(dir: &Path, spec: &DeviceSpec) -> Result<Self, DeviceError> {
        if dir.join("flash.bin").exists() || dir.join("device.json").exists() {
            return Err(DeviceError::Exists(dir.to_path_buf()));
        }
        // Everything that can be checked is checked before a file is made.
        let meta = fs::metadata(&spec.image).map_err(io_err(&spec.image))?;
        if !meta.is_file() || meta.len() > u64::from(u32::MAX) {
            return Err(DeviceError::Config {
                path: spec.image.clone(),
                detail: "not an image file (a regular file under 4 GiB)".into(),
            });
        }
        let raw = fs::read(&spec.image).map_err(io_err(&spec.image))?;
        let img =
            bluesphere_core::image::load(&raw, None).map_err(|source| DeviceError::Image {
                path: spec.image.clone(),
                source,
            })?;
        let keys = spec
            .keys
            .iter()
            .map(|k| read_public_key(k))
            .collect::<Result<Vec<_>, _>>()?;
        let activation_keys = spec
            .activation_keys
            .iter()
            .map(|k| read_public_key(k))
            .collect::<Result<Vec<_>, _>>()?;
        let e = SECTOR as u64;
        let len = img.data.len() as u64;
        let slot = match spec.slot_size {
            Some(s) if s % e != 0 || s < 2 * e => {
                return Err(DeviceError::Usage(format!(
                    "slot size {s}: must be a multiple of {SECTOR} bytes, at least two sectors"
                )))
            }
            Some(s) if s > MAX_SLOT => {
                return Err(DeviceError::Usage(format!(
                    "slot size {s}: at most {MAX_SLOT} bytes (512 MiB) on a virtual device"
                )))
            }
            Some(s) => s,
            None => ((2 * len).div_ceil(e) * e + e).min(MAX_SLOT / e * e),
        };
        if len + e > slot {
            return Err(DeviceError::Usage(format!(
                "the {len}-byte image does not fit a {slot}-byte slot (one {SECTOR}-byte sector holds the trailer)"
            )));
        }
        let uid = match &spec.uid {
            Some(u) => {
                let b = hex::decode(u)
                    .map_err(|e| DeviceError::Usage(format!("uid {u:?}: not hex: {e}")))?;
                if b.is_empty() || b.len() > 32 {
                    return Err(DeviceError::Usage(format!("uid {u:?}: 1 to 32 bytes")));
                }
                hex::encode(b)
            }
            None => {
                let seed = format!("{:?}{}", std::time::SystemTime::now(), std::process::id());
                hex::encode(&bluesphere_core::package::sha2_digest(seed.as_bytes())[..12])
            }
        };
        let file = DeviceFile {
            product: spec.product.clone(),
            hardware: spec.hardware.clone(),
            uid,
            component: spec.component.clone(),
            mode: spec.mode,
            slot_size: slot as u32,
            erased: spec.erased,
            keys,
            activation_keys,
        };
        let made_dir = !dir.exists();
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let r = Self::create_in(dir, &file, &img.data, spec);
        if r.is_err() {
            for f in ["flash.bin", "device.json", "device.json.part", "lock"] {
                let _ = fs::remove_file(dir.join(f));
            }
            if made_dir {
                let _ = fs::remove_dir(dir);
            }
        }
        r
    }

    fn create_in(
        dir: &Path,
        file: &DeviceFile,
        image: &[u8],
        spec: &DeviceSpec,
    ) -> Result<Self, DeviceError> {
        let lock = lock(dir)?;
        let sectors = (2 * file.slot_size as usize / SECTOR) + 3;
        let flash = dir.join("flash.bin");
        Flash::create(&flash, sectors, file.erased).map_err(io_err(&flash))?;
        let json = serde_json::to_string_pretty(file).map_err(|e| DeviceError::Config {
            path: dir.join("device.json"),
            detail: e.to_string(),
        })?;
        write_atomic(&dir.join("device.json"), json.as_bytes())?;
        drop(lock);
        let dev = Self::open(dir, None)?;
        let mut ws = Box::new(Ws::new());
        let mut up = dev.updater(&mut ws)?;
        up.provision(image, &spec.component, &spec.version, spec.counter)?;
        drop(up);
        Ok(dev)
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The flash layout.
    pub fn layout(&self) -> Layout {
        layout(self.file.slot_size, self.file.mode)
    }

    fn flash(&self) -> Result<Flash, DeviceError> {
        let path = self.dir.join("flash.bin");
        let mut f = Flash::open(&path, self.file.erased).map_err(io_err(&path))?;
        f.op_delay = self.delay;
        Ok(f)
    }

    /// The updater over this device's flash.
    pub fn updater<'a>(&'a self, ws: &'a mut Ws) -> Result<Up<'a>, DeviceError> {
        let cfg = Config {
            layout: self.layout(),
            erased: self.file.erased,
            keys: &self.keys,
            identity: Identity {
                product_id: &self.file.product,
                hardware_id: &self.file.hardware,
            },
            component: &self.file.component,
            member: self.member,
        };
        Ok(Updater::open(self.flash()?, cfg, ws)?)
    }

    /// Trusted update keys.
    pub fn keys(&self) -> &[VerifyingKey] {
        &self.keys
    }

    /// Product and hardware id.
    pub fn identity(&self) -> Identity<'_> {
        Identity {
            product_id: &self.file.product,
            hardware_id: &self.file.hardware,
        }
    }

    /// Chip unique id.
    pub fn uid(&self) -> &[u8] {
        &self.uid
    }

    /// This device is a member of a machine ([`crate::linux_machine`]): its updater takes
    /// its own component out of whole-machine packages.
    pub fn into_member(mut self) -> Self {
        self.member = true;
        self
    }

    /// The activation code store.
    pub fn codes(&self) -> FileCodes<'_> {
        FileCodes {
            path: self.dir.join("activation.bin"),
            product: &self.file.product,
            keys: &self.activation_keys,
        }
    }

    /// What the device holds and does.
    pub fn status(&self, up: &mut Up<'_>) -> Result<DeviceStatus, DeviceError> {
        let st = up.status();
        let running = slot_status(up, st.boot_slot)?;
        let other = slot_status(up, 1 - st.boot_slot)?;
        let code = fs::read(self.dir.join("activation.bin")).ok();
        let valid = code.as_ref().is_some_and(|c| {
            crate::activation::check_code(
                c,
                &self.uid,
                &self.file.product,
                &self.activation_keys,
                None,
            )
            .is_ok()
        });
        Ok(DeviceStatus {
            product: self.file.product.clone(),
            hardware: self.file.hardware.clone(),
            uid: self.file.uid.clone(),
            activation: Activation {
                stored: code.is_some(),
                valid,
            },
            mode: self.file.mode,
            phase: st.phase.name(),
            progress: Progress {
                done: st.done,
                total: st.total,
            },
            boot_slot: st.boot_slot,
            fell_back_from: st.fell_back_from,
            tag: st.tag.map(hex::encode),
            running,
            other,
        })
    }

    /// Receive a whole package from bytes (resuming an interrupted one), `chunk` bytes per
    /// write; `progress(done, total)` after each.
    pub fn install(
        &self,
        up: &mut Up<'_>,
        package: &Path,
        chunk: usize,
        progress: &mut dyn FnMut(u32, u32),
    ) -> Result<Installed, DeviceError> {
        let meta = fs::metadata(package).map_err(io_err(package))?;
        if !meta.is_file() {
            return Err(DeviceError::Config {
                path: package.to_path_buf(),
                detail: "not a regular file".into(),
            });
        }
        if meta.len() > u64::from(self.file.slot_size) * 3 + 1024 * 1024 {
            return Err(DeviceError::Config {
                path: package.to_path_buf(),
                detail: format!(
                    "{} bytes: larger than any package this device can take",
                    meta.len()
                ),
            });
        }
        let bytes = fs::read(package).map_err(io_err(package))?;
        let p = Package::parse(&bytes).map_err(|source| DeviceError::Package {
            path: package.to_path_buf(),
            source,
        })?;
        let header = bytes.get(..HEADER_LEN).unwrap_or(&[]);
        let manifest = p.signed_region().get(HEADER_LEN..).unwrap_or(&[]);
        let payload = bytes
            .get(p.header.payload_offset() as usize..)
            .unwrap_or(&[]);
        let begun = up.begin(header, manifest, p.signature())?;
        let chunk = chunk.clamp(1, MAX_CHUNK);
        let mut off = begun.resume_offset;
        while off < begun.payload_len {
            let end = (off as usize + chunk).min(payload.len());
            let data = payload.get(off as usize..end).unwrap_or(&[]);
            if data.is_empty() {
                return Err(UpdateError::Incomplete {
                    received: off,
                    expected: begun.payload_len,
                }
                .into());
            }
            off = up.write(off, data)?;
            progress(off, begun.payload_len);
        }
        up.finish()?;
        Ok(Installed {
            installed: true,
            resumed_from: begun.resume_offset,
            payload_len: begun.payload_len,
            phase: up.status().phase.name(),
        })
    }

    /// The bytes of the image in `slot`.
    pub fn read_image(&self, up: &mut Up<'_>, slot: u8) -> Result<Vec<u8>, DeviceError> {
        let info = up
            .image_info(slot)?
            .ok_or_else(|| DeviceError::Usage(format!("slot {slot} holds no recorded image")))?;
        let region = self.layout().slots[usize::from(slot & 1)];
        let mut buf = vec![0u8; info.size as usize];
        up.flash().read(region.start, &mut buf)?;
        Ok(buf)
    }

    /// Power on and serve the near-field protocol over links from `open_link` until
    /// `keep_going` says stop (it is asked between reads): the boot step, then requests until
    /// a REBOOT (a reset: the boot step again). A link failure is not a reset: a new link is
    /// opened and the session goes on. `log` gets one line per event. A boot with no valid
    /// image still serves (a full image repairs the device).
    pub fn serve<L: embedded_io::Read + embedded_io::Write>(
        &self,
        ws: &mut Ws,
        open_link: &mut dyn FnMut() -> Result<L, io::Error>,
        auto_confirm: bool,
        log: &mut dyn FnMut(&str),
        keep_going: &mut dyn FnMut() -> bool,
    ) -> Result<(), DeviceError>
    where
        L::Error: core::fmt::Debug,
    {
        let mut link = open_link().map_err(io_err(Path::new("link")))?;
        let mut decoder: FrameDecoder<{ bluesphere_core::proto::encoded_max(MAX_CHUNK + 104) }> =
            FrameDecoder::new();
        while keep_going() {
            let mut up = self.updater(ws)?;
            let before = up.status().phase;
            match up.boot() {
                Ok(_) => {}
                Err(UpdateError::NoValidImage) => {
                    log("boot: no valid image in either slot; waiting for a full image")
                }
                Err(e) => return Err(e.into()),
            }
            let st = up.status();
            if let Some(bad) = st.fell_back_from {
                log(&format!(
                    "boot: the image in slot {bad} is damaged; fell back to slot {}",
                    st.boot_slot
                ));
            }
            log(&format!("boot: {} -> {}", before.name(), st.phase.name()));
            if auto_confirm && st.phase == UpdatePhase::Testing {
                up.confirm()?;
            }
            let mut server: Server<'_, Flash, FileCodes<'_>, Ws, 4096> = Server::new(
                up,
                self.codes(),
                &self.uid,
                MAX_CHUNK as u16 + 16,
                16 * 1024,
            );
            let mut told = Narrated {
                server: &mut server,
                log: &mut *log,
                shown: 0,
            };
            loop {
                match crate::serve::serve(&mut link, &mut told, &mut decoder, &mut *keep_going) {
                    Served::Reboot => break,
                    Served::Stopped => return Ok(()),
                    Served::Link(e) => {
                        (told.log)(&format!("link error ({e:?}); reopening"));
                        std::thread::sleep(Duration::from_millis(200));
                        if let Ok(l) = open_link() {
                            link = l;
                        }
                        decoder.clear();
                    }
                }
            }
            decoder.clear();
        }
        Ok(())
    }
}

/// The device's server, telling the log how far a transfer got (every 4 KiB of payload).
struct Narrated<'s, 'a, 'l> {
    server: &'s mut Server<'a, Flash, FileCodes<'a>, Ws, 4096>,
    log: &'l mut dyn FnMut(&str),
    shown: u64,
}

impl crate::serve::Handler for Narrated<'_, '_, '_> {
    fn handle(&mut self, frame: &[u8], out: &mut [u8]) -> Option<usize> {
        let answer = self.server.handle(frame, out);
        let st = self.server.updater().status();
        if st.total > 0
            && st.done != self.shown
            && (st.done >= self.shown + 4096 || st.done == st.total || st.done < self.shown)
        {
            (self.log)(&format!(
                "received {} of {} payload bytes",
                st.done, st.total
            ));
            self.shown = st.done;
        }
        answer
    }
    fn take_reboot(&mut self) -> bool {
        self.server.take_reboot()
    }
}

/// Write `data` to `path` through a temporary file and a rename.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<(), DeviceError> {
    let tmp = path.with_extension("json.part");
    fs::write(&tmp, data).map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))
}

/// What [`VirtualDevice::install`] did.
#[derive(Debug, Clone, Serialize)]
pub struct Installed {
    /// Always true.
    pub installed: bool,
    /// Payload offset the transfer resumed from (0: from the start).
    pub resumed_from: u32,
    /// Payload bytes.
    pub payload_len: u32,
    /// Phase afterwards.
    pub phase: &'static str,
}

/// An activation code's presence.
#[derive(Debug, Clone, Serialize)]
pub struct Activation {
    /// A code is stored.
    pub stored: bool,
    /// It verifies for this chip.
    pub valid: bool,
}

/// Progress of the phase.
#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    /// Done.
    pub done: u64,
    /// Of.
    pub total: u64,
}

/// One slot's image.
#[derive(Debug, Clone, Serialize)]
pub struct SlotStatus {
    /// Slot.
    pub slot: u8,
    /// Component.
    pub component: String,
    /// Version.
    pub version: String,
    /// Bytes.
    pub size: u32,
    /// Anti-rollback counter.
    pub security_counter: u32,
    /// SHA-256 in the trailer.
    pub sha256: String,
    /// SHA-256 of the bytes in flash.
    pub flash_sha256: String,
    /// The two agree.
    pub intact: bool,
}

/// A device's state.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceStatus {
    /// Product id.
    pub product: String,
    /// Hardware id.
    pub hardware: String,
    /// Chip id (hex).
    pub uid: String,
    /// Activation code.
    pub activation: Activation,
    /// Slot mode.
    pub mode: Mode,
    /// Update phase.
    pub phase: &'static str,
    /// Progress of the phase.
    pub progress: Progress,
    /// The slot that boots.
    pub boot_slot: u8,
    /// The slot whose damaged image the last boot did not run.
    pub fell_back_from: Option<u8>,
    /// Tag of the package in progress.
    pub tag: Option<String>,
    /// The image that runs.
    pub running: Option<SlotStatus>,
    /// The other slot's image.
    pub other: Option<SlotStatus>,
}

fn slot_status(up: &mut Up<'_>, slot: u8) -> Result<Option<SlotStatus>, DeviceError> {
    let Some(info) = up.image_info(slot)? else {
        return Ok(None);
    };
    let actual = up.hash_slot(slot, info.size)?;
    Ok(Some(SlotStatus {
        slot,
        component: info.name().into(),
        version: info.version().into(),
        size: info.size,
        security_counter: info.security_counter,
        sha256: hex::encode(info.sha256),
        flash_sha256: hex::encode(actual),
        intact: actual == info.sha256,
    }))
}

/// Activation code in `DIR/activation.bin`, written once, only if it verifies for this
/// chip's UID and product with the device's activation key(s).
#[derive(Debug)]
pub struct FileCodes<'a> {
    path: PathBuf,
    product: &'a str,
    keys: &'a [VerifyingKey],
}

impl CodeStore for FileCodes<'_> {
    fn read(&mut self, buf: &mut [u8]) -> usize {
        match fs::read(&self.path) {
            Ok(c) if c.len() <= buf.len() => {
                buf[..c.len()].copy_from_slice(&c);
                c.len()
            }
            _ => 0,
        }
    }
    fn write(&mut self, code: &[u8], uid: &[u8]) -> Result<(), Status> {
        if let Ok(old) = fs::read(&self.path) {
            // The same code again is fine (a station retrying); another one is not.
            return if old == code {
                Ok(())
            } else {
                Err(Status::AlreadyActivated)
            };
        }
        crate::activation::check_code(code, uid, self.product, self.keys, None)
            .map_err(|_| Status::BadCode)?;
        let tmp = self.path.with_extension("part");
        fs::write(&tmp, code)
            .and_then(|()| fs::rename(&tmp, &self.path))
            .map_err(|_| Status::FlashError)
    }
}
