//! cloister-seal.
