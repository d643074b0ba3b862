//! Instance migration bundles: everything an attestation instance needs to run on another
//! service, sealed to that service's key, and the checks made on both ends of the move.
//!
//! An [`InstanceBundle`] carries the instance's identity, settings, reference values, trust
//! anchors, full policy history, every token-signing key (current and retired-but-kept) and its
//! CA. [`seal_bundle`] seals it (as JSON) in a `cloister_seal` envelope addressed to the target
//! service's public key; the envelope's authenticated metadata names the content type
//! ([`BUNDLE_CONTENT_TYPE`]), the instance id (as the object id) and the key ids of the source
//! and target services (attributes `source-service` and `target-service`). [`open_bundle`] opens
//! it on the target with the target's service key and refuses anything mis-addressed, altered,
//! inconsistent or incomplete. [`check_target`] is what an exporting service asks of a target's
//! [`ServiceKeyDocument`] before sealing secrets to it.
//!
//! A bundle is also signed by the exporting service's signing key (the key whose fingerprint
//! `GET /v1/service-key` publishes), over the exact bundle bytes, which name the target service:
//! the importing side accepts only bundles signed by a source it trusts explicitly (by
//! fingerprint), and a target that opens a bundle cannot pass it on to a third service as the
//! source's. Anyone can seal bytes to a service's public key, so the seal alone says nothing
//! about who made a bundle.
//!
//! Pure: no storage, no HTTP, time is a parameter.

use std::collections::BTreeSet;
use std::fmt;
use std::io;

use cloister_policy::AppraisalPolicy;
use cloister_seal::{KeyId, Metadata, OpenError, RecipientPublicKey, RecipientSecretKey};
use cloister_sign::{AnySigningKey, AnyVerifyingKey, SigningKey, VerifyingKey};
use cloister_types::api::{SERVICE_KEY_FIELD, ServiceKeyDocument};
use cloister_types::manage::InstanceSettings;
use cloister_types::{EarStatus, Hex, TeeKind};
use cloister_verify::TrustAnchors;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

use crate::issue::{CertificateAuthority, IssueError};

/// The envelope content type of an instance bundle.
pub const BUNDLE_CONTENT_TYPE: &str = "application/vnd.cloister.instance-bundle+json";

/// The only bundle format this build reads and writes.
pub const BUNDLE_FORMAT: u32 = 2;

/// The domain of the source service's signature over a bundle's bytes
/// (`cloister_sign::SigningKey::sign_bytes`).
pub const BUNDLE_SIGNATURE_DOMAIN: &str = "cloister-instance-bundle v2";

/// Envelope attribute: hex key id of the exporting service.
pub const ATTR_SOURCE_SERVICE: &str = "source-service";

/// Envelope attribute: hex key id of the service the bundle is sealed to.
pub const ATTR_TARGET_SERVICE: &str = "target-service";

/// Secret text (a key in text or PEM form) inside a bundle: zeroized when dropped, never shown
/// by `Debug`, serialised as a plain JSON string (the bundle itself is sealed).
#[derive(Clone)]
pub struct SecretText(Zeroizing<String>);

impl SecretText {
    /// Wraps secret text.
    pub fn new(text: Zeroizing<String>) -> Self {
        Self(text)
    }

    /// The secret text; keep the borrow short and do not copy it into unzeroized memory.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<Zeroizing<String>> for SecretText {
    fn from(text: Zeroizing<String>) -> Self {
        Self(text)
    }
}

impl fmt::Debug for SecretText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretText(<redacted>)")
    }
}

impl PartialEq for SecretText {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_bytes() == other.0.as_bytes()
    }
}

impl Eq for SecretText {}

impl Serialize for SecretText {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SecretText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(|s| Self(Zeroizing::new(s)))
    }
}

/// Everything needed to run an instance on another service (the plaintext of a bundle).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceBundle {
    /// Always [`BUNDLE_FORMAT`].
    pub format: u32,
    /// When the bundle was made (unix seconds).
    pub exported_at: i64,
    /// Envelope key id of the exporting service.
    pub source_service: Hex,
    /// Envelope key id of the service the bundle is for: under the source's signature, so the
    /// bundle imports only there.
    pub target_service: Hex,
    /// The tenant id on the target service that may import the bundle, under the source's
    /// signature: another tenant of the target holding the file cannot take the instance.
    pub target_tenant: String,
    /// The instance itself.
    pub instance: BundledInstance,
    /// Every policy version, `1..=n`.
    pub policies: Vec<BundledPolicy>,
    /// Every token-signing key: exactly one current, and the retired ones still kept.
    pub token_keys: Vec<BundledTokenKey>,
    /// The enclave-certificate CA.
    pub ca: BundledCa,
}

/// The instance's identity and configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundledInstance {
    /// Instance id (`in_…`); kept across the move.
    pub id: String,
    /// Instance name, unique per tenant.
    pub name: String,
    /// Settings (TTLs and the like).
    pub settings: serde_json::Value,
    /// Reference values the policy appraises against.
    pub reference_values: serde_json::Value,
    /// Trust anchors evidence is verified against.
    pub trust_anchors: serde_json::Value,
    /// The policy version in force.
    pub policy_version: i64,
}

/// One version of the instance's appraisal policy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundledPolicy {
    /// Version number, from 1.
    pub version: i64,
    /// The Rego source.
    pub rego: String,
    /// The built-in policy this version is, if any.
    pub builtin: Option<String>,
    /// When the version was created (unix seconds).
    pub created_at: i64,
}

/// One token-signing key of the instance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundledTokenKey {
    /// Key id, as in the JWS header and the JWKS.
    pub kid: String,
    /// The public key as published in the JWKS.
    pub public_jwk: serde_json::Value,
    /// The secret key, in `cloister_sign::SigningKey` text form.
    pub secret: SecretText,
    /// When the key was made (unix seconds).
    pub created_at: i64,
    /// When it stopped signing; `None` for the current key.
    pub retired_at: Option<i64>,
    /// Until when a retired key stays in the JWKS.
    pub keep_until: Option<i64>,
}

impl BundledTokenKey {
    /// Bundles `key` under `kid`, with its JWK.
    pub fn from_signing_key(
        kid: &str,
        key: &AnySigningKey,
        created_at: i64,
        retired_at: Option<i64>,
        keep_until: Option<i64>,
    ) -> Self {
        Self {
            kid: kid.to_owned(),
            public_jwk: key.public_key().to_jwk(kid),
            secret: SecretText(key.to_text()),
            created_at,
            retired_at,
            keep_until,
        }
    }

    /// The signing key (with `kid` set for the JWS header).
    pub fn signing_key(&self) -> Result<AnySigningKey, BundleError> {
        AnySigningKey::from_text(self.secret.expose())
            .map(|key| key.with_key_id(&self.kid))
            .map_err(|e| BundleError::TokenKey {
                kid: self.kid.clone(),
                reason: format!("its secret key is unreadable: {e}"),
            })
    }
}

/// The instance CA.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundledCa {
    /// The CA certificate, PEM.
    pub certificate_pem: String,
    /// The CA's PKCS#8 private key, PEM.
    pub key_pem: SecretText,
}

impl BundledCa {
    /// Bundles a CA.
    pub fn from_authority(ca: &CertificateAuthority) -> Self {
        Self { certificate_pem: ca.certificate_pem().to_owned(), key_pem: SecretText(ca.key_pem()) }
    }

    /// Loads the CA.
    pub fn to_authority(&self) -> Result<CertificateAuthority, IssueError> {
        CertificateAuthority::from_pem(&self.certificate_pem, self.key_pem.expose())
    }
}

/// What [`check_target`] established about a target service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetCheck {
    /// The target's key is bound into TEE evidence that verified and that the policy accepted.
    Attested {
        /// The target's TEE.
        tee: TeeKind,
        /// Its measurement.
        measurement: Hex,
    },
    /// The target offered no attestation and the exporter allowed that; record it in the audit
    /// log.
    Unattested,
}

