//! Access, refresh and registration tokens: random strings handed to the
//! client once and stored only as SHA-256 hashes.

use rand::{Rng, distributions::Alphanumeric};
use sha2::{Digest, Sha256};

/// 32 alphanumeric characters: about 190 bits of entropy.
const TOKEN_CHARS: usize = 32;

/// A fresh token with a prefix telling what it is (`syt_`-style, which
/// helps secret scanners and humans reading logs they should not have).
pub fn generate(prefix: &str) -> String {
    let random: String = rand::thread_rng().sample_iter(&Alphanumeric).take(TOKEN_CHARS).map(char::from).collect();
    format!("{prefix}_{random}")
}

/// The stored form of a token. Tokens are high-entropy, so a fast hash is
/// enough: nobody can brute-force 190 bits.
pub fn hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// A new device id: ten upper-case letters, as Synapse makes them.
pub fn generate_device_id() -> String {
    let mut rng = rand::thread_rng();
    (0..10).map(|_| char::from(rng.gen_range(b'A'..=b'Z'))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_and_hash_stably() {
        let a = generate("px");
        let b = generate("px");
        assert_ne!(a, b);
        assert!(a.starts_with("px_") && a.len() == 3 + TOKEN_CHARS);
        assert_eq!(hash(&a), hash(&a));
        assert_ne!(hash(&a), hash(&b));
        assert_eq!(generate_device_id().len(), 10);
    }
}
