//! The operator's and tenant admins' commands: `tenant`, `instance`, `key` and `audit`, as
//! clients of the attestation service's management API (and `audit verify` on the database).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use cloister_authority::store::Store;
use cloister_client::ServiceClient;
use cloister_types::Hex;
use cloister_types::manage::{
    AuditQuery, AuditRecordView, CreateInstance, ExportRequest, InstanceSettings, InstanceView,
    KeyView, PolicySpec, RegisterKey, TrustAnchorSpec,
};
use serde::Serialize;

use crate::serving::rfc3339;

/// How a client command reaches the service.
#[derive(Clone, Debug)]
pub struct Connection {
    /// Base URL.
    pub server: String,
    /// Bearer token.
    pub token: Option<String>,
    /// How the service's TLS certificate is verified.
    pub tls: cloister_client::ServiceTls,
    /// Print JSON instead of text.
    pub json: bool,
}

impl Connection {
    fn client(&self) -> Result<ServiceClient> {
        Ok(ServiceClient::with_tls(&self.server, self.token.as_deref(), &self.tls)?)
    }

    fn print<T: Serialize>(&self, value: &T, text: impl FnOnce(&T) -> String) -> Result<()> {
        if self.json {
            println!("{}", serde_json::to_string(value)?);
        } else {
            println!("{}", text(value));
        }
        Ok(())
    }
}

/// A policy given on the command line: a Rego file or a built-in name.
#[derive(Clone, Debug, Default)]
pub struct PolicyArgs {
    /// `--policy-file`.
    pub file: Option<PathBuf>,
    /// `--builtin-policy`.
    pub builtin: Option<String>,
}

