-- The API endpoint each ledger row was served on, and the Responses API's
-- stored responses: the response object and the input it was given, both
-- as JSON text, owned by the tenant that created them.
ALTER TABLE usage_records ADD COLUMN endpoint TEXT NOT NULL DEFAULT '';

CREATE TABLE responses (
    id          TEXT PRIMARY KEY,
    owner       TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    model       TEXT NOT NULL,
    body        TEXT NOT NULL,
    input_items TEXT NOT NULL
);
CREATE INDEX responses_owner ON responses (owner, created_at);
