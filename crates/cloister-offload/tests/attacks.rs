//! An accelerator that lies, replays, scales, drops rows or stalls is caught every time; what it
//! receives is uniform and carries none of the input.
//!
//! Trial counts default to a few hundred per kind so debug builds stay quick; the issue's
//! 10,000 per kind run with `CLOISTER_OFFLOAD_TRIALS=10000 cargo test --release -p
//! cloister-offload --test attacks`.
#![allow(clippy::unwrap_used)]

use std::sync::Mutex;

use cloister_offload::field::P;
use cloister_offload::server::AcceleratorState;
use cloister_offload::wire::Message;
use cloister_offload::{
    Accelerator, DEFAULT_ROUNDS, OffloadError, OffloadLayer, QuantizedWeights, output_error_bound,
};
use rand::Rng as _;

fn trials() -> usize {
    std::env::var("CLOISTER_OFFLOAD_TRIALS").ok().and_then(|t| t.parse().ok()).unwrap_or(300)
}

/// The honest accelerator, in process, recording what it was sent.
struct Honest {
    state: AcceleratorState,
    seen: Mutex<Vec<Vec<u8>>>,
}

impl Honest {
    fn new() -> Self {
        Honest { state: AcceleratorState::new(1 << 20, 2), seen: Mutex::new(Vec::new()) }
    }
}

impl Accelerator for Honest {
    fn exchange(&self, request: &[u8]) -> Result<Vec<u8>, OffloadError> {
        self.seen.lock().unwrap().push(request.to_vec());
        Ok(self.state.handle(request))
    }
}

/// An accelerator that answers honestly, then applies `tamper` to the product it returns.
struct Tampering<F> {
    honest: Honest,
    tamper: F,
    previous: Mutex<Option<Vec<u8>>>,
}

impl<F: Fn(&mut Message, Option<&Message>) + Send + Sync> Accelerator for Tampering<F> {
    fn exchange(&self, request: &[u8]) -> Result<Vec<u8>, OffloadError> {
        let answer = self.honest.exchange(request)?;
        let mut message = Message::decode(&answer).expect("the honest answer parses");
        if !matches!(message, Message::Product { .. }) {
            return Ok(answer);
        }
        let mut previous = self.previous.lock().unwrap();
        let before = previous.as_ref().map(|b| Message::decode(b).expect("parses"));
        *previous = Some(answer);
        (self.tamper)(&mut message, before.as_ref());
        Ok(message.encode())
    }
}

fn random_layer(n: usize, k: usize) -> (Vec<f32>, OffloadLayer) {
    let mut rng = rand::rng();
    let weights: Vec<f32> = (0..n * k).map(|_| rng.random_range(-1.0..1.0)).collect();
    let quantized = QuantizedWeights::quantize(n, k, &weights).expect("weights quantize");
    (weights, OffloadLayer::new(quantized, DEFAULT_ROUNDS))
}

fn random_input(m: usize, n: usize) -> Vec<f32> {
    let mut rng = rand::rng();
    (0..m * n).map(|_| rng.random_range(-4.0..4.0)).collect()
}

#[test]
fn an_honest_accelerator_gives_the_product_within_the_stated_bound() {
    for (m, n, k) in [(1, 1, 1), (3, 30, 16), (8, 576, 64), (2, 1536, 7)] {
        let (weights, layer) = random_layer(n, k);
        let accelerator = Honest::new();
        let x = random_input(m, n);
        let y = layer.multiply(&accelerator, &x, m).expect("an honest answer passes");
        for a in 0..m {
            let row = &x[a * n..(a + 1) * n];
            for j in 0..k {
                let exact: f64 =
                    (0..n).map(|i| f64::from(row[i]) * f64::from(weights[i * k + j])).sum();
                let bound = output_error_bound(row, layer.weights(), j);
                let error = (f64::from(y[a * k + j]) - exact).abs();
                // The bound is for exact arithmetic; the f32 result adds one rounding.
                assert!(
                    error <= bound + exact.abs() * 1e-6 + 1e-6,
                    "{m}×{n}×{k} [{a},{j}]: {error} > {bound}"
                );
            }
        }
        let stats = layer.stats();
        assert_eq!((stats.rows_offloaded, stats.checks_failed), (m as u64, 0));
        assert_eq!(stats.masks_computed, m as u64);
    }
}

