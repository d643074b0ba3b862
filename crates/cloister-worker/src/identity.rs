//! The enclave's identity: keys generated at start (never written anywhere), evidence bound to
//! them, and the EAR token and certificate the attestation service returns — renewed, with the
//! same keys, before they expire ([`EnclaveIdentity::reattest`], [`keep_attested`]).

use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cloister_attest::Attester;
use cloister_client::ServiceChannel;
use cloister_client::enclave::{pem_certificates, read_claims_unverified, validity_unverified};
use cloister_seal::{EnvelopeSecretKey, RecipientSecretKey, Suite};
use cloister_sign::{AnySigningKey, SignatureSuite};
use cloister_types::api::{AttestRequest, SERVICE_KEY_FIELD};
use cloister_types::online::OHTTP_KEY_CONFIG_FIELD;
use cloister_types::{Base64Url, Claims, Hex, RuntimeData};
use rcgen::{KeyPair, PublicKeyData as _};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Why the enclave could not establish its identity.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// Key generation failed.
    #[error("could not generate the enclave's TLS key: {0}")]
    KeyGeneration(String),
    /// The attestation service could not be reached or refused.
    #[error("attestation failed: {0}")]
    Authority(#[from] cloister_client::ClientError),
    /// Evidence collection failed.
    #[error("could not collect evidence: {0}")]
    Attester(#[from] cloister_attest::AttestError),
    /// The runtime data could not be encoded.
    #[error("could not encode the runtime data: {0}")]
    RuntimeData(#[from] cloister_types::CanonicalJsonError),
    /// The OHTTP key configuration could not be generated or encoded.
    #[error("could not generate the enclave's OHTTP key configuration: {0}")]
    OhttpKey(String),
    /// The returned certificate is not for this enclave.
    #[error("the attestation service returned a certificate that is not for this enclave: {0}")]
    WrongCertificate(String),
    /// Renewing the attestation did not finish.
    #[error("renewing the attestation failed: {0}")]
    Renewal(String),
    /// The TLS key cannot serve the returned certificate.
    #[error("the enclave's TLS key cannot serve the returned certificate: {0}")]
    TlsKey(String),
    /// The attestation instance signs in another suite than the one this enclave runs.
    #[error(
        "the attestation instance signs its tokens with {instance}, but this enclave runs the \
         {enclave} suite: an instance and its enclaves use one suite ({hint})"
    )]
    SuiteMismatch {
        /// The JWS `alg` of the instance's EAR token.
        instance: String,
        /// The enclave's suite.
        enclave: &'static str,
        /// What to change.
        hint: &'static str,
    },
}

/// The signature suite of an enclave running the envelope suite `suite`: ES256 beside X25519,
/// SM2 beside the ShangMi suite. One suite per enclave: its envelope key, its receipt key, the
/// keys of the owners whose grants it accepts and its attestation instance's tokens.
pub fn signature_suite(suite: Suite) -> SignatureSuite {
    match suite {
        Suite::ShangMi => SignatureSuite::Sm2,
        _ => SignatureSuite::Es256,
    }
}

/// Everything the enclave holds about itself. Secrets are zeroized on drop and never logged.
///
/// The keys live as long as the process; the attestation (EAR token and certificate) is renewed
/// with the same keys and a fresh challenge. The TEE and measurement of a renewal must be those
/// of the first attestation.
pub struct EnclaveIdentity {
    hpke: EnvelopeSecretKey,
    receipt_key: AnySigningKey,
    tls_key_pkcs8: Zeroizing<Vec<u8>>,
    tls_spki: Vec<u8>,
    ohttp: ohttp::KeyConfig,
    /// The claims of the first attestation (TEE and measurement never change).
    claims: Claims,
    instance_id: String,
    /// Collects evidence again when the enclave renews its attestation.
    attester: Arc<dyn Attester>,
    /// The latest attestation, shared with the TLS certificate resolver.
    current: Arc<RwLock<Arc<Attestation>>>,
    /// Held while renewing, so concurrent renewals attest once.
    renewing: tokio::sync::Mutex<()>,
}

