//! The TEE's side of an offloaded product: quantize, blind with a fresh mask, send, range-check,
//! verify with Freivalds' algorithm, unblind.
//!
//! For a row `x` the TEE sends `x̃ = xq + r mod p` with `r` uniform in Z_p^n, drawn for this row
//! alone and never again; the accelerator answers `ỹ = x̃ W mod p`. The TEE checks every value
//! of `ỹ` is below p, then, for each of `rounds` secret vectors `s` uniform in Z_p^k, that
//! `ỹ s ≡ x̃ (W s) (mod p)` — a wrong `ỹ` passes one round with probability at most 1/p, so all
//! rounds with at most p^−rounds (2^−62 for the default two). Only then `y = ỹ − r W mod p`,
//! centred and scaled back. The unblinding factor `u = r W` is computed inside the TEE ahead of
//! time ([`OffloadLayer::precompute`]); that costs as much as the product itself and is
//! reported beside every offload figure ([`OffloadStats`]).
//!
//! The check vectors stay secret and are drawn again after any failed check (a failure tells
//! the accelerator something about them); a failed check fails the request — the unchecked value
//! is never returned — and is counted.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use rand::Rng as _;
use zeroize::Zeroizing;

use crate::field::{P, center, from_signed, reduce_wide, sub};
use crate::quant::{QuantizedWeights, quantize_row};
use crate::wire::{self, Message};
use crate::{OffloadError, cpu};

/// Freivalds rounds by default: a wrong product passes with probability at most p^−2 ≈ 2^−62.
pub const DEFAULT_ROUNDS: usize = 2;

/// How the TEE reaches an accelerator: one request, one answer (bytes of [`Message`]s). The
/// implementation owns the transport and its timeout.
pub trait Accelerator: Send + Sync {
    /// Sends `request` and returns the answer.
    fn exchange(&self, request: &[u8]) -> Result<Vec<u8>, OffloadError>;
}

/// One row's mask and its unblinding factor. Secret: zeroized on drop.
struct Mask {
    r: Zeroizing<Vec<u64>>,
    u: Zeroizing<Vec<u64>>,
}

/// One round's secret vector `s` (length k) and `W s mod p` (length n).
struct Round {
    s: Zeroizing<Vec<u64>>,
    ws: Zeroizing<Vec<u64>>,
}

/// The secret check vectors of one layer.
struct Freivalds {
    rounds: Vec<Round>,
    generation: u64,
}

impl Freivalds {
    fn draw(weights: &QuantizedWeights, rounds: usize, generation: u64) -> Self {
        let (n, k) = (weights.n(), weights.k());
        let mut rng = rand::rng();
        let rounds = (0..rounds.max(1))
            .map(|_| {
                let s: Vec<u64> = (0..k).map(|_| rng.random_range(0..P)).collect();
                let v: Vec<u64> = weights
                    .values()
                    .chunks_exact(k)
                    .map(|row| {
                        let sum: u128 = row
                            .iter()
                            .zip(&s)
                            .map(|(w, s)| u128::from(from_signed(i64::from(*w))) * u128::from(*s))
                            .sum();
                        reduce_wide(sum)
                    })
                    .collect();
                debug_assert_eq!(v.len(), n);
                Round { s: Zeroizing::new(s), ws: Zeroizing::new(v) }
            })
            .collect();
        Freivalds { rounds, generation }
    }

    /// Whether `product` (m × k) is `blinded (m × n) · W mod p` in every round.
    fn holds(&self, blinded: &[u32], product: &[u32], n: usize, k: usize) -> bool {
        self.rounds.iter().all(|Round { s, ws }| {
            blinded.chunks_exact(n).zip(product.chunks_exact(k)).all(|(x, y)| {
                let lhs: u128 =
                    y.iter().zip(s.iter()).map(|(y, s)| u128::from(*y) * u128::from(*s)).sum();
                let rhs: u128 =
                    x.iter().zip(ws.iter()).map(|(x, v)| u128::from(*x) * u128::from(*v)).sum();
                reduce_wide(lhs) == reduce_wide(rhs)
            })
        })
    }
}

/// What one layer's offloading has cost and caught (monotonic counters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OffloadStats {
    /// Rows whose product came from the accelerator and passed every check.
    pub rows_offloaded: u64,
    /// Masks computed (each one row's `r` and `r W`).
    pub masks_computed: u64,
    /// Nanoseconds spent computing masks inside the TEE.
    pub precompute_nanos: u64,
    /// Answers refused: out of range, wrong shape or id, or failing Freivalds' check.
    pub checks_failed: u64,
    /// Nanoseconds inside the TEE per product, masks aside: quantizing and blinding the rows,
    /// the range and Freivalds checks, unblinding.
    pub tee_nanos: u64,
    /// Of `tee_nanos`, Freivalds' check alone.
    pub verify_nanos: u64,
    /// Nanoseconds waiting for the accelerator (transport included).
    pub accelerator_nanos: u64,
}

