//! Pointer prediction for difference runs.
//!
//! When code or data move, every absolute address that points at them changes by their shift,
//! and every relative branch offset by the shift of its target minus the shift of the branch.
//! The model learns, per 256-byte region of the old address space, the change last seen in a
//! 32-bit little-endian word that points there: as an absolute value, and relative to the
//! word's own position; and per 256-byte region of a 16-bit address space, the change last
//! seen in a 16-bit little-endian word (kept in the absolute table under keys of their own).
//! At each position of a difference run it predicts the new byte for the word starting here
//! (each reading) and for a word starting up to 3 bytes back (1 for 16-bit words) whose earlier
//! bytes the prediction already explained (a change it got right). The predictions are
//! contexts for the mixed decisions and candidates coded with one bit each; a wrong one costs
//! little, a right one makes a relocated pointer nearly free. Nothing here is specific to an
//! instruction set.
//!
//! RAM: two tables of `PT` entries (an 8-bit tag and a 24-bit change: 4 bytes each); a stream
//! uses `2^ptr_log2 <= PT` of them, or none (`ptr_log2 = 0`).

/// The three bytes after `b[at]` (low first), 0 past the end of `b`: what the model reads
/// ahead of the current position in the source.
#[inline]
pub(crate) fn ahead(b: &[u8], at: usize) -> u32 {
    let byte = |k: usize| u32::from(b.get(at + k).copied().unwrap_or(0));
    byte(1) | (byte(2) << 8) | (byte(3) << 16)
}

/// What the model predicts for one position: a difference byte and how it was found
/// (0: no prediction).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Pred {
    pub(crate) diff: u8,
    pub(crate) kind: u8,
}

/// The predictions for one position: a confirmed word starting 1..=3 bytes back, then the
/// absolute and the relative reading of the word starting here, then a 16-bit absolute word
/// (starting here, or confirmed starting one byte back).
pub(crate) type Preds = [Pred; 4];

/// Where a 16-bit word's region (`v >> 8`) is kept in the absolute table: a key outside the
/// 32-bit words' usual range, so both share the table without a table of their own.
#[inline]
fn key16(v: u32) -> u32 {
    (0x00A5_0000 | (v >> 8)) << 8
}

/// One table of learned changes: each entry a 24-bit signed change (bits 8..32) and an 8-bit
/// tag of the key (bits 0..8); 0 is an empty entry.
#[derive(Debug, Clone)]
struct Table<const PT: usize> {
    e: [u32; PT],
}

impl<const PT: usize> Table<PT> {
    const fn new() -> Self {
        Self { e: [0; PT] }
    }

    fn clear(&mut self) {
        self.e.fill(0);
    }

    #[inline]
    fn slot(v: u32, bits: u32) -> (usize, u32) {
        let h = (v >> 8).wrapping_mul(0x9E37_79B1);
        ((h >> (32 - bits)) as usize, h & 0xFF)
    }

    #[inline]
    fn look(&self, v: u32, bits: u32) -> Option<i32> {
        let (i, tag) = Self::slot(v, bits);
        match self.e.get(i) {
            Some(&x) if x & 0xFF == tag && x >> 8 != 0 => Some((x as i32) >> 8),
            _ => None,
        }
    }

    #[inline]
    fn learn(&mut self, v: u32, bits: u32, delta: i32) {
        let (i, tag) = Self::slot(v, bits);
        if let Some(x) = self.e.get_mut(i) {
            *x = ((delta as u32) << 8) | tag;
        }
    }
}

/// Pointer prediction state (restarts with every block).
#[derive(Debug, Clone)]
pub(crate) struct PtrModel<const PT: usize> {
    abs: Table<PT>,
    rel: Table<PT>,
    /// log2 of the entries the stream uses (0: off).
    bits: u32,
    /// Old bytes of the 4 positions before the current one, in address order (a little-endian
    /// word: the newest in the high byte).
    pold: u32,
    /// Consecutive difference positions so far (old and new bytes of the run line up).
    run: u32,
    /// Source position of the current difference position.
    sp: u32,
    /// Target position of the current difference position.
    tp: u32,
}

