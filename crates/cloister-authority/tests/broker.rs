//! The key broker's release decision against real EAR tokens, signed by a test key exactly as
//! `Authority::attest` signs them: every check refuses with its own error, and a released key
//! opens a kind-2 envelope only in the enclave it was wrapped to.

// Helpers outside #[test] functions unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use cloister_authority::broker::{
    BrokerKey, ReleaseError, TokenKeys, release, release_context_digest, release_detailed,
    token_kid,
};
use cloister_authority::collateral::{CachedItem, ItemKind};
use cloister_authority::{CollateralCache, Vendor};
use cloister_policy::ReleasePolicy;
use cloister_seal::{
    Metadata, OpenError, Recipient, RecipientSecretKey, open_to_vec, seal_to_vec_for,
    unwrap_secret_key,
};
use cloister_sign::SigningKey;
use cloister_types::api::{
    KeyReleaseRequest, RELEASE_PROOF, RELEASE_PROOF_VALIDITY, ReleaseContext, ReleaseProof,
};
use cloister_types::ear::{EAR_PROFILE, VerifierId};
use cloister_types::{
    Claims, EarAppraisal, EarBody, EarStatus, Hex, RuntimeData, TcbStatus, TeeKind,
};

const MEASUREMENT: [u8; 48] = [0x5a; 48];
const NOW: u64 = 1_800_000_000;
const TTL: Duration = Duration::from_secs(600);
const INSTANCE: &str = "in_0123456789abcdef0123456789abcdef";
const KID: &str = "ear-0011223344556677";

/// One enclave: its HPKE key pair, as a worker would generate it.
fn enclave() -> RecipientSecretKey {
    RecipientSecretKey::generate()
}

/// The enclaves' receipt key, which signs their release requests (one for every test enclave:
/// the tests that need another make their own).
fn receipt_key() -> &'static SigningKey {
    static KEY: std::sync::OnceLock<SigningKey> = std::sync::OnceLock::new();
    KEY.get_or_init(SigningKey::generate)
}

/// Signs `request`'s proof with `key` at `at`, valid for `valid_for`.
fn prove_with(request: &mut KeyReleaseRequest, key: &SigningKey, at: u64, valid_for: Duration) {
    request.proof = key.sign(RELEASE_PROOF, ReleaseProof::of(request), at, valid_for).unwrap();
}

/// Signs `request`'s proof as the enclave would, after any change to it.
fn prove(request: &mut KeyReleaseRequest) {
    prove_with(request, receipt_key(), NOW, RELEASE_PROOF_VALIDITY);
}

fn appraisal(status: EarStatus, hpke_pk: &str) -> EarAppraisal {
    EarAppraisal {
        status,
        trustworthiness_vector: BTreeMap::from([("executables".to_owned(), 2)]),
        appraisal_policy_id: "cloister-default@v1".into(),
        claims: Claims {
            tee: TeeKind::Tdx,
            measurement: Hex(MEASUREMENT.to_vec()),
            signer: None,
            product_id: None,
            svn: Some(1),
            debug: false,
            report_data: Hex(vec![0; 64]),
            tcb_status: TcbStatus::UpToDate,
            advisories: Vec::new(),
            platform_id: None,
            vendor: BTreeMap::new(),
        },
        runtime_data: RuntimeData {
            nonce: "nonce-1".into(),
            hpke_pk: hpke_pk.to_owned(),
            tls_spki_sha256: Hex(vec![7; 32]),
            receipt_pk: receipt_key().public_key().to_text(),
            extra: BTreeMap::new(),
        },
        reasons: Vec::new(),
        collateral: Default::default(),
    }
}

fn ear_body(submods: Vec<(&str, EarAppraisal)>) -> EarBody {
    EarBody {
        eat_profile: EAR_PROFILE.to_owned(),
        verifier_id: VerifierId { developer: "cloister".into(), build: "test".into() },
        eat_nonce: "nonce-1".into(),
        submods: submods.into_iter().map(|(n, s)| (n.to_owned(), s)).collect(),
        audit_checkpoint: Default::default(),
    }
}

