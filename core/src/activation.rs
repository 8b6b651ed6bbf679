//! Activation codes: one chip, one code (`docs/ACTIVATION.md`).
//!
//! A code is an ECDSA P-256 / SHA-256 signature over a message built from a domain tag, the
//! product id, the chip's unique id and optional feature flags and expiry. The device rebuilds
//! the message from its own UID register and verifies the code with the public key alone; a
//! code moved to another chip, product or feature set fails.
//!
//! Signed message (never stored; both sides rebuild it):
//!
//! | field | bytes |
//! |---|---|
//! | domain tag `BlueSphere activation v1` | 24 |
//! | product id length, product id | 1 + 1..=64 |
//! | UID length, UID | 1 + 1..=32 |
//! | features (u32 LE) | 4 |
//! | expiry, days since 1970-01-01 (u32 LE, 0 = none) | 4 |
//!
//! Binary form (80 bytes, for flash or OTP):
//!
//! | offset | bytes | field |
//! |---|---|---|
//! | 0 | 2 | magic `AC` |
//! | 2 | 1 | format `1` |
//! | 3 | 1 | zero |
//! | 4 | 4 | features (u32 LE) |
//! | 8 | 4 | expiry days (u32 LE) |
//! | 12 | 4 | key id: first 4 bytes of the package key id of the signing key |
//! | 16 | 64 | signature `r ‖ s` |
//!
//! Text form (labels, QR codes, support calls): Crockford base32 of `kind ‖ [features ‖
//! expiry] ‖ signature` (kind 1 = no features and no expiry, 2 = with both), in groups of five
//! separated by `-`, then one check symbol (the value mod 37, Crockford's `0-9A-Z*~$=U`). The
//! check symbol catches every single-symbol substitution and every adjacent transposition.
//! Decoding ignores case and hyphens and reads `I`/`L` as `1` and `O` as `0`.

use p256::ecdsa::signature::DigestVerifier;
use p256::ecdsa::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};

/// Domain separation tag.
pub const DOMAIN: &[u8; 24] = b"BlueSphere activation v1";
/// Binary code length.
pub const CODE_LEN: usize = 80;
/// Longest UID (bytes).
pub const MAX_UID: usize = 32;
/// Longest product id (bytes).
pub const MAX_PRODUCT: usize = 64;
/// Longest text form: kind 2 = 73 bytes -> 117 symbols, 23 group hyphens, a hyphen and the
/// check symbol.
pub const MAX_TEXT: usize = 142;

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const CHECK: &[u8; 37] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ*~$=U";

/// What is wrong with a UID, product or code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    /// Empty or longer than 32 bytes.
    #[error("a chip UID must be 1 to 32 bytes, got {0}")]
    UidLength(usize),
    /// All zero or all 0xFF: an unprogrammed or unreadable ID register.
    #[error("the chip UID is all {0:#04x}: an unprogrammed or unreadable ID register")]
    UidBlank(u8),
    /// Product id empty or longer than 64 bytes.
    #[error("the product id must be 1 to 64 bytes")]
    Product,
    /// Not a code (wrong length, magic or format).
    #[error("not an activation code: {0}")]
    Malformed(&'static str),
    /// A character outside Crockford base32.
    #[error("character {0:?} at position {1} is not a code character")]
    BadChar(char, usize),
    /// The check symbol does not match: a typo.
    #[error("the check symbol does not match: the code was mistyped")]
    Check,
    /// The signature does not verify for this UID, product and features.
    #[error("the code is not valid for this chip and product")]
    Invalid,
    /// No key with the code's key id.
    #[error("the code was made with a key this verifier does not have")]
    UnknownKey,
}

/// Feature flags and expiry carried by a code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Terms {
    /// Feature bits (product-defined).
    pub features: u32,
    /// Expiry in days since 1970-01-01 (0 = none).
    pub expiry_days: u32,
}

/// A decoded code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Code {
    /// Terms.
    pub terms: Terms,
    /// First 4 bytes of the signing key's id.
    pub key_id: [u8; 4],
    /// Signature.
    pub signature: [u8; 64],
}

