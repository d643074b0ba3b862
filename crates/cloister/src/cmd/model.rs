//! `cloister model` and `cloister serving-policy`: the model repository, deployments to workers
//! and the serving policies they take.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;

use super::WorkerTargetArgs;

/// Where models are stored: a directory, a `file://` URL or `s3://bucket[/prefix]`.
#[derive(clap::Args, Clone)]
pub(crate) struct RepositoryArgs {
    /// The repository (S3 is configured from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ALLOW_HTTP).
    #[arg(long, env = "CLOISTER_REPOSITORY", default_value = "models")]
    repository: String,
    /// Machine-readable output: one JSON document.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
pub(crate) enum ModelCommand {
    /// Import a model: read its metadata, seal its files to a key-broker key, sign the manifest.
    Import {
        /// An .onnx file, a .gguf file, or a safetensors directory (config.json, tokenizer.json).
        path: PathBuf,
        /// Model name: 1-64 of a-z, 0-9, '-', '_', '.'.
        #[arg(long)]
        name: String,
        /// Version (same alphabet); a version is imported once and never changes.
        #[arg(long)]
        version: String,
        /// The owner's signing key file (`cloister keygen --signing`); signs the manifest.
        #[arg(long)]
        owner_key: PathBuf,
        /// The key-broker recipient the weights are sealed to: a file holding what `cloister
        /// key register` prints (`cloister-broker:kb_…:…`), or that text.
        #[arg(long)]
        recipient: String,
        /// onnx, gguf or safetensors (default: from the extension; a directory is safetensors).
        #[arg(long)]
        format: Option<String>,
        /// The licence (SPDX id or free text).
        #[arg(long)]
        licence: Option<String>,
        /// Weights never leave an enclave in plaintext.
        #[arg(long)]
        no_weight_export: bool,
        /// A further licence term in plain words. Repeatable.
        #[arg(long = "term")]
        terms: Vec<String>,
        #[command(flatten)]
        repo: RepositoryArgs,
    },
    /// List the models and their versions.
    List {
        #[command(flatten)]
        repo: RepositoryArgs,
    },
    /// List a model's versions.
    Versions {
        /// Model name.
        name: String,
        #[command(flatten)]
        repo: RepositoryArgs,
    },
    /// Verify a version (manifest signature, digests of every sealed file) and print it.
    Show {
        /// NAME@VERSION.
        model: String,
        /// The owner's public signing key (text or file) the manifest must be signed with.
        #[arg(long)]
        owner: Option<String>,
        #[command(flatten)]
        repo: RepositoryArgs,
    },
    /// Delete a version (its name is never reused).
    Delete {
        /// NAME@VERSION.
        model: String,
        #[command(flatten)]
        repo: RepositoryArgs,
    },
    /// Model owner: deploy a version to an attested worker under a serving policy. The signed
    /// manifest is read from --repository and checked against --signing-key, with the policy,
    /// before anything is sent; the worker checks everything again, gets the weights' key from
    /// the broker and verifies every file. It restores the deployment after a restart.
    Deploy {
        /// NAME@VERSION.
        model: String,
        #[command(flatten)]
        target: WorkerTargetArgs,
        /// The serving policy (`cloister serving-policy create`).
        #[arg(long)]
        serving_policy: PathBuf,
        /// The model owner's signing key (it signed the manifest and the policy).
        #[arg(long)]
        signing_key: PathBuf,
        #[command(flatten)]
        repo: RepositoryArgs,
    },
    /// Model owner: stop serving a version on a worker (a signed request only the owner that
    /// deployed it can make); it is not restored after a restart.
    Undeploy {
        /// NAME@VERSION.
        model: String,
        #[command(flatten)]
        target: WorkerTargetArgs,
        /// The model owner's signing key.
        #[arg(long)]
        signing_key: PathBuf,
    },
    /// List what a worker serves: model, digest, owner, serving policy expiry.
    Deployments {
        #[command(flatten)]
        target: WorkerTargetArgs,
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub(crate) enum ServingPolicyCommand {
    /// Sign a serving policy (a compact JWS) with the model owner's key.
    ///
    /// Each --requester is KEY[,rpm=N][,quota=N]: KEY a party public key (`cloister-es256:…`, as
    /// `cloister keygen --signing` writes it) or a file holding one; rpm and quota override
    /// --requests-per-minute and --token-quota for that requester.
    Create {
        /// The model's name.
        #[arg(long)]
        model: String,
        /// A version the policy covers; repeat for several.
        #[arg(long = "version", required = true)]
        versions: Vec<String>,
        /// Who may call the model: KEY[,rpm=N][,quota=N]; repeat for several.
        #[arg(long = "requester", required = true)]
        requesters: Vec<String>,
        /// Requests per minute for each requester that names no rpm.
        #[arg(long, default_value_t = 60)]
        requests_per_minute: u32,
        /// Tokens (generated or embedded) for each requester that names no quota, counted at
        /// the attestation service; without it, unlimited.
        #[arg(long)]
        token_quota: Option<u64>,
        /// The engine of an ONNX model: auto, ort or tract.
        #[arg(long, default_value = "auto")]
        engine: cloister_types::model::OnnxEngine,
        /// Whether an ONNX model's linear layers may run on the worker's untrusted accelerator,
        /// which then sees the weights: never or public (docs/offload.md).
        #[arg(long, default_value = "never", value_parser = ["never", "public"])]
        offload: String,
        /// With --offload public: what a request does when the accelerator fails (fail or
        /// enclave).
        #[arg(long, value_parser = ["fail", "enclave"])]
        on_failure: Option<String>,
        /// With --offload public: the accelerator's deadline per product, in milliseconds
        /// (default 5000).
        #[arg(long)]
        offload_timeout_ms: Option<u64>,
        /// The model owner's signing key (the key that signed the manifest).
        #[arg(long)]
        signing_key: PathBuf,
        /// How long the policy is valid: N followed by s, m, h or d.
        #[arg(long, default_value = cloister::serving::DEFAULT_POLICY_VALIDITY)]
        valid_for: String,
        /// Where to write the policy (never overwritten).
        #[arg(long)]
        output: PathBuf,
    },
    /// Verify a serving policy and print it.
    Show {
        /// The policy file.
        file: PathBuf,
        /// The owner's public signing key (text or file) it must be signed with.
        #[arg(long)]
        owner: Option<String>,
        /// Print it as one JSON line.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) fn serving_policy(command: ServingPolicyCommand) -> Result<()> {
    match command {
        ServingPolicyCommand::Create {
            model,
            versions,
            requesters,
            requests_per_minute,
            token_quota,
            engine,
            offload,
            on_failure,
            offload_timeout_ms,
            signing_key,
            valid_for,
            output,
        } => cloister::serving::create_policy(&cloister::serving::PolicyArgs {
            model,
            versions,
            requesters,
            requests_per_minute,
            token_quota,
            engine,
            offload,
            on_failure,
            offload_timeout_ms,
            signing_key,
            valid_for,
            output,
        }),
        ServingPolicyCommand::Show { file, owner, json } => {
            cloister::serving::show_policy(&file, owner.as_deref(), json)
        }
    }
}

pub(crate) async fn model(command: ModelCommand) -> Result<()> {
    use cloister::model::{self as m, open_repository};
    match command {
        ModelCommand::Deploy { model, target, serving_policy, signing_key, repo } => {
            let args = cloister::serving::DeployArgs {
                model: &model,
                serving_policy: &serving_policy,
                signing_key: &signing_key,
            };
            let repository = open_repository(&repo.repository)?;
            cloister::serving::deploy(&target.target()?, &repository, &args, repo.json).await
        }
        ModelCommand::Undeploy { model, target, signing_key } => {
            cloister::serving::undeploy(&target.target()?, &model, &signing_key).await
        }
        ModelCommand::Deployments { target, json } => {
            cloister::serving::deployments(&target.target()?, json).await
        }
        ModelCommand::Import {
            path,
            name,
            version,
            owner_key,
            recipient,
            format,
            licence,
            no_weight_export,
            terms,
            repo,
        } => {
            let args = m::ImportArgs {
                path,
                name,
                version,
                owner_key,
                recipient,
                format,
                licence,
                no_weight_export,
                terms,
            };
            m::import(&open_repository(&repo.repository)?, args, repo.json).await
        }
        ModelCommand::List { repo } => {
            m::list(&open_repository(&repo.repository)?, repo.json).await
        }
        ModelCommand::Versions { name, repo } => {
            m::versions(&open_repository(&repo.repository)?, &name, repo.json).await
        }
        ModelCommand::Show { model, owner, repo } => {
            m::show(&open_repository(&repo.repository)?, &model, owner.as_deref(), repo.json).await
        }
        ModelCommand::Delete { model, repo } => {
            m::delete(&open_repository(&repo.repository)?, &model).await
        }
    }
}
