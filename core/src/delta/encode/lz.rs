//! Match finders inside the target: plain LZ (hash chains over the new image) and difference
//! LZ (matches of the bytewise difference against the old image).

use super::*;

/// Hash-table size for an input of `len` bytes: about one bucket per 8 bytes, 2^12 .. 2^22
/// (why not one per byte: `docs/FORMAT.md` 2.5).
pub(super) fn hash_bits(len: usize) -> u32 {
    (usize::BITS - len.leading_zeros())
        .saturating_sub(3)
        .clamp(12, 22)
}
pub(super) const NONE: u32 = u32::MAX;
pub(super) const CHAIN_DEPTH: usize = 48;
/// How far back the encoder looks for target-history matches (the format allows any
/// distance). Farther repeats of old content are still found as source matches.
pub(super) const LZ_WINDOW: usize = 16 << 20;
/// Hash-chain depth: thorough up to 8 MiB, lighter above (bounded create time).
pub(super) fn chain_depth(len: usize) -> usize {
    if len > 8 << 20 {
        16
    } else {
        CHAIN_DEPTH
    }
}

/// How much of the end of a difference run the target-history index keeps ([`Lz::pass_run`]).
pub(super) const RUN_KEEP: usize = 64 << 10;

/// Longest match the encoder emits (a longer one continues as a repeat).
pub(super) const MAX_MATCH: usize = 1024;
/// A match this long ends the search.
pub(super) const GOOD_ENOUGH: usize = 256;

/// Hash-chain match finder over the target's own history (positions before the cursor).
///
/// `head` and `prev` hold positions plus one, 0 meaning none: the tables start as zeroed
/// memory (no pass to fill them, and pages of `head` no position hashes to are never
/// touched).
pub(super) struct Lz<'a> {
    pub(super) new: &'a [u8],
    pub(super) bits: u32,
    pub(super) head: Vec<u32>,
    pub(super) prev: Vec<u32>,
    pub(super) inserted: usize,
}

impl<'a> Lz<'a> {
    pub(super) fn new(new: &'a [u8]) -> Self {
        let bits = hash_bits(new.len().min(LZ_WINDOW));
        Self {
            new,
            bits,
            head: crate::zeros_written(1 << bits),
            prev: vec![0; new.len().min(LZ_WINDOW)],
            inserted: 0,
        }
    }

    pub(super) fn hash(b: &[u8], bits: u32) -> usize {
        crate::suffix::hash4(b, bits)
    }

    pub(super) fn insert_upto(&mut self, pos: usize) {
        // Only the last LZ_WINDOW bytes are searched: skip what lies before them.
        self.inserted = self.inserted.max(pos.saturating_sub(LZ_WINDOW));
        let lim = pos.min(self.new.len().saturating_sub(3));
        while self.inserted < lim {
            let i = self.inserted;
            let h = Self::hash(&self.new[i..i + 4], self.bits);
            self.prev[i % LZ_WINDOW] = self.head[h];
            // Positions fit in u32 with one to spare (images are below 4 GiB).
            self.head[h] = i as u32 + 1;
            self.inserted += 1;
        }
    }

    /// The difference run `start..end` has been planned: index what lies before it and only
    /// its last [`RUN_KEEP`] bytes. A run's bytes are the source's plus a few differences, so
    /// a later repeat of them is found as a source match as well; hashing every position of
    /// a long run cost a near-identical pair a fifth of its time for a few bytes of size
    /// (`docs/FORMAT.md` 2.5). Both the coding order and a group's priming
    /// ([`Lz::prime`]) go through here, so the index is the same either way.
    pub(super) fn pass_run(&mut self, start: usize, end: usize) {
        let keep_from = end.saturating_sub(RUN_KEEP);
        if keep_from > start {
            self.insert_upto(start);
            self.inserted = self.inserted.max(keep_from);
        }
    }

    /// Index the history before `start` as coding `blocks` (the ones before it, in order)
    /// would have.
    pub(super) fn prime(&mut self, blocks: &[Block], start: u64) {
        for b in blocks {
            let mut pos = b.start;
            for c in &b.ctrls {
                self.pass_run(pos as usize, (pos + u64::from(c.add)) as usize);
                pos += u64::from(c.add) + u64::from(c.lit);
            }
        }
        self.insert_upto(start as usize);
    }

    pub(super) fn common(&self, a: usize, b: usize, max: usize) -> usize {
        let n = self.new;
        let max = max.min(MAX_MATCH);
        let mut l = 0;
        while l < max && n[a + l] == n[b + l] {
            l += 1;
        }
        l
    }

    /// Every useful candidate at `pos` for at most `max` bytes: along the hash chain, each
    /// candidate longer than all nearer ones, as `(dist, len)` (so increasing in both).
    pub(super) fn find_all(
        &mut self,
        pos: usize,
        max: usize,
        depth: usize,
        out: &mut Vec<(u32, u32)>,
    ) {
        out.clear();
        let max = max.min(MAX_MATCH);
        if max < 3 || pos + 4 > self.new.len() {
            return;
        }
        self.insert_upto(pos);
        let mut c = self.head[Self::hash(&self.new[pos..pos + 4], self.bits)];
        let mut depth = depth;
        let mut bl = 2usize;
        while c != 0 && depth > 0 {
            let cand = c as usize - 1;
            if cand >= pos || pos - cand > LZ_WINDOW {
                break; // a stale ring entry, or beyond the window
            }
            // A candidate that differs at the best length so far cannot be longer.
            if self.new[cand + bl] == self.new[pos + bl] {
                let l = self.common(cand, pos, max);
                if l > bl {
                    bl = l;
                    out.push(((pos - cand) as u32, l as u32));
                    if l >= max || l >= GOOD_ENOUGH {
                        break;
                    }
                }
            }
            c = self.prev[cand % LZ_WINDOW];
            depth -= 1;
        }
    }
}

