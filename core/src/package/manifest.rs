//! The signed manifest: binary, little-endian, every string length-prefixed and bounded.
//! Parsed in place (`&str` into the package bytes); no allocation.

use super::{Header, PackageError, MAX_COMPONENTS, MAX_DEPS};
use crate::delta::{self, StreamHeader};
use crate::version::Version;

/// Longest product / hardware id.
pub const MAX_ID_LEN: usize = 64;
/// Longest component name or version string.
pub const MAX_NAME_LEN: usize = 32;

/// Whole image or delta against an installed image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "std", derive(serde::Serialize))]
#[cfg_attr(feature = "std", serde(rename_all = "lowercase"))]
pub enum PayloadKind {
    /// The payload encodes the whole target image.
    Full = 0,
    /// The payload encodes the target against the installed source image.
    Delta = 1,
}

/// How the payload is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "std", derive(serde::Serialize))]
#[cfg_attr(feature = "std", serde(rename_all = "lowercase"))]
pub enum Codec {
    /// The target bytes as they are (full images only).
    Stored = 0,
    /// A BSD2 stream (see [`crate::delta`]).
    Bsd1 = 1,
}

/// A byte cursor that reports where a problem is.
#[derive(Debug, Clone, Copy)]
pub struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Read `b` from its start.
    pub fn new(b: &'a [u8]) -> Self {
        Self { b, pos: 0 }
    }

    /// Error at the current position.
    pub fn err(&self, reason: &'static str) -> PackageError {
        PackageError::BadManifest {
            offset: self.pos as u32,
            reason,
        }
    }

    /// Take `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], PackageError> {
        let s = self
            .b
            .get(self.pos..self.pos.saturating_add(n))
            .ok_or(self.err("ends early"))?;
        self.pos += n;
        Ok(s)
    }

    fn arr<const N: usize>(&mut self) -> Result<[u8; N], PackageError> {
        let s = self.bytes(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8, PackageError> {
        Ok(self.arr::<1>()?[0])
    }

    /// u32 LE.
    pub fn u32(&mut self) -> Result<u32, PackageError> {
        Ok(u32::from_le_bytes(self.arr()?))
    }

    /// u64 LE.
    pub fn u64(&mut self) -> Result<u64, PackageError> {
        Ok(u64::from_le_bytes(self.arr()?))
    }

    /// 32-byte hash.
    pub fn hash(&mut self) -> Result<[u8; 32], PackageError> {
        self.arr()
    }

    /// A string with a one-byte length, `min..=max` bytes of UTF-8.
    pub fn str(&mut self, min: usize, max: usize) -> Result<&'a str, PackageError> {
        let n = self.u8()? as usize;
        if n < min || n > max {
            return Err(self.err("string length out of range"));
        }
        let s = self.bytes(n)?;
        let s = core::str::from_utf8(s).map_err(|_| self.err("string is not UTF-8"))?;
        if s.chars().any(char::is_control) {
            return Err(self.err("string contains control characters"));
        }
        Ok(s)
    }

    /// True when every byte was read.
    pub fn at_end(&self) -> bool {
        self.pos == self.b.len()
    }
}

/// A dependency: `component >= min_version` must be installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "std", derive(serde::Serialize))]
pub struct Dependency<'a> {
    /// Component name.
    pub component: &'a str,
    /// Lowest acceptable version.
    pub min_version: &'a str,
}