/// Check a UID: 1..=32 bytes, not all 0x00, not all 0xFF.
pub fn check_uid(uid: &[u8]) -> Result<(), CodeError> {
    if uid.is_empty() || uid.len() > MAX_UID {
        return Err(CodeError::UidLength(uid.len()));
    }
    for blank in [0x00, 0xFF] {
        if uid.iter().all(|&b| b == blank) {
            return Err(CodeError::UidBlank(blank));
        }
    }
    Ok(())
}

/// SHA-256 of the signed message.
pub fn message_digest(product: &str, uid: &[u8], terms: Terms) -> Result<Sha256, CodeError> {
    check_uid(uid)?;
    if product.is_empty() || product.len() > MAX_PRODUCT {
        return Err(CodeError::Product);
    }
    let mut h = Sha256::new();
    h.update(DOMAIN);
    h.update([product.len() as u8]);
    h.update(product.as_bytes());
    h.update([uid.len() as u8]);
    h.update(uid);
    h.update(terms.features.to_le_bytes());
    h.update(terms.expiry_days.to_le_bytes());
    Ok(h)
}

fn key_id4(key: &VerifyingKey) -> [u8; 4] {
    let id = crate::package::key_id(key);
    [id[0], id[1], id[2], id[3]]
}

impl Code {
    /// The 80-byte binary form.
    pub fn to_bytes(&self) -> [u8; CODE_LEN] {
        let mut b = [0u8; CODE_LEN];
        b[0..2].copy_from_slice(b"AC");
        b[2] = 1;
        b[4..8].copy_from_slice(&self.terms.features.to_le_bytes());
        b[8..12].copy_from_slice(&self.terms.expiry_days.to_le_bytes());
        b[12..16].copy_from_slice(&self.key_id);
        b[16..80].copy_from_slice(&self.signature);
        b
    }

    /// Parse the binary form.
    pub fn from_bytes(b: &[u8]) -> Result<Code, CodeError> {
        let b: &[u8; CODE_LEN] = b
            .try_into()
            .map_err(|_| CodeError::Malformed("a binary code is 80 bytes"))?;
        if &b[0..2] != b"AC" || b[2] != 1 || b[3] != 0 {
            return Err(CodeError::Malformed("bad magic or format"));
        }
        let le = |s: &[u8]| u32::from_le_bytes([s[0], s[1], s[2], s[3]]);
        let mut signature = [0u8; 64];
        signature.copy_from_slice(&b[16..80]);
        Ok(Code {
            terms: Terms {
                features: le(&b[4..8]),
                expiry_days: le(&b[8..12]),
            },
            key_id: [b[12], b[13], b[14], b[15]],
            signature,
        })
    }

    /// Verify for this chip and product with any of `keys` (the one whose id matches).
    pub fn verify(
        &self,
        product: &str,
        uid: &[u8],
        keys: &[VerifyingKey],
    ) -> Result<(), CodeError> {
        let digest = message_digest(product, uid, self.terms)?;
        let sig = Signature::from_slice(&self.signature).map_err(|_| CodeError::Invalid)?;
        let mut matched = false;
        for k in keys {
            if key_id4(k) == self.key_id {
                matched = true;
                if k.verify_digest(digest.clone(), &sig).is_ok() {
                    return Ok(());
                }
            }
        }
        Err(if matched {
            CodeError::Invalid
        } else {
            CodeError::UnknownKey
        })
    }

