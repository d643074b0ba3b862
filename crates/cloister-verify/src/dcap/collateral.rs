//! DCAP collateral recognised by content and assembled into what dcap-qvl verifies.
//!
//! Accepted documents: a JSON bundle in dcap-qvl's `QuoteCollateralV3` shape; Intel PCS/PCCS
//! responses `{"tcbInfo": …, "signature": …}` and `{"enclaveIdentity": …, "signature": …}`
//! (the signed bytes are the member's exact text, so it is cut out of the document, never
//! re-serialised); CRLs in DER, PEM or hex (the PCK CRL and the root CA CRL are told apart by
//! their issuer name); certificates in DER or PEM (the TCB Signing certificate). The PCK CA and
//! the root come from the quote's own chain.

use base64::Engine as _;
use dcap_qvl::QuoteCollateralV3;
use der::{Decode as _, Encode as _};

use crate::x509::{Cert, rfc3339};

/// A recognised piece of collateral.
enum Piece {
    Bundle(Box<QuoteCollateralV3>),
    TcbInfo { raw: String, signature: Vec<u8> },
    QeIdentity { raw: String, signature: Vec<u8> },
    Crl(Vec<u8>),
    Cert(Box<Cert>),
}

/// Why collateral could not be assembled; the caller prefixes the TEE name.
#[derive(Clone, Debug)]
pub(crate) enum CollateralProblem {
    /// A document is unreadable or of an unknown kind.
    Unrecognised(String),
    /// Some pieces are there, others missing.
    Missing(String),
    /// A document is outside its validity window at the verification time.
    Expired(String),
    /// A document is for another platform or TEE.
    Mismatch(String),
}

/// The result of looking at the collateral.
pub(crate) enum Assembled {
    /// No TCB collateral at all (certificates alone do not count).
    None,
    /// Everything dcap-qvl needs.
    Full(Box<QuoteCollateralV3>),
}

