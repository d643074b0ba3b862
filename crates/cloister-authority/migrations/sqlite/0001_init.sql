-- The attestation service's schema (SQLite). Keep in step with ../postgres/0001_init.sql: the same
-- tables and columns, only TEXT, BIGINT and BLOB (BYTEA there); JSON is stored as TEXT.

CREATE TABLE meta (
    key TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

CREATE TABLE tenants (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

-- Bearer tokens, stored only as the lowercase hex SHA-256 of the token.
CREATE TABLE credentials (
    token_hash TEXT PRIMARY KEY NOT NULL,
    role TEXT NOT NULL,
    tenant_id TEXT NULL REFERENCES tenants (id),
    created_at BIGINT NOT NULL
);
CREATE INDEX credentials_role ON credentials (role);

CREATE TABLE instances (
    id TEXT PRIMARY KEY NOT NULL,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    name TEXT NOT NULL,
    revision BIGINT NOT NULL,
    policy_version BIGINT NOT NULL,
    reference_values TEXT NOT NULL,
    trust_anchors TEXT NOT NULL,
    settings TEXT NOT NULL,
    ca_certificate_pem TEXT NOT NULL,
    ca_key_sealed BLOB NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (tenant_id, name)
);

CREATE TABLE policy_versions (
    instance_id TEXT NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    version BIGINT NOT NULL,
    rego TEXT NOT NULL,
    builtin TEXT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (instance_id, version)
);

CREATE TABLE instance_keys (
    instance_id TEXT NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    kid TEXT NOT NULL,
    public_jwk TEXT NOT NULL,
    secret_sealed BLOB NOT NULL,
    created_at BIGINT NOT NULL,
    retired_at BIGINT NULL,
    keep_until BIGINT NULL,
    PRIMARY KEY (instance_id, kid)
);

CREATE TABLE nonces (
    nonce TEXT PRIMARY KEY NOT NULL,
    instance_id TEXT NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    expires_at BIGINT NOT NULL
);
CREATE INDEX nonces_instance ON nonces (instance_id);
CREATE INDEX nonces_expiry ON nonces (expires_at);

CREATE TABLE broker_keys (
    id TEXT PRIMARY KEY NOT NULL,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    name TEXT NOT NULL,
    key_id TEXT NOT NULL UNIQUE,
    public_key TEXT NOT NULL,
    secret_sealed BLOB NOT NULL,
    release_policy TEXT NOT NULL,
    instances TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT NULL,
    UNIQUE (tenant_id, name)
);

-- Hash-chained: hash covers the entry and prev_hash. No foreign keys: entries outlive what they name.
CREATE TABLE audit_log (
    seq BIGINT PRIMARY KEY NOT NULL,
    at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT NOT NULL,
    tenant_id TEXT NULL,
    subject TEXT NOT NULL,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX audit_log_tenant ON audit_log (tenant_id, seq);

CREATE TABLE audit_checkpoints (
    seq BIGINT PRIMARY KEY NOT NULL,
    at BIGINT NOT NULL,
    hash TEXT NOT NULL,
    signature TEXT NOT NULL
);
