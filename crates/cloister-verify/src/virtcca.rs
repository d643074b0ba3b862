//! Huawei Kunpeng virtCCA: CVM tokens (CCA realm tokens signed by the RAK) and, when present, the
//! platform token signed by the device's attestation key (AIK, Huawei's "CPAK certificate").
//!
//! A virtCCA token is a CBOR tag-399 map, like a legacy Arm CCA token, with the **CVM token**
//! (key 44241) and, on platforms that provide one, the **platform token** (key 44234); no other
//! entry. Both are COSE_Sign1 messages in the Arm CCA claim format (the CVM token is a realm
//! token, [`crate::cca`]), with these differences, taken from what the virtCCA TMM emits and
//! openEuler secGear verifies:
//!
//! - the CVM token's payload is wrapped twice: a byte string holding the CBOR byte string of the
//!   claims map (a single wrap is refused); it carries no profile claim (265);
//! - the RAK (44237) is an RSA SubjectPublicKeyInfo in DER, signing with PS256, PS384 or PS512
//!   (salt length = hash length), or a SEC1 uncompressed P-521 point signing with ES512; the
//!   algorithm must fit the key;
//! - the platform token, produced by the InSE's HSM, is signed by the key of the device's AIK
//!   certificate (issued by "Huawei IT Product CA" under "Huawei Equipment Root CA"), and its
//!   challenge is the hash of the RAK bytes with the CVM token's public-key hash algorithm
//!   (44240), as in Arm CCA.
//!
//! The driver checks, failing closed at the first failure: the map's shape; the CVM token's
//! envelope, claims (sizes fixed by the realm hash algorithm 44236: sha-256, sha-384, sha-512),
//! RAK and signature with that RAK. When a platform token is present: its envelope and claims
//! (an Arm CCA platform profile), the binding (platform challenge = hash of the RAK), and, when
//! the collateral carries certificates, that one of them (the AIK, whose keyUsage must allow
//! digitalSignature) verifies the platform token's signature; when the instance lists virtCCA
//! roots ([`crate::TrustAnchors::roots`] for `TeeKind::VirtCca`: Huawei root certificates, DER
//! or PEM), that the AIK chains to one of them at the verification time, through intermediates
//! from the collateral or the anchors (RSA and P-256/P-384 chains; a P-521 chain is refused).
//! No Huawei root is built in: the Huawei CA certificates are not published with the sample.
//!
//! **What the claims say was verified.** `vendor.virtcca.platform_verified` is `true` only when a
//! platform token verified with an AIK certificate that chains to a root the instance lists;
//! `vendor.virtcca.platform` then starts with `verified:`. In every other case it is `false` and
//! `platform` says why, starting with `unverified:` — `unverified: no platform token` (the CVM
//! token alone: its RAK is self-asserted, nothing ties it to Huawei hardware),
//! `unverified: no AIK certificate` (platform token present, no certificate in the collateral),
//! `unverified: AIK chain not anchored` (the AIK signed the platform token but the instance
//! lists no virtCCA root). A result with `platform_verified: false` proves only that the CVM
//! token is internally consistent and fresh (its challenge); policies must not make it
//! `affirming`.
//!
//! Normalised claims: `measurement` is the RIM (44238), `report_data` the CVM challenge (64
//! bytes), the REMs and the rest under `vendor.virtcca`. `platform_id` is the platform instance
//! id when a platform token is present. `debug` is `false` only when the platform was verified
//! and its security lifecycle is "secured" (0x3000–0x30ff); an unverified or absent platform
//! token cannot show that the platform is not debuggable. `tcb_status` is always `unknown`.
//! `signer` is not set (the RPV is chosen by whoever launches the CVM). Collateral documents are
//! refused: none is used.

use cloister_types::{Claims, Hex, TcbStatus, TeeKind};
use coset::CborSerializable as _;
use coset::cbor::value::Value;
use serde_json::json;

use crate::cca::CcaError;
use crate::cca::token::{
    self, CollectionForm, CoseAlg, PlatformClaims, RealmClaims, SignedToken, SwComponent, TokenPart,
};
use crate::error::VerifyError;
use crate::inputs::Inputs;
use crate::x509::{Cert, CertError, Curve, EcPublicKey, PublicKey};

