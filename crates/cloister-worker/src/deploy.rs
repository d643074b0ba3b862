//! Deploying a model from the repository into the serving catalog: the manifest verified against
//! its owner's key, the weights' key released by the key broker to this enclave, every file
//! decrypted and checked against the manifest, the engine loaded. This runs before every load;
//! nothing is cached in plaintext outside this process.

use std::sync::Arc;

use cloister_repository::{RepoError, open_files, verify_manifest};
use cloister_sign::{VerifyingKey, unix_now};
use cloister_types::Hex;
use cloister_types::api::ReleaseContext;
use cloister_types::model::{
    DeployModel, Deployment, MAX_OFFLOAD_TIMEOUT_MS, ModelFormat, ModelTask, OffloadPolicy,
    ServingPolicy,
};

use crate::online::{CatalogError, Engine, LoadedModel};
use crate::server::Worker;
use cloister_engine::{
    Embedder, EngineError, HybridModel, LinearPlan, LlmModel, OnnxModel, OnnxOptions,
};

/// Why a model was not deployed. No variant carries plaintext.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeployError {
    /// The owner key is not a party public key.
    #[error("the model owner key is not a Cloister public key: {0}")]
    Owner(cloister_sign::SignError),
    /// The manifest, the repository or a file's integrity check failed.
    #[error(transparent)]
    Repository(#[from] RepoError),
    /// The key broker did not release the weights' key to this enclave.
    #[error("the key broker did not release the model's key to this enclave: {0}")]
    Release(String),
    /// The files do not make a model this worker can run.
    #[error("the model {model} cannot be loaded: {source}")]
    Engine {
        /// `name@version`.
        model: String,
        /// Why.
        source: EngineError,
    },
    /// The manifest's format and task do not go together.
    #[error("the model {model} is {format} for {task:?}, which this worker does not serve")]
    Unsupported {
        /// `name@version`.
        model: String,
        /// Its format.
        format: ModelFormat,
        /// Its task.
        task: ModelTask,
    },
    /// The serving policy or the catalog refused it.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The serving policy allows offloading but this worker was started without an
    /// accelerator (`--accelerator`), or it cannot be reached at that address.
    #[error(
        "the serving policy of {model} offloads its linear layers, but {reason}; start the \
         worker with --accelerator HOST:PORT (CLOISTER_ACCELERATOR) or deploy under a policy \
         without offload"
    )]
    NoAccelerator {
        /// `name@version`.
        model: String,
        /// Why there is none.
        reason: String,
    },
    /// The serving policy's offload settings are out of range.
    #[error("the serving policy of {model} is not usable: {reason}")]
    Policy {
        /// `name@version`.
        model: String,
        /// Why.
        reason: String,
    },
    /// A task panicked.
    #[error("the worker failed internally while loading the model; see its log")]
    Internal,
}

/// How an ONNX model is loaded under its owner's verified serving policy: on the engine the
/// policy pins (`auto`: onnxruntime when this worker loaded it, else tract; `ort` fails when it
/// is not loaded), with one intra-op thread per core.
fn onnx_options(policy: &ServingPolicy) -> OnnxOptions {
    OnnxOptions { engine: policy.engine, threads: 0 }
}

/// Where an ONNX model's linear layers run under its owner's verified serving policy: `None`
/// (policy `never`) runs it on its ONNX engine as before; `public` weights need the worker's
/// accelerator, reached with the policy's timeout, and offload every linear layer.
fn linear_plan(
    policy: &ServingPolicy,
    accelerator: Option<&str>,
    model: &str,
) -> Result<Option<LinearPlan>, DeployError> {
    let OffloadPolicy::Public { on_failure, timeout_ms } = policy.offload else {
        return Ok(None);
    };
    if timeout_ms == 0 || timeout_ms > MAX_OFFLOAD_TIMEOUT_MS {
        return Err(DeployError::Policy {
            model: model.to_owned(),
            reason: format!(
                "offload timeout_ms {timeout_ms} is outside 1..={MAX_OFFLOAD_TIMEOUT_MS}"
            ),
        });
    }
    let Some(address) = accelerator else {
        return Err(DeployError::NoAccelerator {
            model: model.to_owned(),
            reason: "this worker has no accelerator".to_owned(),
        });
    };
    let tcp =
        crate::offload::TcpAccelerator::new(address, std::time::Duration::from_millis(timeout_ms))
            .map_err(|e| DeployError::NoAccelerator {
                model: model.to_owned(),
                reason: e.to_string(),
            })?;
    Ok(Some(LinearPlan::offload(Arc::new(tcp), on_failure)))
}

