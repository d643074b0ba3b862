//! The model repository's records: what a model is (format, architecture, schema), the manifest
//! its owner signs, and the serving policy that says who may query it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::canonical::{CanonicalJsonError, canonical_json};
use crate::encoding::Hex;

/// How a model's weights are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelFormat {
    /// One ONNX file.
    Onnx,
    /// One GGUF file (llama.cpp's format: quantized weights, tokenizer and chat template).
    Gguf,
    /// A directory of safetensors files with `config.json` and a tokenizer (Hugging Face layout).
    Safetensors,
}

impl ModelFormat {
    /// The name used on the command line and in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelFormat::Onnx => "onnx",
            ModelFormat::Gguf => "gguf",
            ModelFormat::Safetensors => "safetensors",
        }
    }
}

impl std::fmt::Display for ModelFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the model does, as far as serving is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelTask {
    /// A causal language model: chat completions.
    TextGeneration,
    /// A sentence encoder: embeddings.
    Embedding,
    /// Anything else: tensors in, tensors out (`/v1/infer`).
    Tensor,
}

/// One named tensor of a model's interface.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorSpec {
    /// The tensor's name in the graph.
    pub name: String,
    /// Element type as ONNX names it (`float32`, `int64`, …).
    pub dtype: String,
    /// Dimensions; `None` for a symbolic or unknown dimension (the batch, usually).
    pub shape: Vec<Option<u64>>,
}

/// What `cloister model import` reads out of a model's files.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelMetadata {
    /// The file format.
    pub format: ModelFormat,
    /// What serving it means.
    pub task: ModelTask,
    /// The architecture (`llama`, `bert`, or the ONNX producer and graph name).
    pub architecture: String,
    /// Number of parameters (elements of every weight tensor).
    pub parameter_count: u64,
    /// Graph inputs (ONNX).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<TensorSpec>,
    /// Graph outputs (ONNX).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<TensorSpec>,
    /// Context length in tokens (language models and encoders).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_length: Option<u64>,
    /// Vocabulary size (language models and encoders).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vocab_size: Option<u64>,
    /// Width of the hidden state (the embedding dimension of an encoder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden_size: Option<u64>,
    /// The chat template (Jinja), when the model ships one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_template: Option<String>,
    /// Anything else worth showing (quantization, ONNX opset, producer), as text.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, String>,
}

impl ModelMetadata {
    /// Metadata that names only the format, the task and the architecture (no parameter count,
    /// no tensors, no details): for models built in code rather than inspected from files.
    pub fn named(format: ModelFormat, task: ModelTask, architecture: &str) -> Self {
        ModelMetadata {
            format,
            task,
            architecture: architecture.to_owned(),
            parameter_count: 0,
            inputs: Vec::new(),
            outputs: Vec::new(),
            context_length: None,
            vocab_size: None,
            hidden_size: None,
            chat_template: None,
            details: BTreeMap::new(),
        }
    }
}

/// One file of a model: its path in the model (`model.gguf`, `config.json`, …), its plaintext
/// digest and size, and the sealed object that holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelFile {
    /// The file's relative path inside the model (forward slashes, no `..`).
    pub path: String,
    /// SHA-256 of the plaintext bytes.
    pub sha256: Hex,
    /// Plaintext size in bytes.
    pub size: u64,
    /// SHA-256 of the sealed object stored in the repository.
    pub sealed_sha256: Hex,
}

/// What the owner allows a holder of the weights to do with them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LicenceTerms {
    /// The licence's name (SPDX id or free text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub licence: Option<String>,
    /// Weights never leave an enclave in plaintext, not even to their recipients.
    pub no_weight_export: bool,
    /// Further terms in plain words.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub terms: Vec<String>,
}

