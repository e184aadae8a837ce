-- Tenants, their keys, budget counters and the usage ledger.
-- Times are Unix milliseconds; flags are 0/1 integers so that the same
-- queries run on SQLite and PostgreSQL.
CREATE TABLE tenants (
    id             TEXT PRIMARY KEY,
    name           TEXT NOT NULL UNIQUE,
    disabled       BIGINT NOT NULL DEFAULT 0,
    created_at     BIGINT NOT NULL,
    models         TEXT,
    rpm            BIGINT,
    tpm            BIGINT,
    max_concurrent BIGINT,
    budget_tokens  BIGINT,
    budget_period  TEXT,
    weight         BIGINT
);

CREATE TABLE api_keys (
    id             TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL REFERENCES tenants (id),
    name           TEXT,
    secret_hash    TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    revoked_at     BIGINT,
    models         TEXT,
    rpm            BIGINT,
    tpm            BIGINT,
    max_concurrent BIGINT,
    budget_tokens  BIGINT,
    budget_period  TEXT,
    weight         BIGINT
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id);

CREATE TABLE budget_usage (
    scope    TEXT NOT NULL,
    period   TEXT NOT NULL,
    used     BIGINT NOT NULL DEFAULT 0,
    reserved BIGINT NOT NULL DEFAULT 0,
    -- The budget as of the last hold: lets one statement check several.
    budget_limit BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (scope, period)
);

CREATE TABLE usage_records (
    id                BIGSERIAL PRIMARY KEY,
    ts                BIGINT NOT NULL,
    request_id        TEXT NOT NULL,
    tenant_id         TEXT NOT NULL,
    key_id            TEXT,
    model             TEXT NOT NULL,
    provider          TEXT NOT NULL,
    prompt_tokens     BIGINT NOT NULL,
    cached_tokens     BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    ttft_ms           BIGINT,
    duration_ms       BIGINT NOT NULL,
    status            TEXT NOT NULL,
    finish_reason     TEXT,
    estimated         BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX usage_records_tenant_ts ON usage_records (tenant_id, ts);
CREATE INDEX usage_records_ts ON usage_records (ts);
