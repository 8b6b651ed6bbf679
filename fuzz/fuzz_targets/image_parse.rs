//! Image input (BIN, Intel HEX, ELF; with and without an address range) must never panic or
//! allocate without bound, whatever the bytes.
#![no_main]
use bluesphere_core::image::{load, load_with, segments, ImageFormat, LoadOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = load(data, None);
    for f in [ImageFormat::Hex, ImageFormat::Elf] {
        let _ = load(data, Some(f));
    }
    let _ = segments(data);
    // The first 8 bytes choose an address range.
    if data.len() > 8 {
        let a = u64::from(u32::from_le_bytes([data[0], data[1], data[2], data[3]]));
        let n = u64::from(u16::from_le_bytes([data[4], data[5]]));
        let _ = load_with(
            &data[8..],
            &LoadOptions {
                format: None,
                range: Some(a..a + n + 1),
            },
        );
    }
});
