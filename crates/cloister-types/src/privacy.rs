//! Differential-privacy accounting for DP-SGD: the Rényi DP of the Poisson-subsampled Gaussian
//! mechanism (Mironov, Talwar and Zhang, 2019) at integer orders, composed over training steps
//! and converted to (ε, δ) with the conversion of Canonne, Kamath and Steinke (2020, Prop. 12),
//! as Google's `dp-accounting` `RdpAccountant` does. Pure arithmetic, so that a data provider can
//! recompute the ε a receipt states from the job's parameters.

use std::fmt;

/// The Rényi orders the accountant minimises over.
pub const ORDERS: std::ops::RangeInclusive<u32> = 2..=256;

/// Why parameters cannot be accounted.
#[derive(Clone, Debug, PartialEq)]
pub struct PrivacyParamsError(String);

impl fmt::Display for PrivacyParamsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "differential-privacy parameters are not valid: {}", self.0)
    }
}

impl std::error::Error for PrivacyParamsError {}

/// The privacy cost of a DP-SGD run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PrivacySpent {
    /// ε at the given δ.
    pub epsilon: f64,
    /// The δ it was computed for.
    pub delta: f64,
    /// The Rényi order that gave the smallest ε.
    pub order: u32,
}

/// log(exp(a) + exp(b)) without overflow.
fn log_add(a: f64, b: f64) -> f64 {
    let (hi, lo) = if a > b { (a, b) } else { (b, a) };
    if lo == f64::NEG_INFINITY { hi } else { hi + (lo - hi).exp().ln_1p() }
}

/// Rényi DP at integer order `alpha` of one step of the Gaussian mechanism with noise multiplier
/// `sigma` (noise standard deviation over the clipping norm) on a Poisson sample of rate `q`.
pub fn rdp_sampled_gaussian(q: f64, sigma: f64, alpha: u32) -> f64 {
    let a = f64::from(alpha);
    if q >= 1.0 {
        return a / (2.0 * sigma * sigma);
    }
    if q <= 0.0 {
        return 0.0;
    }
    // log A_α = log Σ_k C(α,k) (1-q)^(α-k) q^k exp((k² - k) / (2σ²)).
    let (log_q, log_1mq) = (q.ln(), (-q).ln_1p());
    let mut log_binomial = 0.0;
    let mut log_a = f64::NEG_INFINITY;
    for k in 0..=alpha {
        if k > 0 {
            log_binomial += f64::from(alpha - k + 1).ln() - f64::from(k).ln();
        }
        let kf = f64::from(k);
        let term =
            log_binomial + (a - kf) * log_1mq + kf * log_q + (kf * kf - kf) / (2.0 * sigma * sigma);
        log_a = log_add(log_a, term);
    }
    log_a / (a - 1.0)
}

/// Rényi DP at every order of [`ORDERS`]: the privacy cost of one or more mechanisms run on the
/// same data. Costs compose by adding curves, which is what lets a worker account for every
/// training job on a data set together, tighter than adding their ε.
#[derive(Clone, Debug, PartialEq)]
pub struct RdpCurve(Vec<f64>);

impl RdpCurve {
    /// No cost yet.
    pub fn zero() -> Self {
        RdpCurve(vec![0.0; ORDERS.count()])
    }

    /// `steps` steps of DP-SGD with sampling rate `q` and noise multiplier `sigma`.
    pub fn dp_sgd(q: f64, sigma: f64, steps: u64) -> Result<Self, PrivacyParamsError> {
        let bad = |why: &str| Err(PrivacyParamsError(why.to_owned()));
        if !(q > 0.0 && q <= 1.0) {
            return bad("the sampling rate must be in (0, 1]");
        }
        if !(sigma.is_finite() && sigma > 0.0) {
            return bad("the noise multiplier must be positive");
        }
        Ok(RdpCurve(
            ORDERS.map(|alpha| steps as f64 * rdp_sampled_gaussian(q, sigma, alpha)).collect(),
        ))
    }

