//! Who may ask what: the requester's signed authorization of each inner request (method, path,
//! body digest, a fresh id, a short validity), the model owner's serving policy with its
//! per-requester rate limit and token quota, and refusal of replays — checked
//! after the policy admitted the requester, so that requesters the policy does not list cannot
//! fill the set of seen ids.
//!
//! Seen ids live in this enclave's memory. A restarted worker is a new enclave with new OHTTP
//! keys: a request captured before the restart is encapsulated to a key that no longer exists
//! and does not decapsulate, so it cannot be replayed there either.
//!
//! Token quotas are counted at the attestation service, which the host cannot reset: before
//! serving tokens the enclave reserves them there ([`Admission::reserve`], in blocks), and an
//! answer whose size is known only afterwards leaves once its tokens are reserved
//! ([`Admission::settle`]). Tokens reserved by an enclave that ends unused count as used.
//!
//! Rate limits are counted there too, for the same reason (and so that two workers share one
//! allowance): the per-minute token bucket lives at the service, and the enclave takes requests
//! from it in small blocks (a twelfth of a minute's allowance, at least one) before admitting
//! them ([`admit`]). Requests taken by an enclave that ends unused count as used.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cloister_sign::{VerifyingKey, unix_now};
use cloister_types::api::{RequestReservation, UsageMeter, UsageReservation};
use cloister_types::online::{AUTHORIZATION_SCHEME, InferenceAuthorization};
use rand::RngCore as _;
use sha2::{Digest, Sha256};

use crate::online::catalog::{Catalog, LoadedModel};
use crate::online::error::OnlineError;
use crate::server::Worker;

/// How long a signed reservation statement is accepted by the attestation service.
const RESERVATION_VALIDITY: Duration = Duration::from_secs(60);

/// The longest validity a request authorization may claim (its `exp - iat`).
pub const MAX_AUTHORIZATION_VALIDITY: Duration = Duration::from_secs(300);
/// Clock skew `cloister_sign` tolerates; seen request ids are kept this much longer.
const SKEW: u64 = 60;

/// A requester whose signature on this request verified; only [`authenticate`] makes one.
#[derive(Clone, Debug)]
pub struct Requester {
    key: String,
    /// The request's id (hashed with the requester's key) and until when it must stay unique.
    request: ([u8; 32], u64),
}

impl Requester {
    /// The requester's public key (text form).
    pub fn key(&self) -> &str {
        &self.key
    }
}

/// Requests and tokens reserved at the attestation service, and seen request ids.
#[derive(Debug, Default)]
pub struct Limits {
    allowances: Mutex<HashMap<(String, String), Allowance>>,
    seen: Mutex<HashMap<[u8; 32], u64>>,
    /// One lock per model and requester, held while reserving at the attestation service: a
    /// request that finds this enclave's reservation short waits for a reservation already in
    /// flight instead of racing it. (Without it, a reservation the service answered with 0
    /// because another in-flight one took the rest refused its request while that other
    /// reservation's tokens were about to be recorded here; a burst was served one short.)
    leasing: Mutex<HashMap<(String, String), LeaseLock>>,
}

/// Held while a reservation is in flight for one model and requester.
type LeaseLock = Arc<tokio::sync::Mutex<()>>;

impl Limits {
    /// The reservation lock of `key` (created on first use).
    fn leasing(&self, key: &(String, String)) -> LeaseLock {
        let mut locks = self.leasing.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(key.clone()).or_default().clone()
    }
}

#[derive(Debug, Default)]
struct Allowance {
    /// Requests taken from the service's per-minute allowance and not yet admitted.
    requests: u32,
    /// Tokens consumed so far by this enclave.
    used: u64,
    /// Tokens promised to requests being served (each holds what its [`Admission::reserve`]
    /// allowed until it is charged or dropped).
    held: u64,
    /// Tokens this enclave reserved at the attestation service.
    leased: u64,
}

impl Allowance {
    /// Reserved, not used and not promised to a request being served.
    fn available(&self) -> u64 {
        self.leased.saturating_sub(self.used).saturating_sub(self.held)
    }
}

