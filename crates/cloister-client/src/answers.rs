//! An enclave's channel to the attestation service it trusts: every answer it acts on must be
//! signed by that service's signing key, pinned by fingerprint, and bound to the request it
//! answers by digest.
//!
//! The compute provider carries the traffic, so it can answer anything it likes. What it cannot
//! do is sign: [`ServiceChannel`] verifies each [`ServiceAnswer`] with the pinned key, checks
//! that it names this instance and the SHA-256 of the exact bytes sent (which carry the
//! enclave's fresh keys or a fresh nonce), and only then hands the answer out. The same
//! fingerprint is bound into the enclave's evidence (`cloister_types::api::SERVICE_KEY_FIELD`),
//! and the service
//! refuses evidence that names another: an enclave pinned to a service of the host's choosing
//! never gets a certificate from the real one.

use cloister_sign::{TokenSigner, VerifyingKey, unix_now};
use cloister_types::api::{
    Answer, AttestRequest, AttestResponse, CheckpointRef, KeyReleaseRequest, KeyReleaseResponse,
    PrivacyChargeOutcome, RELEASE_PROOF, RELEASE_PROOF_VALIDITY, RecordJob, ReleaseContext,
    ReleaseProof, ServiceAnswer, ServiceKeyDocument, SignedAnswer, UsageMeter,
};
use cloister_types::{Base64Url, Hex};
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};

use crate::http::{AuthorityClient, ClientError, decode, transport};

/// What the answer is verified as (in signature errors).
const ANSWER_WHAT: &str = "service answer";

/// An answer that verified: signed by the pinned service, for this instance and this request.
#[derive(Clone, Debug, PartialEq)]
pub struct VerifiedAnswer<T> {
    /// The answer.
    pub answer: T,
    /// The service's time when it answered (Unix seconds): a time the host cannot set.
    pub service_time: u64,
    /// The service's latest signed audit checkpoint when it answered.
    pub checkpoint: CheckpointRef,
}

/// The attestation service as an enclave reaches it: one instance, and the pinned signing key
/// every answer must verify with.
#[derive(Clone, Debug)]
pub struct ServiceChannel {
    client: AuthorityClient,
    instance_id: String,
    service_key: VerifyingKey,
}

impl ServiceChannel {
    /// A channel to instance `instance_id` through `client`, trusting only answers signed by
    /// `service_key`.
    pub fn new(client: AuthorityClient, instance_id: &str, service_key: VerifyingKey) -> Self {
        ServiceChannel { client, instance_id: instance_id.to_owned(), service_key }
    }

    /// Fetches the service's key document and pins its signing key, which must have the
    /// fingerprint `fingerprint_hex` (64 hex digits, as the service prints at start). The
    /// fingerprint is what an operator configures; the document only supplies the key that
    /// matches it.
    pub async fn pin(
        client: AuthorityClient,
        instance_id: &str,
        fingerprint_hex: &str,
    ) -> Result<Self, ClientError> {
        let document = client.service_key_document().await?;
        let url = client.base().to_owned();
        let key = pinned_key(&document, fingerprint_hex)
            .map_err(|reason| ClientError::ForgedAnswer { url, reason })?;
        Ok(Self::new(client, instance_id, key))
    }

    /// The pinned key's fingerprint, lowercase hex: what goes into the runtime data as
    /// `cloister_types::api::SERVICE_KEY_FIELD`, so that the evidence names the service.
    pub fn fingerprint_hex(&self) -> String {
        self.service_key.fingerprint_hex()
    }

    /// The pinned key.
    pub fn service_key(&self) -> &VerifyingKey {
        &self.service_key
    }

    /// The instance.
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// The plain client (challenges, key release).
    pub fn client(&self) -> &AuthorityClient {
        &self.client
    }

    /// Submits evidence and returns the EAR token and certificate chain only when the signed
    /// answer names both by digest, for this request.
    pub async fn attest(
        &self,
        request: &AttestRequest,
    ) -> Result<VerifiedAnswer<AttestResponse>, ClientError> {
        let url = format!("{}/attest", self.client.prefix());
        let body = serde_json::to_vec(request)
            .map_err(|e| ClientError::BadAnswer { url: url.clone(), reason: e.to_string() })?;
        let response: AttestResponse = self.post(&url, body.clone()).await?;
        let verified = self.verify(&url, &response.answer, &body)?;
        let Answer::Attested { ear_sha256, certificate_chain_sha256 } = &verified.answer else {
            return Err(forged(&url, "the answer is not an attestation result"));
        };
        if ear_sha256.as_bytes() != Sha256::digest(response.ear.as_bytes()).as_slice()
            || certificate_chain_sha256.as_bytes()
                != Sha256::digest(response.certificate_chain_pem.as_bytes()).as_slice()
        {
            return Err(forged(
                &url,
                "the EAR token or certificate is not the one the answer signs",
            ));
        }
        Ok(VerifiedAnswer {
            answer: response,
            service_time: verified.service_time,
            checkpoint: verified.checkpoint,
        })
    }

