-- Each ledger row's own id, made by the server before its first write, so
-- that a batch written again (its commit succeeded but the answer was lost
-- with the connection) adds no row twice. Rows from before have none.
ALTER TABLE usage_records ADD COLUMN row_id TEXT;
CREATE UNIQUE INDEX usage_records_row_id ON usage_records (row_id);
