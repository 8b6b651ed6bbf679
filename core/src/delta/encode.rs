//! BSD3 encoder (host side): turns a list of segments (from the matcher) into blocks.

use super::model::{Model, MIN_MATCH, RUN_GROUP};
use super::{Params, StreamHeader, MAX_HT_LOG2, MAX_LIT_TABLES, MAX_PTR_LOG2};
use crate::range_coder::RangeEncoder;

/// One piece of the target, in target order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment {
    /// `len` target bytes = source bytes at `old..old+len` plus coded differences.
    Add {
        /// Length in bytes.
        len: u64,
        /// Source offset.
        old: u64,
    },
    /// `len` target bytes coded as literals.
    Lit {
        /// Length in bytes.
        len: u64,
    },
}

impl Segment {
    fn len(&self) -> u64 {
        match *self {
            Segment::Add { len, .. } | Segment::Lit { len } => len,
        }
    }

    /// Refuse source bytes beyond `old`.
    fn check_source(&self, old: &[u8]) -> Result<(), EncodeError> {
        match *self {
            Segment::Add { len, old: o }
                if o.checked_add(len).is_none_or(|e| e > old.len() as u64) =>
            {
                Err(EncodeError::BadSegments("segment beyond the source"))
            }
            _ => Ok(()),
        }
    }
}

/// Why a stream could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// Image larger than the format allows.
    #[error("image of {0} bytes is larger than the delta format allows (4 GiB - 1)")]
    TooLarge(u64),
    /// Parameters out of range.
    #[error(transparent)]
    Params(#[from] super::DeltaError),
    /// The segments do not describe the target.
    #[error("internal error: {0}")]
    BadSegments(&'static str),
    /// The caller's stop flag was set.
    #[error("cancelled")]
    Cancelled,
}

/// Hash-table size for an input of `len` bytes: about one bucket per 8 bytes, 2^16 .. 2^22
/// (one per byte was no smaller on the corpus: +25 bytes in 4.97 MB, but its table was the
/// largest allocation of a one-block pack, 4 MiB for 0.5 MiB, and filling it took a fifth
/// of the time on near-identical images).
fn hash_bits(len: usize) -> u32 {
    (usize::BITS - len.leading_zeros())
        .saturating_sub(3)
        .clamp(16, 22)
}
const NONE: u32 = u32::MAX;
const CHAIN_DEPTH: usize = 48;
/// How far back the encoder looks for target-history matches (the format allows any distance).
const LZ_WINDOW: usize = 16 << 20;
/// Hash-chain depth: thorough up to 8 MiB, lighter above (bounded create time).
fn chain_depth(len: usize) -> usize {
    if len > 8 << 20 {
        16
    } else {
        CHAIN_DEPTH
    }
}

/// Longest match the encoder emits (a longer one continues as a repeat).
const MAX_MATCH: usize = 1024;
/// A match this long ends the search.
const GOOD_ENOUGH: usize = 256;

/// Hash-chain match finder over the target's own history (positions before the cursor).
struct Lz<'a> {
    new: &'a [u8],
    bits: u32,
    head: Vec<u32>,
    prev: Vec<u32>,
    inserted: usize,
}

impl<'a> Lz<'a> {
    fn new(new: &'a [u8]) -> Self {
        Self {
            new,
            bits: hash_bits(new.len().min(LZ_WINDOW)),
            head: vec![NONE; 1 << hash_bits(new.len().min(LZ_WINDOW))],
            prev: vec![NONE; new.len().min(LZ_WINDOW)],
            inserted: 0,
        }
    }

    fn hash(b: &[u8], bits: u32) -> usize {
        let v = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        (v.wrapping_mul(0x9E37_79B1) >> (32 - bits)) as usize
    }

    fn insert_upto(&mut self, pos: usize) {
        // Only the last LZ_WINDOW bytes are searched: skip what lies before them.
        self.inserted = self.inserted.max(pos.saturating_sub(LZ_WINDOW));
        let lim = pos.min(self.new.len().saturating_sub(3));
        while self.inserted < lim {
            let i = self.inserted;
            let h = Self::hash(&self.new[i..i + 4], self.bits);
            self.prev[i % LZ_WINDOW] = self.head[h];
            self.head[h] = i as u32;
            self.inserted += 1;
        }
    }

    fn common(&self, a: usize, b: usize, max: usize) -> usize {
        let n = self.new;
        let max = max.min(MAX_MATCH);
        let mut l = 0;
        while l < max && n[a + l] == n[b + l] {
            l += 1;
        }
        l
    }

