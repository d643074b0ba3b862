//! Attested TLS on the client side: a rustls verifier that accepts a server only if its
//! certificate is an enclave certificate that passes the party's [`Expectations`].
//!
//! The host name is deliberately not checked: an enclave's identity is its measurement and bound
//! keys, certified by the instance CA, not a DNS name.

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::enclave::{Expectations, VerifiedEnclave, verify_enclave_certificate};

/// A rustls server-certificate verifier for enclave workers.
#[derive(Debug)]
pub struct AttestedServerVerifier {
    expectations: Expectations,
    algorithms: WebPkiSupportedAlgorithms,
    last: Mutex<Option<VerifiedEnclave>>,
}

impl AttestedServerVerifier {
    /// A verifier that enforces `expectations` on every handshake.
    pub fn new(expectations: Expectations) -> Self {
        AttestedServerVerifier {
            expectations,
            algorithms: provider().signature_verification_algorithms,
            last: Mutex::new(None),
        }
    }

    /// The enclave verified by the most recent successful handshake.
    pub fn last_verified(&self) -> Option<VerifiedEnclave> {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl ServerCertVerifier for AttestedServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let chain: Vec<Vec<u8>> = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|der| der.as_ref().to_vec())
            .collect();
        let verified = verify_enclave_certificate(&chain, &self.expectations, now.as_secs())
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(verified);
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The crypto provider every Cloister TLS endpoint uses.
pub fn provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// A rustls client configuration that only talks to enclaves meeting `verifier`'s expectations.
pub fn client_config(
    verifier: Arc<AttestedServerVerifier>,
) -> Result<rustls::ClientConfig, rustls::Error> {
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(provider()))
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}
