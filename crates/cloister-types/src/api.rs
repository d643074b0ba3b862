//! Request and response bodies of the attestation service and the enclave worker APIs.

use serde::{Deserialize, Serialize};

use crate::encoding::{Base64Url, Hex};
use crate::evidence::{RuntimeData, UnifiedEvidence};
use crate::job::{InputRef, JobSpec, ReceiptOutput};

/// `POST /v1/challenge` response.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ChallengeResponse {
    /// A fresh single-use nonce.
    pub nonce: String,
    /// Unix seconds after which the nonce is refused.
    pub expires_at: i64,
}

/// `POST /v1/attest` request.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AttestRequest {
    /// The evidence.
    pub evidence: UnifiedEvidence,
    /// The enclave's TLS public key (DER SubjectPublicKeyInfo) to certify; its SHA-256 must be
    /// `runtime_data.tls_spki_sha256`.
    pub tls_spki: Base64Url,
}

/// `POST /v1/attest` response.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AttestResponse {
    /// The EAR attestation result (a signed JWT).
    pub ear: String,
    /// PEM: the enclave certificate, then the instance CA certificate. Empty when the evidence
    /// attests a device's key rather than isolated compute (`psa`, `android`: see
    /// [`crate::Attests`]): no enclave certificate is issued on such evidence.
    pub certificate_chain_pem: String,
    /// A [`ServiceAnswer`] with [`Answer::Attested`] naming `ear` and `certificate_chain_pem` by
    /// digest, signed by the service signing key: what an enclave checks before using either.
    pub answer: String,
}

/// The runtime-data field (`RuntimeData::extra`) naming the attestation service an enclave
/// trusts: the lowercase hex SHA-256 of the service's signing key
/// (`ServiceKeyDocument::signing_key_sha256`). The evidence itself then names the service; the
/// service refuses evidence that names another, and the enclave acts only on answers that key
/// signed.
pub const SERVICE_KEY_FIELD: &str = "service_key_sha256";

/// The prefix of the `nonce` a service in a TEE binds into evidence it collects for a
/// challenger (`POST /v1/service-key/challenge`): followed by the challenger's nonce, so that the
/// challenger knows the evidence is fresh (a document replayed from before a build change is
/// not).
pub const SERVICE_CHALLENGE_PREFIX: &str = "cloister-service-challenge:";

/// `POST /v1/service-key/challenge` request: a nonce for the service to bind into fresh
/// evidence of itself.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceChallenge {
    /// 16 to 64 random bytes, unpadded base64url.
    pub nonce: String,
}

/// What the attestation service states to an enclave: a compact JWS by the service signing key
/// (`what = "service answer"`), bound to the request it answers by digest. Its `iat` is the
/// service's time, which an enclave may use where the host's clock must not decide.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceAnswer {
    /// The instance the request was addressed to.
    pub instance_id: String,
    /// SHA-256 of the request body exactly as the service received it (the enclave's request
    /// carries fresh values: its keys, or a nonce of its own).
    pub request_sha256: Hex,
    /// The latest signed checkpoint of the service's audit log when it answered.
    pub checkpoint: CheckpointRef,
    /// The answer.
    pub answer: Answer,
}

/// A signed audit checkpoint, by reference: a party holding one detects a log (or a whole
/// database) rolled back behind it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointRef {
    /// The last entry the checkpoint covers; 0 before the first checkpoint.
    pub seq: i64,
    /// That entry's hash (empty before the first checkpoint).
    pub hash: String,
}

/// The answers an enclave acts on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Answer {
    /// Attestation passed: the EAR token and certificate chain issued, by SHA-256.
    Attested {
        /// SHA-256 of the EAR token text.
        ear_sha256: Hex,
        /// SHA-256 of the PEM certificate chain text.
        certificate_chain_sha256: Hex,
    },
    /// A job authorization was recorded in the audit log.
    JobRecorded {
        /// The job.
        job_id: String,
        /// The audit entry that records it.
        audit_seq: i64,
    },
    /// The privacy ledger's answer to a charge.
    PrivacyCharge {
        /// The training job.
        job_id: String,
        /// Charged or refused.
        outcome: PrivacyChargeOutcome,
    },
    /// Tokens of a requester's quota reserved for an online enclave ([`UsageReservation`]).
    UsageReserved {
        /// The reservation's meter, as the statement named it.
        meter: UsageMeter,
        /// Tokens granted now: what was asked, or what was left of the quota.
        granted: u64,
        /// Tokens reserved on this meter so far, by every enclave, this grant included.
        reserved_total: u64,
    },
    /// A key-broker key was released to the enclave ([`KeyReleaseResponse`]).
    KeyReleased {
        /// The envelope key id of the released key.
        key_id: Hex,
        /// The audit entry that records the release.
        audit_seq: i64,
        /// [`release_context_digest`] of the release.
        context_digest: Hex,
    },
    /// Requests taken from a requester's per-minute allowance for an online enclave
    /// ([`RequestReservation`]).
    RequestsReserved {
        /// The reservation's meter, as the statement named it.
        meter: UsageMeter,
        /// Requests granted now: what was asked, or what the allowance holds (possibly 0).
        granted: u32,
    },
}

