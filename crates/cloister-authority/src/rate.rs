//! Per-caller rate limits of the service's HTTP API.
//!
//! Every request is put in a [`RouteClass`] by its route and counted against a key: the
//! authenticated identity where there is one (the tenant or operator of a bearer token, the
//! instance an enclave's statement is addressed to), otherwise the client's address. The
//! address is the TCP peer's, or — only when the peer is one of the configured trusted proxies —
//! the nearest address in `X-Forwarded-For` that is not a trusted proxy itself: a header from
//! anyone else is ignored, since anyone can write one. A request over its class's rate gets
//! `429 Too Many Requests` with `Retry-After`.
//!
//! An IPv6 client is counted by its /64 network, the smallest block a provider hands to one
//! site: anyone holds a whole /64, so counting its 2^64 addresses one by one would be no limit.
//! An IPv4-mapped IPv6 address counts as its IPv4 address.
//!
//! The defaults ([`RateLimits::default`]) are generous enough for eight clients attesting at
//! 2,000 per second from one address (the service benchmark), and small where a request writes
//! something an anonymous caller chooses (data-set registrations).

use std::fmt;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::http::HeaderMap;
use cloister_policy::Principal;
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

/// Which limit a route counts against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RouteClass {
    /// Challenges and attestations (anonymous: by address).
    Attestation,
    /// Key releases (anonymous: by address).
    Release,
    /// Data-set registrations and grant revocations (anonymous writes: by address, kept small).
    Registration,
    /// Statements of attested enclaves (by the instance they are addressed to).
    Enclave,
    /// The management API (by tenant or operator).
    Management,
    /// Public reads: instance information, JWKS, the service key (by address).
    Reads,
}

impl RouteClass {
    /// Every class, in order.
    pub const ALL: [RouteClass; 6] = [
        RouteClass::Attestation,
        RouteClass::Release,
        RouteClass::Registration,
        RouteClass::Enclave,
        RouteClass::Management,
        RouteClass::Reads,
    ];

    /// The name used in flags and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            RouteClass::Attestation => "attestation",
            RouteClass::Release => "release",
            RouteClass::Registration => "registration",
            RouteClass::Enclave => "enclave",
            RouteClass::Management => "management",
            RouteClass::Reads => "reads",
        }
    }

    /// The class of a route (the matched path pattern), or `None` for routes that are never
    /// limited (health, readiness, metrics, the OpenAPI document).
    pub fn of_route(method: &str, route: &str) -> Option<RouteClass> {
        Some(match (method, route) {
            ("GET", "/healthz" | "/readyz" | "/metrics" | "/openapi.json") => return None,
            ("POST", "/v1/instances/{id}/challenge" | "/v1/instances/{id}/attest") => {
                RouteClass::Attestation
            }
            ("POST", "/v1/keys/release") => RouteClass::Release,
            // Fresh service evidence costs the TEE a quote or report each time: as scarce as
            // registrations.
            (
                "POST",
                "/v1/datasets"
                | "/v1/grants/revoke"
                | "/v1/service-key/challenge"
                | "/v1/owners/challenge"
                | "/v1/owners/sessions"
                | "/v1/receipts/explain",
            ) => RouteClass::Registration,
            (
                "POST",
                "/v1/instances/{id}/jobs"
                | "/v1/instances/{id}/privacy-charges"
                | "/v1/instances/{id}/usage-reservations"
                | "/v1/instances/{id}/request-reservations",
            ) => RouteClass::Enclave,
            (
                "GET",
                "/v1/service-key" | "/v1/instances/{id}/info" | "/v1/instances/{id}/jwks.json",
            ) => RouteClass::Reads,
            _ => RouteClass::Management,
        })
    }
}

impl fmt::Display for RouteClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One class's limit: a sustained rate and a burst.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    /// Requests per second, sustained.
    pub per_second: NonZeroU32,
    /// Requests allowed at once after a quiet spell.
    pub burst: NonZeroU32,
}

