//! Push decoder for BSD3 streams: feed payload bytes in any chunking, it reads the source
//! through [`PatchIo::read_source`] and emits the target in order through
//! [`PatchIo::write_target`]. `no_std`, no heap, no panics on any input.

use super::model::{DiffItem, Match, Model};
use super::{
    leb128_end, read_leb128, ApplyError, DeltaError, StreamHeader, BLOCK_HEADER_LEN,
    DEFAULT_HT_CELLS, DEFAULT_LIT_TABLES, DEFAULT_PTR_ENTRIES, DEFAULT_WINDOW, HEADER_LEN,
};
use crate::range_coder::{RangeDecoder, STEP_INPUT};

/// Bytes decoded per step (bounds the input one step may consume, see [`STEP_INPUT`]).
const CHUNK: usize = 8;
/// Literal items per step (each may be a 9-bit literal; a match header follows at most).
const LIT_CHUNK: usize = 8;
/// Largest stretch of an accepted all-zero group handled in one step.
const RUN_CHUNK: usize = 64;

/// Where the decoder reads the source image and writes the target image.
pub trait PatchIo {
    /// Error of the underlying storage.
    type Error;
    /// Fill `buf` with source bytes starting at `offset`.
    fn read_source(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Self::Error>;
    /// Append `data` to the target.
    fn write_target(&mut self, data: &[u8]) -> Result<(), Self::Error>;
    /// Fill `buf` with target bytes already written, starting at `offset` (matches against
    /// the target's own history; on a device, read back from the slot being written).
    fn read_target(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Self::Error>;
}

/// A [`PatchIo`] over memory: a source slice and a target slice filled in order.
#[derive(Debug)]
pub struct SliceIo<'a> {
    source: &'a [u8],
    target: &'a mut [u8],
    written: usize,
}

/// The target slice was too small or a source read went out of range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("patch I/O out of range")]
pub struct OutOfRange;

impl<'a> SliceIo<'a> {
    /// Read from `source`, write into `target` from its start.
    pub fn new(source: &'a [u8], target: &'a mut [u8]) -> Self {
        Self {
            source,
            target,
            written: 0,
        }
    }