/// Verifies the inner request's `authorization` header: a compact JWS (`what = "inference
/// request"`) by the requester's key (its issuer) over this method, path and body digest, valid
/// at `now` for at most [`MAX_AUTHORIZATION_VALIDITY`]. Whether its id is fresh is checked once
/// a serving policy admitted the requester ([`check_fresh`]).
pub fn authenticate(
    header: Option<&str>,
    method: &str,
    path: &str,
    body: &[u8],
    now: u64,
) -> Result<Requester, OnlineError> {
    let bad = |why: &str| OnlineError::Unauthenticated(why.to_owned());
    let header = header.ok_or_else(|| {
        bad("no authorization header; sign each request with the requester key (`Cloister <JWS>`)")
    })?;
    let token = header
        .strip_prefix(AUTHORIZATION_SCHEME)
        .and_then(|rest| rest.strip_prefix(' '))
        .ok_or_else(|| bad("the authorization header does not use the `Cloister` scheme"))?
        .trim();
    let issuer = peek_issuer(token).ok_or_else(|| bad("the authorization token is malformed"))?;
    let key = VerifyingKey::from_text(&issuer)
        .map_err(|_| bad("the authorization token's issuer is not a requester public key"))?;
    let signed = key
        .verify::<InferenceAuthorization>("inference request", token, now)
        .map_err(|e| OnlineError::Unauthenticated(e.to_string()))?;
    let claims = &signed.claims;
    if claims.method != method || claims.path != path {
        return Err(bad("the authorization was signed for another method or path"));
    }
    if claims.body_sha256.as_bytes() != Sha256::digest(body).as_slice() {
        return Err(bad("the authorization was signed for another request body"));
    }
    if signed.expires_at.saturating_sub(signed.issued_at) > MAX_AUTHORIZATION_VALIDITY.as_secs() {
        return Err(OnlineError::Unauthenticated(format!(
            "the authorization is valid for longer than {} s",
            MAX_AUTHORIZATION_VALIDITY.as_secs()
        )));
    }
    let id: [u8; 32] = Sha256::new()
        .chain_update(issuer.as_bytes())
        .chain_update([0])
        .chain_update(claims.request_id.as_bytes())
        .finalize()
        .into();
    Ok(Requester { key: issuer, request: (id, signed.expires_at + SKEW) })
}

/// Refuses a request whose id this enclave has seen before, and remembers it until it could no
/// longer verify. Run once the serving policy admitted the requester.
pub fn check_fresh(catalog: &Catalog, requester: &Requester, now: u64) -> Result<(), OnlineError> {
    let (id, until) = requester.request;
    let mut seen = catalog.limits().seen.lock().unwrap_or_else(|p| p.into_inner());
    seen.retain(|_, kept| *kept >= now);
    if seen.contains_key(&id) {
        return Err(OnlineError::Replayed);
    }
    seen.insert(id, until);
    Ok(())
}

/// The `iss` claim of a compact JWS, read without verifying: only to choose the key to verify
/// the token with (which must then also be its issuer).
fn peek_issuer(token: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Issuer {
        iss: String,
    }
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice::<Issuer>(&bytes).ok().map(|i| i.iss)
}

/// Whether the model's serving policy lists `requester` for its version and has not expired at
/// `now`.
pub fn permits(model: &LoadedModel, requester: &Requester, now: u64) -> bool {
    !model.serving_policy().expired(now) && limits_for(model, requester).is_some()
}

fn limits_for<'a>(
    model: &'a LoadedModel,
    requester: &Requester,
) -> Option<&'a cloister_types::model::RequesterLimits> {
    let policy = model.serving_policy().policy();
    if !policy.versions.iter().any(|v| v == model.version()) {
        return None;
    }
    policy.requesters.iter().find(|r| r.requester == requester.key)
}

/// A request admitted by a model's policy: the model, and where its token use is counted.
/// Tokens it [`Admission::reserve`]d are held for it alone until it is charged; dropped
/// uncharged, it gives them back.
#[derive(Debug)]
pub struct Admission {
    model: Arc<LoadedModel>,
    key: (String, String),
    quota: Option<u64>,
    meter: UsageMeter,
    limits: Arc<Limits>,
    /// Tokens held for this request.
    held: AtomicU64,
}

impl Drop for Admission {
    fn drop(&mut self) {
        let held = self.held.swap(0, Ordering::SeqCst);
        if held > 0 {
            self.with_allowance(|a| a.held = a.held.saturating_sub(held));
        }
    }
}

impl Admission {
    /// The model.
    pub fn model(&self) -> &Arc<LoadedModel> {
        &self.model
    }

