//! Planning: the parse of literal regions (target, source and difference matches priced
//! against literals) and the planner that cuts segments into block controls.

use super::*;

/// One planned item of a literal region.
#[derive(Debug, Clone, Copy)]
pub(super) enum Item {
    Lit,
    Target(u32, u32),
    Source(i64, u32),
}

impl Item {
    pub(super) fn len(&self) -> usize {
        match *self {
            Item::Lit => 1,
            Item::Target(_, l) | Item::Source(_, l) => l as usize,
        }
    }
}

/// Should a literal region's literals be coded raw? Yes when they look incompressible:
/// order-0 entropy above 7.85 bits per byte over at least 256 literals (the adaptive coder
/// spends about 8.07 bits on such bytes).
pub(super) fn raw_literals(items: &[Item], new: &[u8], start: usize) -> bool {
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
pub(super) struct ParseState {
    /// Last target-match distance.
    pub(super) rep0: u32,
    /// Source position on the diagonal at the current target position.
    pub(super) diag: u64,
    /// Last source-match offset.
    pub(super) last_off: i64,
}

/// A difference match chosen in a control's difference run: it starts `at` differences into
/// the run and repeats `len` differences from `dist` back in the block's difference stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct DiffMatch {
    pub(super) at: u32,
    pub(super) dist: u32,
    pub(super) len: u32,
}

/// A control with its difference matches and literal region planned: what the coder needs.
pub(super) struct Planned {
    pub(super) add: u32,
    pub(super) add_old: u64,
    pub(super) lit: u32,
    pub(super) seek: i64,
    /// In the order of `at`, not overlapping.
    pub(super) dmatches: Vec<DiffMatch>,
    pub(super) items: Vec<Item>,
    pub(super) raw: bool,
}

/// Plans difference runs (their difference matches) and literal regions; keeps the last
/// target-match distance, source offset and difference-match distance of the block as the
/// coder's model will have them. Everything it decides depends on the images and earlier
/// decisions only, never on the coder's state, so it can run a control or more ahead of the
/// coding (on another thread).
pub(super) struct Planner<'a, 'b> {
    pub(super) old: &'a [u8],
    pub(super) new: &'a [u8],
    pub(super) lz: &'b mut Lz<'a>,
    pub(super) src: &'b SourceIndex<'a>,
    pub(super) rep0: u32,
    pub(super) last_soff: i64,
    /// Difference matches: the block's difference stream so far, its chains and the last
    /// distance.
    dlz: DiffLz,
    dv: Vec<u8>,
    drep0: u32,
    lits: LitPrices,
}

impl<'a, 'b> Planner<'a, 'b> {
    pub(super) fn new(
        old: &'a [u8],
        new: &'a [u8],
        lz: &'b mut Lz<'a>,
        src: &'b SourceIndex<'a>,
        window: usize,
    ) -> Self {
        Self {
            old,
            new,
            lz,
            src,
            rep0: 0,
            last_soff: 0,
            dlz: DiffLz::new(window),
            dv: Vec::new(),
            drep0: 0,
            lits: LitPrices::new(),
        }
    }

    /// A block starts: the model's distances and the difference stream start over.
    pub(super) fn begin(&mut self) {
        self.rep0 = 0;
        self.last_soff = 0;
        self.dlz.reset();
        self.dv.clear();
        self.drep0 = 0;
        self.lits = LitPrices::new();
    }

