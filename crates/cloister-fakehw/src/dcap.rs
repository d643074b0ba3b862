//! A synthetic Intel SGX or TDX platform under a test root, for tests that need DCAP evidence
//! bound to a fresh challenge (public quotes cannot be) and collateral the test can change.
//!
//! Everything Intel would provide is made here with test keys, in the formats the DCAP driver
//! and dcap-qvl check: a root CA, a PCK CA and a PCK certificate carrying the SGX extension
//! (FMSPC, CPUSVN, PCESVN), a TCB Signing certificate, the quote (an SGX v3 quote, or a TDX v4
//! quote with QE report certification data; the attestation key, the QE report signed by the
//! PCK key and bound to the attestation key, the PCK chain as certification data type 5), and
//! the collateral: TCB info and QE identity signed by the TCB Signing key, the PCK CRL and the
//! root CA CRL. The PCK chain and the collateral's signing chain end at the same test root,
//! [`DcapPlatform::root_pem`]; an instance accepts the evidence only when it lists that root
//! (as a test root, `trust_anchors.test_roots`, or under `roots`), and Intel's root is never
//! involved.

use cloister_types::{Base64Url, Hex, RuntimeData, TeeKind, UnifiedEvidence};
use rcgen::{CustomExtension, PKCS_ECDSA_P256_SHA256};
use sha2::{Digest as _, Sha256};

use crate::FakeHwError;
use crate::pki::{Role, TestCa, der, der_uint, rfc3339};

/// Intel's QE vendor id, which every DCAP quote names.
const INTEL_QE_VENDOR_ID: [u8; 16] = [
    0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9, 0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07,
];
/// The platform's FMSPC.
pub const FMSPC: [u8; 6] = [0x00, 0x90, 0x6e, 0xd5, 0x00, 0x00];
/// The platform's CPUSVN (as in its PCK certificate) and PCESVN.
const CPU_SVN: [u8; 16] = [5, 5, 2, 4, 1, 128, 14, 0, 0, 0, 0, 0, 0, 0, 0, 0];
const PCE_SVN: u16 = 13;
/// The quoting enclave's signer, product and SVN, as its QE identity lists them.
const QE_MR_SIGNER: [u8; 32] = [0x8c; 32];
const QE_ISV_SVN: u16 = 8;
/// The measurement (MRENCLAVE) and signer of the attested SGX enclave.
pub const MR_ENCLAVE: [u8; 32] = [0x5e; 32];
const MR_SIGNER: [u8; 32] = [0x51; 32];
/// The attested TD's MRTD.
pub const MR_TD: [u8; 48] = [0x7d; 48];
/// RTMRn of the attested TD is 48 bytes of `RTMR_BASE + n`.
const RTMR_BASE: u8 = 0x70;
/// TD attributes: SEPT_VE_DISABLE (bit 28), which DCAP appraisal requires; not debug.
const TD_ATTRIBUTES: u64 = 1 << 28;

/// One synthetic SGX or TDX platform: its certificates and keys, valid from a day before the
/// time given to the constructor for a year.
pub struct DcapPlatform {
    tee: TeeKind,
    root: TestCa,
    pck_ca: TestCa,
    pck: TestCa,
    tcb_signing: TestCa,
    attestation_key: TestCa,
    not_before: i64,
}

impl DcapPlatform {
    /// A fresh SGX platform whose certificates are valid around `now` (unix seconds).
    pub fn sgx(now: i64) -> Result<Self, FakeHwError> {
        Self::new(TeeKind::Sgx, now)
    }

    /// A fresh TDX platform whose certificates are valid around `now` (unix seconds).
    pub fn tdx(now: i64) -> Result<Self, FakeHwError> {
        Self::new(TeeKind::Tdx, now)
    }

    fn new(tee: TeeKind, now: i64) -> Result<Self, FakeHwError> {
        let validity = (now - 24 * 3600, now + 365 * 24 * 3600);
        let alg = &PKCS_ECDSA_P256_SHA256;
        let name = tee.as_str().to_uppercase();
        let root = TestCa::root(&format!("Cloister test {name} Root CA"), alg, validity)?;
        let pck_ca = root.issue(
            &format!("Cloister test {name} PCK Processor CA"),
            alg,
            Role::Ca,
            validity,
            Vec::new(),
        )?;
        let tcb_signing =
            root.issue("Intel SGX TCB Signing", alg, Role::Leaf, validity, Vec::new())?;
        let extension =
            CustomExtension::from_oid_content(&[1, 2, 840, 113741, 1, 13, 1], sgx_extension());
        let pck = pck_ca.issue(
            &format!("Cloister test {name} PCK Certificate"),
            alg,
            Role::Leaf,
            validity,
            vec![extension],
        )?;
        // The attestation key is not certified; a leaf is the simplest holder of a P-256 key.
        let attestation_key =
            root.issue("Cloister test attestation key", alg, Role::Leaf, validity, Vec::new())?;
        Ok(Self { tee, root, pck_ca, pck, tcb_signing, attestation_key, not_before: validity.0 })
    }