impl Limit {
    const fn new(per_second: u32, burst: u32) -> Self {
        // Callers pass literals above zero; `MIN` is never reached.
        let per_second = match NonZeroU32::new(per_second) {
            Some(n) => n,
            None => NonZeroU32::MIN,
        };
        let burst = match NonZeroU32::new(burst) {
            Some(n) => n,
            None => NonZeroU32::MIN,
        };
        Limit { per_second, burst }
    }
}

/// The limit of every class.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimits {
    limits: [(RouteClass, Limit); 6],
}

impl Default for RateLimits {
    /// Per address: 5,000/s attestation requests (challenges and attests together; eight clients
    /// at 2,000 attestations per second make 4,000), 1,000/s key releases, 5/s data-set
    /// registrations (burst 20), 5,000/s public reads. Per instance: 1,000/s enclave statements.
    /// Per tenant or operator: 200/s management requests.
    fn default() -> Self {
        RateLimits {
            limits: [
                (RouteClass::Attestation, Limit::new(5_000, 5_000)),
                (RouteClass::Release, Limit::new(1_000, 1_000)),
                (RouteClass::Registration, Limit::new(5, 20)),
                (RouteClass::Enclave, Limit::new(1_000, 1_000)),
                (RouteClass::Management, Limit::new(200, 400)),
                (RouteClass::Reads, Limit::new(5_000, 5_000)),
            ],
        }
    }
}

impl RateLimits {
    /// The limit of `class`.
    pub fn limit(&self, class: RouteClass) -> Limit {
        self.limits.iter().find(|(c, _)| *c == class).map_or(Limit::new(1, 1), |(_, l)| *l)
    }

    /// Sets the limit of `class`.
    pub fn set(&mut self, class: RouteClass, limit: Limit) {
        for entry in &mut self.limits {
            if entry.0 == class {
                entry.1 = limit;
            }
        }
    }

    /// Applies one `CLASS=PER_SECOND[/BURST]` setting (a `--rate-limit` flag).
    pub fn apply(&mut self, setting: &str) -> Result<(), String> {
        let usage = || {
            let classes: Vec<&str> = RouteClass::ALL.iter().map(|c| c.as_str()).collect();
            format!(
                "{setting:?}: give CLASS=PER_SECOND or CLASS=PER_SECOND/BURST, with CLASS one of \
                 {} and whole numbers above zero",
                classes.join(", ")
            )
        };
        let (name, value) = setting.split_once('=').ok_or_else(usage)?;
        let class =
            RouteClass::ALL.into_iter().find(|c| c.as_str() == name.trim()).ok_or_else(usage)?;
        let (rate, burst) = match value.split_once('/') {
            Some((rate, burst)) => (rate, Some(burst)),
            None => (value, None),
        };
        let number = |text: &str| {
            text.trim().parse::<u32>().ok().and_then(NonZeroU32::new).ok_or_else(usage)
        };
        let per_second = number(rate)?;
        let burst = burst.map(number).transpose()?.unwrap_or(per_second);
        self.set(class, Limit { per_second, burst });
        Ok(())
    }
}

/// Who a request is counted as.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RateKey {
    /// An authenticated tenant admin or the operator.
    Principal(String),
    /// The instance an enclave statement is addressed to.
    Instance(String),
    /// An anonymous client, by address (IPv6: by /64 network, see [`anonymous_key`]).
    Address(IpAddr),
}

/// An address or network (`ADDR` or `ADDR/PREFIX`) whose `X-Forwarded-For` is believed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrustedProxy {
    network: IpAddr,
    prefix: u8,
}

impl FromStr for TrustedProxy {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{text:?} is not an IP address or ADDR/PREFIX network");
        let (addr, prefix) = match text.trim().split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text.trim(), None),
        };
        let network: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(prefix) => prefix.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?,
            None => max,
        };
        Ok(TrustedProxy { network, prefix })
    }
}

impl TrustedProxy {
    /// Whether `addr` is in this network.
    pub fn contains(&self, addr: IpAddr) -> bool {
        fn masked(bits: u128, prefix: u8, width: u8) -> u128 {
            let shift = width - prefix;
            if shift >= 128 { 0 } else { bits >> shift }
        }
        match (self.network, addr) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                masked(u32::from(net).into(), self.prefix, 32)
                    == masked(u32::from(a).into(), self.prefix, 32)
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                masked(u128::from(net), self.prefix, 128) == masked(u128::from(a), self.prefix, 128)
            }
            _ => false,
        }
    }
}

