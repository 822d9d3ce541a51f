-- License-level consumption limits: per feature, the most the devices of one license may
-- report in total (`{"render-minutes": 10000}`), set on the policy and copied to each
-- license at creation (like its seats), with whether reaching one refuses new seats and
-- reissues (1) or only flags the reports that pass it (0).
ALTER TABLE policies ADD COLUMN total_limits TEXT NOT NULL DEFAULT '{}';
ALTER TABLE policies ADD COLUMN refuse_over_total BIGINT NOT NULL DEFAULT 0;
ALTER TABLE licenses ADD COLUMN total_limits TEXT NOT NULL DEFAULT '{}';
ALTER TABLE licenses ADD COLUMN refuse_over_total BIGINT NOT NULL DEFAULT 0;
