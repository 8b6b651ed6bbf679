//! Delta codec: round trips (property tests), chunking, resume, and hostile streams.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

use bluesphere_core::delta::{
    DeltaDecoder, DeltaError, Params, SliceIo, SmallDeltaDecoder, StreamHeader,
};
use bluesphere_core::diff::make_delta;
use bluesphere_core::testkit::{evolve, firmware, Rng};
use proptest::prelude::*;

const TINY_BLOCKS: Params = Params {
    lc: 1,
    lp: 1,
    block_log2: 12,
    window_log2: 9,
    ptr_log2: 8,
    ht_log2: 11,
};

fn apply(old: &[u8], patch: &[u8], target_len: usize, chunk: usize) -> Result<Vec<u8>, String> {
    let mut out = vec![0u8; target_len];
    let mut io = SliceIo::new(old, &mut out);
    let mut d: DeltaDecoder = DeltaDecoder::new(old.len() as u64);
    for c in patch.chunks(chunk.max(1)) {
        d.push_all(c, &mut io).map_err(|e| e.to_string())?;
    }
    d.finish().map_err(|e| e.to_string())?;
    if io.written() != target_len {
        return Err("short output".into());
    }
    Ok(out)
}

#[derive(Debug, Clone)]
enum Edit {
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Change(usize, u8),
    Move(usize, usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..200))
            .prop_map(|(a, v)| Edit::Insert(a, v)),
        (any::<usize>(), 1usize..300).prop_map(|(a, n)| Edit::Delete(a, n)),
        (any::<usize>(), any::<u8>()).prop_map(|(a, b)| Edit::Change(a, b)),
        (any::<usize>(), any::<usize>(), 1usize..500).prop_map(|(a, b, n)| Edit::Move(a, b, n)),
    ]
}

fn mutate(old: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut v = old.to_vec();
    for e in edits {
        let len = v.len().max(1);
        match e {
            Edit::Insert(a, ins) => {
                let at = a % (v.len() + 1);
                v.splice(at..at, ins.iter().copied());
            }
            Edit::Delete(a, n) => {
                let at = a % len;
                let end = (at + n).min(v.len());
                if at < end {
                    v.drain(at..end);
                }
            }
            Edit::Change(a, b) => {
                if !v.is_empty() {
                    let at = a % len;
                    v[at] = *b;
                }
            }
            Edit::Move(a, b, n) => {
                let at = a % len;
                let end = (at + n).min(v.len());
                if at < end {
                    let piece: Vec<u8> = v.drain(at..end).collect();
                    let to = b % (v.len() + 1);
                    v.splice(to..to, piece);
                }
            }
        }
    }
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// apply(diff(a, b), a) == b for random images and random edits, both profiles, any chunking.
    #[test]
    fn roundtrip_mutated(old in prop::collection::vec(any::<u8>(), 0..12_000),
                         edits in prop::collection::vec(edit(), 0..12),
                         small in any::<bool>(), chunk in 1usize..5000) {
        let new = mutate(&old, &edits);
        let params = if small { Params::SMALL } else { TINY_BLOCKS };
        let patch = make_delta(&old, &new, params).unwrap();
        prop_assert_eq!(apply(&old, &patch, new.len(), chunk).unwrap(), new);
    }

    /// Unrelated random images (no matches at all) and empty ones.
    #[test]
    fn roundtrip_unrelated(old in prop::collection::vec(any::<u8>(), 0..3000),
                           new in prop::collection::vec(any::<u8>(), 0..9000)) {
        let patch = make_delta(&old, &new, TINY_BLOCKS).unwrap();
        prop_assert_eq!(apply(&old, &patch, new.len(), 777).unwrap(), new);
    }

    /// Firmware-like code with shifted functions and relocated pointers.
    #[test]
    fn roundtrip_shifted_code(seed in any::<u64>(), size in 4096usize..60_000) {
        let old = firmware(seed, size);
        let new = evolve(&old, seed);
        let patch = make_delta(&old, &new, TINY_BLOCKS).unwrap();
        prop_assert_eq!(apply(&old, &patch, new.len(), 4093).unwrap(), new.clone());
        // And it is a real delta: much smaller than the image.
        prop_assert!(patch.len() < new.len() / 4, "patch {} for {}", patch.len(), new.len());
    }

    /// Code full of absolute pointers and relative calls, moved by random insertions (the
    /// pointer model's home ground), with random extra edits, both profiles with pointer
    /// tables, any chunking.
    #[test]
    fn roundtrip_moved_program(seed in any::<u64>(), funcs in 50usize..600,
                               grow in prop::collection::vec((any::<usize>(), 1usize..80), 0..10),
                               edits in prop::collection::vec(edit(), 0..4),
                               best in any::<bool>(), chunk in 1usize..3000) {
        let old = program(seed, funcs, &[]);
        let mut g = vec![0usize; funcs];
        for (at, n) in grow {
            g[at % funcs] = n;
        }
        let new = mutate(&program(seed, funcs, &g), &edits);
        let params = if best { Params::BEST } else { TINY_BLOCKS };
        let patch = make_delta(&old, &new, params).unwrap();
        prop_assert_eq!(apply(&old, &patch, new.len(), chunk).unwrap(), new);
    }

    /// A damaged stream is an error or a wrong output, never a panic or a hang; with the
    /// package's target hash the wrong output is caught (see package tests).
    #[test]
    fn hostile_streams_never_panic(seed in any::<u64>(), flips in 1usize..6, cut in any::<bool>()) {
        let old = firmware(seed, 20_000);
        let new = evolve(&old, seed);
        let mut patch = make_delta(&old, &new, TINY_BLOCKS).unwrap();
        let mut r = Rng::new(seed);
        for _ in 0..flips {
            let i = r.below(patch.len() as u64) as usize;
            patch[i] ^= 1 << r.below(8);
        }
        if cut {
            let n = r.below(patch.len() as u64) as usize;
            patch.truncate(n);
        }
        let _ = apply(&old, &patch, new.len() + 64, 1000);
    }
}

