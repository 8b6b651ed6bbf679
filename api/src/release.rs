//! A release manifest: one package for several components (the main MCU and its modules),
//! each with its own images, versions, counter, dependencies and coding profile, described
//! by a TOML file. Paths are relative to the manifest's folder; the components are installed
//! in the order they are listed.
//!
//! ```toml
//! product = "thermostat"
//! hardware = "revB"
//! key = "keys/release.pem"      # optional: the caller may give one
//! out = "release-1.1.0.bsp"     # optional: the caller may give one
//!
//! [[component]]
//! name = "main"
//! old = "main-1.0.0.hex"        # optional: without it the full image is sent
//! new = "main-1.1.0.hex"
//! from = "1.0.0"                # the version `old` is (required with `old`)
//! to = "1.1.0"
//! counter = 3                   # anti-rollback counter (default 0)
//! depends = ["ble>=2.0.0"]      # versions the machine must have after the update
//! profile = "best"              # best (61 KiB of device RAM) or small (7.3 KiB)
//!
//! [[component]]
//! name = "ble"
//! new = "ble-2.0.0.bin"
//! to = "2.0.0"
//! profile = "small"
//! load_address = 0x1000         # default: the HEX/ELF base address, else 0
//! block_kib = 16                # optional; also format = "bin"|"hex"|"elf", range = "A..B"
//! ```

use std::path::{Path, PathBuf};

use bluesphere_core::package::build::{ComponentSpec, PackageSpec};
use bluesphere_core::unpack;
use serde::{Deserialize, Serialize};

use crate::files::{self, MAX_TEXT};
use crate::package::{
    load_image, load_package, load_publics, load_signer, now_secs, params, parse_depends, rebuild,
    require_key, sign_and_write, AddressRange, InputFormat, Profile,
};
use crate::progress::{Cancel, Event, Progress};
use crate::secrets::Secrets;
use crate::{Error, ErrorKind};

/// `pack --manifest`: a package of every component of a release manifest.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct ReleaseRequest {
    /// The manifest (TOML).
    pub manifest: PathBuf,
    /// Signing key, instead of the manifest's `key`.
    pub key: Option<PathBuf>,
    /// Package file to write, instead of the manifest's `out`.
    pub out: Option<PathBuf>,
}

/// One component of the package made.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct ReleaseComponent {
    /// Name.
    pub name: String,
    /// `delta` or `full`.
    pub kind: String,
    /// Version installed before (deltas).
    pub from_version: Option<String>,
    /// Version this installs.
    pub to_version: String,
    /// Coding profile.
    pub profile: Profile,
    /// New image size.
    pub target_size: u64,
    /// Payload size.
    pub payload_size: u64,
}

/// What `pack --manifest` made.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct ReleaseReport {
    /// Always true.
    pub ok: bool,
    /// Package file.
    pub out: PathBuf,
    /// Package size.
    pub package_size: u64,
    /// The components, in install order.
    pub components: Vec<ReleaseComponent>,
    /// Seconds spent making and signing.
    pub core_s: f64,
}

/// The manifest file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    product: String,
    hardware: String,
    key: Option<PathBuf>,
    out: Option<PathBuf>,
    #[serde(rename = "component", default)]
    components: Vec<Entry>,
}

/// One `[[component]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    new: PathBuf,
    old: Option<PathBuf>,
    from: Option<String>,
    to: String,
    #[serde(default)]
    counter: u32,
    load_address: Option<u64>,
    #[serde(default)]
    depends: Vec<String>,
    #[serde(default)]
    profile: Profile,
    block_kib: Option<u32>,
    #[serde(default)]
    format: InputFormat,
    range: Option<String>,
}

