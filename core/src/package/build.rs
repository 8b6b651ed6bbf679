//! Building and signing packages (host side).

use super::{
    Header, Manifest, PackageError, HEADER_LEN, KEY_ID_LEN, MAX_COMPONENTS, MAX_DEPS,
    SIGNATURE_LEN, SIG_ECDSA_P256_SHA256, SOURCE_HASH_LEN,
};
use crate::delta::Params;
use crate::diff::{make_delta_until, DiffError};
use crate::package::manifest::{MAX_ID_LEN, MAX_NAME_LEN};
use crate::package::{key_id, sha2_digest, Codec, PayloadKind};
use crate::version::Version;
use crate::Progress;
use core::sync::atomic::{AtomicBool, Ordering};
use p256::ecdsa::{
    signature::{Keypair, Signer},
    Signature, VerifyingKey,
};

/// What to put in one component.
#[derive(Debug, Clone)]
pub struct ComponentSpec {
    /// Component name.
    pub name: String,
    /// Installed version the delta applies to (`None` for a full image).
    pub from_version: Option<String>,
    /// Version this installs.
    pub to_version: String,
    /// Anti-rollback counter.
    pub security_counter: u32,
    /// Load address.
    pub load_address: u64,
    /// Old image (for a delta).
    pub old: Option<Vec<u8>>,
    /// New image.
    pub new: Vec<u8>,
    /// Coding profile.
    pub params: Params,
    /// `(component, min_version)` dependencies.
    pub dependencies: Vec<(String, String)>,
}

/// A whole package description.
#[derive(Debug, Clone)]
pub struct PackageSpec {
    /// Product id.
    pub product_id: String,
    /// Hardware id.
    pub hardware_id: String,
    /// Creation time (seconds since 1970, UTC).
    pub created: u64,
    /// Components.
    pub components: Vec<ComponentSpec>,
}

/// Why a package could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A field is out of range.
    #[error("{0}")]
    Invalid(String),
    /// Diffing failed.
    #[error(transparent)]
    Diff(#[from] DiffError),
    /// The caller's stop flag was set.
    #[error("cancelled")]
    Cancelled,
    /// Self-check failed (a bug).
    #[error("internal error: the built package does not parse: {0}")]
    SelfCheck(#[from] PackageError),
}

fn put_str(m: &mut Vec<u8>, s: &str, min: usize, max: usize, what: &str) -> Result<(), BuildError> {
    if s.len() < min || s.len() > max {
        return Err(BuildError::Invalid(format!(
            "{what} must be {min} to {max} bytes long, got {:?} ({} bytes)",
            s,
            s.len()
        )));
    }
    if s.chars().any(char::is_control) {
        return Err(BuildError::Invalid(format!(
            "{what} contains control characters"
        )));
    }
    m.push(s.len() as u8);
    m.extend_from_slice(s.as_bytes());
    Ok(())
}

/// Append `v` as an unsigned LEB128 number, minimally encoded (what
/// [`super::Reader::varint`] reads).
pub fn put_varint(m: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7F) as u8;
        v >>= 7;
        if v == 0 {
            m.push(b);
            return;
        }
        m.push(b | 0x80);
    }
}

fn check_version(v: &str, what: &str) -> Result<(), BuildError> {
    Version::parse(v).map(|_| ()).map_err(|_| {
        BuildError::Invalid(format!(
            "{what} {v:?} is not a semantic version (expected MAJOR.MINOR.PATCH, e.g. 1.4.2)"
        ))
    })
}

/// Build and sign a package with `key` (a `p256` signing key, or a
/// [`crate::keys::Signer`]). `progress` receives [`Progress`] events.
pub fn build_package<K: Signer<Signature> + Keypair<VerifyingKey = VerifyingKey>>(
    spec: &PackageSpec,
    key: &K,
    progress: &mut dyn FnMut(Progress),
) -> Result<Vec<u8>, BuildError> {
    build_package_until(spec, key, progress, &crate::diff::NEVER)
}

