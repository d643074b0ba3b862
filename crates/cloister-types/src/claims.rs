//! Normalised claims: what a verifier says about evidence, in names common to every TEE.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::encoding::Hex;

/// The kind of trusted execution environment that produced evidence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum TeeKind {
    /// Android key attestation (KeyMint/Keymaster in TrustZone or StrongBox): attests a key.
    Android,
    /// Arm Confidential Compute Architecture realm.
    Cca,
    /// Hygon China Secure Virtualization.
    Csv,
    /// AWS Nitro Enclaves.
    Nitro,
    /// NVIDIA Hopper confidential-computing GPU.
    Nvidia,
    /// Arm Platform Security Architecture (TrustZone, TF-M/OP-TEE): attests a device's secure
    /// world.
    Psa,
    /// Intel SGX enclave.
    Sgx,
    /// The simulated TEE: development only, never trustworthy.
    Sim,
    /// AMD SEV-SNP confidential VM.
    Snp,
    /// Intel TDX trust domain.
    Tdx,
    /// Huawei Kunpeng virtCCA confidential VM (CCA-style realm tokens).
    #[serde(rename = "virtcca")]
    VirtCca,
}

/// What a verified result of a TEE proves, and so what it may be used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attests {
    /// Code running isolated from the host: may hold released keys and enclave certificates.
    IsolatedCompute,
    /// An accelerator attached to isolated compute (evidence beside a CPU TEE's, never alone).
    Accelerator,
    /// The state of a device's secure world or a key it holds: may admit a device (a data
    /// provider's gateway, a phone), but never receives a released key or an enclave
    /// certificate.
    DeviceKey,
}

impl TeeKind {
    /// Every TEE kind, the simulated one included.
    pub const ALL: [TeeKind; 11] = [
        TeeKind::Android,
        TeeKind::Cca,
        TeeKind::Csv,
        TeeKind::Nitro,
        TeeKind::Nvidia,
        TeeKind::Psa,
        TeeKind::Sgx,
        TeeKind::Sim,
        TeeKind::Snp,
        TeeKind::Tdx,
        TeeKind::VirtCca,
    ];

    /// What a verified result of this TEE proves ([`Attests`]).
    pub fn attests(self) -> Attests {
        match self {
            TeeKind::Cca
            | TeeKind::Csv
            | TeeKind::Nitro
            | TeeKind::Sgx
            | TeeKind::Sim
            | TeeKind::Snp
            | TeeKind::Tdx
            | TeeKind::VirtCca => Attests::IsolatedCompute,
            TeeKind::Nvidia => Attests::Accelerator,
            TeeKind::Android | TeeKind::Psa => Attests::DeviceKey,
        }
    }

    /// The lowercase name used on the wire and in policies.
    pub fn as_str(self) -> &'static str {
        match self {
            TeeKind::Android => "android",
            TeeKind::Cca => "cca",
            TeeKind::Csv => "csv",
            TeeKind::Nitro => "nitro",
            TeeKind::Nvidia => "nvidia",
            TeeKind::Psa => "psa",
            TeeKind::Sgx => "sgx",
            TeeKind::Sim => "sim",
            TeeKind::Snp => "snp",
            TeeKind::Tdx => "tdx",
            TeeKind::VirtCca => "virtcca",
        }
    }
}

/// Why a result may not act as an enclave ([`Claims::check_enclave`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}; keys, certificates, job records and ledger charges are for enclaves only")]
pub struct NotAnEnclave(pub String);

/// A text that is not a TEE name.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a TEE (sgx, tdx, snp, csv, cca, virtcca, nitro, nvidia, psa, android, sim)")]
pub struct UnknownTee(pub String);

impl std::str::FromStr for TeeKind {
    type Err = UnknownTee;

    /// Parses the lowercase wire name ([`TeeKind::as_str`]).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(match text {
            "android" => TeeKind::Android,
            "cca" => TeeKind::Cca,
            "csv" => TeeKind::Csv,
            "nitro" => TeeKind::Nitro,
            "nvidia" => TeeKind::Nvidia,
            "psa" => TeeKind::Psa,
            "sgx" => TeeKind::Sgx,
            "sim" => TeeKind::Sim,
            "snp" => TeeKind::Snp,
            "tdx" => TeeKind::Tdx,
            "virtcca" => TeeKind::VirtCca,
            other => return Err(UnknownTee(other.to_owned())),
        })
    }
}

