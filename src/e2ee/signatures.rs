//! Checking the ed25519 signatures clients put on their keys, with ruma's
//! canonical JSON and verifier.

use ruma::{CanonicalJsonObject, SigningKeyAlgorithm, serde::Base64};
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    #[error("the key object has no ed25519 key {0}")]
    MissingKey(String),
    #[error("the key object is not signed by {0}")]
    MissingSignature(String),
    #[error("the signature by {0} does not verify")]
    Invalid(String),
    #[error("the key object is malformed: {0}")]
    Malformed(String),
}

/// The public key `key_id` listed in the object's `keys`.
pub fn ed25519_key(object: &Value, key_id: &str) -> Result<String, SignatureError> {
    object
        .get("keys")
        .and_then(|k| k.get(key_id))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| SignatureError::MissingKey(key_id.to_owned()))
}

/// Verifies the signature of `signer`'s key `key_id` on `object` with the
/// unpadded-base64 ed25519 `public_key`.
pub fn verify_signature(object: &Value, signer: &str, key_id: &str, public_key: &str) -> Result<(), SignatureError> {
    let signature = object
        .get("signatures")
        .and_then(|s| s.get(signer))
        .and_then(|s| s.get(key_id))
        .and_then(Value::as_str)
        .ok_or_else(|| SignatureError::MissingSignature(format!("{signer} {key_id}")))?;
    let canonical: CanonicalJsonObject =
        serde_json::from_value(object.clone()).map_err(|e| SignatureError::Malformed(e.to_string()))?;
    let signed = ruma::signatures::to_canonical_json_string_for_signing(&canonical)
        .map_err(|e| SignatureError::Malformed(e.to_string()))?;
    let signature = Base64::<ruma::serde::base64::Standard>::parse(signature)
        .map_err(|e| SignatureError::Malformed(format!("signature: {e}")))?;
    let public_key = Base64::<ruma::serde::base64::Standard>::parse(public_key)
        .map_err(|e| SignatureError::Malformed(format!("public key: {e}")))?;
    ruma::signatures::verify_canonical_json_bytes(
        &SigningKeyAlgorithm::Ed25519,
        public_key.as_bytes(),
        signature.as_bytes(),
        signed.as_bytes(),
    )
    .map_err(|_| SignatureError::Invalid(format!("{signer} {key_id}")))
}

#[cfg(test)]
mod tests {
    use ruma::signatures::{Ed25519KeyPair, KeyPair};

    use super::*;

    #[test]
    fn signatures_verify_and_tampering_is_caught() {
        let doc = Ed25519KeyPair::generate();
        let pair = Ed25519KeyPair::from_der(&doc, "DEV".into()).unwrap();
        let public = Base64::<ruma::serde::base64::Standard>::new(pair.public_key().to_vec()).encode();
        let mut object: CanonicalJsonObject = serde_json::from_value(serde_json::json!({
            "user_id": "@a:x", "keys": {"ed25519:DEV": public}
        }))
        .unwrap();
        ruma::signatures::sign_json("@a:x", &pair, &mut object).unwrap();
        let mut value = serde_json::to_value(&object).unwrap();
        assert_eq!(ed25519_key(&value, "ed25519:DEV").unwrap(), public);
        verify_signature(&value, "@a:x", "ed25519:DEV", &public).unwrap();
        value["user_id"] = "@mallory:x".into();
        assert!(matches!(verify_signature(&value, "@a:x", "ed25519:DEV", &public), Err(SignatureError::Invalid(_))));
        assert!(matches!(
            verify_signature(&value, "@b:x", "ed25519:DEV", &public),
            Err(SignatureError::MissingSignature(_))
        ));
        let _ = pair.sign(b"x");
    }
}
