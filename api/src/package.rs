//! Package jobs: keygen, pack, inspect, verify, apply.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bluesphere_core::delta::Params;
use bluesphere_core::image::{self, Image, ImageFormat};
use bluesphere_core::keys::{self, KeyError};
use bluesphere_core::package::build::{
    build_package_until, BuildError, ComponentSpec, PackageSpec,
};
use bluesphere_core::package::key_id;
use bluesphere_core::unpack::{self, Checks, PackageInfo};
use p256::ecdsa::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::files::{self, MAX_IMAGE, MAX_KEY, MAX_PACKAGE};
use crate::progress::{Cancel, Event, Progress};
use crate::secrets::{Purpose, Secrets};
use crate::{Error, ErrorKind};

/// How an image file is read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub enum InputFormat {
    /// Decide by content.
    #[default]
    Auto,
    /// Raw binary.
    Bin,
    /// Intel HEX.
    Hex,
    /// ELF executable (its loadable segments).
    Elf,
}

/// Addresses `start..end` (end exclusive) of a HEX or ELF file to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct AddressRange {
    /// First address kept.
    pub start: u64,
    /// First address after the range.
    pub end: u64,
}

impl std::str::FromStr for AddressRange {
    type Err = Error;

    /// `START..END` or `START+LENGTH`, decimal or `0x` hex.
    fn from_str(s: &str) -> Result<Self, Error> {
        let num = |t: &str| {
            let t = t.trim();
            let r = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
                Some(h) => u64::from_str_radix(&h.replace('_', ""), 16),
                None => t.replace('_', "").parse(),
            };
            r.map_err(|_| Error::usage(format!("address range {s:?}: {t:?} is not a number")))
        };
        let (start, end) = if let Some((a, b)) = s.split_once("..") {
            (num(a)?, num(b)?)
        } else if let Some((a, n)) = s.split_once('+') {
            let a = num(a)?;
            let end = a.checked_add(num(n)?).ok_or_else(|| {
                Error::usage(format!("address range {s:?} runs past the end of memory"))
            })?;
            (a, end)
        } else {
            return Err(Error::usage(format!(
                "address range {s:?}: write START..END or START+LENGTH (e.g. 0x08000000..0x08100000)"
            )));
        };
        if start >= end {
            return Err(Error::usage(format!("address range {s:?} is empty")));
        }
        Ok(Self { start, end })
    }
}

/// Coding profile of a delta.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub enum Profile {
    /// Smallest packages (decoder state 61 KiB of RAM).
    #[default]
    Best,
    /// Small-RAM MCUs (decoder state 7.3 KiB of RAM).
    Small,
}

/// Load an image file (BIN, Intel HEX or ELF), keeping `range` of a HEX or ELF file.
pub fn load_image(
    path: &Path,
    format: InputFormat,
    range: Option<AddressRange>,
) -> Result<Image, Error> {
    let bytes = files::read_input(path, "image", MAX_IMAGE)?;
    let opts = image::LoadOptions {
        format: match format {
            InputFormat::Auto => None,
            InputFormat::Bin => Some(ImageFormat::Bin),
            InputFormat::Hex => Some(ImageFormat::Hex),
            InputFormat::Elf => Some(ImageFormat::Elf),
        },
        range: range.map(|r| r.start..r.end),
    };
    image::load_with(&bytes, &opts).map_err(|e| Error::from(e).context(path.display()))
}

/// Load a package file.
pub fn load_package(path: &Path) -> Result<Vec<u8>, Error> {
    files::read_input(path, "package", MAX_PACKAGE)
}

fn read_pem(path: &Path) -> Result<String, Error> {
    let bytes = files::read_input(path, "key", MAX_KEY).map_err(|e| match e.kind {
        ErrorKind::InvalidInput => Error {
            kind: ErrorKind::Key,
            message: format!(
                "{}; a PEM key file is a few hundred bytes of text",
                e.message
            ),
            hint: e.hint,
        },
        _ => e,
    })?;
    String::from_utf8(bytes).map_err(|_| {
        Error::new(
            ErrorKind::Key,
            format!("{} is not a PEM text file", path.display()),
        )
    })
}

