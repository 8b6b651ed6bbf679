//! Key files: PKCS#8 PEM private keys (optionally passphrase-encrypted), SEC1 `EC PRIVATE KEY`
//! files as written by `openssl ecparam -genkey`, and SPKI `PUBLIC KEY` files. All interoperate
//! with OpenSSL.

use p256::ecdsa::{SigningKey, VerifyingKey};
use p256::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use p256::SecretKey;

/// Why a key could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file is encrypted and no passphrase was given.
    #[error("the private key is encrypted: give its passphrase")]
    NeedPassphrase,
    /// Decryption failed.
    #[error("wrong passphrase for the private key (or the key file is corrupt)")]
    WrongPassphrase,
    /// Not a P-256 key in a known encoding.
    #[error("not a P-256 (prime256v1) {what} in PEM form: {detail}")]
    Unrecognised {
        /// "private key" or "public key".
        what: &'static str,
        /// Parser message.
        detail: String,
    },
    /// A key of another algorithm or curve.
    #[error("this is {algorithm} {what}; BlueSphere signs with ECDSA on P-256 (prime256v1)")]
    WrongAlgorithm {
        /// "private key" or "public key".
        what: &'static str,
        /// The algorithm found, with its article ("an RSA", "a P-384 (secp384r1)").
        algorithm: &'static str,
    },
    /// Encoding failed.
    #[error("could not encode the key: {0}")]
    Encode(String),
}

/// Object identifiers (DER-encoded, tag and length included) of key algorithms and curves
/// that are not ours, with how to name them.
const OTHER_ALGORITHMS: &[(&[u8], &str)] = &[
    (
        &[6, 9, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 1, 1, 1],
        "an RSA",
    ),
    (
        &[6, 9, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 1, 1, 10],
        "an RSA-PSS",
    ),
    (&[6, 7, 0x2A, 0x86, 0x48, 0xCE, 0x38, 4, 1], "a DSA"),
    (&[6, 3, 0x2B, 0x65, 0x70], "an Ed25519"),
    (&[6, 3, 0x2B, 0x65, 0x71], "an Ed448"),
    (&[6, 3, 0x2B, 0x65, 0x6E], "an X25519"),
    (&[6, 3, 0x2B, 0x65, 0x6F], "an X448"),
    (&[6, 5, 0x2B, 0x81, 4, 0, 0x22], "a P-384 (secp384r1)"),
    (&[6, 5, 0x2B, 0x81, 4, 0, 0x23], "a P-521 (secp521r1)"),
    (&[6, 5, 0x2B, 0x81, 4, 0, 0x0A], "a secp256k1"),
    (
        &[6, 9, 0x2B, 0x24, 3, 3, 2, 8, 1, 1, 7],
        "a brainpoolP256r1",
    ),
    (
        &[6, 8, 0x2A, 0x81, 0x1C, 0xCF, 0x55, 1, 0x82, 0x2D],
        "an SM2",
    ),
];

/// DER of P-256's curve identifier (1.2.840.10045.3.1.7).
const P256_OID: &[u8] = &[6, 8, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 3, 1, 7];

/// The algorithm of a key that is not P-256, read from the object identifiers of its PEM
/// blocks (PKCS#8, SPKI or SEC1), or from the block's label.
fn other_algorithm(pem: &str) -> Option<&'static str> {
    if pem.contains("-----BEGIN RSA ") {
        return Some("an RSA");
    }
    if pem.contains("-----BEGIN DSA ") {
        return Some("a DSA");
    }
    if pem.contains("-----BEGIN OPENSSH PRIVATE KEY-----") {
        return Some("an OpenSSH-format");
    }
    for label in [
        "PRIVATE KEY",
        "PUBLIC KEY",
        "EC PRIVATE KEY",
        "EC PARAMETERS",
    ] {
        let Some(block) = pem_block(pem, label) else {
            continue;
        };
        let Ok((_, der)) = pkcs8::der::pem::decode_vec(block.as_bytes()) else {
            continue;
        };
        if der.windows(P256_OID.len()).any(|w| w == P256_OID) {
            return None;
        }
        for (oid, name) in OTHER_ALGORITHMS {
            if der.windows(oid.len()).any(|w| w == *oid) {
                return Some(name);
            }
        }
    }
    None
}

