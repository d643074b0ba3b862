//! Why a challenge nonce was refused. Challenges live in the service database
//! (`Store::insert_nonce`, `Store::consume_nonce`).

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