/// The collection key of the CVM token.
const CVM_TOKEN_KEY: u64 = 44241;
/// The collection key of the platform token.
const PLATFORM_TOKEN_KEY: u64 = 44234;
/// How many certificates an AIK chain may have, AIK and root included.
const MAX_CHAIN_LEN: usize = 5;
/// The smallest RSA RAK or AIK accepted, in bits.
const MIN_RSA_BITS: usize = 2048;
/// The algorithms a CVM token may be signed with.
const CVM_ALGORITHMS: [CoseAlg; 4] =
    [CoseAlg::Ps256, CoseAlg::Ps384, CoseAlg::Ps512, CoseAlg::Es512];
/// The algorithms a platform token may be signed with (by the AIK's key).
const PLATFORM_ALGORITHMS: [CoseAlg; 6] = [
    CoseAlg::Es256,
    CoseAlg::Es384,
    CoseAlg::Es512,
    CoseAlg::Ps256,
    CoseAlg::Ps384,
    CoseAlg::Ps512,
];

/// Why virtcca evidence failed to verify.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VirtCcaError {
    /// The evidence is not a virtCCA token (CBOR tag-399 map with the CVM token and optionally
    /// the platform token).
    #[error(
        "virtcca: evidence is not a virtCCA attestation token (CBOR tag 399 map with the CVM \
         token 44241 and optionally the platform token 44234): {0}"
    )]
    NotVirtCcaToken(String),
    /// The CVM or platform token is not well formed in the Arm CCA format it follows (the CVM
    /// token is what the message calls the realm token).
    #[error("virtcca: {}", strip_cca(.0))]
    Token(#[source] CcaError),
    /// The CVM token's payload is not the double-wrapped claims map virtCCA emits.
    #[error("virtcca: CVM token payload is not a byte string wrapping the claims map: {0}")]
    CvmPayload(String),
    /// The CVM token carries claims virtCCA does not emit.
    #[error("virtcca: CVM token claims are malformed: {0}")]
    CvmClaims(String),
    /// The RAK (claim 44237) is not a usable key, or does not fit the signature algorithm.
    #[error("virtcca: realm attestation key (RAK, claim 44237) is unusable: {0}")]
    RealmKey(String),
    /// The CVM token's signature does not verify with the RAK it carries.
    #[error("virtcca: CVM token signature does not verify with the RAK it carries")]
    CvmSignature,
    /// The platform challenge is not the hash of the RAK.
    #[error(
        "virtcca: CVM token is not bound to the platform token: the platform challenge \
         {challenge} is not the {alg} hash of the RAK ({expected})"
    )]
    Binding {
        /// The CVM token's public-key hash algorithm.
        alg: &'static str,
        /// The platform challenge, hex.
        challenge: String,
        /// The hash of the RAK, hex.
        expected: String,
    },
    /// A collateral certificate cannot be read.
    #[error("virtcca: collateral certificate #{index} is unusable: {reason}")]
    BadCertificate {
        /// Position among the collateral certificates (from 0).
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// The collateral carries documents; virtCCA uses none.
    #[error("virtcca: collateral documents are not used by virtCCA and are refused ({0} given)")]
    UnexpectedDocuments(usize),
    /// No collateral certificate's key verifies the platform token.
    #[error(
        "virtcca: platform token signature does not verify with the key of any collateral \
         certificate ({tried} tried); give the device's AIK certificate"
    )]
    PlatformSignature {
        /// How many certificates were tried.
        tried: usize,
    },
    /// A virtCCA trust anchor cannot be read as X.509 certificates.
    #[error("virtcca: trust anchor #{index} is not a usable root certificate: {reason}")]
    BadTrustAnchor {
        /// Position among the instance's virtCCA anchors (from 0).
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// The AIK certificate does not chain to a root the instance lists.
    #[error("virtcca: AIK certificate chain: {0}")]
    AikChain(#[source] CertError),
    /// The AIK's issuer is neither in the collateral nor among the anchors.
    #[error(
        "virtcca: AIK certificate chain: no certificate in the collateral or the anchors issued \
         {subject} (issuer {issuer})"
    )]
    AikIssuerMissing {
        /// The subject CN of the certificate whose issuer is missing.
        subject: String,
        /// The issuer CN it names.
        issuer: String,
    },
}

/// A CCA error's message without its `cca: ` prefix.
fn strip_cca(error: &CcaError) -> String {
    let text = error.to_string();
    text.strip_prefix("cca: ").map(str::to_owned).unwrap_or(text)
}

