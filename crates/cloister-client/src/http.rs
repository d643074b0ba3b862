//! HTTP clients for the attestation service and for enclave workers (over attested TLS).

use std::sync::Arc;

use cloister_types::api::{
    AttestRequest, AttestResponse, ChallengeResponse, DatasetRegistered, ErrorBody, GrantRevoked,
    IdentityResponse, InstanceInfo, JobDone, KeyReleaseRequest, KeyReleaseResponse, ObjectStored,
    RegisterDataset, RevokeGrant, ServiceKeyDocument, SubmitJob,
};
use serde::de::DeserializeOwned;

use crate::enclave::{EnclaveError, Expectations, VerifiedEnclave};
use crate::service_tls::ServiceTls;
use crate::tls::{AttestedServerVerifier, client_config};

/// Why a request to a service failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The connection failed (including an enclave that failed attestation during the TLS
    /// handshake; the reason is in the message).
    #[error("cannot reach {url}: {reason}")]
    Transport {
        /// Where.
        url: String,
        /// Why (the whole error chain).
        reason: String,
    },
    /// The service answered with an error.
    #[error("{url} refused the request ({status}): {message}")]
    Refused {
        /// Where.
        url: String,
        /// HTTP status.
        status: u16,
        /// The service's error code (`not_authorised`, `over_privacy_budget`, …); empty when the
        /// answer had none.
        code: String,
        /// The service's public message.
        message: String,
    },
    /// The answer could not be decoded.
    #[error("{url} sent an answer that cannot be read: {reason}")]
    BadAnswer {
        /// Where.
        url: String,
        /// Why.
        reason: String,
    },
    /// An answer the enclave would act on is not signed by the pinned attestation service, or
    /// answers something else (another request, instance or job): someone between the enclave
    /// and the service made it up, or the service is not the one pinned.
    #[error("the answer from {url} was refused: {reason}; nothing was done on it")]
    ForgedAnswer {
        /// Where.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The enclave failed verification.
    #[error(transparent)]
    Enclave(#[from] EnclaveError),
    /// A request could not be signed.
    #[error("cannot sign the {what}: {reason}")]
    Signing {
        /// What was to be signed.
        what: &'static str,
        /// Why it failed.
        reason: String,
    },
}

pub(crate) fn transport(url: &str, error: reqwest::Error) -> ClientError {
    let mut reason = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(inner) = source {
        reason.push_str(": ");
        reason.push_str(&inner.to_string());
        source = inner.source();
    }
    ClientError::Transport { url: url.to_owned(), reason }
}

/// The error for a refused request: the service's code and message from its error body, or the
/// start of whatever it sent.
pub(crate) fn refused(url: String, status: u16, body: &[u8]) -> ClientError {
    let (code, message) = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(body) => (body.code, body.message),
        Err(_) => (String::new(), String::from_utf8_lossy(body).chars().take(300).collect()),
    };
    ClientError::Refused { url, status, code, message }
}

pub(crate) async fn decode<T: DeserializeOwned>(
    url: &str,
    response: reqwest::Response,
) -> Result<T, ClientError> {
    let bytes = success_body(url, response).await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ClientError::BadAnswer { url: url.to_owned(), reason: e.to_string() })
}

/// The body of a successful answer, or why there is none. Redirects are never followed
/// (clients are built without), and one is named as such.
pub(crate) async fn success_body(
    url: &str,
    response: reqwest::Response,
) -> Result<bytes::Bytes, ClientError> {
    let status = response.status();
    if status.is_redirection() {
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .unwrap_or("(no location)")
            .chars()
            .take(200)
            .collect::<String>();
        return Err(ClientError::Transport {
            url: url.to_owned(),
            reason: format!(
                "the server answered {status} redirecting to {location}; clients do not follow \
                 redirects (one could carry credentials elsewhere): use the final URL"
            ),
        });
    }
    let bytes = response.bytes().await.map_err(|e| transport(url, e))?;
    if !status.is_success() {
        return Err(refused(url.to_owned(), status.as_u16(), &bytes));
    }
    Ok(bytes)
}

/// A client of the attestation service's attestation surface: one instance's challenge,
/// attest and info routes, and the key broker.
#[derive(Clone, Debug)]
pub struct AuthorityClient {
    base: String,
    /// `{base}/v1` for a single-instance service, `{base}/v1/instances/{id}` otherwise.
    prefix: String,
    info_path: &'static str,
    http: reqwest::Client,
}

impl AuthorityClient {
    /// A client for the service at `base` (`https://…`, or `http://` on loopback), for the
    /// service-wide routes (key release, data-set registration, the service key), trusting the
    /// system's roots.
    pub fn new(base: &str) -> Result<Self, ClientError> {
        Self::new_with(base, &ServiceTls::default())
    }

