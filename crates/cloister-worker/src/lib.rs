//! The Cloister enclave worker: generates its keys, attests, serves an attested-TLS API, runs jobs
//! on sealed inputs, seals outputs, erases, and signs receipts.
//!
//! **Plaintext of inputs and outputs exists only inside [`jobs::run_job`], the training path
//! ([`training`]) and the batch runner ([`batch::runner`])**, in buffers that are zeroized when the job (or the runner) ends; the object store, the logs and the wire only ever see ciphertext.

pub mod batch;
pub mod deploy;
pub mod deployments;
pub mod identity;
pub mod jobs;
pub mod ledger;
pub mod metrics;
pub mod offload;
pub mod online;
pub mod server;
pub mod service_pin;
pub mod store;
pub mod training;

pub use identity::{EnclaveIdentity, IdentityError};
pub use jobs::JobError;
pub use server::{Worker, serve, serve_app};
pub use store::{ObjectStore, StoreError};
