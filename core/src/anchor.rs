//! Anchors: long stretches of the new image that are exact copies of the old image, found
//! by hashing before any suffix sorting.
//!
//! Between two versions of one firmware most of the new image is often a plain copy of the
//! old (an unchanged bootloader, data tables, a whole partition). Sorting every suffix of
//! the old image to find those copies costs more than the rest of making the delta. So
//! copies are found first with a rolling hash, and only the old bytes they do not account
//! for are sorted ([`crate::suffix::Index::for_pair`]).
//!
//! - A *gear* hash runs over both images: at each byte it shifts left by one and adds a
//!   fixed random number for that byte, so its top bits depend on the last 64 bytes only.
//!   A position is *sampled* when the top [`SAMPLE_BITS`] bits are zero (about 1 in 64):
//!   the choice depends on the bytes alone, so a position sampled in the new image is
//!   sampled wherever the same 64 bytes occur in the old one. The [`WINDOW`] bytes ending
//!   at each sampled old position go into a table (every place of each key).
//! - The new image is scanned; a sampled window found in the table and equal in bytes is a
//!   seed. It grows backwards (not into the previous anchor) and forwards along its
//!   diagonal while the bytes are equal; of the window's places in the old image (up to
//!   [`CANDIDATES`]) the longest copy is kept if at least [`MIN_ANCHOR`] bytes long;
//!   the scan goes on after it. A copy of a few hundred bytes almost surely holds a
//!   sampled position.
//!
//! The cost is a shift and two additions per byte, and a table probe per sampled
//! position; about one entry per 64 old bytes (8 bytes each, plus a hash slot of 8 bytes
//! at most half full).

/// A stretch of the new image equal to the old image: `len` bytes at `new` and at `old`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Anchor {
    pub new: usize,
    pub old: usize,
    pub len: usize,
}

/// Bytes compared and keyed at a sampled position (the ones ending there).
pub(crate) const WINDOW: usize = 32;
/// Shortest copy kept as an anchor.
pub(crate) const MIN_ANCHOR: usize = 256;
/// A position is sampled when this many top bits of the gear hash are zero.
const SAMPLE_BITS: u32 = 6;

/// 256 fixed pseudo-random numbers, one per byte value (splitmix64 from a constant seed).
const GEAR: [u64; 256] = {
    let mut t = [0u64; 256];
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let mut i = 0;
    while i < 256 {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        t[i] = z ^ (z >> 31);
        i += 1;
    }
    t
};

/// The gear hash after byte `b`.
fn gear(h: u64, b: u8) -> u64 {
    (h << 1).wrapping_add(GEAR[usize::from(b)])
}

fn sampled(h: u64) -> bool {
    h >> (64 - SAMPLE_BITS) == 0
}

