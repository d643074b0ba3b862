//! The internals of the `cloister` command: the parties' actions, the in-process test bed, the
//! demo, the sealed-envelope commands and the plaintext scanner. Only `main.rs` parses arguments.

pub mod admin;
pub mod demo;
pub mod envelope;
pub mod evidence;
pub mod parties;
pub mod scan;
pub mod serve;
pub mod testbed;