    /// The text form into `out` (at least [`MAX_TEXT`] bytes); its length.
    pub fn to_text(&self, out: &mut [u8]) -> Result<usize, CodeError> {
        let mut raw = [0u8; 73];
        let n = if self.terms == Terms::default() {
            raw[0] = 1;
            raw[1..65].copy_from_slice(&self.signature);
            65
        } else {
            raw[0] = 2;
            raw[1..5].copy_from_slice(&self.terms.features.to_le_bytes());
            raw[5..9].copy_from_slice(&self.terms.expiry_days.to_le_bytes());
            raw[9..73].copy_from_slice(&self.signature);
            73
        };
        let mut w = 0usize;
        let mut put = |c: u8, w: &mut usize| -> Result<(), CodeError> {
            *out.get_mut(*w)
                .ok_or(CodeError::Malformed("output too small"))? = c;
            *w += 1;
            Ok(())
        };
        let mut check = 0u32;
        let raw = raw.get(..n).unwrap_or(&[]);
        for (symbols, i) in (0..(n * 8).div_ceil(5)).enumerate() {
            let v = symbol_at(raw, i);
            check = (check * 32 + u32::from(v)) % 37;
            if symbols > 0 && symbols % 5 == 0 {
                put(b'-', &mut w)?;
            }
            put(ALPHABET[usize::from(v)], &mut w)?;
        }
        put(b'-', &mut w)?;
        put(CHECK[check as usize], &mut w)?;
        Ok(w)
    }

    /// Parse the text form (case, hyphens and spaces ignored; `I`/`L` read as 1, `O` as 0).
    /// The key id is not in the text form; it is taken from `key` (the verifier's).
    pub fn from_text(text: &str, key: &VerifyingKey) -> Result<Code, CodeError> {
        let mut vals = [0u8; 120];
        let mut n = 0usize;
        let mut last: Option<u8> = None;
        for (pos, c) in text.chars().enumerate() {
            if c == '-' || c == ' ' {
                continue;
            }
            if let Some(prev) = last.take() {
                let slot = vals.get_mut(n).ok_or(CodeError::Malformed("too long"))?;
                *slot = prev;
                n += 1;
            }
            let up = c.to_ascii_uppercase();
            let v = match up {
                'I' | 'L' => 1,
                'O' => 0,
                _ => CHECK
                    .iter()
                    .position(|&a| char::from(a) == up)
                    .ok_or(CodeError::BadChar(c, pos))? as u8,
            };
            last = Some(v);
        }
        let check_sym = last.ok_or(CodeError::Malformed("empty"))?;
        let data = vals.get(..n).ok_or(CodeError::Malformed("too long"))?;
        let mut check = 0u32;
        for (i, &v) in data.iter().enumerate() {
            if v >= 32 {
                let c = char::from(CHECK[usize::from(v)]);
                return Err(CodeError::BadChar(c, i));
            }
            check = (check * 32 + u32::from(v)) % 37;
        }
        if u32::from(check_sym) != check {
            return Err(CodeError::Check);
        }
        let mut raw = [0u8; 75];
        let bytes = (n * 5) / 8;
        if bytes != 65 && bytes != 73 {
            return Err(CodeError::Malformed("wrong length"));
        }
        for (i, &v) in data.iter().enumerate() {
            for b in 0..5 {
                if v & (0x10 >> b) != 0 {
                    let bit = i * 5 + b;
                    if let Some(x) = raw.get_mut(bit / 8) {
                        *x |= 0x80 >> (bit % 8);
                    }
                }
            }
        }
        let mut signature = [0u8; 64];
        let terms = match (raw[0], bytes) {
            (1, 65) => {
                signature.copy_from_slice(&raw[1..65]);
                Terms::default()
            }
            (2, 73) => {
                signature.copy_from_slice(&raw[9..73]);
                Terms {
                    features: u32::from_le_bytes([raw[1], raw[2], raw[3], raw[4]]),
                    expiry_days: u32::from_le_bytes([raw[5], raw[6], raw[7], raw[8]]),
                }
            }
            _ => return Err(CodeError::Malformed("unknown kind")),
        };
        Ok(Code {
            terms,
            key_id: key_id4(key),
            signature,
        })
    }
}

/// The 5-bit symbol `i` of `raw` (big-endian bit order, zero padded).
fn symbol_at(raw: &[u8], i: usize) -> u8 {
    let mut v = 0u8;
    for b in 0..5 {
        let bit = i * 5 + b;
        let set = raw
            .get(bit / 8)
            .is_some_and(|x| x & (0x80 >> (bit % 8)) != 0);
        v = (v << 1) | u8::from(set);
    }
    v
}

