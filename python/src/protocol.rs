//! Party signing keys, grants and receipts over cloister-sign and cloister-client's protocol,
//! and the verification of an enclave certificate against a party's expectations.

use cloister_client::enclave::{accepted_tees, pem_certificates};
use cloister_client::{
    Admitted, Expectations, ProtocolError, VerifiedEnclave, verify_enclave_certificate,
};
use cloister_sign::{SigningKey, VerifyingKey, unix_now};
use cloister_types::batch::BatchStatus;
use cloister_types::job::PrivacyBudget;
use cloister_types::{Grant, Hex, InputRole, JobSpec};
use pyo3::prelude::*;

use crate::errors::{
    EnclaveError, GrantError, KeyFormatError, ReceiptError, SignError, bad_json, to_json,
};

/// Parses measurements given as hex.
pub(crate) fn parse_measurements(measurements: &[String]) -> PyResult<Vec<Hex>> {
    measurements
        .iter()
        .map(|m| {
            Hex::parse(m.trim())
                .map_err(|e| KeyFormatError::new_err(format!("measurement {m:?} is not hex: {e}")))
        })
        .collect()
}

/// A party's expectations of an enclave: the instance CA (PEM), accepted measurements (hex),
/// and whether the simulated TEE and test roots are accepted (development only).
pub(crate) fn expectations(
    ca_pem: &str,
    measurements: &[String],
    accept_sim: bool,
    accept_test_root: bool,
) -> PyResult<Expectations> {
    let measurements = parse_measurements(measurements)?;
    Ok(Expectations::from_ca_pem(ca_pem, measurements, accepted_tees(accept_sim))
        .map_err(|e| EnclaveError::new_err(e.to_string()))?
        .accepting_test_roots(accept_test_root))
}

/// Verifies an enclave certificate chain (PEM, leaf first) at `now`.
pub(crate) fn verify_chain(
    chain_pem: &str,
    expectations: &Expectations,
    now: u64,
) -> PyResult<VerifiedEnclave> {
    let chain = pem_certificates(chain_pem).map_err(|e| {
        EnclaveError::new_err(format!("the enclave certificate chain cannot be read: {e}"))
    })?;
    verify_enclave_certificate(&chain, expectations, now)
        .map_err(|e| EnclaveError::new_err(e.to_string()))
}

/// What a party learns of a verified enclave, as JSON.
pub(crate) fn enclave_json(enclave: &VerifiedEnclave) -> serde_json::Value {
    serde_json::json!({
        "tee": enclave.claims.tee,
        "measurement": enclave.claims.measurement,
        "instance": enclave.instance_id(),
        "policy_id": enclave.policy_id,
        "ear_status": enclave.ear_status,
        "hpke_pk": enclave.runtime_data.hpke_pk,
        "receipt_pk": enclave.receipt_pk.to_text(),
        "claims": enclave.claims,
        "runtime_data": enclave.runtime_data,
    })
}

/// Makes a new party signing key (ES256) and returns `(secret_text, public_text)`.
#[pyfunction]
fn signing_keygen() -> (String, String) {
    let key = SigningKey::generate();
    (key.to_text().as_str().to_owned(), key.public_key().to_text())
}

/// The public text of a party signing key.
#[pyfunction]
fn signing_public_key(signing_key: &str) -> PyResult<String> {
    let key =
        SigningKey::from_text(signing_key).map_err(|e| KeyFormatError::new_err(e.to_string()))?;
    Ok(key.public_key().to_text())
}

fn job_spec(json: &str) -> PyResult<JobSpec> {
    serde_json::from_str(json).map_err(|e| bad_json("the job spec JSON", &e))
}

/// The digest (hex SHA-256 of the canonical JSON) of a job spec: what grants and receipts name.
#[pyfunction]
fn job_digest(job_spec_json: &str) -> PyResult<String> {
    let spec = job_spec(job_spec_json)?;
    spec.digest().map(|d| d.to_string()).map_err(|e| GrantError::new_err(e.to_string()))
}

/// Signs a grant (compact JWS, valid one hour) over `cloister_client::sign_grant`.
#[pyfunction]
#[pyo3(signature = (signing_key, job_spec_json, role, measurements, instances, result_recipients, privacy_budget = None))]
fn sign_grant(
    signing_key: &str,
    job_spec_json: &str,
    role: &str,
    measurements: Vec<String>,
    instances: Vec<String>,
    result_recipients: Vec<String>,
    privacy_budget: Option<(f64, f64)>,
) -> PyResult<String> {
    let key =
        SigningKey::from_text(signing_key).map_err(|e| KeyFormatError::new_err(e.to_string()))?;
    let spec = job_spec(job_spec_json)?;
    let role = match role {
        "data" => InputRole::Data,
        "model" => InputRole::Model,
        other => {
            return Err(GrantError::new_err(format!(
                "role {other:?} is not an input role: use \"data\" or \"model\""
            )));
        }
    };
    let admitted = Admitted { measurements: parse_measurements(&measurements)?, instances };
    let budget = privacy_budget.map(|(epsilon, delta)| PrivacyBudget { epsilon, delta });
    cloister_client::sign_grant(&key, &spec, role, &admitted, &result_recipients, budget).map_err(
        |e| match e {
            ProtocolError::Signature(e) => SignError::new_err(e.to_string()),
            other => GrantError::new_err(other.to_string()),
        },
    )
}

