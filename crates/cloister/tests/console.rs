//! The web console (`/ui/` on `cloister serve attestation`) in headless Chromium, driven over
//! WebDriver by Debian's `chromedriver`: an operator creates a tenant; a tenant admin creates an
//! instance, updates its policy and sees the diff; an auditor verifies the audit chain and its
//! checkpoints in the browser, then sees a row tampered in the database flagged; markup stored
//! in the database is shown as text. Every test fails on a Content-Security-Policy violation.
//!
//! The driver is `/usr/bin/chromedriver` and the browser `/usr/bin/chromium` unless
//! `CLOISTER_CHROMEDRIVER` / `CLOISTER_CHROMIUM` say otherwise. When either is missing the tests
//! are skipped, except with `CI` set, where they fail. Screenshots go to a temporary directory,
//! or to `CLOISTER_CONSOLE_SCREENSHOTS` when set (how `docs/ops/console/` was made).

// Helpers in integration tests are not #[test] functions; a failed setup should panic loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

/// One browser at a time: the machines that run these tests have few cores.
static SERIAL: Mutex<()> = Mutex::new(());

/// How long a page may take to show what a test waits for (generous: never a timing assert).
const PATIENCE: Duration = Duration::from_secs(30);

/// The browser and its driver, or `None` (skipped) when they are not installed outside CI.
fn browser_paths() -> Option<(PathBuf, PathBuf)> {
    let driver = std::env::var_os("CLOISTER_CHROMEDRIVER")
        .map_or_else(|| PathBuf::from("/usr/bin/chromedriver"), PathBuf::from);
    let chromium = std::env::var_os("CLOISTER_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    if driver.is_file() && chromium.is_file() {
        return Some((driver, chromium));
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI is set but {} or {} is missing: install Debian's chromium and chromium-driver \
         (.ci/run does)",
        driver.display(),
        chromium.display()
    );
    eprintln!(
        "skipped: {} or {} is missing (apt-get install chromium chromium-driver)",
        driver.display(),
        chromium.display()
    );
    None
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

// ---- the service ---------------------------------------------------------------------------

/// A `cloister serve attestation` process on plain HTTP on loopback (a secure context for the
/// browser), checkpointing every second.
struct Service {
    child: Child,
    url: String,
    operator_token: String,
    fingerprint: String,
    database: String,
    _dir: tempfile::TempDir,
}

impl Service {
    fn start() -> Service {
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("operator-token");
        let database = format!("sqlite://{}", dir.path().join("authority.db").display());
        let mut command = Command::new(env!("CARGO_BIN_EXE_cloister"));
        command
            .args(["serve", "attestation", "--listen", "127.0.0.1:0", "--database", &database])
            .arg("--operator-token-file")
            .arg(&token_file)
            .args(["--checkpoint-interval", "1"]);
        let started = support::started(command);
        let (url, fingerprint) = (started.field("url"), started.field("service_fingerprint"));
        let operator_token = std::fs::read_to_string(&token_file).unwrap().trim().to_owned();
        Service { child: started.child, url, operator_token, fingerprint, database, _dir: dir }
    }

    /// A JSON API call with a bearer token (none when `token` is empty).
    fn call(&self, method: &str, path: &str, token: &str, body: Option<Value>) -> Value {
        runtime().block_on(async {
            let client = reqwest::Client::new();
            let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            let mut request = client.request(method, format!("{}{path}", self.url));
            if !token.is_empty() {
                request = request.bearer_auth(token);
            }
            if let Some(body) = body {
                request = request.json(&body);
            }
            let response = request.send().await.unwrap();
            let status = response.status();
            let value: Value = response.json().await.unwrap_or(Value::Null);
            assert!(status.is_success(), "{path}: {status} {value}");
            value
        })
    }

    /// A new tenant's admin token.
    fn tenant(&self, name: &str) -> String {
        let created =
            self.call("POST", "/v1/tenants", &self.operator_token, Some(json!({"name": name})));
        created["token"].as_str().unwrap().to_owned()
    }

    /// Runs SQL on the service's database file, as someone with write access to it would.
    fn tamper(&self, sql: &str) {
        runtime().block_on(async {
            let pool = sqlx::SqlitePool::connect(&self.database).await.unwrap();
            let done =
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned())).execute(&pool).await.unwrap();
            assert!(done.rows_affected() > 0, "{sql} changed nothing");
            pool.close().await;
        });
    }

    /// Waits until a signed checkpoint covers the last audit entry.
    fn wait_for_checkpoint(&self) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let chain = self.call("GET", "/v1/audit/chain", &self.operator_token, None);
            let last = chain["entries"].as_array().unwrap().last().map(|e| e["seq"].clone());
            let signed = chain["checkpoints"].as_array().unwrap().last().map(|c| c["seq"].clone());
            if last.is_some() && last == signed {
                return;
            }
            assert!(Instant::now() < deadline, "no checkpoint covers the log: {chain}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---- a minimal WebDriver client ------------------------------------------------------------

/// `chromedriver` and one headless Chromium session, spoken to in W3C WebDriver over HTTP.
struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    rt: tokio::runtime::Runtime,
    shots: PathBuf,
    _shots_dir: Option<tempfile::TempDir>,
}

