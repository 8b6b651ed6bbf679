//! The cover finder: which stretches of the new image to describe as "the old image at some
//! offset, plus differences" (covers) and which as new bytes (gaps).
//!
//! A cover is a diagonal of the two images (new position `p` read against old position
//! `p + d`) followed for as long as it pays. The walk over the new image has two modes:
//!
//! - **Seeking**: at position `j`, the suffix array gives the longest exact match of
//!   `new[j..]` in the old image. One of at least [`SEED`] bytes starts a cover on its
//!   diagonal; a shorter one means "nothing here": step on (by up to [`MAX_STEP`] bytes after
//!   [`STEP_AFTER`] fruitless searches in a row; a match that starts in a skipped byte is still
//!   found a byte or two later and reaches back).
//! - **Following**: from the seed, the cover grows backwards into the gap before it and
//!   forwards beyond it. Each equal byte scores +1, each different byte −[`PENALTY`]; the
//!   cover ends where the score peaked, once it has fallen [`DROP`] below that peak (so a
//!   changed constant or a relocated pointer inside a cover does not end it, and a cover
//!   never ends on different bytes). Equal runs are skipped eight bytes at a time, so a cover
//!   over near-identical code costs about one comparison per byte.
//!
//! While following, a different diagonal may become better: code after an insertion matches
//! one diagonal exactly and the current one only by accident. At a different byte (at most
//! every [`PROBE_EVERY`] bytes) the finder asks the suffix array for the longest exact match
//! from there; if that match is on another diagonal and that diagonal explains the next
//! [`PROBE_SPAN`] bytes with at least [`SWITCH`] more equal bytes than the current one, the
//! current cover ends at its peak and the next one starts from the new match (reaching back
//! as far as it pays). Both diagonals are judged on the same bytes, not the new one on its
//! exact stretch alone: a match that is exact for a few bytes by accident (a common
//! instruction sequence) does not pull a cover off a diagonal that keeps matching after it.
//! Where the current diagonal itself explains more than `PROBE_SPAN - SWITCH` of those bytes
//! no other can win, and the suffix array is not asked (most probes over near-identical
//! images: a 64 MiB image with one byte in 16 changed, 20.9 -> 17.3 s).
//!
//! A target of more than one part ([`PART`]) is walked on all cores, one walk starting at
//! each part, and the walks are spliced: the walk from before a part goes on past the
//! part's start until it reaches a state (where the last cover ended, where seeking goes
//! on) that the part's own walk reached too; from there both walks are the same walk, so the
//! part's covers follow. The covers are the ones a single walk finds (tested), at about the
//! cost of a walk per core. The covers feed `crate::diff`, which cleans them up for the
//! coder.

use core::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;

use crate::suffix::{count_equal, lcp, lcs, Index};

/// Shortest exact match that starts a cover.
pub(crate) const SEED: usize = 8;
/// Score lost per different byte (an equal byte gains 1).
const PENALTY: i64 = 1;
/// A cover ends once its score is this far below its peak.
const DROP: i64 = 24;
/// Fruitless searches in a row before the seeking walk starts to step over bytes.
const STEP_AFTER: usize = 16;
/// Largest step of the seeking walk.
const MAX_STEP: usize = 4;
/// Bytes between two switch probes of one cover (1: at every different byte).
const PROBE_EVERY: usize = 1;
/// Bytes over which a switch probe compares the two diagonals.
const PROBE_SPAN: usize = 64;
/// Equal bytes the probed diagonal must have more than the current one to switch.
const SWITCH: usize = 8;
/// An anchor's match this long is taken without asking the suffix array.
const ANCHORED_ENOUGH: usize = 32;
/// Target bytes per part walked on its own core.
const PART: usize = 512 * 1024;

/// A gap of new bytes, then a cover: `len` bytes of the new image read against the old
/// image from `old`. The last one of a target may have `len == 0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cover {
    pub gap: u64,
    pub len: u64,
    pub old: u64,
}

