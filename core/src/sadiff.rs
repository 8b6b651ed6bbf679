//! The bsdiff match search of qbsdiff 1.4 (MIT, Copyright 2019-2022 hucsmn; its notice is in
//! `core/LICENSE-qbsdiff`), kept here without its patch-file writer: qbsdiff always
//! bzip2-compresses the difference and extra bytes, a third of our create time that we then
//! threw away, since we only read the control triples.
//!
//! A suffix array over the source finds, for each target position, the longest exact match;
//! matches are extended forwards and backwards over "similar" bytes (more equal than
//! different), and each step yields `(add, copy, seek)`: `add` bytes of the source at the
//! cursor plus differences, `copy` new bytes, then the source cursor moves by `seek`.

use rayon::prelude::*;
use std::ops::Range;
use suffix_array::SuffixArray;

/// Mismatches within a match that make a new exact match worth starting there.
const MISMATCH_COUNT: usize = 5;
/// Matches shorter than this count as misses; after `MISS_STEP_AFTER` misses in a row the
/// search steps by up to `MAX_MISS_STEP` bytes.
const SHORT_MATCH: usize = 8;
const MISS_STEP_AFTER: usize = 16;
const MAX_MISS_STEP: usize = 4;
/// Above this, suffixing similar bytes are skipped by binary search.
const LONG_SUFFIX: usize = 256;
/// Target bytes per parallel job (large targets only).
const CHUNK: usize = 512 * 1024;

/// One bsdiff control step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Control {
    pub add: u64,
    pub copy: u64,
    pub seek: i64,
}

/// Largest source the suffix array indexes.
pub(crate) const MAX_LENGTH: usize = suffix_array::MAX_LENGTH;

/// The control steps of `t` against the indexed source, found one at a time.
pub(crate) fn control_iter<'s, 't>(
    sa: &'s Index<'s>,
    t: &'t [u8],
    small_match: usize,
) -> impl Iterator<Item = Control> + use<'s, 't> {
    SaDiff::new(sa.s, t, sa, small_match)
}

/// All control steps describing `t` against the indexed source (`small_match`: exact
/// matches this short are not started on). Targets over `parallel_above` bytes are searched
/// in 512 KiB chunks on all cores; each chunk ends with a seek back to source offset 0.
/// When `stop` is set the search ends early with an incomplete list (the caller checks).
pub(crate) fn controls(
    sa: &Index<'_>,
    t: &[u8],
    small_match: usize,
    parallel_above: usize,
    stop: &core::sync::atomic::AtomicBool,
) -> Vec<Control> {
    use core::sync::atomic::Ordering::Relaxed;
    let s = sa.s;
    if t.len() <= parallel_above {
        return SaDiff::new(s, t, sa, small_match)
            .take_while(|_| !stop.load(Relaxed))
            .collect();
    }
    let jobs: Vec<Vec<Control>> = t
        .par_chunks(CHUNK)
        .map(|ti| {
            let mut pos = 0u64;
            let mut ctrls = Vec::new();
            for ctl in SaDiff::new(s, ti, sa, small_match).take_while(|_| !stop.load(Relaxed)) {
                pos += ctl.add;
                pos = pos.wrapping_add(ctl.seek as u64);
                ctrls.push(ctl);
            }
            ctrls.push(Control {
                add: 0,
                copy: 0,
                seek: -(pos as i64),
            });
            ctrls
        })
        .collect();
    jobs.into_iter().flatten().collect()
}

struct SaDiff<'s, 't> {
    s: &'s [u8],
    t: &'t [u8],
    sa: &'s Index<'s>,
    small_match: usize,
    i0: usize,
    j0: usize,
    n0: usize,
    b0: usize,
}

impl<'s, 't> SaDiff<'s, 't> {
    fn new(s: &'s [u8], t: &'t [u8], sa: &'s Index<'s>, small_match: usize) -> Self {
        SaDiff {
            s,
            t,
            sa,
            small_match,
            i0: 0,
            j0: 0,
            n0: 0,
            b0: 0,
        }
    }

