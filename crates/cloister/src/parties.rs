//! What a data or model provider does: hold keys, verify the enclave, seal and upload, sign grants,
//! verify receipts, open results. Used by `cloister demo` and the end-to-end tests.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use cloister_client::{AuthorityClient, Expectations, VerifiedEnclave, WorkerClient};
use cloister_seal::{BrokerRecipient, Metadata, RecipientSecretKey};
use cloister_sign::{SigningKey, unix_now};
use cloister_types::api::{
    DatasetRegistration, GrantRevocation, GrantRevoked, RegisterDataset, RevokeGrant,
};
use cloister_types::{Hex, InputRef, InputRole, JobSpec, TeeKind};
use sha2::{Digest, Sha256};

use crate::testbed::write_secret;

pub use cloister_client::enclave::accepted_tees;

/// Parses `--measurement` values (hex).
pub fn parse_measurements(values: &[String]) -> Result<Vec<Hex>> {
    values
        .iter()
        .map(|m| Hex::parse(m).with_context(|| format!("--measurement {m} is not hex")))
        .collect()
}

pub use cloister_client::protocol::{Admitted, sign_grant, verify_receipt};

/// One organisation taking part: its signing key (grants), its envelope key (results), and the
/// directory where it keeps them.
pub struct Party {
    /// A human name for messages.
    pub name: String,
    /// The party's directory.
    pub dir: PathBuf,
    /// Signs grants.
    pub signing: SigningKey,
    /// Opens results sealed to the party.
    pub envelope: RecipientSecretKey,
}

impl Party {
    /// Creates a party with fresh keys, written under `dir`.
    pub fn create(name: &str, dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let party = Party {
            name: name.to_owned(),
            dir: dir.to_owned(),
            signing: SigningKey::generate(),
            envelope: RecipientSecretKey::generate(),
        };
        write_secret(&dir.join("signing.key"), party.signing.to_text().as_bytes())?;
        std::fs::write(dir.join("signing.pub"), party.signing.public_key().to_text() + "\n")?;
        write_secret(&dir.join("envelope.key"), party.envelope.to_text().as_bytes())?;
        std::fs::write(dir.join("envelope.pub"), party.envelope.public_key().to_text() + "\n")?;
        Ok(party)
    }

    /// The party's public signing key, text form.
    pub fn id(&self) -> String {
        self.signing.public_key().to_text()
    }

    /// Connects to a worker, verifying its certificate chain and claims against the party's own
    /// expectations before anything is sent.
    pub async fn attest_worker(
        &self,
        worker_url: &str,
        ca_pem: &str,
        allowed_measurements: &[Hex],
        accepted_tees: &[TeeKind],
    ) -> Result<(WorkerClient, VerifiedEnclave)> {
        let expectations = Expectations::from_ca_pem(
            ca_pem,
            allowed_measurements.to_vec(),
            accepted_tees.to_vec(),
        )?;
        let client = WorkerClient::new(worker_url, expectations)?;
        let (enclave, _) = client
            .attest()
            .await
            .with_context(|| format!("{} refuses to use the worker", self.name))?;
        Ok((client, enclave))
    }

    /// Seals `plaintext` once to the party's key-broker key (`recipient`: what `cloister key
    /// register` prints) and uploads it: any enclave the party's release policy admits can open
    /// it later, until the party revokes the key.
    pub async fn seal_to_broker_and_upload(
        &self,
        client: &WorkerClient,
        recipient: &str,
        object_id: &str,
        content_type: &str,
        plaintext: &[u8],
    ) -> Result<InputRef> {
        seal_to_broker_and_upload(client, &self.id(), recipient, object_id, content_type, plaintext)
            .await
    }

    /// Seals `plaintext` to the enclave and uploads it; returns the reference a job uses.
    pub async fn seal_and_upload(
        &self,
        client: &WorkerClient,
        enclave: &VerifiedEnclave,
        object_id: &str,
        content_type: &str,
        plaintext: &[u8],
    ) -> Result<InputRef> {
        seal_to_enclave_and_upload(client, enclave, &self.id(), object_id, content_type, plaintext)
            .await
    }

    /// Seals `plaintext` to the verified enclave as this party's training data set, registers it
    /// to this party at the attestation service (so that only its grants spend the data set's
    /// privacy budget), and uploads it.
    pub async fn seal_register_and_upload(
        &self,
        client: &WorkerClient,
        enclave: &VerifiedEnclave,
        authority: &AuthorityClient,
        object_id: &str,
        content_type: &str,
        plaintext: &[u8],
    ) -> Result<InputRef> {
        seal_register_and_upload(
            client,
            enclave,
            authority,
            &self.signing,
            object_id,
            content_type,
            plaintext,
        )
        .await
    }

