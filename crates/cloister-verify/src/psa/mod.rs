//! Arm PSA attestation tokens (TrustZone-M with TF-M, TrustZone-A with OP-TEE): one COSE
//! message, signed or MACed by the device's Initial Attestation Key (IAK), over a claims map.
//!
//! # Format
//!
//! A token is a COSE_Sign1 (CBOR tag 18) signed by an asymmetric IAK with ES256, ES384 or
//! ES512 (ECDSA on P-256, P-384 or P-521 with SHA-256, -384 or -512, RFC 9053 §2.1; the IAK
//! must be on the curve the algorithm names), or a
//! COSE_Mac0 (CBOR tag 17) MACed by a symmetric IAK with HMAC 256/256 (COSE alg 5), 384/384 (6)
//! or 512/512 (7). The tag may be omitted (RFC 9052 §2 lets the context say which structure it
//! is); an untagged message is read as the structure its protected algorithm names, and a tag
//! that contradicts the algorithm is refused ([`PsaError::EnvelopeMismatch`]). The algorithm
//! must be in the protected header; a `crit` header is refused (this verifier understands no
//! critical extension). EdDSA, RSA and truncated HMAC 256/64 are refused as unsupported.
//!
//! # Profiles and claims
//!
//! The claims map follows one of three profiles; each is a closed map, so a claim the profile
//! does not define is refused ([`PsaError::UnknownClaim`]), as is a missing mandatory one:
//!
//! | claim | `PSA_IOT_PROFILE_1` | `http://arm.com/psa/2.0.0` | `tag:psacertified.org,2023:psa#tfm` (RFC 9783) |
//! |---|---|---|---|
//! | profile | −75000, optional | 265, mandatory | 265, mandatory |
//! | client id (int32 ≠ 0) | −75001 | 2394 | 2394 |
//! | security lifecycle | −75002 | 2395 | 2395 |
//! | implementation id (32 bytes) | −75003 | 2396 | 2396 |
//! | boot seed | −75004, 32 bytes, mandatory | 2397, 8–32 bytes, optional | 268, 8–32 bytes, optional |
//! | hardware version / certification reference | −75005, EAN-13 or EAN-13+5, optional | 2398, EAN-13+5, optional | 2398, EAN-13+5, optional |
//! | software components | −75006 | 2399, mandatory | 2399, mandatory |
//! | no software measurements (= 1) | −75007 (exactly one of −75006, −75007) | — | — |
//! | nonce (32, 48 or 64 bytes) | −75008 | 10 | 10 |
//! | instance id (33 bytes, 0x01 first) | −75009 | 256 | 256 |
//! | verification service indicator (non-empty text) | −75010, optional | 2400, optional | 2400, optional |
//!
//! Without an `eat_profile` (265) the token is `PSA_IOT_PROFILE_1`, as Veraison reads it. The
//! security lifecycle must lie in one of the ranges of the PSA security model (0x0000–0x00ff
//! unknown, 0x1000–0x10ff assembly and test, 0x2000–0x20ff PSA RoT provisioning, 0x3000–0x30ff
//! secured, 0x4000–0x40ff non-PSA-RoT debug, 0x5000–0x50ff recoverable PSA-RoT debug,
//! 0x6000–0x60ff decommissioned). Software components are a non-empty array of maps
//! `{? 1: measurement type (text), 2: measurement value (32/48/64 bytes), ? 4: version (text),
//! 5: signer id (32/48/64 bytes), ? 6: measurement description (text)}`. The nonce is a single
//! byte string (an EAT nonce array is refused: no PSA profile allows one).
//!
//! # Trust anchors
//!
//! PSA has no vendor root: each device has its own IAK, and the instance lists the ones it
//! trusts with [`crate::TrustAnchors::with_root`] for `TeeKind::Psa` (claims say
//! `"trust_anchor": "instance"`) or [`crate::TrustAnchors::with_test_root`] (development keys
//! such as TF-M's default IAK; claims say `"trust_anchor": "test"`, and a key in both lists is
//! `test`). Each anchor is one of the forms CCA's CPAKs take: an EC public JWK, a PEM or
//! DER SubjectPublicKeyInfo, or, for COSE_Mac0 tokens, a symmetric JWK
//! `{"kty": "oct", "k": <base64url of the key>, "alg"?: "HS256" | "HS384" | "HS512"}` (at least
//! 32 bytes, and at least the tag size of the algorithm it names); any of these may be wrapped
//! in a Veraison trust-anchor entry `{"pkey": <JWK>, "implementation-id": <hex>, "instance-id":
//! <hex>}` that restricts it to one implementation and/or one device, or listed in a JSON array.
//! A token verifies if its signature or MAC verifies with one of the anchors whose
//! restrictions (if any) its implementation and instance ids meet. An unreadable anchor is an
//! error, never skipped.
//!
//! # Normalised claims
//!
//! - `report_data` is the nonce (32, 48 or 64 bytes). [`crate::verify`] binds only a 64-byte
//!   nonce (the SHA-512 of the runtime data, which is what a Cloister attester asks for); tokens
//!   with shorter nonces verify through [`crate::verify_vendor_evidence`] but can never be bound.
//! - `platform_id` is the instance id (33 bytes, the UEID of the IAK).
//! - `measurement` is SHA-256 over the software components in token order, each contributing
//!   one byte holding the length of its measurement value followed by the measurement value:
//!   `SHA-256(len(mv₀) ‖ mv₀ ‖ len(mv₁) ‖ mv₁ ‖ …)`. A P1 token with "no software measurements"
//!   has the SHA-256 of the empty string. Signer ids, types and versions are not part of it;
//!   they are listed under `vendor.psa.software_components`.
//! - `signer` is the signer id when every software component carries the same one, and absent
//!   otherwise (TF-M signs its secure and non-secure images with different keys).
//! - `debug` is true unless the security lifecycle is in the "secured" range 0x3000–0x30ff:
//!   every other state lets the PSA RoT be debugged or is not a production state.
//! - `tcb_status` is `unknown`: a PSA token carries no TCB status, and judging the software
//!   components needs reference values, which is the policy's job. `svn` and `product_id` are
//!   not set. PSA tokens carry no time, so the verification time is not used.
//! - `vendor.psa`: `profile`, `token_format` (`sign1`/`mac0`), `tagged`,
//!   `signature_algorithm`, `implementation_id`, `instance_id`, `boot_seed`, `client_id`,
//!   `security_lifecycle` `{value, name}`, `software_components` `[{measurement_type,
//!   measurement_value, signer_id, version, measurement_desc}]`, `no_software_measurements`,
//!   `verification_service`, `certification_reference` (2398), `hardware_version` (P1's
//!   −75005), `iak` (the SEC1 public key for COSE_Sign1, null for a symmetric key, which is
//!   never shown) and `trust_anchor` (`instance` or `test`). Byte values are hex; absent
//!   optional claims are null.