    /// Records a job authorization (`statement`, signed by the enclave's receipt key) in the
    /// audit log; returns the audit entry's seq once the signed answer says so for this job.
    pub async fn record_job(
        &self,
        ear: &str,
        statement: &str,
        job_id: &str,
        after: Option<&CheckpointRef>,
    ) -> Result<VerifiedAnswer<i64>, ClientError> {
        let url = format!("{}/jobs", self.client.prefix());
        let (verified, _) = self.statement(&url, ear, statement, after).await?;
        match verified.answer {
            Answer::JobRecorded { job_id: recorded, audit_seq } if recorded == job_id => {
                Ok(VerifiedAnswer {
                    answer: audit_seq,
                    service_time: verified.service_time,
                    checkpoint: verified.checkpoint,
                })
            }
            _ => Err(forged(&url, "the answer does not record this job")),
        }
    }

    /// Asks the privacy ledger to charge a training job (`statement`, a
    /// `PrivacyChargeStatement` signed by the receipt key); returns the signed outcome. `after`:
    /// the latest checkpoint this enclave holds for the job ([`RecordJob::after`]).
    pub async fn charge_privacy(
        &self,
        ear: &str,
        statement: &str,
        job_id: &str,
        after: Option<&CheckpointRef>,
    ) -> Result<VerifiedAnswer<PrivacyChargeOutcome>, ClientError> {
        let url = format!("{}/privacy-charges", self.client.prefix());
        let (verified, _) = self.statement(&url, ear, statement, after).await?;
        match verified.answer {
            Answer::PrivacyCharge { job_id: charged, outcome } if charged == job_id => {
                Ok(VerifiedAnswer {
                    answer: outcome,
                    service_time: verified.service_time,
                    checkpoint: verified.checkpoint,
                })
            }
            _ => Err(forged(&url, "the answer is not the ledger's answer for this job")),
        }
    }

    /// Reserves tokens of a requester's quota (`statement`, a `UsageReservation` signed by the
    /// receipt key, for `meter`); returns (granted, the meter's total) once the signed answer
    /// says so for this meter.
    pub async fn reserve_usage(
        &self,
        ear: &str,
        statement: &str,
        meter: &UsageMeter,
    ) -> Result<VerifiedAnswer<(u64, u64)>, ClientError> {
        let url = format!("{}/usage-reservations", self.client.prefix());
        let (verified, _) = self.statement(&url, ear, statement, None).await?;
        match verified.answer {
            Answer::UsageReserved { meter: reserved, granted, reserved_total }
                if &reserved == meter && granted <= reserved_total =>
            {
                Ok(VerifiedAnswer {
                    answer: (granted, reserved_total),
                    service_time: verified.service_time,
                    checkpoint: verified.checkpoint,
                })
            }
            _ => Err(forged(&url, "the answer is not a reservation on this meter")),
        }
    }

    /// Takes requests from a requester's per-minute allowance (`statement`, a
    /// `RequestReservation` signed by the receipt key, for `meter`); returns how many were
    /// granted (possibly 0) once the signed answer says so for this meter and no more than
    /// `asked`.
    pub async fn reserve_requests(
        &self,
        ear: &str,
        statement: &str,
        meter: &UsageMeter,
        asked: u32,
    ) -> Result<VerifiedAnswer<u32>, ClientError> {
        let url = format!("{}/request-reservations", self.client.prefix());
        let (verified, _) = self.statement(&url, ear, statement, None).await?;
        match verified.answer {
            Answer::RequestsReserved { meter: reserved, granted }
                if &reserved == meter && granted <= asked =>
            {
                Ok(VerifiedAnswer {
                    answer: granted,
                    service_time: verified.service_time,
                    checkpoint: verified.checkpoint,
                })
            }
            _ => Err(forged(&url, "the answer is not a request reservation on this meter")),
        }
    }

