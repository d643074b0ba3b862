//! The durable queue of batch jobs: SQLite (WAL, `synchronous=FULL`) under the worker's data
//! directory. It holds ids, digests, counts, states, public keys, certificates and grant texts,
//! never plaintext; a chunk is marked done, with its object's digest, in one transaction.

use std::collections::{BTreeSet, HashSet};
use std::path::Path;
use std::str::FromStr as _;
use std::sync::Mutex;
use std::time::Duration;

use cloister_types::batch::{BatchChunk, BatchState};
use cloister_types::{Hex, JobSpec};
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::BatchError;

static MIGRATIONS: Migrator = sqlx::migrate!("./migrations");

/// How long a connection waits for another writer.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// A job as queued.
#[derive(Clone, Debug)]
pub struct JobRow {
    /// The job spec as submitted.
    pub spec: JobSpec,
    /// Its digest.
    pub job_digest: Hex,
    /// The owners' grants (compact JWS).
    pub grants: Vec<String>,
    /// Rows per chunk.
    pub chunk_rows: u64,
    /// Where it is.
    pub state: BatchState,
    /// Why it failed.
    pub reason: Option<String>,
    /// Rows in the data set, once a runner opened it.
    pub rows_total: Option<u64>,
    /// Chunks in the job, once a runner opened the data set.
    pub chunks_total: Option<u64>,
    /// Rows in the chunks marked done.
    pub rows_done: u64,
    /// When it was accepted (Unix seconds; as stored: trust [`JobRow::terms`] instead).
    pub submitted_at: i64,
    /// The accepting enclave's signed `BatchTerms` (compact JWS; empty for a job queued by an
    /// older worker).
    pub terms: String,
    /// The receipt, when done.
    pub receipt: Option<String>,
    /// The certificate chain (PEM) the receipt was signed under; from workers before renewal,
    /// the SHA-256 (hex) of the EAR of the job's enclave that signed it.
    pub receipt_signer: Option<String>,
}

/// An enclave that worked on a job.
#[derive(Clone, Debug)]
pub struct EnclaveRow {
    /// SHA-256 of its EAR token (hex).
    pub attestation_result_sha256: String,
    /// Its measurement (hex).
    pub measurement: String,
    /// Its receipt key (text form).
    pub receipt_pk: String,
    /// Its certificate chain (PEM, leaf first).
    pub certificate_chain_pem: String,
    /// When it joined the job (Unix seconds; as stored: trust [`EnclaveRow::joined`] instead).
    pub joined_at: i64,
    /// Its signed `BatchJoined` statement (compact JWS).
    pub joined: String,
}

/// A chunk marked done.
#[derive(Clone, Debug)]
pub struct ChunkRow {
    /// The chunk as its enclave stated it.
    pub chunk: BatchChunk,
    /// The statement, signed by that enclave's receipt key.
    pub statement: String,
    /// When it was recorded (Unix seconds).
    pub done_at: i64,
}

/// The queue, and the set of jobs that have a runner in this process.
#[derive(Debug)]
pub struct BatchQueue {
    pool: SqlitePool,
    running: Mutex<HashSet<String>>,
    chunk_pause: Duration,
}

type JobTuple = (
    String,
    String,
    String,
    i64,
    String,
    Option<String>,
    Option<i64>,
    Option<i64>,
    i64,
    i64,
    Option<String>,
    Option<String>,
    String,
);

type ChunkTuple = (String, i64, i64, i64, String, String, String, String, i64);

fn db(error: sqlx::Error) -> BatchError {
    BatchError::Database(error.to_string())
}

fn count(value: i64, what: &str) -> Result<u64, BatchError> {
    u64::try_from(value).map_err(|_| BatchError::Corrupt(format!("{what} is negative ({value})")))
}

fn to_i64(value: u64) -> Result<i64, BatchError> {
    i64::try_from(value).map_err(|_| BatchError::Corrupt(format!("{value} is too large to store")))
}

fn hex(text: &str, what: &str) -> Result<Hex, BatchError> {
    Hex::parse(text).map_err(|_| BatchError::Corrupt(format!("{what} is not hex")))
}

