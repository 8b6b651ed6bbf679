//! `bluesphere`: the BlueSphere command-line tool. A thin layer over `bluesphere-core`.

mod codes;
mod device;
mod output;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use bluesphere_api::package::{self as jobs, InputFormat};
use bluesphere_api::{Cancel, Error, ErrorKind, Purpose, Secrets};
use clap::{Parser, Subcommand, ValueEnum};
use output::Out;
use serde::Serialize;

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  I/O or internal error
  2  usage error (also: an output that would replace an input)
  3  invalid input (corrupt or truncated package, not an image, bad Intel HEX)
  4  authentication failed (bad signature, unknown key)
  5  mismatch (wrong base image, wrong hardware or product, missing component)
  6  key problem (unreadable key file, wrong or missing passphrase)
  7  device or link problem (no such port, permission, busy, no answer, device error)
  130 cancelled (Ctrl-C or SIGTERM: the job stops with nothing written; a second one ends at once)";

#[derive(Parser, Debug)]
#[command(name = "bluesphere", version, about = "BlueSphere firmware-update toolchain", after_help = EXIT_CODES)]
struct Cli {
    /// Print one JSON object on stdout instead of text (errors too, as {"error": {kind, message}}).
    #[arg(long, global = true)]
    json: bool,
    /// No progress bars.
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Profile {
    /// Smallest packages (decoder state 61 KiB of RAM).
    Best,
    /// Small-RAM MCUs (decoder state 7.3 KiB of RAM).
    Small,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum InFormat {
    /// Decide by content.
    Auto,
    /// Raw binary.
    Bin,
    /// Intel HEX.
    Hex,
    /// ELF executable (its loadable segments).
    Elf,
}

/// `rehearse`.
#[derive(clap::Args, Debug)]
pub(crate) struct RehearseArgs {
    /// The package.
    package: PathBuf,
    /// The image the device runs before the update.
    #[arg(long)]
    old: PathBuf,
    /// Public key the simulated device trusts (the signer's; a private key file also works).
    #[arg(long = "pub")]
    public: PathBuf,
    /// Power cuts.
    #[arg(long, default_value_t = 100)]
    cuts: u32,
    /// Sector size of the target's flash in bytes.
    #[arg(long, default_value_t = 4096)]
    sector: u32,
    /// Slot mode of the target.
    #[arg(long, value_enum, default_value = "swap")]
    mode: SlotMode,
    /// Tear the cut operation (a partly written word or erased sector) instead of skipping it.
    #[arg(long)]
    tear: bool,
    /// Seed of the cut points (the same seed cuts at the same places).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[command(flatten)]
    image: ImageArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum SlotMode {
    /// One execution slot; updates swapped in.
    Swap,
    /// Two executable banks.
    Ab,
}

/// How image files are read.
#[derive(clap::Args, Debug, Clone, Copy)]
pub(crate) struct ImageArgs {
    /// Input format of the image files.
    #[arg(long, value_enum, default_value = "auto")]
    format: InFormat,
    /// Keep only these addresses of a HEX or ELF file: START..END or START+LENGTH
    /// (e.g. 0x08000000..0x08100000), when its segments lie far apart.
    #[arg(long, value_name = "START..END")]
    range: Option<jobs::AddressRange>,
}

#[derive(clap::Args, Debug)]
pub(crate) struct PassArgs {
    /// Read the key passphrase from this environment variable.
    #[arg(long, value_name = "VAR")]
    passphrase_env: Option<String>,
    /// Read the key passphrase from the first line of this file.
    #[arg(long, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Generate a P-256 signing key (PKCS#8 PEM) and its public key (SPKI PEM).
    Keygen(KeygenArgs),
    /// Make a signed package: a delta with --old, else a full image.
    Pack(PackArgs),
    /// Show what a package contains.
    Inspect(InspectArgs),
    /// Check a package's signature and hashes (and the base image with --old).
    Verify(VerifyArgs),
    /// Apply a package to the installed image and write the new image.
    Apply(ApplyArgs),
    /// Before release: run a package through the device's own updater on simulated flash,
    /// cutting power at random flash operations, and report what survived.
    Rehearse(RehearseArgs),
    /// Every push and code batch recorded on this machine (newest first).
    History(HistoryArgs),
    /// Activation codes: generate, verify, production orders, audit log.
    #[command(subcommand)]
    Codes(codes::CodesCmd),
    /// Production-line station: activate every device that appears on the ports.
    Station(codes::StationArgs),
    /// List serial ports (USB vendor and product ids, serial numbers).
    Ports,
    /// Scan for devices that take updates over Bluetooth LE (name, signal, address).
    Scan(ScanArgs),
    /// Ask a device (serial port or Bluetooth LE) who it is and what it runs.
    Info(InfoArgs),
    /// Push a package to a device over a serial port or Bluetooth LE; resumes after
    /// disconnects and resets.
    Push(PushArgs),
}

/// `scan`.
#[derive(clap::Args, Debug)]
pub struct ScanArgs {
    /// How long to listen, seconds.
    #[arg(long, default_value_t = 5.0)]
    timeout: f64,
}

/// `history`.
#[derive(clap::Args, Debug)]
pub struct HistoryArgs {
    /// Only entries with this text in any column.
    #[arg(long, default_value = "")]
    filter: String,
    /// At most this many (0: all).
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// Also write them as CSV to this file.
    #[arg(short, long)]
    out: Option<PathBuf>,
}

/// `keygen`.
#[derive(clap::Args, Debug)]
struct KeygenArgs {
    /// Private key file to write.
    #[arg(short, long)]
    out: PathBuf,
    /// Public key file (default: KEY with `.pub.pem`).
    #[arg(long = "pub")]
    public: Option<PathBuf>,
    /// Encrypt the private key with a passphrase (asked on the terminal unless given).
    #[arg(long)]
    encrypt: bool,
    #[command(flatten)]
    pass: PassArgs,
    /// Overwrite existing key files.
    #[arg(long)]
    force: bool,
}

/// `pack`.
#[derive(clap::Args, Debug)]
struct PackArgs {
    /// A release manifest (TOML): one package for several components, each with its own
    /// images, versions and profile (`--key` and `-o` override the manifest's).
    #[arg(long, conflicts_with_all = ["new", "old", "component", "load_address", "depends", "block_kib"])]
    manifest: Option<PathBuf>,
    /// New firmware image (BIN, Intel HEX or ELF).
    #[arg(long, required_unless_present = "manifest")]
    new: Option<PathBuf>,
    /// Installed firmware image the delta applies to.
    #[arg(long)]
    old: Option<PathBuf>,
    /// Signing key (PEM).
    #[arg(long, required_unless_present = "manifest")]
    key: Option<PathBuf>,
    #[command(flatten)]
    pass: PassArgs,
    /// Package file to write.
    #[arg(short, long, required_unless_present = "manifest")]
    out: Option<PathBuf>,
    /// Product id.
    #[arg(long, default_value = "generic")]
    product: String,
    /// Hardware id (board / revision).
    #[arg(long, default_value = "any")]
    hardware: String,
    /// Component name.
    #[arg(long, default_value = "main")]
    component: String,
    /// Version of the old image (deltas).
    #[arg(long, default_value = "0.0.0")]
    from_version: String,
    /// Version of the new image.
    #[arg(long = "version", default_value = "0.0.1")]
    to_version: String,
    /// Anti-rollback security counter.
    #[arg(long, default_value_t = 0)]
    counter: u32,
    /// Load address (default: the HEX file's base address, else 0). Accepts 0x...
    #[arg(long, value_parser = parse_u64)]
    load_address: Option<u64>,
    /// Dependency `NAME>=VERSION` (repeatable).
    #[arg(long = "depends", value_name = "NAME>=VERSION")]
    depends: Vec<String>,
    /// Coding profile.
    #[arg(long, value_enum, default_value = "best")]
    profile: Profile,
    /// Resume granularity: target KiB per independently decodable block (a power of two,
    /// 4..=16384). A device that loses power resumes at the last block boundary; smaller
    /// blocks resume closer but cost some size. Default: the profile's (best 1024, small 64).
    #[arg(long, value_name = "KIB")]
    block_kib: Option<u32>,
    #[command(flatten)]
    image: ImageArgs,
}

/// `inspect`.
#[derive(clap::Args, Debug)]
struct InspectArgs {
    /// Package file.
    package: PathBuf,
    /// Check the signature with this public key (repeatable); without it the signer is
    /// only what the package claims.
    #[arg(long = "pub")]
    public: Vec<PathBuf>,
}

/// `verify`.
#[derive(clap::Args, Debug)]
struct VerifyArgs {
    /// Package file.
    package: PathBuf,
    /// Public key (SPKI PEM; a private key file also works). Repeat to accept several.
    #[arg(long = "pub", required = true)]
    public: Vec<PathBuf>,
    /// Installed image: check it is the base the delta expects.
    #[arg(long)]
    old: Option<PathBuf>,
    /// Component to check the base of.
    #[arg(long)]
    component: Option<String>,
    /// Require this hardware id.
    #[arg(long)]
    hardware: Option<String>,
    /// Require this product id.
    #[arg(long)]
    product: Option<String>,
    #[command(flatten)]
    image: ImageArgs,
}

/// `apply`.
#[derive(clap::Args, Debug)]
struct ApplyArgs {
    /// Package file.
    package: PathBuf,
    /// Installed image (needed for deltas).
    #[arg(long)]
    old: Option<PathBuf>,
    /// Output image file (BIN); with --all, the folder for `<component>.bin` files.
    #[arg(short, long)]
    out: PathBuf,
    /// Verify the signature with this public key first (repeatable).
    #[arg(long = "pub", required_unless_present = "unverified")]
    public: Vec<PathBuf>,
    /// Write the image without checking its signature (when you have no public key).
    #[arg(long, conflicts_with = "public")]
    unverified: bool,
    /// Component to apply (needed when the package has several).
    #[arg(long, conflicts_with = "all")]
    component: Option<String>,
    /// Every component, each to `-o DIR/<component>.bin` (all or none is written).
    #[arg(long, conflicts_with_all = ["old", "component"])]
    all: bool,
    /// With --all: the installed image of a delta component (repeatable).
    #[arg(long = "old-of", value_name = "COMPONENT=FILE", requires = "all")]
    old_of: Vec<String>,
    /// Require this hardware id.
    #[arg(long)]
    hardware: Option<String>,
    #[command(flatten)]
    image: ImageArgs,
}

/// `info`.
#[derive(clap::Args, Debug)]
struct InfoArgs {
    #[command(flatten)]
    at: Where,
}

/// Where the device is: a serial port or a Bluetooth LE device.
#[derive(clap::Args, Debug)]
#[group(required = true, multiple = false, id = "where")]
struct Where {
    /// Serial port (e.g. /dev/ttyUSB0; usb:SERIALNUMBER for a USB adapter by its serial number).
    #[arg(long, group = "where")]
    port: Option<String>,
    /// Bluetooth LE device: its address from `bluesphere scan` (or its advertised name).
    /// The adapter is the first one, or the one named by BLUESPHERE_BLE_ADAPTER (hci1).
    #[arg(long, value_name = "ID", group = "where")]
    ble: Option<String>,
    /// Serial baud rate.
    #[arg(long, default_value_t = 115_200)]
    baud: u32,
}

impl Where {
    fn target(&self) -> bluesphere_api::device::Target {
        use bluesphere_host::Address;
        let address = match (&self.port, &self.ble) {
            (_, Some(id)) => Address::Ble(id.clone()),
            (Some(p), None) => Address::parse(p),
            (None, None) => Address::Serial(String::new()),
        };
        bluesphere_api::device::Target {
            address,
            baud: self.baud,
        }
    }
}

/// `push`.
#[derive(clap::Args, Debug)]
struct PushArgs {
    /// Package file.
    package: PathBuf,
    #[command(flatten)]
    at: Where,
    /// Leave the update pending (do not restart the device).
    #[arg(long)]
    no_reboot: bool,
    /// Confirm the new image after the restart (otherwise it must confirm itself).
    #[arg(long)]
    confirm: bool,
    /// Seconds to keep trying to reopen a lost link (a Bluetooth LE device is scanned for again).
    #[arg(long, default_value_t = 30)]
    reconnect_for: u64,
}

fn parse_u64(s: &str) -> Result<u64, String> {
    let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => s.parse(),
    };
    r.map_err(|e| format!("not a number: {e}"))
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => std::process::exit(usage_error(e)),
    };
    let out = Out::new(cli.json, cli.quiet);
    let res = run(&cli, &out);
    std::process::exit(out.finish(res));
}

/// Argument errors honour `--json` too (help and version print as usual).
fn usage_error(e: clap::Error) -> i32 {
    use clap::error::ErrorKind as K;
    if matches!(e.kind(), K::DisplayHelp | K::DisplayVersion)
        || !std::env::args().any(|a| a == "--json")
    {
        e.exit();
    }
    let message = e.render().to_string();
    let message = message.trim().trim_start_matches("error: ");
    println!(
        "{}",
        serde_json::json!({"error": {"kind": "usage", "message": message, "hint": "see --help"}})
    );
    eprintln!("error: {message}");
    2
}

impl From<InFormat> for InputFormat {
    fn from(f: InFormat) -> Self {
        match f {
            InFormat::Auto => InputFormat::Auto,
            InFormat::Bin => InputFormat::Bin,
            InFormat::Hex => InputFormat::Hex,
            InFormat::Elf => InputFormat::Elf,
        }
    }
}

impl From<Profile> for jobs::Profile {
    fn from(p: Profile) -> Self {
        match p {
            Profile::Best => jobs::Profile::Best,
            Profile::Small => jobs::Profile::Small,
        }
    }
}

/// Passphrases from `--passphrase-env`, `--passphrase-file`, or the terminal.
pub(crate) struct CliSecrets<'a>(pub &'a PassArgs);

