//! Revocation reaches running work (issue 13): when the vendor collateral changes a platform's
//! TCB status, the service refuses that platform's renewals and the key broker refuses releases
//! on the results it issued before.
//!
//! The platform is a synthetic SGX machine under a test root (`cloister_fakehw::dcap`), so its
//! evidence can answer the service's fresh challenge and pass `Service::attest` for real (DCAP
//! driver and dcap-qvl with the service's cached collateral, then the production `default`
//! policy), and its collateral can be swapped under the enclave.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use cloister_authority::AttestError;
use cloister_authority::broker::ReleaseError;
use cloister_authority::service::{Service, ServiceError};
use cloister_authority::store::Store;
use cloister_fakehw::dcap::{DcapPlatform, FMSPC};
use cloister_policy::{Principal, ReleasePolicy};
use cloister_seal::RecipientSecretKey;
use cloister_sign::{SigningKey, VerifyingKey};
use cloister_types::api::{
    AttestRequest, KeyReleaseRequest, RELEASE_PROOF, RELEASE_PROOF_VALIDITY, ReleaseProof,
    SERVICE_KEY_FIELD,
};
use cloister_types::manage::{
    CreateInstance, CreateTenant, InstanceSettings, KeyView, PolicySpec, RegisterKey,
    TrustAnchorSpec,
};
use cloister_types::{Base64Url, EarBody, Hex, RuntimeData, TcbStatus};
use cloister_verify::{DcapError, VerifyError};
use rand::RngCore as _;
use sha2::Digest as _;

/// 2025-06-15T16:26:40Z; the synthetic certificates and collateral are made around it.
const NOW: i64 = 1_750_004_800;

/// A service with one tenant, one instance under the production `default` policy that trusts
/// the platform's test root for SGX and knows its enclave's measurement, and a broker key of the
/// tenant released to that measurement through that instance.
struct Bed {
    service: Arc<Service>,
    instance: String,
    platform: DcapPlatform,
    key: KeyView,
    /// The enclave's keys: they stay the same across its attestations.
    hpke: RecipientSecretKey,
    /// The enclave's receipt key, which signs its release requests.
    receipt: SigningKey,
    tls_spki: Vec<u8>,
}

async fn bed() -> Bed {
    bed_at(NOW).await
}

/// [`bed`], made at `now`.
async fn bed_at(now: i64) -> Bed {
    let store = Store::connect("sqlite::memory:").await.unwrap();
    let service = Service::open(store, RecipientSecretKey::generate()).await.unwrap();
    let tenant = service
        .create_tenant(&Principal::Operator, &CreateTenant { name: "t".into() }, now)
        .await
        .unwrap();
    let admin = Principal::TenantAdmin { tenant: tenant.tenant.id };
    let platform = DcapPlatform::sgx(now).unwrap();
    let request = CreateInstance {
        name: "production".into(),
        policy: PolicySpec::Builtin("default".into()),
        reference_values: serde_json::json!({ "measurements": [platform.measurement()] }),
        trust_anchors: TrustAnchorSpec {
            // An ordinary root (claims say `instance`), so that the production policy
            // judges the TCB; under `test_roots` it would refuse the platform outright.
            roots: [("sgx".to_owned(), vec![platform.root_pem()])].into_iter().collect(),
            ..TrustAnchorSpec::default()
        },
        settings: InstanceSettings::default(),
    };
    let instance = service.create_instance(&admin, &request, now).await.unwrap().id;
    let key = service
        .register_key(
            &admin,
            &RegisterKey {
                name: "patients".into(),
                secret_key: None,
                release_policy: ReleasePolicy::template(&[platform.measurement()]),
                instances: vec![instance.clone()],
            },
            now,
        )
        .await
        .unwrap();
    let tls_spki = {
        use rcgen::PublicKeyData as _;
        rcgen::KeyPair::generate().unwrap().subject_public_key_info()
    };
    Bed {
        service: Arc::new(service),
        instance,
        platform,
        key,
        hpke: RecipientSecretKey::generate(),
        receipt: SigningKey::generate(),
        tls_spki,
    }
}

impl Bed {
    /// Replaces the platform's collateral in the service's cache (as a refresh from Intel
    /// would): its TCB level now has `status`.
    fn collateral(&self, status: &str, issued: i64, tcb_evaluation: u32) {
        let bundle = self.platform.collateral_bundle(status, issued, tcb_evaluation).unwrap();
        assert_eq!(self.service.collateral().load_bundle(&bundle).unwrap(), 5);
    }

