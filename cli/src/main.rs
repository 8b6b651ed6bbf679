//! `bluesphere`: the BlueSphere command-line tool. A thin layer over `bluesphere-core`.

mod codes;
mod device;
mod output;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::Context;
use bluesphere_core::delta::Params;
use bluesphere_core::image::{self, ImageFormat};
use bluesphere_core::keys;
use bluesphere_core::ops::{self, Checks};
use bluesphere_core::package::build::{build_package, ComponentSpec, PackageSpec};
use bluesphere_core::package::key_id;
use clap::{Parser, Subcommand, ValueEnum};
use output::{Failure, Out};
use serde_json::json;

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  I/O or internal error
  2  usage error
  3  invalid input (corrupt or truncated package, not an image, bad Intel HEX)
  4  authentication failed (bad signature, unknown key)
  5  mismatch (wrong base image, wrong hardware or product, missing component)
  6  key problem (unreadable key file, wrong or missing passphrase)
  7  device or link problem (no such port, permission, busy, no answer, device error)";

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
    Keygen {
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
    },
    /// Make a signed package: a delta with --old, else a full image.
    Pack {
        /// New firmware image (BIN or Intel HEX).
        #[arg(long)]
        new: PathBuf,
        /// Installed firmware image the delta applies to.
        #[arg(long)]
        old: Option<PathBuf>,
        /// Signing key (PEM).
        #[arg(long)]
        key: PathBuf,
        #[command(flatten)]
        pass: PassArgs,
        /// Package file to write.
        #[arg(short, long)]
        out: PathBuf,
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
        /// Input format.
        #[arg(long, value_enum, default_value = "auto")]
        format: InFormat,
    },
    /// Show what a package contains.
    Inspect {
        /// Package file.
        package: PathBuf,
    },
    /// Check a package's signature and hashes (and the base image with --old).
    Verify {
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
        /// Input format of --old.
        #[arg(long, value_enum, default_value = "auto")]
        format: InFormat,
    },
    /// Apply a package to the installed image and write the new image.
    Apply {
        /// Package file.
        package: PathBuf,
        /// Installed image (needed for deltas).
        #[arg(long)]
        old: Option<PathBuf>,
        /// Output image file (BIN).
        #[arg(short, long)]
        out: PathBuf,
        /// Verify the signature with this public key first (repeatable).
        #[arg(long = "pub")]
        public: Vec<PathBuf>,
        /// Component to apply (needed when the package has several).
        #[arg(long)]
        component: Option<String>,
        /// Require this hardware id.
        #[arg(long)]
        hardware: Option<String>,
        /// Input format of --old.
        #[arg(long, value_enum, default_value = "auto")]
        format: InFormat,
    },
    /// Activation codes: generate, verify, production orders, audit log.
    #[command(subcommand)]
    Codes(codes::CodesCmd),
    /// Production-line station: activate every device that appears on the ports.
    Station(codes::StationArgs),
    /// List serial ports (USB vendor and product ids, serial numbers).
    Ports,
    /// Ask the device on a serial port who it is and what it runs.
    Info {
        /// Serial port (e.g. /dev/ttyUSB0).
        #[arg(long)]
        port: String,
        /// Baud rate.
        #[arg(long, default_value_t = 115_200)]
        baud: u32,
    },
    /// Push a package to a device over a serial port; resumes after disconnects and resets.
    Push {
        /// Package file.
        package: PathBuf,
        /// Serial port (e.g. /dev/ttyUSB0).
        #[arg(long)]
        port: String,
        /// Baud rate.
        #[arg(long, default_value_t = 115_200)]
        baud: u32,
        /// Leave the update pending (do not restart the device).
        #[arg(long)]
        no_reboot: bool,
        /// Confirm the new image after the restart (otherwise it must confirm itself).
        #[arg(long)]
        confirm: bool,
        /// Seconds to keep trying to reopen a lost port.
        #[arg(long, default_value_t = 30)]
        reconnect_for: u64,
    },
}

fn parse_u64(s: &str) -> Result<u64, String> {
    let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => s.parse(),
    };
    r.map_err(|e| format!("not a number: {e}"))
}

fn main() {
    let cli = Cli::parse();
    let out = Out::new(cli.json, cli.quiet);
    let res = run(&cli, &out);
    std::process::exit(out.finish(res));
}

