//! The suffix array of a source image and its longest-match search: for a pattern, the
//! longest prefix of it that occurs in the source, and where.
//!
//! The array itself comes from the `suffix_array` crate (divsufsort). The search is ours: a
//! table of where each two-byte prefix starts narrows a search to one bucket; the binary
//! search inside it starts each comparison where both ends of the interval already agree
//! with the pattern, so a long match costs its length about once; and once a source has
//! needed many searches, a sampled key table decides most probes without touching the
//! source (one cache miss per probe instead of two).
//!
//! Long runs of one byte (erased flash, padding: 98% of a 64 MiB UEFI image) are not sorted
//! whole: only the first and last [`RUN_KEEP`] bytes of a run longer than [`RUN_MIN`] enter
//! the sorted text, so such a source costs memory and sort time for its content alone. An
//! index made for a pair ([`Index::for_pair`]) also leaves out the inside of the source
//! stretches the target copies whole ([`crate::anchor`]; the cover finder takes matches
//! there from the anchors). A match found in the shortened text is mapped back to the
//! source and measured there.

use crate::anchor::Anchor;
use rayon::prelude::*;
use std::ops::Range;
use suffix_array::SuffixArray;

/// Largest source the suffix array indexes.
pub(crate) const MAX_LENGTH: usize = suffix_array::MAX_LENGTH;

/// The suffix array of the source with bucket bounds for the first two bytes, searched with
/// the longest-common-prefix bounds of the search interval (a probe starts comparing where
/// both interval ends already agree with the pattern), so a long match costs its length
/// once rather than once per probe. Gives the same answers as `SuffixArray::search_lcp`.
pub(crate) struct Index<'s> {
    /// The source.
    pub(crate) s: &'s [u8],
    /// What is sorted: the source, or its copy with the inside of long runs left out.
    text: std::borrow::Cow<'s, [u8]>,
    /// Where the text's pieces come from: `(text offset, source offset)` in increasing
    /// order (empty when the text is the source).
    pieces: Vec<(u32, u32)>,
    /// The runs left out of the text, by byte and longest first.
    runs: Vec<Run>,
    /// Copies of the source in the target the index was built for (see
    /// [`Index::for_pair`]), in target order.
    anchors: Vec<Anchor>,
    /// The suffixes in order: index 0 is the empty suffix, then the one-byte suffix (the
    /// last byte) before every longer suffix starting with that byte.
    sa: Vec<u32>,
    /// Where the two-byte prefixes start in `sa`, see [`Prefixes`].
    prefixes: Prefixes,
    /// Which four-byte strings occur in the text, see [`Quads`].
    quads: Quads,
    /// Every `SAMPLE`-th suffix of the array as (its first 8 bytes big-endian, its offset):
    /// a search first narrows to `SAMPLE` suffixes on these, which mostly decides each
    /// comparison without reading the source (one cache miss per probe instead of two).
    /// Built once `LAZY_SAMPLES` searches have been made (sources that need few searches,
    /// such as mostly-padding images, never pay for it).
    samples: std::sync::OnceLock<Vec<(u64, u32)>>,
    /// Searches made so far (until the samples exist).
    searches: std::sync::atomic::AtomicUsize,
    /// Searches before the samples are built (`usize::MAX`: never).
    lazy_after: usize,
}

/// Which four-byte strings occur in a text: a bit per hash of each, set for every one
/// there (so a clear bit means the string is not there; a set bit may be a collision).
/// About 8 bits per text byte (at most 16 MiB), so about one in eight absent strings
/// passes. Searches with no four-byte match are most of them where the target holds new
/// or compressed content, and this answers them without touching the suffix array.
#[derive(Debug)]
struct Quads {
    bits: u32,
    set: Vec<u64>,
}

/// A `bits`-bit hash of the first four bytes of `b` (multiplicative; `b` holds at least
/// four bytes): the four-byte table's here, the encoder's hash chains' too.
pub(crate) fn hash4(b: &[u8], bits: u32) -> usize {
    let v = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    (v.wrapping_mul(0x9E37_79B1) >> (32 - bits)) as usize
}

impl Quads {
    fn build(t: &[u8]) -> Self {
        let bits = (usize::BITS - (t.len().max(1) * 8 - 1).leading_zeros()).clamp(12, 27);
        let mut set: Vec<u64> = crate::zeros_written(1 << (bits - 6));
        for w in t.windows(4) {
            let h = hash4(w, bits);
            set[h >> 6] |= 1 << (h & 63);
        }
        Self { bits, set }
    }

    /// Whether the first four bytes of `pat` may occur (false: they surely do not).
    fn may_occur(&self, pat: &[u8]) -> bool {
        let Some(w) = pat.get(..4) else {
            return true;
        };
        let h = hash4(w, self.bits);
        self.set.get(h >> 6).is_some_and(|b| b >> (h & 63) & 1 == 1)
    }
}

/// Runs of one byte longer than this are shortened in the sorted text...
const RUN_MIN: usize = 1024;
/// ...to their first and last `RUN_KEEP` bytes.
const RUN_KEEP: usize = 256;

