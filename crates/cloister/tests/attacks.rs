//! The attacks of the security review (issue 13), replayed against real loopback servers. Each
//! test is named after the property it guards and fails if its attack works again;
//! `docs/security.md` maps every attack to its test.

// Helpers in integration tests are not #[test] functions; a failed setup should panic loudly.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use cloister::demo::{BREAST_CANCER_CSV, DEMO_MODEL_ONNX, split_labels};
use cloister::parties::{Admitted, Party};
use cloister::testbed::{self, ComputeDirs, DevCompute, RunningWorker};
use cloister_client::{AuthorityClient, ServiceChannel, VerifiedEnclave, WorkerClient};
use cloister_sign::{SigningKey, unix_now};
use cloister_types::api::{
    Answer, CheckpointRef, DatasetRegistration, PrivacyChargeOutcome, PrivacyChargeStatement,
    RegisterDataset, ServiceAnswer, SignedAnswer, SubmitJob,
};
use cloister_types::job::PrivacyCharge;
use cloister_types::{Hex, InputRef, InputRole, JobKind, JobSpec, TeeKind};
use sha2::Digest as _;

/// The compute side and its parties.
struct Bed {
    dirs: ComputeDirs,
    compute: DevCompute,
    model_provider: Party,
    data_provider: Party,
    _tmp: tempfile::TempDir,
}

async fn bed() -> Bed {
    let tmp = tempfile::tempdir().unwrap();
    let dirs = ComputeDirs::create(&tmp.path().join("compute")).unwrap();
    let compute = testbed::start_dev_compute(&dirs).await.unwrap();
    let model_provider = Party::create("model provider", &tmp.path().join("model")).unwrap();
    let data_provider = Party::create("data provider", &tmp.path().join("data")).unwrap();
    Bed { dirs, compute, model_provider, data_provider, _tmp: tmp }
}

impl Bed {
    fn admitted(&self) -> Admitted {
        Admitted::new(
            std::slice::from_ref(&self.compute.measurement),
            &self.compute.authority.instance_id,
        )
    }

    async fn attest(
        &self,
        party: &Party,
        worker: &RunningWorker,
    ) -> (WorkerClient, VerifiedEnclave) {
        let measurements = std::slice::from_ref(&self.compute.measurement);
        party
            .attest_worker(&worker.url, &self.compute.ca_pem, measurements, &[TeeKind::Sim])
            .await
            .unwrap()
    }

    /// The demo classifier (the model owner's) and the demo features (the data owner's), each
    /// sealed to `enclave` and uploaded.
    async fn upload_demo_inputs(
        &self,
        client: &WorkerClient,
        enclave: &VerifiedEnclave,
    ) -> (InputRef, InputRef) {
        let model = self
            .model_provider
            .seal_and_upload(client, enclave, "model", "application/onnx", DEMO_MODEL_ONNX)
            .await
            .unwrap();
        let features = split_labels(BREAST_CANCER_CSV).unwrap().features_csv;
        let data = self
            .data_provider
            .seal_and_upload(client, enclave, "data", "text/csv", &features)
            .await
            .unwrap();
        (model, data)
    }

    fn grants(&self, spec: &JobSpec) -> Vec<String> {
        let to = spec.output_recipients.clone();
        let admitted = self.admitted();
        vec![
            self.model_provider.grant(spec, InputRole::Model, &admitted, &to).unwrap(),
            self.data_provider.grant(spec, InputRole::Data, &admitted, &to).unwrap(),
        ]
    }
}

fn job(kind: JobKind, model: InputRef, data: InputRef, to: &Party) -> JobSpec {
    JobSpec {
        id: format!("job-{}", uuid::Uuid::new_v4()),
        kind,
        model,
        data,
        output_recipients: vec![to.envelope.public_key().to_text()],
        more_data: Vec::new(),
    }
}

// ---- forged answers (finding 2) ------------------------------------------------------------

/// What the compute provider's proxy between the worker and the service does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Forgery {
    /// Passes everything through.
    None,
    /// Answers job records itself, signed with a key of its own.
    JobRecorded,
    /// Answers privacy charges itself: `{"outcome": "charged"}`, signed with a key of its own.
    Charged,
    /// Answers every enclave statement with the genuine answer to the first one it saw.
    Replay,
}

#[derive(Clone)]
struct Proxy {
    upstream: String,
    http: reqwest::Client,
    forgery: Arc<Mutex<Forgery>>,
    host_key: Arc<SigningKey>,
    seen: Arc<Mutex<Option<Bytes>>>,
}

/// Forwards to the real service, or forges what the mode says.
async fn proxy(State(proxy): State<Proxy>, method: Method, uri: Uri, body: Bytes) -> Response {
    let path = uri.path().to_owned();
    let forgery = *proxy.forgery.lock().unwrap();
    let statement = path.ends_with("/jobs") || path.ends_with("/privacy-charges");
    let seen = proxy.seen.lock().unwrap().clone();
    if statement
        && forgery == Forgery::Replay
        && let Some(seen) = seen
    {
        return (StatusCode::OK, [("content-type", "application/json")], seen).into_response();
    }
    let forge = (forgery == Forgery::JobRecorded && path.ends_with("/jobs"))
        || (forgery == Forgery::Charged && path.ends_with("/privacy-charges"));
    if forge {
        let instance = path.split('/').nth(3).unwrap_or_default().to_owned();
        let request: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let statement = request["statement"].as_str().unwrap_or_default();
        let payload = statement.split('.').nth(1).unwrap_or_default();
        let claims: serde_json::Value = serde_json::from_slice(
            &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
                .unwrap(),
        )
        .unwrap();
        let job_id = claims["job_id"].as_str().unwrap_or_default().to_owned();
        let answer = if path.ends_with("/jobs") {
            Answer::JobRecorded { job_id, audit_seq: 1 }
        } else {
            Answer::PrivacyCharge {
                job_id,
                outcome: PrivacyChargeOutcome::Charged {
                    accounts: Vec::new(),
                    audit_seq: 1,
                    charged_by: claims["iss"].as_str().unwrap_or_default().to_owned(),
                    replay: false,
                },
            }
        };
        let signed = ServiceAnswer {
            instance_id: instance,
            request_sha256: Hex(sha2::Sha256::digest(&body).to_vec()),
            checkpoint: CheckpointRef::default(),
            answer,
        };
        let jws = proxy
            .host_key
            .sign("service answer", &signed, unix_now(), std::time::Duration::from_secs(300))
            .unwrap();
        return axum::Json(SignedAnswer { answer: jws }).into_response();
    }
    let url = format!("{}{}", proxy.upstream, uri.path_and_query().map_or("", |p| p.as_str()));
    let upstream = proxy
        .http
        .request(method, &url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = upstream.status().as_u16();
    let bytes = upstream.bytes().await.unwrap();
    if statement && forgery == Forgery::Replay && status < 300 {
        proxy.seen.lock().unwrap().get_or_insert(bytes.clone());
    }
    (StatusCode::from_u16(status).unwrap(), [("content-type", "application/json")], bytes)
        .into_response()
}

/// Starts the compute provider's proxy in front of the bed's service; returns its URL and the
/// switch for its forgeries.
async fn start_proxy(bed: &Bed) -> (String, Arc<Mutex<Forgery>>) {
    let ca = std::fs::read(&bed.compute.authority.tls_ca).unwrap();
    let http = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .build()
        .unwrap();
    let forgery = Arc::new(Mutex::new(Forgery::None));
    let state = Proxy {
        upstream: bed.compute.authority.url.clone(),
        http,
        forgery: forgery.clone(),
        host_key: Arc::new(SigningKey::generate()),
        seen: Arc::new(Mutex::new(None)),
    };
    let app = axum::Router::new().fallback(proxy).with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, forgery)
}

#[tokio::test]
async fn an_enclave_runs_no_job_on_answers_the_host_forged_or_replayed() {
    let bed = bed().await;
    let (proxy_url, forgery) = start_proxy(&bed).await;
    // A worker whose traffic to the service goes through the compute provider's proxy; it pins
    // the real service's key, as its operator configured.
    let authority = &bed.compute.authority;
    let through_proxy = AuthorityClient::for_instance(&proxy_url, &authority.instance_id).unwrap();
    let channel = ServiceChannel::new(
        through_proxy,
        &authority.instance_id,
        authority.service.signing_public_key(),
    );
    let worker = testbed::start_worker(&bed.dirs, &bed.compute.attester, &channel).await.unwrap();
    let (client, enclave) = bed.attest(&bed.data_provider, &worker).await;
    let (model, data) = bed.upload_demo_inputs(&client, &enclave).await;

    // "Job recorded", signed by the host: the job does not run.
    *forgery.lock().unwrap() = Forgery::JobRecorded;
    let spec = job(JobKind::BatchInference, model.clone(), data.clone(), &bed.data_provider);
    let grants = bed.grants(&spec);
    let err = client.submit_job(&SubmitJob { spec: spec.clone(), grants }).await.unwrap_err();
    assert!(err.to_string().contains("not signed by the pinned service"), "{err}");
    assert!(!bed.dirs.objects.join(format!("{}-predictions", spec.id)).exists());

    // A genuine answer, but to another request: the job does not run either.
    *forgery.lock().unwrap() = Forgery::Replay;
    let first = job(JobKind::BatchInference, model.clone(), data.clone(), &bed.data_provider);
    let grants = bed.grants(&first);
    client.submit_job(&SubmitJob { spec: first, grants }).await.unwrap();
    let second = job(JobKind::BatchInference, model.clone(), data.clone(), &bed.data_provider);
    let grants = bed.grants(&second);
    let err = client.submit_job(&SubmitJob { spec: second.clone(), grants }).await.unwrap_err();
    assert!(err.to_string().contains("answers another request"), "{err}");
    assert!(!bed.dirs.objects.join(format!("{}-predictions", second.id)).exists());

    // "Privacy charged", signed by the host: a training job does not run, and the ledger (the
    // service's) has no charge for it.
    *forgery.lock().unwrap() = Forgery::Charged;
    let registry = authority.service_client().unwrap();
    let rows = bed
        .data_provider
        .seal_register_and_upload(
            &client,
            &enclave,
            &registry,
            "rows",
            "text/csv",
            BREAST_CANCER_CSV,
        )
        .await
        .unwrap();
    let plan = training_plan();
    let plan = bed
        .model_provider
        .seal_and_upload(&client, &enclave, "plan", "application/json", &plan)
        .await
        .unwrap();
    let spec = job(JobKind::Train, plan, rows.clone(), &bed.model_provider);
    let grants = bed.grants(&spec);
    let err = client.submit_job(&SubmitJob { spec: spec.clone(), grants }).await.unwrap_err();
    assert!(err.to_string().contains("not signed by the pinned service"), "{err}");
    let records = authority.service.audit_records(&cloister_policy::Principal::Operator, 0).await;
    let charged =
        records.unwrap().iter().any(|r| r.kind == "privacy.charged" && r.subject == spec.id);
    assert!(!charged, "the ledger saw a charge the host answered itself");
}

fn training_plan() -> Vec<u8> {
    use cloister_engine::train::standardization;
    use cloister_engine::{Classifier, LabelledRows, TrainConfig};
    let table = LabelledRows::from_csv(BREAST_CANCER_CSV).unwrap();
    let (mean, scale) = standardization(&table);
    let initial = Classifier::initial(mean, scale, &[], 2, 1).unwrap();
    let config =
        TrainConfig { epochs: 1, batch_size: 64, learning_rate: 0.1, l2: 0.0, seed: 1, dp: None };
    serde_json::to_vec(&serde_json::json!({ "model": initial, "config": config })).unwrap()
}