/// Why a bundle could not be sealed or opened, or a target was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// The input is not a sealed envelope at all.
    #[error("this file is not an instance bundle ({0})")]
    NotAnEnvelope(String),
    /// The input is a sealed envelope of another kind.
    #[error(
        "this file is not an instance bundle (content type {found:?}, expected \
         {BUNDLE_CONTENT_TYPE:?})"
    )]
    WrongContentType {
        /// The envelope's content type.
        found: String,
    },
    /// The bundle was sealed to another service.
    #[error(
        "the bundle is addressed to service key {addressed_to}, this service's key is \
         {this_service}; export it again for this service (GET /v1/service-key)"
    )]
    MisAddressed {
        /// Hex key ids of the envelope's recipients, comma-separated.
        addressed_to: String,
        /// This service's key id.
        this_service: KeyId,
    },
    /// The envelope failed authentication.
    #[error("the bundle was altered after it was sealed: {0}")]
    Tampered(#[source] OpenError),
    /// The sealed contents disagree with the envelope's authenticated header.
    #[error(
        "the bundle is inconsistent: its header says {field} is {header:?} but its sealed \
         contents say {contents:?}; export it again"
    )]
    MetadataMismatch {
        /// Which value disagrees.
        field: &'static str,
        /// The value in the authenticated header.
        header: String,
        /// The value in the sealed contents.
        contents: String,
    },
    /// The bundle format is not one this build reads.
    #[error(
        "the bundle has format {0}, this service reads format {BUNDLE_FORMAT}; export it from \
         a service of the same release"
    )]
    UnsupportedFormat(u32),
    /// The source's signature over the bundle does not verify.
    #[error("the bundle's signature does not verify: {0}; export it again")]
    BadSignature(String),
    /// The bundle is signed by a service this one does not trust to send instances.
    #[error(
        "the bundle was signed by the service key with fingerprint {fingerprint}, which this \
         service does not trust for imports; after confirming the fingerprint with the source \
         service's operator, start this service with `--trust-bundles-from {fingerprint}`"
    )]
    UntrustedSource {
        /// The signer's fingerprint (lowercase hex SHA-256).
        fingerprint: String,
    },
    /// The bundle was exported for another tenant of this service.
    #[error(
        "the bundle was exported for another tenant of this service, not yours ({importer}); \
         ask its owner to export it again with `--target-tenant {importer}`"
    )]
    ForAnotherTenant {
        /// The importing tenant's id.
        importer: String,
    },
    /// The sealed contents are not a well-formed bundle.
    #[error("the bundle's contents are not a valid instance bundle: {0}")]
    Malformed(String),
    /// A field of the bundle is empty or out of range.
    #[error("the bundle is incomplete: {0}")]
    Incomplete(String),
    /// The bundle has no policy.
    #[error("the bundle contains no policy versions; an instance always has at least one")]
    NoPolicies,
    /// Policy versions are not `1..=n`.
    #[error(
        "the bundle's policy versions are {found:?}; they must be 1 to {expected_max} without \
         gaps or repeats, so the policy history is incomplete"
    )]
    PolicyVersions {
        /// The versions found, sorted.
        found: Vec<i64>,
        /// The number of versions.
        expected_max: usize,
    },
    /// The policy version in force is not in the bundle.
    #[error(
        "the instance's current policy version {current} is not among the bundle's policy \
         versions 1 to {available}"
    )]
    CurrentPolicyMissing {
        /// The instance's policy version.
        current: i64,
        /// The highest version in the bundle.
        available: usize,
    },
    /// The bundle has no token-signing key.
    #[error("the bundle contains no token-signing key; tokens could not be issued or verified")]
    NoTokenKeys,
    /// The bundle does not have exactly one current token key.
    #[error(
        "the bundle has {0} current token-signing keys (without retired_at); it must have \
         exactly one"
    )]
    CurrentTokenKeys(usize),
    /// A token key is unusable or inconsistent.
    #[error("token-signing key {kid:?} in the bundle is unusable: {reason}")]
    TokenKey {
        /// The key's id.
        kid: String,
        /// What is wrong (never the secret).
        reason: String,
    },
    /// The CA certificate or key is unusable, or they do not belong together.
    #[error("the bundle's instance CA is unusable: {0}")]
    Ca(String),
    /// The bundle could not be encoded.
    #[error("the bundle could not be encoded: {0}")]
    Encode(String),
    /// Sealing failed.
    #[error("the bundle could not be sealed: {0}")]
    Seal(#[from] cloister_seal::SealError),
    /// The target's key document names an unreadable key.
    #[error("the target service's public key is unusable: {0}")]
    TargetKey(String),
    /// The target's key document names a key id that is not its key's.
    #[error(
        "the target service's key document is inconsistent: it gives key id {document} but its \
         public key has key id {computed}"
    )]
    TargetKeyId {
        /// The key id in the document.
        document: Hex,
        /// The key id of the document's public key.
        computed: KeyId,
    },
    /// The target offered no attestation and the exporter did not allow that.
    #[error(
        "the target service (key {key_id}) offers no attestation, so nothing shows its key is \
         held inside a TEE; export to it only if you trust its operator, by allowing unattested \
         targets explicitly (this is recorded in the audit log)"
    )]
    UnattestedTarget {
        /// The target's key id.
        key_id: KeyId,
    },
    /// The instance was created `attested_exports_only` and the target does not attest itself.
    #[error(
        "this instance was created with attested_exports_only: it is exported only to a service \
         that attests itself (serve attestation --tee), and this target offers no attestation"
    )]
    UnattestedTargetForbidden,
    /// The instance was created `attested_exports_only` and the target's measurement is not
    /// one of the service builds named at its creation.
    #[error(
        "this instance was created with attested_exports_only for the service builds \
         {allowed:?}; the target service measures {measurement}, which is not one of them"
    )]
    TargetMeasurementNotListed {
        /// What the target's evidence measured.
        measurement: String,
        /// The measurements fixed at the instance's creation.
        allowed: Vec<String>,
    },
    /// The target's attestation did not verify.
    #[error("the target service's attestation did not verify: {0}")]
    TargetEvidence(#[source] cloister_verify::VerifyError),
    /// The target's attestation is not an enclave's (a device key, an unverified platform).
    #[error("the target service's attestation is no enclave's: {0}")]
    TargetNotAnEnclave(#[source] cloister_types::NotAnEnclave),
    /// The target's attestation binds another key than its key document names.
    #[error(
        "the target service's attestation binds the envelope key {bound}, but its key document \
         names {document}; its key is not the attested one, so do not export to it"
    )]
    TargetKeyNotBound {
        /// What the evidence's runtime data names (key id, or the text if it is unreadable).
        bound: String,
        /// The key id of the document's key.
        document: KeyId,
    },
    /// The target's evidence binds another signing key than its document names.
    #[error(
        "the target service's key document names signing key {document}, but its attestation \
         binds {bound}; the document is not the attested service's, so do not export to it"
    )]
    TargetSigningKeyNotBound {
        /// What the evidence binds (`receipt_pk`, or the `service_key_sha256` fingerprint).
        bound: String,
        /// What the document names.
        document: String,
    },
    /// The target's attestation could not be appraised.
    #[error("the target service's attestation could not be appraised: {0}")]
    TargetPolicy(#[source] cloister_policy::PolicyError),
    /// The policy refused the target's attestation.
    #[error("the policy {policy_id} refused the target service's attestation: {}", reasons.join("; "))]
    TargetRejected {
        /// The policy that decided.
        policy_id: String,
        /// The policy's reasons.
        reasons: Vec<String>,
    },
}

/// Counts bytes written, to size the serialisation buffer exactly.
struct CountingWriter(usize);