impl PolicyArgs {
    fn spec(&self) -> Result<Option<PolicySpec>> {
        match (&self.file, &self.builtin) {
            (Some(_), Some(_)) => bail!("give --policy-file or --builtin-policy, not both"),
            (Some(path), None) => Ok(Some(PolicySpec::Rego(read_text(path)?))),
            (None, Some(name)) => Ok(Some(PolicySpec::Builtin(name.clone()))),
            (None, None) => Ok(None),
        }
    }
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn read_json(path: &Path) -> Result<serde_json::Value> {
    serde_json::from_str(&read_text(path)?)
        .with_context(|| format!("{} is not JSON", path.display()))
}

/// A sim platform key given as its text or as a file holding it.
fn sim_key_text(value: &str) -> Result<String> {
    if value.starts_with("cloister-sim-platform") {
        return Ok(value.to_owned());
    }
    Ok(read_text(Path::new(value))?.trim().to_owned())
}

/// `tenant create NAME`.
pub async fn tenant_create(conn: &Connection, name: &str) -> Result<()> {
    let created = conn.client()?.create_tenant(name).await?;
    conn.print(&created, |c| {
        format!("tenant {} ({})\ntoken {}", c.tenant.name, c.tenant.id, c.token)
    })
}

/// `tenant list`.
pub async fn tenant_list(conn: &Connection) -> Result<()> {
    let tenants = conn.client()?.list_tenants().await?;
    conn.print(&tenants, |list| {
        list.iter().map(|t| format!("{}  {}", t.id, t.name)).collect::<Vec<_>>().join("\n")
    })
}

/// What `instance create` and `instance update` take besides the name or id.
#[derive(Clone, Debug, Default)]
pub struct InstanceArgs {
    /// The policy.
    pub policy: PolicyArgs,
    /// Reference values JSON file.
    pub reference_values: Option<PathBuf>,
    /// Trust anchors JSON file (`{"sim_platform_keys": [...], "roots": {...}, "test_roots":
    /// {...}}`).
    pub trust_anchors: Option<PathBuf>,
    /// Sim platform keys (text or file), added to the trust anchors.
    pub sim_platform_keys: Vec<String>,
}

impl InstanceArgs {
    fn anchors(&self) -> Result<Option<TrustAnchorSpec>> {
        let mut spec = match &self.trust_anchors {
            Some(path) => serde_json::from_value(read_json(path)?)
                .with_context(|| format!("{} is not a trust anchor document", path.display()))?,
            None if self.sim_platform_keys.is_empty() => return Ok(None),
            None => TrustAnchorSpec::default(),
        };
        for key in &self.sim_platform_keys {
            spec.sim_platform_keys.push(sim_key_text(key)?);
        }
        Ok(Some(spec))
    }
}

fn instance_text(view: &InstanceView) -> String {
    let versions: Vec<String> = view
        .policy_versions
        .iter()
        .map(|v| {
            format!(
                "  v{} {} sha256:{}",
                v.version,
                v.builtin.as_deref().map_or("custom".to_owned(), |b| format!("builtin:{b}")),
                &v.rego_sha256[..16]
            )
        })
        .collect();
    let keys: Vec<String> = view
        .token_keys
        .iter()
        .map(|k| match k.keep_until {
            None => format!("  {} (current)", k.kid),
            Some(until) => {
                format!("  {} (retired, in the JWKS until {})", k.kid, rfc3339(until))
            }
        })
        .collect();
    format!(
        "instance {} ({})\npolicy {}\npolicy versions:\n{}\ntoken keys:\n{}\nsim platform keys: {}\n\
         test roots: {}\ntokens live {} s ({}), certificates {} s; exports: {}",
        view.name,
        view.id,
        view.policy_id,
        versions.join("\n"),
        keys.join("\n"),
        view.trust_anchors.sim_platform_keys.len(),
        test_roots_text(&view.trust_anchors),
        view.settings.token_ttl_secs,
        match view.settings.token_signing {
            cloister_types::manage::TokenSigning::Es256 => "ES256",
            cloister_types::manage::TokenSigning::Sm2 => "SM2SM3",
        },
        view.settings.cert_ttl_secs,
        if view.settings.attested_exports_only {
            format!(
                "only to services that attest themselves as one of {}",
                view.settings.export_measurements.join(", ")
            )
        } else {
            "unattested targets allowed when the exporter says so".to_owned()
        }
    )
}

/// The test roots an instance names, per TEE (`none` in production), so `instance show`
/// says plainly when an instance accepts development evidence.
fn test_roots_text(anchors: &TrustAnchorSpec) -> String {
    let listed: Vec<String> = anchors
        .test_roots
        .iter()
        .filter(|(_, roots)| !roots.is_empty())
        .map(|(tee, roots)| format!("{tee} {} (development only)", roots.len()))
        .collect();
    if listed.is_empty() { "none".to_owned() } else { listed.join(", ") }
}

/// `instance create NAME`.
pub async fn instance_create(
    conn: &Connection,
    name: &str,
    args: &InstanceArgs,
    settings: InstanceSettings,
) -> Result<()> {
    let request = CreateInstance {
        name: name.to_owned(),
        policy: args.policy.spec()?.unwrap_or_default(),
        reference_values: match &args.reference_values {
            Some(path) => read_json(path)?,
            None => serde_json::json!({}),
        },
        trust_anchors: args.anchors()?.unwrap_or_default(),
        settings,
    };
    let view = conn.client()?.create_instance(&request).await?;
    conn.print(&view, instance_text)
}

/// `instance list`.
pub async fn instance_list(conn: &Connection) -> Result<()> {
    let views = conn.client()?.list_instances().await?;
    conn.print(&views, |list| {
        list.iter()
            .map(|v| format!("{}  {}  {}", v.id, v.name, v.policy_id))
            .collect::<Vec<_>>()
            .join("\n")
    })
}

/// `instance show ID [--policy-version N]`.
pub async fn instance_show(conn: &Connection, id: &str, version: Option<i64>) -> Result<()> {
    let client = conn.client()?;
    match version {
        Some(version) => {
            let view = client.policy_version(id, version).await?;
            conn.print(&view, |v| v.rego.clone().unwrap_or_default())
        }
        None => {
            let view = client.show_instance(id).await?;
            conn.print(&view, instance_text)
        }
    }
}

/// `instance update ID`: each given part becomes a change (a new policy version, new reference
/// values, new trust anchors).
pub async fn instance_update(conn: &Connection, id: &str, args: &InstanceArgs) -> Result<()> {
    let client = conn.client()?;
    let mut changed = false;
    if let Some(spec) = args.policy.spec()? {
        client.update_policy(id, &spec).await?;
        changed = true;
    }
    if let Some(path) = &args.reference_values {
        client.set_reference_values(id, &read_json(path)?).await?;
        changed = true;
    }
    if let Some(anchors) = args.anchors()? {
        client.set_trust_anchors(id, &anchors).await?;
        changed = true;
    }
    if !changed {
        bail!(
            "nothing to update: give --policy-file, --builtin-policy, --reference-values, \
             --trust-anchors or --sim-platform-key"
        );
    }
    let view = client.show_instance(id).await?;
    conn.print(&view, instance_text)
}

/// `instance rotate ID`.
pub async fn instance_rotate(conn: &Connection, id: &str) -> Result<()> {
    let view = conn.client()?.rotate(id).await?;
    conn.print(&view, instance_text)
}

/// `instance delete ID`.
pub async fn instance_delete(conn: &Connection, id: &str) -> Result<()> {
    conn.client()?.delete_instance(id).await?;
    conn.print(&serde_json::json!({ "deleted": id }), |_| format!("deleted {id}"))
}

/// `instance export ID --target URL --target-tenant TN --output FILE`.
pub async fn instance_export(
    conn: &Connection,
    id: &str,
    target: &str,
    target_tenant: &str,
    output: &Path,
    allow_unattested: bool,
) -> Result<()> {
    let document = if target.starts_with("http://") || target.starts_with("https://") {
        // The target service is reached with the same TLS settings as this one.
        ServiceClient::with_tls(target, None, &conn.tls)?.service_key().await?
    } else {
        read_json(Path::new(target))?
    };
    let request = ExportRequest {
        target: document,
        target_tenant: target_tenant.to_owned(),
        allow_unattested_target: allow_unattested,
    };
    let bundle = conn.client()?.export_instance(id, &request).await?;
    std::fs::write(output, &bundle).with_context(|| format!("writing {}", output.display()))?;
    conn.print(
        &serde_json::json!({ "exported": id, "bundle": output, "bytes": bundle.len() }),
        |_| format!("exported {id} to {} ({} bytes)", output.display(), bundle.len()),
    )
}

/// `instance import FILE`.
pub async fn instance_import(conn: &Connection, bundle: &Path) -> Result<()> {
    let bytes = std::fs::read(bundle).with_context(|| format!("reading {}", bundle.display()))?;
    let view = conn.client()?.import_instance(bytes).await?;
    conn.print(&view, instance_text)
}

fn key_text(view: &KeyView) -> String {
    format!(
        "key {} ({})\nkey id {}\nrecipient {}\ninstances {}\n{}",
        view.name,
        view.id,
        view.key_id,
        view.recipient,
        view.instances.join(", "),
        match view.revoked_at {
            Some(at) => format!("revoked at {}", rfc3339(at)),
            None => "active".to_owned(),
        }
    )
}

/// `key register NAME`.
pub async fn key_register(
    conn: &Connection,
    name: &str,
    instances: &[String],
    policy_file: Option<&Path>,
    measurements: &[String],
    secret_key: Option<&Path>,
) -> Result<()> {
    let release_policy = match (policy_file, measurements.is_empty()) {
        (Some(path), true) => read_text(path)?,
        (None, false) => {
            let measurements = measurements
                .iter()
                .map(|m| Hex::parse(m).with_context(|| format!("--measurement {m} is not hex")))
                .collect::<Result<Vec<_>>>()?;
            cloister_policy::ReleasePolicy::template(&measurements)
        }
        _ => bail!("give the release policy: --release-policy FILE or --measurement HEX..."),
    };
    let secret_key = match secret_key {
        Some(path) => Some(read_text(path)?.trim().to_owned()),
        None => None,
    };
    let request = RegisterKey {
        name: name.to_owned(),
        secret_key,
        release_policy,
        instances: instances.to_vec(),
    };
    let view = conn.client()?.register_key(&request).await?;
    conn.print(&view, key_text)
}

/// `key list`.
pub async fn key_list(conn: &Connection) -> Result<()> {
    let keys = conn.client()?.list_keys().await?;
    conn.print(&keys, |list| {
        list.iter()
            .map(|k| format!("{}  {}  {}", k.id, k.name, k.key_id))
            .collect::<Vec<_>>()
            .join("\n")
    })
}

/// `key show ID`.
pub async fn key_show(conn: &Connection, id: &str) -> Result<()> {
    let view = conn.client()?.show_key(id).await?;
    conn.print(&view, key_text)
}

/// `key revoke ID`.
pub async fn key_revoke(conn: &Connection, id: &str) -> Result<()> {
    let view = conn.client()?.revoke_key(id).await?;
    conn.print(&view, key_text)
}

/// `audit list`: one page of the records `query` selects; when the page is full, the flags that
/// fetch the next one go to standard error.
pub async fn audit_list(conn: &Connection, query: &AuditQuery) -> Result<()> {
    let records = conn.client()?.audit_page(query).await?;
    conn.print(&records, |list| {
        if list.is_empty() {
            return "no audit records match".to_owned();
        }
        list.iter()
            .map(|r| {
                format!(
                    "{:>6} {} {:<18} {:<8} {} {}",
                    r.seq,
                    rfc3339(r.at),
                    r.kind,
                    r.outcome,
                    r.actor,
                    r.subject
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    if let Some(hint) = next_page_hint(query, &records) {
        eprintln!("{hint}");
    }
    Ok(())
}

/// What to add to `audit list` for the page after `page`, when `page` is full.
fn next_page_hint(query: &AuditQuery, page: &[AuditRecordView]) -> Option<String> {
    let size = usize::try_from(query.page_size()?).ok()?;
    let last = page.last()?;
    (page.len() >= size).then(|| {
        format!("more records may follow: repeat with --after {} for the next page", last.seq)
    })
}

/// `audit verify`: checks the hash chain and the signed checkpoints of the audit log in
/// `database` with the service key the caller pins (`service_key`: key text, a file holding it,
/// or the key's fingerprint, which then must match the key the database records), and that every
/// checkpoint in `expected` (`SEQ:HASH`, from receipts or EAR tokens) is still in the log.
pub async fn audit_verify(
    database: &str,
    service_key: &str,
    expected: &[String],
    json: bool,
) -> Result<bool> {
    let expected = expected
        .iter()
        .map(|text| {
            let (seq, hash) = text
                .split_once(':')
                .with_context(|| format!("--expect-checkpoint {text:?} is not SEQ:HASH"))?;
            let seq: i64 =
                seq.parse().with_context(|| format!("--expect-checkpoint {text:?}: bad SEQ"))?;
            Ok((seq, hash.to_owned()))
        })
        .collect::<Result<Vec<_>>>()?;
    if let Some(path) = sqlite_file(database) {
        anyhow::ensure!(
            path.is_file(),
            "the database {} does not exist: give the path of the service's database \
             (audit verify never creates one)",
            path.display()
        );
    }
    let store = Store::connect(database)
        .await
        .with_context(|| format!("opening {}", cloister_authority::store::redact(database)))?;
    let key = pinned_service_key(&store, service_key).await?;
    let rows = store.audit_rows(None).await?;
    let checkpoints = store.checkpoints().await?;
    store.close().await;
    let report = cloister_authority::audit::verify_log(&rows, &checkpoints, &key);
    let mut problems: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
    for (seq, hash) in &expected {
        let held = checkpoints.iter().any(|c| c.seq == *seq && c.hash == *hash);
        let entry = rows.iter().find(|r| r.seq == *seq);
        if !held || entry.is_none_or(|r| r.hash != *hash) {
            problems.push(format!(
                "the checkpoint {seq}:{hash} you hold is not in this log: the log (or the whole \
                 database) was rolled back or replaced"
            ));
        }
    }
    let intact = problems.is_empty();
    if json {
        println!(
            "{}",
            serde_json::json!({
                "intact": intact, "entries": report.entries,
                "checkpoints": report.checkpoints, "last_seq": report.last_seq,
                "signed_through": report.signed_through, "problems": problems,
            })
        );
    } else if intact {
        println!(
            "audit log intact: {} entries, {} signed checkpoints, last entry {}",
            report.entries, report.checkpoints, report.last_seq
        );
        let unsigned = report.last_seq - report.signed_through;
        if unsigned > 0 {
            println!(
                "the last {unsigned} entries are not covered by a checkpoint yet: a log \
                 truncated before them would look intact (the service signs one within its \
                 --checkpoint-interval)"
            );
        }
    } else {
        for problem in &problems {
            println!("{problem}");
        }
        println!("audit log NOT intact: {} problem(s)", problems.len());
    }
    Ok(intact)
}

/// The file a `sqlite://PATH[?options]` database URL names; `None` for other databases.
fn sqlite_file(database: &str) -> Option<PathBuf> {
    let rest = database.strip_prefix("sqlite://")?;
    let path = rest.split_once('?').map_or(rest, |(path, _)| path);
    Some(PathBuf::from(path))
}

/// The service key `pinned` names: its text, a file holding the text, or its fingerprint. With a
/// fingerprint the key the database records is used only when its fingerprint matches.
async fn pinned_service_key(store: &Store, pinned: &str) -> Result<cloister_sign::VerifyingKey> {
    let pinned = pinned.trim();
    let is_fingerprint = pinned.len() == 64 && pinned.bytes().all(|b| b.is_ascii_hexdigit());
    if is_fingerprint {
        let recorded = store
            .meta("audit_public_key")
            .await?
            .context("the database records no service key: it was never opened by the service")?;
        let key = cloister_sign::VerifyingKey::from_text(&recorded)
            .context("the key the database records is not a verifying key")?;
        anyhow::ensure!(
            key.fingerprint_hex().eq_ignore_ascii_case(pinned),
            "the database records the service key {}, not the pinned {pinned}: its checkpoints \
             were not signed by the service you trust",
            key.fingerprint_hex()
        );
        return Ok(key);
    }
    let text = if pinned.starts_with("cloister-es256:") {
        pinned.to_owned()
    } else {
        std::fs::read_to_string(pinned)
            .with_context(|| format!("reading the service key {pinned}"))?
    };
    cloister_sign::VerifyingKey::from_text(text.trim())
        .context("--service-key is not a service signing key, a file holding one, or a fingerprint")
}
