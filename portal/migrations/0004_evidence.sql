-- Evidence and key sets (the adversarial review's holes).
--
-- What the portal knows of a device's journal beyond its head: the head file's `prev` and
-- `trail` (JSON array of hex hashes, newest first), so that a late file of the device's
-- own history can be told from a file of a restored store.
ALTER TABLE activations ADD COLUMN journal_known TEXT NOT NULL DEFAULT '[]';
-- Who ended the activation: 'device' (its deactivation file closed the account) or
-- 'server' (staff, e.g. for a lost machine); NULL while active.
ALTER TABLE activations ADD COLUMN closed_by TEXT;
-- How many times the device took its seat again with a new request (a reset or lost store).
ALTER TABLE activations ADD COLUMN reactivations BIGINT NOT NULL DEFAULT 0;
UPDATE activations SET closed_by = CASE
    WHEN EXISTS (SELECT 1 FROM applied_files f
                 WHERE f.hash = activations.journal_head AND f.kind = 'deactivation')
    THEN 'device' ELSE 'server' END
WHERE state = 'deactivated';

-- Every integrity flag raised on an activation, once per file: journal forks and gaps,
-- counters that went back or could not be counted, reactivations, files from a store
-- restored after its deactivation. `file_hash` is '' when no file is involved.
CREATE TABLE activation_flags (
    activation TEXT NOT NULL REFERENCES activations (id),
    kind TEXT NOT NULL,
    file_hash TEXT NOT NULL,
    at BIGINT NOT NULL,
    detail TEXT NOT NULL,
    PRIMARY KEY (activation, kind, file_hash)
);

-- Vendor keys can be revoked (a leaked key): never trusted again, announced to devices in
-- a key set.
ALTER TABLE vendor_keys ADD COLUMN revoked BIGINT;
ALTER TABLE vendor_keys ADD COLUMN revoked_reason TEXT;

-- The key sets published, one per version: the trusted keys and the revoked ones, signed
-- by a key the devices already trust.
CREATE TABLE key_sets (
    version BIGINT PRIMARY KEY,
    signed_by TEXT NOT NULL,
    file TEXT NOT NULL,
    created BIGINT NOT NULL
);