    /// Makes sure up to `wanted` tokens are reserved for this requester at the attestation
    /// service (reserving another block when this enclave's reservation runs short), holds them
    /// for this request — concurrent requests never count on the same tokens — and returns how
    /// many may be served now: `wanted`, or fewer when the quota has less left (never 0).
    /// Without a quota, `wanted`.
    pub async fn reserve(&self, worker: &Worker, wanted: u64) -> Result<u64, OnlineError> {
        let Some(quota) = self.quota else { return Ok(wanted) };
        if self.hold(wanted, true) == wanted {
            return Ok(wanted);
        }
        let leasing = self.limits.leasing(&self.key);
        let _leasing = leasing.lock().await;
        // A reservation this one waited for may have covered it.
        if self.hold(wanted, true) == wanted {
            return Ok(wanted);
        }
        let shortfall = wanted.saturating_sub(self.with_allowance(|a| a.available()));
        let total = self.lease(worker, quota, shortfall).await?;
        match self.hold(wanted, false) {
            0 => Err(OnlineError::QuotaExhausted { model: self.key.0.clone(), quota, used: total }),
            held => Ok(held),
        }
    }

    /// The refusal of a request that needs more than the `left` tokens its quota has left.
    pub fn exhausted(&self, left: u64) -> OnlineError {
        let quota = self.quota.unwrap_or(0);
        OnlineError::QuotaExhausted {
            model: self.key.0.clone(),
            quota,
            used: quota.saturating_sub(left),
        }
    }

    /// Holds `wanted` tokens of this enclave's reservation for this request, or (unless
    /// `all_or_nothing`) as many as are available; returns how many it holds now.
    fn hold(&self, wanted: u64, all_or_nothing: bool) -> u64 {
        self.with_allowance(|a| {
            let take = a.available().min(wanted);
            if take == 0 || (all_or_nothing && take < wanted) {
                return 0;
            }
            a.held = a.held.saturating_add(take);
            self.held.fetch_add(take, Ordering::SeqCst);
            take
        })
    }

    /// Counts `tokens` against the requester's quota (tokens [`Admission::reserve`]d before)
    /// and releases what this request held.
    pub fn charge(&self, tokens: u64) {
        let held = self.held.swap(0, Ordering::SeqCst);
        self.with_allowance(|a| {
            a.used = a.used.saturating_add(tokens);
            a.held = a.held.saturating_sub(held);
        });
    }

    /// Counts `tokens` whose number was known only once served, and reserves at the
    /// attestation service whatever this enclave's reservation does not cover (what was used
    /// and what other requests hold): call it before the answer leaves, so that no answer
    /// leaves uncounted.
    pub async fn settle(&self, worker: &Worker, tokens: u64) -> Result<(), OnlineError> {
        self.charge(tokens);
        let Some(quota) = self.quota else { return Ok(()) };
        let shortfall =
            || self.with_allowance(|a| a.used.saturating_add(a.held).saturating_sub(a.leased));
        if shortfall() > 0 {
            let leasing = self.limits.leasing(&self.key);
            let _leasing = leasing.lock().await;
            let shortfall = shortfall();
            if shortfall > 0 {
                self.lease(worker, quota, shortfall).await?;
            }
        }
        Ok(())
    }

    fn with_allowance<T>(&self, f: impl FnOnce(&mut Allowance) -> T) -> T {
        let mut allowances = self.limits.allowances.lock().unwrap_or_else(|p| p.into_inner());
        f(allowances.entry(self.key.clone()).or_default())
    }

    /// Reserves `shortfall` and one block more at the attestation service; returns the meter's
    /// total there.
    async fn lease(&self, worker: &Worker, quota: u64, shortfall: u64) -> Result<u64, OnlineError> {
        // A block is what an enclave that ends unexpectedly may lose of a requester's quota;
        // small enough for that, large enough to keep the service off most requests.
        let block = (quota / 20).clamp(1, 100_000);
        let statement = UsageReservation {
            id: reservation_id(),
            meter: self.meter.clone(),
            tokens: shortfall.saturating_add(block),
            quota,
        };
        let unavailable =
            |reason: String| OnlineError::QuotaUnavailable { model: self.key.0.clone(), reason };
        let signed = worker
            .identity
            .receipt_key()
            .sign("usage reservation", &statement, unix_now(), RESERVATION_VALIDITY)
            .map_err(|e| unavailable(e.to_string()))?;
        let reserved = worker
            .service
            .reserve_usage(&worker.identity.ear(), &signed, &self.meter)
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let (granted, total) = reserved.answer;
        let mut allowances =
            worker.catalog.limits().allowances.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(allowance) = allowances.get_mut(&self.key) {
            allowance.leased = allowance.leased.saturating_add(granted);
        }
        Ok(total)
    }
}

