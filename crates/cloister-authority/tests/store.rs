//! The service database, one suite run against SQLite (a temp file per test) and against
//! PostgreSQL when `CLOISTER_TEST_POSTGRES_URL` is set.
//!
//! PostgreSQL isolation: the variable names an admin database (any database the role may connect
//! to, with the right to `CREATE DATABASE`); every test creates its own database
//! `cloister_t_<pid>_<n>_<test>` there, runs on it, and drops it when it passes (a failed test
//! leaves it behind for inspection). `scripts/start-postgres.sh` starts a suitable server and
//! prints the URL; CI runs it and exports the variable, so there the PostgreSQL cases run. Without
//! the variable they print that they were skipped and pass.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};

use cloister_authority::store::{
    AuditRow, Backend, BrokerKeyRow, ChargeJob, Charged, CheckpointRow, CredentialRow,
    InstanceKeyRow, InstanceRow, PolicyVersionRow, Store, StoreError, TenantRow,
};
use cloister_types::InputRef;
use cloister_types::job::{PrivacyBudget, PrivacyCharge};
use sha2::{Digest as _, Sha256};
use sqlx::Connection as _;

const PG_ENV: &str = "CLOISTER_TEST_POSTGRES_URL";

/// Where one test's database lives; `open` gives a new, independent pool each time (a replica).
struct TestDb {
    url: String,
    _dir: Option<tempfile::TempDir>,
    /// PostgreSQL: the admin URL and the database to drop afterwards.
    pg: Option<(String, String)>,
}

impl TestDb {
    fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("a temp dir");
        let url = format!("sqlite://{}", dir.path().join("cloister.db").display());
        TestDb { url, _dir: Some(dir), pg: None }
    }

    async fn postgres(test: &str) -> Option<TestDb> {
        let Ok(admin) = std::env::var(PG_ENV) else {
            eprintln!("skipped: {PG_ENV} is unset (scripts/start-postgres.sh starts a server)");
            return None;
        };
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        // The unique part first: PostgreSQL cuts names at 63 bytes.
        let mut name = format!(
            "cloister_t_{}_{}_{test}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        name.truncate(63);
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| panic!("{PG_ENV} is set but connecting to it failed: {e}"));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut conn)
            .await
            .expect("CREATE DATABASE (the role needs CREATEDB)");
        conn.close().await.expect("close the admin connection");
        let url = with_database(&admin, &name);
        Some(TestDb { url, _dir: None, pg: Some((admin, name)) })
    }

    async fn open(&self) -> Store {
        Store::connect(&self.url).await.expect("connect to the test database")
    }

    async fn finish(self) {
        if let Some((admin, name)) = &self.pg {
            let mut conn = sqlx::PgConnection::connect(admin).await.expect("admin connection");
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
            )))
            .execute(&mut conn)
            .await
            .expect("DROP DATABASE");
        }
    }
}

/// `url` with its database (the last path segment) replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let authority_end = base.find("://").map_or(0, |i| i + 3);
    let prefix = match base[authority_end..].find('/') {
        Some(slash) => &base[..authority_end + slash],
        None => base,
    };
    format!("{prefix}/{database}{query}")
}

/// Each case runs once on SQLite and once on PostgreSQL (skipped without the variable).
macro_rules! suite {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let db = super::TestDb::sqlite();
                    super::$case(&db).await;
                    db.finish().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let Some(db) = super::TestDb::postgres(stringify!($case)).await else {
                        return;
                    };
                    super::$case(&db).await;
                    db.finish().await;
                }
            )*
        }
    };
}

suite!(
    meta_and_ping,
    tenants_and_credentials,
    instances,
    policy_versions_increment,
    rotation_keeps_old_keys,
    delete_removes_everything_of_the_instance,
    import_instance,
    nonces,
    nonce_race_across_replicas,
    nonces_beyond_the_limit_drop_the_first_to_expire,
    consuming_a_nonce_reads_the_revision_and_the_latest_checkpoint,
    broker_keys,
    audit_log_and_checkpoints,
    audit_appends_from_two_replicas_chain_without_gaps,
    audit_batches_commit_whole_or_not_at_all,
    group_committed_appends_from_two_replicas_each_get_their_own_entry,
    restart_loses_nothing,
    privacy_charges_compose_refuse_whole_jobs_and_race_across_replicas,
    usage_reservations_never_pass_the_quota_across_replicas,
    request_allowances_refill_at_their_rate_across_replicas,
    grant_revocations_are_kept_once,
);

// --- fixtures ----------------------------------------------------------------------------------

fn tenant(id: &str, name: &str, created_at: i64) -> TenantRow {
    TenantRow { id: id.into(), name: name.into(), created_at }
}

fn new_instance(
    id: &str,
    tenant_id: &str,
    name: &str,
    now: i64,
) -> (InstanceRow, PolicyVersionRow, InstanceKeyRow) {
    let instance = InstanceRow {
        id: id.into(),
        tenant_id: tenant_id.into(),
        name: name.into(),
        revision: 1,
        policy_version: 1,
        reference_values: r#"{"snp":{"measurement":["aa"]}}"#.into(),
        trust_anchors: "{}".into(),
        settings: r#"{"nonce_ttl_s":300}"#.into(),
        ca_certificate_pem: format!("-----BEGIN CERTIFICATE-----\n{id} ca 1\n"),
        ca_key_sealed: vec![0xca, 0x01, 0x00, 0xff],
        created_at: now,
    };
    let policy = PolicyVersionRow {
        instance_id: id.into(),
        version: 1,
        rego: "package cloister\ndefault allow := false\n".into(),
        builtin: Some("default".into()),
        created_at: now,
    };
    let key = token_key(id, "k1", now);
    (instance, policy, key)
}

fn token_key(instance_id: &str, kid: &str, now: i64) -> InstanceKeyRow {
    InstanceKeyRow {
        instance_id: instance_id.into(),
        kid: kid.into(),
        public_jwk: format!(r#"{{"kty":"EC","kid":"{kid}"}}"#),
        secret_sealed: kid.as_bytes().iter().rev().copied().chain([0u8, 0xff]).collect(),
        created_at: now,
        retired_at: None,
        keep_until: None,
    }
}

fn broker_key(id: &str, tenant_id: &str, name: &str, key_id: &str, now: i64) -> BrokerKeyRow {
    BrokerKeyRow {
        id: id.into(),
        tenant_id: tenant_id.into(),
        name: name.into(),
        key_id: key_id.into(),
        public_key: format!("pk-{id}"),
        secret_sealed: vec![1, 2, 3, 0, 255],
        release_policy: "package release\ndefault allow := true\n".into(),
        instances: r#"["in_a"]"#.into(),
        created_at: now,
        revoked_at: None,
    }
}

/// The trivial chain the suite uses: hash = hex(sha256(prev_hash ‖ seq)).
fn chain_next(last: Option<&AuditRow>, tenant_id: Option<&str>, detail: &str) -> AuditRow {
    let seq = last.map_or(1, |l| l.seq + 1);
    let prev_hash = last.map_or_else(|| "0".repeat(64), |l| l.hash.clone());
    let hash = hex::encode(Sha256::digest(format!("{prev_hash}{seq}")));
    AuditRow {
        seq,
        at: 1_000 + seq,
        kind: "test".into(),
        actor: "tester".into(),
        tenant_id: tenant_id.map(Into::into),
        subject: format!("subject {seq}"),
        outcome: "ok".into(),
        detail: detail.into(),
        prev_hash,
        hash,
    }
}

fn assert_chain(rows: &[AuditRow]) {
    let mut prev = "0".repeat(64);
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row.seq, i as i64 + 1, "seqs run 1, 2, … without gaps");
        assert_eq!(row.prev_hash, prev, "entry {} chains to the previous hash", row.seq);
        assert_eq!(row.hash, hex::encode(Sha256::digest(format!("{prev}{}", row.seq))));
        prev = row.hash.clone();
    }
}