/// Load a private key, asking `secrets` for its passphrase if it is encrypted.
pub fn load_private(path: &Path, secrets: &dyn Secrets) -> Result<SigningKey, Error> {
    read_private(path, secrets, keys::load_private)
}

/// Load a private key for signing packages (see [`keys::load_signer`]), asking `secrets`
/// for its passphrase if it is encrypted.
pub fn load_signer(path: &Path, secrets: &dyn Secrets) -> Result<keys::Signer, Error> {
    read_private(path, secrets, keys::load_signer)
}

/// Read the key file at `path` with `read`, asking `secrets` for its passphrase if it is
/// encrypted.
fn read_private<T>(
    path: &Path,
    secrets: &dyn Secrets,
    read: fn(&str, Option<&str>) -> Result<T, KeyError>,
) -> Result<T, Error> {
    let pem = read_pem(path)?;
    let r = match read(&pem, None) {
        Err(KeyError::NeedPassphrase) => match secrets.passphrase(path, Purpose::Unlock)? {
            Some(p) => read(&pem, Some(&p)),
            None => Err(KeyError::NeedPassphrase),
        },
        r => r,
    };
    r.map_err(|e| Error::from(e).context(path.display()))
}

/// Load public keys (a private key file gives its public key too).
pub fn load_publics(paths: &[PathBuf]) -> Result<Vec<VerifyingKey>, Error> {
    paths
        .iter()
        .map(|p| {
            keys::load_public(&read_pem(p)?, None).map_err(|e| Error::from(e).context(p.display()))
        })
        .collect()
}

/// `keygen`: a P-256 signing key (PKCS#8 PEM) and its public key (SPKI PEM).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct KeygenRequest {
    /// Private key file to write.
    pub out: PathBuf,
    /// Public key file (default: `out` with `.pub.pem`).
    pub public: Option<PathBuf>,
    /// Encrypt the private key (the passphrase comes from [`Secrets`]).
    pub encrypt: bool,
    /// Replace existing key files.
    pub force: bool,
}

/// What `keygen` made.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct KeygenReport {
    /// Always true.
    pub ok: bool,
    /// Private key file.
    pub private: PathBuf,
    /// Public key file.
    pub public: PathBuf,
    /// Key id (hex).
    pub key_id: String,
    /// Passphrase-protected.
    pub encrypted: bool,
}

/// The public key file that goes with `key` when none is named.
pub fn default_public_path(key: &Path) -> PathBuf {
    let s = key.to_string_lossy();
    PathBuf::from(format!("{}.pub.pem", s.strip_suffix(".pem").unwrap_or(&s)))
}

/// Make a key pair. Both files are prepared before either is visible: a failure leaves
/// neither half-written, and existing keys are never replaced unless `force`.
pub fn keygen(req: &KeygenRequest, secrets: &dyn Secrets) -> Result<KeygenReport, Error> {
    let public = req
        .public
        .clone()
        .unwrap_or_else(|| default_public_path(&req.out));
    if public == req.out {
        return Err(Error::usage(
            "the private and the public key must be two different files",
        ));
    }
    for p in [&req.out, &public] {
        if std::fs::symlink_metadata(p).is_ok() && !req.force {
            return Err(Error::new(
                ErrorKind::Exists,
                format!(
                    "{} already exists; refusing to overwrite a key",
                    p.display()
                ),
            )
            .hint("choose another file name, or allow replacing the key"));
        }
        files::check_output(p, &[])?;
    }
    let passphrase = if req.encrypt {
        match secrets.passphrase(&req.out, Purpose::Protect)? {
            Some(p) if !p.is_empty() => Some(p),
            Some(_) => {
                return Err(Error::new(
                    ErrorKind::Key,
                    "an empty passphrase does not protect a key",
                )
                .hint("give a passphrase of at least one character"))
            }
            None => {
                return Err(Error::new(
                    ErrorKind::Key,
                    "a passphrase is needed to encrypt the key",
                ))
            }
        }
    } else {
        None
    };
    let key = keys::generate();
    let pem = keys::private_pem(&key, passphrase.as_deref())?;
    let pub_pem = keys::public_pem(key.verifying_key())?;
    let private = files::stage(&req.out, pem.as_bytes(), 0o600)?;
    let public_file = files::stage(&public, pub_pem.as_bytes(), 0o644)?;
    private.commit()?;
    public_file.commit()?;
    Ok(KeygenReport {
        ok: true,
        private: req.out.clone(),
        public,
        key_id: hex::encode(key_id(key.verifying_key())),
        encrypted: passphrase.is_some(),
    })
}

