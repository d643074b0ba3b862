//! Android key attestation: a key's certificate chain from KeyMint/Keymaster (TEE or StrongBox).
//!
//! Android attests a **key**, never an enclave ([`cloister_types::Attests::DeviceKey`]): the
//! leaf certificate carries the attested public key and a KeyDescription extension
//! ([`key_description`]) saying where the key lives, who may use it, the app that owns it and
//! the device's verified-boot state; the chain above it goes up to a Google root.
//!
//! # Evidence
//!
//! The certificate chain, leaf first, as a JSON array of base64/base64url DER strings (what
//! Android apps send), PEM blocks, or concatenated DER ([`evidence`]). At most
//! [`MAX_EVIDENCE_LEN`] bytes and [`evidence::MAX_CHAIN_LEN`] certificates.
//!
//! # What is checked, in order
//!
//! 1. Every certificate parses (x509-cert's tolerant `Raw` profile: real StrongBox leaves carry
//!    an explicit NULL parameter in `ecdsa-with-SHA256`, which strict parsers refuse).
//! 2. Trust anchor: the **last** certificate's SubjectPublicKeyInfo (SHA-256 of its DER) is
//!    one of: a test root the instance lists for `android` (`trust_anchor: "test"`), a Google
//!    root key pinned here ([`GOOGLE_ROOT_KEYS`], `"vendor"`), or a root the instance lists
//!    (`"instance"`). Anchors are **keys**: Google re-issued its RSA root with the same key
//!    (2016, 2019, 2022 certificates all appear in real chains), so the anchor certificate's
//!    own validity period is not checked; a pinned key carries its own end of validity (that of
//!    its current certificate), and an instance or test anchor is valid when the certificate
//!    the instance listed is valid at `now`. Listed anchors are X.509 certificates in DER or
//!    PEM; one that does not parse is an error, never skipped. The AOSP software-attestation
//!    roots are not pinned: software attestations verify only under an anchor the instance
//!    lists.
//! 3. Signatures chain: each certificate's signature verifies with the **next** certificate's
//!    key (RSA PKCS#1 v1.5 or PSS, ECDSA P-256/P-384 with SHA-256 or SHA-384), over the
//!    to-be-signed bytes as received. Issuer and subject names are **not** compared, as
//!    Google's verifiers do not: real StrongBox chains name an issuer that is not their
//!    signer's subject. The anchor's self-signature is not checked (the anchor is its key).
//! 4. Every certificate that signs another is a CA allowed to sign certificates at its depth
//!    (basicConstraints cA, keyUsage keyCertSign, pathLenConstraint).
//! 5. Every certificate but the anchor is valid at `now_unix`.
//! 6. No certificate has a critical extension this verifier does not understand
//!    ([`KNOWN_CRITICAL_EXTENSIONS`]).
//! 7. The leaf, and only the leaf, carries exactly one KeyDescription, and it parses. Chains in
//!    which an app's own attestation key (ATTEST_KEY) signs the leaf carry a KeyDescription in
//!    an intermediate too, and are refused: only keys attested by the device's own attestation
//!    key are accepted.
//! 8. A `software` attestation security level is accepted only under an instance or test
//!    anchor (the AOSP software root, when the instance lists it); under a Google root it is
//!    refused.
//! 9. Revocation: every collateral document must be a Google status list ([`status`]); when at
//!    least one is given, a certificate of the chain listed in any of them (REVOKED or
//!    SUSPENDED) refuses the evidence, naming its serial and reason. Without a status list
//!    the claims say `revocation_checked: false`. Collateral certificates are not used: the
//!    evidence carries its whole chain.
//!
//! Not checked here, and left to policy: the challenge's value (beyond the binding of
//! [`crate::verify`]), the app's package and signing certificate, patch levels, the key's
//! algorithm and purposes.
//!
//! # Claims
//!
//! - `report_data` = the `attestationChallenge` bytes as they are. A Cloister attester puts
//!   exactly the 64-byte SHA-512 of the runtime data there, so [`crate::verify`] binds the key
//!   like any TEE; any other challenge still verifies with [`crate::verify_vendor_evidence`].
//! - `measurement` = SHA-256 over the DER `AttestationApplicationId` exactly as carried in tag
//!   709's OCTET STRING (the app's package names and versions and the SHA-256 digests of its
//!   signing certificates): one value per app build and signer. Looked up in
//!   `softwareEnforced` (where Android puts it), then `hardwareEnforced`; empty when absent
//!   (system keys), which matches no reference value.
//! - `signer` = the single signing-certificate digest of the AttestationApplicationId, when it
//!   has exactly one (the app's signing certificate SHA-256, as `apksigner` prints it);
//!   absent otherwise.
//! - `debug` = true unless the attestation security level is a TEE or StrongBox **and** the
//!   authoritative RootOfTrust says `deviceLocked` and `verifiedBootState == Verified`: an
//!   unlocked bootloader or a self-signed or unverified OS can read what the OS can, and a
//!   software key protects nothing against the OS.
//! - `platform_id`: absent. The verifiedBootKey identifies an OEM's OS signing key, shared by
//!   every device of a model, not the device; the attested device ids (serial, IMEI), when a
//!   device sends them, are under `android.attested_ids`.
//! - `tcb_status` = `up_to_date` when a status list was given and nothing in the chain is
//!   listed, otherwise `unknown`.
//! - `vendor.android`: `security_level` (`software` | `trusted_environment` | `strong_box`),
//!   `attestation_version`, `keymint_version`, `keymint_security_level`, `challenge`,
//!   `unique_id` (hex), `root_of_trust` ({verified_boot_key, device_locked,
//!   verified_boot_state, verified_boot_hash}, or null), `os_version`, `os_patch_level`,
//!   `vendor_patch_level`, `boot_patch_level` (integers as the device encodes them: 140000,
//!   202408, 20240805, or null), `attestation_application_id` ({packages: [{name, version}],
//!   signature_digests: [hex]} or null), `attested_ids` ({brand, device, product, serial,
//!   imei, second_imei, meid, manufacturer, model}, only those present), `software_enforced`
//!   and `hardware_enforced` (every tag by its name: integers, arrays, true for flags, hex for
//!   bytes, UTF-8 text for ids, unknown tags as `"tag_<n>": hex`), `tags_in_order`,
//!   `attested_key_spki_sha256`, `root_spki_sha256`, `chain_serials` (leaf first, hex),
//!   `evidence_encoding`, `revocation_checked` and `trust_anchor` (`vendor` | `instance` |
//!   `test`). The authoritative list for root of trust, OS version and patch levels is
//!   `hardwareEnforced` for TEE and StrongBox attestations and `softwareEnforced` for software
//!   ones; nothing is taken from the other.