/// Recognises every document and certificate and assembles the collateral for a quote whose
/// PCK chain is `chain` (leaf, PCK CA, root), for the TEE whose tcbInfo id is `tcb_id`
/// (`SGX`/`TDX`) and QE identity id is `qe_id` (`QE`/`TD_QE`).
///
/// Collateral for other platforms or the other TEE may sit beside it (a service's cache holds
/// many): when several bundles or tcbInfos are present, the one for this TEE and `fmspc` is
/// used, and only if none matches is that an error.
pub(crate) fn assemble(
    documents: &[Vec<u8>],
    certificates: &[Vec<u8>],
    chain: &[Cert],
    tcb_id: &str,
    qe_id: &str,
    fmspc: &[u8],
) -> Result<Assembled, CollateralProblem> {
    let mut pieces = Vec::new();
    for (index, doc) in documents.iter().enumerate() {
        recognise(doc, &mut pieces).map_err(|e| {
            CollateralProblem::Unrecognised(format!("collateral document {index}: {e}"))
        })?;
    }
    for (index, bytes) in certificates.iter().enumerate() {
        let certs = Cert::parse_many(bytes).map_err(|e| {
            CollateralProblem::Unrecognised(format!("collateral certificate {index}: {e}"))
        })?;
        pieces.extend(certs.into_iter().map(|c| Piece::Cert(Box::new(c))));
    }

    let mut bundles = Vec::new();
    let mut tcb_infos = Vec::new();
    let mut qe_identities = Vec::new();
    let mut crls = Vec::new();
    let mut certs = Vec::new();
    for piece in pieces {
        match piece {
            Piece::Bundle(b) => bundles.push(b),
            Piece::TcbInfo { raw, signature } => tcb_infos.push((raw, signature)),
            Piece::QeIdentity { raw, signature } => qe_identities.push((raw, signature)),
            Piece::Crl(der) => crls.push(der),
            Piece::Cert(c) => certs.push(*c),
        }
    }
    // Several bundles (a cache): keep those for this TEE and platform.
    if bundles.len() > 1 {
        let before = bundles.len();
        bundles.retain(|b| tcb_info_matches(&b.tcb_info, "SGX", tcb_id, Some(fmspc)));
        if bundles.is_empty() && tcb_infos.is_empty() {
            return Err(CollateralProblem::Mismatch(format!(
                "collateral has {before} bundles, none for {tcb_id} FMSPC {}",
                hex::encode(fmspc)
            )));
        }
    }
    // A matching bundle wins over separate documents for other platforms.
    if bundles.len() == 1 && tcb_info_matches(&bundles[0].tcb_info, "SGX", tcb_id, Some(fmspc)) {
        tcb_infos.clear();
        qe_identities.clear();
        crls.clear();
    }
    let separate = !tcb_infos.is_empty() || !qe_identities.is_empty() || !crls.is_empty();
    match bundles.len() {
        0 => {}
        1 if !separate => {
            let mut bundle = bundles.remove(0);
            // The PCK chain verified is always the quote's own.
            bundle.pck_certificate_chain = None;
            return Ok(Assembled::Full(bundle));
        }
        1 => {
            return Err(CollateralProblem::Unrecognised(
                "collateral has both a bundle and separate tcbInfo/QE identity/CRL documents"
                    .into(),
            ));
        }
        n => {
            return Err(CollateralProblem::Unrecognised(format!(
                "collateral has {n} bundles, expected one"
            )));
        }
    }
    if !separate {
        return Ok(Assembled::None);
    }
    let [_, pck_ca, root] = chain else {
        return Err(CollateralProblem::Unrecognised(format!(
            "the quote's PCK chain has {} certificates, expected 3",
            chain.len()
        )));
    };

    // Pick the tcbInfo and QE identity of this TEE.
    let tcb_info = pick(tcb_infos, "SGX", tcb_id, "tcbInfo", Some(fmspc))?;
    let qe_identity = pick(qe_identities, "", qe_id, "QE identity", None)?;
    let mut pck_crl = None;
    let mut root_crl = None;
    for der in crls {
        let issuer = crl_issuer(&der).map_err(CollateralProblem::Unrecognised)?;
        if issuer == subject_der(pck_ca) {
            pck_crl = Some(der);
        } else if issuer == subject_der(root) {
            root_crl = Some(der);
        }
    }
    let signer =
        certs.iter().find(|c| c.subject_cn() == "Intel SGX TCB Signing").map(|c| pem(&[c, root]));

    let mut have = Vec::new();
    let mut missing = Vec::new();
    for (present, name) in [
        (tcb_info.is_some(), "a tcbInfo"),
        (qe_identity.is_some(), "a QE identity"),
        (pck_crl.is_some(), "a PCK CRL"),
        (root_crl.is_some(), "a root CA CRL"),
        (signer.is_some(), "the TCB Signing certificate"),
    ] {
        if present { have.push(name) } else { missing.push(name) }
    }
    match (tcb_info, qe_identity, pck_crl, root_crl, signer) {
        (Some(tcb), Some(qe), Some(pck_crl), Some(root_ca_crl), Some(signer)) => {
            Ok(Assembled::Full(Box::new(QuoteCollateralV3 {
                pck_crl_issuer_chain: pem(&[pck_ca, root]),
                root_ca_crl,
                pck_crl,
                tcb_info_issuer_chain: signer.clone(),
                tcb_info: tcb.0,
                tcb_info_signature: tcb.1,
                qe_identity_issuer_chain: signer,
                qe_identity: qe.0,
                qe_identity_signature: qe.1,
                pck_certificate_chain: None,
            })))
        }
        _ => Err(CollateralProblem::Missing(format!(
            "collateral has {} but no {} (for PCK CA {:?})",
            have.join(", "),
            missing
                .iter()
                .map(|m| m.trim_start_matches("a ").trim_start_matches("the "))
                .collect::<Vec<_>>()
                .join(", no "),
            pck_ca.subject_cn()
        ))),
    }
}

/// Whether a tcbInfo (or QE identity) text has id `want` (`default_id` when it has none: SGX
/// tcbInfo v2) and, when `fmspc` is given, that FMSPC.
fn tcb_info_matches(raw: &str, default_id: &str, want: &str, fmspc: Option<&[u8]>) -> bool {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(raw) else { return false };
    let id = value.get("id").and_then(|i| i.as_str()).unwrap_or(default_id);
    let fmspc_ok = match fmspc {
        None => true,
        Some(fmspc) => value
            .get("fmspc")
            .and_then(|f| f.as_str())
            .is_some_and(|f| f.eq_ignore_ascii_case(&hex::encode(fmspc))),
    };
    id == want && fmspc_ok
}