/// Largest change a word may show to be learned as a pointer's.
const MAX_SHIFT: u32 = 1 << 23;

impl<const PT: usize> PtrModel<PT> {
    pub(crate) const fn new() -> Self {
        Self {
            abs: Table::new(),
            rel: Table::new(),
            bits: 0,
            pold: 0,
            run: 0,
            sp: 0,
            tp: 0,
        }
    }

    /// Restart for a block of a stream using `2^bits` entries (`bits == 0`: off; the caller
    /// has checked `2^bits <= PT`).
    pub(crate) fn reset(&mut self, bits: u8) {
        self.bits = u32::from(bits);
        if bits != 0 {
            self.abs.clear();
            self.rel.clear();
        }
        self.pold = 0;
        self.run = 0;
        self.sp = 0;
        self.tp = 0;
    }

    /// A difference run starts at source `sp`, target `tp`.
    pub(crate) fn begin(&mut self, sp: u64, tp: u64) {
        self.run = 0;
        self.sp = sp as u32;
        self.tp = tp as u32;
    }

    /// Predict the byte at the current position. `old`: its old byte, `ahead`: the three old
    /// bytes after it (low first), `hist`: the four new bytes before it (newest low).
    pub(crate) fn predict(&self, old: u8, ahead: u32, hist: u32) -> Preds {
        let mut out = [Pred::default(); 4];
        if self.bits == 0 {
            return out;
        }
        let win = u64::from(self.pold) | (u64::from(old) << 32) | (u64::from(ahead) << 40);
        let seen_le = hist.swap_bytes();
        let changed = self.pold ^ seen_le;
        for j in 0..4u32.min(self.run + 1) {
            // A word starting `j > 0` bytes back is only kept if it explains a change among
            // those bytes: with none there, it is not looked up at all.
            if j > 0 && changed >> (8 * (4 - j)) == 0 {
                continue;
            }
            let v = (win >> (8 * (4 - j))) as u32;
            let a = v.wrapping_add(self.sp.wrapping_sub(j));
            let site_new = self.tp.wrapping_sub(j);
            let cand = [
                self.abs
                    .look(v, self.bits)
                    .map(|s| v.wrapping_add(s as u32)),
                self.rel
                    .look(a, self.bits)
                    .map(|s| a.wrapping_add(s as u32).wrapping_sub(site_new)),
            ];
            for (r, w) in cand.iter().enumerate() {
                let Some(w) = *w else { continue };
                let diff = ((w >> (8 * j)) as u8).wrapping_sub(old);
                if j == 0 {
                    if let Some(o) = out.get_mut(1 + r) {
                        *o = Pred { diff, kind: 1 };
                    }
                } else {
                    // The word's bytes before this one: the prediction must match them and
                    // explain at least one change (see `confirmed`).
                    let mask = (1u32 << (8 * j)) - 1;
                    let seen = seen_le >> (8 * (4 - j));
                    let moved = changed >> (8 * (4 - j));
                    if w & mask == seen && moved != 0 {
                        out[0] = Pred {
                            diff,
                            kind: (j as u8) | ((r as u8) << 2),
                        };
                    }
                }
            }
        }
        // 16-bit words: starting here, or one byte back and confirmed by that byte.
        let prev = (self.pold >> 24) as u8;
        let v0 = u32::from(old) | (ahead & 0xFF) << 8;
        if let Some(d) = self.look16(v0) {
            let w = v0.wrapping_add(d as u32);
            out[3] = Pred {
                diff: (w as u8).wrapping_sub(old),
                kind: 1,
            };
        }
        if self.run >= 1 && hist as u8 != prev {
            let v1 = u32::from(prev) | u32::from(old) << 8;
            if let Some(d) = self.look16(v1) {
                let w = v1.wrapping_add(d as u32);
                let seen = hist as u8;
                if w as u8 == seen && seen != prev {
                    out[3] = Pred {
                        diff: ((w >> 8) as u8).wrapping_sub(old),
                        kind: 2,
                    };
                }
            }
        }
        out
    }