impl From<CcaError> for VirtCcaError {
    fn from(error: CcaError) -> Self {
        match error {
            CcaError::NotCcaToken(reason) => VirtCcaError::NotVirtCcaToken(reason),
            other => VirtCcaError::Token(other),
        }
    }
}

/// The driver for [`TeeKind::VirtCca`].
pub(crate) struct VirtCcaDriver;

impl crate::Driver for VirtCcaDriver {
    fn verify(&self, evidence: &[u8], inputs: &Inputs<'_>) -> Result<Claims, VerifyError> {
        Ok(verify_token(evidence, inputs)?)
    }
}

/// The two signed tokens of a virtCCA token, not yet verified.
struct Parsed {
    cvm: SignedToken,
    cvm_claims: RealmClaims,
    platform: Option<(SignedToken, PlatformClaims)>,
}

/// A key a virtCCA token is signed with.
enum SigningKey {
    Rsa(rsa::PublicKey),
    /// P-256, P-384 or P-521 (never RSA: that is [`SigningKey::Rsa`]).
    Ec(PublicKey),
}

/// What was established about the platform.
struct PlatformOutcome {
    verified: bool,
    status: String,
    aik: Option<serde_json::Value>,
}

fn verify_token(evidence: &[u8], inputs: &Inputs<'_>) -> Result<Claims, VirtCcaError> {
    if !inputs.collateral.documents.is_empty() {
        return Err(VirtCcaError::UnexpectedDocuments(inputs.collateral.documents.len()));
    }
    let parsed = parse(evidence)?;
    let (rak, rak_format) = parse_rak(&parsed.cvm_claims.public_key)?;
    if !key_fits(&rak, parsed.cvm.alg) {
        return Err(VirtCcaError::RealmKey(format!(
            "a {} key cannot verify {}",
            key_kind(&rak),
            parsed.cvm.alg.name()
        )));
    }
    if !signature_ok(&parsed.cvm, &rak) {
        return Err(VirtCcaError::CvmSignature);
    }
    let outcome = match &parsed.platform {
        None => PlatformOutcome {
            verified: false,
            status: "unverified: no platform token".into(),
            aik: None,
        },
        Some((token, claims)) => verify_platform(token, claims, &parsed.cvm_claims, inputs)?,
    };
    Ok(normalised(&parsed, rak_format, outcome))
}

/// Parses the tag-399 map, both envelopes and both claim sets.
fn parse(evidence: &[u8]) -> Result<Parsed, VirtCcaError> {
    let (form, entries) = token::collection_entries(evidence)?;
    if form != CollectionForm::Eat399 {
        return Err(VirtCcaError::NotVirtCcaToken(
            "a CMW collection (tag 907) is an Arm CCA token; virtCCA tokens use tag 399".into(),
        ));
    }
    let mut cvm = None;
    let mut platform = None;
    for (key, value) in entries {
        let slot = match key {
            CVM_TOKEN_KEY => &mut cvm,
            PLATFORM_TOKEN_KEY => &mut platform,
            _ => {
                return Err(VirtCcaError::NotVirtCcaToken(format!(
                    "unknown collection entry {key} (only 44241 CVM and 44234 platform are \
                     defined)"
                )));
            }
        };
        if slot.is_some() {
            return Err(VirtCcaError::NotVirtCcaToken(format!(
                "collection entry {key} appears twice"
            )));
        }
        *slot = Some(token::entry_bytes(key, value)?);
    }
    let cvm = cvm.ok_or_else(|| VirtCcaError::NotVirtCcaToken("no CVM token (44241)".into()))?;
    let cvm = token::parse_sign1(TokenPart::Realm, &cvm, &CVM_ALGORITHMS)?;
    let inner = match Value::from_slice(&cvm.payload) {
        Ok(Value::Bytes(inner)) => inner,
        Ok(_) => return Err(VirtCcaError::CvmPayload("the payload is not a byte string".into())),
        Err(e) => return Err(VirtCcaError::CvmPayload(format!("not CBOR: {e}"))),
    };
    let cvm_claims = token::parse_realm_claims(&inner)?;
    if let Some(profile) = &cvm_claims.profile {
        return Err(VirtCcaError::CvmClaims(format!(
            "virtCCA CVM tokens carry no profile claim (265), this one names {profile:?}"
        )));
    }
    let platform = match platform {
        Some(bytes) => {
            let token = token::parse_sign1(TokenPart::Platform, &bytes, &PLATFORM_ALGORITHMS)?;
            let claims = token::parse_platform_claims(&token.payload)?;
            Some((token, claims))
        }
        None => None,
    };
    Ok(Parsed { cvm, cvm_claims, platform })
}