/// A run of one byte left out of the sorted text: its byte, start and length.
#[derive(Debug, Clone, Copy)]
struct Run {
    byte: u8,
    start: u32,
    len: u32,
}

/// A source with the inside of its long runs left out.
struct Compacted {
    /// The bytes kept.
    text: Vec<u8>,
    /// See [`Index::pieces`].
    pieces: Vec<(u32, u32)>,
    /// See [`Index::runs`].
    runs: Vec<Run>,
}

/// The source with the inside of every run longer than [`RUN_MIN`] and of every stretch of
/// at least [`CUT_ANCHOR`] bytes that anchors account for ([`diagonal_spans`]) left out;
/// `None` when that leaves out less than an eighth of it.
fn compact(s: &[u8], new: &[u8], anchors: &[Anchor]) -> Option<Compacted> {
    let mut runs = Vec::new();
    let mut cuts: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        let run = s[i..].iter().take_while(|&&b| b == c).count();
        if run > RUN_MIN {
            // Offsets fit in u32: sources are at most MAX_LENGTH bytes.
            runs.push(Run {
                byte: c,
                start: i as u32,
                len: run as u32,
            });
            cuts.push((i + RUN_KEEP, i + run - RUN_KEEP));
        }
        i += run;
    }
    let (spans, chained) = diagonal_spans(s, new, anchors);
    let (cut, keep) = if chained {
        (CUT_CHAINED, KEEP_CHAINED)
    } else {
        (CUT_ANCHOR, ANCHOR_KEEP)
    };
    for (old, len) in spans {
        if len >= cut {
            cuts.push((old + keep, old + len - keep));
        }
    }
    // In order, merged where they overlap.
    cuts.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::with_capacity(cuts.len());
    for (a, b) in cuts {
        match merged.last_mut() {
            Some(m) if a <= m.1 => m.1 = m.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    let left_out: usize = merged.iter().map(|(a, b)| b - a).sum();
    if left_out < s.len() / 8 {
        return None;
    }
    let mut text = Vec::with_capacity(s.len() - left_out);
    let mut pieces = Vec::with_capacity(merged.len() + 1);
    let mut from = 0;
    for (a, b) in merged.into_iter().chain([(s.len(), s.len())]) {
        pieces.push((text.len() as u32, from as u32));
        text.extend_from_slice(&s[from..a]);
        from = b;
    }
    // By byte, longest first (see `Index::in_runs`).
    runs.sort_by_key(|r| (r.byte, std::cmp::Reverse(r.len)));
    Some(Compacted { text, pieces, runs })
}

/// Anchored stretches at least this long are left out of the sorted text...
const CUT_ANCHOR: usize = 1024;
/// ...but for their first and last `ANCHOR_KEEP` bytes (a match reaching into an anchored
/// stretch from outside is still found there).
const ANCHOR_KEEP: usize = 128;
/// On a near-identical pair (anchors chained along diagonals account for most of the
/// target, see [`diagonal_spans`]) the rest of the target seldom finds its best match inside
/// those stretches, so shorter ones leave the sort too...
const CUT_CHAINED: usize = 256;
/// ...with shorter ends kept.
const KEEP_CHAINED: usize = 64;
/// Anchors on one diagonal chain into one stretch across a gap of at most this many bytes...
const JOIN_GAP: usize = 16 * 1024;
/// ...in which at most one byte in `JOIN_DIFFER` differs between the two images...
const JOIN_DIFFER: usize = 20;
/// ...when the chains account for at least 4/`JOIN_SHARE` of the target (else each anchor
/// stands alone).
const JOIN_SHARE: usize = 5;

/// The source stretches `(old offset, length)` that the anchors (in target order) account
/// for, and whether they are chained: anchors on one diagonal whose gaps are at most
/// [`JOIN_GAP`] bytes with at most one byte in [`JOIN_DIFFER`] changed join into one
/// stretch. Such a gap is a near-identical stretch (relocated pointers in otherwise equal
/// code, an equal piece too short to anchor): the match search follows the diagonal through
/// it, so its source bytes need no suffix either. The chains are used only on a pair that
/// is near-identical as a whole (they account for [`JOIN_SHARE`]'s share of the target):
/// where they account for less, other parts of the target find their matches in those gaps
/// (measured on the large set's concatenated firmware: chains there account for 48% of the
/// target and cost 0.5% in size). ath10k's 706 KB firmware-6: 107 KB of the source left to
/// sort instead of 600 KB with the anchors alone.
fn diagonal_spans(s: &[u8], new: &[u8], anchors: &[Anchor]) -> (Vec<(usize, usize)>, bool) {
    let mut spans: Vec<(usize, usize)> = Vec::new();
    // Where the last span ends in the target.
    let mut new_end = 0usize;
    for a in anchors {
        let joins = spans.last().is_some_and(|&(o, l)| {
            let (gap_old, gap_new) = (o + l, new_end);
            let gap = a.new.wrapping_sub(gap_new);
            a.new >= gap_new
                && a.old >= gap_old
                && a.old - gap_old == gap
                && gap <= JOIN_GAP
                && match (s.get(gap_old..a.old), new.get(gap_new..a.new)) {
                    (Some(x), Some(y)) => (gap - count_equal(x, y)) * JOIN_DIFFER <= gap,
                    _ => false,
                }
        });
        match spans.last_mut() {
            Some((o, l)) if joins => *l = a.old + a.len - *o,
            _ => spans.push((a.old, a.len)),
        }
        new_end = a.new + a.len;
    }
    let chained: usize = spans.iter().map(|&(_, l)| l).sum();
    if chained * JOIN_SHARE < new.len() * 4 {
        return (anchors.iter().map(|a| (a.old, a.len)).collect(), false);
    }
    (spans, true)
}

/// Candidates [`Index::in_runs`] tries at most.
const RUN_CANDIDATES: usize = 64;

/// Sampling step of [`Index::samples`] (16 bytes per 32 source bytes).
const SAMPLE: usize = 32;
/// See [`Index::samples`].
const LAZY_SAMPLES: usize = 1 << 16;

impl std::fmt::Debug for Index<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Index({} bytes)", self.s.len())
    }
}

