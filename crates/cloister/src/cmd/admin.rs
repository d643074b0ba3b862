//! `cloister tenant`, `instance`, `key` and `audit`: the attestation service's administration.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;
use cloister::admin;
use cloister_types::manage::AuditQuery;

use super::{ServerArgs, runtime};

#[derive(Subcommand)]
pub(crate) enum TenantCommand {
    /// Create a tenant; prints its id and its admin's token (shown once).
    Create {
        /// 1-64 of a-z, 0-9, '-', '_', '.'.
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List tenants.
    List {
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// Policy, reference values and trust anchors of an instance.
#[derive(clap::Args, Clone, Default)]
pub(crate) struct InstanceParts {
    /// Appraisal policy: a Rego file (`package cloister.appraisal`, rule `result`).
    #[arg(long, conflicts_with = "builtin_policy")]
    policy_file: Option<PathBuf>,
    /// Appraisal policy: a built-in, `default` (production; rejects sim) or `dev-sim`.
    #[arg(long)]
    builtin_policy: Option<String>,
    /// Reference values, a JSON file (per-TEE sections and entries with expires_at allowed).
    #[arg(long)]
    reference_values: Option<PathBuf>,
    /// Trust anchors, a JSON file: {"sim_platform_keys": [...], "roots": {"cca": [...]},
    /// "test_roots": {"tdx": [PEM...]}}. Test roots (sgx, tdx, snp, nitro) are development
    /// anchors: evidence under one is marked trust_anchor "test" and refused by `default`.
    #[arg(long)]
    trust_anchors: Option<PathBuf>,
    /// A simulated TEE's platform key (its text, or a file holding it). Only instances that
    /// list one accept `sim` evidence. Repeatable.
    #[arg(long = "sim-platform-key")]
    sim_platform_keys: Vec<String>,
}

impl InstanceParts {
    pub(crate) fn args(&self) -> admin::InstanceArgs {
        admin::InstanceArgs {
            policy: admin::PolicyArgs {
                file: self.policy_file.clone(),
                builtin: self.builtin_policy.clone(),
            },
            reference_values: self.reference_values.clone(),
            trust_anchors: self.trust_anchors.clone(),
            sim_platform_keys: self.sim_platform_keys.clone(),
        }
    }
}

#[derive(Subcommand)]
pub(crate) enum InstanceCommand {
    /// Create an attestation instance in your tenant (policy version 1, token key, CA).
    Create {
        /// 1-64 of a-z, 0-9, '-', '_', '.'; unique in the tenant.
        name: String,
        #[command(flatten)]
        parts: InstanceParts,
        /// Lifetime of the EAR tokens it issues, seconds (workers renew at about two thirds).
        #[arg(long, default_value_t = 3600)]
        token_ttl: u64,
        /// Lifetime of the enclave certificates it issues, seconds.
        #[arg(long, default_value_t = 3600)]
        cert_ttl: u64,
        /// Never export this instance to a target service that does not attest itself, even
        /// with --allow-unattested-target, nor to one whose measurement is not given with
        /// --export-measurement (fixed at creation, shown by `instance show`).
        #[arg(long, requires = "export_measurement")]
        attested_exports_only: bool,
        /// With --attested-exports-only: the measurement (hex) of a service build this instance
        /// may be exported to; repeat for several. Fixed at creation: the instance's reference
        /// values, which admins update, never admit an export target.
        #[arg(long, value_name = "HEX", requires = "attested_exports_only")]
        export_measurement: Vec<String>,
        /// How EAR tokens are signed: `es256` (default) or `sm2` (ShangMi: SM2 with SM3, JWS alg
        /// `SM2SM3`, docs/formats/jws-sm2.md). Fixed at creation; key rotations keep it.
        #[arg(long, value_parser = ["es256", "sm2"], default_value = "es256")]
        token_signing: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List your instances.
    List {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Show an instance (exit 1 if it does not exist or is not yours).
    Show {
        /// Instance id (in_…).
        id: String,
        /// Print this policy version's Rego text instead.
        #[arg(long)]
        policy_version: Option<i64>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Change the policy (a new version), the reference values or the trust anchors.
    Update {
        /// Instance id.
        id: String,
        #[command(flatten)]
        parts: InstanceParts,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// New token-signing key; old keys stay in the JWKS until their tokens expire.
    Rotate {
        /// Instance id.
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Seal the instance (policy history, reference values, anchors, keys) to another service.
    Export {
        /// Instance id.
        id: String,
        /// The target service's URL, or a file with its `GET /v1/service-key` document.
        #[arg(long)]
        target: String,
        /// Your tenant id on the target service (`tn_…`): only that tenant can import it.
        #[arg(long)]
        target_tenant: String,
        /// Where to write the sealed bundle.
        #[arg(long)]
        output: PathBuf,
        /// Allow a target whose key comes without an attestation (it does not run in a TEE).
        #[arg(long)]
        allow_unattested_target: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Import a bundle sealed to this service into your tenant.
    Import {
        /// The bundle file.
        bundle: PathBuf,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Delete an instance and destroy its keys.
    Delete {
        /// Instance id.
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Subcommand)]
pub(crate) enum KeyCommand {
    /// Register a key-broker key with its release policy.
    Register {
        /// Unique in the tenant.
        name: String,
        /// Instance whose attestation results the key accepts. Repeatable.
        #[arg(long = "instance", required = true)]
        instances: Vec<String>,
        /// Release policy, a Rego file (`package cloister.release`, rule `allow`).
        #[arg(long, conflicts_with = "measurements")]
        release_policy: Option<PathBuf>,
        /// Or: release to enclaves with one of these measurements (hex). Repeatable.
        #[arg(long = "measurement")]
        measurements: Vec<String>,
        /// Register this secret key (envelope key file) instead of a fresh one.
        #[arg(long)]
        secret_key: Option<PathBuf>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List your broker keys.
    List {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Show a broker key.
    Show {
        /// Key id (kb_…).
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Revoke a broker key: no release from now on.
    Revoke {
        /// Key id (kb_…).
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Subcommand)]
pub(crate) enum AuditCommand {
    /// Check the audit log's hash chain and signed checkpoints in the database; exit 0 only
    /// when intact, otherwise name every altered, removed or reordered entry.
    Verify {
        /// `sqlite://PATH` or `postgres://…`.
        #[arg(long, env = "CLOISTER_DATABASE")]
        database: String,
        /// The service's signing key, which signs the checkpoints: its text
        /// (`cloister-es256:…`), a file holding it, or its fingerprint (64 hex digits, as the
        /// service prints at start and publishes at /v1/service-key). Required: the copy in the
        /// database being checked is never trusted.
        #[arg(long)]
        service_key: String,
        /// A checkpoint you hold (from a receipt or an EAR token), as SEQ:HASH; repeat for
        /// several. The log must still contain it: a database rolled back behind it fails.
        #[arg(long = "expect-checkpoint")]
        expect_checkpoints: Vec<String>,
        /// One JSON line.
        #[arg(long)]
        json: bool,
    },
    /// List audit records through the service (operator: all; tenant admin: its own), oldest
    /// first, one page at a time: when more match, the next page's command is printed on
    /// standard error.
    List {
        /// Only records of this kind (attestation, key.released, instance.created, …).
        #[arg(long)]
        kind: Option<String>,
        /// Only records about this instance, key (kb_…) or data set.
        #[arg(long, visible_alias = "instance", value_name = "ID")]
        subject: Option<String>,
        /// Only records at or after this time (RFC 3339, e.g. 2026-01-31T00:00:00Z).
        #[arg(long, value_parser = rfc3339_time, value_name = "TIME")]
        since: Option<i64>,
        /// Only records at or before this time (RFC 3339).
        #[arg(long, value_parser = rfc3339_time, value_name = "TIME")]
        until: Option<i64>,
        /// Only records after this seq: the last seq of the previous page.
        #[arg(long, value_name = "SEQ")]
        after: Option<i64>,
        /// At most this many records (1-1000).
        #[arg(long, default_value_t = 100,
              value_parser = clap::value_parser!(u32).range(1..=i64::from(AuditQuery::MAX_LIMIT)))]
        limit: u32,
        #[command(flatten)]
        server: ServerArgs,
    },
}

pub(crate) async fn tenant(command: TenantCommand) -> Result<()> {
    match command {
        TenantCommand::Create { name, server } => {
            admin::tenant_create(&server.connection()?, &name).await
        }
        TenantCommand::List { server } => admin::tenant_list(&server.connection()?).await,
    }
}

pub(crate) async fn instance(command: InstanceCommand) -> Result<()> {
    match command {
        InstanceCommand::Create {
            name,
            parts,
            token_ttl,
            cert_ttl,
            attested_exports_only,
            export_measurement,
            token_signing,
            server,
        } => {
            let token_signing = match token_signing.as_str() {
                "sm2" => cloister_types::manage::TokenSigning::Sm2,
                _ => cloister_types::manage::TokenSigning::Es256,
            };
            let settings = cloister_types::manage::InstanceSettings {
                token_ttl_secs: token_ttl,
                cert_ttl_secs: cert_ttl,
                attested_exports_only,
                export_measurements: export_measurement
                    .iter()
                    .map(|m| m.trim().to_ascii_lowercase())
                    .collect(),
                token_signing,
                ..Default::default()
            };
            admin::instance_create(&server.connection()?, &name, &parts.args(), settings).await
        }
        InstanceCommand::List { server } => admin::instance_list(&server.connection()?).await,
        InstanceCommand::Show { id, policy_version, server } => {
            admin::instance_show(&server.connection()?, &id, policy_version).await
        }
        InstanceCommand::Update { id, parts, server } => {
            admin::instance_update(&server.connection()?, &id, &parts.args()).await
        }
        InstanceCommand::Rotate { id, server } => {
            admin::instance_rotate(&server.connection()?, &id).await
        }
        InstanceCommand::Export {
            id,
            target,
            target_tenant,
            output,
            allow_unattested_target,
            server,
        } => {
            admin::instance_export(
                &server.connection()?,
                &id,
                &target,
                &target_tenant,
                &output,
                allow_unattested_target,
            )
            .await
        }
        InstanceCommand::Import { bundle, server } => {
            admin::instance_import(&server.connection()?, &bundle).await
        }
        InstanceCommand::Delete { id, server } => {
            admin::instance_delete(&server.connection()?, &id).await
        }
    }
}

pub(crate) async fn key(command: KeyCommand) -> Result<()> {
    match command {
        KeyCommand::Register {
            name,
            instances,
            release_policy,
            measurements,
            secret_key,
            server,
        } => {
            admin::key_register(
                &server.connection()?,
                &name,
                &instances,
                release_policy.as_deref(),
                &measurements,
                secret_key.as_deref(),
            )
            .await
        }
        KeyCommand::List { server } => admin::key_list(&server.connection()?).await,
        KeyCommand::Show { id, server } => admin::key_show(&server.connection()?, &id).await,
        KeyCommand::Revoke { id, server } => admin::key_revoke(&server.connection()?, &id).await,
    }
}

pub(crate) fn audit(command: AuditCommand) -> Result<()> {
    match command {
        AuditCommand::Verify { database, service_key, expect_checkpoints, json } => {
            let intact = runtime()?.block_on(admin::audit_verify(
                &database,
                &service_key,
                &expect_checkpoints,
                json,
            ))?;
            if !intact {
                std::process::exit(1);
            }
            Ok(())
        }
        AuditCommand::List { kind, subject, since, until, after, limit, server } => {
            let query = AuditQuery { kind, subject, since, until, after, limit: Some(limit) };
            runtime()?.block_on(admin::audit_list(&server.connection()?, &query))
        }
    }
}

/// A time flag's value: RFC 3339, as Unix seconds.
fn rfc3339_time(text: &str) -> Result<i64, String> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map(time::OffsetDateTime::unix_timestamp)
        .map_err(|_| format!("{text:?} is not an RFC 3339 time (2026-01-31T00:00:00Z)"))
}
