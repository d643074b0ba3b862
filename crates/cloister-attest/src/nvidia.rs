//! NVIDIA confidential-computing GPUs (Hopper and later in CC mode): SPDM evidence through NVML,
//! bound to the CPU TEE's runtime data and attached to the CPU evidence as `gpu0`, `gpu1`, ….
//!
//! The nonce each GPU signs is SHA-256 of the CPU evidence's 64-byte `report_data` — what the
//! composite verifier requires — so the GPU evidence belongs to this attestation and no other.
//! Each report's GET_MEASUREMENTS request is checked to carry exactly that nonce before the
//! evidence leaves the enclave; the device certificate chain comes from NVML as PEM and travels,
//! leaf first, as the entry's `certificates` collateral. GPUs that are not in confidential-
//! computing mode (or are in devtools mode) are refused by name, never attested.

use std::path::{Path, PathBuf};

use cloister_tee_sys::nvml::{NONCE_LEN, Nvml};
use cloister_types::{Base64Url, RuntimeData, TeeKind, UnifiedEvidence};
use sha2::{Digest as _, Sha256};

use crate::{AttestError, Attester};

/// The SPDM request code of GET_MEASUREMENTS.
const GET_MEASUREMENTS: u8 = 0xE0;

/// The confidential GPUs of this machine, through NVML.
#[derive(Debug)]
pub struct NvidiaGpus {
    nvml: Nvml,
    library: PathBuf,
    count: u32,
}

impl NvidiaGpus {
    /// Loads NVML from `library` and checks that the system is in confidential-computing mode,
    /// devtools off, with at least one GPU; otherwise the error says which of these failed.
    pub fn open(library: &Path) -> Result<Self, AttestError> {
        let nvml = Nvml::open(library)?;
        let state = nvml.conf_compute_state()?;
        if state.cc_feature != 1 {
            return Err(AttestError::GpuNotConfidential(format!(
                "confidential computing is not enabled on this system's GPUs (NVML reports CC \
                 feature {}, environment {}); a GPU outside CC mode protects nothing, so it is \
                 not attested. Enable CC mode on the host (for example with NVIDIA's \
                 gpu-admin-tools) and start the confidential VM again",
                state.cc_feature, state.environment
            )));
        }
        if state.dev_tools_mode != 0 {
            return Err(AttestError::GpuNotConfidential(
                "the GPUs are in CC devtools mode, which lets the host debug them; refusing to \
                 attest them"
                    .into(),
            ));
        }
        let count = nvml.device_count()?;
        if count == 0 {
            return Err(AttestError::GpuNotConfidential("NVML sees no GPU".into()));
        }
        Ok(Self { nvml, library: library.to_path_buf(), count })
    }

    /// How many GPUs are attested.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The `additional_evidence` entry of GPU `index` for `report_data`.
    pub fn evidence(
        &self,
        index: u32,
        report_data: &[u8; 64],
    ) -> Result<serde_json::Value, AttestError> {
        let nonce: [u8; NONCE_LEN] = Sha256::digest(report_data).into();
        let report = self.nvml.attestation_report(index, &nonce)?;
        let source = self.library.join(format!("gpu{index}"));
        check_spdm_nonce(&source, &report, &nonce)?;
        let pem = self.nvml.attestation_certificate_chain(index)?;
        let certificates = pem_certificates(&source, &pem)?;
        let certificates: Vec<serde_json::Value> =
            certificates.iter().map(|der| Base64Url::encode(der).into()).collect();
        Ok(serde_json::json!({
            "tee": TeeKind::Nvidia,
            "evidence": Base64Url::encode(&report),
            "collateral": { "certificates": certificates },
        }))
    }
}

/// Checks that `report` starts with a GET_MEASUREMENTS request carrying `nonce` (SPDM 1.1 and
/// later: version, request code, two parameters, then the 32-byte nonce).
pub fn check_spdm_nonce(
    source: &Path,
    report: &[u8],
    nonce: &[u8; NONCE_LEN],
) -> Result<(), AttestError> {
    let request = report.get(..4 + NONCE_LEN).ok_or_else(|| {
        crate::malformed(source, format!("the GPU's report is {} bytes, too short", report.len()))
    })?;
    if request[1] != GET_MEASUREMENTS {
        return Err(crate::malformed(
            source,
            format!(
                "the GPU's report starts with SPDM request {:#04x}, not GET_MEASUREMENTS",
                request[1]
            ),
        ));
    }
    crate::check_report_data(source, nonce, &request[4..])
}

/// The DER certificates of NVML's PEM chain, in order (NVML pads its buffer with NULs).
fn pem_certificates(source: &Path, pem: &[u8]) -> Result<Vec<Vec<u8>>, AttestError> {
    let text = std::str::from_utf8(pem)
        .map_err(|_| crate::malformed(source, "the GPU's certificate chain is not PEM text"))?;
    cloister_types::pem_certificates(text.trim_end_matches('\0'))
        .map_err(|e| crate::malformed(source, format!("the GPU's certificate chain: {e}")))
}

/// A CPU TEE's attester with the machine's confidential GPUs: every attestation carries each
/// GPU's evidence over the same runtime data.
pub struct WithGpus {
    cpu: Box<dyn Attester>,
    gpus: NvidiaGpus,
}

impl WithGpus {
    /// `cpu`'s evidence, with `gpus`' attached.
    pub fn new(cpu: Box<dyn Attester>, gpus: NvidiaGpus) -> Self {
        Self { cpu, gpus }
    }
}

impl Attester for WithGpus {
    fn tee(&self) -> TeeKind {
        self.cpu.tee()
    }

    fn attest(&self, runtime_data: &RuntimeData) -> Result<UnifiedEvidence, AttestError> {
        let mut evidence = self.cpu.attest(runtime_data)?;
        let report_data = crate::report_data_of(runtime_data)?;
        for index in 0..self.gpus.count() {
            let entry = self.gpus.evidence(index, &report_data)?;
            evidence.additional_evidence.insert(format!("gpu{index}"), entry);
        }
        Ok(evidence)
    }
}