#[tokio::test]
async fn an_enclave_pinned_to_another_service_gets_no_certificate_from_this_one() {
    let bed = bed().await;
    let authority = &bed.compute.authority;
    // The host starts the worker pinned to a key of its own choosing (flags are the host's).
    let host_key = SigningKey::generate().public_key();
    let channel =
        ServiceChannel::new(authority.client().unwrap(), &authority.instance_id, host_key);
    let err =
        testbed::start_worker(&bed.dirs, &bed.compute.attester, &channel).await.err().unwrap();
    let text = format!("{err:#}");
    assert!(text.contains("names the attestation service with signing key"), "{text}");
    assert!(text.contains(&authority.fingerprint()), "names this service's key: {text}");
}

// ---- the privacy ledger (finding 3) --------------------------------------------------------

/// Signs `charges` for `job_id` as the bed's worker enclave and sends them through its channel.
async fn charge(
    bed: &Bed,
    job_id: &str,
    charges: Vec<PrivacyCharge>,
) -> Result<PrivacyChargeOutcome, String> {
    charge_verified(bed, job_id, charges).await.map(|verified| verified.answer)
}

/// [`charge`], with the service's time and checkpoint.
async fn charge_verified(
    bed: &Bed,
    job_id: &str,
    charges: Vec<PrivacyCharge>,
) -> Result<cloister_client::answers::VerifiedAnswer<PrivacyChargeOutcome>, String> {
    let identity = &bed.compute.worker.worker.identity;
    let statement = PrivacyChargeStatement { job_id: job_id.to_owned(), charges };
    let signed = identity
        .receipt_key()
        .sign("privacy charge", &statement, unix_now(), std::time::Duration::from_secs(60))
        .unwrap();
    bed.compute
        .authority
        .channel()
        .unwrap()
        .charge_privacy(&identity.ear(), &signed, job_id, None)
        .await
        .map_err(|e| e.to_string())
}

fn register(owner: &SigningKey, sha256: &Hex, object_id: &str) -> RegisterDataset {
    let statement = DatasetRegistration { sha256: sha256.clone(), object_id: object_id.to_owned() };
    let statement = owner
        .sign("data set registration", &statement, unix_now(), std::time::Duration::from_secs(60))
        .unwrap();
    RegisterDataset { owner: owner.public_key().to_text(), statement }
}

#[tokio::test]
async fn only_the_registered_owners_grant_charges_a_data_set_and_only_once_per_job() {
    let bed = bed().await;
    let authority = &bed.compute.authority;
    let registry = authority.service_client().unwrap();
    let owner = &bed.data_provider;
    let stranger = SigningKey::generate();
    let data =
        InputRef { object_id: "rows".into(), sha256: Hex(vec![0x42; 32]), owner: owner.id() };
    let spec = JobSpec {
        id: "train-1".into(),
        kind: JobKind::Train,
        model: InputRef { object_id: "plan".into(), sha256: Hex(vec![1; 32]), owner: "m".into() },
        data: data.clone(),
        output_recipients: vec![bed.model_provider.envelope.public_key().to_text()],
        more_data: Vec::new(),
    };
    let to = spec.output_recipients.clone();
    let grant = owner.grant(&spec, InputRole::Data, &bed.admitted(), &to).unwrap();
    let charge_with = |input: &InputRef, grant: &str| PrivacyCharge {
        input: input.clone(),
        rdp: None,
        budget: None,
        delta: None,
        grant: grant.to_owned(),
    };

    // Not registered: nothing charges it.
    let err = charge(&bed, "train-1", vec![charge_with(&data, &grant)]).await.unwrap_err();
    assert!(err.contains("is registered"), "{err}");

    // An object id no worker stores under (round 10: a NUL inside the signed statement, which
    // SQLite stored and PostgreSQL answered 500 for) is refused on every backend.
    for bad in ["nul\u{0}obj", "../rows", ""] {
        let err = registry.register_dataset(&register(&owner.signing, &data.sha256, bad)).await;
        assert!(err.unwrap_err().to_string().contains("the object id must be"), "{bad:?}");
    }

    // The owner registers first; a stranger's later claim on the same digest is refused.
    registry.register_dataset(&register(&owner.signing, &data.sha256, "rows")).await.unwrap();
    // Again, the same: nothing changes. Under another id: refused, naming the first (round 10).
    registry.register_dataset(&register(&owner.signing, &data.sha256, "rows")).await.unwrap();
    let err = registry.register_dataset(&register(&owner.signing, &data.sha256, "rows-2")).await;
    assert!(err.unwrap_err().to_string().contains("already registered as object rows"));
    let err = registry.register_dataset(&register(&stranger, &data.sha256, "rows")).await;
    assert!(err.unwrap_err().to_string().contains("registered to another owner"));

    // A self-made "owner" with its own grant cannot spend or void the owner's account.
    let as_stranger = InputRef { owner: stranger.public_key().to_text(), ..data.clone() };
    let stranger_spec = JobSpec { data: as_stranger.clone(), ..spec.clone() };
    let stranger_grant = cloister::parties::sign_grant(
        &stranger,
        &stranger_spec,
        InputRole::Data,
        &bed.admitted(),
        &to,
        None,
    )
    .unwrap();
    let err = charge(&bed, "train-1", vec![charge_with(&as_stranger, &stranger_grant)])
        .await
        .unwrap_err();
    assert!(err.contains("another owner than the registered one"), "{err}");

    // The owner's grant for enclaves of another instance does not charge from this one.
    let elsewhere = Admitted::new(std::slice::from_ref(&bed.compute.measurement), "in_elsewhere");
    let other_grant = owner.grant(&spec, InputRole::Data, &elsewhere, &to).unwrap();
    let err = charge(&bed, "train-1", vec![charge_with(&data, &other_grant)]).await.unwrap_err();
    assert!(err.contains("does not allow instance"), "{err}");

    // The genuine charge counts once; replayed (by the same enclave or any), it charges nothing
    // and says so, with the first outcome.
    let first = charge_verified(&bed, "train-1", vec![charge_with(&data, &grant)]).await.unwrap();
    let PrivacyChargeOutcome::Charged { accounts, replay: false, charged_by, audit_seq } =
        first.answer
    else {
        panic!("not charged: {:?}", first.answer);
    };
    // The answer's checkpoint covers the charge: a rollback that gives the budget back fails
    // `audit verify --expect-checkpoint` with what the enclave holds.
    assert!(first.checkpoint.seq >= audit_seq, "{:?} for entry {audit_seq}", first.checkpoint);
    assert_eq!(accounts[0].jobs, 1);
    for _ in 0..3 {
        let again = charge(&bed, "train-1", vec![charge_with(&data, &grant)]).await.unwrap();
        let PrivacyChargeOutcome::Charged { accounts: replayed, replay, charged_by: by, .. } =
            again
        else {
            panic!("{again:?}");
        };
        assert!(replay);
        assert_eq!((replayed, by.as_str()), (accounts.clone(), charged_by.as_str()));
    }

    // Once the owner revokes its grant for the job, nothing more is charged under it.
    let digest = spec.digest().unwrap();
    cloister::parties::revoke_grant(&registry, &owner.signing, &digest).await.unwrap();
    let err = charge(&bed, "train-1", vec![charge_with(&data, &grant)]).await.unwrap_err();
    assert!(err.contains("revoked its grant"), "{err}");
}

// ---- revocation reaches running work --------------------------------------------------------

#[tokio::test]
async fn an_owner_revokes_its_grant_and_no_worker_starts_the_job() {
    let bed = bed().await;
    let registry = bed.compute.authority.service_client().unwrap();
    let (client, enclave) = bed.attest(&bed.data_provider, &bed.compute.worker).await;
    let (model, data) = bed.upload_demo_inputs(&client, &enclave).await;
    let revoked = job(JobKind::BatchInference, model.clone(), data.clone(), &bed.data_provider);
    let kept = JobSpec { id: "kept".into(), ..revoked.clone() };

    // Anyone may sign a revocation, but only the owner's counts: a stranger "revoking" the job
    // revokes nothing of the owner's.
    let stranger = SigningKey::generate();
    let kept_digest = kept.digest().unwrap();
    cloister::parties::revoke_grant(&registry, &stranger, &kept_digest).await.unwrap();
    // A statement signed by one key presented as another's is refused.
    let forged = stranger
        .sign(
            "grant revocation",
            &cloister_types::api::GrantRevocation { job_digest: kept_digest.clone() },
            unix_now(),
            std::time::Duration::from_secs(60),
        )
        .unwrap();
    let err = registry
        .revoke_grant(&cloister_types::api::RevokeGrant {
            owner: bed.data_provider.id(),
            statement: forged,
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("revocation statement"), "{err}");
    let done = client
        .submit_job(&SubmitJob { spec: kept.clone(), grants: bed.grants(&kept) })
        .await
        .unwrap();
    assert_eq!(done.outputs.len(), 1);

    // Red team, round 8: the owner's grant, which the submitter (and in a federation every
    // participant) holds, posted as that owner's revocation: a token verifies only as the kind
    // it was signed as, so the grant revokes nothing.
    let data_grant = bed.grants(&revoked).remove(1);
    let err = registry
        .revoke_grant(&cloister_types::api::RevokeGrant {
            owner: bed.data_provider.id(),
            statement: data_grant,
        })
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains(r#"the token is a "grant", not a "grant revocation""#), "{err}");

    // The data owner revokes its grant for the other job: the worker, which records every job
    // with the service before starting it, refuses it with its grants otherwise valid.
    let digest = revoked.digest().unwrap();
    let first = cloister::parties::revoke_grant(&registry, &bed.data_provider.signing, &digest)
        .await
        .unwrap();
    let again = cloister::parties::revoke_grant(&registry, &bed.data_provider.signing, &digest)
        .await
        .unwrap();
    assert_eq!(first, again, "revoking again changes nothing");
    let err = client
        .submit_job(&SubmitJob { spec: revoked.clone(), grants: bed.grants(&revoked) })
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("revoked its grant"), "{err}");
    // On the record: the revocation, and the refusal.
    let records = bed.compute.authority.service.store().audit_rows(None).await.unwrap();
    assert_eq!(
        records
            .iter()
            .filter(|r| r.kind == "grant.revoked" && r.subject == digest.to_string())
            .count(),
        1
    );
    assert!(
        records.iter().any(|r| r.kind == "job.authorized"
            && r.subject == revoked.id
            && r.outcome == "refused")
    );
}

#[tokio::test]
async fn a_worker_runs_a_charged_training_job_once() {
    let bed = bed().await;
    let worker = &bed.compute.worker;
    let (client, enclave) = bed.attest(&bed.model_provider, worker).await;
    let registry = bed.compute.authority.service_client().unwrap();
    let rows = bed
        .data_provider
        .seal_register_and_upload(
            &client,
            &enclave,
            &registry,
            "rows",
            "text/csv",
            BREAST_CANCER_CSV,
        )
        .await
        .unwrap();
    let plan = bed
        .model_provider
        .seal_and_upload(&client, &enclave, "plan", "application/json", &training_plan())
        .await
        .unwrap();
    let spec = job(JobKind::Train, plan, rows, &bed.model_provider);
    let grants = bed.grants(&spec);
    client.submit_job(&SubmitJob { spec: spec.clone(), grants: grants.clone() }).await.unwrap();
    // The host submits the same job again: charged once, so it does not run twice.
    let err = client.submit_job(&SubmitJob { spec, grants }).await.unwrap_err();
    assert!(err.to_string().contains("was charged before"), "{err}");
}

// ---- sealed data belongs to whoever sealed it ------------------------------------------------

#[tokio::test]
async fn a_stranger_cannot_grant_a_job_over_data_someone_else_sealed() {
    let bed = bed().await;
    let worker = &bed.compute.worker;
    let (client, enclave) = bed.attest(&bed.data_provider, worker).await;
    let features = split_labels(BREAST_CANCER_CSV).unwrap().features_csv;
    let data = bed
        .data_provider
        .seal_and_upload(&client, &enclave, "patients", "text/csv", &features)
        .await
        .unwrap();
    // The compute provider knows the object id and digest (it stores the ciphertext). It names
    // itself the owner, grants the job with its own key and has the predictions sealed to it.
    let stranger = Party::create("stranger", &bed._tmp.path().join("stranger")).unwrap();
    let model = stranger
        .seal_and_upload(&client, &enclave, "identity-model", "application/onnx", DEMO_MODEL_ONNX)
        .await
        .unwrap();
    let stolen = InputRef { owner: stranger.id(), ..data };
    let spec = job(JobKind::BatchInference, model, stolen, &stranger);
    let to = spec.output_recipients.clone();
    let admitted = bed.admitted();
    let grants = vec![
        stranger.grant(&spec, InputRole::Model, &admitted, &to).unwrap(),
        stranger.grant(&spec, InputRole::Data, &admitted, &to).unwrap(),
    ];
    let err = client.submit_job(&SubmitJob { spec: spec.clone(), grants }).await.unwrap_err();
    assert!(err.to_string().contains("was sealed by owner"), "{err}");
    assert!(!bed.dirs.objects.join(format!("{}-predictions", spec.id)).exists());
}

// ---- instance ids and broker keys (finding 1) ------------------------------------------------

/// A service on an in-memory database trusting bundles from `trusted`, with its admin's
/// principal for a fresh tenant `tenant`.
async fn service(
    trusted: Vec<String>,
    tenant: &str,
    now: i64,
) -> (Arc<cloister_authority::service::Service>, cloister_policy::Principal) {
    let store = cloister_authority::store::Store::connect("sqlite::memory:").await.unwrap();
    let service = cloister_authority::service::Service::open(
        store,
        cloister_seal::RecipientSecretKey::generate(),
    )
    .await
    .unwrap()
    .with_trusted_bundle_sources(trusted);
    let created = service
        .create_tenant(
            &cloister_policy::Principal::Operator,
            &cloister_types::manage::CreateTenant { name: tenant.into() },
            now,
        )
        .await
        .unwrap();
    (Arc::new(service), cloister_policy::Principal::TenantAdmin { tenant: created.tenant.id })
}

/// The tenant id of a tenant admin.
fn tenant_id(admin: &cloister_policy::Principal) -> &str {
    match admin {
        cloister_policy::Principal::TenantAdmin { tenant } => tenant,
        other => panic!("{other:?} is not a tenant admin"),
    }
}

async fn tenant(
    service: &cloister_authority::service::Service,
    name: &str,
    now: i64,
) -> cloister_policy::Principal {
    let created = service
        .create_tenant(
            &cloister_policy::Principal::Operator,
            &cloister_types::manage::CreateTenant { name: name.into() },
            now,
        )
        .await
        .unwrap();
    cloister_policy::Principal::TenantAdmin { tenant: created.tenant.id }
}

/// A `dev-sim` instance admitting `attester`.
async fn sim_instance(
    service: &cloister_authority::service::Service,
    admin: &cloister_policy::Principal,
    name: &str,
    attester: &cloister_attest::SimAttester,
    now: i64,
) -> String {
    use cloister_types::manage::{CreateInstance, PolicySpec, TrustAnchorSpec};
    let request = CreateInstance {
        name: name.into(),
        policy: PolicySpec::Builtin("dev-sim".into()),
        reference_values: serde_json::json!({ "measurements": [Hex(attester.measurement().to_vec())] }),
        trust_anchors: TrustAnchorSpec {
            sim_platform_keys: vec![attester.platform_public_key().to_string()],
            ..TrustAnchorSpec::default()
        },
        settings: Default::default(),
    };
    service.create_instance(admin, &request, now).await.unwrap().id
}

/// An EAR token for a fresh sim enclave attested by instance `id`, binding [`receipt_key`].
async fn sim_ear(
    service: &cloister_authority::service::Service,
    id: &str,
    attester: &cloister_attest::SimAttester,
    now: i64,
) -> String {
    sim_ear_with(service, id, attester, &receipt_key().public_key().into(), now).await
}

/// [`sim_ear`] binding the receipt key `receipt`.
async fn sim_ear_with(
    service: &cloister_authority::service::Service,
    id: &str,
    attester: &cloister_attest::SimAttester,
    receipt: &cloister_sign::AnyVerifyingKey,
    now: i64,
) -> String {
    use rcgen::PublicKeyData as _;
    let nonce = service.challenge(id, now).await.unwrap().nonce;
    let spki = rcgen::KeyPair::generate().unwrap().subject_public_key_info();
    let fingerprint = service.signing_public_key().fingerprint_hex();
    let request =
        testbed::sim_attest_request_with(attester, nonce, spki, &fingerprint, receipt).unwrap();
    service.attest(id, &request, &[0; 32], now).await.unwrap().ear
}

/// The receipt key of every enclave [`sim_ear`] attests: it signs their release requests.
fn receipt_key() -> &'static SigningKey {
    static KEY: std::sync::OnceLock<SigningKey> = std::sync::OnceLock::new();
    KEY.get_or_init(SigningKey::generate)
}

