//! Protocol frames and messages, and activation codes, from hostile bytes: never a panic;
//! whatever decodes re-encodes to the same message.
#![no_main]
use bluesphere_core::activation::Code;
use bluesphere_core::proto::{FrameDecoder, Request, Response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut d: FrameDecoder<300> = FrameDecoder::new();
    let mut rest = data;
    while !rest.is_empty() {
        let (n, f) = d.feed(rest);
        rest = &rest[n..];
        if let Some(Ok(frame)) = f {
            let mut out = [0u8; 700];
            if let Ok((seq, r)) = Request::parse(frame) {
                let len = r.encode(seq, &mut out).expect("fits");
                let mut d2: FrameDecoder<700> = FrameDecoder::new();
                let (_, again) = d2.feed(&out[..len]);
                assert_eq!(Request::parse(again.expect("frame").expect("ok")), Ok((seq, r)));
            }
            if let Ok((seq, r)) = Response::parse(frame) {
                let len = r.encode(seq, &mut out).expect("fits");
                let mut d2: FrameDecoder<700> = FrameDecoder::new();
                let (_, again) = d2.feed(&out[..len]);
                assert_eq!(Response::parse(again.expect("frame").expect("ok")), Ok((seq, r)));
            }
        }
    }
    if let Ok(c) = Code::from_bytes(data) {
        assert_eq!(Code::from_bytes(&c.to_bytes()), Ok(c));
    }
    static KEY: std::sync::OnceLock<Option<p256::ecdsa::VerifyingKey>> = std::sync::OnceLock::new();
    let key = KEY.get_or_init(|| {
        p256::ecdsa::SigningKey::from_slice(&[7u8; 32])
            .ok()
            .map(|k| *k.verifying_key())
    });
    if let (Ok(text), Some(k)) = (std::str::from_utf8(data), key) {
        let _ = Code::from_text(text, k);
    }
});