/// The covers of `new` against the indexed source, one at a time; ends early (without
/// covering the rest) once `stop` is set.
pub(crate) fn covers<'a>(
    index: &'a Index<'a>,
    new: &'a [u8],
    stop: &'a AtomicBool,
) -> impl Iterator<Item = Cover> + use<'a> {
    Walk::new(index, new, 0, stop)
}

/// All covers of `new`, the same as [`covers`] gives: a target of more than one [`PART`] is
/// walked on all cores and spliced (see the module docs). Incomplete once `stop` is set (the
/// caller checks the flag).
pub(crate) fn all_covers(index: &Index<'_>, new: &[u8], stop: &AtomicBool) -> Vec<Cover> {
    spliced(index, new, PART, stop)
}

/// Where a walk is after a cover: where the cover ended and where seeking goes on (in the
/// whole target). Two walks in the same state go on the same way.
type State = (usize, usize);

/// A part's walk and the covers it found, each with the state after it.
type PartWalk<'a> = (Walk<'a>, Vec<(Cover, State)>);

/// [`all_covers`] with parts of `part` bytes.
fn spliced(index: &Index<'_>, new: &[u8], part: usize, stop: &AtomicBool) -> Vec<Cover> {
    let part = part.max(1);
    if new.len() <= part {
        return Walk::new(index, new, 0, stop).collect();
    }
    // Each part's walk runs until its last cover reaches the next part (the last part's to
    // the end), keeping its covers with the state after each. The parts are shared out in
    // runs, one per core, walked in order: a part that the walk before it (on that core)
    // has gone past is not walked (a cover over near-identical images may span many parts:
    // each part's walk would follow it to its end).
    let parts = new.len().div_ceil(part);
    let runs = rayon::current_num_threads().clamp(1, parts);
    let per = parts.div_ceil(runs);
    let walks: Vec<Vec<PartWalk<'_>>> = (0..runs)
        .into_par_iter()
        .map(|r| {
            let mut reach = 0usize;
            (r * per..((r + 1) * per).min(parts))
                .map(|k| {
                    let base = k * part;
                    let until = base + part;
                    let mut walk = Walk::new(index, &new[base..], base, stop);
                    let mut got = Vec::new();
                    if reach >= until {
                        return (walk, got);
                    }
                    while let Some(c) = walk.next() {
                        got.push((c, walk.state()));
                        if walk.state().0 >= until {
                            break;
                        }
                    }
                    reach = walk.state().0;
                    (walk, got)
                })
                .collect()
        })
        .collect();
    let walks: Vec<PartWalk<'_>> = walks.into_iter().flatten().collect();
    let mut walks = walks.into_iter();
    let Some((mut walk, first)) = walks.next() else {
        return Vec::new();
    };
    let mut state = first.last().map(|x| x.1);
    let mut out: Vec<Cover> = first.into_iter().map(|x| x.0).collect();
    for (next_walk, got) in walks {
        let Some(&(_, last)) = got.last() else {
            continue;
        };
        // The walk so far goes on until it is in a state the part's walk was in.
        while let Some(st) = state {
            let k = got.partition_point(|x| x.1 .0 < st.0);
            let same = got
                .get(k..)
                .unwrap_or(&[])
                .iter()
                .take_while(|x| x.1 .0 == st.0);
            if let Some(at) = same.into_iter().position(|x| x.1 == st) {
                out.extend(got[k + at + 1..].iter().map(|x| x.0));
                walk = next_walk;
                state = Some(last);
                break;
            }
            if st.0 >= last.0 {
                // Past everything the part's walk found: it is of no use.
                break;
            }
            match walk.next() {
                Some(c) => {
                    out.push(c);
                    state = Some(walk.state());
                }
                None => return out,
            }
        }
    }
    out.extend(walk);
    out
}

/// The walk over one target (or over the target from one part on).
struct Walk<'a> {
    old: &'a [u8],
    new: &'a [u8],
    index: &'a Index<'a>,
    /// Where `new` starts in the whole target (the index's anchors are in its positions).
    base: usize,
    stop: &'a AtomicBool,
    /// Next position to seek from.
    at: usize,
    /// First byte not yet handed out (the start of the current gap).
    gap_from: usize,
    /// Fruitless searches in a row.
    misses: usize,
}