/// Signs `request` again, as the enclave, after a change to it.
fn prove(request: &mut cloister_types::api::KeyReleaseRequest, now: i64) {
    use cloister_types::api::{RELEASE_PROOF, RELEASE_PROOF_VALIDITY, ReleaseProof};
    let proof = ReleaseProof::of(request);
    request.proof =
        receipt_key().sign(RELEASE_PROOF, proof, now as u64, RELEASE_PROOF_VALIDITY).unwrap();
}

/// A release request for `key_id` with `ear`, signed by the enclave at `now`.
fn release_request(
    ear: &str,
    key_id: &Hex,
    after: Option<&CheckpointRef>,
    now: i64,
) -> cloister_types::api::KeyReleaseRequest {
    let context = Default::default();
    cloister_client::release_request(ear, key_id, &context, after, receipt_key(), now as u64)
        .unwrap()
}

#[tokio::test]
async fn a_broker_key_never_reaches_another_tenant_through_a_reused_instance_id() {
    use cloister_authority::service::ServiceError;
    let now = unix_now() as i64;
    let (other, other_admin) = service(Vec::new(), "elsewhere", now).await;
    let (victim, owner) =
        service(vec![other.signing_public_key().fingerprint_hex()], "owner", now).await;
    let attacker = tenant(&victim, "attacker", now).await;
    let owners_tee =
        cloister_attest::SimAttester::new(cloister_attest::SimPlatformKey::generate(), [7; 48]);
    let instance = sim_instance(&victim, &owner, "prod", &owners_tee, now).await;
    let key = victim
        .register_key(
            &owner,
            &cloister_types::manage::RegisterKey {
                name: "patients".into(),
                secret_key: None,
                release_policy: cloister_policy::ReleasePolicy::template(&[Hex(vec![7; 48])]),
                instances: vec![instance.clone()],
            },
            now,
        )
        .await
        .unwrap();

    // The owner moves the instance to another service, whose operator trusts this one.
    let (moved_to, moved_admin) =
        service(vec![victim.signing_public_key().fingerprint_hex()], "owner", now).await;
    let bundle = victim
        .export_instance(
            &owner,
            &instance,
            &moved_to.service_key_document(),
            tenant_id(&moved_admin),
            true,
            now,
        )
        .await
        .unwrap();
    // Another tenant of the target holding the file cannot take the instance: the source
    // signed which tenant it is for.
    let interloper = tenant(&moved_to, "interloper", now).await;
    let err = moved_to.import_instance(&interloper, &bundle, now).await.unwrap_err();
    assert!(err.to_string().contains("exported for another tenant"), "{err}");
    moved_to.import_instance(&moved_admin, &bundle, now).await.unwrap();
    assert!(moved_to.list_instances(&interloper, now).await.unwrap().is_empty());
    victim.delete_instance(&owner, &instance, now).await.unwrap();
    // Deleting detached it from the key, on the record.
    assert!(victim.show_key(&owner, &key.id, now).await.unwrap().instances.is_empty());
    let records = victim.audit_records(&owner, now).await.unwrap();
    assert!(records.iter().any(|r| r.kind == "key.instance-detached" && r.subject == key.id));

    // A self-made bundle reusing the id: signed by nobody the service trusts.
    let (forger, forger_admin) = service(Vec::new(), "forger", now).await;
    let forged_id = sim_instance(&forger, &forger_admin, "prod", &owners_tee, now).await;
    let forged = forger
        .export_instance(
            &forger_admin,
            &forged_id,
            &victim.service_key_document(),
            tenant_id(&attacker),
            true,
            now,
        )
        .await
        .unwrap();
    let err = victim.import_instance(&attacker, &forged, now).await.unwrap_err();
    assert!(err.to_string().contains("does not trust for imports"), "{err}");
    // Even from a trusted source, an id that existed here is never taken again.
    let trusted_id = sim_instance(&other, &other_admin, "x", &owners_tee, now).await;
    let trusted = other
        .export_instance(
            &other_admin,
            &trusted_id,
            &victim.service_key_document(),
            tenant_id(&attacker),
            true,
            now,
        )
        .await
        .unwrap();
    victim.import_instance(&attacker, &trusted, now).await.unwrap();
    victim.delete_instance(&attacker, &trusted_id, now).await.unwrap();
    let again = other
        .export_instance(
            &other_admin,
            &trusted_id,
            &victim.service_key_document(),
            tenant_id(&attacker),
            true,
            now,
        )
        .await
        .unwrap();
    let err = victim.import_instance(&attacker, &again, now).await.unwrap_err();
    assert!(matches!(&err, ServiceError::Conflict(m) if m.contains("never reused")), "{err}");

    // The attacker's own enclave, attested by its own permissive instance, asks for the key:
    // refused, and the refusal names none of the instances the key accepts.
    let attackers_tee =
        cloister_attest::SimAttester::new(cloister_attest::SimPlatformKey::generate(), [7; 48]);
    let own = sim_instance(&victim, &attacker, "own", &attackers_tee, now).await;
    let ear = sim_ear(&victim, &own, &attackers_tee, now).await;
    let request = release_request(&ear, &Hex::parse(&key.key_id).unwrap(), None, now);
    let err = victim.release_key(&request, now).await.unwrap_err().to_string();
    assert!(err.contains("does not accept this request"), "{err}");
    assert!(!err.contains(&instance), "{err}");
}

// ---- the audit log (finding 6) ---------------------------------------------------------------

