-- The database's own guarantee of two rules the portal keeps under concurrency
-- (PostgreSQL with several instances included):
-- one active seat per device and license (the lookup "does this device already hold a
-- seat of this license?" uses this index too) …
CREATE UNIQUE INDEX activations_one_per_device ON activations (license, device_key)
    WHERE state = 'active';
-- … and one active vendor signing key.
CREATE UNIQUE INDEX vendor_keys_one_active ON vendor_keys (active) WHERE active = 1;