/// Signs like `Service::attest`: the instance token key with its kid in the header.
fn sign(key: &SigningKey, kid: &str, body: &EarBody, issued_at: u64) -> String {
    let key = SigningKey::from_text(&key.to_text()).unwrap().with_key_id(kid);
    key.sign("EAR attestation result", body, issued_at, TTL).unwrap()
}

struct Fixture {
    token_key: SigningKey,
    keys: TokenKeys,
    broker_secret: RecipientSecretKey,
    policy: ReleasePolicy,
    instances: Vec<String>,
    enclave: RecipientSecretKey,
    collateral: CollateralCache,
}

impl Fixture {
    fn new() -> Self {
        let token_key = SigningKey::generate();
        let mut keys = TokenKeys::new();
        keys.insert(KID, token_key.public_key());
        Fixture {
            token_key,
            keys,
            broker_secret: RecipientSecretKey::generate(),
            policy: ReleasePolicy::new(&ReleasePolicy::template(&[Hex(MEASUREMENT.to_vec())]))
                .unwrap(),
            instances: vec!["in_other".to_owned(), INSTANCE.to_owned()],
            enclave: enclave(),
            collateral: CollateralCache::new(),
        }
    }

    fn key(&self) -> BrokerKey<'_> {
        BrokerKey {
            id: "kb_feedc0de",
            name: "hospital-a-records",
            secret: &self.broker_secret,
            policy: &self.policy,
            instances: &self.instances,
            revoked: false,
        }
    }

    fn good_ear(&self) -> String {
        let pk = self.enclave.public_key().to_text();
        let body = ear_body(vec![("cpu0", appraisal(EarStatus::Affirming, &pk))]);
        sign(&self.token_key, KID, &body, NOW - 10)
    }

    /// A request for the fixture's key with `ear`, signed by the enclave.
    fn request(&self, ear: String) -> KeyReleaseRequest {
        let mut request = KeyReleaseRequest {
            key_id: Hex(self.broker_secret.key_id().0.to_vec()),
            ear,
            context: ReleaseContext {
                job_id: Some("job-17".into()),
                requester: Some("worker-a".into()),
                purpose: Some("inference".into()),
            },
            nonce: "bm9uY2Utb2YtdGhlLWVuY2xhdmUtMDE".into(),
            after: None,
            proof: String::new(),
        };
        prove(&mut request);
        request
    }

    fn release(&self, request: &KeyReleaseRequest) -> Result<(), ReleaseError> {
        release(INSTANCE, &self.keys, &self.key(), &self.collateral, request, NOW).map(|_| ())
    }
}

#[test]
fn released_key_opens_a_kind_two_envelope_in_the_attested_enclave_only() {
    let f = Fixture::new();
    let envelope = seal_to_vec_for(
        &[Recipient::Broker(f.broker_secret.public_key())],
        &Metadata::default(),
        b"patient records",
    )
    .unwrap();
    let request = f.request(f.good_ear());
    let released =
        release_detailed(INSTANCE, &f.keys, &f.key(), &f.collateral, &request, NOW).unwrap();
    let response = &released.response;
    assert_eq!(response.key_id, request.key_id);
    assert_eq!(response.broker_key, "kb_feedc0de");
    assert_eq!(released.measurement, hex::encode(MEASUREMENT));
    assert_eq!(released.enclave_key, f.enclave.public_key().to_text());
    let digest = release_context_digest(INSTANCE, request.key_id.as_bytes(), &request.context);
    assert_eq!(response.context_digest.as_bytes(), digest.as_slice());

    // The enclave unwraps with its own key and the digest of its own request.
    let key = unwrap_secret_key(&f.enclave, response.wrapped.as_bytes(), &digest).unwrap();
    assert_eq!(key.key_id(), f.broker_secret.key_id());
    let (_, plaintext) = open_to_vec(&key, &envelope).unwrap();
    assert_eq!(plaintext.as_slice(), b"patient records");

    // Another enclave's key cannot unwrap it.
    let other = enclave();
    let err = unwrap_secret_key(&other, response.wrapped.as_bytes(), &digest).unwrap_err();
    assert!(matches!(err, OpenError::KeyUnwrapFailed), "{err}");
    // Nor can the right enclave under another context (another job).
    let mut ctx = request.context.clone();
    ctx.job_id = Some("job-18".into());
    let other_digest = release_context_digest(INSTANCE, request.key_id.as_bytes(), &ctx);
    let err = unwrap_secret_key(&f.enclave, response.wrapped.as_bytes(), &other_digest);
    assert!(matches!(err, Err(OpenError::KeyUnwrapFailed)));
    // Nor under another instance id.
    let other_digest = release_context_digest("in_other", request.key_id.as_bytes(), &ctx);
    assert!(unwrap_secret_key(&f.enclave, response.wrapped.as_bytes(), &other_digest).is_err());
}

