//! Deterministic synthetic firmware for tests, demos and sample assets: Thumb-like code with
//! calls between functions, literal pools of absolute addresses, strings and padding; and
//! `evolve`, which makes a plausible next version (inserted and removed code that shifts
//! everything after it, with absolute pointers relocated, and a few changed constants).
//! No third-party firmware is needed in the repository.

/// xorshift64* — small, deterministic.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded generator (seed 0 is remapped).
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// Flash base of the synthetic images.
pub const BASE: u32 = 0x0800_0000;

const WORDS: &[&str] = &[
    "ok", "error", "timeout", "sensor", "init", "config", "flash", "update", "uart", "ble",
    "retry", "ready", "failed", "version", "reset", "battery",
];

/// A synthetic image of exactly `len` bytes.
pub fn firmware(seed: u64, len: usize) -> Vec<u8> {
    let mut r = Rng::new(seed);
    let vocab: Vec<u16> = (0..256).map(|_| r.next_u64() as u16).collect();
    let mut out = Vec::with_capacity(len);
    // Vector table.
    for _ in 0..48 {
        let a = BASE + 0x200 + (r.below(len as u64 / 2) as u32 & !1) + 1;
        out.extend_from_slice(&a.to_le_bytes());
    }
    let code_end = len * 3 / 4;
    while out.len() < code_end {
        // A function: instructions, calls, then a literal pool.
        let n = 8 + r.below(120) as usize;
        for _ in 0..n {
            match r.below(10) {
                0 => {
                    // BL to somewhere: encoded as a 4-byte pair with a relative offset.
                    let off = (r.below(0x4000) as i32 - 0x2000) as u32;
                    out.extend_from_slice(
                        &(0xF000u16 | ((off >> 11) as u16 & 0x7FF)).to_le_bytes(),
                    );
                    out.extend_from_slice(&(0xF800u16 | (off as u16 & 0x7FF)).to_le_bytes());
                }
                _ => {
                    let i = (r.below(64) * r.below(4) + r.below(8)) as usize % vocab.len();
                    out.extend_from_slice(&vocab[i].to_le_bytes());
                }
            }
        }
        for _ in 0..r.below(4) {
            let a = BASE + (r.below(len as u64) as u32 & !3);
            out.extend_from_slice(&a.to_le_bytes());
        }
    }
    // Strings.
    while out.len() < len * 15 / 16 {
        let w = WORDS[r.below(WORDS.len() as u64) as usize];
        out.extend_from_slice(w.as_bytes());
        out.push(if r.below(3) == 0 { 0 } else { b' ' });
    }
    out.resize(len, 0xFF);
    out
}

/// A plausible next version of `old`: a few insertions and deletions in the code, absolute
/// pointers after each edit relocated, some constants changed.
pub fn evolve(old: &[u8], seed: u64) -> Vec<u8> {
    let mut r = Rng::new(seed ^ 0xABCD);
    let mut new = old.to_vec();
    let code_end = new.len() * 3 / 4;
    for _ in 0..1 + r.below(4) {
        let at = (r.below(code_end.max(8) as u64 - 4) as usize) & !3;
        if r.below(2) == 0 {
            let n = (4 + r.below(300) as usize) & !1;
            let ins: Vec<u8> = (0..n).map(|_| r.next_u64() as u8).collect();
            relocate(&mut new, at as u32, n as i64);
            new.splice(at..at, ins);
        } else {
            let n = ((4 + r.below(200) as usize) & !1).min(new.len().saturating_sub(at));
            relocate(&mut new, at as u32, -(n as i64));
            new.drain(at..at + n);
        }
    }
    for _ in 0..r.below(20) {
        if new.is_empty() {
            break;
        }
        let at = r.below(new.len() as u64) as usize;
        new[at] = r.next_u64() as u8;
    }
    // Keep the image size bucket (padding shrinks or grows).
    new
}

fn relocate(img: &mut [u8], at: u32, delta: i64) {
    let lim = BASE + img.len() as u32;
    for w in img.chunks_exact_mut(4) {
        let v = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
        if v >= BASE + at && v < lim {
            let nv = (i64::from(v) + delta) as u32;
            w.copy_from_slice(&nv.to_le_bytes());
        }
    }
}

/// Intel HEX text of `data` at `base` (32-byte records).
pub fn to_ihex(data: &[u8], base: u32) -> String {
    let mut recs = Vec::new();
    let mut upper = u32::MAX;
    for (i, chunk) in data.chunks(32).enumerate() {
        let addr = base + (i * 32) as u32;
        if addr >> 16 != upper {
            upper = addr >> 16;
            recs.push(ihex::Record::ExtendedLinearAddress(upper as u16));
        }
        recs.push(ihex::Record::Data {
            offset: (addr & 0xFFFF) as u16,
            value: chunk.to_vec(),
        });
    }
    recs.push(ihex::Record::EndOfFile);
    ihex::create_object_file_representation(&recs).unwrap_or_default()
}

/// What [`package`] puts in its one component.
#[derive(Debug, Clone, Copy)]
pub struct PackageFor<'a> {
    /// Product id.
    pub product: &'a str,
    /// Hardware id.
    pub hardware: &'a str,
    /// Installed image (a delta) or `None` (a full image).
    pub old: Option<&'a [u8]>,
    /// New image.
    pub new: &'a [u8],
    /// New version (the delta's base is `1.0.0`).
    pub version: &'a str,
    /// Security counter.
    pub counter: u32,
    /// Coding profile.
    pub params: crate::delta::Params,
}

impl<'a> PackageFor<'a> {
    /// The whole of `new` (no delta) for the tests' product (`thermo`, `revB`): version
    /// 1.1.0, counter 1, [`crate::delta::Params::BEST`]; change fields with `..`.
    pub fn full(new: &'a [u8]) -> Self {
        Self {
            product: "thermo",
            hardware: "revB",
            old: None,
            new,
            version: "1.1.0",
            counter: 1,
            params: crate::delta::Params::BEST,
        }
    }
}

/// A signed one-component (`main`) package, for tests and benches.
pub fn package(
    key: &p256::ecdsa::SigningKey,
    p: PackageFor<'_>,
) -> Result<Vec<u8>, crate::package::build::BuildError> {
    use crate::package::build::{build_package, ComponentSpec, PackageSpec};
    build_package(
        &PackageSpec {
            product_id: p.product.into(),
            hardware_id: p.hardware.into(),
            created: 1,
            components: vec![ComponentSpec {
                name: "main".into(),
                from_version: p.old.map(|_| "1.0.0".into()),
                to_version: p.version.into(),
                security_counter: p.counter,
                load_address: 0,
                old: p.old.map(<[u8]>::to_vec),
                new: p.new.to_vec(),
                params: p.params,
                dependencies: vec![],
            }],
        },
        key,
        &mut |_| {},
    )
}