/// Matches inside a block's difference stream (within the decoder's window). The stream
/// `d` is passed to each call: it grows while the block is coded. The chain links are a
/// ring over the window (older positions are never candidates), so a block costs no more
/// memory than its window.
pub(super) struct DiffLz {
    pub(super) head: Vec<u32>,
    pub(super) prev: Vec<u32>,
    pub(super) inserted: usize,
    pub(super) window: usize,
    /// During a search: `gains[k]` is the estimated cost of coding the first `k` differences
    /// from the search position one by one (filled as far as a candidate has matched).
    gains: Vec<i64>,
}

pub(super) const DIFF_HASH_BITS: u32 = 14;

impl DiffLz {
    pub(super) fn new(window: usize) -> Self {
        Self {
            head: vec![NONE; 1 << DIFF_HASH_BITS],
            prev: vec![NONE; window.next_power_of_two()],
            inserted: 0,
            window,
            gains: Vec::with_capacity(MAX_MATCH + 1),
        }
    }

    pub(super) fn reset(&mut self) {
        self.head.fill(NONE);
        self.inserted = 0;
    }

    pub(super) fn key(d: &[u8], i: usize) -> Option<usize> {
        let b = d.get(i..i + 4)?;
        if b == [0, 0, 0, 0] {
            return None;
        }
        Some(crate::suffix::hash4(b, DIFF_HASH_BITS))
    }

    pub(super) fn insert_upto(&mut self, d: &[u8], j: usize) {
        while self.inserted < j {
            let i = self.inserted;
            // Eight zero differences: the keys at the first five of them are all zero (none
            // is inserted); most of a near-identical image's stream is zeros.
            if j - i >= 5 && zero8(d, i) {
                self.inserted += 5;
                continue;
            }
            if let Some(h) = Self::key(d, i) {
                let l = slot(&self.prev, i);
                self.prev[l] = self.head[h];
                self.head[h] = i as u32;
            }
            self.inserted += 1;
        }
    }

    /// Best `(dist, len)` at `j` for at most `max` bytes, scored in 1/16 bits saved over
    /// coding the differences one by one.
    pub(super) fn find(&mut self, d: &[u8], j: usize, max: usize, rep0: u32) -> Option<(u32, u32)> {
        if max < MIN_MATCH as usize || self.window == 0 {
            return None;
        }
        self.insert_upto(d, j);
        let est = |x: u8| if x == 0 { 2i64 } else { 112 };
        let bits = |v: u64| i64::from(64 - v.leading_zeros() as u8);
        let max = max.min(MAX_MATCH);
        let here = d.get(j..j + max)?;
        // A candidate's length by comparing 8 bytes at a time; its gain is a prefix sum
        // over the differences from `j`, shared by every candidate.
        let prev = &self.prev;
        let gains = &mut self.gains;
        gains.clear();
        gains.push(0);
        let mut eval = |c: usize| {
            let l = crate::suffix::lcp(&d[c..c + max], here);
            while gains.len() <= l {
                let k = gains.len() - 1;
                gains.push(gains[k] + est(here[k]));
            }
            (l, gains[l])
        };
        let mut best: Option<(u32, u32)> = None;
        // Accept a match only if it saves about 12 bits over coding its bytes one by one.
        let mut best_score = 192i64;
        let lim = j.min(self.window);
        if rep0 > 0 && rep0 as usize <= lim {
            let (l, gain) = eval(j - rep0 as usize);
            let score = gain - 16 * (3 + bits(l as u64));
            if l >= MIN_MATCH as usize && score > best_score {
                best_score = score;
                best = Some((rep0, l as u32));
            }
        }
        if let Some(h) = Self::key(d, j) {
            let mut c = self.head[h];
            let mut depth = 32;
            // Links only go back: one that does not was overwritten in the ring (its
            // position is older than the window).
            let mut last = j;
            while c != NONE && depth > 0 {
                let cand = c as usize;
                if cand >= last {
                    break;
                }
                last = cand;
                let dist = j - cand;
                if dist > lim {
                    break;
                }
                let (l, gain) = eval(cand);
                let score = gain - 16 * (5 + bits(dist as u64) + bits(l as u64));
                if l >= MIN_MATCH as usize && score > best_score {
                    best_score = score;
                    best = Some((dist as u32, l as u32));
                }
                c = prev[slot(prev, cand)];
                depth -= 1;
            }
        }
        best
    }
}

/// Whether the eight bytes from `i` are all zero (false if fewer remain).
pub(super) fn zero8(d: &[u8], i: usize) -> bool {
    d.get(i..i + 8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .is_some_and(|b| u64::from_ne_bytes(b) == 0)
}

/// The slot of position `i` in a ring of previous positions (its length a power of two).
fn slot(ring: &[u32], i: usize) -> usize {
    i & (ring.len() - 1)
}
