//! Context models shared by the delta encoder and decoder. Both sides must update the models
//! identically, so every coding decision lives here, written once for both directions.

use super::mix::{learn, row, stretch_cell, Mixer};
use super::ptr::{Pred, Preds, PtrModel};
#[cfg(feature = "std")]
use crate::range_coder::RangeEncoder;
use crate::range_coder::{BitCoder, Prob, RangeDecoder, PROB_INIT};

/// Number of mantissa bits (below the leading one) coded with adaptive models; the rest are
/// coded as direct bits.
const MANT_MODELLED: u32 = 3;

/// A decoded difference position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DiffItem {
    /// The target byte.
    Byte(u8),
    /// A difference match starts here (decode it with `decode_diff_match`).
    MatchStart,
}

/// A decoded match item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Match {
    /// Copy from the target, `distance` back.
    Target(u32, u32),
    /// Copy from the source at cursor + offset (the cursor then follows the match).
    Source(i64, u32),
}

/// After this many zero differences in a row, difference runs code groups: one bit says
/// "the next [`RUN_GROUP`] differences are all zero".
pub(crate) const RUN_AFTER: u32 = 32;
/// Differences per run-mode group.
pub(crate) const RUN_GROUP: u32 = 64;

/// Literal regions at least this long carry a "raw literals" flag.
pub(crate) const RAW_MIN: u32 = 64;

/// Shortest target-history match.
pub(crate) const MIN_MATCH: u32 = 2;

/// Model for an unsigned 32-bit number: its bit length through a 6-bit tree, then the first
/// [`MANT_MODELLED`] bits below the leading one through a tree per length (lengths above 16
/// share one tree), then direct bits.
#[derive(Debug, Clone)]
pub(crate) struct NumModel {
    /// The bit-length tree (6 bits, values `0..=32`): nodes above 48 only lead to lengths
    /// over 32, which a decoder refuses, so they have no cells (the range coder's tree reads
    /// a missing node as a fresh cell).
    len: [Prob; 49],
    /// Mantissa trees of bit lengths 2..=16 (16 also serves longer numbers); lengths 0 and 1
    /// have no mantissa bits.
    mant: [[Prob; 8]; 15],
}

impl NumModel {
    pub(crate) const fn new() -> Self {
        Self {
            len: [PROB_INIT; 49],
            mant: [[PROB_INIT; 8]; 15],
        }
    }

    /// The mantissa tree of bit length `nb` (`>= 2`).
    #[inline]
    fn mant(&mut self, nb: u32) -> Option<&mut [Prob; 8]> {
        self.mant.get_mut((nb.min(16) as usize).checked_sub(2)?)
    }

    /// Decode a number; `None` if the bit length is impossible (corrupt stream).
    pub(crate) fn decode(&mut self, rc: &mut RangeDecoder) -> Option<u32> {
        let nb = rc.tree(&mut self.len, 6);
        if nb > 32 {
            return None;
        }
        if nb == 0 {
            return Some(0);
        }
        let rest = nb - 1;
        let hi_n = rest.min(MANT_MODELLED);
        let lo_n = rest - hi_n;
        let hi = match self.mant(nb) {
            Some(mant) => rc.tree(mant, hi_n),
            None => 0,
        };
        let lo = rc.direct_bits(lo_n);
        let top = 1u64 << rest;
        let v = top | (u64::from(hi) << lo_n) | u64::from(lo);
        u32::try_from(v).ok()
    }

    #[cfg(feature = "std")]
    pub(crate) fn encode(&mut self, rc: &mut RangeEncoder, v: u32) {
        let nb = 32 - v.leading_zeros();
        rc.tree(&mut self.len, 6, nb);
        if nb == 0 {
            return;
        }
        let rest = nb - 1;
        let hi_n = rest.min(MANT_MODELLED);
        let lo_n = rest - hi_n;
        let hi = (v >> lo_n) & ((1u32 << hi_n) - 1);
        if let Some(mant) = self.mant(nb) {
            rc.tree(mant, hi_n, hi);
        }
        rc.direct_bits(v & ((1u32 << lo_n) - 1), lo_n);
    }
}

/// Distance-and-length coding shared by target matches and difference matches: a
/// "repeat the last distance" bit (context: the caller's state), the distance - 1 unless
/// repeated, then the length - [`MIN_MATCH`].
#[derive(Debug, Clone)]
pub(crate) struct DistLen {
    rep: [Prob; 2],
    dist: NumModel,
    pub(crate) len: NumModel,
    /// The last distance.
    pub(crate) rep0: u32,
}

impl DistLen {
    const fn new() -> Self {
        Self {
            rep: [PROB_INIT; 2],
            dist: NumModel::new(),
            len: NumModel::new(),
            rep0: 0,
        }
    }