impl BatchQueue {
    /// Opens (creating if missing) the queue database at `path` and brings its schema up to date.
    /// `chunk_pause` is waited after each chunk (spreads a job's load; zero runs flat out).
    pub async fn open(path: &Path, chunk_pause: Duration) -> Result<BatchQueue, BatchError> {
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .map_err(|e| {
                BatchError::Database(format!("cannot use {} as a database: {e}", path.display()))
            })?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let pool =
            SqlitePoolOptions::new().max_connections(4).connect_with(options).await.map_err(
                |e| BatchError::Database(format!("cannot open {}: {e}", path.display())),
            )?;
        MIGRATIONS.run(&pool).await.map_err(|e| {
            BatchError::Database(format!(
                "cannot bring the schema of {} up to date: {e}",
                path.display()
            ))
        })?;
        Ok(BatchQueue { pool, running: Mutex::new(HashSet::new()), chunk_pause })
    }

    /// The pause after each chunk.
    pub fn chunk_pause(&self) -> Duration {
        self.chunk_pause
    }

    /// Marks `job_id` as having a runner in this process; false when it already has one.
    pub(crate) fn claim(&self, job_id: &str) -> bool {
        match self.running.lock() {
            Ok(mut running) => running.insert(job_id.to_owned()),
            Err(_) => false,
        }
    }

    /// Forgets the runner of `job_id`.
    pub(crate) fn release(&self, job_id: &str) {
        if let Ok(mut running) = self.running.lock() {
            running.remove(job_id);
        }
    }