/// The one document whose `id` is `want` (`default_id` when it has none: SGX tcbInfo v2) and,
/// for tcbInfos, whose FMSPC is the quote's.
fn pick(
    items: Vec<(String, Vec<u8>)>,
    default_id: &str,
    want: &str,
    what: &str,
    fmspc: Option<&[u8]>,
) -> Result<Option<(String, Vec<u8>)>, CollateralProblem> {
    if items.is_empty() {
        return Ok(None);
    }
    let mut found = Vec::new();
    let mut ids = Vec::new();
    for (raw, sig) in items {
        if tcb_info_matches(&raw, default_id, want, fmspc) {
            found.push((raw, sig));
        } else {
            let value = serde_json::from_str::<serde_json::Value>(&raw).ok();
            let field = |name: &str| {
                value.as_ref().and_then(|v| v.get(name)).and_then(|i| i.as_str()).map(str::to_owned)
            };
            let id = field("id").unwrap_or_else(|| default_id.to_owned());
            ids.push(match field("fmspc") {
                Some(f) => format!("{id} FMSPC {}", f.to_ascii_lowercase()),
                None => id,
            });
        }
    }
    let want = match fmspc {
        Some(f) => format!("{want} FMSPC {}", hex::encode(f)),
        None => want.to_owned(),
    };
    match found.len() {
        0 => Err(CollateralProblem::Mismatch(format!(
            "collateral has a {what} for {}, not {want}",
            ids.join(", ")
        ))),
        1 => Ok(found.pop()),
        n => Err(CollateralProblem::Unrecognised(format!(
            "collateral has {n} {what} documents for {want}"
        ))),
    }
}

