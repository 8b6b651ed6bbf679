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
    let mut sa = SuffixArray::new(s);
    sa.enable_buckets();
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
    sa: &'s SuffixArray<'s>,
    small_match: usize,
    i0: usize,
    j0: usize,
    n0: usize,
    b0: usize,
}

impl<'s, 't> SaDiff<'s, 't> {
    fn new(s: &'s [u8], t: &'t [u8], sa: &'s SuffixArray<'s>, small_match: usize) -> Self {
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
