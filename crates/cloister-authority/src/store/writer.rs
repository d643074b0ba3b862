//! Group commit: concurrent writes queue up for one writer task per [`Store`], which writes
//! everything queued in one transaction and then answers each caller.
//!
//! A transaction costs the same round trips (and, on SQLite with `synchronous=FULL`, the same
//! `fsync`) whether it writes one row or sixty-four, so under load the writer commits together
//! what arrived while the previous transaction was in flight:
//!
//! - **Audit appends, on both backends**: one lock, one read of the chain head, one multi-row
//!   insert, one commit. The chain is built exactly as by single appends (each row on the one
//!   before it, in queue order), and the lock still orders the replicas' transactions.
//! - **Nonce inserts and consumptions, on SQLite**, in the same transaction as the audit rows
//!   queued with them: SQLite has one writer at a time anyway, and every commit waits for the
//!   disk. A consumption is still one `DELETE … RETURNING`, so a nonce is consumed once, by
//!   one caller, however the requests are batched. A constraint violation (a nonce issued twice,
//!   an instance that is gone) fails that write alone: SQLite undoes the statement and the
//!   transaction goes on. PostgreSQL runs these writes directly: its commits are cheap, and an
//!   error there would abort the whole batch.
//!
//! A caller is answered only once the transaction holding its write has committed; when the
//! transaction fails, every caller of the batch gets the error and none of its writes is in the
//! database. A caller that goes away does not cancel the write: the writer task owns it.

use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;
use tokio::sync::{mpsc, oneshot};

use super::{AuditRow, ConsumedNonce, MAX_AUDIT_BATCH, StoreError, db};
use crate::audit::{self, AuditEvent};

/// How many writes may wait for the writer before callers wait to queue.
const QUEUE_CAPACITY: usize = 4096;

/// An audit append waiting for its transaction.
pub(super) struct AuditAppend {
    pub(super) event: AuditEvent,
    pub(super) at: i64,
    pub(super) done: oneshot::Sender<Result<AuditRow, StoreError>>,
}

/// A nonce to record (see [`super::Store::insert_nonce`]).
pub(super) struct NonceInsert {
    pub(super) nonce: String,
    pub(super) instance_id: String,
    pub(super) expires_at: i64,
    pub(super) max_live: i64,
    pub(super) done: oneshot::Sender<Result<(), StoreError>>,
}

/// A nonce to consume (see [`super::Store::consume_nonce_for_attestation`]).
pub(super) struct NonceConsume {
    pub(super) nonce: String,
    pub(super) instance_id: String,
    pub(super) done: oneshot::Sender<Result<Option<ConsumedNonce>, StoreError>>,
}

/// A write queued for the SQLite writer.
pub(super) enum SqliteWrite {
    Audit(AuditAppend),
    InsertNonce(NonceInsert),
    ConsumeNonce(NonceConsume),
}

/// Starts the SQLite writer task on the current Tokio runtime; returns its queue. The task ends
/// when every clone of the queue is dropped.
pub(super) fn start_sqlite(pool: SqlitePool) -> mpsc::Sender<SqliteWrite> {
    let (queue, pending) = mpsc::channel(QUEUE_CAPACITY);
    tokio::spawn(write_sqlite(pool, pending));
    queue
}

/// Starts the PostgreSQL writer task on the current Tokio runtime; returns its queue.
pub(super) fn start_postgres(pool: PgPool) -> mpsc::Sender<AuditAppend> {
    let (queue, pending) = mpsc::channel(QUEUE_CAPACITY);
    tokio::spawn(write_postgres(pool, pending));
    queue
}

/// Appends `event` at `at` through the SQLite writer; its entry, once committed.
pub(super) async fn append_sqlite(
    queue: &mpsc::Sender<SqliteWrite>,
    event: AuditEvent,
    at: i64,
) -> Result<AuditRow, StoreError> {
    let (done, answer) = oneshot::channel();
    sqlite_write(queue, SqliteWrite::Audit(AuditAppend { event, at, done }), answer).await
}

/// Appends `event` at `at` through the PostgreSQL writer; its entry, once committed.
pub(super) async fn append_postgres(
    queue: &mpsc::Sender<AuditAppend>,
    event: AuditEvent,
    at: i64,
) -> Result<AuditRow, StoreError> {
    let (done, answer) = oneshot::channel();
    queue.send(AuditAppend { event, at, done }).await.map_err(|_| stopped())?;
    answer.await.map_err(|_| stopped())?
}

/// Queues `write` on the SQLite writer and waits for its answer.
pub(super) async fn sqlite_write<T>(
    queue: &mpsc::Sender<SqliteWrite>,
    write: SqliteWrite,
    answer: oneshot::Receiver<Result<T, StoreError>>,
) -> Result<T, StoreError> {
    queue.send(write).await.map_err(|_| stopped())?;
    answer.await.map_err(|_| stopped())?
}

/// The writer stopped (its runtime is shutting down): the write was not made.
fn stopped() -> StoreError {
    StoreError::Database("the database writer stopped; the write was not made".to_owned())
}

/// The row of a queued append: [`audit::next_row`] on the entry before it.
fn next_row(last: Option<&AuditRow>, (event, at): (&AuditEvent, i64)) -> AuditRow {
    audit::next_row(last, event, at)
}

