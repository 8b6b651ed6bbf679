//! The BlueSphere delta stream ("BSD3"): a sequential patch that reads the source (old image)
//! at random and writes the target strictly in order, in independently decodable blocks.
//!
//! See `docs/FORMAT.md` for the byte layout. In short:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 2 | magic `B4` |
//! | 2 | 1 | `lc` (bits 0-3): literal context bits, `lp` (bits 4-7): literal position bits (`lc + lp <= 4`) |
//! | 3 | 1 | `ptr_log2` (bits 0-3): pointer-prediction table entries (0 = none, else `6..=12`); `ht_log2 - 8` (bits 4-7): hashed context cells (`9..=15`) |
//! | 4 | 1 | `block_log2`: target bytes per block, `12..=24` |
//! | 5 | 1 | `window_log2`: difference-history window (0 = none, else `8..=16`) |
//! | 6 | 1..=5 | target size (LEB128, `< 2^32`) |
//! | .. | 1..=5 | source size (LEB128, `< 2^32`) |
//!
//! then `ceil(target / block)` blocks, each `comp_len` and `src_pos` (LEB128) and `comp_len`
//! bytes of range-coded controls and bytes. The coder and all models restart at
//! every block, so application can resume at any block boundary after a power loss.
//!
//! RAM needed to apply: the decoder struct (`size_of::<DeltaDecoder<LT, W, PT>>()`: about
//! 6 KiB, plus 2 KiB per literal table (its literal, difference and context cells), plus the
//! `W`-byte difference window, plus 8 bytes per pointer-table entry `PT`) and whatever
//! buffering the target needs (one flash sector on a device). There is no dictionary: the
//! source is read in place and the target is read back for matches.

mod decode;
#[cfg(feature = "std")]
mod encode;
mod mix;
pub(crate) mod model;
pub(crate) mod ptr;

pub use decode::{Checkpoint, DeltaDecoder, PatchIo, SliceIo, SmallDeltaDecoder, StreamDecoder};
#[cfg(feature = "std")]
pub use encode::{
    encode, encode_indexed, encode_indexed_until, encode_with_stats, EncodeError, Segment,
    SourceIndex,
};
#[cfg(feature = "std")]
pub(crate) use encode::{encode_streamed, SMALL_TARGET};

/// Stream magic.
pub const MAGIC: [u8; 2] = *b"B4";
/// Bytes of the stream header before its two sizes.
pub const FIXED_HEADER_LEN: usize = 6;
/// Largest stream header (both sizes 5 bytes long).
pub const HEADER_LEN: usize = FIXED_HEADER_LEN + 10;
/// Largest block header (`comp_len` up to 4 bytes, `src_pos` up to 5).
pub const BLOCK_HEADER_LEN: usize = 9;