/// The client's address: the peer's, unless the peer is a trusted proxy, in which case the
/// nearest `X-Forwarded-For` entry (from the right) that is not a trusted proxy. Entries that do
/// not parse end the walk at the last good address.
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[TrustedProxy]) -> IpAddr {
    let is_trusted = |addr: IpAddr| trusted.iter().any(|proxy| proxy.contains(addr));
    if !is_trusted(peer) {
        return peer;
    }
    let mut client = peer;
    let forwarded = headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok());
    let hops: Vec<&str> = forwarded.flat_map(|v| v.split(',')).collect();
    for hop in hops.iter().rev() {
        let Ok(addr) = hop.trim().parse::<IpAddr>() else { break };
        client = addr;
        if !is_trusted(addr) {
            break;
        }
    }
    client
}

/// The key a request counts against in `class`.
pub fn rate_key(
    class: RouteClass,
    who: &Principal,
    instance: Option<&str>,
    addr: IpAddr,
) -> RateKey {
    match (class, who) {
        (RouteClass::Enclave, _) => match instance {
            Some(id) => RateKey::Instance(id.to_owned()),
            None => RateKey::Address(addr),
        },
        (_, Principal::Operator) => RateKey::Principal("operator".to_owned()),
        (_, Principal::TenantAdmin { tenant }) => RateKey::Principal(tenant.clone()),
        (_, _) => RateKey::Address(anonymous_key(addr)),
    }
}

/// What an anonymous client at `addr` is counted as: an IPv4 address as itself, an IPv6 one as
/// its /64 network (the interface bits zeroed), an IPv4-mapped IPv6 address as its IPv4 one.
pub fn anonymous_key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        },
    }
}

/// After this many checks the limiters forget their idle keys.
const FORGET_EVERY: u64 = 1 << 16;

/// The limiters of every class.
#[derive(Clone)]
pub struct Limiter {
    classes: Arc<Vec<(RouteClass, DefaultKeyedRateLimiter<RateKey>)>>,
    checks: Arc<AtomicU64>,
}

impl fmt::Debug for Limiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limiter").finish_non_exhaustive()
    }
}

impl Limiter {
    /// Limiters for `limits`.
    pub fn new(limits: &RateLimits) -> Self {
        let classes = RouteClass::ALL
            .into_iter()
            .map(|class| {
                let limit = limits.limit(class);
                let quota = Quota::per_second(limit.per_second).allow_burst(limit.burst);
                (class, DefaultKeyedRateLimiter::keyed(quota))
            })
            .collect();
        Limiter { classes: Arc::new(classes), checks: Arc::new(AtomicU64::new(0)) }
    }

