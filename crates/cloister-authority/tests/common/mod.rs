//! What the service tests share: a service on an in-memory database with one tenant and one
//! instance under the production policy, and attestation requests built around real evidence.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::Arc;

use cloister_authority::CollateralFetcher;
use cloister_authority::service::Service;
use cloister_authority::store::Store;
use cloister_policy::Principal;
use cloister_seal::RecipientSecretKey;
use cloister_types::api::{AttestRequest, SERVICE_KEY_FIELD};
use cloister_types::manage::{CreateInstance, CreateTenant, InstanceSettings, PolicySpec};
use cloister_types::{Base64Url, Hex, RuntimeData, TeeKind, UnifiedEvidence};
use sha2::Digest as _;

/// A file of `../shared/vectors` (or `$CLOISTER_VECTORS`).
pub(crate) fn vector(relative: &str) -> Vec<u8> {
    let dir = match std::env::var_os("CLOISTER_VECTORS") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors"),
    };
    std::fs::read(dir.join(relative)).unwrap()
}

/// A service with one tenant and one instance under the built-in `default` policy, created at
/// `now`; returns the service and the instance id.
pub(crate) async fn service_with_instance(
    now: i64,
    fetcher: Option<Box<dyn CollateralFetcher>>,
) -> (Arc<Service>, String) {
    let store = Store::connect("sqlite::memory:").await.unwrap();
    let mut service = Service::open(store, RecipientSecretKey::generate()).await.unwrap();
    if let Some(fetcher) = fetcher {
        service = service.with_fetcher(fetcher);
    }
    let tenant = service
        .create_tenant(&Principal::Operator, &CreateTenant { name: "t".into() }, now)
        .await
        .unwrap();
    let admin = Principal::TenantAdmin { tenant: tenant.tenant.id };
    let request = CreateInstance {
        name: "real".into(),
        policy: PolicySpec::Builtin("default".into()),
        reference_values: serde_json::json!({}),
        trust_anchors: Default::default(),
        settings: InstanceSettings::default(),
    };
    let instance = service.create_instance(&admin, &request, now).await.unwrap();
    (Arc::new(service), instance.id)
}

/// An attestation request carrying `evidence` of `tee` for a fresh challenge of instance `id`,
/// naming the service's signing key as the runtime data must. Public evidence cannot be bound
/// to the fresh nonce, so such a request is refused at the binding check at the latest.
pub(crate) async fn request(
    service: &Service,
    id: &str,
    now: i64,
    tee: TeeKind,
    evidence: Vec<u8>,
) -> AttestRequest {
    let nonce = service.challenge(id, now).await.unwrap().nonce;
    let spki = b"not a real key, the request is refused before it matters".to_vec();
    let runtime_data = RuntimeData {
        nonce,
        hpke_pk: "hpke".into(),
        tls_spki_sha256: Hex(sha2::Sha256::digest(&spki).to_vec()),
        receipt_pk: "receipt".into(),
        extra: [(
            SERVICE_KEY_FIELD.to_owned(),
            serde_json::Value::String(service.signing_public_key().fingerprint_hex()),
        )]
        .into_iter()
        .collect(),
    };
    AttestRequest {
        evidence: UnifiedEvidence {
            version: 1,
            tee,
            evidence: Base64Url(evidence),
            runtime_data,
            collateral: Default::default(),
            additional_evidence: Default::default(),
        },
        tls_spki: Base64Url(spki),
    }
}