    /// Best `(dist, len, score)` at `pos` for at most `max` bytes.
    fn find(&mut self, pos: usize, max: usize, rep0: u32, depth: usize) -> Option<(u32, u32, i64)> {
        if max < MIN_MATCH as usize {
            return None;
        }
        self.insert_upto(pos);
        let mut best: Option<(u32, u32, i64)> = None;
        let mut best_score = 0i64;
        if rep0 > 0 && rep0 as usize <= pos {
            let l = self.common(pos - rep0 as usize, pos, max);
            if l >= MIN_MATCH as usize {
                best_score = l as i64 * 8 - 4;
                best = Some((rep0, l as u32, best_score));
            }
        }
        if pos + 4 <= self.new.len() && max >= 3 {
            let mut c = self.head[Self::hash(&self.new[pos..pos + 4], self.bits)];
            let mut depth = depth;
            while c != NONE && depth > 0 {
                let cand = c as usize;
                if cand >= pos || pos - cand > LZ_WINDOW {
                    break; // a stale ring entry, or beyond the window
                }
                let dist = pos - cand;
                // Quick reject: a candidate that differs at the best length cannot be longer.
                let bl = best.map_or(0, |b| b.1 as usize);
                if bl > 0 && bl < max && self.new[cand + bl] != self.new[pos + bl] {
                    c = self.prev[cand % LZ_WINDOW];
                    depth -= 1;
                    continue;
                }
                let l = self.common(cand, pos, max);
                let min_len = if dist < 1 << 10 {
                    3
                } else if dist < 1 << 16 {
                    4
                } else {
                    5
                };
                if l >= min_len {
                    // Bits saved over literals, minus an estimate of the distance's cost.
                    let score = l as i64 * 8 - 8 - (64 - (dist as u64).leading_zeros()) as i64;
                    if score > best_score {
                        best_score = score;
                        best = Some((dist as u32, l as u32, score));
                    }
                }
                if l == max || l >= GOOD_ENOUGH {
                    break;
                }
                c = self.prev[cand % LZ_WINDOW];
                depth -= 1;
            }
        }
        best
    }
}

/// Matches inside a block's difference stream (within the decoder's window). The stream
/// `d` is passed to each call: it grows while the block is coded.
struct DiffLz {
    head: Vec<u32>,
    prev: Vec<u32>,
    inserted: usize,
    window: usize,
}

const DIFF_HASH_BITS: u32 = 14;

impl DiffLz {
    fn new(window: usize) -> Self {
        Self {
            head: vec![NONE; 1 << DIFF_HASH_BITS],
            prev: Vec::new(),
            inserted: 0,
            window,
        }
    }

    fn reset(&mut self) {
        self.head.fill(NONE);
        self.prev.clear();
        self.inserted = 0;
    }

    fn key(d: &[u8], i: usize) -> Option<usize> {
        let b = d.get(i..i + 4)?;
        if b == [0, 0, 0, 0] {
            return None;
        }
        let v = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        Some((v.wrapping_mul(0x9E37_79B1) >> (32 - DIFF_HASH_BITS)) as usize)
    }

    fn insert_upto(&mut self, d: &[u8], j: usize) {
        if self.prev.len() < j {
            self.prev.resize(j, NONE);
        }
        while self.inserted < j {
            let i = self.inserted;
            if let Some(h) = Self::key(d, i) {
                self.prev[i] = self.head[h];
                self.head[h] = i as u32;
            }
            self.inserted += 1;
        }
    }

    /// Best `(dist, len)` at `j` for at most `max` bytes, scored in 1/16 bits saved over
    /// coding the differences one by one.
    fn find(&mut self, d: &[u8], j: usize, max: usize, rep0: u32) -> Option<(u32, u32)> {
        if max < MIN_MATCH as usize || self.window == 0 {
            return None;
        }
        self.insert_upto(d, j);
        let est = |x: u8| if x == 0 { 2i64 } else { 112 };
        let bits = |v: u64| i64::from(64 - v.leading_zeros() as u8);
        let max = max.min(MAX_MATCH);
        let eval = |c: usize| {
            let mut l = 0;
            let mut gain = 0i64;
            while l < max && d[c + l] == d[j + l] {
                gain += est(d[j + l]);
                l += 1;
            }
            (l, gain)
        };
        let mut best: Option<(u32, u32)> = None;
        // Accept a match only if it saves about 12 bits over coding its bytes one by one.
        let mut best_score = 192i64;
        let lim = j.min(self.window);
        if rep0 > 0 && rep0 as usize <= lim {
            let (l, gain) = eval(j - rep0 as usize);
            let score = gain - 16 * (3 + bits(l as u64));
            if l >= MIN_MATCH as usize && score > best_score {
                best_score = score;
                best = Some((rep0, l as u32));
            }
        }
        if let Some(h) = Self::key(d, j) {
            let mut c = self.head[h];
            let mut depth = 32;
            while c != NONE && depth > 0 {
                let cand = c as usize;
                let dist = j - cand;
                if dist > lim {
                    break;
                }
                let (l, gain) = eval(cand);
                let score = gain - 16 * (5 + bits(dist as u64) + bits(l as u64));
                if l >= MIN_MATCH as usize && score > best_score {
                    best_score = score;
                    best = Some((dist as u32, l as u32));
                }
                c = self.prev[cand];
                depth -= 1;
            }
        }
        best
    }
}

/// The source's suffix array (build it with [`SourceIndex::new`]): the match search
/// ([`crate::diff::find_segments_indexed`]) and the encoder's source matches in literal
/// regions ([`encode_indexed`]) both use it.
#[derive(Debug)]
pub struct SourceIndex<'a> {
    sa: crate::sadiff::Index<'a>,
}

impl<'a> SourceIndex<'a> {
    /// Index `old` (at most [`crate::diff::MAX_IMAGE`] bytes; longer sources are refused by
    /// every caller before this).
    pub fn new(old: &'a [u8]) -> Self {
        Self {
            sa: crate::sadiff::Index::new(old),
        }
    }