/// A freshly generated key.
pub fn generate() -> SigningKey {
    SigningKey::random(&mut rand_core::OsRng)
}

/// PKCS#8 PEM of `key`, encrypted (PBES2: scrypt + AES-256-CBC) when a passphrase is given.
pub fn private_pem(key: &SigningKey, passphrase: Option<&str>) -> Result<String, KeyError> {
    let secret = SecretKey::from(key);
    let pem = match passphrase {
        Some(p) => encrypt_pkcs8(&secret, p)?,
        None => secret
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| KeyError::Encode(e.to_string()))?,
    };
    Ok(pem.to_string())
}

/// PBES2 with PBKDF2-HMAC-SHA256 (600,000 iterations) and AES-256-CBC: what
/// `openssl genpkey -aes256` writes, and readable by every OpenSSL without raising its
/// scrypt memory limit.
fn encrypt_pkcs8(
    secret: &SecretKey,
    passphrase: &str,
) -> Result<zeroize::Zeroizing<String>, KeyError> {
    use pkcs8::der::Decode;
    use rand_core::RngCore;
    let enc = |e: &dyn std::fmt::Display| KeyError::Encode(e.to_string());
    let der = secret.to_pkcs8_der().map_err(|e| enc(&e))?;
    let info = pkcs8::PrivateKeyInfo::from_der(der.as_bytes()).map_err(|e| enc(&e))?;
    let mut salt = [0u8; 16];
    let mut iv = [0u8; 16];
    rand_core::OsRng.fill_bytes(&mut salt);
    rand_core::OsRng.fill_bytes(&mut iv);
    let params = pkcs8::pkcs5::pbes2::Parameters::pbkdf2_sha256_aes256cbc(600_000, &salt, &iv)
        .map_err(|e| enc(&e))?;
    let doc = info
        .encrypt_with_params(params, passphrase)
        .map_err(|e| enc(&e))?;
    doc.to_pem("ENCRYPTED PRIVATE KEY", LineEnding::LF)
        .map_err(|e| enc(&e))
}

/// SPKI PEM of a public key.
pub fn public_pem(key: &VerifyingKey) -> Result<String, KeyError> {
    key.to_public_key_pem(LineEnding::LF)
        .map_err(|e| KeyError::Encode(e.to_string()))
}

/// Read a private key: PKCS#8 (`PRIVATE KEY` / `ENCRYPTED PRIVATE KEY`) or SEC1
/// (`EC PRIVATE KEY`, with or without an `EC PARAMETERS` block).
pub fn load_private(pem: &str, passphrase: Option<&str>) -> Result<SigningKey, KeyError> {
    let unrec = |detail: String| match other_algorithm(pem) {
        Some(algorithm) => KeyError::WrongAlgorithm {
            what: "private key",
            algorithm,
        },
        None => KeyError::Unrecognised {
            what: "private key",
            detail,
        },
    };
    if pem.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
        let p = passphrase.ok_or(KeyError::NeedPassphrase)?;
        let s =
            SecretKey::from_pkcs8_encrypted_pem(pem, p).map_err(|_| KeyError::WrongPassphrase)?;
        return Ok(SigningKey::from(s));
    }
    if pem.contains("Proc-Type: 4,ENCRYPTED") {
        return Err(unrec(
            "legacy OpenSSL-encrypted PEM; convert it with `openssl pkcs8 -topk8 -in KEY -out NEW.pem`"
                .into(),
        ));
    }
    if let Some(block) = pem_block(pem, "EC PRIVATE KEY") {
        let s = SecretKey::from_sec1_pem(&block).map_err(|e| unrec(e.to_string()))?;
        return Ok(SigningKey::from(s));
    }
    if pem.contains("-----BEGIN PRIVATE KEY-----") {
        let s = SecretKey::from_pkcs8_pem(pem.trim()).map_err(|e| unrec(e.to_string()))?;
        return Ok(SigningKey::from(s));
    }
    if pem.contains("-----BEGIN PUBLIC KEY-----") {
        return Err(unrec(
            "this is a public key; signing needs the private key".into(),
        ));
    }
    Err(unrec("no PEM private key block found".into()))
}