    /// Asks the key broker for the key `key_id`, presenting `ear`, with a fresh nonce and the
    /// latest checkpoint this enclave holds for the job (`after`, see [`RecordJob::after`]), the
    /// request signed with `receipt_key` (the enclave's, which its evidence binds); returns
    /// the request sent (to open the wrapped key with) and the response once its signed answer
    /// says this key was released for this request, with the checkpoint covering the release.
    pub async fn release_key(
        &self,
        ear: &str,
        key_id: &Hex,
        context: &ReleaseContext,
        after: Option<&CheckpointRef>,
        receipt_key: &impl TokenSigner,
    ) -> Result<(KeyReleaseRequest, VerifiedAnswer<KeyReleaseResponse>), ClientError> {
        let url = format!("{}/v1/keys/release", self.client.base());
        let request = release_request(ear, key_id, context, after, receipt_key, unix_now())?;
        let body = serde_json::to_vec(&request)
            .map_err(|e| ClientError::BadAnswer { url: url.clone(), reason: e.to_string() })?;
        let response: KeyReleaseResponse = self.post(&url, body.clone()).await?;
        let verified = self.verify(&url, &response.answer, &body)?;
        match &verified.answer {
            Answer::KeyReleased { key_id: released, context_digest, .. }
                if released == key_id && *context_digest == response.context_digest => {}
            _ => return Err(forged(&url, "the answer does not release this key for this request")),
        }
        let verified = VerifiedAnswer {
            answer: response,
            service_time: verified.service_time,
            checkpoint: verified.checkpoint,
        };
        Ok((request, verified))
    }

    /// Posts an enclave statement with a fresh nonce and verifies the signed answer.
    async fn statement(
        &self,
        url: &str,
        ear: &str,
        statement: &str,
        after: Option<&CheckpointRef>,
    ) -> Result<(VerifiedAnswer<Answer>, Vec<u8>), ClientError> {
        let mut nonce = [0u8; 32];
        rand::rng().fill_bytes(&mut nonce);
        let request = RecordJob {
            ear: ear.to_owned(),
            statement: statement.to_owned(),
            nonce: Base64Url::encode(&nonce).to_string(),
            after: after.cloned(),
        };
        let body = serde_json::to_vec(&request)
            .map_err(|e| ClientError::BadAnswer { url: url.to_owned(), reason: e.to_string() })?;
        let signed: SignedAnswer = self.post(url, body.clone()).await?;
        let verified = self.verify(url, &signed.answer, &body)?;
        Ok((verified, body))
    }

    async fn post<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        body: Vec<u8>,
    ) -> Result<T, ClientError> {
        let response = self
            .client
            .http()
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| transport(url, e))?;
        decode(url, response).await
    }

    /// Verifies a signed answer to the request whose body was `body`, at the local time.
    fn verify(
        &self,
        url: &str,
        token: &str,
        body: &[u8],
    ) -> Result<VerifiedAnswer<Answer>, ClientError> {
        verify_answer(&self.service_key, &self.instance_id, token, body, unix_now())
            .map_err(|reason| forged(url, &reason))
    }
}

/// Verifies `token` as a [`ServiceAnswer`] by `service_key` for instance `instance_id`, answering
/// the request whose body was `body`, valid at `now`.
pub fn verify_answer(
    service_key: &VerifyingKey,
    instance_id: &str,
    token: &str,
    body: &[u8],
    now: u64,
) -> Result<VerifiedAnswer<Answer>, String> {
    let signed = service_key
        .verify::<ServiceAnswer>(ANSWER_WHAT, token, now)
        .map_err(|e| format!("it is not signed by the pinned service: {e}"))?;
    let answer = signed.claims;
    if answer.instance_id != instance_id {
        return Err(format!("it answers for instance {}, not {instance_id}", answer.instance_id));
    }
    if answer.request_sha256 != Hex(Sha256::digest(body).to_vec()) {
        return Err("it answers another request".to_owned());
    }
    Ok(VerifiedAnswer {
        answer: answer.answer,
        service_time: signed.issued_at,
        checkpoint: answer.checkpoint,
    })
}

/// The signing key in `document`, if its fingerprint is `fingerprint_hex`.
pub fn pinned_key(
    document: &ServiceKeyDocument,
    fingerprint_hex: &str,
) -> Result<VerifyingKey, String> {
    let key = VerifyingKey::from_text(&document.signing_key)
        .map_err(|e| format!("its signing key is unreadable: {e}"))?;
    let fingerprint = key.fingerprint_hex();
    if !fingerprint.eq_ignore_ascii_case(fingerprint_hex.trim()) {
        return Err(format!(
            "its signing key has fingerprint {fingerprint}, not the pinned {}",
            fingerprint_hex.trim()
        ));
    }
    Ok(key)
}