/// Takes everything queued (up to [`MAX_AUDIT_BATCH`]), appends it in one transaction, answers
/// each caller, and repeats until the queue's senders are gone.
async fn write_postgres(pool: PgPool, mut queue: mpsc::Receiver<AuditAppend>) {
    let mut batch = Vec::with_capacity(MAX_AUDIT_BATCH);
    while queue.recv_many(&mut batch, MAX_AUDIT_BATCH).await > 0 {
        let written: Result<Vec<AuditRow>, StoreError> = async {
            let mut tx = pool.begin().await.map_err(db)?;
            let items = batch.iter().map(|a| (&a.event, a.at));
            let rows = append_rows!(tx, true, items, next_row);
            tx.commit().await.map_err(db)?;
            Ok(rows)
        }
        .await;
        match written {
            // One row per append, in order; an append left without a row (never) gets `stopped`.
            Ok(rows) => {
                for (append, row) in batch.drain(..).zip(rows) {
                    // A caller that went away no longer needs its answer.
                    let _ = append.done.send(Ok(row));
                }
            }
            Err(error) => {
                for append in batch.drain(..) {
                    let _ = append.done.send(Err(error.clone()));
                }
            }
        }
        batch.clear();
    }
}

/// What one queued SQLite write came to, before the commit.
enum Written {
    Audit(AuditRow),
    Nonce,
    Consumed(Option<ConsumedNonce>),
}

/// Like [`write_postgres`], for every kind of [`SqliteWrite`].
async fn write_sqlite(pool: SqlitePool, mut queue: mpsc::Receiver<SqliteWrite>) {
    let mut batch = Vec::with_capacity(MAX_AUDIT_BATCH);
    while queue.recv_many(&mut batch, MAX_AUDIT_BATCH).await > 0 {
        match sqlite_turn(&pool, &batch).await {
            Ok(written) => {
                for (write, result) in batch.drain(..).zip(written) {
                    answer(write, result);
                }
            }
            Err(error) => {
                for write in batch.drain(..) {
                    answer(write, Err(error.clone()));
                }
            }
        }
        batch.clear();
    }
}

/// Makes `batch`'s writes in one transaction: each write's own result (a constraint violation
/// fails that write alone), or the error that failed the transaction.
async fn sqlite_turn(
    pool: &SqlitePool,
    batch: &[SqliteWrite],
) -> Result<Vec<Result<Written, StoreError>>, StoreError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
    let mut written = Vec::with_capacity(batch.len());
    for write in batch {
        let result = match write {
            // Appended together below.
            SqliteWrite::Audit(_) => Err(stopped()),
            SqliteWrite::InsertNonce(insert) => {
                let inserted = sqlx::query(
                    "INSERT INTO nonces (nonce, instance_id, expires_at) VALUES ($1, $2, $3)",
                )
                .bind(&insert.nonce)
                .bind(&insert.instance_id)
                .bind(insert.expires_at)
                .execute(&mut *tx)
                .await;
                match inserted {
                    Ok(_) => {
                        sqlx::query(super::TRIM_NONCES)
                            .bind(&insert.instance_id)
                            .bind(insert.max_live.max(1))
                            .execute(&mut *tx)
                            .await
                            .map_err(db)?;
                        Ok(Written::Nonce)
                    }
                    Err(e) => match super::nonce_refused(e, &insert.nonce, &insert.instance_id) {
                        refused @ (StoreError::Conflict(_) | StoreError::NotFound(_)) => {
                            Err(refused)
                        }
                        other => return Err(other),
                    },
                }
            }
            SqliteWrite::ConsumeNonce(consume) => {
                let row = sqlx::query_as(super::CONSUME_NONCE)
                    .bind(&consume.nonce)
                    .bind(&consume.instance_id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db)?;
                super::consumed(row, &consume.instance_id).map(Written::Consumed)
            }
        };
        written.push(result);
    }
    let audits: Vec<(usize, (&AuditEvent, i64))> = batch
        .iter()
        .enumerate()
        .filter_map(|(i, write)| match write {
            SqliteWrite::Audit(append) => Some((i, (&append.event, append.at))),
            _ => None,
        })
        .collect();
    if !audits.is_empty() {
        let positions: Vec<usize> = audits.iter().map(|(i, _)| *i).collect();
        let items = audits.into_iter().map(|(_, item)| item);
        let rows = append_rows!(tx, false, items, next_row);
        for (position, row) in positions.into_iter().zip(rows) {
            if let Some(slot) = written.get_mut(position) {
                *slot = Ok(Written::Audit(row));
            }
        }
    }
    tx.commit().await.map_err(db)?;
    Ok(written)
}

/// Sends `result` to the caller of `write`, in the type it waits for.
fn answer(write: SqliteWrite, result: Result<Written, StoreError>) {
    let mismatch = || StoreError::Database("the database writer mixed up two answers".to_owned());
    // A caller that went away no longer needs its answer.
    match write {
        SqliteWrite::Audit(append) => {
            let _ = append.done.send(match result {
                Ok(Written::Audit(row)) => Ok(row),
                Ok(_) => Err(mismatch()),
                Err(e) => Err(e),
            });
        }
        SqliteWrite::InsertNonce(insert) => {
            let _ = insert.done.send(match result {
                Ok(Written::Nonce) => Ok(()),
                Ok(_) => Err(mismatch()),
                Err(e) => Err(e),
            });
        }
        SqliteWrite::ConsumeNonce(consume) => {
            let _ = consume.done.send(match result {
                Ok(Written::Consumed(consumed)) => Ok(consumed),
                Ok(_) => Err(mismatch()),
                Err(e) => Err(e),
            });
        }
    }
}