/// The RAK: an RSA SubjectPublicKeyInfo (DER) or a SEC1 uncompressed P-521 point.
fn parse_rak(bytes: &[u8]) -> Result<(SigningKey, &'static str), VirtCcaError> {
    if bytes.first() == Some(&0x04) {
        let key = EcPublicKey::from_sec1(Curve::P521, bytes).ok_or_else(|| {
            VirtCcaError::RealmKey(format!(
                "{} bytes is not a SEC1 uncompressed point on P-521",
                bytes.len()
            ))
        })?;
        if bytes.len() != 133 {
            return Err(VirtCcaError::RealmKey("the P-521 point is not uncompressed".into()));
        }
        return Ok((SigningKey::Ec(PublicKey::P521(key)), "sec1-p521"));
    }
    match spki_key(bytes).map_err(VirtCcaError::RealmKey)? {
        key @ SigningKey::Rsa(_) => Ok((key, "rsa-spki")),
        other => Err(VirtCcaError::RealmKey(format!(
            "a {} SubjectPublicKeyInfo is not a virtCCA RAK (RSA, or a raw P-521 point)",
            key_kind(&other)
        ))),
    }
}

/// A key from a DER SubjectPublicKeyInfo: RSA (at least 2048 bits), P-256, P-384 or P-521.
fn spki_key(der: &[u8]) -> Result<SigningKey, String> {
    use rsa::traits::PublicKeyParts as _;
    let key = match PublicKey::from_spki_der(der) {
        Ok(PublicKey::Rsa(key)) => {
            let bits = key.n().bit_width();
            if usize::try_from(bits).unwrap_or(0) < MIN_RSA_BITS {
                return Err(format!("an RSA key of {bits} bits is too short"));
            }
            SigningKey::Rsa(key)
        }
        Ok(key) => SigningKey::Ec(key),
        Err(reason) => return Err(format!("unusable key: {reason}")),
    };
    Ok(key)
}

/// A certificate's subject public key.
fn cert_key(cert: &Cert) -> Result<SigningKey, String> {
    use der::Encode as _;
    let der = cert.parsed().tbs_certificate().subject_public_key_info().to_der();
    spki_key(&der.map_err(|e| e.to_string())?)
}

fn key_kind(key: &SigningKey) -> &'static str {
    match key {
        SigningKey::Rsa(_) => "RSA",
        SigningKey::Ec(PublicKey::P256(_)) => "P-256",
        SigningKey::Ec(PublicKey::P384(_)) => "P-384",
        SigningKey::Ec(PublicKey::P521(_)) => "P-521",
        SigningKey::Ec(PublicKey::Rsa(_)) => "RSA",
    }
}

/// Whether `key` is of the type `alg` signs with (ES256: P-256, ES384: P-384, ES512: P-521,
/// PS*: RSA).
fn key_fits(key: &SigningKey, alg: CoseAlg) -> bool {
    matches!(
        (key, alg),
        (SigningKey::Ec(PublicKey::P256(_)), CoseAlg::Es256)
            | (SigningKey::Ec(PublicKey::P384(_)), CoseAlg::Es384)
            | (SigningKey::Ec(PublicKey::P521(_)), CoseAlg::Es512)
            | (SigningKey::Rsa(_), CoseAlg::Ps256 | CoseAlg::Ps384 | CoseAlg::Ps512)
    )
}