/// `pack`: a signed package, a delta with `old`, else a full image.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct PackRequest {
    /// New firmware image.
    pub new: PathBuf,
    /// Installed firmware image the delta applies to.
    pub old: Option<PathBuf>,
    /// Signing key.
    pub key: PathBuf,
    /// Package file to write.
    pub out: PathBuf,
    /// Product id.
    pub product: String,
    /// Hardware id.
    pub hardware: String,
    /// Component name.
    pub component: String,
    /// Version of the old image.
    pub from_version: String,
    /// Version of the new image.
    pub to_version: String,
    /// Anti-rollback counter.
    pub counter: u32,
    /// Load address (default: the HEX file's base address, else 0).
    pub load_address: Option<u64>,
    /// `NAME>=VERSION` dependencies.
    pub depends: Vec<String>,
    /// Coding profile.
    pub profile: Profile,
    /// Target KiB per independently decodable block (a power of two, 4..=16384).
    pub block_kib: Option<u32>,
    /// Input format of both images.
    pub format: InputFormat,
    /// Addresses of HEX or ELF images to keep (all when `None`).
    pub range: Option<AddressRange>,
}

impl Default for PackRequest {
    fn default() -> Self {
        Self {
            new: PathBuf::new(),
            old: None,
            key: PathBuf::new(),
            out: PathBuf::new(),
            product: "generic".into(),
            hardware: "any".into(),
            component: "main".into(),
            from_version: "0.0.0".into(),
            to_version: "0.0.1".into(),
            counter: 0,
            load_address: None,
            depends: Vec::new(),
            profile: Profile::Best,
            block_kib: None,
            format: InputFormat::Auto,
            range: None,
        }
    }
}

/// What `pack` made.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct PackReport {
    /// Always true.
    pub ok: bool,
    /// Package file.
    pub out: PathBuf,
    /// Package size.
    pub package_size: u64,
    /// Payload size.
    pub payload_size: u64,
    /// New image size.
    pub target_size: u64,
    /// `delta` or `full`.
    pub kind: String,
    /// Seconds spent making and signing.
    pub core_s: f64,
}