/// Bytes of `v` as unsigned LEB128.
pub(crate) const fn leb128_len(v: u64) -> usize {
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Write `v` as unsigned LEB128 at the start of `out`; returns the bytes written.
pub(crate) fn put_leb128(out: &mut [u8], mut v: u64) -> usize {
    let mut n = 0;
    for b in out.iter_mut() {
        let more = v >= 0x80;
        *b = (v as u8 & 0x7F) | if more { 0x80 } else { 0 };
        v >>= 7;
        n += 1;
        if !more {
            break;
        }
    }
    n
}

/// End of the `count` LEB128 numbers at the start of `b` (at most 5 bytes each), or `None`
/// while `b` holds fewer. A number counts as complete after its last byte or after 5 bytes
/// (the parser then refuses an over-long one).
pub(crate) fn leb128_end(b: &[u8], count: usize) -> Option<usize> {
    let mut at = 0;
    for _ in 0..count {
        let mut k = 0;
        loop {
            let byte = *b.get(at + k)?;
            k += 1;
            if byte & 0x80 == 0 || k == 5 {
                break;
            }
        }
        at += k;
    }
    Some(at)
}

/// Read a minimally encoded LEB128 number of at most 5 bytes and at most `max` at `*at`.
pub(crate) fn read_leb128(b: &[u8], at: &mut usize, max: u32) -> Result<u32, &'static str> {
    let mut v: u64 = 0;
    for k in 0..5 {
        let byte = *b.get(*at + k).ok_or("ends early")?;
        v |= u64::from(byte & 0x7F) << (7 * k);
        if byte & 0x80 == 0 {
            if k > 0 && byte == 0 {
                return Err("number not minimally encoded");
            }
            *at += k + 1;
            return u32::try_from(v)
                .ok()
                .filter(|&v| v <= max)
                .ok_or("number out of range");
        }
    }
    Err("number too long")
}
/// Smallest and largest block size (log2).
pub const MIN_BLOCK_LOG2: u8 = 12;
/// Largest block size (log2): 16 MiB.
pub const MAX_BLOCK_LOG2: u8 = 24;
/// Most literal tables a stream may ask for (`1 << (lc + lp)`).
pub const MAX_LIT_TABLES: usize = 16;
/// Smallest and largest pointer table a stream may ask for (log2 of the entries).
pub const MIN_PTR_LOG2: u8 = 6;
/// Largest pointer table (log2): 4096 entries (32 KiB for both tables).
pub const MAX_PTR_LOG2: u8 = 12;
/// Smallest and largest hashed context table a stream may ask for (log2 of the cells).
pub const MIN_HT_LOG2: u8 = 9;
/// Largest hashed context table (log2): 32768 cells (64 KiB).
pub const MAX_HT_LOG2: u8 = 15;
/// What a default decoder reserves: exactly what [`Params::BEST`] streams need.
pub const DEFAULT_LIT_TABLES: usize = Params::BEST.lit_tables();
/// Difference window a default decoder reserves (see [`DEFAULT_LIT_TABLES`]).
pub const DEFAULT_WINDOW: usize = Params::BEST.window();
/// Pointer-table entries a default decoder reserves (see [`DEFAULT_LIT_TABLES`]).
pub const DEFAULT_PTR_ENTRIES: usize = Params::BEST.ptr_entries();
/// Hashed context cells a default decoder reserves (see [`DEFAULT_LIT_TABLES`]).
pub const DEFAULT_HT_CELLS: usize = Params::BEST.ht_cells();

/// Coding parameters of a stream (a "profile").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "std", derive(serde::Serialize))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct Params {
    /// Literal context bits: how many high bits of the previous byte select a literal table.
    pub lc: u8,
    /// Literal position bits: how many low bits of the target position select a table.
    pub lp: u8,
    /// log2 of the target bytes per independently decodable block.
    pub block_log2: u8,
    /// log2 of the difference-history window the decoder keeps in RAM (0: none).
    pub window_log2: u8,
    /// log2 of the pointer-prediction table entries (0: no pointer prediction).
    pub ptr_log2: u8,
    /// log2 of the hashed context cells the mixed decisions use (`9..=15`).
    pub ht_log2: u8,
}

impl Params {
    /// Best ratio: 4 literal tables, 16384 hashed context cells (32 KiB), 4 KiB difference
    /// window, 2048-entry pointer tables (decoder state 61 KiB), 1 MiB blocks.
    pub const BEST: Params = Params {
        lc: 1,
        lp: 1,
        block_log2: 20,
        window_log2: 12,
        ptr_log2: 11,
        ht_log2: 14,
    };
    /// Small RAM: 1 literal table, 512 hashed context cells, 256-byte difference window, no
    /// pointer tables (decoder state under 8 KiB), 64 KiB blocks.
    pub const SMALL: Params = Params {
        lc: 0,
        lp: 0,
        block_log2: 16,
        window_log2: 8,
        ptr_log2: 0,
        ht_log2: 9,
    };

    /// Literal tables this stream needs.
    pub const fn lit_tables(&self) -> usize {
        1usize << (self.lc as u32 + self.lp as u32)
    }

    /// Bytes of difference history the decoder must keep (0: none).
    pub const fn window(&self) -> usize {
        if self.window_log2 == 0 {
            0
        } else {
            1usize << self.window_log2
        }
    }

    /// Pointer-table entries the decoder must reserve (0: none).
    pub const fn ptr_entries(&self) -> usize {
        if self.ptr_log2 == 0 {
            0
        } else {
            1usize << self.ptr_log2
        }
    }

