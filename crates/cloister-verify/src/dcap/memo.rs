//! Remembered TCB appraisals: dcap-qvl's verdict on a platform, reused for the next quote of the
//! same platform and application with the same collateral, while that collateral holds.
//!
//! dcap-qvl re-verifies every collateral signature, CRL and chain on every call (≈ 0.6 ms). Its
//! verdict depends on the quote only through the platform (PCK certificate chain, QE report,
//! attestation key, header and report body) — not on `report_data`, which is what changes from
//! one quote to the next — and on time only through the validity windows of the collateral and
//! certificates. So a verdict is remembered under a digest of everything it depends on (the
//! signed quote with `report_data` zeroed, the QE material, every collateral document and
//! certificate as given, the root), together with the window in which all its inputs are valid, and reused only inside that
//! window. Only successes are remembered. The driver's own checks — the quote signature over the
//! real `report_data`, the QE report signature and binding, the PCK chain, the collateral
//! windows — still run on every quote.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use dcap_qvl::QuoteCollateralV3;
use sha2::{Digest as _, Sha256};

use super::quote::{Body, Quote};
use crate::x509::Cert;

/// What the claims take from dcap-qvl's verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Verdict {
    pub status: String,
    pub advisory_ids: Vec<String>,
    pub platform_status: String,
    pub qe_status: String,
}

impl Verdict {
    pub(crate) fn from_report(report: &dcap_qvl::verify::VerifiedReport) -> Self {
        Self {
            status: report.status.clone(),
            advisory_ids: report.advisory_ids.clone(),
            platform_status: report.platform_status.status.to_string(),
            qe_status: report.qe_status.status.to_string(),
        }
    }
}

/// How many verdicts are remembered before the memo starts over.
const LIMIT: usize = 4096;

struct Entry {
    valid_from: i64,
    valid_until: i64,
    verdict: Verdict,
}

static MEMO: Mutex<BTreeMap<[u8; 32], Entry>> = Mutex::new(BTreeMap::new());
static HITS: AtomicU64 = AtomicU64::new(0);

fn memo() -> std::sync::MutexGuard<'static, BTreeMap<[u8; 32], Entry>> {
    // Updates are single inserts or a clear: a poisoned lock still holds a consistent map.
    MEMO.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// How many times a remembered verdict was used (for tests).
pub(crate) fn hits() -> u64 {
    HITS.load(Ordering::Relaxed)
}

/// The key of a quote and its collateral, or `None` when the quote's `report_data` is not
/// where this module expects it (then nothing is remembered).
pub(crate) fn key(
    quote: &Quote<'_>,
    collateral_digest: &[u8; 32],
    root: &Cert,
    tee: &str,
) -> Option<[u8; 32]> {
    let header = 48 + if quote.body_type.is_some() { 6 } else { 0 };
    let (offset, report_data) = match &quote.body {
        Body::Sgx(r) => (header + 320, &r.report_data),
        Body::Td(r) => (header + 520, &r.report_data),
    };
    let in_quote = quote.signed.get(offset..offset + 64)?;
    if in_quote != report_data {
        return None;
    }
    let mut signed = quote.signed.to_vec();
    signed.get_mut(offset..offset + 64)?.fill(0);
    let mut hasher = Sha256::new();
    let mut part = |bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_be_bytes());
        hasher.update(bytes);
    };
    part(b"cloister-dcap-verdict-v2");
    part(tee.as_bytes());
    part(&signed);
    part(quote.attestation_key);
    part(quote.qe_report_raw);
    part(quote.qe_report_signature);
    part(quote.qe_auth_data);
    part(quote.pck_chain_pem);
    part(root.der());
    // Every collateral document and certificate as given, which determine the bundle dcap-qvl
    // verifies (`collateral::prepare`).
    part(collateral_digest);
    Some(hasher.finalize().into())
}

/// The window in which every input of the verdict is valid: TCB info and QE identity
/// (`issueDate`..`nextUpdate`), both CRLs (`thisUpdate`..`nextUpdate`), every certificate of
/// the PCK chain and of the collateral's issuer chains. `None` if any of it cannot be read.
pub(crate) fn window(collateral: &QuoteCollateralV3, chain: &[Cert]) -> Option<(i64, i64)> {
    let mut from = i64::MIN;
    let mut until = i64::MAX;
    let mut narrow = |start: i64, end: i64| {
        from = from.max(start);
        until = until.min(end);
    };
    for text in [&collateral.tcb_info, &collateral.qe_identity] {
        let value: serde_json::Value = serde_json::from_str(text).ok()?;
        let date = |name: &str| {
            let text = value.get(name)?.as_str()?;
            time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                .ok()
                .map(time::OffsetDateTime::unix_timestamp)
        };
        narrow(date("issueDate")?, date("nextUpdate")?);
    }
    for crl in [&collateral.pck_crl, &collateral.root_ca_crl] {
        use der::Decode as _;
        let crl =
            x509_cert::crl::CertificateList::<x509_cert::certificate::Raw>::from_der(crl).ok()?;
        let this = crl.tbs_cert_list.this_update.to_unix_duration().as_secs();
        let next = crl.tbs_cert_list.next_update?.to_unix_duration().as_secs();
        narrow(i64::try_from(this).ok()?, i64::try_from(next).ok()?);
    }
    let mut certs: Vec<Cert> = chain.to_vec();
    for pem in [
        &collateral.tcb_info_issuer_chain,
        &collateral.qe_identity_issuer_chain,
        &collateral.pck_crl_issuer_chain,
    ] {
        certs.extend(Cert::parse_many(pem.as_bytes()).ok()?);
    }
    for cert in &certs {
        narrow(cert.not_before(), cert.not_after());
    }
    (from <= until).then_some((from, until))
}

/// The remembered verdict for `key`, if `now` is inside its window.
pub(crate) fn lookup(key: &[u8; 32], now: i64) -> Option<Verdict> {
    let memo = memo();
    let entry = memo.get(key)?;
    if now < entry.valid_from || now > entry.valid_until {
        return None;
    }
    HITS.fetch_add(1, Ordering::Relaxed);
    Some(entry.verdict.clone())
}

/// Remembers a successful verdict for `key`, valid in `window`.
pub(crate) fn remember(key: [u8; 32], window: (i64, i64), verdict: Verdict) {
    let mut memo = memo();
    if memo.len() >= LIMIT {
        memo.clear();
    }
    memo.insert(key, Entry { valid_from: window.0, valid_until: window.1, verdict });
}
