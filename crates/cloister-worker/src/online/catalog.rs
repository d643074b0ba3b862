//! The models loaded for online serving, keyed by `name@version`; a bare `name` means its newest
//! loaded version. Each carries its engine, its manifest metadata and its owner's serving
//! policy, verified when the model is loaded.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use cloister_sign::VerifyingKey;
use cloister_types::model::{ModelMetadata, ServingPolicy, check_model_name};

use crate::online::authz::Limits;
use cloister_engine::{Embedder, HybridModel, LlmModel, OnnxModel};

/// Why a model could not be loaded for serving.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// The model's name or version is outside the allowed alphabet.
    #[error(transparent)]
    BadName(#[from] cloister_types::model::BadModelName),
    /// The serving policy does not verify with the owner's key.
    #[error("the serving policy of {model} is not signed by its owner: {source}")]
    PolicySignature {
        /// `name@version`.
        model: String,
        /// Why.
        source: cloister_sign::SignError,
    },
    /// The serving policy is for another model.
    #[error("the serving policy is for model {policy_model:?}, not {model:?}")]
    PolicyForAnotherModel {
        /// The model being loaded.
        model: String,
        /// The model the policy names.
        policy_model: String,
    },
    /// This name and version is already loaded (a version never changes once loaded).
    #[error(
        "model {0} is already loaded; a version is immutable: load a new version, or undeploy \
         this one first (`cloister model undeploy`) to serve it under another policy"
    )]
    AlreadyLoaded(String),
    /// The serving policy is written in a schema version this build does not read.
    #[error("the serving policy of {model} is not usable: {source}")]
    PolicySchema {
        /// `name@version`.
        model: String,
        /// Which version.
        source: cloister_types::model::UnsupportedServingPolicy,
    },
}

/// What runs a model.
// One per loaded model, never moved in bulk: the size difference between engines is harmless.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
#[non_exhaustive]
pub enum Engine {
    /// An ONNX model run by onnxruntime or tract (`/v1/infer`).
    Onnx(OnnxModel),
    /// An ONNX model whose owner's policy allows offloading: its linear layers run on the
    /// worker's accelerator, blinded and verified, the rest in the enclave (`/v1/infer`).
    Hybrid(HybridModel),
    /// A causal language model (`/v1/chat/completions`).
    Llm(LlmModel),
    /// A sentence encoder (`/v1/embeddings`).
    Embedder(Embedder),
}

impl Engine {
    /// The API route that serves this engine.
    pub fn endpoint(&self) -> &'static str {
        match self {
            Engine::Onnx(_) | Engine::Hybrid(_) => "/v1/infer",
            Engine::Llm(_) => "/v1/chat/completions",
            Engine::Embedder(_) => "/v1/embeddings",
        }
    }
}

/// A serving policy that verified with its model owner's key; only [`LoadedModel::new`] makes
/// one.
#[derive(Clone, Debug)]
pub struct VerifiedServingPolicy {
    policy: ServingPolicy,
    owner: String,
    expires_at: u64,
}

impl VerifiedServingPolicy {
    /// The policy.
    pub fn policy(&self) -> &ServingPolicy {
        &self.policy
    }

    /// The owner's public key (text form) that signed it.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Unix seconds the policy expires: from then on it admits no request.
    pub fn expires_at(&self) -> u64 {
        self.expires_at
    }

    /// Whether the policy has expired at `now`.
    pub fn expired(&self, now: u64) -> bool {
        now > self.expires_at
    }
}

/// One model version ready to serve.
#[derive(Debug)]
pub struct LoadedModel {
    name: String,
    version: String,
    engine: Engine,
    metadata: ModelMetadata,
    policy: VerifiedServingPolicy,
    created: u64,
}

impl LoadedModel {
    /// A model ready to serve, after checking its names and verifying the owner's serving policy
    /// (a compact JWS, `what = "serving policy"`) with the owner's key at `now`.
    pub fn new(
        name: &str,
        version: &str,
        engine: Engine,
        metadata: ModelMetadata,
        owner: &VerifyingKey,
        serving_policy_jws: &str,
        now: u64,
    ) -> Result<Self, CatalogError> {
        check_model_name("model name", name)?;
        check_model_name("model version", version)?;
        let model = format!("{name}@{version}");
        let signed = owner
            .verify::<ServingPolicy>("serving policy", serving_policy_jws, now)
            .map_err(|source| CatalogError::PolicySignature { model: model.clone(), source })?;
        let (policy, expires_at) = (signed.claims, signed.expires_at);
        policy
            .check_schema()
            .map_err(|source| CatalogError::PolicySchema { model: model.clone(), source })?;
        if policy.model != name {
            return Err(CatalogError::PolicyForAnotherModel { model, policy_model: policy.model });
        }
        Ok(LoadedModel {
            name: name.to_owned(),
            version: version.to_owned(),
            engine,
            metadata,
            policy: VerifiedServingPolicy { policy, owner: owner.to_text(), expires_at },
            created: now,
        })
    }