pub mod evidence;
pub mod key_description;
pub mod status;

use std::collections::BTreeMap;

use cloister_types::{Claims, Hex, TcbStatus, TeeKind};
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};

use crate::anchors::AnchorOrigin;
use crate::error::VerifyError;
use crate::inputs::Inputs;
use crate::x509::{Cert, CertError, rfc3339};

use self::key_description::{AuthValue, AuthorizationList, KeyDescription, SecurityLevel, TagKind};
use self::status::StatusList;

/// The OID of the KeyDescription extension.
pub const KEY_DESCRIPTION_OID: &str = "1.3.6.1.4.1.11129.2.1.17";

/// The largest evidence accepted.
pub const MAX_EVIDENCE_LEN: usize = 256 * 1024;

/// A Google root key pinned by the SHA-256 of its DER SubjectPublicKeyInfo.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PinnedKey {
    /// What the key is, for messages.
    pub name: &'static str,
    /// SHA-256 of the DER SubjectPublicKeyInfo.
    pub spki_sha256: [u8; 32],
    /// The end of validity of the key's current certificate (unix seconds): after it the key
    /// anchors nothing.
    pub not_after: i64,
}

/// Google's hardware attestation root keys, as published with Google's verifier
/// (`roots.json` of android/keyattestation and the Android developer documentation).
pub const GOOGLE_ROOT_KEYS: [PinnedKey; 2] = [
    // RSA-4096, subject serialNumber=f92009e853b6b045; certificates of 2016 (expired
    // 2026-05-24), 2019 and 2022 (valid to 2042-03-15T18:07:48Z) carry this key.
    PinnedKey {
        name: "Google hardware attestation root (RSA-4096, f92009e853b6b045)",
        spki_sha256: [
            0xfe, 0xb2, 0xea, 0x75, 0x51, 0xee, 0x31, 0x6e, 0xd4, 0xbb, 0x44, 0x3c, 0x82, 0x93,
            0xb8, 0x84, 0xdb, 0xfd, 0xea, 0x40, 0xb6, 0x03, 0xee, 0x3e, 0x4f, 0x4a, 0x89, 0x7e,
            0x45, 0x80, 0xfb, 0xae,
        ],
        not_after: 2_278_519_668,
    },
    // EC P-384, CN=Key Attestation CA1, OU=Android, O=Google LLC, C=US, valid to
    // 2035-07-15T22:32:18Z.
    PinnedKey {
        name: "Google Key Attestation CA1 (P-384)",
        spki_sha256: [
            0x3e, 0xe4, 0x45, 0x12, 0xa1, 0xaf, 0x2b, 0xeb, 0x39, 0xc8, 0x89, 0x49, 0x0c, 0x60,
            0xea, 0x3f, 0x82, 0xe4, 0x3f, 0x5d, 0x5a, 0x55, 0x32, 0xf5, 0xab, 0x94, 0x19, 0xf6,
            0x76, 0xcd, 0x07, 0xec,
        ],
        not_after: 2_068_151_538,
    },
];