    /// The TEE this platform is (`sgx` or `tdx`).
    pub fn tee(&self) -> TeeKind {
        self.tee
    }

    /// The test root, PEM: what an instance lists under `trust_anchors.test_roots.{sgx|tdx}`.
    pub fn root_pem(&self) -> String {
        self.root.pem()
    }

    /// The measurement of the attested enclave (MRENCLAVE) or TD (MRTD), as reference values
    /// list it.
    pub fn measurement(&self) -> Hex {
        match self.tee {
            TeeKind::Tdx => Hex(MR_TD.to_vec()),
            _ => Hex(MR_ENCLAVE.to_vec()),
        }
    }

    /// The TD's runtime measurement registers RTMR0–3 (TDX), as reference values list RTMR0–2
    /// (`reference_values.rtmr0` …).
    pub fn rtmrs(&self) -> [Hex; 4] {
        [0u8, 1, 2, 3].map(|index| Hex(vec![RTMR_BASE + index; 48]))
    }

    /// A quote with `report_data`: SGX v3 or TDX v4.
    pub fn quote(&self, report_data: &[u8; 64]) -> Result<Vec<u8>, FakeHwError> {
        let tdx = self.tee == TeeKind::Tdx;
        let mut header = Vec::with_capacity(48);
        header.extend_from_slice(&(if tdx { 4u16 } else { 3u16 }).to_le_bytes()); // version
        header.extend_from_slice(&2u16.to_le_bytes()); // ECDSA P-256 attestation key
        header.extend_from_slice(&(if tdx { 0x81u32 } else { 0u32 }).to_le_bytes()); // TEE type
        header.extend_from_slice(&QE_ISV_SVN.to_le_bytes());
        header.extend_from_slice(&PCE_SVN.to_le_bytes());
        header.extend_from_slice(&INTEL_QE_VENDOR_ID);
        header.extend_from_slice(&[0; 20]);
        // Attributes INIT | MODE64BIT: not a debug enclave.
        let body = if tdx {
            td_report(report_data)
        } else {
            sgx_report(&CPU_SVN, 0x05, &MR_ENCLAVE, &MR_SIGNER, 1, report_data)
        };
        let mut signed = header;
        signed.extend_from_slice(&body);

        let attestation_key = self.attestation_key.public_key_raw().get(1..).unwrap_or_default();
        let qe_auth_data = [0xa5u8; 32];
        let mut qe_report_data = [0u8; 64];
        let binding = Sha256::new().chain_update(attestation_key).chain_update(qe_auth_data);
        qe_report_data[..32].copy_from_slice(&binding.finalize());
        // Attributes INIT | PROVISIONKEY, as Intel's QE identity expects.
        let qe_report =
            sgx_report(&CPU_SVN, 0x11, &[0x9e; 32], &QE_MR_SIGNER, QE_ISV_SVN, &qe_report_data);
        let chain = format!("{}{}{}", self.pck.pem(), self.pck_ca.pem(), self.root.pem());

        // QE report, its signature, QE authentication data, the PCK chain (type 5).
        let mut qe_certification = Vec::new();
        qe_certification.extend_from_slice(&qe_report);
        qe_certification.extend_from_slice(&self.pck.sign_p256_raw(&qe_report)?);
        qe_certification.extend_from_slice(&(qe_auth_data.len() as u16).to_le_bytes());
        qe_certification.extend_from_slice(&qe_auth_data);
        qe_certification.extend_from_slice(&5u16.to_le_bytes());
        qe_certification.extend_from_slice(&(chain.len() as u32).to_le_bytes());
        qe_certification.extend_from_slice(chain.as_bytes());

        let mut auth = Vec::new();
        auth.extend_from_slice(&self.attestation_key.sign_p256_raw(&signed)?);
        auth.extend_from_slice(attestation_key);
        if tdx {
            // v4: QE report certification data (type 6) around the same fields.
            auth.extend_from_slice(&6u16.to_le_bytes());
            auth.extend_from_slice(&(qe_certification.len() as u32).to_le_bytes());
        }
        auth.extend_from_slice(&qe_certification);

        let mut quote = signed;
        quote.extend_from_slice(&(auth.len() as u32).to_le_bytes());
        quote.extend_from_slice(&auth);
        Ok(quote)
    }

    /// Unified evidence bound to `runtime_data` (what an attester of this platform returns).
    pub fn evidence(&self, runtime_data: &RuntimeData) -> Result<UnifiedEvidence, FakeHwError> {
        let report_data = runtime_data
            .report_data()
            .map_err(|e| FakeHwError::Encode { what: "runtime data", reason: e.to_string() })?;
        Ok(crate::unified(self.tee, self.quote(&report_data.0)?, runtime_data, &[]))
    }