/// Read and check a manifest; paths resolved against its folder.
fn read_manifest(path: &Path) -> Result<Manifest, Error> {
    let bytes = files::read_input(path, "release manifest", MAX_TEXT)?;
    let text = String::from_utf8(bytes).map_err(|_| {
        Error::usage(format!("{} is not a text file", path.display()))
            .hint("a release manifest is TOML text")
    })?;
    let mut m: Manifest = toml::from_str(&text).map_err(|e| {
        Error::usage(format!("{}: {}", path.display(), e.message())).hint(match e.span() {
            Some(s) => format!(
                "line {} of the manifest; see `pack --manifest` in the README for its fields",
                text.get(..s.start)
                    .map_or(1, |t| t.matches('\n').count() + 1)
            ),
            None => "see `pack --manifest` in the README for its fields".into(),
        })
    })?;
    if m.components.is_empty() {
        return Err(
            Error::usage(format!("{} lists no [[component]]", path.display()))
                .hint("add one [[component]] table per image (name, new, to)"),
        );
    }
    let base = path.parent().unwrap_or(Path::new("."));
    let here = |p: &mut PathBuf| {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    };
    if let Some(k) = m.key.as_mut() {
        here(k);
    }
    if let Some(o) = m.out.as_mut() {
        here(o);
    }
    for c in &mut m.components {
        here(&mut c.new);
        if let Some(o) = c.old.as_mut() {
            here(o);
        }
        if c.old.is_some() != c.from.is_some() {
            return Err(Error::usage(format!(
                "component {:?}: `old` and `from` go together (the installed image and its version)",
                c.name
            )));
        }
    }
    Ok(m)
}

/// Make and sign the package of a release manifest; nothing is written unless it all
/// succeeded. Cancellable like [`crate::package::pack`].
pub fn pack_release(
    req: &ReleaseRequest,
    secrets: &dyn Secrets,
    progress: &dyn Progress,
    cancel: &Cancel,
) -> Result<ReleaseReport, Error> {
    let m = read_manifest(&req.manifest)?;
    let key = req.key.clone().or(m.key.clone()).ok_or_else(|| {
        Error::usage("no signing key: the manifest has no `key` and none was given")
    })?;
    let out = req.out.clone().or(m.out.clone()).ok_or_else(|| {
        Error::usage("no package file to write: the manifest has no `out` and none was given")
    })?;
    let mut inputs: Vec<&Path> = vec![&req.manifest, &key];
    for c in &m.components {
        inputs.push(&c.new);
        if let Some(o) = &c.old {
            inputs.push(o);
        }
    }
    files::check_output(&out, &inputs)?;
    let signing = load_signer(&key, secrets)?;
    let of = m.components.len();
    let mut specs = Vec::with_capacity(of);
    for (i, c) in m.components.iter().enumerate() {
        progress.event(Event::Stage {
            name: "read".into(),
            component: i,
            of,
        });
        let ctx = |e: Error| e.context(format!("component {:?}", c.name));
        let range = c
            .range
            .as_deref()
            .map(str::parse::<AddressRange>)
            .transpose()
            .map_err(ctx)?;
        let new = load_image(&c.new, c.format, range)?;
        let old = c
            .old
            .as_ref()
            .map(|o| load_image(o, c.format, range))
            .transpose()?;
        cancel.check()?;
        specs.push(ComponentSpec {
            name: c.name.clone(),
            from_version: c.from.clone(),
            to_version: c.to.clone(),
            security_counter: c.counter,
            load_address: c.load_address.unwrap_or(new.base_address),
            old: old.map(|i| i.data),
            new: new.data,
            params: params(c.profile, c.block_kib).map_err(ctx)?,
            dependencies: parse_depends(&c.depends).map_err(ctx)?,
        });
    }
    let spec = PackageSpec {
        product_id: m.product.clone(),
        hardware_id: m.hardware.clone(),
        created: now_secs(),
        components: specs,
    };
    let (pkg, info, core_s) = sign_and_write(spec, signing, &out, progress, cancel)?;
    let components = m
        .components
        .iter()
        .zip(&info.components)
        .map(|(c, i)| ReleaseComponent {
            name: c.name.clone(),
            kind: if c.old.is_some() { "delta" } else { "full" }.into(),
            from_version: c.from.clone(),
            to_version: c.to.clone(),
            profile: c.profile,
            target_size: i.record.target_size,
            payload_size: i.record.payload_size,
        })
        .collect();
    Ok(ReleaseReport {
        ok: true,
        out,
        package_size: pkg.len() as u64,
        components,
        core_s,
    })
}

/// `apply --all`: every component's new image, into a folder.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct ApplyAllRequest {
    /// Package file.
    pub package: PathBuf,
    /// Installed image per delta component: `(component name, image file)`.
    pub old: Vec<(String, PathBuf)>,
    /// Folder to write `<component>.bin` into (made if missing).
    pub out_dir: PathBuf,
    /// Verify the signature with these keys first.
    pub public: Vec<PathBuf>,
    /// Required hardware id.
    pub hardware: Option<String>,
    /// Input format of the installed images.
    pub format: InputFormat,
    /// Write the images without checking the signature (only when `public` is empty).
    pub unverified: bool,
}