/// Verifies, fetches, releases, opens, checks and loads one model version, then adds it to the
/// catalog with its owner's serving policy. Returns what was deployed (not yet recorded as a
/// deployment: the caller persists or remembers it).
pub async fn deploy(
    worker: &Arc<Worker>,
    request: &DeployModel,
) -> Result<Deployment, DeployError> {
    let now = unix_now();
    let owner = VerifyingKey::from_text(&request.owner).map_err(DeployError::Owner)?;
    let verified = verify_manifest(&request.manifest, &owner, now)?;
    let model = verified.model_id();
    // The owner's policy decides the ONNX engine, so it is verified before anything loads (the
    // catalog verifies it again, with the model's name, when the model is added).
    let signed_policy = owner
        .verify::<ServingPolicy>("serving policy", &request.serving_policy, now)
        .map_err(|source| CatalogError::PolicySignature { model: model.clone(), source })?;
    let policy = signed_policy.claims;
    policy
        .check_schema()
        .map_err(|source| CatalogError::PolicySchema { model: model.clone(), source })?;
    let onnx = onnx_options(&policy);
    let plan = if verified.manifest().metadata.format == ModelFormat::Onnx {
        linear_plan(&policy, worker.accelerator.as_deref(), &model)?
    } else {
        None
    };
    let sealed = worker.repository.fetch_sealed(&verified).await?;

    let key_id = verified.sealed_to().key_id();
    let context = ReleaseContext {
        job_id: None,
        requester: Some("cloister-worker".to_owned()),
        purpose: Some(format!("serve model {model}")),
    };
    let (key, _) = crate::server::release_key(worker, &Hex(key_id.0.to_vec()), context, None)
        .await
        .map_err(DeployError::Release)?;

    let metadata = verified.manifest().metadata.clone();
    let (format, task) = (metadata.format, metadata.task);
    let loading = verified.clone();
    let llm_threads = worker.llm_threads;
    let engine = tokio::task::spawn_blocking(move || -> Result<Engine, DeployError> {
        // The integrity check: every sealed object's and plaintext's digest against the manifest.
        let files = open_files(&loading, sealed, &key)?;
        let model = loading.model_id();
        let engine_error = |source| DeployError::Engine { model: model.clone(), source };
        let only = |files: &cloister_repository::ModelFiles| {
            files.iter().next().map(|(_, bytes)| bytes.to_vec()).unwrap_or_default()
        };
        // Only an ONNX model under a policy that allows offloading has a plan.
        if let Some(plan) = plan {
            let hybrid = HybridModel::load(&zeroize::Zeroizing::new(only(&files)), &plan)
                .map_err(engine_error)?;
            tracing::info!(
                %model,
                layers = hybrid.layers().len(),
                "ONNX model loaded on the hybrid executor: its linear layers are offloaded"
            );
            return Ok(Engine::Hybrid(hybrid));
        }
        match (format, task) {
            (ModelFormat::Onnx, _) => {
                let onnx = OnnxModel::load_with(&zeroize::Zeroizing::new(only(&files)), onnx)
                    .map_err(engine_error)?;
                tracing::info!(%model, engine = onnx.engine().as_str(), "ONNX model loaded");
                Ok(Engine::Onnx(onnx))
            }
            (ModelFormat::Gguf, ModelTask::TextGeneration) => {
                // The engine takes the only decrypted copy (and erases it once llama.cpp has
                // it). The `.gguf` file, not a licence beside it.
                let gguf = files
                    .into_files()
                    .into_iter()
                    .find(|(path, _)| path.ends_with(".gguf"))
                    .map(|(_, bytes)| bytes)
                    .unwrap_or_default();
                Ok(Engine::Llm(LlmModel::from_gguf_owned(gguf, llm_threads).map_err(engine_error)?))
            }
            (ModelFormat::Safetensors, ModelTask::TextGeneration) => Ok(Engine::Llm(
                LlmModel::from_safetensors(&files.into_files()).map_err(engine_error)?,
            )),
            (ModelFormat::Safetensors, ModelTask::Embedding) => Ok(Engine::Embedder(
                Embedder::from_files(&files.into_files()).map_err(engine_error)?,
            )),
            (format, task) => Err(DeployError::Unsupported { model, format, task }),
        }
    })
    .await
    .map_err(|_| DeployError::Internal)??;

    let manifest = verified.manifest();
    let loaded = LoadedModel::new(
        &manifest.name,
        &manifest.version,
        engine,
        metadata,
        &owner,
        &request.serving_policy,
        now,
    )?;
    let loaded = worker.catalog.insert(loaded)?;
    tracing::info!(model = %model, digest = %manifest.digest, "model deployed after its integrity check");
    Ok(Deployment {
        model,
        digest: manifest.digest.clone(),
        task,
        endpoint: loaded.engine().endpoint().to_owned(),
        owner: owner.to_text(),
        serving_policy_sha256: Hex(signed_policy.token_sha256.to_vec()),
        serving_policy_schema: policy.schema_version(),
        policy_expires_at: signed_policy.expires_at,
        deployed_at: now,
        restored: false,
    })
}