mod token;

use aws_lc_rs::hmac;
use cloister_types::{Claims, Hex, TcbStatus, TeeKind};
use serde_json::json;
use sha2::{Digest as _, Sha256};

use crate::anchors::AnchorOrigin;
use crate::cose_anchor::{self, AnchorKey, HmacAlg, KeyAnchor};
use crate::ecdsa::Hash;
use crate::error::VerifyError;
use crate::inputs::Inputs;
use crate::x509::PublicKey;

use token::{Envelope, PsaClaims, SignAlg, Token};

/// Why psa evidence failed to verify.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PsaError {
    /// The evidence is not a COSE_Sign1 or COSE_Mac0 message.
    #[error("psa: evidence is not a PSA attestation token (COSE_Sign1 or COSE_Mac0): {0}")]
    NotPsaToken(String),
    /// The CBOR tag says one structure, the protected algorithm another.
    #[error("psa: the token is tagged {tag} but its protected header names {named}")]
    EnvelopeMismatch {
        /// The CBOR tag (18 COSE_Sign1, 17 COSE_Mac0).
        tag: u64,
        /// What the algorithm is.
        named: &'static str,
    },
    /// The token lists critical header parameters, which this verifier does not understand.
    #[error("psa: the token lists critical header parameters ({0}); refusing it")]
    CriticalHeader(String),
    /// The token's algorithm is not supported.
    #[error(
        "psa: the token uses COSE algorithm {0}, which is not supported (ES256, ES384, ES512, \
         HMAC 256/256, 384/384 and 512/512 are)"
    )]
    UnsupportedAlgorithm(String),
    /// The instance lists no IAK for PSA.
    #[error(
        "psa: no IAK trust anchor is configured; add the device's Initial Attestation Key (JWK, \
         Veraison trust-anchor JSON or PEM public key) as a PSA trust anchor"
    )]
    NoTrustAnchor,
    /// A PSA trust anchor cannot be read as an IAK.
    #[error("psa: {list} trust anchor #{index} is not a usable IAK: {reason}")]
    BadTrustAnchor {
        /// `root` or `test root`.
        list: &'static str,
        /// Position of the anchor in that list (from 0).
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// The signature or MAC verifies with none of the trusted IAKs of the token's kind.
    #[error(
        "psa: the token's {kind} does not verify with any trusted IAK ({tried} of the right kind \
         tried)"
    )]
    BadSignature {
        /// `signature` or `MAC`.
        kind: &'static str,
        /// How many IAKs were tried.
        tried: usize,
    },
    /// The token verifies with a trusted IAK whose anchor is restricted to another device.
    #[error(
        "psa: the token verifies with a trusted IAK, but its {field} {token} does not match the \
         trust anchor's {anchor}"
    )]
    AnchorIdMismatch {
        /// `implementation id` or `instance id`.
        field: &'static str,
        /// The token's value, hex.
        token: String,
        /// The anchor's value, hex.
        anchor: String,
    },
    /// The token names a profile this verifier does not know.
    #[error(
        "psa: unknown profile {0:?} (PSA_IOT_PROFILE_1, http://arm.com/psa/2.0.0 and \
         tag:psacertified.org,2023:psa#tfm are known)"
    )]
    UnknownProfile(String),
    /// A mandatory claim is missing.
    #[error("psa: the token lacks the mandatory claim {name} ({key})")]
    MissingClaim {
        /// The claim's name.
        name: &'static str,
        /// The claim's key in the token's profile.
        key: i128,
    },
    /// A claim the token's profile does not define; refused rather than ignored.
    #[error("psa: the token has claim {0}, which its profile does not define; refusing it")]
    UnknownClaim(String),
    /// A claim has the wrong type, size or value.
    #[error("psa: the token's claims are malformed: {0}")]
    Claims(String),
}

