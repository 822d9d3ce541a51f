-- On-premise floating servers (pools): a device that activates a floating license
-- offline to hold `pool_seats` of its seats and lease them on its own network. NULL: an
-- ordinary activation. A pool's seats are counted in the license's `seats_used` (as a
-- node-locked activation's one seat is), so every seat count the portal makes — new
-- pools, node-locked seats, floating leases and checkouts, license edits — leaves them
-- out of what is free. docs/vendor-guide.md#on-premise-floating-servers-pools.
ALTER TABLE activations ADD COLUMN pool_seats BIGINT;
-- The database's guarantee that a license has at most one active pool.
CREATE UNIQUE INDEX activations_one_pool ON activations (license)
    WHERE state = 'active' AND pool_seats IS NOT NULL;
