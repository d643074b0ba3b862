//! The linear-algebra boundary: where a layer's product `x · W` is computed.
//!
//! Every linear layer ([`Linear`]) keeps its float weights and bias inside the enclave and
//! computes its product through a [`LinearBackend`]:
//!
//! - [`EnclaveProduct`] — exact float32 inside the enclave (the default, and what every model
//!   ran on before);
//! - [`OffloadProduct`] — the product is quantized, blinded and sent to an untrusted
//!   accelerator through a caller-supplied [`Accelerator`] (the engine does no I/O itself); the
//!   answer is range-checked and verified with Freivalds' algorithm by
//!   [`cloister_offload::OffloadLayer`] before it is unblinded. The accelerator sees the
//!   weights: a layer is offloaded only when its owner's signed policy says
//!   `offload: {weights: "public"}`.
//!
//! The bias is always added inside the enclave, after the product. When an offloaded product
//! fails (a check, a refusal, a late or dead accelerator) the request fails, or — when the
//! policy's `on_failure` is `enclave` — the layer is computed in the enclave instead. Either
//! way the failed answer is discarded, the failure is counted ([`LayerStatus`]) and the caller
//! learns where each layer of the request ran ([`LayerRun`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cloister_offload::{
    Accelerator, DEFAULT_ROUNDS, OffloadError, OffloadLayer, OffloadStats, QuantizedWeights, wire,
};
use cloister_types::model::OffloadFallback;
use serde::Serialize;
use zeroize::Zeroizing;

use crate::EngineError;

/// Where a layer's product was computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Placement {
    /// Inside the enclave, in float32.
    Enclave,
    /// On the untrusted accelerator, blinded, and verified inside the enclave.
    Offload,
}

/// How a model's linear layers are to run.
#[derive(Clone)]
pub enum LinearPlan {
    /// Every product inside the enclave.
    Enclave,
    /// Every product on `accelerator`, verified with `rounds` Freivalds rounds; on a failure the
    /// request fails or the layer runs in the enclave, as `on_failure` says.
    Offload {
        /// The transport to the accelerator (the caller's; it owns the timeout).
        accelerator: Arc<dyn Accelerator>,
        /// What a failed product does to the request.
        on_failure: OffloadFallback,
        /// Freivalds rounds (a wrong answer passes with probability at most p^−rounds).
        rounds: usize,
    },
}

impl LinearPlan {
    /// Offloading to `accelerator` with the default [`DEFAULT_ROUNDS`] Freivalds rounds.
    pub fn offload(accelerator: Arc<dyn Accelerator>, on_failure: OffloadFallback) -> Self {
        LinearPlan::Offload { accelerator, on_failure, rounds: DEFAULT_ROUNDS }
    }
}

impl std::fmt::Debug for LinearPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinearPlan::Enclave => f.write_str("Enclave"),
            LinearPlan::Offload { on_failure, rounds, .. } => f
                .debug_struct("Offload")
                .field("on_failure", on_failure)
                .field("rounds", rounds)
                .finish_non_exhaustive(),
        }
    }
}

/// One way of computing `x · W` for `m` rows `x` of length `n` and weights `W` (`n × k`).
pub trait LinearBackend: Send + Sync + std::fmt::Debug {
    /// Where this backend computes.
    fn placement(&self) -> Placement;

    /// `x · W` (`m × k`, row-major), without the bias.
    ///
    /// # Errors
    /// [`OffloadError`] when the product could not be made or its answer failed a check; an
    /// enclave product fails only on a shape mismatch.
    fn product(&self, x: &[f32], m: usize) -> Result<Vec<f32>, OffloadError>;
}

/// `x · W` in float32 inside the enclave.
pub struct EnclaveProduct {
    n: usize,
    k: usize,
    /// `n × k`, row-major.
    weights: Zeroizing<Vec<f32>>,
}

impl std::fmt::Debug for EnclaveProduct {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnclaveProduct").field("n", &self.n).field("k", &self.k).finish()
    }
}