fn run(cli: &Cli, out: &Out) -> Result<serde_json::Value, Failure> {
    match &cli.cmd {
        Cmd::Keygen {
            out: path,
            public,
            encrypt,
            pass,
            force,
        } => keygen(out, path, public.as_deref(), *encrypt, pass, *force),
        Cmd::Pack { .. } => pack(&cli.cmd, out),
        Cmd::Inspect { package } => {
            let bytes = read(package)?;
            let info = ops::inspect(&bytes).map_err(Failure::core)?;
            out.text(&output::describe(&info));
            Ok(serde_json::to_value(info).map_err(Failure::internal)?)
        }
        Cmd::Verify {
            package,
            public,
            old,
            component,
            hardware,
            product,
            format,
        } => {
            let bytes = read(package)?;
            let pubs = load_publics(public)?;
            let checks = Checks {
                keys: Some(&pubs),
                hardware_id: hardware.as_deref(),
                product_id: product.as_deref(),
            };
            let p = ops::check(&bytes, &checks).map_err(Failure::core)?;
            let mut base = serde_json::Value::Null;
            if let Some(old) = old {
                let img = load_image(old, *format)?;
                let c = ops::select(&p, component.as_deref()).map_err(Failure::core)?;
                ops::check_base(&c, Some(&img.data)).map_err(Failure::core)?;
                base =
                    json!({"component": c.name, "from_version": c.from_version, "matches": true});
            }
            out.text(&format!(
                "OK: signature valid (key {}), {} component(s), payload checksums match{}",
                hex::encode(p.header.key_id),
                p.manifest.component_count,
                if old.is_some() {
                    ", base image matches"
                } else {
                    ""
                }
            ));
            Ok(json!({"ok": true, "key_id": hex::encode(p.header.key_id),
                      "product_id": p.manifest.product_id, "hardware_id": p.manifest.hardware_id,
                      "components": p.manifest.component_count, "base": base}))
        }
        Cmd::Codes(c) => codes::run(c, out),
        Cmd::Station(a) => codes::station(a, out),
        Cmd::Ports => device::ports(out),
        Cmd::Info { port, baud } => device::info(out, port, *baud),
        Cmd::Push {
            package,
            port,
            baud,
            no_reboot,
            confirm,
            reconnect_for,
        } => {
            let bytes = read(package)?;
            device::push(
                out,
                &bytes,
                port,
                *baud,
                !*no_reboot,
                *confirm,
                *reconnect_for,
            )
        }
        Cmd::Apply {
            package,
            old,
            out: dest,
            public,
            component,
            hardware,
            format,
        } => {
            let bytes = read(package)?;
            let pubs = load_publics(public)?;
            let checks = Checks {
                keys: (!pubs.is_empty()).then_some(&pubs[..]),
                hardware_id: hardware.as_deref(),
                product_id: None,
            };
            let p = ops::check(&bytes, &checks).map_err(Failure::core)?;
            let c = ops::select(&p, component.as_deref()).map_err(Failure::core)?;
            let old_img = old.as_ref().map(|o| load_image(o, *format)).transpose()?;
            let bar = out.bar("apply", c.payload_size);
            let new =
                ops::apply_component(&p, &c, old_img.as_ref().map(|i| &i.data[..]), &mut |e| {
                    bar.event(&e)
                })
                .map_err(Failure::core)?;
            bar.done();
            write_atomic(dest, &new)?;
            out.text(&format!(
                "wrote {} ({} bytes, version {}, SHA-256 {})",
                dest.display(),
                new.len(),
                c.to_version,
                hex::encode(c.target_sha256)
            ));
            Ok(
                json!({"ok": true, "out": dest, "size": new.len(), "component": c.name,
                      "version": c.to_version, "sha256": hex::encode(c.target_sha256),
                      "signature_checked": !pubs.is_empty()}),
            )
        }
    }
}