#[test]
fn a_retired_but_kept_token_key_still_verifies() {
    let mut f = Fixture::new();
    let retired = SigningKey::generate();
    f.keys.insert("ear-retired", retired.public_key());
    assert_eq!(f.keys.len(), 2);
    let pk = f.enclave.public_key().to_text();
    let body = ear_body(vec![("cpu0", appraisal(EarStatus::Warning, &pk))]);
    let ear = sign(&retired, "ear-retired", &body, NOW - 100);
    assert_eq!(token_kid(&ear).as_deref(), Some("ear-retired"));
    f.release(&f.request(ear)).unwrap();
    // Keys also load from their stored JWKs.
    let mut from_jwk = TokenKeys::new();
    from_jwk.insert_jwk(KID, &f.token_key.public_key().to_jwk(KID)).unwrap();
    release(INSTANCE, &from_jwk, &f.key(), &f.collateral, &f.request(f.good_ear()), NOW).unwrap();
}

#[test]
fn a_revoked_key_is_refused_to_an_authenticated_enclave_only_after_its_token_verified() {
    let f = Fixture::new();
    let mut key = f.key();
    key.revoked = true;
    // A genuine token: the refusal names the revocation, and it concerns the owner (audited).
    let err =
        release(INSTANCE, &f.keys, &key, &f.collateral, &f.request(f.good_ear()), NOW).unwrap_err();
    assert!(matches!(err, ReleaseError::Revoked { .. }), "{err}");
    assert!(err.to_string().contains("kb_feedc0de was revoked"), "{err}");
    assert!(err.after_authentication());
    // Anyone else learns nothing about the key's state, and leaves no audit record.
    let err = release("in_elsewhere", &f.keys, &key, &f.collateral, &f.request(f.good_ear()), NOW)
        .unwrap_err();
    assert!(matches!(err, ReleaseError::InstanceNotAccepted { .. }), "{err}");
    assert!(!err.after_authentication());
    let err = release(INSTANCE, &f.keys, &key, &f.collateral, &f.request("x.y.z".into()), NOW)
        .unwrap_err();
    assert!(!matches!(err, ReleaseError::Revoked { .. }), "{err}");
    assert!(!err.after_authentication());
}

#[test]
fn an_instance_the_key_does_not_accept_is_refused() {
    let f = Fixture::new();
    let err =
        release("in_elsewhere", &f.keys, &f.key(), &f.collateral, &f.request(f.good_ear()), NOW)
            .unwrap_err();
    assert!(matches!(err, ReleaseError::InstanceNotAccepted { .. }), "{err}");
    // The refusal goes to whoever asked: it names their instance, never the accepted ones.
    assert!(err.to_string().contains("in_elsewhere"), "{err}");
    assert!(!err.to_string().contains(INSTANCE), "names an accepted instance: {err}");
    let mut key = f.key();
    key.instances = &[];
    let err =
        release(INSTANCE, &f.keys, &key, &f.collateral, &f.request(f.good_ear()), NOW).unwrap_err();
    assert!(matches!(err, ReleaseError::InstanceNotAccepted { .. }), "{err}");
}

#[test]
fn an_expired_or_not_yet_valid_token_is_refused() {
    let f = Fixture::new();
    let mut request = f.request(f.good_ear());
    // Issued at NOW-10, valid for TTL, one minute of clock skew tolerated. (The token is checked
    // before the request's proof, which the enclave signs when it sends the request.)
    prove_with(&mut request, receipt_key(), NOW + TTL.as_secs(), RELEASE_PROOF_VALIDITY);
    release(INSTANCE, &f.keys, &f.key(), &f.collateral, &request, NOW + TTL.as_secs()).unwrap();
    let err =
        release(INSTANCE, &f.keys, &f.key(), &f.collateral, &request, NOW + TTL.as_secs() + 120)
            .unwrap_err();
    assert!(matches!(err, ReleaseError::TokenInvalid(_)), "{err}");
    let err =
        release(INSTANCE, &f.keys, &f.key(), &f.collateral, &request, NOW - 1_000).unwrap_err();
    assert!(matches!(err, ReleaseError::TokenInvalid(_)), "{err}");
}

