//! Single-use challenges with a time to live.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use cloister_types::Base64Url;
use cloister_types::api::ChallengeResponse;
use rand::RngCore as _;

/// How many unexpired nonces may be outstanding before new challenges are refused.
const MAX_OUTSTANDING: usize = 100_000;

/// Why a nonce was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum NonceError {
    /// The nonce was never issued here, or it was already used.
    #[error("the nonce was not issued by this service or has already been used (replay)")]
    Unknown,
    /// The nonce outlived its time to live.
    #[error("the nonce expired at {expired_at} (unix seconds); request a new challenge")]
    Expired {
        /// When it expired.
        expired_at: u64,
    },
    /// Too many challenges are outstanding.
    #[error("too many outstanding challenges; try again later")]
    Exhausted,
}

pub(crate) struct NonceStore {
    ttl: Duration,
    live: Mutex<HashMap<String, u64>>,
}

impl NonceStore {
    pub(crate) fn new(ttl: Duration) -> Self {
        NonceStore { ttl, live: Mutex::new(HashMap::new()) }
    }

    pub(crate) fn issue(&self, now: u64) -> Result<ChallengeResponse, NonceError> {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let nonce = Base64Url::encode(&bytes);
        let expires_at = now + self.ttl.as_secs();
        let mut live = self.live.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if live.len() >= MAX_OUTSTANDING {
            live.retain(|_, expiry| *expiry > now);
            if live.len() >= MAX_OUTSTANDING {
                return Err(NonceError::Exhausted);
            }
        }
        live.insert(nonce.clone(), expires_at);
        Ok(ChallengeResponse { nonce, expires_at: expires_at as i64 })
    }

    /// Whether `nonce` was issued and is neither used nor expired (it stays live).
    pub(crate) fn is_live(&self, nonce: &str, now: u64) -> bool {
        let live = self.live.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        live.get(nonce).is_some_and(|&expires_at| now <= expires_at)
    }

    /// Removes the nonce; succeeds only once, and only before it expires.
    pub(crate) fn consume(&self, nonce: &str, now: u64) -> Result<(), NonceError> {
        let mut live = self.live.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let expires_at = live.remove(nonce).ok_or(NonceError::Unknown)?;
        if now > expires_at {
            return Err(NonceError::Expired { expired_at: expires_at });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_is_good_exactly_once() {
        let store = NonceStore::new(Duration::from_secs(60));
        let c = store.issue(100).unwrap();
        assert_eq!(c.expires_at, 160);
        assert!(store.is_live(&c.nonce, 120));
        assert!(!store.is_live(&c.nonce, 161));
        assert!(!store.is_live("made-up", 120));
        assert_eq!(store.consume(&c.nonce, 120), Ok(()));
        assert!(!store.is_live(&c.nonce, 120));
        assert_eq!(store.consume(&c.nonce, 121), Err(NonceError::Unknown));
    }

    #[test]
    fn expired_and_unknown_nonces_are_refused() {
        let store = NonceStore::new(Duration::from_secs(60));
        let c = store.issue(100).unwrap();
        assert_eq!(store.consume(&c.nonce, 161), Err(NonceError::Expired { expired_at: 160 }));
        assert_eq!(store.consume("made-up", 100), Err(NonceError::Unknown));
    }

    #[test]
    fn nonces_are_distinct() {
        let store = NonceStore::new(Duration::from_secs(60));
        assert_ne!(store.issue(0).unwrap().nonce, store.issue(0).unwrap().nonce);
    }
}