    /// The indexed source.
    pub fn source(&self) -> &'a [u8] {
        self.sa.s
    }

    pub(crate) fn suffixes(&self) -> &crate::sadiff::Index<'a> {
        &self.sa
    }

    /// Refuse an index of another image than `old`.
    fn check_source(&self, old: &[u8]) -> Result<(), EncodeError> {
        if self.sa.s.as_ptr() != old.as_ptr() || self.sa.s.len() != old.len() {
            return Err(EncodeError::BadSegments("source index of another image"));
        }
        Ok(())
    }

    /// Best `(offset from cursor, len, score)` for `new[pos..pos+max]`: the longest match
    /// anywhere in the source, or one on the cursor's diagonal or at the last offset.
    fn find(
        &self,
        new: &[u8],
        pos: usize,
        max: usize,
        cursor: u64,
        last_off: i64,
    ) -> Option<(i64, u32, i64)> {
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
        let mut best: Option<(i64, u32, i64)> = None;
        let mut best_score = 0;
        for off in [0, last_off] {
            let at = cursor as i64 + off;
            if at >= 0 && (at as usize) < old.len() {
                let l = common(at as usize);
                let score = l as i64 * 8 - cost(off);
                if l >= MIN_MATCH as usize && score > best_score {
                    best_score = score;
                    best = Some((off, l as u32, score));
                }
            }
        }
        if max >= 4 {
            let r = self.sa.search_lcp(&new[pos..pos + max]);
            let l = r.len().min(max);
            if l >= 4 {
                let off = r.start as i64 - cursor as i64;
                let score = l as i64 * 8 - cost(off);
                if score > best_score {
                    best = Some((off, l as u32, score));
                }
            }
        }
        best
    }
}

/// One planned item of a literal region.
#[derive(Debug, Clone, Copy)]
enum Item {
    Lit,
    Target(u32, u32),
    Source(i64, u32),
}

impl Item {
    fn len(&self) -> usize {
        match *self {
            Item::Lit => 1,
            Item::Target(_, l) | Item::Source(_, l) => l as usize,
        }
    }
}

/// Should a literal region's literals be coded raw? Yes when they look incompressible:
/// order-0 entropy above 7.85 bits per byte over at least 256 literals (the adaptive coder
/// spends about 8.07 bits on such bytes).
fn raw_literals(items: &[Item], new: &[u8], start: usize) -> bool {
    let mut counts = [0u32; 256];
    let mut n = 0u32;
    let mut i = start;
    for it in items {
        if let Item::Lit = it {
            counts[new[i] as usize] += 1;
            n += 1;
        }
        i += it.len();
    }
    if n < 256 {
        return false;
    }
    let nf = f64::from(n);
    let h: f64 = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / nf;
            -p * p.log2()
        })
        .sum();
    h > 7.85
}

/// Parser state that the choice of items depends on.
#[derive(Debug, Clone, Copy)]
struct ParseState {
    /// Last target-match distance.
    rep0: u32,
    /// Source position on the diagonal at the current target position.
    diag: u64,
    /// Last source-match offset.
    last_off: i64,
    /// Hash-chain depth to search.
    depth: usize,
}

/// A search's best item and its score, if any.
type Found = Option<(Item, i64)>;

/// The best item at `i` (target history or source), with its score in bits saved.
fn best_at(lz: &mut Lz<'_>, src: &SourceIndex<'_>, i: usize, end: usize, st: ParseState) -> Found {
    let t = lz
        .find(i, end - i, st.rep0, st.depth)
        .map(|(d, l, sc)| (Item::Target(d, l), sc));
    let s = src
        .find(lz.new, i, end - i, st.diag, st.last_off)
        .map(|(o, l, sc)| (Item::Source(o, l), sc));
    match (t, s) {
        (Some(a), Some(b)) => Some(if b.1 > a.1 { b } else { a }),
        (a, b) => a.or(b),
    }
}

/// Choose the items of the literal region `new[start..end]`: literals, target-history
/// matches and source matches (greedy with one step of lazy evaluation). `st.diag` is the
/// source cursor at `start`.
fn plan(
    lz: &mut Lz<'_>,
    src: &SourceIndex<'_>,
    start: usize,
    end: usize,
    mut st: ParseState,
) -> Vec<Item> {
    let cursor = st.diag;
    let mut items = Vec::new();
    let mut i = start;
    let mut literal_run = 0usize;
    // The lazy look at `i + 1` (position, depth, result): when a literal is taken there it
    // is the next position's search.
    let mut ahead: Option<(usize, usize, Found)> = None;
    while i < end {
        st.diag = cursor + (i - start) as u64;
        // Inside a long run of literals (incompressible data) search shallowly, and only at
        // every `step`-th position.
        st.depth = if literal_run >= 16 {
            4
        } else {
            chain_depth(lz.new.len())
        };
        let step = (literal_run / 64).clamp(1, 8);
        if step > 1 && !literal_run.is_multiple_of(step) {
            items.push(Item::Lit);
            i += 1;
            literal_run += 1;
            continue;
        }
        let best = match ahead.take() {
            Some((at, depth, found)) if at == i && depth == st.depth => found,
            _ => best_at(lz, src, i, end, st),
        };
        let take = match best {
            Some((it, sc)) if it.len() < end - i && it.len() < 32 => {
                let next_st = ParseState {
                    diag: st.diag + 1,
                    ..st
                };
                let next = best_at(lz, src, i + 1, end, next_st);
                ahead = Some((i + 1, st.depth, next));
                !matches!(next, Some((_, sc2)) if sc2 > sc + 8)
            }
            Some(_) => true,
            None => false,
        };
        match best {
            Some((it, _)) if take => {
                match it {
                    Item::Target(d, _) => st.rep0 = d,
                    Item::Source(off, _) => st.last_off = off,
                    Item::Lit => {}
                }
                i += it.len();
                items.push(it);
                literal_run = 0;
            }
            _ => {
                items.push(Item::Lit);
                i += 1;
                literal_run += 1;
            }
        }
    }
    items
}

