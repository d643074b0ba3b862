//! The service database: tenants, credentials, instances with their policy versions and keys,
//! nonces, key-broker keys and the audit log, in SQLite (one node) or PostgreSQL (replicas).
//!
//! Every query is written once with `$N` placeholders, which both backends accept, and run on
//! whichever pool [`Store::connect`] opened. Anything that must not interleave with another
//! replica runs in one write transaction: on SQLite that is `BEGIN IMMEDIATE` (the database's
//! single writer lock, waited for up to the busy timeout); on PostgreSQL a row lock taken by the
//! first `UPDATE`, or for the audit log a transaction-scoped advisory lock.
//!
//! The schema lives in `migrations/{sqlite,postgres}/` and is applied on connect.

mod rows;

use std::str::FromStr as _;
use std::time::Duration;

use cloister_types::job::{PrivacyAccount, PrivacyCharge};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use tokio::sync::{mpsc, oneshot};

use crate::audit::AuditEvent;

pub use rows::{
    AuditRow, BrokerKeyRow, ChargeRow, CheckpointRow, CredentialRow, DatasetRow, InstanceKeyRow,
    InstanceRow, PolicyVersionRow, RevokedGrantRow, TenantRow,
};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// The PostgreSQL advisory lock that serialises privacy charges across replicas ("privacy!" in
/// ASCII, read as a big-endian i64).
const PRIVACY_LOCK_KEY: i64 = 0x7072_6976_6163_7921;
/// How long a SQLite connection waits for another writer before giving up.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections per pool for a SQLite file. SQLite writers take turns anyway, and with several
/// connections a waiting writer sleeps in SQLite's busy handler (backing off up to 100 ms), which
/// made the p99 latency of attestations five times worse under load (docs/BENCHMARKS.md); one
/// connection queues them in order instead.
const SQLITE_MAX_CONNECTIONS: u32 = 1;
/// Connections per pool and replica for PostgreSQL.
const POSTGRES_MAX_CONNECTIONS: u32 = 16;
/// How long to wait for a free pooled connection (or a new one) before failing the request.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// The PostgreSQL advisory lock that serialises audit appends across replicas ("cloister" in
/// ASCII, read as a big-endian i64).
const AUDIT_LOCK_KEY: i64 = 0x636c_6f69_7374_6572;
/// Most audit entries one [`Store::append_audit_batch`] writes: ten bound values each stay far
/// below both backends' limits, and the few distinct statement texts stay in the prepared
/// statement cache.
pub const MAX_AUDIT_BATCH: usize = 64;

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file (or memory, in tests).
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// Why a database operation failed.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database URL has an unsupported scheme or cannot be parsed.
    #[error("{0}")]
    Url(String),
    /// The database could not be opened or reached.
    #[error("{0}")]
    Connect(String),
    /// Applying the schema migrations failed.
    #[error("{0}")]
    Migrate(String),
    /// A row with the same unique key already exists.
    #[error("{0}")]
    Conflict(String),
    /// The row to change, or a row the new one refers to, does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Any other database error, as the driver reported it.
    #[error("database error: {0}")]
    Database(String),
    /// The rows passed in do not fit together (a policy version or key of another instance).
    #[error("{0}")]
    Invalid(String),
}

/// The connection pool, and the queue of the writer task that group-commits its writes (see
/// the `writer` module).
#[derive(Clone)]
enum Pool {
    Sqlite(SqlitePool, mpsc::Sender<writer::SqliteWrite>),
    Postgres(PgPool, mpsc::Sender<writer::AuditAppend>),
}

/// The service database; cheap to clone (a shared connection pool and writer task).
#[derive(Clone)]
pub struct Store {
    pool: Pool,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("backend", &self.backend()).finish_non_exhaustive()
    }
}

/// Runs `$body` with `$p` bound to the backend's pool (the body is compiled once per backend).
macro_rules! with_pool {
    ($store:expr, |$p:ident| $body:expr) => {
        match &$store.pool {
            Pool::Sqlite($p, _) => $body,
            Pool::Postgres($p, _) => $body,
        }
    };
}

/// Runs `$body` with `$tx` bound to a write transaction and commits it when the body finishes;
/// an early return (`?`) drops the transaction, which rolls it back. On SQLite the transaction
/// takes the writer lock up front (`BEGIN IMMEDIATE`) so that it never has to upgrade a read
/// snapshot, which fails instead of waiting when another connection wrote in between.
macro_rules! in_write_tx {
    ($store:expr, |$tx:ident| $body:expr) => {
        match &$store.pool {
            Pool::Sqlite(pool, _) => {
                let mut $tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
                let out = $body;
                $tx.commit().await.map_err(db)?;
                out
            }
            Pool::Postgres(pool, _) => {
                let mut $tx = pool.begin().await.map_err(db)?;
                let out = $body;
                $tx.commit().await.map_err(db)?;
                out
            }
        }
    };
}

/// Records a reservation statement's id `(id, keep until)` for an instance inside the write
/// transaction `$tx` of the reservation itself, forgetting ids whose statements expired; an id
/// already there is a statement posted again: returns [`StoreError::Conflict`] from the
/// enclosing function, and the transaction (nothing reserved) is dropped.
macro_rules! spend_reservation_id {
    ($tx:ident, $instance_id:expr, $statement:expr, $now:expr) => {{
        let (id, keep_until): (&str, i64) = $statement;
        sqlx::query("DELETE FROM reservation_ids WHERE expires_at < $1")
            .bind($now)
            .execute(&mut *$tx)
            .await
            .map_err(db)?;
        sqlx::query(
            "INSERT INTO reservation_ids (instance_id, id, expires_at) VALUES ($1, $2, $3)",
        )
        .bind($instance_id)
        .bind(id)
        .bind(keep_until)
        .execute(&mut *$tx)
        .await
        .map_err(|e| {
            conflict(e, || {
                "this reservation statement was already used: each is accepted once".to_owned()
            })
        })?;
    }};
}

/// Appends one audit row per item of `$items` (an iterator) inside the write transaction `$tx`,
/// first taking PostgreSQL's audit lock when `$lock` is true: reads the chain head once, calls
/// `$make(entry before, item)` for each item in order, checks each row's seq and inserts them
/// all in one statement. Evaluates to the rows; returns the error from the enclosing function.
macro_rules! append_rows {
    ($tx:ident, $lock:expr, $items:expr, $make:expr) => {{
        if $lock {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind($crate::store::AUDIT_LOCK_KEY)
                .execute(&mut *$tx)
                .await
                .map_err($crate::store::db)?;
        }
        let mut last = sqlx::query_as::<_, $crate::store::AuditRow>(
            "SELECT seq, at, kind, actor, tenant_id, subject, outcome, detail, prev_hash, hash \
             FROM audit_log ORDER BY seq DESC LIMIT 1",
        )
        .fetch_optional(&mut *$tx)
        .await
        .map_err($crate::store::db)?;
        let expected_first = last.as_ref().map_or(1, |l| l.seq + 1);
        let mut make = $make;
        let mut rows: Vec<$crate::store::AuditRow> = Vec::new();
        for item in $items {
            let row = $crate::store::make_row(&mut make, last.as_ref(), item);
            let expected = last.as_ref().map_or(1, |l| l.seq + 1);
            if row.seq != expected {
                return Err($crate::store::StoreError::Invalid(format!(
                    "the audit entry to append has seq {}, the next one is {expected}",
                    row.seq
                )));
            }
            last = Some(row.clone());
            rows.push(row);
        }
        if rows.len() > $crate::store::MAX_AUDIT_BATCH {
            return Err($crate::store::StoreError::Invalid(format!(
                "{} audit entries in one append; at most {}",
                rows.len(),
                $crate::store::MAX_AUDIT_BATCH
            )));
        }
        if !rows.is_empty() {
            let mut insert = sqlx::QueryBuilder::new(
                "INSERT INTO audit_log (seq, at, kind, actor, tenant_id, subject, outcome, \
                 detail, prev_hash, hash) ",
            );
            insert.push_values(&rows, |mut values, row| {
                values
                    .push_bind(row.seq)
                    .push_bind(row.at)
                    .push_bind(&row.kind)
                    .push_bind(&row.actor)
                    .push_bind(&row.tenant_id)
                    .push_bind(&row.subject)
                    .push_bind(&row.outcome)
                    .push_bind(&row.detail)
                    .push_bind(&row.prev_hash)
                    .push_bind(&row.hash);
            });
            insert.build().execute(&mut *$tx).await.map_err(|e| {
                $crate::store::conflict(e, || match (rows.first(), rows.last()) {
                    (Some(first), Some(last)) if first.seq < last.seq => format!(
                        "one of the audit entries {} to {} already exists",
                        first.seq, last.seq
                    ),
                    _ => format!("audit entry {expected_first} already exists"),
                })
            })?;
        }
        rows
    }};
}

mod writer;

