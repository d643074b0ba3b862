//! Deployments that outlive the worker process, and their end: every accepted deployment request
//! (the signed manifest, the owner's key, the signed serving policy — nothing secret) is kept as
//! one JSON file under the worker's data directory; at start, after attesting, the worker deploys
//! each again from scratch ([`restore`]: the manifest and policy verified, the weights fetched,
//! their key released by the broker to this enclave, every digest checked). A deployment that no
//! longer passes (its policy expired, the broker refuses) is logged with the reason and skipped.
//! Only the owner the deployment names may end it ([`undeploy`]), with a signed request that
//! names the deployment exactly; its file goes with it, so it is not restored.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use cloister_sign::VerifyingKey;
use cloister_types::model::{
    DeployModel, Deployment, MAX_UNDEPLOY_VALIDITY_SECS, UndeployModel, UndeployStatement,
    check_model_name,
};

use crate::server::Worker;

/// Why a deployment could not be kept, read back or ended.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeploymentError {
    /// The file system failed.
    #[error("deployment record {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A record is not a deployment request.
    #[error("deployment record {path} is not a deployment request: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// No such model is deployed here.
    #[error("model {0} is not deployed on this worker")]
    NotDeployed(String),
    /// The request to undeploy is not the owner's, is not valid now, or lasts too long.
    #[error("the undeploy request for {model} is refused: {reason}")]
    NotOwner {
        /// `name@version`.
        model: String,
        /// Why.
        reason: String,
    },
    /// The request names another deployment (digest or serving policy) than the one serving.
    #[error(
        "the undeploy request for {model} names another deployment (digest or serving policy) \
         than the one this worker serves; list the deployments and sign again"
    )]
    OtherDeployment {
        /// `name@version`.
        model: String,
    },
}

/// The worker's deployments: what serves now, and the requests it restores from at start.
#[derive(Debug)]
pub struct Deployments {
    root: PathBuf,
    live: Mutex<BTreeMap<String, Deployment>>,
}

impl Deployments {
    /// Opens (and creates) the directory of deployment records at `root`.
    pub fn open(root: &Path) -> Result<Self, DeploymentError> {
        std::fs::create_dir_all(root)
            .map_err(|source| DeploymentError::Io { path: root.to_owned(), source })?;
        Ok(Deployments { root: root.to_owned(), live: Mutex::new(BTreeMap::new()) })
    }

    /// The record's path for `name@version` (names are checked, so the path stays in `root`).
    fn path(&self, id: &str) -> Result<PathBuf, DeploymentError> {
        let corrupt =
            |reason: String| DeploymentError::Corrupt { path: self.root.join(id), reason };
        let (name, version) =
            id.split_once('@').ok_or_else(|| corrupt("the model id is not NAME@VERSION".into()))?;
        check_model_name("model name", name).map_err(|e| corrupt(e.to_string()))?;
        check_model_name("model version", version).map_err(|e| corrupt(e.to_string()))?;
        Ok(self.root.join(format!("{id}.json")))
    }

