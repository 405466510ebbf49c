-- The audit log of write and admin requests on the HTTP APIs (storage and alerting write it):
-- who (the key's name), what (method, path, target), when, and the outcome. Append-only.
CREATE TABLE api_audit (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    service text NOT NULL,
    key_name text,                     -- NULL: the API has no keys, or no valid key was sent
    scope text NOT NULL CHECK (scope IN ('ingest', 'read', 'write', 'admin')),
    method text NOT NULL,
    path text NOT NULL,
    target text,                       -- what the request acted on (an id), when it names one
    status smallint NOT NULL,
    outcome text NOT NULL CHECK (outcome IN ('ok', 'denied', 'refused', 'failed')),
    client text
);
CREATE INDEX api_audit_at_idx ON api_audit (at DESC, id DESC);
CREATE INDEX api_audit_key_idx ON api_audit (key_name, id DESC);

CREATE FUNCTION earful_api_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'api_audit is append-only (entry %)', OLD.id USING ERRCODE = 'integrity_constraint_violation';
END
$$;
CREATE TRIGGER api_audit_append_only BEFORE UPDATE ON api_audit
    FOR EACH ROW EXECUTE FUNCTION earful_api_audit_append_only();
