//! Arm CCA attestation tokens: platform token (CPAK) and realm token (RAK) in COSE_Sign1.
//!
//! A CCA attestation token is a collection of two COSE_Sign1 messages: the **platform token**
//! (key 44234), signed by the platform's CPAK, and the **realm token** (key 44241), signed by the
//! realm attestation key (RAK) whose public key it carries (claim 44237). Two wrappings are
//! accepted, both with the same two labels and nothing else:
//!
//! - the legacy **CBOR tag 399** map whose values are the tokens' bytes (RMM specification 1.0,
//!   TF-RMM, trustee and rust-ccatoken test tokens);
//! - the **CBOR tag 907 CMW collection** (draft-ffm-rats-cca-token with draft-ietf-rats-msg-wrap,
//!   Veraison's ccatoken and rust-ccatoken): each value is a CMW record `[263, bytes]`, type
//!   `application/eat+cwt` (as the number 263 or the media type), optionally with the Evidence
//!   indicator (4) as a third item. A collection type (`__cmwc_t`), a missing, repeated or
//!   unknown entry, another content type or indicator is refused.
//!
//! Platform profiles `http://arm.com/CCA-SSD/1.0.0` (CCA Security Model) and
//! `tag:arm.com,2023:cca_platform#1.0.0` (draft-ffm-rats-cca-token) carry the same claims. The
//! realm token's profile decides how the RAK is encoded: without a profile claim (RMM 1.0) it is
//! a SEC1 uncompressed point, with `tag:arm.com,2023:realm#1.0.0` a COSE_Key; the other encoding
//! is refused. The platform and realm tokens come from different firmware (platform RoT, RMM), so
//! their profiles are not required to match each other.
//!
//! The driver checks, in this order, and fails closed at the first failure:
//!
//! 1. the collection and both COSE_Sign1 envelopes are well formed (ES256, ES384 or ES512: the
//!    algorithm must fit the curve of the key that verifies it, P-256, P-384 or P-521);
//! 2. the platform token's signature verifies with one of the CPAKs the instance trusts
//!    ([`crate::TrustAnchors::roots`] for `TeeKind::Cca`; CCA has no global vendor root), and
//!    the implementation and instance ids that anchor carries, if any, equal the token's;
//! 3. both claim sets are well formed (known profile, every mandatory claim, sizes, no unknown
//!    claim; the realm measurements as long as the realm hash algorithm's digest, sha-256,
//!    sha-384 or sha-512);
//! 4. the binding: the platform challenge (claim 10) equals the hash of the realm public key
//!    bytes (claim 44237, a SEC1 point or a COSE_Key, hashed as carried) with the realm's
//!    public-key hash algorithm (claim 44240) — this is what makes the RAK trustworthy;
//! 5. the realm token's signature verifies with that RAK.
//!
//! Normalised claims: `measurement` is the realm initial measurement (RIM, 44238),
//! `report_data` the realm challenge (64 bytes), `platform_id` the platform instance id (256).
//! `debug` is true unless the platform security lifecycle (2395) is in the "secured" range
//! 0x3000–0x30ff: every other state of the PSA/CCA security model (unknown, assembly and test,
//! RoT provisioning, non-CCA-RoT debug, recoverable CCA-RoT debug, decommissioned) lets the
//! platform's root of trust be debugged or is not a production state. `signer` is not set: the
//! realm personalization value (RPV, 44235) is chosen by whoever launches the realm, it does not
//! identify who built the code; it is reported under `vendor.cca.realm`. `tcb_status` is always
//! `unknown`: a CCA token carries no TCB status, and judging the platform software components
//! needs reference values, which is the policy's job. CCA tokens carry no time, so the
//! verification time is not used.

pub(crate) mod token;

use cloister_types::{Claims, Hex, TcbStatus, TeeKind};
use serde_json::json;