impl io::Write for CountingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The bundle as JSON, in a buffer allocated once at its exact size (so no copy of the secrets
/// is left behind by reallocation) and zeroized when dropped.
fn encode<T: Serialize>(bundle: &T) -> Result<Zeroizing<Vec<u8>>, BundleError> {
    let mut counter = CountingWriter(0);
    serde_json::to_writer(&mut counter, bundle).map_err(|e| BundleError::Encode(e.to_string()))?;
    let mut bytes = Zeroizing::new(Vec::with_capacity(counter.0));
    serde_json::to_writer(&mut *bytes, bundle).map_err(|e| BundleError::Encode(e.to_string()))?;
    Ok(bytes)
}

/// The envelope metadata of a bundle.
fn bundle_metadata(instance_id: &str, source: &Hex, target: &KeyId) -> Metadata {
    Metadata {
        content_type: BUNDLE_CONTENT_TYPE.to_owned(),
        object_id: instance_id.to_owned(),
        attributes: [
            (ATTR_SOURCE_SERVICE.to_owned(), source.to_string()),
            (ATTR_TARGET_SERVICE.to_owned(), target.to_hex()),
        ]
        .into_iter()
        .collect(),
    }
}

/// What is sealed: the bundle's exact bytes and the source service's signature over them.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignedBundle {
    /// Always [`BUNDLE_FORMAT`].
    format: u32,
    /// The [`InstanceBundle`] as JSON text: the signed bytes.
    bundle: SecretText,
    /// The source service's signing key (`cloister-es256:…`).
    signer: String,
    /// [`BUNDLE_SIGNATURE_DOMAIN`] signature over `bundle` by `signer`.
    signature: String,
}

/// Checks, signs with the source service's `signer` and seals `bundle` to the target service's
/// key, which `bundle.target_service` must name.
///
/// The bundle is validated first ([`InstanceBundle::validate`]), so a bundle that would be
/// refused on import is refused here, before it leaves.
pub fn seal_bundle(
    bundle: &InstanceBundle,
    target: &RecipientPublicKey,
    signer: &SigningKey,
) -> Result<Vec<u8>, BundleError> {
    bundle.validate()?;
    if bundle.target_service.as_bytes() != target.key_id().0.as_slice() {
        return Err(BundleError::Incomplete(format!(
            "the bundle names target service {}, but is being sealed to {}",
            bundle.target_service,
            target.key_id().to_hex()
        )));
    }
    let metadata = bundle_metadata(&bundle.instance.id, &bundle.source_service, &target.key_id());
    let bytes = encode(bundle)?;
    let text = std::str::from_utf8(&bytes).map_err(|e| BundleError::Encode(e.to_string()))?;
    let signed = SignedBundle {
        format: BUNDLE_FORMAT,
        bundle: SecretText(Zeroizing::new(text.to_owned())),
        signer: signer.public_key().to_text(),
        signature: signer.sign_bytes(BUNDLE_SIGNATURE_DOMAIN, &bytes),
    };
    drop(bytes);
    let plaintext = encode(&signed)?;
    Ok(cloister_seal::seal_to_vec(std::slice::from_ref(target), &metadata, &plaintext)?)
}

/// Reads only the `format` field, to name an unknown format before the strict parse.
#[derive(Deserialize)]
struct FormatProbe {
    format: u32,
}

/// A bundle opened, its signature verified, from a source this service trusts.
#[derive(Debug)]
pub struct OpenedBundle {
    /// The bundle.
    pub bundle: InstanceBundle,
    /// The source service's signing key that signed it.
    pub signer: VerifyingKey,
}

/// Opens a bundle sealed to this service (`service_key`), verifies its source's signature,
/// accepts it only when the signer's fingerprint is among `trusted_sources` (lowercase hex
/// SHA-256, see `VerifyingKey::fingerprint_hex`), checks it against its authenticated header
/// and validates it.
pub fn open_bundle(
    bytes: &[u8],
    service_key: &RecipientSecretKey,
    trusted_sources: &[String],
) -> Result<OpenedBundle, BundleError> {
    let header = cloister_seal::read_header(bytes).map_err(|e| match e {
        OpenError::BadMagic | OpenError::UnsupportedVersion(_) => {
            BundleError::NotAnEnvelope(e.to_string())
        }
        OpenError::HeaderTruncated if bytes.len() < cloister_seal::PREAMBLE_LEN => {
            BundleError::NotAnEnvelope(e.to_string())
        }
        other => BundleError::Tampered(other),
    })?;
    let metadata = header.metadata();
    if metadata.content_type != BUNDLE_CONTENT_TYPE {
        return Err(BundleError::WrongContentType { found: metadata.content_type.clone() });
    }
    let this_service = service_key.key_id();
    let recipients = header.recipient_key_ids();
    if !recipients.contains(&this_service) {
        let addressed_to = if recipients.is_empty() {
            "(none)".to_owned()
        } else {
            recipients.iter().map(KeyId::to_hex).collect::<Vec<_>>().join(", ")
        };
        return Err(BundleError::MisAddressed { addressed_to, this_service });
    }
    let (header, plaintext) =
        cloister_seal::open_to_vec(service_key, bytes).map_err(BundleError::Tampered)?;
    let metadata = header.metadata();

    let probe: FormatProbe =
        serde_json::from_slice(&plaintext).map_err(|e| BundleError::Malformed(e.to_string()))?;
    if probe.format != BUNDLE_FORMAT {
        return Err(BundleError::UnsupportedFormat(probe.format));
    }
    let signed: SignedBundle =
        serde_json::from_slice(&plaintext).map_err(|e| BundleError::Malformed(e.to_string()))?;
    drop(plaintext);
    let signer = VerifyingKey::from_text(&signed.signer)
        .map_err(|e| BundleError::Malformed(format!("the signer: {e}")))?;
    signer
        .verify_bytes(BUNDLE_SIGNATURE_DOMAIN, signed.bundle.expose().as_bytes(), &signed.signature)
        .map_err(|e| BundleError::BadSignature(e.to_string()))?;
    let fingerprint = signer.fingerprint_hex();
    if !trusted_sources.iter().any(|trusted| trusted.eq_ignore_ascii_case(&fingerprint)) {
        return Err(BundleError::UntrustedSource { fingerprint });
    }
    let probe: FormatProbe = serde_json::from_str(signed.bundle.expose())
        .map_err(|e| BundleError::Malformed(e.to_string()))?;
    if probe.format != BUNDLE_FORMAT {
        return Err(BundleError::UnsupportedFormat(probe.format));
    }
    let bundle: InstanceBundle = serde_json::from_str(signed.bundle.expose())
        .map_err(|e| BundleError::Malformed(e.to_string()))?;
    drop(signed);

    let mismatch = |field, header: &str, contents: &str| BundleError::MetadataMismatch {
        field,
        header: header.to_owned(),
        contents: contents.to_owned(),
    };
    if metadata.object_id != bundle.instance.id {
        return Err(mismatch("the instance id", &metadata.object_id, &bundle.instance.id));
    }
    let attribute = |name: &str| metadata.attributes.get(name).map_or("(absent)", String::as_str);
    let source = bundle.source_service.to_string();
    if attribute(ATTR_SOURCE_SERVICE) != source {
        return Err(mismatch("the source service", attribute(ATTR_SOURCE_SERVICE), &source));
    }
    // The target attribute is authenticated too: it must name the key that opened the bundle,
    // and so must the signed contents (a target cannot re-seal the bundle to a third service).
    let target = this_service.to_hex();
    if attribute(ATTR_TARGET_SERVICE) != target {
        return Err(mismatch("the target service", attribute(ATTR_TARGET_SERVICE), &target));
    }
    if bundle.target_service.to_string() != target {
        return Err(mismatch(
            "the target service",
            &target,
            &format!("{} (signed by the source)", bundle.target_service),
        ));
    }
    bundle.validate()?;
    Ok(OpenedBundle { bundle, signer })
}

impl InstanceBundle {
    /// Checks that the bundle is complete and consistent: known format, a source key id,
    /// policy versions `1..=n` including the one in force, exactly one current token key, every
    /// token key's secret matching its JWK, and the CA key matching the CA certificate.
    pub fn validate(&self) -> Result<(), BundleError> {
        if self.format != BUNDLE_FORMAT {
            return Err(BundleError::UnsupportedFormat(self.format));
        }
        if self.target_service.as_bytes().len() != cloister_seal::KEY_ID_LEN {
            return Err(BundleError::Incomplete(format!(
                "target_service must be a {}-byte envelope key id, it has {} bytes",
                cloister_seal::KEY_ID_LEN,
                self.target_service.as_bytes().len()
            )));
        }
        if self.source_service.as_bytes().len() != cloister_seal::KEY_ID_LEN {
            return Err(BundleError::Incomplete(format!(
                "source_service must be a {}-byte envelope key id, it has {} bytes",
                cloister_seal::KEY_ID_LEN,
                self.source_service.as_bytes().len()
            )));
        }
        let tenant = &self.target_tenant;
        let tenant_ok = !tenant.is_empty()
            && tenant.len() <= 64
            && tenant.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !tenant_ok {
            return Err(BundleError::Incomplete(format!(
                "target_tenant {tenant:?} is not a tenant id (`tn_…`)"
            )));
        }
        if self.instance.id.is_empty() {
            return Err(BundleError::Incomplete("the instance id is empty".to_owned()));
        }
        if self.instance.name.is_empty() {
            return Err(BundleError::Incomplete("the instance name is empty".to_owned()));
        }
        self.validate_policies()?;
        self.validate_token_keys()?;
        validate_ca(&self.ca)
    }

