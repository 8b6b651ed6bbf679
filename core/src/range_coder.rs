//! Adaptive binary range coder (the LZMA family's design) whose probability cells carry a
//! 13-bit probability and a 3-bit confidence count in one `u16`: a fresh cell adapts with
//! shift 2, a settled one with shift 5, and near-certain events cost about 0.006 bit.
//!
//! The decoder is `no_std`, heap-free and never panics: it reads its input from a small buffer
//! owned by the delta decoder, and reading past the end of a block's bytes sets an overrun flag
//! instead of failing mid-symbol; the caller checks the flag after each step.

/// One adaptive cell: probability of a 0 bit (16-bit scale, 13 bits kept) + confidence count.
pub type Prob = u16;

pub(crate) const PROB_BITS: u32 = 16;
pub(crate) const PROB_ONE: u32 = 1 << PROB_BITS;
pub(crate) const PROB_INIT: Prob = (PROB_ONE / 2) as Prob;
const TOP: u32 = 1 << 24;

const LIMIT: u32 = 5;

/// The probability part of a cell (16-bit scale, low 3 bits hold the confidence count).
#[inline]
fn pmix(p: Prob) -> u32 {
    u32::from(p & 0xFFF8)
}

/// Adapt: the shift grows from 2 to `LIMIT` as the cell sees its first bits, so fresh
/// contexts learn fast and settled ones are stable.
#[inline]
pub(crate) fn pupd<const LIM: u32>(p: &mut Prob, bit: u32) {
    let mut a = u32::from(*p & 0xFFF8);
    let n = u32::from(*p & 7);
    let sh = (n + 2).min(LIM);
    if bit == 0 {
        a += (PROB_ONE - a) >> sh;
    } else {
        a -= a >> sh;
    }
    let a = a.clamp(64, PROB_ONE - 64) & 0xFFF8;
    *p = (a | (n + 1).min(7)) as Prob;
}

/// Size of the decoder's input window (bytes). A decoding step never needs more than
/// [`STEP_INPUT`] bytes, so the window is refilled between steps.
pub(crate) const INPUT_WINDOW: usize = 384;
/// Upper bound of the input bytes one decoding step consumes (see `delta::decode`): at most
/// 2 bytes per modelled bit; a step is at most 8 difference items (12 bits each) or 8
/// literal items (9 bits each), plus one match header (< 60 bytes); or one control (< 80).
pub(crate) const STEP_INPUT: usize = 272;

/// Range decoder over a small refillable window.
#[derive(Debug, Clone)]
pub(crate) struct RangeDecoder {
    range: u32,
    code: u32,
    buf: [u8; INPUT_WINDOW],
    start: usize,
    end: usize,
    /// Bytes consumed from the current block.
    consumed: u32,
    /// Set when a read went past the buffered input.
    pub(crate) overrun: bool,
}

impl RangeDecoder {
    pub(crate) const fn new() -> Self {
        Self {
            range: 0xFFFF_FFFF,
            code: 0,
            buf: [0; INPUT_WINDOW],
            start: 0,
            end: 0,
            consumed: 0,
            overrun: false,
        }
    }

    /// Forget everything (start of a block).
    pub(crate) fn reset(&mut self) {
        self.range = 0xFFFF_FFFF;
        self.code = 0;
        self.start = 0;
        self.end = 0;
        self.consumed = 0;
        self.overrun = false;
    }

    /// Buffered bytes not yet consumed.
    pub(crate) fn available(&self) -> usize {
        self.end - self.start
    }

    pub(crate) fn consumed(&self) -> u32 {
        self.consumed
    }

