//! A client of the attestation service's management API (tenants, instances, broker keys,
//! migration, audit), authenticated with a bearer token.

use cloister_types::manage::{
    AuditQuery, AuditRecordView, CreateInstance, CreateTenant, ExportRequest, InstanceView,
    KeyView, PolicySpec, PolicyUpdated, PolicyVersionView, RegisterKey, TenantCreated, TenantView,
    TrustAnchorSpec,
};
use reqwest::{Method, RequestBuilder};
use serde::de::DeserializeOwned;

use crate::http::{ClientError, decode, transport};
use crate::service_tls::ServiceTls;

/// A management client: the service's base URL and the caller's token.
#[derive(Clone)]
pub struct ServiceClient {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl std::fmt::Debug for ServiceClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token.
        f.debug_struct("ServiceClient").field("base", &self.base).finish_non_exhaustive()
    }
}

impl ServiceClient {
    /// A client for the service at `base`, presenting `token` (none: anonymous), trusting the
    /// system's roots (plain HTTP only on loopback).
    pub fn new(base: &str, token: Option<&str>) -> Result<Self, ClientError> {
        Self::with_tls(base, token, &ServiceTls::default())
    }

    /// [`ServiceClient::new`] with the given TLS settings.
    pub fn with_tls(
        base: &str,
        token: Option<&str>,
        tls: &ServiceTls,
    ) -> Result<Self, ClientError> {
        let base = base.trim_end_matches('/').to_owned();
        let http = tls.client(&base)?;
        Ok(ServiceClient { base, token: token.map(str::to_owned), http })
    }

    fn request(&self, method: Method, path: &str) -> (String, RequestBuilder) {
        let url = format!("{}{path}", self.base);
        let mut builder = self.http.request(method, &url);
        if let Some(token) = &self.token {
            builder = builder.bearer_auth(token);
        }
        (url, builder)
    }