    fn decode(&mut self, rc: &mut RangeDecoder, st: usize) -> Option<(u32, u32)> {
        let rep = rc.bit_at(&mut self.rep, st) == 1;
        let dist = if rep {
            self.rep0
        } else {
            self.dist.decode(rc)?.checked_add(1)?
        };
        let len = self.len.decode(rc)?.checked_add(MIN_MATCH)?;
        self.rep0 = dist;
        Some((dist, len))
    }

    #[cfg(feature = "std")]
    fn encode(&mut self, rc: &mut RangeEncoder, st: usize, dist: u32, len: u32) {
        let rep = dist == self.rep0;
        rc.bit_at(&mut self.rep, st, u32::from(rep));
        if !rep {
            self.dist.encode(rc, dist - 1);
        }
        self.len.encode(rc, len - MIN_MATCH);
        self.rep0 = dist;
    }
}

/// All adaptive state of one block. `LT` is the number of literal tables the decoder
/// reserves (`1 << (lc + lp)` must not exceed it); it fixes the RAM the decoder needs.
#[derive(Debug, Clone)]
pub(crate) struct Model<const LT: usize, const PT: usize, const HT: usize> {
    lit: [[Prob; 256]; LT],
    dzero: [Prob; 256],
    mru_hit: [Prob; 4],
    mru_idx: [[Prob; 8]; 2],
    /// The last 8 distinct non-zero differences, most recent first.
    mru: [u8; 8],
    dsame4: [Prob; 4],
    /// The last 8 difference bytes (newest in the low byte).
    dhist: u64,
    dval: [[Prob; 256]; LT],
    pub(crate) add_len: NumModel,
    pub(crate) copy_len: NumModel,
    seek: NumModel,
    seek_sign: [Prob; 3],
    dm_flag: [Prob; 8],
    /// Difference matches.
    pub(crate) dmatch: DistLen,
    dm_state: u8,
    raw_flag: [Prob; 2],
    /// The current literal region codes literals as raw bytes.
    pub(crate) lit_raw: bool,
    lz_flag: [Prob; 4],
    src_flag: [Prob; 2],
    soff: NumModel,
    soff_sign: [Prob; 2],
    srep_flag: [Prob; 2],
    /// Offset of the last source match (from its diagonal).
    pub(crate) last_soff: i64,
    /// Target-history matches (source matches share its length model).
    pub(crate) tmatch: DistLen,
    /// 1 after a match, 0 after a literal.
    lz_state: u8,
    /// Context history (reset with the model at each block).
    d1: u8,
    d2: u8,
    last_nz: u8,
    last_seek_sign: u8,
    lc: u8,
    lp: u8,
    /// The last 4 target bytes (newest in the low byte).
    hist: u32,
    /// The last 4 source bytes under difference runs (newest in the low byte).
    olds: u32,
    /// The three source bytes after the current one (0 past the source's end).
    pub(crate) ahead: u32,
    /// Pointer prediction.
    pub(crate) ptr: PtrModel<PT>,
    pp: Preds,
    phit: [Prob; 16],
    mix_pred: Mixer<5, 4>,
    /// Hashed cells for the contexts the mixers combine: target and source bytes around the
    /// position (what an instruction encoding and its relocations look like).
    ht: [Prob; HT],
    /// log2 of the hashed cells the stream uses (`<= log2(HT)`, checked by the caller).
    ht_log2: u8,
    mix_nz: Mixer<10, 8>,
    mix_dv: Mixer<9, 8>,
    mix_flag: Mixer<8, 4>,
    mix_lit: Mixer<6, 8>,
    /// Consecutive zero differences so far (run mode starts after [`RUN_AFTER`]).
    zrun: u32,
    /// Positions left in an accepted all-zero group.
    run_left: u8,
    /// Positions before the run flag may be asked again (after a "no").
    run_wait: u8,
    run_flag: [Prob; 4],
}

impl<const LT: usize, const PT: usize, const HT: usize> Model<LT, PT, HT> {
    pub(crate) const fn new(lc: u8, lp: u8) -> Self {
        Self {
            lit: [[PROB_INIT; 256]; LT],
            dzero: [PROB_INIT; 256],
            mru_hit: [PROB_INIT; 4],
            mru_idx: [[PROB_INIT; 8]; 2],
            mru: [0; 8],
            dsame4: [PROB_INIT; 4],
            dhist: 0,
            dval: [[PROB_INIT; 256]; LT],
            add_len: NumModel::new(),
            copy_len: NumModel::new(),
            seek: NumModel::new(),
            seek_sign: [PROB_INIT; 3],
            dm_flag: [PROB_INIT; 8],
            dmatch: DistLen::new(),
            dm_state: 0,
            raw_flag: [PROB_INIT; 2],
            lit_raw: false,
            lz_flag: [PROB_INIT; 4],
            src_flag: [PROB_INIT; 2],
            soff: NumModel::new(),
            soff_sign: [PROB_INIT; 2],
            srep_flag: [PROB_INIT; 2],
            last_soff: 0,
            tmatch: DistLen::new(),
            lz_state: 0,
            d1: 0,
            d2: 0,
            last_nz: 0,
            last_seek_sign: 0,
            lc,
            lp,
            hist: 0,
            olds: 0,
            ahead: 0,
            ptr: PtrModel::new(),
            pp: [Pred { diff: 0, kind: 0 }; 4],
            phit: [PROB_INIT; 16],
            mix_pred: Mixer::new(),
            ht: [PROB_INIT; HT],
            ht_log2: 0,
            mix_nz: Mixer::new(),
            mix_dv: Mixer::new(),
            mix_flag: Mixer::new(),
            mix_lit: Mixer::new(),
            zrun: 0,
            run_left: 0,
            run_wait: 0,
            run_flag: [PROB_INIT; 4],
        }
    }