    /// `name@version`.
    pub fn id(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }

    /// The model's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The model's version.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Its engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// What the manifest says about it.
    pub fn metadata(&self) -> &ModelMetadata {
        &self.metadata
    }

    /// Its owner's verified serving policy.
    pub fn serving_policy(&self) -> &VerifiedServingPolicy {
        &self.policy
    }

    /// Unix seconds when it was loaded.
    pub fn created(&self) -> u64 {
        self.created
    }
}

/// The loaded models, and the per-requester state their policies need (rate buckets, quota
/// counters, seen request ids).
#[derive(Debug, Default)]
pub struct Catalog {
    models: RwLock<BTreeMap<String, Arc<LoadedModel>>>,
    limits: Arc<Limits>,
}

impl Catalog {
    /// An empty catalog.
    pub fn new() -> Self {
        Catalog::default()
    }

    /// Adds a model version. A version already loaded is refused.
    pub fn insert(&self, model: LoadedModel) -> Result<Arc<LoadedModel>, CatalogError> {
        let id = model.id();
        let mut models = self.models.write().unwrap_or_else(|p| p.into_inner());
        if models.contains_key(&id) {
            return Err(CatalogError::AlreadyLoaded(id));
        }
        let model = Arc::new(model);
        models.insert(id, model.clone());
        Ok(model)
    }

    /// The model `name@version`, or for a bare `name` its newest loaded version (versions
    /// compare by their dot-separated parts, numerically where both parts are numbers).
    pub fn get(&self, model: &str) -> Option<Arc<LoadedModel>> {
        self.get_usable(model, |_| true)
    }

    /// As [`Catalog::get`], among the versions `usable` accepts only: for a bare `name`, the
    /// newest of those.
    pub fn get_usable(
        &self,
        model: &str,
        usable: impl Fn(&LoadedModel) -> bool,
    ) -> Option<Arc<LoadedModel>> {
        let models = self.models.read().unwrap_or_else(|p| p.into_inner());
        if model.contains('@') {
            return models.get(model).filter(|m| usable(m)).cloned();
        }
        models
            .values()
            .filter(|m| m.name == model && usable(m))
            .max_by(|a, b| compare_versions(&a.version, &b.version))
            .cloned()
    }

    /// Removes the model `name@version` (an exact id); returns it when it was loaded. Requests
    /// already admitted finish on the engine they hold.
    pub fn remove(&self, id: &str) -> Option<Arc<LoadedModel>> {
        self.models.write().unwrap_or_else(|p| p.into_inner()).remove(id)
    }

    /// Every loaded model, by id.
    pub fn list(&self) -> Vec<Arc<LoadedModel>> {
        self.models.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }

    /// The rate, quota and replay state.
    pub(crate) fn limits(&self) -> &Arc<Limits> {
        &self.limits
    }
}

fn compare_versions(a: &str, b: &str) -> Ordering {
    let mut left = a.split(['.', '-', '_']);
    let mut right = b.split(['.', '-', '_']);
    loop {
        match (left.next(), right.next()) {
            (None, None) => return a.cmp(b),
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let order = match (x.parse::<u64>(), y.parse::<u64>()) {
                    (Ok(x), Ok(y)) => x.cmp(&y),
                    _ => x.cmp(y),
                };
                if order != Ordering::Equal {
                    return order;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::compare_versions;
    use std::cmp::Ordering;

    #[test]
    fn versions_compare_numerically_by_part() {
        assert_eq!(compare_versions("1.10", "1.9"), Ordering::Greater);
        assert_eq!(compare_versions("2", "10"), Ordering::Less);
        assert_eq!(compare_versions("1.0", "1.0.1"), Ordering::Less);
        assert_eq!(compare_versions("v2", "v1"), Ordering::Greater);
    }
}