/// One component's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "std", derive(serde::Serialize))]
pub struct Component<'a> {
    /// Component name (e.g. `main`, `modem`).
    pub name: &'a str,
    /// Version the delta applies to (empty for a full image).
    pub from_version: &'a str,
    /// Version this installs.
    pub to_version: &'a str,
    /// Anti-rollback counter: a device refuses a lower one than it has.
    pub security_counter: u32,
    /// Where the image is loaded.
    pub load_address: u64,
    /// Full or delta.
    pub kind: PayloadKind,
    /// Payload encoding.
    pub codec: Codec,
    /// Source image size (delta) or 0.
    pub source_size: u64,
    /// Source image SHA-256 (delta) or zeros.
    #[cfg_attr(feature = "std", serde(serialize_with = "crate::hexser"))]
    pub source_sha256: [u8; 32],
    /// Target image size.
    pub target_size: u64,
    /// Target image SHA-256.
    #[cfg_attr(feature = "std", serde(serialize_with = "crate::hexser"))]
    pub target_sha256: [u8; 32],
    /// Payload offset inside the payload area.
    pub payload_offset: u64,
    /// Payload size.
    pub payload_size: u64,
    /// Payload SHA-256.
    #[cfg_attr(feature = "std", serde(serialize_with = "crate::hexser"))]
    pub payload_sha256: [u8; 32],
    #[cfg_attr(feature = "std", serde(skip))]
    deps_raw: &'a [u8],
    /// Number of dependencies.
    pub dep_count: u8,
}

impl<'a> Component<'a> {
    /// Dependencies.
    pub fn dependencies(&self) -> impl Iterator<Item = Dependency<'a>> + 'a {
        let mut r = Reader::new(self.deps_raw);
        (0..self.dep_count).filter_map(move |_| {
            let component = r.str(1, MAX_NAME_LEN).ok()?;
            let min_version = r.str(1, MAX_NAME_LEN).ok()?;
            Some(Dependency {
                component,
                min_version,
            })
        })
    }

    fn parse(r: &mut Reader<'a>, payload_len: u64) -> Result<Self, PackageError> {
        let name = r.str(1, MAX_NAME_LEN)?;
        let from_version = r.str(0, MAX_NAME_LEN)?;
        if !from_version.is_empty() {
            Version::parse(from_version).map_err(|_| r.err("from version is not semver"))?;
        }
        let to_version = r.str(1, MAX_NAME_LEN)?;
        Version::parse(to_version).map_err(|_| r.err("to version is not semver"))?;
        let security_counter = r.u32()?;
        let load_address = r.u64()?;
        let kind = match r.u8()? {
            0 => PayloadKind::Full,
            1 => PayloadKind::Delta,
            _ => return Err(r.err("unknown payload kind")),
        };
        let codec = match r.u8()? {
            0 => Codec::Stored,
            1 => Codec::Bsd1,
            _ => return Err(r.err("unknown codec")),
        };
        if r.u8()? != 0 {
            return Err(r.err("reserved component flags are not zero"));
        }
        let source_size = u64::from(r.u32()?);
        let source_sha256 = r.hash()?;
        let target_size = u64::from(r.u32()?);
        let target_sha256 = r.hash()?;
        let payload_offset = u64::from(r.u32()?);
        let payload_size = u64::from(r.u32()?);
        let payload_sha256 = r.hash()?;
        let dep_count = r.u8()?;
        if dep_count > MAX_DEPS {
            return Err(r.err("too many dependencies (at most 8)"));
        }
        let dep_start = *r;
        for _ in 0..dep_count {
            r.str(1, MAX_NAME_LEN)?;
            let v = r.str(1, MAX_NAME_LEN)?;
            Version::parse(v).map_err(|_| r.err("dependency version is not semver"))?;
        }
        let deps_raw = dep_start
            .b
            .get(dep_start.pos..r.pos)
            .ok_or(r.err("dependencies out of range"))?;

        // Consistency.
        match kind {
            PayloadKind::Full => {
                if source_size != 0 || source_sha256 != [0; 32] || !from_version.is_empty() {
                    return Err(r.err("full image with source fields set"));
                }
            }
            PayloadKind::Delta => {
                if codec != Codec::Bsd1 {
                    return Err(r.err("delta payload must use the BSD2 codec"));
                }
                if from_version.is_empty() {
                    return Err(r.err("delta without a from version"));
                }
            }
        }
        let end = payload_offset
            .checked_add(payload_size)
            .ok_or(r.err("payload range overflows"))?;
        if end > payload_len {
            return Err(r.err("payload lies outside the payload area"));
        }
        let max_payload = match codec {
            Codec::Stored => target_size,
            Codec::Bsd1 => {
                let blocks = target_size.div_ceil(1 << delta::MIN_BLOCK_LOG2);
                delta::HEADER_LEN as u64
                    + target_size * 2
                    + blocks * (delta::BLOCK_HEADER_LEN as u64 + 64)
            }
        };
        if payload_size > max_payload || (codec == Codec::Stored && payload_size != target_size) {
            return Err(r.err("payload size inconsistent with the target size"));
        }
        Ok(Self {
            name,
            from_version,
            to_version,
            security_counter,
            load_address,
            kind,
            codec,
            source_size,
            source_sha256,
            target_size,
            target_sha256,
            payload_offset,
            payload_size,
            payload_sha256,
            deps_raw,
            dep_count,
        })
    }

