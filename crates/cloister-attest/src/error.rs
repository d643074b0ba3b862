//! Why evidence could not be collected.

use std::path::PathBuf;

use cloister_types::CanonicalJsonError;

/// Evidence collection failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttestError {
    /// A file could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done ("reading", "creating directory", …).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The simulated platform key file is not a PKCS#8 PEM P-256 key.
    #[error("the sim platform key is not a PKCS#8 PEM P-256 private key: {0}")]
    KeyDecode(#[source] p256::pkcs8::Error),
    /// The simulated platform key could not be encoded.
    #[error("the sim platform key could not be encoded as PKCS#8 PEM: {0}")]
    KeyEncode(#[source] p256::pkcs8::Error),
    /// The runtime data has no canonical JSON form, so it cannot be bound.
    #[error("runtime data has no canonical JSON form, so it cannot be bound: {0}")]
    RuntimeData(#[source] CanonicalJsonError),
    /// The report could not be encoded.
    #[error("the sim report could not be encoded: {0}")]
    Encode(#[source] CanonicalJsonError),
    /// The platform key failed to sign.
    #[error("the sim platform key failed to sign the report")]
    Sign,
    /// The system clock reads before 1970, so `issued_at` cannot be set.
    #[error("the system clock is before the unix epoch")]
    Clock,
}
