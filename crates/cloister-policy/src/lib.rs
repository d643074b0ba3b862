//! cloister-policy.