    /// A curve as [`RdpCurve::values`] gave it (one finite, non-negative value per order).
    pub fn from_values(values: Vec<f64>) -> Result<Self, PrivacyParamsError> {
        if values.len() != ORDERS.count() || !values.iter().all(|v| v.is_finite() && *v >= 0.0) {
            return Err(PrivacyParamsError(format!(
                "an RDP curve has {} finite, non-negative values (orders {} to {})",
                ORDERS.count(),
                ORDERS.start(),
                ORDERS.end()
            )));
        }
        Ok(RdpCurve(values))
    }

    /// The Rényi DP at each order of [`ORDERS`].
    pub fn values(&self) -> &[f64] {
        &self.0
    }

    /// Adds the cost of `other` (run on the same data after, or before, this one).
    pub fn compose(&mut self, other: &RdpCurve) {
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a += b;
        }
    }

    /// The smallest ε at `delta` over [`ORDERS`].
    pub fn epsilon(&self, delta: f64) -> Result<PrivacySpent, PrivacyParamsError> {
        if !(delta > 0.0 && delta < 1.0) {
            return Err(PrivacyParamsError("δ must be in (0, 1)".to_owned()));
        }
        let mut best = PrivacySpent { epsilon: f64::INFINITY, delta, order: *ORDERS.start() };
        for (alpha, &rdp) in ORDERS.zip(&self.0) {
            let a = f64::from(alpha);
            let epsilon = if delta * delta + (-rdp).exp_m1() > 0.0 {
                0.0
            } else {
                rdp + (-1.0 / a).ln_1p() - (delta * a).ln() / (a - 1.0)
            };
            if epsilon < best.epsilon {
                best = PrivacySpent { epsilon: epsilon.max(0.0), delta, order: alpha };
            }
        }
        Ok(best)
    }
}

