//! Serving from the command line, as the model owner: `cloister serving-policy create|show` (who
//! may call which model versions, how much, on which engine, whether layers may be offloaded),
//! and `cloister model deploy|undeploy|deployments` against an attested worker.
//!
//! `model deploy` reads the signed manifest from the repository the owner imported into and
//! checks, before anything is sent, that the owner's key signed it and the policy, that the
//! policy is in a schema this build reads and covers the version. The worker then checks all of
//! it again with the owner key the request names, gets the weights' key from the broker and
//! verifies every file. `model undeploy` signs a short-lived request naming the deployment
//! exactly (model, digest, policy); the worker accepts it only from the owner recorded at deploy.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cloister_repository::Repository;
use cloister_sign::{Signed, SigningKey, VerifyingKey, unix_now};
use cloister_types::model::{
    DeployModel, Deployment, MAX_OFFLOAD_TIMEOUT_MS, OffloadFallback, OffloadPolicy, OnnxEngine,
    RequesterLimits, SERVING_POLICY_SCHEMA, ServingPolicy, UndeployModel, UndeployStatement,
    check_model_name,
};
use serde::Serialize;

use crate::job::WorkerTarget;
use crate::model::{parse_model_id, text_or_file};
use crate::parties::read_signing_key;

/// How long a serving policy is valid when `--valid-for` is not given.
pub const DEFAULT_POLICY_VALIDITY: &str = "30d";

/// How long an undeploy request is valid: long enough to reach the worker, short enough that a
/// captured one is soon useless (the worker accepts at most 10 minutes).
const UNDEPLOY_VALIDITY: Duration = Duration::from_secs(120);

/// The prefix of a party public key's text form.
const PUBLIC_KEY_PREFIX: &str = "cloister-es256:";

/// What `cloister serving-policy create` was asked.
#[derive(Clone, Debug)]
pub struct PolicyArgs {
    /// The model's name.
    pub model: String,
    /// The versions covered (at least one).
    pub versions: Vec<String>,
    /// `KEY[,rpm=N][,quota=N]` per requester.
    pub requesters: Vec<String>,
    /// Requests per minute for a requester that names none.
    pub requests_per_minute: u32,
    /// Token quota for a requester that names none; `None` = unlimited.
    pub token_quota: Option<u64>,
    /// The ONNX engine.
    pub engine: OnnxEngine,
    /// `never` or `public`.
    pub offload: String,
    /// With `--offload public`: `fail` or `enclave`.
    pub on_failure: Option<String>,
    /// With `--offload public`: the accelerator's deadline.
    pub offload_timeout_ms: Option<u64>,
    /// The owner's signing key file.
    pub signing_key: PathBuf,
    /// How long the policy is valid (`30d`, `12h`, …).
    pub valid_for: String,
    /// Where to write the compact JWS.
    pub output: PathBuf,
}

/// Parses a duration: a whole number followed by `s`, `m`, `h` or `d` (`90m`, `30d`).
pub fn parse_duration(text: &str) -> Result<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let bad = || anyhow::anyhow!("{text:?} is not a duration: write e.g. 3600s, 90m, 12h or 30d");
    let number: u64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "s" => Some(number),
        "m" => number.checked_mul(60),
        "h" => number.checked_mul(3600),
        "d" => number.checked_mul(86_400),
        _ => return Err(bad()),
    }
    .ok_or_else(bad)?;
    ensure!(seconds > 0, "the duration {text:?} is zero");
    Ok(Duration::from_secs(seconds))
}

/// Unix seconds as RFC 3339 (UTC), for people: what every human (not `--json`) output shows.
pub fn rfc3339<T: TryInto<i64> + Copy + std::fmt::Display>(unix: T) -> String {
    unix.try_into()
        .ok()
        .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| format!("{unix} (Unix time)"))
}