#[test]
fn a_token_signed_by_another_key_under_a_known_kid_is_refused() {
    let f = Fixture::new();
    let pk = f.enclave.public_key().to_text();
    let body = ear_body(vec![("cpu0", appraisal(EarStatus::Affirming, &pk))]);
    let forged = sign(&SigningKey::generate(), KID, &body, NOW - 10);
    let err = f.release(&f.request(forged)).unwrap_err();
    assert!(matches!(err, ReleaseError::TokenInvalid(_)), "{err}");
}

#[test]
fn a_token_naming_an_unknown_kid_or_none_is_refused() {
    let f = Fixture::new();
    let pk = f.enclave.public_key().to_text();
    let body = ear_body(vec![("cpu0", appraisal(EarStatus::Affirming, &pk))]);
    let err = f.release(&f.request(sign(&f.token_key, "ear-unknown", &body, NOW))).unwrap_err();
    assert!(matches!(err, ReleaseError::UnknownTokenKey { ref kid, .. } if kid == "ear-unknown"));
    let no_kid = f.token_key.sign("EAR attestation result", &body, NOW, TTL).unwrap();
    let err = f.release(&f.request(no_kid)).unwrap_err();
    assert!(matches!(err, ReleaseError::TokenNoKeyId), "{err}");
    let err = f.release(&f.request("not a token".into())).unwrap_err();
    assert!(matches!(err, ReleaseError::TokenNoKeyId), "{err}");
}

#[test]
fn a_tampered_token_is_refused() {
    let f = Fixture::new();
    let ear = f.good_ear();
    // Swap the payload for one naming another enclave key, keeping header and signature.
    let attacker = enclave();
    let body =
        ear_body(vec![("cpu0", appraisal(EarStatus::Affirming, &attacker.public_key().to_text()))]);
    let other = sign(&f.token_key, KID, &body, NOW - 10);
    let parts: Vec<&str> = ear.split('.').collect();
    let other_parts: Vec<&str> = other.split('.').collect();
    let spliced = format!("{}.{}.{}", parts[0], other_parts[1], parts[2]);
    let err = f.release(&f.request(spliced)).unwrap_err();
    assert!(matches!(err, ReleaseError::TokenInvalid(_)), "{err}");
    // And a flipped character in the signature.
    let mut bytes = ear.into_bytes();
    let last = bytes.len() - 5;
    bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
    let err = f.release(&f.request(String::from_utf8(bytes).unwrap())).unwrap_err();
    assert!(matches!(err, ReleaseError::TokenInvalid(_)), "{err}");
}

#[test]
fn the_policy_denying_or_being_undefined_is_refused_with_its_reasons() {
    let mut f = Fixture::new();
    f.policy = ReleasePolicy::new(&ReleasePolicy::template(&[Hex(vec![0x11; 48])])).unwrap();
    let err = f.release(&f.request(f.good_ear())).unwrap_err();
    let ReleaseError::PolicyDenied { ref reasons, .. } = err else { panic!("{err}") };
    assert!(reasons.iter().any(|r| r.contains("is not one this key is released to")), "{err}");

    f.policy = ReleasePolicy::new(
        "package cloister.release\nallow if input.context.purpose == \"training\"\n",
    )
    .unwrap();
    let err = f.release(&f.request(f.good_ear())).unwrap_err();
    let ReleaseError::PolicyDenied { ref reasons, .. } = err else { panic!("{err}") };
    assert!(reasons[0].contains("undefined"), "{err}");

    // The policy sees the documented input: the same policy allows when the context says so.
    let mut request = f.request(f.good_ear());
    request.context.purpose = Some("training".into());
    prove(&mut request);
    f.release(&request).unwrap();
}