impl EnclaveProduct {
    /// The product with `weights` (`n × k`, row-major).
    ///
    /// # Errors
    /// [`EngineError::UnsupportedModel`] when the shape and the number of weights disagree.
    pub fn new(n: usize, k: usize, weights: Vec<f32>) -> Result<Self, EngineError> {
        if n == 0 || k == 0 || n.checked_mul(k) != Some(weights.len()) {
            return Err(EngineError::UnsupportedModel(format!(
                "a {n} × {k} weight matrix with {} values",
                weights.len()
            )));
        }
        Ok(EnclaveProduct { n, k, weights: Zeroizing::new(weights) })
    }
}

impl LinearBackend for EnclaveProduct {
    fn placement(&self) -> Placement {
        Placement::Enclave
    }

    fn product(&self, x: &[f32], m: usize) -> Result<Vec<f32>, OffloadError> {
        let (n, k) = (self.n, self.k);
        if m.checked_mul(n) != Some(x.len()) {
            return Err(OffloadError::Shape {
                expected: format!("{m} × {n} inputs"),
                got: x.len(),
            });
        }
        let mut out = vec![0f32; m * k];
        for (row, y) in x.chunks_exact(n).zip(out.chunks_exact_mut(k)) {
            for (xi, w) in row.iter().zip(self.weights.chunks_exact(k)) {
                for (yj, wij) in y.iter_mut().zip(w) {
                    *yj += xi * wij;
                }
            }
        }
        Ok(out)
    }
}

/// `x · W` on an untrusted accelerator, blinded and verified ([`OffloadLayer`]).
pub struct OffloadProduct {
    layer: OffloadLayer,
    accelerator: Arc<dyn Accelerator>,
}

impl std::fmt::Debug for OffloadProduct {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OffloadProduct").field("layer", &self.layer).finish_non_exhaustive()
    }
}

impl OffloadProduct {
    /// Quantizes `weights` (`n × k`, row-major) for the accelerator.
    ///
    /// # Errors
    /// [`OffloadError`] for non-finite weights, a wrong shape, or an inner dimension longer than
    /// an exact offloaded product allows.
    pub fn new(
        n: usize,
        k: usize,
        weights: &[f32],
        rounds: usize,
        accelerator: Arc<dyn Accelerator>,
    ) -> Result<Self, OffloadError> {
        let quantized = QuantizedWeights::quantize(n, k, weights)?;
        Ok(OffloadProduct { layer: OffloadLayer::new(quantized, rounds), accelerator })
    }

    /// The layer's counters (rows offloaded, masks and their cost, checks failed).
    pub fn stats(&self) -> OffloadStats {
        self.layer.stats()
    }
}

impl LinearBackend for OffloadProduct {
    fn placement(&self) -> Placement {
        Placement::Offload
    }

    fn product(&self, x: &[f32], m: usize) -> Result<Vec<f32>, OffloadError> {
        let (n, k) = (self.layer.weights().n(), self.layer.weights().k());
        if m.checked_mul(n) != Some(x.len()) {
            return Err(OffloadError::Shape {
                expected: format!("{m} × {n} inputs"),
                got: x.len(),
            });
        }
        // One message carries at most MAX_ELEMENTS values each way: large batches go in parts.
        let per_message = (wire::MAX_ELEMENTS / n.max(k)).max(1);
        let mut out = Vec::with_capacity(m * k);
        for part in x.chunks(per_message * n) {
            out.extend(self.layer.multiply(self.accelerator.as_ref(), part, part.len() / n)?);
        }
        Ok(out)
    }
}

/// What one layer did in one request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LayerRun {
    /// The layer (its ONNX node's name, or `<op>_<index>` when the node has none).
    pub layer: String,
    /// Where its product was computed.
    pub ran: Placement,
    /// `true` when the product came from the accelerator and passed every check (always
    /// `false` for a product computed in the enclave, which needs none).
    pub verified: bool,
    /// Why the layer ran in the enclave although it was to be offloaded (the failed product
    /// was discarded); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
}