/// A layer prepared for offloading: its public weights, a pool of masks, the check vectors.
pub struct OffloadLayer {
    weights: QuantizedWeights,
    prepared: cpu::PreparedWeights,
    threads: usize,
    rounds: usize,
    pool: Mutex<Vec<Mask>>,
    checker: Mutex<Freivalds>,
    rows_offloaded: AtomicU64,
    masks_computed: AtomicU64,
    precompute_nanos: AtomicU64,
    checks_failed: AtomicU64,
    tee_nanos: AtomicU64,
    verify_nanos: AtomicU64,
    accelerator_nanos: AtomicU64,
}

impl std::fmt::Debug for OffloadLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OffloadLayer")
            .field("n", &self.weights.n())
            .field("k", &self.weights.k())
            .field("rounds", &self.rounds)
            .finish_non_exhaustive()
    }
}

impl OffloadLayer {
    /// Prepares `weights` with `rounds` Freivalds rounds (at least one).
    pub fn new(weights: QuantizedWeights, rounds: usize) -> Self {
        let checker = Freivalds::draw(&weights, rounds, 0);
        let threads = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        OffloadLayer {
            prepared: cpu::PreparedWeights::new(weights.clone()),
            threads,
            weights,
            rounds: rounds.max(1),
            pool: Mutex::new(Vec::new()),
            checker: Mutex::new(checker),
            rows_offloaded: AtomicU64::new(0),
            masks_computed: AtomicU64::new(0),
            precompute_nanos: AtomicU64::new(0),
            checks_failed: AtomicU64::new(0),
            tee_nanos: AtomicU64::new(0),
            verify_nanos: AtomicU64::new(0),
            accelerator_nanos: AtomicU64::new(0),
        }
    }

    /// The weights the accelerator is sent.
    pub fn weights(&self) -> &QuantizedWeights {
        &self.weights
    }

    /// Computes `rows` masks ahead of time (idle time in a real deployment).
    pub fn precompute(&self, rows: usize) -> Result<(), OffloadError> {
        let masks = self.compute_masks(rows)?;
        self.pool.lock().unwrap_or_else(|p| p.into_inner()).extend(masks);
        Ok(())
    }

    /// The counters so far.
    pub fn stats(&self) -> OffloadStats {
        OffloadStats {
            rows_offloaded: self.rows_offloaded.load(Ordering::Relaxed),
            masks_computed: self.masks_computed.load(Ordering::Relaxed),
            precompute_nanos: self.precompute_nanos.load(Ordering::Relaxed),
            checks_failed: self.checks_failed.load(Ordering::Relaxed),
            tee_nanos: self.tee_nanos.load(Ordering::Relaxed),
            verify_nanos: self.verify_nanos.load(Ordering::Relaxed),
            accelerator_nanos: self.accelerator_nanos.load(Ordering::Relaxed),
        }
    }

    /// Which draw of the check vectors is current (it changes after every failed check).
    pub fn check_generation(&self) -> u64 {
        self.checker.lock().unwrap_or_else(|p| p.into_inner()).generation
    }

    fn compute_masks(&self, rows: usize) -> Result<Vec<Mask>, OffloadError> {
        let started = Instant::now();
        let (n, k) = (self.weights.n(), self.weights.k());
        let mut rng = rand::rng();
        // r W mod p with the same exact double-precision GEMM the accelerator uses (r < p,
        // |w| ≤ 127, n ≤ MAX_INNER), inside the TEE.
        let r: Zeroizing<Vec<u32>> =
            Zeroizing::new((0..rows * n).map(|_| rng.random_range(0..P as u32)).collect());
        let u = Zeroizing::new(cpu::multiply_prepared(&r, rows, &self.prepared, self.threads)?);
        let masks: Vec<Mask> = r
            .chunks_exact(n)
            .zip(u.chunks_exact(k))
            .map(|(r, u)| Mask {
                r: Zeroizing::new(r.iter().map(|v| u64::from(*v)).collect()),
                u: Zeroizing::new(u.iter().map(|v| u64::from(*v)).collect()),
            })
            .collect();
        self.masks_computed.fetch_add(rows as u64, Ordering::Relaxed);
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.precompute_nanos.fetch_add(nanos, Ordering::Relaxed);
        Ok(masks)
    }

    /// Takes `rows` masks from the pool, computing what is missing now. A mask leaves the pool
    /// when taken: none is used twice.
    fn take_masks(&self, rows: usize) -> Result<Vec<Mask>, OffloadError> {
        let mut taken = {
            let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
            let at = pool.len().saturating_sub(rows);
            pool.split_off(at)
        };
        if taken.len() < rows {
            taken.extend(self.compute_masks(rows - taken.len())?);
        }
        Ok(taken)
    }