/// The driver for [`TeeKind::Psa`].
pub(crate) struct PsaDriver;

impl crate::Driver for PsaDriver {
    fn verify(&self, evidence: &[u8], inputs: &Inputs<'_>) -> Result<Claims, VerifyError> {
        // `inputs.now_unix` is not used: PSA tokens carry no time and IAKs are bare keys without
        // validity periods; freshness comes from the nonce (the binding `verify` checks).
        // `inputs.collateral` is not used either: a PSA token needs nothing but its IAK.
        Ok(verify_token(evidence, inputs)?)
    }
}

/// One IAK the instance trusts, and the list it came from.
struct Iak {
    anchor: KeyAnchor,
    origin: AnchorOrigin,
}

fn verify_token(evidence: &[u8], inputs: &Inputs<'_>) -> Result<Claims, PsaError> {
    let token = token::parse_token(evidence)?;
    let iaks = trusted_iaks(inputs)?;

    // Authenticity first, then the (now authentic) claims, then the anchors' restrictions.
    let mut tried = 0;
    let mut verifying = Vec::new();
    for iak in &iaks {
        match authenticates(&token.envelope, &iak.anchor.key) {
            Some(true) => {
                tried += 1;
                verifying.push(iak);
            }
            Some(false) => tried += 1,
            None => {}
        }
    }
    if verifying.is_empty() {
        let kind = match token.envelope {
            Envelope::Sign1(..) => "signature",
            Envelope::Mac0(..) => "MAC",
        };
        return Err(PsaError::BadSignature { kind, tried });
    }
    let claims = token::parse_claims(&token.payload)?;
    let iak = select_anchor(&verifying, &claims)?;
    Ok(normalise(&token, claims, iak))
}