    /// [`AuthorityClient::new`] with the given TLS settings.
    pub fn new_with(base: &str, tls: &ServiceTls) -> Result<Self, ClientError> {
        let base = base.trim_end_matches('/').to_owned();
        let http = tls.client(&base)?;
        Ok(AuthorityClient { prefix: format!("{base}/v1"), base, info_path: "instance", http })
    }

    /// A client for instance `instance_id` of the service at `base`, trusting the system's
    /// roots.
    pub fn for_instance(base: &str, instance_id: &str) -> Result<Self, ClientError> {
        Self::for_instance_with(base, instance_id, &ServiceTls::default())
    }

    /// [`AuthorityClient::for_instance`] with the given TLS settings.
    pub fn for_instance_with(
        base: &str,
        instance_id: &str,
        tls: &ServiceTls,
    ) -> Result<Self, ClientError> {
        let base = base.trim_end_matches('/').to_owned();
        let http = tls.client(&base)?;
        Ok(AuthorityClient {
            prefix: format!("{base}/v1/instances/{instance_id}"),
            base,
            info_path: "info",
            http,
        })
    }

    /// The instance this client attests with, for a multi-tenant service.
    pub fn instance_id(&self) -> Option<&str> {
        self.prefix.rsplit_once("/v1/instances/").map(|(_, id)| id)
    }

    /// Requests a fresh nonce.
    pub async fn challenge(&self) -> Result<ChallengeResponse, ClientError> {
        let url = format!("{}/challenge", self.prefix);
        let response = self.http.post(&url).send().await.map_err(|e| transport(&url, e))?;
        decode(&url, response).await
    }

    /// Submits evidence for appraisal. The answer is not verified here: an enclave uses
    /// [`crate::ServiceChannel::attest`], which checks the service's signature.
    pub async fn attest(&self, request: &AttestRequest) -> Result<AttestResponse, ClientError> {
        let url = format!("{}/attest", self.prefix);
        let response =
            self.http.post(&url).json(request).send().await.map_err(|e| transport(&url, e))?;
        decode(&url, response).await
    }

    /// Fetches the instance's CA, JWKS and policy id.
    pub async fn instance(&self) -> Result<InstanceInfo, ClientError> {
        let url = format!("{}/{}", self.prefix, self.info_path);
        let response = self.http.get(&url).send().await.map_err(|e| transport(&url, e))?;
        decode(&url, response).await
    }

    /// The service's key document: its envelope key and its signing key with fingerprint.
    pub async fn service_key_document(&self) -> Result<ServiceKeyDocument, ClientError> {
        let url = format!("{}/v1/service-key", self.base);
        let response = self.http.get(&url).send().await.map_err(|e| transport(&url, e))?;
        decode(&url, response).await
    }

    /// The service's key document with evidence it collects now over `nonce` (a service in a
    /// TEE only): fresh, so it cannot be a document replayed from before a build change.
    pub async fn service_key_challenge(
        &self,
        nonce: &str,
    ) -> Result<ServiceKeyDocument, ClientError> {
        let url = format!("{}/v1/service-key/challenge", self.base);
        let body = cloister_types::api::ServiceChallenge { nonce: nonce.to_owned() };
        let response =
            self.http.post(&url).json(&body).send().await.map_err(|e| transport(&url, e))?;
        decode(&url, response).await
    }

    /// Registers a sealed data set to its owner (a signed `DatasetRegistration`): the privacy
    /// ledger then charges it only with that owner's grants.
    pub async fn register_dataset(
        &self,
        request: &RegisterDataset,
    ) -> Result<DatasetRegistered, ClientError> {
        let url = format!("{}/v1/datasets", self.base);
        let response =
            self.http.post(&url).json(request).send().await.map_err(|e| transport(&url, e))?;
        decode(&url, response).await
    }

    /// Revokes an owner's grants for one job (a signed `GrantRevocation`): the service then
    /// records no authorization for the job with the owner's inputs, so no worker starts it.
    pub async fn revoke_grant(&self, request: &RevokeGrant) -> Result<GrantRevoked, ClientError> {
        let url = format!("{}/v1/grants/revoke", self.base);
        let response =
            self.http.post(&url).json(request).send().await.map_err(|e| transport(&url, e))?;
        decode(&url, response).await
    }

    /// The service's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `{base}/v1/instances/{id}` (or `{base}/v1` for a single-instance service).
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The HTTP client.
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Asks the key broker to release a key to the enclave the attestation result names.
    pub async fn release_key(
        &self,
        request: &KeyReleaseRequest,
    ) -> Result<KeyReleaseResponse, ClientError> {
        let url = format!("{}/v1/keys/release", self.base);
        let response =
            self.http.post(&url).json(request).send().await.map_err(|e| transport(&url, e))?;
        decode(&url, response).await
    }
}

/// A client of one enclave worker over attested TLS.
#[derive(Clone, Debug)]
pub struct WorkerClient {
    base: String,
    http: reqwest::Client,
    verifier: Arc<AttestedServerVerifier>,
}

