//! BSD1 encoder (host side): turns a list of segments (from the matcher) into blocks.

use super::model::Model;
use super::{Params, StreamHeader, MAX_LIT_TABLES};
use crate::rc::RangeEncoder;

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
}

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
    params.validate()?;
    let target_size =
        u32::try_from(new.len()).map_err(|_| EncodeError::TooLarge(new.len() as u64))?;
    let source_size =
        u32::try_from(old.len()).map_err(|_| EncodeError::TooLarge(old.len() as u64))?;
    let total: u64 = segments.iter().map(Segment::len).sum();
    if total != new.len() as u64 {
        return Err(EncodeError::BadSegments("segments do not cover the target"));
    }
    for s in segments {
        if let Segment::Add { len, old: o } = *s {
            if o + len > old.len() as u64 {
                return Err(EncodeError::BadSegments("segment beyond the source"));
            }
        }
    }
    let header = StreamHeader {
        params,
        target_size,
        source_size,
    };
    let mut out = header.to_bytes().to_vec();
    let bs = params.block_size();

    // Walk segments, cutting them at block boundaries.
    let mut seg_iter = segments.iter().copied().filter(|s| s.len() > 0);
    let mut pending: Option<Segment> = None;
    let mut pos = 0u64;
    while pos < new.len() as u64 {
        let end = (pos + bs).min(new.len() as u64);
        let mut block: Vec<Segment> = Vec::new();
        let mut at = pos;
        while at < end {
            let Some(seg) = pending.take().or_else(|| seg_iter.next()) else {
                return Err(EncodeError::BadSegments("segments end early"));
            };
            let room = end - at;
            let (head, tail) = split(seg, room);
            at += head.len();
            push_merged(&mut block, head);
            pending = tail;
        }
        encode_block(&mut out, old, new, pos, &block, params)?;
        pos = end;
    }
    Ok(out)
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

fn push_merged(block: &mut Vec<Segment>, seg: Segment) {
    match (block.last_mut(), seg) {
        (Some(Segment::Lit { len }), Segment::Lit { len: l2 }) => *len += l2,
        (Some(Segment::Add { len, old }), Segment::Add { len: l2, old: o2 })
            if *old + *len == o2 =>
        {
            *len += l2
        }
        _ => block.push(seg),
    }
}

fn controls(block: &[Segment]) -> Result<Vec<Control>, EncodeError> {
    let mut out = Vec::new();
    let mut i = 0;
    let too_big = || EncodeError::BadSegments("segment longer than a block");
    while i < block.len() {
        let (add, add_old) = match block.get(i) {
            Some(Segment::Add { len, old }) => {
                i += 1;
                (u32::try_from(*len).map_err(|_| too_big())?, *old)
            }
            _ => (0, 0),
        };
        let lit = match block.get(i) {
            Some(Segment::Lit { len }) => {
                i += 1;
                u32::try_from(*len).map_err(|_| too_big())?
            }
            _ => 0,
        };
        out.push(Control { add, add_old, lit });
    }
    Ok(out)
}

fn encode_block(
    out: &mut Vec<u8>,
    old: &[u8],
    new: &[u8],
    start: u64,
    block: &[Segment],
    params: Params,
) -> Result<(), EncodeError> {
    let ctrls = controls(block)?;
    let src_start = ctrls.iter().find(|c| c.add > 0).map_or(0, |c| c.add_old);
    let mut rc = RangeEncoder::new();
    let mut model: Model<MAX_LIT_TABLES> = Model::new(params.lc, params.lp);
    let mut cur_src = src_start;
    let mut pos = start;
    for (k, c) in ctrls.iter().enumerate() {
        if c.add > 0 && c.add_old != cur_src {
            return Err(EncodeError::BadSegments("source cursor out of step"));
        }
        let after_add = cur_src + u64::from(c.add);
        let next_old = ctrls
            .get(k + 1..)
            .and_then(|rest| rest.iter().find(|n| n.add > 0))
            .map(|n| n.add_old);
        let seek = match next_old {
            Some(o) => o as i64 - after_add as i64,
            None => 0,
        };
        model.add_len.encode(&mut rc, c.add);
        model.copy_len.encode(&mut rc, c.lit);
        model.encode_seek(&mut rc, seek);
        for i in 0..u64::from(c.add) {
            let o = old[(cur_src + i) as usize];
            let n = new[(pos + i) as usize];
            model.encode_diff(&mut rc, pos + i, o, n);
        }
        pos += u64::from(c.add);
        for i in 0..u64::from(c.lit) {
            model.encode_lit(&mut rc, pos + i, new[(pos + i) as usize]);
        }
        pos += u64::from(c.lit);
        cur_src = (after_add as i64 + seek) as u64;
    }
    let bytes = rc.finish();
    let len = u32::try_from(bytes.len()).map_err(|_| EncodeError::TooLarge(bytes.len() as u64))?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&(src_start as u32).to_le_bytes());
    out.extend_from_slice(&bytes);
    Ok(())
}
