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
    if old.is_empty() || new.is_empty() {
        return Ok(vec![Segment::Lit {
            len: new.len() as u64,
        }]);
    }
    if old.len() > crate::sadiff::MAX_LENGTH {
        return Err(DiffError::Controls("source image too large to index"));
    }
    // Keep every match (small_match 0): our coder makes short matches cheap. Targets over
    // 8 MiB are searched in parallel chunks.
    let ctrl = crate::sadiff::controls(old, new, 0, 8 << 20);
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
                let same = a.iter().zip(b).filter(|(x, y)| x == y).count() as u64;
                if len < MIN_ADD || same * 4 < len {
                    out.push(Segment::Lit { len });
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

/// Window and threshold for `split_dense`: 12 differing bytes in 16 cost more as
/// differences than as a literal region (measured on the public corpus).
const DENSE_WIN: usize = 16;
const DENSE_MIN: usize = 12;

/// Emit the match `a -> b` (source offset `o`) as Add pieces, with stretches where at least
/// `DENSE_MIN` of `DENSE_WIN` bytes differ emitted as literal regions instead.
fn split_dense(a: &[u8], b: &[u8], o: u64, out: &mut Vec<Segment>) {
    let n = a.len();
    let diff: Vec<bool> = a.iter().zip(b).map(|(x, y)| x != y).collect();
    let mut lit = vec![false; n];
    let mut count = diff.iter().take(DENSE_WIN).filter(|&&d| d).count();
    for i in 0..n.saturating_sub(DENSE_WIN - 1) {
        if count >= DENSE_MIN {
            for l in &mut lit[i..i + DENSE_WIN] {
                *l = true;
            }
        }
        if i + DENSE_WIN < n {
            count = count + usize::from(diff[i + DENSE_WIN]) - usize::from(diff[i]);
        }
    }
    let mut i = 0;
    while i < n {
        let kind = lit[i];
        let mut j = i;
        while j < n && lit[j] == kind {
            j += 1;
        }
        let len = (j - i) as u64;
        if kind || len < MIN_ADD {
            match out.last_mut() {
                Some(Segment::Lit { len: l }) => *l += len,
                _ => out.push(Segment::Lit { len }),
            }
        } else {
            out.push(Segment::Add {
                len,
                old: o + i as u64,
            });
        }
        i = j;
    }
}

/// Make a BSD2 delta stream of `new` against `old`.
pub fn make_delta(old: &[u8], new: &[u8], params: Params) -> Result<Vec<u8>, DiffError> {
    if old.len() as u64 > MAX_IMAGE || new.len() as u64 > MAX_IMAGE {
        return Err(EncodeError::TooLarge(old.len().max(new.len()) as u64).into());
    }
    // Index the source on a second thread while the matcher runs.
    let (segs, index) = std::thread::scope(|s| {
        let h = s.spawn(|| delta::SourceIndex::new(old));
        let segs = find_segments(old, new);
        (segs, h.join())
    });
    let segs = segs?;
    match index {
        Ok(index) => Ok(delta::encode_indexed(old, new, &segs, params, &index)?),
        Err(_) => Ok(delta::encode(old, new, &segs, params)?),
    }
}