    /// Writes the request that deployed `deployment` (atomically: a temporary file synced, then
    /// renamed, the directory synced) and records it as serving.
    pub(crate) fn persist(
        &self,
        request: &DeployModel,
        deployment: Deployment,
    ) -> Result<(), DeploymentError> {
        let path = self.path(&deployment.model)?;
        let io = |source| DeploymentError::Io { path: path.clone(), source };
        let bytes = serde_json::to_vec_pretty(request)
            .map_err(|e| DeploymentError::Corrupt { path: path.clone(), reason: e.to_string() })?;
        let tmp = self.root.join(format!(".{}.partial", deployment.model));
        let mut file = std::fs::File::create(&tmp).map_err(io)?;
        file.write_all(&bytes).map_err(io)?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io(e)
        })?;
        std::fs::File::open(&self.root).and_then(|dir| dir.sync_all()).map_err(io)?;
        self.remember(deployment);
        Ok(())
    }

    /// Records `deployment` as serving (its request is already on disk).
    fn remember(&self, deployment: Deployment) {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(deployment.model.clone(), deployment);
    }

    /// Deletes the record of `id`, so it is not restored, and forgets it.
    fn forget(&self, id: &str) -> Result<(), DeploymentError> {
        let path = self.path(id)?;
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(DeploymentError::Io { path, source }),
        }
        std::fs::File::open(&self.root)
            .and_then(|dir| dir.sync_all())
            .map_err(|source| DeploymentError::Io { path: self.root.clone(), source })?;
        self.live.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
        Ok(())
    }

    /// What serves now, by model id.
    pub fn list(&self) -> Vec<Deployment> {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }

    /// The deployment of `id` (`name@version`), if it serves.
    pub fn get(&self, id: &str) -> Option<Deployment> {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).get(id).cloned()
    }

    /// Every stored request, in file-name order, each read or with the reason it cannot be.
    fn saved(&self) -> Result<Vec<Saved>, DeploymentError> {
        let io = |source| DeploymentError::Io { path: self.root.clone(), source };
        let mut paths = Vec::new();
        for entry in std::fs::read_dir(&self.root).map_err(io)? {
            let path = entry.map_err(io)?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if !name.starts_with('.') && name.ends_with(".json") {
                paths.push(path);
            }
        }
        paths.sort();
        Ok(paths
            .into_iter()
            .map(|path| {
                let read = std::fs::read(&path)
                    .map_err(|source| DeploymentError::Io { path: path.clone(), source })
                    .and_then(|bytes| {
                        serde_json::from_slice::<DeployModel>(&bytes).map_err(|e| {
                            DeploymentError::Corrupt { path: path.clone(), reason: e.to_string() }
                        })
                    });
                Saved { path, request: read }
            })
            .collect())
    }
}

/// One stored deployment request, as read back.
#[derive(Debug)]
struct Saved {
    /// Its file.
    path: PathBuf,
    /// The request, or why it cannot be read.
    request: Result<DeployModel, DeploymentError>,
}

/// What [`restore`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Restored {
    /// Models serving again.
    pub restored: usize,
    /// Records skipped (each logged with its reason).
    pub skipped: usize,
}

/// Deploys every stored deployment request again, as if its owner had just sent it: nothing is
/// taken on trust from the earlier run. A request that fails now (an expired serving policy, a
/// key release the broker refuses, a manifest gone from the repository, a record that does not
/// parse) is logged as a warning with the reason and skipped; it stays on disk (a record whose
/// policy expired is replaced when its owner deploys the model again). Never fails as a whole:
/// a worker whose records cannot even be listed logs that and serves nothing restored.
pub async fn restore(worker: &Arc<Worker>) -> Restored {
    let mut summary = Restored::default();
    let saved = match worker.deployments.saved() {
        Ok(saved) => saved,
        Err(error) => {
            tracing::error!(%error, "the deployment records cannot be read; nothing restored");
            return summary;
        }
    };
    for Saved { path, request } in saved {
        let record = path.display().to_string();
        let request = match request {
            Ok(request) => request,
            Err(error) => {
                tracing::warn!(%record, reason = %error, "deployment not restored");
                summary.skipped += 1;
                continue;
            }
        };
        match crate::deploy::deploy(worker, &request).await {
            Ok(mut deployment) => {
                deployment.restored = true;
                tracing::info!(model = %deployment.model, digest = %deployment.digest,
                    policy_expires_at = deployment.policy_expires_at,
                    "deployment restored after its checks");
                worker.deployments.remember(deployment);
                summary.restored += 1;
            }
            Err(error) => {
                tracing::warn!(%record, reason = %error, "deployment not restored");
                summary.skipped += 1;
            }
        }
    }
    summary
}

