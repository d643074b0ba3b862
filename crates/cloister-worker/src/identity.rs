//! The enclave's identity: keys generated at start (never written anywhere), evidence bound to
//! them, and the EAR token and certificate the attestation service returns.

use std::fmt;

use cloister_attest::Attester;
use cloister_client::AuthorityClient;
use cloister_client::enclave::{pem_certificates, read_claims_unverified};
use cloister_seal::RecipientSecretKey;
use cloister_sign::SigningKey;
use cloister_types::api::AttestRequest;
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
    /// The returned certificate is not for this enclave.
    #[error("the attestation service returned a certificate that is not for this enclave: {0}")]
    WrongCertificate(String),
}

/// Everything the enclave holds about itself. Secrets are zeroized on drop and never logged.
pub struct EnclaveIdentity {
    hpke: RecipientSecretKey,
    receipt_key: SigningKey,
    tls_key_pkcs8: Zeroizing<Vec<u8>>,
    certificate_chain_pem: String,
    certificate_chain_der: Vec<Vec<u8>>,
    ear: String,
    runtime_data: RuntimeData,
    claims: Claims,
}

impl EnclaveIdentity {
    /// Generates fresh keys, gets a nonce, collects evidence bound to the keys and the nonce, and
    /// exchanges it for an EAR token and an enclave certificate.
    pub async fn establish(
        attester: &dyn Attester,
        authority: &AuthorityClient,
    ) -> Result<Self, IdentityError> {
        let hpke = RecipientSecretKey::generate();
        let receipt_key = SigningKey::generate();
        let tls_key =
            KeyPair::generate().map_err(|e| IdentityError::KeyGeneration(e.to_string()))?;
        let tls_spki = tls_key.subject_public_key_info();

        let challenge = authority.challenge().await?;
        let runtime_data = RuntimeData {
            nonce: challenge.nonce,
            hpke_pk: hpke.public_key().to_text(),
            tls_spki_sha256: Hex(Sha256::digest(&tls_spki).to_vec()),
            receipt_pk: receipt_key.public_key().to_text(),
            extra: Default::default(),
        };
        let evidence = attester.attest(&runtime_data)?;
        let response =
            authority.attest(&AttestRequest { evidence, tls_spki: Base64Url(tls_spki) }).await?;

        let chain = pem_certificates(&response.certificate_chain_pem)
            .map_err(|e| IdentityError::WrongCertificate(e.to_string()))?;
        let leaf =
            chain.first().ok_or_else(|| IdentityError::WrongCertificate("empty chain".into()))?;
        let extension = read_claims_unverified(leaf)
            .map_err(|e| IdentityError::WrongCertificate(e.to_string()))?;
        if extension.runtime_data != runtime_data {
            return Err(IdentityError::WrongCertificate(
                "its runtime data is not the one this enclave bound into its evidence".into(),
            ));
        }
        Ok(EnclaveIdentity {
            hpke,
            receipt_key,
            tls_key_pkcs8: Zeroizing::new(tls_key.serialize_der()),
            certificate_chain_pem: response.certificate_chain_pem,
            certificate_chain_der: chain,
            ear: response.ear,
            runtime_data,
            claims: extension.claims,
        })
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

    /// The claims the attestation service certified.
    pub fn claims(&self) -> &Claims {
        &self.claims
    }
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