    /// `x (m × n, row-major) · W` through `accelerator`: blinded, range-checked, verified and
    /// unblinded as the module docs say. Any failed check is an error and is counted.
    pub fn multiply(
        &self,
        accelerator: &dyn Accelerator,
        x: &[f32],
        m: usize,
    ) -> Result<Vec<f32>, OffloadError> {
        let (n, k) = (self.weights.n(), self.weights.k());
        if m == 0 || m.checked_mul(n) != Some(x.len()) {
            return Err(OffloadError::Shape {
                expected: format!("{m} × {n} inputs"),
                got: x.len(),
            });
        }
        if m.saturating_mul(n.max(k)) > wire::MAX_ELEMENTS {
            return Err(OffloadError::Shape {
                expected: format!("at most {} elements a message", wire::MAX_ELEMENTS),
                got: m.saturating_mul(n.max(k)),
            });
        }
        let masks = self.take_masks(m)?;
        let started = Instant::now();
        let quantized = x.chunks_exact(n).map(quantize_row).collect::<Result<Vec<_>, _>>()?;
        if masks.len() != m {
            return Err(OffloadError::Shape { expected: format!("{m} masks"), got: masks.len() });
        }
        let mut blinded = Vec::with_capacity(m * n);
        for (row, mask) in quantized.iter().zip(&masks) {
            for (xq, r) in row.values.iter().zip(mask.r.iter()) {
                // Both below p (< 2^31): the sum fits.
                blinded.push(((from_signed(*xq) + r) % P) as u32);
            }
        }
        let id: [u8; 16] = rand::rng().random();
        let request = Message::Multiply {
            id,
            weights: *self.weights.digest(),
            m: m as u32,
            n: n as u32,
            rows: blinded,
        };
        let blinding = started.elapsed();
        let waiting = Instant::now();
        let answer = self.exchange(accelerator, &request);
        add_nanos(&self.accelerator_nanos, waiting.elapsed());
        let answer = answer?;
        let checking = Instant::now();
        let Message::Multiply { rows: blinded, .. } = request else {
            return Err(OffloadError::Malformed("request"));
        };
        let product = match answer {
            Message::Product { id: got, m: rows, k: cols, values }
                if got == id
                    && rows as usize == m
                    && cols as usize == k
                    && values.len() == m * k =>
            {
                values
            }
            Message::Refusal { reason, .. } => return Err(OffloadError::Refused(reason)),
            _ => return Err(self.failed("an answer to another request or of another shape")),
        };
        // The range check: a value p or above would hide a multiple of p added to the truth.
        if product.iter().any(|v| u64::from(*v) >= P) {
            return Err(self.failed("a value not below p"));
        }
        let verifying = Instant::now();
        {
            let mut checker = self.checker.lock().unwrap_or_else(|e| e.into_inner());
            let holds = checker.holds(&blinded, &product, n, k);
            add_nanos(&self.verify_nanos, verifying.elapsed());
            if !holds {
                // The vectors may now be less secret: draw new ones before anything else.
                let generation = checker.generation + 1;
                *checker = Freivalds::draw(&self.weights, self.rounds, generation);
                drop(checker);
                return Err(self.failed("Freivalds' check"));
            }
        }
        let mut out = Vec::with_capacity(m * k);
        for ((row, mask), y) in quantized.iter().zip(&masks).zip(product.chunks_exact(k)) {
            for ((y, u), scale) in y.iter().zip(mask.u.iter()).zip(self.weights.scales()) {
                let exact = center(sub(u64::from(*y), *u));
                out.push((exact as f64 / row.sigma * f64::from(*scale)) as f32);
            }
        }
        self.rows_offloaded.fetch_add(m as u64, Ordering::Relaxed);
        add_nanos(&self.tee_nanos, blinding + checking.elapsed());
        Ok(out)
    }

    /// One exchange; uploads the weights once if the accelerator does not hold them.
    fn exchange(
        &self,
        accelerator: &dyn Accelerator,
        request: &Message,
    ) -> Result<Message, OffloadError> {
        let bytes = request.encode();
        let answer = Message::decode(&accelerator.exchange(&bytes)?)?;
        if !matches!(answer, Message::Refusal { code: wire::UNKNOWN_WEIGHTS, .. }) {
            return Ok(answer);
        }
        let upload = Message::Weights {
            n: self.weights.n() as u32,
            k: self.weights.k() as u32,
            values: self.weights.values().to_vec(),
        };
        match Message::decode(&accelerator.exchange(&upload.encode())?)? {
            Message::Held { weights } if weights == *self.weights.digest() => {}
            Message::Refusal { reason, .. } => return Err(OffloadError::Refused(reason)),
            _ => return Err(OffloadError::Malformed("the answer to a weights upload")),
        }
        Message::decode(&accelerator.exchange(&bytes)?)
    }

    fn failed(&self, what: &'static str) -> OffloadError {
        // Time spent on a refused answer is not counted in `tee_nanos`: it measures successes.
        self.checks_failed.fetch_add(1, Ordering::Relaxed);
        OffloadError::IntegrityCheckFailed(what)
    }
}

/// Adds `elapsed` to a nanosecond counter (saturating at `u64::MAX`).
fn add_nanos(counter: &AtomicU64, elapsed: std::time::Duration) {
    counter.fetch_add(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
}