#[cfg(test)]
mod tests {
    use cloister_engine::{OnnxEngine, onnxruntime_loaded};

    use super::*;

    const DEMO: &[u8] = include_bytes!("../../../assets/breast_cancer_classifier.onnx");

    fn policy(json: &str) -> ServingPolicy {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn the_policy_pins_the_onnx_engine() {
        // This test process never loads onnxruntime.
        assert!(!onnxruntime_loaded());
        let base = r#"{"model":"m","versions":["1"],"requesters":[]"#;
        // A policy without the field (signed before it existed) is auto: tract here.
        let auto = onnx_options(&policy(&format!("{base}}}")));
        assert_eq!(auto.engine, OnnxEngine::Auto);
        assert_eq!(OnnxModel::load_with(DEMO, auto).unwrap().engine(), OnnxEngine::Tract);
        let tract = onnx_options(&policy(&format!(r#"{base},"engine":"tract"}}"#)));
        assert_eq!(OnnxModel::load_with(DEMO, tract).unwrap().engine(), OnnxEngine::Tract);
        // Pinned to onnxruntime, which is not loaded: refused, not run on tract.
        let ort = onnx_options(&policy(&format!(r#"{base},"engine":"ort"}}"#)));
        let err = OnnxModel::load_with(DEMO, ort).unwrap_err();
        assert!(matches!(err, EngineError::Runtime(_)), "{err:?}");
        // An unknown engine does not parse.
        assert!(
            serde_json::from_str::<ServingPolicy>(&format!(r#"{base},"engine":"gpu"}}"#)).is_err()
        );
    }

    #[test]
    fn offloading_needs_the_policy_and_an_accelerator() {
        let base = r#"{"model":"m","versions":["1"],"requesters":[]"#;
        // No offload field (and `never`): the model runs on its ONNX engine, accelerator or not.
        for never in [format!("{base}}}"), format!(r#"{base},"offload":{{"weights":"never"}}}}"#)] {
            assert!(linear_plan(&policy(&never), None, "m@1").unwrap().is_none());
            assert!(linear_plan(&policy(&never), Some("127.0.0.1:7700"), "m@1").unwrap().is_none());
        }
        let public = policy(&format!(
            r#"{base},"offload":{{"weights":"public","on_failure":"fail","timeout_ms":100}}}}"#
        ));
        // Required by the policy, absent on the worker: the deployment fails, saying why.
        let err = linear_plan(&public, None, "m@1").unwrap_err();
        assert!(matches!(err, DeployError::NoAccelerator { .. }), "{err:?}");
        assert!(err.to_string().contains("--accelerator"), "{err}");
        assert!(matches!(
            linear_plan(&public, Some("no such host:x"), "m@1"),
            Err(DeployError::NoAccelerator { .. })
        ));
        let plan = linear_plan(&public, Some("127.0.0.1:7700"), "m@1").unwrap();
        assert!(matches!(
            plan,
            Some(LinearPlan::Offload {
                on_failure: cloister_types::model::OffloadFallback::Fail,
                ..
            })
        ));
        for timeout in [0, MAX_OFFLOAD_TIMEOUT_MS + 1] {
            let bad = policy(&format!(
                r#"{base},"offload":{{"weights":"public","on_failure":"enclave","timeout_ms":{timeout}}}}}"#
            ));
            assert!(matches!(
                linear_plan(&bad, Some("127.0.0.1:7700"), "m@1"),
                Err(DeployError::Policy { .. })
            ));
        }
    }
}
