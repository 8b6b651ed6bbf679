//! `bluesphere-device`: a virtual BlueSphere device. The device SDK's Linux port: the same
//! updater a microcontroller runs, over NOR flash kept in a file (`DIR/flash.bin`), with an
//! identity in `DIR/device.json`. Killing the process at any moment (`kill -9`) is a power
//! cut; the next command starts from the flash alone, as a device would.
//!
//! Flash geometry: 4 KiB sectors, 8-byte writes, erased value 0xFF (or 0x00 with
//! `init --erased 0`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, Context};
use bluesphere_core::package::{Package, HEADER_LEN};
use bluesphere_core::proto::{FrameDecoder, Status};
use bluesphere_device::file_flash::FileFlash;
use bluesphere_device::serve::{CodeStore, Served, Server};
use bluesphere_device::{
    Config, Identity, Layout, Region, SlotMode, UpdateError, UpdatePhase, Updater, Workspace,
};
use clap::{Parser, Subcommand, ValueEnum};
use p256::ecdsa::VerifyingKey;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

const W: usize = 8;
const E: usize = 4096;
const S: usize = 4096;
type Flash = FileFlash<W, E>;
type Ws = Workspace<S, 4, 4096>;
type Up<'a> = Updater<'a, Flash, S, 4, 4096>;

