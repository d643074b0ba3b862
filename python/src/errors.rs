//! The exception classes, one per family of Rust errors, all under `CloisterError`.
//!
//! The message of each is the Rust error's `Display`, which names what failed and why.

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(cloister, CloisterError, PyException, "Base class of every Cloister error.");
create_exception!(
    cloister,
    KeyFormatError,
    CloisterError,
    "A key, recipient or measurement text could not be parsed."
);
create_exception!(cloister, SealError, CloisterError, "Sealing an envelope failed.");
create_exception!(
    cloister,
    OpenError,
    CloisterError,
    "An envelope did not open: not a recipient, truncated, or altered."
);
create_exception!(
    cloister,
    SignError,
    CloisterError,
    "Signing failed, or a signed token does not verify."
);
create_exception!(
    cloister,
    GrantError,
    CloisterError,
    "A grant could not be signed (the job spec is invalid or the signer does not own the input)."
);
create_exception!(
    cloister,
    ReceiptError,
    CloisterError,
    "A receipt was refused: bad signature, another job, output or enclave."
);
create_exception!(
    cloister,
    EnclaveError,
    CloisterError,
    "An enclave certificate does not verify or does not meet the expectations."
);
create_exception!(
    cloister,
    EvidenceError,
    CloisterError,
    "TEE evidence did not verify, or the inputs to verify it with are unusable."
);
create_exception!(
    cloister,
    ClientError,
    CloisterError,
    "The attested client could not reach, attest or talk to the worker."
);

/// Adds the exception classes to the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("CloisterError", py.get_type::<CloisterError>())?;
    m.add("KeyFormatError", py.get_type::<KeyFormatError>())?;
    m.add("SealError", py.get_type::<SealError>())?;
    m.add("OpenError", py.get_type::<OpenError>())?;
    m.add("SignError", py.get_type::<SignError>())?;
    m.add("GrantError", py.get_type::<GrantError>())?;
    m.add("ReceiptError", py.get_type::<ReceiptError>())?;
    m.add("EnclaveError", py.get_type::<EnclaveError>())?;
    m.add("EvidenceError", py.get_type::<EvidenceError>())?;
    m.add("ClientError", py.get_type::<ClientError>())?;
    Ok(())
}

/// A JSON argument that does not parse as the type expected.
pub(crate) fn bad_json(what: &str, error: &serde_json::Error) -> PyErr {
    pyo3::exceptions::PyValueError::new_err(format!("{what} is not valid: {error}"))
}

/// A value that cannot be turned into JSON text (should not happen for the types returned).
pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> PyResult<String> {
    serde_json::to_string(value).map_err(|e| CloisterError::new_err(e.to_string()))
}
