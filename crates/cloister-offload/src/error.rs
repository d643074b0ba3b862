//! What can go wrong offloading a product.

/// An offloaded product that could not be made or was refused.
#[derive(Debug, thiserror::Error)]
pub enum OffloadError {
    /// A matrix of the wrong size.
    #[error("expected {expected}, got {got} values")]
    Shape {
        /// What was expected.
        expected: String,
        /// How many values came.
        got: usize,
    },
    /// A NaN or infinity where a number was needed.
    #[error("{what} {index} is not a finite number")]
    NotFinite {
        /// `input` or `weight`.
        what: &'static str,
        /// Its position.
        index: usize,
    },
    /// An inner dimension longer than exact double-precision sums allow.
    #[error("an inner dimension of {n} is longer than the {max} an exact offloaded product allows")]
    InnerTooLong {
        /// The layer's inner dimension.
        n: usize,
        /// The limit.
        max: usize,
    },
    /// Bytes that are not a well-formed message.
    #[error("a malformed offload message: {0}")]
    Malformed(&'static str),
    /// The accelerator refused.
    #[error("the accelerator refused: {0}")]
    Refused(String),
    /// The accelerator could not be reached in time.
    #[error("the accelerator is unreachable: {0}")]
    Transport(String),
    /// The accelerator's answer failed a check: it is never used.
    #[error("the accelerator's answer failed {0}; the request fails and the answer is discarded")]
    IntegrityCheckFailed(&'static str),
}
