-- Licenses can be edited after creation (seats, expiry, features, offline, status).
-- `revision` counts the edits: every edit adds one. A portal instance keeps licenses in a
-- cache for activations; the activation's write reads the revision with the license row
-- and, when the cached copy is older, the activation is made again from the row as it is
-- now — also when the edit was made by another instance on the same database.
ALTER TABLE licenses ADD COLUMN revision BIGINT NOT NULL DEFAULT 0;
