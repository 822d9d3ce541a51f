-- The database's own guarantee of two rules the portal keeps under concurrency
-- (PostgreSQL with several instances included):
-- one active seat per device and license …
CREATE UNIQUE INDEX activations_one_per_device ON activations (license, device_key)
    WHERE state = 'active';
-- … which also answers "does this device already hold a seat of this license?", the
-- lookup activations_license was made for; listing a license's activations uses
-- activations_deactivated (license, deactivated). One index less to write per activation.
DROP INDEX activations_license;
-- One active vendor signing key.
CREATE UNIQUE INDEX vendor_keys_one_active ON vendor_keys (active) WHERE active = 1;
