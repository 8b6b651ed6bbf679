//! Opening a package: read its contents ([`inspect`]), check it ([`check`]: structure,
//! signature, key, identity), pick a component ([`select`]), check the base image it needs
//! ([`check_base`]) and rebuild the new image ([`apply_component`]). The jobs API builds the
//! inspect, verify and apply jobs on these. No printing: progress goes to a callback as
//! [`Progress`] events, errors carry a machine-readable kind.

use crate::delta::{ApplyError, DeltaDecoder, DeltaError, PatchIo};
use crate::package::{sha2_digest, Codec, Component, Package, PackageError, PayloadKind};
use p256::ecdsa::VerifyingKey;
use serde::Serialize;

/// A progress event. The CLI renders them as bars; the Studio forwards them to the page.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Progress {
    /// A named stage started for component `component` of `of`.
    Stage {
        /// Stage name (`diff`, `sign`, `verify`, `apply`).
        name: &'static str,
        /// Component index.
        component: usize,
        /// Component count.
        of: usize,
    },
    /// Bytes of the current stage done.
    Bytes {
        /// Done.
        done: u64,
        /// Total.
        total: u64,
    },
}

/// Everything that can go wrong in a job, with a stable kind for scripts and the GUI.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Structure or signature problem.
    #[error(transparent)]
    Package(#[from] PackageError),
    /// Delta stream problem.
    #[error(transparent)]
    Delta(#[from] DeltaError),
    /// The base image is not the one the delta was made from.
    #[error("wrong base image for component `{component}`: the package expects version {from_version} ({expected_size} bytes, SHA-256 starting {expected_sha}), but the given image is {actual_size} bytes with SHA-256 {actual_sha}")]
    WrongBase {
        /// Component.
        component: String,
        /// Version the delta applies to.
        from_version: String,
        /// Expected size.
        expected_size: u64,
        /// Expected hash (hex).
        expected_sha: String,
        /// Given size.
        actual_size: u64,
        /// Given hash (hex).
        actual_sha: String,
    },
    /// A delta needs the old image.
    #[error("component `{component}` is a delta from version {from_version}: the installed image it applies to is needed")]
    NeedBase {
        /// Component.
        component: String,
        /// Version the delta applies to.
        from_version: String,
    },
    /// Built for other hardware.
    #[error("package is for hardware `{package}`, not `{expected}`")]
    WrongHardware {
        /// In the package.
        package: String,
        /// Expected by the caller.
        expected: String,
    },
    /// Built for another product.
    #[error("package is for product `{package}`, not `{expected}`")]
    WrongProduct {
        /// In the package.
        package: String,
        /// Expected by the caller.
        expected: String,
    },
    /// No such component.
    #[error("package has no component `{name}` (it has: {available})")]
    NoComponent {
        /// Asked for.
        name: String,
        /// Present.
        available: String,
    },
    /// Several components and none chosen.
    #[error("package has several components ({available}): choose one")]
    ChooseComponent {
        /// Present.
        available: String,
    },
    /// Output does not match the manifest's target hash.
    #[error("patched image of `{component}` does not match the target SHA-256 in the manifest")]
    TargetHash {
        /// Component.
        component: String,
    },
    /// Stopped on request.
    #[error("cancelled")]
    Cancelled,
}

impl Error {
    /// Stable machine-readable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Package(PackageError::Truncated { .. }) => "truncated",
            Error::Package(PackageError::BadMagic) => "not-a-package",
            Error::Package(PackageError::UnsupportedVersion(_)) => "unsupported-version",
            Error::Package(PackageError::UnknownKey { .. }) => "unknown-key",
            Error::Package(PackageError::BadSignature) => "bad-signature",
            Error::Package(_) => "corrupt",
            Error::Delta(DeltaError::Truncated) => "truncated",
            Error::Delta(_) => "corrupt",
            Error::WrongBase { .. } => "wrong-base",
            Error::NeedBase { .. } => "need-base",
            Error::WrongHardware { .. } => "wrong-hardware",
            Error::WrongProduct { .. } => "wrong-product",
            Error::NoComponent { .. } | Error::ChooseComponent { .. } => "no-component",
            Error::TargetHash { .. } => "corrupt",
            Error::Cancelled => "cancelled",
        }
    }
}

/// What a package says, for `inspect`.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct PackageInfo {
    /// Format version.
    pub format_version: u16,
    /// Product id.
    pub product_id: String,
    /// Hardware id.
    pub hardware_id: String,
    /// Creation time (seconds since 1970 UTC).
    pub created: u64,
    /// Signer key id (hex).
    pub key_id: String,
    /// Package size.
    pub package_size: u64,
    /// Components.
    pub components: Vec<ComponentInfo>,
}