    /// The next exact match `(i, j, n)` worth starting on.
    fn search_next(&mut self) -> Option<(usize, usize, usize)> {
        if self.j0 == self.t.len() && self.b0 == 0 {
            return None;
        }
        let mut j = self.j0 + self.n0;
        let mut k = j;
        let mut m = 0;
        // Searches in a row that found only a short match (no match to start here).
        let mut misses = 0usize;
        while j < self.t.len().saturating_sub(self.small_match) {
            let (i, n) = extent(self.sa.search_lcp(&self.t[j..]));
            if k < j + n {
                // Bytes of the new match that the current alignment already has.
                let i = self.i0.saturating_add(k - self.j0).min(self.s.len());
                let l = (j + n - k).min(self.s.len() - i);
                m += count_equal(&self.s[i..i + l], &self.t[k..k + l]);
                k = j + n;
            }
            if n == 0 {
                j += 1;
                m = 0;
            } else if m == n || n <= self.small_match {
                j += n;
                m = 0;
            } else if n <= m + MISMATCH_COUNT {
                let next = if n <= LONG_SUFFIX {
                    // Where nothing matches, search every second to fourth byte: a match
                    // that starts in between is still found a byte or two later and
                    // extended backwards over the similar bytes (`shrink_gap`).
                    misses = if n < SHORT_MATCH { misses + 1 } else { 0 };
                    j + (misses / MISS_STEP_AFTER).clamp(1, MAX_MISS_STEP).min(n)
                } else {
                    let (mut x, mut y) = (0, n);
                    while x < y {
                        let z = x + (y - x) / 2;
                        let (iz, nz) = extent(self.sa.search_lcp(&self.t[j + z..]));
                        if i + n == iz + nz && j + n == j + z + nz {
                            x = z + 1;
                        } else {
                            y = z;
                        }
                    }
                    j + x.max(1)
                };
                let i = self.i0.saturating_add(j - self.j0).min(self.s.len());
                let l = (next - j).min(self.s.len() - i);
                m -= count_equal(&self.s[i..i + l], &self.t[j..j + l]);
                j = next;
            } else {
                return Some((i, j, n));
            }
        }
        Some((self.s.len(), self.t.len(), 0))
    }

    /// Split the gap between the previous and this match into similar bytes after the
    /// previous (`a0`) and before this one (`b`).
    fn shrink_gap(&self, i: usize, j: usize) -> (usize, usize) {
        let gap = &self.t[self.j0 + self.n0..j];
        let suffix = &self.s[self.i0 + self.n0..];
        let prefix = &self.s[..i];
        let mut a0 = scan_similar(gap.iter(), suffix.iter());
        let mut b = scan_similar(gap.iter().rev(), prefix.iter().rev());
        if a0 + b > gap.len() {
            let n = a0 + b - gap.len();
            let xs = gap[gap.len() - b..a0].iter();
            let ys = suffix[gap.len() - b..a0].iter();
            let zs = prefix[prefix.len() - b..prefix.len() - b + n].iter();
            let i = scan_divide(xs, ys, zs);
            a0 -= n - i;
            b -= i;
        }
        (a0, b)
    }
}

impl Iterator for SaDiff<'_, '_> {
    type Item = Control;

    fn next(&mut self) -> Option<Control> {
        let (i, j, n) = self.search_next()?;
        let (i0, j0, n0, b0) = (self.i0, self.j0, self.n0, self.b0);
        let (a0, b) = self.shrink_gap(i, j);
        let add = (b0 + n0 + a0) as u64;
        let copy = ((j - b) - (j0 + n0 + a0)) as u64;
        let seek = (i - b).wrapping_sub(i0 + n0 + a0) as isize as i64;
        self.i0 = i;
        self.j0 = j;
        self.n0 = n;
        self.b0 = b;
        Some(Control { add, copy, seek })
    }
}

/// The suffix array of the source with bucket bounds for the first two bytes, searched with
/// the longest-common-prefix bounds of the search interval (a probe starts comparing where
/// both interval ends already agree with the pattern), so a long match costs its length
/// once rather than once per probe. Gives the same answers as `SuffixArray::search_lcp`.
pub(crate) struct Index<'s> {
    pub(crate) s: &'s [u8],
    sa: Vec<u32>,
    /// Right bounds of the buckets, laid out as in `suffix_array`:
    /// `[$; (0, $), (0, 0) .. (0, 255); ..; (255, $), (255, 0) .. (255, 255)]`.
    bkt: Vec<u32>,
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

/// Sampling step of [`Index::samples`] (16 bytes per 32 source bytes).
const SAMPLE: usize = 32;
/// See [`Index::samples`].
const LAZY_SAMPLES: usize = 1 << 20;

impl std::fmt::Debug for Index<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Index({} bytes)", self.s.len())
    }
}

/// Sources at least this large count their buckets on a second thread.
const PARALLEL_BUCKETS: usize = 1 << 20;

/// Right bounds of the suffix array's buckets by the first two bytes (see [`Index`]).
fn buckets(s: &[u8]) -> Vec<u32> {
    let mut bkt = vec![0u32; 256 * 257 + 1];
    bkt[0] = 1;
    for w in s.windows(2) {
        bkt[usize::from(w[0]) * 257 + usize::from(w[1]) + 2] += 1;
    }
    if let Some(&c0) = s.last() {
        bkt[usize::from(c0) * 257 + 1] += 1;
    }
    let mut sum = 0;
    for p in bkt.iter_mut() {
        sum += *p;
        *p = sum;
    }
    bkt
}

impl<'s> Index<'s> {
    pub(crate) fn new(s: &'s [u8]) -> Self {
        Self::build(s, LAZY_SAMPLES)
    }

