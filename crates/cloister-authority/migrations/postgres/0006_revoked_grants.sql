-- Grants revoked by their owners (a statement signed with the owner's key naming a job
-- digest): the service then records no authorization and charges no privacy for that job
-- with the owner's inputs. A revocation is never undone.

CREATE TABLE revoked_grants (
    -- The owner's party public key.
    owner TEXT NOT NULL,
    -- The job digest (hex) the owner's grants named.
    job_digest TEXT NOT NULL,
    revoked_at BIGINT NOT NULL,
    PRIMARY KEY (owner, job_digest)
);