impl<'a> Walk<'a> {
    fn new(index: &'a Index<'a>, new: &'a [u8], base: usize, stop: &'a AtomicBool) -> Self {
        Self {
            old: index.s,
            new,
            index,
            base,
            stop,
            at: 0,
            gap_from: 0,
            misses: 0,
        }
    }

    /// See [`State`].
    fn state(&self) -> State {
        (self.base + self.gap_from, self.base + self.at)
    }

    /// The longest exact match of `new[j..]` in the old image: `(old offset, length)`.
    /// Inside an anchor (an exact copy found by hashing, whose source bytes the suffix
    /// array may not hold), the anchor's match. Matches under 4 bytes (shorter than [`SEED`]
    /// anyway) come back as `(0, 0)`.
    fn longest(&self, j: usize) -> (usize, usize) {
        let rest = self.new.get(j..).unwrap_or(&[]);
        let anchored = self.anchored(j, rest);
        if let Some(a) = anchored.filter(|a| a.1 >= ANCHORED_ENOUGH) {
            return a;
        }
        let found = match self.index.search_lcp4(rest) {
            Some(r) => (r.start, r.len()),
            None => (0, 0),
        };
        match anchored {
            Some(a) if a.1 > found.1 => a,
            _ => found,
        }
    }

    /// The match at `j` of the anchor holding it, if any: `(old offset, length)`.
    fn anchored(&self, j: usize, rest: &[u8]) -> Option<(usize, usize)> {
        let g = self.base + j;
        let anchors = self.index.anchors();
        let a = anchors.get(anchors.partition_point(|a| a.new + a.len <= g))?;
        if a.new > g {
            return None;
        }
        let o = a.old + (g - a.new);
        Some((o, lcp(self.old.get(o..).unwrap_or(&[]), rest)))
    }

    /// How far a cover on diagonal `i - j` reaches back from `j` (not before `floor`).
    fn reach_back(&self, i: usize, j: usize, floor: usize) -> usize {
        let (old, new) = (self.old, self.new);
        let limit = (j - floor).min(i);
        let (mut k, mut score, mut best, mut reach) = (0usize, 0i64, 0i64, 0usize);
        while k < limit {
            let run = lcs(&old[i - limit..i - k], &new[j - limit..j - k]);
            k += run;
            score += run as i64;
            if score > best {
                best = score;
                reach = k;
            }
            if k >= limit {
                break;
            }
            k += 1; // the different byte
            score -= PENALTY;
            if best - score > DROP {
                break;
            }
        }
        reach
    }

    /// Follow diagonal `d` (old = new + d) forwards from `j`: `(end, resume)` where the cover
    /// ends at `end` and seeking resumes at `resume` (past `end` when a probe found a better
    /// diagonal there).
    fn follow(&self, d: i64, j: usize) -> (usize, usize) {
        let (old, new) = (self.old, self.new);
        let (mut p, mut score, mut best, mut end) = (j, 0i64, 0i64, j);
        let mut probed = j;
        loop {
            let o = (p as i64 + d) as usize;
            if p >= new.len() || o >= old.len() {
                break;
            }
            let run = lcp(&old[o..], &new[p..]);
            p += run;
            score += run as i64;
            if score > best {
                best = score;
                end = p;
            }
            if p >= new.len() || o + run >= old.len() {
                break;
            }
            p += 1; // the different byte
            score -= PENALTY;
            if best - score > DROP {
                break;
            }
            if p - probed >= PROBE_EVERY && p < new.len() {
                probed = p;
                if self.better_diagonal(d, p) {
                    return (end, p);
                }
            }
        }
        (end, end)
    }