/// Texts with fewer bits per byte than this (order 0) are sorted with libsais, the others
/// with divsufsort: induced sorting wins on code and data (up to 30% on the public
/// sources, and on a few hundred bytes, where divsufsort's 65,536 buckets are most of the
/// work), divsufsort on compressed content, where most suffixes differ within a few bytes
/// (OVMF's and QEMU_EFI's volumes, 8.0 bits per byte: 15-25% faster there).
const SAIS_MAX_BITS: f64 = 7.0;

/// The suffix array of `t` with the empty suffix first (as the `suffix_array` crate lays
/// it out): by libsais or divsufsort, whichever is faster on such a text
/// ([`SAIS_MAX_BITS`]); the two give the same array.
fn sort_suffixes(t: &[u8]) -> Vec<u32> {
    if bits_per_byte(t) < SAIS_MAX_BITS {
        if let Some(sa) = sais(t) {
            return sa;
        }
    }
    SuffixArray::new(t).into_parts().1
}

/// The suffix array of `t` (empty suffix first) by libsais; `None` if it cannot sort it
/// (empty, or 2 GiB and more).
fn sais(t: &[u8]) -> Option<Vec<u32>> {
    if t.is_empty() || t.len() >= i32::MAX as usize {
        return None;
    }
    // Sorted into place after the empty suffix's slot: no second array.
    let mut sa = vec![0i32; t.len() + 1];
    let (empty, rest) = sa.split_first_mut()?;
    *empty = i32::try_from(t.len()).ok()?;
    libsais::SuffixArrayConstruction::for_text(t)
        .in_borrowed_buffer(rest)
        .single_threaded()
        .run()
        .ok()?;
    // Offsets are below the text's length, so non-negative: the same bits as u32.
    bytemuck::allocation::try_cast_vec(sa).ok()
}