/// An element reference.
#[derive(Clone)]
struct Element(String);

const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Browser {
    fn start(driver: &Path, chromium: &Path) -> Browser {
        let port = free_port();
        let log = std::env::temp_dir().join(format!("chromedriver-{port}.log"));
        let driver = Command::new(driver)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let (shots, shots_dir) = match std::env::var_os("CLOISTER_CONSOLE_SCREENSHOTS") {
            Some(dir) => (PathBuf::from(dir), None),
            None => {
                let dir = tempfile::tempdir().unwrap();
                (dir.path().to_owned(), Some(dir))
            }
        };
        std::fs::create_dir_all(&shots).unwrap();
        let mut browser = Browser {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            session: String::new(),
            http: reqwest::Client::new(),
            rt: runtime(),
            shots,
            _shots_dir: shots_dir,
        };
        let deadline = Instant::now() + PATIENCE;
        while browser.raw("GET", "/status", None).map(|s| s["value"]["ready"] == true).ok()
            != Some(true)
        {
            assert!(Instant::now() < deadline, "chromedriver did not start; see {}", log.display());
            std::thread::sleep(Duration::from_millis(100));
        }
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium.to_str().unwrap(),
                "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                         "--window-size=1280,900", "--disable-gpu"],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let created = browser.raw("POST", "/session", Some(capabilities)).unwrap();
        browser.session = created["value"]["sessionId"].as_str().unwrap().to_owned();
        browser
    }

    /// One WebDriver command; `Err` with the driver's answer when it reports an error.
    fn raw(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, Value> {
        self.rt.block_on(async {
            let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            let mut request = self.http.request(method, format!("{}{path}", self.base));
            if let Some(body) = body {
                request = request.json(&body);
            }
            let response = request.send().await.map_err(|e| json!(e.to_string()))?;
            let ok = response.status().is_success();
            let value: Value = response.json().await.map_err(|e| json!(e.to_string()))?;
            if ok { Ok(value) } else { Err(value) }
        })
    }

    fn command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        match self.raw(method, &path, body) {
            Ok(value) => value["value"].clone(),
            Err(error) => panic!("WebDriver {method} {path}: {error}"),
        }
    }

    fn goto(&self, url: &str) {
        self.command("POST", "/url", Some(json!({"url": url})));
    }

    fn find(&self, css: &str) -> Element {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let path = format!("/session/{}/element", self.session);
            let found =
                self.raw("POST", &path, Some(json!({"using": "css selector", "value": css})));
            if let Ok(value) = found {
                return Element(value["value"][ELEMENT_KEY].as_str().unwrap().to_owned());
            }
            assert!(Instant::now() < deadline, "no element {css}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn click(&self, css: &str) {
        let element = self.find(css);
        self.command("POST", &format!("/element/{}/click", element.0), Some(json!({})));
    }

    fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css);
        self.command("POST", &format!("/element/{}/value", element.0), Some(json!({"text": text})));
    }

    fn clear(&self, css: &str) {
        let element = self.find(css);
        self.command("POST", &format!("/element/{}/clear", element.0), Some(json!({})));
    }

    /// Runs `script` (a function body) in the page with `args`, returns its value.
    fn run(&self, script: &str, args: Value) -> Value {
        self.command("POST", "/execute/sync", Some(json!({"script": script, "args": args})))
    }

    /// The text content of the first element matching `css` ("" when none).
    fn text(&self, css: &str) -> String {
        let script =
            "const e = document.querySelector(arguments[0]); return e ? e.textContent : '';";
        self.run(script, json!([css])).as_str().unwrap_or("").to_owned()
    }

    /// Waits until `css`'s text satisfies `test`; returns it.
    fn wait_text(&self, css: &str, what: &str, test: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let text = self.text(css);
            if test(&text) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "{css} never showed {what}; it shows {text:?}; the page says {:?}",
                self.text("#message")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn screenshot(&self, name: &str) {
        let png = self.command("GET", "/screenshot", None);
        let bytes =
            base64::engine::general_purpose::STANDARD.decode(png.as_str().unwrap()).unwrap();
        std::fs::write(self.shots.join(format!("{name}.png")), bytes).unwrap();
    }

    /// Fails on any Content-Security-Policy report: in the browser's console log, or caught by
    /// the page's own `securitypolicyviolation` listener.
    fn assert_no_csp_violation(&self) {
        let log = self.command("POST", "/se/log", Some(json!({"type": "browser"})));
        for entry in log.as_array().into_iter().flatten() {
            let message = entry["message"].as_str().unwrap_or("");
            assert!(
                !message.contains("Content Security Policy") && !message.contains("Refused to"),
                "a CSP violation: {message}"
            );
        }
        assert_eq!(self.text("#csp-violations"), "", "the page reported a CSP violation");
    }

    fn sign_in(&self, service: &Service, token: &str) {
        self.goto(&format!("{}/ui/", service.url));
        self.type_into("#token", token);
        self.click("#signin-button");
        self.wait_text("#whoami", "a signed-in role", |t| t.starts_with("signed in"));
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let path = format!("/session/{}", self.session);
            let _ = self.raw("DELETE", &path, None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// The service and a browser, one test at a time; `None` when skipped.
fn setup() -> Option<(std::sync::MutexGuard<'static, ()>, Service, Browser)> {
    let (driver, chromium) = browser_paths()?;
    let guard = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let service = Service::start();
    let browser = Browser::start(&driver, &chromium);
    Some((guard, service, browser))
}

// ---- the tests -----------------------------------------------------------------------------

#[test]
fn an_operator_signs_in_sees_health_and_creates_a_tenant() {
    let Some((_serial, service, browser)) = setup() else { return };

    // A token the service does not know is refused and the sign-in form stays.
    browser.goto(&format!("{}/ui/", service.url));
    browser.type_into("#token", "clt_not-a-token");
    browser.click("#signin-button");
    browser.wait_text("#message", "a refusal", |t| !t.is_empty());
    assert_eq!(browser.text("#whoami"), "");
    let stored = browser.run("return sessionStorage.getItem('cloister.token');", json!([]));
    assert!(stored.is_null(), "a refused token was kept: {stored}");

    browser.sign_in(&service, &service.operator_token);
    assert!(browser.text("#whoami").contains("operator"));
    // The token is in session storage, not in the URL or a cookie.
    let url = browser.command("GET", "/url", None);
    assert!(!url.as_str().unwrap().contains(&service.operator_token), "{url}");
    assert_eq!(browser.run("return document.cookie;", json!([])), "");

    browser.type_into("#tenant-name", "acme-bank");
    browser.click("#tenant-create");
    let token =
        browser.wait_text("#tenant-created-token", "the new admin token", |t| !t.is_empty());
    assert!(token.starts_with("clt_"), "{token}");
    browser.wait_text("#tenants-table tbody", "the new tenant", |t| t.contains("acme-bank"));
    // What the page lists is what the API lists.
    let tenants = service.call("GET", "/v1/tenants", &service.operator_token, None);
    let id = tenants[0]["id"].as_str().unwrap();
    assert!(browser.text("#tenants-table tbody").contains(id));
    browser.screenshot("tenants");

    // A name the service refuses: its message is shown, nothing is created.
    browser.type_into("#tenant-name", "Not Valid");
    browser.click("#tenant-create");
    browser.wait_text("#message", "the refusal", |t| t.contains("must be 1 to 64 characters"));
    let tenants = service.call("GET", "/v1/tenants", &service.operator_token, None);
    assert_eq!(tenants.as_array().unwrap().len(), 1);

    browser.click("#nav button[data-view=health]");
    browser.wait_text("#health-ready", "readiness", |t| t == "ready");
    let shown = browser.wait_text("#health-fingerprint", "the key's SHA-256", |t| !t.is_empty());
    assert_eq!(shown, service.fingerprint);
    browser.assert_no_csp_violation();
}

#[test]
fn a_tenant_admin_creates_an_instance_updates_its_policy_and_sees_the_diff() {
    let Some((_serial, service, browser)) = setup() else { return };
    let admin = service.tenant("acme-bank");
    browser.sign_in(&service, &admin);
    assert!(browser.text("#whoami").contains("tenant admin"));

    browser.type_into("#instance-name", "fraud-model");
    browser.click("#instance-create");
    browser.wait_text("#instances-table tbody", "the new instance", |t| t.contains("fraud-model"));
    browser.wait_text("#detail-name", "the opened instance", |t| t == "fraud-model");
    browser.wait_text("#policy-text", "the policy text", |_| {
        browser
            .run("return document.getElementById('policy-text').value;", json!([]))
            .as_str()
            .is_some_and(|v| v.contains("package cloister.appraisal"))
    });

    // Add a rule to the policy in force and install it as version 2.
    browser.type_into("#policy-text", "\n# reviewed in the console\n");
    browser.click("#policy-update");
    browser.wait_text("#message", "the new version", |t| t.contains("version 2"));
    let diff = browser.wait_text("#policy-diff", "the diff", |t| t.contains("+++ v2"));
    assert!(diff.contains("--- v1"), "{diff}");
    // Unchanged lines far from the change are summarised, not listed.
    assert!(diff.contains(" unchanged lines @@"), "{diff}");
    assert!(!diff.contains("package cloister.appraisal"), "{diff}");
    let added = browser.run(
        "return Array.from(document.querySelectorAll('#policy-diff .add'), e => e.textContent)\
         .filter(t => t.trim() !== '+');",
        json!([]),
    );
    assert_eq!(added, json!(["+ # reviewed in the console\n"]), "{diff}");
    assert_eq!(
        browser.run("return document.querySelectorAll('#policy-diff .del').length;", json!([])),
        0
    );
    assert_eq!(
        browser
            .run("return document.querySelectorAll('#versions-table tbody tr').length;", json!([])),
        2
    );
    browser.run("document.getElementById('policy-diff').scrollIntoView(false);", json!([]));
    browser.screenshot("policy-diff");

    // A policy that does not compile is refused with the service's reason; no version 3.
    browser.clear("#policy-text");
    browser.type_into("#policy-text", "package cloister.appraisal\nresult := {");
    browser.click("#policy-update");
    browser.wait_text("#message", "the refusal", |t| !t.contains("version 2") && !t.is_empty());
    let instances = service.call("GET", "/v1/instances", &admin, None);
    assert_eq!(instances[0]["policy_version"], 2);

    // Broker keys and their releases; attestations by result (none yet).
    let id = instances[0]["id"].as_str().unwrap();
    let policy = cloister_policy::ReleasePolicy::template(&[cloister_types::Hex(vec![0x3c; 48])]);
    let key = service.call(
        "POST",
        "/v1/keys",
        &admin,
        Some(json!({"name": "model-key", "release_policy": policy, "instances": [id]})),
    );
    browser.click("#nav button[data-view=keys]");
    let keys =
        browser.wait_text("#keys-table tbody", "the broker key", |t| t.contains("model-key"));
    assert!(keys.contains(key["id"].as_str().unwrap()) && keys.contains(id), "{keys}");
    browser.wait_text("#release-counts", "no release", |t| t == "No key releases yet.");
    browser.click("#nav button[data-view=attestations]");
    browser.wait_text("#attestation-counts", "none", |t| t == "No attestations yet.");

    // The tenant admin sees no operator page and cannot read the whole chain.
    let hidden = browser
        .run("return document.querySelector('#nav button[data-view=tenants]').hidden;", json!([]));
    assert_eq!(hidden, true);
    browser.assert_no_csp_violation();
}

#[test]
fn an_auditor_verifies_the_chain_in_the_browser_and_sees_a_tampered_row_flagged() {
    let Some((_serial, service, browser)) = setup() else { return };
    let admin = service.tenant("acme-bank");
    // 1 tenant and 22 instances: 23 entries, two pages of 20.
    for n in 0..22 {
        service.call("POST", "/v1/instances", &admin, Some(json!({"name": format!("i-{n}")})));
    }
    service.wait_for_checkpoint();

    browser.sign_in(&service, &service.operator_token);
    browser.click("#nav button[data-view=audit]");
    browser
        .wait_text("#audit-table tbody", "the audit records", |t| t.contains("instance.created"));
    // Filtering is done in the page.
    browser.type_into("#audit-kind", "tenant.created");
    browser.click("#audit-apply");
    browser.wait_text("#audit-page", "one record", |t| t.contains("(1 records)"));
    browser.clear("#audit-kind");
    browser.click("#audit-apply");
    // Newest first, 20 a page: the second page holds the 21st newest record onwards.
    let mut seqs: Vec<i64> = service
        .call("GET", "/v1/audit", &service.operator_token, None)
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["seq"].as_i64().unwrap())
        .collect();
    seqs.sort_unstable_by(|a, b| b.cmp(a));
    let pages = seqs.len().div_ceil(20);
    assert!(pages >= 2, "{seqs:?}");
    browser.wait_text("#audit-page", "the first page", |t| t.starts_with("page 1 of "));
    browser.click("#audit-next");
    browser.wait_text("#audit-page", "the second page", |t| t.starts_with("page 2 of "));
    let shown = browser.run(
        "return Array.from(document.querySelectorAll('#audit-table tbody tr'), r => +r.dataset.seq);",
        json!([]),
    );
    assert_eq!(shown, json!(seqs[20..seqs.len().min(40)]));
    browser.click("#audit-prev");
    browser.wait_text("#audit-page", "the first page", |t| t.starts_with("page 1 of "));

    // Pinning a key that is not the service's stops the verification.
    browser.type_into("#verify-pin", &"ab".repeat(32));
    browser.click("#audit-verify");
    browser.wait_text("#message", "the pin mismatch", |t| t.contains("not the pinned"));
    browser.clear("#verify-pin");
    browser.type_into("#verify-pin", &service.fingerprint);
    browser.click("#audit-verify");
    let verdict = browser.wait_text("#verify-result", "a verdict", |t| {
        t.starts_with("Intact") || t.starts_with("BROKEN")
    });
    assert!(verdict.starts_with("Intact"), "{verdict}: {}", browser.text("#verify-problems"));
    assert!(verdict.contains(&service.fingerprint), "{verdict}");
    assert!(!verdict.contains(" 0 valid checkpoints"), "{verdict}");
    browser.screenshot("audit-verified");

    // Someone with write access to the database edits entry 2 (the first instance's creation).
    service.tamper("UPDATE audit_log SET subject = 'in_forged' WHERE seq = 2");
    browser.click("#audit-verify");
    let verdict =
        browser.wait_text("#verify-result", "the broken verdict", |t| t.starts_with("BROKEN"));
    let problems = browser.text("#verify-problems");
    assert!(
        problems.contains("entry 2: its content does not match its hash"),
        "{verdict} {problems}"
    );
    assert!(!problems.contains("entry 1:") && !problems.contains("entry 3:"), "{problems}");
    // The altered row is marked in the table (found by the text filter on its new subject).
    browser.type_into("#audit-text", "in_forged");
    browser.click("#audit-apply");
    browser.wait_text("#audit-page", "the altered row", |t| t.contains("(1 records)"));
    let flagged = browser.run(
        "return Array.from(document.querySelectorAll('#audit-table tr.broken'), r => r.dataset.seq);",
        json!([]),
    );
    assert_eq!(flagged, json!(["2"]));
    browser.screenshot("audit-tampered");

    // A checkpoint whose signature is not the service's is reported as such.
    service.tamper(
        "UPDATE audit_checkpoints SET signature = CASE WHEN substr(signature, 1, 1) = 'A' \
         THEN 'B' ELSE 'A' END || substr(signature, 2) \
         WHERE seq = (SELECT MAX(seq) FROM audit_checkpoints)",
    );
    browser.click("#audit-verify");
    browser.wait_text("#verify-problems", "the forged checkpoint", |t| {
        t.contains("its signature does not verify with the service key")
    });
    browser.assert_no_csp_violation();
}

#[test]
fn markup_stored_in_the_database_is_shown_as_text_and_runs_nothing() {
    let Some((_serial, service, browser)) = setup() else { return };
    let admin = service.tenant("acme-bank");
    let created = service.call("POST", "/v1/instances", &admin, Some(json!({"name": "plain"})));
    let id = created["id"].as_str().unwrap().to_owned();
    // The API refuses such names; whoever can write the database is not stopped by that.
    let payload =
        "<img src=x onerror=\"document.title='pwned'\"><script>document.title='pwned'</script>";
    service.tamper(&format!(
        "UPDATE instances SET name = '{}' WHERE id = '{id}'",
        payload.replace('\'', "''")
    ));
    // Policy text is free text and reaches the page through the diff.
    let rego = service.call("GET", &format!("/v1/instances/{id}/policy/1"), &admin, None)["rego"]
        .as_str()
        .unwrap()
        .to_owned();
    let rego = format!("{rego}\n# <script>document.title='pwned'</script><b>bold</b>\n");
    service.call("PUT", &format!("/v1/instances/{id}/policy"), &admin, Some(json!({"rego": rego})));

    browser.sign_in(&service, &admin);
    browser.wait_text("#instances-table tbody", "the stored name as text", |t| t.contains(payload));
    browser.click("#instances-table tbody button");
    browser.wait_text("#detail-name", "the name as text", |t| t == payload);
    browser.click("#diff-show");
    browser.wait_text("#policy-diff", "the comment as text", |t| t.contains("<b>bold</b>"));
    let count = |css: &str| {
        browser.run("return document.querySelectorAll(arguments[0]).length;", json!([css]))
    };
    for css in ["main img, section img", "section script", "#policy-diff b"] {
        assert_eq!(count(css), 0, "{css} became markup");
    }
    assert_eq!(browser.run("return document.title;", json!([])), "Cloister console");
    browser.assert_no_csp_violation();
}

#[test]
fn a_data_owner_signs_in_with_its_party_key_sees_its_data_set_and_has_a_receipt_checked() {
    let Some((_serial, service, browser)) = setup() else { return };
    let dir = tempfile::tempdir().unwrap();
    // The owner's party key, on its own machine, and a data set registered to it.
    let owner = cloister_sign::SigningKey::generate();
    let key_file = dir.path().join("hospital.key");
    std::fs::write(&key_file, owner.to_text().as_str()).unwrap();
    let registration = cloister_types::api::DatasetRegistration {
        sha256: cloister_types::Hex(vec![7; 32]),
        object_id: "patients-2026".into(),
    };
    let statement = owner
        .sign(
            "data set registration",
            &registration,
            cloister_sign::unix_now(),
            Duration::from_secs(60),
        )
        .unwrap();
    service.call(
        "POST",
        "/v1/datasets",
        "",
        Some(json!({"owner": owner.public_key().to_text(), "statement": statement})),
    );

    // The console shows a challenge and the command that answers it; the owner runs it.
    browser.goto(&format!("{}/ui/", service.url));
    browser.click("#owner-challenge");
    let command = browser.wait_text("#owner-command", "the command", |t| t.contains("sign-in"));
    assert!(command.contains(&service.fingerprint), "{command}");
    let challenge = command.split_whitespace().last().unwrap().to_owned();
    let answer = Command::new(env!("CARGO_BIN_EXE_cloister"))
        .args(["owner", "sign-in", "--key"])
        .arg(&key_file)
        .args(["--service-fingerprint", &service.fingerprint, &challenge])
        .output()
        .unwrap();
    assert!(answer.status.success(), "{}", String::from_utf8_lossy(&answer.stderr));
    let answer = String::from_utf8(answer.stdout).unwrap();
    assert!(!answer.contains("secret"), "the answer carries no secret: {answer}");
    browser.type_into("#owner-answer", answer.trim());
    browser.click("#owner-signin");
    browser.wait_text("#whoami", "the owner's role", |t| t.contains("data owner"));
    let sets =
        browser.wait_text("#datasets-table tbody", "the data set", |t| t.contains("patients"));
    assert!(sets.contains(&"07".repeat(32)), "{sets}");
    assert_eq!(browser.text("#owner-key"), owner.public_key().to_text());
    // The session reads nothing else: the tenant pages are not offered, and the API refuses.
    let token = browser.run("return sessionStorage.getItem('cloister.token');", json!([]));
    let refused = runtime().block_on(async {
        reqwest::Client::new()
            .get(format!("{}/v1/audit", service.url))
            .bearer_auth(token.as_str().unwrap())
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(refused, reqwest::StatusCode::FORBIDDEN);
    browser.screenshot("owner-datasets");

    // A receipt dropped in: this one has no signer chain, so it is not verified, and the page
    // names the check that failed.
    browser.click("#nav button[data-view=receipt]");
    let status = dir.path().join("job.receipt.json");
    std::fs::write(
        &status,
        json!({"job_id": "j1", "state": "done", "rows_done": 3, "chunks": []}).to_string(),
    )
    .unwrap();
    browser.type_into("#receipt-file", status.to_str().unwrap());
    browser.wait_text("#receipt-verdict", "the verdict", |t| t.contains("NOT verified"));
    let checks = browser.text("#receipt-checks tbody");
    assert!(checks.contains("FAILED") && checks.contains("no certificate chain"), "{checks}");
    // Not JSON at all: the page says so and sends nothing.
    let garbage = dir.path().join("garbage.json");
    std::fs::write(&garbage, "not json").unwrap();
    browser.type_into("#receipt-file", garbage.to_str().unwrap());
    browser.wait_text("#message", "the refusal", |t| t.contains("not JSON"));
    browser.assert_no_csp_violation();
}

#[test]
fn console_pages_carry_a_strict_content_security_policy() {
    let service = Service::start();
    runtime().block_on(async {
        let client = reqwest::Client::new();
        for path in ["/ui/", "/ui/console.js", "/ui/console.css", "/ui/missing"] {
            let response = client.get(format!("{}{path}", service.url)).send().await.unwrap();
            let csp = response.headers()["content-security-policy"].to_str().unwrap().to_owned();
            for directive in ["default-src 'none'", "script-src 'self'", "frame-ancestors 'none'"] {
                assert!(csp.contains(directive), "{path}: {csp}");
            }
            assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{csp}");
            assert_eq!(response.headers()["x-content-type-options"], "nosniff", "{path}");
        }
    });
}