impl CliSecrets<'_> {
    fn given(&self) -> bool {
        self.0.passphrase_env.is_some() || self.0.passphrase_file.is_some()
    }
}

impl Secrets for CliSecrets<'_> {
    fn passphrase(&self, key: &Path, purpose: Purpose) -> Result<Option<String>, Error> {
        let key_err = |m: String| Error::new(ErrorKind::Key, m);
        if let Some(var) = &self.0.passphrase_env {
            return std::env::var(var)
                .map(Some)
                .map_err(|_| key_err(format!("environment variable {var} is not set")));
        }
        if let Some(f) = &self.0.passphrase_file {
            let s = std::fs::read_to_string(f).map_err(|e| {
                key_err(format!("cannot read passphrase file {}: {e}", f.display()))
            })?;
            return Ok(Some(s.lines().next().unwrap_or("").to_string()));
        }
        if !std::io::stdin().is_terminal() {
            return Err(key_err(format!(
                "{}: a passphrase is needed",
                key.display()
            )));
        }
        let io = |e: std::io::Error| Error::new(ErrorKind::Io, e.to_string());
        let p = rpassword::prompt_password("Key passphrase: ").map_err(io)?;
        if purpose == Purpose::Protect {
            let again = rpassword::prompt_password("Again: ").map_err(io)?;
            if again != p {
                return Err(key_err("the passphrases differ".into()));
            }
        }
        Ok(Some(p))
    }
}

