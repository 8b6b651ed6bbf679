//! Match finding (host side): the cover finder (`crate::cover`) finds where the new image
//! follows the old one; here its covers become [`Segment`]s for the encoder (short or mostly
//! different covers and dense runs of differences become literal regions).

use core::sync::atomic::{AtomicBool, Ordering};

use crate::delta::{self, EncodeError, Params, Segment};

/// A stop flag that is never set (the jobs that cannot be cancelled).
pub(crate) static NEVER: AtomicBool = AtomicBool::new(false);

/// Why a delta could not be made.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    /// The matcher refused the input or produced inconsistent steps.
    #[error("match search failed: {0}")]
    Controls(&'static str),
    /// Encoding failed.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The caller's stop flag was set.
    #[error("cancelled")]
    Cancelled,
}

/// Largest source the matcher accepts (the format's limit is 4 GiB - 1).
pub const MAX_IMAGE: u64 = u32::MAX as u64;

/// Find matches of `new` in `old` and return the segments describing `new`.
pub fn find_segments(old: &[u8], new: &[u8]) -> Result<Vec<Segment>, DiffError> {
    find_segments_indexed(&index_source(old, new)?, new)
}

/// The index of `old` for finding `new` in it, if `old` is not beyond what a suffix array
/// can index.
fn index_source<'a>(old: &'a [u8], new: &[u8]) -> Result<delta::SourceIndex<'a>, DiffError> {
    if old.len() > crate::suffix::MAX_LENGTH {
        return Err(DiffError::Controls("source image too large to index"));
    }
    Ok(delta::SourceIndex::for_pair(old, new))
}

/// [`find_segments`] with the source's index built beforehand (it is also what
/// [`delta::encode_indexed`] searches): [`delta::SourceIndex::new`], or
/// [`delta::SourceIndex::for_pair`] made for this same `new` (made for another target, its
/// anchors only cost matches, never correctness: every match is measured in the images).
pub fn find_segments_indexed(
    index: &delta::SourceIndex<'_>,
    new: &[u8],
) -> Result<Vec<Segment>, DiffError> {
    find_segments_until(index, new, &NEVER)
}

/// [`find_segments_indexed`] that ends with [`DiffError::Cancelled`] once `stop` is set.
fn find_segments_until(
    index: &delta::SourceIndex<'_>,
    new: &[u8],
    stop: &AtomicBool,
) -> Result<Vec<Segment>, DiffError> {
    let old = index.source();
    if old.is_empty() || new.is_empty() {
        return Ok(vec![Segment::Lit {
            len: new.len() as u64,
        }]);
    }
    // On all cores, the covers of one walk.
    let covers = crate::cover::all_covers(index.suffixes(), new, stop);
    if stop.load(Ordering::Relaxed) {
        return Err(DiffError::Cancelled);
    }
    SegmentStream::new(old, new, covers.into_iter()).collect()
}

/// The refined segments of `new`, one cover at a time.
struct SegmentStream<'a, I> {
    covers: I,
    old: &'a [u8],
    new: &'a [u8],
    new_pos: u64,
    /// This step's refined segments, handed out from `next` on (refilled when drained).
    buf: Vec<Segment>,
    next: usize,
    done: bool,
}

impl<'a, I: Iterator<Item = crate::cover::Cover>> SegmentStream<'a, I> {
    fn new(old: &'a [u8], new: &'a [u8], covers: I) -> Self {
        Self {
            covers,
            old,
            new,
            new_pos: 0,
            buf: Vec::new(),
            next: 0,
            done: false,
        }
    }
}

