//! The BlueSphere package: a fixed header, a signed manifest, a signature, then the payloads.
//!
//! | part | size | notes |
//! |---|---|---|
//! | header | 16 | fixed layout, parsed without allocation ([`Header`]) |
//! | manifest | `manifest_len` (<= 64 KiB) | products, components, hashes ([`Manifest`]) |
//! | signature | 64 | ECDSA P-256 `r || s` over SHA-256 of header + manifest |
//! | payloads | `payload_len` | each component's payload at its `payload_offset` |
//!
//! Every length is bounded and checked before use; see `docs/FORMAT.md` for the byte tables.

#[cfg(feature = "std")]
pub mod build;
mod manifest;
mod verify;

pub use manifest::{Codec, Component, Dependency, Manifest, PayloadKind, Reader, SOURCE_HASH_LEN};
pub use verify::{key_id, verify_signature, verify_signature_parts, Verified};

/// Package magic.
pub const MAGIC: [u8; 4] = *b"BSPK";
/// The one format version this code reads and writes.
pub const FORMAT_VERSION: u16 = 3;
/// Size of the fixed header.
pub const HEADER_LEN: usize = 16;
/// Largest manifest accepted.
pub const MAX_MANIFEST_LEN: u32 = 65_535;
/// Bytes of the signer's key id carried in the header.
pub const KEY_ID_LEN: usize = 4;
/// Size of a signature (P-256 `r || s`).
pub const SIGNATURE_LEN: usize = 64;
/// Signature algorithm id: ECDSA P-256 over SHA-256.
pub const SIG_ECDSA_P256_SHA256: u8 = 1;
/// Most components in one package.
pub const MAX_COMPONENTS: u8 = 16;
/// Most dependencies per component.
pub const MAX_DEPS: u8 = 8;

/// Errors in a package's structure or authenticity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PackageError {
    /// Fewer bytes than the structure needs.
    #[error("package is truncated: {what} needs {need} bytes, only {have} present")]
    Truncated {
        /// Which part.
        what: &'static str,
        /// Bytes needed.
        need: u64,
        /// Bytes present.
        have: u64,
    },
    /// Not a package.
    #[error("not a BlueSphere package (magic is not \"BSPK\")")]
    BadMagic,
    /// A newer format.
    #[error(
        "package format version {0} is not supported (this tool reads version 3): update the tool or repack"
    )]
    UnsupportedVersion(u16),
    /// A header field is out of range.
    #[error("package header is invalid: {0}")]
    BadHeader(&'static str),
    /// The manifest is malformed.
    #[error("package manifest is invalid at byte {offset}: {reason}")]
    BadManifest {
        /// Offset in the manifest.
        offset: u32,
        /// What is wrong.
        reason: &'static str,
    },
    /// No configured key has this id.
    #[error("package is signed by an unknown key (key id {key_id}): give the matching public key")]
    UnknownKey {
        /// Key id from the header.
        key_id: KeyId,
    },
    /// The signature does not verify.
    #[error("package signature is invalid: the package was modified or signed by another key")]
    BadSignature,
    /// A payload's checksum does not match the manifest.
    #[error(
        "payload of component {component} is corrupt (CRC-32 mismatch): copy the package again"
    )]
    PayloadHash {
        /// Component index.
        component: u8,
    },
    /// Extra bytes after the payloads.
    #[error("package has {0} unexpected bytes after its payloads")]
    TrailingBytes(u64),
}

/// A package's key id (the first [`KEY_ID_LEN`] bytes of [`key_id`]), shown as hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyId(pub [u8; KEY_ID_LEN]);

impl core::fmt::Display for KeyId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// The fixed 16-byte header.
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 4 | magic `BSPK` |
/// | 4 | 1 | format version (3) |
/// | 5 | 1 | component count (1..=16) |
/// | 6 | 2 | manifest length (LE, 1..=65535) |
/// | 8 | 4 | key id: first 4 bytes of SHA-256 of the signer's SEC1 uncompressed key |
/// | 12 | 4 | payload area length (LE) |
///
/// The signature is always ECDSA P-256 over SHA-256, 64 bytes (`r || s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Manifest length.
    pub manifest_len: u32,
    /// Signature algorithm (always [`SIG_ECDSA_P256_SHA256`] in format 2).
    pub sig_alg: u8,
    /// Number of components.
    pub component_count: u8,
    /// Signature length (always [`SIGNATURE_LEN`]).
    pub sig_len: u16,
    /// First [`KEY_ID_LEN`] bytes of the signer's [`key_id`].
    pub key_id: [u8; KEY_ID_LEN],
    /// Total payload bytes after the signature.
    pub payload_len: u64,
}