    /// The difference matches of control `c` (target `pos`): its differences join the
    /// block's stream, and each non-zero difference not inside a match is searched, as the
    /// coder's model will see them.
    fn diff_matches(&mut self, c: &Control, pos: u64) -> Result<Vec<DiffMatch>, EncodeError> {
        let (p, o, n) = (pos as usize, c.add_old as usize, c.add as usize);
        let (Some(t), Some(s)) = (self.new.get(p..p + n), self.old.get(o..o + n)) else {
            return Err(EncodeError::BadSegments("segment beyond an image"));
        };
        let j0 = self.dv.len();
        self.dv
            .extend(t.iter().zip(s).map(|(a, b)| a.wrapping_sub(*b)));
        let mut out = Vec::new();
        if self.dlz.window == 0 {
            return Ok(out);
        }
        let mut k = 0;
        while k < n {
            let j = j0 + k;
            if k + 8 <= n && super::lz::zero8(&self.dv, j) {
                k += 8;
                continue;
            }
            if self.dv[j] == 0 {
                k += 1;
                continue;
            }
            match self.dlz.find(&self.dv, j, n - k, self.drep0) {
                Some((dist, len)) => {
                    out.push(DiffMatch {
                        at: k as u32,
                        dist,
                        len,
                    });
                    self.drep0 = dist;
                    k += len as usize;
                }
                None => k += 1,
            }
        }
        Ok(out)
    }

    /// Plan control `c` starting at target `pos` with the source cursor at `cur_src`;
    /// `next` is the next control with source bytes (for the seek).
    pub(super) fn control(
        &mut self,
        c: &Control,
        next: Option<&Control>,
        pos: u64,
        cur_src: u64,
    ) -> Result<Planned, EncodeError> {
        let dmatches = self.diff_matches(c, pos)?;
        self.lz
            .pass_run(pos as usize, pos as usize + c.add as usize);
        let after_add = cur_src + u64::from(c.add);
        let lit_start = (pos + u64::from(c.add)) as usize;
        let st = ParseState {
            rep0: self.rep0,
            diag: after_add,
            last_off: self.last_soff,
        };
        let (items, rep0, last_soff) = plan(
            self.lz,
            self.src,
            &mut self.lits,
            lit_start,
            lit_start + c.lit as usize,
            st,
        );
        self.rep0 = rep0;
        self.last_soff = last_soff;
        let raw = raw_literals(&items, self.new, lit_start);
        Ok(Planned {
            add: c.add,
            add_old: c.add_old,
            lit: c.lit,
            seek: next.map_or(0, |n| n.add_old as i64 - after_add as i64),
            dmatches,
            items,
            raw,
        })
    }
}

/// Estimated prices, in 1/16 bit, of what the parse chooses between. The parse runs ahead of
/// the coder (on another thread) and cannot ask the model, so these follow the coding of
/// `docs/FORMAT.md` 2.3 with fixed costs per modelled decision (measured on the public
/// corpus and the large set's Atheros pair; a sixteenth of a bit either way moves little).
mod price {
    use super::MIN_MATCH;

    /// A number: its bit length and the three bits below the leading one are modelled
    /// (about two bits together above the raw bits), the rest are direct.
    fn number(v: u64) -> u32 {
        32 + 16 * (64 - v.leading_zeros())
    }

    /// The "is match" and "from source" bits.
    const MATCH: u32 = 28;
    /// A repeat bit that says yes.
    const REPEAT: u32 = 16;
    /// A repeat bit that says no.
    const NOT_REPEAT: u32 = 24;

    pub(super) fn target(dist: u32, rep0: u32, len: u32) -> u32 {
        let d = if dist == rep0 {
            REPEAT
        } else {
            NOT_REPEAT + number(u64::from(dist - 1))
        };
        MATCH + d + number(u64::from(len - MIN_MATCH))
    }

    pub(super) fn source(off: i64, last_off: i64, len: u32) -> u32 {
        let o = if off == last_off {
            REPEAT
        } else {
            // The magnitude and its sign.
            NOT_REPEAT + number(off.unsigned_abs()) + 16
        };
        MATCH + o + number(u64::from(len - MIN_MATCH))
    }
}

/// Literal prices for the parse: order 0, adapted to the literals it chose so far in the
/// block (the table is worked out again every [`LitPrices::REFRESH`] literals).
pub(super) struct LitPrices {
    counts: [u32; 256],
    total: u32,
    prices: [u32; 256],
    since: u32,
}

