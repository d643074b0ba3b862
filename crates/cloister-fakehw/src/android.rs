//! A fake Android device: a test attestation root, an intermediate, and leaf certificates that
//! carry a KeyDescription (Android key attestation) for a given challenge, security level and
//! boot state, as KeyMint writes them.

use std::collections::BTreeMap;

use base64::Engine as _;
use cloister_attest::{AttestError, Attester};
use cloister_types::{Base64Url, RuntimeData, TeeKind, UnifiedEvidence};
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use sha2::{Digest as _, Sha256};

use crate::FakeHwError;

/// The KeyDescription extension's OID (1.3.6.1.4.1.11129.2.1.17).
const KEY_DESCRIPTION_OID: &[u64] = &[1, 3, 6, 1, 4, 1, 11129, 2, 1, 17];

/// Where the attested key lives (KeyMint's SecurityLevel).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecurityLevel {
    /// Software only (no TrustZone).
    Software = 0,
    /// TrustZone (TEE).
    TrustedEnvironment = 1,
    /// A discrete secure element.
    StrongBox = 2,
}

/// A device with its attestation chain and its boot state.
pub struct AndroidDevice {
    root: (KeyPair, CertificateParams, Vec<u8>),
    intermediate: (KeyPair, CertificateParams, Vec<u8>),
    /// Where its keys live.
    pub level: SecurityLevel,
    /// Whether the bootloader is locked.
    pub locked: bool,
    /// Verified boot state (0 verified, 1 self-signed, 2 unverified, 3 failed).
    pub boot_state: u8,
}

impl AndroidDevice {
    /// A locked, verified-boot device whose keys live in TrustZone, its certificates valid
    /// around `now` (unix seconds) for a year.
    pub fn new(now: i64) -> Result<Self, FakeHwError> {
        let validity = (now - 24 * 3600, now + 365 * 24 * 3600);
        let root_key = KeyPair::generate().map_err(pki)?;
        let root_params = params("Test Android Attestation Root", true, validity)?;
        let root_der = root_params.self_signed(&root_key).map_err(pki)?.der().to_vec();
        let key = KeyPair::generate().map_err(pki)?;
        let params = params("Test Android Attestation Key", true, validity)?;
        let der = params
            .signed_by(&key, &Issuer::from_params(&root_params, &root_key))
            .map_err(pki)?
            .der()
            .to_vec();
        Ok(Self {
            root: (root_key, root_params, root_der),
            intermediate: (key, params, der),
            level: SecurityLevel::TrustedEnvironment,
            locked: true,
            boot_state: 0,
        })
    }

    /// The root certificate, PEM: what an instance lists under `trust_anchors.roots.android`
    /// (or `test_roots.android`).
    pub fn root_pem(&self) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(&self.root.2);
        let lines: Vec<&str> =
            b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap_or_default()).collect();
        format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", lines.join("\n"))
    }

    /// The attesting app's AttestationApplicationId (DER), whose SHA-256 the verifier reports as
    /// the measurement.
    pub fn application_id() -> Vec<u8> {
        seq(&[
            set(&[seq(&[octets(b"org.cloister.gateway"), int(2, 7)])]),
            set(&[octets(&[0x5a; 32])]),
        ])
    }

    /// The measurement the verifier reports for this device's keys.
    pub fn measurement() -> Vec<u8> {
        Sha256::digest(Self::application_id()).to_vec()
    }

    /// The chain, leaf first (DER), of a fresh key attested with `challenge`.
    pub fn chain(&self, challenge: &[u8]) -> Result<Vec<Vec<u8>>, FakeHwError> {
        let (key, params_of, der) = &self.intermediate;
        let leaf_key = KeyPair::generate().map_err(pki)?;
        let mut leaf = params("Android Keystore Key", false, (0, 4_102_444_800))?;
        leaf.custom_extensions.push(CustomExtension::from_oid_content(
            KEY_DESCRIPTION_OID,
            self.description(challenge),
        ));
        let leaf_der = leaf
            .signed_by(&leaf_key, &Issuer::from_params(params_of, key))
            .map_err(pki)?
            .der()
            .to_vec();
        Ok(vec![leaf_der, der.clone(), self.root.2.clone()])
    }

    /// The KeyDescription (attestation version 300) for `challenge`.
    fn description(&self, challenge: &[u8]) -> Vec<u8> {
        let level = self.level as u64;
        let software = seq(&[
            explicit(701, &int(2, 1_750_000_000_000)),
            explicit(709, &octets(&Self::application_id())),
        ]);
        let root_of_trust = seq(&[
            octets(&[0x11; 32]),
            tlv(&[0x01], &[if self.locked { 0xff } else { 0 }]),
            int(0x0a, u64::from(self.boot_state)),
            octets(&[0x22; 32]),
        ]);
        let hardware = seq(&[
            explicit(1, &set(&[int(2, 2)])),
            explicit(2, &int(2, 3)),
            explicit(3, &int(2, 256)),
            explicit(10, &int(2, 1)),
            explicit(503, &[0x05, 0x00]),
            explicit(702, &int(2, 0)),
            explicit(704, &root_of_trust),
            explicit(705, &int(2, 150_000)),
            explicit(706, &int(2, 202_506)),
        ]);
        seq(&[
            int(2, 300),
            int(0x0a, level),
            int(2, 300),
            int(0x0a, level),
            octets(challenge),
            octets(&[]),
            if self.level == SecurityLevel::Software { hardware.clone() } else { software.clone() },
            if self.level == SecurityLevel::Software { software } else { hardware },
        ])
    }
}