/// Issue a code (feature `std`: needs the private key).
#[cfg(feature = "std")]
pub fn issue(
    key: &p256::ecdsa::SigningKey,
    product: &str,
    uid: &[u8],
    terms: Terms,
) -> Result<Code, CodeError> {
    use p256::ecdsa::signature::DigestSigner;
    let digest = message_digest(product, uid, terms)?;
    let sig: Signature = key.sign_digest(digest);
    Ok(Code {
        terms,
        key_id: key_id4(key.verifying_key()),
        signature: sig.to_bytes().into(),
    })
}

/// Fast batch signing for production runs (feature `std`): the same ECDSA P-256 signatures
/// as [`issue`] (RFC 6979 nonces), computed with a precomputed table of multiples of the
/// generator (64 windows of 4 bits, looked up in constant time) and one field and one scalar
/// inversion per batch (Montgomery's trick), so a batch costs far less per code than [`issue`].
#[cfg(feature = "std")]
#[derive(Debug, Clone)]
pub struct BatchSigner {
    d: p256::Scalar,
    key: p256::ecdsa::SigningKey,
    key_id: [u8; 4],
    table: Vec<[p256::AffinePoint; 16]>,
    order: p256::FieldBytes,
}

#[cfg(feature = "std")]
impl BatchSigner {
    /// Precompute for `key` (about 1,000 point additions).
    pub fn new(key: &p256::ecdsa::SigningKey) -> Self {
        use p256::elliptic_curve::bigint::ArrayEncoding;
        use p256::elliptic_curve::group::Curve;
        use p256::{AffinePoint, ProjectivePoint};
        let mut proj = Vec::with_capacity(64 * 16);
        let mut base = ProjectivePoint::GENERATOR;
        for _ in 0..64 {
            let mut acc = ProjectivePoint::IDENTITY;
            for _ in 0..16 {
                proj.push(acc);
                acc += base;
            }
            base = acc;
        }
        let mut aff = vec![AffinePoint::IDENTITY; proj.len()];
        ProjectivePoint::batch_normalize(&proj, &mut aff);
        let table = aff
            .chunks(16)
            .map(|c| {
                let mut a = [AffinePoint::IDENTITY; 16];
                a.copy_from_slice(c);
                a
            })
            .collect();
        Self {
            d: *key.as_nonzero_scalar().as_ref(),
            key: key.clone(),
            key_id: key_id4(key.verifying_key()),
            table,
            order: <p256::NistP256 as p256::elliptic_curve::Curve>::ORDER.to_be_byte_array(),
        }
    }

    /// `k * G` in constant time.
    fn mul_g(&self, k: &p256::Scalar) -> p256::ProjectivePoint {
        use p256::elliptic_curve::subtle::{ConditionallySelectable, ConstantTimeEq};
        use p256::elliptic_curve::PrimeField;
        let bytes = k.to_repr();
        let mut acc = p256::ProjectivePoint::IDENTITY;
        for (w, row) in self.table.iter().enumerate() {
            let byte = bytes[31 - w / 2];
            let nib = if w % 2 == 0 { byte & 15 } else { byte >> 4 };
            let mut sel = p256::AffinePoint::IDENTITY;
            for (j, p) in row.iter().enumerate() {
                sel.conditional_assign(p, (j as u8).ct_eq(&nib));
            }
            acc += sel;
        }
        acc
    }

