//! The accelerator's arithmetic on a CPU: blinded rows times public `i8` weights, as a
//! double-precision GEMM (exact: see [`crate::field::MAX_INNER`]), reduced mod p.
//!
//! This runs outside the TEE, in `cloister serve accelerator`; it sees only blinded field
//! elements and public weights, and keeps nothing between requests.

use ndarray::{Array2, ArrayView2};

use crate::OffloadError;
use crate::field::{MAX_INNER, P, from_signed};
use crate::quant::QuantizedWeights;

/// Weights converted once for the GEMM.
#[derive(Clone, Debug)]
pub struct PreparedWeights {
    weights: QuantizedWeights,
    matrix: Array2<f64>,
}

impl PreparedWeights {
    /// Converts `weights` to the GEMM's element type.
    pub fn new(weights: QuantizedWeights) -> Self {
        let (n, k) = (weights.n(), weights.k());
        let values = weights.values().iter().map(|v| f64::from(*v)).collect();
        // The shape was checked when the weights were made.
        let matrix =
            Array2::from_shape_vec((n, k), values).unwrap_or_else(|_| Array2::zeros((n, k)));
        PreparedWeights { weights, matrix }
    }

    /// The weights.
    pub fn weights(&self) -> &QuantizedWeights {
        &self.weights
    }
}

/// `rows (m × n, each < p) · weights (n × k) mod p`, row-major `m × k`, on up to `threads`
/// threads (rows split between them).
pub fn multiply(
    rows: &[u32],
    m: usize,
    weights: &QuantizedWeights,
    threads: usize,
) -> Result<Vec<u32>, OffloadError> {
    multiply_prepared(rows, m, &PreparedWeights::new(weights.clone()), threads)
}

/// [`multiply`] with weights converted ahead of time.
pub fn multiply_prepared(
    rows: &[u32],
    m: usize,
    prepared: &PreparedWeights,
    threads: usize,
) -> Result<Vec<u32>, OffloadError> {
    let (n, k) = (prepared.weights.n(), prepared.weights.k());
    if n > MAX_INNER {
        return Err(OffloadError::InnerTooLong { n, max: MAX_INNER });
    }
    if m.checked_mul(n) != Some(rows.len()) {
        return Err(OffloadError::Shape { expected: format!("{m} × {n} rows"), got: rows.len() });
    }
    if rows.iter().any(|v| u64::from(*v) >= P) {
        return Err(OffloadError::Malformed("a blinded value is not below p"));
    }
    let w = &prepared.matrix;
    let threads = threads.clamp(1, m.max(1));
    let per_thread = m.div_ceil(threads);
    let mut out = vec![0u32; m * k];
    std::thread::scope(|scope| {
        for (rows, out) in rows.chunks(per_thread * n).zip(out.chunks_mut(per_thread * k)) {
            let w = w.view();
            scope.spawn(move || multiply_block(rows, n, w, out));
        }
    });
    Ok(out)
}

fn multiply_block(rows: &[u32], n: usize, w: ArrayView2<'_, f64>, out: &mut [u32]) {
    let m = rows.len() / n;
    let Ok(x) = Array2::from_shape_vec((m, n), rows.iter().map(|v| f64::from(*v)).collect()) else {
        return;
    };
    let y = x.dot(&w);
    for (slot, value) in out.iter_mut().zip(y.iter()) {
        // An exact integer of magnitude below 2^53 (MAX_INNER), so the cast is exact.
        *slot = from_signed(*value as i64) as u32;
    }
}

#[cfg(test)]
mod tests {
    use rand::Rng as _;

    use super::*;

    #[test]
    fn the_gemm_is_exact_at_the_largest_values() {
        // Every blinded value p − 1 and every weight ±127 over the longest inner dimension:
        // the largest sums a product can reach.
        let n = MAX_INNER;
        let weights = QuantizedWeights::public(n, 2, [127i8, -127].repeat(n)).expect("weights");
        let rows = vec![(P - 1) as u32; n];
        let got = multiply(&rows, 1, &weights, 1).expect("multiplies");
        let expected_pos = ((u128::from(P - 1) * 127 * n as u128) % u128::from(P)) as u64;
        assert_eq!(u64::from(got[0]), expected_pos);
        assert_eq!(u64::from(got[1]), (P - expected_pos) % P);
    }

    #[test]
    fn random_products_match_integer_arithmetic_on_any_thread_count() {
        let mut rng = rand::rng();
        let (m, n, k) = (7, 33, 5);
        let values: Vec<i8> = (0..n * k).map(|_| rng.random_range(-127..=127)).collect();
        let weights = QuantizedWeights::public(n, k, values.clone()).expect("weights");
        let rows: Vec<u32> = (0..m * n).map(|_| rng.random_range(0..P as u32)).collect();
        let mut expected = vec![0u32; m * k];
        for a in 0..m {
            for j in 0..k {
                let sum: i128 = (0..n)
                    .map(|i| i128::from(rows[a * n + i]) * i128::from(values[i * k + j]))
                    .sum();
                expected[a * k + j] = sum.rem_euclid(i128::from(P)) as u32;
            }
        }
        for threads in [1, 2, 3, 16] {
            assert_eq!(multiply(&rows, m, &weights, threads).expect("multiplies"), expected);
        }
        let mut out_of_range = rows.clone();
        out_of_range[3] = P as u32;
        assert!(multiply(&out_of_range, m, &weights, 1).is_err());
        assert!(multiply(&rows[1..], m, &weights, 1).is_err());
    }
}
