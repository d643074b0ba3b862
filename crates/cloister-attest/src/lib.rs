//! cloister-attest.