/// A P-256 private key ready to sign packages: ring's signer (precomputed tables: a key
/// loads in about 15 us and signs in 20, where deriving and signing with `p256` takes about
/// 400) with the public key it checked against the private one. Signatures are plain
/// ECDSA P-256 / SHA-256 (`r || s`), verified like any other (`p256`, OpenSSL); their nonces
/// are random rather than derived (RFC 6979), so two signatures of one package differ.
pub struct Signer {
    pair: ring::signature::EcdsaKeyPair,
    public: VerifyingKey,
    rng: ring::rand::SystemRandom,
}

impl core::fmt::Debug for Signer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Signer")
            .field("public", &self.public)
            .finish()
    }
}

impl Signer {
    /// From a private scalar (32 bytes) and the uncompressed public key (65 bytes); `None`
    /// unless they belong together.
    fn from_parts(scalar: &[u8], public: &[u8]) -> Option<Self> {
        let rng = ring::rand::SystemRandom::new();
        let pair = ring::signature::EcdsaKeyPair::from_private_key_and_public_key(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            scalar,
            public,
            &rng,
        )
        .ok()?;
        let public = VerifyingKey::from_sec1_bytes(public).ok()?;
        Some(Self { pair, public, rng })
    }

    /// From a key read by [`load_private`].
    pub fn from_signing_key(key: &SigningKey) -> Result<Self, KeyError> {
        let public = key.verifying_key().to_encoded_point(false);
        Self::from_parts(&zeroize::Zeroizing::new(key.to_bytes()), public.as_bytes())
            .ok_or_else(|| KeyError::Encode("the signer refused the key".into()))
    }

    /// The public key.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.public
    }
}

impl p256::ecdsa::signature::Keypair for Signer {
    type VerifyingKey = VerifyingKey;

    fn verifying_key(&self) -> VerifyingKey {
        self.public
    }
}

impl p256::ecdsa::signature::Signer<p256::ecdsa::Signature> for Signer {
    fn try_sign(&self, msg: &[u8]) -> Result<p256::ecdsa::Signature, p256::ecdsa::Error> {
        let sig = self
            .pair
            .sign(&self.rng, msg)
            .map_err(|_| p256::ecdsa::Error::new())?;
        p256::ecdsa::Signature::from_slice(sig.as_ref())
    }
}

/// The private scalar and uncompressed public key a PEM key file holds, read without
/// checking that they belong together (the signer does): a plain PKCS#8 `PRIVATE KEY` or
/// a SEC1 `EC PRIVATE KEY` on P-256 that carries its public key, as OpenSSL writes them.
/// `None` for anything else.
fn raw_parts(pem: &str) -> Option<(zeroize::Zeroizing<Vec<u8>>, Vec<u8>)> {
    use pkcs8::der::Decode;
    let ec = |der: &[u8]| -> Option<(zeroize::Zeroizing<Vec<u8>>, Vec<u8>)> {
        let k = sec1::EcPrivateKey::from_der(der).ok()?;
        if let Some(p) = k.parameters {
            if p.named_curve()? != P256_CURVE {
                return None;
            }
        }
        let public = k.public_key?.to_vec();
        Some((zeroize::Zeroizing::new(k.private_key.to_vec()), public))
    };
    let der = |label| -> Option<zeroize::Zeroizing<Vec<u8>>> {
        let block = zeroize::Zeroizing::new(pem_block(pem, label)?);
        let (_, der) = pkcs8::der::pem::decode_vec(block.as_bytes()).ok()?;
        Some(zeroize::Zeroizing::new(der))
    };
    if let Some(d) = der("EC PRIVATE KEY") {
        return ec(&d);
    }
    let der = der("PRIVATE KEY")?;
    let info = pkcs8::PrivateKeyInfo::from_der(&der).ok()?;
    if info.algorithm.oid != p256::elliptic_curve::ALGORITHM_OID
        || info.algorithm.parameters_oid().ok()? != P256_CURVE
    {
        return None;
    }
    ec(info.private_key)
}

/// P-256's curve identifier (1.2.840.10045.3.1.7).
const P256_CURVE: pkcs8::ObjectIdentifier =
    pkcs8::ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");

/// Read a private key for signing packages: what [`load_private`] reads, as a [`Signer`].
/// Keys as OpenSSL writes them (carrying their public key) load without deriving it; any
/// other form, or a file whose two halves do not match, goes through [`load_private`]
/// (whose errors say what is wrong).
pub fn load_signer(pem: &str, passphrase: Option<&str>) -> Result<Signer, KeyError> {
    if let Some(s) = raw_parts(pem).and_then(|(k, p)| Signer::from_parts(&k, &p)) {
        return Ok(s);
    }
    Signer::from_signing_key(&load_private(pem, passphrase)?)
}

