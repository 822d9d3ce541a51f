-- Lookups on the activation path must not scan every activation of a license:
-- "does this device already hold a seat of this license?" (all three columns in the
-- index, so no planner takes a shorter one and scans) and "how many deactivations lately?".
DROP INDEX activations_license;
CREATE INDEX activations_license ON activations (license, state, device_key);
CREATE INDEX activations_deactivated ON activations (license, deactivated);
-- Nothing looks activations up by device key id alone; one index less to write.
DROP INDEX activations_device;