/// Order-0 entropy of `t` in bits per byte.
fn bits_per_byte(t: &[u8]) -> f64 {
    let mut count = [0u64; 256];
    for &b in t {
        count[usize::from(b)] += 1;
    }
    let n = t.len() as f64;
    count
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

/// Sources at least this large count their buckets on a second thread.
const PARALLEL_BUCKETS: usize = 1 << 20;

/// For each two-byte prefix `k = (c0 << 8) | c1`, the index in the suffix array of the
/// first suffix starting with it (`first[65536]` is the array's length). The empty suffix
/// sits at index 0 and the single one-byte suffix (the source's last byte `c`) just before
/// the suffixes starting with `(c, 0)`.
#[derive(Debug)]
struct Prefixes {
    first: Vec<u32>,
    last: Option<u8>,
}

impl Prefixes {
    fn count(s: &[u8]) -> Self {
        // Counted, then turned into starts in place (one table of 256 KiB, not two).
        let mut first: Vec<u32> = crate::zeros_written((1 << 16) + 1);
        for w in s.windows(2) {
            first[usize::from(w[0]) << 8 | usize::from(w[1])] += 1;
        }
        let last = s.last().copied();
        let lone = last.map(|c| usize::from(c) << 8);
        let mut at = 1u32; // after the empty suffix
        for (k, slot) in first.iter_mut().enumerate() {
            if lone == Some(k) {
                at += 1;
            }
            let c = *slot;
            *slot = at;
            at += c;
        }
        Self { first, last }
    }

    fn at(&self, k: usize) -> usize {
        self.first.get(k).map_or(0, |&v| v as usize)
    }

    /// The one-byte suffix's place if it is the byte `c` (it sits before `(c, 0)`).
    fn lone(&self, c: usize) -> usize {
        usize::from(self.last.map(usize::from) == Some(c))
    }

    /// Suffixes starting with `c0 c1`.
    fn pair(&self, c0: u8, c1: u8) -> Range<usize> {
        let k = usize::from(c0) << 8 | usize::from(c1);
        let end = if c1 == 255 {
            self.at(k + 1) - self.lone(usize::from(c0) + 1)
        } else {
            self.at(k + 1)
        };
        self.at(k)..end
    }

    /// Suffixes starting with `c0` (the one-byte suffix among them).
    fn byte(&self, c0: u8) -> Range<usize> {
        let c = usize::from(c0);
        self.at(c << 8) - self.lone(c)..self.pair(c0, 255).end
    }
}

impl<'s> Index<'s> {
    pub(crate) fn new(s: &'s [u8]) -> Self {
        Self::build(s, &[], LAZY_SAMPLES, Vec::new())
    }

    /// The index of `s` for finding `new` in it: the stretches of `new` that are long
    /// exact copies of `s` are found first ([`crate::anchor`]), and the source bytes they
    /// account for are left out of the suffix sort (matches there come from the anchors,
    /// see [`Index::anchors`]).
    pub(crate) fn for_pair(s: &'s [u8], new: &[u8]) -> Self {
        Self::build(s, new, LAZY_SAMPLES, crate::anchor::find(s, new))
    }

    /// The anchors of the target this index was built for (empty for [`Index::new`]).
    pub(crate) fn anchors(&self) -> &[Anchor] {
        &self.anchors
    }

    /// The index; the samples are built after `lazy_after` searches.
    fn build(s: &'s [u8], new: &[u8], lazy_after: usize, anchors: Vec<Anchor>) -> Self {
        let (text, pieces, runs) = match compact(s, new, &anchors) {
            Some(c) => (std::borrow::Cow::Owned(c.text), c.pieces, c.runs),
            None => (std::borrow::Cow::Borrowed(s), Vec::new(), Vec::new()),
        };
        let t: &[u8] = &text;
        // On a large source the bucket bounds are counted on another core while the suffix
        // sort (one core) runs; on a small one a thread costs more than the count.
        let tables = |t: &[u8]| (Prefixes::count(t), Quads::build(t));
        let (sa, (prefixes, quads)) = if t.len() >= PARALLEL_BUCKETS {
            let (sa, tabled) = std::thread::scope(|sc| {
                let counting = sc.spawn(|| tables(t));
                let sa = sort_suffixes(t);
                (sa, counting.join())
            });
            (sa, tabled.unwrap_or_else(|_| tables(t)))
        } else {
            (sort_suffixes(t), tables(t))
        };
        Self {
            s,
            text,
            pieces,
            runs,
            anchors,
            sa,
            prefixes,
            quads,
            samples: std::sync::OnceLock::new(),
            searches: std::sync::atomic::AtomicUsize::new(0),
            lazy_after,
        }
    }

    /// The source offset of text offset `t` (`t` below the text's length).
    fn to_source(&self, t: usize) -> usize {
        let k = self.pieces.partition_point(|&(ts, _)| ts as usize <= t);
        match k.checked_sub(1).and_then(|k| self.pieces.get(k)) {
            Some(&(ts, ss)) => ss as usize + (t - ts as usize),
            None => t,
        }
    }

    /// The samples, if built or due (then built now, on all cores).
    fn samples(&self) -> Option<&[(u64, u32)]> {
        if let Some(v) = self.samples.get() {
            return Some(v);
        }
        use std::sync::atomic::Ordering::Relaxed;
        if self.lazy_after == usize::MAX || self.searches.fetch_add(1, Relaxed) < self.lazy_after {
            return None;
        }
        Some(self.samples.get_or_init(|| {
            // Reading the source at every sampled suffix is a cache miss each: on all
            // cores, in place.
            let (s, sa) = (&*self.text, &self.sa);
            let mut v = vec![(0u64, 0u32); sa.len().div_ceil(SAMPLE)];
            v.par_chunks_mut(4096).enumerate().for_each(|(c, out)| {
                for (k, o) in out.iter_mut().enumerate() {
                    if let Some(&p) = sa.get((c * 4096 + k) * SAMPLE) {
                        *o = (key8(s, p as usize), p);
                    }
                }
            });
            v
        }))
    }

    /// Range of the suffixes that start with `pat[0]` (`top`) or `pat[0..2]`.
    fn bucket(&self, pat: &[u8], top: bool) -> Range<usize> {
        match pat {
            [] => 0..1,
            [c0, c1, ..] if !top => self.prefixes.pair(*c0, *c1),
            [c0, ..] => self.prefixes.byte(*c0),
        }
    }

    /// The longest prefix of `pat` found in the source, as `start..start + len`
    /// (`len(s)..len(s)` when not even its first byte occurs). With long runs left out of
    /// the text, the place is the text's longest match and the length is measured in the
    /// source there.
    pub(crate) fn search_lcp(&self, pat: &[u8]) -> Range<usize> {
        let r = self.search_text(pat);
        if self.pieces.is_empty() {
            return r;
        }
        let found = if r.start >= self.text.len() {
            self.s.len()..self.s.len()
        } else {
            let at = self.to_source(r.start);
            at..at + lcp(self.s.get(at..).unwrap_or(&[]), pat)
        };
        match self.in_runs(pat) {
            Some(m) if m.len() > found.len() => m,
            _ => found,
        }
    }

    /// For a pattern that starts with more than [`RUN_KEEP`] equal bytes (more than the
    /// text keeps of a long run): its longest match starting inside a left-out run of that
    /// byte. A run at least as long as the pattern's run is matched so that both runs end
    /// together (the bytes after them may match too); else the longest run.
    fn in_runs(&self, pat: &[u8]) -> Option<Range<usize>> {
        let &c = pat.first()?;
        let r = pat.iter().take_while(|&&b| b == c).count();
        if r <= RUN_KEEP {
            return None;
        }
        let from = self.runs.partition_point(|x| x.byte < c);
        let mut best: Option<Range<usize>> = None;
        for run in self.runs[from..].iter().take(RUN_CANDIDATES) {
            if run.byte != c {
                break;
            }
            let (start, len) = (run.start as usize, run.len as usize);
            let m = if len >= r {
                let at = start + len - r;
                at..at + r + lcp(self.s.get(start + len..).unwrap_or(&[]), &pat[r..])
            } else {
                start..start + len
            };
            if best.as_ref().is_none_or(|b| m.len() > b.len()) {
                best = Some(m);
            }
            if len < r {
                break; // the longest shorter run: no later one does better
            }
        }
        best
    }

    /// [`Self::search_lcp`] when that match is at least 4 bytes long, else `None` (most
    /// often answered without a search).
    pub(crate) fn search_lcp4(&self, pat: &[u8]) -> Option<Range<usize>> {
        if pat.len() < 4 || !self.quads.may_occur(pat) {
            return None;
        }
        Some(self.search_lcp(pat)).filter(|r| r.len() >= 4)
    }

    /// [`Self::search_lcp`] in the sorted text.
    fn search_text(&self, pat: &[u8]) -> Range<usize> {
        let s = &*self.text;
        let bucket = self.bucket(pat, false);
        if bucket.is_empty() {
            let top = self.bucket(pat, true);
            return match self.sa.get(top.start) {
                Some(&i) if !top.is_empty() => i as usize..i as usize + 1,
                _ => s.len()..s.len(),
            };
        }
        // Every suffix in the bucket shares its first `known` bytes with the pattern.
        let known = pat.len().min(2);
        let mut probe = Probe {
            lo: bucket.start,
            hi: bucket.end,
            llcp: known,
            rlcp: known,
        };
        if pat.len() < 8 || bucket.len() <= 2 * SAMPLE {
            return self.finish(pat, probe, bucket);
        }
        if let Some(samples) = self.samples() {
            match self.narrow(samples, pat, probe) {
                Ok(p) => probe = p,
                Err(start) => return start..s.len(),
            }
        }
        self.finish(pat, probe, bucket)
    }

    /// Narrow `p` with the samples inside it to at most `SAMPLE` suffixes (same bounds
    /// rules as [`Self::finish`]); `Err(offset)`: the suffix at `offset` equals `pat`.
    fn narrow(&self, samples: &[(u64, u32)], pat: &[u8], mut p: Probe) -> Result<Probe, usize> {
        let key = key8(pat, 0);
        // Sample ids whose suffix lies inside `p`.
        let (mut a, mut b) = (p.lo.div_ceil(SAMPLE), p.hi.div_ceil(SAMPLE));
        while a < b {
            let id = a + (b - a) / 2;
            let Some(&(k, pos)) = samples.get(id) else {
                break;
            };
            let at = id * SAMPLE;
            let pos = pos as usize;
            let n = self.text.len();
            let cmp = if pos + 8 <= n && k != key {
                // Both have 8 real bytes: the first differing byte decides.
                let l = ((k ^ key).leading_zeros() / 8) as usize;
                if k < key {
                    Cmp::Less(l)
                } else {
                    Cmp::Greater(l)
                }
            } else if pos + 8 <= n {
                // The same first 8 bytes: compare on from there.
                self.compare(pat, at, 8)
            } else {
                self.compare(pat, at, p.llcp.min(p.rlcp))
            };
            match cmp {
                Cmp::Equal => return Err(pos),
                Cmp::Less(l) => {
                    (p.lo, p.llcp) = (at + 1, l);
                    a = id + 1;
                }
                Cmp::Greater(g) => {
                    (p.hi, p.rlcp) = (at, g);
                    b = id;
                }
            }
        }
        Ok(p)
    }

    /// Compare the suffix at array index `k` with `pat`, both known equal for `from` bytes.
    fn compare(&self, pat: &[u8], k: usize, from: usize) -> Cmp {
        let suf = self
            .sa
            .get(k)
            .and_then(|&i| self.text.get(i as usize..))
            .unwrap_or(&[]);
        let from = from.min(suf.len()).min(pat.len());
        let l = from + lcp(&suf[from..], &pat[from..]);
        if l == pat.len() && l == suf.len() {
            Cmp::Equal
        } else if l == suf.len() || (l < pat.len() && suf[l] < pat[l]) {
            Cmp::Less(l)
        } else {
            Cmp::Greater(l)
        }
    }

    /// Binary search of `pat` between `p.lo` and `p.hi` (every suffix there shares
    /// `min(p.llcp, p.rlcp)` bytes with it; `p.llcp`/`p.rlcp` are the common prefixes of the
    /// suffixes just outside), then the longer match of the two suffixes around its place,
    /// among those inside `within`.
    fn finish(&self, pat: &[u8], mut p: Probe, within: Range<usize>) -> Range<usize> {
        while p.lo < p.hi {
            let mid = p.lo + (p.hi - p.lo) / 2;
            match self.compare(pat, mid, p.llcp.min(p.rlcp)) {
                Cmp::Equal => return self.sa[mid] as usize..self.text.len(),
                Cmp::Less(l) => (p.lo, p.llcp) = (mid + 1, l),
                Cmp::Greater(g) => (p.hi, p.rlcp) = (mid, g),
            }
        }
        // `lo` is where the pattern would go: the suffixes before and after it were the last
        // ones probed on each side (or the bounds given), with common prefixes `llcp`, `rlcp`.
        let i = p.lo;
        let n = self.text.len();
        let at = |k: usize| self.sa.get(k).map_or(n, |&v| v as usize);
        let left = i > within.start;
        let right = i < within.end;
        if left && (!right || p.llcp > p.rlcp) {
            at(i - 1)..at(i - 1) + p.llcp
        } else if right {
            at(i)..at(i) + p.rlcp
        } else {
            n..n
        }
    }
}

/// An interval of the suffix array still to search.
struct Probe {
    lo: usize,
    hi: usize,
    llcp: usize,
    rlcp: usize,
}

/// How a suffix compares with a pattern, with their common prefix length.
enum Cmp {
    Less(usize),
    Equal,
    Greater(usize),
}

/// The 8 bytes of `s` from `at` as a big-endian number (zeros past the end).
fn key8(s: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    if let Some(t) = s.get(at..) {
        let n = t.len().min(8);
        b[..n].copy_from_slice(&t[..n]);
    }
    u64::from_be_bytes(b)
}

/// How many positions hold equal bytes in `a` and `b` (over the shorter length).
pub(crate) fn count_equal(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut count = 0;
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        let mut w = [0u8; 8];
        for ((o, p), q) in w.iter_mut().zip(x).zip(y) {
            *o = p ^ q;
        }
        let v = u64::from_le_bytes(w);
        // A byte of `v` is zero exactly when its high bit ends up set here.
        const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
        let z = !(((v & LOW7).wrapping_add(LOW7)) | v | LOW7);
        count += z.count_ones() as usize;
    }
    count
        + ca.remainder()
            .iter()
            .zip(cb.remainder())
            .filter(|(x, y)| x == y)
            .count()
}

