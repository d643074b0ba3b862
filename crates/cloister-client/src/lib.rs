//! cloister-client.