    /// Bytes written so far.
    pub fn written(&self) -> usize {
        self.written
    }
}

impl PatchIo for SliceIo<'_> {
    type Error = OutOfRange;
    fn read_source(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), OutOfRange> {
        let start = usize::try_from(offset).map_err(|_| OutOfRange)?;
        let src = self
            .source
            .get(start..start.saturating_add(buf.len()))
            .ok_or(OutOfRange)?;
        buf.copy_from_slice(src);
        Ok(())
    }
    fn write_target(&mut self, data: &[u8]) -> Result<(), OutOfRange> {
        let end = self.written.saturating_add(data.len());
        let dst = self.target.get_mut(self.written..end).ok_or(OutOfRange)?;
        dst.copy_from_slice(data);
        self.written = end;
        Ok(())
    }
    fn read_target(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), OutOfRange> {
        let start = usize::try_from(offset).map_err(|_| OutOfRange)?;
        let end = start.saturating_add(buf.len());
        if end > self.written {
            return Err(OutOfRange);
        }
        let src = self.target.get(start..end).ok_or(OutOfRange)?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

/// A block boundary from which application can restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "std", derive(serde::Serialize))]
pub struct Checkpoint {
    /// Offset in the payload of the next block header.
    pub payload_offset: u64,
    /// Target bytes already written (a multiple of the block size).
    pub target_offset: u64,
    /// Index of the next block.
    pub block: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Header,
    BlockHeader,
    Body,
    Done,
}

/// Where a literal-region match copies from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum From {
    /// The source, at this position.
    Source(u64),
    /// The target, this far back.
    Target(u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Control,
    Add(u32),
    Copy(u32),
    /// Copy `len` bytes from the source or the target history, then `after` more
    /// literal-region bytes.
    Match {
        from: From,
        len: u32,
        after: u32,
    },
    /// Repeat `len` difference bytes from `dist` back in the difference history, then
    /// `after` more bytes of the difference run.
    DiffMatch {
        dist: u32,
        len: u32,
        after: u32,
    },
}

/// Streaming BSD3 decoder. `LT` literal tables are reserved (RAM: 2 KiB each with their
/// context cells), a difference window of `W` bytes, `PT` pointer-table entries (8 bytes
/// each) and `HT` hashed context cells (2 bytes each); the defaults are what
/// [`super::Params::BEST`] needs; a stream that needs more is refused
/// ([`DeltaError::TooManyTables`], [`DeltaError::WindowTooLarge`],
/// [`DeltaError::PtrTableTooLarge`], [`DeltaError::ContextTableTooLarge`]).
#[derive(Debug, Clone)]
pub struct DeltaDecoder<
    const LT: usize = DEFAULT_LIT_TABLES,
    const W: usize = DEFAULT_WINDOW,
    const PT: usize = DEFAULT_PTR_ENTRIES,
    const HT: usize = DEFAULT_HT_CELLS,
> {
    phase: Phase,
    small: [u8; HEADER_LEN],
    small_fill: usize,
    header: Option<StreamHeader>,
    source_len: u64,
    payload_pos: u64,
    target_pos: u64,
    block: u64,
    block_end: u64,
    block_len: u32,
    comp_left: u32,
    rc: RangeDecoder,
    rc_started: bool,
    model: Model<LT, PT, HT>,
    op: Op,
    pending_copy: u32,
    pending_seek: i64,
    src_pos: u64,
    /// Target position where the current literal region began.
    lit_start: u64,
    /// The block's recent difference bytes (a ring).
    ring: [u8; W],
    /// Difference bytes produced in this block.
    ring_len: u64,
}

/// Decoder for the `small` profile: one literal table, 256-byte difference window, no pointer
/// tables, 512 context cells.
pub type SmallDeltaDecoder = DeltaDecoder<1, 256, 0, 512>;

impl<const LT: usize, const W: usize, const PT: usize, const HT: usize>
    DeltaDecoder<LT, W, PT, HT>
{
    /// A decoder for a stream made against a source of `source_len` bytes. `const`, so a
    /// device can place one in a `static` without building it on the stack.
    pub const fn new(source_len: u64) -> Self {
        Self {
            phase: Phase::Header,
            small: [0; HEADER_LEN],
            small_fill: 0,
            header: None,
            source_len,
            payload_pos: 0,
            target_pos: 0,
            block: 0,
            block_end: 0,
            block_len: 0,
            comp_left: 0,
            rc: RangeDecoder::new(),
            rc_started: false,
            model: Model::new(0, 0),
            op: Op::Control,
            pending_copy: 0,
            pending_seek: 0,
            src_pos: 0,
            lit_start: 0,
            ring: [0; W],
            ring_len: 0,
        }
    }

    /// Restart at `cp` (from [`DeltaDecoder::checkpoint`]) of the stream whose first
    /// [`HEADER_LEN`] bytes are `header`; then push the payload from `cp.payload_offset`.
    pub fn resume(header: &[u8], source_len: u64, cp: Checkpoint) -> Result<Self, DeltaError> {
        let mut d = Self::new(source_len);
        d.reset_resume(header, source_len, cp)?;
        Ok(d)
    }

    /// Start over for a new stream, in place (nothing large is built on the stack).
    pub fn reset(&mut self, source_len: u64) {
        self.phase = Phase::Header;
        self.small = [0; HEADER_LEN];
        self.small_fill = 0;
        self.header = None;
        self.source_len = source_len;
        self.payload_pos = 0;
        self.target_pos = 0;
        self.block = 0;
        self.block_end = 0;
        self.block_len = 0;
        self.comp_left = 0;
        self.rc.reset();
        self.rc_started = false;
        self.op = Op::Control;
        self.pending_copy = 0;
        self.pending_seek = 0;
        self.src_pos = 0;
        self.lit_start = 0;
        self.ring_len = 0;
        // The model is reset at each block start; the ring is only read below `ring_len`.
    }

    /// [`DeltaDecoder::resume`] in place.
    pub fn reset_resume(
        &mut self,
        header: &[u8],
        source_len: u64,
        cp: Checkpoint,
    ) -> Result<(), DeltaError> {
        self.reset(source_len);
        let h = self.accept_header(header)?;
        let bs = h.params.block_size();
        let expected_target = cp
            .block
            .checked_mul(bs)
            .ok_or(DeltaError::BadCheckpoint)?
            .min(u64::from(h.target_size));
        if cp.target_offset != expected_target
            || cp.target_offset > u64::from(h.target_size)
            || cp.payload_offset < h.encoded_len() as u64
        {
            self.reset(source_len);
            return Err(DeltaError::BadCheckpoint);
        }
        self.payload_pos = cp.payload_offset;
        self.target_pos = cp.target_offset;
        self.block = cp.block;
        self.phase = if cp.target_offset == u64::from(h.target_size) {
            Phase::Done
        } else {
            Phase::BlockHeader
        };
        Ok(())
    }

    fn accept_header(&mut self, bytes: &[u8]) -> Result<StreamHeader, DeltaError> {
        let h = StreamHeader::parse(bytes)?;
        // What the stream needs against what this decoder reserved.
        type Refusal = fn(usize, usize) -> DeltaError;
        let reserved: [(usize, usize, Refusal); 4] = [
            (h.params.lit_tables(), LT, |needed, have| {
                DeltaError::TooManyTables { needed, have }
            }),
            (h.params.window(), W, |needed, have| {
                DeltaError::WindowTooLarge { needed, have }
            }),
            (h.params.ht_cells(), HT, |needed, have| {
                DeltaError::ContextTableTooLarge { needed, have }
            }),
            (h.params.ptr_entries(), PT, |needed, have| {
                DeltaError::PtrTableTooLarge { needed, have }
            }),
        ];
        for (needed, have, refuse) in reserved {
            if needed > have {
                return Err(refuse(needed, have));
            }
        }
        if u64::from(h.source_size) != self.source_len {
            return Err(DeltaError::SourceSize {
                expected: u64::from(h.source_size),
                actual: self.source_len,
            });
        }
        self.header = Some(h);
        self.payload_pos = h.encoded_len() as u64;
        self.phase = if h.target_size == 0 {
            Phase::Done
        } else {
            Phase::BlockHeader
        };
        Ok(h)
    }

    /// The stream header, once read.
    pub fn header(&self) -> Option<StreamHeader> {
        self.header
    }

    /// Target bytes written so far.
    pub fn target_written(&self) -> u64 {
        self.target_pos
    }

    /// Payload bytes consumed so far.
    pub fn payload_consumed(&self) -> u64 {
        self.payload_pos
    }

    /// True once the whole target has been produced.
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// The current position if it is a block boundary (a safe resume point).
    pub fn checkpoint(&self) -> Option<Checkpoint> {
        let at_boundary = matches!(self.phase, Phase::BlockHeader | Phase::Done)
            && self.small_fill == 0
            && self.header.is_some();
        at_boundary.then_some(Checkpoint {
            payload_offset: self.payload_pos,
            target_offset: self.target_pos,
            block: self.block,
        })
    }

    /// Error unless the stream is complete.
    pub fn finish(&self) -> Result<(), DeltaError> {
        if self.is_done() {
            Ok(())
        } else {
            Err(DeltaError::Truncated)
        }
    }

    /// Move input bytes into the small buffer one at a time until `complete` says it holds
    /// a whole header (or the buffer is full: the parser then refuses it). Returns the rest
    /// of the input and whether the header is complete.
    fn take_until<'i>(
        &mut self,
        mut input: &'i [u8],
        complete: fn(&[u8]) -> bool,
        max: usize,
    ) -> (&'i [u8], bool) {
        loop {
            let have = self.small.get(..self.small_fill).unwrap_or(&[]);
            if complete(have) || self.small_fill >= max {
                return (input, true);
            }
            let Some((&b, rest)) = input.split_first() else {
                return (input, false);
            };
            if let Some(d) = self.small.get_mut(self.small_fill) {
                *d = b;
            }
            self.small_fill += 1;
            self.payload_pos += 1;
            input = rest;
        }
    }

    fn corrupt(&self, reason: &'static str) -> DeltaError {
        DeltaError::Corrupt {
            block: self.block,
            reason,
        }
    }

    /// Feed payload bytes; returns how many were consumed. It stops early right after a
    /// block completes, so that [`DeltaDecoder::checkpoint`] can be saved; call again with
    /// the rest. Bytes after the end of the stream are an error.
    pub fn push<IO: PatchIo>(
        &mut self,
        input: &[u8],
        io: &mut IO,
    ) -> Result<usize, ApplyError<IO::Error>> {
        let mut rest = input;
        loop {
            match self.phase {
                Phase::Header => {
                    let (r, whole) = self.take_until(rest, StreamHeader::complete, HEADER_LEN);
                    rest = r;
                    if !whole {
                        break;
                    }
                    let n = self.small_fill;
                    self.small_fill = 0;
                    let bytes = self.small;
                    self.accept_header(bytes.get(..n).unwrap_or(&[]))?;
                }
                Phase::BlockHeader => {
                    let (r, whole) =
                        self.take_until(rest, |b| leb128_end(b, 2).is_some(), BLOCK_HEADER_LEN);
                    rest = r;
                    if !whole {
                        break;
                    }
                    self.start_block()?;
                    self.small_fill = 0;
                }
                Phase::Body => {
                    let n = (self.comp_left as usize).min(rest.len());
                    let took = self.rc.fill(rest.get(..n).unwrap_or(&[]));
                    rest = rest.get(took..).unwrap_or(&[]);
                    self.comp_left -= took as u32;
                    self.payload_pos += took as u64;
                    self.run_steps(io)?;
                    if self.phase != Phase::Body {
                        break; // a block completed: let the caller checkpoint
                    }
                    if rest.is_empty() {
                        break;
                    }
                }
                Phase::Done => {
                    if !rest.is_empty() {
                        return Err(DeltaError::TrailingData(rest.len() as u64).into());
                    }
                    break;
                }
            }
        }
        Ok(input.len() - rest.len())
    }

    /// Feed all of `input` (looping over [`DeltaDecoder::push`]), ignoring checkpoints.
    pub fn push_all<IO: PatchIo>(
        &mut self,
        mut input: &[u8],
        io: &mut IO,
    ) -> Result<(), ApplyError<IO::Error>> {
        while !input.is_empty() {
            let n = self.push(input, io)?;
            if n == 0 && !self.is_done() {
                return Err(DeltaError::Truncated.into());
            }
            input = input.get(n..).unwrap_or(&[]);
            if n == 0 {
                return Err(DeltaError::TrailingData(input.len() as u64).into());
            }
        }
        Ok(())
    }

    fn start_block(&mut self) -> Result<(), DeltaError> {
        let h = self.header.ok_or(DeltaError::Truncated)?;
        let bad = |reason| DeltaError::BadBlockHeader {
            block: self.block,
            reason,
        };
        let s = self.small.get(..self.small_fill).unwrap_or(&[]);
        let mut at = 0;
        let comp_len = read_leb128(s, &mut at, u32::MAX).map_err(bad)?;
        let src_pos = read_leb128(s, &mut at, u32::MAX).map_err(bad)?;
        if comp_len < 5 || comp_len > h.max_block_len() {
            return Err(bad("impossible compressed length"));
        }
        if u64::from(src_pos) > self.source_len {
            return Err(bad("source position beyond the source image"));
        }
        self.block_len = comp_len;
        self.comp_left = comp_len;
        self.src_pos = u64::from(src_pos);
        self.block_end = (self.target_pos + h.params.block_size()).min(u64::from(h.target_size));
        self.rc.reset();
        self.rc_started = false;
        self.model.reset(
            h.params.lc,
            h.params.lp,
            h.params.ptr_log2,
            h.params.ht_log2,
        );
        self.ring_len = 0;
        self.op = Op::Control;
        self.phase = Phase::Body;
        Ok(())
    }

    fn run_steps<IO: PatchIo>(&mut self, io: &mut IO) -> Result<(), ApplyError<IO::Error>> {
        loop {
            let all_in = self.comp_left == 0;
            if !all_in && self.rc.available() < STEP_INPUT {
                return Ok(());
            }
            if !self.rc_started {
                if !self.rc.init() {
                    return Err(self.corrupt("bad range coder start").into());
                }
                self.rc_started = true;
            }
            if self.op == Op::Control && self.target_pos == self.block_end {
                if !all_in || self.rc.available() != 0 || self.rc.consumed() != self.block_len {
                    return Err(self.corrupt("data after the end of the block").into());
                }
                self.block += 1;
                let total = self.header.map_or(0, |h| u64::from(h.target_size));
                self.phase = if self.target_pos >= total {
                    Phase::Done
                } else {
                    Phase::BlockHeader
                };
                return Ok(());
            }
            self.step(io)?;
            if self.rc.overrun {
                return Err(self.corrupt("coded data ends early").into());
            }
        }
    }

    fn step<IO: PatchIo>(&mut self, io: &mut IO) -> Result<(), ApplyError<IO::Error>> {
        let mut buf = [0u8; CHUNK];
        match self.op {
            Op::Control => {
                let add = self.model.add_len.decode(&mut self.rc);
                let copy = self.model.copy_len.decode(&mut self.rc);
                let seek = self.model.decode_seek(&mut self.rc);
                let (Some(add), Some(copy), Some(seek)) = (add, copy, seek) else {
                    return Err(self.corrupt("impossible length").into());
                };
                if self.rc.overrun {
                    return Ok(());
                }
                if add == 0 && copy == 0 {
                    return Err(self.corrupt("empty control").into());
                }
                let left = self.block_end - self.target_pos;
                if u64::from(add) + u64::from(copy) > left {
                    return Err(self.corrupt("control runs past the block").into());
                }
                if self.src_pos + u64::from(add) > self.source_len {
                    return Err(self.corrupt("copy beyond the source image").into());
                }
                self.model.decode_region(&mut self.rc, copy);
                self.pending_copy = copy;
                self.pending_seek = seek;
                self.lit_start = self.target_pos + u64::from(add);
                if add > 0 {
                    self.model.ptr.begin(self.src_pos, self.target_pos);
                }
                self.op = if add > 0 {
                    Op::Add(add)
                } else {
                    Op::Copy(copy)
                };
            }
            Op::Add(n) if self.model.run_pending() > 0 => {
                // The rest of an accepted all-zero group (run mode): the target repeats the
                // source and nothing is decoded, so up to 63 positions go at once.
                let k = self.model.run_pending().min(n as usize).min(RUN_CHUNK);
                let mut same = [0u8; RUN_CHUNK];
                let bytes = same.get_mut(..k).unwrap_or(&mut []);
                io.read_source(self.src_pos, bytes)
                    .map_err(ApplyError::Io)?;
                self.model.skip_run(bytes);
                for _ in 0..k {
                    self.ring_push(0);
                }
                io.write_target(bytes).map_err(ApplyError::Io)?;
                self.src_pos += k as u64;
                self.target_pos += k as u64;
                self.after_diff_run(n - k as u32)?;
            }
            Op::Add(n) => {
                let k = (n as usize).min(CHUNK);
                // The chunk and up to 3 source bytes after it (the pointer model reads ahead;
                // past the source's end they count as 0).
                let mut wide = [0u8; CHUNK + 3];
                let more =
                    (k as u64 + 3).min(self.source_len.saturating_sub(self.src_pos)) as usize;
                io.read_source(self.src_pos, wide.get_mut(..more).unwrap_or(&mut []))
                    .map_err(ApplyError::Io)?;
                let aheads: [u32; CHUNK] = core::array::from_fn(|i| super::ptr::ahead(&wide, i));
                let chunk = buf.get_mut(..k).unwrap_or(&mut []);
                chunk.copy_from_slice(wide.get(..k).unwrap_or(&[]));
                let window = self.header.map_or(0, |h| h.params.window());
                let mut done = 0usize;
                let mut matched = None;
                for (i, b) in chunk.iter_mut().enumerate() {
                    let old = *b;
                    let pos = self.target_pos + i as u64;
                    let left = n - i as u32;
                    self.model.ahead = aheads.get(i).copied().unwrap_or(0);
                    match self
                        .model
                        .decode_diff(&mut self.rc, pos, old, window > 0, left)
                    {
                        DiffItem::MatchStart => {
                            matched = Some(self.model.decode_diff_match(&mut self.rc));
                            break;
                        }
                        DiffItem::Byte(v) => *b = v,
                    }
                    self.ring_push(b.wrapping_sub(old));
                    done += 1;
                }
                if self.rc.overrun {
                    return Ok(());
                }
                io.write_target(chunk.get(..done).unwrap_or(&[]))
                    .map_err(ApplyError::Io)?;
                self.src_pos += done as u64;
                self.target_pos += done as u64;
                let rest = n - done as u32;
                match matched {
                    Some(None) => return Err(self.corrupt("impossible difference match").into()),
                    Some(Some((dist, len))) => {
                        let avail = self.ring_len.min(window as u64);
                        if dist == 0 || u64::from(dist) > avail {
                            return Err(self.corrupt("difference match before the window").into());
                        }
                        if len > rest {
                            return Err(self.corrupt("difference match runs past its run").into());
                        }
                        self.op = Op::DiffMatch {
                            dist,
                            len,
                            after: rest - len,
                        };
                    }
                    None => self.after_diff_run(rest)?,
                }
            }
            Op::DiffMatch { dist, len, after } => {
                let k = (len as usize).min(CHUNK);
                let chunk = buf.get_mut(..k).unwrap_or(&mut []);
                io.read_source(self.src_pos, chunk)
                    .map_err(ApplyError::Io)?;
                for b in chunk.iter_mut() {
                    let back = self.ring_len.wrapping_sub(u64::from(dist));
                    let d = self.ring_at(back);
                    *b = b.wrapping_add(d);
                    self.model.copied_diff(d, *b);
                    self.ring_push(d);
                }
                io.write_target(chunk).map_err(ApplyError::Io)?;
                self.src_pos += k as u64;
                self.target_pos += k as u64;
                let left = len - k as u32;
                if left > 0 {
                    self.op = Op::DiffMatch {
                        dist,
                        len: left,
                        after,
                    };
                } else {
                    self.after_diff_run(after)?;
                }
            }
            Op::Copy(n) => {
                let limit = (n as usize).min(LIT_CHUNK);
                let mut k = 0usize;
                let mut matched = None;
                while k < limit {
                    if self.model.decode_is_match(&mut self.rc) {
                        matched = Some(self.model.decode_match(&mut self.rc));
                        break;
                    }
                    let b = self
                        .model
                        .decode_lit(&mut self.rc, self.target_pos + k as u64);
                    if let Some(slot) = buf.get_mut(k) {
                        *slot = b;
                    }
                    k += 1;
                }
                if self.rc.overrun {
                    return Ok(());
                }
                if k > 0 {
                    io.write_target(buf.get(..k).unwrap_or(&[]))
                        .map_err(ApplyError::Io)?;
                    self.target_pos += k as u64;
                }
                let rest = n - k as u32;
                match matched {
                    Some(None) => return Err(self.corrupt("impossible match").into()),
                    Some(Some(Match::Source(off, len))) => {
                        if len > rest {
                            return Err(self.corrupt("match runs past its region").into());
                        }
                        let diag = self.src_pos + (self.target_pos - self.lit_start);
                        let at = i64::try_from(diag)
                            .ok()
                            .and_then(|p| p.checked_add(off))
                            .filter(|&p| {
                                p >= 0
                                    && (p as u64).saturating_add(u64::from(len)) <= self.source_len
                            });
                        let Some(at) = at else {
                            return Err(self
                                .corrupt("source match outside the source image")
                                .into());
                        };
                        self.op = Op::Match {
                            from: From::Source(at as u64),
                            len,
                            after: rest - len,
                        };
                    }
                    Some(Some(Match::Target(dist, len))) => {
                        if len > rest {
                            return Err(self.corrupt("match runs past its region").into());
                        }
                        if u64::from(dist) > self.target_pos || dist == 0 {
                            return Err(self
                                .corrupt("match before the start of the target")
                                .into());
                        }
                        self.op = Op::Match {
                            from: From::Target(dist),
                            len,
                            after: rest - len,
                        };
                    }
                    None if rest > 0 => self.op = Op::Copy(rest),
                    None => self.end_control()?,
                }
            }
            Op::Match { from, len, after } => {
                let k = match from {
                    From::Source(_) => (len as usize).min(CHUNK),
                    From::Target(dist) => (len as usize).min(CHUNK).min(dist as usize),
                };
                let chunk = buf.get_mut(..k).unwrap_or(&mut []);
                match from {
                    From::Source(at) => io.read_source(at, chunk),
                    From::Target(dist) => io.read_target(self.target_pos - u64::from(dist), chunk),
                }
                .map_err(ApplyError::Io)?;
                io.write_target(chunk).map_err(ApplyError::Io)?;
                self.model.after_match(chunk);
                self.target_pos += k as u64;
                let left = len - k as u32;
                if left > 0 {
                    let from = match from {
                        From::Source(at) => From::Source(at + k as u64),
                        t => t,
                    };
                    self.op = Op::Match {
                        from,
                        len: left,
                        after,
                    };
                } else if after > 0 {
                    self.op = Op::Copy(after);
                } else {
                    self.end_control()?;
                }
            }
        }
        Ok(())
    }

    /// `rest` bytes of the current difference run remain: continue it, or go on to the
    /// literal region, or end the control.
    fn after_diff_run(&mut self, rest: u32) -> Result<(), DeltaError> {
        if rest > 0 {
            self.op = Op::Add(rest);
        } else if self.pending_copy > 0 {
            self.op = Op::Copy(self.pending_copy);
        } else {
            self.end_control()?;
        }
        Ok(())
    }

    #[inline]
    fn ring_push(&mut self, d: u8) {
        if W > 0 {
            let i = (self.ring_len % W as u64) as usize;
            if let Some(slot) = self.ring.get_mut(i) {
                *slot = d;
            }
        }
        self.ring_len += 1;
    }

    #[inline]
    fn ring_at(&self, index: u64) -> u8 {
        if W == 0 {
            return 0;
        }
        self.ring
            .get((index % W as u64) as usize)
            .copied()
            .unwrap_or(0)
    }

    fn end_control(&mut self) -> Result<(), DeltaError> {
        let pos = i64::try_from(self.src_pos).unwrap_or(i64::MAX);
        let next = pos.checked_add(self.pending_seek).unwrap_or(-1);
        if next < 0 || next as u64 > self.source_len {
            return Err(self.corrupt("seek beyond the source image"));
        }
        self.src_pos = next as u64;
        self.op = Op::Control;
        Ok(())
    }
}

/// What an updater needs of a decoder, whatever its table sizes: lets a device SDK hold
/// "a decoder of some profile" as one type parameter instead of the four sizes.
pub trait StreamDecoder {
    /// Whether this decoder's tables hold every stream made with [`super::Params::BEST`].
    const HOLDS_BEST: bool;
    /// [`DeltaDecoder::reset`].
    fn reset(&mut self, source_len: u64);
    /// [`DeltaDecoder::reset_resume`].
    fn reset_resume(
        &mut self,
        header: &[u8],
        source_len: u64,
        cp: Checkpoint,
    ) -> Result<(), DeltaError>;
    /// [`DeltaDecoder::header`].
    fn header(&self) -> Option<StreamHeader>;
    /// [`DeltaDecoder::is_done`].
    fn is_done(&self) -> bool;
    /// [`DeltaDecoder::checkpoint`].
    fn checkpoint(&self) -> Option<Checkpoint>;
    /// [`DeltaDecoder::finish`].
    fn finish(&self) -> Result<(), DeltaError>;
    /// [`DeltaDecoder::push`].
    fn push<IO: PatchIo>(
        &mut self,
        input: &[u8],
        io: &mut IO,
    ) -> Result<usize, ApplyError<IO::Error>>;
}

impl<const LT: usize, const W: usize, const PT: usize, const HT: usize> StreamDecoder
    for DeltaDecoder<LT, W, PT, HT>
{
    const HOLDS_BEST: bool = LT >= DEFAULT_LIT_TABLES
        && W >= DEFAULT_WINDOW
        && PT >= DEFAULT_PTR_ENTRIES
        && HT >= DEFAULT_HT_CELLS;
    fn reset(&mut self, source_len: u64) {
        DeltaDecoder::reset(self, source_len);
    }
    fn reset_resume(
        &mut self,
        header: &[u8],
        source_len: u64,
        cp: Checkpoint,
    ) -> Result<(), DeltaError> {
        DeltaDecoder::reset_resume(self, header, source_len, cp)
    }
    fn header(&self) -> Option<StreamHeader> {
        DeltaDecoder::header(self)
    }
    fn is_done(&self) -> bool {
        DeltaDecoder::is_done(self)
    }
    fn checkpoint(&self) -> Option<Checkpoint> {
        DeltaDecoder::checkpoint(self)
    }
    fn finish(&self) -> Result<(), DeltaError> {
        DeltaDecoder::finish(self)
    }
    fn push<IO: PatchIo>(
        &mut self,
        input: &[u8],
        io: &mut IO,
    ) -> Result<usize, ApplyError<IO::Error>> {
        DeltaDecoder::push(self, input, io)
    }
}
