//! Authentication's building blocks: argon2 hashing of passwords and token
//! secrets at rest, random ids, the cache of verified credentials. Who the
//! caller of a request is (HTTP Basic with a user password, Bearer API
//! token) is resolved by `crate::app::authn`; what the caller may do is
//! `crate::authz`.

use std::collections::HashMap;
use std::sync::Mutex;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

/// Prefix of API tokens: `mct_<id>_<secret>`.
pub const TOKEN_PREFIX: &str = "mct_";

/// Hashing a secret failed (the blocking task died, or argon2 refused).
#[derive(Debug, thiserror::Error)]
#[error("hashing a secret failed: {0}")]
pub struct HashError(String);

/// Hash a secret (password or token secret) to a PHC string.
pub async fn hash_secret(secret: String) -> Result<String, HashError> {
    tokio::task::spawn_blocking(move || Argon2::default().hash_password(secret.as_bytes()).map(|h| h.to_string()))
        .await
        .map_err(|e| HashError(e.to_string()))?
        .map_err(|e| HashError(e.to_string()))
}

/// Check a secret against a stored PHC string.
pub async fn verify_secret(secret: String, phc: String) -> bool {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&phc)
            .map(|h| Argon2::default().verify_password(secret.as_bytes(), &h).is_ok())
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

/// Random hex string of `bytes` random bytes.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("operating system RNG unavailable");
    hex::encode(buf)
}

/// Verified credentials, keyed by a BLAKE3 hash of the Authorization header,
/// so argon2 runs once per credential rather than once per request. Cleared
/// whenever users or tokens are deleted or changed.
#[derive(Debug, Default)]
pub struct AuthCache(Mutex<HashMap<[u8; 32], String>>);

impl AuthCache {
    const MAX: usize = 10_000;

    /// The user a credential (by its hash) was verified for.
    pub fn get(&self, key: &[u8; 32]) -> Option<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).get(key).cloned()
    }

    /// Remember that a credential verified for `user`.
    pub fn put(&self, key: [u8; 32], user: String) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() >= Self::MAX {
            m.clear();
        }
        m.insert(key, user);
    }

    /// Forget every cached credential.
    pub fn clear(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}