/// Calls `make` for [`append_rows!`], which gives each closure it is handed the signature of
/// [`Store::append_audit_batch`]'s.
fn make_row<T>(
    make: &mut impl FnMut(Option<&AuditRow>, T) -> AuditRow,
    last: Option<&AuditRow>,
    item: T,
) -> AuditRow {
    make(last, item)
}

/// Inserts one token key (`&InstanceKeyRow`) on `$executor`; `Conflict` when its kid is taken.
macro_rules! insert_key {
    ($executor:expr, $key:expr) => {{
        let key: &InstanceKeyRow = $key;
        sqlx::query(
            "INSERT INTO instance_keys (instance_id, kid, public_jwk, secret_sealed, created_at, \
             retired_at, keep_until) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&key.instance_id)
        .bind(&key.kid)
        .bind(&key.public_jwk)
        .bind(&key.secret_sealed)
        .bind(key.created_at)
        .bind(key.retired_at)
        .bind(key.keep_until)
        .execute($executor)
        .await
        .map(|_| ())
        .map_err(|e| {
            conflict(e, || {
                format!("instance {} already has a token key with kid {}", key.instance_id, key.kid)
            })
        })
    }};
}

/// The job a privacy charge is for.
#[derive(Clone, Copy, Debug)]
pub struct ChargeJob<'a> {
    /// The job's id.
    pub job_id: &'a str,
    /// The job's digest (as the owners' grants name it).
    pub job_digest: &'a str,
    /// The instance whose attested enclave asks.
    pub instance_id: &'a str,
    /// The enclave's receipt key (text form).
    pub charged_by: &'a str,
}

/// What [`Store::charge_privacy`] did.
#[derive(Clone, Debug, PartialEq)]
pub enum Charged {
    /// Charged now; every data set's account after the job.
    New(Vec<PrivacyAccount>),
    /// Charged before, by the enclave named: nothing charged now, the first outcome again.
    Replayed {
        /// The accounts as the first charge left them.
        accounts: Vec<PrivacyAccount>,
        /// The receipt key of the enclave that made the first charge.
        charged_by: String,
    },
    /// Refused, nothing recorded.
    Refused {
        /// The data set that refuses.
        object_id: String,
        /// Why.
        reason: String,
    },
}

/// Deletes the nonces of instance `$1` beyond the `$2` that expire last.
const TRIM_NONCES: &str = "DELETE FROM nonces WHERE nonce IN (SELECT nonce FROM nonces \
                           WHERE instance_id = $1 ORDER BY expires_at DESC, nonce DESC \
                           LIMIT 1000000000 OFFSET $2)";

/// Consumes nonce `$1` of instance `$2`, returning its expiry, the instance's revision and the
/// latest checkpoint's seq and hash (a row only when the nonce was there).
const CONSUME_NONCE: &str = "DELETE FROM nonces WHERE nonce = $1 AND instance_id = $2 \
                             RETURNING expires_at, \
                             (SELECT revision FROM instances WHERE id = $2), \
                             (SELECT seq FROM audit_checkpoints ORDER BY seq DESC LIMIT 1), \
                             (SELECT hash FROM audit_checkpoints ORDER BY seq DESC LIMIT 1)";

/// The columns [`CONSUME_NONCE`] returns.
type ConsumedRow = (i64, Option<i64>, Option<i64>, Option<String>);

/// The [`ConsumedNonce`] of a [`CONSUME_NONCE`] row.
fn consumed(
    row: Option<ConsumedRow>,
    instance_id: &str,
) -> Result<Option<ConsumedNonce>, StoreError> {
    let Some((expires_at, revision, checkpoint_seq, checkpoint_hash)) = row else {
        return Ok(None);
    };
    // The nonce's foreign key keeps its instance; a missing one is a broken database.
    let instance_revision = revision.ok_or_else(|| {
        StoreError::Invalid(format!("the nonce of instance {instance_id} has no instance"))
    })?;
    let last_checkpoint = match (checkpoint_seq, checkpoint_hash) {
        (Some(seq), Some(hash)) => Some((seq, hash)),
        _ => None,
    };
    Ok(Some(ConsumedNonce { expires_at, instance_revision, last_checkpoint }))
}

/// Why a nonce insert failed: issued before, or no such instance.
fn nonce_refused(e: sqlx::Error, nonce: &str, instance_id: &str) -> StoreError {
    constraint(
        e,
        || format!("the nonce {nonce} was already issued"),
        || format!("there is no instance {instance_id}"),
    )
}

/// What [`Store::consume_nonce_for_attestation`] read with the nonce it consumed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumedNonce {
    /// The nonce's expiry (Unix seconds; the caller checks it).
    pub expires_at: i64,
    /// The revision of the nonce's instance.
    pub instance_revision: i64,
    /// The latest audit checkpoint's seq and hash; `None` before the first.
    pub last_checkpoint: Option<(i64, String)>,
}

/// A stored Rényi DP curve (`NULL`: the job trained without DP noise).
/// A token bucket holding `available` thousandths of a request, last refilled at `refilled_at`,
/// refilled at `per_minute` requests a minute up to `capacity` thousandths, at `now`. A clock
/// that went back refills nothing and keeps the later time; fractions of a thousandth are lost,
/// never granted.
fn refill(
    available: i64,
    refilled_at: i64,
    capacity: i64,
    per_minute: u32,
    now: i64,
) -> (i64, i64) {
    let elapsed = now.saturating_sub(refilled_at).max(0);
    let added = elapsed.saturating_mul(i64::from(per_minute)).saturating_mul(1000) / 60;
    (available.saturating_add(added).min(capacity), refilled_at.max(now))
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Invalid(e.to_string()))
}

fn parse_rdp(json: Option<&str>) -> Result<Option<Vec<f64>>, StoreError> {
    json.map(serde_json::from_str::<Vec<f64>>)
        .transpose()
        .map_err(|e| StoreError::Invalid(format!("a stored privacy charge: {e}")))
}

fn db(e: sqlx::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

/// Maps a unique violation to [`StoreError::Conflict`] with `unique`'s message.
fn conflict(e: sqlx::Error, unique: impl FnOnce() -> String) -> StoreError {
    constraint(e, unique, String::new)
}

/// Maps a unique violation to [`StoreError::Conflict`] and a foreign-key violation (a row it
/// refers to is missing) to [`StoreError::NotFound`], with the given messages.
fn constraint(
    e: sqlx::Error,
    unique: impl FnOnce() -> String,
    foreign: impl FnOnce() -> String,
) -> StoreError {
    if let sqlx::Error::Database(d) = &e {
        if d.is_unique_violation() {
            return StoreError::Conflict(unique());
        }
        if d.is_foreign_key_violation() {
            let message = foreign();
            if !message.is_empty() {
                return StoreError::NotFound(message);
            }
        }
    }
    db(e)
}

/// `url` with any password left out, for messages and logs.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    if scheme == "sqlite" {
        // A file path, which may hold ':' and '@'; there is no password.
        return url.to_owned();
    }
    // The userinfo ends at the last '@' before the query: a password may hold '/' unencoded.
    let before_query = rest.find('?').unwrap_or(rest.len());
    let (authority, tail) = match rest[..before_query].rfind('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            let after = &rest[at + 1..];
            let end = after.find(['/', '?']).unwrap_or(after.len());
            (format!("{user}@{}", &after[..end]), &after[end..])
        }
        None => {
            let end = rest.find(['/', '?']).unwrap_or(rest.len());
            (rest[..end].to_owned(), &rest[end..])
        }
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=…"),
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

