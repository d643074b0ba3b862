//! Pinning the attestation service by what it runs: before an enclave trusts a service with its
//! attestations, it checks the service's own evidence (published in its key document) against
//! the measurements the deployment names.
//!
//! The enclave already pins the service's signing key by fingerprint (bound into its evidence;
//! every answer it acts on must be signed by that key). A measurement pin adds: that key lives
//! in a TEE running one of the named service builds. The document's evidence must verify to a
//! vendor root (or a sim platform key the deployment names, development only), attest isolated
//! compute, bind exactly the document's envelope key, signing key and fingerprint, not run in
//! debug mode, and report one of the pinned measurements. The check runs at start and again
//! before every renewal of the enclave's attestation ([`ServiceTrust`]): a service replaced by
//! another build under the same key stops getting renewals from this enclave.

use cloister_client::ServiceChannel;
use cloister_types::api::{SERVICE_CHALLENGE_PREFIX, SERVICE_KEY_FIELD, ServiceKeyDocument};
use cloister_types::{Claims, Hex};
use cloister_verify::TrustAnchors;

/// What the worker requires of the attestation service beyond its pinned signing key.
#[derive(Clone, Debug)]
pub enum ServiceTrust {
    /// The pinned signing-key fingerprint only: the operator vouches for the service's build.
    KeyOnly,
    /// Fresh evidence of one of `measurements` (verified with `anchors`), at start and before
    /// every renewal.
    Measured {
        /// The service builds the deployment names (`--service-measurement`).
        measurements: Vec<Hex>,
        /// Vendor roots are built in; a sim platform key only for development.
        anchors: TrustAnchors,
    },
}

impl ServiceTrust {
    /// Checks the service behind `service` now. For [`ServiceTrust::Measured`], a fresh
    /// challenge must come back as evidence of a pinned build holding the pinned key; returns
    /// its claims. [`ServiceTrust::KeyOnly`] checks nothing more and returns `None`.
    pub async fn check(&self, service: &ServiceChannel) -> Result<Option<Claims>, ServicePinError> {
        let ServiceTrust::Measured { measurements, anchors } = self else {
            return Ok(None);
        };
        let challenge = new_challenge();
        let document = service
            .client()
            .service_key_challenge(&challenge)
            .await
            .map_err(|e| ServicePinError::Unreachable(e.to_string()))?;
        let now = i64::try_from(cloister_sign::unix_now()).unwrap_or(i64::MAX);
        check_service_attestation(
            &document,
            &challenge,
            &service.fingerprint_hex(),
            measurements,
            anchors,
            now,
        )
        .map(Some)
    }
}

/// Why the attestation service was not trusted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServicePinError {
    /// The document names another signing key than the pinned one.
    #[error(
        "the attestation service's signing key is {found}, not the pinned {pinned} \
         (--service-fingerprint)"
    )]
    OtherKey {
        /// The document's fingerprint.
        found: String,
        /// The pinned fingerprint.
        pinned: String,
    },
    /// The service could not be asked for fresh evidence.
    #[error("asking the attestation service for fresh evidence of itself: {0}")]
    Unreachable(String),
    /// The service does not attest itself.
    #[error(
        "the attestation service publishes no attestation (it does not run in a TEE: `serve \
         attestation --tee`), so it cannot be pinned by measurement"
    )]
    NotAttested,
    /// Its evidence did not verify.
    #[error("the attestation service's evidence did not verify: {0}")]
    Evidence(#[from] cloister_verify::VerifyError),
    /// Its evidence is not the fresh evidence asked for.
    #[error(
        "the attestation service's evidence is not over this worker's challenge (a replayed or \
         stale key document)"
    )]
    Stale,
    /// Its evidence is no enclave's.
    #[error("the attestation service's evidence: {0}")]
    NotAnEnclave(#[from] cloister_types::NotAnEnclave),
    /// Its evidence binds other keys than its document names.
    #[error("the attestation service's evidence binds another {0} than its key document names")]
    NotBound(&'static str),
    /// It runs in debug mode.
    #[error("the attestation service runs in debug mode: its host can read its memory")]
    Debug,
    /// It runs another build.
    #[error(
        "the attestation service runs measurement {found}, not one of the pinned {pinned:?} \
         (--service-measurement)"
    )]
    Measurement {
        /// What its evidence reports.
        found: Hex,
        /// What the deployment pinned.
        pinned: Vec<Hex>,
    },
}

/// A fresh challenge for `POST /v1/service-key/challenge`: 24 random bytes, unpadded
/// base64url.
pub fn new_challenge() -> String {
    let bytes: [u8; 24] = rand::random();
    cloister_types::Base64Url::encode(&bytes)
}