    /// Copy as much of `input` as fits into the window; returns the count taken.
    pub(crate) fn fill(&mut self, input: &[u8]) -> usize {
        if self.start > 0 && self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        if self.start > 0 && self.end + input.len() > INPUT_WINDOW {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let room = INPUT_WINDOW - self.end;
        let n = room.min(input.len());
        if let (Some(dst), Some(src)) = (self.buf.get_mut(self.end..self.end + n), input.get(..n)) {
            dst.copy_from_slice(src);
            self.end += n;
            n
        } else {
            0
        }
    }

    #[inline]
    fn next_byte(&mut self) -> u8 {
        if self.start < self.end {
            let b = self.buf.get(self.start).copied().unwrap_or(0);
            self.start += 1;
            self.consumed = self.consumed.wrapping_add(1);
            b
        } else {
            self.overrun = true;
            0
        }
    }

    /// Read the 5 initial bytes. Returns false if the first byte is not 0 (corrupt stream).
    pub(crate) fn init(&mut self) -> bool {
        let first = self.next_byte();
        self.code = 0;
        self.range = 0xFFFF_FFFF;
        for _ in 0..4 {
            self.code = (self.code << 8) | u32::from(self.next_byte());
        }
        first == 0 && self.code != 0xFFFF_FFFF
    }

    #[inline]
    fn normalize(&mut self) {
        // A cell's probability is at least 64/65536, so one coded bit shrinks the range by at
        // most 2^-10: at most two shifts restore it (at most 2 input bytes per modelled bit).
        while self.range < TOP {
            self.range <<= 8;
            self.code = (self.code << 8) | u32::from(self.next_byte());
        }
    }

    #[inline]
    pub(crate) fn bit(&mut self, p: &mut Prob) -> u32 {
        self.bit_l::<LIMIT>(p)
    }

    /// Decode one bit with the cell `table[ctx]` (an index out of range reads as 0 and
    /// codes nothing: it cannot happen with the models' fixed table sizes).
    #[inline]
    pub(crate) fn bit_at(&mut self, table: &mut [Prob], ctx: usize) -> u32 {
        match table.get_mut(ctx) {
            Some(p) => self.bit(p),
            None => 0,
        }
    }

    /// [`RangeDecoder::bit`] with a settled adaptation shift of `LIM`.
    #[inline]
    pub(crate) fn bit_l<const LIM: u32>(&mut self, p: &mut Prob) -> u32 {
        let bound = (self.range >> PROB_BITS) * pmix(*p);
        let bit = if self.code < bound {
            self.range = bound;
            0
        } else {
            self.code -= bound;
            self.range -= bound;
            1
        };
        pupd::<LIM>(p, bit);
        self.normalize();
        bit
    }

    /// Decode one bit whose probability of being 0 is `p0` (16-bit scale, `64..=65472`),
    /// computed by the caller (a mixer); nothing adapts here.
    #[inline]
    pub(crate) fn bit_prob(&mut self, p0: u32) -> u32 {
        let bound = (self.range >> PROB_BITS) * p0.clamp(64, PROB_ONE - 64);
        let bit = if self.code < bound {
            self.range = bound;
            0
        } else {
            self.code -= bound;
            self.range -= bound;
            1
        };
        self.normalize();
        bit
    }

    #[inline]
    pub(crate) fn direct_bits(&mut self, count: u32) -> u32 {
        let mut v = 0u32;
        for _ in 0..count {
            self.range >>= 1;
            // Without a branch: raw bits are unpredictable by nature.
            let b = u32::from(self.code >= self.range);
            self.code -= self.range & 0u32.wrapping_sub(b);
            v = (v << 1) | b;
            self.normalize();
        }
        v
    }

    /// Decode `bits` bits MSB first through a binary tree of probabilities
    /// (`probs.len()` must be `1 << bits`; extra entries are ignored, missing ones read as 1/2).
    #[inline]
    pub(crate) fn tree(&mut self, probs: &mut [Prob], bits: u32) -> u32 {
        self.tree_l::<LIMIT>(probs, bits)
    }

    /// [`RangeDecoder::tree`] with a settled adaptation shift of `LIM`.
    #[inline]
    pub(crate) fn tree_l<const LIM: u32>(&mut self, probs: &mut [Prob], bits: u32) -> u32 {
        let mut m: usize = 1;
        let mut spare = PROB_INIT;
        for _ in 0..bits {
            let p = match probs.get_mut(m) {
                Some(p) => p,
                None => &mut spare,
            };
            m = (m << 1) | self.bit_l::<LIM>(p) as usize;
        }
        (m as u32).wrapping_sub(1 << bits)
    }
}

/// Range encoder (host side).
///
/// `low` is the bottom of the coding interval, kept to 32 bits plus one carry bit. Output is
/// written as soon as a byte leaves `low`'s top; a carry out of `low` later adds one to the
/// number already written, so it ripples back through the output (bytes of 0xFF become
/// 0x00 until one can take it). The output owns every byte written, so no byte has to be
/// held back waiting for a possible carry.
#[cfg(feature = "std")]
#[derive(Debug)]
pub(crate) struct RangeEncoder {
    low: u64,
    range: u32,
    /// Starts with one zero byte: the decoder's first read fills its code word's top byte,
    /// which only a carry out of the first coded byte can make non-zero.
    pub(crate) out: Vec<u8>,
    /// Optional cost accounting (bits per category), for analysis.
    pub(crate) stats: Option<[f64; 4]>,
    pub(crate) cat: usize,
}

#[cfg(feature = "std")]
impl RangeEncoder {
    pub(crate) fn new() -> Self {
        Self {
            low: 0,
            range: 0xFFFF_FFFF,
            out: vec![0],
            stats: None,
            cat: 0,
        }
    }

    /// Add `low`'s carry bit to the output written so far.
    fn carry(&mut self) {
        for b in self.out.iter_mut().rev() {
            let (v, overflow) = b.overflowing_add(1);
            *b = v;
            if !overflow {
                break;
            }
        }
    }