/// One successful attestation: the service's answer for the runtime data sent, and the TLS
/// certificate it makes.
pub struct Attestation {
    /// The EAR token: what receipts name and the key broker is shown.
    pub ear: String,
    /// The certificate chain, PEM (leaf first, then the instance CA).
    pub certificate_chain_pem: String,
    /// The same chain, DER.
    pub certificate_chain_der: Vec<Vec<u8>>,
    /// The runtime data bound into the evidence (the keys, and this attestation's nonce).
    pub runtime_data: RuntimeData,
    /// The claims the service certified.
    pub claims: Claims,
    /// How long the token and certificate are valid from issue (the shorter of the two).
    pub lifetime: Duration,
    /// The certificate's `notAfter` (Unix seconds), as the certificate says.
    pub not_after: i64,
    /// When this enclave received it.
    pub received: Instant,
    /// The chain with the enclave's TLS key, as the TLS server presents it.
    certified_key: Arc<rustls::sign::CertifiedKey>,
}

impl Attestation {
    /// How long after [`Self::received`] it stops being valid.
    pub fn expires_in(&self) -> Duration {
        self.lifetime.saturating_sub(self.received.elapsed())
    }
}

impl EnclaveIdentity {
    /// Generates fresh keys, gets a nonce, collects evidence bound to the keys, the nonce and
    /// the fingerprint of the attestation service it trusts (`service`'s pinned key, as
    /// `service_key_sha256`), and exchanges it for an EAR token and an enclave certificate,
    /// which it uses only when the service's signed answer names both for this request.
    /// `attester` is kept to renew the result ([`Self::renew_release_token`]). The keys are of
    /// `suite` (an SM2 envelope key and an SM2 receipt key for the ShangMi suite), and the
    /// instance must sign its tokens in the same suite ([`IdentityError::SuiteMismatch`]).
    pub async fn establish(
        attester: Arc<dyn Attester>,
        service: &ServiceChannel,
        suite: Suite,
    ) -> Result<Self, IdentityError> {
        let hpke = EnvelopeSecretKey::generate(suite);
        let receipt_key = AnySigningKey::generate(signature_suite(suite))
            .map_err(|e| IdentityError::KeyGeneration(e.to_string()))?;
        let tls_key =
            KeyPair::generate().map_err(|e| IdentityError::KeyGeneration(e.to_string()))?;
        let tls_spki = tls_key.subject_public_key_info();
        let ohttp = ohttp_key_config()?;
        let ohttp_encoded = ohttp.encode().map_err(|e| IdentityError::OhttpKey(e.to_string()))?;
        let mut extra = std::collections::BTreeMap::new();
        extra.insert(
            OHTTP_KEY_CONFIG_FIELD.to_owned(),
            serde_json::Value::String(URL_SAFE_NO_PAD.encode(&ohttp_encoded)),
        );

        extra.insert(
            SERVICE_KEY_FIELD.to_owned(),
            serde_json::Value::String(service.fingerprint_hex()),
        );

        let keys = RuntimeData {
            nonce: String::new(),
            hpke_pk: hpke.public_key_text(),
            tls_spki_sha256: Hex(Sha256::digest(&tls_spki).to_vec()),
            receipt_pk: receipt_key.public_key().to_text(),
            extra,
        };
        let tls_key_pkcs8 = Zeroizing::new(tls_key.serialize_der());
        let attested = attest(attester.as_ref(), service, keys, &tls_spki, &tls_key_pkcs8).await?;
        check_token_suite(&attested.ear, suite)?;
        Ok(EnclaveIdentity {
            hpke,
            receipt_key,
            tls_key_pkcs8,
            tls_spki,
            ohttp,
            claims: attested.claims.clone(),
            current: Arc::new(RwLock::new(Arc::new(attested))),
            instance_id: service.instance_id().to_owned(),
            attester,
            renewing: tokio::sync::Mutex::new(()),
        })
    }

    /// The latest attestation.
    pub fn current(&self) -> Arc<Attestation> {
        self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Attests again — the same keys, a fresh challenge, evidence collected now — and makes the
    /// new token and certificate current: before the old ones expire ([`keep_attested`]), or
    /// because the key broker refused the token `stale` (the collateral its appraisal used has
    /// changed), so that the platform is appraised against the service's current collateral.
    /// When another task renewed since `stale`, nothing is done. A refusal (the platform's TCB
    /// is now revoked, or out of date beyond the instance's policy) is the error, and the
    /// current attestation stays as it was. Connections already open keep their certificate;
    /// new ones get the new one.
    pub async fn reattest(
        &self,
        service: &ServiceChannel,
        stale: Option<&str>,
    ) -> Result<(), IdentityError> {
        let _renewing = self.renewing.lock().await;
        let current = self.current();
        if stale.is_some_and(|stale| stale != current.ear) {
            return Ok(());
        }
        let keys = RuntimeData { nonce: String::new(), ..current.runtime_data.clone() };
        let attested =
            attest(self.attester.as_ref(), service, keys, &self.tls_spki, &self.tls_key_pkcs8)
                .await?;
        if attested.claims.measurement != self.claims.measurement
            || attested.claims.tee != self.claims.tee
        {
            return Err(IdentityError::WrongCertificate(
                "it certifies another TEE or measurement than this enclave's first attestation"
                    .into(),
            ));
        }
        *self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner) =
            Arc::new(attested);
        Ok(())
    }

