-- Each budget hold of a running request, with a lease its replica renews
-- while the request runs: the holds of a replica that died are given back
-- (taken off budget_usage.reserved) once their lease has run out, instead
-- of staying reserved until the period ends. One request's holds share an
-- id, one row per budget counter.
CREATE TABLE budget_holds (
    id         TEXT NOT NULL,
    scope      TEXT NOT NULL,
    period     TEXT NOT NULL,
    tokens     BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (id, scope)
);
CREATE INDEX budget_holds_expiry ON budget_holds (expires_at);
