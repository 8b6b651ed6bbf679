//! Structure-aware: take a valid BSD3 stream (both profiles, several blocks, all item kinds)
//! and apply the fuzzer's edits (position, xor) to it; the decoder must refuse or produce
//! some output, never panic or hang. Reaches deep into block decoding, which random bytes
//! rarely do.
#![no_main]
use std::sync::OnceLock;

use bluesphere_core::delta::{DeltaDecoder, Params, SliceIo};
use bluesphere_core::diff::make_delta;
use bluesphere_core::testkit::{evolve, firmware};
use libfuzzer_sys::fuzz_target;

struct Case {
    old: Vec<u8>,
    new_len: usize,
    patches: [Vec<u8>; 2],
}

fn case() -> &'static Case {
    static C: OnceLock<Case> = OnceLock::new();
    C.get_or_init(|| {
        let old = firmware(77, 40_000);
        let new = evolve(&old, 77);
        let tiny = Params {
            block_log2: 12,
            window_log2: 9,
            ptr_log2: 8,
            ..Params::SMALL
        };
        let patches = [
            make_delta(&old, &new, tiny).unwrap_or_default(),
            make_delta(&old, &new, Params::BEST).unwrap_or_default(),
        ];
        Case {
            old,
            new_len: new.len(),
            patches,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let c = case();
    let Some((&which, edits)) = data.split_first() else {
        return;
    };
    let mut stream = c.patches[usize::from(which & 1)].clone();
    if stream.is_empty() {
        return;
    }
    for e in edits.chunks_exact(3) {
        let pos = (usize::from(e[0]) << 8 | usize::from(e[1])) * 7 % stream.len();
        stream[pos] ^= e[2] | 1;
    }
    let mut out = vec![0u8; c.new_len + 4096];
    let mut io = SliceIo::new(&c.old, &mut out);
    let mut d: DeltaDecoder = DeltaDecoder::new(c.old.len() as u64);
    for chunk in stream.chunks(usize::from(which >> 1) + 1) {
        if d.push_all(chunk, &mut io).is_err() {
            return;
        }
    }
    let _ = d.finish();
});
