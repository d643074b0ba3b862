//! An instance's trust anchors, from the form tenant admins send
//! ([`cloister_types::manage::TrustAnchorSpec`]) to what the verifiers take.
//!
//! ```toml
//! sim_platform_keys = ["cloister-sim-platform-p256:..."]
//!
//! # Extra roots per TEE, as text (PEM certificate, PEM public key, or JWK JSON), on top of
//! # the vendor roots the verifiers pin. Arm CCA has no vendor root: list the CPAKs here.
//! [roots]
//! cca = ["""{"kty":"EC","crv":"P-384","x":"...","y":"..."}"""]
//!
//! # Test roots per TEE (sgx, tdx, snp, nitro), PEM certificates: development trust anchors.
//! # Evidence under one verifies, is marked `"trust_anchor": "test"`, and `default` refuses it.
//! [test_roots]
//! tdx = ["""-----BEGIN CERTIFICATE-----..."""]
//! ```

use cloister_types::TeeKind;
pub use cloister_types::manage::TrustAnchorSpec;
use cloister_verify::x509::Cert;
use cloister_verify::{SimPlatformPublicKey, TrustAnchors};

/// Why trust anchors were refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A hardware trust anchor is listed under an unknown TEE.
    #[error("{0}")]
    Root(String),
    /// A trust anchor does not parse.
    #[error("trust anchor {index} in sim_platform_keys is not a sim platform key: {reason}")]
    TrustAnchor {
        /// Position in the list.
        index: usize,
        /// Why.
        reason: String,
    },
    /// A test root is listed for a TEE that takes none, is not a certificate, or is also an
    /// ordinary root.
    #[error("{0}")]
    TestRoot(String),
}

/// Refuses an anchor that holds a symmetric key (a JWK of `kty` `oct`, as a PSA COSE_Mac0 IAK
/// is): trust anchors are stored in clear and shown to the tenant's admins, unlike the secrets
/// the service seals, so a shared secret never becomes one. MAC'd tokens can still be checked
/// offline with `cloister evidence verify --tee psa --trust-anchor KEY`.
fn refuse_secret_key(where_: &str, text: &str) -> Result<(), ConfigError> {
    fn holds_secret(value: &serde_json::Value) -> bool {
        match value {
            serde_json::Value::Object(fields) => {
                fields.get("kty").and_then(serde_json::Value::as_str) == Some("oct")
                    || fields.values().any(holds_secret)
            }
            serde_json::Value::Array(items) => items.iter().any(holds_secret),
            _ => false,
        }
    }
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(value) if holds_secret(&value) => Err(ConfigError::Root(format!(
            "{where_} holds a symmetric key (a JWK of kty \"oct\"): trust anchors are stored in \
             clear and shown to the tenant's admins, so a secret key is never one; verify MAC'd \
             PSA tokens offline with `cloister evidence verify --tee psa --trust-anchor KEY`"
        ))),
        _ => Ok(()),
    }
}

