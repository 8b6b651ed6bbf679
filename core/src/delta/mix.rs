//! Logistic mixing of several adaptive predictions (the PAQ family's idea, in integers only).
//!
//! Each input is an adaptive cell ([`Prob`]) chosen by its own context; the mixer adds their
//! predictions in the logistic ("stretched") domain with weights it learns online, so the
//! context that predicts best at the moment dominates. Encoder and decoder run the same code,
//! so they stay in step bit for bit. The tables below are computed at compile time (`const`),
//! they live in flash on a device.

pub(crate) use crate::range_coder::pupd as learn;
use crate::range_coder::{Prob, PROB_ONE};

/// `e^x` for `|x| <= 16`, at compile time: the Taylor series of `e^(x/256)` (eight terms
/// are exact to double precision there), squared eight times.
const fn exp(x: f64) -> f64 {
    let r = x / 256.0;
    let (mut sum, mut term, mut k) = (1.0, 1.0, 1.0);
    while k <= 8.0 {
        term = term * r / k;
        sum += term;
        k += 1.0;
    }
    let mut i = 0;
    while i < 8 {
        sum *= sum;
        i += 1;
    }
    sum
}

/// Spacing of the [`SQUASH_KNOTS`] (in stretched units).
const KNOT_STEP: i32 = 32;
/// Knots from -2048 to 2048.
const KNOTS: usize = (4096 / KNOT_STEP) as usize + 1;

/// The logistic function `squash(d) = 4096 / (1 + e^(-d/256))` (a 12-bit probability from a
/// log-odds value in 1/256 units), rounded and kept within `1..=4095`, at every
/// [`KNOT_STEP`]-th `d`; [`squash`] interpolates between them (within 1.5 of the formula).
const SQUASH_KNOTS: [i32; KNOTS] = {
    let mut t = [0i32; KNOTS];
    let mut i = 0;
    while i < KNOTS {
        let d = (i as i32 - (KNOTS as i32 - 1) / 2) * KNOT_STEP;
        let v = 4096.0 / (1.0 + exp(-(d as f64) / 256.0));
        let r = (v + 0.5) as i32;
        t[i] = if r < 1 {
            1
        } else if r > 4095 {
            4095
        } else {
            r
        };
        i += 1;
    }
    t
};

/// Logistic function: stretched value (`-2047..=2047`, 1/256 nats) to a 12-bit probability.
#[inline]
pub(crate) const fn squash(d: i32) -> i32 {
    if d > 2047 {
        return 4095;
    }
    if d < -2047 {
        return 1;
    }
    let w = d & (KNOT_STEP - 1);
    let i = ((d + 2048) / KNOT_STEP) as usize;
    (SQUASH_KNOTS[i] * (KNOT_STEP - w) + SQUASH_KNOTS[i + 1] * w + KNOT_STEP / 2) / KNOT_STEP
}

const fn stretch_table() -> [i16; 4096] {
    let mut t = [0i16; 4096];
    let mut pi = 0usize;
    let mut x = -2047i32;
    while x <= 2047 {
        let v = squash(x) as usize;
        let mut i = pi;
        while i <= v {
            t[i] = x as i16;
            i += 1;
        }
        pi = v + 1;
        x += 1;
    }
    while pi < 4096 {
        t[pi] = 2047;
        pi += 1;
    }
    t
}

/// Inverse of [`squash`] for every 12-bit probability.
static STRETCH: [i16; 4096] = stretch_table();

/// Stretched probability that the next bit is 1, from a cell (which holds P(0)).
#[inline]
pub(crate) fn stretch_cell(p: Prob) -> i32 {
    let p0 = u32::from(p & 0xFFF8);
    let p1 = (PROB_ONE - p0) >> 4;
    STRETCH
        .get(p1.min(4095) as usize)
        .copied()
        .map_or(0, i32::from)
}

/// Weight 1.0.
const ONE: i32 = 1 << 16;

/// A mixer of `N` inputs with `S` weight sets (one chosen per bit by a small context).
#[derive(Debug, Clone)]
pub(crate) struct Mixer<const N: usize, const S: usize> {
    w: [[i32; N]; S],
    /// The last inputs (stretched predictions fit 16 bits: `-2047..=2047`).
    st: [i16; N],
    set: u8,
    pr: i16,
    /// Updates so far (saturating): the learning rate slows down as they accumulate.
    n: u32,
}

impl<const N: usize, const S: usize> Mixer<N, S> {
    pub(crate) const fn new() -> Self {
        Self {
            w: [[ONE * 2 / 5; N]; S],
            st: [0; N],
            set: 0,
            pr: 2048,
            n: 0,
        }
    }

    pub(crate) fn reset(&mut self) {
        *self = Self::new();
    }

    /// Mix the inputs' stretched predictions with weight set `set`; returns P(bit = 0) on the
    /// range coder's 16-bit scale, clamped so a bit never costs more than 10 bits.
    #[inline]
    pub(crate) fn mix(&mut self, st: [i32; N], set: usize) -> u32 {
        for (d, x) in self.st.iter_mut().zip(st.iter()) {
            *d = *x as i16; // inputs are stretched predictions (|x| <= 2047) or the bias
        }
        let set = set.min(S - 1);
        self.set = set as u8;
        let w = self.w.get(set).copied().unwrap_or([0; N]);
        let mut dot: i64 = 0;
        for (x, w) in st.iter().zip(w.iter()) {
            dot += i64::from(*x) * i64::from(*w);
        }
        let d = (dot >> 16).clamp(-2047, 2047) as i32;
        let pr = squash(d);
        self.pr = pr as i16;
        let p0 = (4096 - pr) as u32 * 16;
        p0.clamp(64, PROB_ONE - 64)
    }

