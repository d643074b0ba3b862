//! Data owners at the console (issue 19): a party that holds a signing key, not a service token,
//! signs in by answering a challenge and reads its own data sets, and nothing else. The
//! attacker's tests come first: a replayed answer, an answer for another service, another
//! challenge or another key, the service's other signed tokens presented as a session, a
//! session of another service, and each role reaching past its own.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use cloister_authority::service::Service;
use cloister_authority::store::Store;
use cloister_client::protocol::owner_sign_in;
use cloister_policy::Principal;
use cloister_seal::RecipientSecretKey;
use cloister_sign::{SigningKey, unix_now};
use cloister_types::Hex;
use cloister_types::api::{
    DatasetRegistration, OWNER_SIGN_IN, OwnerChallenge, OwnerSignIn, OwnerSignInStatement,
    RegisterDataset,
};
use cloister_types::manage::CreateTenant;
use serde_json::Value;
use sha2::Digest as _;

struct Bed {
    service: Arc<Service>,
    app: Router,
    fingerprint: Hex,
}

async fn new_bed() -> Bed {
    let store = Store::connect("sqlite::memory:").await.unwrap();
    let service = Arc::new(Service::open(store, RecipientSecretKey::generate()).await.unwrap());
    let app = cloister_authority::http::service_router(service.clone());
    let fingerprint = Hex(service.signing_public_key().fingerprint().to_vec());
    Bed { service, app, fingerprint }
}