/// Extensions that may be critical: basicConstraints, keyUsage, extendedKeyUsage,
/// subjectKeyIdentifier, authorityKeyIdentifier, CRL distribution points, certificate
/// policies, subjectAltName, the KeyDescription and Android's provisioning-info extension.
/// Name constraints (2.5.29.30) are not applied, so a chain that makes them critical is
/// refused.
pub const KNOWN_CRITICAL_EXTENSIONS: [&str; 10] = [
    "2.5.29.19",
    "2.5.29.15",
    "2.5.29.37",
    "2.5.29.14",
    "2.5.29.35",
    "2.5.29.31",
    "2.5.29.32",
    "2.5.29.17",
    KEY_DESCRIPTION_OID,
    "1.3.6.1.4.1.11129.2.1.30",
];

/// Why Android evidence failed to verify.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AndroidError {
    /// The evidence is larger than any genuine chain.
    #[error("android: evidence is {len} bytes, more than the {max}-byte limit")]
    TooLarge {
        /// Size of the evidence.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The evidence is not a certificate chain in an accepted encoding.
    #[error("android: {0}")]
    Encoding(String),
    /// A certificate of the chain does not parse.
    #[error("android: certificate {index} of the chain (0 = leaf): {source}")]
    Certificate {
        /// Its position, leaf first.
        index: usize,
        /// Why.
        source: CertError,
    },
    /// A trust anchor the instance lists for `android` is not a certificate.
    #[error("android: {list} {index} is not an X.509 certificate in DER or PEM: {reason}")]
    Anchor {
        /// `trust anchor` or `test root`.
        list: &'static str,
        /// Its position in the list.
        index: usize,
        /// Why.
        reason: String,
    },
    /// The chain's last certificate carries no key this instance trusts.
    #[error(
        "android: the chain ends at {subject} whose key (SPKI SHA-256 {spki_sha256}) is neither a \
         Google attestation root nor a root this instance lists"
    )]
    UntrustedRoot {
        /// The last certificate's subject.
        subject: String,
        /// SHA-256 of its SubjectPublicKeyInfo, hex.
        spki_sha256: String,
    },
    /// The anchor key is no longer (or not yet) valid.
    #[error("android: the trust anchor {anchor} is not valid at {now}")]
    AnchorNotValid {
        /// The anchor.
        anchor: String,
        /// The verification time, RFC 3339.
        now: String,
    },
    /// A signature, CA constraint or validity check of the chain failed.
    #[error("android: certificate chain: {0}")]
    Chain(#[source] CertError),
    /// A certificate has a critical extension this verifier does not understand.
    #[error("android: certificate {index} ({subject}) has an unknown critical extension {oid}")]
    UnknownCriticalExtension {
        /// Its position, leaf first.
        index: usize,
        /// Its subject.
        subject: String,
        /// The extension's OID.
        oid: String,
    },
    /// The leaf has no KeyDescription extension: it is not an attested key.
    #[error(
        "android: the leaf certificate has no key attestation extension ({KEY_DESCRIPTION_OID})"
    )]
    MissingKeyDescription,
    /// The leaf has more than one KeyDescription extension.
    #[error("android: the leaf certificate has the key attestation extension more than once")]
    DuplicateKeyDescription,
    /// A certificate above the leaf carries a KeyDescription.
    #[error(
        "android: certificate {index} ({subject}) above the leaf carries a key attestation \
         extension (chains signed by an app's attestation key are not accepted)"
    )]
    KeyDescriptionAboveLeaf {
        /// Its position, leaf first.
        index: usize,
        /// Its subject.
        subject: String,
    },
    /// The KeyDescription is malformed.
    #[error("android: key attestation extension is malformed: {0}")]
    KeyDescription(#[from] key_description::KeyDescriptionError),
    /// A software attestation chained to a root the instance did not list.
    #[error(
        "android: the attestation security level is software, which is accepted only under a \
         root this instance lists (the AOSP software root), not under a {anchor} root"
    )]
    SoftwareAttestation {
        /// Where the root came from.
        anchor: &'static str,
    },
    /// A collateral document is not a status list.
    #[error(
        "android: collateral document {index} is not a Google attestation status list: {reason}"
    )]
    StatusList {
        /// Its position among the documents.
        index: usize,
        /// Why.
        reason: String,
    },
    /// A certificate of the chain is listed in the status list.
    #[error(
        "android: certificate {index} ({subject}, serial {serial}) is {status} in the attestation \
         status list (reason: {reason})"
    )]
    Revoked {
        /// Its position, leaf first.
        index: usize,
        /// Its subject.
        subject: String,
        /// Its serial number, hex as listed.
        serial: String,
        /// `REVOKED`, `SUSPENDED`, …
        status: String,
        /// The listed reason, or `unspecified`.
        reason: String,
    },
}

