//! The signed manifest: binary, little-endian, every string length-prefixed and bounded.
//! Parsed in place (`&str` into the package bytes); no allocation.

use super::{Header, PackageError, MAX_COMPONENTS, MAX_DEPS};
use crate::delta::{self, StreamHeader};
use crate::version::Version;

/// Longest product / hardware id.
pub const MAX_ID_LEN: usize = 64;
/// Longest component name or version string.
pub const MAX_NAME_LEN: usize = 32;
/// Bytes of the source image's SHA-256 kept in a delta's record.
pub const SOURCE_HASH_LEN: usize = 8;

/// Whole image or delta against an installed image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "std", derive(serde::Serialize))]
#[cfg_attr(feature = "std", serde(rename_all = "lowercase"))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
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
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub enum Codec {
    /// The target bytes as they are (full images only).
    Stored = 0,
    /// A BSD3 stream (see [`crate::delta`]).
    Bsd3 = 1,
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

    /// A fixed-size field (a hash or a hash prefix).
    pub fn hash<const N: usize>(&mut self) -> Result<[u8; N], PackageError> {
        self.arr()
    }

    /// An unsigned LEB128 number (7 bits per byte, low group first), minimally encoded and
    /// at most `max`.
    pub fn varint(&mut self, max: u64) -> Result<u64, PackageError> {
        let mut v: u64 = 0;
        for i in 0..10u32 {
            let b = self.u8()?;
            let group = u64::from(b & 0x7F);
            if i == 9 && group > 1 {
                return Err(self.err("number too large"));
            }
            v |= group << (7 * i);
            if b & 0x80 == 0 {
                if i > 0 && group == 0 {
                    return Err(self.err("number not minimally encoded"));
                }
                if v > max {
                    return Err(self.err("number out of range"));
                }
                return Ok(v);
            }
        }
        Err(self.err("number too long"))
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
    /// The first [`SOURCE_HASH_LEN`] bytes of the source image's SHA-256 (delta) or zeros:
    /// which installed image the delta applies to (the signed target SHA-256 is what
    /// authenticates the result).
    #[cfg_attr(feature = "std", serde(serialize_with = "crate::hexser"))]
    pub source_hash: [u8; SOURCE_HASH_LEN],
    /// Target image size.
    pub target_size: u64,
    /// Target image SHA-256.
    #[cfg_attr(feature = "std", serde(serialize_with = "crate::hexser"))]
    pub target_sha256: [u8; 32],
    /// Payload offset inside the payload area (the sum of the earlier payloads' sizes).
    pub payload_offset: u64,
    /// Payload size.
    pub payload_size: u64,
    /// CRC-32 of the payload: catches a damaged file or transfer early (authenticity comes
    /// from the signed target SHA-256, checked before anything is marked bootable).
    pub payload_crc32: u32,
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

    fn parse(
        r: &mut Reader<'a>,
        payload_offset: u64,
        payload_len: u64,
    ) -> Result<Self, PackageError> {
        let name = r.str(1, MAX_NAME_LEN)?;
        let from_version = r.str(0, MAX_NAME_LEN)?;
        if !from_version.is_empty() {
            Version::parse(from_version).map_err(|_| r.err("from version is not semver"))?;
        }
        let to_version = r.str(1, MAX_NAME_LEN)?;
        Version::parse(to_version).map_err(|_| r.err("to version is not semver"))?;
        let security_counter = r.varint(u64::from(u32::MAX))? as u32;
        let load_address = r.varint(u64::MAX)?;
        let flags = r.u8()?;
        let kind = match flags & 1 {
            0 => PayloadKind::Full,
            _ => PayloadKind::Delta,
        };
        let codec = match (flags >> 1) & 3 {
            0 => Codec::Stored,
            1 => Codec::Bsd3,
            _ => return Err(r.err("unknown codec")),
        };
        if flags >> 7 != 0 {
            return Err(r.err("reserved component flags are not zero"));
        }
        let dep_count = (flags >> 3) & 0x0F;
        if dep_count > MAX_DEPS {
            return Err(r.err("too many dependencies (at most 8)"));
        }
        let (source_size, source_hash) = match kind {
            PayloadKind::Delta => (r.varint(u64::from(u32::MAX))?, r.hash()?),
            PayloadKind::Full => (0, [0; SOURCE_HASH_LEN]),
        };
        let target_size = r.varint(u64::from(u32::MAX))?;
        if target_size == 0 {
            return Err(r.err("component with an empty image (target size 0)"));
        }
        let target_sha256 = r.hash()?;
        let payload_size = r.varint(u64::from(u32::MAX))?;
        let payload_crc32 = r.u32()?;
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
                if !from_version.is_empty() {
                    return Err(r.err("full image with a from version"));
                }
            }
            PayloadKind::Delta => {
                if codec != Codec::Bsd3 {
                    return Err(r.err("delta payload must use the BSD3 codec"));
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
            Codec::Bsd3 => {
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
            source_hash,
            target_size,
            target_sha256,
            payload_offset,
            payload_size,
            payload_crc32,
            deps_raw,
            dep_count,
        })
    }

    /// Check that a BSD3 payload's stream header agrees with this record.
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
        let created = r.varint(u64::MAX)?;
        let component_count = h.component_count;
        if component_count == 0 || component_count > MAX_COMPONENTS {
            return Err(r.err("component count out of range"));
        }
        let start = r;
        let mut offset = 0u64;
        let mut names = [""; MAX_COMPONENTS as usize];
        for i in 0..usize::from(component_count) {
            let c = Component::parse(&mut r, offset, h.payload_len)?;
            if names[..i].contains(&c.name) {
                return Err(r.err("two components have the same name"));
            }
            names[i] = c.name;
            offset += c.payload_size;
        }
        if !r.at_end() {
            return Err(r.err("unexpected bytes after the last component"));
        }
        if offset != h.payload_len {
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
        let mut offset = 0u64;
        (0..self.component_count).map(move |_| {
            let c = Component::parse(&mut r, offset, payload_len)?;
            offset += c.payload_size;
            Ok(c)
        })
    }

    /// The component called `name`.
    pub fn component(&self, name: &str) -> Option<Component<'a>> {
        self.components()
            .filter_map(Result::ok)
            .find(|c| c.name == name)
    }
}