impl Bed {
    async fn call(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = bearer {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = match body {
            Some(body) => request
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
            None => request.body(Body::empty()).unwrap(),
        };
        let response = tower::ServiceExt::oneshot(self.app.clone(), request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    async fn challenge(&self) -> OwnerChallenge {
        let (status, body) = self.call("POST", "/v1/owners/challenge", None, None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        serde_json::from_value(body).unwrap()
    }

    async fn sign_in(&self, answer: &OwnerSignIn) -> (StatusCode, Value) {
        self.call("POST", "/v1/owners/sessions", None, Some(serde_json::to_value(answer).unwrap()))
            .await
    }

    /// A fresh challenge answered by `owner` for this service: a session token.
    async fn session(&self, owner: &SigningKey) -> String {
        let challenge = self.challenge().await;
        let answer = owner_sign_in(owner, &challenge.challenge, &self.fingerprint).unwrap();
        let (status, body) = self.sign_in(&answer).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["token"].as_str().unwrap().to_owned()
    }

    /// Registers a data set with digest byte `byte` to `owner`; returns the service's signed
    /// answer (a token of the service's own, of another kind than a session).
    async fn register(&self, owner: &SigningKey, byte: u8, object_id: &str) -> String {
        let statement =
            DatasetRegistration { sha256: Hex(vec![byte; 32]), object_id: object_id.into() };
        let statement = owner
            .sign("data set registration", &statement, unix_now(), Duration::from_secs(60))
            .unwrap();
        let request = RegisterDataset { owner: owner.public_key().to_text(), statement };
        self.service.register_dataset(&request, unix_now() as i64).await.unwrap().answer
    }
}

fn refused(status: StatusCode, body: &Value, why: &str) {
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["code"], "sign_in_refused", "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains(why), "{message} should say {why:?}");
}

#[tokio::test]
async fn an_owner_signs_in_with_its_party_key_once_per_challenge_and_sees_only_its_data_sets() {
    let bed = new_bed().await;
    let alice = SigningKey::generate();
    let bob = SigningKey::generate();
    let answer = bed.register(&alice, 1, "alice-records").await;
    bed.register(&bob, 2, "bob-records").await;

    let challenge = bed.challenge().await;
    assert_eq!(challenge.service_key_sha256, bed.fingerprint);
    let good = owner_sign_in(&alice, &challenge.challenge, &bed.fingerprint).unwrap();
    let (status, session) = bed.sign_in(&good).await;
    assert_eq!(status, StatusCode::OK, "{session}");
    assert_eq!(session["owner"], alice.public_key().to_text());
    let token = session["token"].as_str().unwrap();

    let (status, view) = bed.call("GET", "/v1/owners/me", Some(token), None).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    let sets = view["datasets"].as_array().unwrap();
    assert_eq!(sets.len(), 1, "{view}");
    assert_eq!(sets[0]["object_id"], "alice-records");
    assert_eq!(sets[0]["sha256"], "01".repeat(32));
    assert_eq!(sets[0]["charges"], serde_json::json!([]));

    // The same answer again (captured, replayed): the challenge was answered.
    let (status, body) = bed.sign_in(&good).await;
    refused(status, &body, "answered before");

    // Bob's session reads Bob's data set only.
    let bob_token = bed.session(&bob).await;
    let (_, view) = bed.call("GET", "/v1/owners/me", Some(&bob_token), None).await;
    assert_eq!(view["datasets"].as_array().unwrap().len(), 1, "{view}");
    assert_eq!(view["datasets"][0]["object_id"], "bob-records");

    // A session is for the owner's data sets, nothing else; and no other role reads them.
    for path in ["/v1/instances", "/v1/tenants", "/v1/keys", "/v1/audit", "/v1/audit/chain"] {
        let (status, body) = bed.call("GET", path, Some(token), None).await;
        assert!(matches!(status, StatusCode::FORBIDDEN), "{path}: {status} {body}");
    }
    let tenant = bed
        .service
        .create_tenant(&Principal::Operator, &CreateTenant { name: "t".into() }, unix_now() as i64)
        .await
        .unwrap();
    bed.service
        .ensure_operator_token("operator-token-for-this-test", unix_now() as i64)
        .await
        .unwrap();
    for other in [tenant.token.as_str(), "operator-token-for-this-test"] {
        let (status, body) = bed.call("GET", "/v1/owners/me", Some(other), None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    }
    let (status, _) = bed.call("GET", "/v1/owners/me", None, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // The service's other signed tokens are not sessions: a registration answer, a challenge.
    let fresh = bed.challenge().await;
    for not_a_session in [answer.as_str(), fresh.challenge.as_str()] {
        let (status, body) = bed.call("GET", "/v1/owners/me", Some(not_a_session), None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    }
    // A token that only looks like one: Alice's session with Bob's owner claim is not signed.
    let (head, rest) = token.split_once('.').unwrap();
    let (_, signature) = rest.split_once('.').unwrap();
    let (_, bob_claims) = bob_token.split_once('.').unwrap();
    let (bob_claims, _) = bob_claims.split_once('.').unwrap();
    let forged = format!("{head}.{bob_claims}.{signature}");
    let (status, _) = bed.call("GET", "/v1/owners/me", Some(&forged), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_sign_in_answer_is_refused_for_another_service_challenge_or_key() {
    let (bed, other) = (new_bed().await, new_bed().await);
    let alice = SigningKey::generate();
    let mallory = SigningKey::generate();

    // An answer meant for another service (its fingerprint), relayed here.
    let challenge = bed.challenge().await;
    let relayed = owner_sign_in(&alice, &challenge.challenge, &other.fingerprint).unwrap();
    let (status, body) = bed.sign_in(&relayed).await;
    refused(status, &body, "another service");

    // A challenge another service issued, answered for this one.
    let foreign = other.challenge().await;
    let answer = owner_sign_in(&alice, &foreign.challenge, &bed.fingerprint).unwrap();
    let (status, body) = bed.sign_in(&answer).await;
    refused(status, &body, "not one of this service's");

    // A statement over one challenge presented with another.
    let first = bed.challenge().await;
    let second = bed.challenge().await;
    let mut swapped = owner_sign_in(&alice, &first.challenge, &bed.fingerprint).unwrap();
    swapped.challenge = second.challenge.clone();
    let (status, body) = bed.sign_in(&swapped).await;
    refused(status, &body, "another challenge");

    // Mallory signs, claiming to be Alice.
    let mut claimed = owner_sign_in(&mallory, &second.challenge, &bed.fingerprint).unwrap();
    claimed.owner = alice.public_key().to_text();
    let (status, body) = bed.sign_in(&claimed).await;
    refused(status, &body, "does not verify with the owner key");

    // A statement of another kind (a grant-shaped signature over the same claims) is refused.
    let third = bed.challenge().await;
    let statement = OwnerSignInStatement {
        challenge_sha256: Hex(sha2::Sha256::digest(third.challenge.as_bytes()).to_vec()),
        service_key_sha256: bed.fingerprint.clone(),
    };
    let wrong_kind = alice.sign("grant", &statement, unix_now(), Duration::from_secs(60)).unwrap();
    let right_kind =
        alice.sign(OWNER_SIGN_IN, &statement, unix_now(), Duration::from_secs(60)).unwrap();
    let mut answer = OwnerSignIn {
        owner: alice.public_key().to_text(),
        challenge: third.challenge.clone(),
        statement: wrong_kind,
    };
    let (status, body) = bed.sign_in(&answer).await;
    refused(status, &body, "does not verify with the owner key");
    // None of the refusals above spent the challenge: the owner's own answer still signs in.
    answer.statement = right_kind;
    let (status, body) = bed.sign_in(&answer).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // A session of the other service is not a session here.
    let elsewhere = other.session(&alice).await;
    let (status, _) = bed.call("GET", "/v1/owners/me", Some(&elsewhere), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // The client refuses to sign what is not a challenge, or a fingerprint that is not SHA-256.
    assert!(owner_sign_in(&alice, "not-a-challenge", &bed.fingerprint).is_err());
    assert!(owner_sign_in(&alice, &third.challenge, &Hex(vec![0; 20])).is_err());
}