#[derive(Debug, Clone, Copy)]
struct Control {
    add: u32,
    add_old: u64,
    lit: u32,
}

/// Encode `new` against `old` following `segments` (which must cover `new` exactly and only
/// reference bytes inside `old`).
pub fn encode(
    old: &[u8],
    new: &[u8],
    segments: &[Segment],
    params: Params,
) -> Result<Vec<u8>, EncodeError> {
    encode_inner(
        old,
        new,
        segments,
        params,
        None,
        None,
        threads(),
        &crate::diff::NEVER,
    )
}

/// [`encode`] with a source index built beforehand (it must index `old`).
pub fn encode_indexed(
    old: &[u8],
    new: &[u8],
    segments: &[Segment],
    params: Params,
    index: &SourceIndex<'_>,
) -> Result<Vec<u8>, EncodeError> {
    encode_indexed_until(old, new, segments, params, index, &crate::diff::NEVER)
}

/// [`encode_indexed`] that ends with [`EncodeError::Cancelled`] at the next block once
/// `stop` is set.
pub fn encode_indexed_until(
    old: &[u8],
    new: &[u8],
    segments: &[Segment],
    params: Params,
    index: &SourceIndex<'_>,
    stop: &core::sync::atomic::AtomicBool,
) -> Result<Vec<u8>, EncodeError> {
    index.check_source(old)?;
    encode_inner(
        old,
        new,
        segments,
        params,
        None,
        Some(index),
        threads(),
        stop,
    )
}

/// [`encode`], also returning the coded bits spent on controls, difference flags,
/// difference values and literals (for analysis).
pub fn encode_with_stats(
    old: &[u8],
    new: &[u8],
    segments: &[Segment],
    params: Params,
) -> Result<(Vec<u8>, [f64; 4]), EncodeError> {
    let mut st = [0.0; 4];
    let out = encode_inner(
        old,
        new,
        segments,
        params,
        Some(&mut st),
        None,
        threads(),
        &crate::diff::NEVER,
    )?;
    Ok((out, st))
}

/// The stream header for coding `new` against `old`, if the format can hold them.
fn stream_header(old: &[u8], new: &[u8], params: Params) -> Result<StreamHeader, EncodeError> {
    params.validate()?;
    Ok(StreamHeader {
        params,
        target_size: u32::try_from(new.len())
            .map_err(|_| EncodeError::TooLarge(new.len() as u64))?,
        source_size: u32::try_from(old.len())
            .map_err(|_| EncodeError::TooLarge(old.len() as u64))?,
    })
}

/// Threads to code blocks on: one per core.
fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[allow(clippy::too_many_arguments)]
fn encode_inner(
    old: &[u8],
    new: &[u8],
    segments: &[Segment],
    params: Params,
    mut stats: Option<&mut [f64; 4]>,
    index: Option<&SourceIndex<'_>>,
    threads: usize,
    stop: &core::sync::atomic::AtomicBool,
) -> Result<Vec<u8>, EncodeError> {
    let header = stream_header(old, new, params)?;
    let total = segments
        .iter()
        .try_fold(0u64, |t, s| t.checked_add(s.len()))
        .filter(|&t| t == new.len() as u64);
    if total.is_none() {
        return Err(EncodeError::BadSegments("segments do not cover the target"));
    }
    for s in segments {
        s.check_source(old)?;
    }
    let built;
    let src = match index {
        Some(i) => i,
        None => {
            built = SourceIndex::new(old);
            &built
        }
    };
    let blocks = cut_blocks(segments, new.len() as u64, params.block_size())?;
    // Blocks code independently; the only state they share is the target-history index,
    // which depends on positions alone. So contiguous groups of blocks are coded on separate
    // threads, each with its own index primed on the history before its first block: the
    // bytes are the same as coding them one after another.
    let threads = threads.min(blocks.len()).max(1);
    let per = blocks.len().div_ceil(threads);
    let want_stats = stats.is_some();
    let coded: Vec<Result<Coded, EncodeError>> = if threads == 1 {
        vec![encode_group(
            old, new, params, src, &blocks, want_stats, stop,
        )]
    } else {
        std::thread::scope(|sc| {
            let hs: Vec<_> = blocks
                .chunks(per)
                .map(|g| sc.spawn(move || encode_group(old, new, params, src, g, want_stats, stop)))
                .collect();
            hs.into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or(Err(EncodeError::BadSegments("encoder thread failed")))
                })
                .collect()
        })
    };
    let mut out = header.to_bytes()[..header.encoded_len()].to_vec();
    for g in coded {
        let (bytes, st) = g?;
        out.extend_from_slice(&bytes);
        if let Some(dst) = stats.as_deref_mut() {
            for (d, s) in dst.iter_mut().zip(st) {
                *d += s;
            }
        }
    }
    Ok(out)
}

/// A group's coded blocks and the bits spent per category.
type Coded = (Vec<u8>, [f64; 4]);