    /// Hashed context cells the decoder must reserve.
    pub const fn ht_cells(&self) -> usize {
        1usize << self.ht_log2
    }

    /// Target bytes per block.
    pub const fn block_size(&self) -> u64 {
        1u64 << self.block_log2
    }

    /// Check the ranges a decoder accepts.
    pub fn validate(&self) -> Result<(), DeltaError> {
        if self.lc > 4 || self.lp > 4 || self.lc + self.lp > 4 {
            return Err(DeltaError::Unsupported {
                what: "literal context bits (lc + lp must be at most 4)",
            });
        }
        if self.window_log2 != 0 && !(8..=16).contains(&self.window_log2) {
            return Err(DeltaError::Unsupported {
                what: "difference window (must be 0 or 256 B .. 64 KiB)",
            });
        }
        if self.ptr_log2 != 0 && !(MIN_PTR_LOG2..=MAX_PTR_LOG2).contains(&self.ptr_log2) {
            return Err(DeltaError::Unsupported {
                what: "pointer table (must be 0 or 64 .. 4096 entries)",
            });
        }
        if !(MIN_HT_LOG2..=MAX_HT_LOG2).contains(&self.ht_log2) {
            return Err(DeltaError::Unsupported {
                what: "context table (must be 512 .. 32768 cells)",
            });
        }
        if !(MIN_BLOCK_LOG2..=MAX_BLOCK_LOG2).contains(&self.block_log2) {
            return Err(DeltaError::Unsupported {
                what: "block size (must be 4 KiB .. 16 MiB)",
            });
        }
        Ok(())
    }
}

/// Parsed stream header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "std", derive(serde::Serialize))]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct StreamHeader {
    /// Coding parameters.
    pub params: Params,
    /// Bytes the stream produces.
    pub target_size: u32,
    /// Bytes of source the stream was made against.
    pub source_size: u32,
}

impl StreamHeader {
    /// Parse and validate a stream header (the first [`StreamHeader::encoded_len`] bytes of
    /// `b`; later bytes are not looked at).
    pub fn parse(b: &[u8]) -> Result<Self, DeltaError> {
        let h: &[u8; FIXED_HEADER_LEN] = b
            .get(..FIXED_HEADER_LEN)
            .and_then(|s| s.try_into().ok())
            .ok_or(DeltaError::Truncated)?;
        if h[0..2] != MAGIC {
            return Err(DeltaError::BadMagic);
        }
        let params = Params {
            lc: h[2] & 0x0F,
            lp: h[2] >> 4,
            ptr_log2: h[3] & 0x0F,
            ht_log2: (h[3] >> 4) + 8,
            block_log2: h[4],
            window_log2: h[5],
        };
        params.validate()?;
        let mut at = FIXED_HEADER_LEN;
        let mut size = || {
            read_leb128(b, &mut at, u32::MAX).map_err(|e| match e {
                "ends early" => DeltaError::Truncated,
                _ => DeltaError::Unsupported {
                    what: "stream header size (must be a minimal LEB128 number below 2^32)",
                },
            })
        };
        let target_size = size()?;
        let source_size = size()?;
        Ok(Self {
            params,
            target_size,
            source_size,
        })
    }

    /// Bytes of this header in the stream.
    pub fn encoded_len(&self) -> usize {
        FIXED_HEADER_LEN
            + leb128_len(u64::from(self.target_size))
            + leb128_len(u64::from(self.source_size))
    }