/// Whether `token`'s COSE_Sign1 signature verifies with `key` (a key of another type never
/// does). PSS uses a salt as long as the hash (RFC 8230).
fn signature_ok(token: &SignedToken, key: &SigningKey) -> bool {
    use rsa::signature::Verifier as _;
    let verify = |signature: &[u8], data: &[u8]| -> Result<(), ()> {
        match (key, token.alg) {
            (SigningKey::Rsa(key), CoseAlg::Ps256) => {
                let signature = rsa::pss::Signature::try_from(signature).map_err(|_| ())?;
                rsa::pss::VerifyingKey::<sha2::Sha256>::new(key.clone())
                    .verify(data, &signature)
                    .map_err(|_| ())
            }
            (SigningKey::Rsa(key), CoseAlg::Ps384) => {
                let signature = rsa::pss::Signature::try_from(signature).map_err(|_| ())?;
                rsa::pss::VerifyingKey::<sha2::Sha384>::new(key.clone())
                    .verify(data, &signature)
                    .map_err(|_| ())
            }
            (SigningKey::Rsa(key), CoseAlg::Ps512) => {
                let signature = rsa::pss::Signature::try_from(signature).map_err(|_| ())?;
                rsa::pss::VerifyingKey::<sha2::Sha512>::new(key.clone())
                    .verify(data, &signature)
                    .map_err(|_| ())
            }
            _ => Err(()),
        }
    };
    match key {
        // P-256, P-384 and P-521 go through the CCA driver's check (fixed-size r || s).
        SigningKey::Ec(ec) => key_fits(key, token.alg) && crate::cca::signature_ok(token, ec),
        _ => key_fits(key, token.alg) && token.sign1.verify_signature(b"", verify).is_ok(),
    }
}

