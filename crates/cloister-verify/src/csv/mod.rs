//! Hygon CSV attestation reports: HRK → HSK → CEK → PEK → report, with SM2 signatures (the
//! signer's user id in the Z value) and SM3.
//!
//! Evidence is the legacy attestation report (2548 bytes, or zero-padded to a 4096-byte page),
//! csv-rs's 4116-byte wrapper around a legacy or an extended report (magic `ATTESTATION_EXT`,
//! flags 1), or trustee's JSON evidence holding that wrapper (layouts in `report.rs`). The
//! extended layout is tested with a synthetic report only; its RTMRs are reported as claims,
//! and an event log beside them is not replayed.
//!
//! Checks, in this order, each failure a distinct [`CsvError`]:
//! 1. structure; the `anonce` unmasking (legacy reports) must give `sig_usage` PEK and
//!    `sig_algo` SM2;
//! 2. the PEK certificate inside the report (usage PEK, SM2, user id `HYGON-SSD-PEK`);
//! 3. the signer-section MAC (HMAC-SM3 keyed with `mnonce`), unless the attester already
//!    restored (unmasked) that section in place, which makes it uncheckable: the claim
//!    `signer_mac_verified` then says `false`;
//! 4. the report signature by the PEK over the masked bytes [0, 180) (extended: [0, 1024));
//! 5. the chain: an HRK that is pinned (or an instance anchor) and self-signed → an HSK it
//!    signed → a CEK the HSK signed → the PEK, signed by the CEK.
//!
//! So an error about missing HSK/CEK certificates means steps 1–4 passed and a trusted HRK was
//! found. The HRK, HSK and CEK come from `inputs.collateral.certificates` (recognised by size
//! and usage, in any order; the Hygon KDS `hsk_cek` file, HSK followed by CEK, is recognised
//! too) or from the trustee JSON's `cert_chain.hsk_cek`; extra HRKs from `inputs.anchors.roots(TeeKind::Csv)` (832-byte HRK
//! certificates). Hygon certificates carry no validity period and Hygon publishes no TCB status
//! or revocation list for them, so `inputs.now_unix` is unused and `tcb_status` is `Unknown`.
//!
//! Caveat of the legacy format: `anonce` itself is not signed, so the unmasked fields are only
//! authenticated up to an XOR with a repeated 4-byte pattern. The report_data binding
//! (`crate::verify`) closes this: a changed `anonce` changes the unmasked `report_data` too.
//! Claims from [`crate::verify_vendor_evidence`] alone carry this caveat.

mod cert;
mod report;
mod sm;

use cloister_types::{Claims, Hex, TcbStatus, TeeKind};
use serde_json::json;
use sha2::{Digest as _, Sha256};

use crate::error::VerifyError;
use crate::inputs::Inputs;

use self::cert::{CA_CERT_LEN, CSV_CERT_LEN, CaCert, CsvCert, usage, user_id};
use self::report::Report;
use self::sm::{Sm2Failure, sm2_verify};

/// SHA-256 of the 832-byte Hygon Root Key certificate (user id `HYGON-SSD-HRK`, key id
/// 3ae86a9701355cce333a589de21583d7), the root shipped by trustee (`deps/verifier/src/csv/
/// hrk.cert`) and csv-rs.
const HYGON_HRK_SHA256: [u8; 32] = [
    0x29, 0x6e, 0xfa, 0x97, 0x58, 0x04, 0x64, 0xac, 0xa0, 0xab, 0x5e, 0xef, 0xe4, 0x21, 0x99, 0xee,
    0x05, 0x86, 0x21, 0x82, 0x50, 0x8d, 0x16, 0x29, 0xf2, 0x9c, 0xf4, 0xdc, 0x17, 0x5b, 0x10, 0xcd,
];

