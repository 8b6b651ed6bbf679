//! The coder: planned controls into a block's bytes through the context model and the
//! range coder.

use super::*;

/// Codes planned controls into a block.
pub(super) struct Coder<'a> {
    pub(super) old: &'a [u8],
    pub(super) new: &'a [u8],
    pub(super) rc: RangeEncoder,
    pub(super) model: Box<Model<MAX_LIT_TABLES, { 1 << MAX_PTR_LOG2 }, { 1 << MAX_HT_LOG2 }>>,
    pub(super) params: Params,
    pub(super) want_stats: bool,
    pub(super) pos: u64,
    pub(super) cur_src: u64,
    pub(super) src_start: u64,
}

impl<'a> Coder<'a> {
    pub(super) fn new(old: &'a [u8], new: &'a [u8], params: Params, want_stats: bool) -> Self {
        Self {
            old,
            new,
            rc: RangeEncoder::new(),
            model: Box::new(Model::new(params.lc, params.lp)),
            params,
            want_stats,
            pos: 0,
            cur_src: 0,
            src_start: 0,
        }
    }

    /// Start a block at target `start` with the source cursor at `src_start`.
    pub(super) fn begin(&mut self, start: u64, src_start: u64) {
        self.rc = RangeEncoder::new();
        if self.want_stats {
            self.rc.stats = Some([0.0; 4]);
        }
        self.model.reset(
            self.params.lc,
            self.params.lp,
            self.params.ptr_log2,
            self.params.ht_log2,
        );
        self.pos = start;
        self.cur_src = src_start;
        self.src_start = src_start;
    }

    /// Code control `c`: its numbers, its difference run (the differences are read from the
    /// images, the difference matches come planned) and its literal items.
    pub(super) fn code(&mut self, c: &Planned) -> Result<(), EncodeError> {
        let (old, new) = (self.old, self.new);
        if c.add > 0 && c.add_old != self.cur_src {
            return Err(EncodeError::BadSegments("source cursor out of step"));
        }
        let (pos, cur_src) = (self.pos, self.cur_src);
        let run = (pos as usize, cur_src as usize, c.add as usize);
        let (Some(tgt), Some(src)) = (new.get(run.0..run.0 + run.2), old.get(run.1..run.1 + run.2))
        else {
            return Err(EncodeError::BadSegments("segment beyond an image"));
        };
        let rc = &mut self.rc;
        let model = &mut *self.model;
        let src_after = self.cur_src + u64::from(c.add);
        rc.cat = 0;
        model.add_len.encode(rc, c.add);
        model.copy_len.encode(rc, c.lit);
        model.encode_seek(rc, c.seek);
        model.encode_region(rc, c.lit, c.raw);
        let mut t = 0usize;
        let matches = self.params.window() > 0;
        let mut dms = c.dmatches.iter().peekable();
        model.ptr.begin(cur_src, pos);
        // Offset (in this run) of the next non-zero difference at or after `t`.
        let mut next_nz = 0usize;
        while t < run.2 {
            let here = run.0 + t;
            let o = src[t];
            let m = match dms.peek() {
                Some(m) if m.at as usize == t => dms.next(),
                Some(m) if (m.at as usize) < t => {
                    return Err(EncodeError::BadSegments(
                        "difference match planned inside another",
                    ))
                }
                _ => None,
            };
            let left = (run.2 - t) as u32;
            model.ahead = crate::delta::ptr::ahead(old, run.1 + t);
            if let Some(&DiffMatch { dist, len, .. }) = m {
                if !matches || tgt[t] == o || len > left {
                    return Err(EncodeError::BadSegments("difference match out of place"));
                }
                model.encode_diff(rc, here as u64, o, tgt[t], true, true, left, false);
                model.encode_diff_match(rc, dist, len);
                for q in t..t + len as usize {
                    model.copied_diff(tgt[q].wrapping_sub(src[q]), tgt[q]);
                }
                t += len as usize;
                continue;
            }
            next_nz = next_nz.max(t);
            while next_nz < run.2 && tgt[next_nz] == src[next_nz] {
                next_nz += 1;
            }
            let zero_ahead = left >= RUN_GROUP && next_nz >= t + RUN_GROUP as usize;
            model.encode_diff(rc, here as u64, o, tgt[t], matches, false, left, zero_ahead);
            t += 1;
            // An accepted all-zero group: its other positions cost nothing.
            let k = model.run_pending();
            if k > 0 {
                model.skip_run(&src[t..t + k]);
                t += k;
            }
        }
        if dms.next().is_some() {
            return Err(EncodeError::BadSegments("difference match beyond its run"));
        }
        let mut i = (pos + u64::from(c.add)) as usize;
        rc.cat = 3;
        for item in &c.items {
            match *item {
                Item::Lit => {
                    model.encode_is_match(rc, false);
                    model.encode_lit(rc, i as u64, new[i]);
                }
                Item::Target(d, l) => {
                    model.encode_is_match(rc, true);
                    model.encode_match(rc, d, l);
                    model.after_match(&new[i..i + l as usize]);
                }
                Item::Source(off, l) => {
                    model.encode_is_match(rc, true);
                    model.encode_source_match(rc, off, l);
                    model.after_match(&new[i..i + l as usize]);
                }
            }
            i += item.len();
        }
        self.pos = pos + u64::from(c.add) + u64::from(c.lit);
        self.cur_src = (src_after as i64 + c.seek) as u64;
        Ok(())
    }

    /// Finish the block: its header and bytes go to `out`, its bit counts to `stats`.
    pub(super) fn end(
        &mut self,
        out: &mut Vec<u8>,
        stats: Option<&mut [f64; 4]>,
    ) -> Result<(), EncodeError> {
        if let (Some(dst), Some(src)) = (stats, self.rc.stats) {
            for (d, s) in dst.iter_mut().zip(src) {
                *d += s;
            }
        }
        let bytes = std::mem::replace(&mut self.rc, RangeEncoder::new()).finish();
        let len =
            u32::try_from(bytes.len()).map_err(|_| EncodeError::TooLarge(bytes.len() as u64))?;
        let mut head = [0u8; crate::delta::BLOCK_HEADER_LEN];
        let n = crate::delta::put_leb128(&mut head, u64::from(len));
        let n = n + crate::delta::put_leb128(&mut head[n..], self.src_start);
        out.extend_from_slice(&head[..n]);
        out.extend_from_slice(&bytes);
        Ok(())
    }
}
