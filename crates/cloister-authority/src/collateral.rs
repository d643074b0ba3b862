//! Vendor collateral for the verifiers: a cache keyed and expiring as the vendors specify,
//! preloaded from an offline bundle or filled by a pluggable, rate-limit-aware fetcher.
//!
//! Collateral is data (DESIGN §2.2): Intel TCB info, QE identities and CRLs, AMD VCEK/VLEK and
//! ASK/ARK certificates, Hygon HSK/CEK certificates, NVIDIA RIMs. The verifiers never fetch
//! anything; the service hands them a [`Collateral`] snapshot of what is cached and unexpired.
//!
//! Keys and lifetimes follow the vendors:
//! - Intel PCS: TCB info and QE identity per TEE and FMSPC, valid until their `nextUpdate`;
//!   CRLs until their `nextUpdate`.
//! - AMD KDS: a VCEK per product, chip id and reported TCB; ASK/ARK per product; certificates
//!   are cached until their `notAfter`.
//! - Hygon KDS: HSK and CEK per chip serial number, until `expires_at` given with them.
//!
//! Fetching is a [`CollateralFetcher`] ([`crate::fetch::HttpFetcher`] over HTTPS) that the
//! service calls before verifying (`Authority::prefetch`); the tests run it against a fake
//! vendor service on loopback, since CI has no network.

use std::collections::BTreeMap;
use std::sync::Mutex;

use std::future::Future;
use std::pin::Pin;

use cloister_types::{Base64Url, CollateralRecord, TeeKind};
use cloister_verify::{CachedCollateral, Collateral};
pub use cloister_verify::{CollateralKey, Vendor};
use serde::Deserialize;

/// Whether cached bytes are a document or certificates (they go to different verifier inputs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemKind {
    /// A document: JSON collateral, a CRL, a RIM.
    Document,
    /// Certificates: DER, PEM (one or more), or a vendor binary format.
    Certificate,
}

/// One cached item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachedItem {
    /// Document or certificates.
    pub kind: ItemKind,
    /// The bytes as the vendor served them.
    pub bytes: Vec<u8>,
    /// When the vendor says it must be refreshed (unix seconds).
    pub expires_at: i64,
}

/// The collateral an instance holds, shared by all its attestations.
#[derive(Debug, Default)]
pub struct CollateralCache {
    items: Mutex<BTreeMap<CollateralKey, CachedItem>>,
}

/// Every item of a [`CollateralCache`] at one moment ([`CollateralCache::frozen`]).
#[derive(Clone, Debug, Default)]
pub struct CollateralSnapshot {
    items: BTreeMap<CollateralKey, CachedItem>,
}

impl CollateralSnapshot {
    /// Every item, expired or not (the verifiers check validity themselves at the verification
    /// time, so stale collateral fails there with a message naming it rather than vanishing),
    /// for the drivers of the TEEs its vendor serves.
    pub fn by_tee(&self) -> CachedCollateral {
        let mut out = CachedCollateral::new();
        for (key, item) in &self.items {
            for tee in key.vendor.tees() {
                let slot = out.entry(*tee).or_default();
                match item.kind {
                    ItemKind::Document => slot.documents.push(item.bytes.clone()),
                    ItemKind::Certificate => {
                        *slot = std::mem::take(slot).with_certificates(&item.bytes);
                    }
                }
            }
        }
        out
    }

    /// The record of an appraisal of vendor evidence `evidence` of `tee` made with this
    /// snapshot: what the evidence needs ([`cloister_verify::collateral_needs`]) and every item
    /// it depended on ([`CollateralRecord::of`]).
    pub fn record(&self, tee: TeeKind, evidence: &[u8]) -> CollateralRecord {
        let needs = cloister_verify::collateral_needs(tee, evidence);
        CollateralRecord::of(
            tee,
            &needs,
            self.items.iter().map(|(key, item)| (key, item.bytes.as_slice())),
        )
    }
}

