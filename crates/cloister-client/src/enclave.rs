//! Verifying an enclave certificate: the chain to the instance CA, the validity window, the claims
//! extension, the binding of the enclave's keys, and the party's own expectations.

use cloister_seal::{Recipient, Suite};
use cloister_sign::{AnyVerifyingKey, SignatureSuite};
use cloister_types::cert::{ENCLAVE_CLAIMS_OID_DOTTED, ENCLAVE_CLAIMS_VERSION};
pub use cloister_types::pem_certificates;
use cloister_types::{Claims, EarStatus, EnclaveClaimsExtension, Hex, RuntimeData, TeeKind};
use rustls::pki_types::{CertificateDer, UnixTime};
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, X509Certificate};

/// Why an enclave was not trusted. Each message names the check that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnclaveError {
    /// PEM or DER could not be read.
    #[error("the enclave certificate chain cannot be read: {0}")]
    Malformed(String),
    /// The chain does not lead to the instance CA, or a certificate is outside its validity.
    #[error("the enclave certificate does not verify against the instance CA: {0}")]
    Chain(String),
    /// The claims extension is missing or unreadable.
    #[error(
        "the enclave certificate has no readable Cloister claims extension ({ENCLAVE_CLAIMS_OID_DOTTED}): {0}"
    )]
    Extension(String),
    /// The certified TLS key is not the one bound into the evidence.
    #[error("the certificate's public key is not the TLS key bound into the enclave's evidence")]
    TlsKeyNotBound,
    /// `report_data` in the claims is not the digest of the runtime data.
    #[error(
        "report_data in the claims does not match the runtime data (keys not bound to the evidence)"
    )]
    ReportDataMismatch,
    /// The TEE kind is not one the party accepts.
    #[error("the enclave runs in a {0} TEE, which is not in the accepted list")]
    TeeNotAccepted(TeeKind),
    /// The enclave's evidence verified under a test root, which the party did not accept.
    #[error(
        "the enclave's {0} evidence is signed under a test root its attestation instance names \
         (trust_anchor \"test\"), not the vendor's: development only; accept it only for tests \
         (--accept-test-root)"
    )]
    TestRootNotAccepted(TeeKind),
    /// The measurement is not on the party's allow-list.
    #[error("the enclave's measurement {0} is not on the allow-list")]
    MeasurementNotAllowed(Hex),
    /// The enclave runs in debug mode.
    #[error("the enclave runs in debug mode; its memory is readable by the host")]
    Debug,
    /// The attestation verdict is not good enough.
    #[error("the attestation verdict is {0:?}, which is not accepted")]
    Status(EarStatus),
    /// A key in the runtime data cannot be parsed.
    #[error("the enclave's {which} key in the runtime data is not valid: {reason}")]
    BadKey {
        /// Which key.
        which: &'static str,
        /// Why.
        reason: String,
    },
}

/// What a party requires of an enclave before trusting it with anything.
#[derive(Clone, Debug)]
pub struct Expectations {
    /// DER of the instance CA certificate the party trusts.
    pub ca_der: Vec<u8>,
    /// Measurements the party accepts; an empty list accepts none.
    pub allowed_measurements: Vec<Hex>,
    /// TEE kinds the party accepts. `sim` must be listed explicitly to be accepted.
    pub accepted_tees: Vec<TeeKind>,
    /// Whether evidence under a test root the instance names (`trust_anchor: "test"`) is
    /// accepted, at best with a `warning` verdict: development only, off unless asked
    /// ([`Expectations::accepting_test_roots`]).
    pub accept_test_roots: bool,
}

impl Expectations {
    /// Expectations from a PEM CA certificate.
    pub fn from_ca_pem(
        ca_pem: &str,
        allowed_measurements: Vec<Hex>,
        accepted_tees: Vec<TeeKind>,
    ) -> Result<Self, EnclaveError> {
        let ca_der = pem_certificates(ca_pem)
            .map_err(|e| EnclaveError::Malformed(e.to_string()))?
            .into_iter()
            .next()
            .ok_or_else(|| EnclaveError::Malformed("no CERTIFICATE block in the CA PEM".into()))?;
        Ok(Expectations { ca_der, allowed_measurements, accepted_tees, accept_test_roots: false })
    }