    /// Reset to the initial state in place (no large temporary on the stack: the literal
    /// and value tables are filled where they are).
    pub(crate) fn reset(&mut self, lc: u8, lp: u8, ptr_log2: u8, ht_log2: u8) {
        for t in self.lit.iter_mut().chain(self.dval.iter_mut()) {
            t.fill(PROB_INIT);
        }
        self.dzero.fill(PROB_INIT);
        self.mru_hit = [PROB_INIT; 4];
        self.mru_idx = [[PROB_INIT; 8]; 2];
        self.mru = [0; 8];
        self.dsame4 = [PROB_INIT; 4];
        self.dhist = 0;
        self.add_len = NumModel::new();
        self.copy_len = NumModel::new();
        self.seek = NumModel::new();
        self.seek_sign = [PROB_INIT; 3];
        self.dm_flag = [PROB_INIT; 8];
        self.dmatch = DistLen::new();
        self.dm_state = 0;
        self.raw_flag = [PROB_INIT; 2];
        self.lit_raw = false;
        self.lz_flag = [PROB_INIT; 4];
        self.src_flag = [PROB_INIT; 2];
        self.soff = NumModel::new();
        self.soff_sign = [PROB_INIT; 2];
        self.srep_flag = [PROB_INIT; 2];
        self.last_soff = 0;
        self.tmatch = DistLen::new();
        self.lz_state = 0;
        self.d1 = 0;
        self.d2 = 0;
        self.last_nz = 0;
        self.last_seek_sign = 0;
        self.lc = lc;
        self.lp = lp;
        self.hist = 0;
        self.olds = 0;
        self.ahead = 0;
        self.ptr.reset(ptr_log2);
        self.pp = Default::default();
        self.phit = [PROB_INIT; 16];
        self.mix_pred.reset();
        self.ht_log2 = ht_log2;
        if let Some(cells) = self.ht.get_mut(..1usize << ht_log2) {
            cells.fill(PROB_INIT);
        }
        self.mix_nz.reset();
        self.mix_dv.reset();
        self.mix_flag.reset();
        self.mix_lit.reset();
        self.zrun = 0;
        self.run_left = 0;
        self.run_wait = 0;
        self.run_flag = [PROB_INIT; 4];
    }

    /// Cells in this stream's hashed table, as log2: 512 per literal table.
    fn ht_bits(&self) -> u32 {
        u32::from(self.ht_log2)
    }

    /// The "is the difference non-zero" bit: the run context's cell mixed with cells for the
    /// old byte with the previous target byte, the two previous target bytes with the byte
    /// lane, the two last old bytes with the previous target byte, and the three previous
    /// target bytes.
    fn code_nz<C: BitCoder>(&mut self, rc: &mut C, pos: u64, old: u8, nz: u32) -> u32 {
        let ctx = self.diff_ctx(pos);
        let h = self.hist;
        self.olds = (self.olds << 8) | u32::from(old);
        let o = self.olds;
        let d1 = u32::from(self.d1 != 0);
        let d2 = u32::from(self.d2 != 0);
        let ctxs = [
            u32::from(old) | ((h & 0xFF) << 8) | (d1 << 16),
            (h & 0xFFFF) | (((pos & 3) as u32) << 16) | (d1 << 18),
            (o & 0xFFFF) | ((h & 0xFF) << 16),
            (h & 0xFF_FFFF) | ((d1 | (d2 << 1)) << 24),
            pctx(self.pp[0], 0),
            pctx(self.pp[1], 1),
            pctx(self.pp[2], 2),
            pctx(self.pp[3], 3),
        ];
        let rows = rows(ctxs, 0, self.ht_bits());
        let Some(cell) = self.dzero.get_mut(ctx) else {
            return 0;
        };
        mixed_bit(
            rc,
            cell,
            &mut self.ht,
            &rows,
            0,
            &mut self.mix_nz,
            ctx & 7,
            nz,
        )
    }

