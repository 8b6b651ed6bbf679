//! Regenerate `assets/` (synthetic sample images; no third-party firmware in the repo):
//! `cargo run -p bluesphere-core --example gen_assets -- assets`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point
use bluesphere_core::testkit::{evolve, firmware, to_ihex, BASE};

fn main() -> std::io::Result<()> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "assets".into());
    let v1 = firmware(2026, 64 * 1024);
    let v2 = evolve(&v1, 2026);
    std::fs::write(format!("{dir}/sample-v1.0.0.bin"), &v1)?;
    std::fs::write(format!("{dir}/sample-v1.1.0.bin"), &v2)?;
    std::fs::write(format!("{dir}/sample-v1.1.0.hex"), to_ihex(&v2, BASE))?;
    Ok(())
}