fn keygen(
    out: &Out,
    path: &Path,
    public: Option<&Path>,
    encrypt: bool,
    pass: &PassArgs,
    force: bool,
) -> Result<serde_json::Value, Failure> {
    let pub_path = public.map(Path::to_path_buf).unwrap_or_else(|| {
        let s = path.to_string_lossy();
        PathBuf::from(format!("{}.pub.pem", s.strip_suffix(".pem").unwrap_or(&s)))
    });
    for p in [path, pub_path.as_path()] {
        if p.exists() && !force {
            return Err(Failure::new(
                "exists",
                1,
                anyhow::anyhow!(
                    "{} already exists; refusing to overwrite a key (use --force)",
                    p.display()
                ),
            ));
        }
    }
    let passphrase = if encrypt || pass.passphrase_env.is_some() || pass.passphrase_file.is_some() {
        Some(get_passphrase(pass, true)?)
    } else {
        None
    };
    let key = keys::generate();
    let pem = keys::private_pem(&key, passphrase.as_deref()).map_err(Failure::key)?;
    let pub_pem = keys::public_pem(key.verifying_key()).map_err(Failure::key)?;
    write_atomic_mode(path, pem.as_bytes(), 0o600)?;
    write_atomic(&pub_path, pub_pem.as_bytes())?;
    let id = hex::encode(key_id(key.verifying_key()));
    out.text(&format!(
        "wrote private key {}{} and public key {} (key id {id})",
        path.display(),
        if passphrase.is_some() {
            " (encrypted)"
        } else {
            ""
        },
        pub_path.display()
    ));
    Ok(
        json!({"ok": true, "private": path, "public": pub_path, "key_id": id,
              "encrypted": passphrase.is_some()}),
    )
}

fn pack(cmd: &Cmd, out: &Out) -> Result<serde_json::Value, Failure> {
    let Cmd::Pack {
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
        format,
    } = cmd
    else {
        return Err(Failure::internal("pack called with another command"));
    };
    let signing = load_private(key, pass)?;
    let new_img = load_image(new, *format)?;
    let old_img = old.as_ref().map(|o| load_image(o, *format)).transpose()?;
    let mut deps = Vec::new();
    for d in depends {
        let (n, v) = d.split_once(">=").ok_or_else(|| {
            Failure::usage(anyhow::anyhow!(
                "--depends {d:?}: expected NAME>=VERSION, e.g. modem>=1.2.0"
            ))
        })?;
        deps.push((n.trim().to_string(), v.trim().to_string()));
    }
    let mut params = match profile {
        Profile::Best => Params::BEST,
        Profile::Small => Params::SMALL,
    };
    if let Some(kib) = block_kib {
        if !kib.is_power_of_two() || !(4..=16384).contains(kib) {
            return Err(Failure::usage(anyhow::anyhow!(
                "--block-kib {kib}: use a power of two from 4 to 16384"
            )));
        }
        params.block_log2 = (kib.trailing_zeros() + 10) as u8;
    }
    let spec = PackageSpec {
        product_id: product.clone(),
        hardware_id: hardware.clone(),
        created: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        components: vec![ComponentSpec {
            name: component.clone(),
            from_version: old.as_ref().map(|_| from_version.clone()),
            to_version: to_version.clone(),
            security_counter: *counter,
            load_address: load_address.unwrap_or(new_img.base_address),
            old: old_img.map(|i| i.data),
            new: new_img.data,
            params,
            dependencies: deps,
        }],
    };
    let bar = out.spinner("packing");
    let t = std::time::Instant::now();
    let pkg = build_package(&spec, &signing, &mut |e| bar.event(&e)).map_err(|e| match e {
        bluesphere_core::package::build::BuildError::Invalid(m) => {
            Failure::usage(anyhow::anyhow!(m))
        }
        other => Failure::new("internal", 1, other.into()),
    })?;
    let core_s = t.elapsed().as_secs_f64();
    bar.done();
    write_atomic(dest, &pkg)?;
    let info = ops::inspect(&pkg).map_err(Failure::core)?;
    let c = info.components.first();
    let (target, payload) = c.map_or((0, 0), |c| (c.record.target_size, c.record.payload_size));
    out.text(&format!(
        "wrote {} ({} bytes; {} payload {} bytes = {:.2}% of the {}-byte image)",
        dest.display(),
        pkg.len(),
        if old.is_some() { "delta" } else { "full" },
        payload,
        payload as f64 * 100.0 / (target.max(1)) as f64,
        target
    ));
    Ok(
        json!({"ok": true, "out": dest, "package_size": pkg.len(), "payload_size": payload,
              "target_size": target, "kind": if old.is_some() {"delta"} else {"full"},
              "core_s": core_s}),
    )
}

pub(crate) fn read(path: &Path) -> Result<Vec<u8>, Failure> {
    if path.is_dir() {
        return Err(Failure::new(
            "invalid-input",
            3,
            anyhow::anyhow!("{} is a directory, not a file", path.display()),
        ));
    }
    std::fs::read(path)
        .with_context(|| format!("cannot read {}", path.display()))
        .map_err(|e| Failure::new("io", 1, e))
}