/// The Hygon KDS collateral a report needs: the HSK and CEK of its chip, unless the evidence
/// carries them. Nothing when the report does not parse.
pub(crate) fn needs(evidence: &[u8]) -> Vec<crate::needs::CollateralKey> {
    use crate::needs::{CollateralKey, Vendor};
    let Ok(report) = report::parse(evidence) else { return Vec::new() };
    if !report.embedded_certificates.is_empty() {
        return Vec::new();
    }
    match report.chip_id() {
        Ok(chip) => vec![CollateralKey::new(Vendor::Hygon, "hsk-cek", chip)],
        Err(_) => Vec::new(),
    }
}

/// Where Hygon's key distribution service serves a chip's HSK and CEK.
const KDS_URL: &str = "https://cert.hygon.cn/hsk_cek?snumber=";

/// Why csv evidence failed to verify.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CsvError {
    /// The evidence is not in the expected format.
    #[error("csv: evidence is malformed: {0}")]
    Malformed(String),
    /// The evidence is a Hygon format this driver does not verify yet.
    #[error("csv: {0} is not supported yet")]
    UnsupportedFormat(String),
    /// A certificate is not a well-formed Hygon certificate of its role.
    #[error("csv: {role} certificate is malformed: {reason}")]
    Certificate {
        /// HRK, HSK, CEK or PEK.
        role: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The MAC over the report's signer section (PEK, chip serial) does not match.
    #[error(
        "csv: report signer-section MAC (HMAC-SM3 keyed with mnonce) does not match: the PEK or \
         chip serial was altered"
    )]
    BadMac,
    /// The report signature does not verify with the PEK inside it.
    #[error("csv: report signature does not verify with the PEK ({0})")]
    BadReportSignature(String),
    /// No HRK certificate was supplied.
    #[error(
        "csv: no Hygon root key (HRK) certificate among the certificates or trust anchors (supply \
         Hygon's 832-byte hrk.cert)"
    )]
    MissingRoot,
    /// An HRK was supplied but it is neither pinned nor an anchor of this instance.
    #[error(
        "csv: HRK certificate (SHA-256 {0}) is not the pinned Hygon root nor a trust anchor of \
         this instance"
    )]
    UntrustedRoot(String),
    /// A trust anchor listed for csv is not a self-signed 832-byte HRK certificate.
    #[error("csv: trust anchor #{index} is not a self-signed Hygon HRK certificate: {reason}")]
    BadAnchor {
        /// Position in `anchors.roots(TeeKind::Csv)`.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// The HRK's self-signature does not verify.
    #[error("csv: HRK certificate self-signature does not verify ({0})")]
    BadRootSignature(String),
    /// HSK and/or CEK certificates are missing.
    #[error("csv: no {missing} certificate for chip {chip} (fetch them from the Hygon KDS: {url})")]
    MissingHskCek {
        /// What is missing ("HSK/CEK", "HSK" or "CEK").
        missing: &'static str,
        /// The chip serial number.
        chip: String,
        /// Where to fetch them.
        url: String,
    },
    /// No HSK certificate is signed by a trusted HRK.
    #[error("csv: HSK certificate is not signed by a trusted HRK ({0})")]
    HskNotSignedByHrk(String),
    /// No CEK certificate is signed by a valid HSK.
    #[error("csv: CEK certificate is not signed by the HSK ({0})")]
    CekNotSignedByHsk(String),
    /// The PEK is not signed by a valid CEK.
    #[error("csv: PEK certificate in the report is not signed by the CEK ({0})")]
    PekNotSignedByCek(String),
}

/// The driver for [`TeeKind::Csv`].
pub(crate) struct CsvDriver;

impl crate::Driver for CsvDriver {
    fn verify(&self, evidence: &[u8], inputs: &Inputs<'_>) -> Result<Claims, VerifyError> {
        Ok(verify(evidence, inputs)?)
    }
}

