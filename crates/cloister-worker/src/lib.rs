//! The Cloister enclave worker: generates its keys, attests, serves an attested-TLS API, runs jobs
//! on sealed inputs, seals outputs, erases, and signs receipts.
//!
//! **Plaintext of inputs and outputs exists only inside [`jobs::run_job`]**, in buffers that are
//! zeroized when the job ends; the object store, the logs and the wire only ever see ciphertext.

pub mod engine;
pub mod identity;
pub mod jobs;
pub mod server;
pub mod store;

pub use identity::{EnclaveIdentity, IdentityError};
pub use jobs::JobError;
pub use server::{Worker, serve};
pub use store::{ObjectStore, StoreError};
