//! The internals of the `cloister` command: the parties' actions, the in-process test bed, the
//! demo, the sealed-envelope commands, the data pipeline's commands and the plaintext scanner. Only `main.rs` parses arguments,
//! but for the `data annotations` subcommands, whose clap types `data.rs` keeps.

pub mod admin;
pub mod assets;
pub mod backup;
pub mod config;
pub mod data;
pub mod demo;
pub mod demo_hybrid;
pub mod demo_llm;
pub mod demo_train;
pub mod envelope;
pub mod evidence;
pub mod federate;
pub mod job;
pub mod logging;
pub mod manpages;
pub mod measure;
pub mod model;
pub mod parties;
pub mod proxy;
pub mod scan;
pub mod serve;
pub mod serve_accelerator;
pub mod serve_worker;
pub mod serving;
pub mod testbed;