/// Which count a reservation goes to: one requester of one model version of one owner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageMeter {
    /// The model owner's party public key (who signed the serving policy).
    pub model_owner: String,
    /// The model, `name@version`.
    pub model: String,
    /// The requester's party public key.
    pub requester: String,
}

/// What an online enclave signs (with its receipt key) to reserve `tokens` of a requester's
/// quota before it serves them, so that the count lives at the attestation service and a worker
/// restart (which the host controls) does not reset it. Tokens reserved but not used when an
/// enclave ends count as used.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageReservation {
    /// A random id the enclave draws for this reservation (at least 16 random bytes, hex): the
    /// service accepts each id once, so a captured statement cannot be spent again.
    pub id: String,
    /// The count it goes to.
    pub meter: UsageMeter,
    /// Tokens asked for.
    pub tokens: u64,
    /// The requester's quota, as the owner's signed serving policy sets it.
    pub quota: u64,
}

/// What an online enclave signs (with its receipt key) to take `requests` from a requester's
/// per-minute allowance before it admits them. The allowance is a token bucket kept at the
/// attestation service (capacity `per_minute`, refilled at `per_minute` a minute), shared by every
/// enclave of the instance: a worker restart, or a second worker, does not hand the requester a
/// fresh minute. Requests taken but not used when an enclave ends count as used.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestReservation {
    /// A random id the enclave draws for this reservation (at least 16 random bytes, hex): the
    /// service accepts each id once, so a captured statement cannot be spent again.
    pub id: String,
    /// The count it goes to.
    pub meter: UsageMeter,
    /// Requests asked for (1 to `per_minute`).
    pub requests: u32,
    /// The requester's rate, as the owner's signed serving policy sets it.
    pub per_minute: u32,
}

/// The body of an enclave-facing answer: a [`ServiceAnswer`] as a compact JWS.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedAnswer {
    /// The JWS.
    pub answer: String,
}

/// `GET /v1/instance` response: what a relying party needs to check results of this instance.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InstanceInfo {
    /// Instance name.
    pub name: String,
    /// PEM of the instance CA that issues enclave certificates.
    pub ca_certificate_pem: String,
    /// The JWKS that verifies EAR tokens.
    pub jwks: serde_json::Value,
    /// Id and version of the appraisal policy in force.
    pub policy_id: String,
}

/// `GET /v1/identity` response from an enclave worker.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IdentityResponse {
    /// PEM: the enclave certificate, then the instance CA certificate.
    pub certificate_chain_pem: String,
    /// The EAR attestation result the certificate was issued with.
    pub ear: String,
    /// The runtime data bound into the enclave's evidence.
    pub runtime_data: RuntimeData,
}

/// `PUT /v1/objects/{id}` response.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ObjectStored {
    /// Object id.
    pub object_id: String,
    /// SHA-256 of the stored bytes.
    pub sha256: Hex,
    /// Size in bytes.
    pub size: u64,
}

/// `POST /v1/jobs` request.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SubmitJob {
    /// The job.
    pub spec: JobSpec,
    /// Compact JWS grants, one per input owner.
    pub grants: Vec<String>,
}

/// `POST /v1/jobs` response.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobDone {
    /// Job id.
    pub job_id: String,
    /// The sealed outputs.
    pub outputs: Vec<ReceiptOutput>,
    /// The receipt, a compact JWS signed with the enclave's receipt key.
    pub receipt: String,
}

/// The body of every error response: a fixed public message per error kind.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Machine-readable error code.
    pub code: String,
    /// A message a user can act on; never contains secrets or internal detail.
    pub message: String,
}