/// The (ε, δ) spent by `steps` steps of DP-SGD with sampling rate `q` and noise multiplier
/// `sigma`, minimised over [`ORDERS`].
pub fn dp_sgd_epsilon(
    q: f64,
    sigma: f64,
    steps: u64,
    delta: f64,
) -> Result<PrivacySpent, PrivacyParamsError> {
    RdpCurve::dp_sgd(q, sigma, steps)?.epsilon(delta)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (q, σ, steps, δ, ε, order) computed by Google's `dp-accounting` 0.4.4 (PyPI):
    /// `RdpAccountant(orders=range(2, 257))`, `compose(PoissonSampledDpEvent(q,
    /// GaussianDpEvent(σ)), steps)`, `get_epsilon_and_optimal_order(δ)`.
    const DP_ACCOUNTING: [(f64, f64, u64, f64, f64, u32); 5] = [
        (0.01, 1.1, 1000, 1e-05, 1.7252908180449444, 9),
        (256.0 / 60000.0, 1.1, 14062, 1e-05, 2.5969811785948815, 8),
        (0.1, 0.8, 50, 1e-05, 9.554618433850539, 3),
        (64.0 / 455.0, 1.0, 150, 1e-05, 14.678618520317269, 3),
        (1.0, 5.0, 10, 1e-06, 3.1345027119221234, 9),
    ];

    #[test]
    fn epsilon_matches_googles_dp_accounting() {
        for (q, sigma, steps, delta, epsilon, order) in DP_ACCOUNTING {
            let spent = dp_sgd_epsilon(q, sigma, steps, delta).unwrap();
            assert!(
                (spent.epsilon - epsilon).abs() < 1e-9 * epsilon,
                "q={q} σ={sigma} T={steps}: {} vs {epsilon}",
                spent.epsilon
            );
            assert_eq!(spent.order, order);
        }
    }

    #[test]
    fn without_sampling_the_gaussian_mechanism_has_its_closed_form() {
        for alpha in [2, 7, 64] {
            let expected = f64::from(alpha) / (2.0 * 1.5 * 1.5);
            assert!((rdp_sampled_gaussian(1.0, 1.5, alpha) - expected).abs() < 1e-12);
            // The binomial sum at q → 1 tends to the same value.
            let near = rdp_sampled_gaussian(1.0 - 1e-12, 1.5, alpha);
            assert!((near - expected).abs() < 1e-6, "{near} vs {expected}");
        }
        assert_eq!(rdp_sampled_gaussian(0.0, 1.0, 8), 0.0);
    }

    #[test]
    fn more_noise_fewer_steps_or_rarer_sampling_spend_less() {
        let base = dp_sgd_epsilon(0.01, 1.1, 1_000, 1e-5).unwrap().epsilon;
        assert!(dp_sgd_epsilon(0.01, 2.0, 1_000, 1e-5).unwrap().epsilon < base);
        assert!(dp_sgd_epsilon(0.01, 1.1, 100, 1e-5).unwrap().epsilon < base);
        assert!(dp_sgd_epsilon(0.001, 1.1, 1_000, 1e-5).unwrap().epsilon < base);
        assert!(dp_sgd_epsilon(0.01, 1.1, 1_000, 1e-3).unwrap().epsilon < base);
    }

    #[test]
    fn invalid_parameters_are_refused() {
        for (q, sigma, delta) in
            [(0.0, 1.0, 1e-5), (1.5, 1.0, 1e-5), (0.1, 0.0, 1e-5), (0.1, 1.0, 1.0)]
        {
            let err = dp_sgd_epsilon(q, sigma, 10, delta).unwrap_err();
            assert!(err.to_string().starts_with("differential-privacy parameters"), "{err}");
        }
    }

    #[test]
    fn composing_curves_equals_running_the_steps_together() {
        let mut two = RdpCurve::dp_sgd(0.05, 1.2, 300).unwrap();
        two.compose(&RdpCurve::dp_sgd(0.05, 1.2, 200).unwrap());
        let together = dp_sgd_epsilon(0.05, 1.2, 500, 1e-5).unwrap();
        assert!((two.epsilon(1e-5).unwrap().epsilon - together.epsilon).abs() < 1e-9);
        // Composition by RDP is tighter than adding the two ε.
        let sum = dp_sgd_epsilon(0.05, 1.2, 300, 1e-5).unwrap().epsilon
            + dp_sgd_epsilon(0.05, 1.2, 200, 1e-5).unwrap().epsilon;
        assert!(together.epsilon < sum);
        let mut zero = RdpCurve::zero();
        zero.compose(&two);
        assert_eq!(zero, two);
    }

    #[test]
    fn curves_round_trip_and_bad_ones_are_refused() {
        let curve = RdpCurve::dp_sgd(0.1, 1.0, 10).unwrap();
        assert_eq!(RdpCurve::from_values(curve.values().to_vec()).unwrap(), curve);
        for bad in [vec![0.0; 3], vec![f64::NAN; ORDERS.count()], vec![-1.0; ORDERS.count()]] {
            assert!(RdpCurve::from_values(bad).is_err());
        }
        assert!(curve.epsilon(0.0).is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Composing the costs of two runs on the same data is the cost of running their steps
        /// together, never more than the sum of their ε, and never less than either alone.
        #[test]
        fn composition_is_additive_and_monotone(
            q in 0.001f64..1.0,
            sigma in 0.5f64..5.0,
            a in 1u64..500,
            b in 1u64..500,
        ) {
            let delta = 1e-5;
            let mut both = RdpCurve::dp_sgd(q, sigma, a).unwrap();
            both.compose(&RdpCurve::dp_sgd(q, sigma, b).unwrap());
            let together = RdpCurve::dp_sgd(q, sigma, a + b).unwrap();
            for (x, y) in both.values().iter().zip(together.values()) {
                proptest::prop_assert!((x - y).abs() <= 1e-9 * y.max(1.0));
            }
            let composed = both.epsilon(delta).unwrap().epsilon;
            let alone = |steps| dp_sgd_epsilon(q, sigma, steps, delta).unwrap().epsilon;
            proptest::prop_assert!(composed <= alone(a) + alone(b) + 1e-9);
            proptest::prop_assert!(composed + 1e-9 >= alone(a).max(alone(b)));
        }
    }
}