    /// Sign a code for each UID.
    pub fn sign(
        &self,
        product: &str,
        uids: &[Vec<u8>],
        terms: Terms,
    ) -> Result<Vec<Code>, CodeError> {
        use p256::elliptic_curve::group::Curve;
        use p256::elliptic_curve::ops::Reduce;
        use p256::elliptic_curve::point::AffineCoordinates;
        use p256::elliptic_curve::PrimeField;
        use p256::{AffinePoint, ProjectivePoint, Scalar, U256};
        let mut out = Vec::with_capacity(uids.len());
        for chunk in uids.chunks(256) {
            let mut ks = Vec::with_capacity(chunk.len());
            let mut zs = Vec::with_capacity(chunk.len());
            let mut rs = Vec::with_capacity(chunk.len());
            for uid in chunk {
                let h: p256::FieldBytes = message_digest(product, uid, terms)?.finalize();
                let z = <Scalar as Reduce<U256>>::reduce_bytes(&h);
                let kb = rfc6979::generate_k::<Sha256, _>(
                    &self.d.to_repr(),
                    &self.order,
                    &z.to_repr(),
                    &[],
                );
                let k = <Scalar as Reduce<U256>>::reduce_bytes(&kb);
                rs.push(self.mul_g(&k));
                ks.push(k);
                zs.push(z);
            }
            let mut aff = vec![AffinePoint::IDENTITY; rs.len()];
            ProjectivePoint::batch_normalize(&rs, &mut aff);
            // Invert every k with one inversion.
            let mut pre = Vec::with_capacity(ks.len());
            let mut acc = Scalar::ONE;
            for k in &ks {
                pre.push(acc);
                acc *= k;
            }
            let mut inv = Option::<Scalar>::from(acc.invert()).ok_or(CodeError::Invalid)?;
            let mut kinv = vec![Scalar::ZERO; ks.len()];
            for i in (0..ks.len()).rev() {
                kinv[i] = inv * pre[i];
                inv *= ks[i];
            }
            for (i, uid) in chunk.iter().enumerate() {
                let r = <Scalar as Reduce<U256>>::reduce_bytes(&aff[i].x());
                let s = kinv[i] * (zs[i] + r * self.d);
                let code = match Signature::from_scalars(r, s) {
                    Ok(sig) => Code {
                        terms,
                        key_id: self.key_id,
                        signature: sig.to_bytes().into(),
                    },
                    // r or s zero (probability 2^-256): the reference path.
                    Err(_) => issue(&self.key, product, uid, terms)?,
                };
                out.push(code);
            }
        }
        Ok(out)
    }
}