/// How many leading bytes `a` and `b` have in common.
pub(crate) fn lcp(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    // Eight bytes at a time, then the rest.
    let mut i = 0;
    while i + 8 <= n {
        let (x, y) = (word(a, i), word(b, i));
        if x != y {
            return i + ((x ^ y).trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < n && a[i] == b[i] {
        i += 1;
    }
    i
}

/// How many bytes `a` and `b` have in common at their ends (counted backwards).
pub(crate) fn lcs(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let (a, b) = (&a[a.len() - n..], &b[b.len() - n..]);
    let mut i = 0;
    while i + 8 <= n {
        let (x, y) = (word(a, n - i - 8), word(b, n - i - 8));
        if x != y {
            return i + ((x ^ y).leading_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < n && a[n - 1 - i] == b[n - 1 - i] {
        i += 1;
    }
    i
}

/// The 8 bytes of `s` at `at` as a little-endian number (`at + 8 <= s.len()`).
fn word(s: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&s[at..at + 8]);
    u64::from_le_bytes(w)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    /// Deterministic bytes with few symbols and repeats (long common prefixes).
    fn sample(n: usize, seed: u64, alphabet: u8) -> Vec<u8> {
        let mut x = seed | 1;
        let mut v = Vec::with_capacity(n);
        while v.len() < n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if x.is_multiple_of(7) && v.len() > 64 {
                let from = (x >> 8) as usize % (v.len() - 32);
                let len = 1 + (x >> 40) as usize % 64;
                for k in 0..len.min(n - v.len()) {
                    v.push(v[from + k]);
                }
            } else {
                v.push((x >> 24) as u8 % alphabet);
            }
        }
        v
    }

    /// Both sorters give the crate's array (empty suffix first) on texts of every kind:
    /// tiny, runs, periods, few symbols, code-like and random bytes.
    #[test]
    fn both_sorters_give_the_same_array() {
        let mut texts: Vec<Vec<u8>> = vec![
            vec![7],
            vec![0, 0],
            vec![5; 3000],
            b"abcabcabcabcabcab".repeat(40),
            sample(5000, 1, 2),
            sample(5000, 2, 16),
            sample(20_000, 3, 255),
        ];
        let mut code = sample(8000, 4, 40);
        code.extend(std::iter::repeat_n(0xFF, 2000));
        code.extend(sample(3000, 5, 255));
        texts.push(code);
        for t in &texts {
            let want = SuffixArray::new(t).into_parts().1;
            assert_eq!(sais(t).as_ref(), Some(&want), "{} bytes", t.len());
            assert_eq!(sort_suffixes(t), want);
        }
        assert_eq!(sais(&[]), None);
        assert_eq!(sort_suffixes(&[]), SuffixArray::new(&[]).into_parts().1);
        assert!(bits_per_byte(&sample(20_000, 3, 255)) > SAIS_MAX_BITS);
        assert!(bits_per_byte(&sample(20_000, 3, 16)) < SAIS_MAX_BITS);
    }

    #[test]
    fn search_matches_the_suffix_array_crate() {
        for (seed, alphabet) in [(1, 2), (2, 3), (3, 16), (4, 255)] {
            let s = sample(3000, seed, alphabet);
            let t = sample(2000, seed + 100, alphabet);
            let mut theirs = SuffixArray::new(&s);
            theirs.enable_buckets();
            for lazy in [usize::MAX, 0, 100] {
                let ours = Index::build(&s, &[], lazy, Vec::new());
                for j in 0..t.len() {
                    let want = theirs.search_lcp(&t[j..]);
                    assert_eq!(ours.search_lcp(&t[j..]), want, "at {j}");
                    let at_least4 = Some(want.clone()).filter(|r| r.len() >= 4);
                    assert_eq!(ours.search_lcp4(&t[j..]), at_least4, "at {j}");
                }
                // Patterns that are suffixes (and prefixes) of the source itself.
                for j in (0..s.len()).step_by(7) {
                    assert_eq!(ours.search_lcp(&s[j..]), theirs.search_lcp(&s[j..]));
                    assert_eq!(ours.search_lcp(&s[..j]), theirs.search_lcp(&s[..j]));
                }
            }
        }
        // Short suffixes at bucket edges, with and without the samples.
        for s in [
            &[5u8, 5, 5, 5][..],
            &[1, 2, 3, 1, 2],
            &[1, 2, 3, 1],
            &[0, 0],
            &[7],
        ] {
            let mut theirs = SuffixArray::new(s);
            theirs.enable_buckets();
            for lazy in [usize::MAX, 0] {
                let ours = Index::build(s, &[], lazy, Vec::new());
                let pats: [&[u8]; 11] = [
                    &[5],
                    &[6],
                    &[5, 6],
                    &[6, 5],
                    &[5, 5, 5, 5, 5],
                    &[],
                    &[1, 2, 3, 1, 2, 3],
                    &[1, 2, 4],
                    &[1, 2],
                    &[0, 0, 0],
                    &[7, 0, 0],
                ];
                for pat in pats {
                    assert_eq!(
                        ours.search_lcp(pat),
                        theirs.search_lcp(pat),
                        "{s:?} {pat:?}"
                    );
                }
            }
        }
    }

    /// A source mostly of long runs (erased flash between pieces of code) is sorted without
    /// the inside of its runs, and its searches still give true matches of the source:
    /// every window of 64 bytes that does not reach into a run's inside is found whole,
    /// and any pattern's answer is a real match there, as long as the crate's answer
    /// whenever that one avoids the runs' inside too.
    #[test]
    fn long_runs_are_left_out_and_matches_stay_true() {
        let mut s = Vec::new();
        let mut left_out = vec![];
        for (k, run) in [5000usize, 1025, 300, 70_000, 1024, 2048]
            .into_iter()
            .enumerate()
        {
            s.extend(sample(700 + 97 * k, 40 + k as u64, 255));
            let start = s.len();
            s.extend(std::iter::repeat_n(
                [0xFF, 0x00, 0xFF, 0x5A, 0x00, 0xFF][k],
                run,
            ));
            if run > RUN_MIN {
                left_out.push(start + RUN_KEEP..start + run - RUN_KEEP);
            }
        }
        s.extend(sample(900, 99, 255));
        let ours = Index::new(&s);
        let kept: usize = s.len() - left_out.iter().map(|r| r.len()).sum::<usize>();
        assert_eq!(ours.text.len(), kept, "only the runs' insides are left out");
        let mut theirs = SuffixArray::new(&s);
        theirs.enable_buckets();
        let inside = |a: usize, b: usize| left_out.iter().any(|r| a < r.end && r.start < b);
        let true_match =
            |r: &Range<usize>, pat: &[u8]| r.end <= s.len() && s[r.clone()] == pat[..r.len()];
        let mut x = 7u64;
        for j in (0..s.len() - 64).step_by(13) {
            let pat = &s[j..j + 64];
            let r = ours.search_lcp(pat);
            assert!(true_match(&r, pat), "at {j}");
            if !inside(j, j + 64) {
                assert_eq!(r.len(), 64, "window at {j}");
            }
            // A pattern that leaves the source after a while.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut pat = s[j..j + 64].to_vec();
            pat[(x % 64) as usize] ^= 0x33;
            let r = ours.search_lcp(&pat);
            assert!(true_match(&r, &pat), "changed at {j}");
            let t = theirs.search_lcp(&pat);
            if !inside(t.start, t.end) && !inside(r.start, r.end) {
                assert!(r.len() >= t.len(), "changed at {j}: {r:?} vs {t:?}");
            }
        }
        // Runs of any length are found whole, up to the longest run of their byte (5000
        // bytes of 0xFF here)...
        for len in [10, 300, 1000, 4000, 5000, 65_000] {
            let pat = vec![0xFFu8; len];
            let r = ours.search_lcp(&pat);
            assert!(true_match(&r, &pat));
            assert_eq!(r.len(), len.min(5000), "run of {len}: {r:?}");
        }
        // ...and a run with what follows it is found where both end together.
        for (byte, run_end) in [
            (0xFFu8, 700 + 5000),
            (0x5A, 700 + 5000 + 797 + 1025 + 894 + 300 + 991 + 70_000),
        ] {
            assert_eq!(s[run_end - 1], byte);
            assert_ne!(s[run_end], byte);
            let mut pat = vec![byte; 3000];
            pat.extend_from_slice(&s[run_end..run_end + 64]);
            let r = ours.search_lcp(&pat);
            assert_eq!(r, run_end - 3000..run_end + 64);
        }
        // A source without long runs is sorted as it is.
        let plain = sample(5000, 3, 255);
        assert_eq!(Index::new(&plain).text.len(), plain.len());
    }

    /// Anchors on one diagonal chain across gaps with a few changed bytes (pieces too short
    /// to anchor), so a near-identical pair leaves most of its source out of the sort; a
    /// rewritten stretch breaks the chain and stays sorted; every search still answers with
    /// true bytes. A target that is only half near-identical keeps its anchors apart.
    #[test]
    fn near_identical_pairs_chain_their_anchors() {
        let old = sample(300_000, 21, 255);
        let mut new = old.clone();
        // Two stretches with a changed byte every 100 bytes (relocated pointers)...
        for k in (60_000..64_000).chain(200_000..203_000).step_by(100) {
            new[k] ^= 0x41;
        }
        // ...and 6 KB rewritten (new code): a gap shorter than `JOIN_GAP`, but not alike.
        new[150_000..156_000].copy_from_slice(&sample(6000, 22, 255));
        let index = Index::for_pair(&old, &new);
        let (spans, chained) = diagonal_spans(&old, &new, index.anchors());
        assert!(chained);
        let long: Vec<_> = spans.iter().filter(|s| s.1 >= 100_000).collect();
        assert_eq!(long.len(), 2, "{spans:?}");
        assert!(long[0].0 == 0 && (140_000..=150_000).contains(&long[0].1));
        assert!((156_000..160_000).contains(&long[1].0) && long[1].0 + long[1].1 > 290_000);
        // Left to sort: the rewritten part's source and the ends kept (the anchors alone
        // would keep the 7 KB of the two changed stretches too).
        assert!(index.text.len() < 9000, "{}", index.text.len());
        let pat = &old[152_000..152_064];
        assert_eq!(index.search_lcp(pat), 152_000..152_064);
        for j in (0..new.len() - 64).step_by(997) {
            let pat = &new[j..j + 64];
            let r = index.search_lcp(pat);
            assert!(
                r.end <= old.len() && old[r.clone()] == pat[..r.len()],
                "at {j}"
            );
        }
        // Half of the target unrelated: chains would account for less than 4/5 of it.
        let mut half = new[..150_000].to_vec();
        half.extend(sample(150_000, 23, 255));
        let index = Index::for_pair(&old, &half);
        let (spans, chained) = diagonal_spans(&old, &half, index.anchors());
        assert!(!chained);
        assert_eq!(spans.len(), index.anchors().len());
        // Sorted: the unrelated half's source and the changed stretch between the anchors.
        assert!(index.text.len() > 153_500, "{}", index.text.len());
    }

    #[test]
    fn count_equal_counts_every_equal_position() {
        let a = sample(1000, 9, 3);
        let b = sample(1000, 10, 3);
        for (x, y) in [(0, 1000), (3, 997), (5, 12), (0, 0), (999, 1000)] {
            let want = a[x..y].iter().zip(&b[x..y]).filter(|(p, q)| p == q).count();
            assert_eq!(count_equal(&a[x..y], &b[x..y]), want);
            assert_eq!(count_equal(&a[x..y], &a[x..y]), y - x);
        }
        // Every byte value against every other (carries between lanes must not leak).
        let all: Vec<u8> = (0..=255).collect();
        for r in 0..=255u8 {
            let rot: Vec<u8> = all.iter().map(|v| v.wrapping_add(r)).collect();
            assert_eq!(count_equal(&all, &rot), if r == 0 { 256 } else { 0 });
        }
    }

    #[test]
    fn lcp_counts_equal_leading_bytes() {
        let a: Vec<u8> = (0..40).collect();
        for k in 0..40 {
            let mut b = a.clone();
            b[k] ^= 0x80;
            assert_eq!(lcp(&a, &b), k);
            assert_eq!(lcp(&a[..k], &b), k);
        }
        assert_eq!(lcp(&a, &a), 40);
        for k in 0..40 {
            let mut b = a.clone();
            b[k] ^= 0x80;
            assert_eq!(lcs(&a, &b), 39 - k);
            assert_eq!(lcs(&a[k + 1..], &b), 39 - k);
        }
        assert_eq!(lcs(&a, &a), 40);
        assert_eq!(lcs(&a[..0], &a), 0);
    }
}
