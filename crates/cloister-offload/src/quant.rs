//! Fixed-point quantization into the field, with a bound that makes every product exact.
//!
//! Weights (public to the accelerator) are quantized per output column to `i8` in −127..=127:
//! `wq[i][j] = round(w[i][j] / s_j)` with `s_j = max_i |w[i][j]| / 127`.
//!
//! Inputs (secret) are quantized per row with a scale chosen inside the TEE for that row:
//! `xq[i] = round(x[i] · σ)` with `σ = (H − 1 − 127·n/2) / (127 · ‖x‖₁)` and `H = (p − 1)/2`.
//! Then `Σ_i |xq[i]| · 127 ≤ 127 (σ ‖x‖₁ + n/2) < H`, so every output `Σ_i xq[i] wq[i][j]` lies
//! in `(−H, H)` and is recovered exactly from its residue mod p by [`crate::field::center`]:
//! no wrap-around, whatever the data.
//!
//! The error of one output against the float product `Σ_i x[i] w[i][j]` is at most
//! `s_j (‖x‖₁ / 2 + 127 · n / (2σ))` (weight rounding plus input rounding), which
//! [`output_error_bound`] computes; tests hold every output to it.

use sha2::{Digest, Sha256};

use crate::OffloadError;
use crate::field::{MAX_INNER, MAX_WEIGHT, P};

/// Largest centered value an output may take: `(p − 1) / 2`.
const HALF: f64 = ((P - 1) / 2) as f64;

/// A layer's weights as the accelerator sees them: an `n × k` matrix (inputs × outputs,
/// row-major) of `i8`, with the per-column scales that stay with the TEE's copy.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizedWeights {
    n: usize,
    k: usize,
    values: Vec<i8>,
    scales: Vec<f32>,
    digest: [u8; 32],
}

impl QuantizedWeights {
    /// Quantizes an `n × k` row-major float matrix. Refuses non-finite weights, empty shapes
    /// and an inner dimension over [`MAX_INNER`].
    pub fn quantize(n: usize, k: usize, weights: &[f32]) -> Result<Self, OffloadError> {
        check_shape(n, k, weights.len())?;
        if let Some(at) = weights.iter().position(|w| !w.is_finite()) {
            return Err(OffloadError::NotFinite { what: "weight", index: at });
        }
        let mut scales = vec![0f32; k];
        for row in weights.chunks_exact(k) {
            for (scale, w) in scales.iter_mut().zip(row) {
                *scale = scale.max(w.abs());
            }
        }
        for scale in &mut scales {
            *scale = if *scale == 0.0 { 1.0 } else { *scale / MAX_WEIGHT as f32 };
        }
        let values = weights
            .chunks_exact(k)
            .flat_map(|row| row.iter().zip(&scales))
            .map(|(w, s)| {
                let q = (w / s).round().clamp(-(MAX_WEIGHT as f32), MAX_WEIGHT as f32);
                // In −127..=127 after the clamp.
                q as i8
            })
            .collect::<Vec<i8>>();
        Ok(Self::from_parts(n, k, values, scales))
    }

    /// The accelerator's view: values without scales (they stay with the TEE), digest
    /// computed here. Refuses shapes that do not match and values of −128.
    pub fn public(n: usize, k: usize, values: Vec<i8>) -> Result<Self, OffloadError> {
        check_shape(n, k, values.len())?;
        if values.contains(&i8::MIN) {
            return Err(OffloadError::Malformed("a weight of -128 (weights are -127..=127)"));
        }
        Ok(Self::from_parts(n, k, values, vec![1.0; k]))
    }

    fn from_parts(n: usize, k: usize, values: Vec<i8>, scales: Vec<f32>) -> Self {
        let digest = weights_digest(n, k, &values);
        QuantizedWeights { n, k, values, scales, digest }
    }

    /// Inputs per row.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Outputs per row.
    pub fn k(&self) -> usize {
        self.k
    }

    /// The `n × k` values, row-major.
    pub fn values(&self) -> &[i8] {
        &self.values
    }

    /// The per-column scales.
    pub fn scales(&self) -> &[f32] {
        &self.scales
    }

    /// SHA-256 naming these values (and shape) on the wire.
    pub fn digest(&self) -> &[u8; 32] {
        &self.digest
    }
}