#[derive(Parser, Debug)]
#[command(
    name = "bluesphere-device",
    version,
    about = "A virtual BlueSphere device (file-backed flash)"
)]
struct Cli {
    /// Directory holding the device (flash.bin, device.json).
    #[arg(long, value_name = "DIR")]
    flash: PathBuf,
    /// Machine-readable output.
    #[arg(long, global = true)]
    json: bool,
    /// Delay per flash erase/write in microseconds (a slow part, for power-cut tests).
    #[arg(long, global = true, value_name = "US")]
    op_delay_us: Option<u64>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Clone, Copy, ValueEnum, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Mode {
    /// One execution slot, updates swapped in through a scratch sector.
    Swap,
    /// Two executable banks.
    Ab,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Create a device with a factory image.
    Init {
        /// Product id.
        #[arg(long)]
        product: String,
        /// Hardware id.
        #[arg(long)]
        hardware: String,
        /// Public key(s) the device trusts (PEM; repeat for rotation).
        #[arg(long = "key", required = true)]
        keys: Vec<PathBuf>,
        /// Factory image (BIN or Intel HEX).
        #[arg(long)]
        image: PathBuf,
        /// Factory image version.
        #[arg(long)]
        version: String,
        /// Factory image security counter.
        #[arg(long, default_value_t = 0)]
        counter: u32,
        /// Chip unique id in hex (default: random 12 bytes).
        #[arg(long)]
        uid: Option<String>,
        /// Slot mode.
        #[arg(long, value_enum, default_value = "swap")]
        mode: Mode,
        /// Slot size in bytes (default: room for images up to twice the factory image).
        #[arg(long)]
        slot_size: Option<u32>,
        /// Component name the slots hold.
        #[arg(long, default_value = "main")]
        component: String,
        /// Erased value of the flash (255 or 0).
        #[arg(long, default_value_t = 0xFF)]
        erased: u8,
        /// Public key(s) for activation codes (default: the update keys).
        #[arg(long = "activation-key")]
        activation_keys: Vec<PathBuf>,
    },
    /// Receive and apply a package from a file (resumes an interrupted one).
    Install {
        /// The package.
        package: PathBuf,
        /// Bytes per write call.
        #[arg(long, default_value_t = 4096)]
        chunk: usize,
    },
    /// Show the update state and the images.
    Status,
    /// Power on: run the boot step (installs a pending update, finishes a swap, reverts an
    /// image that did not confirm) and report what runs.
    Boot,
    /// The running (trial) image confirms itself.
    Confirm,
    /// Ask for the old image back while the new one is on trial (the next boot reverts).
    Revert,
    /// Give up an update that is being received or is pending.
    Abort,
    /// Serve the near-field protocol on a serial port (a pty slave in tests) until killed.
    Serve {
        /// Serial port path.
        #[arg(long)]
        port: String,
        /// Baud rate: the device reads at most baud / 10 bytes per second, like a UART (a
        /// pty alone has no line rate).
        #[arg(long, default_value_t = 115_200)]
        baud: u32,
        /// After a reboot into a trial image, confirm it (the application's self-test).
        #[arg(long)]
        auto_confirm: bool,
    },
    /// Copy the image of the boot slot (or `--slot`) to a file.
    ReadImage {
        /// Slot (default: the one that boots).
        #[arg(long)]
        slot: Option<u8>,
        /// Output file.
        #[arg(short, long)]
        out: PathBuf,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct DeviceFile {
    product: String,
    hardware: String,
    uid: String,
    component: String,
    mode: Mode,
    slot_size: u32,
    erased: u8,
    keys: Vec<String>,
    /// Public keys for activation codes (default: the update keys).
    #[serde(default)]
    activation_keys: Vec<String>,
}

struct Device {
    file: DeviceFile,
    keys: Vec<VerifyingKey>,
    activation_keys: Vec<VerifyingKey>,
    dir: PathBuf,
    delay: Option<Duration>,
}

/// A failure: stable kind, exit code, message.
struct Failure {
    kind: &'static str,
    code: u8,
    error: anyhow::Error,
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Failure {
            kind: "error",
            code: 3,
            error,
        }
    }
}

fn update_failure<E: std::fmt::Debug>(e: UpdateError<E>) -> Failure {
    let (kind, code) = match &e {
        UpdateError::Rejected(r) => match r.reason {
            bluesphere_device::Reject::BadSignature => ("bad-signature", 4),
            bluesphere_device::Reject::UnknownKey => ("unknown-key", 4),
            bluesphere_device::Reject::WrongBase | bluesphere_device::Reject::NotInstalled => {
                ("wrong-base", 5)
            }
            bluesphere_device::Reject::WrongHardware => ("wrong-hardware", 5),
            bluesphere_device::Reject::WrongProduct => ("wrong-product", 5),
            bluesphere_device::Reject::Rollback => ("rollback", 5),
            bluesphere_device::Reject::TooLarge => ("too-large", 5),
            _ => ("refused", 5),
        },
        UpdateError::Busy(_) => ("busy", 3),
        UpdateError::Flash(_) => ("flash", 3),
        UpdateError::TargetHash => ("target-hash", 3),
        UpdateError::Patch(_) | UpdateError::OutOfRange | UpdateError::TooLong => {
            ("corrupt-payload", 3)
        }
        _ => ("device", 3),
    };
    Failure {
        kind,
        code,
        error: anyhow!("{e}"),
    }
}

impl Device {
    fn load(dir: &Path, delay: Option<Duration>) -> anyhow::Result<Device> {
        let path = dir.join("device.json");
        let text = fs::read_to_string(&path).with_context(|| {
            format!(
                "{}: no device here (create one with `bluesphere-device --flash {} init ...`)",
                path.display(),
                dir.display()
            )
        })?;
        let file: DeviceFile =
            serde_json::from_str(&text).with_context(|| format!("{}", path.display()))?;
        let keys = file
            .keys
            .iter()
            .map(|pem| bluesphere_core::keys::load_public(pem, None))
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("{}: a key does not load", path.display()))?;
        let activation_keys = if file.activation_keys.is_empty() {
            keys.clone()
        } else {
            file.activation_keys
                .iter()
                .map(|pem| bluesphere_core::keys::load_public(pem, None))
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("{}: an activation key does not load", path.display()))?
        };
        Ok(Device {
            file,
            keys,
            activation_keys,
            dir: dir.to_path_buf(),
            delay,
        })
    }

    fn layout(&self) -> Layout {
        layout(self.file.slot_size, self.file.mode)
    }

    fn flash(&self) -> anyhow::Result<Flash> {
        let path = self.dir.join("flash.bin");
        let mut f =
            Flash::open(&path, self.file.erased).with_context(|| format!("{}", path.display()))?;
        f.op_delay = self.delay;
        Ok(f)
    }