    /// The enclave attests (or renews: a fresh challenge, the same keys) at `now`.
    async fn attest(&self, now: i64) -> Result<String, ServiceError> {
        let nonce = self.service.challenge(&self.instance, now).await.unwrap().nonce;
        let runtime_data = RuntimeData {
            nonce,
            hpke_pk: self.hpke.public_key().to_text(),
            tls_spki_sha256: Hex(sha2::Sha256::digest(&self.tls_spki).to_vec()),
            receipt_pk: self.receipt.public_key().to_text(),
            extra: [(
                SERVICE_KEY_FIELD.to_owned(),
                serde_json::Value::String(self.service.signing_public_key().fingerprint_hex()),
            )]
            .into_iter()
            .collect(),
        };
        let request = AttestRequest {
            evidence: self.platform.evidence(&runtime_data).unwrap(),
            tls_spki: Base64Url(self.tls_spki.clone()),
        };
        Ok(self.service.attest(&self.instance, &request, &[0; 32], now).await?.ear)
    }

    /// A release request the enclave signed at `now`, with a fresh nonce.
    fn release_request(&self, ear: &str, now: i64) -> KeyReleaseRequest {
        let mut nonce = [0u8; 24];
        rand::rng().fill_bytes(&mut nonce);
        let mut request = KeyReleaseRequest {
            key_id: Hex::parse(&self.key.key_id).unwrap(),
            ear: ear.to_owned(),
            context: Default::default(),
            nonce: Base64Url::encode(&nonce),
            after: None,
            proof: String::new(),
        };
        request.proof = self
            .receipt
            .sign(RELEASE_PROOF, ReleaseProof::of(&request), now as u64, RELEASE_PROOF_VALIDITY)
            .unwrap();
        request
    }

    async fn release(&self, ear: &str, now: i64) -> Result<(), ServiceError> {
        self.service.release_key(&self.release_request(ear, now), now).await.map(|_| ())
    }

    /// The EAR body of a token this service issued.
    async fn ear_body(&self, ear: &str, now: i64) -> EarBody {
        let jwks = self.service.jwks(&self.instance, now).await.unwrap();
        let key = VerifyingKey::from_jwk(&jwks["keys"][0]).unwrap();
        key.verify::<EarBody>(cloister_types::ear::EAR_NAME, ear, now as u64).unwrap().claims
    }
}

fn tcb_info_key() -> String {
    format!("Intel/tcb-info/sgx/{}", hex::encode(FMSPC))
}

fn collateral_changed(err: &ServiceError) -> &[String] {
    match err {
        ServiceError::Release(ReleaseError::CollateralChanged { submod, changes }) => {
            assert_eq!(submod, "cpu0");
            changes
        }
        other => panic!("not a collateral change: {other}"),
    }
}