    /// Also accepts enclaves whose evidence verified under a test root their instance names
    /// (development and tests on fake hardware only), like listing `sim` accepts the simulated
    /// TEE.
    #[must_use]
    pub fn accepting_test_roots(mut self, accept: bool) -> Self {
        self.accept_test_roots = accept;
        self
    }
}

/// The TEE kinds a party accepts an enclave certificate from: every TEE that attests
/// isolated compute, and the simulated one only when asked (`--accept-sim`, development only).
/// GPU evidence is never a worker's main evidence, and PSA/Android results attest a device's
/// key, never an enclave.
pub fn accepted_tees(accept_sim: bool) -> Vec<TeeKind> {
    TeeKind::ALL
        .into_iter()
        .filter(|tee| {
            tee.attests() == cloister_types::Attests::IsolatedCompute
                && (accept_sim || *tee != TeeKind::Sim)
        })
        .collect()
}

/// An enclave whose certificate and claims passed a party's expectations.
#[derive(Clone, Debug)]
pub struct VerifiedEnclave {
    /// The verified claims.
    pub claims: Claims,
    /// The runtime data bound into the evidence.
    pub runtime_data: RuntimeData,
    /// The enclave's envelope key (X25519, or SM2 for a ShangMi enclave): seal inputs to it.
    pub hpke_pk: Recipient,
    /// The enclave's receipt key (ES256, or SM2 for a ShangMi enclave): receipts must verify
    /// with it.
    pub receipt_pk: AnyVerifyingKey,
    /// The attestation verdict.
    pub ear_status: EarStatus,
    /// The policy that produced it.
    pub policy_id: String,
    /// The EAR token the certificate was issued with.
    pub ear: String,
    /// The leaf certificate's DER.
    pub certificate_der: Vec<u8>,
}

impl VerifiedEnclave {
    /// The attestation instance (`in_…`) that appraised the enclave: the instance part of the
    /// policy id (`in_…@vN`) its certificate carries, which the instance CA signed.
    pub fn instance_id(&self) -> &str {
        self.policy_id.split_once('@').map_or(self.policy_id.as_str(), |(id, _)| id)
    }
}

/// The enclave's envelope and receipt keys from its runtime data: an X25519 envelope key with
/// an ES256 receipt key, or (a ShangMi enclave) an SM2 envelope key with an SM2 receipt key. A
/// key-broker reference, or keys of two suites, are refused.
pub fn enclave_keys(
    runtime_data: &RuntimeData,
) -> Result<(Recipient, AnyVerifyingKey), EnclaveError> {
    let bad = |which, reason: String| EnclaveError::BadKey { which, reason };
    let hpke_pk =
        Recipient::from_text(&runtime_data.hpke_pk).map_err(|e| bad("envelope", e.to_string()))?;
    if let Recipient::Broker(_) = hpke_pk {
        return Err(bad("envelope", "a key-broker reference is not an enclave's key".into()));
    }
    let receipt_pk = AnyVerifyingKey::from_text(&runtime_data.receipt_pk)
        .map_err(|e| bad("receipt", e.to_string()))?;
    let expected = match hpke_pk.suite() {
        Suite::ShangMi => SignatureSuite::Sm2,
        _ => SignatureSuite::Es256,
    };
    if receipt_pk.suite() != expected {
        return Err(bad(
            "receipt",
            format!(
                "an {} receipt key beside an envelope key of the {}: an enclave's keys are of \
                 one suite",
                receipt_pk.suite(),
                hpke_pk.suite()
            ),
        ));
    }
    Ok((hpke_pk, receipt_pk))
}

