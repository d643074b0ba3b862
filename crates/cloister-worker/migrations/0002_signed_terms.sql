-- The terms a batch job runs under, signed by the enclave that accepted it (a BatchTerms JWS),
-- and each enclave's signed join (a BatchJoined JWS): the host stores both but cannot change
-- what an enclave relies on when it resumes a job or signs its receipt. A job queued before
-- these columns existed has no terms and is refused on resume.
ALTER TABLE batch_jobs ADD COLUMN terms TEXT NOT NULL DEFAULT '';
ALTER TABLE batch_enclaves ADD COLUMN joined TEXT NOT NULL DEFAULT '';
