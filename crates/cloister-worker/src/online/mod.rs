//! Online inference inside the enclave: an OpenAI-compatible API reached only through Oblivious
//! HTTP (RFC 9458), so everything outside the enclave (load balancers, proxies, logs) sees
//! ciphertext.
//!
//! - [`gateway`]: the outer route `POST /v1/ohttp` that decapsulates a request, hands it to the
//!   inner router and encapsulates the answer (chunked, one chunk per server-sent event, for
//!   streams).
//! - [`api`]: the inner router (`GET /v1/models`, `GET /v1/models/{id}`,
//!   `POST /v1/chat/completions`, `POST /v1/completions`, `POST /v1/embeddings`,
//!   `POST /v1/infer`), never mounted on the outer router.
//! - [`authz`]: the requester's signed authorization, replay refusal, the model owner's serving
//!   policy, rate limits and token quotas.
//! - [`catalog`]: the models loaded for serving, each with its engine and its owner's verified
//!   serving policy.
//! - [`error`]: OpenAI-style errors.

pub mod api;
pub mod authz;
pub mod catalog;
pub mod error;
pub mod gateway;
mod openai;
mod params;

pub use authz::Requester;
pub use catalog::{Catalog, CatalogError, Engine, LoadedModel, VerifiedServingPolicy};
pub use error::OnlineError;
