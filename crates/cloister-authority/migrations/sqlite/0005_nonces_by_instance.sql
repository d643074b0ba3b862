-- Live challenges are bounded per instance (the ones that expire first are dropped): this index
-- keeps finding them a short range scan.
CREATE INDEX nonces_instance_expiry ON nonces (instance_id, expires_at);