/// Every IAK the instance trusts for PSA, test roots first (so a key in both lists is `test`);
/// an unreadable anchor is an error.
fn trusted_iaks(inputs: &Inputs<'_>) -> Result<Vec<Iak>, PsaError> {
    let lists = [
        ("test root", AnchorOrigin::Test, inputs.anchors.test_roots(TeeKind::Psa)),
        ("root", AnchorOrigin::Instance, inputs.anchors.roots(TeeKind::Psa)),
    ];
    let mut iaks = Vec::new();
    for (list, origin, anchors) in lists {
        for (index, bytes) in anchors.iter().enumerate() {
            let parsed = cose_anchor::parse_anchor(bytes)
                .map_err(|reason| PsaError::BadTrustAnchor { list, index, reason })?;
            iaks.extend(parsed.into_iter().map(|anchor| Iak { anchor, origin }));
        }
    }
    if iaks.is_empty() {
        return Err(PsaError::NoTrustAnchor);
    }
    Ok(iaks)
}

/// Whether `key` authenticates the token: `None` when the key cannot serve its algorithm (a
/// symmetric key for COSE_Sign1, a P-384 key for ES256 or ES512, an HS256 key for HMAC
/// 512/512, …).
fn authenticates(envelope: &Envelope, key: &AnchorKey) -> Option<bool> {
    match (envelope, key) {
        (Envelope::Sign1(sign1, alg), AnchorKey::Public(key)) => {
            let hash = match (alg, key) {
                (SignAlg::Es256, PublicKey::P256(_)) => Hash::Sha256,
                (SignAlg::Es384, PublicKey::P384(_)) => Hash::Sha384,
                (SignAlg::Es512, PublicKey::P521(_)) => Hash::Sha512,
                _ => return None,
            };
            Some(
                sign1
                    .verify_signature(b"", |signature, data| {
                        key.verify_ecdsa_fixed(hash, data, signature)
                    })
                    .is_ok(),
            )
        }
        (Envelope::Mac0(mac0, alg), AnchorKey::Symmetric { key, alg: restricted }) => {
            if restricted.is_some_and(|only| only != *alg) || key.len() < alg.len() {
                return None;
            }
            let algorithm = match alg {
                HmacAlg::Sha256 => hmac::HMAC_SHA256,
                HmacAlg::Sha384 => hmac::HMAC_SHA384,
                HmacAlg::Sha512 => hmac::HMAC_SHA512,
            };
            let key = hmac::Key::new(algorithm, key);
            // aws-lc compares the tags in constant time.
            let verified = mac0.verify_payload_tag(
                b"",
                || aws_lc_rs::error::Unspecified,
                |tag, data| hmac::verify(&key, data, tag),
            );
            Some(verified.is_ok())
        }
        _ => None,
    }
}

/// Among the IAKs the token verifies with, the first whose anchor's ids (if any) match the
/// token; otherwise the mismatch of the first one.
fn select_anchor<'a>(verifying: &[&'a Iak], claims: &PsaClaims) -> Result<&'a Iak, PsaError> {
    cose_anchor::first_admitting(
        verifying,
        |iak| &iak.anchor.restriction,
        &claims.implementation_id,
        &claims.instance_id,
    )
    .map_err(|mismatch| match mismatch {
        Some(cose_anchor::IdMismatch { field, token, anchor }) => {
            PsaError::AnchorIdMismatch { field, token, anchor }
        }
        None => PsaError::BadSignature { kind: "signature", tried: 0 },
    })
}