/// SHA-256 over a domain label, the shape and the values.
pub(crate) fn weights_digest(n: usize, k: usize, values: &[i8]) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(b"cloister-offload-weights-v1\0");
    hash.update((n as u64).to_le_bytes());
    hash.update((k as u64).to_le_bytes());
    hash.update(values.iter().map(|v| v.to_le_bytes()[0]).collect::<Vec<u8>>());
    hash.finalize().into()
}

fn check_shape(n: usize, k: usize, len: usize) -> Result<(), OffloadError> {
    if n == 0 || k == 0 || n.checked_mul(k) != Some(len) {
        return Err(OffloadError::Shape { expected: format!("{n} × {k} weights"), got: len });
    }
    if n > MAX_INNER {
        return Err(OffloadError::InnerTooLong { n, max: MAX_INNER });
    }
    Ok(())
}

/// One input row quantized: the integers and the scale σ they were taken with.
#[derive(Debug)]
pub(crate) struct QuantizedRow {
    pub(crate) values: Vec<i64>,
    pub(crate) sigma: f64,
}

/// Quantizes one input row of length `n` with the largest scale that keeps every output exact.
pub(crate) fn quantize_row(row: &[f32]) -> Result<QuantizedRow, OffloadError> {
    if let Some(at) = row.iter().position(|x| !x.is_finite()) {
        return Err(OffloadError::NotFinite { what: "input", index: at });
    }
    let n = row.len() as f64;
    let l1: f64 = row.iter().map(|x| f64::from(x.abs())).sum();
    let budget = HALF - 1.0 - MAX_WEIGHT as f64 * n / 2.0;
    let sigma = if l1 == 0.0 { 1.0 } else { budget / (MAX_WEIGHT as f64 * l1) };
    let values = row.iter().map(|x| (f64::from(*x) * sigma).round() as i64).collect();
    Ok(QuantizedRow { values, sigma })
}

/// The most one output `j` of a row may differ from the float product (module docs).
pub fn output_error_bound(row: &[f32], weights: &QuantizedWeights, j: usize) -> f64 {
    let Ok(quantized) = quantize_row(row) else { return f64::INFINITY };
    let scale = f64::from(weights.scales().get(j).copied().unwrap_or(f32::INFINITY));
    let l1: f64 = row.iter().map(|x| f64::from(x.abs())).sum();
    let n = row.len() as f64;
    scale * (l1 / 2.0 + MAX_WEIGHT as f64 * n / (2.0 * quantized.sigma))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_quantize_per_column_and_refuse_bad_input() {
        let w = [1.0, -0.5, 0.25, 2.0, -1.0, 0.0];
        let q = QuantizedWeights::quantize(3, 2, &w).expect("quantizes");
        assert_eq!(q.values(), [127, -32, 32, 127, -127, 0]);
        assert_eq!(q.scales(), [1.0 / 127.0, 2.0 / 127.0]);
        assert!(matches!(
            QuantizedWeights::quantize(3, 2, &w[..5]),
            Err(OffloadError::Shape { .. })
        ));
        let mut bad = w;
        bad[4] = f32::NAN;
        assert!(matches!(
            QuantizedWeights::quantize(3, 2, &bad),
            Err(OffloadError::NotFinite { index: 4, .. })
        ));
        assert!(matches!(
            QuantizedWeights::quantize(MAX_INNER + 1, 1, &vec![0.0; MAX_INNER + 1]),
            Err(OffloadError::InnerTooLong { .. })
        ));
        assert!(QuantizedWeights::public(1, 2, vec![1, i8::MIN]).is_err());
        // The digest names values and shape, not the scales the accelerator never sees.
        let public = QuantizedWeights::public(3, 2, q.values().to_vec()).expect("public");
        assert_eq!(public.digest(), q.digest());
        let transposed = QuantizedWeights::public(2, 3, q.values().to_vec()).expect("public");
        assert_ne!(transposed.digest(), q.digest());
    }

    #[test]
    fn a_quantized_row_never_lets_an_output_wrap() {
        for row in [vec![1e30f32; 64], vec![1e-30; 7], vec![-3.5, 0.0, 7.25], vec![0.0; 5]] {
            let q = quantize_row(&row).expect("finite");
            let worst: i128 = q.values.iter().map(|v| i128::from(v.abs()) * 127).sum();
            assert!(worst < ((P - 1) / 2) as i128, "{row:?}: {worst}");
        }
        assert!(quantize_row(&[1.0, f32::INFINITY]).is_err());
    }
}