    /// Check that a BSD2 payload's stream header agrees with this record.
    pub fn check_stream_header(&self, h: &StreamHeader) -> Result<(), PackageError> {
        if u64::from(h.target_size) != self.target_size
            || u64::from(h.source_size) != self.source_size
        {
            return Err(PackageError::BadManifest {
                offset: 0,
                reason: "delta stream sizes disagree with the manifest",
            });
        }
        Ok(())
    }
}

/// The manifest, validated.
#[derive(Debug, Clone, Copy)]
pub struct Manifest<'a> {
    /// Product id.
    pub product_id: &'a str,
    /// Hardware id (board revision).
    pub hardware_id: &'a str,
    /// Creation time, seconds since 1970 (UTC).
    pub created: u64,
    /// Number of components.
    pub component_count: u8,
    components_raw: &'a [u8],
    payload_len: u64,
}

impl<'a> Manifest<'a> {
    /// Parse and validate every field of `b` for a package with header `h`.
    pub fn parse(b: &'a [u8], h: &Header) -> Result<Self, PackageError> {
        let mut r = Reader::new(b);
        let product_id = r.str(1, MAX_ID_LEN)?;
        let hardware_id = r.str(1, MAX_ID_LEN)?;
        let created = r.u64()?;
        let component_count = r.u8()?;
        if component_count != h.component_count || component_count > MAX_COMPONENTS {
            return Err(r.err("component count disagrees with the header"));
        }
        let start = r;
        let mut ranges: [(u64, u64); MAX_COMPONENTS as usize] = [(0, 0); MAX_COMPONENTS as usize];
        for i in 0..component_count as usize {
            let c = Component::parse(&mut r, h.payload_len)?;
            for (j, &(s, e)) in ranges.iter().take(i).enumerate() {
                let _ = j;
                if c.payload_offset < e && s < c.payload_offset + c.payload_size {
                    return Err(r.err("payloads overlap"));
                }
            }
            if let Some(slot) = ranges.get_mut(i) {
                *slot = (c.payload_offset, c.payload_offset + c.payload_size);
            }
        }
        if !r.at_end() {
            return Err(r.err("unexpected bytes after the last component"));
        }
        let total: u64 = ranges.iter().map(|(s, e)| e - s).sum();
        if total != h.payload_len {
            return Err(r.err("payloads do not fill the payload area"));
        }
        Ok(Self {
            product_id,
            hardware_id,
            created,
            component_count,
            components_raw: start.b.get(start.pos..).unwrap_or(&[]),
            payload_len: h.payload_len,
        })
    }

    /// The components, in order.
    pub fn components(&self) -> impl Iterator<Item = Result<Component<'a>, PackageError>> + 'a {
        let mut r = Reader::new(self.components_raw);
        let payload_len = self.payload_len;
        (0..self.component_count).map(move |_| Component::parse(&mut r, payload_len))
    }

    /// The component called `name`.
    pub fn component(&self, name: &str) -> Option<Component<'a>> {
        self.components()
            .filter_map(Result::ok)
            .find(|c| c.name == name)
    }
}