/// The text form as a `String` (feature `std`).
#[cfg(feature = "std")]
pub fn text(code: &Code) -> String {
    let mut out = [0u8; MAX_TEXT];
    let n = code.to_text(&mut out).unwrap_or(0);
    String::from_utf8_lossy(&out[..n]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::SigningKey;

    fn key(b: u8) -> SigningKey {
        SigningKey::from_slice(&[b; 32]).unwrap()
    }

    fn uid(i: u64, len: usize) -> Vec<u8> {
        let mut u = Vec::with_capacity(len);
        let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        for _ in 0..len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            u.push(x as u8);
        }
        u
    }

    /// 10,000 synthetic UIDs of the common lengths (STM32 96-bit, nRF 64-bit, ESP32 48-bit,
    /// up to 32 bytes): every genuine code verifies in both forms; moved to another UID,
    /// product or feature set it fails; another key fails.
    #[test]
    fn ten_thousand_uids() {
        let k = key(3);
        let vk = [*k.verifying_key()];
        let other = [*key(4).verifying_key()];
        for i in 0..10_000u64 {
            let len = [12, 8, 6, 32, 16][(i % 5) as usize];
            let u = uid(i, len);
            let terms = if i % 3 == 0 {
                Terms {
                    features: (i as u32) | 1,
                    expiry_days: 20_000 + i as u32,
                }
            } else {
                Terms::default()
            };
            let c = issue(&k, "thermo", &u, terms).unwrap();
            c.verify("thermo", &u, &vk).unwrap();
            let back = Code::from_bytes(&c.to_bytes()).unwrap();
            assert_eq!(back, c);
            let t = text(&c);
            assert_eq!(Code::from_text(&t, &vk[0]).unwrap(), c, "{t}");
            assert_eq!(Code::from_text(&t.to_lowercase(), &vk[0]).unwrap(), c);
            let mut moved = u.clone();
            moved[(i as usize) % len] ^= 1 << (i % 8);
            if check_uid(&moved).is_ok() {
                assert_eq!(c.verify("thermo", &moved, &vk), Err(CodeError::Invalid));
            }
            assert_eq!(c.verify("thermo2", &u, &vk), Err(CodeError::Invalid));
            let mut more = c;
            more.terms.features ^= 0x8000_0000;
            assert_eq!(more.verify("thermo", &u, &vk), Err(CodeError::Invalid));
            assert_eq!(c.verify("thermo", &u, &other), Err(CodeError::UnknownKey));
        }
    }

    #[test]
    fn batch_signer_matches_the_reference_signer() {
        let k = key(9);
        let vk = [*k.verifying_key()];
        let b = BatchSigner::new(&k);
        let uids: Vec<Vec<u8>> = (0..600).map(|i| uid(i, 12)).collect();
        for terms in [
            Terms::default(),
            Terms {
                features: 3,
                expiry_days: 9,
            },
        ] {
            let codes = b.sign("thermo", &uids, terms).unwrap();
            for (u, c) in uids.iter().zip(&codes) {
                c.verify("thermo", u, &vk).unwrap();
                assert_eq!(
                    *c,
                    issue(&k, "thermo", u, terms).unwrap(),
                    "deterministic RFC 6979"
                );
            }
        }
        assert!(b.sign("thermo", &[vec![0; 8]], Terms::default()).is_err());
    }

    #[test]
    fn check_symbol_catches_substitutions_and_transpositions() {
        let k = key(5);
        let vk = *k.verifying_key();
        for i in 0..40u64 {
            let terms = if i % 2 == 0 {
                Terms::default()
            } else {
                Terms {
                    features: 7,
                    expiry_days: 1,
                }
            };
            let c = issue(&k, "p", &uid(i, 12), terms).unwrap();
            let t = text(&c);
            let syms: Vec<char> = t.chars().collect();
            let data: Vec<usize> = (0..syms.len()).filter(|&j| syms[j] != '-').collect();
            for &j in &data {
                for &a in CHECK.iter() {
                    let a = char::from(a);
                    if a == syms[j] {
                        continue;
                    }
                    let mut s = syms.clone();
                    s[j] = a;
                    let s: String = s.into_iter().collect();
                    assert!(
                        Code::from_text(&s, &vk).is_err(),
                        "substitution at {j}: {s}"
                    );
                }
            }
            for w in data.windows(2) {
                let (x, y) = (w[0], w[1]);
                if syms[x] == syms[y] {
                    continue;
                }
                let mut s = syms.clone();
                s.swap(x, y);
                let s: String = s.into_iter().collect();
                assert!(
                    Code::from_text(&s, &vk).is_err(),
                    "transposition at {x}: {s}"
                );
            }
        }
    }

    #[test]
    fn hostile_inputs_are_refused() {
        let k = key(6);
        let vk = *k.verifying_key();
        assert_eq!(check_uid(&[]), Err(CodeError::UidLength(0)));
        assert_eq!(check_uid(&[1; 33]), Err(CodeError::UidLength(33)));
        assert_eq!(check_uid(&[0; 12]), Err(CodeError::UidBlank(0)));
        assert_eq!(check_uid(&[0xFF; 8]), Err(CodeError::UidBlank(0xFF)));
        assert!(issue(&k, "", &[1], Terms::default()).is_err());
        assert!(issue(&k, &"p".repeat(65), &[1], Terms::default()).is_err());
        for bad in ["", "-", "U", "#####", &"0".repeat(500), "0000-0000-000!"] {
            assert!(Code::from_text(bad, &vk).is_err(), "{bad:?}");
        }
        assert!(Code::from_bytes(&[0; 79]).is_err());
        assert!(Code::from_bytes(&[0; 80]).is_err());
        let c = issue(&k, "p", &[1, 2, 3], Terms::default()).unwrap();
        let mut b = c.to_bytes();
        b[40] ^= 1;
        assert_eq!(
            Code::from_bytes(&b).unwrap().verify("p", &[1, 2, 3], &[vk]),
            Err(CodeError::Invalid)
        );
        // I, L and O read as 1, 1, 0.
        let t = text(&c).replace('1', "l").replace('0', "O");
        assert_eq!(Code::from_text(&t, &vk).unwrap(), c);
    }
}
