-- Reserved: migration 7 is being written on another branch. This placeholder only keeps
-- the list of migrations contiguous (storage/db.rs) for the branch that added 0008; it
-- changes nothing and must be replaced by the real 0007 when the branches are merged,
-- before any database that matters runs it (a database that ran the placeholder records
-- version 7 as applied and would skip the real one).
SELECT 1;
