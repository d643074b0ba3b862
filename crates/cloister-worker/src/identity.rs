//! The enclave's identity: keys generated at start (never written anywhere), evidence bound to
//! them, and the EAR token and certificate the attestation service returns.

use std::fmt;
use std::sync::{Arc, RwLock};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cloister_attest::Attester;
use cloister_client::ServiceChannel;
use cloister_client::enclave::{pem_certificates, read_claims_unverified};
use cloister_seal::RecipientSecretKey;
use cloister_sign::SigningKey;
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
}

/// Everything the enclave holds about itself. Secrets are zeroized on drop and never logged.
pub struct EnclaveIdentity {
    hpke: RecipientSecretKey,
    receipt_key: SigningKey,
    tls_key_pkcs8: Zeroizing<Vec<u8>>,
    tls_spki: Vec<u8>,
    ohttp: ohttp::KeyConfig,
    certificate_chain_pem: String,
    certificate_chain_der: Vec<Vec<u8>>,
    ear: String,
    runtime_data: RuntimeData,
    claims: Claims,
    instance_id: String,
    /// Collects evidence again when the enclave renews its attestation result.
    attester: Arc<dyn Attester>,
    /// The latest attestation result, presented to the key broker.
    release_token: RwLock<String>,
    /// Held while renewing, so concurrent refusals renew once.
    renewing: tokio::sync::Mutex<()>,
}

/// A successful attestation: the service's answer, for the runtime data sent.
struct Attested {
    ear: String,
    certificate_chain_pem: String,
    certificate_chain_der: Vec<Vec<u8>>,
    runtime_data: RuntimeData,
    claims: Claims,
}

impl EnclaveIdentity {
    /// Generates fresh keys, gets a nonce, collects evidence bound to the keys, the nonce and
    /// the fingerprint of the attestation service it trusts (`service`'s pinned key, as
    /// `service_key_sha256`), and exchanges it for an EAR token and an enclave certificate,
    /// which it uses only when the service's signed answer names both for this request.
    /// `attester` is kept to renew the result ([`Self::renew_release_token`]).
    pub async fn establish(
        attester: Arc<dyn Attester>,
        service: &ServiceChannel,
    ) -> Result<Self, IdentityError> {
        let hpke = RecipientSecretKey::generate();
        let receipt_key = SigningKey::generate();
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
            hpke_pk: hpke.public_key().to_text(),
            tls_spki_sha256: Hex(Sha256::digest(&tls_spki).to_vec()),
            receipt_pk: receipt_key.public_key().to_text(),
            extra,
        };
        let attested = attest(attester.as_ref(), service, keys, &tls_spki).await?;
        Ok(EnclaveIdentity {
            hpke,
            receipt_key,
            tls_key_pkcs8: Zeroizing::new(tls_key.serialize_der()),
            tls_spki,
            ohttp,
            certificate_chain_pem: attested.certificate_chain_pem,
            certificate_chain_der: attested.certificate_chain_der,
            release_token: RwLock::new(attested.ear.clone()),
            ear: attested.ear,
            runtime_data: attested.runtime_data,
            claims: attested.claims,
            instance_id: service.instance_id().to_owned(),
            attester,
            renewing: tokio::sync::Mutex::new(()),
        })
    }

    /// The attestation result to present to the key broker: the latest one this enclave got.
    /// It is [`Self::ear`] until [`Self::renew_release_token`] renews it.
    pub fn release_token(&self) -> String {
        self.release_token.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Attests again — the same keys, a fresh challenge, evidence collected now — because the
    /// key broker refused `stale` (the collateral its appraisal used has changed), so that the
    /// platform is appraised against the service's current collateral; the new result becomes
    /// [`Self::release_token`]. When another task renewed since `stale`, nothing is done. A
    /// refusal (the platform's TCB is now revoked, or out of date beyond the instance's policy)
    /// is the error, and the token stays the stale one. The certificate the worker serves TLS
    /// with, and the result its receipts name ([`Self::ear`]), stay those of the first
    /// attestation.
    pub async fn renew_release_token(
        &self,
        service: &ServiceChannel,
        stale: &str,
    ) -> Result<(), IdentityError> {
        let _renewing = self.renewing.lock().await;
        if self.release_token() != stale {
            return Ok(());
        }
        let keys = RuntimeData { nonce: String::new(), ..self.runtime_data.clone() };
        let attested = attest(self.attester.as_ref(), service, keys, &self.tls_spki).await?;
        if attested.claims.measurement != self.claims.measurement
            || attested.claims.tee != self.claims.tee
        {
            return Err(IdentityError::WrongCertificate(
                "it certifies another TEE or measurement than this enclave's first attestation"
                    .into(),
            ));
        }
        *self.release_token.write().unwrap_or_else(std::sync::PoisonError::into_inner) =
            attested.ear;
        Ok(())
    }

    /// The envelope secret key inputs are sealed to.
    pub fn hpke_secret(&self) -> &RecipientSecretKey {
        &self.hpke
    }

    /// The key receipts are signed with.
    pub fn receipt_key(&self) -> &SigningKey {
        &self.receipt_key
    }

    /// The TLS private key (PKCS#8 DER).
    pub fn tls_key_pkcs8(&self) -> &[u8] {
        &self.tls_key_pkcs8
    }

    /// The OHTTP key configuration (with its private key) online requests are encapsulated to;
    /// its public encoding is bound into the runtime data as `ohttp_key_config`.
    pub fn ohttp_key_config(&self) -> &ohttp::KeyConfig {
        &self.ohttp
    }

    /// The certificate chain, PEM and DER (leaf first).
    pub fn certificate_chain_pem(&self) -> &str {
        &self.certificate_chain_pem
    }

    /// The certificate chain as DER, leaf first.
    pub fn certificate_chain_der(&self) -> &[Vec<u8>] {
        &self.certificate_chain_der
    }

    /// The EAR token.
    pub fn ear(&self) -> &str {
        &self.ear
    }

    /// The runtime data bound into the evidence.
    pub fn runtime_data(&self) -> &RuntimeData {
        &self.runtime_data
    }

    /// The attestation instance that appraised this enclave (`in_…`).
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// The claims the attestation service certified.
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
) -> Result<Attested, IdentityError> {
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
    Ok(Attested {
        ear: response.ear,
        certificate_chain_pem: response.certificate_chain_pem,
        certificate_chain_der: chain,
        runtime_data,
        claims: extension.claims,
    })
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
            .field("hpke_pk", &self.runtime_data.hpke_pk)
            .finish_non_exhaustive()
    }
}