/// Checks the service's key `document` (from `POST /v1/service-key/challenge` with
/// `challenge`) against the pinned signing-key `fingerprint` (lowercase hex) and
/// `measurements`, with `anchors` (vendor roots are built in; add a sim platform key only for
/// development) at `now_unix`. The evidence must bind `challenge`, so a document replayed from
/// before the service changed builds is refused. Returns the service's verified claims.
pub fn check_service_attestation(
    document: &ServiceKeyDocument,
    challenge: &str,
    fingerprint: &str,
    measurements: &[Hex],
    anchors: &TrustAnchors,
    now_unix: i64,
) -> Result<Claims, ServicePinError> {
    let found = document.signing_key_sha256.to_string();
    if found != fingerprint.to_ascii_lowercase() {
        return Err(ServicePinError::OtherKey { found, pinned: fingerprint.to_owned() });
    }
    let evidence = document.attestation.as_ref().ok_or(ServicePinError::NotAttested)?;
    let verified = cloister_verify::verify(evidence, anchors, now_unix)?;
    verified.claims().check_enclave()?;
    let bound = verified.runtime_data();
    if bound.nonce != format!("{SERVICE_CHALLENGE_PREFIX}{challenge}") {
        return Err(ServicePinError::Stale);
    }
    if bound.hpke_pk != document.public_key {
        return Err(ServicePinError::NotBound("envelope key"));
    }
    if bound.receipt_pk != document.signing_key {
        return Err(ServicePinError::NotBound("signing key"));
    }
    if bound.extra.get(SERVICE_KEY_FIELD).and_then(|v| v.as_str()) != Some(found.as_str()) {
        return Err(ServicePinError::NotBound("signing-key fingerprint"));
    }
    let claims = verified.claims();
    if claims.debug {
        return Err(ServicePinError::Debug);
    }
    if !measurements.contains(&claims.measurement) {
        return Err(ServicePinError::Measurement {
            found: claims.measurement.clone(),
            pinned: measurements.to_vec(),
        });
    }
    Ok(claims.clone())
}

#[cfg(test)]
mod tests {
    use cloister_attest::{Attester as _, SimAttester, SimPlatformKey};
    use cloister_types::RuntimeData;

    use super::*;

    const MEASUREMENT: [u8; 48] = [0x5e; 48];
    const CHALLENGE: &str = "Y2hhbGxlbmdlLW9mLXRoZS13b3JrZXI";

    fn now() -> i64 {
        cloister_sign::unix_now() as i64
    }

    /// A service key document as a sim-attested service publishes it, and its platform key.
    fn document() -> (ServiceKeyDocument, TrustAnchors) {
        let platform = SimPlatformKey::generate();
        let anchors = TrustAnchors::new().with_sim_platform_key(platform.public_key());
        let tee = SimAttester::new(platform, MEASUREMENT);
        let envelope = cloister_seal::RecipientSecretKey::generate().public_key();
        let signing = cloister_sign::SigningKey::generate().public_key();
        let fingerprint = signing.fingerprint_hex();
        let runtime_data = RuntimeData {
            nonce: format!("{SERVICE_CHALLENGE_PREFIX}{CHALLENGE}"),
            hpke_pk: envelope.to_text(),
            tls_spki_sha256: Hex(vec![0; 32]),
            receipt_pk: signing.to_text(),
            extra: [(SERVICE_KEY_FIELD.to_owned(), fingerprint.clone().into())]
                .into_iter()
                .collect(),
        };
        let document = ServiceKeyDocument {
            public_key: envelope.to_text(),
            key_id: Hex(envelope.key_id().0.to_vec()),
            signing_key: signing.to_text(),
            signing_key_sha256: Hex::parse(&fingerprint).unwrap(),
            attestation: Some(tee.attest(&runtime_data).unwrap()),
        };
        (document, anchors)
    }

    fn check(
        document: &ServiceKeyDocument,
        anchors: &TrustAnchors,
    ) -> Result<Claims, ServicePinError> {
        let fingerprint = document.signing_key_sha256.to_string();
        check_service_attestation(
            document,
            CHALLENGE,
            &fingerprint,
            &[Hex(MEASUREMENT.to_vec())],
            anchors,
            now(),
        )
    }

    #[test]
    fn a_service_running_a_pinned_build_is_trusted() {
        let (document, anchors) = document();
        assert_eq!(check(&document, &anchors).unwrap().measurement, Hex(MEASUREMENT.to_vec()));
    }

    #[test]
    fn another_build_another_key_an_unbound_document_or_no_evidence_is_refused() {
        let (document, anchors) = document();
        let fingerprint = document.signing_key_sha256.to_string();
        let err = check_service_attestation(
            &document,
            CHALLENGE,
            &fingerprint,
            &[Hex(vec![1; 48])],
            &anchors,
            now(),
        );
        assert!(matches!(err, Err(ServicePinError::Measurement { .. })), "{err:?}");
        let err =
            check_service_attestation(&document, CHALLENGE, &"0".repeat(64), &[], &anchors, now());
        assert!(matches!(err, Err(ServicePinError::OtherKey { .. })), "{err:?}");
        // A document whose evidence answered another challenge (replayed, or the service's
        // periodic self-attestation) is not fresh.
        let err = check_service_attestation(
            &document,
            "YW5vdGhlci1jaGFsbGVuZ2UtZW50aXJlbHk",
            &fingerprint,
            &[Hex(MEASUREMENT.to_vec())],
            &anchors,
            now(),
        );
        assert!(matches!(err, Err(ServicePinError::Stale)), "{err:?}");

        // The host swaps the envelope key or the signing key in the document, keeping the
        // evidence.
        let mut swapped = document.clone();
        swapped.public_key = cloister_seal::RecipientSecretKey::generate().public_key().to_text();
        assert!(matches!(
            check(&swapped, &anchors),
            Err(ServicePinError::NotBound("envelope key"))
        ));
        let mut swapped = document.clone();
        let impostor = cloister_sign::SigningKey::generate().public_key();
        swapped.signing_key = impostor.to_text();
        swapped.signing_key_sha256 = Hex::parse(&impostor.fingerprint_hex()).unwrap();
        assert!(matches!(check(&swapped, &anchors), Err(ServicePinError::NotBound(_))));

        let mut unattested = document.clone();
        unattested.attestation = None;
        assert!(matches!(check(&unattested, &anchors), Err(ServicePinError::NotAttested)));
        // Evidence under a platform key the deployment does not name does not verify.
        assert!(matches!(
            check(&document, &TrustAnchors::new()),
            Err(ServicePinError::Evidence(_))
        ));
    }
}