    /// Intel's collateral for the platform as the attestation service's fetcher caches it, as a
    /// collateral bundle (`CollateralCache::load_bundle`, `serve attestation
    /// --collateral-bundle`): the TCB info (whose one level, the platform's, has `status`), its
    /// issuer chain, the QE identity, the PCK CRL and the root CA CRL, issued at `issued` (unix
    /// seconds) and valid for 30 days. `tcb_evaluation` is the TCB evaluation data number (a
    /// refresh with the same status changes it).
    pub fn collateral_bundle(
        &self,
        status: &str,
        issued: i64,
        tcb_evaluation: u32,
    ) -> Result<Vec<u8>, FakeHwError> {
        let next = issued + 30 * 24 * 3600;
        let tdx = self.tee == TeeKind::Tdx;
        let components: Vec<_> =
            CPU_SVN.iter().map(|svn| serde_json::json!({ "svn": svn })).collect();
        let mut tcb = serde_json::json!({ "sgxtcbcomponents": components, "pcesvn": PCE_SVN });
        let mut tcb_info = serde_json::json!({
            "id": if tdx { "TDX" } else { "SGX" },
            "version": 3, "issueDate": rfc3339(issued)?, "nextUpdate": rfc3339(next)?,
            "fmspc": hex::encode_upper(FMSPC), "pceId": "0000", "tcbType": 0,
            "tcbEvaluationDataNumber": tcb_evaluation,
        });
        if tdx {
            // TEE_TCB_SVN is all zero in the TD report: every TDX component at 0 matches, and
            // the module version 0 selects no module identity (the base module applies).
            tcb["tdxtcbcomponents"] = serde_json::json!(vec![serde_json::json!({"svn": 0}); 16]);
            tcb_info["tdxModule"] = serde_json::json!({
                "mrsigner": hex::encode_upper([0u8; 48]),
                "attributes": "0000000000000000",
                "attributesMask": "FFFFFFFFFFFFFFFF",
            });
        }
        tcb_info["tcbLevels"] = serde_json::json!([{
            "tcb": tcb, "tcbDate": rfc3339(self.not_before)?, "tcbStatus": status,
        }]);
        let tcb_info = tcb_info.to_string();
        let qe_identity = serde_json::json!({
            "id": if tdx { "TD_QE" } else { "QE" },
            "version": 2, "issueDate": rfc3339(issued)?, "nextUpdate": rfc3339(next)?,
            "tcbEvaluationDataNumber": tcb_evaluation,
            "miscselect": "00000000", "miscselectMask": "FFFFFFFF",
            "attributes": "11000000000000000000000000000000",
            "attributesMask": "FBFFFFFFFFFFFFFF0000000000000000",
            "mrsigner": hex::encode_upper(QE_MR_SIGNER), "isvprodid": 1,
            "tcbLevels": [{
                "tcb": { "isvsvn": QE_ISV_SVN }, "tcbDate": rfc3339(self.not_before)?,
                "tcbStatus": "UpToDate",
            }],
        })
        .to_string();
        let signed = |name: &str, raw: &str| -> Result<Vec<u8>, FakeHwError> {
            let signature = hex::encode(self.tcb_signing.sign_p256_raw(raw.as_bytes())?);
            Ok(format!(r#"{{"{name}":{raw},"signature":"{signature}"}}"#).into_bytes())
        };
        let tee = self.tee.as_str();
        let fmspc = format!("{tee}/{}", hex::encode(FMSPC));
        let chain = format!("{}{}", self.tcb_signing.pem(), self.root.pem()).into_bytes();
        let number = u64::from(tcb_evaluation);
        let items = [
            ("tcb-info", fmspc.as_str(), "document", signed("tcbInfo", &tcb_info)?),
            ("tcb-info-issuer-chain", fmspc.as_str(), "certificate", chain),
            ("qe-identity", tee, "document", signed("enclaveIdentity", &qe_identity)?),
            ("pck-crl", "processor", "document", self.pck_ca.empty_crl(issued, next, number)?),
            ("root-ca-crl", "root", "document", self.root.empty_crl(issued, next, number)?),
        ];
        let mut out = Vec::new();
        for (kind, id, item_type, data) in items {
            out.push(serde_json::json!({
                "vendor": "intel", "kind": kind, "id": id, "type": item_type,
                "expires_at": rfc3339(next)?, "data": Base64Url::encode(&data),
            }));
        }
        serde_json::to_vec(&serde_json::json!({ "version": 1, "items": out }))
            .map_err(|e| FakeHwError::Encode { what: "collateral bundle", reason: e.to_string() })
    }
}

impl cloister_attest::Attester for DcapPlatform {
    fn tee(&self) -> TeeKind {
        self.tee
    }

    fn attest(
        &self,
        runtime_data: &RuntimeData,
    ) -> Result<UnifiedEvidence, cloister_attest::AttestError> {
        let report_data = crate::report_data_of(runtime_data)?;
        let quote =
            self.quote(&report_data).map_err(|e| cloister_attest::AttestError::Malformed {
                path: format!("fake {} platform", self.tee).into(),
                what: e.to_string(),
            })?;
        Ok(crate::unified(self.tee, quote, runtime_data, &[]))
    }
}

/// A 384-byte SGX report.
fn sgx_report(
    cpu_svn: &[u8; 16],
    attributes: u8,
    mr_enclave: &[u8; 32],
    mr_signer: &[u8; 32],
    isv_svn: u16,
    report_data: &[u8; 64],
) -> Vec<u8> {
    let mut r = Vec::with_capacity(384);
    r.extend_from_slice(cpu_svn);
    r.extend_from_slice(&0u32.to_le_bytes()); // MISCSELECT
    r.extend_from_slice(&[0; 12]);
    r.extend_from_slice(&[0; 16]); // ISVEXTPRODID
    let mut attrs = [0u8; 16];
    attrs[0] = attributes;
    attrs[8] = 0x03; // XFRM: x87 | SSE
    r.extend_from_slice(&attrs);
    r.extend_from_slice(mr_enclave);
    r.extend_from_slice(&[0; 32]);
    r.extend_from_slice(mr_signer);
    r.extend_from_slice(&[0; 32]);
    r.extend_from_slice(&[0; 64]); // CONFIGID
    r.extend_from_slice(&1u16.to_le_bytes()); // ISVPRODID
    r.extend_from_slice(&isv_svn.to_le_bytes());
    r.extend_from_slice(&0u16.to_le_bytes()); // CONFIGSVN
    r.extend_from_slice(&[0; 42]);
    r.extend_from_slice(&[0; 16]); // ISVFAMILYID
    r.extend_from_slice(report_data);
    r
}

/// A 584-byte TDX 1.0 TD report body: TEE_TCB_SVN, MRSEAM and MRSIGNERSEAM, SEAMATTRIBUTES all
/// zero (what the TCB info's base module expects), TDATTRIBUTES with SEPT_VE_DISABLE, XFAM,
/// MRTD, the configuration and owner fields and RTMR0–3, then REPORTDATA.
fn td_report(report_data: &[u8; 64]) -> Vec<u8> {
    let mut r = Vec::with_capacity(584);
    r.extend_from_slice(&[0; 16]); // TEE_TCB_SVN
    r.extend_from_slice(&[0; 48]); // MRSEAM
    r.extend_from_slice(&[0; 48]); // MRSIGNERSEAM
    r.extend_from_slice(&[0; 8]); // SEAMATTRIBUTES
    r.extend_from_slice(&TD_ATTRIBUTES.to_le_bytes());
    r.extend_from_slice(&0xe7u64.to_le_bytes()); // XFAM: x87, SSE, AVX, AVX-512
    r.extend_from_slice(&MR_TD);
    r.extend_from_slice(&[0; 48 * 3]); // MRCONFIGID, MROWNER, MROWNERCONFIG
    for index in 0..4u8 {
        r.extend_from_slice(&[RTMR_BASE + index; 48]); // RTMR0..3
    }
    r.extend_from_slice(report_data);
    r
}

/// The SGX extension of the PCK certificate (OID 1.2.840.113741.1.13.1): PPID, TCB (16
/// component SVNs, PCESVN, CPUSVN), PCE ID, FMSPC, SGX type.
fn sgx_extension() -> Vec<u8> {
    let oid = |suffix: &[u8]| {
        let mut content = vec![0x2a, 0x86, 0x48, 0x86, 0xf8, 0x4d, 0x01, 0x0d, 0x01];
        content.extend_from_slice(suffix);
        der(0x06, &content)
    };
    let entry = |suffix: &[u8], value: Vec<u8>| der(0x30, &[oid(suffix), value].concat());
    let mut tcb = Vec::new();
    for (i, svn) in (1u8..).zip(CPU_SVN.iter()) {
        tcb.push(entry(&[2, i], der_uint(u64::from(*svn))));
    }
    tcb.push(entry(&[2, 17], der_uint(u64::from(PCE_SVN))));
    tcb.push(entry(&[2, 18], der(0x04, &CPU_SVN)));
    let entries = [
        entry(&[1], der(0x04, &[0x70; 16])),
        entry(&[2], der(0x30, &tcb.concat())),
        entry(&[3], der(0x04, &[0, 0])),
        entry(&[4], der(0x04, &FMSPC)),
        entry(&[5], der(0x0a, &[0])),
    ];
    der(0x30, &entries.concat())
}
