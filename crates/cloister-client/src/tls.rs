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

/// A further check of an enclave that met the expectations (pinning it, for instance); `Err`
/// refuses the handshake with that reason.
pub(crate) type EnclaveCheck = Box<dyn Fn(&VerifiedEnclave) -> Result<(), String> + Send + Sync>;

/// A rustls server-certificate verifier for enclave workers.
pub struct AttestedServerVerifier {
    expectations: Expectations,
    check: EnclaveCheck,
    algorithms: WebPkiSupportedAlgorithms,
    last: Mutex<Option<VerifiedEnclave>>,
    refusal: Mutex<Option<String>>,
}

impl std::fmt::Debug for AttestedServerVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttestedServerVerifier")
            .field("expectations", &self.expectations)
            .finish_non_exhaustive()
    }
}

impl AttestedServerVerifier {
    /// A verifier that enforces `expectations` on every handshake.
    pub fn new(expectations: Expectations) -> Self {
        Self::with_check(expectations, Box::new(|_| Ok(())))
    }

    /// A verifier that enforces `expectations`, then `check`, on every handshake.
    pub(crate) fn with_check(expectations: Expectations, check: EnclaveCheck) -> Self {
        AttestedServerVerifier {
            expectations,
            check,
            algorithms: provider().signature_verification_algorithms,
            last: Mutex::new(None),
            refusal: Mutex::new(None),
        }
    }

    /// The enclave verified by the most recent successful handshake.
    pub fn last_verified(&self) -> Option<VerifiedEnclave> {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Why the most recent refused handshake was refused, if one was since the last call.
    pub(crate) fn take_refusal(&self) -> Option<String> {
        self.refusal.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    fn refuse(&self, why: String) -> rustls::Error {
        *self.refusal.lock().unwrap_or_else(|p| p.into_inner()) = Some(why.clone());
        rustls::Error::General(why)
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
            .map_err(|e| self.refuse(e.to_string()))?;
        (self.check)(&verified).map_err(|why| self.refuse(why))?;
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
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(provider()))
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    // Every connection verifies the enclave's certificate as it is now: a resumed session
    // would skip the verifier, trusting a certificate that may have expired or been renewed.
    config.resumption = rustls::client::Resumption::disabled();
    Ok(config)
}
