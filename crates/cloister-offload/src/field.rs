//! Arithmetic in the prime field Z_p with p = 2^31 − 1.
//!
//! Why this p: a Mersenne prime reduces with shifts and adds, every element fits a `u32`, and
//! products of an element (< 2^31) with a weight of at most 127 in magnitude sum exactly in an
//! `f64` (53-bit mantissa) over up to [`MAX_INNER`] terms, which is what lets the accelerator
//! use an ordinary double-precision GEMM (CPU or GPU) and still return exact integers.

/// The modulus, 2^31 − 1 (prime).
pub const P: u64 = (1 << 31) - 1;

/// Largest weight magnitude (weights are quantized to `i8` in −127..=127).
pub const MAX_WEIGHT: u64 = 127;

/// Longest inner dimension one product may have: `MAX_INNER · (P − 1) · MAX_WEIGHT < 2^53`, so
/// every partial sum of a double-precision GEMM over blinded inputs is an exact integer. Longer
/// products are split into chunks of at most this many terms (see [`crate::OffloadLayer`]).
pub const MAX_INNER: usize = 1 << 15;

const _: () = assert!((MAX_INNER as u64) * (P - 1) * MAX_WEIGHT < (1 << 53));

/// `x mod p` for any `u64`.
#[inline]
pub fn reduce(x: u64) -> u64 {
    // x = hi·2^31 + lo ≡ hi + lo (mod p); two folds bring any u64 below 2p.
    let folded = (x & P) + (x >> 31);
    let folded = (folded & P) + (folded >> 31);
    if folded >= P { folded - P } else { folded }
}

/// `x mod p` for a `u128` (sums of products).
#[inline]
pub fn reduce_wide(x: u128) -> u64 {
    // Below 2^98 after one fold, 2^68 after two, 2^38 after three: then it fits a u64.
    let mut folded = x;
    for _ in 0..3 {
        folded = (folded & u128::from(P)) + (folded >> 31);
    }
    reduce(u64::try_from(folded).unwrap_or(u64::MAX))
}

/// `x mod p` for a signed value, as the representative in `0..p`.
#[inline]
pub fn from_signed(x: i64) -> u64 {
    let magnitude = reduce(x.unsigned_abs());
    if x < 0 && magnitude != 0 { P - magnitude } else { magnitude }
}

/// The representative of `x` (in `0..p`) nearest zero: `x` when `x ≤ (p−1)/2`, else `x − p`.
#[inline]
pub fn center(x: u64) -> i64 {
    let x = reduce(x);
    // Both branches fit an i64: x < 2^31.
    let x = i64::try_from(x).unwrap_or(i64::MAX);
    if x > (P as i64 - 1) / 2 { x - P as i64 } else { x }
}

/// `a + b mod p` for `a, b < p`.
#[inline]
pub fn add(a: u64, b: u64) -> u64 {
    reduce(a + b)
}

/// `a − b mod p` for `a, b < p`.
#[inline]
pub fn sub(a: u64, b: u64) -> u64 {
    reduce(a + P - b)
}

/// `a · b mod p` for `a, b < p`.
#[inline]
pub fn mul(a: u64, b: u64) -> u64 {
    reduce(a * b)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn p_is_prime() {
        // Trial division up to √p: slow enough to be a real check, fast enough for a unit test.
        let mut d = 2u64;
        while d * d <= P {
            assert_ne!(P % d, 0, "{d} divides p");
            d += 1;
        }
    }

    #[test]
    fn edge_values_reduce_to_their_residues() {
        for x in [0, 1, P - 1, P, P + 1, 2 * P, 2 * P + 5, u64::MAX, 1 << 32, (1 << 62) + 3] {
            assert_eq!(reduce(x), x % P, "{x}");
        }
        assert_eq!(reduce_wide(u128::MAX), (u128::MAX % u128::from(P)) as u64);
        assert_eq!(center(P - 1), -1);
        assert_eq!(center((P - 1) / 2), (P as i64 - 1) / 2);
        assert_eq!(center(P.div_ceil(2)), -((P as i64 - 1) / 2));
        assert_eq!(from_signed(-1), P - 1);
        assert_eq!(from_signed(i64::MIN), (i128::from(i64::MIN).rem_euclid(P as i128)) as u64);
    }

    proptest! {
        #[test]
        fn arithmetic_matches_wide_integers(a in 0..P, b in 0..P, x in any::<u64>(), w in any::<u128>(), s in any::<i64>()) {
            prop_assert_eq!(reduce(x), x % P);
            prop_assert_eq!(reduce_wide(w), (w % u128::from(P)) as u64);
            prop_assert_eq!(mul(a, b), ((u128::from(a) * u128::from(b)) % u128::from(P)) as u64);
            prop_assert_eq!(add(a, b), (a + b) % P);
            prop_assert_eq!(sub(a, b), (a + P - b) % P);
            prop_assert_eq!(from_signed(s), i128::from(s).rem_euclid(i128::from(P)) as u64);
            prop_assert_eq!(from_signed(center(a)), a);
        }
    }
}
