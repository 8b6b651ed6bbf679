//! `bluesphere-device`: a virtual BlueSphere device, the device SDK's Linux port
//! ([`bluesphere_device::linux`]): the same updater a microcontroller runs, over NOR flash
//! kept in a file (`DIR/flash.bin`), with an identity in `DIR/device.json`. Killing the
//! process at any moment (`kill -9`) is a power cut; the next command starts from the flash
//! alone, as a device would. One process at a time uses a device ("device busy" otherwise).
//!
//! This file only parses arguments, calls the port and prints; exit codes are in
//! [`exit_code`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bluesphere_device::linux::{DeviceError, DeviceSpec, Mode as PortMode, VirtualDevice, Ws};
use bluesphere_device::linux_machine::{MemberFile, VirtualMachine};
use bluesphere_host::pty::PtyCable;
use bluesphere_host::serial::UartPort;
mod ble;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::{json, Value};

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

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Mode {
    /// One execution slot, updates swapped in through a scratch sector.
    Swap,
    /// Two executable banks.
    Ab,
}

/// `init`.
#[derive(Args, Debug)]
struct InitArgs {
    /// Product id.
    #[arg(long)]
    product: String,
    /// Hardware id.
    #[arg(long)]
    hardware: String,
    /// Public key(s) the device trusts (SPKI PEM; repeat for rotation). A private key is
    /// refused: a device never stores one.
    #[arg(long = "key", required = true)]
    keys: Vec<PathBuf>,
    /// Factory image (BIN, Intel HEX or ELF).
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
    /// Slot size in bytes, a multiple of 4096 (default: room for images up to twice the
    /// factory image).
    #[arg(long)]
    slot_size: Option<u64>,
    /// Component name the slots hold.
    #[arg(long, default_value = "main")]
    component: String,
    /// Erased value of the flash (255 or 0).
    #[arg(long, default_value_t = 0xFF)]
    erased: u8,
    /// Public key(s) for activation codes (default: the update keys).
    #[arg(long = "activation-key")]
    activation_keys: Vec<PathBuf>,
}

/// `install`.
#[derive(Args, Debug)]
struct InstallArgs {
    /// The package.
    package: PathBuf,
    /// Bytes per write call.
    #[arg(long, default_value_t = 4096)]
    chunk: usize,
}

/// `serve`.
#[derive(Args, Debug)]
struct ServeArgs {
    /// Serial port path; `auto`: make a pseudo-terminal cable, print the path of its host
    /// end on the first line of standard output (for `bluesphere push --port PATH`) and
    /// serve on the other end.
    #[arg(long, required_unless_present = "ble", conflicts_with = "ble")]
    port: Option<String>,
    /// Serve over Bluetooth LE instead: advertise the BlueSphere service through BlueZ
    /// (needs bluetoothd and an adapter) and serve the central that connects.
    #[arg(long)]
    ble: bool,
    /// The Bluetooth adapter for `--ble` (`hci0`, `hci1`, ...; default: BlueZ's default).
    #[arg(long, value_name = "HCI", requires = "ble")]
    adapter: Option<String>,
    /// Baud rate: the device reads at most baud / 10 bytes per second, like a UART (a pty
    /// alone has no line rate).
    #[arg(long, default_value_t = 115_200)]
    baud: u32,
    /// After a reboot into a trial image, confirm it (the application's self-test).
    #[arg(long)]
    auto_confirm: bool,
    /// Stop when the program that started this one ends (a virtual device started by the
    /// Studio goes with it).
    #[arg(long)]
    exit_with_parent: bool,
}

/// `read-image`.
#[derive(Args, Debug)]
struct ReadImageArgs {
    /// Slot (default: the one that boots).
    #[arg(long)]
    slot: Option<u8>,
    /// Output file.
    #[arg(short, long)]
    out: PathBuf,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Create a device with a factory image.
    Init(InitArgs),
    /// Receive and apply a package from a file (resumes an interrupted one).
    Install(InstallArgs),
    /// Show the update state and the images.
    Status,
    /// Power on: run the boot step (installs a pending update, finishes a swap, reverts an
    /// image that did not confirm, falls back from a damaged image) and report what runs.
    Boot,
    /// The running (trial) image confirms itself.
    Confirm,
    /// Ask for the old image back while the new one is on trial (the next boot reverts).
    Revert,
    /// Give up an update that is being received or is pending.
    Abort,
    /// Serve the near-field protocol on a serial port (a pty slave in tests) until killed.
    Serve(ServeArgs),
    /// Copy the image of the boot slot (or `--slot`) to a file.
    ReadImage(ReadImageArgs),
    /// A whole machine: a main MCU and modules, each a device in a sub-folder of `--flash`.
    #[command(subcommand)]
    Machine(MachineCmd),
}