/// One check of [`prechecks`], in the order they are made: a validity window to hold at the
/// verification time, or a problem found without it (reported only when every check before it
/// passed, as if the documents were read afresh).
enum Check {
    Window { name: &'static str, issued: i64, next: Option<i64> },
    Fail(CollateralProblem),
}

/// What [`prechecks`] found, for [`Checks::at`] to finish at the verification time.
pub(crate) struct Checks(Vec<Check>);

impl Checks {
    /// The first check that fails at `now`, if one does.
    pub(crate) fn at(&self, now: i64) -> Result<(), CollateralProblem> {
        for check in &self.0 {
            match check {
                Check::Window { name, issued, next } => window(name, *issued, *next, now)?,
                Check::Fail(problem) => return Err(problem.clone()),
            }
        }
        Ok(())
    }
}

/// Checks that the assembled collateral is for this platform (`fmspc`) and TEE, and lists, in
/// order, the validity windows to check at the verification time (and the problems found
/// without it), so the common failures get a precise message before dcap-qvl re-checks
/// everything. Reads the documents once; [`Checks::at`] does the rest for each quote.
pub(crate) fn prechecks(
    collateral: &QuoteCollateralV3,
    chain: &[Cert],
    fmspc: &[u8],
    tcb_id: &str,
    qe_id: &str,
) -> Result<Checks, CollateralProblem> {
    let bad = |what: &str| CollateralProblem::Unrecognised(what.to_owned());
    let tcb: serde_json::Value = serde_json::from_str(&collateral.tcb_info)
        .map_err(|e| bad(&format!("tcbInfo is not JSON: {e}")))?;
    let qe: serde_json::Value = serde_json::from_str(&collateral.qe_identity)
        .map_err(|e| bad(&format!("QE identity is not JSON: {e}")))?;
    let id = tcb.get("id").and_then(|v| v.as_str()).unwrap_or("SGX");
    if id != tcb_id {
        return Err(CollateralProblem::Mismatch(format!(
            "collateral has a tcbInfo for {id}, not {tcb_id}"
        )));
    }
    let qid = qe.get("id").and_then(|v| v.as_str()).unwrap_or_default();
    if qid != qe_id {
        return Err(CollateralProblem::Mismatch(format!(
            "collateral has a QE identity for {qid}, not {qe_id}"
        )));
    }
    let tcb_fmspc = tcb.get("fmspc").and_then(|v| v.as_str()).unwrap_or_default();
    if !tcb_fmspc.eq_ignore_ascii_case(&hex::encode(fmspc)) {
        return Err(CollateralProblem::Mismatch(format!(
            "collateral tcbInfo is for FMSPC {}, the PCK certificate's is {}",
            tcb_fmspc.to_ascii_lowercase(),
            hex::encode(fmspc)
        )));
    }
    let mut checks = Vec::new();
    for (name, doc) in [("tcbInfo", &tcb), ("QE identity", &qe)] {
        let date = |field: &str| -> Result<i64, CollateralProblem> {
            let text = doc.get(field).and_then(|v| v.as_str()).unwrap_or_default();
            time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                .map(|t| t.unix_timestamp())
                .map_err(|_| bad(&format!("{name} {field} {text:?} is not an RFC 3339 time")))
        };
        match date("issueDate").and_then(|issued| Ok((issued, date("nextUpdate")?))) {
            Ok((issued, next)) => checks.push(Check::Window { name, issued, next: Some(next) }),
            Err(problem) => {
                checks.push(Check::Fail(problem));
                return Ok(Checks(checks));
            }
        }
    }
    let issuers = [chain.get(1), chain.last()];
    for ((name, der), issuer) in
        [("PCK CRL", &collateral.pck_crl), ("root CA CRL", &collateral.root_ca_crl)]
            .into_iter()
            .zip(issuers)
    {
        let crl =
            match x509_cert::crl::CertificateList::<x509_cert::certificate::Rfc5280>::from_der(der)
            {
                Ok(crl) => crl,
                Err(e) => {
                    checks.push(Check::Fail(bad(&format!("{name} is not a DER CRL: {e}"))));
                    return Ok(Checks(checks));
                }
            };
        if let Some(issuer) = issuer
            && crl.tbs_cert_list.issuer.to_der().ok() != Some(subject_der(issuer))
        {
            checks.push(Check::Fail(CollateralProblem::Mismatch(format!(
                "collateral {name} is issued by {}, not by {} of the quote's PCK chain",
                crl.tbs_cert_list.issuer,
                issuer.subject_cn()
            ))));
            return Ok(Checks(checks));
        }
        let issued = secs(crl.tbs_cert_list.this_update.to_unix_duration());
        let next = crl.tbs_cert_list.next_update.map(|t| secs(t.to_unix_duration()));
        checks.push(Check::Window { name, issued, next });
    }
    Ok(Checks(checks))
}

/// The collateral of one quote, read: the bundle dcap-qvl verifies (if there is TCB
/// collateral), the checks left for the verification time, and a digest of everything it was
/// read from.
pub(crate) struct Prepared {
    /// What [`assemble`] gave.
    pub(crate) assembled: Assembled,
    /// For a full bundle, what [`prechecks`] found.
    pub(crate) checks: Option<Checks>,
    /// SHA-256 over every input of [`assemble`] and [`prechecks`], each length-prefixed.
    pub(crate) digest: [u8; 32],
}

/// How many prepared collaterals are remembered before the memo starts over (each holds one
/// bundle, tens of KiB).
const PREPARED_LIMIT: usize = 256;

type PreparedMemo = std::collections::BTreeMap<[u8; 32], std::sync::Arc<Prepared>>;

static PREPARED: std::sync::Mutex<PreparedMemo> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

fn prepared_memo() -> std::sync::MutexGuard<'static, PreparedMemo> {
    // Updates are single inserts or a clear: a poisoned lock still holds a consistent map.
    PREPARED.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// [`assemble`], then (for a full bundle) [`prechecks`]: what the collateral says, independent of
/// the verification time. A success is remembered under a digest of every input — each document
/// and certificate, the quote's PCK chain, the TEE and the FMSPC — so only the very same
/// collateral for the very same platform finds it; failures are recomputed every time.
pub(crate) fn prepare(
    documents: &[Vec<u8>],
    certificates: &[Vec<u8>],
    chain: &[Cert],
    tcb_id: &str,
    qe_id: &str,
    fmspc: &[u8],
) -> Result<std::sync::Arc<Prepared>, CollateralProblem> {
    use sha2::Digest as _;
    let mut hasher = sha2::Sha256::new();
    let mut part = |bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_be_bytes());
        hasher.update(bytes);
    };
    part(b"cloister-dcap-collateral-v1");
    part(tcb_id.as_bytes());
    part(qe_id.as_bytes());
    part(fmspc);
    part(&(documents.len() as u64).to_be_bytes());
    documents.iter().for_each(|d| part(d));
    part(&(certificates.len() as u64).to_be_bytes());
    certificates.iter().for_each(|c| part(c));
    part(&(chain.len() as u64).to_be_bytes());
    chain.iter().for_each(|c| part(c.der()));
    let digest: [u8; 32] = hasher.finalize().into();
    if let Some(prepared) = prepared_memo().get(&digest) {
        return Ok(prepared.clone());
    }
    let assembled = assemble(documents, certificates, chain, tcb_id, qe_id, fmspc)?;
    let checks = match &assembled {
        Assembled::None => None,
        Assembled::Full(bundle) => Some(prechecks(bundle, chain, fmspc, tcb_id, qe_id)?),
    };
    let prepared = std::sync::Arc::new(Prepared { assembled, checks, digest });
    let mut memo = prepared_memo();
    if memo.len() >= PREPARED_LIMIT {
        memo.clear();
    }
    memo.insert(digest, prepared.clone());
    Ok(prepared)
}