#[test]
fn every_truncation_is_an_error() {
    let old = firmware(7, 9000);
    let new = evolve(&old, 7);
    let patch = make_delta(&old, &new, TINY_BLOCKS).unwrap();
    for cut in 0..patch.len() {
        let r = apply(&old, &patch[..cut], new.len(), 333);
        assert!(r.is_err(), "truncated at {cut} of {} accepted", patch.len());
    }
}

#[test]
fn trailing_bytes_are_an_error() {
    let old = firmware(8, 5000);
    let new = evolve(&old, 8);
    let mut patch = make_delta(&old, &new, TINY_BLOCKS).unwrap();
    patch.push(0);
    let e = apply(&old, &patch, new.len(), 100).unwrap_err();
    assert!(e.contains("after"), "{e}");
}

#[test]
fn wrong_source_size_is_refused() {
    let old = firmware(9, 5000);
    let new = evolve(&old, 9);
    let patch = make_delta(&old, &new, TINY_BLOCKS).unwrap();
    let e = apply(&old[..4000], &patch, new.len(), 100).unwrap_err();
    assert!(e.contains("expects a source of 5000 bytes"), "{e}");
}

#[test]
fn hostile_headers() {
    let hdr = StreamHeader {
        params: Params::BEST,
        target_size: 10,
        source_size: 0,
    };
    let mut h = hdr.to_bytes();
    assert_eq!(hdr.encoded_len(), 8);
    assert_eq!(StreamHeader::parse(&h[..8]), Ok(hdr));
    h[4] = 40; // 1 TiB blocks
    assert!(matches!(
        StreamHeader::parse(&h),
        Err(DeltaError::Unsupported { .. })
    ));
    h[4] = 16;
    h[2] = 4 | (4 << 4); // lc + lp = 8
    assert!(matches!(
        StreamHeader::parse(&h),
        Err(DeltaError::Unsupported { .. })
    ));
    h[2] = 2 | (2 << 4);
    h[3] = 13 | (6 << 4); // 8192-entry pointer tables
    let e = StreamHeader::parse(&h).unwrap_err().to_string();
    assert!(e.contains("pointer table"), "{e}");
    h[3] = 11 | (8 << 4); // 65536 context cells
    let e = StreamHeader::parse(&h).unwrap_err().to_string();
    assert!(e.contains("context table"), "{e}");
    let mut h = hdr.to_bytes();
    // Sizes: over 2^32 - 1, over-long, not minimal, cut short.
    for (sizes, want) in [
        (&[0xFF, 0xFF, 0xFF, 0xFF, 0x10, 0][..], "below 2^32"),
        (&[0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 0][..], "below 2^32"),
        (&[0x8A, 0x00, 0][..], "below 2^32"),
        (&[0x8A][..], "truncated"),
    ] {
        let mut b = h[..6].to_vec();
        b.extend_from_slice(sizes);
        let e = StreamHeader::parse(&b).unwrap_err().to_string();
        assert!(e.contains(want), "{sizes:02x?}: {e}");
        // The push decoder says the same, in any chunking.
        let mut out = [0u8; 16];
        for chunk in [1, 3, 64] {
            let mut io = SliceIo::new(&[], &mut out);
            let mut d: DeltaDecoder = DeltaDecoder::new(0);
            let r = b
                .chunks(chunk)
                .try_for_each(|c| d.push_all(c, &mut io).map(|_| ()));
            let e = match r {
                Err(e) => e.to_string(),
                Ok(()) => d.finish().unwrap_err().to_string(),
            };
            assert!(e.contains(want), "{sizes:02x?} by {chunk}: {e}");
        }
    }
    h[0] = b'X';
    assert_eq!(StreamHeader::parse(&h), Err(DeltaError::BadMagic));
    assert_eq!(StreamHeader::parse(&h[..5]), Err(DeltaError::Truncated));

    // A block declaring a 4 GiB compressed length is refused before anything is read, and so
    // is an over-long or non-minimal block header number.
    let small = StreamHeader {
        params: Params::SMALL,
        target_size: 100,
        source_size: 0,
    };
    for (block, want) in [
        (
            &[0xFF, 0xFF, 0xFF, 0xFF, 0x0F, 0x00][..],
            "impossible compressed length",
        ),
        (&[0x80, 0x80, 0x80, 0x80, 0x80, 0x00][..], "too long"),
        (&[0x85, 0x00, 0x00][..], "not minimally encoded"),
        (&[0x05, 0x01][..], "beyond the source"),
    ] {
        let mut s = small.to_bytes()[..small.encoded_len()].to_vec();
        s.extend_from_slice(block);
        let e = apply(&[], &s, 100, 64).unwrap_err();
        assert!(e.contains(want), "{block:02x?}: {e}");
    }
}