    /// Signs a grant letting `spec` use this party's `input` in `role`, in the `admitted`
    /// enclaves, with results sealed only to `result_recipients`.
    pub fn grant(
        &self,
        spec: &JobSpec,
        role: InputRole,
        admitted: &Admitted,
        result_recipients: &[String],
    ) -> Result<String> {
        self.grant_with_budget(spec, role, admitted, result_recipients, None)
    }

    /// [`Party::grant`], for a training job whose data may spend at most `privacy_budget`
    /// (DP-SGD required) when one is given.
    pub fn grant_with_budget(
        &self,
        spec: &JobSpec,
        role: InputRole,
        admitted: &Admitted,
        result_recipients: &[String],
        privacy_budget: Option<cloister_types::job::PrivacyBudget>,
    ) -> Result<String> {
        sign_grant(&self.signing, spec, role, admitted, result_recipients, privacy_budget)
            .with_context(|| format!("{} cannot grant the job", self.name))
    }
}

/// The metadata a party's sealed object carries: its id, content type and owner.
pub(crate) fn owned_metadata(owner: &str, object_id: &str, content_type: &str) -> Metadata {
    Metadata {
        content_type: content_type.to_owned(),
        object_id: object_id.to_owned(),
        attributes: [(cloister_types::OWNER_ATTRIBUTE.to_owned(), owner.to_owned())]
            .into_iter()
            .collect(),
    }
}

/// How long a data-set registration statement is accepted by the attestation service.
const REGISTRATION_VALIDITY: Duration = Duration::from_secs(300);

/// Registers the sealed data set `sealed` (by its digest) to `owner` at the attestation service
/// `authority`: its privacy ledger then charges the data set only with `owner`'s grants. Do it
/// before the ciphertext leaves the owner's hands: the first registration of a digest stands.
pub async fn register_dataset(
    authority: &AuthorityClient,
    service_key: &cloister_sign::VerifyingKey,
    owner: &SigningKey,
    object_id: &str,
    sealed: &[u8],
) -> Result<()> {
    let sha256 = Hex(Sha256::digest(sealed).to_vec());
    let statement = DatasetRegistration { sha256: sha256.clone(), object_id: object_id.to_owned() };
    let statement =
        owner.sign("data set registration", &statement, unix_now(), REGISTRATION_VALIDITY)?;
    let statement_sha256 = Hex(Sha256::digest(statement.as_bytes()).to_vec());
    let registered = authority
        .register_dataset(&RegisterDataset { owner: owner.public_key().to_text(), statement })
        .await
        .with_context(|| {
            format!("registering data set {object_id} with the attestation service")
        })?;
    // The answer must come from the service the caller named by key (for a data set an enclave
    // will read, the service it is pinned to), about this very statement (red team, round 9: a
    // relay showed one service's key and registered at another).
    let answer = service_key
        .verify::<cloister_types::api::RegistrationAnswer>(
            cloister_types::api::REGISTRATION_ANSWER,
            &registered.answer,
            unix_now(),
        )
        .with_context(|| {
            format!(
                "the registration of {object_id} was not answered by the attestation service \
                 with key {}: it may have been registered elsewhere",
                service_key.fingerprint_hex()
            )
        })?
        .claims;
    ensure!(
        answer.sha256 == sha256
            && answer.object_id == object_id
            && answer.owner == owner.public_key().to_text()
            && answer.statement_sha256 == statement_sha256,
        "the attestation service's answer is about another registration than {object_id}'s"
    );
    Ok(())
}

/// Revokes, at the attestation service `authority`, every grant `owner` signed for the job with
/// digest `job_digest`: from then on the service records no authorization and charges no
/// privacy for that job with `owner`'s inputs, so no worker starts it.
pub async fn revoke_grant(
    authority: &AuthorityClient,
    owner: &impl cloister_sign::TokenSigner,
    job_digest: &Hex,
) -> Result<GrantRevoked> {
    let statement = GrantRevocation { job_digest: job_digest.clone() };
    let statement =
        owner.sign_token("grant revocation", &statement, unix_now(), REGISTRATION_VALIDITY)?;
    authority
        .revoke_grant(&RevokeGrant { owner: owner.public_key_text(), statement })
        .await
        .with_context(|| format!("revoking the grants for job digest {job_digest}"))
}

