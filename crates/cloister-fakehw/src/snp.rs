//! A synthetic AMD SEV-SNP platform (a Milan chip) under a test root: an ARK, an ASK and a VCEK
//! with AMD's names and extensions, attestation reports the VCEK signs, and the certificate
//! table a host hands its guests (`auxblob`, `SNP_GET_EXT_REPORT`).
//!
//! The verifier recognises AMD certificates by their names (`ARK-Milan`, `SEV-Milan`,
//! `SEV-VCEK`), so these carry them; only the ARK's fingerprint differs from AMD's, and an
//! instance accepts the evidence only when it lists [`SnpPlatform::root_pem`] (as a test root,
//! `trust_anchors.test_roots.snp`, or under `roots`).

use cloister_types::{Hex, RuntimeData, TeeKind, UnifiedEvidence};
use rcgen::{CustomExtension, PKCS_ECDSA_P384_SHA384};

use crate::FakeHwError;
use crate::pki::{Role, TestCa, der, der_uint};

/// Size of an attestation report.
const REPORT_LEN: usize = 0x4A0;
/// The VCEK signs bytes `[0, SIGNED_LEN)`.
const SIGNED_LEN: usize = 0x2A0;
/// The guest's launch measurement.
pub const MEASUREMENT: [u8; 48] = [0x5b; 48];
/// The chip's id (what the VCEK's hwID extension names).
const CHIP_ID: [u8; 64] = [0xc1; 64];
/// The platform's TCB: boot loader, TEE, SNP firmware and microcode security patch levels.
const TCB: (u8, u8, u8, u8) = (3, 0, 8, 115);

/// Certificate-table GUIDs (GHCB specification), in their textual byte order.
const VCEK_GUID: [u8; 16] = [
    0x63, 0xda, 0x75, 0x8d, 0xe6, 0x64, 0x45, 0x64, 0xad, 0xc5, 0xf4, 0xb9, 0x3b, 0xe8, 0xac, 0xcd,
];
const ASK_GUID: [u8; 16] = [
    0x4a, 0xb7, 0xb3, 0x79, 0xbb, 0xac, 0x4f, 0xe4, 0xa0, 0x2f, 0x05, 0xae, 0xf3, 0x27, 0xc7, 0x82,
];
const ARK_GUID: [u8; 16] = [
    0xc0, 0xb4, 0x06, 0xa4, 0xa8, 0x03, 0x49, 0x52, 0x97, 0x43, 0x3f, 0xb6, 0x01, 0x4c, 0xd0, 0xae,
];

/// One synthetic SEV-SNP chip: its ARK, ASK and VCEK, valid from a day before the time given to
/// [`SnpPlatform::new`] for a year.
pub struct SnpPlatform {
    ark: TestCa,
    ask: TestCa,
    vcek: TestCa,
}

impl SnpPlatform {
    /// A fresh chip whose certificates are valid around `now` (unix seconds).
    pub fn new(now: i64) -> Result<Self, FakeHwError> {
        let validity = (now - 24 * 3600, now + 365 * 24 * 3600);
        let alg = &PKCS_ECDSA_P384_SHA384;
        let ark = TestCa::root("ARK-Milan", alg, validity)?;
        let ask = ark.issue("SEV-Milan", alg, Role::Ca, validity, Vec::new())?;
        let amd = |suffix: &[u64], content: Vec<u8>| {
            let mut oid = vec![1, 3, 6, 1, 4, 1, 3704, 1];
            oid.extend_from_slice(suffix);
            CustomExtension::from_oid_content(&oid, content)
        };
        let (bootloader, tee, snp, microcode) = TCB;
        let extensions = vec![
            amd(&[1], der_uint(1)),
            amd(&[2], der(0x16, b"Milan-B0")),
            amd(&[3, 1], der_uint(u64::from(bootloader))),
            amd(&[3, 2], der_uint(u64::from(tee))),
            amd(&[3, 3], der_uint(u64::from(snp))),
            amd(&[3, 8], der_uint(u64::from(microcode))),
            amd(&[4], der(0x04, &CHIP_ID)),
        ];
        let vcek = ask.issue("SEV-VCEK", alg, Role::Leaf, validity, extensions)?;
        Ok(Self { ark, ask, vcek })
    }

    /// The test root (the ARK), PEM: what an instance lists under `trust_anchors.test_roots.snp`.
    pub fn root_pem(&self) -> String {
        self.ark.pem()
    }

    /// The VCEK certificate, DER.
    pub fn vcek_der(&self) -> Vec<u8> {
        self.vcek.der().to_vec()
    }

