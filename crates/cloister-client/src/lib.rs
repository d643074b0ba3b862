//! What Cloister parties run: check an enclave's certificate and claims against their own
//! expectations, talk to the attestation service and to an enclave worker over attested TLS, sign
//! grants and verify receipts.
//!
//! **Nothing is sent to a worker before its certificate chain and claims are verified**: the TLS
//! verifier in [`tls`] runs the same [`enclave::verify_enclave_certificate`] check on every
//! handshake, so a worker whose attestation changes is refused before any byte of a request leaves.

pub mod answers;
pub mod enclave;
pub mod http;
pub mod manage;
pub mod manifest;
pub mod ohttp;
pub mod protocol;
pub mod released;
pub mod service_tls;
pub mod tls;

pub use self::ohttp::{OhttpClient, OhttpError};
pub use answers::{ServiceChannel, VerifiedAnswer, release_request};
pub use enclave::{EnclaveError, Expectations, VerifiedEnclave, verify_enclave_certificate};
pub use http::{AuthorityClient, ClientError, WorkerClient};
pub use manage::ServiceClient;
pub use manifest::{ManifestError, VerifiedManifest, check_sealed_shard, verify_manifest};
pub use protocol::{
    Admitted, ProtocolError, sign_grant, verify_batch_receipt, verify_combined_receipt,
    verify_receipt,
};
pub use released::{ReleasedKeyError, open_released_key};
pub use service_tls::ServiceTls;