/// Parses one `--requester KEY[,rpm=N][,quota=N]`: KEY is a party public key (`cloister-es256:…`)
/// or a file holding one; `rpm` and `quota` override the defaults given.
pub fn parse_requester(
    spec: &str,
    default_rpm: u32,
    default_quota: Option<u64>,
) -> Result<RequesterLimits> {
    let mut parts = spec.split(',');
    let key = parts.next().unwrap_or_default();
    let text = text_or_file(key, PUBLIC_KEY_PREFIX)
        .with_context(|| format!("--requester {spec}: reading the requester's public key"))?;
    let key = VerifyingKey::from_text(&text).with_context(|| {
        format!("--requester {spec}: not a party public key (`cloister keygen --signing --public`)")
    })?;
    let mut limits = RequesterLimits {
        requester: key.to_text(),
        requests_per_minute: default_rpm,
        token_quota: default_quota,
    };
    for part in parts {
        let (name, value) = part
            .split_once('=')
            .with_context(|| format!("--requester {spec}: {part:?} is not rpm=N or quota=N"))?;
        match name.trim() {
            "rpm" => {
                limits.requests_per_minute = value.trim().parse().with_context(|| {
                    format!("--requester {spec}: rpm={value} is not a whole number")
                })?;
            }
            "quota" => {
                limits.token_quota = Some(value.trim().parse().with_context(|| {
                    format!("--requester {spec}: quota={value} is not a whole number of tokens")
                })?);
            }
            other => bail!("--requester {spec}: unknown setting {other:?} (use rpm=N or quota=N)"),
        }
    }
    ensure!(
        limits.requests_per_minute > 0,
        "--requester {spec}: a rate of 0 requests per minute lets the requester do nothing"
    );
    Ok(limits)
}

/// The policy `args` describe, checked (names, at least one version and requester, no
/// requester twice, offload settings only with `--offload public`).
pub fn build_policy(args: &PolicyArgs) -> Result<ServingPolicy> {
    check_model_name("model name", &args.model)?;
    ensure!(!args.versions.is_empty(), "give the versions the policy covers with --version");
    for version in &args.versions {
        check_model_name("model version", version)?;
    }
    ensure!(!args.requesters.is_empty(), "give who may call the model with --requester");
    let mut requesters: Vec<RequesterLimits> = Vec::new();
    for spec in &args.requesters {
        let limits = parse_requester(spec, args.requests_per_minute, args.token_quota)?;
        ensure!(
            requesters.iter().all(|r| r.requester != limits.requester),
            "--requester {spec}: that key is named twice"
        );
        requesters.push(limits);
    }
    let offload = match args.offload.as_str() {
        "never" => {
            ensure!(
                args.on_failure.is_none() && args.offload_timeout_ms.is_none(),
                "--on-failure and --offload-timeout-ms apply only with --offload public"
            );
            OffloadPolicy::Never
        }
        "public" => {
            let on_failure = match args.on_failure.as_deref() {
                Some("fail") => OffloadFallback::Fail,
                Some("enclave") => OffloadFallback::Enclave,
                Some(other) => bail!("--on-failure {other:?}: use fail or enclave"),
                None => bail!(
                    "--offload public needs --on-failure fail|enclave: what a request does when \
                     the accelerator fails"
                ),
            };
            let timeout_ms = args
                .offload_timeout_ms
                .unwrap_or(cloister_types::model::DEFAULT_OFFLOAD_TIMEOUT_MS);
            ensure!(
                (1..=MAX_OFFLOAD_TIMEOUT_MS).contains(&timeout_ms),
                "--offload-timeout-ms {timeout_ms}: use 1 to {MAX_OFFLOAD_TIMEOUT_MS}"
            );
            OffloadPolicy::Public { on_failure, timeout_ms }
        }
        other => bail!("--offload {other:?}: use never or public"),
    };
    Ok(ServingPolicy {
        schema: Some(SERVING_POLICY_SCHEMA),
        model: args.model.clone(),
        versions: args.versions.clone(),
        requesters,
        engine: args.engine,
        offload,
    })
}

/// `cloister serving-policy create`: signs the policy and writes it (a compact JWS).
pub fn create_policy(args: &PolicyArgs) -> Result<()> {
    let policy = build_policy(args)?;
    let valid_for = parse_duration(&args.valid_for).context("--valid-for")?;
    let key = read_signing_key(&args.signing_key)?;
    let now = unix_now();
    let jws = key.sign("serving policy", &policy, now, valid_for)?;
    crate::testbed::refuse_overwrite(&[&args.output])?;
    std::fs::write(&args.output, format!("{jws}\n"))
        .with_context(|| format!("writing {}", args.output.display()))?;
    let expires = now.saturating_add(valid_for.as_secs());
    eprintln!(
        "serving policy for {} ({}) signed by {}, valid until {}: {}",
        policy.model,
        policy.versions.join(", "),
        key.public_key(),
        rfc3339(expires),
        args.output.display()
    );
    Ok(())
}