fn secs(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

fn window(name: &str, issued: i64, next: Option<i64>, now: i64) -> Result<(), CollateralProblem> {
    if now < issued {
        return Err(CollateralProblem::Expired(format!(
            "{name} is not valid before its issue date {}",
            rfc3339(issued)
        )));
    }
    if let Some(next) = next
        && now > next
    {
        return Err(CollateralProblem::Expired(format!(
            "{name} expired at {} (its nextUpdate)",
            rfc3339(next)
        )));
    }
    Ok(())
}

/// Recognises one document and appends its pieces.
fn recognise(doc: &[u8], out: &mut Vec<Piece>) -> Result<(), String> {
    let trimmed = doc.trim_ascii();
    if trimmed.starts_with(b"{") {
        let text = std::str::from_utf8(trimmed).map_err(|_| "JSON is not UTF-8".to_owned())?;
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
        if value.get("tcb_info").is_some() && value.get("qe_identity").is_some() {
            let bundle: QuoteCollateralV3 = serde_json::from_str(text)
                .map_err(|e| format!("collateral bundle is malformed: {e}"))?;
            out.push(Piece::Bundle(Box::new(bundle)));
            return Ok(());
        }
        for (member, is_tcb) in [("tcbInfo", true), ("enclaveIdentity", false)] {
            if value.get(member).is_some() {
                let raw = raw_member(text, member)
                    .ok_or_else(|| format!("cannot locate the {member} member"))?
                    .to_owned();
                let signature = value
                    .get("signature")
                    .and_then(|s| s.as_str())
                    .and_then(|s| hex::decode(s).ok())
                    .ok_or_else(|| format!("{member} response has no hex signature"))?;
                out.push(if is_tcb {
                    Piece::TcbInfo { raw, signature }
                } else {
                    Piece::QeIdentity { raw, signature }
                });
                return Ok(());
            }
        }
        return Err(
            "JSON is neither a collateral bundle nor a tcbInfo/enclaveIdentity response".into()
        );
    }
    if let Ok(text) = std::str::from_utf8(trimmed)
        && text.contains("-----BEGIN ")
    {
        for (label, der) in pem_blocks(text)? {
            match label.as_str() {
                "X509 CRL" => out.push(Piece::Crl(der)),
                "CERTIFICATE" => out
                    .push(Piece::Cert(Box::new(Cert::from_der(&der).map_err(|e| e.to_string())?))),
                other => return Err(format!("unexpected PEM block {other:?}")),
            }
        }
        return Ok(());
    }
    let der = if !trimmed.is_empty()
        && trimmed.len().is_multiple_of(2)
        && trimmed.iter().all(u8::is_ascii_hexdigit)
    {
        hex::decode(trimmed).map_err(|e| e.to_string())?
    } else {
        doc.to_vec()
    };
    if x509_cert::crl::CertificateList::<x509_cert::certificate::Rfc5280>::from_der(&der).is_ok() {
        out.push(Piece::Crl(der));
        return Ok(());
    }
    if let Ok(cert) = Cert::from_der(&der) {
        out.push(Piece::Cert(Box::new(cert)));
        return Ok(());
    }
    Err("not a DCAP collateral bundle, PCS tcbInfo/enclaveIdentity response, CRL or certificate"
        .into())
}

/// The issuer name of a DER CRL, DER-encoded.
fn crl_issuer(der: &[u8]) -> Result<Vec<u8>, String> {
    let crl = x509_cert::crl::CertificateList::<x509_cert::certificate::Rfc5280>::from_der(der)
        .map_err(|e| format!("CRL is not DER: {e}"))?;
    crl.tbs_cert_list.issuer.to_der().map_err(|e| e.to_string())
}

/// A certificate's subject name, DER-encoded.
fn subject_der(cert: &Cert) -> Vec<u8> {
    cert.parsed().tbs_certificate().subject().to_der().unwrap_or_default()
}

/// PEM text of certificates, in order.
fn pem(certs: &[&Cert]) -> String {
    let mut out = String::new();
    for cert in certs {
        let b64 = base64::engine::general_purpose::STANDARD.encode(cert.der());
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    out
}

/// Every PEM block in `text`: label and DER.
fn pem_blocks(text: &str) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let after = rest.get(start + 11..).unwrap_or_default();
        let label_end = after.find("-----").ok_or("unterminated PEM BEGIN line")?;
        let label = after.get(..label_end).unwrap_or_default().to_owned();
        let body_start = label_end + 5;
        let end_marker = format!("-----END {label}-----");
        let body_len = after
            .get(body_start..)
            .and_then(|b| b.find(&end_marker))
            .ok_or_else(|| format!("PEM block {label:?} has no END line"))?;
        let body: String = after
            .get(body_start..body_start + body_len)
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body.as_bytes())
            .map_err(|e| format!("PEM block {label:?}: {e}"))?;
        out.push((label, der));
        rest = after.get(body_start + body_len + end_marker.len()..).unwrap_or_default();
    }
    Ok(out)
}