/// Parses untrusted evidence bytes without any trust decision; the fuzz target drives this and
/// it must never panic.
pub(crate) fn parse_for_fuzz(bytes: &[u8]) {
    if let Ok(report) = report::parse(bytes) {
        let _ = report.chip_id();
        let _ = report.check_mac();
        let _ = CsvCert::parse(&report.pek);
    }
    let _ = CaCert::parse(bytes);
    let _ = CsvCert::parse(bytes);
}

fn describe(failure: Sm2Failure) -> String {
    match failure {
        Sm2Failure::BadKey => "the signer's public key is not on the SM2 curve".into(),
        Sm2Failure::BadUserId => "the signer's user id is not usable text".into(),
        Sm2Failure::BadSignatureEncoding => "r or s is out of range".into(),
        Sm2Failure::Mismatch => "SM2 signature mismatch".into(),
    }
}

/// Checks the role of a CA-format certificate.
fn check_ca_role(
    cert: &CaCert,
    role: &'static str,
    want_usage: u32,
    want_id: &[u8],
) -> Result<(), CsvError> {
    if cert.usage != want_usage {
        return Err(CsvError::Certificate {
            role,
            reason: format!("usage is {:#x}, expected {want_usage:#x}", cert.usage),
        });
    }
    check_user_id(role, &cert.user_id, want_id)
}

/// The signer's user id (it enters SM2's Z value) must be the one its role prescribes.
fn check_user_id(role: &'static str, have: &[u8], want: &[u8]) -> Result<(), CsvError> {
    if have == want {
        return Ok(());
    }
    Err(CsvError::Certificate {
        role,
        reason: format!(
            "user id is {:?}, expected {:?}",
            String::from_utf8_lossy(have),
            String::from_utf8_lossy(want)
        ),
    })
}

/// Checks the role of a CSV-format certificate.
fn check_csv_role(
    cert: &CsvCert,
    role: &'static str,
    want_usage: u32,
    want_id: &[u8],
) -> Result<(), CsvError> {
    if cert.usage != want_usage || cert.algo != cert::ALGO_SM2_SIGN {
        return Err(CsvError::Certificate {
            role,
            reason: format!(
                "usage/algorithm is {:#x}/{}, expected {want_usage:#x}/{}",
                cert.usage,
                cert.algo,
                cert::ALGO_SM2_SIGN
            ),
        });
    }
    check_user_id(role, &cert.user_id, want_id)
}

/// The trusted HRKs: collateral HRKs whose fingerprint is pinned, and the instance's anchors.
fn trusted_roots(candidates: &[Vec<u8>], inputs: &Inputs<'_>) -> Result<Vec<CaCert>, CsvError> {
    let self_signed = |hrk: &CaCert| -> Result<(), String> {
        check_ca_role(hrk, "HRK", usage::HRK, user_id::HRK).map_err(|e| e.to_string())?;
        if hrk.signer_id != hrk.key_id {
            return Err("signer id differs from its key id".into());
        }
        sm2_verify(&hrk.key, &hrk.user_id, hrk.signed_bytes(), &hrk.signature).map_err(describe)
    };
    let mut roots = Vec::new();
    for (index, anchor) in inputs.anchors.roots(TeeKind::Csv).iter().enumerate() {
        let hrk = CaCert::parse(anchor).map_err(|reason| CsvError::BadAnchor {
            index,
            reason: format!("certificate {reason}"),
        })?;
        self_signed(&hrk).map_err(|reason| CsvError::BadAnchor { index, reason })?;
        roots.push(hrk);
    }
    let mut untrusted = None;
    for bytes in candidates {
        let digest: [u8; 32] = Sha256::digest(bytes).into();
        if roots.iter().any(|root| root.bytes == *bytes) {
            continue;
        }
        if digest != HYGON_HRK_SHA256 {
            untrusted.get_or_insert(hex::encode(digest));
            continue;
        }
        let hrk =
            CaCert::parse(bytes).map_err(|reason| CsvError::Certificate { role: "HRK", reason })?;
        self_signed(&hrk).map_err(CsvError::BadRootSignature)?;
        roots.push(hrk);
    }
    match (roots.is_empty(), untrusted) {
        (false, _) => Ok(roots),
        (true, Some(fingerprint)) => Err(CsvError::UntrustedRoot(fingerprint)),
        (true, None) => Err(CsvError::MissingRoot),
    }
}

