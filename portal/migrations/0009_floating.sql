-- Floating licenses (issue 11): leases renewed by heartbeat, offline checkouts until an
-- Offline Expiry Date (OED), check-ins, reclamation. docs/vendor-guide.md#floating-licenses.
--
-- Floating is orthogonal to the license model (perpetual, time-limited, subscription,
-- trial): a policy says whether its licenses float, and each license keeps that from its
-- policy at creation, like its seats. A legacy policy of type 'floating' becomes a
-- floating perpetual one.
ALTER TABLE policies ADD COLUMN floating BIGINT NOT NULL DEFAULT 0;
-- The floating terms (lic_core::floating::Terms): the lease period, when clients renew
-- (percent of the period), the most application instances per seat (NULL: no cap), the
-- revival window, the longest checkout in hours (NULL: no checkout) and the OED every
-- lease carries (NULL: none).
ALTER TABLE policies ADD COLUMN lease_secs BIGINT NOT NULL DEFAULT 600;
ALTER TABLE policies ADD COLUMN renew_percent BIGINT NOT NULL DEFAULT 50;
ALTER TABLE policies ADD COLUMN max_processes BIGINT;
ALTER TABLE policies ADD COLUMN revival_secs BIGINT NOT NULL DEFAULT 0;
ALTER TABLE policies ADD COLUMN max_checkout_hours BIGINT;
ALTER TABLE policies ADD COLUMN lease_oed_hours BIGINT;
-- Reclamation (QLM's): enabled or not, how often the timer in `serve` runs it, and since
-- when it is enabled (inactivity counts from then at the earliest, so seats that predate
-- last-access tracking are not reclaimed at once). The threshold is `inactivity_secs`.
ALTER TABLE policies ADD COLUMN reclaim BIGINT NOT NULL DEFAULT 0;
ALTER TABLE policies ADD COLUMN reclaim_every_secs BIGINT;
ALTER TABLE policies ADD COLUMN reclaim_since BIGINT;
UPDATE policies SET floating = 1, license_type = 'perpetual' WHERE license_type = 'floating';

ALTER TABLE licenses ADD COLUMN floating BIGINT NOT NULL DEFAULT 0;
UPDATE licenses SET floating = 1
    WHERE policy IN (SELECT p.id FROM policies p WHERE p.floating = 1);

-- A device's floating seat is its active activation of the license: held while its lease
-- is live (lease_expires > now) or its OED is ahead (offline_expiry > now). A lapsed
-- lease is simply not counted: no background job keeps seats right. `checked_out`: the
-- OED was set by an offline checkout (1), not by the policy's OED on every lease (0).
ALTER TABLE activations ADD COLUMN lease_expires BIGINT;
ALTER TABLE activations ADD COLUMN checked_out BIGINT NOT NULL DEFAULT 0;

-- The application instances sharing a device's seat, each with its lease's end.
CREATE TABLE lease_instances (
    activation TEXT NOT NULL REFERENCES activations (id),
    instance TEXT NOT NULL,
    expires BIGINT NOT NULL,
    PRIMARY KEY (activation, instance)
);

-- Floating features: each device's use of a floating feature, per application instance.
-- The feature's pool counts devices with a live row.
CREATE TABLE feature_leases (
    license TEXT NOT NULL REFERENCES licenses (id),
    feature TEXT NOT NULL,
    device_key TEXT NOT NULL,
    instance TEXT NOT NULL,
    activation TEXT NOT NULL,
    expires BIGINT NOT NULL,
    last_accessed BIGINT NOT NULL,
    PRIMARY KEY (license, feature, device_key, instance)
);

-- Devices waiting for a seat (`lic lease --wait`), first come first served per pool (a
-- license's seats: feature ''; or one floating feature). A waiter stays in the queue while
-- it asks again within two lease periods (`seen`).
CREATE TABLE lease_waiters (
    license TEXT NOT NULL REFERENCES licenses (id),
    feature TEXT NOT NULL,
    device_key TEXT NOT NULL,
    ticket BIGINT NOT NULL,
    seen BIGINT NOT NULL,
    PRIMARY KEY (license, feature, device_key)
);

-- No index on last access or lease expiry: every heartbeat writes them, and what reads
-- them reads one license's active activations (activations_one_per_device) or, for
-- reclamation (rare), the active activations (activations_state).
