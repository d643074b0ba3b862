//! What offloading one product costs and saves, per layer shape: the product computed in the
//! enclave (f32, ndarray), the masks' precomputation inside the enclave (`r` and `r W`), and
//! the online part of an offloaded product (quantize, blind, the accelerator's GEMM in the same
//! process, range check, Freivalds, unblind). On one machine the accelerator is no faster than
//! the enclave, so this shows the enclave-side overheads, not a speed-up; with a GPU behind the
//! socket the accelerator's share shrinks.
//!
//! `cargo run --release -p cloister-offload --example offload_bench -- [THREADS]`

use std::time::{Duration, Instant};

use cloister_offload::server::AcceleratorState;
use cloister_offload::{Accelerator, DEFAULT_ROUNDS, OffloadError, OffloadLayer, QuantizedWeights};
use ndarray::Array2;
use rand::Rng as _;

struct InProcess(AcceleratorState);

impl Accelerator for InProcess {
    fn exchange(&self, request: &[u8]) -> Result<Vec<u8>, OffloadError> {
        Ok(self.0.handle(request))
    }
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn main() -> Result<(), OffloadError> {
    let threads: usize = std::env::args().nth(1).and_then(|t| t.parse().ok()).unwrap_or(1);
    let accelerator = InProcess(AcceleratorState::new(1 << 30, threads));
    let mut rng = rand::rng();
    println!(
        "| shape m×n×k | in enclave (f32) | offload online | accelerator's GEMM | mask precompute | online ÷ enclave |"
    );
    println!("|---|---|---|---|---|---|");
    let shapes = [
        (64, 30, 16, "classifier layer, batch 64"),
        (128, 576, 1536, "SmolLM2 MLP up, 128-token prompt"),
        (128, 1536, 576, "SmolLM2 MLP down, 128-token prompt"),
        (3136, 27, 16, "3×3 conv as GEMM, 56×56 output"),
    ];
    for (m, n, k, what) in shapes {
        let weights: Vec<f32> = (0..n * k).map(|_| rng.random_range(-1.0..1.0)).collect();
        let x: Vec<f32> = (0..m * n).map(|_| rng.random_range(-2.0..2.0)).collect();
        let w = Array2::from_shape_vec((n, k), weights.clone()).expect("shape");
        let xa = Array2::from_shape_vec((m, n), x.clone()).expect("shape");
        let layer = OffloadLayer::new(QuantizedWeights::quantize(n, k, &weights)?, DEFAULT_ROUNDS);
        let rounds = 7;
        let enclave = median(
            (0..rounds)
                .map(|_| {
                    let started = Instant::now();
                    std::hint::black_box(xa.dot(&w));
                    started.elapsed()
                })
                .collect(),
        );
        // The weights reach the accelerator once, outside the timed rounds.
        layer.precompute(m)?;
        layer.multiply(&accelerator, &x, m)?;
        let mut online = Vec::new();
        let mut precompute = Vec::new();
        for _ in 0..rounds {
            let before = layer.stats().precompute_nanos;
            layer.precompute(m)?;
            precompute.push(Duration::from_nanos(layer.stats().precompute_nanos - before));
            let started = Instant::now();
            std::hint::black_box(layer.multiply(&accelerator, &x, m)?);
            online.push(started.elapsed());
        }
        let blinded: Vec<u32> = (0..m * n).map(|_| rng.random_range(0..(1u32 << 31) - 1)).collect();
        let gemm = median(
            (0..rounds)
                .map(|_| {
                    let started = Instant::now();
                    let _ = std::hint::black_box(cloister_offload::cpu::multiply(
                        &blinded,
                        m,
                        layer.weights(),
                        threads,
                    ));
                    started.elapsed()
                })
                .collect(),
        );
        let (online, precompute) = (median(online), median(precompute));
        println!(
            "| {m}×{n}×{k} ({what}) | {:.3} ms | {:.3} ms | {:.3} ms | {:.3} ms | {:.1} |",
            enclave.as_secs_f64() * 1e3,
            online.as_secs_f64() * 1e3,
            gemm.as_secs_f64() * 1e3,
            precompute.as_secs_f64() * 1e3,
            online.as_secs_f64() / enclave.as_secs_f64(),
        );
        assert_eq!(layer.stats().checks_failed, 0);
    }
    Ok(())
}
