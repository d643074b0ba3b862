-- The ids of the reservation statements an instance's enclaves made (usage and request
-- reservations), kept until the statement could no longer verify: a statement captured by the
-- host and posted again is refused instead of reserving again.

CREATE TABLE reservation_ids (
    instance_id TEXT NOT NULL,
    id TEXT NOT NULL,
    -- Unix seconds after which the statement no longer verifies (plus clock skew).
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (instance_id, id)
);
CREATE INDEX reservation_ids_expiry ON reservation_ids (expires_at);
