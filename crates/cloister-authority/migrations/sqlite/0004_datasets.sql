-- Data sets registered by their owners: a privacy account belongs to the owner who registered
-- the sealed data set (a statement signed with the owner's key, naming its ciphertext digest),
-- and only that owner's grants spend it. Data sets derived from a registered one will charge
-- the source's account through their lineage, so accounts stay keyed by the registered source.

CREATE TABLE datasets (
    -- SHA-256 (hex) of the sealed data set.
    sha256 TEXT PRIMARY KEY NOT NULL,
    -- The owner's party public key.
    owner TEXT NOT NULL,
    object_id TEXT NOT NULL,
    registered_at BIGINT NOT NULL
);

-- A charge is made once per (data set, job): a replayed charge returns the first outcome and
-- charges nothing. The job digest and the enclave that charged are kept to tell a replay from a
-- different job reusing an id.
ALTER TABLE privacy_charges ADD COLUMN job_digest TEXT NOT NULL DEFAULT '';
ALTER TABLE privacy_charges ADD COLUMN charged_by TEXT NOT NULL DEFAULT '';
CREATE UNIQUE INDEX privacy_charges_once ON privacy_charges (object_sha256, job_id);