/// One component, for `inspect`.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct ComponentInfo {
    /// The manifest record.
    #[serde(flatten)]
    pub record: OwnedComponent,
    /// Delta stream parameters, if BSD3.
    pub stream: Option<crate::delta::StreamHeader>,
    /// Payload / target.
    pub ratio: f64,
}

/// Owned copy of a [`Component`].
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct OwnedComponent {
    /// Name.
    pub name: String,
    /// From version ("" for full).
    pub from_version: String,
    /// To version.
    pub to_version: String,
    /// Security counter.
    pub security_counter: u32,
    /// Load address.
    pub load_address: u64,
    /// Kind.
    pub kind: PayloadKind,
    /// Codec.
    pub codec: Codec,
    /// Source size.
    pub source_size: u64,
    /// First 8 bytes of the source image's SHA-256 (hex).
    pub source_hash: String,
    /// Target size.
    pub target_size: u64,
    /// Target hash (hex).
    pub target_sha256: String,
    /// Payload size.
    pub payload_size: u64,
    /// Payload CRC-32 (hex).
    pub payload_crc32: String,
    /// `name >= version` dependencies.
    pub dependencies: Vec<(String, String)>,
}

impl From<&Component<'_>> for OwnedComponent {
    fn from(c: &Component<'_>) -> Self {
        Self {
            name: c.name.into(),
            from_version: c.from_version.into(),
            to_version: c.to_version.into(),
            security_counter: c.security_counter,
            load_address: c.load_address,
            kind: c.kind,
            codec: c.codec,
            source_size: c.source_size,
            source_hash: hex::encode(c.source_hash),
            target_size: c.target_size,
            target_sha256: hex::encode(c.target_sha256),
            payload_size: c.payload_size,
            payload_crc32: format!("{:08x}", c.payload_crc32),
            dependencies: c
                .dependencies()
                .map(|d| (d.component.into(), d.min_version.into()))
                .collect(),
        }
    }
}

/// Describe a package (structure checked, signature not).
pub fn inspect(bytes: &[u8]) -> Result<PackageInfo, Error> {
    let p = Package::parse(bytes)?;
    let mut components = Vec::new();
    for c in p.manifest.components() {
        let c = c?;
        let payload = p.payload(&c);
        let stream = match c.codec {
            Codec::Bsd3 => Some(crate::delta::StreamHeader::parse(payload)?),
            Codec::Stored => None,
        };
        components.push(ComponentInfo {
            record: OwnedComponent::from(&c),
            stream,
            ratio: if c.target_size == 0 {
                0.0
            } else {
                c.payload_size as f64 / c.target_size as f64
            },
        });
    }
    Ok(PackageInfo {
        format_version: crate::package::FORMAT_VERSION,
        product_id: p.manifest.product_id.into(),
        hardware_id: p.manifest.hardware_id.into(),
        created: p.manifest.created,
        key_id: hex::encode(p.header.key_id),
        package_size: bytes.len() as u64,
        components,
    })
}

/// What to check besides structure.
#[derive(Debug, Clone, Default)]
pub struct Checks<'a> {
    /// Public keys to accept (`None`: skip the signature, still check payload hashes).
    pub keys: Option<&'a [VerifyingKey]>,
    /// Expected hardware id.
    pub hardware_id: Option<&'a str>,
    /// Expected product id.
    pub product_id: Option<&'a str>,
}

/// Parse and check a package: signature (if keys are given), payload hashes, product and
/// hardware.
pub fn check<'a>(bytes: &'a [u8], checks: &Checks<'_>) -> Result<Package<'a>, Error> {
    let p = Package::parse(bytes)?;
    match checks.keys {
        Some(keys) => {
            p.verify(keys)?;
        }
        None => p.check_payloads()?,
    }
    if let Some(hw) = checks.hardware_id {
        if p.manifest.hardware_id != hw {
            return Err(Error::WrongHardware {
                package: p.manifest.hardware_id.into(),
                expected: hw.into(),
            });
        }
    }
    if let Some(prod) = checks.product_id {
        if p.manifest.product_id != prod {
            return Err(Error::WrongProduct {
                package: p.manifest.product_id.into(),
                expected: prod.into(),
            });
        }
    }
    Ok(p)
}