#[derive(Subcommand, Debug)]
enum MachineCmd {
    /// Make a machine from member devices already made (with `init`) in sub-folders.
    Init(MachineInitArgs),
    /// Serve the near-field protocol for the whole machine on a serial port until killed
    /// (modules run on in-process links).
    Serve(ServeArgs),
    /// Show the machine's update phase and every member's state.
    Status,
}

/// `machine init`.
#[derive(Args, Debug)]
struct MachineInitArgs {
    /// A member in install order: `local:NAME=DIR` (one of the main MCU's own slot sets;
    /// the first is its firmware) or `module:NAME=DIR` (a module on a local link). `NAME`
    /// is the component the device in `DIR` (relative to `--flash`) holds.
    #[arg(long = "member", required = true, value_name = "KIND:NAME=DIR")]
    members: Vec<String>,
}

/// Exit code of an error kind (the README's table for `bluesphere-device`).
fn exit_code(kind: &str) -> u8 {
    match kind {
        "usage" | "exists" | "output-conflict" => 2,
        "invalid-input" | "bad-package" | "malformed" | "corrupt-payload" | "target-hash"
        | "protocol" => 3,
        "bad-signature" | "unknown-key" => 4,
        "wrong-base" | "not-installed" | "installed-corrupt" | "wrong-product"
        | "wrong-hardware" | "too-large" | "rollback" | "missing-dependency"
        | "dependency-too-old" | "unsupported" | "refused" => 5,
        "key" => 6,
        "no-device" | "device-busy" | "wrong-phase" | "no-valid-image" | "module"
        | "rolled-back" | "no-bluetooth" => 7,
        _ => 1,
    }
}

/// A failure: the port's error, or an output problem of this binary.
struct Failure {
    kind: &'static str,
    message: String,
}

impl From<DeviceError> for Failure {
    fn from(e: DeviceError) -> Self {
        let mut message = e.to_string();
        let mut cur = std::error::Error::source(&e);
        while let Some(c) = cur {
            let m = c.to_string();
            if !message.contains(&m) {
                message = format!("{message}: {m}");
            }
            cur = c.source();
        }
        Failure {
            kind: e.kind(),
            message,
        }
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
                    json!({"error": {"kind": f.kind, "message": f.message}})
                );
            } else {
                eprintln!("error: {}", f.message);
            }
            ExitCode::from(exit_code(f.kind))
        }
    }
}

