-- Integrity flags are kept up to a limit per activation and kind (MAX_FLAGS_PER_KIND in
-- portal/src/ops/writes.rs): a customer who signs crafted files with their own device key
-- could otherwise add a row with every file. Past the limit, each further flag of that
-- kind is counted on the latest flag kept of the kind, in `repeats`.
ALTER TABLE activation_flags ADD COLUMN repeats BIGINT NOT NULL DEFAULT 0;