/// The Android key attestation driver.
pub(crate) struct AndroidDriver;

impl crate::Driver for AndroidDriver {
    fn verify(&self, evidence: &[u8], inputs: &Inputs<'_>) -> Result<Claims, VerifyError> {
        Ok(verify(evidence, inputs)?)
    }
}

/// A chain whose signatures, CA constraints, validity and anchor were checked.
#[derive(Clone, Debug)]
pub struct VerifiedChain {
    /// The certificates, leaf first.
    pub certs: Vec<Cert>,
    /// Where the anchor came from.
    pub origin: AnchorOrigin,
    /// SHA-256 of the anchor's SubjectPublicKeyInfo.
    pub root_spki_sha256: [u8; 32],
}

/// Checks steps 2 to 6 of the module documentation on `certs` (leaf first): the anchor, the
/// signature chain, CA constraints, validity and critical extensions. It does not look at the
/// KeyDescription.
pub fn verify_chain(certs: Vec<Cert>, inputs: &Inputs<'_>) -> Result<VerifiedChain, AndroidError> {
    let now = inputs.now_unix;
    let top = certs.last().ok_or(AndroidError::Chain(CertError::EmptyChain))?;
    let top_spki = top.spki_sha256().map_err(AndroidError::Chain)?;
    let origin = anchor_origin(top, &top_spki, inputs)?;

    for (position, pair) in certs.windows(2).enumerate() {
        let [issued, issuer] = pair else { continue };
        issued.verify_signed_by(issuer).map_err(AndroidError::Chain)?;
        let below = certs
            .get(1..=position)
            .map_or(0, |between| between.iter().filter(|c| !c.is_self_issued()).count());
        issuer.check_may_issue(issued, below).map_err(AndroidError::Chain)?;
    }
    let below_anchor = certs.len().saturating_sub(1);
    for cert in certs.iter().take(below_anchor) {
        cert.check_validity(now).map_err(AndroidError::Chain)?;
    }
    for (index, cert) in certs.iter().enumerate() {
        for oid in cert.critical_extensions() {
            let text = oid.to_string();
            if !KNOWN_CRITICAL_EXTENSIONS.contains(&text.as_str()) {
                return Err(AndroidError::UnknownCriticalExtension {
                    index,
                    subject: subject(cert),
                    oid: text,
                });
            }
        }
    }
    Ok(VerifiedChain { certs, origin, root_spki_sha256: top_spki })
}