/// The error code (HTTP 409) of a key release refused because the collateral the attestation
/// result was appraised against has changed since: the enclave should attest again, once, and ask
/// with the new result.
pub const COLLATERAL_CHANGED: &str = "collateral_changed";

/// The error code (HTTP 409) of an answer the service will not give because its audit log was
/// altered in its database: it signs no checkpoint over a log it did not write, so nothing that
/// must be on the record (a key release, a job record, a privacy charge) is answered.
pub const AUDIT_LOG_ALTERED: &str = "audit_log_altered";

/// The error code (HTTP 409) of a request whose `after` names an audit checkpoint the service's
/// log does not hold: the log was rolled back or altered, or the request is not an enclave's.
pub const UNKNOWN_CHECKPOINT: &str = "unknown_checkpoint";

/// What an enclave states when it has checked every owner's grant for a job and is about to run
/// it: signed by the enclave's receipt key (the `receipt_pk` bound in its evidence).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobAuthorized {
    /// The job.
    pub job_id: String,
    /// Its digest, as the grants name it.
    pub job_digest: Hex,
    /// The inputs the grants authorise (objects, ciphertext digests, owners).
    pub inputs: Vec<InputRef>,
    /// Who the outputs are sealed to.
    pub output_recipients: Vec<String>,
}

/// `POST /v1/instances/{id}/jobs` request: record a job authorization in the audit log (also the
/// body of a privacy charge). Answered with a [`SignedAnswer`].
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordJob {
    /// The enclave's EAR attestation result from this instance.
    pub ear: String,
    /// A [`JobAuthorized`] as a compact JWS by the receipt key the EAR's `cpu0` runtime data binds.
    pub statement: String,
    /// 16 or more random bytes the enclave drew for this request (unpadded base64url), so that
    /// an answer to it answers nothing else.
    pub nonce: String,
    /// The latest signed checkpoint the enclave holds for the same job (from an earlier
    /// answer): the answer's checkpoint is then signed only if the log still continues from it,
    /// so that it covers the job's earlier entries too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<CheckpointRef>,
}

/// What an enclave asks the attestation service's privacy ledger to charge before a training
/// job's first step (signed as a compact JWS, `what = "privacy charge"`, by the receipt key the
/// EAR's `cpu0` runtime data binds; sent as a [`RecordJob`] to
/// `POST /v1/instances/{id}/privacy-charges`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PrivacyChargeStatement {
    /// The training job.
    pub job_id: String,
    /// What it spends on each of its data sets.
    pub charges: Vec<crate::job::PrivacyCharge>,
}

/// `POST /v1/instances/{id}/privacy-charges` response: every charge recorded, or none because a
/// data owner's budget refuses one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum PrivacyChargeOutcome {
    /// Recorded; each data set's account after the job.
    Charged {
        /// In the order of the statement's charges.
        accounts: Vec<crate::job::PrivacyAccount>,
        /// The audit entry that records the charges (for a replay: the replay).
        audit_seq: i64,
        /// The receipt key of the enclave whose request made the charge.
        charged_by: String,
        /// Whether the job had been charged before: nothing was charged now, and `accounts` are
        /// the first outcome. An enclave runs a job only on a charge its own request made, once.
        replay: bool,
    },
    /// Refused: nothing recorded, the job must not run.
    Refused {
        /// The data set whose budget refuses the job.
        object_id: String,
        /// Why.
        reason: String,
        /// The audit entry that records the refusal.
        audit_seq: i64,
    },
}

/// What a data owner signs (compact JWS, `what = "data set registration"`) to register a sealed
/// data set as its own: the privacy ledger then charges the data set only with that owner's
/// grants.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetRegistration {
    /// SHA-256 of the sealed data set.
    pub sha256: Hex,
    /// The object id the owner gives it.
    pub object_id: String,
}

/// `POST /v1/datasets` request.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterDataset {
    /// The owner's party public key (`cloister-es256:…`).
    pub owner: String,
    /// A [`DatasetRegistration`] signed by `owner`.
    pub statement: String,
}