#[tokio::test]
async fn audit_verify_trusts_only_the_pinned_key_and_detects_a_rolled_back_database() {
    use cloister_authority::audit::{AuditEvent, AuditKind, Outcome, next_row, sign_checkpoint};
    use cloister_authority::service::{Service, ServiceError};
    use cloister_authority::store::Store;
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("authority.db");
    let url = format!("sqlite://{}", file.display());
    let key = cloister_seal::RecipientSecretKey::generate();
    let now = unix_now() as i64;
    let copy = |from: &std::path::Path, to: &std::path::Path| {
        std::fs::copy(from, to).unwrap();
    };

    // A first stretch of history, checkpointed; then a copy of the database (the rollback).
    let store = Store::connect(&url).await.unwrap();
    let service = Service::open(
        store.clone(),
        cloister_seal::RecipientSecretKey::from_text(&key.to_text()).unwrap(),
    )
    .await
    .unwrap();
    let fingerprint = service.signing_public_key().fingerprint_hex();
    tenant(&service, "first", now).await;
    service.checkpoint(now).await.unwrap();
    drop(service);
    store.close().await;
    let old = tmp.path().join("old.db");
    copy(&file, &old);

    // More history: the checkpoint a receipt or EAR token would carry.
    let store = Store::connect(&url).await.unwrap();
    let service = Service::open(
        store.clone(),
        cloister_seal::RecipientSecretKey::from_text(&key.to_text()).unwrap(),
    )
    .await
    .unwrap();
    tenant(&service, "second", now).await;
    service.checkpoint(now + 1).await.unwrap();
    let held = store.last_checkpoint().await.unwrap().unwrap();
    drop(service);
    store.close().await;
    let held = format!("{}:{}", held.seq, held.hash);
    assert!(
        cloister::admin::audit_verify(&url, &fingerprint, std::slice::from_ref(&held), true)
            .await
            .unwrap()
    );

    // Rolled back: the checkpoint held is gone.
    copy(&old, &file);
    assert!(
        !cloister::admin::audit_verify(&url, &fingerprint, std::slice::from_ref(&held), true)
            .await
            .unwrap()
    );

    // Someone with write access rewrites the log and re-signs it with a key of their own,
    // recording that key in the database.
    let store = Store::connect(&url).await.unwrap();
    let forger = SigningKey::generate();
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    for statement in ["DELETE FROM audit_checkpoints", "DELETE FROM audit_log"] {
        sqlx::query(statement).execute(&pool).await.unwrap();
    }
    let event = AuditEvent {
        kind: AuditKind::TenantCreated,
        actor: "operator".into(),
        tenant_id: None,
        subject: "nothing happened".into(),
        outcome: Outcome::Success,
        detail: serde_json::json!({}),
    };
    let row = store.append_audit(|last| next_row(last, &event, now)).await.unwrap();
    store.add_checkpoint(&sign_checkpoint(&forger, &row, now)).await.unwrap();
    sqlx::query("UPDATE meta SET value = $1 WHERE key = 'audit_public_key'")
        .bind(forger.public_key().to_text())
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    store.close().await;
    // Pinned by fingerprint: the database's key is not the pinned one.
    let err = cloister::admin::audit_verify(&url, &fingerprint, &[], true).await.unwrap_err();
    assert!(format!("{err:#}").contains("not the pinned"), "{err:#}");
    // Pinned by the key itself: the forged checkpoint does not verify.
    let service_key_text =
        cloister_authority::service::service_signing_key(&key).unwrap().public_key().to_text();
    assert!(!cloister::admin::audit_verify(&url, &service_key_text, &[], true).await.unwrap());
    // And the service refuses to start on it.
    let store = Store::connect(&url).await.unwrap();
    let err = Service::open(store, key).await.err().unwrap();
    assert!(matches!(err, ServiceError::WrongAuditKey { .. }), "{err}");
}

// ---- tenant Rego (finding 7) -------------------------------------------------------------------

/// A service on a database file the test can tamper with, a tenant `owner` and its `dev-sim`
/// instance admitting `tee`: what the audit-log attacks start from.
struct LogBed {
    _tmp: tempfile::TempDir,
    url: String,
    now: i64,
    store: cloister_authority::store::Store,
    service: cloister_authority::service::Service,
    owner: cloister_policy::Principal,
    tee: cloister_attest::SimAttester,
    instance: String,
}

async fn log_bed() -> LogBed {
    let _tmp = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", _tmp.path().join("authority.db").display());
    let now = unix_now() as i64;
    let store = cloister_authority::store::Store::connect(&url).await.unwrap();
    let service = cloister_authority::service::Service::open(
        store.clone(),
        cloister_seal::RecipientSecretKey::generate(),
    )
    .await
    .unwrap();
    let owner = tenant(&service, "owner", now).await;
    let tee =
        cloister_attest::SimAttester::new(cloister_attest::SimPlatformKey::generate(), [5; 48]);
    let instance = sim_instance(&service, &owner, "prod", &tee, now).await;
    LogBed { _tmp, url, now, store, service, owner, tee, instance }
}

/// A key release is covered by a signed checkpoint before the key leaves, and the answer carries
/// that checkpoint (red team: a release in the unsigned tail of the log could be truncated away
/// unnoticed). Truncating the log from the release on, checkpoints included, still passes
/// `audit verify` on its own, but not for whoever holds the release's checkpoint.
#[tokio::test]
async fn a_released_key_stays_on_the_record_a_truncated_log_cannot_hide_it() {
    let tmp = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", tmp.path().join("authority.db").display());
    let now = unix_now() as i64;
    let store = cloister_authority::store::Store::connect(&url).await.unwrap();
    let service = cloister_authority::service::Service::open(
        store.clone(),
        cloister_seal::RecipientSecretKey::generate(),
    )
    .await
    .unwrap();
    let fingerprint = service.signing_public_key().fingerprint_hex();
    let owner = tenant(&service, "owner", now).await;
    let tee =
        cloister_attest::SimAttester::new(cloister_attest::SimPlatformKey::generate(), [5; 48]);
    let instance = sim_instance(&service, &owner, "prod", &tee, now).await;
    let release = allow_all_key(&service, &owner, &instance, now).await;
    let ear = sim_ear(&service, &instance, &tee, now).await;
    let request = release(ear);
    let response = service.release_key(&request, now).await.unwrap();
    let records = service.audit_records(&owner, now).await.unwrap();
    assert!(records.len() < 64, "no checkpoint is due by count alone: {}", records.len());
    let released = records.iter().filter(|r| r.kind == "key.released").map(|r| r.seq).max();
    let released = released.expect("the release is on the record");
    // The checkpoint comes in the service's signed answer, bound to the request.
    let body = serde_json::to_vec(&request).unwrap();
    let key = service.signing_public_key();
    let verified = cloister_client::answers::verify_answer(
        &key,
        &instance,
        &response.answer,
        &body,
        now as u64,
    )
    .unwrap();
    assert!(
        matches!(verified.answer, Answer::KeyReleased { audit_seq, .. } if audit_seq == released)
    );
    assert!(
        cloister_client::answers::verify_answer(
            &key,
            &instance,
            &response.answer,
            b"{}",
            now as u64
        )
        .is_err(),
        "an answer to another request"
    );
    let held = verified.checkpoint;
    assert!(held.seq >= released, "the checkpoint {} does not cover entry {released}", held.seq);
    let stored = store.checkpoints().await.unwrap();
    assert!(stored.iter().any(|c| c.seq == held.seq && c.hash == held.hash), "{stored:?}");
    drop(release);
    drop(service);
    store.close().await;
    let held = format!("{}:{}", held.seq, held.hash);
    let verify = |expected: Vec<String>| {
        let (url, fingerprint) = (url.clone(), fingerprint.clone());
        async move { cloister::admin::audit_verify(&url, &fingerprint, &expected, true).await }
    };
    assert!(verify(vec![held.clone()]).await.unwrap());

    // Whoever can write the database cuts the log from the release on.
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    for statement in
        ["DELETE FROM audit_checkpoints WHERE seq >= $1", "DELETE FROM audit_log WHERE seq >= $1"]
    {
        sqlx::query(statement).bind(released).execute(&pool).await.unwrap();
    }
    pool.close().await;
    assert!(verify(Vec::new()).await.unwrap(), "a clean cut verifies on its own");
    assert!(!verify(vec![held]).await.unwrap(), "the release's checkpoint exposes the cut");
}

/// Someone with write access cuts the log back behind the running service (entries and their
/// checkpoints), after the service signed checkpoints past the cut (red team: the service went
/// by the highest seq it remembered signing, so every new entry up to it — releases, job
/// records, charges — went unsigned, and their answers carried the older checkpoint). The next
/// release must be covered by a fresh checkpoint, and so must the tail the timer signs.
#[tokio::test]
async fn a_log_cut_back_behind_the_running_service_is_checkpointed_again() {
    let LogBed { _tmp, url, now, store, service, owner, tee, instance } = log_bed().await;
    let release = allow_all_key(&service, &owner, &instance, now).await;
    let ear = sim_ear(&service, &instance, &tee, now).await;
    let cut = store.audit_last().await.unwrap().unwrap().seq;
    service.checkpoint(now).await.unwrap();
    // Throwaway entries, checkpointed (nobody is given these checkpoints)…
    for i in 0..6 {
        tenant(&service, &format!("junk{i}"), now).await;
    }
    let signed = service.checkpoint(now).await.unwrap();
    assert!(signed.seq > cut + 1);
    // …then cut away behind the service's back.
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    for statement in
        ["DELETE FROM audit_checkpoints WHERE seq > $1", "DELETE FROM audit_log WHERE seq > $1"]
    {
        sqlx::query(statement).bind(cut).execute(&pool).await.unwrap();
    }
    pool.close().await;

    let request = release(ear);
    let response = service.release_key(&request, now).await.unwrap();
    let body = serde_json::to_vec(&request).unwrap();
    let key = service.signing_public_key();
    let verified = cloister_client::answers::verify_answer(
        &key,
        &instance,
        &response.answer,
        &body,
        now as u64,
    )
    .unwrap();
    let Answer::KeyReleased { audit_seq, .. } = verified.answer else { panic!("not a release") };
    assert!(audit_seq <= signed.seq, "the release reuses a seq the service signed before");
    assert!(verified.checkpoint.seq >= audit_seq, "{:?} vs {audit_seq}", verified.checkpoint);
    let stored = store.checkpoints().await.unwrap();
    assert!(
        stored
            .iter()
            .any(|c| c.seq == verified.checkpoint.seq && c.hash == verified.checkpoint.hash)
    );
    // The timer's checkpoint, likewise, covers the tail as it is now.
    tenant(&service, "after", now).await;
    let tail = store.audit_last().await.unwrap().unwrap();
    assert!(tail.seq <= signed.seq);
    let timer = service.checkpoint(now).await.unwrap();
    assert_eq!((timer.seq, &timer.hash), (tail.seq, &tail.hash));
    drop(release);
}

/// Red team, round 3: whoever writes the database splices a branch of genuine entries (written
/// by the service itself, checkpointed, then cut away) in right after a key release's entry,
/// with a trigger; the service used to sign the spliced head as it stood, handing the release a
/// checkpoint of a history without it. Now the chain from the release's own entry to the end is
/// recomputed and linked before anything is signed: the release fails closed. Likewise when
/// checkpoints of a cut-away history are left in place past the log's end.
/// Red team, round 7 (finding 8): an exported instance's copy signed its tokens with the token
/// key it shares with the source, and the importing tenant may weaken the copy's trust anchors,
/// so the source's key broker released the source tenant's secret to an enclave the copy
/// admitted. Now the copy rotates to a key of its own at import: its tokens never verify at the
/// source, while the source's own tokens still release there, and those issued before the
/// export still verify at the copy.
#[tokio::test]
async fn an_exported_instances_copy_signs_no_token_the_sources_broker_accepts() {
    let now = unix_now() as i64;
    let (source, owner) = service(Vec::new(), "owner", now).await;
    let (target, importer) =
        service(vec![source.signing_public_key().fingerprint_hex()], "importer", now).await;
    let tee =
        cloister_attest::SimAttester::new(cloister_attest::SimPlatformKey::generate(), [7; 48]);
    let instance = sim_instance(&source, &owner, "exported", &tee, now).await;
    let release = allow_all_key(&source, &owner, &instance, now).await;
    let issued_before = sim_ear(&source, &instance, &tee, now).await;
    let bundle = source
        .export_instance(
            &owner,
            &instance,
            &target.service_key_document(),
            tenant_id(&importer),
            true,
            now,
        )
        .await
        .unwrap();
    target.import_instance(&importer, &bundle, now).await.unwrap();
    let by_the_copy = sim_ear(&target, &instance, &tee, now).await;
    let err = source.release_key(&release(by_the_copy), now).await.unwrap_err();
    assert!(err.to_string().contains("does not accept this request"), "{err}");
    source.release_key(&release(issued_before.clone()), now).await.unwrap();
    source.release_key(&release(sim_ear(&source, &instance, &tee, now).await), now).await.unwrap();
    // What the source issued before the export still verifies at the copy.
    let jwks = target.jwks(&instance, now).await.unwrap();
    let kid = cloister_sign::peek_key_id(&issued_before).unwrap();
    let kids: Vec<&str> =
        jwks["keys"].as_array().unwrap().iter().filter_map(|key| key["kid"].as_str()).collect();
    assert!(kids.contains(&kid.as_str()), "the copy dropped the source's key: {kids:?}");
    assert!(kids.len() >= 2, "the copy did not rotate: {kids:?}");
}