/// Where the key of the chain's last certificate is trusted from (step 2).
fn anchor_origin(
    top: &Cert,
    top_spki: &[u8; 32],
    inputs: &Inputs<'_>,
) -> Result<AnchorOrigin, AndroidError> {
    let now = inputs.now_unix;
    let listed = |list: &'static str, anchors: &[Vec<u8>]| -> Result<Option<Cert>, AndroidError> {
        let mut found = None;
        for (index, anchor) in anchors.iter().enumerate() {
            let reason = |e: CertError| AndroidError::Anchor { list, index, reason: e.to_string() };
            for cert in Cert::parse_many(anchor).map_err(reason)? {
                if cert.spki_sha256().map_err(reason)? == *top_spki && found.is_none() {
                    found = Some(cert);
                }
            }
        }
        Ok(found)
    };
    let test = listed("test root", inputs.anchors.test_roots(TeeKind::Android))?;
    let instance = listed("trust anchor", inputs.anchors.roots(TeeKind::Android))?;
    let listed_valid = |cert: &Cert| {
        cert.check_validity(now)
            .map_err(|_| AndroidError::AnchorNotValid { anchor: subject(cert), now: rfc3339(now) })
    };
    if let Some(cert) = test {
        listed_valid(&cert)?;
        return Ok(AnchorOrigin::Test);
    }
    if let Some(pinned) = GOOGLE_ROOT_KEYS.iter().find(|k| k.spki_sha256 == *top_spki) {
        if now > pinned.not_after {
            return Err(AndroidError::AnchorNotValid {
                anchor: pinned.name.to_owned(),
                now: rfc3339(now),
            });
        }
        return Ok(AnchorOrigin::Vendor);
    }
    if let Some(cert) = instance {
        listed_valid(&cert)?;
        return Ok(AnchorOrigin::Instance);
    }
    Err(AndroidError::UntrustedRoot { subject: subject(top), spki_sha256: hex::encode(top_spki) })
}

fn subject(cert: &Cert) -> String {
    cert.parsed().tbs_certificate().subject().to_string()
}

/// The collateral a chain needs: Google's revocation status list (one list for every device),
/// so that a service fetches it before verifying. Nothing for evidence that is no chain.
pub(crate) fn needs(evidence: &[u8]) -> Vec<crate::needs::CollateralKey> {
    use crate::needs::{CollateralKey, Vendor};
    match evidence::split_chain(evidence) {
        Ok((certs, _)) if !certs.is_empty() => {
            vec![CollateralKey::new(Vendor::Google, "status", "attestation")]
        }
        _ => Vec::new(),
    }
}

/// Verifies Android key attestation evidence (see the module documentation).
pub fn verify(evidence: &[u8], inputs: &Inputs<'_>) -> Result<Claims, AndroidError> {
    if evidence.len() > MAX_EVIDENCE_LEN {
        return Err(AndroidError::TooLarge { len: evidence.len(), max: MAX_EVIDENCE_LEN });
    }
    let (ders, encoding) = evidence::split_chain(evidence).map_err(AndroidError::Encoding)?;
    let certs = ders
        .iter()
        .enumerate()
        .map(|(index, der)| {
            Cert::from_der(der).map_err(|source| AndroidError::Certificate { index, source })
        })
        .collect::<Result<Vec<_>, _>>()?;
    // Revocation lists are read before any signature: a malformed one is refused either way.
    let statuses = status_lists(inputs)?;
    let chain = verify_chain(certs, inputs)?;
    let description = leaf_key_description(&chain.certs)?;
    check_security_level(description.attestation_security_level, chain.origin)?;
    if let Some(list) = &statuses {
        for (index, cert) in chain.certs.iter().enumerate() {
            if let Some((serial, entry)) = list.lookup(cert.serial_bytes()) {
                return Err(AndroidError::Revoked {
                    index,
                    subject: subject(cert),
                    serial: serial.to_owned(),
                    status: entry.status.clone(),
                    reason: entry.reason.clone().unwrap_or_else(|| "unspecified".to_owned()),
                });
            }
        }
    }
    claims(&chain, &description, encoding, statuses.is_some())
}

/// Step 8: a software attestation needs a root the instance chose (the AOSP software root);
/// Google's hardware roots never anchor one.
fn check_security_level(level: SecurityLevel, origin: AnchorOrigin) -> Result<(), AndroidError> {
    match (level, origin) {
        (SecurityLevel::Software, AnchorOrigin::Vendor) => {
            Err(AndroidError::SoftwareAttestation { anchor: origin.as_str() })
        }
        _ => Ok(()),
    }
}

/// Every collateral document as a status list, merged; `None` when there are none.
fn status_lists(inputs: &Inputs<'_>) -> Result<Option<StatusList>, AndroidError> {
    let mut merged: Option<StatusList> = None;
    for (index, document) in inputs.collateral.documents.iter().enumerate() {
        let list = StatusList::parse(document)
            .map_err(|reason| AndroidError::StatusList { index, reason })?;
        merged.get_or_insert_with(StatusList::default).merge(list);
    }
    Ok(merged)
}