/// `POST /v1/datasets` response: the registration in force.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetRegistered {
    /// SHA-256 of the sealed data set.
    pub sha256: Hex,
    /// Its owner.
    pub owner: String,
    /// Its object id.
    pub object_id: String,
    /// When it was first registered (Unix seconds).
    pub registered_at: i64,
    /// The service's word for it: a [`RegistrationAnswer`] signed as [`REGISTRATION_ANSWER`]
    /// with the service signing key. The owner checks it with the key of the service the
    /// enclave is pinned to, so a relay that shows one service's key and registers at another
    /// is caught (red team, round 9).
    pub answer: String,
}

/// What a [`DatasetRegistered::answer`] is signed as.
pub const REGISTRATION_ANSWER: &str = "data set registered";

/// The claims of a [`DatasetRegistered::answer`]: the registration as recorded, and the
/// SHA-256 of the owner's statement it answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrationAnswer {
    /// SHA-256 of the sealed data set.
    pub sha256: Hex,
    /// Its owner.
    pub owner: String,
    /// Its object id.
    pub object_id: String,
    /// When it was first registered (Unix seconds).
    pub registered_at: i64,
    /// SHA-256 of the registration statement (the JWS text) this answers.
    pub statement_sha256: Hex,
}

/// What a data or model owner signs to revoke its grants for one job: from then on the service
/// records no authorization and charges no privacy for a job with that digest using the
/// owner's inputs, so no worker starts it (workers record a job before running it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantRevocation {
    /// The digest of the job whose grants are revoked, as the grants name it.
    pub job_digest: Hex,
}

/// `POST /v1/grants/revoke` request.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeGrant {
    /// The owner's party public key (`cloister-es256:…`).
    pub owner: String,
    /// A [`GrantRevocation`] signed by `owner`.
    pub statement: String,
}

/// `POST /v1/grants/revoke` response: the revocation in force.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantRevoked {
    /// The owner whose grants are revoked.
    pub owner: String,
    /// The job digest they were for.
    pub job_digest: Hex,
    /// When they were first revoked (Unix seconds).
    pub revoked_at: i64,
}

/// What the service signs an owner sign-in challenge as.
pub const OWNER_CHALLENGE: &str = "owner sign-in challenge";
/// What a data owner signs, with its party key, to sign in to the console.
pub const OWNER_SIGN_IN: &str = "owner sign-in";
/// What the service signs an owner session token as.
pub const OWNER_SESSION: &str = "owner session";

/// `POST /v1/owners/challenge` response: a challenge for a data owner to sign with its party
/// key (`cloister owner sign-in`), so that a party that holds a signing key, not a service
/// token, can read what the service keeps about its data sets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnerChallenge {
    /// The challenge: a token signed by the service as [`OWNER_CHALLENGE`] over a fresh nonce.
    pub challenge: String,
    /// SHA-256 of the service signing key: the service the owner signs in to.
    pub service_key_sha256: Hex,
    /// Unix seconds after which the challenge is refused.
    pub expires_at: i64,
}

/// The claims of an [`OwnerChallenge::challenge`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnerChallengeClaims {
    /// A fresh random nonce (answered once). Not `nonce`: signed tokens reserve that name.
    pub challenge_nonce: String,
}

/// What a data owner signs as [`OWNER_SIGN_IN`]: the challenge it answers and the service it
/// signs in to, so the statement is good for one sign-in at one service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnerSignInStatement {
    /// SHA-256 of the challenge text.
    pub challenge_sha256: Hex,
    /// SHA-256 of the service signing key (the fingerprint the owner pins).
    pub service_key_sha256: Hex,
}

/// `POST /v1/owners/sessions` request.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnerSignIn {
    /// The owner's party public key (`cloister-es256:…`).
    pub owner: String,
    /// The challenge, as the service gave it.
    pub challenge: String,
    /// An [`OwnerSignInStatement`] signed by `owner` as [`OWNER_SIGN_IN`].
    pub statement: String,
}

/// `POST /v1/owners/sessions` response: a short-lived bearer token that reads the owner's own
/// data sets and nothing else.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnerSession {
    /// The bearer token (signed by the service as [`OWNER_SESSION`]).
    pub token: String,
    /// The owner it is for.
    pub owner: String,
    /// Unix seconds after which it is refused.
    pub expires_at: i64,
}

/// The claims of an [`OwnerSession::token`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnerSessionClaims {
    /// The owner's party public key.
    pub owner: String,
}

