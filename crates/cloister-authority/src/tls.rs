//! Serving the API over TLS (rustls), and a private CA with a server certificate for operators
//! who have none (`cloister keygen --tls-server`), the demos and the tests.
//!
//! [`serve`] accepts connections until `shutdown` completes; each gets the peer's address as
//! `ConnectInfo<SocketAddr>`, which the rate limits key anonymous callers by. Without a TLS
//! configuration it serves plain HTTP: the binary allows that only on a loopback address, or
//! when the operator asks for it by name.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
pub use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use zeroize::Zeroizing;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The certificate file holds no certificate, or not PEM.
    #[error("the TLS certificate file holds no PEM certificate")]
    NoCertificate,
    /// The key file holds no private key, or not PEM.
    #[error("the TLS key file holds no PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoKey,
    /// rustls refused the pair.
    #[error("the TLS certificate and key cannot be used together: {0}")]
    Config(String),
    /// Generating a certificate failed.
    #[error("generating a TLS certificate failed: {0}")]
    Generate(String),
}

/// A rustls server configuration from a PEM certificate chain (leaf first) and its PEM key.
pub fn server_config(
    certificate_pem: &[u8],
    key_pem: &[u8],
) -> Result<Arc<ServerConfig>, TlsError> {
    let chain: Vec<CertificateDer<'static>> =
        rustls_pemfile::certs(&mut &certificate_pem[..]).filter_map(Result::ok).collect();
    if chain.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    let key: PrivateKeyDer<'static> =
        rustls_pemfile::private_key(&mut &key_pem[..]).ok().flatten().ok_or(TlsError::NoKey)?;
    let config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .and_then(|b| b.with_no_client_auth().with_single_cert(chain, key))
            .map_err(|e| TlsError::Config(e.to_string()))?;
    Ok(Arc::new(config))
}

/// How many connections the service holds open at once; beyond it, it stops accepting until
/// one closes (the kernel queues the rest).
pub const MAX_CONNECTIONS: usize = 4096;
/// How many of them one client address may hold.
pub const MAX_CONNECTIONS_PER_ADDRESS: usize = 256;
/// How long a client has to finish its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection may take to send a request's headers (and may sit idle between
/// requests).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `app` on `listener` (TLS with `tls`, plain HTTP without) until `shutdown` completes.
/// Connections already accepted finish on their own tasks.
///
/// Nobody who can only open sockets takes the service down: at most [`MAX_CONNECTIONS`] are
/// held ([`MAX_CONNECTIONS_PER_ADDRESS`] per client address); one that does not finish its TLS
/// handshake within [`HANDSHAKE_TIMEOUT`], or send a request's headers within [`HEADER_TIMEOUT`],
/// is closed; and a failed accept (out of file descriptors, say) is waited out and retried,
/// never fatal.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<Arc<ServerConfig>>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let acceptor = tls.map(TlsAcceptor::from);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let per_address = Arc::new(std::sync::Mutex::new(HashMap::<IpAddr, usize>::new()));
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.map_err(std::io::Error::other)?,
            () = &mut shutdown => return Ok(()),
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accepting a connection failed; retrying shortly");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => return Ok(()),
        };
        let Some(held) = AddressSlot::take(&per_address, peer.ip()) else {
            tracing::debug!(%peer, "too many connections from this address");
            continue;
        };
        let app = app.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _slots = (slot, held);
            let with_peer = tower::ServiceBuilder::new()
                .map_request(move |mut request: axum::http::Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(ConnectInfo(peer));
                    request
                })
                .service(app);
            let service = TowerToHyperService::new(with_peer);
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            builder.http1().timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT);
            let served = match acceptor {
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            builder.serve_connection(TokioIo::new(stream), service).await
                        }
                        Ok(Err(error)) => {
                            tracing::debug!(%peer, %error, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    }
                }
                None => builder.serve_connection(TokioIo::new(tcp), service).await,
            };
            if let Err(error) = served {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
    }
}

/// One of an address's connections; given back when dropped.
struct AddressSlot {
    counts: Arc<std::sync::Mutex<HashMap<IpAddr, usize>>>,
    address: IpAddr,
}

impl AddressSlot {
    fn take(
        counts: &Arc<std::sync::Mutex<HashMap<IpAddr, usize>>>,
        address: IpAddr,
    ) -> Option<Self> {
        let mut map = counts.lock().unwrap_or_else(|p| p.into_inner());
        let held = map.entry(address).or_insert(0);
        if *held >= MAX_CONNECTIONS_PER_ADDRESS {
            return None;
        }
        *held += 1;
        Some(AddressSlot { counts: counts.clone(), address })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut map = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(held) = map.get_mut(&self.address) {
            *held -= 1;
            if *held == 0 {
                map.remove(&self.address);
            }
        }
    }
}

/// What [`private_ca`] makes, all PEM.
pub struct IssuedTls {
    /// The CA certificate clients trust (`--ca`).
    pub ca_certificate: String,
    /// The server certificate, then the CA certificate (`--tls-cert`).
    pub server_chain: String,
    /// The server's private key, PKCS#8 (`--tls-key`).
    pub server_key: Zeroizing<String>,
}

/// A fresh private CA and a server certificate it issued for `hosts` (DNS names or IP
/// addresses), valid for `days`. The CA's key is not kept: nothing else can be issued under it.
pub fn private_ca(hosts: &[String], days: u32) -> Result<IssuedTls, TlsError> {
    let fail = |e: rcgen::Error| TlsError::Generate(e.to_string());
    let now = time::OffsetDateTime::now_utc();
    let until = now + time::Duration::days(i64::from(days));

    let ca_key = KeyPair::generate().map_err(fail)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
    ca.distinguished_name.push(DnType::CommonName, "Cloister attestation service TLS CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = now - time::Duration::minutes(5);
    ca.not_after = until;
    let ca_cert = ca.self_signed(&ca_key).map_err(fail)?;
    let issuer = rcgen::Issuer::new(ca, ca_key);

    let server_key = KeyPair::generate().map_err(fail)?;
    let mut server = CertificateParams::new(hosts.to_vec()).map_err(fail)?;
    server
        .distinguished_name
        .push(DnType::CommonName, hosts.first().map_or("cloister-attestation", String::as_str));
    server.is_ca = IsCa::ExplicitNoCa;
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server.not_before = now - time::Duration::minutes(5);
    server.not_after = until;
    let server_cert = server.signed_by(&server_key, &issuer).map_err(fail)?;
    Ok(IssuedTls {
        ca_certificate: ca_cert.pem(),
        server_chain: format!("{}{}", server_cert.pem(), ca_cert.pem()),
        server_key: Zeroizing::new(server_key.serialize_pem()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_private_ca_issues_a_usable_server_certificate() {
        let issued = private_ca(&["127.0.0.1".into(), "localhost".into()], 1).expect("issues");
        assert!(issued.server_chain.matches("BEGIN CERTIFICATE").count() == 2);
        server_config(issued.server_chain.as_bytes(), issued.server_key.as_bytes())
            .expect("rustls takes the pair");
        assert!(matches!(
            server_config(b"", issued.server_key.as_bytes()),
            Err(TlsError::NoCertificate)
        ));
        assert!(matches!(
            server_config(issued.server_chain.as_bytes(), b"x"),
            Err(TlsError::NoKey)
        ));
        let other = private_ca(&["localhost".into()], 1).expect("issues");
        assert!(
            server_config(issued.server_chain.as_bytes(), other.server_key.as_bytes()).is_err()
        );
    }
}
