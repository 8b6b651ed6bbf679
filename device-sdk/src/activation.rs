//! Checking the activation code on the device (`no_std`, no heap): rebuild the signed message
//! from the chip's own UID register and the product id, and verify the stored code with the
//! public key(s) alone. A code copied from another chip, product or feature set fails.

use bluesphere_core::activation::{Code, CodeError, Terms};
use p256::ecdsa::VerifyingKey;

/// Verify the stored binary code (80 bytes) for this chip. `today_days` (days since
/// 1970-01-01) enables the expiry check on devices with a clock. Returns the code's terms
/// (feature bits) on success.
pub fn check_code(
    stored: &[u8],
    uid: &[u8],
    product: &str,
    keys: &[VerifyingKey],
    today_days: Option<u32>,
) -> Result<Terms, ActivationError> {
    let code = Code::from_bytes(stored).map_err(ActivationError::Code)?;
    code.verify(product, uid, keys)
        .map_err(ActivationError::Code)?;
    if let (Some(today), e) = (today_days, code.terms.expiry_days) {
        if e != 0 && today > e {
            return Err(ActivationError::Expired { expiry_days: e });
        }
    }
    Ok(code.terms)
}

/// Why a device is not activated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ActivationError {
    /// Malformed, or not valid for this chip/product/key.
    #[error("{0}")]
    Code(CodeError),
    /// Valid but past its expiry.
    #[error("the activation expired (day {expiry_days})")]
    Expired {
        /// Expiry, days since 1970.
        expiry_days: u32,
    },
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use bluesphere_core::activation::issue;
    use p256::ecdsa::SigningKey;

    #[test]
    fn genuine_moved_and_expired() {
        let k = SigningKey::from_slice(&[8u8; 32]).unwrap();
        let keys = [*k.verifying_key()];
        let uid = [0x12, 0x34, 0x56, 0x78, 0x9A, 0xBC];
        let c = issue(
            &k,
            "thermo",
            &uid,
            Terms {
                features: 5,
                expiry_days: 20_000,
            },
        )
        .unwrap();
        let b = c.to_bytes();
        assert_eq!(
            check_code(&b, &uid, "thermo", &keys, Some(19_999))
                .unwrap()
                .features,
            5
        );
        assert_eq!(
            check_code(&b, &uid, "thermo", &keys, Some(20_001)),
            Err(ActivationError::Expired {
                expiry_days: 20_000
            })
        );
        let other_uid = [0x12, 0x34, 0x56, 0x78, 0x9A, 0xBD];
        assert_eq!(
            check_code(&b, &other_uid, "thermo", &keys, None),
            Err(ActivationError::Code(CodeError::Invalid))
        );
        assert_eq!(
            check_code(&b, &uid, "other", &keys, None),
            Err(ActivationError::Code(CodeError::Invalid))
        );
        assert!(check_code(&b[..79], &uid, "thermo", &keys, None).is_err());
        assert!(check_code(&b, &[0xFF; 6], "thermo", &keys, None).is_err());
    }
}