fn load_image(path: &Path, format: InFormat) -> Result<image::Image, Failure> {
    let bytes = read(path)?;
    let force = match format {
        InFormat::Auto => None,
        InFormat::Bin => Some(ImageFormat::Bin),
        InFormat::Hex => Some(ImageFormat::Hex),
    };
    image::load(&bytes, force).map_err(|e| {
        Failure::new(
            "invalid-input",
            3,
            anyhow::Error::new(e).context(format!("{}", path.display())),
        )
    })
}

fn get_passphrase(pass: &PassArgs, confirm: bool) -> Result<String, Failure> {
    if let Some(var) = &pass.passphrase_env {
        return std::env::var(var).map_err(|_| {
            Failure::new(
                "key",
                6,
                anyhow::anyhow!("environment variable {var} is not set"),
            )
        });
    }
    if let Some(f) = &pass.passphrase_file {
        let s = std::fs::read_to_string(f)
            .with_context(|| format!("cannot read passphrase file {}", f.display()))
            .map_err(|e| Failure::new("key", 6, e))?;
        return Ok(s.lines().next().unwrap_or("").to_string());
    }
    if !std::io::stdin().is_terminal() {
        return Err(Failure::new(
            "key",
            6,
            anyhow::anyhow!(
                "a passphrase is needed: use --passphrase-env VAR or --passphrase-file FILE"
            ),
        ));
    }
    let p = rpassword::prompt_password("Key passphrase: ")
        .map_err(|e| Failure::new("io", 1, e.into()))?;
    if confirm {
        let again =
            rpassword::prompt_password("Again: ").map_err(|e| Failure::new("io", 1, e.into()))?;
        if again != p {
            return Err(Failure::new(
                "key",
                6,
                anyhow::anyhow!("the passphrases differ"),
            ));
        }
    }
    Ok(p)
}

pub(crate) fn load_private(
    path: &Path,
    pass: &PassArgs,
) -> Result<p256::ecdsa::SigningKey, Failure> {
    let pem = String::from_utf8(read(path)?).map_err(|_| {
        Failure::new(
            "key",
            6,
            anyhow::anyhow!("{} is not a PEM text file", path.display()),
        )
    })?;
    let given = pass.passphrase_env.is_some() || pass.passphrase_file.is_some();
    let passphrase = if given {
        Some(get_passphrase(pass, false)?)
    } else {
        None
    };
    match keys::load_private(&pem, passphrase.as_deref()) {
        Err(keys::KeyError::NeedPassphrase) if !given => {
            let p = get_passphrase(pass, false)?;
            keys::load_private(&pem, Some(&p))
        }
        r => r,
    }
    .map_err(|e| Failure::key(e).context(path))
}

pub(crate) fn load_publics(paths: &[PathBuf]) -> Result<Vec<p256::ecdsa::VerifyingKey>, Failure> {
    paths
        .iter()
        .map(|p| {
            let pem = String::from_utf8(read(p)?).map_err(|_| {
                Failure::new(
                    "key",
                    6,
                    anyhow::anyhow!("{} is not a PEM text file", p.display()),
                )
            })?;
            keys::load_public(&pem, None).map_err(|e| Failure::key(e).context(p))
        })
        .collect()
}

pub(crate) fn write_atomic(dest: &Path, data: &[u8]) -> Result<(), Failure> {
    write_atomic_mode(dest, data, 0o644)
}

/// Write to a temporary file beside `dest`, sync, then rename: a failure never leaves a
/// half-written `dest`.
pub(crate) fn write_atomic_mode(dest: &Path, data: &[u8], mode: u32) -> Result<(), Failure> {
    use std::io::Write;
    let io = |e: anyhow::Error| Failure::new("io", 1, e);
    let dir = match dest.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".bluesphere-")
        .tempfile_in(&dir)
        .with_context(|| format!("cannot create a file in {}", dir.display()))
        .map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(mode))
            .map_err(|e| io(e.into()))?;
    }
    tmp.write_all(data)
        .and_then(|_| tmp.as_file().sync_all())
        .with_context(|| format!("cannot write {}", dest.display()))
        .map_err(io)?;
    tmp.persist(dest)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot write {}", dest.display()))
        .map_err(io)?;
    Ok(())
}
