//! Property tests: the three parsers never panic, whatever bytes they are given (random bytes,
//! and real vectors with bytes overwritten), a cut event log parses only at event boundaries,
//! and no byte of a SIGSTRUCT that the signature or its check values cover can change unnoticed.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::LazyLock;

use cloister_measure::sgx::{self, Sigstruct};
use cloister_measure::snp::{self, DirectBoot, LaunchInputs, VcpuType, Vmm};
use cloister_measure::tdx;
use proptest::prelude::*;

fn vector(relative: &str) -> Vec<u8> {
    let dir = match std::env::var_os("CLOISTER_VECTORS") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors"),
    };
    let path = dir.join(relative);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read vector {}: {e}", path.display()))
}

static OVMF: LazyLock<Vec<u8>> =
    LazyLock::new(|| vector("measure-snp/virteesev_ovmf_AmdSev_suffix.bin"));
static LOG: LazyLock<Vec<u8>> =
    LazyLock::new(|| vector("measure-tdx/goeventlog_CCEL_unpadded.data.bin"));
static SGXS: LazyLock<Vec<u8>> = LazyLock::new(|| vector("measure-sgx/fortanix_test_enclave.sgxs"));
static SIGSTRUCT: LazyLock<Vec<u8>> =
    LazyLock::new(|| vector("measure-sgx/fortanix_test_enclave.sig"));

/// Overwrites bytes of `base` at the given positions (taken modulo its length).
fn patched(base: &[u8], patches: &[(usize, u8)]) -> Vec<u8> {
    let mut out = base.to_vec();
    for &(at, value) in patches {
        let at = at % out.len();
        out[at] = value;
    }
    out
}

/// Every SNP entry point over one firmware image, with a kernel and 2 vCPUs.
fn all_snp(ovmf: &[u8]) {
    let boot = DirectBoot { kernel: b"k", initrd: Some(b"i"), append: Some("c") };
    for vmm in [Vmm::Qemu, Vmm::Ec2, Vmm::Gce] {
        let mut inputs = LaunchInputs::new(ovmf);
        inputs.vcpu_type = Some(VcpuType::EpycMilan);
        inputs.vcpus = 2;
        inputs.vmm = vmm;
        let _ = snp::launch_digest(&inputs);
        inputs.boot = Some(boot);
        let _ = snp::launch_digest(&inputs);
    }
    let _ = snp::sev_es_launch_digest(ovmf, Some(&boot), 2, Some(VcpuType::Epyc), Vmm::Qemu);
    let _ = snp::sev_launch_digest(ovmf, Some(&boot));
    let _ = snp::ovmf_hash(ovmf);
}

/// Both SGX parsers, and the signature check when the structure parses.
fn all_sgx(bytes: &[u8]) {
    let _ = sgx::mrenclave_from_sgxs(bytes);
    if let Ok(s) = Sigstruct::parse(bytes) {
        let _ = (s.mrsigner(), s.date(), s.verify_signature());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..3000)) {
        let _ = tdx::replay(&bytes);
        all_sgx(&bytes);
        all_snp(&bytes);
    }

    #[test]
    fn a_patched_event_log_never_panics(patches in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let _ = tdx::replay(&patched(&LOG, &patches));
    }

    #[test]
    fn a_cut_event_log_parses_only_at_event_boundaries(cut in 0usize..2026) {
        let full = tdx::replay(&LOG).unwrap();
        let boundaries: Vec<usize> = full.events.iter().map(|e| e.offset).collect();
        match tdx::replay(&LOG[..cut]) {
            Ok(part) => {
                prop_assert!(boundaries.contains(&cut), "parsed a log cut at {}", cut);
                prop_assert_eq!(&part.events[..], &full.events[..part.events.len()]);
            }
            Err(_) => prop_assert!(!boundaries.contains(&cut), "refused a log cut at event boundary {}", cut),
        }
    }

    #[test]
    fn a_patched_sgxs_or_sigstruct_never_panics(patches in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        all_sgx(&patched(&SGXS, &patches));
        all_sgx(&patched(&SIGSTRUCT, &patches));
    }

    #[test]
    fn a_random_sigstruct_body_never_panics(body in proptest::collection::vec(any::<u8>(), sgx::SIGSTRUCT_LEN)) {
        // Keep the fixed headers and the exponent so the signature check runs on random numbers.
        let mut bytes = body;
        bytes[..40].copy_from_slice(&SIGSTRUCT[..40]);
        bytes[512..516].copy_from_slice(&SIGSTRUCT[512..516]);
        all_sgx(&bytes);
    }

    #[test]
    fn every_covered_sigstruct_byte_matters(at in prop_oneof![0usize..128, 900usize..1028, 1040usize..1808], flip in 1u8..=255) {
        let mut bytes = SIGSTRUCT.clone();
        bytes[at] ^= flip;
        // A changed header is refused when parsing, anything else when verifying.
        if let Ok(s) = Sigstruct::parse(&bytes) {
            prop_assert!(s.verify_signature().is_err(), "byte {} changed unnoticed", at);
        }
    }
}

proptest! {
    // Firmware metadata can ask for up to a million page updates; fewer cases keep this quick.
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn a_patched_firmware_tail_never_panics(patches in proptest::collection::vec((3000usize..4096, any::<u8>()), 1..8)) {
        all_snp(&patched(&OVMF, &patches));
    }

    #[test]
    fn random_firmware_pages_never_panic(pages in proptest::collection::vec(any::<u8>(), 4096..=4096)) {
        all_snp(&pages);
    }
}