    fn validate_policies(&self) -> Result<(), BundleError> {
        if self.policies.is_empty() {
            return Err(BundleError::NoPolicies);
        }
        let mut found: Vec<i64> = self.policies.iter().map(|p| p.version).collect();
        found.sort_unstable();
        let n = found.len();
        let contiguous = found.iter().zip(1_i64..).all(|(version, expected)| *version == expected);
        if !contiguous {
            return Err(BundleError::PolicyVersions { found, expected_max: n });
        }
        let current = self.instance.policy_version;
        if !found.contains(&current) {
            return Err(BundleError::CurrentPolicyMissing { current, available: n });
        }
        Ok(())
    }

    fn validate_token_keys(&self) -> Result<(), BundleError> {
        if self.token_keys.is_empty() {
            return Err(BundleError::NoTokenKeys);
        }
        let current = self.token_keys.iter().filter(|k| k.retired_at.is_none()).count();
        if current != 1 {
            return Err(BundleError::CurrentTokenKeys(current));
        }
        let mut kids = BTreeSet::new();
        for key in &self.token_keys {
            let unusable = |reason: String| BundleError::TokenKey { kid: key.kid.clone(), reason };
            if key.kid.is_empty() {
                return Err(unusable("its key id is empty".to_owned()));
            }
            if !kids.insert(key.kid.as_str()) {
                return Err(unusable("the key id appears more than once".to_owned()));
            }
            if let Some(jwk_kid) = key.public_jwk.get("kid")
                && jwk_kid.as_str() != Some(key.kid.as_str())
            {
                return Err(unusable(format!("its JWK names the key id {jwk_kid}")));
            }
            let public = AnyVerifyingKey::from_jwk(&key.public_jwk)
                .map_err(|e| unusable(format!("its public JWK is unreadable: {e}")))?;
            let secret = key.signing_key()?;
            if secret.public_key() != public {
                return Err(unusable(format!(
                    "its secret key belongs to the public key {}, not to its JWK's {public}",
                    secret.public_key()
                )));
            }
        }
        Ok(())
    }
}

/// The CA key must parse and be the key of the CA certificate.
fn validate_ca(ca: &BundledCa) -> Result<(), BundleError> {
    use rcgen::PublicKeyData as _;
    use x509_parser::prelude::FromDer as _;

    let certificates = cloister_types::pem_certificates(&ca.certificate_pem)
        .map_err(|e| BundleError::Ca(format!("the CA certificate is unreadable: {e}")))?;
    let [der] = certificates.as_slice() else {
        return Err(BundleError::Ca(format!(
            "certificate_pem must hold exactly one certificate, it holds {}",
            certificates.len()
        )));
    };
    let (_, certificate) = x509_parser::certificate::X509Certificate::from_der(der)
        .map_err(|e| BundleError::Ca(format!("the CA certificate does not parse: {e}")))?;
    let key = rcgen::KeyPair::from_pem(ca.key_pem.expose()).map_err(|e| {
        BundleError::Ca(format!("the CA private key is not a readable PKCS#8 PEM key: {e}"))
    })?;
    if key.subject_public_key_info().as_slice() != certificate.public_key().raw {
        return Err(BundleError::Ca(
            "the CA private key does not belong to the CA certificate".to_owned(),
        ));
    }
    Ok(())
}

/// Checks a target service's key document before exporting to it.
///
/// With an attestation: it must verify against `anchors` at `now`, bind the document's public
/// key (`runtime_data.hpke_pk`), and every component's claims must be accepted by `policy`
/// (affirming or warning) against `reference_values`. Without one: refused unless
/// `allow_unattested`, and then [`TargetCheck::Unattested`], which the caller records in the
/// audit log. In both cases the document's key id must be its key's.
pub fn check_target(
    doc: &ServiceKeyDocument,
    anchors: &TrustAnchors,
    policy: &AppraisalPolicy,
    reference_values: &serde_json::Value,
    allow_unattested: bool,
    now: i64,
) -> Result<TargetCheck, BundleError> {
    let key = RecipientPublicKey::from_text(&doc.public_key)
        .map_err(|e| BundleError::TargetKey(e.to_string()))?;
    let key_id = key.key_id();
    if doc.key_id.as_bytes() != key_id.0.as_slice() {
        return Err(BundleError::TargetKeyId { document: doc.key_id.clone(), computed: key_id });
    }
    let Some(evidence) = &doc.attestation else {
        return if allow_unattested {
            Ok(TargetCheck::Unattested)
        } else {
            Err(BundleError::UnattestedTarget { key_id })
        };
    };
    let verified =
        cloister_verify::verify(evidence, anchors, now).map_err(BundleError::TargetEvidence)?;
    // Only an enclave may hold an instance's keys: a device key (PSA, Android) or an unverified
    // virtCCA platform is no attested target, whatever the policy says.
    verified.claims().check_enclave().map_err(BundleError::TargetNotAnEnclave)?;
    let bound_text = &verified.runtime_data().hpke_pk;
    match RecipientPublicKey::from_text(bound_text) {
        Ok(bound) if bound == key => {}
        Ok(bound) => {
            return Err(BundleError::TargetKeyNotBound {
                bound: bound.key_id().to_hex(),
                document: key_id,
            });
        }
        Err(_) => {
            return Err(BundleError::TargetKeyNotBound {
                bound: format!("{bound_text:?} (not an envelope public key)"),
                document: key_id,
            });
        }
    }
    // The document's signing key (what later pins of this service rest on) must be the one the
    // evidence binds, as `receipt_pk` and by fingerprint.
    let bound = verified.runtime_data();
    let fingerprint = bound.extra.get(SERVICE_KEY_FIELD).and_then(|v| v.as_str());
    if bound.receipt_pk != doc.signing_key {
        return Err(BundleError::TargetSigningKeyNotBound {
            bound: format!("{:?}", bound.receipt_pk),
            document: doc.signing_key.clone(),
        });
    }
    if fingerprint != Some(doc.signing_key_sha256.to_string().as_str()) {
        return Err(BundleError::TargetSigningKeyNotBound {
            bound: format!("fingerprint {fingerprint:?}"),
            document: format!("fingerprint {}", doc.signing_key_sha256),
        });
    }
    let components = std::iter::once(("cpu0", verified.claims()))
        .chain(verified.additional_claims().iter().map(|(name, claims)| (name.as_str(), claims)));
    for (name, claims) in components {
        let appraisal =
            policy.appraise(claims, reference_values).map_err(BundleError::TargetPolicy)?;
        if !matches!(appraisal.status, EarStatus::Affirming | EarStatus::Warning) {
            return Err(BundleError::TargetRejected {
                policy_id: policy.policy_id(),
                reasons: appraisal.reasons.iter().map(|r| format!("{name}: {r}")).collect(),
            });
        }
    }
    Ok(TargetCheck::Attested {
        tee: verified.tee(),
        measurement: verified.claims().measurement.clone(),
    })
}