use crate::cose_anchor::{self as anchor, AnchorKey, KeyAnchor, Restriction};
use crate::error::VerifyError;
use crate::inputs::Inputs;
use crate::x509::PublicKey;

pub use token::TokenPart;
use token::{CollectionForm, CoseAlg, PlatformClaims, RealmClaims, SignedToken};

/// Why cca evidence failed to verify.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CcaError {
    /// The evidence is not a CCA token collection (CBOR tag 399, or the tag-907 CMW collection,
    /// with platform and realm tokens).
    #[error(
        "cca: evidence is not a CCA attestation token (CBOR tag 399 or tag 907 CMW collection): \
         {0}"
    )]
    NotCcaToken(String),
    /// A token is not a well-formed COSE_Sign1 message.
    #[error("cca: {token} token is not a valid COSE_Sign1 message: {reason}")]
    Cose {
        /// Which token.
        token: TokenPart,
        /// What is wrong.
        reason: String,
    },
    /// A token is signed with an algorithm this verifier does not support.
    #[error(
        "cca: {token} token is signed with COSE algorithm {alg}, which is not supported (ES256, \
         ES384 and ES512 are)"
    )]
    UnsupportedAlgorithm {
        /// Which token.
        token: TokenPart,
        /// The algorithm the token names.
        alg: String,
    },
    /// The instance lists no CPAK for CCA.
    #[error(
        "cca: no CPAK trust anchor is configured; add the platform's CPAK (JWK, Veraison \
         trust-anchor JSON or PEM public key) as a CCA trust anchor"
    )]
    NoTrustAnchor,
    /// A CCA trust anchor cannot be read as a CPAK.
    #[error("cca: trust anchor #{index} is not a usable CPAK: {reason}")]
    BadTrustAnchor {
        /// Position of the anchor in the instance's CCA anchors (from 0).
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// The platform token's signature verifies with none of the trusted CPAKs.
    #[error("cca: platform token signature does not verify with any trusted CPAK ({tried} tried)")]
    PlatformSignature {
        /// How many CPAKs were tried.
        tried: usize,
    },
    /// The platform token is signed by a trusted CPAK whose anchor is restricted to another
    /// platform.
    #[error(
        "cca: platform token signature verifies with a trusted CPAK, but the token's {field} {token} \
         does not match the trust anchor's {anchor}"
    )]
    AnchorIdMismatch {
        /// `implementation id` or `instance id`.
        field: &'static str,
        /// The token's value, hex.
        token: String,
        /// The anchor's value, hex.
        anchor: String,
    },
    /// A mandatory claim is missing.
    #[error("cca: {token} token lacks the mandatory claim {name} ({key})")]
    MissingClaim {
        /// Which token.
        token: TokenPart,
        /// The claim's name.
        name: &'static str,
        /// The claim's key.
        key: i128,
    },
    /// A claim this verifier does not know; refused rather than ignored.
    #[error("cca: {token} token has unknown claim {key}; refusing it rather than ignoring it")]
    UnknownClaim {
        /// Which token.
        token: TokenPart,
        /// The claim's key.
        key: String,
    },
    /// A claim has the wrong type, size or value.
    #[error("cca: {token} token claims are malformed: {reason}")]
    Claims {
        /// Which token.
        token: TokenPart,
        /// What is wrong.
        reason: String,
    },
    /// A hash algorithm the verifier must compute with is not supported.
    #[error(
        "cca: {token} token's {claim} is {alg:?}, which is not supported (sha-256, sha-384, \
         sha-512 are)"
    )]
    UnsupportedHash {
        /// Which token.
        token: TokenPart,
        /// The claim naming the algorithm.
        claim: String,
        /// The algorithm named.
        alg: String,
    },
    /// The realm public key (claim 44237) is not a usable key.
    #[error("cca: realm public key (RAK, claim 44237) is unusable: {0}")]
    RealmKey(String),
    /// The platform challenge is not the hash of the realm public key: the realm token is not
    /// the one this platform vouched for.
    #[error(
        "cca: realm token is not bound to the platform token: the platform challenge {challenge} \
         is not the {alg} hash of the realm public key ({expected})"
    )]
    Binding {
        /// The realm's public-key hash algorithm.
        alg: &'static str,
        /// The platform challenge, hex.
        challenge: String,
        /// The hash of the realm public key, hex.
        expected: String,
    },
    /// The realm token's signature does not verify with the RAK it carries.
    #[error(
        "cca: realm token signature does not verify with the realm public key (RAK) it carries"
    )]
    RealmSignature,
}

