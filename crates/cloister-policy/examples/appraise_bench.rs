//! Times one appraisal with the built-in policies (clone of the prepared engine + evaluation).
//!
//! Run with `cargo run --release -p cloister-policy --example appraise_bench`.

use std::collections::BTreeMap;
use std::time::Instant;

use cloister_policy::AppraisalPolicy;
use cloister_types::{Claims, Hex, TcbStatus, TeeKind};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let claims = Claims {
        tee: TeeKind::Sim,
        measurement: Hex(vec![0xab; 48]),
        signer: None,
        product_id: None,
        svn: Some(1),
        debug: false,
        report_data: Hex(vec![0; 64]),
        tcb_status: TcbStatus::Simulated,
        advisories: Vec::new(),
        platform_id: None,
        vendor: BTreeMap::new(),
    };
    let reference_values = serde_json::json!({"measurements": [Hex(vec![0xab; 48]).to_string()]});
    for policy in [AppraisalPolicy::production_default(), AppraisalPolicy::development_sim()] {
        let iterations = 2_000;
        let start = Instant::now();
        for _ in 0..iterations {
            std::hint::black_box(policy.appraise(&claims, &reference_values)?);
        }
        let per_call = start.elapsed() / iterations;
        println!("{}: {per_call:?} per appraisal", policy.policy_id());
    }

    let start = Instant::now();
    let _ = AppraisalPolicy::development_sim();
    println!("compiling dev-sim: {:?}", start.elapsed());
    Ok(())
}