/// The whole story on one platform: attested and served while its TCB is up to date; once Intel
/// revokes that TCB level, the result it holds gets no key and it cannot renew; the same when the
/// level is merely out of date and the instance's policy does not allow that; once the
/// collateral says up to date again, a renewal is appraised against it and served.
#[tokio::test]
async fn collateral_swapped_under_an_attested_enclave_stops_releases_and_renewals() {
    let bed = bed().await;
    bed.collateral("UpToDate", NOW - 3600, 17);
    let ear = bed.attest(NOW).await.unwrap();
    let body = bed.ear_body(&ear, NOW).await;
    let cpu0 = &body.submods["cpu0"];
    assert_eq!(cpu0.claims.tcb_status, TcbStatus::UpToDate);
    // The result records the five items the appraisal used, each with its digest.
    let recorded: Vec<String> =
        cpu0.collateral.items.iter().map(|item| item.key.to_string()).collect();
    assert_eq!(
        recorded,
        [
            "Intel/pck-crl/processor".to_owned(),
            "Intel/qe-identity/sgx".to_owned(),
            "Intel/root-ca-crl/root".to_owned(),
            tcb_info_key(),
            format!("Intel/tcb-info-issuer-chain/sgx/{}", hex::encode(FMSPC)),
        ]
    );
    assert!(cpu0.collateral.items.iter().all(|item| item.sha256.is_some()));
    assert_eq!(cpu0.collateral.needs.len(), 4);
    bed.release(&ear, NOW + 10).await.unwrap();

    // Intel revokes the platform's TCB level; the service's cache is refreshed.
    bed.collateral("Revoked", NOW + 60, 18);
    let err = bed.release(&ear, NOW + 120).await.unwrap_err();
    let changes = collateral_changed(&err);
    assert!(changes.contains(&format!("{} changed", tcb_info_key())), "{changes:?}");
    assert!(err.to_string().contains("attest again"), "{err}");
    // The refusal is on the key owner's record, with its reason.
    let records = bed.service.audit_records(&Principal::Operator, NOW + 120).await.unwrap();
    let last = records.iter().rev().find(|r| r.kind == "key.released").unwrap();
    assert_eq!((last.subject.as_str(), last.outcome.as_str()), (bed.key.id.as_str(), "refused"));
    let reason = last.detail["reason"].as_str().unwrap();
    assert!(reason.contains("has changed since"), "{reason}");
    // The renewal is appraised against the current collateral: the platform is refused.
    let err = bed.attest(NOW + 130).await.unwrap_err();
    assert!(
        matches!(
            err,
            ServiceError::Attest(AttestError::Verify(VerifyError::Dcap(
                DcapError::TcbRevoked { .. }
            )))
        ),
        "{err}"
    );

    // Out of date, which the production policy does not allow: refused by the policy.
    bed.collateral("OutOfDate", NOW + 200, 19);
    let err = bed.attest(NOW + 210).await.unwrap_err();
    let ServiceError::Attest(AttestError::Rejected { reasons, .. }) = &err else {
        panic!("not refused by the policy: {err}")
    };
    assert!(reasons.iter().any(|r| r.contains("TCB status OutOfDate")), "{reasons:?}");
    collateral_changed(&bed.release(&ear, NOW + 220).await.unwrap_err());

    // Up to date again (a fresh issue of the collateral): the old result is still refused —
    // its appraisal is not this collateral's — but a renewal passes and is served.
    bed.collateral("UpToDate", NOW + 300, 20);
    collateral_changed(&bed.release(&ear, NOW + 310).await.unwrap_err());
    let renewed = bed.attest(NOW + 320).await.unwrap();
    bed.release(&renewed, NOW + 330).await.unwrap();
}

/// Over HTTP the refusal is 409 with its own code, which the worker acts on.
#[tokio::test]
async fn the_refusal_is_409_collateral_changed_over_http() {
    // The HTTP surface reads the clock.
    let now = cloister_sign::unix_now() as i64;
    let bed = bed_at(now).await;
    bed.collateral("UpToDate", now - 3600, 17);
    let ear = bed.attest(now).await.unwrap();
    bed.collateral("Revoked", now - 60, 18);
    let app = cloister_authority::http::service_router(bed.service.clone());
    let request = axum::http::Request::builder()
        .method("POST")
        .uri("/v1/keys/release")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(serde_json::to_vec(&bed.release_request(&ear, now)).unwrap()))
        .unwrap();
    let response = tower::ServiceExt::oneshot(app, request).await.unwrap();
    assert_eq!(response.status(), axum::http::StatusCode::CONFLICT);
    let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["code"], cloister_types::api::COLLATERAL_CHANGED);
    let message = body["message"].as_str().unwrap();
    assert!(message.contains(&format!("{} changed", tcb_info_key())), "{message}");
}

/// Collateral for other platforms coming and going concerns nobody on this one: a result is
/// refused only for items its own appraisal depended on.
#[tokio::test]
async fn another_platforms_collateral_changing_does_not_stop_this_one() {
    let bed = bed().await;
    bed.collateral("UpToDate", NOW - 3600, 17);
    let ear = bed.attest(NOW).await.unwrap();
    let other = serde_json::json!({"version": 1, "items": [{
        "vendor": "intel", "kind": "tcb-info", "id": "sgx/00a067110000", "type": "document",
        "expires_at": "2030-01-01T00:00:00Z", "data": Base64Url::encode(b"{}"),
    }, {
        "vendor": "amd", "kind": "ask-ark", "id": "Milan", "type": "certificate",
        "expires_at": "2030-01-01T00:00:00Z", "data": Base64Url::encode(b"not a certificate"),
    }]});
    bed.service.collateral().load_bundle(&serde_json::to_vec(&other).unwrap()).unwrap();
    bed.release(&ear, NOW + 10).await.unwrap();
}
