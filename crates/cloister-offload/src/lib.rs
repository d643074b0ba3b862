//! Matrix products on an untrusted accelerator, blinded and verified (after Slalom, ICLR 2019).
//!
//! A TEE that owns a layer's secret inputs but not the fastest hardware sends the product
//! `x · W` of its inputs with *public* weights to an accelerator outside (a GPU, or simply a big
//! CPU) without trusting it:
//!
//! - **privacy:** inputs are quantized to fixed point in Z_p, p = 2^31 − 1 ([`field`],
//!   [`quant`]), and blinded with a fresh uniformly random mask per row: what the accelerator
//!   receives is uniform in Z_p, whatever the input;
//! - **integrity:** every value of the answer is range-checked (below p) and the whole answer
//!   is checked with Freivalds' algorithm against secret vectors ([`OffloadLayer`]); a failed check
//!   fails the request and is counted;
//! - **exactness:** weights are `i8` and the quantization scale is chosen per row so that no
//!   output wraps modulo p, and `MAX_INNER · (p − 1) · 127 < 2^53`, so the accelerator's
//!   double-precision GEMM is exact ([`cpu`]).
//!
//! The weights are seen by the accelerator: offloading is for layers whose owner allows that.
//! This crate does no I/O: [`Accelerator`] is the transport the caller supplies, and
//! [`server::AcceleratorState`] the handler the untrusted side runs.

pub mod cpu;
mod error;
pub mod field;
mod offload;
pub mod quant;
pub mod server;
pub mod wire;

pub use error::OffloadError;
pub use offload::{Accelerator, DEFAULT_ROUNDS, OffloadLayer, OffloadStats};
pub use quant::{QuantizedWeights, output_error_bound};