    /// Move `low`'s top byte to the output (after its carry, if any).
    fn shift_low(&mut self) {
        if self.low >> 32 != 0 {
            self.carry();
        }
        self.out.push((self.low >> 24) as u8);
        self.low = (self.low & 0x00FF_FFFF) << 8;
    }

    #[inline]
    pub(crate) fn bit(&mut self, p: &mut Prob, bit: u32) {
        self.bit_l::<LIMIT>(p, bit)
    }

    /// Encode `bit` with the cell `table[ctx]` (see [`RangeDecoder::bit_at`]).
    pub(crate) fn bit_at(&mut self, table: &mut [Prob], ctx: usize, bit: u32) {
        if let Some(p) = table.get_mut(ctx) {
            self.bit(p, bit);
        }
    }

    pub(crate) fn bit_l<const LIM: u32>(&mut self, p: &mut Prob, bit: u32) {
        if let Some(st) = self.stats.as_mut() {
            let p0 = f64::from(pmix(*p)) / f64::from(PROB_ONE);
            let pr = if bit == 0 { p0 } else { 1.0 - p0 };
            if let Some(c) = st.get_mut(self.cat) {
                *c -= pr.log2();
            }
        }
        let bound = (self.range >> PROB_BITS) * pmix(*p);
        if bit == 0 {
            self.range = bound;
        } else {
            self.low += u64::from(bound);
            self.range -= bound;
        }
        pupd::<LIM>(p, bit);
        while self.range < TOP {
            self.range <<= 8;
            self.shift_low();
        }
    }

    /// Encode `bit` with probability `p0` of a 0 (see [`RangeDecoder::bit_prob`]).
    pub(crate) fn bit_prob(&mut self, p0: u32, bit: u32) {
        let p0 = p0.clamp(64, PROB_ONE - 64);
        if let Some(st) = self.stats.as_mut() {
            let q = f64::from(p0) / f64::from(PROB_ONE);
            let pr = if bit == 0 { q } else { 1.0 - q };
            if let Some(c) = st.get_mut(self.cat) {
                *c -= pr.log2();
            }
        }
        let bound = (self.range >> PROB_BITS) * p0;
        if bit == 0 {
            self.range = bound;
        } else {
            self.low += u64::from(bound);
            self.range -= bound;
        }
        while self.range < TOP {
            self.range <<= 8;
            self.shift_low();
        }
    }

    pub(crate) fn direct_bits(&mut self, value: u32, count: u32) {
        if let Some(c) = self.stats.as_mut().and_then(|st| st.get_mut(self.cat)) {
            *c += f64::from(count);
        }
        for i in (0..count).rev() {
            self.range >>= 1;
            // Without a branch: raw bits are unpredictable by nature.
            let mask = 0u32.wrapping_sub((value >> i) & 1);
            self.low += u64::from(self.range & mask);
            while self.range < TOP {
                self.range <<= 8;
                self.shift_low();
            }
        }
    }

    pub(crate) fn tree(&mut self, probs: &mut [Prob], bits: u32, value: u32) {
        self.tree_l::<LIMIT>(probs, bits, value)
    }

    pub(crate) fn tree_l<const LIM: u32>(&mut self, probs: &mut [Prob], bits: u32, value: u32) {
        let mut m: usize = 1;
        let mut spare = PROB_INIT;
        for i in (0..bits).rev() {
            let b = (value >> i) & 1;
            let p = match probs.get_mut(m) {
                Some(p) => p,
                None => &mut spare,
            };
            self.bit_l::<LIM>(p, b);
            m = (m << 1) | b as usize;
        }
    }

    /// The coded bytes: `low`'s four bytes written out (the decoder reads a code word of
    /// four bytes past the leading one, so this is the last byte it needs).
    pub(crate) fn finish(mut self) -> Vec<u8> {
        for _ in 0..4 {
            self.shift_low();
        }
        self.out
    }
}

/// One bit through either coder, so a model writes its coding steps once for both directions:
/// the encoder codes `bit` and returns it, the decoder ignores `bit` and returns what it reads.
pub(crate) trait BitCoder {
    /// Code a bit with probability `p0` of a 0.
    fn code(&mut self, p0: u32, bit: u32) -> u32;
}

impl BitCoder for RangeDecoder {
    #[inline]
    fn code(&mut self, p0: u32, _bit: u32) -> u32 {
        self.bit_prob(p0)
    }
}

#[cfg(feature = "std")]
impl BitCoder for RangeEncoder {
    #[inline]
    fn code(&mut self, p0: u32, bit: u32) -> u32 {
        self.bit_prob(p0, bit);
        bit
    }
}
