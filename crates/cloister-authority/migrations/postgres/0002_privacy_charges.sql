-- The privacy ledger: what each training job spent on each sealed data set, as a Rényi DP
-- curve, charged before the job's first step. Kept here rather than on the compute provider's
-- disk so that the compute provider cannot roll it back. Public numbers only.

CREATE TABLE privacy_charges (
    id BIGSERIAL PRIMARY KEY,
    -- SHA-256 (hex) of the sealed data set: the account's key.
    object_sha256 TEXT NOT NULL,
    object_id TEXT NOT NULL,
    -- The data owner's party public key.
    owner TEXT NOT NULL,
    job_id TEXT NOT NULL,
    -- The instance whose attested enclave asked for the charge.
    instance_id TEXT NOT NULL,
    -- RDP at orders 2..=256 as a JSON array; NULL when the job trained without DP-SGD noise from
    -- the enclave (no finite ε bounds it).
    rdp_json TEXT NULL,
    charged_at BIGINT NOT NULL
);
CREATE INDEX privacy_charges_object ON privacy_charges (object_sha256, id);