#[test]
fn small_decoder_refuses_big_profile() {
    let new = firmware(3, 5000);
    let patch = make_delta(&[], &new, Params::BEST).unwrap();
    let mut out = vec![0u8; new.len()];
    let mut io = SliceIo::new(&[], &mut out);
    let mut d: SmallDeltaDecoder = DeltaDecoder::new(0);
    let e = d.push_all(&patch, &mut io).unwrap_err().to_string();
    assert!(e.contains("literal tables"), "{e}");
    // A stream whose window exceeds the decoder's is refused too.
    let wide = Params {
        window_log2: 16,
        ..Params::SMALL
    };
    let patch_wide = make_delta(&[], &new, wide).unwrap();
    let mut io = SliceIo::new(&[], &mut out);
    let mut d: SmallDeltaDecoder = DeltaDecoder::new(0);
    let e = d.push_all(&patch_wide, &mut io).unwrap_err().to_string();
    assert!(e.contains("window"), "{e}");
    // So is one that asks for pointer tables the decoder did not reserve.
    let ptr = Params {
        ptr_log2: 8,
        ..Params::SMALL
    };
    let patch_ptr = make_delta(&[], &new, ptr).unwrap();
    let mut io = SliceIo::new(&[], &mut out);
    let mut d: SmallDeltaDecoder = DeltaDecoder::new(0);
    let e = d.push_all(&patch_ptr, &mut io).unwrap_err().to_string();
    assert!(e.contains("pointer-table"), "{e}");
    // The small profile decodes with the small decoder.
    let patch = make_delta(&[], &new, Params::SMALL).unwrap();
    let mut io = SliceIo::new(&[], &mut out);
    let mut d: SmallDeltaDecoder = DeltaDecoder::new(0);
    d.push_all(&patch, &mut io).unwrap();
    d.finish().unwrap();
    assert_eq!(out, new);
}