impl Header {
    /// Parse and bound-check the header (the first [`HEADER_LEN`] bytes of a package).
    pub fn parse(b: &[u8]) -> Result<Self, PackageError> {
        let h: &[u8; HEADER_LEN] =
            b.get(..HEADER_LEN)
                .and_then(|s| s.try_into().ok())
                .ok_or(PackageError::Truncated {
                    what: "header",
                    need: HEADER_LEN as u64,
                    have: b.len() as u64,
                })?;
        if h[0..4] != MAGIC {
            return Err(PackageError::BadMagic);
        }
        let version = u16::from(h[4]);
        if version != FORMAT_VERSION {
            return Err(PackageError::UnsupportedVersion(version));
        }
        let component_count = h[5];
        if component_count == 0 || component_count > MAX_COMPONENTS {
            return Err(PackageError::BadHeader(
                "component count out of range (1..=16)",
            ));
        }
        let manifest_len = u32::from(u16::from_le_bytes([h[6], h[7]]));
        if manifest_len == 0 {
            return Err(PackageError::BadHeader("manifest length is 0"));
        }
        let mut key_id = [0u8; KEY_ID_LEN];
        key_id.copy_from_slice(&h[8..12]);
        let payload_len = u64::from(u32::from_le_bytes([h[12], h[13], h[14], h[15]]));
        Ok(Self {
            manifest_len,
            sig_alg: SIG_ECDSA_P256_SHA256,
            component_count,
            sig_len: SIGNATURE_LEN as u16,
            key_id,
            payload_len,
        })
    }

    /// Serialize (`manifest_len` and `payload_len` must fit their fields: the builder checks).
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0..4].copy_from_slice(&MAGIC);
        h[4] = FORMAT_VERSION as u8;
        h[5] = self.component_count;
        h[6..8].copy_from_slice(&(self.manifest_len.min(MAX_MANIFEST_LEN) as u16).to_le_bytes());
        h[8..12].copy_from_slice(&self.key_id);
        h[12..16]
            .copy_from_slice(&(self.payload_len.min(u64::from(u32::MAX)) as u32).to_le_bytes());
        h
    }

    /// Offset of the signature.
    pub fn signature_offset(&self) -> u64 {
        HEADER_LEN as u64 + u64::from(self.manifest_len)
    }

    /// Offset of the payload area.
    pub fn payload_offset(&self) -> u64 {
        self.signature_offset() + SIGNATURE_LEN as u64
    }

    /// Total package length.
    pub fn total_len(&self) -> u64 {
        self.payload_offset() + self.payload_len
    }
}

/// A whole package in memory, structure checked (not yet authenticated: see [`Package::verify`]).
#[derive(Debug, Clone, Copy)]
pub struct Package<'a> {
    /// The header.
    pub header: Header,
    /// The manifest.
    pub manifest: Manifest<'a>,
    bytes: &'a [u8],
}

impl<'a> Package<'a> {
    /// Parse `bytes` (a whole package): header, manifest, lengths.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, PackageError> {
        let header = Header::parse(bytes)?;
        let total = header.total_len();
        if (bytes.len() as u64) < total {
            return Err(PackageError::Truncated {
                what: "package",
                need: total,
                have: bytes.len() as u64,
            });
        }
        if bytes.len() as u64 > total {
            return Err(PackageError::TrailingBytes(bytes.len() as u64 - total));
        }
        let m = bytes
            .get(HEADER_LEN..HEADER_LEN + header.manifest_len as usize)
            .ok_or(PackageError::BadHeader("manifest out of range"))?;
        let manifest = Manifest::parse(m, &header)?;
        Ok(Self {
            header,
            manifest,
            bytes,
        })
    }

    /// Header and manifest: the bytes the signature covers.
    pub fn signed_region(&self) -> &'a [u8] {
        self.bytes
            .get(..self.header.signature_offset() as usize)
            .unwrap_or(&[])
    }

    /// The raw signature.
    pub fn signature(&self) -> &'a [u8] {
        let s = self.header.signature_offset() as usize;
        self.bytes.get(s..s + SIGNATURE_LEN).unwrap_or(&[])
    }

    /// The payload of a component.
    pub fn payload(&self, c: &Component<'_>) -> &'a [u8] {
        let base = self.header.payload_offset();
        let start = (base + c.payload_offset) as usize;
        self.bytes
            .get(start..start + c.payload_size as usize)
            .unwrap_or(&[])
    }

    /// Check the signature against `keys` (tried by key id) and every payload's CRC-32.
    pub fn verify(&self, keys: &[p256::ecdsa::VerifyingKey]) -> Result<Verified, PackageError> {
        let v = verify_signature(self.signed_region(), self.signature(), &self.header, keys)?;
        self.check_payloads()?;
        Ok(v)
    }

    /// Check every payload against its CRC-32 (no key needed: a damaged file or transfer).
    pub fn check_payloads(&self) -> Result<(), PackageError> {
        for (i, c) in self.manifest.components().enumerate() {
            let c = c?;
            if crate::crc::crc32(self.payload(&c)) != c.payload_crc32 {
                return Err(PackageError::PayloadHash { component: i as u8 });
            }
        }
        Ok(())
    }
}

/// SHA-256 of `data`.
pub fn sha2_digest(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(data).into()
}