/// `GET /v1/owners/me` response: the data sets registered to the signed-in owner, what each
/// training job charged to their privacy accounts, and the jobs recorded over them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OwnerView {
    /// The owner's party public key.
    pub owner: String,
    /// Its registered data sets, oldest first.
    pub datasets: Vec<OwnerDataset>,
    /// The most recent jobs the service recorded with one of the owner's inputs (newest
    /// first, at most [`OWNER_VIEW_JOBS`]).
    pub jobs: Vec<OwnerJob>,
}

/// How many recorded jobs [`OwnerView::jobs`] lists at most.
pub const OWNER_VIEW_JOBS: usize = 200;

/// One registered data set in an [`OwnerView`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OwnerDataset {
    /// SHA-256 of the sealed data set.
    pub sha256: Hex,
    /// Its object id.
    pub object_id: String,
    /// When it was registered (Unix seconds).
    pub registered_at: i64,
    /// The privacy charges on it, oldest first.
    pub charges: Vec<OwnerCharge>,
}

/// One training job's privacy charge on a data set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OwnerCharge {
    /// The job.
    pub job_id: String,
    /// Its digest (what the owner's grant named).
    pub job_digest: String,
    /// The instance whose enclave charged it.
    pub instance_id: String,
    /// When (Unix seconds).
    pub charged_at: i64,
    /// The data set's account after the charge (this job's and the composed total (ε, δ));
    /// absent for charges recorded before the service kept it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<crate::job::PrivacyAccount>,
    /// The budget the owner's grant set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<crate::job::PrivacyBudget>,
}

/// A job recorded with one of the owner's inputs (an `job.authorized` audit record).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OwnerJob {
    /// The job.
    pub job_id: String,
    /// When it was recorded (Unix seconds).
    pub at: i64,
    /// `success` (recorded, so a worker ran it) or `refused` (a revoked grant).
    pub outcome: String,
    /// The audit record's sequence number.
    pub audit_seq: i64,
    /// The instance, job digest, inputs, measurement and TEE, as recorded.
    pub detail: serde_json::Value,
}

/// `POST /v1/receipts/explain` response: a batch receipt (a done job's status, as
/// `cloister job status --json` prints it) checked and explained by the service that certified
/// its signer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReceiptExplanation {
    /// Whether every check passed.
    pub verified: bool,
    /// Each check, in order, with what it found; the first failure ends the list.
    pub checks: Vec<ReceiptCheck>,
    /// The receipt's claims, once its signature verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<serde_json::Value>,
    /// What the reader must weigh even when every check passed (a simulated TEE above all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// One check of a [`ReceiptExplanation`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptCheck {
    /// What was checked.
    pub check: String,
    /// Whether it passed.
    pub passed: bool,
    /// What it found, in words.
    pub detail: String,
}

/// `GET /v1/service-key` response: the attestation service's envelope public key, to which
/// instance bundles exported for this service are sealed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceKeyDocument {
    /// The service's public key, in the sealed envelope's text form (`cloister-hpke-x25519:…`).
    pub public_key: String,
    /// The envelope key id of `public_key` (first 16 bytes of SHA-256 of the raw key).
    pub key_id: Hex,
    /// The service's signing key (`cloister-es256:…`): it signs the answers enclaves act on,
    /// the audit log's checkpoints and the instance bundles the service exports.
    pub signing_key: String,
    /// SHA-256 of `signing_key`'s SEC1 point: what workers bind into their evidence and
    /// auditors pin.
    pub signing_key_sha256: Hex,
    /// When the service runs in a TEE: its evidence, whose `runtime_data.hpke_pk` is
    /// `public_key`. Absent for a service outside a TEE; exporting to such a service needs the
    /// exporter's explicit consent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation: Option<UnifiedEvidence>,
}

/// What a key release is for, as the requester states it. Every field is optional, reaches the
/// owner's release policy as `input.context`, and is bound into the wrap of the released key
/// (see [`release_context_digest`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseContext {
    /// The job the key is needed for.
    #[serde(default)]
    pub job_id: Option<String>,
    /// Who asks (a worker name, a party).
    #[serde(default)]
    pub requester: Option<String>,
    /// Why, in words.
    #[serde(default)]
    pub purpose: Option<String>,
}