    fn updater<'a>(&'a self, ws: &'a mut Ws) -> Result<Up<'a>, Failure> {
        let cfg = Config {
            layout: self.layout(),
            erased: self.file.erased,
            keys: &self.keys,
            identity: Identity {
                product_id: &self.file.product,
                hardware_id: &self.file.hardware,
            },
            component: &self.file.component,
        };
        Updater::open(self.flash()?, cfg, ws).map_err(update_failure)
    }
}

fn layout(slot: u32, mode: Mode) -> Layout {
    let e = E as u32;
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(v) => {
            if cli.json {
                println!("{v}");
            }
            ExitCode::SUCCESS
        }
        Err(f) => {
            if cli.json {
                println!(
                    "{}",
                    json!({"error": {"kind": f.kind, "message": format!("{:#}", f.error)}})
                );
            } else {
                eprintln!("error: {:#}", f.error);
            }
            ExitCode::from(f.code)
        }
    }
}

fn say(cli: &Cli, s: &str) {
    if !cli.json {
        println!("{s}");
    }
}

fn run(cli: &Cli) -> Result<Value, Failure> {
    let delay = cli.op_delay_us.map(Duration::from_micros);
    if let Cmd::Init { .. } = &cli.cmd {
        return init(cli);
    }
    let dev = Device::load(&cli.flash, delay)?;
    let mut ws = Box::new(Ws::new());
    if let Cmd::Serve {
        port,
        baud,
        auto_confirm,
    } = &cli.cmd
    {
        return serve(&dev, &mut ws, port, *baud, *auto_confirm);
    }
    let mut up = dev.updater(&mut ws)?;
    match &cli.cmd {
        Cmd::Init { .. } | Cmd::Serve { .. } => Err(anyhow!("unreachable").into()),
        Cmd::Install { package, chunk } => install(cli, &mut up, package, *chunk),
        Cmd::Status => {
            let v = status(&mut up, &dev)?;
            say(
                cli,
                &format!(
                    "{} {} (uid {}): {}; boots slot {} running {} {}",
                    dev.file.product,
                    dev.file.hardware,
                    dev.file.uid,
                    v["phase"].as_str().unwrap_or("?"),
                    v["boot_slot"],
                    dev.file.component,
                    v["running"]["version"].as_str().unwrap_or("(no image)")
                ),
            );
            Ok(v)
        }
        Cmd::Boot => {
            let slot = up.boot().map_err(update_failure)?;
            let v = status(&mut up, &dev)?;
            say(
                cli,
                &format!(
                    "booted slot {slot}: {} {} ({})",
                    dev.file.component,
                    v["running"]["version"].as_str().unwrap_or("(no image)"),
                    v["phase"].as_str().unwrap_or("?")
                ),
            );
            Ok(v)
        }
        Cmd::Confirm => {
            up.confirm().map_err(update_failure)?;
            say(cli, "confirmed: this image keeps booting");
            status(&mut up, &dev)
        }
        Cmd::Revert => {
            up.request_revert().map_err(update_failure)?;
            say(
                cli,
                "revert requested: the next boot restores the previous image",
            );
            status(&mut up, &dev)
        }
        Cmd::Abort => {
            up.abort().map_err(update_failure)?;
            say(cli, "update abandoned; the running image is unchanged");
            status(&mut up, &dev)
        }
        Cmd::ReadImage { slot, out } => {
            let slot = slot.unwrap_or_else(|| up.boot_slot());
            let info = up
                .image_info(slot)
                .map_err(update_failure)?
                .ok_or_else(|| anyhow!("slot {slot} holds no recorded image"))?;
            let region = dev.layout().slots[usize::from(slot & 1)];
            let mut buf = vec![0u8; info.size as usize];
            embedded_storage_read(&mut up, region.start, &mut buf)?;
            write_atomic(out, &buf)?;
            say(
                cli,
                &format!(
                    "wrote {} bytes of slot {slot} to {}",
                    buf.len(),
                    out.display()
                ),
            );
            Ok(json!({"slot": slot, "size": buf.len(), "version": info.version()}))
        }
    }
}