/// Red team, round 7: an anonymous release whose token carries the key id of an instance the
/// broker key lists (with a bad signature) got that instance's verification error, naming its
/// token key, while any other key id got the generic refusal: the difference showed which
/// instances a key lists. Now every unauthenticated refusal reads the same and names nothing.
#[tokio::test]
async fn an_anonymous_release_cannot_tell_which_instances_a_key_lists() {
    use base64::Engine as _;
    let LogBed { _tmp, url: _, now, store: _, service, owner, tee, instance } = log_bed().await;
    let release = allow_all_key(&service, &owner, &instance, now).await;
    let genuine = sim_ear(&service, &instance, &tee, now).await;
    let (signed, _) = genuine.rsplit_once('.').unwrap();
    let listed_kid = format!("{signed}.AAAA");
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(r#"{"alg":"ES256","kid":"ear-0000000000000000"}"#);
    let made_up_kid = format!("{header}.e30.AAAA");
    let refusal = |ear: String| {
        let service = &service;
        let request = release(ear);
        async move { service.release_key(&request, now).await.unwrap_err().to_string() }
    };
    let listed = refusal(listed_kid).await;
    let other = refusal(made_up_kid).await;
    assert_eq!(listed, other);
    assert!(!listed.contains(&instance) && !listed.contains("cloister-es256"), "{listed}");
    assert!(!listed.contains("kb_"), "{listed}");
}

/// Red team, round 7 (finding 9): the host relays an enclave's requests, so it holds the
/// enclave's token; it sent release requests of its own with it (fresh nonces, kilobytes of
/// context of its choosing) and each was answered and audited as a release. Now a request counts
/// only with the enclave's signature over it, and a nonce is answered once: the host's requests,
/// and the enclave's own sent again, are refused without a trace in the log.
#[tokio::test]
async fn a_relayed_token_cannot_be_replayed_or_reused_for_requests_of_the_hosts_making() {
    let LogBed { _tmp, url: _, now, store, service, owner, tee, instance } = log_bed().await;
    let release = allow_all_key(&service, &owner, &instance, now).await;
    let ear = sim_ear(&service, &instance, &tee, now).await;
    let captured = release(ear.clone());
    service.release_key(&captured, now).await.unwrap();
    let before = store.audit_last().await.unwrap().unwrap().seq;

    let mut renonced = captured.clone();
    renonced.nonce = cloister_types::Base64Url::encode(&[7; 32]);
    let mut stuffed = captured.clone();
    stuffed.context.purpose = Some("x".repeat(1000));
    let mut unsigned = captured.clone();
    unsigned.proof.clear();
    for (what, request) in [
        ("again", &captured),
        ("renonced", &renonced),
        ("stuffed", &stuffed),
        ("unsigned", &unsigned),
    ] {
        let err = service.release_key(request, now).await.unwrap_err().to_string();
        assert!(err.contains("does not accept this request"), "{what}: {err}");
    }
    assert_eq!(store.audit_last().await.unwrap().unwrap().seq, before, "a refused request wrote");
    // The enclave's next request, signed, is answered.
    service.release_key(&release(ear), now).await.unwrap();
}

/// Red team, round 7 (HIGH): an entry in the unsigned tail, altered in the database (content
/// rewritten, its hash left as it was), was signed over by the next key release, which verified
/// the chain only from the release's own entry. Now a release verifies from the latest signed
/// checkpoint: it fails closed, and no checkpoint covers the altered entry. The same with every
/// checkpoint deleted and the first entry altered: the chain is verified from its start.
#[tokio::test]
async fn an_altered_unsigned_entry_is_never_signed_over_by_a_key_release() {
    for checkpoints_deleted in [false, true] {
        let LogBed { _tmp, url, now, store, service, owner, tee, instance } = log_bed().await;
        let release = allow_all_key(&service, &owner, &instance, now).await;
        let signed = service.checkpoint(now).await.unwrap().seq;
        let victim = if checkpoints_deleted {
            1
        } else {
            tenant(&service, "victim-entry", now).await;
            signed + 1
        };
        let ear = sim_ear(&service, &instance, &tee, now).await;
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        let mut sql = format!(
            "UPDATE audit_log SET detail = '{{\"name\":\"FORGED\"}}' WHERE seq = {victim};"
        );
        if checkpoints_deleted {
            sql.push_str("DELETE FROM audit_checkpoints;");
        }
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&pool).await.unwrap();
        pool.close().await;
        let err = service.release_key(&release(ear), now).await.unwrap_err();
        assert!(
            matches!(err, cloister_authority::service::ServiceError::AuditLogAltered(_)),
            "deleted={checkpoints_deleted}: {err}"
        );
        let last = store.last_checkpoint().await.unwrap().map_or(0, |c| c.seq);
        assert!(
            last < victim || (!checkpoints_deleted && last == signed),
            "deleted={checkpoints_deleted}: checkpoint {last} signs over altered entry {victim}"
        );
    }
}

/// Red team, round 7: anyone holding a captured attestation result could send a release naming
/// a checkpoint the log never held, and got a false "the audit log was altered" alarm telling
/// the operator to restore the database, with a `key.released success` entry for a release
/// that was never answered. Now such a request is refused before anything is written, with a
/// code that says what it may mean.
#[tokio::test]
async fn a_request_naming_a_checkpoint_the_log_never_held_is_refused_before_any_write() {
    let LogBed { _tmp, url: _, now, store, service, owner, tee, instance } = log_bed().await;
    let release = allow_all_key(&service, &owner, &instance, now).await;
    service.checkpoint(now).await.unwrap();
    let ear = sim_ear(&service, &instance, &tee, now).await;
    let before = store.audit_last().await.unwrap().unwrap().seq;
    for after in [
        CheckpointRef { seq: 3, hash: "00".repeat(32) },
        CheckpointRef { seq: 99_999, hash: "00".repeat(32) },
    ] {
        let mut request = release(ear.clone());
        request.after = Some(after.clone());
        prove(&mut request, now);
        let err = service.release_key(&request, now).await.unwrap_err();
        assert!(
            matches!(err, cloister_authority::service::ServiceError::UnknownCheckpoint(seq) if seq == after.seq),
            "{err}"
        );
        assert!(err.to_string().contains("did not come from an enclave"), "{err}");
    }
    assert_eq!(store.audit_last().await.unwrap().unwrap().seq, before, "a refused request wrote");
    // The genuine checkpoint is accepted.
    let held = service.checkpoint(now).await.unwrap();
    let mut request = release(ear);
    request.after = Some(held);
    prove(&mut request, now);
    service.release_key(&request, now).await.unwrap();
}

#[tokio::test]
async fn a_spliced_or_stale_log_gets_no_checkpoint_and_no_key() {
    let LogBed { _tmp, url, now, store, service, owner, tee, instance } = log_bed().await;
    let release = allow_all_key(&service, &owner, &instance, now).await;
    let cut = service.checkpoint(now).await.unwrap().seq;
    // The branch: genuine entries, checkpointed, saved aside, then cut away.
    for i in 0..3 {
        tenant(&service, &format!("branch{i}"), now).await;
    }
    let head = service.checkpoint(now).await.unwrap().seq;
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let run = |sql: String| {
        let pool = pool.clone();
        async move { sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&pool).await.unwrap() }
    };
    run(format!(
        "CREATE TABLE branch AS SELECT * FROM audit_log WHERE seq > {cut}; \
         DELETE FROM audit_checkpoints WHERE seq > {cut}; DELETE FROM audit_log WHERE seq > {cut};"
    ))
    .await;
    // The attestation's own entry goes in first; the splice follows the release's entry.
    let ear = sim_ear(&service, &instance, &tee, now).await;
    run(format!(
        "CREATE TRIGGER splice AFTER INSERT ON audit_log WHEN NEW.kind = 'key.released' \
         BEGIN INSERT INTO audit_log SELECT * FROM branch WHERE seq = {head}; END;"
    ))
    .await;
    let err = service.release_key(&release(ear.clone()), now).await.unwrap_err().to_string();
    assert!(err.contains("altered"), "{err}");
    assert!(store.checkpoint_at(head).await.unwrap().is_none(), "the spliced head was signed");

    // Checkpoints left past the log's end: no answer carries a checkpoint the log lacks.
    run("DROP TRIGGER splice; DELETE FROM audit_log WHERE seq > 0 AND kind = 'key.released';"
        .into())
    .await;
    let last = store.audit_last().await.unwrap().unwrap().seq;
    let stale = cloister_authority::audit::sign_checkpoint(
        &SigningKey::generate(),
        &store.audit_last().await.unwrap().unwrap(),
        now,
    );
    run(format!(
        "INSERT INTO audit_checkpoints (seq, at, hash, signature) VALUES ({}, {now}, '{}', '{}')",
        last + 5,
        stale.hash,
        stale.signature
    ))
    .await;
    let err = service.release_key(&release(ear), now).await.unwrap_err().to_string();
    assert!(err.contains("altered"), "{err}");
    pool.close().await;
    drop(release);
}

/// Red team, round 4: between two answers for one job, whoever writes the database replaces the
/// job's first entry (a key release) with a branch of genuine entries cut away earlier; the
/// second release's entry then chains onto the branch, and its checkpoint — the one the receipt
/// keeps — covered a history without the first release. Now an enclave's request names the
/// latest checkpoint it holds for the job (`after`), and the service signs the next one only if
/// the log still continues from it: the second release fails closed.
#[tokio::test]
async fn a_job_entry_replaced_between_two_answers_gets_no_later_checkpoint() {
    let LogBed { _tmp, url, now, service, owner, tee, instance, .. } = log_bed().await;
    let first = allow_all_key(&service, &owner, &instance, now).await;
    let second = service
        .register_key(
            &owner,
            &cloister_types::manage::RegisterKey {
                name: "second".into(),
                secret_key: None,
                release_policy: "package cloister.release\nallow := true\n".into(),
                instances: vec![instance.clone()],
            },
            now,
        )
        .await
        .unwrap();
    let ear = sim_ear(&service, &instance, &tee, now).await;
    let cut = service.checkpoint(now).await.unwrap().seq;
    for i in 0..2 {
        tenant(&service, &format!("branch{i}"), now).await;
    }
    service.checkpoint(now).await.unwrap();
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let run = |sql: String| {
        let pool = pool.clone();
        async move { sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&pool).await.unwrap() }
    };
    let cut_away = format!(
        "DELETE FROM audit_checkpoints WHERE seq > {cut}; DELETE FROM audit_log WHERE seq > {cut};"
    );
    run(format!("CREATE TABLE branch AS SELECT * FROM audit_log WHERE seq > {cut}; {cut_away}"))
        .await;

    // The job's first release, and the checkpoint its answer carries.
    let request = first(ear.clone());
    let response = service.release_key(&request, now).await.unwrap();
    let key = service.signing_public_key();
    let body = serde_json::to_vec(&request).unwrap();
    let held = cloister_client::answers::verify_answer(
        &key,
        &instance,
        &response.answer,
        &body,
        now as u64,
    )
    .unwrap()
    .checkpoint;
    assert_eq!(held.seq, cut + 1);
    // The release's entry is replaced by the branch.
    run(format!("{cut_away} INSERT INTO audit_log SELECT * FROM branch;")).await;

    // The second release names the checkpoint the job holds: refused.
    let second = Hex::parse(&second.key_id).unwrap();
    let request = release_request(&ear, &second, Some(&held), now);
    let err = service.release_key(&request, now).await.unwrap_err().to_string();
    assert!(err.contains("altered"), "{err}");
    // Without it the log looks whole from the new entry on: that answer would be given, with a
    // checkpoint of a history that lacks the first release — why the worker always names it.
    service.release_key(&release_request(&ear, &second, None, now), now).await.unwrap();
    pool.close().await;
    drop(first);
}