/// Runs `trials()` requests against an accelerator that tampers with every answer; each must
/// fail the integrity check and none may yield a value.
fn always_caught<F: Fn(&mut Message, Option<&Message>) + Send + Sync>(name: &str, tamper: F) {
    let (_, layer) = random_layer(24, 9);
    let accelerator = Tampering { honest: Honest::new(), tamper, previous: Mutex::new(None) };
    let mut caught = 0;
    let mut honest_first = 0;
    for _ in 0..trials() {
        match layer.multiply(&accelerator, &random_input(3, 24), 3) {
            Err(OffloadError::IntegrityCheckFailed(_)) => caught += 1,
            // Tampering that needs an earlier answer (replays) lets the first one through.
            Ok(_) if honest_first == 0 => honest_first += 1,
            other => panic!("{name}: {other:?}"),
        }
    }
    assert_eq!(caught + honest_first, trials(), "{name}");
    assert_eq!(layer.stats().checks_failed, caught as u64, "{name}: every failure is counted");
}

fn product(message: &mut Message) -> (&mut [u8; 16], &mut u32, &mut Vec<u32>) {
    match message {
        Message::Product { id, m, values, .. } => (id, m, values),
        other => panic!("not a product: {other:?}"),
    }
}

#[test]
fn one_flipped_element_is_caught() {
    always_caught("flip", |message, _| {
        let (_, _, values) = product(message);
        let at = rand::rng().random_range(0..values.len());
        let delta = rand::rng().random_range(1..P as u32);
        values[at] = ((u64::from(values[at]) + u64::from(delta)) % P) as u32;
    });
}

#[test]
fn a_multiple_of_p_added_is_caught_by_the_range_check() {
    // Invisible modulo p: only the range check sees it.
    always_caught("plus p", |message, _| {
        let (_, _, values) = product(message);
        let at = rand::rng().random_range(0..values.len());
        values[at] += P as u32;
    });
}

#[test]
fn a_scaled_result_is_caught() {
    always_caught("scale", |message, _| {
        let (_, _, values) = product(message);
        for v in values.iter_mut() {
            *v = ((u64::from(*v) * 2) % P) as u32;
        }
    });
}

#[test]
fn a_stale_result_is_caught_even_under_the_current_id() {
    always_caught("stale", |message, previous| {
        if let Some(Message::Product { values: old, .. }) = previous {
            let (_, _, values) = product(message);
            values.clone_from(old);
        }
    });
}

#[test]
fn another_requests_answer_is_caught_by_its_id() {
    always_caught("other id", |message, previous| {
        if let Some(Message::Product { .. }) = previous {
            let (id, _, _) = product(message);
            id[0] ^= 1;
        }
    });
}

#[test]
fn dropped_rows_are_caught() {
    always_caught("drop", |message, _| {
        let (_, m, values) = product(message);
        *m -= 1;
        values.truncate(values.len() - 9);
    });
}

#[test]
fn a_dead_or_slow_accelerator_fails_the_request_without_a_value() {
    struct Dead;
    impl Accelerator for Dead {
        fn exchange(&self, _: &[u8]) -> Result<Vec<u8>, OffloadError> {
            Err(OffloadError::Transport("timed out after 2 s".to_owned()))
        }
    }
    let (_, layer) = random_layer(4, 2);
    let err = layer.multiply(&Dead, &random_input(1, 4), 1).expect_err("no answer");
    assert!(matches!(err, OffloadError::Transport(_)), "{err}");
    assert_eq!(layer.stats().rows_offloaded, 0);
}

#[test]
fn the_check_vectors_are_drawn_again_after_a_failure_and_only_then() {
    let (_, layer) = random_layer(8, 3);
    let honest = Honest::new();
    layer.multiply(&honest, &random_input(2, 8), 2).expect("honest");
    assert_eq!(layer.check_generation(), 0, "a passing check keeps the vectors");
    let liar = Tampering {
        honest: Honest::new(),
        tamper: |message: &mut Message, _: Option<&Message>| {
            let (_, _, values) = product(message);
            values[0] = (values[0] + 1) % P as u32;
        },
        previous: Mutex::new(None),
    };
    for expected in 1..=3 {
        assert!(layer.multiply(&liar, &random_input(2, 8), 2).is_err());
        assert_eq!(layer.check_generation(), expected, "a failure draws new vectors");
    }
}

