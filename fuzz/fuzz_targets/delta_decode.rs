//! The streaming patch decoder must never panic or hang on hostile streams; the first two
//! bytes choose the chunking and the source size.
#![no_main]
use bluesphere_core::delta::{DeltaDecoder, SliceIo};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let chunk = usize::from(data[0]) + 1;
    let source: Vec<u8> = (0..usize::from(data[1]) * 64).map(|i| i as u8).collect();
    let stream = &data[2..];
    let mut out = vec![0u8; 1 << 16];
    let mut io = SliceIo::new(&source, &mut out);
    let mut d: DeltaDecoder = DeltaDecoder::new(source.len() as u64);
    for c in stream.chunks(chunk) {
        if d.push_all(c, &mut io).is_err() {
            return;
        }
    }
    let _ = d.finish();
});
