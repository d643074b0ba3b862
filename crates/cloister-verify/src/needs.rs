//! What collateral a piece of evidence needs from its vendor, so a service can fetch it before
//! verifying, and when a fetched item expires. Pure: evidence and documents in, keys out.

use cloister_types::TeeKind;
pub use cloister_types::collateral::{CollateralKey, Vendor};

/// The collateral `evidence` of `tee` needs from its vendor to be fully appraised. Evidence
/// that does not parse needs nothing (its driver will say why it is refused); so does evidence
/// whose TEE has no vendor collateral service (CCA, Nitro) or carries what it needs.
pub fn collateral_needs(tee: TeeKind, evidence: &[u8]) -> Vec<CollateralKey> {
    match tee {
        TeeKind::Sgx => crate::dcap::needs(crate::dcap::DcapTee::Sgx, evidence),
        TeeKind::Tdx => crate::dcap::needs(crate::dcap::DcapTee::Tdx, evidence),
        TeeKind::Snp => crate::snp::needs(evidence),
        TeeKind::Csv => crate::csv::needs(evidence),
        TeeKind::Android => crate::android::needs(evidence),
        _ => Vec::new(),
    }
}

/// When a collateral document or certificate stops being valid, from its own content: Intel
/// TCB info and QE identity `nextUpdate`, a CRL's `nextUpdate`, the earliest `notAfter` of
/// X.509 certificates (DER or PEM). `None` when the content says nothing (Hygon certificates
/// have no validity period).
pub fn collateral_expiry(bytes: &[u8]) -> Option<i64> {
    use der::Decode as _;
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) {
        let body = value.get("tcbInfo").or_else(|| value.get("enclaveIdentity"))?;
        let next = body.get("nextUpdate")?.as_str()?;
        return time::OffsetDateTime::parse(next, &time::format_description::well_known::Rfc3339)
            .ok()
            .map(time::OffsetDateTime::unix_timestamp);
    }
    if let Ok(crl) = x509_cert::crl::CertificateList::<x509_cert::certificate::Raw>::from_der(bytes)
    {
        let next = crl.tbs_cert_list.next_update?;
        return i64::try_from(next.to_unix_duration().as_secs()).ok();
    }
    let certs = crate::x509::Cert::parse_many(bytes).ok()?;
    certs.iter().map(crate::x509::Cert::not_after).min()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_print_vendor_kind_and_id() {
        let key = CollateralKey::new(Vendor::Intel, "tcb-info", "tdx/b0c06f000000");
        assert_eq!(key.to_string(), "Intel/tcb-info/tdx/b0c06f000000");
        assert_eq!(Vendor::Intel.tees(), &[TeeKind::Sgx, TeeKind::Tdx]);
    }

    #[test]
    fn garbage_needs_nothing_and_has_no_expiry() {
        for tee in [TeeKind::Sgx, TeeKind::Tdx, TeeKind::Snp, TeeKind::Csv, TeeKind::Cca] {
            assert!(collateral_needs(tee, b"\x00garbage").is_empty());
        }
        assert_eq!(collateral_expiry(b"{}"), None);
        assert_eq!(collateral_expiry(b"\x30\x00"), None);
    }
}