/// The leaf's KeyDescription (step 7).
fn leaf_key_description(certs: &[Cert]) -> Result<KeyDescription, AndroidError> {
    let oid = der::oid::ObjectIdentifier::new_unwrap(KEY_DESCRIPTION_OID);
    let (leaf, above) = certs.split_first().ok_or(AndroidError::Chain(CertError::EmptyChain))?;
    for (offset, cert) in above.iter().enumerate() {
        if cert.extension_count(&oid) > 0 {
            return Err(AndroidError::KeyDescriptionAboveLeaf {
                index: offset.saturating_add(1),
                subject: subject(cert),
            });
        }
    }
    match leaf.extension_count(&oid) {
        0 => return Err(AndroidError::MissingKeyDescription),
        1 => {}
        _ => return Err(AndroidError::DuplicateKeyDescription),
    }
    let bytes = leaf.extension(KEY_DESCRIPTION_OID).ok_or(AndroidError::MissingKeyDescription)?;
    Ok(key_description::parse(bytes)?)
}

/// The AuthorizationList that speaks for the device (see the module documentation).
fn authoritative(description: &KeyDescription) -> &AuthorizationList {
    match description.attestation_security_level {
        SecurityLevel::Software => &description.software_enforced,
        SecurityLevel::TrustedEnvironment | SecurityLevel::StrongBox => {
            &description.hardware_enforced
        }
    }
}

fn claims(
    chain: &VerifiedChain,
    description: &KeyDescription,
    encoding: evidence::ChainEncoding,
    revocation_checked: bool,
) -> Result<Claims, AndroidError> {
    let leaf = chain.certs.first().ok_or(AndroidError::Chain(CertError::EmptyChain))?;
    let main = authoritative(description);
    let app_id = description
        .software_enforced
        .application_id()
        .or_else(|| description.hardware_enforced.application_id());
    let measurement = app_id.map_or_else(Vec::new, |id| Sha256::digest(&id.der).to_vec());
    let signer = app_id.and_then(|id| match id.signature_digests.as_slice() {
        [one] => Some(Hex(one.clone())),
        _ => None,
    });
    let root = main.root_of_trust();
    let hardware = description.attestation_security_level != SecurityLevel::Software;
    let debug = !(hardware
        && root.is_some_and(|r| {
            r.device_locked && r.verified_boot_state == key_description::VerifiedBootState::Verified
        }));

    let root_json = root.map_or(Value::Null, |r| {
        json!({
            "verified_boot_key": hex::encode(&r.verified_boot_key),
            "device_locked": r.device_locked,
            "verified_boot_state": r.verified_boot_state.as_str(),
            "verified_boot_hash": r.verified_boot_hash.as_ref().map(hex::encode),
        })
    });
    let mut ids = Map::new();
    for (number, name) in [
        (710, "brand"),
        (711, "device"),
        (712, "product"),
        (713, "serial"),
        (714, "imei"),
        (723, "second_imei"),
        (715, "meid"),
        (716, "manufacturer"),
        (717, "model"),
    ] {
        if let Some(bytes) = main.bytes(number) {
            ids.insert(name.to_owned(), text(bytes));
        }
    }
    let leaf_spki = leaf.spki_sha256().map_err(AndroidError::Chain)?;
    let vendor = json!({
        "security_level": description.attestation_security_level.as_str(),
        "attestation_version": description.attestation_version,
        "keymint_version": description.keymint_version,
        "keymint_security_level": description.keymint_security_level.as_str(),
        "challenge": hex::encode(&description.attestation_challenge),
        "unique_id": hex::encode(&description.unique_id),
        "root_of_trust": root_json,
        "os_version": main.integer(705),
        "os_patch_level": main.integer(706),
        "vendor_patch_level": main.integer(718),
        "boot_patch_level": main.integer(719),
        "attestation_application_id": app_id.map_or(Value::Null, application_id_json),
        "attested_ids": ids,
        "software_enforced": authorization_list_json(&description.software_enforced),
        "hardware_enforced": authorization_list_json(&description.hardware_enforced),
        "tags_in_order": description.software_enforced.tags_in_order
            && description.hardware_enforced.tags_in_order,
        "attested_key_spki_sha256": hex::encode(leaf_spki),
        "root_spki_sha256": hex::encode(chain.root_spki_sha256),
        "chain_serials": chain
            .certs
            .iter()
            .map(|c| status::serial_hex(c.serial_bytes()))
            .collect::<Vec<_>>(),
        "evidence_encoding": encoding.as_str(),
        "revocation_checked": revocation_checked,
        "trust_anchor": chain.origin.as_str(),
    });
    Ok(Claims {
        tee: TeeKind::Android,
        measurement: Hex(measurement),
        signer,
        product_id: None,
        svn: None,
        debug,
        report_data: Hex(description.attestation_challenge.clone()),
        tcb_status: if revocation_checked { TcbStatus::UpToDate } else { TcbStatus::Unknown },
        advisories: Vec::new(),
        platform_id: None,
        vendor: BTreeMap::from([(TeeKind::Android.as_str().to_owned(), vendor)]),
    })
}