/// Looks up `model` and admits the request if the owner's policy lists the requester for this
/// version and has not expired, its token quota is not used up, a request is left in its per-minute allowance (taken
/// from the attestation service in blocks) and its id was not seen before ([`check_fresh`], only
/// then).
pub async fn admit(
    worker: &Worker,
    requester: &Requester,
    model: &str,
    at: u64,
) -> Result<Admission, OnlineError> {
    let catalog = &worker.catalog;
    let loaded = catalog.get(model).ok_or_else(|| OnlineError::ModelNotFound(model.to_owned()))?;
    let id = loaded.id();
    let limits = limits_for(&loaded, requester).ok_or_else(|| OnlineError::NotPermitted {
        model: id.clone(),
        requester: requester.key.clone(),
    })?;
    // The owner's word holds until the policy's expiry, not beyond: a deployment outliving its
    // policy serves nobody until the owner deploys it again under a new one.
    let expires_at = loaded.serving_policy().expires_at();
    if loaded.serving_policy().expired(at) {
        return Err(OnlineError::PolicyExpired { model: id, expires_at });
    }
    let key = (id.clone(), requester.key.clone());
    let per_minute = limits.requests_per_minute;
    let quota = limits.token_quota;
    let meter = UsageMeter {
        model_owner: loaded.serving_policy().owner().to_owned(),
        model: key.0.clone(),
        requester: key.1.clone(),
    };
    if let Some(quota) = quota {
        let used = with_allowance(catalog, &key, |a| a.used);
        if used >= quota {
            return Err(OnlineError::QuotaExhausted { model: id, quota, used });
        }
    }
    let rate_limited = || OnlineError::RateLimited { model: id.clone(), per_minute };
    if per_minute == 0 {
        return Err(rate_limited());
    }
    if !with_allowance(catalog, &key, take_request) {
        // As for tokens: wait for a block already being taken, then look again.
        let leasing = catalog.limits().leasing(&key);
        let _leasing = leasing.lock().await;
        if !with_allowance(catalog, &key, take_request) {
            let granted = lease_requests(worker, &meter, per_minute).await?;
            with_allowance(catalog, &key, |a| a.requests = a.requests.saturating_add(granted));
            if !with_allowance(catalog, &key, take_request) {
                return Err(rate_limited());
            }
        }
    }
    if let Err(replayed) = check_fresh(catalog, requester, at) {
        // A replay is refused before it is counted: the request it took goes back.
        with_allowance(catalog, &key, |a| a.requests = a.requests.saturating_add(1));
        return Err(replayed);
    }
    Ok(Admission {
        model: loaded,
        key,
        quota,
        meter,
        limits: catalog.limits().clone(),
        held: AtomicU64::new(0),
    })
}

/// Runs `f` on the allowance of `key` (created empty on first use).
fn with_allowance<T>(
    catalog: &Catalog,
    key: &(String, String),
    f: impl FnOnce(&mut Allowance) -> T,
) -> T {
    let mut allowances = catalog.limits().allowances.lock().unwrap_or_else(|p| p.into_inner());
    f(allowances.entry(key.clone()).or_default())
}

/// Takes one request this enclave holds, if it holds one.
fn take_request(allowance: &mut Allowance) -> bool {
    match allowance.requests.checked_sub(1) {
        Some(left) => {
            allowance.requests = left;
            true
        }
        None => false,
    }
}

/// A fresh id for a reservation statement (16 random bytes, hex): the service spends each once.
fn reservation_id() -> String {
    let mut id = [0u8; 16];
    rand::rng().fill_bytes(&mut id);
    hex::encode(id)
}

/// Takes a block of requests from the requester's per-minute allowance at the attestation
/// service: a twelfth of a minute's worth (at least one, at most 1,000), so that an enclave that
/// ends unexpectedly loses at most five seconds of the requester's rate. Returns how many were
/// granted (0 when the allowance is spent).
async fn lease_requests(
    worker: &Worker,
    meter: &UsageMeter,
    per_minute: u32,
) -> Result<u32, OnlineError> {
    let block = (per_minute / 12).clamp(1, 1000);
    let statement = RequestReservation {
        id: reservation_id(),
        meter: meter.clone(),
        requests: block,
        per_minute,
    };
    let unavailable =
        |reason: String| OnlineError::QuotaUnavailable { model: meter.model.clone(), reason };
    let signed = worker
        .identity
        .receipt_key()
        .sign("request reservation", &statement, unix_now(), RESERVATION_VALIDITY)
        .map_err(|e| unavailable(e.to_string()))?;
    let reserved = worker
        .service
        .reserve_requests(&worker.identity.ear(), &signed, meter, block)
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    Ok(reserved.answer)
}