    /// A flag about a non-zero difference (`kind` 1: same as 4 back, 2: in the recent list).
    fn code_flag<C: BitCoder>(&mut self, rc: &mut C, kind: u32, old: u8, bit: u32) -> u32 {
        let c = usize::from(self.d1 != 0);
        let h = self.hist;
        let ctxs = [
            u32::from(old) | ((h & 0xFF) << 8),
            u32::from(self.d1) | (u32::from(self.d4()) << 8),
            pctx(self.pp[0], 0),
            pctx(self.pp[1], 1),
            pctx(self.pp[2], 2),
            pctx(self.pp[3], 3),
        ];
        let rows = rows(ctxs, kind, self.ht_bits());
        let cell = if kind == 1 {
            self.dsame4.get_mut(c)
        } else {
            self.mru_hit.get_mut(c)
        };
        let Some(cell) = cell else {
            return 0;
        };
        let set = ((kind as usize - 1) << 1) | c;
        mixed_bit(
            rc,
            cell,
            &mut self.ht,
            &rows,
            0,
            &mut self.mix_flag,
            set,
            bit,
        )
    }

    /// A non-zero difference: is it one of the pointer predictions (tried in order, each value
    /// once)? `d`: the difference when encoding, `None` when decoding. Returns the value hit.
    fn code_pred<C: BitCoder>(&mut self, rc: &mut C, old: u8, d: Option<u8>) -> Option<u8> {
        let pp = self.pp;
        let mut tried = [0u8; 4];
        let mut n = 0;
        for (k, p) in pp.iter().enumerate() {
            if p.kind == 0 || p.diff == 0 || tried[..n].contains(&p.diff) {
                continue;
            }
            if let Some(t) = tried.get_mut(n) {
                *t = p.diff;
            }
            n += 1;
            let agree = pp
                .iter()
                .filter(|q| q.kind != 0 && q.diff == p.diff)
                .count();
            let ctxs = [
                u32::from(old) | ((self.hist & 0xFF) << 8),
                pctx(*p, k as u32) | ((agree as u32) << 20),
                u32::from(self.d1) | (u32::from(self.d4()) << 8) | ((k as u32) << 16),
            ];
            let rows = rows(ctxs, 5, self.ht_bits());
            let ci = k * 4 + usize::from(p.kind & 3);
            let cell = self.phit.get_mut(ci)?;
            let bit = d.map_or(0, |d| u32::from(d == p.diff));
            let got = mixed_bit(rc, cell, &mut self.ht, &rows, 0, &mut self.mix_pred, k, bit);
            if got == 1 {
                return Some(p.diff);
            }
        }
        None
    }

    /// A difference byte through its tree, mixed with cells for the old byte with the
    /// previous target byte, the previous difference with the one 4 back, and the last
    /// non-zero difference with the previous old byte.
    fn code_dval<C: BitCoder>(&mut self, rc: &mut C, vc: usize, old: u8, value: u8) -> u8 {
        let ctxs = [
            u32::from(old) | ((self.hist & 0xFF) << 8),
            u32::from(self.d1) | (u32::from(self.d4()) << 8),
            u32::from(self.last_nz) | (self.olds & 0xFF00),
            pctx(self.pp[0], 0),
            pctx(self.pp[1], 1),
            pctx(self.pp[2], 2),
            pctx(self.pp[3], 3),
        ];
        let rows = rows(ctxs, 3, self.ht_bits());
        match self.dval.get_mut(vc) {
            Some(t) => mixed_tree(rc, t, &mut self.ht, &rows, &mut self.mix_dv, value),
            None => 0,
        }
    }

    #[inline]
    fn lit_ctx(&self, pos: u64) -> usize {
        let lc = u32::from(self.lc);
        let lp = u32::from(self.lp);
        let hi = if lc == 0 {
            0
        } else {
            usize::from(self.hist as u8 >> (8 - lc))
        };
        let p = (pos as usize) & ((1usize << lp) - 1);
        (p << lc) | hi
    }

    #[inline]
    fn d4(&self) -> u8 {
        (self.dhist >> 24) as u8
    }

    /// Difference-value table: by "previous difference non-zero" and, when the stream has at
    /// least 8 literal tables (`lc + lp >= 3`), by byte lane (`pos & 3`). It depends on the
    /// stream's parameters only, so encoder and decoder agree whatever they reserved.
    #[inline]
    fn dval_ctx(&self, c: usize, pos: u64) -> usize {
        let tables = 1usize << (u32::from(self.lc) + u32::from(self.lp));
        if tables >= 8 {
            c * 4 + (pos & 3) as usize
        } else {
            c.min(tables - 1)
        }
    }