    #[inline]
    fn look16(&self, v: u32) -> Option<i32> {
        self.abs.look(key16(v), self.bits)
    }

    /// `olds.len()` positions of zero differences (their old bytes, which the target repeats)
    /// at once, `hist` the new bytes before them: the state ends as after [`Self::push`] on
    /// each. Only a word that reaches back before them can have changed, so only their first
    /// 3 positions can teach anything; the rest just move the cursors.
    pub(crate) fn skip_zeros(&mut self, olds: &[u8], mut hist: u32) {
        let head = olds.len().min(3);
        let (first, rest) = olds.split_at(head);
        for &o in first {
            hist = (hist << 8) | u32::from(o);
            self.push(o, hist);
        }
        if rest.is_empty() {
            return;
        }
        for &o in rest.iter().skip(rest.len().saturating_sub(4)) {
            self.pold = (self.pold >> 8) | (u32::from(o) << 24);
        }
        let n = rest.len() as u32;
        self.run = self.run.saturating_add(n);
        self.sp = self.sp.wrapping_add(n);
        self.tp = self.tp.wrapping_add(n);
    }

    /// The current position came out of `old` (`hist`: the new bytes up to and including it,
    /// newest low): learn from the word ending here.
    pub(crate) fn push(&mut self, old: u8, hist: u32) {
        self.pold = (self.pold >> 8) | (u32::from(old) << 24);
        self.run = self.run.saturating_add(1);
        let (v, w) = (self.pold, hist.swap_bytes());
        if self.bits != 0 && self.run >= 2 {
            let (v16, w16) = (v >> 16, w >> 16);
            let d = i32::from(w16.wrapping_sub(v16) as u16 as i16);
            if v16 != w16 && d.unsigned_abs() < (1 << 12) {
                self.abs.learn(key16(v16), self.bits, d);
            }
        }
        if self.bits != 0 && self.run >= 4 && v != w {
            let d = w.wrapping_sub(v) as i32;
            if d.unsigned_abs() < MAX_SHIFT {
                self.abs.learn(v, self.bits, d);
                let a = v.wrapping_add(self.sp.wrapping_sub(3));
                let b = w.wrapping_add(self.tp.wrapping_sub(3));
                let e = b.wrapping_sub(a) as i32;
                if e != 0 {
                    self.rel.learn(a, self.bits, e);
                }
            }
        }
        self.sp = self.sp.wrapping_add(1);
        self.tp = self.tp.wrapping_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed a difference run position by position; returns the predictions made at each.
    fn run(m: &mut PtrModel<1024>, old: &[u8], new: &[u8]) -> Vec<Preds> {
        let mut hist = 0u32;
        let mut out = Vec::new();
        for i in 0..old.len() {
            let ahead = u32::from_le_bytes([
                old.get(i + 1).copied().unwrap_or(0),
                old.get(i + 2).copied().unwrap_or(0),
                old.get(i + 3).copied().unwrap_or(0),
                0,
            ]);
            out.push(m.predict(old[i], ahead, hist));
            hist = (hist << 8) | u32::from(new[i]);
            m.push(old[i], hist);
        }
        out
    }

    #[test]
    fn a_moved_target_is_predicted_after_one_pointer_to_it() {
        // Two absolute pointers into the same 256-byte region, both moved by +0x1234; then a
        // relative branch pair whose target moved by 0x40 more than the branch.
        let mut old = Vec::new();
        let mut new = Vec::new();
        for (o, n) in [(0x0008_1010u32, 0x0008_2244u32), (0x0008_1080, 0x0008_22B4)] {
            old.extend_from_slice(&[0x90, 0x90]);
            new.extend_from_slice(&[0x90, 0x90]);
            old.extend_from_slice(&o.to_le_bytes());
            new.extend_from_slice(&n.to_le_bytes());
        }
        let mut m = PtrModel::<1024>::new();
        m.reset(10);
        m.begin(100, 100);
        let preds = run(&mut m, &old, &new);
        // The second pointer's low byte: predicted from the first (absolute reading).
        let low = 2 + 6;
        assert_eq!(preds[low][1].kind, 1);
        assert_eq!(preds[low][1].diff, 0xB4u8.wrapping_sub(0x80));
        // Its second byte: the same word, confirmed by the low byte's change.
        assert_eq!(preds[low + 1][0].kind & 3, 1);
        assert_eq!(preds[low + 1][0].diff, 0x22u8.wrapping_sub(0x10));
        // The first pointer had nothing to learn from.
        assert_eq!(preds[2][1].kind, 0);
    }

    #[test]
    fn a_moved_16_bit_pointer_is_predicted() {
        // 16-bit absolute words into one 256-byte region, all moved by +0x23.
        let mut old = Vec::new();
        let mut new = Vec::new();
        for o in [0x4410u16, 0x4480, 0x44C0] {
            old.extend_from_slice(&[0xC7, 0x06]);
            new.extend_from_slice(&[0xC7, 0x06]);
            old.extend_from_slice(&o.to_le_bytes());
            new.extend_from_slice(&(o + 0x23).to_le_bytes());
        }
        let mut m = PtrModel::<1024>::new();
        m.reset(10);
        m.begin(0, 0);
        let preds = run(&mut m, &old, &new);
        // The third word's low byte, from what the first two showed.
        assert_eq!(preds[10][3].kind, 1);
        assert_eq!(preds[10][3].diff, 0x23);
        // The first word had nothing to learn from.
        assert_eq!(preds[2][3].kind, 0);
    }

    #[test]
    fn skipping_zero_differences_equals_pushing_them_one_by_one() {
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut rnd = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..200 {
            let mut a = PtrModel::<64>::new();
            a.reset(6);
            a.begin(rnd() % 1000, rnd() % 1000);
            let mut hist = 0u32;
            // Some changed positions first (so the skip's first words can learn)...
            for _ in 0..rnd() % 12 {
                let o = rnd() as u8;
                let n = if rnd() % 3 == 0 { o } else { rnd() as u8 };
                hist = (hist << 8) | u32::from(n);
                a.push(o, hist);
            }
            let mut b = a.clone();
            // ...then a run of zero differences, skipped at once or pushed one by one.
            let olds: Vec<u8> = (0..round % 70).map(|_| rnd() as u8).collect();
            a.skip_zeros(&olds, hist);
            let mut h = hist;
            for &o in &olds {
                h = (h << 8) | u32::from(o);
                b.push(o, h);
            }
            assert_eq!(format!("{a:?}"), format!("{b:?}"), "round {round}");
        }
    }

    #[test]
    fn off_predicts_nothing() {
        let mut m = PtrModel::<1024>::new();
        m.reset(0);
        m.begin(0, 0);
        let old = [1u8, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4];
        let new = [9u8, 2, 3, 4, 9, 2, 3, 4, 9, 2, 3, 4];
        for p in run(&mut m, &old, &new) {
            assert_eq!(p, [Pred::default(); 4]);
        }
    }

    #[test]
    fn a_table_smaller_than_the_stream_asks_is_never_indexed_out_of_range() {
        // The decoder refuses such streams; the model itself must still not panic.
        let mut m = PtrModel::<4>::new();
        m.reset(12);
        m.begin(0, 0);
        let mut h = 0u32;
        for i in 0..4096u32 {
            let o = (i * 7) as u8;
            let _ = m.predict(o, i, h);
            h = (h << 8) | (o ^ 1) as u32;
            m.push(o, h);
        }
    }
}
