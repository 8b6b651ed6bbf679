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
const MISMATCH_COUNT: usize = 8;
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
pub(crate) fn controls(
    sa: &Index<'_>,
    t: &[u8],
    small_match: usize,
    parallel_above: usize,
) -> Vec<Control> {
    let s = sa.s;
    if t.len() <= parallel_above {
        return SaDiff::new(s, t, sa, small_match).collect();
    }
    let jobs: Vec<Vec<Control>> = t
        .par_chunks(CHUNK)
        .map(|ti| {
            let mut pos = 0u64;
            let mut ctrls = Vec::new();
            for ctl in SaDiff::new(s, ti, sa, small_match) {
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
    /// For large sources, where each 3-byte prefix's suffixes start (index `c0 c1 c2` as a
    /// 24-bit number, one more entry at the end): 8 fewer probes per search.
    bkt3: Vec<u32>,
}

/// Sources this long get the 3-byte bucket table (64 MiB).
const BKT3_ABOVE: Option<usize> = None;

impl std::fmt::Debug for Index<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Index({} bytes)", self.s.len())
    }
}

impl<'s> Index<'s> {
    pub(crate) fn new(s: &'s [u8]) -> Self {
        Self::build(s, BKT3_ABOVE.is_some_and(|a| s.len() > a))
    }

    fn build(s: &'s [u8], with_bkt3: bool) -> Self {
        let (s, sa) = SuffixArray::new(s).into_parts();
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
        let bkt3 = if with_bkt3 { bucket3(s) } else { Vec::new() };
        Self { s, sa, bkt, bkt3 }
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
        if let ([c0, c1, c2, ..], false) = (pat, self.bkt3.is_empty()) {
            let k = (usize::from(*c0) << 16) | (usize::from(*c1) << 8) | usize::from(*c2);
            if let (Some(&a), Some(&b)) = (self.bkt3.get(k), self.bkt3.get(k + 1)) {
                let (a, b) = (a as usize, b as usize);
                // The suffixes of length 1 and 2 sort between buckets: `b` may count them.
                let end = (a..b)
                    .rev()
                    .find(|&e| self.sa.get(e).is_some_and(|&p| s.len() - p as usize >= 3))
                    .map_or(a, |e| e + 1);
                if end > a {
                    let probe = Probe {
                        lo: a,
                        hi: end,
                        llcp: 3,
                        rlcp: 3,
                    };
                    return self.finish(pat, probe, a..end);
                }
            }
        }
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
        let probe = Probe {
            lo: bucket.start,
            hi: bucket.end,
            llcp: known,
            rlcp: known,
        };
        self.finish(pat, probe, bucket)
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

/// Start of each 3-byte prefix's suffixes in the suffix array of `s` (2^24 + 1 entries):
/// the empty suffix sorts first, and a suffix of 1 or 2 bytes sorts before every longer
/// suffix it is a prefix of, so it is counted before the buckets from its prefix on.
fn bucket3(s: &[u8]) -> Vec<u32> {
    let key = |w: &[u8]| (usize::from(w[0]) << 16) | (usize::from(w[1]) << 8) | usize::from(w[2]);
    let mut start = vec![0u32; (1 << 24) + 1];
    for w in s.windows(3) {
        start[key(w) + 1] += 1;
    }
    // Short suffixes: bump the counts where their sort place begins.
    let n = s.len();
    let short = [
        s.get(n.saturating_sub(2)..).filter(|t| t.len() == 2),
        s.get(n.saturating_sub(1)..).filter(|t| t.len() == 1),
    ];
    for t in short.into_iter().flatten() {
        let from = match t {
            [a, b] => (usize::from(*a) << 16) | (usize::from(*b) << 8),
            [a] => usize::from(*a) << 16,
            _ => continue,
        };
        start[from] += 1;
    }
    // The empty suffix first, then running sums.
    start[0] += 1;
    let mut sum = 0;
    for v in start.iter_mut() {
        sum += *v;
        *v = sum;
    }
    start
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
            if x % 7 == 0 && v.len() > 64 {
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
            for bkt3 in [false, true] {
                let ours = Index::build(&s, bkt3);
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
        // Short suffixes at bucket edges, with and without the 3-byte table.
        for s in [
            &[5u8, 5, 5, 5][..],
            &[1, 2, 3, 1, 2],
            &[1, 2, 3, 1],
            &[0, 0],
            &[7],
        ] {
            let mut theirs = SuffixArray::new(s);
            theirs.enable_buckets();
            for bkt3 in [false, true] {
                let ours = Index::build(s, bkt3);
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