#[tokio::test]
async fn a_tenant_policy_over_the_time_limit_is_refused_at_upload_or_fails_closed() {
    use cloister_types::manage::{CreateInstance, PolicySpec};
    let now = unix_now() as i64;
    let (service, admin) = service(Vec::new(), "slow", now).await;
    let tee =
        cloister_attest::SimAttester::new(cloister_attest::SimPlatformKey::generate(), [9; 48]);
    // Slow on any input: refused when uploaded.
    let slow = "package cloister.appraisal\n\
                n := count([x | some x in numbers.range(1, 100000); some y in numbers.range(1, 100000); x == y + 1000000])\n\
                result := {\"status\": \"affirming\", \"trustworthiness_vector\": {}, \"reasons\": [sprintf(\"%d\", [n])]}\n";
    let request = CreateInstance {
        name: "always-slow".into(),
        policy: PolicySpec::Rego(slow.into()),
        reference_values: serde_json::json!({}),
        trust_anchors: Default::default(),
        settings: Default::default(),
    };
    let err = service.create_instance(&admin, &request, now).await.unwrap_err();
    assert!(err.to_string().to_lowercase().contains("time"), "{err}");
    // One builtin call asking for 2·10⁹ elements (a 48 GB allocation, before any time check
    // could run): refused without allocating them.
    let huge = "package cloister.appraisal\n\
                result := {\"status\": \"affirming\", \"trustworthiness_vector\": {}, \"reasons\": []} if {\n\
                count(numbers.range(1, 2000000000)) > 0\n\
                }\n";
    let request =
        CreateInstance { name: "huge".into(), policy: PolicySpec::Rego(huge.into()), ..request };
    let err = service.create_instance(&admin, &request, now).await.unwrap_err();
    assert!(err.to_string().contains("would make 2000000000 elements"), "{err}");
    // Slow only on real evidence: accepted, and refused (never affirmed) at attestation.
    let sneaky = "package cloister.appraisal\n\
                  result := {\"status\": \"affirming\", \"trustworthiness_vector\": {}, \"reasons\": []} if {\n\
                  input.tee == \"sim\"\n\
                  count([x | some x in numbers.range(1, 100000); some y in numbers.range(1, 100000); x == y + 1000000]) > 0\n\
                  }\n";
    let id = sim_instance(&service, &admin, "sneaky", &tee, now).await;
    service.update_policy(&admin, &id, &PolicySpec::Rego(sneaky.into()), now).await.unwrap();
    let nonce = service.challenge(&id, now).await.unwrap().nonce;
    let spki = {
        use rcgen::PublicKeyData as _;
        rcgen::KeyPair::generate().unwrap().subject_public_key_info()
    };
    let fingerprint = service.signing_public_key().fingerprint_hex();
    let request = testbed::sim_attest_request(&tee, nonce, spki, &fingerprint).unwrap();
    let err = service.attest(&id, &request, &[0; 32], now).await.unwrap_err();
    assert!(err.to_string().to_lowercase().contains("time"), "{err}");
}

// ---- anonymous callers (finding 5) -------------------------------------------------------------

/// The size of a SQLite database once its write-ahead log is folded in.
async fn database_size(file: &std::path::Path) -> u64 {
    let url = format!("sqlite://{}", file.display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&pool).await.unwrap();
    pool.close().await;
    std::fs::metadata(file).unwrap().len()
}

#[tokio::test]
async fn ten_thousand_hostile_anonymous_requests_leave_the_database_small_and_health_answering() {
    let bed = bed().await;
    let authority = &bed.compute.authority;
    let file = bed.dirs.authority.join("authority.db");
    let before = database_size(&file).await;
    let ca = std::fs::read(&authority.tls_ca).unwrap();
    let http = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .build()
        .unwrap();
    let base = authority.url.clone();
    let instance = format!("{base}/v1/instances/{}", authority.instance_id);
    // Genuine-looking evidence answering a nonce nobody issued.
    let attest = {
        use rcgen::PublicKeyData as _;
        let spki = rcgen::KeyPair::generate().unwrap().subject_public_key_info();
        let request = testbed::sim_attest_request(
            &bed.compute.attester,
            "never-issued".into(),
            spki,
            &authority.fingerprint(),
        )
        .unwrap();
        serde_json::to_vec(&request).unwrap()
    };
    let big = "x".repeat(100_000);
    let health = tokio::spawn({
        let (http, base) = (http.clone(), base.clone());
        async move {
            let mut answered = 0;
            for _ in 0..50 {
                let response = http
                    .get(format!("{base}/healthz"))
                    .timeout(std::time::Duration::from_secs(10))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
                answered += 1;
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            answered
        }
    });
    let mut tasks = Vec::new();
    let mut statuses = std::collections::BTreeMap::<u16, u32>::new();
    for worker in 0..8u32 {
        let (http, base, instance, attest, big) =
            (http.clone(), base.clone(), instance.clone(), attest.clone(), big.clone());
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            for n in 0..1250u32 {
                let owner = SigningKey::generate();
                let request = match (worker * 1250 + n) % 10 {
                    0..=3 => http.post(format!("{instance}/challenge")),
                    4 | 5 => http
                        .post(format!("{instance}/attest"))
                        .header("content-type", "application/json")
                        .body(attest.clone()),
                    6 => http.post(format!("{base}/v1/keys/release")).json(&serde_json::json!({
                        "key_id": Hex(vec![9; 16]),
                        "ear": "a.b.c",
                        "context": { "purpose": big }
                    })),
                    7 => http.post(format!("{base}/v1/keys/release")).json(&serde_json::json!({
                        "key_id": Hex(n.to_be_bytes().repeat(4)),
                        "ear": "a.b.c",
                        "context": { "purpose": "x".repeat(1000) }
                    })),
                    8 => http.post(format!("{base}/v1/datasets")).json(&register(
                        &owner,
                        &Hex(vec![n as u8; 32]),
                        &"y".repeat(200),
                    )),
                    _ => http.get(format!("{base}/v1/instances")).bearer_auth("clt_forged"),
                };
                seen.push(request.send().await.unwrap().status().as_u16());
            }
            seen
        }));
    }
    for task in tasks {
        for status in task.await.unwrap() {
            *statuses.entry(status).or_default() += 1;
        }
    }
    assert_eq!(health.await.unwrap(), 50, "/healthz answered throughout");
    assert_eq!(statuses.values().sum::<u32>(), 10_000);
    assert!(
        statuses.get(&429).copied().unwrap_or(0) > 0,
        "registrations were limited: {statuses:?}"
    );
    let grown = database_size(&file).await.saturating_sub(before);
    eprintln!("10,000 hostile requests: the database grew by {grown} bytes; statuses {statuses:?}");
    assert!(grown < 1 << 20, "the database grew by {grown} bytes: {statuses:?}");
    // Still serving, and still attesting a genuine enclave.
    let response = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    testbed::start_worker(&bed.dirs, &bed.compute.attester, &authority.channel().unwrap())
        .await
        .unwrap();
}

#[tokio::test]
async fn receipts_carry_the_audit_checkpoint_a_rollback_would_lose() {
    let bed = bed().await;
    let worker = &bed.compute.worker;
    let authority = &bed.compute.authority;
    authority.service.checkpoint(unix_now() as i64).await.unwrap();
    let before = authority.service.store().last_checkpoint().await.unwrap().unwrap();
    let (client, enclave) = bed.attest(&bed.data_provider, worker).await;
    let (model, _) = bed.upload_demo_inputs(&client, &enclave).await;
    // The data is sealed to a broker key: the job makes a key release after its record.
    let key = authority
        .register_broker_key("records", std::slice::from_ref(&bed.compute.measurement))
        .await
        .unwrap();
    let features = split_labels(BREAST_CANCER_CSV).unwrap().features_csv;
    let data = bed
        .data_provider
        .seal_to_broker_and_upload(&client, &key.recipient, "records", "text/csv", &features)
        .await
        .unwrap();
    let spec = job(JobKind::BatchInference, model, data, &bed.data_provider);
    let grants = bed.grants(&spec);
    let done = client.submit_job(&SubmitJob { spec: spec.clone(), grants }).await.unwrap();
    let sealed = client.get_object(&done.outputs[0].object_id).await.unwrap();
    let receipt =
        cloister::parties::verify_receipt(&done.receipt, &enclave, &spec, &sealed).unwrap();
    // The checkpoint covers the job's own record and its key release, signed before the
    // service answered (red team: it covered the record only, so the release after it could be
    // cut off while the receipt still verified): not the older one that happened to be the
    // latest.
    let records = authority.service.store().audit_rows(None).await.unwrap();
    let recorded = records
        .iter()
        .find(|r| r.kind == "job.authorized" && r.subject == spec.id)
        .expect("the job is on the record");
    let released = records
        .iter()
        .find(|r| r.kind == "key.released" && r.detail.contains(&spec.id))
        .expect("the release is on the record");
    assert!(released.seq > recorded.seq);
    assert!(receipt.audit_checkpoint.seq >= released.seq, "{receipt:?}");
    assert!(receipt.audit_checkpoint.seq > before.seq);
    let covered = records.iter().find(|r| r.seq == receipt.audit_checkpoint.seq).unwrap();
    assert_eq!(receipt.audit_checkpoint.hash, covered.hash);
    // What the data owner holds is what `audit verify --expect-checkpoint` takes.
    let url = format!("sqlite://{}", bed.dirs.authority.join("authority.db").display());
    let held = format!("{}:{}", receipt.audit_checkpoint.seq, receipt.audit_checkpoint.hash);
    let fingerprint = authority.fingerprint();
    assert!(cloister::admin::audit_verify(&url, &fingerprint, &[held], true).await.unwrap());
}

/// The worker side of round 4: a real worker names the checkpoint of its job's record when it
/// asks for the job's key, so a database that swaps the record for a branch of genuine entries
/// right after the service checkpointed it (an SQLite trigger, as the red team did) gets the
/// release refused and the job does not run. A worker that left `after` out would get the key
/// and a receipt whose checkpoint covers a history without the record.
#[tokio::test]
async fn a_worker_names_its_jobs_checkpoint_so_a_swapped_record_stops_the_job() {
    let bed = bed().await;
    let worker = &bed.compute.worker;
    let authority = &bed.compute.authority;
    let (client, enclave) = bed.attest(&bed.data_provider, worker).await;
    let (model, _) = bed.upload_demo_inputs(&client, &enclave).await;
    let key = authority
        .register_broker_key("records", std::slice::from_ref(&bed.compute.measurement))
        .await
        .unwrap();
    let features = split_labels(BREAST_CANCER_CSV).unwrap().features_csv;
    let data = bed
        .data_provider
        .seal_to_broker_and_upload(&client, &key.recipient, "records", "text/csv", &features)
        .await
        .unwrap();
    let now = unix_now() as i64;
    let service = &authority.service;
    let cut = service.checkpoint(now).await.unwrap().seq;
    for i in 0..2 {
        tenant(service, &format!("branch{i}"), now).await;
    }
    service.checkpoint(now).await.unwrap();
    let url = format!("sqlite://{}", bed.dirs.authority.join("authority.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE branch AS SELECT * FROM audit_log WHERE seq > {cut}; \
         DELETE FROM audit_checkpoints WHERE seq > {cut}; DELETE FROM audit_log WHERE seq > {cut}; \
         CREATE TRIGGER swap AFTER INSERT ON audit_checkpoints \
         WHEN (SELECT kind FROM audit_log WHERE seq = NEW.seq) = 'job.authorized' BEGIN \
           DELETE FROM audit_checkpoints WHERE seq > {cut}; DELETE FROM audit_log WHERE seq > {cut}; \
           INSERT INTO audit_log SELECT * FROM branch; END;"
    )))
    .execute(&pool)
    .await
    .unwrap();
    let spec = job(JobKind::BatchInference, model, data, &bed.data_provider);
    let grants = bed.grants(&spec);
    let err = client.submit_job(&SubmitJob { spec, grants }).await.unwrap_err().to_string();
    // The service fails closed (its log says why: the log does not continue from the
    // checkpoint the enclave holds: that checkpoint is gone from it) with a typed refusal the
    // submitter sees; the worker runs nothing.
    assert!(err.contains("did not release an input's key"), "{err}");
    assert!(err.contains("(409)") && err.contains("not in this service's log"), "{err}");
    pool.close().await;
}