impl WorkerClient {
    /// A client that will only complete TLS handshakes with enclaves meeting `expectations`.
    pub fn new(base: &str, expectations: Expectations) -> Result<Self, ClientError> {
        let verifier = Arc::new(AttestedServerVerifier::new(expectations));
        let tls = client_config(verifier.clone())
            .map_err(|e| ClientError::Transport { url: base.to_owned(), reason: e.to_string() })?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .https_only(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| transport(base, e))?;
        Ok(WorkerClient { base: base.trim_end_matches('/').to_owned(), http, verifier })
    }

    /// Connects, verifies the enclave and returns what was verified. Nothing else is sent first.
    pub async fn attest(&self) -> Result<(VerifiedEnclave, IdentityResponse), ClientError> {
        let url = format!("{}/v1/identity", self.base);
        let response = self.http.get(&url).send().await.map_err(|e| transport(&url, e))?;
        let identity: IdentityResponse = decode(&url, response).await?;
        let verified = self.verifier.last_verified().ok_or_else(|| ClientError::Transport {
            url: url.clone(),
            reason: "no attested handshake was recorded".into(),
        })?;
        if identity.runtime_data != verified.runtime_data {
            return Err(ClientError::BadAnswer {
                url,
                reason: "the identity document does not match the attested certificate".into(),
            });
        }
        Ok((verified, identity))
    }

    /// Uploads a sealed object.
    pub async fn put_object(
        &self,
        object_id: &str,
        sealed: Vec<u8>,
    ) -> Result<ObjectStored, ClientError> {
        let url = format!("{}/v1/objects/{object_id}", self.base);
        let response =
            self.http.put(&url).body(sealed).send().await.map_err(|e| transport(&url, e))?;
        decode(&url, response).await
    }

    /// Downloads a sealed object.
    pub async fn get_object(&self, object_id: &str) -> Result<Vec<u8>, ClientError> {
        let url = format!("{}/v1/objects/{object_id}", self.base);
        let response = self.http.get(&url).send().await.map_err(|e| transport(&url, e))?;
        let status = response.status();
        if !status.is_success() {
            return decode::<serde_json::Value>(&url, response).await.map(|_| Vec::new());
        }
        Ok(response.bytes().await.map_err(|e| transport(&url, e))?.to_vec())
    }

    /// Asks the worker to load a model version from its repository and serve it under the
    /// owner's serving policy; answers once the model passed its integrity check and loaded.
    pub async fn deploy_model(
        &self,
        request: &cloister_types::model::DeployModel,
    ) -> Result<cloister_types::model::DeployedModel, ClientError> {
        let url = format!("{}/v1/serving/models", self.base);
        let response =
            self.http.post(&url).json(request).send().await.map_err(|e| transport(&url, e))?;
        decode(&url, response).await
    }

    /// The models deployed on the worker: model, digest, owner key, policy expiry.
    pub async fn deployments(&self) -> Result<Vec<cloister_types::model::Deployment>, ClientError> {
        let url = format!("{}/v1/serving/models", self.base);
        let response = self.http.get(&url).send().await.map_err(|e| transport(&url, e))?;
        decode(&url, response).await
    }

    /// Asks the worker to stop serving `model` (`name@version`) with the owner's signed request;
    /// answers with the deployment that ended.
    pub async fn undeploy_model(
        &self,
        model: &str,
        request: &cloister_types::model::UndeployModel,
    ) -> Result<cloister_types::model::Deployment, ClientError> {
        let url = format!("{}/v1/serving/models/{model}/undeploy", self.base);
        let response =
            self.http.post(&url).json(request).send().await.map_err(|e| transport(&url, e))?;
        decode(&url, response).await
    }

    /// Queues a durable batch job with its grants; answers as soon as it is queued.
    pub async fn submit_batch(
        &self,
        job: &cloister_types::batch::SubmitBatch,
    ) -> Result<cloister_types::batch::BatchAccepted, ClientError> {
        let url = format!("{}/v1/batch", self.base);
        let response =
            self.http.post(&url).json(job).send().await.map_err(|e| transport(&url, e))?;
        decode(&url, response).await
    }

    /// A batch job's state, progress, chunks and (when done) receipt.
    pub async fn batch_status(
        &self,
        job_id: &str,
    ) -> Result<cloister_types::batch::BatchStatus, ClientError> {
        let url = format!("{}/v1/batch/{job_id}", self.base);
        let response = self.http.get(&url).send().await.map_err(|e| transport(&url, e))?;
        decode(&url, response).await
    }

    /// Submits a job with its grants and waits for it to finish.
    pub async fn submit_job(&self, job: &SubmitJob) -> Result<JobDone, ClientError> {
        let url = format!("{}/v1/jobs", self.base);
        let response =
            self.http.post(&url).json(job).send().await.map_err(|e| transport(&url, e))?;
        decode(&url, response).await
    }
}