/// Parses every anchor of `spec`; the first unusable one is refused with its position.
pub fn trust_anchors(spec: &TrustAnchorSpec) -> Result<TrustAnchors, ConfigError> {
    let mut anchors = TrustAnchors::new();
    for (index, text) in spec.sim_platform_keys.iter().enumerate() {
        let key = SimPlatformPublicKey::from_text(text)
            .map_err(|e| ConfigError::TrustAnchor { index, reason: e.to_string() })?;
        anchors = anchors.with_sim_platform_key(key);
    }
    for (tee, list) in &spec.roots {
        let tee = match tee.parse::<TeeKind>() {
            Ok(tee) if tee != TeeKind::Sim => tee,
            _ => {
                return Err(ConfigError::Root(format!(
                    "trust_anchors.roots names {tee:?}, not one of sgx, tdx, snp, csv, \
                     cca, virtcca, nitro, nvidia, psa, android (sim keys go in \
                     sim_platform_keys)"
                )));
            }
        };
        for text in list {
            refuse_secret_key(&format!("trust_anchors.roots.{tee}"), text)?;
            // A PEM file of certificates becomes one anchor per certificate.
            let blocks = match cloister_verify::x509::split_certificates(text.as_bytes()) {
                Ok(blocks) if text.contains("-----BEGIN CERTIFICATE-----") => blocks,
                _ => vec![text.clone().into_bytes()],
            };
            for block in blocks {
                anchors = anchors.with_root(tee, block);
            }
        }
    }
    for (name, list) in &spec.test_roots {
        let tee = name
            .parse::<TeeKind>()
            .ok()
            .filter(|tee| TrustAnchors::TEST_ROOT_TEES.contains(tee))
            .ok_or_else(|| {
                ConfigError::TestRoot(format!(
                    "trust_anchors.test_roots names {name:?}; test roots are taken for sgx, tdx, \
                     snp, nitro, android and psa only"
                ))
            })?;
        if tee == TeeKind::Psa {
            for (index, text) in list.iter().enumerate() {
                refuse_secret_key(&format!("trust_anchors.test_roots.psa[{index}]"), text)?;
                cloister_verify::check_key_anchor(text.as_bytes()).map_err(|e| {
                    ConfigError::TestRoot(format!(
                        "trust_anchors.test_roots.psa[{index}] is not an IAK public key (JWK, \
                         Veraison trust-anchor entry or PEM): {e}"
                    ))
                })?;
                if anchors.roots(tee).iter().any(|root| root == text.as_bytes()) {
                    return Err(ConfigError::TestRoot(format!(
                        "trust_anchors.test_roots.psa[{index}] is also listed under \
                         trust_anchors.roots.psa; a key is either a test root or not: remove it \
                         from one list"
                    )));
                }
                anchors = anchors.with_test_root(tee, text.clone().into_bytes());
            }
            continue;
        }
        for (index, text) in list.iter().enumerate() {
            let certs = Cert::parse_many(text.as_bytes()).map_err(|e| {
                ConfigError::TestRoot(format!(
                    "trust_anchors.test_roots.{name}[{index}] is not a PEM certificate: {e}"
                ))
            })?;
            for cert in certs {
                // A root is a test root or an ordinary one, never both: the claims say which
                // list the evidence's root came from.
                let fingerprint = cert.sha256_fingerprint();
                let also_root = anchors.roots(tee).iter().any(|root| {
                    Cert::parse_many(root)
                        .is_ok_and(|r| r.iter().any(|c| c.sha256_fingerprint() == fingerprint))
                });
                if also_root {
                    return Err(ConfigError::TestRoot(format!(
                        "trust_anchors.test_roots.{name}[{index}] ({}) is also listed under \
                         trust_anchors.roots.{name}; a root is either a test root or not: \
                         remove it from one list",
                        cert.subject_cn()
                    )));
                }
                anchors = anchors.with_test_root(tee, cert.der().to_vec());
            }
        }
    }
    Ok(anchors)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn hardware_roots_are_read_per_tee_and_pem_certificates_split() {
        let nitro = "-----BEGIN CERTIFICATE-----\nAAEC\n-----END CERTIFICATE-----\n\
                     -----BEGIN CERTIFICATE-----\nAwQF\n-----END CERTIFICATE-----\n";
        let spec = TrustAnchorSpec {
            sim_platform_keys: Vec::new(),
            roots: BTreeMap::from([
                ("cca".to_owned(), vec![r#"{"kty":"EC","crv":"P-384","x":"AA","y":"AA"}"#.into()]),
                ("nitro".to_owned(), vec![nitro.to_owned()]),
            ]),
            test_roots: BTreeMap::new(),
        };
        let anchors = trust_anchors(&spec).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(anchors.roots(TeeKind::Cca).len(), 1);
        assert_eq!(anchors.roots(TeeKind::Nitro), &[vec![0, 1, 2], vec![3, 4, 5]]);
        assert!(anchors.roots(TeeKind::Snp).is_empty());
    }

    #[test]
    fn roots_for_unknown_tees_or_sim_are_refused() {
        for tee in ["tpm", "sim"] {
            let spec = TrustAnchorSpec {
                sim_platform_keys: Vec::new(),
                roots: BTreeMap::from([(tee.to_owned(), vec!["k".to_owned()])]),
                test_roots: BTreeMap::new(),
            };
            let err = trust_anchors(&spec).err().unwrap_or_else(|| panic!("{tee}"));
            assert!(matches!(err, ConfigError::Root(_)), "{err}");
        }
    }

    fn self_signed_pem(name: &str) -> String {
        let key = rcgen::KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
        let mut params =
            rcgen::CertificateParams::new(Vec::<String>::new()).unwrap_or_else(|e| panic!("{e}"));
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).unwrap_or_else(|e| panic!("{e}")).pem()
    }

    fn test_roots(list: &[(&str, String)]) -> TrustAnchorSpec {
        TrustAnchorSpec {
            test_roots: list
                .iter()
                .map(|(tee, pem)| ((*tee).to_owned(), vec![pem.clone()]))
                .collect(),
            ..TrustAnchorSpec::default()
        }
    }

    #[test]
    fn a_symmetric_key_is_never_a_stored_trust_anchor() {
        let oct = r#"{"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA"}"#;
        let wrapped = format!(r#"[{{"pkey": {oct}, "instance-id": "01"}}]"#);
        for text in [oct.to_owned(), wrapped] {
            let spec = TrustAnchorSpec {
                roots: [("psa".to_owned(), vec![text.clone()])].into_iter().collect(),
                ..TrustAnchorSpec::default()
            };
            let err = trust_anchors(&spec).err().unwrap_or_else(|| panic!("accepted {text}"));
            assert!(err.to_string().contains("holds a symmetric key"), "{err}");
            let err = trust_anchors(&test_roots(&[("psa", text.clone())])).err();
            let err = err.unwrap_or_else(|| panic!("accepted {text}")).to_string();
            assert!(err.contains("holds a symmetric key"), "{err}");
        }
    }

    #[test]
    fn psa_test_roots_are_iak_public_keys() {
        let mut jwk = cloister_sign::SigningKey::generate().public_key().to_jwk("iak");
        if let Some(fields) = jwk.as_object_mut() {
            fields.retain(|name, _| ["kty", "crv", "x", "y"].contains(&name.as_str()));
        }
        let jwk = jwk.to_string();
        let anchors =
            trust_anchors(&test_roots(&[("psa", jwk.clone())])).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(anchors.test_roots(TeeKind::Psa), &[jwk.clone().into_bytes()]);
        let err = trust_anchors(&test_roots(&[("psa", "not a key".to_owned())])).err();
        let err = err.unwrap_or_else(|| panic!("accepted")).to_string();
        assert!(err.contains("test_roots.psa[0] is not an IAK public key"), "{err}");
        let mut both = test_roots(&[("psa", jwk.clone())]);
        both.roots.insert("psa".to_owned(), vec![jwk]);
        let err = trust_anchors(&both).err().unwrap_or_else(|| panic!("accepted")).to_string();
        assert!(err.contains("either a test root or not"), "{err}");
    }

    #[test]
    fn test_roots_are_read_per_tee_apart_from_the_roots() {
        let pem = self_signed_pem("test root");
        let anchors = trust_anchors(&test_roots(&[("tdx", pem.clone()), ("nitro", pem)]))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(anchors.test_roots(TeeKind::Tdx).len(), 1);
        assert_eq!(anchors.test_roots(TeeKind::Nitro).len(), 1);
        assert!(anchors.test_roots(TeeKind::Snp).is_empty());
        assert!(anchors.roots(TeeKind::Tdx).is_empty());
    }

    #[test]
    fn test_roots_are_refused_for_other_tees_unreadable_or_also_ordinary_roots() {
        let pem = self_signed_pem("test root");
        for tee in ["sim", "cca", "csv", "nvidia", "tpm"] {
            let err = trust_anchors(&test_roots(&[(tee, pem.clone())])).err();
            let err = err.unwrap_or_else(|| panic!("{tee} accepted")).to_string();
            assert!(err.contains("sgx, tdx, snp, nitro, android and psa only"), "{err}");
        }
        let err = trust_anchors(&test_roots(&[("snp", "not a certificate".to_owned())])).err();
        let err = err.unwrap_or_else(|| panic!("accepted")).to_string();
        assert!(err.contains("test_roots.snp[0] is not a PEM certificate"), "{err}");
        let mut both = test_roots(&[("tdx", pem.clone())]);
        both.roots.insert("tdx".to_owned(), vec![pem.clone()]);
        let err = trust_anchors(&both).err().unwrap_or_else(|| panic!("accepted")).to_string();
        assert!(err.contains("also listed under trust_anchors.roots.tdx"), "{err}");
        // The same root for another TEE is no conflict.
        let mut other = test_roots(&[("tdx", pem.clone())]);
        other.roots.insert("sgx".to_owned(), vec![pem]);
        trust_anchors(&other).unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn specs_without_test_roots_serialize_as_before() {
        let spec = TrustAnchorSpec::default();
        let json = serde_json::to_string(&spec).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(json, r#"{"sim_platform_keys":[],"roots":{}}"#);
        let back: TrustAnchorSpec = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, spec);
    }

    #[test]
    fn an_unreadable_sim_key_is_named_by_position() {
        let spec = TrustAnchorSpec {
            sim_platform_keys: vec!["cloister-sim-platform-p256:nonsense".into()],
            roots: BTreeMap::new(),
            test_roots: BTreeMap::new(),
        };
        let err = trust_anchors(&spec).err().unwrap_or_else(|| panic!("accepted"));
        assert!(matches!(err, ConfigError::TrustAnchor { index: 0, .. }), "{err}");
    }
}