/// Ends the deployment `id` at the request of its owner: `request` must verify, at `now`, with
/// the owner key the deployment was made with, last at most [`MAX_UNDEPLOY_VALIDITY_SECS`], and
/// name this deployment's model, digest and serving policy. The record is deleted first (so a
/// failure leaves the model serving, never half-removed), then the model leaves the catalog;
/// requests already admitted finish.
pub fn undeploy(
    worker: &Worker,
    id: &str,
    request: &UndeployModel,
    now: u64,
) -> Result<Deployment, DeploymentError> {
    let deployment =
        worker.deployments.get(id).ok_or_else(|| DeploymentError::NotDeployed(id.to_owned()))?;
    let refuse = |reason: String| DeploymentError::NotOwner { model: id.to_owned(), reason };
    let owner = VerifyingKey::from_text(&deployment.owner).map_err(|e| refuse(e.to_string()))?;
    let signed = owner
        .verify::<UndeployStatement>("model undeploy", &request.request, now)
        .map_err(|e| refuse(format!("it is not signed by the model's owner now: {e}")))?;
    let validity = signed.expires_at.saturating_sub(signed.issued_at);
    if validity > MAX_UNDEPLOY_VALIDITY_SECS {
        return Err(refuse(format!(
            "it is valid for {validity} s; at most {MAX_UNDEPLOY_VALIDITY_SECS} s is accepted"
        )));
    }
    let statement = signed.claims;
    if statement.model != deployment.model
        || statement.digest != deployment.digest
        || statement.serving_policy_sha256 != deployment.serving_policy_sha256
    {
        return Err(DeploymentError::OtherDeployment { model: id.to_owned() });
    }
    worker.deployments.forget(id)?;
    worker.catalog.remove(id);
    tracing::info!(model = %id, owner = %deployment.owner, "model undeployed by its owner");
    Ok(deployment)
}

#[cfg(test)]
mod tests {
    use cloister_types::Hex;
    use cloister_types::model::ModelTask;

    use super::*;

    fn deployment(model: &str) -> Deployment {
        Deployment {
            model: model.to_owned(),
            digest: Hex(vec![1; 32]),
            task: ModelTask::Tensor,
            endpoint: "/v1/infer".to_owned(),
            owner: "cloister-es256:x".to_owned(),
            serving_policy_sha256: Hex(vec![2; 32]),
            serving_policy_schema: 1,
            policy_expires_at: 10,
            deployed_at: 1,
            restored: false,
        }
    }

    #[test]
    fn records_are_written_listed_and_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let store = Deployments::open(&dir.path().join("deployments")).unwrap();
        let request = DeployModel {
            manifest: "m.jws".to_owned(),
            owner: "cloister-es256:x".to_owned(),
            serving_policy: "p.jws".to_owned(),
        };
        store.persist(&request, deployment("m@1")).unwrap();
        store.persist(&request, deployment("m@2")).unwrap();
        assert_eq!(store.list().len(), 2);
        std::fs::write(dir.path().join("deployments/broken.json"), b"{").unwrap();
        std::fs::write(dir.path().join("deployments/.m@3.partial"), b"{").unwrap();
        let saved = store.saved().unwrap();
        assert_eq!(saved.len(), 3, "{saved:?}");
        assert!(matches!(&saved[0].request, Err(DeploymentError::Corrupt { .. })));
        assert_eq!(saved[1].request.as_ref().unwrap(), &request);
        store.forget("m@1").unwrap();
        assert!(store.get("m@1").is_none() && store.get("m@2").is_some());
        assert_eq!(store.saved().unwrap().len(), 2);
        // A model id is checked before it names a file.
        for bad in ["../x@1", "m", "m@../../etc", "M@1"] {
            assert!(store.persist(&request, deployment(bad)).is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        /// Whatever id a request names, its record's path is a file directly in the records'
        /// directory, or refused.
        #[test]
        fn any_id_stays_inside_the_directory(id in "\\PC{0,80}") {
            let store = Deployments { root: PathBuf::from("/records"), live: Mutex::default() };
            if let Ok(path) = store.path(&id) {
                proptest::prop_assert_eq!(path.parent(), Some(Path::new("/records")));
                proptest::prop_assert!(!id.contains('/') && !id.starts_with('.'));
            }
        }
    }
}