#[track_caller]
fn expect_conflict<T: std::fmt::Debug>(result: Result<T, StoreError>, needle: &str) {
    match result {
        Err(StoreError::Conflict(message)) => {
            assert!(message.contains(needle), "conflict message {message:?} names {needle:?}")
        }
        other => panic!("expected a conflict naming {needle:?}, got {other:?}"),
    }
}

#[track_caller]
fn expect_not_found<T: std::fmt::Debug>(result: Result<T, StoreError>, needle: &str) {
    match result {
        Err(StoreError::NotFound(message)) => {
            assert!(message.contains(needle), "not-found message {message:?} names {needle:?}")
        }
        other => panic!("expected not-found naming {needle:?}, got {other:?}"),
    }
}

#[track_caller]
fn expect_invalid<T: std::fmt::Debug>(result: Result<T, StoreError>, needle: &str) {
    match result {
        Err(StoreError::Invalid(message)) => {
            assert!(message.contains(needle), "message {message:?} names {needle:?}")
        }
        other => panic!("expected invalid naming {needle:?}, got {other:?}"),
    }
}

async fn with_tenant(store: &Store, id: &str) {
    store.create_tenant(&tenant(id, &format!("name-{id}"), 1)).await.expect("create tenant");
}

// --- cases -------------------------------------------------------------------------------------

async fn meta_and_ping(db: &TestDb) {
    let store = db.open().await;
    store.ping().await.expect("ping");
    let expected = if db.pg.is_some() { Backend::Postgres } else { Backend::Sqlite };
    assert_eq!(store.backend(), expected);

    assert_eq!(store.meta("service_id").await.expect("meta"), None);
    assert_eq!(store.meta_insert_if_absent("service_id", "first").await.expect("insert"), "first");
    assert_eq!(store.meta_insert_if_absent("service_id", "second").await.expect("insert"), "first");
    assert_eq!(store.meta("service_id").await.expect("meta").as_deref(), Some("first"));

    // Two replicas racing to initialise the same key agree on one value.
    let other = db.open().await;
    let mut tasks = Vec::new();
    for i in 0..16 {
        let s = if i % 2 == 0 { store.clone() } else { other.clone() };
        tasks.push(tokio::spawn(async move {
            s.meta_insert_if_absent("checkpoint_key", &format!("value-{i}")).await
        }));
    }
    let mut seen = std::collections::BTreeSet::new();
    for task in tasks {
        seen.insert(task.await.expect("join").expect("insert"));
    }
    assert_eq!(seen.len(), 1, "every racer sees the winner's value: {seen:?}");
    assert_eq!(store.meta("checkpoint_key").await.expect("meta"), seen.pop_first());
}

async fn tenants_and_credentials(db: &TestDb) {
    let store = db.open().await;
    assert!(store.tenants().await.expect("tenants").is_empty());
    let acme = tenant("tn_acme", "acme", 20);
    let beta = tenant("tn_beta", "beta", 10);
    let gamma = tenant("tn_0gamma", "gamma", 20);
    for t in [&acme, &beta, &gamma] {
        store.create_tenant(t).await.expect("create tenant");
    }
    assert_eq!(
        store.tenants().await.expect("tenants"),
        vec![beta.clone(), gamma.clone(), acme.clone()],
        "by created_at, then id"
    );
    assert_eq!(store.tenant("tn_acme").await.expect("tenant"), Some(acme.clone()));
    assert_eq!(store.tenant("tn_nope").await.expect("tenant"), None);

    expect_conflict(
        store.create_tenant(&tenant("tn_other", "acme", 30)).await,
        "a tenant named acme already exists",
    );
    expect_conflict(
        store.create_tenant(&tenant("tn_acme", "acme2", 30)).await,
        "a tenant with id tn_acme already exists",
    );
    assert_eq!(store.tenants().await.expect("tenants").len(), 3);

    assert!(!store.has_operator_credential().await.expect("operator?"));
    let tenant_cred = CredentialRow {
        token_hash: "ab".repeat(32),
        role: "tenant".into(),
        tenant_id: Some("tn_acme".into()),
        created_at: 5,
    };
    store.add_credential(&tenant_cred).await.expect("add credential");
    assert!(!store.has_operator_credential().await.expect("operator?"), "a tenant is no operator");
    let operator = CredentialRow {
        token_hash: "cd".repeat(32),
        role: "operator".into(),
        tenant_id: None,
        created_at: 6,
    };
    store.add_credential(&operator).await.expect("add operator");
    assert!(store.has_operator_credential().await.expect("operator?"));
    assert_eq!(store.credential(&"ab".repeat(32)).await.expect("get"), Some(tenant_cred.clone()));
    assert_eq!(store.credential(&"cd".repeat(32)).await.expect("get"), Some(operator));
    assert_eq!(store.credential(&"ef".repeat(32)).await.expect("get"), None);

    expect_conflict(store.add_credential(&tenant_cred).await, "already registered");
    let orphan = CredentialRow {
        token_hash: "12".repeat(32),
        tenant_id: Some("tn_missing".into()),
        ..tenant_cred
    };
    expect_not_found(store.add_credential(&orphan).await, "tn_missing");
    assert_eq!(store.credential(&"12".repeat(32)).await.expect("get"), None);
}

