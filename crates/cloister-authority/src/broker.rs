//! The key broker's release decision: given a broker key (its secret, release policy, accepted
//! instances and revocation state), the token keys of the instance that issued an EAR token,
//! and a [`KeyReleaseRequest`], decide whether to release the key, and if so wrap its secret to
//! the attested enclave's HPKE key.
//!
//! Pure: no storage, no clock (time is a parameter). The service looks up the key and the
//! instance's token keys, calls [`release`] with its collateral cache, and records the outcome in
//! the audit log.
//!
//! Checks, in this order, each with its own [`ReleaseError`]: the request names this key and its
//! context fits the size limits; the instance is one the key accepts; the EAR token names a token
//! key (`kid`) of that instance, verifies with it and is within its validity window, and is an EAR
//! of this profile; the request's [`ReleaseProof`] is signed by the receipt key the token's `cpu0`
//! binds and signs this very request — only now is the requester known to be an enclave that
//! instance attested ([`ReleaseError::after_authentication`]); the key is not revoked; every appraisal is `affirming`
//! or `warning`; every appraisal's collateral record (`cloister.collateral`) equals the record the
//! service's collateral cache gives now, so a platform whose TCB status the vendor changed since
//! (revoked, out of date) gets nothing on a result issued before; `cpu0` is evidence of isolated
//! compute (a PSA or Android result attests a device's key, never an enclave, and gets no key
//! whatever the release policy says: [`ReleaseError::NotAnEnclave`]) and its runtime data carries
//! a usable `hpke_pk`; the key's release policy allows. Then the secret is wrapped (HPKE, see
//! `cloister_seal::wrap_secret_key`) to that `hpke_pk` with the release context digest as
//! associated data. The enclave recovers it with `cloister_client::open_released_key`.

use std::collections::BTreeMap;

use cloister_policy::{ReleaseInput, ReleasePolicy};
use cloister_seal::{KEY_ID_LEN, KeyError, RecipientPublicKey, RecipientSecretKey, SealError};
use cloister_sign::{AnyVerifyingKey, SignError, peek_key_id};
use cloister_types::api::{
    KeyReleaseRequest, KeyReleaseResponse, RELEASE_PROOF, RELEASE_PROOF_VALIDITY, ReleaseContext,
    ReleaseProof,
};
use cloister_types::ear::EAR_PROFILE;
use cloister_types::{Base64Url, EarBody, EarStatus, Hex};

use crate::collateral::CollateralCache;

/// What the EAR token is verified as (appears in signature errors).
const EAR_WHAT: &str = cloister_types::ear::EAR_NAME;

/// Longest value accepted for each field of a [`ReleaseContext`], in bytes.
pub const MAX_CONTEXT_FIELD_LEN: usize = 1024;

/// A broker key as the release decision needs it.
#[derive(Debug)]
pub struct BrokerKey<'a> {
    /// The broker's id for the key (`kb_…`).
    pub id: &'a str,
    /// The owner's name for the key.
    pub name: &'a str,
    /// The key's secret (unsealed from storage for this decision only).
    pub secret: &'a RecipientSecretKey,
    /// The owner's release policy.
    pub policy: &'a ReleasePolicy,
    /// Ids of the attestation instances whose results the key accepts.
    pub instances: &'a [String],
    /// Whether the owner revoked the key; a revoked key is never released.
    pub revoked: bool,
}

/// The token-verifying keys of one instance, by key id (`kid`): the current key and retired keys
/// still kept for tokens issued before a rotation.
#[derive(Clone, Debug, Default)]
pub struct TokenKeys {
    keys: BTreeMap<String, AnyVerifyingKey>,
}

impl TokenKeys {
    /// No keys.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the key for `kid`.
    pub fn insert(&mut self, kid: impl Into<String>, key: impl Into<AnyVerifyingKey>) {
        self.keys.insert(kid.into(), key.into());
    }

    /// Adds the key for `kid` from its public JWK (as stored in `instance_keys.public_jwk`).
    pub fn insert_jwk(&mut self, kid: &str, jwk: &serde_json::Value) -> Result<(), SignError> {
        self.insert(kid, AnyVerifyingKey::from_jwk(jwk)?);
        Ok(())
    }

    /// The key for `kid`.
    pub fn get(&self, kid: &str) -> Option<&AnyVerifyingKey> {
        self.keys.get(kid)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key ids, in order.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }
}

impl FromIterator<(String, AnyVerifyingKey)> for TokenKeys {
    fn from_iter<I: IntoIterator<Item = (String, AnyVerifyingKey)>>(iter: I) -> Self {
        Self { keys: iter.into_iter().collect() }
    }
}

/// The token key id (`kid`) an EAR token names, read without verifying anything: use it only to
/// find which instance's keys to verify with.
pub fn token_kid(ear: &str) -> Option<String> {
    peek_key_id(ear)
}