impl LitPrices {
    const REFRESH: u32 = 1024;
    /// The "is match" bit saying no, about a third of a bit where literals are common.
    const NOT_MATCH: u32 = 5;

    pub(super) fn new() -> Self {
        let mut p = Self {
            counts: [1; 256],
            total: 256,
            prices: [0; 256],
            since: 0,
        };
        p.refresh();
        p
    }

    fn refresh(&mut self) {
        let total = f64::from(self.total).log2();
        for (p, &c) in self.prices.iter_mut().zip(&self.counts) {
            *p = Self::NOT_MATCH + ((total - f64::from(c).log2()) * 16.0) as u32;
        }
        self.since = 0;
    }

    fn price(&self, b: u8) -> u32 {
        self.prices[usize::from(b)]
    }

    fn add(&mut self, b: u8) {
        self.counts[usize::from(b)] += 2;
        self.total += 2;
        if self.total > 1 << 16 {
            self.total = 0;
            for c in &mut self.counts {
                *c = c.div_ceil(2);
                self.total += *c;
            }
        }
        self.since += 1;
        if self.since >= Self::REFRESH {
            self.refresh();
        }
    }
}

/// The cheapest way found to a position of the parse window.
#[derive(Clone, Copy)]
struct Node {
    /// Estimated bits (1/16) from the window's start.
    cost: u32,
    /// Where the last item starts (window offset).
    from: u32,
    item: Item,
    /// The distances that way leaves for the next item.
    rep0: u32,
    last_off: i64,
}

/// Positions one parse window settles; a match this long ends the window where it starts.
const OPT_SPAN: usize = 1024;
const NICE: usize = 128;
/// Inside a match at least this long, the next positions take its candidates one byte on
/// instead of searching the history again.
const SKIP_INSIDE: usize = 10;
/// A source match still this long one byte on is not searched for again.
const SOURCE_KEEP: u32 = 16;

