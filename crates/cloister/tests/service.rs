//! The multi-tenant attestation service as operators script it: `cloister serve attestation`
//! processes on SQLite (and PostgreSQL when `CLOISTER_TEST_POSTGRES_URL` is set), driven by the
//! `cloister` client commands and plain HTTP. Covers every instance operation, migration between
//! two services, cross-tenant refusals on every route, audit tampering, restarts and logs.

// Helpers in integration tests are not #[test] functions; a failed setup should panic loudly.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cloister_attest::{Attester as _, SimAttester, SimPlatformKey};
use cloister_authority::http::ROUTES;
use cloister_client::{AuthorityClient, ServiceClient, ServiceTls};
use cloister_fakehw::dcap::DcapPlatform;
use cloister_sign::unix_now;
use cloister_types::api::AttestRequest;
use cloister_types::manage::{CreateInstance, ExportRequest, PolicySpec, TrustAnchorSpec};
use cloister_types::{EarBody, Hex};
use reqwest::Method;
use serde_json::Value;

const MEASUREMENT: [u8; 48] = [0x3c; 48];

/// The TLS certificate every test server presents (for 127.0.0.1) and the CA clients trust,
/// made once per test process with `cloister keygen --tls-server`.
struct TestTls {
    certificate: std::path::PathBuf,
    key: std::path::PathBuf,
    ca: std::path::PathBuf,
}

fn test_tls() -> &'static TestTls {
    static TLS: std::sync::OnceLock<TestTls> = std::sync::OnceLock::new();
    TLS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let tls = TestTls {
            certificate: dir.join("tls.pem"),
            key: dir.join("tls.key"),
            ca: dir.join("tls-ca.pem"),
        };
        let out = Command::new(env!("CARGO_BIN_EXE_cloister"))
            .args(["keygen", "--tls-server", "127.0.0.1", "--secret"])
            .arg(&tls.key)
            .arg("--public")
            .arg(&tls.certificate)
            .arg("--tls-ca")
            .arg(&tls.ca)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        tls
    })
}

/// How the tests' clients reach the servers: HTTPS trusting the test CA.
fn tls() -> ServiceTls {
    ServiceTls::with_ca_pem(&std::fs::read(&test_tls().ca).unwrap()).unwrap()
}

/// A plain HTTP client trusting the test CA, for raw requests.
fn http() -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&test_tls().ca).unwrap()).unwrap();
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .build()
        .unwrap()
}

fn instance_client(url: &str, id: &str) -> AuthorityClient {
    AuthorityClient::for_instance_with(url, id, &tls()).unwrap()
}

/// The `listening` event of a service's JSON log line; `None` for any other line.
fn listening(line: &str) -> Option<Value> {
    let event: Value = serde_json::from_str(line).ok()?;
    (event["event"] == "listening").then_some(event)
}

/// Every line a service wrote on standard error is one JSON object with a timestamp, a level and
/// a target (and its fields; dependencies' events may carry no message): nothing in plain text.
fn assert_json_log(lines: &[String]) {
    assert!(!lines.is_empty(), "nothing was logged");
    for line in lines {
        let event: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a log line that is not JSON ({e}): {line}"));
        for field in ["timestamp", "level", "target"] {
            assert!(event[field].is_string(), "no {field} in {line}");
        }
        let level = event["level"].as_str().unwrap();
        assert!(["ERROR", "WARN", "INFO", "DEBUG", "TRACE"].contains(&level), "{line}");
    }
}

/// A `cloister serve attestation` process and everything it printed.
struct Server {
    child: Child,
    url: String,
    operator_token: String,
    /// Its signing-key fingerprint, as it printed at start.
    fingerprint: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start(dir: &Path, database: &str) -> Server {
        Self::start_with(dir, database, &[])
    }

    fn start_with(dir: &Path, database: &str, extra: &[&str]) -> Server {
        Self::start_at(dir, database, "127.0.0.1:0", extra)
    }

    /// A service on `listen` (a fixed port, to restart one in place).
    fn start_at(dir: &Path, database: &str, listen: &str, extra: &[&str]) -> Server {
        std::fs::create_dir_all(dir).unwrap();
        let token_file = dir.join("operator-token");
        let tls = test_tls();
        let mut command = Command::new(env!("CARGO_BIN_EXE_cloister"));
        command
            .args(["serve", "attestation", "--listen", listen, "--database", database])
            .arg("--operator-token-file")
            .arg(&token_file)
            .arg("--tls-cert")
            .arg(&tls.certificate)
            .arg("--tls-key")
            .arg(&tls.key)
            .args(extra);
        let started = support::started(command);
        let (url, fingerprint) = (started.field("url"), started.field("service_fingerprint"));
        assert!(url.starts_with("https://"), "{url}");
        let operator_token = std::fs::read_to_string(&token_file).unwrap().trim().to_owned();
        Server { child: started.child, url, operator_token, fingerprint, log: started.log }
    }

    fn operator(&self) -> ServiceClient {
        ServiceClient::with_tls(&self.url, Some(&self.operator_token), &tls()).unwrap()
    }

    fn as_tenant(&self, token: &str) -> ServiceClient {
        ServiceClient::with_tls(&self.url, Some(token), &tls()).unwrap()
    }