/// Stop at every block boundary, "lose power", resume from the checkpoint alone.
#[test]
fn resume_at_every_checkpoint() {
    let old = firmware(11, 40_000);
    let new = evolve(&old, 11);
    let patch = make_delta(&old, &new, TINY_BLOCKS).unwrap();
    // Collect checkpoints.
    let mut cps = Vec::new();
    {
        let mut out = vec![0u8; new.len()];
        let mut io = SliceIo::new(&old, &mut out);
        let mut d: DeltaDecoder = DeltaDecoder::new(old.len() as u64);
        for mut c in patch.chunks(97) {
            while !c.is_empty() {
                let n = d.push(c, &mut io).unwrap();
                c = &c[n..];
                if let Some(cp) = d.checkpoint() {
                    if cps.last() != Some(&cp) {
                        cps.push(cp);
                    }
                }
            }
        }
        assert!(d_done(&cps, new.len()));
    }
    assert!(cps.len() >= 5, "only {} checkpoints", cps.len());
    for cp in cps {
        let mut out = new.clone();
        // Everything after the checkpoint is garbage, as after a power cut.
        for b in &mut out[cp.target_offset as usize..] {
            *b = 0xA5;
        }
        let mut tail = vec![0u8; new.len() - cp.target_offset as usize];
        let mut io = SliceIo::new(&old, &mut tail);
        let mut d: DeltaDecoder = DeltaDecoder::resume(&patch[..16], old.len() as u64, cp).unwrap();
        for c in patch[cp.payload_offset as usize..].chunks(501) {
            d.push_all(c, &mut io).unwrap();
        }
        d.finish().unwrap();
        out[cp.target_offset as usize..].copy_from_slice(&tail);
        assert_eq!(out, new, "resume at {cp:?}");
    }
}

#[test]
fn decoder_ram_is_bounded() {
    let big = std::mem::size_of::<DeltaDecoder>();
    let small = std::mem::size_of::<SmallDeltaDecoder>();
    println!("decoder state: best profile {big} bytes, small profile {small} bytes");
    assert!(big <= 64 * 1024, "{big}");
    assert!(small <= 8 * 1024, "{small}");
}

fn d_done(cps: &[bluesphere_core::delta::Checkpoint], len: usize) -> bool {
    cps.last().map(|c| c.target_offset) == Some(len as u64)
}

/// Long stretches of equal bytes go through run mode (one bit per 64 zero differences):
/// sparse changes just before, on and after group edges, at the ends of difference runs
/// and of blocks, all round trip in any chunking, and the equal bytes cost almost nothing.
#[test]
fn run_mode_round_trips_and_equal_stretches_are_nearly_free() {
    let old = firmware(11, 1 << 20);
    let mut new = old.clone();
    let mut rng = Rng::new(5);
    let mut changed = 0;
    for base in (0..new.len()).step_by(40_000) {
        for off in [0usize, 31, 32, 33, 63, 64, 65, 96, 127, 128, 129] {
            if rng.below(3) == 0 {
                let at = (base + off).min(new.len() - 1);
                new[at] ^= 1 + rng.below(255) as u8;
                changed += 1;
            }
        }
    }
    let last = new.len() - 1;
    new[last] ^= 0x55;
    for params in [Params::BEST, Params::SMALL, TINY_BLOCKS] {
        let patch = make_delta(&old, &new, params).unwrap();
        assert!(
            patch.len() < 64 + changed * 6 + (new.len() >> params.block_log2) * 40 + 1200,
            "{params:?}: {} bytes for {changed} changed bytes",
            patch.len()
        );
        for chunk in [1, 13, 4096] {
            assert_eq!(
                apply(&old, &patch, new.len(), chunk).unwrap(),
                new,
                "{params:?}"
            );
        }
    }
}

