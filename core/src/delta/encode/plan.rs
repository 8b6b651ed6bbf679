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
    /// Hash-chain depth to search.
    pub(super) depth: usize,
}

/// A search's best item and its score, if any.
pub(super) type Found = Option<(Item, i64)>;

/// The best item at `i` (target history or source), with its score in bits saved.
pub(super) fn best_at(
    lz: &mut Lz<'_>,
    src: &SourceIndex<'_>,
    i: usize,
    end: usize,
    st: ParseState,
) -> Found {
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
pub(super) fn plan(
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
        }
    }

    /// A block starts: the model's distances and the difference stream start over.
    pub(super) fn begin(&mut self) {
        self.rep0 = 0;
        self.last_soff = 0;
        self.dlz.reset();
        self.dv.clear();
        self.drep0 = 0;
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