impl<I: Iterator<Item = crate::cover::Cover>> Iterator for SegmentStream<'_, I> {
    type Item = Result<Segment, DiffError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(&s) = self.buf.get(self.next) {
                self.next += 1;
                return Some(Ok(s));
            }
            self.buf.clear();
            self.next = 0;
            if self.done {
                return None;
            }
            let Some(c) = self.covers.next() else {
                self.done = true;
                if self.new_pos != self.new.len() as u64 {
                    return Some(Err(DiffError::Controls("covers do not tile the new image")));
                }
                continue;
            };
            let end = self
                .new_pos
                .checked_add(c.gap)
                .and_then(|e| e.checked_add(c.len));
            if end.is_none_or(|e| e > self.new.len() as u64) {
                self.done = true;
                return Some(Err(DiffError::Controls("covers run past the new image")));
            }
            if c.gap > 0 {
                push_lit(&mut self.buf, c.gap);
            }
            if c.len > 0 {
                if c.old
                    .checked_add(c.len)
                    .is_none_or(|e| e > self.old.len() as u64)
                {
                    self.done = true;
                    return Some(Err(DiffError::Controls("cover outside the source")));
                }
                refine_add(
                    self.old,
                    self.new,
                    c.len,
                    c.old,
                    self.new_pos + c.gap,
                    &mut self.buf,
                );
            }
            self.new_pos += c.gap + c.len;
        }
    }
}

/// Shortest approximate match kept as such: shorter ones cost more as a control than as
/// literal-region bytes (where the parser can still take them as exact source matches).
const MIN_ADD: u64 = 24;

/// Clean up one cover for the coder (`len` bytes from source `o` at target
/// `pos`): a match that is short or mostly different becomes a literal region, and dense
/// runs of differences inside a match are cut out into literal regions too (see
/// `split_dense`).
fn refine_add(old: &[u8], new: &[u8], len: u64, o: u64, pos: u64, out: &mut Vec<Segment>) {
    let a = &old[o as usize..(o + len) as usize];
    let b = &new[pos as usize..(pos + len) as usize];
    let same = crate::suffix::count_equal(a, b) as u64;
    if len < MIN_ADD || same * 4 < len {
        push_lit(out, len);
    } else {
        split_dense(a, b, o, out);
    }
}

/// Append `len` literal bytes, extending a literal segment just before.
fn push_lit(out: &mut Vec<Segment>, len: u64) {
    match out.last_mut() {
        Some(Segment::Lit { len: l }) => *l += len,
        _ => out.push(Segment::Lit { len }),
    }
}

/// Window and threshold for `split_dense`: 12 differing bytes in 16 cost more as
/// differences than as a literal region.
const DENSE_WIN: usize = 16;
const DENSE_MIN: usize = 12;

/// Emit the match `a -> b` (source offset `o`) as Add pieces, with every window of
/// `DENSE_WIN` bytes where at least `DENSE_MIN` differ emitted as a literal region instead
/// (and Add pieces shorter than `MIN_ADD` too).
///
/// A window `[w, w + 16)` is dense exactly when it holds 12 consecutive differing positions
/// `p[k] ..= p[k + 11]`, so the dense bytes are the union over `k` with
/// `p[k + 11] - p[k] < 16` of `[max(p[k + 11] - 15, 0), min(p[k], n - 16) + 16)`: found from
/// the differing positions alone, without a pass per byte.
fn split_dense(a: &[u8], b: &[u8], o: u64, out: &mut Vec<Segment>) {
    let n = a.len();
    let diffs = differing(a, b);
    // Dense intervals in order (they start in increasing order), merged when they touch.
    let mut dense: Vec<(usize, usize)> = Vec::new();
    if n >= DENSE_WIN {
        for w in diffs.windows(DENSE_MIN) {
            let (first, last) = (w[0], w[DENSE_MIN - 1]);
            if last - first >= DENSE_WIN {
                continue;
            }
            let lo = (last + 1).saturating_sub(DENSE_WIN);
            let hi = first.min(n - DENSE_WIN) + DENSE_WIN;
            if lo >= hi {
                continue;
            }
            match dense.last_mut() {
                Some(d) if lo <= d.1 => d.1 = d.1.max(hi),
                _ => dense.push((lo, hi)),
            }
        }
    }
    let mut emit = |from: usize, to: usize, lit: bool| {
        let len = (to - from) as u64;
        if len == 0 {
            return;
        }
        if lit || len < MIN_ADD {
            push_lit(out, len);
        } else {
            out.push(Segment::Add {
                len,
                old: o + from as u64,
            });
        }
    };
    let mut at = 0;
    for (lo, hi) in dense {
        emit(at, lo, false);
        emit(lo, hi, true);
        at = hi;
    }
    emit(at, n, false);
}