/// One block to code: its first target position and its controls.
struct Block {
    start: u64,
    ctrls: Vec<Control>,
}

/// Cut `segments` at block boundaries into each block's controls.
fn cut_blocks(segments: &[Segment], len: u64, bs: u64) -> Result<Vec<Block>, EncodeError> {
    let mut blocks = Vec::new();
    let mut seg_iter = segments.iter().copied().filter(|s| s.len() > 0);
    let mut pending: Option<Segment> = None;
    let mut pos = 0u64;
    while pos < len {
        let end = (pos + bs).min(len);
        let mut build = ControlBuilder::default();
        let mut ctrls = Vec::new();
        let mut at = pos;
        while at < end {
            let Some(seg) = pending.take().or_else(|| seg_iter.next()) else {
                return Err(EncodeError::BadSegments("segments end early"));
            };
            let (head, tail) = split(seg, end - at);
            at += head.len();
            build.push(head, &mut ctrls)?;
            pending = tail;
        }
        build.finish(&mut ctrls)?;
        blocks.push(Block { start: pos, ctrls });
        pos = end;
    }
    Ok(blocks)
}

/// Code a contiguous group of blocks; returns their bytes and (with `want_stats`) the bits
/// spent per category.
fn encode_group(
    old: &[u8],
    new: &[u8],
    params: Params,
    src: &SourceIndex<'_>,
    blocks: &[Block],
    want_stats: bool,
    stop: &core::sync::atomic::AtomicBool,
) -> Result<Coded, EncodeError> {
    let mut lz = Lz::new(new);
    if let Some(b) = blocks.first() {
        lz.insert_upto(b.start as usize);
    }
    let mut planner = Planner::new(new, &mut lz, src);
    let mut coder = Coder::new(old, new, params, want_stats);
    let mut st = [0.0; 4];
    let mut out = Vec::new();
    for b in blocks {
        if stop.load(core::sync::atomic::Ordering::Relaxed) {
            return Err(EncodeError::Cancelled);
        }
        let ctrls = &b.ctrls;
        let src_start = ctrls.iter().find(|c| c.add > 0).map_or(0, |c| c.add_old);
        planner.begin();
        coder.begin(b.start, src_start);
        for c in ctrls {
            coder.extend_diffs(c)?;
        }
        let mut cur_src = src_start;
        let mut pos = b.start;
        for (k, c) in ctrls.iter().enumerate() {
            let next = ctrls
                .get(k + 1..)
                .and_then(|r| r.iter().find(|n| n.add > 0));
            let p = planner.control(c, next, pos, cur_src);
            cur_src = (cur_src + u64::from(c.add)).wrapping_add(p.seek as u64);
            pos += u64::from(c.add) + u64::from(c.lit);
            coder.code(&p)?;
        }
        coder.end(&mut out, want_stats.then_some(&mut st))?;
    }
    Ok((out, st))
}

/// Code a target of at most one block while its segments are still being found: this
/// thread plans each control's literal region as its segments arrive, a second thread
/// codes. The bytes equal [`encode`]'s for the same segments. `segments` must describe
/// `new` exactly against `old`; their errors end the coding and are returned.
pub(crate) fn encode_streamed<E, I>(
    old: &[u8],
    new: &[u8],
    params: Params,
    index: &SourceIndex<'_>,
    segments: I,
) -> Result<Vec<u8>, E>
where
    E: From<EncodeError> + Send,
    I: Iterator<Item = Result<Segment, E>>,
{
    let header = stream_header(old, new, params)?;
    if new.len() as u64 > params.block_size() || new.is_empty() {
        return Err(EncodeError::BadSegments("streamed coding takes one block").into());
    }
    index.check_source(old)?;
    let src = index;
    let mut lz = Lz::new(new);
    let mut planner = Planner::new(new, &mut lz, src);
    let (tx, rx) = std::sync::mpsc::sync_channel::<Msg>(256);
    std::thread::scope(|sc| {
        let coding = sc.spawn(move || -> Result<Vec<u8>, EncodeError> {
            let mut coder = Coder::new(old, new, params, false);
            let mut out = header.to_bytes()[..header.encoded_len()].to_vec();
            for msg in rx {
                match msg {
                    Msg::Begin(first, src_start) => {
                        coder.begin(0, src_start);
                        coder.extend_diffs(&first)?;
                    }
                    Msg::Code(p, next) => {
                        if let Some(n) = next {
                            coder.extend_diffs(&n)?;
                        }
                        coder.code(&p)?;
                    }
                }
            }
            coder.end(&mut out, None)?;
            Ok(out)
        });
        // Segments -> controls (as `cut_blocks` makes them), each sent once the next control
        // (whose source offset its seek needs) is known.
        let produce = || -> Result<(), E> {
            let mut build = ControlBuilder::default();
            let mut ready: Vec<Control> = Vec::new();
            let mut seen = 0u64;
            let mut started = false;
            let (mut pos, mut cur_src) = (0u64, 0u64);
            let mut send =
                |c: Control, next: Option<&Control>, pos: &mut u64, cur_src: &mut u64| -> bool {
                    let p = planner.control(&c, next, *pos, *cur_src);
                    *cur_src = (*cur_src + u64::from(c.add)).wrapping_add(p.seek as u64);
                    *pos += u64::from(c.add) + u64::from(c.lit);
                    tx.send(Msg::Code(p, next.copied())).is_ok()
                };
            let mut segs = segments;
            loop {
                let seg = segs.next().transpose()?;
                if let Some(sg) = seg {
                    let len = sg.len();
                    sg.check_source(old)?;
                    seen += len;
                    if seen > new.len() as u64 {
                        return Err(
                            EncodeError::BadSegments("segments do not cover the target").into()
                        );
                    }
                    if len == 0 {
                        continue;
                    }
                    build.push(sg, &mut ready)?;
                } else {
                    if seen != new.len() as u64 {
                        return Err(
                            EncodeError::BadSegments("segments do not cover the target").into()
                        );
                    }
                    build.finish(&mut ready)?;
                }
                // Send every control whose next control with source bytes is known (only the
                // first control can lack source bytes); at the end, all.
                let at_end = seg.is_none();
                while let Some(&first) = ready.first() {
                    // Only the first control can lack source bytes, so the next control
                    // is the one the seek needs, and its differences join the stream next.
                    let next = ready.get(1).copied();
                    if next.is_none() && !at_end {
                        break;
                    }
                    if !started {
                        let with_src = if first.add > 0 { Some(first) } else { next };
                        cur_src = with_src.map_or(0, |c| c.add_old);
                        if tx.send(Msg::Begin(first, cur_src)).is_err() {
                            return Ok(());
                        }
                        started = true;
                    }
                    ready.remove(0);
                    if !send(first, next.as_ref(), &mut pos, &mut cur_src) {
                        return Ok(());
                    }
                }
                if at_end {
                    return Ok(());
                }
            }
        };
        let produced = produce();
        drop(tx);
        let coded = coding
            .join()
            .unwrap_or(Err(EncodeError::BadSegments("encoder thread failed")));
        produced?;
        Ok(coded?)
    })
}

