//! AMD SEV-SNP attestation reports: VCEK/VLEK chain to the AMD roots, TCB and policy.
//!
//! Evidence is the 1184-byte `ATTESTATION_REPORT` the guest gets from the AMD secure processor
//! (`/dev/sev-guest`, configfs-tsm), or the JSON form Confidential Containers' trustee uses
//! (`{"attestation_report": {...}, "cert_chain": [...]}`), which is rebuilt into those bytes.
//!
//! Checks, all mandatory, in this order:
//! 1. the report parses: 1184 bytes, `VERSION` 2 to 5, `SIGNATURE_ALGO` 1 (ECDSA P-384 with
//!    SHA-384), a signing key (`SIGNING_KEY` VCEK or VLEK, `MASK_CHIP_KEY` clear);
//! 2. a certificate of that key (subject `SEV-VCEK` or `SEV-VLEK`) is among the certificates
//!    (collateral, the evidence's own, `--cert`), and chains VCEK ← ASK (`SEV-Milan`…) ← ARK
//!    (`ARK-Milan`…) or VLEK ← ASVK (`SEV-VLEK-Milan`…) ← ARK, every certificate valid at the
//!    verification time, the ARK's SHA-256 pinned in this module for its product (or one of the
//!    instance's extra SNP anchors or test roots; the claim `trust_anchor` says which:
//!    `vendor`, `instance` or `test`);
//! 3. the products agree: the ASK/ARK names, the key's product-name extension, the report's
//!    CPUID (version 3+) and the TCB layout (Turin's has an FMC level);
//! 4. the key's TCB extensions equal the report's `REPORTED_TCB` (the key is derived from it);
//! 5. for a VCEK, its hwID extension equals `CHIP_ID` (unless the host masked `CHIP_ID`);
//! 6. the report signature over bytes `[0, 0x2A0)` verifies with the key;
//! 7. every CRL of the chain's ARK among the collateral documents (AMD KDS
//!    `/vcek/v1/{product}/crl`, DER or PEM) is signed by the ARK, current at the verification
//!    time, and does not list the ASK/ASVK. Without one, revocation is not checked, and the
//!    vendor claim `crl_checked` says so.
//!
//! The TCB is checked before the signature so that the common mistake, a VCEK fetched for
//! another TCB, is reported as such rather than as a bad signature.
//!
//! Azure confidential VM evidence (an HCL report holding the SNP report, and a vTPM quote) is a
//! third form, recognised by content; see [`azure`] for its additional checks and claims.

pub mod azure;
pub mod certs;
mod json;
pub mod report;

use cloister_types::{Claims, Hex, TcbStatus, TeeKind};

use crate::error::VerifyError;
use crate::inputs::Inputs;
use crate::x509::{CertError, PublicKey};

pub use certs::{EndorsementKeyInfo, pinned_ark_sha256};
pub use report::{Product, Report, SigningKey, TcbVersion};