pub(crate) fn parse_depends(depends: &[String]) -> Result<Vec<(String, String)>, Error> {
    depends
        .iter()
        .map(|d| {
            let (n, v) = d.split_once(">=").ok_or_else(|| {
                Error::usage(format!(
                    "dependency {d:?}: expected NAME>=VERSION, e.g. modem>=1.2.0"
                ))
            })?;
            Ok((n.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

pub(crate) fn params(profile: Profile, block_kib: Option<u32>) -> Result<Params, Error> {
    let mut params = match profile {
        Profile::Best => Params::BEST,
        Profile::Small => Params::SMALL,
    };
    if let Some(kib) = block_kib {
        if !kib.is_power_of_two() || !(4..=16384).contains(&kib) {
            return Err(Error::usage(format!(
                "block size {kib} KiB: use a power of two from 4 to 16384"
            )));
        }
        params.block_log2 = (kib.trailing_zeros() + 10) as u8;
    }
    Ok(params)
}

/// Make and sign a package; nothing is written unless it all succeeded. Cancellable: the
/// job returns [`ErrorKind::Cancelled`] within about 20 ms of `cancel` being set and writes
/// nothing (the build itself stops at its next check: between parts of the match search and
/// between coded blocks).
pub fn pack(
    req: &PackRequest,
    secrets: &dyn Secrets,
    progress: &dyn Progress,
    cancel: &Cancel,
) -> Result<PackReport, Error> {
    let mut inputs: Vec<&Path> = vec![&req.new, &req.key];
    if let Some(o) = &req.old {
        inputs.push(o);
    }
    files::check_output(&req.out, &inputs)?;
    let deps = parse_depends(&req.depends)?;
    let params = params(req.profile, req.block_kib)?;
    let signing = load_signer(&req.key, secrets)?;
    progress.event(Event::Stage {
        name: "read".into(),
        component: 0,
        of: 1,
    });
    let new_img = load_image(&req.new, req.format, req.range)?;
    let old_img = req
        .old
        .as_ref()
        .map(|o| load_image(o, req.format, req.range))
        .transpose()?;
    cancel.check()?;
    let spec = PackageSpec {
        product_id: req.product.clone(),
        hardware_id: req.hardware.clone(),
        created: now_secs(),
        components: vec![ComponentSpec {
            name: req.component.clone(),
            from_version: req.old.as_ref().map(|_| req.from_version.clone()),
            to_version: req.to_version.clone(),
            security_counter: req.counter,
            load_address: req.load_address.unwrap_or(new_img.base_address),
            old: old_img.map(|i| i.data),
            new: new_img.data,
            params,
            dependencies: deps,
        }],
    };
    let (pkg, info, core_s) = sign_and_write(spec, signing, &req.out, progress, cancel)?;
    let c = info.components.first();
    let (target, payload) = c.map_or((0, 0), |c| (c.record.target_size, c.record.payload_size));
    Ok(PackReport {
        ok: true,
        out: req.out.clone(),
        package_size: pkg.len() as u64,
        payload_size: payload,
        target_size: target,
        kind: if req.old.is_some() { "delta" } else { "full" }.into(),
        core_s,
    })
}

/// Seconds since 1970 (a package's creation time).
pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Build and sign `spec`, read it back, and write it to `out` atomically: the package, what
/// it says, and the seconds spent making and signing it.
pub(crate) fn sign_and_write(
    spec: PackageSpec,
    signing: keys::Signer,
    out: &Path,
    progress: &dyn Progress,
    cancel: &Cancel,
) -> Result<(Vec<u8>, unpack::PackageInfo, f64), Error> {
    let t = Instant::now();
    let components = spec.components.len();
    let pkg = build_answering_cancel(spec, signing, progress, cancel)?;
    let core_s = t.elapsed().as_secs_f64();
    cancel.check()?;
    progress.event(Event::Stage {
        name: "write".into(),
        component: 0,
        of: components,
    });
    let info = unpack::inspect(&pkg)?;
    files::write_atomic(out, &pkg, 0o644)?;
    Ok((pkg, info, core_s))
}

/// How often a job waiting for its build looks at its cancel token.
const CANCEL_POLL: Duration = Duration::from_millis(20);

/// The core's build of `spec` on a thread of its own, its progress passed on here. Cancel
/// is answered within [`CANCEL_POLL`] even while the build is in a step that cannot stop
/// midway (the source's suffix sort: seconds on a 64 MiB image): the build thread, asked to
/// stop too, ends at its next check, and what it made is dropped unwritten.
fn build_answering_cancel(
    spec: PackageSpec,
    signing: keys::Signer,
    progress: &dyn Progress,
    cancel: &Cancel,
) -> Result<Vec<u8>, Error> {
    enum Msg {
        Event(bluesphere_core::Progress),
        Done(Result<Vec<u8>, BuildError>),
    }
    let (tx, rx) = mpsc::channel();
    let stop = cancel.shared();
    std::thread::Builder::new()
        .name("bluesphere-build".into())
        .spawn(move || {
            let events = tx.clone();
            let r = build_package_until(
                &spec,
                &signing,
                &mut |e| {
                    let _ = events.send(Msg::Event(e));
                },
                &stop,
            );
            let _ = tx.send(Msg::Done(r));
        })
        .map_err(|e| Error::internal(format!("cannot start the build thread: {e}")))?;
    loop {
        cancel.check()?;
        match rx.recv_timeout(CANCEL_POLL) {
            Ok(Msg::Event(e)) => progress.event(core_event(e)),
            Ok(Msg::Done(r)) => return r.map_err(build_error),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(Error::internal("the build thread ended without a result"))
            }
        }
    }
}

/// `apply` writes nothing unverified unless asked to on purpose.
pub(crate) fn require_key(public: &[PathBuf], unverified: bool) -> Result<(), Error> {
    if public.is_empty() && !unverified {
        return Err(Error::new(
            ErrorKind::NeedKey,
            "the package's signature cannot be checked without a public key; nothing was written",
        )
        .hint("give the public key of the key that signed the package, or choose on purpose to write the image unverified"));
    }
    Ok(())
}

/// Rebuild component `c`'s new image (from `old` for a delta).
pub(crate) fn rebuild(
    p: &bluesphere_core::package::Package<'_>,
    c: &bluesphere_core::package::Component<'_>,
    old: Option<&[u8]>,
    progress: &dyn Progress,
    cancel: &Cancel,
) -> Result<Vec<u8>, Error> {
    let new = unpack::apply_component_until(
        p,
        c,
        old,
        &mut |e| progress.event(core_event(e)),
        cancel.flag(),
    )
    .map_err(|e| match e {
        unpack::Error::Cancelled => Error::cancelled(),
        e => Error::from(e),
    })?;
    cancel.check()?;
    Ok(new)
}

pub(crate) fn build_error(e: BuildError) -> Error {
    match e {
        BuildError::Invalid(m) => Error::usage(m),
        BuildError::Cancelled => Error::cancelled(),
        other => Error::internal(crate::error::chain(&other)),
    }
}

pub(crate) fn core_event(e: bluesphere_core::Progress) -> Event {
    match e {
        bluesphere_core::Progress::Stage {
            name,
            component,
            of,
        } => Event::Stage {
            name: name.into(),
            component,
            of,
        },
        bluesphere_core::Progress::Bytes { done, total } => Event::Bytes { done, total },
    }
}

/// `inspect`: what a package says (structure checked; the signature only with a key).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct InspectRequest {
    /// Package file.
    pub package: PathBuf,
    /// Public keys to check the signature with (none: the signature is not checked).
    #[serde(default)]
    pub public: Vec<PathBuf>,
}

/// Whether a package's signature was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub enum SignatureCheck {
    /// No key was given: the key id is what the package claims, nothing more.
    NotChecked,
    /// The signature verifies with one of the given keys.
    Valid,
}

/// What `inspect` found.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct InspectReport {
    /// What the package says.
    #[serde(flatten)]
    pub info: PackageInfo,
    /// Whether the signature (and the key id) was checked.
    pub signature: SignatureCheck,
}

/// Describe a package; with keys, check its signature first.
pub fn inspect(req: &InspectRequest) -> Result<InspectReport, Error> {
    let bytes = load_package(&req.package)?;
    let signature = if req.public.is_empty() {
        SignatureCheck::NotChecked
    } else {
        let pubs = load_publics(&req.public)?;
        unpack::check(
            &bytes,
            &Checks {
                keys: Some(&pubs),
                ..Checks::default()
            },
        )?;
        SignatureCheck::Valid
    };
    Ok(InspectReport {
        info: unpack::inspect(&bytes)?,
        signature,
    })
}

/// `verify`: signature, payload checksums, and optionally the base image and ids.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct VerifyRequest {
    /// Package file.
    pub package: PathBuf,
    /// Public keys to accept (at least one).
    pub public: Vec<PathBuf>,
    /// Installed image: check it is the base the delta expects.
    pub old: Option<PathBuf>,
    /// Component whose base to check.
    pub component: Option<String>,
    /// Required hardware id.
    pub hardware: Option<String>,
    /// Required product id.
    pub product: Option<String>,
    /// Input format of `old`.
    pub format: InputFormat,
    /// Addresses of a HEX or ELF `old` to keep.
    pub range: Option<AddressRange>,
}