/// Verifies an enclave certificate chain (leaf first, DER) at `now` (Unix seconds).
pub fn verify_enclave_certificate(
    chain: &[Vec<u8>],
    expectations: &Expectations,
    now: u64,
) -> Result<VerifiedEnclave, EnclaveError> {
    let leaf_der = chain.first().ok_or_else(|| EnclaveError::Malformed("empty chain".into()))?;
    verify_chain(leaf_der, &chain[1..], &expectations.ca_der, now)?;
    let (_, leaf) =
        X509Certificate::from_der(leaf_der).map_err(|e| EnclaveError::Malformed(e.to_string()))?;
    let extension = read_claims_extension(&leaf)?;

    let spki_digest = Sha256::digest(leaf.public_key().raw);
    if extension.runtime_data.tls_spki_sha256.as_bytes() != spki_digest.as_slice() {
        return Err(EnclaveError::TlsKeyNotBound);
    }
    let expected =
        extension.runtime_data.report_data().map_err(|e| EnclaveError::Extension(e.to_string()))?;
    if extension.claims.report_data.as_bytes() != expected.0.as_slice() {
        return Err(EnclaveError::ReportDataMismatch);
    }
    check_expectations(&extension, expectations)?;

    let (hpke_pk, receipt_pk) = enclave_keys(&extension.runtime_data)?;
    Ok(VerifiedEnclave {
        claims: extension.claims,
        runtime_data: extension.runtime_data,
        hpke_pk,
        receipt_pk,
        ear_status: extension.ear_status,
        policy_id: extension.policy_id,
        ear: extension.ear,
        certificate_der: leaf_der.clone(),
    })
}

fn check_expectations(
    extension: &EnclaveClaimsExtension,
    expectations: &Expectations,
) -> Result<(), EnclaveError> {
    let claims = &extension.claims;
    if !expectations.accepted_tees.contains(&claims.tee) {
        return Err(EnclaveError::TeeNotAccepted(claims.tee));
    }
    if claims.debug {
        return Err(EnclaveError::Debug);
    }
    if !expectations.allowed_measurements.contains(&claims.measurement) {
        return Err(EnclaveError::MeasurementNotAllowed(claims.measurement.clone()));
    }
    // Evidence under a test root is development evidence whatever the instance's policy said.
    let test_root = claims.under_test_root();
    if test_root && !expectations.accept_test_roots {
        return Err(EnclaveError::TestRootNotAccepted(claims.tee));
    }
    // Only the simulated TEE and test-root evidence may carry a warning verdict, and only
    // because the party accepted them explicitly above; real TEEs must be affirmed.
    match (extension.ear_status, claims.tee) {
        (EarStatus::Affirming, _) | (EarStatus::Warning, TeeKind::Sim) => Ok(()),
        (EarStatus::Warning, _) if test_root => Ok(()),
        (status, _) => Err(EnclaveError::Status(status)),
    }
}

fn verify_chain(
    leaf: &[u8],
    intermediates: &[Vec<u8>],
    ca_der: &[u8],
    now: u64,
) -> Result<(), EnclaveError> {
    let ca = CertificateDer::from(ca_der);
    let anchor = webpki::anchor_from_trusted_cert(&ca)
        .map_err(|e| EnclaveError::Chain(format!("the CA certificate is unusable: {e:?}")))?;
    let leaf = CertificateDer::from(leaf);
    let end_entity = webpki::EndEntityCert::try_from(&leaf)
        .map_err(|e| EnclaveError::Chain(format!("the leaf certificate is malformed: {e:?}")))?;
    // The CA itself may be sent along in the chain; the trust anchor is what counts.
    let intermediates: Vec<CertificateDer<'_>> = intermediates
        .iter()
        .filter(|der| der.as_slice() != ca_der)
        .map(|der| CertificateDer::from(der.as_slice()))
        .collect();
    end_entity
        .verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &[anchor],
            &intermediates,
            UnixTime::since_unix_epoch(std::time::Duration::from_secs(now)),
            webpki::KeyUsage::server_auth(),
            None,
            None,
        )
        .map_err(|e| EnclaveError::Chain(describe_webpki(&e)))?;
    Ok(())
}

fn describe_webpki(error: &webpki::Error) -> String {
    match error {
        webpki::Error::CertExpired { not_after, .. } => {
            format!("the certificate expired at unix time {}", not_after.as_secs())
        }
        webpki::Error::CertNotValidYet { not_before, .. } => {
            format!("the certificate is not valid before unix time {}", not_before.as_secs())
        }
        webpki::Error::UnknownIssuer => "it was not issued by the trusted instance CA".into(),
        webpki::Error::InvalidSignatureForPublicKey => {
            "a signature in the chain does not verify".into()
        }
        other => format!("{other:?}"),
    }
}

/// Reads the claims extension of a certificate WITHOUT verifying anything; for an enclave reading
/// back its own certificate, never for deciding whether to trust one.
pub fn read_claims_unverified(leaf_der: &[u8]) -> Result<EnclaveClaimsExtension, EnclaveError> {
    let (_, leaf) =
        X509Certificate::from_der(leaf_der).map_err(|e| EnclaveError::Malformed(e.to_string()))?;
    read_claims_extension(&leaf)
}

