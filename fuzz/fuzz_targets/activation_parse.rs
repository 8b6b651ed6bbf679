//! Activation codes in their binary and text forms must never panic, whatever the input.
#![no_main]
use bluesphere_core::activation::Code;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Code::from_bytes(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let key = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).map(|k| *k.verifying_key());
        if let Ok(k) = key {
            if let Ok(c) = Code::from_text(text, &k) {
                let _ = c.verify("thermo", &[1, 2, 3, 4], &[k]);
            }
        }
    }
});