impl Attester for AndroidDevice {
    fn tee(&self) -> TeeKind {
        TeeKind::Android
    }

    fn attest(&self, runtime_data: &RuntimeData) -> Result<UnifiedEvidence, AttestError> {
        let report_data = runtime_data.report_data().map_err(AttestError::RuntimeData)?;
        let chain = self.chain(&report_data.0).map_err(|e| AttestError::Malformed {
            path: "fake Android device".into(),
            what: e.to_string(),
        })?;
        let encoded: Vec<String> =
            chain.iter().map(|c| base64::engine::general_purpose::STANDARD.encode(c)).collect();
        let evidence = serde_json::to_vec(&encoded).map_err(|e| AttestError::Malformed {
            path: "fake Android device".into(),
            what: e.to_string(),
        })?;
        Ok(UnifiedEvidence {
            version: cloister_types::evidence::UNIFIED_EVIDENCE_VERSION,
            tee: TeeKind::Android,
            evidence: Base64Url(evidence),
            runtime_data: runtime_data.clone(),
            collateral: BTreeMap::new(),
            additional_evidence: BTreeMap::new(),
        })
    }
}

fn pki(e: rcgen::Error) -> FakeHwError {
    FakeHwError::Pki(e.to_string())
}

fn params(name: &str, ca: bool, validity: (i64, i64)) -> Result<CertificateParams, FakeHwError> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(pki)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    let time = |t: i64| {
        time::OffsetDateTime::from_unix_timestamp(t).map_err(|e| FakeHwError::Pki(e.to_string()))
    };
    params.not_before = time(validity.0)?;
    params.not_after = time(validity.1)?;
    if ca {
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    } else {
        params.is_ca = IsCa::NoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    }
    Ok(params)
}

// DER, as much as a KeyDescription needs.

fn tlv(tag: &[u8], content: &[u8]) -> Vec<u8> {
    let mut out = tag.to_vec();
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len.to_be_bytes().iter().copied().skip_while(|b| *b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

fn int(tag: u8, value: u64) -> Vec<u8> {
    let mut bytes: Vec<u8> = value.to_be_bytes().iter().copied().skip_while(|b| *b == 0).collect();
    if bytes.first().is_none_or(|b| b & 0x80 != 0) {
        bytes.insert(0, 0);
    }
    tlv(&[tag], &bytes)
}

fn explicit(number: u32, content: &[u8]) -> Vec<u8> {
    let tag = if number < 31 {
        vec![0xa0 | number as u8]
    } else {
        let mut base128 = vec![(number & 0x7f) as u8];
        let mut rest = number >> 7;
        while rest > 0 {
            base128.insert(0, 0x80 | (rest & 0x7f) as u8);
            rest >>= 7;
        }
        [vec![0xbf], base128].concat()
    };
    tlv(&tag, content)
}

fn seq(items: &[Vec<u8>]) -> Vec<u8> {
    tlv(&[0x30], &items.concat())
}

fn set(items: &[Vec<u8>]) -> Vec<u8> {
    tlv(&[0x31], &items.concat())
}

fn octets(bytes: &[u8]) -> Vec<u8> {
    tlv(&[0x04], bytes)
}