    async fn send<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl serde::Serialize>,
    ) -> Result<T, ClientError> {
        let (url, mut builder) = self.request(method, path);
        if let Some(body) = body {
            builder = builder.json(body);
        }
        let response = builder.send().await.map_err(|e| transport(&url, e))?;
        decode(&url, response).await
    }

    async fn send_raw(
        &self,
        method: Method,
        path: &str,
        builder: impl FnOnce(RequestBuilder) -> RequestBuilder,
    ) -> Result<Vec<u8>, ClientError> {
        let (url, request) = self.request(method, path);
        let response = builder(request).send().await.map_err(|e| transport(&url, e))?;
        Ok(crate::http::success_body(&url, response).await?.to_vec())
    }

    const NO_BODY: Option<&'static ()> = None;

    /// `POST /v1/tenants` (operator).
    pub async fn create_tenant(&self, name: &str) -> Result<TenantCreated, ClientError> {
        let body = CreateTenant { name: name.to_owned() };
        self.send(Method::POST, "/v1/tenants", Some(&body)).await
    }

    /// `GET /v1/tenants` (operator).
    pub async fn list_tenants(&self) -> Result<Vec<TenantView>, ClientError> {
        self.send(Method::GET, "/v1/tenants", Self::NO_BODY).await
    }

    /// `POST /v1/instances`.
    pub async fn create_instance(
        &self,
        request: &CreateInstance,
    ) -> Result<InstanceView, ClientError> {
        self.send(Method::POST, "/v1/instances", Some(request)).await
    }

    /// `GET /v1/instances`.
    pub async fn list_instances(&self) -> Result<Vec<InstanceView>, ClientError> {
        self.send(Method::GET, "/v1/instances", Self::NO_BODY).await
    }

    /// `GET /v1/instances/{id}`.
    pub async fn show_instance(&self, id: &str) -> Result<InstanceView, ClientError> {
        self.send(Method::GET, &format!("/v1/instances/{id}"), Self::NO_BODY).await
    }

    /// `GET /v1/instances/{id}/policy/{version}`.
    pub async fn policy_version(
        &self,
        id: &str,
        version: i64,
    ) -> Result<PolicyVersionView, ClientError> {
        self.send(Method::GET, &format!("/v1/instances/{id}/policy/{version}"), Self::NO_BODY).await
    }

    /// `PUT /v1/instances/{id}/policy`.
    pub async fn update_policy(
        &self,
        id: &str,
        policy: &PolicySpec,
    ) -> Result<PolicyUpdated, ClientError> {
        self.send(Method::PUT, &format!("/v1/instances/{id}/policy"), Some(policy)).await
    }

    /// `PUT /v1/instances/{id}/reference-values`.
    pub async fn set_reference_values(
        &self,
        id: &str,
        values: &serde_json::Value,
    ) -> Result<InstanceView, ClientError> {
        self.send(Method::PUT, &format!("/v1/instances/{id}/reference-values"), Some(values)).await
    }

    /// `PUT /v1/instances/{id}/trust-anchors`.
    pub async fn set_trust_anchors(
        &self,
        id: &str,
        anchors: &TrustAnchorSpec,
    ) -> Result<InstanceView, ClientError> {
        self.send(Method::PUT, &format!("/v1/instances/{id}/trust-anchors"), Some(anchors)).await
    }

    /// `POST /v1/instances/{id}/rotate`.
    pub async fn rotate(&self, id: &str) -> Result<InstanceView, ClientError> {
        self.send(Method::POST, &format!("/v1/instances/{id}/rotate"), Self::NO_BODY).await
    }

    /// `DELETE /v1/instances/{id}`.
    pub async fn delete_instance(&self, id: &str) -> Result<(), ClientError> {
        self.send_raw(Method::DELETE, &format!("/v1/instances/{id}"), |r| r).await.map(drop)
    }

    /// `GET /v1/service-key`: the document to export to this service with.
    pub async fn service_key(&self) -> Result<serde_json::Value, ClientError> {
        self.send(Method::GET, "/v1/service-key", Self::NO_BODY).await
    }

    /// `POST /v1/instances/{id}/export`: the sealed bundle.
    pub async fn export_instance(
        &self,
        id: &str,
        request: &ExportRequest,
    ) -> Result<Vec<u8>, ClientError> {
        self.send_raw(Method::POST, &format!("/v1/instances/{id}/export"), |r| r.json(request))
            .await
    }

    /// `POST /v1/instances/import`.
    pub async fn import_instance(&self, bundle: Vec<u8>) -> Result<InstanceView, ClientError> {
        let (url, request) = self.request(Method::POST, "/v1/instances/import");
        let response = request
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(bundle)
            .send()
            .await
            .map_err(|e| transport(&url, e))?;
        decode(&url, response).await
    }

    /// `POST /v1/keys`.
    pub async fn register_key(&self, request: &RegisterKey) -> Result<KeyView, ClientError> {
        self.send(Method::POST, "/v1/keys", Some(request)).await
    }

    /// `GET /v1/keys`.
    pub async fn list_keys(&self) -> Result<Vec<KeyView>, ClientError> {
        self.send(Method::GET, "/v1/keys", Self::NO_BODY).await
    }

    /// `GET /v1/keys/{id}`.
    pub async fn show_key(&self, id: &str) -> Result<KeyView, ClientError> {
        self.send(Method::GET, &format!("/v1/keys/{id}"), Self::NO_BODY).await
    }

    /// `POST /v1/keys/{id}/revoke`.
    pub async fn revoke_key(&self, id: &str) -> Result<KeyView, ClientError> {
        self.send(Method::POST, &format!("/v1/keys/{id}/revoke"), Self::NO_BODY).await
    }

    /// `GET /v1/audit`.
    pub async fn audit(&self) -> Result<Vec<AuditRecordView>, ClientError> {
        self.send(Method::GET, "/v1/audit", Self::NO_BODY).await
    }

    /// `GET /v1/audit` with filters and a page: the records matching `query`, by seq.
    pub async fn audit_page(
        &self,
        query: &AuditQuery,
    ) -> Result<Vec<AuditRecordView>, ClientError> {
        let (url, builder) = self.request(Method::GET, "/v1/audit");
        let response = builder.query(query).send().await.map_err(|e| transport(&url, e))?;
        decode(&url, response).await
    }

    /// Any route, for tests and scripts: status and body.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<(u16, Vec<u8>), ClientError> {
        let (url, mut request) = self.request(method, path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|e| transport(&url, e))?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(|e| transport(&url, e))?;
        Ok((status, bytes.to_vec()))
    }
}