/// The platform token: binding, AIK signature, AIK chain.
fn verify_platform(
    token: &SignedToken,
    platform: &PlatformClaims,
    cvm: &RealmClaims,
    inputs: &Inputs<'_>,
) -> Result<PlatformOutcome, VirtCcaError> {
    let expected = cvm.public_key_hash_algo.digest(&cvm.public_key);
    if expected != platform.challenge {
        return Err(VirtCcaError::Binding {
            alg: cvm.public_key_hash_algo.name(),
            challenge: hex::encode(&platform.challenge),
            expected: hex::encode(&expected),
        });
    }
    let certs = inputs
        .collateral
        .certificates
        .iter()
        .enumerate()
        .map(|(index, der)| {
            Cert::from_der(der)
                .map_err(|e| VirtCcaError::BadCertificate { index, reason: e.to_string() })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if certs.is_empty() {
        return Ok(PlatformOutcome {
            verified: false,
            status: "unverified: no AIK certificate".into(),
            aik: None,
        });
    }
    let aik = certs
        .iter()
        .find(|cert| {
            cert.check_may_sign_data().is_ok()
                && cert_key(cert).is_ok_and(|key| signature_ok(token, &key))
        })
        .ok_or(VirtCcaError::PlatformSignature { tried: certs.len() })?;
    let mut aik_json = json!({
        "subject": aik.subject_cn(),
        "issuer": aik.issuer_cn(),
        "sha256": hex::encode(aik.sha256_fingerprint()),
    });
    let roots = trusted_roots(inputs)?;
    if roots.is_empty() {
        return Ok(PlatformOutcome {
            verified: false,
            status: "unverified: AIK chain not anchored (the instance lists no virtcca root)"
                .into(),
            aik: Some(aik_json),
        });
    }
    let chain = build_chain(aik, &certs, &roots)?;
    let pins: Vec<[u8; 32]> = roots.iter().map(Cert::sha256_fingerprint).collect();
    crate::x509::verify_chain(&chain, &pins, inputs.now_unix).map_err(VirtCcaError::AikChain)?;
    let root = chain.last().map(Cert::sha256_fingerprint).map(hex::encode);
    if let Some(object) = aik_json.as_object_mut() {
        object.insert("root_sha256".into(), json!(root));
    }
    Ok(PlatformOutcome {
        verified: true,
        status: "verified: platform token signed by the AIK, AIK chain to a listed virtcca root"
            .into(),
        aik: Some(aik_json),
    })
}

/// Every root certificate the instance lists for virtCCA; an unreadable anchor is an error.
fn trusted_roots(inputs: &Inputs<'_>) -> Result<Vec<Cert>, VirtCcaError> {
    let mut roots = Vec::new();
    for (index, bytes) in inputs.anchors.roots(TeeKind::VirtCca).iter().enumerate() {
        let certs = Cert::parse_many(bytes)
            .map_err(|e| VirtCcaError::BadTrustAnchor { index, reason: e.to_string() })?;
        if certs.is_empty() {
            return Err(VirtCcaError::BadTrustAnchor { index, reason: "no certificate".into() });
        }
        roots.extend(certs);
    }
    Ok(roots)
}

/// The chain from the AIK up to a listed root (leaf first), each issuer found among the
/// collateral certificates and the anchors by name and signature.
fn build_chain(aik: &Cert, certs: &[Cert], roots: &[Cert]) -> Result<Vec<Cert>, VirtCcaError> {
    // A listed certificate ends the chain only when it is self-issued (a root); a listed
    // intermediate is used as an issuer like one from the collateral.
    let is_root = |cert: &Cert| {
        cert.is_self_issued()
            && roots.iter().any(|root| root.sha256_fingerprint() == cert.sha256_fingerprint())
    };
    let mut chain = vec![aik.clone()];
    while chain.len() < MAX_CHAIN_LEN {
        let Some(current) = chain.last() else { break };
        if is_root(current) {
            return Ok(chain);
        }
        let issuer = roots
            .iter()
            .chain(certs)
            .find(|candidate| {
                candidate.sha256_fingerprint() != current.sha256_fingerprint()
                    && current.verify_issued_by(candidate).is_ok()
            })
            .cloned();
        match issuer {
            Some(issuer) => chain.push(issuer),
            None => {
                return Err(VirtCcaError::AikIssuerMissing {
                    subject: current.subject_cn(),
                    issuer: current.issuer_cn(),
                });
            }
        }
    }
    match chain.last() {
        Some(last) if is_root(last) => Ok(chain),
        Some(last) => Err(VirtCcaError::AikChain(CertError::UntrustedRoot {
            subject: last.subject_cn(),
            fingerprint: hex::encode(last.sha256_fingerprint()),
        })),
        None => Err(VirtCcaError::AikChain(CertError::EmptyChain)),
    }
}

/// The normalised claims and the `virtcca` vendor fields.
fn normalised(parsed: &Parsed, rak_format: &'static str, outcome: PlatformOutcome) -> Claims {
    let cvm = &parsed.cvm_claims;
    let platform = parsed.platform.as_ref().map(|(token, claims)| platform_json(token, claims));
    let secured = parsed
        .platform
        .as_ref()
        .is_some_and(|(_, claims)| token::lifecycle_is_secured(claims.lifecycle));
    let vendor = json!({
        "platform_verified": outcome.verified,
        "platform": outcome.status,
        "cvm": {
            "challenge": hex::encode(&cvm.challenge),
            "personalization_value": hex::encode(&cvm.personalization_value),
            "initial_measurement": hex::encode(&cvm.initial_measurement),
            "extensible_measurements":
                cvm.extensible_measurements.iter().map(hex::encode).collect::<Vec<_>>(),
            "hash_algo": cvm.hash_algo.name(),
            "public_key": hex::encode(&cvm.public_key),
            "public_key_format": rak_format,
            "public_key_hash_algo": cvm.public_key_hash_algo.name(),
            "signature_algorithm": parsed.cvm.alg.name(),
        },
        "platform_token": platform,
        "aik": outcome.aik,
    });
    Claims {
        tee: TeeKind::VirtCca,
        measurement: Hex(cvm.initial_measurement.clone()),
        signer: None,
        product_id: None,
        svn: None,
        debug: !(outcome.verified && secured),
        report_data: Hex(cvm.challenge.clone()),
        tcb_status: TcbStatus::Unknown,
        advisories: Vec::new(),
        platform_id: parsed.platform.as_ref().map(|(_, claims)| Hex(claims.instance_id.clone())),
        vendor: [("virtcca".to_owned(), vendor)].into_iter().collect(),
    }
}

fn platform_json(token: &SignedToken, platform: &PlatformClaims) -> serde_json::Value {
    let sw_components: Vec<_> = platform.sw_components.iter().map(SwComponent::to_json).collect();
    json!({
        "profile": platform.profile,
        "challenge": hex::encode(&platform.challenge),
        "implementation_id": hex::encode(&platform.implementation_id),
        "instance_id": hex::encode(&platform.instance_id),
        "config": hex::encode(&platform.config),
        "lifecycle": platform.lifecycle,
        "lifecycle_name": token::lifecycle_name(platform.lifecycle),
        "sw_components": sw_components,
        "verification_service": platform.verification_service,
        "hash_algo": platform.hash_algo,
        "signature_algorithm": token.alg.name(),
    })
}

/// Parses untrusted evidence bytes without any trust decision; the fuzz target drives this and
/// it must never panic.
pub(crate) fn parse_for_fuzz(bytes: &[u8]) {
    if let Ok(parsed) = parse(bytes)
        && let Ok((key, _)) = parse_rak(&parsed.cvm_claims.public_key)
    {
        let _ = signature_ok(&parsed.cvm, &key);
    }
    let _ = spki_key(bytes);
}