/// The issuer a compact JWS names (`iss`), read without verifying anything.
fn peek_issuer(jws: &str) -> Option<String> {
    let payload = jws.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    value.get("iss")?.as_str().map(str::to_owned)
}

/// Reads a serving policy file and verifies it at `now` with `owner` (or, when `None`, with the
/// key it names: that proves only that it is intact), in a schema this build reads. Returns the
/// key it verified with and the verified policy.
pub fn read_policy(
    path: &Path,
    owner: Option<&VerifyingKey>,
    now: u64,
) -> Result<(VerifyingKey, Signed<ServingPolicy>, String)> {
    let jws = std::fs::read_to_string(path)
        .with_context(|| format!("reading {}", path.display()))?
        .trim()
        .to_owned();
    let key = match owner {
        Some(key) => key.clone(),
        None => {
            let named = peek_issuer(&jws).with_context(|| {
                format!("{} is not a signed serving policy (compact JWS)", path.display())
            })?;
            VerifyingKey::from_text(&named)
                .with_context(|| format!("{} names an unusable signer", path.display()))?
        }
    };
    let signed = key
        .verify::<ServingPolicy>("serving policy", &jws, now)
        .with_context(|| format!("{} does not verify", path.display()))?;
    signed.claims.check_schema().with_context(|| format!("{}", path.display()))?;
    Ok((key, signed, jws))
}

/// Reads `--owner`: a party public key, or a file holding one.
fn owner_key(value: &str) -> Result<VerifyingKey> {
    let text = text_or_file(value, PUBLIC_KEY_PREFIX)?;
    VerifyingKey::from_text(&text).with_context(|| format!("--owner {value}: not a public key"))
}

#[derive(Serialize)]
struct PolicyJson<'a> {
    signer: String,
    owner_pinned: bool,
    issued_at: u64,
    expires_at: u64,
    policy: &'a ServingPolicy,
}

/// `cloister serving-policy show FILE [--owner KEY]`: verifies and prints the policy.
pub fn show_policy(path: &Path, owner: Option<&str>, json: bool) -> Result<()> {
    let pinned = owner.map(owner_key).transpose()?;
    let (key, signed, _) = read_policy(path, pinned.as_ref(), unix_now())?;
    let policy = &signed.claims;
    if json {
        let out = PolicyJson {
            signer: key.to_text(),
            owner_pinned: pinned.is_some(),
            issued_at: signed.issued_at,
            expires_at: signed.expires_at,
            policy,
        };
        println!("{}", serde_json::to_string(&out)?);
        return Ok(());
    }
    if pinned.is_none() {
        eprintln!(
            "note: the signer is not pinned; the policy is checked against the key it names. \
             Give --owner to check who signed it."
        );
    }
    println!("serving policy for model {}", policy.model);
    println!("  schema         {}", policy.schema_version());
    println!(
        "  signed by      {} ({})",
        key,
        if pinned.is_some() { "pinned with --owner" } else { "as the policy names it, not pinned" }
    );
    println!("  signed at      {}", rfc3339(signed.issued_at));
    println!("  expires        {}", rfc3339(signed.expires_at));
    println!("  versions       {}", policy.versions.join(", "));
    println!("  engine         {} (ONNX models only)", policy.engine.as_str());
    match policy.offload {
        OffloadPolicy::Never => println!("  offload        never (every layer in the enclave)"),
        OffloadPolicy::Public { on_failure, timeout_ms } => println!(
            "  offload        public weights: linear layers may run on the accelerator; on \
             failure {}; timeout {timeout_ms} ms",
            match on_failure {
                OffloadFallback::Fail => "fail",
                OffloadFallback::Enclave => "enclave",
            }
        ),
    }
    for requester in &policy.requesters {
        println!(
            "  requester      {}  {} requests/minute, {}",
            requester.requester,
            requester.requests_per_minute,
            requester
                .token_quota
                .map_or_else(|| "no token quota".to_owned(), |q| format!("{q} tokens"))
        );
    }
    Ok(())
}