/// Verifies a grant token with its signer's public key now; returns the grant as JSON.
#[pyfunction]
fn verify_grant(token: &str, signer_public_key: &str) -> PyResult<String> {
    let key = VerifyingKey::from_text(signer_public_key)
        .map_err(|e| KeyFormatError::new_err(e.to_string()))?;
    let grant = key
        .verify::<Grant>("grant", token.trim(), unix_now())
        .map_err(|e| SignError::new_err(e.to_string()))?
        .claims;
    to_json(&grant)
}

/// Verifies an enclave certificate chain (PEM) against the expectations now; returns what it
/// says as JSON.
#[pyfunction]
#[pyo3(signature = (chain_pem, ca_pem, measurements, accept_sim = false, accept_test_root = false))]
fn verify_enclave(
    chain_pem: &str,
    ca_pem: &str,
    measurements: Vec<String>,
    accept_sim: bool,
    accept_test_root: bool,
) -> PyResult<String> {
    let expectations = expectations(ca_pem, &measurements, accept_sim, accept_test_root)?;
    let enclave = verify_chain(chain_pem, &expectations, unix_now())?;
    to_json(&enclave_json(&enclave))
}

fn receipt_error(error: ProtocolError) -> PyErr {
    match error {
        ProtocolError::Signer(_) => EnclaveError::new_err(error.to_string()),
        other => ReceiptError::new_err(other.to_string()),
    }
}

/// Verifies a job receipt over `cloister_client::verify_receipt`: the enclave certificate chain
/// must verify against the expectations now, and the receipt must be signed by its receipt key
/// for this job, these inputs and this output ciphertext. Returns the receipt as JSON.
#[pyfunction]
#[pyo3(signature = (token, enclave_chain_pem, ca_pem, measurements, job_spec_json, output_ciphertext, accept_sim = false, accept_test_root = false))]
#[allow(clippy::too_many_arguments)]
fn verify_receipt(
    token: &str,
    enclave_chain_pem: &str,
    ca_pem: &str,
    measurements: Vec<String>,
    job_spec_json: &str,
    output_ciphertext: &[u8],
    accept_sim: bool,
    accept_test_root: bool,
) -> PyResult<String> {
    let expectations = expectations(ca_pem, &measurements, accept_sim, accept_test_root)?;
    let enclave = verify_chain(enclave_chain_pem, &expectations, unix_now())?;
    let spec = job_spec(job_spec_json)?;
    let receipt = cloister_client::verify_receipt(token.trim(), &enclave, &spec, output_ciphertext)
        .map_err(receipt_error)?;
    to_json(&receipt)
}

/// Verifies a done batch job's receipt over `cloister_client::verify_batch_receipt`, from the
/// worker's batch status JSON (`GET /v1/batch/{id}`). Returns the receipt as JSON.
#[pyfunction]
#[pyo3(signature = (batch_status_json, ca_pem, measurements, accept_sim = false, accept_test_root = false))]
fn verify_batch_receipt(
    batch_status_json: &str,
    ca_pem: &str,
    measurements: Vec<String>,
    accept_sim: bool,
    accept_test_root: bool,
) -> PyResult<String> {
    let status: BatchStatus = serde_json::from_str(batch_status_json)
        .map_err(|e| bad_json("the batch status JSON", &e))?;
    let expectations = expectations(ca_pem, &measurements, accept_sim, accept_test_root)?;
    let receipt =
        cloister_client::verify_batch_receipt(&status, &expectations).map_err(receipt_error)?;
    to_json(&receipt)
}

/// Adds the functions to the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(signing_keygen, m)?)?;
    m.add_function(wrap_pyfunction!(signing_public_key, m)?)?;
    m.add_function(wrap_pyfunction!(job_digest, m)?)?;
    m.add_function(wrap_pyfunction!(sign_grant, m)?)?;
    m.add_function(wrap_pyfunction!(verify_grant, m)?)?;
    m.add_function(wrap_pyfunction!(verify_enclave, m)?)?;
    m.add_function(wrap_pyfunction!(verify_receipt, m)?)?;
    m.add_function(wrap_pyfunction!(verify_batch_receipt, m)?)?;
    Ok(())
}