/// The driver for [`TeeKind::Cca`].
pub(crate) struct CcaDriver;

impl crate::Driver for CcaDriver {
    fn verify(&self, evidence: &[u8], inputs: &Inputs<'_>) -> Result<Claims, VerifyError> {
        // `inputs.now_unix` is not used: CCA tokens carry no time, CPAKs are bare keys without
        // validity periods, and freshness comes from the realm challenge (the report_data
        // binding that `verify` checks).
        // `inputs.collateral` is not used either: a CCA token needs nothing but its CPAK.
        Ok(verify_token(evidence, inputs)?)
    }
}

/// The verified contents of a token.
struct Verified {
    form: CollectionForm,
    platform: PlatformClaims,
    realm: RealmClaims,
    platform_alg: CoseAlg,
    realm_alg: CoseAlg,
    cpak: PublicKey,
    rak_format: &'static str,
}

fn verify_token(evidence: &[u8], inputs: &Inputs<'_>) -> Result<Claims, CcaError> {
    let collection = token::parse_collection(evidence)?;
    let cpaks = trusted_cpaks(inputs)?;

    // The platform token: signature first, then its (now authentic) claims, then the anchor's
    // restriction to an implementation and instance.
    let verifying: Vec<&Cpak> = cpaks
        .iter()
        .filter(|cpak| platform_signature_ok(&collection.platform, &cpak.key))
        .collect();
    if verifying.is_empty() {
        return Err(CcaError::PlatformSignature { tried: cpaks.len() });
    }
    let platform = token::parse_platform_claims(&collection.platform.payload)?;
    let cpak = select_anchor(&verifying, &platform)?;

    // The realm token: its key is trusted only through the platform challenge.
    let realm = token::parse_realm_claims(&collection.realm.payload)?;
    let expected = realm.public_key_hash_algo.digest(&realm.public_key);
    if expected != platform.challenge {
        return Err(CcaError::Binding {
            alg: realm.public_key_hash_algo.name(),
            challenge: hex::encode(&platform.challenge),
            expected: hex::encode(&expected),
        });
    }
    let (rak, rak_format) = parse_rak(&realm.public_key, realm.profile.is_some())?;
    if !signature_ok(&collection.realm, &rak) {
        return Err(CcaError::RealmSignature);
    }

    Ok(claims(Verified {
        form: collection.form,
        platform,
        realm,
        platform_alg: collection.platform.alg,
        realm_alg: collection.realm.alg,
        cpak,
        rak_format,
    }))
}

/// One trusted CPAK, with the platform identities its endorsement is restricted to.
struct Cpak {
    key: PublicKey,
    restriction: Restriction,
}

/// Every CPAK the instance trusts for CCA; an unreadable anchor, or a symmetric key, is an
/// error.
fn trusted_cpaks(inputs: &Inputs<'_>) -> Result<Vec<Cpak>, CcaError> {
    let roots = inputs.anchors.roots(TeeKind::Cca);
    if roots.is_empty() {
        return Err(CcaError::NoTrustAnchor);
    }
    let mut cpaks = Vec::new();
    for (index, bytes) in roots.iter().enumerate() {
        let parsed = anchor::parse_anchor(bytes)
            .map_err(|reason| CcaError::BadTrustAnchor { index, reason })?;
        for KeyAnchor { key, restriction } in parsed {
            let AnchorKey::Public(key) = key else {
                return Err(CcaError::BadTrustAnchor {
                    index,
                    reason: "a symmetric key cannot be a CPAK (P-256, P-384 or P-521 public keys \
                             only)"
                        .into(),
                });
            };
            cpaks.push(Cpak { key, restriction });
        }
    }
    Ok(cpaks)
}