/// The `measurement` of a token: SHA-256 over each component's one-byte measurement-value length
/// and measurement value, in token order (see the module documentation).
pub(crate) fn software_digest(claims: &PsaClaims) -> Vec<u8> {
    let mut hasher = Sha256::new();
    for component in &claims.sw_components {
        // Measurement values are 32, 48 or 64 bytes: the length fits one byte.
        let len = u8::try_from(component.measurement_value.len()).unwrap_or(u8::MAX);
        hasher.update([len]);
        hasher.update(&component.measurement_value);
    }
    hasher.finalize().to_vec()
}

/// The normalised claims and the `psa` vendor fields.
fn normalise(token: &Token, claims: PsaClaims, iak: &Iak) -> Claims {
    let measurement = software_digest(&claims);
    let signer = match claims.sw_components.split_first() {
        Some((first, rest)) if rest.iter().all(|c| c.signer_id == first.signer_id) => {
            Some(Hex(first.signer_id.clone()))
        }
        _ => None,
    };
    let components: Vec<_> = claims
        .sw_components
        .iter()
        .map(|c| {
            json!({
                "measurement_type": c.measurement_type,
                "measurement_value": hex::encode(&c.measurement_value),
                "signer_id": hex::encode(&c.signer_id),
                "version": c.version,
                "measurement_desc": c.measurement_desc,
            })
        })
        .collect();
    let iak_public = match &iak.anchor.key {
        AnchorKey::Public(key) => Some(hex::encode(cose_anchor::sec1_point(key))),
        AnchorKey::Symmetric { .. } => None,
    };
    let vendor = json!({
        "profile": claims.profile.name(),
        "token_format": token.envelope.format(),
        "tagged": token.tagged,
        "signature_algorithm": token.envelope.alg_name(),
        "implementation_id": hex::encode(&claims.implementation_id),
        "instance_id": hex::encode(&claims.instance_id),
        "boot_seed": claims.boot_seed.as_ref().map(hex::encode),
        "client_id": claims.client_id,
        "security_lifecycle": {
            "value": claims.lifecycle,
            "name": token::lifecycle_name(claims.lifecycle),
        },
        "software_components": components,
        "no_software_measurements": claims.no_sw_measurements,
        "verification_service": claims.verification_service,
        "certification_reference": claims.certification_reference,
        "hardware_version": claims.hardware_version,
        "iak": iak_public,
        "trust_anchor": iak.origin.as_str(),
    });
    Claims {
        tee: TeeKind::Psa,
        measurement: Hex(measurement),
        signer,
        product_id: None,
        svn: None,
        debug: claims.lifecycle >> 8 != 0x30,
        report_data: Hex(claims.nonce),
        tcb_status: TcbStatus::Unknown,
        advisories: Vec::new(),
        platform_id: Some(Hex(claims.instance_id)),
        vendor: [("psa".to_owned(), vendor)].into_iter().collect(),
    }
}

/// Checks a claims map (a token's payload) against the profile it names, without any
/// signature; returns the profile's name.
pub(crate) fn check_claims(payload: &[u8]) -> Result<&'static str, PsaError> {
    token::parse_claims(payload).map(|claims| claims.profile.name())
}

/// Parses untrusted evidence bytes without any trust decision; the fuzz target drives this and
/// it must never panic.
pub(crate) fn parse_for_fuzz(bytes: &[u8]) {
    if let Ok(token) = token::parse_token(bytes)
        && let Ok(claims) = token::parse_claims(&token.payload)
    {
        let _ = software_digest(&claims);
    }
    let _ = token::parse_claims(bytes);
    let _ = cose_anchor::parse_anchor(bytes);
}