/// A program of `funcs` functions at `base`: each a few instruction-like bytes, absolute
/// 32-bit pointers into the image (`0xB8 imm32`) and relative calls (`0xE8 rel32`, relative
/// to the next instruction) to other functions. `grow[f]` extra bytes are inserted at the
/// start of function `f` (the next version: everything after moves, every reference follows).
fn program(seed: u64, funcs: usize, grow: &[usize]) -> Vec<u8> {
    const BASE: u32 = 0x0800_0000;
    let mut r = Rng::new(seed);
    // Function bodies: (filler bytes, references as (kind, target function, offset in it)).
    // A reference: kind (0 absolute, 1 relative call), target function, offset in it.
    type Ref = (u8, usize, u32);
    let bodies: Vec<(Vec<u8>, Vec<Ref>)> = (0..funcs)
        .map(|_| {
            let filler: Vec<u8> = (0..8 + r.below(40)).map(|_| r.below(40) as u8).collect();
            let refs = (0..1 + r.below(6))
                .map(|_| {
                    (
                        r.below(2) as u8,
                        r.below(funcs as u64) as usize,
                        r.below(8) as u32,
                    )
                })
                .collect();
            (filler, refs)
        })
        .collect();
    let mut ins = Rng::new(seed ^ 0x55);
    let extra: Vec<Vec<u8>> = (0..funcs)
        .map(|f| {
            (0..grow.get(f).copied().unwrap_or(0))
                .map(|_| ins.below(256) as u8)
                .collect()
        })
        .collect();
    // Layout: where each function starts.
    let mut starts = Vec::with_capacity(funcs);
    let mut at = 0u32;
    for (f, (filler, refs)) in bodies.iter().enumerate() {
        starts.push(at);
        at += (extra[f].len() + filler.len() + refs.len() * 5) as u32;
    }
    let mut out = Vec::with_capacity(at as usize);
    for (f, (filler, refs)) in bodies.iter().enumerate() {
        out.extend_from_slice(&extra[f]);
        out.extend_from_slice(filler);
        for &(kind, to, off) in refs {
            let target = BASE + starts[to] + off;
            if kind == 0 {
                out.push(0xB8);
                out.extend_from_slice(&target.to_le_bytes());
            } else {
                out.push(0xE8);
                let next = BASE + out.len() as u32 + 4;
                out.extend_from_slice(&target.wrapping_sub(next).to_le_bytes());
            }
        }
    }
    out
}

/// Code that moved: every absolute pointer and relative call changes with its target. The
/// pointer model predicts them from pointers seen before into the same region: the delta
/// round trips in any chunking and is much smaller than without the model.
#[test]
fn moved_code_round_trips_and_pointer_prediction_pays() {
    for seed in 0..4u64 {
        let old = program(seed, 1500, &[]);
        let mut grow = vec![0usize; 1500];
        let mut r = Rng::new(seed + 100);
        for _ in 0..12 {
            grow[r.below(1500) as usize] = 1 + r.below(60) as usize;
        }
        let new = program(seed, 1500, &grow);
        let off = Params {
            ptr_log2: 0,
            ..Params::BEST
        };
        let with = make_delta(&old, &new, Params::BEST).unwrap();
        let without = make_delta(&old, &new, off).unwrap();
        for chunk in [1, 7, 4096] {
            assert_eq!(apply(&old, &with, new.len(), chunk).unwrap(), new);
            assert_eq!(apply(&old, &without, new.len(), chunk).unwrap(), new);
        }
        let small = Params {
            ptr_log2: 6,
            ..TINY_BLOCKS
        };
        let tiny = make_delta(&old, &new, small).unwrap();
        assert_eq!(apply(&old, &tiny, new.len(), 13).unwrap(), new);
        println!(
            "seed {seed}: {} bytes of moved code, delta {} B with pointer prediction, {} B without",
            new.len(),
            with.len(),
            without.len()
        );
        assert!(
            with.len() * 10 < without.len() * 8,
            "pointer prediction saved too little: {} vs {}",
            with.len(),
            without.len()
        );
    }
}