    #[inline]
    fn diff_ctx(&self, pos: u64) -> usize {
        usize::from(self.d1 != 0)
            | (usize::from(self.d2 != 0) << 1)
            | (usize::from(self.d4() != 0) << 2)
            | (usize::from(self.dm_state != 0) << 3)
            | (usize::from(self.d1 == self.last_nz && self.d1 != 0) << 4)
            | (((pos as usize) & 3) << 5)
            | (usize::from(self.d4() == self.last_nz) << 7)
    }

    #[inline]
    fn push_diff(&mut self, d: u8, out: u8) {
        self.zrun = if d == 0 {
            self.zrun.saturating_add(1)
        } else {
            0
        };
        self.dhist = (self.dhist << 8) | u64::from(d);
        self.d2 = self.d1;
        self.d1 = d;
        if d != 0 {
            self.last_nz = d;
            let k = self
                .mru
                .iter()
                .position(|&v| v == d)
                .unwrap_or(self.mru.len() - 1);
            self.mru.copy_within(0..k, 1);
            self.mru[0] = d;
        }
        self.hist = (self.hist << 8) | u32::from(out);
        self.ptr.push(out.wrapping_sub(d), self.hist);
    }

    fn dm_ctx(&self) -> usize {
        usize::from(self.d1 != 0)
            | (usize::from(self.d4() != 0) << 1)
            | (usize::from(self.dm_state) << 2)
    }

    /// In a difference run: does a match in the difference history start here?
    #[inline]
    pub(crate) fn decode_is_diff_match(&mut self, rc: &mut RangeDecoder) -> bool {
        let ctx = self.dm_ctx();
        rc.bit_at(&mut self.dm_flag, ctx) == 1
    }

    #[cfg(feature = "std")]
    pub(crate) fn encode_is_diff_match(&mut self, rc: &mut RangeEncoder, m: bool) {
        let ctx = self.dm_ctx();
        rc.bit_at(&mut self.dm_flag, ctx, u32::from(m));
    }

    /// Decode a difference match `(distance, length)`.
    pub(crate) fn decode_diff_match(&mut self, rc: &mut RangeDecoder) -> Option<(u32, u32)> {
        let m = self.dmatch.decode(rc, usize::from(self.dm_state))?;
        self.dm_state = 1;
        Some(m)
    }

    #[cfg(feature = "std")]
    pub(crate) fn encode_diff_match(&mut self, rc: &mut RangeEncoder, dist: u32, len: u32) {
        self.dmatch
            .encode(rc, usize::from(self.dm_state), dist, len);
        self.dm_state = 1;
    }

    /// A difference byte copied by a difference match: update the contexts.
    #[inline]
    pub(crate) fn copied_diff(&mut self, d: u8, out: u8) {
        self.push_diff(d, out);
    }

    fn run_ctx(&self) -> usize {
        usize::from(self.zrun >= 64) | (usize::from(self.zrun >= 1024) << 1)
    }

    /// Run mode: a zero difference inside an accepted group, or the group's flag. Returns
    /// `Some(())` when the position is a zero difference settled here (nothing else coded).
    fn code_run<C: BitCoder>(
        &mut self,
        rc: &mut C,
        old: u8,
        left: u32,
        zero_ahead: bool,
    ) -> Option<()> {
        if self.run_left > 0 {
            self.run_left -= 1;
        } else {
            if self.run_wait > 0 {
                self.run_wait -= 1;
                return None;
            }
            if self.zrun < RUN_AFTER || left < RUN_GROUP {
                return None;
            }
            let ctx = self.run_ctx();
            let p0 = self.run_flag.get(ctx).map_or(PROB_INIT, |p| *p);
            let bit = rc.code(u32::from(p0 & 0xFFF8), u32::from(zero_ahead));
            if let Some(p) = self.run_flag.get_mut(ctx) {
                learn::<5>(p, bit);
            }
            if bit == 0 {
                self.run_wait = (RUN_GROUP - 1) as u8;
                return None;
            }
            self.run_left = (RUN_GROUP - 1) as u8;
        }
        self.olds = (self.olds << 8) | u32::from(old);
        self.push_diff(0, old);
        self.dm_state = 0;
        Some(())
    }

    /// Zero differences still due in an accepted all-zero group (run mode).
    #[inline]
    pub(crate) fn run_pending(&self) -> usize {
        usize::from(self.run_left)
    }

    /// Settle the next `olds.len()` positions (at most [`Self::run_pending`]) as zero
    /// differences of the accepted group at once: the state ends as after coding them one by
    /// one (`olds`: the source bytes there, which the target repeats).
    pub(crate) fn skip_run(&mut self, olds: &[u8]) {
        let k = olds.len().min(usize::from(self.run_left));
        if k == 0 {
            return;
        }
        self.run_left -= k as u8;
        self.ptr.skip_zeros(&olds[..k], self.hist);
        // Only the last four bytes survive in the 32-bit histories.
        for &o in &olds[k.saturating_sub(4)..k] {
            self.olds = (self.olds << 8) | u32::from(o);
            self.hist = (self.hist << 8) | u32::from(o);
        }
        self.zrun = self.zrun.saturating_add(k as u32);
        self.dhist = if k >= 8 { 0 } else { self.dhist << (8 * k) };
        self.d2 = if k >= 2 { 0 } else { self.d1 };
        self.d1 = 0;
        self.dm_state = 0;
    }