/// The base image check of `verify`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct BaseMatch {
    /// Component.
    pub component: String,
    /// The version the delta applies to.
    pub from_version: String,
    /// Always true (a mismatch is an error).
    pub matches: bool,
}

/// What `verify` found.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct VerifyReport {
    /// Always true.
    pub ok: bool,
    /// Signer key id (hex).
    pub key_id: String,
    /// Product id.
    pub product_id: String,
    /// Hardware id.
    pub hardware_id: String,
    /// Component count.
    pub components: u8,
    /// The base image check, if asked.
    pub base: Option<BaseMatch>,
}

/// Check a package's signature and hashes (and the base image, product, hardware).
pub fn verify(req: &VerifyRequest) -> Result<VerifyReport, Error> {
    if req.public.is_empty() {
        return Err(Error::usage("verify needs at least one public key"));
    }
    let bytes = load_package(&req.package)?;
    let pubs = load_publics(&req.public)?;
    let checks = Checks {
        keys: Some(&pubs),
        hardware_id: req.hardware.as_deref(),
        product_id: req.product.as_deref(),
    };
    let p = unpack::check(&bytes, &checks)?;
    let base = match &req.old {
        Some(old) => {
            let img = load_image(old, req.format, req.range)?;
            let c = unpack::select(&p, req.component.as_deref())?;
            unpack::check_base(&c, Some(&img.data))?;
            Some(BaseMatch {
                component: c.name.into(),
                from_version: c.from_version.into(),
                matches: true,
            })
        }
        None => None,
    };
    Ok(VerifyReport {
        ok: true,
        key_id: hex::encode(p.header.key_id),
        product_id: p.manifest.product_id.into(),
        hardware_id: p.manifest.hardware_id.into(),
        components: p.manifest.component_count,
        base,
    })
}