/// The record the model owner signs (a compact JWS, `what = "model manifest"`): name, version,
/// digest, metadata and terms. Immutable: a version once imported never changes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelManifest {
    /// The model's name (lowercase letters, digits, `-`, `_`, `.`).
    pub name: String,
    /// Its version (same alphabet).
    pub version: String,
    /// [`ModelManifest::files_digest`] of `files`: the model's identity.
    pub digest: Hex,
    /// Every file, sorted by path.
    pub files: Vec<ModelFile>,
    /// What was read from the files.
    pub metadata: ModelMetadata,
    /// The owner's terms.
    pub licence: LicenceTerms,
    /// The owner's party public key (text form); the manifest is signed with it.
    pub owner: String,
    /// The key-broker recipient the weights are sealed to (`cloister-broker:kb_…:…`).
    pub sealed_to: String,
}

impl ModelManifest {
    /// The model digest over a file list: SHA-256 of the canonical JSON of
    /// `[{path, sha256, size}]`, sorted by path. For a one-file model it still names the path, so
    /// renaming a file changes the digest.
    pub fn files_digest(files: &[ModelFile]) -> Result<Hex, CanonicalJsonError> {
        #[derive(Serialize)]
        struct Entry<'a> {
            path: &'a str,
            sha256: &'a Hex,
            size: u64,
        }
        let mut entries: Vec<Entry<'_>> = files
            .iter()
            .map(|f| Entry { path: &f.path, sha256: &f.sha256, size: f.size })
            .collect();
        entries.sort_by(|a, b| a.path.cmp(b.path));
        Ok(Hex(Sha256::digest(canonical_json(&entries)?).to_vec()))
    }

    /// The id clients use for this model version: `name@version`.
    pub fn model_id(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

/// Checks a model or version name: 1–64 characters of `a-z 0-9 - _ .`, not starting with `.`.
pub fn check_model_name(what: &'static str, name: &str) -> Result<(), BadModelName> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
    if ok { Ok(()) } else { Err(BadModelName { what, name: name.to_owned() }) }
}

/// A model or version name outside the allowed alphabet.
#[derive(Debug, thiserror::Error)]
#[error(
    "{what} {name:?} is not allowed: use 1-64 characters of a-z, 0-9, '-', '_' and '.', not \
     starting with '.'"
)]
pub struct BadModelName {
    /// "model name" or "model version".
    pub what: &'static str,
    /// The name given.
    pub name: String,
}

/// The serving policy schema this build reads and writes: policies name it in `schema`; a policy
/// without the field was signed before it existed and is version 1.
pub const SERVING_POLICY_SCHEMA: u32 = 1;

/// The model owner's serving policy (signed as a compact JWS, `what = "serving policy"`): which
/// requesters may query which versions of one model, and how much.
///
/// A field this build does not know is refused, not ignored (it could be a restriction), and so
/// is a `schema` newer than [`SERVING_POLICY_SCHEMA`]: see [`ServingPolicy::check_schema`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServingPolicy {
    /// The schema version the policy was written in; absent in policies signed before the field
    /// existed, which are version 1 (and is then not written, so they verify unchanged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<u32>,
    /// The model's name.
    pub model: String,
    /// Versions this policy covers; empty means none.
    pub versions: Vec<String>,
    /// Who may query, each with its own limits.
    pub requesters: Vec<RequesterLimits>,
    /// Which engine runs an ONNX model; absent means [`OnnxEngine::Auto`] (and is not written,
    /// so a policy signed before this field existed verifies unchanged). Ignored for other
    /// formats.
    #[serde(default, skip_serializing_if = "OnnxEngine::is_auto")]
    pub engine: OnnxEngine,
    /// Whether the linear layers of an ONNX model may run on an untrusted accelerator that
    /// then sees its weights; absent means [`OffloadPolicy::Never`] (and is not written, so a
    /// policy signed before this field existed verifies unchanged). Ignored for other formats.
    #[serde(default, skip_serializing_if = "OffloadPolicy::is_never")]
    pub offload: OffloadPolicy,
}