    /// Decode one difference byte for target position `pos`; `left` differences (this one
    /// included) remain in the run.
    #[inline]
    pub(crate) fn decode_diff(
        &mut self,
        rc: &mut RangeDecoder,
        pos: u64,
        old: u8,
        matches: bool,
        left: u32,
    ) -> DiffItem {
        if self.code_run(rc, old, left, false).is_some() {
            return DiffItem::Byte(old);
        }
        self.pp = self.ptr.predict(old, self.ahead, self.hist);
        let nz = self.code_nz(rc, pos, old, 0);
        if nz == 1 && matches && self.decode_is_diff_match(rc) {
            return DiffItem::MatchStart;
        }
        let d4 = self.d4();
        let d = if nz == 0 {
            0
        } else if let Some(v) = self.code_pred(rc, old, None) {
            v
        } else if d4 != 0 && self.code_flag(rc, 1, old, 0) == 1 {
            d4
        } else {
            let c = usize::from(self.d1 != 0);
            let hit = self.code_flag(rc, 2, old, 0);
            if hit == 1 {
                let k = match self.mru_idx.get_mut(c) {
                    Some(t) => rc.tree(t, 3) as usize,
                    None => 0,
                };
                self.mru.get(k).copied().unwrap_or(0)
            } else {
                let vc = self.dval_ctx(c, pos);
                self.code_dval(rc, vc, old, 0)
            }
        };
        let out = old.wrapping_add(d);
        self.push_diff(d, out);
        self.dm_state = 0;
        DiffItem::Byte(out)
    }