    /// Learn from the coded bit.
    #[inline]
    pub(crate) fn update(&mut self, bit: u32) {
        let err = ((bit as i32) << 12) - i32::from(self.pr);
        self.n = self.n.saturating_add(1);
        let sh = if self.n < LR_FAST {
            LR_SHIFT - 1
        } else if self.n < LR_SLOW {
            LR_SHIFT
        } else {
            LR_SHIFT + 1
        };
        if let Some(w) = self.w.get_mut(usize::from(self.set)) {
            for (w, x) in w.iter_mut().zip(self.st.iter()) {
                *w += (i32::from(*x) * err) >> sh;
            }
        }
    }
}

/// Learning rate of the mixers (a shift: larger learns slower): one step faster for the first
/// [`LR_FAST`] updates of a mixer, one step slower after [`LR_SLOW`] (fresh weights move
/// quickly, settled ones stay put).
const LR_SHIFT: i32 = 9;
const LR_FAST: u32 = 256;
const LR_SLOW: u32 = 4096;

/// Where a context's cells start in a hashed table of `1 << bits` cells (`bits >= 8`). A bit's
/// cell is `row ^ node` (the node of the bit tree, 1..=255, goes into the low byte), so the
/// bits of one symbol never collide with each other and the hash is computed once per symbol.
#[inline]
pub(crate) fn row(ctx: u32, bits: u32) -> usize {
    (ctx.wrapping_mul(0x9E37_79B1) >> (32 - bits)) as usize
}

/// The cell of `node` in the row of `ctx`.
#[cfg(test)]
fn slot(ctx: u32, node: usize, bits: u32) -> usize {
    (row(ctx, bits) ^ node) & ((1 << bits) - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::range_coder::PROB_INIT;

    #[test]
    fn squash_follows_the_logistic_formula() {
        for d in -2047..=2047 {
            let exact = 4096.0 / (1.0 + (-f64::from(d) / 256.0).exp());
            let got = f64::from(squash(d));
            assert!(
                (got - exact.clamp(1.0, 4095.0)).abs() <= 1.5,
                "d {d}: {got} vs {exact}"
            );
        }
        for (i, &k) in SQUASH_KNOTS.iter().enumerate() {
            let d = (i as i32 - 64) * KNOT_STEP;
            let exact = (4096.0 / (1.0 + (-f64::from(d) / 256.0).exp())).round();
            assert_eq!(f64::from(k), exact.clamp(1.0, 4095.0), "knot {i}");
        }
    }

    #[test]
    fn stretch_inverts_squash_and_both_are_monotonic() {
        let mut last = 0;
        for d in -2047..=2047 {
            let p = squash(d);
            assert!(p >= last, "squash not monotonic at {d}");
            last = p;
            // stretch(squash(d)) lands on the first d' with the same probability.
            let back = i32::from(STRETCH[p as usize]);
            assert_eq!(squash(back), p, "d {d}");
        }
        for w in STRETCH.windows(2) {
            assert!(w[0] <= w[1]);
        }
        assert!((squash(0) - 2048).abs() <= 1);
        assert!(STRETCH[2048].abs() <= 1);
    }

    /// Log-loss in bits of coding `bits` with the mixer over the inputs' cells, each input
    /// picking its cell with `ctx(i, k)`.
    fn cost(bits: &[(u32, [usize; 2])], lr_inputs: usize) -> f64 {
        let mut cells = [[PROB_INIT; 4]; 2];
        let mut m: Mixer<3, 1> = Mixer::new();
        let mut total = 0.0;
        for &(bit, ctx) in bits {
            let st = [
                stretch_cell(cells[0][ctx[0]]),
                if lr_inputs > 1 {
                    stretch_cell(cells[1][ctx[1]])
                } else {
                    0
                },
                256,
            ];
            let p0 = f64::from(m.mix(st, 0)) / 65536.0;
            total -= if bit == 0 { p0 } else { 1.0 - p0 }.log2();
            m.update(bit);
            learn::<5>(&mut cells[0][ctx[0]], bit);
            learn::<5>(&mut cells[1][ctx[1]], bit);
        }
        total
    }

    #[test]
    fn mixer_learns_which_input_predicts() {
        // Input 0's context is noise; input 1's context decides the bit (with 5 % errors).
        let mut x = 0x1234_5678u32;
        let mut rnd = || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        let bits: Vec<(u32, [usize; 2])> = (0..4000)
            .map(|_| {
                let noise = (rnd() % 4) as usize;
                let ctx = (rnd() % 4) as usize;
                let mut bit = u32::from(ctx >= 2);
                if rnd() % 20 == 0 {
                    bit ^= 1;
                }
                (bit, [noise, ctx])
            })
            .collect();
        let with = cost(&bits, 2);
        let without = cost(&bits, 1);
        // The entropy of a 5 % error is 0.29 bit per bit; the noise input alone gives ~1 bit.
        assert!(with < 0.45 * bits.len() as f64, "mixed: {with} bits");
        assert!(
            without > 0.9 * bits.len() as f64,
            "noise only: {without} bits"
        );
    }

    #[test]
    fn slots_of_one_symbol_never_collide() {
        for ctx in [0u32, 1, 0xDEAD_BEEF, 77] {
            let mut seen = std::collections::HashSet::new();
            for node in 1..256 {
                assert!(seen.insert(slot(ctx, node, 9)));
            }
        }
    }
}
