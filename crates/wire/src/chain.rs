//! The evidence chain: the record hash that links each record to the one
//! before, and the Ed25519 signature over a record's exact metadata bytes.
//!
//! The device signs and the backend verifies with this one code, as
//! `docs/ref/upload-api.md` specifies. Nothing here reads keys from disk or
//! knows what the bytes mean.

use base64::Engine as _;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

/// `prev_record_sha256` of the first record of a chain: 64 zeros.
pub const GENESIS_PREV: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// Lower-case hex SHA-256 of a record's `metadata` bytes: the record hash that
/// the next record names as `prev_record_sha256`.
pub fn record_sha256(metadata: &[u8]) -> String {
    hex::encode(Sha256::digest(metadata))
}

/// The Ed25519 signature of `message`, base64 of its 64 bytes.
pub fn sign(key: &SigningKey, message: &[u8]) -> String {
    b64().encode(key.sign(message).to_bytes())
}

/// A public key from base64 of its 32 bytes.
pub fn verifying_key_from_base64(text: &str) -> Result<VerifyingKey, String> {
    let bytes = b64()
        .decode(text.trim())
        .map_err(|e| format!("not base64: {e}"))?;
    let arr: [u8; 32] = bytes
        .try_into()
        .map_err(|b: Vec<u8>| format!("{} bytes, not 32", b.len()))?;
    VerifyingKey::from_bytes(&arr).map_err(|e| format!("not an Ed25519 public key: {e}"))
}

/// Checks a record signature (base64 of 64 bytes) over the exact `metadata` bytes.
pub fn verify_record(
    key: &VerifyingKey,
    metadata: &[u8],
    signature_base64: &str,
) -> Result<(), String> {
    let bytes = b64()
        .decode(signature_base64.trim())
        .map_err(|e| format!("signature is not base64: {e}"))?;
    let arr: [u8; 64] = bytes
        .try_into()
        .map_err(|b: Vec<u8>| format!("signature has {} bytes, not 64", b.len()))?;
    key.verify(metadata, &Signature::from_bytes(&arr))
        .map_err(|_| "signature does not verify with the device's public key".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_over_the_exact_bytes_only() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let sig = sign(&key, b"{\"seq\":1}");
        assert!(verify_record(&key.verifying_key(), b"{\"seq\":1}", &sig).is_ok());
        assert!(verify_record(&key.verifying_key(), b"{\"seq\":2}", &sig).is_err());
        assert!(verify_record(&key.verifying_key(), b"{\"seq\":1}", "not base64!").is_err());
    }

    #[test]
    fn the_record_hash_is_lower_case_hex_sha256() {
        assert_eq!(
            record_sha256(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(GENESIS_PREV.len(), 64);
    }
}
