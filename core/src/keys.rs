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
    /// Encoding failed.
    #[error("could not encode the key: {0}")]
    Encode(String),
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
    let unrec = |detail: String| KeyError::Unrecognised {
        what: "private key",
        detail,
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

/// Read a public key: SPKI `PUBLIC KEY` PEM, or derive it from a private key file.
pub fn load_public(pem: &str, passphrase: Option<&str>) -> Result<VerifyingKey, KeyError> {
    if let Some(block) = pem_block(pem, "PUBLIC KEY") {
        return VerifyingKey::from_public_key_pem(&block).map_err(|e| KeyError::Unrecognised {
            what: "public key",
            detail: e.to_string(),
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