    /// A handle on the current attestation that outlives a borrow of the identity (what each
    /// connection reads around its handshake).
    pub fn current_handle(&self) -> CurrentAttestation {
        CurrentAttestation(self.current.clone())
    }

    /// A TLS certificate resolver that always presents the current certificate.
    pub fn certificate_resolver(&self) -> Arc<dyn rustls::server::ResolvesServerCert> {
        Arc::new(CurrentCertificate(self.current.clone()))
    }

    /// The envelope secret key inputs are sealed to (X25519, or SM2 in the ShangMi suite).
    pub fn hpke_secret(&self) -> &EnvelopeSecretKey {
        &self.hpke
    }

    /// The enclave's X25519 envelope key, which key-broker releases are wrapped to; a ShangMi
    /// enclave has none, and is refused here by name.
    pub fn x25519_secret(&self) -> Result<&RecipientSecretKey, String> {
        match &self.hpke {
            EnvelopeSecretKey::X25519(key) => Ok(key),
            _ => Err("key-broker releases are wrapped to an X25519 enclave key, and this enclave \
                 runs the ShangMi suite: seal its inputs to the enclave itself"
                .to_owned()),
        }
    }

    /// The suite of the enclave's keys.
    pub fn suite(&self) -> Suite {
        self.hpke.suite()
    }

    /// The key receipts are signed with (ES256, or SM2 in the ShangMi suite).
    pub fn receipt_key(&self) -> &AnySigningKey {
        &self.receipt_key
    }

    /// The OHTTP key configuration (with its private key) online requests are encapsulated to;
    /// its public encoding is bound into the runtime data as `ohttp_key_config`.
    pub fn ohttp_key_config(&self) -> &ohttp::KeyConfig {
        &self.ohttp
    }

    /// The current certificate chain, PEM (leaf first).
    pub fn certificate_chain_pem(&self) -> String {
        self.current().certificate_chain_pem.clone()
    }

    /// The current certificate chain as DER, leaf first.
    pub fn certificate_chain_der(&self) -> Vec<Vec<u8>> {
        self.current().certificate_chain_der.clone()
    }

    /// The current EAR token.
    pub fn ear(&self) -> String {
        self.current().ear.clone()
    }

    /// The runtime data bound into the current evidence.
    pub fn runtime_data(&self) -> RuntimeData {
        self.current().runtime_data.clone()
    }

    /// The attestation instance that appraised this enclave (`in_…`).
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// The claims the attestation service certified at the first attestation (a renewal is
    /// refused unless it certifies the same TEE and measurement).
    pub fn claims(&self) -> &Claims {
        &self.claims
    }
}

