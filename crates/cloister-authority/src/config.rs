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
//! ```

use cloister_types::TeeKind;
pub use cloister_types::manage::TrustAnchorSpec;
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
                     cca, nitro, nvidia (sim keys go in sim_platform_keys)"
                )));
            }
        };
        for text in list {
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
            };
            let err = trust_anchors(&spec).err().unwrap_or_else(|| panic!("{tee}"));
            assert!(matches!(err, ConfigError::Root(_)), "{err}");
        }
    }

    #[test]
    fn an_unreadable_sim_key_is_named_by_position() {
        let spec = TrustAnchorSpec {
            sim_platform_keys: vec!["cloister-sim-platform-p256:nonsense".into()],
            roots: BTreeMap::new(),
        };
        let err = trust_anchors(&spec).err().unwrap_or_else(|| panic!("accepted"));
        assert!(matches!(err, ConfigError::TrustAnchor { index: 0, .. }), "{err}");
    }
}