#[test]
fn the_policy_sees_instance_key_and_token_times() {
    let mut f = Fixture::new();
    f.policy = ReleasePolicy::new(&format!(
        "package cloister.release\ndefault allow := false\nallow if {{\n\
         input.instance == \"{INSTANCE}\"\ninput.key.id == \"kb_feedc0de\"\n\
         input.key.name == \"hospital-a-records\"\ninput.ear.status == \"affirming\"\n\
         input.ear.issued_at == {}\ninput.ear.expires_at == {}\n\
         input.ear.submods.cpu0.policy_id == \"cloister-default@v1\"\n}}\n",
        NOW - 10,
        NOW - 10 + TTL.as_secs()
    ))
    .unwrap();
    f.release(&f.request(f.good_ear())).unwrap();
}

#[test]
fn an_unusable_enclave_key_or_missing_cpu0_is_refused() {
    let f = Fixture::new();
    let body = ear_body(vec![("cpu0", appraisal(EarStatus::Affirming, "cloister-hpke-x25519:AA"))]);
    let err = f.release(&f.request(sign(&f.token_key, KID, &body, NOW))).unwrap_err();
    assert!(matches!(err, ReleaseError::BadEnclaveKey(_)), "{err}");

    // An all-zero (low-order) X25519 key parses but cannot be encapsulated to.
    let zero = format!("cloister-hpke-x25519:{}", "A".repeat(43));
    let body = ear_body(vec![("cpu0", appraisal(EarStatus::Affirming, &zero))]);
    let err = f.release(&f.request(sign(&f.token_key, KID, &body, NOW))).unwrap_err();
    assert!(matches!(err, ReleaseError::Wrap(_)), "{err}");

    let pk = f.enclave.public_key().to_text();
    let body = ear_body(vec![("gpu0", appraisal(EarStatus::Affirming, &pk))]);
    let err = f.release(&f.request(sign(&f.token_key, KID, &body, NOW))).unwrap_err();
    assert!(matches!(err, ReleaseError::NoCpu0), "{err}");

    let body = ear_body(vec![]);
    let err = f.release(&f.request(sign(&f.token_key, KID, &body, NOW))).unwrap_err();
    assert!(matches!(err, ReleaseError::NoCpu0), "{err}");
}

/// A PSA or Android result attests a device's key, not an enclave: no key is released to it,
/// even affirming and under a release policy that allows everything.
#[test]
fn a_device_key_result_gets_no_key_whatever_the_policy() {
    let mut f = Fixture::new();
    f.policy = ReleasePolicy::new("package cloister.release\nallow := true\n").unwrap();
    let pk = f.enclave.public_key().to_text();
    for tee in [TeeKind::Psa, TeeKind::Android] {
        let mut cpu0 = appraisal(EarStatus::Affirming, &pk);
        cpu0.claims.tee = tee;
        let body = ear_body(vec![("cpu0", cpu0)]);
        let err = f.release(&f.request(sign(&f.token_key, KID, &body, NOW))).unwrap_err();
        assert!(matches!(err, ReleaseError::NotAnEnclave(_)), "{err}");
        assert!(err.to_string().contains("attests a device's key"), "{err}");
    }
    // A virtCCA result whose platform was not verified to a Huawei root proves nothing.
    for verified in [false, true] {
        let mut cpu0 = appraisal(EarStatus::Warning, &pk);
        cpu0.claims.tee = TeeKind::VirtCca;
        cpu0.claims.vendor.insert(
            "virtcca".into(),
            serde_json::json!({ "platform_verified": verified, "platform": "p" }),
        );
        let body = ear_body(vec![("cpu0", cpu0)]);
        let result = f.release(&f.request(sign(&f.token_key, KID, &body, NOW)));
        if verified {
            result.unwrap();
        } else {
            let err = result.unwrap_err();
            assert!(err.to_string().contains("virtCCA platform is not verified"), "{err}");
        }
    }
    // Every TEE that isolates compute still gets it under the same policy.
    f.release(&f.request(f.good_ear())).unwrap();
}