/// [`build_package`] that ends with [`BuildError::Cancelled`] soon after `stop` is set.
pub fn build_package_until<K: Signer<Signature> + Keypair<VerifyingKey = VerifyingKey>>(
    spec: &PackageSpec,
    key: &K,
    progress: &mut dyn FnMut(Progress),
    stop: &AtomicBool,
) -> Result<Vec<u8>, BuildError> {
    if spec.components.is_empty() || spec.components.len() > MAX_COMPONENTS as usize {
        return Err(BuildError::Invalid(
            "a package holds 1 to 16 components".into(),
        ));
    }
    let mut m = Vec::new();
    put_str(&mut m, &spec.product_id, 1, MAX_ID_LEN, "product id")?;
    put_str(&mut m, &spec.hardware_id, 1, MAX_ID_LEN, "hardware id")?;
    put_varint(&mut m, spec.created);
    let mut payloads: Vec<u8> = Vec::new();
    let total = spec.components.len();
    for (i, c) in spec.components.iter().enumerate() {
        if spec.components[..i].iter().any(|o| o.name == c.name) {
            return Err(BuildError::Invalid(format!(
                "component {:?} appears twice",
                c.name
            )));
        }
        if c.new.is_empty() {
            return Err(BuildError::Invalid(format!(
                "component {:?} has an empty image",
                c.name
            )));
        }
        progress(Progress::Stage {
            name: "diff",
            component: i,
            of: total,
        });
        put_str(&mut m, &c.name, 1, MAX_NAME_LEN, "component name")?;
        let from = c.from_version.as_deref().unwrap_or("");
        if c.old.is_some() {
            if from.is_empty() {
                return Err(BuildError::Invalid(
                    "a delta needs the version it applies to (the from version)".into(),
                ));
            }
            check_version(from, "from version")?;
        }
        let from = if c.old.is_some() { from } else { "" };
        put_str(&mut m, from, 0, MAX_NAME_LEN, "from version")?;
        check_version(&c.to_version, "to version")?;
        put_str(&mut m, &c.to_version, 1, MAX_NAME_LEN, "to version")?;
        put_varint(&mut m, u64::from(c.security_counter));
        put_varint(&mut m, c.load_address);
        // The images are hashed on another thread while the delta is made (its suffix
        // sorting runs on one core); small ones here (a thread costs more than it saves).
        let old = c.old.as_deref();
        let hash = || (old.map(sha2_digest), sha2_digest(&c.new));
        let (delta, (old_hash, new_hash)) = if c.new.len() < crate::delta::SMALL_TARGET {
            (
                make_delta_until(old.unwrap_or(&[]), &c.new, c.params, stop),
                hash(),
            )
        } else {
            let (delta, hashes) = std::thread::scope(|sc| {
                let h = sc.spawn(hash);
                let d = make_delta_until(old.unwrap_or(&[]), &c.new, c.params, stop);
                (d, h.join())
            });
            let hashes =
                hashes.map_err(|_| BuildError::Invalid("hashing the images failed".into()))?;
            (delta, hashes)
        };
        let kind = if c.old.is_some() {
            PayloadKind::Delta
        } else {
            PayloadKind::Full
        };
        let payload = match delta {
            Err(DiffError::Cancelled) => return Err(BuildError::Cancelled),
            d => d?,
        };
        if stop.load(Ordering::Relaxed) {
            return Err(BuildError::Cancelled);
        }
        if c.dependencies.len() > MAX_DEPS as usize {
            return Err(BuildError::Invalid(
                "at most 8 dependencies per component".into(),
            ));
        }
        m.push(kind as u8 | ((Codec::Bsd3 as u8) << 1) | ((c.dependencies.len() as u8) << 3));
        let u32_of = |v: u64, what: &str| {
            u32::try_from(v).map_err(|_| BuildError::Invalid(format!("{what} over 4 GiB")))
        };
        if let (Some(old), Some(h)) = (&c.old, old_hash) {
            put_varint(&mut m, u64::from(u32_of(old.len() as u64, "old image")?));
            m.extend_from_slice(&h[..SOURCE_HASH_LEN]);
        }
        put_varint(&mut m, u64::from(u32_of(c.new.len() as u64, "new image")?));
        m.extend_from_slice(&new_hash);
        u32_of(payloads.len() as u64 + payload.len() as u64, "payload area")?;
        put_varint(&mut m, payload.len() as u64);
        m.extend_from_slice(&crate::crc::crc32(&payload).to_le_bytes());
        for (dep, v) in &c.dependencies {
            put_str(&mut m, dep, 1, MAX_NAME_LEN, "dependency name")?;
            check_version(v, "dependency version")?;
            put_str(&mut m, v, 1, MAX_NAME_LEN, "dependency version")?;
        }
        payloads.extend_from_slice(&payload);
    }
    progress(Progress::Stage {
        name: "sign",
        component: total,
        of: total,
    });
    let header = Header {
        manifest_len: u32::try_from(m.len())
            .ok()
            .filter(|&l| l <= super::MAX_MANIFEST_LEN)
            .ok_or_else(|| BuildError::Invalid("manifest larger than 65,535 bytes".into()))?,
        sig_alg: SIG_ECDSA_P256_SHA256,
        component_count: spec.components.len() as u8,
        sig_len: SIGNATURE_LEN as u16,
        key_id: {
            let mut id = [0u8; KEY_ID_LEN];
            id.copy_from_slice(&key_id(&key.verifying_key())[..KEY_ID_LEN]);
            id
        },
        payload_len: payloads.len() as u64,
    };
    let mut out = Vec::with_capacity(HEADER_LEN + m.len() + SIGNATURE_LEN + payloads.len());
    out.extend_from_slice(&header.to_bytes());
    out.extend_from_slice(&m);
    let sig: Signature = key.try_sign(&out).map_err(|_| {
        BuildError::Invalid("signing failed: the system gave no random numbers".into())
    })?;
    out.extend_from_slice(&sig.to_bytes());
    out.extend_from_slice(&payloads);
    // Self-check: what we write must parse.
    let h = Header::parse(&out)?;
    Manifest::parse(&m, &h)?;
    Ok(out)
}