/// The table key of the `WINDOW` bytes in `w`: a 32-bit mix (0 means an empty slot, so
/// keys are never 0).
fn key(w: &[u8]) -> u32 {
    let mut k = 0u64;
    for c in w.chunks_exact(8) {
        let mut b = [0u8; 8];
        b.copy_from_slice(c);
        k = (k ^ u64::from_le_bytes(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        k ^= k >> 29;
    }
    ((k >> 32) as u32).max(1)
}

/// Hash on from `s[i]` to the next sampled position: the index just after it.
fn next_sampled(s: &[u8], i: usize, h: &mut u64) -> Option<usize> {
    let k = s.get(i..)?.iter().position(|&b| {
        *h = gear(*h, b);
        sampled(*h)
    })?;
    Some(i + k + 1)
}

/// If the `WINDOW` bytes before `i` are all one byte, where that run ends: runs are not
/// anchored (the suffix index keeps long runs apart on its own), and a run's windows all
/// hash alike, so they would all be sampled or none.
fn run_end(s: &[u8], i: usize) -> Option<usize> {
    let w = &s[i - WINDOW..i];
    let c = w[0];
    if w.iter().any(|&b| b != c) {
        return None;
    }
    Some(i + s[i..].iter().take_while(|&&b| b == c).count())
}

/// Sampled windows of the old image: every `(key, offset)` sorted by key, and an open
/// addressing table from a key to its first entry there (0 = empty, else index + 1).
struct Table {
    entries: Vec<(u32, u32)>,
    slots: Vec<(u32, u32)>,
    mask: usize,
}

/// Places of one key tried at most (the old image's repeats: the one giving the longest
/// copy is taken, as the suffix array would).
const CANDIDATES: usize = 16;

impl Table {
    fn build(old: &[u8]) -> Self {
        // The sampled windows first (runs are skipped, so the table is sized for what is
        // left of the image).
        let mut entries = Vec::with_capacity((old.len() >> SAMPLE_BITS) + 16);
        let mut h = 0u64;
        let mut i = 0;
        while let Some(i_next) = next_sampled(old, i, &mut h) {
            i = i_next;
            if i >= WINDOW {
                if let Some(end) = run_end(old, i) {
                    i = end;
                    h = 0;
                } else {
                    // Offsets fit in u32: sources are below 4 GiB.
                    entries.push((key(&old[i - WINDOW..i]), (i - WINDOW) as u32));
                }
            }
        }
        entries.sort_unstable();
        let cap = (entries.len() * 2 + 16).next_power_of_two();
        let mut t = Self {
            entries,
            slots: crate::zeros_written(cap),
            mask: cap - 1,
        };
        let mut e = 0;
        while e < t.entries.len() {
            let k = t.entries[e].0;
            let mut s = t.slot(k);
            while t.slots[s].0 != 0 {
                s = (s + 1) & t.mask;
            }
            t.slots[s] = (k, e as u32 + 1);
            e += t.entries[e..].iter().take_while(|x| x.0 == k).count();
        }
        t
    }

    fn slot(&self, k: u32) -> usize {
        (k as usize).wrapping_mul(0x9E37_79B1) >> 7 & self.mask
    }

    /// The old offsets of key `k` (at most [`CANDIDATES`]).
    fn get(&self, k: u32) -> impl Iterator<Item = usize> + '_ {
        let mut s = self.slot(k);
        let mut first = None;
        // At most half full: an empty slot ends every probe.
        while self.slots[s].0 != 0 {
            if self.slots[s].0 == k {
                first = Some(self.slots[s].1 as usize - 1);
                break;
            }
            s = (s + 1) & self.mask;
        }
        first
            .map_or(&[][..], |f| &self.entries[f..])
            .iter()
            .take_while(move |x| x.0 == k)
            .take(CANDIDATES)
            .map(|x| x.1 as usize)
    }
}

/// The anchors of `new` against `old`, in new-image order, not overlapping.
pub(crate) fn find(old: &[u8], new: &[u8]) -> Vec<Anchor> {
    let mut out: Vec<Anchor> = Vec::new();
    if old.len() < MIN_ANCHOR || new.len() < MIN_ANCHOR {
        return out;
    }
    let table = Table::build(old);
    let mut h = 0u64;
    // The scan restarts after each anchor: the hash starts again there.
    let mut i = 0;
    let mut floor = 0; // end of the last anchor
    while let Some(i_next) = next_sampled(new, i, &mut h) {
        i = i_next;
        if i < floor + WINDOW {
            continue;
        }
        let j = i - WINDOW;
        if let Some(end) = run_end(new, i) {
            i = end;
            h = 0;
            continue;
        }
        // The longest copy among the places of this window.
        let best = table
            .get(key(&new[j..i]))
            .filter(|&o| old[o..o + WINDOW] == new[j..i])
            .map(|o| {
                let back = crate::suffix::lcs(&old[..o], &new[floor..j]);
                let fwd = crate::suffix::lcp(&old[o..], &new[j..]);
                (back + fwd, back, o)
            })
            .max_by_key(|c| c.0);
        if let Some((len, back, o)) = best.filter(|c| c.0 >= MIN_ANCHOR) {
            out.push(Anchor {
                new: j - back,
                old: o - back,
                len,
            });
            i = j - back + len;
            floor = i;
            h = 0;
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn bytes(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    /// Every anchor is an exact copy, at least `MIN_ANCHOR` long, in order and apart.
    fn check(old: &[u8], new: &[u8], anchors: &[Anchor]) {
        let mut end = 0;
        for a in anchors {
            assert!(a.new >= end, "{a:?} overlaps the previous anchor");
            assert!(a.len >= MIN_ANCHOR);
            assert_eq!(
                old[a.old..a.old + a.len],
                new[a.new..a.new + a.len],
                "{a:?}"
            );
            end = a.new + a.len;
        }
    }

    /// Sampling depends on the last 64 bytes only: the same bytes are sampled at the same
    /// places whatever came before them.
    #[test]
    fn sampling_depends_on_the_last_64_bytes() {
        let b = bytes(5000, 3);
        let run = |s: &[u8]| {
            let mut h = 0u64;
            s.iter()
                .map(|&x| {
                    h = gear(h, x);
                    sampled(h)
                })
                .collect::<Vec<_>>()
        };
        let whole = run(&b);
        let tail = run(&b[1000..]);
        assert_eq!(whole[1064..], tail[64..]);
        let n = whole.iter().filter(|&&x| x).count();
        assert!((5000 / 64..5000 / 16).contains(&n), "{n} sampled");
    }

    #[test]
    fn an_identical_image_is_one_anchor() {
        let old = bytes(100_000, 1);
        let a = find(&old, &old);
        assert_eq!(
            a,
            vec![Anchor {
                new: 0,
                old: 0,
                len: old.len()
            }]
        );
    }

    #[test]
    fn moved_blocks_and_a_changed_byte_are_anchored_apart() {
        let old = bytes(60_000, 2);
        // new = old[30000..] + 100 new bytes + old[..30000] with one byte changed at 10000.
        let mut new = old[30_000..].to_vec();
        new.extend(bytes(100, 9));
        let mut tail = old[..30_000].to_vec();
        tail[10_000] ^= 0xFF;
        new.extend(&tail);
        let a = find(&old, &new);
        check(&old, &new, &a);
        let covered: usize = a.iter().map(|a| a.len).sum();
        assert!(covered >= new.len() - 100 - 1 - 2 * WINDOW, "{a:?}");
        assert!(a.iter().any(|a| a.old == 0 && a.new == 30_100));
        assert!(a.iter().any(|a| a.old == 30_000 && a.new == 0));
    }

    #[test]
    fn unrelated_or_tiny_images_have_no_anchors() {
        assert!(find(&bytes(50_000, 10), &bytes(50_000, 13)).is_empty());
        assert!(find(&[], &bytes(1000, 5)).is_empty());
        assert!(find(&bytes(1000, 5), &[1, 2, 3]).is_empty());
        let short = bytes(200, 6);
        assert!(find(&short, &short).is_empty(), "shorter than MIN_ANCHOR");
    }

    /// Runs and short periods have one to three distinct windows: they may or may not be
    /// sampled (long runs are the suffix index's business), but anchors stay exact and the
    /// search stays linear.
    #[test]
    fn runs_and_repeats_stay_exact() {
        let mut old = vec![0xFFu8; 200_000];
        old.extend((0..50_000).map(|i| (i % 3) as u8));
        let mut new = (0..40_000).map(|i| (i % 3) as u8).collect::<Vec<_>>();
        new.extend(vec![0xFFu8; 150_000]);
        let a = find(&old, &new);
        check(&old, &new, &a);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Any pair built from moved, repeated and changed pieces of the old image: every
        /// anchor is an exact copy, in order and apart.
        #[test]
        fn anchors_are_exact_copies(seed in proptest::prelude::any::<u64>(),
                                    len in 0usize..60_000,
                                    pieces in proptest::collection::vec((0usize..60_000, 0usize..5000, 0u8..4), 0..12)) {
            let old = bytes(len, seed);
            let mut new = Vec::new();
            for (at, n, how) in pieces {
                let at = at.min(old.len());
                let piece = &old[at..(at + n).min(old.len())];
                match how {
                    0 => new.extend_from_slice(piece),
                    1 => new.extend(piece.iter().enumerate().map(|(k, &b)| if k % 97 == 5 { !b } else { b })),
                    2 => new.extend(vec![0xFF; n]),
                    _ => new.extend(bytes(n, seed ^ n as u64)),
                }
            }
            check(&old, &new, &find(&old, &new));
        }
    }
}