    /// Queues a job (state `queued`). Refuses an id that is already queued.
    pub async fn insert(
        &self,
        spec: &JobSpec,
        job_digest: &Hex,
        grants: &[String],
        chunk_rows: u64,
        submitted_at: i64,
        terms: &str,
    ) -> Result<(), BatchError> {
        let spec_json =
            serde_json::to_string(spec).map_err(|e| BatchError::Corrupt(e.to_string()))?;
        let grants_json =
            serde_json::to_string(grants).map_err(|e| BatchError::Corrupt(e.to_string()))?;
        let result = sqlx::query(
            "INSERT INTO batch_jobs (id, spec_json, job_digest, grants_json, chunk_rows, state, \
             submitted_at, terms) VALUES ($1, $2, $3, $4, $5, 'queued', $6, $7)",
        )
        .bind(&spec.id)
        .bind(spec_json)
        .bind(job_digest.to_string())
        .bind(grants_json)
        .bind(to_i64(chunk_rows)?)
        .bind(submitted_at)
        .bind(terms)
        .execute(&self.pool)
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(BatchError::Exists(spec.id.clone()))
            }
            Err(e) => Err(db(e)),
        }
    }

    /// The job `job_id`, if queued.
    pub async fn job(&self, job_id: &str) -> Result<Option<JobRow>, BatchError> {
        let row: Option<JobTuple> = sqlx::query_as(
            "SELECT spec_json, job_digest, grants_json, chunk_rows, state, reason, rows_total, \
             chunks_total, rows_done, submitted_at, receipt, receipt_signer, terms \
             FROM batch_jobs WHERE id = $1",
        )
        .bind(job_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        let Some((
            spec_json,
            job_digest,
            grants_json,
            chunk_rows,
            state,
            reason,
            rows_total,
            chunks_total,
            rows_done,
            submitted_at,
            receipt,
            receipt_signer,
            terms,
        )) = row
        else {
            return Ok(None);
        };
        let corrupt = |what: &str, e: serde_json::Error| {
            BatchError::Corrupt(format!("job {job_id}: the stored {what} does not parse: {e}"))
        };
        Ok(Some(JobRow {
            spec: serde_json::from_str(&spec_json).map_err(|e| corrupt("spec", e))?,
            job_digest: hex(&job_digest, "the job digest")?,
            grants: serde_json::from_str(&grants_json).map_err(|e| corrupt("grants", e))?,
            chunk_rows: count(chunk_rows, "chunk_rows")?,
            state: BatchState::parse(&state)
                .ok_or_else(|| BatchError::Corrupt(format!("job {job_id}: state {state:?}")))?,
            reason,
            rows_total: rows_total.map(|v| count(v, "rows_total")).transpose()?,
            chunks_total: chunks_total.map(|v| count(v, "chunks_total")).transpose()?,
            rows_done: count(rows_done, "rows_done")?,
            submitted_at,
            receipt,
            receipt_signer,
            terms,
        }))
    }

    /// Whether the database answers (`/readyz`).
    pub async fn ping(&self) -> Result<(), BatchError> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map(drop).map_err(db)
    }

    /// Jobs by state and chunks done and pending, for the metrics.
    pub async fn counts(&self) -> Result<crate::metrics::BatchCounts, BatchError> {
        let mut counts = crate::metrics::BatchCounts::default();
        let states: Vec<(String, i64)> =
            sqlx::query_as("SELECT state, COUNT(*) FROM batch_jobs GROUP BY state")
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
        for (state, n) in states {
            let n = count(n, "a job count")?;
            match BatchState::parse(&state)
                .ok_or_else(|| BatchError::Corrupt(format!("unknown job state {state:?}")))?
            {
                BatchState::Queued => counts.queued = n,
                BatchState::Running => counts.running = n,
                BatchState::Done => counts.done = n,
                BatchState::Failed => counts.failed = n,
            }
        }
        let (done,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM batch_chunks")
            .fetch_one(&self.pool)
            .await
            .map_err(db)?;
        counts.chunks_done = count(done, "a chunk count")?;
        let (pending,): (i64,) = sqlx::query_as(
            "SELECT COALESCE(SUM(MAX(j.chunks_total - (SELECT COUNT(*) FROM batch_chunks c \
             WHERE c.job_id = j.id), 0)), 0) FROM batch_jobs j \
             WHERE j.state IN ('queued', 'running') AND j.chunks_total IS NOT NULL",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db)?;
        counts.chunks_pending = count(pending, "a chunk count")?;
        Ok(counts)
    }

    /// Ids of the jobs that are queued or running, oldest first: what a restart resumes.
    pub async fn unfinished(&self) -> Result<Vec<String>, BatchError> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT id FROM batch_jobs WHERE state IN ('queued', 'running') \
             ORDER BY submitted_at, id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// Marks the job running with its sizes. A job that already has sizes keeps them: a data set
    /// whose row count changed between runs is refused (its chunks would not line up).
    pub async fn start(
        &self,
        job_id: &str,
        rows_total: u64,
        chunks_total: u64,
    ) -> Result<(), BatchError> {
        // IMMEDIATE: the write lock from the start. A deferred transaction that reads and then
        // writes fails at once with "database is locked" (no busy wait) when another
        // connection committed in between, as two jobs running side by side do.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        let known: Option<(Option<i64>,)> =
            sqlx::query_as("SELECT rows_total FROM batch_jobs WHERE id = $1")
                .bind(job_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
        match known {
            None => return Err(BatchError::NotFound(job_id.to_owned())),
            Some((Some(rows),)) if rows != to_i64(rows_total)? => {
                return Err(BatchError::Corrupt(format!(
                    "job {job_id} started over {rows} rows but its data set now has {rows_total}"
                )));
            }
            Some(_) => {}
        }
        sqlx::query(
            "UPDATE batch_jobs SET state = 'running', rows_total = $2, chunks_total = $3 \
             WHERE id = $1 AND state IN ('queued', 'running')",
        )
        .bind(job_id)
        .bind(to_i64(rows_total)?)
        .bind(to_i64(chunks_total)?)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    /// Records that an enclave works on the job (once per enclave).
    pub async fn add_enclave(&self, job_id: &str, enclave: &EnclaveRow) -> Result<(), BatchError> {
        sqlx::query(
            "INSERT INTO batch_enclaves (job_id, attestation_result_sha256, measurement, \
             receipt_pk, certificate_chain_pem, joined_at, joined) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (job_id, attestation_result_sha256) DO NOTHING",
        )
        .bind(job_id)
        .bind(&enclave.attestation_result_sha256)
        .bind(&enclave.measurement)
        .bind(&enclave.receipt_pk)
        .bind(&enclave.certificate_chain_pem)
        .bind(enclave.joined_at)
        .bind(&enclave.joined)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    /// The enclaves that worked on the job.
    pub async fn enclaves(&self, job_id: &str) -> Result<Vec<EnclaveRow>, BatchError> {
        let rows: Vec<(String, String, String, String, i64, String)> = sqlx::query_as(
            "SELECT attestation_result_sha256, measurement, receipt_pk, certificate_chain_pem, \
             joined_at, joined FROM batch_enclaves WHERE job_id = $1 ORDER BY joined_at, \
             attestation_result_sha256",
        )
        .bind(job_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows
            .into_iter()
            .map(|(attestation_result_sha256, measurement, receipt_pk, pem, joined_at, joined)| {
                EnclaveRow {
                    attestation_result_sha256,
                    measurement,
                    receipt_pk,
                    certificate_chain_pem: pem,
                    joined_at,
                    joined,
                }
            })
            .collect())
    }

    /// The chunks marked done, in order.
    pub async fn chunks(&self, job_id: &str) -> Result<Vec<ChunkRow>, BatchError> {
        let (_, digest) = self.spec_and_digest(job_id).await?;
        let rows: Vec<ChunkTuple> = sqlx::query_as(
            "SELECT job_id, chunk_index, first_row, rows, object_id, ciphertext_sha256, \
             attestation_result_sha256, statement, done_at FROM batch_chunks WHERE job_id = $1 \
             ORDER BY chunk_index",
        )
        .bind(job_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.into_iter()
            .map(|(job_id, index, first_row, rows, object_id, sha, enclave, statement, done_at)| {
                Ok(ChunkRow {
                    chunk: BatchChunk {
                        job_id,
                        job_digest: digest.clone(),
                        index: count(index, "chunk_index")?,
                        first_row: count(first_row, "first_row")?,
                        rows: count(rows, "rows")?,
                        object_id,
                        ciphertext_sha256: hex(&sha, "a chunk digest")?,
                        attestation_result_sha256: hex(&enclave, "a chunk's enclave")?,
                    },
                    statement,
                    done_at,
                })
            })
            .collect()
    }

    async fn spec_and_digest(&self, job_id: &str) -> Result<(String, Hex), BatchError> {
        let row: Option<(String, String)> =
            sqlx::query_as("SELECT spec_json, job_digest FROM batch_jobs WHERE id = $1")
                .bind(job_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
        let (spec, digest) = row.ok_or_else(|| BatchError::NotFound(job_id.to_owned()))?;
        Ok((spec, hex(&digest, "the job digest")?))
    }

    /// Indexes of the chunks marked done.
    pub async fn done_indexes(&self, job_id: &str) -> Result<BTreeSet<u64>, BatchError> {
        let rows: Vec<(i64,)> =
            sqlx::query_as("SELECT chunk_index FROM batch_chunks WHERE job_id = $1")
                .bind(job_id)
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
        rows.into_iter().map(|(i,)| count(i, "chunk_index")).collect()
    }

    /// Marks a chunk done, with its object's digest and signed statement, and updates the job's
    /// progress: one transaction, durable when this returns.
    pub async fn record_chunk(
        &self,
        chunk: &BatchChunk,
        statement: &str,
        done_at: i64,
    ) -> Result<(), BatchError> {
        // IMMEDIATE: the write lock from the start. A deferred transaction that reads and then
        // writes fails at once with "database is locked" (no busy wait) when another
        // connection committed in between, as two jobs running side by side do.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        sqlx::query(
            "INSERT INTO batch_chunks (job_id, chunk_index, first_row, rows, object_id, \
             ciphertext_sha256, attestation_result_sha256, statement, done_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&chunk.job_id)
        .bind(to_i64(chunk.index)?)
        .bind(to_i64(chunk.first_row)?)
        .bind(to_i64(chunk.rows)?)
        .bind(&chunk.object_id)
        .bind(chunk.ciphertext_sha256.to_string())
        .bind(chunk.attestation_result_sha256.to_string())
        .bind(statement)
        .bind(done_at)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        sqlx::query(
            "UPDATE batch_jobs SET rows_done = (SELECT COALESCE(SUM(rows), 0) FROM batch_chunks \
             WHERE job_id = $1) WHERE id = $1",
        )
        .bind(&chunk.job_id)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    /// Marks the job done with its receipt and the certificate chain (PEM) of the attestation
    /// the receipt was signed under.
    pub async fn finish(
        &self,
        job_id: &str,
        receipt: &str,
        signer_chain_pem: &str,
        finished_at: i64,
    ) -> Result<(), BatchError> {
        sqlx::query(
            "UPDATE batch_jobs SET state = 'done', receipt = $2, receipt_signer = $3, \
             finished_at = $4 WHERE id = $1 AND state = 'running'",
        )
        .bind(job_id)
        .bind(receipt)
        .bind(signer_chain_pem)
        .bind(finished_at)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    /// Marks the job failed for good, with a reason (which never contains plaintext).
    pub async fn fail(&self, job_id: &str, reason: &str, at: i64) -> Result<(), BatchError> {
        sqlx::query(
            "UPDATE batch_jobs SET state = 'failed', reason = $2, finished_at = $3 \
             WHERE id = $1 AND state IN ('queued', 'running')",
        )
        .bind(job_id)
        .bind(reason)
        .bind(at)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use cloister_types::{InputRef, JobKind};

    use super::*;

    fn spec(id: &str) -> JobSpec {
        let input = |object: &str| InputRef {
            object_id: object.to_owned(),
            sha256: Hex(vec![7; 32]),
            owner: "owner".to_owned(),
        };
        JobSpec {
            id: id.to_owned(),
            kind: JobKind::BatchInference,
            model: input("m"),
            data: input("d"),
            output_recipients: vec!["r".to_owned()],
            more_data: Vec::new(),
        }
    }

    fn chunk(index: u64, rows: u64) -> BatchChunk {
        BatchChunk {
            job_id: "j".to_owned(),
            job_digest: Hex(vec![1; 32]),
            index,
            first_row: index * 10,
            rows,
            object_id: format!("j-out-{index:06}"),
            ciphertext_sha256: Hex(vec![2; 32]),
            attestation_result_sha256: Hex(vec![3; 32]),
        }
    }

    #[tokio::test]
    async fn jobs_and_chunks_survive_reopening_and_are_never_recorded_twice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs.db");
        let queue = BatchQueue::open(&path, Duration::ZERO).await.unwrap();
        let digest = Hex(vec![1; 32]);
        queue.insert(&spec("j"), &digest, &["g1".to_owned()], 10, 100, "terms").await.unwrap();
        let again = queue.insert(&spec("j"), &digest, &[], 10, 100, "terms").await;
        assert!(matches!(again, Err(BatchError::Exists(_))), "{again:?}");
        assert_eq!(queue.unfinished().await.unwrap(), vec!["j".to_owned()]);
        queue.start("j", 25, 3).await.unwrap();
        queue.record_chunk(&chunk(0, 10), "s0", 101).await.unwrap();
        queue.record_chunk(&chunk(2, 5), "s2", 102).await.unwrap();
        assert!(queue.record_chunk(&chunk(2, 5), "s2", 103).await.is_err());
        drop(queue);

        let queue = BatchQueue::open(&path, Duration::ZERO).await.unwrap();
        let job = queue.job("j").await.unwrap().unwrap();
        assert_eq!((job.state, job.rows_done, job.rows_total), (BatchState::Running, 15, Some(25)));
        assert_eq!(job.grants, vec!["g1".to_owned()]);
        assert_eq!(queue.done_indexes("j").await.unwrap().into_iter().collect::<Vec<_>>(), [0, 2]);
        let chunks = queue.chunks("j").await.unwrap();
        assert_eq!(chunks[1].chunk, chunk(2, 5));
        assert_eq!(chunks[1].statement, "s2");
        // A data set whose size changed is refused.
        assert!(matches!(queue.start("j", 26, 3).await, Err(BatchError::Corrupt(_))));
        let chain = "-----BEGIN CERTIFICATE-----\n…";
        queue.finish("j", "receipt", chain, 104).await.unwrap();
        assert!(queue.unfinished().await.unwrap().is_empty());
        assert_eq!(queue.job("j").await.unwrap().unwrap().receipt_signer.as_deref(), Some(chain));
        // A finished job cannot fail afterwards.
        queue.fail("j", "late", 105).await.unwrap();
        assert_eq!(queue.job("j").await.unwrap().unwrap().state, BatchState::Done);
        assert!(queue.job("nope").await.unwrap().is_none());
    }
}