/// A serial port as an `embedded_io` link; a read timeout is an idle poll (0 bytes). Reads
/// are throttled to the baud rate (a pty has none; a UART does).
struct Port {
    port: Box<dyn serialport::SerialPort>,
    bytes_per_sec: f64,
    start: std::time::Instant,
    taken: f64,
}

impl embedded_io::ErrorType for Port {
    type Error = std::io::Error;
}

impl embedded_io::Read for Port {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, std::io::Error> {
        let allowed = self.start.elapsed().as_secs_f64() * self.bytes_per_sec - self.taken;
        if allowed < 1.0 {
            std::thread::sleep(Duration::from_micros(500));
            return Ok(0);
        }
        let n = (allowed as usize).clamp(1, buf.len());
        match std::io::Read::read(&mut self.port, &mut buf[..n]) {
            Ok(k) => {
                self.taken += k as f64;
                Ok(k)
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                // An idle line does not bank credit.
                self.taken = self
                    .taken
                    .max(self.start.elapsed().as_secs_f64() * self.bytes_per_sec - 64.0);
                Ok(0)
            }
            Err(e) => Err(e),
        }
    }
}

impl embedded_io::Write for Port {
    fn write(&mut self, buf: &[u8]) -> Result<usize, std::io::Error> {
        std::io::Write::write(&mut self.port, buf)
    }
    fn flush(&mut self) -> Result<(), std::io::Error> {
        std::io::Write::flush(&mut self.port)
    }
}

/// Activation code in `DIR/activation.bin`, written once, only if it verifies for this
/// chip's UID and product with the device's activation key(s).
struct FileCodes<'a> {
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
        bluesphere_device::activation::check_code(code, uid, self.product, self.keys, None)
            .map_err(|_| Status::BadCode)?;
        write_atomic(&self.path, code).map_err(|_| Status::FlashError)
    }
}

fn open_port(path: &str, baud: u32) -> anyhow::Result<Port> {
    let p = serialport::new(path, baud)
        .timeout(Duration::from_millis(20))
        .open()
        .with_context(|| format!("cannot open {path}"))?;
    Ok(Port {
        port: p,
        bytes_per_sec: f64::from(baud) / 10.0,
        start: std::time::Instant::now(),
        taken: 0.0,
    })
}

fn serve(
    dev: &Device,
    ws: &mut Ws,
    path: &str,
    baud: u32,
    auto_confirm: bool,
) -> Result<Value, Failure> {
    let uid = hex::decode(&dev.file.uid).map_err(|e| anyhow!("device.json uid: {e}"))?;
    let mut port = open_port(path, baud)?;
    eprintln!(
        "bluesphere-device: serving {} {} on {path}",
        dev.file.product, dev.file.hardware
    );
    let mut decoder: FrameDecoder<{ bluesphere_core::proto::encoded_max(4200) }> =
        FrameDecoder::new();
    loop {
        // Power on: the boot step, then serve until a REBOOT (a reset). A link failure is
        // not a reset: the port is reopened and the same session goes on.
        let mut up = dev.updater(ws)?;
        let before = up.status().phase;
        up.boot().map_err(update_failure)?;
        eprintln!(
            "bluesphere-device: boot: {} -> {}",
            before.name(),
            up.status().phase.name()
        );
        if auto_confirm && up.status().phase == UpdatePhase::Testing {
            up.confirm().map_err(update_failure)?;
        }
        let codes = FileCodes {
            path: dev.dir.join("activation.bin"),
            product: &dev.file.product,
            keys: &dev.activation_keys,
        };
        let mut server: Server<'_, Flash, FileCodes<'_>, S, 4, 4096, 4096> =
            Server::new(up, codes, &uid, 4096 + 16, 16 * 1024);
        loop {
            match bluesphere_device::serve::serve(&mut port, &mut server, &mut decoder, || true) {
                Served::Reboot | Served::Stopped => break,
                Served::Link(e) => {
                    // The host side went away (pty closed, cable pulled): wait and reopen.
                    eprintln!("bluesphere-device: link error ({e}); reopening {path}");
                    std::thread::sleep(Duration::from_millis(200));
                    if let Ok(p) = open_port(path, baud) {
                        port = p;
                    }
                    decoder.clear();
                }
            }
        }
        decoder.clear();
    }
}