    #[cfg(feature = "std")]
    /// Code the difference `new - old` at `pos`; with `matches`, a non-zero difference is
    /// preceded by a "difference match starts here" bit, and with `is_match` that bit is set
    /// and nothing else is coded (the caller codes the match). `left`: differences left in
    /// the run (this one included); `zero_ahead`: the next [`RUN_GROUP`] are all zero.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn encode_diff(
        &mut self,
        rc: &mut RangeEncoder,
        pos: u64,
        old: u8,
        new: u8,
        matches: bool,
        is_match: bool,
        left: u32,
        zero_ahead: bool,
    ) {
        let d = new.wrapping_sub(old);
        rc.cat = 1;
        if self.code_run(rc, old, left, zero_ahead).is_some() {
            return;
        }
        self.pp = self.ptr.predict(old, self.ahead, self.hist);
        self.code_nz(rc, pos, old, u32::from(d != 0 || is_match));
        rc.cat = 2;
        if (d != 0 || is_match) && matches {
            self.encode_is_diff_match(rc, is_match);
            if is_match {
                return;
            }
        }
        let d4 = self.d4();
        let mut via4 = false;
        if d != 0 && self.code_pred(rc, old, Some(d)).is_some() {
            self.push_diff(d, new);
            self.dm_state = 0;
            return;
        }
        if d != 0 && d4 != 0 {
            via4 = d == d4;
            self.code_flag(rc, 1, old, u32::from(via4));
        }
        if d != 0 && !via4 {
            let c = usize::from(self.d1 != 0);
            let k = self.mru.iter().position(|&v| v == d);
            self.code_flag(rc, 2, old, u32::from(k.is_some()));
            if let Some(k) = k {
                if let Some(t) = self.mru_idx.get_mut(c) {
                    rc.tree(t, 3, k as u32);
                }
            } else {
                let vc = self.dval_ctx(c, pos);
                self.code_dval(rc, vc, old, d);
            }
        }
        self.push_diff(d, new);
        self.dm_state = 0;
    }

    /// A literal region of `len` bytes starts: decode whether its literals are raw.
    pub(crate) fn decode_region(&mut self, rc: &mut RangeDecoder, len: u32) {
        self.lit_raw =
            len >= RAW_MIN && rc.bit_at(&mut self.raw_flag, usize::from(self.lit_raw)) == 1;
    }

    #[cfg(feature = "std")]
    pub(crate) fn encode_region(&mut self, rc: &mut RangeEncoder, len: u32, raw: bool) {
        let raw = raw && len >= RAW_MIN;
        if len >= RAW_MIN {
            rc.bit_at(
                &mut self.raw_flag,
                usize::from(self.lit_raw),
                u32::from(raw),
            );
        }
        self.lit_raw = raw;
    }

    /// A literal byte through its tree: the `lc`/`lp` table's cell mixed with hashed cells for
    /// no context, the previous byte, the two previous bytes, and the byte 4 back with the
    /// byte lane.
    fn code_lit<C: BitCoder>(&mut self, rc: &mut C, ctx: usize, pos: u64, value: u8) -> u8 {
        let h = self.hist;
        let ctxs = [
            0,
            h & 0xFF,
            h & 0xFFFF,
            (h >> 24) | (((pos & 3) as u32) << 8),
        ];
        let rows = rows(ctxs, 4, self.ht_bits());
        match self.lit.get_mut(ctx) {
            Some(t) => mixed_tree(rc, t, &mut self.ht, &rows, &mut self.mix_lit, value),
            None => 0,
        }
    }

    /// Decode one literal byte for target position `pos`.
    #[inline]
    pub(crate) fn decode_lit(&mut self, rc: &mut RangeDecoder, pos: u64) -> u8 {
        let ctx = self.lit_ctx(pos);
        let b = if self.lit_raw {
            rc.direct_bits(8) as u8
        } else {
            self.code_lit(rc, ctx, pos, 0)
        };
        self.hist = (self.hist << 8) | u32::from(b);
        self.d2 = self.d1;
        self.d1 = 0;
        self.dhist <<= 8;
        self.lz_state = 0;
        self.zrun = 0;
        self.run_wait = 0;
        b
    }

    #[cfg(feature = "std")]
    pub(crate) fn encode_lit(&mut self, rc: &mut RangeEncoder, pos: u64, b: u8) {
        rc.cat = 3;
        let ctx = self.lit_ctx(pos);
        if self.lit_raw {
            rc.direct_bits(u32::from(b), 8);
        } else {
            self.code_lit(rc, ctx, pos, b);
        }
        self.hist = (self.hist << 8) | u32::from(b);
        self.d2 = self.d1;
        self.d1 = 0;
        self.dhist <<= 8;
        self.lz_state = 0;
        self.zrun = 0;
        self.run_wait = 0;
    }

    fn lz_ctx(&self) -> usize {
        usize::from(self.lz_state & 1) | (usize::from(self.hist as u8 == 0) << 1)
    }

    /// In a literal region: is the next item a match (true) or a literal byte?
    #[inline]
    pub(crate) fn decode_is_match(&mut self, rc: &mut RangeDecoder) -> bool {
        let ctx = self.lz_ctx();
        rc.bit_at(&mut self.lz_flag, ctx) == 1
    }

    #[cfg(feature = "std")]
    pub(crate) fn encode_is_match(&mut self, rc: &mut RangeEncoder, is_match: bool) {
        let ctx = self.lz_ctx();
        rc.bit_at(&mut self.lz_flag, ctx, u32::from(is_match));
    }

    /// Decode a match: `Target(distance, length)` or `Source(offset from the source cursor,
    /// length)`; `None` if impossible.
    pub(crate) fn decode_match(&mut self, rc: &mut RangeDecoder) -> Option<Match> {
        let st = usize::from(self.lz_state & 1);
        let from_source = rc.bit_at(&mut self.src_flag, st) == 1;
        if from_source {
            let srep = rc.bit_at(&mut self.srep_flag, st) == 1;
            let off = if srep {
                self.last_soff
            } else {
                let mag = self.soff.decode(rc)?;
                let neg = mag != 0 && rc.bit_at(&mut self.soff_sign, st) == 1;
                if neg {
                    -i64::from(mag)
                } else {
                    i64::from(mag)
                }
            };
            let len = self.tmatch.len.decode(rc)?.checked_add(MIN_MATCH)?;
            self.lz_state = 1;
            self.last_soff = off;
            return Some(Match::Source(off, len));
        }
        let (d, l) = self.decode_target_match(rc, st)?;
        Some(Match::Target(d, l))
    }

    #[cfg(feature = "std")]
    pub(crate) fn encode_source_match(&mut self, rc: &mut RangeEncoder, off: i64, len: u32) {
        let st = usize::from(self.lz_state & 1);
        rc.bit_at(&mut self.src_flag, st, 1);
        let srep = off == self.last_soff;
        rc.bit_at(&mut self.srep_flag, st, u32::from(srep));
        if !srep {
            let mag = u32::try_from(off.unsigned_abs()).unwrap_or(u32::MAX);
            self.soff.encode(rc, mag);
            if mag != 0 {
                rc.bit_at(&mut self.soff_sign, st, u32::from(off < 0));
            }
        }
        self.tmatch.len.encode(rc, len - MIN_MATCH);
        self.lz_state = 1;
        self.last_soff = off;
    }

    fn decode_target_match(&mut self, rc: &mut RangeDecoder, st: usize) -> Option<(u32, u32)> {
        let m = self.tmatch.decode(rc, st)?;
        self.lz_state = 1;
        Some(m)
    }

    #[cfg(feature = "std")]
    pub(crate) fn encode_match(&mut self, rc: &mut RangeEncoder, dist: u32, len: u32) {
        let st = usize::from(self.lz_state & 1);
        rc.bit_at(&mut self.src_flag, st, 0);
        self.tmatch.encode(rc, st, dist, len);
        self.lz_state = 1;
    }

    /// After (a piece of) a match's bytes are out: they form the literal context.
    pub(crate) fn after_match(&mut self, bytes: &[u8]) {
        for &b in bytes.iter().rev().take(4).rev() {
            self.hist = (self.hist << 8) | u32::from(b);
        }
        self.zrun = 0;
        self.run_wait = 0;
        self.d2 = 0;
        self.d1 = 0;
        self.dhist = 0;
    }

    /// Decode a signed source seek.
    pub(crate) fn decode_seek(&mut self, rc: &mut RangeDecoder) -> Option<i64> {
        let mag = self.seek.decode(rc)?;
        if mag == 0 {
            return Some(0);
        }
        let neg = rc.bit_at(&mut self.seek_sign, usize::from(self.last_seek_sign));
        self.last_seek_sign = 1 + neg as u8;
        Some(if neg == 1 {
            -i64::from(mag)
        } else {
            i64::from(mag)
        })
    }

    #[cfg(feature = "std")]
    pub(crate) fn encode_seek(&mut self, rc: &mut RangeEncoder, seek: i64) {
        let mag = u32::try_from(seek.unsigned_abs()).unwrap_or(u32::MAX);
        self.seek.encode(rc, mag);
        if mag == 0 {
            return;
        }
        let neg = u32::from(seek < 0);
        rc.bit_at(&mut self.seek_sign, usize::from(self.last_seek_sign), neg);
        self.last_seek_sign = 1 + neg as u8;
    }
}

