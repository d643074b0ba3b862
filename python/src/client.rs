//! The attested client: `cloister_client::OhttpClient` on a Tokio runtime the object owns.
//!
//! Connecting attests the worker over attested TLS against the caller's expectations and pins
//! that enclave; every request is then Oblivious HTTP to it, signed by the requester's key.

use cloister_client::OhttpClient;
use cloister_client::ohttp::{InnerRequest, OhttpError, authorization_header};
use cloister_sign::SigningKey;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors::{ClientError, EnclaveError, KeyFormatError, to_json};
use crate::protocol::{enclave_json, expectations};

fn client_error(error: OhttpError) -> PyErr {
    match error {
        OhttpError::EnclaveChanged(_) => EnclaveError::new_err(error.to_string()),
        OhttpError::Client(cloister_client::ClientError::Enclave(_)) => {
            EnclaveError::new_err(error.to_string())
        }
        other => ClientError::new_err(other.to_string()),
    }
}

/// An attested, pinned Oblivious HTTP client of one worker.
#[pyclass(module = "cloister._cloister", frozen)]
struct Client {
    runtime: tokio::runtime::Runtime,
    inner: OhttpClient,
    enclave: String,
}

#[pymethods]
impl Client {
    /// Attests the worker at `url` against the expectations (instance CA PEM, accepted
    /// measurements in hex, the simulated TEE and test roots only when accepted) and pins it.
    #[new]
    #[pyo3(signature = (url, ca_pem, measurements, accept_sim = false, accept_test_root = false))]
    fn new(
        py: Python<'_>,
        url: &str,
        ca_pem: &str,
        measurements: Vec<String>,
        accept_sim: bool,
        accept_test_root: bool,
    ) -> PyResult<Self> {
        let expectations = expectations(ca_pem, &measurements, accept_sim, accept_test_root)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| ClientError::new_err(format!("could not start a runtime: {e}")))?;
        let inner = py
            .detach(|| runtime.block_on(OhttpClient::connect(url, expectations)))
            .map_err(client_error)?;
        let enclave = to_json(&enclave_json(inner.enclave()))?;
        Ok(Client { runtime, inner, enclave })
    }

    /// The enclave verified and pinned at connection, as JSON.
    fn enclave_json(&self) -> String {
        self.enclave.clone()
    }

    /// Sends one request through OHTTP and returns `(status, content_type, body)`. With
    /// `signing_key` (a party signing key's secret text), the request carries the requester's
    /// `authorization` signature over the method, path and body.
    #[pyo3(signature = (method, path, body = Vec::new(), signing_key = None, content_type = None))]
    fn request<'py>(
        &self,
        py: Python<'py>,
        method: &str,
        path: &str,
        body: Vec<u8>,
        signing_key: Option<&str>,
        content_type: Option<&str>,
    ) -> PyResult<(u16, Option<String>, Bound<'py, PyBytes>)> {
        let mut headers = Vec::new();
        if let Some(key) = signing_key {
            let key =
                SigningKey::from_text(key).map_err(|e| KeyFormatError::new_err(e.to_string()))?;
            let authorization =
                authorization_header(&key, method, path, &body).map_err(client_error)?;
            headers.push(("authorization".to_owned(), authorization));
        }
        if let Some(content_type) = content_type {
            headers.push(("content-type".to_owned(), content_type.to_owned()));
        }
        let request = InnerRequest { method, path, headers, body: &body };
        let response =
            py.detach(|| self.runtime.block_on(self.inner.send(&request))).map_err(client_error)?;
        Ok((response.status, response.content_type.clone(), PyBytes::new(py, &response.body)))
    }
}

/// Adds the class to the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Client>()?;
    Ok(())
}