/// The model owner's word on hybrid execution (`docs/offload.md`): may the products of an ONNX
/// model's linear layers (Gemm, MatMul) be sent, blinded and verified, to an untrusted
/// accelerator — which sees the weights in the clear?
///
/// Written as `{"weights": "never"}` (the default, never written) or
/// `{"weights": "public", "on_failure": "fail" | "enclave", "timeout_ms": 5000}`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "weights", rename_all = "lowercase", deny_unknown_fields)]
pub enum OffloadPolicy {
    /// Every layer runs inside the enclave.
    #[default]
    Never,
    /// The weights may be shown to the accelerator: linear layers are offloaded when the worker
    /// was started with one (deploying fails on a worker without).
    Public {
        /// What a request does when the accelerator fails, is late or its answer fails a check.
        on_failure: OffloadFallback,
        /// How long the accelerator has to answer one product, in milliseconds (1–600,000).
        #[serde(default = "default_offload_timeout_ms")]
        timeout_ms: u64,
    },
}

/// What a request does when an offloaded product fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OffloadFallback {
    /// The request fails (the unchecked answer is discarded).
    Fail,
    /// The layer is computed inside the enclave instead (the answer is discarded all the same).
    Enclave,
}

/// The accelerator's deadline when a policy names none: 5 seconds.
pub const DEFAULT_OFFLOAD_TIMEOUT_MS: u64 = 5_000;

/// The longest deadline a policy may set: 10 minutes.
pub const MAX_OFFLOAD_TIMEOUT_MS: u64 = 600_000;

fn default_offload_timeout_ms() -> u64 {
    DEFAULT_OFFLOAD_TIMEOUT_MS
}

impl ServingPolicy {
    /// The schema version: `schema`, or 1 when absent.
    pub fn schema_version(&self) -> u32 {
        self.schema.unwrap_or(1)
    }

    /// Refuses a policy written in a schema this build does not know (0, or newer than
    /// [`SERVING_POLICY_SCHEMA`]): its fields could mean something this build would not enforce.
    pub fn check_schema(&self) -> Result<(), UnsupportedServingPolicy> {
        match self.schema_version() {
            1..=SERVING_POLICY_SCHEMA => Ok(()),
            found => Err(UnsupportedServingPolicy { found }),
        }
    }
}

/// A serving policy in a schema version this build does not know.
#[derive(Debug, thiserror::Error)]
#[error(
    "the serving policy is written in schema version {found}, but this build of Cloister reads \
     versions 1 to {SERVING_POLICY_SCHEMA} only: upgrade it, or have the model owner sign the \
     policy in a version it reads"
)]
pub struct UnsupportedServingPolicy {
    /// The version the policy names.
    pub found: u32,
}

impl OffloadPolicy {
    /// `true` for [`OffloadPolicy::Never`].
    pub fn is_never(&self) -> bool {
        *self == OffloadPolicy::Never
    }
}

/// The engine that runs an ONNX model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnnxEngine {
    /// onnxruntime when the worker has loaded its pinned library, else tract.
    #[default]
    Auto,
    /// onnxruntime only: loading fails when the library is not loaded.
    Ort,
    /// tract, the pure-Rust engine.
    Tract,
}

impl OnnxEngine {
    /// `true` for [`OnnxEngine::Auto`].
    pub fn is_auto(&self) -> bool {
        *self == OnnxEngine::Auto
    }

    /// The name used in policies and on the command line: `auto`, `ort` or `tract`.
    pub fn as_str(self) -> &'static str {
        match self {
            OnnxEngine::Auto => "auto",
            OnnxEngine::Ort => "ort",
            OnnxEngine::Tract => "tract",
        }
    }
}

impl std::str::FromStr for OnnxEngine {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(OnnxEngine::Auto),
            "ort" => Ok(OnnxEngine::Ort),
            "tract" => Ok(OnnxEngine::Tract),
            other => Err(format!("unknown ONNX engine {other:?}: use auto, ort or tract")),
        }
    }
}