#[test]
fn an_untrustworthy_component_or_foreign_profile_is_refused_before_the_policy() {
    let mut f = Fixture::new();
    // A policy that would allow anything: the guards hold regardless.
    f.policy = ReleasePolicy::new("package cloister.release\nallow := true\n").unwrap();
    let pk = f.enclave.public_key().to_text();
    let body = ear_body(vec![
        ("cpu0", appraisal(EarStatus::Affirming, &pk)),
        ("gpu0", appraisal(EarStatus::Contraindicated, &pk)),
    ]);
    let err = f.release(&f.request(sign(&f.token_key, KID, &body, NOW))).unwrap_err();
    assert!(
        matches!(err, ReleaseError::NotTrustworthy { ref submod, ref status }
            if submod == "gpu0" && status == "contraindicated"),
        "{err}"
    );
    let mut body = ear_body(vec![("cpu0", appraisal(EarStatus::Affirming, &pk))]);
    body.eat_profile = "tag:example.com,2024:other".into();
    let err = f.release(&f.request(sign(&f.token_key, KID, &body, NOW))).unwrap_err();
    assert!(matches!(err, ReleaseError::WrongProfile { .. }), "{err}");
    // The permissive policy does release a good token.
    f.release(&f.request(f.good_ear())).unwrap();
}

#[test]
fn a_request_for_another_key_or_with_oversized_context_is_refused() {
    let f = Fixture::new();
    let mut request = f.request(f.good_ear());
    request.key_id = Hex(RecipientSecretKey::generate().key_id().0.to_vec());
    let err = f.release(&request).unwrap_err();
    assert!(matches!(err, ReleaseError::KeyMismatch { .. }), "{err}");
    request.key_id = Hex(vec![1; 15]);
    let err = f.release(&request).unwrap_err();
    assert!(matches!(err, ReleaseError::BadKeyId { len: 15 }), "{err}");

    let mut request = f.request(f.good_ear());
    request.context.requester = Some("r".repeat(1025));
    let err = f.release(&request).unwrap_err();
    assert!(matches!(err, ReleaseError::ContextTooLong { field: "requester", .. }), "{err}");
    request.context.requester = Some("r".repeat(1024));
    prove(&mut request);
    f.release(&request).unwrap();
}

/// A result appraised against collateral the service has since replaced is refused, with what
/// changed and the advice to attest again; a result whose records match the cache is released.
/// The check comes after the token verified (it is audited), and before the owner's policy.
#[test]
fn a_result_appraised_against_collateral_that_changed_since_is_refused() {
    let mut f = Fixture::new();
    f.policy = ReleasePolicy::new("package cloister.release\nallow := true\n").unwrap();
    let qe = cloister_types::CollateralKey::new(Vendor::Intel, "qe-identity", "tdx");
    let ours = cloister_types::CollateralKey::new(Vendor::Intel, "tcb-info", "tdx/b0c06f000000");
    let item = |bytes: &[u8]| CachedItem {
        kind: ItemKind::Document,
        bytes: bytes.to_vec(),
        expires_at: NOW as i64 + 3600,
    };
    f.collateral.insert(qe.clone(), item(b"qe identity"));
    f.collateral.insert(ours.clone(), item(b"tcb info: up to date"));
    let pk = f.enclave.public_key().to_text();
    let ear = |f: &Fixture| {
        let mut cpu0 = appraisal(EarStatus::Affirming, &pk);
        cpu0.collateral = f.collateral.record(TeeKind::Tdx, std::slice::from_ref(&ours));
        sign(&f.token_key, KID, &ear_body(vec![("cpu0", cpu0)]), NOW - 10)
    };
    let issued = ear(&f);
    f.release(&f.request(issued.clone())).unwrap();

    // The vendor revokes the platform's TCB level: the earlier result gets nothing.
    f.collateral.insert(ours.clone(), item(b"tcb info: revoked"));
    let err = f.release(&f.request(issued.clone())).unwrap_err();
    assert!(err.after_authentication());
    let ReleaseError::CollateralChanged { ref submod, ref changes } = err else { panic!("{err}") };
    assert_eq!((submod.as_str(), changes.clone()), ("cpu0", vec![format!("{ours} changed")]));
    let text = err.to_string();
    assert!(text.contains("attest again to be appraised against the current collateral"), "{text}");
    // Putting the same bytes back restores it; an item that disappears or appears does not.
    f.collateral.insert(ours.clone(), item(b"tcb info: up to date"));
    f.release(&f.request(issued.clone())).unwrap();
    f.collateral.purge_expired(NOW as i64 + 3600);
    let err = f.release(&f.request(issued.clone())).unwrap_err();
    assert!(err.to_string().contains("is no longer cached"), "{err}");
    f.collateral.insert(ours.clone(), item(b"tcb info: up to date"));
    let crl = cloister_types::CollateralKey::new(Vendor::Intel, "pck-crl", "processor");
    f.collateral.insert(crl, item(b"a CRL"));
    let err = f.release(&f.request(issued.clone())).unwrap_err();
    assert!(err.to_string().contains("Intel/pck-crl/processor is now cached"), "{err}");
    // Another platform's TCB info changing concerns nobody on this one.
    f.collateral.insert(qe.clone(), item(b"qe identity"));
    let fresh = ear(&f);
    let other = cloister_types::CollateralKey::new(Vendor::Intel, "tcb-info", "tdx/00806f050000");
    f.collateral.insert(other, item(b"someone else's"));
    f.release(&f.request(fresh.clone())).unwrap();

    // Unauthenticated first: a forged token over changed collateral is refused as forged.
    f.collateral.insert(ours.clone(), item(b"tcb info: revoked"));
    let mut forged = fresh.into_bytes();
    let last = forged.len() - 1;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let err = f.release(&f.request(String::from_utf8(forged).unwrap())).unwrap_err();
    assert!(matches!(err, ReleaseError::TokenInvalid(_)), "{err}");
}

