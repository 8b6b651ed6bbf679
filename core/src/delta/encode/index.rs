//! The source index: the old image's suffix array, shared by the match search and the
//! encoder's source matches in literal regions.

use super::*;

/// The source's suffix array (build it with [`SourceIndex::new`]): the match search
/// ([`crate::diff::find_segments_indexed`]) and the encoder's source matches in literal
/// regions ([`encode_indexed`]) both use it.
#[derive(Debug)]
pub struct SourceIndex<'a> {
    sa: crate::suffix::Index<'a>,
}

impl<'a> SourceIndex<'a> {
    /// Index `old` (at most [`crate::diff::MAX_IMAGE`] bytes; longer sources are refused by
    /// every caller before this).
    pub fn new(old: &'a [u8]) -> Self {
        Self {
            sa: crate::suffix::Index::new(old),
        }
    }

    /// The index of `old` for coding `new` against it: the stretches of `new` equal to
    /// stretches of `old` are found by hashing first, and the old bytes they account for are not
    /// sorted (faster and smaller on near-identical images; the match search takes those
    /// stretches from the anchors). Refused like [`SourceIndex::new`].
    pub fn for_pair(old: &'a [u8], new: &[u8]) -> Self {
        Self {
            sa: crate::suffix::Index::for_pair(old, new),
        }
    }

    /// The indexed source.
    pub fn source(&self) -> &'a [u8] {
        self.sa.s
    }

    pub(crate) fn suffixes(&self) -> &crate::suffix::Index<'a> {
        &self.sa
    }

    /// Refuse an index of another image than `old`.
    pub(super) fn check_source(&self, old: &[u8]) -> Result<(), EncodeError> {
        if self.sa.s.as_ptr() != old.as_ptr() || self.sa.s.len() != old.len() {
            return Err(EncodeError::BadSegments("source index of another image"));
        }
        Ok(())
    }

    /// Best `(offset from cursor, len)` for `new[pos..pos+max]` by bits saved: one on the
    /// cursor's diagonal or at the last offset, or (if `deep`) the longest match anywhere in
    /// the source.
    pub(super) fn find(
        &self,
        new: &[u8],
        pos: usize,
        max: usize,
        cursor: u64,
        last_off: i64,
        deep: bool,
    ) -> Option<(i64, u32)> {
        let old = self.sa.s;
        let max = max.min(MAX_MATCH).min(new.len().saturating_sub(pos));
        let common = |a: usize| {
            let mut l = 0;
            while l < max && a + l < old.len() && old[a + l] == new[pos + l] {
                l += 1;
            }
            l
        };
        let cost = |off: i64| {
            if off == last_off {
                6
            } else {
                12 + (64 - off.unsigned_abs().leading_zeros()) as i64
            }
        };
        let mut best: Option<(i64, u32)> = None;
        let mut best_score = 0;
        for off in [0, last_off] {
            let at = cursor as i64 + off;
            if at >= 0 && (at as usize) < old.len() {
                let l = common(at as usize);
                let score = l as i64 * 8 - cost(off);
                if l >= MIN_MATCH as usize && score > best_score {
                    best_score = score;
                    best = Some((off, l as u32));
                }
            }
        }
        // Matches under 4 bytes never pay for an offset.
        if !deep {
            return best;
        }
        if let Some(r) = self.sa.search_lcp4(&new[pos..pos + max]) {
            let l = r.len().min(max);
            let off = r.start as i64 - cursor as i64;
            let score = l as i64 * 8 - cost(off);
            if score > best_score {
                best = Some((off, l as u32));
            }
        }
        best
    }
}