/// Pick a component by name, or the only one.
pub fn select<'a>(p: &Package<'a>, name: Option<&str>) -> Result<Component<'a>, Error> {
    let all: Vec<Component<'a>> = p.manifest.components().collect::<Result<_, _>>()?;
    let available = all.iter().map(|c| c.name).collect::<Vec<_>>().join(", ");
    match name {
        Some(n) => all
            .into_iter()
            .find(|c| c.name == n)
            .ok_or(Error::NoComponent {
                name: n.into(),
                available,
            }),
        None if all.len() == 1 => all
            .into_iter()
            .next()
            .ok_or(Error::ChooseComponent { available }),
        None => Err(Error::ChooseComponent { available }),
    }
}

/// Check that `old` is the base image a delta component expects.
pub fn check_base(c: &Component<'_>, old: Option<&[u8]>) -> Result<(), Error> {
    if c.kind != PayloadKind::Delta {
        return Ok(());
    }
    let Some(old) = old else {
        return Err(Error::NeedBase {
            component: c.name.into(),
            from_version: c.from_version.into(),
        });
    };
    let sha = sha2_digest(old);
    if !sha.starts_with(&c.source_hash) || old.len() as u64 != c.source_size {
        return Err(Error::WrongBase {
            component: c.name.into(),
            from_version: c.from_version.into(),
            expected_size: c.source_size,
            expected_sha: hex::encode(c.source_hash),
            actual_size: old.len() as u64,
            actual_sha: hex::encode(sha),
        });
    }
    Ok(())
}

fn copy_range(
    from: &[u8],
    offset: u64,
    buf: &mut [u8],
    reason: &'static str,
) -> Result<(), DeltaError> {
    let s = usize::try_from(offset).unwrap_or(usize::MAX);
    let src = from
        .get(s..s.saturating_add(buf.len()))
        .ok_or(DeltaError::Corrupt { block: 0, reason })?;
    buf.copy_from_slice(src);
    Ok(())
}

struct VecIo<'a> {
    source: &'a [u8],
    out: Vec<u8>,
}

impl PatchIo for VecIo<'_> {
    type Error = DeltaError;
    fn read_source(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), DeltaError> {
        copy_range(self.source, offset, buf, "read beyond the source")
    }
    fn write_target(&mut self, data: &[u8]) -> Result<(), DeltaError> {
        self.out.extend_from_slice(data);
        Ok(())
    }
    fn read_target(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), DeltaError> {
        copy_range(&self.out, offset, buf, "match beyond the target written")
    }
}

/// Decode a component's payload against `old` and check the target hash.
pub fn apply_component(
    p: &Package<'_>,
    c: &Component<'_>,
    old: Option<&[u8]>,
    progress: &mut dyn FnMut(Progress),
) -> Result<Vec<u8>, Error> {
    apply_component_until(p, c, old, progress, &crate::diff::NEVER)
}

/// [`apply_component`] that ends with [`Error::Cancelled`] soon after `stop` is set (between
/// 64 KiB chunks of the payload).
pub fn apply_component_until(
    p: &Package<'_>,
    c: &Component<'_>,
    old: Option<&[u8]>,
    progress: &mut dyn FnMut(Progress),
    stop: &core::sync::atomic::AtomicBool,
) -> Result<Vec<u8>, Error> {
    check_base(c, old)?;
    let payload = p.payload(c);
    let out = match c.codec {
        Codec::Stored => payload.to_vec(),
        Codec::Bsd3 => {
            let h = crate::delta::StreamHeader::parse(payload)?;
            c.check_stream_header(&h)?;
            let source: &[u8] = if c.kind == PayloadKind::Delta {
                old.unwrap_or(&[])
            } else {
                &[]
            };
            let mut io = VecIo {
                source,
                // Reserve what the header says only up to 16 MiB: the vector grows with what
                // really decodes, so a hostile size cannot reserve gigabytes up front.
                out: Vec::with_capacity(usize::try_from(c.target_size.min(16 << 20)).unwrap_or(0)),
            };
            let mut d: DeltaDecoder = DeltaDecoder::new(source.len() as u64);
            let total = payload.len() as u64;
            let mut done = 0u64;
            for chunk in payload.chunks(64 * 1024) {
                if stop.load(core::sync::atomic::Ordering::Relaxed) {
                    return Err(Error::Cancelled);
                }
                d.push_all(chunk, &mut io).map_err(|e| match e {
                    ApplyError::Delta(e) | ApplyError::Io(e) => Error::Delta(e),
                })?;
                done += chunk.len() as u64;
                progress(Progress::Bytes { done, total });
            }
            d.finish()?;
            io.out
        }
    };
    if sha2_digest(&out) != c.target_sha256 || out.len() as u64 != c.target_size {
        return Err(Error::TargetHash {
            component: c.name.into(),
        });
    }
    Ok(out)
}
