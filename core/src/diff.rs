//! Match finding (host side). qbsdiff's suffix-array bsdiff search (`crate::sadiff`) finds
//! the matches; we turn its control steps into [`Segment`]s for our own encoder.

use crate::delta::{self, EncodeError, Params, Segment};

/// Why a delta could not be made.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    /// The matcher refused the input or produced inconsistent steps.
    #[error("match search failed: {0}")]
    Controls(&'static str),
    /// Encoding failed.
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

/// Largest source the matcher accepts (the format's limit is 4 GiB - 1).
pub const MAX_IMAGE: u64 = u32::MAX as u64;

/// Find matches of `new` in `old` and return the segments describing `new`.
pub fn find_segments(old: &[u8], new: &[u8]) -> Result<Vec<Segment>, DiffError> {
    if old.len() > crate::sadiff::MAX_LENGTH {
        return Err(DiffError::Controls("source image too large to index"));
    }
    find_segments_indexed(&delta::SourceIndex::new(old), new)
}

/// [`find_segments`] with the source's index built beforehand (it is also what
/// [`delta::encode_indexed`] searches).
pub fn find_segments_indexed(
    index: &delta::SourceIndex<'_>,
    new: &[u8],
) -> Result<Vec<Segment>, DiffError> {
    let old = index.source();
    if old.is_empty() || new.is_empty() {
        return Ok(vec![Segment::Lit {
            len: new.len() as u64,
        }]);
    }
    // Keep every match (small_match 0): our coder makes short matches cheap. Targets over
    // 8 MiB are searched in parallel chunks.
    let ctrl = crate::sadiff::controls(index.suffixes(), new, 0, 8 << 20);
    let mut segs = Vec::new();
    let mut old_pos: i64 = 0;
    let mut new_pos: u64 = 0;
    for c in ctrl {
        let (add, copy) = (c.add, c.copy);
        if add > 0 {
            if old_pos < 0 || old_pos as u64 + add > old.len() as u64 {
                return Err(DiffError::Controls("match outside the source"));
            }
            segs.push(Segment::Add {
                len: add,
                old: old_pos as u64,
            });
        }
        if copy > 0 {
            segs.push(Segment::Lit { len: copy });
        }
        old_pos = old_pos.wrapping_add(add as i64).wrapping_add(c.seek);
        new_pos += add + copy;
    }
    if new_pos != new.len() as u64 {
        return Err(DiffError::Controls("controls do not cover the new image"));
    }
    Ok(refine(old, new, segs))
}

/// Shortest approximate match kept as such: shorter ones cost more as a control than as
/// literal-region bytes (where the parser can still take them as exact source matches).
const MIN_ADD: u64 = 24;

/// Clean up the matcher's segments for our coder: matches that are short or mostly
/// different become literal regions, and dense runs of differences inside a match are cut
/// out into literal regions too (see `split_dense`).
fn refine(old: &[u8], new: &[u8], segs: Vec<Segment>) -> Vec<Segment> {
    let mut out = Vec::with_capacity(segs.len());
    let mut pos = 0u64;
    for s in segs {
        match s {
            Segment::Add { len, old: o } => {
                let a = &old[o as usize..(o + len) as usize];
                let b = &new[pos as usize..(pos + len) as usize];
                let same = crate::sadiff::count_equal(a, b) as u64;
                if len < MIN_ADD || same * 4 < len {
                    push_lit(&mut out, len);
                } else {
                    split_dense(a, b, o, &mut out);
                }
                pos += len;
            }
            Segment::Lit { len } => {
                out.push(s);
                pos += len;
            }
        }
    }
    out
}

/// Append `len` literal bytes, extending a literal segment just before.
fn push_lit(out: &mut Vec<Segment>, len: u64) {
    match out.last_mut() {
        Some(Segment::Lit { len: l }) => *l += len,
        _ => out.push(Segment::Lit { len }),
    }
}

/// Window and threshold for `split_dense`: 12 differing bytes in 16 cost more as
/// differences than as a literal region (measured on the public corpus).
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
    if old.len() as u64 > MAX_IMAGE || new.len() as u64 > MAX_IMAGE {
        return Err(EncodeError::TooLarge(old.len().max(new.len()) as u64).into());
    }
    if old.len() > crate::sadiff::MAX_LENGTH {
        return Err(DiffError::Controls("source image too large to index"));
    }
    // One suffix array of the source serves the match search and the encoder's source
    // matches in literal regions.
    let index = delta::SourceIndex::new(old);
    let segs = find_segments_indexed(&index, new)?;
    Ok(delta::encode_indexed(old, new, &segs, params, &index)?)
}
