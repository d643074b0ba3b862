-- Every instance id this service ever held, live or deleted: an id is never used twice, so a
-- broker key or a relying party that names an instance can never be pointed at another one by
-- re-creating or importing the id. `deleted_at` is set when the instance is deleted.

CREATE TABLE instance_ids (
    id TEXT PRIMARY KEY NOT NULL,
    tenant_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    deleted_at BIGINT NULL
);

INSERT INTO instance_ids (id, tenant_id, created_at) SELECT id, tenant_id, created_at FROM instances;