/// Why snp evidence failed to verify.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnpError {
    /// The evidence is not in the expected format.
    #[error("snp: evidence is malformed: {0}")]
    Malformed(String),
    /// The report is not 1184 bytes long.
    #[error("snp: report is {0} bytes, an SEV-SNP attestation report is 1184")]
    ReportLength(usize),
    /// The report's `VERSION` is not one whose layout this verifier knows.
    #[error("snp: report version {0} is not supported (versions 2 to 5 are)")]
    UnsupportedVersion(u32),
    /// `SIGNATURE_ALGO` is not ECDSA P-384 with SHA-384.
    #[error("snp: report signature algorithm is {0}, not 1 (ECDSA P-384 with SHA-384)")]
    SignatureAlgorithm(u32),
    /// The firmware did not sign the report.
    #[error("snp: report is not signed: {0}")]
    Unsigned(String),
    /// `SIGNING_KEY` has a value the ABI reserves.
    #[error("snp: report names signing key {0}, which is neither VCEK (0) nor VLEK (1)")]
    UnknownSigningKey(u8),
    /// No VCEK certificate was given.
    #[error("snp: no VCEK certificate given (pass it with --cert; {0})")]
    MissingVcek(String),
    /// No VLEK certificate was given.
    #[error(
        "snp: the report is signed with a VLEK but no VLEK certificate was given (pass it with \
         --cert; the cloud provider supplies it, e.g. in the extended report's certificate \
         table){0}"
    )]
    MissingVlek(&'static str),
    /// The VCEK's ASK or the VLEK's ASVK was not given.
    #[error(
        "snp: no {issuer} certificate given ({role}, the issuer of the {leaf}; AMD's own for \
         Milan, Genoa and Turin are built in, so pass this issuer with --cert)"
    )]
    MissingIssuer {
        /// `VCEK` or `VLEK`.
        leaf: &'static str,
        /// The issuer CN the leaf names.
        issuer: String,
        /// `ASK` or `ASVK`.
        role: &'static str,
    },
    /// The product's ARK was not given.
    #[error(
        "snp: no ARK-{0} certificate given (AMD's root for the product; pass the product's \
         cert_chain from AMD KDS with --cert)"
    )]
    MissingArk(&'static str),
    /// The ARK is neither AMD's pinned root for its product nor an extra SNP anchor.
    #[error(
        "snp: {subject} certificate (SHA-256 {fingerprint}) is not AMD's pinned root for the \
         product, nor an SNP trust anchor of this instance"
    )]
    UntrustedArk {
        /// The ARK's subject CN.
        subject: String,
        /// Its SHA-256 fingerprint, lowercase hex.
        fingerprint: String,
    },
    /// An extra SNP trust anchor or test root of the instance is not an X.509 certificate.
    #[error("snp: SNP {list} {index} is not an X.509 certificate: {reason}")]
    Anchor {
        /// Which list: `trust anchor` or `test root`.
        list: &'static str,
        /// Its position in that list of the instance's SNP anchors.
        index: usize,
        /// The parse error.
        reason: String,
    },
    /// A certificate of the chain failed (signature, issuer, validity).
    #[error("snp: {0}")]
    Chain(CertError),
    /// A CRL of the chain's ARK is not signed by it, not current, or malformed.
    #[error("snp: {0}")]
    Crl(String),
    /// The ASK or ASVK is listed in its ARK's CRL.
    #[error("snp: the {subject} certificate is revoked by AMD's {crl}")]
    Revoked {
        /// The revoked certificate's subject CN.
        subject: String,
        /// Which CRL lists it.
        crl: String,
    },
    /// A VCEK/VLEK extension is missing or malformed.
    #[error("snp: {0}")]
    BadExtension(String),
    /// The products named by the report, the key and the chain disagree.
    #[error("snp: product mismatch: {0}")]
    ProductMismatch(String),
    /// The key was derived for another TCB than the report's `REPORTED_TCB`.
    #[error("snp: {key} TCB ({cert}) does not match reported TCB ({report}){hint}")]
    TcbMismatch {
        /// `VCEK` or `VLEK`.
        key: &'static str,
        /// The TCB in the certificate.
        cert: String,
        /// The report's `REPORTED_TCB`.
        report: String,
        /// What to do about it.
        hint: String,
    },
    /// The VCEK belongs to another chip.
    #[error("snp: VCEK hwID {cert} does not match the report's chip id {report}")]
    ChipIdMismatch {
        /// The VCEK's hwID, hex.
        cert: String,
        /// The report's `CHIP_ID`, hex.
        report: String,
    },
    /// The certificate's key is not ECDSA P-384.
    #[error("snp: the {0} certificate's public key is not ECDSA P-384")]
    KeyAlgorithm(&'static str),
    /// The report signature does not verify.
    #[error("snp: report signature does not verify with the {0}")]
    BadSignature(&'static str),
    /// Azure vTPM evidence failed one of its own checks (HCL binding, TPM quote, PCRs).
    #[error("snp: {0}")]
    Azure(#[from] azure::AzureError),
}

/// The driver for [`TeeKind::Snp`].
pub(crate) struct SnpDriver;

impl crate::Driver for SnpDriver {
    fn verify(&self, evidence: &[u8], inputs: &Inputs<'_>) -> Result<Claims, VerifyError> {
        Ok(verify(evidence, inputs)?)
    }
}

/// Parses untrusted evidence bytes without any trust decision; the fuzz target drives this and
/// it must never panic.
pub(crate) fn parse_for_fuzz(bytes: &[u8]) {
    azure::parse_for_fuzz(bytes);
    if let Ok((report, _)) = parse_evidence(bytes) {
        let _ = report.signing_key();
        let _ = vendor_json(&report, None, report.cpuid_product());
    }
}

/// The AMD KDS collateral a report needs: its VCEK (for its chip and reported TCB) and the
/// ASK/ARK, or for a VLEK the ASVK/ARK (VLEKs themselves come from the cloud provider). When
/// the report does not name its product (v2), every product it could be. Nothing when the
/// report does not parse, carries its certificates, or masks its chip id.
pub(crate) fn needs(evidence: &[u8]) -> Vec<crate::needs::CollateralKey> {
    use crate::needs::{CollateralKey, Vendor};
    if azure::looks_like_azure(evidence) {
        return azure::needs(evidence);
    }
    let Ok((report, embedded)) = parse_evidence(evidence) else { return Vec::new() };
    if !embedded.is_empty() {
        return Vec::new();
    }
    let products = match report.cpuid_product() {
        Some(product) => vec![product],
        None => vec![Product::Milan, Product::Genoa],
    };
    let mut out = Vec::new();
    for product in products {
        match report.signing_key() {
            Ok(SigningKey::Vcek) if !report.chip_id_masked() => {
                let tcb = TcbVersion::decode(report.reported_tcb, product.has_fmc());
                let hw_id = if product.has_fmc() {
                    hex::encode(report.chip_id.get(..8).unwrap_or(&[]))
                } else {
                    hex::encode(report.chip_id)
                };
                let fmc = tcb.fmc.map(|f| format!("fmcSPL={f}&")).unwrap_or_default();
                let query = format!(
                    "{fmc}blSPL={}&teeSPL={}&snpSPL={}&ucodeSPL={}",
                    tcb.bootloader, tcb.tee, tcb.snp, tcb.microcode
                );
                out.push(CollateralKey::new(
                    Vendor::Amd,
                    "vcek",
                    format!("{}/{hw_id}?{query}", product.name()),
                ));
                out.push(CollateralKey::new(Vendor::Amd, "ask-ark", product.name()));
            }
            Ok(SigningKey::Vlek) => {
                out.push(CollateralKey::new(Vendor::Amd, "asvk-ark", product.name()));
            }
            _ => {}
        }
    }
    out
}

/// Reads the evidence: a binary report, or trustee's JSON form with its certificates.
fn parse_evidence(evidence: &[u8]) -> Result<(Report, Vec<Vec<u8>>), SnpError> {
    if json::looks_like_json(evidence) {
        let (bytes, certs) = json::parse(evidence)?;
        Ok((Report::parse(&bytes)?, certs))
    } else {
        Ok((Report::parse(evidence)?, Vec::new()))
    }
}

/// Verifies SNP evidence (see the module documentation for the checks) and returns its claims.
pub fn verify(evidence: &[u8], inputs: &Inputs<'_>) -> Result<Claims, SnpError> {
    if azure::looks_like_azure(evidence) {
        return azure::verify(evidence, inputs);
    }
    let (report, carried) = parse_evidence(evidence)?;
    verify_report(&report, &carried, inputs)
}

/// Verifies a parsed report with the certificates given and those it `carried`.
fn verify_report(
    report: &Report,
    carried: &[Vec<u8>],
    inputs: &Inputs<'_>,
) -> Result<Claims, SnpError> {
    if report.signature_algo != report::SIG_ALGO_ECDSA_P384_SHA384 {
        return Err(SnpError::SignatureAlgorithm(report.signature_algo));
    }
    let kind = report.signing_key()?;
    let certs = certs::Certificates::collect(inputs, carried)?;
    let mut first_error = None;
    for leaf in certs.leaves(kind) {
        match check_key(report, &certs, leaf, kind, inputs.now_unix) {
            Ok(key) => return Ok(claims(report, &key, kind)),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error.unwrap_or_else(|| missing_key(report, &certs, kind)))
}

/// The error for a report whose signing key's certificate was not given.
fn missing_key(report: &Report, certs: &certs::Certificates, kind: SigningKey) -> SnpError {
    match kind {
        SigningKey::Vlek => {
            SnpError::MissingVlek(if certs.leaves(SigningKey::Vcek).next().is_some() {
                "; a VCEK was given, but it cannot verify a VLEK-signed report"
            } else {
                ""
            })
        }
        SigningKey::Vcek => SnpError::MissingVcek(kds_hint(report, certs)),
    }
}

/// Where to fetch the VCEK of this report from AMD KDS.
fn kds_hint(report: &Report, certs: &certs::Certificates) -> String {
    if report.chip_id_masked() {
        return "the report's chip id is masked, so the host must supply its VCEK".into();
    }
    let product = report.cpuid_product().or_else(|| certs.only_product());
    let turin = product.is_some_and(Product::has_fmc);
    let tcb = TcbVersion::decode(report.reported_tcb, turin);
    let (hw_id, product_name) = match product {
        Some(p) if p.has_fmc() => (hex::encode(report.chip_id.get(..8).unwrap_or(&[])), p.name()),
        Some(p) => (hex::encode(report.chip_id), p.name()),
        None => (hex::encode(report.chip_id), "{Milan|Genoa}"),
    };
    let fmc = tcb.fmc.map(|f| format!("fmcSPL={f}&")).unwrap_or_default();
    format!(
        "fetch it from AMD KDS for chip id {hw_id} and reported TCB {tcb}: \
         https://kdsintf.amd.com/vcek/v1/{product_name}/{hw_id}?{fmc}blSPL={}&teeSPL={}&snpSPL={}&ucodeSPL={}",
        tcb.bootloader, tcb.tee, tcb.snp, tcb.microcode
    )
}

/// Checks one candidate VCEK/VLEK: chain, products, TCB, chip id, then the report signature.
fn check_key(
    report: &Report,
    certs: &certs::Certificates,
    leaf: &crate::x509::Cert,
    kind: SigningKey,
    now_unix: i64,
) -> Result<certs::VerifiedKey, SnpError> {
    let key = certs.verify_leaf(leaf, kind, now_unix)?;
    if let Some(cpuid_product) = report.cpuid_product()
        && cpuid_product != key.product
    {
        return Err(SnpError::ProductMismatch(format!(
            "the report's CPUID is {}'s but the {} chains to ARK-{}",
            cpuid_product.name(),
            kind.upper(),
            key.product.name()
        )));
    }
    if key.product.has_fmc() && report.version < 3 {
        return Err(SnpError::ProductMismatch(format!(
            "a version {} report cannot come from {}",
            report.version,
            key.product.name()
        )));
    }
    let reported = TcbVersion::decode(report.reported_tcb, key.product.has_fmc());
    let cert_tcb = key.info.tcb(key.product);
    if !cert_tcb.same_levels(&reported) {
        return Err(SnpError::TcbMismatch {
            key: kind.upper(),
            cert: cert_tcb.to_string(),
            report: reported.to_string(),
            hint: match kind {
                SigningKey::Vcek => {
                    format!("; {}", kds_hint(report, certs))
                }
                SigningKey::Vlek => String::new(),
            },
        });
    }
    if kind == SigningKey::Vcek {
        let hw_id = key.info.hw_id.as_deref().ok_or_else(|| {
            SnpError::BadExtension(format!(
                "{} certificate has no hwID extension 1.3.6.1.4.1.3704.1.4",
                kind.upper()
            ))
        })?;
        let reported_id = report.chip_id.get(..hw_id.len()).unwrap_or(&[]);
        if !report.chip_id_masked() && reported_id != hw_id {
            return Err(SnpError::ChipIdMismatch {
                cert: hex::encode(hw_id),
                report: hex::encode(report.chip_id),
            });
        }
    }
    let public_key = key.leaf.public_key().map_err(SnpError::Chain)?;
    if !matches!(public_key, PublicKey::P384(_)) {
        return Err(SnpError::KeyAlgorithm(kind.upper()));
    }
    public_key
        .verify_ecdsa_raw(true, report.signed_bytes(), &report.signature_r_s())
        .map_err(|_| SnpError::BadSignature(kind.upper()))?;
    Ok(key)
}

/// The normalised claims of a verified report.
///
/// - `signer`: the `AUTHOR_KEY_DIGEST` when `AUTHOR_KEY_EN` is set (the author key endorses
///   the ID keys, so it is the stable identity across ID-key rotations, like MRSIGNER), else
///   the `ID_KEY_DIGEST` when the guest was launched with an ID block (non-zero digest), else
///   none: nobody signed the launch.
/// - `tcb_status` is always [`TcbStatus::Unknown`]: AMD publishes no TCB status or advisory
///   list for SNP TCB levels, so policies compare the decoded TCB versions in the vendor
///   fields (`reported_tcb`, `committed_tcb`, …) with their own minimums.
/// - `platform_id` is `CHIP_ID`, omitted when the host masked it (all zero).
/// - `svn` is `GUEST_SVN`; `debug` is the guest policy's DEBUG bit (19).
fn claims(report: &Report, key: &certs::VerifiedKey, kind: SigningKey) -> Claims {
    let nonzero = |bytes: &[u8]| bytes.iter().any(|&b| b != 0);
    let signer = if report.author_key_en() {
        Some(Hex(report.author_key_digest.to_vec()))
    } else if nonzero(&report.id_key_digest) {
        Some(Hex(report.id_key_digest.to_vec()))
    } else {
        None
    };
    let mut vendor = vendor_json(report, Some(kind), Some(key.product));
    if let serde_json::Value::Object(map) = &mut vendor {
        if let Some(csp) = &key.info.csp_id {
            map.insert("vlek_csp_id".into(), csp.clone().into());
        }
        map.insert("crl_checked".into(), key.crl_checked.into());
        map.insert("trust_anchor".into(), key.origin.as_str().into());
    }
    Claims {
        tee: TeeKind::Snp,
        measurement: Hex(report.measurement.to_vec()),
        signer,
        product_id: None,
        svn: Some(u64::from(report.guest_svn)),
        debug: report.debug(),
        report_data: Hex(report.report_data.to_vec()),
        tcb_status: TcbStatus::Unknown,
        advisories: Vec::new(),
        platform_id: (!report.chip_id_masked()).then(|| Hex(report.chip_id.to_vec())),
        vendor: [("snp".to_owned(), vendor)].into_iter().collect(),
    }
}

/// The report's raw fields, decoded where it helps a policy author.
fn vendor_json(
    report: &Report,
    kind: Option<SigningKey>,
    product: Option<Product>,
) -> serde_json::Value {
    let turin = product.is_some_and(Product::has_fmc);
    let tcb = |raw: [u8; 8]| TcbVersion::decode(raw, turin).to_json();
    let version = |(build, minor, major): (u8, u8, u8)| serde_json::json!({ "major": major, "minor": minor, "build": build });
    let mut map = serde_json::Map::new();
    let mut put = |k: &str, v: serde_json::Value| {
        map.insert(k.to_owned(), v);
    };
    put("version", report.version.into());
    put("guest_svn", report.guest_svn.into());
    put("policy", report.policy_json());
    put("family_id", hex::encode(report.family_id).into());
    put("image_id", hex::encode(report.image_id).into());
    put("vmpl", report.vmpl.into());
    put("signature_algo", report.signature_algo.into());
    put("platform_info", report.platform_info_json());
    put("author_key_en", report.author_key_en().into());
    put("mask_chip_key", report.mask_chip_key().into());
    put("signing_key", kind.map(SigningKey::lower).unwrap_or("unknown").into());
    if report.in_response {
        put("in_firmware_response", true.into());
    }
    if report.trailing > 0 {
        put("trailing_bytes", report.trailing.into());
    }
    put("host_data", hex::encode(report.host_data).into());
    put("id_key_digest", hex::encode(report.id_key_digest).into());
    put("author_key_digest", hex::encode(report.author_key_digest).into());
    put("report_id", hex::encode(report.report_id).into());
    put("report_id_ma", hex::encode(report.report_id_ma).into());
    put("chip_id", hex::encode(report.chip_id).into());
    put("current_tcb", tcb(report.current_tcb));
    put("reported_tcb", tcb(report.reported_tcb));
    put("committed_tcb", tcb(report.committed_tcb));
    put("launch_tcb", tcb(report.launch_tcb));
    put("current_version", version(report.current_version));
    put("committed_version", version(report.committed_version));
    if let Some((family, model, stepping)) = report.cpuid {
        put("cpuid_fam_id", family.into());
        put("cpuid_mod_id", model.into());
        put("cpuid_step", stepping.into());
    }
    if let Some((launch, current)) = report.mit_vectors {
        put("launch_mit_vector", launch.into());
        put("current_mit_vector", current.into());
    }
    if let Some(product) = product {
        put("product", product.lowercase().into());
    }
    serde_json::Value::Object(map)
}