/// Gets a challenge, collects evidence binding `keys` with its nonce, and exchanges it for an EAR
/// token and an enclave certificate, used only when the service's signed answer names both for
/// this request and the certificate is for exactly this runtime data.
async fn attest(
    attester: &dyn Attester,
    service: &ServiceChannel,
    keys: RuntimeData,
    tls_spki: &[u8],
    tls_key_pkcs8: &[u8],
) -> Result<Attestation, IdentityError> {
    let challenge = service.client().challenge().await?;
    let runtime_data = RuntimeData { nonce: challenge.nonce, ..keys };
    let evidence = attester.attest(&runtime_data)?;
    let response = service
        .attest(&AttestRequest { evidence, tls_spki: Base64Url(tls_spki.to_vec()) })
        .await?
        .answer;

    let chain = pem_certificates(&response.certificate_chain_pem)
        .map_err(|e| IdentityError::WrongCertificate(e.to_string()))?;
    let leaf =
        chain.first().ok_or_else(|| IdentityError::WrongCertificate("empty chain".into()))?;
    let extension =
        read_claims_unverified(leaf).map_err(|e| IdentityError::WrongCertificate(e.to_string()))?;
    if extension.runtime_data != runtime_data {
        return Err(IdentityError::WrongCertificate(
            "its runtime data is not the one this enclave bound into its evidence".into(),
        ));
    }
    let (not_before, not_after) =
        validity_unverified(leaf).map_err(|e| IdentityError::WrongCertificate(e.to_string()))?;
    let token_lifetime = token_lifetime(&response.ear)?;
    let lifetime = Duration::from_secs(
        u64::try_from((not_after - not_before).min(token_lifetime)).unwrap_or(0),
    );
    let certified_key = certified_key(&chain, tls_key_pkcs8)?;
    Ok(Attestation {
        ear: response.ear,
        certificate_chain_pem: response.certificate_chain_pem,
        certificate_chain_der: chain,
        runtime_data,
        claims: extension.claims,
        lifetime,
        not_after,
        received: Instant::now(),
        certified_key,
    })
}

/// Refuses an EAR token signed in another suite than the enclave's (`alg` in its header).
fn check_token_suite(token: &str, suite: Suite) -> Result<(), IdentityError> {
    #[derive(serde::Deserialize)]
    struct Header {
        alg: String,
    }
    let wrong = |what: &str| IdentityError::WrongCertificate(format!("its EAR token {what}"));
    let header = token.split('.').next().ok_or_else(|| wrong("is not a JWT"))?;
    let header = URL_SAFE_NO_PAD.decode(header).map_err(|_| wrong("is not base64url"))?;
    let header: Header =
        serde_json::from_slice(&header).map_err(|_| wrong("has no alg in its header"))?;
    let expected = signature_suite(suite).jws_alg();
    if header.alg == expected {
        return Ok(());
    }
    let (enclave, hint) = match suite {
        Suite::ShangMi => (
            "ShangMi (SM2, SM3, SM4)",
            "create the instance with --token-signing sm2, or start the worker with --suite x25519",
        ),
        _ => (
            "X25519/ES256",
            "start the worker with --suite sm, or use an instance created with --token-signing es256",
        ),
    };
    Err(IdentityError::SuiteMismatch { instance: header.alg, enclave, hint })
}

/// `exp - iat` of a JWT (the EAR token), in seconds.
fn token_lifetime(token: &str) -> Result<i64, IdentityError> {
    #[derive(serde::Deserialize)]
    struct Times {
        iat: i64,
        exp: i64,
    }
    let wrong = |what: &str| IdentityError::WrongCertificate(format!("its EAR token {what}"));
    let payload = token.split('.').nth(1).ok_or_else(|| wrong("is not a JWT"))?;
    let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| wrong("is not base64url"))?;
    let times: Times =
        serde_json::from_slice(&payload).map_err(|_| wrong("has no numeric iat and exp"))?;
    Ok(times.exp - times.iat)
}

/// The chain and the enclave's TLS key as rustls serves them.
fn certified_key(
    chain: &[Vec<u8>],
    tls_key_pkcs8: &[u8],
) -> Result<Arc<rustls::sign::CertifiedKey>, IdentityError> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let provider = rustls::crypto::ring::default_provider();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(tls_key_pkcs8.to_vec()));
    let chain = chain.iter().map(|der| CertificateDer::from(der.clone())).collect();
    rustls::sign::CertifiedKey::from_der(chain, key, &provider)
        .map(Arc::new)
        .map_err(|e| IdentityError::TlsKey(e.to_string()))
}

/// The identity's current attestation, shared: [`EnclaveIdentity::current_handle`].
#[derive(Clone, Debug)]
pub struct CurrentAttestation(Arc<RwLock<Arc<Attestation>>>);

impl CurrentAttestation {
    /// The current attestation.
    pub fn get(&self) -> Arc<Attestation> {
        self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

/// Presents the identity's current certificate in every handshake.
#[derive(Debug)]
struct CurrentCertificate(Arc<RwLock<Arc<Attestation>>>);

impl rustls::server::ResolvesServerCert for CurrentCertificate {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner).certified_key.clone())
    }
}

impl fmt::Debug for Attestation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attestation")
            .field("tee", &self.claims.tee)
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

