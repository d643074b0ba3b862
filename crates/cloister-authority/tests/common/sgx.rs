//! A synthetic Intel SGX platform under a test root, for tests that need DCAP evidence bound to
//! a fresh challenge (public quotes cannot be) and collateral the test can change.
//!
//! Everything Intel would provide is made here with test keys, in the formats the DCAP driver and
//! dcap-qvl check: a root CA, a PCK CA and a PCK certificate carrying the SGX extension (FMSPC,
//! CPUSVN, PCESVN), a TCB Signing certificate, a v3 SGX quote (attestation key, QE report signed
//! by the PCK key and bound to the attestation key, PCK chain as certification data type 5), and
//! the collateral: TCB info and QE identity signed by the TCB Signing key, the PCK CRL and the
//! root CA CRL. An instance accepts it only when it lists [`SgxPlatform::root_pem`] as an `sgx`
//! trust anchor; the built-in Intel root is never involved.
//!
//! Shared with `crates/cloister/tests/attacks.rs` (included there by path).

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;

use cloister_types::{Base64Url, RuntimeData, TeeKind, UnifiedEvidence};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CustomExtension,
    DistinguishedName, DnType, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256, SerialNumber,
};
use sha2::{Digest as _, Sha256};

/// Intel's QE vendor id, which every DCAP quote names.
const INTEL_QE_VENDOR_ID: [u8; 16] = [
    0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9, 0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07,
];
/// The platform's FMSPC.
pub(crate) const FMSPC: [u8; 6] = [0x00, 0x90, 0x6e, 0xd5, 0x00, 0x00];
/// The platform's CPUSVN (as in its PCK certificate) and PCESVN.
const CPU_SVN: [u8; 16] = [5, 5, 2, 4, 1, 128, 14, 0, 0, 0, 0, 0, 0, 0, 0, 0];
const PCE_SVN: u16 = 13;
/// The quoting enclave's signer, product and SVN, as its QE identity lists them.
const QE_MR_SIGNER: [u8; 32] = [0x8c; 32];
const QE_ISV_SVN: u16 = 8;
/// The measurement (MRENCLAVE) and signer of the attested enclave.
pub(crate) const MR_ENCLAVE: [u8; 32] = [0x5e; 32];
const MR_SIGNER: [u8; 32] = [0x51; 32];

/// A key and the certificate that names it.
struct Ca {
    key: KeyPair,
    params: CertificateParams,
    der: Vec<u8>,
}

impl Ca {
    fn issuer(&self) -> Issuer<'_, &KeyPair> {
        Issuer::from_params(&self.params, &self.key)
    }

    fn pem(&self) -> String {
        pem("CERTIFICATE", &self.der)
    }
}

/// One synthetic SGX platform: its certificates and keys, valid from a day before `now` (the
/// time given to [`SgxPlatform::new`]) for a year.
pub(crate) struct SgxPlatform {
    root: Ca,
    pck_ca: Ca,
    pck: Ca,
    tcb_signing: Ca,
    attestation_key: KeyPair,
    not_before: i64,
}

impl SgxPlatform {
    /// A fresh platform whose certificates are valid around `now` (unix seconds).
    pub(crate) fn new(now: i64) -> Self {
        let (not_before, not_after) = (now - 24 * 3600, now + 365 * 24 * 3600);
        let root = self_signed("Cloister test SGX Root CA", not_before, not_after);
        let pck_ca =
            issue(&root, "Cloister test SGX PCK Processor CA", true, not_before, not_after);
        let tcb_signing = issue(&root, "Intel SGX TCB Signing", false, not_before, not_after);
        let mut pck_params =
            params("Cloister test SGX PCK Certificate", false, not_before, not_after);
        pck_params.custom_extensions.push(CustomExtension::from_oid_content(
            &[1, 2, 840, 113741, 1, 13, 1],
            sgx_extension(),
        ));
        let pck = sign_params(&pck_ca, pck_params);
        Self {
            root,
            pck_ca,
            pck,
            tcb_signing,
            attestation_key: KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap(),
            not_before,
        }
    }

    /// The test root, PEM: what an instance lists under `trust_anchors.roots.sgx`.
    pub(crate) fn root_pem(&self) -> String {
        self.root.pem()
    }

    /// The measurement of the attested enclave (MRENCLAVE), as reference values list it.
    pub(crate) fn measurement(&self) -> cloister_types::Hex {
        cloister_types::Hex(MR_ENCLAVE.to_vec())
    }