/// What the planning thread sends the coding thread.
enum Msg {
    /// The block starts: its first control (its differences start the difference stream)
    /// and where the source cursor starts.
    Begin(Control, u64),
    /// A planned control, and the next control (its differences join the block's difference
    /// stream before this control is coded).
    Code(Planned, Option<Control>),
}

/// Merges segments into controls: an optional difference run (neighbouring runs that
/// continue each other in the source join) followed by an optional literal region (all
/// literal segments up to the next run join).
#[derive(Default)]
struct ControlBuilder {
    add: Option<(u64, u64)>,
    lit: u64,
}

impl ControlBuilder {
    fn push(&mut self, seg: Segment, out: &mut Vec<Control>) -> Result<(), EncodeError> {
        match seg {
            Segment::Lit { len } => self.lit += len,
            Segment::Add { len, old } => match self.add {
                Some((l, o)) if self.lit == 0 && o + l == old => self.add = Some((l + len, o)),
                None if self.lit == 0 => self.add = Some((len, old)),
                _ => {
                    self.finish(out)?;
                    self.add = Some((len, old));
                }
            },
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<Control>) -> Result<(), EncodeError> {
        let too_big = || EncodeError::BadSegments("segment longer than a block");
        if self.add.is_some() || self.lit > 0 {
            let (add, add_old) = self.add.take().unwrap_or((0, 0));
            out.push(Control {
                add: u32::try_from(add).map_err(|_| too_big())?,
                add_old,
                lit: u32::try_from(self.lit).map_err(|_| too_big())?,
            });
            self.lit = 0;
        }
        Ok(())
    }
}

fn split(seg: Segment, room: u64) -> (Segment, Option<Segment>) {
    if seg.len() <= room {
        return (seg, None);
    }
    match seg {
        Segment::Add { len, old } => (
            Segment::Add { len: room, old },
            Some(Segment::Add {
                len: len - room,
                old: old + room,
            }),
        ),
        Segment::Lit { len } => (
            Segment::Lit { len: room },
            Some(Segment::Lit { len: len - room }),
        ),
    }
}

/// A control with its literal region planned: what the coder needs.
struct Planned {
    add: u32,
    add_old: u64,
    lit: u32,
    seek: i64,
    items: Vec<Item>,
    raw: bool,
}

/// Plans literal regions; keeps the last target-match distance and source offset of the
/// block as the coder's model will have them.
struct Planner<'a, 'b> {
    new: &'a [u8],
    lz: &'b mut Lz<'a>,
    src: &'b SourceIndex<'a>,
    rep0: u32,
    last_soff: i64,
}

impl<'a, 'b> Planner<'a, 'b> {
    fn new(new: &'a [u8], lz: &'b mut Lz<'a>, src: &'b SourceIndex<'a>) -> Self {
        Self {
            new,
            lz,
            src,
            rep0: 0,
            last_soff: 0,
        }
    }

    /// A block starts: the model's distances start over.
    fn begin(&mut self) {
        self.rep0 = 0;
        self.last_soff = 0;
    }

