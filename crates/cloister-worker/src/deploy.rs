//! Deploying a model from the repository into the serving catalog: the manifest verified against
//! its owner's key, the weights' key released by the key broker to this enclave, every file
//! decrypted and checked against the manifest, the engine loaded. This runs before every load;
//! nothing is cached in plaintext outside this process.

use std::sync::Arc;

use cloister_repository::{RepoError, open_files, verify_manifest};
use cloister_sign::{VerifyingKey, unix_now};
use cloister_types::Hex;
use cloister_types::api::ReleaseContext;
use cloister_types::model::{DeployModel, DeployedModel, ModelFormat, ModelTask};

use crate::online::{CatalogError, Engine, LoadedModel};
use crate::server::Worker;
use cloister_engine::{Embedder, EngineError, LlmModel, OnnxModel};

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
    /// A task panicked.
    #[error("the worker failed internally while loading the model; see its log")]
    Internal,
}

/// Verifies, fetches, releases, opens, checks and loads one model version, then adds it to the
/// catalog with its owner's serving policy.
pub async fn deploy(
    worker: &Arc<Worker>,
    request: &DeployModel,
) -> Result<DeployedModel, DeployError> {
    let now = unix_now();
    let owner = VerifyingKey::from_text(&request.owner).map_err(DeployError::Owner)?;
    let verified = verify_manifest(&request.manifest, &owner, now)?;
    let model = verified.model_id();
    let sealed = worker.repository.fetch_sealed(&verified).await?;

    let key_id = verified.sealed_to().key_id();
    let context = ReleaseContext {
        job_id: None,
        requester: Some("cloister-worker".to_owned()),
        purpose: Some(format!("serve model {model}")),
    };
    let key = crate::server::release_key(worker, &Hex(key_id.0.to_vec()), context)
        .await
        .map_err(DeployError::Release)?;

    let metadata = verified.manifest().metadata.clone();
    let (format, task) = (metadata.format, metadata.task);
    let loading = verified.clone();
    let engine = tokio::task::spawn_blocking(move || -> Result<Engine, DeployError> {
        // The integrity check: every sealed object's and plaintext's digest against the manifest.
        let files = open_files(&loading, sealed, &key)?;
        let model = loading.model_id();
        let engine_error = |source| DeployError::Engine { model: model.clone(), source };
        let only = |files: &cloister_repository::ModelFiles| {
            files.iter().next().map(|(_, bytes)| bytes.to_vec()).unwrap_or_default()
        };
        match (format, task) {
            (ModelFormat::Onnx, _) => Ok(Engine::Onnx(
                OnnxModel::load(&zeroize::Zeroizing::new(only(&files))).map_err(engine_error)?,
            )),
            (ModelFormat::Gguf, ModelTask::TextGeneration) => Ok(Engine::Llm(
                LlmModel::from_gguf(&zeroize::Zeroizing::new(only(&files)))
                    .map_err(engine_error)?,
            )),
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
    Ok(DeployedModel {
        model,
        digest: manifest.digest.clone(),
        task,
        endpoint: loaded.engine().endpoint().to_owned(),
    })
}