    /// A v3 SGX quote of the enclave with `report_data`.
    pub(crate) fn quote(&self, report_data: &[u8; 64]) -> Vec<u8> {
        let mut header = Vec::with_capacity(48);
        header.extend_from_slice(&3u16.to_le_bytes()); // version
        header.extend_from_slice(&2u16.to_le_bytes()); // ECDSA P-256 attestation key
        header.extend_from_slice(&0u32.to_le_bytes()); // SGX
        header.extend_from_slice(&QE_ISV_SVN.to_le_bytes());
        header.extend_from_slice(&PCE_SVN.to_le_bytes());
        header.extend_from_slice(&INTEL_QE_VENDOR_ID);
        header.extend_from_slice(&[0; 20]);
        // Attributes INIT | MODE64BIT: not a debug enclave.
        let body = sgx_report(&CPU_SVN, 0x05, &MR_ENCLAVE, &MR_SIGNER, 1, report_data);
        let mut signed = header;
        signed.extend_from_slice(&body);

        let attestation_key = &self.attestation_key.public_key_raw()[1..];
        let qe_auth_data = [0xa5u8; 32];
        let mut qe_report_data = [0u8; 64];
        let binding = Sha256::new().chain_update(attestation_key).chain_update(qe_auth_data);
        qe_report_data[..32].copy_from_slice(&binding.finalize());
        // Attributes INIT | PROVISIONKEY, as Intel's QE identity expects.
        let qe_report =
            sgx_report(&CPU_SVN, 0x11, &[0x9e; 32], &QE_MR_SIGNER, QE_ISV_SVN, &qe_report_data);
        let chain = format!("{}{}{}", self.pck.pem(), self.pck_ca.pem(), self.root.pem());

        let mut auth = Vec::new();
        auth.extend_from_slice(&sign_raw(&self.attestation_key, &signed));
        auth.extend_from_slice(attestation_key);
        auth.extend_from_slice(&qe_report);
        auth.extend_from_slice(&sign_raw(&self.pck.key, &qe_report));
        auth.extend_from_slice(&(qe_auth_data.len() as u16).to_le_bytes());
        auth.extend_from_slice(&qe_auth_data);
        auth.extend_from_slice(&5u16.to_le_bytes()); // the PCK certificate chain, PEM
        auth.extend_from_slice(&(chain.len() as u32).to_le_bytes());
        auth.extend_from_slice(chain.as_bytes());

        let mut quote = signed;
        quote.extend_from_slice(&(auth.len() as u32).to_le_bytes());
        quote.extend_from_slice(&auth);
        quote
    }

    /// Unified evidence of the enclave bound to `runtime_data`.
    pub(crate) fn evidence(&self, runtime_data: &RuntimeData) -> UnifiedEvidence {
        let report_data = runtime_data.report_data().unwrap().0;
        UnifiedEvidence {
            version: cloister_types::evidence::UNIFIED_EVIDENCE_VERSION,
            tee: TeeKind::Sgx,
            evidence: Base64Url(self.quote(&report_data)),
            runtime_data: runtime_data.clone(),
            collateral: BTreeMap::new(),
            additional_evidence: BTreeMap::new(),
        }
    }

    /// Intel's collateral for the platform as the attestation service's fetcher caches it, as a
    /// collateral bundle (`CollateralCache::load_bundle`): the TCB info (whose one level, the
    /// platform's, has `status`), its issuer chain, the QE identity, the PCK CRL and the root CA
    /// CRL, issued at `issued` (unix seconds) and valid for 30 days. `tcb_evaluation` is the TCB
    /// evaluation data number (a refresh with the same status changes it).
    pub(crate) fn collateral_bundle(
        &self,
        status: &str,
        issued: i64,
        tcb_evaluation: u32,
    ) -> Vec<u8> {
        let next = issued + 30 * 24 * 3600;
        let components: Vec<_> =
            CPU_SVN.iter().map(|svn| serde_json::json!({ "svn": svn })).collect();
        let tcb_info = serde_json::json!({
            "id": "SGX", "version": 3, "issueDate": rfc3339(issued), "nextUpdate": rfc3339(next),
            "fmspc": hex::encode_upper(FMSPC), "pceId": "0000", "tcbType": 0,
            "tcbEvaluationDataNumber": tcb_evaluation,
            "tcbLevels": [{
                "tcb": { "sgxtcbcomponents": components, "pcesvn": PCE_SVN },
                "tcbDate": rfc3339(self.not_before), "tcbStatus": status,
            }],
        })
        .to_string();
        let qe_identity = serde_json::json!({
            "id": "QE", "version": 2, "issueDate": rfc3339(issued), "nextUpdate": rfc3339(next),
            "tcbEvaluationDataNumber": tcb_evaluation,
            "miscselect": "00000000", "miscselectMask": "FFFFFFFF",
            "attributes": "11000000000000000000000000000000",
            "attributesMask": "FBFFFFFFFFFFFFFF0000000000000000",
            "mrsigner": hex::encode_upper(QE_MR_SIGNER), "isvprodid": 1,
            "tcbLevels": [{
                "tcb": { "isvsvn": QE_ISV_SVN }, "tcbDate": rfc3339(self.not_before),
                "tcbStatus": "UpToDate",
            }],
        })
        .to_string();
        let signed = |name: &str, raw: &str| {
            let signature = hex::encode(sign_raw(&self.tcb_signing.key, raw.as_bytes()));
            format!(r#"{{"{name}":{raw},"signature":"{signature}"}}"#).into_bytes()
        };
        let crl = |issuer: &Ca| {
            CertificateRevocationListParams {
                this_update: at(issued),
                next_update: at(next),
                crl_number: SerialNumber::from(u64::from(tcb_evaluation)),
                issuing_distribution_point: None,
                revoked_certs: Vec::new(),
                key_identifier_method: KeyIdMethod::Sha256,
            }
            .signed_by(&issuer.issuer())
            .unwrap()
            .der()
            .to_vec()
        };
        let fmspc = format!("sgx/{}", hex::encode(FMSPC));
        let chain = format!("{}{}", self.tcb_signing.pem(), self.root.pem()).into_bytes();
        let items = [
            ("tcb-info", fmspc.as_str(), "document", signed("tcbInfo", &tcb_info)),
            ("tcb-info-issuer-chain", fmspc.as_str(), "certificate", chain),
            ("qe-identity", "sgx", "document", signed("enclaveIdentity", &qe_identity)),
            ("pck-crl", "processor", "document", crl(&self.pck_ca)),
            ("root-ca-crl", "root", "document", crl(&self.root)),
        ];
        let items: Vec<_> = items
            .into_iter()
            .map(|(kind, id, item_type, data)| {
                serde_json::json!({
                    "vendor": "intel", "kind": kind, "id": id, "type": item_type,
                    "expires_at": rfc3339(next), "data": Base64Url::encode(&data),
                })
            })
            .collect();
        serde_json::to_vec(&serde_json::json!({ "version": 1, "items": items })).unwrap()
    }
}

impl cloister_attest::Attester for SgxPlatform {
    fn tee(&self) -> TeeKind {
        TeeKind::Sgx
    }