/// Red team, round 7 (finding 9): whoever relays an enclave's requests (the host) captured its
/// token and sent requests of its own making with it — fresh nonces, large contexts — each an
/// audited release the enclave never asked for. A request now counts only with the enclave's
/// signature over it, made with the receipt key the token binds; anything else is refused
/// before authentication, which the service answers without a trace.
#[test]
fn a_release_request_is_the_enclaves_own_only_with_its_signature_over_it() {
    let f = Fixture::new();
    let proof_refused = |request: &KeyReleaseRequest| {
        let err = f.release(request).unwrap_err();
        assert!(matches!(err, ReleaseError::ProofRefused { .. }), "{err}");
        assert!(!err.after_authentication(), "{err}");
        err.to_string()
    };
    let signed = f.request(f.good_ear());
    f.release(&signed).unwrap();

    let mut unsigned = signed.clone();
    unsigned.proof.clear();
    assert!(proof_refused(&unsigned).contains("has no proof"));

    // The host's own requests with the captured token: another context, another nonce, the
    // enclave's proof kept or made with a key of the host's.
    let mut rewritten = signed.clone();
    rewritten.context.purpose = Some("x".repeat(1000));
    assert!(proof_refused(&rewritten).contains("signs another request"));
    let mut renonced = signed.clone();
    renonced.nonce = "YW5vdGhlci1ub25jZS1vZi10aGUtaG9zdA".into();
    assert!(proof_refused(&renonced).contains("signs another request"));
    let mut by_the_host = rewritten.clone();
    prove_with(&mut by_the_host, &SigningKey::generate(), NOW, RELEASE_PROOF_VALIDITY);
    proof_refused(&by_the_host);
    // The enclave's proof does not carry over to another of its tokens.
    let mut other_token = signed.clone();
    let pk = f.enclave.public_key().to_text();
    let body = ear_body(vec![("cpu0", appraisal(EarStatus::Affirming, &pk))]);
    other_token.ear = sign(&f.token_key, KID, &body, NOW);
    assert_ne!(other_token.ear, signed.ear);
    assert!(proof_refused(&other_token).contains("signs another request"));

    // A proof kept for later: expired, or made to last longer than the service remembers nonces.
    let mut stale = signed.clone();
    prove_with(&mut stale, receipt_key(), NOW - 600, RELEASE_PROOF_VALIDITY);
    proof_refused(&stale);
    let mut lasting = signed.clone();
    prove_with(&mut lasting, receipt_key(), NOW, Duration::from_secs(86_400));
    assert!(proof_refused(&lasting).contains("valid for longer than"));

    // No nonce, or one too short to be the enclave's random draw.
    for nonce in ["", "c2hvcnQ"] {
        let mut request = signed.clone();
        request.nonce = nonce.into();
        prove(&mut request);
        assert!(proof_refused(&request).contains("nonce"));
    }
}