impl Store {
    /// Opens the database and applies any pending migrations.
    ///
    /// `sqlite://PATH` opens (creating if missing) a SQLite file in WAL mode with a 5 s busy
    /// timeout and foreign keys on; `sqlite::memory:` a private in-memory database (one
    /// connection, for tests); `postgres://…` or `postgresql://…` a PostgreSQL database, where
    /// replicas may share it.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        let shown = redact(url);
        let pool = if url == "sqlite::memory:" || url.starts_with("sqlite://") {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(|e| {
                    StoreError::Url(format!("cannot parse the database URL {shown}: {e}"))
                })?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(SQLITE_BUSY_TIMEOUT)
                .foreign_keys(true);
            let pool_options = if url == "sqlite::memory:" {
                // The memory database lives as long as its connection: keep exactly one forever.
                SqlitePoolOptions::new()
                    .max_connections(1)
                    .min_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None)
            } else {
                SqlitePoolOptions::new().max_connections(SQLITE_MAX_CONNECTIONS)
            };
            let pool =
                pool_options.acquire_timeout(ACQUIRE_TIMEOUT).connect_with(options).await.map_err(
                    |e| StoreError::Connect(format!("cannot open the database {shown}: {e}")),
                )?;
            SQLITE_MIGRATIONS.run(&pool).await.map_err(|e| {
                StoreError::Migrate(format!("cannot bring the schema of {shown} up to date: {e}"))
            })?;
            let queue = writer::start_sqlite(pool.clone());
            Pool::Sqlite(pool, queue)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url).map_err(|e| {
                StoreError::Url(format!("cannot parse the database URL {shown}: {e}"))
            })?;
            let pool = PgPoolOptions::new()
                .max_connections(POSTGRES_MAX_CONNECTIONS)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_with(options)
                .await
                .map_err(|e| StoreError::Connect(format!("cannot connect to {shown}: {e}")))?;
            // sqlx takes an advisory lock here, so replicas starting together migrate once.
            POSTGRES_MIGRATIONS.run(&pool).await.map_err(|e| {
                StoreError::Migrate(format!("cannot bring the schema of {shown} up to date: {e}"))
            })?;
            let queue = writer::start_postgres(pool.clone());
            Pool::Postgres(pool, queue)
        } else {
            return Err(StoreError::Url(format!(
                "database URL must start with sqlite:// or postgres:// (got {shown})"
            )));
        };
        Ok(Store { pool })
    }

    /// The database this store talks to.
    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(..) => Backend::Sqlite,
            Pool::Postgres(..) => Backend::Postgres,
        }
    }

    /// Writes a consistent copy of a SQLite database to `dest` (which must not exist) while the
    /// service may keep writing: SQLite's `VACUUM INTO`, one read transaction, so the copy is
    /// the database as of one commit. PostgreSQL databases are backed up with its own tools
    /// (`pg_dump`); for them this is an error saying so.
    pub async fn snapshot_into(&self, dest: &std::path::Path) -> Result<(), StoreError> {
        match &self.pool {
            Pool::Sqlite(pool, _) => {
                let dest = dest.to_str().ok_or_else(|| {
                    StoreError::Invalid(format!("{} is not a UTF-8 path", dest.display()))
                })?;
                sqlx::query("VACUUM INTO ?").bind(dest).execute(pool).await.map_err(db)?;
                Ok(())
            }
            Pool::Postgres(..) => Err(StoreError::Invalid(
                "a PostgreSQL database is backed up with pg_dump (docs/ops/install.md, \
                 \"Backup and restore\")"
                    .to_owned(),
            )),
        }
    }

    /// A round trip to the database (for `/readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        with_pool!(self, |p| sqlx::query("SELECT 1").execute(p).await.map(|_| ()).map_err(db))?;
        Ok(())
    }

    /// Closes the pool's connections, waiting for checked-out ones to come back.
    pub async fn close(&self) {
        with_pool!(self, |p| p.close().await)
    }

    // --- meta -----------------------------------------------------------------------------

    /// The value stored under `key`.
    pub async fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        with_pool!(self, |p| {
            sqlx::query_scalar::<_, String>("SELECT value FROM meta WHERE key = $1")
                .bind(key)
                .fetch_optional(p)
                .await
                .map_err(db)
        })
    }

    /// Inserts `key = value` unless `key` is present; returns the value now stored, so that
    /// replicas racing to initialise the same key all end up with the winner's value.
    pub async fn meta_insert_if_absent(
        &self,
        key: &str,
        value: &str,
    ) -> Result<String, StoreError> {
        with_pool!(self, |p| {
            sqlx::query(
                "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
            )
            .bind(key)
            .bind(value)
            .execute(p)
            .await
            .map_err(db)?;
            sqlx::query_scalar::<_, String>("SELECT value FROM meta WHERE key = $1")
                .bind(key)
                .fetch_optional(p)
                .await
                .map_err(db)?
                .ok_or_else(|| {
                    StoreError::NotFound(format!("the meta key {key} vanished right after insert"))
                })
        })
    }

    // --- tenants and credentials -------------------------------------------------------------

    /// Adds a tenant; [`StoreError::Conflict`] when its name (or id) is taken.
    pub async fn create_tenant(&self, t: &TenantRow) -> Result<(), StoreError> {
        let inserted = with_pool!(self, |p| {
            sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3)")
                .bind(&t.id)
                .bind(&t.name)
                .bind(t.created_at)
                .execute(p)
                .await
                .map(|_| ())
        });
        match inserted {
            Ok(_) => Ok(()),
            Err(e) => {
                let id_taken = self.tenant(&t.id).await?.is_some();
                Err(conflict(e, || {
                    if id_taken {
                        format!("a tenant with id {} already exists", t.id)
                    } else {
                        format!("a tenant named {} already exists", t.name)
                    }
                }))
            }
        }
    }

    /// Every tenant, oldest first.
    pub async fn tenants(&self) -> Result<Vec<TenantRow>, StoreError> {
        with_pool!(self, |p| {
            sqlx::query_as::<_, TenantRow>(
                "SELECT id, name, created_at FROM tenants ORDER BY created_at, id",
            )
            .fetch_all(p)
            .await
            .map_err(db)
        })
    }

    /// One tenant.
    pub async fn tenant(&self, id: &str) -> Result<Option<TenantRow>, StoreError> {
        with_pool!(self, |p| {
            sqlx::query_as::<_, TenantRow>("SELECT id, name, created_at FROM tenants WHERE id = $1")
                .bind(id)
                .fetch_optional(p)
                .await
                .map_err(db)
        })
    }

    /// Registers a credential; [`StoreError::NotFound`] when its tenant does not exist.
    pub async fn add_credential(&self, c: &CredentialRow) -> Result<(), StoreError> {
        with_pool!(self, |p| {
            sqlx::query(
                "INSERT INTO credentials (token_hash, role, tenant_id, created_at) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(&c.token_hash)
            .bind(&c.role)
            .bind(&c.tenant_id)
            .bind(c.created_at)
            .execute(p)
            .await
            .map(|_| ())
        })
        .map_err(|e| {
            constraint(
                e,
                || "this bearer token is already registered".to_owned(),
                || format!("there is no tenant {}", c.tenant_id.as_deref().unwrap_or("")),
            )
        })?;
        Ok(())
    }

    /// The credential whose token hashes to `token_hash`.
    pub async fn credential(&self, token_hash: &str) -> Result<Option<CredentialRow>, StoreError> {
        with_pool!(self, |p| {
            sqlx::query_as::<_, CredentialRow>(
                "SELECT token_hash, role, tenant_id, created_at FROM credentials \
                 WHERE token_hash = $1",
            )
            .bind(token_hash)
            .fetch_optional(p)
            .await
            .map_err(db)
        })
    }

    /// Whether any operator credential exists (bootstrap creates the first one).
    pub async fn has_operator_credential(&self) -> Result<bool, StoreError> {
        let row = with_pool!(self, |p| {
            sqlx::query("SELECT 1 FROM credentials WHERE role = 'operator' LIMIT 1")
                .fetch_optional(p)
                .await
                .map_err(db)?
                .is_some()
        });
        Ok(row)
    }

    // --- instances -------------------------------------------------------------------------

    /// Creates an instance with its policy version 1 and its first token key, in one
    /// transaction. [`StoreError::Conflict`] when the tenant already has an instance of that name,
    /// [`StoreError::NotFound`] when the tenant does not exist.
    pub async fn create_instance(
        &self,
        i: &InstanceRow,
        p: &PolicyVersionRow,
        k: &InstanceKeyRow,
    ) -> Result<(), StoreError> {
        self.import_instance(i, std::slice::from_ref(p), std::slice::from_ref(k)).await
    }

    /// One instance.
    pub async fn instance(&self, id: &str) -> Result<Option<InstanceRow>, StoreError> {
        with_pool!(self, |p| {
            sqlx::query_as::<_, InstanceRow>(
                "SELECT id, tenant_id, name, revision, policy_version, reference_values, \
                 trust_anchors, settings, ca_certificate_pem, ca_key_sealed, created_at \
                 FROM instances WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(p)
            .await
            .map_err(db)
        })
    }

    /// The instances of one tenant, or of all tenants with `None`; oldest first.
    pub async fn instances(&self, tenant_id: Option<&str>) -> Result<Vec<InstanceRow>, StoreError> {
        with_pool!(self, |p| {
            sqlx::query_as::<_, InstanceRow>(
                "SELECT id, tenant_id, name, revision, policy_version, reference_values, \
                 trust_anchors, settings, ca_certificate_pem, ca_key_sealed, created_at \
                 FROM instances WHERE ($1 IS NULL OR tenant_id = $1) ORDER BY created_at, id",
            )
            .bind(tenant_id)
            .fetch_all(p)
            .await
            .map_err(db)
        })
    }

    /// An instance's revision, which every change bumps (cheap staleness check for caches).
    pub async fn instance_revision(&self, id: &str) -> Result<Option<i64>, StoreError> {
        with_pool!(self, |p| {
            sqlx::query_scalar::<_, i64>("SELECT revision FROM instances WHERE id = $1")
                .bind(id)
                .fetch_optional(p)
                .await
                .map_err(db)
        })
    }

    /// Appends policy version max+1, makes it the one in force and bumps the revision, in one
    /// transaction; returns the new version. [`StoreError::NotFound`] if there is no instance.
    pub async fn add_policy_version(
        &self,
        instance_id: &str,
        rego: &str,
        builtin: Option<&str>,
        now: i64,
    ) -> Result<i64, StoreError> {
        let version = in_write_tx!(self, |tx| {
            // The UPDATE first: on PostgreSQL it locks the instance row, so concurrent callers
            // number their versions one after the other.
            let bumped = sqlx::query("UPDATE instances SET revision = revision + 1 WHERE id = $1")
                .bind(instance_id)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            if bumped.rows_affected() == 0 {
                return Err(StoreError::NotFound(format!("there is no instance {instance_id}")));
            }
            let version = sqlx::query_scalar::<_, i64>(
                "SELECT COALESCE(MAX(version), 0) FROM policy_versions WHERE instance_id = $1",
            )
            .bind(instance_id)
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?
                + 1;
            sqlx::query(
                "INSERT INTO policy_versions (instance_id, version, rego, builtin, created_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(instance_id)
            .bind(version)
            .bind(rego)
            .bind(builtin)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                conflict(e, || {
                    format!("instance {instance_id} already has policy version {version}")
                })
            })?;
            sqlx::query("UPDATE instances SET policy_version = $2 WHERE id = $1")
                .bind(instance_id)
                .bind(version)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            version
        });
        Ok(version)
    }

    /// One policy version of an instance.
    pub async fn policy_version(
        &self,
        instance_id: &str,
        version: i64,
    ) -> Result<Option<PolicyVersionRow>, StoreError> {
        with_pool!(self, |p| {
            sqlx::query_as::<_, PolicyVersionRow>(
                "SELECT instance_id, version, rego, builtin, created_at FROM policy_versions \
                 WHERE instance_id = $1 AND version = $2",
            )
            .bind(instance_id)
            .bind(version)
            .fetch_optional(p)
            .await
            .map_err(db)
        })
    }

    /// Every policy version of an instance, ascending.
    pub async fn policy_versions(
        &self,
        instance_id: &str,
    ) -> Result<Vec<PolicyVersionRow>, StoreError> {
        with_pool!(self, |p| {
            sqlx::query_as::<_, PolicyVersionRow>(
                "SELECT instance_id, version, rego, builtin, created_at FROM policy_versions \
                 WHERE instance_id = $1 ORDER BY version",
            )
            .bind(instance_id)
            .fetch_all(p)
            .await
            .map_err(db)
        })
    }

    /// Replaces the reference values (JSON) and bumps the revision.
    pub async fn set_reference_values(
        &self,
        instance_id: &str,
        json: &str,
    ) -> Result<(), StoreError> {
        let updated = with_pool!(self, |p| {
            sqlx::query(
                "UPDATE instances SET reference_values = $2, revision = revision + 1 WHERE id = $1",
            )
            .bind(instance_id)
            .bind(json)
            .execute(p)
            .await
            .map_err(db)?
            .rows_affected()
        });
        found(updated, || format!("there is no instance {instance_id}"))
    }

    /// Replaces the trust anchors (JSON) and bumps the revision.
    pub async fn set_trust_anchors(&self, instance_id: &str, json: &str) -> Result<(), StoreError> {
        let updated = with_pool!(self, |p| {
            sqlx::query(
                "UPDATE instances SET trust_anchors = $2, revision = revision + 1 WHERE id = $1",
            )
            .bind(instance_id)
            .bind(json)
            .execute(p)
            .await
            .map_err(db)?
            .rows_affected()
        });
        found(updated, || format!("there is no instance {instance_id}"))
    }

    /// Rotates an instance's keys in one transaction: every key still signing is retired at
    /// `now` and kept published until `keep_until`, `new_key` becomes the signing key, the CA
    /// certificate and its sealed key are replaced, and the revision is bumped.
    pub async fn rotate_instance_keys(
        &self,
        instance_id: &str,
        new_key: &InstanceKeyRow,
        ca_certificate_pem: &str,
        ca_key_sealed: &[u8],
        now: i64,
        keep_until: i64,
    ) -> Result<(), StoreError> {
        same_instance(instance_id, "the new token key", &new_key.instance_id)?;
        if new_key.retired_at.is_some() {
            return Err(StoreError::Invalid(format!(
                "the new token key {} is already marked retired",
                new_key.kid
            )));
        }
        in_write_tx!(self, |tx| {
            let updated = sqlx::query(
                "UPDATE instances SET ca_certificate_pem = $2, ca_key_sealed = $3, \
                 revision = revision + 1 WHERE id = $1",
            )
            .bind(instance_id)
            .bind(ca_certificate_pem)
            .bind(ca_key_sealed)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            if updated.rows_affected() == 0 {
                return Err(StoreError::NotFound(format!("there is no instance {instance_id}")));
            }
            sqlx::query(
                "UPDATE instance_keys SET retired_at = $2, keep_until = $3 \
                 WHERE instance_id = $1 AND retired_at IS NULL",
            )
            .bind(instance_id)
            .bind(now)
            .bind(keep_until)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            insert_key!(&mut *tx, new_key)?;
        });
        Ok(())
    }

    /// Every token key of an instance (signing and retired), oldest first.
    pub async fn instance_keys(
        &self,
        instance_id: &str,
    ) -> Result<Vec<InstanceKeyRow>, StoreError> {
        with_pool!(self, |p| {
            sqlx::query_as::<_, InstanceKeyRow>(
                "SELECT instance_id, kid, public_jwk, secret_sealed, created_at, retired_at, \
                 keep_until FROM instance_keys WHERE instance_id = $1 ORDER BY created_at, kid",
            )
            .bind(instance_id)
            .fetch_all(p)
            .await
            .map_err(db)
        })
    }

    /// Deletes an instance with its policy versions, keys and nonces, keeps its id as used
    /// (`instance_ids.deleted_at`), and removes it from every broker key that lists it, in one
    /// transaction. Returns the ids of the broker keys it was removed from;
    /// [`StoreError::NotFound`] if there is no instance.
    pub async fn delete_instance(
        &self,
        instance_id: &str,
        now: i64,
    ) -> Result<Vec<String>, StoreError> {
        let detached = in_write_tx!(self, |tx| {
            for statement in [
                "DELETE FROM nonces WHERE instance_id = $1",
                "DELETE FROM instance_keys WHERE instance_id = $1",
                "DELETE FROM policy_versions WHERE instance_id = $1",
            ] {
                sqlx::query(statement).bind(instance_id).execute(&mut *tx).await.map_err(db)?;
            }
            let deleted = sqlx::query("DELETE FROM instances WHERE id = $1")
                .bind(instance_id)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            if deleted.rows_affected() == 0 {
                return Err(StoreError::NotFound(format!("there is no instance {instance_id}")));
            }
            sqlx::query("UPDATE instance_ids SET deleted_at = $2 WHERE id = $1")
                .bind(instance_id)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            // Ids are lowercase letters, digits and '_' (a LIKE wildcard matching itself among
            // others): the pattern finds a superset, the JSON decides.
            let listing: Vec<(String, String)> =
                sqlx::query_as("SELECT id, instances FROM broker_keys WHERE instances LIKE $1")
                    .bind(format!("%\"{instance_id}\"%"))
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(db)?;
            let mut detached = Vec::new();
            for (key, instances) in listing {
                let mut list: Vec<String> = serde_json::from_str(&instances).map_err(|e| {
                    StoreError::Invalid(format!("the instances of broker key {key}: {e}"))
                })?;
                let before = list.len();
                list.retain(|listed| listed != instance_id);
                if list.len() == before {
                    continue;
                }
                let json =
                    serde_json::to_string(&list).map_err(|e| StoreError::Invalid(e.to_string()))?;
                sqlx::query("UPDATE broker_keys SET instances = $2 WHERE id = $1")
                    .bind(&key)
                    .bind(json)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                detached.push(key);
            }
            detached
        });
        Ok(detached)
    }

    /// Whether `id` is, or ever was, an instance of this service.
    pub async fn instance_id_used(&self, id: &str) -> Result<bool, StoreError> {
        with_pool!(self, |p| {
            let row = sqlx::query("SELECT 1 FROM instance_ids WHERE id = $1")
                .bind(id)
                .fetch_optional(p)
                .await
                .map_err(db)?;
            Ok(row.is_some())
        })
    }

    /// Inserts an instance with all its policy versions and keys in one transaction (migration from
    /// another service). [`StoreError::Conflict`] when the id exists or ever existed here, or the
    /// tenant already has an instance of that name; [`StoreError::Invalid`] when a version or key
    /// belongs to another instance or the version in force is missing.
    pub async fn import_instance(
        &self,
        i: &InstanceRow,
        versions: &[PolicyVersionRow],
        keys: &[InstanceKeyRow],
    ) -> Result<(), StoreError> {
        for v in versions {
            same_instance(&i.id, &format!("policy version {}", v.version), &v.instance_id)?;
        }
        for k in keys {
            same_instance(&i.id, &format!("token key {}", k.kid), &k.instance_id)?;
        }
        if !versions.iter().any(|v| v.version == i.policy_version) {
            return Err(StoreError::Invalid(format!(
                "instance {} is at policy version {}, which is not among the versions given",
                i.id, i.policy_version
            )));
        }
        in_write_tx!(self, |tx| {
            // Every id this service ever held stays in `instance_ids`: an id that exists,
            // existed or belongs to another tenant is never taken again.
            sqlx::query("INSERT INTO instance_ids (id, tenant_id, created_at) VALUES ($1, $2, $3)")
                .bind(&i.id)
                .bind(&i.tenant_id)
                .bind(i.created_at)
                .execute(&mut *tx)
                .await
                .map_err(|e| {
                    conflict(e, || {
                        format!(
                            "the instance id {} is or was in use on this service, and instance \
                             ids are never reused",
                            i.id
                        )
                    })
                })?;
            sqlx::query(
                "INSERT INTO instances (id, tenant_id, name, revision, policy_version, \
                 reference_values, trust_anchors, settings, ca_certificate_pem, ca_key_sealed, \
                 created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .bind(&i.id)
            .bind(&i.tenant_id)
            .bind(&i.name)
            .bind(i.revision)
            .bind(i.policy_version)
            .bind(&i.reference_values)
            .bind(&i.trust_anchors)
            .bind(&i.settings)
            .bind(&i.ca_certificate_pem)
            .bind(&i.ca_key_sealed)
            .bind(i.created_at)
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                constraint(
                    e,
                    || format!("tenant {} already has an instance named {}", i.tenant_id, i.name),
                    || format!("there is no tenant {}", i.tenant_id),
                )
            })?;
            for v in versions {
                sqlx::query(
                    "INSERT INTO policy_versions (instance_id, version, rego, builtin, \
                     created_at) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&v.instance_id)
                .bind(v.version)
                .bind(&v.rego)
                .bind(&v.builtin)
                .bind(v.created_at)
                .execute(&mut *tx)
                .await
                .map_err(|e| {
                    conflict(e, || format!("policy version {} is given twice", v.version))
                })?;
            }
            for k in keys {
                insert_key!(&mut *tx, k)?;
            }
        });
        Ok(())
    }

    // --- nonces ----------------------------------------------------------------------------

    /// Records an issued challenge nonce, keeping at most `max_live` (at least 1) of the
    /// instance's: the ones that expire first go (an index on (instance_id, expires_at) keeps
    /// this a short range scan). On PostgreSQL one statement does both; on SQLite, which has no
    /// data-modifying `WITH`, the writer task inserts and trims, in the transaction it commits
    /// for every write queued with this one.
    pub async fn insert_nonce(
        &self,
        nonce: &str,
        instance_id: &str,
        expires_at: i64,
        max_live: i64,
    ) -> Result<(), StoreError> {
        match &self.pool {
            Pool::Postgres(p, _) => {
                // The trim sees the nonces from before the insert: it keeps `max_live - 1`.
                sqlx::query(
                    "WITH trimmed AS (DELETE FROM nonces WHERE nonce IN (SELECT nonce FROM nonces \
                     WHERE instance_id = $2 ORDER BY expires_at DESC, nonce DESC \
                     LIMIT 1000000000 OFFSET $4)) \
                     INSERT INTO nonces (nonce, instance_id, expires_at) VALUES ($1, $2, $3)",
                )
                .bind(nonce)
                .bind(instance_id)
                .bind(expires_at)
                .bind(max_live.max(1) - 1)
                .execute(p)
                .await
                .map_err(|e| nonce_refused(e, nonce, instance_id))?;
                Ok(())
            }
            Pool::Sqlite(_, queue) => {
                let (done, answer) = oneshot::channel();
                let insert = writer::NonceInsert {
                    nonce: nonce.to_owned(),
                    instance_id: instance_id.to_owned(),
                    expires_at,
                    max_live,
                    done,
                };
                writer::sqlite_write(queue, writer::SqliteWrite::InsertNonce(insert), answer).await
            }
        }
    }

    /// Removes the nonce of this instance and returns its expiry; `None` when it is unknown or
    /// already used. A single `DELETE … RETURNING`, so of many concurrent callers on any replica
    /// exactly one gets `Some`. The caller checks the expiry.
    pub async fn consume_nonce(
        &self,
        nonce: &str,
        instance_id: &str,
    ) -> Result<Option<i64>, StoreError> {
        Ok(self.consume_nonce_for_attestation(nonce, instance_id).await?.map(|c| c.expires_at))
    }

    /// [`Store::consume_nonce`], reading in the same statement (one round trip) what the
    /// attestation needs next: the instance's revision and the latest audit checkpoint. The
    /// same `DELETE … RETURNING`: of many concurrent callers exactly one gets `Some`. On SQLite
    /// the writer task runs it, in the transaction it commits for every write queued with it.
    pub async fn consume_nonce_for_attestation(
        &self,
        nonce: &str,
        instance_id: &str,
    ) -> Result<Option<ConsumedNonce>, StoreError> {
        match &self.pool {
            Pool::Postgres(p, _) => {
                let row = sqlx::query_as(CONSUME_NONCE)
                    .bind(nonce)
                    .bind(instance_id)
                    .fetch_optional(p)
                    .await
                    .map_err(db)?;
                consumed(row, instance_id)
            }
            Pool::Sqlite(_, queue) => {
                let (done, answer) = oneshot::channel();
                let consume = writer::NonceConsume {
                    nonce: nonce.to_owned(),
                    instance_id: instance_id.to_owned(),
                    done,
                };
                writer::sqlite_write(queue, writer::SqliteWrite::ConsumeNonce(consume), answer)
                    .await
            }
        }
    }

    /// The expiry of an outstanding nonce of this instance, without using it up.
    pub async fn nonce_expiry(
        &self,
        nonce: &str,
        instance_id: &str,
    ) -> Result<Option<i64>, StoreError> {
        with_pool!(self, |p| {
            sqlx::query_scalar::<_, i64>(
                "SELECT expires_at FROM nonces WHERE nonce = $1 AND instance_id = $2",
            )
            .bind(nonce)
            .bind(instance_id)
            .fetch_optional(p)
            .await
            .map_err(db)
        })
    }

    /// Deletes the nonces that expired before `now` (a nonce is good up to and including its
    /// `expires_at`); returns how many.
    pub async fn purge_nonces(&self, now: i64) -> Result<u64, StoreError> {
        let purged = with_pool!(self, |p| {
            sqlx::query("DELETE FROM nonces WHERE expires_at < $1")
                .bind(now)
                .execute(p)
                .await
                .map_err(db)?
                .rows_affected()
        });
        Ok(purged)
    }

    /// How many nonces of this instance are outstanding (expired ones included until purged).
    pub async fn count_nonces(&self, instance_id: &str) -> Result<i64, StoreError> {
        with_pool!(self, |p| {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM nonces WHERE instance_id = $1")
                .bind(instance_id)
                .fetch_one(p)
                .await
                .map_err(db)
        })
    }

    // --- key-broker keys -------------------------------------------------------------------

    /// Adds a broker key. [`StoreError::Conflict`] when the tenant already has a key of that
    /// name (or the id or key id is taken); [`StoreError::NotFound`] when the tenant is missing.
    pub async fn create_broker_key(&self, k: &BrokerKeyRow) -> Result<(), StoreError> {
        let inserted = with_pool!(self, |p| {
            sqlx::query(
                "INSERT INTO broker_keys (id, tenant_id, name, key_id, public_key, secret_sealed, \
                 release_policy, instances, created_at, revoked_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(&k.id)
            .bind(&k.tenant_id)
            .bind(&k.name)
            .bind(&k.key_id)
            .bind(&k.public_key)
            .bind(&k.secret_sealed)
            .bind(&k.release_policy)
            .bind(&k.instances)
            .bind(k.created_at)
            .bind(k.revoked_at)
            .execute(p)
            .await
            .map(|_| ())
        });
        let Err(e) = inserted else { return Ok(()) };
        let is_unique = matches!(&e, sqlx::Error::Database(d) if d.is_unique_violation());
        let message = if !is_unique {
            String::new()
        } else if self.broker_key(&k.id).await?.is_some() {
            format!("a broker key with id {} already exists", k.id)
        } else if self.broker_key_by_key_id(&k.key_id).await?.is_some() {
            format!("a broker key with key id {} already exists", k.key_id)
        } else {
            format!("tenant {} already has a broker key named {}", k.tenant_id, k.name)
        };
        Err(constraint(e, || message, || format!("there is no tenant {}", k.tenant_id)))
    }

    /// One broker key by its `kb_…` id.
    pub async fn broker_key(&self, id: &str) -> Result<Option<BrokerKeyRow>, StoreError> {
        with_pool!(self, |p| {
            sqlx::query_as::<_, BrokerKeyRow>(
                "SELECT id, tenant_id, name, key_id, public_key, secret_sealed, release_policy, \
                 instances, created_at, revoked_at FROM broker_keys WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(p)
            .await
            .map_err(db)
        })
    }

    /// One broker key by the hex of its envelope key id (what a kind-2 recipient names).
    pub async fn broker_key_by_key_id(
        &self,
        key_id_hex: &str,
    ) -> Result<Option<BrokerKeyRow>, StoreError> {
        with_pool!(self, |p| {
            sqlx::query_as::<_, BrokerKeyRow>(
                "SELECT id, tenant_id, name, key_id, public_key, secret_sealed, release_policy, \
                 instances, created_at, revoked_at FROM broker_keys WHERE key_id = $1",
            )
            .bind(key_id_hex)
            .fetch_optional(p)
            .await
            .map_err(db)
        })
    }

    /// The broker keys of a tenant, oldest first.
    pub async fn broker_keys(&self, tenant_id: &str) -> Result<Vec<BrokerKeyRow>, StoreError> {
        with_pool!(self, |p| {
            sqlx::query_as::<_, BrokerKeyRow>(
                "SELECT id, tenant_id, name, key_id, public_key, secret_sealed, release_policy, \
                 instances, created_at, revoked_at FROM broker_keys WHERE tenant_id = $1 \
                 ORDER BY created_at, id",
            )
            .bind(tenant_id)
            .fetch_all(p)
            .await
            .map_err(db)
        })
    }

    /// Marks a broker key revoked at `now`; revoking it again keeps the first time.
    pub async fn revoke_broker_key(&self, id: &str, now: i64) -> Result<(), StoreError> {
        let updated = with_pool!(self, |p| {
            sqlx::query(
                "UPDATE broker_keys SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1",
            )
            .bind(id)
            .bind(now)
            .execute(p)
            .await
            .map_err(db)?
            .rows_affected()
        });
        found(updated, || format!("there is no broker key {id}"))
    }

    /// Deletes a broker key; [`StoreError::NotFound`] if there is none.
    pub async fn delete_broker_key(&self, id: &str) -> Result<(), StoreError> {
        let deleted = with_pool!(self, |p| {
            sqlx::query("DELETE FROM broker_keys WHERE id = $1")
                .bind(id)
                .execute(p)
                .await
                .map_err(db)?
                .rows_affected()
        });
        found(deleted, || format!("there is no broker key {id}"))
    }

    // --- audit log -------------------------------------------------------------------------

    /// Appends an audit entry, serialised across connections and replicas: `make` gets the
    /// current last entry (`None` for an empty log) and returns the row to insert, whose `seq`
    /// must be `last.seq + 1` (or 1). Returns the inserted row.
    pub async fn append_audit<F>(&self, make: F) -> Result<AuditRow, StoreError>
    where
        F: FnOnce(Option<&AuditRow>) -> AuditRow + Send,
    {
        let rows = self.append_audit_batch(vec![make], |last, make| make(last)).await?;
        rows.into_iter()
            .next()
            .ok_or_else(|| StoreError::Invalid("an append of one entry wrote none".to_owned()))
    }

    /// Appends one audit entry per item, in order, in **one** transaction (group commit: one
    /// lock, one read of the chain head, one multi-row insert, one commit), serialised across
    /// connections and replicas like [`Store::append_audit`]. `make` is called for each item
    /// with the entry before it (the current last entry for the first item, then the row it
    /// made for the previous item) and returns the row to insert, whose `seq` must follow that
    /// entry's. Either every row is committed or none is; returns the rows in item order.
    /// At most [`MAX_AUDIT_BATCH`] items.
    pub async fn append_audit_batch<T, F>(
        &self,
        items: Vec<T>,
        make: F,
    ) -> Result<Vec<AuditRow>, StoreError>
    where
        T: Send,
        F: FnMut(Option<&AuditRow>, T) -> AuditRow + Send,
    {
        if items.len() > MAX_AUDIT_BATCH {
            return Err(StoreError::Invalid(format!(
                "{} audit entries in one append; at most {MAX_AUDIT_BATCH}",
                items.len()
            )));
        }
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let lock = self.backend() == Backend::Postgres;
        let rows = in_write_tx!(self, |tx| append_rows!(tx, lock, items, make));
        Ok(rows)
    }

    /// Appends `event` at time `at` (the row [`audit::next_row`] makes on the current last
    /// entry) and returns its entry once its transaction has committed. Concurrent appends are
    /// group-committed: they queue up for this store's writer task, which appends everything
    /// queued in one transaction (see [`Store::append_audit_batch`]; on SQLite together with
    /// the queued nonce writes).
    pub async fn append_audit_event(
        &self,
        event: AuditEvent,
        at: i64,
    ) -> Result<AuditRow, StoreError> {
        match &self.pool {
            Pool::Sqlite(_, queue) => writer::append_sqlite(queue, event, at).await,
            Pool::Postgres(_, queue) => writer::append_postgres(queue, event, at).await,
        }
    }

    /// Registers a data set to its owner, unless it is registered already; returns the
    /// registration in force (the existing one when the digest was registered before, whoever
    /// by: the caller compares owners).
    pub async fn register_dataset(&self, row: &DatasetRow) -> Result<DatasetRow, StoreError> {
        let registered = in_write_tx!(self, |tx| {
            sqlx::query(
                "INSERT INTO datasets (sha256, owner, object_id, registered_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (sha256) DO NOTHING",
            )
            .bind(&row.sha256)
            .bind(&row.owner)
            .bind(&row.object_id)
            .bind(row.registered_at)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            sqlx::query_as::<_, DatasetRow>(
                "SELECT sha256, owner, object_id, registered_at FROM datasets WHERE sha256 = $1",
            )
            .bind(&row.sha256)
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?
        });
        Ok(registered)
    }

    /// Records that `row.owner` revoked its grants for job `row.job_digest`; returns the
    /// revocation in force (the first one, when it was revoked before) and whether it is new.
    pub async fn revoke_grant(
        &self,
        row: &RevokedGrantRow,
    ) -> Result<(RevokedGrantRow, bool), StoreError> {
        let revoked = in_write_tx!(self, |tx| {
            let inserted = sqlx::query(
                "INSERT INTO revoked_grants (owner, job_digest, revoked_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (owner, job_digest) DO NOTHING",
            )
            .bind(&row.owner)
            .bind(&row.job_digest)
            .bind(row.revoked_at)
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected()
                == 1;
            let row = sqlx::query_as::<_, RevokedGrantRow>(
                "SELECT owner, job_digest, revoked_at FROM revoked_grants \
                 WHERE owner = $1 AND job_digest = $2",
            )
            .bind(&row.owner)
            .bind(&row.job_digest)
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
            (row, inserted)
        });
        Ok(revoked)
    }

    /// Spends `id` (a request nonce or a statement's digest, prefixed by what it is) within
    /// `scope` (a broker key, an instance), kept until `keep_until` (past the expiry of what
    /// carried it), forgetting those whose time is up: [`StoreError::Conflict`] when it was
    /// spent before. Kept with the reservation ids (the same lifetime rule; ids there are
    /// hexadecimal, so a prefixed id never meets one), in the database so that every replica
    /// of the service accepts each once between them.
    pub async fn spend_once(
        &self,
        scope: &str,
        id: &str,
        keep_until: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        in_write_tx!(self, |tx| {
            spend_reservation_id!(tx, scope, (id, keep_until), now);
        });
        Ok(())
    }

    /// Reserves up to `tokens` of `quota` on the meter (`instance_id`, `model_owner`, `model`,
    /// `requester`): grants what was asked, or what is left, and returns (granted, the meter's
    /// total after the grant). Concurrent reservations on one meter never grant past `quota`:
    /// the meter's row is locked (Postgres) or the database is (SQLite) until the grant is
    /// written.
    #[allow(clippy::too_many_arguments)]
    pub async fn reserve_usage(
        &self,
        instance_id: &str,
        model_owner: &str,
        model: &str,
        requester: &str,
        tokens: i64,
        quota: i64,
        statement: (&str, i64),
        now: i64,
    ) -> Result<(i64, i64), StoreError> {
        let reserved = in_write_tx!(self, |tx| {
            spend_reservation_id!(tx, instance_id, statement, now);
            sqlx::query(
                "INSERT INTO usage_reservations (instance_id, model_owner, model, requester, \
                 reserved, updated_at) VALUES ($1, $2, $3, $4, 0, $5) \
                 ON CONFLICT (instance_id, model_owner, model, requester) DO NOTHING",
            )
            .bind(instance_id)
            .bind(model_owner)
            .bind(model)
            .bind(requester)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            // A write first: on Postgres it locks the row for the rest of the transaction.
            let before = sqlx::query_scalar::<_, i64>(
                "UPDATE usage_reservations SET updated_at = $5 WHERE instance_id = $1 AND \
                 model_owner = $2 AND model = $3 AND requester = $4 RETURNING reserved",
            )
            .bind(instance_id)
            .bind(model_owner)
            .bind(model)
            .bind(requester)
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
            let granted = tokens.min(quota.saturating_sub(before)).max(0);
            sqlx::query(
                "UPDATE usage_reservations SET reserved = $5 WHERE instance_id = $1 AND \
                 model_owner = $2 AND model = $3 AND requester = $4",
            )
            .bind(instance_id)
            .bind(model_owner)
            .bind(model)
            .bind(requester)
            .bind(before + granted)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            (granted, before + granted)
        });
        Ok(reserved)
    }

    /// Takes up to `requests` from the per-minute allowance of one requester of one model
    /// (a token bucket of capacity `per_minute`, refilled at `per_minute` a minute, full when
    /// first used) at `now` (unix seconds); returns how many were granted (0 when the bucket
    /// holds less than one). Atomic across replicas: the row is locked for the transaction.
    #[allow(clippy::too_many_arguments)]
    pub async fn reserve_requests(
        &self,
        instance_id: &str,
        model_owner: &str,
        model: &str,
        requester: &str,
        requests: u32,
        per_minute: u32,
        statement: (&str, i64),
        now: i64,
    ) -> Result<u32, StoreError> {
        let capacity = i64::from(per_minute) * 1000;
        let granted = in_write_tx!(self, |tx| {
            spend_reservation_id!(tx, instance_id, statement, now);
            sqlx::query(
                "INSERT INTO request_allowances (instance_id, model_owner, model, requester, \
                 available_milli, refilled_at) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (instance_id, model_owner, model, requester) DO NOTHING",
            )
            .bind(instance_id)
            .bind(model_owner)
            .bind(model)
            .bind(requester)
            .bind(capacity)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            // A write first: on Postgres it locks the row for the rest of the transaction.
            let (available, refilled_at) = sqlx::query_as::<_, (i64, i64)>(
                "UPDATE request_allowances SET refilled_at = refilled_at WHERE instance_id = $1 \
                 AND model_owner = $2 AND model = $3 AND requester = $4 \
                 RETURNING available_milli, refilled_at",
            )
            .bind(instance_id)
            .bind(model_owner)
            .bind(model)
            .bind(requester)
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
            let (available, refilled_at) =
                refill(available, refilled_at, capacity, per_minute, now);
            let granted =
                u32::try_from((available / 1000).max(0)).unwrap_or(u32::MAX).min(requests);
            sqlx::query(
                "UPDATE request_allowances SET available_milli = $5, refilled_at = $6 \
                 WHERE instance_id = $1 AND model_owner = $2 AND model = $3 AND requester = $4",
            )
            .bind(instance_id)
            .bind(model_owner)
            .bind(model)
            .bind(requester)
            .bind(available - i64::from(granted) * 1000)
            .bind(refilled_at)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            granted
        });
        Ok(granted)
    }

    /// When `owner` revoked its grants for job `job_digest` (lowercase hex), if it did.
    pub async fn grant_revoked_at(
        &self,
        owner: &str,
        job_digest: &str,
    ) -> Result<Option<i64>, StoreError> {
        with_pool!(self, |p| {
            sqlx::query_scalar::<_, i64>(
                "SELECT revoked_at FROM revoked_grants WHERE owner = $1 AND job_digest = $2",
            )
            .bind(owner)
            .bind(job_digest)
            .fetch_optional(p)
            .await
            .map_err(db)
        })
    }

    /// The registration of the data set with ciphertext digest `sha256` (lowercase hex).
    pub async fn dataset(&self, sha256: &str) -> Result<Option<DatasetRow>, StoreError> {
        with_pool!(self, |p| {
            sqlx::query_as::<_, DatasetRow>(
                "SELECT sha256, owner, object_id, registered_at FROM datasets WHERE sha256 = $1",
            )
            .bind(sha256)
            .fetch_optional(p)
            .await
            .map_err(db)
        })
    }

    /// The data sets registered to `owner`, oldest first.
    pub async fn datasets_of(&self, owner: &str) -> Result<Vec<DatasetRow>, StoreError> {
        with_pool!(self, |p| {
            sqlx::query_as::<_, DatasetRow>(
                "SELECT sha256, owner, object_id, registered_at FROM datasets WHERE owner = $1 \
                 ORDER BY registered_at, sha256",
            )
            .bind(owner)
            .fetch_all(p)
            .await
            .map_err(db)
        })
    }

    /// The privacy charges on the data set with digest `sha256`, oldest first.
    pub async fn charges_on(&self, sha256: &str) -> Result<Vec<ChargeRow>, StoreError> {
        with_pool!(self, |p| {
            sqlx::query_as::<_, ChargeRow>(
                "SELECT job_id, job_digest, instance_id, charged_at, account_json, budget_json \
                 FROM privacy_charges WHERE object_sha256 = $1 ORDER BY id",
            )
            .bind(sha256)
            .fetch_all(p)
            .await
            .map_err(db)
        })
    }

    /// Charges a training job's privacy to its data sets in one write transaction, once per
    /// (data set, job): every charge's account is computed from the earlier charges on the same
    /// data set ([`PrivacyCharge::account`]), and all are recorded, or none when a budget
    /// refuses one. A charge already made for this job and data set is not made again: the
    /// first outcome comes back ([`Charged::Replayed`]) with the enclave that made it. The
    /// caller checks the owners' grants and registrations first.
    pub async fn charge_privacy(
        &self,
        job: &ChargeJob<'_>,
        charges: &[PrivacyCharge],
        now: i64,
    ) -> Result<Charged, StoreError> {
        let backend = self.backend();
        let outcome = in_write_tx!(self, |tx| {
            if backend == Backend::Postgres {
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(PRIVACY_LOCK_KEY)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
            }
            let mut accounts = Vec::with_capacity(charges.len());
            let mut refusal = None;
            let mut replayed_by = Vec::new();
            for charge in charges {
                let rows: Vec<(i64, String, Option<String>, String, String)> = sqlx::query_as(
                    "SELECT id, job_id, rdp_json, job_digest, charged_by FROM privacy_charges \
                     WHERE object_sha256 = $1 ORDER BY id",
                )
                .bind(charge.input.sha256.to_string())
                .fetch_all(&mut *tx)
                .await
                .map_err(db)?;
                let first = rows.iter().position(|(_, job_id, ..)| job_id == job.job_id);
                let (earlier, this) = match first {
                    Some(at) => (&rows[..at], Some(&rows[at])),
                    None => (&rows[..], None),
                };
                let earlier = earlier
                    .iter()
                    .map(|(_, job_id, rdp, ..)| Ok((job_id.clone(), parse_rdp(rdp.as_deref())?)))
                    .collect::<Result<Vec<_>, StoreError>>()?;
                let account = match this {
                    // A replay: the first outcome, computed from what was stored then.
                    Some((_, _, rdp, digest, charged_by)) => {
                        if digest != job.job_digest {
                            refusal = Some((
                                charge.input.object_id.clone(),
                                format!(
                                    "job id {} was already charged on this data set for another \
                                     job (digest {digest}); a job id is charged once",
                                    job.job_id
                                ),
                            ));
                            break;
                        }
                        replayed_by.push(charged_by.clone());
                        let stored =
                            PrivacyCharge { rdp: parse_rdp(rdp.as_deref())?, ..charge.clone() };
                        stored.account(&earlier)
                    }
                    None => charge.account(&earlier),
                };
                match account {
                    Ok(account) => accounts.push(account),
                    Err(reason) => {
                        refusal = Some((charge.input.object_id.clone(), reason));
                        break;
                    }
                }
            }
            if let Some((object_id, reason)) = refusal {
                Charged::Refused { object_id, reason }
            } else if !replayed_by.is_empty() {
                // Every data set of a replayed job was charged by the same first request.
                if replayed_by.len() != charges.len()
                    || replayed_by.iter().any(|by| *by != replayed_by[0])
                {
                    Charged::Refused {
                        object_id: charges[0].input.object_id.clone(),
                        reason: format!(
                            "job {} was charged before on some of its data sets and not others; \
                             a job is charged once, on all its data sets together",
                            job.job_id
                        ),
                    }
                } else {
                    Charged::Replayed { accounts, charged_by: replayed_by.swap_remove(0) }
                }
            } else {
                for (charge, account) in charges.iter().zip(&accounts) {
                    let rdp = charge.rdp.as_ref().map(to_json).transpose()?;
                    let account = to_json(account)?;
                    let budget = charge.budget.as_ref().map(to_json).transpose()?;
                    sqlx::query(
                        "INSERT INTO privacy_charges (object_sha256, object_id, owner, job_id, \
                         instance_id, rdp_json, charged_at, job_digest, charged_by, \
                         account_json, budget_json) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                    )
                    .bind(charge.input.sha256.to_string())
                    .bind(&charge.input.object_id)
                    .bind(&charge.input.owner)
                    .bind(job.job_id)
                    .bind(job.instance_id)
                    .bind(rdp)
                    .bind(now)
                    .bind(job.job_digest)
                    .bind(job.charged_by)
                    .bind(account)
                    .bind(budget)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                }
                Charged::New(accounts)
            }
        });
        Ok(outcome)
    }

    /// The audit entries of one tenant, or all with `None`, by seq.
    pub async fn audit_rows(&self, tenant_id: Option<&str>) -> Result<Vec<AuditRow>, StoreError> {
        with_pool!(self, |p| {
            sqlx::query_as::<_, AuditRow>(
                "SELECT seq, at, kind, actor, tenant_id, subject, outcome, detail, prev_hash, hash \
                 FROM audit_log WHERE ($1 IS NULL OR tenant_id = $1) ORDER BY seq",
            )
            .bind(tenant_id)
            .fetch_all(p)
            .await
            .map_err(db)
        })
    }

    /// One page of audit entries, by seq: those of one tenant (all with `None`) that match
    /// `query`'s filters, after its `after` seq, at most its page size.
    pub async fn audit_page(
        &self,
        tenant_id: Option<&str>,
        query: &cloister_types::manage::AuditQuery,
    ) -> Result<Vec<AuditRow>, StoreError> {
        let limit = query.page_size().map_or(i64::MAX, i64::from);
        with_pool!(self, |p| {
            sqlx::query_as::<_, AuditRow>(
                "SELECT seq, at, kind, actor, tenant_id, subject, outcome, detail, prev_hash, hash \
                 FROM audit_log WHERE ($1 IS NULL OR tenant_id = $1) AND ($2 IS NULL OR kind = $2) \
                 AND ($3 IS NULL OR subject = $3) AND ($4 IS NULL OR at >= $4) \
                 AND ($5 IS NULL OR at <= $5) AND seq > $6 ORDER BY seq LIMIT $7",
            )
            .bind(tenant_id)
            .bind(query.kind.as_deref())
            .bind(query.subject.as_deref())
            .bind(query.since)
            .bind(query.until)
            .bind(query.after.unwrap_or(0))
            .bind(limit)
            .fetch_all(p)
            .await
            .map_err(db)
        })
    }

    /// The newest `limit` audit entries of `kind` whose detail mentions `text` anywhere, newest
    /// first: a coarse filter (LIKE's wildcards in `text` only widen it) the caller refines.
    pub async fn audit_mentioning(
        &self,
        kind: &str,
        text: &str,
        limit: i64,
    ) -> Result<Vec<AuditRow>, StoreError> {
        with_pool!(self, |p| {
            sqlx::query_as::<_, AuditRow>(
                "SELECT seq, at, kind, actor, tenant_id, subject, outcome, detail, prev_hash, hash \
                 FROM audit_log WHERE kind = $1 AND detail LIKE $2 ORDER BY seq DESC LIMIT $3",
            )
            .bind(kind)
            .bind(format!("%{text}%"))
            .bind(limit)
            .fetch_all(p)
            .await
            .map_err(db)
        })
    }

    /// The audit entries with `after < seq <= through`, by seq.
    pub async fn audit_rows_between(
        &self,
        after: i64,
        through: i64,
    ) -> Result<Vec<AuditRow>, StoreError> {
        with_pool!(self, |p| {
            sqlx::query_as::<_, AuditRow>(
                "SELECT seq, at, kind, actor, tenant_id, subject, outcome, detail, prev_hash, hash \
                 FROM audit_log WHERE seq > $1 AND seq <= $2 ORDER BY seq",
            )
            .bind(after)
            .bind(through)
            .fetch_all(p)
            .await
            .map_err(db)
        })
    }

    /// The checkpoint at entry `seq`, if there is one.
    pub async fn checkpoint_at(&self, seq: i64) -> Result<Option<CheckpointRow>, StoreError> {
        with_pool!(self, |p| {
            sqlx::query_as::<_, CheckpointRow>(
                "SELECT seq, at, hash, signature FROM audit_checkpoints WHERE seq = $1",
            )
            .bind(seq)
            .fetch_optional(p)
            .await
            .map_err(db)
        })
    }

    /// The last audit entry.
    pub async fn audit_last(&self) -> Result<Option<AuditRow>, StoreError> {
        with_pool!(self, |p| {
            sqlx::query_as::<_, AuditRow>(
                "SELECT seq, at, kind, actor, tenant_id, subject, outcome, detail, prev_hash, hash \
                 FROM audit_log ORDER BY seq DESC LIMIT 1",
            )
            .fetch_optional(p)
            .await
            .map_err(db)
        })
    }

    /// Records a signed checkpoint; [`StoreError::Conflict`] if one exists at that seq.
    pub async fn add_checkpoint(&self, c: &CheckpointRow) -> Result<(), StoreError> {
        with_pool!(self, |p| {
            sqlx::query(
                "INSERT INTO audit_checkpoints (seq, at, hash, signature) VALUES ($1, $2, $3, $4)",
            )
            .bind(c.seq)
            .bind(c.at)
            .bind(&c.hash)
            .bind(&c.signature)
            .execute(p)
            .await
            .map(|_| ())
        })
        .map_err(|e| {
            conflict(e, || format!("there is already an audit checkpoint at seq {}", c.seq))
        })?;
        Ok(())
    }

    /// The checkpoint with the highest seq.
    pub async fn last_checkpoint(&self) -> Result<Option<CheckpointRow>, StoreError> {
        with_pool!(self, |p| {
            sqlx::query_as::<_, CheckpointRow>(
                "SELECT seq, at, hash, signature FROM audit_checkpoints ORDER BY seq DESC LIMIT 1",
            )
            .fetch_optional(p)
            .await
            .map_err(db)
        })
    }

    /// Every checkpoint, by seq.
    pub async fn checkpoints(&self) -> Result<Vec<CheckpointRow>, StoreError> {
        with_pool!(self, |p| {
            sqlx::query_as::<_, CheckpointRow>(
                "SELECT seq, at, hash, signature FROM audit_checkpoints ORDER BY seq",
            )
            .fetch_all(p)
            .await
            .map_err(db)
        })
    }
}

/// [`StoreError::NotFound`] with `message` when an UPDATE or DELETE touched no row.
fn found(rows_affected: u64, message: impl FnOnce() -> String) -> Result<(), StoreError> {
    if rows_affected == 0 { Err(StoreError::NotFound(message())) } else { Ok(()) }
}

/// [`StoreError::Invalid`] unless a row given for `instance_id` names that instance.
fn same_instance(instance_id: &str, what: &str, row_instance_id: &str) -> Result<(), StoreError> {
    if row_instance_id == instance_id {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "{what} belongs to instance {row_instance_id}, not {instance_id}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::{redact, refill};

    #[test]
    fn a_request_bucket_refills_at_its_rate_up_to_its_capacity() {
        // 2 a minute: empty at 100, one request's worth 30 s later, never more than 2.
        assert_eq!(refill(0, 100, 2000, 2, 100), (0, 100));
        assert_eq!(refill(0, 100, 2000, 2, 130), (1000, 130));
        assert_eq!(refill(0, 100, 2000, 2, 10_000), (2000, 10_000));
        // A clock that went back refills nothing and keeps the later time.
        assert_eq!(refill(500, 100, 2000, 2, 40), (500, 100));
        // A lowered rate caps what is there.
        assert_eq!(refill(60_000, 100, 2000, 2, 100), (2000, 100));
        // Fractions are lost, never granted: 1 s at 2 a minute is 33 thousandths.
        assert_eq!(refill(0, 0, 2000, 2, 1), (33, 1));
        assert_eq!(refill(0, 0, i64::MAX, u32::MAX, i64::MAX), (i64::MAX / 60, i64::MAX));
    }

    #[test]
    fn redact_drops_passwords_and_keeps_the_rest() {
        assert_eq!(
            redact("postgres://svc:p%40ss@db.internal:5432/cloister?sslmode=require"),
            "postgres://svc@db.internal:5432/cloister?sslmode=require"
        );
        assert_eq!(
            redact("postgresql://db/cloister?user=svc&password=hunter2&sslmode=verify-full"),
            "postgresql://db/cloister?user=svc&password=…&sslmode=verify-full"
        );
        assert_eq!(redact("postgres://svc@db/x"), "postgres://svc@db/x");
        assert_eq!(redact("postgres://u:secret@h:5432/db"), "postgres://u@h:5432/db");
        assert_eq!(redact("sqlite:///tmp/x.db"), "sqlite:///tmp/x.db");
        assert_eq!(redact("postgres://a:b@c:d@host"), "postgres://a@host");
        assert_eq!(redact("postgres://a:pa/ss@host/db"), "postgres://a@host/db");
        assert_eq!(
            redact("sqlite:///var/lib/cloister/db.sqlite"),
            "sqlite:///var/lib/cloister/db.sqlite"
        );
        assert_eq!(redact("sqlite::memory:"), "sqlite::memory:");
        assert_eq!(redact("sqlite:///srv/a:b@c.db"), "sqlite:///srv/a:b@c.db");
    }
}
