-- The worker's durable batch-job queue (SQLite, WAL, synchronous=FULL). It holds ids, digests,
-- counts, states, public keys, certificates and grant JWS texts: never plaintext, never a secret.

CREATE TABLE batch_jobs (
    id TEXT PRIMARY KEY NOT NULL,
    -- The job spec as submitted (object ids, ciphertext digests, owners' and recipients' public keys).
    spec_json TEXT NOT NULL,
    job_digest TEXT NOT NULL,
    -- The owners' grants, compact JWS texts, as a JSON array.
    grants_json TEXT NOT NULL,
    chunk_rows BIGINT NOT NULL CHECK (chunk_rows > 0),
    state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed')),
    reason TEXT NULL,
    rows_total BIGINT NULL,
    chunks_total BIGINT NULL,
    rows_done BIGINT NOT NULL DEFAULT 0,
    submitted_at BIGINT NOT NULL,
    finished_at BIGINT NULL,
    -- When done: the receipt (compact JWS) and the attestation result that signed it.
    receipt TEXT NULL,
    receipt_signer TEXT NULL
);

-- Every enclave that worked on a job: its attestation result and certificate chain (public).
CREATE TABLE batch_enclaves (
    job_id TEXT NOT NULL REFERENCES batch_jobs (id),
    attestation_result_sha256 TEXT NOT NULL,
    measurement TEXT NOT NULL,
    receipt_pk TEXT NOT NULL,
    certificate_chain_pem TEXT NOT NULL,
    joined_at BIGINT NOT NULL,
    PRIMARY KEY (job_id, attestation_result_sha256)
);

-- A chunk row exists exactly when the chunk's sealed output is stored and its digest recorded;
-- it is inserted in one transaction with the job's rows_done.
CREATE TABLE batch_chunks (
    job_id TEXT NOT NULL REFERENCES batch_jobs (id),
    chunk_index BIGINT NOT NULL,
    first_row BIGINT NOT NULL,
    rows BIGINT NOT NULL,
    object_id TEXT NOT NULL,
    ciphertext_sha256 TEXT NOT NULL,
    attestation_result_sha256 TEXT NOT NULL,
    -- The BatchChunk statement, signed by that enclave's receipt key.
    statement TEXT NOT NULL,
    done_at BIGINT NOT NULL,
    PRIMARY KEY (job_id, chunk_index)
);
