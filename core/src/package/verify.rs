//! Signature verification (`no_std`).

use super::{Header, PackageError, SIGNATURE_LEN};
use p256::ecdsa::{signature::DigestVerifier, Signature, VerifyingKey};
use sha2::Digest;

/// Result of a successful verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// Index of the key that verified.
    pub key_index: usize,
    /// Its id.
    pub key_id: [u8; 8],
}

/// Key id: the first 8 bytes of SHA-256 of the SEC1 uncompressed point.
pub fn key_id(key: &VerifyingKey) -> [u8; 8] {
    let point = key.to_encoded_point(false);
    let d = super::sha2_digest(point.as_bytes());
    let mut id = [0u8; 8];
    id.copy_from_slice(&d[..8]);
    id
}

/// Verify `sig` over `signed` (header + manifest) with the key among `keys` whose id is the
/// header's key id.
pub fn verify_signature(
    signed: &[u8],
    sig: &[u8],
    header: &Header,
    keys: &[VerifyingKey],
) -> Result<Verified, PackageError> {
    verify_signature_parts(&[signed], sig, header, keys)
}

/// [`verify_signature`] over the signed bytes given in pieces (e.g. the header and the
/// manifest as a device received them), without concatenating them.
pub fn verify_signature_parts(
    parts: &[&[u8]],
    sig: &[u8],
    header: &Header,
    keys: &[VerifyingKey],
) -> Result<Verified, PackageError> {
    let mut candidates = keys
        .iter()
        .enumerate()
        .filter(|(_, k)| key_id(k).starts_with(&header.key_id))
        .peekable();
    if candidates.peek().is_none() {
        return Err(PackageError::UnknownKey {
            key_id: super::KeyId(header.key_id),
        });
    }
    if sig.len() != SIGNATURE_LEN {
        return Err(PackageError::BadSignature);
    }
    let sig = Signature::from_slice(sig).map_err(|_| PackageError::BadSignature)?;
    let mut digest = sha2::Sha256::new();
    for p in parts {
        digest.update(p);
    }
    // Two configured keys may share a 4-byte id prefix: try each that does.
    for (key_index, key) in candidates {
        if key.verify_digest(digest.clone(), &sig).is_ok() {
            return Ok(Verified {
                key_index,
                key_id: key_id(key),
            });
        }
    }
    Err(PackageError::BadSignature)
}