    /// Plan control `c` starting at target `pos` with the source cursor at `cur_src`;
    /// `next` is the next control with source bytes (for the seek).
    fn control(&mut self, c: &Control, next: Option<&Control>, pos: u64, cur_src: u64) -> Planned {
        let after_add = cur_src + u64::from(c.add);
        let lit_start = (pos + u64::from(c.add)) as usize;
        let st = ParseState {
            rep0: self.rep0,
            diag: after_add,
            last_off: self.last_soff,
            depth: CHAIN_DEPTH,
        };
        let items = plan(self.lz, self.src, lit_start, lit_start + c.lit as usize, st);
        for it in &items {
            match *it {
                Item::Target(d, _) => self.rep0 = d,
                Item::Source(off, _) => self.last_soff = off,
                Item::Lit => {}
            }
        }
        let raw = raw_literals(&items, self.new, lit_start);
        Planned {
            add: c.add,
            add_old: c.add_old,
            lit: c.lit,
            seek: next.map_or(0, |n| n.add_old as i64 - after_add as i64),
            items,
            raw,
        }
    }
}

/// Codes planned controls into a block.
struct Coder<'a> {
    old: &'a [u8],
    new: &'a [u8],
    rc: RangeEncoder,
    model: Box<Model<MAX_LIT_TABLES, { 1 << MAX_PTR_LOG2 }, { 1 << MAX_HT_LOG2 }>>,
    params: Params,
    want_stats: bool,
    /// The block's difference stream so far (one control ahead of the coding).
    dv: Vec<u8>,
    /// Target position whose difference `dv` gets next.
    dv_pos: u64,
    dlz: DiffLz,
    j: usize,
    next_nz: usize,
    pos: u64,
    cur_src: u64,
    src_start: u64,
}

impl<'a> Coder<'a> {
    fn new(old: &'a [u8], new: &'a [u8], params: Params, want_stats: bool) -> Self {
        Self {
            old,
            new,
            rc: RangeEncoder::new(),
            model: Box::new(Model::new(params.lc, params.lp)),
            params,
            want_stats,
            dv: Vec::new(),
            dv_pos: 0,
            dlz: DiffLz::new(params.window()),
            j: 0,
            next_nz: 0,
            pos: 0,
            cur_src: 0,
            src_start: 0,
        }
    }

    /// Start a block at target `start` with the source cursor at `src_start`.
    fn begin(&mut self, start: u64, src_start: u64) {
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
        self.dv.clear();
        self.dv_pos = start;
        self.dlz.reset();
        self.j = 0;
        self.next_nz = 0;
        self.pos = start;
        self.cur_src = src_start;
        self.src_start = src_start;
    }

    /// Append control `c`'s differences to the block's difference stream (controls in
    /// order, each once, before it or an earlier one is coded).
    fn extend_diffs(&mut self, c: &Control) -> Result<(), EncodeError> {
        let (p, o) = (self.dv_pos as usize, c.add_old as usize);
        let (Some(t), Some(s)) = (
            self.new.get(p..p + c.add as usize),
            self.old.get(o..o + c.add as usize),
        ) else {
            return Err(EncodeError::BadSegments("segment beyond an image"));
        };
        self.dv
            .extend(t.iter().zip(s).map(|(a, b)| a.wrapping_sub(*b)));
        self.dv_pos += u64::from(c.add) + u64::from(c.lit);
        Ok(())
    }