/// `apply`: decode a component against the installed image and write the new image.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct ApplyRequest {
    /// Package file.
    pub package: PathBuf,
    /// Installed image (deltas).
    pub old: Option<PathBuf>,
    /// Output image file.
    pub out: PathBuf,
    /// Verify the signature with these keys first.
    pub public: Vec<PathBuf>,
    /// Component to apply (needed when there are several).
    pub component: Option<String>,
    /// Required hardware id.
    pub hardware: Option<String>,
    /// Input format of `old`.
    pub format: InputFormat,
    /// Addresses of a HEX or ELF `old` to keep.
    pub range: Option<AddressRange>,
    /// Write the image without checking the signature (only when `public` is empty).
    pub unverified: bool,
}

/// What `apply` wrote.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct ApplyReport {
    /// Always true.
    pub ok: bool,
    /// Output file.
    pub out: PathBuf,
    /// Image size.
    pub size: u64,
    /// Component.
    pub component: String,
    /// Its new version.
    pub version: String,
    /// Image SHA-256 (hex).
    pub sha256: String,
    /// Whether the signature was checked.
    pub signature_checked: bool,
}

/// Apply a package; the output appears only when the image matches the manifest's hash.
pub fn apply(
    req: &ApplyRequest,
    progress: &dyn Progress,
    cancel: &Cancel,
) -> Result<ApplyReport, Error> {
    let mut inputs: Vec<&Path> = vec![&req.package];
    if let Some(o) = &req.old {
        inputs.push(o);
    }
    inputs.extend(req.public.iter().map(PathBuf::as_path));
    files::check_output(&req.out, &inputs)?;
    require_key(&req.public, req.unverified)?;
    let bytes = load_package(&req.package)?;
    let pubs = load_publics(&req.public)?;
    let checks = Checks {
        keys: (!pubs.is_empty()).then_some(&pubs[..]),
        hardware_id: req.hardware.as_deref(),
        product_id: None,
    };
    let p = unpack::check(&bytes, &checks)?;
    let c = unpack::select(&p, req.component.as_deref())?;
    if c.target_size > MAX_IMAGE {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "component `{}` declares a {}-byte image, more than this tool writes ({MAX_IMAGE} bytes)",
                c.name, c.target_size
            ),
        ));
    }
    let old_img = req
        .old
        .as_ref()
        .map(|o| load_image(o, req.format, req.range))
        .transpose()?;
    progress.event(Event::Stage {
        name: "apply".into(),
        component: 0,
        of: 1,
    });
    let new = rebuild(
        &p,
        &c,
        old_img.as_ref().map(|i| &i.data[..]),
        progress,
        cancel,
    )?;
    files::write_atomic(&req.out, &new, 0o644)?;
    Ok(ApplyReport {
        ok: true,
        out: req.out.clone(),
        size: new.len() as u64,
        component: c.name.into(),
        version: c.to_version.into(),
        sha256: hex::encode(c.target_sha256),
        signature_checked: !pubs.is_empty(),
    })
}