/// A layer's placement and counters since it was loaded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LayerStatus {
    /// The layer.
    pub layer: String,
    /// Where its products are computed (offloaded layers may fall back, see `fallbacks`).
    pub placement: Placement,
    /// Inputs, outputs.
    pub shape: [usize; 2],
    /// Rows the accelerator computed that passed every check.
    pub rows_verified: u64,
    /// Offloaded products that failed (a check, a refusal, the transport); never used.
    pub failures: u64,
    /// Of those, answers that failed the range or Freivalds check (or another request's).
    pub checks_failed: u64,
    /// Failed products computed in the enclave instead (policy `on_failure: enclave`).
    pub fallbacks: u64,
    /// Blinding masks computed inside the enclave, and the nanoseconds they cost (report it
    /// beside any offload speed-up).
    pub masks_computed: u64,
    /// See `masks_computed`.
    pub precompute_nanos: u64,
    /// Nanoseconds inside the enclave for the verified products, masks aside (blind, range and
    /// Freivalds checks, unblind).
    pub tee_nanos: u64,
    /// Of `tee_nanos`, Freivalds' check alone.
    pub verify_nanos: u64,
    /// Nanoseconds waiting for the accelerator.
    pub accelerator_nanos: u64,
}

enum Route {
    Enclave,
    Offload { backend: Box<OffloadProduct>, on_failure: OffloadFallback },
}

/// One linear layer `y = x · W + b`: the product through a backend, the bias inside the enclave.
pub struct Linear {
    name: String,
    enclave: EnclaveProduct,
    bias: Zeroizing<Vec<f32>>,
    route: Route,
    failures: AtomicU64,
    fallbacks: AtomicU64,
}

impl std::fmt::Debug for Linear {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Linear")
            .field("name", &self.name)
            .field("enclave", &self.enclave)
            .field("placement", &self.placement())
            .finish_non_exhaustive()
    }
}

impl Linear {
    /// A layer named `name` with `weights` (`n × k`, row-major) and `bias` (`k` values), placed
    /// as `plan` says.
    ///
    /// # Errors
    /// [`EngineError::UnsupportedModel`] for inconsistent shapes; [`EngineError::Offload`] when
    /// the plan offloads and the weights cannot be (non-finite, or an inner dimension too long
    /// for an exact product).
    pub fn new(
        name: &str,
        n: usize,
        k: usize,
        weights: Vec<f32>,
        bias: Vec<f32>,
        plan: &LinearPlan,
    ) -> Result<Self, EngineError> {
        if bias.len() != k {
            return Err(EngineError::UnsupportedModel(format!(
                "layer '{name}' has {} biases for {k} outputs",
                bias.len()
            )));
        }
        let route = match plan {
            LinearPlan::Enclave => Route::Enclave,
            LinearPlan::Offload { accelerator, on_failure, rounds } => Route::Offload {
                backend: Box::new(
                    OffloadProduct::new(n, k, &weights, *rounds, accelerator.clone()).map_err(
                        |source| EngineError::Offload { layer: name.to_owned(), source },
                    )?,
                ),
                on_failure: *on_failure,
            },
        };
        Ok(Linear {
            name: name.to_owned(),
            enclave: EnclaveProduct::new(n, k, weights)?,
            bias: Zeroizing::new(bias),
            route,
            failures: AtomicU64::new(0),
            fallbacks: AtomicU64::new(0),
        })
    }

    /// The layer's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Inputs per row.
    pub fn inputs(&self) -> usize {
        self.enclave.n
    }

    /// Outputs per row.
    pub fn outputs(&self) -> usize {
        self.enclave.k
    }

    /// Where the layer's products are computed.
    pub fn placement(&self) -> Placement {
        match self.route {
            Route::Enclave => Placement::Enclave,
            Route::Offload { .. } => Placement::Offload,
        }
    }

