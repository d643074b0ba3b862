//! The instance configuration file (TOML).
//!
//! ```toml
//! name = "demo"
//! policy = "dev-sim"            # "default", "dev-sim", or a path in policy_file
//! # policy_file = "my.rego"     # read by the binary, not by this crate
//! token_ttl_secs = 3600
//! cert_ttl_secs = 3600
//! nonce_ttl_secs = 120
//!
//! [reference_values]
//! measurements = ["<sha384 hex>"]
//!
//! [trust_anchors]
//! sim_platform_keys = ["cloister-sim-platform-p256:..."]
//!
//! # Extra roots per TEE, as text (PEM certificate, PEM public key, or JWK JSON), on top of
//! # the vendor roots the verifiers pin. Arm CCA has no vendor root: list the CPAKs here.
//! [trust_anchors.roots]
//! cca = ["""{"kty":"EC","crv":"P-384","x":"...","y":"..."}"""]
//! ```

use std::time::Duration;

use cloister_policy::AppraisalPolicy;
use cloister_types::TeeKind;
pub use cloister_types::manage::TrustAnchorSpec;
use cloister_verify::{SimPlatformPublicKey, TrustAnchors};
use serde::Deserialize;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The TOML does not parse or has unknown fields.
    #[error("the instance configuration is not valid: {0}")]
    Parse(#[from] toml::de::Error),
    /// The policy name is unknown or its Rego does not compile.
    #[error("the appraisal policy is not usable: {0}")]
    Policy(String),
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    name: String,
    #[serde(default = "default_policy")]
    policy: String,
    #[serde(default)]
    policy_rego: Option<String>,
    #[serde(default = "hour")]
    token_ttl_secs: u64,
    #[serde(default = "hour")]
    cert_ttl_secs: u64,
    #[serde(default = "two_minutes")]
    nonce_ttl_secs: u64,
    #[serde(default)]
    reference_values: toml::Table,
    #[serde(default)]
    trust_anchors: TrustAnchorSpec,
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
                    "[trust_anchors.roots] names {tee:?}, not one of sgx, tdx, snp, csv, \
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

fn default_policy() -> String {
    "default".to_owned()
}

fn hour() -> u64 {
    3600
}

fn two_minutes() -> u64 {
    120
}

/// A parsed, checked instance configuration.
pub struct InstanceConfig {
    /// Instance name.
    pub name: String,
    /// The appraisal policy.
    pub policy: AppraisalPolicy,
    /// Reference values handed to the policy.
    pub reference_values: serde_json::Value,
    /// Trust anchors handed to the verifiers.
    pub trust_anchors: TrustAnchors,
    /// Lifetime of EAR tokens.
    pub token_ttl: Duration,
    /// Lifetime of enclave certificates.
    pub cert_ttl: Duration,
    /// Lifetime of challenges.
    pub nonce_ttl: Duration,
}

impl InstanceConfig {
    /// Parses TOML. The policy is `policy = "default" | "dev-sim" | "custom"`; `custom` takes the
    /// Rego text from `policy_rego` (the binary fills it from `policy_file`).
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text)?;
        let policy = match (raw.policy.as_str(), raw.policy_rego) {
            ("default", None) => AppraisalPolicy::production_default(),
            ("dev-sim", None) => AppraisalPolicy::development_sim(),
            ("custom", Some(rego)) => AppraisalPolicy::new("custom", 1, &rego)
                .map_err(|e| ConfigError::Policy(e.to_string()))?,
            (other, _) => {
                return Err(ConfigError::Policy(format!(
                    "unknown policy {other:?} (use \"default\", \"dev-sim\", or \"custom\" with policy_rego)"
                )));
            }
        };
        let anchors = trust_anchors(&raw.trust_anchors)?;
        let reference_values = serde_json::to_value(raw.reference_values)
            .map_err(|e| ConfigError::Policy(format!("reference values are not JSON: {e}")))?;
        Ok(InstanceConfig {
            name: raw.name,
            policy,
            reference_values,
            trust_anchors: anchors,
            token_ttl: Duration::from_secs(raw.token_ttl_secs),
            cert_ttl: Duration::from_secs(raw.cert_ttl_secs),
            nonce_ttl: Duration::from_secs(raw.nonce_ttl_secs),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hardware_roots_are_read_per_tee_and_pem_certificates_split() {
        let text = r#"
name = "roots"
[trust_anchors.roots]
cca = ['{"kty":"EC","crv":"P-384","x":"AA","y":"AA"}']
nitro = ["""
-----BEGIN CERTIFICATE-----
AAEC
-----END CERTIFICATE-----
-----BEGIN CERTIFICATE-----
AwQF
-----END CERTIFICATE-----
"""]
"#;
        let config = InstanceConfig::from_toml(text).unwrap_or_else(|e| panic!("{e}"));
        let anchors = &config.trust_anchors;
        assert_eq!(anchors.roots(TeeKind::Cca).len(), 1);
        assert_eq!(anchors.roots(TeeKind::Nitro), &[vec![0, 1, 2], vec![3, 4, 5]]);
        assert!(anchors.roots(TeeKind::Snp).is_empty());
    }

    #[test]
    fn roots_for_unknown_tees_or_sim_are_refused() {
        for tee in ["tpm", "sim"] {
            let text = format!("name = \"x\"\n[trust_anchors.roots]\n{tee} = [\"k\"]\n");
            let err = InstanceConfig::from_toml(&text).err().unwrap_or_else(|| panic!("{tee}"));
            assert!(matches!(err, ConfigError::Root(_)), "{err}");
        }
    }
}