/// Hygon certificates found among the collateral, by format and usage.
#[derive(Default)]
struct Found {
    hrks: Vec<Vec<u8>>,
    hsks: Vec<CaCert>,
    ceks: Vec<CsvCert>,
}

fn collect(found: &mut Found, bytes: &[u8]) {
    match bytes.len() {
        CA_CERT_LEN => {
            if let Ok(ca) = CaCert::parse(bytes) {
                match ca.usage {
                    usage::HRK => found.hrks.push(bytes.to_vec()),
                    usage::HSK => found.hsks.push(ca),
                    _ => {}
                }
            }
        }
        CSV_CERT_LEN => {
            if let Ok(csv) = CsvCert::parse(bytes)
                && csv.usage == usage::CEK
            {
                found.ceks.push(csv);
            }
        }
        // The Hygon KDS `hsk_cek` file: HSK then CEK.
        len if len == CA_CERT_LEN + CSV_CERT_LEN => {
            let (hsk, cek) = bytes.split_at(CA_CERT_LEN);
            collect(found, hsk);
            collect(found, cek);
        }
        _ => {}
    }
}

/// Verifies csv evidence and returns its claims.
fn verify(evidence: &[u8], inputs: &Inputs<'_>) -> Result<Claims, CsvError> {
    // 1–2. Structure, unmasking, the PEK.
    let report = report::parse(evidence)?;
    let chip = report.chip_id()?;
    let pek = CsvCert::parse(&report.pek)
        .map_err(|reason| CsvError::Certificate { role: "PEK", reason })?;
    check_csv_role(&pek, "PEK", usage::PEK, user_id::PEK)?;

    // 3. Signer-section MAC.
    let mac_verified = report.check_mac()?;

    // 4. Report signature by the PEK.
    let signature = report.signature.ok_or_else(|| {
        CsvError::BadReportSignature("r or s is not a 256-bit little-endian value".into())
    })?;
    sm2_verify(&pek.key, &pek.user_id, report.signed_bytes(), &signature)
        .map_err(|f| CsvError::BadReportSignature(describe(f)))?;

    // 5. The chain.
    let mut found = Found::default();
    for bytes in report.embedded_certificates.iter().chain(inputs.collateral.certificates.iter()) {
        collect(&mut found, bytes);
    }
    let roots = trusted_roots(&found.hrks, inputs)?;
    let url = format!("{KDS_URL}{chip}");
    let missing = match (found.hsks.is_empty(), found.ceks.is_empty()) {
        (true, true) => Some("HSK/CEK"),
        (true, false) => Some("HSK"),
        (false, true) => Some("CEK"),
        (false, false) => None,
    };
    if let Some(missing) = missing {
        return Err(CsvError::MissingHskCek { missing, chip, url });
    }

    let mut hsk_failure = String::new();
    let hsks: Vec<(&CaCert, &CaCert)> = found
        .hsks
        .iter()
        .filter_map(|hsk| {
            let checked = check_ca_role(hsk, "HSK", usage::HSK, user_id::HSK)
                .map_err(|e| e.to_string())
                .and_then(|()| {
                    roots
                        .iter()
                        .find_map(|hrk| {
                            sm2_verify(&hrk.key, &hrk.user_id, hsk.signed_bytes(), &hsk.signature)
                                .ok()
                                .map(|()| hrk)
                        })
                        .ok_or_else(|| "SM2 signature by the HRK does not verify".to_owned())
                });
            match checked {
                Ok(hrk) => Some((hsk, hrk)),
                Err(e) => {
                    hsk_failure = e;
                    None
                }
            }
        })
        .collect();
    if hsks.is_empty() {
        return Err(CsvError::HskNotSignedByHrk(hsk_failure));
    }

    let mut cek_failure = String::new();
    let ceks: Vec<(&CsvCert, &CaCert, &CaCert)> = found
        .ceks
        .iter()
        .filter_map(|cek| {
            let checked = check_csv_role(cek, "CEK", usage::CEK, user_id::CEK)
                .map_err(|e| e.to_string())
                .and_then(|()| {
                    let sig = cek
                        .signature_by(usage::HSK)
                        .ok_or_else(|| "it has no SM2 signature slot by an HSK".to_owned())?;
                    hsks.iter()
                        .find(|(hsk, _)| {
                            sm2_verify(&hsk.key, &hsk.user_id, cek.signed_bytes(), &sig).is_ok()
                        })
                        .copied()
                        .ok_or_else(|| "SM2 signature by the HSK does not verify".to_owned())
                });
            match checked {
                Ok((hsk, hrk)) => Some((cek, hsk, hrk)),
                Err(e) => {
                    cek_failure = e;
                    None
                }
            }
        })
        .collect();
    if ceks.is_empty() {
        return Err(CsvError::CekNotSignedByHsk(cek_failure));
    }

    let pek_sig = pek.signature_by(usage::CEK).ok_or_else(|| {
        CsvError::PekNotSignedByCek("it has no SM2 signature slot by a CEK".into())
    })?;
    let (cek, hsk, hrk) = ceks
        .iter()
        .find(|(cek, _, _)| {
            sm2_verify(&cek.key, &cek.user_id, pek.signed_bytes(), &pek_sig).is_ok()
        })
        .copied()
        .ok_or_else(|| {
            CsvError::PekNotSignedByCek("SM2 signature by the CEK does not verify".into())
        })?;

    Ok(claims(&report, chip, mac_verified, &pek, cek, hsk, hrk))
}