fn forged(url: &str, reason: &str) -> ClientError {
    ClientError::ForgedAnswer { url: url.to_owned(), reason: reason.to_owned() }
}

/// A key release request for `key_id` presenting `ear`, with a fresh nonce, signed at `now` with
/// `receipt_key` (the enclave's, which its evidence binds): what [`ServiceChannel::release_key`]
/// sends.
pub fn release_request(
    ear: &str,
    key_id: &Hex,
    context: &ReleaseContext,
    after: Option<&CheckpointRef>,
    receipt_key: &impl TokenSigner,
    now: u64,
) -> Result<KeyReleaseRequest, ClientError> {
    let mut nonce = [0u8; 32];
    rand::rng().fill_bytes(&mut nonce);
    let mut request = KeyReleaseRequest {
        key_id: key_id.clone(),
        ear: ear.to_owned(),
        context: context.clone(),
        nonce: Base64Url::encode(&nonce).to_string(),
        after: after.cloned(),
        proof: String::new(),
    };
    request.proof = receipt_key
        .sign_token(RELEASE_PROOF, ReleaseProof::of(&request), now, RELEASE_PROOF_VALIDITY)
        .map_err(|e| ClientError::Signing { what: RELEASE_PROOF, reason: e.to_string() })?;
    Ok(request)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use cloister_sign::SigningKey;

    use super::*;

    fn answer(instance: &str, body: &[u8]) -> ServiceAnswer {
        ServiceAnswer {
            instance_id: instance.to_owned(),
            request_sha256: Hex(Sha256::digest(body).to_vec()),
            checkpoint: CheckpointRef { seq: 64, hash: "ab".repeat(32) },
            answer: Answer::JobRecorded { job_id: "j1".into(), audit_seq: 70 },
        }
    }

    #[test]
    fn only_the_pinned_key_over_this_request_for_this_instance_verifies() {
        let service = SigningKey::generate();
        let body = br#"{"nonce":"fresh"}"#;
        let sign = |key: &SigningKey, a: &ServiceAnswer| {
            key.sign(ANSWER_WHAT, a, 1_000, Duration::from_secs(300)).expect("signs")
        };
        let good = sign(&service, &answer("in_a", body));
        let verified =
            verify_answer(&service.public_key(), "in_a", &good, body, 1_010).expect("verifies");
        assert_eq!(verified.service_time, 1_000);
        assert_eq!(verified.checkpoint.seq, 64);

        // The host signs with a key of its own.
        let host = SigningKey::generate();
        let forged = sign(&host, &answer("in_a", body));
        let err = verify_answer(&service.public_key(), "in_a", &forged, body, 1_010).unwrap_err();
        assert!(err.contains("not signed by the pinned service"), "{err}");
        // A genuine answer to another request, or for another instance.
        let other = sign(&service, &answer("in_a", b"another request"));
        let err = verify_answer(&service.public_key(), "in_a", &other, body, 1_010).unwrap_err();
        assert_eq!(err, "it answers another request");
        let elsewhere = sign(&service, &answer("in_b", body));
        let err =
            verify_answer(&service.public_key(), "in_a", &elsewhere, body, 1_010).unwrap_err();
        assert!(err.contains("not in_a"), "{err}");
        // An old answer.
        assert!(verify_answer(&service.public_key(), "in_a", &good, body, 1_000 + 3600).is_err());
    }

    #[test]
    fn a_key_document_is_pinned_only_by_its_fingerprint() {
        let service = SigningKey::generate().public_key();
        let document = ServiceKeyDocument {
            public_key: "cloister-hpke-x25519:unused".into(),
            key_id: Hex(vec![0; 16]),
            signing_key: service.to_text(),
            signing_key_sha256: Hex(service.fingerprint().to_vec()),
            attestation: None,
        };
        assert_eq!(pinned_key(&document, &service.fingerprint_hex()).unwrap(), service);
        let other = SigningKey::generate().public_key().fingerprint_hex();
        let err = pinned_key(&document, &other).unwrap_err();
        assert!(err.contains("not the pinned"), "{err}");
        // The document's own fingerprint field decides nothing.
        let mut lying = document.clone();
        lying.signing_key_sha256 = Hex(hex::decode(&other).unwrap());
        assert!(pinned_key(&lying, &other).is_err());
    }
}