/// Read a public key: SPKI `PUBLIC KEY` PEM, or derive it from a private key file.
pub fn load_public(pem: &str, passphrase: Option<&str>) -> Result<VerifyingKey, KeyError> {
    if let Some(block) = pem_block(pem, "PUBLIC KEY") {
        return VerifyingKey::from_public_key_pem(&block).map_err(|e| {
            match other_algorithm(&block) {
                Some(algorithm) => KeyError::WrongAlgorithm {
                    what: "public key",
                    algorithm,
                },
                None => KeyError::Unrecognised {
                    what: "public key",
                    detail: e.to_string(),
                },
            }
        });
    }
    if pem.contains("PRIVATE KEY-----") {
        return Ok(*load_private(pem, passphrase)?.verifying_key());
    }
    Err(KeyError::Unrecognised {
        what: "public key",
        detail: "no PEM `PUBLIC KEY` block found".into(),
    })
}

/// Extract one PEM block (BEGIN..END) by label.
fn pem_block(pem: &str, label: &str) -> Option<String> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let s = pem.find(&begin)?;
    let e = pem[s..].find(&end)? + s + end.len();
    Some(format!("{}\n", &pem[s..e]))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use p256::ecdsa::signature::{Signer as _, Verifier as _};
    use p256::pkcs8::der::pem;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_slice(&[seed; 32]).unwrap()
    }

    /// PKCS#8 and SEC1 files (both carry the public key, as OpenSSL writes them) and an
    /// encrypted one load as signers of the same key, whose signatures `p256` verifies.
    #[test]
    fn signer_is_the_same_key_and_its_signatures_verify() {
        let k = key(7);
        let secret = SecretKey::from(&k);
        let pkcs8 = private_pem(&k, None).unwrap();
        let sec1 = secret.to_sec1_pem(LineEnding::LF).unwrap().to_string();
        for pem in [&pkcs8, &sec1] {
            // The fast path: the file's own two halves, checked by the signer.
            let (k8, p8) = raw_parts(pem).unwrap();
            assert!(Signer::from_parts(&k8, &p8).is_some());
        }
        let enc = private_pem(&k, Some("pw")).unwrap();
        for (pem, pass) in [(&pkcs8, None), (&sec1, None), (&enc, Some("pw"))] {
            let s = load_signer(pem, pass).unwrap();
            assert_eq!(s.verifying_key(), k.verifying_key());
            let sig: p256::ecdsa::Signature = s.sign(b"region");
            k.verifying_key().verify(b"region", &sig).unwrap();
            assert!(k.verifying_key().verify(b"regioN", &sig).is_err());
        }
        assert!(matches!(
            load_signer(&enc, None),
            Err(KeyError::NeedPassphrase)
        ));
        assert!(matches!(
            load_signer(&enc, Some("wrong")),
            Err(KeyError::WrongPassphrase)
        ));
        let public = public_pem(k.verifying_key()).unwrap();
        assert!(matches!(
            load_signer(&public, None),
            Err(KeyError::Unrecognised { .. })
        ));
    }

    /// A file whose public key is another key's is refused, not signed with.
    #[test]
    fn mismatched_halves_are_refused() {
        let (a, b) = (key(7), key(9));
        let pa = a.verifying_key().to_encoded_point(false);
        let pb = b.verifying_key().to_encoded_point(false);
        for text in [
            private_pem(&a, None).unwrap().to_string(),
            SecretKey::from(&a)
                .to_sec1_pem(LineEnding::LF)
                .unwrap()
                .to_string(),
        ] {
            let (label, mut der) = pem::decode_vec(text.as_bytes()).unwrap();
            let at = der
                .windows(65)
                .position(|w| w == pa.as_bytes())
                .expect("the file carries its public key");
            der[at..at + 65].copy_from_slice(pb.as_bytes());
            let bad = pem::encode_string(label, pem::LineEnding::LF, &der).unwrap();
            assert!(raw_parts(&bad).is_some());
            assert!(load_signer(&bad, None).is_err(), "{label}");
        }
    }
}