/// One requester's allowance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequesterLimits {
    /// The requester's party public key (text form), which signs each request.
    pub requester: String,
    /// Requests per minute (token bucket refilled continuously).
    pub requests_per_minute: u32,
    /// Total generated or embedded tokens this requester may consume; `None` = unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_quota: Option<u64>,
}

/// `POST /v1/serving/models` on the worker: load one model version from the repository and serve
/// it under its owner's serving policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployModel {
    /// The manifest as stored in the repository (compact JWS).
    pub manifest: String,
    /// The model owner's party public key (text form): the manifest and the policy must verify
    /// with it.
    pub owner: String,
    /// The owner's [`ServingPolicy`] (compact JWS, `what = "serving policy"`).
    pub serving_policy: String,
}

/// What the worker answers once a model is loaded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployedModel {
    /// `name@version`.
    pub model: String,
    /// The model digest the worker checked.
    pub digest: Hex,
    /// What it serves.
    pub task: ModelTask,
    /// The inner API route that serves it.
    pub endpoint: String,
}

/// One deployment as `GET /v1/serving/models` lists it: public facts only (what is served, for
/// whom it was deployed, until when its policy holds).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    /// `name@version`.
    pub model: String,
    /// The model digest the worker checked.
    pub digest: Hex,
    /// What it serves.
    pub task: ModelTask,
    /// The inner API route that serves it.
    pub endpoint: String,
    /// The model owner's party public key (text form) that signed the manifest and the policy;
    /// only it may undeploy the model.
    pub owner: String,
    /// SHA-256 of the serving policy's compact JWS: what an undeploy request names.
    pub serving_policy_sha256: Hex,
    /// The serving policy's schema version.
    pub serving_policy_schema: u32,
    /// Unix seconds the serving policy expires.
    pub policy_expires_at: u64,
    /// Unix seconds the model was loaded (by this process: a restored model counts from the
    /// restart).
    pub deployed_at: u64,
    /// Whether it was restored at the worker's start from an earlier deployment request.
    pub restored: bool,
}

/// `POST /v1/serving/models/{model}/undeploy`: the model owner's signed request to stop serving
/// one deployment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UndeployModel {
    /// An [`UndeployStatement`] as a compact JWS (`what = "model undeploy"`), signed by the key
    /// the deployment names as owner.
    pub request: String,
}

/// What the owner signs to undeploy a model: the deployment exactly (model, digest, the policy
/// it serves under), so a captured request cannot undeploy a later deployment of the same model
/// under another policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UndeployStatement {
    /// `name@version`.
    pub model: String,
    /// The deployed model's digest.
    pub digest: Hex,
    /// SHA-256 of the serving policy JWS the deployment serves under.
    pub serving_policy_sha256: Hex,
}