/// UTF-8 text as a string; other bytes as `hex:<hex>`.
fn text(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(text) => Value::String(text.to_owned()),
        Err(_) => Value::String(format!("hex:{}", hex::encode(bytes))),
    }
}

fn application_id_json(id: &key_description::AttestationApplicationId) -> Value {
    json!({
        "packages": id
            .packages
            .iter()
            .map(|p| json!({"name": text(&p.name), "version": p.version}))
            .collect::<Vec<_>>(),
        "signature_digests": id.signature_digests.iter().map(hex::encode).collect::<Vec<_>>(),
    })
}

/// Every tag by name (`tag_<n>` for unknown ones).
fn authorization_list_json(list: &AuthorizationList) -> Value {
    let mut out = Map::new();
    for (number, value) in &list.entries {
        let info = key_description::tag_info(*number);
        let name = info.map_or_else(|| format!("tag_{number}"), |(name, _)| name.to_owned());
        let json = match value {
            AuthValue::Integer(v) => json!(v),
            AuthValue::IntegerSet(v) => json!(v),
            AuthValue::Flag => Value::Bool(true),
            AuthValue::Bytes(bytes) if matches!(info, Some((_, TagKind::Text))) => text(bytes),
            AuthValue::Bytes(bytes) | AuthValue::Unknown(bytes) => json!(hex::encode(bytes)),
            AuthValue::RootOfTrust(r) => json!({
                "verified_boot_key": hex::encode(&r.verified_boot_key),
                "device_locked": r.device_locked,
                "verified_boot_state": r.verified_boot_state.as_str(),
                "verified_boot_hash": r.verified_boot_hash.as_ref().map(hex::encode),
            }),
            AuthValue::ApplicationId(id) => application_id_json(id),
        };
        out.insert(name, json);
    }
    Value::Object(out)
}

/// Parses untrusted evidence bytes without any trust decision; the fuzz target drives this and
/// it must never panic.
pub(crate) fn parse_for_fuzz(bytes: &[u8]) {
    let _ = key_description::parse(bytes);
    let _ = StatusList::parse(bytes);
    if let Ok((ders, _)) = evidence::split_chain(bytes) {
        for der in ders {
            if let Ok(cert) = Cert::from_der(&der)
                && let Some(ext) = cert.extension(KEY_DESCRIPTION_OID)
            {
                let _ = key_description::parse(ext);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn software_attestations_need_a_listed_root() {
        let software = SecurityLevel::Software;
        assert!(matches!(
            check_security_level(software, AnchorOrigin::Vendor),
            Err(AndroidError::SoftwareAttestation { anchor: "vendor" })
        ));
        assert!(check_security_level(software, AnchorOrigin::Instance).is_ok());
        assert!(check_security_level(software, AnchorOrigin::Test).is_ok());
        for level in [SecurityLevel::TrustedEnvironment, SecurityLevel::StrongBox] {
            assert!(check_security_level(level, AnchorOrigin::Vendor).is_ok());
        }
    }

    #[test]
    fn pinned_keys_are_the_published_digests() {
        let hex: Vec<String> =
            GOOGLE_ROOT_KEYS.iter().map(|k| hex::encode(k.spki_sha256)).collect();
        assert_eq!(
            hex,
            [
                "feb2ea7551ee316ed4bb443c8293b884dbfdea40b603ee3e4f4a897e4580fbae",
                "3ee44512a1af2beb39c889490c60ea3f82e43f5d5a5532f5ab9419f676cd07ec",
            ]
        );
    }
}