    /// The guest's launch measurement, as reference values list it.
    pub fn measurement(&self) -> Hex {
        Hex(MEASUREMENT.to_vec())
    }

    /// The platform's TCB as `reference_values.snp_minimum_tcb` names it.
    pub fn minimum_tcb(&self) -> serde_json::Value {
        let (bootloader, tee, snp, microcode) = TCB;
        serde_json::json!({
            "bootloader": bootloader, "tee": tee, "snp": snp, "microcode": microcode,
        })
    }

    /// A version 3 attestation report of the guest at `vmpl` with `report_data`, signed by the
    /// VCEK.
    pub fn report(&self, report_data: &[u8; 64], vmpl: u32) -> Result<Vec<u8>, FakeHwError> {
        let (bootloader, tee, snp, microcode) = TCB;
        let tcb = [bootloader, tee, 0, 0, 0, 0, snp, microcode];
        let mut r = vec![0u8; REPORT_LEN];
        let mut put = |offset: usize, bytes: &[u8]| {
            if let Some(dst) = r.get_mut(offset..offset + bytes.len()) {
                dst.copy_from_slice(bytes);
            }
        };
        put(0x00, &3u32.to_le_bytes()); // VERSION
        put(0x04, &1u32.to_le_bytes()); // GUEST_SVN
        put(0x08, &0x3_0000u64.to_le_bytes()); // POLICY: SMT allowed, reserved bit 17; no debug
        put(0x30, &vmpl.to_le_bytes());
        put(0x34, &1u32.to_le_bytes()); // SIGNATURE_ALGO: ECDSA P-384 with SHA-384
        put(0x38, &tcb); // CURRENT_TCB
        put(0x50, report_data);
        put(0x90, &MEASUREMENT);
        put(0x180, &tcb); // REPORTED_TCB
        put(0x188, &[0x19, 0x01, 0x01]); // CPUID family, model, stepping: Milan
        put(0x1A0, &CHIP_ID);
        put(0x1E0, &tcb); // COMMITTED_TCB
        put(0x1E8, &[4, 52, 1]); // CURRENT_BUILD, MINOR, MAJOR
        put(0x1EC, &[4, 52, 1]); // COMMITTED_BUILD, MINOR, MAJOR
        put(0x1F0, &tcb); // LAUNCH_TCB
        let signature = self.vcek.sign_p384_raw(r.get(..SIGNED_LEN).unwrap_or_default())?;
        // R and S, each little-endian in a 72-byte field.
        let (sig_r, sig_s) = signature.split_at(48);
        for (field, scalar) in [(SIGNED_LEN, sig_r), (SIGNED_LEN + 72, sig_s)] {
            let little: Vec<u8> = scalar.iter().rev().copied().collect();
            if let Some(dst) = r.get_mut(field..field + 48) {
                dst.copy_from_slice(&little);
            }
        }
        Ok(r)
    }

    /// The host's certificate table: VCEK, ASK and ARK (DER), as `auxblob` carries it.
    pub fn certificate_table(&self) -> Vec<u8> {
        let entries = [(VCEK_GUID, &self.vcek), (ASK_GUID, &self.ask), (ARK_GUID, &self.ark)];
        let header = (entries.len() + 1) * 24;
        let mut table = Vec::new();
        let mut blobs = Vec::new();
        for (guid, cert) in entries {
            table.extend_from_slice(&guid);
            table.extend_from_slice(&((header + blobs.len()) as u32).to_le_bytes());
            table.extend_from_slice(&(cert.der().len() as u32).to_le_bytes());
            blobs.extend_from_slice(cert.der());
        }
        table.extend_from_slice(&[0; 24]);
        table.extend_from_slice(&blobs);
        table
    }

    fn certificates(&self) -> Vec<Vec<u8>> {
        [&self.vcek, &self.ask, &self.ark].iter().map(|c| c.der().to_vec()).collect()
    }
}

impl cloister_attest::Attester for SnpPlatform {
    fn tee(&self) -> TeeKind {
        TeeKind::Snp
    }

    fn attest(
        &self,
        runtime_data: &RuntimeData,
    ) -> Result<UnifiedEvidence, cloister_attest::AttestError> {
        let report_data = crate::report_data_of(runtime_data)?;
        let report =
            self.report(&report_data, 0).map_err(|e| cloister_attest::AttestError::Malformed {
                path: "fake snp platform".into(),
                what: e.to_string(),
            })?;
        Ok(crate::unified(TeeKind::Snp, report, runtime_data, &self.certificates()))
    }
}
