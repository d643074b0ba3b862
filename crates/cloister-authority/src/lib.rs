//! cloister-authority.
