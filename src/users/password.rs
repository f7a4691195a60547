//! Password hashing with argon2 (PHC strings), on the blocking pool so a
//! hash never stalls the async runtime. Each hash takes 19 MiB of memory
//! and a core's worth of work, so only as many run at once as there are
//! cores: a burst of logins queues instead of multiplying memory.

use argon2::{
    Argon2, PasswordHash, PasswordHasher, PasswordVerifier,
    password_hash::{SaltString, rand_core::OsRng},
};

/// Bounds concurrent hashes (and so their memory) to the number of cores.
fn hashing_slots() -> &'static tokio::sync::Semaphore {
    static SLOTS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    SLOTS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        tokio::sync::Semaphore::new(cores)
    })
}

/// Hashes a password with a fresh random salt.
pub async fn hash_password(password: String) -> String {
    let _slot = hashing_slots().acquire().await.expect("the semaphore is never closed");
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .expect("argon2 with default parameters accepts any password")
            .to_string()
    })
    .await
    .expect("hashing task does not panic")
}

/// Checks a password against a stored PHC string. A malformed stored hash
/// never matches.
pub async fn verify_password(password: String, stored: String) -> bool {
    let Ok(_slot) = hashing_slots().acquire().await else { return false };
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&stored)
            .map(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_round_trip() {
        let hash = hash_password("correct horse".into()).await;
        assert!(hash.starts_with("$argon2"));
        assert!(verify_password("correct horse".into(), hash.clone()).await);
        assert!(!verify_password("wrong horse".into(), hash).await);
        assert!(!verify_password("x".into(), "not a hash".into()).await);
    }
}
