//! The package parser and verifier must never panic, whatever the bytes.
#![no_main]
use bluesphere_core::package::{Header, Package};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Header::parse(data);
    if let Ok(p) = Package::parse(data) {
        for c in p.manifest.components().flatten() {
            let _ = c.dependencies().count();
            let _ = p.payload(&c);
        }
        let key = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).map(|k| *k.verifying_key());
        if let Ok(k) = key {
            let _ = p.verify(&[k]);
        }
    }
});
