//! Envelope keys, `seal` and `open` over cloister-seal, in memory.
//!
//! Recipients are the texts `cloister seal --recipient` reads from its files: an envelope public
//! key (X25519 or SM2), a key-broker recipient (`cloister-broker:kb_…`), or an enclave
//! certificate chain (PEM), which must verify against the caller's expectations first.

use cloister_seal::{EnvelopeSecretKey, Metadata, Recipient, Suite};
use cloister_sign::unix_now;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors::{EnclaveError, KeyFormatError, OpenError, SealError};
use crate::protocol::{expectations, verify_chain};

/// Makes a new envelope key pair and returns `(secret_text, public_text)`. `suite` is
/// `"x25519"` (the default) or `"sm"` (ShangMi: SM2, SM3, SM4-GCM).
#[pyfunction]
#[pyo3(signature = (suite = "x25519"))]
fn keygen(suite: &str) -> PyResult<(String, String)> {
    let suite = match suite {
        "x25519" => Suite::X25519,
        "sm" => Suite::ShangMi,
        other => {
            return Err(KeyFormatError::new_err(format!(
                "unknown envelope suite {other:?}: use \"x25519\" or \"sm\""
            )));
        }
    };
    let key = EnvelopeSecretKey::generate(suite);
    Ok((key.to_text().as_str().to_owned(), key.public_key_text()))
}

/// Reads one recipient text; an enclave certificate chain is verified first.
fn recipient(
    text: &str,
    ca_pem: Option<&str>,
    measurements: &[String],
    accept_sim: bool,
    accept_test_root: bool,
) -> PyResult<Recipient> {
    if text.contains("-----BEGIN CERTIFICATE-----") {
        let Some(ca_pem) = ca_pem else {
            return Err(EnclaveError::new_err(
                "a recipient is an enclave certificate chain: give the instance CA (ca_pem) and \
                 the accepted measurements so that it can be verified before sealing to it",
            ));
        };
        let expectations = expectations(ca_pem, measurements, accept_sim, accept_test_root)?;
        let enclave = verify_chain(text, &expectations, unix_now())?;
        return Ok(enclave.hpke_pk);
    }
    Recipient::from_text(text).map_err(|e| KeyFormatError::new_err(e.to_string()))
}

/// Seals `data` to every recipient and returns the envelope.
#[pyfunction]
#[pyo3(signature = (data, recipients, ca_pem = None, measurements = Vec::new(), accept_sim = false, accept_test_root = false))]
fn seal<'py>(
    py: Python<'py>,
    data: &[u8],
    recipients: Vec<String>,
    ca_pem: Option<&str>,
    measurements: Vec<String>,
    accept_sim: bool,
    accept_test_root: bool,
) -> PyResult<Bound<'py, PyBytes>> {
    let recipients = recipients
        .iter()
        .map(|text| recipient(text, ca_pem, &measurements, accept_sim, accept_test_root))
        .collect::<PyResult<Vec<_>>>()?;
    let metadata = Metadata::default();
    let sealed = py
        .detach(|| cloister_seal::seal_to_vec_for(&recipients, &metadata, data))
        .map_err(|e| SealError::new_err(e.to_string()))?;
    Ok(PyBytes::new(py, &sealed))
}

/// Opens an envelope with an envelope secret key (text) and returns the plaintext; nothing is
/// returned unless the whole envelope authenticated.
#[pyfunction]
fn open<'py>(py: Python<'py>, data: &[u8], secret: &str) -> PyResult<Bound<'py, PyBytes>> {
    let key =
        EnvelopeSecretKey::from_text(secret).map_err(|e| KeyFormatError::new_err(e.to_string()))?;
    let (_, plaintext) = py
        .detach(|| cloister_seal::open_to_vec_with(&key, data))
        .map_err(|e| OpenError::new_err(e.to_string()))?;
    Ok(PyBytes::new(py, &plaintext))
}

/// Adds the functions to the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(keygen, m)?)?;
    m.add_function(wrap_pyfunction!(seal, m)?)?;
    m.add_function(wrap_pyfunction!(open, m)?)?;
    Ok(())
}