fn say(cli: &Cli, s: &str) {
    if !cli.json {
        println!("{s}");
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn run(cli: &Cli) -> Result<Value, Failure> {
    let delay = cli.op_delay_us.map(Duration::from_micros);
    let mut ws = Box::new(Ws::new());
    let dev = match &cli.cmd {
        Cmd::Init(a) => return init(cli, a, &mut ws),
        Cmd::Machine(m) => return machine(cli, m, delay),
        _ => VirtualDevice::open(&cli.flash, delay)?,
    };
    if let Cmd::Serve(a) = &cli.cmd {
        let parent = std::os::unix::process::parent_id();
        let mut keep_going =
            || !a.exit_with_parent || std::os::unix::process::parent_id() == parent;
        if a.ble {
            let name = format!("{} {}", dev.file.product, dev.file.hardware);
            let (io, on) = ble::start(a.adapter.clone(), name, |line| {
                eprintln!("bluesphere-device: {line}")
            })
            .map_err(|message| Failure {
                kind: "no-bluetooth",
                message: format!("cannot serve over Bluetooth LE: {message}"),
            })?;
            eprintln!(
                "bluesphere-device: serving {} {} over Bluetooth LE on {on}",
                dev.file.product, dev.file.hardware
            );
            let mut io = Some(io);
            let mut open = || {
                io.take()
                    .ok_or_else(|| std::io::Error::other("the Bluetooth service stopped"))
            };
            return serve_on(&dev, &mut ws, &mut open, a.auto_confirm, &mut keep_going);
        }
        let (port, _cable) = port_of(a)?;
        eprintln!(
            "bluesphere-device: serving {} {} on {port}",
            dev.file.product, dev.file.hardware
        );
        let mut open =
            || UartPort::open(&port, a.baud).map_err(|e| std::io::Error::other(e.to_string()));
        return serve_on(&dev, &mut ws, &mut open, a.auto_confirm, &mut keep_going);
    }
    let mut up = dev.updater(&mut ws)?;
    let name = &dev.file.component;
    match &cli.cmd {
        Cmd::Init(_) | Cmd::Serve(_) | Cmd::Machine(_) => Ok(Value::Null),
        Cmd::Install(a) => {
            let mut shown = 0;
            let r = dev.install(&mut up, &a.package, a.chunk, &mut |done, total| {
                let pct = u64::from(done) * 100 / u64::from(total.max(1));
                if !cli.json && pct >= shown + 10 {
                    shown = pct;
                    eprintln!("install: {pct}% ({done}/{total} bytes)");
                }
            })?;
            if r.resumed_from > 0 {
                say(
                    cli,
                    &format!(
                        "resumed at byte {} of {} (power was lost during the last attempt)",
                        r.resumed_from, r.payload_len
                    ),
                );
            }
            say(
                cli,
                "installed: the new image is verified and pending; it starts at the next boot",
            );
            Ok(to_json(&r))
        }
        Cmd::Status => {
            let s = dev.status(&mut up)?;
            say(
                cli,
                &format!(
                    "{} {} (uid {}): {}; boots slot {} running {name} {}",
                    s.product,
                    s.hardware,
                    s.uid,
                    s.phase,
                    s.boot_slot,
                    s.running.as_ref().map_or("(no image)", |r| &r.version)
                ),
            );
            Ok(to_json(&s))
        }
        Cmd::Boot => {
            let slot = up.boot().map_err(DeviceError::from)?;
            let s = dev.status(&mut up)?;
            if let Some(bad) = s.fell_back_from {
                say(
                    cli,
                    &format!(
                        "the image in slot {bad} is damaged (its bytes do not match its SHA-256); fell back to slot {slot}"
                    ),
                );
            }
            say(
                cli,
                &format!(
                    "booted slot {slot}: {name} {} ({})",
                    s.running.as_ref().map_or("(no image)", |r| &r.version),
                    s.phase
                ),
            );
            Ok(to_json(&s))
        }
        Cmd::Confirm => {
            up.confirm().map_err(DeviceError::from)?;
            say(cli, "confirmed: this image keeps booting");
            Ok(to_json(&dev.status(&mut up)?))
        }
        Cmd::Revert => {
            up.request_revert().map_err(DeviceError::from)?;
            say(
                cli,
                "revert requested: the next boot restores the previous image",
            );
            Ok(to_json(&dev.status(&mut up)?))
        }
        Cmd::Abort => {
            up.abort().map_err(DeviceError::from)?;
            say(cli, "update abandoned; the running image is unchanged");
            Ok(to_json(&dev.status(&mut up)?))
        }
        Cmd::ReadImage(a) => read_image(cli, &dev, &mut up, a),
    }
}

fn read_image(
    cli: &Cli,
    dev: &VirtualDevice,
    up: &mut bluesphere_device::linux::Up<'_>,
    a: &ReadImageArgs,
) -> Result<Value, Failure> {
    let slot = a.slot.unwrap_or_else(|| up.boot_slot());
    let bytes = dev.read_image(up, slot)?;
    // The device's own files are never an output.
    bluesphere_api::files::check_output(
        &a.out,
        &[
            &dev.dir().join("flash.bin"),
            &dev.dir().join("device.json"),
            &dev.dir().join("activation.bin"),
            &dev.dir().join("lock"),
        ],
    )
    .and_then(|()| bluesphere_api::files::write_atomic(&a.out, &bytes, 0o644))
    .map_err(|e| Failure {
        kind: e.kind.as_str(),
        message: e.message,
    })?;
    say(
        cli,
        &format!(
            "wrote {} bytes of slot {slot} to {}",
            bytes.len(),
            a.out.display()
        ),
    );
    let version = up
        .image_info(slot)
        .ok()
        .flatten()
        .map(|i| i.version().to_string());
    Ok(json!({"slot": slot, "size": bytes.len(), "version": version}))
}

fn init(cli: &Cli, a: &InitArgs, ws: &mut Ws) -> Result<Value, Failure> {
    let spec = DeviceSpec {
        product: a.product.clone(),
        hardware: a.hardware.clone(),
        keys: a.keys.clone(),
        activation_keys: a.activation_keys.clone(),
        image: a.image.clone(),
        version: a.version.clone(),
        counter: a.counter,
        uid: a.uid.clone(),
        mode: match a.mode {
            Mode::Swap => PortMode::Swap,
            Mode::Ab => PortMode::Ab,
        },
        slot_size: a.slot_size,
        component: a.component.clone(),
        erased: a.erased,
    };
    let dev = VirtualDevice::create(&cli.flash, &spec)?;
    let mut up = dev.updater(ws)?;
    let s = dev.status(&mut up)?;
    say(
        cli,
        &format!(
            "device {} {} (uid {}) created in {}: {} {}, {:?} slots of {} bytes",
            a.product,
            a.hardware,
            s.uid,
            cli.flash.display(),
            a.component,
            a.version,
            a.mode,
            dev.file.slot_size
        ),
    );
    Ok(to_json(&s))
}

fn parse_member(s: &str) -> Result<MemberFile, Failure> {
    let bad = || Failure {
        kind: "usage",
        message: format!("--member {s:?}: expected local:NAME=DIR or module:NAME=DIR"),
    };
    let (kind, rest) = s.split_once(':').ok_or_else(bad)?;
    let (name, dir) = rest.split_once('=').ok_or_else(bad)?;
    let module = match kind {
        "local" => false,
        "module" => true,
        _ => return Err(bad()),
    };
    if name.is_empty() || dir.is_empty() {
        return Err(bad());
    }
    Ok(MemberFile {
        name: name.into(),
        dir: dir.into(),
        module,
    })
}

fn machine(cli: &Cli, cmd: &MachineCmd, delay: Option<Duration>) -> Result<Value, Failure> {
    match cmd {
        MachineCmd::Init(a) => {
            let members = a
                .members
                .iter()
                .map(|m| parse_member(m))
                .collect::<Result<Vec<_>, _>>()?;
            let vm = VirtualMachine::create(&cli.flash, &members)?;
            let s = vm.status()?;
            say(
                cli,
                &format!(
                    "machine created in {}: {}",
                    cli.flash.display(),
                    members
                        .iter()
                        .map(|m| format!(
                            "{} ({})",
                            m.name,
                            if m.module { "module" } else { "local" }
                        ))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
            Ok(to_json(&s))
        }
        MachineCmd::Status => {
            let vm = VirtualMachine::open(&cli.flash, delay)?;
            let s = vm.status()?;
            say(cli, &format!("machine {}", s.phase));
            for m in &s.members {
                say(
                    cli,
                    &format!(
                        "  {:<10} {:<7} {:<10} running {}",
                        m.name,
                        if m.module { "module" } else { "local" },
                        m.device.phase,
                        m.device
                            .running
                            .as_ref()
                            .map_or("(no image)", |r| &r.version)
                    ),
                );
            }
            Ok(to_json(&s))
        }
        MachineCmd::Serve(a) => {
            let vm = VirtualMachine::open(&cli.flash, delay)?;
            let (port, _cable) = port_of(a)?;
            eprintln!(
                "bluesphere-device: serving machine {} ({} members) on {port}",
                cli.flash.display(),
                vm.file.members.len(),
            );
            let mut open =
                || UartPort::open(&port, a.baud).map_err(|e| std::io::Error::other(e.to_string()));
            let parent = std::os::unix::process::parent_id();
            let mut keep_going =
                || !a.exit_with_parent || std::os::unix::process::parent_id() == parent;
            vm.serve(
                &mut open,
                a.auto_confirm,
                &|line| eprintln!("bluesphere-device: {line}"),
                &mut keep_going,
            )?;
            Ok(Value::Null)
        }
    }
}

/// Serve the device over the links `open` makes, logging to standard error.
fn serve_on<L: embedded_io::Read + embedded_io::Write>(
    dev: &VirtualDevice,
    ws: &mut Ws,
    open: &mut dyn FnMut() -> Result<L, std::io::Error>,
    auto_confirm: bool,
    keep_going: &mut dyn FnMut() -> bool,
) -> Result<Value, Failure>
where
    L::Error: std::fmt::Debug,
{
    dev.serve(
        ws,
        open,
        auto_confirm,
        &mut |line| eprintln!("bluesphere-device: {line}"),
        keep_going,
    )?;
    Ok(Value::Null)
}

/// The port to serve on, and the cable made for `--port auto` (kept while serving).
fn port_of(a: &ServeArgs) -> Result<(String, Option<PtyCable>), Failure> {
    let Some(port) = a.port.as_deref() else {
        return Err(Failure {
            kind: "usage",
            message: "a whole machine serves on a serial port: give --port PATH or --port auto"
                .into(),
        });
    };
    if port != "auto" {
        return Ok((port.to_string(), None));
    }
    let cable = PtyCable::open().map_err(|e| Failure {
        kind: "io",
        message: format!("cannot make a pseudo-terminal cable: {e}"),
    })?;
    println!("{}", cable.host);
    use std::io::Write;
    let _ = std::io::stdout().flush();
    Ok((cable.device.clone(), Some(cable)))
}