/// Seals `plaintext` to the verified enclave's key as `owner`'s training data set, registers it
/// to `owner` at the attestation service, then uploads it.
pub async fn seal_register_and_upload(
    client: &WorkerClient,
    enclave: &VerifiedEnclave,
    authority: &AuthorityClient,
    owner: &SigningKey,
    object_id: &str,
    content_type: &str,
    plaintext: &[u8],
) -> Result<InputRef> {
    let service_key = ensure_enclave_uses(enclave, authority).await?;
    let id = owner.public_key().to_text();
    let sealed = seal_to_enclave(enclave, &id, object_id, content_type, plaintext)?;
    register_dataset(authority, &service_key, owner, object_id, &sealed).await?;
    upload(client, &id, object_id, sealed).await
}

/// Refuses an enclave pinned to another attestation service than `authority`: a data set
/// registered at `authority` would be charged where the enclave never asks, and revocations
/// posted there never seen (red team, round 8: a worker pinned to the compute provider's own
/// service trained past the owner's budget while the owner's service recorded nothing). The
/// enclave's evidence names the service it trusts by signing-key fingerprint.
/// Returns that service's signing key, which answers the registration.
pub async fn ensure_enclave_uses(
    enclave: &VerifiedEnclave,
    authority: &AuthorityClient,
) -> Result<cloister_sign::VerifyingKey> {
    let key = service_key(authority).await?;
    // The fingerprint of the key itself, not the one the document states beside it.
    let ours = key.fingerprint_hex();
    let pinned = enclave
        .runtime_data
        .extra
        .get(cloister_types::api::SERVICE_KEY_FIELD)
        .and_then(|value| value.as_str())
        .unwrap_or_default();
    ensure!(
        pinned.eq_ignore_ascii_case(&ours),
        "the worker's enclave is pinned to the attestation service with key {}, but {} is the \
         service with key {ours}: your data set would be registered and charged where this \
         enclave never asks; use the attestation service the worker is pinned to",
        if pinned.is_empty() { "(none named)" } else { pinned },
        authority.base()
    );
    Ok(key)
}

/// The signing key of the attestation service at `authority`, as it states it: for a data set
/// no enclave has been chosen for yet (when one has, [`ensure_enclave_uses`] checks the key
/// against the enclave's pin).
pub async fn service_key(authority: &AuthorityClient) -> Result<cloister_sign::VerifyingKey> {
    let document = authority
        .service_key_document()
        .await
        .with_context(|| format!("asking {} for its service key", authority.base()))?;
    cloister_sign::VerifyingKey::from_text(&document.signing_key)
        .with_context(|| format!("{} sent a service key that does not parse", authority.base()))
}

/// Seals `plaintext` once to a key-broker key as `owner`'s training data set, registers it to
/// `owner` at the attestation service, then uploads it.
/// The registration's answer must be signed by `service_key` (the attestation service the data
/// set's enclaves will use; see [`ensure_enclave_uses`] and [`service_key`]).
#[allow(clippy::too_many_arguments)]
pub async fn seal_to_broker_register_and_upload(
    client: &WorkerClient,
    authority: &AuthorityClient,
    service_key: &cloister_sign::VerifyingKey,
    owner: &SigningKey,
    recipient: &str,
    object_id: &str,
    content_type: &str,
    plaintext: &[u8],
) -> Result<InputRef> {
    let id = owner.public_key().to_text();
    let broker = BrokerRecipient::from_text(recipient)
        .context("the key-broker recipient is not valid (what `cloister key register` prints)")?;
    let sealed = cloister_seal::seal_to_vec_for(
        &[broker.recipient()],
        &owned_metadata(&id, object_id, content_type),
        plaintext,
    )?;
    register_dataset(authority, service_key, owner, object_id, &sealed).await?;
    upload(client, &id, object_id, sealed).await
}

/// Uploads a sealed object and checks that the worker stored exactly these bytes; returns the
/// reference a job uses.
async fn upload(
    client: &WorkerClient,
    owner: &str,
    object_id: &str,
    sealed: Vec<u8>,
) -> Result<InputRef> {
    let digest = Hex(Sha256::digest(&sealed).to_vec());
    let stored = client.put_object(object_id, sealed).await?;
    ensure!(stored.sha256 == digest, "the worker stored different bytes than were uploaded");
    Ok(InputRef { object_id: object_id.to_owned(), sha256: digest, owner: owner.to_owned() })
}

/// Seals `plaintext` to the verified enclave's key as `owner`'s object and uploads it.
pub async fn seal_to_enclave_and_upload(
    client: &WorkerClient,
    enclave: &VerifiedEnclave,
    owner: &str,
    object_id: &str,
    content_type: &str,
    plaintext: &[u8],
) -> Result<InputRef> {
    let sealed = seal_to_enclave(enclave, owner, object_id, content_type, plaintext)?;
    upload(client, owner, object_id, sealed).await
}