/// The validity period of a certificate (unix seconds, not before and not after), read WITHOUT
/// verifying anything; for an enclave scheduling the renewal of its own certificate.
pub fn validity_unverified(leaf_der: &[u8]) -> Result<(i64, i64), EnclaveError> {
    let (_, leaf) =
        X509Certificate::from_der(leaf_der).map_err(|e| EnclaveError::Malformed(e.to_string()))?;
    let validity = leaf.validity();
    Ok((validity.not_before.timestamp(), validity.not_after.timestamp()))
}

fn read_claims_extension(
    leaf: &X509Certificate<'_>,
) -> Result<EnclaveClaimsExtension, EnclaveError> {
    let extension = leaf
        .extensions()
        .iter()
        .find(|ext| ext.oid.to_id_string() == ENCLAVE_CLAIMS_OID_DOTTED)
        .ok_or_else(|| EnclaveError::Extension("the extension is absent".into()))?;
    let (rest, octets) = x509_parser::der_parser::der::parse_der_octetstring(extension.value)
        .map_err(|e| EnclaveError::Extension(format!("not a DER OCTET STRING: {e}")))?;
    if !rest.is_empty() {
        return Err(EnclaveError::Extension("trailing bytes after the OCTET STRING".into()));
    }
    let bytes = octets
        .as_slice()
        .map_err(|e| EnclaveError::Extension(format!("not a DER OCTET STRING: {e}")))?;
    let parsed: EnclaveClaimsExtension = serde_json::from_slice(bytes)
        .map_err(|e| EnclaveError::Extension(format!("not valid claims JSON: {e}")))?;
    if parsed.version != ENCLAVE_CLAIMS_VERSION {
        return Err(EnclaveError::Extension(format!("unsupported version {}", parsed.version)));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use cloister_seal::{BrokerRecipient, RecipientSecretKey, Sm2SecretKey};
    use cloister_sign::AnySigningKey;

    use super::*;

    fn runtime_data(hpke_pk: &str, receipt_pk: &str) -> RuntimeData {
        RuntimeData {
            nonce: "n".into(),
            hpke_pk: hpke_pk.to_owned(),
            tls_spki_sha256: Hex(vec![0; 32]),
            receipt_pk: receipt_pk.to_owned(),
            extra: Default::default(),
        }
    }

    fn receipt_key(suite: SignatureSuite) -> String {
        AnySigningKey::generate(suite).expect("a fresh key").public_key().to_text()
    }

    #[test]
    fn an_enclaves_envelope_and_receipt_keys_are_of_one_suite() {
        let x25519 = RecipientSecretKey::generate().public_key();
        let sm2 = Sm2SecretKey::generate().public_key().to_text();
        let (es256, sm2sig) =
            (receipt_key(SignatureSuite::Es256), receipt_key(SignatureSuite::Sm2));

        let (hpke, receipt) =
            enclave_keys(&runtime_data(&x25519.to_text(), &es256)).expect("one suite");
        assert_eq!((hpke.suite(), receipt.suite()), (Suite::X25519, SignatureSuite::Es256));
        let (hpke, receipt) = enclave_keys(&runtime_data(&sm2, &sm2sig)).expect("one suite");
        assert_eq!((hpke.suite(), receipt.suite()), (Suite::ShangMi, SignatureSuite::Sm2));

        for (hpke, receipt) in [(x25519.to_text(), &sm2sig), (sm2.clone(), &es256)] {
            let refused = enclave_keys(&runtime_data(&hpke, receipt)).expect_err("two suites");
            assert!(refused.to_string().contains("of one suite"), "{refused}");
        }
        let broker = BrokerRecipient::new("kb_test", x25519).expect("a broker id").to_text();
        let refused = enclave_keys(&runtime_data(&broker, &es256)).expect_err("a broker key");
        assert!(refused.to_string().contains("key-broker reference"), "{refused}");
        let refused = enclave_keys(&runtime_data(&sm2, &sm2)).expect_err("an envelope key");
        assert!(refused.to_string().contains("receipt key"), "{refused}");
    }
}