    /// Stops the process with SIGTERM (it signs a last checkpoint) and waits.
    fn stop(mut self) -> Vec<String> {
        #[cfg(unix)]
        {
            let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::thread::sleep(Duration::from_millis(100));
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// A fresh database: a SQLite file under `dir`, or a fresh PostgreSQL database.
async fn database(dir: &Path, name: &str, postgres: bool) -> Option<String> {
    if !postgres {
        return Some(format!("sqlite://{}", dir.join(format!("{name}.db")).display()));
    }
    let Ok(admin) = std::env::var("CLOISTER_TEST_POSTGRES_URL") else {
        eprintln!("CLOISTER_TEST_POSTGRES_URL is not set: PostgreSQL case skipped");
        return None;
    };
    use sqlx::Connection as _;
    let db = format!("cl_{}_{}", name, uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
        .execute(&mut conn)
        .await
        .unwrap();
    let (base, _) = admin.rsplit_once('/').unwrap();
    Some(format!("{base}/{db}"))
}

/// Runs the `cloister` binary; returns (success, stdout, stderr).
fn cli(args: &[&str], server: &str, token: Option<&str>) -> (bool, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cloister"));
    command
        .args(args)
        .env("CLOISTER_SERVER", server)
        .env("CLOISTER_SERVER_CA", &test_tls().ca)
        .env_remove("CLOISTER_TOKEN");
    if let Some(token) = token {
        command.env("CLOISTER_TOKEN", token);
    }
    let out = command.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json_of(stdout: &str) -> Value {
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn platform_key(dir: &Path) -> SimAttester {
    let key = SimPlatformKey::load_or_create(&dir.join("sim-platform-key.pem")).unwrap();
    SimAttester::new(key, MEASUREMENT)
}

fn instance_request(name: &str, key: &SimAttester) -> CreateInstance {
    CreateInstance {
        name: name.to_owned(),
        policy: PolicySpec::Builtin("dev-sim".to_owned()),
        reference_values: serde_json::json!({ "measurements": [Hex(MEASUREMENT.to_vec())] }),
        trust_anchors: TrustAnchorSpec {
            sim_platform_keys: vec![key.platform_public_key().to_string()],
            ..TrustAnchorSpec::default()
        },
        settings: Default::default(),
    }
}

fn spki() -> Vec<u8> {
    use rcgen::PublicKeyData as _;
    rcgen::KeyPair::generate().unwrap().subject_public_key_info()
}

/// Sim evidence answering a fresh challenge of `client`'s instance.
async fn evidence(client: &AuthorityClient, attester: &SimAttester) -> AttestRequest {
    let nonce = client.challenge().await.unwrap().nonce;
    let service = client.service_key_document().await.unwrap().signing_key_sha256.to_string();
    cloister::testbed::sim_attest_request(attester, nonce, spki(), &service).unwrap()
}

/// Verifies an EAR token with the JWKS the instance publishes now.
async fn verify_ear(client: &AuthorityClient, ear: &str) -> Result<EarBody, String> {
    let info = client.instance().await.map_err(|e| e.to_string())?;
    let kid = cloister_sign::peek_key_id(ear).ok_or("no kid")?;
    let keys = info.jwks["keys"].as_array().cloned().unwrap_or_default();
    let jwk = keys.iter().find(|k| k["kid"] == kid.as_str()).ok_or("kid not in the JWKS")?;
    let key = cloister_sign::VerifyingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    key.verify::<EarBody>(cloister_types::ear::EAR_NAME, ear, unix_now())
        .map(|s| s.claims)
        .map_err(|e| e.to_string())
}

fn leaf_verifies(chain_pem: &str, ca_pem: &str) -> bool {
    let expectations = cloister_client::Expectations::from_ca_pem(
        ca_pem,
        vec![Hex(MEASUREMENT.to_vec())],
        vec![cloister_types::TeeKind::Sim],
    )
    .unwrap();
    let chain = cloister_types::pem_certificates(chain_pem).unwrap();
    cloister_client::verify_enclave_certificate(&chain, &expectations, unix_now()).is_ok()
}

async fn operators_and_tenants_script_every_instance_operation(postgres: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let Some(db) = database(tmp.path(), "script", postgres).await else { return };
    let server = Server::start(&tmp.path().join("svc"), &db);
    let fingerprint = server.fingerprint.clone();
    let token_file = tmp.path().join("svc/operator-token");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "operator token file mode {mode:o}");
    }
    let health = http().get(format!("{}/healthz", server.url)).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = http().get(format!("{}/readyz", server.url)).send().await.unwrap();
    assert_eq!(ready.status(), 200);

    let op = Some(server.operator_token.as_str());
    let (ok, out, err) = cli(&["tenant", "create", "acme", "--json"], &server.url, op);
    assert!(ok, "{err}");
    let acme = json_of(&out);
    let acme_token = acme["token"].as_str().unwrap().to_owned();
    assert!(acme["tenant"]["id"].as_str().unwrap().starts_with("tn_"));
    let (ok, out, _) = cli(&["tenant", "create", "globex", "--json"], &server.url, op);
    assert!(ok);
    let globex_token = json_of(&out)["token"].as_str().unwrap().to_owned();
    let (ok, _, err) = cli(&["tenant", "create", "acme", "--json"], &server.url, op);
    assert!(!ok && err.contains("already exists"), "{err}");
    let (ok, out, _) = cli(&["tenant", "list", "--json"], &server.url, op);
    assert!(ok);
    assert_eq!(json_of(&out).as_array().unwrap().len(), 2);
    // A tenant admin is not an operator.
    let (ok, _, _) = cli(&["tenant", "list"], &server.url, Some(&acme_token));
    assert!(!ok);

    let key = platform_key(tmp.path());
    let key_text = key.platform_public_key().to_string();
    let acme_t = Some(acme_token.as_str());
    let (ok, out, err) = cli(
        &[
            "instance",
            "create",
            "prod",
            "--builtin-policy",
            "dev-sim",
            "--sim-platform-key",
            &key_text,
            "--json",
        ],
        &server.url,
        acme_t,
    );
    assert!(ok, "{err}");
    let created = json_of(&out);
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["policy_id"], format!("{id}@v1"));
    let (ok, out, _) = cli(&["instance", "list", "--json"], &server.url, acme_t);
    assert!(ok);
    assert_eq!(json_of(&out)[0]["id"], id.as_str());

    // Update: a new policy version (old readable), reference values, trust anchors.
    let rego = tmp.path().join("policy.rego");
    std::fs::write(&rego, cloister_policy::AppraisalPolicy::builtin_rego("dev-sim").unwrap())
        .unwrap();
    let rv = tmp.path().join("rv.json");
    std::fs::write(
        &rv,
        serde_json::json!({ "measurements": [{"value": Hex(MEASUREMENT.to_vec()), "expires_at": "2099-01-01T00:00:00Z"}] })
            .to_string(),
    )
    .unwrap();
    let (ok, out, err) = cli(
        &[
            "instance",
            "update",
            &id,
            "--policy-file",
            rego.to_str().unwrap(),
            "--reference-values",
            rv.to_str().unwrap(),
            "--json",
        ],
        &server.url,
        acme_t,
    );
    assert!(ok, "{err}");
    let updated = json_of(&out);
    assert_eq!(updated["policy_version"], 2);
    assert_eq!(updated["policy_versions"].as_array().unwrap().len(), 2);
    assert_eq!(updated["policy_versions"][0]["builtin"], "dev-sim");
    let (ok, out, _) =
        cli(&["instance", "show", &id, "--policy-version", "1"], &server.url, acme_t);
    assert!(ok && out.contains("package cloister.appraisal"), "{out}");

    // Attest against it: the token names version 2.
    let client = instance_client(&server.url, &id);
    let response = client.attest(&evidence(&client, &key).await).await.unwrap();
    let ear = verify_ear(&client, &response.ear).await.unwrap();
    assert_eq!(ear.submods["cpu0"].appraisal_policy_id, format!("{id}@v2"));

    // Trust anchors: with only another platform key listed, this platform's evidence no longer
    // verifies; listing both again restores it.
    let other_key = SimPlatformKey::load_or_create(&tmp.path().join("other-platform.pem")).unwrap();
    let other_text = other_key.public_key().to_string();
    let (ok, out, err) = cli(
        &["instance", "update", &id, "--sim-platform-key", &other_text, "--json"],
        &server.url,
        acme_t,
    );
    assert!(ok, "{err}");
    assert_eq!(json_of(&out)["trust_anchors"]["sim_platform_keys"][0], other_text.as_str());
    let err = client.attest(&evidence(&client, &key).await).await.unwrap_err().to_string();
    assert!(err.contains("trust anchor") || err.contains("platform key"), "{err}");
    let (ok, _, err) = cli(
        &[
            "instance",
            "update",
            &id,
            "--sim-platform-key",
            &key_text,
            "--sim-platform-key",
            &other_text,
        ],
        &server.url,
        acme_t,
    );
    assert!(ok, "{err}");
    client.attest(&evidence(&client, &key).await).await.unwrap();

    // Rotate: the new key signs, the old one stays in the JWKS, the old token still verifies.
    let (ok, out, err) = cli(&["instance", "rotate", &id, "--json"], &server.url, acme_t);
    assert!(ok, "{err}");
    let keys = json_of(&out)["token_keys"].as_array().unwrap().clone();
    assert_eq!(keys.len(), 2);
    assert!(keys.iter().any(|k| k["keep_until"].is_number()));
    verify_ear(&client, &response.ear).await.unwrap();
    let second = client.attest(&evidence(&client, &key).await).await.unwrap();
    assert_ne!(cloister_sign::peek_key_id(&second.ear), cloister_sign::peek_key_id(&response.ear));
    verify_ear(&client, &second.ear).await.unwrap();

    // Another tenant may not see it; the CLI exits non-zero.
    let (ok, _, err) = cli(&["instance", "show", &id], &server.url, Some(&globex_token));
    assert!(!ok && err.contains("not found"), "{err}");
    let (ok, _, _) = cli(&["instance", "show", &id], &server.url, None);
    assert!(!ok);

    // A broker key registered from the owner's own key file; the recipient it prints seals.
    let owner_key = cloister_seal::RecipientSecretKey::generate();
    let key_file = tmp.path().join("owner.key");
    std::fs::write(&key_file, owner_key.to_text().as_bytes()).unwrap();
    let hex = Hex(MEASUREMENT.to_vec()).to_string();
    let (ok, out, err) = cli(
        &[
            "key",
            "register",
            "patients",
            "--instance",
            &id,
            "--measurement",
            &hex,
            "--secret-key",
            key_file.to_str().unwrap(),
            "--json",
        ],
        &server.url,
        acme_t,
    );
    assert!(ok, "{err}");
    let registered = json_of(&out);
    assert_eq!(registered["key_id"], owner_key.key_id().to_hex());
    let recipient = tmp.path().join("broker.recipient");
    std::fs::write(&recipient, registered["recipient"].as_str().unwrap()).unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_cloister"))
        .args(["seal", "--recipient", recipient.to_str().unwrap(), "--input", "-", "--output"])
        .arg(tmp.path().join("sealed"))
        .stdin(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let sealed = std::fs::read(tmp.path().join("sealed")).unwrap();
    let header = cloister_seal::read_header(sealed.as_slice()).unwrap();
    assert_eq!(header.broker_key_ids(), vec![owner_key.key_id()]);
    let (ok, out, _) = cli(&["key", "list", "--json"], &server.url, acme_t);
    assert!(ok && json_of(&out).as_array().unwrap().len() == 1);
    let (ok, _, _) =
        cli(&["key", "show", registered["id"].as_str().unwrap()], &server.url, Some(&globex_token));
    assert!(!ok, "another tenant sees the key");
    let (ok, out, _) =
        cli(&["key", "revoke", registered["id"].as_str().unwrap(), "--json"], &server.url, acme_t);
    assert!(ok && json_of(&out)["revoked_at"].is_number(), "{out}");

    // A release request for a key nobody registered is refused without a trace in the
    // database (anyone can send it, as often as they like); the metrics count it.
    let before = server.operator().audit().await.unwrap().len();
    let unknown = cloister_types::api::KeyReleaseRequest {
        key_id: Hex(vec![9; 16]),
        ear: response.ear.clone(),
        context: Default::default(),
        nonce: String::new(),
        after: None,
        proof: String::new(),
    };
    let err = client.release_key(&unknown).await.unwrap_err().to_string();
    assert!(err.contains("404"), "{err}");
    assert_eq!(server.operator().audit().await.unwrap().len(), before);
    let metrics = http().get(format!("{}/metrics", server.url)).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(
        metrics.contains(r#"cloister_key_releases_total{result="unknown_key"} 1"#),
        "{metrics}"
    );

    // Delete: keys destroyed, tokens stop verifying here.
    let (ok, _, err) = cli(&["instance", "delete", &id], &server.url, acme_t);
    assert!(ok, "{err}");
    let (ok, _, _) = cli(&["instance", "show", &id], &server.url, acme_t);
    assert!(!ok);
    assert!(verify_ear(&client, &second.ear).await.is_err());
    let err = client.challenge().await.unwrap_err().to_string();
    assert!(err.contains("404") && err.contains("not found"), "{err}");

    let logs = server.stop();
    let (ok, out, err) = cli(
        &["audit", "verify", "--service-key", &fingerprint, "--database", &db],
        "http://unused",
        None,
    );
    assert!(ok, "{out}{err}");
    assert!(out.contains("audit log intact"), "{out}");
    // Logs never carry tokens, keys or policy text.
    let text = logs.join("\n");
    for secret in [&server_token_of(&token_file), &acme_token, &globex_token] {
        assert!(!text.contains(secret.as_str()), "a token appears in the service log");
    }
    assert!(!text.contains("cloister-es256-secret"), "a signing key appears in the log");
    assert!(!text.contains(&*owner_key.to_text()), "a broker key appears in the log");
    assert!(!text.contains(cloister_seal::SECRET_KEY_PREFIX), "an envelope key appears in the log");
    assert!(text.contains("attestation passed"), "the log has no attestation record: {text}");
}

fn server_token_of(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap().trim().to_owned()
}

/// `cloister audit list` as an admin pages through it: filters by kind, subject and time, pages
/// with --after and says how to get the next page, shows times as RFC 3339 (the JSON keeps Unix
/// seconds), and takes its token from --token-file.
#[tokio::test]
async fn audit_list_filters_and_pages_with_utc_times_and_a_token_file() {
    let tmp = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", tmp.path().join("list.db").display());
    let server = Server::start(&tmp.path().join("svc"), &db);
    let tenant = server.operator().create_tenant("t").await.unwrap();
    let admin = server.as_tenant(&tenant.token);
    let key = platform_key(tmp.path());
    let mut ids = Vec::new();
    for name in ["one", "two", "three"] {
        ids.push(admin.create_instance(&instance_request(name, &key)).await.unwrap().id);
    }
    admin.rotate(&ids[1]).await.unwrap();
    let token_file = tmp.path().join("admin-token");
    std::fs::write(&token_file, format!("{}\n", tenant.token)).unwrap();
    let token_file = token_file.to_str().unwrap();
    let list = |extra: &[&str]| {
        let mut args = vec!["audit", "list", "--token-file", token_file];
        args.extend_from_slice(extra);
        cli(&args, &server.url, None)
    };

    // Human output: RFC 3339 UTC times, never Unix seconds.
    let (ok, out, err) = list(&["--kind", "instance.created"]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    let now = unix_now() as i64;
    for line in &lines {
        let at = line.split_whitespace().nth(1).unwrap();
        let parsed =
            time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
                .unwrap_or_else(|e| panic!("{at:?} is not RFC 3339 ({e}): {line}"));
        assert!(at.ends_with('Z'), "{at} is not UTC");
        assert!((parsed.unix_timestamp() - now).abs() < 600, "{line}");
        let unix = |word: &str| word.parse::<i64>().is_ok_and(|n| (n - now).abs() < 600);
        assert!(!line.split_whitespace().any(unix), "Unix seconds in {line}");
    }
    // JSON keeps the numbers.
    let (ok, out, _) = list(&["--kind", "instance.created", "--json"]);
    assert!(ok);
    let records = json_of(&out);
    let records = records.as_array().unwrap();
    assert!(records.iter().all(|r| r["at"].is_i64() && r["kind"] == "instance.created"));

    // By subject (--instance is the same filter): that instance's creation and rotation only.
    let (ok, out, err) = list(&["--instance", &ids[1], "--json"]);
    assert!(ok, "{err}");
    let about = json_of(&out);
    let about = about.as_array().unwrap();
    assert!(about.iter().all(|r| r["subject"] == ids[1].as_str()), "{out}");
    for kind in ["instance.created", "keys.rotated"] {
        assert!(about.iter().any(|r| r["kind"] == kind), "no {kind}: {out}");
    }
    let (ok, out, _) = list(&["--subject", &ids[0], "--kind", "keys.rotated", "--json"]);
    assert!(ok);
    assert_eq!(json_of(&out).as_array().unwrap().len(), 0, "{out}");

    // Pages of two: the hint names the next page's --after, which continues without overlap.
    let (ok, out, err) = list(&["--kind", "instance.created", "--limit", "2", "--json"]);
    assert!(ok, "{err}");
    let first = json_of(&out);
    let first = first.as_array().unwrap();
    assert_eq!(first.len(), 2);
    let last = first[1]["seq"].as_i64().unwrap();
    assert!(err.contains(&format!("--after {last}")), "no next-page hint: {err}");
    let (ok, out, err) =
        list(&["--kind", "instance.created", "--limit", "2", "--after", &last.to_string()]);
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains(&ids[2]), "{out}");
    assert!(!err.contains("--after"), "a hint after the last page: {err}");

    // By time: nothing before 2000 or after 2100, everything in between.
    let (ok, out, _) = list(&["--until", "2000-01-01T00:00:00Z"]);
    assert!(ok);
    assert!(out.contains("no audit records match"), "{out}");
    let (ok, out, _) = list(&["--since", "2100-01-01T00:00:00Z", "--json"]);
    assert!(ok);
    assert_eq!(json_of(&out).as_array().unwrap().len(), 0);
    let (ok, out, _) =
        list(&["--since", "2000-01-01T00:00:00Z", "--until", "2100-01-01T00:00:00Z", "--json"]);
    assert!(ok);
    assert!(json_of(&out).as_array().unwrap().len() >= 4, "{out}");
    let (ok, _, err) = list(&["--since", "yesterday"]);
    assert!(!ok && err.contains("RFC 3339"), "{err}");

    // The API refuses a query it does not know, in its error shape.
    let response = http()
        .get(format!("{}/v1/audit?colour=red", server.url))
        .bearer_auth(&tenant.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "bad_request", "{body}");
    // And keeps a tenant to its own records whatever the filter.
    let other = server.operator().create_tenant("u").await.unwrap();
    let theirs = server
        .as_tenant(&other.token)
        .audit_page(&cloister_types::manage::AuditQuery {
            subject: Some(ids[0].clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(theirs.is_empty(), "{theirs:?}");
}

/// Every route, called by the wrong party: another tenant, nobody, a forged token.
async fn tenants_never_reach_each_others_resources_on_any_route(postgres: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let Some(db) = database(tmp.path(), "authz", postgres).await else { return };
    let server = Server::start(&tmp.path().join("svc"), &db);
    let operator = server.operator();
    let a = operator.create_tenant("a").await.unwrap();
    let b = operator.create_tenant("b").await.unwrap();
    let (a_admin, b_admin) = (server.as_tenant(&a.token), server.as_tenant(&b.token));
    let key = platform_key(tmp.path());
    let instance = a_admin.create_instance(&instance_request("a-inst", &key)).await.unwrap();
    let broker = a_admin
        .register_key(&cloister_types::manage::RegisterKey {
            name: "a-key".to_owned(),
            secret_key: None,
            release_policy: cloister_policy::ReleasePolicy::template(&[Hex(MEASUREMENT.to_vec())]),
            instances: vec![instance.id.clone()],
        })
        .await
        .unwrap();
    let anonymous = ServiceClient::with_tls(&server.url, None, &tls()).unwrap();
    let forged = ServiceClient::with_tls(&server.url, Some("clt_forged"), &tls()).unwrap();

    let mut checked = 0;
    for (method, path, who) in ROUTES {
        let path = path
            .replace("{id}", if path.starts_with("/v1/keys") { &broker.id } else { &instance.id });
        let path = path.replace("{version}", "1");
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let body = match (method.as_str(), path.as_str()) {
            ("POST", "/v1/tenants") => Some(serde_json::json!({ "name": "intruder" })),
            ("POST", "/v1/instances") => Some(serde_json::json!({ "name": "intruder" })),
            ("PUT", p) if p.ends_with("/policy") => {
                Some(serde_json::json!({ "builtin": "dev-sim" }))
            }
            ("PUT", _) => Some(serde_json::json!({})),
            ("POST", p) if p.ends_with("/export") => Some(serde_json::json!({
                "target": serde_json::to_value(b_admin.service_key().await.unwrap()).unwrap(),
                "target_tenant": b.tenant.id,
                "allow_unattested_target": true })),
            ("POST", "/v1/keys") => Some(serde_json::json!({ "name": "k", "release_policy": "x",
                                                            "instances": [instance.id] })),
            _ => None,
        };
        // A forged token is refused before any handler, on every route.
        let (status, _) = forged.raw(method.clone(), &path, body.clone()).await.unwrap();
        assert_eq!(status, 401, "{method} {path} with a forged token");
        match *who {
            "owner" => {
                let (status, body_b) =
                    b_admin.raw(method.clone(), &path, body.clone()).await.unwrap();
                assert_eq!(
                    status,
                    404,
                    "{method} {path} by another tenant: {}",
                    String::from_utf8_lossy(&body_b)
                );
                let (status, _) = anonymous.raw(method.clone(), &path, body.clone()).await.unwrap();
                assert_eq!(status, 404, "{method} {path} anonymously");
                let (status, _) = operator.raw(method.clone(), &path, body.clone()).await.unwrap();
                assert_eq!(status, 404, "{method} {path} by the operator");
                checked += 1;
            }
            "operator" => {
                let (status, _) = b_admin.raw(method.clone(), &path, body.clone()).await.unwrap();
                assert_eq!(status, 403, "{method} {path} by a tenant");
                let (status, _) = anonymous.raw(method.clone(), &path, body.clone()).await.unwrap();
                assert_eq!(status, 403, "{method} {path} anonymously");
                checked += 1;
            }
            "tenant" => {
                let (status, _) = anonymous.raw(method.clone(), &path, body.clone()).await.unwrap();
                assert_eq!(status, 403, "{method} {path} anonymously");
                let (status, _) = operator.raw(method.clone(), &path, body.clone()).await.unwrap();
                assert_eq!(status, 403, "{method} {path} by the operator");
                checked += 1;
            }
            _ => {}
        }
    }
    assert!(checked >= 15, "only {checked} routes checked");
    // Tenant-scoped lists show only the caller's own things.
    assert!(b_admin.list_instances().await.unwrap().is_empty());
    assert!(b_admin.list_keys().await.unwrap().is_empty());
    let b_audit = b_admin.audit().await.unwrap();
    assert!(
        b_audit.iter().all(|r| r.tenant_id.as_deref() == Some(b.tenant.id.as_str())),
        "{b_audit:?}"
    );
    // B registering a key on A's instance is refused: another tenant's policy never decides.
    let err = b_admin
        .register_key(&cloister_types::manage::RegisterKey {
            name: "sneaky".to_owned(),
            secret_key: None,
            release_policy: cloister_policy::ReleasePolicy::template(&[Hex(MEASUREMENT.to_vec())]),
            instances: vec![instance.id.clone()],
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not found"), "{err}");
    // A's resources are untouched.
    let shown = a_admin.show_instance(&instance.id).await.unwrap();
    assert_eq!(shown.policy_version, 1);
    assert!(a_admin.show_key(&broker.id).await.unwrap().revoked_at.is_none());
}

async fn an_exported_instance_keeps_its_tokens_and_certificates_verifying_after_import(
    postgres: bool,
) {
    let tmp = tempfile::tempdir().unwrap();
    if database(tmp.path(), "probe", postgres).await.is_none() {
        return;
    }
    let source =
        Server::start(&tmp.path().join("a"), &database(tmp.path(), "a", postgres).await.unwrap());
    // The target imports bundles its operator trusts: the source's, by fingerprint.
    let target = Server::start_with(
        &tmp.path().join("b"),
        &database(tmp.path(), "b", postgres).await.unwrap(),
        &["--trust-bundles-from", &source.fingerprint],
    );
    let third =
        Server::start(&tmp.path().join("c"), &database(tmp.path(), "c", postgres).await.unwrap());
    let key = platform_key(tmp.path());
    let src_tenant = source.operator().create_tenant("t").await.unwrap();
    let dst_tenant = target.operator().create_tenant("t").await.unwrap();
    let src = source.as_tenant(&src_tenant.token);
    let dst = target.as_tenant(&dst_tenant.token);
    let instance = src.create_instance(&instance_request("moving", &key)).await.unwrap();
    src.update_policy(&instance.id, &PolicySpec::Builtin("dev-sim".to_owned())).await.unwrap();
    let old_client = instance_client(&source.url, &instance.id);
    let issued = old_client.attest(&evidence(&old_client, &key).await).await.unwrap();
    src.rotate(&instance.id).await.unwrap();

    // Unattested targets are refused unless allowed explicitly.
    let target_doc = dst.service_key().await.unwrap();
    let err = src
        .export_instance(
            &instance.id,
            &ExportRequest {
                target: target_doc,
                target_tenant: dst_tenant.tenant.id.clone(),
                allow_unattested_target: false,
            },
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("attest"), "{err}");
    // The CLI fetches the target's key document itself and writes the sealed bundle.
    let bundle_file = tmp.path().join("instance.bundle");
    let (ok, out, err) = cli(
        &[
            "instance",
            "export",
            &instance.id,
            "--target",
            &target.url,
            "--target-tenant",
            &dst_tenant.tenant.id,
            "--output",
            bundle_file.to_str().unwrap(),
            "--allow-unattested-target",
        ],
        &source.url,
        Some(&src_tenant.token),
    );
    assert!(ok, "{out}{err}");
    let bundle = std::fs::read(&bundle_file).unwrap();

    // Mis-addressed: the third service cannot open a bundle sealed to the second.
    let t3 = third.operator().create_tenant("t").await.unwrap();
    let err = third.as_tenant(&t3.token).import_instance(bundle.clone()).await.unwrap_err();
    assert!(err.to_string().contains("addressed to service key"), "{err}");
    // Tampered: any flipped byte is refused.
    for position in [10, bundle.len() / 2, bundle.len() - 1] {
        let mut bad = bundle.clone();
        bad[position] ^= 0x01;
        assert!(dst.import_instance(bad).await.is_err(), "flip at {position} accepted");
    }
    // Another tenant of the target cannot import a bundle exported for this one.
    let other_tenant = target.operator().create_tenant("other").await.unwrap();
    let err =
        target.as_tenant(&other_tenant.token).import_instance(bundle.clone()).await.unwrap_err();
    assert!(err.to_string().contains("exported for another tenant"), "{err}");

    let (ok, out, err) = cli(
        &["instance", "import", bundle_file.to_str().unwrap(), "--json"],
        &target.url,
        Some(&dst_tenant.token),
    );
    assert!(ok, "{out}{err}");
    let imported: cloister_types::manage::InstanceView = serde_json::from_str(&out).unwrap();
    assert_eq!(imported.id, instance.id);
    assert_eq!(imported.policy_versions.len(), 2);
    // The source's two keys, and the copy's own, made at import: the copy never signs with a
    // key the source's broker knows (red team, round 7).
    assert_eq!(imported.token_keys.len(), 3);
    // Tokens and certificates issued by the source verify against the target's instance.
    let new_client = instance_client(&target.url, &instance.id);
    let ear = verify_ear(&new_client, &issued.ear).await.unwrap();
    assert_eq!(ear.submods["cpu0"].appraisal_policy_id, format!("{}@v2", instance.id));
    let info = new_client.instance().await.unwrap();
    assert!(leaf_verifies(&issued.certificate_chain_pem, &info.ca_certificate_pem));
    // And the target attests with it, under its own key.
    let fresh = new_client.attest(&evidence(&new_client, &key).await).await.unwrap();
    let kid = cloister_sign::peek_key_id(&fresh.ear).unwrap();
    let source_kids = cloister_sign::peek_key_id(&issued.ear).into_iter().collect::<Vec<_>>();
    assert!(!source_kids.contains(&kid), "the copy signs with the source's key {kid}");
    drop((source, target, third));
}

/// Edit a row, delete a row, swap two rows: SQL an operator with database access could run, and
/// what `audit verify` must then name.
const TAMPERING: [(&str, &str); 3] = [
    ("UPDATE audit_log SET outcome = 'refused' WHERE seq = 4", "entry 4"),
    ("DELETE FROM audit_log WHERE seq = 3", "entry 3"),
    (
        "UPDATE audit_log SET seq = -5 WHERE seq = 5; UPDATE audit_log SET seq = 5 WHERE seq = 6; \
         UPDATE audit_log SET seq = 6 WHERE seq = -5;",
        "5",
    ),
];

#[tokio::test]
async fn audit_tampering_on_postgres_is_detected_and_located() {
    use sqlx::Connection as _;
    for (index, (sql, expected)) in TAMPERING.into_iter().enumerate() {
        let tmp = tempfile::tempdir().unwrap();
        let Some(db) = database(tmp.path(), &format!("tamper{index}"), true).await else { return };
        let server = Server::start(&tmp.path().join("svc"), &db);
        let fingerprint = server.fingerprint.clone();
        let tenant = server.operator().create_tenant("t").await.unwrap();
        let admin = server.as_tenant(&tenant.token);
        let key = platform_key(tmp.path());
        for i in 0..6 {
            admin.create_instance(&instance_request(&format!("i{i}"), &key)).await.unwrap();
        }
        server.stop();
        let verify = || {
            cli(
                &["audit", "verify", "--service-key", &fingerprint, "--database", &db, "--json"],
                "http://unused",
                None,
            )
        };
        let (ok, out, err) = verify();
        assert!(ok, "{out}{err}");
        let mut conn = sqlx::PgConnection::connect(&db).await.unwrap();
        sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
        let (ok, out, _) = verify();
        assert!(!ok, "{sql} went unnoticed: {out}");
        let problems = json_of(&out)["problems"].to_string();
        assert!(problems.contains(expected), "{sql}: {problems}");
    }
}

/// The service checkpoints the audit log's tail on a timer, not only every 64 entries and at
/// shutdown (red team: a tail of attestations could be cut off unnoticed until the next one).
#[tokio::test]
async fn the_audit_tail_is_signed_within_the_checkpoint_interval() {
    let tmp = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", tmp.path().join("audit.db").display());
    let server = Server::start_with(&tmp.path().join("svc"), &db, &["--checkpoint-interval", "1"]);
    let fingerprint = server.fingerprint.clone();
    server.operator().create_tenant("t").await.unwrap();
    let verify = || {
        cli(
            &["audit", "verify", "--service-key", &fingerprint, "--database", &db, "--json"],
            "http://unused",
            None,
        )
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (ok, out, err) = verify();
        assert!(ok, "{out}{err}");
        let report = json_of(&out);
        let last = report["last_seq"].as_i64().unwrap();
        if last > 0 && report["signed_through"].as_i64() == Some(last) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the tail was never checkpointed: {report}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    server.stop();
}

#[tokio::test]
async fn audit_tampering_in_the_database_is_detected_and_located() {
    use sqlx::Connection as _;
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("audit.db");
    let db = format!("sqlite://{}", path.display());
    let server = Server::start(&tmp.path().join("svc"), &db);
    let fingerprint = server.fingerprint.clone();
    let tenant = server.operator().create_tenant("t").await.unwrap();
    let admin = server.as_tenant(&tenant.token);
    let key = platform_key(tmp.path());
    for i in 0..6 {
        admin.create_instance(&instance_request(&format!("i{i}"), &key)).await.unwrap();
    }
    server.stop();
    let verify = || {
        cli(
            &["audit", "verify", "--service-key", &fingerprint, "--database", &db, "--json"],
            "http://unused",
            None,
        )
    };
    let (ok, out, err) = verify();
    assert!(ok, "{out}{err}");
    // Fold the write-ahead log into the file, then keep a pristine copy to restore per case.
    let mut conn = sqlx::SqliteConnection::connect(&db).await.unwrap();
    sqlx::raw_sql("PRAGMA wal_checkpoint(TRUNCATE);").execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
    let backup = std::fs::read(&path).unwrap();

    for (sql, expected) in TAMPERING {
        for suffix in ["db-wal", "db-shm"] {
            let _ = std::fs::remove_file(path.with_extension(suffix));
        }
        std::fs::write(&path, &backup).unwrap();
        let mut conn = sqlx::SqliteConnection::connect(&db).await.unwrap();
        sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
        let (ok, out, _) = verify();
        assert!(!ok, "{sql} went unnoticed: {out}");
        let report = json_of(&out);
        let problems = report["problems"].to_string();
        assert!(problems.contains(expected), "{sql}: {problems}");
    }
}

async fn a_restarted_service_has_lost_nothing(postgres: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let Some(db) = database(tmp.path(), "restart", postgres).await else { return };
    let dir = tmp.path().join("svc");
    let server = Server::start(&dir, &db);
    let fingerprint = server.fingerprint.clone();
    let tenant = server.operator().create_tenant("t").await.unwrap();
    let key = platform_key(tmp.path());
    let instance = server
        .as_tenant(&tenant.token)
        .create_instance(&instance_request("kept", &key))
        .await
        .unwrap();
    let client = instance_client(&server.url, &instance.id);
    let issued = client.attest(&evidence(&client, &key).await).await.unwrap();
    let pending = client.challenge().await.unwrap();
    server.stop();

    let server = Server::start(&dir, &db);
    let admin = server.as_tenant(&tenant.token);
    assert_eq!(admin.show_instance(&instance.id).await.unwrap(), instance);
    let client = instance_client(&server.url, &instance.id);
    verify_ear(&client, &issued.ear).await.unwrap();
    // A challenge issued before the restart is still good, once.
    let mut request = evidence(&client, &key).await;
    request.evidence.runtime_data.nonce = pending.nonce.clone();
    request.evidence = key.attest(&request.evidence.runtime_data).unwrap();
    client.attest(&request).await.unwrap();
    assert!(client.attest(&request).await.is_err());
    server.stop();
    let (ok, out, err) = cli(
        &["audit", "verify", "--service-key", &fingerprint, "--database", &db],
        "http://unused",
        None,
    );
    assert!(ok, "{out}{err}");
}

/// A backup taken while the service runs restores into a fresh service on other paths: the
/// audit log verifies, and the tenant token and the EAR token issued before the backup still
/// work there. A changed backup, a target that exists and a key that is not the database's are
/// refused.
#[tokio::test]
async fn a_backup_restores_into_a_fresh_service_with_its_tokens_and_audit_log() {
    use sha2::Digest as _;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("svc");
    let db = format!("sqlite://{}", dir.join("authority.db").display());
    let server = Server::start(&dir, &db);
    let fingerprint = server.fingerprint.clone();
    let tenant = server.operator().create_tenant("t").await.unwrap();
    let key = platform_key(tmp.path());
    let instance = server
        .as_tenant(&tenant.token)
        .create_instance(&instance_request("kept", &key))
        .await
        .unwrap();
    let client = instance_client(&server.url, &instance.id);
    let issued = client.attest(&evidence(&client, &key).await).await.unwrap();

    let key_file = dir.join("service.key");
    let backup = tmp.path().join("backup");
    let run = |args: &[&str]| cli(args, "http://unused", None);
    let key_arg = key_file.to_str().unwrap();
    let backup_arg = backup.to_str().unwrap();
    let (ok, out, err) = run(&[
        "backup",
        "create",
        "--database",
        &db,
        "--key-file",
        key_arg,
        "--out",
        backup_arg,
        "--json",
    ]);
    assert!(ok, "{out}{err}");
    let made = json_of(&out);
    assert_eq!(made["service_fingerprint"], fingerprint);
    assert!(made["audit_seq"].as_i64().unwrap() >= 3, "{made}");
    // Not over an earlier backup; not with a key that is not this database's.
    let (ok, _, err) =
        run(&["backup", "create", "--database", &db, "--key-file", key_arg, "--out", backup_arg]);
    assert!(!ok && err.contains("not empty"), "{err}");
    let other_key = tmp.path().join("other.key");
    cloister::testbed::write_secret(
        &other_key,
        cloister_seal::RecipientSecretKey::generate().to_text().as_bytes(),
    )
    .unwrap();
    let elsewhere = tmp.path().join("elsewhere");
    let (ok, _, err) = run(&[
        "backup",
        "create",
        "--database",
        &db,
        "--key-file",
        other_key.to_str().unwrap(),
        "--out",
        elsewhere.to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("not the key this database was made with"), "{err}");
    server.stop();

    let fresh = tmp.path().join("fresh");
    let fresh_db = format!("sqlite://{}", fresh.join("authority.db").display());
    let fresh_key = fresh.join("service.key");
    let restore_pinned = |from: &Path, pin: &str| {
        run(&[
            "backup",
            "restore",
            "--from",
            from.to_str().unwrap(),
            "--service-key",
            pin,
            "--database",
            &fresh_db,
            "--key-file",
            fresh_key.to_str().unwrap(),
        ])
    };
    let restore = |from: &Path| restore_pinned(from, &fingerprint);
    // A backup changed after it was made is refused before anything is written: the database
    // alone, or with the manifest's digest rewritten to match (red team, round 7), or a backup
    // of another service than the pinned one.
    let changed = tmp.path().join("changed");
    std::fs::create_dir(&changed).unwrap();
    for name in ["authority.db", "service.key", "backup.json"] {
        std::fs::copy(backup.join(name), changed.join(name)).unwrap();
    }
    let mut bytes = std::fs::read(changed.join("authority.db")).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(changed.join("authority.db"), &bytes).unwrap();
    let (ok, _, err) = restore(&changed);
    assert!(!ok && err.contains("was changed since the backup was made"), "{err}");
    let mut manifest = json_of(&std::fs::read_to_string(changed.join("backup.json")).unwrap());
    manifest["database_sha256"] = hex::encode(sha2::Sha256::digest(&bytes)).into();
    std::fs::write(changed.join("backup.json"), manifest.to_string()).unwrap();
    let (ok, _, err) = restore(&changed);
    assert!(!ok && err.contains("is not signed by the service's key"), "{err}");
    let (ok, _, err) = restore_pinned(&backup, &"ab".repeat(32));
    assert!(!ok && err.contains("not of abab"), "{err}");
    // A stale write-ahead log, or a dangling link, where the restored files would go.
    std::fs::create_dir_all(&fresh).unwrap();
    std::fs::write(fresh.join("authority.db-wal"), b"stale").unwrap();
    let (ok, _, err) = restore(&backup);
    assert!(!ok && err.contains("authority.db-wal exists"), "{err}");
    std::fs::remove_file(fresh.join("authority.db-wal")).unwrap();
    std::os::unix::fs::symlink(tmp.path().join("victim-key"), &fresh_key).unwrap();
    let (ok, _, err) = restore(&backup);
    assert!(!ok && err.contains("service.key exists"), "{err}");
    assert!(!tmp.path().join("victim-key").exists());
    std::fs::remove_file(&fresh_key).unwrap();
    assert!(!fresh.join("authority.db").exists());
    let (ok, out, err) = restore(&backup);
    assert!(ok, "{out}{err}");
    assert!(out.contains(&fingerprint), "{out}");
    // Never over files that exist.
    let (ok, _, err) = restore(&backup);
    assert!(!ok && err.contains("exists"), "{err}");

    let server =
        Server::start_with(&fresh, &fresh_db, &["--key-file", fresh_key.to_str().unwrap()]);
    assert_eq!(server.fingerprint, fingerprint);
    let admin = server.as_tenant(&tenant.token);
    assert_eq!(admin.show_instance(&instance.id).await.unwrap(), instance);
    let client = instance_client(&server.url, &instance.id);
    verify_ear(&client, &issued.ear).await.unwrap();
    client.attest(&evidence(&client, &key).await).await.unwrap();
    server.stop();
    let (ok, out, err) =
        run(&["audit", "verify", "--service-key", &fingerprint, "--database", &fresh_db]);
    assert!(ok, "{out}{err}");
}

/// Two service processes on one PostgreSQL database: nonces issued by one are consumed by the
/// other, and under concurrency each nonce is used exactly once.
#[tokio::test]
async fn replicas_on_one_postgres_database_share_nonces_and_never_double_use_one() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(db) = database(tmp.path(), "replicas", true).await else { return };
    let dir = tmp.path().join("svc");
    let one = Server::start(&dir, &db);
    let fingerprint = one.fingerprint.clone();
    // The second replica shares the key file and operator token (same directory).
    let two = Server::start(&dir, &db);
    let tenant = one.operator().create_tenant("t").await.unwrap();
    let key = platform_key(tmp.path());
    let instance = one
        .as_tenant(&tenant.token)
        .create_instance(&instance_request("shared", &key))
        .await
        .unwrap();
    let at_one = instance_client(&one.url, &instance.id);
    let at_two = instance_client(&two.url, &instance.id);
    // Issued by one, consumed by two.
    let request = evidence(&at_one, &key).await;
    at_two.attest(&request).await.unwrap();
    assert!(at_one.attest(&request).await.is_err());
    // A race: 20 requests, each submitted 4 times concurrently across both replicas.
    let mut requests = Vec::new();
    for _ in 0..20 {
        requests.push(evidence(&at_one, &key).await);
    }
    let mut tasks = Vec::new();
    for request in &requests {
        for client in [&at_one, &at_two, &at_one, &at_two] {
            let (client, request) = (client.clone(), request.clone());
            tasks.push(tokio::spawn(async move { client.attest(&request).await.is_ok() }));
        }
    }
    let mut successes = 0;
    for task in tasks {
        successes += usize::from(task.await.unwrap());
    }
    assert_eq!(successes, 20, "each nonce must be good exactly once");
    // Deleted through one replica, the instance is gone on the other too, though cached there.
    one.as_tenant(&tenant.token).delete_instance(&instance.id).await.unwrap();
    let err = at_two.challenge().await.unwrap_err().to_string();
    assert!(err.contains("404") && err.contains("not found"), "{err}");
    assert!(at_two.attest(&requests[0]).await.is_err());
    let (ok, out, err) = cli(
        &["audit", "verify", "--service-key", &fingerprint, "--database", &db],
        "http://unused",
        None,
    );
    assert!(ok, "{out}{err}");
    drop((one, two));
}

/// Each scenario above, on SQLite and on PostgreSQL (skipped, saying so, without
/// `CLOISTER_TEST_POSTGRES_URL`; `.ci/run` sets it).
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $name() {
                super::$name(false).await;
            })*
        }
        mod postgres {
            $(#[tokio::test]
            async fn $name() {
                super::$name(true).await;
            })*
        }
    };
}

on_both_backends!(
    operators_and_tenants_script_every_instance_operation,
    tenants_never_reach_each_others_resources_on_any_route,
    an_exported_instance_keeps_its_tokens_and_certificates_verifying_after_import,
    a_restarted_service_has_lost_nothing,
);

/// Someone who can only open sockets: hundreds of connections that never start TLS, against a
/// service allowed 100 open files. It must neither exit nor stay unreachable: idle handshakes
/// time out and failed accepts are retried.
#[cfg(unix)]
#[tokio::test]
async fn idle_connections_never_take_the_service_down() {
    let tmp = tempfile::tempdir().unwrap();
    let tls = test_tls();
    let db = format!("sqlite://{}", tmp.path().join("idle.db").display());
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg("ulimit -n 100 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_cloister"))
        .args(["serve", "attestation", "--listen", "127.0.0.1:0", "--database", &db])
        .arg("--operator-token-file")
        .arg(tmp.path().join("operator-token"))
        .arg("--tls-cert")
        .arg(&tls.certificate)
        .arg("--tls-key")
        .arg(&tls.key);
    let started = support::started(command);
    let url = started.field("url");
    let mut child = started.child;
    let addr = url.trim_start_matches("https://").to_owned();
    let mut idle = Vec::new();
    for _ in 0..400 {
        let connect = tokio::net::TcpStream::connect(&addr);
        match tokio::time::timeout(Duration::from_millis(500), connect).await {
            Ok(Ok(stream)) => idle.push(stream),
            _ => break,
        }
    }
    assert!(idle.len() > 100, "only {} connections opened", idle.len());
    // Past the handshake timeout the service has let go of them and answers again.
    tokio::time::sleep(cloister_authority::tls::HANDSHAKE_TIMEOUT + Duration::from_secs(2)).await;
    assert!(child.try_wait().unwrap().is_none(), "the service exited");
    let health = http().get(format!("{url}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    drop(idle);
    let _ = child.kill();
    let _ = child.wait();
}

/// A server (or anyone on the path of a plain loopback connection) answering with a redirect:
/// the client must not follow it, or the bearer token would travel wherever it points.
#[tokio::test]
async fn clients_never_follow_a_redirect_with_the_bearer_token() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    // Where the redirect points: records whatever reaches it.
    let sink = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sink_addr = sink.local_addr().unwrap();
    let reached = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = reached.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = sink.accept().await {
            let mut buf = vec![0; 4096];
            let n = stream.read(&mut buf).await.unwrap_or(0);
            seen.lock().unwrap().push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    });
    let redirector = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", redirector.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = redirector.accept().await {
            let mut buf = vec![0; 4096];
            let _ = stream.read(&mut buf).await;
            let answer = format!(
                "HTTP/1.1 307 Temporary Redirect\r\nlocation: http://{sink_addr}/v1/instances\r\n\
                 content-length: 0\r\nconnection: close\r\n\r\n"
            );
            let _ = stream.write_all(answer.as_bytes()).await;
        }
    });
    let client =
        ServiceClient::with_tls(&url, Some("clt_secret-token"), &ServiceTls::default()).unwrap();
    let err = client.list_instances().await.unwrap_err().to_string();
    assert!(err.contains("307") && err.contains("do not follow redirects"), "{err}");
    let err = client
        .export_instance(
            "in_x",
            &serde_json::from_value(serde_json::json!({
                "target": {}, "target_tenant": "tn_x"
            }))
            .unwrap(),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("do not follow redirects"), "{err}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(reached.lock().unwrap().is_empty(), "followed: {:?}", reached.lock().unwrap());
}

/// An input owner revokes its grants for a job from the command line, by the job spec or its
/// digest; the revocation is audited once however often it is repeated.
#[tokio::test]
async fn an_owner_revokes_a_grant_from_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", tmp.path().join("revoke.db").display());
    let server = Server::start(tmp.path(), &db);
    let dir = tmp.path().to_str().unwrap();
    let key = format!("{dir}/owner.key");
    let (ok, out, err) = cli(
        &["keygen", "--signing", "--secret", &key, "--public", &format!("{dir}/owner.pub")],
        &server.url,
        None,
    );
    assert!(ok, "{out}{err}");
    let spec = serde_json::json!({
        "id": "job-1", "kind": "batch-inference",
        "model": { "object_id": "m", "sha256": "11".repeat(32), "owner": "x" },
        "data": { "object_id": "d", "sha256": "22".repeat(32), "owner": "y" },
        "output_recipients": []
    });
    let spec_file = tmp.path().join("job.json");
    std::fs::write(&spec_file, spec.to_string()).unwrap();
    let digest = serde_json::from_value::<cloister_types::JobSpec>(spec).unwrap().digest().unwrap();
    let by_spec = ["job", "revoke-grant", "--job", spec_file.to_str().unwrap(), "--key", &key];
    let (ok, out, err) = cli(&[&by_spec[..], &["--json"]].concat(), &server.url, None);
    assert!(ok, "{out}{err}");
    assert_eq!(json_of(&out)["job_digest"], digest.to_string());
    let hex = digest.to_string();
    let by_digest = ["job", "revoke-grant", "--job-digest", &hex, "--key", &key];
    let (ok, out, err) = cli(&by_digest, &server.url, None);
    assert!(ok, "{out}{err}");
    assert!(err.contains("revoked every grant"), "{err}");
    let revocations = server
        .operator()
        .audit()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.kind == "grant.revoked" && r.subject == hex)
        .count();
    assert_eq!(revocations, 1);
    // Bad input is named, nothing sent.
    let (ok, _, err) =
        cli(&["job", "revoke-grant", "--job-digest", "zz", "--key", &key], &server.url, None);
    assert!(!ok && err.contains("--job-digest"), "{err}");
    let (ok, _, err) = cli(&["job", "revoke-grant", "--key", &key], &server.url, None);
    assert!(!ok && err.contains("--job"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_in_a_tee_attests_its_keys_and_is_exported_to_only_when_its_evidence_passes() {
    let tmp = tempfile::tempdir().unwrap();
    let source =
        Server::start(&tmp.path().join("a"), &database(tmp.path(), "a", false).await.unwrap());
    // The target runs "in a TEE" (the simulated one, named explicitly) with its own platform key.
    let target_key = tmp.path().join("target-platform.pem");
    let target = Server::start_with(
        &tmp.path().join("b"),
        &database(tmp.path(), "b", false).await.unwrap(),
        &["--tee", "sim", "--sim-platform-key", target_key.to_str().unwrap()],
    );
    let target_platform = SimPlatformKey::load_or_create(&target_key).unwrap().public_key();
    let measurement = Hex(cloister_attest::measure_file(Path::new(env!("CARGO_BIN_EXE_cloister")))
        .unwrap()
        .to_vec());

    let src_tenant = source.operator().create_tenant("t").await.unwrap();
    let dst_tenant = target.operator().create_tenant("t").await.unwrap();
    let src = source.as_tenant(&src_tenant.token);
    let dst = target.as_tenant(&dst_tenant.token);

    // The target's key document carries its evidence, binding its keys.
    let document = dst.service_key().await.unwrap();
    let evidence = &document["attestation"];
    assert_eq!(evidence["tee"], "sim", "{document}");
    assert_eq!(evidence["runtime_data"]["hpke_pk"], document["public_key"]);
    assert_eq!(
        evidence["runtime_data"]["service_key_sha256"], document["signing_key_sha256"],
        "{evidence}"
    );
    // The source service's document carries none (it was started without --tee).
    assert!(src.service_key().await.unwrap().get("attestation").is_none());

    let export = |id: String, target: Value| {
        let request = ExportRequest {
            target,
            target_tenant: dst_tenant.tenant.id.clone(),
            allow_unattested_target: false,
        };
        let src = &src;
        async move { src.export_instance(&id, &request).await }
    };
    // An instance whose policy admits the target's platform and measurement exports to it
    // without --allow-unattested-target.
    let admitting = CreateInstance {
        name: "admits-target".to_owned(),
        policy: PolicySpec::Builtin("dev-sim".to_owned()),
        reference_values: serde_json::json!({ "measurements": [measurement] }),
        trust_anchors: TrustAnchorSpec {
            sim_platform_keys: vec![target_platform.to_string()],
            ..TrustAnchorSpec::default()
        },
        settings: Default::default(),
    };
    let admitting = src.create_instance(&admitting).await.unwrap();
    export(admitting.id.clone(), document.clone()).await.unwrap();

    // One that does not trust the target's platform, or expects another measurement, refuses.
    let strangers = instance_request("strangers", &platform_key(tmp.path()));
    let strangers = src.create_instance(&strangers).await.unwrap();
    let err = export(strangers.id.clone(), document.clone()).await.unwrap_err().to_string();
    assert!(err.contains("attestation did not verify"), "{err}");
    let mut other = instance_request("other-measurement", &platform_key(tmp.path()));
    other.trust_anchors.sim_platform_keys = vec![target_platform.to_string()];
    let other = src.create_instance(&other).await.unwrap();
    let err = export(other.id.clone(), document.clone()).await.unwrap_err().to_string();
    assert!(err.contains("is not one of the reference measurements"), "{err}");

    // A host in the middle that swaps in its own key keeps the evidence, which binds the
    // target's key: refused.
    let mut swapped = document.clone();
    let impostor = cloister_seal::RecipientSecretKey::generate().public_key();
    swapped["public_key"] = impostor.to_text().into();
    swapped["key_id"] = impostor.key_id().to_hex().into();
    let err = export(admitting.id.clone(), swapped).await.unwrap_err().to_string();
    assert!(err.contains("binds") || err.contains("bound"), "{err}");

    // --attested-exports-only names the service builds it may move to, at creation: without
    // them the instance is refused, by the command line and by the API.
    let (ok, _, err) = cli(
        &[
            "instance",
            "create",
            "unnamed",
            "--builtin-policy",
            "dev-sim",
            "--attested-exports-only",
        ],
        &source.url,
        Some(&src_tenant.token),
    );
    assert!(!ok && err.contains("--export-measurement"), "{err}");
    let mut unnamed = CreateInstance {
        name: "unnamed".to_owned(),
        policy: PolicySpec::Builtin("dev-sim".to_owned()),
        reference_values: serde_json::json!({}),
        trust_anchors: TrustAnchorSpec::default(),
        settings: Default::default(),
    };
    unnamed.settings.attested_exports_only = true;
    let err = src.create_instance(&unnamed).await.unwrap_err().to_string();
    assert!(err.contains("needs settings.export_measurements"), "{err}");
    unnamed.settings.export_measurements = vec!["not hex".to_owned()];
    let err = src.create_instance(&unnamed).await.unwrap_err().to_string();
    assert!(err.contains("is not a measurement"), "{err}");
    unnamed.settings.attested_exports_only = false;
    unnamed.settings.export_measurements = vec!["ab".repeat(48)];
    let err = src.create_instance(&unnamed).await.unwrap_err().to_string();
    assert!(err.contains("only meaningful with"), "{err}");

    // An instance created --attested-exports-only refuses an unattested target even when the
    // exporter allows it; the source itself does not attest, so exporting to it is refused.
    let named_build = "ab".repeat(48);
    let (ok, out, err) = cli(
        &[
            "instance",
            "create",
            "sealed-in",
            "--builtin-policy",
            "dev-sim",
            "--attested-exports-only",
            "--export-measurement",
            &named_build.to_uppercase(),
            "--json",
        ],
        &source.url,
        Some(&src_tenant.token),
    );
    assert!(ok, "{out}{err}");
    let sealed_in: cloister_types::manage::InstanceView = serde_json::from_str(&out).unwrap();
    assert!(sealed_in.settings.attested_exports_only);
    assert_eq!(sealed_in.settings.export_measurements, std::slice::from_ref(&named_build));
    let unattested = src.service_key().await.unwrap();
    let request = ExportRequest {
        target: unattested.clone(),
        target_tenant: src_tenant.tenant.id.clone(),
        allow_unattested_target: true,
    };
    let err = src.export_instance(&sealed_in.id, &request).await.unwrap_err().to_string();
    assert!(err.contains("created with attested_exports_only"), "{err}");
    // The same request for an ordinary instance goes through (the exporter's consent counts).
    src.export_instance(&other.id, &request).await.unwrap();
    // Its admin cannot get around it by trusting a platform it controls afterwards: targets of
    // such an instance are appraised with the production policy and vendor roots only.
    let anchors = TrustAnchorSpec {
        sim_platform_keys: vec![target_platform.to_string()],
        ..TrustAnchorSpec::default()
    };
    src.set_trust_anchors(&sealed_in.id, &anchors).await.unwrap();
    let measurements = serde_json::json!({ "measurements": [measurement] });
    src.set_reference_values(&sealed_in.id, &measurements).await.unwrap();
    src.update_policy(&sealed_in.id, &PolicySpec::Builtin("dev-sim".to_owned())).await.unwrap();
    let err = export(sealed_in.id.clone(), document.clone()).await.unwrap_err().to_string();
    assert!(err.contains("sim"), "{err}");
    let (ok, out, _) =
        cli(&["instance", "show", &sealed_in.id], &source.url, Some(&src_tenant.token));
    assert!(
        ok && out.contains(&format!(
            "exports: only to services that attest themselves as one of {named_build}"
        )),
        "{out}"
    );
    drop((source, target));
}

/// An appraisal exported as a Unified Attestation Report reads back through `evidence verify
/// --unified`: the embedded evidence verifies (binding included) and the stated results are what
/// it gives. A report whose results were edited, whose quote was swapped, an EAR of other
/// evidence, or a JWKS of another instance are refused.
#[tokio::test]
async fn an_appraisal_exported_as_a_unified_attestation_report_reads_back_and_edits_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(db) = database(tmp.path(), "uar", false).await else { return };
    let server = Server::start(&tmp.path().join("svc"), &db);
    let tenant = server.operator().create_tenant("t").await.unwrap();
    let key = platform_key(tmp.path());
    let admin = server.as_tenant(&tenant.token);
    let instance = admin.create_instance(&instance_request("uar", &key)).await.unwrap();
    let other = admin.create_instance(&instance_request("other", &key)).await.unwrap();
    let client = instance_client(&server.url, &instance.id);
    let request = evidence(&client, &key).await;
    let issued = client.attest(&request).await.unwrap();
    let second = evidence(&client, &key).await;

    let dir = tmp.path();
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path.to_string_lossy().into_owned()
    };
    let ear = write("ear.jwt", issued.ear.as_bytes());
    let jwks = client.instance().await.unwrap().jwks;
    let jwks = write("jwks.json", jwks.to_string().as_bytes());
    let other_jwks = instance_client(&server.url, &other.id).instance().await.unwrap().jwks;
    let other_jwks = write("other-jwks.json", other_jwks.to_string().as_bytes());
    let evidence_file = write("evidence.json", &serde_json::to_vec(&request.evidence).unwrap());
    let second_file = write("second.json", &serde_json::to_vec(&second.evidence).unwrap());
    let sim_key = write("sim.key", key.platform_public_key().to_string().as_bytes());
    let export = |format: &str, jwks: &str, evidence: &str| {
        cli(
            &[
                "evidence",
                "export",
                "--format",
                format,
                "--ear",
                &ear,
                "--jwks",
                jwks,
                "--evidence",
                evidence,
                "--trust-anchor",
                &sim_key,
            ],
            "http://unused",
            None,
        )
    };
    let verify_with = |path: &str, jwks: Option<&str>| {
        let mut args =
            vec!["evidence", "verify", "--unified", path, "--trust-anchor", &sim_key, "--json"];
        if let Some(jwks) = jwks {
            args.extend(["--jwks", jwks]);
        }
        cli(&args, "http://unused", None)
    };
    let verify_unified = |path: &str| verify_with(path, Some(&jwks));

    // EAR: the token itself.
    let (ok, out, err) = export("ear", &jwks, &evidence_file);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), issued.ear);

    // UAR: the fields the format defines, the evidence and the results.
    let (ok, out, err) = export("uar", &jwks, &evidence_file);
    assert!(ok, "{err}");
    let report = json_of(&out);
    assert_eq!(report["str_report_version"], "1.0");
    assert_eq!(report["str_report_type"], "Passport");
    assert_eq!(report["str_tee_platform"], "SIM");
    let nested: Value =
        serde_json::from_str(report["json_nested_reports"].as_str().unwrap()).unwrap();
    assert_eq!(nested["str_cloister_ear"], issued.ear.as_str());
    let results: Value =
        serde_json::from_str(nested["json_nested_results"].as_str().unwrap()).unwrap();
    let cpu0 = &results["nested_report_results"][0];
    assert_eq!(cpu0["str_cloister_component"], "cpu0");
    assert_eq!(cpu0["hex_ta_measurement"], hex::encode_upper(MEASUREMENT));
    assert_eq!(cpu0["str_cloister_ear_status"], "warning");
    let uar = write("report.json", out.as_bytes());
    let (ok, out, err) = verify_unified(&uar);
    assert!(ok, "{out}{err}");
    assert_eq!(json_of(&out)["cpu0"]["measurement"], hex::encode(MEASUREMENT));
    // The stated appraisal is checked against the EAR token, so the JWKS is needed.
    let (ok, out, _) = verify_with(&uar, None);
    assert!(!ok && out.contains("--jwks"), "{out}");
    let (ok, out, _) = verify_with(&uar, Some(&other_jwks));
    assert!(!ok && out.contains("has no key"), "{out}");

    // An appraisal edited in the report, or an EAR token replaced, is refused.
    let edit_result = |field: &str, value: Value| {
        let mut results = results.clone();
        results["nested_report_results"][0][field] = value;
        let mut nested = nested.clone();
        nested["json_nested_results"] = results.to_string().into();
        let mut report = report.clone();
        report["json_nested_reports"] = nested.to_string().into();
        report
    };
    let promoted = edit_result("str_cloister_ear_status", "affirming".into()).to_string();
    let promoted = write("promoted.json", promoted.as_bytes());
    let (ok, out, _) = verify_unified(&promoted);
    assert!(!ok && out.contains("str_cloister_ear_status"), "{out}");
    let mut forged_ear = nested.clone();
    forged_ear["str_cloister_ear"] = "not-a-token".into();
    let mut forged = report.clone();
    forged["json_nested_reports"] = forged_ear.to_string().into();
    let forged = write("forged-ear.json", forged.to_string().as_bytes());
    let (ok, out, _) = verify_unified(&forged);
    assert!(!ok && out.contains("EAR token"), "{out}");
    // A key named twice (readers disagree on which counts) is refused.
    let text = std::fs::read_to_string(&uar).unwrap();
    let doubled = text.replacen('{', "{\n  \"str_report_version\": \"1.0\",", 1);
    let doubled = write("doubled.json", doubled.as_bytes());
    let (ok, out, _) = verify_unified(&doubled);
    assert!(!ok && out.contains("appears twice"), "{out}");

    // A stated result that the evidence does not give is refused, naming it.
    let mut edited_results = results.clone();
    edited_results["nested_report_results"][0]["hex_ta_measurement"] = "00".repeat(48).into();
    let mut edited_nested = nested.clone();
    edited_nested["json_nested_results"] = edited_results.to_string().into();
    let mut edited = report.clone();
    edited["json_nested_reports"] = edited_nested.to_string().into();
    let edited = write("edited.json", edited.to_string().as_bytes());
    let (ok, out, _) = verify_unified(&edited);
    assert!(!ok);
    assert!(out.contains("cpu0.hex_ta_measurement"), "{out}");

    // A quote that is not the embedded evidence's is refused.
    let mut platform: Value =
        serde_json::from_str(report["json_report"].as_str().unwrap()).unwrap();
    platform["b64_quote"] = "AAAA".into();
    let mut swapped = report.clone();
    swapped["json_report"] = platform.to_string().into();
    let swapped = write("swapped.json", swapped.to_string().as_bytes());
    let (ok, out, err) = verify_unified(&swapped);
    assert!(!ok, "{out}");
    assert!(err.contains("b64_quote"), "{err}");

    // The token of other evidence, or another instance's keys: nothing is written.
    let (ok, out, err) = export("uar", &jwks, &second_file);
    assert!(!ok && out.is_empty(), "{out}");
    assert!(err.contains("appraisal of other evidence"), "{err}");
    // Evidence over the same runtime data with another measurement (anyone can make it: the
    // runtime data is public keys and a nonce) is not what the token appraised.
    let other_code = SimAttester::new(
        SimPlatformKey::load_or_create(&tmp.path().join("sim-platform-key.pem")).unwrap(),
        [0x77; 48],
    );
    let lookalike = other_code.attest(&request.evidence.runtime_data).unwrap();
    let lookalike = write("lookalike.json", &serde_json::to_vec(&lookalike).unwrap());
    let (ok, out, err) = export("uar", &jwks, &lookalike);
    assert!(!ok && out.is_empty(), "{out}");
    assert!(err.contains("claims are not what the evidence gives"), "{err}");
    // The same report re-signed by another platform the instance never trusted (red team round
    // 2): its normalised claims are the same, its vendor claims (the platform key) are not.
    let other_platform = SimPlatformKey::generate();
    let other_public =
        write("other-platform.pub", other_platform.public_key().to_string().as_bytes());
    let resigned = SimAttester::new(other_platform, MEASUREMENT)
        .attest(&request.evidence.runtime_data)
        .unwrap();
    let resigned = write("resigned.json", &serde_json::to_vec(&resigned).unwrap());
    let (ok, out, err) = cli(
        &[
            "evidence",
            "export",
            "--format",
            "uar",
            "--ear",
            &ear,
            "--jwks",
            &jwks,
            "--evidence",
            &resigned,
            "--trust-anchor",
            &other_public,
        ],
        "http://unused",
        None,
    );
    assert!(!ok && out.is_empty(), "{out}");
    assert!(err.contains("claims are not what the evidence gives"), "{err}");
    // A JWKS listing the token's key id twice is refused, whichever entry comes first.
    let mut doubled: Value =
        serde_json::from_str(&std::fs::read_to_string(&jwks).unwrap()).unwrap();
    let first = doubled["keys"][0].clone();
    doubled["keys"].as_array_mut().unwrap().push(first);
    let doubled = write("doubled-jwks.json", doubled.to_string().as_bytes());
    let (ok, _, err) = export("ear", &doubled, &evidence_file);
    assert!(!ok && err.contains("more than once"), "{err}");
    let (ok, out, err) = export("uar", &other_jwks, &evidence_file);
    assert!(!ok && out.is_empty(), "{out}");
    assert!(err.contains("has no key"), "{err}");
}

/// A worker pins the attestation service by what it runs (`--service-measurement`): against a
/// service attested by the simulated TEE it starts only when the service's measurement is one it
/// names and the service's evidence verifies under the platform key it names.
#[tokio::test]
async fn a_worker_pins_the_attestation_service_by_measurement() {
    let tmp = tempfile::tempdir().unwrap();
    let platform = tmp.path().join("service-platform.pem");
    // Made before the service starts, which then loads it (never two writers of one file).
    let public = platform_public(&platform);
    let server = Server::start_with(
        &tmp.path().join("svc"),
        &database(tmp.path(), "pin", false).await.unwrap(),
        &["--tee", "sim", "--sim-platform-key", platform.to_str().unwrap()],
    );
    let measurement = binary_measurement();
    let tenant = server.operator().create_tenant("t").await.unwrap();
    let worker_key = platform_key(tmp.path());
    let mut request = instance_request("workers", &worker_key);
    // The simulated worker reports the binary's own measurement, as the service does.
    request.reference_values = serde_json::json!({ "measurements": [measurement] });
    let instance = server.as_tenant(&tenant.token).create_instance(&request).await.unwrap();
    let worker = |pins: &[&str], data: &str| {
        worker_command(&server, &instance.id, &tmp.path().join(data), tmp.path(), pins)
    };
    let public = public.to_str().unwrap();

    // Another build, or evidence under a platform key the worker does not name: no start.
    let wrong = "00".repeat(48);
    let out =
        worker(&["--service-measurement", &wrong, "--service-sim-platform-key", public], "w1")
            .output()
            .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("not one of the pinned"), "{stderr}");
    let out = worker(&["--service-measurement", &measurement], "w2").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("did not verify"), "{stderr}");

    // The service's own build and platform key: the worker starts.
    let mut child = worker(
        &["--service-measurement", &measurement, "--service-sim-platform-key", public],
        "w3",
    )
    .spawn()
    .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let _ = child.kill();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    let _ = child.wait();
    let started: Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}; {stderr}"));
    assert!(started["url"].as_str().unwrap().starts_with("https://"), "{started}");

    // The evidence answers the worker's own challenge, so an older document cannot stand in:
    // the service binds the nonce it is given, refuses a malformed one, and a service outside a
    // TEE has nothing to answer with.
    let challenge = |url: String, nonce: &str| {
        let body = serde_json::json!({ "nonce": nonce });
        async move {
            http().post(format!("{url}/v1/service-key/challenge")).json(&body).send().await.unwrap()
        }
    };
    let nonce = "bm9uY2Utb2YtdGhlLXdvcmtlci10ZXN0";
    let answer = challenge(server.url.clone(), nonce).await;
    assert_eq!(answer.status(), 200);
    let document: Value = answer.json().await.unwrap();
    assert_eq!(
        document["attestation"]["runtime_data"]["nonce"],
        format!("cloister-service-challenge:{nonce}")
    );
    assert_eq!(challenge(server.url.clone(), "short").await.status(), 400);
    let plain = Server::start(
        &tmp.path().join("plain"),
        &database(tmp.path(), "plain", false).await.unwrap(),
    );
    assert_eq!(challenge(plain.url.clone(), nonce).await.status(), 409);
}