/// The guest policy, decoded (Hygon's `GuestPolicy` bit layout).
fn policy_json(policy: u32) -> serde_json::Value {
    let bit = |n: u32| policy >> n & 1 == 1;
    json!({
        "raw": policy,
        "nodbg": bit(0),
        "noks": bit(1),
        "es": bit(2),
        "nosend": bit(3),
        "domain": bit(4),
        "csv": bit(5),
        "csv3": bit(6),
        "asid_reuse": bit(7),
        "hsk_version": policy >> 8 & 0xf,
        "cek_version": policy >> 12 & 0xf,
        "api_major": policy >> 16 & 0xff,
        "api_minor": policy >> 24 & 0xff,
    })
}

fn claims(
    report: &Report,
    chip: String,
    mac_verified: bool,
    pek: &CsvCert,
    cek: &CsvCert,
    hsk: &CaCert,
    hrk: &CaCert,
) -> Claims {
    let mut vendor = json!({
        "report_format": if report.extended.is_some() { "extended" } else { "legacy" },
        "evidence_encoding": report.encoding.as_str(),
        "user_pubkey_digest": hex::encode(report.user_pubkey_digest),
        "vm_id": hex::encode(report.vm_id),
        "vm_version": hex::encode(report.vm_version),
        "report_data": hex::encode(report.report_data),
        "mnonce": hex::encode(report.mnonce),
        "measure": hex::encode(report.measure),
        "policy": policy_json(report.policy),
        "sig_usage": report.sig_usage,
        "sig_algo": report.sig_algo,
        "anonce": report.anonce,
        "chip_id": chip.clone(),
        "signer_mac_verified": mac_verified,
        "eventlog_ignored": report.eventlog_present,
        "pek_firmware": { "major": pek.firmware.0, "minor": pek.firmware.1 },
        "pek_public_key": hex::encode(pek.key.sec1()),
        "cek_public_key": hex::encode(cek.key.sec1()),
        "cek_version": cek.version,
        "cek_signer_id": hex::encode(cek.signer_id),
        "hsk_key_id": hex::encode(hsk.key_id),
        "hrk_key_id": hex::encode(hrk.key_id),
    });
    if let (Some(extended), Some(map)) = (&report.extended, vendor.as_object_mut()) {
        map.insert("build".into(), extended.build.into());
        map.insert("rtmr_version".into(), extended.rtmr_version.into());
        for (index, rtmr) in extended.rtmrs.iter().enumerate() {
            map.insert(format!("rtmr{index}"), hex::encode(rtmr).into());
        }
    }
    Claims {
        tee: TeeKind::Csv,
        measurement: Hex(report.measure.to_vec()),
        signer: None,
        product_id: None,
        svn: None,
        // The guest policy's NODBG bit: debugging is allowed unless it is set.
        debug: report.policy & 1 == 0,
        report_data: Hex(report.report_data.to_vec()),
        tcb_status: TcbStatus::Unknown,
        advisories: Vec::new(),
        platform_id: Some(Hex(chip.into_bytes())),
        vendor: [("csv".to_owned(), vendor)].into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A CA or CSV certificate that parses (SM2 curve id, version 1) with zero keys.
    fn blank(len: usize, curve_at: usize) -> Vec<u8> {
        let mut bytes = vec![0u8; len];
        bytes[0] = 1;
        bytes[curve_at] = 3;
        bytes
    }

    #[test]
    fn extended_report_claims_carry_rtmrs_and_build() {
        let mut bytes = vec![0u8; report::Layout::EXTENDED.len()];
        bytes[144..176].copy_from_slice(&[0x22; 32]);
        bytes[176] = 0x44; // NODBG clear: debug allowed
        bytes[180..184].copy_from_slice(&usage::PEK.to_le_bytes());
        bytes[184..188].copy_from_slice(&cert::ALGO_SM2_SIGN.to_le_bytes());
        bytes[188..192].copy_from_slice(&7u32.to_le_bytes());
        bytes[192..194].copy_from_slice(&1u16.to_le_bytes());
        for index in 0..5 {
            let at = 208 + 32 * index;
            bytes[at..at + 32].copy_from_slice(&[0x30 + index as u8; 32]);
        }
        bytes[1168] = 1; // PEK version
        bytes[3252..3255].copy_from_slice(b"ABC");
        let report =
            report::parse_report(&bytes, report::Layout::EXTENDED, report::Encoding::Wrapper)
                .unwrap();
        assert_eq!(report.anonce, 0);
        assert_eq!(report.chip_id().unwrap(), "ABC");
        let csv = CsvCert::parse(&blank(CSV_CERT_LEN, 16)).unwrap();
        let ca = CaCert::parse(&blank(CA_CERT_LEN, 0x40)).unwrap();
        let claims = claims(&report, "ABC".into(), false, &csv, &csv, &ca, &ca);
        assert!(claims.debug);
        assert_eq!(claims.measurement.as_bytes(), &[0x22; 32]);
        let vendor = &claims.vendor["csv"];
        assert_eq!(vendor["report_format"], "extended");
        assert_eq!(vendor["build"], 7);
        assert_eq!(vendor["rtmr_version"], 1);
        assert_eq!(vendor["rtmr0"], hex::encode([0x30; 32]));
        assert_eq!(vendor["rtmr4"], hex::encode([0x34; 32]));
        assert_eq!(vendor["policy"]["es"], true);
        assert_eq!(vendor["policy"]["csv3"], true);
        assert_eq!(vendor["policy"]["nodbg"], false);
    }

    #[test]
    fn parse_for_fuzz_survives_every_size_of_zeros() {
        for len in [0, 1, 832, 2084, 2548, 2916, 3380, 4096, 4116] {
            parse_for_fuzz(&vec![0u8; len]);
            parse_for_fuzz(&vec![0xffu8; len]);
        }
        parse_for_fuzz(b"{");
        parse_for_fuzz(br#"{"attestation_report":{"magic":[],"flags":1,"data":[1,2]}}"#);
    }
}
