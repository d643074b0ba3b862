-- Online inference quotas counted where the compute provider cannot reset them: attested
-- enclaves reserve tokens of a requester's quota here before serving them. Per instance, so an
-- enclave attested by another tenant's instance cannot touch these counts.

CREATE TABLE usage_reservations (
    instance_id TEXT NOT NULL,
    model_owner TEXT NOT NULL,
    -- name@version.
    model TEXT NOT NULL,
    requester TEXT NOT NULL,
    -- Tokens reserved so far, by every enclave of the instance.
    reserved BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (instance_id, model_owner, model, requester)
);
