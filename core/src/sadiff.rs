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

/// All control steps describing `t` against `s` (`small_match`: exact matches this short are
/// not started on). Targets over `parallel_above` bytes are searched in 512 KiB chunks on
/// all cores; each chunk ends with a seek back to source offset 0.
pub(crate) fn controls(
    s: &[u8],
    t: &[u8],
    small_match: usize,
    parallel_above: usize,
) -> Vec<Control> {
    let sa = Index::new(s);
    if t.len() <= parallel_above {
        return SaDiff::new(s, t, &sa, small_match).collect();
    }
    let jobs: Vec<Vec<Control>> = t
        .par_chunks(CHUNK)
        .map(|ti| {
            let mut pos = 0u64;
            let mut ctrls = Vec::new();
            for ctl in SaDiff::new(s, ti, &sa, small_match) {
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
        while j < self.t.len().saturating_sub(self.small_match) {
            let (i, n) = extent(self.sa.search_lcp(&self.t[j..]));
            while k < j + n {
                let i = self.i0.saturating_add(k - self.j0);
                if i < self.s.len() && self.s[i] == self.t[k] {
                    m += 1;
                }
                k += 1;
            }
            if n == 0 {
                j += 1;
                m = 0;
            } else if m == n || n <= self.small_match {
                j += n;
                m = 0;
            } else if n <= m + MISMATCH_COUNT {
                let next = if n <= LONG_SUFFIX {
                    j + 1
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
                let mut i = self.i0.saturating_add(j - self.j0);
                while j < next {
                    if i < self.s.len() && self.s[i] == self.t[j] {
                        m -= 1;
                    }
                    i += 1;
                    j += 1;
                }
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
    s: &'s [u8],
    sa: Vec<u32>,
    /// Right bounds of the buckets, laid out as in `suffix_array`:
    /// `[$; (0, $), (0, 0) .. (0, 255); ..; (255, $), (255, 0) .. (255, 255)]`.
    bkt: Vec<u32>,
}

impl<'s> Index<'s> {
    pub(crate) fn new(s: &'s [u8]) -> Self {
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
        Self { s, sa, bkt }
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
        let Some(sa) = self.sa.get(self.bucket(pat, false)) else {
            return s.len()..s.len();
        };
        if sa.is_empty() {
            return match self.sa.get(self.bucket(pat, true).start) {
                Some(&i) if !self.bucket(pat, true).is_empty() => i as usize..i as usize + 1,
                _ => s.len()..s.len(),
            };
        }
        let suffix = |k: usize| s.get(sa[k] as usize..).unwrap_or(&[]);
        // Every suffix in the bucket shares its first `known` bytes with the pattern.
        let known = pat.len().min(2);
        let (mut lo, mut hi) = (0usize, sa.len());
        let (mut llcp, mut rlcp) = (known, known);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let suf = suffix(mid);
            let m = llcp.min(rlcp);
            let l = m + lcp(&suf[m..], &pat[m..]);
            if l == pat.len() && l == suf.len() {
                let start = sa[mid] as usize;
                return start..s.len();
            }
            let less = l == suf.len() || (l < pat.len() && suf[l] < pat[l]);
            if less {
                lo = mid + 1;
                llcp = l;
            } else {
                hi = mid;
                rlcp = l;
            }
        }
        // `lo` is where the pattern would go: the suffixes before and after it were the last
        // ones probed on each side, so their common prefixes are `llcp` and `rlcp`.
        let i = lo;
        if i > 0 && i < sa.len() {
            let (a, b) = (sa[i - 1] as usize, sa[i] as usize);
            if llcp > rlcp {
                a..a + llcp
            } else {
                b..b + rlcp
            }
        } else if i == 0 {
            let b = sa[0] as usize;
            b..b + rlcp
        } else {
            let a = sa[i - 1] as usize;
            a..a + llcp
        }
    }
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
            let ours = Index::new(&s);
            let mut theirs = SuffixArray::new(&s);
            theirs.enable_buckets();
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
        let s = [5u8, 5, 5, 5];
        let ours = Index::new(&s);
        let mut theirs = SuffixArray::new(&s);
        theirs.enable_buckets();
        for pat in [&[5u8][..], &[6], &[5, 6], &[6, 5], &[5, 5, 5, 5, 5], &[]] {
            assert_eq!(ours.search_lcp(pat), theirs.search_lcp(pat), "{pat:?}");
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