/// Choose the items of the literal region `new[start..end]` (`st.diag` is the source cursor
/// at `start`): literals, target-history matches and source matches, the cheapest sequence
/// by the estimated prices above over each window of [`OPT_SPAN`] positions (every length of
/// every candidate at every position, the repeat distances carried along each way), as
/// LZMA's optimal parser and HDiffPatch's covers choose by price. Long runs of positions
/// where nothing matched are searched shallowly and sparsely (incompressible content).
/// Returns the items and the last target distance and source offset they leave.
pub(super) fn plan(
    lz: &mut Lz<'_>,
    src: &SourceIndex<'_>,
    lits: &mut LitPrices,
    start: usize,
    end: usize,
    mut st: ParseState,
) -> (Vec<Item>, u32, i64) {
    let cursor = st.diag;
    let new = lz.new;
    let full_depth = chain_depth(new.len());
    let mut items = Vec::new();
    let mut nodes: Vec<Node> = Vec::new();
    let mut cands = Vec::new();
    let mut i = start;
    // Positions in a row where nothing of four bytes or more matched.
    let mut quiet = 0usize;
    while i < end {
        let span = OPT_SPAN.min(end - i);
        let cap = (span + NICE).min(end - i);
        nodes.clear();
        nodes.resize(
            cap + 1,
            Node {
                cost: u32::MAX,
                from: 0,
                item: Item::Lit,
                rep0: st.rep0,
                last_off: st.last_off,
            },
        );
        nodes[0].cost = 0;
        let mut stop = span;
        let mut skip_to = 0usize;
        let mut src_prev: Option<(i64, u32)> = None;
        let mut p = 0;
        while p < stop {
            let n = nodes[p];
            let at = i + p;
            let max = cap - p;
            let relax = |nodes: &mut [Node], item: Item, cost: u32| {
                let q = p + item.len();
                if cost < nodes[q].cost {
                    let (rep0, last_off) = match item {
                        Item::Target(d, _) => (d, n.last_off),
                        Item::Source(o, _) => (n.rep0, o),
                        Item::Lit => (n.rep0, n.last_off),
                    };
                    nodes[q] = Node {
                        cost,
                        from: p as u32,
                        item,
                        rep0,
                        last_off,
                    };
                }
            };
            relax(&mut nodes, Item::Lit, n.cost + lits.price(new[at]));
            let step = (quiet / 64).clamp(1, 8);
            if step > 1 && !quiet.is_multiple_of(step) && p >= skip_to {
                quiet += 1;
                p += 1;
                continue;
            }
            let depth = if quiet >= 16 { 4 } else { full_depth };
            let mut longest = 0usize;
            if n.rep0 > 0 && n.rep0 as usize <= at && max >= MIN_MATCH as usize {
                let l = lz.common(at - n.rep0 as usize, at, max);
                for len in MIN_MATCH..=l as u32 {
                    let c = n.cost + price::target(n.rep0, n.rep0, len);
                    relax(&mut nodes, Item::Target(n.rep0, len), c);
                }
                longest = l;
            }
            if p >= skip_to {
                lz.find_all(at, max, depth, &mut cands);
            } else {
                // Inside a long match found before: its candidates, one byte on.
                cands.retain_mut(|c| {
                    c.1 = c.1.saturating_sub(1).min(max as u32);
                    c.1 >= 3
                });
            }
            let mut from_len = 3;
            for &(d, l) in &cands {
                for len in from_len..=l {
                    let c = n.cost + price::target(d, n.rep0, len);
                    relax(&mut nodes, Item::Target(d, len), c);
                }
                from_len = l + 1;
                longest = longest.max(l as usize);
            }
            let diag = cursor + (at - start) as u64;
            let deep = p >= skip_to && src_prev.is_none_or(|(_, l)| l <= SOURCE_KEEP);
            let mut found = src.find(new, at, max, diag, n.last_off, deep);
            if !deep {
                // The source match found before, one byte on.
                if let Some((o, l)) = src_prev {
                    if l > 3 && found.is_none_or(|f| f.1 < l - 1) {
                        found = Some((o, (l - 1).min(max as u32)));
                    }
                }
            }
            src_prev = found;
            if let Some((off, l)) = found {
                for len in MIN_MATCH..=l {
                    let c = n.cost + price::source(off, n.last_off, len);
                    relax(&mut nodes, Item::Source(off, len), c);
                }
                longest = longest.max(l as usize);
            }
            quiet = if longest >= 4 { 0 } else { quiet + 1 };
            if longest >= SKIP_INSIDE && p >= skip_to {
                skip_to = p + longest - 2;
            }
            if longest >= NICE {
                // Take the long match from here: nothing past it is compared.
                stop = p + 1;
            }
            p += 1;
        }
        // The window ends at the farthest position reached (past `span` only by a match),
        // or, cut at a long match, where the longest item from the cut reaches.
        let mut e = cap;
        if stop < span {
            e = (stop..=cap)
                .filter(|&q| nodes[q].cost != u32::MAX && nodes[q].from as usize == stop - 1)
                .max()
                .unwrap_or(stop);
        }
        while nodes[e].cost == u32::MAX {
            e -= 1;
        }
        let from = items.len();
        let mut q = e;
        while q > 0 {
            items.push(nodes[q].item);
            q = nodes[q].from as usize;
        }
        items[from..].reverse();
        let mut at = i;
        for it in &items[from..] {
            match *it {
                Item::Target(d, _) => st.rep0 = d,
                Item::Source(off, _) => st.last_off = off,
                Item::Lit => lits.add(new[at]),
            }
            at += it.len();
        }
        i += e;
    }
    (items, st.rep0, st.last_off)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::testkit::{self, Rng};

    fn random(rng: &mut Rng, n: usize) -> Vec<u8> {
        (0..n).map(|_| rng.next_u64() as u8).collect()
    }

    /// Parse `new[start..]` against `old` and check every item: together they cover the
    /// region exactly, a target match repeats bytes already written (overlap allowed), a
    /// source match equals the source at its offset from the diagonal.
    fn checked_parse(old: &[u8], new: &[u8], start: usize) -> Vec<Item> {
        let mut lz = Lz::new(new);
        let src = SourceIndex::new(old);
        let st = ParseState {
            rep0: 0,
            diag: 0,
            last_off: 0,
        };
        let (items, ..) = plan(&mut lz, &src, &mut LitPrices::new(), start, new.len(), st);
        let mut pos = start;
        for it in &items {
            match *it {
                Item::Lit => {}
                Item::Target(d, l) => {
                    assert!(l >= MIN_MATCH && d as usize <= pos, "{it:?} at {pos}");
                    for k in pos..pos + l as usize {
                        assert_eq!(new[k], new[k - d as usize], "{it:?} at {pos}");
                    }
                }
                Item::Source(off, l) => {
                    let at = (pos - start) as i64 + off;
                    assert!(l >= MIN_MATCH && at >= 0, "{it:?} at {pos}");
                    let at = at as usize;
                    assert_eq!(old[at..at + l as usize], new[pos..pos + l as usize]);
                }
            }
            pos += it.len();
        }
        assert_eq!(pos, new.len());
        items
    }

    #[test]
    fn the_parse_covers_its_region_with_valid_items() {
        let mut rng = Rng::new(7);
        let base = testkit::firmware(11, 40_000);
        let evolved = testkit::evolve(&base, 3);
        let noise = random(&mut rng, 5_000);
        let mut zeros_then_code = vec![0u8; 3_000];
        zeros_then_code.extend_from_slice(&base[..9_000]);
        // Repeats inside the target, far and near, and overlapping runs.
        let mut self_similar = base[..6_000].to_vec();
        self_similar.extend_from_slice(&base[100..4_100]);
        self_similar.extend_from_slice(&[0x55; 700]);
        self_similar.extend_from_slice(&base[2_000..2_500]);
        let cases: [(&[u8], &[u8], usize); 5] = [
            (&base, &evolved, 0),
            (&base, &evolved, 12_345),
            (&[], &self_similar, 0),
            (&noise, &zeros_then_code, 0),
            (&base[..50], &noise, 0),
        ];
        let mut kinds = [0usize; 3];
        for (old, new, start) in cases {
            for it in checked_parse(old, new, start) {
                kinds[match it {
                    Item::Lit => 0,
                    Item::Target(..) => 1,
                    Item::Source(..) => 2,
                }] += 1;
            }
        }
        // The cases exercise all three kinds of item.
        assert!(kinds.iter().all(|&k| k > 100), "{kinds:?}");
    }

    /// Two literals and one long match cost less than two matches; a greedy parse (or one
    /// step of lazy evaluation) takes the first match it sees at the region's start (P,
    /// then the rest of Q).
    #[test]
    fn the_parse_gives_up_a_match_for_a_cheaper_whole() {
        let mut rng = Rng::new(3);
        let r = random(&mut rng, 16);
        let s = random(&mut rng, 41);
        let mut new = random(&mut rng, 1_000);
        new.extend_from_slice(&r[..8]); // P = r0..r7 (shorter than SKIP_INSIDE)
        new.extend_from_slice(&random(&mut rng, 500));
        let q_at = new.len();
        new.extend_from_slice(&r[2..]); // Q = r2..r15 s0..s40
        new.extend_from_slice(&s);
        new.extend_from_slice(&random(&mut rng, 500));
        let start = new.len();
        new.extend_from_slice(&r);
        new.extend_from_slice(&s);
        let items = checked_parse(&[], &new, start);
        let q_dist = (start + 2 - q_at) as u32;
        assert!(
            matches!(
                items[..],
                [Item::Lit, Item::Lit, Item::Target(d, 55)] if d == q_dist
            ),
            "{items:?}"
        );
    }
}
