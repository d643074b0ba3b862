-- The privacy ledger: one row per training job and data set, with what the job spent on the
-- sealed data set as a Rényi DP curve. Public numbers only: digests, job ids, RDP values.

CREATE TABLE privacy_ledger (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    -- SHA-256 (hex) of the sealed data set: the account's key.
    object_sha256 TEXT NOT NULL,
    object_id TEXT NOT NULL,
    -- The data owner's party public key.
    owner TEXT NOT NULL,
    job_id TEXT NOT NULL,
    -- RDP at orders 2..=256 as a JSON array; NULL when the job trained without DP-SGD noise from
    -- the enclave (no finite ε bounds it).
    rdp_json TEXT NULL,
    charged_at BIGINT NOT NULL
);

CREATE INDEX privacy_ledger_object ON privacy_ledger (object_sha256);
