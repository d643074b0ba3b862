//! cloister-verify.