/// The longest validity a worker accepts on an undeploy request: 10 minutes.
pub const MAX_UNDEPLOY_VALIDITY_SECS: u64 = 600;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serving_policy_schema_is_versioned_and_unknown_fields_are_refused() {
        // Signed before the field existed: version 1, written back byte for byte.
        let old = r#"{"model":"m","versions":["1"],"requesters":[]}"#;
        let policy: ServingPolicy = serde_json::from_str(old).unwrap();
        assert_eq!((policy.schema, policy.schema_version()), (None, 1));
        assert!(policy.check_schema().is_ok());
        assert_eq!(serde_json::to_string(&policy).unwrap(), old);
        let current = r#"{"schema":1,"model":"m","versions":["1"],"requesters":[]}"#;
        let policy: ServingPolicy = serde_json::from_str(current).unwrap();
        assert!(policy.check_schema().is_ok());
        assert_eq!(serde_json::to_string(&policy).unwrap(), current);
        for unknown in [0, SERVING_POLICY_SCHEMA + 1, u32::MAX] {
            let policy = ServingPolicy { schema: Some(unknown), ..policy.clone() };
            let err = policy.check_schema().unwrap_err();
            assert_eq!(err.found, unknown);
            assert!(err.to_string().contains(&format!("schema version {unknown}")), "{err}");
        }
        // A field this build does not know could be a restriction: refused, not ignored.
        for refused in [
            r#"{"model":"m","versions":[],"requesters":[],"export":"never"}"#,
            r#"{"model":"m","versions":[],"requesters":[{"requester":"k","requests_per_minute":1,"burst":2}]}"#,
        ] {
            assert!(serde_json::from_str::<ServingPolicy>(refused).is_err(), "{refused}");
        }
    }

    #[test]
    fn serving_policy_engine_defaults_to_auto_and_is_not_written_when_auto() {
        let old = r#"{"model":"m","versions":["1"],"requesters":[]}"#;
        let policy: ServingPolicy = serde_json::from_str(old).unwrap();
        assert_eq!(policy.engine, OnnxEngine::Auto);
        // Written back byte for byte: a policy signed before the field existed is unchanged.
        assert_eq!(serde_json::to_string(&policy).unwrap(), old);
        for engine in [OnnxEngine::Ort, OnnxEngine::Tract] {
            let pinned = ServingPolicy { engine, ..policy.clone() };
            let text = serde_json::to_string(&pinned).unwrap();
            assert!(text.contains(&format!(r#""engine":"{}""#, engine.as_str())), "{text}");
            assert_eq!(serde_json::from_str::<ServingPolicy>(&text).unwrap(), pinned);
            assert_eq!(engine.as_str().parse::<OnnxEngine>().unwrap(), engine);
        }
        assert!("cuda".parse::<OnnxEngine>().is_err());
        let unknown = r#"{"model":"m","versions":[],"requesters":[],"engine":"cuda"}"#;
        assert!(serde_json::from_str::<ServingPolicy>(unknown).is_err());
    }

    #[test]
    fn serving_policy_offload_defaults_to_never_and_is_not_written_when_never() {
        let old = r#"{"model":"m","versions":["1"],"requesters":[],"engine":"tract"}"#;
        let policy: ServingPolicy = serde_json::from_str(old).unwrap();
        assert_eq!(policy.offload, OffloadPolicy::Never);
        // Byte for byte: a policy signed before the field existed verifies unchanged.
        assert_eq!(serde_json::to_string(&policy).unwrap(), old);
        let never = r#"{"model":"m","versions":[],"requesters":[],"offload":{"weights":"never"}}"#;
        let parsed: ServingPolicy = serde_json::from_str(never).unwrap();
        assert!(parsed.offload.is_never());
        assert!(!serde_json::to_string(&parsed).unwrap().contains("offload"));

        let public = r#"{"model":"m","versions":[],"requesters":[],"offload":{"weights":"public","on_failure":"enclave","timeout_ms":250}}"#;
        let parsed: ServingPolicy = serde_json::from_str(public).unwrap();
        assert_eq!(
            parsed.offload,
            OffloadPolicy::Public { on_failure: OffloadFallback::Enclave, timeout_ms: 250 }
        );
        assert_eq!(serde_json::to_string(&parsed).unwrap(), public);
        // The timeout has a default; the fallback must be chosen.
        let default_timeout = r#"{"weights":"public","on_failure":"fail"}"#;
        assert_eq!(
            serde_json::from_str::<OffloadPolicy>(default_timeout).unwrap(),
            OffloadPolicy::Public {
                on_failure: OffloadFallback::Fail,
                timeout_ms: DEFAULT_OFFLOAD_TIMEOUT_MS
            }
        );
        for refused in [
            r#"{"weights":"public"}"#,
            r#"{"weights":"public","on_failure":"retry"}"#,
            r#"{"weights":"secret","on_failure":"fail"}"#,
            r#"{"weights":"public","on_failure":"fail","timeout":5}"#,
            r#"{"on_failure":"fail"}"#,
            r#""public-weights""#,
        ] {
            assert!(serde_json::from_str::<OffloadPolicy>(refused).is_err(), "{refused}");
        }
    }
}