    /// `x · W + b` for `m` rows, and where it ran.
    ///
    /// # Errors
    /// [`EngineError::Offload`] when an offloaded product fails and the policy says `fail`
    /// (the answer is discarded and the failure counted); [`EngineError::Inference`] for a
    /// shape mismatch.
    pub fn forward(&self, x: &[f32], m: usize) -> Result<(Vec<f32>, LayerRun), EngineError> {
        let run = |ran, verified, fallback| LayerRun {
            layer: self.name.clone(),
            ran,
            verified,
            fallback,
        };
        let (mut y, report) = match &self.route {
            Route::Enclave => (self.enclave_product(x, m)?, run(Placement::Enclave, false, None)),
            Route::Offload { backend, on_failure } => match backend.product(x, m) {
                Ok(y) => (y, run(Placement::Offload, true, None)),
                Err(source) => {
                    self.failures.fetch_add(1, Ordering::Relaxed);
                    match on_failure {
                        OffloadFallback::Fail => {
                            return Err(EngineError::Offload { layer: self.name.clone(), source });
                        }
                        OffloadFallback::Enclave => {
                            self.fallbacks.fetch_add(1, Ordering::Relaxed);
                            (
                                self.enclave_product(x, m)?,
                                run(Placement::Enclave, false, Some(source.to_string())),
                            )
                        }
                    }
                }
            },
        };
        for row in y.chunks_exact_mut(self.bias.len()) {
            for (v, b) in row.iter_mut().zip(self.bias.iter()) {
                *v += b;
            }
        }
        Ok((y, report))
    }

    fn enclave_product(&self, x: &[f32], m: usize) -> Result<Vec<f32>, EngineError> {
        self.enclave.product(x, m).map_err(|e| EngineError::Inference(e.to_string()))
    }

    /// The layer's placement and counters.
    pub fn status(&self) -> LayerStatus {
        let stats = match &self.route {
            Route::Enclave => OffloadStats::default(),
            Route::Offload { backend, .. } => backend.stats(),
        };
        LayerStatus {
            layer: self.name.clone(),
            placement: self.placement(),
            shape: [self.enclave.n, self.enclave.k],
            rows_verified: stats.rows_offloaded,
            failures: self.failures.load(Ordering::Relaxed),
            checks_failed: stats.checks_failed,
            fallbacks: self.fallbacks.load(Ordering::Relaxed),
            masks_computed: stats.masks_computed,
            precompute_nanos: stats.precompute_nanos,
            tee_nanos: stats.tee_nanos,
            verify_nanos: stats.verify_nanos,
            accelerator_nanos: stats.accelerator_nanos,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_enclave_product_is_the_matrix_product() {
        // x = [[1, 2], [3, -1]], W = [[1, 0, 2], [0.5, 1, -1]].
        let p = EnclaveProduct::new(2, 3, vec![1.0, 0.0, 2.0, 0.5, 1.0, -1.0]).unwrap();
        assert_eq!(p.product(&[1.0, 2.0, 3.0, -1.0], 2).unwrap(), [2.0, 2.0, 0.0, 2.5, -1.0, 7.0]);
        assert!(p.product(&[1.0, 2.0, 3.0], 2).is_err());
        assert!(EnclaveProduct::new(2, 3, vec![0.0; 5]).is_err());
        let weights = vec![1.0, 0.0, 2.0, 0.5, 1.0, -1.0];
        let layer = Linear::new("l", 2, 3, weights, vec![1.0; 3], &LinearPlan::Enclave).unwrap();
        let (y, run) = layer.forward(&[1.0, 2.0], 1).unwrap();
        assert_eq!(y, [3.0, 3.0, 1.0]);
        assert_eq!(
            run,
            LayerRun {
                layer: "l".into(),
                ran: Placement::Enclave,
                verified: false,
                fallback: None
            }
        );
        assert!(Linear::new("l", 2, 3, vec![0.0; 6], vec![0.0; 2], &LinearPlan::Enclave).is_err());
    }
}