/// Why a key was not released. Every message says what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReleaseError {
    /// The request's key id is not 16 bytes.
    #[error("key_id must be the 16-byte envelope key id (32 hex digits), got {len} bytes")]
    BadKeyId {
        /// The length given.
        len: usize,
    },
    /// The request names another key than the one the decision was asked about.
    #[error(
        "the request asks for envelope key {requested}, but broker key {broker_key} has key id \
         {actual}"
    )]
    KeyMismatch {
        /// The key id requested.
        requested: String,
        /// The broker key's id.
        broker_key: String,
        /// The broker key's envelope key id.
        actual: String,
    },
    /// A context field is too long.
    #[error("context.{field} is {len} bytes, at most {max} allowed")]
    ContextTooLong {
        /// Which field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The request's [`KeyReleaseRequest::proof`] is missing, or is not the attested enclave's
    /// signature over this request. Refused like an unauthenticated request: a token alone, which
    /// the host relays and can capture, proves nothing about who sent the request.
    #[error(
        "the release request is not signed by the attested enclave ({reason}); sign a \
         ReleaseProof of the request with the receipt key the evidence binds"
    )]
    ProofRefused {
        /// What is wrong with it.
        reason: String,
    },
    /// The owner revoked the key.
    #[error("broker key {broker_key} was revoked by its owner; it is no longer released")]
    Revoked {
        /// The broker key's id.
        broker_key: String,
    },
    /// The token comes from an instance the key does not accept.
    #[error(
        "broker key {broker_key} does not accept attestation results of instance {instance}; \
         attest with an instance the key's owner lists"
    )]
    InstanceNotAccepted {
        /// The broker key's id.
        broker_key: String,
        /// The instance that issued the token.
        instance: String,
    },
    /// The token is not a valid, current result of an instance the key accepts: its key id is
    /// none of theirs, or it is and the token does not verify. One message for every such case,
    /// naming neither an instance nor the broker key, so an unauthenticated caller learns
    /// nothing about which instances a key lists (red team, round 7: a token under a listed
    /// instance's key id used to get that instance's verification error instead).
    #[error(
        "the key broker does not accept this request: its attestation result is not a valid, \
         current result of an instance the key's owner lists, or the request is not signed by \
         that enclave (proof, see ReleaseProof); attest again with one of those instances and \
         sign each request with the receipt key the evidence binds"
    )]
    IssuerNotAccepted {
        /// The broker key's id.
        broker_key: String,
    },
    /// The token's header has no `kid`, or the token is not a compact JWS.
    #[error(
        "the EAR token names no token key (kid) in its header; send the token exactly as the \
         attestation service issued it"
    )]
    TokenNoKeyId,
    /// The token names a key that is not (or no longer) one of the instance's token keys.
    #[error(
        "the EAR token is signed with key {kid}, which is not a token key of instance {instance} \
         (wrong instance, or a key retired and no longer kept); attest again for a fresh token"
    )]
    UnknownTokenKey {
        /// The key id in the token.
        kid: String,
        /// The instance.
        instance: String,
    },
    /// The token's signature, issuer or validity window is wrong.
    #[error("the EAR token is not valid now (attest again for a fresh token): {0}")]
    TokenInvalid(#[source] SignError),
    /// The token is not an EAR of the profile this service issues.
    #[error(
        "the token is not a Cloister EAR: its eat_profile is {found:?}, expected {EAR_PROFILE:?}"
    )]
    WrongProfile {
        /// The profile in the token.
        found: String,
    },
    /// A component of the attestation result is not trustworthy.
    #[error(
        "the attestation result's {submod} is {status}, not affirming or warning; no key is \
         released to it"
    )]
    NotTrustworthy {
        /// The submod (`cpu0`, `gpu0`, …).
        submod: String,
        /// Its status.
        status: String,
    },
    /// The collateral an appraisal of the result was made with is no longer the service's: an
    /// item changed, appeared or disappeared. The enclave should attest again, to be appraised
    /// against the current collateral (which may refuse its platform).
    #[error(
        "the attestation result's {submod} was appraised against vendor collateral that has \
         changed since ({}); attest again to be appraised against the current collateral",
        changes.join("; ")
    )]
    CollateralChanged {
        /// The submod (`cpu0`, `gpu0`, …).
        submod: String,
        /// What changed, one item each.
        changes: Vec<String>,
    },
    /// The attestation result has no `cpu0` appraisal, so no enclave key is bound: none to wrap
    /// to, and none that could have signed the request (so it is refused as unauthenticated).
    #[error("the attestation result has no cpu0 appraisal, so it binds no enclave key")]
    NoCpu0,
    /// The result may not act as an enclave (a device key, an unverified virtCCA platform):
    /// keys are released only to TEEs that isolate the code holding them.
    #[error("{0}")]
    NotAnEnclave(#[from] cloister_types::NotAnEnclave),
    /// The enclave's `hpke_pk` is not an HPKE public key.
    #[error("the enclave's hpke_pk in the attested runtime data is unusable: {0}")]
    BadEnclaveKey(#[source] KeyError),
    /// The owner's release policy refused.
    #[error("the release policy of broker key {broker_key} refused: {}", reasons.join("; "))]
    PolicyDenied {
        /// The broker key's id.
        broker_key: String,
        /// The policy's reasons.
        reasons: Vec<String>,
    },
    /// Wrapping the key to the enclave failed (for example a low-order `hpke_pk`).
    #[error("could not wrap the key to the enclave's hpke_pk: {0}")]
    Wrap(#[source] SealError),
}

impl ReleaseError {
    /// Whether the refusal came after the requester proved to be an enclave an accepted instance
    /// attested (its EAR token verified): such refusals concern the key's owner and are audited.
    /// Refusals before that can come from anyone, as often as they like, and leave no record.
    pub fn after_authentication(&self) -> bool {
        matches!(
            self,
            ReleaseError::Revoked { .. }
                | ReleaseError::NotTrustworthy { .. }
                | ReleaseError::CollateralChanged { .. }
                | ReleaseError::NotAnEnclave(_)
                | ReleaseError::BadEnclaveKey(_)
                | ReleaseError::PolicyDenied { .. }
                | ReleaseError::Wrap(_)
        )
    }
}

/// A release that happened, with the policy's reasons (for the audit record).
#[derive(Clone, Debug)]
pub struct Released {
    /// What goes back to the enclave.
    pub response: KeyReleaseResponse,
    /// The release policy's reasons (often empty when it allows).
    pub policy_reasons: Vec<String>,
    /// The `cpu0` measurement of the enclave the key went to, lowercase hex.
    pub measurement: String,
    /// The enclave HPKE key the secret was wrapped to (text form).
    pub enclave_key: String,
}

/// The associated data of a release wrap: see
/// [`cloister_types::api::release_context_digest`] (the enclave recomputes it from its request).
pub fn release_context_digest(
    instance_id: &str,
    key_id: &[u8],
    context: &ReleaseContext,
) -> [u8; 32] {
    cloister_types::api::release_context_digest(instance_id, key_id, context)
}

/// Decides a release and, if every check passes, wraps the key to the enclave. `collateral` is
/// the service's collateral cache, whose current records the result's must equal. See the module
/// documentation for the checks and their order.
pub fn release(
    instance_id: &str,
    keys: &TokenKeys,
    key: &BrokerKey<'_>,
    collateral: &CollateralCache,
    request: &KeyReleaseRequest,
    now: u64,
) -> Result<KeyReleaseResponse, ReleaseError> {
    release_detailed(instance_id, keys, key, collateral, request, now).map(|r| r.response)
}

/// [`release`], also returning what the audit record needs.
pub fn release_detailed(
    instance_id: &str,
    keys: &TokenKeys,
    key: &BrokerKey<'_>,
    collateral: &CollateralCache,
    request: &KeyReleaseRequest,
    now: u64,
) -> Result<Released, ReleaseError> {
    check_request(key, request)?;
    if !key.instances.iter().any(|i| i == instance_id) {
        return Err(ReleaseError::InstanceNotAccepted {
            broker_key: key.id.to_owned(),
            instance: instance_id.to_owned(),
        });
    }
    let kid = peek_key_id(&request.ear).ok_or(ReleaseError::TokenNoKeyId)?;
    let verifying = keys.get(&kid).ok_or_else(|| ReleaseError::UnknownTokenKey {
        kid: kid.clone(),
        instance: instance_id.to_owned(),
    })?;
    let signed = verifying
        .verify::<EarBody>(EAR_WHAT, &request.ear, now)
        .map_err(ReleaseError::TokenInvalid)?;
    let ear = &signed.claims;
    if ear.eat_profile != EAR_PROFILE {
        return Err(ReleaseError::WrongProfile { found: ear.eat_profile.clone() });
    }
    check_proof(request, ear, now)?;
    // From here on the requester is an enclave the accepted instance attested.
    if key.revoked {
        return Err(ReleaseError::Revoked { broker_key: key.id.to_owned() });
    }
    for (name, submod) in &ear.submods {
        if !matches!(submod.status, EarStatus::Affirming | EarStatus::Warning) {
            return Err(ReleaseError::NotTrustworthy {
                submod: name.clone(),
                status: format!("{:?}", submod.status).to_lowercase(),
            });
        }
    }
    for (name, submod) in &ear.submods {
        let current = collateral.record(submod.claims.tee, &submod.collateral.needs);
        let changes = submod.collateral.changes(&current);
        if !changes.is_empty() {
            return Err(ReleaseError::CollateralChanged { submod: name.clone(), changes });
        }
    }
    let cpu0 = ear.submods.get("cpu0").ok_or(ReleaseError::NoCpu0)?;
    cpu0.claims.check_enclave()?;
    let enclave_key = RecipientPublicKey::from_text(&cpu0.runtime_data.hpke_pk)
        .map_err(ReleaseError::BadEnclaveKey)?;

    let key_id_hex = request.key_id.to_string();
    let input = ReleaseInput {
        instance_id,
        broker_key: key.id,
        key_name: key.name,
        key_id: &key_id_hex,
        ear,
        issued_at: signed.issued_at,
        expires_at: signed.expires_at,
        context: &request.context,
    }
    .to_json();
    let decision = key.policy.evaluate(&input);
    if !decision.allow {
        return Err(ReleaseError::PolicyDenied {
            broker_key: key.id.to_owned(),
            reasons: decision.reasons,
        });
    }

    let digest = release_context_digest(instance_id, request.key_id.as_bytes(), &request.context);
    let wrapped = cloister_seal::wrap_secret_key(&enclave_key, key.secret, &digest)
        .map_err(ReleaseError::Wrap)?;
    Ok(Released {
        response: KeyReleaseResponse {
            key_id: request.key_id.clone(),
            broker_key: key.id.to_owned(),
            wrapped: Base64Url(wrapped),
            context_digest: Hex(digest.to_vec()),
            // Signed by the service once the release is on the record.
            answer: String::new(),
        },
        policy_reasons: decision.reasons,
        measurement: cpu0.claims.measurement.to_string(),
        enclave_key: enclave_key.to_text(),
    })
}

/// The request's proof: signed by the receipt key the token's `cpu0` binds, over this request, with
/// a nonce of the enclave's, for no longer than [`RELEASE_PROOF_VALIDITY`] (so that the service's
/// memory of spent nonces covers it); returns when it expires.
pub fn check_proof(
    request: &KeyReleaseRequest,
    ear: &EarBody,
    now: u64,
) -> Result<u64, ReleaseError> {
    let refused = |reason: String| ReleaseError::ProofRefused { reason };
    if request.proof.is_empty() {
        return Err(refused("the request has no proof".into()));
    }
    if !cloister_types::api::is_request_nonce(&request.nonce) {
        return Err(refused("its nonce is not 16 to 64 random bytes in base64url".into()));
    }
    // Without a cpu0 there is no enclave key to sign with: refused as unauthenticated.
    let cpu0 = ear.submods.get("cpu0").ok_or(ReleaseError::NoCpu0)?;
    let key = AnyVerifyingKey::from_text(&cpu0.runtime_data.receipt_pk)
        .map_err(|e| refused(format!("the enclave's receipt key: {e}")))?;
    let signed = key
        .verify::<ReleaseProof>(RELEASE_PROOF, &request.proof, now)
        .map_err(|e| refused(e.to_string()))?;
    if signed.expires_at.saturating_sub(signed.issued_at) > RELEASE_PROOF_VALIDITY.as_secs() {
        return Err(refused(format!(
            "it is valid for longer than {} s",
            RELEASE_PROOF_VALIDITY.as_secs()
        )));
    }
    if signed.claims != ReleaseProof::of(request) {
        return Err(refused("it signs another request".into()));
    }
    Ok(signed.expires_at)
}

/// The request's key id and context are within their limits: what the service checks before it
/// reads or writes anything for a release request.
pub fn check_request_shape(request: &KeyReleaseRequest) -> Result<(), ReleaseError> {
    let requested = request.key_id.as_bytes();
    if requested.len() != KEY_ID_LEN {
        return Err(ReleaseError::BadKeyId { len: requested.len() });
    }
    let fields = [
        ("job_id", &request.context.job_id),
        ("requester", &request.context.requester),
        ("purpose", &request.context.purpose),
    ];
    for (field, value) in fields {
        if let Some(value) = value
            && value.len() > MAX_CONTEXT_FIELD_LEN
        {
            return Err(ReleaseError::ContextTooLong {
                field,
                len: value.len(),
                max: MAX_CONTEXT_FIELD_LEN,
            });
        }
    }
    Ok(())
}

/// The request is well formed and names this key.
fn check_request(key: &BrokerKey<'_>, request: &KeyReleaseRequest) -> Result<(), ReleaseError> {
    check_request_shape(request)?;
    let requested = request.key_id.as_bytes();
    let actual = key.secret.key_id();
    if requested != actual.0.as_slice() {
        return Err(ReleaseError::KeyMismatch {
            requested: request.key_id.to_string(),
            broker_key: key.id.to_owned(),
            actual: actual.to_hex(),
        });
    }
    Ok(())
}
