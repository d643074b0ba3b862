//! Why a policy could not be built or evaluated.

/// A policy error. Callers must treat any error from an appraisal as a refusal.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The policy id is empty or has characters outside `[A-Za-z0-9._-]`.
    #[error("policy id {0:?} is invalid: use 1 to 128 characters from A-Z a-z 0-9 . _ -")]
    InvalidId(String),
    /// The Rego text does not parse or compile, or does not follow the appraisal contract.
    /// `message` is regorus's diagnostic (it names the line and column).
    #[error("policy {policy_id} is invalid: {message}")]
    Invalid {
        /// `<id>@v<version>`.
        policy_id: String,
        /// Why, in regorus's words or ours.
        message: String,
    },
    /// A key release policy does not parse or compile, or does not follow the release contract
    /// (`package cloister.release` with an `allow` rule).
    #[error("the key release policy is invalid: {0}")]
    InvalidRelease(String),
    /// The claims could not be turned into policy input.
    #[error("claims cannot be turned into policy input: {0}")]
    Input(#[source] serde_json::Error),
    /// The policy failed while evaluating (a Rego runtime error such as conflicting values).
    #[error("policy {policy_id} failed to evaluate: {message}")]
    Evaluation {
        /// `<id>@v<version>`.
        policy_id: String,
        /// regorus's diagnostic.
        message: String,
    },
}