async fn instances(db: &TestDb) {
    let store = db.open().await;
    with_tenant(&store, "tn_a").await;
    with_tenant(&store, "tn_b").await;
    let (i1, p1, k1) = new_instance("in_1", "tn_a", "prod", 50);
    let (i2, p2, k2) = new_instance("in_2", "tn_a", "dev", 40);
    let (i3, p3, k3) = new_instance("in_3", "tn_b", "prod", 60);
    store.create_instance(&i1, &p1, &k1).await.expect("create in_1");
    store.create_instance(&i2, &p2, &k2).await.expect("create in_2");
    store.create_instance(&i3, &p3, &k3).await.expect("same name in another tenant is fine");

    assert_eq!(store.instance("in_1").await.expect("get"), Some(i1.clone()));
    assert_eq!(store.instance("in_nope").await.expect("get"), None);
    assert_eq!(store.instances(Some("tn_a")).await.expect("list"), vec![i2.clone(), i1.clone()]);
    assert_eq!(store.instances(Some("tn_b")).await.expect("list"), vec![i3.clone()]);
    assert_eq!(store.instances(Some("tn_nope")).await.expect("list"), vec![]);
    assert_eq!(
        store.instances(None).await.expect("list"),
        vec![i2.clone(), i1.clone(), i3.clone()]
    );
    assert_eq!(store.policy_versions("in_1").await.expect("versions"), vec![p1.clone()]);
    assert_eq!(store.instance_keys("in_1").await.expect("keys"), vec![k1.clone()]);

    // Conflicts and missing tenants leave nothing behind.
    let (dup, dp, dk) = new_instance("in_dup", "tn_a", "prod", 70);
    expect_conflict(
        store.create_instance(&dup, &dp, &dk).await,
        "tenant tn_a already has an instance named prod",
    );
    assert_eq!(store.instance("in_dup").await.expect("get"), None);
    assert!(store.policy_versions("in_dup").await.expect("versions").is_empty());
    assert!(store.instance_keys("in_dup").await.expect("keys").is_empty());
    let (same_id, sp, sk) = new_instance("in_1", "tn_b", "other", 70);
    expect_conflict(
        store.create_instance(&same_id, &sp, &sk).await,
        "the instance id in_1 is or was in use on this service",
    );
    let (orphan, op, ok) = new_instance("in_orphan", "tn_missing", "x", 70);
    expect_not_found(store.create_instance(&orphan, &op, &ok).await, "tn_missing");
    assert_eq!(store.instance("in_orphan").await.expect("get"), None);

    // Rows of another instance are refused before anything is written.
    let (i4, p4, k4) = new_instance("in_4", "tn_a", "four", 70);
    let foreign_key = token_key("in_1", "k9", 70);
    expect_invalid(
        store.create_instance(&i4, &p4, &foreign_key).await,
        "token key k9 belongs to instance in_1",
    );
    let foreign_policy = PolicyVersionRow { instance_id: "in_2".into(), ..p4.clone() };
    expect_invalid(
        store.create_instance(&i4, &foreign_policy, &k4).await,
        "belongs to instance in_2",
    );
    let wrong_version = PolicyVersionRow { version: 2, ..p4.clone() };
    expect_invalid(store.create_instance(&i4, &wrong_version, &k4).await, "policy version 1");
    assert_eq!(store.instance("in_4").await.expect("get"), None);

    // Updates bump the revision.
    assert_eq!(store.instance_revision("in_1").await.expect("revision"), Some(1));
    assert_eq!(store.instance_revision("in_nope").await.expect("revision"), None);
    store.set_reference_values("in_1", r#"{"tdx":{}}"#).await.expect("set reference values");
    store.set_trust_anchors("in_1", r#"{"snp":["ark"]}"#).await.expect("set trust anchors");
    let updated = store.instance("in_1").await.expect("get").expect("exists");
    assert_eq!(updated.reference_values, r#"{"tdx":{}}"#);
    assert_eq!(updated.trust_anchors, r#"{"snp":["ark"]}"#);
    assert_eq!(updated.revision, 3);
    assert_eq!(store.instance_revision("in_1").await.expect("revision"), Some(3));
    assert_eq!(store.instance("in_2").await.expect("get"), Some(i2), "others untouched");
    expect_not_found(store.set_reference_values("in_nope", "{}").await, "in_nope");
    expect_not_found(store.set_trust_anchors("in_nope", "{}").await, "in_nope");
}

async fn policy_versions_increment(db: &TestDb) {
    let store = db.open().await;
    with_tenant(&store, "tn_a").await;
    let (i, p, k) = new_instance("in_1", "tn_a", "prod", 50);
    store.create_instance(&i, &p, &k).await.expect("create");

    assert_eq!(store.add_policy_version("in_1", "package v2", None, 60).await.expect("v2"), 2);
    assert_eq!(
        store.add_policy_version("in_1", "package v3", Some("strict"), 70).await.expect("v3"),
        3
    );
    let now = store.instance("in_1").await.expect("get").expect("exists");
    assert_eq!(now.policy_version, 3);
    assert_eq!(now.revision, 3);
    let v2 = PolicyVersionRow {
        instance_id: "in_1".into(),
        version: 2,
        rego: "package v2".into(),
        builtin: None,
        created_at: 60,
    };
    assert_eq!(store.policy_version("in_1", 2).await.expect("get"), Some(v2.clone()));
    assert_eq!(store.policy_version("in_1", 1).await.expect("get"), Some(p.clone()));
    assert_eq!(store.policy_version("in_1", 4).await.expect("get"), None);
    assert_eq!(store.policy_version("in_2", 1).await.expect("get"), None);
    let all = store.policy_versions("in_1").await.expect("list");
    assert_eq!(all.iter().map(|v| v.version).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(all[1], v2);
    assert_eq!(all[2].builtin.as_deref(), Some("strict"));
    expect_not_found(store.add_policy_version("in_nope", "x", None, 1).await, "in_nope");
    assert!(store.policy_versions("in_nope").await.expect("list").is_empty());

    // Concurrent updates from two replicas each get their own version.
    let other = db.open().await;
    let mut tasks = Vec::new();
    for n in 0..12 {
        let s = if n % 2 == 0 { store.clone() } else { other.clone() };
        tasks.push(tokio::spawn(async move {
            s.add_policy_version("in_1", &format!("package p{n}"), None, 100 + n).await
        }));
    }
    let mut got = Vec::new();
    for task in tasks {
        got.push(task.await.expect("join").expect("add version"));
    }
    got.sort_unstable();
    assert_eq!(got, (4..=15).collect::<Vec<_>>());
    let now = store.instance("in_1").await.expect("get").expect("exists");
    assert_eq!((now.policy_version, now.revision), (15, 15));
}

async fn rotation_keeps_old_keys(db: &TestDb) {
    let store = db.open().await;
    with_tenant(&store, "tn_a").await;
    let (i, p, k1) = new_instance("in_1", "tn_a", "prod", 50);
    store.create_instance(&i, &p, &k1).await.expect("create");

    let k2 = token_key("in_1", "k2", 100);
    store.rotate_instance_keys("in_1", &k2, "CA 2", &[2, 2], 100, 400).await.expect("rotate");
    let keys = store.instance_keys("in_1").await.expect("keys");
    let k1_retired = InstanceKeyRow { retired_at: Some(100), keep_until: Some(400), ..k1.clone() };
    assert_eq!(keys, vec![k1_retired.clone(), k2.clone()]);
    let after = store.instance("in_1").await.expect("get").expect("exists");
    assert_eq!(after.ca_certificate_pem, "CA 2");
    assert_eq!(after.ca_key_sealed, vec![2, 2]);
    assert_eq!(after.revision, 2);

    // A second rotation retires k2 only; k1 keeps its own retirement times.
    let k3 = token_key("in_1", "k3", 200);
    store.rotate_instance_keys("in_1", &k3, "CA 3", &[3], 200, 500).await.expect("rotate again");
    let k2_retired = InstanceKeyRow { retired_at: Some(200), keep_until: Some(500), ..k2.clone() };
    assert_eq!(
        store.instance_keys("in_1").await.expect("keys"),
        vec![k1_retired.clone(), k2_retired.clone(), k3.clone()]
    );

    // A clashing kid rolls the whole rotation back.
    let clash = token_key("in_1", "k2", 300);
    expect_conflict(
        store.rotate_instance_keys("in_1", &clash, "CA 4", &[4], 300, 600).await,
        "instance in_1 already has a token key with kid k2",
    );
    assert_eq!(
        store.instance_keys("in_1").await.expect("keys"),
        vec![k1_retired, k2_retired, k3.clone()]
    );
    let unchanged = store.instance("in_1").await.expect("get").expect("exists");
    assert_eq!((unchanged.ca_certificate_pem.as_str(), unchanged.revision), ("CA 3", 3));

    expect_not_found(
        store
            .rotate_instance_keys("in_nope", &token_key("in_nope", "k", 1), "CA", &[1], 1, 2)
            .await,
        "in_nope",
    );
    expect_invalid(
        store.rotate_instance_keys("in_1", &token_key("in_2", "k9", 1), "CA", &[1], 1, 2).await,
        "belongs to instance in_2",
    );
    let retired = InstanceKeyRow { retired_at: Some(1), ..token_key("in_1", "k9", 1) };
    expect_invalid(
        store.rotate_instance_keys("in_1", &retired, "CA", &[1], 1, 2).await,
        "already marked retired",
    );
    assert!(store.instance_keys("in_nope").await.expect("keys").is_empty());
}

async fn delete_removes_everything_of_the_instance(db: &TestDb) {
    let store = db.open().await;
    with_tenant(&store, "tn_a").await;
    let (i1, p1, k1) = new_instance("in_1", "tn_a", "prod", 50);
    let (i2, p2, k2) = new_instance("in_2", "tn_a", "dev", 50);
    store.create_instance(&i1, &p1, &k1).await.expect("create");
    store.create_instance(&i2, &p2, &k2).await.expect("create");
    store.add_policy_version("in_1", "package v2", None, 60).await.expect("v2");
    store
        .rotate_instance_keys("in_1", &token_key("in_1", "k2", 70), "CA", &[1], 70, 80)
        .await
        .expect("rotate");
    store.insert_nonce("n1", "in_1", 1_000, 100).await.expect("nonce");
    store.insert_nonce("n2", "in_1", 1_000, 100).await.expect("nonce");
    store.insert_nonce("n3", "in_2", 1_000, 100).await.expect("nonce");

    store.delete_instance("in_1", 90).await.expect("delete");
    assert_eq!(store.instance("in_1").await.expect("get"), None);
    assert!(store.policy_versions("in_1").await.expect("versions").is_empty());
    assert!(store.instance_keys("in_1").await.expect("keys").is_empty());
    assert_eq!(store.count_nonces("in_1").await.expect("count"), 0);
    assert_eq!(store.consume_nonce("n1", "in_1").await.expect("consume"), None);
    assert_eq!(store.instances(None).await.expect("list"), vec![i2.clone()]);

    // The other instance is untouched.
    assert_eq!(store.instance("in_2").await.expect("get"), Some(i2));
    assert_eq!(store.policy_versions("in_2").await.expect("versions"), vec![p2]);
    assert_eq!(store.instance_keys("in_2").await.expect("keys"), vec![k2]);
    assert_eq!(store.count_nonces("in_2").await.expect("count"), 1);

    expect_not_found(store.delete_instance("in_1", 91).await, "in_1");
    // The name is free again, under a new id; the old id is never used again.
    assert!(store.instance_id_used("in_1").await.expect("used"));
    let err = store.create_instance(&i1, &p1, &k1).await.expect_err("the id is spent");
    assert!(matches!(&err, StoreError::Conflict(m) if m.contains("never reused")), "{err:?}");
    let (i3, p3, k3) = new_instance("in_3", "tn_a", "prod", 95);
    store.create_instance(&i3, &p3, &k3).await.expect("re-create under the same name");
    assert_eq!(store.policy_versions("in_3").await.expect("versions"), vec![p3]);
}

async fn import_instance(db: &TestDb) {
    let store = db.open().await;
    with_tenant(&store, "tn_a").await;
    with_tenant(&store, "tn_b").await;
    let (i, p, k) = new_instance("in_1", "tn_a", "prod", 50);
    store.create_instance(&i, &p, &k).await.expect("create");
    store.add_policy_version("in_1", "package v2", None, 60).await.expect("v2");
    store
        .rotate_instance_keys("in_1", &token_key("in_1", "k2", 70), "CA 2", &[7], 70, 90)
        .await
        .expect("rotate");
    let exported = store.instance("in_1").await.expect("get").expect("exists");
    let versions = store.policy_versions("in_1").await.expect("versions");
    let keys = store.instance_keys("in_1").await.expect("keys");

    // Into another database: everything arrives as it was.
    let target_db = TestDb::sqlite();
    let target = target_db.open().await;
    with_tenant(&target, "tn_a").await;
    target.import_instance(&exported, &versions, &keys).await.expect("import");
    assert_eq!(target.instance("in_1").await.expect("get"), Some(exported.clone()));
    assert_eq!(target.policy_versions("in_1").await.expect("versions"), versions);
    assert_eq!(target.instance_keys("in_1").await.expect("keys"), keys);
    assert_eq!(target.add_policy_version("in_1", "package v3", None, 80).await.expect("v3"), 3);

    // Back into the source: the id exists.
    expect_conflict(
        store.import_instance(&exported, &versions, &keys).await,
        "the instance id in_1 is or was in use on this service",
    );
    // Under a new id but the same (tenant, name).
    let renamed = |id: &str| -> (InstanceRow, Vec<PolicyVersionRow>, Vec<InstanceKeyRow>) {
        let i = InstanceRow { id: id.into(), ..exported.clone() };
        let v = versions
            .iter()
            .map(|v| PolicyVersionRow { instance_id: id.into(), ..v.clone() })
            .collect();
        let k =
            keys.iter().map(|k| InstanceKeyRow { instance_id: id.into(), ..k.clone() }).collect();
        (i, v, k)
    };
    let (i9, v9, k9) = renamed("in_9");
    expect_conflict(
        store.import_instance(&i9, &v9, &k9).await,
        "tenant tn_a already has an instance named prod",
    );
    assert_eq!(store.instance("in_9").await.expect("get"), None);
    // Into another tenant it fits.
    let moved = InstanceRow { tenant_id: "tn_b".into(), ..i9.clone() };
    store.import_instance(&moved, &v9, &k9).await.expect("import into tn_b");
    assert_eq!(store.instance_keys("in_9").await.expect("keys"), k9);

    // Broken bundles are refused whole.
    let (i8, v8, k8) = renamed("in_8");
    let i8 = InstanceRow { name: "eight".into(), ..i8 };
    expect_invalid(store.import_instance(&i8, &v8[..1], &k8).await, "policy version 2");
    expect_invalid(store.import_instance(&i8, &v8, &keys).await, "belongs to instance in_1");
    let twice = vec![v8[0].clone(), v8[0].clone(), v8[1].clone()];
    expect_conflict(
        store.import_instance(&i8, &twice, &k8).await,
        "policy version 1 is given twice",
    );
    assert_eq!(store.instance("in_8").await.expect("get"), None);
    assert!(store.policy_versions("in_8").await.expect("versions").is_empty());
    let orphan = InstanceRow { tenant_id: "tn_missing".into(), ..i8.clone() };
    expect_not_found(store.import_instance(&orphan, &v8, &k8).await, "tn_missing");
    target_db.finish().await;
}

async fn nonces(db: &TestDb) {
    let store = db.open().await;
    with_tenant(&store, "tn_a").await;
    for (id, name) in [("in_1", "one"), ("in_2", "two")] {
        let (i, p, k) = new_instance(id, "tn_a", name, 1);
        store.create_instance(&i, &p, &k).await.expect("create");
    }
    store.insert_nonce("n10", "in_1", 10, 100).await.expect("insert");
    store.insert_nonce("n20", "in_1", 20, 100).await.expect("insert");
    store.insert_nonce("n30", "in_1", 30, 100).await.expect("insert");
    store.insert_nonce("m30", "in_2", 30, 100).await.expect("insert");
    expect_conflict(
        store.insert_nonce("n10", "in_2", 99, 100).await,
        "the nonce n10 was already issued",
    );
    expect_not_found(store.insert_nonce("x", "in_nope", 99, 100).await, "in_nope");
    assert_eq!(store.count_nonces("in_1").await.expect("count"), 3);
    assert_eq!(store.count_nonces("in_2").await.expect("count"), 1);

    assert_eq!(store.nonce_expiry("n20", "in_1").await.expect("expiry"), Some(20));
    assert_eq!(
        store.nonce_expiry("n20", "in_2").await.expect("expiry"),
        None,
        "another instance's"
    );
    assert_eq!(store.nonce_expiry("zz", "in_1").await.expect("expiry"), None);
    assert_eq!(store.nonce_expiry("n20", "in_1").await.expect("expiry"), Some(20), "still there");

    assert_eq!(store.consume_nonce("n20", "in_2").await.expect("consume"), None);
    assert_eq!(store.consume_nonce("n20", "in_1").await.expect("consume"), Some(20));
    assert_eq!(store.consume_nonce("n20", "in_1").await.expect("consume"), None, "single use");
    assert_eq!(store.nonce_expiry("n20", "in_1").await.expect("expiry"), None);

    // Expired means expires_at < now: at now = 10, n10 is still good.
    assert_eq!(store.purge_nonces(10).await.expect("purge"), 0);
    assert_eq!(store.purge_nonces(11).await.expect("purge"), 1);
    assert_eq!(store.nonce_expiry("n10", "in_1").await.expect("expiry"), None);
    assert_eq!(store.count_nonces("in_1").await.expect("count"), 1);
    assert_eq!(store.purge_nonces(31).await.expect("purge"), 2);
    assert_eq!(store.count_nonces("in_1").await.expect("count"), 0);
    assert_eq!(store.count_nonces("in_2").await.expect("count"), 0);
}

async fn nonces_beyond_the_limit_drop_the_first_to_expire(db: &TestDb) {
    let store = db.open().await;
    with_tenant(&store, "tn_a").await;
    for (id, name) in [("in_1", "one"), ("in_2", "two")] {
        let (i, p, k) = new_instance(id, "tn_a", name, 1);
        store.create_instance(&i, &p, &k).await.expect("create");
    }
    store.insert_nonce("other", "in_2", 1, 3).await.expect("insert");
    // Issued out of expiry order: 50, 10, 40, 20, 30, with room for three.
    for (nonce, expiry) in [("n50", 50), ("n10", 10), ("n40", 40), ("n20", 20), ("n30", 30)] {
        store.insert_nonce(nonce, "in_1", expiry, 3).await.expect("insert");
        assert!(store.count_nonces("in_1").await.expect("count") <= 3, "never more than three");
        assert_eq!(store.nonce_expiry(nonce, "in_1").await.expect("expiry"), Some(expiry));
    }
    assert_eq!(store.count_nonces("in_1").await.expect("count"), 3);
    for (nonce, live) in
        [("n10", false), ("n20", false), ("n30", true), ("n40", true), ("n50", true)]
    {
        let expiry = store.nonce_expiry(nonce, "in_1").await.expect("expiry");
        assert_eq!(expiry.is_some(), live, "{nonce}");
    }
    // Another instance's nonces are not counted, nor dropped.
    assert_eq!(store.count_nonces("in_2").await.expect("count"), 1);
    // A limit of one keeps only the newest.
    store.insert_nonce("last", "in_1", 60, 1).await.expect("insert");
    assert_eq!(store.count_nonces("in_1").await.expect("count"), 1);
    assert_eq!(store.nonce_expiry("last", "in_1").await.expect("expiry"), Some(60));
}

async fn consuming_a_nonce_reads_the_revision_and_the_latest_checkpoint(db: &TestDb) {
    use cloister_authority::store::ConsumedNonce;

    let store = db.open().await;
    with_tenant(&store, "tn_a").await;
    let (i, p, k) = new_instance("in_1", "tn_a", "one", 1);
    store.create_instance(&i, &p, &k).await.expect("create");
    for n in 1..=4 {
        store.insert_nonce(&format!("n{n}"), "in_1", 100 + n, 100).await.expect("insert");
    }
    assert_eq!(
        store.consume_nonce_for_attestation("n1", "in_1").await.expect("consume"),
        Some(ConsumedNonce { expires_at: 101, instance_revision: 1, last_checkpoint: None })
    );
    assert_eq!(store.consume_nonce_for_attestation("n1", "in_1").await.expect("again"), None);
    assert_eq!(store.consume_nonce_for_attestation("n2", "in_2").await.expect("other"), None);

    store.add_policy_version("in_1", "package v2", None, 5).await.expect("v2");
    for seq in [1, 2] {
        store.append_audit(|last| chain_next(last, None, "{}")).await.expect("append");
        let c = CheckpointRow { seq, at: 9, hash: format!("h{seq}"), signature: "s".into() };
        store.add_checkpoint(&c).await.expect("checkpoint");
    }
    assert_eq!(
        store.consume_nonce_for_attestation("n2", "in_1").await.expect("consume"),
        Some(ConsumedNonce {
            expires_at: 102,
            instance_revision: 2,
            last_checkpoint: Some((2, "h2".to_owned())),
        })
    );
    assert_eq!(store.consume_nonce("n3", "in_1").await.expect("consume"), Some(103));
    assert_eq!(store.count_nonces("in_1").await.expect("count"), 1);
}

async fn nonce_race_across_replicas(db: &TestDb) {
    let replicas = [db.open().await, db.open().await];
    let store = &replicas[0];
    with_tenant(store, "tn_a").await;
    let (i, p, k) = new_instance("in_1", "tn_a", "race", 1);
    store.create_instance(&i, &p, &k).await.expect("create");
    let nonces: Vec<String> = (0..100).map(|n| format!("nonce-{n:03}")).collect();
    for (n, nonce) in nonces.iter().enumerate() {
        replicas[n % 2].insert_nonce(nonce, "in_1", 1_000 + n as i64, 1_000).await.expect("insert");
    }

    let mut tasks = Vec::new();
    for replica in &replicas {
        for t in 0..16usize {
            let s = replica.clone();
            let nonces = nonces.clone();
            tasks.push(tokio::spawn(async move {
                let mut won = Vec::new();
                // All walk the nonces in the same order, half of them backwards, so that every
                // nonce is fought over at once.
                for step in 0..nonces.len() {
                    let at = if t % 2 == 0 { step } else { nonces.len() - 1 - step };
                    let nonce = &nonces[at];
                    if let Some(expiry) = s.consume_nonce(nonce, "in_1").await.expect("consume") {
                        won.push((nonce.clone(), expiry));
                    }
                }
                won
            }));
        }
    }
    let mut winners: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for task in tasks {
        for (nonce, expiry) in task.await.expect("join") {
            winners.entry(nonce).or_default().push(expiry);
        }
    }
    assert_eq!(winners.len(), 100, "every nonce was consumed");
    for (n, nonce) in nonces.iter().enumerate() {
        assert_eq!(winners[nonce], vec![1_000 + n as i64], "{nonce} consumed exactly once");
    }
    assert_eq!(store.count_nonces("in_1").await.expect("count"), 0);
}

async fn usage_reservations_never_pass_the_quota_across_replicas(db: &TestDb) {
    let replicas = [db.open().await, db.open().await];
    // 32 reservers of 7 tokens each on one meter with a quota of 100, over two replicas.
    let mut tasks = Vec::new();
    for (n, replica) in replicas.iter().cycle().take(32).enumerate() {
        let s = replica.clone();
        tasks.push(tokio::spawn(async move {
            s.reserve_usage(
                "in_1",
                "owner",
                "m@1",
                "req",
                7,
                100,
                (&format!("u{n}"), 1000),
                n as i64,
            )
            .await
            .expect("reserve")
        }));
    }
    let mut granted = 0;
    for task in tasks {
        let (g, total) = task.await.expect("join");
        assert!((0..=7).contains(&g) && total <= 100, "granted {g}, total {total}");
        granted += g;
    }
    assert_eq!(granted, 100, "the quota is granted exactly, never more");
    // Meters are separate: another instance, model or requester starts from nothing.
    let store = &replicas[0];
    for (instance, model, requester) in
        [("in_2", "m@1", "req"), ("in_1", "m@2", "req"), ("in_1", "m@1", "other")]
    {
        let reserved = store
            .reserve_usage(
                instance,
                "owner",
                model,
                requester,
                7,
                100,
                (&format!("v{model}{requester}"), 1000),
                1,
            )
            .await
            .expect("store");
        assert_eq!(reserved, (7, 7), "{instance} {model} {requester}");
    }
    // A quota lowered below what was reserved grants nothing and keeps the total.
    assert_eq!(
        store
            .reserve_usage("in_1", "owner", "m@1", "req", 5, 50, ("w", 1000), 2)
            .await
            .expect("store"),
        (0, 100)
    );
}

async fn request_allowances_refill_at_their_rate_across_replicas(db: &TestDb) {
    let replicas = [db.open().await, db.open().await];
    // 30 a minute, full when first used: 24 takers of 3 at second 100 over two replicas get
    // exactly the 30 in the bucket.
    let mut tasks = Vec::new();
    for (n, replica) in replicas.iter().cycle().take(24).enumerate() {
        let s = replica.clone();
        tasks.push(tokio::spawn(async move {
            s.reserve_requests("in_1", "owner", "m@1", "req", 3, 30, (&format!("t{n}"), 1000), 100)
                .await
                .expect("reserve")
        }));
    }
    let mut granted = 0;
    for task in tasks {
        let g = task.await.expect("join");
        assert!(g <= 3, "granted {g}");
        granted += g;
    }
    assert_eq!(granted, 30, "the bucket is granted exactly, never more");
    let store = &replicas[1];
    // Empty now; 10 s later a sixth of a minute's rate is back, and no more.
    assert_eq!(
        store
            .reserve_requests("in_1", "owner", "m@1", "req", 3, 30, ("q2", 1000), 100)
            .await
            .expect("store"),
        0
    );
    assert_eq!(
        store
            .reserve_requests("in_1", "owner", "m@1", "req", 30, 30, ("q3", 1000), 110)
            .await
            .expect("store"),
        5
    );
    assert_eq!(
        store
            .reserve_requests("in_1", "owner", "m@1", "req", 30, 30, ("q4", 1000), 110)
            .await
            .expect("store"),
        0
    );
    // A clock that goes back grants nothing new.
    assert_eq!(
        store
            .reserve_requests("in_1", "owner", "m@1", "req", 30, 30, ("q5", 1000), 50)
            .await
            .expect("store"),
        0
    );
    // Meters are separate: another instance, model or requester starts full.
    for (instance, model, requester) in
        [("in_2", "m@1", "req"), ("in_1", "m@2", "req"), ("in_1", "m@1", "other")]
    {
        let id = format!("m{model}{requester}");
        let got = store
            .reserve_requests(instance, "owner", model, requester, 4, 30, (&id, 1000), 110)
            .await;
        assert_eq!(got.expect("store"), 4, "{instance} {model} {requester}");
    }
    // A statement posted again (its id seen) reserves nothing, on either kind of reservation and
    // from either replica, until it has expired; ids are per instance.
    let again =
        replicas[0].reserve_requests("in_2", "owner", "m@3", "req", 1, 30, ("q2", 1000), 120);
    assert!(matches!(again.await, Ok(1)), "another instance's id space");
    for replica in &replicas {
        let replayed =
            replica.reserve_requests("in_1", "owner", "m@3", "req", 1, 30, ("q2", 1000), 120);
        assert!(matches!(replayed.await, Err(StoreError::Conflict(_))));
        let replayed =
            replica.reserve_usage("in_1", "owner", "m@3", "req", 1, 30, ("q2", 1000), 120);
        assert!(matches!(replayed.await, Err(StoreError::Conflict(_))));
    }
    // Forgotten once it expired (by then the statement no longer verifies at the service).
    let later =
        replicas[1].reserve_requests("in_1", "owner", "m@3", "req", 1, 30, ("q2", 1200), 1001);
    assert!(matches!(later.await, Ok(1)));
}

async fn grant_revocations_are_kept_once(db: &TestDb) {
    let store = db.open().await;
    let row = |at| cloister_authority::store::RevokedGrantRow {
        owner: "owner".into(),
        job_digest: "ab".repeat(32),
        revoked_at: at,
    };
    assert_eq!(store.grant_revoked_at("owner", &"ab".repeat(32)).await.expect("store"), None);
    assert_eq!(store.revoke_grant(&row(10)).await.expect("store"), (row(10), true));
    assert_eq!(store.revoke_grant(&row(20)).await.expect("store"), (row(10), false));
    assert_eq!(store.grant_revoked_at("owner", &"ab".repeat(32)).await.expect("store"), Some(10));
    assert_eq!(store.grant_revoked_at("other", &"ab".repeat(32)).await.expect("store"), None);
}

async fn broker_keys(db: &TestDb) {
    let store = db.open().await;
    with_tenant(&store, "tn_a").await;
    with_tenant(&store, "tn_b").await;
    let a1 = broker_key("kb_1", "tn_a", "model", "aa11", 20);
    let a2 = broker_key("kb_2", "tn_a", "data", "aa22", 10);
    let b1 = broker_key("kb_3", "tn_b", "model", "bb11", 5);
    for k in [&a1, &a2, &b1] {
        store.create_broker_key(k).await.expect("create broker key");
    }
    assert_eq!(store.broker_key("kb_1").await.expect("get"), Some(a1.clone()));
    assert_eq!(store.broker_key("kb_nope").await.expect("get"), None);
    assert_eq!(store.broker_key_by_key_id("bb11").await.expect("get"), Some(b1.clone()));
    assert_eq!(store.broker_key_by_key_id("ffff").await.expect("get"), None);
    assert_eq!(store.broker_keys("tn_a").await.expect("list"), vec![a2.clone(), a1.clone()]);
    assert_eq!(store.broker_keys("tn_b").await.expect("list"), vec![b1.clone()]);
    assert!(store.broker_keys("tn_nope").await.expect("list").is_empty());

    expect_conflict(
        store.create_broker_key(&broker_key("kb_4", "tn_a", "model", "cc11", 1)).await,
        "tenant tn_a already has a broker key named model",
    );
    expect_conflict(
        store.create_broker_key(&broker_key("kb_4", "tn_a", "other", "aa11", 1)).await,
        "key id aa11",
    );
    expect_conflict(
        store.create_broker_key(&broker_key("kb_1", "tn_a", "other", "cc11", 1)).await,
        "a broker key with id kb_1 already exists",
    );
    expect_not_found(
        store.create_broker_key(&broker_key("kb_5", "tn_missing", "x", "dd11", 1)).await,
        "tn_missing",
    );
    assert_eq!(store.broker_key("kb_4").await.expect("get"), None);

    store.revoke_broker_key("kb_1", 100).await.expect("revoke");
    assert_eq!(store.broker_key("kb_1").await.expect("get").and_then(|k| k.revoked_at), Some(100));
    store.revoke_broker_key("kb_1", 200).await.expect("revoke again");
    assert_eq!(
        store.broker_key("kb_1").await.expect("get").and_then(|k| k.revoked_at),
        Some(100),
        "the first revocation time stays"
    );
    assert_eq!(store.broker_key("kb_2").await.expect("get"), Some(a2.clone()), "others untouched");
    expect_not_found(store.revoke_broker_key("kb_nope", 1).await, "kb_nope");

    store.delete_broker_key("kb_2").await.expect("delete");
    assert_eq!(store.broker_key("kb_2").await.expect("get"), None);
    assert_eq!(store.broker_key_by_key_id("aa22").await.expect("get"), None);
    expect_not_found(store.delete_broker_key("kb_2").await, "kb_2");
    assert_eq!(store.broker_keys("tn_a").await.expect("list").len(), 1);
}

async fn audit_log_and_checkpoints(db: &TestDb) {
    let store = db.open().await;
    assert_eq!(store.audit_last().await.expect("last"), None);
    assert!(store.audit_rows(None).await.expect("rows").is_empty());
    let first = store
        .append_audit(|last| {
            assert!(last.is_none(), "an empty log has no last entry");
            chain_next(last, Some("tn_a"), "{}")
        })
        .await
        .expect("append");
    assert_eq!(first.seq, 1);
    let second = store.append_audit(|last| chain_next(last, None, "{}")).await.expect("append");
    let third = store
        .append_audit(|last| {
            assert_eq!(last, Some(&second), "make sees the current last entry");
            chain_next(last, Some("tn_a"), r#"{"x":1}"#)
        })
        .await
        .expect("append");
    assert_eq!(store.audit_last().await.expect("last"), Some(third.clone()));
    let all = store.audit_rows(None).await.expect("rows");
    assert_eq!(all, vec![first.clone(), second.clone(), third.clone()]);
    assert_chain(&all);
    assert_eq!(store.audit_rows(Some("tn_a")).await.expect("rows"), vec![first, third.clone()]);
    assert!(store.audit_rows(Some("tn_b")).await.expect("rows").is_empty());

    // A row numbered wrongly is refused and nothing is written.
    expect_invalid(
        store.append_audit(|last| AuditRow { seq: 7, ..chain_next(last, None, "{}") }).await,
        "the next one is 4",
    );
    expect_invalid(
        store.append_audit(|_| chain_next(None, None, "{}")).await,
        "has seq 1, the next one is 4",
    );
    assert_eq!(store.audit_last().await.expect("last"), Some(third));

    let c3 = CheckpointRow { seq: 3, at: 50, hash: "h3".into(), signature: "s3".into() };
    let c1 = CheckpointRow { seq: 1, at: 40, hash: "h1".into(), signature: "s1".into() };
    store.add_checkpoint(&c3).await.expect("checkpoint");
    store.add_checkpoint(&c1).await.expect("checkpoint");
    expect_conflict(
        store.add_checkpoint(&CheckpointRow { at: 60, ..c3.clone() }).await,
        "already an audit checkpoint at seq 3",
    );
    assert_eq!(store.checkpoints().await.expect("checkpoints"), vec![c1, c3]);
}

async fn audit_appends_from_two_replicas_chain_without_gaps(db: &TestDb) {
    let replicas = [db.open().await, db.open().await];
    let mut tasks = Vec::new();
    for (r, replica) in replicas.iter().enumerate() {
        for n in 0..50 {
            let s = replica.clone();
            tasks.push(tokio::spawn(async move {
                s.append_audit(|last| chain_next(last, None, &format!("replica {r} entry {n}")))
                    .await
            }));
        }
    }
    let mut seqs = Vec::new();
    for task in tasks {
        seqs.push(task.await.expect("join").expect("append").seq);
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=100).collect::<Vec<_>>(), "each append got its own seq");
    let rows = replicas[1].audit_rows(None).await.expect("rows");
    assert_eq!(rows.len(), 100);
    assert_chain(&rows);
    for r in 0..2 {
        let from_r =
            rows.iter().filter(|row| row.detail.starts_with(&format!("replica {r} "))).count();
        assert_eq!(from_r, 50);
    }
}

async fn audit_batches_commit_whole_or_not_at_all(db: &TestDb) {
    let store = db.open().await;
    let none = store.append_audit_batch(Vec::<u8>::new(), |_, _| unreachable!()).await;
    assert!(none.expect("an empty batch").is_empty());
    let first = store.append_audit(|last| chain_next(last, None, "{}")).await.expect("append");
    let mut seen = Vec::new();
    let rows = store
        .append_audit_batch(vec!["a", "b", "c"], |last, detail| {
            seen.push(last.map(|l| l.seq));
            chain_next(last, None, detail)
        })
        .await
        .expect("a batch");
    assert_eq!(seen, vec![Some(1), Some(2), Some(3)], "each row is made on the one before it");
    assert_eq!(rows.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![2, 3, 4]);
    assert_eq!(rows.iter().map(|r| r.detail.as_str()).collect::<Vec<_>>(), vec!["a", "b", "c"]);
    let stored = store.audit_rows(None).await.expect("rows");
    assert_eq!(stored[1..], rows[..]);
    assert_eq!(stored[0], first);
    assert_chain(&stored);

    // A misnumbered row anywhere in a batch refuses the whole batch: the rows before it are not
    // written either.
    expect_invalid(
        store
            .append_audit_batch(vec![0, 1, 2], |last, n| {
                let row = chain_next(last, None, "{}");
                if n == 2 { AuditRow { seq: row.seq + 1, ..row } } else { row }
            })
            .await,
        "has seq 8, the next one is 7",
    );
    assert_eq!(store.audit_rows(None).await.expect("rows"), stored, "nothing was written");

    // Too many at once is refused before anything is done.
    let too_many = vec![(); cloister_authority::store::MAX_AUDIT_BATCH + 1];
    expect_invalid(
        store.append_audit_batch(too_many, |last, ()| chain_next(last, None, "{}")).await,
        "at most",
    );
    assert_eq!(store.audit_rows(None).await.expect("rows"), stored);
}

async fn group_committed_appends_from_two_replicas_each_get_their_own_entry(db: &TestDb) {
    use cloister_authority::audit::{self, AuditEvent, AuditKind, Outcome};

    const PER_REPLICA: usize = 150;
    let replicas = [db.open().await, db.open().await];
    let mut tasks = Vec::new();
    for (r, replica) in replicas.iter().enumerate() {
        for n in 0..PER_REPLICA {
            let replica = replica.clone();
            tasks.push(tokio::spawn(async move {
                let caller = format!("replica {r} caller {n}");
                let event =
                    AuditEvent::new(AuditKind::Attestation, "anonymous", &caller, Outcome::Success)
                        .tenant("tn_a")
                        .detail(serde_json::json!({ "caller": caller }));
                // Every tenth caller appends on its own, past the writer, to interleave the
                // two kinds of transaction.
                let row = if n % 10 == 9 {
                    replica
                        .append_audit(|last| audit::next_row(last, &event, n as i64))
                        .await
                        .expect("append")
                } else {
                    replica.append_audit_event(event, n as i64).await.expect("group append")
                };
                assert_eq!(row.subject, caller, "the caller got its own entry back");
                assert_eq!(row.at, n as i64);
                row
            }));
        }
    }
    let mut answered = Vec::new();
    for task in tasks {
        answered.push(task.await.expect("join"));
    }
    answered.sort_by_key(|row| row.seq);
    let stored = replicas[0].audit_rows(None).await.expect("rows");
    assert_eq!(
        answered.iter().map(|row| row.seq).collect::<Vec<_>>(),
        (1..=2 * PER_REPLICA as i64).collect::<Vec<_>>(),
        "dense seqs, one per caller"
    );
    assert_eq!(answered, stored, "each caller was answered with its entry as committed");
    let key = cloister_sign::SigningKey::generate();
    let report = audit::verify_log(&stored, &[], &key.public_key());
    assert!(report.is_intact(), "{:?}", report.problems);
    assert_eq!(report.last_seq, 2 * PER_REPLICA as i64);
}

async fn restart_loses_nothing(db: &TestDb) {
    let store = db.open().await;
    store.meta_insert_if_absent("service_id", "svc-1").await.expect("meta");
    with_tenant(&store, "tn_a").await;
    let cred = CredentialRow {
        token_hash: "77".repeat(32),
        role: "operator".into(),
        tenant_id: None,
        created_at: 3,
    };
    store.add_credential(&cred).await.expect("credential");
    let (i, p, k) = new_instance("in_1", "tn_a", "prod", 50);
    store.create_instance(&i, &p, &k).await.expect("create");
    store.add_policy_version("in_1", "package v2", Some("b"), 60).await.expect("v2");
    store
        .rotate_instance_keys("in_1", &token_key("in_1", "k2", 70), "CA 2", &[9, 0], 70, 90)
        .await
        .expect("rotate");
    store.insert_nonce("n1", "in_1", 500, 100).await.expect("nonce");
    store.create_broker_key(&broker_key("kb_1", "tn_a", "m", "aa", 5)).await.expect("broker");
    store.revoke_broker_key("kb_1", 6).await.expect("revoke");
    store.append_audit(|last| chain_next(last, Some("tn_a"), "{}")).await.expect("audit");
    store.append_audit(|last| chain_next(last, None, "{}")).await.expect("audit");
    let checkpoint = CheckpointRow { seq: 2, at: 9, hash: "h".into(), signature: "s".into() };
    store.add_checkpoint(&checkpoint).await.expect("checkpoint");

    let snapshot = |s: Store| async move {
        (
            s.meta("service_id").await.expect("meta"),
            s.tenants().await.expect("tenants"),
            s.credential(&"77".repeat(32)).await.expect("credential"),
            s.has_operator_credential().await.expect("operator"),
            s.instances(None).await.expect("instances"),
            s.policy_versions("in_1").await.expect("versions"),
            s.instance_keys("in_1").await.expect("keys"),
            s.nonce_expiry("n1", "in_1").await.expect("nonce"),
            s.broker_keys("tn_a").await.expect("broker keys"),
            s.audit_rows(None).await.expect("audit"),
            s.checkpoints().await.expect("checkpoints"),
        )
    };
    let before = snapshot(store.clone()).await;
    assert_eq!(before.4.len(), 1);
    assert_eq!(before.6.len(), 2);
    assert_eq!(before.9.len(), 2);
    store.close().await;
    drop(store);

    // Reconnecting runs the migrations again, which must be a no-op.
    let reopened = db.open().await;
    let after = snapshot(reopened.clone()).await;
    assert_eq!(before, after);
    assert_eq!(reopened.consume_nonce("n1", "in_1").await.expect("consume"), Some(500));
    assert_eq!(reopened.add_policy_version("in_1", "package v3", None, 80).await.expect("v3"), 3);
    let next = reopened.append_audit(|last| chain_next(last, None, "{}")).await.expect("audit");
    assert_eq!(next.seq, 3);
    assert_chain(&reopened.audit_rows(None).await.expect("audit"));
}

/// A charge of `steps` DP-SGD steps on the data set `id` (digest byte `digest`) under a budget.
fn privacy_charge(id: &str, digest: u8, steps: u64, budget: Option<f64>) -> PrivacyCharge {
    let curve = cloister_types::privacy::RdpCurve::dp_sgd(0.1, 1.0, steps).expect("a curve");
    PrivacyCharge {
        input: InputRef {
            object_id: id.into(),
            sha256: cloister_types::Hex(vec![digest; 32]),
            owner: "owner".into(),
        },
        rdp: Some(curve.values().to_vec()),
        budget: budget.map(|epsilon| PrivacyBudget { epsilon, delta: 1e-5 }),
        delta: Some(1e-5),
        // The store does not check grants; the service does before it charges.
        grant: String::new(),
    }
}

async fn privacy_charges_compose_refuse_whole_jobs_and_race_across_replicas(db: &TestDb) {
    let store = db.open().await;
    let epsilon =
        |steps| cloister_types::privacy::dp_sgd_epsilon(0.1, 1.0, steps, 1e-5).expect("ε").epsilon;
    // Room for one job of 50 steps, not two.
    let budget = (epsilon(50) + epsilon(100)) / 2.0;
    let a = privacy_charge("a", 1, 50, Some(budget));
    let first = store
        .charge_privacy(&job("job-1", "d1", "e1"), std::slice::from_ref(&a), 10)
        .await
        .expect("db");
    let Charged::New(accounts) = first else { panic!("within budget: {first:?}") };
    assert_eq!(accounts[0].jobs, 1);
    assert!((accounts[0].total.expect("ε").epsilon - epsilon(50)).abs() < 1e-9);

    // The same job again (a replay, by any enclave) charges nothing and returns the first
    // outcome with the enclave that made it; the same id for another job is refused.
    for by in ["e1", "e2"] {
        let again = store
            .charge_privacy(&job("job-1", "d1", by), std::slice::from_ref(&a), 15)
            .await
            .expect("db");
        assert_eq!(
            again,
            Charged::Replayed { accounts: accounts.clone(), charged_by: "e1".into() },
            "replayed by {by}"
        );
    }
    let reused = store
        .charge_privacy(&job("job-1", "other-digest", "e1"), std::slice::from_ref(&a), 16)
        .await
        .expect("db");
    assert!(matches!(&reused, Charged::Refused { reason, .. } if reason.contains("charged once")));

    // A job over a fresh data set and `a` is refused as a whole: nothing is charged to `b`.
    let b = privacy_charge("b", 2, 50, None);
    let refused = store
        .charge_privacy(&job("job-2", "d2", "e1"), &[b.clone(), a.clone()], 11)
        .await
        .expect("db");
    let Charged::Refused { object_id, reason } = refused else { panic!("over budget") };
    assert_eq!(object_id, "a");
    assert!(reason.contains("1 earlier job(s)") && reason.contains("would have spent"), "{reason}");
    let only_b = store.charge_privacy(&job("job-3", "d3", "e1"), &[b], 12).await.expect("db");
    let Charged::New(only_b) = only_b else { panic!("b alone fits: {only_b:?}") };
    assert_eq!(only_b[0].jobs, 1, "the refused job charged nothing");

    // What the owner reads (GET /v1/owners/me): each charge once, replays and refusals not
    // recorded, with the account it produced and the budget its grant set.
    let on_a = store.charges_on(&"01".repeat(32)).await.expect("db");
    assert_eq!(on_a.len(), 1, "{on_a:?}");
    assert_eq!((on_a[0].job_id.as_str(), on_a[0].job_digest.as_str()), ("job-1", "d1"));
    let kept: cloister_types::job::PrivacyAccount =
        serde_json::from_str(on_a[0].account_json.as_deref().expect("account kept")).expect("json");
    assert_eq!(kept, accounts[0]);
    let kept: PrivacyBudget =
        serde_json::from_str(on_a[0].budget_json.as_deref().expect("budget kept")).expect("json");
    assert_eq!(kept, a.budget.expect("a budget"));
    let on_b = store.charges_on(&"02".repeat(32)).await.expect("db");
    assert_eq!(on_b.len(), 1, "{on_b:?}");
    assert_eq!((on_b[0].job_id.as_str(), on_b[0].budget_json.as_deref()), ("job-3", None));

    // Two replicas race ten jobs on a fresh data set with room for one: exactly one is charged.
    let replicas = [db.open().await, db.open().await];
    let mut tasks = Vec::new();
    for n in 0..10 {
        let replica = replicas[n % 2].clone();
        let charge = privacy_charge("c", 3, 50, Some(budget));
        tasks.push(tokio::spawn(async move {
            let id = format!("race-{n}");
            replica.charge_privacy(&job(&id, "d", "e"), &[charge], 20).await
        }));
    }
    let mut charged = 0;
    for task in tasks {
        let outcome = task.await.expect("join").expect("db");
        charged += usize::from(matches!(outcome, Charged::New(_)));
    }
    assert_eq!(charged, 1);

    // Ten replays of one job racing over both replicas: charged once, replayed nine times.
    let d = privacy_charge("d", 4, 10, None);
    let mut tasks = Vec::new();
    for n in 0..10 {
        let replica = replicas[n % 2].clone();
        let charge = d.clone();
        tasks.push(tokio::spawn(async move {
            replica.charge_privacy(&job("once", "d9", "e9"), &[charge], 30).await
        }));
    }
    let mut new = 0;
    for task in tasks {
        let outcome = task.await.expect("join").expect("db");
        new += usize::from(matches!(outcome, Charged::New(_)));
    }
    assert_eq!(new, 1);
}

fn job<'a>(job_id: &'a str, job_digest: &'a str, charged_by: &'a str) -> ChargeJob<'a> {
    ChargeJob { job_id, job_digest, instance_id: "in_1", charged_by }
}

// --- connecting ----------------------------------------------------------------------------------

#[tokio::test]
async fn unsupported_urls_are_refused_with_the_schemes_that_work() {
    for url in ["mysql://root:hunter2@db/x", "sqlite:relative.db", "/var/lib/cloister.db", ""] {
        match Store::connect(url).await {
            Err(StoreError::Url(message)) => {
                assert!(
                    message.starts_with("database URL must start with sqlite:// or postgres://"),
                    "{message}"
                );
                assert!(!message.contains("hunter2"), "the password stays out: {message}");
            }
            other => panic!("{url:?}: expected a URL error, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn connect_errors_name_the_url_without_its_password() {
    // Nothing listens on port 1 of loopback.
    let url = "postgres://cloister:s3cret-pw@127.0.0.1:1/cloister?connect_timeout=2";
    match Store::connect(url).await {
        Err(StoreError::Connect(message)) => {
            assert!(message.contains("postgres://cloister@127.0.0.1:1/cloister"), "{message}");
            assert!(!message.contains("s3cret-pw"), "the password stays out: {message}");
        }
        other => panic!("expected a connect error, got {other:?}"),
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = format!("sqlite://{}/no/such/dir/x.db", dir.path().display());
    match Store::connect(&missing).await {
        Err(StoreError::Connect(message)) => assert!(message.contains("no/such/dir"), "{message}"),
        other => panic!("expected a connect error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_memory_database_keeps_its_data_across_calls() {
    let store = Store::connect("sqlite::memory:").await.expect("memory database");
    assert_eq!(store.backend(), Backend::Sqlite);
    with_tenant(&store, "tn_a").await;
    for n in 0..20 {
        store.append_audit(|last| chain_next(last, None, &n.to_string())).await.expect("audit");
    }
    assert_eq!(store.tenants().await.expect("tenants").len(), 1);
    assert_chain(&store.audit_rows(None).await.expect("audit"));
    let other = Store::connect("sqlite::memory:").await.expect("a second memory database");
    assert!(other.tenants().await.expect("tenants").is_empty(), "memory databases are private");
}

#[tokio::test]
async fn a_sqlite_file_is_created_in_wal_mode() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("fresh.db");
    let store = Store::connect(&format!("sqlite://{}", path.display())).await.expect("create");
    store.ping().await.expect("ping");
    assert!(path.exists(), "the file was created");
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .expect("open directly");
    let mode: String =
        sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&mut conn).await.expect("pragma");
    assert_eq!(mode.to_lowercase(), "wal");
}