/// The sim platform key at `platform` (created if missing), its public half written beside it
/// (`.pub`) for `--service-sim-platform-key`.
fn platform_public(platform: &Path) -> std::path::PathBuf {
    let public = platform.with_extension("pub");
    let key = SimPlatformKey::load_or_create(platform).unwrap().public_key();
    std::fs::write(&public, key.to_string()).unwrap();
    public
}

/// What a service or worker run from this binary under `--tee sim` reports: its own digest.
fn binary_measurement() -> String {
    let digest = cloister_attest::measure_file(Path::new(env!("CARGO_BIN_EXE_cloister"))).unwrap();
    Hex(digest.to_vec()).to_string()
}

/// `cloister serve worker` for `instance` of `server` on a sim platform whose key lives in
/// `dir`, with `pins` (the service-pinning flags), stdout and stderr piped.
fn worker_command(
    server: &Server,
    instance: &str,
    data: &Path,
    dir: &Path,
    pins: &[&str],
) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cloister"));
    command
        .args(["serve", "worker", "--listen", "127.0.0.1:0", "--authority", &server.url])
        .args(["--instance", instance, "--service-fingerprint", &server.fingerprint])
        .arg("--data-dir")
        .arg(data)
        .args(["--tee", "sim", "--sim-platform-key"])
        .arg(dir.join("sim-platform-key.pem"))
        .args(pins)
        .env("CLOISTER_SERVER_CA", &test_tls().ca)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// The measurement pin holds for the worker's whole life: every renewal asks the service for