#[test]
fn what_the_accelerator_receives_is_uniform_and_never_repeats() {
    // The worst case for blinding: the same input every time (here all zeros, so what is sent
    // is the mask itself, and a constant input otherwise).
    for input in [vec![0f32; 64], vec![1.5f32; 64]] {
        let (_, layer) = random_layer(64, 4);
        let accelerator = Honest::new();
        let requests = trials().max(300);
        for _ in 0..requests {
            layer.multiply(&accelerator, &input, 1).expect("honest");
        }
        // By request id: the first request is sent twice, the same bytes, around the upload of
        // the weights the accelerator did not hold yet.
        let mut by_id = std::collections::BTreeMap::new();
        for bytes in accelerator.seen.lock().unwrap().iter() {
            if let Message::Multiply { id, rows, .. } = Message::decode(bytes).expect("parses") {
                assert!(by_id.insert(id, rows.clone()).is_none_or(|earlier| earlier == rows));
            }
        }
        let rows: Vec<Vec<u32>> = by_id.into_values().collect();
        assert_eq!(rows.len(), requests);
        let mut distinct = rows.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), rows.len(), "a blinded row repeated: a mask was reused");
        let values: Vec<u32> = rows.iter().flatten().copied().collect();
        assert_uniform("blinded values", &values);
        // The difference of two blindings of the same input is uniform too (a fixed or
        // correlated mask would make it constant or skewed).
        let differences: Vec<u32> = rows
            .windows(2)
            .flat_map(|pair| {
                pair[0]
                    .iter()
                    .zip(&pair[1])
                    .map(|(a, b)| ((u64::from(*a) + P - u64::from(*b)) % P) as u32)
            })
            .collect();
        assert_uniform("differences of two blindings", &differences);
    }
}

/// Pearson's chi-square over 64 equal bins of 0..p; the critical value for 63 degrees of freedom
/// at a false-alarm rate of 10^-6 is about 126.
fn assert_uniform(what: &str, values: &[u32]) {
    const BINS: usize = 64;
    let mut counts = [0f64; BINS];
    for v in values {
        counts[(u64::from(*v) * BINS as u64 / P) as usize] += 1.0;
    }
    let expected = values.len() as f64 / BINS as f64;
    let chi2: f64 = counts.iter().map(|c| (c - expected).powi(2) / expected).sum();
    assert!(chi2 < 126.0, "{what}: chi-square {chi2:.1} over {} values", values.len());
}

#[test]
fn the_request_carries_none_of_the_input_in_any_encoding() {
    let (_, layer) = random_layer(48, 4);
    let accelerator = Honest::new();
    // Distinctive values, each of which would be easy to spot.
    let input: Vec<f32> = (0..48).map(|i| 1234.5678 + i as f32 * 3.25).collect();
    layer.multiply(&accelerator, &input, 1).expect("honest");
    let seen = accelerator.seen.lock().unwrap();
    let request = seen.iter().find(|b| b[8] == 2).expect("a multiply was sent");
    let mut needles: Vec<Vec<u8>> = Vec::new();
    for x in &input {
        needles.push(x.to_le_bytes().to_vec());
        needles.push(x.to_be_bytes().to_vec());
        needles.push(f64::from(*x).to_le_bytes().to_vec());
        needles.push(x.to_string().into_bytes());
    }
    // The quantized integers the TEE blinds (any scale), as 4-byte little-endian words.
    let l1: f64 = input.iter().map(|x| f64::from(x.abs())).sum();
    let sigma = (((P - 1) / 2) as f64 - 1.0 - 127.0 * 48.0 / 2.0) / (127.0 * l1);
    for x in &input {
        let q = (f64::from(*x) * sigma).round() as i64 as u32;
        needles.push(q.to_le_bytes().to_vec());
    }
    for needle in &needles {
        assert!(
            !request.windows(needle.len()).any(|w| w == needle.as_slice()),
            "the request contains {needle:?}"
        );
    }
}