/// What `cloister model deploy` was asked.
pub struct DeployArgs<'a> {
    /// `NAME@VERSION`.
    pub model: &'a str,
    /// The serving policy file (compact JWS).
    pub serving_policy: &'a Path,
    /// The owner's signing key file.
    pub signing_key: &'a Path,
}

/// `cloister model deploy NAME@VERSION`: checks the manifest (from `repo`) and the policy
/// against the owner's key, then asks the attested worker to deploy it.
pub async fn deploy(
    target: &WorkerTarget,
    repo: &Repository,
    args: &DeployArgs<'_>,
    json: bool,
) -> Result<()> {
    let (name, version) = parse_model_id(args.model)?;
    check_model_name("model name", name)?;
    check_model_name("model version", version)?;
    let owner = read_signing_key(args.signing_key)?.public_key();
    let now = unix_now();
    let verified = repo.verified_manifest(name, version, &owner, now).await.with_context(|| {
        format!(
            "{} in {}: the manifest must be signed by the key in {}",
            args.model,
            repo.location(),
            args.signing_key.display()
        )
    })?;
    let (_, policy, policy_jws) = read_policy(args.serving_policy, Some(&owner), now)
        .context("the serving policy must be signed by the model's owner (--signing-key)")?;
    ensure!(
        policy.claims.model == name,
        "{} is a policy for model {:?}, not {name:?}",
        args.serving_policy.display(),
        policy.claims.model
    );
    ensure!(
        policy.claims.versions.iter().any(|v| v == version),
        "{} covers versions {:?}, not {version:?}: nobody could call it",
        args.serving_policy.display(),
        policy.claims.versions
    );
    let client = target.client()?;
    let deployed = client
        .deploy_model(&DeployModel {
            manifest: verified.jws().to_owned(),
            owner: owner.to_text(),
            serving_policy: policy_jws,
        })
        .await
        .with_context(|| format!("deploying {} to {}", args.model, target.url))?;
    if json {
        println!("{}", serde_json::to_string(&deployed)?);
    } else {
        println!(
            "deployed {} (digest {}) at {}; its serving policy expires {}",
            deployed.model,
            deployed.digest,
            deployed.endpoint,
            rfc3339(policy.expires_at)
        );
    }
    Ok(())
}

/// `cloister model undeploy NAME@VERSION`: signs a request naming the deployment the worker lists
/// for that model, valid two minutes, and sends it.
pub async fn undeploy(target: &WorkerTarget, model: &str, signing_key: &Path) -> Result<()> {
    let (name, version) = parse_model_id(model)?;
    check_model_name("model name", name)?;
    check_model_name("model version", version)?;
    let key: SigningKey = read_signing_key(signing_key)?;
    let client = target.client()?;
    let deployments = client.deployments().await?;
    let deployment = deployments
        .iter()
        .find(|d| d.model == model)
        .with_context(|| format!("{model} is not deployed on {}", target.url))?;
    let statement = UndeployStatement {
        model: deployment.model.clone(),
        digest: deployment.digest.clone(),
        serving_policy_sha256: deployment.serving_policy_sha256.clone(),
    };
    let request = key.sign("model undeploy", &statement, unix_now(), UNDEPLOY_VALIDITY)?;
    let ended = client
        .undeploy_model(model, &UndeployModel { request })
        .await
        .with_context(|| format!("undeploying {model} from {}", target.url))?;
    println!("undeployed {} (digest {}); it is not restored at restart", ended.model, ended.digest);
    Ok(())
}

/// `cloister model deployments`: what the worker serves, for whom, until when.
pub async fn deployments(target: &WorkerTarget, json: bool) -> Result<()> {
    let deployments = target.client()?.deployments().await?;
    if json {
        println!("{}", serde_json::to_string(&deployments)?);
        return Ok(());
    }
    if deployments.is_empty() {
        println!("nothing deployed on {}", target.url);
    }
    for d in &deployments {
        println!("{}", describe_deployment(d));
    }
    Ok(())
}