/// Among the CPAKs the platform signature verifies with, the first whose anchor's ids (if any)
/// match the token; otherwise the mismatch of the first one.
fn select_anchor(verifying: &[&Cpak], platform: &PlatformClaims) -> Result<PublicKey, CcaError> {
    anchor::first_admitting(
        verifying,
        |cpak| &cpak.restriction,
        &platform.implementation_id,
        &platform.instance_id,
    )
    .map(|cpak| cpak.key.clone())
    .map_err(|mismatch| match mismatch {
        Some(anchor::IdMismatch { field, token, anchor }) => {
            CcaError::AnchorIdMismatch { field, token, anchor }
        }
        None => CcaError::PlatformSignature { tried: verifying.len() },
    })
}

/// Whether `token`'s COSE_Sign1 signature verifies with `key`; the key's curve must be the one
/// the algorithm names (ES256: P-256, ES384: P-384, ES512: P-521).
pub(crate) fn signature_ok(token: &SignedToken, key: &PublicKey) -> bool {
    check_signature(token, key, false)
}

/// [`signature_ok`] for the platform token. The RMM gets it once per boot and hands it out
/// unchanged with every realm token of the platform (its challenge is the hash of the RAK), so
/// a success is remembered under the key, the exact signed bytes and the signature
/// (`PublicKey::verify_ecdsa_raw_remembered`); the realm token, signed afresh for each
/// challenge, is always verified.
fn platform_signature_ok(token: &SignedToken, key: &PublicKey) -> bool {
    check_signature(token, key, true)
}

fn check_signature(token: &SignedToken, key: &PublicKey, remember: bool) -> bool {
    let Some(hash) = token.alg.ecdsa_hash_for(key) else {
        return false;
    };
    token
        .sign1
        .verify_signature(b"", |signature, data| {
            if remember {
                key.verify_ecdsa_fixed_remembered(hash, data, signature)
            } else {
                key.verify_ecdsa_fixed(hash, data, signature)
            }
        })
        .is_ok()
}

/// The RAK from claim 44237: a SEC1 uncompressed point (RMM 1.0 realm token, no profile claim)
/// or a COSE_Key (`tag:arm.com,2023:realm#1.0.0`, draft-ffm-rats-cca-token); the encoding must be
/// the one the realm profile names.
fn parse_rak(bytes: &[u8], profiled: bool) -> Result<(PublicKey, &'static str), CcaError> {
    if !profiled {
        let key = anchor::sec1_key(bytes).ok_or_else(|| {
            CcaError::RealmKey(format!(
                "{} bytes is not a SEC1 uncompressed point on P-256, P-384 or P-521, which a realm \
                 token without a profile claim (RMM 1.0) carries",
                bytes.len()
            ))
        })?;
        return Ok((key, "sec1"));
    }
    let key = cose_key(bytes).map_err(|reason| {
        CcaError::RealmKey(format!(
            "{reason} (the realm profile {} requires a COSE_Key)",
            token::REALM_PROFILE
        ))
    })?;
    Ok((key, "cose_key"))
}