    /// The index; the samples are built after `lazy_after` searches.
    fn build(s: &'s [u8], lazy_after: usize) -> Self {
        // On a large source the bucket bounds are counted on another core while the suffix
        // sort (one core) runs; on a small one a thread costs more than the count.
        let (sa, bkt) = if s.len() >= PARALLEL_BUCKETS {
            let (sa, bkt) = std::thread::scope(|sc| {
                let counting = sc.spawn(|| buckets(s));
                let (_, sa) = SuffixArray::new(s).into_parts();
                (sa, counting.join())
            });
            (sa, bkt.unwrap_or_else(|_| buckets(s)))
        } else {
            (SuffixArray::new(s).into_parts().1, buckets(s))
        };
        Self {
            s,
            sa,
            bkt,
            samples: std::sync::OnceLock::new(),
            searches: std::sync::atomic::AtomicUsize::new(0),
            lazy_after,
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
            let (s, sa) = (self.s, &self.sa);
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
        let b = |i: usize| self.bkt.get(i).map_or(0, |&v| v as usize);
        match pat {
            [] => 0..1,
            [c0, c1, ..] if !top => {
                let idx = usize::from(*c0) * 257 + usize::from(*c1) + 2;
                b(idx - 1)..b(idx)
            }
            [c0, ..] => {
                let i = usize::from(*c0) * 257;
                b(i)..b(i + 257)
            }
        }
    }

    /// The longest prefix of `pat` found in the source, as `start..start + len`
    /// (`len(s)..len(s)` when not even its first byte occurs).
    pub(crate) fn search_lcp(&self, pat: &[u8]) -> Range<usize> {
        let s = self.s;
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
            let cmp = if pos + 8 <= self.s.len() && k != key {
                // Both have 8 real bytes: the first differing byte decides.
                let l = ((k ^ key).leading_zeros() / 8) as usize;
                if k < key {
                    Cmp::Less(l)
                } else {
                    Cmp::Greater(l)
                }
            } else if pos + 8 <= self.s.len() {
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
            .and_then(|&i| self.s.get(i as usize..))
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
                Cmp::Equal => return self.sa[mid] as usize..self.s.len(),
                Cmp::Less(l) => (p.lo, p.llcp) = (mid + 1, l),
                Cmp::Greater(g) => (p.hi, p.rlcp) = (mid, g),
            }
        }
        // `lo` is where the pattern would go: the suffixes before and after it were the last
        // ones probed on each side (or the bounds given), with common prefixes `llcp`, `rlcp`.
        let i = p.lo;
        let at = |k: usize| self.sa.get(k).map_or(self.s.len(), |&v| v as usize);
        let left = i > within.start;
        let right = i < within.end;
        if left && (!right || p.llcp > p.rlcp) {
            at(i - 1)..at(i - 1) + p.llcp
        } else if right {
            at(i)..at(i) + p.rlcp
        } else {
            self.s.len()..self.s.len()
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

fn lcp(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    // Eight bytes at a time, then the rest.
    let mut i = 0;
    while i + 8 <= n {
        let x = u64::from_le_bytes([
            a[i],
            a[i + 1],
            a[i + 2],
            a[i + 3],
            a[i + 4],
            a[i + 5],
            a[i + 6],
            a[i + 7],
        ]);
        let y = u64::from_le_bytes([
            b[i],
            b[i + 1],
            b[i + 2],
            b[i + 3],
            b[i + 4],
            b[i + 5],
            b[i + 6],
            b[i + 7],
        ]);
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

fn extent(r: Range<usize>) -> (usize, usize) {
    (r.start, r.end.saturating_sub(r.start))
}

/// Length of the prefix where equal bytes most outnumber different ones.
fn scan_similar<T: Eq, I: Iterator<Item = T>>(xs: I, ys: I) -> usize {
    let (mut i, mut matched, mut best) = (0, 0usize, 0isize);
    for (n, eq) in (1..).zip(xs.zip(ys).map(|(x, y)| x == y)) {
        matched += usize::from(eq);
        let score = matched as isize - (n - matched) as isize;
        if score > best {
            i = n;
            best = score;
        }
    }
    i
}

/// Where overlapping forward and backward extensions should divide.
fn scan_divide<T: Eq, I: Iterator<Item = T>>(xs: I, ys: I, zs: I) -> usize {
    let (mut i, mut y_matched, mut z_matched, mut best) = (0, 0usize, 0usize, 0isize);
    let eqs = xs.zip(ys).zip(zs).map(|((x, y), z)| (x == y, x == z));
    for (n, (y_eq, z_eq)) in (1..).zip(eqs) {
        y_matched += usize::from(y_eq);
        z_matched += usize::from(z_eq);
        let score = y_matched as isize - z_matched as isize;
        if score > best {
            i = n;
            best = score;
        }
    }
    i
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

    #[test]
    fn search_matches_the_suffix_array_crate() {
        for (seed, alphabet) in [(1, 2), (2, 3), (3, 16), (4, 255)] {
            let s = sample(3000, seed, alphabet);
            let t = sample(2000, seed + 100, alphabet);
            let mut theirs = SuffixArray::new(&s);
            theirs.enable_buckets();
            for lazy in [usize::MAX, 0, 100] {
                let ours = Index::build(&s, lazy);
                for j in 0..t.len() {
                    assert_eq!(
                        ours.search_lcp(&t[j..]),
                        theirs.search_lcp(&t[j..]),
                        "at {j}"
                    );
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
                let ours = Index::build(s, lazy);
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
    }
}