/// `POST /v1/keys/release` request: release a key-broker key to the enclave that the EAR token
/// attests.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyReleaseRequest {
    /// The envelope key id (16 bytes) of the broker key, as listed in the envelope's kind-2
    /// recipient entry.
    pub key_id: Hex,
    /// The enclave's EAR attestation result (a signed JWT from an instance the key accepts).
    pub ear: String,
    /// What the release is for.
    #[serde(default)]
    pub context: ReleaseContext,
    /// A fresh random value of the enclave's (base64url, 16 to 64 bytes), so that the signed
    /// answer ([`KeyReleaseResponse::answer`], over this body's digest) answers this request
    /// only, and so that the service can refuse the request when it comes again. Required.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub nonce: String,
    /// The latest signed checkpoint the enclave holds for the same job, as in
    /// [`RecordJob::after`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<CheckpointRef>,
    /// The enclave's signature over this request: a [`ReleaseProof`] of it, signed as
    /// [`RELEASE_PROOF`] with the receipt key bound in the EAR token's `cpu0` (see
    /// [`ReleaseProof::of`]). Without it the broker refuses the request as unauthenticated, so
    /// whoever captured a token cannot send requests of their own making with it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub proof: String,
}

/// Whether `nonce` has the form of an enclave's request nonce: 16 to 64 bytes in unpadded
/// base64url (what [`KeyReleaseRequest::nonce`] and [`RecordJob::nonce`] must be).
pub fn is_request_nonce(nonce: &str) -> bool {
    (22..=86).contains(&nonce.len()) && Base64Url::parse(nonce).is_ok()
}

/// What a [`KeyReleaseRequest::proof`] is signed as.
pub const RELEASE_PROOF: &str = "key release request";

/// How long a [`KeyReleaseRequest::proof`] is valid: the request is sent at once, so this covers
/// a slow network and clock skew, no more. The service also refuses a second use of the same
/// request nonce while the proof would still be valid.
pub const RELEASE_PROOF_VALIDITY: std::time::Duration = std::time::Duration::from_secs(120);

/// What an enclave signs to ask for a key: every field of its [`KeyReleaseRequest`] but the
/// proof, the token by digest. The host relays the request and can replay it, but cannot change
/// its context or nonce, or attach the enclave's token to a request of its own: red team round
/// 7 replayed a captured token with fresh nonces and large context fields, and each replay was
/// an audited release the enclave never asked for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseProof {
    /// The key asked for.
    pub key_id: Hex,
    /// SHA-256 of the EAR token, as sent.
    pub ear_sha256: Hex,
    /// What the release is for.
    pub context: ReleaseContext,
    /// The request's nonce (not named `nonce`: the JWT claims set the proof travels in has a
    /// registered claim of that name).
    pub request_nonce: String,
    /// The request's `after`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<CheckpointRef>,
}

impl ReleaseProof {
    /// The proof `request` needs (its own `proof` field aside).
    pub fn of(request: &KeyReleaseRequest) -> Self {
        use sha2::{Digest as _, Sha256};
        ReleaseProof {
            key_id: request.key_id.clone(),
            ear_sha256: Hex(Sha256::digest(request.ear.as_bytes()).to_vec()),
            context: request.context.clone(),
            request_nonce: request.nonce.clone(),
            after: request.after.clone(),
        }
    }
}

/// `POST /v1/keys/release` response.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeyReleaseResponse {
    /// The envelope key id of the released key.
    pub key_id: Hex,
    /// The broker's id for the key (`kb_…`).
    pub broker_key: String,
    /// The key's 32 secret bytes HPKE-wrapped to the enclave's `hpke_pk` (80 bytes), with the
    /// release context digest as associated data.
    pub wrapped: Base64Url,
    /// [`release_context_digest`] of this release: the associated data of the wrap.
    pub context_digest: Hex,
    /// The service's signed answer ([`ServiceAnswer`] with [`Answer::KeyReleased`], over the
    /// SHA-256 of the request body as received): its checkpoint covers this release's audit
    /// entry (signed before the key leaves), so whoever keeps it detects a log truncated or
    /// rolled back behind the release (`audit verify --expect-checkpoint SEQ:HASH`).
    pub answer: String,
}

/// Domain separation tag of [`release_context_digest`].
pub const RELEASE_CONTEXT_DOMAIN: &[u8] = b"cloister key-broker release context v1";