fn embedded_storage_read(up: &mut Up<'_>, at: u32, buf: &mut [u8]) -> Result<(), Failure> {
    use bluesphere_device::flash::ReadNorFlash;
    up.flash()
        .read(at, buf)
        .map_err(|e| Failure::from(anyhow!("{e}")))
}

fn write_atomic(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("part");
    fs::write(&tmp, data).with_context(|| format!("{}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("{}", path.display()))?;
    Ok(())
}

fn slot_json(up: &mut Up<'_>, slot: u8) -> Result<Value, Failure> {
    let Some(info) = up.image_info(slot).map_err(update_failure)? else {
        return Ok(Value::Null);
    };
    let actual = up.hash_slot(slot, info.size).map_err(update_failure)?;
    Ok(json!({
        "slot": slot,
        "component": info.name(),
        "version": info.version(),
        "size": info.size,
        "security_counter": info.security_counter,
        "sha256": hex::encode(info.sha256),
        "flash_sha256": hex::encode(actual),
        "intact": actual == info.sha256,
    }))
}

fn status(up: &mut Up<'_>, dev: &Device) -> Result<Value, Failure> {
    let st = up.status();
    let running = slot_json(up, st.boot_slot)?;
    let other = slot_json(up, 1 - st.boot_slot)?;
    let code = fs::read(dev.dir.join("activation.bin")).ok();
    let uid = hex::decode(&dev.file.uid).unwrap_or_default();
    let valid = code.as_ref().is_some_and(|c| {
        bluesphere_device::activation::check_code(
            c,
            &uid,
            &dev.file.product,
            &dev.activation_keys,
            None,
        )
        .is_ok()
    });
    Ok(json!({
        "product": dev.file.product,
        "hardware": dev.file.hardware,
        "uid": dev.file.uid,
        "activation": {"stored": code.is_some(), "valid": valid},
        "mode": dev.file.mode,
        "phase": st.phase.name(),
        "progress": {"done": st.done, "total": st.total},
        "boot_slot": st.boot_slot,
        "tag": st.tag.map(hex::encode),
        "running": running,
        "other": other,
    }))
}

fn install(cli: &Cli, up: &mut Up<'_>, path: &Path, chunk: usize) -> Result<Value, Failure> {
    let bytes =
        fs::read(path).with_context(|| format!("{}: cannot read the package", path.display()))?;
    let p = Package::parse(&bytes).map_err(|e| Failure {
        kind: "bad-package",
        code: 3,
        error: anyhow!("{}: {e}", path.display()),
    })?;
    let header = bytes.get(..HEADER_LEN).unwrap_or(&[]);
    let manifest = p.signed_region().get(HEADER_LEN..).unwrap_or(&[]);
    let payload = bytes
        .get(p.header.payload_offset() as usize..)
        .unwrap_or(&[]);
    let begun = up
        .begin(header, manifest, p.signature())
        .map_err(update_failure)?;
    if begun.resume_offset > 0 {
        say(
            cli,
            &format!(
                "resuming at byte {} of {} (power was lost during the last attempt)",
                begun.resume_offset, begun.payload_len
            ),
        );
    }
    let chunk = chunk.max(1);
    let mut off = begun.resume_offset;
    let mut shown = 0;
    while off < begun.payload_len {
        let end = (off as usize + chunk).min(payload.len());
        let data = payload
            .get(off as usize..end)
            .ok_or_else(|| anyhow!("payload shorter than its manifest"))?;
        off = up.write(off, data).map_err(update_failure)?;
        let pct = u64::from(off) * 100 / u64::from(begun.payload_len.max(1));
        if !cli.json && pct >= shown + 10 {
            shown = pct;
            eprintln!("install: {pct}% ({off}/{} bytes)", begun.payload_len);
        }
    }
    up.finish().map_err(update_failure)?;
    say(
        cli,
        "installed: the new image is verified and pending; it starts at the next boot",
    );
    Ok(json!({
        "installed": true,
        "resumed_from": begun.resume_offset,
        "payload_len": begun.payload_len,
        "phase": up.status().phase.name(),
    }))
}

fn init(cli: &Cli) -> Result<Value, Failure> {
    let Cmd::Init {
        product,
        hardware,
        keys,
        image,
        version,
        counter,
        uid,
        mode,
        slot_size,
        component,
        erased,
        activation_keys,
    } = &cli.cmd
    else {
        return Err(anyhow!("not init").into());
    };
    let dir = &cli.flash;
    if dir.join("flash.bin").exists() {
        return Err(anyhow!(
            "{}: a device already exists here (remove the directory to start over)",
            dir.display()
        )
        .into());
    }
    let raw = fs::read(image).with_context(|| format!("{}", image.display()))?;
    let img =
        bluesphere_core::image::load(&raw, None).with_context(|| format!("{}", image.display()))?;
    let mut pems = Vec::new();
    for k in keys {
        let pem = fs::read_to_string(k).with_context(|| format!("{}", k.display()))?;
        bluesphere_core::keys::load_public(&pem, None)
            .with_context(|| format!("{}: not a public key", k.display()))?;
        pems.push(pem);
    }
    let mut act_pems = Vec::new();
    for k in activation_keys {
        let pem = fs::read_to_string(k).with_context(|| format!("{}", k.display()))?;
        bluesphere_core::keys::load_public(&pem, None)
            .with_context(|| format!("{}: not a public key", k.display()))?;
        act_pems.push(pem);
    }
    let e = E as u32;
    let len = u32::try_from(img.data.len()).map_err(|_| anyhow!("image over 4 GiB"))?;
    let slot = match slot_size {
        Some(s) if s % e != 0 => {
            return Err(anyhow!("--slot-size must be a multiple of {E} bytes").into())
        }
        Some(s) => *s,
        None => (len.saturating_mul(2)).div_ceil(e) * e + e,
    };
    let uid = match uid {
        Some(u) => {
            let b = hex::decode(u).map_err(|e| anyhow!("--uid: not hex: {e}"))?;
            if b.is_empty() || b.len() > 32 {
                return Err(anyhow!("--uid: 1 to 32 bytes").into());
            }
            hex::encode(b)
        }
        None => {
            let seed = format!("{:?}{}", std::time::SystemTime::now(), std::process::id());
            hex::encode(&bluesphere_core::package::sha2_digest(seed.as_bytes())[..12])
        }
    };
    let file = DeviceFile {
        product: product.clone(),
        hardware: hardware.clone(),
        uid,
        component: component.clone(),
        mode: *mode,
        slot_size: slot,
        erased: *erased,
        keys: pems,
        activation_keys: act_pems,
    };
    fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
    let sectors = (2 * slot / e + 3) as usize;
    Flash::create(&dir.join("flash.bin"), sectors, *erased)
        .with_context(|| format!("{}", dir.join("flash.bin").display()))?;
    write_atomic(
        &dir.join("device.json"),
        serde_json::to_string_pretty(&file)
            .map_err(|e| anyhow!("{e}"))?
            .as_bytes(),
    )?;
    let dev = Device::load(dir, None)?;
    let mut ws = Box::new(Ws::new());
    let mut up = dev.updater(&mut ws)?;
    up.provision(&img.data, component, version, *counter)
        .map_err(update_failure)?;
    say(
        cli,
        &format!(
            "device {} {} (uid {}) created in {}: {component} {version}, {:?} slots of {slot} bytes",
            product,
            hardware,
            dev.file.uid,
            dir.display(),
            mode
        ),
    );
    status(&mut up, &dev)
}