    fn attest(
        &self,
        runtime_data: &RuntimeData,
    ) -> Result<UnifiedEvidence, cloister_attest::AttestError> {
        Ok(self.evidence(runtime_data))
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
    assert_eq!(r.len(), 384);
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
    let integer = |value: u16| {
        let bytes = value.to_be_bytes();
        let mut content: Vec<u8> = bytes.iter().copied().skip_while(|b| *b == 0).collect();
        if content.first().is_none_or(|b| b & 0x80 != 0) {
            content.insert(0, 0);
        }
        der(0x02, &content)
    };
    let mut tcb = Vec::new();
    for (i, svn) in CPU_SVN.iter().enumerate() {
        tcb.push(entry(&[2, i as u8 + 1], integer(u16::from(*svn))));
    }
    tcb.push(entry(&[2, 17], integer(PCE_SVN)));
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

/// One DER TLV.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    match content.len() {
        len @ 0..=0x7f => out.push(len as u8),
        len @ 0x80..=0xff => out.extend_from_slice(&[0x81, len as u8]),
        len => {
            out.push(0x82);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
    }
    out.extend_from_slice(content);
    out
}

/// ECDSA P-256/SHA-256 over `message` as fixed-size `r || s` (what quotes and Intel's collateral
/// carry), from the DER signature rcgen makes.
fn sign_raw(key: &KeyPair, message: &[u8]) -> [u8; 64] {
    use rcgen::SigningKey as _;
    let signature = key.sign(message).unwrap();
    // SEQUENCE { INTEGER r, INTEGER s }, every length short-form for P-256.
    assert_eq!(signature[0], 0x30);
    let mut out = [0u8; 64];
    let mut at = 2;
    for half in 0..2 {
        assert_eq!(signature[at], 0x02);
        let len = usize::from(signature[at + 1]);
        let value = &signature[at + 2..at + 2 + len];
        let value = &value[value.len().saturating_sub(32)..];
        out[half * 32 + 32 - value.len()..half * 32 + 32].copy_from_slice(value);
        at += 2 + len;
    }
    out
}

fn params(name: &str, ca: bool, not_before: i64, not_after: i64) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn.push(DnType::OrganizationName, "Cloister test");
    params.distinguished_name = dn;
    params.not_before = at(not_before);
    params.not_after = at(not_after);
    if ca {
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    } else {
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    }
    params
}

fn self_signed(name: &str, not_before: i64, not_after: i64) -> Ca {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let params = params(name, true, not_before, not_after);
    let der = params.self_signed(&key).unwrap().der().to_vec();
    Ca { key, params, der }
}

fn issue(issuer: &Ca, name: &str, ca: bool, not_before: i64, not_after: i64) -> Ca {
    sign_params(issuer, params(name, ca, not_before, not_after))
}

fn sign_params(issuer: &Ca, params: CertificateParams) -> Ca {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let der = params.signed_by(&key, &issuer.issuer()).unwrap().der().to_vec();
    Ca { key, params, der }
}

fn at(unix: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(unix).unwrap()
}

fn rfc3339(unix: i64) -> String {
    at(unix).format(&time::format_description::well_known::Rfc3339).unwrap()
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> =
        b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}