    /// Counts one request of `key` in `class`: `Ok` when it may go on, else how long to wait.
    pub fn check(&self, class: RouteClass, key: &RateKey) -> Result<(), Duration> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % FORGET_EVERY == FORGET_EVERY - 1 {
            self.forget_idle();
        }
        let Some((_, limiter)) = self.classes.iter().find(|(c, _)| *c == class) else {
            return Ok(());
        };
        limiter
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// Forgets keys that have been quiet long enough to be back at a full burst (every
    /// [`FORGET_EVERY`] checks, so that the memory they take stays bounded by the active
    /// callers).
    pub fn forget_idle(&self) {
        for (_, limiter) in self.classes.iter() {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("address")
    }

    #[test]
    fn an_ipv6_client_is_counted_by_its_64_network() {
        let limits = {
            let mut limits = RateLimits::default();
            limits.apply("registration=1/2").expect("a valid setting");
            limits
        };
        let limiter = Limiter::new(&limits);
        let anonymous = Principal::Anonymous;
        let key = |addr: &str| rate_key(RouteClass::Registration, &anonymous, None, ip(addr));
        // Two requests of the burst from one address, the third from another address of the
        // same /64: refused, the network shares one bucket.
        assert!(limiter.check(RouteClass::Registration, &key("2001:db8:1:2::1")).is_ok());
        assert!(limiter.check(RouteClass::Registration, &key("2001:db8:1:2::1")).is_ok());
        assert!(limiter.check(RouteClass::Registration, &key("2001:db8:1:2:ffff::9")).is_err());
        // The next /64 has its own.
        assert!(limiter.check(RouteClass::Registration, &key("2001:db8:1:3::1")).is_ok());
        // IPv4 addresses stay separate, and an IPv4-mapped IPv6 address is its IPv4 address.
        assert!(limiter.check(RouteClass::Registration, &key("192.0.2.1")).is_ok());
        assert!(limiter.check(RouteClass::Registration, &key("::ffff:192.0.2.1")).is_ok());
        assert!(limiter.check(RouteClass::Registration, &key("192.0.2.1")).is_err());
        assert!(limiter.check(RouteClass::Registration, &key("192.0.2.2")).is_ok());
        assert_eq!(anonymous_key(ip("2001:db8::1:2:3:4")), ip("2001:db8::"));
    }

    #[test]
    fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
        let trusted: Vec<TrustedProxy> =
            ["10.0.0.0/8", "::1"].iter().map(|t| t.parse().expect("proxy")).collect();
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.7, 10.1.2.3"));
        // From a trusted proxy: the nearest untrusted hop.
        assert_eq!(client_address(ip("10.9.9.9"), &headers, &trusted), ip("203.0.113.7"));
        // From anyone else: the header is ignored.
        assert_eq!(client_address(ip("198.51.100.1"), &headers, &trusted), ip("198.51.100.1"));
        // A forged leftmost entry does not help behind a proxy that appends the real peer.
        headers
            .insert("x-forwarded-for", HeaderValue::from_static("1.1.1.1, 198.51.100.9, 10.1.2.3"));
        assert_eq!(client_address(ip("10.9.9.9"), &headers, &trusted), ip("198.51.100.9"));
        // Garbage stops the walk at the last good address.
        headers.insert("x-forwarded-for", HeaderValue::from_static("junk, 10.1.2.3"));
        assert_eq!(client_address(ip("::1"), &headers, &trusted), ip("10.1.2.3"));
        assert!(!trusted[0].contains(ip("11.0.0.1")));
        assert!(!trusted[0].contains(ip("::1")));
        assert!("10.0.0.0/33".parse::<TrustedProxy>().is_err());
        assert!("proxy.internal".parse::<TrustedProxy>().is_err());
    }

    #[test]
    fn a_key_over_its_rate_waits_and_others_do_not() {
        let mut limits = RateLimits::default();
        limits.apply("registration=1/2").expect("setting");
        let limiter = Limiter::new(&limits);
        let a = RateKey::Address(ip("192.0.2.1"));
        let b = RateKey::Address(ip("192.0.2.2"));
        assert!(limiter.check(RouteClass::Registration, &a).is_ok());
        assert!(limiter.check(RouteClass::Registration, &a).is_ok());
        let wait = limiter.check(RouteClass::Registration, &a).expect_err("over the burst");
        assert!(wait <= Duration::from_secs(1), "{wait:?}");
        assert!(limiter.check(RouteClass::Registration, &b).is_ok(), "another caller");
        assert!(limiter.check(RouteClass::Attestation, &a).is_ok(), "another class");
    }

    #[test]
    fn settings_are_checked() {
        let mut limits = RateLimits::default();
        limits.apply("attestation=9000").expect("setting");
        assert_eq!(limits.limit(RouteClass::Attestation).burst.get(), 9000);
        for bad in ["attestation", "attest=5", "release=0", "release=5/0", "release=-1"] {
            let err = limits.apply(bad).expect_err(bad);
            assert!(err.contains("CLASS=PER_SECOND"), "{err}");
        }
        assert_eq!(RouteClass::of_route("GET", "/healthz"), None);
        assert_eq!(RouteClass::of_route("POST", "/v1/datasets"), Some(RouteClass::Registration));
        assert_eq!(
            RouteClass::of_route("POST", "/v1/grants/revoke"),
            Some(RouteClass::Registration)
        );
        assert_eq!(
            RouteClass::of_route("DELETE", "/v1/instances/{id}"),
            Some(RouteClass::Management)
        );
    }
}