fn cose_key(bytes: &[u8]) -> Result<PublicKey, String> {
    use coset::cbor::value::Value;
    use coset::{CborSerializable as _, CoseKey, KeyType, Label, iana};

    let key = CoseKey::from_slice(bytes)
        .map_err(|e| format!("neither a SEC1 point nor a COSE_Key: {e}"))?;
    if key.kty != KeyType::Assigned(iana::KeyType::EC2) {
        return Err("the COSE_Key is not an EC2 key".into());
    }
    let mut crv = None;
    let mut x = None;
    let mut y = None;
    for (label, value) in &key.params {
        match (label, value) {
            (Label::Int(-1), Value::Integer(c)) => crv = Some(i128::from(*c)),
            (Label::Int(-2), Value::Bytes(b)) => x = Some(b.clone()),
            (Label::Int(-3), Value::Bytes(b)) => y = Some(b.clone()),
            (Label::Int(-4), _) => return Err("the COSE_Key holds a private key".into()),
            (label, _) => return Err(format!("unexpected COSE_Key parameter {label:?}")),
        }
    }
    // RFC 9053 §7.1: crv 1 P-256, 2 P-384, 3 P-521.
    let (size, alg) = match crv {
        Some(1) => (32, iana::Algorithm::ES256),
        Some(2) => (48, iana::Algorithm::ES384),
        Some(3) => (66, iana::Algorithm::ES512),
        other => {
            return Err(format!(
                "unsupported COSE_Key curve {other:?} (1 P-256, 2 P-384 or 3 P-521)"
            ));
        }
    };
    if let Some(named) = &key.alg
        && *named != coset::Algorithm::Assigned(alg)
    {
        return Err(format!("the COSE_Key's algorithm {named:?} does not fit its curve"));
    }
    let (Some(x), Some(y)) = (x, y) else {
        return Err("the COSE_Key lacks x or y (compressed keys are not supported)".into());
    };
    if x.len() != size || y.len() != size {
        return Err(format!("the COSE_Key's coordinates are not {size} bytes each"));
    }
    let mut point = vec![0x04];
    point.extend(x);
    point.extend(y);
    anchor::sec1_key(&point).ok_or_else(|| "the COSE_Key's point is not on its curve".into())
}

/// The normalised claims and the `cca` vendor fields.
fn claims(v: Verified) -> Claims {
    let Verified { form, platform, realm, platform_alg, realm_alg, cpak, rak_format } = v;
    let sw_components: Vec<_> =
        platform.sw_components.iter().map(token::SwComponent::to_json).collect();
    let vendor = json!({
        "collection": form.name(),
        "platform": {
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
            "signature_algorithm": platform_alg.name(),
            "cpak": hex::encode(anchor::sec1_point(&cpak)),
        },
        "realm": {
            "profile": realm.profile,
            "challenge": hex::encode(&realm.challenge),
            "personalization_value": hex::encode(&realm.personalization_value),
            "initial_measurement": hex::encode(&realm.initial_measurement),
            "extensible_measurements":
                realm.extensible_measurements.iter().map(hex::encode).collect::<Vec<_>>(),
            "hash_algo": realm.hash_algo.name(),
            "public_key": hex::encode(&realm.public_key),
            "public_key_format": rak_format,
            "public_key_hash_algo": realm.public_key_hash_algo.name(),
            "signature_algorithm": realm_alg.name(),
        },
    });
    Claims {
        tee: TeeKind::Cca,
        measurement: Hex(realm.initial_measurement),
        signer: None,
        product_id: None,
        svn: None,
        debug: !token::lifecycle_is_secured(platform.lifecycle),
        report_data: Hex(realm.challenge),
        tcb_status: TcbStatus::Unknown,
        advisories: Vec::new(),
        platform_id: Some(Hex(platform.instance_id)),
        vendor: [("cca".to_owned(), vendor)].into_iter().collect(),
    }
}

/// Parses untrusted evidence bytes without any trust decision; the fuzz target drives this and
/// it must never panic.
pub(crate) fn parse_for_fuzz(bytes: &[u8]) {
    if let Ok(collection) = token::parse_collection(bytes) {
        let _ = token::parse_platform_claims(&collection.platform.payload);
        if let Ok(realm) = token::parse_realm_claims(&collection.realm.payload) {
            let _ = parse_rak(&realm.public_key, realm.profile.is_some());
        }
    }
    let _ = anchor::parse_anchor(bytes);
}
