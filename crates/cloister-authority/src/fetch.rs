//! Fetching vendor collateral over HTTP: Intel PCS (or a PCCS), AMD KDS and Hygon KDS.
//!
//! The only network I/O of the attestation service besides serving its API. What to fetch comes
//! from the verifier (`cloister_verify::collateral_needs`); when it expires from the documents
//! themselves (`cloister_verify::collateral_expiry`): Intel `nextUpdate`, certificate `notAfter`.
//! Intel sends the issuer chain of TCB info, QE identities and PCK CRLs in a response header; it
//! is cached as a certificate item beside the document. A `429`/`503` with `Retry-After` becomes
//! [`FetchError::RateLimited`], which the service's rate limiter honours.

use std::time::Duration;

use cloister_verify::{CollateralKey, Vendor, collateral_expiry};

use crate::collateral::{
    CachedItem, CollateralFetcher, FetchError, FetchFuture, Fetched, ItemKind, VendorUrls,
    vendor_url,
};

/// How long an item whose content carries no validity data is kept (Hygon certificates).
const DEFAULT_LIFETIME_SECS: i64 = 30 * 24 * 3600;

/// The largest response accepted from a vendor service.
const MAX_RESPONSE: usize = 1 << 20;

/// A [`CollateralFetcher`] over HTTPS (webpki roots), with the vendors' base URLs.
#[derive(Clone, Debug)]
pub struct HttpFetcher {
    client: reqwest::Client,
    urls: VendorUrls,
}

impl HttpFetcher {
    /// A fetcher for `urls` with a 20-second timeout per request.
    pub fn new(urls: VendorUrls) -> Result<Self, FetchError> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .user_agent(concat!("cloister-attestation/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| FetchError::Failed { key: "http client".into(), reason: e.to_string() })?;
        Ok(Self { client, urls })
    }

    async fn get(&self, key: &CollateralKey) -> Result<Fetched, FetchError> {
        let failed = |reason: String| FetchError::Failed { key: key.to_string(), reason };
        let url = vendor_url(key, &self.urls)
            .ok_or_else(|| failed("no vendor service serves this kind of collateral".into()))?;
        let response = self.client.get(&url).send().await.map_err(|e| failed(e.to_string()))?;
        let status = response.status();
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS
            || status == reqwest::StatusCode::SERVICE_UNAVAILABLE
        {
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(60);
            return Err(FetchError::RateLimited { key: key.to_string(), retry_after });
        }
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(FetchError::NotFound(key.to_string()));
        }
        if !status.is_success() {
            return Err(failed(format!("{url} answered {status}")));
        }
        let issuer_chain = ISSUER_CHAIN_HEADERS
            .iter()
            .find_map(|name| response.headers().get(*name))
            .map(|value| percent_encoding::percent_decode(value.as_bytes()).collect::<Vec<u8>>());
        let body = response.bytes().await.map_err(|e| failed(e.to_string()))?;
        if body.len() > MAX_RESPONSE {
            return Err(failed(format!("response of {} bytes is too large", body.len())));
        }
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let kind = match key.vendor {
            Vendor::Amd | Vendor::Hygon => ItemKind::Certificate,
            Vendor::Intel | Vendor::Nvidia | Vendor::Google => ItemKind::Document,
        };
        let mut items = vec![(key.clone(), item(kind, body.to_vec(), now))];
        if let Some(chain) = issuer_chain {
            let chain_key =
                CollateralKey::new(key.vendor, &format!("{}-issuer-chain", key.kind), &*key.id);
            items.push((chain_key, item(ItemKind::Certificate, chain, now)));
        }
        Ok(items)
    }
}

/// The headers in which Intel PCS sends issuer chains (URL-encoded PEM).
const ISSUER_CHAIN_HEADERS: [&str; 4] = [
    "TCB-Info-Issuer-Chain",
    "SGX-Enclave-Identity-Issuer-Chain",
    "SGX-PCK-CRL-Issuer-Chain",
    "SGX-TCB-Info-Issuer-Chain",
];

fn item(kind: ItemKind, bytes: Vec<u8>, now: i64) -> CachedItem {
    let expires_at =
        collateral_expiry(&bytes).unwrap_or_else(|| now.saturating_add(DEFAULT_LIFETIME_SECS));
    CachedItem { kind, bytes, expires_at }
}

impl CollateralFetcher for HttpFetcher {
    fn fetch<'a>(&'a self, key: &'a CollateralKey) -> FetchFuture<'a> {
        Box::pin(self.get(key))
    }
}