    /// Serialize: the first [`StreamHeader::encoded_len`] bytes are the header, the rest of
    /// the array is zero.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0..2].copy_from_slice(&MAGIC);
        h[2] = (self.params.lc & 0x0F) | (self.params.lp << 4);
        h[3] = (self.params.ptr_log2 & 0x0F) | (self.params.ht_log2.wrapping_sub(8) << 4);
        h[4] = self.params.block_log2;
        h[5] = self.params.window_log2;
        let (_, sizes) = h.split_at_mut(FIXED_HEADER_LEN);
        let n = put_leb128(sizes, u64::from(self.target_size));
        if let Some(rest) = sizes.get_mut(n..) {
            put_leb128(rest, u64::from(self.source_size));
        }
        h
    }

    /// Is `b` (the bytes read so far) a whole header? True also when it cannot become one
    /// (bad magic, an over-long size): the parser then says what is wrong.
    pub(crate) fn complete(b: &[u8]) -> bool {
        if b.len() >= MAGIC.len() && b[..MAGIC.len()] != MAGIC {
            return true;
        }
        b.get(FIXED_HEADER_LEN..)
            .and_then(|rest| leb128_end(rest, 2))
            .is_some()
    }

    /// Number of blocks.
    pub fn block_count(&self) -> u64 {
        u64::from(self.target_size).div_ceil(self.params.block_size())
    }

    /// Largest `comp_len` a block may declare.
    pub fn max_block_len(&self) -> u32 {
        let bs = self.params.block_size();
        u32::try_from(bs * 2 + 64).unwrap_or(u32::MAX)
    }
}

/// What is wrong with a delta stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DeltaError {
    /// Not a BSD3 stream.
    #[error("not a BlueSphere delta stream (bad magic)")]
    BadMagic,
    /// A parameter this decoder does not support.
    #[error("unsupported delta stream: {what}")]
    Unsupported {
        /// Which parameter.
        what: &'static str,
    },
    /// The stream needs a larger difference window than this decoder reserved.
    #[error("delta stream needs a {needed}-byte difference window, this decoder has {have}")]
    WindowTooLarge {
        /// Needed by the stream.
        needed: usize,
        /// Reserved by the decoder.
        have: usize,
    },
    /// The stream needs a larger pointer table than this decoder reserved.
    #[error("delta stream needs {needed} pointer-table entries, this decoder has {have}")]
    PtrTableTooLarge {
        /// Needed by the stream.
        needed: usize,
        /// Reserved by the decoder.
        have: usize,
    },
    /// The stream needs a larger hashed context table than this decoder reserved.
    #[error("delta stream needs {needed} context cells, this decoder has {have}")]
    ContextTableTooLarge {
        /// Needed by the stream.
        needed: usize,
        /// Reserved by the decoder.
        have: usize,
    },
    /// The stream needs more literal tables than this decoder reserved.
    #[error("delta stream needs {needed} literal tables, this decoder has {have}")]
    TooManyTables {
        /// Needed by the stream.
        needed: usize,
        /// Reserved by the decoder.
        have: usize,
    },
    /// The stream was made against a source of another size.
    #[error("delta expects a source of {expected} bytes, got {actual}")]
    SourceSize {
        /// From the stream header.
        expected: u64,
        /// Given.
        actual: u64,
    },
    /// A block header declares an impossible length or position.
    #[error("delta block {block}: {reason}")]
    BadBlockHeader {
        /// Block index.
        block: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// A block's coded data is inconsistent.
    #[error("delta block {block} is corrupt: {reason}")]
    Corrupt {
        /// Block index.
        block: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// The stream ended before the target was complete.
    #[error("delta stream is truncated")]
    Truncated,
    /// Bytes after the last block.
    #[error("delta stream has {0} bytes after its last block")]
    TrailingData(u64),
    /// The resume checkpoint does not fit this stream.
    #[error("resume checkpoint does not match the stream")]
    BadCheckpoint,
}

/// Error from applying a stream: the stream itself or the caller's I/O.
#[derive(Debug)]
pub enum ApplyError<E> {
    /// Bad stream.
    Delta(DeltaError),
    /// Reading the source or writing the target failed.
    Io(E),
}

impl<E> From<DeltaError> for ApplyError<E> {
    fn from(e: DeltaError) -> Self {
        ApplyError::Delta(e)
    }
}

impl<E: core::fmt::Display> core::fmt::Display for ApplyError<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ApplyError::Delta(e) => write!(f, "{e}"),
            ApplyError::Io(e) => write!(f, "I/O error while patching: {e}"),
        }
    }
}

impl<E: core::error::Error + 'static> core::error::Error for ApplyError<E> {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            ApplyError::Delta(e) => Some(e),
            ApplyError::Io(e) => Some(e),
        }
    }
}
