//! Verification cost per piece of real evidence, one core, side by side with dcap-qvl on the
//! same SGX and TDX quotes and collateral.
//!
//! `cargo run --release -p cloister-verify --example verify_bench [-- ITERATIONS [FILTER]]`
//! (vectors from `$CLOISTER_VECTORS` or `../shared/vectors`; FILTER runs only the rows whose
//! name contains it, for profiling one driver). Prints the median of several rounds, in
//! microseconds per verification: wall clock, and time on the CPU (Linux `schedstat`), which a
//! shared, loaded machine inflates far less. Never used as a test.

use std::path::PathBuf;
use std::time::Instant;

use cloister_types::TeeKind;
use cloister_verify::{Collateral, Inputs, TrustAnchors, decode_input, verify_vendor_evidence};

fn vectors() -> PathBuf {
    match std::env::var_os("CLOISTER_VECTORS") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors"),
    }
}

fn read(name: &str) -> Vec<u8> {
    let path = vectors().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Nanoseconds this process's main thread has run on a CPU (0 where schedstat is missing).
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

/// Median microseconds per call of `f` over 7 rounds of `iterations` calls: wall clock, and on
/// the CPU.
fn median_us(iterations: u32, mut f: impl FnMut()) -> (f64, f64) {
    let (mut wall, mut cpu): (Vec<f64>, Vec<f64>) = (0..7)
        .map(|_| {
            let (start, cpu_start) = (Instant::now(), cpu_ns());
            for _ in 0..iterations {
                f();
            }
            let per = |total: f64| total / f64::from(iterations);
            let cpu_us = cpu_ns().saturating_sub(cpu_start) as f64 / 1e3;
            (per(start.elapsed().as_secs_f64() * 1e6), per(cpu_us))
        })
        .unzip();
    wall.sort_by(f64::total_cmp);
    cpu.sort_by(f64::total_cmp);
    (wall[3], cpu[3])
}

struct Case {
    name: &'static str,
    tee: TeeKind,
    evidence: Vec<u8>,
    collateral: Collateral,
    anchors: TrustAnchors,
    at: i64,
}

fn main() {
    let iterations: u32 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(200);
    let filter = std::env::args().nth(2).unwrap_or_default();
    let june_2025 = 1_750_377_600; // 2025-06-20T00:00:00Z
    let cases = [
        Case {
            name: "sgx quote v3 + collateral",
            tee: TeeKind::Sgx,
            evidence: read("sgx/dcapqvl_sgx_quote"),
            collateral: Collateral::new()
                .with_document(read("sgx/dcapqvl_sgx_quote_collateral.json")),
            anchors: TrustAnchors::new(),
            at: june_2025,
        },
        Case {
            name: "tdx quote v4 + collateral",
            tee: TeeKind::Tdx,
            evidence: read("tdx/dcapqvl_tdx_quote"),
            collateral: Collateral::new()
                .with_document(read("tdx/dcapqvl_tdx_quote_collateral.json")),
            anchors: TrustAnchors::new(),
            at: june_2025,
        },
        Case {
            name: "tdx quote v4, no collateral (signatures + PCK chain)",
            tee: TeeKind::Tdx,
            evidence: read("tdx/dcapqvl_tdx_quote"),
            collateral: Collateral::new(),
            anchors: TrustAnchors::new(),
            at: june_2025,
        },
        Case {
            name: "snp report + VCEK + ASK/ARK",
            tee: TeeKind::Snp,
            evidence: read("snp/trustee_test-report.bin"),
            collateral: Collateral::new()
                .with_certificates(&read("snp/trustee_test-vcek.der"))
                .with_certificates(&read("snp/milan_ask_ark_asvk.pem")),
            anchors: TrustAnchors::new(),
            at: june_2025,
        },
        Case {
            name: "csv report + HRK/HSK/CEK",
            tee: TeeKind::Csv,
            evidence: read("csv/csvrs_report.cert"),
            collateral: Collateral::new()
                .with_certificates(&read("csv/hygon_hrk.cert"))
                .with_certificates(&read("csv/csvrs_hsk.cert"))
                .with_certificates(&read("csv/csvrs_cek.cert")),
            anchors: TrustAnchors::new(),
            at: june_2025,
        },
        Case {
            name: "cca token (platform + realm)",
            tee: TeeKind::Cca,
            evidence: read("cca/trustee_cca-example-token.cbor"),
            collateral: Collateral::new(),
            anchors: TrustAnchors::new().with_root(TeeKind::Cca, read("cca/trustee_cpak-pub.json")),
            at: june_2025,
        },
        Case {
            name: "nitro attestation document",
            tee: TeeKind::Nitro,
            evidence: read("nitro/evervault_beta_valid-attestation-doc-bytes"),
            collateral: Collateral::new(),
            anchors: TrustAnchors::new(),
            at: 1_665_651_482, // 2022-10-13T08:58:02Z
        },
        Case {
            name: "nvidia h100 spdm transcript + chain",
            tee: TeeKind::Nvidia,
            evidence: decode_input(&read("nvidia/trustee_hopperAttestationReport.txt")).0,
            collateral: Collateral::new()
                .with_certificates(&read("nvidia/trustee_hopper_cert_chain_case1.txt")),
            anchors: TrustAnchors::new(),
            at: 1_717_200_000, // 2024-06-01
        },
    ];
    println!("| evidence | µs per verification, wall (median of 7 × {iterations}) | µs on CPU |");
    println!("|---|---|---|");
    for case in cases.iter().filter(|c| c.name.contains(&filter)) {
        let inputs =
            Inputs { collateral: &case.collateral, anchors: &case.anchors, now_unix: case.at };
        verify_vendor_evidence(case.tee, &case.evidence, &inputs)
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let us = median_us(iterations, || {
            std::hint::black_box(verify_vendor_evidence(case.tee, &case.evidence, &inputs).is_ok());
        });
        println!("| cloister: {} | {:.0} | {:.0} |", case.name, us.0, us.1);
    }
    // The peer: dcap-qvl's own one-shot verification of the same quotes and collateral.
    for (name, quote, collateral) in [
        (
            "sgx quote v3 + collateral",
            "sgx/dcapqvl_sgx_quote",
            "sgx/dcapqvl_sgx_quote_collateral.json",
        ),
        (
            "tdx quote v4 + collateral",
            "tdx/dcapqvl_tdx_quote",
            "tdx/dcapqvl_tdx_quote_collateral.json",
        ),
    ] {
        if !format!("dcap-qvl {name}").contains(&filter) {
            continue;
        }
        let quote = read(quote);
        let collateral: dcap_qvl::QuoteCollateralV3 =
            serde_json::from_slice(&read(collateral)).expect("dcap-qvl bundle");
        let verifier =
            dcap_qvl::verify::QuoteVerifier::<dcap_qvl::configs::RingConfig>::new_with_config(
                root_from_quote(&quote),
            );
        verifier.verify(&quote, &collateral, june_2025 as u64).expect("dcap-qvl verifies");
        let us = median_us(iterations, || {
            std::hint::black_box(verifier.verify(&quote, &collateral, june_2025 as u64).is_ok());
        });
        println!("| dcap-qvl 0.7.1 directly: {name} | {:.0} | {:.0} |", us.0, us.1);
    }
}

/// The Intel root as carried in the quote's own PCK chain (the last PEM certificate).
fn root_from_quote(quote: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(quote);
    let start = text.rfind("-----BEGIN CERTIFICATE-----").expect("PEM chain in quote");
    let certs = cloister_verify::x509::split_certificates(text[start..].as_bytes()).expect("PEM");
    certs.into_iter().next().expect("root")
}