/// An offline bundle could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// The bundle is not the expected JSON.
    #[error(
        "collateral bundle is not valid JSON of the form {{\"version\": 1, \"items\": [{{vendor, \
         kind, id, type, expires_at, data}}]}}: {0}"
    )]
    Shape(#[from] serde_json::Error),
    /// The bundle has another version.
    #[error("collateral bundle version {0} is not supported (only 1 is)")]
    Version(u32),
    /// An item's data is not base64url.
    #[error("collateral bundle item {0} has data that is not unpadded base64url")]
    Data(String),
    /// An item's expiry is not RFC 3339.
    #[error("collateral bundle item {0} has an expires_at that is not an RFC 3339 time")]
    Expiry(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBundle {
    version: u32,
    items: Vec<RawItem>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawItem {
    vendor: Vendor,
    kind: String,
    id: String,
    #[serde(rename = "type")]
    item_type: ItemKind,
    expires_at: String,
    data: String,
}

impl CollateralCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores (or replaces) one item.
    pub fn insert(&self, key: CollateralKey, item: CachedItem) {
        self.lock().insert(key, item);
    }

    /// The item under `key` if it has not expired at `now`.
    pub fn get(&self, key: &CollateralKey, now: i64) -> Option<CachedItem> {
        self.lock().get(key).filter(|item| item.expires_at > now).cloned()
    }

    /// Drops everything that expired at `now`; returns how many items were dropped.
    pub fn purge_expired(&self, now: i64) -> usize {
        let mut items = self.lock();
        let before = items.len();
        items.retain(|_, item| item.expires_at > now);
        before - items.len()
    }

    /// The earliest expiry (unix seconds) among cached items, for monitoring.
    pub fn earliest_expiry(&self) -> Option<i64> {
        self.lock().values().map(|item| item.expires_at).min()
    }

    /// Every unexpired item, as verifier input.
    pub fn snapshot_at(&self, now: i64) -> Collateral {
        let mut collateral = Collateral::new();
        for item in self.lock().values().filter(|item| item.expires_at > now) {
            collateral = match item.kind {
                ItemKind::Document => collateral.with_document(item.bytes.clone()),
                ItemKind::Certificate => collateral.with_certificates(&item.bytes),
            };
        }
        collateral
    }

    /// Every item, expired or not: the verifiers check validity themselves at the verification
    /// time, so stale collateral fails there with a message naming it rather than vanishing.
    pub fn snapshot(&self) -> Collateral {
        self.snapshot_at(i64::MIN)
    }

    /// Every item, expired or not, for the drivers of the TEEs its vendor serves: Intel for
    /// SGX and TDX, AMD for SNP, Hygon for CSV, NVIDIA for NVIDIA GPUs.
    pub fn snapshot_by_tee(&self) -> CachedCollateral {
        self.frozen().by_tee()
    }

    /// A copy of every item, taken at once: an appraisal verifies with it and records what it
    /// used from the same copy, so a change made meanwhile cannot slip in between.
    pub fn frozen(&self) -> CollateralSnapshot {
        CollateralSnapshot { items: self.lock().clone() }
    }

    /// The record an appraisal of `tee` evidence needing `needs` would make now (what the key
    /// broker compares an attestation result's record with).
    pub fn record(&self, tee: TeeKind, needs: &[CollateralKey]) -> CollateralRecord {
        let items = self.lock();
        CollateralRecord::of(
            tee,
            needs,
            items.iter().map(|(key, item)| (key, item.bytes.as_slice())),
        )
    }

    /// Loads an offline bundle (for air-gapped services and tests); returns the item count.
    ///
    /// Format: `{"version": 1, "items": [{"vendor": "intel", "kind": "tcb-info",
    /// "id": "tdx/b0c06f000000", "type": "document", "expires_at": "2025-07-19T10:00:00Z",
    /// "data": "<base64url>"}]}`.
    pub fn load_bundle(&self, json: &[u8]) -> Result<usize, BundleError> {
        let bundle: RawBundle = serde_json::from_slice(json)?;
        if bundle.version != 1 {
            return Err(BundleError::Version(bundle.version));
        }
        let mut parsed = Vec::with_capacity(bundle.items.len());
        for item in bundle.items {
            let key = CollateralKey { vendor: item.vendor, kind: item.kind, id: item.id };
            let bytes =
                Base64Url::parse(&item.data).map_err(|_| BundleError::Data(key.to_string()))?;
            let expires_at = time::OffsetDateTime::parse(
                &item.expires_at,
                &time::format_description::well_known::Rfc3339,
            )
            .map_err(|_| BundleError::Expiry(key.to_string()))?
            .unix_timestamp();
            parsed.push((key, CachedItem { kind: item.item_type, bytes: bytes.0, expires_at }));
        }
        // All or nothing: a bundle with one bad item changes nothing.
        let count = parsed.len();
        let mut items = self.lock();
        items.extend(parsed);
        Ok(count)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<CollateralKey, CachedItem>> {
        // A panic while holding the lock cannot leave the map half-updated (every update is a
        // single insert, extend or retain), so a poisoned lock is still consistent.
        self.items.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Fetching collateral failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The vendor asked us to slow down; try again after this many seconds.
    #[error("{key}: rate limited by the vendor service, retry after {retry_after} s")]
    RateLimited {
        /// What was being fetched.
        key: String,
        /// Seconds to wait.
        retry_after: u64,
    },
    /// The vendor does not have it (unknown FMSPC, chip id or TCB).
    #[error("{0}: the vendor service has no such collateral")]
    NotFound(String),
    /// Network or protocol failure.
    #[error("{key}: fetching failed: {reason}")]
    Failed {
        /// What was being fetched.
        key: String,
        /// Why.
        reason: String,
    },
}

/// What a fetch returns: the items it produced, each under its own key (a PCS response and
/// the issuer chain that came in its header, for example).
pub type Fetched = Vec<(CollateralKey, CachedItem)>;

/// The future a [`CollateralFetcher`] returns.
pub type FetchFuture<'a> = Pin<Box<dyn Future<Output = Result<Fetched, FetchError>> + Send + 'a>>;

/// Gets collateral from a vendor service (Intel PCS, AMD KDS, Hygon KDS).
///
/// Implementations do network I/O ([`crate::fetch::HttpFetcher`]); [`RateLimiter`] keeps them
/// within the vendors' limits. Each item's `expires_at` follows the vendor's own validity data.
pub trait CollateralFetcher: Send + Sync {
    /// Fetches `key` (and whatever comes with it).
    fn fetch<'a>(&'a self, key: &'a CollateralKey) -> FetchFuture<'a>;
}

/// The base addresses of the vendor services (real ones by default; a test or an air-gapped
/// mirror such as a PCCS points them elsewhere).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VendorUrls {
    /// Intel PCS API (`…/sgx/certification/v4/…`, `…/tdx/certification/v4/…`).
    pub intel_api: String,
    /// Where Intel serves the root CA's CRL.
    pub intel_certificates: String,
    /// AMD KDS.
    pub amd_kds: String,
    /// Hygon KDS.
    pub hygon_kds: String,
    /// Google's Android key attestation revocation status list (the whole URL).
    pub google_status: String,
}

impl Default for VendorUrls {
    fn default() -> Self {
        Self {
            intel_api: "https://api.trustedservices.intel.com".to_owned(),
            intel_certificates: "https://certificates.trustedservices.intel.com".to_owned(),
            amd_kds: "https://kdsintf.amd.com".to_owned(),
            hygon_kds: "https://cert.hygon.cn".to_owned(),
            google_status: "https://android.googleapis.com/attestation/status".to_owned(),
        }
    }
}

/// Where each vendor serves a piece of collateral (the URL a fetcher requests).
pub fn vendor_url(key: &CollateralKey, urls: &VendorUrls) -> Option<String> {
    let id = key.id.as_str();
    match (key.vendor, key.kind.as_str()) {
        (Vendor::Intel, "tcb-info") => {
            let (tee, fmspc) = id.split_once('/')?;
            let api = if tee == "tdx" { "tdx" } else { "sgx" };
            Some(format!("{}/{api}/certification/v4/tcb?fmspc={fmspc}", urls.intel_api))
        }
        (Vendor::Intel, "qe-identity") => {
            let api = if id == "tdx" { "tdx" } else { "sgx" };
            Some(format!("{}/{api}/certification/v4/qe/identity", urls.intel_api))
        }
        (Vendor::Intel, "pck-crl") => {
            Some(format!("{}/sgx/certification/v4/pckcrl?ca={id}&encoding=der", urls.intel_api))
        }
        (Vendor::Intel, "root-ca-crl") => {
            Some(format!("{}/IntelSGXRootCA.der", urls.intel_certificates))
        }
        // id = "<Product>/<hwid>?blSPL=…&teeSPL=…&snpSPL=…&ucodeSPL=…"
        (Vendor::Amd, "vcek") => Some(format!("{}/vcek/v1/{id}", urls.amd_kds)),
        (Vendor::Amd, "ask-ark") => Some(format!("{}/vcek/v1/{id}/cert_chain", urls.amd_kds)),
        (Vendor::Amd, "asvk-ark") => Some(format!("{}/vlek/v1/{id}/cert_chain", urls.amd_kds)),
        (Vendor::Hygon, "hsk-cek") => Some(format!("{}/hsk_cek?snumber={id}", urls.hygon_kds)),
        (Vendor::Google, "status") => Some(urls.google_status.clone()),
        _ => None,
    }
}

/// Keeps a fetcher within a vendor's rate limit: at most one request per `min_interval`
/// seconds, and none before a `Retry-After` the vendor sent has passed.
#[derive(Debug)]
pub struct RateLimiter {
    min_interval: i64,
    state: Mutex<LimiterState>,
}

#[derive(Debug, Default)]
struct LimiterState {
    last_request: Option<i64>,
    blocked_until: i64,
}

impl RateLimiter {
    /// At most one request every `min_interval_secs` seconds.
    pub fn new(min_interval_secs: i64) -> Self {
        Self { min_interval: min_interval_secs.max(0), state: Mutex::new(LimiterState::default()) }
    }

    /// Whether a request may go out at `now`; if so, records it. Otherwise returns how many
    /// seconds to wait.
    pub fn try_acquire(&self, now: i64) -> Result<(), u64> {
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut ready_at = state.blocked_until;
        if let Some(last) = state.last_request {
            ready_at = ready_at.max(last.saturating_add(self.min_interval));
        }
        if now < ready_at {
            return Err(u64::try_from(ready_at - now).unwrap_or(u64::MAX));
        }
        state.last_request = Some(now);
        Ok(())
    }

    /// Records a vendor's `Retry-After` (429 or 503): no request before `now + seconds`.
    pub fn back_off(&self, now: i64, seconds: u64) {
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let until = now.saturating_add(i64::try_from(seconds).unwrap_or(i64::MAX));
        state.blocked_until = state.blocked_until.max(until);
    }
}

/// Makes sure `key` is cached and unexpired at `now`, fetching it through `limiter` if not.
pub async fn get_or_fetch(
    cache: &CollateralCache,
    fetcher: &dyn CollateralFetcher,
    limiter: &RateLimiter,
    key: &CollateralKey,
    now: i64,
) -> Result<(), FetchError> {
    if cache.get(key, now).is_some() {
        return Ok(());
    }
    if let Err(retry_after) = limiter.try_acquire(now) {
        return Err(FetchError::RateLimited { key: key.to_string(), retry_after });
    }
    match fetcher.fetch(key).await {
        Ok(items) => {
            for (key, item) in items {
                cache.insert(key, item);
            }
            Ok(())
        }
        Err(FetchError::RateLimited { key, retry_after }) => {
            limiter.back_off(now, retry_after);
            Err(FetchError::RateLimited { key, retry_after })
        }
        Err(other) => Err(other),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn key(id: &str) -> CollateralKey {
        CollateralKey::new(Vendor::Intel, "tcb-info", id)
    }

    fn item(expires_at: i64) -> CachedItem {
        CachedItem { kind: ItemKind::Document, bytes: b"{}".to_vec(), expires_at }
    }

    #[test]
    fn items_expire_as_the_vendor_says() {
        let cache = CollateralCache::new();
        cache.insert(key("tdx/b0c06f000000"), item(100));
        assert!(cache.get(&key("tdx/b0c06f000000"), 99).is_some());
        assert!(cache.get(&key("tdx/b0c06f000000"), 100).is_none());
        assert_eq!(cache.snapshot_at(99).documents.len(), 1);
        assert_eq!(cache.snapshot_at(100).documents.len(), 0);
        // The verifier still sees stale items (and says they are stale) through `snapshot`.
        assert_eq!(cache.snapshot().documents.len(), 1);
        assert_eq!(cache.purge_expired(100), 1);
        assert_eq!(cache.snapshot().documents.len(), 0);
    }

    #[test]
    fn bundles_load_all_or_nothing() {
        let cache = CollateralCache::new();
        let good = br#"{"version":1,"items":[
            {"vendor":"intel","kind":"tcb-info","id":"tdx/b0c06f000000","type":"document",
             "expires_at":"2025-07-19T10:00:00Z","data":"e30"},
            {"vendor":"amd","kind":"ask-ark","id":"milan","type":"certificate",
             "expires_at":"2045-10-22T00:00:00Z","data":"AAEC"}]}"#;
        assert_eq!(cache.load_bundle(good).unwrap(), 2);
        let got = cache.get(&key("tdx/b0c06f000000"), 0).unwrap();
        assert_eq!(got.bytes, b"{}");
        assert_eq!(cache.snapshot_at(0).certificates, vec![vec![0, 1, 2]]);
        // Each driver sees only its vendor's collateral.
        let by_tee = cache.snapshot_by_tee();
        assert_eq!(by_tee[&TeeKind::Tdx].documents, vec![b"{}".to_vec()]);
        assert_eq!(by_tee[&TeeKind::Sgx].documents, vec![b"{}".to_vec()]);
        assert!(by_tee[&TeeKind::Tdx].certificates.is_empty());
        assert_eq!(by_tee[&TeeKind::Snp].certificates, vec![vec![0, 1, 2]]);
        assert!(!by_tee.contains_key(&TeeKind::Nvidia));

        let other = CollateralCache::new();
        let bad = br#"{"version":1,"items":[
            {"vendor":"intel","kind":"tcb-info","id":"a","type":"document",
             "expires_at":"2025-07-19T10:00:00Z","data":"e30"},
            {"vendor":"intel","kind":"tcb-info","id":"b","type":"document",
             "expires_at":"tomorrow","data":"e30"}]}"#;
        assert!(matches!(other.load_bundle(bad), Err(BundleError::Expiry(_))));
        assert_eq!(other.snapshot().documents.len(), 0);
        assert!(matches!(
            other.load_bundle(br#"{"version":2,"items":[]}"#),
            Err(BundleError::Version(2))
        ));
        assert!(other.load_bundle(br#"{"version":1,"items":[],"x":1}"#).is_err());
    }

    #[test]
    fn a_snapshot_records_what_it_holds_whatever_the_cache_does_later() {
        let cache = CollateralCache::new();
        let qe = CollateralKey::new(Vendor::Intel, "qe-identity", "tdx");
        cache.insert(qe.clone(), item(100));
        let frozen = cache.frozen();
        // Evidence that does not parse needs nothing: the record holds the shared items.
        let then = frozen.record(TeeKind::Tdx, b"not a quote");
        assert_eq!(then.items.len(), 1);
        assert!(then.changes(&cache.record(TeeKind::Tdx, &[])).is_empty());
        cache.insert(qe.clone(), CachedItem { bytes: b"{\"new\":1}".to_vec(), ..item(100) });
        assert_eq!(frozen.record(TeeKind::Tdx, b"not a quote"), then);
        assert_eq!(
            then.changes(&cache.record(TeeKind::Tdx, &[])),
            vec!["Intel/qe-identity/tdx changed"]
        );
        // Another vendor's change concerns no Intel appraisal; sim records nothing.
        cache.insert(CollateralKey::new(Vendor::Amd, "ask-ark", "Milan"), item(100));
        assert_eq!(cache.record(TeeKind::Tdx, &[]).items.len(), 1);
        assert!(cache.frozen().record(TeeKind::Sim, b"").items.is_empty());
    }

    struct CountingFetcher {
        calls: AtomicUsize,
        rate_limited: bool,
    }

    impl CollateralFetcher for CountingFetcher {
        fn fetch<'a>(&'a self, key: &'a CollateralKey) -> FetchFuture<'a> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let result = if self.rate_limited {
                Err(FetchError::RateLimited { key: key.to_string(), retry_after: 60 })
            } else {
                Ok(vec![(key.clone(), item(1_000))])
            };
            Box::pin(async move { result })
        }
    }

    #[tokio::test]
    async fn fetches_once_then_serves_from_cache() {
        let cache = CollateralCache::new();
        let fetcher = CountingFetcher { calls: AtomicUsize::new(0), rate_limited: false };
        let limiter = RateLimiter::new(10);
        get_or_fetch(&cache, &fetcher, &limiter, &key("x"), 0).await.unwrap();
        get_or_fetch(&cache, &fetcher, &limiter, &key("x"), 1).await.unwrap();
        assert_eq!(fetcher.calls.load(Ordering::SeqCst), 1);
        // A second key within the interval waits.
        let err = get_or_fetch(&cache, &fetcher, &limiter, &key("y"), 5).await.unwrap_err();
        assert!(matches!(err, FetchError::RateLimited { retry_after: 5, .. }), "{err}");
        get_or_fetch(&cache, &fetcher, &limiter, &key("y"), 10).await.unwrap();
        assert_eq!(fetcher.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn retry_after_from_the_vendor_is_honoured() {
        let cache = CollateralCache::new();
        let fetcher = CountingFetcher { calls: AtomicUsize::new(0), rate_limited: true };
        let limiter = RateLimiter::new(0);
        assert!(get_or_fetch(&cache, &fetcher, &limiter, &key("x"), 0).await.is_err());
        let err = get_or_fetch(&cache, &fetcher, &limiter, &key("x"), 30).await.unwrap_err();
        assert!(matches!(err, FetchError::RateLimited { retry_after: 30, .. }), "{err}");
        assert_eq!(fetcher.calls.load(Ordering::SeqCst), 1, "no request during the back-off");
    }

    #[test]
    fn vendor_urls_follow_the_services() {
        let urls = VendorUrls::default();
        let tcb = vendor_url(&key("tdx/b0c06f000000"), &urls).unwrap();
        assert_eq!(
            tcb,
            "https://api.trustedservices.intel.com/tdx/certification/v4/tcb?fmspc=b0c06f000000"
        );
        let hsk = CollateralKey::new(Vendor::Hygon, "hsk-cek", "KPA64911240507");
        assert_eq!(
            vendor_url(&hsk, &urls).unwrap(),
            "https://cert.hygon.cn/hsk_cek?snumber=KPA64911240507"
        );
        let vcek = CollateralKey::new(
            Vendor::Amd,
            "vcek",
            "Milan/00ff?blSPL=3&teeSPL=0&snpSPL=8&ucodeSPL=115",
        );
        assert_eq!(
            vendor_url(&vcek, &urls).unwrap(),
            "https://kdsintf.amd.com/vcek/v1/Milan/00ff?blSPL=3&teeSPL=0&snpSPL=8&ucodeSPL=115"
        );
        let unknown = CollateralKey::new(Vendor::Nvidia, "nope", "");
        assert!(vendor_url(&unknown, &urls).is_none());
    }
}