/// fresh evidence of itself first. A service restarted in place under the same signing key but
/// on a platform the worker does not trust gets no more renewals from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_worker_checks_the_service_again_before_every_renewal() {
    let tmp = tempfile::tempdir().unwrap();
    let db = database(tmp.path(), "repin", false).await.unwrap();
    let trusted_platform = tmp.path().join("service-platform.pem");
    let svc_dir = tmp.path().join("svc");
    let sim = |key: &Path| {
        vec![
            "--tee".to_owned(),
            "sim".to_owned(),
            "--sim-platform-key".to_owned(),
            key.display().to_string(),
        ]
    };
    let args = sim(&trusted_platform);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let public = platform_public(&trusted_platform);
    let server = Server::start_with(&svc_dir, &db, &args);
    let measurement = binary_measurement();
    let tenant = server.operator().create_tenant("t").await.unwrap();
    let worker_key = platform_key(tmp.path());
    let mut request = instance_request("workers", &worker_key);
    request.reference_values = serde_json::json!({ "measurements": [measurement] });
    // Tokens that live 4 s: the worker renews about every 2.5 s.
    request.settings.token_ttl_secs = 4;
    request.settings.cert_ttl_secs = 4;
    let instance = server.as_tenant(&tenant.token).create_instance(&request).await.unwrap();
    let pins = ["--service-measurement", &measurement, "--service-sim-platform-key"];
    let mut child = worker_command(&server, &instance.id, &tmp.path().join("w"), tmp.path(), &pins)
        .arg(&public)
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let wait_for = |what: &dyn Fn(&str) -> bool, seconds: u64| {
        let deadline = std::time::Instant::now() + Duration::from_secs(seconds);
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match rx.recv_timeout(left) {
                Ok(line) if what(&line) => return line,
                Ok(line) => seen.push(line),
                Err(_) => break,
            }
        }
        panic!("not seen in {seconds} s; the worker logged {seen:#?}");
    };
    // Renewals pass the pin while the service runs the pinned build on the trusted platform.
    wait_for(&|l| l.contains("renewed the enclave's attestation"), 30);

    // The same service (directory, database, signing key, port), now on another platform.
    let addr = server.url.trim_start_matches("https://").to_owned();
    let fingerprint = server.fingerprint.clone();
    server.stop();
    let args = sim(&tmp.path().join("other-platform.pem"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let restarted = Server::start_at(&svc_dir, &db, &addr, &args);
    assert_eq!(restarted.fingerprint, fingerprint, "the same signing key");
    let refused = wait_for(
        &|l| {
            l.contains("renewing the enclave's attestation failed") && l.contains("did not verify")
        },
        30,
    );
    assert!(refused.contains("evidence"), "{refused}");
    let _ = child.kill();
    let _ = child.wait();
}

/// The metric names a PromQL expression reads: identifiers outside label matchers, ranges,
/// strings and grouping lists that are not functions, aggregations or keywords.
fn promql_metric_names(expr: &str) -> Vec<String> {
    const NOT_METRICS: &[&str] = &[
        "sum",
        "min",
        "max",
        "avg",
        "count",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
        "count_values",
        "group",
        "rate",
        "irate",
        "increase",
        "delta",
        "idelta",
        "deriv",
        "predict_linear",
        "histogram_quantile",
        "clamp",
        "clamp_min",
        "clamp_max",
        "abs",
        "time",
        "vector",
        "scalar",
        "absent",
        "absent_over_time",
        "changes",
        "resets",
        "label_replace",
        "label_join",
        "sort",
        "sort_desc",
        "ceil",
        "floor",
        "round",
        "timestamp",
        "avg_over_time",
        "min_over_time",
        "max_over_time",
        "sum_over_time",
        "count_over_time",
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "inf",
        "nan",
    ];
    const GROUPING: &[&str] = &["by", "without", "on", "ignoring", "group_left", "group_right"];
    let chars: Vec<char> = expr.chars().collect();
    let mut names = Vec::new();
    let mut i = 0;
    // Skips from an opening character to its closing one, past quoted strings.
    let skip = |mut i: usize, close: char| {
        while i < chars.len() && chars[i] != close {
            if matches!(chars[i], '"' | '\'' | '`') {
                let quote = chars[i];
                i += 1;
                while i < chars.len() && chars[i] != quote {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
            }
            i += 1;
        }
        i + 1
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '{' {
            i = skip(i + 1, '}');
        } else if c == '[' {
            i = skip(i + 1, ']');
        } else if matches!(c, '"' | '\'' | '`') {
            i = skip(i + 1, c);
        } else if c.is_ascii_digit() || c == '.' {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "_:".contains(chars[i])) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut next = i;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            let called = chars.get(next) == Some(&'(');
            if GROUPING.contains(&word.as_str()) {
                if called {
                    i = skip(next + 1, ')');
                }
            } else if !called && !NOT_METRICS.contains(&word.as_str()) {
                names.push(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

#[test]
fn the_promql_scan_finds_metric_names_and_nothing_else() {
    let expr = r#"histogram_quantile(0.99, sum by (le) (rate(cloister_a_bucket{x="y}z"}[10m])))
        / clamp_min(sum without (tee) (cloister_b), 1e-9) > 0.2 and on (instance) up == 0
        or min(cloister_c - time()) < 14 * 24 * 3600"#;
    assert_eq!(promql_metric_names(expr), ["cloister_a_bucket", "cloister_b", "up", "cloister_c"]);
}

/// The sample alert rules and the Grafana dashboard read only metrics that a running service and
/// worker export (a renamed metric fails here); both processes log nothing but JSON lines; the
/// worker answers /healthz, /readyz (503 with the reason once its object store is gone) and
/// /metrics with no credential, and its counters count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alert_rules_and_the_dashboard_read_only_metrics_the_service_and_worker_export() {
    let tmp = tempfile::tempdir().unwrap();
    let db = database(tmp.path(), "monitoring", false).await.unwrap();
    // Cached collateral, so that its expiry is exported (it is absent while nothing is cached).
    let now = unix_now() as i64;
    let bundle = DcapPlatform::tdx(now).unwrap().collateral_bundle("UpToDate", now, 1).unwrap();
    let bundle_path = tmp.path().join("collateral.json");
    std::fs::write(&bundle_path, bundle).unwrap();
    let server = Server::start_with(
        &tmp.path().join("svc"),
        &db,
        &["--collateral-bundle", bundle_path.to_str().unwrap(), "--log-level", "debug"],
    );
    let tenant = server.operator().create_tenant("t").await.unwrap();
    let worker_key = platform_key(tmp.path());
    let mut request = instance_request("workers", &worker_key);
    request.reference_values = serde_json::json!({ "measurements": [binary_measurement()] });
    let instance = server.as_tenant(&tenant.token).create_instance(&request).await.unwrap();
    let data = tmp.path().join("w");
    // The worker process, killed however the test ends.
    struct Killed(Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut worker =
        Killed(worker_command(&server, &instance.id, &data, tmp.path(), &[]).spawn().unwrap());
    let child = &mut worker.0;
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let worker_log = Arc::new(Mutex::new(Vec::new()));
    let lines = worker_log.clone();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            lines.lock().unwrap().push(line);
        }
    });
    let started: Value = serde_json::from_str(&line).unwrap_or_else(|e| {
        let _ = child.kill();
        panic!("{line:?}: {e}; {:?}", worker_log.lock().unwrap())
    });
    let url = started["url"].as_str().unwrap().to_owned();
    // A scraper needs no credential; the enclave's certificate names no host (clients check
    // it by its claims, which metrics need not), so this one does not verify it.
    let scraper = reqwest::Client::builder().danger_accept_invalid_certs(true).build().unwrap();
    let get = |url: String| {
        let scraper = scraper.clone();
        async move {
            let response = scraper.get(url).send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    assert_eq!(get(format!("{url}/healthz")).await, (200, "ok".to_owned()));
    assert_eq!(get(format!("{url}/readyz")).await, (200, "ready".to_owned()));
    // An online request that does not decrypt: refused, and counted by its code and route.
    let garbage = scraper
        .post(format!("{url}/v1/ohttp"))
        .header("content-type", "message/ohttp-req")
        .body(vec![0u8; 64])
        .send()
        .await
        .unwrap();
    assert_eq!(garbage.status(), 400);

    let (status, worker_metrics) = get(format!("{url}/metrics")).await;
    assert_eq!(status, 200, "{worker_metrics}");
    let (status, service_metrics) = get(format!("{}/metrics", server.url)).await;
    assert_eq!(status, 200, "{service_metrics}");
    for line in [
        r#"cloister_worker_online_refusals_total{code="undecryptable"} 1"#,
        r#"cloister_worker_online_requests_total{result="refused"} 1"#,
        r#"cloister_worker_http_requests_total{route="/v1/ohttp",status="4xx"} 1"#,
        r#"cloister_worker_http_requests_total{route="/readyz",status="2xx"} 1"#,
        r#"cloister_worker_batch_jobs{state="queued"} 0"#,
        "cloister_worker_batch_queue_up 1",
        "cloister_worker_batch_queue_depth 0",
        "cloister_worker_models_loaded 0",
    ] {
        assert!(worker_metrics.contains(line), "{line} missing:\n{worker_metrics}");
    }
    // The certificate's expiry is a Unix time within the instance's certificate lifetime.
    let expiry: i64 = worker_metrics
        .lines()
        .find_map(|l| l.strip_prefix("cloister_worker_certificate_expiry_timestamp_seconds "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(expiry > now && expiry <= now + 3600 + 60, "{expiry} vs {now}");
    let collateral: i64 = service_metrics
        .lines()
        .find_map(|l| l.strip_prefix("cloister_collateral_expiry_timestamp_seconds "))
        .unwrap_or_else(|| panic!("no collateral expiry:\n{service_metrics}"))
        .parse()
        .unwrap();
    assert!(collateral > now && collateral < now + 40 * 86_400, "{collateral}");
    for text in [&worker_metrics, &service_metrics] {
        let commit = text.lines().find(|l| l.starts_with("cloister_build_info{")).unwrap();
        assert!(commit.contains(r#"version=""#) && commit.ends_with(" 1"), "{commit}");
        let start: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("process_start_time_seconds "))
            .unwrap()
            .parse()
            .unwrap();
        assert!(start > (now - 600) as f64 && start <= (now + 600) as f64, "{start}");
    }
    // Nothing names the tenant, the instance or the worker's keys.
    for secret in [&tenant.token, &instance.id, &server.operator_token] {
        assert!(!worker_metrics.contains(secret.as_str()));
        assert!(!service_metrics.contains(secret.as_str()));
    }

    // Every metric the rules and the dashboard read is exported by one of them (`up` is
    // Prometheus' own).
    let exported: std::collections::BTreeSet<&str> = worker_metrics
        .lines()
        .chain(service_metrics.lines())
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .chain(["up"])
        .collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/monitoring");
    let rules = std::fs::read_to_string(root.join("alerts.yaml")).unwrap();
    let mut expressions = Vec::new();
    let mut lines = rules.lines().peekable();
    while let Some(line) = lines.next() {
        let Some((indent, rest)) = line.split_once("expr:") else { continue };
        let rest = rest.trim();
        if rest != "|" && rest != ">-" {
            expressions.push(rest.to_owned());
            continue;
        }
        // A block scalar: the lines indented deeper than `expr:`.
        let mut block = String::new();
        while let Some(next) = lines.peek() {
            if next.trim().is_empty() || next.len() - next.trim_start().len() > indent.len() {
                block.push_str(next);
                block.push('\n');
                lines.next();
            } else {
                break;
            }
        }
        expressions.push(block);
    }
    assert!(expressions.len() >= 15, "{} alert expressions", expressions.len());
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("dashboard.json")).unwrap())
            .unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    let queries: Vec<String> = panels
        .iter()
        .flat_map(|panel| panel["targets"].as_array().cloned().unwrap_or_default())
        .map(|target| target["expr"].as_str().unwrap().to_owned())
        .collect();
    assert!(queries.len() >= 20, "{} dashboard queries", queries.len());
    let mut used = std::collections::BTreeSet::new();
    for expr in expressions.iter().chain(&queries) {
        let names = promql_metric_names(expr);
        assert!(!names.is_empty(), "no metric in {expr:?}");
        for name in names {
            assert!(exported.contains(name.as_str()), "{name} (in {expr:?}) is not exported");
            used.insert(name);
        }
    }
    assert!(used.iter().any(|n| n.starts_with("cloister_worker_")), "{used:?}");
    assert!(used.contains("cloister_attestations_total"), "{used:?}");

    // Readiness follows the object store: gone, the worker says so (and stays alive).
    std::fs::remove_dir_all(data.join("objects")).unwrap();
    let (status, body) = get(format!("{url}/readyz")).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("not_ready") && body.contains("object store"), "{body}");
    assert_eq!(get(format!("{url}/healthz")).await.0, 200);

    drop(worker);
    std::thread::sleep(Duration::from_millis(100));
    assert_json_log(&worker_log.lock().unwrap());
    assert!(
        worker_log.lock().unwrap().iter().any(|l| listening(l).is_some()),
        "the worker logged no listening event"
    );
    let service_log = server.stop();
    assert_json_log(&service_log);
    // --log-level debug took effect over CLOISTER_LOG=info (the test harness sets it).
    assert!(service_log.iter().any(|l| l.contains(r#""level":"DEBUG""#)), "{service_log:#?}");
}