/// Positions where `a` and `b` differ (eight bytes at a time over equal stretches).
fn differing(a: &[u8], b: &[u8]) -> Vec<usize> {
    let n = a.len().min(b.len());
    let mut v = Vec::new();
    let mut i = 0;
    while i < n {
        if i + 8 <= n && a[i..i + 8] == b[i..i + 8] {
            i += 8;
            continue;
        }
        if a[i] != b[i] {
            v.push(i);
        }
        i += 1;
    }
    v
}

/// Make a BSD2 delta stream of `new` against `old`.
pub fn make_delta(old: &[u8], new: &[u8], params: Params) -> Result<Vec<u8>, DiffError> {
    make_delta_until(old, new, params, &NEVER)
}

/// [`make_delta`] that stops with [`DiffError::Cancelled`] soon after `stop` is set (between
/// 512 KiB chunks of the match search and between coded blocks; the source's suffix sort
/// runs to its end).
pub fn make_delta_until(
    old: &[u8],
    new: &[u8],
    params: Params,
    stop: &AtomicBool,
) -> Result<Vec<u8>, DiffError> {
    if old.len() as u64 > MAX_IMAGE || new.len() as u64 > MAX_IMAGE {
        return Err(EncodeError::TooLarge(old.len().max(new.len()) as u64).into());
    }
    // One suffix array of the source serves the match search and the encoder's source
    // matches in literal regions.
    let index = index_source(old, new)?;
    if !old.is_empty() && !new.is_empty() && new.len() as u64 <= params.block_size() {
        // One block: code it on a second thread while the matches are still being found.
        let covers = crate::cover::covers(index.suffixes(), new, stop);
        let segs = SegmentStream::new(old, new, covers);
        let r = delta::encode_streamed(old, new, params, &index, segs);
        if stop.load(Ordering::Relaxed) {
            return Err(DiffError::Cancelled);
        }
        return r;
    }
    if stop.load(Ordering::Relaxed) {
        return Err(DiffError::Cancelled);
    }
    let segs = find_segments_until(&index, new, stop)?;
    match delta::encode_indexed_until(old, new, &segs, params, &index, stop) {
        Err(EncodeError::Cancelled) => Err(DiffError::Cancelled),
        r => Ok(r?),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    /// The dense-difference split from differing positions marks exactly the bytes of the
    /// definition: every window of `DENSE_WIN` bytes with at least `DENSE_MIN` differences,
    /// and keeps Add pieces of `MIN_ADD` bytes or more (others become literals).
    #[test]
    fn split_dense_matches_its_definition() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for case in 0..300 {
            let n = 1 + (rnd() % 400) as usize;
            let a: Vec<u8> = (0..n).map(|_| rnd() as u8).collect();
            // Differences in bursts of varying density.
            let density = (case % 7) as u64;
            let b: Vec<u8> = a
                .iter()
                .enumerate()
                .map(|(i, &v)| {
                    let burst = (i / 37) % 3 == 0;
                    let p = if burst { 2 + density } else { density / 3 };
                    if rnd() % 10 < p {
                        v ^ 0x5A
                    } else {
                        v
                    }
                })
                .collect();
            // The definition, byte by byte.
            let mut lit = vec![false; n];
            if n >= DENSE_WIN {
                for w in 0..=n - DENSE_WIN {
                    let d = (w..w + DENSE_WIN).filter(|&i| a[i] != b[i]).count();
                    if d >= DENSE_MIN {
                        lit[w..w + DENSE_WIN].iter_mut().for_each(|l| *l = true);
                    }
                }
            }
            let mut want = Vec::new();
            let mut i = 0;
            while i < n {
                let j = (i..n).find(|&j| lit[j] != lit[i]).unwrap_or(n);
                let len = (j - i) as u64;
                if lit[i] || len < MIN_ADD {
                    push_lit(&mut want, len);
                } else {
                    want.push(Segment::Add {
                        len,
                        old: 1000 + i as u64,
                    });
                }
                i = j;
            }
            let mut got = Vec::new();
            split_dense(&a, &b, 1000, &mut got);
            assert_eq!(got, want, "case {case}");
        }
    }
}
