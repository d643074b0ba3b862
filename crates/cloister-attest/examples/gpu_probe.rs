//! `gpu_probe [NVML_LIBRARY]`: what this machine's NVIDIA GPUs say about confidential computing,
//! through the same code the worker uses. Prints one JSON object: the CC state NVML reports, and
//! either each GPU's evidence summary (report size, nonce bound, certificates) or the refusal.
//! Exit 0 when every GPU gave bound evidence, 3 when refused, 2 when NVML is unusable. Built
//! stripped for machines without a Rust toolchain:
//! `cargo build --release -p cloister-attest --example gpu_probe` then `strip`.

use std::path::PathBuf;
use std::process::ExitCode;

use cloister_attest::{AttestError, NvidiaGpus};

fn main() -> ExitCode {
    let library =
        PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "libnvidia-ml.so.1".to_owned()));
    let report_data: [u8; 64] = rand::random();
    let gpus = match NvidiaGpus::open(&library) {
        Ok(gpus) => gpus,
        Err(error) => {
            let code = if matches!(error, AttestError::Nvml(_)) { 2 } else { 3 };
            println!("{}", serde_json::json!({"ok": false, "refused": error.to_string()}));
            return ExitCode::from(code);
        }
    };
    let mut devices = Vec::new();
    for index in 0..gpus.count() {
        match gpus.evidence(index, &report_data) {
            Ok(entry) => devices.push(serde_json::json!({
                "index": index,
                "evidence_base64url_chars": entry["evidence"].as_str().map_or(0, str::len),
                "certificates": entry["collateral"]["certificates"].as_array().map_or(0, Vec::len),
                "nonce_bound": true,
            })),
            Err(error) => {
                println!(
                    "{}",
                    serde_json::json!({"ok": false, "gpu": index, "refused": error.to_string()})
                );
                return ExitCode::from(3);
            }
        }
    }
    println!("{}", serde_json::json!({"ok": true, "gpus": devices}));
    ExitCode::SUCCESS
}