/// Code a byte MSB first through the bit tree `tree` (node `1..=255`), each bit mixed with the
/// hashed cells of `rows` (see [`mixed_bit`]); the mixer's weight set is the bit index.
#[allow(clippy::too_many_arguments)]
fn mixed_tree<C: BitCoder, const K: usize, const N: usize, const S: usize, const HT: usize>(
    rc: &mut C,
    tree: &mut [Prob; 256],
    ht: &mut [Prob; HT],
    rows: &[usize; K],
    mix: &mut Mixer<N, S>,
    value: u8,
) -> u8 {
    let mut node = 1usize;
    for i in (0..8).rev() {
        let Some(cell) = tree.get_mut(node) else {
            return 0;
        };
        let bit = mixed_bit(
            rc,
            cell,
            ht,
            rows,
            node,
            mix,
            7 - i as usize,
            u32::from(value >> i) & 1,
        );
        node = (node << 1) | bit as usize;
    }
    (node & 0xFF) as u8
}

/// The rows of `ctxs` in the hashed table of `1 << bits` cells, each context salted with its
/// index and `salt` (the decision it serves).
fn rows<const K: usize>(ctxs: [u32; K], salt: u32, bits: u32) -> [usize; K] {
    let mut out = [0usize; K];
    for (k, (&c, r)) in ctxs.iter().zip(out.iter_mut()).enumerate() {
        *r = row(
            c.wrapping_add((salt * 8 + k as u32).wrapping_mul(0x2F0B_3A49)),
            bits,
        );
    }
    out
}

/// Code a bit with the cell `direct` mixed with the hashed cells `rows[k] ^ node` (see
/// [`rows`]): the mixer picks weight set `set`.
#[allow(clippy::too_many_arguments)]
#[inline]
fn mixed_bit<C: BitCoder, const K: usize, const N: usize, const S: usize, const HT: usize>(
    rc: &mut C,
    direct: &mut Prob,
    ht: &mut [Prob; HT],
    rows: &[usize; K],
    node: usize,
    mix: &mut Mixer<N, S>,
    set: usize,
    bit: u32,
) -> u32 {
    let mut st = [256i32; N];
    if let Some(s0) = st.get_mut(0) {
        *s0 = stretch_cell(*direct);
    }
    for (k, &r) in rows.iter().enumerate() {
        let i = r ^ node;
        let cell = ht.get(i);
        if let (Some(s), Some(p)) = (st.get_mut(k + 1), cell) {
            *s = stretch_cell(*p);
        }
    }
    let p0 = mix.mix(st, set);
    let bit = rc.code(p0, bit);
    mix.update(bit);
    learn::<4>(direct, bit);
    for &r in rows {
        let i = r ^ node;
        let cell = ht.get_mut(i);
        if let Some(p) = cell {
            learn::<4>(p, bit);
        }
    }
    bit
}

fn pctx(p: Pred, k: u32) -> u32 {
    u32::from(p.diff) | (u32::from(p.kind) << 8) | (k << 16) | 0x2000_0000
}