    fn code(&mut self, c: &Planned) -> Result<(), EncodeError> {
        let (old, new) = (self.old, self.new);
        if c.add > 0 && c.add_old != self.cur_src {
            return Err(EncodeError::BadSegments("source cursor out of step"));
        }
        if self.j + c.add as usize > self.dv.len() {
            return Err(EncodeError::BadSegments(
                "control coded before its differences",
            ));
        }
        let rc = &mut self.rc;
        let model = &mut *self.model;
        let dv = &self.dv;
        let src_after = self.cur_src + u64::from(c.add);
        rc.cat = 0;
        model.add_len.encode(rc, c.add);
        model.copy_len.encode(rc, c.lit);
        model.encode_seek(rc, c.seek);
        model.encode_region(rc, c.lit, c.raw);
        let mut t = 0u32;
        let matches = self.dlz.window > 0;
        let (pos, cur_src) = (self.pos, self.cur_src);
        model.ptr.begin(cur_src, pos);
        while t < c.add {
            let here = (pos + u64::from(t)) as usize;
            let o = old[(cur_src + u64::from(t)) as usize];
            let j = self.j;
            let m = if matches && dv[j] != 0 {
                self.dlz
                    .find(dv, j, (c.add - t) as usize, model.dmatch.rep0)
            } else {
                None
            };
            let left = c.add - t;
            model.ahead = super::ptr::ahead(old, (cur_src + u64::from(t)) as usize);
            if let Some((dist, len)) = m {
                model.encode_diff(rc, here as u64, o, new[here], true, true, left, false);
                model.encode_diff_match(rc, dist, len);
                for q in 0..len as usize {
                    model.copied_diff(dv[j + q], new[here + q]);
                }
                t += len;
                self.j += len as usize;
                continue;
            }
            // The next non-zero difference at or after `j` (moves forward only).
            self.next_nz = self.next_nz.max(j);
            while dv.get(self.next_nz).is_some_and(|&d| d == 0) {
                self.next_nz += 1;
            }
            let zero_ahead = left >= RUN_GROUP && self.next_nz >= j + RUN_GROUP as usize;
            model.encode_diff(
                rc,
                here as u64,
                o,
                new[here],
                matches,
                false,
                left,
                zero_ahead,
            );
            t += 1;
            self.j += 1;
            // An accepted all-zero group: its other positions cost nothing.
            let k = model.run_pending();
            if k > 0 {
                let from = (cur_src + u64::from(t)) as usize;
                model.skip_run(&old[from..from + k]);
                t += k as u32;
                self.j += k;
            }
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
    fn end(&mut self, out: &mut Vec<u8>, stats: Option<&mut [f64; 4]>) -> Result<(), EncodeError> {
        if let (Some(dst), Some(src)) = (stats, self.rc.stats) {
            for (d, s) in dst.iter_mut().zip(src) {
                *d += s;
            }
        }
        let bytes = std::mem::replace(&mut self.rc, RangeEncoder::new()).finish();
        let len =
            u32::try_from(bytes.len()).map_err(|_| EncodeError::TooLarge(bytes.len() as u64))?;
        let mut head = [0u8; super::BLOCK_HEADER_LEN];
        let n = super::put_leb128(&mut head, u64::from(len));
        let n = n + super::put_leb128(&mut head[n..], self.src_start);
        out.extend_from_slice(&head[..n]);
        out.extend_from_slice(&bytes);
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::testkit;

    /// The streamed one-block coder (planning on this thread, coding on another, segments
    /// taken as they come) gives the bytes of the two-step coder.
    #[test]
    fn streamed_gives_the_same_bytes() {
        let base = testkit::firmware(3, 60_000);
        let mut lit_first = vec![0xA5u8; 300];
        lit_first.extend_from_slice(&testkit::evolve(&base, 5));
        let cases: Vec<(Vec<u8>, Vec<u8>)> = vec![
            (base.clone(), testkit::evolve(&base, 4)),
            (base.clone(), lit_first),
            (base.clone(), base.clone()),
            (base.clone(), base[..5].to_vec()),
            (base[..100].to_vec(), testkit::firmware(9, 20_000)),
        ];
        for (k, (old, new)) in cases.iter().enumerate() {
            for params in [Params::BEST, Params::SMALL] {
                if new.len() as u64 > params.block_size() {
                    continue;
                }
                let segs = crate::diff::find_segments(old, new).unwrap();
                let want = encode(old, new, &segs, params).unwrap();
                let index = SourceIndex::new(old);
                let got = encode_streamed::<EncodeError, _>(
                    old,
                    new,
                    params,
                    &index,
                    segs.iter().map(|s| Ok(*s)),
                )
                .unwrap();
                assert!(want == got, "case {k}");
            }
        }
    }

    /// Bad segment streams end the streamed coder with an error, never a panic or a hang.
    #[test]
    fn streamed_refuses_bad_segments() {
        let old = testkit::firmware(3, 20_000);
        let new = testkit::evolve(&old, 4);
        let index = SourceIndex::new(&old);
        let run = |segs: Vec<Result<Segment, EncodeError>>| {
            encode_streamed::<EncodeError, _>(&old, &new, Params::BEST, &index, segs.into_iter())
        };
        let n = new.len() as u64;
        // Too short, too long, beyond the source.
        assert!(run(vec![Ok(Segment::Lit { len: n - 1 })]).is_err());
        assert!(run(vec![
            Ok(Segment::Lit { len: n }),
            Ok(Segment::Lit { len: 1 })
        ])
        .is_err());
        let beyond = Segment::Add {
            len: 100,
            old: old.len() as u64 - 50,
        };
        assert!(run(vec![Ok(beyond), Ok(Segment::Lit { len: n - 100 })]).is_err());
        // An error from the segment source is the result.
        let e = run(vec![
            Ok(Segment::Lit { len: 10 }),
            Err(EncodeError::BadSegments("from the matcher")),
        ]);
        assert_eq!(e, Err(EncodeError::BadSegments("from the matcher")));
        // Another image's index, or a target over one block.
        let other = SourceIndex::new(&new);
        let segs = [Ok(Segment::Lit { len: n })];
        assert!(encode_streamed::<EncodeError, _>(
            &old,
            &new,
            Params::BEST,
            &other,
            segs.into_iter()
        )
        .is_err());
        let big = vec![0u8; 70_000];
        let segs = [Ok(Segment::Lit { len: 70_000 })];
        assert!(encode_streamed::<EncodeError, _>(
            &old,
            &big,
            Params::SMALL,
            &index,
            segs.into_iter()
        )
        .is_err());
        // And a good stream works.
        assert!(run(vec![Ok(Segment::Lit { len: n })]).is_ok());
    }

    /// Coding block groups on threads gives the bytes of coding them in order, for any
    /// number of threads (including more than blocks), and the stats add up the same.
    #[test]
    fn threads_give_the_same_bytes() {
        let old = testkit::firmware(7, 300_000);
        let new = testkit::evolve(&old, 11);
        let segs = crate::diff::find_segments(&old, &new).unwrap();
        let params = Params {
            block_log2: 14,
            ..Params::BEST
        };
        let mut st1 = [0.0; 4];
        let one = encode_inner(
            &old,
            &new,
            &segs,
            params,
            Some(&mut st1),
            None,
            1,
            &crate::diff::NEVER,
        )
        .unwrap();
        assert!(one.len() > 1000);
        for t in [2, 3, 8, 64] {
            let mut st = [0.0; 4];
            let many = encode_inner(
                &old,
                &new,
                &segs,
                params,
                Some(&mut st),
                None,
                t,
                &crate::diff::NEVER,
            )
            .unwrap();
            assert!(one == many, "{t} threads");
            for (a, b) in st1.iter().zip(st) {
                assert!((a - b).abs() < 1e-6 * a.max(1.0));
            }
        }
    }
}