/// The digest that binds a released key to one release: SHA-256 over
///
/// ```text
/// "cloister key-broker release context v1" ‖ 0x00
/// ‖ lp(instance_id) ‖ lp(key_id) ‖ opt(job_id) ‖ opt(requester) ‖ opt(purpose)
/// ```
///
/// where `lp(x)` = BE32(length of x in bytes) ‖ x, `opt(None)` = 0x00 and `opt(Some(s))` = 0x01 ‖
/// lp(s). The key broker uses it as the HPKE associated data of the wrap, and the enclave
/// recomputes it from its own request, so a wrapped key only opens for the instance, key and
/// context it was released for.
pub fn release_context_digest(
    instance_id: &str,
    key_id: &[u8],
    context: &ReleaseContext,
) -> [u8; 32] {
    use sha2::{Digest as _, Sha256};

    fn lp(hasher: &mut Sha256, bytes: &[u8]) {
        // Request bodies are far below 4 GiB; saturating keeps the encoding total anyway.
        let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        hasher.update(len.to_be_bytes());
        hasher.update(bytes);
    }
    fn opt(hasher: &mut Sha256, value: Option<&String>) {
        match value {
            None => hasher.update([0u8]),
            Some(s) => {
                hasher.update([1u8]);
                lp(hasher, s.as_bytes());
            }
        }
    }

    let mut hasher = Sha256::new();
    hasher.update(RELEASE_CONTEXT_DOMAIN);
    hasher.update([0u8]);
    lp(&mut hasher, instance_id.as_bytes());
    lp(&mut hasher, key_id);
    opt(&mut hasher, context.job_id.as_ref());
    opt(&mut hasher, context.requester.as_ref());
    opt(&mut hasher, context.purpose.as_ref());
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context() -> ReleaseContext {
        ReleaseContext {
            job_id: Some("job-1".into()),
            requester: Some("worker-a".into()),
            purpose: None,
        }
    }

    #[test]
    fn release_request_round_trips_and_refuses_unknown_fields() {
        let text = r#"{"key_id":"000102030405060708090a0b0c0d0e0f","ear":"a.b.c",
            "context":{"job_id":"job-1","requester":"worker-a"}}"#;
        let request: KeyReleaseRequest = serde_json::from_str(text).unwrap();
        assert_eq!(request.key_id.as_bytes().len(), 16);
        assert_eq!(request.context, context());
        let minimal: KeyReleaseRequest =
            serde_json::from_str(r#"{"key_id":"00","ear":"t"}"#).unwrap();
        assert_eq!(minimal.context, ReleaseContext::default());
        assert!(
            serde_json::from_str::<KeyReleaseRequest>(r#"{"key_id":"00","ear":"t","x":1}"#)
                .is_err()
        );
        assert!(
            serde_json::from_str::<KeyReleaseRequest>(
                r#"{"key_id":"00","ear":"t","context":{"jobid":"j"}}"#
            )
            .is_err()
        );
    }

    #[test]
    fn release_context_digest_is_fixed_and_separates_every_field() {
        let key_id = [7u8; 16];
        let base = release_context_digest("in_1", &key_id, &context());
        // A known answer, so the encoding cannot drift silently between broker and enclave.
        let mut expected = Vec::new();
        expected.extend_from_slice(RELEASE_CONTEXT_DOMAIN);
        expected.push(0);
        expected.extend_from_slice(&4u32.to_be_bytes());
        expected.extend_from_slice(b"in_1");
        expected.extend_from_slice(&16u32.to_be_bytes());
        expected.extend_from_slice(&key_id);
        expected.extend_from_slice(&[1, 0, 0, 0, 5]);
        expected.extend_from_slice(b"job-1");
        expected.extend_from_slice(&[1, 0, 0, 0, 8]);
        expected.extend_from_slice(b"worker-a");
        expected.push(0);
        use sha2::Digest as _;
        assert_eq!(base, <[u8; 32]>::from(sha2::Sha256::digest(&expected)));

        let mut variants = vec![
            release_context_digest("in_2", &key_id, &context()),
            release_context_digest("in_1", &[8u8; 16], &context()),
            release_context_digest("in_1", &key_id, &ReleaseContext::default()),
        ];
        let mut c = context();
        c.purpose = Some(String::new());
        variants.push(release_context_digest("in_1", &key_id, &c));
        // Moving a value from one field to another changes the digest.
        let swapped = ReleaseContext {
            job_id: Some("worker-a".into()),
            requester: Some("job-1".into()),
            purpose: None,
        };
        variants.push(release_context_digest("in_1", &key_id, &swapped));
        for v in &variants {
            assert_ne!(*v, base);
        }
    }
}