    /// Whether the longest match at `p` is on another diagonal that explains the next
    /// [`PROBE_SPAN`] bytes with at least [`SWITCH`] more equal bytes than diagonal `d`.
    /// No diagonal agrees on more than the span's bytes, so while `d` itself agrees on
    /// more than `span - SWITCH` of them (a near-identical stretch: most probes) the answer
    /// is no without asking the suffix array.
    fn better_diagonal(&self, d: i64, p: usize) -> bool {
        let span = PROBE_SPAN.min(self.new.len() - p);
        let t = &self.new[p..p + span];
        let agree = |o: i64| -> usize {
            let Ok(o) = usize::try_from(o) else {
                return 0;
            };
            let a = self.old.get(o..).unwrap_or(&[]);
            count_equal(&a[..span.min(a.len())], t)
        };
        let here = agree(p as i64 + d);
        if here + SWITCH > span {
            return false;
        }
        let (i, n) = self.longest(p);
        if n < SEED || i as i64 - p as i64 == d {
            return false;
        }
        agree(i as i64) >= here + SWITCH
    }
}

impl Iterator for Walk<'_> {
    type Item = Cover;

    fn next(&mut self) -> Option<Cover> {
        let n = self.new.len();
        loop {
            if self.gap_from >= n {
                return None;
            }
            let stopped = self.stop.load(Ordering::Relaxed);
            if stopped || self.at + SEED > n || self.old.is_empty() {
                if stopped {
                    self.gap_from = n;
                    return None;
                }
                let gap = (n - self.gap_from) as u64;
                self.gap_from = n;
                return Some(Cover {
                    gap,
                    len: 0,
                    old: 0,
                });
            }
            let j = self.at;
            let (i, len) = self.longest(j);
            if len < SEED {
                self.misses += 1;
                self.at += (self.misses / STEP_AFTER).clamp(1, MAX_STEP);
                continue;
            }
            self.misses = 0;
            let back = self.reach_back(i, j, self.gap_from);
            let start = j - back;
            let d = i as i64 - j as i64;
            let (end, resume) = self.follow(d, j + len);
            let cover = Cover {
                gap: (start - self.gap_from) as u64,
                len: (end - start) as u64,
                old: (i - back) as u64,
            };
            self.gap_from = end;
            self.at = resume.max(end);
            return Some(cover);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn rnd(seed: u64) -> impl FnMut() -> u64 {
        let mut x = seed | 1;
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }

    /// Every cover lies inside both images, the covers and gaps tile the target, and a cover's
    /// bytes are mostly equal (it never starts or ends on a different byte).
    fn check(old: &[u8], new: &[u8], covers: &[Cover]) {
        let mut pos = 0u64;
        for c in covers {
            pos += c.gap;
            if c.len > 0 {
                let (o, p, l) = (c.old as usize, pos as usize, c.len as usize);
                assert!(o + l <= old.len() && p + l <= new.len(), "{c:?} at {pos}");
                assert_eq!(old[o], new[p], "cover starts on a difference: {c:?}");
                assert_eq!(old[o + l - 1], new[p + l - 1], "cover ends on a difference");
            }
            pos += c.len;
        }
        assert_eq!(pos, new.len() as u64);
    }

    /// The covers with the index made for the pair (anchors found first, their source
    /// bytes left out of the suffix sort: what `make_delta` uses); the plain index's and
    /// the chunked walks' covers are checked too.
    fn run(old: &[u8], new: &[u8]) -> Vec<Cover> {
        let stop = AtomicBool::new(false);
        let plain = Index::new(old);
        let p: Vec<Cover> = covers(&plain, new, &stop).collect();
        check(old, new, &p);
        let index = Index::for_pair(old, new);
        let v: Vec<Cover> = covers(&index, new, &stop).collect();
        check(old, new, &v);
        // Walked in parts on all cores and spliced: the same covers.
        for part in [700, 4096, 65_536] {
            assert!(spliced(&index, new, part, &stop) == v, "parts of {part}");
            assert!(
                spliced(&plain, new, part, &stop) == p,
                "parts of {part}, plain"
            );
        }
        assert!(all_covers(&index, new, &stop) == v);
        v
    }

    /// A near-identical image whose anchors take most of the source out of the suffix
    /// sort is still covered whole, also where the new image repeats an anchored piece with
    /// changes (found by following the anchor's diagonal or the pieces kept at its ends).
    #[test]
    fn anchored_sources_still_cover_repeats_with_changes() {
        let mut r = rnd(5);
        let old: Vec<u8> = (0..200_000).map(|_| r() as u8).collect();
        let mut new = old.clone();
        // The first 4 KiB again at the end, with a changed byte every 100.
        let mut again = old[..4096].to_vec();
        for k in (50..4096).step_by(100) {
            again[k] ^= 0x41;
        }
        new.extend_from_slice(&again);
        let index = Index::for_pair(&old, &new);
        assert!(index.anchors().iter().any(|a| a.len >= 150_000));
        let covers = run(&old, &new);
        let gap: u64 = covers.iter().map(|c| c.gap).sum();
        assert!(gap <= 64, "{gap} new bytes: {covers:?}");
        // The repeat is read against the start of the old image.
        assert!(
            covers.iter().any(|c| c.old < 200 && c.len >= 3900),
            "{covers:?}"
        );
    }

    #[test]
    fn an_identical_image_is_one_cover() {
        let mut r = rnd(1);
        let old: Vec<u8> = (0..100_000).map(|_| r() as u8).collect();
        assert_eq!(
            run(&old, &old),
            vec![Cover {
                gap: 0,
                len: 100_000,
                old: 0
            }]
        );
    }

    #[test]
    fn scattered_changes_stay_in_one_cover_and_an_insertion_switches_diagonal() {
        let mut r = rnd(2);
        let old: Vec<u8> = (0..60_000).map(|_| r() as u8).collect();
        let mut new = old.clone();
        // A changed 4-byte word every 500 bytes: still one diagonal.
        for k in (100..60_000).step_by(500) {
            for b in &mut new[k..k + 4] {
                *b ^= 0x5A;
            }
        }
        let covers = run(&old, &new);
        assert_eq!(covers.len(), 1, "{covers:?}");
        // 300 new bytes inserted in the middle: two covers, the second 300 further on.
        let mut ins = new[..30_000].to_vec();
        ins.extend((0..300).map(|_| r() as u8));
        ins.extend_from_slice(&new[30_000..]);
        let covers = run(&old, &ins);
        let long: Vec<&Cover> = covers.iter().filter(|c| c.len > 1000).collect();
        assert_eq!(long.len(), 2, "{covers:?}");
        assert_eq!(long[0].old, 0);
        assert!(long[1].old <= 30_000 && long[1].old > 29_000, "{covers:?}");
        let new_bytes: u64 = covers.iter().map(|c| c.gap).sum();
        assert!((300..400).contains(&new_bytes), "{covers:?}");
    }

    /// The switch probe answers as the rule says (ask the suffix array for the longest
    /// match, switch if its diagonal agrees on `SWITCH` more bytes of the span) also when it
    /// skips the search because the current diagonal agrees on almost all of the span: on
    /// relocated-looking images, at every byte, for the true diagonal and ones near it, and
    /// both answers occur.
    #[test]
    fn the_switch_probe_skips_only_searches_that_cannot_switch() {
        let by_rule = |w: &Walk<'_>, d: i64, p: usize| -> bool {
            let (i, n) = w.longest(p);
            if n < SEED || i as i64 - p as i64 == d {
                return false;
            }
            let span = PROBE_SPAN.min(w.new.len() - p);
            let t = &w.new[p..p + span];
            let agree = |o: i64| -> usize {
                let Ok(o) = usize::try_from(o) else { return 0 };
                let a = w.old.get(o..).unwrap_or(&[]);
                count_equal(&a[..span.min(a.len())], t)
            };
            agree(i as i64) >= agree(p as i64 + d) + SWITCH
        };
        let stop = AtomicBool::new(false);
        let mut answers = [0usize; 2];
        for (seed, every) in [(1u64, 16usize), (2, 40), (3, 200)] {
            let mut r = rnd(seed);
            let old = crate::testkit::firmware(seed, 20_000);
            // Changed bytes every `every` on average, and 600 bytes inserted at 9,000
            // (from there on the true diagonal is 600 further).
            let mut new = old.clone();
            for b in new.iter_mut() {
                if r().is_multiple_of(every as u64) {
                    *b ^= 0x21;
                }
            }
            let fresh: Vec<u8> = (0..600).map(|_| r() as u8).collect();
            new.splice(9_000..9_000, fresh);
            let index = Index::new(&old);
            let w = Walk::new(&index, &new, 0, &stop);
            for p in 0..new.len() {
                for d in [-700i64, -600, -1, 0, 1, 600] {
                    let want = by_rule(&w, d, p);
                    assert_eq!(w.better_diagonal(d, p), want, "seed {seed} d {d} at {p}");
                    answers[usize::from(want)] += 1;
                }
            }
        }
        assert!(answers[0] > 0 && answers[1] > 0, "{answers:?}");
    }

    #[test]
    fn moved_blocks_are_found_and_unrelated_bytes_are_gaps() {
        let mut r = rnd(3);
        let old: Vec<u8> = (0..40_000).map(|_| r() as u8).collect();
        // New: block B, fresh bytes, block A (A and B swapped).
        let mut new = old[20_000..].to_vec();
        new.extend((0..5000).map(|_| r() as u8));
        new.extend_from_slice(&old[..20_000]);
        let covers = run(&old, &new);
        let covered: u64 = covers.iter().map(|c| c.len).sum();
        assert!(covered >= 39_900, "{covers:?}");
        assert!(covers.iter().any(|c| c.old == 20_000));
        assert!(covers.iter().any(|c| c.old == 0 && c.len >= 19_900));
    }

    #[test]
    fn empty_and_tiny_inputs() {
        for (old, new) in [
            (&b""[..], &b"abc"[..]),
            (b"abc", b""),
            (b"a", b"a"),
            (b"abcdefgh", b"abcdefgh"),
            (b"abcdefghij", b"xabcdefghijx"),
        ] {
            let covers = run(old, new);
            let total: u64 = covers.iter().map(|c| c.gap + c.len).sum();
            assert_eq!(total, new.len() as u64);
        }
    }

    #[test]
    fn degenerate_images_are_walked_in_linear_time() {
        // One byte repeated, and a short period: every suffix shares long prefixes.
        let zeros = vec![0u8; 1 << 20];
        let covers = run(&zeros, &zeros);
        assert_eq!(covers.len(), 1);
        let period: Vec<u8> = (0..(1 << 20)).map(|i| (i % 3) as u8).collect();
        let mut shifted = period[1..].to_vec();
        shifted.extend_from_slice(&zeros[..5000]);
        let covers = run(&period, &shifted);
        let covered: u64 = covers.iter().map(|c| c.len).sum();
        assert!(covered >= period.len() as u64 - 8, "{covers:?}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Any images: the covers tile the target and lie inside both images.
        #[test]
        fn covers_tile_any_pair(old in proptest::collection::vec(0u8..4, 0..3000),
                                new in proptest::collection::vec(0u8..4, 0..3000)) {
            run(&old, &new);
        }

        /// A near-identical image (a few scattered byte changes) is covered almost whole.
        #[test]
        fn near_identical_images_are_covered(seed in proptest::prelude::any::<u64>(),
                                             len in 2000usize..40_000,
                                             changes in 0usize..20) {
            let mut r = rnd(seed);
            let old: Vec<u8> = (0..len).map(|_| r() as u8).collect();
            let mut new = old.clone();
            for _ in 0..changes {
                let at = r() as usize % len;
                new[at] ^= 1 + (r() as u8 & 0x7F);
            }
            let covers = run(&old, &new);
            let gap: u64 = covers.iter().map(|c| c.gap).sum();
            proptest::prop_assert!(gap <= 16, "{} new bytes: {:?}", gap, covers);
        }
    }

    #[test]
    fn stop_ends_the_walk() {
        let old = vec![7u8; 10_000];
        let index = Index::new(&old);
        let stop = AtomicBool::new(true);
        assert!(covers(&index, &old, &stop).next().is_none());
    }
}