fn describe_deployment(d: &Deployment) -> String {
    let owner = VerifyingKey::from_text(&d.owner)
        .map(|k| k.fingerprint_hex())
        .unwrap_or_else(|_| "unreadable".to_owned());
    let policy: String = d.serving_policy_sha256.to_string().chars().take(16).collect();
    [
        d.model.clone(),
        format!("  digest         {}", d.digest),
        format!("  serves         {}", d.endpoint),
        format!("  owner          {} (fingerprint {owner})", d.owner),
        format!("  policy         {policy}… (schema {})", d.serving_policy_schema),
        format!("  policy expires {}", rfc3339(d.policy_expires_at)),
        format!(
            "  deployed       {}{}",
            rfc3339(d.deployed_at),
            if d.restored { " (restored at the worker's start)" } else { "" }
        ),
    ]
    .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> PolicyArgs {
        PolicyArgs {
            model: "m".into(),
            versions: vec!["1".into()],
            requesters: vec![],
            requests_per_minute: 60,
            token_quota: None,
            engine: OnnxEngine::Auto,
            offload: "never".into(),
            on_failure: None,
            offload_timeout_ms: None,
            signing_key: PathBuf::new(),
            valid_for: "30d".into(),
            output: PathBuf::new(),
        }
    }

    #[test]
    fn durations_parse_with_a_unit() {
        assert_eq!(parse_duration("30d").unwrap(), Duration::from_secs(30 * 86_400));
        assert_eq!(parse_duration("90m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("12h").unwrap(), Duration::from_secs(43_200));
        assert_eq!(parse_duration("7s").unwrap(), Duration::from_secs(7));
        for bad in ["", "30", "d", "0d", "1w", "-1d", "1.5h", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn requesters_take_their_own_limits_or_the_defaults() {
        let key = SigningKey::generate().public_key().to_text();
        let plain = parse_requester(&key, 60, Some(5)).unwrap();
        assert_eq!((plain.requests_per_minute, plain.token_quota), (60, Some(5)));
        let own = parse_requester(&format!("{key},rpm=5,quota=100"), 60, None).unwrap();
        assert_eq!((own.requests_per_minute, own.token_quota), (5, Some(100)));
        for bad in [
            format!("{key},rpm=x"),
            format!("{key},burst=2"),
            format!("{key},quota"),
            format!("{key},rpm=0"),
            "cloister-es256:nope".to_owned(),
        ] {
            assert!(parse_requester(&bad, 60, None).is_err(), "{bad}");
        }
        let twice = PolicyArgs { requesters: vec![key.clone(), key.clone()], ..args() };
        assert!(build_policy(&twice).unwrap_err().to_string().contains("named twice"));
        let policy = build_policy(&PolicyArgs { requesters: vec![key.clone()], ..args() }).unwrap();
        assert_eq!(policy.schema, Some(SERVING_POLICY_SCHEMA));
    }

    #[test]
    fn policies_are_checked_before_signing() {
        let key = SigningKey::generate().public_key().to_text();
        let with = |f: &dyn Fn(&mut PolicyArgs)| {
            let mut a = PolicyArgs { requesters: vec![key.clone()], ..args() };
            f(&mut a);
            build_policy(&a)
        };
        assert!(with(&|_| {}).is_ok());
        assert!(with(&|a| a.requesters.clear()).is_err());
        assert!(with(&|a| a.versions.clear()).is_err());
        assert!(with(&|a| a.model = "Bad Name".into()).is_err());
        assert!(with(&|a| a.offload = "public".into()).is_err(), "on_failure is required");
        assert!(with(&|a| a.on_failure = Some("fail".into())).is_err(), "only with public");
        assert!(with(&|a| a.offload = "always".into()).is_err());
        let public = with(&|a| {
            a.offload = "public".into();
            a.on_failure = Some("enclave".into());
            a.offload_timeout_ms = Some(250);
        })
        .unwrap();
        assert_eq!(
            public.offload,
            OffloadPolicy::Public { on_failure: OffloadFallback::Enclave, timeout_ms: 250 }
        );
        assert!(
            with(&|a| {
                a.offload = "public".into();
                a.on_failure = Some("fail".into());
                a.offload_timeout_ms = Some(MAX_OFFLOAD_TIMEOUT_MS + 1);
            })
            .is_err()
        );
    }
}