/// For an `attested_exports_only` instance: an attested target whose measurement is one of the
/// service builds fixed at the instance's creation, and nothing else (in Rust, whatever the
/// policy said, so no policy text can widen it).
pub fn check_export_measurement(
    check: TargetCheck,
    settings: &InstanceSettings,
) -> Result<TargetCheck, BundleError> {
    match &check {
        TargetCheck::Attested { measurement, .. }
            if settings.export_measurements.contains(&measurement.to_string()) =>
        {
            Ok(check)
        }
        TargetCheck::Attested { measurement, .. } => Err(BundleError::TargetMeasurementNotListed {
            measurement: measurement.to_string(),
            allowed: settings.export_measurements.clone(),
        }),
        TargetCheck::Unattested => Err(BundleError::UnattestedTargetForbidden),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use cloister_attest::Attester as _;
    use cloister_attest::{SimAttester, SimPlatformKey};
    use cloister_types::{RuntimeData, UnifiedEvidence};
    use serde_json::json;

    use super::*;

    const MEASUREMENT: [u8; 48] = [0x3c; 48];

    fn now() -> i64 {
        i64::try_from(cloister_sign::unix_now()).expect("the clock fits in i64")
    }

    fn source_id() -> Hex {
        Hex(RecipientSecretKey::generate().key_id().0.to_vec())
    }

    /// A complete bundle: two policy versions, a retired and a current token key, a real CA.
    fn sample_bundle() -> InstanceBundle {
        let t = 1_700_000_000;
        let old = AnySigningKey::from(SigningKey::generate());
        let current = AnySigningKey::from(SigningKey::generate());
        let ca = CertificateAuthority::generate("payroll", t as u64).expect("CA generates");
        InstanceBundle {
            format: BUNDLE_FORMAT,
            exported_at: t + 500,
            source_service: source_id(),
            target_service: Hex(vec![0; 16]),
            target_tenant: "tn_0123456789abcdef0123456789abcdef".to_owned(),
            instance: BundledInstance {
                id: "in_0123456789abcdef0123456789abcdef".to_owned(),
                name: "payroll".to_owned(),
                settings: json!({"token_ttl_secs": 300, "cert_ttl_secs": 3600}),
                reference_values: json!({"measurements": ["ab".repeat(48)]}),
                trust_anchors: json!({"sim_platform_keys": ["cloister-sim-p256:xyz"]}),
                policy_version: 2,
            },
            policies: vec![
                BundledPolicy {
                    version: 1,
                    rego: AppraisalPolicy::development_sim().rego().to_owned(),
                    builtin: Some("dev-sim".to_owned()),
                    created_at: t,
                },
                BundledPolicy {
                    version: 2,
                    rego: AppraisalPolicy::production_default().rego().to_owned(),
                    builtin: None,
                    created_at: t + 100,
                },
            ],
            token_keys: vec![
                BundledTokenKey::from_signing_key(
                    "ear-old",
                    &old,
                    t,
                    Some(t + 200),
                    Some(t + 200 + 86_400),
                ),
                BundledTokenKey::from_signing_key("ear-new", &current, t + 200, None, None),
            ],
            ca: BundledCa::from_authority(&ca),
        }
    }

    /// The exporting service's signing key in these tests.
    fn source() -> SigningKey {
        SigningKey::derive(b"the source service of the migration tests", "test").expect("key")
    }

    /// The sources the importing side trusts: the test source only.
    fn trusted() -> Vec<String> {
        vec![source().public_key().fingerprint_hex()]
    }

    /// Seals `bundle` for `to` as the test source (naming `to` as the target).
    fn seal(bundle: &InstanceBundle, to: &RecipientPublicKey) -> Result<Vec<u8>, BundleError> {
        let mut bundle = bundle.clone();
        bundle.target_service = Hex(to.key_id().0.to_vec());
        seal_bundle(&bundle, to, &source())
    }

    /// Opens `bytes` trusting the test source.
    fn open(bytes: &[u8], key: &RecipientSecretKey) -> Result<InstanceBundle, BundleError> {
        open_bundle(bytes, key, &trusted()).map(|opened| opened.bundle)
    }

    /// Seals arbitrary JSON as a bundle would be sealed (signed by `signer`), bypassing
    /// [`InstanceBundle::validate`], so the import side's checks can be tested on bundles a
    /// correct exporter never makes.
    fn seal_signed_raw(
        value: &serde_json::Value,
        metadata: &Metadata,
        to: &RecipientPublicKey,
        signer: &SigningKey,
    ) -> Vec<u8> {
        let text = serde_json::to_string(value).expect("JSON encodes");
        let signed = json!({
            "format": BUNDLE_FORMAT,
            "bundle": text,
            "signer": signer.public_key().to_text(),
            "signature": signer.sign_bytes(BUNDLE_SIGNATURE_DOMAIN, text.as_bytes()),
        });
        let bytes = serde_json::to_vec(&signed).expect("JSON encodes");
        cloister_seal::seal_to_vec(std::slice::from_ref(to), metadata, &bytes).expect("seals")
    }

    /// [`seal_signed_raw`] by the test source.
    fn seal_raw(
        value: &serde_json::Value,
        metadata: &Metadata,
        to: &RecipientPublicKey,
    ) -> Vec<u8> {
        seal_signed_raw(value, metadata, to, &source())
    }

    /// Seals a modified bundle (as JSON, naming the target) with correct metadata, and opens it.
    fn open_modified(
        modify: impl FnOnce(&mut serde_json::Value),
    ) -> Result<InstanceBundle, BundleError> {
        let target = RecipientSecretKey::generate();
        let mut bundle = sample_bundle();
        bundle.target_service = Hex(target.key_id().0.to_vec());
        let metadata =
            bundle_metadata(&bundle.instance.id, &bundle.source_service, &target.key_id());
        let mut value = serde_json::to_value(&bundle).expect("bundle encodes");
        modify(&mut value);
        open(&seal_raw(&value, &metadata, &target.public_key()), &target)
    }

    #[test]
    fn round_trip_keeps_every_field() {
        let target = RecipientSecretKey::generate();
        let bundle = sample_bundle();
        let sealed = seal(&bundle, &target.public_key()).expect("seals");
        let opened = open(&sealed, &target).expect("opens");
        let mut expected = bundle.clone();
        expected.target_service = Hex(target.key_id().0.to_vec());
        assert_eq!(opened, expected);
        // The keys still work after the trip.
        let key = opened.token_keys[1].signing_key().expect("token key loads");
        assert_eq!(
            key.public_key(),
            AnyVerifyingKey::from_jwk(&bundle.token_keys[1].public_jwk).expect("JWK reads")
        );
        let ca = opened.ca.to_authority().expect("CA loads");
        assert_eq!(ca.certificate_pem(), bundle.ca.certificate_pem);

        let header = cloister_seal::read_header(sealed.as_slice()).expect("header");
        let meta = header.metadata();
        assert_eq!(meta.content_type, BUNDLE_CONTENT_TYPE);
        assert_eq!(meta.object_id, bundle.instance.id);
        assert_eq!(meta.attributes[ATTR_SOURCE_SERVICE], bundle.source_service.to_string());
        assert_eq!(meta.attributes[ATTR_TARGET_SERVICE], target.key_id().to_hex());
        assert_eq!(header.recipient_key_ids(), vec![target.key_id()]);
    }

    #[test]
    fn a_bundle_sealed_to_another_service_is_mis_addressed_naming_both_keys() {
        let intended = RecipientSecretKey::generate();
        let this = RecipientSecretKey::generate();
        let sealed = seal(&sample_bundle(), &intended.public_key()).expect("seals");
        let err = open(&sealed, &this).expect_err("not for this service");
        assert!(matches!(err, BundleError::MisAddressed { .. }), "{err:?}");
        let message = err.to_string();
        assert!(message.contains(&intended.key_id().to_hex()), "{message}");
        assert!(message.contains(&this.key_id().to_hex()), "{message}");
        assert!(message.contains("GET /v1/service-key"), "{message}");
    }

    #[test]
    fn every_changed_byte_is_refused() {
        let target = RecipientSecretKey::generate();
        let bundle = sample_bundle();
        let sealed = seal(&bundle, &target.public_key()).expect("seals");
        let header_len = cloister_seal::read_header(sealed.as_slice()).expect("header").len();
        // The recipient entry is the last part of the header: key id, enc, wrapped key.
        let entry = header_len - cloister_seal::HPKE_X25519_ENTRY_LEN;
        for (at, expect_misaddressed) in [
            (0, false),                // magic
            (20, false),               // chunk size
            (40, false),               // metadata
            (entry + 3, true),         // recipient key id
            (entry + 20, false),       // recipient's encapsulated key
            (header_len - 1, false),   // recipient's wrapped data key
            (header_len, false),       // first body byte
            (sealed.len() / 2, false), // body
            (sealed.len() - 1, false), // last byte (tag)
        ] {
            let mut bad = sealed.clone();
            bad[at] ^= 0x01;
            let err = open(&bad, &target).expect_err("a changed byte is refused");
            assert_eq!(
                matches!(err, BundleError::MisAddressed { .. }),
                expect_misaddressed,
                "byte {at}: {err:?}"
            );
        }
        for at in [entry + 20, header_len - 1, header_len, sealed.len() - 1] {
            let mut bad = sealed.clone();
            bad[at] ^= 0x80;
            let err = open(&bad, &target).expect_err("refused");
            assert!(matches!(err, BundleError::Tampered(_)), "byte {at}: {err:?}");
            assert!(err.to_string().starts_with("the bundle was altered after it was sealed"));
        }
        // And exhaustively: no single flipped byte anywhere gets through.
        for at in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[at] ^= 0x04;
            assert!(open(&bad, &target).is_err(), "byte {at} of {} changed", sealed.len());
        }
    }

    #[test]
    fn truncated_and_extended_bundles_are_refused() {
        let target = RecipientSecretKey::generate();
        let sealed = seal(&sample_bundle(), &target.public_key()).expect("seals");
        let header_len = cloister_seal::read_header(sealed.as_slice()).expect("header").len();
        for len in [0, 4, 12, header_len - 1, header_len, header_len + 10, sealed.len() - 1] {
            let err = open(&sealed[..len], &target).expect_err("truncated");
            assert!(
                matches!(err, BundleError::Tampered(_) | BundleError::NotAnEnvelope(_)),
                "{len}: {err:?}"
            );
        }
        let mut longer = sealed.clone();
        longer.push(0);
        assert!(matches!(open(&longer, &target), Err(BundleError::Tampered(_))));
    }

    #[test]
    fn other_files_are_not_bundles() {
        let target = RecipientSecretKey::generate();
        let meta = Metadata { content_type: "text/csv".to_owned(), ..Metadata::default() };
        let envelope = cloister_seal::seal_to_vec(&[target.public_key()], &meta, b"a,b\n1,2\n")
            .expect("seals");
        let err = open(&envelope, &target).expect_err("a data envelope");
        assert!(matches!(&err, BundleError::WrongContentType { found } if found == "text/csv"));
        assert!(err.to_string().contains("this file is not an instance bundle"), "{err}");

        let json = serde_json::to_vec(&sample_bundle()).expect("encodes");
        let err = open(&json, &target).expect_err("plain JSON");
        assert!(matches!(err, BundleError::NotAnEnvelope(_)), "{err:?}");
        assert!(err.to_string().contains("this file is not an instance bundle"), "{err}");
    }

    #[test]
    fn contents_must_agree_with_the_authenticated_header() {
        let target = RecipientSecretKey::generate();
        let mut bundle = sample_bundle();
        bundle.target_service = Hex(target.key_id().0.to_vec());
        let value = serde_json::to_value(&bundle).expect("encodes");
        let other_source = source_id();
        let cases = [
            ("instance id", bundle_metadata("in_other", &bundle.source_service, &target.key_id())),
            (
                "source service",
                bundle_metadata(&bundle.instance.id, &other_source, &target.key_id()),
            ),
            (
                "target service",
                bundle_metadata(
                    &bundle.instance.id,
                    &bundle.source_service,
                    &RecipientSecretKey::generate().key_id(),
                ),
            ),
        ];
        for (what, metadata) in cases {
            let sealed = seal_raw(&value, &metadata, &target.public_key());
            let err = open(&sealed, &target).expect_err(what);
            assert!(matches!(err, BundleError::MetadataMismatch { .. }), "{what}: {err:?}");
            assert!(err.to_string().contains(what), "{what}: {err}");
        }
        // A missing attribute is a mismatch too.
        let mut metadata =
            bundle_metadata(&bundle.instance.id, &bundle.source_service, &target.key_id());
        metadata.attributes.remove(ATTR_SOURCE_SERVICE);
        let err = open(&seal_raw(&value, &metadata, &target.public_key()), &target)
            .expect_err("no source attribute");
        assert!(err.to_string().contains("(absent)"), "{err}");
    }

    #[test]
    fn format_and_shape_are_checked() {
        let err = open_modified(|v| v["format"] = json!(1)).expect_err("format 1");
        assert!(matches!(err, BundleError::UnsupportedFormat(1)), "{err:?}");
        // An unknown format is named even when its fields differ.
        let err = open_modified(|v| {
            v["format"] = json!(7);
            v["new_field"] = json!(true);
        })
        .expect_err("format 7");
        assert!(matches!(err, BundleError::UnsupportedFormat(7)), "{err:?}");
        let err = open_modified(|v| v["instance"]["color"] = json!("red")).expect_err("unknown");
        assert!(matches!(err, BundleError::Malformed(_)), "{err:?}");
        let err = open_modified(|v| {
            v.as_object_mut().expect("object").remove("ca");
        })
        .expect_err("missing field");
        assert!(matches!(err, BundleError::Malformed(_)), "{err:?}");
        // A source key id of the wrong length, even when the header agrees with it.
        let target = RecipientSecretKey::generate();
        let mut bundle = sample_bundle();
        bundle.source_service = Hex(vec![0xab, 0xcd]);
        bundle.target_service = Hex(target.key_id().0.to_vec());
        let metadata =
            bundle_metadata(&bundle.instance.id, &bundle.source_service, &target.key_id());
        let value = serde_json::to_value(&bundle).expect("encodes");
        let err = open(&seal_raw(&value, &metadata, &target.public_key()), &target)
            .expect_err("short source id");
        assert!(matches!(err, BundleError::Incomplete(_)), "{err:?}");
        assert!(seal(&bundle, &target.public_key()).is_err());
    }

    #[test]
    fn the_policy_history_must_be_complete() {
        let err = open_modified(|v| v["policies"] = json!([])).expect_err("no policies");
        assert!(matches!(err, BundleError::NoPolicies), "{err:?}");

        let err = open_modified(|v| v["policies"][1]["version"] = json!(3)).expect_err("gap");
        assert!(
            matches!(&err, BundleError::PolicyVersions { found, .. } if found == &[1, 3]),
            "{err:?}"
        );
        let err = open_modified(|v| v["policies"][1]["version"] = json!(1)).expect_err("repeat");
        assert!(matches!(err, BundleError::PolicyVersions { .. }), "{err:?}");
        let err = open_modified(|v| {
            v["policies"][0]["version"] = json!(2);
            v["policies"][1]["version"] = json!(3);
        })
        .expect_err("no version 1");
        assert!(matches!(err, BundleError::PolicyVersions { .. }), "{err:?}");

        let err =
            open_modified(|v| v["instance"]["policy_version"] = json!(3)).expect_err("current");
        assert!(
            matches!(err, BundleError::CurrentPolicyMissing { current: 3, available: 2 }),
            "{err:?}"
        );
        // Out-of-order versions are fine when complete.
        let opened = open_modified(|v| {
            let policies = v["policies"].as_array_mut().expect("array");
            policies.reverse();
        })
        .expect("reordered history is complete");
        assert_eq!(opened.policies[0].version, 2);
    }

    #[test]
    fn every_token_key_must_be_usable_and_match_its_jwk() {
        let err = open_modified(|v| v["token_keys"] = json!([])).expect_err("no keys");
        assert!(matches!(err, BundleError::NoTokenKeys), "{err:?}");

        let err = open_modified(|v| v["token_keys"][1]["retired_at"] = json!(1))
            .expect_err("no current key");
        assert!(matches!(err, BundleError::CurrentTokenKeys(0)), "{err:?}");
        let err = open_modified(|v| v["token_keys"][0]["retired_at"] = json!(null))
            .expect_err("two current keys");
        assert!(matches!(err, BundleError::CurrentTokenKeys(2)), "{err:?}");

        let stranger = SigningKey::generate();
        let stranger_text = stranger.to_text();
        let err = open_modified(|v| v["token_keys"][1]["secret"] = json!(stranger_text.as_str()))
            .expect_err("secret of another key");
        assert!(matches!(&err, BundleError::TokenKey { kid, .. } if kid == "ear-new"), "{err:?}");
        // The message names public keys only, never the secret.
        assert!(!err.to_string().contains(stranger_text.as_str()), "{err}");
        assert!(err.to_string().contains(&stranger.public_key().to_text()), "{err}");

        let err =
            open_modified(|v| v["token_keys"][0]["secret"] = json!("cloister-es256-secret:AAAA"))
                .expect_err("garbage secret");
        assert!(matches!(&err, BundleError::TokenKey { kid, .. } if kid == "ear-old"), "{err:?}");
        assert!(!err.to_string().contains("AAAA"), "{err}");

        let err = open_modified(|v| v["token_keys"][0]["public_jwk"] = json!({"kty": "oct"}))
            .expect_err("bad JWK");
        assert!(err.to_string().contains("public JWK is unreadable"), "{err}");

        let err = open_modified(|v| v["token_keys"][0]["public_jwk"]["kid"] = json!("ear-new"))
            .expect_err("JWK kid differs");
        assert!(err.to_string().contains("JWK names the key id"), "{err}");

        let err = open_modified(|v| {
            let old = v["token_keys"][0].clone();
            v["token_keys"][1] = old;
            v["token_keys"][1]["retired_at"] = json!(null);
        })
        .expect_err("duplicate kid");
        assert!(err.to_string().contains("more than once"), "{err}");

        let err = open_modified(|v| v["token_keys"][1]["kid"] = json!("")).expect_err("empty kid");
        assert!(matches!(err, BundleError::TokenKey { .. }), "{err:?}");
    }

    #[test]
    fn the_ca_key_must_be_the_ca_certificates_key() {
        let other = CertificateAuthority::generate("other", 1_700_000_000).expect("CA");
        let other_key = other.key_pem();
        let err = open_modified(|v| v["ca"]["key_pem"] = json!(other_key.as_str()))
            .expect_err("another CA's key");
        assert!(matches!(err, BundleError::Ca(_)), "{err:?}");
        assert!(err.to_string().contains("does not belong"), "{err}");

        let err = open_modified(|v| v["ca"]["key_pem"] = json!("-----BEGIN PRIVATE KEY-----\n"))
            .expect_err("unreadable key");
        assert!(err.to_string().contains("not a readable PKCS#8"), "{err}");

        let err = open_modified(|v| v["ca"]["certificate_pem"] = json!("not a certificate"))
            .expect_err("no certificate");
        assert!(matches!(err, BundleError::Ca(_)), "{err:?}");

        let two = format!("{}{}", other.certificate_pem(), other.certificate_pem());
        let err = open_modified(|v| v["ca"]["certificate_pem"] = json!(two)).expect_err("two");
        assert!(err.to_string().contains("exactly one certificate"), "{err}");
    }

    #[test]
    fn seal_bundle_refuses_an_invalid_bundle() {
        let target = RecipientSecretKey::generate();
        let mut bundle = sample_bundle();
        bundle.policies.clear();
        assert!(matches!(seal(&bundle, &target.public_key()), Err(BundleError::NoPolicies)));
        let mut bundle = sample_bundle();
        bundle.instance.id.clear();
        assert!(matches!(seal(&bundle, &target.public_key()), Err(BundleError::Incomplete(_))));
        let mut bundle = sample_bundle();
        bundle.instance.name.clear();
        assert!(matches!(seal(&bundle, &target.public_key()), Err(BundleError::Incomplete(_))));
        for tenant in ["", "tn x", "tn_\u{0}", &"t".repeat(65)] {
            let mut bundle = sample_bundle();
            bundle.target_tenant = tenant.to_owned();
            let err = seal(&bundle, &target.public_key()).unwrap_err();
            assert!(err.to_string().contains("target_tenant"), "{tenant:?}: {err}");
        }
    }

    #[test]
    fn debug_output_shows_no_secret() {
        let bundle = sample_bundle();
        let printed = format!("{bundle:?}");
        for key in &bundle.token_keys {
            assert!(!printed.contains(key.secret.expose()), "token key secret in {printed}");
            let body = key.secret.expose().trim_start_matches("cloister-es256-secret:");
            assert!(!printed.contains(body));
        }
        let key_pem = bundle.ca.key_pem.expose();
        let key_body = key_pem.lines().nth(1).expect("PEM body line");
        assert!(!printed.contains(key_body), "CA key in {printed}");
        assert!(printed.contains("<redacted>"));
        // The public parts are still there for debugging.
        assert!(printed.contains(&bundle.instance.id));
    }

    #[test]
    fn only_a_bundle_signed_by_a_trusted_source_opens() {
        let target = RecipientSecretKey::generate();
        let mut bundle = sample_bundle();
        bundle.target_service = Hex(target.key_id().0.to_vec());
        let metadata =
            bundle_metadata(&bundle.instance.id, &bundle.source_service, &target.key_id());
        let value = serde_json::to_value(&bundle).expect("encodes");

        // Anyone can seal to the target's public key; a self-made signer is not trusted.
        let stranger = SigningKey::generate();
        let forged = seal_signed_raw(&value, &metadata, &target.public_key(), &stranger);
        let err = open(&forged, &target).expect_err("untrusted source");
        assert!(
            matches!(&err, BundleError::UntrustedSource { fingerprint }
                if *fingerprint == stranger.public_key().fingerprint_hex()),
            "{err:?}"
        );
        assert!(err.to_string().contains("--trust-bundles-from"), "{err}");
        // Trusting nobody refuses the genuine source too.
        let genuine = seal_raw(&value, &metadata, &target.public_key());
        assert!(matches!(
            open_bundle(&genuine, &target, &[]),
            Err(BundleError::UntrustedSource { .. })
        ));
        assert!(open(&genuine, &target).is_ok());

        // The trusted signer's name on bytes it did not sign.
        let text = serde_json::to_string(&value).expect("encodes");
        let altered = text.replace("payroll", "payroII");
        let lying = json!({
            "format": BUNDLE_FORMAT,
            "bundle": altered,
            "signer": source().public_key().to_text(),
            "signature": source().sign_bytes(BUNDLE_SIGNATURE_DOMAIN, text.as_bytes()),
        });
        let bytes = serde_json::to_vec(&lying).expect("encodes");
        let sealed =
            cloister_seal::seal_to_vec(&[target.public_key()], &metadata, &bytes).expect("seals");
        let err = open(&sealed, &target).expect_err("signature over other bytes");
        assert!(matches!(err, BundleError::BadSignature(_)), "{err:?}");
    }

    #[test]
    fn a_target_cannot_pass_a_bundle_on_to_a_third_service() {
        // The first target opens the bundle (it may) and re-seals the same signed contents to a
        // third service: the signed target names the first one.
        let first = RecipientSecretKey::generate();
        let third = RecipientSecretKey::generate();
        let mut bundle = sample_bundle();
        bundle.target_service = Hex(first.key_id().0.to_vec());
        let metadata =
            bundle_metadata(&bundle.instance.id, &bundle.source_service, &third.key_id());
        let value = serde_json::to_value(&bundle).expect("encodes");
        let passed_on = seal_raw(&value, &metadata, &third.public_key());
        let err = open(&passed_on, &third).expect_err("re-sealed to a third service");
        assert!(matches!(err, BundleError::MetadataMismatch { .. }), "{err:?}");
        assert!(err.to_string().contains("signed by the source"), "{err}");
        // And the exporter never seals a bundle naming another target.
        assert!(seal_bundle(&bundle, &third.public_key(), &source()).is_err());
    }

    // ---- check_target ----

    fn document(
        key: &RecipientPublicKey,
        attestation: Option<UnifiedEvidence>,
    ) -> ServiceKeyDocument {
        let signing = source().public_key();
        ServiceKeyDocument {
            public_key: key.to_text(),
            key_id: Hex(key.key_id().0.to_vec()),
            signing_key: signing.to_text(),
            signing_key_sha256: Hex(signing.fingerprint().to_vec()),
            attestation,
        }
    }

    /// Sim evidence binding `hpke_pk`, and the anchors that accept its platform key.
    fn sim_evidence(hpke_pk: &str) -> (UnifiedEvidence, TrustAnchors) {
        let platform = SimPlatformKey::generate();
        let anchors = TrustAnchors::new().with_sim_platform_key(platform.public_key());
        let attester = SimAttester::new(platform, MEASUREMENT);
        let signing = source().public_key();
        let runtime_data = RuntimeData {
            nonce: "service-key".to_owned(),
            hpke_pk: hpke_pk.to_owned(),
            tls_spki_sha256: Hex(vec![0; 32]),
            receipt_pk: signing.to_text(),
            extra: BTreeMap::from([(
                SERVICE_KEY_FIELD.to_owned(),
                serde_json::Value::String(signing.fingerprint_hex()),
            )]),
        };
        (attester.attest(&runtime_data).expect("sim attests"), anchors)
    }

    fn reference_values() -> serde_json::Value {
        json!({"measurements": [Hex(MEASUREMENT.to_vec()).to_string()]})
    }

    #[test]
    fn an_unattested_target_is_refused_unless_allowed() {
        let key = RecipientSecretKey::generate().public_key();
        let doc = document(&key, None);
        let policy = AppraisalPolicy::development_sim();
        let anchors = TrustAnchors::new();
        let err = check_target(&doc, &anchors, &policy, &reference_values(), false, now())
            .expect_err("unattested");
        assert!(
            matches!(err, BundleError::UnattestedTarget { key_id } if key_id == key.key_id()),
            "{err:?}"
        );
        assert_eq!(
            check_target(&doc, &anchors, &policy, &reference_values(), true, now())
                .expect("allowed"),
            TargetCheck::Unattested
        );
    }

    #[test]
    fn the_key_document_must_be_consistent() {
        let key = RecipientSecretKey::generate().public_key();
        let policy = AppraisalPolicy::development_sim();
        let mut doc = document(&key, None);
        doc.key_id = Hex(vec![0; 16]);
        let err =
            check_target(&doc, &TrustAnchors::new(), &policy, &reference_values(), true, now())
                .expect_err("wrong key id");
        assert!(matches!(err, BundleError::TargetKeyId { .. }), "{err:?}");

        let mut doc = document(&key, None);
        doc.public_key = "cloister-hpke-x25519:tooshort".to_owned();
        let err =
            check_target(&doc, &TrustAnchors::new(), &policy, &reference_values(), true, now())
                .expect_err("bad key");
        assert!(matches!(err, BundleError::TargetKey(_)), "{err:?}");
    }

    #[test]
    fn a_target_whose_sim_attestation_binds_its_key_is_attested() {
        let key = RecipientSecretKey::generate().public_key();
        let (evidence, anchors) = sim_evidence(&key.to_text());
        let doc = document(&key, Some(evidence));
        let check = check_target(
            &doc,
            &anchors,
            &AppraisalPolicy::development_sim(),
            &reference_values(),
            false,
            now(),
        )
        .expect("attested");
        assert_eq!(
            check,
            TargetCheck::Attested { tee: TeeKind::Sim, measurement: Hex(MEASUREMENT.to_vec()) }
        );
    }

    #[test]
    fn a_document_naming_another_signing_key_than_its_evidence_binds_is_refused() {
        let key = RecipientSecretKey::generate().public_key();
        let (evidence, anchors) = sim_evidence(&key.to_text());
        let policy = AppraisalPolicy::development_sim();
        let impostor = SigningKey::generate().public_key();
        let mut swapped = document(&key, Some(evidence.clone()));
        swapped.signing_key = impostor.to_text();
        let mut zeroed = document(&key, Some(evidence));
        zeroed.signing_key_sha256 = Hex(vec![0; 32]);
        for doc in [swapped, zeroed] {
            let err = check_target(&doc, &anchors, &policy, &reference_values(), false, now())
                .expect_err("signing key not bound");
            assert!(matches!(err, BundleError::TargetSigningKeyNotBound { .. }), "{err:?}");
        }
    }

    #[test]
    fn an_attestation_bound_to_another_key_is_refused() {
        let key = RecipientSecretKey::generate().public_key();
        let other = RecipientSecretKey::generate().public_key();
        let (evidence, anchors) = sim_evidence(&other.to_text());
        let doc = document(&key, Some(evidence));
        let err = check_target(
            &doc,
            &anchors,
            &AppraisalPolicy::development_sim(),
            &reference_values(),
            true,
            now(),
        )
        .expect_err("bound to another key");
        assert!(
            matches!(&err, BundleError::TargetKeyNotBound { bound, document }
                if bound == &other.key_id().to_hex() && *document == key.key_id()),
            "{err:?}"
        );

        let (evidence, anchors) = sim_evidence("not a key");
        let err = check_target(
            &document(&key, Some(evidence)),
            &anchors,
            &AppraisalPolicy::development_sim(),
            &reference_values(),
            true,
            now(),
        )
        .expect_err("binds no key");
        assert!(matches!(err, BundleError::TargetKeyNotBound { .. }), "{err:?}");
    }

    #[test]
    fn an_attestation_that_does_not_verify_or_is_rejected_is_refused() {
        let key = RecipientSecretKey::generate().public_key();
        let (evidence, anchors) = sim_evidence(&key.to_text());
        let doc = document(&key, Some(evidence));
        // Anchors that do not list the platform key.
        let err = check_target(
            &doc,
            &TrustAnchors::new(),
            &AppraisalPolicy::development_sim(),
            &reference_values(),
            true,
            now(),
        )
        .expect_err("unknown platform");
        assert!(matches!(err, BundleError::TargetEvidence(_)), "{err:?}");
        // Too old.
        let err = check_target(
            &doc,
            &anchors,
            &AppraisalPolicy::development_sim(),
            &reference_values(),
            true,
            now() + 24 * 3600,
        )
        .expect_err("stale");
        assert!(matches!(err, BundleError::TargetEvidence(_)), "{err:?}");
        // The production policy never accepts sim.
        let err = check_target(
            &doc,
            &anchors,
            &AppraisalPolicy::production_default(),
            &reference_values(),
            true,
            now(),
        )
        .expect_err("policy refuses");
        assert!(matches!(err, BundleError::TargetRejected { .. }), "{err:?}");
        // Nor does the dev policy accept an unlisted measurement.
        let err = check_target(
            &doc,
            &anchors,
            &AppraisalPolicy::development_sim(),
            &json!({"measurements": []}),
            true,
            now(),
        )
        .expect_err("unlisted measurement");
        assert!(matches!(err, BundleError::TargetRejected { .. }), "{err:?}");
    }

    /// An `attested_exports_only` instance moves only to a service build named at its creation:
    /// an attested target measuring anything else is refused, as is an unattested one, whatever
    /// the policy said before.
    #[test]
    fn an_attested_export_goes_only_to_a_build_named_at_creation() {
        let named = "3c".repeat(48);
        let settings = InstanceSettings {
            attested_exports_only: true,
            export_measurements: vec![named.clone()],
            ..InstanceSettings::default()
        };
        let attested = |measurement: Vec<u8>| TargetCheck::Attested {
            tee: TeeKind::Sim,
            measurement: Hex(measurement),
        };
        let passed = check_export_measurement(attested(MEASUREMENT.to_vec()), &settings)
            .expect("the named build");
        assert!(matches!(passed, TargetCheck::Attested { .. }));
        let err = check_export_measurement(attested(vec![0x3d; 48]), &settings)
            .expect_err("another build");
        assert!(
            matches!(&err, BundleError::TargetMeasurementNotListed { measurement, allowed }
                if *measurement == "3d".repeat(48) && *allowed == [named.clone()]),
            "{err:?}"
        );
        let err = check_export_measurement(attested(MEASUREMENT[..32].to_vec()), &settings)
            .expect_err("a prefix of the named build");
        assert!(matches!(err, BundleError::TargetMeasurementNotListed { .. }), "{err:?}");
        let err = check_export_measurement(TargetCheck::Unattested, &settings)
            .expect_err("no attestation");
        assert!(matches!(err, BundleError::UnattestedTargetForbidden), "{err:?}");
        let nothing_named = InstanceSettings { export_measurements: Vec::new(), ..settings };
        let err = check_export_measurement(attested(MEASUREMENT.to_vec()), &nothing_named)
            .expect_err("no build named");
        assert!(matches!(err, BundleError::TargetMeasurementNotListed { .. }), "{err:?}");
    }
}