/// The exact text of the value of top-level member `key` in the JSON object `text`.
pub(crate) fn raw_member<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let bytes = text.as_bytes();
    let mut i = skip_ws(bytes, 0);
    if bytes.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    loop {
        i = skip_ws(bytes, i);
        if bytes.get(i) == Some(&b'}') {
            return None;
        }
        let key_start = i;
        let key_end = skip_value(bytes, i)?;
        let name: String = serde_json::from_str(text.get(key_start..key_end)?).ok()?;
        i = skip_ws(bytes, key_end);
        if bytes.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(bytes, i + 1);
        let value_end = skip_value(bytes, i)?;
        if name == key {
            return text.get(i..value_end);
        }
        i = skip_ws(bytes, value_end);
        match bytes.get(i) {
            Some(b',') => i += 1,
            _ => return None,
        }
    }
}

fn skip_ws(bytes: &[u8], mut i: usize) -> usize {
    while bytes.get(i).is_some_and(|b| b.is_ascii_whitespace()) {
        i += 1;
    }
    i
}

/// The end of the JSON value starting at `i`.
fn skip_value(bytes: &[u8], mut i: usize) -> Option<usize> {
    let mut depth = 0usize;
    loop {
        match *bytes.get(i)? {
            b'"' => {
                i += 1;
                loop {
                    match *bytes.get(i)? {
                        b'\\' => i += 2,
                        b'"' => break,
                        _ => i += 1,
                    }
                }
                i += 1;
            }
            b'{' | b'[' => {
                depth += 1;
                i += 1;
            }
            b'}' | b']' => {
                if depth == 0 {
                    return Some(i);
                }
                depth -= 1;
                i += 1;
            }
            b',' | b':' if depth == 0 => return Some(i),
            b if depth == 0 && b.is_ascii_whitespace() => return Some(i),
            _ => i += 1,
        }
        if depth == 0 && matches!(bytes.get(i.wrapping_sub(1)), Some(b'"' | b'}' | b']')) {
            return Some(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::raw_member;

    #[test]
    fn raw_member_returns_the_exact_text() {
        let doc = r#" { "a" : 1, "tcbInfo":{"x":"}\"{","y":[1,{"z":2}]} , "signature":"ab"}"#;
        assert_eq!(raw_member(doc, "tcbInfo"), Some(r#"{"x":"}\"{","y":[1,{"z":2}]}"#));
        assert_eq!(raw_member(doc, "signature"), Some(r#""ab""#));
        assert_eq!(raw_member(doc, "a"), Some("1"));
        assert_eq!(raw_member(doc, "missing"), None);
        assert_eq!(raw_member(r#"{"n":17}"#, "n"), Some("17"));
        for broken in ["", "{", "[1]", r#"{"tcbInfo""#, r#"{"tcbInfo":{"#, r#"{"a":"\"#] {
            assert_eq!(raw_member(broken, "tcbInfo"), None, "{broken}");
        }
    }
}