impl fmt::Display for TeeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The TCB (trusted computing base) status a vendor's collateral assigns to the platform.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum TcbStatus {
    /// Fully patched.
    UpToDate,
    /// Patched, but software mitigations are needed.
    SWHardeningNeeded,
    /// Patched, but the platform configuration needs changes.
    ConfigurationNeeded,
    /// Both of the above.
    ConfigurationAndSWHardeningNeeded,
    /// Missing security updates.
    OutOfDate,
    /// Missing updates and needs configuration changes.
    OutOfDateConfigurationNeeded,
    /// The platform's keys have been revoked.
    Revoked,
    /// No collateral was available to judge the TCB; signatures were still checked.
    #[serde(rename = "unknown")]
    Unknown,
    /// The simulated TEE has no TCB at all.
    #[serde(rename = "simulated")]
    Simulated,
}

/// Claims about one piece of verified evidence, in common names plus the vendor's own fields.
///
/// Only a verifier builds these from evidence; everything downstream (policy, certificates, key
/// release) reads them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Which TEE produced the evidence.
    pub tee: TeeKind,
    /// The launch measurement of the code (MRENCLAVE, MRTD, SNP measurement, PCR0, …).
    pub measurement: Hex,
    /// The identity of whoever signed the code, where the TEE has one (MRSIGNER, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<Hex>,
    /// The product identifier, where the TEE has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_id: Option<u64>,
    /// The security version number of the code, where the TEE has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub svn: Option<u64>,
    /// Whether the TEE runs in debug mode (its memory is then readable by the host).
    pub debug: bool,
    /// The 64 bytes the attester bound into the evidence.
    pub report_data: Hex,
    /// The platform's TCB status.
    pub tcb_status: TcbStatus,
    /// Security advisories that apply to the platform's TCB.
    #[serde(default)]
    pub advisories: Vec<String>,
    /// A stable identifier of the platform, where the TEE has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_id: Option<Hex>,
    /// The vendor's raw fields, under the TEE's name (for example `{"sim": {...}}`).
    #[serde(flatten)]
    pub vendor: BTreeMap<String, serde_json::Value>,
}

impl Claims {
    /// Where the root the evidence's chain ends at came from, as the verifier says under the
    /// TEE's vendor fields (`trust_anchor`): `vendor` (a root the verifier pins), `instance` (one
    /// of the instance's roots) or `test` (one of its test roots). `None` for TEEs whose
    /// drivers do not say (sim, CCA, CSV, NVIDIA).
    pub fn trust_anchor(&self) -> Option<&str> {
        self.vendor.get(self.tee.as_str())?.get(TRUST_ANCHOR_FIELD)?.as_str()
    }

    /// Whether a result with these claims may act as an enclave: hold a released key or an
    /// enclave certificate, record jobs, charge the privacy ledger, reserve usage, receive an
    /// exported instance. Only TEEs that attest isolated compute ([`Attests::IsolatedCompute`])
    /// may, and a virtCCA result only when its platform was verified to a Huawei root
    /// (`virtcca.platform_verified`): the CVM token alone is signed by a key it carries itself.
    pub fn check_enclave(&self) -> Result<(), NotAnEnclave> {
        match self.tee.attests() {
            Attests::IsolatedCompute => {}
            Attests::DeviceKey => {
                return Err(NotAnEnclave(format!(
                    "the attestation result is {} evidence, which attests a device's key, not an \
                     enclave",
                    self.tee
                )));
            }
            Attests::Accelerator => {
                return Err(NotAnEnclave(format!(
                    "{} evidence attests an accelerator, never an enclave on its own",
                    self.tee
                )));
            }
        }
        let platform_verified = self
            .vendor
            .get(TeeKind::VirtCca.as_str())
            .and_then(|v| v.get("platform_verified"))
            .and_then(serde_json::Value::as_bool);
        if self.tee == TeeKind::VirtCca && platform_verified != Some(true) {
            return Err(NotAnEnclave(
                "the virtCCA platform is not verified to a Huawei root the instance lists, so \
                 nothing shows the CVM token came from Kunpeng hardware"
                    .to_owned(),
            ));
        }
        Ok(())
    }

    /// Whether the evidence verified under a test root the instance names: a development trust
    /// anchor like `sim`, never the vendor's word.
    pub fn under_test_root(&self) -> bool {
        self.trust_anchor() == Some(TEST_TRUST_ANCHOR)
    }
}

/// The vendor field that says where the evidence's root came from ([`Claims::trust_anchor`]).
pub const TRUST_ANCHOR_FIELD: &str = "trust_anchor";

/// The value of [`TRUST_ANCHOR_FIELD`] for a test root.
pub const TEST_TRUST_ANCHOR: &str = "test";