/// The batch path of round 5: a batch job is recorded when it is accepted and again when an
/// enclave runs it. The second record names the first's checkpoint (from the signed terms), so a
/// database that swaps the first record for a branch of genuine entries right after the service
/// checkpointed it gets the second record refused, and the job fails instead of finishing with a
/// receipt whose checkpoint lacks its acceptance.
#[tokio::test]
async fn a_batch_jobs_first_record_swapped_behind_the_service_fails_the_job() {
    use cloister_types::batch::{BatchState, SubmitBatch};
    let bed = bed().await;
    let worker = &bed.compute.worker;
    let authority = &bed.compute.authority;
    let (client, _) = bed.attest(&bed.data_provider, worker).await;
    let measurements = std::slice::from_ref(&bed.compute.measurement);
    let model_key = authority.register_broker_key("model", measurements).await.unwrap();
    let data_key = authority.register_broker_key("records", measurements).await.unwrap();
    let model = bed
        .model_provider
        .seal_to_broker_and_upload(
            &client,
            &model_key.recipient,
            "m",
            "application/onnx",
            DEMO_MODEL_ONNX,
        )
        .await
        .unwrap();
    let features = split_labels(BREAST_CANCER_CSV).unwrap().features_csv;
    let data = bed
        .data_provider
        .seal_to_broker_and_upload(&client, &data_key.recipient, "d", "text/csv", &features)
        .await
        .unwrap();
    let now = unix_now() as i64;
    let service = &authority.service;
    let cut = service.checkpoint(now).await.unwrap().seq;
    for i in 0..2 {
        tenant(service, &format!("branch{i}"), now).await;
    }
    service.checkpoint(now).await.unwrap();
    let url = format!("sqlite://{}", bed.dirs.authority.join("authority.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE branch AS SELECT * FROM audit_log WHERE seq > {cut}; \
         DELETE FROM audit_checkpoints WHERE seq > {cut}; DELETE FROM audit_log WHERE seq > {cut}; \
         CREATE TABLE fired (once INTEGER); \
         CREATE TRIGGER swap AFTER INSERT ON audit_checkpoints \
         WHEN (SELECT kind FROM audit_log WHERE seq = NEW.seq) = 'job.authorized' \
           AND NOT EXISTS (SELECT 1 FROM fired) \
         BEGIN \
           INSERT INTO fired VALUES (1); \
           DELETE FROM audit_checkpoints WHERE seq > {cut}; DELETE FROM audit_log WHERE seq > {cut}; \
           INSERT INTO audit_log SELECT * FROM branch; END;"
    )))
    .execute(&pool)
    .await
    .unwrap();
    let spec = job(JobKind::BatchInference, model, data, &bed.data_provider);
    let job_id = spec.id.clone();
    let grants = bed.grants(&spec);
    client.submit_batch(&SubmitBatch { spec, grants, chunk_rows: 128 }).await.unwrap();
    let started = std::time::Instant::now();
    let status = loop {
        let status = client.batch_status(&job_id).await.unwrap();
        if matches!(status.state, BatchState::Done | BatchState::Failed) {
            break status;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(120), "{status:?}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(status.state, BatchState::Failed, "{status:?}");
    pool.close().await;
}

// ---- revocation reaches running work (issue 13) ------------------------------------------------

/// A worker runs on an SGX platform whose collateral the service refreshes under it. While the
/// platform's TCB is up to date its jobs get their keys; once Intel's TCB info says the level
/// is revoked, the broker refuses the result the worker holds, the worker attests again once and
/// is refused, and the job fails saying so; after a refresh that says up to date again, the
/// worker's renewal passes and its next job runs. Without the broker's check the job after the
/// revocation would have run on the worker's earlier token.
#[tokio::test]
async fn a_worker_whose_platform_tcb_is_revoked_under_it_gets_no_key_until_it_renews() {
    use cloister_types::manage::{CreateInstance, PolicySpec, RegisterKey, TrustAnchorSpec};
    let bed = bed().await;
    let now = unix_now() as i64;
    let authority = &bed.compute.authority;
    let platform = Arc::new(cloister_fakehw::dcap::DcapPlatform::sgx(now).unwrap());
    let measurement = platform.measurement();
    let load = |status: &str, issued: i64, evaluation: u32| {
        let bundle = platform.collateral_bundle(status, issued, evaluation).unwrap();
        authority.service.collateral().load_bundle(&bundle).unwrap();
    };
    load("UpToDate", now - 3600, 17);
    let admin = authority.tenant_admin().unwrap();
    let instance = admin
        .create_instance(&CreateInstance {
            name: "sgx-production".into(),
            policy: PolicySpec::Builtin("default".into()),
            reference_values: serde_json::json!({ "measurements": [measurement] }),
            trust_anchors: TrustAnchorSpec {
                // An ordinary root (claims say `instance`), so that the production policy
                // judges the TCB; under `test_roots` it would refuse the platform outright.
                roots: [("sgx".to_owned(), vec![platform.root_pem()])].into_iter().collect(),
                ..TrustAnchorSpec::default()
            },
            settings: Default::default(),
        })
        .await
        .unwrap()
        .id;
    let key = admin
        .register_key(&RegisterKey {
            name: "patients".into(),
            secret_key: None,
            release_policy: cloister_policy::ReleasePolicy::template(std::slice::from_ref(
                &measurement,
            )),
            instances: vec![instance.clone()],
        })
        .await
        .unwrap();
    let client =
        AuthorityClient::for_instance_with(&authority.url, &instance, &authority.tls).unwrap();
    let ca_pem = client.instance().await.unwrap().ca_certificate_pem;
    let channel = ServiceChannel::new(client, &instance, authority.service.signing_public_key());
    let dirs = ComputeDirs::create(&bed._tmp.path().join("sgx-compute")).unwrap();
    let worker = testbed::start_worker(&dirs, &platform, &channel).await.unwrap();

    let measurements = std::slice::from_ref(&measurement);
    let (client, enclave) = bed
        .data_provider
        .attest_worker(&worker.url, &ca_pem, measurements, &[TeeKind::Sgx])
        .await
        .unwrap();
    let features = split_labels(BREAST_CANCER_CSV).unwrap().features_csv;
    let data = bed
        .data_provider
        .seal_to_broker_and_upload(&client, &key.recipient, "records", "text/csv", &features)
        .await
        .unwrap();
    let model = bed
        .model_provider
        .seal_and_upload(&client, &enclave, "model", "application/onnx", DEMO_MODEL_ONNX)
        .await
        .unwrap();
    let admitted = Admitted::new(measurements, &instance);
    let submit = |spec: JobSpec| {
        let to = spec.output_recipients.clone();
        let grants = vec![
            bed.model_provider.grant(&spec, InputRole::Model, &admitted, &to).unwrap(),
            bed.data_provider.grant(&spec, InputRole::Data, &admitted, &to).unwrap(),
        ];
        let client = client.clone();
        async move { client.submit_job(&SubmitJob { spec, grants }).await }
    };
    let new_job = || job(JobKind::BatchInference, model.clone(), data.clone(), &bed.data_provider);
    let attestations = || async {
        let records = authority.service.audit_records(&cloister_policy::Principal::Operator, 0);
        let records = records.await.unwrap();
        let of = |outcome: &str| {
            records
                .iter()
                .filter(|r| {
                    r.kind == "attestation" && r.subject == instance && r.outcome == outcome
                })
                .count()
        };
        (of("success"), of("refused"))
    };

    // Up to date: the job gets its key on the worker's first result.
    assert_eq!(submit(new_job()).await.unwrap().outputs.len(), 1);
    assert_eq!(attestations().await, (1, 0));
    let first = worker.worker.identity.ear().to_owned();

    // Intel revokes the platform's TCB level; the service's collateral is refreshed.
    load("Revoked", now - 60, 18);
    let refused = new_job();
    let err = submit(refused.clone()).await.unwrap_err().to_string();
    assert!(err.contains("did not release"), "{err}");
    assert!(err.contains("refused to appraise it again"), "{err}");
    assert!(err.contains("TCB status is Revoked"), "{err}");
    assert!(!dirs.objects.join(format!("{}-predictions", refused.id)).exists());
    // It tried once, and kept the result it had.
    assert_eq!(attestations().await, (1, 1));
    assert_eq!(worker.worker.identity.ear(), first);
    let releases = authority.service.audit_records(&cloister_policy::Principal::Operator, 0);
    let last = releases.await.unwrap().into_iter().rev().find(|r| r.kind == "key.released");
    let last = last.unwrap();
    assert_eq!(last.outcome, "refused");
    assert!(last.detail["reason"].as_str().unwrap().contains("has changed since"));

    // A refresh that says up to date again: the worker renews on the broker's word, and runs.
    load("UpToDate", now, 19);
    assert_eq!(submit(new_job()).await.unwrap().outputs.len(), 1);
    assert_eq!(attestations().await, (2, 1));
    let renewed = worker.worker.identity.ear();
    assert_ne!(renewed, first);
    // The renewal is the enclave's current attestation (token and certificate); the next job
    // needs no renewal.
    assert!(worker.worker.identity.certificate_chain_pem().contains("CERTIFICATE"));
    assert_eq!(submit(new_job()).await.unwrap().outputs.len(), 1);
    assert_eq!(attestations().await, (2, 1));
}

// ---- device keys (issue 15) ------------------------------------------------------------------

/// Registers a key of `owner` whose release policy allows everything, listing `instance`, and
/// returns how to ask for it with an EAR token: whatever a release refuses is refused by the
/// service's own checks, never by the owner's policy.
async fn allow_all_key(
    service: &cloister_authority::service::Service,
    owner: &cloister_policy::Principal,
    instance: &str,
    now: i64,
) -> impl Fn(String) -> cloister_types::api::KeyReleaseRequest {
    let key_id = allow_all_key_id(service, owner, instance, now).await;
    move |ear| release_request(&ear, &key_id, None, now)
}

/// Registers a broker key for `instance` whose policy allows every release; returns its id.
async fn allow_all_key_id(
    service: &cloister_authority::service::Service,
    owner: &cloister_policy::Principal,
    instance: &str,
    now: i64,
) -> Hex {
    let key = service
        .register_key(
            owner,
            &cloister_types::manage::RegisterKey {
                name: "anything".into(),
                secret_key: None,
                release_policy: "package cloister.release\nallow := true\n".into(),
                instances: vec![instance.to_owned()],
            },
            now,
        )
        .await
        .unwrap();
    Hex::parse(&key.key_id).unwrap()
}

/// A fresh challenge of `instance` answered by `device`, binding fresh enclave-like keys (the
/// receipt key is [`receipt_key`], so its release requests carry a valid proof and meet the
/// broker's later checks) and the service.
async fn device_request(
    service: &cloister_authority::service::Service,
    instance: &str,
    device: &dyn cloister_attest::Attester,
    now: i64,
) -> cloister_types::api::AttestRequest {
    use rcgen::PublicKeyData as _;
    let nonce = service.challenge(instance, now).await.unwrap().nonce;
    let spki = rcgen::KeyPair::generate().unwrap().subject_public_key_info();
    let runtime_data = cloister_types::RuntimeData {
        nonce,
        hpke_pk: cloister_seal::RecipientSecretKey::generate().public_key().to_text(),
        tls_spki_sha256: Hex(sha2::Sha256::digest(&spki).to_vec()),
        receipt_pk: receipt_key().public_key().to_text(),
        extra: [(
            cloister_types::api::SERVICE_KEY_FIELD.to_owned(),
            service.signing_public_key().fingerprint_hex().into(),
        )]
        .into_iter()
        .collect(),
    };
    cloister_types::api::AttestRequest {
        evidence: device.attest(&runtime_data).unwrap(),
        tls_spki: cloister_types::Base64Url(spki),
    }
}

/// A PSA device's token is appraised (its software components against reference values) and
/// admitted with an EAR token, but it attests a device's key, not an enclave: no enclave
/// certificate is issued on it, and the key broker releases nothing to it — even under a key
/// whose release policy allows everything and that lists the device's instance.
#[tokio::test]
async fn a_psa_device_is_admitted_but_gets_no_enclave_certificate_and_no_key() {
    use cloister_fakehw::psa::{Component, PsaDevice};
    use cloister_types::manage::{CreateInstance, PolicySpec, TrustAnchorSpec};
    let now = unix_now() as i64;
    let (service, owner) = service(Vec::new(), "owner", now).await;
    let device = PsaDevice::new();
    let mut other = PsaDevice::new();
    other.components[0].measurement_value = vec![0x66; 32];
    let component = |c: &Component| {
        serde_json::json!({ "measurement_value": Hex(c.measurement_value.clone()),
                            "signer_id": Hex(c.signer_id.clone()) })
    };
    let request = CreateInstance {
        name: "gateways".into(),
        policy: PolicySpec::Builtin("default".into()),
        reference_values: serde_json::json!({
            "psa_software_components": device.components.iter().map(component).collect::<Vec<_>>(),
        }),
        trust_anchors: TrustAnchorSpec {
            roots: [("psa".to_owned(), vec![device.anchor_jwk(), other.anchor_jwk()])]
                .into_iter()
                .collect(),
            ..TrustAnchorSpec::default()
        },
        settings: Default::default(),
    };
    let instance = service.create_instance(&owner, &request, now).await.unwrap().id;
    let admitting = device_request(&service, &instance, &device, now).await;
    let admitted = service.attest(&instance, &admitting, &[0; 32], now).await.unwrap();
    assert!(admitted.certificate_chain_pem.is_empty(), "{}", admitted.certificate_chain_pem);
    assert!(!admitted.ear.is_empty());

    // Another firmware than the reference: refused by the policy, naming the component.
    let refused = device_request(&service, &instance, &other, now).await;
    let err = service.attest(&instance, &refused, &[0; 32], now).await.unwrap_err().to_string();
    assert!(err.contains("software component SPE"), "{err}");

    // A key whose policy allows anything, listing the device's instance: nothing is released.
    let release = allow_all_key(&service, &owner, &instance, now).await;
    let release = release(admitted.ear);
    let err = service.release_key(&release, now).await.unwrap_err().to_string();
    assert!(err.contains("attests a device's key, not an enclave"), "{err}");

    // Nor does it act as an enclave anywhere else (red team, issue 15): no job record, no
    // ledger charge, no usage reservation — the EAR is refused before any statement is read.
    let statement = cloister_types::api::RecordJob {
        ear: release.ear.clone(),
        statement: "not read".into(),
        nonce: "A".repeat(32),
        after: None,
    };
    let err = service.record_job(&instance, &statement, &[0; 32], now).await.unwrap_err();
    assert!(err.to_string().contains("attests a device's key"), "{err}");
    let err = service.reserve_usage(&instance, &statement, &[0; 32], now).await.unwrap_err();
    assert!(err.to_string().contains("attests a device's key"), "{err}");
    let err = service.reserve_requests(&instance, &statement, &[0; 32], now).await.unwrap_err();
    assert!(err.to_string().contains("attests a device's key"), "{err}");
    let err = service.charge_privacy(&instance, &statement, &[0; 32], now).await.unwrap_err();
    assert!(err.to_string().contains("attests a device's key"), "{err}");

    // And no instance is exported to a "service" that a device attests: the device's evidence
    // binds the target's keys, the instance's own policy would admit it, and it is refused.
    let elsewhere = self::service(Vec::new(), "elsewhere", now).await.0;
    let mut target = elsewhere.service_key_document();
    let nonce = "export-nonce".to_owned();
    let runtime_data = cloister_types::RuntimeData {
        nonce,
        hpke_pk: target.public_key.clone(),
        tls_spki_sha256: Hex(vec![0; 32]),
        receipt_pk: target.signing_key.clone(),
        extra: [(
            cloister_types::api::SERVICE_KEY_FIELD.to_owned(),
            target.signing_key_sha256.to_string().into(),
        )]
        .into_iter()
        .collect(),
    };
    target.attestation = Some(cloister_attest::Attester::attest(&device, &runtime_data).unwrap());
    let tenant = tenant_id(&owner).to_owned();
    let err =
        service.export_instance(&owner, &instance, &target, &tenant, false, now).await.unwrap_err();
    assert!(err.to_string().contains("no enclave's"), "{err}");
}

/// An Android key is admitted only from a locked device with verified boot whose key lives in
/// TrustZone or StrongBox (the default policy, with the app's measurement as reference), and
/// never as an enclave: no certificate, no key.
#[tokio::test]
async fn an_android_key_is_admitted_only_from_a_locked_verified_device_and_never_as_an_enclave() {
    use cloister_fakehw::android::{AndroidDevice, SecurityLevel};
    use cloister_types::manage::{CreateInstance, PolicySpec, TrustAnchorSpec};
    let now = unix_now() as i64;
    let (service, owner) = service(Vec::new(), "owner", now).await;
    let mut device = AndroidDevice::new(now).unwrap();
    let request = CreateInstance {
        name: "phones".into(),
        policy: PolicySpec::Builtin("default".into()),
        reference_values: serde_json::json!({ "measurements": [Hex(AndroidDevice::measurement())] }),
        trust_anchors: TrustAnchorSpec {
            roots: [("android".to_owned(), vec![device.root_pem()])].into_iter().collect(),
            ..TrustAnchorSpec::default()
        },
        settings: Default::default(),
    };
    let instance = service.create_instance(&owner, &request, now).await.unwrap().id;
    let admitting = device_request(&service, &instance, &device, now).await;
    let admitted = service.attest(&instance, &admitting, &[0; 32], now).await.unwrap();
    assert!(admitted.certificate_chain_pem.is_empty(), "{}", admitted.certificate_chain_pem);

    device.locked = false;
    let unlocked = device_request(&service, &instance, &device, now).await;
    let err = service.attest(&instance, &unlocked, &[0; 32], now).await.unwrap_err().to_string();
    assert!(err.contains("bootloader is unlocked"), "{err}");
    device.locked = true;
    device.boot_state = 2;
    let unverified = device_request(&service, &instance, &device, now).await;
    let err = service.attest(&instance, &unverified, &[0; 32], now).await.unwrap_err().to_string();
    assert!(err.contains("verified boot state is unverified"), "{err}");
    device.boot_state = 0;
    device.level = SecurityLevel::Software;
    let software = device_request(&service, &instance, &device, now).await;
    let err = service.attest(&instance, &software, &[0; 32], now).await.unwrap_err().to_string();
    assert!(err.contains("security level software"), "{err}");

    let release = allow_all_key(&service, &owner, &instance, now).await;
    let release = release(admitted.ear);
    let err = service.release_key(&release, now).await.unwrap_err().to_string();
    assert!(err.contains("attests a device's key, not an enclave"), "{err}");
}

/// An instance configured for ShangMi signs its EAR tokens with SM2 (`SM2SM3`), publishes the
/// SM2 key in its JWKS, keeps the suite across key rotations, and the key broker verifies its
/// tokens; an ES256 token re-labelled with the SM2 key's id is refused.
#[tokio::test]
async fn a_shangmi_instance_signs_its_tokens_with_sm2_and_the_broker_verifies_them() {
    use base64::Engine as _;
    use cloister_types::manage::{
        CreateInstance, InstanceSettings, PolicySpec, TokenSigning, TrustAnchorSpec,
    };
    let now = unix_now() as i64;
    let (service, owner) = service(Vec::new(), "owner", now).await;
    let tee =
        cloister_attest::SimAttester::new(cloister_attest::SimPlatformKey::generate(), [9; 48]);
    let request = CreateInstance {
        name: "guomi".into(),
        policy: PolicySpec::Builtin("dev-sim".into()),
        reference_values: serde_json::json!({ "measurements": [Hex(vec![9; 48])] }),
        trust_anchors: TrustAnchorSpec {
            sim_platform_keys: vec![tee.platform_public_key().to_string()],
            ..TrustAnchorSpec::default()
        },
        settings: InstanceSettings { token_signing: TokenSigning::Sm2, ..Default::default() },
    };
    let instance = service.create_instance(&owner, &request, now).await.unwrap().id;
    // Its enclaves' receipt keys are SM2 too: one with an ES256 receipt key is refused.
    let enclave =
        cloister_sign::AnySigningKey::generate(cloister_sign::SignatureSuite::Sm2).unwrap();
    let refused = {
        use rcgen::PublicKeyData as _;
        let nonce = service.challenge(&instance, now).await.unwrap().nonce;
        let spki = rcgen::KeyPair::generate().unwrap().subject_public_key_info();
        let fingerprint = service.signing_public_key().fingerprint_hex();
        let es256 = receipt_key().public_key().into();
        let request =
            testbed::sim_attest_request_with(&tee, nonce, spki, &fingerprint, &es256).unwrap();
        service.attest(&instance, &request, &[0; 32], now).await.unwrap_err().to_string()
    };
    assert!(refused.contains("an instance and its enclaves use one suite"), "{refused}");
    // An enclave whose receipt key is no key at all is refused too (not let through unchecked).
    for bogus in ["receipt", "", "cloister-sm2sig:AAAA"] {
        use rcgen::PublicKeyData as _;
        let nonce = service.challenge(&instance, now).await.unwrap().nonce;
        let spki = rcgen::KeyPair::generate().unwrap().subject_public_key_info();
        let fingerprint = service.signing_public_key().fingerprint_hex();
        let request =
            testbed::sim_attest_request_binding(&tee, nonce, spki, &fingerprint, bogus).unwrap();
        let refused = service.attest(&instance, &request, &[0; 32], now).await.unwrap_err();
        assert!(refused.to_string().contains("receipt_pk"), "{bogus:?}: {refused}");
    }
    let ear = sim_ear_with(&service, &instance, &tee, &enclave.public_key(), now).await;
    let header = ear.split('.').next().unwrap();
    let header: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header).unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "SM2SM3", "{header}");
    let jwks = service.jwks(&instance, now).await.unwrap();
    assert_eq!(jwks["keys"][0]["crv"], "SM2", "{jwks}");
    let body: cloister_types::EarBody =
        cloister_sign::verify_with_jwks(cloister_types::ear::EAR_NAME, &jwks, &ear, now as u64)
            .unwrap()
            .claims;
    assert_eq!(body.submods["cpu0"].claims.tee, TeeKind::Sim);

    // The broker verifies SM2 tokens, and the enclave's SM2 release proofs, like ES256 ones.
    let key_id = allow_all_key_id(&service, &owner, &instance, now).await;
    let release = |ear: String| {
        let context = Default::default();
        cloister_client::release_request(&ear, &key_id, &context, None, &enclave, now as u64)
            .unwrap()
    };
    service.release_key(&release(ear.clone()), now).await.unwrap();
    // The same request proved by an ES256 key the token does not bind is refused.
    let mut unbound = release(ear.clone());
    prove(&mut unbound, now);
    let refused = service.release_key(&unbound, now).await.unwrap_err().to_string();
    assert!(refused.contains("proof") || refused.contains("authenticat"), "{refused}");

    // An ES256 token claiming the SM2 key's id (algorithm confusion) is refused.
    let kid = cloister_sign::peek_key_id(&ear).unwrap();
    let es256 = SigningKey::generate().with_key_id(&kid);
    let forged = es256.sign("EAR", &body, now as u64, std::time::Duration::from_secs(60)).unwrap();
    assert!(service.release_key(&release(forged), now).await.is_err());

    // A rotation keeps the suite.
    service.rotate_keys(&owner, &instance, now).await.unwrap();
    let rotated = sim_ear_with(&service, &instance, &tee, &enclave.public_key(), now).await;
    assert_ne!(cloister_sign::peek_key_id(&rotated), Some(kid));
    let jwks = service.jwks(&instance, now).await.unwrap();
    assert!(jwks["keys"].as_array().unwrap().iter().all(|k| k["crv"] == "SM2"), "{jwks}");
    service.release_key(&release(rotated), now).await.unwrap();
}