pub(crate) fn to_json<T: Serialize>(v: &T) -> Result<serde_json::Value, Error> {
    serde_json::to_value(v).map_err(Error::internal)
}

fn run(cli: &Cli, out: &Out) -> Result<serde_json::Value, Error> {
    let cancel = Cancel::new();
    // Ctrl-C (or SIGTERM) asks the running job to stop: it ends as `cancelled` (exit 130)
    // with nothing written and no temporary file left; a second one ends the process at once.
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register_conditional_shutdown(sig, 130, cancel.shared());
        let _ = signal_hook::flag::register(sig, cancel.shared());
    }
    match &cli.cmd {
        Cmd::Keygen(KeygenArgs {
            out: path,
            public,
            encrypt,
            pass,
            force,
        }) => {
            let secrets = CliSecrets(pass);
            let r = jobs::keygen(
                &jobs::KeygenRequest {
                    out: path.clone(),
                    public: public.clone(),
                    encrypt: *encrypt || secrets.given(),
                    force: *force,
                },
                &secrets,
            )?;
            out.text(&format!(
                "wrote private key {}{} and public key {} (key id {})",
                r.private.display(),
                if r.encrypted { " (encrypted)" } else { "" },
                r.public.display(),
                r.key_id
            ));
            to_json(&r)
        }
        Cmd::Pack(PackArgs {
            manifest: Some(manifest),
            key,
            pass,
            out: dest,
            ..
        }) => {
            let req = bluesphere_api::release::ReleaseRequest {
                manifest: manifest.clone(),
                key: key.clone(),
                out: dest.clone(),
            };
            let bar = out.bar("packing");
            let r = bluesphere_api::release::pack_release(&req, &CliSecrets(pass), &bar, &cancel);
            bar.done();
            let r = r?;
            let mut text = format!(
                "wrote {} ({} bytes, {} components)",
                r.out.display(),
                r.package_size,
                r.components.len()
            );
            for c in &r.components {
                text +=
                    &format!(
                    "\n  {} {}{} ({}, {} profile): payload {} bytes = {:.2}% of the {}-byte image",
                    c.name,
                    c.from_version.as_deref().map(|f| format!("{f} -> ")).unwrap_or_default(),
                    c.to_version,
                    c.kind,
                    match c.profile {
                        jobs::Profile::Best => "best",
                        jobs::Profile::Small => "small",
                    },
                    c.payload_size,
                    c.payload_size as f64 * 100.0 / (c.target_size.max(1)) as f64,
                    c.target_size
                );
            }
            out.text(&text);
            to_json(&r)
        }
        Cmd::Pack(PackArgs {
            manifest: None,
            new,
            old,
            key,
            pass,
            out: dest,
            product,
            hardware,
            component,
            from_version,
            to_version,
            counter,
            load_address,
            depends,
            profile,
            block_kib,
            image,
        }) => {
            let (Some(new), Some(key), Some(dest)) = (new, key, dest) else {
                return Err(Error::usage(
                    "pack needs --new, --key and -o (or --manifest)",
                ));
            };
            let req = jobs::PackRequest {
                new: new.clone(),
                old: old.clone(),
                key: key.clone(),
                out: dest.clone(),
                product: product.clone(),
                hardware: hardware.clone(),
                component: component.clone(),
                from_version: from_version.clone(),
                to_version: to_version.clone(),
                counter: *counter,
                load_address: *load_address,
                depends: depends.clone(),
                profile: (*profile).into(),
                block_kib: *block_kib,
                format: image.format.into(),
                range: image.range,
            };
            let bar = out.bar("packing");
            let r = jobs::pack(&req, &CliSecrets(pass), &bar, &cancel);
            bar.done();
            let r = r?;
            out.text(&format!(
                "wrote {} ({} bytes; {} payload {} bytes = {:.2}% of the {}-byte image)",
                r.out.display(),
                r.package_size,
                r.kind,
                r.payload_size,
                r.payload_size as f64 * 100.0 / (r.target_size.max(1)) as f64,
                r.target_size
            ));
            to_json(&r)
        }
        Cmd::Inspect(InspectArgs { package, public }) => {
            let info = jobs::inspect(&jobs::InspectRequest {
                package: package.clone(),
                public: public.clone(),
            })?;
            out.text(&output::describe(&info));
            to_json(&info)
        }
        Cmd::Verify(VerifyArgs {
            package,
            public,
            old,
            component,
            hardware,
            product,
            image,
        }) => {
            let r = jobs::verify(&jobs::VerifyRequest {
                package: package.clone(),
                public: public.clone(),
                old: old.clone(),
                component: component.clone(),
                hardware: hardware.clone(),
                product: product.clone(),
                format: image.format.into(),
                range: image.range,
            })?;
            out.text(&format!(
                "OK: signature valid (key {}), {} component(s), payload checksums match{}",
                r.key_id,
                r.components,
                if r.base.is_some() {
                    ", base image matches"
                } else {
                    ""
                }
            ));
            to_json(&r)
        }
        Cmd::Apply(ApplyArgs {
            package,
            out: dest,
            public,
            hardware,
            image,
            unverified,
            all: true,
            old_of,
            ..
        }) => {
            let old = old_of
                .iter()
                .map(|a| {
                    a.split_once('=')
                        .map(|(n, f)| (n.to_string(), PathBuf::from(f)))
                        .ok_or_else(|| {
                            Error::usage(format!(
                                "--old-of {a:?}: write COMPONENT=FILE, e.g. --old-of main=fw-1.0.0.bin"
                            ))
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let bar = out.bar("apply");
            let r = bluesphere_api::release::apply_all(
                &bluesphere_api::release::ApplyAllRequest {
                    package: package.clone(),
                    old,
                    out_dir: dest.clone(),
                    public: public.clone(),
                    hardware: hardware.clone(),
                    format: image.format.into(),
                    unverified: *unverified,
                },
                &bar,
                &cancel,
            );
            bar.done();
            let r = r?;
            let lines: Vec<String> = r
                .images
                .iter()
                .map(|i| {
                    format!(
                        "wrote {} ({} {}, {} bytes, SHA-256 {})",
                        i.out.display(),
                        i.component,
                        i.version,
                        i.size,
                        i.sha256
                    )
                })
                .collect();
            out.text(&lines.join("\n"));
            to_json(&r)
        }
        Cmd::Apply(ApplyArgs {
            package,
            old,
            out: dest,
            public,
            component,
            hardware,
            image,
            unverified,
            ..
        }) => {
            let bar = out.bar("apply");
            let r = jobs::apply(
                &jobs::ApplyRequest {
                    package: package.clone(),
                    old: old.clone(),
                    out: dest.clone(),
                    public: public.clone(),
                    component: component.clone(),
                    hardware: hardware.clone(),
                    format: image.format.into(),
                    range: image.range,
                    unverified: *unverified,
                },
                &bar,
                &cancel,
            );
            bar.done();
            let r = r?;
            out.text(&format!(
                "wrote {} ({} bytes, version {}, SHA-256 {})",
                r.out.display(),
                r.size,
                r.version,
                r.sha256
            ));
            to_json(&r)
        }
        Cmd::Rehearse(a) => {
            let bar = out.bar("rehearse");
            let r = bluesphere_api::rehearse::rehearse(
                &bluesphere_api::rehearse::RehearseRequest {
                    package: a.package.clone(),
                    old: a.old.clone(),
                    public: a.public.clone(),
                    format: a.image.format.into(),
                    range: a.image.range,
                    cuts: a.cuts,
                    sector: a.sector,
                    ab: matches!(a.mode, SlotMode::Ab),
                    tear: a.tear,
                    seed: a.seed,
                },
                &bar,
                &cancel,
            );
            bar.done();
            let r = r?;
            out.text(&format!(
                "survived {} of {} power cuts ({} mode, {}-byte sectors, {} flash operations per update): old image kept {}, new image installed {}",
                r.survived, r.cuts, r.mode, r.sector, r.flash_ops, r.old_kept, r.new_installed
            ));
            for f in &r.failures {
                out.text(&format!(
                    "  FAILED: cut at flash operation {}: {}",
                    f.op, f.what
                ));
            }
            if !r.ok {
                return Err(Error::new(
                    ErrorKind::RehearsalFailed,
                    format!(
                        "{} of {} power cuts were not survived (first: cut at flash operation {}: {})",
                        r.failures.len(),
                        r.cuts,
                        r.failures[0].op,
                        r.failures[0].what
                    ),
                )
                .hint("this is a bug in the device updater: please report it with the seed and the cut point"));
            }
            to_json(&r)
        }
        Cmd::History(HistoryArgs {
            filter,
            limit,
            out: dest,
        }) => {
            let r = bluesphere_api::history::history(&bluesphere_api::history::HistoryRequest {
                path: None,
                filter: filter.clone(),
                limit: *limit,
                export: dest.clone(),
            })?;
            for e in &r.entries {
                out.text(&format!(
                    "{}  {:<5} {:<16} {}  {}{}  {}  {}",
                    e.time,
                    e.job,
                    e.target,
                    e.subject,
                    if e.from_version.is_empty() && e.to_version.is_empty() {
                        String::new()
                    } else {
                        format!("{} -> {}  ", e.from_version, e.to_version)
                    },
                    e.result,
                    e.detail,
                    if e.job == "codes" {
                        format!("{} codes", e.count)
                    } else {
                        format!(
                            "{} bytes, {} resumes, {:.1} s",
                            e.bytes, e.resumes, e.seconds
                        )
                    }
                ));
            }
            if r.entries.is_empty() {
                out.text(&format!("no history yet in {}", r.path.display()));
            }
            to_json(&r)
        }
        Cmd::Codes(c) => codes::run(c, out, &cancel),
        Cmd::Station(a) => codes::station(a, out, &cancel),
        Cmd::Ports => device::ports(out),
        Cmd::Scan(a) => device::scan(out, a.timeout),
        Cmd::Info(InfoArgs { at }) => device::info(out, &at.target()),
        Cmd::Push(PushArgs {
            package,
            at,
            no_reboot,
            confirm,
            reconnect_for,
        }) => device::push(
            out,
            package,
            at.target(),
            !*no_reboot,
            *confirm,
            *reconnect_for,
            &cancel,
        ),
    }
}
