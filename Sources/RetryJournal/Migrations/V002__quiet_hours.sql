-- Quiet hours (config file [quiet_hours]): messages selected but not sent because the run reached
-- quiet hours are taken out of the run's journal (they had no intent and no call) and counted here;
-- the next run selects them again.
ALTER TABLE postman_retry.runs ADD COLUMN deferred_by_quiet_hours bigint NOT NULL DEFAULT 0;
