//! `cloister._cloister`: the compiled half of the Python client, thin PyO3 wrappers over the
//! Rust crates (cloister-seal, cloister-sign, cloister-client, cloister-verify).
//!
//! Every function takes and returns plain Python values (str, bytes, lists, JSON text); the
//! pure-Python package `cloister` (python/cloister/__init__.py) turns JSON into dicts and is
//! what users import. Errors are typed: each Rust error enum maps to one exception class
//! (module [`errors`]), whose message is the Rust error's own one-line message. Long work
//! (sealing, opening, network) runs without the GIL.

mod client;
mod envelope;
mod errors;
mod evidence;
mod protocol;

use pyo3::prelude::*;

/// The compiled module; `cloister` re-exports what users need.
#[pymodule]
fn _cloister(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::register(m)?;
    envelope::register(m)?;
    protocol::register(m)?;
    evidence::register(m)?;
    client::register(m)?;
    Ok(())
}
