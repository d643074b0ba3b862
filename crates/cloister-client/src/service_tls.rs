//! How parties and workers reach the attestation service: HTTPS, verified against the system's
//! roots or a CA the caller names; plain HTTP only to a loopback address, or when the caller
//! says so with a flag named for what it is.
//!
//! Bearer tokens, grants and the answers enclaves act on travel to and from the service; over
//! plain HTTP anyone on the path reads and changes them. Answers enclaves act on are signed as
//! well (see [`crate::answers`]), but tokens are not, so the transport itself must be private.

use std::net::IpAddr;

use crate::http::{ClientError, transport};

/// Which certificates a service's TLS certificate must chain to.
#[derive(Clone, Debug)]
enum Roots {
    /// The operating system's trust store.
    System,
    /// Only these CA certificates (PEM), for a service with a private CA.
    Ca(Vec<reqwest::Certificate>),
}

/// How a client connects to the attestation service.
#[derive(Clone, Debug)]
pub struct ServiceTls {
    roots: Roots,
    insecure_plain_http: bool,
}

impl Default for ServiceTls {
    /// The system's roots; plain HTTP to loopback addresses only.
    fn default() -> Self {
        ServiceTls { roots: Roots::System, insecure_plain_http: false }
    }
}

impl ServiceTls {
    /// Trust only the CA certificates in `pem` (one or more `CERTIFICATE` blocks).
    pub fn with_ca_pem(pem: &[u8]) -> Result<Self, ClientError> {
        let certificates =
            reqwest::Certificate::from_pem_bundle(pem).map_err(|e| ClientError::Transport {
                url: "(the service CA)".to_owned(),
                reason: format!("the CA file is not PEM certificates: {e}"),
            })?;
        if certificates.is_empty() {
            return Err(ClientError::Transport {
                url: "(the service CA)".to_owned(),
                reason: "the CA file holds no certificate".to_owned(),
            });
        }
        Ok(ServiceTls { roots: Roots::Ca(certificates), insecure_plain_http: false })
    }

    /// Also allow plain HTTP to addresses that are not loopback. Everything sent, bearer tokens
    /// included, then crosses the network in clear: only behind a TLS-terminating proxy on the
    /// same host, and only when the operator asks for it by name.
    #[must_use]
    pub fn allow_insecure_plain_http(mut self) -> Self {
        self.insecure_plain_http = true;
        self
    }

    /// An HTTP client for the service at `base`, or why `base` is refused. It follows no
    /// redirect: one could carry the bearer token to another host, or to plain HTTP, past the
    /// scheme check above. Plain HTTP never goes through a proxy from the environment
    /// (`http_proxy`, `ALL_PROXY`, …): the check above is about where the request goes, and a
    /// proxy would receive the bearer token in clear and could answer in the service's place
    /// (red team, round 8). HTTPS may: the proxy only relays the TLS connection.
    pub(crate) fn client(&self, base: &str) -> Result<reqwest::Client, ClientError> {
        check_scheme(base, self.insecure_plain_http)?;
        let mut builder = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
        if !base.starts_with("https://") {
            builder = builder.no_proxy();
        }
        if let Roots::Ca(certificates) = &self.roots {
            builder = builder.tls_built_in_root_certs(false);
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate.clone());
            }
        }
        builder.build().map_err(|e| transport(base, e))
    }
}

/// `https://` always; `http://` only to a loopback host, or when allowed insecurely.
fn check_scheme(base: &str, insecure_plain_http: bool) -> Result<(), ClientError> {
    let refused = |reason: String| ClientError::Transport { url: base.to_owned(), reason };
    let (scheme, rest) = base.split_once("://").ok_or_else(|| {
        refused("the service URL must start with https:// (or http:// on loopback)".to_owned())
    })?;
    match scheme {
        "https" => Ok(()),
        "http" if insecure_plain_http || is_loopback_host(rest) => Ok(()),
        "http" => Err(refused(
            "refusing plain HTTP to an attestation service that is not on this host: bearer \
             tokens and everything else would cross the network in clear; use https:// (with \
             --server-ca for a private CA), or --insecure-plain-http behind a TLS proxy on this host"
                .to_owned(),
        )),
        other => Err(refused(format!("unsupported URL scheme {other:?}; use https://"))),
    }
}

/// Whether the authority part of a URL (after `scheme://`) names a loopback host.
fn is_loopback_host(rest: &str) -> bool {
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = match authority.rsplit_once('@') {
        Some((_, host)) => host,
        None => authority,
    };
    let host = if let Some(bracketed) = host.strip_prefix('[') {
        bracketed.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_reaches_loopback_unless_allowed_by_name() {
        for ok in [
            "https://attest.example.com",
            "http://127.0.0.1:8080",
            "http://127.8.9.1",
            "http://[::1]:80/x",
            "http://localhost:1",
        ] {
            assert!(check_scheme(ok, false).is_ok(), "{ok}");
        }
        for refused in [
            "http://attest.example.com",
            "http://10.0.0.5:8080",
            "http://127.0.0.1.evil.example",
            "http://localhost.evil.example",
            "http://user@10.0.0.5",
            "ftp://127.0.0.1",
            "127.0.0.1:8080",
        ] {
            let err = check_scheme(refused, false).expect_err(refused);
            assert!(err.to_string().contains("http"), "{err}");
        }
        assert!(check_scheme("http://10.0.0.5:8080", true).is_ok());
    }

    #[test]
    fn a_ca_file_must_hold_certificates() {
        assert!(ServiceTls::with_ca_pem(b"not pem").is_err());
        assert!(ServiceTls::with_ca_pem(b"").is_err());
    }
}