/// One image `apply --all` wrote.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct AppliedImage {
    /// Component.
    pub component: String,
    /// Version.
    pub version: String,
    /// File written.
    pub out: PathBuf,
    /// Image size.
    pub size: u64,
    /// SHA-256 (hex).
    pub sha256: String,
}

/// What `apply --all` wrote.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct ApplyAllReport {
    /// Always true.
    pub ok: bool,
    /// The images, in install order.
    pub images: Vec<AppliedImage>,
    /// Whether the signature was checked.
    pub signature_checked: bool,
}

/// A component name as a file name: letters, digits, `.`, `-`, `_` only, not starting with
/// `.` (a package names its components; a hostile one must not name a path).
fn file_name_of(name: &str) -> Result<String, Error> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if !ok {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("component name {name:?} cannot be a file name; nothing was written"),
        )
        .hint("apply that component alone with --component NAME -o FILE"));
    }
    Ok(format!("{name}.bin"))
}

/// Rebuild every component's new image; all are made in memory and staged before any is
/// renamed into place, so a failure (a wrong base, a damaged payload) writes none.
pub fn apply_all(
    req: &ApplyAllRequest,
    progress: &dyn Progress,
    cancel: &Cancel,
) -> Result<ApplyAllReport, Error> {
    require_key(&req.public, req.unverified)?;
    let bytes = load_package(&req.package)?;
    let pubs = load_publics(&req.public)?;
    let checks = unpack::Checks {
        keys: (!pubs.is_empty()).then_some(&pubs[..]),
        hardware_id: req.hardware.as_deref(),
        product_id: None,
    };
    let p = unpack::check(&bytes, &checks)?;
    let all: Vec<_> = p
        .manifest
        .components()
        .collect::<Result<_, _>>()
        .map_err(|e| Error::from(unpack::Error::from(e)))?;
    for (name, _) in &req.old {
        if !all.iter().any(|c| c.name == name) {
            let have: Vec<&str> = all.iter().map(|c| c.name).collect();
            return Err(Error::usage(format!(
                "--old names component {name:?}, which the package does not have (it has {})",
                have.join(", ")
            )));
        }
    }
    let mut outs = Vec::with_capacity(all.len());
    for c in &all {
        outs.push(req.out_dir.join(file_name_of(c.name)?));
    }
    let mut inputs: Vec<&Path> = vec![&req.package];
    inputs.extend(req.old.iter().map(|(_, p)| p.as_path()));
    inputs.extend(req.public.iter().map(PathBuf::as_path));
    // A folder that does not exist yet holds no input; it is made once every image is.
    if req.out_dir.exists() {
        for o in &outs {
            files::check_output(o, &inputs)?;
        }
    }
    let of = all.len();
    let mut made = Vec::with_capacity(of);
    for (i, c) in all.iter().enumerate() {
        progress.event(Event::Stage {
            name: "apply".into(),
            component: i,
            of,
        });
        let old = req
            .old
            .iter()
            .find(|(n, _)| n == c.name)
            .map(|(_, path)| load_image(path, req.format, None))
            .transpose()?;
        let new = rebuild(&p, c, old.as_ref().map(|i| &i.data[..]), progress, cancel)?;
        made.push(new);
    }
    std::fs::create_dir_all(&req.out_dir).map_err(|e| {
        Error::new(
            ErrorKind::Io,
            format!("cannot make the folder {}: {e}", req.out_dir.display()),
        )
    })?;
    let staged = outs
        .iter()
        .zip(&made)
        .map(|(o, data)| files::stage(o, data, 0o644))
        .collect::<Result<Vec<_>, _>>()?;
    for s in staged {
        s.commit()?;
    }
    Ok(ApplyAllReport {
        ok: true,
        images: all
            .iter()
            .zip(outs)
            .zip(&made)
            .map(|((c, out), data)| AppliedImage {
                component: c.name.into(),
                version: c.to_version.into(),
                out,
                size: data.len() as u64,
                sha256: hex::encode(c.target_sha256),
            })
            .collect(),
        signature_checked: !pubs.is_empty(),
    })
}