/// Seals `plaintext` once to the verified enclave's envelope key (X25519, or SM2 for a ShangMi
/// enclave) as `owner`'s object `object_id`: it opens in that enclave only, while it runs.
pub fn seal_to_enclave(
    enclave: &VerifiedEnclave,
    owner: &str,
    object_id: &str,
    content_type: &str,
    plaintext: &[u8],
) -> Result<Vec<u8>> {
    ensure_object_id(object_id)?;
    Ok(cloister_seal::seal_to_vec_for(
        std::slice::from_ref(&enclave.hpke_pk),
        &owned_metadata(owner, object_id, content_type),
        plaintext,
    )?)
}

/// Refuses an object id a worker would refuse, before anything is sealed under it.
fn ensure_object_id(object_id: &str) -> Result<()> {
    ensure!(
        cloister_types::job::is_object_id(object_id),
        "the object id {object_id:?} is not 1 to 128 letters, digits, '.', '_' or '-'"
    );
    Ok(())
}

/// Seals `plaintext` once to a key-broker key (`recipient`: what `cloister key register` prints)
/// as `owner`'s object and uploads it: any enclave the key's release policy admits can open it,
/// until the owner revokes the key.
pub async fn seal_to_broker_and_upload(
    client: &WorkerClient,
    owner: &str,
    recipient: &str,
    object_id: &str,
    content_type: &str,
    plaintext: &[u8],
) -> Result<InputRef> {
    let sealed = seal_to_broker(owner, recipient, object_id, content_type, plaintext)?;
    upload(client, owner, object_id, sealed).await
}

/// Seals `plaintext` once to a key-broker key as `owner`'s object `object_id`, for upload later
/// (to one worker or several, as is: [`upload_sealed`]).
pub fn seal_to_broker(
    owner: &str,
    recipient: &str,
    object_id: &str,
    content_type: &str,
    plaintext: &[u8],
) -> Result<Vec<u8>> {
    ensure_object_id(object_id)?;
    let broker = BrokerRecipient::from_text(recipient)
        .context("the key-broker recipient is not valid (what `cloister key register` prints)")?;
    Ok(cloister_seal::seal_to_vec_for(
        &[broker.recipient()],
        &owned_metadata(owner, object_id, content_type),
        plaintext,
    )?)
}

/// Uploads an object sealed before ([`seal_to_broker`]) under the object id and owner its
/// envelope's authenticated metadata names; returns the reference a job uses. Whoever uploads it
/// needs no key: the bytes are ciphertext, and a changed byte changes the digest every grant
/// names.
pub async fn upload_sealed(client: &WorkerClient, sealed: Vec<u8>) -> Result<InputRef> {
    let header = cloister_seal::read_header(sealed.as_slice())
        .context("the file is not a sealed envelope (what `cloister job seal` writes)")?;
    let metadata = header.metadata();
    let owner = metadata.attributes.get(cloister_types::OWNER_ATTRIBUTE).with_context(|| {
        format!(
            "the envelope names no owner (attribute {:?}): seal it with `cloister job seal`",
            cloister_types::OWNER_ATTRIBUTE
        )
    })?;
    let (owner, object_id) = (owner.clone(), metadata.object_id.clone());
    upload(client, &owner, &object_id, sealed).await
}

/// Reads a party public key file (`cloister keygen --signing --public FILE`).
pub fn read_public_key(path: &Path) -> Result<cloister_sign::VerifyingKey> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the public key {}", path.display()))?;
    cloister_sign::VerifyingKey::from_text(text.trim())
        .with_context(|| format!("{} is not a party public key", path.display()))
}

/// Reads a party signing key file of either suite (`cloister keygen --signing [--suite sm]`):
/// what batch jobs' owners seal, grant and revoke with.
pub fn read_any_signing_key(path: &Path) -> Result<cloister_sign::AnySigningKey> {
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path)
            .with_context(|| format!("reading the signing key {}", path.display()))?,
    );
    cloister_sign::AnySigningKey::from_text(text.trim())
        .with_context(|| format!("{} is not a party signing key", path.display()))
}

/// Reads a party signing key file (`cloister keygen --signing`).
pub fn read_signing_key(path: &Path) -> Result<SigningKey> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the signing key {}", path.display()))?;
    SigningKey::from_text(text.trim())
        .with_context(|| format!("{} is not a party signing key", path.display()))
}