/// Renews the enclave's attestation for as long as it runs: at two thirds of each lifetime
/// (less a random tenth, so that workers started together do not renew together), retrying a
/// failure after 1 s, 2 s, 4 s … (at most a tenth of the lifetime, at most a minute). A worker
/// whose renewal keeps failing keeps serving with what it has until that expires; clients then
/// refuse its certificate and the service its token, so it fails closed.
pub async fn keep_attested(
    identity: &EnclaveIdentity,
    service: &ServiceChannel,
    trust: &crate::service_pin::ServiceTrust,
    metrics: &crate::metrics::WorkerMetrics,
) {
    loop {
        let current = identity.current();
        let lifetime = current.lifetime;
        let jitter = lifetime.mul_f64(rand::random::<f64>() / 10.0);
        let due = (lifetime * 2 / 3).saturating_sub(jitter);
        tokio::time::sleep(due.saturating_sub(current.received.elapsed())).await;
        let mut backoff = Duration::from_secs(1);
        let most = (lifetime / 10).clamp(Duration::from_millis(200), Duration::from_secs(60));
        // A service that does not answer (stopped, or the host holding the connection) must
        // not stall renewal silently: each try gets a third of the lifetime, at most a minute.
        let patience = (lifetime / 3).clamp(Duration::from_secs(1), Duration::from_secs(60));
        loop {
            // A service pinned by measurement must still run a pinned build: checked afresh
            // before every renewal, never carried over from the start.
            let renewal = async {
                trust.check(service).await.map_err(|e| IdentityError::Renewal(e.to_string()))?;
                identity.reattest(service, Some(&current.ear)).await
            };
            let attempt = tokio::time::timeout(patience, renewal).await.unwrap_or_else(|_| {
                Err(IdentityError::Renewal(format!(
                    "the attestation service did not answer within {} ms",
                    patience.as_millis()
                )))
            });
            metrics.renewal(attempt.is_ok());
            match attempt {
                Ok(()) => {
                    tracing::info!(
                        lifetime_s = identity.current().lifetime.as_secs(),
                        "renewed the enclave's attestation"
                    );
                    break;
                }
                Err(error) => {
                    tracing::warn!(%error, expires_in_ms = current.expires_in().as_millis() as u64,
                        "renewing the enclave's attestation failed; retrying");
                    tokio::time::sleep(backoff.min(most)).await;
                    backoff = backoff.saturating_mul(2);
                }
            }
        }
    }
}

/// The key id of the enclave's one OHTTP key configuration.
const OHTTP_KEY_ID: u8 = 1;

/// A fresh OHTTP key configuration: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256 and AES-128-GCM, as
/// in RFC 9458's example.
fn ohttp_key_config() -> Result<ohttp::KeyConfig, IdentityError> {
    use ohttp::hpke::{Aead, Kdf, Kem};
    ohttp::KeyConfig::new(
        OHTTP_KEY_ID,
        Kem::X25519Sha256,
        vec![ohttp::SymmetricSuite::new(Kdf::HkdfSha256, Aead::Aes128Gcm)],
    )
    .map_err(|e| IdentityError::OhttpKey(e.to_string()))
}

impl fmt::Debug for EnclaveIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnclaveIdentity")
            .field("tee", &self.claims.tee)
            .field("measurement", &self.claims.measurement)
            .field("hpke_pk", &self.hpke.public_key_text())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A token whose header names `alg` (the signature is not looked at).
    fn token(alg: &str) -> String {
        let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#));
        format!("{header}.e30.AAAA")
    }

    #[test]
    fn an_enclave_refuses_an_instance_signing_in_the_other_suite() {
        check_token_suite(&token("ES256"), Suite::X25519).expect("one suite");
        check_token_suite(&token("SM2SM3"), Suite::ShangMi).expect("one suite");
        for (alg, suite, hint) in [
            ("ES256", Suite::ShangMi, "--token-signing sm2"),
            ("SM2SM3", Suite::X25519, "--suite sm"),
            ("none", Suite::X25519, "--suite sm"),
        ] {
            let refused = check_token_suite(&token(alg), suite).expect_err("another suite");
            assert!(matches!(refused, IdentityError::SuiteMismatch { .. }), "{refused}");
            assert!(refused.to_string().contains(hint), "{refused}");
        }
        let refused = check_token_suite("not a token", Suite::X25519).expect_err("no header");
        assert!(matches!(refused, IdentityError::WrongCertificate(_)), "{refused}");
    }
}
