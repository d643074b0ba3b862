-- Online inference rate limits counted where the compute provider cannot reset them: a token
-- bucket per requester of a model version, shared by every enclave of the instance, from which
-- an enclave takes requests before it admits them. Per instance, like usage_reservations.

CREATE TABLE request_allowances (
    instance_id TEXT NOT NULL,
    model_owner TEXT NOT NULL,
    -- name@version.
    model TEXT NOT NULL,
    requester TEXT NOT NULL,
    -- Requests in the bucket, in thousandths (the bucket refills continuously).
    available_milli BIGINT NOT NULL,
    -- When the bucket was last refilled (unix seconds, the service's clock).
    refilled_at BIGINT NOT NULL,
    PRIMARY KEY (instance_id, model_owner, model, requester)
);
