//! The cover finder and the encoder on any pair of images: the first two bytes say where the
//! old image ends, the rest is split into old and new, and the new image is also built from
//! pieces of the old one (so the finder meets moved, repeated and degenerate data). A delta
//! must always be made and must always decode to the new image.
#![no_main]
use bluesphere_core::delta::{DeltaDecoder, Params, SliceIo};
use bluesphere_core::diff::make_delta;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((head, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let cut = usize::from(u16::from_le_bytes(*head)) % (rest.len() + 1);
    let (old, tail) = rest.split_at(cut);
    // The tail alternates: a byte of new data, or (high bit set) a reference to old bytes.
    let mut new = Vec::new();
    let mut k = 0;
    while k < tail.len() {
        let b = tail[k];
        if b & 0x80 != 0 && !old.is_empty() && k + 2 < tail.len() {
            let at = usize::from(tail[k + 1]) * 61 % old.len();
            let len = (usize::from(tail[k + 2]) * 3).min(old.len() - at);
            new.extend_from_slice(&old[at..at + len]);
            k += 3;
        } else {
            new.push(b);
            k += 1;
        }
    }
    let params = Params {
        block_log2: 12,
        window_log2: 9,
        ptr_log2: 8,
        ..Params::SMALL
    };
    let patch = match make_delta(old, &new, params) {
        Ok(p) => p,
        Err(e) => panic!("no delta for a valid pair: {e}"),
    };
    let mut out = vec![0u8; new.len()];
    let mut io = SliceIo::new(old, &mut out);
    let mut d: DeltaDecoder = DeltaDecoder::new(old.len() as u64);
    if let Err(e) = d
        .push_all(&patch, &mut io)
        .map_err(|e| format!("{e:?}"))
        .and_then(|()| d.finish().map_err(|e| format!("{e:?}")))
    {
        panic!("our own delta does not decode: {e}");
    }
    assert_eq!(out, new, "the delta decodes to other bytes");
});
