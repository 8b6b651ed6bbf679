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

mod coder;
mod index;
mod lz;
mod plan;

use coder::*;
pub use index::SourceIndex;
use lz::*;
use plan::*;

#[derive(Debug, Clone, Copy)]
pub(super) struct Control {
    pub(super) add: u32,
    pub(super) add_old: u64,
    pub(super) lit: u32,
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
    // bytes are the same as coding them one after another. Each group plans on one thread
    // and codes on another (planning and coding take different shares of the work from pair
    // to pair, and the group that starts later primes its index first; the system shares
    // the cores among the threads).
    let split = threads > 1;
    let threads = threads.min(blocks.len()).max(1);
    let want_stats = stats.is_some();
    let coded: Vec<Result<Coded, EncodeError>> = if threads == 1 {
        vec![encode_group(
            old,
            new,
            params,
            src,
            Group {
                before: &[],
                blocks: &blocks,
            },
            want_stats,
            split,
            stop,
        )]
    } else {
        // Groups of about equal work: the blocks' work differs a lot (a block of equal bytes
        // codes 50 times faster than one of relocated code), and the stream is done when
        // the slowest group is.
        use rayon::prelude::*;
        let work: Vec<u64> = blocks.par_iter().map(|b| block_work(old, new, b)).collect();
        let starts = balance(&work, threads);
        std::thread::scope(|sc| {
            let blocks = &blocks;
            let ends = starts.iter().skip(1).copied().chain([blocks.len()]);
            let hs: Vec<_> = starts
                .iter()
                .zip(ends)
                .map(|(&at, end)| {
                    let group = Group {
                        before: &blocks[..at],
                        blocks: &blocks[at..end],
                    };
                    sc.spawn(move || {
                        encode_group(old, new, params, src, group, want_stats, split, stop)
                    })
                })
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

/// Work units per non-zero difference byte in [`block_work`] (a unit: an equal byte)...
const NZ_WORK: u64 = 128;
/// ...and per literal byte.
const LIT_WORK: u64 = 256;

/// The work of coding block `b`, estimated from its controls: a unit per difference byte
/// (equal bytes mostly settle in run mode, 64 at a time), [`NZ_WORK`] per non-zero
/// difference (the positions after one are coded one by one until a run resumes) and
/// [`LIT_WORK`] per literal byte (planned and coded with the literal model). Measured on
/// ath11k's 5 MB amss.bin: 43 ms for blocks with 16 K non-zero differences against 198 ms for
/// blocks with 126 K.
fn block_work(old: &[u8], new: &[u8], b: &Block) -> u64 {
    let mut pos = b.start as usize;
    let mut work = 0u64;
    for c in &b.ctrls {
        let (add, lit) = (c.add as usize, c.lit as usize);
        let src = old.get(c.add_old as usize..).and_then(|o| o.get(..add));
        let equal = match (src, new.get(pos..pos + add)) {
            (Some(o), Some(n)) => crate::suffix::count_equal(o, n),
            _ => add,
        };
        work += add as u64 + (add - equal) as u64 * NZ_WORK + lit as u64 * LIT_WORK;
        pos += add + lit;
    }
    work
}

/// Cut `work` (a figure per block) into `groups` contiguous non-empty groups (fewer when
/// there are fewer blocks) whose largest total is as small as possible; returns each
/// group's first index (the first is 0; empty `work`: no group). The smallest feasible
/// largest total is found by bisection, each step a greedy pass: O(n log total), so 16,384
/// blocks of 4 KiB on many cores cost nothing to place.
fn balance(work: &[u64], groups: usize) -> Vec<usize> {
    let n = work.len();
    let k = groups.min(n);
    if k == 0 {
        return Vec::new();
    }
    // Groups a greedy pass needs when no group may exceed `cap` (`cap` >= every figure).
    let needed = |cap: u64| {
        let (mut count, mut sum) = (1usize, 0u64);
        for &w in work {
            if sum.saturating_add(w) > cap {
                count += 1;
                sum = 0;
            }
            sum = sum.saturating_add(w);
        }
        count
    };
    let (mut lo, mut hi) = (
        work.iter().copied().max().unwrap_or(0),
        work.iter().fold(0u64, |t, &w| t.saturating_add(w)),
    );
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if needed(mid) <= k {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    // The greedy cut at that bound, with a group per block at the end where blocks would
    // otherwise run short of groups (smaller groups never raise the largest).
    let mut starts = vec![0usize];
    let mut sum = 0u64;
    for (i, &w) in work.iter().enumerate().skip(1) {
        sum = sum.saturating_add(work[i - 1]);
        let short = n - i == k - starts.len();
        if starts.len() < k && (short || sum.saturating_add(w) > lo) {
            starts.push(i);
            sum = 0;
        }
    }
    starts
}

/// A group's coded blocks and the bits spent per category.
type Coded = (Vec<u8>, [f64; 4]);

/// One block to code: its first target position and its controls.
struct Block {
    start: u64,
    ctrls: Vec<Control>,
}

/// A contiguous group of blocks coded on its own threads, and the blocks before it (whose
/// target history its index is primed with).
#[derive(Clone, Copy)]
struct Group<'a> {
    before: &'a [Block],
    blocks: &'a [Block],
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
/// spent per category. With `split`, a second thread codes while this one plans.
#[allow(clippy::too_many_arguments)]
fn encode_group(
    old: &[u8],
    new: &[u8],
    params: Params,
    src: &SourceIndex<'_>,
    Group { before, blocks }: Group<'_>,
    want_stats: bool,
    split: bool,
    stop: &core::sync::atomic::AtomicBool,
) -> Result<Coded, EncodeError> {
    let mut lz = Lz::new(new);
    if let Some(b) = blocks.first() {
        lz.prime(before, b.start);
    }
    let mut planner = Planner::new(old, new, &mut lz, src, params.window());
    let coder = Coder::new(old, new, params, want_stats);
    with_coder(coder, split, |send| {
        for b in blocks {
            if stop.load(core::sync::atomic::Ordering::Relaxed) {
                return Err(EncodeError::Cancelled);
            }
            let ctrls = &b.ctrls;
            let src_start = ctrls.iter().find(|c| c.add > 0).map_or(0, |c| c.add_old);
            planner.begin();
            if !send(Msg::Begin(b.start, src_start)) {
                return Ok(());
            }
            let mut cur_src = src_start;
            let mut pos = b.start;
            for (k, c) in ctrls.iter().enumerate() {
                let next = ctrls
                    .get(k + 1..)
                    .and_then(|r| r.iter().find(|n| n.add > 0));
                let p = planner.control(c, next, pos, cur_src)?;
                cur_src = (cur_src + u64::from(c.add)).wrapping_add(p.seek as u64);
                pos += u64::from(c.add) + u64::from(c.lit);
                if !send(Msg::Code(p)) {
                    return Ok(());
                }
            }
            if !send(Msg::End) {
                return Ok(());
            }
        }
        Ok(())
    })
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
    let mut lz = Lz::new(new);
    let mut planner = Planner::new(old, new, &mut lz, index, params.window());
    let coder = Coder::new(old, new, params, false);
    // Segments -> controls (as `cut_blocks` makes them), each planned once the next control
    // (whose source offset its seek needs) is known.
    let mut failed: Option<E> = None;
    // A small target is planned and coded on this thread: a second thread costs more than
    // it saves there.
    let split = new.len() >= SMALL_TARGET && threads() > 1;
    let coded = with_coder(coder, split, |send| {
        let produce = || -> Result<(), E> {
            let mut build = ControlBuilder::default();
            let mut ready: Vec<Control> = Vec::new();
            let mut seen = 0u64;
            let mut started = false;
            let (mut pos, mut cur_src) = (0u64, 0u64);
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
                // Plan every control whose next control with source bytes is known (only the
                // first control can lack source bytes, so that is the next one); at the end,
                // all.
                let at_end = seg.is_none();
                while let Some(&first) = ready.first() {
                    let next = ready.get(1).copied();
                    if next.is_none() && !at_end {
                        break;
                    }
                    if !started {
                        let with_src = if first.add > 0 { Some(first) } else { next };
                        cur_src = with_src.map_or(0, |c| c.add_old);
                        if !send(Msg::Begin(0, cur_src)) {
                            return Ok(());
                        }
                        started = true;
                    }
                    ready.remove(0);
                    let p = planner.control(&first, next.as_ref(), pos, cur_src)?;
                    cur_src = (cur_src + u64::from(first.add)).wrapping_add(p.seek as u64);
                    pos += u64::from(first.add) + u64::from(first.lit);
                    if !send(Msg::Code(p)) {
                        return Ok(());
                    }
                }
                if at_end {
                    send(Msg::End);
                    return Ok(());
                }
            }
        };
        if let Err(e) = produce() {
            failed = Some(e);
        }
        Ok(())
    });
    if let Some(e) = failed {
        return Err(e);
    }
    let (bytes, _) = coded?;
    let mut out = header.to_bytes()[..header.encoded_len()].to_vec();
    out.extend_from_slice(&bytes);
    Ok(out)
}

/// Targets below this size are made on one thread: planned and coded ([`encode_streamed`]),
/// and hashed by the package builder (two thread starts cost more than they save there).
pub(crate) const SMALL_TARGET: usize = 12 << 10;

/// What the planning side sends the coding side.
enum Msg {
    /// A block starts at this target position with the source cursor here.
    Begin(u64, u64),
    /// A planned control.
    Code(Planned),
    /// The block ends.
    End,
}

/// Run `plan`, which hands messages to `send` (false: the coder has stopped on an error; stop
/// sending), with `coder` coding them: on a second thread with `split`, else right here.
/// Returns the coded blocks, or the first error of either side.
fn with_coder(
    mut coder: Coder<'_>,
    split: bool,
    plan: impl FnOnce(&mut dyn FnMut(Msg) -> bool) -> Result<(), EncodeError>,
) -> Result<Coded, EncodeError> {
    let mut out = Vec::new();
    let mut st = [0.0; 4];
    let want_stats = coder.want_stats;
    let take = |coder: &mut Coder<'_>, m: Msg, out: &mut Vec<u8>, st: &mut [f64; 4]| match m {
        Msg::Begin(start, src_start) => {
            coder.begin(start, src_start);
            Ok(())
        }
        Msg::Code(p) => coder.code(&p),
        Msg::End => coder.end(out, want_stats.then_some(st)),
    };
    if !split {
        let mut failed = None;
        plan(&mut |m| match take(&mut coder, m, &mut out, &mut st) {
            Ok(()) => true,
            Err(e) => {
                failed = Some(e);
                false
            }
        })?;
        return match failed {
            Some(e) => Err(e),
            None => Ok((out, st)),
        };
    }
    let (tx, rx) = std::sync::mpsc::sync_channel::<Msg>(256);
    std::thread::scope(|sc| {
        let coding = sc.spawn(move || -> Result<Coded, EncodeError> {
            for m in rx {
                take(&mut coder, m, &mut out, &mut st)?;
            }
            Ok((out, st))
        });
        let planned = plan(&mut |m| tx.send(m).is_ok());
        drop(tx);
        let coded = coding
            .join()
            .unwrap_or(Err(EncodeError::BadSegments("encoder thread failed")));
        planned?;
        coded
    })
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::testkit;

    /// The streamed one-block coder (planning on this thread, coding on another from 12 KiB
    /// on, segments taken as they come) gives the bytes of the two-step coder.
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

    /// Planned difference matches that do not fit their run are refused by the coder (an
    /// internal error, never a panic or a wrong stream).
    #[test]
    fn coder_refuses_misplaced_difference_matches() {
        let old = testkit::firmware(5, 4096);
        let mut new = old.clone();
        for i in (0..new.len()).step_by(7) {
            new[i] ^= 0x5A; // non-zero differences at multiples of 7 only
        }
        let dm = |at, len| DiffMatch { at, dist: 7, len };
        let cases = [
            vec![dm(0, 4), dm(2, 4)], // starts inside the one before
            vec![dm(5000, 4)],        // beyond the run
            vec![dm(1, 4)],           // on a zero difference
            vec![dm(4088, 64)],       // longer than what is left of the run
        ];
        for (k, dmatches) in cases.into_iter().enumerate() {
            let mut coder = Coder::new(&old, &new, Params::BEST, false);
            coder.begin(0, 0);
            let p = Planned {
                add: 4096,
                add_old: 0,
                lit: 0,
                seek: 0,
                dmatches,
                items: Vec::new(),
                raw: false,
            };
            assert!(
                matches!(coder.code(&p), Err(EncodeError::BadSegments(_))),
                "case {k}"
            );
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

    /// Groups are contiguous, non-empty and as even as contiguous groups can be.
    #[test]
    fn balance_makes_the_largest_group_as_small_as_possible() {
        let total = |w: &[u64], s: &[usize]| -> Vec<u64> {
            let ends = s.iter().skip(1).copied().chain([w.len()]);
            s.iter()
                .zip(ends)
                .map(|(&a, b)| w[a..b].iter().sum())
                .collect()
        };
        // ath11k amss.bin's five blocks (work in thousands): by count (3 + 2) the first
        // group had 126 of 142; balanced, 77.
        let w = [29u64, 36, 61, 16, 1];
        assert_eq!(balance(&w, 2), vec![0, 2]);
        assert_eq!(total(&w, &balance(&w, 2)), vec![65, 78]);
        assert_eq!(balance(&w, 3), vec![0, 2, 3]);
        // Every way to cut is tried: brute force agrees on random figures.
        let mut x = 0x9E37_79B9u64;
        for _ in 0..300 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let n = (x % 9) as usize;
            let w: Vec<u64> = (0..n).map(|k| (x >> (k * 5)) % 31).collect();
            for groups in 1..5 {
                let s = balance(&w, groups);
                assert_eq!(s.len(), groups.min(n));
                assert!(s.first().is_none_or(|&f| f == 0) && s.windows(2).all(|p| p[0] < p[1]));
                let got = total(&w, &s).into_iter().max().unwrap_or(0);
                // The best largest group over all cuts into groups.min(n) non-empty parts.
                let k = groups.min(n);
                let mut best = u64::MAX;
                for mask in 0u32..(1 << n.saturating_sub(1)) {
                    if k == 0 || mask.count_ones() as usize != k - 1 {
                        continue;
                    }
                    let cuts: Vec<usize> = std::iter::once(0)
                        .chain((1..n).filter(|i| mask >> (i - 1) & 1 == 1))
                        .collect();
                    best = best.min(total(&w, &cuts).into_iter().max().unwrap_or(0));
                }
                if k == 0 {
                    best = 0;
                }
                assert_eq!(got, best, "{w:?} in {groups}");
            }
        }
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

    /// Difference runs longer than the part of them the target history keeps: a group's
    /// primed index equals the one coding in order builds, whatever the number of threads.
    #[test]
    fn threads_give_the_same_bytes_past_long_runs() {
        let old = testkit::firmware(8, 1 << 20);
        let mut new = old.clone();
        let mut rng = testkit::Rng::new(5);
        for k in 0..40 {
            let at = (k * 26_000 + 1_000) % new.len();
            new[at] = new[at].wrapping_add(1 + (rng.next_u64() % 200) as u8);
        }
        // A stretch of the first long run that differs from the source every 8 bytes; new
        // bytes and a repeat of that stretch later (a target match into the run's middle is
        // what the index leaves out, and a group's priming must leave it out too).
        for b in new[100_000..102_000].iter_mut().step_by(8) {
            *b = b.wrapping_add(3);
        }
        let fresh: Vec<u8> = (0..3_000).map(|_| rng.next_u64() as u8).collect();
        let repeat = new[100_000..102_000].to_vec();
        for at in [300_000, 700_000, 900_000] {
            new.splice(at..at, fresh.iter().chain(&repeat).copied());
        }
        let segs = crate::diff::find_segments(&old, &new).unwrap();
        assert!(
            segs.iter()
                .any(|s| matches!(s, Segment::Add { len, .. } if *len > 2 * RUN_KEEP as u64)),
            "no run longer than the kept part"
        );
        let params = Params {
            block_log2: 18,
            ..Params::BEST
        };
        let with = |t| {
            encode_inner(
                &old,
                &new,
                &segs,
                params,
                None,
                None,
                t,
                &crate::diff::NEVER,
            )
            .unwrap()
        };
        let one = with(1);
        for t in [2, 3, 8] {
            assert!(one == with(t), "{t} threads");
        }
        let mut back = vec![0u8; new.len()];
        let mut io = crate::delta::SliceIo::new(&old, &mut back);
        let mut d: crate::delta::DeltaDecoder<16, 65536> =
            crate::delta::DeltaDecoder::new(old.len() as u64);
        d.push_all(&one, &mut io).unwrap();
        d.finish().unwrap();
        assert!(back == new);
    }
}
